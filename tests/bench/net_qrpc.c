/*
 * net_qrpc.c - the "qrpc" system of the network workloads: the stubs that
 * qrpcgen generates from netbench.qidl, over libqrpc's TCP transport, as
 * an application would use them.  The same code is also the systems
 * "qrpc-rdma-emu" (over the RDMA transport on the software emulation of
 * the verbs layer, which moves bytes over a loopback TCP socket: for
 * regression tracking of the transport's own costs, not a measure of
 * RDMA) and "qrpc-rdma" (over real verbs, where a device exists).
 *
 * The server is a node listening on 127.0.0.1:0 with the default workers
 * that serves nb.Bench.  The client is one node with one client of the
 * server's address: every workload's calls, from any thread, share its one
 * FrontEnd: its connection, and its bulk lane (a second connection) for
 * sink calls of bulk_lane bytes or more, which BENCH_QRPC_BULK_LANE sets
 * on the client (-1: none, everything on the one connection).  Both
 * nodes raise max_message to NET_MAX_MESSAGE: the default (64 MiB)
 * refuses a 64 MiB `bytes` argument, whose encoding is 4 bytes longer.
 * Everything else is the default, unless BENCH_QRPC_RCVBUF sets both
 * nodes' tcp_rcvbuf (qrpc(3)), to measure what bounding the kernel's
 * receive buffer does to the mixed workload, or BENCH_QRPC_SPIN_US the
 * client's spin_us: the default
 * (50 us) has a synchronous caller poll its connection before it sleeps,
 * which the bare ping-pong, blocking in recv(), does not; -1 measures
 * qrpc sleeping as bare does.
 *
 * The small call is add (at-most-once: the server's reply cache) or, for
 * the dedup workload, its idempotent twin add_idem (no cache), as
 * qrpc_idempotent() picks: one table of stubs (qrpc_small), so that the
 * latency and pipelined loops are the same for both.
 *
 * Also here: the in-process workload (target "local") and its plain
 * function-call reference.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_net.h"
#include "bench_util.h"
#include "netbench.h"

/* The qrpc nodes' settings from the environment (bench_net.h). */
uint32_t net_qrpc_rcvbuf(void)
{
    return (uint32_t)bench_env_int("BENCH_QRPC_RCVBUF", 0, 0, 1 << 30);
}

int32_t net_qrpc_spin_us(void)
{
    return (int32_t)bench_env_int("BENCH_QRPC_SPIN_US", 0, -1, 100000);
}

int32_t net_qrpc_bulk_lane(void)
{
    return (int32_t)bench_env_int("BENCH_QRPC_BULK_LANE", 0, -1, 1 << 30);
}

static void bench_quiet_log(void *arg, const char *line)
{
    (void)arg;
    (void)line;
}

static void qrpc_fail(const char *what, int rc)
{
    char detail[128];

    snprintf(detail, sizeof detail, "%s (%s)", qrpc_strerror(rc), qrpc_err_name(rc));
    net_fail("qrpc", what, detail);
}

/* ---- the server ---------------------------------------------------------------- */

static int srv_add(qrpc_ctx *ctx, int32_t a, int32_t b, int32_t *result)
{
    (void)ctx;
    *result = (int32_t)((uint32_t)a + (uint32_t)b);
    return 0;
}

static int srv_sink(qrpc_ctx *ctx, const qrpc_bytes *data, uint32_t *result)
{
    (void)ctx;
    *result = (uint32_t)data->len;
    return 0;
}

/* add_idem is add, bar the idempotent flag: the same handler */
static const nb_Bench_handlers srv_handlers = {
    .add = srv_add, .sink = srv_sink, .add_idem = srv_add,
};

/* The RDMA provider of this process's system: "none" for plain qrpc. */
static const char *qrpc_rdma = "none";

static int qrpc_serve_main(void)
{
    qrpc_node_config cfg;
    qrpc_node *node = NULL;
    const char *addr;
    char c;
    int rc;

    qrpc_node_config_init(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.max_message = NET_MAX_MESSAGE;
    cfg.tcp_rcvbuf = net_qrpc_rcvbuf();
    cfg.rdma = qrpc_rdma;
    rc = qrpc_node_create(&cfg, &node);
    if (rc != 0)
        qrpc_fail("server node", rc);
    rc = nb_Bench_serve(node, &srv_handlers, NULL);
    if (rc != 0)
        qrpc_fail("serving nb.Bench", rc);
    addr = strcmp(qrpc_rdma, "none") != 0 ? qrpc_node_rdma_address(node)
                                          : qrpc_node_address(node);
    if (addr == NULL)
        qrpc_fail("listening for RDMA", QRPC_ENOTSUP);
    printf("%s\n", addr);
    fflush(stdout);
    /* Until the driver goes away (or closes our stdin). */
    while (read(0, &c, 1) > 0 || errno == EINTR)
        ;
    qrpc_node_destroy(node);
    return 0;
}

/* ---- the client ------------------------------------------------------------------ */

static qrpc_node *cli_node;
static qrpc_client *cli;

static void qrpc_open(const char *addr)
{
    qrpc_node_config cfg;
    int32_t r;
    int rc;

    qrpc_node_config_init(&cfg);
    cfg.max_message = NET_MAX_MESSAGE;
    cfg.rdma = qrpc_rdma;
    cfg.tcp_rcvbuf = net_qrpc_rcvbuf();
    cfg.spin_us = net_qrpc_spin_us();
    cfg.bulk_lane = net_qrpc_bulk_lane();
    rc = qrpc_node_create(&cfg, &cli_node);
    if (rc != 0)
        qrpc_fail("client node", rc);
    rc = nb_Bench_connect(cli_node, addr, &cli);
    if (rc != 0)
        qrpc_fail("connect", rc);
    rc = nb_Bench_add(cli, 1, 2, &r);           /* dials */
    if (rc != 0 || r != 3)
        qrpc_fail("first call", rc);
}

static void qrpc_close(void)
{
    qrpc_client_destroy(cli);
    cli = NULL;
    qrpc_node_destroy(cli_node);
    cli_node = NULL;
}

/* ---- the small call: add, or its idempotent twin ------------------------------- */

typedef struct qrpc_pipe qrpc_pipe;

typedef struct qrpc_small {
    const char *name;           /* for failures */
    int (*call)(qrpc_client *client, int32_t a, int32_t b, int32_t *result);
    /* 1 + 2 sent asynchronously; its completion goes to qrpc_pipe_done(p) */
    int (*call_async)(qrpc_pipe *p);
} qrpc_small;

static void qrpc_pipe_done(qrpc_pipe *p, int status, int32_t result);

static void qrpc_add_done(int status, nb_Bench_add_reply *reply, void *arg)
{
    qrpc_pipe_done(arg, status, status == 0 ? reply->result : 0);
}

static int qrpc_add_async(qrpc_pipe *p)
{
    return nb_Bench_add_async(cli, 1, 2, qrpc_add_done, p);
}

static void qrpc_add_idem_done(int status, nb_Bench_add_idem_reply *reply, void *arg)
{
    qrpc_pipe_done(arg, status, status == 0 ? reply->result : 0);
}

static int qrpc_add_idem_async(qrpc_pipe *p)
{
    return nb_Bench_add_idem_async(cli, 1, 2, qrpc_add_idem_done, p);
}

static const qrpc_small small_add = { "add", nb_Bench_add, qrpc_add_async };
static const qrpc_small small_add_idem = { "add_idem", nb_Bench_add_idem,
                                           qrpc_add_idem_async };
/* every workload's small call: add, but add_idem while the dedup workload
 * measures it */
static const qrpc_small *small = &small_add;

static void qrpc_idempotent(bool on)
{
    small = on ? &small_add_idem : &small_add;
}

static void qrpc_add(int32_t a, int32_t b)
{
    int32_t r;
    int rc = small->call(cli, a, b, &r);

    if (rc != 0)
        qrpc_fail(small->name, rc);
    if (r != (int32_t)((uint32_t)a + (uint32_t)b))
        net_fail("qrpc", small->name, "wrong sum");
}

/* ---- latency, and threads: one sync call in flight per thread ---------------------------------- */

static void qrpc_thread_call(void *conn, int32_t k)
{
    (void)conn;                 /* every thread shares the one client */
    qrpc_add(k, 1);
}

static const net_caller qrpc_caller = { NULL, qrpc_thread_call, NULL };

static void qrpc_latency(int n, double *us)
{
    net_run_latency(qrpc_thread_call, NULL, n, us);
}

static void qrpc_threads(int nthreads, double warm, double seconds, uint64_t *calls,
                         double *elapsed)
{
    net_run_threads("qrpc", &qrpc_caller, nthreads, warm, seconds, calls, elapsed);
}

static atomic_bool qrpc_stop;   /* the pipelined workload's */

/* ---- pipelined: async calls, a window of them in flight ----------------------------- */

/*
 * An issuing thread keeps up to `window` calls in flight; completions run
 * on the client node's loop threads.  When the window is full the issuer
 * sleeps until half of it has completed (a wake-up per completion would
 * measure the scheduler, not qrpc).
 */
struct qrpc_pipe {
    uint32_t window;
    atomic_uint inflight;
    atomic_uint_least64_t completed;
    atomic_uint_least64_t failed;
    atomic_int waiting;
    pthread_mutex_t lock;
    pthread_cond_t cond;
};

static qrpc_pipe qpipe;

static void qrpc_pipe_done(qrpc_pipe *p, int status, int32_t result)
{
    if (status != 0 || result != 3)
        atomic_fetch_add(&p->failed, 1);
    atomic_fetch_add_explicit(&p->completed, 1, memory_order_relaxed);
    if (atomic_fetch_sub(&p->inflight, 1) - 1 <= p->window / 2 &&
        atomic_load(&p->waiting)) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_signal(&p->cond);
        pthread_mutex_unlock(&p->lock);
    }
}

static void *qrpc_pipe_issuer(void *arg)
{
    qrpc_pipe *p = arg;

    while (!atomic_load_explicit(&qrpc_stop, memory_order_relaxed)) {
        int rc;

        if (atomic_load(&p->inflight) >= p->window) {
            pthread_mutex_lock(&p->lock);
            atomic_store(&p->waiting, 1);
            while (atomic_load(&p->inflight) > p->window / 2 && !atomic_load(&qrpc_stop))
                pthread_cond_wait(&p->cond, &p->lock);
            atomic_store(&p->waiting, 0);
            pthread_mutex_unlock(&p->lock);
            continue;
        }
        atomic_fetch_add(&p->inflight, 1);
        rc = small->call_async(p);
        if (rc != 0)
            qrpc_fail(small->name, rc);
    }
    return NULL;
}

static void qrpc_pipelined(int window, double warm, double seconds, uint64_t *calls,
                           double *elapsed)
{
    qrpc_pipe *p = &qpipe;
    pthread_t t;
    uint64_t c0;
    double t0, deadline;

    p->window = (uint32_t)window;
    atomic_store(&p->inflight, 0);
    atomic_store(&p->completed, 0);
    atomic_store(&p->failed, 0);
    atomic_store(&p->waiting, 0);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    atomic_store(&qrpc_stop, false);
    if (pthread_create(&t, NULL, qrpc_pipe_issuer, p) != 0)
        net_fail("qrpc", "pipelined", "cannot start a thread");
    net_sleep(warm);
    c0 = atomic_load(&p->completed);
    t0 = bench_now();
    net_sleep(seconds);
    *calls = atomic_load(&p->completed) - c0;
    *elapsed = bench_now() - t0;
    atomic_store(&qrpc_stop, true);
    pthread_mutex_lock(&p->lock);
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    pthread_join(t, NULL);
    /* the calls still in flight complete (or time out) before we go on */
    deadline = bench_now() + 60;
    while (atomic_load(&p->inflight) != 0) {
        if (bench_now() > deadline)
            net_fail("qrpc", "pipelined", "calls still in flight after 60 s");
        net_sleep(0.001);
    }
    if (atomic_load(&p->failed) != 0)
        net_fail("qrpc", "pipelined", "calls failed or returned a wrong sum");
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
}

/* ---- bulk ---------------------------------------------------------------------- */

static void qrpc_message(qrpc_bytes *m, size_t size)
{
    size_t i;

    m->data = malloc(size);
    m->len = size;
    if (m->data == NULL)
        net_fail("qrpc", "bulk", "out of memory");
    for (i = 0; i < size; i++)
        m->data[i] = (uint8_t)(i * 131u);
}

static void qrpc_bulk_call(const qrpc_bytes *m)
{
    uint32_t r;
    int rc = nb_Bench_sink(cli, m, &r);

    if (rc != 0)
        qrpc_fail("sink", rc);
    if (r != m->len)
        net_fail("qrpc", "sink", "wrong length");
}

static void qrpc_bulk(size_t size, int min_calls, double seconds, uint64_t *calls,
                      double *elapsed)
{
    qrpc_bytes m;
    uint64_t n = 0;
    double t0, t;

    qrpc_message(&m, size);
    qrpc_bulk_call(&m);                 /* warm-up */
    t0 = bench_now();
    do {
        qrpc_bulk_call(&m);
        n++;
        t = bench_now();
    } while (t - t0 < seconds || n < (uint64_t)min_calls);
    *calls = n;
    *elapsed = t - t0;
    qrpc_bytes_free(&m);
}

/* ---- mixed: small calls while another thread streams on the same client -------- */

static void qrpc_stream_call(void *ctx)
{
    qrpc_bulk_call(ctx);
}

static void qrpc_mixed(int n_idle, double *idle_us, int n_busy, double *busy_us,
                       double seconds, size_t bulk_size, net_mixed_out *out)
{
    qrpc_bytes msg;

    qrpc_latency(n_idle, idle_us);
    out->n_idle = n_idle;
    qrpc_message(&msg, bulk_size);
    net_run_mixed("qrpc", qrpc_stream_call, &msg, qrpc_thread_call, NULL, n_busy, busy_us,
                  seconds, out);
    qrpc_bytes_free(&msg);
}

const net_sys net_qrpc = {
    .system = "qrpc",
    .serve = qrpc_serve_main,
    .open = qrpc_open,
    .close = qrpc_close,
    .latency = qrpc_latency,
    .threads = qrpc_threads,
    .pipelined = qrpc_pipelined,
    .bulk = qrpc_bulk,
    .mixed = qrpc_mixed,
    .idempotent = qrpc_idempotent,
};

/* ---- the same over RDMA ---------------------------------------------------------------- */

static int qrpc_emu_serve_main(void)
{
    qrpc_rdma = "emu";
    return qrpc_serve_main();
}

static void qrpc_emu_open(const char *addr)
{
    qrpc_rdma = "emu";
    qrpc_open(addr);
}

const net_sys net_qrpc_rdma_emu = {
    .system = "qrpc-rdma-emu",
    .serve = qrpc_emu_serve_main,
    .open = qrpc_emu_open,
    .close = qrpc_close,
    .latency = qrpc_latency,
    .threads = qrpc_threads,
    .pipelined = qrpc_pipelined,
    .bulk = qrpc_bulk,
    .mixed = qrpc_mixed,
};

static int qrpc_verbs_serve_main(void)
{
    qrpc_rdma = "verbs";
    return qrpc_serve_main();
}

static void qrpc_verbs_open(const char *addr)
{
    qrpc_rdma = "verbs";
    qrpc_open(addr);
}

/* Whether a node can open a real RDMA device here (why not, if not). */
static bool qrpc_verbs_available(char *why, size_t len)
{
    qrpc_node_config cfg;
    qrpc_node *n = NULL;
    int rc;

    qrpc_node_config_init(&cfg);
    cfg.rdma = "verbs";
    cfg.log = bench_quiet_log;
    rc = qrpc_node_create(&cfg, &n);
    qrpc_node_destroy(n);
    if (rc != 0)
        snprintf(why, len, "no RDMA device (%s)", qrpc_err_name(rc));
    return rc == 0;
}

const net_sys net_qrpc_rdma = {
    .system = "qrpc-rdma",
    .available = qrpc_verbs_available,
    .serve = qrpc_verbs_serve_main,
    .open = qrpc_verbs_open,
    .close = qrpc_close,
    .latency = qrpc_latency,
    .threads = qrpc_threads,
    .pipelined = qrpc_pipelined,
    .bulk = qrpc_bulk,
    .mixed = qrpc_mixed,
};

/* ---- in-process: target "local" ---------------------------------------------------- */

static qrpc_node *local_node;
static qrpc_client *local_cli;

uint64_t net_local_qrpc_setup(void)
{
    int rc = qrpc_node_create(NULL, &local_node);

    if (rc != 0)
        qrpc_fail("local node", rc);
    rc = nb_Bench_serve(local_node, &srv_handlers, NULL);
    if (rc != 0)
        qrpc_fail("serving nb.Bench locally", rc);
    rc = nb_Bench_connect(local_node, "local", &local_cli);
    if (rc != 0)
        qrpc_fail("connect local", rc);
    return net_local_qrpc(1000);
}

uint64_t net_local_qrpc(uint64_t n)
{
    uint64_t sum = 0, i;

    for (i = 0; i < n; i++) {
        int32_t r;
        int rc = nb_Bench_add(local_cli, (int32_t)i, 1, &r);

        if (rc != 0)
            qrpc_fail("local add", rc);
        sum += (uint32_t)r;
    }
    return sum;
}

void net_local_qrpc_teardown(void)
{
    qrpc_client_destroy(local_cli);
    local_cli = NULL;
    qrpc_node_destroy(local_node);
    local_node = NULL;
}

/* The reference: the handler's addition through a pointer, nothing else. */
static int32_t (*volatile direct_fn)(int32_t, int32_t);

static int32_t direct_add(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

uint64_t net_local_direct(uint64_t n)
{
    uint64_t sum = 0, i;

    direct_fn = direct_add;
    for (i = 0; i < n; i++)
        sum += (uint32_t)direct_fn((int32_t)i, 1);
    return sum;
}
