/*
 * procutil.h - what the multi-process tests (test_soak.c, test_binding.c)
 * share about the processes they start and the directory they work in:
 * wait statuses in words, the orphans a failed test leaves to main() (the
 * subreaper), removing the test's directory, and the seeded random
 * stream.  Used from main(), outside any test, so nothing here uses a
 * Check macro.  Include after tcputil.h.
 */
#ifndef QRPC_TEST_PROCUTIL_H
#define QRPC_TEST_PROCUTIL_H

#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

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
