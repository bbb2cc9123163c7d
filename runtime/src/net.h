/*
 * net.h - the network side of a node, shared by the files that implement
 * it: the event loop and its threads (io.c), connections and their writer
 * (conn.c), the TCP transport's FrontEnds and listener (tcp.c) and the
 * running of received requests (work.c).
 *
 * The shape, after the original design: the node's background receive
 * threads (here a pool of loop threads sharing one epoll set) own the
 * listening socket and every connection's reads; one FrontEnd per
 * destination node holds the connection outgoing calls use.  Unlike the
 * original, a received request is not queued for another thread: the loop
 * thread that read it runs it (leader/followers, io.c), which saves a
 * thread hand-off per call.  Sending never needs the loop: a sender pushes
 * its message on the connection's lock-free queue and, if no thread is
 * writing, becomes the writer itself (conn.c); only a write that would
 * block, or one a sender chose to leave for later, is finished by a loop
 * thread.
 *
 * Not an interface: runtime/src only.
 */
#ifndef QRPC_NET_H
#define QRPC_NET_H

#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "core.h"
#include "dedup.h"
#include "frame.h"

#pragma GCC visibility push(hidden)

typedef struct qrpc__io qrpc__io;
typedef struct qrpc__conn qrpc__conn;

/* ---- outgoing messages ------------------------------------------------- */

/*
 * A client call in flight: kept in its connection's pending table from
 * the moment it is queued until it completes, exactly once, with a reply,
 * a timeout or the connection's failure.
 */
typedef struct qrpc__pcall {
    uint32_t stream;
    uint32_t flags;             /* QRPC_METHOD_* */
    uint64_t deadline_ns;       /* the attempt's (the heap's key) */
    uint64_t call_deadline_ns;  /* the call's: >= deadline_ns */
    uint64_t wait_ns;           /* the attempt's wait (qrpc__call), by which its
                                   deadline is put off while the writer is busy */
    qrpc_done_fn done;
    void (*fn)(void);
    void *arg;
    qrpc_buf *reply;            /* qrpc_call(): the caller's buffer */
    qrpc__attempt *att;         /* told how the call ended without a reply, or NULL */
    /*
     * Set by the writer, under the pending table's lock, before the first
     * write that could carry any of the request's bytes.  A failing
     * connection is shut down before its calls are looked at, so a call
     * still unmarked then was never sent.
     */
    bool sent;
    size_t heap_pos;            /* in the connection's deadline heap */
    struct qrpc__pcall *hnext;  /* pending table chain */
} qrpc__pcall;

/* One message on a connection's send queue. */
typedef struct qrpc__omsg {
    struct qrpc__omsg *next;    /* queue, then the writer's ring */
    uint8_t type;               /* QRPC__F_* of the first frame */
    uint32_t stream;
    /* the first frame's header and message header, ready to write */
    uint8_t head[QRPC__FRAME_HDR + QRPC__REQHDR_FIXED + QRPC__NAME_MAX];
    uint32_t head_len;
    uint8_t *body;              /* owned and freed with the message, unless: */
    qrpc__blob *blob;           /* not NULL: body is its bytes; a reference is held */
    uint32_t body_len;          /* body_len - tail_len bytes at body, then tail */
    const uint8_t *tail;        /* the blob's tail, or NULL */
    uint32_t tail_len;
    uint32_t body_off;          /* bytes of body put in frames so far */
    uint32_t frames_out;        /* frames built but not yet fully written */
    bool first_built;
    bool refused;               /* over the peer's max_message: never sent (conn_fill) */
} qrpc__omsg;

/* ---- connections ----------------------------------------------------------- */

typedef enum qrpc__conn_role {
    QRPC__CONN_CLIENT,          /* we dialled: requests out, replies in */
    QRPC__CONN_SERVER           /* accepted: requests in, replies out */
} qrpc__conn_role;

/* Creates a connection over the connected non-blocking socket fd and
 * registers it with the node's loop; sends our HELLO.  On success
 * the connection holds fd and one reference for the caller. */
int qrpc__conn_new(qrpc_node *n, int fd, qrpc__conn_role role, const char *peer,
                   qrpc__conn **out);

/*
 * A byte stream under a connection that is not a socket: the RDMA
 * transport's (rdma.c).  Each operation behaves as its socket call does
 * on a connected non-blocking socket, errors in errno.  The connection
 * uses the read side from one thread at a time and the write side from
 * one thread at a time, the two possibly at once.
 */
typedef struct qrpc__pipe_ops {
    /* read(2): bytes read (> 0), 0 at the end of the stream, or -1
     * (EAGAIN: nothing now, and the pipe's fd will poll readable when
     * something comes). */
    ssize_t (*p_read)(void *p, void *buf, size_t len);
    /*
     * sendmsg(2) of iov: the bytes taken (> 0), which the caller may then
     * free, or -1 (EAGAIN: no room now; EPIPE: broken).  Bytes not yet
     * taken stay the caller's, unchanged, and the next call offers them
     * again first.
     */
    ssize_t (*p_writev)(void *p, const struct iovec *iov, int iovcnt);
    /* After an EAGAIN: have the fd poll readable when room comes back. */
    void (*p_want_write)(void *p);
    /* shutdown(2), both ways: when it returns no write carries anything
     * more, and nothing offered to p_writev is read any more. */
    void (*p_shutdown)(void *p);
    /* close(2): frees the pipe and its fd. */
    void (*p_close)(void *p);
} qrpc__pipe_ops;

/* qrpc__conn_new over a pipe, whose descriptor for the loop is fd; on
 * success the connection owns the pipe. */
int qrpc__conn_new_pipe(qrpc_node *n, int fd, const qrpc__pipe_ops *pops, void *pipe,
                        qrpc__conn_role role, const char *peer, qrpc__conn **out);
void qrpc__conn_ref(qrpc__conn *c);
void qrpc__conn_unref(qrpc__conn *c);
/* True once the connection has failed or been closed. */
bool qrpc__conn_dead(const qrpc__conn *c);

/*
 * Queues a request for call (which the connection's pending table then
 * holds) with the encoded arguments args (taken on 0).  On a negative
 * return nothing was queued and args is the caller's.
 */
int qrpc__conn_request(qrpc__conn *c, const qrpc__call *call);

/*
 * Queues a reply (results taken in every case) and writes what is queued,
 * or, with later, has a loop thread write it soon, together with what
 * else is queued by then (the caller has more replies to come).
 */
void qrpc__conn_reply(qrpc__conn *c, uint32_t stream, int status, qrpc_buf *results,
                      bool later);
/* Writes what c has queued, unless another thread is writing it already. */
void qrpc__conn_flush(qrpc__conn *c);

/* Fails the connection: every pending call completes with
 * QRPC_EUNAVAILABLE (never sent) or `may_have_run`.  why is logged. */
void qrpc__conn_fail(qrpc__conn *c, int may_have_run, const char *why);

/* One request of this connection has been answered (or dropped). */
void qrpc__conn_job_done(qrpc__conn *c);

/*
 * Loop-thread entry points (io.c calls them).  A thread may read or write
 * c from the loop only while it owns c: qrpc__conn_own() says whether it
 * got it (if another thread owns it, that one is told to re-arm c),
 * qrpc__conn_disown() gives it back and re-arms c if needed.
 * on_readable returns the requests it read (a list through next, taken by
 * the caller; NULL if none); hup: the event said the peer hung up, so it
 * reads on to the end of the stream.
 */
bool qrpc__conn_own(qrpc__conn *c);
void qrpc__conn_disown(qrpc__conn *c);
struct qrpc__job *qrpc__conn_on_readable(qrpc__conn *c, bool hup);
void qrpc__conn_on_writable(qrpc__conn *c);
/* Expires calls past their deadline and a stalled peer; returns the next
 * deadline (ns) this connection needs the loop to wake for, or UINT64_MAX. */
uint64_t qrpc__conn_tick(qrpc__conn *c, uint64_t now);

/*
 * The FrontEnd of a remote node over connections, shared by the TCP and
 * RDMA transports: one connection, which every client of that
 * destination shares, and, with bulk_min, a second one (the bulk lane)
 * for calls whose arguments are bulk_min bytes or more, so that their
 * bytes never sit in the kernel's buffers ahead of a small call's.  Each
 * is dialled (by dial, on the calling thread, under the lock) on the
 * first call that needs it and again after it breaks, once per call.
 * A transport's FrontEnd begins with one.
 */
typedef struct qrpc__cfe {
    qrpc_node *node;
    pthread_mutex_t lock;       /* conn, bulk, closed; held while dialling */
    qrpc__conn *conn;
    qrpc__conn *bulk;           /* the bulk lane, or NULL */
    size_t bulk_min;            /* 0: no bulk lane (set after qrpc__cfe_init) */
    bool closed;
    /* connects, waiting until deadline_ns at most: 0 with a reference in
     * *out, or QRPC_EUNAVAILABLE (nothing was sent) */
    int (*dial)(struct qrpc__cfe *fe, uint64_t deadline_ns, qrpc__conn **out);
} qrpc__cfe;

void qrpc__cfe_init(qrpc__cfe *fe, qrpc_node *n,
                    int (*dial)(qrpc__cfe *fe, uint64_t deadline_ns, qrpc__conn **out));
/*
 * The transport ops fe_close, fe_fini and fe_call of transport.h, for a
 * FrontEnd that begins with a qrpc__cfe and was malloc'd whole (fe_fini
 * frees it); only fe_init is the transport's own.
 */
void qrpc__cfe_op_close(void *fe);
void qrpc__cfe_op_fini(void *fe);
int qrpc__cfe_op_call(void *fe, const qrpc__call *call);
/*
 * fe_wait for a FrontEnd over sockets: while *done is false, for a short
 * while at most (conn.c) and not past deadline_ns, the calling thread
 * reads the connection its call went on (chosen by len, as fe_call
 * chose) itself, if no other thread is reading it, and so completes its
 * own call (and any other whose reply comes meanwhile) without a loop
 * thread's wake-up.  Returns whether it read at all (false at once for a
 * pipe).
 */
bool qrpc__cfe_op_wait(void *fe, size_t len, const atomic_bool *done, uint64_t deadline_ns);

/* ---- the event loop ------------------------------------------------------------ */

/* Starts the node's loop threads (cfg.workers and the standby) if they are
 * not running: QRPC_ENOMEM, QRPC_EIO. */
int qrpc__io_start(qrpc_node *n);
/* Stops and joins them, then fails every connection with QRPC_ECLOSED. */
void qrpc__io_stop(qrpc_node *n);
/* Watches the listening socket fd (taken) for connections. */
int qrpc__io_listen(qrpc_node *n, int fd);
/* Watches the RDMA listener's fd (not taken: rdma.c closes it, after
 * qrpc__io_del) for connection requests. */
int qrpc__io_listen_rdma(qrpc_node *n, int fd);
/* Reads and writes c, and runs the requests it brought, as a loop thread
 * does on an event: for a thread that polls instead (rdma.c). */
void qrpc__io_poll_conn(qrpc_node *n, qrpc__conn *c);
/*
 * Registers c, whose socket is fd, for reading: the loop holds the
 * reference the caller took for it until c is dead.  *key is what
 * qrpc__io_rearm needs.  QRPC_ENOMEM, QRPC_EIO (then nothing was taken).
 */
int qrpc__io_track(qrpc_node *n, qrpc__conn *c, int fd, uint64_t *key);
/* Whether requests wait in the loop's queue (and the loop is not stopping). */
bool qrpc__io_more_queued(qrpc_node *n);
/* Sets what epoll watches on a registered connection's fd (edge-triggered):
 * reading (and the peer's hang-up), room to write; it reports again what
 * of that is pending. */
void qrpc__io_rearm(qrpc_node *n, int fd, uint64_t key, bool read, bool write);
void qrpc__io_del(qrpc_node *n, int fd);

/* Has the loop call qrpc__conn_flush(c) soon; takes a reference to c. */
void qrpc__io_flush_later(qrpc_node *n, qrpc__conn *c);
/* Makes the loop recompute its timeout (a nearer deadline appeared). */
void qrpc__io_wake(qrpc_node *n, uint64_t deadline_ns);

/* ---- the TCP transport (tcp.c) ------------------------------------------------ */

extern const qrpc__tran qrpc__tran_tcp;
/* "host:port" or "[v6]:port" to a socket address (port 0 only if passive). */
int qrpc__addr_parse(const char *text, bool passive, struct sockaddr_storage *sa,
                     socklen_t *salen);
/* A socket address as "ip:port" or "[ip]:port". */
void qrpc__addr_format(const struct sockaddr *sa, char *out, size_t len);
/* Opens the node's listening socket on cfg.listen: QRPC_EADDR, QRPC_EIO. */
int qrpc__tcp_listen(qrpc_node *n);
/* Accepts what is waiting on the listening socket (a loop thread). */
void qrpc__tcp_accept(qrpc_node *n, int listenfd);

/* ---- the server side: received requests ---------------------------------- */

/* A received request, run by the loop thread that read it. */
typedef struct qrpc__job {
    struct qrpc__job *next;
    qrpc__conn *conn;           /* holds a reference */
    qrpc__rx_msg msg;           /* the request; msg.body owned */
    uint64_t recv_ns;           /* when it was read */
    uint64_t deadline_ns;
} qrpc__job;

/*
 * Runs job (taken) through the reply cache and qrpc__dispatch() and
 * queues its reply, for the loop's next write while other requests wait
 * to run (qrpc__io_more_queued(); see qrpc__conn_reply's later).
 */
void qrpc__work_run(qrpc_node *n, qrpc__job *job);
/* Answers a job that will not run QRPC_ECLOSED and frees it (the node stops). */
void qrpc__work_refuse(qrpc__job *job);
/* The reply cache's answer callback (dedup.h): waiter is the waiting job. */
void qrpc__work_dedup_answer(void *arg, void *waiter, int status, const uint8_t *reply,
                             size_t len);

/* ---- logging ------------------------------------------------------------------ */

/* One line to the node's log (cfg.log), or to stderr as "qrpc: LINE". */
void qrpc__log(const qrpc_node *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void qrpc__vlog(const qrpc_node *n, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

#pragma GCC visibility pop

#endif
