/*
 * verbs.h - the thin layer between the RDMA transport (rdma.c) and the
 * RDMA hardware: the few verbs and connection-manager calls the transport
 * makes, as one ops struct per provider.
 *
 * Two providers fill it:
 *  - "verbs" (verbs_ibv.c): the real thing, libibverbs and librdmacm.
 *    rdma_cm resolves addresses and connects reliable-connected queue
 *    pairs; everything else is a direct ibv_* call.  Only in builds with
 *    the verbs headers (QRPC_HAVE_VERBS), and only where a device exists.
 *  - "emu" (verbs_emu.c): a software emulation for machines without RDMA
 *    devices, such as our build and CI machines.  It moves bytes between
 *    processes over a loopback TCP socket per queue pair, with a thread
 *    per queue pair that plays the adapter, and keeps the semantics the
 *    transport relies on: work requests complete in order, a SEND
 *    consumes the oldest posted receive, RDMA READ and WRITE-with-
 *    immediate are checked against the remote key, bounds and access
 *    flags of the peer's registered memory, and any error moves the queue
 *    pair to the error state, where every outstanding and later work
 *    request completes with QRPC__VWC_FLUSH.  It is stricter than the
 *    hardware in one way: a SEND that finds no receive posted fails the
 *    queue pair at once (hardware with rnr_retry 7 would retry for ever),
 *    so that a flow-control bug fails a test instead of stalling it.
 *    It is a test double for the hardware, not for the transport: the
 *    transport runs unchanged above either.
 *
 * Not here: buffers, credits, framing, what a message means (rdma.c).
 *
 * Threads: an endpoint's send side (post_send, poll_cq on the send CQ)
 * and its receive side (post_recv, poll_cq on the receive CQ) may be used
 * by two threads at once, one each, and arm may be called for either CQ
 * from either thread, also at once; everything else is called by one
 * thread at a time.  Providers report errors as qrpc error codes, and put
 * a line saying what went wrong in `why` where a function has one.
 */
#ifndef QRPC_VERBS_H
#define QRPC_VERBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#pragma GCC visibility push(hidden)

typedef struct qrpc__vdev qrpc__vdev;   /* a device context and protection domain */
typedef struct qrpc__vlis qrpc__vlis;   /* a listening connection manager id */
typedef struct qrpc__vep qrpc__vep;     /* one RC queue pair, its two CQs, its channel */

/* Access flags of a memory registration (as IBV_ACCESS_*). */
#define QRPC__VACC_LOCAL_WRITE  1u
#define QRPC__VACC_REMOTE_WRITE 2u
#define QRPC__VACC_REMOTE_READ  4u

/* A registered memory region. */
typedef struct qrpc__vmr {
    void *addr;
    size_t len;
    uint32_t lkey;              /* for local scatter/gather entries */
    uint32_t rkey;              /* for the peer's RDMA READ and WRITE */
    void *prov;                 /* the provider's (struct ibv_mr *, ...) */
} qrpc__vmr;

/* One scatter/gather entry: len bytes at addr, inside the region of lkey. */
typedef struct qrpc__vsge {
    void *addr;
    uint32_t len;
    uint32_t lkey;
} qrpc__vsge;

typedef enum qrpc__vop {
    QRPC__VOP_SEND,             /* into the peer's oldest posted receive */
    QRPC__VOP_WRITE_IMM,        /* into remote_addr/rkey; consumes a receive, which
                                   completes with imm and the length */
    QRPC__VOP_READ              /* from remote_addr/rkey into sge */
} qrpc__vop;

/* A send-queue work request; always signaled (it completes on the send CQ). */
typedef struct qrpc__vsend {
    uint64_t wr_id;
    qrpc__vop op;
    qrpc__vsge sge;             /* len 0: no data (addr and lkey unused) */
    uint64_t remote_addr;       /* WRITE_IMM and READ */
    uint32_t rkey;              /* WRITE_IMM and READ */
    uint32_t imm;               /* WRITE_IMM (host order; the provider converts) */
} qrpc__vsend;

/* Completion status (the IBV_WC_* the transport tells apart). */
typedef enum qrpc__vwc_status {
    QRPC__VWC_OK = 0,
    QRPC__VWC_FLUSH,            /* the queue pair was in the error state */
    QRPC__VWC_LOC_LEN,          /* a message longer than the receive buffer */
    QRPC__VWC_LOC_PROT,         /* a local sge outside its registration */
    QRPC__VWC_REM_ACCESS,       /* bad rkey, bounds or access at the peer */
    QRPC__VWC_REM_INV_REQ,      /* the peer refused the request (e.g. too long) */
    QRPC__VWC_RNR,              /* no receive posted at the peer */
    QRPC__VWC_RETRY,            /* transport retries exhausted: the peer is gone */
    QRPC__VWC_FATAL             /* anything else */
} qrpc__vwc_status;

typedef enum qrpc__vwc_opcode {
    QRPC__VWC_SEND,
    QRPC__VWC_READ,
    QRPC__VWC_WRITE,            /* the sender's completion of a WRITE_IMM */
    QRPC__VWC_RECV,             /* a SEND arrived */
    QRPC__VWC_RECV_IMM          /* a WRITE_IMM arrived: imm and byte_len are set */
} qrpc__vwc_opcode;

typedef struct qrpc__vwc {
    uint64_t wr_id;
    qrpc__vwc_status status;
    qrpc__vwc_opcode opcode;    /* valid only when status is QRPC__VWC_OK */
    uint32_t byte_len;          /* receives: the bytes placed */
    uint32_t imm;               /* QRPC__VWC_RECV_IMM (host order) */
} qrpc__vwc;

typedef enum qrpc__vcq {
    QRPC__VCQ_SEND,
    QRPC__VCQ_RECV
} qrpc__vcq;

/* Sizes of a queue pair and its CQs; each CQ holds max_send + max_recv. */
typedef struct qrpc__vcaps {
    uint32_t max_send;          /* send work requests outstanding at once */
    uint32_t max_recv;          /* receives posted at once */
} qrpc__vcaps;

/* The most private data a connect or accept carries (rdma_cm's RC limit). */
#define QRPC__VPDATA_MAX 56

typedef struct qrpc__verbs_ops {
    const char *name;           /* "verbs", "emu" */
    /*
     * The transport name under which nodes advertise their address in
     * the cluster table: "rdma", "rdma-emu".  Nodes reach each other this
     * way only when both use the same provider.
     */
    const char *transport;

    /* Opens the first usable device: QRPC_ENOTSUP (none), QRPC_ENOMEM, QRPC_EIO. */
    int (*dev_open)(qrpc__vdev **out, char *why, size_t why_len);
    /* Closes it; every endpoint, listener and region is gone by then. */
    void (*dev_close)(qrpc__vdev *d);

    /* Registers [addr, addr+len) (len > 0) with access QRPC__VACC_*:
     * QRPC_ENOMEM, QRPC_EIO. */
    int (*reg_mr)(qrpc__vdev *d, void *addr, size_t len, unsigned access, qrpc__vmr *out);
    /* Deregisters: when it returns, no adapter (or emulation thread) touches
     * the memory any more, and the peer's accesses with the rkey fail. */
    void (*dereg_mr)(qrpc__vdev *d, qrpc__vmr *mr);

    /*
     * Listens on addr ("host:port", port 0: any) and puts the address it
     * listens on in bound.  QRPC_EADDR, QRPC_EIO, QRPC_ENOMEM.
     */
    int (*listen)(qrpc__vdev *d, const char *addr, qrpc__vlis **out, char *bound,
                  size_t bound_len);
    /* A descriptor that polls readable when accept may have something. */
    int (*listen_fd)(qrpc__vlis *l);
    /*
     * Takes the next connection request, without blocking for more than
     * a moment: on 0, *out is a new endpoint (its queue pair created, not
     * yet connected) and pdata/pdata_len the private data of the request
     * (pdata has QRPC__VPDATA_MAX bytes of room); peer is its address.
     * The caller posts its receives, then calls accept_finish or ep_close.
     * 0 with *out NULL: nothing waiting.  Errors concern that request
     * only (it was refused); the listener goes on: QRPC_EPROTO (not a
     * valid request), QRPC_EIO (none in time, or the socket failed),
     * QRPC_ENOMEM.
     */
    int (*accept)(qrpc__vlis *l, const qrpc__vcaps *caps, qrpc__vep **out, void *pdata,
                  size_t *pdata_len, char *peer, size_t peer_len);
    /* Accepts with our private data (at most QRPC__VPDATA_MAX bytes):
     * QRPC_EIO (the requester is gone). */
    int (*accept_finish)(qrpc__vep *e, const void *pdata, size_t pdata_len);
    void (*listen_close)(qrpc__vlis *l);

    /*
     * Connecting, in two steps so that receives are posted before the
     * peer can send: connect_start resolves addr ("host:port") and creates
     * the endpoint; connect_finish sends our private data and waits for
     * the peer's accept and its private data (peer_pdata: QRPC__VPDATA_MAX
     * bytes of room).  Each waits until deadline (CLOCK_MONOTONIC ns) at
     * most.  QRPC_EADDR, QRPC_EUNAVAILABLE (refused, unreachable, timed
     * out), QRPC_ENOMEM; after a failed connect_finish the caller still
     * closes the endpoint.
     */
    int (*connect_start)(qrpc__vdev *d, const char *addr, const qrpc__vcaps *caps,
                         uint64_t deadline, qrpc__vep **out, char *why, size_t why_len);
    int (*connect_finish)(qrpc__vep *e, const void *pdata, size_t pdata_len,
                          void *peer_pdata, size_t *peer_pdata_len, uint64_t deadline,
                          char *why, size_t why_len);

    /*
     * A descriptor (edge-triggered use is fine) that polls readable when
     * a completion arrived on a CQ armed since, or the connection went
     * down.  Owned by the endpoint.
     */
    int (*ep_fd)(qrpc__vep *e);
    /*
     * Consumes what cq's completions made ep_fd readable (not what the
     * other CQ's did: those stay announced for the thread that polls it)
     * and asks for the next completion of cq; completions already queued
     * are not announced: poll after arming.
     */
    int (*arm)(qrpc__vep *e, qrpc__vcq cq);

    /* Posts one receive (sge.len bytes of room): QRPC_EIO, QRPC_ENOMEM (full:
     * max_recv posted whose completions have not been polled yet). */
    int (*post_recv)(qrpc__vep *e, uint64_t wr_id, const qrpc__vsge *sge);
    /* Posts one send-queue request: QRPC_EIO, QRPC_ENOMEM (full: max_send
     * posted whose completions have not been polled yet). */
    int (*post_send)(qrpc__vep *e, const qrpc__vsend *wr);
    /* Takes up to n completions of cq: how many (>= 0), or QRPC_EIO. */
    int (*poll_cq)(qrpc__vep *e, qrpc__vcq cq, qrpc__vwc *wc, int n);

    /* Moves the queue pair to the error state (outstanding requests flush)
     * and tells the peer; ep_fd polls readable.  Idempotent. */
    void (*disconnect)(qrpc__vep *e);
    /* Frees the endpoint; disconnects first if needed. */
    void (*ep_close)(qrpc__vep *e);
} qrpc__verbs_ops;

extern const qrpc__verbs_ops qrpc__verbs_emu;
#ifdef QRPC_HAVE_VERBS
extern const qrpc__verbs_ops qrpc__verbs_ibv;
#endif

#pragma GCC visibility pop

#endif
