/*
 * frame.c - the framing of frame.h: encoders for the frame, HELLO,
 * request and reply headers, and the incremental reader that turns one
 * connection's bytes into control frames and whole messages.
 *
 * The reader is a byte-level state machine.  Each state waits for a fixed
 * number of bytes (a frame header, a message header, a service name, a
 * control payload) or copies body bytes.  When the bytes a state needs are
 * all in the input, they are parsed where they lie; only a header split
 * across two feeds is gathered in the small staging buffer first.  Every
 * field is checked before it is acted on, and nothing is read past the
 * n bytes given.
 *
 * Memory: a body buffer grows as its bytes arrive (doubling, capped at the
 * declared body length), so a peer that declares 2 MiB and sends ten
 * bytes costs ten bytes and the constants below.  A message whose first
 * frame has END (most small calls) is read into the reader's own
 * rx_stream, costs one malloc of its body, handed to on_msg as is, and
 * counts against neither max_streams nor max_buffered: it is bounded by
 * max_frame, only one is read at a time, and a sender could not keep to
 * limits that counted it (see qrpc-protocol(7), "Splitting and
 * interleaving").  Other messages are counted, max_buffered against the
 * body bytes of the frames accepted so far for them, except that one
 * declared at least RX_BODY_WHOLE (4 MiB) long counts its whole declared
 * length from its first frame and is allocated whole: that is what a
 * sender keeping to those rules already allows for, and the kernel backs
 * the allocation only as bytes land in it.  The heap held for them is at
 * most twice max_buffered, plus per message RX_BODY_MIN, one rx_stream
 * (about 370 bytes, mostly the service name) and two table slots; add
 * max_frame for the one-frame message being read.
 *
 * Messages being assembled over several frames live in an open-addressing
 * table keyed by stream id, with linear probing and backward-shift
 * deletion.  The ids are the peer's choice, so they are hashed with a
 * per-reader random key: a peer cannot pick ids that all land in one run
 * and turn each lookup into a scan of max_streams entries.
 *
 * Not here: I/O, locks, what a message means (the transport and the core
 * decide that), and the writer side beyond the header encoders.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "frame.h"
#include "mem.h"

/* Smallest max_message a HELLO may declare (qrpc_node_config's minimum). */
#define RX_MIN_MESSAGE 1024u
/* First allocation of a body assembled over several feeds. */
#define RX_BODY_MIN 256u
/*
 * A body assembled over several frames and declared at least this long is
 * counted against max_buffered whole at its first frame, and allocated
 * whole at its first byte, on huge pages: growing it by doubling would
 * mean a fault per 4 KiB page and copies (remapping a huge-page range as
 * it grows measured slower still).
 */
#define RX_BODY_WHOLE QRPC__MEM_HUGE_MIN
/* Slots of a new stream table; a power of two. */
#define RX_SLOTS_MIN 16u
/* Request flags a peer may set: QRPC_METHOD_* of qrpc.h, and RETRY. */
#define RX_REQ_FLAGS (QRPC_METHOD_IDEMPOTENT | QRPC_METHOD_ONEWAY | QRPC__REQ_RETRY)

/* ---- encoders --------------------------------------------------------------- */

void qrpc__fhdr_put(uint8_t out[QRPC__FRAME_HDR], const qrpc__fhdr *h)
{
    out[0] = QRPC__MAGIC0;
    out[1] = QRPC__MAGIC1;
    out[2] = QRPC__PROTO_VERSION;
    out[3] = h->type;
    out[4] = h->flags;
    out[5] = 0;
    qrpc__put16(out + 6, 0);
    qrpc__put32(out + 8, h->stream);
    qrpc__put32(out + 12, h->len);
}

void qrpc__hello_put(uint8_t out[QRPC__HELLO_LEN], const qrpc__hello *h)
{
    qrpc__put64(out, h->incarnation);
    qrpc__put32(out + 8, h->max_frame);
    qrpc__put32(out + 12, h->max_message);
    qrpc__put32(out + 16, h->max_inflight);
    qrpc__put32(out + 20, 0);
}

size_t qrpc__reqhdr_put(uint8_t *out, const qrpc__reqhdr *h)
{
    qrpc__put32(out, h->body_len);
    qrpc__put32(out + 4, h->method);
    qrpc__put32(out + 8, h->version);
    qrpc__put32(out + 12, h->flags);
    qrpc__put64(out + 16, h->client_id);
    qrpc__put64(out + 24, h->seq);
    qrpc__put64(out + 32, h->acked);
    qrpc__put64(out + 40, h->incarnation);
    qrpc__put32(out + 48, h->deadline_ms);
    qrpc__put16(out + 52, h->name_len);
    qrpc__put16(out + 54, 0);
    memcpy(out + QRPC__REQHDR_FIXED, h->name, h->name_len);
    return QRPC__REQHDR_FIXED + (size_t)h->name_len;
}

void qrpc__rephdr_put(uint8_t out[QRPC__REPHDR_LEN], const qrpc__rephdr *h)
{
    qrpc__put32(out, h->body_len);
    qrpc__put32(out + 4, (uint32_t)h->status);
}

/* ---- the reader's state --------------------------------------------------- */

/* What the reader waits for next. */
enum {
    RX_FHDR,        /* a frame header (QRPC__FRAME_HDR bytes) */
    RX_MHDR,        /* a first frame's message header, its fixed part */
    RX_NAME,        /* a REQUEST's service name (name_len bytes) */
    RX_BODY,        /* body bytes of rx->cur, rx->left of them in this frame */
    RX_CTRL         /* a control frame's payload (rx->fh.len bytes) */
};

/* A message being assembled.  msg.body_len is the declared length. */
typedef struct rx_stream {
    qrpc__rx_msg msg;
    uint32_t got;               /* body bytes received */
    uint32_t cap;               /* bytes allocated at msg.body */
    bool whole;                 /* counted and allocated whole (RX_BODY_WHOLE) */
} rx_stream;

/* A slot of the stream table; s is NULL when the slot is empty. */
typedef struct rx_slot {
    uint32_t id;
    uint32_t hash;
    rx_stream *s;
} rx_slot;

struct qrpc__rx {
    qrpc__rx_limits lim;
    qrpc__rx_ops ops;
    void *owner;
    uint8_t state;              /* RX_* */
    bool hello;                 /* the peer's HELLO has been read */
    bool dead;                  /* a violation or OOM was reported */
    qrpc__fhdr fh;              /* the frame being read, once its header is */
    uint32_t left;              /* its payload bytes not yet consumed */
    uint32_t staged;            /* bytes in stage */
    rx_stream *cur;             /* the message this frame's bytes go to */
    /*
     * Headers of first frames are parsed here, and a message whose first
     * frame has END is assembled here too; other messages move to an
     * rx_stream of their own in the table once their header is read.
     */
    rx_stream one;
    rx_slot *slots;             /* NULL, or a power of two of them */
    size_t mask;                /* slots - 1 */
    uint32_t nstreams;          /* streams in the table */
    uint64_t buffered;          /* body bytes accepted for the table's messages */
    uint64_t key;               /* of the stream id hash */
    uint8_t stage[QRPC__NAME_MAX];  /* a header split across feeds */
};

_Static_assert(QRPC__NAME_MAX >= QRPC__FRAME_HDR && QRPC__NAME_MAX >= QRPC__REQHDR_FIXED &&
               QRPC__NAME_MAX >= QRPC__HELLO_LEN && QRPC__NAME_MAX >= QRPC__REPHDR_LEN,
               "the staging buffer holds every header");

/* Marks the reader dead and reports violation msg. */
static int rx_fail(qrpc__rx *rx, const char **why, const char *msg)
{
    rx->dead = true;
    *why = msg;
    return QRPC_EPROTO;
}

static int rx_oom(qrpc__rx *rx, const char **why)
{
    rx->dead = true;
    *why = "out of memory";
    return QRPC_ENOMEM;
}

/* ---- the stream table --------------------------------------------------------- */

/* murmur3's 64-bit finaliser over the keyed id: a bijection, so no id is lost. */
static inline uint32_t rx_hash(const qrpc__rx *rx, uint32_t id)
{
    uint64_t x = id ^ rx->key;

    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdu;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53u;
    x ^= x >> 33;
    return (uint32_t)x;
}

static rx_stream *rx_find(const qrpc__rx *rx, uint32_t id)
{
    size_t i;

    if (rx->nstreams == 0)
        return NULL;
    for (i = rx_hash(rx, id) & rx->mask; rx->slots[i].s != NULL; i = (i + 1) & rx->mask)
        if (rx->slots[i].id == id)
            return rx->slots[i].s;
    return NULL;
}

/* Places an entry known to be absent; the table has a free slot. */
static void rx_place(rx_slot *slots, size_t mask, const rx_slot *e)
{
    size_t i = e->hash & mask;

    while (slots[i].s != NULL)
        i = (i + 1) & mask;
    slots[i] = *e;
}

/* Adds s (its id is not in the table), growing to keep the load <= 1/2. */
static int rx_insert(qrpc__rx *rx, rx_stream *s)
{
    rx_slot e = { s->msg.stream, rx_hash(rx, s->msg.stream), s };
    size_t cap = rx->slots == NULL ? 0 : rx->mask + 1;

    if (((size_t)rx->nstreams + 1) * 2 > cap) {
        size_t ncap = cap == 0 ? RX_SLOTS_MIN : cap * 2;
        rx_slot *ns = calloc(ncap, sizeof *ns);
        size_t i;

        if (ns == NULL)
            return QRPC_ENOMEM;
        for (i = 0; i < cap; i++)
            if (rx->slots[i].s != NULL)
                rx_place(ns, ncap - 1, &rx->slots[i]);
        free(rx->slots);
        rx->slots = ns;
        rx->mask = ncap - 1;
    }
    rx_place(rx->slots, rx->mask, &e);
    rx->nstreams++;
    return 0;
}

/* Removes the entry of id, which is in the table (backward-shift deletion). */
static void rx_remove(qrpc__rx *rx, uint32_t id)
{
    size_t mask = rx->mask, i = rx_hash(rx, id) & mask, j, home;

    while (rx->slots[i].id != id || rx->slots[i].s == NULL)
        i = (i + 1) & mask;
    /*
     * Move later entries of the run back into the hole when the hole lies
     * between their home slot and where they are, so that every entry stays
     * reachable from its home without tombstones.
     */
    for (j = i;;) {
        j = (j + 1) & mask;
        if (rx->slots[j].s == NULL)
            break;
        home = rx->slots[j].hash & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            rx->slots[i] = rx->slots[j];
            i = j;
        }
    }
    rx->slots[i].s = NULL;
    rx->nstreams--;
    /* A burst of streams need not keep its large table for the connection's life. */
    if (rx->nstreams == 0 && mask + 1 > RX_SLOTS_MIN) {
        free(rx->slots);
        rx->slots = NULL;
        rx->mask = 0;
    }
}

/* ---- messages ------------------------------------------------------------------ */

/*
 * Makes room for more body bytes of s, more <= msg.body_len - got.  Grows
 * by doubling, from RX_BODY_MIN, never past the declared length: a body
 * that arrives in one piece gets one allocation of exactly its size.
 */
static int rx_grow(rx_stream *s, uint32_t more)
{
    uint64_t need = (uint64_t)s->got + more, cap = (uint64_t)s->cap * 2;
    uint8_t *p;

    if (cap < need)
        cap = need;
    if (cap < RX_BODY_MIN)
        cap = RX_BODY_MIN;
    if (cap > s->msg.body_len || s->whole)
        cap = s->msg.body_len;
    p = realloc(s->msg.body, (size_t)cap);
    if (p == NULL)
        return QRPC_ENOMEM;
    /* the last allocation of a large body: on huge pages (mem.h) */
    if (cap == s->msg.body_len)
        qrpc__mem_huge(p, (size_t)cap);
    s->msg.body = p;
    s->cap = (uint32_t)cap;
    return 0;
}

/*
 * Hands a whole message to the owner (or frees its body when on_msg is
 * NULL: a NULL callback ignores what it would report).  Everything the
 * reader keeps is settled first, so that a callback's nonzero return can
 * be passed on at once and the reader still frees cleanly.
 */
static int rx_deliver(qrpc__rx *rx, rx_stream *s)
{
    bool own = s != &rx->one;
    int rc = 0;

    if (own) {
        rx->buffered -= s->msg.body_len;
        rx_remove(rx, s->msg.stream);
    }
    if (rx->ops.on_msg != NULL)
        rc = rx->ops.on_msg(rx->owner, &s->msg);
    else
        free(s->msg.body);
    if (own)
        free(s);
    return rc;
}

/* The current frame's payload is all consumed. */
static int rx_frame_done(qrpc__rx *rx)
{
    rx->state = RX_FHDR;
    if (rx->fh.flags & QRPC__FF_END)
        return rx_deliver(rx, rx->cur);
    return 0;
}

/* A first frame's message header is read (into rx->one): check the body. */
static int rx_msg_start(qrpc__rx *rx, const char **why)
{
    rx_stream *s = &rx->one;
    uint32_t in_frame = rx->left;

    if (s->msg.body_len > rx->lim.max_message)
        return rx_fail(rx, why, "message body over max_message");
    if (in_frame > s->msg.body_len)
        return rx_fail(rx, why, "more body bytes than the header declared");
    if ((rx->fh.flags & QRPC__FF_END) && in_frame < s->msg.body_len)
        return rx_fail(rx, why, "END before the whole body");
    s->msg.body = NULL;
    s->got = 0;
    s->cap = 0;
    s->whole = false;
    rx->cur = s;
    if (!(rx->fh.flags & QRPC__FF_END)) {
        rx_stream *ns;
        uint32_t count = in_frame;

        if (s->msg.body_len >= RX_BODY_WHOLE) {
            s->whole = true;
            count = s->msg.body_len;
        }
        if (rx->buffered + count > rx->lim.max_buffered)
            return rx_fail(rx, why, "too many body bytes being assembled");
        ns = malloc(sizeof *ns);
        if (ns == NULL)
            return rx_oom(rx, why);
        *ns = *s;
        if (rx_insert(rx, ns) != 0) {
            free(ns);
            return rx_oom(rx, why);
        }
        rx->cur = ns;
        rx->buffered += count;
    }
    if (rx->left == 0)
        return rx_frame_done(rx);
    rx->state = RX_BODY;
    return 0;
}

/* The fixed part of a first frame's message header, in h. */
static int rx_msghdr(qrpc__rx *rx, const uint8_t *h, const char **why)
{
    qrpc__rx_msg *m = &rx->one.msg;

    if (m->type == QRPC__F_REPLY) {
        m->rep.body_len = qrpc__get32(h);
        m->rep.status = (int32_t)qrpc__get32(h + 4);
        m->body_len = m->rep.body_len;
        rx->left -= QRPC__REPHDR_LEN;
        return rx_msg_start(rx, why);
    }
    m->req.body_len = qrpc__get32(h);
    m->req.method = qrpc__get32(h + 4);
    m->req.version = qrpc__get32(h + 8);
    m->req.flags = qrpc__get32(h + 12);
    m->req.client_id = qrpc__get64(h + 16);
    m->req.seq = qrpc__get64(h + 24);
    m->req.acked = qrpc__get64(h + 32);
    m->req.incarnation = qrpc__get64(h + 40);
    m->req.deadline_ms = qrpc__get32(h + 48);
    m->req.name_len = qrpc__get16(h + 52);
    m->body_len = m->req.body_len;
    if (qrpc__get16(h + 54) != 0)
        return rx_fail(rx, why, "reserved request header field set");
    if (m->req.flags & ~RX_REQ_FLAGS)
        return rx_fail(rx, why, "unknown request flags");
    if (m->req.name_len == 0 || m->req.name_len > QRPC__NAME_MAX)
        return rx_fail(rx, why, "service name length 0 or over 255");
    if (rx->fh.len < QRPC__REQHDR_FIXED + (uint32_t)m->req.name_len)
        return rx_fail(rx, why, "first frame shorter than its message header");
    rx->left -= QRPC__REQHDR_FIXED;
    rx->state = RX_NAME;
    return 0;
}

/* A REQUEST's service name, in h. */
static int rx_name(qrpc__rx *rx, const uint8_t *h, const char **why)
{
    qrpc__reqhdr *r = &rx->one.msg.req;

    memcpy(r->name, h, r->name_len);
    r->name[r->name_len] = '\0';
    rx->left -= r->name_len;
    return rx_msg_start(rx, why);
}

/* ---- frames ---------------------------------------------------------------- */

/* A control frame's payload, in h (NULL when empty). */
static int rx_ctrl(qrpc__rx *rx, const uint8_t *h, const char **why)
{
    qrpc__hello hello;

    rx->state = RX_FHDR;
    rx->left = 0;
    switch (rx->fh.type) {
    case QRPC__F_HELLO:
        hello.incarnation = qrpc__get64(h);
        hello.max_frame = qrpc__get32(h + 8);
        hello.max_message = qrpc__get32(h + 12);
        hello.max_inflight = qrpc__get32(h + 16);
        if (qrpc__get32(h + 20) != 0)
            return rx_fail(rx, why, "reserved HELLO field set");
        if (hello.max_frame < QRPC__FRAME_MIN || hello.max_message < RX_MIN_MESSAGE ||
            hello.max_inflight == 0)
            return rx_fail(rx, why, "HELLO limits below the protocol's minimums");
        rx->hello = true;
        return rx->ops.on_hello != NULL ? rx->ops.on_hello(rx->owner, &hello) : 0;
    case QRPC__F_PING:          /* the payload is opaque (a PONG may echo it or be empty) */
        return rx->ops.on_ping != NULL ? rx->ops.on_ping(rx->owner, rx->fh.stream) : 0;
    case QRPC__F_PONG:
        return rx->ops.on_pong != NULL ? rx->ops.on_pong(rx->owner, rx->fh.stream) : 0;
    default:                    /* QRPC__F_GOAWAY */
        return rx->ops.on_goaway != NULL ? rx->ops.on_goaway(rx->owner, qrpc__get32(h)) : 0;
    }
}

/* A frame header, in h: check it and set up reading its payload. */
static int rx_frame(qrpc__rx *rx, const uint8_t *h, const char **why)
{
    qrpc__fhdr *fh = &rx->fh;
    rx_stream *s;

    if (h[0] != QRPC__MAGIC0 || h[1] != QRPC__MAGIC1)
        return rx_fail(rx, why, "bad magic");
    if (h[2] != QRPC__PROTO_VERSION)
        return rx_fail(rx, why, "unsupported protocol version");
    fh->type = h[3];
    fh->flags = h[4];
    fh->stream = qrpc__get32(h + 8);
    fh->len = qrpc__get32(h + 12);
    if (fh->type < QRPC__F_HELLO || fh->type > QRPC__F_GOAWAY)
        return rx_fail(rx, why, "unknown frame type");
    if (h[5] != 0 || h[6] != 0 || h[7] != 0)
        return rx_fail(rx, why, "reserved frame header bits set");
    if (fh->flags & ~QRPC__FF_END)
        return rx_fail(rx, why, "unknown frame flags");
    if (fh->len > rx->lim.max_frame)
        return rx_fail(rx, why, "frame too large");
    if (!rx->hello && fh->type != QRPC__F_HELLO)
        return rx_fail(rx, why, "frame before HELLO");
    if (rx->hello && fh->type == QRPC__F_HELLO)
        return rx_fail(rx, why, "second HELLO");
    rx->left = fh->len;

    switch (fh->type) {
    case QRPC__F_REQUEST:
    case QRPC__F_REPLY:
        if (rx_find(rx, fh->stream) != NULL)
            return rx_fail(rx, why, "REQUEST or REPLY for a stream already being assembled");
        if (!(fh->flags & QRPC__FF_END) && rx->nstreams >= rx->lim.max_streams)
            return rx_fail(rx, why, "more than max_streams messages being assembled");
        if (fh->len < (fh->type == QRPC__F_REQUEST ? QRPC__REQHDR_FIXED : QRPC__REPHDR_LEN))
            return rx_fail(rx, why, "first frame shorter than its message header");
        rx->one.msg.type = fh->type;
        rx->one.msg.stream = fh->stream;
        /* The other kind's header reads as zeros, not as an older message's. */
        if (fh->type == QRPC__F_REQUEST)
            memset(&rx->one.msg.rep, 0, sizeof rx->one.msg.rep);
        else
            memset(&rx->one.msg.req, 0, offsetof(qrpc__reqhdr, name) + 1);
        rx->state = RX_MHDR;
        return 0;
    case QRPC__F_DATA:
        s = rx_find(rx, fh->stream);
        if (s == NULL)
            return rx_fail(rx, why, "DATA for a stream not being assembled");
        if (fh->len > s->msg.body_len - s->got)
            return rx_fail(rx, why, "more body bytes than the header declared");
        if ((fh->flags & QRPC__FF_END) && fh->len < s->msg.body_len - s->got)
            return rx_fail(rx, why, "END before the whole body");
        if (!s->whole) {
            if (rx->buffered + fh->len > rx->lim.max_buffered)
                return rx_fail(rx, why, "too many body bytes being assembled");
            rx->buffered += fh->len;
        }
        rx->cur = s;
        if (fh->len == 0)
            return rx_frame_done(rx);
        rx->state = RX_BODY;
        return 0;
    default:
        break;
    }

    /* Control frames: no flags, and payloads of fixed sizes. */
    if (fh->flags != 0)
        return rx_fail(rx, why, "END on a control frame");
    switch (fh->type) {
    case QRPC__F_HELLO:
        if (fh->len != QRPC__HELLO_LEN)
            return rx_fail(rx, why, "HELLO payload not 24 bytes");
        if (fh->stream != 0)
            return rx_fail(rx, why, "HELLO with a stream id");
        break;
    case QRPC__F_GOAWAY:
        if (fh->len != 4)
            return rx_fail(rx, why, "GOAWAY payload not 4 bytes");
        if (fh->stream != 0)
            return rx_fail(rx, why, "GOAWAY with a stream id");
        break;
    default:                    /* PING, PONG */
        if (fh->len != 0 && fh->len != 8)
            return rx_fail(rx, why, "PING or PONG payload not 0 or 8 bytes");
        if (fh->len == 0)
            return rx_ctrl(rx, NULL, why);
        break;
    }
    rx->state = RX_CTRL;
    return 0;
}

/*
 * Sets *hp to need contiguous bytes of the input: where they lie when all
 * are there and nothing is staged (the common case, no copy), else in the
 * staging buffer once the last of them has arrived.  Returns false when
 * the input ran out first; what there was is staged.
 */
static inline bool rx_gather(qrpc__rx *rx, const uint8_t **p, const uint8_t *end,
                             uint32_t need, const uint8_t **hp)
{
    size_t avail = (size_t)(end - *p), take;

    if (rx->staged == 0 && avail >= need) {
        *hp = *p;
        *p += need;
        return true;
    }
    take = need - rx->staged;
    if (take > avail)
        take = avail;
    memcpy(rx->stage + rx->staged, *p, take);
    rx->staged += (uint32_t)take;
    *p += take;
    if (rx->staged < need)
        return false;
    rx->staged = 0;
    *hp = rx->stage;
    return true;
}

/* Copies what the input holds of the current frame's body. */
static int rx_body(qrpc__rx *rx, const uint8_t **p, const uint8_t *end, const char **why)
{
    rx_stream *s = rx->cur;
    size_t avail = (size_t)(end - *p);
    uint32_t k = rx->left < avail ? rx->left : (uint32_t)avail;

    if (k > s->cap - s->got && rx_grow(s, k) != 0)
        return rx_oom(rx, why);
    memcpy(s->msg.body + s->got, *p, k);
    s->got += k;
    *p += k;
    rx->left -= k;
    if (rx->left == 0)
        return rx_frame_done(rx);
    return 0;
}

/* ---- the interface ----------------------------------------------------------- */

int qrpc__rx_window(qrpc__rx *rx, uint32_t min, uint8_t **p, size_t *len, const char **why)
{
    rx_stream *s = rx->cur;

    *p = NULL;
    *len = 0;
    *why = NULL;
    if (rx->dead || rx->state != RX_BODY || rx->left == 0 || rx->left < min)
        return 0;
    if (rx->left > s->cap - s->got && rx_grow(s, rx->left) != 0)
        return rx_oom(rx, why);
    *p = s->msg.body + s->got;
    *len = rx->left;
    return 0;
}

int qrpc__rx_window_done(qrpc__rx *rx, size_t n, const char **why)
{
    *why = NULL;
    if (rx->dead || rx->state != RX_BODY || n > rx->left)
        return rx_fail(rx, why, "window misused");
    rx->cur->got += (uint32_t)n;
    rx->left -= (uint32_t)n;
    if (rx->left == 0)
        return rx_frame_done(rx);
    return 0;
}

qrpc__rx *qrpc__rx_new(const qrpc__rx_limits *limits, const qrpc__rx_ops *ops,
                       void *owner)
{
    qrpc__rx *rx = calloc(1, sizeof *rx);

    if (rx == NULL)
        return NULL;
    rx->lim = *limits;
    rx->ops = *ops;
    rx->owner = owner;
    rx->state = RX_FHDR;
    /*
     * The hash key only has to be unknown to the peer.  Should the kernel
     * have no randomness to give, addresses are a weaker but usable key.
     */
    if (getrandom(&rx->key, sizeof rx->key, GRND_NONBLOCK) != (ssize_t)sizeof rx->key)
        rx->key = (uint64_t)(uintptr_t)rx * 0x9e3779b97f4a7c15u ^ (uint64_t)(uintptr_t)&rx;
    return rx;
}

void qrpc__rx_free(qrpc__rx *rx)
{
    size_t i;

    if (rx == NULL)
        return;
    if (rx->slots != NULL) {
        for (i = 0; i <= rx->mask; i++) {
            if (rx->slots[i].s != NULL) {
                free(rx->slots[i].s->msg.body);
                free(rx->slots[i].s);
            }
        }
        free(rx->slots);
    }
    /* A message of one frame, cut short; delivered ones belong to their owner. */
    if (rx->state == RX_BODY && rx->cur == &rx->one)
        free(rx->one.msg.body);
    free(rx);
}

bool qrpc__rx_idle(const qrpc__rx *rx)
{
    return rx->state == RX_FHDR && rx->staged == 0 && !rx->dead;
}

bool qrpc__rx_assembling(const qrpc__rx *rx)
{
    return rx->nstreams != 0;
}

int qrpc__rx_feed(qrpc__rx *rx, const uint8_t *p, size_t n, const char **why)
{
    const uint8_t *end, *h;
    int rc;

    *why = NULL;
    if (rx->dead)
        return rx_fail(rx, why, "reader fed again after an error");
    if (n == 0)
        return 0;               /* p may be NULL, and NULL + 0 is undefined */
    end = p + n;
    while (p != end) {
        switch (rx->state) {
        case RX_FHDR:
            if (!rx_gather(rx, &p, end, QRPC__FRAME_HDR, &h))
                return 0;
            rc = rx_frame(rx, h, why);
            break;
        case RX_MHDR:
            if (!rx_gather(rx, &p, end, rx->one.msg.type == QRPC__F_REQUEST ?
                           QRPC__REQHDR_FIXED : QRPC__REPHDR_LEN, &h))
                return 0;
            rc = rx_msghdr(rx, h, why);
            break;
        case RX_NAME:
            if (!rx_gather(rx, &p, end, rx->one.msg.req.name_len, &h))
                return 0;
            rc = rx_name(rx, h, why);
            break;
        case RX_BODY:
            rc = rx_body(rx, &p, end, why);
            break;
        default:                /* RX_CTRL */
            if (!rx_gather(rx, &p, end, rx->fh.len, &h))
                return 0;
            rc = rx_ctrl(rx, h, why);
            break;
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}
