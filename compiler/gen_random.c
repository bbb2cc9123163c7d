/*
 * gen_random.c - the back end that writes BASE_random.c (qrpcgen --random):
 * for every type a function that fills a value with pseudo-random content
 * from a caller-held seed, for property tests (encode, decode, compare) and
 * fuzz seed corpora.
 *
 * Values are valid: strings have no NUL and respect their bound, enums and
 * union tags take declared values (or, for a default arm, one no label
 * names), lists and optionals stop at depth 3 so recursive types end.
 * Integers come out at their extremes (0, -1, minimum, maximum) often.
 */
#include <stdlib.h>
#include <string.h>

#include "gen_util.h"

/* The static helpers, each emitted only when the generated code calls it. */
static const struct rnd_helper {
    const char *name;
    const char *text;
} rnd_helpers[] = {
    { "random_u64(",
    "/* xorshift64*, with the edge values of every integer width mixed in. */\n"
    "static uint64_t random_u64(uint64_t *seed)\n"
    "{\n"
    "    uint64_t x = *seed ? *seed : UINT64_C(0x9E3779B97F4A7C15);\n"
    "\n"
    "    x ^= x >> 12;\n"
    "    x ^= x << 25;\n"
    "    x ^= x >> 27;\n"
    "    *seed = x;\n"
    "    x *= UINT64_C(0x2545F4914F6CDD1D);\n"
    "    switch (x & 31) {\n"
    "    case 0: return 0;\n"
    "    case 1: return UINT64_MAX;\n"
    "    case 2: return UINT64_C(1) << 63;\n"
    "    case 3: return INT64_MAX;\n"
    "    case 4: return UINT64_C(0x80000000);\n"
    "    case 5: return UINT64_C(0x7FFFFFFF);\n"
    "    case 6: return UINT64_C(0x8000);\n"
    "    case 7: return UINT64_C(0x80);\n"
    "    default: return x >> 5 ^ x << 59;\n"
    "    }\n"
    "}\n" },
    { "random_f32(",
    "static float random_f32(uint64_t *seed)\n"
    "{\n"
    "    uint32_t bits = (uint32_t)random_u64(seed);\n"
    "    float f;\n"
    "\n"
    "    memcpy(&f, &bits, sizeof f);\n"
    "    return f;\n"
    "}\n" },
    { "random_f64(",
    "static double random_f64(uint64_t *seed)\n"
    "{\n"
    "    uint64_t bits = random_u64(seed);\n"
    "    double d;\n"
    "\n"
    "    memcpy(&d, &bits, sizeof d);\n"
    "    return d;\n"
    "}\n" },
    { "random_string(",
    "/* Up to 16 bytes (fewer if bound says so), none of them NUL. */\n"
    "static int random_string(char **out, uint64_t *seed, uint64_t bound)\n"
    "{\n"
    "    size_t n = (size_t)(random_u64(seed) % 17);\n"
    "    size_t i;\n"
    "\n"
    "    if (bound != 0 && n > bound)\n"
    "        n = (size_t)bound;\n"
    "    *out = malloc(n + 1);\n"
    "    if (*out == NULL)\n"
    "        return QRPC_ENOMEM;\n"
    "    for (i = 0; i < n; i++)\n"
    "        (*out)[i] = (char)(1 + random_u64(seed) % 255);\n"
    "    (*out)[n] = '\\0';\n"
    "    return 0;\n"
    "}\n" },
    { "random_bytes(",
    "static int random_bytes(qrpc_bytes *out, uint64_t *seed, uint64_t bound)\n"
    "{\n"
    "    size_t n = (size_t)(random_u64(seed) % 33);\n"
    "    size_t i;\n"
    "\n"
    "    if (bound != 0 && n > bound)\n"
    "        n = (size_t)bound;\n"
    "    out->data = NULL;\n"
    "    out->len = 0;\n"
    "    if (n == 0)\n"
    "        return 0;\n"
    "    out->data = malloc(n);\n"
    "    if (out->data == NULL)\n"
    "        return QRPC_ENOMEM;\n"
    "    out->len = n;\n"
    "    for (i = 0; i < n; i++)\n"
    "        out->data[i] = (uint8_t)random_u64(seed);\n"
    "    return 0;\n"
    "}\n" },
};

/* Writes the function with its locals, as gen_types.c does. */
static void rnd_function(gen_ctx *g, const char *sig, qg_strbuf *body, const char *extra)
{
    qg_sb_printf(g->sb, "\n%s\n{\n", sig);
    if (extra != NULL)
        qg_sb_puts(g->sb, extra);
    if (body->data != NULL && strstr(body->data, "for (i = 0;") != NULL)
        qg_sb_puts(g->sb, "    size_t i;\n");
    if (body->data != NULL && strstr(body->data, "rc = ") != NULL)
        qg_sb_puts(g->sb, "    int rc;\n");
    qg_sb_puts(g->sb, "\n");
    if (body->data != NULL)
        qg_sb_puts(g->sb, body->data);
    qg_sb_puts(g->sb, "}\n");
}

static bool rnd_has(const qg_strbuf *sb, const char *s)
{
    return sb->data != NULL && strstr(sb->data, s) != NULL;
}

static bool rnd_label_taken(const qg_decl *u, int64_t v)
{
    const qg_arm *arm;
    const qg_case *c;

    for (arm = u->arms; arm != NULL; arm = arm->next)
        for (c = arm->labels; c != NULL; c = c->next)
            if (c->val == v)
                return true;
    return false;
}

/* A discriminant value for the default arm that no label names, if any. */
static bool rnd_default_value(const qg_decl *u, int64_t *out)
{
    const qg_type *dt = gen_resolve(u->disc_type);
    int64_t v;

    if (dt->kind == QG_T_NAMED && dt->ref->kind == QG_D_ENUM) {
        const qg_decl *m;

        for (m = dt->ref->members; m != NULL; m = m->next)
            if (!rnd_label_taken(u, m->ival)) {
                *out = m->ival;
                return true;
            }
        return false;
    }
    for (v = 0; v < (dt->kind == QG_T_BOOL ? 2 : 1024); v++)
        if (!rnd_label_taken(u, v)) {
            *out = v;
            return true;
        }
    return false;
}

static void rnd_decl(gen_ctx *g, const qg_decl *d)
{
    const char *n = qg_cname_decl(g->p, d);
    qg_strbuf body;
    qg_strbuf *out = g->sb;
    gen_fn fn;
    const qg_field *fd;
    const qg_arm *arm;
    qg_type self;

    memset(&fn, 0, sizeof fn);
    memset(&self, 0, sizeof self);
    self.kind = QG_T_NAMED;
    self.ref = (qg_decl *)d;
    qg_sb_init(&body);
    g->sb = &body;
    if (d->kind == QG_D_ENUM) {
        const qg_decl *m;
        size_t count = 0;

        qg_sb_puts(g->sb, "    static const int32_t values[] = {");
        for (m = d->members; m != NULL; m = m->next, count++)
            qg_sb_printf(g->sb, "%s %lld", count ? "," : "", (long long)m->ival);
        qg_sb_printf(g->sb, " };\n\n    (void)depth;\n"
                     "    *v = (%s)values[random_u64(seed) %% %zu];\n    return 0;\n", n, count);
        g->sb = out;
        rnd_function(g, qg_printf(g->p, "int %s_random(%s *v, uint64_t *seed, unsigned depth)",
                                  n, n), &body, NULL);
        qg_sb_free(&body);
        return;
    }
    qg_sb_puts(g->sb, "    memset(v, 0, sizeof *v);\n");
    switch (d->kind) {
    case QG_D_TYPEDEF:
        gen_emit_random(g, &fn, d->tdef->type, d->tdef->array_val, "(*v)", "    ");
        break;
    case QG_D_STRUCT:
        for (fd = d->fields; fd != NULL; fd = fd->next)
            gen_emit_random(g, &fn, fd->type, fd->array_val,
                            qg_printf(g->p, "v->%s", fd->name), "    ");
        break;
    case QG_D_UNION: {
        size_t choices = 0, k = 0;
        int64_t dv = 0;
        bool has_default = false;
        const qg_case *c;

        for (arm = d->arms; arm != NULL; arm = arm->next) {
            for (c = arm->labels; c != NULL; c = c->next)
                choices++;
            if (arm->is_default && rnd_default_value(d, &dv)) {
                has_default = true;
                choices++;
            }
        }
        qg_sb_printf(g->sb, "    switch (random_u64(seed) %% %zu) {\n", choices);
        for (arm = d->arms; arm != NULL; arm = arm->next) {
            bool is_default = arm->is_default;

            if (is_default && !has_default)
                continue;
            for (c = arm->labels; c != NULL || is_default; c = c ? c->next : NULL) {
                int64_t val = c != NULL ? c->val : dv;

                if (++k == choices)
                    qg_sb_puts(g->sb, "    default:\n");
                else
                    qg_sb_printf(g->sb, "    case %zu:\n", k - 1);
                qg_sb_printf(g->sb, "        v->%s = %s;\n", d->disc_name,
                             gen_disc_value(g, d, val));
                if (arm->field != NULL)
                    gen_emit_random(g, &fn, arm->field->type, arm->field->array_val,
                                    qg_printf(g->p, "v->%s", arm->field->name), "        ");
                qg_sb_puts(g->sb, "        break;\n");
                if (c == NULL)
                    break;
            }
        }
        qg_sb_puts(g->sb, "    }\n");
        break;
    }
    default:
        break;
    }
    qg_sb_puts(g->sb, "    return 0;\n");
    if (rnd_has(&body, "goto fail;"))
        qg_sb_printf(g->sb, "\nfail:\n    %s_free(v);\n    return rc;\n", n);
    g->sb = out;
    rnd_function(g, qg_printf(g->p, "int %s_random(%s *v, uint64_t *seed, unsigned depth)", n, n),
                 &body, rnd_has(&body, "depth") ? NULL : "    (void)depth;\n");
    qg_sb_free(&body);
}

static void rnd_list(gen_ctx *g, const qg_type *lt, bool proto)
{
    const char *n = qg_cname_list(g->p, g->f, lt);
    const char *sig = qg_printf(g->p, "static int %s_random(%s *v, uint64_t *seed, unsigned depth, "
                                "uint64_t bound)", n, n);
    qg_strbuf body;
    qg_strbuf *out = g->sb;
    gen_fn fn;

    if (proto) {
        qg_sb_printf(g->sb, "%s;\n", sig);
        return;
    }
    memset(&fn, 0, sizeof fn);
    qg_sb_init(&body);
    g->sb = &body;
    qg_sb_puts(g->sb,
               "    v->items = NULL;\n    v->len = 0;\n"
               "    if (depth >= 3)\n        return 0;\n"
               "    n = (size_t)(random_u64(seed) % 4);\n"
               "    if (bound != 0 && n > bound)\n        n = (size_t)bound;\n"
               "    if (n == 0)\n        return 0;\n"
               "    v->items = calloc(n, sizeof *v->items);\n"
               "    if (v->items == NULL)\n        return QRPC_ENOMEM;\n"
               "    v->len = n;\n    depth++;\n"
               "    for (i = 0; i < n; i++) {\n");
    gen_emit_random(g, &fn, lt->elem, 0, "v->items[i]", "        ");
    qg_sb_puts(g->sb, "    }\n    return 0;\n");
    if (rnd_has(&body, "goto fail;"))
        qg_sb_printf(g->sb, "\nfail:\n    %s_free(v);\n    return rc;\n", n);
    g->sb = out;
    rnd_function(g, sig, &body, "    size_t n;\n");
    qg_sb_free(&body);
}

static void rnd_opt(gen_ctx *g, const qg_type *ot, bool proto)
{
    const char *n = qg_printf(g->p, "%s_%s", g->pkg, qg_cname_tag(g->p, g->f, ot));
    const char *sig = qg_printf(g->p, "static int %s_random(%s*v, uint64_t *seed, unsigned depth)",
                                n, gen_ctype(g, ot));
    qg_strbuf body;
    qg_strbuf *out = g->sb;
    gen_fn fn;

    if (proto) {
        qg_sb_printf(g->sb, "%s;\n", sig);
        return;
    }
    memset(&fn, 0, sizeof fn);
    qg_sb_init(&body);
    g->sb = &body;
    qg_sb_puts(g->sb,
               "    *v = NULL;\n"
               "    if (depth >= 3 || random_u64(seed) % 3 == 0)\n        return 0;\n"
               "    *v = calloc(1, sizeof **v);\n"
               "    if (*v == NULL)\n        return QRPC_ENOMEM;\n"
               "    depth++;\n");
    gen_emit_random(g, &fn, ot->elem, 0, "(**v)", "    ");
    qg_sb_puts(g->sb, "    return 0;\n");
    if (rnd_has(&body, "goto fail;"))
        qg_sb_printf(g->sb, "\nfail:\n    %s_free(v);\n    return rc;\n", n);
    g->sb = out;
    rnd_function(g, sig, &body, NULL);
    qg_sb_free(&body);
}

/*
 * Anonymous types used only by method parameters get no generator: the
 * static function would be unused.  Keeps those that some type reaches.
 */
static void rnd_reach(gen_ctx *g, const qg_type *t, gen_types *keep)
{
    const char *tag;
    size_t i;

    if (t == NULL || (t->kind != QG_T_LIST && t->kind != QG_T_OPTIONAL))
        return;
    rnd_reach(g, t->elem, keep);
    tag = qg_cname_tag(g->p, g->f, t);
    for (i = 0; i < keep->n; i++)
        if (strcmp(qg_cname_tag(g->p, g->f, keep->items[i]), tag) == 0)
            return;
    if (keep->n == keep->cap) {
        keep->cap = keep->cap ? keep->cap * 2 : 16;
        keep->items = realloc(keep->items, keep->cap * sizeof *keep->items);
        if (keep->items == NULL)
            abort();
    }
    keep->items[keep->n++] = t;
}

static void rnd_filter(gen_ctx *g)
{
    gen_types keep = { NULL, 0, 0 };
    const qg_decl *d;
    const qg_field *fd;
    const qg_arm *arm;
    size_t i, j, n;

    for (d = g->f->decls; d != NULL; d = d->next) {
        if (d->kind == QG_D_TYPEDEF)
            rnd_reach(g, d->tdef->type, &keep);
        for (fd = d->kind == QG_D_STRUCT ? d->fields : NULL; fd != NULL; fd = fd->next)
            rnd_reach(g, fd->type, &keep);
        for (arm = d->kind == QG_D_UNION ? d->arms : NULL; arm != NULL; arm = arm->next)
            if (arm->field != NULL)
                rnd_reach(g, arm->field->type, &keep);
    }
    /* keep g's order (deterministic, elements first) */
    for (n = 0, i = 0; i < g->lists.n; i++)
        for (j = 0; j < keep.n; j++)
            if (keep.items[j] == g->lists.items[i] ||
                strcmp(qg_cname_tag(g->p, g->f, keep.items[j]),
                       qg_cname_tag(g->p, g->f, g->lists.items[i])) == 0) {
                g->lists.items[n++] = g->lists.items[i];
                break;
            }
    g->lists.n = n;
    for (n = 0, i = 0; i < g->opts.n; i++)
        for (j = 0; j < keep.n; j++)
            if (strcmp(qg_cname_tag(g->p, g->f, keep.items[j]),
                       qg_cname_tag(g->p, g->f, g->opts.items[i])) == 0) {
                g->opts.items[n++] = g->opts.items[i];
                break;
            }
    g->opts.n = n;
    free(keep.items);
}

void qg_gen_random(gen_ctx *g);

void qg_gen_random(gen_ctx *g)
{
    bool want[sizeof rnd_helpers / sizeof rnd_helpers[0]];
    qg_strbuf body;
    qg_strbuf *out;
    qg_decl *d;
    size_t i;

    gen_banner(g, "_random.c", qg_printf(g->p, "Random values of the types of package %s, "
                                         "for property tests.", g->pkg));
    qg_sb_printf(g->sb, "\n#include <stdlib.h>\n#include <string.h>\n\n#include \"%s.h\"\n",
                 g->base);
    rnd_filter(g);
    out = g->sb;
    qg_sb_init(&body);
    g->sb = &body;
    if (g->lists.n + g->opts.n != 0) {
        qg_sb_puts(g->sb, "\n");
        for (i = 0; i < g->lists.n; i++)
            rnd_list(g, g->lists.items[i], true);
        for (i = 0; i < g->opts.n; i++)
            rnd_opt(g, g->opts.items[i], true);
    }
    for (d = g->f->decls; d != NULL; d = d->next)
        if (gen_is_type_decl(d))
            rnd_decl(g, d);
    for (i = 0; i < g->lists.n; i++)
        rnd_list(g, g->lists.items[i], false);
    for (i = 0; i < g->opts.n; i++)
        rnd_opt(g, g->opts.items[i], false);
    g->sb = out;
    /* random_u64 (entry 0) is used by the others, so it is wanted when any is */
    for (i = 1; i < sizeof rnd_helpers / sizeof rnd_helpers[0]; i++)
        want[i] = body.data != NULL && strstr(body.data, rnd_helpers[i].name) != NULL;
    want[0] = want[1] || want[2] || want[3] || want[4] ||
              (body.data != NULL && strstr(body.data, rnd_helpers[0].name) != NULL);
    for (i = 0; i < sizeof rnd_helpers / sizeof rnd_helpers[0]; i++)
        if (want[i])
            qg_sb_printf(g->sb, "\n%s", rnd_helpers[i].text);
    if (body.data != NULL)
        qg_sb_puts(g->sb, body.data);
    qg_sb_free(&body);
}
