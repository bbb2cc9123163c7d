/*
 * fuzz_qidl.c - libFuzzer harness for qrpcgen's front end and back ends.
 *
 * Each input is the text of a .qidl file.  It is written to a file in a
 * private temporary directory made once per process (the same path every
 * time) and loaded from there with qg_load(), that directory being the only
 * include directory, so the lexer, parser, loader and sema see it exactly
 * as qrpcgen would see a file on disk.  When it passes sema, all five back
 * ends generate their output into memory (nothing is written).  The whole
 * program is freed after every input: what LeakSanitizer reports is a leak.
 *
 * Imports: next to the input the directory holds fixed copies of the
 * .qidl files of tests/idl, tests/qidl-good/inc and tests/qidl-bad/inc
 * (embedded at build time, fuzz_files.h), so inputs like the seed corpus
 * can import "common.qidl" or "inc/units.qidl" and reach the back ends.
 * Nothing else is reachable: fuzz.mk renames the compiler objects' calls
 * to open, fopen, access and realpath to the fuzz_qidl_* functions below,
 * which resolve the path and treat anything outside the directory as
 * missing (ENOENT).  So an import "/etc/passwd" or "../../x" behaves the
 * same on every machine; the price, and the limit of this harness, is that
 * the loader's handling of real files elsewhere (absolute paths that
 * exist, permissions, special files) is not fuzzed.  The directory is
 * removed at exit; a crashing run leaves it behind in $TMPDIR (default
 * /tmp).
 *
 * Not a test of main.c (command line, writing files), which is not linked.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ast.h"
#include "fuzz_files.h"
#include "gen.h"

/* The renamed calls of the compiler objects (see fuzz.mk). */
int fuzz_qidl_open(const char *path, int flags, ...);
FILE *fuzz_qidl_fopen(const char *path, const char *mode);
int fuzz_qidl_access(const char *path, int mode);
char *fuzz_qidl_realpath(const char *path, char *resolved);

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *fq_dir;            /* realpath of the private directory */
static size_t fq_dirlen;
static char *fq_input;          /* fq_dir/input.qidl */

static void fq_die(const char *what, const char *path)
{
    fprintf(stderr, "fuzz_qidl: %s %s: %s\n", what, path, strerror(errno));
    abort();
}

static char *fq_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *s = malloc(n);

    if (!s)
        abort();
    snprintf(s, n, "%s/%s", dir, name);
    return s;
}

static void fq_write(const char *path, const void *data, size_t len)
{
    const char *p = data;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    if (fd < 0)
        fq_die("cannot create", path);
    while (len > 0) {
        ssize_t r = write(fd, p, len);

        if (r < 0) {
            if (errno == EINTR)
                continue;
            fq_die("cannot write", path);
        }
        p += r;
        len -= (size_t)r;
    }
    if (close(fd) != 0)
        fq_die("cannot write", path);
}

/* ---- confinement ------------------------------------------------------------ */

static int fq_inside(const char *canon)
{
    return strncmp(canon, fq_dir, fq_dirlen) == 0 &&
           (canon[fq_dirlen] == '/' || canon[fq_dirlen] == '\0');
}

char *fuzz_qidl_realpath(const char *path, char *resolved)
{
    char *canon = realpath(path, NULL);

    if (!canon)
        return NULL;
    if (!fq_inside(canon)) {
        free(canon);
        errno = ENOENT;
        return NULL;
    }
    if (!resolved)
        return canon;
    if (strlen(canon) >= PATH_MAX) {
        free(canon);
        errno = ENAMETOOLONG;
        return NULL;
    }
    strcpy(resolved, canon);
    free(canon);
    return resolved;
}

/* 0 if path resolves inside the directory, else -1 with errno set. */
static int fq_check(const char *path)
{
    char *canon = fuzz_qidl_realpath(path, NULL);

    if (!canon)
        return -1;
    free(canon);
    return 0;
}

int fuzz_qidl_open(const char *path, int flags, ...)
{
    mode_t mode = 0;

    if (flags & O_CREAT) {
        va_list ap;

        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if (fq_check(path) != 0)
        return -1;
    return open(path, flags, mode);
}

FILE *fuzz_qidl_fopen(const char *path, const char *mode)
{
    if (fq_check(path) != 0)
        return NULL;
    return fopen(path, mode);
}

int fuzz_qidl_access(const char *path, int mode)
{
    if (fq_check(path) != 0)
        return -1;
    return access(path, mode);
}

/* ---- set-up ------------------------------------------------------------------- */

static void fq_cleanup(void)
{
    const fuzz_file *f;
    char *path;

    unlink(fq_input);
    for (f = fuzz_files; f->name; f++) {
        path = fq_join(fq_dir, f->name);
        unlink(path);
        free(path);
    }
    path = fq_join(fq_dir, "inc");
    rmdir(path);
    free(path);
    rmdir(fq_dir);
    free(fq_input);
    free(fq_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR");
    const fuzz_file *f;
    char *tmpl, *path;

    (void)argc;
    (void)argv;
    tmpl = fq_join(tmp && *tmp ? tmp : "/tmp", "qrpc-fuzz-qidl.XXXXXX");
    if (!mkdtemp(tmpl))
        fq_die("cannot create", tmpl);
    /* The loader compares realpath()s: the directory's must be canonical. */
    fq_dir = realpath(tmpl, NULL);
    if (!fq_dir)
        fq_die("cannot resolve", tmpl);
    free(tmpl);
    fq_dirlen = strlen(fq_dir);
    fq_input = fq_join(fq_dir, "input.qidl");
    path = fq_join(fq_dir, "inc");
    if (mkdir(path, 0700) != 0)
        fq_die("cannot create", path);
    free(path);
    for (f = fuzz_files; f->name; f++) {
        path = fq_join(fq_dir, f->name);
        fq_write(path, f->text, strlen(f->text));
        free(path);
    }
    atexit(fq_cleanup);
    return 0;
}

/* ---- one input ------------------------------------------------------------------ */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *incdirs[1];
    qg_program *p;
    qg_file *f;
    int o;

    fq_write(fq_input, data, size);
    p = qg_program_new();
    incdirs[0] = fq_dir;
    p->incdirs = incdirs;
    p->n_incdirs = 1;
    /* As main.c does: load, check, and generate only from a clean program. */
    f = qg_load(p, fq_input, true);
    if (f && p->errors == 0 && qg_sema(p)) {
        for (o = 0; o < QG_OUT_COUNT; o++) {
            qg_strbuf sb;

            qg_sb_init(&sb);
            qg_generate(p, f, (qg_output)o, "input", &sb);
            /* Every back end writes something; an empty file is a bug. */
            if (sb.len == 0)
                __builtin_trap();
            qg_sb_free(&sb);
        }
    }
    qg_program_free(p);
    return 0;
}
