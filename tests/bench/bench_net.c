/*
 * bench_net.c - the network workloads of make bench: qrpc over TCP against
 * bare sockets carrying the same payload (bench_net.h), on 127.0.0.1 with
 * the server in a process of its own.  Compiled twice: bench_net (qrpc and
 * bare, make bench) and, with NET_PEERS defined, bench_net_peers (make
 * bench-peers), which also measures the peers rpcgen (ONC RPC, libtirpc)
 * and grpc (gRPC C++) in the same run.
 *
 *   bench_net RESULTS.jsonl        the driver (appends to RESULTS.jsonl)
 *   bench_net --serve SYSTEM       a server process (the driver starts it)
 *
 * Workloads (each for every system, in the same run; a system whose
 * net_sys has no function for a workload sits it out, and nothing is
 * written for it: rpcgen has no pipelined, the peers no mixed, only qrpc
 * has dedup):
 *   net-latency     one caller, one add in flight: p50, p99, p99.9 (us) of
 *                   BENCH_NET_CALLS calls, from every sample of the run
 *   net-threads     BENCH_NET_THREADS callers with one add each: calls/s
 *   net-pipelined   BENCH_NET_WINDOW adds in flight on one connection
 *                   (qrpc: the async stubs): calls/s
 *   net-dedup       qrpc only: net-pipelined's calls/s and net-latency's p50
 *                   (of BENCH_NET_CALLS / 2 calls) of add (at-most-once:
 *                   the server's reply cache) and of add_idem (idempotent:
 *                   no cache), interleaved, and the two ratios
 *                   at-most-once/idempotent
 *   net-bulk-1MiB   1 MiB out, 4 bytes back, one in flight: GiB/s of payload
 *   net-bulk-64MiB  the same with 64 MiB
 *   net-mixed       add latency alone and while another thread streams
 *                   64 MiB calls (qrpc: same client and connection)
 *   net-local       add on the caller's own node (qrpc target "local")
 *                   against a plain call through a pointer: ns per call
 *
 * Processes: this program runs pinned (run.sh starts it under taskset -c
 * 0) and starts one server process per system, fork and exec of itself,
 * pinned to BENCH_NET_SERVER_CPU (default 1) by sched_setaffinity before
 * the exec, as taskset -c 1 would.  A server lives until its stdin (a pipe
 * from here) reaches end of file, and is killed by the kernel if this
 * process dies (PR_SET_PDEATHSIG); on every exit path of this program the
 * servers are stopped and reaped: normal end and failures (atexit), and
 * SIGINT, SIGTERM, SIGHUP and the SIGALRM watchdog that bounds every
 * measurement (signal handler).
 *
 * Method, as bench_codec.c: BENCH_RUNS rounds (default 5, at least 3), each
 * measuring every workload on every system, the order of the systems
 * rotating from round to round; medians with min and max; ratios of each
 * system to bare (qrpc/bare, rpcgen/bare, grpc/bare) taken within a round.
 * Every measurement is bounded: a count of calls (latency),
 * BENCH_NET_SECONDS of wall time (default 0.5; throughput, after a fifth
 * of it of warm-up), BENCH_NET_MIXED_SECONDS (default 2) for the calls
 * under transfer.  Disturbance is watched on the two CPUs in use: steal
 * from /proc/stat, and the share of those CPUs' busy time (user, system,
 * irq, softirq) that our processes -- client and servers -- got; a
 * measurement with steal over BENCH_STEAL_LIMIT_PCT or a share under
 * BENCH_CPU_SHARE_MIN_PCT (another process ran there) is redone, up to
 * BENCH_STEAL_RETRIES times, then kept and flagged.
 *
 * Also from the environment: BENCH_NET_CALLS (latency calls per run,
 * default 20000), BENCH_NET_WARMUP (calls per system before anything
 * counts, 2000), BENCH_NET_MIXED_CALLS (idle calls of the mixed workload,
 * 2000), BENCH_NET_THREADS (16), BENCH_NET_WINDOW (256), and, to profile
 * one thing at a time, BENCH_NET_ONLY (comma-separated workload names:
 * net-latency,net-mixed) and BENCH_NET_SYSTEMS (comma-separated systems:
 * qrpc, bare, and in bench_net_peers rpcgen and grpc; no ratios without
 * bare).  BENCH_QRPC_RCVBUF sets tcp_rcvbuf on both qrpc nodes and
 * BENCH_QRPC_SPIN_US the qrpc client's spin_us, BENCH_QRPC_BULK_LANE its
 * bulk_lane (net_qrpc.c); the report says which values the run had.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_net.h"
#include "bench_util.h"

#define NET_MIB (1024.0 * 1024.0)
#define NET_GIB (1024.0 * NET_MIB)
#define NET_MAX_METRICS 6
#ifdef NET_PEERS
#define NET_NSYS 6
#else
#define NET_NSYS 4
#endif
#define NET_QRPC 0                  /* net_systems[] index of qrpc ... */
#define NET_REF 1                   /* ... and of bare, every ratio's reference */
#define NET_SERVE_WAIT_MS 10000     /* a server must say its address by then */
#define NET_REAP_WAIT_S 5.0         /* then it is killed */
#define NET_MIXED_MAX_BUSY (1 << 20)    /* samples under transfer, at most */

/* ---- configuration ---------------------------------------------------------- */

static int cfg_runs;
static double cfg_seconds;          /* per throughput measurement */
static int cfg_calls;               /* latency samples per run */
static int cfg_warmup;              /* calls before anything counts */
static int cfg_mixed_calls;
static double cfg_mixed_seconds;
static int cfg_threads;
static int cfg_window;
static int cfg_client_cpu;          /* -1: not pinned */
static int cfg_server_cpu;          /* -1: not pinned */

/* ---- the server processes --------------------------------------------------- */

typedef struct net_server {
    const net_sys *sys;
    volatile pid_t pid;             /* 0: none (read by the signal handler) */
    int lifeline;                   /* write end of its stdin */
    char addr[64];
} net_server;

static net_server servers[NET_NSYS];
static const net_sys *const net_systems[NET_NSYS] = {
    &net_qrpc, &net_bare,
#ifdef NET_PEERS
    &net_rpcgen, &net_grpc,
#endif
    &net_qrpc_rdma_emu, &net_qrpc_rdma,
};

_Noreturn void net_fail(const char *system, const char *what, const char *detail)
{
    fprintf(stderr, "bench: net %s: %s failed: %s\n", system, what, detail);
    exit(1);                        /* atexit: servers stopped */
}

void net_sleep(double s)
{
    struct timespec ts;

    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int net_listen_loopback(const char *system, unsigned *port)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (lfd < 0)
        net_fail(system, "socket", strerror(errno));
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 128) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &len) != 0)
        net_fail(system, "listen on 127.0.0.1", strerror(errno));
    *port = ntohs(sa.sin_port);
    return lfd;
}

void net_run_latency(void (*call)(void *conn, int32_t k), void *conn, int n, double *us)
{
    int i;

    for (i = 0; i < n; i++) {
        double t0 = bench_now();

        call(conn, i);
        us[i] = (bench_now() - t0) * 1e6;
    }
}

/* ---- the mixed workload's driver --------------------------------------------- */

typedef struct net_streamer {
    void (*bulk)(void *ctx);
    void *ctx;
    atomic_bool started, stop;
    atomic_uint_least64_t calls;
} net_streamer;

static void *net_stream_main(void *arg)
{
    net_streamer *s = arg;

    atomic_store(&s->started, true);
    while (!atomic_load(&s->stop)) {
        s->bulk(s->ctx);
        atomic_fetch_add(&s->calls, 1);
    }
    return NULL;
}

void net_run_mixed(const char *system, void (*bulk)(void *ctx), void *ctx,
                   void (*call)(void *conn, int32_t k), void *conn, int n_busy,
                   double *busy_us, double seconds, net_mixed_out *out)
{
    net_streamer s;
    pthread_t t;
    uint64_t c0;
    double start, t0;
    int i;

    s.bulk = bulk;
    s.ctx = ctx;
    atomic_init(&s.started, false);
    atomic_init(&s.stop, false);
    atomic_init(&s.calls, 0);
    bulk(ctx);                          /* warm-up: the server's buffers */
    if (pthread_create(&t, NULL, net_stream_main, &s) != 0)
        net_fail(system, "mixed", "cannot start a thread");
    while (!atomic_load(&s.started))
        sched_yield();
    net_sleep(0.005);                   /* the stream is flowing */
    c0 = atomic_load(&s.calls);
    start = bench_now();
    for (i = 0; i < n_busy; i++) {
        t0 = bench_now();
        if (t0 - start >= seconds)
            break;
        call(conn, i);
        busy_us[i] = (bench_now() - t0) * 1e6;
    }
    out->n_busy = i;
    out->bulk_seconds = bench_now() - start;
    out->bulk_calls = atomic_load(&s.calls) - c0;
    atomic_store(&s.stop, true);
    pthread_join(t, NULL);
}

/* ---- the threads workload's driver ------------------------------------------ */

typedef struct net_worker {
    pthread_t thread;
    const net_caller *nc;
    void *conn;
    atomic_uint_least64_t calls;
    char pad[64];               /* no false sharing of the counters */
} net_worker;

static atomic_bool net_stop;
static pthread_barrier_t net_barrier;

static void *net_worker_main(void *arg)
{
    net_worker *w = arg;
    int32_t k = 0;

    pthread_barrier_wait(&net_barrier);
    while (!atomic_load_explicit(&net_stop, memory_order_relaxed)) {
        w->nc->call(w->conn, k++);
        atomic_fetch_add_explicit(&w->calls, 1, memory_order_relaxed);
    }
    return NULL;
}

static uint64_t net_sum_calls(net_worker *w, int n)
{
    uint64_t s = 0;
    int i;

    for (i = 0; i < n; i++)
        s += atomic_load_explicit(&w[i].calls, memory_order_relaxed);
    return s;
}

void net_run_threads(const char *system, const net_caller *nc, int nthreads, double warm,
                     double seconds, uint64_t *calls, double *elapsed)
{
    net_worker *w = calloc((size_t)nthreads, sizeof *w);
    uint64_t c0;
    double t0;
    int i;

    if (w == NULL)
        net_fail(system, "threads", "out of memory");
    atomic_store(&net_stop, false);
    pthread_barrier_init(&net_barrier, NULL, (unsigned)nthreads + 1);
    for (i = 0; i < nthreads; i++) {
        w[i].nc = nc;
        w[i].conn = nc->open != NULL ? nc->open() : NULL;
        atomic_init(&w[i].calls, 0);
        if (pthread_create(&w[i].thread, NULL, net_worker_main, &w[i]) != 0)
            net_fail(system, "threads", "cannot start a thread");
    }
    pthread_barrier_wait(&net_barrier);
    net_sleep(warm);
    c0 = net_sum_calls(w, nthreads);
    t0 = bench_now();
    net_sleep(seconds);
    *calls = net_sum_calls(w, nthreads) - c0;
    *elapsed = bench_now() - t0;
    atomic_store(&net_stop, true);
    for (i = 0; i < nthreads; i++) {
        pthread_join(w[i].thread, NULL);
        if (nc->close != NULL)
            nc->close(w[i].conn);
    }
    pthread_barrier_destroy(&net_barrier);
    free(w);
}

/* Async-signal-safe: kill and reap every server, then leave. */
static void net_on_signal(int sig)
{
    static const char msg[] = "bench: net: interrupted (or a measurement overran its "
                              "time limit); servers killed\n";
    int i;

    for (i = 0; i < NET_NSYS; i++) {
        pid_t pid = servers[i].pid;

        if (pid > 0) {
            kill(pid, SIGKILL);
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
            servers[i].pid = 0;
        }
    }
    if (write(2, msg, sizeof msg - 1) < 0) {
        /* nothing more to do */
    }
    _exit(128 + sig);
}

/* Normal end and every exit(): ask the servers to leave, then make them. */
static void net_stop_servers(void)
{
    int i;

    for (i = 0; i < NET_NSYS; i++) {
        net_server *s = &servers[i];
        double until = bench_now() + NET_REAP_WAIT_S;
        int status;
        pid_t pid = s->pid, r;

        if (s->lifeline >= 0) {
            close(s->lifeline);
            s->lifeline = -1;
        }
        if (pid <= 0)
            continue;
        while ((r = waitpid(pid, &status, WNOHANG)) == 0 && bench_now() < until) {
            struct timespec ts = { 0, 10000000 };

            nanosleep(&ts, NULL);
        }
        if (r == 0) {
            fprintf(stderr, "bench: net: the %s server did not stop; killing it\n",
                    s->sys->system);
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        } else if (r > 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
            fprintf(stderr, "bench: net: the %s server ended abnormally (status %#x)\n",
                    s->sys->system, status);
        }
        s->pid = 0;
    }
}

/* Starts sys's server pinned to cfg_server_cpu and reads its address. */
static void net_spawn(net_server *s, const net_sys *sys)
{
    int life[2], ready[2];
    pid_t parent = getpid(), pid;
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    struct pollfd pfd;
    size_t got = 0;

    s->sys = sys;
    /* exec by its name, so that the server shows as bench_net, not exe */
    if (sl <= 0 || (size_t)sl >= sizeof self - 1)
        snprintf(self, sizeof self, "/proc/self/exe");
    else
        self[sl] = '\0';
    if (pipe2(life, O_CLOEXEC) != 0 || pipe2(ready, O_CLOEXEC) != 0)
        net_fail(sys->system, "server start", strerror(errno));
    fflush(NULL);
    pid = fork();
    if (pid < 0)
        net_fail(sys->system, "server start", strerror(errno));
    if (pid == 0) {
        /* the kernel kills us if the driver dies without a word */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(1);
        if (dup2(life[0], 0) < 0 || dup2(ready[1], 1) < 0)
            _exit(1);
        if (cfg_server_cpu >= 0) {
            cpu_set_t set;

            CPU_ZERO(&set);
            CPU_SET(cfg_server_cpu, &set);
            if (sched_setaffinity(0, sizeof set, &set) != 0) {
                perror("bench: net: pinning the server");
                _exit(1);
            }
        }
        execl(self, "bench_net", "--serve", sys->system, (char *)NULL);
        perror("bench: net: exec of the server");
        _exit(127);
    }
    s->pid = pid;
    s->lifeline = life[1];
    close(life[0]);
    close(ready[1]);
    /* "127.0.0.1:PORT\n" (or SCHEME://127.0.0.1:PORT), within NET_SERVE_WAIT_MS */
    pfd.fd = ready[0];
    pfd.events = POLLIN;
    while (got < sizeof s->addr - 1 && (got == 0 || s->addr[got - 1] != '\n')) {
        ssize_t r;
        int pr = poll(&pfd, 1, NET_SERVE_WAIT_MS);

        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            net_fail(sys->system, "server start", "no address within 10 s");
        r = read(ready[0], s->addr + got, sizeof s->addr - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            net_fail(sys->system, "server start", "the server exited");
        got += (size_t)r;
    }
    close(ready[0]);
    s->addr[got] = '\0';
    s->addr[strcspn(s->addr, "\n")] = '\0';
    /* "rdma-emu://127.0.0.1:PORT" from the RDMA systems */
    if (strncmp(strstr(s->addr, "://") != NULL ? strstr(s->addr, "://") + 3 : s->addr,
                "127.0.0.1:", 10) != 0)
        net_fail(sys->system, "server start", s->addr);
}

/* ---- disturbance: steal and the share of the CPUs we got ---------------------- */

typedef struct net_load {
    uint64_t busy;                  /* user + nice + system + irq + softirq, watched CPUs */
    uint64_t steal[2], total[2];
    uint64_t ours;                  /* utime + stime of client and servers */
} net_load;

/* utime + stime of process pid (0: this one), in clock ticks. */
static uint64_t net_proc_ticks(pid_t pid)
{
    char path[64], line[1024], *p;
    unsigned long long ut = 0, st = 0;
    FILE *f;
    int i;

    if (pid == 0)
        snprintf(path, sizeof path, "/proc/self/stat");
    else
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    f = fopen(path, "re");
    if (f == NULL)
        return 0;
    p = fgets(line, sizeof line, f);
    fclose(f);
    if (p == NULL || (p = strrchr(line, ')')) == NULL)
        return 0;
    /* after "comm)": state is field 3; utime and stime are 14 and 15 */
    for (i = 3; i <= 14 && p != NULL; i++)
        p = strchr(p + 1, ' ');
    if (p == NULL || sscanf(p, " %llu %llu", &ut, &st) != 2)
        return 0;
    return ut + st;
}

/* cpus[0..n) (-1: the "cpu" line of all of them). */
static void net_load_read(net_load *l, const int *cpus, int n, bool servers_too)
{
    char line[512];
    FILE *f = fopen("/proc/stat", "re");
    int i, k;

    memset(l, 0, sizeof *l);
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        unsigned long long v[8] = { 0 };
        char name[16];

        if (strncmp(line, "cpu", 3) != 0)
            break;
        if (sscanf(line, "%15s %llu %llu %llu %llu %llu %llu %llu %llu", name, &v[0],
                   &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) < 9)
            continue;
        for (i = 0; i < n; i++) {
            char want[16];

            if (cpus[i] < 0)
                snprintf(want, sizeof want, "cpu");
            else
                snprintf(want, sizeof want, "cpu%d", cpus[i]);
            if (strcmp(name, want) != 0)
                continue;
            l->busy += v[0] + v[1] + v[2] + v[5] + v[6];
            l->steal[i] = v[7];
            for (k = 0; k < 8; k++)
                l->total[i] += v[k];
        }
    }
    if (f != NULL)
        fclose(f);
    l->ours = net_proc_ticks(0);
    for (i = 0; servers_too && i < NET_NSYS; i++)
        if (servers[i].pid > 0)
            l->ours += net_proc_ticks(servers[i].pid);
}

static void net_load_diff(const net_load *a, const net_load *b, int n, double *steal,
                          double *share)
{
    uint64_t busy = b->busy - a->busy, ours = b->ours - a->ours;
    int i;

    *steal = 0;
    for (i = 0; i < n; i++) {
        uint64_t t = b->total[i] - a->total[i];
        double s = t == 0 ? 0 : 100.0 * (double)(b->steal[i] - a->steal[i]) / (double)t;

        if (s > *steal)
            *steal = s;
    }
    /*
     * Our processes' time over the busy time of the CPUs they are pinned
     * to, both in ticks.  Busy time counts irq and softirq ticks, which
     * tick-based accounting (without CONFIG_IRQ_TIME_ACCOUNTING) also
     * charges to the task they interrupted: loopback TCP's receive work
     * mostly runs in our own tasks' softirqs, so it counts as ours.  What
     * is left over is other processes' time (and interrupts taken while
     * the CPU idled).  Sampling can take the share a little over 100:
     * clamped.
     */
    *share = busy == 0 ? 100.0 : 100.0 * (double)ours / (double)busy;
    if (*share > 100.0)
        *share = 100.0;
}

/* ---- one measurement -------------------------------------------------------------- */

typedef struct net_meas {
    double v[NET_MAX_METRICS];
    uint64_t iters;
    uint64_t iters_of[NET_MAX_METRICS];     /* metric i's, where not 0; else iters */
    double steal, share;
} net_meas;

typedef struct net_workload {
    const char *name;               /* "net-latency" */
    const char *label;              /* for the progress lines */
    int nmetrics;
    const char *metric[NET_MAX_METRICS];
    const char *unit[NET_MAX_METRICS];
    unsigned ratios;                /* bit i: system/bare ratios of metric i */
    bool local;                     /* in-process: one CPU, no servers */
    void (*fn)(const net_sys *sys, net_meas *m);
} net_workload;

static double *lat_buf, *busy_buf;

static int net_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile q (0..1) of v[0..n), which it sorts. */
static double net_pct(double *v, int n, double q)
{
    int k;

    if (n <= 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, net_cmp);
    k = (int)(q * n);               /* ceil(q * n) - 1 */
    if ((double)k < q * n)
        k++;
    k--;
    if (k < 0)
        k = 0;
    if (k >= n)
        k = n - 1;
    return v[k];
}

/* n calls, one in flight: p50, p99, p99.9 */
static void net_latency(const net_sys *sys, net_meas *m, int n)
{
    sys->latency(n, lat_buf);
    m->v[0] = net_pct(lat_buf, n, 0.50);
    m->v[1] = net_pct(lat_buf, n, 0.99);
    m->v[2] = net_pct(lat_buf, n, 0.999);
    m->iters = (uint64_t)n;
}

static void w_latency(const net_sys *sys, net_meas *m)
{
    net_latency(sys, m, cfg_calls);
}

static double net_warm(void)
{
    return cfg_seconds / 5 < 0.05 ? 0.05 : cfg_seconds / 5;
}

static void w_threads(const net_sys *sys, net_meas *m)
{
    uint64_t calls;
    double el;

    sys->threads(cfg_threads, net_warm(), cfg_seconds, &calls, &el);
    m->v[0] = (double)calls / el;
    m->iters = calls;
}

static void w_pipelined(const net_sys *sys, net_meas *m)
{
    uint64_t calls;
    double el;

    sys->pipelined(cfg_window, net_warm(), cfg_seconds, &calls, &el);
    m->v[0] = (double)calls / el;
    m->iters = calls;
}

/* Latency calls per method in the dedup workload: the two together make one
 * net-latency measurement. */
#define NET_DEDUP_CALLS (cfg_calls / 2)

/*
 * The cost of at-most-once: w_pipelined, and net_latency's p50 of
 * NET_DEDUP_CALLS calls, with add, which the server runs through its
 * reply cache, and with add_idem, which it runs without; each kind of
 * measurement once with each method, back to back, the method that goes
 * first alternating from one measurement to the next; the ratios are
 * taken within the measurement.  Each figure's iterations are its own
 * calls (a ratio's: both sides').
 */
static void w_dedup(const net_sys *sys, net_meas *m)
{
    static unsigned turn;
    unsigned first = turn++ & 1u;
    int f, k;

    for (f = 0; f < 2; f++)
        for (k = 0; k < 2; k++) {
            int idem = (int)((unsigned)k ^ first);
            net_meas one;

            memset(&one, 0, sizeof one);
            sys->idempotent(idem != 0);
            if (f == 0)
                w_pipelined(sys, &one);
            else
                net_latency(sys, &one, NET_DEDUP_CALLS);
            m->v[3 * f + idem] = one.v[0];      /* calls/s, or p50 */
            m->iters_of[3 * f + idem] = one.iters;
        }
    sys->idempotent(false);
    for (f = 0; f < 2; f++) {
        m->v[3 * f + 2] = m->v[3 * f + 1] > 0 ? m->v[3 * f] / m->v[3 * f + 1] : 0;
        m->iters_of[3 * f + 2] = m->iters_of[3 * f] + m->iters_of[3 * f + 1];
    }
    m->iters = m->iters_of[0];
}

static void net_bulk(const net_sys *sys, net_meas *m, size_t size)
{
    uint64_t calls;
    double el;

    sys->bulk(size, 3, cfg_seconds, &calls, &el);
    m->v[0] = (double)calls * (double)size / el / NET_GIB;
    m->v[1] = el / (double)calls * 1e3;
    m->iters = calls;
}

static void w_bulk1(const net_sys *sys, net_meas *m)
{
    net_bulk(sys, m, 1u << 20);
}

static void w_bulk64(const net_sys *sys, net_meas *m)
{
    net_bulk(sys, m, 64u << 20);
}

static void w_mixed(const net_sys *sys, net_meas *m)
{
    net_mixed_out o;

    memset(&o, 0, sizeof o);
    sys->mixed(cfg_mixed_calls, lat_buf, NET_MIXED_MAX_BUSY, busy_buf, cfg_mixed_seconds,
               64u << 20, &o);
    m->v[0] = net_pct(lat_buf, o.n_idle, 0.50);
    m->v[1] = net_pct(lat_buf, o.n_idle, 0.99);
    m->v[2] = net_pct(busy_buf, o.n_busy, 0.50);
    m->v[3] = net_pct(busy_buf, o.n_busy, 0.99);
    m->v[4] = m->v[1] > 0 ? m->v[3] / m->v[1] : 0;
    m->v[5] = o.bulk_seconds > 0 ? (double)o.bulk_calls * 64 * NET_MIB /
                                   o.bulk_seconds / NET_GIB : 0;
    m->iters = (uint64_t)o.n_busy;
    if (o.n_busy < 100 || o.bulk_calls < 2)
        fprintf(stderr, "bench: net mixed %s: only %d calls under transfer and %llu "
                "transfers in %.1f s\n", sys->system, o.n_busy,
                (unsigned long long)o.bulk_calls, cfg_mixed_seconds);
}

static volatile uint64_t net_sink;

static void w_local(const net_sys *sys, net_meas *m)
{
    uint64_t (*batch)(uint64_t) = sys == &net_qrpc ? net_local_qrpc : net_local_direct;
    uint64_t n = 0, b = sys == &net_qrpc ? 64 : 4096;
    double t0 = bench_now(), t;

    do {
        net_sink += batch(b);
        n += b;
        t = bench_now();
    } while (t - t0 < cfg_seconds);
    m->v[0] = (t - t0) / (double)n * 1e9;
    m->iters = n;
}

static const net_workload net_workloads[] = {
    { "net-latency", "latency", 3, { "p50", "p99", "p99.9" }, { "us", "us", "us" },
      0x7, false, w_latency },
    { "net-threads", "threads", 1, { "calls/s" }, { "calls/s" }, 0x1, false, w_threads },
    { "net-pipelined", "pipelined", 1, { "calls/s" }, { "calls/s" }, 0x1, false,
      w_pipelined },
    { "net-dedup", "dedup", 6,
      { "calls/s_at-most-once", "calls/s_idempotent", "calls/s_at-most-once/idempotent",
        "p50_at-most-once", "p50_idempotent", "p50_at-most-once/idempotent" },
      { "calls/s", "calls/s", "x", "us", "us", "x" }, 0x0, false, w_dedup },
    { "net-bulk-1MiB", "bulk 1 MiB", 2, { "GiB/s", "ms/call" }, { "GiB/s", "ms" }, 0x1,
      false, w_bulk1 },
    { "net-bulk-64MiB", "bulk 64 MiB", 2, { "GiB/s", "ms/call" }, { "GiB/s", "ms" }, 0x1,
      false, w_bulk64 },
    { "net-mixed", "mixed", 6,
      { "p50_idle", "p99_idle", "p50_busy", "p99_busy", "p99_busy/idle", "bulk_GiB/s" },
      { "us", "us", "us", "us", "x", "GiB/s" }, 0xf, false, w_mixed },
    { "net-local", "in-process", 1, { "ns/call" }, { "ns" }, 0x1, true, w_local },
};
#define NET_NWORK ((int)(sizeof net_workloads / sizeof net_workloads[0]))

static const char *net_sys_name(const net_workload *w, int s)
{
    return w->local && s == NET_REF ? "direct" : net_systems[s]->system;
}

/*
 * Whether system s takes part in workload w: the in-process workload is
 * qrpc's own, against a direct call (in bare's place); a system without
 * the workload's function (NULL in its net_sys) sits it out; so does one
 * without idempotent() in the dedup workload.
 */
static bool net_takes_part(const net_workload *w, int s)
{
    const net_sys *sys = net_systems[s];

    if (w->local)
        return s == NET_QRPC || s == NET_REF;
    if (w->fn == w_pipelined)
        return sys->pipelined != NULL;
    if (w->fn == w_mixed)
        return sys->mixed != NULL;
    if (w->fn == w_dedup)
        return sys->idempotent != NULL;
    return true;
}

/* Runs one measurement, redone while disturbed (bounded), under the watchdog. */
static void net_measure(const net_workload *w, int s, int run, net_meas *m)
{
    int cpus[2], ncpu = 0, retry, i;
    unsigned limit;

    cpus[ncpu++] = cfg_client_cpu;
    if (!w->local && cfg_server_cpu >= 0 && cfg_client_cpu >= 0)
        cpus[ncpu++] = cfg_server_cpu;
    /* generous: a hung server must not hang make bench */
    limit = 60 + (unsigned)(10 * (cfg_seconds + cfg_mixed_seconds)) +
            (unsigned)(cfg_calls / 1000);
    for (retry = 0;; retry++) {
        net_load a, b;

        memset(m, 0, sizeof *m);
        alarm(limit);
        net_load_read(&a, cpus, ncpu, !w->local);
        w->fn(net_systems[s], m);
        net_load_read(&b, cpus, ncpu, !w->local);
        alarm(0);
        net_load_diff(&a, &b, ncpu, &m->steal, &m->share);
        printf("bench: net %s %s run %d/%d:", w->label, net_sys_name(w, s), run + 1,
               cfg_runs);
        for (i = 0; i < w->nmetrics; i++)
            printf(" %s %.4g", w->metric[i], m->v[i]);
        printf(" (steal %.1f%%, CPU share %.0f%%)", m->steal, m->share);
        if (m->steal <= BENCH_STEAL_LIMIT_PCT && m->share >= BENCH_CPU_SHARE_MIN_PCT)
            break;
        if (retry == BENCH_STEAL_RETRIES) {
            printf(" -- disturbed, kept after %d retries", retry);
            break;
        }
        printf(" -- disturbed (steal over %.0f%% or CPU share under %.0f%%), redoing\n",
               BENCH_STEAL_LIMIT_PCT, BENCH_CPU_SHARE_MIN_PCT);
        fflush(stdout);
    }
    printf("\n");
    fflush(stdout);
}

static void net_write(FILE *out, const char *system, const char *workload,
                      const char *metric, const char *unit, const double *v,
                      const double *st, const double *sh, const uint64_t *it, int n)
{
    bench_result r;

    r.system = system;
    r.workload = workload;
    r.metric = metric;
    r.unit = unit;
    bench_summarise(&r, v, st, sh, it, n);
    bench_write_jsonl(out, &r);
}

/* A fact of the configuration, for the report's text. */
static void net_fact(FILE *out, const char *metric, double value)
{
    double v[1] = { value };

    net_write(out, "bench", "net-config", metric, "", v, NULL, NULL, NULL, 1);
}

/* Whether name is an item of list, a comma-separated list. */
static bool net_listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    const char *p = list;

    while ((p = strstr(p, name)) != NULL) {
        if ((p == list || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
            return true;
        p += n;
    }
    return false;
}

/* BENCH_NET_ONLY: a comma-separated list of workloads (net-latency, ...), or all. */
static bool net_selected(const net_workload *w, const char *only)
{
    return only == NULL || *only == '\0' || net_listed(only, w->name);
}

/*
 * BENCH_NET_SYSTEMS: a comma-separated list of systems, or all; a name
 * that is no system of this program (grpc in bench_net) is an error, not
 * an empty benchmark.
 */
static void net_pick_systems(const char *list, bool *on)
{
    const char *p = list;
    int s;

    for (s = 0; s < NET_NSYS; s++)
        on[s] = list == NULL || *list == '\0' || net_listed(list, net_systems[s]->system);
    while (list != NULL && *p != '\0') {
        size_t n = strcspn(p, ",");
        bool known = n == 0;

        for (s = 0; s < NET_NSYS && !known; s++)
            known = strlen(net_systems[s]->system) == n &&
                    strncmp(p, net_systems[s]->system, n) == 0;
        if (!known) {
            fprintf(stderr, "bench: net: BENCH_NET_SYSTEMS names %.*s, which is not a "
                    "system of this program (systems:", (int)n, p);
            for (s = 0; s < NET_NSYS; s++)
                fprintf(stderr, " %s", net_systems[s]->system);
            fprintf(stderr, "%s)\n", NET_NSYS == 4 ? "; make bench-peers has the peers" : "");
            exit(2);
        }
        p += n + (p[n] == ',');
    }
}

int main(int argc, char **argv)
{
    const char *only = getenv("BENCH_NET_ONLY");
    const char *systems = getenv("BENCH_NET_SYSTEMS");
    bool sys_on[NET_NSYS];
    static net_meas meas[NET_NWORK][NET_NSYS][BENCH_MAX_RUNS];
    struct sigaction sa;
    FILE *out;
    int run, wi, k, s, i, ncpus;

    if (argc == 3 && strcmp(argv[1], "--serve") == 0) {
        for (s = 0; s < NET_NSYS; s++)
            if (strcmp(argv[2], net_systems[s]->system) == 0)
                return net_systems[s]->serve();
        fprintf(stderr, "bench_net: no system %s\n", argv[2]);
        return 2;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: bench_net RESULTS.jsonl\n");
        return 2;
    }
    /* BENCH_NET_SYSTEMS (for profiling one alone) */
    net_pick_systems(systems, sys_on);
    for (s = 0; s < NET_NSYS; s++) {
        char why[160] = "";

        if (sys_on[s] && net_systems[s]->available != NULL &&
            !net_systems[s]->available(why, sizeof why)) {
            printf("bench: net: %s skipped: %s\n", net_systems[s]->system, why);
            sys_on[s] = false;
        }
    }
    cfg_runs = bench_env_int("BENCH_RUNS", 5, 3, BENCH_MAX_RUNS);
    cfg_seconds = bench_env_double("BENCH_NET_SECONDS", 0.5, 0.05, 60.0);
    cfg_calls = bench_env_int("BENCH_NET_CALLS", 20000, 1000, 10000000);
    cfg_warmup = bench_env_int("BENCH_NET_WARMUP", 2000, 0, 10000000);
    cfg_mixed_calls = bench_env_int("BENCH_NET_MIXED_CALLS", 2000, 100, 10000000);
    cfg_mixed_seconds = bench_env_double("BENCH_NET_MIXED_SECONDS", 2.0, 0.1, 60.0);
    cfg_threads = bench_env_int("BENCH_NET_THREADS", 16, 1, 1024);
    cfg_window = bench_env_int("BENCH_NET_WINDOW", 256, 1, 1000);
    cfg_server_cpu = bench_env_int("BENCH_NET_SERVER_CPU", 1, -1, CPU_SETSIZE - 1);
    cfg_client_cpu = bench_watched_cpu();
    ncpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (cfg_server_cpu >= ncpus || cfg_server_cpu == cfg_client_cpu) {
        printf("bench: net: cannot pin the servers to CPU %d (client on %d, %d CPUs): "
               "servers unpinned\n", cfg_server_cpu, cfg_client_cpu, ncpus);
        cfg_server_cpu = -1;
    }

    out = fopen(argv[1], "ae");
    if (out == NULL) {
        perror(argv[1]);
        return 1;
    }
    lat_buf = malloc(sizeof *lat_buf * (size_t)(cfg_calls > cfg_mixed_calls ? cfg_calls
                                                                           : cfg_mixed_calls));
    busy_buf = malloc(sizeof *busy_buf * (size_t)NET_MIXED_MAX_BUSY);
    if (lat_buf == NULL || busy_buf == NULL) {
        fprintf(stderr, "bench: net: out of memory\n");
        return 1;
    }

    for (s = 0; s < NET_NSYS; s++) {
        servers[s].pid = 0;
        servers[s].lifeline = -1;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = net_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    if (atexit(net_stop_servers) != 0) {
        fprintf(stderr, "bench: net: atexit failed\n");
        return 1;
    }

    printf("bench: net: %d runs; %d latency calls; %.2f s per throughput measurement; "
           "%d threads; %d in flight; client on CPU %d, servers on CPU %d\n",
           cfg_runs, cfg_calls, cfg_seconds, cfg_threads, cfg_window, cfg_client_cpu,
           cfg_server_cpu);
    alarm(60);
    for (s = 0; s < NET_NSYS; s++) {
        if (!sys_on[s])
            continue;
        net_spawn(&servers[s], net_systems[s]);
        printf("bench: net: %s server pid %d on %s\n", net_systems[s]->system,
               (int)servers[s].pid, servers[s].addr);
    }
    for (s = 0; s < NET_NSYS; s++) {
        if (!sys_on[s])
            continue;
        net_systems[s]->open(servers[s].addr);
        if (cfg_warmup > 0)
            net_systems[s]->latency(cfg_warmup < cfg_calls ? cfg_warmup : cfg_calls,
                                    lat_buf);
    }
    net_sink += net_local_qrpc_setup();
    alarm(0);

    /* every round, every workload on every system, the first one rotating */
    for (run = 0; run < cfg_runs; run++)
        for (wi = 0; wi < NET_NWORK; wi++)
            for (k = 0; k < NET_NSYS; k++) {
                s = (k + run) % NET_NSYS;
                if (net_selected(&net_workloads[wi], only) && sys_on[s] &&
                    net_takes_part(&net_workloads[wi], s))
                    net_measure(&net_workloads[wi], s, run, &meas[wi][s][run]);
            }

    for (wi = 0; wi < NET_NWORK; wi++) {
        const net_workload *w = &net_workloads[wi];

        if (!net_selected(w, only))
            continue;
        double v[BENCH_MAX_RUNS], st[BENCH_MAX_RUNS], sh[BENCH_MAX_RUNS];
        uint64_t it[BENCH_MAX_RUNS];
        char rname[32], rmetric[48];

        for (i = 0; i < w->nmetrics; i++) {
            for (s = 0; s < NET_NSYS; s++) {
                if (!sys_on[s] || !net_takes_part(w, s))
                    continue;
                for (run = 0; run < cfg_runs; run++) {
                    v[run] = meas[wi][s][run].v[i];
                    st[run] = meas[wi][s][run].steal;
                    sh[run] = meas[wi][s][run].share;
                    it[run] = meas[wi][s][run].iters_of[i] != 0
                                  ? meas[wi][s][run].iters_of[i] : meas[wi][s][run].iters;
                }
                net_write(out, net_sys_name(w, s), w->name, w->metric[i], w->unit[i], v,
                          st, sh, it, cfg_runs);
            }
            if (!(w->ratios & (1u << i)) || !sys_on[NET_REF])
                continue;
            /* each system / bare, per round; as disturbed as the worse of the two */
            for (s = 0; s < NET_NSYS; s++) {
                if (s == NET_REF || !sys_on[s] || !net_takes_part(w, s))
                    continue;
                for (run = 0; run < cfg_runs; run++) {
                    const net_meas *q = &meas[wi][s][run], *o = &meas[wi][NET_REF][run];

                    v[run] = o->v[i] > 0 ? q->v[i] / o->v[i] : 0;
                    st[run] = q->steal > o->steal ? q->steal : o->steal;
                    sh[run] = q->share < o->share ? q->share : o->share;
                }
                snprintf(rname, sizeof rname, "%s/%s", net_sys_name(w, s),
                         net_sys_name(w, NET_REF));
                snprintf(rmetric, sizeof rmetric, "ratio:%s", w->metric[i]);
                net_write(out, rname, w->name, rmetric, "x", v, st, sh, NULL, cfg_runs);
            }
        }
    }
    net_fact(out, "threads", cfg_threads);
    net_fact(out, "window", cfg_window);
    net_fact(out, "latency_calls", cfg_calls);
    net_fact(out, "dedup_calls", NET_DEDUP_CALLS);
    net_fact(out, "mixed_calls", cfg_mixed_calls);
    net_fact(out, "mixed_seconds", cfg_mixed_seconds);
    net_fact(out, "seconds", cfg_seconds);
    net_fact(out, "client_cpu", cfg_client_cpu);
    net_fact(out, "server_cpu", cfg_server_cpu);
    net_fact(out, "qrpc_rcvbuf", net_qrpc_rcvbuf());
    net_fact(out, "qrpc_spin_us", net_qrpc_spin_us());
    net_fact(out, "qrpc_bulk_lane", net_qrpc_bulk_lane());

    net_local_qrpc_teardown();
    for (s = 0; s < NET_NSYS; s++)
        if (sys_on[s])
            net_systems[s]->close();
    net_stop_servers();
    printf("bench: net done (checksum %llu)\n", (unsigned long long)net_sink);
    if (fclose(out) != 0) {
        perror(argv[1]);
        return 1;
    }
    return 0;
}
