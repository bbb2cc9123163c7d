/*
 * qrpc_master.c - qrpc-master(8), the master daemon of a qrpc cluster:
 *
 *   qrpc-master [--listen ADDR] [--lease-ms N] [--max-nodes N]
 *               [--max-services N] [--lifeline]
 *
 * What it is: a command line around qrpc_master_start(3).  It checks its
 * options, blocks SIGTERM and SIGINT (before any thread exists, so that
 * every thread inherits the mask and the signals wait in a signalfd),
 * starts the master, prints "qrpc-master: listening on ADDR" on stdout
 * (a harness that asked for port 0 reads the port there), and waits for
 * one of those signals or, with --lifeline, for end of file on stdin.
 * Then it stops the master and exits 0.
 *
 * What it is not: the master itself.  The table, the ranks, the leases and
 * the pushing of changes are in libqrpc (runtime/src/master.c), so that an
 * application can embed the same master with one call.  Its log lines go
 * to stderr, through the library's default.
 *
 * Exit status: 0 after a signal or the lifeline, 1 when the master could
 * not start (or stdout could not be written, or waiting failed), 2 for a
 * usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "qrpc.h"
#include "tools.h"

#define MASTER_DEFAULT_LISTEN "127.0.0.1:7700"

/* The limits of qrpc_master_config (qrpc.h). */
#define MASTER_LEASE_MIN        100u
#define MASTER_LEASE_MAX        3600000u
#define MASTER_NODES_MAX        1048576u
#define MASTER_SERVICES_MAX     65536u

/* What main() does after the options are read. */
enum master_action { MASTER_RUN, MASTER_EXIT_OK, MASTER_EXIT_USAGE };

static const char master_usage[] =
    "Usage: qrpc-master [OPTION]...\n"
    "Run the master of a qrpc cluster: nodes register their services with\n"
    "it and receive the cluster table, and every change to it.\n"
    "\n"
    "  --listen ADDR       listen on ADDR, host:port or [v6]:port (default\n"
    "                      " MASTER_DEFAULT_LISTEN "; port 0: any free port)\n"
    "  --lease-ms N        drop a node silent for longer than N ms\n"
    "                      (default 3000; 100 to 3600000)\n"
    "  --max-nodes N       nodes the table may hold (default 4096;\n"
    "                      1 to 1048576)\n"
    "  --max-services N    services one node may register (default 1024;\n"
    "                      1 to 65536)\n"
    "  --lifeline          also exit when standard input reaches end of file\n"
    "  --help              show this help and exit\n"
    "  --version           show the version and exit\n"
    "\n"
    "Once listening it prints 'qrpc-master: listening on ADDR' on standard\n"
    "output, then runs until SIGTERM or SIGINT.  See qrpc-master(8).\n";

static enum master_action master_usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static enum master_action master_usage_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("qrpc-master: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\nTry 'qrpc-master --help'.\n", stderr);
    va_end(ap);
    return MASTER_EXIT_USAGE;
}

/* Parses the value of option name into *out, or says what is wrong. */
static bool master_number(const char *name, const char *s, uint32_t lo,
                          uint32_t hi, uint32_t *out)
{
    bool ok = tools_parse_u32(s, lo, hi, out);

    if (!ok)
        master_usage_error("--%s: '%s' is not a number in [%u, %u]", name, s,
                           (unsigned)lo, (unsigned)hi);
    return ok;
}

/* Reads the command line into cfg and *lifeline. */
static enum master_action master_options(int argc, char **argv,
                                         qrpc_master_config *cfg, bool *lifeline)
{
    enum { O_LISTEN = 256, O_LEASE, O_NODES, O_SERVICES, O_LIFELINE, O_HELP, O_VERSION };
    static const struct option longopts[] = {
        { "listen", required_argument, NULL, O_LISTEN },
        { "lease-ms", required_argument, NULL, O_LEASE },
        { "max-nodes", required_argument, NULL, O_NODES },
        { "max-services", required_argument, NULL, O_SERVICES },
        { "lifeline", no_argument, NULL, O_LIFELINE },
        { "help", no_argument, NULL, O_HELP },
        { "version", no_argument, NULL, O_VERSION },
        { NULL, 0, NULL, 0 }
    };
    enum master_action act = MASTER_RUN;
    int o;

    opterr = 0;
    while (act == MASTER_RUN &&
           (o = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (o) {
        case O_LISTEN:
            if (optarg[0] == '\0')
                act = master_usage_error("--listen: the address is empty");
            else
                cfg->listen = optarg;
            break;
        case O_LEASE:
            if (!master_number("lease-ms", optarg, MASTER_LEASE_MIN,
                               MASTER_LEASE_MAX, &cfg->lease_ms))
                act = MASTER_EXIT_USAGE;
            break;
        case O_NODES:
            if (!master_number("max-nodes", optarg, 1, MASTER_NODES_MAX,
                               &cfg->max_nodes))
                act = MASTER_EXIT_USAGE;
            break;
        case O_SERVICES:
            if (!master_number("max-services", optarg, 1, MASTER_SERVICES_MAX,
                               &cfg->max_services))
                act = MASTER_EXIT_USAGE;
            break;
        case O_LIFELINE:
            *lifeline = true;
            break;
        case O_HELP:
            fputs(master_usage, stdout);
            act = MASTER_EXIT_OK;
            break;
        case O_VERSION:
            puts("qrpc-master " QRPC_VERSION_STRING);
            act = MASTER_EXIT_OK;
            break;
        case ':':
            act = master_usage_error("option '%s' needs a value", argv[optind - 1]);
            break;
        default:
            act = master_usage_error("unknown option '%s'", argv[optind - 1]);
            break;
        }
    }
    if (act == MASTER_RUN && optind < argc)
        act = master_usage_error("unexpected argument '%s'", argv[optind]);
    if (act == MASTER_RUN && *lifeline && fcntl(STDIN_FILENO, F_GETFL) < 0)
        act = master_usage_error("--lifeline: standard input is not open");
    return act;
}

/*
 * Waits for SIGTERM or SIGINT on sfd or, with lifeline, end of file on
 * stdin (whatever it reads there is discarded), and says on stderr why it
 * stops.  Returns 0, or 1 when it cannot wait any more.
 */
static int master_wait(int sfd, bool lifeline)
{
    struct pollfd pfd[2] = {
        { .fd = sfd, .events = POLLIN },
        { .fd = STDIN_FILENO, .events = POLLIN },
    };
    struct signalfd_siginfo si;
    char discard[4096];
    const char *why = NULL;
    int status = 0;
    ssize_t r;

    while (why == NULL) {
        if (poll(pfd, lifeline ? 2 : 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "qrpc-master: poll: %s\n", strerror(errno));
            status = 1;
            why = "cannot wait for signals";
            continue;
        }
        if (pfd[0].revents != 0) {
            r = read(sfd, &si, sizeof si);
            if (r == (ssize_t)sizeof si)
                why = si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM";
            else if (r < 0 && errno != EAGAIN && errno != EINTR) {
                fprintf(stderr, "qrpc-master: signalfd: %s\n", strerror(errno));
                status = 1;
                why = "cannot wait for signals";
            }
        }
        if (why == NULL && lifeline && pfd[1].revents != 0) {
            r = (pfd[1].revents & POLLNVAL) ? 0 : read(STDIN_FILENO, discard, sizeof discard);
            if (r == 0)
                why = "end of file on standard input";
            else if (r < 0 && errno != EAGAIN && errno != EINTR)
                why = "standard input failed";
        }
    }
    fprintf(stderr, "qrpc-master: stopping (%s)\n", why);
    return status;
}

int main(int argc, char **argv)
{
    qrpc_master_config cfg;
    qrpc_master *m = NULL;
    bool lifeline = false;
    sigset_t sigs;
    int sfd = -1;
    int status = 0;
    int rc;

    qrpc_master_config_init(&cfg);
    switch (master_options(argc, argv, &cfg, &lifeline)) {
    case MASTER_EXIT_OK:
        goto out;
    case MASTER_EXIT_USAGE:
        status = 2;
        goto out;
    case MASTER_RUN:
        break;
    }
    /* before qrpc_master_start(): its threads inherit the mask */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    signal(SIGPIPE, SIG_IGN);
    rc = pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    if (rc == 0) {
        sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
        rc = sfd < 0 ? errno : 0;
    }
    if (rc != 0) {
        fprintf(stderr, "qrpc-master: cannot set up signal handling: %s\n", strerror(rc));
        status = 1;
        goto out;
    }

    rc = qrpc_master_start(&cfg, &m);
    if (rc != 0) {
        fprintf(stderr, "qrpc-master: cannot start the master on %s: %s (%s)\n",
                cfg.listen, qrpc_strerror(rc), qrpc_err_name(rc));
        status = 1;
        goto out;
    }
    if (printf("qrpc-master: listening on %s\n", qrpc_master_address(m)) < 0 ||
        fflush(stdout) != 0) {
        fprintf(stderr, "qrpc-master: cannot write to standard output: %s\n",
                strerror(errno));
        status = 1;
        goto out;
    }
    status = master_wait(sfd, lifeline);

out:
    qrpc_master_stop(m);
    if (sfd >= 0)
        close(sfd);
    return status;
}
