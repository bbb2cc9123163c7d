/*
 * gen_common.c - the parts of code generation every back end shares: the
 * string buffer, banners and doc comments, C spellings of .qidl types, the
 * anonymous list/optional types a file uses, and the statement emitters
 * for one declarator.  Also qg_generate(), which picks the back end.
 *
 * The emitters write flat statements in the style of the generated code:
 * "rc = call(...);" followed by an early exit ("return rc;" in encoders,
 * "goto fail;" where something must be released first).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen_util.h"

/* ---- string buffer --------------------------------------------------------- */

void qg_sb_init(qg_strbuf *sb)
{
    sb->data = NULL;
    sb->len = 0;
    sb->cap = 0;
}

void qg_sb_free(qg_strbuf *sb)
{
    free(sb->data);
    qg_sb_init(sb);
}

static void sb_reserve(qg_strbuf *sb, size_t n)
{
    size_t ncap;

    if (sb->cap - sb->len > n)
        return;
    ncap = sb->cap ? sb->cap : 4096;
    while (ncap - sb->len <= n)
        ncap *= 2;
    sb->data = realloc(sb->data, ncap);
    if (sb->data == NULL) {
        fputs("qrpcgen: out of memory\n", stderr);
        exit(1);
    }
    sb->cap = ncap;
}

void qg_sb_puts(qg_strbuf *sb, const char *s)
{
    size_t n = strlen(s);

    sb_reserve(sb, n);
    memcpy(sb->data + sb->len, s, n + 1);
    sb->len += n;
}

void qg_sb_vprintf(qg_strbuf *sb, const char *fmt, va_list ap)
{
    va_list ap2;
    int n;

    /* most output fits the room left: format once, straight into it */
    sb_reserve(sb, 256);
    va_copy(ap2, ap);
    n = vsnprintf(sb->data + sb->len, sb->cap - sb->len, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return;
    if ((size_t)n >= sb->cap - sb->len) {
        sb_reserve(sb, (size_t)n);
        vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    }
    sb->len += (size_t)n;
}

void qg_sb_printf(qg_strbuf *sb, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    qg_sb_vprintf(sb, fmt, ap);
    va_end(ap);
}

/* ---- outputs --------------------------------------------------------------- */

const char *qg_output_suffix(qg_output o)
{
    switch (o) {
    case QG_OUT_HEADER: return ".h";
    case QG_OUT_TYPES: return "_types.c";
    case QG_OUT_CLIENT: return "_client.c";
    case QG_OUT_SERVER: return "_server.c";
    case QG_OUT_RANDOM: return "_random.c";
    case QG_OUT_COUNT: break;
    }
    return "";
}

void qg_gen_header(gen_ctx *g);
void qg_gen_types(gen_ctx *g);
void qg_gen_client(gen_ctx *g);
void qg_gen_server(gen_ctx *g);
void qg_gen_random(gen_ctx *g);

/*
 * Breaks lines longer than GEN_WIDTH after a comma, continuing under the
 * first '(' of the line (or 8 columns in when that is too far right), as
 * a person would wrap a long prototype or call.  Lines holding a string
 * literal are left alone: a comma there is not a break point.
 */
#define GEN_WIDTH 90

static void gen_wrap_line(qg_strbuf *out, const char *line, size_t len)
{
    const char *open = memchr(line, '(', len);
    size_t lead = 0, indent, col, start = 0, i, last_break = 0;

    while (lead < len && line[lead] == ' ')
        lead++;
    if (len <= GEN_WIDTH || open == NULL || memchr(line, '"', len) != NULL) {
        qg_sb_printf(out, "%.*s\n", (int)len, line);
        return;
    }
    indent = (size_t)(open - line) + 1;
    if (indent > 48)
        indent = lead + 8;
    col = 0;
    for (i = 0; i < len; i++, col++) {
        if (line[i] == ',' && i + 1 < len && line[i + 1] == ' ')
            last_break = i + 1;
        if (col >= GEN_WIDTH && last_break > start) {
            qg_sb_printf(out, "%.*s\n%*s", (int)(last_break - start), line + start,
                         (int)indent, "");
            start = last_break + 1;     /* skip the space after the comma */
            col = indent + (i - start);
            last_break = start;
        }
    }
    qg_sb_printf(out, "%.*s\n", (int)(len - start), line + start);
}

static void gen_wrap(qg_strbuf *sb, size_t from)
{
    qg_strbuf out;
    const char *p, *end, *nl;

    if (sb->data == NULL)
        return;
    qg_sb_init(&out);
    qg_sb_printf(&out, "%.*s", (int)from, sb->data);
    p = sb->data + from;
    end = sb->data + sb->len;
    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            nl = end;
        gen_wrap_line(&out, p, (size_t)(nl - p));
        p = nl + 1;
    }
    if (sb->len > from && sb->data[sb->len - 1] != '\n')
        out.len--;              /* the input had no final newline */
    qg_sb_free(sb);
    *sb = out;
}

void qg_generate(qg_program *p, qg_file *f, qg_output o, const char *base,
                 qg_strbuf *sb)
{
    size_t from = sb->len;
    gen_ctx g;

    gen_init(&g, p, f, base, sb);
    switch (o) {
    case QG_OUT_HEADER: qg_gen_header(&g); break;
    case QG_OUT_TYPES: qg_gen_types(&g); break;
    case QG_OUT_CLIENT: qg_gen_client(&g); break;
    case QG_OUT_SERVER: qg_gen_server(&g); break;
    case QG_OUT_RANDOM: qg_gen_random(&g); break;
    case QG_OUT_COUNT: break;
    }
    gen_wrap(sb, from);
    free(g.lists.items);
    free(g.opts.items);
}

/* ---- anonymous types ------------------------------------------------------- */

static void gen_types_add(gen_ctx *g, gen_types *ts, const qg_type *t)
{
    const char *tag = qg_cname_tag(g->p, g->f, t);
    size_t i;

    for (i = 0; i < ts->n; i++)
        if (strcmp(qg_cname_tag(g->p, g->f, ts->items[i]), tag) == 0)
            return;
    if (ts->n == ts->cap) {
        ts->cap = ts->cap ? ts->cap * 2 : 16;
        ts->items = realloc(ts->items, ts->cap * sizeof *ts->items);
        if (ts->items == NULL) {
            fputs("qrpcgen: out of memory\n", stderr);
            exit(1);
        }
    }
    ts->items[ts->n++] = t;
}

/* Element types first, so a list's helpers follow its element's. */
static void gen_collect(gen_ctx *g, const qg_type *t)
{
    if (t == NULL)
        return;
    if (t->kind == QG_T_LIST || t->kind == QG_T_OPTIONAL) {
        gen_collect(g, t->elem);
        gen_types_add(g, t->kind == QG_T_LIST ? &g->lists : &g->opts, t);
    }
}

void gen_init(gen_ctx *g, qg_program *p, qg_file *f, const char *base, qg_strbuf *sb)
{
    qg_decl *d;

    memset(g, 0, sizeof *g);
    g->p = p;
    g->f = f;
    g->base = base;
    g->pkg = f->package;
    g->sb = sb;
    g->fail_label = "fail";
    g->buf = "b";
    for (d = f->decls; d != NULL; d = d->next) {
        const qg_field *fd;
        const qg_arm *arm;
        const qg_method *m;
        const qg_param *pa;

        switch (d->kind) {
        case QG_D_TYPEDEF:
            gen_collect(g, d->tdef->type);
            break;
        case QG_D_STRUCT:
            for (fd = d->fields; fd != NULL; fd = fd->next)
                gen_collect(g, fd->type);
            break;
        case QG_D_UNION:
            for (arm = d->arms; arm != NULL; arm = arm->next)
                if (arm->field != NULL)
                    gen_collect(g, arm->field->type);
            break;
        case QG_D_SERVICE:
            for (m = d->methods; m != NULL; m = m->next) {
                gen_collect(g, m->result);
                for (pa = m->params; pa != NULL; pa = pa->next)
                    gen_collect(g, pa->f.type);
            }
            break;
        default:
            break;
        }
    }
}

/* ---- banners and doc comments ------------------------------------------------ */

void gen_banner(gen_ctx *g, const char *suffix, const char *purpose)
{
    qg_sb_printf(g->sb,
                 "/*\n"
                 " * %s%s - generated by qrpcgen %s from %s.qidl; do not edit.\n"
                 " *\n"
                 " * %s\n"
                 " */\n",
                 g->base, suffix, QRPC_VERSION, g->base, purpose);
}

/*
 * One character of a doc comment inside a C comment: "*" + "/" would end
 * the comment and "/" + "*" trips -Wcomment, so a space goes between.
 */
static void gen_doc_char(gen_ctx *g, const char *s)
{
    char c[2] = { s[0], '\0' };

    qg_sb_puts(g->sb, c);
    if ((s[0] == '*' && s[1] == '/') || (s[0] == '/' && s[1] == '*'))
        qg_sb_puts(g->sb, " ");
}

void gen_doc(gen_ctx *g, const char *doc, const char *ind)
{
    const char *s;

    if (doc == NULL || *doc == '\0')
        return;
    if (strchr(doc, '\n') == NULL && strlen(doc) + strlen(ind) < 72) {
        qg_sb_printf(g->sb, "%s/* ", ind);
        for (s = doc; *s; s++)
            gen_doc_char(g, s);
        qg_sb_puts(g->sb, " */\n");
        return;
    }
    qg_sb_printf(g->sb, "%s/*\n%s *", ind, ind);
    if (*doc != '\n')
        qg_sb_puts(g->sb, " ");
    for (s = doc; *s; s++) {
        if (*s == '\n') {
            qg_sb_printf(g->sb, "\n%s *", ind);
            if (s[1] != '\n' && s[1] != '\0')
                qg_sb_puts(g->sb, " ");
        } else {
            gen_doc_char(g, s);
        }
    }
    qg_sb_printf(g->sb, "\n%s */\n", ind);
}

/* ---- types ----------------------------------------------------------------- */

static const char *gen_scalar_ctype(qg_type_kind k)
{
    switch (k) {
    case QG_T_BOOL: return "bool";
    case QG_T_I8: return "int8_t";
    case QG_T_I16: return "int16_t";
    case QG_T_I32: return "int32_t";
    case QG_T_I64: return "int64_t";
    case QG_T_U8: return "uint8_t";
    case QG_T_U16: return "uint16_t";
    case QG_T_U32: return "uint32_t";
    case QG_T_U64: return "uint64_t";
    case QG_T_F32: return "float";
    case QG_T_F64: return "double";
    case QG_T_STRING: return "char *";
    case QG_T_BYTES: return "qrpc_bytes";
    default: return "void";
    }
}

const char *gen_ctype(gen_ctx *g, const qg_type *t)
{
    const char *e;

    switch (t->kind) {
    case QG_T_LIST:
        return qg_cname_list(g->p, g->f, t);
    case QG_T_OPTIONAL:
        e = gen_ctype(g, t->elem);
        return qg_printf(g->p, "%s%s*", e, e[strlen(e) - 1] == '*' ? "" : " ");
    case QG_T_NAMED:
        return qg_cname_decl(g->p, t->ref);
    default:
        return gen_scalar_ctype(t->kind);
    }
}

const char *gen_cdecl(gen_ctx *g, const qg_type *t, uint64_t array, const char *name)
{
    const char *ct = gen_ctype(g, t);
    const char *sep = ct[strlen(ct) - 1] == '*' ? "" : " ";

    if (array != 0)
        return qg_printf(g->p, "%s%s%s[%llu]", ct, sep, name, (unsigned long long)array);
    return qg_printf(g->p, "%s%s%s", ct, sep, name);
}

const qg_type *gen_resolve(const qg_type *t)
{
    while (t->kind == QG_T_NAMED && t->ref->kind == QG_D_TYPEDEF &&
           t->ref->tdef->array_len == NULL)
        t = t->ref->tdef->type;
    return t;
}

static bool gen_is_scalar_kind(qg_type_kind k)
{
    return k >= QG_T_BOOL && k <= QG_T_F64;
}

bool gen_by_value(const qg_type *t)
{
    t = gen_resolve(t);
    return gen_is_scalar_kind(t->kind) ||
           (t->kind == QG_T_NAMED && t->ref->kind == QG_D_ENUM);
}

bool gen_is_float(const qg_type *t)
{
    t = gen_resolve(t);
    return t->kind == QG_T_F32 || t->kind == QG_T_F64;
}

bool gen_is_array_typedef(const qg_type *t)
{
    return t->kind == QG_T_NAMED && t->ref->kind == QG_D_TYPEDEF &&
           t->ref->tdef->array_len != NULL;
}

bool gen_owns(const qg_type *t)
{
    const qg_field *fd;
    const qg_arm *arm;

    switch (t->kind) {
    case QG_T_STRING:
    case QG_T_BYTES:
    case QG_T_LIST:
    case QG_T_OPTIONAL:
        return true;
    case QG_T_NAMED:
        switch (t->ref->kind) {
        case QG_D_TYPEDEF:
            return gen_owns(t->ref->tdef->type);
        case QG_D_STRUCT:
            for (fd = t->ref->fields; fd != NULL; fd = fd->next)
                if (gen_owns(fd->type))
                    return true;
            return false;
        case QG_D_UNION:
            for (arm = t->ref->arms; arm != NULL; arm = arm->next)
                if (arm->field != NULL && gen_owns(arm->field->type))
                    return true;
            return false;
        default:
            return false;
        }
    default:
        return false;
    }
}

uint32_t gen_min_size(const qg_type *t, uint64_t array)
{
    uint64_t one;

    switch (t->kind) {
    case QG_T_BOOL: case QG_T_I8: case QG_T_U8: one = 1; break;
    case QG_T_I16: case QG_T_U16: one = 2; break;
    case QG_T_I32: case QG_T_U32: case QG_T_F32: one = 4; break;
    case QG_T_I64: case QG_T_U64: case QG_T_F64: one = 8; break;
    case QG_T_STRING: case QG_T_BYTES: case QG_T_LIST: one = 4; break;
    case QG_T_OPTIONAL: one = 1; break;
    case QG_T_NAMED: one = t->ref->min_size; break;
    default: one = 0; break;
    }
    if (array != 0)
        one *= array;
    return one > UINT32_MAX ? UINT32_MAX : (uint32_t)one;
}

const char *gen_fn_name(gen_ctx *g, const qg_type *t, const char *op)
{
    if (t->kind == QG_T_NAMED)
        return qg_printf(g->p, "%s_%s", qg_cname_decl(g->p, t->ref), op);
    return qg_printf(g->p, "%s_%s_%s", g->pkg, qg_cname_tag(g->p, g->f, t), op);
}

const char *gen_bound(gen_ctx *g, const qg_type *t)
{
    if (t->bound_val == 0)
        return "0";
    return qg_printf(g->p, "UINT64_C(%llu)", (unsigned long long)t->bound_val);
}

/* "(*x)" as a plain argument: "*x". */
static const char *gen_plain(gen_ctx *g, const char *lv)
{
    size_t n = strlen(lv);

    if (n > 3 && lv[0] == '(' && lv[1] == '*' && lv[n - 1] == ')' &&
        strpbrk(lv + 2, "()[]-.") == lv + n - 1)
        return qg_strndup(g->p, lv + 1, n - 2);
    return lv;
}

const char *gen_addr(gen_ctx *g, const char *lv)
{
    size_t n = strlen(lv);

    if (n > 3 && lv[0] == '(' && lv[1] == '*' && lv[n - 1] == ')' &&
        strpbrk(lv + 2, "()[]-.") == lv + n - 1)
        return qg_strndup(g->p, lv + 2, n - 3);
    if (lv[0] == '*' && strpbrk(lv + 1, "()[]-.*") == NULL)
        return lv + 1;
    return qg_printf(g->p, "&%s", lv);
}

/*
 * A pointer to an array typedef does not convert to its const-qualified
 * form implicitly in ISO C before C23; this casts where one is passed to a
 * const parameter.  ptr is the pointer expression, t the pointed-to type.
 */
static const char *gen_const_ptr(gen_ctx *g, const qg_type *t, const char *ptr)
{
    if (gen_is_array_typedef(t))
        return qg_printf(g->p, "(const %s *)%s", gen_ctype(g, t), ptr);
    return ptr;
}

static const char *gen_scalar_op(qg_type_kind k)
{
    switch (k) {
    case QG_T_BOOL: return "bool";
    case QG_T_I8: return "i8";
    case QG_T_I16: return "i16";
    case QG_T_I32: return "i32";
    case QG_T_I64: return "i64";
    case QG_T_U8: return "u8";
    case QG_T_U16: return "u16";
    case QG_T_U32: return "u32";
    case QG_T_U64: return "u64";
    case QG_T_F32: return "f32";
    case QG_T_F64: return "f64";
    default: return "?";
    }
}

/* ---- statement emitters ---------------------------------------------------- */

static const char *gen_goto_fail(gen_ctx *g)
{
    return qg_printf(g->p, "goto %s;", g->fail_label);
}

static void gen_check(gen_ctx *g, const char *ind, const char *expr, const char *on_err)
{
    qg_sb_printf(g->sb, "%src = %s;\n%sif (rc != 0)\n%s    %s\n", ind, expr, ind, ind, on_err);
}

static bool gen_is_byte(const qg_type *t)
{
    return t->kind == QG_T_U8 || t->kind == QG_T_I8;
}

static void gen_loop_open(gen_ctx *g, gen_fn *fn, uint64_t array, const char *ind)
{
    fn->uses_i = true;
    qg_sb_printf(g->sb, "%sfor (i = 0; i < %llu; i++) {\n", ind, (unsigned long long)array);
}

static void gen_encode_one(gen_ctx *g, const qg_type *t, const char *lv, const char *ind)
{
    const char *e;

    switch (t->kind) {
    case QG_T_STRING:
        e = qg_printf(g->p, "qrpc_put_string(%s, %s, %s)", g->buf, lv, gen_bound(g, t));
        break;
    case QG_T_BYTES:
        e = qg_printf(g->p, "qrpc_put_bytes(%s, %s, %s)", g->buf, gen_addr(g, lv),
                      gen_bound(g, t));
        break;
    case QG_T_LIST:
        e = qg_printf(g->p, "%s(%s, %s, %s)", gen_fn_name(g, t, "encode"), g->buf,
                      gen_addr(g, lv), gen_bound(g, t));
        break;
    case QG_T_OPTIONAL:
        e = qg_printf(g->p, "%s(%s, %s)", gen_fn_name(g, t, "encode"), g->buf,
                      gen_const_ptr(g, t->elem, lv));
        break;
    case QG_T_NAMED:
        e = qg_printf(g->p, "%s(%s, %s)", gen_fn_name(g, t, "encode"), g->buf,
                      gen_const_ptr(g, t, gen_addr(g, lv)));
        break;
    default:
        e = qg_printf(g->p, "qrpc_put_%s(%s, %s)", gen_scalar_op(t->kind), g->buf, lv);
        break;
    }
    gen_check(g, ind, e, "return rc;");
}

void gen_emit_encode(gen_ctx *g, gen_fn *fn, const qg_type *t, uint64_t array,
                     const char *lv, const char *ind)
{
    if (array == 0) {
        gen_encode_one(g, t, lv, ind);
        return;
    }
    if (gen_is_byte(t)) {
        gen_check(g, ind, qg_printf(g->p, "qrpc_put_raw(%s, %s, %llu)", g->buf, lv,
                                    (unsigned long long)array), "return rc;");
        return;
    }
    gen_loop_open(g, fn, array, ind);
    gen_encode_one(g, t, qg_printf(g->p, "%s[i]", lv), qg_printf(g->p, "%s    ", ind));
    qg_sb_printf(g->sb, "%s}\n", ind);
}

static void gen_decode_one(gen_ctx *g, const qg_type *t, const char *lv, const char *ind)
{
    const char *e;
    const char *a = gen_addr(g, lv);

    switch (t->kind) {
    case QG_T_STRING:
        e = qg_printf(g->p, "qrpc_get_string(r, %s, %s)", a, gen_bound(g, t));
        break;
    case QG_T_BYTES:
        e = qg_printf(g->p, "qrpc_get_bytes(r, %s, %s)", a, gen_bound(g, t));
        break;
    case QG_T_LIST:
        e = qg_printf(g->p, "%s(r, %s, %s)", gen_fn_name(g, t, "decode"), a, gen_bound(g, t));
        break;
    case QG_T_OPTIONAL:
    case QG_T_NAMED:
        e = qg_printf(g->p, "%s(r, %s)", gen_fn_name(g, t, "decode"), a);
        break;
    default:
        e = qg_printf(g->p, "qrpc_get_%s(r, %s)", gen_scalar_op(t->kind), a);
        break;
    }
    gen_check(g, ind, e, gen_goto_fail(g));
}

void gen_emit_decode(gen_ctx *g, gen_fn *fn, const qg_type *t, uint64_t array,
                     const char *lv, const char *ind)
{
    if (array == 0) {
        gen_decode_one(g, t, lv, ind);
        return;
    }
    if (gen_is_byte(t)) {
        gen_check(g, ind, qg_printf(g->p, "qrpc_get_raw(r, %s, %llu)", lv,
                                    (unsigned long long)array), gen_goto_fail(g));
        return;
    }
    gen_loop_open(g, fn, array, ind);
    gen_decode_one(g, t, qg_printf(g->p, "%s[i]", lv), qg_printf(g->p, "%s    ", ind));
    qg_sb_printf(g->sb, "%s}\n", ind);
}

void gen_emit_encode_head(gen_ctx *g, const qg_type *t, const char *lv, const char *ind)
{
    gen_check(g, ind, qg_printf(g->p, "qrpc_put_bytes_head(%s, %s, %s)", g->buf, gen_addr(g, lv),
                                gen_bound(g, t)), "return rc;");
}

void gen_emit_decode_view(gen_ctx *g, const qg_type *t, const char *lv, const char *ind)
{
    gen_check(g, ind, qg_printf(g->p, "qrpc_get_bytes_view(r, %s, %s)", gen_addr(g, lv),
                                gen_bound(g, t)), gen_goto_fail(g));
}

static void gen_free_one(gen_ctx *g, const qg_type *t, const char *lv, const char *ind)
{
    switch (t->kind) {
    case QG_T_STRING:
        qg_sb_printf(g->sb, "%sfree(%s);\n", ind, gen_plain(g, lv));
        break;
    case QG_T_BYTES:
        qg_sb_printf(g->sb, "%sqrpc_bytes_free(%s);\n", ind, gen_addr(g, lv));
        break;
    default:
        qg_sb_printf(g->sb, "%s%s(%s);\n", ind, gen_fn_name(g, t, "free"), gen_addr(g, lv));
        break;
    }
}

void gen_emit_free(gen_ctx *g, gen_fn *fn, const qg_type *t, uint64_t array,
                   const char *lv, const char *ind)
{
    if (!gen_owns(t))
        return;
    if (array == 0) {
        gen_free_one(g, t, lv, ind);
        return;
    }
    gen_loop_open(g, fn, array, ind);
    gen_free_one(g, t, qg_printf(g->p, "%s[i]", lv), qg_printf(g->p, "%s    ", ind));
    qg_sb_printf(g->sb, "%s}\n", ind);
}

static void gen_copy_one(gen_ctx *g, const qg_type *t, const char *dst,
                         const char *src, const char *ind)
{
    const char *e;

    switch (t->kind) {
    case QG_T_STRING:
        e = qg_printf(g->p, "qrpc_string_copy(%s, %s)", gen_addr(g, dst), src);
        break;
    case QG_T_BYTES:
        e = qg_printf(g->p, "qrpc_bytes_copy(%s, %s)", gen_addr(g, dst), gen_addr(g, src));
        break;
    case QG_T_OPTIONAL:
        e = qg_printf(g->p, "%s(%s, %s)", gen_fn_name(g, t, "copy"), gen_addr(g, dst),
                      gen_const_ptr(g, t->elem, src));
        break;
    default:
        e = qg_printf(g->p, "%s(%s, %s)", gen_fn_name(g, t, "copy"), gen_addr(g, dst),
                      gen_const_ptr(g, t, gen_addr(g, src)));
        break;
    }
    gen_check(g, ind, e, gen_goto_fail(g));
}

void gen_emit_copy(gen_ctx *g, gen_fn *fn, const qg_type *t, uint64_t array,
                   const char *dst, const char *src, const char *ind)
{
    if (!gen_owns(t)) {
        if (array != 0 || gen_is_array_typedef(t))
            qg_sb_printf(g->sb, "%smemcpy(%s, %s, sizeof %s);\n", ind,
                         gen_addr(g, dst), gen_addr(g, src), dst);
        else
            qg_sb_printf(g->sb, "%s%s = %s;\n", ind, dst, src);
        return;
    }
    if (array == 0) {
        gen_copy_one(g, t, dst, src, ind);
        return;
    }
    gen_loop_open(g, fn, array, ind);
    gen_copy_one(g, t, qg_printf(g->p, "%s[i]", dst), qg_printf(g->p, "%s[i]", src),
                 qg_printf(g->p, "%s    ", ind));
    qg_sb_printf(g->sb, "%s}\n", ind);
}

static const char *gen_differ_expr(gen_ctx *g, const qg_type *t, const char *a,
                                   const char *b)
{
    switch (t->kind) {
    case QG_T_F32:
    case QG_T_F64:
        return qg_printf(g->p, "memcmp(%s, %s, sizeof %s) != 0", gen_addr(g, a),
                         gen_addr(g, b), a);
    case QG_T_STRING:
        return qg_printf(g->p, "!qrpc_string_equal(%s, %s)", a, b);
    case QG_T_BYTES:
        return qg_printf(g->p, "!qrpc_bytes_equal(%s, %s)", gen_addr(g, a), gen_addr(g, b));
    case QG_T_OPTIONAL:
        return qg_printf(g->p, "!%s(%s, %s)", gen_fn_name(g, t, "equal"),
                         gen_const_ptr(g, t->elem, a), gen_const_ptr(g, t->elem, b));
    case QG_T_LIST:
        return qg_printf(g->p, "!%s(%s, %s)", gen_fn_name(g, t, "equal"),
                         gen_addr(g, a), gen_addr(g, b));
    case QG_T_NAMED:
        if (t->ref->kind == QG_D_ENUM)
            return qg_printf(g->p, "%s != %s", a, b);
        return qg_printf(g->p, "!%s(%s, %s)", gen_fn_name(g, t, "equal"),
                         gen_const_ptr(g, t, gen_addr(g, a)), gen_const_ptr(g, t, gen_addr(g, b)));
    default:
        return qg_printf(g->p, "%s != %s", a, b);
    }
}

void gen_emit_equal(gen_ctx *g, gen_fn *fn, const qg_type *t, uint64_t array,
                    const char *a, const char *b, const char *ind)
{
    const char *ind2 = qg_printf(g->p, "%s    ", ind);

    if (array != 0 && gen_is_scalar_kind(t->kind)) {
        qg_sb_printf(g->sb, "%sif (memcmp(%s, %s, sizeof %s) != 0)\n%sreturn false;\n",
                     ind, a, b, a, ind2);
        return;
    }
    if (array == 0) {
        qg_sb_printf(g->sb, "%sif (%s)\n%sreturn false;\n", ind,
                     gen_differ_expr(g, t, a, b), ind2);
        return;
    }
    gen_loop_open(g, fn, array, ind);
    qg_sb_printf(g->sb, "%sif (%s)\n%s    return false;\n", ind2,
                 gen_differ_expr(g, t, qg_printf(g->p, "%s[i]", a),
                                 qg_printf(g->p, "%s[i]", b)), ind2);
    qg_sb_printf(g->sb, "%s}\n", ind);
}

static void gen_random_one(gen_ctx *g, const qg_type *t, const char *lv, const char *ind)
{
    const char *e;

    switch (t->kind) {
    case QG_T_BOOL:
        qg_sb_printf(g->sb, "%s%s = (random_u64(seed) & 1) != 0;\n", ind, lv);
        return;
    case QG_T_F32:
        qg_sb_printf(g->sb, "%s%s = random_f32(seed);\n", ind, lv);
        return;
    case QG_T_F64:
        qg_sb_printf(g->sb, "%s%s = random_f64(seed);\n", ind, lv);
        return;
    case QG_T_STRING:
        e = qg_printf(g->p, "random_string(%s, seed, %s)", gen_addr(g, lv), gen_bound(g, t));
        break;
    case QG_T_BYTES:
        e = qg_printf(g->p, "random_bytes(%s, seed, %s)", gen_addr(g, lv), gen_bound(g, t));
        break;
    case QG_T_LIST:
        e = qg_printf(g->p, "%s(%s, seed, depth, %s)", gen_fn_name(g, t, "random"),
                      gen_addr(g, lv), gen_bound(g, t));
        break;
    case QG_T_OPTIONAL:
    case QG_T_NAMED:
        e = qg_printf(g->p, "%s(%s, seed, depth)", gen_fn_name(g, t, "random"),
                      gen_addr(g, lv));
        break;
    default:
        qg_sb_printf(g->sb, "%s%s = (%s)random_u64(seed);\n", ind, lv,
                     gen_scalar_ctype(t->kind));
        return;
    }
    gen_check(g, ind, e, gen_goto_fail(g));
}

void gen_emit_random(gen_ctx *g, gen_fn *fn, const qg_type *t, uint64_t array,
                     const char *lv, const char *ind)
{
    if (array == 0) {
        gen_random_one(g, t, lv, ind);
        return;
    }
    gen_loop_open(g, fn, array, ind);
    gen_random_one(g, t, qg_printf(g->p, "%s[i]", lv), qg_printf(g->p, "%s    ", ind));
    qg_sb_printf(g->sb, "%s}\n", ind);
}

/* ---- integer literals ----------------------------------------------------- */

/* v as a C constant of type t (a discriminant: bool, an integer type). */

const char *gen_int_literal(gen_ctx *g, const qg_type *t, int64_t v)
{
    t = gen_resolve(t);
    switch (t->kind) {
    case QG_T_BOOL:
        return v ? "true" : "false";
    case QG_T_U64:
        return qg_printf(g->p, "UINT64_C(%llu)", (unsigned long long)(uint64_t)v);
    case QG_T_U32:
        return qg_printf(g->p, "UINT32_C(%llu)", (unsigned long long)(uint32_t)v);
    case QG_T_I64:
        if (v == INT64_MIN)
            return "(-INT64_C(9223372036854775807) - 1)";
        return v < 0 ? qg_printf(g->p, "(-INT64_C(%lld))", -(long long)v)
                     : qg_printf(g->p, "INT64_C(%lld)", (long long)v);
    case QG_T_I32:
        if (v == INT32_MIN)
            return "(-INT32_C(2147483647) - 1)";
        return qg_printf(g->p, "%lld", (long long)v);
    default:
        return qg_printf(g->p, "%lld", (long long)v);
    }
}

/* A value of union u's discriminant: an enum member's C name or a literal. */
const char *gen_disc_value(gen_ctx *g, const qg_decl *u, int64_t v)
{
    const qg_type *dt = gen_resolve(u->disc_type);

    if (dt->kind == QG_T_NAMED && dt->ref->kind == QG_D_ENUM) {
        const qg_decl *m;

        for (m = dt->ref->members; m != NULL; m = m->next)
            if (m->ival == v)
                return qg_cname_member(g->p, m);
    }
    return gen_int_literal(g, u->disc_type, v);
}

/* ---- methods ------------------------------------------------------------------ */

bool gen_method_has_reply(const qg_method *m)
{
    const qg_param *pa;

    if (m->result->kind != QG_T_VOID)
        return true;
    for (pa = m->params; pa != NULL; pa = pa->next)
        if (pa->dir != QG_IN)
            return true;
    return false;
}

const char *gen_param_decl(gen_ctx *g, const qg_param *pa)
{
    const qg_type *t = pa->f.type;
    const char *ct;

    if (pa->dir != QG_IN)
        return gen_cdecl(g, t, 0, qg_printf(g->p, "*%s", pa->f.name));
    if (gen_by_value(t))
        return gen_cdecl(g, t, 0, pa->f.name);
    if (t->kind == QG_T_STRING)
        return qg_printf(g->p, "const char *%s", pa->f.name);
    if (t->kind == QG_T_OPTIONAL) {
        ct = gen_ctype(g, t->elem);
        if (ct[strlen(ct) - 1] == '*')
            return qg_printf(g->p, "%sconst *%s", ct, pa->f.name);
        return qg_printf(g->p, "const %s *%s", ct, pa->f.name);
    }
    return qg_printf(g->p, "const %s *%s", gen_ctype(g, t), pa->f.name);
}

const char *gen_in_param_decl(gen_ctx *g, const qg_param *pa)
{
    qg_param in = *pa;

    in.dir = QG_IN;
    return gen_param_decl(g, &in);
}

void gen_method_params(gen_ctx *g, qg_strbuf *sb, const qg_method *m)
{
    const qg_param *pa;

    for (pa = m->params; pa != NULL; pa = pa->next)
        qg_sb_printf(sb, ", %s", gen_param_decl(g, pa));
    if (m->result->kind != QG_T_VOID)
        qg_sb_printf(sb, ", %s", gen_cdecl(g, m->result, 0, "*result"));
}

bool gen_is_type_decl(const qg_decl *d)
{
    return d->kind == QG_D_ENUM || d->kind == QG_D_TYPEDEF ||
           d->kind == QG_D_STRUCT || d->kind == QG_D_UNION;
}

