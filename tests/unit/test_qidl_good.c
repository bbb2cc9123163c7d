/*
 * test_qidl_good.c - the positive corpus and the command line of qrpcgen.
 *
 * Every .qidl file in tests/qidl-good must compile with exit status 0 and
 * nothing on stderr, writing exactly the four default outputs (run as
 * `$QRPCGEN [ARGS] -o TMPDIR NAME.qidl` in tests/qidl-good, ARGS from its
 * "// args:" lines; inc/ holds imported files, which are no cases).  The
 * command-line tests cover --version, --help, usage errors (exit 2), input
 * names, output selectors, -M dependency files, warnings and -Werror,
 * unwritable outputs (exit 1, no temporary files left), permissions,
 * determinism and the speed of a large input.  Whether the generated C is
 * right is for the golden and round-trip tests, not this file.
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
#include <time.h>
#include <unistd.h>

#define MIN_CASES 12
#define MAX_ARGS 32

static const char *qrpcgen;
static char *good_dir;          /* QRPC_SRCDIR/tests/qidl-good */
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

/* Runs qrpcgen with the NULL-terminated arguments in cwd. */
static void run_args(const char *cwd, run_result *r, const char *const *args)
{
    char *argv[MAX_ARGS + 2];
    int n = 0;

    argv[n++] = (char *)qrpcgen;
    while (*args) {
        ck_assert(n < MAX_ARGS);
        argv[n++] = (char *)*args++;
    }
    argv[n] = NULL;
    run(cwd, argv, r);
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

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot create %s: %s", path, strerror(errno));
    fputs(text, f);
    ck_assert(fclose(f) == 0);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The entries of dir, besides . and .., sorted and separated by spaces
 * ("" for an empty directory).  The caller frees the result. */
static char *dir_list(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char *names[256], *s;
    size_t n = 0, len = 0, i;

    ck_assert_msg(d != NULL, "cannot open %s: %s", dir, strerror(errno));
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        ck_assert(n < 256);
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, name_cmp);
    s = calloc(1, 1);
    ck_assert(s);
    for (i = 0; i < n; i++) {
        if (i)
            append(&s, &len, " ", 1);
        append(&s, &len, names[i], strlen(names[i]));
        free(names[i]);
    }
    return s;
}

static void assert_dir(const char *dir, const char *expected)
{
    char *got = dir_list(dir);

    ck_assert_msg(strcmp(got, expected) == 0, "%s holds \"%s\", expected "
                  "\"%s\"", dir, got, expected);
    free(got);
}

/* Removes dir and everything under it. */
static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[4096];
    struct stat st;

    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            chmod(path, 0700);
            remove_tree(path);
        } else {
            unlink(path);
        }
    }
    closedir(d);
    rmdir(dir);
}

static char *make_tmpdir(void)
{
    char *t = strdup("/tmp/qidl-good-XXXXXX");

    ck_assert(t);
    ck_assert_msg(mkdtemp(t) != NULL, "mkdtemp: %s", strerror(errno));
    return t;
}

static char *path_in(const char *dir, const char *name)
{
    char *p = malloc(strlen(dir) + strlen(name) + 2);

    ck_assert(p);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

/* ---- the positive corpus ------------------------------------------------ */

START_TEST(test_corpus_size)
{
    ck_assert_msg(n_cases >= MIN_CASES, "only %d cases in %s", n_cases,
                  good_dir);
}
END_TEST

START_TEST(test_good_case)
{
    const char *name = cases[_i];
    char path[4096], expected[1200], base[256];
    char *argv[MAX_ARGS + 8], *text, *line, *next, *out;
    run_result r;
    int argc = 0;

    snprintf(path, sizeof path, "%s/%s", good_dir, name);
    text = read_file(path);
    out = make_tmpdir();
    argv[argc++] = (char *)qrpcgen;
    for (line = text; line && *line; line = next) {
        char *w;

        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (strncmp(line, "// args: ", 9) != 0)
            continue;
        for (w = strtok(line + 9, " \t"); w; w = strtok(NULL, " \t")) {
            ck_assert(argc < MAX_ARGS);
            argv[argc++] = w;
        }
    }
    argv[argc++] = "-o";
    argv[argc++] = out;
    argv[argc++] = (char *)name;
    argv[argc] = NULL;
    run(good_dir, argv, &r);

    ck_assert_msg(r.status == 0 && r.err[0] == '\0',
                  "%s: exit status %d, stderr:\n%s", name, r.status, r.err);
    ck_assert_msg(r.out[0] == '\0', "%s: unexpected stdout: %s", name,
                  r.out);
    snprintf(base, sizeof base, "%.*s", (int)(strlen(name) - 5), name);
    snprintf(expected, sizeof expected, "%s.h %s_client.c %s_server.c "
             "%s_types.c", base, base, base, base);
    assert_dir(out, expected);
    remove_tree(out);
    free(out);
    run_free(&r);
    free(text);
}
END_TEST

/* ---- the command line --------------------------------------------------- */

START_TEST(test_version)
{
    run_result r;

    run_args(good_dir, &r, (const char *[]){ "--version", NULL });
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.out, "qrpcgen 0.1.0\n");
    ck_assert_str_eq(r.err, "");
    run_free(&r);
}
END_TEST

START_TEST(test_help)
{
    run_result r;

    run_args(good_dir, &r, (const char *[]){ "--help", NULL });
    ck_assert_int_eq(r.status, 0);
    ck_assert_msg(strncmp(r.out, "Usage: qrpcgen ", 15) == 0,
                  "help: %s", r.out);
    ck_assert_msg(strstr(r.out, "--random") && strstr(r.out, "-Werror"),
                  "help lacks options: %s", r.out);
    ck_assert_str_eq(r.err, "");
    run_free(&r);
}
END_TEST

START_TEST(test_usage_errors)
{
    static const struct {
        const char *args[4];
        const char *err;
    } tests[] = {
        { { "--bogus", "bank.qidl", NULL },
          "qrpcgen: unknown option '--bogus'\n" },
        { { "-x", "bank.qidl", NULL }, "qrpcgen: unknown option '-x'\n" },
        { { "-Wall", "bank.qidl", NULL },
          "qrpcgen: unknown option '-Wall'\n" },
        { { "bank.qidl", "-o", NULL },
          "qrpcgen: option '-o' needs an argument\n" },
        { { "-I", NULL }, "qrpcgen: option '-I' needs an argument\n" },
        { { NULL }, "qrpcgen: no input files\n" },
        { { "-o", "/tmp", NULL }, "qrpcgen: no input files\n" },
        { { "bank.qidl", "inc/bank.qidl", NULL },
          "qrpcgen: inputs 'bank.qidl' and 'inc/bank.qidl' would write the "
          "same files\n" },
    };
    size_t i;

    for (i = 0; i < sizeof tests / sizeof *tests; i++) {
        char expected[512];
        run_result r;

        run_args(good_dir, &r, tests[i].args);
        snprintf(expected, sizeof expected, "%sTry 'qrpcgen --help'.\n",
                 tests[i].err);
        ck_assert_msg(r.status == 2, "case %zu: exit status %d", i,
                      r.status);
        ck_assert_str_eq(r.err, expected);
        ck_assert_str_eq(r.out, "");
        run_free(&r);
    }
}
END_TEST

START_TEST(test_input_names)
{
    char *out = make_tmpdir();
    run_result r;

    run_args(good_dir, &r, (const char *[]){ "-o", out, "bank.x", NULL });
    ck_assert_int_eq(r.status, 2);
    ck_assert_str_eq(r.err, "qrpcgen: input file name 'bank.x' does not "
                     "end in .qidl\nTry 'qrpcgen --help'.\n");
    run_free(&r);

    run_args(good_dir, &r, (const char *[]){ "-o", out, "inc/.qidl", NULL });
    ck_assert_int_eq(r.status, 2);
    run_free(&r);

    run_args(good_dir, &r, (const char *[]){ "-o", out, "nosuch.qidl",
                                             NULL });
    ck_assert_int_eq(r.status, 1);
    ck_assert_str_eq(r.err, "qrpcgen: error: cannot read nosuch.qidl: No "
                     "such file or directory\n");
    run_free(&r);

    /* "-" is a file name, not an option */
    run_args(good_dir, &r, (const char *[]){ "-o", out, "-", NULL });
    ck_assert_int_eq(r.status, 2);
    run_free(&r);

    /* after "--", a name that begins with '-' is an input */
    run_args(good_dir, &r, (const char *[]){ "-o", out, "--", "-x.qidl",
                                             NULL });
    ck_assert_int_eq(r.status, 1);
    ck_assert_str_eq(r.err, "qrpcgen: error: cannot read -x.qidl: No such "
                     "file or directory\n");
    run_free(&r);

    assert_dir(out, "");
    remove_tree(out);
    free(out);
}
END_TEST

START_TEST(test_selectors)
{
    static const struct {
        const char *args[3];
        const char *files;
    } tests[] = {
        { { "--header", NULL }, "bank.h" },
        { { "--types", NULL }, "bank_types.c" },
        { { "--client", "--server", NULL }, "bank_client.c bank_server.c" },
        { { "--server", "--header", NULL }, "bank.h bank_server.c" },
        { { "--random", NULL }, "bank_random.c" },
        { { NULL }, "bank.h bank_client.c bank_server.c bank_types.c" },
    };
    size_t i;

    for (i = 0; i < sizeof tests / sizeof *tests; i++) {
        const char *args[8];
        char *out = make_tmpdir();
        run_result r;
        int n = 0, k;

        args[n++] = "-o";
        args[n++] = out;
        for (k = 0; tests[i].args[k]; k++)
            args[n++] = tests[i].args[k];
        args[n++] = "bank.qidl";
        args[n] = NULL;
        run_args(good_dir, &r, args);
        ck_assert_msg(r.status == 0, "case %zu: status %d: %s", i, r.status,
                      r.err);
        assert_dir(out, tests[i].files);
        remove_tree(out);
        free(out);
        run_free(&r);
    }
}
END_TEST

START_TEST(test_several_inputs)
{
    char *out = make_tmpdir();
    run_result r;

    run_args(good_dir, &r, (const char *[]){ "--header", "-o", out,
                                             "bank.qidl", "types.qidl",
                                             "inc/common.qidl", NULL });
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    assert_dir(out, "bank.h common.h types.h");
    remove_tree(out);
    free(out);
    run_free(&r);
}
END_TEST

START_TEST(test_depfile)
{
    char *out = make_tmpdir(), *dep = path_in(out, "imports.d"), *text;
    char expected[2048];
    run_result r;

    run_args(good_dir, &r, (const char *[]){ "-o", out, "-M", dep,
                                             "imports.qidl", NULL });
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    text = read_file(dep);
    snprintf(expected, sizeof expected,
             "%s/imports.h %s/imports_types.c %s/imports_client.c "
             "%s/imports_server.c: imports.qidl inc/geometry.qidl "
             "inc/units.qidl\n"
             "\n"
             "inc/geometry.qidl:\n"
             "\n"
             "inc/units.qidl:\n", out, out, out, out);
    ck_assert_str_eq(text, expected);
    free(text);
    run_free(&r);

    /* with selectors, only the selected outputs are targets; a file with
     * no imports has no prerequisites but itself */
    run_args(good_dir, &r, (const char *[]){ "--header", "-o", out, "-M",
                                             dep, "types.qidl", NULL });
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    text = read_file(dep);
    snprintf(expected, sizeof expected, "%s/types.h: types.qidl\n", out);
    ck_assert_str_eq(text, expected);
    free(text);
    run_free(&r);

    remove_tree(out);
    free(out);
    free(dep);
}
END_TEST

START_TEST(test_warning_and_werror)
{
    char *src = make_tmpdir(), *out = make_tmpdir();
    run_result r;

    write_file(src, "w.qidl", "package w;\nimport \"dep.qidl\";\n"
               "struct A { i32 x; }\n");
    write_file(src, "dep.qidl", "package dep;\nstruct B { i32 y; }\n");

    run_args(src, &r, (const char *[]){ "--header", "-o", out, "w.qidl",
                                        NULL });
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.err, "w.qidl:2:8: warning: unused import "
                     "\"dep.qidl\"\n");
    assert_dir(out, "w.h");
    run_free(&r);
    remove_tree(out);
    free(out);

    out = make_tmpdir();
    run_args(src, &r, (const char *[]){ "-Werror", "-o", out, "w.qidl",
                                        NULL });
    ck_assert_int_eq(r.status, 1);
    ck_assert_str_eq(r.err, "w.qidl:2:8: error: unused import \"dep.qidl\" "
                     "[-Werror]\n");
    assert_dir(out, "");
    run_free(&r);
    remove_tree(out);
    remove_tree(src);
    free(out);
    free(src);
}
END_TEST

START_TEST(test_cannot_write)
{
    char *out = make_tmpdir(), *missing = path_in(out, "missing");
    char *dep = path_in(missing, "x.d"), expected[1024];
    run_result r;

    /* an output directory that does not exist */
    run_args(good_dir, &r, (const char *[]){ "-o", missing, "bank.qidl",
                                             NULL });
    ck_assert_int_eq(r.status, 1);
    snprintf(expected, sizeof expected, "qrpcgen: cannot write %s/bank.h: "
             "No such file or directory\n", missing);
    ck_assert_str_eq(r.err, expected);
    run_free(&r);

    /* the outputs could be written but the dependency file cannot: nothing
     * is renamed into place and every temporary file is removed */
    run_args(good_dir, &r, (const char *[]){ "-o", out, "-M", dep,
                                             "bank.qidl", NULL });
    ck_assert_int_eq(r.status, 1);
    snprintf(expected, sizeof expected, "qrpcgen: cannot write %s: No such "
             "file or directory\n", dep);
    ck_assert_str_eq(r.err, expected);
    assert_dir(out, "");
    run_free(&r);

    /* a directory without write permission (root ignores permissions) */
    if (geteuid() != 0) {
        ck_assert(chmod(out, 0555) == 0);
        run_args(good_dir, &r, (const char *[]){ "-o", out, "bank.qidl",
                                                 NULL });
        ck_assert_int_eq(r.status, 1);
        snprintf(expected, sizeof expected, "qrpcgen: cannot write "
                 "%s/bank.h: Permission denied\n", out);
        ck_assert_str_eq(r.err, expected);
        ck_assert(chmod(out, 0700) == 0);
        assert_dir(out, "");
        run_free(&r);
    }
    remove_tree(out);
    free(out);
    free(missing);
    free(dep);
}
END_TEST

START_TEST(test_overwrite_and_mode)
{
    char *out = make_tmpdir(), *h = path_in(out, "bank.h"), *text;
    struct stat st;
    run_result r;

    umask(022);
    write_file(out, "bank.h", "old contents\n");
    chmod(h, 0600);
    run_args(good_dir, &r, (const char *[]){ "--header", "-o", out,
                                             "bank.qidl", NULL });
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    ck_assert(stat(h, &st) == 0);
    ck_assert_msg((st.st_mode & 0777) == 0644, "mode %o",
                  (unsigned)(st.st_mode & 0777));
    text = read_file(h);
    ck_assert_msg(strstr(text, "bank_Account") != NULL, "not regenerated");
    free(text);
    assert_dir(out, "bank.h");
    run_free(&r);
    remove_tree(out);
    free(out);
    free(h);
}
END_TEST

/* The same input reached by two paths gives byte-identical outputs. */
START_TEST(test_deterministic)
{
    static const char *const names[] = {
        "bank.h", "bank_types.c", "bank_client.c", "bank_server.c",
    };
    char *a = make_tmpdir(), *b = make_tmpdir();
    char *srcdir = strdup(good_dir);
    run_result r;
    size_t i;

    ck_assert(srcdir);
    run_args(good_dir, &r, (const char *[]){ "-o", a, "bank.qidl", NULL });
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    run_free(&r);
    *strrchr(srcdir, '/') = '\0';
    run_args(srcdir, &r, (const char *[]){ "-o", b, "qidl-good/bank.qidl",
                                           NULL });
    ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
    run_free(&r);
    for (i = 0; i < sizeof names / sizeof *names; i++) {
        char *pa = path_in(a, names[i]), *pb = path_in(b, names[i]);
        char *ta = read_file(pa), *tb = read_file(pb);

        ck_assert_msg(strcmp(ta, tb) == 0, "%s differs", names[i]);
        free(pa);
        free(pb);
        free(ta);
        free(tb);
    }
    remove_tree(a);
    remove_tree(b);
    free(a);
    free(b);
    free(srcdir);
}
END_TEST

/* 1000 structs and a service of 1000 methods compile quickly: no
 * quadratic lookups.  The limit is loose so that slow machines and
 * sanitizer builds pass; the usual time is a few tens of milliseconds. */
START_TEST(test_large_input)
{
    char *src = make_tmpdir(), *out = make_tmpdir(), *text = NULL;
    struct timespec t0, t1;
    size_t len = 0;
    char line[256];
    run_result r;
    double secs;
    int i;

    append(&text, &len, "package big;\n", 13);
    for (i = 0; i < 1000; i++) {
        snprintf(line, sizeof line, "struct S%d { i32 a; string b; "
                 "list<S%d> c; optional<S%d> d; }\n", i, i, i ? i - 1 : 0);
        append(&text, &len, line, strlen(line));
    }
    append(&text, &len, "service Big version 1 {\n", 24);
    for (i = 0; i < 1000; i++) {
        snprintf(line, sizeof line, "    S%d m%d(S%d x, out i32 y) = %d;\n",
                 i, i, 999 - i, i);
        append(&text, &len, line, strlen(line));
    }
    append(&text, &len, "}\n", 2);
    write_file(src, "big.qidl", text);
    free(text);

    clock_gettime(CLOCK_MONOTONIC, &t0);
    run_args(src, &r, (const char *[]){ "-o", out, "big.qidl", NULL });
    clock_gettime(CLOCK_MONOTONIC, &t1);
    secs = (double)(t1.tv_sec - t0.tv_sec) +
           (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    ck_assert_msg(r.status == 0, "status %d: %.300s", r.status, r.err);
    ck_assert_msg(secs < 10.0, "took %.2f s", secs);
    run_free(&r);
    remove_tree(out);
    remove_tree(src);
    free(out);
    free(src);
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
    TCase *tc, *cli;
    SRunner *sr;
    int failed, i;

    qrpcgen = getenv("QRPCGEN");
    if (!qrpcgen || !srcdir) {
        fputs("test_qidl_good: set QRPCGEN and QRPC_SRCDIR\n", stderr);
        return EXIT_FAILURE;
    }
    good_dir = malloc(strlen(srcdir) + 32);
    if (!good_dir)
        return EXIT_FAILURE;
    sprintf(good_dir, "%s/tests/qidl-good", srcdir);
    n_cases = scandir(good_dir, &list, is_case, alphasort);
    if (n_cases < 0) {
        fprintf(stderr, "test_qidl_good: %s: %s\n", good_dir,
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

    s = suite_create("qidl-good");
    tc = tcase_create("corpus");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_corpus_size);
    tcase_add_loop_test(tc, test_good_case, 0, n_cases);
    suite_add_tcase(s, tc);
    cli = tcase_create("command-line");
    tcase_set_timeout(cli, 60);
    tcase_add_test(cli, test_version);
    tcase_add_test(cli, test_help);
    tcase_add_test(cli, test_usage_errors);
    tcase_add_test(cli, test_input_names);
    tcase_add_test(cli, test_selectors);
    tcase_add_test(cli, test_several_inputs);
    tcase_add_test(cli, test_depfile);
    tcase_add_test(cli, test_warning_and_werror);
    tcase_add_test(cli, test_cannot_write);
    tcase_add_test(cli, test_overwrite_and_mode);
    tcase_add_test(cli, test_deterministic);
    tcase_add_test(cli, test_large_input);
    suite_add_tcase(s, cli);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    for (i = 0; i < n_cases; i++)
        free(cases[i]);
    free(cases);
    free(good_dir);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
