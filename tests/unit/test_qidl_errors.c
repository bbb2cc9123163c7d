/*
 * test_qidl_errors.c - the negative corpus of qrpcgen: every .qidl file
 * in tests/qidl-bad must be rejected with exactly the diagnostics that its
 * leading "// expect: LINE" lines give, in order, with exit status 1 and
 * nothing written.
 *
 * Each case runs `$QRPCGEN [ARGS] -o TMPDIR NAME.qidl` in tests/qidl-bad,
 * where ARGS are the words of its "// args:" lines and TMPDIR a fresh
 * mkdtemp directory that must still be empty afterwards.  Files under
 * tests/qidl-bad/inc/ are imported by cases and are no cases themselves.
 * The environment gives QRPCGEN (the compiler) and QRPC_SRCDIR (the tree).
 * This test does not look at what qrpcgen generates; test_qidl_good.c and
 * the golden tests do.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIN_CASES 45
#define MAX_ARGS 32

static const char *qrpcgen;
static char *bad_dir;           /* QRPC_SRCDIR/tests/qidl-bad */
static char **cases;            /* file names, sorted */
static int n_cases;

/* ---- running the compiler ----------------------------------------------- */

typedef struct run_result {
    int status;                 /* exit status, or -1 if it did not exit */
    char *out;                  /* stdout, NUL-terminated */
    char *err;                  /* stderr */
} run_result;

static void append(char **buf, size_t *len, const char *data, size_t n)
{
    char *nb = realloc(*buf, *len + n + 1);

    ck_assert_msg(nb != NULL, "out of memory");
    memcpy(nb + *len, data, n);
    *len += n;
    nb[*len] = '\0';
    *buf = nb;
}

/* Runs argv (argv[0] is a path) in directory cwd, capturing its output. */
static void run(const char *cwd, char *const argv[], run_result *r)
{
    int outp[2], errp[2], st;
    size_t out_len = 0, err_len = 0;
    struct pollfd fds[2];
    pid_t pid;

    r->out = calloc(1, 1);
    r->err = calloc(1, 1);
    ck_assert(r->out && r->err);
    ck_assert(pipe(outp) == 0 && pipe(errp) == 0);
    pid = fork();
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(outp[1], 1);
        dup2(errp[1], 2);
        close(outp[0]);
        close(outp[1]);
        close(errp[0]);
        close(errp[1]);
        if (chdir(cwd) != 0)
            _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    close(outp[1]);
    close(errp[1]);
    fds[0].fd = outp[0];
    fds[1].fd = errp[0];
    fds[0].events = fds[1].events = POLLIN;
    while (fds[0].fd >= 0 || fds[1].fd >= 0) {
        char buf[4096];
        int i;

        if (poll(fds, 2, -1) < 0) {
            ck_assert_msg(errno == EINTR, "poll: %s", strerror(errno));
            continue;
        }
        for (i = 0; i < 2; i++) {
            ssize_t n;

            if (fds[i].fd < 0 || !fds[i].revents)
                continue;
            n = read(fds[i].fd, buf, sizeof buf);
            if (n <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
            } else if (i == 0) {
                append(&r->out, &out_len, buf, (size_t)n);
            } else {
                append(&r->err, &err_len, buf, (size_t)n);
            }
        }
    }
    while (waitpid(pid, &st, 0) < 0)
        ck_assert_msg(errno == EINTR, "waitpid: %s", strerror(errno));
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void run_free(run_result *r)
{
    free(r->out);
    free(r->err);
}

/* ---- files -------------------------------------------------------------- */

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, n;
    char chunk[4096];

    ck_assert_msg(f != NULL, "cannot open %s: %s", path, strerror(errno));
    buf = calloc(1, 1);
    ck_assert(buf);
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        append(&buf, &len, chunk, n);
    fclose(f);
    return buf;
}

/* Number of entries in dir, besides . and ..; their names in *names. */
static int dir_entries(const char *dir, char *names, size_t size)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    ck_assert_msg(d != NULL, "cannot open %s", dir);
    if (size)
        names[0] = '\0';
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        n++;
        if (size && strlen(names) + strlen(e->d_name) + 2 < size) {
            strcat(names, " ");
            strcat(names, e->d_name);
        }
    }
    closedir(d);
    return n;
}

/* Removes dir and the files in it (it has no subdirectories). */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4096];

    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* ---- the case file's header --------------------------------------------- */

typedef struct expectation {
    char *expected;             /* the expected stderr */
    char *argv[MAX_ARGS + 8];
    int argc;
    char *text;                 /* the file, split in place */
} expectation;

static void parse_header(const char *path, expectation *x)
{
    char *line, *next;
    size_t len = 0;

    x->text = read_file(path);
    x->expected = calloc(1, 1);
    x->argc = 0;
    ck_assert(x->expected);
    for (line = x->text; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (strncmp(line, "// expect: ", 11) == 0) {
            append(&x->expected, &len, line + 11, strlen(line + 11));
            append(&x->expected, &len, "\n", 1);
        } else if (strncmp(line, "// args: ", 9) == 0) {
            char *w;

            for (w = strtok(line + 9, " \t"); w; w = strtok(NULL, " \t")) {
                ck_assert_msg(x->argc < MAX_ARGS, "%s: too many args", path);
                x->argv[x->argc++] = w;
            }
        } else {
            break;
        }
    }
}

/* ---- tests -------------------------------------------------------------- */

START_TEST(test_corpus_size)
{
    ck_assert_msg(n_cases >= MIN_CASES, "only %d cases in %s", n_cases,
                  bad_dir);
}
END_TEST

START_TEST(test_bad_case)
{
    const char *name = cases[_i];
    char path[4096], tmpl[] = "/tmp/qidl-bad-XXXXXX", leftover[512];
    char *argv[MAX_ARGS + 8];
    expectation x;
    run_result r;
    int argc = 0, i;

    snprintf(path, sizeof path, "%s/%s", bad_dir, name);
    parse_header(path, &x);
    ck_assert_msg(x.expected[0] != '\0', "%s: no '// expect:' line", name);
    ck_assert_msg(mkdtemp(tmpl) != NULL, "mkdtemp: %s", strerror(errno));

    argv[argc++] = (char *)qrpcgen;
    for (i = 0; i < x.argc; i++)
        argv[argc++] = x.argv[i];
    argv[argc++] = "-o";
    argv[argc++] = tmpl;
    argv[argc++] = (char *)name;
    argv[argc] = NULL;
    run(bad_dir, argv, &r);

    i = dir_entries(tmpl, leftover, sizeof leftover);
    remove_dir(tmpl);
    ck_assert_msg(strcmp(r.err, x.expected) == 0,
                  "%s: stderr differs.\n--- expected:\n%s--- got:\n%s",
                  name, x.expected, r.err);
    ck_assert_msg(r.status == 1, "%s: exit status %d, expected 1", name,
                  r.status);
    ck_assert_msg(r.out[0] == '\0', "%s: unexpected stdout: %s", name,
                  r.out);
    ck_assert_msg(i == 0, "%s: wrote files despite errors:%s", name,
                  leftover);
    run_free(&r);
    free(x.expected);
    free(x.text);
}
END_TEST

static int is_case(const struct dirent *e)
{
    size_t n = strlen(e->d_name);

    return n > 5 && strcmp(e->d_name + n - 5, ".qidl") == 0;
}

int main(void)
{
    const char *srcdir = getenv("QRPC_SRCDIR");
    struct dirent **list = NULL;
    Suite *s;
    TCase *tc;
    SRunner *sr;
    int failed, i;

    qrpcgen = getenv("QRPCGEN");
    if (!qrpcgen || !srcdir) {
        fputs("test_qidl_errors: set QRPCGEN and QRPC_SRCDIR\n", stderr);
        return EXIT_FAILURE;
    }
    bad_dir = malloc(strlen(srcdir) + 32);
    if (!bad_dir)
        return EXIT_FAILURE;
    sprintf(bad_dir, "%s/tests/qidl-bad", srcdir);
    n_cases = scandir(bad_dir, &list, is_case, alphasort);
    if (n_cases < 0) {
        fprintf(stderr, "test_qidl_errors: %s: %s\n", bad_dir,
                strerror(errno));
        return EXIT_FAILURE;
    }
    cases = calloc((size_t)n_cases + 1, sizeof *cases);
    if (!cases)
        return EXIT_FAILURE;
    for (i = 0; i < n_cases; i++) {
        cases[i] = strdup(list[i]->d_name);
        free(list[i]);
    }
    free(list);

    s = suite_create("qidl-errors");
    tc = tcase_create("corpus");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_corpus_size);
    tcase_add_loop_test(tc, test_bad_case, 0, n_cases);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    for (i = 0; i < n_cases; i++)
        free(cases[i]);
    free(cases);
    free(bad_dir);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
