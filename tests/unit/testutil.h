/*
 * testutil.h - small helpers shared by the Check test programs: the paths
 * the Makefile passes in the environment, running a command with its
 * output captured, temporary directories and whole-file reads.
 *
 * Header-only (static functions) so each test program stays one file.
 * Every helper fails the running Check test on an unexpected system error
 * rather than returning something a test could mistake for a result.
 */
#ifndef QRPC_TESTUTIL_H
#define QRPC_TESTUTIL_H

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* An environment variable the Makefile sets; fails the test if missing. */
static inline const char *tu_env(const char *name)
{
    const char *v = getenv(name);

    ck_assert_msg(v != NULL && *v != '\0', "%s is not set (run through make check)", name);
    return v;
}

/* Reads a whole file; NULL if it cannot be opened.  *len gets its size. */
static inline char *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0, got;

    if (f == NULL)
        return NULL;
    do {
        if (cap - n < 4096) {
            cap = cap ? cap * 2 : 8192;
            buf = realloc(buf, cap + 1);
            ck_assert_ptr_nonnull(buf);
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    fclose(f);
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

/*
 * Runs argv[0] (a path) with argv in directory cwd (NULL: the current),
 * capturing stdout and stderr into malloc'd strings (either may be NULL if
 * not wanted).  Returns the exit status, or 128 + signal.
 */
static inline int tu_run(const char *cwd, char *const argv[], char **out, char **err)
{
    char outpath[] = "/tmp/qrpc-test-out-XXXXXX";
    char errpath[] = "/tmp/qrpc-test-err-XXXXXX";
    int ofd = mkstemp(outpath), efd = mkstemp(errpath);
    pid_t pid;
    int status;

    ck_assert(ofd >= 0 && efd >= 0);
    pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        dup2(ofd, 1);
        dup2(efd, 2);
        if (cwd != NULL && chdir(cwd) != 0)
            _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    while (waitpid(pid, &status, 0) < 0)
        ck_assert_int_eq(errno, EINTR);
    close(ofd);
    close(efd);
    if (out != NULL)
        *out = tu_read_file(outpath, NULL);
    if (err != NULL)
        *err = tu_read_file(errpath, NULL);
    unlink(outpath);
    unlink(errpath);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

/* Runs a shell command line; returns its exit status. */
static inline int tu_sh(const char *cmd, char **out, char **err)
{
    char *const argv[] = { "/bin/sh", "-c", (char *)cmd, NULL };

    return tu_run(NULL, argv, out, err);
}

static inline char *tu_mkdtemp(void)
{
    char *d = strdup("/tmp/qrpc-test-XXXXXX");

    ck_assert_ptr_nonnull(d);
    ck_assert_ptr_nonnull(mkdtemp(d));
    return d;
}

/* rm -rf of a directory tree made by a test (no symlinks followed). */
static inline void tu_rmtree(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;

    if (d != NULL) {
        while ((e = readdir(d)) != NULL) {
            size_t n = strlen(path) + strlen(e->d_name) + 2;
            char *sub;
            struct stat st;

            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            sub = malloc(n);
            ck_assert_ptr_nonnull(sub);
            snprintf(sub, n, "%s/%s", path, e->d_name);
            if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
                tu_rmtree(sub);
            else
                unlink(sub);
            free(sub);
        }
        closedir(d);
    }
    rmdir(path);
}

/* Names of the regular files in dir, sorted, NULL-terminated; free with tu_free_list. */
static inline int tu_cmpstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static inline char **tu_list_dir(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0;

    ck_assert_msg(d != NULL, "cannot open %s", dir);
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name), sl = suffix ? strlen(suffix) : 0;

        if (e->d_name[0] == '.')
            continue;
        if (suffix != NULL && (len < sl || strcmp(e->d_name + len - sl, suffix) != 0))
            continue;
        names = realloc(names, (n + 2) * sizeof *names);
        ck_assert_ptr_nonnull(names);
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (names == NULL) {
        names = calloc(1, sizeof *names);
        ck_assert_ptr_nonnull(names);
    }
    names[n] = NULL;
    qsort(names, n, sizeof *names, tu_cmpstr);
    return names;
}

static inline void tu_free_list(char **names)
{
    size_t i;

    for (i = 0; names[i] != NULL; i++)
        free(names[i]);
    free(names);
}

/* Runs suite s and returns the process exit code (0 when all passed). */
static inline int tu_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}

#endif
