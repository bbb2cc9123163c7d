/*
 * diag.c - diagnostics in the format of gcc, so that editors and build
 * tools that understand gcc understand qrpcgen:
 *
 *     path:line:col: error: message
 *     path:line:col: warning: message
 *     path:line:col: note: message
 *
 * The path is the one the file was opened with (as given on the command
 * line, or as an import was resolved); line and column are 1-based and the
 * column counts bytes, so a tab is one column.  A diagnostic with no file
 * (a file that cannot be read at all) is written "qrpcgen: error: ...".
 * With -Werror (qg_program.werror) a warning is written as an error with
 * " [-Werror]" appended and counted as one.  Every diagnostic is one line
 * on stderr; this file does not decide what is wrong, only how it is told.
 */
#include <stdarg.h>
#include <stdio.h>

#include "ast.h"

static void diag_emit(qg_loc loc, const char *kind, const char *suffix,
                      const char *fmt, va_list ap)
{
    if (!loc.file)
        fprintf(stderr, "qrpcgen: %s: ", kind);
    else if (loc.line <= 0)
        fprintf(stderr, "%s: %s: ", loc.file, kind);
    else
        fprintf(stderr, "%s:%d:%d: %s: ", loc.file, loc.line, loc.col, kind);
    vfprintf(stderr, fmt, ap);
    fputs(suffix, stderr);
    fputc('\n', stderr);
}

void qg_error(qg_program *p, qg_loc loc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    diag_emit(loc, "error", "", fmt, ap);
    va_end(ap);
    p->errors++;
}

void qg_warning(qg_program *p, qg_loc loc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    if (p->werror) {
        diag_emit(loc, "error", " [-Werror]", fmt, ap);
        p->errors++;
    } else {
        diag_emit(loc, "warning", "", fmt, ap);
        p->warnings++;
    }
    va_end(ap);
}

void qg_note(qg_program *p, qg_loc loc, const char *fmt, ...)
{
    va_list ap;

    (void)p;
    va_start(ap, fmt);
    diag_emit(loc, "note", "", fmt, ap);
    va_end(ap);
}
