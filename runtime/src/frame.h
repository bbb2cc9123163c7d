/*
 * frame.h - the framing of qrpc's stream transports (TCP now, RDMA's
 * in-band messages later): frame and message headers, and an incremental
 * reader that turns the bytes of one connection into whole messages.
 *
 * The format is specified in qrpc-protocol(7).  In short: a connection is
 * a sequence of frames, each a 16-byte header and a payload of at most
 * the negotiated frame size.  A message (a request or a reply) is one or
 * more frames of one stream id: the first (REQUEST or REPLY) carries the
 * message header and the start of the body, DATA frames carry the rest,
 * and the frame with flag END completes it.  Frames of different streams
 * interleave freely, so a 64 MiB message never holds a small one behind
 * it.  All integers are little-endian.
 *
 * Every byte here comes from the network and is hostile.  The reader
 * checks each header before acting on it, bounds the memory one
 * connection can make it hold (messages being assembled, bytes buffered),
 * and reports a protocol error instead of trusting anything; the caller
 * then closes that connection and nothing else.
 *
 * This module does no I/O and takes no locks: the transport feeds it
 * what read() returned and writes what it encodes.
 */
#ifndef QRPC_FRAME_H
#define QRPC_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "qrpc.h"

#pragma GCC visibility push(hidden)

/* ---- little-endian loads and stores ------------------------------------------ */

/* The byte order of everything qrpc puts on the wire (frames, and the RDMA
 * transport's own messages). */

static inline uint16_t qrpc__get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

static inline uint32_t qrpc__get32(const uint8_t *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint32_t v;

    memcpy(&v, p, 4);
    return v;
#else
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
#endif
}

static inline uint64_t qrpc__get64(const uint8_t *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;

    memcpy(&v, p, 8);
    return v;
#else
    return (uint64_t)qrpc__get32(p + 4) << 32 | qrpc__get32(p);
#endif
}

static inline void qrpc__put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void qrpc__put32(uint8_t *p, uint32_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(p, &v, 4);
#else
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
#endif
}

static inline void qrpc__put64(uint8_t *p, uint64_t v)
{
    qrpc__put32(p, (uint32_t)v);
    qrpc__put32(p + 4, (uint32_t)(v >> 32));
}


#define QRPC__MAGIC0            0x51u   /* 'Q' */
#define QRPC__MAGIC1            0x52u   /* 'R' */
#define QRPC__PROTO_VERSION     1u
#define QRPC__FRAME_HDR         16u     /* bytes in a frame header */
#define QRPC__FRAME_MIN         1024u   /* smallest frame payload limit */
#define QRPC__FRAME_DEFAULT     65536u  /* default frame payload limit */
#define QRPC__NAME_MAX          255u    /* longest service name */

/* Frame types. */
enum {
    QRPC__F_HELLO   = 1,    /* first frame each way: who I am, my limits */
    QRPC__F_REQUEST = 2,    /* first frame of a request */
    QRPC__F_REPLY   = 3,    /* first frame of a reply */
    QRPC__F_DATA    = 4,    /* more of the message of its stream */
    QRPC__F_PING    = 5,    /* liveness probe; answered by PONG */
    QRPC__F_PONG    = 6,
    QRPC__F_GOAWAY  = 7     /* the sender closes the connection after this */
};

/* Frame flags. */
#define QRPC__FF_END    0x01u   /* the last frame of its message */

/*
 * A frame header on the wire:
 *   0  u8  magic 'Q'      1  u8  magic 'R'     2  u8  version (1)
 *   3  u8  type           4  u8  flags         5  u8  0
 *   6  u16 0 (reserved)   8  u32 stream id    12  u32 payload length
 */
typedef struct qrpc__fhdr {
    uint8_t type;
    uint8_t flags;
    uint32_t stream;
    uint32_t len;
} qrpc__fhdr;

/*
 * The HELLO payload (24 bytes):
 *   u64 incarnation (the sender's node, unique per process start)
 *   u32 max_frame   (largest frame payload the sender accepts)
 *   u32 max_message (largest message body the sender accepts)
 *   u32 max_inflight (requests the sender accepts at once on this connection)
 *   u32 0 (reserved)
 */
typedef struct qrpc__hello {
    uint64_t incarnation;
    uint32_t max_frame;
    uint32_t max_message;
    uint32_t max_inflight;
} qrpc__hello;
#define QRPC__HELLO_LEN 24u

/*
 * The header at the start of a REQUEST payload (56 + name_len bytes),
 * followed by the first bytes of the body (the encoded arguments):
 *   u32 body length (of the whole body, over all frames)
 *   u32 method       u32 version
 *   u32 flags        (QRPC_METHOD_* of the call, and QRPC__REQ_RETRY)
 *   u64 client id    u64 sequence number
 *   u64 acknowledged (client has the replies to every seq <= this; 0: none)
 *   u64 incarnation  (of the server a retransmission is addressed to: the
 *                     one its first transmission reached; 0 otherwise)
 *   u32 deadline     (ms the caller will still wait; 0: no deadline)
 *   u16 name length (1..255)   u16 0 (reserved)
 *   the service name ("bank.Bank"), without NUL
 */
typedef struct qrpc__reqhdr {
    uint32_t body_len;
    uint32_t method;
    uint32_t version;
    uint32_t flags;
    uint64_t client_id;
    uint64_t seq;
    uint64_t acked;
    uint64_t incarnation;
    uint32_t deadline_ms;
    uint16_t name_len;
    char name[QRPC__NAME_MAX + 1];      /* NUL-terminated copy */
} qrpc__reqhdr;
#define QRPC__REQHDR_FIXED 56u

/*
 * A request flag of the wire only, beside QRPC_METHOD_*: this request is
 * a retransmission of (client id, sequence number).  The server never
 * runs it unless its incarnation is the one the header names.
 */
#define QRPC__REQ_RETRY 0x100u

/*
 * The header at the start of a REPLY payload (8 bytes), followed by the
 * first bytes of the body (the encoded results when status is 0):
 *   u32 body length   i32 status (0, a positive application error, or a
 *                                 negative QRPC_E* code)
 */
typedef struct qrpc__rephdr {
    uint32_t body_len;
    int32_t status;
} qrpc__rephdr;
#define QRPC__REPHDR_LEN 8u

/* ---- encoding (for the writer) ------------------------------------------- */

void qrpc__fhdr_put(uint8_t out[QRPC__FRAME_HDR], const qrpc__fhdr *h);
void qrpc__hello_put(uint8_t out[QRPC__HELLO_LEN], const qrpc__hello *h);
/* Returns the bytes written: QRPC__REQHDR_FIXED + name_len. */
size_t qrpc__reqhdr_put(uint8_t *out, const qrpc__reqhdr *h);
void qrpc__rephdr_put(uint8_t out[QRPC__REPHDR_LEN], const qrpc__rephdr *h);

/* ---- the incremental reader --------------------------------------------------- */

/*
 * Limits one connection's reader enforces (from the node's config).  The
 * last two count only messages whose first frame has no END (a message
 * of one frame is bounded by max_frame, and the peer's rule in
 * qrpc-protocol(7) does not count it): to accept every peer that keeps to
 * our HELLO, max_streams must be at least its max_inflight and
 * max_buffered at least its max_message.
 */
typedef struct qrpc__rx_limits {
    uint32_t max_frame;         /* frame payload, >= QRPC__FRAME_MIN */
    uint32_t max_message;       /* message body */
    uint32_t max_streams;       /* messages being assembled at once */
    uint64_t max_buffered;      /* body bytes held for incomplete messages */
} qrpc__rx_limits;

/* One whole message, handed to the owner.  body is malloc'd; owner frees. */
typedef struct qrpc__rx_msg {
    uint8_t type;               /* QRPC__F_REQUEST or QRPC__F_REPLY */
    uint32_t stream;
    qrpc__reqhdr req;           /* when type is REQUEST */
    qrpc__rephdr rep;           /* when type is REPLY */
    uint8_t *body;              /* NULL when body_len is 0 */
    uint32_t body_len;
} qrpc__rx_msg;

/*
 * What the reader reports to its owner, from inside qrpc__rx_feed().
 * on_msg takes ownership of msg->body.  on_hello, on_ping, on_pong and
 * on_goaway report control frames.  Any callback may return nonzero to
 * stop feeding (qrpc__rx_feed then returns that value at once).  A NULL
 * callback ignores what it would report (a NULL on_msg frees the body).
 */
typedef struct qrpc__rx_ops {
    int (*on_hello)(void *owner, const qrpc__hello *h);
    int (*on_msg)(void *owner, qrpc__rx_msg *msg);
    int (*on_ping)(void *owner, uint32_t stream);
    int (*on_pong)(void *owner, uint32_t stream);
    int (*on_goaway)(void *owner, uint32_t reason);
} qrpc__rx_ops;

typedef struct qrpc__rx qrpc__rx;

/* Creates a reader; NULL on OOM.  limits are copied. */
qrpc__rx *qrpc__rx_new(const qrpc__rx_limits *limits, const qrpc__rx_ops *ops,
                       void *owner);
/* Frees the reader and every partly assembled message.  NULL is ignored. */
void qrpc__rx_free(qrpc__rx *rx);

/*
 * Consumes n bytes (any split: one byte at a time works).  Returns 0, a
 * callback's nonzero value, QRPC_EPROTO for a protocol violation or
 * QRPC_ENOMEM, the last two with a static description in *why (for the
 * log line; *why is NULL otherwise), after which the reader must not be
 * fed again, nor after a callback's nonzero value (the bytes after that
 * frame were not consumed).  A callback must not free the reader.
 * Violations: bad magic, version, type or reserved bits (flags but END on
 * REQUEST, REPLY and DATA, any flag on control frames, request flags but
 * QRPC_METHOD_*, a stream id on HELLO or GOAWAY); a frame over max_frame;
 * a HELLO payload other than 24 bytes or with limits below the minimums
 * (max_frame QRPC__FRAME_MIN, max_message 1024, max_inflight 1), a PING
 * or PONG payload other than 0 or 8 bytes, a GOAWAY payload other than 4;
 * a first frame whose payload does not hold its message header; a name
 * of length 0 or over 255; a body over max_message; DATA for a stream not
 * being assembled; REQUEST or REPLY for a stream already being assembled;
 * more than max_streams messages or max_buffered bytes being assembled;
 * more body bytes than the header declared, or END before all of them; a
 * HELLO that is not the first frame, a second HELLO, or any frame before
 * the HELLO.
 */
int qrpc__rx_feed(qrpc__rx *rx, const uint8_t *p, size_t n, const char **why);

/*
 * The zero-copy path for large bodies.  When the reader is inside a body
 * frame with at least min of its bytes still to come, qrpc__rx_window()
 * makes room for all of them in the message's own buffer and sets *p and
 * *len to where they go (*len is exactly the rest of the frame), so the
 * caller can read() them there instead of into a buffer to be fed;
 * otherwise it sets *p to NULL.  No more is allocated than feeding the
 * same frame would: the frame's length was checked against the limits
 * when its header was read.  Returns 0, or QRPC_ENOMEM with *why set, as
 * qrpc__rx_feed() (the reader is then dead).
 *
 * qrpc__rx_window_done() then reports n <= *len bytes written at *p; when
 * they end the frame, it does what feeding them would (a whole message goes
 * to on_msg), and returns what qrpc__rx_feed() would.  Between the two
 * calls the reader must be neither fed nor freed.
 */
int qrpc__rx_window(qrpc__rx *rx, uint32_t min, uint8_t **p, size_t *len, const char **why);
int qrpc__rx_window_done(qrpc__rx *rx, size_t n, const char **why);

/* True between frames (nothing half-read): for idle/slow-peer timeouts. */
bool qrpc__rx_idle(const qrpc__rx *rx);
/* True while some message has frames still to come. */
bool qrpc__rx_assembling(const qrpc__rx *rx);

#pragma GCC visibility pop

#endif
