/*
 * bind.h - a node's side of binding through a master (bind.c): the agent
 * thread that registers the node and keeps its lease, the cluster table
 * it holds, and how a bound client picks the node each call goes to.
 *
 * Not an interface: only runtime/src includes it.  The master itself is
 * master.c; the wire interface both speak is idl/master.qidl.
 */
#ifndef QRPC_BIND_H
#define QRPC_BIND_H

#include "core.h"

#pragma GCC visibility push(hidden)

struct qrpc_Table;              /* master.h */
struct qrpc_Node;

/* A table node's first TCP address, or NULL (qrpc(1) uses it too). */
const char *qrpc__node_tcp_address(const struct qrpc_Node *nd);
/*
 * The FrontEnd address by which node n reaches table node nd: its RDMA
 * address ("rdma://host:port", formatted in buf) when both have the same
 * kind of RDMA device, else its TCP address; NULL if it has neither.
 */
const char *qrpc__node_fe_address(const qrpc_node *n, const struct qrpc_Node *nd,
                                  char *buf, size_t len);

/*
 * Starts binding for node n through the master at addr: QRPC_ENOMEM,
 * QRPC_EADDR.  Called once n listens (or not) and before it is handed
 * out.
 */
int qrpc__bind_start(qrpc_node *n, const char *addr);

/*
 * Stops the agent: it leaves the table (a short call to the master when
 * it was registered) and its thread is joined.  Calls in flight are
 * completed by the FrontEnds' closing, which follows.
 */
void qrpc__bind_stop(qrpc_node *n);

/* Frees what is left once every FrontEnd has closed; NULL n->bind is ignored. */
void qrpc__bind_fini(qrpc_node *n);

/* The node's services changed: register them again soon. */
void qrpc__bind_changed(qrpc_node *n);

/*
 * The FrontEnd of the next call of bound client c: n itself when it
 * serves c's service, else the next node of the table that offers it,
 * round robin, skipping avoid and FrontEnds marked down (when avoid is
 * NULL and every one is down, one of them all the same).  Waits for the node's first table until deadline_ns.
 * Errors: QRPC_ENOSERVICE (no node offers the name), QRPC_ENOVERSION (only
 * at other versions), QRPC_EUNAVAILABLE (no table: the master has not
 * answered; or avoid was the only one), QRPC_ECLOSED, QRPC_ENOMEM.
 */
int qrpc__bind_pick(qrpc_client *c, const qrpc__fe *avoid, uint64_t deadline_ns,
                    qrpc__fe **out);

/*
 * Copies n's table into *out (free it with qrpc_Table_free), waiting for
 * the first one until deadline_ns: what qrpc(1) prints.  QRPC_EINVAL (n
 * has no master), QRPC_EUNAVAILABLE (no table came in time),
 * QRPC_ECLOSED, QRPC_ENOMEM.
 */
int qrpc__bind_table(qrpc_node *n, uint64_t deadline_ns, struct qrpc_Table *out);

/* Frees a bound client's cache. */
void qrpc__bcache_fini(qrpc__bcache *bc);

/*
 * A FrontEnd found unreachable (a connection refused or broken): skipped
 * by qrpc__bind_pick() for a while, or until the table shows a new node
 * at its address.
 */
void qrpc__fe_mark_down(qrpc_node *n, qrpc__fe *fe);

#pragma GCC visibility pop

#endif
