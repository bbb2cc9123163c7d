/*
 * local.c - the local transport: the FrontEnd of destination "local",
 * whose calls go to services served by the same node.  "If the server is
 * also on this node, the message can be moved to the server directly": no
 * socket, no queue, no thread hop.  fe_call runs qrpc__dispatch() on the
 * caller's thread, with the caller's argument bytes, encoding the results
 * straight into the caller's reply buffer when there is one.
 *
 * The FrontEnd needs no state of its own: it is the node.  Closing it is
 * the node's business (qrpc__dispatch() answers QRPC_ECLOSED once
 * qrpc_node_destroy() has begun), so fe_close and fe_fini do nothing.
 */
#include "core.h"

static int local_fe_init(void **fep, qrpc_node *n, const char *addr)
{
    (void)addr;
    *fep = n;
    return 0;
}

static void local_fe_close(void *fe)
{
    (void)fe;
}

static void local_fe_fini(void *fe)
{
    (void)fe;
}

/* What answering a local call later (from a channel) needs. */
typedef struct local_resp {
    qrpc_done_fn done;
    void (*fn)(void);
    void *arg;
    qrpc_buf *reply;
    unsigned max_depth;
} local_resp;

static void local_respond(void *ctx, int status, qrpc_buf *results)
{
    local_resp *lr = ctx;
    qrpc_reader r;

    if (status != 0) {
        lr->done(status, NULL, lr->fn, lr->arg);
        return;
    }
    if (lr->reply != NULL) {
        /* the caller's buffer takes the results' storage */
        qrpc_buf_free(lr->reply);
        *lr->reply = *results;
        results->data = NULL;
        results->len = results->cap = 0;
        results = lr->reply;
    }
    qrpc_reader_init(&r, results->data, results->len);
    r.max_depth = lr->max_depth;
    lr->done(0, &r, lr->fn, lr->arg);
}

static int local_fe_call(void *fe, const qrpc__call *call)
{
    qrpc_node *n = fe;
    qrpc_buf own = { NULL, 0, 0 }, joined = { NULL, 0, 0 };
    qrpc_buf *results = call->reply != NULL ? call->reply : &own;
    local_resp lr = { call->done, call->fn, call->arg, call->reply, n->cfg.max_depth };
    qrpc__responder resp = { local_respond, &lr, sizeof lr };
    qrpc__request req;
    qrpc_reader r;
    int status;

    req.svc = call->svc;
    req.method = call->method;
    req.client_id = call->client_id;
    req.deadline_ns = call->deadline_ns;
    if (call->blob != NULL && call->blob->tail_len != 0) {
        /* a dispatch reads one run of bytes: the tail joins a copy */
        if (qrpc_put_raw(&joined, call->blob->data, call->blob->len) != 0 ||
            qrpc_put_raw(&joined, call->blob->tail, call->blob->tail_len) != 0) {
            qrpc_buf_free(&joined);
            return QRPC_ENOMEM;
        }
        req.args = joined.data;
        req.args_len = joined.len;
        req.args_owned = &joined.data;
    } else if (call->blob != NULL) {   /* shared bytes: borrowed for the dispatch, copied if kept */
        req.args = call->blob->data;
        req.args_len = call->blob->len;
        req.args_owned = NULL;
    } else {
        req.args = call->args->data;
        req.args_len = call->args->len;
        req.args_owned = &call->args->data;
    }
    req.resp = &resp;
    status = qrpc__dispatch(n, &req, results);
    if (call->blob == NULL)
        qrpc_buf_free(call->args);
    qrpc_buf_free(&joined);     /* NULL data if a channel kept it */
    if (status == QRPC__DEFERRED)
        return 0;               /* a channel answers it: local_respond */
    if (status == 0) {
        qrpc_reader_init(&r, results->data, results->len);
        r.max_depth = n->cfg.max_depth;
        call->done(0, &r, call->fn, call->arg);
    } else {
        call->done(status, NULL, call->fn, call->arg);
    }
    qrpc_buf_free(&own);
    return 0;
}

static const qrpc__fe_ops local_fe_ops = {
    .fe_init = local_fe_init,
    .fe_close = local_fe_close,
    .fe_fini = local_fe_fini,
    .fe_call = local_fe_call,
};

const qrpc__tran qrpc__tran_local = {
    .tran_name = "local",
    .tran_fe = &local_fe_ops,
};
