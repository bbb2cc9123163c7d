/*
 * transport.h - the interface between the core and a transport, in the
 * style of nng's transport.h: each transport fills one qrpc__tran with
 * designated initializers, and the core only calls the static inline
 * wrappers at the end of this file.
 *
 * A FrontEnd is one destination of a node's outgoing calls (the original
 * system's FrontEnd): destination "local" is the local transport's,
 * served by the node itself; TCP and RDMA will add one FrontEnd per
 * remote node, shared by every client of that node, and a listener side
 * that feeds received requests to qrpc__dispatch() (core.h).  Only the
 * client-side operations exist so far: they are what "local" and the
 * TCP FrontEnd need.
 *
 * Ownership is stated on every operation.  A successful fe_call takes the
 * arguments; a failed one leaves them with the caller.
 */
#ifndef QRPC_TRANSPORT_H
#define QRPC_TRANSPORT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "qrpc.h"

/* Internal: kept out of libqrpc.so's exported symbols. */
#pragma GCC visibility push(hidden)

struct qrpc__svc_key;

/*
 * Encoded arguments shared by the attempts of one call and the messages
 * that carry them: each holder has a reference, and the last one frees
 * the bytes and then the blob with free_fn (the blob may be the first
 * member of a larger record, freed with it).  The arguments are data
 * followed by tail: the caller's own bytes, not copied (qrpc_call_tail),
 * which its owner keeps unchanged until free_fn has run.
 */
typedef struct qrpc__blob {
    atomic_uint refs;
    uint8_t *data;              /* malloc'd; NULL when len is 0 */
    uint32_t len;
    const uint8_t *tail;        /* not owned; NULL when tail_len is 0 */
    uint32_t tail_len;
    void (*free_fn)(struct qrpc__blob *b);
} qrpc__blob;

static inline void qrpc__blob_ref(qrpc__blob *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
}

static inline void qrpc__blob_unref(qrpc__blob *b)
{
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(b->data);
    b->free_fn(b);
}

/*
 * How an attempt that got no reply ended, as the transport tells it
 * before it runs the call's done (which then reads it).  A reply, or a
 * status the peer sent, sets none of the flags.
 */
typedef struct qrpc__attempt {
    bool sent;                  /* some of the request may have reached the peer */
    bool expired;               /* its own wait (wait_ns) ran out */
    bool broken;                /* the connection failed under it */
    uint64_t peer_incarnation;  /* the peer's, from its HELLO; 0: not known */
} qrpc__attempt;

/*
 * One outgoing call as the core hands it to a FrontEnd.  It is borrowed
 * only for the duration of fe_call: a transport that completes the call
 * later copies what it needs (done, fn, arg, reply) into its own record.
 */
typedef struct qrpc__call {
    const struct qrpc__svc_key *svc;    /* the client's; outlives the call */
    uint32_t method;
    uint32_t flags;             /* the method's QRPC_METHOD_* */
    uint64_t client_id;
    uint64_t seq;               /* the client's sequence number of this call */
    uint64_t acked;             /* the client's watermark when it was made */
    uint64_t deadline_ns;       /* absolute, on the node's clock */
    /* how long this attempt waits for its reply (never past deadline_ns)
     * before it ends with QRPC_ETIMEDOUT and att->expired; 0: until
     * deadline_ns */
    uint64_t wait_ns;
    bool retry;                 /* a retransmission (QRPC__REQ_RETRY) ... */
    uint64_t incarnation;       /* ... addressed to this server incarnation */
    qrpc_buf *args;             /* the encoded arguments (see fe_call), or: */
    qrpc__blob *blob;           /* not NULL: the arguments, shared (see fe_call) */
    qrpc__attempt *att;         /* not NULL: told how an attempt without reply ended */
    /*
     * qrpc_call(): the caller's buffer, to receive the results, which
     * stays valid until done has run.  NULL for qrpc_call_async() and
     * oneway calls.
     */
    qrpc_buf *reply;
    qrpc_done_fn done;          /* the completion, with fn and arg */
    void (*fn)(void);
    void *arg;
} qrpc__call;

/* The bytes of call's arguments, its blob's tail included. */
static inline size_t qrpc__call_len(const qrpc__call *call)
{
    if (call->blob != NULL)
        return (size_t)call->blob->len + call->blob->tail_len;
    return call->args != NULL ? call->args->len : 0;
}

typedef struct qrpc__fe_ops {
    /*
     * fe_init creates the FrontEnd of node n for destination addr and sets
     * *fep, the first argument of every other operation.  Errors:
     * QRPC_EADDR (addr is not for this transport), QRPC_ENOMEM.
     */
    int (*fe_init)(void **fep, qrpc_node *n, const char *addr);

    /*
     * fe_close stops the FrontEnd: calls in flight complete with
     * QRPC_ECLOSED and every later fe_call fails with QRPC_ECLOSED.  It
     * does not free anything, since clients may still hold the FrontEnd.
     * Called once, by qrpc_node_destroy().
     */
    void (*fe_close)(void *fe);

    /* fe_fini frees the FrontEnd; it was closed and no client is left. */
    void (*fe_fini)(void *fe);

    /*
     * fe_call starts call.  On 0 the transport has taken the storage of
     * *call->args (and left it empty) -- or, when call->blob is not NULL,
     * taken a reference to the blob for as long as it needs the bytes
     * (args is then not used) -- and runs call->done exactly once,
     * on the calling thread before fe_call returns or later on a thread
     * of its own: with status 0 and a reader over the results, or with a
     * nonzero status and NULL.  When call->reply is not NULL the results
     * are in *call->reply by then (the transport may reuse or replace its
     * storage) and the reader reads them there.  On a negative return
     * nothing was sent, done will not run, and *call->args is untouched
     * and still the caller's.
     */
    int (*fe_call)(void *fe, const qrpc__call *call);

    /*
     * fe_wait (may be NULL) is called by a synchronous caller after a
     * successful fe_call, before it sleeps until its done has run: the
     * transport may use the calling thread to bring the reply in (read
     * it, and run done there) until *done is true or deadline_ns.  len is
     * the call's qrpc__call_len(), by which fe_call may have chosen a
     * connection.  It may return at any time, done or not; the caller
     * then sleeps.  It returns whether it used the thread (and spun,
     * config spin_us, so the caller does not spin again).  It takes
     * nothing and never runs done other than through the transport's
     * ordinary completion.
     */
    bool (*fe_wait)(void *fe, size_t len, const atomic_bool *done, uint64_t deadline_ns);
} qrpc__fe_ops;

typedef struct qrpc__tran {
    const char *tran_name;      /* "local" */
    const qrpc__fe_ops *tran_fe;
} qrpc__tran;

extern const qrpc__tran qrpc__tran_local;

/* The core's handle on one FrontEnd. */
typedef struct qrpc__fe {
    const qrpc__tran *tran;
    void *data;                 /* the transport's, from fe_init */
    /* bound calls skip it until then (bind.c, qrpc__fe_mark_down) */
    atomic_uint_least64_t down_until_ns;
} qrpc__fe;

static inline int qrpc__fe_init(qrpc__fe *fe, const qrpc__tran *t,
                                qrpc_node *n, const char *addr)
{
    fe->tran = t;
    fe->data = NULL;
    atomic_init(&fe->down_until_ns, 0);
    return t->tran_fe->fe_init(&fe->data, n, addr);
}

static inline void qrpc__fe_close(qrpc__fe *fe)
{
    fe->tran->tran_fe->fe_close(fe->data);
}

static inline void qrpc__fe_fini(qrpc__fe *fe)
{
    fe->tran->tran_fe->fe_fini(fe->data);
    fe->data = NULL;
}

static inline int qrpc__fe_call(qrpc__fe *fe, const qrpc__call *call)
{
    return fe->tran->tran_fe->fe_call(fe->data, call);
}

static inline bool qrpc__fe_wait(qrpc__fe *fe, size_t len, const atomic_bool *done,
                                 uint64_t deadline_ns)
{
    return fe->tran->tran_fe->fe_wait != NULL &&
           fe->tran->tran_fe->fe_wait(fe->data, len, done, deadline_ns);
}

#pragma GCC visibility pop

#endif
