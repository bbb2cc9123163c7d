/*
 * node.c - the life of a node (one RpcService per process): its
 * configuration, creation, destruction and FrontEnds.  What the node serves
 * and the dispatch of calls are in service.c; clients in client.c; the
 * network side (loop threads, connections, running received requests) in
 * io.c, conn.c, tcp.c and work.c.
 *
 * A node that only makes local calls has no thread at all.  Listening, or
 * the first client of a remote destination, starts the loop threads.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bind.h"
#include "dlog.h"
#include "net.h"
#include "rdma.h"
#include "testing.h"

#define NODE_DEFAULT_WORKERS      2u
#define NODE_DEFAULT_MAX_MESSAGE  (64u << 20)
#define NODE_DEFAULT_MAX_INFLIGHT 1024u
#define NODE_DEFAULT_TIMEOUT_MS   30000u
#define NODE_DEFAULT_STALL_MS     30000u
#define NODE_DEFAULT_SPIN_US      50
#define NODE_DEFAULT_LEASE_MS     60000u
#define NODE_DEDUP_CLIENTS        65536u
#define NODE_DEDUP_WAITERS        4096u
#define NODE_DEDUP_ENTRIES        (1u << 18)
#define NODE_MAX_SPIN_US          100000
#define NODE_DEFAULT_RETRY_MS     1000
#define NODE_DEFAULT_RDMA_CREDITS 32
#define NODE_MIN_RDMA_CREDITS     4
#define NODE_MAX_RDMA_CREDITS     1024
#define NODE_MIN_TCP_RCVBUF       4096u
#define NODE_MAX_TCP_RCVBUF       (1u << 30)
#define NODE_MAX_RETRY_MS         3600000
#define NODE_DEFAULT_BULK_LANE    (256 << 10)

/* A misuse that would otherwise deadlock: say what it was, then abort. */
static _Noreturn void node_panic(const char *msg)
{
    fprintf(stderr, "qrpc: fatal: %s\n", msg);
    abort();
}

void qrpc_node_config_init(qrpc_node_config *cfg)
{
    cfg->listen = NULL;
    cfg->workers = NODE_DEFAULT_WORKERS;
    cfg->max_message = NODE_DEFAULT_MAX_MESSAGE;
    cfg->max_inflight = NODE_DEFAULT_MAX_INFLIGHT;
    cfg->timeout_ms = NODE_DEFAULT_TIMEOUT_MS;
    cfg->max_depth = QRPC_DEFAULT_MAX_DEPTH;
    cfg->max_frame = QRPC__FRAME_DEFAULT;
    cfg->stall_timeout_ms = NODE_DEFAULT_STALL_MS;
    cfg->spin_us = NODE_DEFAULT_SPIN_US;
    cfg->lease_ms = NODE_DEFAULT_LEASE_MS;
    cfg->retry_ms = NODE_DEFAULT_RETRY_MS;
    cfg->master = NULL;
    cfg->dedup_log = NULL;
    cfg->rdma = NULL;
    cfg->rdma_listen = NULL;
    cfg->rdma_polling = 0;
    cfg->rdma_credits = NODE_DEFAULT_RDMA_CREDITS;
    cfg->tcp_rcvbuf = 0;
    cfg->bulk_lane = NODE_DEFAULT_BULK_LANE;
    cfg->log = NULL;
    cfg->log_arg = NULL;
}

/* out = in with every 0 replaced by its default, or an error. */
static int node_config_fill(qrpc_node_config *out, const qrpc_node_config *in)
{
    qrpc_node_config_init(out);
    if (in == NULL)
        return 0;
    if (in->workers > QRPC__MAX_WORKERS ||
        (in->max_message != 0 && in->max_message < QRPC__MIN_MESSAGE) ||
        in->max_inflight > QRPC__MAX_INFLIGHT ||
        in->max_depth > QRPC__MAX_DEPTH ||
        (in->max_frame != 0 && (in->max_frame < QRPC__FRAME_MIN ||
                                in->max_frame > QRPC__MAX_FRAME)) ||
        in->spin_us < -1 || in->spin_us > NODE_MAX_SPIN_US ||
        in->retry_ms < -1 || in->retry_ms > NODE_MAX_RETRY_MS ||
        (in->dedup_log != NULL && (in->listen == NULL || in->dedup_log[0] == '\0')) ||
        in->rdma_polling > 1 || in->bulk_lane < -1 ||
        (in->tcp_rcvbuf != 0 && (in->tcp_rcvbuf < NODE_MIN_TCP_RCVBUF ||
                                 in->tcp_rcvbuf > NODE_MAX_TCP_RCVBUF)) ||
        (in->rdma_credits != 0 && (in->rdma_credits < NODE_MIN_RDMA_CREDITS ||
                                   in->rdma_credits > NODE_MAX_RDMA_CREDITS)))
        return QRPC_EINVAL;
    out->listen = in->listen;
    out->master = in->master;
    out->dedup_log = in->dedup_log;
    out->rdma = in->rdma;
    out->rdma_listen = in->rdma_listen;
    out->rdma_polling = in->rdma_polling;
    out->tcp_rcvbuf = in->tcp_rcvbuf;
    if (in->rdma_credits != 0)
        out->rdma_credits = in->rdma_credits;
    out->log = in->log;
    out->log_arg = in->log_arg;
    if (in->workers != 0)
        out->workers = in->workers;
    if (in->max_message != 0)
        out->max_message = in->max_message;
    if (in->max_inflight != 0)
        out->max_inflight = in->max_inflight;
    if (in->timeout_ms != 0)
        out->timeout_ms = in->timeout_ms;
    if (in->max_depth != 0)
        out->max_depth = in->max_depth;
    if (in->max_frame != 0)
        out->max_frame = in->max_frame;
    if (in->stall_timeout_ms != 0)
        out->stall_timeout_ms = in->stall_timeout_ms;
    if (in->spin_us != 0)
        out->spin_us = in->spin_us;
    if (in->lease_ms != 0)
        out->lease_ms = in->lease_ms;
    if (in->retry_ms != 0)
        out->retry_ms = in->retry_ms;
    if (in->bulk_lane != 0)
        out->bulk_lane = in->bulk_lane;
    return 0;
}

/*
 * The reply cache (qrpc(3), LIMITS).  A client's unacknowledged calls are
 * those in flight plus those answered after its oldest call in flight,
 * which a pipelining client with one slow call piles up quickly: hence a
 * generous cap per client, and one for all clients together.
 */
static int node_dedup(qrpc_node *n)
{
    qrpc__dedup_limits lim;

    lim.lease_ns = (uint64_t)n->cfg.lease_ms * 1000000u;
    lim.max_clients = NODE_DEDUP_CLIENTS;
    lim.max_entries = (size_t)n->cfg.max_inflight * 64;
    lim.max_total_entries = NODE_DEDUP_ENTRIES;
    lim.max_bytes = (size_t)n->cfg.max_message * 2;
    lim.max_waiters = NODE_DEDUP_WAITERS;
    n->dedup = qrpc__dedup_new(&lim, qrpc__work_dedup_answer, n);
    return n->dedup != NULL ? 0 : QRPC_ENOMEM;
}

/*
 * Listening: the reply cache (and what its log kept from earlier lives),
 * the loop threads and the socket.
 */
static int node_listen(qrpc_node *n)
{
    size_t restored = 0;
    int rc;

    n->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    rc = node_dedup(n);
    if (rc == 0 && n->cfg.dedup_log != NULL)
        rc = qrpc__dlog_open(n, n->cfg.dedup_log, &restored, &n->dlog);
    if (rc == 0)
        rc = qrpc__io_start(n);
    if (rc == 0 && restored != 0)       /* their clients' leases run from now */
        qrpc__io_wake(n, qrpc__now_ns(n) + (uint64_t)n->cfg.lease_ms * 1000000u);
    if (rc == 0)
        rc = qrpc__tcp_listen(n);
    if (rc == 0)
        rc = qrpc__rdma_listen(n);
    return rc;
}

/*
 * Binding: cfg.master, else $QRPC_MASTER; "" for none.  QRPC_EADDR for an
 * address that does not parse (or is too long), QRPC_ENOTSUP for zk://
 * in a build without ZooKeeper.
 */
static int node_bind(qrpc_node *n)
{
    const char *addr = n->cfg.master;
    int rc;

    if (addr == NULL)
        addr = getenv("QRPC_MASTER");
    n->cfg.master = NULL;
    if (addr == NULL || addr[0] == '\0')
        return 0;
    if (strlen(addr) >= sizeof n->master) {
        qrpc__log(n, "the master's address is longer than %zu bytes", sizeof n->master - 1);
        return QRPC_EADDR;
    }
    rc = qrpc__bind_start(n, addr);
    if (rc == 0)
        n->cfg.master = n->master;
    return rc;
}

int qrpc_node_create(const qrpc_node_config *cfg, qrpc_node **out)
{
    qrpc__svctab *tab;
    qrpc_node *n;
    int rc;

    if (out == NULL)
        return QRPC_EINVAL;
    *out = NULL;
    n = calloc(1, sizeof *n);
    if (n == NULL)
        return QRPC_ENOMEM;
    rc = node_config_fill(&n->cfg, cfg);
    if (rc != 0)
        goto fail_free;
    atomic_init(&n->closed, 0);
    atomic_init(&n->refs, 1);
    qrpc__counter_init(&n->st_calls, 0);
    qrpc__counter_init(&n->st_retransmissions, 0);
    qrpc__counter_init(&n->st_caller_reads, 0);
    rc = qrpc__rcu_init(&n->rcu);
    if (rc != 0)
        goto fail_free;
    if (pthread_mutex_init(&n->lock, NULL) != 0) {
        rc = QRPC_ENOMEM;
        goto fail_rcu;
    }
    tab = qrpc__services_new();
    if (tab == NULL) {
        rc = QRPC_ENOMEM;
        goto fail_lock;
    }
    atomic_init(&n->services, tab);
    rc = qrpc__fe_init(&n->local, &qrpc__tran_local, n, "local");
    if (rc != 0)
        goto fail_tab;
    n->spare_fd = -1;
    n->incarnation = qrpc__random64();
    if (pthread_mutex_init(&n->fe_lock, NULL) != 0) {
        rc = QRPC_ENOMEM;
        goto fail_tab;
    }
    rc = qrpc__retry_init(n);
    if (rc != 0) {
        pthread_mutex_destroy(&n->fe_lock);
        goto fail_tab;
    }
    rc = qrpc__rdma_open(n);
    if (rc != 0) {
        qrpc__retry_fini(n);
        pthread_mutex_destroy(&n->fe_lock);
        goto fail_tab;
    }
    if (n->cfg.listen != NULL) {
        rc = node_listen(n);
        if (rc != 0) {
            qrpc__rdma_stop(n);
            qrpc__io_stop(n);
            qrpc__rdma_close(n);
            qrpc__dlog_close(n->dlog);
            qrpc__dedup_free(n->dedup);
            if (n->spare_fd >= 0)
                close(n->spare_fd);
            qrpc__retry_fini(n);
            pthread_mutex_destroy(&n->fe_lock);
            goto fail_tab;
        }
    }
    n->cfg.listen = n->address[0] != '\0' ? n->address : NULL;
    rc = node_bind(n);
    if (rc != 0) {
        qrpc_node_destroy(n);
        return rc;
    }
    *out = n;
    return 0;

fail_tab:
    qrpc__services_free(tab);
fail_lock:
    pthread_mutex_destroy(&n->lock);
fail_rcu:
    qrpc__rcu_fini(&n->rcu);
fail_free:
    free(n);
    return rc;
}

void qrpc_node_destroy(qrpc_node *n)
{
    qrpc__fe_entry *e;
    qrpc__svctab *tab;

    if (n == NULL)
        return;
    /* The grace period below would wait for the handler calling us. */
    if (qrpc__in_handler())
        node_panic("qrpc_node_destroy() called from a handler");

    /* first leave the cluster, while the node still answers */
    qrpc__bind_stop(n);
    pthread_mutex_lock(&n->lock);
    atomic_store(&n->closed, 1);
    tab = atomic_load(&n->services);
    pthread_mutex_unlock(&n->lock);
    qrpc__fe_close(&n->local);
    /*
     * Closed outside fe_lock: closing completes calls, and a completion
     * may take the binding lock, which is held while taking fe_lock
     * (bind.c).  Entries are only ever prepended and live as long as the
     * node, so the list from the head read here is stable.
     */
    pthread_mutex_lock(&n->fe_lock);
    e = n->fes;
    pthread_mutex_unlock(&n->fe_lock);
    for (; e != NULL; e = e->next)
        qrpc__fe_close(&e->fe);
    /* calls waiting to be sent again end now, QRPC_ECLOSED */
    qrpc__retry_stop(n);
    qrpc__rdma_stop(n);
    /*
     * Requests being run finish and are answered (the FrontEnds closed
     * above, a handler waiting for a call of its own has its answer:
     * QRPC_ECLOSED); then every connection closes, and calls still
     * waiting on one complete with QRPC_ECLOSED.  Duplicates still waiting
     * in the reply cache are answered QRPC_ECLOSED by its free.
     */
    qrpc__io_stop(n);
    qrpc__rdma_unlisten(n);
    /* the last records written and their calls answered, before the cache goes */
    qrpc__dlog_close(n->dlog);
    n->dlog = NULL;
    qrpc__dedup_free(n->dedup);
    n->dedup = NULL;
    /* its calls have all completed: its clients can go, with their references */
    qrpc__bind_fini(n);
    /*
     * Every dispatch that saw closed == 0 has returned after this; every
     * later one answers QRPC_ECLOSED without reading the table.
     */
    qrpc__rcu_synchronize(&n->rcu);
    atomic_store(&n->services, NULL);
    qrpc__services_free(tab);
    qrpc__node_unref(n);
}

void qrpc__node_unref(qrpc_node *n)
{
    qrpc__fe_entry *e, *next;

    if (atomic_fetch_sub(&n->refs, 1) != 1)
        return;
    qrpc__fe_fini(&n->local);
    for (e = n->fes; e != NULL; e = next) {
        next = e->next;
        qrpc__fe_fini(&e->fe);
        free(e);
    }
    /* its connections are gone with the FrontEnds and the loop */
    qrpc__rdma_close(n);
    pthread_mutex_destroy(&n->fe_lock);
    if (n->spare_fd >= 0)
        close(n->spare_fd);
    qrpc__retry_fini(n);
    pthread_mutex_destroy(&n->lock);
    qrpc__rcu_fini(&n->rcu);
    free(n);
}

void qrpc_node_get_stats(const qrpc_node *n, qrpc_node_stats *out)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof *out);
    if (n == NULL)
        return;
    out->calls = qrpc__counter_sum(&n->st_calls);
    out->retransmissions = qrpc__counter_sum(&n->st_retransmissions);
    out->caller_reads = qrpc__counter_sum(&n->st_caller_reads);
    if (n->dedup != NULL) {
        struct qrpc__dedup_stats ds;

        qrpc__dedup_stats(n->dedup, &ds);
        out->duplicates = ds.duplicates;
        out->refused = ds.stale + ds.unknown;
    }
}

void qrpc__node_set_clock(qrpc_node *n, uint64_t (*now_ns)(void *arg), void *arg)
{
    n->now = now_ns;
    n->now_arg = arg;
}

const char *qrpc_node_address(const qrpc_node *n)
{
    return n != NULL && n->address[0] != '\0' ? n->address : NULL;
}

int qrpc__node_fe(qrpc_node *n, const char *addr, qrpc__fe **out)
{
    qrpc__fe_entry *e;
    int rc = 0;

    if (strlen(addr) >= QRPC__ADDR_MAX)
        return QRPC_EADDR;
    pthread_mutex_lock(&n->fe_lock);
    for (e = n->fes; e != NULL; e = e->next)
        if (strcmp(e->addr, addr) == 0)
            break;
    if (e == NULL) {
        e = calloc(1, sizeof *e);
        if (e == NULL) {
            rc = QRPC_ENOMEM;
            goto out;
        }
        snprintf(e->addr, sizeof e->addr, "%s", addr);
        rc = qrpc__fe_init(&e->fe, strstr(addr, "://") != NULL ? &qrpc__tran_rdma
                                                               : &qrpc__tran_tcp, n, addr);
        if (rc == 0)
            rc = qrpc__io_start(n);
        if (rc != 0) {
            if (e->fe.data != NULL)
                qrpc__fe_fini(&e->fe);
            free(e);
            goto out;
        }
        e->next = n->fes;
        n->fes = e;
    }
    *out = &e->fe;

out:
    pthread_mutex_unlock(&n->fe_lock);
    return rc;
}
