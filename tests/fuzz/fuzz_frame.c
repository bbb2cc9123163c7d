/*
 * fuzz_frame.c - libFuzzer harness for the frame reader of
 * runtime/src/frame.h, the code that reads every byte a peer sends.
 *
 * Input: byte 0 chooses the set-up (bits 0-3: how many chunk sizes follow;
 * bits 4-5: one of four sets of limits; bit 6: a callback stops the feed
 * at the third event), bytes 1..m are chunk sizes (each byte + 1, used in
 * turn), and the rest is what the peer sends.  With m == 0 it is fed in
 * one piece.
 *
 * The bytes go to two readers: one gets them in one piece, the other in
 * the chunks, each chunk from a heap block of exactly its size so that
 * AddressSanitizer sees any read past what a feed was given.  Every body
 * delivered is read in full (a wrong length shows) and freed, and both
 * readers are freed at the end, whatever state they are in (LeakSanitizer
 * sees anything left).  The two must agree: the same events with the same
 * fields and bodies, the same return value and description, the same
 * idleness.  A disagreement, a description on success or none on an
 * error is __builtin_trap(): how the input is split must never change
 * what it means.
 */
#include <stdlib.h>
#include <string.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What one reader reported: a count and a running FNV-1a digest. */
typedef struct fz_seen {
    uint64_t digest;
    size_t events;
    size_t stop_at;             /* the event whose callback returns 1; 0: none */
} fz_seen;

static void fz_mix(fz_seen *s, const void *p, size_t n)
{
    const uint8_t *b = p;
    size_t i;

    for (i = 0; i < n; i++)
        s->digest = (s->digest ^ b[i]) * 0x100000001b3u;
}

static void fz_mix64(fz_seen *s, uint64_t v)
{
    uint8_t le[8];
    int i;

    for (i = 0; i < 8; i++)
        le[i] = (uint8_t)(v >> (8 * i));
    fz_mix(s, le, sizeof le);
}

static int fz_event(fz_seen *s, int kind)
{
    fz_mix64(s, (uint64_t)kind);
    s->events++;
    return s->stop_at != 0 && s->events == s->stop_at;
}

static int fz_on_hello(void *owner, const qrpc__hello *h)
{
    fz_seen *s = owner;

    fz_mix64(s, h->incarnation);
    fz_mix64(s, h->max_frame);
    fz_mix64(s, h->max_message);
    fz_mix64(s, h->max_inflight);
    return fz_event(s, 1);
}

static int fz_on_msg(void *owner, qrpc__rx_msg *m)
{
    fz_seen *s = owner;

    if ((m->body == NULL) != (m->body_len == 0))
        __builtin_trap();
    fz_mix64(s, m->type);
    fz_mix64(s, m->stream);
    fz_mix64(s, m->body_len);
    if (m->type == QRPC__F_REQUEST) {
        if (m->req.name_len == 0 || m->req.name_len > QRPC__NAME_MAX ||
            m->req.name[m->req.name_len] != '\0' || m->req.body_len != m->body_len)
            __builtin_trap();
        fz_mix64(s, m->req.method);
        fz_mix64(s, m->req.version);
        fz_mix64(s, m->req.flags);
        fz_mix64(s, m->req.client_id);
        fz_mix64(s, m->req.seq);
        fz_mix64(s, m->req.acked);
        fz_mix64(s, m->req.deadline_ms);
        fz_mix(s, m->req.name, m->req.name_len);
    } else if (m->type == QRPC__F_REPLY) {
        if (m->rep.body_len != m->body_len)
            __builtin_trap();
        fz_mix64(s, (uint32_t)m->rep.status);
    } else {
        __builtin_trap();
    }
    /* Every byte is read: a body shorter than body_len is an ASan report. */
    if (m->body_len != 0)
        fz_mix(s, m->body, m->body_len);
    free(m->body);
    return fz_event(s, 2);
}

static int fz_on_ping(void *owner, uint32_t stream)
{
    fz_seen *s = owner;

    fz_mix64(s, stream);
    return fz_event(s, 3);
}

static int fz_on_pong(void *owner, uint32_t stream)
{
    fz_seen *s = owner;

    fz_mix64(s, stream);
    return fz_event(s, 4);
}

static int fz_on_goaway(void *owner, uint32_t reason)
{
    fz_seen *s = owner;

    fz_mix64(s, reason);
    return fz_event(s, 5);
}

static const qrpc__rx_ops fz_ops = {
    fz_on_hello, fz_on_msg, fz_on_ping, fz_on_pong, fz_on_goaway
};

/*
 * Modest limits, so that inputs of a few KB reach every one of them; the
 * second set's max_buffered is below max_streams * max_message.
 */
static const qrpc__rx_limits fz_limits[4] = {
    { 4096, 65536, 16, 131072 },
    { QRPC__FRAME_MIN, 4096, 4, 5000 },
    { 65536, 1u << 20, 64, 1u << 20 },
    { QRPC__FRAME_MIN, 1024, 1, 1024 },
};

/* Feeds p[0..n) in chunks of sizes[] (in turn; none: one piece). */
static int fz_feed(qrpc__rx *rx, const uint8_t *p, size_t n, const uint8_t *sizes,
                   size_t nsizes, const char **why)
{
    size_t off = 0, i = 0;
    int rc = 0;

    *why = NULL;
    while (off < n && rc == 0) {
        size_t k = nsizes == 0 ? n : (size_t)sizes[i++ % nsizes] + 1;
        uint8_t *c;

        if (k > n - off)
            k = n - off;
        c = malloc(k);
        if (c == NULL)
            abort();
        memcpy(c, p + off, k);
        rc = qrpc__rx_feed(rx, c, k, why);
        free(c);
        off += k;
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const qrpc__rx_limits *lim;
    fz_seen one = { 0xcbf29ce484222325u, 0, 0 }, split;
    const char *why1, *why2;
    const uint8_t *sizes;
    qrpc__rx *a, *b;
    size_t nsizes;
    int rc1, rc2;

    if (size < 1)
        return 0;
    nsizes = data[0] & 15u;
    lim = &fz_limits[(data[0] >> 4) & 3u];
    if (data[0] & 0x40)
        one.stop_at = 3;
    if (size < 1 + nsizes)
        return 0;
    sizes = data + 1;
    data += 1 + nsizes;
    size -= 1 + nsizes;
    split = one;

    a = qrpc__rx_new(lim, &fz_ops, &one);
    b = qrpc__rx_new(lim, &fz_ops, &split);
    if (a == NULL || b == NULL)
        abort();
    rc1 = fz_feed(a, data, size, NULL, 0, &why1);
    rc2 = fz_feed(b, data, size, sizes, nsizes, &why2);
    /* A description exactly for violations and OOM. */
    if ((why1 != NULL) != (rc1 == QRPC_EPROTO || rc1 == QRPC_ENOMEM))
        __builtin_trap();
    /* The split changes nothing. */
    if (rc1 != rc2 || one.events != split.events || one.digest != split.digest ||
        (why1 != NULL && strcmp(why1, why2) != 0))
        __builtin_trap();
    if (rc1 == 0 && qrpc__rx_idle(a) != qrpc__rx_idle(b))
        __builtin_trap();
    qrpc__rx_free(a);
    qrpc__rx_free(b);
    return 0;
}
