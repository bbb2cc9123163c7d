/*
 * test_tcp.c - the TCP transport end to end: real server processes on
 * 127.0.0.1 (ephemeral ports), driven through the generated Kitchen stubs
 * and through raw sockets.
 *
 * It is also the transports' conformance suite: test_rdma.c includes this
 * file with TT_RDMA defined, which runs every test that does not write
 * raw TCP bytes (or go through the TCP fault proxy) over the RDMA
 * transport instead: servers listen for RDMA on the test's port, and
 * clients are given their "rdma-emu://" (or "rdma://") addresses.
 *
 * Each test starts its own servers, kills them and reaps them.  A server
 * is this very binary run as "test_tcp --serve ..." (fork + exec, see
 * tcputil.h): it serves kitchen.Kitchen with the handlers below, reports
 * its address and a few events ("BLOCK", "SLEEP", "NOTIFY ...") on a
 * pipe, logs through cfg.log to a file, and on SIGTERM destroys its node
 * and exits 0 (so ASan's leak check covers the server side too).
 *
 * The handlers' conventions, relied on by the tests:
 *   add(a, b)      a + b (wrapping); when 0 < a <= 5000000 it first sleeps
 *                  a microseconds (out-of-order replies)
 *   fill(n)        n < 0: application error 42; n == KF_BLOCK: blocks until
 *                  the server is stopped, then application error 77;
 *                  KF_SLEEP + ms: sleeps ms (events "SLEEP", "SLEPT");
 *                  1000 < n < KF_SLEEP: returns -5 (QRPC_EINTERNAL);
 *                  otherwise n squares, a hash of n and a leaf for n > 0
 *   fill(KF_PINGS) values = { the number of times ping() ran }
 *   notify(w, l)   event "NOTIFY w label client-id"
 *   digest(...)    kd_digest() of every byte of its arguments
 *   classify       no handler (QRPC_ENOMETHOD)
 *
 * No test sleeps to synchronise: it waits (bounded) for an event, a log
 * line, a completion count or a socket state.  Randomness is seeded.
 */
#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <semaphore.h>
#include <sys/signalfd.h>

#include "tcputil.h"
#include "fproxy.h"
#include "bank.h"
#include "kitchen.h"

#define KF_SLEEP   1000000      /* fill(KF_SLEEP + ms) sleeps ms */
#define KF_BLOCK   2000000      /* fill(KF_BLOCK) blocks until the server stops */
#define KF_PINGS   3000000      /* fill(KF_PINGS) tells how many pings ran */
#define KS_APP_ERR 42
#define KS_RELEASED 77
#define ADD_SLEEP_MAX 5000000   /* add(a, b) sleeps a us when 0 < a <= this */

#define MiB (1u << 20)

/* A 256-bit digest of digest()'s arguments: FNV-1a 64, spread by splitmix64. */
static void kd_digest(const qrpc_bytes *data, const kitchen_Hash *seed, const common_Money *m,
                      kitchen_Color c, common_Cents cents, kitchen_Hash *out)
{
    uint64_t h = 0xcbf29ce484222325u;
    size_t i;

    for (i = 0; i < data->len; i++)
        h = (h ^ data->data[i]) * 0x100000001b3u;
    for (i = 0; i < 32; i++)
        h = (h ^ (*seed)[i]) * 0x100000001b3u;
    h = (h ^ (uint64_t)m->cur) * 0x100000001b3u;
    h = (h ^ (uint64_t)m->amount) * 0x100000001b3u;
    h = (h ^ (uint64_t)(int64_t)c) * 0x100000001b3u;
    h = (h ^ (uint64_t)cents) * 0x100000001b3u;
    for (i = 0; i < 32; i++) {
        uint64_t x = (h += 0x9e3779b97f4a7c15u);

        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
        (*out)[i] = (uint8_t)(x ^ (x >> 31));
    }
}

/* A digest() call of many patterned bytes, and the digest it must get back. */
typedef struct big_call {
    qrpc_bytes data;
    kitchen_Hash seed, want;
    common_Money m;
} big_call;

static void big_call_init(big_call *b, uint8_t *p, size_t n, uint8_t seed)
{
    size_t i;

    for (i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 7 + (i >> 12));
    b->data.data = p;
    b->data.len = n;
    memset(b->seed, seed, sizeof b->seed);
    b->m.cur = common_Currency_USD;
    b->m.amount = 1;
    kd_digest(&b->data, (const kitchen_Hash *)&b->seed, &b->m, kitchen_Color_GREEN, 2,
              &b->want);
}

/* digest() of b, synchronously on k: its status, after checking the digest of a success. */
static int big_call_sync(qrpc_client *k, const big_call *b, const char *what)
{
    kitchen_Hash got;
    int rc;

    memset(got, 0, sizeof got);
    rc = kitchen_Kitchen_digest(k, &b->data, (const kitchen_Hash *)&b->seed, &b->m,
                                kitchen_Color_GREEN, 2, &got);
    if (rc == 0)
        ck_assert_msg(memcmp(got, b->want, sizeof got) == 0, "%s: wrong digest", what);
    return rc;
}

/* A fast 64-bit hash of a large buffer (the 64 MiB test). */
static uint64_t big_hash(const uint8_t *p, size_t n)
{
    uint64_t h = 0x84222325cbf29ce4u ^ n;
    size_t i;

    for (i = 0; i + 8 <= n; i += 8) {
        uint64_t w;

        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x9e3779b97f4a7c15u;
        h ^= h >> 29;
    }
    for (; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3u;
    return h;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* ======================================================================
 * The server process (test_tcp --serve ...)
 * ====================================================================== */

typedef struct ksrv {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stopping;
    qrpc_node *node;
    int ev_fd;
    int log_fd;
    atomic_int pings;           /* times ping() ran */
} ksrv;

static ksrv K;

static void ksrv_event(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void ksrv_event(const char *fmt, ...)
{
    char line[600];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    if (write(K.ev_fd, line, (size_t)n) < 0) {
        /* the test is gone; nothing to tell */
    }
}

static void ksrv_log(void *arg, const char *line)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf - 1, "%s\n", line);

    (void)arg;
    if (n > (int)sizeof buf - 2) {
        n = (int)sizeof buf - 2;
        buf[n - 1] = '\n';
    }
    if (write(K.log_fd, buf, (size_t)n) < 0) {
        /* nowhere else to put it */
    }
}

/* Sleeps us microseconds, or less if the server is stopping. */
static void ksrv_sleep_us(uint64_t us)
{
    struct timespec dl;

    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += (time_t)(us / 1000000u);
    dl.tv_nsec += (long)(us % 1000000u) * 1000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&K.lock);
    while (!K.stopping)
        if (pthread_cond_timedwait(&K.cond, &K.lock, &dl) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&K.lock);
}

/*
 * Blocks until the server is told to stop.  It then holds on until the
 * node is closing (qrpc_node_destroy() has begun: a client can no longer
 * be created), so that the requests queued behind it are answered by the
 * node's shutdown, never run: the shutdown test relies on it.
 */
static int ksrv_block(void)
{
    int i;

    pthread_mutex_lock(&K.lock);
    ksrv_event("BLOCK");
    while (!K.stopping)
        pthread_cond_wait(&K.cond, &K.lock);
    pthread_mutex_unlock(&K.lock);
    for (i = 0; i < 10000; i++) {
        qrpc_client *c = NULL;
        int rc = qrpc_client_create(K.node, "local", &kitchen_Kitchen_desc, &c);

        qrpc_client_destroy(c);
        if (rc == QRPC_ECLOSED)
            break;
        tt_nap_ms(1);
    }
    return KS_RELEASED;
}

static int ks_echo(qrpc_ctx *ctx, const kitchen_Everything *e, kitchen_Everything *result)
{
    (void)ctx;
    return kitchen_Everything_copy(result, e) == 0 ? 0 : 99;
}

static int ks_add(qrpc_ctx *ctx, int32_t a, int32_t b, int32_t *result)
{
    (void)ctx;
    if (a > 0 && a <= ADD_SLEEP_MAX)
        ksrv_sleep_us((uint64_t)a);
    *result = (int32_t)((uint32_t)a + (uint32_t)b);
    return 0;
}

static int ks_fill(qrpc_ctx *ctx, int32_t n, kitchen_i32_list *values, kitchen_Hash *h,
                   kitchen_Leaf **leaf)
{
    int32_t i;

    (void)ctx;
    if (n < 0)
        return KS_APP_ERR;
    if (n == KF_BLOCK)
        return ksrv_block();
    if (n == KF_PINGS) {
        values->items = malloc(sizeof *values->items);
        if (values->items == NULL)
            return 99;
        values->items[0] = (int32_t)atomic_load(&K.pings);
        values->len = 1;
        return 0;
    }
    if (n >= KF_SLEEP && n < KF_SLEEP + 600000) {
        ksrv_event("SLEEP %d", n - KF_SLEEP);
        ksrv_sleep_us((uint64_t)(n - KF_SLEEP) * 1000u);
        ksrv_event("SLEPT %d", n - KF_SLEEP);
        return 0;
    }
    if (n > 1000)
        return -5;              /* a handler bug: the caller gets QRPC_EINTERNAL */
    values->items = n ? calloc((size_t)n, sizeof *values->items) : NULL;
    values->len = (size_t)n;
    for (i = 0; i < n; i++)
        values->items[i] = i * i;
    for (i = 0; i < 32; i++)
        (*h)[i] = (uint8_t)(n + i);
    if (n > 0) {
        *leaf = calloc(1, sizeof **leaf);
        (*leaf)->id = n;
        (*leaf)->label = strdup("leaf");
    }
    return 0;
}

static int ks_update(qrpc_ctx *ctx, kitchen_Everything *e, char **note, int32_t *counter,
                     bool *result)
{
    size_t n = strlen(*note);
    char *longer = malloc(n + 2);

    (void)ctx;
    memcpy(longer, *note, n);
    longer[n] = '!';
    longer[n + 1] = '\0';
    free(*note);
    *note = longer;
    *counter += 1;
    e->s32 += 1;
    *result = true;
    return 0;
}

static int ks_notify(qrpc_ctx *ctx, const char *what, const kitchen_Leaf *leaf)
{
    ksrv_event("NOTIFY %s %s %" PRIx64, what, leaf != NULL ? leaf->label : "-",
               qrpc_ctx_client_id(ctx));
    return 0;
}

static int ks_grow(qrpc_ctx *ctx, const kitchen_Tree *t, uint32_t depth, kitchen_Tree *result)
{
    (void)ctx;
    result->value = t->value + (int32_t)depth;
    result->kids.items = calloc(1, sizeof *result->kids.items);
    result->kids.len = 1;
    return kitchen_Tree_copy(&result->kids.items[0], t);
}

static int ks_ping(qrpc_ctx *ctx)
{
    (void)ctx;
    atomic_fetch_add(&K.pings, 1);
    return 0;
}

static int ks_digest(qrpc_ctx *ctx, const qrpc_bytes *data, const kitchen_Hash *seed,
                     const common_Money *m, kitchen_Color c, common_Cents cents,
                     kitchen_Hash *result)
{
    (void)ctx;
    kd_digest(data, seed, m, c, cents, result);
    return 0;
}

/* digest_tail(seed, data): digest()'s digest with fixed other arguments. */
static const common_Money kd_tail_money = { common_Currency_EUR, 7 };

static int ks_digest_tail(qrpc_ctx *ctx, const kitchen_Hash *seed, const qrpc_bytes *data,
                          kitchen_Hash *result)
{
    (void)ctx;
    kd_digest(data, seed, &kd_tail_money, kitchen_Color_RED, 11, result);
    return 0;
}

static const kitchen_Kitchen_handlers ks_handlers = {
    .echo = ks_echo,
    .add = ks_add,
    .fill = ks_fill,
    .update = ks_update,
    .notify = ks_notify,
    .grow = ks_grow,
    .ping = ks_ping,
    .digest = ks_digest,
    .classify = NULL,           /* QRPC_ENOMETHOD */
    .digest_tail = ks_digest_tail,
};

static unsigned long srv_opt(const char *arg, const char *name)
{
    size_t n = strlen(name);

    return strncmp(arg, name, n) == 0 ? strtoul(arg + n, NULL, 10) : 0;
}

/* argv: --serve --port= --workers= --inflight= --max-message= --max-frame=
 *       --stall-ms= --timeout-ms= LOGPATH */
static int srv_main(int argc, char **argv)
{
    qrpc_node_config cfg;
    char listen[64];
#ifdef TT_RDMA
    char rlisten[64];
#endif
    sigset_t set;
    struct pollfd pf[2];
    bool orphan;
    int sfd, rc;

    if (argc != 11 || strncmp(argv[9], "--dedup-log=", 12) != 0)
        return 2;
    K.ev_fd = TSRV_EV_FD;
    K.log_fd = open(argv[10], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (K.log_fd < 0)
        return 2;
    pthread_mutex_init(&K.lock, NULL);
    tt_cond_init(&K.cond);
    alarm(300);                 /* a last resort: no server outlives this */

    /* Blocked in every thread (the node's inherit it): signalfd takes them. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    sfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sfd < 0)
        return 2;

    qrpc_node_config_init(&cfg);
#ifdef TT_RDMA
    /* the port is the RDMA listener's, where clients go (and come back) */
    snprintf(rlisten, sizeof rlisten, "127.0.0.1:%lu", srv_opt(argv[2], "--port="));
    snprintf(listen, sizeof listen, "127.0.0.1:0");
    cfg.rdma_listen = rlisten;
    /* test_rdma's own cases ask for these through the environment */
    if (getenv("TT_RDMA_POLLING") != NULL)
        cfg.rdma_polling = 1;
    if (getenv("TT_RDMA_CREDITS") != NULL)
        cfg.rdma_credits = (uint32_t)atoi(getenv("TT_RDMA_CREDITS"));
#else
    snprintf(listen, sizeof listen, "127.0.0.1:%lu", srv_opt(argv[2], "--port="));
#endif
    cfg.listen = listen;
    if (srv_opt(argv[3], "--workers=") != 0)
        cfg.workers = (unsigned)srv_opt(argv[3], "--workers=");
    if (srv_opt(argv[4], "--inflight=") != 0)
        cfg.max_inflight = (uint32_t)srv_opt(argv[4], "--inflight=");
    if (srv_opt(argv[5], "--max-message=") != 0)
        cfg.max_message = (uint32_t)srv_opt(argv[5], "--max-message=");
    if (srv_opt(argv[6], "--max-frame=") != 0)
        cfg.max_frame = (uint32_t)srv_opt(argv[6], "--max-frame=");
    if (srv_opt(argv[7], "--stall-ms=") != 0)
        cfg.stall_timeout_ms = (uint32_t)srv_opt(argv[7], "--stall-ms=");
    if (srv_opt(argv[8], "--timeout-ms=") != 0)
        cfg.timeout_ms = (uint32_t)srv_opt(argv[8], "--timeout-ms=");
    if (argv[9][12] != '\0')
        cfg.dedup_log = argv[9] + 12;
    cfg.log = ksrv_log;
    rc = qrpc_node_create(&cfg, &K.node);
    if (rc != 0) {
        ksrv_event("FAIL qrpc_node_create %s", qrpc_err_name(rc));
        return 3;
    }
    rc = kitchen_Kitchen_serve(K.node, &ks_handlers, &K);
    if (rc != 0) {
        ksrv_event("FAIL serve %s", qrpc_err_name(rc));
        qrpc_node_destroy(K.node);
        return 3;
    }
#ifdef TT_RDMA
    if (qrpc_node_rdma_address(K.node) == NULL) {
        ksrv_event("FAIL no RDMA address");
        qrpc_node_destroy(K.node);
        return 3;
    }
    ksrv_event("ADDR %s", qrpc_node_rdma_address(K.node));
#else
    ksrv_event("ADDR %s", qrpc_node_address(K.node));
#endif

    /* Until SIGTERM/SIGINT, or until the test that started us is gone. */
    pf[0].fd = sfd;
    pf[0].events = POLLIN;
    pf[1].fd = TSRV_PARENT_FD;
    pf[1].events = POLLIN;
    for (;;) {
        rc = poll(pf, 2, -1);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0 || pf[0].revents != 0 || pf[1].revents != 0)
            break;
    }
    orphan = pf[0].revents == 0;
    pthread_mutex_lock(&K.lock);
    K.stopping = true;
    pthread_cond_broadcast(&K.cond);
    pthread_mutex_unlock(&K.lock);
    qrpc_node_destroy(K.node);
    ksrv_event("BYE");
    close(sfd);
    close(K.log_fd);
    if (orphan) {
        /* the test died without cleaning up: take our log and, last, its directory */
        char *slash = strrchr(argv[9], '/');

        unlink(argv[9]);
        if (slash != NULL) {
            *slash = '\0';
            (void)rmdir(argv[9]);
        }
    }
    pthread_cond_destroy(&K.cond);
    pthread_mutex_destroy(&K.lock);
    return 0;
}

/* ======================================================================
 * The test side
 * ====================================================================== */

/* A client node with its log captured and one Kitchen client. */
typedef struct tcli {
    qrpc_node *node;
    qrpc_client *k;
    tt_log log;
} tcli;

static void tcli_open_cfg(tcli *c, const char *addr, qrpc_node_config *cfg)
{
    tt_log_init(&c->log);
    cfg->log = tt_log_fn;
    cfg->log_arg = &c->log;
    ck_assert_int_eq(qrpc_node_create(cfg, &c->node), 0);
    ck_assert_int_eq(kitchen_Kitchen_connect(c->node, addr, &c->k), 0);
}

static void tcli_open(tcli *c, const char *addr)
{
    qrpc_node_config cfg;

    qrpc_node_config_init(&cfg);
    tcli_open_cfg(c, addr, &cfg);
}

/*
 * A client that sends each request once (retry_ms -1): a call that may
 * have reached a server that then failed ends at once with QRPC_EUNKNOWN,
 * which is what the tests of single attempts look at.
 */
static void tcli_open_once(tcli *c, const char *addr)
{
    qrpc_node_config cfg;

    qrpc_node_config_init(&cfg);
    cfg.retry_ms = -1;
    tcli_open_cfg(c, addr, &cfg);
}

static void tcli_close(tcli *c)
{
    qrpc_client_destroy(c->k);
    qrpc_node_destroy(c->node);
    tt_log_fini(&c->log);
}

/* A valid Everything (a zeroed one is not: 0 is no Color). */
static void some_everything(kitchen_Everything *e, uint64_t seed)
{
    ck_assert_int_eq(kitchen_Everything_random(e, &seed, 0), 0);
}

/* add() works on c: the server answers. */
static void check_serving(qrpc_client *k, const char *what)
{
    int32_t r = 0;
    int rc = kitchen_Kitchen_add(k, -20, 62, &r);

    ck_assert_msg(rc == 0, "%s: add failed: %s", what, qrpc_err_name(rc));
    ck_assert_int_eq(r, 42);
}

/* ---- 1. every method form, synchronous ---------------------------------------- */

START_TEST(tcp_sync_methods)
{
    tsrv s;
    tcli c;
    uint64_t seed = 77;
    int32_t r = 0;
    int i;
    char line[256], want[256];

    tsrv_start(&s, NULL);
    tcli_open(&c, s.addr);

    ck_assert_int_eq(kitchen_Kitchen_add(c.k, 40, 2, &r), 0);
    ck_assert_int_eq(r, 42);
    ck_assert_int_eq(kitchen_Kitchen_add(c.k, INT32_MAX, 1, &r), 0);
    ck_assert_int_eq(r, INT32_MIN);

    /* values survive the round trip */
    for (i = 0; i < 100; i++) {
        kitchen_Everything in, out;

        ck_assert_int_eq(kitchen_Everything_random(&in, &seed, 0), 0);
        ck_assert_int_eq(kitchen_Kitchen_echo(c.k, &in, &out), 0);
        ck_assert_msg(kitchen_Everything_equal(&in, &out), "echo %d changed the value", i);
        kitchen_Everything_free(&in);
        kitchen_Everything_free(&out);
    }

    /* out parameters */
    {
        kitchen_i32_list values;
        kitchen_Hash h;
        kitchen_Leaf *leaf = NULL;

        ck_assert_int_eq(kitchen_Kitchen_fill(c.k, 5, &values, &h, &leaf), 0);
        ck_assert_uint_eq(values.len, 5);
        for (i = 0; i < 5; i++)
            ck_assert_int_eq(values.items[i], i * i);
        ck_assert_uint_eq(h[0], 5);
        ck_assert_uint_eq(h[31], 36);
        ck_assert_ptr_nonnull(leaf);
        ck_assert_int_eq(leaf->id, 5);
        ck_assert_str_eq(leaf->label, "leaf");
        kitchen_i32_list_free(&values);
        kitchen_Leaf_opt_free(&leaf);
        ck_assert_int_eq(kitchen_Kitchen_fill(c.k, 0, &values, &h, &leaf), 0);
        ck_assert_uint_eq(values.len, 0);
        ck_assert_ptr_null(leaf);
    }

    /* inout parameters */
    {
        kitchen_Everything e;
        char *note = strdup("hello");
        int32_t counter = 7;
        bool changed = false;

        some_everything(&e, 4242);
        e.s32 = 100;
        ck_assert_int_eq(kitchen_Kitchen_update(c.k, &e, &note, &counter, &changed), 0);
        ck_assert(changed);
        ck_assert_int_eq(counter, 8);
        ck_assert_int_eq(e.s32, 101);
        ck_assert_str_eq(note, "hello!");
        free(note);
        kitchen_Everything_free(&e);
    }

    /* oneway: the handler runs after the call returns; the event says so */
    {
        kitchen_Leaf leaf = { 3, "green" };

        ck_assert_int_eq(kitchen_Kitchen_notify(c.k, "first", NULL), 0);
        ck_assert_int_eq(kitchen_Kitchen_notify(c.k, "second", &leaf), 0);
        ck_assert(tsrv_event(&s, "NOTIFY first ", 10000, line, sizeof line));
        snprintf(want, sizeof want, "NOTIFY first - %" PRIx64, qrpc_client_id(c.k));
        ck_assert_str_eq(line, want);
        ck_assert(tsrv_event(&s, "NOTIFY second ", 10000, line, sizeof line));
        snprintf(want, sizeof want, "NOTIFY second green %" PRIx64, qrpc_client_id(c.k));
        ck_assert_str_eq(line, want);
    }

    /* void, recursive, fixed arrays */
    ck_assert_int_eq(kitchen_Kitchen_ping(c.k), 0);
    {
        kitchen_Tree t, grown;
        kitchen_Hash hs, dg, want_dg;
        common_Money m = { common_Currency_GBP, -12345 };
        uint8_t bytes[1000];
        qrpc_bytes data = { bytes, sizeof bytes };
        uint64_t s2 = 5;

        ck_assert_int_eq(kitchen_Tree_random(&t, &s2, 0), 0);
        ck_assert_int_eq(kitchen_Kitchen_grow(c.k, &t, 10, &grown), 0);
        ck_assert_int_eq(grown.value, t.value + 10);
        ck_assert_uint_eq(grown.kids.len, 1);
        ck_assert(kitchen_Tree_equal(&grown.kids.items[0], &t));
        kitchen_Tree_free(&t);
        kitchen_Tree_free(&grown);

        for (i = 0; i < (int)sizeof bytes; i++)
            bytes[i] = (uint8_t)xorshift(&s2);
        for (i = 0; i < 32; i++)
            hs[i] = (uint8_t)(0xF0 + i);
        ck_assert_int_eq(kitchen_Kitchen_digest(c.k, &data, (const kitchen_Hash *)&hs, &m,
                                                kitchen_Color_BLUE, 300, &dg), 0);
        kd_digest(&data, (const kitchen_Hash *)&hs, &m, kitchen_Color_BLUE, 300, &want_dg);
        ck_assert(memcmp(dg, want_dg, 32) == 0);
    }

    /* no handler */
    {
        kitchen_Shape sh;
        kitchen_Toggle tg;
        kitchen_Code code;

        memset(&sh, 0, sizeof sh);
        memset(&tg, 0, sizeof tg);
        sh.kind = kitchen_Color_BLACK;
        ck_assert_int_eq(kitchen_Kitchen_classify(c.k, &sh, &tg, &code), QRPC_ENOMETHOD);
    }
    check_serving(c.k, "after everything");

    tcli_close(&c);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/* ---- 1b. every method form, asynchronous ---------------------------------------- */

typedef struct as_res {
    tt_count *done;
    int status;
    int calls;
    int32_t value;
    char *note;
    bool flag;
    kitchen_Everything e;
    kitchen_Tree tree;
    kitchen_Hash hash;
    kitchen_i32_list values;
    kitchen_Leaf *leaf;
} as_res;

static void as_finish(as_res *r, int status)
{
    r->calls++;
    r->status = status;
    tt_count_add(r->done, 1);
}

static void as_add_cb(int status, kitchen_Kitchen_add_reply *reply, void *arg)
{
    as_res *r = arg;

    if (status == 0)
        r->value = reply->result;
    as_finish(r, status);
}

static void as_echo_cb(int status, kitchen_Kitchen_echo_reply *reply, void *arg)
{
    as_res *r = arg;

    if (status == 0) {
        r->e = reply->result;           /* taken: the stub frees a zeroed one */
        memset(&reply->result, 0, sizeof reply->result);
    }
    as_finish(r, status);
}

static void as_fill_cb(int status, kitchen_Kitchen_fill_reply *reply, void *arg)
{
    as_res *r = arg;

    if (status == 0) {
        r->values = reply->values;
        memset(&reply->values, 0, sizeof reply->values);
        memcpy(r->hash, reply->h, sizeof r->hash);
        r->leaf = reply->leaf;
        reply->leaf = NULL;
    }
    as_finish(r, status);
}

static void as_update_cb(int status, kitchen_Kitchen_update_reply *reply, void *arg)
{
    as_res *r = arg;

    if (status == 0) {
        r->flag = reply->result;
        r->value = reply->counter;
        r->note = reply->note;
        reply->note = NULL;
        r->e = reply->e;
        memset(&reply->e, 0, sizeof reply->e);
    }
    as_finish(r, status);
}

static void as_void_cb(int status, void *arg)
{
    as_finish(arg, status);
}

static void as_grow_cb(int status, kitchen_Kitchen_grow_reply *reply, void *arg)
{
    as_res *r = arg;

    if (status == 0) {
        r->tree = reply->result;
        memset(&reply->result, 0, sizeof reply->result);
    }
    as_finish(r, status);
}

static void as_digest_cb(int status, kitchen_Kitchen_digest_reply *reply, void *arg)
{
    as_res *r = arg;

    if (status == 0)
        memcpy(r->hash, reply->result, sizeof r->hash);
    as_finish(r, status);
}

static void as_classify_cb(int status, kitchen_Kitchen_classify_reply *reply, void *arg)
{
    (void)reply;
    as_finish(arg, status);
}

START_TEST(tcp_async_methods)
{
    enum { N_ECHO = 50 };
    tsrv s;
    tcli c;
    tt_count done;
    as_res add, fill, fill_err, upd, note, ping, grow, dig, cls, echo[N_ECHO];
    kitchen_Everything in[N_ECHO], e;
    kitchen_Tree t;
    kitchen_Hash hs, want_dg;
    kitchen_Shape sh;
    kitchen_Toggle tg;
    common_Money m = { common_Currency_EUR, 99 };
    uint8_t bytes[300];
    qrpc_bytes data = { bytes, sizeof bytes };
    uint64_t seed = 99;
    char line[256], want[256];
    long expect = 0;
    int i;

    tsrv_start(&s, NULL);
    tcli_open(&c, s.addr);
    tt_count_init(&done);
#define AS_INIT(r) (memset(&(r), 0, sizeof(r)), (r).done = &done, (r).status = -100)
    AS_INIT(add);
    AS_INIT(fill);
    AS_INIT(fill_err);
    AS_INIT(upd);
    AS_INIT(note);
    AS_INIT(ping);
    AS_INIT(grow);
    AS_INIT(dig);
    AS_INIT(cls);

    for (i = 0; i < N_ECHO; i++) {
        AS_INIT(echo[i]);
        ck_assert_int_eq(kitchen_Everything_random(&in[i], &seed, 0), 0);
        ck_assert_int_eq(kitchen_Kitchen_echo_async(c.k, &in[i], as_echo_cb, &echo[i]), 0);
        expect++;
    }
    ck_assert_int_eq(kitchen_Kitchen_add_async(c.k, -1, 43, as_add_cb, &add), 0);
    ck_assert_int_eq(kitchen_Kitchen_fill_async(c.k, 4, as_fill_cb, &fill), 0);
    ck_assert_int_eq(kitchen_Kitchen_fill_async(c.k, -3, as_fill_cb, &fill_err), 0);
    some_everything(&e, 11);
    e.s32 = -8;
    ck_assert_int_eq(kitchen_Kitchen_update_async(c.k, &e, "n", 1, as_update_cb, &upd), 0);
    ck_assert_int_eq(kitchen_Kitchen_notify_async(c.k, "async", NULL, as_void_cb, &note), 0);
    ck_assert_int_eq(kitchen_Kitchen_ping_async(c.k, as_void_cb, &ping), 0);
    ck_assert_int_eq(kitchen_Tree_random(&t, &seed, 0), 0);
    ck_assert_int_eq(kitchen_Kitchen_grow_async(c.k, &t, 3, as_grow_cb, &grow), 0);
    for (i = 0; i < (int)sizeof bytes; i++)
        bytes[i] = (uint8_t)(i * 7);
    memset(hs, 0x5A, sizeof hs);
    ck_assert_int_eq(kitchen_Kitchen_digest_async(c.k, &data, (const kitchen_Hash *)&hs, &m,
                                                  kitchen_Color_RED, -1, as_digest_cb, &dig), 0);
    memset(&sh, 0, sizeof sh);
    memset(&tg, 0, sizeof tg);
    sh.kind = kitchen_Color_BLACK;
    ck_assert_int_eq(kitchen_Kitchen_classify_async(c.k, &sh, &tg, as_classify_cb, &cls), 0);
    expect += 9;

    ck_assert_msg(tt_count_wait(&done, expect, 30000), "only %ld of %ld callbacks ran",
                  tt_count_get(&done), expect);

    for (i = 0; i < N_ECHO; i++) {
        ck_assert_int_eq(echo[i].calls, 1);
        ck_assert_int_eq(echo[i].status, 0);
        ck_assert_msg(kitchen_Everything_equal(&in[i], &echo[i].e), "async echo %d", i);
        kitchen_Everything_free(&in[i]);
        kitchen_Everything_free(&echo[i].e);
    }
    ck_assert_int_eq(add.status, 0);
    ck_assert_int_eq(add.value, 42);
    ck_assert_int_eq(fill.status, 0);
    ck_assert_uint_eq(fill.values.len, 4);
    ck_assert_int_eq(fill.values.items[3], 9);
    ck_assert_uint_eq(fill.hash[0], 4);
    ck_assert_ptr_nonnull(fill.leaf);
    ck_assert_int_eq(fill.leaf->id, 4);
    kitchen_i32_list_free(&fill.values);
    kitchen_Leaf_opt_free(&fill.leaf);
    ck_assert_int_eq(fill_err.status, KS_APP_ERR);
    ck_assert_int_eq(upd.status, 0);
    ck_assert(upd.flag);
    ck_assert_int_eq(upd.value, 2);
    ck_assert_str_eq(upd.note, "n!");
    ck_assert_int_eq(upd.e.s32, -7);
    free(upd.note);
    kitchen_Everything_free(&upd.e);
    kitchen_Everything_free(&e);
    ck_assert_int_eq(note.status, 0);
    ck_assert(tsrv_event(&s, "NOTIFY async ", 10000, line, sizeof line));
    snprintf(want, sizeof want, "NOTIFY async - %" PRIx64, qrpc_client_id(c.k));
    ck_assert_str_eq(line, want);
    ck_assert_int_eq(ping.status, 0);
    ck_assert_int_eq(grow.status, 0);
    ck_assert_int_eq(grow.tree.value, t.value + 3);
    ck_assert_uint_eq(grow.tree.kids.len, 1);
    ck_assert(kitchen_Tree_equal(&grow.tree.kids.items[0], &t));
    kitchen_Tree_free(&grow.tree);
    kitchen_Tree_free(&t);
    ck_assert_int_eq(dig.status, 0);
    kd_digest(&data, (const kitchen_Hash *)&hs, &m, kitchen_Color_RED, -1, &want_dg);
    ck_assert(memcmp(dig.hash, want_dg, 32) == 0);
    ck_assert_int_eq(cls.status, QRPC_ENOMETHOD);
    /* every callback exactly once */
    ck_assert_int_eq(add.calls + fill.calls + fill_err.calls + upd.calls + note.calls +
                     ping.calls + grow.calls + dig.calls + cls.calls, 9);
#undef AS_INIT

    tcli_close(&c);
    tt_count_fini(&done);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/* ---- 1c. errors that cross the wire ---------------------------------------------- */

START_TEST(tcp_errors)
{
    tsrv s;
    tcli c;
    kitchen_i32_list values = { NULL, 0 };
    kitchen_Hash h;
    kitchen_Leaf *leaf = NULL;
    qrpc_service_desc v4 = kitchen_Kitchen_desc, more = kitchen_Kitchen_desc;
    qrpc_method_desc methods[16];
    qrpc_client *c2;
    qrpc_buf args, reply;
    bank_Account acct;
    kitchen_Everything e;
    kitchen_i32_list kept;
    int32_t six[6] = { 1, 2, 3, 4, 5, 6 };

    tsrv_start(&s, NULL);
    tcli_open(&c, s.addr);

    /* an application error passes through, results untouched */
    memset(h, 0xAB, sizeof h);
    ck_assert_int_eq(kitchen_Kitchen_fill(c.k, -1, &values, &h, &leaf), KS_APP_ERR);
    ck_assert_uint_eq(h[0], 0xAB);
    ck_assert_ptr_null(leaf);
    /* a negative return from a handler is QRPC_EINTERNAL */
    ck_assert_int_eq(kitchen_Kitchen_fill(c.k, 5000, &values, &h, &leaf), QRPC_EINTERNAL);

    qrpc_buf_init(&args);
    qrpc_buf_init(&reply);
    /* another version is not served */
    v4.version = 4;
    ck_assert_int_eq(qrpc_client_create(c.node, s.addr, &v4, &c2), 0);
    ck_assert_int_eq(qrpc_put_i32(&args, 1), 0);
    ck_assert_int_eq(qrpc_put_i32(&args, 2), 0);
    ck_assert_int_eq(qrpc_call(c2, kitchen_Kitchen_add_ID, &args, &reply), QRPC_ENOSERVICE);
    ck_assert_uint_eq(args.len, 0);
    ck_assert_uint_eq(reply.len, 0);
    qrpc_client_destroy(c2);
    /* nor a service nobody serves there */
    ck_assert_int_eq(bank_Bank_connect(c.node, s.addr, &c2), 0);
    ck_assert_int_eq(bank_Bank_get(c2, "nobody", &acct), QRPC_ENOSERVICE);
    qrpc_client_destroy(c2);
    /* a method id the server's service does not have */
    ck_assert_uint_le(kitchen_Kitchen_desc.n_methods + 1, 16);
    memcpy(methods, kitchen_Kitchen_desc.methods,
           kitchen_Kitchen_desc.n_methods * sizeof methods[0]);
    methods[kitchen_Kitchen_desc.n_methods].id = 99;
    methods[kitchen_Kitchen_desc.n_methods].name = "missing";
    methods[kitchen_Kitchen_desc.n_methods].flags = 0;
    more.methods = methods;
    more.n_methods = kitchen_Kitchen_desc.n_methods + 1;
    ck_assert_int_eq(qrpc_client_create(c.node, s.addr, &more, &c2), 0);
    ck_assert_int_eq(qrpc_call(c2, 99, &args, &reply), QRPC_ENOMETHOD);
    /* arguments that do not decode: the handler does not run */
    ck_assert_int_eq(qrpc_put_u8(&args, 1), 0);
    ck_assert_int_eq(qrpc_call(c2, kitchen_Kitchen_add_ID, &args, &reply), QRPC_EDECODE);
    /* bytes left over after the arguments */
    ck_assert_int_eq(qrpc_put_i32(&args, 1), 0);
    ck_assert_int_eq(qrpc_put_i32(&args, 2), 0);
    ck_assert_int_eq(qrpc_put_u8(&args, 0), 0);
    ck_assert_int_eq(qrpc_call(c2, kitchen_Kitchen_add_ID, &args, &reply), QRPC_EDECODE);
    /* and a method not in the client's own desc never leaves */
    ck_assert_int_eq(qrpc_call(c.k, 99, &args, &reply), QRPC_ENOMETHOD);
    /* a reply buffer is needed for a method with results */
    ck_assert_int_eq(qrpc_put_i32(&args, 1), 0);
    ck_assert_int_eq(qrpc_call(c2, kitchen_Kitchen_add_ID, &args, NULL), QRPC_EINVAL);
    qrpc_client_destroy(c2);
    qrpc_buf_free(&reply);

    /* an argument over its bound never leaves the caller */
    some_everything(&e, 3);
    kept = e.few_ints;
    e.few_ints.items = six;
    e.few_ints.len = 6;
    ck_assert_int_eq(kitchen_Kitchen_echo(c.k, &e, &e), QRPC_EBOUND);
    e.few_ints = kept;
    kitchen_Everything_free(&e);

    /* the connection took all of that in its stride */
    check_serving(c.k, "after the errors");
    ck_assert(tsrv_alive(&s));
    tcli_close(&c);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/* ---- nothing listens: QRPC_EUNAVAILABLE at once ------------------------------- */

static int async_status_box_calls;

static void box_cb(int status, kitchen_Kitchen_add_reply *reply, void *arg)
{
    (void)reply;
    *(int *)arg = status;
    __atomic_add_fetch(&async_status_box_calls, 1, __ATOMIC_SEQ_CST);
}

/* A port with nothing listening on it, kept bound so nobody else takes it. */
static int closed_port(int *fd_out)
{
    int port;

    *fd_out = raw_bind_loopback(&port);
    return port;
}

/*
 * A call to a destination that refuses: QRPC_EUNAVAILABLE, quickly, from
 * the sync stub; the async stub either returns it or reports it once.
 */
static void expect_unavailable(qrpc_client *k, tt_log *log, const char *addr)
{
    int64_t t0 = tt_now_ms();
    int32_t r;
    int rc, st = -100;
    char needle[256];

    rc = kitchen_Kitchen_add(k, -1, 1, &r);
    ck_assert_msg(rc == QRPC_EUNAVAILABLE, "sync call to %s: %s", addr, qrpc_err_name(rc));
    ck_assert_msg(tt_now_ms() - t0 < 2000, "EUNAVAILABLE took %" PRId64 " ms",
                  tt_now_ms() - t0);
    __atomic_store_n(&async_status_box_calls, 0, __ATOMIC_SEQ_CST);
    rc = kitchen_Kitchen_add_async(k, -1, 1, box_cb, &st);
    if (rc == 0) {
        int64_t until = tt_now_ms() + 5000;

        while (__atomic_load_n(&async_status_box_calls, __ATOMIC_SEQ_CST) == 0 &&
               tt_now_ms() < until)
            tt_nap_ms(1);
        ck_assert_int_eq(__atomic_load_n(&async_status_box_calls, __ATOMIC_SEQ_CST), 1);
        ck_assert_int_eq(st, QRPC_EUNAVAILABLE);
    } else {
        ck_assert_msg(rc == QRPC_EUNAVAILABLE, "async call to %s: %s", addr, qrpc_err_name(rc));
        ck_assert_int_eq(__atomic_load_n(&async_status_box_calls, __ATOMIC_SEQ_CST), 0);
    }
    if (log != NULL) {
        snprintf(needle, sizeof needle, "cannot connect to %s", addr);
        ck_assert_msg(tt_log_wait(log, needle, 2000), "no log line '%s'", needle);
    }
}

START_TEST(tcp_unavailable)
{
    tcli c;
    char addr[64];
    int fd, port = closed_port(&fd), i;

    snprintf(addr, sizeof addr, "%s127.0.0.1:%d", tt_scheme, port);
    tcli_open(&c, addr);
    for (i = 0; i < 3; i++)
        expect_unavailable(c.k, &c.log, addr);
    tcli_close(&c);
    close(fd);
}
END_TEST

/* ---- 2. many threads, many async calls in flight, one connection ----------------- */

#define CC_THREADS 8
#define CC_CALLS   2000
#define CC_ASYNC   20000
#define CC_WINDOW  200

typedef struct cc_state {
    qrpc_client *k;
    sem_t window;
    atomic_long completed, bad, inflight, max_inflight;
    atomic_char *seen;          /* one per async call */
    tt_count done;
} cc_state;

static cc_state CC;

static void *cc_sync_thread(void *arg)
{
    int32_t base = (int32_t)(intptr_t)arg * 1000000;
    long bad = 0;
    int i;

    for (i = 0; i < CC_CALLS; i++) {
        int32_t r = 0;
        int rc = kitchen_Kitchen_add(CC.k, -i, base, &r);

        if (rc != 0 || r != base - i)
            bad++;
    }
    return (void *)(intptr_t)bad;
}

static void cc_async_cb(int status, kitchen_Kitchen_add_reply *reply, void *arg)
{
    long i = (long)(intptr_t)arg;

    if (status != 0 || reply->result != (int32_t)(7 * i + 3) - (int32_t)i ||
        atomic_exchange(&CC.seen[i], 1) != 0)
        atomic_fetch_add(&CC.bad, 1);
    atomic_fetch_sub(&CC.inflight, 1);
    atomic_fetch_add(&CC.completed, 1);
    sem_post(&CC.window);
    tt_count_add(&CC.done, 1);
}

static void *cc_async_thread(void *arg)
{
    long i, failed = 0;

    (void)arg;
    for (i = 0; i < CC_ASYNC; i++) {
        struct timespec dl;
        long now;
        int rc;

        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 30;
        while ((rc = sem_timedwait(&CC.window, &dl)) != 0 && errno == EINTR)
            ;
        if (rc != 0)
            return (void *)(intptr_t)-1;        /* the window never opened */
        now = atomic_fetch_add(&CC.inflight, 1) + 1;
        for (long m = atomic_load(&CC.max_inflight); now > m;)
            if (atomic_compare_exchange_weak(&CC.max_inflight, &m, now))
                break;
        rc = kitchen_Kitchen_add_async(CC.k, -(int32_t)i, (int32_t)(7 * i + 3), cc_async_cb,
                                       (void *)(intptr_t)i);
        if (rc != 0) {
            atomic_fetch_sub(&CC.inflight, 1);
            sem_post(&CC.window);
            failed++;
        }
    }
    return (void *)(intptr_t)failed;
}

START_TEST(tcp_concurrency)
{
    tsrv_opts o = { .workers = 4 };
    qrpc_node_stats st;
    pthread_t th[CC_THREADS], at;
    tsrv s;
    tcli c;
    void *ret;
    int64_t t0;
    int i;

    tsrv_start(&s, &o);
    tcli_open(&c, s.addr);
    memset(&CC, 0, sizeof CC);
    CC.k = c.k;
    CC.seen = calloc(CC_ASYNC, sizeof *CC.seen);
    ck_assert_ptr_nonnull(CC.seen);
    ck_assert_int_eq(sem_init(&CC.window, 0, CC_WINDOW), 0);
    tt_count_init(&CC.done);
    check_serving(c.k, "before");       /* one connection, dialled here */

    t0 = tt_now_ms();
    ck_assert_int_eq(pthread_create(&at, NULL, cc_async_thread, NULL), 0);
    for (i = 0; i < CC_THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, cc_sync_thread, (void *)(intptr_t)(i + 1)),
                         0);
    for (i = 0; i < CC_THREADS; i++) {
        ck_assert_int_eq(pthread_join(th[i], &ret), 0);
        ck_assert_msg(ret == NULL, "sync thread %d: %ld bad results", i, (long)(intptr_t)ret);
    }
    ck_assert_int_eq(pthread_join(at, &ret), 0);
    ck_assert_msg(ret == NULL, "async thread: %ld calls not started", (long)(intptr_t)ret);
    ck_assert_msg(tt_count_wait(&CC.done, CC_ASYNC, 60000), "%ld of %d async calls completed",
                  tt_count_get(&CC.done), CC_ASYNC);
    fprintf(stderr, "tcp_concurrency: %d sync + %d async calls in %" PRId64
            " ms, up to %ld async in flight\n", CC_THREADS * CC_CALLS, CC_ASYNC,
            tt_now_ms() - t0, atomic_load(&CC.max_inflight));
    ck_assert_int_eq(atomic_load(&CC.completed), CC_ASYNC);
    ck_assert_int_eq(atomic_load(&CC.bad), 0);
    for (i = 0; i < CC_ASYNC; i++)
        ck_assert_msg(atomic_load(&CC.seen[i]) == 1, "async call %d completed %d times", i,
                      (int)atomic_load(&CC.seen[i]));
    ck_assert_int_eq(atomic_load(&CC.max_inflight), CC_WINDOW);
    /* completions are exact: nothing more arrives later */
    check_serving(c.k, "after");
    ck_assert_int_eq(atomic_load(&CC.completed), CC_ASYNC);
    qrpc_node_get_stats(c.node, &st);
#ifdef TT_RDMA
    /* RDMA's callers sleep: its reader (or poller) completes every call */
    ck_assert_msg(st.caller_reads == 0, "%" PRIu64 " calls read by their callers over RDMA",
                  st.caller_reads);
#else
    /* over TCP some came in while a synchronous caller read the connection */
    ck_assert_msg(st.caller_reads > 0, "no call completed on its caller's thread");
#endif

    tcli_close(&c);
    sem_destroy(&CC.window);
    tt_count_fini(&CC.done);
    free(CC.seen);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/*
 * A synchronous caller reads its own reply (qrpc(3), THREADS AND
 * OWNERSHIP): on a connection no other thread uses, sequential calls
 * complete on the calling thread, which the node counts (caller_reads),
 * whether it polls first (spin_us, the default) or sleeps in ppoll at
 * once (-1).  A caller reads for 2 ms at most: a slower call completes
 * through the loop as before, and is not counted.
 */
#define CR_CALLS 200

START_TEST(tcp_caller_reads)
{
    static const int32_t spins[2] = { 0, -1 };
    kitchen_i32_list values = { NULL, 0 };
    kitchen_Hash h;
    kitchen_Leaf *leaf = NULL;
    qrpc_node_config cfg;
    qrpc_node_stats st;
    uint64_t before;
    tsrv s;
    tcli c;
    int i, k;

    tsrv_start(&s, NULL);
    for (k = 0; k < 2; k++) {
        qrpc_node_config_init(&cfg);
        cfg.spin_us = spins[k];
        tcli_open_cfg(&c, s.addr, &cfg);
        check_serving(c.k, "before");
        qrpc_node_get_stats(c.node, &st);
        before = st.caller_reads;
        for (i = 0; i < CR_CALLS; i++) {
            int32_t r = 0;

            ck_assert_int_eq(kitchen_Kitchen_add(c.k, i, 1, &r), 0);
            ck_assert_int_eq(r, i + 1);
        }
        qrpc_node_get_stats(c.node, &st);
        fprintf(stderr, "tcp_caller_reads: spin_us %d: %" PRIu64 " of %d calls read by their "
                "caller\n", (int)spins[k], st.caller_reads - before, CR_CALLS);
        /* a loop thread may have come first now and then, on a loaded machine */
        ck_assert_msg(st.caller_reads - before >= CR_CALLS / 4 &&
                      st.caller_reads - before <= CR_CALLS,
                      "spin_us %d: %" PRIu64 " of %d calls read by their caller",
                      (int)spins[k], st.caller_reads - before, CR_CALLS);
        /* a handler of 50 ms outlasts the caller's reading: the loop completes it */
        before = st.caller_reads;
        ck_assert_int_eq(kitchen_Kitchen_fill(c.k, KF_SLEEP + 50, &values, &h, &leaf), 0);
        kitchen_i32_list_free(&values);
        kitchen_Leaf_opt_free(&leaf);
        qrpc_node_get_stats(c.node, &st);
        ck_assert_msg(st.caller_reads == before, "a 50 ms call counted as read by its caller");
        tcli_close(&c);
    }
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/* ---- 3. out-of-order replies -------------------------------------------------------- */

#define OO_CALLS 6

typedef struct oo_call {
    int status;
    int32_t result;
    int order;                  /* completion rank */
} oo_call;

static oo_call OO[OO_CALLS];
static atomic_int oo_rank;
static tt_count oo_done;

static void oo_cb(int status, kitchen_Kitchen_add_reply *reply, void *arg)
{
    oo_call *c = arg;

    c->status = status;
    c->result = status == 0 ? reply->result : 0;
    c->order = atomic_fetch_add(&oo_rank, 1);
    tt_count_add(&oo_done, 1);
}

START_TEST(tcp_out_of_order)
{
    tsrv_opts o = { .workers = 8 };
    tsrv s;
    tcli c;
    int i;

    tsrv_start(&s, &o);
    tcli_open(&c, s.addr);
    tt_count_init(&oo_done);
    atomic_store(&oo_rank, 0);
    check_serving(c.k, "before");
    /* issued longest first: 600 ms, 500 ms, ... 100 ms */
    for (i = 0; i < OO_CALLS; i++) {
        int32_t delay_us = (OO_CALLS - i) * 100000;

        OO[i].status = -100;
        OO[i].order = -1;
        ck_assert_int_eq(kitchen_Kitchen_add_async(c.k, delay_us, 1000 * i + 7, oo_cb, &OO[i]),
                         0);
    }
    ck_assert(tt_count_wait(&oo_done, OO_CALLS, 30000));
    for (i = 0; i < OO_CALLS; i++) {
        ck_assert_int_eq(OO[i].status, 0);
        /* each reply is its own call's */
        ck_assert_int_eq(OO[i].result, (OO_CALLS - i) * 100000 + 1000 * i + 7);
        /* and they came back in the reverse of the issue order */
        ck_assert_msg(OO[i].order == OO_CALLS - 1 - i, "call %d completed %d-th", i,
                      OO[i].order);
    }
    tt_count_fini(&oo_done);
    tcli_close(&c);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/* ---- 4. a 64 MiB argument alongside small calls ------------------------------------- */

#ifdef TT_RDMA
/* the verbs emulation moves bytes far slower than TCP (under TSan, slower
 * still): a quarter of the size, still 256 frames */
#define BIG_LEN (16u * MiB)
#else
#define BIG_LEN (64u * MiB)
#endif
#define SMALL_MAX 1000000

typedef struct big_state {
    qrpc_client *k;
    atomic_bool stop;
    atomic_long n;
    uint64_t *when;             /* completion times of small calls, ns */
    long bad;
} big_state;

static void *big_small_thread(void *arg)
{
    big_state *b = arg;
    int32_t i = 0;

    while (!atomic_load(&b->stop)) {
        int32_t r = 0;
        int rc = kitchen_Kitchen_add(b->k, -i, 5, &r);
        long n = atomic_load(&b->n);

        if (rc != 0 || r != 5 - i)
            b->bad++;
        else if (n < SMALL_MAX)
            b->when[n] = tt_now_ns();
        atomic_store(&b->n, n + 1);
        i++;
    }
    return NULL;
}

START_TEST(tcp_large)
{
    tsrv_opts o = { .workers = 4, .max_message = 80 * MiB };
    qrpc_node_config cfg;
    big_state b;
    pthread_t th;
    tsrv s;
    tcli c;
    kitchen_Everything in, out;
    uint64_t seed = 1234567, h_in, t0, t1;
    long during = 0, i, n;
    int rc;

    tsrv_start(&s, &o);
    qrpc_node_config_init(&cfg);
    cfg.max_message = 80 * MiB;
    tcli_open_cfg(&c, s.addr, &cfg);
    check_serving(c.k, "before");

    some_everything(&in, 8);
    qrpc_bytes_free(&in.blob);
    in.blob.data = malloc(BIG_LEN);
    ck_assert_ptr_nonnull(in.blob.data);
    in.blob.len = BIG_LEN;
    for (i = 0; i + 8 <= (long)BIG_LEN; i += 8) {
        uint64_t w = xorshift(&seed);

        memcpy(in.blob.data + i, &w, 8);
    }
    h_in = big_hash(in.blob.data, in.blob.len);

    memset(&b, 0, sizeof b);
    b.k = c.k;
    b.when = calloc(SMALL_MAX, sizeof *b.when);
    ck_assert_ptr_nonnull(b.when);
    ck_assert_int_eq(pthread_create(&th, NULL, big_small_thread, &b), 0);
    /* the small calls are flowing before the big one starts */
    for (i = 0; atomic_load(&b.n) < 20 && i < 10000; i++)
        tt_nap_ms(1);
    ck_assert_int_ge(atomic_load(&b.n), 20);

    t0 = tt_now_ns();
    rc = kitchen_Kitchen_echo(c.k, &in, &out);
    t1 = tt_now_ns();
    atomic_store(&b.stop, true);
    ck_assert_int_eq(pthread_join(th, NULL), 0);

    ck_assert_msg(rc == 0, "%u MiB echo: %s", BIG_LEN / MiB, qrpc_err_name(rc));
    ck_assert_uint_eq(out.blob.len, BIG_LEN);
    ck_assert(big_hash(out.blob.data, out.blob.len) == h_in);
    ck_assert(kitchen_Everything_equal(&in, &out));
    ck_assert_int_eq(b.bad, 0);
    n = atomic_load(&b.n);
    for (i = 0; i < n && i < SMALL_MAX; i++)
        if (b.when[i] > t0 && b.when[i] < t1)
            during++;
    fprintf(stderr, "tcp_large: %u MiB echo in %" PRIu64 " ms; %ld small calls completed "
            "meanwhile (%ld in all)\n", BIG_LEN / MiB, (t1 - t0) / 1000000u, during, n);
    /* the big message did not hold the small ones back */
    ck_assert_msg(during >= 10, "only %ld small calls completed during the big echo",
                  during);
    kitchen_Everything_free(&in);
    kitchen_Everything_free(&out);
    free(b.when);
    check_serving(c.k, "after");
    tcli_close(&c);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/* ---- 5. a server killed mid-call ---------------------------------------------------- */

typedef struct sync_call {
    qrpc_client *k;
    int32_t n;
    int status;
    int64_t done_ms;
    tt_count *done;
} sync_call;

static void *sync_fill_thread(void *arg)
{
    sync_call *sc = arg;
    kitchen_i32_list values = { NULL, 0 };
    kitchen_Hash h;
    kitchen_Leaf *leaf = NULL;

    sc->status = kitchen_Kitchen_fill(sc->k, sc->n, &values, &h, &leaf);
    sc->done_ms = tt_now_ms();
    kitchen_i32_list_free(&values);
    kitchen_Leaf_opt_free(&leaf);
    tt_count_add(sc->done, 1);
    return NULL;
}

/*
 * A synchronous fill(KF_BLOCK) on k in a new thread *th (sc its record,
 * done counted when it ends), and the server killed (SIGKILL) once the
 * call runs in its handler.
 */
static void crash_in_call(tsrv *s, sync_call *sc, qrpc_client *k, tt_count *done,
                          pthread_t *th)
{
    sc->k = k;
    sc->n = KF_BLOCK;
    sc->status = -100;
    sc->done = done;
    ck_assert_int_eq(pthread_create(th, NULL, sync_fill_thread, sc), 0);
    tsrv_events(s, "BLOCK", 1, 10000);
    tsrv_stop(s, SIGKILL, 10000);
    tsrv_close(s);
}

typedef struct st_res {
    int status;
    int calls;
    int64_t when_ms;
    tt_count *done;
} st_res;

static void st_fill_cb(int status, kitchen_Kitchen_fill_reply *reply, void *arg)
{
    st_res *r = arg;

    (void)reply;
    r->status = status;
    r->calls++;
    r->when_ms = tt_now_ms();
    tt_count_add(r->done, 1);
}

static void st_void_cb(int status, void *arg)
{
    st_res *r = arg;

    r->status = status;
    r->calls++;
    r->when_ms = tt_now_ms();
    tt_count_add(r->done, 1);
}

START_TEST(tcp_server_killed)
{
    tsrv_opts o = { .workers = 4, .max_inflight = 6 };
    tsrv s;
    tcli c;
    tt_count done;
    sync_call sc;
    st_res ar[3], pr[2];
    pthread_t th;
    char needle[256];
    int64_t killed;
    int32_t r;
    int i;

    tsrv_start(&s, &o);
    tcli_open_once(&c, s.addr);
    tt_count_init(&done);
    /* no call before: a finished call may still count against max_inflight */

    /* four calls running in handlers that never return ... */
    sc.k = c.k;
    sc.n = KF_BLOCK;
    sc.status = -100;
    sc.done = &done;
    ck_assert_int_eq(pthread_create(&th, NULL, sync_fill_thread, &sc), 0);
    for (i = 0; i < 3; i++) {
        ar[i].status = -100;
        ar[i].calls = 0;
        ar[i].done = &done;
        ck_assert_int_eq(kitchen_Kitchen_fill_async(c.k, KF_BLOCK, st_fill_cb, &ar[i]), 0);
    }
    tsrv_events(&s, "BLOCK", 4, 20000);
    /* ... and two queued behind them (every worker is busy) */
    for (i = 0; i < 2; i++) {
        pr[i].status = -100;
        pr[i].calls = 0;
        pr[i].done = &done;
        ck_assert_int_eq(kitchen_Kitchen_ping_async(c.k, st_void_cb, &pr[i]), 0);
    }
    /*
     * A 7th call is refused (max_inflight 6): so the pings before it on the
     * connection have reached the server (an async call may return before
     * its request is written, when another thread holds the writer role).
     */
    ck_assert_int_eq(kitchen_Kitchen_add(c.k, -1, 1, &r), QRPC_EBUSY);
    ck_assert_int_eq(tt_count_get(&done), 0);

    tsrv_stop(&s, SIGKILL, 10000);
    killed = tt_now_ms();
    ck_assert_msg(tt_count_wait(&done, 6, 10000), "only %ld of 6 calls completed after the "
                  "server was killed", tt_count_get(&done));
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    /* sent, may have run: QRPC_EUNKNOWN, promptly */
    ck_assert_msg(sc.status == QRPC_EUNKNOWN, "sync call: %s", qrpc_err_name(sc.status));
    ck_assert_int_lt(sc.done_ms - killed, 3000);
    for (i = 0; i < 3; i++) {
        ck_assert_int_eq(ar[i].calls, 1);
        ck_assert_msg(ar[i].status == QRPC_EUNKNOWN, "async %d: %s", i,
                      qrpc_err_name(ar[i].status));
        ck_assert_int_lt(ar[i].when_ms - killed, 3000);
    }
    for (i = 0; i < 2; i++) {
        ck_assert_int_eq(pr[i].calls, 1);
        ck_assert_msg(pr[i].status == QRPC_EUNKNOWN, "queued %d: %s", i,
                      qrpc_err_name(pr[i].status));
    }
    snprintf(needle, sizeof needle, "closing connection to %s", s.addr);
    ck_assert_msg(tt_log_wait(&c.log, needle, 2000), "client log lacks '%s'", needle);
    /* the server is gone: later calls are not sent at all */
    expect_unavailable(c.k, &c.log, s.addr);
    ck_assert_int_eq(tt_count_get(&done), 6);

    tcli_close(&c);
    tt_count_fini(&done);
    tsrv_close(&s);
}
END_TEST

/*
 * The same under load: eight threads calling as fast as they can when the
 * server is killed.  Every call ends in a result, QRPC_EUNKNOWN or
 * QRPC_EUNAVAILABLE; no thread hangs, and the test process survives writes
 * to connections the peer has reset (no SIGPIPE is ignored here, as in a
 * program that has not heard of it).
 */
#define KL_THREADS 8

typedef struct kl_state {
    qrpc_client *k;
    atomic_long ok, unknown, unavailable, other;
    atomic_long total;
} kl_state;

static kl_state KL;

static void *kl_thread(void *arg)
{
    int32_t base = (int32_t)(intptr_t)arg * 100000;
    int unavailable_seen = 0, i;

    for (i = 0; unavailable_seen < 20 && i < 1000000; i++) {
        int32_t r = 0;
        int rc = kitchen_Kitchen_add(KL.k, -(i % 1000), base, &r);

        atomic_fetch_add(&KL.total, 1);
        if (rc == 0 && r == base - (i % 1000))
            atomic_fetch_add(&KL.ok, 1);
        else if (rc == QRPC_EUNKNOWN)
            atomic_fetch_add(&KL.unknown, 1);
        else if (rc == QRPC_EUNAVAILABLE) {
            atomic_fetch_add(&KL.unavailable, 1);
            unavailable_seen++;
        } else
            atomic_fetch_add(&KL.other, 1);
    }
    return NULL;
}

START_TEST(tcp_kill_under_load)
{
    tsrv_opts o = { .workers = 4 };
    pthread_t th[KL_THREADS];
    tsrv s;
    tcli c;
    int i, round;

    for (round = 0; round < 10; round++) {
        tsrv_start(&s, &o);
        tcli_open_once(&c, s.addr);
        memset(&KL, 0, sizeof KL);
        KL.k = c.k;
        for (i = 0; i < KL_THREADS; i++)
            ck_assert_int_eq(pthread_create(&th[i], NULL, kl_thread, (void *)(intptr_t)i), 0);
        for (i = 0; atomic_load(&KL.ok) < 2000 && i < 20000; i++)
            tt_nap_ms(1);
        ck_assert_int_ge(atomic_load(&KL.ok), 2000);
        /* a writer racing the connection's failure must not kill this process (SIGPIPE) */
        tsrv_stop(&s, SIGKILL, 10000);
        for (i = 0; i < KL_THREADS; i++)
            ck_assert_int_eq(pthread_join(th[i], NULL), 0);
        ck_assert_int_eq(atomic_load(&KL.other), 0);
        ck_assert_int_ge(atomic_load(&KL.unavailable), KL_THREADS * 20);
        tcli_close(&c);
        tsrv_close(&s);
    }
}
END_TEST

/* ---- 6. reconnect after the server comes back on the same port ------------------- */

START_TEST(tcp_reconnect)
{
    tsrv_opts o = { 0 };
    tsrv s;
    tcli c;
    tt_count done;
    st_res ar;
    sync_call sc;
    pthread_t th;
    char needle[256], addr[128];
    int32_t r = 0;
    int port;

    tsrv_start(&s, NULL);
    port = s.port;
    snprintf(addr, sizeof addr, "%s", s.addr);
    tcli_open_once(&c, addr);
    tt_count_init(&done);
    check_serving(c.k, "first server");

    /* A clean stop: the client sees the connection close ... */
    tsrv_stop_clean(&s);
    tsrv_close(&s);
    snprintf(needle, sizeof needle, "closing connection to %s", addr);
    ck_assert_msg(tt_log_wait(&c.log, needle, 5000), "client log lacks '%s'", needle);
    /* ... and calls fail without being sent while nobody listens */
    expect_unavailable(c.k, &c.log, addr);

    /* the server comes back on the same port: the same client works again */
    o.port = port;
    tsrv_start(&s, &o);
    check_serving(c.k, "second server");
    ar.status = -100;
    ar.calls = 0;
    ar.done = &done;
    ck_assert_int_eq(kitchen_Kitchen_ping_async(c.k, st_void_cb, &ar), 0);
    ck_assert(tt_count_wait(&done, 1, 10000));
    ck_assert_int_eq(ar.status, 0);

    /* a crash with a call in flight, then a third server on the port */
    crash_in_call(&s, &sc, c.k, &done, &th);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_msg(sc.status == QRPC_EUNKNOWN, "in flight at the crash: %s",
                  qrpc_err_name(sc.status));
    expect_unavailable(c.k, NULL, addr);
    tsrv_start(&s, &o);
    ck_assert_int_eq(kitchen_Kitchen_add(c.k, -1, 2, &r), 0);
    ck_assert_int_eq(r, 1);
    check_serving(c.k, "third server");

    tcli_close(&c);
    tt_count_fini(&done);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/* ---- 7. timeouts ---------------------------------------------------------------------- */

START_TEST(tcp_timeout)
{
    tsrv s;
    tcli c;
    tt_count done;
    st_res ar;
    kitchen_i32_list values = { NULL, 0 };
    kitchen_Hash h;
    kitchen_Leaf *leaf = NULL;
    int64_t t0, took;
    int rc, calls = 0;
    char line[64];

    tsrv_start(&s, NULL);
    tcli_open(&c, s.addr);
    tt_count_init(&done);
    check_serving(c.k, "before");
    qrpc_client_set_timeout(c.k, 200);

    /* a handler that takes 2 s: the caller gives up at 200 ms */
    t0 = tt_now_ms();
    rc = kitchen_Kitchen_fill(c.k, KF_SLEEP + 2000, &values, &h, &leaf);
    took = tt_now_ms() - t0;
    ck_assert_msg(rc == QRPC_ETIMEDOUT, "slow call: %s", qrpc_err_name(rc));
    ck_assert_msg(took >= 150 && took < 1500, "ETIMEDOUT after %" PRId64 " ms", took);
    ck_assert(tsrv_event(&s, "SLEEP 2000", 5000, line, sizeof line));

    /*
     * the connection still works while the handler sleeps ... (calls
     * that must succeed get a generous deadline: under a sanitizer on a
     * loaded machine a small call can take longer than 200 ms)
     */
    qrpc_client_set_timeout(c.k, 10000);
    check_serving(c.k, "while the slow handler runs");
    /* ... the same with an async call ... */
    ar.status = -100;
    ar.calls = 0;
    ar.done = &done;
    qrpc_client_set_timeout(c.k, 200);
    t0 = tt_now_ms();
    ck_assert_int_eq(kitchen_Kitchen_fill_async(c.k, KF_SLEEP + 2000, st_fill_cb, &ar), 0);
    qrpc_client_set_timeout(c.k, 10000);
    ck_assert(tt_count_wait(&done, 1, 5000));
    ck_assert_msg(ar.status == QRPC_ETIMEDOUT, "slow async call: %s", qrpc_err_name(ar.status));
    took = ar.when_ms - t0;
    ck_assert_msg(took >= 150 && took < 1500, "async ETIMEDOUT after %" PRId64 " ms", took);
    ck_assert_int_eq(ar.calls, 1);
    /* ... and after the late replies arrived (and were dropped) */
    ck_assert(tsrv_event(&s, "SLEPT 2000", 10000, line, sizeof line));
    ck_assert(tsrv_event(&s, "SLEPT 2000", 10000, line, sizeof line));
    for (calls = 0; calls < 20; calls++)
        check_serving(c.k, "after the late replies");
    ck_assert_int_eq(ar.calls, 1);
    /* with the generous deadline, a slow call succeeds */
    ck_assert_int_eq(kitchen_Kitchen_fill(c.k, KF_SLEEP + 300, &values, &h, &leaf), 0);
    kitchen_i32_list_free(&values);
    kitchen_Leaf_opt_free(&leaf);

    tcli_close(&c);
    tt_count_fini(&done);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/* The node's default deadline (cfg.timeout_ms) applies to a client without its own. */
START_TEST(tcp_node_timeout)
{
    qrpc_node_config cfg;
    tsrv s;
    tcli c;
    kitchen_i32_list values = { NULL, 0 };
    kitchen_Hash h;
    kitchen_Leaf *leaf = NULL;
    int64_t t0, took;
    int rc;

    tsrv_start(&s, NULL);
    qrpc_node_config_init(&cfg);
    cfg.timeout_ms = 300;
    tcli_open_cfg(&c, s.addr, &cfg);
    t0 = tt_now_ms();
    rc = kitchen_Kitchen_fill(c.k, KF_SLEEP + 3000, &values, &h, &leaf);
    took = tt_now_ms() - t0;
    ck_assert_msg(rc == QRPC_ETIMEDOUT, "%s", qrpc_err_name(rc));
    ck_assert_msg(took >= 250 && took < 2000, "ETIMEDOUT after %" PRId64 " ms", took);
    qrpc_client_set_timeout(c.k, 10000);        /* a call that must succeed: see tcp_timeout */
    check_serving(c.k, "after");
    tcli_close(&c);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/* ---- 8. the wire by hand, and hostile peers ---------------------------------------- */

/* Frame types and flags of qrpc-protocol(7), written out independently here. */
enum { F_HELLO = 1, F_REQUEST = 2, F_REPLY = 3, F_DATA = 4, F_PING = 5, F_PONG = 6 };
#define F_END 1u
#define KNAME "kitchen.Kitchen"
#define KNAME_LEN 15u
#define REQ_FIXED 56u

static size_t fr_hdr(uint8_t *p, uint8_t type, uint8_t flags, uint32_t stream, uint32_t len)
{
    p[0] = 'Q';
    p[1] = 'R';
    p[2] = 1;
    p[3] = type;
    p[4] = flags;
    p[5] = 0;
    le16(p + 6, 0);
    le32(p + 8, stream);
    le32(p + 12, len);
    return 16;
}

static size_t fr_hello(uint8_t *p)
{
    fr_hdr(p, F_HELLO, 0, 0, 24);
    le64(p + 16, 0x0123456789abcdefu);
    le32(p + 24, 65536);
    le32(p + 28, 64 * MiB);
    le32(p + 32, 1024);
    le32(p + 36, 0);
    return 40;
}

/*
 * A REQUEST frame for kitchen.Kitchen version 3 on stream: the message
 * header declares body_len bytes of body; n of them (body) follow in
 * this frame.
 */
static size_t fr_request(uint8_t *p, uint32_t stream, uint8_t flags, uint32_t body_len,
                         uint32_t method, const uint8_t *body, uint32_t n)
{
    uint8_t *m = p + 16;

    le32(m, body_len);
    le32(m + 4, method);
    le32(m + 8, 3);
    le32(m + 12, method == kitchen_Kitchen_add_ID ? 1u : 0u);   /* idempotent */
    le64(m + 16, 0x42);
    le64(m + 24, stream);
    le64(m + 32, 0);
    le64(m + 40, 0);            /* incarnation: a first transmission */
    le32(m + 48, 0);
    le16(m + 52, KNAME_LEN);
    le16(m + 54, 0);
    memcpy(m + REQ_FIXED, KNAME, KNAME_LEN);
    if (n > 0)
        memcpy(m + REQ_FIXED + KNAME_LEN, body, n);
    fr_hdr(p, F_REQUEST, flags, stream, REQ_FIXED + KNAME_LEN + n);
    return 16 + REQ_FIXED + KNAME_LEN + n;
}

/* ---- 4b. a call's tail: bytes sent from where the caller has them ----------------- */

/* n bytes of a seeded stream, malloc'd (n may be 0). */
static uint8_t *tail_bytes(size_t n, uint64_t seed)
{
    uint8_t *p = malloc(n != 0 ? n : 1);
    size_t i;

    ck_assert_ptr_nonnull(p);
    for (i = 0; i < n; i++)
        p[i] = (uint8_t)xorshift(&seed);
    return p;
}

static void as_digest_tail_cb(int status, kitchen_Kitchen_digest_tail_reply *reply, void *arg)
{
    as_res *r = arg;

    if (status == 0)
        memcpy(r->hash, reply->result, sizeof r->hash);
    as_finish(r, status);
}

/*
 * SO_RCVBUF of every TCP socket of this process bound to or connected to
 * port, at most max of them: the listener's, the accepted connection's
 * and the dialed one's.
 */
static int rcvbufs_of_port(int port, int *out, int max)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL && n < max) {
        struct sockaddr_in a, b;
        socklen_t la = sizeof a, lb = sizeof b, lv = sizeof(int);
        int fd = atoi(e->d_name), type = 0, v;

        if (e->d_name[0] == '.' || fd == dirfd(d))
            continue;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &lv) != 0 || type != SOCK_STREAM)
            continue;
        memset(&a, 0, sizeof a);
        memset(&b, 0, sizeof b);
        if (getsockname(fd, (struct sockaddr *)&a, &la) != 0 || a.sin_family != AF_INET)
            continue;
        if (getpeername(fd, (struct sockaddr *)&b, &lb) != 0)
            b.sin_port = 0;
        if (ntohs(a.sin_port) != port && ntohs(b.sin_port) != port)
            continue;
        lv = sizeof v;
        ck_assert_int_eq(getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, &lv), 0);
        out[n++] = v;
    }
    closedir(d);
    return n;
}

/*
 * tcp_rcvbuf: out of range is QRPC_EINVAL; set, it is the receive buffer
 * of the listening socket, of what it accepts and of what a node dials
 * (the kernel reports twice the value); unset, the kernel's own.
 */
START_TEST(tcp_rcvbuf)
{
    static const uint32_t bad[] = { 1, 4095, (1u << 30) + 1, UINT32_MAX };
    qrpc_node_config cfg;
    qrpc_node *srv = NULL, *cli = NULL;
    qrpc_client *k = NULL;
    int32_t sum = 0;
    int round, v[8], n, i;
    size_t j;

    qrpc_node_config_init(&cfg);
    cfg.listen = "127.0.0.1:0";
    for (j = 0; j < sizeof bad / sizeof bad[0]; j++) {
        cfg.tcp_rcvbuf = bad[j];
        ck_assert_int_eq(qrpc_node_create(&cfg, &srv), QRPC_EINVAL);
        ck_assert_ptr_null(srv);
    }
    for (round = 0; round < 2; round++) {
        uint32_t set = round == 0 ? 100000 : 0;
        const char *addr;
        int port;

        qrpc_node_config_init(&cfg);
        cfg.listen = "127.0.0.1:0";
        cfg.tcp_rcvbuf = set;
        ck_assert_int_eq(qrpc_node_create(&cfg, &srv), 0);
        addr = qrpc_node_address(srv);
        port = atoi(strrchr(addr, ':') + 1);
        qrpc_node_config_init(&cfg);
        cfg.tcp_rcvbuf = set;
        ck_assert_int_eq(qrpc_node_create(&cfg, &cli), 0);
        ck_assert_int_eq(kitchen_Kitchen_connect(cli, addr, &k), 0);
        /* the server serves nothing: the answer says so, over a connection */
        ck_assert_int_eq(kitchen_Kitchen_add(k, 1, 2, &sum), QRPC_ENOSERVICE);
        n = rcvbufs_of_port(port, v, 8);
        ck_assert_int_eq(n, 3);
        for (i = 0; i < n; i++) {
            if (set != 0)
                ck_assert_int_eq(v[i], 2 * (int)set);
            else
                ck_assert_int_ne(v[i], 2 * 100000);
        }
        qrpc_client_destroy(k);
        qrpc_node_destroy(cli);
        qrpc_node_destroy(srv);
    }
}
END_TEST

static void lane_digest_cb(int status, kitchen_Kitchen_digest_reply *reply, void *arg)
{
    (void)reply;
    st_void_cb(status, arg);
}

/*
 * The bulk lane (config bulk_lane): a call whose arguments are that large
 * goes on a second connection to its node.  Out of range is
 * QRPC_EINVAL.  Direct, a 1 MiB call over the lane gets its digest; when
 * the server goes, both connections close, a 1 MiB call fails
 * QRPC_EUNAVAILABLE (the lane cannot be dialled), and once the server is
 * back on its port the lane is dialled again.
 * Through a proxy that stalls the connection a split request starts on
 * (faultproxy --stall-big), a 1 MiB call sticks: with the lane, 50 small
 * calls complete meanwhile over the other connection; with bulk_lane -1
 * (one connection) a small call queues behind it until its deadline.
 * Either way the large call ends once, QRPC_ETIMEDOUT.
 */
START_TEST(tcp_bulk_lane)
{
    static const char *const stall[] = { "--stall-big", NULL };
    static uint8_t big[MiB];
    big_call b;
    qrpc_node_config cfg;
    qrpc_node *bad = NULL;
    tt_count done;
    st_res res;
    fproxy p;
    tsrv s;
    tcli c;
    char addr[64];
    const char *stats;
    tsrv_opts o = { 0 };
    char needle[256];
    int32_t r = 0;
    int round, i, rc;

    qrpc_node_config_init(&cfg);
    cfg.bulk_lane = -2;
    ck_assert_int_eq(qrpc_node_create(&cfg, &bad), QRPC_EINVAL);
    ck_assert_ptr_null(bad);
    big_call_init(&b, big, sizeof big, 3);

    tsrv_start(&s, NULL);
    tcli_open(&c, s.addr);
    rc = big_call_sync(c.k, &b, "1 MiB over the lane");
    ck_assert_msg(rc == 0, "1 MiB over the lane: %s", qrpc_err_name(rc));
    check_serving(c.k, "beside the lane");
    o.port = s.port;
    snprintf(needle, sizeof needle, "closing connection to %s", s.addr);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
    ck_assert_msg(tt_log_wait_n(&c.log, needle, 2, 5000), "client log lacks '%s' twice",
                  needle);
    rc = big_call_sync(c.k, &b, "1 MiB, nobody listening");
    ck_assert_msg(rc == QRPC_EUNAVAILABLE, "1 MiB, nobody listening: %s", qrpc_err_name(rc));
    tsrv_start(&s, &o);
    rc = big_call_sync(c.k, &b, "1 MiB over the lane dialled again");
    ck_assert_msg(rc == 0, "1 MiB over the lane dialled again: %s", qrpc_err_name(rc));
    check_serving(c.k, "beside the lane dialled again");
    tcli_close(&c);

    tt_count_init(&done);
    for (round = 0; round < 2; round++) {
        bool lane = round == 0;

        fp_start(&p, s.port, stall);
        snprintf(addr, sizeof addr, "127.0.0.1:%d", p.port);
        qrpc_node_config_init(&cfg);
        cfg.bulk_lane = lane ? 0 : -1;
        cfg.retry_ms = -1;
        cfg.timeout_ms = 3000;
        tcli_open_cfg(&c, addr, &cfg);
        check_serving(c.k, "before the large call");
        res.status = -100;
        res.calls = 0;
        res.done = &done;
        ck_assert_int_eq(kitchen_Kitchen_digest_async(c.k, &b.data,
                                                      (const kitchen_Hash *)&b.seed, &b.m,
                                                      kitchen_Color_GREEN, 2,
                                                      lane_digest_cb, &res), 0);
        if (lane) {
            for (i = 0; i < 50; i++)
                check_serving(c.k, "while a large call is stalled");
            ck_assert_int_eq(tt_count_get(&done), round);
        } else {
            qrpc_client_set_timeout(c.k, 300);
            rc = kitchen_Kitchen_add(c.k, 1, 2, &r);
            ck_assert_msg(rc == QRPC_ETIMEDOUT, "a small call behind a stalled one: %s",
                          qrpc_err_name(rc));
        }
        ck_assert(tt_count_wait(&done, round + 1, 10000));
        ck_assert_int_eq(res.calls, 1);
        ck_assert_msg(res.status == QRPC_ETIMEDOUT, "the stalled call: %s",
                      qrpc_err_name(res.status));
        tcli_close(&c);
        stats = fp_stop(&p, 0);
        ck_assert_int_eq(stat_of(stats, "stalls"), 1);
        ck_assert_int_eq(stat_of(stats, "connections"), lane ? 2 : 1);
    }
    tt_count_fini(&done);
    ck_assert(tsrv_alive(&s));
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/*
 * digest_tail's bytes go as the synchronous stub's tail: copied below 64
 * KiB, sent in place from 64 KiB on.  Every size gets the digest of what
 * it sent, and the caller's buffer is scribbled on and freed the moment
 * the call returns (under ASan, a message still reading it would be
 * caught).  The asynchronous stub, which copies, agrees.
 */
START_TEST(tcp_tail)
{
    static const size_t sizes[] = { 0, 1, 1000, 65535, 65536, 65537, MiB + 3, 16 * MiB };
    tsrv_opts o = { .max_message = 32 * MiB };
    qrpc_node_config cfg;
    kitchen_Hash seed, got, want;
    tt_count done;
    as_res ar;
    tsrv s;
    tcli c;
    size_t k;

    tsrv_start(&s, &o);
    qrpc_node_config_init(&cfg);
    cfg.max_message = 32 * MiB;
    tcli_open_cfg(&c, s.addr, &cfg);
    for (k = 0; k < 32; k++)
        seed[k] = (uint8_t)(0x30 + k);
    for (k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        qrpc_bytes data = { tail_bytes(sizes[k], 77 + k), sizes[k] };
        int rc;

        kd_digest(&data, (const kitchen_Hash *)&seed, &kd_tail_money, kitchen_Color_RED, 11,
                  &want);
        rc = kitchen_Kitchen_digest_tail(c.k, (const kitchen_Hash *)&seed, &data, &got);
        memset(data.data, 0xEE, sizes[k] != 0 ? sizes[k] : 1);
        free(data.data);
        ck_assert_msg(rc == 0, "%zu bytes: %s", sizes[k], qrpc_err_name(rc));
        ck_assert_msg(memcmp(got, want, 32) == 0, "%zu bytes: wrong digest", sizes[k]);
    }
    {
        qrpc_bytes data = { tail_bytes(MiB + 3, 5), MiB + 3 };

        kd_digest(&data, (const kitchen_Hash *)&seed, &kd_tail_money, kitchen_Color_RED, 11,
                  &want);
        tt_count_init(&done);
        memset(&ar, 0, sizeof ar);
        ar.done = &done;
        ck_assert_int_eq(kitchen_Kitchen_digest_tail_async(c.k, (const kitchen_Hash *)&seed,
                                                           &data, as_digest_tail_cb, &ar), 0);
        memset(data.data, 0xEE, data.len);      /* the async stub copied it */
        free(data.data);
        ck_assert(tt_count_wait(&done, 1, 30000));
        ck_assert_int_eq(ar.status, 0);
        ck_assert(memcmp(ar.hash, want, 32) == 0);
        tt_count_fini(&done);
    }
    /*
     * A NULL tail with a length is the caller's error; arguments and tail
     * over max_message together are refused before anything is sent.
     */
    {
        qrpc_buf args, reply;
        size_t n = 32 * MiB - 35;       /* + the 32-byte seed + 4 of length: one over */
        uint8_t *big = calloc(1, n);

        ck_assert_ptr_nonnull(big);
        qrpc_buf_init(&args);
        qrpc_buf_init(&reply);
        ck_assert_int_eq(qrpc_call_tail(c.k, kitchen_Kitchen_digest_tail_ID, &args, NULL,
                                        100000, &reply), QRPC_EINVAL);
        qrpc_buf_init(&args);
        ck_assert_int_eq(qrpc_put_raw(&args, seed, 32), 0);
        ck_assert_int_eq(qrpc_put_u32(&args, (uint32_t)n), 0);
        ck_assert_int_eq(qrpc_call_tail(c.k, kitchen_Kitchen_digest_tail_ID, &args, big, n,
                                        &reply), QRPC_ETOOBIG);
        ck_assert_uint_eq(args.len, 0);         /* taken in every case */
        qrpc_buf_init(&args);
        ck_assert_int_eq(qrpc_put_raw(&args, seed, 32), 0);
        ck_assert_int_eq(qrpc_put_u32(&args, (uint32_t)(n - 1)), 0);
        ck_assert_int_eq(qrpc_call_tail(c.k, kitchen_Kitchen_digest_tail_ID, &args, big, n - 1,
                                        &reply), 0);            /* exactly max_message */
        free(big);
        qrpc_buf_free(&reply);
    }
    check_serving(c.k, "after the tails");
    tcli_close(&c);
    tsrv_stop_clean(&s);
}
END_TEST

/* A peer that says HELLO and then reads nothing, until told to go. */
typedef struct deaf_peer {
    int lfd, fd, stop[2];
    pthread_t th;
} deaf_peer;

static void *deaf_main(void *arg)
{
    deaf_peer *d = arg;
    struct pollfd p = { d->lfd, POLLIN, 0 };
    uint8_t hello[64], b;

    if (poll(&p, 1, 20000) == 1) {
        d->fd = accept(d->lfd, NULL, NULL);
        if (d->fd >= 0)
            (void)raw_send(d->fd, hello, fr_hello(hello));
    }
    (void)read(d->stop[0], &b, 1);
    return NULL;
}

/*
 * A tail the peer never takes: the call's deadline passes, but the call
 * returns only once its connection stopped holding the tail, which the
 * node sees to by dropping a connection that took no bytes for
 * stall_timeout_ms.  Without that, the call would never return; without
 * the wait for the tail, it would return at its deadline with the tail
 * still queued.
 */
START_TEST(tcp_tail_unread)
{
    qrpc_node_config cfg;
    qrpc_bytes data = { tail_bytes(32 * MiB, 9), 32 * MiB };
    kitchen_Hash seed = { 0 }, got;
    deaf_peer d;
    char addr[64];
    int64_t t0, dt;
    tcli c;
    int port, rc;

    memset(&d, 0, sizeof d);
    d.fd = -1;
    d.lfd = raw_bind_loopback(&port);
    ck_assert_int_eq(listen(d.lfd, 4), 0);
    ck_assert_int_eq(pipe(d.stop), 0);
    ck_assert_int_eq(pthread_create(&d.th, NULL, deaf_main, &d), 0);
    qrpc_node_config_init(&cfg);
    cfg.timeout_ms = 300;
    cfg.stall_timeout_ms = 1500;
    cfg.retry_ms = -1;
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    tcli_open_cfg(&c, addr, &cfg);
    t0 = tt_now_ms();
    rc = kitchen_Kitchen_digest_tail(c.k, (const kitchen_Hash *)&seed, &data, &got);
    dt = tt_now_ms() - t0;
    ck_assert_msg(rc == QRPC_ETIMEDOUT || rc == QRPC_EUNKNOWN, "%s", qrpc_err_name(rc));
    ck_assert_msg(dt >= 1400 && dt < 15000, "returned after %lld ms", (long long)dt);
    ck_assert(tt_log_wait(&c.log, "the peer took no bytes for too long", 5000));
    memset(data.data, 0xEE, data.len);
    free(data.data);
    fprintf(stderr, "tcp_tail_unread: deadline 300 ms, returned after %lld ms: %s\n",
            (long long)dt, qrpc_err_name(rc));
    tcli_close(&c);
    ck_assert_int_eq(write(d.stop[1], "x", 1), 1);
    pthread_join(d.th, NULL);
    if (d.fd >= 0)
        close(d.fd);
    close(d.lfd);
    close(d.stop[0]);
    close(d.stop[1]);
}
END_TEST

/* add(a, b)'s arguments. */
static void add_args(uint8_t out[8], int32_t a, int32_t b)
{
    le32(out, (uint32_t)a);
    le32(out + 4, (uint32_t)b);
}

/* Reads the server's HELLO and checks it. */
static void raw_expect_hello(int fd)
{
    uint8_t h[40];

    ck_assert_msg(raw_recv(fd, h, sizeof h, 5000), "no HELLO from the server");
    ck_assert(h[0] == 'Q' && h[1] == 'R' && h[2] == 1);
    ck_assert_uint_eq(h[3], F_HELLO);
    ck_assert_uint_eq(h[4], 0);
    ck_assert_uint_eq(get_le32(h + 8), 0);
    ck_assert_uint_eq(get_le32(h + 12), 24);
    ck_assert_uint_ge(get_le32(h + 16 + 8), 1024);     /* max_frame */
    ck_assert_uint_ge(get_le32(h + 16 + 12), 1024);    /* max_message */
    ck_assert_uint_ge(get_le32(h + 16 + 16), 1);       /* max_inflight */
}

/* Reads one single-frame REPLY for stream and returns add's result. */
static int32_t raw_expect_add_reply(int fd, uint32_t stream)
{
    uint8_t h[16 + 8 + 4];

    ck_assert_msg(raw_recv(fd, h, sizeof h, 5000), "no reply on stream %u", stream);
    ck_assert(h[0] == 'Q' && h[1] == 'R' && h[2] == 1);
    ck_assert_uint_eq(h[3], F_REPLY);
    ck_assert_uint_eq(h[4], F_END);
    ck_assert_uint_eq(get_le32(h + 8), stream);
    ck_assert_uint_eq(get_le32(h + 12), 8 + 4);
    ck_assert_uint_eq(get_le32(h + 16), 4);            /* body length */
    ck_assert_int_eq((int32_t)get_le32(h + 20), 0);    /* status */
    return (int32_t)get_le32(h + 24);
}

/* A REQUEST for ping() (no arguments, not idempotent) from client, seq, acked. */
static size_t fr_ping(uint8_t *p, uint32_t stream, uint64_t client, uint64_t seq,
                      uint64_t acked)
{
    size_t n = fr_request(p, stream, F_END, 0, kitchen_Kitchen_ping_ID, NULL, 0);

    le64(p + 16 + 16, client);
    le64(p + 16 + 24, seq);
    le64(p + 16 + 32, acked);
    return n;
}

/* Reads one REPLY with an empty body for stream and returns its status. */
static int32_t raw_expect_empty_reply(int fd, uint32_t stream)
{
    uint8_t h[16 + 8];

    ck_assert_msg(raw_recv(fd, h, sizeof h, 5000), "no reply on stream %u", stream);
    ck_assert_uint_eq(h[3], F_REPLY);
    ck_assert_uint_eq(get_le32(h + 8), stream);
    ck_assert_uint_eq(get_le32(h + 12), 8);
    ck_assert_uint_eq(get_le32(h + 16), 0);            /* body length */
    return (int32_t)get_le32(h + 20);
}

/*
 * Sends ping(), by client with seq and acked, on stream -- a retransmission
 * addressed to server incarnation inc when retry -- and returns the status
 * of its (empty) reply.
 */
static int32_t raw_ping(int fd, uint32_t stream, uint64_t client, uint64_t seq, uint64_t acked,
                        bool retry, uint64_t inc)
{
    uint8_t buf[256];
    size_t n = fr_ping(buf, stream, client, seq, acked);

    if (retry) {
        le32(buf + 16 + 12, 0x100);     /* RETRY */
        le64(buf + 16 + 40, inc);
    }
    ck_assert(raw_send(fd, buf, n));
    return raw_expect_empty_reply(fd, stream);
}

static int32_t server_pings(qrpc_client *k)
{
    kitchen_i32_list values = { NULL, 0 };
    kitchen_Hash h;
    kitchen_Leaf *leaf = NULL;
    int32_t n;

    ck_assert_int_eq(kitchen_Kitchen_fill(k, KF_PINGS, &values, &h, &leaf), 0);
    ck_assert_uint_eq(values.len, 1);
    n = values.items[0];
    kitchen_i32_list_free(&values);
    return n;
}

/*
 * At most once, by hand: a request sent twice runs once (the second gets
 * the cached reply); once the client acknowledges it, a copy is stale and
 * runs no more; another client's numbers are its own; idempotent calls
 * are not remembered.
 */
START_TEST(tcp_raw_at_most_once)
{
    tsrv s;
    tcli c;
    uint8_t buf[256], args[8];
    size_t n;
    int fd;

    tsrv_start(&s, NULL);
    tcli_open(&c, s.addr);
    fd = raw_connect(s.port);
    raw_expect_hello(fd);
    n = fr_hello(buf);
    ck_assert(raw_send(fd, buf, n));

    ck_assert_int_eq(raw_ping(fd, 1, 0x77, 1, 0, false, 0), 0);
    ck_assert_int_eq(server_pings(c.k), 1);
    /* the same call again, on another stream: answered, not run */
    ck_assert_int_eq(raw_ping(fd, 2, 0x77, 1, 0, false, 0), 0);
    ck_assert_int_eq(server_pings(c.k), 1);
    /* the next call acknowledges the first */
    ck_assert_int_eq(raw_ping(fd, 3, 0x77, 2, 1, false, 0), 0);
    ck_assert_int_eq(server_pings(c.k), 2);
    /* so a late copy of the first is stale: never run */
    ck_assert_int_eq(raw_ping(fd, 4, 0x77, 1, 1, false, 0), QRPC_ESTALE);
    ck_assert_int_eq(server_pings(c.k), 2);
    /* another client's seq 1 is a call of its own */
    ck_assert_int_eq(raw_ping(fd, 5, 0x78, 1, 0, false, 0), 0);
    ck_assert_int_eq(server_pings(c.k), 3);
    /* an idempotent call sent twice is answered twice (it is not remembered) */
    add_args(args, -20, 62);
    n = fr_request(buf, 6, F_END, 8, kitchen_Kitchen_add_ID, args, 8);
    le64(buf + 16 + 24, 9);                             /* seq 9 of client 0x42 */
    ck_assert(raw_send(fd, buf, n));
    ck_assert_int_eq(raw_expect_add_reply(fd, 6), 42);
    n = fr_request(buf, 7, F_END, 8, kitchen_Kitchen_add_ID, args, 8);
    le64(buf + 16 + 24, 9);
    ck_assert(raw_send(fd, buf, n));
    ck_assert_int_eq(raw_expect_add_reply(fd, 7), 42);
    close(fd);
    tcli_close(&c);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/*
 * At most once through a network that copies and reorders: every request
 * and every reply is duplicated, some held back while later ones pass;
 * each call still runs exactly once, and the caller gets its one answer.
 */
/*
 * n_sync pings, then n_async asynchronous ones (results in ar[]), through
 * k: every one must succeed, the asynchronous ones within wait_ms.
 */
static void pings_all_ok(qrpc_client *k, int n_sync, int n_async, st_res *ar, unsigned wait_ms)
{
    tt_count done;
    int i, rc;

    tt_count_init(&done);
    for (i = 0; i < n_sync; i++) {
        rc = kitchen_Kitchen_ping(k);
        ck_assert_msg(rc == 0, "ping %d: %s", i, qrpc_err_name(rc));
    }
    for (i = 0; i < n_async; i++) {
        ar[i].status = -100;
        ar[i].calls = 0;
        ar[i].done = &done;
        ck_assert_int_eq(kitchen_Kitchen_ping_async(k, st_void_cb, &ar[i]), 0);
    }
    ck_assert_msg(tt_count_wait(&done, n_async, wait_ms), "only %ld of %d callbacks ran",
                  tt_count_get(&done), n_async);
    for (i = 0; i < n_async; i++) {
        ck_assert_int_eq(ar[i].calls, 1);
        ck_assert_msg(ar[i].status == 0, "async ping %d: %s", i, qrpc_err_name(ar[i].status));
    }
    tt_count_fini(&done);
}

START_TEST(tcp_at_most_once_dups)
{
    enum { N_SYNC = 150, N_ASYNC = 150 };
    static const char *const faults[] = { "--seed", "11", "--dup-req", "1000",
                                          "--dup-rep", "1000", "--delay-req", "200",
                                          "--delay-rep", "200", "--delay-ms", "5", NULL };
    tsrv s;
    tcli direct, c;
    fproxy p;
    st_res ar[N_ASYNC];
    char addr[64];
    const char *stats;

    tsrv_start(&s, NULL);
    tcli_open(&direct, s.addr);
    fp_start(&p, s.port, faults);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", p.port);
    tcli_open(&c, addr);
    pings_all_ok(c.k, N_SYNC, N_ASYNC, ar, 30000);
    /* every call ran once, though its request arrived twice */
    ck_assert_int_eq(server_pings(direct.k), N_SYNC + N_ASYNC);
    tcli_close(&c);
    stats = fp_stop(&p, 0);
    ck_assert_int_ge(stat_of(stats, "dup_req"), N_SYNC + N_ASYNC);
    ck_assert_int_ge(stat_of(stats, "dup_rep"), N_SYNC + N_ASYNC);
    ck_assert_int_gt(stat_of(stats, "delayed"), 0);
    fprintf(stderr, "tcp_at_most_once_dups: %d calls, each request and reply twice: %s\n",
            N_SYNC + N_ASYNC, stats);
    tcli_close(&direct);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/* ---- 9. retransmission ---------------------------------------------------------- */

/* A client whose attempts wait retry_ms for a reply before the request goes again. */
static void tcli_open_retry(tcli *c, const char *addr, int32_t retry_ms, uint32_t timeout_ms)
{
    qrpc_node_config cfg;

    qrpc_node_config_init(&cfg);
    cfg.retry_ms = retry_ms;
    cfg.timeout_ms = timeout_ms;
    tcli_open_cfg(c, addr, &cfg);
}

static uint64_t client_retransmissions(const tcli *c)
{
    qrpc_node_stats st;

    qrpc_node_get_stats(c->node, &st);
    return st.retransmissions;
}

/*
 * A server s, a direct client of it, faultproxy p in front of it with
 * faults, and c, a client through p whose attempts wait retry_ms.
 */
static void proxied_start(tsrv *s, tcli *direct, fproxy *p, const char *const *faults,
                          tcli *c, int32_t retry_ms)
{
    char addr[64];

    tsrv_start(s, NULL);
    tcli_open(direct, s->addr);
    fp_start(p, s->port, faults);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", p->port);
    tcli_open_retry(c, addr, retry_ms, 30000);
}

/* Closes what proxied_start() opened but the proxy (fp_stop() reads its stats). */
static void proxied_stop(tsrv *s, tcli *direct, tcli *c)
{
    tcli_close(c);
    tcli_close(direct);
    tsrv_stop_clean(s);
    tsrv_close(s);
}

/*
 * Lost requests and lost replies: every call still succeeds, by sending
 * its request again, and every one ran exactly once (the server's reply
 * cache answered the copies of those whose reply was lost).
 */
START_TEST(tcp_retransmit_lost)
{
    enum { N_SYNC = 200, N_ASYNC = 100, N_IDEM = 100 };
    static const char *const faults[] = { "--seed", "21", "--drop-req", "100",
                                          "--drop-rep", "100", NULL };
    tsrv s;
    tcli direct, c;
    fproxy p;
    st_res ar[N_ASYNC];
    const char *stats;
    int32_t r;
    int i, rc;
    long dropped;

    proxied_start(&s, &direct, &p, faults, &c, 20);
    pings_all_ok(c.k, N_SYNC, N_ASYNC, ar, 60000);
    for (i = 0; i < N_IDEM; i++) {          /* idempotent: no reply cache, same recovery */
        rc = kitchen_Kitchen_add(c.k, -i, 42 + i, &r);
        ck_assert_msg(rc == 0, "add %d: %s", i, qrpc_err_name(rc));
        ck_assert_int_eq(r, 42);
    }
    /* exactly once each, though some requests arrived twice */
    ck_assert_int_eq(server_pings(direct.k), N_SYNC + N_ASYNC);
    stats = fp_stop(&p, 0);
    dropped = stat_of(stats, "dropped_req") + stat_of(stats, "dropped_rep");
    ck_assert_int_gt(stat_of(stats, "dropped_req"), 10);
    ck_assert_int_gt(stat_of(stats, "dropped_rep"), 10);
    /* every lost message cost its call one more attempt at least */
    ck_assert_uint_ge(client_retransmissions(&c), (uint64_t)dropped);
    fprintf(stderr, "tcp_retransmit_lost: %d calls, %" PRIu64 " retransmissions: %s\n",
            N_SYNC + N_ASYNC + N_IDEM, client_retransmissions(&c), stats);
    tcli_close(&c);
    tcli_close(&direct);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/*
 * Connections cut after random frames, some in the middle of one: the
 * client reconnects and sends again what may have been lost.  A call
 * ends with success (it ran once) or, rarely, QRPC_EUNKNOWN (it may have
 * run: a cut before the server's HELLO came leaves the client unable to
 * name the server a copy went to); the server ran at least every
 * successful call and at most one more per unknown.
 */
START_TEST(tcp_retransmit_cuts)
{
    enum { N = 400 };
    static const char *const faults[] = { "--seed", "31", "--cut", "15", "--cut-mid", NULL };
    tsrv s;
    tcli direct, c;
    fproxy p;
    const char *stats;
    int i, rc, ok = 0, unknown = 0;
    int32_t pings;

    proxied_start(&s, &direct, &p, faults, &c, 50);
    for (i = 0; i < N; i++) {
        rc = kitchen_Kitchen_ping(c.k);
        if (rc == 0)
            ok++;
        else if (rc == QRPC_EUNKNOWN || rc == QRPC_EUNAVAILABLE)
            unknown += rc == QRPC_EUNKNOWN;
        else
            ck_abort_msg("ping %d: %s", i, qrpc_err_name(rc));
    }
    pings = server_pings(direct.k);
    stats = fp_stop(&p, 0);
    ck_assert_int_gt(stat_of(stats, "cuts"), 5);
    ck_assert_int_ge(ok, N * 9 / 10);
    ck_assert_int_ge(pings, ok);
    ck_assert_int_le(pings, ok + unknown);
    ck_assert_uint_gt(client_retransmissions(&c), 0);
    fprintf(stderr, "tcp_retransmit_cuts: %d calls: %d ok, %d unknown, %d ran; "
            "%" PRIu64 " retransmissions: %s\n", N, ok, unknown, (int)pings,
            client_retransmissions(&c), stats);
    tcli_close(&c);
    tcli_close(&direct);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/*
 * Requests of several frames through connections cut after random
 * frames, some in the middle of one: every call succeeds, with the right
 * digest, within its deadline.  After each cut the client dials again and
 * resends at once, before the new connection's HELLO; were the request
 * cut into 1 KiB frames then (the size every peer accepts), a 200 KiB one
 * would be 200 frames, each a chance for the proxy to cut, and calls would
 * go on failing until their deadline.  They wait for the HELLO instead and
 * go as 4 frames of 64 KiB.
 */
START_TEST(tcp_retransmit_cuts_large)
{
    enum { N = 100, SZ = 200 << 10 };
    static const char *const faults[] = { "--seed", "37", "--cut", "15", "--cut-mid", NULL };
    tsrv s;
    tcli direct, c;
    fproxy p;
    const char *stats;
    uint8_t *big = malloc(SZ);
    big_call b;
    int i, rc;

    ck_assert_ptr_nonnull(big);
    big_call_init(&b, big, SZ, 3);
    proxied_start(&s, &direct, &p, faults, &c, 50);
    for (i = 0; i < N; i++) {
        rc = big_call_sync(c.k, &b, "a digest through cuts");
        ck_assert_msg(rc == 0, "digest %d: %s", i, qrpc_err_name(rc));
    }
    stats = fp_stop(&p, 0);
    ck_assert_int_gt(stat_of(stats, "cuts"), 5);
    ck_assert_uint_gt(client_retransmissions(&c), 0);
    fprintf(stderr, "tcp_retransmit_cuts_large: %d calls of %d KiB, %" PRIu64
            " retransmissions: %s\n", N, SZ >> 10, client_retransmissions(&c), stats);
    proxied_stop(&s, &direct, &c);
    free(big);
}
END_TEST

/*
 * The first call on a fresh connection, 200 KiB, is sent before the
 * server's HELLO can have come: it waits for it, and goes in frames of
 * the server's size (64 KiB), not in 1 KiB ones.  The proxy counts every
 * frame both ways: the two HELLOs, the request's 4 frames and the reply.
 */
START_TEST(tcp_large_waits_hello)
{
    enum { SZ = 200 << 10 };
    static const char *const faults[] = { NULL };
    tsrv s;
    tcli direct, c;
    fproxy p;
    const char *stats;
    uint8_t *big = malloc(SZ);
    big_call b;
    int rc;

    ck_assert_ptr_nonnull(big);
    big_call_init(&b, big, SZ, 5);
    proxied_start(&s, &direct, &p, faults, &c, 1000);
    rc = big_call_sync(c.k, &b, "200 KiB as the first call");
    ck_assert_msg(rc == 0, "200 KiB as the first call: %s", qrpc_err_name(rc));
    stats = fp_stop(&p, 0);
    ck_assert_int_eq(stat_of(stats, "connections"), 1);
    ck_assert_int_eq(stat_of(stats, "frames"), 2 + 4 + 1);
    proxied_stop(&s, &direct, &c);
    free(big);
}
END_TEST

/*
 * A copy turned away busy (the server takes one request at a time and
 * runs the first) is sent again after a backoff, not given up on: the
 * call gets its one result once the first run ends.
 */
START_TEST(tcp_retransmit_busy)
{
    tsrv_opts o = { .max_inflight = 1 };
    tsrv s;
    tcli c;
    kitchen_i32_list values = { NULL, 0 };
    kitchen_Hash h;
    kitchen_Leaf *leaf = NULL;
    int rc;

    tsrv_start(&s, &o);
    tcli_open_retry(&c, s.addr, 20, 20000);
    rc = kitchen_Kitchen_fill(c.k, KF_SLEEP + 300, &values, &h, &leaf);
    ck_assert_msg(rc == 0, "fill: %s", qrpc_err_name(rc));
    kitchen_i32_list_free(&values);
    kitchen_Leaf_opt_free(&leaf);
    ck_assert_uint_ge(client_retransmissions(&c), 2);
    tsrv_events(&s, "SLEPT", 1, 5000);
    ck_assert_msg(tsrv_event(&s, "SLEEP", 1000, NULL, 0), "the handler did not run");
    ck_assert_msg(!tsrv_event(&s, "SLEEP", 100, NULL, 0), "the handler ran twice");
    tcli_close(&c);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/*
 * A call in flight when its server dies: the client sends it again to
 * the server that comes back on the same port, which refuses it
 * (QRPC_EUNKNOWN: the first copy may have run in the process that died)
 * and runs nothing.  Without a new server the call goes on trying until
 * its deadline, then ends QRPC_EUNKNOWN too.
 */
START_TEST(tcp_retransmit_restart)
{
    tsrv_opts o = { 0 };
    tsrv s;
    tcli c;
    tt_count done;
    sync_call sc;
    pthread_t th;
    char addr[128];
    int64_t t0;
    int32_t r;

    tsrv_start(&s, NULL);
    o.port = s.port;
    snprintf(addr, sizeof addr, "%s", s.addr);
    tcli_open_retry(&c, addr, 100, 20000);
    tt_count_init(&done);
    check_serving(c.k, "first server");

    crash_in_call(&s, &sc, c.k, &done, &th);
    /* still trying: nothing to talk to */
    ck_assert_int_eq(tt_count_get(&done), 0);
    tsrv_start(&s, &o);
    ck_assert_msg(tt_count_wait(&done, 1, 15000), "the call did not end after the restart");
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_msg(sc.status == QRPC_EUNKNOWN, "in flight at the crash: %s",
                  qrpc_err_name(sc.status));
    ck_assert_uint_gt(client_retransmissions(&c), 0);
    /* the new server ran nothing of it (it would have said BLOCK first) */
    ck_assert_int_eq(kitchen_Kitchen_add(c.k, -1, 2, &r), 0);
    ck_assert_int_eq(r, 1);
    ck_assert_int_eq(server_pings(c.k), 0);
    ck_assert_msg(!tsrv_event(&s, "BLOCK", 100, NULL, 0), "the new server ran the old call");

    /* no server at all: retransmissions until the deadline, then QRPC_EUNKNOWN */
    qrpc_client_set_timeout(c.k, 1500);
    t0 = tt_now_ms();
    crash_in_call(&s, &sc, c.k, &done, &th);
    ck_assert_msg(tt_count_wait(&done, 2, 15000), "the call did not end at its deadline");
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_msg(sc.status == QRPC_EUNKNOWN, "server gone: %s", qrpc_err_name(sc.status));
    ck_assert_msg(sc.done_ms - t0 >= 1000, "gave up after %" PRId64 " ms, before its deadline",
                  sc.done_ms - t0);
    tcli_close(&c);
    tt_count_fini(&done);
}
END_TEST

/* ---- 10. the reply log ------------------------------------------------------------ */

/* Reads the server's HELLO (checked as raw_expect_hello does) and returns its incarnation. */
static uint64_t raw_hello_incarnation(int fd)
{
    uint8_t h[40];
    uint64_t inc = 0;
    int i;

    ck_assert_msg(raw_recv(fd, h, sizeof h, 5000), "no HELLO from the server");
    ck_assert(h[0] == 'Q' && h[1] == 'R' && h[3] == F_HELLO);
    for (i = 7; i >= 0; i--)
        inc = inc << 8 | h[16 + i];
    return inc;
}

/*
 * With dedup_log, a server killed and started again answers the
 * retransmissions meant for its previous incarnation from the log (and
 * runs nothing), refuses those the log has no record of, and survives a
 * record cut short at the end of the file.
 */
START_TEST(tcp_reply_log)
{
    tsrv_opts o = { 0 };
    tsrv s;
    tcli direct;
    char path[300], *dir = tu_mkdtemp(), *log;
    uint8_t hello[64];
    uint64_t inc;
    int fd, lfd;

    snprintf(path, sizeof path, "%s/replies.qlog", dir);
    o.dedup_log = path;
    tsrv_start(&s, &o);
    o.port = s.port;
    fd = raw_connect(s.port);
    inc = raw_hello_incarnation(fd);
    ck_assert(raw_send(fd, hello, fr_hello(hello)));
    ck_assert_int_eq(raw_ping(fd, 1, 0x77, 5, 0, false, 0), 0);
    ck_assert_int_eq(raw_ping(fd, 3, 0x77, 6, 0, false, 0), 0);
    close(fd);
    tsrv_stop(&s, SIGKILL, 10000);
    tsrv_close(&s);
    /*
     * Both records once more (the cache cannot take a call twice: they
     * are skipped, and said so), then a crash in the middle of an append:
     * a record cut short.
     */
    {
        size_t len = 0;
        char *old = tu_read_file(path, &len);

        ck_assert(old != NULL && len > 8);
        lfd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
        ck_assert_int_ge(lfd, 0);
        ck_assert_int_eq(write(lfd, old + 8, len - 8), (ssize_t)(len - 8));
        ck_assert_int_eq(write(lfd, "\x30\0\0\0\x11\x22\x33\x44torn", 12), 12);
        close(lfd);
        free(old);
    }

    tsrv_start(&s, &o);
    fd = raw_connect(s.port);
    ck_assert(raw_hello_incarnation(fd) != inc);
    ck_assert(raw_send(fd, hello, fr_hello(hello)));
    ck_assert_int_eq(raw_ping(fd, 1, 0x77, 5, 0, true, inc), 0);
    ck_assert_int_eq(raw_ping(fd, 3, 0x77, 6, 0, true, inc), 0);
    ck_assert_int_eq(raw_ping(fd, 5, 0x77, 7, 0, true, inc), QRPC_EUNKNOWN);
    close(fd);
    tcli_open(&direct, s.addr);
    ck_assert_int_eq(server_pings(direct.k), 0);       /* answered, never run again */
    tcli_close(&direct);
    tsrv_stop_clean(&s);
    log = tu_read_file(s.log_path, NULL);
    ck_assert_msg(log != NULL && strstr(log, "cut short or damaged") != NULL,
                  "the server did not report the torn record: %s", log ? log : "(no log)");
    ck_assert_msg(strstr(log, "2 records not restored") != NULL,
                  "the server did not report the repeated records: %s", log);
    free(log);
    tsrv_close(&s);

    /* a file that is not a reply log is refused and left alone */
    {
        qrpc_node_config cfg;
        qrpc_node *n = NULL;
        tt_log tl;
        char *after;

        lfd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        ck_assert_int_eq(write(lfd, "precious data\n", 14), 14);
        close(lfd);
        tt_log_init(&tl);
        qrpc_node_config_init(&cfg);
        cfg.listen = "127.0.0.1:0";
        cfg.dedup_log = path;
        cfg.log = tt_log_fn;
        cfg.log_arg = &tl;
        ck_assert_int_eq(qrpc_node_create(&cfg, &n), QRPC_EIO);
        ck_assert(n == NULL);
        ck_assert(tt_log_wait(&tl, "not a qrpc reply log", 1000));
        after = tu_read_file(path, NULL);
        ck_assert_str_eq(after, "precious data\n");
        free(after);
        cfg.dedup_log = "/dev/null";    /* opened, refused before anything is written */
        ck_assert_int_eq(qrpc_node_create(&cfg, &n), QRPC_EIO);
        ck_assert(tt_log_wait(&tl, "not a regular file", 1000));
        snprintf(path, sizeof path, "%s/no/such/dir/replies.qlog", dir);
        cfg.dedup_log = path;
        ck_assert_int_eq(qrpc_node_create(&cfg, &n), QRPC_EIO);
        ck_assert(tt_log_wait(&tl, "cannot open", 1000));
        cfg.listen = NULL;              /* a log needs a listening node */
        ck_assert_int_eq(qrpc_node_create(&cfg, &n), QRPC_EINVAL);
        tt_log_fini(&tl);
    }
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* A server with reply log path runs n pings of one client, and stops cleanly. */
static void logged_pings(tsrv *s, char *path, int n)
{
    tsrv_opts o = { 0 };
    tcli c;
    int i;

    o.dedup_log = path;
    tsrv_start(s, &o);
    tcli_open(&c, s->addr);
    for (i = 0; i < n; i++)
        ck_assert_int_eq(kitchen_Kitchen_ping(c.k), 0);
    ck_assert_int_eq(server_pings(c.k), n);
    tcli_close(&c);
    tsrv_stop_clean(s);
}

/* Acknowledged calls leave the log: 20000 calls keep it far below 20000 records. */
START_TEST(tcp_reply_log_bounded)
{
    enum { N = 20000, REC = 36 };       /* a ping's record: header and payload */
    tsrv s;
    struct stat st;
    char path[300], *dir = tu_mkdtemp();

    snprintf(path, sizeof path, "%s/replies.qlog", dir);
    logged_pings(&s, path, N);
    tsrv_close(&s);
    ck_assert_int_eq(stat(path, &st), 0);
    /* compaction at twice the live records, 4096 at least: never near N */
    ck_assert_msg(st.st_size < (off_t)(N / 2) * REC, "the log holds %lld bytes after %d calls",
                  (long long)st.st_size, N);
    fprintf(stderr, "tcp_reply_log_bounded: %d calls, log %lld bytes\n", N,
            (long long)st.st_size);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/*
 * A compaction that cannot be done (PATH.tmp is a directory) is said once
 * in the log, and the server goes on, its log growing.
 */
START_TEST(tcp_reply_log_compact_fails)
{
    enum { N = 6000, REC = 36 };
    tsrv s;
    struct stat st;
    char path[300], tmp[310], *dir = tu_mkdtemp(), *log, *at;
    int said = 0;

    snprintf(path, sizeof path, "%s/replies.qlog", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ck_assert_int_eq(mkdir(tmp, 0700), 0);
    logged_pings(&s, path, N);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_msg(st.st_size >= (off_t)N * REC, "compacted after all: %lld bytes",
                  (long long)st.st_size);
    log = tu_read_file(s.log_path, NULL);
    for (at = log; at != NULL && (at = strstr(at, "cannot compact")) != NULL; at++)
        said++;
    ck_assert_msg(said == 1, "'cannot compact' said %d times: %s", said, log ? log : "");
    free(log);
    tsrv_close(&s);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(tcp_raw_valid)
{
    tsrv s;
    uint8_t buf[512], args[8];
    size_t n;
    int fd;

    tsrv_start(&s, NULL);
    fd = raw_connect(s.port);
    raw_expect_hello(fd);

    /* one frame: HELLO, then REQUEST with END */
    n = fr_hello(buf);
    add_args(args, -40, 82);
    n += fr_request(buf + n, 1, F_END, 8, kitchen_Kitchen_add_ID, args, 8);
    ck_assert(raw_send(fd, buf, n));
    ck_assert_int_eq(raw_expect_add_reply(fd, 1), 42);

    /* the body over three frames: REQUEST with 3 bytes, DATA 3, DATA 2 + END */
    add_args(args, -1, 1001);
    n = fr_request(buf, 7, 0, 8, kitchen_Kitchen_add_ID, args, 3);
    n += fr_hdr(buf + n, F_DATA, 0, 7, 3);
    memcpy(buf + n, args + 3, 3);
    n += 3;
    ck_assert(raw_send(fd, buf, n));
    n = fr_hdr(buf, F_DATA, F_END, 7, 2);
    memcpy(buf + n, args + 6, 2);
    n += 2;
    ck_assert(raw_send(fd, buf, n));
    ck_assert_int_eq(raw_expect_add_reply(fd, 7), 1000);

    /*
     * PING without a payload: PONG on the same stream (qrpc-protocol(7)).
     * (An empty payload once made the server memcpy from NULL: UBSan.)
     */
    n = fr_hdr(buf, F_PING, 0, 9, 0);
    ck_assert(raw_send(fd, buf, n));
    ck_assert(raw_recv(fd, buf, 16, 5000));
    ck_assert_uint_eq(buf[3], F_PONG);
    ck_assert_uint_eq(get_le32(buf + 8), 9);
    ck_assert_uint_eq(get_le32(buf + 12), 0);
    /* and the connection still serves */
    add_args(args, 2, 3);
    n = fr_request(buf, 11, F_END, 8, kitchen_Kitchen_add_ID, args, 8);
    ck_assert(raw_send(fd, buf, n));
    ck_assert_int_eq(raw_expect_add_reply(fd, 11), 5);

    close(fd);
    ck_assert(tsrv_alive(&s));
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/* A server for hostile peers: a stalled frame costs it 300 ms at most. */
static const tsrv_opts hostile_opts = { .stall_ms = 300 };

/*
 * After a hostile connection: the server closed it (unless we_close), is
 * still running, still serves a normal client, and logged a line about
 * that connection.
 */
static void hostile_after(tsrv *s, tcli *c, int fd, bool we_close, const char *what)
{
    int lport = raw_local_port(fd);
    char needle[256];
    int64_t t;

    if (!we_close) {
        t = raw_wait_closed(fd, 5000);
        ck_assert_msg(t >= 0, "%s: the server did not close the connection within 5 s", what);
    }
    close(fd);
    ck_assert_msg(tsrv_alive(s), "%s: the server died (log %s)", what, s->log_path);
    check_serving(c->k, what);
    snprintf(needle, sizeof needle, "connection from 127.0.0.1:%d", lport);
    if (!tsrv_log_wait(s, needle, 2000)) {
        char *log = tsrv_log(s);

        ck_abort_msg("%s: no log line about the connection ('%s'); the log:\n%s", what,
                     needle, log);
    }
}

/* One hostile case: what to send after connecting, and whether we close. */
typedef struct hostile_case {
    const char *name;
    bool read_hello_first;      /* so that our close is a FIN, not a reset */
    bool we_close;              /* the peer gives up; the server need not close */
    size_t (*build)(uint8_t *p);
} hostile_case;

static size_t h_garbage(uint8_t *p)
{
    uint64_t seed = 0x5eed;
    size_t i;

    for (i = 0; i < 256; i++)
        p[i] = (uint8_t)xorshift(&seed);
    p[0] = 'G';                 /* never the magic */
    return 256;
}

static size_t h_bad_magic(uint8_t *p)
{
    size_t n = fr_hello(p);

    p[0] = 'X';
    return n;
}

static size_t h_bad_version(uint8_t *p)
{
    size_t n = fr_hello(p);

    p[2] = 2;
    return n;
}

static size_t h_huge_frame(uint8_t *p)
{
    size_t n = fr_hello(p);

    n += fr_hdr(p + n, F_REQUEST, F_END, 1, 0xFFFFFFFFu);      /* a 4 GiB payload */
    memset(p + n, 0, 32);
    return n + 32;
}

static size_t h_huge_first_frame(uint8_t *p)
{
    size_t n = fr_hdr(p, F_HELLO, 0, 0, 0xFFFFFFFFu);

    memset(p + n, 0, 32);
    return n + 32;
}

static size_t h_huge_body(uint8_t *p)
{
    static const uint8_t few[6] = { 1, 2, 3, 4, 5, 6 };
    size_t n = fr_hello(p);

    /* the header claims a 1 GiB body (over max_message), then a few bytes */
    return n + fr_request(p + n, 1, 0, 1u << 30, kitchen_Kitchen_echo_ID, few, sizeof few);
}

static size_t h_before_hello(uint8_t *p)
{
    uint8_t args[8];

    add_args(args, 1, 2);
    return fr_request(p, 1, F_END, 8, kitchen_Kitchen_add_ID, args, 8);
}

static size_t h_second_hello(uint8_t *p)
{
    size_t n = fr_hello(p);

    return n + fr_hello(p + n);
}

static size_t h_reply_to_server(uint8_t *p)
{
    size_t n = fr_hello(p);

    n += fr_hdr(p + n, F_REPLY, F_END, 1, 8);
    le32(p + n, 0);
    le32(p + n + 4, 0);
    return n + 8;
}

static size_t h_data_unknown_stream(uint8_t *p)
{
    size_t n = fr_hello(p);

    n += fr_hdr(p + n, F_DATA, F_END, 77, 4);
    memset(p + n, 0, 4);
    return n + 4;
}

static size_t h_body_overrun(uint8_t *p)
{
    uint8_t args[12] = { 0 };
    size_t n = fr_hello(p);

    /* declares 8 body bytes, carries 12 */
    return n + fr_request(p + n, 1, F_END, 8, kitchen_Kitchen_add_ID, args, 12);
}

static size_t h_short_name(uint8_t *p)
{
    uint8_t args[8] = { 0 };
    size_t n = fr_hello(p), r = fr_request(p + n, 1, F_END, 8, kitchen_Kitchen_add_ID, args, 8);

    le16(p + n + 16 + 52, 0);   /* a service name of length 0 */
    return n + r;
}

static size_t h_bad_flags(uint8_t *p)
{
    size_t n = fr_hello(p);

    p[4] = 0x80;                /* flags on a HELLO */
    return n;
}

static const hostile_case hostile_cases[] = {
    { "garbage bytes", false, false, h_garbage },
    { "bad magic", false, false, h_bad_magic },
    { "bad version", false, false, h_bad_version },
    { "flags on HELLO", false, false, h_bad_flags },
    { "frame header claiming 4 GiB", false, false, h_huge_frame },
    { "first frame claiming 4 GiB", false, false, h_huge_first_frame },
    { "request claiming a 1 GiB body", true, false, h_huge_body },
    { "request before HELLO", false, false, h_before_hello },
    { "second HELLO", false, false, h_second_hello },
    { "REPLY sent to a server", false, false, h_reply_to_server },
    { "DATA for an unknown stream", false, false, h_data_unknown_stream },
    { "more body than declared", false, false, h_body_overrun },
    { "empty service name", false, false, h_short_name },
};
#define N_HOSTILE ((int)(sizeof hostile_cases / sizeof hostile_cases[0]))

/* Each case against its own server (a loop test: one Check test per case). */
START_TEST(tcp_hostile)
{
    const hostile_case *hc = &hostile_cases[_i];
    uint8_t buf[1024];
    tsrv s;
    tcli c;
    size_t n;
    int fd;

    tsrv_start(&s, &hostile_opts);
    tcli_open(&c, s.addr);
    check_serving(c.k, "before");
    fd = raw_connect(s.port);
    if (hc->read_hello_first)
        raw_expect_hello(fd);
    n = hc->build(buf);
    (void)raw_send(fd, buf, n);         /* the server may close before it all went */
    hostile_after(&s, &c, fd, hc->we_close, hc->name);
    tcli_close(&c);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/* Every case at once against one server while a client keeps calling. */
typedef struct busy_caller {
    qrpc_client *k;
    atomic_bool stop;
    atomic_long ok, bad;
} busy_caller;

static void *busy_caller_thread(void *arg)
{
    busy_caller *b = arg;
    int32_t i = 0;

    while (!atomic_load(&b->stop)) {
        int32_t r = 0;
        int rc = kitchen_Kitchen_add(b->k, -i, 1, &r);

        if (rc == 0 && r == 1 - i)
            atomic_fetch_add(&b->ok, 1);
        else
            atomic_fetch_add(&b->bad, 1);
        i = (i + 1) % 100000;
    }
    return NULL;
}

START_TEST(tcp_hostile_all_at_once)
{
    int fds[N_HOSTILE * 4], ports[N_HOSTILE * 4];
    uint8_t buf[1024];
    busy_caller b;
    pthread_t th;
    tsrv s;
    tcli c;
    long before;
    int i;

    tsrv_start(&s, &hostile_opts);
    tcli_open(&c, s.addr);
    check_serving(c.k, "before");
    memset(&b, 0, sizeof b);
    b.k = c.k;
    ck_assert_int_eq(pthread_create(&th, NULL, busy_caller_thread, &b), 0);
    for (i = 0; i < N_HOSTILE * 4; i++) {
        const hostile_case *hc = &hostile_cases[i % N_HOSTILE];
        size_t n;

        fds[i] = raw_connect(s.port);
        ports[i] = raw_local_port(fds[i]);
        if (hc->read_hello_first)
            raw_expect_hello(fds[i]);
        n = hc->build(buf);
        (void)raw_send(fds[i], buf, n);
    }
    for (i = 0; i < N_HOSTILE * 4; i++) {
        char needle[256];

        ck_assert_msg(raw_wait_closed(fds[i], 5000) >= 0, "%s (#%d): not closed",
                      hostile_cases[i % N_HOSTILE].name, i);
        close(fds[i]);
        snprintf(needle, sizeof needle, "connection from 127.0.0.1:%d", ports[i]);
        ck_assert_msg(tsrv_log_wait(&s, needle, 3000), "%s (#%d): no log line",
                      hostile_cases[i % N_HOSTILE].name, i);
    }
    before = atomic_load(&b.ok);
    for (i = 0; atomic_load(&b.ok) < before + 50 && i < 10000; i++)
        tt_nap_ms(1);
    atomic_store(&b.stop, true);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_eq(atomic_load(&b.bad), 0);
    ck_assert_int_ge(atomic_load(&b.ok), before + 50);
    ck_assert(tsrv_alive(&s));
    tcli_close(&c);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/*
 * A frame cut off in the middle of its header, then the peer closes.  The
 * server stays up, and says so in its log: a truncated frame is a protocol
 * problem, not an ordinary hang-up.
 */
START_TEST(tcp_hostile_truncated)
{
    uint8_t buf[128];
    tsrv s;
    tcli c;
    size_t n;
    int fd;

    tsrv_start(&s, &hostile_opts);
    tcli_open(&c, s.addr);
    fd = raw_connect(s.port);
    raw_expect_hello(fd);
    n = fr_hello(buf);
    fr_hdr(buf + n, F_REQUEST, F_END, 1, 100);
    ck_assert(raw_send(fd, buf, n + 7));       /* 7 of the 16 header bytes */
    /* the server waits for the rest (within its stall limit) ... */
    shutdown(fd, SHUT_WR);
    /* a server connection that ends mid-frame is logged */
    hostile_after(&s, &c, fd, false, "frame truncated mid-header, then EOF");
    tcli_close(&c);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/* VmRSS of a process, in KiB (0 if unknown). */
static long proc_rss_kib(pid_t pid)
{
    char path[64], *t, *p;
    long kib = 0;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    t = tu_read_file(path, NULL);
    if (t == NULL)
        return 0;
    p = strstr(t, "VmRSS:");
    if (p != NULL)
        kib = strtol(p + 6, NULL, 10);
    free(t);
    return kib;
}

/*
 * A server that accepts 1.5 GiB messages: a peer declares a 1 GiB body and
 * sends a few bytes.  That costs the server a few bytes, not 1 GiB, and
 * when the peer then closes, everything is freed (ASan's leak check at the
 * server's exit) and the truncated message is logged.
 */
START_TEST(tcp_hostile_big_declared)
{
    tsrv_opts o = { .stall_ms = 300, .max_message = 1536u * MiB };
    static const uint8_t few[6] = { 1, 2, 3, 4, 5, 6 };
    uint8_t buf[256];
    tsrv s;
    tcli c;
    size_t n;
    long rss0, rss1;
    int fd, i;

    tsrv_start(&s, &o);
    tcli_open(&c, s.addr);
    check_serving(c.k, "before");
    rss0 = proc_rss_kib(s.pid);
    fd = raw_connect(s.port);
    raw_expect_hello(fd);
    n = fr_hello(buf);
    n += fr_request(buf + n, 1, 0, 1u << 30, kitchen_Kitchen_echo_ID, few, sizeof few);
    ck_assert(raw_send(fd, buf, n));
    /* the connection is fine so far: the frame was complete */
    for (i = 0; i < 10; i++)
        check_serving(c.k, "with a 1 GiB message announced");
    rss1 = proc_rss_kib(s.pid);
    ck_assert_msg(rss1 - rss0 < 64 * 1024, "the server grew by %ld KiB", rss1 - rss0);
    shutdown(fd, SHUT_WR);
    /* a server connection that ends mid-message is logged */
    hostile_after(&s, &c, fd, false, "1 GiB body announced, then EOF");
    tcli_close(&c);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/* Half a frame, then silence: dropped after stall_timeout_ms. */
START_TEST(tcp_hostile_stalled)
{
    uint8_t buf[256], args[8];
    tsrv s;
    tcli c;
    size_t n;
    int64_t t;
    int fd;

    tsrv_start(&s, &hostile_opts);
    tcli_open(&c, s.addr);
    check_serving(c.k, "before");
    fd = raw_connect(s.port);
    raw_expect_hello(fd);
    n = fr_hello(buf);
    add_args(args, 1, 2);
    n += fr_request(buf + n, 1, F_END, 8, kitchen_Kitchen_add_ID, args, 8);
    ck_assert(raw_send(fd, buf, n - 20));
    t = raw_wait_closed(fd, 3000);
    /* a stalled reader needs a tick scheduled for it */
    ck_assert_msg(t >= 0, "a peer stalled mid-frame was not dropped within 3 s "
                  "(stall_timeout_ms 300)");
    ck_assert_msg(t >= 250, "dropped after %" PRId64 " ms, before the stall limit", t);
    ck_assert_msg(t < 2000, "dropped only after %" PRId64 " ms (stall_timeout_ms 300)", t);
    hostile_after(&s, &c, fd, true, "a peer stalled mid-frame");
    tcli_close(&c);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/*
 * A peer that sends a valid frame one byte per 100 ms never leaves the
 * frame untouched for 300 ms, but leaves it unfinished far longer: it is
 * dropped all the same (stall_timeout_ms bounds the time a frame takes).
 */
START_TEST(tcp_hostile_slow_peer)
{
    uint8_t buf[256], args[8];
    tsrv s;
    tcli c;
    size_t n, i;
    int64_t t0, closed_after = -1;
    int fd;

    tsrv_start(&s, &hostile_opts);
    tcli_open(&c, s.addr);
    fd = raw_connect(s.port);
    raw_expect_hello(fd);
    n = fr_hello(buf);
    ck_assert(raw_send(fd, buf, n));
    add_args(args, 1, 2);
    n = fr_request(buf, 1, F_END, 8, kitchen_Kitchen_add_ID, args, 8);
    t0 = tt_now_ms();
    for (i = 0; i < n && closed_after < 0 && tt_now_ms() - t0 < 3000; i++) {
        struct pollfd pf = { fd, POLLIN, 0 };

        if (!raw_send(fd, buf + i, 1)) {
            closed_after = tt_now_ms() - t0;
            break;
        }
        /* the pace: 100 ms, or less if the server closes meanwhile */
        if (poll(&pf, 1, 100) > 0) {
            uint8_t b;
            ssize_t r = recv(fd, &b, 1, MSG_PEEK);

            if (r == 0 || (r < 0 && errno == ECONNRESET))
                closed_after = tt_now_ms() - t0;
            else
                ck_abort_msg("the server answered a frame it should have dropped");
        }
    }
    /* the stall clock must not restart on every byte received */
    ck_assert_msg(closed_after >= 0, "a peer trickling one byte per 100 ms was not dropped "
                  "(%zu of %zu bytes of one frame over %" PRId64 " ms; stall_timeout_ms 300)",
                  i, n, tt_now_ms() - t0);
    ck_assert_msg(closed_after < 2000, "dropped only after %" PRId64 " ms", closed_after);
    hostile_after(&s, &c, fd, true, "a peer trickling one byte per 100 ms");
    tcli_close(&c);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/*
 * Clients that vanish while the server is busy answering them: each sends
 * 300 requests at once and closes without reading a reply.  The server
 * must shrug it off like any closed connection.  It does not ignore
 * SIGPIPE (a program using the library need not know about it).
 */
START_TEST(tcp_client_vanishes)
{
    tsrv_opts o = { .workers = 4 };
    uint8_t *buf, args[8];
    size_t n, cap = 40 + 300 * 128;
    tsrv s;
    tcli c;
    int round, k, fd;

    tsrv_start(&s, &o);
    tcli_open(&c, s.addr);
    buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    for (round = 0; round < 60; round++) {
        /* a writer racing conn_fail must not kill the server (SIGPIPE) */
        ck_assert_msg(tsrv_alive(&s), "before round %d: the server died (%s %d)", round,
                      WIFSIGNALED(s.status) ? "signal" : "exit status",
                      WIFSIGNALED(s.status) ? WTERMSIG(s.status) : WEXITSTATUS(s.status));
        fd = raw_connect(s.port);
        n = fr_hello(buf);
        for (k = 0; k < 300; k++) {
            add_args(args, -k, round);
            n += fr_request(buf + n, (uint32_t)(2 * k + 1), F_END, 8, kitchen_Kitchen_add_ID,
                            args, 8);
        }
        (void)raw_send(fd, buf, n);
        /* the HELLO and the start of the replies: the workers are answering */
        if (!raw_recv(fd, buf, 40 + 16, 5000))
            ck_assert_msg(tsrv_alive(&s), "round %d: the server died (%s %d)", round,
                          WIFSIGNALED(s.status) ? "signal" : "exit status",
                          WIFSIGNALED(s.status) ? WTERMSIG(s.status) : WEXITSTATUS(s.status));
        if (round % 2 == 0)
            shutdown(fd, SHUT_WR);      /* an EOF while the replies are being written */
        close(fd);                      /* with replies unread: a reset */
    }
    free(buf);
    check_serving(c.k, "after the vanishing clients");
    ck_assert_msg(tsrv_alive(&s), "at the end: the server died (%s %d)",
                  WIFSIGNALED(s.status) ? "signal" : "exit status",
                  WIFSIGNALED(s.status) ? WTERMSIG(s.status) : WEXITSTATUS(s.status));
    tcli_close(&c);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/* ---- 9. limits ------------------------------------------------------------------------ */

START_TEST(tcp_max_inflight)
{
    tsrv_opts o = { .workers = 5, .max_inflight = 4 };
    tsrv s;
    tcli c, c2;
    tt_count done;
    st_res ar[4], busy;
    int32_t r;
    int i, released = 0, closed = 0;

    tsrv_start(&s, &o);
    tcli_open(&c, s.addr);
    tcli_open(&c2, s.addr);
    tt_count_init(&done);
    /* no call before: a finished call may still count against max_inflight */
    for (i = 0; i < 4; i++) {
        ar[i].status = -100;
        ar[i].calls = 0;
        ar[i].done = &done;
        ck_assert_int_eq(kitchen_Kitchen_fill_async(c.k, KF_BLOCK, st_fill_cb, &ar[i]), 0);
    }
    tsrv_events(&s, "BLOCK", 4, 10000);
    /* the 5th concurrent call on that connection is turned away */
    ck_assert_int_eq(kitchen_Kitchen_add(c.k, -1, 1, &r), QRPC_EBUSY);
    busy.status = -100;
    busy.calls = 0;
    busy.done = &done;
    ck_assert_int_eq(kitchen_Kitchen_ping_async(c.k, st_void_cb, &busy), 0);
    ck_assert(tt_count_wait(&done, 1, 5000));
    ck_assert_int_eq(busy.status, QRPC_EBUSY);
    /* the limit is per connection: another client node is served (worker 5) */
    check_serving(c2.k, "another connection");
    ck_assert_int_eq(tt_count_get(&done), 1);

    /* stopping the server releases the four; they are answered */
    tsrv_stop_clean(&s);
    ck_assert(tt_count_wait(&done, 5, 10000));
    for (i = 0; i < 4; i++) {
        ck_assert_int_eq(ar[i].calls, 1);
        if (ar[i].status == KS_RELEASED)
            released++;
        else if (ar[i].status == QRPC_ECLOSED)
            closed++;
        else
            ck_abort_msg("blocked call %d: %s", i, qrpc_err_name(ar[i].status));
    }
    ck_assert_int_eq(released, 4);
    ck_assert_int_eq(closed, 0);
    tcli_close(&c);
    tcli_close(&c2);
    tt_count_fini(&done);
    tsrv_close(&s);
}
END_TEST

/*
 * Many large calls at once on one connection: the sender starts a message
 * of several frames only within the receiver's bounds on messages being
 * assembled (qrpc-protocol(7): at most its max_inflight of them, at most
 * its max_message bytes in all), so the receiver never has a reason to
 * close the connection; calls beyond the server's max_inflight are turned
 * away with QRPC_EBUSY, the others answered.
 */
START_TEST(tcp_assembly_bounds)
{
    enum { N = 12, LEN = 600 * 1024 };
    tsrv_opts o = { .workers = 2, .max_inflight = 3, .max_message = 1 * MiB };
    qrpc_node_config cfg;
    tsrv s;
    tcli c;
    tt_count done;
    as_res dig[N];
    kitchen_Hash hs, want;
    common_Money m = { common_Currency_USD, 7 };
    qrpc_bytes data;
    char *log;
    bool closed;
    int i, ok = 0, busy = 0;
    int32_t r;

    tsrv_start(&s, &o);
    qrpc_node_config_init(&cfg);
    cfg.max_message = 1 * MiB;
    tcli_open_cfg(&c, s.addr, &cfg);
    check_serving(c.k, "before");
    tt_count_init(&done);
    data.len = LEN;
    data.data = malloc(LEN);
    ck_assert_ptr_nonnull(data.data);
    for (i = 0; i < LEN; i++)
        data.data[i] = (uint8_t)(i * 13);
    memset(hs, 0x21, sizeof hs);
    kd_digest(&data, (const kitchen_Hash *)&hs, &m, kitchen_Color_GREEN, 5, &want);
    /* two of these do not fit 1 MiB together, and N exceeds max_inflight */
    for (i = 0; i < N; i++) {
        memset(&dig[i], 0, sizeof dig[i]);
        dig[i].done = &done;
        dig[i].status = -100;
        ck_assert_int_eq(kitchen_Kitchen_digest_async(c.k, &data, (const kitchen_Hash *)&hs,
                                                      &m, kitchen_Color_GREEN, 5,
                                                      as_digest_cb, &dig[i]), 0);
    }
    ck_assert_msg(tt_count_wait(&done, N, 30000), "only %ld of %d callbacks ran",
                  tt_count_get(&done), N);
    for (i = 0; i < N; i++) {
        ck_assert_int_eq(dig[i].calls, 1);
        if (dig[i].status == QRPC_EBUSY) {
            busy++;
            continue;
        }
        ck_assert_msg(dig[i].status == 0, "call %d: %s", i, qrpc_err_name(dig[i].status));
        ck_assert(memcmp(dig[i].hash, want, sizeof want) == 0);
        ok++;
    }
    ck_assert_int_ge(ok, 1);
    ck_assert_int_eq(ok + busy, N);
    /* the same connection still serves, and the server never closed it */
    ck_assert_int_eq(kitchen_Kitchen_add(c.k, 2, 3, &r), 0);
    ck_assert_int_eq(r, 5);
    log = tsrv_log(&s);
    ck_assert_msg(strstr(log, "closing connection") == NULL, "server log: %s", log);
    free(log);
    pthread_mutex_lock(&c.log.lock);
    closed = c.log.text != NULL && strstr(c.log.text, "closing connection") != NULL;
    pthread_mutex_unlock(&c.log.lock);
    ck_assert_msg(!closed, "the client closed its connection");
    free(data.data);
    tcli_close(&c);
    tt_count_fini(&done);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/*
 * A client that never has more calls outstanding than the server's
 * max_inflight (here 1: one call at a time) is never turned away with
 * QRPC_EBUSY: it cannot know that the server still counts a call whose
 * reply it already has.
 */
START_TEST(tcp_inflight_sequential)
{
    tsrv_opts o = { .workers = 2, .max_inflight = 1 };
    tsrv s;
    tcli c;
    int i, busy = 0, first = -1;

    tsrv_start(&s, &o);
    tcli_open(&c, s.addr);
    for (i = 0; i < 3000; i++) {
        int32_t r = 0;
        int rc = kitchen_Kitchen_add(c.k, -i, 7, &r);

        if (rc == QRPC_EBUSY) {
            busy++;
            if (first < 0)
                first = i;
            continue;
        }
        ck_assert_msg(rc == 0 && r == 7 - i, "call %d: %s", i, qrpc_err_name(rc));
    }
    /* work.c frees the request's in-flight slot before it queues the reply */
    ck_assert_msg(busy == 0, "%d of 3000 one-at-a-time calls got QRPC_EBUSY (first: call %d)",
                  busy, first);
    tcli_close(&c);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

static void never_cb(int status, kitchen_Kitchen_digest_reply *reply, void *arg)
{
    (void)status;
    (void)reply;
    ck_abort_msg("the callback of a call that was not started ran (%p)", arg);
}

/* A digest() argument of n bytes. */
static int call_digest(qrpc_client *k, size_t n, bool async)
{
    uint8_t *p = calloc(n, 1);
    qrpc_bytes data = { p, n };
    kitchen_Hash seed, out;
    common_Money m = { common_Currency_USD, 1 };
    int rc;

    memset(seed, 1, sizeof seed);
    if (async)
        rc = kitchen_Kitchen_digest_async(k, &data, (const kitchen_Hash *)&seed, &m,
                                          kitchen_Color_GREEN, 2, never_cb, NULL);
    else
        rc = kitchen_Kitchen_digest(k, &data, (const kitchen_Hash *)&seed, &m,
                                    kitchen_Color_GREEN, 2, &out);
    free(p);
    return rc;
}

/* Over the client node's own max_message: refused before anything is sent. */
START_TEST(tcp_too_big_local)
{
    qrpc_node_config cfg;
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    char addr[64];
    tcli c;
    int lfd, fd;

    /* the destination is a socket of ours that would see any attempt */
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ck_assert(lfd >= 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(lfd, 8), 0);
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sa.sin_port));

    qrpc_node_config_init(&cfg);
    cfg.max_message = 1024;
    tcli_open_cfg(&c, addr, &cfg);
    ck_assert_int_eq(call_digest(c.k, 2000, false), QRPC_ETOOBIG);
    ck_assert_int_eq(call_digest(c.k, 2000, true), QRPC_ETOOBIG);
    /* not even a connection was made */
    fd = accept(lfd, NULL, NULL);
    ck_assert_msg(fd < 0 && (errno == EAGAIN || errno == EWOULDBLOCK),
                  "the client connected for a call it refused");
    tcli_close(&c);
    close(lfd);
}
END_TEST

/*
 * Over the server's max_message (learnt from its HELLO): refused before
 * sending.  As the first call on a connection too, when the client's
 * check (against its own limit) let it through: a request of several
 * frames waits for the HELLO, and is then refused unsent.
 */
START_TEST(tcp_too_big_peer)
{
    tsrv_opts o = { .max_message = 4096 };
    tsrv s;
    tcli c, first;
    char *log;

    tsrv_start(&s, &o);
    tcli_open(&c, s.addr);
    check_serving(c.k, "before");       /* the server's HELLO has arrived */
    ck_assert_int_eq(call_digest(c.k, 1000, false), 0);
    ck_assert_int_eq(call_digest(c.k, 8000, false), QRPC_ETOOBIG);
    ck_assert_int_eq(call_digest(c.k, 8000, true), QRPC_ETOOBIG);
    /* nothing was sent: the connection is the same and the server saw no violation */
    check_serving(c.k, "after");
    ck_assert_int_eq(call_digest(c.k, 1000, false), 0);
    log = tsrv_log(&s);
    ck_assert_msg(strstr(log, "closing connection") == NULL, "server log:\n%s", log);
    free(log);
    tcli_close(&c);
    tcli_open(&first, s.addr);
    ck_assert_int_eq(call_digest(first.k, 8000, false), QRPC_ETOOBIG);
    check_serving(first.k, "after a first call over the limit");
    log = tsrv_log(&s);
    ck_assert_msg(strstr(log, "over max_message") == NULL, "server log:\n%s", log);
    free(log);
    tcli_close(&first);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/* Results over the caller's max_message: the server answers QRPC_ETOOBIG. */
START_TEST(tcp_too_big_reply)
{
    qrpc_node_config cfg;
    kitchen_i32_list values = { NULL, 0 };
    kitchen_Hash h;
    kitchen_Leaf *leaf = NULL;
    tsrv s;
    tcli c;

    tsrv_start(&s, NULL);
    qrpc_node_config_init(&cfg);
    cfg.max_message = 1024;
    tcli_open_cfg(&c, s.addr, &cfg);
    ck_assert_int_eq(kitchen_Kitchen_fill(c.k, 10, &values, &h, &leaf), 0);
    kitchen_i32_list_free(&values);
    kitchen_Leaf_opt_free(&leaf);
    ck_assert_int_eq(kitchen_Kitchen_fill(c.k, 500, &values, &h, &leaf), QRPC_ETOOBIG);
    check_serving(c.k, "after");
    tcli_close(&c);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/* ---- 10. shutdown ---------------------------------------------------------------------- */

/* Destroying a client node with calls in flight completes every one of them. */
START_TEST(tcp_client_node_destroy)
{
    tsrv_opts o = { .workers = 8 };
    tsrv s;
    tcli c, c2;
    tt_count done;
    st_res ar[7];
    int64_t t0, took;
    int32_t r;
    int i;

    tsrv_start(&s, &o);
    tcli_open(&c, s.addr);
    tt_count_init(&done);
    check_serving(c.k, "before");
    /* four calls blocked in handlers, three in handlers that take 5 s */
    for (i = 0; i < 7; i++) {
        ar[i].status = -100;
        ar[i].calls = 0;
        ar[i].done = &done;
        ck_assert_int_eq(kitchen_Kitchen_fill_async(c.k, i < 4 ? KF_BLOCK : KF_SLEEP + 5000,
                                                    st_fill_cb, &ar[i]), 0);
    }
    tsrv_events(&s, "BLOCK", 4, 10000);
    tsrv_events(&s, "SLEEP 5000", 3, 10000);
    ck_assert_int_eq(tt_count_get(&done), 0);
    t0 = tt_now_ms();
    qrpc_node_destroy(c.node);
    took = tt_now_ms() - t0;
    ck_assert_msg(took < 3000, "destroying the node took %" PRId64 " ms", took);
    ck_assert_int_eq(tt_count_get(&done), 7);
    for (i = 0; i < 7; i++) {
        ck_assert_int_eq(ar[i].calls, 1);
        ck_assert_msg(ar[i].status == QRPC_ECLOSED, "call %d: %s", i,
                      qrpc_err_name(ar[i].status));
    }
    /* the client outlived its node (allowed): its calls say so */
    ck_assert_int_eq(kitchen_Kitchen_add(c.k, -1, 1, &r), QRPC_ECLOSED);
    qrpc_client_destroy(c.k);
    tt_log_fini(&c.log);
    /* the server is unharmed (its eighth worker is free) */
    tcli_open(&c2, s.addr);
    check_serving(c2.k, "another client");
    tcli_close(&c2);
    tt_count_fini(&done);
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/*
 * Destroying the server's node answers what it has: the running handlers
 * finish (released by the stop) and are answered, the queued requests are
 * answered QRPC_ECLOSED, and the process exits 0 with nothing leaked.
 */
START_TEST(tcp_server_destroy)
{
    tsrv_opts o = { .workers = 2, .max_inflight = 5 };
    tsrv s;
    tcli c;
    tt_count done;
    st_res ar[5];
    int32_t r;
    int i;
    char needle[256];

    tsrv_start(&s, &o);
    tcli_open(&c, s.addr);
    tt_count_init(&done);
    /* no call before: a finished call may still count against max_inflight */
    for (i = 0; i < 5; i++) {
        ar[i].status = -100;
        ar[i].calls = 0;
        ar[i].done = &done;
        if (i < 2)
            ck_assert_int_eq(kitchen_Kitchen_fill_async(c.k, KF_BLOCK, st_fill_cb, &ar[i]), 0);
        else
            ck_assert_int_eq(kitchen_Kitchen_ping_async(c.k, st_void_cb, &ar[i]), 0);
        if (i == 1)
            tsrv_events(&s, "BLOCK", 2, 10000);
    }
    /*
     * A 6th call is refused (max_inflight 5), which proves the three
     * pings before it on the connection are queued in the server.
     */
    ck_assert_int_eq(kitchen_Kitchen_add(c.k, -1, 1, &r), QRPC_EBUSY);
    ck_assert_int_eq(tt_count_get(&done), 0);

    tsrv_stop_clean(&s);                /* SIGTERM: qrpc_node_destroy(), exit 0 */
    ck_assert(tt_count_wait(&done, 5, 10000));
    for (i = 0; i < 5; i++) {
        ck_assert_int_eq(ar[i].calls, 1);
        ck_assert_msg(ar[i].status == (i < 2 ? KS_RELEASED : QRPC_ECLOSED), "call %d: %s", i,
                      qrpc_err_name(ar[i].status));
    }
    snprintf(needle, sizeof needle, "closing connection to %s", s.addr);
    ck_assert_msg(tt_log_wait(&c.log, needle, 5000), "client log lacks '%s'", needle);
    expect_unavailable(c.k, &c.log, s.addr);
    tcli_close(&c);
    tt_count_fini(&done);
    tsrv_close(&s);
}
END_TEST

/* ---- many connections -------------------------------------------------------------- */

#define MC_NODES 16

typedef struct mc_arg {
    const char *addr;
    int idx;
    long bad;
} mc_arg;

static void *mc_thread(void *arg)
{
    mc_arg *a = arg;
    qrpc_node *n = NULL;
    qrpc_client *k = NULL;
    int i;

    if (qrpc_node_create(NULL, &n) != 0 || kitchen_Kitchen_connect(n, a->addr, &k) != 0) {
        a->bad = -1;
        qrpc_node_destroy(n);
        return NULL;
    }
    for (i = 0; i < 300; i++) {
        int32_t r = 0;

        if (kitchen_Kitchen_add(k, -i, a->idx, &r) != 0 || r != a->idx - i)
            a->bad++;
    }
    qrpc_client_destroy(k);
    qrpc_node_destroy(n);
    return NULL;
}

START_TEST(tcp_many_connections)
{
    pthread_t th[MC_NODES];
    mc_arg args[MC_NODES];
    tsrv s;
    int i;

    tsrv_start(&s, NULL);
    for (i = 0; i < MC_NODES; i++) {
        args[i].addr = s.addr;
        args[i].idx = i * 1000;
        args[i].bad = 0;
        ck_assert_int_eq(pthread_create(&th[i], NULL, mc_thread, &args[i]), 0);
    }
    for (i = 0; i < MC_NODES; i++) {
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
        ck_assert_msg(args[i].bad == 0, "node %d: %ld bad calls", i, args[i].bad);
    }
    ck_assert(tsrv_alive(&s));
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/*
 * Client nodes made, used once and destroyed, over and over: the shortest
 * life a connection has.  Under ASan this is the reproducer of a
 * use-after-free in the I/O thread (see the report).
 */
START_TEST(tcp_client_node_churn)
{
    tsrv s;
    int i;

    tsrv_start(&s, NULL);
    for (i = 0; i < 200; i++) {
        tcli c;

        tcli_open(&c, s.addr);
        check_serving(c.k, "a fresh node");
        /* a client node destroyed while its reads are in progress (once a use-after-free) */
        tcli_close(&c);
    }
    ck_assert(tsrv_alive(&s));
    tsrv_stop_clean(&s);
    tsrv_close(&s);
}
END_TEST

/* ---- the program ------------------------------------------------------------------------ */

#ifndef TT_RDMA
int main(int argc, char **argv)
{
    Suite *s;
    TCase *tc;

    if (argc > 1 && strcmp(argv[1], "--serve") == 0)
        return srv_main(argc, argv);

    s = suite_create("tcp");

    tc = tcase_create("basic");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, tcp_sync_methods);
    tcase_add_test(tc, tcp_async_methods);
    tcase_add_test(tc, tcp_errors);
    tcase_add_test(tc, tcp_unavailable);
    tcase_add_test(tc, tcp_many_connections);
    suite_add_tcase(s, tc);

    tc = tcase_create("load");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, tcp_concurrency);
    tcase_add_test(tc, tcp_caller_reads);
    tcase_add_test(tc, tcp_out_of_order);
    tcase_add_test(tc, tcp_large);
    tcase_add_test(tc, tcp_tail);
    tcase_add_test(tc, tcp_tail_unread);
    tcase_add_test(tc, tcp_rcvbuf);
    tcase_add_test(tc, tcp_bulk_lane);
    suite_add_tcase(s, tc);

    tc = tcase_create("failures");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, tcp_server_killed);
    tcase_add_test(tc, tcp_kill_under_load);
    tcase_add_test(tc, tcp_reconnect);
    tcase_add_test(tc, tcp_timeout);
    tcase_add_test(tc, tcp_node_timeout);
    suite_add_tcase(s, tc);

    tc = tcase_create("wire");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, tcp_raw_valid);
    tcase_add_test(tc, tcp_raw_at_most_once);
    tcase_add_test(tc, tcp_at_most_once_dups);
    tcase_add_test(tc, tcp_retransmit_lost);
    tcase_add_test(tc, tcp_retransmit_cuts);
    tcase_add_test(tc, tcp_retransmit_cuts_large);
    tcase_add_test(tc, tcp_large_waits_hello);
    tcase_add_test(tc, tcp_retransmit_busy);
    tcase_add_test(tc, tcp_retransmit_restart);
    tcase_add_test(tc, tcp_reply_log);
    tcase_add_test(tc, tcp_reply_log_bounded);
    tcase_add_test(tc, tcp_reply_log_compact_fails);
    tcase_add_loop_test(tc, tcp_hostile, 0, N_HOSTILE);
    tcase_add_test(tc, tcp_hostile_all_at_once);
    tcase_add_test(tc, tcp_hostile_truncated);
    tcase_add_test(tc, tcp_hostile_big_declared);
    tcase_add_test(tc, tcp_hostile_stalled);
    tcase_add_test(tc, tcp_hostile_slow_peer);
    tcase_add_test(tc, tcp_client_vanishes);
    suite_add_tcase(s, tc);

    tc = tcase_create("limits");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, tcp_max_inflight);
    tcase_add_test(tc, tcp_assembly_bounds);
    tcase_add_test(tc, tcp_inflight_sequential);
    tcase_add_test(tc, tcp_too_big_local);
    tcase_add_test(tc, tcp_too_big_peer);
    tcase_add_test(tc, tcp_too_big_reply);
    suite_add_tcase(s, tc);

    tc = tcase_create("shutdown");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, tcp_client_node_destroy);
    tcase_add_test(tc, tcp_server_destroy);
    tcase_add_test(tc, tcp_client_node_churn);
    suite_add_tcase(s, tc);

    return tu_run_suite(s);
}
#endif
