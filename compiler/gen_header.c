/*
 * gen_header.c - the back end that writes BASE.h: constants, types, the
 * prototypes of every generated function, the client stubs and the server's
 * handler table.
 *
 * .qidl declarations may come in any order, C definitions may not: a
 * struct must follow the types it holds by value.  So every struct, union
 * and list type is declared up front ("typedef struct x x;"), enums come
 * next, and the rest is defined in a depth-first walk that defines what a
 * definition needs complete before it.  Sema rejects by-value cycles, so
 * the walk ends.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "gen_util.h"

typedef struct hdr_state {
    gen_ctx *g;
    /* definition state of anonymous list types, parallel to g->lists */
    int *list_state;
} hdr_state;

static void hdr_need(hdr_state *h, const qg_type *t, bool complete);

static size_t hdr_list_index(hdr_state *h, const qg_type *t)
{
    const char *name = qg_cname_list(h->g->p, h->g->f, t);
    size_t i;

    for (i = 0; i < h->g->lists.n; i++)
        if (strcmp(qg_cname_list(h->g->p, h->g->f, h->g->lists.items[i]), name) == 0)
            return i;
    return 0;                   /* not reached: every list was collected */
}

static void hdr_field(hdr_state *h, const qg_field *fd, const char *ind)
{
    gen_doc(h->g, fd->doc, ind);
    qg_sb_printf(h->g->sb, "%s%s;\n", ind,
                 gen_cdecl(h->g, fd->type, fd->array_val, fd->name));
}

static void hdr_define_list(hdr_state *h, const qg_type *t)
{
    size_t i = hdr_list_index(h, t);
    gen_ctx *g = h->g;
    const char *name;

    if (h->list_state[i] != 0)
        return;
    h->list_state[i] = 1;
    hdr_need(h, t->elem, false);
    name = qg_cname_list(g->p, g->f, t);
    qg_sb_printf(g->sb, "\n/* list<%s> */\nstruct %s {\n    %s;\n    size_t len;\n};\n",
                 qg_cname_tag(g->p, g->f, t->elem), name,
                 gen_cdecl(g, t->elem, 0, "*items"));
    h->list_state[i] = 2;
}

static void hdr_define_decl(hdr_state *h, qg_decl *d)
{
    gen_ctx *g = h->g;
    const char *name;
    const qg_field *fd;
    const qg_arm *arm;
    bool any_arm = false;

    if (d->state == 3 || d->state == 4)
        return;
    d->state = 3;               /* 3: being defined, 4: defined (sema used 0-2) */
    name = qg_cname_decl(g->p, d);
    switch (d->kind) {
    case QG_D_TYPEDEF:
        hdr_need(h, d->tdef->type, d->tdef->array_val != 0);
        qg_sb_puts(g->sb, "\n");
        gen_doc(g, d->doc, "");
        qg_sb_printf(g->sb, "typedef %s;\n",
                     gen_cdecl(g, d->tdef->type, d->tdef->array_val, name));
        break;
    case QG_D_STRUCT:
        for (fd = d->fields; fd != NULL; fd = fd->next)
            hdr_need(h, fd->type, true);
        qg_sb_puts(g->sb, "\n");
        gen_doc(g, d->doc, "");
        qg_sb_printf(g->sb, "struct %s {\n", name);
        for (fd = d->fields; fd != NULL; fd = fd->next)
            hdr_field(h, fd, "    ");
        qg_sb_puts(g->sb, "};\n");
        break;
    case QG_D_UNION:
        for (arm = d->arms; arm != NULL; arm = arm->next)
            if (arm->field != NULL)
                hdr_need(h, arm->field->type, true);
        qg_sb_puts(g->sb, "\n");
        gen_doc(g, d->doc, "");
        qg_sb_printf(g->sb, "struct %s {\n    %s;\n", name,
                     gen_cdecl(g, d->disc_type, 0, d->disc_name));
        for (arm = d->arms; arm != NULL; arm = arm->next)
            any_arm |= arm->field != NULL;
        if (any_arm) {
            qg_sb_puts(g->sb, "    union {\n");
            for (arm = d->arms; arm != NULL; arm = arm->next)
                if (arm->field != NULL)
                    hdr_field(h, arm->field, "        ");
            qg_sb_puts(g->sb, "    };\n");
        }
        qg_sb_puts(g->sb, "};\n");
        break;
    default:
        break;
    }
    d->state = 4;
}

/*
 * Makes sure t can be used: declared (enough for a pointer) or complete
 * (enough for a value).  Forward declarations cover structs, unions and
 * lists; typedefs have to be defined to be declared at all.
 */
static void hdr_need(hdr_state *h, const qg_type *t, bool complete)
{
    switch (t->kind) {
    case QG_T_LIST:
        if (complete)
            hdr_define_list(h, t);
        break;
    case QG_T_OPTIONAL:
        hdr_need(h, t->elem, false);
        break;
    case QG_T_NAMED:
        if (t->ref->file != h->g->f)
            break;              /* defined by the imported header */
        if (t->ref->kind == QG_D_TYPEDEF) {
            hdr_define_decl(h, t->ref);
            if (complete)
                hdr_need(h, t->ref->tdef->type, true);
        } else if (complete) {
            hdr_define_decl(h, t->ref);
        }
        break;
    default:
        break;
    }
}

static const char *hdr_const_value(gen_ctx *g, const qg_decl *d)
{
    switch (d->const_type->kind) {
    case QG_T_U8: case QG_T_U16: case QG_T_U32:
        return qg_printf(g->p, "UINT32_C(%llu)", (unsigned long long)d->uval);
    case QG_T_U64:
        return qg_printf(g->p, "UINT64_C(%llu)", (unsigned long long)d->uval);
    default:
        break;
    }
    {
        const char *mac = d->const_type->kind == QG_T_I64 ? "INT64_C" : "INT32_C";

        if (d->ival >= 0)
            return qg_printf(g->p, "%s(%lld)", mac, (long long)d->ival);
        if (d->ival == INT64_MIN)
            return "(-INT64_C(9223372036854775807) - 1)";
        if (d->ival == INT32_MIN && d->const_type->kind != QG_T_I64)
            return "(-INT32_C(2147483647) - 1)";
        return qg_printf(g->p, "(-%s(%lld))", mac, -(long long)d->ival);
    }
}

static void hdr_type_protos(gen_ctx *g, const qg_decl *d)
{
    const char *n = qg_cname_decl(g->p, d);

    qg_sb_printf(g->sb, "\n/* %s %s */\n", qg_kind_word(d), n);
    if (d->kind == QG_D_ENUM) {
        qg_sb_printf(g->sb, "bool %s_valid(int32_t v);\n", n);
        qg_sb_printf(g->sb, "const char *%s_name(%s v);\n", n, n);
    }
    qg_sb_printf(g->sb, "int %s_encode(qrpc_buf *b, const %s *v);\n", n, n);
    qg_sb_printf(g->sb, "int %s_decode(qrpc_reader *r, %s *v);\n", n, n);
    if (d->kind == QG_D_ENUM)
        return;
    qg_sb_printf(g->sb, "void %s_free(%s *v);\n", n, n);
    qg_sb_printf(g->sb, "int %s_copy(%s *dst, const %s *src);\n", n, n, n);
    qg_sb_printf(g->sb, "bool %s_equal(const %s *a, const %s *b);\n", n, n, n);
}

static void hdr_anon_protos(gen_ctx *g)
{
    size_t i;

    if (g->lists.n == 0 && g->opts.n == 0)
        return;
    qg_sb_puts(g->sb, "\n/*\n * Anonymous list<> and optional<> types.  The list functions take the\n"
               " * declared bound (0: unbounded); an optional is a pointer, NULL when absent.\n */\n");
    for (i = 0; i < g->lists.n; i++) {
        const char *n = qg_cname_list(g->p, g->f, g->lists.items[i]);

        qg_sb_printf(g->sb, "int %s_encode(qrpc_buf *b, const %s *v, uint64_t bound);\n", n, n);
        qg_sb_printf(g->sb, "int %s_decode(qrpc_reader *r, %s *v, uint64_t bound);\n", n, n);
        qg_sb_printf(g->sb, "void %s_free(%s *v);\n", n, n);
        qg_sb_printf(g->sb, "int %s_copy(%s *dst, const %s *src);\n", n, n, n);
        qg_sb_printf(g->sb, "bool %s_equal(const %s *a, const %s *b);\n", n, n, n);
    }
    for (i = 0; i < g->opts.n; i++) {
        const qg_type *t = g->opts.items[i];
        const char *n = qg_printf(g->p, "%s_%s", g->pkg, qg_cname_tag(g->p, g->f, t));
        const char *ct = gen_ctype(g, t);
        const char *in = gen_ctype(g, t->elem);
        const char *cin = in[strlen(in) - 1] == '*' ? qg_printf(g->p, "%sconst *", in)
                                                     : qg_printf(g->p, "const %s *", in);

        qg_sb_printf(g->sb, "int %s_encode(qrpc_buf *b, %sv);\n", n, cin);
        qg_sb_printf(g->sb, "int %s_decode(qrpc_reader *r, %s*v);\n", n, ct);
        qg_sb_printf(g->sb, "void %s_free(%s*v);\n", n, ct);
        qg_sb_printf(g->sb, "int %s_copy(%s*dst, %ssrc);\n", n, ct, cin);
        qg_sb_printf(g->sb, "bool %s_equal(%sa, %sb);\n", n, cin, cin);
    }
}

static void hdr_method(gen_ctx *g, const qg_decl *svc, const qg_method *m)
{
    const char *mn = qg_cname_method(g->p, svc, m);
    const qg_param *pa;
    qg_strbuf params;

    qg_sb_init(&params);
    gen_method_params(g, &params, m);
    qg_sb_puts(g->sb, "\n");
    gen_doc(g, m->doc, "");
    qg_sb_printf(g->sb, "/* %s.%s = %u%s%s */\n", svc->name, m->name, (unsigned)m->id,
                 m->idempotent ? ", idempotent" : "", m->oneway ? ", oneway" : "");
    if (gen_method_has_reply(m)) {
        qg_sb_printf(g->sb, "typedef struct %s_reply {\n", mn);
        if (m->result->kind != QG_T_VOID)
            qg_sb_printf(g->sb, "    %s;\n", gen_cdecl(g, m->result, 0, "result"));
        for (pa = m->params; pa != NULL; pa = pa->next)
            if (pa->dir != QG_IN)
                qg_sb_printf(g->sb, "    %s;\n", gen_cdecl(g, pa->f.type, 0, pa->f.name));
        qg_sb_printf(g->sb, "} %s_reply;\n", mn);
        qg_sb_printf(g->sb, "void %s_reply_free(%s_reply *v);\n", mn, mn);
        qg_sb_printf(g->sb, "typedef void (*%s_cb)(int status, %s_reply *reply, void *arg);\n",
                     mn, mn);
    } else {
        qg_sb_printf(g->sb, "typedef void (*%s_cb)(int status, void *arg);\n", mn);
    }
    qg_sb_printf(g->sb, "int %s(qrpc_client *client%s);\n", mn, params.data ? params.data : "");
    qg_sb_printf(g->sb, "int %s_async(qrpc_client *client", mn);
    for (pa = m->params; pa != NULL; pa = pa->next)
        if (pa->dir != QG_OUT)
            qg_sb_printf(g->sb, ", %s", gen_in_param_decl(g, pa));
    qg_sb_printf(g->sb, ", %s_cb cb, void *arg);\n", mn);
    qg_sb_free(&params);
}

static void hdr_service(gen_ctx *g, const qg_decl *svc)
{
    const char *sn = qg_cname_decl(g->p, svc);
    const qg_method *m;

    qg_sb_printf(g->sb, "\n/* ---- service %s.%s version %u ---- */\n\n", g->pkg, svc->name,
                 (unsigned)svc->version);
    gen_doc(g, svc->doc, "");
    qg_sb_printf(g->sb, "extern const qrpc_service_desc %s_desc;\n\n", sn);
    for (m = svc->methods; m != NULL; m = m->next)
        qg_sb_printf(g->sb, "#define %s_ID UINT32_C(%u)\n", qg_cname_method(g->p, svc, m),
                     (unsigned)m->id);
    qg_sb_printf(g->sb,
                 "\n/*\n * Client side (%s_client.c).  Creates a client of %s.%s version %u\n"
                 " * at target (\"local\" for a service of node itself); see qrpc(3).\n */\n",
                 g->base, g->pkg, svc->name, (unsigned)svc->version);
    qg_sb_printf(g->sb, "int %s_connect(qrpc_node *node, const char *target, "
                 "qrpc_client **client);\n", sn);
    for (m = svc->methods; m != NULL; m = m->next)
        hdr_method(g, svc, m);

    qg_sb_printf(g->sb,
                 "\n/*\n * Server side (%s_server.c).  A handler returns 0, or a positive\n"
                 " * application error that its caller receives as the stub's status.\n"
                 " * In parameters belong to the runtime and live until the handler returns\n"
                 " * (bytes point into the request: copy what you keep); results and out\n"
                 " * parameters that own memory are malloc'd by the handler and freed by the\n"
                 " * runtime.  A NULL entry answers QRPC_ENOMETHOD.\n */\n", g->base);
    qg_sb_printf(g->sb, "typedef struct %s_handlers {\n", sn);
    for (m = svc->methods; m != NULL; m = m->next) {
        qg_strbuf params;

        qg_sb_init(&params);
        gen_method_params(g, &params, m);
        qg_sb_printf(g->sb, "    int (*%s)(qrpc_ctx *ctx%s);\n", m->name,
                     params.data ? params.data : "");
        qg_sb_free(&params);
    }
    qg_sb_printf(g->sb, "} %s_handlers;\n\n", sn);
    qg_sb_printf(g->sb, "/* Serves %s.%s on node; handlers and state must outlive it. */\n",
                 g->pkg, svc->name);
    qg_sb_printf(g->sb, "int %s_serve(qrpc_node *node, const %s_handlers *handlers, "
                 "void *state);\n", sn, sn);
}

void qg_gen_header(gen_ctx *g);

void qg_gen_header(gen_ctx *g)
{
    hdr_state h;
    qg_decl *d;
    qg_import *im;
    const char *guard;
    size_t i;
    bool any;

    h.g = g;
    h.list_state = calloc(g->lists.n + 1, sizeof *h.list_state);
    if (h.list_state == NULL)
        abort();
    guard = qg_printf(g->p, "QRPC_GEN_%s_H", g->pkg);
    for (i = 0; guard[i]; i++)
        ((char *)guard)[i] = (char)toupper((unsigned char)guard[i]);

    gen_banner(g, ".h", qg_printf(g->p, "Types, client stubs and server handlers of package %s.",
                                  g->pkg));
    if (g->f->doc != NULL) {
        qg_sb_puts(g->sb, "\n");
        gen_doc(g, g->f->doc, "");
    }
    qg_sb_printf(g->sb, "\n#ifndef %s\n#define %s\n\n", guard, guard);
    qg_sb_puts(g->sb, "#include <stdbool.h>\n#include <stddef.h>\n#include <stdint.h>\n\n"
               "#include <qrpc.h>\n");
    for (im = g->f->imports; im != NULL; im = im->next) {
        size_t n = strlen(im->path);

        qg_sb_printf(g->sb, "#include \"%.*s.h\"\n",
                     (int)(n > 5 ? n - 5 : n), im->path);
    }
    qg_sb_puts(g->sb, "\n#ifdef __cplusplus\nextern \"C\" {\n#endif\n");
    qg_sb_puts(g->sb,
               "\n/*\n"
               " * Ownership: a value that a stub or a decoder returns belongs to the\n"
               " * caller, who releases what it owns with the type's _free function (which\n"
               " * does not free the value itself, and leaves it zeroed).  Strings are\n"
               " * NUL-terminated and malloc'd, a NULL string encodes as \"\", an optional is\n"
               " * a pointer that is NULL when absent, and lists and bytes own their items.\n"
               " * Functions returning int return 0 or a negative QRPC_E* code (qrpc(3)).\n"
               " */\n");

    any = false;
    for (d = g->f->decls; d != NULL; d = d->next) {
        if (d->kind != QG_D_CONST)
            continue;
        if (!any)
            qg_sb_puts(g->sb, "\n/* ---- constants ---- */\n\n");
        any = true;
        gen_doc(g, d->doc, "");
        qg_sb_printf(g->sb, "#define %s %s\n", qg_cname_decl(g->p, d), hdr_const_value(g, d));
    }

    qg_sb_puts(g->sb, "\n/* ---- types ---- */\n\n");
    for (d = g->f->decls; d != NULL; d = d->next)
        if (d->kind == QG_D_STRUCT || d->kind == QG_D_UNION)
            qg_sb_printf(g->sb, "typedef struct %s %s;\n", qg_cname_decl(g->p, d),
                         qg_cname_decl(g->p, d));
    for (i = 0; i < g->lists.n; i++) {
        const char *n = qg_cname_list(g->p, g->f, g->lists.items[i]);

        qg_sb_printf(g->sb, "typedef struct %s %s;\n", n, n);
    }
    for (d = g->f->decls; d != NULL; d = d->next) {
        const qg_decl *m;

        if (d->kind != QG_D_ENUM)
            continue;
        qg_sb_puts(g->sb, "\n");
        gen_doc(g, d->doc, "");
        qg_sb_printf(g->sb, "typedef enum %s {\n", qg_cname_decl(g->p, d));
        for (m = d->members; m != NULL; m = m->next) {
            gen_doc(g, m->doc, "    ");
            qg_sb_printf(g->sb, "    %s = %lld%s\n", qg_cname_member(g->p, m),
                         (long long)m->ival, m->next ? "," : "");
        }
        qg_sb_printf(g->sb, "} %s;\n", qg_cname_decl(g->p, d));
    }
    for (d = g->f->decls; d != NULL; d = d->next)
        if (gen_is_type_decl(d) && d->kind != QG_D_ENUM)
            hdr_define_decl(&h, d);
    for (i = 0; i < g->lists.n; i++)
        hdr_define_list(&h, g->lists.items[i]);

    for (d = g->f->decls; d != NULL; d = d->next)
        if (gen_is_type_decl(d))
            hdr_type_protos(g, d);
    hdr_anon_protos(g);

    for (d = g->f->decls; d != NULL; d = d->next)
        if (d->kind == QG_D_SERVICE)
            hdr_service(g, d);

    any = false;
    for (d = g->f->decls; d != NULL; d = d->next) {
        const char *n;

        if (!gen_is_type_decl(d))
            continue;
        if (!any)
            qg_sb_printf(g->sb, "\n/*\n * Random values for property tests, in %s_random.c "
                         "(qrpcgen --random):\n * seed is the generator's state, depth "
                         "limits recursion.\n */\n", g->base);
        any = true;
        n = qg_cname_decl(g->p, d);
        qg_sb_printf(g->sb, "int %s_random(%s *v, uint64_t *seed, unsigned depth);\n", n, n);
    }

    qg_sb_printf(g->sb, "\n#ifdef __cplusplus\n}\n#endif\n\n#endif /* %s */\n", guard);
    for (d = g->f->decls; d != NULL; d = d->next)
        if (d->state >= 3)
            d->state = 2;
    free(h.list_state);
}
