/*
 * client.c - clients and the calls made on them: qrpc_client_create(),
 * qrpc_call() and qrpc_call_async().  A call is checked against the
 * client's own view of the service (method known, oneway or not), gets its
 * deadline and sequence number, and is handed to the FrontEnd of the
 * client's destination (transport.h): "local", or the TCP FrontEnd of a
 * "host:port" that every client of that address shares.
 *
 * Client ids are drawn here too: a random 64-bit base per process
 * incarnation plus a counter, so that the server's reply cache can key on
 * them across restarts.  Every call reports its outcome to its client's
 * acknowledgement watermark (acks.c) before its completion runs, so that
 * the next request tells the server what it may forget.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "core.h"

/* ---- client ids --------------------------------------------------------- */

static pthread_once_t client_id_once = PTHREAD_ONCE_INIT;
static atomic_uint_least64_t client_id_next;

static uint64_t client_mix(uint64_t x)      /* splitmix64's finaliser */
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9u;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

uint64_t qrpc__random64(void)
{
    struct timespec ts;
    uint64_t seed = 0;
    ssize_t got;

    do
        got = getrandom(&seed, sizeof seed, GRND_NONBLOCK);
    while (got < 0 && errno == EINTR);
    if (got == (ssize_t)sizeof seed)
        return seed;
    /*
     * No entropy yet (early boot) or no getrandom(): time, pid and ASLR
     * still make two incarnations differ, if less surely.
     */
    clock_gettime(CLOCK_REALTIME, &ts);
    return client_mix((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
           client_mix((uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)&ts);
}

/* Also the fork child handler: a child is a new incarnation. */
static void client_id_reseed(void)
{
    atomic_store(&client_id_next, qrpc__random64());
}

static void client_id_init(void)
{
    client_id_reseed();
    /* On failure forked children would repeat their parent's ids. */
    (void)pthread_atfork(NULL, NULL, client_id_reseed);
}

static uint64_t client_id_new(void)
{
    uint64_t id;

    pthread_once(&client_id_once, client_id_init);
    do                          /* 0 is kept for "no client" */
        id = atomic_fetch_add(&client_id_next, 1);
    while (id == 0);
    return id;
}

/* ---- clients ------------------------------------------------------------ */

int qrpc_client_create(qrpc_node *n, const char *target,
                       const qrpc_service_desc *desc, qrpc_client **out)
{
    qrpc_client *c;
    int rc = 0;

    if (out == NULL)
        return QRPC_EINVAL;
    *out = NULL;
    if (n == NULL || qrpc__desc_check(desc) != 0)
        return QRPC_EINVAL;
    if (atomic_load(&n->closed))
        return QRPC_ECLOSED;

    c = calloc(1, sizeof *c);
    if (c == NULL)
        return QRPC_ENOMEM;
    if (target == NULL || strcmp(target, "local") == 0)
        c->fe = &n->local;
    else
        rc = qrpc__node_fe(n, target, &c->fe);
    if (rc != 0)
        goto fail;
    rc = qrpc__mtab_build(&c->methods, desc->methods, desc->n_methods);
    if (rc != 0)
        goto fail;
    qrpc__svc_key_init(&c->key, desc->name, strlen(desc->name), desc->version);
    rc = qrpc__acks_init(&c->acks);
    if (rc != 0) {
        qrpc__mtab_free(&c->methods);
        goto fail;
    }
    c->node = n;
    c->id = client_id_new();
    atomic_init(&c->timeout_ms, 0);
    atomic_fetch_add(&n->refs, 1);
    *out = c;
    return 0;

fail:
    free(c);
    return rc;
}

void qrpc_client_destroy(qrpc_client *c)
{
    qrpc_node *n;

    if (c == NULL)
        return;
    n = c->node;
    qrpc__mtab_free(&c->methods);
    qrpc__acks_fini(&c->acks);
    free(c);
    qrpc__node_unref(n);
}

void qrpc_client_set_timeout(qrpc_client *c, uint32_t timeout_ms)
{
    if (c != NULL)
        atomic_store_explicit(&c->timeout_ms, timeout_ms, memory_order_relaxed);
}

uint64_t qrpc_client_id(const qrpc_client *c)
{
    return c != NULL ? c->id : 0;
}

/* ---- calls -------------------------------------------------------------- */

/* Fills what both kinds of call share; the deadline starts now. */
static int client_call_init(qrpc_client *c, uint32_t method, qrpc_buf *args,
                            qrpc__call *call)
{
    const qrpc__mslot *m;
    uint64_t timeout, now;
    int rc;

    if (c == NULL)
        return QRPC_EINVAL;
    m = qrpc__mtab_find(&c->methods, method);
    if (m == NULL)
        return QRPC_ENOMETHOD;
    if (args->len > c->node->cfg.max_message)
        return QRPC_ETOOBIG;
    timeout = atomic_load_explicit(&c->timeout_ms, memory_order_relaxed);
    if (timeout == 0)
        timeout = c->node->cfg.timeout_ms;
    call->svc = &c->key;
    call->method = method;
    call->flags = m->flags;
    call->client_id = c->id;
    rc = qrpc__acks_next(&c->acks, &call->seq, &call->acked);
    if (rc != 0)
        return rc;
    timeout *= 1000000u;
    now = qrpc__now_ns(c->node);
    call->deadline_ns = now > UINT64_MAX - timeout ? UINT64_MAX : now + timeout;
    call->args = args;
    call->reply = NULL;
    return 0;
}

/*
 * What a synchronous call waits for.  A local call has completed when
 * qrpc__fe_call() returns; a remote one completes on a loop thread,
 * which signals here (and never touches w after unlocking: the caller's
 * stack frame goes away once it has seen done and taken the lock).  The
 * caller first spins a little (config spin_us): a reply that comes within
 * it saves two trips through the scheduler.
 */
typedef struct client_sync {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int status;
    atomic_bool done;
    qrpc_client *client;
    uint64_t seq;
} client_sync;

static void client_sync_done(int status, qrpc_reader *results,
                             void (*fn)(void), void *arg)
{
    client_sync *w = arg;

    (void)results;              /* already in the caller's reply buffer */
    (void)fn;
    qrpc__acks_done(&w->client->acks, w->seq);
    pthread_mutex_lock(&w->lock);
    w->status = status;
    atomic_store_explicit(&w->done, true, memory_order_release);
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

int qrpc_call(qrpc_client *c, uint32_t method, qrpc_buf *args, qrpc_buf *reply)
{
    client_sync w;
    qrpc__call call;
    int rc;

    if (args == NULL)
        return QRPC_EINVAL;
    if (reply == args) {
        rc = QRPC_EINVAL;
        goto out;
    }
    if (reply != NULL)
        reply->len = 0;
    rc = client_call_init(c, method, args, &call);
    if (rc != 0)
        goto out;
    if (call.flags & QRPC_METHOD_ONEWAY) {
        call.reply = NULL;
    } else if (reply == NULL) {
        qrpc__acks_done(&c->acks, call.seq);    /* never started */
        rc = QRPC_EINVAL;
        goto out;
    } else {
        call.reply = reply;
    }
    w.client = c;
    w.seq = call.seq;
    w.status = QRPC_EUNKNOWN;
    atomic_init(&w.done, false);
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    call.done = client_sync_done;
    call.fn = NULL;
    call.arg = &w;
    rc = qrpc__fe_call(c->fe, &call);
    if (rc != 0)
        qrpc__acks_done(&c->acks, call.seq);    /* never started */
    if (rc == 0) {
        /* every FrontEnd completes a started call by its deadline */
        if (!qrpc__spin_wait(&w.done, qrpc__spin_ns(c->node))) {
            pthread_mutex_lock(&w.lock);
            while (!atomic_load(&w.done))
                pthread_cond_wait(&w.cond, &w.lock);
            pthread_mutex_unlock(&w.lock);
        } else {
            /* the completer may still hold the lock: wait until it lets go */
            pthread_mutex_lock(&w.lock);
            pthread_mutex_unlock(&w.lock);
        }
        rc = w.status;
    }
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);

out:
    qrpc_buf_free(args);        /* empty already if the FrontEnd took it */
    return rc;
}

/* An asynchronous call's completion, which first reports its outcome. */
typedef struct client_async {
    qrpc_client *client;
    uint64_t seq;
    qrpc_done_fn done;
    void (*fn)(void);
    void *arg;
} client_async;

static void client_async_done(int status, qrpc_reader *results, void (*fn)(void), void *arg)
{
    client_async ca = *(client_async *)arg;

    (void)fn;
    free(arg);
    qrpc__acks_done(&ca.client->acks, ca.seq);
    ca.done(status, results, ca.fn, ca.arg);
}

int qrpc_call_async(qrpc_client *c, uint32_t method, qrpc_buf *args,
                    qrpc_done_fn done, void (*fn)(void), void *arg)
{
    qrpc__call call;
    client_async *ca = NULL;
    int rc;

    if (args == NULL)
        return QRPC_EINVAL;
    rc = done != NULL ? client_call_init(c, method, args, &call) : QRPC_EINVAL;
    if (rc != 0)
        goto out;
    ca = malloc(sizeof *ca);
    if (ca == NULL) {
        qrpc__acks_done(&c->acks, call.seq);
        rc = QRPC_ENOMEM;
        goto out;
    }
    ca->client = c;
    ca->seq = call.seq;
    ca->done = done;
    ca->fn = fn;
    ca->arg = arg;
    call.done = client_async_done;
    call.fn = NULL;
    call.arg = ca;
    rc = qrpc__fe_call(c->fe, &call);
    if (rc != 0) {
        qrpc__acks_done(&c->acks, call.seq);    /* never started */
        free(ca);
    }

out:
    qrpc_buf_free(args);
    return rc;
}
