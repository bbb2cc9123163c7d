/*
 * soak_server.c - the server process of the at-most-once soak test
 * (tests/unit/test_soak.c): serves soak.Ledger (tests/idl/soak.qidl) on
 * one TCP address and records every execution in a file that outlives it.
 *
 *   soak-server --listen 127.0.0.1:PORT --record FILE [--stats FILE]
 *               [--incarnation N] [--dedup-log FILE]
 *
 * What it is: a server that the driver kills (SIGKILL) and starts again on
 * the same port with the same record file, several times in one run.  On
 * start it reads the record (soak_record.h) left by its earlier
 * incarnations and rebuilds its counter and balances from it, cutting off
 * a torn last record (its writer died inside write(): the call never
 * returned, so it never ran as far as any client can tell).  Each
 * execution of incrementBy or deposit appends one record with a single
 * write() on an O_APPEND descriptor, under a mutex, before the state in
 * memory changes and before the reply exists: whatever a client was told,
 * the record already says.  total() answers the counter plus every
 * balance from memory, so comparing it with the record's sum also checks
 * the rebuilding.
 *
 * Once serving it prints "listening on 127.0.0.1:PORT" on stdout.  It
 * exits when its stdin reaches end of file (the lifeline: the driver holds
 * the other end of a pipe, so no server outlives its test) or on SIGTERM
 * or SIGINT, destroying its node first so that running handlers finish.
 * Every ~100 ms and at exit it rewrites --stats FILE whole (a new file
 * renamed over the old one) with "duplicates D refused R total T": its
 * node's counters (qrpc_node_get_stats()) and what total() would answer.
 * A killed incarnation leaves its last snapshot, which may miss up to
 * 100 ms of counts; the driver sums the files.  At a clean exit the
 * service is withdrawn first, which waits for running handlers, so that
 * the last line's total is final: the driver compares it with the record,
 * which checks the state this incarnation kept in memory.
 *
 * What it is not: a durable or fast ledger (no fsync, one mutex), or a
 * general server: it listens on the loopback only, has no other options,
 * and exits 3 rather than go on when it cannot append a record (a server
 * that executes without recording would break the very invariants the
 * test checks).  Exit status: 0, 1 on a setup error, 2 on a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "qrpc.h"
#include "soak.h"
#include "soak_record.h"

#define SOAK_STATS_PERIOD_MS 100

typedef struct soak_opts {
    const char *listen;
    const char *record;
    const char *dedup_log;              /* the node's reply log, or NULL */
    const char *stats;          /* NULL: none */
    uint32_t incarnation;
} soak_opts;

/* The service state: what the handlers share, under lock. */
typedef struct soak_ledger {
    pthread_mutex_t lock;
    int record_fd;
    uint32_t incarnation;
    int64_t counter;
    int64_t balance[SOAK_ACCOUNTS];
} soak_ledger;

/*
 * Gives up from a handler thread: the process cannot go on serving once an
 * execution may have gone unrecorded, and exit() would run atexit and
 * stdio cleanup under the other threads' feet.
 */
static void soak_fatal(const char *what, int err)
{
    char line[256];
    int n = snprintf(line, sizeof line, "soak-server: %s: %s\n", what, strerror(err));

    if (n > 0)
        (void)!write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    _exit(3);
}

/* Records one execution, then applies it; *result is the cell's new value. */
static void soak_execute(soak_ledger *l, uint32_t method, uint64_t op, uint32_t account,
                         int64_t amount, int64_t *result)
{
    soak_record r;
    int64_t *cell;
    ssize_t w;

    memset(&r, 0, sizeof r);
    r.op = op;
    r.amount = amount;
    r.method = method;
    r.account = account;
    r.incarnation = l->incarnation;
    r.check = soak_record_check(&r);
    pthread_mutex_lock(&l->lock);
    /* no EINTR to retry: every signal is blocked in every thread (signalfd) */
    w = write(l->record_fd, &r, sizeof r);
    if (w != (ssize_t)sizeof r)
        soak_fatal("appending to the record", w < 0 ? errno : EIO);
    cell = method == soak_Ledger_deposit_ID ? &l->balance[account] : &l->counter;
    *cell += amount;
    *result = *cell;
    pthread_mutex_unlock(&l->lock);
}

static int soak_increment_by(qrpc_ctx *ctx, uint64_t op, int64_t amount, int64_t *result)
{
    soak_execute(qrpc_ctx_state(ctx), soak_Ledger_incrementBy_ID, op, 0, amount, result);
    return 0;
}

static int soak_deposit(qrpc_ctx *ctx, uint64_t op, uint32_t account, int64_t amount,
                        int64_t *result)
{
    if (account >= SOAK_ACCOUNTS)
        return soak_LedgerError_NO_SUCH_ACCOUNT;        /* not executed, not recorded */
    soak_execute(qrpc_ctx_state(ctx), soak_Ledger_deposit_ID, op, account, amount, result);
    return 0;
}

/* The counter plus every balance. */
static int64_t soak_ledger_total(soak_ledger *l)
{
    int64_t sum;
    unsigned i;

    pthread_mutex_lock(&l->lock);
    sum = l->counter;
    for (i = 0; i < SOAK_ACCOUNTS; i++)
        sum += l->balance[i];
    pthread_mutex_unlock(&l->lock);
    return sum;
}

static int soak_total(qrpc_ctx *ctx, int64_t *result)
{
    *result = soak_ledger_total(qrpc_ctx_state(ctx));
    return 0;
}

static const soak_Ledger_handlers soak_handlers = {
    .incrementBy = soak_increment_by,
    .deposit = soak_deposit,
    .total = soak_total,
};

/*
 * Opens the record and rebuilds l from it.  A torn tail is cut off, so
 * that this incarnation's records start on a record boundary.  Returns 0,
 * or -1 after printing why.
 */
static int soak_ledger_open(soak_ledger *l, const char *path)
{
    soak_record_file f;
    size_t i;
    int err, rc = -1;

    l->record_fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (l->record_fd < 0) {
        fprintf(stderr, "soak-server: %s: %s\n", path, strerror(errno));
        return -1;
    }
    err = soak_record_load(l->record_fd, &f);
    if (err != 0) {
        fprintf(stderr, "soak-server: reading %s: %s\n", path, strerror(err));
        goto out;
    }
    if (f.bad < f.n) {
        fprintf(stderr, "soak-server: %s: record %zu of %zu is not a record\n", path, f.bad,
                f.n);
        goto out;
    }
    if (f.torn != 0) {
        fprintf(stderr, "soak-server: %s: cutting off a torn record of %zu bytes\n", path,
                f.torn);
        if (ftruncate(l->record_fd, (off_t)(f.n * sizeof(soak_record))) != 0) {
            fprintf(stderr, "soak-server: truncating %s: %s\n", path, strerror(errno));
            goto out;
        }
    }
    for (i = 0; i < f.n; i++) {
        const soak_record *r = &f.recs[i];

        if (r->method == soak_Ledger_deposit_ID && r->account < SOAK_ACCOUNTS) {
            l->balance[r->account] += r->amount;
        } else if (r->method == soak_Ledger_incrementBy_ID) {
            l->counter += r->amount;
        } else {
            fprintf(stderr, "soak-server: %s: record %zu: method %" PRIu32 " account %" PRIu32
                    "\n", path, i, r->method, r->account);
            goto out;
        }
    }
    rc = 0;
out:
    free(f.recs);
    if (rc != 0) {
        close(l->record_fd);
        l->record_fd = -1;
    }
    return rc;
}

/*
 * Rewrites the stats file whole: written beside it, then renamed over it,
 * so that a reader (or a kill at any moment) sees one complete snapshot.
 */
static void soak_write_stats(const char *path, qrpc_node *node, soak_ledger *l)
{
    char tmp[4096], line[160];
    qrpc_node_stats st;
    int fd, n;

    if (path == NULL)
        return;
    qrpc_node_get_stats(node, &st);
    n = snprintf(line, sizeof line, "duplicates %" PRIu64 " refused %" PRIu64 " total %" PRId64
                 "\n", st.duplicates, st.refused, soak_ledger_total(l));
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    if (write(fd, line, (size_t)n) != n || close(fd) != 0) {
        unlink(tmp);
        return;
    }
    (void)rename(tmp, path);
}

static void soak_usage(void)
{
    fputs("usage: soak-server --listen 127.0.0.1:PORT --record FILE [--stats FILE]\n"
          "                   [--incarnation N] [--dedup-log FILE]\n", stderr);
}

/* Returns 0, or 2 (the usage exit status) after saying what is wrong. */
static int soak_parse(int argc, char **argv, soak_opts *o)
{
    static const struct option longopts[] = {
        { "listen", required_argument, NULL, 'l' },
        { "record", required_argument, NULL, 'r' },
        { "stats", required_argument, NULL, 's' },
        { "incarnation", required_argument, NULL, 'i' },
        { "dedup-log", required_argument, NULL, 'd' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    memset(o, 0, sizeof *o);
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        char *end;
        unsigned long v;

        switch (c) {
        case 'l':
            o->listen = optarg;
            break;
        case 'r':
            o->record = optarg;
            break;
        case 's':
            o->stats = optarg;
            break;
        case 'd':
            o->dedup_log = optarg;
            break;
        case 'i':
            errno = 0;
            v = strtoul(optarg, &end, 10);
            if (*optarg < '0' || *optarg > '9' || *end != '\0' || errno != 0 ||
                v > UINT32_MAX) {
                fprintf(stderr, "soak-server: --incarnation: expected 0..%" PRIu32 ", got %s\n",
                        UINT32_MAX, optarg);
                return 2;
            }
            o->incarnation = (uint32_t)v;
            break;
        default:
            fprintf(stderr, "soak-server: bad option %s\n", argv[optind - 1]);
            soak_usage();
            return 2;
        }
    }
    if (optind < argc || o->listen == NULL || o->record == NULL) {
        soak_usage();
        return 2;
    }
    if (strncmp(o->listen, "127.0.0.1:", 10) != 0) {
        fprintf(stderr, "soak-server: --listen: loopback only (127.0.0.1:PORT), got %s\n",
                o->listen);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static soak_ledger ledger = { .lock = PTHREAD_MUTEX_INITIALIZER, .record_fd = -1 };
    qrpc_node_config cfg;
    qrpc_node *node = NULL;
    soak_opts o;
    sigset_t sigs;
    int sfd = -1, status = 1, rc;
    bool running = true;

    rc = soak_parse(argc, argv, &o);
    if (rc != 0)
        return rc;
    ledger.incarnation = o.incarnation;

    /* a driver that stops reading our stdout must not kill us with SIGPIPE */
    signal(SIGPIPE, SIG_IGN);
    /* blocked before the node's threads exist, so that they inherit it: signalfd takes them */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    if (pthread_sigmask(SIG_BLOCK, &sigs, NULL) != 0)
        goto out;
    sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
    if (sfd < 0) {
        fprintf(stderr, "soak-server: signalfd: %s\n", strerror(errno));
        goto out;
    }
    if (soak_ledger_open(&ledger, o.record) != 0)
        goto out;

    qrpc_node_config_init(&cfg);
    cfg.listen = o.listen;
    cfg.dedup_log = o.dedup_log;        /* NULL: none */
    rc = qrpc_node_create(&cfg, &node);
    if (rc != 0) {
        fprintf(stderr, "soak-server: listening on %s: %s\n", o.listen, qrpc_strerror(rc));
        goto out_record;
    }
    rc = soak_Ledger_serve(node, &soak_handlers, &ledger);
    if (rc != 0) {
        fprintf(stderr, "soak-server: serving soak.Ledger: %s\n", qrpc_strerror(rc));
        goto out_node;
    }
    soak_write_stats(o.stats, node, &ledger);
    printf("listening on %s\n", qrpc_node_address(node));
    if (fflush(stdout) != 0)
        goto out_node;

    while (running) {
        struct pollfd pf[2] = { { sfd, POLLIN, 0 }, { 0, POLLIN, 0 } };
        int n = poll(pf, 2, SOAK_STATS_PERIOD_MS);

        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "soak-server: poll: %s\n", strerror(errno));
            goto out_node;
        }
        if (n > 0 && pf[1].revents != 0) {
            char junk[64];
            ssize_t r = read(0, junk, sizeof junk);

            if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN))
                running = false;
        }
        if (n > 0 && pf[0].revents != 0)
            running = false;
        soak_write_stats(o.stats, node, &ledger);
    }
    status = 0;

out_node:
    /*
     * Withdrawing the service waits for the handlers still running, so the
     * total written next includes every execution this incarnation did.
     */
    if (status == 0) {
        rc = qrpc_unserve(node, soak_Ledger_desc.name, soak_Ledger_desc.version);
        if (rc != 0) {
            fprintf(stderr, "soak-server: withdrawing soak.Ledger: %s\n", qrpc_strerror(rc));
            status = 1;
        }
    }
    soak_write_stats(o.stats, node, &ledger);
    qrpc_node_destroy(node);
out_record:
    close(ledger.record_fd);
out:
    if (sfd >= 0)
        close(sfd);
    return status;
}
