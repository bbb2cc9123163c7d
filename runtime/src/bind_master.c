/*
 * bind_master.c - the binding backend of the built-in master
 * (qrpc-master(8), master.c): a node's registration, lease and table
 * through the qrpc.Master interface of idl/master.qidl.
 *
 * Two clients of the node itself: one for join, heartbeat and leave
 * (short calls, from the agent thread), one for watch, which the master
 * holds until the table changes (an asynchronous call, so the agent
 * stays free to register a service started meanwhile).  All the policy
 * (when to register again, backoff) is the agent's, in bind.c.
 */
#include <stdlib.h>
#include <string.h>

#include "binder.h"
#include "net.h"

#define BM_CALL_MS        2000u         /* join, heartbeat */
#define BM_LEAVE_MS       1000u         /* the last call, at destroy */
#define BM_WATCH_SLACK_MS 2000u         /* a watch's deadline past its hold */

typedef struct bm_state {
    struct qrpc__bind *bind;
    qrpc_client *mc;            /* join, heartbeat, leave */
    qrpc_client *wc;            /* watch */
} bm_state;

static void bm_close(void *state)
{
    bm_state *s = state;

    qrpc_client_destroy(s->wc);
    qrpc_client_destroy(s->mc);
    free(s);
}

static int bm_open(struct qrpc__bind *b, const char *addr, void **state)
{
    qrpc_node *n = qrpc__bind_node(b);
    struct sockaddr_storage sa;
    socklen_t salen;
    bm_state *s;
    int rc;

    rc = qrpc__addr_parse(addr, false, &sa, &salen);
    if (rc != 0) {
        qrpc__log(n, "the master's address '%s' is neither host:port nor zk://", addr);
        return rc;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return QRPC_ENOMEM;
    s->bind = b;
    rc = qrpc_Master_connect(n, addr, &s->mc);
    if (rc == 0)
        rc = qrpc_Master_connect(n, addr, &s->wc);
    if (rc != 0) {
        bm_close(s);
        return rc;
    }
    s->mc->quiet = s->wc->quiet = true;
    qrpc_client_set_timeout(s->mc, BM_CALL_MS);
    *state = s;
    return 0;
}

static void bm_lease(const qrpc_Lease *l, qrpc__lease *out)
{
    out->master = l->master;
    out->rank = l->rank;
    out->lease_ms = l->lease_ms;
}

static int bm_join(void *state, const qrpc_Registration *reg, qrpc__lease *out)
{
    bm_state *s = state;
    qrpc_Lease lease;
    int rc = qrpc_Master_join(s->mc, reg, &lease);

    if (rc == 0)
        bm_lease(&lease, out);
    return rc;
}

static int bm_renew(void *state, uint64_t id, qrpc__lease *out)
{
    bm_state *s = state;
    qrpc_Lease lease;
    int rc = qrpc_Master_heartbeat(s->mc, id, &lease);

    if (rc == 0)
        bm_lease(&lease, out);
    return rc;
}

static void bm_leave(void *state, uint64_t id)
{
    bm_state *s = state;

    qrpc_client_set_timeout(s->mc, BM_LEAVE_MS);
    (void)qrpc_Master_leave(s->mc, id);
}

/* watch's completion, on a loop thread. */
static void bm_watch_done(int status, qrpc_Master_watch_reply *reply, void *arg)
{
    bm_state *s = arg;

    qrpc__bind_watched(s->bind, status, status == 0 ? &reply->result : NULL);
}

static int bm_watch(void *state, uint64_t master, uint64_t epoch, uint32_t hold_ms)
{
    bm_state *s = state;

    qrpc_client_set_timeout(s->wc, hold_ms + BM_WATCH_SLACK_MS);
    return qrpc_Master_watch_async(s->wc, master, epoch, hold_ms, bm_watch_done, s);
}

const qrpc__binder_ops qrpc__binder_master = {
    .name = "master",
    .open = bm_open,
    .join = bm_join,
    .renew = bm_renew,
    .leave = bm_leave,
    .watch = bm_watch,
    .close = bm_close,
};
