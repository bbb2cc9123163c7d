/*
 * net.h - the network side of a node, shared by the files that implement
 * it: the I/O thread (io.c), connections and their writer (conn.c), the
 * TCP transport's FrontEnds and listener (tcp.c) and the worker pool that
 * runs received requests (work.c).
 *
 * The shape, in the words of the original design: every node has one
 * background receive thread (here an epoll loop, the I/O thread) that owns
 * the listening socket and every connection's reads; one FrontEnd per
 * destination node holds the connection outgoing calls use; incoming
 * requests land in a queue from which the node's workers take them.
 * Sending never needs the I/O thread: a sender pushes its message on the
 * connection's lock-free queue and, if no thread is writing, becomes the
 * writer itself (conn.c); only a write that would block is handed to the
 * I/O thread, which finishes it when the socket is writable.
 *
 * Not an interface: runtime/src only.
 */
#ifndef QRPC_NET_H
#define QRPC_NET_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "core.h"
#include "frame.h"

#pragma GCC visibility push(hidden)

typedef struct qrpc__io qrpc__io;
typedef struct qrpc__conn qrpc__conn;
typedef struct qrpc__work qrpc__work;

/* ---- outgoing messages ------------------------------------------------- */

/*
 * A client call in flight: kept in its connection's pending table from
 * the moment it is queued until it completes, exactly once, with a reply,
 * a timeout or the connection's failure.
 */
typedef struct qrpc__pcall {
    uint32_t stream;
    uint32_t flags;             /* QRPC_METHOD_* */
    uint64_t deadline_ns;
    qrpc_done_fn done;
    void (*fn)(void);
    void *arg;
    qrpc_buf *reply;            /* qrpc_call(): the caller's buffer */
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
    uint8_t *body;              /* owned; freed with the message */
    uint32_t body_len;
    uint32_t body_off;          /* bytes of body put in frames so far */
    uint32_t frames_out;        /* frames built but not yet fully written */
    bool first_built;
} qrpc__omsg;

/* ---- connections ----------------------------------------------------------- */

typedef enum qrpc__conn_role {
    QRPC__CONN_CLIENT,          /* we dialled: requests out, replies in */
    QRPC__CONN_SERVER           /* accepted: requests in, replies out */
} qrpc__conn_role;

/* Creates a connection over the connected non-blocking socket fd and
 * registers it with the node's I/O thread; sends our HELLO.  On success
 * the connection holds fd and one reference for the caller. */
int qrpc__conn_new(qrpc_node *n, int fd, qrpc__conn_role role, const char *peer,
                   qrpc__conn **out);
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

/* Queues a reply (results taken in every case). */
void qrpc__conn_reply(qrpc__conn *c, uint32_t stream, int status, qrpc_buf *results);

/* Fails the connection: every pending call completes with
 * QRPC_EUNAVAILABLE (never sent) or `may_have_run`.  why is logged. */
void qrpc__conn_fail(qrpc__conn *c, int may_have_run, const char *why);

/* A worker has answered (or dropped) one request of this connection. */
void qrpc__conn_job_done(qrpc__conn *c);

/* I/O-thread entry points (io.c calls them). */
void qrpc__conn_on_readable(qrpc__conn *c);
void qrpc__conn_on_writable(qrpc__conn *c);
/* Expires calls past their deadline and a stalled peer; returns the next
 * deadline (ns) this connection needs the loop to wake for, or UINT64_MAX. */
uint64_t qrpc__conn_tick(qrpc__conn *c, uint64_t now);

/* ---- the I/O thread ----------------------------------------------------------- */

/* Starts the node's I/O thread if it is not running: QRPC_ENOMEM, QRPC_EIO. */
int qrpc__io_start(qrpc_node *n);
/* Stops and joins it after failing every connection with QRPC_ECLOSED. */
void qrpc__io_stop(qrpc_node *n);
/* Watches the listening socket fd (taken) for connections. */
int qrpc__io_listen(qrpc_node *n, int fd);
/* Registers fd for reading on behalf of c (or the listener when c is NULL). */
int qrpc__io_add(qrpc_node *n, int fd, qrpc__conn *c);
void qrpc__io_del(qrpc_node *n, int fd);
/* Asks for (or stops asking for) writability events on c's fd. */
void qrpc__io_want_write(qrpc_node *n, qrpc__conn *c, bool on);
/* Makes the loop recompute its timeout (a nearer deadline appeared). */
void qrpc__io_wake(qrpc_node *n, uint64_t deadline_ns);
/* Adds c to the connections the I/O thread watches (ticks, shutdown); the
 * loop itself drops it, and its reference, once c is dead. */
void qrpc__io_track(qrpc_node *n, qrpc__conn *c);

/* The socket of c (for epoll). */
int qrpc__conn_fd(const qrpc__conn *c);

/* ---- the TCP transport (tcp.c) ------------------------------------------------ */

extern const qrpc__tran qrpc__tran_tcp;
/* "host:port" or "[v6]:port" to a socket address (port 0 only if passive). */
int qrpc__addr_parse(const char *text, bool passive, struct sockaddr_storage *sa,
                     socklen_t *salen);
/* A socket address as "ip:port" or "[ip]:port". */
void qrpc__addr_format(const struct sockaddr *sa, char *out, size_t len);
/* Opens the node's listening socket on cfg.listen: QRPC_EADDR, QRPC_EIO. */
int qrpc__tcp_listen(qrpc_node *n);
/* Accepts what is waiting on the listening socket (I/O thread). */
void qrpc__tcp_accept(qrpc_node *n, int listenfd);

/* ---- the server side: received requests and the workers ------------------ */

/* A received request waiting for a worker. */
typedef struct qrpc__job {
    struct qrpc__job *next;
    qrpc__conn *conn;           /* holds a reference */
    qrpc__rx_msg msg;           /* the request; msg.body owned */
    uint64_t deadline_ns;
} qrpc__job;

/* Starts the node's workers (cfg.workers); QRPC_ENOMEM, QRPC_EIO. */
int qrpc__work_start(qrpc_node *n);
/* Stops and joins them; queued jobs are answered QRPC_ECLOSED. */
void qrpc__work_stop(qrpc_node *n);
/* Queues a job (taken). */
void qrpc__work_push(qrpc_node *n, qrpc__job *job);

/* ---- logging ------------------------------------------------------------------ */

void qrpc__log(const qrpc_node *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#pragma GCC visibility pop

#endif
