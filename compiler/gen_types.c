/*
 * gen_types.c - the back end that writes BASE_types.c: for every type the
 * encode, decode, free, copy and equal functions, the same for each
 * anonymous list<> and optional<> type, the service descriptors, and the
 * _reply_free functions of methods.
 *
 * Each function is written into a scratch buffer first so that its locals
 * ("size_t i", "int rc") and its "fail:" label appear only when its body
 * uses them: the output must compile without warnings under -Wall -Wextra.
 */
#include <stdlib.h>
#include <string.h>

#include "gen_util.h"

/* ---- function assembly ------------------------------------------------------- */

typedef struct ty_fn {
    qg_strbuf *out;             /* the real output */
    qg_strbuf body;
    gen_fn fn;
} ty_fn;

static void ty_begin(gen_ctx *g, ty_fn *t)
{
    t->out = g->sb;
    qg_sb_init(&t->body);
    qg_sb_puts(&t->body, "");
    memset(&t->fn, 0, sizeof t->fn);
    g->sb = &t->body;
}

/*
 * Writes "SIGNATURE\n{\n" + the locals the body needs + extra_locals + the
 * body, then the closing brace.
 */
static void ty_end(gen_ctx *g, ty_fn *t, const char *signature, const char *extra_locals)
{
    const char *body = t->body.data;
    bool locals = false;

    g->sb = t->out;
    qg_sb_printf(g->sb, "\n%s\n{\n", signature);
    if (extra_locals != NULL && *extra_locals) {
        qg_sb_puts(g->sb, extra_locals);
        locals = true;
    }
    if (t->fn.uses_i || strstr(body, "for (i = 0;") != NULL) {
        qg_sb_puts(g->sb, "    size_t i;\n");
        locals = true;
    }
    if (strstr(body, "rc = ") != NULL) {
        qg_sb_puts(g->sb, "    int rc;\n");
        locals = true;
    }
    if (locals)
        qg_sb_puts(g->sb, "\n");
    qg_sb_puts(g->sb, body);
    qg_sb_puts(g->sb, "}\n");
    qg_sb_free(&t->body);
}

static bool ty_body_has(const ty_fn *t, const char *s)
{
    return t->body.data != NULL && strstr(t->body.data, s) != NULL;
}

/* The switch expression on a discriminant (bools are widened for -Wswitch-bool). */
static const char *ty_switch_expr(gen_ctx *g, const qg_decl *u, const char *v)
{
    if (gen_resolve(u->disc_type)->kind == QG_T_BOOL)
        return qg_printf(g->p, "(int)%s->%s", v, u->disc_name);
    return qg_printf(g->p, "%s->%s", v, u->disc_name);
}

static void ty_case_labels(gen_ctx *g, const qg_decl *u, const qg_arm *arm)
{
    const qg_case *c;

    if (arm->is_default) {
        qg_sb_puts(g->sb, "    default:\n");
        return;
    }
    for (c = arm->labels; c != NULL; c = c->next)
        qg_sb_printf(g->sb, "    case %s:\n", gen_disc_value(g, u, c->val));
}

static const qg_arm *ty_default_arm(const qg_decl *u)
{
    const qg_arm *arm;

    for (arm = u->arms; arm != NULL; arm = arm->next)
        if (arm->is_default)
            return arm;
    return NULL;
}

/* ---- enums ------------------------------------------------------------------- */

static void ty_enum(gen_ctx *g, const qg_decl *d)
{
    const char *n = qg_cname_decl(g->p, d);
    const qg_decl *m;

    qg_sb_printf(g->sb, "\nbool %s_valid(int32_t v)\n{\n    switch (v) {\n", n);
    for (m = d->members; m != NULL; m = m->next)
        qg_sb_printf(g->sb, "    case %s:\n", qg_cname_member(g->p, m));
    qg_sb_puts(g->sb, "        return true;\n    default:\n        return false;\n    }\n}\n");

    qg_sb_printf(g->sb, "\nconst char *%s_name(%s v)\n{\n    switch (v) {\n", n, n);
    for (m = d->members; m != NULL; m = m->next)
        qg_sb_printf(g->sb, "    case %s:\n        return \"%s\";\n",
                     qg_cname_member(g->p, m), m->name);
    qg_sb_puts(g->sb, "    default:\n        return NULL;\n    }\n}\n");

    qg_sb_printf(g->sb,
                 "\nint %s_encode(qrpc_buf *b, const %s *v)\n{\n"
                 "    if (!%s_valid((int32_t)*v))\n        return QRPC_EINVAL;\n"
                 "    return qrpc_put_i32(b, (int32_t)*v);\n}\n", n, n, n);
    qg_sb_printf(g->sb,
                 "\nint %s_decode(qrpc_reader *r, %s *v)\n{\n"
                 "    int32_t x;\n    int rc = qrpc_get_i32(r, &x);\n\n"
                 "    if (rc != 0)\n        return rc;\n"
                 "    if (!%s_valid(x))\n        return QRPC_EDECODE;\n"
                 "    *v = (%s)x;\n    return 0;\n}\n", n, n, n, n);
}

/* ---- structs, unions and typedefs ------------------------------------------------ */

/* Calls emit(g, fn, type, array, lvalue-of-a, lvalue-of-b) per member. */
typedef void (*ty_member_fn)(gen_ctx *g, gen_fn *fn, const qg_type *t, uint64_t array,
                             const char *a, const char *b, const char *ind);

static void ty_enc(gen_ctx *g, gen_fn *fn, const qg_type *t, uint64_t n, const char *a,
                   const char *b, const char *ind)
{
    (void)b;
    gen_emit_encode(g, fn, t, n, a, ind);
}

static void ty_dec(gen_ctx *g, gen_fn *fn, const qg_type *t, uint64_t n, const char *a,
                   const char *b, const char *ind)
{
    (void)b;
    gen_emit_decode(g, fn, t, n, a, ind);
}

static void ty_free(gen_ctx *g, gen_fn *fn, const qg_type *t, uint64_t n, const char *a,
                    const char *b, const char *ind)
{
    (void)b;
    gen_emit_free(g, fn, t, n, a, ind);
}

static void ty_copy(gen_ctx *g, gen_fn *fn, const qg_type *t, uint64_t n, const char *a,
                    const char *b, const char *ind)
{
    gen_emit_copy(g, fn, t, n, a, b, ind);
}

static void ty_eq(gen_ctx *g, gen_fn *fn, const qg_type *t, uint64_t n, const char *a,
                  const char *b, const char *ind)
{
    gen_emit_equal(g, fn, t, n, a, b, ind);
}

/*
 * The members of d, for one operation: fields of a struct, the declarator
 * of a typedef, or a switch over the arms of a union.  a and b name the
 * pointers ("v", or "dst" and "src").  brk is what ends a union arm.
 */
static void ty_members(gen_ctx *g, gen_fn *fn, const qg_decl *d, ty_member_fn emit,
                       const char *a, const char *b)
{
    const qg_field *fd;
    const qg_arm *arm;

    switch (d->kind) {
    case QG_D_TYPEDEF:
        emit(g, fn, d->tdef->type, d->tdef->array_val, qg_printf(g->p, "(*%s)", a),
             qg_printf(g->p, "(*%s)", b), "    ");
        break;
    case QG_D_STRUCT:
        for (fd = d->fields; fd != NULL; fd = fd->next)
            emit(g, fn, fd->type, fd->array_val, qg_printf(g->p, "%s->%s", a, fd->name),
                 qg_printf(g->p, "%s->%s", b, fd->name), "    ");
        break;
    case QG_D_UNION:
        qg_sb_printf(g->sb, "    switch (%s) {\n", ty_switch_expr(g, d, a));
        for (arm = d->arms; arm != NULL; arm = arm->next) {
            ty_case_labels(g, d, arm);
            if (arm->field != NULL)
                emit(g, fn, arm->field->type, arm->field->array_val,
                     qg_printf(g->p, "%s->%s", a, arm->field->name),
                     qg_printf(g->p, "%s->%s", b, arm->field->name), "        ");
            qg_sb_puts(g->sb, "        break;\n");
        }
        if (ty_default_arm(d) == NULL) {
            qg_sb_puts(g->sb, "    default:\n");
            if (emit == ty_enc)
                qg_sb_puts(g->sb, "        return QRPC_EINVAL;\n");
            else if (emit == ty_dec)
                qg_sb_puts(g->sb, "        rc = QRPC_EDECODE;\n        goto fail;\n");
            else
                qg_sb_puts(g->sb, "        break;\n");
        }
        qg_sb_puts(g->sb, "    }\n");
        break;
    default:
        break;
    }
}

static void ty_aggregate(gen_ctx *g, const qg_decl *d)
{
    const char *n = qg_cname_decl(g->p, d);
    qg_type self;
    bool owns;
    ty_fn t;

    memset(&self, 0, sizeof self);
    self.kind = QG_T_NAMED;
    self.ref = (qg_decl *)d;
    owns = gen_owns(&self);

    /* encode */
    ty_begin(g, &t);
    if (d->kind == QG_D_UNION)
        gen_emit_encode(g, &t.fn, d->disc_type, 0, qg_printf(g->p, "v->%s", d->disc_name), "    ");
    ty_members(g, &t.fn, d, ty_enc, "v", "v");
    qg_sb_puts(g->sb, "    return 0;\n");
    ty_end(g, &t, qg_printf(g->p, "int %s_encode(qrpc_buf *b, const %s *v)", n, n), NULL);

    /* decode */
    ty_begin(g, &t);
    qg_sb_puts(g->sb, "    memset(v, 0, sizeof *v);\n");
    if (d->recursive)
        qg_sb_puts(g->sb, "    rc = qrpc_reader_enter(r);\n    if (rc != 0)\n        return rc;\n");
    if (d->kind == QG_D_UNION)
        gen_emit_decode(g, &t.fn, d->disc_type, 0, qg_printf(g->p, "v->%s", d->disc_name), "    ");
    ty_members(g, &t.fn, d, ty_dec, "v", "v");
    if (d->recursive)
        qg_sb_puts(g->sb, "    qrpc_reader_leave(r);\n");
    qg_sb_puts(g->sb, "    return 0;\n");
    if (ty_body_has(&t, "goto fail;")) {
        qg_sb_puts(g->sb, "\nfail:\n");
        if (d->recursive)
            qg_sb_puts(g->sb, "    qrpc_reader_leave(r);\n");
        if (owns)
            qg_sb_printf(g->sb, "    %s_free(v);\n", n);
        else
            qg_sb_puts(g->sb, "    memset(v, 0, sizeof *v);\n");
        qg_sb_puts(g->sb, "    return rc;\n");
    }
    ty_end(g, &t, qg_printf(g->p, "int %s_decode(qrpc_reader *r, %s *v)", n, n), NULL);

    /* free */
    ty_begin(g, &t);
    qg_sb_puts(g->sb, "    if (v == NULL)\n        return;\n");
    if (owns)
        ty_members(g, &t.fn, d, ty_free, "v", "v");
    qg_sb_puts(g->sb, "    memset(v, 0, sizeof *v);\n");
    ty_end(g, &t, qg_printf(g->p, "void %s_free(%s *v)", n, n), NULL);

    /* copy */
    ty_begin(g, &t);
    if (!owns) {
        qg_sb_puts(g->sb, "    memcpy(dst, src, sizeof *dst);\n    return 0;\n");
    } else {
        qg_sb_puts(g->sb, "    memset(dst, 0, sizeof *dst);\n");
        if (d->kind == QG_D_UNION)
            qg_sb_printf(g->sb, "    dst->%s = src->%s;\n", d->disc_name, d->disc_name);
        ty_members(g, &t.fn, d, ty_copy, "dst", "src");
        qg_sb_puts(g->sb, "    return 0;\n");
        if (ty_body_has(&t, "goto fail;"))
            qg_sb_printf(g->sb, "\nfail:\n    %s_free(dst);\n    return rc;\n", n);
    }
    ty_end(g, &t, qg_printf(g->p, "int %s_copy(%s *dst, const %s *src)", n, n, n), NULL);

    /* equal */
    ty_begin(g, &t);
    if (d->kind == QG_D_UNION)
        qg_sb_printf(g->sb, "    if (a->%s != b->%s)\n        return false;\n",
                     d->disc_name, d->disc_name);
    ty_members(g, &t.fn, d, ty_eq, "a", "b");
    qg_sb_puts(g->sb, "    return true;\n");
    ty_end(g, &t, qg_printf(g->p, "bool %s_equal(const %s *a, const %s *b)", n, n, n), NULL);
}

/* ---- anonymous list<> and optional<> ------------------------------------------- */

static bool ty_is_plain_scalar(const qg_type *t)
{
    return t->kind >= QG_T_I8 && t->kind <= QG_T_F64;
}

static void ty_list(gen_ctx *g, const qg_type *lt)
{
    const char *n = qg_cname_list(g->p, g->f, lt);
    const qg_type *e = lt->elem;
    bool owns = gen_owns(e);
    ty_fn t;

    ty_begin(g, &t);
    qg_sb_puts(g->sb, "    rc = qrpc_put_count(b, v->len, bound);\n    if (rc != 0)\n        return rc;\n");
    if (e->kind == QG_T_U8 || e->kind == QG_T_I8) {
        qg_sb_puts(g->sb, "    return qrpc_put_raw(b, v->items, v->len);\n");
    } else {
        qg_sb_puts(g->sb, "    for (i = 0; i < v->len; i++) {\n");
        gen_emit_encode(g, &t.fn, e, 0, "v->items[i]", "        ");
        qg_sb_puts(g->sb, "    }\n    return 0;\n");
    }
    ty_end(g, &t, qg_printf(g->p, "int %s_encode(qrpc_buf *b, const %s *v, uint64_t bound)", n, n),
           NULL);

    ty_begin(g, &t);
    qg_sb_printf(g->sb,
                 "    v->items = NULL;\n    v->len = 0;\n"
                 "    rc = qrpc_get_count(r, &n, bound, %u);\n"
                 "    if (rc != 0 || n == 0)\n        return rc;\n"
                 "    v->items = calloc(n, sizeof *v->items);\n"
                 "    if (v->items == NULL)\n        return QRPC_ENOMEM;\n"
                 "    v->len = n;\n", (unsigned)gen_min_size(e, 0));
    if (e->kind == QG_T_U8 || e->kind == QG_T_I8) {
        qg_sb_puts(g->sb, "    rc = qrpc_get_raw(r, v->items, n);\n    if (rc != 0)\n        goto fail;\n");
    } else {
        qg_sb_puts(g->sb, "    for (i = 0; i < n; i++) {\n");
        gen_emit_decode(g, &t.fn, e, 0, "v->items[i]", "        ");
        qg_sb_puts(g->sb, "    }\n");
    }
    qg_sb_printf(g->sb, "    return 0;\n\nfail:\n    %s_free(v);\n    return rc;\n", n);
    ty_end(g, &t, qg_printf(g->p, "int %s_decode(qrpc_reader *r, %s *v, uint64_t bound)", n, n),
           "    uint32_t n;\n");

    ty_begin(g, &t);
    qg_sb_puts(g->sb, "    if (v == NULL)\n        return;\n");
    if (owns) {
        qg_sb_puts(g->sb, "    for (i = 0; i < v->len; i++) {\n");
        gen_emit_free(g, &t.fn, e, 0, "v->items[i]", "        ");
        qg_sb_puts(g->sb, "    }\n");
    }
    qg_sb_puts(g->sb, "    free(v->items);\n    v->items = NULL;\n    v->len = 0;\n");
    ty_end(g, &t, qg_printf(g->p, "void %s_free(%s *v)", n, n), NULL);

    ty_begin(g, &t);
    qg_sb_puts(g->sb,
               "    dst->items = NULL;\n    dst->len = 0;\n"
               "    if (src->len == 0)\n        return 0;\n"
               "    dst->items = calloc(src->len, sizeof *dst->items);\n"
               "    if (dst->items == NULL)\n        return QRPC_ENOMEM;\n"
               "    dst->len = src->len;\n");
    if (!owns) {
        qg_sb_puts(g->sb, "    memcpy(dst->items, src->items, src->len * sizeof *dst->items);\n"
                   "    return 0;\n");
    } else {
        qg_sb_puts(g->sb, "    for (i = 0; i < src->len; i++) {\n");
        gen_emit_copy(g, &t.fn, e, 0, "dst->items[i]", "src->items[i]", "        ");
        qg_sb_printf(g->sb, "    }\n    return 0;\n\nfail:\n    %s_free(dst);\n    return rc;\n", n);
    }
    ty_end(g, &t, qg_printf(g->p, "int %s_copy(%s *dst, const %s *src)", n, n, n), NULL);

    ty_begin(g, &t);
    qg_sb_puts(g->sb, "    if (a->len != b->len)\n        return false;\n");
    if (ty_is_plain_scalar(e) && !gen_is_float(e)) {
        qg_sb_puts(g->sb, "    return a->len == 0 ||\n"
                   "           memcmp(a->items, b->items, a->len * sizeof *a->items) == 0;\n");
    } else {
        qg_sb_puts(g->sb, "    for (i = 0; i < a->len; i++) {\n");
        gen_emit_equal(g, &t.fn, e, 0, "a->items[i]", "b->items[i]", "        ");
        qg_sb_puts(g->sb, "    }\n    return true;\n");
    }
    ty_end(g, &t, qg_printf(g->p, "bool %s_equal(const %s *a, const %s *b)", n, n, n), NULL);
}

static void ty_opt(gen_ctx *g, const qg_type *ot)
{
    const char *n = qg_printf(g->p, "%s_%s", g->pkg, qg_cname_tag(g->p, g->f, ot));
    const qg_type *e = ot->elem;
    const char *ct = gen_ctype(g, ot);
    const char *in = gen_ctype(g, e);
    const char *cin = in[strlen(in) - 1] == '*' ? qg_printf(g->p, "%sconst *", in)
                                                 : qg_printf(g->p, "const %s *", in);
    ty_fn t;

    ty_begin(g, &t);
    qg_sb_puts(g->sb, "    rc = qrpc_put_u8(b, v != NULL);\n"
               "    if (rc != 0 || v == NULL)\n        return rc;\n");
    gen_emit_encode(g, &t.fn, e, 0, "(*v)", "    ");
    qg_sb_puts(g->sb, "    return 0;\n");
    ty_end(g, &t, qg_printf(g->p, "int %s_encode(qrpc_buf *b, %sv)", n, cin), NULL);

    ty_begin(g, &t);
    qg_sb_puts(g->sb,
               "    *v = NULL;\n    rc = qrpc_get_present(r, &present);\n"
               "    if (rc != 0 || !present)\n        return rc;\n"
               "    *v = calloc(1, sizeof **v);\n"
               "    if (*v == NULL)\n        return QRPC_ENOMEM;\n");
    gen_emit_decode(g, &t.fn, e, 0, "(**v)", "    ");
    qg_sb_printf(g->sb, "    return 0;\n\nfail:\n    %s_free(v);\n    return rc;\n", n);
    ty_end(g, &t, qg_printf(g->p, "int %s_decode(qrpc_reader *r, %s*v)", n, ct),
           "    bool present;\n");

    ty_begin(g, &t);
    qg_sb_puts(g->sb, "    if (v == NULL || *v == NULL)\n        return;\n");
    gen_emit_free(g, &t.fn, e, 0, "(**v)", "    ");
    qg_sb_puts(g->sb, "    free(*v);\n    *v = NULL;\n");
    ty_end(g, &t, qg_printf(g->p, "void %s_free(%s*v)", n, ct), NULL);

    ty_begin(g, &t);
    qg_sb_puts(g->sb,
               "    *dst = NULL;\n    if (src == NULL)\n        return 0;\n"
               "    *dst = calloc(1, sizeof **dst);\n"
               "    if (*dst == NULL)\n        return QRPC_ENOMEM;\n");
    gen_emit_copy(g, &t.fn, e, 0, "(**dst)", "(*src)", "    ");
    qg_sb_puts(g->sb, "    return 0;\n");
    if (ty_body_has(&t, "goto fail;"))
        qg_sb_printf(g->sb, "\nfail:\n    %s_free(dst);\n    return rc;\n", n);
    ty_end(g, &t, qg_printf(g->p, "int %s_copy(%s*dst, %ssrc)", n, ct, cin), NULL);

    ty_begin(g, &t);
    qg_sb_puts(g->sb, "    if (a == NULL || b == NULL)\n        return a == b;\n");
    gen_emit_equal(g, &t.fn, e, 0, "(*a)", "(*b)", "    ");
    qg_sb_puts(g->sb, "    return true;\n");
    ty_end(g, &t, qg_printf(g->p, "bool %s_equal(%sa, %sb)", n, cin, cin), NULL);
}

/* ---- services ---------------------------------------------------------------- */

static void ty_service(gen_ctx *g, const qg_decl *svc)
{
    const char *sn = qg_cname_decl(g->p, svc);
    const qg_method *m;
    size_t count = 0;

    qg_sb_printf(g->sb, "\nstatic const qrpc_method_desc %s_methods[] = {\n", sn);
    for (m = svc->methods; m != NULL; m = m->next) {
        const char *flags = m->idempotent && m->oneway
                                ? "QRPC_METHOD_IDEMPOTENT | QRPC_METHOD_ONEWAY"
                                : m->idempotent ? "QRPC_METHOD_IDEMPOTENT"
                                : m->oneway ? "QRPC_METHOD_ONEWAY" : "0";

        qg_sb_printf(g->sb, "    { %s_ID, \"%s\", %s },\n", qg_cname_method(g->p, svc, m),
                     m->name, flags);
        count++;
    }
    qg_sb_printf(g->sb, "};\n\nconst qrpc_service_desc %s_desc = {\n"
                 "    \"%s.%s\", %u, %s_methods, %zu\n};\n",
                 sn, g->pkg, svc->name, (unsigned)svc->version, sn, count);

    for (m = svc->methods; m != NULL; m = m->next) {
        const char *mn = qg_cname_method(g->p, svc, m);
        const qg_param *pa;
        ty_fn t;

        if (!gen_method_has_reply(m))
            continue;
        ty_begin(g, &t);
        qg_sb_puts(g->sb, "    if (v == NULL)\n        return;\n");
        if (m->result->kind != QG_T_VOID)
            gen_emit_free(g, &t.fn, m->result, 0, "v->result", "    ");
        for (pa = m->params; pa != NULL; pa = pa->next)
            if (pa->dir != QG_IN)
                gen_emit_free(g, &t.fn, pa->f.type, 0,
                              qg_printf(g->p, "v->%s", pa->f.name), "    ");
        qg_sb_puts(g->sb, "    memset(v, 0, sizeof *v);\n");
        ty_end(g, &t, qg_printf(g->p, "void %s_reply_free(%s_reply *v)", mn, mn), NULL);
    }
}

void qg_gen_types(gen_ctx *g);

void qg_gen_types(gen_ctx *g)
{
    qg_decl *d;
    size_t i;

    gen_banner(g, "_types.c", qg_printf(g->p, "Encode, decode, free, copy and equal for the types "
                                        "of package %s,\n * and its service descriptors.",
                                        g->pkg));
    qg_sb_printf(g->sb, "\n#include <stdlib.h>\n#include <string.h>\n\n#include \"%s.h\"\n",
                 g->base);
    for (d = g->f->decls; d != NULL; d = d->next) {
        if (d->kind == QG_D_ENUM)
            ty_enum(g, d);
        else if (gen_is_type_decl(d))
            ty_aggregate(g, d);
    }
    for (i = 0; i < g->lists.n; i++)
        ty_list(g, g->lists.items[i]);
    for (i = 0; i < g->opts.n; i++)
        ty_opt(g, g->opts.items[i]);
    for (d = g->f->decls; d != NULL; d = d->next)
        if (d->kind == QG_D_SERVICE)
            ty_service(g, d);
}
