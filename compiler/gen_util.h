/*
 * gen_util.h - what the back ends (gen_*.c) share: C spellings of types,
 * the anonymous list and optional types a file uses, and emitters for the
 * statements that encode, decode, free, copy, compare and randomise one
 * declarator.  Internal to the back ends.
 */
#ifndef QRPCGEN_GEN_UTIL_H
#define QRPCGEN_GEN_UTIL_H

#include "ast.h"
#include "cname.h"
#include "gen.h"

typedef struct gen_types {
    const qg_type **items;
    size_t n;
    size_t cap;
} gen_types;

typedef struct gen_ctx {
    qg_program *p;
    qg_file *f;
    const char *base;           /* "bank" for bank.qidl */
    const char *pkg;            /* f->package */
    qg_strbuf *sb;              /* where output goes */
    gen_types lists;            /* anonymous list<> types, first use first */
    gen_types opts;             /* anonymous optional<> types */
    const char *fail_label;     /* where decode/copy errors jump: "fail" */
    const char *buf;            /* the qrpc_buf encoders write to: "b" */
} gen_ctx;

/* Per function: which locals the emitted statements needed. */
typedef struct gen_fn {
    bool uses_i;                /* size_t i (array loops) */
} gen_fn;

void gen_init(gen_ctx *g, qg_program *p, qg_file *f, const char *base, qg_strbuf *sb);

void gen_banner(gen_ctx *g, const char *suffix, const char *purpose);
/* A doc comment as a C comment, indented by ind. */
void gen_doc(gen_ctx *g, const char *doc, const char *ind);

/* "int32_t", "char *", "bank_Money_list", "bank_Money *" */
const char *gen_ctype(gen_ctx *g, const qg_type *t);
/* "int32_t pin[4]", "char *who" */
const char *gen_cdecl(gen_ctx *g, const qg_type *t, uint64_t array, const char *name);
/* Follows typedefs without arrays to the type they stand for. */
const qg_type *gen_resolve(const qg_type *t);
/* True for types passed by value: scalars, enums and typedefs of them. */
bool gen_by_value(const qg_type *t);
/* True when a value of t owns memory (needs _free). */
bool gen_owns(const qg_type *t);
bool gen_is_float(const qg_type *t);
bool gen_is_array_typedef(const qg_type *t);
uint32_t gen_min_size(const qg_type *t, uint64_t array);
/* The function that handles t for op ("encode", ...): bank_Money_encode. */
const char *gen_fn_name(gen_ctx *g, const qg_type *t, const char *op);
/* A bound as a C constant: "0" or "UINT64_C(64)". */
const char *gen_bound(gen_ctx *g, const qg_type *t);
/* v as a C constant of integer or bool type t ("INT64_C(5)", "true"). */
const char *gen_int_literal(gen_ctx *g, const qg_type *t, int64_t v);
/* A value of union u's discriminant: an enum member's C name or a literal. */
const char *gen_disc_value(gen_ctx *g, const qg_decl *u, int64_t v);
/* "&x" for "x", "v" for "(*v)" or "*v". */
const char *gen_addr(gen_ctx *g, const char *lv);

/* Statement emitters for one declarator (type t, array length or 0). */
void gen_emit_encode(gen_ctx *g, gen_fn *fn, const qg_type *t, uint64_t array,
                     const char *lv, const char *ind);
void gen_emit_decode(gen_ctx *g, gen_fn *fn, const qg_type *t, uint64_t array,
                     const char *lv, const char *ind);
void gen_emit_free(gen_ctx *g, gen_fn *fn, const qg_type *t, uint64_t array,
                   const char *lv, const char *ind);
/*
 * A bytes value at lv decoded as a view into the reader's buffer (no
 * copy; the value must not be freed): for a dispatcher's in-parameters,
 * which live no longer than the request they are read from.
 */
void gen_emit_decode_view(gen_ctx *g, const qg_type *t, const char *lv, const char *ind);
/* The length of a bytes value at lv, without its bytes (a call's tail). */
void gen_emit_encode_head(gen_ctx *g, const qg_type *t, const char *lv, const char *ind);
void gen_emit_copy(gen_ctx *g, gen_fn *fn, const qg_type *t, uint64_t array,
                   const char *dst, const char *src, const char *ind);
void gen_emit_equal(gen_ctx *g, gen_fn *fn, const qg_type *t, uint64_t array,
                    const char *a, const char *b, const char *ind);
void gen_emit_random(gen_ctx *g, gen_fn *fn, const qg_type *t, uint64_t array,
                     const char *lv, const char *ind);

/* Methods: what the reply carries. */
bool gen_method_has_reply(const qg_method *m);
/* The C parameter list of a stub or handler after the leading argument. */
void gen_method_params(gen_ctx *g, qg_strbuf *sb, const qg_method *m);
/* The C spelling of a parameter (without trailing comma). */
const char *gen_param_decl(gen_ctx *g, const qg_param *pa);
/* The same, spelt as an in parameter whatever its direction (async stubs). */
const char *gen_in_param_decl(gen_ctx *g, const qg_param *pa);

/* Declarations of a file that are types, in a definable order. */
bool gen_is_type_decl(const qg_decl *d);

#endif
