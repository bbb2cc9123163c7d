/*
 * procutil.h - what the multi-process tests (test_soak.c, test_binding.c)
 * share about the processes they start and the directory they work in:
 * starting a program with its stdin, stdout and stderr where the test
 * wants them (a lifeline pipe as stdin, by default), the table of the
 * processes started and not reaped, reaping with a bound, wait statuses
 * in words, the end of a log for messages, the orphans a failed test
 * leaves to main() (the subreaper), removing the test's directory, and
 * the seeded random stream.  pu_exec(), pu_spawn() and pu_reap() are for
 * tests (Check macros); the rest also runs from main().  Include after
 * tcputil.h and testutil.h.
 */
#ifndef QRPC_TEST_PROCUTIL_H
#define QRPC_TEST_PROCUTIL_H

#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/*
 * A check that fails the test like ck_assert_msg(), for loops that run per
 * call or per wake-up: ck_assert_msg() also logs a mark each time it
 * passes, and millions of those would cost more than what is checked.
 */
#define PU_CHECK(cond, ...)                                                             \
    do {                                                                                \
        if (!(cond))                                                                    \
            ck_abort_msg(__VA_ARGS__);                                                  \
    } while (0)

/* The processes started and not reaped yet (0: a free slot). */
#define PU_MAX_PROCS 128
static pid_t pu_live[PU_MAX_PROCS];

/*
 * Starts argv[0] with in_fd, out_fd and err_fd as its stdin, stdout and
 * stderr (closed here afterwards) and envp as its environment (NULL:
 * ours); every other descriptor of ours is close-on-exec.  The process
 * goes into the table until pu_reap() or pu_kill_live().
 */
static inline pid_t pu_exec(char *const argv[], char *const envp[], int in_fd, int out_fd,
                            int err_fd)
{
    pid_t pid;
    size_t i;

    for (i = 0; i < PU_MAX_PROCS && pu_live[i] != 0; i++)
        ;
    ck_assert_msg(i < PU_MAX_PROCS, "too many processes");
    fflush(NULL);
    pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        /* async-signal-safe calls only until execv */
        if (tsrv_keep_fd(in_fd, 0) != 0 || tsrv_keep_fd(out_fd, 1) != 0 ||
            tsrv_keep_fd(err_fd, 2) != 0)
            _exit(126);
        if (envp != NULL)
            execve(argv[0], argv, envp);
        else
            execv(argv[0], argv);
        _exit(127);
    }
    pu_live[i] = pid;
    close(in_fd);
    close(out_fd);
    close(err_fd);
    return pid;
}

/*
 * Starts argv[0] with the read end of a new pipe as its stdin (its
 * lifeline: the write end goes to *life_fd), the write end of another as
 * its stdout (the read end to *out_fd) and err_path (truncated) as its
 * stderr.
 */
static inline pid_t pu_spawn(char *const argv[], const char *err_path, int *life_fd,
                             int *out_fd)
{
    int lp[2], op[2], err_fd;

    err_fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ck_assert_msg(err_fd >= 0, "%s: %s", err_path, strerror(errno));
    ck_assert_int_eq(pipe2(lp, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(op, O_CLOEXEC), 0);
    *life_fd = lp[1];
    *out_fd = op[0];
    return pu_exec(argv, NULL, lp[0], op[1], err_fd);
}

/* Takes pid out of the table (it was reaped). */
static inline void pu_forget(pid_t pid)
{
    size_t i;

    for (i = 0; i < PU_MAX_PROCS; i++)
        if (pu_live[i] == pid)
            pu_live[i] = 0;
}

/*
 * Reaps pid, waiting at most ms for it to end (it has been killed, or told
 * to stop).  Returns its wait status, or -1 if it was still running.
 */
static inline int pu_reap(pid_t pid, unsigned ms)
{
    int64_t until = tt_now_ms() + ms;
    int st;

    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);

        if (r == pid) {
            pu_forget(pid);
            return st;
        }
        if (r < 0 && errno != EINTR)
            ck_abort_msg("waitpid %d: %s", (int)pid, strerror(errno));
        if (tt_now_ms() > until)
            return -1;
        tt_nap_ms(1);
    }
}

/*
 * Kills and reaps every process this process started and has not reaped.
 * After a failed check that is main() in CK_FORK=no mode, where these are
 * its children and their lifelines are still open; in the default fork
 * mode the table is the dead test process's, and the lifelines do it.
 */
static inline void pu_kill_live(void)
{
    size_t i;
    int st;

    for (i = 0; i < PU_MAX_PROCS; i++)
        if (pu_live[i] > 0) {
            kill(pu_live[i], SIGKILL);
            while (waitpid(pu_live[i], &st, 0) < 0 && errno == EINTR)
                ;
            pu_live[i] = 0;
        }
}

/* The end of a file, for failure messages (static storage, one of two slots). */
static inline const char *pu_tail(const char *path)
{
    static char s[2][2048];
    static int which;
    char *t = tu_read_file(path, NULL), *out = s[which ^= 1];
    size_t len = t != NULL ? strlen(t) : 0;

    if (t == NULL)
        snprintf(out, sizeof s[0], "(no %s)", path);
    else
        snprintf(out, sizeof s[0], "%s", len > sizeof s[0] - 1 ? t + len - (sizeof s[0] - 1) : t);
    free(t);
    return out;
}

/* "exit status N", "signal N" or (for -1) "still running", for messages. */
static inline const char *pu_status_str(int st)
{
    static _Thread_local char s[48];

    if (st == -1)
        snprintf(s, sizeof s, "still running");
    else if (WIFEXITED(st))
        snprintf(s, sizeof s, "exit status %d", WEXITSTATUS(st));
    else
        snprintf(s, sizeof s, "signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : -1);
    return s;
}

/* A sanitizer's report in the stderr file err_path fails the test, whatever the exit. */
static inline void pu_check_stderr(const char *who, const char *err_path)
{
    char *err = tu_read_file(err_path, NULL);
    bool reported = err != NULL && (strstr(err, "Sanitizer") != NULL ||
                                    strstr(err, "runtime error:") != NULL);

    free(err);
    ck_assert_msg(!reported, "%s: a sanitizer reported:\n%s", who, pu_tail(err_path));
}

/*
 * Reaps pid (at most ms), which was killed with SIGKILL (killed: it must
 * not have died of anything else first) or asked to stop by how (it must
 * exit 0), and checks its stderr, err_path; who names it in messages.
 */
static inline void pu_expect_end(pid_t pid, unsigned ms, bool killed, const char *how,
                                 const char *who, const char *err_path)
{
    int st = pu_reap(pid, ms);

    if (killed)
        ck_assert_msg(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
                      "%s ended with %s before it was killed; its stderr:\n%s", who,
                      pu_status_str(st), pu_tail(err_path));
    else
        ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                      "%s: %s after %s (0 expected); its stderr:\n%s", who, pu_status_str(st),
                      how, pu_tail(err_path));
    pu_check_stderr(who, err_path);
}

/* The next value of the stream whose state is *s (splitmix64). */
static inline uint64_t pu_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* nftw() callback of pu_remove_dir(): removes every entry, children first. */
static inline int pu_remove_entry(const char *path, const struct stat *st, int flag,
                                  struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* rm -rf dir; who names the test in the message when it cannot. */
static inline void pu_remove_dir(const char *who, const char *dir)
{
    if (nftw(dir, pu_remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "%s: could not remove %s: %s\n", who, dir, strerror(errno));
}

/*
 * Waits (at most ms) for the processes a failed test left: with this
 * process a subreaper, they are its children once the test process is
 * gone, and they exit as soon as they see their lifelines closed.
 */
static inline void pu_wait_orphans(const char *who, unsigned ms)
{
    int64_t until = tt_now_ms() + ms;
    int st;

    for (;;) {
        pid_t r = waitpid(-1, &st, WNOHANG);

        if (r < 0 && errno == ECHILD)
            return;
        if (r > 0 || (r < 0 && errno == EINTR))
            continue;
        if (tt_now_ms() > until) {
            fprintf(stderr, "%s: processes of a failed test still run after %u ms\n", who, ms);
            return;
        }
        tt_nap_ms(5);
    }
}

#endif
