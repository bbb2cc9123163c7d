/*
 * qrpc_tool.c - qrpc(1), which asks a qrpc master what its cluster holds,
 * as rpcinfo(8) asks a portmapper:
 *
 *   qrpc [--master ADDR] [--timeout-ms N] [--verbose] nodes
 *   qrpc [--master ADDR] [--timeout-ms N] [--verbose] services
 *   qrpc [--master ADDR] [--timeout-ms N] [--verbose] ping SERVICE[@VERSION]
 *
 * What it is: a bystander node of the cluster.  It makes a node of its
 * own that does not listen, so never registers, bound to the master given
 * by --master or QRPC_MASTER (the built-in master's host:port or a
 * ZooKeeper ensemble's zk://...: libqrpc's binding backends, binder.h),
 * waits for that node's first table and prints it; ping also calls
 * QRPC_METHOD_PING on every node the table lists for a service.
 * Output goes to stdout, one record per line, in the formats qrpc(1)
 * documents; diagnostics go to stderr.
 *
 * What it is not: a member of the cluster (it never binds through the
 * master, it talks to each node by address) or a monitor (one table, one
 * round of pings, then it exits).
 *
 * Exit status: 0 success, 1 the master could not be reached or a ping
 * failed or found no node, 2 a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bind.h"
#include "master.h"
#include "qrpc.h"
#include "tools.h"

#define TOOL_DEFAULT_TIMEOUT_MS 5000u
#define TOOL_MAX_TIMEOUT_MS     3600000u

typedef struct tool_options {
    const char *master;         /* --master, else QRPC_MASTER */
    uint32_t timeout_ms;
    bool verbose;
    const char *command;
    char service[qrpc_MAX_NAME + 1];    /* ping's SERVICE */
    bool has_version;           /* ping's @VERSION */
    uint32_t version;
} tool_options;

/* One (service, version) that one node offers: the unit of services and ping. */
typedef struct tool_offer {
    const char *name;           /* in the table */
    uint32_t version;
    const qrpc_Node *node;
} tool_offer;

/* What main() does after the options are read. */
enum tool_action { TOOL_RUN, TOOL_EXIT_OK, TOOL_EXIT_USAGE };

static const char tool_usage[] =
    "Usage: qrpc [OPTION]... COMMAND\n"
    "Show what a qrpc master knows of its cluster, and probe its services.\n"
    "\n"
    "Commands:\n"
    "  nodes                     the nodes of the table, by rank\n"
    "  services                  each service and version, with the ranks of\n"
    "                            the nodes offering it\n"
    "  ping SERVICE[@VERSION]    call every node offering SERVICE (at VERSION,\n"
    "                            else at every version) and time the answer\n"
    "\n"
    "Options:\n"
    "  --master ADDR       the master's host:port, or zk://HOST:PORT,.../PATH for a\n"
    "                      ZooKeeper ensemble (default: $QRPC_MASTER)\n"
    "  --timeout-ms N      deadline of each call in ms (default 5000;\n"
    "                      1 to 3600000)\n"
    "  --verbose           show the runtime's log lines (connections) too\n"
    "  --help              show this help and exit\n"
    "  --version           show the version and exit\n"
    "\n"
    "Exit status: 0 success, 1 the master could not be reached or a ping\n"
    "failed, 2 a usage error.  See qrpc(1).\n";

static enum tool_action tool_usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static enum tool_action tool_usage_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("qrpc: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\nTry 'qrpc --help'.\n", stderr);
    va_end(ap);
    return TOOL_EXIT_USAGE;
}

/* The node's log: dropped unless --verbose (the tool reports failures itself). */
static void tool_log(void *arg, const char *line)
{
    const tool_options *opt = arg;

    if (opt->verbose)
        fprintf(stderr, "qrpc: %s\n", line);
}

/*
 * Prints s as it is when it is printable ASCII without blanks, each other
 * byte as '?', so that one record stays one line of fields whatever the
 * master sends.
 */
static void tool_put(const char *s)
{
    for (; *s != '\0'; s++)
        putchar(*s > ' ' && *s < 0x7f ? *s : '?');
}

/*
 * Splits ping's "NAME[@VERSION]" at its last '@' into opt->service and,
 * when there is a version, opt->version.  Returns false, having said why,
 * when the name is empty or too long or the version is not a number.
 */
static bool tool_parse_service(const char *arg, tool_options *opt)
{
    const char *at = strrchr(arg, '@');
    size_t len = at != NULL ? (size_t)(at - arg) : strlen(arg);
    bool ok = false;

    opt->has_version = at != NULL;
    if (len == 0) {
        tool_usage_error("ping: '%s' has no service name (SERVICE[@VERSION])", arg);
        goto out;
    }
    if (len > qrpc_MAX_NAME) {
        tool_usage_error("ping: the service name is longer than %u bytes",
                         (unsigned)qrpc_MAX_NAME);
        goto out;
    }
    if (at != NULL && !tools_parse_u32(at + 1, 0, UINT32_MAX, &opt->version)) {
        tool_usage_error("ping: '%s' is not a version: a number in [0, %" PRIu32 "]",
                         at + 1, UINT32_MAX);
        goto out;
    }
    memcpy(opt->service, arg, len);
    opt->service[len] = '\0';
    ok = true;
out:
    return ok;
}

/*
 * Reads the command line into opt, checking everything that can be
 * checked before a node exists: the options, the command and its
 * argument, and that a master is named.
 */
static enum tool_action tool_options_read(int argc, char **argv, tool_options *opt)
{
    enum { O_MASTER = 256, O_TIMEOUT, O_VERBOSE, O_HELP, O_VERSION };
    static const struct option longopts[] = {
        { "master", required_argument, NULL, O_MASTER },
        { "timeout-ms", required_argument, NULL, O_TIMEOUT },
        { "verbose", no_argument, NULL, O_VERBOSE },
        { "help", no_argument, NULL, O_HELP },
        { "version", no_argument, NULL, O_VERSION },
        { NULL, 0, NULL, 0 }
    };
    enum tool_action act = TOOL_RUN;
    const char *env;
    int o;

    opterr = 0;
    while (act == TOOL_RUN && (o = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (o) {
        case O_MASTER:
            if (optarg[0] == '\0')
                act = tool_usage_error("--master: the address is empty");
            else
                opt->master = optarg;
            break;
        case O_TIMEOUT:
            if (!tools_parse_u32(optarg, 1, TOOL_MAX_TIMEOUT_MS, &opt->timeout_ms))
                act = tool_usage_error("--timeout-ms: '%s' is not a number in [1, %u]",
                                       optarg, (unsigned)TOOL_MAX_TIMEOUT_MS);
            break;
        case O_VERBOSE:
            opt->verbose = true;
            break;
        case O_HELP:
            fputs(tool_usage, stdout);
            act = TOOL_EXIT_OK;
            break;
        case O_VERSION:
            puts("qrpc " QRPC_VERSION_STRING);
            act = TOOL_EXIT_OK;
            break;
        case ':':
            act = tool_usage_error("option '%s' needs a value", argv[optind - 1]);
            break;
        default:
            act = tool_usage_error("unknown option '%s'", argv[optind - 1]);
            break;
        }
    }
    if (act != TOOL_RUN)
        goto out;
    if (optind == argc) {
        act = tool_usage_error("no command: give nodes, services or ping SERVICE");
        goto out;
    }
    opt->command = argv[optind++];
    if (strcmp(opt->command, "ping") == 0) {
        if (optind == argc) {
            act = tool_usage_error("ping: which service? (ping SERVICE[@VERSION])");
            goto out;
        }
        if (!tool_parse_service(argv[optind++], opt)) {
            act = TOOL_EXIT_USAGE;
            goto out;
        }
    } else if (strcmp(opt->command, "nodes") != 0 && strcmp(opt->command, "services") != 0) {
        act = tool_usage_error("unknown command '%s' (nodes, services or ping)", opt->command);
        goto out;
    }
    if (optind < argc) {
        act = tool_usage_error("%s: unexpected argument '%s'", opt->command, argv[optind]);
        goto out;
    }
    if (opt->master == NULL) {
        env = getenv("QRPC_MASTER");
        if (env != NULL && env[0] != '\0')
            opt->master = env;
        else
            act = tool_usage_error("no master: give --master ADDR or set QRPC_MASTER");
    }
out:
    return act;
}

/* ---- the table -------------------------------------------------------------- */

static int tool_cmp_rank(const void *a, const void *b)
{
    const qrpc_Node *x = *(const qrpc_Node *const *)a, *y = *(const qrpc_Node *const *)b;

    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* By name, then version, then rank. */
static int tool_cmp_offer(const void *a, const void *b)
{
    const tool_offer *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    if (c != 0)
        return c;
    if (x->version != y->version)
        return x->version < y->version ? -1 : 1;
    return tool_cmp_rank(&x->node, &y->node);
}

/*
 * Every (service, version, node) of t, sorted by tool_cmp_offer, into a
 * malloc'd *out (NULL when there is none).  Returns how many, or -1 when
 * out of memory.
 */
static long tool_offers(const qrpc_Table *t, tool_offer **out)
{
    tool_offer *offers = NULL;
    size_t n = 0, total = 0, i, j;
    long count = -1;

    for (i = 0; i < t->nodes.len; i++)
        total += t->nodes.items[i].services.len;
    if (total != 0) {
        offers = calloc(total, sizeof *offers);
        if (offers == NULL)
            goto out;
    }
    for (i = 0; i < t->nodes.len; i++) {
        const qrpc_Node *node = &t->nodes.items[i];

        for (j = 0; j < node->services.len; j++) {
            offers[n].name = node->services.items[j].name != NULL
                             ? node->services.items[j].name : "";
            offers[n].version = node->services.items[j].ver;
            offers[n].node = node;
            n++;
        }
    }
    if (n != 0)
        qsort(offers, n, sizeof *offers, tool_cmp_offer);
    *out = offers;
    offers = NULL;
    count = (long)n;
out:
    free(offers);
    return count;
}

/* "master ID epoch E nodes N", then "rank R id ID ADDRESSES services N" by rank. */
static int tool_nodes(const qrpc_Table *t)
{
    const qrpc_Node **sorted = NULL;
    size_t i, j;
    int status = 1;

    printf("master %016" PRIx64 " epoch %" PRIu64 " nodes %zu\n",
           t->master, t->epoch, t->nodes.len);
    if (t->nodes.len != 0) {
        sorted = calloc(t->nodes.len, sizeof *sorted);
        if (sorted == NULL) {
            fputs("qrpc: out of memory\n", stderr);
            goto out;
        }
    }
    for (i = 0; i < t->nodes.len; i++)
        sorted[i] = &t->nodes.items[i];
    if (t->nodes.len != 0)
        qsort(sorted, t->nodes.len, sizeof *sorted, tool_cmp_rank);
    for (i = 0; i < t->nodes.len; i++) {
        const qrpc_Node *node = sorted[i];

        printf("rank %" PRIu32 " id %016" PRIx64, node->rank, node->id);
        for (j = 0; j < node->addresses.len; j++) {
            putchar(' ');
            tool_put(node->addresses.items[j].transport != NULL
                     ? node->addresses.items[j].transport : "");
            putchar(' ');
            tool_put(node->addresses.items[j].address != NULL
                     ? node->addresses.items[j].address : "");
        }
        printf(" services %zu\n", node->services.len);
    }
    status = 0;
out:
    free(sorted);
    return status;
}

/* "SERVICE@VERSION ranks R..." for each service and version, sorted. */
static int tool_services(const qrpc_Table *t)
{
    tool_offer *offers = NULL;
    long n = tool_offers(t, &offers), i;
    int status = 1;

    if (n < 0) {
        fputs("qrpc: out of memory\n", stderr);
        goto out;
    }
    for (i = 0; i < n; i++) {
        bool first = i == 0 || strcmp(offers[i].name, offers[i - 1].name) != 0 ||
                     offers[i].version != offers[i - 1].version;

        if (first) {
            if (i != 0)
                putchar('\n');
            tool_put(offers[i].name);
            printf("@%" PRIu32 " ranks", offers[i].version);
        }
        if (first || offers[i].node->rank != offers[i - 1].node->rank)
            printf(" %" PRIu32, offers[i].node->rank);
    }
    if (n > 0)
        putchar('\n');
    status = 0;
out:
    free(offers);
    return status;
}

/* ---- ping ----------------------------------------------------------------------- */

static const qrpc_method_desc tool_ping_method[] = {
    { QRPC_METHOD_PING, "ping", QRPC_METHOD_IDEMPOTENT },
};

/*
 * Pings one offer and prints "rank R ADDR SERVICE@V: ok N us" or
 * "rank R ADDR SERVICE@V: error QRPC_ENAME: message" (ADDR "-" when the
 * node has no TCP address).  Returns whether it answered.
 */
static bool tool_ping_one(qrpc_node *node, const tool_offer *o, uint32_t timeout_ms)
{
    const char *addr = qrpc__node_tcp_address(o->node);
    qrpc_service_desc desc = {
        .name = o->name, .version = o->version,
        .methods = tool_ping_method, .n_methods = 1,
    };
    qrpc_client *c = NULL;
    qrpc_buf args, reply;
    struct timespec t0 = { 0, 0 }, t1 = { 0, 0 };
    int64_t us;
    int rc = QRPC_EADDR;

    qrpc_buf_init(&args);
    qrpc_buf_init(&reply);
    if (addr != NULL)
        rc = qrpc_client_create(node, addr, &desc, &c);
    if (rc == 0) {
        qrpc_client_set_timeout(c, timeout_ms);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        rc = qrpc_call(c, QRPC_METHOD_PING, &args, &reply);
        clock_gettime(CLOCK_MONOTONIC, &t1);
    }
    printf("rank %" PRIu32 " ", o->node->rank);
    tool_put(addr != NULL ? addr : "-");
    putchar(' ');
    tool_put(o->name);
    printf("@%" PRIu32 ": ", o->version);
    us = ((int64_t)t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000;
    if (rc == 0)
        printf("ok %" PRId64 " us\n", us);
    else if (addr == NULL)
        printf("error %s: the node has no tcp address\n", qrpc_err_name(rc));
    else if (rc > 0)
        printf("error application: application error %d\n", rc);
    else
        printf("error %s: %s\n", qrpc_err_name(rc), qrpc_strerror(rc));
    fflush(stdout);
    qrpc_client_destroy(c);
    qrpc_buf_free(&args);
    qrpc_buf_free(&reply);
    return rc == 0;
}

/* "qrpc: no node offers NAME[@V] (versions offered: 1 2)" on stderr. */
static void tool_say_missing(const tool_offer *offers, long n, const char *name,
                             bool has_version, uint32_t version)
{
    bool any = false;
    long i;

    fputs("qrpc: no node offers ", stderr);
    fputs(name, stderr);
    if (has_version)
        fprintf(stderr, "@%" PRIu32, version);
    for (i = 0; i < n; i++) {
        if (strcmp(offers[i].name, name) != 0 ||
            (any && offers[i].version == offers[i - 1].version))
            continue;
        fprintf(stderr, "%s%" PRIu32, any ? " " : " (versions offered: ", offers[i].version);
        any = true;
    }
    fputs(any ? ")\n" : "\n", stderr);
}

/* Pings every node offering opt's service.  Returns the exit status. */
static int tool_ping(qrpc_node *node, const qrpc_Table *t, const tool_options *opt)
{
    tool_offer *offers = NULL;
    long n, i, pinged = 0;
    int status = 1;

    n = tool_offers(t, &offers);
    if (n < 0) {
        fputs("qrpc: out of memory\n", stderr);
        goto out;
    }
    status = 0;
    for (i = 0; i < n; i++) {
        if (strcmp(offers[i].name, opt->service) != 0 ||
            (opt->has_version && offers[i].version != opt->version))
            continue;
        if (!tool_ping_one(node, &offers[i], opt->timeout_ms))
            status = 1;
        pinged++;
    }
    if (pinged == 0) {
        tool_say_missing(offers, n, opt->service, opt->has_version, opt->version);
        status = 1;
    }
out:
    free(offers);
    return status;
}

/* ---- main ----------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    tool_options opt = { .timeout_ms = TOOL_DEFAULT_TIMEOUT_MS };
    qrpc_node_config cfg;
    qrpc_node *node = NULL;
    qrpc_Table table;
    int status = 0;
    int rc;

    memset(&table, 0, sizeof table);
    switch (tool_options_read(argc, argv, &opt)) {
    case TOOL_EXIT_OK:
        goto out;
    case TOOL_EXIT_USAGE:
        status = 2;
        goto out;
    case TOOL_RUN:
        break;
    }

    qrpc_node_config_init(&cfg);
    cfg.listen = NULL;
    cfg.master = opt.master;    /* not listening: follows the table, never registers */
    cfg.timeout_ms = opt.timeout_ms;
    cfg.log = tool_log;
    cfg.log_arg = &opt;
    rc = qrpc_node_create(&cfg, &node);
    if (rc == QRPC_EADDR) {
        fprintf(stderr, "qrpc: bad master address '%s': %s\n", opt.master, qrpc_strerror(rc));
        status = 2;
        goto out;
    }
    if (rc != 0) {
        fprintf(stderr, "qrpc: cannot create a node for the master at %s: %s%s\n", opt.master,
                qrpc_strerror(rc), rc == QRPC_ENOTSUP ? " (libqrpc without ZooKeeper: "
                "install libzookeeper-mt-dev and rebuild; qrpc-binding(7))" : "");
        status = 1;
        goto out;
    }
    rc = qrpc__bind_table(node, qrpc__now_ns(node) + (uint64_t)opt.timeout_ms * 1000000u,
                          &table);
    if (rc != 0) {
        fprintf(stderr, "qrpc: cannot reach the master at %s: %s\n", opt.master,
                qrpc_strerror(rc));
        status = 1;
        goto out;
    }

    if (strcmp(opt.command, "nodes") == 0)
        status = tool_nodes(&table);
    else if (strcmp(opt.command, "services") == 0)
        status = tool_services(&table);
    else
        status = tool_ping(node, &table, &opt);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "qrpc: cannot write to standard output: %s\n", strerror(errno));
        status = 1;
    }

out:
    qrpc_Table_free(&table);
    qrpc_node_destroy(node);
    return status;
}
