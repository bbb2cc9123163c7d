/*
 * soak_server.c - the server process of the at-most-once soak test
 * (tests/unit/test_soak.c) and of the binding test (tests/unit/
 * test_binding.c): serves soak.Ledger (tests/idl/soak.qidl) on one TCP
 * address and records every execution in a file that outlives it.
 *
 *   soak-server --listen 127.0.0.1:PORT --record FILE [--stats FILE]
 *               [--incarnation N] [--dedup-log FILE] [--master ADDR]
 *               [--version V]
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
 * With --master ADDR the node registers with the qrpc master at ADDR
 * (qrpc_node_config.master) and holds the cluster table.  Its binding
 * state (qrpc_node_get_binding()) is then appended to the stats line,
 * " registered G rank K node I master M epoch E nodes N" (G is 0 or 1, I
 * and M in hex), and every time it changes (checked every ~100 ms, and
 * once right after the "listening on" line) one line "binding registered
 * G rank K node I master M epoch E nodes N" goes to stdout, so that a
 * driver can wait for the table to converge by reading its pipe.
 * Without --master the node has no master, whatever QRPC_MASTER says.
 *
 * With --version V other than 1 it serves no ledger: it opens a channel
 * (qrpc_channel_open()) for a copy of soak.Ledger's description at version
 * V, and one thread answers its requests: total() with 0, anything else
 * with the application error NO_SUCH_ACCOUNT.  It is "the node offering
 * another version" of the binding test.  The record is still read (and
 * must be valid), but nothing is appended to it.  At a clean exit the
 * channel is closed where the ledger would be withdrawn.
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
    const char *master;         /* the master's address, or NULL: none */
    uint32_t incarnation;
    uint32_t version;           /* 1: the ledger; other: the channel of another version */
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
static void soak_write_stats(const char *path, qrpc_node *node, soak_ledger *l,
                             const char *binding)
{
    char tmp[4096], line[320];
    qrpc_node_stats st;
    int fd, n;

    if (path == NULL)
        return;
    qrpc_node_get_stats(node, &st);
    n = snprintf(line, sizeof line, "duplicates %" PRIu64 " refused %" PRIu64 " total %" PRId64
                 "%s%s\n", st.duplicates, st.refused, soak_ledger_total(l),
                 binding[0] != '\0' ? " " : "", binding);
    if (n < 0 || (size_t)n >= sizeof line)
        return;
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

/*
 * The node's binding state as "registered G rank K node I master M epoch E
 * nodes N" into s (empty when the node has no master).  Returns whether it
 * differs from what s held before.
 */
static bool soak_binding(qrpc_node *node, char *s, size_t size)
{
    qrpc_binding_info b;
    char now[256];

    if (qrpc_node_get_binding(node, &b) != 0)
        now[0] = '\0';
    else
        snprintf(now, sizeof now, "registered %d rank %" PRIu32 " node %#" PRIx64 " master %#"
                 PRIx64 " epoch %" PRIu64 " nodes %" PRIu32, b.registered ? 1 : 0, b.rank,
                 b.node_id, b.master, b.epoch, b.nodes);
    if (strcmp(now, s) == 0)
        return false;
    snprintf(s, size, "%s", now);
    return true;
}

/*
 * The server of another version (--version V): answers every request of
 * the channel until it closes: total() with 0, the rest with an
 * application error, as nothing here keeps a ledger.
 */
static void *soak_channel_main(void *arg)
{
    qrpc_channel *ch = arg;
    qrpc_request *r;

    while (qrpc_recv_request(ch, -1, &r) == 0) {
        if (qrpc_request_method(r) == soak_Ledger_total_ID) {
            qrpc_buf b;

            qrpc_buf_init(&b);
            if (qrpc_put_i64(&b, 0) == 0)
                qrpc_send_response(r, 0, &b);
            else
                qrpc_send_response(r, QRPC_ENOMEM, &b);
        } else {
            qrpc_send_response(r, soak_LedgerError_NO_SUCH_ACCOUNT, NULL);
        }
    }
    return NULL;
}

static void soak_usage(void)
{
    fputs("usage: soak-server --listen 127.0.0.1:PORT --record FILE [--stats FILE]\n"
          "                   [--incarnation N] [--dedup-log FILE] [--master ADDR]\n"
          "                   [--version V]\n", stderr);
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
        { "master", required_argument, NULL, 'm' },
        { "version", required_argument, NULL, 'v' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    memset(o, 0, sizeof *o);
    o->version = 1;
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
        case 'm':
            o->master = optarg;
            break;
        case 'v':
            errno = 0;
            v = strtoul(optarg, &end, 10);
            if (*optarg < '0' || *optarg > '9' || *end != '\0' || errno != 0 || v == 0 ||
                v > UINT32_MAX) {
                fprintf(stderr, "soak-server: --version: expected 1..%" PRIu32 ", got %s\n",
                        UINT32_MAX, optarg);
                return 2;
            }
            o->version = (uint32_t)v;
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

/* Prints the binding line when the state changed; false when stdout failed. */
static bool soak_report_binding(qrpc_node *node, const soak_opts *o, char *binding, size_t size)
{
    if (o->master == NULL || !soak_binding(node, binding, size))
        return true;
    printf("binding %s\n", binding);
    return fflush(stdout) == 0;
}

int main(int argc, char **argv)
{
    static soak_ledger ledger = { .lock = PTHREAD_MUTEX_INITIALIZER, .record_fd = -1 };
    static qrpc_service_desc other;     /* soak.Ledger at o.version, for the channel */
    static char binding[256];           /* the last binding state reported */
    qrpc_node_config cfg;
    qrpc_node *node = NULL;
    qrpc_channel *ch = NULL;
    pthread_t ch_thread;
    bool ch_thread_started = false;
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
    cfg.master = o.master != NULL ? o.master : "";     /* "": none, whatever QRPC_MASTER says */
    rc = qrpc_node_create(&cfg, &node);
    if (rc != 0) {
        fprintf(stderr, "soak-server: listening on %s: %s\n", o.listen, qrpc_strerror(rc));
        goto out_record;
    }
    if (o.version == soak_Ledger_desc.version) {
        rc = soak_Ledger_serve(node, &soak_handlers, &ledger);
    } else {
        other = soak_Ledger_desc;
        other.version = o.version;
        rc = qrpc_channel_open(node, &other, &ch);
    }
    if (rc != 0) {
        fprintf(stderr, "soak-server: serving soak.Ledger@%" PRIu32 ": %s\n", o.version,
                qrpc_strerror(rc));
        goto out_node;
    }
    if (ch != NULL) {
        rc = pthread_create(&ch_thread, NULL, soak_channel_main, ch);
        if (rc != 0) {
            fprintf(stderr, "soak-server: channel thread: %s\n", strerror(rc));
            goto out_node;
        }
        ch_thread_started = true;
    }
    soak_binding(node, binding, sizeof binding);
    soak_write_stats(o.stats, node, &ledger, binding);
    printf("listening on %s\n", qrpc_node_address(node));
    if (fflush(stdout) != 0)
        goto out_node;
    if (o.master != NULL) {
        printf("binding %s\n", binding);
        if (fflush(stdout) != 0)
            goto out_node;
    }

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
        /* a driver that stopped reading is not a reason to stop serving */
        (void)soak_report_binding(node, &o, binding, sizeof binding);
        soak_write_stats(o.stats, node, &ledger, binding);
    }
    status = 0;

out_node:
    /*
     * Withdrawing the service waits for the handlers still running, so the
     * total written next includes every execution this incarnation did.
     */
    if (ch != NULL) {
        qrpc_channel_close(ch);         /* wakes the thread: its recv says QRPC_ECLOSED */
        if (ch_thread_started)
            pthread_join(ch_thread, NULL);
    } else if (status == 0) {
        rc = qrpc_unserve(node, soak_Ledger_desc.name, soak_Ledger_desc.version);
        if (rc != 0) {
            fprintf(stderr, "soak-server: withdrawing soak.Ledger: %s\n", qrpc_strerror(rc));
            status = 1;
        }
    }
    soak_binding(node, binding, sizeof binding);
    soak_write_stats(o.stats, node, &ledger, binding);
    qrpc_node_destroy(node);
out_record:
    close(ledger.record_fd);
out:
    if (sfd >= 0)
        close(sfd);
    return status;
}
