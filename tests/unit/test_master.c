/*
 * test_master.c - binding through a master, in one process: the master
 * started with qrpc_master_start() on 127.0.0.1 (an ephemeral port) and
 * nodes created with cfg.master naming it.
 *
 * Three parts:
 *   - the master's semantics, spoken to directly with the generated
 *     qrpc.Master stubs (master.h, idl/master.qidl) from a node that has
 *     no master of its own: ranks, re-registration, eviction by address,
 *     leases, watch (and its first lease after a start), stopping;
 *   - bad input (refused registrations, garbage on a connection,
 *     arguments that do not decode), after which the master still serves
 *     everyone else and its table is what it was;
 *   - the node side (bind.c, client.c): serving nodes registering
 *     themselves, a client node binding to bank.Bank by name, calls
 *     spread over the servers and kept local when the caller serves the
 *     service, services served or withdrawn later, QRPC_ENOSERVICE and
 *     QRPC_ENOVERSION, qrpc_node_get_binding(), the configuration and
 *     QRPC_MASTER, a master that is not there, one that restarts, a node
 *     the master dropped, failover away from table entries that refuse
 *     connections or never answer (entries the test registers itself),
 *     and a node that leaves.
 *
 * Which node ran a call is known from the bank.Bank handlers, which count
 * their runs per node and answer the node's name.  No test sleeps to
 * synchronise: each polls a condition (a table, a binding, a log line, a
 * completion) against a deadline and fails when it passes.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>

#include "tcputil.h"
#include "bank.h"
#include "master.h"

#define WAIT_MS     10000u      /* the bound of every poll for a state */
#define PROMPT_MS   3000u       /* what "at once" may take, sanitizers included */
#define NO_RANK     0xffffffffu
#define CALL_MS     10000u      /* deadline of the tests' own calls */

/* Stored in an out parameter first, to check that an error sets it to NULL. */
static char not_null;
#define NOT_NULL ((void *)&not_null)

/* ======================================================================
 * Helpers: a master with a log, a node, the qrpc.Master client
 * ====================================================================== */

/* A master plus a node without a master holding a qrpc.Master client of it. */
typedef struct mt_env {
    qrpc_master *m;
    tt_log mlog;
    qrpc_node *n;
    tt_log nlog;
    qrpc_client *c;
    char addr[64];              /* the master's address */
} mt_env;

/* A master's config: any port of 127.0.0.1, lines to log. */
static void mt_master_config(qrpc_master_config *cfg, tt_log *log)
{
    qrpc_master_config_init(cfg);
    cfg->listen = "127.0.0.1:0";
    cfg->log = tt_log_fn;
    cfg->log_arg = log;
}

/* A node whose log goes to log; listen and master as qrpc_node_config has them. */
static qrpc_node *mt_node(tt_log *log, const char *listen, const char *master)
{
    return tt_node(log, listen, master, NULL);
}

/*
 * Starts a master (cfg NULL: the defaults) and a client of it.  The
 * client's node sends each request once (retry_ms -1): a watch the master
 * holds longer than the retransmission wait is then never sent twice.
 */
static void mt_open(mt_env *e, const qrpc_master_config *cfg)
{
    qrpc_master_config mc;
    qrpc_node_config nc;
    int rc;

    memset(e, 0, sizeof *e);
    tt_log_init(&e->mlog);
    if (cfg != NULL)
        mc = *cfg;
    else
        qrpc_master_config_init(&mc);
    mc.listen = "127.0.0.1:0";
    mc.log = tt_log_fn;
    mc.log_arg = &e->mlog;
    rc = qrpc_master_start(&mc, &e->m);
    ck_assert_msg(rc == 0, "qrpc_master_start: %s", qrpc_err_name(rc));
    ck_assert_ptr_nonnull(qrpc_master_address(e->m));
    snprintf(e->addr, sizeof e->addr, "%s", qrpc_master_address(e->m));
    ck_assert_msg(strncmp(e->addr, "127.0.0.1:", 10) == 0 && atoi(e->addr + 10) > 0,
                  "master address %s", e->addr);

    tt_log_init(&e->nlog);
    qrpc_node_config_init(&nc);
    nc.master = "";             /* not registered: only the test's own joins are */
    nc.retry_ms = -1;
    nc.log = tt_log_fn;
    nc.log_arg = &e->nlog;
    ck_assert_int_eq(qrpc_node_create(&nc, &e->n), 0);
    ck_assert_int_eq(qrpc_Master_connect(e->n, e->addr, &e->c), 0);
    qrpc_client_set_timeout(e->c, CALL_MS);
}

static void mt_close(mt_env *e)
{
    qrpc_client_destroy(e->c);
    qrpc_node_destroy(e->n);
    qrpc_master_stop(e->m);
    tt_log_fini(&e->nlog);
    tt_log_fini(&e->mlog);
    memset(e, 0, sizeof *e);
}

static int mt_port(const char *addr)
{
    const char *colon = strrchr(addr, ':');

    ck_assert_ptr_nonnull(colon);
    return atoi(colon + 1);
}

/* A registration's service list, by (name, version). */
#define SREF(name, ver) { (char *)(name), (ver) }

/*
 * Fills *r: id at address addr over transport (addr NULL: no address;
 * *a holds it) with services svcs[0..n).
 */
static void mt_reg(qrpc_Registration *r, qrpc_Address *a, const char *transport,
                   uint64_t id, uint32_t hint, const char *addr,
                   const qrpc_ServiceRef *svcs, size_t n)
{
    memset(r, 0, sizeof *r);
    r->id = id;
    r->rank_hint = hint;
    if (addr != NULL) {
        a->transport = (char *)transport;
        a->address = (char *)addr;
        r->addresses.items = a;
        r->addresses.len = 1;
    }
    r->services.items = (qrpc_ServiceRef *)svcs;
    r->services.len = n;
}

/* join: id at tcp address addr (NULL: no address) with services svcs[0..n). */
static int mt_join(qrpc_client *c, uint64_t id, uint32_t hint, const char *addr,
                   const qrpc_ServiceRef *svcs, size_t n, qrpc_Lease *out)
{
    qrpc_Address a;
    qrpc_Registration r;
    qrpc_Lease l;

    mt_reg(&r, &a, "tcp", id, hint, addr, svcs, n);
    return qrpc_Master_join(c, &r, out != NULL ? out : &l);
}

/* Joins and checks it worked; returns the rank. */
static uint32_t mt_join_ok(qrpc_client *c, uint64_t id, uint32_t hint, const char *addr,
                           const qrpc_ServiceRef *svcs, size_t n)
{
    qrpc_Lease l;
    int rc = mt_join(c, id, hint, addr, svcs, n, &l);

    ck_assert_msg(rc == 0, "join of %" PRIu64 " at %s: %s (%d)", id, addr ? addr : "-",
                  rc < 0 ? qrpc_err_name(rc) : "application error", rc);
    ck_assert(l.master != 0);
    ck_assert(l.lease_ms != 0);
    return l.rank;
}

static void mt_table(qrpc_client *c, qrpc_Table *t)
{
    int rc = qrpc_Master_get_table(c, t);

    ck_assert_msg(rc == 0, "get_table: %s (%d)", rc < 0 ? qrpc_err_name(rc) : "?", rc);
}

static const qrpc_Node *mt_find(const qrpc_Table *t, uint64_t id)
{
    size_t i;

    for (i = 0; i < t->nodes.len; i++)
        if (t->nodes.items[i].id == id)
            return &t->nodes.items[i];
    return NULL;
}

/* The same, failing the test when id is not in t. */
static const qrpc_Node *mt_get(const qrpc_Table *t, uint64_t id)
{
    const qrpc_Node *nd = mt_find(t, id);

    ck_assert_msg(nd != NULL, "node %" PRIu64 " is not in the table", id);
    return nd;
}

static bool mt_offers(const qrpc_Node *nd, const char *name, uint32_t ver)
{
    size_t i;

    for (i = 0; nd != NULL && i < nd->services.len; i++)
        if (strcmp(nd->services.items[i].name, name) == 0 && nd->services.items[i].ver == ver)
            return true;
    return false;
}

/* The current table's epoch and master. */
static uint64_t mt_epoch(qrpc_client *c, uint64_t *master)
{
    qrpc_Table t;
    uint64_t e;

    mt_table(c, &t);
    e = t.epoch;
    if (master != NULL)
        *master = t.master;
    qrpc_Table_free(&t);
    return e;
}

/* The rank of node id in the current table (fails when it is not there). */
static uint32_t mt_rank_of(qrpc_client *c, uint64_t id)
{
    qrpc_Table t;
    const qrpc_Node *nd;
    uint32_t r;

    mt_table(c, &t);
    nd = mt_get(&t, id);
    r = nd->rank;
    qrpc_Table_free(&t);
    return r;
}

/* Fails the test unless log l gets a line containing needle (soon). */
#define ck_assert_tt_log_has(l, needle) \
    ck_assert_msg(tt_log_wait((l), (needle), PROMPT_MS), "no log line says \"%s\"", (needle))

/* Fails the test with the logs' contents. */
static void mt_dump_fail(tt_log *a, tt_log *b, const char *what)
{
    char *la = a != NULL ? tt_log_dump(a) : strdup("");
    char *lb = b != NULL ? tt_log_dump(b) : strdup("");

    ck_abort_msg("%s\n--- log ---\n%s\n--- log ---\n%s", what, la, lb);
}

/* ======================================================================
 * 1. The master's semantics
 * ====================================================================== */

START_TEST(master_ranks_dense)
{
    static const qrpc_ServiceRef s[] = { SREF("a.A", 1) };
    qrpc_Table t;
    uint64_t e0;
    mt_env e;

    mt_open(&e, NULL);
    mt_table(e.c, &t);
    ck_assert_uint_eq(t.nodes.len, 0);
    ck_assert(t.master != 0);
    e0 = t.epoch;
    qrpc_Table_free(&t);

    ck_assert_uint_eq(mt_join_ok(e.c, 101, NO_RANK, "127.0.0.1:1001", s, 1), 0);
    ck_assert_uint_eq(mt_join_ok(e.c, 102, NO_RANK, "127.0.0.1:1002", s, 1), 1);
    ck_assert_uint_eq(mt_join_ok(e.c, 103, NO_RANK, "127.0.0.1:1003", NULL, 0), 2);

    mt_table(e.c, &t);
    ck_assert_uint_eq(t.nodes.len, 3);
    ck_assert_uint_eq(t.epoch, e0 + 3);        /* one change each */
    ck_assert_uint_eq(mt_get(&t, 101)->rank, 0);
    ck_assert_uint_eq(mt_get(&t, 102)->rank, 1);
    ck_assert_uint_eq(mt_get(&t, 103)->rank, 2);
    ck_assert(mt_offers(mt_find(&t, 102), "a.A", 1));
    ck_assert_uint_eq(mt_get(&t, 103)->services.len, 0);
    ck_assert_uint_eq(mt_get(&t, 101)->addresses.len, 1);
    ck_assert_str_eq(mt_get(&t, 101)->addresses.items[0].transport, "tcp");
    ck_assert_str_eq(mt_get(&t, 101)->addresses.items[0].address, "127.0.0.1:1001");
    qrpc_Table_free(&t);

    /* the middle one leaves: the next new node gets its rank */
    ck_assert_int_eq(qrpc_Master_leave(e.c, 102), 0);
    mt_table(e.c, &t);
    ck_assert_uint_eq(t.nodes.len, 2);
    ck_assert_ptr_null(mt_find(&t, 102));
    ck_assert_uint_eq(t.epoch, e0 + 4);
    qrpc_Table_free(&t);
    ck_assert_uint_eq(mt_join_ok(e.c, 104, NO_RANK, "127.0.0.1:1004", s, 1), 1);
    ck_assert_uint_eq(mt_join_ok(e.c, 105, NO_RANK, "127.0.0.1:1005", s, 1), 3);

    /* leaving is idempotent; an unknown id changes nothing */
    ck_assert_int_eq(qrpc_Master_leave(e.c, 102), 0);
    ck_assert_int_eq(qrpc_Master_leave(e.c, 999), 0);
    mt_table(e.c, &t);
    ck_assert_uint_eq(t.nodes.len, 4);
    ck_assert_uint_eq(t.epoch, e0 + 6);
    qrpc_Table_free(&t);
    mt_close(&e);
}
END_TEST

START_TEST(master_rank_hint)
{
    qrpc_master_config cfg;
    mt_env e;

    qrpc_master_config_init(&cfg);
    cfg.max_nodes = 16;
    mt_open(&e, &cfg);
    /* free: honoured, even far above the ranks in use */
    ck_assert_uint_eq(mt_join_ok(e.c, 41, 7, "127.0.0.1:1041", NULL, 0), 7);
    /* taken: the smallest free rank instead */
    ck_assert_uint_eq(mt_join_ok(e.c, 42, 7, "127.0.0.1:1042", NULL, 0), 0);
    ck_assert_uint_eq(mt_join_ok(e.c, 43, NO_RANK, "127.0.0.1:1043", NULL, 0), 1);
    /* at or over max_nodes: ignored */
    ck_assert_uint_eq(mt_join_ok(e.c, 44, 16, "127.0.0.1:1044", NULL, 0), 2);
    ck_assert_uint_eq(mt_join_ok(e.c, 45, 3, "127.0.0.1:1045", NULL, 0), 3);
    /* 0, 1, 2, 3 and 7 are taken */
    ck_assert_uint_eq(mt_join_ok(e.c, 46, 1, "127.0.0.1:1046", NULL, 0), 4);
    ck_assert_uint_eq(mt_rank_of(e.c, 41), 7);
    ck_assert_uint_eq(mt_rank_of(e.c, 42), 0);
    ck_assert_uint_eq(mt_rank_of(e.c, 46), 4);
    mt_close(&e);
}
END_TEST

START_TEST(master_rejoin)
{
    static const qrpc_ServiceRef ab[] = { SREF("a.A", 1), SREF("b.B", 2) };
    static const qrpc_ServiceRef ba[] = { SREF("b.B", 2), SREF("a.A", 1) };
    static const qrpc_ServiceRef abc[] = { SREF("a.A", 1), SREF("b.B", 2), SREF("c.C", 1) };
    qrpc_Lease l;
    qrpc_Table t;
    uint64_t e1, m;
    mt_env e;

    mt_open(&e, NULL);
    ck_assert_uint_eq(mt_join_ok(e.c, 20, NO_RANK, "127.0.0.1:1020", NULL, 0), 0);
    ck_assert_uint_eq(mt_join_ok(e.c, 21, NO_RANK, "127.0.0.1:1021", ab, 2), 1);
    e1 = mt_epoch(e.c, &m);

    /* the same registration again: the same rank, no change */
    ck_assert_int_eq(mt_join(e.c, 21, NO_RANK, "127.0.0.1:1021", ab, 2, &l), 0);
    ck_assert_uint_eq(l.rank, 1);
    ck_assert_uint_eq(l.master, m);
    ck_assert_uint_eq(mt_epoch(e.c, NULL), e1);
    /* the services in another order are the same services */
    ck_assert_uint_eq(mt_join_ok(e.c, 21, NO_RANK, "127.0.0.1:1021", ba, 2), 1);
    ck_assert_uint_eq(mt_epoch(e.c, NULL), e1);
    /* a hint does not move a registered node */
    ck_assert_uint_eq(mt_join_ok(e.c, 21, 5, "127.0.0.1:1021", ab, 2), 1);
    ck_assert_uint_eq(mt_join_ok(e.c, 21, 0, "127.0.0.1:1021", ab, 2), 1);
    ck_assert_uint_eq(mt_epoch(e.c, NULL), e1);

    /* a new service: one change, same rank */
    ck_assert_uint_eq(mt_join_ok(e.c, 21, NO_RANK, "127.0.0.1:1021", abc, 3), 1);
    mt_table(e.c, &t);
    ck_assert_uint_eq(t.epoch, e1 + 1);
    ck_assert_uint_eq(t.nodes.len, 2);
    ck_assert_uint_eq(mt_get(&t, 21)->services.len, 3);
    ck_assert(mt_offers(mt_find(&t, 21), "c.C", 1));
    qrpc_Table_free(&t);

    /* a service withdrawn, then a new address: a change each */
    ck_assert_uint_eq(mt_join_ok(e.c, 21, NO_RANK, "127.0.0.1:1021", ab, 2), 1);
    ck_assert_uint_eq(mt_epoch(e.c, NULL), e1 + 2);
    ck_assert_uint_eq(mt_join_ok(e.c, 21, NO_RANK, "127.0.0.1:2021", ab, 2), 1);
    mt_table(e.c, &t);
    ck_assert_uint_eq(t.epoch, e1 + 3);
    ck_assert_str_eq(mt_get(&t, 21)->addresses.items[0].address, "127.0.0.1:2021");
    ck_assert_uint_eq(mt_get(&t, 21)->services.len, 2);
    ck_assert(!mt_offers(mt_find(&t, 21), "c.C", 1));
    ck_assert_uint_eq(mt_get(&t, 20)->rank, 0);
    qrpc_Table_free(&t);
    mt_close(&e);
}
END_TEST

START_TEST(master_same_address)
{
    static const qrpc_ServiceRef s[] = { SREF("a.A", 1) };
    qrpc_Lease l;
    qrpc_Table t;
    uint64_t e1;
    mt_env e;

    mt_open(&e, NULL);
    ck_assert_uint_eq(mt_join_ok(e.c, 31, NO_RANK, "127.0.0.1:1031", s, 1), 0);
    ck_assert_uint_eq(mt_join_ok(e.c, 32, NO_RANK, "127.0.0.1:1032", s, 1), 1);
    e1 = mt_epoch(e.c, NULL);
    /* a new node at 31's address: 31 cannot be listening there any more */
    ck_assert_uint_eq(mt_join_ok(e.c, 33, NO_RANK, "127.0.0.1:1031", NULL, 0), 0);
    mt_table(e.c, &t);
    ck_assert_uint_eq(t.nodes.len, 2);
    ck_assert_ptr_null(mt_find(&t, 31));
    ck_assert_ptr_nonnull(mt_find(&t, 33));
    ck_assert_uint_eq(mt_get(&t, 33)->services.len, 0);
    ck_assert_uint_eq(mt_get(&t, 32)->rank, 1);
    ck_assert(t.epoch > e1);
    qrpc_Table_free(&t);
    ck_assert_tt_log_has(&e.mlog, "replaced by a new node at its address");
    /* 31 heartbeating is then unknown */
    ck_assert_int_eq(qrpc_Master_heartbeat(e.c, 31, &l), qrpc_MasterError_NOT_REGISTERED);
    mt_close(&e);
}
END_TEST

START_TEST(master_lease)
{
    enum { LEASE = 300 };      /* B heartbeats every 40 ms or so */
    qrpc_master_config cfg;
    qrpc_Lease l;
    uint64_t m;
    int64_t until, t_hb, t_gone;
    uint32_t rank_b;
    bool a_gone = false, b_gone = false;
    mt_env e;

    qrpc_master_config_init(&cfg);
    cfg.lease_ms = LEASE;
    mt_open(&e, &cfg);
    mt_epoch(e.c, &m);
    ck_assert_uint_eq(mt_join_ok(e.c, 11, NO_RANK, "127.0.0.1:1011", NULL, 0), 0);
    rank_b = mt_join_ok(e.c, 12, NO_RANK, "127.0.0.1:1012", NULL, 0);

    /* B heartbeats, A does not: A goes, within a bounded wait */
    until = tt_now_ms() + WAIT_MS;
    while (!a_gone) {
        qrpc_Table t;

        ck_assert_int_eq(qrpc_Master_heartbeat(e.c, 12, &l), 0);
        ck_assert_uint_eq(l.rank, rank_b);
        ck_assert_uint_eq(l.lease_ms, LEASE);
        ck_assert_uint_eq(l.master, m);
        mt_table(e.c, &t);
        a_gone = mt_find(&t, 11) == NULL;
        ck_assert_msg(mt_find(&t, 12) != NULL, "the heartbeating node was dropped");
        qrpc_Table_free(&t);
        if (!a_gone) {
            ck_assert_msg(tt_now_ms() < until, "a silent node outlived its lease by %u ms",
                          WAIT_MS);
            tt_nap_ms(20);
        }
    }
    ck_assert_tt_log_has(&e.mlog, "lease ran out");
    /* A is gone for good; B stays as long as it heartbeats (here 3 leases) */
    ck_assert_int_eq(qrpc_Master_heartbeat(e.c, 11, &l), qrpc_MasterError_NOT_REGISTERED);
    until = tt_now_ms() + 3 * LEASE;
    while (tt_now_ms() < until) {
        ck_assert_int_eq(qrpc_Master_heartbeat(e.c, 12, &l), 0);
        ck_assert_msg(mt_rank_of(e.c, 12) == rank_b, "rank changed");
        tt_nap_ms(40);
    }
    /* B stops: it goes too, but not before its lease has run out */
    t_hb = tt_now_ms();
    ck_assert_int_eq(qrpc_Master_heartbeat(e.c, 12, &l), 0);
    until = tt_now_ms() + WAIT_MS;
    while (!b_gone) {
        qrpc_Table t;

        mt_table(e.c, &t);
        b_gone = mt_find(&t, 12) == NULL;
        qrpc_Table_free(&t);
        if (!b_gone) {
            ck_assert_msg(tt_now_ms() < until, "a silent node outlived its lease");
            tt_nap_ms(10);
        }
    }
    t_gone = tt_now_ms();
    ck_assert_msg(t_gone - t_hb >= LEASE, "dropped %" PRId64 " ms after a heartbeat (lease %d)",
                  t_gone - t_hb, LEASE);
    mt_close(&e);
}
END_TEST

/* A watch's completion, for watch_async. */
typedef struct mt_watch {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int status;
    qrpc_Update up;
    int64_t at_ms;
} mt_watch;

static void mt_watch_init(mt_watch *w)
{
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->lock, NULL);
    tt_cond_init(&w->cond);
}

static void mt_watch_fini(mt_watch *w)
{
    qrpc_Update_free(&w->up);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
}

static void mt_watch_cb(int status, qrpc_Master_watch_reply *reply, void *arg)
{
    mt_watch *w = arg;

    pthread_mutex_lock(&w->lock);
    w->status = status;
    if (status == 0) {
        w->up = reply->result;
        memset(&reply->result, 0, sizeof reply->result);
    }
    w->at_ms = tt_now_ms();
    w->done = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static bool mt_watch_is_done(mt_watch *w)
{
    bool d;

    pthread_mutex_lock(&w->lock);
    d = w->done;
    pthread_mutex_unlock(&w->lock);
    return d;
}

static bool mt_watch_wait(mt_watch *w, unsigned ms)
{
    struct timespec dl = tt_deadline(ms);
    bool d;

    pthread_mutex_lock(&w->lock);
    while (!w->done)
        if (pthread_cond_timedwait(&w->cond, &w->lock, &dl) == ETIMEDOUT)
            break;
    d = w->done;
    pthread_mutex_unlock(&w->lock);
    return d;
}

START_TEST(master_watch)
{
    static const qrpc_ServiceRef s[] = { SREF("a.A", 1) };
    qrpc_Update up;
    mt_watch w1, w2;
    qrpc_client *c2;
    uint64_t m, ep;
    int64_t t0, dt;
    mt_env e;

    mt_open(&e, NULL);
    mt_join_ok(e.c, 51, NO_RANK, "127.0.0.1:1051", s, 1);
    ep = mt_epoch(e.c, &m);

    /* a node with no table, or another one, gets the table at once */
    t0 = tt_now_ms();
    ck_assert_int_eq(qrpc_Master_watch(e.c, 0, 0, 20000, &up), 0);
    ck_assert_msg(tt_now_ms() - t0 < PROMPT_MS, "watch(0, 0) held %" PRId64 " ms",
                  tt_now_ms() - t0);
    ck_assert(up.changed);
    ck_assert_uint_eq(up.table.master, m);
    ck_assert_uint_eq(up.table.epoch, ep);
    ck_assert_uint_eq(up.table.nodes.len, 1);
    ck_assert_ptr_nonnull(mt_find(&up.table, 51));
    qrpc_Update_free(&up);
    t0 = tt_now_ms();
    ck_assert_int_eq(qrpc_Master_watch(e.c, m, ep + 1, 20000, &up), 0);
    ck_assert(tt_now_ms() - t0 < PROMPT_MS);
    ck_assert(up.changed);
    ck_assert_uint_eq(up.table.epoch, ep);
    qrpc_Update_free(&up);

    /* no change: held for hold_ms, then "unchanged" with no nodes */
    t0 = tt_now_ms();
    ck_assert_int_eq(qrpc_Master_watch(e.c, m, ep, 300, &up), 0);
    dt = tt_now_ms() - t0;
    ck_assert_msg(dt >= 300 && dt < 300 + (int64_t)PROMPT_MS, "held %" PRId64 " ms of 300", dt);
    ck_assert(!up.changed);
    ck_assert_uint_eq(up.table.master, m);
    ck_assert_uint_eq(up.table.epoch, ep);
    ck_assert_uint_eq(up.table.nodes.len, 0);
    qrpc_Update_free(&up);
    /* hold 0: not held at all */
    t0 = tt_now_ms();
    ck_assert_int_eq(qrpc_Master_watch(e.c, m, ep, 0, &up), 0);
    ck_assert(tt_now_ms() - t0 < PROMPT_MS);
    ck_assert(!up.changed);
    qrpc_Update_free(&up);

    /* held until a change: two watchers, both answered by one join */
    ck_assert_int_eq(qrpc_Master_connect(e.n, e.addr, &c2), 0);
    qrpc_client_set_timeout(c2, 30000);
    qrpc_client_set_timeout(e.c, 30000);
    mt_watch_init(&w1);
    mt_watch_init(&w2);
    ck_assert_int_eq(qrpc_Master_watch_async(e.c, m, ep, 20000, mt_watch_cb, &w1), 0);
    ck_assert_int_eq(qrpc_Master_watch_async(c2, m, ep, 20000, mt_watch_cb, &w2), 0);
    /*
     * The master takes requests in order from one queue, and each client's
     * requests arrive in order on one connection: once these answer, both
     * watches have been taken, and they were held, not answered.
     */
    ck_assert_uint_eq(mt_epoch(e.c, NULL), ep);
    ck_assert_uint_eq(mt_epoch(c2, NULL), ep);
    ck_assert_msg(!mt_watch_is_done(&w1) && !mt_watch_is_done(&w2),
                  "a watch of the current table was answered without a change");
    t0 = tt_now_ms();
    mt_join_ok(e.c, 52, NO_RANK, "127.0.0.1:1052", NULL, 0);
    ck_assert_msg(mt_watch_wait(&w1, PROMPT_MS) && mt_watch_wait(&w2, PROMPT_MS),
                  "held watches not answered after a change");
    ck_assert_int_eq(w1.status, 0);
    ck_assert_int_eq(w2.status, 0);
    ck_assert(w1.up.changed && w2.up.changed);
    ck_assert_uint_eq(w1.up.table.epoch, ep + 1);
    ck_assert_uint_eq(w1.up.table.master, m);
    ck_assert_uint_eq(w1.up.table.nodes.len, 2);
    ck_assert_ptr_nonnull(mt_find(&w1.up.table, 52));
    ck_assert(qrpc_Table_equal(&w1.up.table, &w2.up.table));
    ck_assert(w1.at_ms - t0 < (int64_t)PROMPT_MS);
    mt_watch_fini(&w1);
    mt_watch_fini(&w2);
    qrpc_client_destroy(c2);
    mt_close(&e);
}
END_TEST

/*
 * Held watches are bounded: at most two per table slot (max_nodes); one
 * more is answered "unchanged" at once instead of held, and the held ones
 * are still answered by the next change.
 */
START_TEST(master_watch_cap)
{
    qrpc_master_config cfg;
    qrpc_Update up;
    mt_watch w[2];
    uint64_t m, ep;
    int64_t t0;
    mt_env e;
    int i;

    qrpc_master_config_init(&cfg);
    cfg.max_nodes = 1;
    mt_open(&e, &cfg);
    ep = mt_epoch(e.c, &m);
    qrpc_client_set_timeout(e.c, 30000);
    for (i = 0; i < 2; i++) {
        mt_watch_init(&w[i]);
        ck_assert_int_eq(qrpc_Master_watch_async(e.c, m, ep, 20000, mt_watch_cb, &w[i]), 0);
    }
    /* requests on one connection are taken in order: both watches are held now */
    ck_assert_uint_eq(mt_epoch(e.c, NULL), ep);
    t0 = tt_now_ms();
    ck_assert_int_eq(qrpc_Master_watch(e.c, m, ep, 20000, &up), 0);
    ck_assert_msg(tt_now_ms() - t0 < PROMPT_MS, "a third watch was held %" PRId64 " ms",
                  tt_now_ms() - t0);
    ck_assert(!up.changed);
    ck_assert_uint_eq(up.table.epoch, ep);
    qrpc_Update_free(&up);
    ck_assert(!mt_watch_is_done(&w[0]) && !mt_watch_is_done(&w[1]));
    mt_join_ok(e.c, 61, NO_RANK, "127.0.0.1:1061", NULL, 0);
    for (i = 0; i < 2; i++) {
        ck_assert_msg(mt_watch_wait(&w[i], PROMPT_MS), "held watch %d not answered", i);
        ck_assert_int_eq(w[i].status, 0);
        ck_assert(w[i].up.changed);
        ck_assert_uint_eq(w[i].up.table.epoch, ep + 1);
        mt_watch_fini(&w[i]);
    }
    mt_close(&e);
}
END_TEST

/*
 * A master that has just started is still being told who is alive: during
 * its first lease, a node naming another master's table keeps it (the
 * watch is held, or answered "unchanged" when its hold ends first); a
 * node that knows no table gets it at once.  After the first lease the
 * table goes out at once.
 */
START_TEST(master_watch_first_lease)
{
    qrpc_master_config cfg;
    qrpc_Update up;
    mt_watch w;
    uint64_t m, ep, other;
    int64_t t_start, t0, dt;
    mt_env e;

    qrpc_master_config_init(&cfg);
    cfg.lease_ms = 1500;
    t_start = tt_now_ms();
    mt_open(&e, &cfg);
    ep = mt_epoch(e.c, &m);
    other = m ^ 2;

    t0 = tt_now_ms();
    ck_assert_int_eq(qrpc_Master_watch(e.c, 0, 0, 20000, &up), 0);
    ck_assert(tt_now_ms() - t0 < PROMPT_MS);
    ck_assert(up.changed);
    ck_assert_uint_eq(up.table.master, m);
    qrpc_Update_free(&up);
    /* another master's table, a short hold: "unchanged" when it ends */
    t0 = tt_now_ms();
    ck_assert_int_eq(qrpc_Master_watch(e.c, other, 7, 100, &up), 0);
    dt = tt_now_ms() - t0;
    if (t0 + 100 < t_start + 1500) {        /* (the setup took less than the lease) */
        ck_assert_msg(!up.changed, "another master's table replaced during the first lease");
        ck_assert_msg(dt >= 100, "held %" PRId64 " ms of 100", dt);
    }
    qrpc_Update_free(&up);
    /* a long hold: the table when the first lease ends, not before */
    mt_watch_init(&w);
    qrpc_client_set_timeout(e.c, 30000);
    ck_assert_int_eq(qrpc_Master_watch_async(e.c, other, 7, 20000, mt_watch_cb, &w), 0);
    ck_assert_msg(mt_watch_wait(&w, 1500 + PROMPT_MS), "a watch outlived the first lease");
    ck_assert_int_eq(w.status, 0);
    ck_assert(w.up.changed);
    ck_assert_uint_eq(w.up.table.master, m);
    ck_assert_uint_eq(w.up.table.epoch, ep);
    ck_assert_msg(w.at_ms - t_start >= 1500, "answered %" PRId64 " ms after the start (lease 1500)",
                  w.at_ms - t_start);
    mt_watch_fini(&w);
    /* from now on at once */
    t0 = tt_now_ms();
    ck_assert_int_eq(qrpc_Master_watch(e.c, other, 7, 20000, &up), 0);
    ck_assert(tt_now_ms() - t0 < PROMPT_MS);
    ck_assert(up.changed);
    qrpc_Update_free(&up);
    mt_close(&e);
}
END_TEST

/* A held watch is answered with an error when the master stops, not after its hold. */
START_TEST(master_stop_held_watch)
{
    qrpc_Table t;
    mt_watch w;
    uint64_t m, ep;
    int64_t t0, stop_ms;
    int rc;
    mt_env e;

    mt_open(&e, NULL);
    ep = mt_epoch(e.c, &m);
    qrpc_client_set_timeout(e.c, 40000);
    mt_watch_init(&w);
    ck_assert_int_eq(qrpc_Master_watch_async(e.c, m, ep, 30000, mt_watch_cb, &w), 0);
    ck_assert_uint_eq(mt_epoch(e.c, NULL), ep);         /* the watch is held now */
    ck_assert(!mt_watch_is_done(&w));
    t0 = tt_now_ms();
    qrpc_master_stop(e.m);
    e.m = NULL;
    stop_ms = tt_now_ms() - t0;
    ck_assert_msg(stop_ms < (int64_t)PROMPT_MS, "qrpc_master_stop took %" PRId64 " ms", stop_ms);
    ck_assert_msg(mt_watch_wait(&w, PROMPT_MS), "the held watch outlived the master");
    ck_assert_msg(w.status < 0, "held watch: status %d (%s)", w.status,
                  w.status < 0 ? qrpc_err_name(w.status) : "not an error");
    ck_assert(w.at_ms - t0 < (int64_t)PROMPT_MS);
    /*
     * Nobody there now: an honest, prompt error (the first call may race
     * with the connection's closing and have been sent, so QRPC_EUNKNOWN;
     * once the close is known, nothing can be sent).
     */
    qrpc_client_set_timeout(e.c, CALL_MS);
    t0 = tt_now_ms();
    rc = qrpc_Master_get_table(e.c, &t);
    ck_assert_msg(rc == QRPC_EUNAVAILABLE || rc == QRPC_EUNKNOWN,
                  "get_table of a stopped master: %s", qrpc_err_name(rc));
    rc = qrpc_Master_get_table(e.c, &t);
    ck_assert_msg(rc == QRPC_EUNAVAILABLE, "get_table of a stopped master, again: %s",
                  qrpc_err_name(rc));
    ck_assert(tt_now_ms() - t0 < (int64_t)PROMPT_MS);
    mt_watch_fini(&w);
    mt_close(&e);
}
END_TEST

/* qrpc_master_start()'s own errors. */
START_TEST(master_config)
{
    qrpc_master_config cfg;
    qrpc_master *m = NULL, *m2;
    tt_log log;
    char addr[64];

    tt_log_init(&log);
    ck_assert_int_eq(qrpc_master_start(NULL, NULL), QRPC_EINVAL);
    mt_master_config(&cfg, &log);
    cfg.lease_ms = 99;
    ck_assert_int_eq(qrpc_master_start(&cfg, &m), QRPC_EINVAL);
    ck_assert_ptr_null(m);
    mt_master_config(&cfg, &log);
    cfg.lease_ms = 3600001;
    ck_assert_int_eq(qrpc_master_start(&cfg, &m), QRPC_EINVAL);
    mt_master_config(&cfg, &log);
    cfg.max_nodes = (1u << 20) + 1;
    ck_assert_int_eq(qrpc_master_start(&cfg, &m), QRPC_EINVAL);
    mt_master_config(&cfg, &log);
    cfg.max_services = 65537;
    ck_assert_int_eq(qrpc_master_start(&cfg, &m), QRPC_EINVAL);
    mt_master_config(&cfg, &log);
    cfg.listen = "not an address";
    ck_assert_int_eq(qrpc_master_start(&cfg, &m), QRPC_EADDR);
    ck_assert_ptr_null(m);
    /* a port already taken */
    mt_master_config(&cfg, &log);
    ck_assert_int_eq(qrpc_master_start(&cfg, &m), 0);
    snprintf(addr, sizeof addr, "%s", qrpc_master_address(m));
    cfg.listen = addr;
    m2 = NOT_NULL;
    ck_assert_int_eq(qrpc_master_start(&cfg, &m2), QRPC_EADDR);
    ck_assert_ptr_null(m2);
    qrpc_master_stop(m);
    qrpc_master_stop(NULL);
    ck_assert_ptr_null(qrpc_master_address(NULL));
    tt_log_fini(&log);
}
END_TEST

/* ======================================================================
 * 2. Bad input
 * ====================================================================== */

static void mt_expect_join(qrpc_client *c, int want, uint64_t id, const char *addr,
                           const qrpc_ServiceRef *svcs, size_t n, const char *what)
{
    int rc = mt_join(c, id, NO_RANK, addr, svcs, n, NULL);

    ck_assert_msg(rc == want, "%s: %d (%s), expected %d", what, rc,
                  rc > 0 && qrpc_MasterError_valid(rc) ? qrpc_MasterError_name(rc)
                                                       : qrpc_err_name(rc), want);
}

/* Calls method with the raw argument bytes p[0..n): the status. */
static int mt_raw_call(qrpc_client *c, uint32_t method, const void *p, size_t n)
{
    qrpc_buf args, reply;
    int rc;

    qrpc_buf_init(&args);
    qrpc_buf_init(&reply);
    ck_assert_int_eq(qrpc_put_raw(&args, p, n), 0);
    rc = qrpc_call(c, method, &args, &reply);
    qrpc_buf_free(&reply);
    return rc;
}

/* The same with args built in b (taken). */
static int mt_raw_call_buf(qrpc_client *c, uint32_t method, qrpc_buf *b)
{
    qrpc_buf reply;
    int rc;

    qrpc_buf_init(&reply);
    rc = qrpc_call(c, method, b, &reply);
    qrpc_buf_free(&reply);
    return rc;
}

static void mt_put_str(qrpc_buf *b, const char *s)
{
    ck_assert_int_eq(qrpc_put_u32(b, (uint32_t)strlen(s)), 0);
    ck_assert_int_eq(qrpc_put_raw(b, s, strlen(s)), 0);
}

static const qrpc_method_desc bogus_methods[] = {
    { 99, "bogus", QRPC_METHOD_IDEMPOTENT },
    { QRPC_METHOD_PING, "ping", QRPC_METHOD_IDEMPOTENT },
};
static const qrpc_service_desc bogus_master_desc = { "qrpc.Master", 1, bogus_methods, 2 };

START_TEST(master_bad_input)
{
    static const qrpc_ServiceRef one[] = { SREF("bank.Bank", 1) };
    static const qrpc_ServiceRef empty_name[] = { SREF("x.X", 1), SREF("", 1) };
    static const qrpc_ServiceRef dup[] = { SREF("x.X", 1), SREF("y.Y", 1), SREF("x.X", 1) };
    static const qrpc_ServiceRef nine[] = {
        SREF("s.S", 1), SREF("s.S", 2), SREF("s.S", 3), SREF("s.S", 4), SREF("s.S", 5),
        SREF("s.S", 6), SREF("s.S", 7), SREF("s.S", 8), SREF("s.S", 9),
    };
    qrpc_master_config cfg;
    qrpc_Table t0, t;
    qrpc_Lease l;
    qrpc_Address a2[2];
    qrpc_Registration r;
    qrpc_buf b;
    qrpc_client *bogus;
    uint8_t junk[256];
    uint64_t seed = 0x5eed;
    int fd, i, rc;
    int64_t closed;
    mt_env e;

    qrpc_master_config_init(&cfg);
    cfg.max_nodes = 2;
    cfg.max_services = 8;
    mt_open(&e, &cfg);
    ck_assert_uint_eq(mt_join_ok(e.c, 1, NO_RANK, "127.0.0.1:1101", one, 1), 0);
    ck_assert_uint_eq(mt_join_ok(e.c, 2, NO_RANK, "127.0.0.1:1102", nine, 8), 1);
    mt_table(e.c, &t0);

    /* heartbeats of nodes it does not know */
    ck_assert_int_eq(qrpc_Master_heartbeat(e.c, 999, &l), qrpc_MasterError_NOT_REGISTERED);
    ck_assert_int_eq(qrpc_Master_heartbeat(e.c, 0, &l), qrpc_MasterError_NOT_REGISTERED);

    /* registrations that are wrong in themselves */
    mt_expect_join(e.c, qrpc_MasterError_BAD_REGISTRATION, 0, "127.0.0.1:1103", one, 1, "id 0");
    mt_expect_join(e.c, qrpc_MasterError_BAD_REGISTRATION, 3, NULL, one, 1, "no address");
    mt_expect_join(e.c, qrpc_MasterError_BAD_REGISTRATION, 3, "", one, 1, "empty address");
    mt_expect_join(e.c, qrpc_MasterError_BAD_REGISTRATION, 3, "127.0.0.1:1103", empty_name, 2,
                   "empty service name");
    mt_expect_join(e.c, qrpc_MasterError_BAD_REGISTRATION, 3, "127.0.0.1:1103", dup, 3,
                   "duplicate service");
    mt_expect_join(e.c, qrpc_MasterError_TOO_MANY_SERVICES, 3, "127.0.0.1:1103", nine, 9,
                   "9 services over 8");
    mt_reg(&r, a2, "", 3, NO_RANK, "127.0.0.1:1103", NULL, 0);
    ck_assert_int_eq(qrpc_Master_join(e.c, &r, &l), qrpc_MasterError_BAD_REGISTRATION);
    /* a full table */
    mt_expect_join(e.c, qrpc_MasterError_TOO_MANY_NODES, 3, "127.0.0.1:1103", one, 1,
                   "a third node of 2");
    /* bad re-registrations of known nodes leave them as they were */
    mt_expect_join(e.c, qrpc_MasterError_TOO_MANY_SERVICES, 1, "127.0.0.1:1101", nine, 9,
                   "node 1 with 9 services");
    mt_expect_join(e.c, qrpc_MasterError_BAD_REGISTRATION, 1, "127.0.0.1:1102", dup, 3,
                   "node 1, duplicates, at node 2's address");
    mt_expect_join(e.c, qrpc_MasterError_BAD_REGISTRATION, 2, NULL, one, 1,
                   "node 2 with no address");
    a2[0].transport = (char *)"tcp";
    a2[0].address = (char *)"127.0.0.1:1101";
    a2[1].transport = (char *)"tcp";
    a2[1].address = (char *)"";
    r.id = 1;
    r.addresses.len = 2;
    ck_assert_int_eq(qrpc_Master_join(e.c, &r, &l), qrpc_MasterError_BAD_REGISTRATION);

    /* garbage on a raw connection: that connection goes, the others stay */
    fd = raw_connect(mt_port(e.addr));
    for (i = 0; i < (int)sizeof junk; i++) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        junk[i] = (uint8_t)seed;
    }
    junk[0] = 'G';
    (void)raw_send(fd, junk, sizeof junk);
    mt_table(e.c, &t);
    ck_assert(qrpc_Table_equal(&t, &t0));
    qrpc_Table_free(&t);
    closed = raw_wait_closed(fd, WAIT_MS);
    ck_assert_msg(closed >= 0, "the master kept a connection that sent garbage");
    close(fd);

    /* arguments that do not decode */
    ck_assert_int_eq(mt_raw_call(e.c, qrpc_Master_join_ID, "", 0), QRPC_EDECODE);
    ck_assert_int_eq(mt_raw_call(e.c, qrpc_Master_join_ID, "\1\2\3", 3), QRPC_EDECODE);
    qrpc_buf_init(&b);              /* an address list claiming 2^32 - 1 entries */
    ck_assert_int_eq(qrpc_put_u64(&b, 3), 0);
    ck_assert_int_eq(qrpc_put_u32(&b, NO_RANK), 0);
    ck_assert_int_eq(qrpc_put_u32(&b, 0xffffffffu), 0);
    ck_assert_int_eq(mt_raw_call_buf(e.c, qrpc_Master_join_ID, &b), QRPC_EDECODE);
    qrpc_buf_init(&b);              /* 9 addresses: over MAX_ADDRESSES */
    ck_assert_int_eq(qrpc_put_u64(&b, 3), 0);
    ck_assert_int_eq(qrpc_put_u32(&b, NO_RANK), 0);
    ck_assert_int_eq(qrpc_put_u32(&b, 9), 0);
    for (i = 0; i < 9; i++) {
        char a[32];

        snprintf(a, sizeof a, "127.0.0.1:%d", 1200 + i);
        mt_put_str(&b, "tcp");
        mt_put_str(&b, a);
    }
    ck_assert_int_eq(qrpc_put_u32(&b, 0), 0);
    ck_assert_int_eq(mt_raw_call_buf(e.c, qrpc_Master_join_ID, &b), QRPC_EDECODE);
    qrpc_buf_init(&b);              /* a transport over MAX_TRANSPORT */
    ck_assert_int_eq(qrpc_put_u64(&b, 3), 0);
    ck_assert_int_eq(qrpc_put_u32(&b, NO_RANK), 0);
    ck_assert_int_eq(qrpc_put_u32(&b, 1), 0);
    mt_put_str(&b, "a-transport-of-21-chs");
    mt_put_str(&b, "127.0.0.1:1103");
    ck_assert_int_eq(qrpc_put_u32(&b, 0), 0);
    ck_assert_int_eq(mt_raw_call_buf(e.c, qrpc_Master_join_ID, &b), QRPC_EDECODE);
    qrpc_buf_init(&b);              /* a NUL inside a service name */
    ck_assert_int_eq(qrpc_put_u64(&b, 3), 0);
    ck_assert_int_eq(qrpc_put_u32(&b, NO_RANK), 0);
    ck_assert_int_eq(qrpc_put_u32(&b, 1), 0);
    mt_put_str(&b, "tcp");
    mt_put_str(&b, "127.0.0.1:1103");
    ck_assert_int_eq(qrpc_put_u32(&b, 1), 0);
    ck_assert_int_eq(qrpc_put_u32(&b, 3), 0);
    ck_assert_int_eq(qrpc_put_raw(&b, "a\0b", 3), 0);
    ck_assert_int_eq(qrpc_put_u32(&b, 1), 0);
    ck_assert_int_eq(mt_raw_call_buf(e.c, qrpc_Master_join_ID, &b), QRPC_EDECODE);
    qrpc_buf_init(&b);              /* a service name over MAX_NAME (256) */
    ck_assert_int_eq(qrpc_put_u64(&b, 3), 0);
    ck_assert_int_eq(qrpc_put_u32(&b, NO_RANK), 0);
    ck_assert_int_eq(qrpc_put_u32(&b, 1), 0);
    mt_put_str(&b, "tcp");
    mt_put_str(&b, "127.0.0.1:1103");
    ck_assert_int_eq(qrpc_put_u32(&b, 1), 0);
    ck_assert_int_eq(qrpc_put_u32(&b, 257), 0);
    for (i = 0; i < 257; i++)
        ck_assert_int_eq(qrpc_put_u8(&b, 'n'), 0);
    ck_assert_int_eq(qrpc_put_u32(&b, 1), 0);
    ck_assert_int_eq(mt_raw_call_buf(e.c, qrpc_Master_join_ID, &b), QRPC_EDECODE);
    qrpc_buf_init(&b);              /* a good registration and one byte more */
    mt_reg(&r, a2, "tcp", 3, NO_RANK, "127.0.0.1:1103", NULL, 0);
    ck_assert_int_eq(qrpc_Registration_encode(&b, &r), 0);
    ck_assert_int_eq(qrpc_put_u8(&b, 0), 0);
    ck_assert_int_eq(mt_raw_call_buf(e.c, qrpc_Master_join_ID, &b), QRPC_EDECODE);
    ck_assert_int_eq(mt_raw_call(e.c, qrpc_Master_leave_ID, "\1\0\0\0\0\0\0\0\0", 9),
                     QRPC_EDECODE);
    ck_assert_int_eq(mt_raw_call(e.c, qrpc_Master_leave_ID, "\1\0\0\0", 4), QRPC_EDECODE);
    ck_assert_int_eq(mt_raw_call(e.c, qrpc_Master_heartbeat_ID, "\1\0\0\0", 4), QRPC_EDECODE);
    ck_assert_int_eq(mt_raw_call(e.c, qrpc_Master_get_table_ID, "x", 1), QRPC_EDECODE);
    ck_assert_int_eq(mt_raw_call(e.c, qrpc_Master_watch_ID, "0123456789abcdefxyz", 19),
                     QRPC_EDECODE);
    ck_assert_int_eq(mt_raw_call(e.c, qrpc_Master_watch_ID, "0123456789abcdefwxyz!", 21),
                     QRPC_EDECODE);
    /* a method the master does not have; a ping it answers */
    ck_assert_int_eq(qrpc_client_create(e.n, e.addr, &bogus_master_desc, &bogus), 0);
    qrpc_client_set_timeout(bogus, CALL_MS);
    ck_assert_int_eq(mt_raw_call(bogus, 99, "", 0), QRPC_ENOMETHOD);
    ck_assert_int_eq(mt_raw_call(bogus, QRPC_METHOD_PING, "", 0), 0);
    qrpc_client_destroy(bogus);

    /* after all of that: the same table, and the known nodes still heartbeat */
    mt_table(e.c, &t);
    ck_assert_msg(qrpc_Table_equal(&t, &t0), "the table changed: epoch %" PRIu64 " -> %" PRIu64
                  ", %zu -> %zu nodes", t0.epoch, t.epoch, t0.nodes.len, t.nodes.len);
    qrpc_Table_free(&t);
    ck_assert_int_eq(qrpc_Master_heartbeat(e.c, 1, &l), 0);
    ck_assert_uint_eq(l.rank, 0);
    ck_assert_int_eq(qrpc_Master_heartbeat(e.c, 2, &l), 0);
    ck_assert_uint_eq(l.rank, 1);
    /* and a good change still works: node 2 leaves, node 3 joins */
    ck_assert_int_eq(qrpc_Master_leave(e.c, 2), 0);
    ck_assert_uint_eq(mt_join_ok(e.c, 3, NO_RANK, "127.0.0.1:1103", one, 1), 1);
    rc = qrpc_Master_get_table(e.c, &t);
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(t.nodes.len, 2);
    ck_assert_uint_eq(t.epoch, t0.epoch + 2);
    qrpc_Table_free(&t);
    qrpc_Table_free(&t0);
    mt_close(&e);
}
END_TEST

/* A node registering thousands of services, within a raised limit. */
START_TEST(master_many_services)
{
    enum { N = 5000 };
    qrpc_master_config cfg;
    qrpc_ServiceRef *svcs = calloc(N + 1, sizeof *svcs);
    char (*names)[24] = calloc(N + 1, sizeof *names);
    qrpc_Update up;
    qrpc_Table t;
    const qrpc_Node *nd;
    uint64_t ep;
    size_t i;
    mt_env e;

    ck_assert(svcs != NULL && names != NULL);
    for (i = 0; i <= N; i++) {
        snprintf(names[i], sizeof names[i], "many.Service%05zu", i);
        svcs[i].name = names[i];
        svcs[i].ver = (uint32_t)(i % 3) + 1;
    }
    qrpc_master_config_init(&cfg);
    cfg.max_services = N;
    mt_open(&e, &cfg);
    mt_join_ok(e.c, 61, NO_RANK, "127.0.0.1:1061", NULL, 0);
    ck_assert_uint_eq(mt_join_ok(e.c, 62, NO_RANK, "127.0.0.1:1062", svcs, N), 1);
    mt_table(e.c, &t);
    nd = mt_find(&t, 62);
    ck_assert_ptr_nonnull(nd);
    ck_assert_uint_eq(nd->services.len, N);
    for (i = 0; i < N; i += 997)
        ck_assert(mt_offers(nd, names[i], (uint32_t)(i % 3) + 1));
    ep = t.epoch;
    qrpc_Table_free(&t);
    /* one more is refused, and the node keeps what it had */
    ck_assert_int_eq(mt_join(e.c, 62, NO_RANK, "127.0.0.1:1062", svcs, N + 1, NULL),
                     qrpc_MasterError_TOO_MANY_SERVICES);
    ck_assert_int_eq(qrpc_Master_watch(e.c, 0, 0, 0, &up), 0);
    ck_assert(up.changed);
    ck_assert_uint_eq(up.table.epoch, ep);
    ck_assert_uint_eq(mt_get(&up.table, 62)->services.len, N);
    qrpc_Update_free(&up);
    /* the master answers others as before */
    ck_assert_uint_eq(mt_join_ok(e.c, 63, NO_RANK, "127.0.0.1:1063", svcs, 2), 2);
    free(svcs);
    free(names);
    mt_close(&e);
}
END_TEST

/* ======================================================================
 * 3. The node side
 * ====================================================================== */

/* A node of the cluster; when it serves bank.Bank, get() counts here. */
typedef struct bnode {
    qrpc_node *node;
    tt_log log;
    char name[16];
    atomic_int gets;            /* get() runs */
    atomic_int deposits;        /* deposit() runs (at most once each) */
} bnode;

static int bn_get(qrpc_ctx *ctx, const char *who, bank_Account *result)
{
    bnode *b = qrpc_ctx_state(ctx);

    (void)who;
    atomic_fetch_add(&b->gets, 1);
    result->owner = strdup(b->name);
    result->balance.cur = common_Currency_EUR;
    return result->owner != NULL ? 0 : QRPC_ENOMEM;
}

/* deposit(who, m): m.amount + 1000 * (this node's number) */
static int bn_deposit(qrpc_ctx *ctx, const char *who, const common_Money *m, int64_t *result)
{
    bnode *b = qrpc_ctx_state(ctx);

    (void)who;
    atomic_fetch_add(&b->deposits, 1);
    *result = m->amount + 1000 * (b->name[1] - '0');
    return 0;
}

static const bank_Bank_handlers bn_handlers = { .get = bn_get, .deposit = bn_deposit };

static void bn_open(bnode *b, const char *name, const char *listen, const char *master,
                    bool serve)
{
    memset(b, 0, sizeof *b);
    snprintf(b->name, sizeof b->name, "%s", name);
    atomic_init(&b->gets, 0);
    atomic_init(&b->deposits, 0);
    b->node = mt_node(&b->log, listen, master);
    if (serve)
        ck_assert_int_eq(bank_Bank_serve(b->node, &bn_handlers, b), 0);
}

static void bn_close(bnode *b)
{
    qrpc_node_destroy(b->node);
    b->node = NULL;
    tt_log_fini(&b->log);
}

static uint64_t bn_id(const bnode *b)
{
    qrpc_binding_info bi;

    ck_assert_int_eq(qrpc_node_get_binding(b->node, &bi), 0);
    return bi.node_id;
}

/* A bound client (target NULL) of desc on b's node. */
static qrpc_client *bn_client(bnode *b, const qrpc_service_desc *desc)
{
    qrpc_client *c;

    ck_assert_int_eq(qrpc_client_create(b->node, NULL, desc, &c), 0);
    qrpc_client_set_timeout(c, CALL_MS);
    return c;
}

/* n calls of bank.Bank.get on c, each of which must succeed. */
static void bn_gets(qrpc_client *c, int n, const char *where)
{
    int i;

    for (i = 0; i < n; i++) {
        bank_Account acc;
        int rc = bank_Bank_get(c, "x", &acc);

        ck_assert_msg(rc == 0, "%s: get %d: %s (%d)", where, i,
                      rc < 0 ? qrpc_err_name(rc) : "application error", rc);
        ck_assert(strcmp(acc.owner, "s0") == 0 || strcmp(acc.owner, "s1") == 0);
        bank_Account_free(&acc);
    }
}

static const qrpc_method_desc ping_methods[] = {
    { QRPC_METHOD_PING, "ping", QRPC_METHOD_IDEMPOTENT },
};
static const qrpc_service_desc bank_ping_desc = { "bank.Bank", 1, ping_methods, 1 };
static const qrpc_service_desc bank_v2_desc = { "bank.Bank", 2, ping_methods, 1 };
static const qrpc_service_desc nobody_desc = { "nobody.Nothing", 1, ping_methods, 1 };

/* bank.Bank version 3, served as a channel: method 1 answers u32 3. */
static const qrpc_method_desc v3_methods[] = {
    { 1, "version", QRPC_METHOD_IDEMPOTENT },
};
static const qrpc_service_desc bank_v3_desc = { "bank.Bank", 3, v3_methods, 1 };
static const qrpc_service_desc bank_v3_ping_desc = { "bank.Bank", 3, ping_methods, 1 };

static int bn_ping(qrpc_client *c)
{
    qrpc_buf args, reply;
    int rc;

    qrpc_buf_init(&args);
    qrpc_buf_init(&reply);
    rc = qrpc_call(c, QRPC_METHOD_PING, &args, &reply);
    if (rc == 0)
        ck_assert_uint_eq(reply.len, 0);
    qrpc_buf_free(&reply);
    return rc;
}

/* The cluster: a master, servers s[0] and s[1] of bank.Bank, client node cl. */
typedef struct cluster {
    mt_env env;
    bnode s[2];
    bnode cl;                   /* does not listen: follows the table only */
} cluster;

/* The table the cluster should reach: exactly ids[0..n), offering name@ver. */
typedef struct want {
    uint64_t ids[4];
    size_t n;
    const char *name;
    uint32_t ver;
    bool offered[4];            /* which of ids offer it */
} want;

static bool want_ok(const qrpc_Table *t, const want *w)
{
    size_t i;

    if (t->nodes.len != w->n)
        return false;
    for (i = 0; i < w->n; i++) {
        const qrpc_Node *nd = mt_find(t, w->ids[i]);

        if (nd == NULL || mt_offers(nd, w->name, w->ver) != w->offered[i])
            return false;
    }
    return true;
}

/*
 * Waits until the master's table is what w says and every node of ns
 * holds that very table (same master, same epoch), the listening ones
 * registered.  Returns the table (the caller frees it).
 */
static void converge(mt_env *e, const want *w, bnode *const *ns, size_t k, qrpc_Table *out)
{
    int64_t until = tt_now_ms() + WAIT_MS;
    size_t i;

    for (;;) {
        qrpc_Table t;
        bool ok;

        mt_table(e->c, &t);
        ok = want_ok(&t, w);
        for (i = 0; ok && i < k; i++) {
            qrpc_binding_info bi;

            ck_assert_int_eq(qrpc_node_get_binding(ns[i]->node, &bi), 0);
            ok = bi.master == t.master && bi.epoch == t.epoch &&
                 bi.nodes == (uint32_t)t.nodes.len &&
                 (qrpc_node_address(ns[i]->node) == NULL || bi.registered);
        }
        if (ok) {
            *out = t;
            return;
        }
        qrpc_Table_free(&t);
        if (tt_now_ms() > until) {
            char msg[200];

            snprintf(msg, sizeof msg, "the cluster did not converge within %u ms", WAIT_MS);
            mt_dump_fail(k > 0 ? &ns[0]->log : NULL, &e->mlog, msg);
        }
        tt_nap_ms(10);
    }
}

static void cluster_want(cluster *c, want *w)
{
    memset(w, 0, sizeof *w);
    w->ids[0] = bn_id(&c->s[0]);
    w->ids[1] = bn_id(&c->s[1]);
    w->n = 2;
    w->name = "bank.Bank";
    w->ver = 1;
    w->offered[0] = w->offered[1] = true;
}

static void cluster_converge(cluster *c, qrpc_Table *out)
{
    bnode *ns[3] = { &c->s[0], &c->s[1], &c->cl };
    qrpc_Table t;
    want w;

    cluster_want(c, &w);
    converge(&c->env, &w, ns, 3, out != NULL ? out : &t);
    if (out == NULL)
        qrpc_Table_free(&t);
}

static void cluster_open(cluster *c, uint32_t lease_ms)
{
    qrpc_master_config cfg;

    qrpc_master_config_init(&cfg);
    cfg.lease_ms = lease_ms;
    mt_open(&c->env, &cfg);
    bn_open(&c->s[0], "s0", "127.0.0.1:0", c->env.addr, true);
    bn_open(&c->s[1], "s1", "127.0.0.1:0", c->env.addr, true);
    bn_open(&c->cl, "cl", NULL, c->env.addr, false);
    cluster_converge(c, NULL);
}

static void cluster_close(cluster *c)
{
    if (c->cl.node != NULL)
        bn_close(&c->cl);
    if (c->s[1].node != NULL)
        bn_close(&c->s[1]);
    if (c->s[0].node != NULL)
        bn_close(&c->s[0]);
    mt_close(&c->env);
}

START_TEST(bind_spread_and_local)
{
    qrpc_node_stats st0, st1;
    qrpc_client *b, *p, *lb, *lp;
    int g0, g1;
    cluster c;

    cluster_open(&c, 0);
    /* from a node that serves nothing: round robin over both servers */
    b = bn_client(&c.cl, &bank_Bank_desc);
    bn_gets(b, 20, "client node");
    g0 = atomic_load(&c.s[0].gets);
    g1 = atomic_load(&c.s[1].gets);
    ck_assert_int_eq(g0 + g1, 20);
    ck_assert_msg(g0 >= 5 && g1 >= 5, "20 bound calls went %d to s0 and %d to s1", g0, g1);
    /* at-most-once calls spread the same way, each run once */
    for (int i = 0; i < 20; i++) {
        common_Money mo = { common_Currency_EUR, i };
        int64_t r = -1;
        int rc = bank_Bank_deposit(b, "x", &mo, &r);

        ck_assert_msg(rc == 0, "deposit %d: %s", i, qrpc_err_name(rc));
        ck_assert(r == i || r == 1000 + i);
    }
    ck_assert_int_eq(atomic_load(&c.s[0].deposits) + atomic_load(&c.s[1].deposits), 20);
    ck_assert(atomic_load(&c.s[0].deposits) >= 5 && atomic_load(&c.s[1].deposits) >= 5);
    /* pings: answered by a served service without a handler */
    p = bn_client(&c.cl, &bank_ping_desc);
    qrpc_node_get_stats(c.cl.node, &st0);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(bn_ping(p), 0);
    qrpc_node_get_stats(c.cl.node, &st1);
    ck_assert_uint_eq(st1.calls - st0.calls, 10);          /* all went out */
    ck_assert_int_eq(atomic_load(&c.s[0].gets) + atomic_load(&c.s[1].gets), 20);

    /* from a node that serves it: local, without a socket */
    lb = bn_client(&c.s[0], &bank_Bank_desc);
    lp = bn_client(&c.s[0], &bank_ping_desc);
    qrpc_node_get_stats(c.s[0].node, &st0);
    bn_gets(lb, 10, "serving node");
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(bn_ping(lp), 0);
    qrpc_node_get_stats(c.s[0].node, &st1);
    ck_assert_int_eq(atomic_load(&c.s[0].gets), g0 + 10);
    ck_assert_int_eq(atomic_load(&c.s[1].gets), g1);
    ck_assert_uint_eq(st1.calls, st0.calls);               /* no remote call */

    /* a node just created calls at once: its first call waits for its first table */
    for (int i = 0; i < 3; i++) {
        bnode fresh;
        qrpc_client *fb;

        bn_open(&fresh, "fresh", NULL, c.env.addr, false);
        fb = bn_client(&fresh, &bank_Bank_desc);
        bn_gets(fb, 1, "first call of a new node");
        qrpc_client_destroy(fb);
        bn_close(&fresh);
    }
    ck_assert_int_eq(atomic_load(&c.s[0].gets) + atomic_load(&c.s[1].gets), 20 + 10 + 3);

    qrpc_client_destroy(lp);
    qrpc_client_destroy(lb);
    qrpc_client_destroy(p);
    qrpc_client_destroy(b);
    cluster_close(&c);
}
END_TEST

/* A v3 channel on s1: answers "version" with 3 until closed. */
typedef struct v3srv {
    qrpc_channel *ch;
    pthread_t thread;
    atomic_int answered;
} v3srv;

static void *v3_main(void *arg)
{
    v3srv *v = arg;

    for (;;) {
        qrpc_request *r;
        qrpc_buf out;
        int rc = qrpc_recv_request(v->ch, -1, &r);

        if (rc == QRPC_ECLOSED)
            return NULL;
        if (rc != 0)
            continue;
        qrpc_buf_init(&out);
        atomic_fetch_add(&v->answered, 1);
        if (qrpc_request_method(r) == 1 && qrpc_put_u32(&out, 3) == 0)
            qrpc_send_response(r, 0, &out);
        else
            qrpc_send_response(r, QRPC_ENOMETHOD, &out);
    }
}

static uint32_t v3_call(qrpc_client *c)
{
    qrpc_buf args, reply;
    qrpc_reader rd;
    uint32_t v = 0;
    int rc;

    qrpc_buf_init(&args);
    qrpc_buf_init(&reply);
    rc = qrpc_call(c, 1, &args, &reply);
    ck_assert_msg(rc == 0, "v3 call: %s", qrpc_err_name(rc));
    qrpc_reader_init(&rd, reply.data, reply.len);
    ck_assert_int_eq(qrpc_get_u32(&rd, &v), 0);
    qrpc_buf_free(&reply);
    return v;
}

/* Waits until node n lists exactly the versions vers[0..k) of name. */
static void wait_versions(bnode *b, const char *name, const uint32_t *vers, int k)
{
    int64_t until = tt_now_ms() + WAIT_MS;

    for (;;) {
        uint32_t got[8];
        int n = qrpc_node_versions(b->node, name, got, 8);

        ck_assert_int_ge(n, 0);
        if (n == k && (k == 0 || memcmp(got, vers, (size_t)k * sizeof *vers) == 0))
            return;
        if (tt_now_ms() > until) {
            char msg[160];

            snprintf(msg, sizeof msg, "%s lists %d versions of %s, %d wanted, after %u ms",
                     b->name, n, name, k, WAIT_MS);
            mt_dump_fail(&b->log, NULL, msg);
        }
        tt_nap_ms(10);
    }
}

START_TEST(bind_versions_and_late_services)
{
    static const uint32_t v1[] = { 1 }, v13[] = { 1, 3 };
    qrpc_client *c2, *c3, *c3s0, *cn, *p3, *b;
    uint32_t got[4];
    int64_t t0;
    int rc, g0;
    v3srv v;
    want w;
    qrpc_Table t;
    bnode *ns[3];
    cluster c;

    cluster_open(&c, 0);
    wait_versions(&c.cl, "bank.Bank", v1, 1);

    /* nobody offers it; only another version is offered: clear errors, at once */
    cn = bn_client(&c.cl, &nobody_desc);
    c2 = bn_client(&c.cl, &bank_v2_desc);
    t0 = tt_now_ms();
    ck_assert_int_eq(bn_ping(cn), QRPC_ENOSERVICE);
    ck_assert_int_eq(bn_ping(c2), QRPC_ENOVERSION);
    ck_assert(tt_now_ms() - t0 < (int64_t)PROMPT_MS);
    ck_assert_int_eq(qrpc_node_versions(c.cl.node, "nobody.Nothing", got, 4), 0);
    ck_assert(tt_log_wait(&c.cl.log, "no node offers this version", PROMPT_MS));

    /* a service served later (a channel) reaches every table */
    memset(&v, 0, sizeof v);
    atomic_init(&v.answered, 0);
    ck_assert_int_eq(qrpc_channel_open(c.s[1].node, &bank_v3_desc, &v.ch), 0);
    ck_assert_int_eq(pthread_create(&v.thread, NULL, v3_main, &v), 0);
    wait_versions(&c.cl, "bank.Bank", v13, 2);
    wait_versions(&c.s[0], "bank.Bank", v13, 2);
    ck_assert_int_eq(qrpc_node_versions(c.cl.node, "bank.Bank", got, 1), 2);   /* max 1 */
    ck_assert_uint_eq(got[0], 1);
    ck_assert_int_eq(qrpc_node_versions(c.cl.node, "bank.Bank", NULL, 0), 2);
    c3 = bn_client(&c.cl, &bank_v3_desc);
    c3s0 = bn_client(&c.s[0], &bank_v3_desc);
    p3 = bn_client(&c.cl, &bank_v3_ping_desc);
    ck_assert_uint_eq(v3_call(c3), 3);
    ck_assert_uint_eq(v3_call(c3s0), 3);            /* s0 does not serve v3: to s1 */
    ck_assert_int_eq(bn_ping(p3), 0);
    ck_assert_int_eq(atomic_load(&v.answered), 2);  /* the ping ran no channel request */
    ck_assert_int_eq(bn_ping(c2), QRPC_ENOVERSION);

    /* withdrawn: gone from the tables, and a clear error again */
    qrpc_channel_close(v.ch);
    pthread_join(v.thread, NULL);
    wait_versions(&c.cl, "bank.Bank", v1, 1);
    rc = bn_ping(p3);
    ck_assert_msg(rc == QRPC_ENOVERSION, "v3 after the channel closed: %s", qrpc_err_name(rc));

    /* s1 stops serving bank.Bank: every call goes to s0 */
    ck_assert_int_eq(qrpc_unserve(c.s[1].node, "bank.Bank", 1), 0);
    cluster_want(&c, &w);
    w.offered[1] = false;
    ns[0] = &c.s[0];
    ns[1] = &c.s[1];
    ns[2] = &c.cl;
    converge(&c.env, &w, ns, 3, &t);
    qrpc_Table_free(&t);
    b = bn_client(&c.cl, &bank_Bank_desc);
    g0 = atomic_load(&c.s[0].gets);
    bn_gets(b, 10, "s1 unserved");
    ck_assert_int_eq(atomic_load(&c.s[0].gets), g0 + 10);
    ck_assert_int_eq(atomic_load(&c.s[1].gets), 0);
    /* and s1 itself, which no longer serves it, binds to s0 over TCP */
    qrpc_client_destroy(b);
    b = bn_client(&c.s[1], &bank_Bank_desc);
    bn_gets(b, 3, "from s1");
    ck_assert_int_eq(atomic_load(&c.s[0].gets), g0 + 13);

    qrpc_client_destroy(b);
    qrpc_client_destroy(p3);
    qrpc_client_destroy(c3s0);
    qrpc_client_destroy(c3);
    qrpc_client_destroy(c2);
    qrpc_client_destroy(cn);
    cluster_close(&c);
}
END_TEST

START_TEST(bind_binding_info)
{
    qrpc_binding_info b0, b1, bc;
    qrpc_Table t;
    uint32_t v;
    cluster c;

    cluster_open(&c, 0);
    cluster_converge(&c, &t);
    ck_assert_int_eq(qrpc_node_get_binding(c.s[0].node, &b0), 0);
    ck_assert_int_eq(qrpc_node_get_binding(c.s[1].node, &b1), 0);
    ck_assert_int_eq(qrpc_node_get_binding(c.cl.node, &bc), 0);
    ck_assert(b0.registered && b1.registered);
    ck_assert(!bc.registered);                  /* it does not listen */
    ck_assert_uint_eq(bc.rank, 0);
    ck_assert(b0.rank != b1.rank && b0.rank < 2 && b1.rank < 2);
    ck_assert_uint_eq(mt_get(&t, b0.node_id)->rank, b0.rank);
    ck_assert_uint_eq(mt_get(&t, b1.node_id)->rank, b1.rank);
    ck_assert(b0.node_id != 0 && b1.node_id != 0 && bc.node_id != 0);
    ck_assert(b0.node_id != b1.node_id && b0.node_id != bc.node_id);
    ck_assert_uint_eq(b0.master, t.master);
    ck_assert_uint_eq(bc.master, t.master);
    ck_assert_uint_eq(b0.epoch, t.epoch);
    ck_assert_uint_eq(bc.nodes, 2);
    /* each server's table entry carries its own listening address */
    ck_assert_str_eq(mt_get(&t, b0.node_id)->addresses.items[0].address,
                     qrpc_node_address(c.s[0].node));
    ck_assert_str_eq(mt_get(&t, b0.node_id)->addresses.items[0].transport, "tcp");
    qrpc_Table_free(&t);

    /* without a master, or with bad arguments */
    ck_assert_int_eq(qrpc_node_get_binding(c.env.n, &bc), QRPC_EINVAL);
    ck_assert_int_eq(qrpc_node_versions(c.env.n, "bank.Bank", &v, 1), QRPC_EINVAL);
    ck_assert_int_eq(qrpc_node_get_binding(NULL, &bc), QRPC_EINVAL);
    ck_assert_int_eq(qrpc_node_get_binding(c.cl.node, NULL), QRPC_EINVAL);
    ck_assert_int_eq(qrpc_node_versions(c.cl.node, NULL, &v, 1), QRPC_EINVAL);
    ck_assert_int_eq(qrpc_node_versions(c.cl.node, "bank.Bank", NULL, 1), QRPC_EINVAL);
    cluster_close(&c);
}
END_TEST

/*
 * zk:// master addresses: those that do not parse are QRPC_EADDR with a
 * log line saying what is wrong, in every build; a good one makes a node
 * (that connects in the background: nothing listens at the port) in a
 * build with ZooKeeper, and is QRPC_ENOTSUP, saying how to enable it, in
 * one without.
 */
START_TEST(bind_zk_address)
{
    static const struct {
        const char *addr, *said;
    } bad[] = {
        { "zk://", "not zk://" },
        { "zk://127.0.0.1:2181", "not zk://" },
        { "zk:///qrpc", "not zk://" },
        { "zk://127.0.0.1:2181/", "the path must be" },
        { "zk://127.0.0.1/qrpc", "is not host:port" },
        { "zk://127.0.0.1:2181,/qrpc", "a trailing comma" },
        { "zk://127.0.0.1:2181,,127.0.0.1:2182/qrpc", "an empty or overlong server" },
        { "zk://127.0.0.1:2181/a//b", "segments of letters" },
        { "zk://127.0.0.1:2181/a/", "segments of letters" },
        { "zk://127.0.0.1:2181/a b", "segments of letters" },
        { "zk://127.0.0.1:2181/zookeeper/x", "ZooKeeper's own" },
        { "zk://127.0.0.1:2181/qrpc?session_ms=999", "session_ms must be" },
        { "zk://127.0.0.1:2181/qrpc?session_ms=600001", "session_ms must be" },
        { "zk://127.0.0.1:2181/qrpc?session_ms=", "the only option" },
        { "zk://127.0.0.1:2181/qrpc?lease=5", "the only option" },
    };
    qrpc_node_config cfg;
    qrpc_binding_info bi;
    qrpc_node *n;
    tt_log log;
    size_t i;
    int rc, dead_fd, dead_port;
    char good[96];

    unsetenv("QRPC_MASTER");
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tt_log_init(&log);
        qrpc_node_config_init(&cfg);
        cfg.master = bad[i].addr;
        cfg.log = tt_log_fn;
        cfg.log_arg = &log;
        n = NOT_NULL;
        rc = qrpc_node_create(&cfg, &n);
        ck_assert_msg(rc == QRPC_EADDR, "master \"%s\": %s", bad[i].addr, qrpc_err_name(rc));
        ck_assert_ptr_null(n);
        ck_assert_msg(tt_log_wait(&log, bad[i].said, PROMPT_MS), "master \"%s\": no log line "
                      "saying '%s'", bad[i].addr, bad[i].said);
        tt_log_fini(&log);
    }

    dead_fd = raw_bind_loopback(&dead_port);        /* bound, not listening */
    snprintf(good, sizeof good, "zk://127.0.0.1:%d,localhost:%d/qrpc/t-1?session_ms=4000",
             dead_port, dead_port);
    tt_log_init(&log);
    qrpc_node_config_init(&cfg);
    cfg.master = good;
    cfg.log = tt_log_fn;
    cfg.log_arg = &log;
    n = NOT_NULL;
    rc = qrpc_node_create(&cfg, &n);
#ifdef QRPC_HAVE_ZOOKEEPER
    ck_assert_msg(rc == 0, "master \"%s\": %s", good, qrpc_err_name(rc));
    ck_assert_int_eq(qrpc_node_get_binding(n, &bi), 0);
    ck_assert(!bi.registered);
    ck_assert_uint_eq(bi.epoch, 0);
    qrpc_node_destroy(n);
#else
    (void)bi;
    ck_assert_msg(rc == QRPC_ENOTSUP, "master \"%s\": %s", good, qrpc_err_name(rc));
    ck_assert_ptr_null(n);
    ck_assert(tt_log_wait(&log, "install libzookeeper-mt-dev", PROMPT_MS));
#endif
    tt_log_fini(&log);
    close(dead_fd);
}
END_TEST

START_TEST(bind_config)
{
    static const char *const bad[] = { "not an address", "127.0.0.1", "127.0.0.1:99999", ":" };
    qrpc_node_config cfg;
    qrpc_binding_info bi;
    qrpc_node *n;
    bnode a, b;
    tt_log log;
    size_t i;
    int64_t until;
    int rc, dead_fd, dead_port;
    char dead[64];
    mt_env e;

    unsetenv("QRPC_MASTER");
    tt_log_init(&log);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qrpc_node_config_init(&cfg);
        cfg.master = bad[i];
        cfg.log = tt_log_fn;
        cfg.log_arg = &log;
        n = NOT_NULL;
        rc = qrpc_node_create(&cfg, &n);
        ck_assert_msg(rc == QRPC_EADDR, "master \"%s\": %s", bad[i], qrpc_err_name(rc));
        ck_assert_ptr_null(n);
        cfg.listen = "127.0.0.1:0";
        n = NOT_NULL;
        ck_assert_int_eq(qrpc_node_create(&cfg, &n), QRPC_EADDR);
        ck_assert_ptr_null(n);
    }
    tt_log_fini(&log);

    mt_open(&e, NULL);
    dead_fd = raw_bind_loopback(&dead_port);        /* bound, not listening */
    snprintf(dead, sizeof dead, "127.0.0.1:%d", dead_port);

    /* cfg.master NULL: QRPC_MASTER */
    ck_assert_int_eq(setenv("QRPC_MASTER", e.addr, 1), 0);
    bn_open(&a, "s0", "127.0.0.1:0", NULL, true);
    ck_assert_int_eq(qrpc_node_get_binding(a.node, &bi), 0);
    /* "": none, whatever QRPC_MASTER says */
    n = mt_node(&log, "127.0.0.1:0", "");
    ck_assert_int_eq(qrpc_node_get_binding(n, &bi), QRPC_EINVAL);
    qrpc_node_destroy(n);
    tt_log_fini(&log);
    /* no config at all: QRPC_MASTER too */
    ck_assert_int_eq(qrpc_node_create(NULL, &n), 0);
    ck_assert_int_eq(qrpc_node_get_binding(n, &bi), 0);
    qrpc_node_destroy(n);
    /* cfg.master wins over QRPC_MASTER */
    ck_assert_int_eq(setenv("QRPC_MASTER", dead, 1), 0);
    bn_open(&b, "s1", "127.0.0.1:0", e.addr, true);
    /* an unparsable QRPC_MASTER is an error like an unparsable cfg.master */
    ck_assert_int_eq(setenv("QRPC_MASTER", "nonsense", 1), 0);
    tt_log_init(&log);
    qrpc_node_config_init(&cfg);
    cfg.log = tt_log_fn;
    cfg.log_arg = &log;
    n = NOT_NULL;
    ck_assert_int_eq(qrpc_node_create(&cfg, &n), QRPC_EADDR);
    ck_assert_ptr_null(n);
    ck_assert(tt_log_wait(&log, "nonsense", PROMPT_MS));
    tt_log_fini(&log);
    /* QRPC_MASTER empty or unset: no master */
    ck_assert_int_eq(setenv("QRPC_MASTER", "", 1), 0);
    n = mt_node(&log, NULL, NULL);
    ck_assert_int_eq(qrpc_node_get_binding(n, &bi), QRPC_EINVAL);
    qrpc_node_destroy(n);
    tt_log_fini(&log);
    ck_assert_int_eq(unsetenv("QRPC_MASTER"), 0);
    n = mt_node(&log, NULL, NULL);
    ck_assert_int_eq(qrpc_node_get_binding(n, &bi), QRPC_EINVAL);
    qrpc_node_destroy(n);
    tt_log_fini(&log);

    /* both servers registered with the master that QRPC_MASTER, then cfg.master, named */
    until = tt_now_ms() + WAIT_MS;
    for (;;) {
        qrpc_Table t;
        bool ok;

        mt_table(e.c, &t);
        ok = t.nodes.len == 2 && mt_offers(mt_find(&t, bn_id(&a)), "bank.Bank", 1) &&
             mt_offers(mt_find(&t, bn_id(&b)), "bank.Bank", 1);
        qrpc_Table_free(&t);
        if (ok)
            break;
        if (tt_now_ms() > until)
            mt_dump_fail(&a.log, &b.log, "nodes did not register with the configured master");
        tt_nap_ms(10);
    }
    bn_close(&b);
    bn_close(&a);
    close(dead_fd);
    mt_close(&e);
}
END_TEST

/* A master nobody runs: nodes start, bound calls fail at once, local ones work. */
START_TEST(bind_no_master)
{
    qrpc_binding_info bi;
    bank_Account acc;
    qrpc_client *b, *lb;
    bnode s, cl;
    char dead[64];
    int64_t t0, dt;
    int fd, port, rc;

    fd = raw_bind_loopback(&port);                  /* bound, not listening */
    snprintf(dead, sizeof dead, "127.0.0.1:%d", port);
    t0 = tt_now_ms();
    bn_open(&s, "s0", "127.0.0.1:0", dead, true);
    bn_open(&cl, "cl", NULL, dead, false);
    ck_assert(tt_now_ms() - t0 < (int64_t)PROMPT_MS);

    b = bn_client(&cl, &bank_Bank_desc);
    t0 = tt_now_ms();
    rc = bank_Bank_get(b, "x", &acc);
    dt = tt_now_ms() - t0;
    ck_assert_msg(rc == QRPC_EUNAVAILABLE, "bound call without a master: %s",
                  qrpc_err_name(rc));
    ck_assert_msg(dt < (int64_t)PROMPT_MS, "bound call without a master took %" PRId64 " ms",
                  dt);
    ck_assert(tt_log_wait(&cl.log, "no cluster table yet", PROMPT_MS));
    t0 = tt_now_ms();
    ck_assert_int_eq(bank_Bank_get(b, "x", &acc), QRPC_EUNAVAILABLE);
    ck_assert(tt_now_ms() - t0 < (int64_t)PROMPT_MS);
    /* a node serving the service itself calls it all the same */
    lb = bn_client(&s, &bank_Bank_desc);
    bn_gets(lb, 3, "local, no master");
    ck_assert_int_eq(atomic_load(&s.gets), 3);
    ck_assert_int_eq(qrpc_node_get_binding(s.node, &bi), 0);
    ck_assert(!bi.registered);
    ck_assert_uint_eq(bi.epoch, 0);
    ck_assert_uint_eq(bi.nodes, 0);
    ck_assert(tt_log_wait(&s.log, "cannot register with the master", PROMPT_MS));

    qrpc_client_destroy(lb);
    qrpc_client_destroy(b);
    t0 = tt_now_ms();
    bn_close(&cl);
    bn_close(&s);
    ck_assert_msg(tt_now_ms() - t0 < (int64_t)PROMPT_MS, "destroying the nodes took %" PRId64
                  " ms", tt_now_ms() - t0);
    close(fd);
}
END_TEST

START_TEST(bind_master_restart)
{
    qrpc_master_config cfg;
    qrpc_binding_info b0, b1;
    qrpc_client *b;
    qrpc_Table t;
    char listen[64];
    uint64_t m1, m2;
    int g0, g1, rc;
    cluster c;

    cluster_open(&c, 1000);         /* a short first lease after the restart */
    ck_assert_int_eq(qrpc_node_get_binding(c.s[0].node, &b0), 0);
    ck_assert_int_eq(qrpc_node_get_binding(c.s[1].node, &b1), 0);
    m1 = b0.master;
    snprintf(listen, sizeof listen, "127.0.0.1:%d", mt_port(c.env.addr));
    b = bn_client(&c.cl, &bank_Bank_desc);

    qrpc_master_stop(c.env.m);
    c.env.m = NULL;
    /* without a master the nodes serve and call on with their last table */
    bn_gets(b, 6, "master down");
    ck_assert_int_eq(atomic_load(&c.s[0].gets) + atomic_load(&c.s[1].gets), 6);

    mt_master_config(&cfg, &c.env.mlog);
    cfg.listen = listen;
    cfg.lease_ms = 1000;
    rc = qrpc_master_start(&cfg, &c.env.m);
    ck_assert_msg(rc == 0, "restart on %s: %s", listen, qrpc_err_name(rc));
    ck_assert_str_eq(qrpc_master_address(c.env.m), c.env.addr);
    /* the nodes notice and register again, asking back their ranks */
    cluster_converge(&c, &t);
    m2 = t.master;
    ck_assert(m2 != m1);
    ck_assert_uint_eq(mt_get(&t, b0.node_id)->rank, b0.rank);
    ck_assert_uint_eq(mt_get(&t, b1.node_id)->rank, b1.rank);
    qrpc_Table_free(&t);
    ck_assert_int_eq(qrpc_node_get_binding(c.s[0].node, &b0), 0);
    ck_assert(b0.registered);
    ck_assert_uint_eq(b0.master, m2);
    ck_assert_int_eq(qrpc_node_get_binding(c.cl.node, &b1), 0);
    ck_assert_uint_eq(b1.master, m2);
    ck_assert_uint_eq(b1.nodes, 2);
    /* and calls spread over both again */
    g0 = atomic_load(&c.s[0].gets);
    g1 = atomic_load(&c.s[1].gets);
    bn_gets(b, 20, "after the restart");
    ck_assert(atomic_load(&c.s[0].gets) - g0 >= 5 && atomic_load(&c.s[1].gets) - g1 >= 5);
    qrpc_client_destroy(b);
    cluster_close(&c);
}
END_TEST

/* A node the master dropped (here: told to) registers again by itself, with its rank. */
START_TEST(bind_rejoin_after_drop)
{
    qrpc_binding_info b1;
    qrpc_client *b;
    qrpc_Table t;
    int g1;
    cluster c;

    cluster_open(&c, 900);          /* heartbeats every 300 ms */
    ck_assert_int_eq(qrpc_node_get_binding(c.s[1].node, &b1), 0);
    ck_assert_int_eq(qrpc_Master_leave(c.env.c, b1.node_id), 0);
    mt_table(c.env.c, &t);
    ck_assert_ptr_null(mt_find(&t, b1.node_id));
    qrpc_Table_free(&t);
    /* its next heartbeat is refused; it joins again and everyone sees it */
    cluster_converge(&c, &t);
    ck_assert_uint_eq(mt_get(&t, b1.node_id)->rank, b1.rank);
    qrpc_Table_free(&t);
    ck_assert_tt_log_has(&c.s[1].log, "registering again");
    b = bn_client(&c.cl, &bank_Bank_desc);
    g1 = atomic_load(&c.s[1].gets);
    bn_gets(b, 10, "after the rejoin");
    ck_assert(atomic_load(&c.s[1].gets) - g1 >= 3);
    qrpc_client_destroy(b);
    cluster_close(&c);
}
END_TEST

/*
 * Adds to the cluster's table a node the test registers itself, at addr,
 * offering bank.Bank version 1, and waits until every node holds it.
 */
static void cluster_add_fake(cluster *c, uint64_t id, const char *addr)
{
    static const qrpc_ServiceRef bank1[] = { SREF("bank.Bank", 1) };
    bnode *ns[3] = { &c->s[0], &c->s[1], &c->cl };
    qrpc_Table t;
    want w;

    mt_join_ok(c->env.c, id, NO_RANK, addr, bank1, 1);
    cluster_want(c, &w);
    w.ids[2] = id;
    w.offered[2] = true;
    w.n = 3;
    converge(&c->env, &w, ns, 3, &t);
    qrpc_Table_free(&t);
}

/*
 * Failover of calls that certainly never reached a node: the table lists
 * a node whose address refuses connections (its process is gone, its
 * lease not yet run out).  Every bound call, at-most-once ones included,
 * moves to a live node at once, and runs once.
 */
START_TEST(bind_failover_refused)
{
    qrpc_client *b;
    char dead[64];
    int fd, port, i;
    int64_t t0;
    cluster c;

    cluster_open(&c, 600000);
    fd = raw_bind_loopback(&port);                  /* bound, not listening */
    snprintf(dead, sizeof dead, "127.0.0.1:%d", port);
    cluster_add_fake(&c, 777, dead);
    b = bn_client(&c.cl, &bank_Bank_desc);
    t0 = tt_now_ms();
    bn_gets(b, 9, "a node refusing connections in the table");
    for (i = 0; i < 9; i++) {
        common_Money mo = { common_Currency_EUR, i };
        int64_t r = -1;
        int rc = bank_Bank_deposit(b, "x", &mo, &r);

        ck_assert_msg(rc == 0, "deposit %d: %s", i, qrpc_err_name(rc));
        ck_assert(r == i || r == 1000 + i);
    }
    ck_assert_msg(tt_now_ms() - t0 < (int64_t)PROMPT_MS, "18 calls took %" PRId64 " ms",
                  tt_now_ms() - t0);
    ck_assert_int_eq(atomic_load(&c.s[0].gets) + atomic_load(&c.s[1].gets), 9);
    ck_assert_int_eq(atomic_load(&c.s[0].deposits) + atomic_load(&c.s[1].deposits), 9);
    qrpc_client_destroy(b);
    close(fd);
    cluster_close(&c);
}
END_TEST

/*
 * A node that accepts connections and never answers (hung): an idempotent
 * call sent there moves to another node after its first wait (retry_ms);
 * an at-most-once one, which may have been delivered, never moves: it
 * fails (QRPC_EUNKNOWN, or QRPC_ETIMEDOUT at its deadline) and runs
 * nowhere.
 */
START_TEST(bind_failover_silent)
{
    qrpc_client *b;
    char hole[64];
    int fd, port, i, ok = 0, failed = 0;
    cluster c;

    cluster_open(&c, 600000);
    fd = raw_bind_loopback(&port);
    ck_assert_int_eq(listen(fd, 16), 0);            /* the kernel accepts; nobody reads */
    snprintf(hole, sizeof hole, "127.0.0.1:%d", port);
    cluster_add_fake(&c, 778, hole);
    b = bn_client(&c.cl, &bank_Bank_desc);
    qrpc_client_set_timeout(b, 3000);
    bn_gets(b, 3, "a hung node in the table");          /* one of 3 goes there */
    ck_assert_int_eq(atomic_load(&c.s[0].gets) + atomic_load(&c.s[1].gets), 3);
    for (i = 0; i < 3; i++) {
        common_Money mo = { common_Currency_EUR, i };
        int64_t r = -1;
        int rc = bank_Bank_deposit(b, "x", &mo, &r);

        if (rc == 0) {
            ok++;
        } else {
            ck_assert_msg(rc == QRPC_EUNKNOWN || rc == QRPC_ETIMEDOUT,
                          "an at-most-once call to a hung node: %s", qrpc_err_name(rc));
            failed++;
        }
    }
    ck_assert_int_eq(failed, 1);
    ck_assert_int_eq(atomic_load(&c.s[0].deposits) + atomic_load(&c.s[1].deposits), ok);
    qrpc_client_destroy(b);
    close(fd);
    cluster_close(&c);
}
END_TEST

/* A destroyed node leaves every table at once (not after its lease). */
START_TEST(bind_leave_on_destroy)
{
    qrpc_client *b, *lb;
    qrpc_binding_info bi;
    int64_t t0, until, dt;
    int g0;
    cluster c;

    cluster_open(&c, 600000);        /* a lease far longer than the test */
    b = bn_client(&c.cl, &bank_Bank_desc);
    lb = bn_client(&c.s[0], &bank_Bank_desc);
    bn_gets(b, 4, "before");

    t0 = tt_now_ms();
    bn_close(&c.s[1]);
    until = t0 + PROMPT_MS;
    for (;;) {
        qrpc_Table t;
        bool gone;

        mt_table(c.env.c, &t);
        ck_assert_int_eq(qrpc_node_get_binding(c.cl.node, &bi), 0);
        gone = t.nodes.len == 1 && bi.nodes == 1 && bi.epoch == t.epoch;
        qrpc_Table_free(&t);
        if (gone)
            break;
        if (tt_now_ms() > until)
            mt_dump_fail(&c.cl.log, &c.env.mlog, "a destroyed node stayed in the tables");
        tt_nap_ms(5);
    }
    dt = tt_now_ms() - t0;
    ck_assert_msg(dt < (int64_t)PROMPT_MS, "left the tables after %" PRId64 " ms", dt);
    ck_assert_tt_log_has(&c.env.mlog, "left");
    /* every bound call now goes to s0; s0's own still run locally */
    g0 = atomic_load(&c.s[0].gets);
    bn_gets(b, 10, "after s1 left");
    bn_gets(lb, 5, "s0 local");
    ck_assert_int_eq(atomic_load(&c.s[0].gets), g0 + 15);
    qrpc_client_destroy(lb);
    qrpc_client_destroy(b);
    cluster_close(&c);
}
END_TEST

/* ---- the program ------------------------------------------------------------------------ */

int main(void)
{
    Suite *s = suite_create("master");
    TCase *tc;

    tc = tcase_create("table");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, master_config);
    tcase_add_test(tc, master_ranks_dense);
    tcase_add_test(tc, master_rank_hint);
    tcase_add_test(tc, master_rejoin);
    tcase_add_test(tc, master_same_address);
    tcase_add_test(tc, master_lease);
    tcase_add_test(tc, master_watch);
    tcase_add_test(tc, master_watch_cap);
    tcase_add_test(tc, master_watch_first_lease);
    tcase_add_test(tc, master_stop_held_watch);
    suite_add_tcase(s, tc);

    tc = tcase_create("bad input");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, master_bad_input);
    tcase_add_test(tc, master_many_services);
    suite_add_tcase(s, tc);

    tc = tcase_create("nodes");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, bind_spread_and_local);
    tcase_add_test(tc, bind_versions_and_late_services);
    tcase_add_test(tc, bind_binding_info);
    tcase_add_test(tc, bind_config);
    tcase_add_test(tc, bind_zk_address);
    tcase_add_test(tc, bind_no_master);
    tcase_add_test(tc, bind_master_restart);
    tcase_add_test(tc, bind_rejoin_after_drop);
    tcase_add_test(tc, bind_failover_refused);
    tcase_add_test(tc, bind_failover_silent);
    tcase_add_test(tc, bind_leave_on_destroy);
    suite_add_tcase(s, tc);

    return tu_run_suite(s);
}
