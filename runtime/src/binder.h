/*
 * binder.h - the interface between a node's binding agent (bind.c) and a
 * binding backend: where the cluster table lives.  Two backends fill one
 * qrpc__binder_ops each, with designated initializers:
 *
 *   qrpc__binder_master   host:port       the built-in master (bind_master.c)
 *   qrpc__binder_zk       zk://hosts/path  a ZooKeeper ensemble (bind_zk.c)
 *
 * and the agent only calls the static inline wrappers at the end of this
 * file.  The agent owns the policy (when to register again, backoff, the
 * table every bound client picks from); a backend only moves a node's
 * registration and the table between the node and its store.
 *
 * Threads: open, join, renew, leave and close are called from the agent
 * thread only, one at a time, and may block (each has a bound of its own);
 * watch too, and its answer comes through qrpc__bind_watched(), from any
 * thread, once per watch that returned 0.
 *
 * Not an interface for applications: only runtime/src includes it.
 */
#ifndef QRPC_BINDER_H
#define QRPC_BINDER_H

#include "core.h"
#include "master.h"

#pragma GCC visibility push(hidden)

struct qrpc__bind;

/* What join and renew answer: the registration the backend holds. */
typedef struct qrpc__lease {
    uint64_t master;            /* the store's identity: a change means it restarted */
    uint32_t rank;
    uint32_t lease_ms;          /* renew at least every third of this */
} qrpc__lease;

/*
 * A backend's renew (and join) answers this when it no longer holds the
 * node's registration (the master dropped it, or the ZooKeeper session
 * expired): the agent registers again at once.
 */
#define QRPC__BIND_LOST ((int)qrpc_MasterError_NOT_REGISTERED)

typedef struct qrpc__binder_ops {
    const char *name;           /* for messages: "master", "zookeeper" */

    /*
     * Prepares the backend for node b at addr (the whole address, scheme
     * included) and stores its state in *state.  Connects lazily or in
     * the background: the store need not be up.  Errors: QRPC_EADDR
     * (addr does not parse; said in the node's log), QRPC_ENOTSUP (not
     * in this build; said too), QRPC_ENOMEM.
     */
    int (*open)(struct qrpc__bind *b, const char *addr, void **state);

    /*
     * Registers the node as reg describes (again, with the same id:
     * replaces what the store holds).  reg is borrowed.  Errors:
     * QRPC__BIND_LOST-like positive MasterError values the store refused
     * with, or a QRPC_E* code (unreachable: try again later).
     */
    int (*join)(void *state, const qrpc_Registration *reg, qrpc__lease *out);

    /* Keeps the registration alive; QRPC__BIND_LOST when it is gone. */
    int (*renew)(void *state, uint64_t id, qrpc__lease *out);

    /* Removes the registration (best effort, bounded): the node stops. */
    void (*leave)(void *state, uint64_t id);

    /*
     * Asks for the table when it is not (master, epoch), else for the
     * next change, waiting at most about hold_ms before answering
     * "unchanged".  Returns 0 when the answer will come through
     * qrpc__bind_watched(), or an error (nothing will come).
     */
    int (*watch)(void *state, uint64_t master, uint64_t epoch, uint32_t hold_ms);

    /*
     * Frees the backend.  Called after the agent has stopped and the
     * node's FrontEnds have closed: no watch answer is pending.
     */
    void (*close)(void *state);
} qrpc__binder_ops;

extern const qrpc__binder_ops qrpc__binder_master;
extern const qrpc__binder_ops qrpc__binder_zk;

/*
 * A watch's answer: status 0 with *up (its contents are taken, and up is
 * left empty), or the error that ended it (up NULL).  Callable from any
 * thread but never with the backend's own lock held across it.
 */
void qrpc__bind_watched(struct qrpc__bind *b, int status, qrpc_Update *up);

/*
 * A registration's own sanity, as every store checks it (master.c): an
 * id, at least one address, no empty transport or address, at most
 * max_services services, none empty or twice.  Sorts r's services.
 * Returns 0 or qrpc_MasterError_BAD_REGISTRATION / _TOO_MANY_SERVICES.
 */
int qrpc__registration_check(qrpc_Registration *r, uint32_t max_services);

/* The node whose agent b is (for a backend's log lines and clients). */
qrpc_node *qrpc__bind_node(const struct qrpc__bind *b);

/* ---- the wrappers the agent calls ------------------------------------------- */

static inline int qrpc__binder_open(const qrpc__binder_ops *ops, struct qrpc__bind *b,
                                    const char *addr, void **state)
{
    return ops->open(b, addr, state);
}

static inline int qrpc__binder_join(const qrpc__binder_ops *ops, void *state,
                                    const qrpc_Registration *reg, qrpc__lease *out)
{
    return ops->join(state, reg, out);
}

static inline int qrpc__binder_renew(const qrpc__binder_ops *ops, void *state, uint64_t id,
                                     qrpc__lease *out)
{
    return ops->renew(state, id, out);
}

static inline void qrpc__binder_leave(const qrpc__binder_ops *ops, void *state, uint64_t id)
{
    ops->leave(state, id);
}

static inline int qrpc__binder_watch(const qrpc__binder_ops *ops, void *state,
                                     uint64_t master, uint64_t epoch, uint32_t hold_ms)
{
    return ops->watch(state, master, epoch, hold_ms);
}

static inline void qrpc__binder_close(const qrpc__binder_ops *ops, void *state)
{
    if (state != NULL)
        ops->close(state);
}

#pragma GCC visibility pop

#endif
