/*
 * zkutil.h - real Apache ZooKeeper servers for the tests of the ZooKeeper
 * binding backend: a standalone server (ZooKeeperServerMain) or an
 * ensemble of up to ZK_MAX_SERVERS on 127.0.0.1 (QuorumPeerMain), run
 * from Debian's zookeeper package (/usr/share/java/zookeeper.jar, whose
 * manifest Class-Path brings its dependencies) by the java on this
 * machine.  It starts them in a directory the test gives, on ports of the
 * system's choosing, waits until they serve (the "srvr" four-letter
 * word), gives the connection string, asks a server for its mode, kills
 * one with SIGKILL, restarts it on the same ports and data, and stops
 * them all.  It is not a ZooKeeper client (tests use the C client,
 * <zookeeper/zookeeper.h>, -lzookeeper_mt) and it does not configure
 * anything the binding backend needs (no znodes, ACLs or auth).
 *
 * Without java or the jar, zk_why_missing() says what to install and
 * zk_skip() decides: the test skips, or fails when QRPC_ZK_REQUIRED=1.
 *
 * Each server i (0-based; its myid is i + 1) lives in DIR/zk<i+1>/: its
 * zoo.cfg, its data/ (with myid) and zk.log, which gets its JVM's stdout
 * and stderr (the slf4j-simple binding, when installed, makes ZooKeeper
 * log there; without it ZooKeeper's own messages are lost).  A restarted
 * server appends to the same log.
 *
 * No JVM outlives the test process.  A JVM is this process's own child,
 * started with PR_SET_PDEATHSIG = SIGKILL (see zk_spawn() for why that
 * rather than a lifeline on stdin), and goes into procutil.h's pu_live
 * table, so pu_kill_live() covers CK_FORK=no.  Every wait is bounded
 * (ZK_START_MS, ZK_QUERY_MS, ZK_REAP_MS), polls a condition with short
 * naps, and fails the running Check test, after killing the ensemble and
 * keeping its directory, with the end of the guilty server's log.
 *
 * Include after testutil.h, tcputil.h and procutil.h (it includes them
 * too).  The helpers are for tests (Check macros), called from the test's
 * main thread (see zk_spawn()).
 */
#ifndef QRPC_TEST_ZKUTIL_H
#define QRPC_TEST_ZKUTIL_H

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "tcputil.h"
#include "procutil.h"

#define ZK_JAR          "/usr/share/java/zookeeper.jar"
#define ZK_SLF4J_JAR    "/usr/share/java/slf4j-simple.jar"  /* optional: a real log */
#define ZK_MAX_SERVERS  5
#define ZK_TICK_MS      500u    /* tickTime when the caller gives 0 */
/*
 * How long one start (or restart) may take until every server serves.
 * Measured on two cores: 0.35-0.5 s standalone, 1.4-1.8 s for three
 * (3.5-4 s with three such tests at once); the rest is slack for a
 * loaded machine (sanitizers, parallel makes).
 */
#define ZK_START_MS     30000u
/*
 * Starts whose ports turn out taken: the ports are free when chosen but
 * not held until the JVM binds them, and the kernel also hands ports of
 * that range to outgoing connections meanwhile.
 */
#define ZK_PORT_TRIES   4
#define ZK_RETRY_PAUSE_MS 250u  /* before a restart tries its same ports again */
#define ZK_QUERY_MS     1000u   /* one four-letter-word exchange */
#define ZK_REAP_MS      10000u  /* a SIGKILLed JVM to be reaped */
#define ZK_POLL_MS      20u     /* between two looks at a condition */

/* What a server says it is (srvr's "Mode:" line). */
typedef enum zk_mode {
    ZK_MODE_DOWN,               /* no answer on its client port (or not running) */
    ZK_MODE_NOT_SERVING,        /* answers, serves no requests (a member without quorum) */
    ZK_MODE_STANDALONE,         /* this one and those after it: serving */
    ZK_MODE_LEADER,
    ZK_MODE_FOLLOWER,
    ZK_MODE_OBSERVER
} zk_mode;

/* One server: its ports, files and JVM. */
typedef struct zk_server {
    pid_t pid;                  /* its JVM, a child of ours; 0: not running */
    int status;                 /* the last JVM's wait status, once reaped */
    int client_port, peer_port, election_port;  /* the last two: ensembles only */
    unsigned starts;            /* JVMs started for it */
    long log_off;               /* zk.log's size when the running JVM started */
    char dir[256];              /* DIR/zk<i+1> */
    char cfg[300];              /* its zoo.cfg */
    char data[300];             /* its dataDir */
    char log[300];              /* zk.log: the JVMs' stdout and stderr */
} zk_server;

/* A standalone server (n == 1) or an ensemble. */
typedef struct zk_ensemble {
    unsigned n;
    unsigned tick_ms;
    char dir[200];              /* absolute */
    char connect[ZK_MAX_SERVERS * 24];  /* "127.0.0.1:p1,127.0.0.1:p2,..." */
    zk_server srv[ZK_MAX_SERVERS];
} zk_ensemble;

/* ---- is it there ------------------------------------------------------------------ */

/* The java to run (static storage): /usr/bin/java, else the first on PATH; NULL if none. */
static inline const char *zk_java(void)
{
    static char path[PATH_MAX];
    const char *p = getenv("PATH");

    if (access("/usr/bin/java", X_OK) == 0)
        return "/usr/bin/java";
    while (p != NULL && *p != '\0') {
        const char *end = strchr(p, ':');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);

        if (len > 0 && len + 6 < sizeof path) {
            snprintf(path, sizeof path, "%.*s/java", (int)len, p);
            if (access(path, X_OK) == 0)
                return path;
        }
        p = end != NULL ? end + 1 : NULL;
    }
    return NULL;
}

/* NULL when ZooKeeper can run here, else what is missing and how to get it. */
static inline const char *zk_why_missing(void)
{
    bool java = zk_java() != NULL, jar = access(ZK_JAR, R_OK) == 0;

    if (java && jar)
        return NULL;
    if (!java && !jar)
        return "no java and no " ZK_JAR " (apt-get install zookeeper, or tools/deps.sh "
               "zookeeper, as root)";
    if (!java)
        return "no java on PATH (apt-get install default-jre-headless, or tools/deps.sh "
               "zookeeper, as root)";
    return "no " ZK_JAR " (apt-get install zookeeper, or tools/deps.sh zookeeper, as root)";
}

/*
 * Whether the running test must skip for want of ZooKeeper (it says so
 * on stderr, naming who).  With QRPC_ZK_REQUIRED=1 a missing ZooKeeper
 * fails the test instead, so that a CI that promises ZooKeeper cannot
 * pass by skipping.  Use as: if (zk_skip("test_zk failover")) return;
 */
static inline bool zk_skip(const char *who)
{
    const char *why = zk_why_missing(), *req = getenv("QRPC_ZK_REQUIRED");

    if (why == NULL)
        return false;
    if (req != NULL && strcmp(req, "1") == 0)
        ck_abort_msg("%s: QRPC_ZK_REQUIRED=1 but ZooKeeper cannot run: %s", who, why);
    fprintf(stderr, "%s: skipped: %s\n", who, why);
    return true;
}

/* ---- asking a server -------------------------------------------------------------- */

/* The mode's name, for messages. */
static inline const char *zk_mode_name(zk_mode m)
{
    switch (m) {
    case ZK_MODE_DOWN:
        return "down";
    case ZK_MODE_NOT_SERVING:
        return "not serving";
    case ZK_MODE_STANDALONE:
        return "standalone";
    case ZK_MODE_LEADER:
        return "leader";
    case ZK_MODE_FOLLOWER:
        return "follower";
    case ZK_MODE_OBSERVER:
        return "observer";
    }
    return "?";
}

/*
 * Sends the four-letter word cmd to 127.0.0.1:port and reads the answer
 * (the server closes the connection after it) into out, NUL-terminated,
 * within ms.  Returns its length, or -1 when nothing came (refused,
 * reset, timeout).  Non-blocking with poll(), so a server that accepts and
 * then hangs cannot hold the test.
 */
static inline long zk_4lw(int port, const char *cmd, char *out, size_t out_len, unsigned ms)
{
    int64_t until = tt_now_ms() + ms;
    struct sockaddr_in sa;
    size_t n = 0, sent = 0, cl = strlen(cmd);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), err = 0;
    socklen_t el = sizeof err;

    out[0] = '\0';
    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS)
        goto fail;
    for (;;) {
        struct pollfd p = { fd, (short)(sent < cl ? POLLOUT : POLLIN), 0 };
        int64_t left = until - tt_now_ms();
        int pr;
        ssize_t r;

        if (left <= 0)
            goto fail;
        pr = poll(&p, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            goto fail;
        if (sent < cl) {
            if (sent == 0 && (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0))
                goto fail;
            r = send(fd, cmd + sent, cl - sent, MSG_NOSIGNAL);
            if (r < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (r <= 0)
                goto fail;
            sent += (size_t)r;
            continue;
        }
        r = recv(fd, out + n, out_len - 1 - n, 0);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r < 0 && n == 0)
            goto fail;
        if (r <= 0)
            break;
        n += (size_t)r;
        out[n] = '\0';
        if (n + 1 >= out_len)
            break;
    }
    close(fd);
    return (long)n;
fail:
    close(fd);
    out[0] = '\0';
    return -1;
}

/* The mode in a srvr answer (NULL: no answer). */
static inline zk_mode zk_parse_mode(const char *answer)
{
    static const struct {
        const char *line;
        zk_mode mode;
    } modes[] = {
        { "Mode: standalone\n", ZK_MODE_STANDALONE },
        { "Mode: leader\n", ZK_MODE_LEADER },
        { "Mode: follower\n", ZK_MODE_FOLLOWER },
        { "Mode: observer\n", ZK_MODE_OBSERVER },
    };
    size_t k;

    if (answer == NULL)
        return ZK_MODE_DOWN;
    for (k = 0; k < sizeof modes / sizeof modes[0]; k++) {
        const char *m = strstr(answer, modes[k].line);

        if (m != NULL && (m == answer || m[-1] == '\n'))
            return modes[k].mode;
    }
    /* e.g. "This ZooKeeper instance is not currently serving requests" */
    return ZK_MODE_NOT_SERVING;
}

/* What the server on 127.0.0.1:port says it is (one srvr exchange). */
static inline zk_mode zk_port_mode(int port)
{
    char answer[2048];

    return zk_parse_mode(zk_4lw(port, "srvr", answer, sizeof answer, ZK_QUERY_MS) < 0 ? NULL
                                                                                      : answer);
}

/*
 * What server i says it is; ZK_MODE_DOWN when its JVM is not running
 * (its port may belong to someone else by then).
 */
static inline zk_mode zk_server_mode(const zk_ensemble *e, unsigned i)
{
    ck_assert_uint_lt(i, e->n);
    return e->srv[i].pid > 0 ? zk_port_mode(e->srv[i].client_port) : ZK_MODE_DOWN;
}

/*
 * The server that leads (for a standalone server, that one), asking each
 * running one once; -1 when none says so (an election under way).  A
 * fresh ensemble elects its highest myid, but tests should ask.
 */
static inline int zk_leader(const zk_ensemble *e)
{
    unsigned i;

    for (i = 0; i < e->n; i++) {
        zk_mode m = zk_server_mode(e, i);

        if (m == ZK_MODE_LEADER || m == ZK_MODE_STANDALONE)
            return (int)i;
    }
    return -1;
}

/* The client connection string, "127.0.0.1:p1,...", every server in it. */
static inline const char *zk_connect_string(const zk_ensemble *e)
{
    return e->connect;
}

/* ---- the processes ---------------------------------------------------------------- */

/* Whether server i's JVM still runs; reaps it (status kept) if it ended. */
static inline bool zk_running(zk_ensemble *e, unsigned i)
{
    zk_server *s = &e->srv[i];
    pid_t r;

    if (s->pid <= 0)
        return false;
    while ((r = waitpid(s->pid, &s->status, WNOHANG)) < 0 && errno == EINTR)
        ;
    if (r == 0)
        return true;
    ck_assert_msg(r == s->pid, "waitpid %d: %s", (int)s->pid, strerror(errno));
    pu_forget(s->pid);
    s->pid = 0;
    return false;
}

/*
 * Starts server i's JVM (not waiting for it), its stdout and stderr
 * appended to its log, its stdin /dev/null, in its directory (where a
 * crashing JVM leaves hs_err_pid*.log).
 *
 * Why PR_SET_PDEATHSIG rather than procutil.h's lifeline on stdin: java
 * never reads its stdin, so a lifeline needs a process that does, a
 * shell between us and the JVM, and then the JVM is not our child: the
 * test could not waitpid() it, SIGKILL to "server i" would need the pid
 * the shell reports, and pu_kill_live(), which SIGKILLs its table, would
 * kill the shell and leave the JVM running.  With PDEATHSIG the kernel
 * sends the JVM SIGKILL the moment the thread that forked it ends,
 * however it ends (a failed check, abort, SIGKILL, exit); the JVM stays
 * our child, so killing and reaping it is plain kill() and waitpid(),
 * and pu_kill_live() reaches it.  The price: the signal follows the
 * forking thread, not the process, so call these helpers from a thread
 * that outlives the servers (the test's main thread).  If we die between
 * fork() and prctl() the JVM would miss the signal, hence the getppid()
 * check after it.  The signal survives execve() (java is not set-uid).
 *
 * The JVM is kept small: 64 MB of heap, the serial collector, C1 only
 * (faster to start, less memory), no perf data file in /tmp (a SIGKILLed
 * JVM would leave it behind), its temporary files in its directory, no
 * log4j JMX beans, and it exits on an OutOfMemoryError rather than
 * serving half-dead.  No JMX port is opened and the admin server is off
 * (zoo.cfg).  Its resident size is ~55 MB whatever -Xmx (16 MB gives
 * the same): a smaller heap would save no memory, only headroom.
 */
static inline void zk_spawn(zk_ensemble *e, unsigned i)
{
    zk_server *s = &e->srv[i];
    const char *java = zk_java();
    bool slf4j = access(ZK_SLF4J_JAR, R_OK) == 0;
    char *main_class = e->n == 1 ? "org.apache.zookeeper.server.ZooKeeperServerMain"
                                 : "org.apache.zookeeper.server.quorum.QuorumPeerMain";
    char cp[sizeof ZK_JAR + sizeof ZK_SLF4J_JAR + 1];
    char tmpdir[sizeof s->dir + 32];
    char *argv[] = {
        (char *)java,
        "-Xmx64m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-XX:-UsePerfData",
        "-XX:+ExitOnOutOfMemoryError",
        "-Dzookeeper.jmx.log4j.disable=true",
        tmpdir,
        "-Dorg.slf4j.simpleLogger.showDateTime=true",
        "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
        /* not a line per srvr poll: a timeout's log tail would show nothing else */
        "-Dorg.slf4j.simpleLogger.log.org.apache.zookeeper.server.NIOServerCnxn=warn",
        "-cp",
        cp,
        main_class,
        s->cfg,
        NULL
    };
    pid_t parent = getpid(), pid;
    int log_fd, null_fd;
    struct stat st;
    size_t k;

    ck_assert_msg(java != NULL, "no java");
    snprintf(cp, sizeof cp, "%s%s", ZK_JAR, slf4j ? ":" ZK_SLF4J_JAR : "");
    snprintf(tmpdir, sizeof tmpdir, "-Djava.io.tmpdir=%s", s->dir);
    for (k = 0; k < PU_MAX_PROCS && pu_live[k] != 0; k++)
        ;
    ck_assert_msg(k < PU_MAX_PROCS, "too many processes");
    log_fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    ck_assert_msg(log_fd >= 0, "%s: %s", s->log, strerror(errno));
    null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ck_assert_msg(null_fd >= 0, "/dev/null: %s", strerror(errno));
    dprintf(log_fd, "==== zkutil: server %u (myid %u), JVM %u: %s\n", i, i + 1, s->starts + 1,
            main_class);
    ck_assert_int_eq(fstat(log_fd, &st), 0);
    s->log_off = (long)st.st_size;
    fflush(NULL);
    pid = fork();
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* async-signal-safe calls only until execv */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(125);
        if (tsrv_keep_fd(null_fd, 0) != 0 || tsrv_keep_fd(log_fd, 1) != 0 ||
            tsrv_keep_fd(log_fd, 2) != 0 || chdir(s->dir) != 0)
            _exit(126);
        execv(java, argv);
        _exit(127);
    }
    pu_live[k] = pid;
    s->pid = pid;
    s->starts++;
    close(log_fd);
    close(null_fd);
}

/* SIGKILLs server i's JVM (if it runs) and reaps it. */
static inline void zk_kill(zk_ensemble *e, unsigned i)
{
    zk_server *s = &e->srv[i];
    int st;

    ck_assert_uint_lt(i, e->n);
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGKILL);
    st = pu_reap(s->pid, ZK_REAP_MS);
    ck_assert_msg(st != -1, "ZooKeeper server %u (JVM %d) not reaped %u ms after SIGKILL", i,
                  (int)s->pid, ZK_REAP_MS);
    s->status = st;
    s->pid = 0;
}

/* SIGKILLs and reaps every server's JVM. */
static inline void zk_kill_all(zk_ensemble *e)
{
    unsigned i;

    for (i = 0; i < e->n; i++)
        zk_kill(e, i);
}

/*
 * Fails the running test with the message given, after killing every
 * server (so nothing waits for the end of the test process to go); the
 * directory stays, for its logs.
 */
static inline void zk_fail(zk_ensemble *e, const char *fmt, ...)
{
    static char msg[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    zk_kill_all(e);
    ck_abort_msg("%s", msg);
}

/*
 * Whether the server's running JVM said a port it needs is taken (its
 * own lines only: the log goes on across restarts).
 */
static inline bool zk_port_taken(const zk_server *s)
{
    FILE *f = fopen(s->log, "r");
    char line[1024];
    bool taken = false;

    if (f == NULL)
        return false;
    if (fseek(f, s->log_off, SEEK_SET) == 0)
        while (!taken && fgets(line, sizeof line, f) != NULL)
            taken = strstr(line, "Address already in use") != NULL;
    fclose(f);
    return taken;
}

/* ---- waiting until they serve ----------------------------------------------------- */

enum { ZK_AWAIT_OK, ZK_AWAIT_PORT_TAKEN };

/*
 * Waits at most ms until every running server serves (and, in an
 * ensemble, exactly one of them leads: right after the leader is killed
 * the others may still call themselves followers until they notice; a
 * new leader exists only once the survivors have voted, so by then none
 * follows the dead one).  Returns ZK_AWAIT_PORT_TAKEN as soon as a server
 * of retry (a mask of servers, bit i for server i, whose JVMs the caller
 * just started and will start again) reports a port taken.  Anything
 * else fails the test, with the end of the guilty log: a JVM that ends,
 * too few running for a quorum, the timeout.  Only fresh JVMs' port
 * messages count: one that recovered from a taken port (a would-be
 * leader's peer port: another leads) keeps the line in its log.
 */
static inline int zk_await(zk_ensemble *e, unsigned ms, unsigned retry)
{
    int64_t until = tt_now_ms() + ms;
    zk_mode mode[ZK_MAX_SERVERS];
    unsigned i;

    for (;;) {
        unsigned running = 0, serving = 0, leaders = 0;
        int waiting = -1;

        for (i = 0; i < e->n; i++) {
            zk_server *s = &e->srv[i];
            bool fresh = (retry >> i & 1u) != 0;

            mode[i] = ZK_MODE_DOWN;
            if (s->pid <= 0)
                continue;
            if (!zk_running(e, i)) {
                if (fresh && zk_port_taken(s))
                    return ZK_AWAIT_PORT_TAKEN;
                zk_fail(e, "ZooKeeper server %u (127.0.0.1:%d) ended (%s); %s ends:\n%s", i,
                        s->client_port, pu_status_str(s->status), s->log, pu_tail(s->log));
            }
            running++;
            mode[i] = zk_port_mode(s->client_port);
            if (mode[i] >= ZK_MODE_STANDALONE) {
                serving++;
                leaders += mode[i] == ZK_MODE_LEADER;
                continue;
            }
            if (fresh && zk_port_taken(s))
                return ZK_AWAIT_PORT_TAKEN;
            if (waiting < 0)
                waiting = (int)i;
        }
        if (running == 0)
            zk_fail(e, "no ZooKeeper server of %s runs", e->dir);
        if (e->n > 1 && 2 * running <= e->n)
            zk_fail(e, "only %u of %u ZooKeeper servers run: no quorum can serve", running,
                    e->n);
        if (serving == running && (e->n == 1 || leaders == 1))
            return ZK_AWAIT_OK;
        if (tt_now_ms() > until) {
            if (waiting < 0)
                zk_fail(e, "ZooKeeper servers of %s: %u leaders among %u serving after %u ms",
                        e->dir, leaders, serving, ms);
            zk_fail(e, "ZooKeeper server %u (127.0.0.1:%d) not serving after %u ms (%s); "
                    "%s ends:\n%s", (unsigned)waiting, e->srv[waiting].client_port, ms,
                    zk_mode_name(mode[waiting]), e->srv[waiting].log,
                    pu_tail(e->srv[waiting].log));
        }
        tt_nap_ms(ZK_POLL_MS);
    }
}

/* ---- starting and stopping -------------------------------------------------------- */

/* mkdir that accepts an existing directory. */
static inline void zk_mkdir(const char *path)
{
    ck_assert_msg(mkdir(path, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", path,
                  strerror(errno));
}

/*
 * Chooses fresh ports for every server: bound to 127.0.0.1:0 all at once
 * (so they differ), read back, released for the JVMs to take.
 */
static inline void zk_pick_ports(zk_ensemble *e)
{
    int fds[3 * ZK_MAX_SERVERS], *ports[3 * ZK_MAX_SERVERS];
    unsigned i, k = 0;
    size_t c = 0;

    for (i = 0; i < e->n; i++) {
        ports[k++] = &e->srv[i].client_port;
        e->srv[i].peer_port = e->srv[i].election_port = 0;
        if (e->n > 1) {
            ports[k++] = &e->srv[i].peer_port;
            ports[k++] = &e->srv[i].election_port;
        }
    }
    for (i = 0; i < k; i++)
        fds[i] = raw_bind_loopback(ports[i]);
    for (i = 0; i < k; i++)
        close(fds[i]);
    e->connect[0] = '\0';
    for (i = 0; i < e->n; i++)
        c += (size_t)snprintf(e->connect + c, sizeof e->connect - c, "%s127.0.0.1:%d",
                              i > 0 ? "," : "", e->srv[i].client_port);
}

/*
 * Writes server i's zoo.cfg and an empty data dir with its myid.  The
 * server clamps the session timeout a client asks for to 2 ticks
 * (ZooKeeper's default minimum) up to 20 ticks or 60 s, whichever is
 * more (so tick 500 allows 1 s to 60 s).  The init and sync limits (in
 * ticks) give a follower at least 5 s to connect and sync, and 5 s to
 * answer, however short the tick, so a short tick for short sessions
 * does not also make a busy machine's followers drop out; no longer,
 * because a follower that chose a leader that never leads waits the
 * init limit out before it votes again, and the start waits for it.
 * forceSync=no: tests kill servers, they do not crash machines, and
 * written data survives a SIGKILL.
 */
static inline void zk_write_config(zk_ensemble *e, unsigned i)
{
    zk_server *s = &e->srv[i];
    unsigned t = e->tick_ms, limit = (5000 + t - 1) / t;
    char myid[sizeof s->data + 8];
    FILE *f;
    unsigned j;

    if (access(s->data, F_OK) == 0)
        pu_remove_dir("zkutil", s->data);
    zk_mkdir(s->data);
    snprintf(myid, sizeof myid, "%s/myid", s->data);
    f = fopen(myid, "w");
    ck_assert_msg(f != NULL, "%s: %s", myid, strerror(errno));
    fprintf(f, "%u\n", i + 1);
    ck_assert_int_eq(fclose(f), 0);

    f = fopen(s->cfg, "w");
    ck_assert_msg(f != NULL, "%s: %s", s->cfg, strerror(errno));
    fprintf(f,
            "# written by tests/unit/zkutil.h\n"
            "tickTime=%u\n"
            "initLimit=%u\n"
            "syncLimit=%u\n"
            "dataDir=%s\n"
            "clientPort=%d\n"
            "clientPortAddress=127.0.0.1\n"
            "admin.enableServer=false\n"
            "4lw.commands.whitelist=ruok,srvr,stat\n"
            "minSessionTimeout=%u\n"
            "maxSessionTimeout=%u\n"
            "forceSync=no\n",
            t, limit < 10 ? 10 : limit, limit < 5 ? 5 : limit, s->data, s->client_port, 2 * t,
            20 * t > 60000 ? 20 * t : 60000);
    if (e->n > 1)
        for (j = 0; j < e->n; j++)
            fprintf(f, "server.%u=127.0.0.1:%d:%d\n", j + 1, e->srv[j].peer_port,
                    e->srv[j].election_port);
    ck_assert_int_eq(fclose(f), 0);
}

/*
 * Starts n servers (1: standalone; 3 or 5: an ensemble) in dir (made if
 * missing, in an existing parent), with the tick given (0: ZK_TICK_MS),
 * and waits until all serve; e must not hold running servers.  Waits at
 * most ZK_START_MS per attempt, and makes up to ZK_PORT_TRIES attempts,
 * each with new ports and empty data, when a server finds a port taken.
 * Fails the test otherwise.
 */
static inline void zk_start(zk_ensemble *e, const char *dir, unsigned n, unsigned tick_ms)
{
    char path[PATH_MAX];
    unsigned i;
    int attempt;

    ck_assert_msg(n >= 1 && n <= ZK_MAX_SERVERS, "%u ZooKeeper servers", n);
    ck_assert_msg(zk_why_missing() == NULL, "%s", zk_why_missing());
    memset(e, 0, sizeof *e);
    e->n = n;
    e->tick_ms = tick_ms != 0 ? tick_ms : ZK_TICK_MS;
    zk_mkdir(dir);
    ck_assert_msg(realpath(dir, path) != NULL, "%s: %s", dir, strerror(errno));
    ck_assert_msg(strlen(path) < sizeof e->dir, "directory name too long: %s", path);
    memcpy(e->dir, path, strlen(path) + 1);
    for (i = 0; i < n; i++) {
        zk_server *s = &e->srv[i];

        snprintf(s->dir, sizeof s->dir, "%s/zk%u", e->dir, i + 1);
        snprintf(s->cfg, sizeof s->cfg, "%s/zk%u/zoo.cfg", e->dir, i + 1);
        snprintf(s->data, sizeof s->data, "%s/zk%u/data", e->dir, i + 1);
        snprintf(s->log, sizeof s->log, "%s/zk%u/zk.log", e->dir, i + 1);
        zk_mkdir(s->dir);
    }
    for (attempt = 1;; attempt++) {
        zk_pick_ports(e);
        for (i = 0; i < n; i++)
            zk_write_config(e, i);
        for (i = 0; i < n; i++)
            zk_spawn(e, i);
        if (zk_await(e, ZK_START_MS, attempt < ZK_PORT_TRIES ? (1u << n) - 1 : 0) ==
            ZK_AWAIT_OK)
            return;
        zk_kill_all(e);
    }
}

/*
 * Starts server i again (killing it first if it still runs) on the same
 * ports with the same data, and waits (ZK_START_MS) until it, and every
 * other running server, serves.  Its ports were free a moment ago but
 * others may take one meanwhile: up to ZK_PORT_TRIES tries, a pause
 * between them (the ports cannot change without restarting everyone).
 */
static inline void zk_restart(zk_ensemble *e, unsigned i)
{
    int attempt;

    ck_assert_uint_lt(i, e->n);
    zk_kill(e, i);
    for (attempt = 1;; attempt++) {
        zk_spawn(e, i);
        if (zk_await(e, ZK_START_MS, attempt < ZK_PORT_TRIES ? 1u << i : 0) == ZK_AWAIT_OK)
            return;
        zk_kill(e, i);
        tt_nap_ms(ZK_RETRY_PAUSE_MS);
    }
}

/* Kills and reaps every server; the directory (the logs) stays, for the caller to remove. */
static inline void zk_stop(zk_ensemble *e)
{
    zk_kill_all(e);
}

#endif
