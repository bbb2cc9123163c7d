/*
 * test_rdma.c - the RDMA transport end to end.
 *
 * First the transports' conformance suite: test_tcp.c, included here with
 * TT_RDMA defined, runs every test that does not write raw TCP bytes over
 * RDMA instead -- server processes listening for RDMA on 127.0.0.1,
 * clients given their "rdma-emu://" addresses: calls of every form,
 * concurrency, large messages (the zero-copy path), servers killed and
 * restarted, deadlines, limits, shutdown.  Then what only RDMA has:
 * polling mode, tight credits, hostile RDMA peers (bogus remote keys and
 * lengths, credits it does not have, garbage), and binding choosing RDMA
 * where both sides have it.
 *
 * Everything runs over the software emulation of the verbs layer
 * (verbs_emu.c), and again over the real verbs when the machine has an
 * RDMA device; without one the real run is skipped with a line saying so.
 */
#define TT_RDMA 1
/* test_tcp.c's raw-TCP tests are compiled here but not run */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-variable"
#include "test_tcp.c"

#include "../../runtime/src/core.h"
#include "../../runtime/src/frame.h"
#include "../../runtime/src/verbs.h"

static const char *rdma_provider = "emu";

/* ---- polling mode and tight credits ------------------------------------------------ */

static void rdma_exercise(tcli *c, const char *what)
{
    static uint8_t big[3 << 20];
    qrpc_bytes data = { big, sizeof big };
    kitchen_Hash seed, h, want;
    common_Money m = { common_Currency_USD, 1 };
    uint64_t x = 0x5eed;
    size_t i;
    int k, rc;

    for (k = 0; k < 500; k++) {
        int32_t r = 0;

        ck_assert_int_eq(kitchen_Kitchen_add(c->k, -k, 1000, &r), 0);
        ck_assert_int_eq(r, 1000 - k);
    }
    for (i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)xorshift(&x);
    memset(seed, 7, sizeof seed);
    rc = kitchen_Kitchen_digest(c->k, &data, (const kitchen_Hash *)&seed, &m,
                                kitchen_Color_GREEN, 2, &h);
    ck_assert_msg(rc == 0, "%s: digest: %s", what, qrpc_err_name(rc));
    kd_digest(&data, (const kitchen_Hash *)&seed, &m, kitchen_Color_GREEN, 2, &want);
    ck_assert_msg(memcmp(h, want, sizeof h) == 0, "%s: the 3 MiB digest differs", what);
}

/* A server with the environment variable env set to value (srv_main reads
 * it), a client node configured alike by cfg, and rdma_exercise(). */
static void rdma_variant(const char *env, const char *value, const qrpc_node_config *cfg,
                         const char *what)
{
    qrpc_node_config c2 = *cfg;
    tsrv s;
    tcli c;

    setenv(env, value, 1);
    tsrv_start(&s, NULL);
    tcli_open_cfg(&c, s.addr, &c2);
    rdma_exercise(&c, what);
    tcli_close(&c);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}

START_TEST(rdma_polling)
{
    qrpc_node_config cfg;

    qrpc_node_config_init(&cfg);
    cfg.rdma_polling = 1;
    rdma_variant("TT_RDMA_POLLING", "1", &cfg, "polling on both sides");
}
END_TEST

START_TEST(rdma_tight_credits)
{
    qrpc_node_config cfg;

    /* four receive buffers each way: every message waits for credits */
    qrpc_node_config_init(&cfg);
    cfg.rdma_credits = 4;
    rdma_variant("TT_RDMA_CREDITS", "4", &cfg, "4 credits");
}
END_TEST

static bool rdma_have_device(char *why, size_t len);

START_TEST(rdma_bad_config)
{
    qrpc_node_config cfg;
    qrpc_node *n = NULL;
    char why[160];
    tt_log log;

    tt_log_init(&log);
    qrpc_node_config_init(&cfg);
    cfg.log = tt_log_fn;
    cfg.log_arg = &log;
    cfg.rdma = "infiniband";
    ck_assert_int_eq(qrpc_node_create(&cfg, &n), QRPC_EINVAL);
    ck_assert(n == NULL);
    ck_assert(tt_log_wait(&log, "unknown provider \"infiniband\"", 1000));
    cfg.rdma = "emu";
    cfg.rdma_credits = 3;
    ck_assert_int_eq(qrpc_node_create(&cfg, &n), QRPC_EINVAL);
    cfg.rdma_credits = 1025;
    ck_assert_int_eq(qrpc_node_create(&cfg, &n), QRPC_EINVAL);
    cfg.rdma_credits = 0;
    cfg.rdma_polling = 2;
    ck_assert_int_eq(qrpc_node_create(&cfg, &n), QRPC_EINVAL);
    /* an RDMA listener on an address that does not parse */
    cfg.rdma_polling = 0;
    cfg.rdma = "emu";
    cfg.listen = "127.0.0.1:0";
    cfg.rdma_listen = "no-such-address";
    ck_assert_int_eq(qrpc_node_create(&cfg, &n), QRPC_EADDR);
    ck_assert(tt_log_wait(&log, "rdma: cannot listen on no-such-address", 1000));
    cfg.listen = NULL;
    cfg.rdma_listen = NULL;
    /* real verbs asked for where there is no device */
    if (!rdma_have_device(why, sizeof why)) {
        cfg.rdma = "verbs";
        ck_assert_int_eq(qrpc_node_create(&cfg, &n), QRPC_ENOTSUP);
        ck_assert(tt_log_wait(&log, "rdma: ", 1000));
    }
    /* a node without RDMA cannot take an RDMA address */
    cfg.rdma = "none";
    ck_assert_int_eq(qrpc_node_create(&cfg, &n), 0);
    {
        qrpc_client *k = NULL;

        ck_assert_int_eq(kitchen_Kitchen_connect(n, "rdma-emu://127.0.0.1:1", &k),
                         QRPC_EADDR);
        ck_assert(k == NULL);
    }
    ck_assert(qrpc_node_rdma_address(n) == NULL);
    qrpc_node_destroy(n);
    tt_log_fini(&log);
}
END_TEST

/* ---- hostile RDMA peers ------------------------------------------------------------- */

/*
 * A raw peer: the verbs layer used directly, speaking rdma.c's protocol
 * (qrpc-protocol(7), RDMA) by hand: the constants are the protocol's,
 * restated here on purpose.
 */
#define RP_BUF     16384u
#define RP_RECVS   32u
#define RP_MEM     (RP_BUF * (RP_RECVS + 2) + 8192u)

typedef struct rp {
    const qrpc__verbs_ops *ops;
    qrpc__vdev *d;
    qrpc__vep *e;
    uint8_t *mem;               /* receives, then a send buffer, then a target */
    qrpc__vmr mr;
    uint8_t *small;             /* 4096 bytes registered on their own */
    qrpc__vmr smr;
} rp;

static void rp_pdata(uint8_t *pd, uint32_t magic)
{
    memset(pd, 0, 16);
    qrpc__put32(pd, magic);
    pd[4] = 1;
    qrpc__put16(pd + 6, RP_RECVS);
    qrpc__put32(pd + 8, RP_BUF);
    qrpc__put32(pd + 12, 65536);        /* its staging buffer */
}

/* Connects to url's host:port; magic is what the private data begins with. */
static int rp_open(rp *p, const char *url, uint32_t magic)
{
    uint8_t pd[16], peer[QRPC__VPDATA_MAX];
    size_t plen = sizeof peer;
    qrpc__vcaps caps = { 64, RP_RECVS };
    char why[160] = "";
    uint64_t deadline = tt_now_ns() + 5000000000u;
    const char *hp = strstr(url, "://") + 3;
    uint32_t i;
    int rc;

    memset(p, 0, sizeof *p);
    p->ops = strcmp(rdma_provider, "emu") == 0 ? &qrpc__verbs_emu :
#ifdef QRPC_HAVE_VERBS
             &qrpc__verbs_ibv;
#else
             NULL;
#endif
    ck_assert(p->ops != NULL);
    ck_assert_int_eq(p->ops->dev_open(&p->d, why, sizeof why), 0);
    p->mem = calloc(1, RP_MEM);
    p->small = calloc(1, 4096);
    ck_assert(p->mem != NULL && p->small != NULL);
    ck_assert_int_eq(p->ops->reg_mr(p->d, p->mem, RP_MEM, QRPC__VACC_LOCAL_WRITE |
                                    QRPC__VACC_REMOTE_READ, &p->mr), 0);
    ck_assert_int_eq(p->ops->reg_mr(p->d, p->small, 4096, QRPC__VACC_REMOTE_READ, &p->smr), 0);
    rc = p->ops->connect_start(p->d, hp, &caps, deadline, &p->e, why, sizeof why);
    ck_assert_msg(rc == 0, "connect_start %s: %s", hp, why);
    for (i = 0; i < RP_RECVS; i++) {
        qrpc__vsge sge = { p->mem + (size_t)i * RP_BUF, RP_BUF, p->mr.lkey };

        ck_assert_int_eq(p->ops->post_recv(p->e, i, &sge), 0);
    }
    rp_pdata(pd, magic);
    return p->ops->connect_finish(p->e, pd, sizeof pd, peer, &plen, deadline, why, sizeof why);
}

static void rp_close(rp *p)
{
    if (p->e != NULL)
        p->ops->ep_close(p->e);
    p->ops->dereg_mr(p->d, &p->smr);
    p->ops->dereg_mr(p->d, &p->mr);
    p->ops->dev_close(p->d);
    free(p->mem);
    free(p->small);
}

/* Sends one message: type, credits given back, declared length, body. */
static void rp_send(rp *p, uint8_t type, uint16_t credits, uint32_t declared,
                    const uint8_t *body, uint32_t len)
{
    uint8_t *b = p->mem + (size_t)RP_RECVS * RP_BUF;
    qrpc__vsend wr;

    b[0] = type;
    b[1] = 0;
    qrpc__put16(b + 2, credits);
    qrpc__put32(b + 4, declared);
    memcpy(b + 8, body, len);
    memset(&wr, 0, sizeof wr);
    wr.wr_id = 1000;
    wr.op = QRPC__VOP_SEND;
    wr.sge.addr = b;
    wr.sge.len = 8 + len;
    wr.sge.lkey = p->mr.lkey;
    ck_assert_int_eq(p->ops->post_send(p->e, &wr), 0);
}

/* Waits for a completion on cq with wr_id (or any status but OK when
 * want_error): true if one came within ms. */
static bool rp_wait(rp *p, qrpc__vcq cq, bool want_flush, unsigned ms, qrpc__vwc *out)
{
    int64_t until = tt_now_ms() + ms;

    while (tt_now_ms() < until) {
        qrpc__vwc wc;
        struct pollfd pf = { p->ops->ep_fd(p->e), POLLIN, 0 };

        (void)p->ops->arm(p->e, cq);
        while (p->ops->poll_cq(p->e, cq, &wc, 1) == 1) {
            if (!want_flush || wc.status != QRPC__VWC_OK) {
                if (out != NULL)
                    *out = wc;
                return true;
            }
        }
        (void)poll(&pf, 1, 50);
    }
    return false;
}

enum {
    HB_BAD_RKEY,                /* a read request with a key nobody issued */
    HB_PAST_REGION,             /* a real key, a length past its region */
    HB_TOO_LONG,                /* longer than the server's staging buffer */
    HB_CREDITS,                 /* gives back credits it never had */
    HB_UNKNOWN_TYPE,
    HB_LENGTH_LIE,              /* declares more than it sends */
    HB_HANDSHAKE,               /* not our protocol at all */
    HB_EMPTY_DATA,              /* a data message with no data */
    HB_CREDIT_DATA,             /* a credit message that carries data */
    HB_DONE_NONE,               /* a read-done for a piece never offered */
    N_HB
};

static const char *const hb_log[N_HB] = {
    "RDMA READ remote access error",
    "RDMA READ remote access error",
    "protocol error: a read request longer than our staging buffer",
    "protocol error: more credits than it has buffers",
    "protocol error: a message of unknown type",
    "protocol error: a message whose length disagrees with what arrived",
    "not a qrpc RDMA peer",
    "protocol error: an empty data message",
    "protocol error: a credit message with data",
    "protocol error: a read-done for no read",
};

START_TEST(rdma_hostile)
{
    uint8_t req[20];
    qrpc__vwc wc;
    tsrv s;
    tcli c;
    rp p;
    int rc;

    tsrv_start(&s, NULL);
    tcli_open(&c, s.addr);
    check_serving(c.k, "before the hostile peer");
    rc = rp_open(&p, s.addr, _i == HB_HANDSHAKE ? 0x12345678u : 0x5152444du);
    if (_i == HB_HANDSHAKE) {
        ck_assert_int_eq(rc, QRPC_EUNAVAILABLE);
    } else {
        ck_assert_msg(rc == 0, "connect: %s", qrpc_err_name(rc));
        /* the server speaks first: its HELLO, in a data message */
        ck_assert(rp_wait(&p, QRPC__VCQ_RECV, false, 5000, &wc));
        ck_assert_int_eq(wc.status, QRPC__VWC_OK);
        ck_assert_int_eq(p.mem[wc.wr_id * RP_BUF], 1);
        memset(req, 0, sizeof req);
        switch (_i) {
        case HB_BAD_RKEY:
        case HB_PAST_REGION:
        case HB_TOO_LONG:
            qrpc__put64(req, (uint64_t)(uintptr_t)p.small);
            qrpc__put32(req + 8, _i == HB_BAD_RKEY ? p.smr.rkey ^ 0x5a5a5a5au : p.smr.rkey);
            qrpc__put32(req + 12, _i == HB_PAST_REGION ? 8192 : _i == HB_TOO_LONG ? 1u << 30
                                                                                : 4096);
            qrpc__put32(req + 16, 1);
            rp_send(&p, 3, 0, sizeof req, req, sizeof req);
            break;
        case HB_CREDITS:
            rp_send(&p, 2, 60000, 0, req, 0);
            break;
        case HB_UNKNOWN_TYPE:
            rp_send(&p, 9, 0, 4, req, 4);
            break;
        case HB_LENGTH_LIE:
            rp_send(&p, 1, 0, 100, req, 10);
            break;
        case HB_EMPTY_DATA:
            rp_send(&p, 1, 0, 0, req, 0);
            break;
        case HB_CREDIT_DATA:
            rp_send(&p, 2, 0, 4, req, 4);
            break;
        case HB_DONE_NONE:
            qrpc__put32(req, 77);
            rp_send(&p, 4, 0, 4, req, 4);
            break;
        default:
            break;
        }
        /* the server closes the connection: our receives flush */
        ck_assert_msg(rp_wait(&p, QRPC__VCQ_RECV, true, 10000, &wc),
                      "the server kept the hostile connection");
        ck_assert_int_eq(wc.status, QRPC__VWC_FLUSH);
    }
    ck_assert_msg(tsrv_log_wait(&s, hb_log[_i], 10000), "no log line '%s' in:\n%s",
                  hb_log[_i], tsrv_log(&s));
    rp_close(&p);
    /* and no one else noticed */
    check_serving(c.k, "after the hostile peer");
    ck_assert(tsrv_alive(&s));
    tcli_close(&c);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/* ---- binding picks RDMA where both sides have it ------------------------------------ */

/* Whether node n has a FrontEnd whose address begins with prefix. */
static bool has_fe(qrpc_node *n, const char *prefix)
{
    qrpc__fe_entry *e;
    bool found = false;

    pthread_mutex_lock(&n->fe_lock);
    for (e = n->fes; e != NULL; e = e->next)
        if (strncmp(e->addr, prefix, strlen(prefix)) == 0)
            found = true;
    pthread_mutex_unlock(&n->fe_lock);
    return found;
}

/* Calls through a bound client until one succeeds (the table may lag). */
static void rb_call(qrpc_node *n)
{
    qrpc_client *k = NULL;
    int64_t until = tt_now_ms() + 20000;
    int32_t r = 0;
    int rc;

    ck_assert_int_eq(kitchen_Kitchen_connect(n, NULL, &k), 0);
    do {
        rc = kitchen_Kitchen_add(k, 40, 2, &r);
        if (rc != 0)
            tt_nap_ms(20);      /* polling the table's arrival, bounded */
    } while (rc != 0 && tt_now_ms() < until);
    ck_assert_msg(rc == 0, "bound call: %s", qrpc_err_name(rc));
    ck_assert_int_eq(r, 42);
    qrpc_client_destroy(k);
}

START_TEST(rdma_binding)
{
    qrpc_master_config mc;
    qrpc_master *m = NULL;
    qrpc_node *srv, *with, *without;
    tt_log mlog, slog, wlog, olog;
    char want[160];

    tt_log_init(&mlog);
    qrpc_master_config_init(&mc);
    mc.listen = "127.0.0.1:0";
    mc.log = tt_log_fn;
    mc.log_arg = &mlog;
    ck_assert_int_eq(qrpc_master_start(&mc, &m), 0);
    pthread_mutex_init(&K.lock, NULL);
    tt_cond_init(&K.cond);
    srv = tt_node(&slog, "127.0.0.1:0", qrpc_master_address(m), rdma_provider);
    ck_assert(qrpc_node_rdma_address(srv) != NULL);
    ck_assert_int_eq(kitchen_Kitchen_serve(srv, &ks_handlers, &K), 0);
    with = tt_node(&wlog, NULL, qrpc_master_address(m), rdma_provider);
    without = tt_node(&olog, NULL, qrpc_master_address(m), "none");

    rb_call(with);
    snprintf(want, sizeof want, "%s", qrpc_node_rdma_address(srv));
    ck_assert_msg(has_fe(with, want), "the RDMA node did not use %s", want);
    ck_assert(!has_fe(with, qrpc_node_address(srv)));
    rb_call(without);
    ck_assert(has_fe(without, qrpc_node_address(srv)));
    ck_assert(!has_fe(without, tt_scheme));

    qrpc_node_destroy(without);
    qrpc_node_destroy(with);
    qrpc_node_destroy(srv);
    qrpc_master_stop(m);
    tt_log_fini(&olog);
    tt_log_fini(&wlog);
    tt_log_fini(&slog);
    tt_log_fini(&mlog);
}
END_TEST

/* ---- the program ------------------------------------------------------------------------ */

static Suite *rdma_suite(void)
{
    Suite *s = suite_create("rdma");
    TCase *tc;

    /* test_tcp.c's, except those that write raw TCP or use the TCP proxy */
    tc = tcase_create("conformance");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, tcp_sync_methods);
    tcase_add_test(tc, tcp_async_methods);
    tcase_add_test(tc, tcp_errors);
    tcase_add_test(tc, tcp_unavailable);
    tcase_add_test(tc, tcp_many_connections);
    tcase_add_test(tc, tcp_concurrency);
    tcase_add_test(tc, tcp_out_of_order);
    tcase_add_test(tc, tcp_large);
    tcase_add_test(tc, tcp_server_killed);
    tcase_add_test(tc, tcp_kill_under_load);
    tcase_add_test(tc, tcp_reconnect);
    tcase_add_test(tc, tcp_timeout);
    tcase_add_test(tc, tcp_node_timeout);
    tcase_add_test(tc, tcp_too_big_local);
    tcase_add_test(tc, tcp_too_big_reply);
    tcase_add_test(tc, tcp_client_node_destroy);
    tcase_add_test(tc, tcp_server_destroy);
    tcase_add_test(tc, tcp_client_node_churn);
    suite_add_tcase(s, tc);

    tc = tcase_create("rdma");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, rdma_polling);
    tcase_add_test(tc, rdma_tight_credits);
    tcase_add_test(tc, rdma_bad_config);
    tcase_add_loop_test(tc, rdma_hostile, 0, N_HB);
    tcase_add_test(tc, rdma_binding);
    suite_add_tcase(s, tc);
    return s;
}

/* Whether this machine has a real RDMA device (as `ibv_devices` would list). */
static bool rdma_have_device(char *why, size_t len)
{
#ifdef QRPC_HAVE_VERBS
    qrpc__vdev *d = NULL;

    if (qrpc__verbs_ibv.dev_open(&d, why, len) != 0)
        return false;
    qrpc__verbs_ibv.dev_close(d);
    return true;
#else
    snprintf(why, len, "this build has no libibverbs (QRPC_VERBS=no)");
    return false;
#endif
}

int main(int argc, char **argv)
{
    char why[160] = "";
    int rc;

    if (argc > 1 && strcmp(argv[1], "--serve") == 0)
        return srv_main(argc, argv);
    /* servers inherit the provider; client nodes read it too */
    setenv("QRPC_RDMA", "emu", 1);
    tt_scheme = "rdma-emu://";
    printf("test_rdma: over the verbs emulation\n");
    rc = tu_run_suite(rdma_suite());
    if (rdma_have_device(why, sizeof why)) {
        rdma_provider = "verbs";
        setenv("QRPC_RDMA", "verbs", 1);
        tt_scheme = "rdma://";
        printf("test_rdma: over real verbs\n");
        rc |= tu_run_suite(rdma_suite());
    } else {
        printf("test_rdma: real verbs skipped: %s\n", why);
    }
    return rc;
}
