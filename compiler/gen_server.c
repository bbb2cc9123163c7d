/*
 * gen_server.c - the back end that writes BASE_server.c: per method a
 * dispatch function (decode the arguments, call the handler, encode its
 * results) and per service the dispatch table and the _serve function.
 *
 * The runtime calls a dispatch function with the request's argument bytes;
 * it owns nothing after it returns.  Arguments that fail to decode, or that
 * leave bytes over, never reach the handler (QRPC_EDECODE).  A handler
 * that returns a negative value is answered with QRPC_EINTERNAL: a
 * runtime code from inside a handler (say the ETIMEDOUT of a nested call)
 * would tell the caller something false about its own call.
 */
#include <stdlib.h>
#include <string.h>

#include "gen_util.h"

static bool sv_has_in_only(const qg_method *m)
{
    const qg_param *pa;

    for (pa = m->params; pa != NULL; pa = pa->next)
        if (pa->dir == QG_IN)
            return true;
    return false;
}

/*
 * An in-parameter of type bytes is read as a view into the request (no
 * copy, nothing to free): the handler gets it const and for the length of
 * its call, while the request's buffer lives.  Every other value is a
 * copy the dispatcher frees, as the handler may keep nothing of it either.
 */
static bool sv_view(const qg_param *pa)
{
    return pa->dir == QG_IN && pa->f.type->kind == QG_T_BYTES;
}

/* The lvalue where the dispatcher keeps a parameter's value. */
static const char *sv_lvalue(gen_ctx *g, const qg_param *pa)
{
    return qg_printf(g->p, "%s.%s", pa->dir == QG_IN ? "in" : "out", pa->f.name);
}

/* How the handler receives a parameter. */
static const char *sv_handler_arg(gen_ctx *g, const qg_param *pa)
{
    const qg_type *t = pa->f.type;
    const char *lv = sv_lvalue(g, pa);

    if (pa->dir != QG_IN)
        return qg_printf(g->p, "&%s", lv);
    if (gen_by_value(t) || t->kind == QG_T_STRING || t->kind == QG_T_OPTIONAL)
        return lv;
    if (gen_is_array_typedef(t))
        return qg_printf(g->p, "(const %s *)&%s", gen_ctype(g, t), lv);
    return qg_printf(g->p, "&%s", lv);
}

static void sv_reply_encode(gen_ctx *g, const qg_decl *svc, const qg_method *m)
{
    const char *mn = qg_cname_method(g->p, svc, m);
    const qg_param *pa;
    gen_fn fn;

    memset(&fn, 0, sizeof fn);
    qg_sb_printf(g->sb, "\nstatic int %s_reply_encode(qrpc_buf *b, const %s_reply *v)\n{\n"
                 "    int rc;\n\n", mn, mn);
    if (m->result->kind != QG_T_VOID)
        gen_emit_encode(g, &fn, m->result, 0, "v->result", "    ");
    for (pa = m->params; pa != NULL; pa = pa->next)
        if (pa->dir != QG_IN)
            gen_emit_encode(g, &fn, pa->f.type, 0, qg_printf(g->p, "v->%s", pa->f.name), "    ");
    qg_sb_puts(g->sb, "    return 0;\n}\n");
}

static void sv_dispatch(gen_ctx *g, const qg_decl *svc, const qg_method *m)
{
    const char *mn = qg_cname_method(g->p, svc, m);
    const char *sn = qg_cname_decl(g->p, svc);
    bool has_reply = gen_method_has_reply(m);
    const qg_param *pa;
    gen_fn fn;

    memset(&fn, 0, sizeof fn);
    if (has_reply)
        sv_reply_encode(g, svc, m);
    qg_sb_printf(g->sb, "\nstatic int %s_dispatch(qrpc_ctx *ctx, const void *handlers,\n"
                 "        qrpc_reader *r, qrpc_buf *b)\n{\n"
                 "    const %s_handlers *h = handlers;\n", mn, sn);
    if (sv_has_in_only(m)) {
        qg_sb_puts(g->sb, "    struct {\n");
        for (pa = m->params; pa != NULL; pa = pa->next)
            if (pa->dir == QG_IN)
                qg_sb_printf(g->sb, "        %s;\n", gen_cdecl(g, pa->f.type, 0, pa->f.name));
        qg_sb_puts(g->sb, "    } in;\n");
    }
    if (has_reply)
        qg_sb_printf(g->sb, "    %s_reply out;\n", mn);
    qg_sb_puts(g->sb, "    int rc;\n\n");
    if (sv_has_in_only(m))
        qg_sb_puts(g->sb, "    memset(&in, 0, sizeof in);\n");
    if (has_reply)
        qg_sb_puts(g->sb, "    memset(&out, 0, sizeof out);\n");

    g->fail_label = "done";
    for (pa = m->params; pa != NULL; pa = pa->next) {
        if (sv_view(pa))
            gen_emit_decode_view(g, pa->f.type, sv_lvalue(g, pa), "    ");
        else if (pa->dir != QG_OUT)
            gen_emit_decode(g, &fn, pa->f.type, 0, sv_lvalue(g, pa), "    ");
    }
    g->fail_label = "fail";
    qg_sb_printf(g->sb,
                 "    if (qrpc_reader_left(r) != 0) {\n        rc = QRPC_EDECODE;\n"
                 "        goto done;\n    }\n"
                 "    if (h->%s == NULL) {\n        rc = QRPC_ENOMETHOD;\n        goto done;\n    }\n"
                 "    rc = h->%s(ctx", m->name, m->name);
    for (pa = m->params; pa != NULL; pa = pa->next)
        qg_sb_printf(g->sb, ", %s", sv_handler_arg(g, pa));
    if (m->result->kind != QG_T_VOID)
        qg_sb_puts(g->sb, ", &out.result");
    qg_sb_puts(g->sb, ");\n    if (rc < 0)\n        rc = QRPC_EINTERNAL;\n");
    if (has_reply)
        qg_sb_printf(g->sb, "    if (rc == 0)\n        rc = %s_reply_encode(b, &out);\n", mn);
    else
        qg_sb_puts(g->sb, "    (void)b;\n");
    qg_sb_puts(g->sb, "\ndone:\n");
    for (pa = m->params; pa != NULL; pa = pa->next)
        if (pa->dir == QG_IN && !sv_view(pa))
            gen_emit_free(g, &fn, pa->f.type, 0, sv_lvalue(g, pa), "    ");
    if (has_reply)
        qg_sb_printf(g->sb, "    %s_reply_free(&out);\n", mn);
    qg_sb_puts(g->sb, "    return rc;\n}\n");
}

void qg_gen_server(gen_ctx *g);

void qg_gen_server(gen_ctx *g)
{
    qg_decl *d;
    const qg_method *m;

    gen_banner(g, "_server.c", qg_printf(g->p, "Server dispatchers of the services of package %s.",
                                         g->pkg));
    qg_sb_printf(g->sb, "\n#include <stdlib.h>\n#include <string.h>\n\n#include \"%s.h\"\n",
                 g->base);
    for (d = g->f->decls; d != NULL; d = d->next) {
        const char *sn;

        if (d->kind != QG_D_SERVICE)
            continue;
        sn = qg_cname_decl(g->p, d);
        for (m = d->methods; m != NULL; m = m->next) {
            qg_sb_printf(g->sb, "\n/* ---- %s.%s ---- */\n", d->name, m->name);
            sv_dispatch(g, d, m);
        }
        qg_sb_printf(g->sb, "\nstatic const qrpc_dispatch_fn %s_dispatch[] = {\n", sn);
        for (m = d->methods; m != NULL; m = m->next)
            qg_sb_printf(g->sb, "    %s_dispatch,\n", qg_cname_method(g->p, d, m));
        qg_sb_printf(g->sb, "};\n\nint %s_serve(qrpc_node *node, const %s_handlers *handlers, "
                     "void *state)\n{\n"
                     "    return qrpc_serve(node, &%s_desc, %s_dispatch, handlers, state);\n}\n",
                     sn, sn, sn, sn);
    }
}
