/*
 * test_soak.c - the at-most-once soak test (issue 5): client processes
 * make thousands of incrementBy and deposit calls through tests/faultproxy
 * while the server is killed and restarted, and afterwards the server's
 * execution record is checked against what every call returned.
 *
 * The processes, all on 127.0.0.1 with ports of the system's choosing:
 *   - $QRPC_SOAK_SERVER (tests/soak/soak_server.c), serving soak.Ledger
 *     (tests/idl/soak.qidl) and appending one record per execution to a
 *     file in the test's directory; killed with SIGKILL at seeded moments
 *     and started again on the same port with the same file, which it
 *     rebuilds its state from;
 *   - two faultproxies in front of it, dropping, duplicating and delaying
 *     requests and replies and cutting connections: one at frame
 *     boundaries with a FIN, the other in the middle of frames with a
 *     reset;
 *   - $QRPC_SOAK_CLIENT processes (tests/soak/soak_client.c), each through
 *     one of the proxies, writing one line per call: its operation id,
 *     arguments and status.
 *
 * Once every client is done, the proxies and the server are stopped, a
 * final server is started on the record, and the checks are:
 *   (a) no operation appears twice in the record;
 *   (b) every call that returned 0 appears exactly once;
 *   (c) no call that returned QRPC_EUNAVAILABLE appears;
 *   (d) every record is an operation some client issued, with the same
 *       method, account and amount;
 *   (e) total(), asked of the final server directly (not through a
 *       proxy), equals the sum of the recorded amounts, and so does the
 *       total that the server which ran last with the clients held in
 *       memory when it stopped (its stats file says);
 * and, so that a quiet run cannot pass for a good one: the server was
 * restarted, the proxies cut connections and dropped messages, most calls
 * succeeded, no client got an application error.  One summary line gives
 * the figures.  Calls that returned QRPC_EUNKNOWN, QRPC_ETIMEDOUT or
 * another error may or may not have run; the summary says how many did.
 * On the way, the test fails as soon as a client stops getting answers
 * (every call has a deadline, so that is a hang), a process ends other
 * than as planned, or a sanitizer reports in a server's stderr.
 *
 * The test runs twice, in a directory of its own each time: without a
 * reply log, and with one (the server's dedup_log), where a restarted
 * server answers from the log the retransmissions meant for its earlier
 * lives instead of refusing them; the checks are the same.
 *
 * Sizes: by default a short run for `make check` (3 clients x 1500 calls,
 * 3 restarts at seeded points of the clients' progress); QRPC_SOAK_LONG=1
 * (`make soak`) runs 8 clients x 40000 calls with a restart every second
 * or so.  Environment overrides: SOAK_CLIENTS, SOAK_CALLS (per client),
 * SOAK_THREADS (per client), SOAK_RESTARTS (restarts at progress points),
 * SOAK_RESTART_MS (instead: a restart about this often), SOAK_TIMEOUT_MS
 * and SOAK_RETRY_MS (the clients' timeout_ms and retry_ms), SOAK_LIMIT_S
 * (how long the clients may take), QRPC_SOAK_SEED (the seed of every
 * random choice; printed), QRPC_SOAK_KEEP=1 (keep the test's directory:
 * record, client outputs, stderr files).
 *
 * Every process started is reaped, on success and on failure.  Each has a
 * lifeline: its stdin is a pipe from the test, so it exits as soon as the
 * test process is gone, even killed; and main(), which made the test's
 * directory, is their subreaper, so that after a failed check (which
 * Check ends with _exit(), running no atexit handler) it reaps them and
 * removes the directory.  Waits are polls on pipes with deadlines, and
 * for a process known to be ending (killed, or its pipe at end of file)
 * waitpid() tried every millisecond up to a bound.  The other timed pauses
 * are the schedule, not synchronisation: the seeded downtimes between a
 * kill and the restart, and a short pause before a server is started again
 * on a port that was briefly taken.
 */
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <sys/prctl.h>

#include "tcputil.h"
#include "fproxy.h"
#include "procutil.h"
#include "soak.h"
#include "../soak/soak_record.h"

#define SOAK_MAX_CLIENTS 64
#define SOAK_WAIT_MS     20000u         /* bound for what should be quick (start, stop) */
#define SOAK_START_TRIES 5              /* a restart may find its port briefly taken */

/* ---- the plan: sizes and seeds, from the environment ---------------------------- */

typedef struct soak_plan {
    bool long_run;
    uint64_t seed;
    unsigned clients;
    uint32_t calls;                     /* per client */
    unsigned threads;                   /* per client */
    unsigned restarts;                  /* at progress points; 0 with restart_ms */
    unsigned restart_ms;                /* a restart about this often; 0: progress points */
    unsigned down_ms;                   /* a killed server stays down 0..down_ms */
    uint32_t timeout_ms;
    int32_t retry_ms;
    unsigned limit_s;                   /* the clients must be done within this */
    bool reply_log;                     /* the server keeps a dedup_log (the second run) */
} soak_plan;

/*
 * The first bad value met in the environment, which the test then fails
 * on; main() reads the plan too (for the time limit), outside any test,
 * where a failed check could not be reported.
 */
static char soak_env_error[256];

/* An integer from the environment in [min, max], or def when unset (or bad). */
static long long soak_env_num(const char *name, long long def, long long min, long long max)
{
    const char *v = getenv(name);
    char *end;
    long long x;

    if (v == NULL || *v == '\0')
        return def;
    errno = 0;
    x = strtoll(v, &end, 0);
    if (end == v || *end != '\0' || errno != 0 || x < min || x > max) {
        if (soak_env_error[0] == '\0')
            snprintf(soak_env_error, sizeof soak_env_error, "%s=%s: expected %lld..%lld",
                     name, v, min, max);
        return def;
    }
    return x;
}

static void soak_plan_init(soak_plan *p)
{
    const char *seed = getenv("QRPC_SOAK_SEED");

    memset(p, 0, sizeof *p);
    p->long_run = soak_env_num("QRPC_SOAK_LONG", 0, 0, 1) != 0;
    p->seed = 0x50a6000000000005u;
    if (seed != NULL && *seed != '\0') {
        char *end;

        errno = 0;
        p->seed = strtoull(seed, &end, 0);
        if ((*end != '\0' || errno != 0) && soak_env_error[0] == '\0')
            snprintf(soak_env_error, sizeof soak_env_error, "QRPC_SOAK_SEED=%s: not a number",
                     seed);
    }
    p->clients = (unsigned)soak_env_num("SOAK_CLIENTS", p->long_run ? 8 : 3, 1,
                                        SOAK_MAX_CLIENTS);
    p->calls = (uint32_t)soak_env_num("SOAK_CALLS", p->long_run ? 40000 : 1500, 1, 100000000);
    p->threads = (unsigned)soak_env_num("SOAK_THREADS", 4, 1, 64);
    p->restart_ms = (unsigned)soak_env_num("SOAK_RESTART_MS", p->long_run ? 1000 : 0, 0,
                                           3600000);
    p->restarts = (unsigned)soak_env_num("SOAK_RESTARTS", p->restart_ms != 0 ? 0 : 3, 0, 1000);
    if (getenv("SOAK_RESTARTS") != NULL && getenv("SOAK_RESTART_MS") == NULL)
        p->restart_ms = 0;              /* asking for a count asks for progress points */
    p->down_ms = p->long_run ? 200 : 100;
    p->timeout_ms = (uint32_t)soak_env_num("SOAK_TIMEOUT_MS", p->long_run ? 2000 : 1000, 1,
                                           3600000);
    p->retry_ms = (int32_t)soak_env_num("SOAK_RETRY_MS", 100, -1, 3600000);
    p->limit_s = (unsigned)soak_env_num("SOAK_LIMIT_S", p->long_run ? 3600 : 100, 1, 86400);
}

/* ---- processes: the ones started and not reaped yet ------------------------------ */

/*
 * The test's directory (record, client outputs, stderr files, stats),
 * made and removed by main(): a failed check ends a forked Check test with
 * _exit(), which runs no atexit handler, so only the process that ran the
 * suite can clean up after it.
 */
static char soak_dir[64];
static char soak_base[48];      /* main()'s; soak_dir is a run's directory in it */

/* ---- the server ------------------------------------------------------------------ */

typedef struct soak_srv {
    pid_t pid;                          /* 0: not running */
    int life_fd;                        /* its stdin (write end) */
    int port;
    char addr[32];
    char err_path[96];
} soak_srv;

typedef struct soak_run {
    soak_plan plan;
    char record_path[96];
    char dlog_path[96];                 /* the server's dedup_log, when the plan has one */
    soak_srv srv;
    unsigned starts;                    /* incarnations started (the next one's number) */
    unsigned kills;                     /* SIGKILLs while the clients ran */
    fproxy px[2];
    struct soak_cli {
        pid_t pid;
        int life_fd;                    /* its stdin (write end) */
        int prog_fd;                    /* its stdout (read end): a byte per call; -1 at EOF */
        uint64_t done;
        int64_t moved_ms;               /* when a call of it last returned */
        int status;
        char out_path[96], err_path[96];
    } cli[SOAK_MAX_CLIENTS];
    uint64_t rng;
} soak_run;

static soak_run R;

/*
 * Starts incarnation R.starts of the server on port (0: any) and waits for
 * its address.  On a given port it tries again a few times: the port can be
 * briefly taken by a connection the proxy was making to it.
 */
static void soak_srv_start(int port)
{
    soak_srv *s = &R.srv;
    char listen[32], inc[16], stats[96], line[128];
    int tries;

    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    snprintf(inc, sizeof inc, "%u", R.starts);
    snprintf(stats, sizeof stats, "%s/stats-%u", soak_dir, R.starts);
    snprintf(s->err_path, sizeof s->err_path, "%s/server-%u.err", soak_dir, R.starts);
    for (tries = 1;; tries++) {
        char *argv[] = { (char *)tu_env("QRPC_SOAK_SERVER"), "--listen", listen, "--record",
                         R.record_path, "--stats", stats, "--incarnation", inc,
                         R.plan.reply_log ? "--dedup-log" : NULL, R.dlog_path, NULL };
        int out_fd, st;
        size_t len = 0;
        bool up;

        s->pid = pu_spawn(argv, s->err_path, &s->life_fd, &out_fd);
        line[0] = '\0';
        up = read_until(out_fd, line, sizeof line, &len, "\n", false, SOAK_WAIT_MS);
        close(out_fd);
        if (up && sscanf(line, "listening on 127.0.0.1:%d", &s->port) == 1 &&
            (port == 0 || s->port == port)) {
            snprintf(s->addr, sizeof s->addr, "127.0.0.1:%d", s->port);
            R.starts++;
            return;
        }
        kill(s->pid, SIGKILL);
        st = pu_reap(s->pid, SOAK_WAIT_MS);
        close(s->life_fd);
        s->pid = 0;
        ck_assert_msg(port != 0 && tries < SOAK_START_TRIES,
                      "server %u on %s did not start (%s, said '%s'); its stderr:\n%s",
                      R.starts, listen, pu_status_str(st), line, pu_tail(s->err_path));
        tt_nap_ms(50);                  /* a retry's pause: the port is not ours to watch */
    }
}

/*
 * A sanitizer's report in a server's stderr fails the test even when the
 * server was killed before it could exit with the sanitizer's status.
 */
/* The running server's name in messages (static storage). */
static const char *soak_srv_name(void)
{
    static char name[32];

    snprintf(name, sizeof name, "server %u", R.starts - 1);
    return name;
}

/* SIGKILL, as a crash: it must not have died of anything else first. */
static void soak_srv_kill(void)
{
    soak_srv *s = &R.srv;

    kill(s->pid, SIGKILL);
    pu_expect_end(s->pid, SOAK_WAIT_MS, true, NULL, soak_srv_name(), s->err_path);
    close(s->life_fd);
    s->pid = 0;
}

/* A clean stop, by SIGTERM or (sig 0) by closing its lifeline: it must exit 0. */
static void soak_srv_stop(int sig)
{
    soak_srv *s = &R.srv;

    if (sig != 0)
        kill(s->pid, sig);
    close(s->life_fd);
    pu_expect_end(s->pid, SOAK_WAIT_MS, false, sig != 0 ? "SIGTERM" : "end of its stdin",
                  soak_srv_name(), s->err_path);
    s->pid = 0;
}

/* ---- the clients ----------------------------------------------------------------- */

static void soak_cli_start(unsigned k)
{
    struct soak_cli *c = &R.cli[k];
    const soak_plan *p = &R.plan;
    char target[32], index[16], calls[16], seed[24], timeout[16], retry[16], threads[16];
    char *argv[] = { (char *)tu_env("QRPC_SOAK_CLIENT"), "--target", target, "--index", index,
                     "--calls", calls, "--seed", seed, "--out", c->out_path, "--timeout-ms",
                     timeout, "--retry-ms", retry, "--threads", threads, NULL };

    /* every other client goes through the proxy that cuts in mid-frame with resets */
    snprintf(target, sizeof target, "127.0.0.1:%d", R.px[k % 2].port);
    snprintf(index, sizeof index, "%u", k);
    snprintf(calls, sizeof calls, "%" PRIu32, p->calls);
    snprintf(seed, sizeof seed, "%" PRIu64, p->seed);
    snprintf(timeout, sizeof timeout, "%" PRIu32, p->timeout_ms);
    snprintf(retry, sizeof retry, "%" PRId32, p->retry_ms);
    snprintf(threads, sizeof threads, "%u", p->threads);
    snprintf(c->out_path, sizeof c->out_path, "%s/client-%u.out", soak_dir, k);
    snprintf(c->err_path, sizeof c->err_path, "%s/client-%u.err", soak_dir, k);
    c->pid = pu_spawn(argv, c->err_path, &c->life_fd, &c->prog_fd);
    c->done = 0;
    c->moved_ms = tt_now_ms();
    c->status = -1;
}

/* ---- the run: clients, kills and restarts ----------------------------------------- */

/* A message for a run out of time: each client's progress. */
static const char *soak_progress(void)
{
    static char s[1024];
    size_t len = 0;
    unsigned k;

    s[0] = '\0';
    for (k = 0; k < R.plan.clients && len < sizeof s - 64; k++)
        len += (size_t)snprintf(s + len, sizeof s - len, " client %u: %" PRIu64 "/%" PRIu32
                                "%s;", k, R.cli[k].done, R.plan.calls,
                                R.cli[k].prog_fd < 0 ? " (done)" : "");
    return s;
}

/* Seeded progress points for the restarts: one in each of restarts + 1 equal windows. */
static void soak_thresholds(uint64_t *at, uint64_t total)
{
    unsigned k, n = R.plan.restarts;

    for (k = 0; k < n; k++) {
        uint64_t window = total / (n + 1), jitter = window > 1 ? pu_rand(&R.rng) % window : 0;

        at[k] = window * (k + 1) - window / 2 + jitter;
        if (at[k] == 0)
            at[k] = 1;
    }
}

static int64_t soak_next_kill_at(int64_t now)
{
    unsigned ms = R.plan.restart_ms;

    /* about every restart_ms: uniformly in [ms / 2, 3 ms / 2] */
    return now + ms / 2 + (int64_t)(pu_rand(&R.rng) % (ms + 1));
}

/*
 * How long a running client may go without any call returning.  Every
 * call returns by its deadline (timeout_ms after its start) whatever the
 * network and the server do, so a client this quiet has a call that
 * outlived its deadline: a hang, reported long before the run's limit.
 */
static int64_t soak_stall_ms(void)
{
    return 10000 + 4 * (int64_t)R.plan.timeout_ms;
}

/*
 * Runs the clients to the end, killing and restarting the server as the
 * plan says; reaps every client.  The server is running when it returns.
 */
static void soak_drive(void)
{
    const soak_plan *p = &R.plan;
    uint64_t total = (uint64_t)p->clients * p->calls, done = 0;
    uint64_t *at = calloc(p->restarts + 1, sizeof *at);
    int64_t start = tt_now_ms(), deadline = start + (int64_t)p->limit_s * 1000;
    int64_t up_at = 0, kill_at = p->restart_ms != 0 ? soak_next_kill_at(start) : INT64_MAX;
    unsigned running = p->clients, next = 0, k;

    ck_assert_ptr_nonnull(at);
    soak_thresholds(at, total);
    for (k = 0; k < p->clients; k++)
        soak_cli_start(k);
    while (running > 0) {
        struct pollfd pf[SOAK_MAX_CLIENTS];
        unsigned who[SOAK_MAX_CLIENTS], n = 0, i;
        int64_t now = tt_now_ms(), wake = deadline;
        int pr;

        for (k = 0; k < p->clients; k++)
            if (R.cli[k].prog_fd >= 0) {
                pf[n] = (struct pollfd){ R.cli[k].prog_fd, POLLIN, 0 };
                who[n++] = k;
                if (R.cli[k].moved_ms + soak_stall_ms() < wake)
                    wake = R.cli[k].moved_ms + soak_stall_ms();
            }
        if (R.srv.pid == 0 && up_at < wake)
            wake = up_at;
        else if (R.srv.pid != 0 && kill_at < wake)
            wake = kill_at;
        pr = poll(pf, n, wake > now ? (int)(wake - now) : 0);
        PU_CHECK(pr >= 0 || errno == EINTR, "poll: %s", strerror(errno));
        for (i = 0; pr > 0 && i < n; i++) {
            struct soak_cli *c = &R.cli[who[i]];
            char buf[4096];
            ssize_t r;

            if (pf[i].revents == 0)
                continue;
            r = read(c->prog_fd, buf, sizeof buf);
            if (r > 0) {
                c->done += (uint64_t)r;
                c->moved_ms = tt_now_ms();
                done += (uint64_t)r;
                continue;
            }
            if (r < 0 && errno == EINTR)
                continue;
            /* end of file: the client is exiting */
            close(c->prog_fd);
            c->prog_fd = -1;
            c->status = pu_reap(c->pid, SOAK_WAIT_MS);
            close(c->life_fd);
            running--;
            PU_CHECK(c->status != -1 && WIFEXITED(c->status) &&
                       WEXITSTATUS(c->status) == 0,
                       "client %u: %s after %" PRIu64 " of %" PRIu32 " calls; its stderr "
                       "ends:\n%s", who[i], pu_status_str(c->status), c->done, p->calls,
                       pu_tail(c->err_path));
        }
        now = tt_now_ms();
        PU_CHECK(now < deadline, "the clients did not finish within %u s:%s", p->limit_s,
                   soak_progress());
        for (k = 0; k < p->clients; k++)
            PU_CHECK(R.cli[k].prog_fd < 0 || now - R.cli[k].moved_ms < soak_stall_ms(),
                       "client %u: no call returned for %" PRId64 " ms, though each has a "
                       "deadline of %" PRIu32 " ms (pid %d hangs):%s", k,
                       now - R.cli[k].moved_ms, p->timeout_ms, (int)R.cli[k].pid,
                       soak_progress());
        if (R.srv.pid != 0) {
            bool due = p->restart_ms != 0 ? now >= kill_at
                                          : next < p->restarts && done >= at[next];

            if (due && running > 0) {
                soak_srv_kill();
                R.kills++;
                next++;
                up_at = now + (int64_t)(pu_rand(&R.rng) % (p->down_ms + 1));
            }
        } else if (now >= up_at) {
            soak_srv_start(R.srv.port);
            if (p->restart_ms != 0)
                kill_at = soak_next_kill_at(tt_now_ms());
        }
    }
    if (R.srv.pid == 0)
        soak_srv_start(R.srv.port);
    free(at);
}

/* ---- the checks -------------------------------------------------------------------- */

/* What one call was and what became of it. */
typedef struct soak_call {
    int32_t status;
    uint32_t method, account;
    int64_t amount;
    bool issued;                        /* a client line names it */
    uint32_t execs;                     /* records of it */
} soak_call;

/* Violations of one invariant: how many, and the first few, described. */
typedef struct soak_bad {
    const char *what;
    uint64_t n;
    char first[512];
    size_t len;
} soak_bad;

enum { SOAK_TWICE, SOAK_OK_NOT_ONCE, SOAK_UNAVAILABLE_RAN, SOAK_STRAY, SOAK_N_BAD };

#define SOAK_N_STATUS 64                /* statuses 0 .. -62 counted apart; the rest as "other" */

/* Everything the checks count, for the summary line and the assertions. */
typedef struct soak_tally {
    uint64_t by_status[SOAK_N_STATUS];  /* [-status] */
    uint64_t ran_by_status[SOAK_N_STATUS];
    uint64_t apps;                      /* positive statuses: application errors */
    uint64_t executed;                  /* records */
    int64_t sum;                        /* of the recorded amounts */
    uint64_t retrans, node_calls;       /* the clients' last lines */
    uint64_t dups, refused;             /* every incarnation's stats */
    int64_t total, live_total;          /* the final server's total(); the last stats' total */
    soak_bad bad[SOAK_N_BAD];
} soak_tally;

static void soak_bad_add(soak_bad *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void soak_bad_add(soak_bad *b, const char *fmt, ...)
{
    va_list ap;
    int w;

    if (b->n++ < 4 && b->len < sizeof b->first - 1) {
        va_start(ap, fmt);
        w = vsnprintf(b->first + b->len, sizeof b->first - b->len, fmt, ap);
        va_end(ap);
        if (w > 0)
            b->len += (size_t)w < sizeof b->first - b->len ? (size_t)w
                                                           : sizeof b->first - 1 - b->len;
    }
}

/* Reads client k's output into calls[]; adds its last line's counters to t. */
static void soak_read_client(unsigned k, soak_call *calls, soak_tally *t)
{
    const struct soak_cli *c = &R.cli[k];
    char *text = tu_read_file(c->out_path, NULL), *line, *save = NULL;
    uint64_t lines = 0, rt = 0, nc = 0;
    bool have_end = false;

    PU_CHECK(text != NULL, "client %u left no %s", k, c->out_path);
    for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        uint64_t op;
        uint32_t method, account, i;
        int64_t amount;
        int status;
        soak_call *call;

        PU_CHECK(!have_end, "client %u: '%s' after its last line", k, line);
        if (sscanf(line, "retransmissions %" SCNu64 " calls %" SCNu64, &rt, &nc) == 2) {
            have_end = true;
            continue;
        }
        PU_CHECK(sscanf(line, "%" SCNu64 " %" SCNu32 " %" SCNu32 " %" SCNd64 " %d", &op,
                          &method, &account, &amount, &status) == 5,
                   "client %u: bad line '%s'", k, line);
        i = (uint32_t)op;
        PU_CHECK(op >> 32 == k && i < R.plan.calls, "client %u: op %#" PRIx64
                   " is not one of its own", k, op);
        call = &calls[(uint64_t)k * R.plan.calls + i];
        PU_CHECK(!call->issued, "client %u: op %#" PRIx64 " reported twice", k, op);
        PU_CHECK((method == soak_Ledger_incrementBy_ID && account == 0) ||
                   (method == soak_Ledger_deposit_ID && account < SOAK_ACCOUNTS),
                   "client %u: bad call '%s'", k, line);
        call->issued = true;
        call->status = status;
        call->method = method;
        call->account = account;
        call->amount = amount;
        lines++;
    }
    PU_CHECK(have_end, "client %u: no final 'retransmissions R calls C' line", k);
    PU_CHECK(lines == R.plan.calls, "client %u reported %" PRIu64 " of %" PRIu32 " calls",
               k, lines, R.plan.calls);
    t->retrans += rt;
    t->node_calls += nc;
    free(text);
}

/* Incarnation i's last "duplicates D refused F total T" line. */
static void soak_server_stats(unsigned i, uint64_t *dups, uint64_t *refused, int64_t *total)
{
    char path[96], *text;

    snprintf(path, sizeof path, "%s/stats-%u", soak_dir, i);
    text = tu_read_file(path, NULL);
    ck_assert_msg(text != NULL, "server %u left no %s", i, path);
    ck_assert_msg(sscanf(text, "duplicates %" SCNu64 " refused %" SCNu64 " total %" SCNd64,
                         dups, refused, total) == 3, "%s: '%s'", path, text);
    free(text);
}

/*
 * Matches the record against the calls: (d) every record is a call a
 * client issued, with its arguments; (a) none is there twice.  Counts each
 * call's executions and sums the amounts.
 */
static void soak_check_record(soak_call *calls, soak_tally *t)
{
    const soak_plan *p = &R.plan;
    soak_record_file rec;
    size_t i;
    int fd;

    fd = open(R.record_path, O_RDONLY | O_CLOEXEC);
    PU_CHECK(fd >= 0, "%s: %s", R.record_path, strerror(errno));
    ck_assert_int_eq(soak_record_load(fd, &rec), 0);
    close(fd);
    /* the final server cut off any torn record a kill left before it appended */
    PU_CHECK(rec.torn == 0, "the record ends in a torn record after a clean stop");
    PU_CHECK(rec.bad == rec.n, "record %zu of %zu is not a record", rec.bad, rec.n);
    for (i = 0; i < rec.n; i++) {
        const soak_record *r = &rec.recs[i];
        uint64_t k = r->op >> 32;
        uint32_t n = (uint32_t)r->op;
        soak_call *call = k < p->clients && n < p->calls ? &calls[k * p->calls + n] : NULL;

        PU_CHECK(r->incarnation < R.starts, "record %zu: incarnation %" PRIu32, i,
                   r->incarnation);
        t->executed++;
        t->sum += r->amount;
        if (call == NULL || !call->issued || call->method != r->method ||
            call->account != r->account || call->amount != r->amount) {
            soak_bad_add(&t->bad[SOAK_STRAY], " op %#" PRIx64 " (method %" PRIu32 " account %"
                         PRIu32 " amount %" PRId64 ", incarnation %" PRIu32 ");", r->op,
                         r->method, r->account, r->amount, r->incarnation);
            continue;
        }
        if (++call->execs == 2)
            soak_bad_add(&t->bad[SOAK_TWICE], " op %#" PRIx64 " (status %s, again by "
                         "incarnation %" PRIu32 ");", r->op, qrpc_err_name(call->status),
                         r->incarnation);
    }
    free(rec.recs);
}

/*
 * Matches every call's status against its executions: (b) a success ran
 * exactly once; (c) a QRPC_EUNAVAILABLE did not run.  Counts the statuses,
 * and for each how many of its calls did run.
 */
static void soak_check_calls(const soak_call *calls, soak_tally *t)
{
    const soak_plan *p = &R.plan;
    uint64_t n = (uint64_t)p->clients * p->calls, i;

    for (i = 0; i < n; i++) {
        const soak_call *call = &calls[i];
        uint64_t op = (i / p->calls) << 32 | (i % p->calls);

        if (call->status > 0) {
            t->apps++;
        } else {
            int e = -call->status < SOAK_N_STATUS ? -call->status : SOAK_N_STATUS - 1;

            t->by_status[e]++;
            t->ran_by_status[e] += call->execs > 0;
        }
        if (call->status == 0 && call->execs != 1)
            soak_bad_add(&t->bad[SOAK_OK_NOT_ONCE], " op %#" PRIx64 " ran %" PRIu32 " times;",
                         op, call->execs);
        if (call->status == QRPC_EUNAVAILABLE && call->execs != 0)
            soak_bad_add(&t->bad[SOAK_UNAVAILABLE_RAN], " op %#" PRIx64 " ran %" PRIu32
                         " times;", op, call->execs);
    }
}

/* The figures of the run, in one line on stderr. */
static void soak_summary(const soak_tally *t, const char *px0, const char *px1, int64_t ms)
{
    const soak_plan *p = &R.plan;
    char s[1536];
    size_t l;
    int e;

#define SOAK_PX(field) (stat_of(px0, field) + stat_of(px1, field))
    l = (size_t)snprintf(s, sizeof s, "test_soak: %s, seed %#" PRIx64 ", %.1f s: calls %" PRIu64
                         " (%" PRIu64 " by the nodes' count), ok %" PRIu64,
                         p->reply_log ? "reply log" : "no reply log", p->seed,
                         (double)ms / 1000.0, (uint64_t)p->clients * p->calls, t->node_calls,
                         t->by_status[0]);
    for (e = 1; e < SOAK_N_STATUS && l < sizeof s - 128; e++)
        if (t->by_status[e] != 0)
            l += (size_t)snprintf(s + l, sizeof s - l, ", %s %" PRIu64 " (ran %" PRIu64 ")",
                                  e == SOAK_N_STATUS - 1 ? "other" : qrpc_err_name(-e),
                                  t->by_status[e], t->ran_by_status[e]);
    if (t->apps != 0)
        l += (size_t)snprintf(s + l, sizeof s - l, ", application errors %" PRIu64, t->apps);
    snprintf(s + l, sizeof s - l, "; executed %" PRIu64 ", retransmissions %" PRIu64
             "; server: duplicates filtered %" PRIu64 ", refused %" PRIu64 ", restarts %u"
             "; proxies: cuts %ld, dropped %ld requests and %ld replies, duplicated %ld and "
             "%ld, delayed %ld", t->executed, t->retrans, t->dups, t->refused, R.kills,
             SOAK_PX("cuts"), SOAK_PX("dropped_req"), SOAK_PX("dropped_rep"),
             SOAK_PX("dup_req"), SOAK_PX("dup_rep"), SOAK_PX("delayed"));
#undef SOAK_PX
    fprintf(stderr, "%s\n", s);
}

/* total() of the running server, asked directly rather than through a proxy. */
static int64_t soak_total(void)
{
    qrpc_node_config cfg;
    qrpc_node *node;
    qrpc_client *c;
    tt_log log;
    int64_t t = 0;
    int rc;

    tt_log_init(&log);
    qrpc_node_config_init(&cfg);
    cfg.log = tt_log_fn;
    cfg.log_arg = &log;
    ck_assert_int_eq(qrpc_node_create(&cfg, &node), 0);
    ck_assert_int_eq(soak_Ledger_connect(node, R.srv.addr, &c), 0);
    rc = soak_Ledger_total(c, &t);
    ck_assert_msg(rc == 0, "total() of the final server: %s", qrpc_err_name(rc));
    qrpc_client_destroy(c);
    qrpc_node_destroy(node);
    tt_log_fini(&log);
    return t;
}

/* The server, then the two proxies in front of it, with seeds from the test's. */
static void soak_start_network(void)
{
    static const char *const faults[] = {
        "--drop-req", "3", "--drop-rep", "3", "--dup-req", "20", "--dup-rep", "20",
        "--delay-req", "20", "--delay-rep", "20", "--delay-ms", "20", "--cut", "2",
    };
    enum { N_FAULTS = sizeof faults / sizeof faults[0] };
    static char seed[2][24];
    int j;

    soak_srv_start(0);
    for (j = 0; j < 2; j++) {
        const char *args[N_FAULTS + 8];
        int a = 0, f;

        snprintf(seed[j], sizeof seed[j], "%" PRIu64, pu_rand(&R.rng));
        args[a++] = "--seed";
        args[a++] = seed[j];
        for (f = 0; f < N_FAULTS; f++)
            args[a++] = faults[f];
        if (j == 1) {                   /* the other kind of cut: mid-frame, by reset */
            args[a++] = "--cut-mid";
            args[a++] = "--cut-rst";
        }
        args[a] = NULL;
        fp_start(&R.px[j], R.srv.port, args);
    }
}

START_TEST(test_soak)
{
    static soak_tally t;
    const soak_plan *p = &R.plan;
    char px[2][512];
    int64_t t0 = tt_now_ms();
    soak_call *calls;
    unsigned k;
    int j, violations = 0;

    memset(&R, 0, sizeof R);
    memset(&t, 0, sizeof t);
    t.bad[SOAK_TWICE].what = "(a) ran twice";
    t.bad[SOAK_OK_NOT_ONCE].what = "(b) returned 0 but did not run once";
    t.bad[SOAK_UNAVAILABLE_RAN].what = "(c) returned QRPC_EUNAVAILABLE but ran";
    t.bad[SOAK_STRAY].what = "(d) ran but no client issued it so";
    soak_plan_init(&R.plan);
    ck_assert_msg(soak_env_error[0] == '\0', "%s", soak_env_error);
    ck_assert_msg(soak_base[0] != '\0', "main() made no directory");
    /* a directory per run: the runs with and without the reply log share nothing */
    snprintf(soak_dir, sizeof soak_dir, "%s/%d", soak_base, _i);
    ck_assert_msg(mkdir(soak_dir, 0700) == 0, "%s: %s", soak_dir, strerror(errno));
    R.plan.reply_log = _i == 1;
    if (R.plan.reply_log)
        snprintf(R.dlog_path, sizeof R.dlog_path, "%s/replies.qlog", soak_dir);
    R.rng = p->seed;
    snprintf(R.record_path, sizeof R.record_path, "%s/record", soak_dir);
    fprintf(stderr, "test_soak: seed %#" PRIx64 " (QRPC_SOAK_SEED), %u clients x %" PRIu32
            " calls, %u threads each, %s, %s\n", p->seed, p->clients, p->calls, p->threads,
            p->long_run ? "long run" : "short run",
            p->reply_log ? "with a reply log (dedup_log)" : "no reply log");

    soak_start_network();
    soak_drive();

    /*
     * The end: the proxies first (a request they still hold back must not
     * run behind the checks' back), then the server, cleanly, so that its
     * stats give the total it held; the final server rebuilds its state
     * from the record alone.
     */
    for (j = 0; j < 2; j++)
        snprintf(px[j], sizeof px[j], "%s", fp_stop(&R.px[j], 0));
    soak_srv_stop(SIGTERM);
    soak_srv_start(R.srv.port);
    t.total = soak_total();
    soak_srv_stop(0);

    calls = calloc((size_t)p->clients * p->calls, sizeof *calls);
    ck_assert_ptr_nonnull(calls);
    for (k = 0; k < p->clients; k++)
        soak_read_client(k, calls, &t);
    soak_check_record(calls, &t);
    soak_check_calls(calls, &t);
    free(calls);
    for (k = 0; k < R.starts; k++) {
        uint64_t d, f;
        int64_t total;

        soak_server_stats(k, &d, &f, &total);
        t.dups += d;
        t.refused += f;
        if (k == R.starts - 2)          /* the last one that served the clients */
            t.live_total = total;
    }
    soak_summary(&t, px[0], px[1], tt_now_ms() - t0);

    /* the invariants */
    for (j = 0; j < SOAK_N_BAD; j++)
        if (t.bad[j].n != 0) {
            fprintf(stderr, "test_soak: VIOLATED %s: %" PRIu64 " operations:%s%s\n",
                    t.bad[j].what, t.bad[j].n, t.bad[j].first, t.bad[j].n > 4 ? " ..." : "");
            violations++;
        }
    ck_assert_msg(violations == 0, "at-most-once violated (%d invariants; seed %#" PRIx64
                  "): see above; QRPC_SOAK_KEEP=1 keeps the record", violations, p->seed);
    ck_assert_msg(t.total == t.sum, "(e) total() is %" PRId64 ", the record sums to %" PRId64,
                  t.total, t.sum);
    ck_assert_msg(t.live_total == t.sum, "(e) the last server that served the clients held a "
                  "total of %" PRId64 " when it stopped, the record sums to %" PRId64,
                  t.live_total, t.sum);

    /* the run did exercise failure, and still got most calls through */
    ck_assert_msg(R.kills >= 1 && (p->restart_ms != 0 || R.kills == p->restarts),
                  "%u restarts (%u planned)", R.kills, p->restarts);
    /* each proxy cuts 2 frames in 1000: a short run may leave one without a cut */
    ck_assert_msg(stat_of(px[0], "cuts") + stat_of(px[1], "cuts") > 0,
                  "no proxy cut a connection: %s%s", px[0], px[1]);
    ck_assert_msg(stat_of(px[0], "dropped_req") + stat_of(px[0], "dropped_rep") +
                  stat_of(px[1], "dropped_req") + stat_of(px[1], "dropped_rep") > 0,
                  "no message was dropped: %s%s", px[0], px[1]);
    ck_assert_msg(t.apps == 0, "%" PRIu64 " calls got an application error", t.apps);
    ck_assert_msg(t.by_status[0] * 2 > (uint64_t)p->clients * p->calls,
                  "only %" PRIu64 " of %" PRIu64 " calls succeeded", t.by_status[0],
                  (uint64_t)p->clients * p->calls);
}
END_TEST

int main(void)
{
    char dir[] = "/tmp/qrpc-test-XXXXXX";
    Suite *s = suite_create("soak");
    TCase *tc = tcase_create("soak");
    soak_plan p;
    int rc;

    /* the plan is read here too, for the time limit; the test reads it again */
    soak_plan_init(&p);
    tcase_set_timeout(tc, (double)p.limit_s + 120.0);
    tcase_add_loop_test(tc, test_soak, 0, 2);   /* without, then with the reply log */
    suite_add_tcase(s, tc);
    if (mkdtemp(dir) == NULL) {
        fprintf(stderr, "test_soak: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    snprintf(soak_base, sizeof soak_base, "%s", dir);
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1);

    rc = tu_run_suite(s);

    pu_kill_live();
    pu_wait_orphans("test_soak", SOAK_WAIT_MS);
    if (getenv("QRPC_SOAK_KEEP") != NULL && *getenv("QRPC_SOAK_KEEP") != '\0')
        fprintf(stderr, "test_soak: kept %s\n", soak_base);
    else
        pu_remove_dir("test_soak", soak_base);
    return rc;
}
