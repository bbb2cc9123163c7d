/*
 * gen.h - the back ends: one function per output file, each writing the
 * whole file into a memory buffer.  main.c writes the buffers out only when
 * every requested output was generated, through a temporary file and a
 * rename, so an error or an interrupt never leaves half a file behind.
 *
 * The back ends read a program that passed qg_sema() without errors; they
 * report nothing and cannot fail except for memory, which aborts (as the
 * arena does): a compiler has no better answer to OOM.
 */
#ifndef QRPCGEN_GEN_H
#define QRPCGEN_GEN_H

#include <stdarg.h>
#include "ast.h"

/* A growable string. */
typedef struct qg_strbuf {
    char *data;
    size_t len;
    size_t cap;
} qg_strbuf;

void qg_sb_init(qg_strbuf *sb);
void qg_sb_free(qg_strbuf *sb);
void qg_sb_puts(qg_strbuf *sb, const char *s);
void qg_sb_printf(qg_strbuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void qg_sb_vprintf(qg_strbuf *sb, const char *fmt, va_list ap);

/* What to write for one input file; `base` is the file name without .qidl. */
typedef enum qg_output {
    QG_OUT_HEADER,      /* base.h */
    QG_OUT_TYPES,       /* base_types.c */
    QG_OUT_CLIENT,      /* base_client.c */
    QG_OUT_SERVER,      /* base_server.c */
    QG_OUT_RANDOM,      /* base_random.c: random values, for property tests */
    QG_OUT_COUNT
} qg_output;

/* "bank" -> "bank.h", "bank_types.c", ... (static storage) */
const char *qg_output_suffix(qg_output o);

/* Generates output o of main file f into sb (appending). */
void qg_generate(qg_program *p, qg_file *f, qg_output o, const char *base,
                 qg_strbuf *sb);

#endif
