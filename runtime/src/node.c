/*
 * node.c - the life of a node (one RpcService per process): its
 * configuration, creation, destruction and FrontEnds.  What the node serves
 * and the dispatch of calls are in service.c; clients in client.c.
 *
 * There are no threads yet: a local call runs on its caller's thread.
 * workers, max_inflight and listen are validated and kept for the network
 * transports.
 */
#include <stdio.h>
#include <stdlib.h>

#include "core.h"
#include "testing.h"

#define NODE_DEFAULT_WORKERS      2u
#define NODE_DEFAULT_MAX_MESSAGE  (64u << 20)
#define NODE_DEFAULT_MAX_INFLIGHT 1024u
#define NODE_DEFAULT_TIMEOUT_MS   30000u

/* A misuse that would otherwise deadlock: say what it was, then abort. */
static _Noreturn void node_panic(const char *msg)
{
    fprintf(stderr, "qrpc: fatal: %s\n", msg);
    abort();
}

void qrpc_node_config_init(qrpc_node_config *cfg)
{
    cfg->listen = NULL;
    cfg->workers = NODE_DEFAULT_WORKERS;
    cfg->max_message = NODE_DEFAULT_MAX_MESSAGE;
    cfg->max_inflight = NODE_DEFAULT_MAX_INFLIGHT;
    cfg->timeout_ms = NODE_DEFAULT_TIMEOUT_MS;
    cfg->max_depth = QRPC_DEFAULT_MAX_DEPTH;
}

/* out = in with every 0 replaced by its default, or an error. */
static int node_config_fill(qrpc_node_config *out, const qrpc_node_config *in)
{
    qrpc_node_config_init(out);
    if (in == NULL)
        return 0;
    if (in->workers > QRPC__MAX_WORKERS ||
        (in->max_message != 0 && in->max_message < QRPC__MIN_MESSAGE) ||
        in->max_inflight > QRPC__MAX_INFLIGHT ||
        in->max_depth > QRPC__MAX_DEPTH)
        return QRPC_EINVAL;
    /* Serving on an address needs the TCP transport, which is not here yet. */
    if (in->listen != NULL)
        return QRPC_EADDR;
    if (in->workers != 0)
        out->workers = in->workers;
    if (in->max_message != 0)
        out->max_message = in->max_message;
    if (in->max_inflight != 0)
        out->max_inflight = in->max_inflight;
    if (in->timeout_ms != 0)
        out->timeout_ms = in->timeout_ms;
    if (in->max_depth != 0)
        out->max_depth = in->max_depth;
    return 0;
}

int qrpc_node_create(const qrpc_node_config *cfg, qrpc_node **out)
{
    qrpc__svctab *tab;
    qrpc_node *n;
    int rc;

    if (out == NULL)
        return QRPC_EINVAL;
    *out = NULL;
    n = calloc(1, sizeof *n);
    if (n == NULL)
        return QRPC_ENOMEM;
    rc = node_config_fill(&n->cfg, cfg);
    if (rc != 0)
        goto fail_free;
    atomic_init(&n->closed, 0);
    atomic_init(&n->refs, 1);
    rc = qrpc__rcu_init(&n->rcu);
    if (rc != 0)
        goto fail_free;
    if (pthread_mutex_init(&n->lock, NULL) != 0) {
        rc = QRPC_ENOMEM;
        goto fail_rcu;
    }
    tab = qrpc__services_new();
    if (tab == NULL) {
        rc = QRPC_ENOMEM;
        goto fail_lock;
    }
    atomic_init(&n->services, tab);
    rc = qrpc__fe_init(&n->local, &qrpc__tran_local, n, "local");
    if (rc != 0)
        goto fail_tab;
    *out = n;
    return 0;

fail_tab:
    qrpc__services_free(tab);
fail_lock:
    pthread_mutex_destroy(&n->lock);
fail_rcu:
    qrpc__rcu_fini(&n->rcu);
fail_free:
    free(n);
    return rc;
}

void qrpc_node_destroy(qrpc_node *n)
{
    qrpc__svctab *tab;

    if (n == NULL)
        return;
    /* The grace period below would wait for the handler calling us. */
    if (qrpc__in_handler())
        node_panic("qrpc_node_destroy() called from a handler");

    pthread_mutex_lock(&n->lock);
    atomic_store(&n->closed, 1);
    tab = atomic_load(&n->services);
    pthread_mutex_unlock(&n->lock);
    qrpc__fe_close(&n->local);
    /*
     * Every dispatch that saw closed == 0 has returned after this; every
     * later one answers QRPC_ECLOSED without reading the table.
     */
    qrpc__rcu_synchronize(&n->rcu);
    atomic_store(&n->services, NULL);
    qrpc__services_free(tab);
    qrpc__node_unref(n);
}

void qrpc__node_unref(qrpc_node *n)
{
    if (atomic_fetch_sub(&n->refs, 1) != 1)
        return;
    qrpc__fe_fini(&n->local);
    pthread_mutex_destroy(&n->lock);
    qrpc__rcu_fini(&n->rcu);
    free(n);
}

void qrpc__node_set_clock(qrpc_node *n, uint64_t (*now_ns)(void *arg), void *arg)
{
    n->now = now_ns;
    n->now_arg = arg;
}
