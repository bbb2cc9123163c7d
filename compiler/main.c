/*
 * main.c - the command line of qrpcgen (see qrpcgen(1)):
 *
 *   qrpcgen [-o DIR] [-I DIR]... [-M DEPFILE] [-Werror]
 *           [--header|--types|--client|--server|--random]... FILE.qidl...
 *
 * It loads and checks every input first and writes nothing unless all of
 * them are free of errors.  Then it generates every requested output into
 * memory and only then writes the files, each through a temporary file in
 * the same directory renamed over the final name, so a failed or
 * interrupted run never leaves a half-written output (a run killed by a
 * signal it cannot catch may leave a ".NAME.XXXXXX" temporary behind).
 * Exit status: 0 success, 1 errors in the input or while writing, 2 a
 * usage error.  The compiler proper is elsewhere: loader.c, sema.c, gen_*.c.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ast.h"
#include "gen.h"

#ifndef QRPC_VERSION
#define QRPC_VERSION "unknown"
#endif

#define MAIN_DEFAULT_OUTPUTS \
    ((1u << QG_OUT_HEADER) | (1u << QG_OUT_TYPES) | \
     (1u << QG_OUT_CLIENT) | (1u << QG_OUT_SERVER))

typedef struct main_input {
    const char *path;           /* as given */
    const char *base;           /* file name without directory and .qidl */
    qg_file *file;
} main_input;

/* One file to write: its final path, its contents and, while it exists,
 * the temporary file that becomes it. */
typedef struct main_output {
    const char *path;
    qg_strbuf sb;
    char *tmp;
    volatile sig_atomic_t renamed;      /* tmp is now path */
} main_output;

/* The temporaries a signal handler must remove; set only while writing. */
static main_output *volatile main_sig_outputs;
static volatile size_t main_sig_n;

static const char main_usage[] =
    "Usage: qrpcgen [OPTION]... FILE.qidl...\n"
    "Compile qrpc interface definitions (.qidl) into C.\n"
    "\n"
    "  -o DIR        write the outputs into DIR (default: the current\n"
    "                directory)\n"
    "  -I DIR        look for imported files in DIR too (after the\n"
    "                directory of the importing file); may be repeated\n"
    "  -M DEPFILE    also write a make dependency file\n"
    "  -Werror       treat warnings as errors\n"
    "  --header      write BASE.h\n"
    "  --types       write BASE_types.c (encoders, decoders, free, copy)\n"
    "  --client      write BASE_client.c (client stubs)\n"
    "  --server      write BASE_server.c (dispatch and registration)\n"
    "  --random      write BASE_random.c (random values, for tests)\n"
    "  --help        show this help and exit\n"
    "  --version     show the version and exit\n"
    "\n"
    "Without --header, --types, --client, --server or --random, writes the\n"
    "first four.  BASE is the input's file name without directory and\n"
    "'.qidl'.  Nothing is written if any input has an error.\n"
    "See qrpcgen(1) and qidl(5).\n";

static int main_usage_error(const char *fmt, const char *arg)
{
    fputs("qrpcgen: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\nTry 'qrpcgen --help'.\n", stderr);
    return 2;
}

static bool main_ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);

    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* "dir/bank.qidl" -> "bank" */
static const char *main_base(qg_program *p, const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;

    return qg_strndup(p, name, strlen(name) - strlen(".qidl"));
}

static const char *main_join(qg_program *p, const char *dir,
                             const char *name)
{
    size_t n;

    if (!dir)
        return qg_strdup(p, name);
    n = strlen(dir);
    return qg_printf(p, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/",
                     name);
}

/* ---- the dependency file ------------------------------------------------ */

/* Appends a path escaped for make: blanks and '#' with a backslash, '$'
 * doubled. */
static void main_dep_path(qg_strbuf *sb, const char *path)
{
    char c[2] = { 0, 0 };

    for (; *path; path++) {
        if (*path == ' ' || *path == '\t' || *path == '#')
            qg_sb_puts(sb, "\\");
        else if (*path == '$')
            qg_sb_puts(sb, "$");
        c[0] = *path;
        qg_sb_puts(sb, c);
    }
}

/* Adds the files f imports, directly or not, that are not in seen[]. */
static void main_dep_collect(const qg_file *f, const qg_file **seen,
                             size_t *n)
{
    const qg_import *imp;
    size_t i;

    for (imp = f->imports; imp; imp = imp->next) {
        if (!imp->file)
            continue;
        for (i = 0; i < *n && seen[i] != imp->file; i++)
            ;
        if (i < *n)
            continue;
        seen[(*n)++] = imp->file;
        main_dep_collect(imp->file, seen, n);
    }
}

static void main_depfile(qg_program *p, const main_input *in, size_t n_in,
                         const main_output *out, size_t per_input,
                         qg_strbuf *sb)
{
    const qg_file **all, **one;
    size_t n_all = 0, n_one, n_files = 0, i, j, k;
    const qg_file *f;

    for (f = p->files; f; f = f->next)
        n_files++;
    all = calloc(n_files + 1, sizeof *all);
    one = calloc(n_files + 1, sizeof *one);
    if (!all || !one) {
        fputs("qrpcgen: out of memory\n", stderr);
        abort();
    }
    for (i = 0; i < n_in; i++) {
        for (j = 0; j < per_input; j++) {
            if (j)
                qg_sb_puts(sb, " ");
            main_dep_path(sb, out[i * per_input + j].path);
        }
        qg_sb_puts(sb, ":");
        qg_sb_puts(sb, " ");
        main_dep_path(sb, in[i].path);
        one[0] = in[i].file;
        n_one = 1;
        main_dep_collect(in[i].file, one, &n_one);
        for (j = 1; j < n_one; j++) {
            qg_sb_puts(sb, " ");
            main_dep_path(sb, one[j]->path);
            for (k = 0; k < n_all && all[k] != one[j]; k++)
                ;
            if (k == n_all)
                all[n_all++] = one[j];
        }
        qg_sb_puts(sb, "\n");
    }
    /* an empty rule per imported file, so that deleting one does not
     * break the build (as gcc -MP does) */
    for (k = 0; k < n_all; k++) {
        qg_sb_puts(sb, "\n");
        main_dep_path(sb, all[k]->path);
        qg_sb_puts(sb, ":\n");
    }
    free(all);
    free(one);
}

/* ---- writing ------------------------------------------------------------ */

static void main_remove_temps(main_output *out, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (out[i].tmp && !out[i].renamed)
            unlink(out[i].tmp);
        free(out[i].tmp);
        out[i].tmp = NULL;
    }
}

static void main_on_signal(int sig)
{
    main_output *out = main_sig_outputs;
    size_t i, n = main_sig_n;

    for (i = 0; out && i < n; i++)
        if (out[i].tmp && !out[i].renamed)
            unlink(out[i].tmp);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Writes o->sb to a new temporary file next to o->path, which it records
 * in o->tmp; returns 0 or an errno value. */
static int main_write_temp(main_output *o, mode_t mode)
{
    const char *slash = strrchr(o->path, '/');
    size_t dirlen = slash ? (size_t)(slash - o->path + 1) : 0;
    const char *name = o->path + dirlen;
    size_t left = o->sb.len;
    const char *data = o->sb.data;
    int fd = -1, err = 0;
    ssize_t r;
    char *tmp;

    tmp = malloc(dirlen + strlen(name) + 16);
    if (!tmp) {
        err = ENOMEM;
        goto out;
    }
    sprintf(tmp, "%.*s.%s.XXXXXX", (int)dirlen, o->path, name);
    fd = mkstemp(tmp);
    if (fd < 0) {
        err = errno;
        free(tmp);
        goto out;
    }
    o->tmp = tmp;
    while (left > 0) {
        r = write(fd, data, left);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            err = errno;
            goto out;
        }
        data += r;
        left -= (size_t)r;
    }
    if (fchmod(fd, mode) != 0)
        err = errno;
out:
    if (fd >= 0 && close(fd) != 0 && !err)
        err = errno;
    return err;
}

/* All temporaries first, then the renames: an error before the renames
 * leaves every old output as it was. */
static int main_commit(main_output *out, size_t n)
{
    struct sigaction sa, old_int, old_term, old_hup;
    mode_t mask = umask(0);
    size_t i;
    int err = 0, status = 0;

    umask(mask);
    main_sig_outputs = out;
    main_sig_n = n;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = main_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGHUP, &sa, &old_hup);

    for (i = 0; i < n && !err; i++)
        err = main_write_temp(&out[i], 0666 & ~mask);
    if (err) {
        fprintf(stderr, "qrpcgen: cannot write %s: %s\n", out[i - 1].path,
                strerror(err));
        status = 1;
        goto out;
    }
    for (i = 0; i < n; i++) {
        if (rename(out[i].tmp, out[i].path) != 0) {
            fprintf(stderr, "qrpcgen: cannot write %s: %s\n", out[i].path,
                    strerror(errno));
            status = 1;
            goto out;
        }
        out[i].renamed = 1;
    }
out:
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    main_sig_outputs = NULL;
    main_sig_n = 0;
    main_remove_temps(out, n);
    return status;
}

/* ---- main --------------------------------------------------------------- */

int main(int argc, char **argv)
{
    qg_program *p = qg_program_new();
    main_input *in = calloc((size_t)argc + 1, sizeof *in);
    const char **incdirs = calloc((size_t)argc + 1, sizeof *incdirs);
    main_output *out = NULL;
    const char *outdir = NULL, *depfile = NULL;
    unsigned selected = 0;
    size_t n_in = 0, n_out = 0, per_input = 0, i, j;
    bool options_done = false;
    int status = 0, k;

    if (!in || !incdirs) {
        fputs("qrpcgen: out of memory\n", stderr);
        abort();
    }
    for (k = 1; k < argc; k++) {
        const char *a = argv[k];
        const char **value = NULL;

        if (options_done || a[0] != '-' || a[1] == '\0') {
            in[n_in++].path = a;
        } else if (strcmp(a, "--") == 0) {
            options_done = true;
        } else if (strcmp(a, "--help") == 0) {
            fputs(main_usage, stdout);
            goto out;
        } else if (strcmp(a, "--version") == 0) {
            puts("qrpcgen " QRPC_VERSION);
            goto out;
        } else if (strcmp(a, "--header") == 0) {
            selected |= 1u << QG_OUT_HEADER;
        } else if (strcmp(a, "--types") == 0) {
            selected |= 1u << QG_OUT_TYPES;
        } else if (strcmp(a, "--client") == 0) {
            selected |= 1u << QG_OUT_CLIENT;
        } else if (strcmp(a, "--server") == 0) {
            selected |= 1u << QG_OUT_SERVER;
        } else if (strcmp(a, "--random") == 0) {
            selected |= 1u << QG_OUT_RANDOM;
        } else if (strcmp(a, "-Werror") == 0) {
            p->werror = true;
        } else if (a[1] == 'o' || a[1] == 'I' || a[1] == 'M') {
            const char *v = a[2] ? a + 2 : k + 1 < argc ? argv[++k] : NULL;

            if (!v || !*v) {
                status = main_usage_error("option '%s' needs an argument",
                                          a);
                goto out;
            }
            if (a[1] == 'I')
                incdirs[p->n_incdirs++] = v;
            else
                value = a[1] == 'o' ? &outdir : &depfile;
            if (value)
                *value = v;
        } else {
            status = main_usage_error("unknown option '%s'", a);
            goto out;
        }
    }
    p->incdirs = incdirs;
    if (n_in == 0) {
        status = main_usage_error("%s", "no input files");
        goto out;
    }
    for (i = 0; i < n_in; i++) {
        const char *path = in[i].path;
        const char *slash = strrchr(path, '/');

        if (!main_ends_with(path, ".qidl") ||
            strcmp(slash ? slash + 1 : path, ".qidl") == 0) {
            status = main_usage_error("input file name '%s' does not end "
                                      "in .qidl", path);
            goto out;
        }
        in[i].base = main_base(p, path);
        for (j = 0; j < i; j++) {
            if (strcmp(in[j].base, in[i].base) == 0) {
                fprintf(stderr, "qrpcgen: inputs '%s' and '%s' would write "
                        "the same files\nTry 'qrpcgen --help'.\n",
                        in[j].path, path);
                status = 2;
                goto out;
            }
        }
    }
    if (!selected)
        selected = MAIN_DEFAULT_OUTPUTS;

    for (i = 0; i < n_in; i++)
        in[i].file = qg_load(p, in[i].path, true);
    if (p->errors == 0)
        qg_sema(p);
    if (p->errors) {
        status = 1;
        goto out;
    }

    for (k = 0; k < QG_OUT_COUNT; k++)
        if (selected & (1u << k))
            per_input++;
    out = calloc(n_in * per_input + 1, sizeof *out);
    if (!out) {
        fputs("qrpcgen: out of memory\n", stderr);
        abort();
    }
    for (i = 0; i < n_in; i++) {
        for (k = 0; k < QG_OUT_COUNT; k++) {
            main_output *o;

            if (!(selected & (1u << k)))
                continue;
            o = &out[n_out++];
            o->path = main_join(p, outdir, qg_printf(p, "%s%s", in[i].base,
                                qg_output_suffix((qg_output)k)));
            qg_sb_init(&o->sb);
            qg_generate(p, in[i].file, (qg_output)k, in[i].base, &o->sb);
        }
    }
    if (depfile) {
        main_output *o = &out[n_out++];

        o->path = depfile;
        qg_sb_init(&o->sb);
        main_depfile(p, in, n_in, out, per_input, &o->sb);
    }
    status = main_commit(out, n_out);

out:
    for (i = 0; i < n_out; i++)
        qg_sb_free(&out[i].sb);
    free(out);
    free(in);
    free(incdirs);
    qg_program_free(p);
    return status;
}
