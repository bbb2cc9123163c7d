/*
 * test_frame.c - the framing of runtime/src/frame.h: the header encoders
 * byte for byte (including the example of qrpc-protocol(7)); whole
 * conversations (HELLO, interleaved multi-frame requests and replies,
 * PING, PONG, GOAWAY) fed in one piece, byte by byte and at seeded random
 * split points, every delivered message compared field by field and byte
 * by byte; every protocol violation, each its own test, at every split;
 * the memory bound (a declared 64 MiB body that never comes, max_streams,
 * max_buffered); a stream table churned through thousands of streams; a
 * callback's nonzero return; qrpc__rx_idle() at every byte and
 * qrpc__rx_assembling(); and freeing a reader in the middle of everything.
 *
 * Input is always fed from heap copies of exactly the chunk's size, so
 * the sanitizers and valgrind see any read past what the reader was
 * given.  Heap use is measured with the sanitizers' allocator statistics
 * or glibc's mallinfo2(); under valgrind neither counts, and the tests
 * that need a number check only what they can (valgrind checks leaks
 * itself).  Deterministic: every random choice comes from a fixed seed.
 */
#include <check.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qrpc.h"
#include "../../runtime/src/frame.h"

/* ---- helpers: randomness, heap use ----------------------------------------- */

static uint64_t rng_state;

static void rng_seed(uint64_t seed)
{
    rng_state = seed * 0x9e3779b97f4a7c15u + 0x2545f4914f6cdd1du;
    if (rng_state == 0)
        rng_state = 1;
}

static uint64_t rng(void)                   /* xorshift64* */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717u;
}

/* Uniform in [0, n), n > 0 (the bias is irrelevant here). */
static uint32_t rng_below(uint64_t n)
{
    return (uint32_t)(rng() % n);
}

extern size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));

/* Bytes the program has allocated and not freed; constant under valgrind. */
static size_t heap_in_use(void)
{
    struct mallinfo2 mi;

    if (__sanitizer_get_current_allocated_bytes != NULL)
        return __sanitizer_get_current_allocated_bytes();
    mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

/*
 * Whether heap_in_use() is exact: the sanitizers count every byte, but
 * glibc counts the chunks its per-thread cache holds as in use, so there
 * only upper bounds (with some slack) are meaningful.
 */
static int heap_exact(void)
{
    return __sanitizer_get_current_allocated_bytes != NULL;
}

/* Whether heap_in_use() sees allocations at all here. */
static int heap_measurable(void)
{
    size_t before = heap_in_use();
    void *volatile p = malloc(100000);
    int seen;

    ck_assert_ptr_nonnull(p);
    seen = heap_in_use() >= before + 100000;
    free(p);
    return seen;
}

/* ---- the writer: frames into a buffer, with their boundaries ------------------- */

typedef struct wr {
    qrpc_buf b;
    size_t *bounds;             /* offsets where frames start */
    size_t nb, capb;
} wr;

static void wr_init(wr *w)
{
    memset(w, 0, sizeof *w);
}

static void wr_free(wr *w)
{
    qrpc_buf_free(&w->b);
    free(w->bounds);
}

static void wr_raw(wr *w, const void *p, size_t n)
{
    ck_assert_int_eq(qrpc_put_raw(&w->b, p, n), 0);
}

static void wr_bound(wr *w)
{
    if (w->nb == w->capb) {
        w->capb = w->capb ? 2 * w->capb : 64;
        w->bounds = realloc(w->bounds, w->capb * sizeof *w->bounds);
        ck_assert_ptr_nonnull(w->bounds);
    }
    w->bounds[w->nb++] = w->b.len;
}

/* A frame whose payload is hdr then body (either may be empty). */
static void wr_frame2(wr *w, uint8_t type, uint8_t flags, uint32_t stream,
                      const void *hdr, size_t hlen, const void *body, size_t blen)
{
    qrpc__fhdr fh = { type, flags, stream, (uint32_t)(hlen + blen) };
    uint8_t h[QRPC__FRAME_HDR];

    wr_bound(w);
    qrpc__fhdr_put(h, &fh);
    wr_raw(w, h, sizeof h);
    if (hlen != 0)
        wr_raw(w, hdr, hlen);
    if (blen != 0)
        wr_raw(w, body, blen);
}

static void wr_frame(wr *w, uint8_t type, uint8_t flags, uint32_t stream,
                     const void *p, size_t len)
{
    wr_frame2(w, type, flags, stream, p, len, NULL, 0);
}

static const qrpc__hello std_hello = { 0x1122334455667788u, 65536, 64u << 20, 1024 };

static void wr_hello(wr *w, const qrpc__hello *h)
{
    uint8_t p[QRPC__HELLO_LEN];

    qrpc__hello_put(p, h);
    wr_frame(w, QRPC__F_HELLO, 0, 0, p, sizeof p);
}

/* A request header with every field distinct, for stream id and body length. */
static qrpc__reqhdr mk_req(uint32_t body_len, const char *name)
{
    qrpc__reqhdr r;

    memset(&r, 0, sizeof r);
    r.body_len = body_len;
    r.method = 0x01020304u ^ body_len;
    r.version = 7;
    r.flags = QRPC_METHOD_IDEMPOTENT;
    r.client_id = 0xa1a2a3a4a5a6a7a8u;
    r.seq = 0x0102030405060708u + body_len;
    r.acked = 0x1000;
    r.deadline_ms = 30000;
    r.name_len = (uint16_t)strlen(name);
    memcpy(r.name, name, r.name_len);
    return r;
}

/* A whole message in one frame. */
static void wr_request(wr *w, uint32_t stream, const qrpc__reqhdr *r, const void *body)
{
    uint8_t h[QRPC__REQHDR_FIXED + QRPC__NAME_MAX];
    size_t hl = qrpc__reqhdr_put(h, r);

    wr_frame2(w, QRPC__F_REQUEST, QRPC__FF_END, stream, h, hl, body, r->body_len);
}

static void wr_reply(wr *w, uint32_t stream, int32_t status, const void *body, uint32_t len)
{
    qrpc__rephdr r = { len, status };
    uint8_t h[QRPC__REPHDR_LEN];

    qrpc__rephdr_put(h, &r);
    wr_frame2(w, QRPC__F_REPLY, QRPC__FF_END, stream, h, sizeof h, body, len);
}

/* A bare frame header, any bytes, for malformed frames. */
static void wr_fhdr_raw(wr *w, uint8_t m0, uint8_t m1, uint8_t ver, uint8_t type,
                        uint8_t flags, uint8_t r5, uint16_t r6, uint32_t stream, uint32_t len)
{
    uint8_t h[QRPC__FRAME_HDR] = {
        m0, m1, ver, type, flags, r5, (uint8_t)r6, (uint8_t)(r6 >> 8),
        (uint8_t)stream, (uint8_t)(stream >> 8), (uint8_t)(stream >> 16), (uint8_t)(stream >> 24),
        (uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16), (uint8_t)(len >> 24)
    };

    wr_bound(w);
    wr_raw(w, h, sizeof h);
}

/* ---- the recorder: what the reader reported -------------------------------------- */

enum { EV_HELLO = 1, EV_MSG, EV_PING, EV_PONG, EV_GOAWAY };

typedef struct ev {
    int kind;
    uint32_t stream;            /* MSG, PING, PONG */
    uint32_t reason;            /* GOAWAY */
    qrpc__hello hello;
    qrpc__rx_msg msg;           /* MSG; its body belongs to the event */
} ev;

typedef struct rec {
    ev *ev;
    size_t n, cap;
    size_t stop_at;             /* the event (1-based) whose callback returns stop_rc */
    int stop_rc;
} rec;

static void rec_free(rec *r)
{
    size_t i;

    for (i = 0; i < r->n; i++)
        if (r->ev[i].kind == EV_MSG)
            free(r->ev[i].msg.body);
    free(r->ev);
    memset(r, 0, sizeof *r);
}

static ev *rec_push(rec *r, int kind)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 64;
        r->ev = realloc(r->ev, r->cap * sizeof *r->ev);
        ck_assert_ptr_nonnull(r->ev);
    }
    memset(&r->ev[r->n], 0, sizeof r->ev[r->n]);
    r->ev[r->n].kind = kind;
    return &r->ev[r->n++];
}

static int rec_rc(rec *r)
{
    return r->stop_at != 0 && r->n == r->stop_at ? r->stop_rc : 0;
}

static int on_hello(void *owner, const qrpc__hello *h)
{
    rec *r = owner;

    rec_push(r, EV_HELLO)->hello = *h;
    return rec_rc(r);
}

static int on_msg(void *owner, qrpc__rx_msg *m)
{
    rec *r = owner;
    ev *e = rec_push(r, EV_MSG);

    /* The reader's promises about every message. */
    ck_assert(m->type == QRPC__F_REQUEST || m->type == QRPC__F_REPLY);
    ck_assert(m->body_len == (m->type == QRPC__F_REQUEST ? m->req.body_len : m->rep.body_len));
    ck_assert((m->body == NULL) == (m->body_len == 0));
    if (m->type == QRPC__F_REQUEST) {
        ck_assert_uint_ge(m->req.name_len, 1);
        ck_assert_uint_le(m->req.name_len, QRPC__NAME_MAX);
        ck_assert_uint_eq(m->req.name[m->req.name_len], '\0');
    }
    e->stream = m->stream;
    e->msg = *m;
    return rec_rc(r);
}

static int on_ping(void *owner, uint32_t stream)
{
    rec *r = owner;

    rec_push(r, EV_PING)->stream = stream;
    return rec_rc(r);
}

static int on_pong(void *owner, uint32_t stream)
{
    rec *r = owner;

    rec_push(r, EV_PONG)->stream = stream;
    return rec_rc(r);
}

static int on_goaway(void *owner, uint32_t reason)
{
    rec *r = owner;

    rec_push(r, EV_GOAWAY)->reason = reason;
    return rec_rc(r);
}

static const qrpc__rx_ops rec_ops = { on_hello, on_msg, on_ping, on_pong, on_goaway };

/* The expected message events: headers as sent, a copy of the body. */
static void want_msg(rec *want, uint8_t type, uint32_t stream, const qrpc__reqhdr *req,
                     const qrpc__rephdr *rep, const uint8_t *body, uint32_t len)
{
    ev *e = rec_push(want, EV_MSG);

    e->stream = stream;
    e->msg.type = type;
    e->msg.stream = stream;
    if (req != NULL)
        e->msg.req = *req;
    if (rep != NULL)
        e->msg.rep = *rep;
    e->msg.body_len = len;
    if (len != 0) {
        e->msg.body = malloc(len);
        ck_assert_ptr_nonnull(e->msg.body);
        memcpy(e->msg.body, body, len);
    }
}

static void assert_same_events(const rec *got, const rec *want)
{
    size_t i;

    ck_assert_uint_eq(got->n, want->n);
    for (i = 0; i < want->n; i++) {
        const ev *g = &got->ev[i], *w = &want->ev[i];

        ck_assert_msg(g->kind == w->kind, "event %zu: kind %d, want %d", i, g->kind, w->kind);
        switch (w->kind) {
        case EV_HELLO:
            ck_assert(g->hello.incarnation == w->hello.incarnation);
            ck_assert_uint_eq(g->hello.max_frame, w->hello.max_frame);
            ck_assert_uint_eq(g->hello.max_message, w->hello.max_message);
            ck_assert_uint_eq(g->hello.max_inflight, w->hello.max_inflight);
            break;
        case EV_GOAWAY:
            ck_assert_uint_eq(g->reason, w->reason);
            break;
        case EV_PING:
        case EV_PONG:
            ck_assert_uint_eq(g->stream, w->stream);
            break;
        default:
            ck_assert_uint_eq(g->msg.type, w->msg.type);
            ck_assert_uint_eq(g->msg.stream, w->msg.stream);
            ck_assert_uint_eq(g->msg.body_len, w->msg.body_len);
            if (w->msg.type == QRPC__F_REQUEST) {
                const qrpc__reqhdr *a = &g->msg.req, *b = &w->msg.req;

                ck_assert_uint_eq(a->body_len, b->body_len);
                ck_assert_uint_eq(a->method, b->method);
                ck_assert_uint_eq(a->version, b->version);
                ck_assert_uint_eq(a->flags, b->flags);
                ck_assert(a->client_id == b->client_id);
                ck_assert(a->seq == b->seq);
                ck_assert(a->acked == b->acked);
                ck_assert_uint_eq(a->deadline_ms, b->deadline_ms);
                ck_assert_uint_eq(a->name_len, b->name_len);
                ck_assert_int_eq(memcmp(a->name, b->name, b->name_len), 0);
            } else {
                ck_assert_uint_eq(g->msg.rep.body_len, w->msg.rep.body_len);
                ck_assert_int_eq(g->msg.rep.status, w->msg.rep.status);
            }
            if (w->msg.body_len != 0)
                ck_assert_msg(memcmp(g->msg.body, w->msg.body, w->msg.body_len) == 0,
                              "event %zu: body differs", i);
        }
    }
}

/* ---- feeding ---------------------------------------------------------------- */

static const qrpc__rx_limits std_limits = { 65536, 64u << 20, 1024, 256u << 20 };

enum { SPLIT_WHOLE, SPLIT_BYTES, SPLIT_RANDOM, SPLIT_WINDOW, SPLIT_MODES };

/*
 * SPLIT_WINDOW's step, as conn.c reads: when the reader offers a window
 * (asked with a random minimum), copies a random part of what it wants
 * (sometimes all) into it and reports it; returns the bytes taken, 0 when
 * no window was offered, and the status in *rc.
 */
static size_t feed_window(qrpc__rx *rx, const uint8_t *p, size_t n, int *rc, const char **why)
{
    uint8_t *win;
    size_t wlen, k;

    *rc = qrpc__rx_window(rx, 1 + rng_below(64), &win, &wlen, why);
    if (*rc != 0 || win == NULL)
        return 0;
    ck_assert_uint_gt(wlen, 0);
    k = 1 + rng_below(wlen + wlen / 2);
    if (k > wlen)
        k = wlen;
    if (k > n)
        k = n;
    memcpy(win, p, k);
    *rc = qrpc__rx_window_done(rx, k, why);
    return k;
}

/*
 * Feeds p[0..n) to rx in the given way, each chunk from a heap copy of
 * exactly its size; stops at the first nonzero return, which it returns.
 * seed drives SPLIT_RANDOM (mostly small chunks, some large) and
 * SPLIT_WINDOW (body bytes through windows, the rest in small chunks).
 */
static int feed_split(qrpc__rx *rx, const uint8_t *p, size_t n, int mode, uint64_t seed,
                      const char **why)
{
    size_t off = 0, k;
    int rc = 0;

    rng_seed(seed);
    *why = NULL;
    while (off < n && rc == 0) {
        uint8_t *c;

        if (mode == SPLIT_WINDOW) {
            k = feed_window(rx, p + off, n - off, &rc, why);
            off += k;
            if (k != 0 || rc != 0)
                continue;
        }
        if (mode == SPLIT_WHOLE)
            k = n;
        else if (mode == SPLIT_BYTES)
            k = 1;
        else if (rng_below(4) == 0)
            k = 1 + rng_below(4096);
        else
            k = 1 + rng_below(40);
        if (k > n - off)
            k = n - off;
        c = malloc(k);
        ck_assert_ptr_nonnull(c);
        memcpy(c, p + off, k);
        rc = qrpc__rx_feed(rx, c, k, why);
        free(c);
        off += k;
    }
    return rc;
}

/* ---- encoders ------------------------------------------------------------------ */

/*
 * The example of qrpc-protocol(7): a HELLO, a request calc.Calc version 1
 * method 1 (add) with args (i32 2, i32 40), and its reply (i32 42).
 */
static const uint8_t ex_hello[] = {
    0x51, 0x52, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00,   0x00, 0x00, 0x00, 0x00, 0x18, 0x00, 0x00, 0x00,
    0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,   0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x04,
    0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};
static const uint8_t ex_request[] = {
    0x51, 0x52, 0x01, 0x02, 0x01, 0x00, 0x00, 0x00,   0x01, 0x00, 0x00, 0x00, 0x49, 0x00, 0x00, 0x00,
    0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,   0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
    0x07, 0x40, 0x1d, 0x9b, 0x2e, 0x5c, 0x3a, 0x8f,   0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,   0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x30, 0x75, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00,
    0x63, 0x61, 0x6c, 0x63, 0x2e, 0x43, 0x61, 0x6c,   0x63, 0x02, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00,
    0x00,
};
static const uint8_t ex_reply[] = {
    0x51, 0x52, 0x01, 0x03, 0x01, 0x00, 0x00, 0x00,   0x01, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00,
    0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,   0x2a, 0x00, 0x00, 0x00,
};

static qrpc__reqhdr ex_reqhdr(void)
{
    qrpc__reqhdr r;

    memset(&r, 0, sizeof r);
    r.body_len = 8;
    r.method = 1;
    r.version = 1;
    r.flags = QRPC_METHOD_IDEMPOTENT;
    r.client_id = 0x8f3a5c2e9b1d4007u;
    r.seq = 1;
    r.acked = 0;
    r.deadline_ms = 30000;
    r.name_len = 9;
    memcpy(r.name, "calc.Calc", 9);
    return r;
}

START_TEST(test_encode_example_bytes)
{
    static const uint8_t args[8] = { 2, 0, 0, 0, 40, 0, 0, 0 }, res[4] = { 42, 0, 0, 0 };
    qrpc__reqhdr req = ex_reqhdr();
    wr w;

    wr_init(&w);
    wr_hello(&w, &std_hello);
    ck_assert_uint_eq(w.b.len, sizeof ex_hello);
    ck_assert_int_eq(memcmp(w.b.data, ex_hello, sizeof ex_hello), 0);
    w.b.len = 0;
    wr_request(&w, 1, &req, args);
    ck_assert_uint_eq(w.b.len, sizeof ex_request);
    ck_assert_int_eq(memcmp(w.b.data, ex_request, sizeof ex_request), 0);
    w.b.len = 0;
    wr_reply(&w, 1, 0, res, sizeof res);
    ck_assert_uint_eq(w.b.len, sizeof ex_reply);
    ck_assert_int_eq(memcmp(w.b.data, ex_reply, sizeof ex_reply), 0);
    wr_free(&w);
}
END_TEST

START_TEST(test_encode_field_positions)
{
    qrpc__fhdr fh = { 0xfe, 0xa5, 0x04030201u, 0x08070605u };
    qrpc__hello h = { 0x0f0e0d0c0b0a0908u, 0x13121110u, 0x17161514u, 0x1b1a1918u };
    qrpc__rephdr rep = { 0x04030201u, -2 };
    qrpc__reqhdr req;
    uint8_t out[QRPC__REQHDR_FIXED + QRPC__NAME_MAX + 8];
    static const uint8_t want_fh[] = { 'Q', 'R', 1, 0xfe, 0xa5, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8 };
    static const uint8_t want_rep[] = { 1, 2, 3, 4, 0xfe, 0xff, 0xff, 0xff };
    size_t i, n;

    memset(out, 0xcc, sizeof out);
    qrpc__fhdr_put(out, &fh);
    ck_assert_int_eq(memcmp(out, want_fh, sizeof want_fh), 0);
    ck_assert_uint_eq(out[QRPC__FRAME_HDR], 0xcc);

    memset(out, 0xcc, sizeof out);
    qrpc__hello_put(out, &h);
    for (i = 0; i < 20; i++)
        ck_assert_uint_eq(out[i], 8 + i);
    for (i = 20; i < QRPC__HELLO_LEN; i++)
        ck_assert_uint_eq(out[i], 0);
    ck_assert_uint_eq(out[QRPC__HELLO_LEN], 0xcc);

    memset(out, 0xcc, sizeof out);
    qrpc__rephdr_put(out, &rep);
    ck_assert_int_eq(memcmp(out, want_rep, sizeof want_rep), 0);
    ck_assert_uint_eq(out[QRPC__REPHDR_LEN], 0xcc);

    /* Every field of the request header at its offset, the longest name. */
    memset(&req, 0, sizeof req);
    req.body_len = 0x03020100u;
    req.method = 0x07060504u;
    req.version = 0x0b0a0908u;
    req.flags = 0x0f0e0d0cu;
    req.client_id = 0x1716151413121110u;
    req.seq = 0x1f1e1d1c1b1a1918u;
    req.acked = 0x2726252423222120u;
    req.incarnation = 0x2f2e2d2c2b2a2928u;
    req.deadline_ms = 0x33323130u;
    req.name_len = QRPC__NAME_MAX;
    for (i = 0; i < QRPC__NAME_MAX; i++)
        req.name[i] = (char)('a' + i % 26);
    memset(out, 0xcc, sizeof out);
    n = qrpc__reqhdr_put(out, &req);
    ck_assert_uint_eq(n, QRPC__REQHDR_FIXED + QRPC__NAME_MAX);
    for (i = 0; i < 52; i++)
        ck_assert_uint_eq(out[i], i);
    ck_assert_uint_eq(out[52], 0xff);
    ck_assert_uint_eq(out[53], 0);
    ck_assert_uint_eq(out[54], 0);
    ck_assert_uint_eq(out[55], 0);
    ck_assert_int_eq(memcmp(out + 56, req.name, QRPC__NAME_MAX), 0);
    ck_assert_uint_eq(out[n], 0xcc);
}
END_TEST

/* Every header type, encoded and read back at extreme values, at every split. */
START_TEST(test_roundtrip_headers)
{
    static const uint8_t ping[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    static const uint8_t body[3] = { 9, 8, 7 };
    qrpc__hello hmax = { UINT64_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX };
    qrpc__hello hmin = { 0, QRPC__FRAME_MIN, 1024, 1 };
    qrpc__reqhdr r1 = mk_req(0, "a"), r2 = mk_req(3, "x"), r3;
    qrpc__rephdr p1 = { 0, INT32_MIN }, p2 = { 3, INT32_MAX }, p3 = { 0, QRPC_EPROTO };
    uint8_t g[4];
    int mode, hi;

    memset(&r3, 0, sizeof r3);
    r3.body_len = 0;
    r3.method = UINT32_MAX;
    r3.version = UINT32_MAX;
    r3.flags = QRPC_METHOD_IDEMPOTENT | QRPC_METHOD_ONEWAY;
    r3.client_id = UINT64_MAX;
    r3.seq = UINT64_MAX;
    r3.acked = UINT64_MAX;
    r3.deadline_ms = UINT32_MAX;
    r3.name_len = QRPC__NAME_MAX;
    memset(r3.name, 'z', QRPC__NAME_MAX);
    r2.flags = 0;
    g[0] = 0xef;
    g[1] = 0xbe;
    g[2] = 0xad;
    g[3] = 0xde;
    for (hi = 0; hi < 2; hi++) {
        for (mode = 0; mode < SPLIT_MODES; mode++) {
            rec got = { 0 }, want = { 0 };
            const char *why;
            qrpc__rx *rx;
            wr w;

            wr_init(&w);
            wr_hello(&w, hi ? &hmax : &hmin);
            rec_push(&want, EV_HELLO)->hello = hi ? hmax : hmin;
            wr_request(&w, 0, &r1, NULL);
            want_msg(&want, QRPC__F_REQUEST, 0, &r1, NULL, NULL, 0);
            wr_request(&w, UINT32_MAX, &r2, body);
            want_msg(&want, QRPC__F_REQUEST, UINT32_MAX, &r2, NULL, body, 3);
            wr_request(&w, 5, &r3, NULL);
            want_msg(&want, QRPC__F_REQUEST, 5, &r3, NULL, NULL, 0);
            wr_reply(&w, 1, p1.status, NULL, 0);
            want_msg(&want, QRPC__F_REPLY, 1, NULL, &p1, NULL, 0);
            wr_reply(&w, 2, p2.status, body, 3);
            want_msg(&want, QRPC__F_REPLY, 2, NULL, &p2, body, 3);
            wr_reply(&w, 3, p3.status, NULL, 0);
            want_msg(&want, QRPC__F_REPLY, 3, NULL, &p3, NULL, 0);
            wr_frame(&w, QRPC__F_PING, 0, 0, NULL, 0);
            rec_push(&want, EV_PING)->stream = 0;
            wr_frame(&w, QRPC__F_PING, 0, UINT32_MAX, ping, 8);
            rec_push(&want, EV_PING)->stream = UINT32_MAX;
            wr_frame(&w, QRPC__F_PONG, 0, 42, ping, 8);
            rec_push(&want, EV_PONG)->stream = 42;
            wr_frame(&w, QRPC__F_PONG, 0, 43, NULL, 0);
            rec_push(&want, EV_PONG)->stream = 43;
            wr_frame(&w, QRPC__F_GOAWAY, 0, 0, g, 4);
            rec_push(&want, EV_GOAWAY)->reason = 0xdeadbeefu;

            rx = qrpc__rx_new(&std_limits, &rec_ops, &got);
            ck_assert_ptr_nonnull(rx);
            ck_assert_int_eq(feed_split(rx, w.b.data, w.b.len, mode, 99, &why), 0);
            ck_assert_ptr_null(why);
            assert_same_events(&got, &want);
            ck_assert(qrpc__rx_idle(rx));
            qrpc__rx_free(rx);
            rec_free(&got);
            rec_free(&want);
            wr_free(&w);
        }
    }
}
END_TEST

/* ---- conversations --------------------------------------------------------------- */

/* A message being sent, frame by frame. */
typedef struct pend {
    uint8_t type;
    uint32_t stream;
    uint8_t hdr[QRPC__REQHDR_FIXED + QRPC__NAME_MAX];
    size_t hlen;
    uint8_t *body;
    uint32_t body_len, sent;
    int first_sent, done;
} pend;

/* Emits m's next frame, of at most max_frame payload bytes. */
static void pend_emit(wr *w, pend *m, uint32_t max_frame)
{
    uint32_t room = max_frame - (m->first_sent ? 0 : (uint32_t)m->hlen);
    uint32_t rest = m->body_len - m->sent, k;
    uint8_t flags = 0;

    /* Sizes from nothing to a full frame, favouring the ends. */
    switch (rng_below(4)) {
    case 0:
        k = room;
        break;
    case 1:
        k = rng_below(8);
        break;
    default:
        k = rng_below((uint64_t)room + 1);
    }
    if (k > rest)
        k = rest;
    /* Sometimes the last bytes go without END, and an empty DATA ends it. */
    if (k == rest && rng_below(8) != 0)
        flags = QRPC__FF_END;
    if (!m->first_sent)
        wr_frame2(w, m->type, flags, m->stream, m->hdr, m->hlen, m->body + m->sent, k);
    else
        wr_frame2(w, QRPC__F_DATA, flags, m->stream, NULL, 0, m->body + m->sent, k);
    m->first_sent = 1;
    m->sent += k;
    m->done = flags != 0;
}

/*
 * A conversation of nmsg messages, at most `active` in progress at once,
 * interleaved frame by frame, with PINGs and PONGs among them, a HELLO
 * first and a GOAWAY last; want gets the events the reader must report.
 */
static void gen_conversation(uint64_t seed, uint32_t max_frame, int nmsg, int active,
                             wr *w, rec *want)
{
    pend *act = calloc((size_t)active, sizeof *act);
    uint32_t next_stream = 0;
    int started = 0, live = 0, i;
    uint8_t g[4] = { 0, 0, 0, 0 };

    ck_assert_ptr_nonnull(act);
    rng_seed(seed);
    wr_hello(w, &std_hello);
    rec_push(want, EV_HELLO)->hello = std_hello;
    while (started < nmsg || live > 0) {
        uint32_t pick = rng_below(16);

        if (pick == 0) {
            uint32_t s = (uint32_t)rng();

            wr_frame(w, QRPC__F_PING, 0, s, &seed, rng_below(2) ? 8 : 0);
            rec_push(want, EV_PING)->stream = s;
        } else if (pick == 1) {
            uint32_t s = (uint32_t)rng();

            wr_frame(w, QRPC__F_PONG, 0, s, &seed, rng_below(2) ? 8 : 0);
            rec_push(want, EV_PONG)->stream = s;
        } else if (started < nmsg && live < active && (pick < 6 || live == 0)) {
            pend *m = NULL;
            uint32_t len;

            for (i = 0; i < active; i++)
                if (act[i].body == NULL && !act[i].first_sent) {
                    m = &act[i];
                    break;
                }
            ck_assert_ptr_nonnull(m);
            switch (rng_below(5)) {
            case 0:
                len = 0;
                break;
            case 1:
                len = rng_below(16);
                break;
            case 2:
                len = rng_below(3 * (uint64_t)max_frame);
                break;
            case 3:
                len = rng_below(max_frame);
                break;
            default:
                len = rng_below(200);
            }
            /* Ids spread over the whole range, as a peer may choose them. */
            next_stream += 1 + rng_below(rng_below(2) ? 3 : UINT32_MAX / 64);
            for (i = 0; i < active; i++)            /* after a wrap, stay distinct */
                if (act[i].first_sent && act[i].stream == next_stream) {
                    next_stream++;
                    i = -1;
                }
            m->stream = next_stream;
            m->type = rng_below(2) ? QRPC__F_REQUEST : QRPC__F_REPLY;
            m->body_len = len;
            m->body = malloc(len + 1);
            ck_assert_ptr_nonnull(m->body);
            for (i = 0; i < (int)len; i++)
                m->body[i] = (uint8_t)rng();
            if (m->type == QRPC__F_REQUEST) {
                char name[QRPC__NAME_MAX + 1];
                size_t nl = 1 + rng_below(rng_below(8) ? 24 : QRPC__NAME_MAX), j;
                qrpc__reqhdr r;

                for (j = 0; j < nl; j++)
                    name[j] = (char)('A' + rng_below(58));
                name[nl] = '\0';
                r = mk_req(len, name);
                r.method = (uint32_t)rng();
                r.version = (uint32_t)rng();
                r.flags = rng_below(4);
                r.client_id = rng();
                r.seq = rng();
                r.acked = rng();
                r.deadline_ms = (uint32_t)rng();
                m->hlen = qrpc__reqhdr_put(m->hdr, &r);
                want_msg(want, m->type, m->stream, &r, NULL, m->body, len);
            } else {
                qrpc__rephdr p = { len, (int32_t)rng() };

                qrpc__rephdr_put(m->hdr, &p);
                m->hlen = QRPC__REPHDR_LEN;
                want_msg(want, m->type, m->stream, NULL, &p, m->body, len);
            }
            /*
             * The expected event was recorded at the start; its order is
             * fixed up below, when the message's END frame goes out.
             */
            want->ev[want->n - 1].reason = (uint32_t)(m - act);
            want->ev[want->n - 1].kind = -1;        /* not yet ended */
            pend_emit(w, m, max_frame);
            started++;
            live++;
            if (m->done) {
                want->ev[want->n - 1].kind = EV_MSG;
                free(m->body);
                memset(m, 0, sizeof *m);
                live--;
            }
        } else if (live > 0) {
            int n = (int)rng_below((uint64_t)live), slot = -1;

            for (i = 0; i < active; i++)
                if (act[i].first_sent && n-- == 0) {
                    slot = i;
                    break;
                }
            ck_assert_int_ge(slot, 0);
            pend_emit(w, &act[slot], max_frame);
            if (act[slot].done) {
                /* Move its event to the end: messages complete in END order. */
                size_t e;

                for (e = 0; e < want->n; e++)
                    if (want->ev[e].kind == -1 && want->ev[e].reason == (uint32_t)slot)
                        break;
                ck_assert_uint_lt(e, want->n);
                {
                    ev tmp = want->ev[e];

                    memmove(&want->ev[e], &want->ev[e + 1], (want->n - e - 1) * sizeof tmp);
                    tmp.kind = EV_MSG;
                    tmp.reason = 0;
                    want->ev[want->n - 1] = tmp;
                }
                free(act[slot].body);
                memset(&act[slot], 0, sizeof act[slot]);
                live--;
            }
        }
    }
    wr_frame(w, QRPC__F_GOAWAY, 0, 0, g, 4);
    rec_push(want, EV_GOAWAY)->reason = 0;
    free(act);
}

static void check_conversation(uint64_t seed, uint32_t max_frame, int nmsg, int active)
{
    qrpc__rx_limits lim = std_limits;
    rec want = { 0 };
    wr w;
    int mode;

    lim.max_frame = max_frame;
    wr_init(&w);
    gen_conversation(seed, max_frame, nmsg, active, &w, &want);
    for (mode = 0; mode < SPLIT_MODES; mode++) {
        rec got = { 0 };
        const char *why;
        qrpc__rx *rx = qrpc__rx_new(&lim, &rec_ops, &got);

        ck_assert_ptr_nonnull(rx);
        ck_assert_int_eq(feed_split(rx, w.b.data, w.b.len, mode, seed + 1000 + (uint64_t)mode,
                                    &why), 0);
        ck_assert_ptr_null(why);
        assert_same_events(&got, &want);
        ck_assert(qrpc__rx_idle(rx));
        qrpc__rx_free(rx);
        rec_free(&got);
    }
    rec_free(&want);
    wr_free(&w);
}

START_TEST(test_conversation_small_frames)
{
    uint64_t seed;

    /* 1024-byte frames: most messages span several, many interleave. */
    for (seed = 1; seed <= 12; seed++)
        check_conversation(seed, QRPC__FRAME_MIN, 60, 1 + (int)(seed % 8) * 4);
}
END_TEST

START_TEST(test_conversation_default_frames)
{
    check_conversation(77, QRPC__FRAME_DEFAULT, 40, 10);
    check_conversation(78, QRPC__FRAME_DEFAULT, 40, 1);
}
END_TEST

/* More random split points on one long conversation. */
START_TEST(test_conversation_many_splits)
{
    rec want = { 0 };
    wr w;
    uint64_t s;

    wr_init(&w);
    gen_conversation(4242, 2048, 150, 20, &w, &want);
    for (s = 0; s < 20; s++) {
        qrpc__rx_limits lim = std_limits;
        rec got = { 0 };
        const char *why;
        qrpc__rx *rx;

        lim.max_frame = 2048;
        rx = qrpc__rx_new(&lim, &rec_ops, &got);
        ck_assert_ptr_nonnull(rx);
        ck_assert_int_eq(feed_split(rx, w.b.data, w.b.len, SPLIT_RANDOM, s, &why), 0);
        assert_same_events(&got, &want);
        qrpc__rx_free(rx);
        rec_free(&got);
    }
    rec_free(&want);
    wr_free(&w);
}
END_TEST

/* qrpc__rx_idle() is true exactly at frame boundaries. */
/*
 * The window: offered only inside a body frame with at least min bytes to
 * come, exactly the rest of the frame, in the message's own buffer; a
 * report past it, or without one, kills the reader.
 */
START_TEST(test_window)
{
    qrpc__reqhdr r = mk_req(100, "win.Win");
    uint8_t body[100], *win, *first;
    size_t wlen, head;
    rec got = { 0 };
    const char *why;
    qrpc__rx *rx;
    wr w;
    int i;

    for (i = 0; i < 100; i++)
        body[i] = (uint8_t)(i * 7 + 1);
    wr_init(&w);
    wr_hello(&w, &std_hello);
    wr_request(&w, 5, &r, body);
    head = w.b.len - sizeof body;
    rx = qrpc__rx_new(&std_limits, &rec_ops, &got);
    ck_assert_ptr_nonnull(rx);
    /* Between frames and inside headers: no window. */
    ck_assert_int_eq(qrpc__rx_window(rx, 1, &win, &wlen, &why), 0);
    ck_assert_ptr_null(win);
    ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data, head - 3, &why), 0);
    ck_assert_int_eq(qrpc__rx_window(rx, 1, &win, &wlen, &why), 0);
    ck_assert_ptr_null(win);
    ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data + head - 3, 3 + 10, &why), 0);
    /* 90 bytes of the frame to come: not for a minimum of 91. */
    ck_assert_int_eq(qrpc__rx_window(rx, 91, &win, &wlen, &why), 0);
    ck_assert_ptr_null(win);
    ck_assert_int_eq(qrpc__rx_window(rx, 90, &win, &wlen, &why), 0);
    ck_assert_ptr_nonnull(win);
    ck_assert_uint_eq(wlen, 90);
    first = win;
    memcpy(win, body + 10, 40);
    ck_assert_int_eq(qrpc__rx_window_done(rx, 40, &why), 0);
    ck_assert_uint_eq(got.n, 1);                        /* the HELLO only */
    ck_assert_int_eq(qrpc__rx_window(rx, 1, &win, &wlen, &why), 0);
    ck_assert_ptr_eq(win, first + 40);
    ck_assert_uint_eq(wlen, 50);
    memcpy(win, body + 50, 50);
    ck_assert_int_eq(qrpc__rx_window_done(rx, 50, &why), 0);
    ck_assert_uint_eq(got.n, 2);
    ck_assert_uint_eq(got.ev[1].msg.body_len, 100);
    ck_assert_int_eq(memcmp(got.ev[1].msg.body, body, 100), 0);
    ck_assert(qrpc__rx_idle(rx));
    ck_assert_int_eq(qrpc__rx_window(rx, 1, &win, &wlen, &why), 0);
    ck_assert_ptr_null(win);
    /* A report with no window open is a misuse: the reader is dead. */
    ck_assert_int_eq(qrpc__rx_window_done(rx, 1, &why), QRPC_EPROTO);
    ck_assert_str_eq(why, "window misused");
    ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data, 1, &why), QRPC_EPROTO);
    qrpc__rx_free(rx);
    rec_free(&got);

    /* More than the window held: refused, and the half-read message freed. */
    got = (rec){ 0 };
    rx = qrpc__rx_new(&std_limits, &rec_ops, &got);
    ck_assert_ptr_nonnull(rx);
    ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data, head, &why), 0);
    ck_assert_int_eq(qrpc__rx_window(rx, 1, &win, &wlen, &why), 0);
    ck_assert_uint_eq(wlen, 100);
    ck_assert_int_eq(qrpc__rx_window_done(rx, 101, &why), QRPC_EPROTO);
    ck_assert_int_eq(qrpc__rx_window(rx, 1, &win, &wlen, &why), 0);
    ck_assert_ptr_null(win);
    ck_assert_uint_eq(got.n, 1);
    qrpc__rx_free(rx);
    rec_free(&got);
    wr_free(&w);
}
END_TEST

START_TEST(test_idle_between_frames)
{
    qrpc__rx_limits lim = std_limits;
    rec want = { 0 }, got = { 0 };
    const char *why;
    qrpc__rx *rx;
    size_t off, b = 0;
    wr w;

    lim.max_frame = QRPC__FRAME_MIN;
    wr_init(&w);
    gen_conversation(5, QRPC__FRAME_MIN, 30, 6, &w, &want);
    rx = qrpc__rx_new(&lim, &rec_ops, &got);
    ck_assert_ptr_nonnull(rx);
    ck_assert(qrpc__rx_idle(rx));
    for (off = 0; off < w.b.len; off++) {
        uint8_t c = w.b.data[off];

        ck_assert_int_eq(qrpc__rx_feed(rx, &c, 1, &why), 0);
        while (b < w.nb && w.bounds[b] <= off)
            b++;
        /* Idle after byte off iff off + 1 starts a frame or ends the input. */
        ck_assert_msg(qrpc__rx_idle(rx) == ((b < w.nb && w.bounds[b] == off + 1) ||
                                            off + 1 == w.b.len),
                      "idle wrong after byte %zu", off);
    }
    assert_same_events(&got, &want);
    qrpc__rx_free(rx);
    rec_free(&got);
    rec_free(&want);
    wr_free(&w);
}
END_TEST

/* qrpc__rx_assembling() is true exactly while a message has frames to come. */
START_TEST(test_assembling)
{
    qrpc__reqhdr r = mk_req(4, "x");
    uint8_t h[QRPC__REQHDR_FIXED + QRPC__NAME_MAX];
    size_t hl = qrpc__reqhdr_put(h, &r);
    rec got = { 0 };
    const char *why;
    qrpc__rx *rx = qrpc__rx_new(&std_limits, &rec_ops, &got);
    wr w;

    ck_assert_ptr_nonnull(rx);
    ck_assert(!qrpc__rx_assembling(rx));
    wr_init(&w);
    wr_hello(&w, &std_hello);
    ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data, w.b.len, &why), 0);
    ck_assert(!qrpc__rx_assembling(rx));
    /* A message of one frame, half read: mid-frame, but no message waits for more frames. */
    w.b.len = 0;
    wr_request(&w, 1, &r, "abcd");
    ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data, w.b.len - 2, &why), 0);
    ck_assert(!qrpc__rx_idle(rx) && !qrpc__rx_assembling(rx));
    ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data + w.b.len - 2, 2, &why), 0);
    ck_assert(qrpc__rx_idle(rx) && !qrpc__rx_assembling(rx));
    /* Two messages of several frames, between and inside their frames. */
    w.b.len = 0;
    wr_frame2(&w, QRPC__F_REQUEST, 0, 2, h, hl, "ab", 2);
    ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data, w.b.len, &why), 0);
    ck_assert(qrpc__rx_idle(rx) && qrpc__rx_assembling(rx));
    w.b.len = 0;
    wr_reply(&w, 3, 0, NULL, 0);
    w.b.data[4] = 0;                                /* no END: more to come */
    wr_frame(&w, QRPC__F_DATA, QRPC__FF_END, 2, "cd", 2);
    ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data, w.b.len - 1, &why), 0);
    ck_assert(!qrpc__rx_idle(rx) && qrpc__rx_assembling(rx));
    ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data + w.b.len - 1, 1, &why), 0);
    ck_assert(qrpc__rx_idle(rx) && qrpc__rx_assembling(rx));  /* stream 3 is open */
    w.b.len = 0;
    wr_frame(&w, QRPC__F_DATA, QRPC__FF_END, 3, NULL, 0);
    ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data, w.b.len, &why), 0);
    ck_assert(qrpc__rx_idle(rx) && !qrpc__rx_assembling(rx));
    ck_assert_uint_eq(got.n, 4);
    qrpc__rx_free(rx);
    rec_free(&got);
    wr_free(&w);
}
END_TEST

/* ---- violations ------------------------------------------------------------------ */

/*
 * One case: build() writes the bytes up to and including the bad frame
 * and returns how many events must have been reported before it; a valid
 * message always follows, which must not be reported.
 */
typedef struct vcase {
    const char *name;
    size_t (*build)(wr *w, qrpc__rx_limits *lim);
    const char *why;            /* the expected description */
} vcase;

static const uint8_t zero8[8];

/* A HELLO and one ordinary request: two events. */
static size_t v_prefix(wr *w)
{
    qrpc__reqhdr r = mk_req(2, "bank.Bank");

    wr_hello(w, &std_hello);
    wr_request(w, 3, &r, "hi");
    return 2;
}

/* A request header for stream in a first frame that does not end it. */
static void wr_open(wr *w, uint32_t stream, uint32_t body_len, uint32_t in_frame)
{
    qrpc__reqhdr r = mk_req(body_len, "s");
    uint8_t h[QRPC__REQHDR_FIXED + QRPC__NAME_MAX];
    size_t hl = qrpc__reqhdr_put(h, &r);
    uint8_t *b = calloc(1, in_frame + 1);

    ck_assert_ptr_nonnull(b);
    wr_frame2(w, QRPC__F_REQUEST, 0, stream, h, hl, b, in_frame);
    free(b);
}

static size_t v_magic0(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    v_prefix(w);
    wr_fhdr_raw(w, 'q', 'R', 1, QRPC__F_PING, 0, 0, 0, 0, 0);
    return 2;
}

static size_t v_magic1(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    wr_fhdr_raw(w, 'Q', 'X', 1, QRPC__F_HELLO, 0, 0, 0, 0, 24);
    return 0;
}

static size_t v_version(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    v_prefix(w);
    wr_fhdr_raw(w, 'Q', 'R', 2, QRPC__F_PING, 0, 0, 0, 0, 0);
    return 2;
}

static size_t v_type0(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    v_prefix(w);
    wr_fhdr_raw(w, 'Q', 'R', 1, 0, 0, 0, 0, 0, 0);
    return 2;
}

static size_t v_type8(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    v_prefix(w);
    wr_fhdr_raw(w, 'Q', 'R', 1, 8, 0, 0, 0, 0, 0);
    return 2;
}

static size_t v_reserved5(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    v_prefix(w);
    wr_fhdr_raw(w, 'Q', 'R', 1, QRPC__F_PING, 0, 1, 0, 0, 0);
    return 2;
}

static size_t v_reserved6(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    v_prefix(w);
    wr_fhdr_raw(w, 'Q', 'R', 1, QRPC__F_DATA, 0, 0, 0x8000, 3, 0);
    return 2;
}

static size_t v_flags_unknown(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    v_prefix(w);
    wr_open(w, 9, 10, 0);
    wr_fhdr_raw(w, 'Q', 'R', 1, QRPC__F_DATA, QRPC__FF_END | 0x02, 0, 0, 9, 10);
    wr_raw(w, zero8, 8);
    wr_raw(w, zero8, 2);
    return 2;
}

static size_t v_flags_control(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    v_prefix(w);
    wr_frame(w, QRPC__F_PING, QRPC__FF_END, 0, NULL, 0);
    return 2;
}

static size_t v_frame_too_large(wr *w, qrpc__rx_limits *lim)
{
    lim->max_frame = 4096;
    v_prefix(w);
    wr_fhdr_raw(w, 'Q', 'R', 1, QRPC__F_REQUEST, 0, 0, 0, 1, 4097);
    return 2;
}

static size_t v_frame_huge(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    v_prefix(w);
    wr_fhdr_raw(w, 'Q', 'R', 1, QRPC__F_DATA, 0, 0, 0, 1, UINT32_MAX);
    return 2;
}

static size_t v_req_short(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    v_prefix(w);
    wr_frame(w, QRPC__F_REQUEST, QRPC__FF_END, 1, zero8, 8);
    return 2;
}

static size_t v_req_47(wr *w, qrpc__rx_limits *lim)
{
    qrpc__reqhdr r = mk_req(0, "calc.Calc");
    uint8_t h[QRPC__REQHDR_FIXED + QRPC__NAME_MAX];

    (void)lim;
    v_prefix(w);
    qrpc__reqhdr_put(h, &r);
    wr_frame(w, QRPC__F_REQUEST, QRPC__FF_END, 1, h, QRPC__REQHDR_FIXED - 1);
    return 2;
}

static size_t v_rep_short(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    v_prefix(w);
    wr_frame(w, QRPC__F_REPLY, QRPC__FF_END, 1, zero8, QRPC__REPHDR_LEN - 1);
    return 2;
}

static size_t v_rep_empty(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    v_prefix(w);
    wr_frame(w, QRPC__F_REPLY, QRPC__FF_END, 1, NULL, 0);
    return 2;
}

/* The name does not fit in the frame: 48 + 9 declared, 48 + 5 sent. */
static size_t v_req_name_cut(wr *w, qrpc__rx_limits *lim)
{
    qrpc__reqhdr r = mk_req(0, "calc.Calc");
    uint8_t h[QRPC__REQHDR_FIXED + QRPC__NAME_MAX];

    (void)lim;
    v_prefix(w);
    qrpc__reqhdr_put(h, &r);
    wr_frame(w, QRPC__F_REQUEST, QRPC__FF_END, 1, h, QRPC__REQHDR_FIXED + 5);
    return 2;
}

static size_t v_name_len(wr *w, uint16_t name_len)
{
    qrpc__reqhdr r = mk_req(0, "x");
    uint8_t h[QRPC__REQHDR_FIXED + 300];

    memset(h, 'n', sizeof h);
    qrpc__reqhdr_put(h, &r);
    h[52] = (uint8_t)name_len;
    h[53] = (uint8_t)(name_len >> 8);
    v_prefix(w);
    wr_frame(w, QRPC__F_REQUEST, QRPC__FF_END, 1, h, QRPC__REQHDR_FIXED + name_len);
    return 2;
}

static size_t v_name_0(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    return v_name_len(w, 0);
}

static size_t v_name_256(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    return v_name_len(w, 256);
}

static size_t v_req_reserved(wr *w, qrpc__rx_limits *lim)
{
    qrpc__reqhdr r = mk_req(0, "x");
    uint8_t h[QRPC__REQHDR_FIXED + QRPC__NAME_MAX];
    size_t hl = qrpc__reqhdr_put(h, &r);

    (void)lim;
    h[55] = 1;
    v_prefix(w);
    wr_frame(w, QRPC__F_REQUEST, QRPC__FF_END, 1, h, hl);
    return 2;
}

static size_t v_req_flags(wr *w, qrpc__rx_limits *lim)
{
    qrpc__reqhdr r = mk_req(0, "x");

    (void)lim;
    r.flags = 4;
    v_prefix(w);
    wr_request(w, 1, &r, NULL);
    return 2;
}

static size_t v_req_too_big(wr *w, qrpc__rx_limits *lim)
{
    lim->max_message = 4096;
    v_prefix(w);
    wr_open(w, 1, 4097, 0);
    return 2;
}

static size_t v_rep_too_big(wr *w, qrpc__rx_limits *lim)
{
    qrpc__rephdr p = { 64u << 20, 0 };
    uint8_t h[QRPC__REPHDR_LEN];

    lim->max_message = (64u << 20) - 1;
    qrpc__rephdr_put(h, &p);
    v_prefix(w);
    wr_frame(w, QRPC__F_REPLY, 0, 1, h, sizeof h);
    return 2;
}

static size_t v_data_unknown(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    v_prefix(w);
    wr_open(w, 1, 100, 10);
    wr_frame(w, QRPC__F_DATA, QRPC__FF_END, 2, zero8, 8);
    return 2;
}

/* DATA for a stream whose message was already delivered. */
static size_t v_data_after_end(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    v_prefix(w);
    wr_frame(w, QRPC__F_DATA, 0, 3, NULL, 0);
    return 2;
}

static size_t v_req_dup(wr *w, qrpc__rx_limits *lim)
{
    qrpc__reqhdr r = mk_req(0, "x");

    (void)lim;
    v_prefix(w);
    wr_open(w, 7, 100, 10);
    wr_request(w, 7, &r, NULL);
    return 2;
}

static size_t v_rep_dup(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    v_prefix(w);
    wr_open(w, 7, 100, 10);
    wr_reply(w, 7, 0, NULL, 0);
    return 2;
}

static size_t v_streams(wr *w, qrpc__rx_limits *lim)
{
    uint32_t i;

    lim->max_streams = 5;
    v_prefix(w);
    for (i = 0; i < 5; i++)
        wr_open(w, 100 + i, 10, 1);
    wr_reply(w, 1, 0, "ok", 2);      /* one frame: not counted, accepted */
    wr_open(w, 1, 10, 1);
    return 3;
}

static size_t v_buffered(wr *w, qrpc__rx_limits *lim)
{
    uint8_t *b = calloc(1, 4000);

    ck_assert_ptr_nonnull(b);
    lim->max_buffered = 3000;
    v_prefix(w);                     /* its 2 body bytes were delivered */
    wr_open(w, 1, 5000, 1000);
    wr_open(w, 2, 5000, 1000);
    wr_open(w, 3, 5000, 1000);
    wr_reply(w, 4, 0, b, 4000);      /* one frame: not counted, accepted */
    free(b);
    wr_frame(w, QRPC__F_DATA, 0, 3, zero8, 1);
    return 3;
}

/* The same limit reached by a first frame. */
static size_t v_buffered_first(wr *w, qrpc__rx_limits *lim)
{
    lim->max_buffered = 3000;
    v_prefix(w);
    wr_open(w, 1, 5000, 2000);
    wr_open(w, 2, 5000, 1001);
    return 2;
}

static size_t v_first_excess(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    v_prefix(w);
    wr_open(w, 1, 10, 11);
    return 2;
}

static size_t v_first_excess_noend(wr *w, qrpc__rx_limits *lim)
{
    qrpc__reqhdr r = mk_req(1, "x");
    uint8_t h[QRPC__REQHDR_FIXED + QRPC__NAME_MAX];
    size_t hl = qrpc__reqhdr_put(h, &r);

    (void)lim;
    v_prefix(w);
    wr_frame2(w, QRPC__F_REQUEST, QRPC__FF_END, 1, h, hl, zero8, 2);
    return 2;
}

static size_t v_data_excess(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    v_prefix(w);
    wr_open(w, 1, 10, 4);
    wr_frame(w, QRPC__F_DATA, 0, 1, zero8, 5);
    wr_frame(w, QRPC__F_DATA, QRPC__FF_END, 1, zero8, 2);
    return 2;
}

static size_t v_first_end_early(wr *w, qrpc__rx_limits *lim)
{
    qrpc__rephdr p = { 10, 0 };
    uint8_t h[QRPC__REPHDR_LEN];

    (void)lim;
    qrpc__rephdr_put(h, &p);
    v_prefix(w);
    wr_frame2(w, QRPC__F_REPLY, QRPC__FF_END, 1, h, sizeof h, zero8, 8);
    return 2;
}

static size_t v_data_end_early(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    v_prefix(w);
    wr_open(w, 1, 10, 4);
    wr_frame(w, QRPC__F_DATA, QRPC__FF_END, 1, zero8, 5);
    return 2;
}

static size_t v_before_hello(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    wr_frame(w, QRPC__F_PING, 0, 0, NULL, 0);
    return 0;
}

static size_t v_request_before_hello(wr *w, qrpc__rx_limits *lim)
{
    qrpc__reqhdr r = mk_req(0, "x");

    (void)lim;
    wr_request(w, 1, &r, NULL);
    return 0;
}

static size_t v_second_hello(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    v_prefix(w);
    wr_hello(w, &std_hello);
    return 2;
}

static size_t v_hello_size(wr *w, uint32_t len)
{
    uint8_t p[32];

    qrpc__hello_put(p, &std_hello);
    memset(p + QRPC__HELLO_LEN, 0, sizeof p - QRPC__HELLO_LEN);
    wr_frame(w, QRPC__F_HELLO, 0, 0, p, len);
    return 0;
}

static size_t v_hello_23(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    return v_hello_size(w, 23);
}

static size_t v_hello_25(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    return v_hello_size(w, 25);
}

static size_t v_hello_stream(wr *w, qrpc__rx_limits *lim)
{
    uint8_t p[QRPC__HELLO_LEN];

    (void)lim;
    qrpc__hello_put(p, &std_hello);
    wr_frame(w, QRPC__F_HELLO, 0, 1, p, sizeof p);
    return 0;
}

static size_t v_hello_reserved(wr *w, qrpc__rx_limits *lim)
{
    uint8_t p[QRPC__HELLO_LEN];

    (void)lim;
    qrpc__hello_put(p, &std_hello);
    p[23] = 0x80;
    wr_frame(w, QRPC__F_HELLO, 0, 0, p, sizeof p);
    return 0;
}

static size_t v_hello_limits(wr *w, int which)
{
    qrpc__hello h = std_hello;

    if (which == 0)
        h.max_frame = QRPC__FRAME_MIN - 1;
    else if (which == 1)
        h.max_message = 1023;
    else
        h.max_inflight = 0;
    wr_hello(w, &h);
    return 0;
}

static size_t v_hello_frame(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    return v_hello_limits(w, 0);
}

static size_t v_hello_message(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    return v_hello_limits(w, 1);
}

static size_t v_hello_inflight(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    return v_hello_limits(w, 2);
}

static size_t v_ping_size(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    v_prefix(w);
    wr_frame(w, QRPC__F_PING, 0, 0, zero8, 4);
    return 2;
}

static size_t v_pong_size(wr *w, qrpc__rx_limits *lim)
{
    uint8_t p[9] = { 0 };

    (void)lim;
    v_prefix(w);
    wr_frame(w, QRPC__F_PONG, 0, 0, p, 9);
    return 2;
}

static size_t v_goaway_empty(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    v_prefix(w);
    wr_frame(w, QRPC__F_GOAWAY, 0, 0, NULL, 0);
    return 2;
}

static size_t v_goaway_8(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    v_prefix(w);
    wr_frame(w, QRPC__F_GOAWAY, 0, 0, zero8, 8);
    return 2;
}

static size_t v_goaway_stream(wr *w, qrpc__rx_limits *lim)
{
    (void)lim;
    v_prefix(w);
    wr_frame(w, QRPC__F_GOAWAY, 0, 4, zero8, 4);
    return 2;
}

#define V_IN_USE "REQUEST or REPLY for a stream already being assembled"

static const vcase vcases[] = {
    { "bad magic byte 0", v_magic0, "bad magic" },
    { "bad magic byte 1", v_magic1, "bad magic" },
    { "version 2", v_version, "unsupported protocol version" },
    { "type 0", v_type0, "unknown frame type" },
    { "type 8", v_type8, "unknown frame type" },
    { "byte 5 set", v_reserved5, "reserved frame header bits set" },
    { "bytes 6-7 set", v_reserved6, "reserved frame header bits set" },
    { "flag 0x02", v_flags_unknown, "unknown frame flags" },
    { "END on PING", v_flags_control, "END on a control frame" },
    { "frame over max_frame", v_frame_too_large, "frame too large" },
    { "frame of 4 GiB", v_frame_huge, "frame too large" },
    { "REQUEST of 8 bytes", v_req_short, "first frame shorter than its message header" },
    { "REQUEST of 47 bytes", v_req_47, "first frame shorter than its message header" },
    { "REPLY of 7 bytes", v_rep_short, "first frame shorter than its message header" },
    { "REPLY of 0 bytes", v_rep_empty, "first frame shorter than its message header" },
    { "name cut short", v_req_name_cut, "first frame shorter than its message header" },
    { "name length 0", v_name_0, "service name length 0 or over 255" },
    { "name length 256", v_name_256, "service name length 0 or over 255" },
    { "request reserved", v_req_reserved, "reserved request header field set" },
    { "request flags", v_req_flags, "unknown request flags" },
    { "request over max_message", v_req_too_big, "message body over max_message" },
    { "reply over max_message", v_rep_too_big, "message body over max_message" },
    { "DATA, unknown stream", v_data_unknown, "DATA for a stream not being assembled" },
    { "DATA after END", v_data_after_end, "DATA for a stream not being assembled" },
    { "REQUEST, stream in use", v_req_dup, V_IN_USE },
    { "REPLY, stream in use", v_rep_dup, V_IN_USE },
    { "max_streams + 1", v_streams, "more than max_streams messages being assembled" },
    { "max_buffered + 1", v_buffered, "too many body bytes being assembled" },
    { "max_buffered + 1, first frame", v_buffered_first, "too many body bytes being assembled" },
    { "first frame over body_len", v_first_excess, "more body bytes than the header declared" },
    { "first frame over body_len, END", v_first_excess_noend, "more body bytes than the header declared" },
    { "DATA over body_len", v_data_excess, "more body bytes than the header declared" },
    { "END early, first frame", v_first_end_early, "END before the whole body" },
    { "END early, DATA", v_data_end_early, "END before the whole body" },
    { "PING before HELLO", v_before_hello, "frame before HELLO" },
    { "REQUEST before HELLO", v_request_before_hello, "frame before HELLO" },
    { "second HELLO", v_second_hello, "second HELLO" },
    { "HELLO of 23 bytes", v_hello_23, "HELLO payload not 24 bytes" },
    { "HELLO of 25 bytes", v_hello_25, "HELLO payload not 24 bytes" },
    { "HELLO stream 1", v_hello_stream, "HELLO with a stream id" },
    { "HELLO reserved", v_hello_reserved, "reserved HELLO field set" },
    { "HELLO max_frame 1023", v_hello_frame, "HELLO limits below the protocol's minimums" },
    { "HELLO max_message 1023", v_hello_message, "HELLO limits below the protocol's minimums" },
    { "HELLO max_inflight 0", v_hello_inflight, "HELLO limits below the protocol's minimums" },
    { "PING of 4 bytes", v_ping_size, "PING or PONG payload not 0 or 8 bytes" },
    { "PONG of 9 bytes", v_pong_size, "PING or PONG payload not 0 or 8 bytes" },
    { "GOAWAY of 0 bytes", v_goaway_empty, "GOAWAY payload not 4 bytes" },
    { "GOAWAY of 8 bytes", v_goaway_8, "GOAWAY payload not 4 bytes" },
    { "GOAWAY stream 4", v_goaway_stream, "GOAWAY with a stream id" },
};
#define N_VCASES ((int)(sizeof vcases / sizeof vcases[0]))

/* Case _i: QRPC_EPROTO with its description at every split, nothing reported after. */
START_TEST(test_violation)
{
    const vcase *c = &vcases[_i];
    int mode;

    for (mode = 0; mode < SPLIT_MODES; mode++) {
        qrpc__rx_limits lim = std_limits;
        qrpc__reqhdr after = mk_req(1, "after.After");
        rec got = { 0 };
        const char *why = NULL;
        qrpc__rx *rx;
        size_t before;
        wr w;
        int rc;

        wr_init(&w);
        before = c->build(&w, &lim);
        /* A valid message after the bad frame, to be ignored. */
        wr_request(&w, 12345, &after, "!");
        rx = qrpc__rx_new(&lim, &rec_ops, &got);
        ck_assert_ptr_nonnull(rx);
        rc = feed_split(rx, w.b.data, w.b.len, mode, (uint64_t)_i, &why);
        ck_assert_msg(rc == QRPC_EPROTO, "%s (split %d): returned %d", c->name, mode, rc);
        ck_assert_msg(why != NULL, "%s: no description", c->name);
        ck_assert_msg(strcmp(why, c->why) == 0, "%s: \"%s\", want \"%s\"", c->name, why, c->why);
        ck_assert_msg(got.n == before, "%s (split %d): %zu events, want %zu",
                      c->name, mode, got.n, before);
        /* The reader stays dead. */
        why = NULL;
        ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data, 1, &why), QRPC_EPROTO);
        ck_assert_ptr_nonnull(why);
        ck_assert(!qrpc__rx_idle(rx));
        ck_assert_uint_eq(got.n, before);
        qrpc__rx_free(rx);
        rec_free(&got);
        wr_free(&w);
    }
}
END_TEST

/* The edges that are not violations: exactly at each limit. */
START_TEST(test_limits_exact)
{
    qrpc__rx_limits lim = { 4096, 5000, 3, 10000 };
    qrpc__reqhdr r = mk_req(4096 - QRPC__REQHDR_FIXED - 1, "x");
    uint8_t *big = calloc(1, 5000);
    rec got = { 0 };
    const char *why;
    qrpc__rx *rx;
    qrpc__hello hm = { 0, QRPC__FRAME_MIN, 1024, 1 };
    wr w;

    ck_assert_ptr_nonnull(big);
    wr_init(&w);
    wr_hello(&w, &hm);
    wr_request(&w, 1, &r, big);                        /* a frame of exactly max_frame */
    ck_assert_uint_eq(w.b.len - w.bounds[1], QRPC__FRAME_HDR + 4096);
    wr_open(&w, 2, 5000, 4000);                        /* a body of exactly max_message */
    wr_frame(&w, QRPC__F_DATA, QRPC__FF_END, 2, big, 1000);
    rx = qrpc__rx_new(&lim, &rec_ops, &got);
    ck_assert_ptr_nonnull(rx);
    ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data, w.b.len, &why), 0);
    ck_assert_uint_eq(got.n, 3);
    ck_assert_uint_eq(got.ev[2].msg.body_len, 5000);
    rec_free(&got);
    w.b.len = 0;
    /* Exactly max_streams being assembled, and exactly max_buffered bytes. */
    wr_open(&w, 10, 5000, 3000);
    wr_open(&w, 11, 5000, 3000);
    wr_open(&w, 12, 5000, 3000);
    wr_frame(&w, QRPC__F_DATA, 0, 12, big, 1000);
    /* A message of one frame counts against neither. */
    wr_reply(&w, 13, 0, big, 4000);
    ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data, w.b.len, &why), 0);
    ck_assert_uint_eq(got.n, 1);
    ck_assert_uint_eq(got.ev[0].msg.body_len, 4000);
    /* But one more byte of the others does. */
    w.b.len = 0;
    wr_frame(&w, QRPC__F_DATA, 0, 10, big, 1);
    ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data, w.b.len, &why), QRPC_EPROTO);
    ck_assert_str_eq(why, "too many body bytes being assembled");
    qrpc__rx_free(rx);
    rec_free(&got);
    wr_free(&w);
    free(big);
}
END_TEST

/* ---- memory ------------------------------------------------------------------ */

/*
 * Feeds a HELLO to a fresh reader, so that what is measured afterwards is
 * the reader's (the recorder's event array is allocated by then).
 */
static qrpc__rx *rx_after_hello(const qrpc__rx_limits *lim, rec *got)
{
    qrpc__rx *rx = qrpc__rx_new(lim, &rec_ops, got);
    const char *why;
    wr w;

    ck_assert_ptr_nonnull(rx);
    wr_init(&w);
    wr_hello(&w, &std_hello);
    ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data, w.b.len, &why), 0);
    ck_assert_uint_eq(got->n, 1);
    wr_free(&w);
    return rx;
}

/* Sets the payload length of the frame whose header starts at off. */
static void patch_len(wr *w, size_t off, uint32_t len)
{
    w->b.data[off + 12] = (uint8_t)len;
    w->b.data[off + 13] = (uint8_t)(len >> 8);
    w->b.data[off + 14] = (uint8_t)(len >> 16);
    w->b.data[off + 15] = (uint8_t)(len >> 24);
}

/*
 * Into a new w: the start of a request frame of 65536 bytes for a body
 * declared body_len long, of which the header and 10 body bytes come.
 * Returns the request header's length.
 */
static size_t wr_declared(wr *w, uint32_t body_len)
{
    qrpc__reqhdr r = mk_req(body_len, "bank.Bank");
    uint8_t h[QRPC__REQHDR_FIXED + QRPC__NAME_MAX];
    size_t hl = qrpc__reqhdr_put(h, &r);

    wr_init(w);
    wr_frame2(w, QRPC__F_REQUEST, 0, 1, h, hl, "0123456789", 10);
    patch_len(w, 0, 65536);
    return hl;
}

/*
 * The end of a memory test: rx, fed the HELLO and the start of one
 * message, is still in the middle of it; everything goes.
 */
static void rx_end_partial(qrpc__rx *rx, rec *got, wr *w)
{
    ck_assert(!qrpc__rx_idle(rx));
    ck_assert_uint_eq(got->n, 1);
    qrpc__rx_free(rx);
    rec_free(got);
    wr_free(w);
}

/*
 * A declared body under 4 MiB that never comes costs what came, not its
 * declared length.
 */
START_TEST(test_memory_declared_not_sent)
{
    qrpc__rx_limits lim = { 65536, 64u << 20, 1024, 64u << 20 };
    uint8_t chunk[1000];
    size_t hl, base, used, sent = 10, rest, k;
    int measurable = heap_measurable();
    rec got = { 0 };
    const char *why;
    qrpc__rx *rx;
    wr w;

    hl = wr_declared(&w, (4u << 20) - 1);
    rx = rx_after_hello(&lim, &got);
    base = heap_in_use();
    ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data, w.b.len, &why), 0);
    used = heap_in_use() - base;
    if (measurable)
        ck_assert_msg(used < 2048, "%zu bytes held for 10 body bytes", used);
    ck_assert(!qrpc__rx_idle(rx));
    /* The rest of the frame in dribbles: what is held follows what came. */
    memset(chunk, 'x', sizeof chunk);
    for (rest = 65536 - hl - 10; rest > 0; rest -= k) {
        k = rest < sizeof chunk ? rest : sizeof chunk;
        ck_assert_int_eq(qrpc__rx_feed(rx, chunk, k, &why), 0);
        sent += k;
        used = heap_in_use() - base;
        if (measurable)
            ck_assert_msg(used < 2 * sent + 4096, "%zu bytes held for %zu body bytes", used, sent);
    }
    ck_assert_uint_eq(sent, 65536 - hl);
    ck_assert(qrpc__rx_idle(rx));
    ck_assert_uint_eq(got.n, 1);
    qrpc__rx_free(rx);
    rec_free(&got);
    wr_free(&w);
}
END_TEST

/* Resident memory of this process, in bytes (0: unknown). */
static size_t rss_bytes(void)
{
    unsigned long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f == NULL)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/*
 * A body of 4 MiB or more is allocated whole (on huge pages, mem.h), but
 * the memory it holds still follows what came: a declared 64 MiB of which
 * 10 bytes came costs at most a huge page or two of resident memory.
 */
START_TEST(test_memory_whole_resident)
{
    qrpc__rx_limits lim = { 65536, 64u << 20, 1024, 64u << 20 };
    size_t base, now;
    rec got = { 0 };
    const char *why;
    qrpc__rx *rx;
    wr w;

    (void)wr_declared(&w, 64u << 20);
    rx = rx_after_hello(&lim, &got);
    base = rss_bytes();
    ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data, w.b.len, &why), 0);
    now = rss_bytes();
    if (base != 0)
        ck_assert_msg(now < base + (8u << 20), "%zu bytes resident for 10 body bytes",
                      now - base);
    rx_end_partial(rx, &got, &w);
}
END_TEST

/*
 * A body of 4 MiB or more counts whole against max_buffered from its first
 * frame, and its DATA frames add nothing: exactly max_buffered declared is
 * accepted, a whole body is delivered intact (read through windows too),
 * and its room is given back on delivery.
 */
START_TEST(test_whole_body)
{
    qrpc__rx_limits lim = { 65536, 8u << 20, 16, 10u << 20 };
    uint32_t len1 = 6u << 20, len2 = 4u << 20, off, k;
    uint8_t *pat = malloc(len1);
    rec got = { 0 };
    const char *why;
    qrpc__rx *rx;
    int mode;
    wr w;

    ck_assert_ptr_nonnull(pat);
    for (off = 0; off < len1; off++)
        pat[off] = (uint8_t)(off * 7 + (off >> 16));
    for (mode = 0; mode < SPLIT_MODES; mode++) {
        rx = rx_after_hello(&lim, &got);
        wr_init(&w);
        wr_open(&w, 1, len1, 1000);             /* 6 MiB counted */
        wr_open(&w, 2, len2, 1000);             /* 10 MiB: exactly max_buffered */
        wr_reply(&w, 3, 0, "ok", 2);            /* one frame: not counted */
        /* the rest of stream 1: the bytes after the 1000 zeros wr_open sent */
        for (off = 1000; off < len1; off += k) {
            k = len1 - off < 65536 ? len1 - off : 65536;
            wr_frame(&w, QRPC__F_DATA, off + k == len1 ? QRPC__FF_END : 0, 1, pat + off, k);
        }
        wr_open(&w, 4, len1, 1000);             /* stream 1's room, given back */
        wr_frame(&w, QRPC__F_DATA, 0, 2, pat, 65536);   /* adds nothing */
        ck_assert_int_eq(feed_split(rx, w.b.data, w.b.len, mode, 99, &why), 0);
        ck_assert_uint_eq(got.n, 3);
        ck_assert_uint_eq(got.ev[1].stream, 3);
        ck_assert_uint_eq(got.ev[2].stream, 1);
        ck_assert_uint_eq(got.ev[2].msg.body_len, len1);
        for (off = 0; off < 1000; off++)
            ck_assert_uint_eq(got.ev[2].msg.body[off], 0);
        ck_assert_int_eq(memcmp(got.ev[2].msg.body + 1000, pat + 1000, len1 - 1000), 0);
        /* 16 MiB declared now: one more whole body of 4 MiB does not fit */
        w.b.len = 0;
        wr_open(&w, 5, len2, 1);
        ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data, w.b.len, &why), QRPC_EPROTO);
        ck_assert_str_eq(why, "too many body bytes being assembled");
        qrpc__rx_free(rx);
        rec_free(&got);
        wr_free(&w);
        memset(&got, 0, sizeof got);
    }
    free(pat);
}
END_TEST

/* The same for a message of one frame: the frame's declared size is not allocated. */
START_TEST(test_memory_frame_not_sent)
{
    qrpc__rx_limits lim = { 65536, 64u << 20, 1024, 64u << 20 };
    qrpc__rephdr p = { 65536 - QRPC__REPHDR_LEN, 0 };
    uint8_t h[QRPC__REPHDR_LEN];
    int measurable = heap_measurable();
    rec got = { 0 };
    const char *why;
    qrpc__rx *rx;
    size_t base, used;
    wr w;

    qrpc__rephdr_put(h, &p);
    wr_init(&w);
    wr_frame2(&w, QRPC__F_REPLY, QRPC__FF_END, 1, h, sizeof h, "0123456789", 10);
    patch_len(&w, 0, 65536);
    rx = rx_after_hello(&lim, &got);
    base = heap_in_use();
    ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data, w.b.len, &why), 0);
    used = heap_in_use() - base;
    if (measurable)
        ck_assert_msg(used < 1024, "%zu bytes held for 10 body bytes", used);
    rx_end_partial(rx, &got, &w);
}
END_TEST

/* max_streams messages at once, finished in a random order, then one too many. */
START_TEST(test_max_streams)
{
    qrpc__rx_limits lim = { 65536, 64u << 20, 1024, 256u << 20 };
    uint32_t ids[1024], i, j, t;
    rec got = { 0 };
    const char *why;
    qrpc__rx *rx;
    int round;
    wr w;

    rng_seed(17);
    rx = qrpc__rx_new(&lim, &rec_ops, &got);
    ck_assert_ptr_nonnull(rx);
    wr_init(&w);
    wr_hello(&w, &std_hello);
    ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data, w.b.len, &why), 0);
    for (round = 0; round < 3; round++) {
        w.b.len = 0;
        for (i = 0; i < 1024; i++) {
            ids[i] = round == 0 ? i : round == 1 ? i << 22 : (uint32_t)rng();
            for (j = 0; j < i; j++)                 /* distinct */
                if (ids[j] == ids[i]) {
                    ids[i] = (uint32_t)rng();
                    j = (uint32_t)-1;
                }
            wr_open(&w, ids[i], 3, 1);
        }
        for (i = 1023; i > 0; i--) {                /* shuffle */
            j = rng_below(i + 1);
            t = ids[i];
            ids[i] = ids[j];
            ids[j] = t;
        }
        for (i = 0; i < 1024; i++)
            wr_frame(&w, QRPC__F_DATA, QRPC__FF_END, ids[i], "ab", 2);
        ck_assert_int_eq(feed_split(rx, w.b.data, w.b.len, SPLIT_RANDOM, (uint64_t)round, &why), 0);
        ck_assert_uint_eq(got.n, 1 + 1024 * (size_t)(round + 1));
        for (i = 0; i < 1024; i++) {
            const ev *e = &got.ev[got.n - 1024 + i];

            ck_assert_uint_eq(e->stream, ids[i]);
            ck_assert_uint_eq(e->msg.body_len, 3);
            ck_assert_int_eq(memcmp(e->msg.body, "\0ab", 3), 0);
        }
    }
    /* Full again; a message of one frame still passes; then one more. */
    w.b.len = 0;
    for (i = 0; i < 1024; i++)
        wr_open(&w, i, 3, 1);
    wr_reply(&w, 4999, 0, "x", 1);
    wr_open(&w, 5000, 3, 1);
    ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data, w.b.len, &why), QRPC_EPROTO);
    ck_assert_str_eq(why, "more than max_streams messages being assembled");
    qrpc__rx_free(rx);
    rec_free(&got);
    wr_free(&w);
}
END_TEST

/*
 * The stream table under churn: streams open and finish at random, up to
 * 600 at once, over 20000 messages; every DATA must find its stream (or
 * the feed fails) and every body must come out right.
 */
START_TEST(test_stream_churn)
{
    qrpc__rx_limits lim = { 65536, 64u << 20, 1024, 256u << 20 };
    enum { MAXOPEN = 600, TOTAL = 20000 };
    uint32_t *open_ids = malloc(MAXOPEN * sizeof *open_ids);
    uint8_t *open_got = malloc(MAXOPEN);
    uint32_t nopen = 0, started = 0, delivered = 0, next = 0;
    rec got = { 0 };
    const char *why;
    qrpc__rx *rx;
    size_t i;
    wr w;

    ck_assert(open_ids != NULL && open_got != NULL);
    rng_seed(99);
    rx = qrpc__rx_new(&lim, &rec_ops, &got);
    ck_assert_ptr_nonnull(rx);
    wr_init(&w);
    wr_hello(&w, &std_hello);
    while (started < TOTAL || nopen > 0) {
        if (started < TOTAL && nopen < MAXOPEN && (nopen == 0 || rng_below(2) == 0)) {
            /* Clustered ids make long probe runs, the case deletion must get right. */
            next += rng_below(4) ? 1 : 1 + rng_below(1u << 20);
            open_ids[nopen] = next;
            open_got[nopen] = 0;
            wr_open(&w, next, 4, 0);
            nopen++;
            started++;
        } else {
            uint32_t k = rng_below(nopen);
            uint8_t b = (uint8_t)open_ids[k];

            if (open_got[k] < 3) {
                wr_frame(&w, QRPC__F_DATA, 0, open_ids[k], &b, 1);
                open_got[k]++;
            } else {
                wr_frame(&w, QRPC__F_DATA, QRPC__FF_END, open_ids[k], &b, 1);
                open_ids[k] = open_ids[--nopen];
                open_got[k] = open_got[nopen];
                delivered++;
            }
        }
        if (w.b.len > 60000) {
            ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data, w.b.len, &why), 0);
            w.b.len = 0;
        }
    }
    ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data, w.b.len, &why), 0);
    ck_assert_uint_eq(got.n, 1 + TOTAL);
    for (i = 1; i < got.n; i++) {
        uint8_t b = (uint8_t)got.ev[i].stream;
        const uint8_t *body = got.ev[i].msg.body;

        ck_assert_uint_eq(got.ev[i].msg.body_len, 4);
        ck_assert(body[0] == b && body[1] == b && body[2] == b && body[3] == b);
    }
    qrpc__rx_free(rx);
    rec_free(&got);
    wr_free(&w);
    free(open_ids);
    free(open_got);
}
END_TEST

/* Freeing a reader mid-message, mid-header and with many partial messages leaks nothing. */
START_TEST(test_free_partial)
{
    qrpc__rx_limits lim = std_limits;
    int exact = heap_exact();
    rec want = { 0 };
    size_t cut, base;
    wr w;

    lim.max_frame = QRPC__FRAME_MIN;
    wr_init(&w);
    gen_conversation(31, QRPC__FRAME_MIN, 40, 12, &w, &want);
    /* Every cut point in the first few KB, and some beyond. */
    for (cut = 0; cut < w.b.len; cut += cut < 3000 ? 1 : 97) {
        rec got = { 0 };
        const char *why;
        qrpc__rx *rx;

        base = heap_in_use();
        rx = qrpc__rx_new(&lim, &rec_ops, &got);
        ck_assert_ptr_nonnull(rx);
        ck_assert_int_eq(feed_split(rx, w.b.data, cut, SPLIT_RANDOM, cut, &why), 0);
        qrpc__rx_free(rx);
        rec_free(&got);
        if (exact)
            ck_assert_msg(heap_in_use() == base, "cut at %zu: %ld bytes left", cut,
                          (long)(heap_in_use() - base));
    }
    qrpc__rx_free(NULL);
    rec_free(&want);
    wr_free(&w);
}
END_TEST

/* ---- callbacks ------------------------------------------------------------------ */

/* Each callback's nonzero return stops the feed at once, with that value. */
START_TEST(test_callback_stops)
{
    static const int kinds[] = { EV_HELLO, EV_MSG, EV_PING, EV_PONG, EV_GOAWAY };
    qrpc__reqhdr r = mk_req(3, "x");
    uint8_t g[4] = { 1, 0, 0, 0 };
    size_t k, at;
    int mode;
    wr w;

    wr_init(&w);
    wr_hello(&w, &std_hello);                           /* event 1 */
    wr_request(&w, 1, &r, "abc");                       /* 2 */
    wr_frame(&w, QRPC__F_PING, 0, 2, NULL, 0);          /* 3 */
    wr_open(&w, 3, 5, 2);
    wr_frame(&w, QRPC__F_PONG, 0, 4, zero8, 8);         /* 4 */
    wr_frame(&w, QRPC__F_DATA, QRPC__FF_END, 3, "xyz", 3);      /* 5 */
    wr_frame(&w, QRPC__F_GOAWAY, 0, 0, g, 4);           /* 6 */
    wr_reply(&w, 9, 0, "late", 4);                      /* 7, never reached */
    for (at = 1; at <= 6; at++) {
        for (mode = 0; mode < SPLIT_MODES; mode++) {
            rec got = { 0 };
            const char *why;
            qrpc__rx *rx;

            got.stop_at = at;
            got.stop_rc = 1000 + (int)at;
            rx = qrpc__rx_new(&std_limits, &rec_ops, &got);
            ck_assert_ptr_nonnull(rx);
            ck_assert_int_eq(feed_split(rx, w.b.data, w.b.len, mode, at, &why), 1000 + (int)at);
            ck_assert_ptr_null(why);
            ck_assert_uint_eq(got.n, at);
            qrpc__rx_free(rx);
            rec_free(&got);
        }
    }
    /* Every kind was among those that stopped it. */
    for (k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        rec got = { 0 };
        const char *why;
        qrpc__rx *rx = qrpc__rx_new(&std_limits, &rec_ops, &got);

        ck_assert_ptr_nonnull(rx);
        ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data, w.b.len, &why), 0);
        for (at = 0; at < got.n; at++)
            if (got.ev[at].kind == kinds[k])
                break;
        ck_assert_uint_lt(at, got.n);
        qrpc__rx_free(rx);
        rec_free(&got);
    }
    wr_free(&w);
}
END_TEST

/* NULL callbacks ignore their frames; a NULL on_msg frees the body. */
START_TEST(test_null_callbacks)
{
    static const qrpc__rx_ops none = { NULL, NULL, NULL, NULL, NULL };
    qrpc__reqhdr r = mk_req(3, "x");
    uint8_t g[4] = { 0 }, data[1000] = { 0 };
    const char *why;
    qrpc__rx *rx;
    wr w;

    wr_init(&w);
    wr_hello(&w, &std_hello);
    wr_request(&w, 1, &r, "abc");
    wr_open(&w, 2, 2000, 1000);
    wr_frame(&w, QRPC__F_DATA, QRPC__FF_END, 2, data, 1000);
    wr_frame(&w, QRPC__F_PING, 0, 2, NULL, 0);
    wr_frame(&w, QRPC__F_PONG, 0, 2, NULL, 0);
    wr_frame(&w, QRPC__F_GOAWAY, 0, 0, g, 4);
    rx = qrpc__rx_new(&std_limits, &none, NULL);
    ck_assert_ptr_nonnull(rx);
    ck_assert_int_eq(qrpc__rx_feed(rx, w.b.data, w.b.len, &why), 0);
    ck_assert_int_eq(qrpc__rx_feed(rx, NULL, 0, &why), 0);
    qrpc__rx_free(rx);
    wr_free(&w);
}
END_TEST

static Suite *frame_suite(void)
{
    Suite *s = suite_create("frame");
    TCase *tc = tcase_create("frame");

    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_encode_example_bytes);
    tcase_add_test(tc, test_encode_field_positions);
    tcase_add_test(tc, test_roundtrip_headers);
    tcase_add_test(tc, test_conversation_small_frames);
    tcase_add_test(tc, test_conversation_default_frames);
    tcase_add_test(tc, test_conversation_many_splits);
    tcase_add_test(tc, test_window);
    tcase_add_test(tc, test_idle_between_frames);
    tcase_add_test(tc, test_assembling);
    tcase_add_loop_test(tc, test_violation, 0, N_VCASES);
    tcase_add_test(tc, test_limits_exact);
    tcase_add_test(tc, test_memory_declared_not_sent);
    tcase_add_test(tc, test_memory_frame_not_sent);
    tcase_add_test(tc, test_memory_whole_resident);
    tcase_add_test(tc, test_whole_body);
    tcase_add_test(tc, test_max_streams);
    tcase_add_test(tc, test_stream_churn);
    tcase_add_test(tc, test_free_partial);
    tcase_add_test(tc, test_callback_stops);
    tcase_add_test(tc, test_null_callbacks);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(frame_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
