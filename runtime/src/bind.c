/*
 * bind.c - a node's side of binding (qrpc(3), BINDING): one agent thread
 * per node that registers the node (its address and the services it
 * serves), renews its registration, follows the cluster table, and the
 * choice of node for each call of a bound client.
 *
 * Where the table lives is a backend's business (binder.h): the built-in
 * master (bind_master.c) or a ZooKeeper ensemble (bind_zk.c), chosen by
 * the form of the master's address.  The policy is the same for both and
 * lives here: register when listening and again whenever the services
 * change, renew every third of the lease, keep one watch for the next
 * table outstanding, back off while the store does not answer.  A node
 * that does not listen has nothing to register: it only follows the
 * table.  When the store goes away the node keeps its last table and
 * serves and calls on; when it answers again with another identity (a
 * master restarted) or has lost the registration (a lease or a session
 * expired) the node registers again, asking for its old rank.
 *
 * A bound call goes to the node itself when it serves the service, else
 * to the next node of the table offering name@version, round robin (not
 * least-outstanding: it needs no shared counters, and failover below
 * covers what it misses).  FrontEnds found unreachable are marked down
 * and skipped for BIND_DOWN_NS, or until the table lists a new node at
 * their address.  A node that left the table (it left, or its lease or
 * session expired) is no candidate at all from the next pick on.  What
 * may move to another node is client.c's business.
 *
 * Known limits: one lock per node guards the table and every bound
 * client's cache, so bound calls from many threads contend on it; the
 * FrontEnds of nodes that left stay until the node is destroyed; a node
 * that keeps its connections open but never answers is not marked down
 * (idempotent calls sent there move on after retry_ms, at-most-once ones
 * wait for it until their deadline).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bind.h"
#include "binder.h"
#include "net.h"
#include "rdma.h"

#define BIND_BACKOFF_MIN_NS (100u * 1000000u)
#define BIND_BACKOFF_MAX_NS (2000u * 1000000u)
#define BIND_DOWN_NS        (1000u * 1000000ull)
#define BIND_HOLD_MIN_MS    50u
#define BIND_HOLD_MAX_MS    10000u
#define BIND_NO_RANK        0xffffffffu

typedef struct qrpc__bind {
    qrpc_node *node;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;        /* CLOCK_MONOTONIC: the agent's wake-ups */
    pthread_cond_t first_cond;  /* callers waiting for the first table */
    const qrpc__binder_ops *ops;
    void *bs;                   /* the backend's state */
    bool stopping;
    bool dirty;                 /* services changed since the last join */
    /* the lease, while registered */
    bool registered;
    uint64_t lease_master;
    uint32_t rank;              /* also the hint for the next join */
    uint32_t lease_ms;
    uint64_t next_hb_ns;
    uint64_t join_at_ns;        /* no join before (backoff) */
    uint64_t join_backoff_ns;
    bool join_failing;          /* said once per streak */
    /* the watch */
    bool watch_busy;            /* a watch call is in flight */
    bool watch_done;            /* ... and has completed: status, update */
    int watch_status;
    qrpc_Update watch_update;
    uint64_t watch_at_ns;
    uint64_t watch_backoff_ns;
    bool watch_failing;
    /* the table */
    bool first;                 /* a table came, or the master did not answer */
    bool have_table;
    qrpc_Table table;
    uint64_t gen;               /* 1 + tables installed */
} qrpc__bind;

/* ---- small helpers ---------------------------------------------------------- */

static uint64_t bind_backoff(uint64_t *b)
{
    uint64_t cur = *b;

    *b = cur * 2 > BIND_BACKOFF_MAX_NS ? BIND_BACKOFF_MAX_NS : cur * 2;
    return cur;
}

/* The node's services as the master's ServiceRef list; QRPC_ENOMEM. */
static int bind_services(qrpc_node *n, qrpc_ServiceRef_list *out)
{
    qrpc__rcu_reader rd = qrpc__rcu_read_lock(&n->rcu);
    const qrpc__svctab *t = atomic_load(&n->services);
    size_t i, k = 0;
    int rc = 0;

    memset(out, 0, sizeof *out);
    if (t == NULL || t->count == 0)
        goto out;
    out->items = calloc(t->count, sizeof *out->items);
    if (out->items == NULL) {
        rc = QRPC_ENOMEM;
        goto out;
    }
    for (i = 0; i <= t->mask && k < t->count; i++) {
        const qrpc__svc *s = t->slot[i];

        if (s == NULL)
            continue;
        out->items[k].name = strdup(s->desc->name);
        out->items[k].ver = s->desc->version;
        k++;
        out->len = k;
        if (out->items[k - 1].name == NULL) {
            rc = QRPC_ENOMEM;
            break;
        }
    }

out:
    qrpc__rcu_read_unlock(&n->rcu, rd);
    if (rc != 0)
        qrpc_ServiceRef_list_free(out);
    return rc;
}

/* ---- the agent ----------------------------------------------------------------- */

/* Registers (or registers again); called without the lock. */
static void bind_join(qrpc__bind *b)
{
    qrpc_node *n = b->node;
    qrpc_Registration reg;
    qrpc_Address addr[2];
    qrpc__lease lease;
    uint32_t hint;
    int rc;

    memset(&reg, 0, sizeof reg);
    pthread_mutex_lock(&b->lock);
    hint = b->rank;
    b->dirty = false;
    pthread_mutex_unlock(&b->lock);
    addr[0].transport = (char *)"tcp";
    addr[0].address = n->address;
    reg.id = n->incarnation;
    reg.rank_hint = hint;
    reg.addresses.items = addr;
    reg.addresses.len = 1;
    if (qrpc__rdma_address(n) != NULL) {
        /* next to TCP: nodes with the same kind of device use it instead */
        addr[1].transport = (char *)qrpc__rdma_transport(n);
        addr[1].address = (char *)qrpc__rdma_address(n);
        reg.addresses.len = 2;
    }
    rc = bind_services(n, &reg.services);
    if (rc == 0)
        rc = qrpc__binder_join(b->ops, b->bs, &reg, &lease);
    qrpc_ServiceRef_list_free(&reg.services);

    pthread_mutex_lock(&b->lock);
    if (rc == 0) {
        if (!b->registered || b->lease_master != lease.master || b->rank != lease.rank)
            qrpc__log(n, "registered with the %s at %s as rank %u", b->ops->name, n->master,
                      (unsigned)lease.rank);
        b->registered = true;
        b->lease_master = lease.master;
        b->rank = lease.rank;
        b->lease_ms = lease.lease_ms != 0 ? lease.lease_ms : 1;
        b->next_hb_ns = qrpc__now_ns(n) + (uint64_t)b->lease_ms * 1000000u / 3;
        b->join_backoff_ns = BIND_BACKOFF_MIN_NS;
        b->join_failing = false;
    } else {
        b->registered = false;
        if (!b->join_failing && rc > 0)
            qrpc__log(n, "cannot register with the %s at %s: it refused (%s)", b->ops->name,
                      n->master, qrpc_MasterError_valid(rc)
                                     ? qrpc_MasterError_name((qrpc_MasterError)rc)
                                     : "an unknown reason");
        else if (!b->join_failing)
            qrpc__log(n, "cannot register with the %s at %s: %s; trying again", b->ops->name,
                      n->master, qrpc_strerror(rc));
        b->join_failing = true;
        b->join_at_ns = qrpc__now_ns(n) + bind_backoff(&b->join_backoff_ns);
        if (!b->first) {
            b->first = true;    /* callers waiting for a table stop waiting */
            pthread_cond_broadcast(&b->first_cond);
        }
    }
    pthread_mutex_unlock(&b->lock);
}

static void bind_heartbeat(qrpc__bind *b)
{
    qrpc_node *n = b->node;
    qrpc__lease lease;
    int rc = qrpc__binder_renew(b->ops, b->bs, n->incarnation, &lease);

    pthread_mutex_lock(&b->lock);
    b->next_hb_ns = qrpc__now_ns(n) + (uint64_t)b->lease_ms * 1000000u / 3;
    if ((rc == 0 && lease.master != b->lease_master) || rc == QRPC__BIND_LOST) {
        /* a new master, or a store that dropped us: register again, now */
        qrpc__log(n, "the %s at %s does not know this node any more; registering again",
                  b->ops->name, n->master);
        b->registered = false;
        b->join_at_ns = 0;
    }
    pthread_mutex_unlock(&b->lock);
}

void qrpc__bind_watched(qrpc__bind *b, int status, qrpc_Update *up)
{
    pthread_mutex_lock(&b->lock);
    b->watch_status = status;
    if (status == 0 && up != NULL) {
        b->watch_update = *up;          /* taken: */
        memset(up, 0, sizeof *up);
    }
    b->watch_done = true;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

/* How long the master may hold a watch: under the retransmission wait. */
static uint32_t bind_hold_ms(const qrpc__bind *b)
{
    uint32_t hold = b->registered ? b->lease_ms / 3 : 1000u;
    int32_t retry = b->node->cfg.retry_ms;

    if (retry > 0 && hold > (uint32_t)retry / 2)
        hold = (uint32_t)retry / 2;
    if (hold < BIND_HOLD_MIN_MS)
        hold = BIND_HOLD_MIN_MS;
    if (hold > BIND_HOLD_MAX_MS)
        hold = BIND_HOLD_MAX_MS;
    return hold;
}

/* Called with the lock held, which it drops around the call. */
static void bind_watch_start(qrpc__bind *b)
{
    uint64_t master = b->have_table ? b->table.master : 0;
    uint64_t epoch = b->have_table ? b->table.epoch : 0;
    uint32_t hold = bind_hold_ms(b);
    int rc;

    b->watch_busy = true;
    pthread_mutex_unlock(&b->lock);
    rc = qrpc__binder_watch(b->ops, b->bs, master, epoch, hold);
    pthread_mutex_lock(&b->lock);
    if (rc != 0) {              /* not started: done will not run */
        b->watch_done = true;
        b->watch_status = rc;
    }
}

const char *qrpc__node_tcp_address(const qrpc_Node *nd)
{
    size_t i;

    for (i = 0; i < nd->addresses.len; i++)
        if (strcmp(nd->addresses.items[i].transport, "tcp") == 0)
            return nd->addresses.items[i].address;
    return NULL;
}

const char *qrpc__node_fe_address(const qrpc_node *n, const qrpc_Node *nd, char *buf,
                                  size_t len)
{
    const char *t = qrpc__rdma_transport(n);
    size_t i;

    for (i = 0; t != NULL && i < nd->addresses.len; i++)
        if (strcmp(nd->addresses.items[i].transport, t) == 0) {
            if ((size_t)snprintf(buf, len, "%s://%s", t,
                                 nd->addresses.items[i].address) >= len)
                break;          /* too long for a FrontEnd: TCP then */
            return buf;
        }
    return qrpc__node_tcp_address(nd);
}

/* Whether t lists at FrontEnd address addr a node that old (NULL: none) did not. */
static bool bind_new_at(const qrpc_node *n, const qrpc_Table *old, const qrpc_Table *t,
                        const char *addr)
{
    char buf[QRPC__ADDR_MAX];
    size_t i, j;

    for (i = 0; i < t->nodes.len; i++) {
        const qrpc_Node *nd = &t->nodes.items[i];
        const char *a = qrpc__node_fe_address(n, nd, buf, sizeof buf);
        bool known = false;

        if (a == NULL || strcmp(a, addr) != 0)
            continue;
        for (j = 0; old != NULL && j < old->nodes.len && !known; j++)
            known = old->nodes.items[j].id == nd->id;
        if (!known)
            return true;
    }
    return false;
}

/* Clears the down marks of the FrontEnds of nodes new in t. */
static void bind_undown(qrpc_node *n, const qrpc_Table *old, const qrpc_Table *t)
{
    qrpc__fe_entry *e;

    pthread_mutex_lock(&n->fe_lock);
    for (e = n->fes; e != NULL; e = e->next)
        if (bind_new_at(n, old, t, e->addr))
            atomic_store(&e->fe.down_until_ns, 0);
    pthread_mutex_unlock(&n->fe_lock);
}

/* The agent's answer to a completed watch; called with the lock held. */
static void bind_watch_result(qrpc__bind *b)
{
    qrpc_node *n = b->node;
    qrpc_Update up = b->watch_update;
    int rc = b->watch_status;
    qrpc_Table old;

    memset(&b->watch_update, 0, sizeof b->watch_update);
    b->watch_done = false;
    b->watch_busy = false;
    if (rc != 0) {
        if (!b->watch_failing && rc != QRPC_ECLOSED)
            qrpc__log(n, "cannot follow the table of the %s at %s: %s; trying again",
                      b->ops->name, n->master, qrpc_strerror(rc));
        b->watch_failing = true;
        b->watch_at_ns = qrpc__now_ns(n) + bind_backoff(&b->watch_backoff_ns);
        if (!b->first) {
            b->first = true;
            pthread_cond_broadcast(&b->first_cond);
        }
        return;
    }
    b->watch_failing = false;
    b->watch_backoff_ns = BIND_BACKOFF_MIN_NS;
    b->watch_at_ns = 0;
    if (!up.changed) {
        qrpc_Update_free(&up);
        return;
    }
    old = b->table;
    bind_undown(n, b->have_table ? &old : NULL, &up.table);
    b->table = up.table;
    memset(&up.table, 0, sizeof up.table);
    qrpc_Update_free(&up);
    if (b->have_table)
        qrpc_Table_free(&old);
    b->have_table = true;
    b->gen++;
    b->first = true;
    pthread_cond_broadcast(&b->first_cond);
    /* a table from a master that does not know our lease: register again */
    if (b->registered && b->table.master != b->lease_master) {
        b->registered = false;
        b->join_at_ns = 0;
    }
}

static void *bind_main(void *arg)
{
    qrpc__bind *b = arg;
    qrpc_node *n = b->node;
    bool listens = n->address[0] != '\0';

    pthread_mutex_lock(&b->lock);
    while (!b->stopping) {
        uint64_t now = qrpc__now_ns(n), until = UINT64_MAX;

        if (b->watch_done) {
            bind_watch_result(b);
            continue;
        }
        if (listens && (!b->registered || b->dirty)) {
            if (now >= b->join_at_ns) {
                pthread_mutex_unlock(&b->lock);
                bind_join(b);
                pthread_mutex_lock(&b->lock);
                continue;
            }
            until = b->join_at_ns;
        }
        if (b->registered) {
            if (now >= b->next_hb_ns) {
                pthread_mutex_unlock(&b->lock);
                bind_heartbeat(b);
                pthread_mutex_lock(&b->lock);
                continue;
            }
            if (b->next_hb_ns < until)
                until = b->next_hb_ns;
        }
        if (!b->watch_busy) {
            if (now >= b->watch_at_ns) {
                bind_watch_start(b);
                continue;
            }
            if (b->watch_at_ns < until)
                until = b->watch_at_ns;
        }
        if (until == UINT64_MAX)
            pthread_cond_wait(&b->cond, &b->lock);
        else if (until > now)
            qrpc__cond_wait_ns(&b->cond, &b->lock, until - now);
    }
    pthread_mutex_unlock(&b->lock);
    /* Tell the cluster at once rather than after a lease. */
    if (b->registered)
        qrpc__binder_leave(b->ops, b->bs, n->incarnation);
    return NULL;
}

/* ---- life cycle ---------------------------------------------------------------- */

/* The backend for the master's address: zk://... or host:port. */
static const qrpc__binder_ops *bind_backend(const char *addr)
{
    return strncmp(addr, "zk://", 5) == 0 ? &qrpc__binder_zk : &qrpc__binder_master;
}

qrpc_node *qrpc__bind_node(const qrpc__bind *b)
{
    return b->node;
}

int qrpc__bind_start(qrpc_node *n, const char *addr)
{
    qrpc__bind *b;
    int rc = QRPC_ENOMEM, made = 0;     /* how many of lock, cond, first_cond exist */

    b = calloc(1, sizeof *b);
    if (b == NULL)
        return QRPC_ENOMEM;
    b->node = n;
    b->ops = bind_backend(addr);
    b->rank = BIND_NO_RANK;
    b->join_backoff_ns = BIND_BACKOFF_MIN_NS;
    b->watch_backoff_ns = BIND_BACKOFF_MIN_NS;
    b->gen = 1;
    snprintf(n->master, sizeof n->master, "%s", addr);
    if (pthread_mutex_init(&b->lock, NULL) != 0)
        goto fail;
    made++;
    if (qrpc__cond_init_mono(&b->cond) != 0)
        goto fail;
    made++;
    if (qrpc__cond_init_mono(&b->first_cond) != 0)
        goto fail;
    made++;
    rc = qrpc__binder_open(b->ops, b, addr, &b->bs);
    if (rc != 0)
        goto fail;
    n->bind = b;
    if (pthread_create(&b->thread, NULL, bind_main, b) != 0) {
        n->bind = NULL;
        rc = QRPC_ENOMEM;
        goto fail;
    }
    return 0;

fail:
    qrpc__binder_close(b->ops, b->bs);
    if (made > 2)
        pthread_cond_destroy(&b->first_cond);
    if (made > 1)
        pthread_cond_destroy(&b->cond);
    if (made > 0)
        pthread_mutex_destroy(&b->lock);
    free(b);
    n->master[0] = '\0';
    return rc;
}

void qrpc__bind_stop(qrpc_node *n)
{
    qrpc__bind *b = n->bind;

    if (b == NULL)
        return;
    pthread_mutex_lock(&b->lock);
    b->stopping = true;
    b->first = true;
    pthread_cond_signal(&b->cond);
    pthread_cond_broadcast(&b->first_cond);
    pthread_mutex_unlock(&b->lock);
    pthread_join(b->thread, NULL);
}

void qrpc__bind_fini(qrpc_node *n)
{
    qrpc__bind *b = n->bind;

    if (b == NULL)
        return;
    /* every call has completed: the FrontEnds closed and the loops stopped */
    qrpc__binder_close(b->ops, b->bs);
    qrpc_Update_free(&b->watch_update);
    if (b->have_table)
        qrpc_Table_free(&b->table);
    pthread_cond_destroy(&b->first_cond);
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->lock);
    free(b);
    n->bind = NULL;
}

void qrpc__bind_changed(qrpc_node *n)
{
    qrpc__bind *b = n->bind;

    if (b == NULL)
        return;
    pthread_mutex_lock(&b->lock);
    b->dirty = true;
    b->join_at_ns = 0;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

/* ---- picking a node ------------------------------------------------------------- */

void qrpc__fe_mark_down(qrpc_node *n, qrpc__fe *fe)
{
    if (fe != &n->local)
        atomic_store(&fe->down_until_ns, qrpc__now_ns(n) + BIND_DOWN_NS);
}

void qrpc__bcache_fini(qrpc__bcache *bc)
{
    free(bc->fes);
    memset(bc, 0, sizeof *bc);
}

static bool bind_offers(const qrpc_Node *nd, const qrpc__svc_key *k, bool *other)
{
    size_t i;

    for (i = 0; i < nd->services.len; i++) {
        const qrpc_ServiceRef *s = &nd->services.items[i];

        if (strlen(s->name) != k->name_len || memcmp(s->name, k->name, k->name_len) != 0)
            continue;
        if (s->ver == k->version)
            return true;
        *other = true;
    }
    return false;
}

/* Rebuilds c's cache from the table; called with the lock held. */
static int bind_rebuild(qrpc__bind *b, qrpc_client *c)
{
    qrpc__bcache *bc = &c->bc;
    qrpc_node *n = c->node;
    char abuf[QRPC__ADDR_MAX];
    size_t i;
    int rc = 0;

    bc->n = 0;
    bc->other_versions = false;
    for (i = 0; b->have_table && i < b->table.nodes.len; i++) {
        const qrpc_Node *nd = &b->table.nodes.items[i];
        const char *addr;
        qrpc__fe *fe;

        if (nd->id == n->incarnation || !bind_offers(nd, &c->key, &bc->other_versions))
            continue;
        addr = qrpc__node_fe_address(n, nd, abuf, sizeof abuf);
        if (addr == NULL || qrpc__node_fe(n, addr, &fe) != 0)
            continue;           /* an address we cannot use is no candidate */
        if (bc->n == bc->cap) {
            size_t cap = bc->cap != 0 ? bc->cap * 2 : 4;
            qrpc__fe **fes = realloc(bc->fes, cap * sizeof *fes);

            if (fes == NULL) {
                rc = QRPC_ENOMEM;
                break;
            }
            bc->fes = fes;
            bc->cap = cap;
        }
        bc->fes[bc->n++] = fe;
    }
    bc->gen = rc == 0 ? b->gen : 0;
    return rc;
}

/* Waits (lock held) until *flag (a field of b), the agent's stop or deadline_ns. */
static void bind_wait(qrpc__bind *b, const bool *flag, uint64_t deadline_ns)
{
    while (!*flag && !b->stopping) {
        uint64_t now = qrpc__now_ns(b->node);

        if (now >= deadline_ns)
            return;
        qrpc__cond_wait_ns(&b->first_cond, &b->lock, deadline_ns - now);
    }
}

int qrpc__bind_pick(qrpc_client *c, const qrpc__fe *avoid, uint64_t deadline_ns,
                    qrpc__fe **out)
{
    qrpc_node *n = c->node;
    qrpc__bind *b = n->bind;
    qrpc__bcache *bc = &c->bc;
    qrpc__fe *pick = NULL, *probe = NULL;
    uint64_t now = 0;
    size_t i;
    int rc = 0;

    if (b == NULL || qrpc__serves(n, &c->key)) {
        *out = &n->local;
        return 0;
    }
    pthread_mutex_lock(&b->lock);
    if (!b->have_table)
        bind_wait(b, &b->first, deadline_ns);
    if (b->stopping) {
        rc = QRPC_ECLOSED;
        goto out;
    }
    if (!b->have_table) {
        if (bc->said_gen != b->gen) {   /* once per client, not per call */
            bc->said_gen = b->gen;
            qrpc__log(n, "%s version %u: no cluster table yet (the master at %s has "
                      "not answered)", c->key.name, (unsigned)c->key.version, n->master);
        }
        rc = QRPC_EUNAVAILABLE;
        goto out;
    }
    if (bc->gen != b->gen) {
        rc = bind_rebuild(b, c);
        if (rc != 0)
            goto out;
    }
    for (i = 0; i < bc->n && pick == NULL; i++) {
        qrpc__fe *fe = bc->fes[(bc->next + i) % bc->n];
        uint64_t down = atomic_load_explicit(&fe->down_until_ns, memory_order_relaxed);

        if (fe == avoid)
            continue;
        if (down != 0 && now == 0)
            now = qrpc__now_ns(n);      /* the clock only when some node was found down */
        if (down == 0 || down <= now)
            pick = fe;
        else if (probe == NULL)
            probe = fe;         /* if every one is down: try it all the same */
    }
    if (pick == NULL && avoid == NULL)
        pick = probe;           /* a failover never goes back to a node found down */
    if (pick != NULL) {
        bc->next++;
        *out = pick;
        goto out;
    }
    if (bc->n != 0) {
        rc = QRPC_EUNAVAILABLE;         /* avoid was the only one */
        goto out;
    }
    rc = bc->other_versions ? QRPC_ENOVERSION : QRPC_ENOSERVICE;
    if (bc->said_gen != b->gen) {
        bc->said_gen = b->gen;
        qrpc__log(n, "%s version %u: %s", c->key.name, (unsigned)c->key.version,
                  bc->other_versions ? "no node offers this version (qrpc_node_versions() "
                                       "lists those offered)"
                                     : "no node offers this service");
    }

out:
    pthread_mutex_unlock(&b->lock);
    return rc;
}

/* ---- what the node knows ------------------------------------------------------- */

int qrpc_node_get_binding(const qrpc_node *n, qrpc_binding_info *out)
{
    qrpc__bind *b;

    if (n == NULL || out == NULL || n->bind == NULL)
        return QRPC_EINVAL;
    b = n->bind;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&b->lock);
    out->registered = b->registered;
    out->rank = b->registered ? b->rank : 0;
    out->node_id = n->incarnation;
    out->master = b->have_table ? b->table.master : b->lease_master;
    out->epoch = b->have_table ? b->table.epoch : 0;
    out->nodes = b->have_table ? (uint32_t)b->table.nodes.len : 0;
    pthread_mutex_unlock(&b->lock);
    return 0;
}

int qrpc__bind_table(qrpc_node *n, uint64_t deadline_ns, qrpc_Table *out)
{
    qrpc__bind *b = n->bind;
    int rc;

    memset(out, 0, sizeof *out);
    if (b == NULL)
        return QRPC_EINVAL;
    pthread_mutex_lock(&b->lock);
    bind_wait(b, &b->have_table, deadline_ns);
    if (b->stopping)
        rc = QRPC_ECLOSED;
    else
        rc = b->have_table ? qrpc_Table_copy(out, &b->table) : QRPC_EUNAVAILABLE;
    pthread_mutex_unlock(&b->lock);
    return rc;
}

static int bind_u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

int qrpc_node_versions(const qrpc_node *n, const char *name, uint32_t *out, size_t max)
{
    qrpc__bind *b;
    uint32_t *v = NULL;
    size_t cap = 0, count = 0, i, j, k;
    int rc;

    if (n == NULL || name == NULL || n->bind == NULL || (out == NULL && max != 0))
        return QRPC_EINVAL;
    b = n->bind;
    pthread_mutex_lock(&b->lock);
    for (i = 0; b->have_table && i < b->table.nodes.len; i++) {
        const qrpc_Node *nd = &b->table.nodes.items[i];

        for (j = 0; j < nd->services.len; j++) {
            uint32_t ver = nd->services.items[j].ver;

            if (strcmp(nd->services.items[j].name, name) != 0)
                continue;
            for (k = 0; k < count && v[k] != ver; k++)
                ;
            if (k < count)
                continue;
            if (count == cap) {
                uint32_t *nv = realloc(v, (cap = cap ? cap * 2 : 8) * sizeof *v);

                if (nv == NULL) {
                    pthread_mutex_unlock(&b->lock);
                    free(v);
                    return QRPC_ENOMEM;
                }
                v = nv;
            }
            v[count++] = ver;
        }
    }
    pthread_mutex_unlock(&b->lock);
    if (count != 0)
        qsort(v, count, sizeof *v, bind_u32_cmp);
    for (i = 0; i < count && i < max; i++)
        out[i] = v[i];
    free(v);
    rc = count > INT32_MAX ? INT32_MAX : (int)count;
    return rc;
}
