/*
 * qrpc.h - the qrpc runtime's public interface: nodes, services, clients
 * and calls.  Generated code (see qrpcgen(1)) is written against it, and
 * programs may use it directly.  The reference is qrpc(3).
 *
 * A node (qrpc_node) is one RpcService: it serves the services registered
 * on it and owns the connections to other nodes.  A client (qrpc_client)
 * names one service (package.Service, version) at one destination; calls on
 * it are made by the generated stubs through qrpc_call() and
 * qrpc_call_async().  A destination is "local" (a service served by the
 * same node: the call goes to the handler without any socket), an
 * address, or none: the client is bound by name through the node's
 * master (qrpc_master) to whichever node offers the service (qrpc(3),
 * BINDING).
 *
 * Threading: every function here is safe to call from any thread, except
 * that a node or client must not be destroyed while calls on it are still
 * being made, and that a handler must not serve, unserve or destroy (these
 * wait for running handlers).  Errors are the negative QRPC_E* codes of
 * qrpc_errors.h.
 */
#ifndef QRPC_H
#define QRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qrpc_errors.h"
#include "qrpc_wire.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QRPC_VERSION_STRING "0.1.0"

typedef struct qrpc_node qrpc_node;
typedef struct qrpc_client qrpc_client;
typedef struct qrpc_ctx qrpc_ctx;
typedef struct qrpc_channel qrpc_channel;
typedef struct qrpc_request qrpc_request;

/* ---- service descriptions (emitted by qrpcgen) --------------------------- */

#define QRPC_METHOD_IDEMPOTENT 0x1u     /* safe to run more than once */
#define QRPC_METHOD_ONEWAY     0x2u     /* no reply */

/*
 * A method id no service may define (qrpcgen rejects it): every served
 * service answers it with status 0 and no results, running no handler,
 * and a node that does not serve the service with QRPC_ENOSERVICE.  It is
 * how `qrpc ping` (qrpc(1)) probes a service without knowing its methods.
 * A client calls it with a desc that lists it, flagged idempotent.
 */
#define QRPC_METHOD_PING 0xffffffffu

typedef struct qrpc_method_desc {
    uint32_t id;
    const char *name;                   /* "deposit" */
    uint32_t flags;                     /* QRPC_METHOD_* */
} qrpc_method_desc;

typedef struct qrpc_service_desc {
    const char *name;                   /* "bank.Bank" */
    uint32_t version;
    const qrpc_method_desc *methods;
    size_t n_methods;
} qrpc_service_desc;

/*
 * The server half of one method, emitted into NAME_server.c: decode the
 * arguments from args, call the handler found in handlers, and on success
 * (the handler returned 0) encode the results into results.  Returns the
 * handler's status (0, or a positive application error), or a negative
 * QRPC_E* code (QRPC_EDECODE for arguments that do not decode, bytes left
 * over after them included: checked before the handler runs, which then
 * does not run).  args->max_depth is the node's max_depth.
 */
typedef int (*qrpc_dispatch_fn)(qrpc_ctx *ctx, const void *handlers,
                                qrpc_reader *args, qrpc_buf *results);

/* ---- nodes --------------------------------------------------------------- */

/* Limits in brackets; a value outside them is QRPC_EINVAL. */
typedef struct qrpc_node_config {
    const char *listen;                 /* "host:port" to serve on (port 0: any);
                                           NULL: serve local calls only */
    unsigned workers;                   /* handler threads (0: 2) */
    uint32_t max_message;               /* largest message in bytes (0: 64 MiB) */
    uint32_t max_inflight;              /* calls in flight per connection (0: 1024) */
    uint32_t timeout_ms;                /* default call deadline (0: 30000) */
    unsigned max_depth;                 /* nesting of recursive types (0: 64) */
    uint32_t max_frame;                 /* frame payload on the wire (0: 64 KiB) */
    uint32_t stall_timeout_ms;          /* a peer that leaves a frame unfinished,
                                           or takes none of our bytes, this long
                                           is dropped (0: 30000) */
    uint32_t lease_ms;                  /* the reply cache forgets a client
                                           silent this long (0: 60000) */
    int32_t spin_us;                    /* how long a caller waiting for a
                                           reply keeps the CPU, yielding,
                                           before it sleeps
                                           (0: 50; -1: never) [-1, 100000] */
    int32_t retry_ms;                   /* how long a call's first attempt waits
                                           for its reply before the request is
                                           sent again (same sequence number);
                                           each later attempt waits twice as
                                           long (0: 1000; -1: never send a
                                           request twice) [-1, 3600000] */
    const char *master;                 /* "host:port" of the master, or
                                           "zk://host:port,.../path" of a
                                           ZooKeeper ensemble, to register
                                           with and bind through (qrpc(3),
                                           BINDING); NULL: the environment
                                           variable QRPC_MASTER, or none when
                                           it is unset; "": none */
    const char *dedup_log;              /* a file where a serving node keeps
                                           the replies of at-most-once calls
                                           across restarts (qrpc(3), The
                                           reply log); NULL: none.  Needs
                                           listen */
    const char *rdma;                   /* the RDMA provider (qrpc(3), RDMA):
                                           "auto" (a device if there is
                                           one), "verbs", "emu" (software
                                           emulation, for tests), "none";
                                           NULL: $QRPC_RDMA, else "auto" */
    const char *rdma_listen;            /* "host:port" to take RDMA connections
                                           on, with a device and listen;
                                           NULL: listen's host, any port */
    unsigned rdma_polling;              /* 1: a thread spins on RDMA
                                           completions (a dedicated core);
                                           0: they wake the loop (epoll) */
    uint32_t tcp_rcvbuf;                /* the kernel's receive buffer of each
                                           TCP connection, in bytes, which
                                           bounds the bytes of a large
                                           message queued ahead of a small
                                           one (qrpc(3), LIMITS); 0: the
                                           kernel's own, which grows with
                                           the traffic [4096, 1 GiB] */
    int32_t bulk_lane;                  /* a remote call over TCP whose
                                           arguments are this many bytes or
                                           more goes on a second connection
                                           to its node, so that its bytes
                                           never queue ahead of small calls'
                                           in the kernel's buffers (qrpc(3),
                                           LIMITS) (0: 256 KiB; -1: never)
                                           [-1, INT32_MAX] */
    uint32_t rdma_credits;              /* receive buffers of 16 KiB per
                                           RDMA connection, each a credit
                                           of its peer (0: 32) [4, 1024] */
    void (*log)(void *arg, const char *line);   /* NULL: lines go to stderr */
    void *log_arg;
} qrpc_node_config;

/* Fills cfg with the defaults above. */
void qrpc_node_config_init(qrpc_node_config *cfg);

/*
 * Creates a node.  cfg may be NULL for the defaults; it is copied.
 * With a master (cfg.master, else $QRPC_MASTER) it starts binding: its
 * agent thread registers it and follows the cluster table (qrpc(3),
 * BINDING); the master need not be up yet.
 * Errors: QRPC_EINVAL (out NULL or a bad config value), QRPC_ENOMEM,
 * QRPC_EADDR (cannot listen on cfg.listen, or a master address that does
 * not parse), QRPC_ENOTSUP (a zk:// master in a build without
 * ZooKeeper), QRPC_EIO (the reply log).  On error *out is NULL.
 */
int qrpc_node_create(const qrpc_node_config *cfg, qrpc_node **out);

/*
 * The address the node listens on, port included ("127.0.0.1:40213" when
 * cfg.listen asked for port 0), or NULL when it does not listen.  Valid
 * until the node is destroyed.
 */
const char *qrpc_node_address(const qrpc_node *n);

/*
 * The address by which other nodes reach n over RDMA, as a client
 * address ("rdma://10.0.0.5:40214", or "rdma-emu://127.0.0.1:40214" over
 * the emulation), or NULL when it does not listen for RDMA (no device,
 * cfg.rdma "none", or not listening at all).  Valid until the node is
 * destroyed.
 */
const char *qrpc_node_rdma_address(const qrpc_node *n);

/*
 * Stops the node: calls still waiting fail with QRPC_ECLOSED, services are
 * withdrawn, every thread is joined and everything is freed.  Handlers
 * still running are waited for; calls that race with it fail with
 * QRPC_ECLOSED.  Clients of the node must be destroyed first (one that
 * is not only gets QRPC_ECLOSED, and frees what is left of the node when
 * it is destroyed).  Called from a handler it aborts, as it would wait for
 * itself.  NULL is ignored.
 */
void qrpc_node_destroy(qrpc_node *n);

/*
 * What a node has counted since it was created (qrpc_node_get_stats()).
 * calls, retransmissions and caller_reads are about its clients' calls,
 * duplicates and refused about the calls it serves.
 */
typedef struct qrpc_node_stats {
    uint64_t calls;             /* remote calls started by its clients */
    uint64_t retransmissions;   /* requests its clients sent again (qrpc(3), RETRANSMISSION) */
    uint64_t duplicates;        /* requests answered from the reply cache, or
                                   with the result of the run they duplicated */
    uint64_t refused;           /* retransmissions refused without running:
                                   QRPC_EUNKNOWN or QRPC_ESTALE answers */
    uint64_t caller_reads;      /* synchronous calls completed while their
                                   caller read the connection itself */
} qrpc_node_stats;

/* Fills *out with n's counters (a snapshot; each counter is exact). */
void qrpc_node_get_stats(const qrpc_node *n, qrpc_node_stats *out);

/*
 * A node's view of the cluster, when it binds through a master
 * (qrpc_node_get_binding()).
 */
typedef struct qrpc_binding_info {
    bool registered;            /* the master has this node in its table */
    uint32_t rank;              /* its rank there (when registered) */
    uint64_t node_id;           /* its identity: random, new at every start */
    uint64_t master;            /* the master's identity, from its last answer */
    uint64_t epoch;             /* the version of the table the node holds (0: none yet) */
    uint32_t nodes;             /* how many nodes that table lists */
} qrpc_binding_info;

/*
 * Fills *out with n's binding state.  QRPC_EINVAL when n has no master
 * (or n or out is NULL).
 */
int qrpc_node_get_binding(const qrpc_node *n, qrpc_binding_info *out);

/*
 * The versions of service name that nodes offer in n's table, in
 * ascending order, into out[0..max) (out may be NULL when max is 0).
 * Returns how many there are (which may be more than max), 0 when no node
 * offers name, or QRPC_EINVAL (n has no master, name NULL).  For the
 * message a program gives when binding failed with QRPC_ENOVERSION.
 */
int qrpc_node_versions(const qrpc_node *n, const char *name, uint32_t *out, size_t max);

/* ---- serving ------------------------------------------------------------- */

/*
 * Serves a service on node n.  desc and dispatch (one function per entry of
 * desc->methods, in the same order) must outlive the registration; they are
 * static tables in generated code.  handlers is the generated handler table,
 * passed to the dispatch functions; state is returned by qrpc_ctx_state().
 * Errors: QRPC_EEXIST when the node already serves desc->name at that
 * version, QRPC_EINVAL for a desc with duplicate method ids (or a NULL or
 * empty name, a NULL dispatch entry, more than 2^20 methods, a method with
 * the id QRPC_METHOD_PING), QRPC_EBUSY
 * when called from a handler, QRPC_ECLOSED, QRPC_ENOMEM.
 */
int qrpc_serve(qrpc_node *n, const qrpc_service_desc *desc,
               const qrpc_dispatch_fn *dispatch, const void *handlers,
               void *state);

/*
 * Stops serving name@version; QRPC_ENOSERVICE if it was not served.  Returns
 * once no handler of the node is running any more, so that the service's
 * handlers and state may then be freed.  Errors also: QRPC_EINVAL,
 * QRPC_EBUSY (called from a handler), QRPC_ECLOSED, QRPC_ENOMEM.
 */
int qrpc_unserve(qrpc_node *n, const char *name, uint32_t version);

/* What a handler may learn of the call it is running. */
void *qrpc_ctx_state(const qrpc_ctx *ctx);
uint64_t qrpc_ctx_client_id(const qrpc_ctx *ctx);
uint32_t qrpc_ctx_method(const qrpc_ctx *ctx);

/* ---- clients and calls ----------------------------------------------------- */

/*
 * Creates a client of service desc at target, using node n's connections.
 * target is one of:
 *   NULL     bound by name: when n has a master, each call goes to a node
 *            that the cluster table lists as serving desc->name at
 *            desc->version -- n itself first, without a socket, when it
 *            serves it -- and fails over to another as qrpc(3), BINDING,
 *            describes; without a master the same as "local";
 *   "local"  the service served by n itself;
 *   "host:port", "[v6]:port"   one node, by address (TCP);
 *   "rdma://host:port", "rdma-emu://host:port"   one node, over RDMA
 *            (qrpc(3), RDMA): n needs a device of that kind.
 * The service need not be served yet; a call finds out (QRPC_ENOSERVICE,
 * and for a bound client QRPC_ENOVERSION when nodes offer the name at
 * other versions only).  desc must outlive the client.  Errors:
 * QRPC_EINVAL, QRPC_EADDR (an address that does not parse, or an RDMA
 * address n has no device for), QRPC_ECLOSED, QRPC_ENOMEM.  On error *out
 * is NULL.
 */
int qrpc_client_create(qrpc_node *n, const char *target,
                       const qrpc_service_desc *desc, qrpc_client **out);

/* Frees a client with no call in flight.  NULL is ignored. */
void qrpc_client_destroy(qrpc_client *c);

/* The deadline of each later call, in ms from its start (0: node default). */
void qrpc_client_set_timeout(qrpc_client *c, uint32_t timeout_ms);

/*
 * This client's id: never 0, unique within the process incarnation, and
 * drawn from a random 64-bit base so that incarnations do not repeat ids.
 */
uint64_t qrpc_client_id(const qrpc_client *c);

/*
 * Calls method on c's service and waits for the reply.
 * args holds the encoded arguments and is taken in every case (left empty).
 * *reply must be a valid buffer (zeroed, from qrpc_buf_init() or from an
 * earlier call): its storage is reused.  On 0, *reply holds the encoded
 * results; the caller decodes them and frees the buffer with
 * qrpc_buf_free().  A positive return is the handler's application error
 * (*reply is empty); a negative one a QRPC_E* code: QRPC_ENOMETHOD also
 * when method is not in the client's desc, QRPC_ETOOBIG for arguments or
 * results over max_message, QRPC_EINVAL for a NULL args or c, or reply
 * NULL (or args) for a method that is not oneway.  reply may be NULL for a
 * oneway method, which returns once the request is handed over; its
 * handler's results and application error are dropped.
 */
int qrpc_call(qrpc_client *c, uint32_t method, qrpc_buf *args, qrpc_buf *reply);

/*
 * qrpc_call() with tail_len bytes at tail following the encoded args (the
 * generated synchronous stubs pass a method's last argument so when it is
 * bytes).  A tail of 64 KiB or more is not copied: the request is sent
 * from it, so it must stay unchanged until the call returns, and the call
 * returns only once no copy of the request is being sent any more (a
 * retransmission still queued is written out first; a connection that
 * stops taking bytes is dropped after stall_timeout_ms).  A shorter tail,
 * or one for a service on the caller's own node, is copied.  Errors as
 * qrpc_call(), and QRPC_EINVAL for a NULL tail with a nonzero tail_len.
 */
int qrpc_call_tail(qrpc_client *c, uint32_t method, qrpc_buf *args, const void *tail,
                   size_t tail_len, qrpc_buf *reply);

/*
 * Completion of an asynchronous call: status as qrpc_call() returns it;
 * results is a reader over the encoded results when status is 0, NULL
 * otherwise, valid until the function returns.  fn and arg are the values
 * given to qrpc_call_async(): generated code passes the user's typed
 * callback as fn and calls it after decoding.
 */
typedef void (*qrpc_done_fn)(int status, qrpc_reader *results,
                             void (*fn)(void), void *arg);

/*
 * Starts a call and returns without waiting.  args is taken in every case.
 * Returns 0 when the call was started: done then runs exactly once, on a
 * runtime thread or, for a local service, on this thread before
 * qrpc_call_async() returns; errors found once started (QRPC_ENOSERVICE,
 * QRPC_EDECODE, QRPC_ETIMEDOUT, QRPC_ECLOSED, ...) are its status.  A
 * negative return (QRPC_EINVAL, QRPC_ENOMETHOD for a method not in the
 * client's desc, QRPC_ETOOBIG) means the call was not started and done
 * will not run.
 */
int qrpc_call_async(qrpc_client *c, uint32_t method, qrpc_buf *args,
                    qrpc_done_fn done, void (*fn)(void), void *arg);

/* ---- channels: raw requests --------------------------------------------- */

/*
 * Serves desc on node n without dispatch functions or handlers: every
 * request for it, local or remote, is queued in the returned channel (the
 * RpcChannel), from which qrpc_recv_request() takes it, with its argument
 * bytes still encoded, and qrpc_send_response() answers it.  For programs
 * that handle raw messages themselves.  desc must outlive the channel.
 * Errors as qrpc_serve().
 */
int qrpc_channel_open(qrpc_node *n, const qrpc_service_desc *desc, qrpc_channel **out);

/*
 * Withdraws the service, answers the requests still queued with
 * QRPC_ECLOSED, wakes the threads waiting in qrpc_recv_request() (they
 * return QRPC_ECLOSED), waits for them to leave, and frees the channel.
 * Requests already taken can still be answered.  Close a node's channels
 * before destroying the node.  NULL is ignored.
 */
void qrpc_channel_close(qrpc_channel *ch);

/*
 * Takes the oldest queued request, waiting up to timeout_ms for one (-1:
 * for ever; 0: not at all).  QRPC_ETIMEDOUT when none came, QRPC_ECLOSED
 * once the channel is closing.  The request is the caller's until it is
 * given to qrpc_send_response().
 */
int qrpc_recv_request(qrpc_channel *ch, int timeout_ms, qrpc_request **out);

uint32_t qrpc_request_method(const qrpc_request *r);
uint64_t qrpc_request_client_id(const qrpc_request *r);
/* A reader over the request's encoded arguments, valid while r is held. */
void qrpc_request_args(const qrpc_request *r, qrpc_reader *out);

/*
 * Answers r with status (0, a positive application error, or a negative
 * QRPC_E* code) and, when status is 0, the encoded results (results may be
 * NULL for none).  Takes r and *results in every case.  The reply of a
 * oneway method is dropped.  Returns QRPC_EINVAL for a NULL r, else 0: a
 * caller that has gone away (timed out, disconnected) is not an error.
 */
int qrpc_send_response(qrpc_request *r, int status, qrpc_buf *results);

/* ---- the master ---------------------------------------------------------- */

typedef struct qrpc_master qrpc_master;

/* Limits in brackets; a value outside them is QRPC_EINVAL. */
typedef struct qrpc_master_config {
    const char *listen;                 /* "host:port" (NULL: "127.0.0.1:7700";
                                           port 0: any free port) */
    uint32_t lease_ms;                  /* a node that has not renewed its
                                           lease this long is dropped
                                           (0: 3000) [100, 3600000] */
    uint32_t max_nodes;                 /* nodes in the table (0: 4096) [1, 1048576] */
    uint32_t max_services;              /* services one node may register
                                           (0: 1024) [1, 65536] */
    void (*log)(void *arg, const char *line);   /* NULL: lines go to stderr */
    void *log_arg;
} qrpc_master_config;

/* Fills cfg with the defaults above. */
void qrpc_master_config_init(qrpc_master_config *cfg);

/*
 * Starts a master (qrpc-master(8)) inside this process: its own node
 * listening on cfg->listen and one thread that keeps the table.  cfg may
 * be NULL for the defaults; it is copied.  Errors: QRPC_EINVAL,
 * QRPC_EADDR (cannot listen there), QRPC_ENOMEM.  On error *out is NULL.
 */
int qrpc_master_start(const qrpc_master_config *cfg, qrpc_master **out);

/* The address the master listens on, port included; valid until it stops. */
const char *qrpc_master_address(const qrpc_master *m);

/*
 * Stops the master: answers the calls it holds with QRPC_ECLOSED, joins
 * its thread and frees everything.  Nodes keep their last table and
 * re-register when a master answers again.  NULL is ignored.
 */
void qrpc_master_stop(qrpc_master *m);

/* ---- errors ------------------------------------------------------------ */

/* qrpc_strerror() and qrpc_err_name() are declared in qrpc_errors.h. */

#ifdef __cplusplus
}
#endif

#endif
