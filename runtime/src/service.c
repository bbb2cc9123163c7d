/*
 * service.c - the server side of a node: the services it serves (by name
 * and version), their method indexes, qrpc_serve() / qrpc_unserve(), and
 * qrpc__dispatch(), the one path from a request to a handler that every
 * transport uses.
 *
 * The table of services is read by every call and changed rarely, so it
 * is an immutable hash table swapped under the node's lock and freed after
 * an RCU grace period (rcu.h): a call takes no lock.  What is not here:
 * the node's life cycle (node.c) and the client side (client.c).
 */
#include <stdlib.h>
#include <string.h>

#include "bind.h"

/* The context of the innermost handler this thread is running, or NULL. */
static _Thread_local const qrpc_ctx *svc_tls_ctx;

bool qrpc__in_handler(void)
{
    return svc_tls_ctx != NULL;
}

/* ---- identity and description ------------------------------------------- */

void qrpc__svc_key_init(qrpc__svc_key *k, const char *name, size_t name_len,
                        uint32_t version)
{
    uint32_t h = 2166136261u;   /* FNV-1a over the name, then the version */
    size_t i;

    for (i = 0; i < name_len; i++)
        h = (h ^ (uint8_t)name[i]) * 16777619u;
    for (i = 0; i < 4; i++)
        h = (h ^ (uint8_t)(version >> (8 * i))) * 16777619u;
    h ^= h >> 16;               /* murmur3's finaliser: the low bits pick slots */
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    k->name = name;
    k->name_len = name_len;
    k->version = version;
    k->hash = h;
}

static bool svc_key_equal(const qrpc__svc_key *a, const qrpc__svc_key *b)
{
    return a->hash == b->hash && a->version == b->version &&
           a->name_len == b->name_len &&
           (a->name == b->name || memcmp(a->name, b->name, a->name_len) == 0);
}

int qrpc__desc_check(const qrpc_service_desc *desc)
{
    if (desc == NULL || desc->name == NULL || desc->name[0] == '\0' ||
        desc->n_methods > QRPC__MAX_METHODS ||
        (desc->n_methods != 0 && desc->methods == NULL))
        return QRPC_EINVAL;
    return 0;
}

/* ---- method index ------------------------------------------------------- */

int qrpc__mtab_build(qrpc__mtab *t, const qrpc_method_desc *m, size_t n)
{
    unsigned bits = 1;
    size_t i;
    uint32_t j;

    /* n <= QRPC__MAX_METHODS, so bits stays far below 32. */
    while (((size_t)1 << bits) < 2 * n)
        bits++;
    t->slots = calloc((size_t)1 << bits, sizeof *t->slots);
    if (t->slots == NULL)
        return QRPC_ENOMEM;
    t->mask = ((uint32_t)1 << bits) - 1;
    t->shift = 32 - bits;
    for (i = 0; i < n; i++) {
        j = (uint32_t)(m[i].id * 2654435769u) >> t->shift;
        while (t->slots[j].pos != 0) {
            if (t->slots[j].id == m[i].id) {
                qrpc__mtab_free(t);
                return QRPC_EINVAL;
            }
            j = (j + 1) & t->mask;
        }
        t->slots[j].id = m[i].id;
        t->slots[j].flags = m[i].flags;
        t->slots[j].pos = (uint32_t)i + 1;
    }
    return 0;
}

void qrpc__mtab_free(qrpc__mtab *t)
{
    free(t->slots);
    t->slots = NULL;
}

/* ---- the table of services ---------------------------------------------- */

static void svc_free(qrpc__svc *svc)
{
    if (svc == NULL)
        return;
    qrpc__mtab_free(&svc->methods);
    free(svc);
}

static qrpc__svc *svctab_find(const qrpc__svctab *t, const qrpc__svc_key *k)
{
    size_t i = k->hash & t->mask;

    for (;;) {
        qrpc__svc *s = t->slot[i];

        if (s == NULL || svc_key_equal(&s->key, k))
            return s;
        i = (i + 1) & t->mask;
    }
}

static void svctab_insert(qrpc__svctab *t, qrpc__svc *svc)
{
    size_t i = svc->key.hash & t->mask;

    while (t->slot[i] != NULL)
        i = (i + 1) & t->mask;
    t->slot[i] = svc;
    t->count++;
}

/* A new table: old's services (old may be NULL) less skip, plus add. */
static qrpc__svctab *svctab_build(const qrpc__svctab *old, qrpc__svc *add,
                                  const qrpc__svc *skip)
{
    size_t count = (old != NULL ? old->count : 0) + (add != NULL) - (skip != NULL);
    size_t slots = 8, i;
    qrpc__svctab *t;

    while (slots < 2 * count)
        slots *= 2;
    t = calloc(1, sizeof *t + slots * sizeof t->slot[0]);
    if (t == NULL)
        return NULL;
    t->mask = slots - 1;
    for (i = 0; old != NULL && i <= old->mask; i++)
        if (old->slot[i] != NULL && old->slot[i] != skip)
            svctab_insert(t, old->slot[i]);
    if (add != NULL)
        svctab_insert(t, add);
    return t;
}

qrpc__svctab *qrpc__services_new(void)
{
    return svctab_build(NULL, NULL, NULL);
}

void qrpc__services_free(qrpc__svctab *t)
{
    size_t i;

    if (t == NULL)
        return;
    for (i = 0; i <= t->mask; i++)
        svc_free(t->slot[i]);
    free(t);
}

/* ---- serving ------------------------------------------------------------ */

int qrpc_serve(qrpc_node *n, const qrpc_service_desc *desc,
               const qrpc_dispatch_fn *dispatch, const void *handlers,
               void *state)
{
    size_t i;

    if (n == NULL || qrpc__desc_check(desc) != 0 ||
        (desc->n_methods != 0 && dispatch == NULL))
        return QRPC_EINVAL;
    for (i = 0; i < desc->n_methods; i++)
        if (dispatch[i] == NULL)
            return QRPC_EINVAL;
    return qrpc__serve(n, desc, dispatch, handlers, state, NULL);
}

int qrpc__serve(qrpc_node *n, const qrpc_service_desc *desc,
                const qrpc_dispatch_fn *dispatch, const void *handlers,
                void *state, qrpc_channel *channel)
{
    qrpc__svc *svc = NULL;
    qrpc__svctab *old = NULL, *tab;
    int rc;

    /* It would wait (below) for the very call that is running it. */
    if (qrpc__in_handler())
        return QRPC_EBUSY;
    /* the ping is answered before any method is looked up: none may be it */
    for (size_t i = 0; i < desc->n_methods; i++)
        if (desc->methods[i].id == QRPC_METHOD_PING)
            return QRPC_EINVAL;

    svc = calloc(1, sizeof *svc);
    if (svc == NULL)
        return QRPC_ENOMEM;
    qrpc__svc_key_init(&svc->key, desc->name, strlen(desc->name), desc->version);
    svc->desc = desc;
    svc->dispatch = dispatch;
    svc->channel = channel;
    svc->handlers = handlers;
    svc->state = state;
    rc = qrpc__mtab_build(&svc->methods, desc->methods, desc->n_methods);
    if (rc != 0)
        goto out;

    pthread_mutex_lock(&n->lock);
    if (atomic_load(&n->closed)) {
        rc = QRPC_ECLOSED;
    } else {
        old = atomic_load(&n->services);
        tab = NULL;
        if (svctab_find(old, &svc->key) != NULL)
            rc = QRPC_EEXIST;
        else if ((tab = svctab_build(old, svc, NULL)) == NULL)
            rc = QRPC_ENOMEM;
        else
            atomic_store(&n->services, tab);
    }
    pthread_mutex_unlock(&n->lock);
    if (rc != 0)
        goto out;
    /* Calls that still read the old table must be done before it goes. */
    qrpc__rcu_synchronize(&n->rcu);
    free(old);
    qrpc__bind_changed(n);      /* tell the master */

out:
    if (rc != 0)
        svc_free(svc);
    return rc;
}

int qrpc_unserve(qrpc_node *n, const char *name, uint32_t version)
{
    qrpc__svc_key key;
    qrpc__svc *svc = NULL;
    qrpc__svctab *old = NULL, *tab;
    int rc = 0;

    if (n == NULL || name == NULL)
        return QRPC_EINVAL;
    if (qrpc__in_handler())
        return QRPC_EBUSY;
    qrpc__svc_key_init(&key, name, strlen(name), version);

    pthread_mutex_lock(&n->lock);
    if (atomic_load(&n->closed)) {
        rc = QRPC_ECLOSED;
    } else {
        old = atomic_load(&n->services);
        svc = svctab_find(old, &key);
        if (svc == NULL)
            rc = QRPC_ENOSERVICE;
        else if ((tab = svctab_build(old, NULL, svc)) == NULL)
            rc = QRPC_ENOMEM;
        else
            atomic_store(&n->services, tab);
    }
    pthread_mutex_unlock(&n->lock);
    if (rc != 0)
        return rc;
    /*
     * After the grace period no call runs in svc any more, so the caller
     * may free its handlers and state as soon as this returns.
     */
    qrpc__rcu_synchronize(&n->rcu);
    free(old);
    svc_free(svc);
    qrpc__bind_changed(n);
    return 0;
}

bool qrpc__serves(qrpc_node *n, const qrpc__svc_key *k)
{
    qrpc__rcu_reader rd = qrpc__rcu_read_lock(&n->rcu);
    const qrpc__svctab *t = atomic_load(&n->services);
    bool found = t != NULL && svctab_find(t, k) != NULL;

    qrpc__rcu_read_unlock(&n->rcu, rd);
    return found;
}

/* ---- dispatch ----------------------------------------------------------- */

int qrpc__dispatch(qrpc_node *n, const qrpc__request *req, qrpc_buf *results)
{
    qrpc__rcu_reader rd = qrpc__rcu_read_lock(&n->rcu);
    const qrpc_ctx *outer = svc_tls_ctx;
    const qrpc__svc *svc;
    const qrpc__mslot *m;
    qrpc_reader args;
    qrpc_ctx ctx;
    int status;

    /* Read after entering the section: destroy's grace period then covers us. */
    if (atomic_load(&n->closed)) {
        status = QRPC_ECLOSED;
        goto out;
    }
    svc = svctab_find(atomic_load(&n->services), req->svc);
    if (svc == NULL) {
        status = QRPC_ENOSERVICE;
        goto out;
    }
    m = qrpc__mtab_find(&svc->methods, req->method);
    if (m == NULL) {
        /* no service defines the ping (qrpc__serve): served is all it asks */
        status = req->method == QRPC_METHOD_PING ? 0 : QRPC_ENOMETHOD;
        goto out;
    }
    /*
     * The only deadline check of a local call: once the handler runs it
     * cannot be preempted.  Network calls will also be checked by the
     * client while it waits.
     */
    if (qrpc__now_ns(n) > req->deadline_ns) {
        status = QRPC_ETIMEDOUT;
        goto out;
    }

    if (svc->channel != NULL) {
        status = req->resp != NULL ? qrpc__channel_defer(svc->channel, req, m->flags)
                                   : QRPC_ENOMETHOD;
        goto out;
    }

    ctx.state = svc->state;
    ctx.client_id = req->client_id;
    ctx.method = req->method;
    qrpc_reader_init(&args, req->args, req->args_len);
    args.max_depth = n->cfg.max_depth;
    svc_tls_ctx = &ctx;
    status = svc->dispatch[m->pos - 1](&ctx, svc->handlers, &args, results);
    svc_tls_ctx = outer;

    if (m->flags & QRPC_METHOD_ONEWAY) {
        if (status > 0)         /* nobody to tell */
            status = 0;
        results->len = 0;
    } else if (status == 0 && results->len > n->cfg.max_message) {
        status = QRPC_ETOOBIG;
    }

out:
    qrpc__rcu_read_unlock(&n->rcu, rd);
    /*
     * A deferred request's results belong to whoever answers it, and that
     * may already have happened on another thread: hands off.
     */
    if (status != 0 && status != QRPC__DEFERRED)
        results->len = 0;
    return status;
}

/* ---- the context -------------------------------------------------------- */

void *qrpc_ctx_state(const qrpc_ctx *ctx)
{
    return ctx != NULL ? ctx->state : NULL;
}

uint64_t qrpc_ctx_client_id(const qrpc_ctx *ctx)
{
    return ctx != NULL ? ctx->client_id : 0;
}

uint32_t qrpc_ctx_method(const qrpc_ctx *ctx)
{
    return ctx != NULL ? ctx->method : 0;
}
