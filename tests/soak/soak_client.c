/*
 * soak_client.c - one client process of the at-most-once soak test
 * (tests/unit/test_soak.c) and of the binding test (tests/unit/
 * test_binding.c): makes a fixed number of incrementBy and deposit calls
 * (or of total() calls) on soak.Ledger (tests/idl/soak.qidl) and writes
 * down what each of them returned.
 *
 *   soak-client (--target 127.0.0.1:PORT | --master ADDR) --index K
 *               --calls N --seed S --out FILE [--timeout-ms T]
 *               [--retry-ms R] [--threads M] [--method total] [--pace-ms P]
 *
 * What it is: M threads, each with its own qrpc_client on one shared node,
 * making N synchronous calls in all.  Call i (0 <= i < N; thread t makes
 * the calls i = t, t + M, ...) has the operation id (K << 32) | i, unique
 * in the whole run, and its method (incrementBy or deposit), account
 * (0..7) and amount (1..100) are drawn from S and that id alone, so they
 * do not depend on the threads' timing.  For every call, once it has
 * returned, one line "op method account amount status" goes to FILE
 * (method is the method id, status the call's return code) and one byte
 * to stdout (the driver counts them to schedule its server kills).  At the
 * end FILE gets "retransmissions R calls C" from qrpc_node_get_stats().
 * T and R are the node's timeout_ms and retry_ms (0: the runtime's
 * defaults; R -1: never retransmit).  The node logs to stderr.
 *
 * --target names the server's address.  --master ADDR instead binds by
 * name: the node has the master at ADDR (qrpc_node_config.master) and its
 * clients are created with target NULL, so that each call goes to a node
 * the cluster table lists as serving soak.Ledger@1.  Without --master the
 * node has no master, whatever QRPC_MASTER says.  With it, stdout also
 * gets a line "binding master M epoch E nodes N" (M in hex) at first and
 * whenever the table the node holds changes (qrpc_node_get_binding(),
 * looked at every ~20 ms by a thread of its own; each line is one
 * write(), so no progress byte lands inside it: a driver counts the '.'
 * bytes outside lines), and the last line of FILE goes on with the table
 * held at the end: " master M epoch E nodes N".
 *
 * --method total makes every call the idempotent total() instead (its
 * line is "op 3 0 0 status": method total's id, no account, no amount);
 * by default a call is incrementBy or deposit, as above.  --pace-ms P
 * makes each thread pause P ms after every call (0, the default: none),
 * which bounds the load a long-running client puts on a shared machine.
 *
 * Any byte read on stdin asks it to stop early: each thread finishes the
 * call it is making and makes no more, FILE gets its last line, and it
 * exits 0 with fewer than N lines (a driver that runs the clients for as
 * long as a scenario lasts, rather than for a number of calls).
 *
 * A call's error is a result to write down, never a reason to stop: the
 * process exits 0 once every call has returned, whatever they returned.
 * After a runtime error a thread pauses a few milliseconds, as a real
 * client would back off: while the server is down, calls fail within
 * microseconds (QRPC_EUNAVAILABLE, or QRPC_EUNKNOWN when the proxy took
 * the request before it found nobody behind it), and without the pause a
 * restart would burn through most of the calls.  The pause paces the
 * load; it synchronises nothing.
 *
 * It exits (status 4) as soon as its stdin reaches end of file, even
 * after a byte asked it to stop: the driver holds the other end of a
 * pipe, so no client outlives its test.
 *
 * What it is not: a benchmark (one byte per call to stdout, a mutex per
 * line) or a checker (the driver checks; this only reports).  Exit
 * status: 0, 1 on a setup or output error, 2 on a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qrpc.h"
#include "soak.h"
#include "soak_record.h"

#define SOAK_ERROR_PAUSE_MS 5
#define SOAK_BINDING_PERIOD_MS 20
#define SOAK_MAX_THREADS 256

typedef struct soak_opts {
    const char *target;                 /* NULL: bound by name, through master */
    const char *master;
    const char *out;
    uint32_t index;
    uint32_t calls;
    uint64_t seed;
    uint32_t timeout_ms;
    int32_t retry_ms;
    unsigned threads;
    bool total;                         /* --method total */
    unsigned pace_ms;                   /* a pause after every call */
} soak_opts;

/* Set by the lifeline thread when a byte came on stdin: make no more calls. */
static atomic_bool soak_stop;

/* What the threads share. */
typedef struct soak_run {
    const soak_opts *o;
    qrpc_node *node;
    pthread_mutex_t out_lock;   /* FILE's own lock would do, but keep lines whole */
    FILE *out;
    bool out_failed;
    atomic_bool calls_done;     /* the binding reporter's cue to end */
} soak_run;

typedef struct soak_thread {
    soak_run *run;
    unsigned t;
    pthread_t id;
    int setup_error;            /* 0, or why the thread could not make its calls */
} soak_thread;

static uint64_t soak_mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15u;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void soak_nap_ms(unsigned ms)
{
    struct timespec ts = { 0, (long)ms * 1000000L };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Makes the calls of thread th; each call's outcome becomes one line. */
static void *soak_thread_main(void *arg)
{
    soak_thread *th = arg;
    soak_run *run = th->run;
    const soak_opts *o = run->o;
    qrpc_client *c = NULL;
    uint32_t i;

    th->setup_error = soak_Ledger_connect(run->node, o->target, &c);
    if (th->setup_error != 0)
        return NULL;
    for (i = th->t; i < o->calls && !atomic_load(&soak_stop); i += o->threads) {
        uint64_t op = (uint64_t)o->index << 32 | i;
        uint64_t r = soak_mix(o->seed ^ soak_mix(op));
        bool deposit = (r & 1) != 0;
        uint32_t account = deposit ? (uint32_t)((r >> 8) % SOAK_ACCOUNTS) : 0;
        int64_t amount = 1 + (int64_t)((r >> 16) % 100);
        int64_t result = 0;
        uint32_t method;
        int status;

        if (o->total) {
            method = soak_Ledger_total_ID;
            account = 0;
            amount = 0;
            status = soak_Ledger_total(c, &result);
        } else if (deposit) {
            method = soak_Ledger_deposit_ID;
            status = soak_Ledger_deposit(c, op, account, amount, &result);
        } else {
            method = soak_Ledger_incrementBy_ID;
            status = soak_Ledger_incrementBy(c, op, amount, &result);
        }

        pthread_mutex_lock(&run->out_lock);
        if (fprintf(run->out, "%" PRIu64 " %" PRIu32 " %" PRIu32 " %" PRId64 " %d\n", op,
                    method, account, amount, status) < 0)
            run->out_failed = true;
        pthread_mutex_unlock(&run->out_lock);
        /* progress for the driver; a single byte to a pipe is written whole */
        (void)!write(1, ".", 1);
        if (status < 0)
            soak_nap_ms(SOAK_ERROR_PAUSE_MS);
        if (o->pace_ms != 0)
            soak_nap_ms(o->pace_ms);
    }
    qrpc_client_destroy(c);
    return NULL;
}

/* With --master: reports the node's table on stdout whenever it changes. */
static void *soak_binding_main(void *arg)
{
    soak_run *run = arg;
    char last[160] = "";

    while (!atomic_load(&run->calls_done)) {
        qrpc_binding_info b;
        char now[160];
        int n;

        if (qrpc_node_get_binding(run->node, &b) == 0) {
            n = snprintf(now, sizeof now, "binding master %#" PRIx64 " epoch %" PRIu64
                         " nodes %" PRIu32 "\n", b.master, b.epoch, b.nodes);
            if (n > 0 && (size_t)n < sizeof now && strcmp(now, last) != 0) {
                /* one write: whole, as the progress bytes around it are */
                (void)!write(1, now, (size_t)n);
                memcpy(last, now, (size_t)n + 1);
            }
        }
        soak_nap_ms(SOAK_BINDING_PERIOD_MS);
    }
    return NULL;
}

/*
 * The lifeline: the driver is gone when our stdin reaches end of file.
 * A byte on it asks for an early stop.
 */
static void *soak_lifeline(void *arg)
{
    char junk[64];

    (void)arg;
    for (;;) {
        ssize_t r = read(0, junk, sizeof junk);

        if (r == 0 || (r < 0 && errno != EINTR))
            _exit(4);
        if (r > 0)
            atomic_store(&soak_stop, true);
    }
    return NULL;
}

static void soak_usage(void)
{
    fputs("usage: soak-client (--target 127.0.0.1:PORT | --master ADDR) --index K\n"
          "                   --calls N --seed S --out FILE [--timeout-ms T]\n"
          "                   [--retry-ms R] [--threads M] [--method total]\n"
          "                   [--pace-ms P]\n", stderr);
}

/* A whole decimal number in [min, max] into *v; false after saying what is wrong. */
static bool soak_num(const char *name, const char *s, int64_t min, int64_t max, int64_t *v)
{
    char *end;
    long long x;

    errno = 0;
    x = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || x < min || x > max) {
        fprintf(stderr, "soak-client: --%s: expected %" PRId64 "..%" PRId64 ", got '%s'\n",
                name, min, max, s);
        return false;
    }
    *v = x;
    return true;
}

/* Returns 0, or 2 (the usage exit status) after saying what is wrong. */
static int soak_parse(int argc, char **argv, soak_opts *o)
{
    static const struct option longopts[] = {
        { "target", required_argument, NULL, 't' },
        { "index", required_argument, NULL, 'k' },
        { "calls", required_argument, NULL, 'n' },
        { "seed", required_argument, NULL, 's' },
        { "out", required_argument, NULL, 'o' },
        { "timeout-ms", required_argument, NULL, 'T' },
        { "retry-ms", required_argument, NULL, 'R' },
        { "threads", required_argument, NULL, 'M' },
        { "master", required_argument, NULL, 'm' },
        { "method", required_argument, NULL, 'x' },
        { "pace-ms", required_argument, NULL, 'P' },
        { NULL, 0, NULL, 0 },
    };
    bool have_index = false, have_calls = false, have_seed = false;
    int c;

    memset(o, 0, sizeof *o);
    o->threads = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int64_t v = 0;
        char *end;

        if (c == '?') {
            fprintf(stderr, "soak-client: bad option %s\n", argv[optind - 1]);
            soak_usage();
            return 2;
        }
        switch (c) {
        case 't':
            o->target = optarg;
            break;
        case 'm':
            o->master = optarg;
            break;
        case 'x':
            if (strcmp(optarg, "total") != 0) {
                fprintf(stderr, "soak-client: --method: only 'total', got '%s'\n", optarg);
                return 2;
            }
            o->total = true;
            break;
        case 'o':
            o->out = optarg;
            break;
        case 's':
            /* the whole u64 range: strtoll would refuse half of it */
            errno = 0;
            o->seed = strtoull(optarg, &end, 10);
            if (*optarg < '0' || *optarg > '9' || *end != '\0' || errno != 0) {
                fprintf(stderr, "soak-client: --seed: expected 0..2^64-1, got '%s'\n", optarg);
                return 2;
            }
            have_seed = true;
            break;
        case 'k':
            if (!soak_num("index", optarg, 0, UINT32_MAX, &v))
                return 2;
            o->index = (uint32_t)v;
            have_index = true;
            break;
        case 'n':
            if (!soak_num("calls", optarg, 0, UINT32_MAX, &v))
                return 2;
            o->calls = (uint32_t)v;
            have_calls = true;
            break;
        case 'T':
            if (!soak_num("timeout-ms", optarg, 0, UINT32_MAX, &v))
                return 2;
            o->timeout_ms = (uint32_t)v;
            break;
        case 'R':
            if (!soak_num("retry-ms", optarg, -1, 3600000, &v))
                return 2;
            o->retry_ms = (int32_t)v;
            break;
        case 'M':
            if (!soak_num("threads", optarg, 1, SOAK_MAX_THREADS, &v))
                return 2;
            o->threads = (unsigned)v;
            break;
        case 'P':
            if (!soak_num("pace-ms", optarg, 0, 999, &v))
                return 2;
            o->pace_ms = (unsigned)v;
            break;
        default:
            soak_usage();
            return 2;
        }
    }
    if (optind < argc || (o->target == NULL) == (o->master == NULL) || o->out == NULL ||
        !have_index || !have_calls || !have_seed) {
        soak_usage();
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static soak_thread threads[SOAK_MAX_THREADS];
    soak_run run = { .out_lock = PTHREAD_MUTEX_INITIALIZER };
    qrpc_node_config cfg;
    qrpc_node_stats st;
    qrpc_binding_info b;
    char binding[128] = "";
    pthread_t life, reporter;
    bool reporting = false;
    soak_opts o;
    unsigned t, started = 0;
    int status = 1, rc;

    rc = soak_parse(argc, argv, &o);
    if (rc != 0)
        return rc;
    run.o = &o;
    /* the driver may stop reading our progress bytes on its way out */
    signal(SIGPIPE, SIG_IGN);

    run.out = fopen(o.out, "we");
    if (run.out == NULL) {
        fprintf(stderr, "soak-client: %s: %s\n", o.out, strerror(errno));
        goto out;
    }
    rc = pthread_create(&life, NULL, soak_lifeline, NULL);
    if (rc != 0) {
        fprintf(stderr, "soak-client: lifeline thread: %s\n", strerror(rc));
        goto out_file;
    }
    pthread_detach(life);

    qrpc_node_config_init(&cfg);
    cfg.timeout_ms = o.timeout_ms;
    cfg.retry_ms = o.retry_ms;
    cfg.master = o.master != NULL ? o.master : "";     /* "": none, whatever QRPC_MASTER says */
    rc = qrpc_node_create(&cfg, &run.node);
    if (rc != 0) {
        fprintf(stderr, "soak-client: qrpc_node_create: %s\n", qrpc_strerror(rc));
        goto out_file;
    }
    if (o.master != NULL) {
        rc = pthread_create(&reporter, NULL, soak_binding_main, &run);
        if (rc != 0) {
            fprintf(stderr, "soak-client: binding thread: %s\n", strerror(rc));
            goto out_node;
        }
        reporting = true;
    }
    for (t = 0; t < o.threads; t++) {
        threads[t].run = &run;
        threads[t].t = t;
        rc = pthread_create(&threads[t].id, NULL, soak_thread_main, &threads[t]);
        if (rc != 0) {
            fprintf(stderr, "soak-client: thread %u: %s\n", t, strerror(rc));
            break;
        }
        started++;
    }
    for (t = 0; t < started; t++)
        pthread_join(threads[t].id, NULL);
    if (started < o.threads)
        goto out_node;
    for (t = 0; t < started; t++)
        if (threads[t].setup_error != 0) {
            fprintf(stderr, "soak-client: thread %u: connecting to %s: %s\n", t,
                    o.target != NULL ? o.target : "soak.Ledger (bound)",
                    qrpc_strerror(threads[t].setup_error));
            goto out_node;
        }

    qrpc_node_get_stats(run.node, &st);
    if (o.master != NULL && qrpc_node_get_binding(run.node, &b) == 0)
        snprintf(binding, sizeof binding, " master %#" PRIx64 " epoch %" PRIu64 " nodes %"
                 PRIu32, b.master, b.epoch, b.nodes);
    if (fprintf(run.out, "retransmissions %" PRIu64 " calls %" PRIu64 "%s\n",
                st.retransmissions, st.calls, binding) < 0 || run.out_failed) {
        fprintf(stderr, "soak-client: writing %s failed\n", o.out);
        goto out_node;
    }
    status = 0;

out_node:
    atomic_store(&run.calls_done, true);
    if (reporting)
        pthread_join(reporter, NULL);
    qrpc_node_destroy(run.node);
out_file:
    if (fclose(run.out) != 0 && status == 0) {
        fprintf(stderr, "soak-client: %s: %s\n", o.out, strerror(errno));
        status = 1;
    }
out:
    return status;
}
