/*
 * fproxy.h - starting and stopping tests/faultproxy from a Check test:
 * fork + exec of $QRPC_FAULTPROXY in front of 127.0.0.1:PORT, its stdin a
 * pipe the test holds (the lifeline), its address read from its stdout,
 * its stderr kept, its statistics read from its --stats file when it is
 * stopped.  An atexit handler kills and reaps the proxies a failing test
 * left, and removes their directories.  Include after tcputil.h.
 */
#ifndef QRPC_TEST_FPROXY_H
#define QRPC_TEST_FPROXY_H

#define FP_WAIT_MS 10000u               /* generous bound for anything that should be quick */

typedef struct fproxy {
    pid_t pid;                          /* 0 once reaped */
    int life_fd;                        /* its stdin (write end); -1 once closed */
    int err_fd;                         /* its stderr (read end) */
    int port;
    char dir[64];                       /* holds the --stats file */
    char stats_path[128];
    char err[16384];                    /* stderr read so far */
    size_t err_len;
    int status;
} fproxy;

/* The proxies started and not reaped yet (copies: a failed test's frame may be gone). */
#define FP_MAX 8
static struct {
    pid_t pid;                          /* 0: a free slot */
    char dir[64];
} fp_live[FP_MAX];

/* Runs at exit of a test process: no proxy, nor its directory, outlives a failed test. */
static inline void fp_reap_all(void)
{
    int i, stt;

    for (i = 0; i < FP_MAX; i++)
        if (fp_live[i].pid > 0) {
            kill(fp_live[i].pid, SIGKILL);
            while (waitpid(fp_live[i].pid, &stt, 0) < 0 && errno == EINTR)
                ;
            fp_live[i].pid = 0;
            tu_rmtree(fp_live[i].dir);
        }
}

static inline void fp_forget(pid_t pid)
{
    int i;

    for (i = 0; i < FP_MAX; i++)
        if (fp_live[i].pid == pid)
            fp_live[i].pid = 0;
}

/* Reads from fd into buf (NUL-terminated) until needle appears or EOF; false on timeout. */
static inline bool read_until(int fd, char *buf, size_t cap, size_t *len, const char *needle,
                       bool to_eof, unsigned ms)
{
    int64_t until = tt_now_ms() + ms;

    for (;;) {
        struct pollfd p = { fd, POLLIN, 0 };
        int64_t left;
        ssize_t r;

        buf[*len] = '\0';
        if (!to_eof && strstr(buf, needle) != NULL)
            return true;
        left = until - tt_now_ms();
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return false;
        if (*len + 1 >= cap)
            return false;
        r = read(fd, buf + *len, cap - 1 - *len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return to_eof;
        *len += (size_t)r;
    }
}

/* Starts the proxy in front of 127.0.0.1:up_port with the options in args (NULL-ended). */
static inline void fp_start(fproxy *p, int up_port, const char *const *args)
{
    static bool atexit_set;
    const char *exe = tu_env("QRPC_FAULTPROXY");
    int lp[2], op[2], ep[2], i, argc = 0;
    char upstream[32], line[128] = "";
    size_t line_len = 0;
    const char *argv[40];
    char *d;

    memset(p, 0, sizeof *p);
    d = tu_mkdtemp();
    snprintf(p->dir, sizeof p->dir, "%s", d);
    free(d);
    snprintf(p->stats_path, sizeof p->stats_path, "%s/stats", p->dir);
    snprintf(upstream, sizeof upstream, "127.0.0.1:%d", up_port);
    argv[argc++] = exe;
    argv[argc++] = "--upstream";
    argv[argc++] = upstream;
    argv[argc++] = "--stats";
    argv[argc++] = p->stats_path;
    for (i = 0; args != NULL && args[i] != NULL; i++) {
        ck_assert(argc < 38);
        argv[argc++] = args[i];
    }
    argv[argc] = NULL;
    if (!atexit_set) {
        atexit(fp_reap_all);
        atexit_set = true;
    }
    ck_assert_int_eq(pipe2(lp, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(op, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(ep, O_CLOEXEC), 0);
    fflush(NULL);
    p->pid = fork();
    ck_assert(p->pid >= 0);
    if (p->pid == 0) {
        if (dup2(lp[0], 0) < 0 || dup2(op[1], 1) < 0 || dup2(ep[1], 2) < 0)
            _exit(126);
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    close(lp[0]);
    close(op[1]);
    close(ep[1]);
    p->life_fd = lp[1];
    p->err_fd = ep[0];
    for (i = 0; i < FP_MAX; i++)
        if (fp_live[i].pid == 0) {
            fp_live[i].pid = p->pid;
            memcpy(fp_live[i].dir, p->dir, sizeof p->dir);
            break;
        }
    ck_assert_msg(i < FP_MAX, "too many proxies");
    ck_assert_msg(read_until(op[0], line, sizeof line, &line_len, "\n", false, FP_WAIT_MS),
                  "the proxy did not print its address (got '%s')", line);
    close(op[0]);
    ck_assert_msg(strncmp(line, "127.0.0.1:", 10) == 0, "address line '%s'", line);
    p->port = atoi(line + 10);
    ck_assert(p->port > 0 && p->port < 65536);
}

/*
 * Stops the proxy (closing its stdin, or with sig), reads its stderr to
 * the end, reaps it and checks that it exited 0.  Returns the statistics
 * line from its --stats file (static storage).
 */
static inline const char *fp_stop(fproxy *p, int sig)
{
    static char stats[512];
    char *text;
    bool eof;

    if (sig != 0)
        kill(p->pid, sig);
    if (p->life_fd >= 0)
        close(p->life_fd);
    p->life_fd = -1;
    eof = read_until(p->err_fd, p->err, sizeof p->err, &p->err_len, NULL, true, FP_WAIT_MS);
    if (!eof)
        kill(p->pid, SIGKILL);
    while (waitpid(p->pid, &p->status, 0) < 0)
        ck_assert_int_eq(errno, EINTR);
    fp_forget(p->pid);
    p->pid = 0;
    close(p->err_fd);
    ck_assert_msg(eof, "the proxy did not exit within %u ms", FP_WAIT_MS);
    ck_assert_msg(WIFEXITED(p->status) && WEXITSTATUS(p->status) == 0,
                  "the proxy ended with status %#x; its stderr:\n%s", (unsigned)p->status,
                  p->err);
    text = tu_read_file(p->stats_path, NULL);
    ck_assert_msg(text != NULL, "no stats file %s", p->stats_path);
    snprintf(stats, sizeof stats, "%s", text);
    free(text);
    ck_assert_msg(strstr(p->err, stats) != NULL, "stderr lacks '%s': %s", stats, p->err);
    tu_rmtree(p->dir);
    return stats;
}

/* The value of one field ("frames", "cuts", ...) of a statistics line. */
/* The number after " field " in a statistics line. */
static inline long stat_of(const char *line, const char *field)
{
    char key[64];
    const char *at;

    snprintf(key, sizeof key, " %s ", field);
    at = strstr(line, key);
    ck_assert_msg(at != NULL, "no '%s' in '%s'", field, line);
    return atol(at + strlen(key));
}

#endif
