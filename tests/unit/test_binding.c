/*
 * test_binding.c - binding through a master (issue 6) or a ZooKeeper
 * ensemble (issue 8), with processes on 127.0.0.1 and ports of the
 * system's choosing:
 *   - $QRPC_MASTER_BIN (qrpc-master(8)), with a lease of BIND_LEASE_MS;
 *     or, for the cases ending in _zk (loop tests: _i 1) and zk_ensemble,
 *     real ZooKeeper servers from Debian's zookeeper package (zkutil.h):
 *     one standalone, or three, with the case's own path and a session
 *     timeout of BIND_LEASE_MS (skipped, saying why, where ZooKeeper
 *     cannot run, unless QRPC_ZK_REQUIRED=1, as CI sets, makes that a
 *     failure);
 *   - $QRPC_SOAK_SERVER nodes (tests/soak/soak_server.c) registered with
 *     it: three serving soak.Ledger@1 (tests/idl/soak.qidl), each with
 *     its own execution record and reply log (dedup_log), and one
 *     offering soak.Ledger@2 (--version 2); each prints its binding state
 *     (qrpc_node_get_binding()) on stdout whenever it changes, which is
 *     how the test waits for the tables to converge;
 *   - $QRPC_SOAK_CLIENT processes bound by name (--master: target NULL),
 *     either making at-most-once incrementBy and deposit calls or the
 *     idempotent total(), one line per call, until the test asks them to
 *     stop (a byte on their stdin); each reports a progress byte per call
 *     and, in lines between them, its table whenever it changes.
 *
 * The cases:
 *   server_restart: one v1 server (a seeded choice) is killed with SIGKILL
 *     under load; the other nodes' tables must drop it within
 *     BIND_DROP_MS while the clients go on being served (calls return
 *     meanwhile, and then BIND_PROGRESS more per client within
 *     BIND_DOWN_MS, a call held by the dead server holding its client
 *     thread up to the deadline, BIND_TIMEOUT_MS); it is then started again on the same port with the same
 *     record and reply log, and every node's table must list all four
 *     nodes again, the same table (master, epoch, node count) on each,
 *     within BIND_CONVERGE_MS; the clients go on until the restarted
 *     server has had time to serve again, and when they stop each holds
 *     that same table too.  Then: the idempotent client got no error at
 *     all; across the
 *     three records (a) no operation ran twice, (b) every call that
 *     returned 0 ran exactly once, (c) none that returned
 *     QRPC_EUNAVAILABLE ran, (d) every record is a call some client made,
 *     with its arguments, and (e) each server's total at its clean stop
 *     is its record's sum; the at-most-once calls that failed did so with
 *     QRPC_EUNKNOWN or QRPC_ETIMEDOUT only (they may have been delivered
 *     to the killed server, so they stayed with it), at most
 *     BIND_FAIL_PER_THREAD per client thread; no application error (which
 *     a call sent to the version-2 node would get); every record is
 *     non-empty (the calls spread over the three servers), and the
 *     restarted server executed calls in both its lives.
 *   master_restart: the master is killed with SIGKILL under load, the
 *     clients must go on being served while it is down (for
 *     BIND_MASTER_DOWN_MS, longer than a lease), and it is started again
 *     on the same port: within BIND_REFORM_MS every node is
 *     registered again with the new master (its identity differs from the
 *     old one's), all four nodes in the same table on each, the clients'
 *     too; every call of every client returned 0, and (a)-(e) hold.
 *   errors: from this process, a node whose master is the master process
 *     (two servers: soak.Ledger@1 and @2): its first bound call (a
 *     deposit), made before it can have the table, waits for it and runs
 *     on the @1 server; a service nobody offers gives QRPC_ENOSERVICE,
 *     soak.Ledger@3 QRPC_ENOVERSION, both well before the deadline, and
 *     qrpc_node_versions() answers {1, 2}; bound @1 and @2 clients each
 *     reach their own version's node (total() 7 and 0); the node's table
 *     is the servers' table; a node without a master has no binding
 *     (QRPC_EINVAL).
 *   local_first: a node of this process that serves soak.Ledger@1 itself
 *     and is registered with the master, beside a v1 server process:
 *     its bound calls all run in this process, none in the other.
 *   node_pause: a node stopped with SIGSTOP for longer than its lease
 *     leaves every other table within BIND_DROP_MS; resumed with SIGCONT,
 *     it registers again by itself and every table lists it again.
 *   zk_ensemble: three ZooKeeper servers; the leader is killed with
 *     SIGKILL under load; the clients go on (for BIND_ZK_ELECTION_MS at
 *     least) and the tables stay whole; through the two servers left, the
 *     version-2 node stops cleanly and every table drops it within
 *     BIND_ZK_CHANGE_MS, and starts again and every table lists it within
 *     BIND_WAIT_MS (a start: a new session); the killed server comes
 *     back; no call failed, and (a)-(e) hold.
 *   tool: $QRPC_TOOL_BIN (qrpc(1)) against the four-node cluster: nodes
 *     prints the master's line (the identity and epoch the servers hold,
 *     "nodes 4") and four "rank" lines, services soak.Ledger@1 at the
 *     three v1 servers' ranks and @2 at the other's, ping soak.Ledger@1
 *     three "ok" lines, all exiting 0; ping soak.Ledger@3 exits 1 saying
 *     "versions offered: 1 2"; without --master or QRPC_MASTER it exits
 *     2, and so does qrpc-master with --lease-ms 5 (below its minimum).
 *
 * Every process started is reaped, on success and on failure, the way
 * test_soak.c does it: each has a lifeline (its stdin is a pipe from the
 * test, so it exits as soon as the test process is gone) and main() is
 * their subreaper (ZooKeeper's JVMs, which read no stdin, die with the
 * test process instead: zkutil.h); the tool case's commands, which end by themselves, are
 * waited for up to BIND_WAIT_MS and killed past it.  Waits are polls on the
 * processes' pipes with deadlines (the clients' progress bytes, the
 * binding lines of nodes and clients), and for a process known to be
 * ending, waitpid() tried every millisecond up to a bound.  The other timed
 * pauses are the schedule, not synchronisation: how long the killed master
 * stays down (the pipes are read meanwhile), and a short pause before a
 * process is started again on a port that was briefly taken.  The seed of
 * the random choices is QRPC_BIND_SEED (printed); QRPC_BIND_KEEP=1 keeps
 * the test's directory (records, client outputs, stderr files).
 */
#include <ftw.h>
#include <inttypes.h>
#include <sys/prctl.h>

#include "tcputil.h"
#include "procutil.h"
#include "zkutil.h"
#ifdef QRPC_HAVE_ZOOKEEPER
#define THREADED                        /* the synchronous API of libzookeeper_mt */
#include <zookeeper/zookeeper.h>
#endif
#include "soak.h"
#include "../soak/soak_record.h"

/*
 * The lease: the master's --lease-ms, or the ZooKeeper session timeout
 * the nodes ask for (ZooKeeper keeps the session alive with pings every
 * third of it, from the client library's own thread; longer, so that a
 * loaded machine does not expire sessions by itself).
 */
#define QRPC_TEST_ADDR_MAX 512
#define BIND_LEASE_MS     bind_lease_ms
#define BIND_MASTER_LEASE_MS 1000u
/*
 * 4 s, not 2: the new sessions of processes started mid-test (clients, a
 * restarted node) went unestablished for 5 s and more with 2 s sessions
 * in three CI runs on a loaded machine.
 */
#define BIND_ZK_LEASE_MS  4000u
#define BIND_ZK_TICK_MS   500u          /* the ensemble's tickTime: sessions of 1 to 10 s */
/* the ensemble case: a session that outlives a leader's election */
#define BIND_ZK_ENSEMBLE_LEASE_MS 6000u
#define BIND_ZK_ELECTION_MS 2000u       /* at least this with the leader killed */
/* a change through ZooKeeper: a quorum write, then a read by every node */
#define BIND_ZK_CHANGE_MS 2000u
#define BIND_WAIT_MS      20000u        /* bound for what should be quick (start, stop) */
/*
 * The tool's deadline against a live cluster: each run opens a ZooKeeper
 * session (or master connection) of its own, and on a loaded machine one
 * run went past the tool's default 5 s without its first table (a CI run
 * of 7f20506).  What the runs print is checked as before.
 */
#define BIND_TOOL_TIMEOUT "15000"
/*
 * A killed node leaves the others' tables once the master has gone a
 * lease without its heartbeat, has pushed the new table, and each node
 * has reported it (within ~100 ms): the lease plus slack for a loaded
 * machine (sanitizers, two CPUs).
 */
#define BIND_DROP_MS      (5u * BIND_LEASE_MS / 2)
/*
 * A restarted node: it registers and the master pushes the new table, no
 * lease to wait out; issue 6 asks for every table within the lease.
 */
#define BIND_CONVERGE_MS  BIND_LEASE_MS
/*
 * A restarted master: the nodes notice it (they heartbeat every third of
 * a lease) and register again, and it gives the nodes that knew its
 * predecessor its table only once its first lease has passed (every live
 * node has had the time to register again).
 */
#define BIND_REFORM_MS    (3u * BIND_LEASE_MS)
#define BIND_MASTER_DOWN_MS (3u * BIND_LEASE_MS / 2)  /* how long the killed master stays down */
#define BIND_START_TRIES  5             /* a restart may find its port briefly taken */
#define BIND_MAX_NODES    4
#define BIND_MAX_CLIENTS  4
#define BIND_MAX_CALLS    10000000u     /* per client: the test stops them long before */
#define BIND_TIMEOUT_MS   5000u         /* the clients' call deadline */
#define BIND_RETRY_MS     100
#define BIND_PACE_MS      1             /* each client thread pauses this after a call */
#define BIND_PROGRESS     300u          /* calls per client between the scenario's steps */
#define BIND_DOWN_MS      (BIND_TIMEOUT_MS + BIND_WAIT_MS)  /* BIND_PROGRESS with a node dead */
/*
 * At-most-once calls that may fail when a server is killed: the one each
 * client thread may have had on its way to it (a thread makes one call at
 * a time, and once its node knows the connection is down, its calls go to
 * other nodes); the bound is twice that.
 */
#define BIND_FAIL_PER_THREAD 2u

/* ---- processes ------------------------------------------------------------------- */

enum { BP_MASTER, BP_NODE, BP_CLIENT };

/* A process the test started: its pipes, and what it said on stdout so far. */
typedef struct bproc {
    int kind;                           /* BP_* */
    unsigned idx;                       /* the node's or client's index */
    pid_t pid;                          /* 0: not running */
    int life_fd;                        /* its stdin (write end); -1: closed */
    int out_fd;                         /* its stdout (read end); -1: closed or at EOF */
    int port;                           /* from its "listening on" line; 0: none yet */
    bool eof;                           /* its stdout ended */
    char buf[4096];                     /* the start of a line not yet whole */
    size_t len;
    char err_path[128];
    char name[32];                      /* for messages */
} bproc;

/* A server node and the binding state it last reported. */
typedef struct bnode {
    bproc p;
    uint32_t version;
    unsigned starts;                    /* incarnations started (the next one's number) */
    char record[128], dlog[128];
    bool have;                          /* a binding line came from this incarnation */
    int registered;
    uint32_t rank, nodes;
    uint64_t node_id, master, epoch;
} bnode;

typedef struct bcli {
    bproc p;
    bool total;                         /* idempotent total() rather than at-most-once */
    unsigned threads;
    uint64_t done;                      /* calls returned (progress bytes) */
    int64_t moved_ms;                   /* when one last did */
    bool have;                          /* the table it last reported: */
    uint64_t master, epoch;
    uint32_t nodes;
    int status;                         /* wait status once reaped */
    char out_path[128];
} bcli;

/* One cluster: everything a test case runs. */
typedef struct bind_run {
    uint64_t rng;
    bproc master;
    char master_addr[QRPC_TEST_ADDR_MAX];  /* host:port, or zk://... */
    zk_ensemble zk_servers;
    unsigned zk_n;                      /* servers in the ensemble */
    unsigned master_starts;
    bnode node[BIND_MAX_NODES];
    unsigned n_nodes;
    bcli cli[BIND_MAX_CLIENTS];
    unsigned n_clis;
    /* the table the servers held when the clients stopped, which the clients must hold too */
    uint64_t end_master, end_epoch;
    uint32_t end_nodes;
} bind_run;

static bind_run R;
static unsigned bind_lease_ms = BIND_MASTER_LEASE_MS;
static char bind_dir[96];               /* the running case's directory */
static uint64_t bind_seed = 0xb1d0000000000006u;
static char bind_base[48];              /* main()'s directory; each case has one in it */

/* The stream of random choices of this test. */
static uint64_t bind_rand(void)
{
    return pu_rand(&R.rng);
}

/* Starts argv[0] for p (pu_spawn(): a lifeline, a pipe as stdout, p->err_path). */
static void bind_spawn(bproc *p, char *const argv[])
{
    p->pid = pu_spawn(argv, p->err_path, &p->life_fd, &p->out_fd);
    p->port = 0;
    p->eof = false;
    p->len = 0;
}

static void bind_close_pipes(bproc *p)
{
    if (p->life_fd >= 0)
        close(p->life_fd);
    if (p->out_fd >= 0)
        close(p->out_fd);
    p->life_fd = p->out_fd = -1;
    p->pid = 0;
}

/* SIGKILL, as a crash: it must not have died of anything else first. */
static void bind_kill(bproc *p)
{
    kill(p->pid, SIGKILL);
    pu_expect_end(p->pid, BIND_WAIT_MS, true, NULL, p->name, p->err_path);
    bind_close_pipes(p);
}

/* A clean stop by SIGTERM: it must exit 0. */
static void bind_stop(bproc *p)
{
    kill(p->pid, SIGTERM);
    pu_expect_end(p->pid, BIND_WAIT_MS, false, "SIGTERM", p->name, p->err_path);
    bind_close_pipes(p);
}

/* ---- the event loop: every process's stdout -------------------------------------- */

/* One whole line of node n's stdout. */
static void bind_node_line(bnode *n, const char *line)
{
    int port, reg;
    uint32_t rank, nodes;
    uint64_t id, master, epoch;

    if (sscanf(line, "listening on 127.0.0.1:%d", &port) == 1) {
        n->p.port = port;
    } else if (sscanf(line, "binding registered %d rank %" SCNu32 " node %" SCNx64 " master %"
                      SCNx64 " epoch %" SCNu64 " nodes %" SCNu32, &reg, &rank, &id, &master,
                      &epoch, &nodes) == 6) {
        n->have = true;
        n->registered = reg;
        n->rank = rank;
        n->node_id = id;
        n->master = master;
        n->epoch = epoch;
        n->nodes = nodes;
    } else {
        ck_abort_msg("%s: unexpected line on stdout: '%s'", n->p.name, line);
    }
}

/* One whole line of client c's stdout (between its progress bytes). */
static void bind_client_line(bcli *c, const char *line)
{
    uint64_t master, epoch;
    uint32_t nodes;

    PU_CHECK(sscanf(line, "binding master %" SCNx64 " epoch %" SCNu64 " nodes %" SCNu32,
                      &master, &epoch, &nodes) == 3, "%s: unexpected line on stdout: '%s'",
               c->p.name, line);
    c->have = true;
    c->master = master;
    c->epoch = epoch;
    c->nodes = nodes;
}

/* Reads what p wrote; handles the whole lines.  p->eof at end of file. */
static void bind_feed(bproc *p)
{
    char tmp[4096];
    ssize_t r = read(p->out_fd, tmp, sizeof tmp);
    ssize_t i;

    if (r < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (r <= 0) {
        p->eof = true;
        close(p->out_fd);
        p->out_fd = -1;
        return;
    }
    for (i = 0; i < r; i++) {
        if (p->kind == BP_CLIENT && p->len == 0 && tmp[i] == '.') {
            /* a client's progress: a byte per call, outside its lines */
            R.cli[p->idx].done++;
            R.cli[p->idx].moved_ms = tt_now_ms();
            continue;
        }
        if (tmp[i] != '\n') {
            if (p->len < sizeof p->buf - 1)
                p->buf[p->len++] = tmp[i];
            continue;
        }
        p->buf[p->len] = '\0';
        p->len = 0;
        if (p->kind == BP_NODE) {
            bind_node_line(&R.node[p->idx], p->buf);
        } else if (p->kind == BP_CLIENT) {
            bind_client_line(&R.cli[p->idx], p->buf);
        } else {
            int port;

            /* the master may say more; only its address matters here */
            if (sscanf(p->buf, "qrpc-master: listening on 127.0.0.1:%d", &port) == 1)
                p->port = port;
        }
    }
}

/* How long a running client may go without any call returning: a hang. */
static int64_t bind_stall_ms(void)
{
    return 5000 + 2 * (int64_t)BIND_TIMEOUT_MS;
}

/* A process whose stdout ended unexpectedly has died: fail with what it said. */
static void bind_died(bproc *p)
{
    int st = pu_reap(p->pid, BIND_WAIT_MS);

    ck_abort_msg("%s ended unexpectedly (%s); its stderr:\n%s", p->name, pu_status_str(st),
                 pu_tail(p->err_path));
}

typedef bool (*bind_cond)(const void *arg);

/* A time (ms) at which bind_pump() looks at its condition again, events or not (0: none). */
static int64_t bind_wake_at;

/*
 * Reads every process's stdout until cond(arg) holds (true) or ms have
 * passed (false).  Fails the test when a server or the master dies
 * (unless it is the one being started: starting, which then just has its
 * eof set), or when a client stops getting answers.  A client whose
 * output ends is reaped and must have exited 0 (it ends when asked to
 * stop).
 */
static bool bind_pump(unsigned ms, bind_cond cond, const void *arg, const bproc *starting)
{
    int64_t until = tt_now_ms() + ms;

    for (;;) {
        struct pollfd pf[BIND_MAX_NODES + BIND_MAX_CLIENTS + 1];
        bproc *who[BIND_MAX_NODES + BIND_MAX_CLIENTS + 1];
        int64_t now = tt_now_ms(), wake = until;
        unsigned n = 0, i;
        int pr;

        if (cond(arg))
            return true;
        if (now >= until)
            return false;
        if (bind_wake_at > now && bind_wake_at < wake)
            wake = bind_wake_at;
        if (R.master.out_fd >= 0)
            who[n++] = &R.master;
        for (i = 0; i < R.n_nodes; i++)
            if (R.node[i].p.out_fd >= 0)
                who[n++] = &R.node[i].p;
        for (i = 0; i < R.n_clis; i++)
            if (R.cli[i].p.out_fd >= 0) {
                bcli *c = &R.cli[i];

                PU_CHECK(now - c->moved_ms < bind_stall_ms(), "%s: no call returned for %"
                           PRId64 " ms, though each has a deadline of %u ms (pid %d hangs)",
                           c->p.name, now - c->moved_ms, BIND_TIMEOUT_MS, (int)c->p.pid);
                if (c->moved_ms + bind_stall_ms() < wake)
                    wake = c->moved_ms + bind_stall_ms();
                who[n++] = &c->p;
            }
        for (i = 0; i < n; i++)
            pf[i] = (struct pollfd){ who[i]->out_fd, POLLIN, 0 };
        pr = poll(pf, n, wake > now ? (int)(wake - now) : 0);
        PU_CHECK(pr >= 0 || errno == EINTR, "poll: %s", strerror(errno));
        for (i = 0; pr > 0 && i < n; i++) {
            bproc *p = who[i];

            if (pf[i].revents == 0)
                continue;
            bind_feed(p);
            if (!p->eof)
                continue;
            if (p->kind == BP_CLIENT) {
                bcli *c = &R.cli[p->idx];

                c->status = pu_reap(p->pid, BIND_WAIT_MS);
                PU_CHECK(c->status != -1 && WIFEXITED(c->status) &&
                           WEXITSTATUS(c->status) == 0, "%s: %s after %" PRIu64 " calls; its "
                           "stderr ends:\n%s", p->name, pu_status_str(c->status), c->done,
                           pu_tail(p->err_path));
                pu_check_stderr(p->name, p->err_path);
                bind_close_pipes(p);
            } else if (p != starting) {
                bind_died(p);
            }
        }
    }
}

/* ---- the master and the nodes ------------------------------------------------------ */

static bool bind_has_port(const void *arg)
{
    const bproc *p = arg;

    return p->port != 0 || p->eof;
}

/*
 * Waits for p, just spawned, to print its address.  Returns true when it
 * did, on port if port is not 0; otherwise it is killed and reaped, and
 * false returned (for another try on port), or the test fails (port 0, or
 * the last try).
 */
static bool bind_started(bproc *p, int port, int tries)
{
    int st;
    bool up = bind_pump(BIND_WAIT_MS, bind_has_port, p, p) && p->port != 0 &&
              (port == 0 || p->port == port);

    if (up)
        return true;
    kill(p->pid, SIGKILL);
    st = pu_reap(p->pid, BIND_WAIT_MS);
    bind_close_pipes(p);
    ck_assert_msg(port != 0 && tries < BIND_START_TRIES, "%s did not start on port %d (%s); "
                  "its stderr:\n%s", p->name, port, pu_status_str(st), pu_tail(p->err_path));
    tt_nap_ms(50);                      /* a retry's pause: the port is not ours to watch */
    return false;
}

/* Starts the master on port (0: any), lease BIND_LEASE_MS. */
static void bind_master_start(int port)
{
    bproc *p = &R.master;
    char listen[32], lease[16];
    int tries;

    p->kind = BP_MASTER;
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    snprintf(lease, sizeof lease, "%u", BIND_LEASE_MS);
    snprintf(p->name, sizeof p->name, "the master (start %u)", R.master_starts);
    snprintf(p->err_path, sizeof p->err_path, "%s/master-%u.err", bind_dir, R.master_starts);
    for (tries = 1;; tries++) {
        char *argv[] = { (char *)tu_env("QRPC_MASTER_BIN"), "--listen", listen, "--lease-ms",
                         lease, "--lifeline", NULL };

        bind_spawn(p, argv);
        if (bind_started(p, port, tries))
            break;
    }
    snprintf(R.master_addr, sizeof R.master_addr, "127.0.0.1:%d", p->port);
    R.master_starts++;
}

/*
 * Starts where the table lives: the master, or R.zk_n ZooKeeper servers
 * with the case's own path and session timeout in R.master_addr.
 */
static void bind_store_start(const char *name)
{
    char dir[160];

    if (R.zk_n == 0) {
        bind_master_start(0);
        return;
    }
    snprintf(dir, sizeof dir, "%s/zk", bind_dir);
    zk_start(&R.zk_servers, dir, R.zk_n, BIND_ZK_TICK_MS);
    snprintf(R.master_addr, sizeof R.master_addr, "zk://%s/qrpc/%s?session_ms=%u",
             zk_connect_string(&R.zk_servers), name, BIND_LEASE_MS);
}

/* Starts (again, on its port) node i, registered with the master. */
static void bind_node_start(unsigned i)
{
    bnode *n = &R.node[i];
    int port = n->p.port;
    char listen[32], inc[16], stats[128], ver[16];
    int tries;

    n->p.kind = BP_NODE;
    n->p.idx = i;
    snprintf(n->p.name, sizeof n->p.name, "server %u@%" PRIu32 " (start %u)", i, n->version,
             n->starts);
    snprintf(n->p.err_path, sizeof n->p.err_path, "%s/server-%u-%u.err", bind_dir, i, n->starts);
    snprintf(n->record, sizeof n->record, "%s/record-%u", bind_dir, i);
    snprintf(n->dlog, sizeof n->dlog, "%s/replies-%u.qlog", bind_dir, i);
    snprintf(stats, sizeof stats, "%s/stats-%u-%u", bind_dir, i, n->starts);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    snprintf(inc, sizeof inc, "%u", n->starts);
    snprintf(ver, sizeof ver, "%" PRIu32, n->version);
    for (tries = 1;; tries++) {
        char *argv[] = { (char *)tu_env("QRPC_SOAK_SERVER"), "--listen", listen, "--record",
                         n->record, "--stats", stats, "--incarnation", inc, "--dedup-log",
                         n->dlog, "--master", R.master_addr, "--version", ver, NULL };

        n->have = false;
        bind_spawn(&n->p, argv);
        if (bind_started(&n->p, port, tries))
            break;
    }
    n->starts++;
}

/* What the nodes' tables must agree on. */
typedef struct bind_want {
    uint32_t nodes;                     /* in every table */
    uint64_t not_master;                /* a master identity none may report (0: any) */
    int skip;                           /* a node not to ask (killed), or -1 */
} bind_want;

/*
 * Every running node (but w->skip) is registered and holds a table of
 * w->nodes nodes, the same epoch and master on all of them, and so does
 * every running client (which does not register).
 */
static bool bind_converged(const void *arg)
{
    const bind_want *w = arg;
    const bnode *first = NULL;
    unsigned i;

    for (i = 0; i < R.n_clis; i++) {
        const bcli *c = &R.cli[i];

        if (c->p.pid != 0 && (!c->have || c->nodes != w->nodes || c->master == 0 ||
                              c->master == w->not_master || c->epoch == 0))
            return false;
    }

    for (i = 0; i < R.n_nodes; i++) {
        const bnode *n = &R.node[i];

        if ((int)i == w->skip)
            continue;
        if (n->p.pid == 0 || !n->have || n->registered != 1 || n->nodes != w->nodes ||
            n->master == 0 || n->master == w->not_master || n->epoch == 0)
            return false;
        if (first == NULL)
            first = n;
        else if (n->epoch != first->epoch || n->master != first->master)
            return false;
    }
    if (first == NULL)
        return false;
    for (i = 0; i < R.n_clis; i++) {
        const bcli *c = &R.cli[i];

        if (c->p.pid != 0 && (c->epoch != first->epoch || c->master != first->master))
            return false;
    }
    return true;
}

/* The nodes' binding states, for failure messages. */
static const char *bind_states(void)
{
    static char s[2048];
    size_t len = 0;
    unsigned i;

    s[0] = '\0';
    for (i = 0; i < R.n_clis && len < sizeof s - 160; i++) {
        const bcli *c = &R.cli[i];

        if (c->p.pid != 0)
            len += (size_t)snprintf(s + len, sizeof s - len, " client %u: %s%#" PRIx64
                                    " epoch %" PRIu64 " nodes %" PRIu32 ";", i,
                                    c->have ? "master " : "(nothing yet) master ", c->master,
                                    c->epoch, c->nodes);
    }
    for (i = 0; i < R.n_nodes && len < sizeof s - 160; i++) {
        const bnode *n = &R.node[i];

        if (n->p.pid == 0)
            len += (size_t)snprintf(s + len, sizeof s - len, " node %u: down;", i);
        else if (!n->have)
            len += (size_t)snprintf(s + len, sizeof s - len, " node %u: no state yet;", i);
        else
            len += (size_t)snprintf(s + len, sizeof s - len, " node %u: registered %d rank %"
                                    PRIu32 " master %#" PRIx64 " epoch %" PRIu64 " nodes %"
                                    PRIu32 ";", i, n->registered, n->rank, n->master,
                                    n->epoch, n->nodes);
    }
    return s;
}

/* Waits (at most ms) for the tables to converge as w says; returns how long it took. */
static int64_t bind_wait_converged(const bind_want *w, unsigned ms, const char *what)
{
    int64_t t0 = tt_now_ms();

    ck_assert_msg(bind_pump(ms, bind_converged, w, NULL),
                  "%s: the tables did not converge on %" PRIu32 " nodes within %u ms:%s", what,
                  w->nodes, ms, bind_states());
    return tt_now_ms() - t0;
}

/*
 * Starts the master and the nodes (versions[i] for node i), and waits for
 * every node to hold the whole table.
 */
static void bind_cluster_start(const char *name, const uint32_t *versions, unsigned n)
{
    bind_want w = { n, 0, -1 };
    unsigned i;

    bind_store_start(name);
    R.n_nodes = n;
    for (i = 0; i < n; i++) {
        R.node[i].version = versions[i];
        bind_node_start(i);
    }
    bind_wait_converged(&w, BIND_WAIT_MS, "the cluster's start");
}

/* Stops every node, then the master, each with SIGTERM and a clean exit. */
static void bind_cluster_stop(void)
{
    unsigned i;

    for (i = 0; i < R.n_nodes; i++)
        if (R.node[i].p.pid != 0)
            bind_stop(&R.node[i].p);
    if (R.zk_n != 0)
        zk_stop(&R.zk_servers);  /* main() removes the directory */
    else
        bind_stop(&R.master);
}

/* ---- the clients -------------------------------------------------------------------- */

static void bind_cli_start(unsigned k, bool total, unsigned threads)
{
    bcli *c = &R.cli[k];
    char index[16], calls[16], seed[24], timeout[16], retry[16], thr[16], pace[16];
    char *argv[] = { (char *)tu_env("QRPC_SOAK_CLIENT"), "--master", R.master_addr,
                     "--index", index, "--calls", calls, "--seed", seed, "--out", c->out_path,
                     "--timeout-ms", timeout, "--retry-ms", retry, "--threads", thr,
                     "--pace-ms", pace, total ? "--method" : NULL, "total", NULL };

    c->p.kind = BP_CLIENT;
    c->p.idx = k;
    c->total = total;
    c->threads = threads;
    snprintf(c->p.name, sizeof c->p.name, "client %u (%s)", k, total ? "total" : "at-most-once");
    snprintf(index, sizeof index, "%u", k);
    snprintf(calls, sizeof calls, "%u", BIND_MAX_CALLS);
    snprintf(seed, sizeof seed, "%" PRIu64, bind_rand());
    snprintf(timeout, sizeof timeout, "%u", BIND_TIMEOUT_MS);
    snprintf(retry, sizeof retry, "%d", BIND_RETRY_MS);
    snprintf(thr, sizeof thr, "%u", threads);
    snprintf(pace, sizeof pace, "%d", BIND_PACE_MS);
    snprintf(c->out_path, sizeof c->out_path, "%s/client-%u.out", bind_dir, k);
    snprintf(c->p.err_path, sizeof c->p.err_path, "%s/client-%u.err", bind_dir, k);
    bind_spawn(&c->p, argv);
    c->done = 0;
    c->moved_ms = tt_now_ms();
    c->status = -1;
    c->have = false;
    if (k >= R.n_clis)
        R.n_clis = k + 1;
}

/*
 * The progress the scenario waits for: each idempotent client's calls,
 * and the at-most-once clients' calls together (one such client may have
 * every thread held by a call that stays with a killed server until its
 * deadline; the others must go on).
 */
typedef struct bind_target {
    uint64_t idem[BIND_MAX_CLIENTS];    /* [k] for the idempotent clients */
    uint64_t amo;                       /* the at-most-once clients' sum */
    int64_t not_before;                 /* and not before this time (ms) */
} bind_target;

static uint64_t bind_amo_done(void)
{
    uint64_t sum = 0;
    unsigned k;

    for (k = 0; k < R.n_clis; k++)
        sum += R.cli[k].total ? 0 : R.cli[k].done;
    return sum;
}

static bool bind_progressed(const void *arg)
{
    const bind_target *t = arg;
    unsigned k;

    for (k = 0; k < R.n_clis; k++) {
        const bcli *c = &R.cli[k];

        PU_CHECK(c->p.pid != 0, "%s ended after %" PRIu64 " calls", c->p.name, c->done);
        if (c->total && c->done < t->idem[k])
            return false;
    }
    return bind_amo_done() >= t->amo && tt_now_ms() >= t->not_before;
}

/* The clients' progress, for messages. */
static const char *bind_progress(void)
{
    static char s[512];
    size_t len = 0;
    unsigned k;

    s[0] = '\0';
    for (k = 0; k < R.n_clis && len < sizeof s - 64; k++)
        len += (size_t)snprintf(s + len, sizeof s - len, " %s: %" PRIu64 " calls;",
                                R.cli[k].p.name, R.cli[k].done);
    return s;
}

/*
 * Waits (at most ms) until each idempotent client has made `more` calls
 * more than now, and the at-most-once clients `more` each on average,
 * and for at least min_ms (the scenario's schedule: how long a phase
 * lasts, the clients being served all along).
 */
static void bind_wait_calls(uint64_t more, unsigned min_ms, unsigned ms, const char *what)
{
    bind_target t;
    unsigned k, amo = 0;
    bool ok;

    memset(&t, 0, sizeof t);
    for (k = 0; k < R.n_clis; k++) {
        t.idem[k] = R.cli[k].done + more;
        amo += !R.cli[k].total;
    }
    t.amo = bind_amo_done() + more * amo;
    t.not_before = tt_now_ms() + min_ms;
    bind_wake_at = t.not_before;
    ok = bind_pump(ms, bind_progressed, &t, NULL);
    bind_wake_at = 0;
    ck_assert_msg(ok, "%s: the clients did not make %" PRIu64 " calls each within %u ms:%s",
                  what, more, ms, bind_progress());
}

static bool bind_clients_gone(const void *arg)
{
    unsigned k;

    (void)arg;
    for (k = 0; k < R.n_clis; k++)
        if (R.cli[k].p.pid != 0)
            return false;
    return true;
}

/* Asks every client to stop (a byte on its stdin) and waits for each to exit 0. */
static void bind_clients_stop(void)
{
    unsigned k;

    for (k = 0; k < R.n_clis; k++)
        ck_assert_msg(write(R.cli[k].p.life_fd, "s", 1) == 1, "%s: %s", R.cli[k].p.name,
                      strerror(errno));
    ck_assert_msg(bind_pump(BIND_WAIT_MS, bind_clients_gone, NULL, NULL),
                  "the clients did not stop within %u ms:%s", BIND_WAIT_MS, bind_progress());
    for (k = 0; k < R.n_nodes; k++)
        if (R.node[k].p.pid != 0 && R.node[k].have) {
            R.end_master = R.node[k].master;
            R.end_epoch = R.node[k].epoch;
            R.end_nodes = R.node[k].nodes;
            break;
        }
}

/* ---- the checks -------------------------------------------------------------------- */

/* One call a client made and what became of it (sorted by op). */
typedef struct bcall {
    uint64_t op;
    int64_t amount;
    int32_t status;
    uint32_t method, account;
    uint32_t execs;                     /* records of it */
} bcall;

/* One execution, from a server's record. */
typedef struct bexec {
    uint64_t op;
    int64_t amount;
    uint32_t method, account, incarnation, node;
} bexec;

/* What the checks count. */
typedef struct btally {
    uint64_t calls, ok, failed, apps;   /* at-most-once calls */
    uint64_t failed_ran;                /* failed ones the records show ran */
    uint64_t by_status[32];             /* [-status] of the failed ones; [31]: other */
    uint64_t total_calls, total_failed; /* the idempotent client's */
    int first_total_error;
    uint64_t per_node[BIND_MAX_NODES];  /* records */
    uint64_t per_life[BIND_MAX_NODES][2];       /* records of incarnation 0, and of later ones */
    int64_t sum[BIND_MAX_NODES];
    uint64_t twice, ok_not_once, unavailable_ran, stray;
    char first_bad[512];
} btally;

static int bind_cmp_call(const void *a, const void *b)
{
    uint64_t x = ((const bcall *)a)->op, y = ((const bcall *)b)->op;

    return x < y ? -1 : x > y;
}

static int bind_cmp_exec(const void *a, const void *b)
{
    uint64_t x = ((const bexec *)a)->op, y = ((const bexec *)b)->op;

    return x < y ? -1 : x > y;
}

static void bind_bad(btally *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void bind_bad(btally *t, const char *fmt, ...)
{
    size_t len = strlen(t->first_bad);
    va_list ap;

    if (len < sizeof t->first_bad - 128) {
        va_start(ap, fmt);
        vsnprintf(t->first_bad + len, sizeof t->first_bad - len, fmt, ap);
        va_end(ap);
    }
}

/*
 * Reads client k's lines: the idempotent client's are tallied, the
 * at-most-once ones appended to *calls.
 */
static void bind_read_client(unsigned k, bcall **calls, size_t *n, size_t *cap, btally *t)
{
    const bcli *c = &R.cli[k];
    char *text = tu_read_file(c->out_path, NULL), *line, *save = NULL;
    uint64_t lines = 0, rt, nc, master = 0, epoch = 0;
    uint32_t nodes = 0;
    bool have_end = false;

    PU_CHECK(text != NULL, "%s left no %s", c->p.name, c->out_path);
    for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        uint64_t op;
        uint32_t method, account;
        int64_t amount;
        int status;

        PU_CHECK(!have_end, "%s: '%s' after its last line", c->p.name, line);
        if (strncmp(line, "retransmissions ", 16) == 0) {
            PU_CHECK(sscanf(line, "retransmissions %" SCNu64 " calls %" SCNu64 " master %"
                              SCNx64 " epoch %" SCNu64 " nodes %" SCNu32, &rt, &nc, &master,
                              &epoch, &nodes) == 5, "%s: bad last line '%s'", c->p.name, line);
            have_end = true;
            continue;
        }
        PU_CHECK(sscanf(line, "%" SCNu64 " %" SCNu32 " %" SCNu32 " %" SCNd64 " %d", &op,
                          &method, &account, &amount, &status) == 5,
                   "%s: bad line '%s'", c->p.name, line);
        PU_CHECK(op >> 32 == k && (uint32_t)op < BIND_MAX_CALLS, "%s: op %#" PRIx64 " is "
                   "not one of its own", c->p.name, op);
        lines++;
        if (c->total) {
            PU_CHECK(method == soak_Ledger_total_ID, "%s: bad call '%s'", c->p.name, line);
            t->total_calls++;
            if (status != 0 && t->total_failed++ == 0)
                t->first_total_error = status;
            continue;
        }
        PU_CHECK((method == soak_Ledger_incrementBy_ID && account == 0) ||
                   (method == soak_Ledger_deposit_ID && account < SOAK_ACCOUNTS),
                   "%s: bad call '%s'", c->p.name, line);
        if (*n == *cap) {
            *cap = *cap != 0 ? *cap * 2 : 65536;
            *calls = realloc(*calls, *cap * sizeof **calls);
            ck_assert_ptr_nonnull(*calls);
        }
        (*calls)[(*n)++] = (bcall){ .op = op, .amount = amount, .status = status,
                                    .method = method, .account = account };
    }
    PU_CHECK(have_end, "%s: no final 'retransmissions R calls C ...' line", c->p.name);
    /* every node's table converged: the clients' too, though they do not register */
    PU_CHECK(master == R.end_master && epoch == R.end_epoch && nodes == R.end_nodes,
               "%s ended with the table of master %#" PRIx64 " epoch %" PRIu64 " (%" PRIu32
               " nodes), the servers held master %#" PRIx64 " epoch %" PRIu64 " (%" PRIu32
               " nodes)", c->p.name, master, epoch, nodes, R.end_master, R.end_epoch,
               R.end_nodes);
    PU_CHECK(lines == c->done, "%s: %" PRIu64 " lines for %" PRIu64 " progress bytes",
               c->p.name, lines, c->done);
    free(text);
}

/* Appends node i's record to *execs. */
static void bind_read_record(unsigned i, bexec **execs, size_t *n, size_t *cap)
{
    const bnode *nd = &R.node[i];
    soak_record_file rec;
    size_t j;
    int fd = open(nd->record, O_RDONLY | O_CLOEXEC);

    PU_CHECK(fd >= 0, "%s: %s", nd->record, strerror(errno));
    ck_assert_int_eq(soak_record_load(fd, &rec), 0);
    close(fd);
    /* a killed server may leave a torn last record; its next life cut it off */
    PU_CHECK(rec.torn == 0, "%s ends in a torn record after a clean stop", nd->record);
    PU_CHECK(rec.bad == rec.n, "%s: record %zu of %zu is not a record", nd->record, rec.bad,
               rec.n);
    if (*n + rec.n > *cap) {
        *cap = *n + rec.n + 65536;
        *execs = realloc(*execs, *cap * sizeof **execs);
        ck_assert_ptr_nonnull(*execs);
    }
    for (j = 0; j < rec.n; j++) {
        const soak_record *r = &rec.recs[j];

        PU_CHECK(r->incarnation < nd->starts, "%s, record %zu: incarnation %" PRIu32,
                   nd->record, j, r->incarnation);
        (*execs)[(*n)++] = (bexec){ .op = r->op, .amount = r->amount, .method = r->method,
                                    .account = r->account, .incarnation = r->incarnation,
                                    .node = i };
    }
    free(rec.recs);
}

/*
 * The last stats line of node i's incarnation inc: its reply cache's
 * counters, and its total (at its clean stop: final).
 */
static int64_t bind_node_stats(unsigned i, unsigned inc, uint64_t *dups, uint64_t *refused)
{
    char path[160], *text;
    int64_t total;

    snprintf(path, sizeof path, "%s/stats-%u-%u", bind_dir, i, inc);
    text = tu_read_file(path, NULL);
    ck_assert_msg(text != NULL, "node %u left no %s", i, path);
    ck_assert_msg(sscanf(text, "duplicates %" SCNu64 " refused %" SCNu64 " total %" SCNd64, dups,
                         refused, &total) == 3, "%s: '%s'", path, text);
    free(text);
    return total;
}

/*
 * After a clean stop of everything: reads the clients' outputs and the
 * records, and counts (a) operations that ran twice, (b) calls that
 * returned 0 but did not run once, (c) calls that returned
 * QRPC_EUNAVAILABLE but ran, (d) records no client call matches; checks
 * (e) each v1 node's total against its record.
 */
static void bind_check_all(btally *t)
{
    bcall *calls = NULL;
    bexec *execs = NULL;
    size_t n_calls = 0, cap_calls = 0, n_execs = 0, cap_execs = 0, i;
    unsigned k;

    memset(t, 0, sizeof *t);
    for (k = 0; k < R.n_clis; k++)
        bind_read_client(k, &calls, &n_calls, &cap_calls, t);
    for (k = 0; k < R.n_nodes; k++)
        if (R.node[k].version == 1)
            bind_read_record(k, &execs, &n_execs, &cap_execs);
    if (n_calls > 0)
        qsort(calls, n_calls, sizeof *calls, bind_cmp_call);
    if (n_execs > 0)
        qsort(execs, n_execs, sizeof *execs, bind_cmp_exec);
    for (i = 0; i + 1 < n_calls; i++)
        PU_CHECK(calls[i].op != calls[i + 1].op, "op %#" PRIx64 " reported twice",
                   calls[i].op);

    for (i = 0; i < n_execs; i++) {
        const bexec *e = &execs[i];
        bcall key = { .op = e->op }, *c;

        t->per_node[e->node]++;
        t->per_life[e->node][e->incarnation > 0]++;
        t->sum[e->node] += e->amount;
        c = n_calls > 0 ? bsearch(&key, calls, n_calls, sizeof *calls, bind_cmp_call) : NULL;
        if (c == NULL || c->method != e->method || c->account != e->account ||
            c->amount != e->amount) {
            if (t->stray++ < 4)
                bind_bad(t, " (d) op %#" PRIx64 " ran on node %" PRIu32 " but no client "
                         "issued it so;", e->op, e->node);
            continue;
        }
        if (++c->execs == 2 && t->twice++ < 4)
            bind_bad(t, " (a) op %#" PRIx64 " (status %s) ran twice, again on node %" PRIu32
                     " incarnation %" PRIu32 ";", e->op, qrpc_err_name(c->status), e->node,
                     e->incarnation);
    }
    for (i = 0; i < n_calls; i++) {
        const bcall *c = &calls[i];

        t->calls++;
        if (c->status == 0) {
            t->ok++;
        } else if (c->status > 0) {
            t->apps++;
        } else {
            t->failed++;
            t->failed_ran += c->execs > 0;
            t->by_status[-c->status < 31 ? -c->status : 31]++;
        }
        if (c->status == 0 && c->execs != 1 && t->ok_not_once++ < 4)
            bind_bad(t, " (b) op %#" PRIx64 " returned 0 but ran %" PRIu32 " times;", c->op,
                     c->execs);
        if (c->status == QRPC_EUNAVAILABLE && c->execs != 0 && t->unavailable_ran++ < 4)
            bind_bad(t, " (c) op %#" PRIx64 " returned QRPC_EUNAVAILABLE but ran;", c->op);
    }
    free(calls);
    free(execs);

    ck_assert_msg(t->twice + t->ok_not_once + t->unavailable_ran + t->stray == 0,
                  "at-most-once violated (seed %#" PRIx64 "): %" PRIu64 " ran twice, %" PRIu64
                  " returned 0 but did not run once, %" PRIu64 " returned QRPC_EUNAVAILABLE "
                  "but ran, %" PRIu64 " ran without being issued:%s", bind_seed, t->twice,
                  t->ok_not_once, t->unavailable_ran, t->stray, t->first_bad);
    for (k = 0; k < R.n_nodes; k++)
        if (R.node[k].version == 1) {
            uint64_t d, f;
            int64_t total = bind_node_stats(k, R.node[k].starts - 1, &d, &f);

            ck_assert_msg(total == t->sum[k], "(e) node %u held a total of %" PRId64 " at its "
                          "stop, its record sums to %" PRId64, k, total, t->sum[k]);
        }
    ck_assert_msg(t->apps == 0, "%" PRIu64 " at-most-once calls got an application error "
                  "(a call of soak.Ledger@1 answered by the @2 node?)", t->apps);
}

/* The failed at-most-once calls by status, for messages. */
static const char *bind_failures(const btally *t)
{
    static char s[512];
    size_t len = 0;
    int e;

    s[0] = '\0';
    for (e = 1; e < 32 && len < sizeof s - 64; e++)
        if (t->by_status[e] != 0)
            len += (size_t)snprintf(s + len, sizeof s - len, " %s %" PRIu64,
                                    e == 31 ? "other" : qrpc_err_name(-e), t->by_status[e]);
    return len == 0 ? " none" : s;
}

/* ---- the cases ------------------------------------------------------------------- */

/*
 * The case's directory and seed, a fresh R, and the backend: zk_n
 * ZooKeeper servers, or the master when zk_n is 0.  Returns false when
 * the case must skip (ZooKeeper cannot run here; zk_skip() says why).
 */
static bool bind_case_init(const char *name, unsigned zk_n)
{
    const char *seed = getenv("QRPC_BIND_SEED");
    char who[64];
    unsigned i;

    snprintf(who, sizeof who, "test_binding: %s", name);
#ifndef QRPC_HAVE_ZOOKEEPER
    if (zk_n != 0) {
        const char *req = getenv("QRPC_ZK_REQUIRED");

        ck_assert_msg(req == NULL || strcmp(req, "1") != 0, "%s: QRPC_ZK_REQUIRED=1 but "
                      "libqrpc was built without ZooKeeper (QRPC_ZOOKEEPER=no, or no "
                      "libzookeeper-mt-dev)", who);
        fprintf(stderr, "%s: skipped: libqrpc was built without ZooKeeper\n", who);
        return false;
    }
#endif
    if (zk_n != 0 && zk_skip(who))
        return false;
    memset(&R, 0, sizeof R);
    R.zk_n = zk_n;
    bind_lease_ms = zk_n == 0 ? BIND_MASTER_LEASE_MS
                          : zk_n > 1 ? BIND_ZK_ENSEMBLE_LEASE_MS : BIND_ZK_LEASE_MS;
    bind_dir[0] = '\0';
    R.master.life_fd = R.master.out_fd = -1;
    for (i = 0; i < BIND_MAX_NODES; i++)
        R.node[i].p.life_fd = R.node[i].p.out_fd = -1;
    for (i = 0; i < BIND_MAX_CLIENTS; i++)
        R.cli[i].p.life_fd = R.cli[i].p.out_fd = -1;
    if (seed != NULL && *seed != '\0') {
        char *end;

        errno = 0;
        bind_seed = strtoull(seed, &end, 0);
        ck_assert_msg(*end == '\0' && errno == 0, "QRPC_BIND_SEED=%s: not a number", seed);
    }
    R.rng = bind_seed ^ (uint64_t)strlen(name) * 0x100000001b3u;
    ck_assert_msg(bind_base[0] != '\0', "main() made no directory");
    snprintf(bind_dir, sizeof bind_dir, "%s/%s", bind_base, name);
    ck_assert_msg(mkdir(bind_dir, 0700) == 0, "%s: %s", bind_dir, strerror(errno));
    fprintf(stderr, "test_binding: %s: seed %#" PRIx64 " (QRPC_BIND_SEED), %s, lease %u ms\n",
            name, bind_seed, R.zk_n != 0 ? "ZooKeeper" : "master", BIND_LEASE_MS);
    return true;
}

/* The case's name for backend _i of a loop test: name, or name_zk. */
static const char *bind_case_name(const char *name, int backend)
{
    static char s[64];

    snprintf(s, sizeof s, "%s%s", name, backend != 0 ? "_zk" : "");
    return s;
}

static const uint32_t bind_versions[BIND_MAX_NODES] = { 1, 1, 1, 2 };

/* No idempotent total() call failed. */
static void bind_check_total_ok(const btally *t)
{
    ck_assert_msg(t->total_calls > 0 && t->total_failed == 0, "idempotent total(): %" PRIu64
                  " of %" PRIu64 " calls failed (the first with %s); none may",
                  t->total_failed, t->total_calls, qrpc_err_name(t->first_total_error));
}

/* Each of the three v1 servers executed calls. */
static void bind_check_spread(const btally *t)
{
    ck_assert_msg(t->per_node[0] > 0 && t->per_node[1] > 0 && t->per_node[2] > 0,
                  "the calls did not spread: records %" PRIu64 " / %" PRIu64 " / %" PRIu64,
                  t->per_node[0], t->per_node[1], t->per_node[2]);
}

/* Every server ran all along: no call failed, and the calls spread over the three. */
static void bind_check_none_failed(const btally *t)
{
    bind_check_total_ok(t);
    ck_assert_msg(t->failed == 0, "%" PRIu64 " of %" PRIu64 " at-most-once calls failed (%s), "
                  "though every server ran all along", t->failed, t->calls, bind_failures(t));
    bind_check_spread(t);
}

/* Kill one v1 server under load, then restart it on its port with its record and log. */
START_TEST(test_server_restart)
{
    int64_t t0 = tt_now_ms(), drop_ms, converge_ms;
    bind_want four = { BIND_MAX_NODES, 0, -1 }, three = { BIND_MAX_NODES - 1, 0, -1 };
    uint64_t amo_before, idem_before;
    unsigned victim, k, amo_threads = 0;
    uint64_t dups, refused;
    btally t;
    const char *name = bind_case_name("server_restart", _i);

    if (!bind_case_init(name, _i != 0 ? 1 : 0))
        return;
    bind_cluster_start(name, bind_versions, BIND_MAX_NODES);
    bind_cli_start(0, false, 4);
    bind_cli_start(1, false, 4);
    bind_cli_start(2, true, 2);
    for (k = 0; k < R.n_clis; k++)
        amo_threads += R.cli[k].total ? 0 : R.cli[k].threads;
    bind_wait_calls(BIND_PROGRESS, 0, BIND_WAIT_MS, "before the kill");

    victim = (unsigned)(bind_rand() % 3);
    amo_before = bind_amo_done();
    idem_before = R.cli[2].done;
    bind_kill(&R.node[victim].p);
    R.node[victim].have = false;
    three.skip = (int)victim;
    drop_ms = bind_wait_converged(&three, BIND_DROP_MS, "after the kill");
    /*
     * Served all along: the other nodes took the calls while the tables
     * still listed the dead one.  Then BIND_PROGRESS more calls per
     * client within BIND_DOWN_MS.  Each at-most-once client thread may be
     * held once, for up to the deadline, by a call that may have reached
     * the dead node (every one of them was, in one CI run under TSan);
     * were every call sent to that node held (no failover), a thread
     * would make about three calls per deadline, ~15 in BIND_DOWN_MS, and
     * the clients far fewer than this.
     */
    ck_assert_msg(bind_amo_done() > amo_before && R.cli[2].done > idem_before, "no call "
                  "returned while server %u was leaving the tables:%s", victim, bind_progress());
    bind_wait_calls(BIND_PROGRESS, 0, BIND_DOWN_MS, "with a server down");

    bind_node_start(victim);
    converge_ms = bind_wait_converged(&four, BIND_CONVERGE_MS, "after the restart");
    /* long enough for the restarted server to take its share again */
    bind_wait_calls(3 * BIND_PROGRESS, 0, BIND_WAIT_MS, "after the restart");

    bind_clients_stop();
    bind_cluster_stop();
    bind_check_all(&t);
    (void)bind_node_stats(victim, 1, &dups, &refused);
    fprintf(stderr, "test_binding: server_restart: %.1f s, server %u killed: left the tables "
            "in %" PRId64 " ms, all four tables equal %" PRId64 " ms after its restart; "
            "at-most-once calls %" PRIu64 ", ok %" PRIu64 ", failed:%s (ran %" PRIu64 "); "
            "records %" PRIu64 " / %" PRIu64 " / %" PRIu64 " (restarted server: %" PRIu64
            " before, %" PRIu64 " after; it answered %" PRIu64 " copies from its reply cache "
            "and log and refused %" PRIu64 "); total() calls %" PRIu64 ", failed %" PRIu64
            "\n", (double)(tt_now_ms() - t0) / 1000.0, victim, drop_ms, converge_ms, t.calls,
            t.ok, bind_failures(&t), t.failed_ran, t.per_node[0], t.per_node[1], t.per_node[2],
            t.per_life[victim][0], t.per_life[victim][1], dups, refused, t.total_calls,
            t.total_failed);

    bind_check_total_ok(&t);
    ck_assert_msg(t.by_status[-QRPC_EUNKNOWN] + t.by_status[-QRPC_ETIMEDOUT] == t.failed,
                  "at-most-once calls failed with other errors than QRPC_EUNKNOWN and "
                  "QRPC_ETIMEDOUT:%s", bind_failures(&t));
    ck_assert_msg(t.failed <= (uint64_t)amo_threads * BIND_FAIL_PER_THREAD, "%" PRIu64
                  " at-most-once calls failed (%s), more than the %u that may have been on "
                  "their way to the killed server", t.failed, bind_failures(&t),
                  amo_threads * BIND_FAIL_PER_THREAD);
    bind_check_spread(&t);
    ck_assert_msg(t.per_life[victim][0] > 0 && t.per_life[victim][1] > 0, "the restarted "
                  "server executed %" PRIu64 " calls before its kill and %" PRIu64 " after its "
                  "restart: both must be some", t.per_life[victim][0], t.per_life[victim][1]);
}
END_TEST

/* Kill the master under load, then restart it on its port: the cluster re-forms. */
START_TEST(test_master_restart)
{
    int64_t t0 = tt_now_ms(), converge_ms;
    bind_want four = { BIND_MAX_NODES, 0, -1 };
    int port;
    btally t;

    (void)bind_case_init("master_restart", 0);
    bind_cluster_start("master_restart", bind_versions, BIND_MAX_NODES);
    four.not_master = R.node[0].master;
    bind_cli_start(0, false, 4);
    bind_cli_start(1, true, 2);
    bind_wait_calls(BIND_PROGRESS, 0, BIND_WAIT_MS, "before the master's kill");

    port = R.master.port;
    bind_kill(&R.master);
    /*
     * No master, for longer than a lease (every node's lease with the old
     * one has run out): the nodes keep their tables, and the calls go on.
     */
    bind_wait_calls(BIND_PROGRESS, BIND_MASTER_DOWN_MS, BIND_WAIT_MS, "without a master");
    bind_master_start(port);
    converge_ms = bind_wait_converged(&four, BIND_REFORM_MS, "after the master's restart");
    bind_wait_calls(BIND_PROGRESS, 0, BIND_WAIT_MS, "after the master's restart");

    bind_clients_stop();
    bind_cluster_stop();
    bind_check_all(&t);
    fprintf(stderr, "test_binding: master_restart: %.1f s, all four nodes registered again "
            "and their tables equal %" PRId64 " ms after the master's restart; at-most-once "
            "calls %" PRIu64 ", ok %" PRIu64 ", failed:%s; records %" PRIu64 " / %" PRIu64
            " / %" PRIu64 "; total() calls %" PRIu64 ", failed %" PRIu64 "\n",
            (double)(tt_now_ms() - t0) / 1000.0, converge_ms, t.calls, t.ok, bind_failures(&t),
            t.per_node[0], t.per_node[1], t.per_node[2], t.total_calls, t.total_failed);

    bind_check_none_failed(&t);
}
END_TEST

/*
 * The ZooKeeper backend on a three-server ensemble: its leader is killed
 * under load.  The clients go on being served and the nodes keep their
 * table; the cluster goes on binding through the two servers left: the
 * version-2 node (which no client calls) stops cleanly and every table
 * drops it at once, it starts again and every table lists it; then the
 * killed server comes back.  No call fails, and (a)-(e) hold.
 */
START_TEST(test_zk_ensemble)
{
    int64_t t0 = tt_now_ms(), leave_ms, back_ms;
    bind_want four = { BIND_MAX_NODES, 0, -1 }, three = { BIND_MAX_NODES - 1, 0, 3 };
    int leader;
    btally t;

    if (!bind_case_init("zk_ensemble", 3))
        return;
    bind_cluster_start("zk_ensemble", bind_versions, BIND_MAX_NODES);
    bind_cli_start(0, false, 4);
    bind_cli_start(1, true, 2);
    bind_wait_calls(BIND_PROGRESS, 0, BIND_WAIT_MS, "before the leader's kill");

    leader = zk_leader(&R.zk_servers);
    ck_assert_msg(leader >= 0, "no ZooKeeper server says it leads");
    zk_kill(&R.zk_servers, (unsigned)leader);
    bind_wait_calls(BIND_PROGRESS, BIND_ZK_ELECTION_MS, BIND_WAIT_MS, "with the leader killed");
    bind_wait_converged(&four, BIND_WAIT_MS, "with the leader killed");

    bind_stop(&R.node[3].p);
    R.node[3].have = false;
    leave_ms = bind_wait_converged(&three, BIND_ZK_CHANGE_MS, "after a clean stop");
    /*
     * A start, not just a change: a new process opens its session and
     * registers (231 ms in a quiet run, over 2 s in a CI run of f6e0a90
     * on a loaded machine); how long it took is printed below.
     */
    bind_node_start(3);
    back_ms = bind_wait_converged(&four, BIND_WAIT_MS, "after the node's return");
    zk_restart(&R.zk_servers, (unsigned)leader);
    bind_wait_calls(BIND_PROGRESS, 0, BIND_WAIT_MS, "after the server's return");

    bind_clients_stop();
    bind_cluster_stop();
    bind_check_all(&t);
    fprintf(stderr, "test_binding: zk_ensemble: %.1f s, ZooKeeper server %d (the leader) "
            "killed under load; then a node left every table in %" PRId64 " ms and was back "
            "in %" PRId64 " ms; at-most-once calls %" PRIu64 ", ok %" PRIu64 ", failed:%s; "
            "records %" PRIu64 " / %" PRIu64 " / %" PRIu64 "; total() calls %" PRIu64
            ", failed %" PRIu64 "\n", (double)(tt_now_ms() - t0) / 1000.0, leader + 1,
            leave_ms, back_ms, t.calls, t.ok, bind_failures(&t), t.per_node[0], t.per_node[1],
            t.per_node[2], t.total_calls, t.total_failed);

    bind_check_none_failed(&t);
}
END_TEST

/*
 * A node stopped (SIGSTOP) for longer than its lease (the master's, or
 * its ZooKeeper session) leaves every other table; resumed, it registers
 * again by itself and every table lists it again.
 */
START_TEST(test_node_pause)
{
    bind_want four = { BIND_MAX_NODES, 0, -1 }, three = { BIND_MAX_NODES - 1, 0, 3 };
    const char *name = bind_case_name("node_pause", _i);
    int64_t drop_ms, back_ms;
    uint32_t rank;

    if (!bind_case_init(name, _i != 0 ? 1 : 0))
        return;
    bind_cluster_start(name, bind_versions, BIND_MAX_NODES);
    rank = R.node[3].rank;
    ck_assert_int_eq(kill(R.node[3].p.pid, SIGSTOP), 0);
    drop_ms = bind_wait_converged(&three, BIND_DROP_MS, "while a node is stopped");
    ck_assert_int_eq(kill(R.node[3].p.pid, SIGCONT), 0);
    back_ms = bind_wait_converged(&four, BIND_DROP_MS, "after the node resumed");
    fprintf(stderr, "test_binding: %s: a node stopped left every table in %" PRId64 " ms; "
            "resumed, it was in all of them again in %" PRId64 " ms (rank %" PRIu32 ", then %"
            PRIu32 ")\n", name, drop_ms, back_ms, rank, R.node[3].rank);
    bind_cluster_stop();
}
END_TEST

/* soak.Ledger's methods under another name, or at another version. */
static qrpc_service_desc bind_desc(const char *name, uint32_t version)
{
    qrpc_service_desc d = soak_Ledger_desc;

    d.name = name;
    d.version = version;
    return d;
}

/* total() through a client of n bound to desc; *ms gets how long it took. */
static int bind_total(qrpc_node *n, const qrpc_service_desc *desc, int64_t *result, int64_t *ms)
{
    qrpc_client *c;
    int64_t t0 = tt_now_ms();
    int rc;

    ck_assert_int_eq(qrpc_client_create(n, NULL, desc, &c), 0);
    qrpc_client_set_timeout(c, BIND_TIMEOUT_MS);
    *result = -1;
    rc = soak_Ledger_total(c, result);
    *ms = tt_now_ms() - t0;
    qrpc_client_destroy(c);
    return rc;
}

/* The clear errors: a missing service, a missing version; the versions that exist. */
/*
 * ZooKeeper only: znodes under the cluster's nodes/ that are no node's
 * registration (junk data, another name, empty) are left out of node n's
 * table, which it says in its log, and its bound calls go on.
 */
static void bind_zk_junk(const char *name, qrpc_node *n, tt_log *log)
{
#ifdef QRPC_HAVE_ZOOKEEPER
    static const char junk[] = "not a registration";
    static const char *const child[] = { "n-0000999999", "n-0000999998", "other" };
    int64_t until = tt_now_ms() + BIND_WAIT_MS, result, ms;
    qrpc_binding_info b;
    zhandle_t *zh;
    char path[160];
    size_t i;
    int zrc, rc;

    zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
    zh = zookeeper_init(zk_connect_string(&R.zk_servers), NULL, 10000, NULL, NULL, 0);
    ck_assert_ptr_nonnull(zh);
    while (zoo_state(zh) != ZOO_CONNECTED_STATE && tt_now_ms() < until)
        tt_nap_ms(10);                  /* no watcher: polling the state is the wait */
    ck_assert_msg(zoo_state(zh) == ZOO_CONNECTED_STATE, "no ZooKeeper session within %u ms",
                  BIND_WAIT_MS);
    for (i = 0; i < sizeof child / sizeof child[0]; i++) {
        snprintf(path, sizeof path, "/qrpc/%s/nodes/%s", name, child[i]);
        zrc = zoo_create(zh, path, i == 1 ? NULL : junk, i == 1 ? -1 : (int)sizeof junk,
                         &ZOO_OPEN_ACL_UNSAFE, ZOO_EPHEMERAL, NULL, 0);
        ck_assert_msg(zrc == ZOK, "create %s: %s", path, zerror(zrc));
    }
    ck_assert_msg(tt_log_wait(log, "n-0000999999 is not a qrpc node's registration",
                              BIND_WAIT_MS), "no log line about the junk znode");
    ck_assert_msg(tt_log_wait(log, "n-0000999998 is not a qrpc node's registration",
                              BIND_WAIT_MS), "no log line about the empty znode");
    ck_assert_int_eq(qrpc_node_get_binding(n, &b), 0);
    ck_assert_msg(b.nodes == 2, "junk in the table: %" PRIu32 " nodes, not 2", b.nodes);
    rc = bind_total(n, &soak_Ledger_desc, &result, &ms);
    ck_assert_msg(rc == 0 && result == 7, "soak.Ledger@1 total() beside junk: %s (%d), result %"
                  PRId64 " (7 expected)", qrpc_err_name(rc), rc, result);
    ck_assert_int_eq(zookeeper_close(zh), ZOK);
#else
    (void)name, (void)n, (void)log;
    ck_abort_msg("bind_zk_junk() in a build without ZooKeeper");
#endif
}

START_TEST(test_errors)
{
    static const uint32_t versions[2] = { 1, 2 };
    qrpc_service_desc missing = bind_desc("soak.Missing", 1), v3 = bind_desc("soak.Ledger", 3);
    qrpc_service_desc v2 = bind_desc("soak.Ledger", 2);
    qrpc_node_config cfg;
    qrpc_binding_info b;
    qrpc_node *n, *plain;
    qrpc_client *c;
    uint32_t out[4] = { 0, 0, 0, 0 };
    int64_t result, ms;
    tt_log log;
    int rc;
    const char *name = bind_case_name("errors", _i);

    if (!bind_case_init(name, _i != 0 ? 1 : 0))
        return;
    bind_cluster_start(name, versions, 2);

    tt_log_init(&log);
    qrpc_node_config_init(&cfg);
    cfg.master = R.master_addr;
    cfg.timeout_ms = BIND_TIMEOUT_MS;
    cfg.log = tt_log_fn;
    cfg.log_arg = &log;
    ck_assert_int_eq(qrpc_node_create(&cfg, &n), 0);

    /*
     * At once: the node cannot have its table yet, and the call waits for
     * it.  A deposit, which the @1 server runs and the @2 node refuses.
     */
    ck_assert_int_eq(soak_Ledger_connect(n, NULL, &c), 0);
    result = -1;
    rc = soak_Ledger_deposit(c, 1, 0, 7, &result);
    ck_assert_msg(rc == 0 && result == 7, "the first bound call of soak.Ledger@1: %s (%d), "
                  "result %" PRId64, qrpc_err_name(rc), rc, result);
    qrpc_client_destroy(c);
    rc = bind_total(n, &soak_Ledger_desc, &result, &ms);
    ck_assert_msg(rc == 0 && result == 7, "soak.Ledger@1 total(): %s (%d), result %" PRId64
                  " (7 expected)", qrpc_err_name(rc), rc, result);

    rc = bind_total(n, &missing, &result, &ms);
    ck_assert_msg(rc == QRPC_ENOSERVICE, "soak.Missing@1: %s (%d), QRPC_ENOSERVICE expected",
                  qrpc_err_name(rc), rc);
    ck_assert_msg(ms < BIND_TIMEOUT_MS / 2, "soak.Missing@1 failed after %" PRId64 " ms, not "
                  "at once (deadline %u ms)", ms, BIND_TIMEOUT_MS);
    rc = bind_total(n, &v3, &result, &ms);
    ck_assert_msg(rc == QRPC_ENOVERSION, "soak.Ledger@3: %s (%d), QRPC_ENOVERSION expected",
                  qrpc_err_name(rc), rc);
    ck_assert_msg(ms < BIND_TIMEOUT_MS / 2, "soak.Ledger@3 failed after %" PRId64 " ms, not "
                  "at once (deadline %u ms)", ms, BIND_TIMEOUT_MS);

    ck_assert_int_eq(qrpc_node_versions(n, "soak.Ledger", out, 4), 2);
    ck_assert_msg(out[0] == 1 && out[1] == 2 && out[2] == 0, "versions %" PRIu32 ", %" PRIu32
                  ", %" PRIu32, out[0], out[1], out[2]);
    memset(out, 0, sizeof out);
    ck_assert_int_eq(qrpc_node_versions(n, "soak.Ledger", out, 1), 2);
    ck_assert_msg(out[0] == 1 && out[1] == 0, "versions (max 1) %" PRIu32 ", %" PRIu32, out[0],
                  out[1]);
    ck_assert_int_eq(qrpc_node_versions(n, "soak.Ledger", NULL, 0), 2);
    ck_assert_int_eq(qrpc_node_versions(n, "soak.Missing", out, 4), 0);
    ck_assert_int_eq(qrpc_node_versions(n, NULL, out, 4), QRPC_EINVAL);

    /* the @2 node answers its own version: total() is 0 there (its channel says so), not 7 */
    rc = bind_total(n, &v2, &result, &ms);
    ck_assert_msg(rc == 0 && result == 0, "soak.Ledger@2: %s (%d), result %" PRId64,
                  qrpc_err_name(rc), rc, result);

    /* this node's table is the servers' table */
    ck_assert_int_eq(qrpc_node_get_binding(n, &b), 0);
    ck_assert_msg(b.nodes == 2 && b.epoch == R.node[0].epoch && b.master == R.node[0].master &&
                  b.node_id != 0 && b.node_id != R.node[0].node_id &&
                  b.node_id != R.node[1].node_id, "binding: nodes %" PRIu32 " epoch %" PRIu64
                  " master %#" PRIx64 " id %#" PRIx64 "; the servers:%s", b.nodes, b.epoch,
                  b.master, b.node_id, bind_states());
    if (R.zk_n != 0)
        bind_zk_junk(name, n, &log);
    qrpc_node_destroy(n);

    /* no master, no binding (and QRPC_MASTER is not what decides: "" is none) */
    cfg.master = "";
    ck_assert_int_eq(qrpc_node_create(&cfg, &plain), 0);
    ck_assert_int_eq(qrpc_node_get_binding(plain, &b), QRPC_EINVAL);
    ck_assert_int_eq(qrpc_node_versions(plain, "soak.Ledger", out, 4), QRPC_EINVAL);
    qrpc_node_destroy(plain);
    tt_log_fini(&log);

    bind_cluster_stop();
}
END_TEST

/* What the in-process Ledger of local_first counts. */
typedef struct bind_local {
    atomic_long runs;
} bind_local;

static int bind_local_inc(qrpc_ctx *ctx, uint64_t op, int64_t amount, int64_t *result)
{
    bind_local *l = qrpc_ctx_state(ctx);

    (void)op;
    atomic_fetch_add(&l->runs, 1);
    *result = amount;
    return 0;
}

static int bind_local_dep(qrpc_ctx *ctx, uint64_t op, uint32_t account, int64_t amount,
                          int64_t *result)
{
    (void)account;
    return bind_local_inc(ctx, op, amount, result);
}

static int bind_local_total(qrpc_ctx *ctx, int64_t *result)
{
    bind_local *l = qrpc_ctx_state(ctx);

    *result = atomic_load(&l->runs);
    return 0;
}

static bool bind_n_nodes_converged(const void *arg)
{
    const qrpc_node *n = arg;
    qrpc_binding_info b;
    bind_want w = { 2, 0, -1 };

    return bind_converged(&w) && qrpc_node_get_binding(n, &b) == 0 && b.registered &&
           b.nodes == 2 && b.epoch == R.node[0].epoch;
}

/* A node serving the service itself is preferred, and reached without a socket. */
START_TEST(test_local_first)
{
    static const uint32_t versions[1] = { 1 };
    static const soak_Ledger_handlers h = {
        .incrementBy = bind_local_inc, .deposit = bind_local_dep, .total = bind_local_total,
    };
    enum { CALLS = 200 };
    bind_local state = { 0 };
    qrpc_node_config cfg;
    qrpc_node *n;
    qrpc_client *c;
    struct stat st;
    tt_log log;
    int i;
    const char *name = bind_case_name("local_first", _i);

    if (!bind_case_init(name, _i != 0 ? 1 : 0))
        return;
    bind_cluster_start(name, versions, 1);

    tt_log_init(&log);
    qrpc_node_config_init(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.master = R.master_addr;
    cfg.timeout_ms = BIND_TIMEOUT_MS;
    cfg.log = tt_log_fn;
    cfg.log_arg = &log;
    ck_assert_int_eq(qrpc_node_create(&cfg, &n), 0);
    ck_assert_int_eq(soak_Ledger_serve(n, &h, &state), 0);
    /* both nodes registered, each with the other in its table: the remote one is bindable */
    ck_assert_msg(bind_pump(BIND_CONVERGE_MS, bind_n_nodes_converged, n, NULL),
                  "the tables did not converge on 2 nodes within %u ms:%s", BIND_CONVERGE_MS,
                  bind_states());

    ck_assert_int_eq(soak_Ledger_connect(n, NULL, &c), 0);
    for (i = 0; i < CALLS; i++) {
        int64_t result = 0;
        int rc = soak_Ledger_deposit(c, (uint64_t)i, 0, 1, &result);

        PU_CHECK(rc == 0, "bound call %d: %s", i, qrpc_err_name(rc));
    }
    qrpc_client_destroy(c);
    ck_assert_int_eq(atomic_load(&state.runs), CALLS);
    ck_assert_int_eq(qrpc_unserve(n, soak_Ledger_desc.name, soak_Ledger_desc.version), 0);
    qrpc_node_destroy(n);
    tt_log_fini(&log);

    bind_cluster_stop();
    ck_assert_int_eq(stat(R.node[0].record, &st), 0);
    ck_assert_msg(st.st_size == 0, "the other v1 node executed %lld calls of this process's "
                  "bound client, which serves the service itself",
                  (long long)(st.st_size / (off_t)sizeof(soak_record)));
}
END_TEST

/* ---- qrpc(1) and qrpc-master(8) from the command line ------------------------------ */

/* How one run of a program ended, and what it printed (malloc'd). */
typedef struct btool {
    int status;                         /* wait status */
    char *out, *err;
    char what[160];                     /* the command line, for messages */
} btool;

static unsigned bind_tool_runs;

/*
 * Runs argv (argv[0] a path) to its end, with stdin /dev/null, stdout and
 * stderr into files of the case's directory, and this process's
 * environment without QRPC_MASTER.  It must end within BIND_WAIT_MS; it
 * is reaped either way.
 */
static void bind_tool_run(char *const argv[], btool *t)
{
    char out_path[160], err_path[160];
    char **envp;
    size_t n = 0, k = 0, i, len = 0;
    int in_fd, out_fd, err_fd, st;
    pid_t pid;

    t->what[0] = '\0';
    for (i = 0; argv[i] != NULL && len < sizeof t->what; i++)
        len += (size_t)snprintf(t->what + len, sizeof t->what - len, "%s%s", i ? " " : "",
                                i ? argv[i] : strrchr(argv[0], '/') + 1);
    while (environ[n] != NULL)
        n++;
    envp = calloc(n + 1, sizeof *envp);
    ck_assert_ptr_nonnull(envp);
    for (i = 0; i < n; i++)
        if (strncmp(environ[i], "QRPC_MASTER=", 12) != 0)
            envp[k++] = environ[i];
    snprintf(out_path, sizeof out_path, "%s/tool-%u.out", bind_dir, bind_tool_runs);
    snprintf(err_path, sizeof err_path, "%s/tool-%u.err", bind_dir, bind_tool_runs);
    bind_tool_runs++;
    in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    out_fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    err_fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ck_assert_msg(in_fd >= 0 && out_fd >= 0 && err_fd >= 0, "%s: %s", t->what, strerror(errno));
    pid = pu_exec(argv, envp, in_fd, out_fd, err_fd);
    free(envp);
    st = pu_reap(pid, BIND_WAIT_MS);
    if (st == -1) {
        kill(pid, SIGKILL);
        (void)pu_reap(pid, BIND_WAIT_MS);
        ck_abort_msg("%s: still running after %u ms; its stderr:\n%s", t->what, BIND_WAIT_MS,
                     pu_tail(err_path));
    }
    t->status = st;
    t->out = tu_read_file(out_path, NULL);
    t->err = tu_read_file(err_path, NULL);
    ck_assert_msg(t->out != NULL && t->err != NULL, "%s: its output files are gone", t->what);
    ck_assert_msg(strstr(t->err, "Sanitizer") == NULL &&
                  strstr(t->err, "runtime error:") == NULL, "%s: a sanitizer reported:\n%s",
                  t->what, t->err);
}

/* It exited with code. */
static void bind_tool_exit(const btool *t, int code)
{
    ck_assert_msg(WIFEXITED(t->status) && WEXITSTATUS(t->status) == code,
                  "%s: %s (exit %d expected); stdout:\n%s\nstderr:\n%s", t->what,
                  pu_status_str(t->status), code, t->out, t->err);
}

static void bind_tool_free(btool *t)
{
    free(t->out);
    free(t->err);
    t->out = t->err = NULL;
}

/* The lines of s that start with prefix (or, with anywhere, contain it). */
static unsigned bind_count_lines(const char *s, const char *prefix, bool anywhere)
{
    size_t plen = strlen(prefix);
    unsigned count = 0;

    while (*s != '\0') {
        const char *nl = strchr(s, '\n');
        size_t len = nl != NULL ? (size_t)(nl - s) : strlen(s);
        const char *hit = memmem(s, len, prefix, plen);

        if (hit != NULL && (anywhere || hit == s))
            count++;
        s += len + (nl != NULL);
    }
    return count;
}

/*
 * services' line for soak.Ledger@version: there is exactly one, and each
 * rank it lists is that of a node offering that version, no rank twice.
 * Returns how many ranks it lists.
 */
static unsigned bind_tool_ranks(const btool *t, uint32_t version)
{
    char prefix[48], line[256];
    const char *p;
    unsigned count = 0, i;
    uint32_t seen = 0;

    snprintf(prefix, sizeof prefix, "soak.Ledger@%" PRIu32 " ranks ", version);
    ck_assert_msg(bind_count_lines(t->out, prefix, false) == 1, "%s: not one line '%s...':\n%s",
                  t->what, prefix, t->out);
    p = strstr(t->out, prefix);
    while (p != t->out && p[-1] != '\n')
        p = strstr(p + 1, prefix);
    snprintf(line, sizeof line, "%.*s", (int)strcspn(p, "\n"), p);
    for (p = line + strlen(prefix); *p != '\0';) {
        char *end;
        unsigned long rank = strtoul(p, &end, 10);
        bool found = false;

        ck_assert_msg(end != p && (*end == ' ' || *end == '\0') && rank < 32 &&
                      !(seen & (1u << rank)), "%s: '%s': a bad or repeated rank at '%s'",
                      t->what, line, p);
        seen |= 1u << rank;
        for (i = 0; i < R.n_nodes; i++)
            found |= R.node[i].rank == rank && R.node[i].version == version;
        ck_assert_msg(found, "%s: '%s': no node of rank %lu serves version %" PRIu32 ":%s",
                      t->what, line, rank, version, bind_states());
        count++;
        p = *end == ' ' ? end + 1 : end;
    }
    return count;
}

/* The tool against a live cluster; the master's and the tool's usage errors. */
START_TEST(test_tool)
{
    const char *tool = tu_env("QRPC_TOOL_BIN"), *master = tu_env("QRPC_MASTER_BIN");
    char head[96];
    btool t;
    const char *name = bind_case_name("tool", _i);

    if (!bind_case_init(name, _i != 0 ? 1 : 0))
        return;
    bind_cluster_start(name, bind_versions, BIND_MAX_NODES);

    {
        char *argv[] = { (char *)tool, "--master", R.master_addr, "--verbose",
                         "--timeout-ms", BIND_TOOL_TIMEOUT, "nodes", NULL };

        bind_tool_run(argv, &t);
        bind_tool_exit(&t, 0);
        /* the table every node holds (it cannot change: no node comes or goes) */
        snprintf(head, sizeof head, "master %016" PRIx64 " epoch %" PRIu64 " nodes %u\n",
                 R.node[0].master, R.node[0].epoch, BIND_MAX_NODES);
        ck_assert_msg(strncmp(t.out, head, strlen(head)) == 0, "%s: first line not '%.*s':\n%s",
                      t.what, (int)strlen(head) - 1, head, t.out);
        ck_assert_msg(bind_count_lines(t.out, "rank ", false) == BIND_MAX_NODES &&
                      bind_count_lines(t.out, "", false) == BIND_MAX_NODES + 1,
                      "%s: not %u lines 'rank ...' after the first:\n%s", t.what,
                      BIND_MAX_NODES, t.out);
        bind_tool_free(&t);
    }
    {
        char *argv[] = { (char *)tool, "--master", R.master_addr, "--verbose",
                         "--timeout-ms", BIND_TOOL_TIMEOUT, "services", NULL };
        unsigned v1, v2;

        bind_tool_run(argv, &t);
        bind_tool_exit(&t, 0);
        v1 = bind_tool_ranks(&t, 1);
        v2 = bind_tool_ranks(&t, 2);
        ck_assert_msg(v1 == 3 && v2 == 1 && bind_count_lines(t.out, "", false) == 2,
                      "%s: %u ranks at @1 (3 expected), %u at @2 (1 expected), and no other "
                      "line:\n%s", t.what, v1, v2, t.out);
        bind_tool_free(&t);
    }
    {
        char *argv[] = { (char *)tool, "--master", R.master_addr, "--verbose",
                         "--timeout-ms", BIND_TOOL_TIMEOUT, "ping", "soak.Ledger@1", NULL };

        bind_tool_run(argv, &t);
        bind_tool_exit(&t, 0);
        ck_assert_msg(bind_count_lines(t.out, ": ok ", true) == 3 &&
                      bind_count_lines(t.out, "", false) == 3,
                      "%s: not 3 lines '...: ok N us':\n%s", t.what, t.out);
        bind_tool_free(&t);
    }
    {
        char *argv[] = { (char *)tool, "--master", R.master_addr, "--verbose",
                         "--timeout-ms", BIND_TOOL_TIMEOUT, "ping", "soak.Ledger@3", NULL };

        bind_tool_run(argv, &t);
        bind_tool_exit(&t, 1);
        ck_assert_msg(t.out[0] == '\0' && strstr(t.err, "qrpc: no node offers soak.Ledger@3 "
                                                 "(versions offered: 1 2)") != NULL,
                      "%s: stdout:\n%s\nstderr (the versions 1 2 expected):\n%s", t.what,
                      t.out, t.err);
        bind_tool_free(&t);
    }
    {
        /* neither --master nor QRPC_MASTER (bind_tool_run() removes it) */
        char *argv[] = { (char *)tool, "ping", "soak.Ledger", NULL };

        bind_tool_run(argv, &t);
        bind_tool_exit(&t, 2);
        ck_assert_msg(t.out[0] == '\0' && strstr(t.err, "no master") != NULL,
                      "%s: stdout:\n%s\nstderr:\n%s", t.what, t.out, t.err);
        bind_tool_free(&t);
    }
    {
        /* below the least lease (100 ms): a usage error, before it listens */
        char *argv[] = { (char *)master, "--lease-ms", "5", NULL };

        bind_tool_run(argv, &t);
        bind_tool_exit(&t, 2);
        ck_assert_msg(t.out[0] == '\0' && strstr(t.err, "--lease-ms") != NULL,
                      "%s: stdout:\n%s\nstderr:\n%s", t.what, t.out, t.err);
        bind_tool_free(&t);
    }

    bind_cluster_stop();
}
END_TEST

/* ---- main: the directory, the subreaper ------------------------------------------- */

int main(void)
{
    char dir[] = "/tmp/qrpc-test-XXXXXX";
    Suite *s = suite_create("binding");
    TCase *tc = tcase_create("binding");
    int rc;

    tcase_set_timeout(tc, 150.0);
    /* loop tests: _i 0 binds through the master, 1 through ZooKeeper */
    tcase_add_loop_test(tc, test_errors, 0, 2);
    tcase_add_loop_test(tc, test_local_first, 0, 2);
    tcase_add_loop_test(tc, test_tool, 0, 2);
    tcase_add_loop_test(tc, test_server_restart, 0, 2);
    tcase_add_test(tc, test_master_restart);
    tcase_add_loop_test(tc, test_node_pause, 0, 2);
    tcase_add_test(tc, test_zk_ensemble);
    suite_add_tcase(s, tc);
    if (mkdtemp(dir) == NULL) {
        fprintf(stderr, "test_binding: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    snprintf(bind_base, sizeof bind_base, "%s", dir);
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1);

    rc = tu_run_suite(s);

    pu_kill_live();
    pu_wait_orphans("test_binding", BIND_WAIT_MS);
    if (getenv("QRPC_BIND_KEEP") != NULL && *getenv("QRPC_BIND_KEEP") != '\0')
        fprintf(stderr, "test_binding: kept %s\n", bind_base);
    else
        pu_remove_dir("test_binding", bind_base);
    return rc;
}
