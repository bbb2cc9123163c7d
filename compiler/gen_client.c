/*
 * gen_client.c - the back end that writes BASE_client.c: per service a
 * connect function, and per method a synchronous stub, an asynchronous one
 * and their static helpers (encode the arguments, decode the reply).
 *
 * A stub checks its pointers, encodes the in and inout parameters into a
 * buffer, calls qrpc_call() and decodes the reply into a NAME_reply struct
 * before touching the caller's out parameters, so that on any error the
 * caller's values are left as they were.
 *
 * When the last parameter encoded is bytes (the usual shape of a bulk
 * call), _put_args writes its length only: the synchronous stub passes
 * the bytes to qrpc_call_tail(), which sends a large one without copying
 * it, and the asynchronous stub appends them (its caller's bytes may be
 * gone before the request is sent).
 */
#include <stdlib.h>
#include <string.h>

#include "gen_util.h"

/* True when the in spelling of t is a pointer to the value ("const X *"). */
static bool cl_in_is_pointer(const qg_type *t)
{
    return !gen_by_value(t) && t->kind != QG_T_STRING && t->kind != QG_T_OPTIONAL;
}

/* The lvalue of an argument inside _put_args, where it has its in spelling. */
static const char *cl_arg_lvalue(gen_ctx *g, const qg_param *pa)
{
    if (cl_in_is_pointer(pa->f.type))
        return qg_printf(g->p, "(*%s)", pa->f.name);
    return pa->f.name;
}

/* What the stub passes to _put_args for a parameter: in as is, inout read. */
static const char *cl_arg_pass(gen_ctx *g, const qg_param *pa)
{
    if (pa->dir == QG_INOUT && !cl_in_is_pointer(pa->f.type))
        return qg_printf(g->p, "*%s", pa->f.name);
    return pa->f.name;
}

/* The last parameter encoded when it is bytes (see the top), else NULL. */
static const qg_param *cl_tail(const qg_method *m)
{
    const qg_param *pa, *last = NULL;

    for (pa = m->params; pa != NULL; pa = pa->next)
        if (pa->dir != QG_OUT)
            last = pa;
    return last != NULL && last->f.type->kind == QG_T_BYTES ? last : NULL;
}

static bool cl_has_args(const qg_method *m)
{
    const qg_param *pa;

    for (pa = m->params; pa != NULL; pa = pa->next)
        if (pa->dir != QG_OUT)
            return true;
    return false;
}

static void cl_put_args(gen_ctx *g, const qg_decl *svc, const qg_method *m)
{
    const char *mn = qg_cname_method(g->p, svc, m);
    const qg_param *pa, *tail = cl_tail(m);
    gen_fn fn;

    memset(&fn, 0, sizeof fn);
    /* "args" is a reserved parameter name, so it cannot clash with one */
    qg_sb_printf(g->sb, "\nstatic int %s_put_args(qrpc_buf *args", mn);
    for (pa = m->params; pa != NULL; pa = pa->next)
        if (pa->dir != QG_OUT)
            qg_sb_printf(g->sb, ", %s", gen_in_param_decl(g, pa));
    qg_sb_puts(g->sb, ")\n{\n");
    if (cl_has_args(m))
        qg_sb_puts(g->sb, "    int rc;\n\n");
    g->buf = "args";
    for (pa = m->params; pa != NULL; pa = pa->next) {
        if (pa == tail)
            gen_emit_encode_head(g, pa->f.type, cl_arg_lvalue(g, pa), "    ");
        else if (pa->dir != QG_OUT)
            gen_emit_encode(g, &fn, pa->f.type, 0, cl_arg_lvalue(g, pa), "    ");
    }
    g->buf = "b";
    if (!cl_has_args(m))
        qg_sb_puts(g->sb, "    (void)args;\n");
    qg_sb_puts(g->sb, "    return 0;\n}\n");
}

static void cl_reply_decode(gen_ctx *g, const qg_decl *svc, const qg_method *m)
{
    const char *mn = qg_cname_method(g->p, svc, m);
    const qg_param *pa;
    gen_fn fn;

    memset(&fn, 0, sizeof fn);
    qg_sb_printf(g->sb, "\nstatic int %s_reply_decode(qrpc_reader *r, %s_reply *v)\n{\n"
                 "    int rc;\n\n    memset(v, 0, sizeof *v);\n", mn, mn);
    if (m->result->kind != QG_T_VOID)
        gen_emit_decode(g, &fn, m->result, 0, "v->result", "    ");
    for (pa = m->params; pa != NULL; pa = pa->next)
        if (pa->dir != QG_IN)
            gen_emit_decode(g, &fn, pa->f.type, 0, qg_printf(g->p, "v->%s", pa->f.name), "    ");
    qg_sb_printf(g->sb,
                 "    if (qrpc_reader_left(r) != 0) {\n        rc = QRPC_EDECODE;\n"
                 "        goto fail;\n    }\n    return 0;\n\n"
                 "fail:\n    %s_reply_free(v);\n    return rc;\n}\n", mn);

    qg_sb_printf(g->sb, "\nstatic int %s_take(const qrpc_buf *reply, %s_reply *v)\n{\n"
                 "    qrpc_reader r;\n\n    qrpc_reader_init(&r, reply->data, reply->len);\n"
                 "    return %s_reply_decode(&r, v);\n}\n", mn, mn, mn);
}

/* "if (x == NULL || y == NULL)\n        return QRPC_EINVAL;" for pointers that must be set. */
static void cl_null_checks(gen_ctx *g, const qg_method *m, bool sync)
{
    const qg_param *pa;
    qg_strbuf cond;

    qg_sb_init(&cond);
    for (pa = m->params; pa != NULL; pa = pa->next) {
        bool ptr = pa->dir == QG_IN ? cl_in_is_pointer(pa->f.type)
                 : sync ? true : pa->dir == QG_INOUT && cl_in_is_pointer(pa->f.type);

        if (!sync && pa->dir == QG_OUT)
            continue;
        if (ptr)
            qg_sb_printf(&cond, "%s%s == NULL", cond.len ? " || " : "", pa->f.name);
    }
    if (sync && m->result->kind != QG_T_VOID)
        qg_sb_printf(&cond, "%sresult == NULL", cond.len ? " || " : "");
    if (cond.len != 0)
        qg_sb_printf(g->sb, "    if (%s)\n        return QRPC_EINVAL;\n", cond.data);
    qg_sb_free(&cond);
}

static void cl_call_put_args(gen_ctx *g, const char *mn, const qg_method *m)
{
    const qg_param *pa;

    qg_sb_printf(g->sb, "    qrpc_buf_init(&args);\n    rc = %s_put_args(&args", mn);
    for (pa = m->params; pa != NULL; pa = pa->next)
        if (pa->dir != QG_OUT)
            qg_sb_printf(g->sb, ", %s", cl_arg_pass(g, pa));
    qg_sb_puts(g->sb, ");\n    if (rc != 0) {\n        qrpc_buf_free(&args);\n"
               "        return rc;\n    }\n");
}

/* Moves one reply member into the caller's pointer, replacing an inout value. */
static void cl_move_out(gen_ctx *g, const qg_type *t, const char *name, bool inout)
{
    gen_fn fn;

    memset(&fn, 0, sizeof fn);
    if (inout)
        gen_emit_free(g, &fn, t, 0, qg_printf(g->p, "(*%s)", name), "    ");
    if (gen_is_array_typedef(t))
        qg_sb_printf(g->sb, "    memcpy(%s, &out.%s, sizeof *%s);\n", name, name, name);
    else
        qg_sb_printf(g->sb, "    *%s = out.%s;\n", name, name);
}

static void cl_sync(gen_ctx *g, const qg_decl *svc, const qg_method *m)
{
    const char *mn = qg_cname_method(g->p, svc, m);
    const qg_param *pa, *tail = cl_tail(m);
    /* the call up to its last argument, the reply buffer */
    const char *call = tail != NULL
        ? qg_printf(g->p, "qrpc_call_tail(client, %s_ID, &args, %s->data, %s->len, ", mn,
                    tail->f.name, tail->f.name)
        : qg_printf(g->p, "qrpc_call(client, %s_ID, &args, ", mn);
    qg_strbuf params;

    qg_sb_init(&params);
    gen_method_params(g, &params, m);
    qg_sb_printf(g->sb, "\nint %s(qrpc_client *client%s)\n{\n    qrpc_buf args;\n", mn,
                 params.data ? params.data : "");
    qg_sb_free(&params);
    if (!m->oneway)
        qg_sb_puts(g->sb, "    qrpc_buf reply;\n");
    if (gen_method_has_reply(m))
        qg_sb_printf(g->sb, "    %s_reply out;\n", mn);
    qg_sb_puts(g->sb, "    int rc;\n\n");
    cl_null_checks(g, m, true);
    cl_call_put_args(g, mn, m);
    if (m->oneway) {
        qg_sb_printf(g->sb, "    return %sNULL);\n}\n", call);
        return;
    }
    qg_sb_printf(g->sb, "    qrpc_buf_init(&reply);\n    rc = %s&reply);\n", call);
    if (!gen_method_has_reply(m)) {
        qg_sb_puts(g->sb, "    if (rc == 0 && reply.len != 0)\n        rc = QRPC_EDECODE;\n"
                   "    qrpc_buf_free(&reply);\n    return rc;\n}\n");
        return;
    }
    qg_sb_printf(g->sb, "    if (rc == 0)\n        rc = %s_take(&reply, &out);\n"
                 "    qrpc_buf_free(&reply);\n    if (rc != 0)\n        return rc;\n", mn);
    for (pa = m->params; pa != NULL; pa = pa->next)
        if (pa->dir != QG_IN)
            cl_move_out(g, pa->f.type, pa->f.name, pa->dir == QG_INOUT);
    if (m->result->kind != QG_T_VOID)
        cl_move_out(g, m->result, "result", false);
    qg_sb_puts(g->sb, "    return 0;\n}\n");
}

static void cl_async(gen_ctx *g, const qg_decl *svc, const qg_method *m)
{
    const char *mn = qg_cname_method(g->p, svc, m);
    const qg_param *pa, *tail = cl_tail(m);

    qg_sb_printf(g->sb, "\nstatic void %s_done(int status, qrpc_reader *results, "
                 "void (*fn)(void), void *arg)\n{\n    %s_cb cb = (%s_cb)fn;\n", mn, mn, mn);
    if (gen_method_has_reply(m)) {
        qg_sb_printf(g->sb, "    %s_reply out;\n\n    memset(&out, 0, sizeof out);\n"
                     "    if (status == 0)\n        status = %s_reply_decode(results, &out);\n"
                     "    if (cb != NULL)\n        cb(status, status == 0 ? &out : NULL, arg);\n"
                     "    %s_reply_free(&out);\n}\n", mn, mn, mn);
    } else {
        qg_sb_puts(g->sb, "\n    if (status == 0 && results != NULL && qrpc_reader_left(results) != 0)\n"
                   "        status = QRPC_EDECODE;\n"
                   "    if (cb != NULL)\n        cb(status, arg);\n}\n");
    }

    qg_sb_printf(g->sb, "\nint %s_async(qrpc_client *client", mn);
    for (pa = m->params; pa != NULL; pa = pa->next)
        if (pa->dir != QG_OUT)
            qg_sb_printf(g->sb, ", %s", gen_in_param_decl(g, pa));
    qg_sb_printf(g->sb, ", %s_cb cb, void *arg)\n{\n    qrpc_buf args;\n    int rc;\n\n", mn);
    cl_null_checks(g, m, false);
    qg_sb_printf(g->sb, "    qrpc_buf_init(&args);\n    rc = %s_put_args(&args", mn);
    for (pa = m->params; pa != NULL; pa = pa->next)
        if (pa->dir != QG_OUT)
            qg_sb_printf(g->sb, ", %s", pa->f.name);
    qg_sb_puts(g->sb, ");\n");
    if (tail != NULL)
        qg_sb_printf(g->sb, "    if (rc == 0)\n        rc = qrpc_put_raw(&args, %s->data, %s->len);\n",
                     tail->f.name, tail->f.name);
    qg_sb_puts(g->sb, "    if (rc != 0) {\n        qrpc_buf_free(&args);\n"
               "        return rc;\n    }\n");
    qg_sb_printf(g->sb, "    return qrpc_call_async(client, %s_ID, &args, %s_done,\n"
                 "                           (void (*)(void))cb, arg);\n}\n", mn, mn);
}

void qg_gen_client(gen_ctx *g);

void qg_gen_client(gen_ctx *g)
{
    qg_decl *d;
    const qg_method *m;

    gen_banner(g, "_client.c", qg_printf(g->p, "Client stubs of the services of package %s.",
                                         g->pkg));
    qg_sb_printf(g->sb, "\n#include <stdlib.h>\n#include <string.h>\n\n#include \"%s.h\"\n",
                 g->base);
    for (d = g->f->decls; d != NULL; d = d->next) {
        const char *sn;

        if (d->kind != QG_D_SERVICE)
            continue;
        sn = qg_cname_decl(g->p, d);
        qg_sb_printf(g->sb, "\nint %s_connect(qrpc_node *node, const char *target, "
                     "qrpc_client **client)\n{\n"
                     "    return qrpc_client_create(node, target, &%s_desc, client);\n}\n",
                     sn, sn);
        for (m = d->methods; m != NULL; m = m->next) {
            qg_sb_printf(g->sb, "\n/* ---- %s.%s ---- */\n", d->name, m->name);
            cl_put_args(g, d, m);
            if (gen_method_has_reply(m))
                cl_reply_decode(g, d, m);
            cl_sync(g, d, m);
            cl_async(g, d, m);
        }
    }
}
