/*
 * rdma.h - the RDMA transport's entry points for the rest of the node
 * (rdma.c has the design).  Not an interface: runtime/src only.
 */
#ifndef QRPC_RDMA_H
#define QRPC_RDMA_H

#include "core.h"

#pragma GCC visibility push(hidden)

typedef struct qrpc__rdma qrpc__rdma;

extern const qrpc__tran qrpc__tran_rdma;

/*
 * Opens the node's RDMA device as cfg.rdma (else $QRPC_RDMA) asks:
 * "auto" (the default) uses a device if there is one and is otherwise
 * silent; "verbs" and "emu" insist (QRPC_ENOTSUP: not in this build,
 * or no device, with a log line saying why); "none" opens nothing.
 * n->rdma stays NULL when no device is used.  QRPC_EINVAL (an unknown
 * name), QRPC_ENOMEM, QRPC_EIO.
 */
int qrpc__rdma_open(qrpc_node *n);
/* Listens next to TCP (the same host, any port) when a device is open;
 * the loop accepts (qrpc__rdma_accept).  QRPC_EADDR, QRPC_EIO. */
int qrpc__rdma_listen(qrpc_node *n);
/* Accepts what waits on the listener (a loop thread). */
void qrpc__rdma_accept(qrpc_node *n);
/* Stops the poller (polling mode); before the loop stops. */
void qrpc__rdma_stop(qrpc_node *n);
/* Closes the listener; after the loop has stopped. */
void qrpc__rdma_unlisten(qrpc_node *n);
/* Closes the device; every RDMA connection is gone by then. */
void qrpc__rdma_close(qrpc_node *n);

/* The transport name of this node's RDMA addresses ("rdma", "rdma-emu"),
 * or NULL without a device. */
const char *qrpc__rdma_transport(const qrpc_node *n);
/* Where it listens for RDMA ("host:port"), or NULL. */
const char *qrpc__rdma_address(const qrpc_node *n);

#pragma GCC visibility pop

#endif
