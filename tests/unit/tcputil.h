/*
 * tcputil.h - helpers for test_tcp.c, the TCP integration tests: server
 * processes (the test binary re-executed with --serve), the line events
 * they report on a pipe, their log files, raw sockets on 127.0.0.1,
 * monotonic time, a log sink for client nodes and a waitable counter.
 *
 * Header-only, like testutil.h.  Every wait here is bounded: a helper that
 * runs out of time fails the running Check test (or returns false for the
 * caller to assert on) instead of hanging.
 *
 * A server is started with fork() + execv("/proc/self/exe", "--serve", ...)
 * so that the child is a fresh single-threaded process whatever threads
 * the test already runs (a fork without exec could not safely start a
 * node's threads after the parent has its own, and TSan refuses to).  It
 * reports on its stdout-like event pipe ("ADDR 127.0.0.1:PORT", then
 * events such as "BLOCK"), logs to a file, and exits when it gets SIGTERM
 * or when the pipe from its parent closes (the test died): no server
 * outlives its test.
 */
#ifndef QRPC_TCPUTIL_H
#define QRPC_TCPUTIL_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "qrpc.h"
#include "testutil.h"

/* What a client address begins with ("rdma-emu://" when test_rdma.c runs
 * test_tcp.c over RDMA). */
static const char *tt_scheme __attribute__((unused)) = "";

/* ---- time ----------------------------------------------------------------- */

static inline uint64_t tt_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int64_t tt_now_ms(void)
{
    return (int64_t)(tt_now_ns() / 1000000u);
}

static inline void tt_nap_ms(unsigned ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* An absolute CLOCK_MONOTONIC time ms from now, for timed waits. */
static inline struct timespec tt_deadline(unsigned ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static inline void tt_cond_init(pthread_cond_t *c)
{
    pthread_condattr_t a;

    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
}

/* ---- a waitable counter (completions of async calls) ---------------------- */

typedef struct tt_count {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    long n;
} tt_count;

static inline void tt_count_init(tt_count *c)
{
    pthread_mutex_init(&c->lock, NULL);
    tt_cond_init(&c->cond);
    c->n = 0;
}

static inline void tt_count_fini(tt_count *c)
{
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
}

static inline void tt_count_add(tt_count *c, long k)
{
    pthread_mutex_lock(&c->lock);
    c->n += k;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static inline long tt_count_get(tt_count *c)
{
    long n;

    pthread_mutex_lock(&c->lock);
    n = c->n;
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* Waits until the count is at least target; false after ms. */
static inline bool tt_count_wait(tt_count *c, long target, unsigned ms)
{
    struct timespec dl = tt_deadline(ms);
    bool ok;

    pthread_mutex_lock(&c->lock);
    while (c->n < target)
        if (pthread_cond_timedwait(&c->cond, &c->lock, &dl) == ETIMEDOUT)
            break;
    ok = c->n >= target;
    pthread_mutex_unlock(&c->lock);
    return ok;
}

/* ---- a log sink for nodes (cfg.log): lines kept in memory ------------------- */

typedef struct tt_log {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char *text;                 /* every line, each ending in '\n' */
    size_t len, cap;
    bool echo;                  /* also to stderr (debugging) */
} tt_log;

static inline void tt_log_init(tt_log *l)
{
    pthread_mutex_init(&l->lock, NULL);
    tt_cond_init(&l->cond);
    l->text = NULL;
    l->len = l->cap = 0;
    l->echo = getenv("QRPC_TEST_ECHO_LOG") != NULL;
}

static inline void tt_log_fini(tt_log *l)
{
    free(l->text);
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
}

/* The cfg.log callback: arg is a tt_log. */
static inline void tt_log_fn(void *arg, const char *line)
{
    tt_log *l = arg;
    size_t n = strlen(line);

    pthread_mutex_lock(&l->lock);
    if (l->len + n + 2 > l->cap) {
        size_t ncap = (l->cap ? l->cap * 2 : 4096) + n;
        char *t = realloc(l->text, ncap);

        if (t == NULL) {
            pthread_mutex_unlock(&l->lock);
            return;
        }
        l->text = t;
        l->cap = ncap;
    }
    memcpy(l->text + l->len, line, n);
    l->len += n;
    l->text[l->len++] = '\n';
    l->text[l->len] = '\0';
    if (l->echo)
        fprintf(stderr, "[client log] %s\n", line);
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

/* How many times needle occurs in what was logged (lock held). */
static inline int tt_log_count_locked(const tt_log *l, const char *needle)
{
    const char *at = l->text;
    int n = 0;

    while (at != NULL && (at = strstr(at, needle)) != NULL) {
        n++;
        at += strlen(needle);
    }
    return n;
}

/* Waits until n lines contain needle; false after ms. */
static inline bool tt_log_wait_n(tt_log *l, const char *needle, int n, unsigned ms)
{
    struct timespec dl = tt_deadline(ms);
    bool ok;

    pthread_mutex_lock(&l->lock);
    while (tt_log_count_locked(l, needle) < n)
        if (pthread_cond_timedwait(&l->cond, &l->lock, &dl) == ETIMEDOUT)
            break;
    ok = tt_log_count_locked(l, needle) >= n;
    pthread_mutex_unlock(&l->lock);
    return ok;
}

/* Waits for a line containing needle; false after ms. */
static inline bool tt_log_wait(tt_log *l, const char *needle, unsigned ms)
{
    return tt_log_wait_n(l, needle, 1, ms);
}

/* A copy of everything logged so far (for failure messages). */
static inline char *tt_log_dump(tt_log *l)
{
    char *s;

    pthread_mutex_lock(&l->lock);
    s = strdup(l->text != NULL ? l->text : "");
    pthread_mutex_unlock(&l->lock);
    return s;
}

/*
 * A node whose log goes to log (initialised here); listen, master and
 * rdma as qrpc_node_config has them.  Fails the test if it cannot be made.
 */
static inline qrpc_node *tt_node(tt_log *log, const char *listen, const char *master,
                                 const char *rdma)
{
    qrpc_node_config cfg;
    qrpc_node *n = NULL;
    int rc;

    tt_log_init(log);
    qrpc_node_config_init(&cfg);
    cfg.listen = listen;
    cfg.master = master;
    cfg.rdma = rdma;
    cfg.log = tt_log_fn;
    cfg.log_arg = log;
    rc = qrpc_node_create(&cfg, &n);
    ck_assert_msg(rc == 0, "qrpc_node_create: %s", qrpc_err_name(rc));
    return n;
}

/* ---- server processes -------------------------------------------------------- */

/* What a server is started with; 0 fields take the server's defaults. */
typedef struct tsrv_opts {
    int port;                   /* 0: any */
    unsigned workers;
    uint32_t max_inflight;
    uint32_t max_message;
    uint32_t max_frame;
    uint32_t stall_ms;
    uint32_t timeout_ms;
    const char *dedup_log;      /* NULL: none */
} tsrv_opts;

typedef struct tsrv {
    pid_t pid;                  /* 0 once reaped */
    int ev_fd;                  /* events from the server (read end) */
    int parent_fd;              /* held open: the server exits when it closes */
    char addr[128];             /* "127.0.0.1:PORT" */
    int port;
    char log_path[256];
    char buf[8192];             /* event bytes read but not consumed */
    size_t buf_len;
    int status;                 /* waitpid status once reaped */
} tsrv;

/* The servers a test process started and has not reaped (for the atexit net). */
#define TSRV_MAX 16
static tsrv *tsrv_live[TSRV_MAX];
static bool tsrv_atexit_set;
static char tsrv_exe[4096];
static char tsrv_dir[64];

static inline void tsrv_forget(tsrv *s)
{
    int i;

    for (i = 0; i < TSRV_MAX; i++)
        if (tsrv_live[i] == s)
            tsrv_live[i] = NULL;
}

/* Runs at exit of a test process: no server survives a failed test. */
static inline void tsrv_reap_all(void)
{
    int i, st;

    for (i = 0; i < TSRV_MAX; i++) {
        tsrv *s = tsrv_live[i];

        if (s != NULL && s->pid > 0) {
            kill(s->pid, SIGKILL);
            while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR)
                ;
            s->pid = 0;
        }
        tsrv_live[i] = NULL;
    }
    if (tsrv_dir[0] != '\0') {
        tu_rmtree(tsrv_dir);
        tsrv_dir[0] = '\0';
    }
}

/* Clears FD_CLOEXEC on fd (after dup2 onto itself it would stay set). */
static inline int tsrv_keep_fd(int from, int to)
{
    if (from == to) {
        int fl = fcntl(from, F_GETFD);

        return fl < 0 ? -1 : fcntl(from, F_SETFD, fl & ~FD_CLOEXEC);
    }
    return dup2(from, to) < 0 ? -1 : 0;
}

#define TSRV_EV_FD     200      /* the server's event pipe, write end */
#define TSRV_PARENT_FD 201      /* the server's end of the parent pipe */

/*
 * Reads event bytes for up to ms; false on timeout or EOF.  Appends to
 * s->buf.
 */
static inline bool tsrv_read_more(tsrv *s, int64_t until_ms)
{
    for (;;) {
        int64_t left = until_ms - tt_now_ms();
        struct pollfd p = { s->ev_fd, POLLIN, 0 };
        ssize_t r;
        int pr;

        if (left < 0)
            return false;
        pr = poll(&p, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return false;
        if (s->buf_len + 1 >= sizeof s->buf)
            return false;
        r = read(s->ev_fd, s->buf + s->buf_len, sizeof s->buf - 1 - s->buf_len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        s->buf_len += (size_t)r;
        s->buf[s->buf_len] = '\0';
        return true;
    }
}

/*
 * Waits up to ms for an event line starting with prefix, takes it out of
 * the buffer (other lines stay, in order) and copies it, without its
 * newline, to line (may be NULL).  False on timeout.
 */
static inline bool tsrv_event(tsrv *s, const char *prefix, unsigned ms, char *line,
                              size_t line_len)
{
    int64_t until = tt_now_ms() + ms;
    size_t pl = strlen(prefix);

    for (;;) {
        size_t off = 0;

        while (off < s->buf_len) {
            char *nl = memchr(s->buf + off, '\n', s->buf_len - off);
            size_t ll;

            if (nl == NULL)
                break;
            ll = (size_t)(nl - (s->buf + off));
            if (ll >= pl && memcmp(s->buf + off, prefix, pl) == 0) {
                if (line != NULL) {
                    size_t n = ll < line_len - 1 ? ll : line_len - 1;

                    memcpy(line, s->buf + off, n);
                    line[n] = '\0';
                }
                memmove(s->buf + off, nl + 1, s->buf_len - (size_t)(nl + 1 - s->buf));
                s->buf_len -= ll + 1;
                s->buf[s->buf_len] = '\0';
                return true;
            }
            off += ll + 1;
        }
        if (!tsrv_read_more(s, until))
            return false;
    }
}

/* Waits for n events starting with prefix; fails the test after ms. */
static inline void tsrv_events(tsrv *s, const char *prefix, int n, unsigned ms)
{
    int64_t until = tt_now_ms() + ms;
    int i;

    for (i = 0; i < n; i++) {
        int64_t left = until - tt_now_ms();

        ck_assert_msg(left > 0 && tsrv_event(s, prefix, (unsigned)left, NULL, 0),
                      "server %s: only %d of %d '%s' events within %u ms",
                      s->addr, i, n, prefix, ms);
    }
}

/*
 * Starts a server (this test binary with --serve) and waits for its
 * address.  Fails the test if it does not report one within 20 s.
 */
static inline void tsrv_start(tsrv *s, const tsrv_opts *o)
{
    static int seq;
    int evp[2], pp[2], i;
    char a[10][64], dl[300];
    char *argv[13];
    int argc = 0;
    char line[128];
    const char *hostport;

    memset(s, 0, sizeof *s);
    s->ev_fd = s->parent_fd = -1;
    if (tsrv_exe[0] == '\0') {
        ssize_t n = readlink("/proc/self/exe", tsrv_exe, sizeof tsrv_exe - 1);

        ck_assert(n > 0);
        tsrv_exe[n] = '\0';
    }
    if (tsrv_dir[0] == '\0') {
        char *d = tu_mkdtemp();

        snprintf(tsrv_dir, sizeof tsrv_dir, "%s", d);
        free(d);
    }
    if (!tsrv_atexit_set) {
        atexit(tsrv_reap_all);
        tsrv_atexit_set = true;
    }
    snprintf(s->log_path, sizeof s->log_path, "%s/server-%d.log", tsrv_dir, seq++);
    ck_assert_int_eq(pipe2(evp, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(pp, O_CLOEXEC), 0);

    argv[argc++] = tsrv_exe;
    argv[argc++] = "--serve";
    snprintf(a[0], sizeof a[0], "--port=%d", o ? o->port : 0);
    snprintf(a[1], sizeof a[1], "--workers=%u", o ? o->workers : 0);
    snprintf(a[2], sizeof a[2], "--inflight=%u", o ? (unsigned)o->max_inflight : 0);
    snprintf(a[3], sizeof a[3], "--max-message=%u", o ? (unsigned)o->max_message : 0);
    snprintf(a[4], sizeof a[4], "--max-frame=%u", o ? (unsigned)o->max_frame : 0);
    snprintf(a[5], sizeof a[5], "--stall-ms=%u", o ? (unsigned)o->stall_ms : 0);
    snprintf(a[6], sizeof a[6], "--timeout-ms=%u", o ? (unsigned)o->timeout_ms : 0);
    for (i = 0; i < 7; i++)
        argv[argc++] = a[i];
    snprintf(dl, sizeof dl, "--dedup-log=%s", o && o->dedup_log ? o->dedup_log : "");
    argv[argc++] = dl;
    argv[argc++] = s->log_path;
    argv[argc] = NULL;

    fflush(NULL);
    s->pid = fork();
    ck_assert(s->pid >= 0);
    if (s->pid == 0) {
        /* async-signal-safe calls only until execv */
        if (tsrv_keep_fd(evp[1], TSRV_EV_FD) != 0 || tsrv_keep_fd(pp[0], TSRV_PARENT_FD) != 0)
            _exit(126);
        execv(tsrv_exe, argv);
        _exit(127);
    }
    close(evp[1]);
    close(pp[0]);
    s->ev_fd = evp[0];
    s->parent_fd = pp[1];
    for (i = 0; i < TSRV_MAX; i++)
        if (tsrv_live[i] == NULL) {
            tsrv_live[i] = s;
            break;
        }
    ck_assert_msg(i < TSRV_MAX, "too many servers");
    ck_assert_msg(tsrv_event(s, "ADDR ", 20000, line, sizeof line),
                  "the server did not report its address (log %s)", s->log_path);
    ck_assert_msg(strlen(line + 5) < sizeof s->addr, "address %s", line + 5);
    memcpy(s->addr, line + 5, strlen(line + 5) + 1);
    /* "rdma-emu://127.0.0.1:PORT" from test_rdma's servers */
    hostport = strstr(s->addr, "://") != NULL ? strstr(s->addr, "://") + 3 : s->addr;
    ck_assert_msg(strncmp(hostport, "127.0.0.1:", 10) == 0, "address %s", s->addr);
    s->port = atoi(hostport + 10);
    ck_assert(s->port > 0 && s->port < 65536);
    if (o != NULL && o->port != 0)
        ck_assert_int_eq(s->port, o->port);
}

/* True while the server process runs (not exited, not reaped). */
static inline bool tsrv_alive(tsrv *s)
{
    pid_t r;

    if (s->pid <= 0)
        return false;
    r = waitpid(s->pid, &s->status, WNOHANG);
    if (r == s->pid) {
        s->pid = 0;
        tsrv_forget(s);
        return false;
    }
    return true;
}

/*
 * Sends sig (0: none) and reaps the server, waiting at most ms; after that
 * it is killed and the test fails.  Returns the waitpid status.
 */
static inline int tsrv_stop(tsrv *s, int sig, unsigned ms)
{
    int64_t until = tt_now_ms() + ms;
    pid_t pid = s->pid;

    if (pid > 0) {
        if (sig != 0)
            kill(pid, sig);
        for (;;) {
            pid_t r = waitpid(pid, &s->status, WNOHANG);

            if (r == pid)
                break;
            ck_assert(r == 0 || errno == EINTR);
            if (tt_now_ms() > until) {
                kill(pid, SIGKILL);
                while (waitpid(pid, &s->status, 0) < 0 && errno == EINTR)
                    ;
                s->pid = 0;
                tsrv_forget(s);
                ck_abort_msg("server %s did not exit within %u ms of signal %d", s->addr,
                             ms, sig);
            }
            tt_nap_ms(2);
        }
        s->pid = 0;
        tsrv_forget(s);
    }
    return s->status;
}

/* Stops with SIGTERM and checks a clean exit (status 0). */
static inline void tsrv_stop_clean(tsrv *s)
{
    int st = tsrv_stop(s, SIGTERM, 20000);

    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "server %s: %s %d (0 expected; log %s)", s->addr,
                  WIFEXITED(st) ? "exit status" : "signal",
                  WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), s->log_path);
}

/* Closes what is left (after tsrv_stop). */
static inline void tsrv_close(tsrv *s)
{
    if (s->pid > 0)
        tsrv_stop(s, SIGKILL, 10000);
    if (s->ev_fd >= 0)
        close(s->ev_fd);
    if (s->parent_fd >= 0)
        close(s->parent_fd);
    s->ev_fd = s->parent_fd = -1;
    unlink(s->log_path);
}

/* The server's log so far (malloc'd, "" when empty). */
static inline char *tsrv_log(const tsrv *s)
{
    char *t = tu_read_file(s->log_path, NULL);

    return t != NULL ? t : strdup("");
}

/* Waits up to ms for the server's log to contain needle. */
static inline bool tsrv_log_wait(const tsrv *s, const char *needle, unsigned ms)
{
    int64_t until = tt_now_ms() + ms;

    for (;;) {
        char *t = tsrv_log(s);
        bool found = strstr(t, needle) != NULL;

        free(t);
        if (found)
            return true;
        if (tt_now_ms() > until)
            return false;
        tt_nap_ms(5);
    }
}

/* ---- raw sockets --------------------------------------------------------------- */

/* A socket bound to 127.0.0.1 on a free port, which *port receives. */
static inline int raw_bind_loopback(int *port)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert(fd >= 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/*
 * A blocking TCP connection to 127.0.0.1:port, or -1 when the peer
 * accepted and reset it before connect() returned (a peer that closes at
 * once can, on a loaded machine); fails the test on any other error.
 */
static inline int raw_connect_or_reset(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

    ck_assert(fd >= 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        ck_assert_msg(errno == ECONNRESET, "connect: %s", strerror(errno));
        close(fd);
        return -1;
    }
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* A blocking TCP connection to 127.0.0.1:port; fails the test if refused or reset. */
static inline int raw_connect(int port)
{
    int fd = raw_connect_or_reset(port);

    ck_assert_msg(fd >= 0, "connect: %s", strerror(ECONNRESET));
    return fd;
}

/* Our end's port (to find the server's log line about this connection). */
static inline int raw_local_port(int fd)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;

    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    return ntohs(sa.sin_port);
}

/*
 * Sends all of p; false if the peer closed first (EPIPE, ECONNRESET):
 * a server may drop a hostile connection before it has read everything.
 */
static inline bool raw_send(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;

    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
            return false;
        ck_assert_msg(w > 0, "send: %s", strerror(errno));
        b += w;
        n -= (size_t)w;
    }
    return true;
}

/*
 * Reads exactly n bytes within ms; false on EOF, error or timeout.
 */
static inline bool raw_recv(int fd, void *p, size_t n, unsigned ms)
{
    int64_t until = tt_now_ms() + ms;
    uint8_t *b = p;

    while (n > 0) {
        int64_t left = until - tt_now_ms();
        struct pollfd pf = { fd, POLLIN, 0 };
        ssize_t r;

        if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
            return false;
        r = recv(fd, b, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        b += r;
        n -= (size_t)r;
    }
    return true;
}

/*
 * Waits up to ms for the peer to close the connection (EOF or a reset),
 * discarding whatever it sends first (its HELLO).  Returns the ms it took,
 * or -1 if the connection was still open after ms.
 */
static inline int64_t raw_wait_closed(int fd, unsigned ms)
{
    int64_t start = tt_now_ms(), until = start + ms;
    uint8_t junk[4096];

    for (;;) {
        int64_t left = until - tt_now_ms();
        struct pollfd pf = { fd, POLLIN, 0 };
        ssize_t r;
        int pr;

        if (left <= 0)
            return -1;
        pr = poll(&pf, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0)
            return -1;
        r = recv(fd, junk, sizeof junk, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0 || (r < 0 && (errno == ECONNRESET || errno == EPIPE)))
            return tt_now_ms() - start;
        ck_assert_msg(r > 0, "recv: %s", strerror(errno));
    }
}

/* Little-endian stores for building frames by hand. */
static inline void le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void le32(uint8_t *p, uint32_t v)
{
    le16(p, (uint16_t)v);
    le16(p + 2, (uint16_t)(v >> 16));
}

static inline void le64(uint8_t *p, uint64_t v)
{
    le32(p, (uint32_t)v);
    le32(p + 4, (uint32_t)(v >> 32));
}

static inline uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

#endif
