/*
 * test_faultproxy.c - tests/faultproxy, the fault-injection TCP proxy the
 * at-most-once tests run qrpc through.
 *
 * Each test opens its own "upstream": a listening socket on 127.0.0.1:0
 * in the test itself.  It starts the proxy ($QRPC_FAULTPROXY, fork + exec)
 * in front of it, connects to the proxy, and accepts the proxied
 * connection, so that it holds both ends: whatever the client end writes
 * is read on the server end and the other way round, byte for byte, with
 * hand-built frames (qrpc-protocol(7): 16-byte little-endian headers).
 *
 * The proxy's stdin is a pipe held by the test (the lifeline: it exits
 * when the test dies), its stdout gives the address, its stderr is read
 * for the statistics line, and --stats FILE gives them at exit.  Every
 * proxy is stopped and reaped by its test; an atexit handler kills and
 * reaps any that a failing test left.  Every wait is a poll with a
 * timeout on a socket or a pipe; nothing sleeps to synchronise.
 */
#include <inttypes.h>

#include "tcputil.h"
#include "fproxy.h"

#define T_HELLO   1
#define T_REQUEST 2
#define T_REPLY   3
#define T_DATA    4
#define T_PING    5
#define T_PONG    6
#define T_GOAWAY  7
#define F_END     1

#define WAIT_MS FP_WAIT_MS

/* ---- the upstream: a listening socket held by the test ------------------------ */

static int up_listen(int *port)
{
    int fd = raw_bind_loopback(port);

    ck_assert_int_eq(listen(fd, 16), 0);
    return fd;
}

/* The next connection the proxy makes to the upstream; fails the test after ms. */
static int up_accept(int lfd, unsigned ms)
{
    struct pollfd p = { lfd, POLLIN, 0 };
    int fd, one = 1;

    ck_assert_msg(poll(&p, 1, (int)ms) == 1, "the proxy did not connect upstream");
    fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    ck_assert(fd >= 0);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* A proxy in front of a fresh upstream, and one connection through it. */
typedef struct plink {
    fproxy px;
    int lfd, up_port;
    int cli, srv;                       /* the client's and the upstream's ends */
} plink;

static void link_open(plink *l, const char *const *args)
{
    l->lfd = up_listen(&l->up_port);
    fp_start(&l->px, l->up_port, args);
    l->cli = raw_connect(l->px.port);
    l->srv = up_accept(l->lfd, WAIT_MS);
}

/* Closes the sockets and stops the proxy; returns its statistics line. */
static const char *link_close(plink *l)
{
    if (l->cli >= 0)
        close(l->cli);
    if (l->srv >= 0)
        close(l->srv);
    close(l->lfd);
    return fp_stop(&l->px, 0);
}

/* ---- frames and byte streams ------------------------------------------------------ */

typedef struct bytes {
    uint8_t *p;
    size_t len, cap;
} bytes;

static void by_add(bytes *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
        ck_assert_ptr_nonnull(b->p);
    }
    if (p != NULL && n > 0)             /* p NULL: only make room */
        memcpy(b->p + b->len, p, n);
    b->len += n;
}

/* A frame with a payload of len bytes that depend on the stream id. */
static void by_frame(bytes *b, uint8_t type, uint8_t flags, uint32_t stream, uint32_t len)
{
    uint8_t h[16] = { 'Q', 'R', 1, type, flags, 0, 0, 0 };
    size_t at;
    uint32_t i;

    le32(h + 8, stream);
    le32(h + 12, len);
    by_add(b, h, sizeof h);
    at = b->len;
    by_add(b, NULL, len);
    for (i = 0; i < len; i++)
        b->p[at + i] = (uint8_t)(stream * 131u + i * 7u + type);
}

/* A HELLO whose incarnation is tag (to tell connections apart). */
static void by_hello(bytes *b, uint64_t tag)
{
    size_t at = b->len;

    by_frame(b, T_HELLO, 0, 0, 24);
    le64(b->p + at + 16, tag);
}

static uint64_t xs_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Sends b in pieces of 1..max bytes, so that the proxy sees split headers. */
static void send_pieces(int fd, const bytes *b, unsigned max, uint64_t seed)
{
    size_t off = 0;

    while (off < b->len) {
        size_t k = 1 + (size_t)(xs_next(&seed) % max);

        if (k > b->len - off)
            k = b->len - off;
        ck_assert(raw_send(fd, b->p + off, k));
        off += k;
    }
}

/* Reads exactly want->len bytes and compares them; fails the test with where they differ. */
static void expect_bytes(int fd, const bytes *want, const char *what)
{
    uint8_t *got = malloc(want->len + 1);
    size_t i;

    ck_assert_ptr_nonnull(got);
    ck_assert_msg(raw_recv(fd, got, want->len, WAIT_MS), "%s: fewer than the %zu bytes expected",
                  what, want->len);
    for (i = 0; i < want->len && got[i] == want->p[i]; i++)
        ;
    ck_assert_msg(i == want->len, "%s: byte %zu of %zu differs", what, i, want->len);
    free(got);
}

/* Waits for a clean EOF; fails the test if bytes come first, or on a timeout. */
static void expect_eof(int fd, const char *what)
{
    struct pollfd p = { fd, POLLIN, 0 };
    uint8_t c;
    ssize_t r;

    ck_assert_msg(poll(&p, 1, WAIT_MS) == 1, "%s: no EOF within %u ms", what, WAIT_MS);
    r = recv(fd, &c, 1, 0);
    ck_assert_msg(r == 0, "%s: %s instead of EOF", what,
                  r > 0 ? "more bytes" : strerror(errno));
}

/* Reads whatever comes until EOF (at most cap bytes); returns how much. */
static size_t read_to_eof(int fd, uint8_t *buf, size_t cap)
{
    size_t n = 0;

    for (;;) {
        struct pollfd p = { fd, POLLIN, 0 };
        ssize_t r;

        ck_assert_msg(poll(&p, 1, WAIT_MS) == 1, "no EOF within %u ms", WAIT_MS);
        r = recv(fd, buf + n, cap - n, 0);
        ck_assert_msg(r >= 0, "recv: %s", strerror(errno));
        if (r == 0)
            return n;
        n += (size_t)r;
        ck_assert_msg(n < cap, "more than %zu bytes before EOF", cap);
    }
}

/* A frame read from a socket. */
typedef struct frame {
    uint8_t type, flags;
    uint32_t stream, len;
} frame;

/* Reads one frame (its payload is discarded); false on EOF. */
static bool read_frame(int fd, frame *f)
{
    uint8_t h[16], junk[4096];
    uint32_t left;

    if (!raw_recv(fd, h, sizeof h, WAIT_MS))
        return false;
    ck_assert_msg(h[0] == 'Q' && h[1] == 'R' && h[2] == 1, "not a frame header");
    f->type = h[3];
    f->flags = h[4];
    f->stream = get_le32(h + 8);
    f->len = get_le32(h + 12);
    for (left = f->len; left > 0;) {
        uint32_t k = left < sizeof junk ? left : (uint32_t)sizeof junk;

        ck_assert_msg(raw_recv(fd, junk, k, WAIT_MS), "truncated frame");
        left -= k;
    }
    return true;
}

/* ---- tests ------------------------------------------------------------------------ */

/* The two streams of the forwarding test: every kind of frame, some large. */
static void conversation(bytes *up, bytes *down, uint64_t tag)
{
    by_hello(up, tag);
    by_frame(up, T_REQUEST, F_END, 1, 81);
    by_frame(up, T_REQUEST, 0, 2, 70000);
    by_frame(up, T_PING, 0, 9, 8);
    by_frame(up, T_REQUEST, F_END, 3, 0);
    by_frame(up, T_DATA, 0, 2, 0);
    by_frame(up, T_DATA, F_END, 2, 200000);
    by_frame(up, T_PONG, 0, 4, 0);
    by_hello(down, tag + 100);
    by_frame(down, T_REPLY, F_END, 1, 28);
    by_frame(down, T_PONG, 0, 9, 0);
    by_frame(down, T_REPLY, 0, 2, 1000);
    by_frame(down, T_REPLY, F_END, 3, 12);
    by_frame(down, T_DATA, F_END, 2, 300000);
    by_frame(down, T_GOAWAY, 0, 0, 4);
}

/* No faults: three connections at once, both ways, byte for byte, then orderly closes. */
START_TEST(test_forward_exact)
{
    enum { N = 3 };
    fproxy px;
    bytes up[N] = { { 0 } }, down[N] = { { 0 } };
    int lfd, up_port, cli[N], srv[N], i;
    const char *stats;

    lfd = up_listen(&up_port);
    fp_start(&px, up_port, (const char *const[]){ "--seed", "99", NULL });
    for (i = 0; i < N; i++) {
        conversation(&up[i], &down[i], (uint64_t)i);
        cli[i] = raw_connect(px.port);
        srv[i] = up_accept(lfd, WAIT_MS);
    }
    for (i = 0; i < N; i++)
        send_pieces(cli[i], &up[i], i == 0 ? 500 : 65536, 1234 + (uint64_t)i);
    for (i = 0; i < N; i++) {
        uint8_t hello[40];
        int k;

        /* the upstream may accept them in any order: the HELLO says which one */
        ck_assert(raw_recv(srv[i], hello, sizeof hello, WAIT_MS));
        for (k = 0; k < N && memcmp(hello, up[k].p, sizeof hello) != 0; k++)
            ;
        ck_assert_msg(k < N, "connection %d: an unknown HELLO", i);
        {
            bytes rest = { up[k].p + sizeof hello, up[k].len - sizeof hello, 0 };

            expect_bytes(srv[i], &rest, "client to upstream");
        }
        send_pieces(srv[i], &down[k], 4096, 77);
        expect_bytes(cli[k], &down[k], "upstream to client");
    }
    for (i = 0; i < N; i++) {
        ck_assert_int_eq(shutdown(cli[i], SHUT_WR), 0);
        expect_eof(srv[i], "upstream after the client's FIN");
        ck_assert_int_eq(shutdown(srv[i], SHUT_WR), 0);
        expect_eof(cli[i], "client after the upstream's FIN");
        close(cli[i]);
        close(srv[i]);
        free(up[i].p);
        free(down[i].p);
    }
    close(lfd);
    stats = fp_stop(&px, 0);
    ck_assert_str_eq(stats, "faultproxy: connections 3 frames 45 dropped_req 0 dropped_rep 0 "
                            "dup_req 0 dup_rep 0 delayed 0 cuts 0 unparsed 0 stalls 0\n");
}
END_TEST

/*
 * The stream for the drop and duplicate tests in one direction, where
 * single-frame messages have type msg: they are marked in *single so
 * that the expected output can be computed.
 */
typedef struct fspec {
    uint8_t type, flags;
    uint32_t stream, len;
} fspec;

static const fspec fault_stream[] = {
    { T_HELLO, 0, 0, 24 },
    { 0, F_END, 1, 40 },                /* type 0: the message type of the direction */
    { 0, 0, 2, 30 },                    /* a multi-frame message ... */
    { T_DATA, 0, 2, 10 },
    { 0, F_END, 3, 0 },                 /* (interleaved, empty) */
    { T_DATA, F_END, 2, 5 },            /* ... ends here */
    { T_PING, 0, 9, 8 },
    { 0, F_END, 4, 3000 },
    { 1, F_END, 5, 12 },                /* type 1: the other message type */
    { T_DATA, F_END, 6, 0 },
    { T_GOAWAY, 0, 0, 4 },
};
#define N_FAULT_STREAM (sizeof fault_stream / sizeof fault_stream[0])

/* Builds the stream and what should come out with copies of each single-frame message. */
static int build_stream(uint8_t msg, uint8_t other, int copies, bytes *in, bytes *out)
{
    size_t i;
    int singles = 0, c;

    for (i = 0; i < N_FAULT_STREAM; i++) {
        fspec f = fault_stream[i];
        bool single;
        size_t at = in->len;

        f.type = f.type == 0 ? msg : f.type == 1 ? other : f.type;
        single = f.type == msg && (f.flags & F_END) != 0;
        by_frame(in, f.type, f.flags, f.stream, f.len);
        singles += single;
        for (c = 0; c < (single ? copies : 1); c++)
            by_add(out, in->p + at, in->len - at);
    }
    return singles;
}

/*
 * --drop-req/--drop-rep/--dup-req/--dup-rep 1000: every single-frame
 * request (or reply) vanishes or comes twice; HELLO, control frames,
 * multi-frame messages and the other message type pass once.  Loop:
 * 0 drop-req, 1 drop-rep, 2 dup-req, 3 dup-rep.
 */
START_TEST(test_drop_dup)
{
    static const char *const opts[4] = { "--drop-req", "--drop-rep", "--dup-req", "--dup-rep" };
    static const char *const fields[4] = { "dropped_req", "dropped_rep", "dup_req", "dup_rep" };
    bool rep = _i % 2 == 1;
    int copies = _i < 2 ? 0 : 2;
    bytes c_in = { 0 }, c_out = { 0 }, s_in = { 0 }, s_out = { 0 };
    int singles;
    const char *stats;
    plink l;

    /* client to upstream: requests; upstream to client: replies */
    singles = build_stream(T_REQUEST, T_REPLY, rep ? 1 : copies, &c_in, &c_out);
    ck_assert_int_eq(build_stream(T_REPLY, T_REQUEST, rep ? copies : 1, &s_in, &s_out), singles);
    link_open(&l, (const char *const[]){ opts[_i], "1000", NULL });
    send_pieces(l.cli, &c_in, 7, 5);
    send_pieces(l.srv, &s_in, 7, 6);
    expect_bytes(l.srv, &c_out, "client to upstream");
    expect_bytes(l.cli, &s_out, "upstream to client");
    ck_assert_int_eq(shutdown(l.cli, SHUT_WR), 0);
    ck_assert_int_eq(shutdown(l.srv, SHUT_WR), 0);
    expect_eof(l.srv, "upstream");
    expect_eof(l.cli, "client");
    stats = link_close(&l);
    ck_assert_int_eq(stat_of(stats, fields[_i]), singles);
    ck_assert_int_eq(stat_of(stats, "frames"), 2 * (long)N_FAULT_STREAM);
    ck_assert_int_eq(stat_of(stats, "dropped_req") + stat_of(stats, "dropped_rep") +
                     stat_of(stats, "dup_req") + stat_of(stats, "dup_rep"), singles);
    free(c_in.p);
    free(c_out.p);
    free(s_in.p);
    free(s_out.p);
}
END_TEST

/*
 * --delay-req/--delay-rep 1000 --delay-ms 50: a single-frame message is
 * held back at least 50 ms while a multi-frame message and a PING sent
 * after it pass it.  Loop: 0 requests, 1 replies; 2 and 3 add --dup-req
 * or --dup-rep: one copy at once, the other late.
 */
START_TEST(test_delay)
{
    bool rep = _i % 2 == 1, dup = _i >= 2;
    uint8_t msg = rep ? T_REPLY : T_REQUEST;
    bytes a = { 0 }, rest = { 0 }, all = { 0 }, got_a = { 0 };
    const char *args[8] = { rep ? "--delay-rep" : "--delay-req", "1000", "--delay-ms", "50" };
    uint64_t t0;
    const char *stats;
    plink l;
    int from, to;

    if (dup) {
        args[4] = rep ? "--dup-rep" : "--dup-req";
        args[5] = "1000";
    }
    by_frame(&a, msg, F_END, 1, 100);
    by_frame(&rest, msg, 0, 2, 50);
    by_frame(&rest, T_DATA, F_END, 2, 60);
    by_frame(&rest, T_PING, 0, 3, 8);
    by_add(&all, a.p, a.len);
    by_add(&all, rest.p, rest.len);
    link_open(&l, args);
    from = rep ? l.srv : l.cli;
    to = rep ? l.cli : l.srv;
    t0 = tt_now_ns();
    ck_assert(raw_send(from, all.p, all.len));
    if (dup)
        expect_bytes(to, &a, "the copy sent at once");
    expect_bytes(to, &rest, "the frames sent after the delayed one");
    by_add(&got_a, a.p, a.len);
    expect_bytes(to, &got_a, "the delayed message");
    ck_assert_msg(tt_now_ns() - t0 >= 50000000u, "held only %" PRIu64 " ns",
                  tt_now_ns() - t0);
    ck_assert_int_eq(shutdown(from, SHUT_WR), 0);
    expect_eof(to, "after the delayed message");
    stats = link_close(&l);
    ck_assert_int_eq(stat_of(stats, "delayed"), 1);
    ck_assert_int_eq(stat_of(stats, rep ? "dup_rep" : "dup_req"), dup ? 1 : 0);
    ck_assert_int_eq(stat_of(stats, "frames"), 4);
    free(a.p);
    free(rest.p);
    free(all.p);
    free(got_a.p);
}
END_TEST

/*
 * A delayed message waits for a frame boundary: when its time comes while
 * a later frame is half through, it goes after that frame, not inside it.
 */
START_TEST(test_delay_boundary)
{
    bytes a = { 0 }, b = { 0 }, head = { 0 }, tail = { 0 };
    struct pollfd p;
    const char *stats;
    plink l;

    by_frame(&a, T_REQUEST, F_END, 1, 10);
    by_frame(&b, T_REQUEST, 0, 2, 1000);        /* no END: passes at once */
    by_add(&head, b.p, 300);
    by_add(&tail, b.p + 300, b.len - 300);
    link_open(&l, (const char *const[]){ "--delay-req", "1000", "--delay-ms", "20", NULL });
    ck_assert(raw_send(l.cli, a.p, a.len));
    ck_assert(raw_send(l.cli, head.p, head.len));
    expect_bytes(l.srv, &head, "the first part of the later frame");
    /* A is due after 20 ms; for 200 ms nothing may come, B being incomplete */
    p = (struct pollfd){ l.srv, POLLIN, 0 };
    ck_assert_msg(poll(&p, 1, 200) == 0, "bytes came in the middle of a frame");
    ck_assert(raw_send(l.cli, tail.p, tail.len));
    expect_bytes(l.srv, &tail, "the rest of the later frame");
    expect_bytes(l.srv, &a, "the delayed message, after it");
    stats = link_close(&l);
    ck_assert_int_eq(stat_of(stats, "delayed"), 1);
    free(a.p);
    free(b.p);
    free(head.p);
    free(tail.p);
}
END_TEST

/*
 * --cut-after 3: the upstream gets exactly 3 of the 5 frames sent in one
 * write, then EOF, and so does the client.  Loop 1 adds --cut-mid: the
 * upstream also gets a strict prefix (at least one byte) of the 4th.  A
 * second connection is cut the same way.
 */
START_TEST(test_cut_after)
{
    bool mid = _i == 1;
    bytes in = { 0 }, want = { 0 };
    size_t first3;
    int round;
    plink l;
    const char *stats;

    by_hello(&in, 1);
    by_frame(&in, T_REQUEST, F_END, 1, 20);
    by_frame(&in, T_REQUEST, F_END, 2, 20);
    first3 = in.len;
    by_frame(&in, T_REQUEST, F_END, 3, 500);
    by_frame(&in, T_REQUEST, F_END, 4, 20);
    by_add(&want, in.p, first3);
    link_open(&l, (const char *const[]){ "--cut-after", "3", mid ? "--cut-mid" : NULL, NULL });
    for (round = 0; round < 2; round++) {
        uint8_t extra[600];
        size_t n;

        if (round == 1) {
            close(l.cli);
            close(l.srv);
            l.cli = raw_connect(l.px.port);
            l.srv = up_accept(l.lfd, WAIT_MS);
        }
        ck_assert(raw_send(l.cli, in.p, in.len));
        expect_bytes(l.srv, &want, "the frames before the cut");
        if (mid) {
            /* what comes of the 4th frame before EOF: a strict prefix */
            n = read_to_eof(l.srv, extra, sizeof extra);
            ck_assert_msg(n >= 1 && n < 16 + 500, "%zu bytes of the 4th frame", n);
            ck_assert(memcmp(extra, in.p + first3, n) == 0);
        } else {
            expect_eof(l.srv, "upstream after the cut");
        }
        expect_eof(l.cli, "client after the cut");
    }
    stats = link_close(&l);
    ck_assert_int_eq(stat_of(stats, "cuts"), 2);
    ck_assert_int_eq(stat_of(stats, "frames"), 6);
    ck_assert_int_eq(stat_of(stats, "connections"), 2);
    free(in.p);
    free(want.p);
}
END_TEST

/*
 * --cut 1000: every connection is cut after its first frame (the client's
 * HELLO); with --cut-mid inside it; with --cut-rst by a reset.
 */
START_TEST(test_cut_random)
{
    static const char *const variants[3][4] = {
        { "--cut", "1000", NULL },
        { "--cut", "1000", "--cut-mid", NULL },
        { "--cut", "1000", "--cut-rst", NULL },
    };
    bytes in = { 0 };
    uint8_t got[64];
    size_t n;
    plink l;
    const char *stats;

    by_hello(&in, 7);
    by_frame(&in, T_REQUEST, F_END, 1, 20);
    link_open(&l, variants[_i]);
    ck_assert(raw_send(l.cli, in.p, in.len));
    if (_i == 2) {
        ck_assert_msg(raw_wait_closed(l.cli, WAIT_MS) >= 0, "the client was not reset");
        ck_assert_msg(raw_wait_closed(l.srv, WAIT_MS) >= 0, "the upstream was not reset");
    } else {
        n = read_to_eof(l.srv, got, sizeof got);
        if (_i == 0)
            ck_assert_uint_eq(n, 40);
        else
            ck_assert_msg(n >= 1 && n < 40, "%zu bytes of the HELLO", n);
        ck_assert(memcmp(got, in.p, n) == 0);
        expect_eof(l.cli, "client after the cut");
    }
    stats = link_close(&l);
    ck_assert_int_eq(stat_of(stats, "cuts"), 1);
    free(in.p);
}
END_TEST

/*
 * One run of the determinism test: 300 single-frame requests through the
 * proxy, a reply to each one that arrives, and EOFs both ways.  The ids of
 * the requests that arrived go to ids (sorted); returns the stats line.
 */
static const char *seeded_run(const char *seed, uint32_t *ids, size_t *n_ids, size_t *n_replies)
{
    enum { N = 300 };
    bytes in = { 0 }, replies = { 0 };
    plink l;
    frame f;
    uint32_t i;
    size_t a, b;

    for (i = 1; i <= N; i++)
        by_frame(&in, T_REQUEST, F_END, i, i % 50);
    link_open(&l, (const char *const[]){ "--seed", seed, "--drop-req", "200", "--dup-req",
                                         "200", "--delay-req", "200", "--drop-rep", "200",
                                         "--dup-rep", "200", "--delay-rep", "200",
                                         "--delay-ms", "3", NULL });
    ck_assert(raw_send(l.cli, in.p, in.len));
    ck_assert_int_eq(shutdown(l.cli, SHUT_WR), 0);
    *n_ids = 0;
    while (read_frame(l.srv, &f)) {     /* to EOF: after the last delayed one */
        ck_assert(*n_ids < 2 * N);
        ids[(*n_ids)++] = f.stream;
        by_frame(&replies, T_REPLY, F_END, f.stream, 4);
    }
    ck_assert(raw_send(l.srv, replies.p, replies.len));
    ck_assert_int_eq(shutdown(l.srv, SHUT_WR), 0);
    *n_replies = 0;
    while (read_frame(l.cli, &f))
        (*n_replies)++;
    for (a = 1; a < *n_ids; a++)        /* insertion sort: arrival order depends on timing */
        for (b = a; b > 0 && ids[b - 1] > ids[b]; b--) {
            uint32_t t = ids[b];

            ids[b] = ids[b - 1];
            ids[b - 1] = t;
        }
    free(in.p);
    free(replies.p);
    return link_close(&l);
}

/* The same seed twice: the same requests arrive and the same statistics; another seed differs. */
START_TEST(test_same_seed)
{
    static uint32_t ids[3][600];
    size_t n[3], replies[3];
    char stats[3][512];
    int r;

    for (r = 0; r < 3; r++)
        snprintf(stats[r], sizeof stats[r], "%s",
                 seeded_run(r < 2 ? "42" : "43", ids[r], &n[r], &replies[r]));
    ck_assert_str_eq(stats[0], stats[1]);
    ck_assert_uint_eq(n[0], n[1]);
    ck_assert(memcmp(ids[0], ids[1], n[0] * sizeof ids[0][0]) == 0);
    ck_assert_uint_eq(replies[0], replies[1]);
    ck_assert_str_ne(stats[0], stats[2]);
    /* every kind of fault happened, and the counts add up */
    ck_assert(stat_of(stats[0], "dropped_req") > 0 && stat_of(stats[0], "dup_req") > 0);
    ck_assert(stat_of(stats[0], "dropped_rep") > 0 && stat_of(stats[0], "dup_rep") > 0);
    ck_assert(stat_of(stats[0], "delayed") > 0);
    ck_assert_int_eq((long)n[0], 300 - stat_of(stats[0], "dropped_req") +
                                     stat_of(stats[0], "dup_req"));
    ck_assert_int_eq((long)replies[0], (long)n[0] - stat_of(stats[0], "dropped_rep") +
                                           stat_of(stats[0], "dup_rep"));
    ck_assert_int_eq(stat_of(stats[0], "frames"), 300 + (long)n[0]);
}
END_TEST

/*
 * What is not frames is forwarded byte for byte, and only that direction
 * stops being parsed: random bytes, a header with a huge length, one of
 * version 2 after a good frame, and a header cut short by EOF.
 */
START_TEST(test_garbage)
{
    enum { CASES = 4 };
    fproxy px;
    int lfd, up_port, c;
    const char *stats;
    uint64_t seed = 0x9d2c5680u;

    lfd = up_listen(&up_port);
    fp_start(&px, up_port,
             (const char *const[]){ "--drop-req", "1000", "--dup-rep", "1000", NULL });
    for (c = 0; c < CASES; c++) {
        bytes in = { 0 }, want = { 0 }, rep = { 0 }, rep2 = { 0 };
        int cli = raw_connect(px.port), srv = up_accept(lfd, WAIT_MS);
        size_t i;

        if (c == 0) {                   /* random bytes, then a frame that is not dropped */
            for (i = 0; i < 4096; i++) {
                uint8_t b = (uint8_t)xs_next(&seed);

                by_add(&in, &b, 1);
            }
            in.p[0] = 'x';
            by_frame(&in, T_REQUEST, F_END, 1, 10);
        } else if (c == 1) {            /* a length over 16 MiB */
            by_frame(&in, T_REQUEST, F_END, 1, 0);
            le32(in.p + 12, 0x7fffffffu);
            by_frame(&in, T_REQUEST, F_END, 2, 10);
        } else if (c == 2) {            /* a dropped request, then version 2 */
            by_frame(&want, T_REQUEST, F_END, 1, 10);
            by_add(&in, want.p, want.len);
            want.len = 0;
            by_frame(&in, T_REQUEST, F_END, 2, 10);
            in.p[in.len - 26 + 2] = 2;
            by_frame(&in, T_REQUEST, F_END, 3, 10);
        } else {                        /* part of a header, then EOF */
            by_add(&in, "QR\001", 3);
        }
        if (c != 2)
            by_add(&want, in.p, in.len);
        else
            by_add(&want, in.p + 26, in.len - 26);
        send_pieces(cli, &in, c == 0 ? 100 : 3, seed);
        if (c == 3)                     /* held until it is known not to be a header */
            ck_assert_int_eq(shutdown(cli, SHUT_WR), 0);
        expect_bytes(srv, &want, "garbage to upstream");
        if (c == 3)
            expect_eof(srv, "upstream after half a header");
        /* the other direction is still parsed: a reply comes twice */
        by_frame(&rep, T_REPLY, F_END, 1, 6);
        by_add(&rep2, rep.p, rep.len);
        by_add(&rep2, rep.p, rep.len);
        ck_assert(raw_send(srv, rep.p, rep.len));
        expect_bytes(cli, &rep2, "reply after garbage");
        close(cli);
        close(srv);
        free(in.p);
        free(want.p);
        free(rep.p);
        free(rep2.p);
    }
    close(lfd);
    stats = fp_stop(&px, SIGTERM);
    ck_assert_int_eq(stat_of(stats, "unparsed"), 3);
    ck_assert_int_eq(stat_of(stats, "connections"), CASES);
    ck_assert_int_eq(stat_of(stats, "dropped_req"), 1);
    ck_assert_int_eq(stat_of(stats, "dup_rep"), CASES);
}
END_TEST

/* The largest of a tcp_rmem or tcp_wmem triple, at least 4 MiB. */
static long sysctl_max(const char *path)
{
    char *t = tu_read_file(path, NULL);
    long lo = 0, def = 0, max = 0;

    if (t != NULL && sscanf(t, "%ld %ld %ld", &lo, &def, &max) != 3)
        max = 0;
    free(t);
    return max > (4L << 20) ? max : 4L << 20;
}

/*
 * A slow reader slows the writer: with the upstream not reading, the
 * client can only send what the kernel's buffers and the proxy's bounded
 * one hold; then everything arrives intact.
 */
START_TEST(test_backpressure)
{
    const size_t frame_len = 1u << 20;
    size_t bound, sent = 0, cap, got = 0, rest, i;
    bool shut = false;
    long rmem, wmem;
    bytes fr = { 0 };
    uint8_t *buf;
    plink l;

    /* what the four socket buffers on the way can hold at most, plus the proxy's limit */
    rmem = sysctl_max("/proc/sys/net/ipv4/tcp_rmem");
    wmem = sysctl_max("/proc/sys/net/ipv4/tcp_wmem");
    bound = 2 * ((size_t)rmem + (size_t)wmem) + (8u << 20);
    cap = bound + (64u << 20);

    by_frame(&fr, T_REQUEST, F_END, 1, (uint32_t)frame_len);
    link_open(&l, NULL);
    ck_assert_int_eq(fcntl(l.cli, F_SETFL, fcntl(l.cli, F_GETFL) | O_NONBLOCK), 0);
    while (sent < cap) {
        struct pollfd p = { l.cli, POLLOUT, 0 };
        size_t off = sent % fr.len;
        ssize_t w = send(l.cli, fr.p + off, fr.len - off, MSG_NOSIGNAL);

        if (w > 0) {
            sent += (size_t)w;
            continue;
        }
        ck_assert_msg(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "send: %s",
                      strerror(errno));
        if (poll(&p, 1, 300) == 0)
            break;                      /* stuck: nobody reads */
    }
    ck_assert_msg(sent < bound, "the client sent %zu bytes to a proxy whose upstream reads "
                  "nothing (bound %zu)", sent, bound);
    /* now read it all, while the client finishes its last frame and closes */
    rest = (fr.len - sent % fr.len) % fr.len;
    buf = malloc(1 << 16);
    ck_assert_ptr_nonnull(buf);
    for (;;) {
        struct pollfd p[2] = { { l.srv, POLLIN, 0 }, { l.cli, rest > 0 ? POLLOUT : 0, 0 } };
        ssize_t r;

        if (rest == 0 && !shut) {
            ck_assert_int_eq(shutdown(l.cli, SHUT_WR), 0);
            shut = true;
        }
        ck_assert_msg(poll(p, 2, WAIT_MS) > 0, "stalled after %zu of %zu bytes", got, sent);
        if (p[1].revents & POLLOUT) {
            r = send(l.cli, fr.p + sent % fr.len, rest, MSG_NOSIGNAL);
            ck_assert_msg(r > 0 || errno == EAGAIN, "send: %s", strerror(errno));
            if (r > 0) {
                sent += (size_t)r;
                rest -= (size_t)r;
            }
        }
        if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0)
            continue;
        r = recv(l.srv, buf, 1 << 16, 0);
        ck_assert_msg(r >= 0, "recv: %s", strerror(errno));
        if (r == 0)
            break;
        for (i = 0; i < (size_t)r && buf[i] == fr.p[(got + i) % fr.len]; i++)
            ;                           /* (no ck_assert per byte: each one logs a mark) */
        ck_assert_msg(i == (size_t)r, "byte %zu differs", got + i);
        got += (size_t)r;
    }
    ck_assert_uint_eq(got, sent);
    free(buf);
    free(fr.p);
    ck_assert_int_eq(stat_of(link_close(&l), "frames"), (long)(sent / fr.len));
}
END_TEST

/*
 * A reset is passed on as a reset, after the bytes sent before it, even
 * when both arrive while the proxy is stopped.  Loop: 0 the upstream
 * resets, 1 the client does.
 */
START_TEST(test_reset_passed_on)
{
    struct linger lg = { 1, 0 };
    struct pollfd p;
    bytes fr = { 0 };
    plink l;
    int from, to, stt;
    uint8_t c;

    by_frame(&fr, _i == 0 ? T_REPLY : T_REQUEST, F_END, 1, 3000);
    link_open(&l, NULL);
    from = _i == 0 ? l.srv : l.cli;
    to = _i == 0 ? l.cli : l.srv;
    ck_assert_int_eq(kill(l.px.pid, SIGSTOP), 0);
    ck_assert_int_eq(waitpid(l.px.pid, &stt, WUNTRACED), l.px.pid);
    ck_assert(WIFSTOPPED(stt));
    ck_assert(raw_send(from, fr.p, fr.len));
    ck_assert_int_eq(setsockopt(from, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(from);
    ck_assert_int_eq(kill(l.px.pid, SIGCONT), 0);
    expect_bytes(to, &fr, "the frame before the reset");
    p = (struct pollfd){ to, POLLIN, 0 };
    ck_assert_msg(poll(&p, 1, WAIT_MS) == 1, "the reset was not passed on");
    ck_assert_msg(recv(to, &c, 1, 0) < 0 && errno == ECONNRESET, "not a reset: %s",
                  strerror(errno));
    if (_i == 0)
        l.srv = -1;
    else
        l.cli = -1;
    ck_assert_int_eq(stat_of(link_close(&l), "frames"), 1);
    free(fr.p);
}
END_TEST

/* An upstream that refuses: the client's connection is closed, and the proxy goes on. */
START_TEST(test_upstream_refused)
{
    fproxy px;
    int lfd, port, i;
    const char *stats;

    lfd = up_listen(&port);
    close(lfd);                         /* nothing listens there now */
    fp_start(&px, port, NULL);
    for (i = 0; i < 2; i++) {
        int cli = raw_connect_or_reset(px.port);

        if (cli < 0)
            continue;                   /* closed before connect() returned */
        ck_assert_msg(raw_wait_closed(cli, WAIT_MS) >= 0, "connection %d stayed open", i);
        close(cli);
    }
    stats = fp_stop(&px, 0);
    ck_assert_int_eq(stat_of(stats, "connections"), 2);
    ck_assert_int_eq(stat_of(stats, "frames"), 0);
}
END_TEST

/* SIGUSR1 reports the statistics; EOF on stdin and SIGTERM stop it cleanly (exit 0). */
START_TEST(test_signals_lifeline)
{
    fproxy px;
    int lfd, port;

    lfd = up_listen(&port);
    fp_start(&px, port, NULL);
    kill(px.pid, SIGUSR1);
    ck_assert_msg(read_until(px.err_fd, px.err, sizeof px.err, &px.err_len,
                             "faultproxy: connections 0 frames 0", false, WAIT_MS),
                  "no statistics line after SIGUSR1: '%s'", px.err);
    ck_assert_str_eq(fp_stop(&px, SIGTERM), "faultproxy: connections 0 frames 0 dropped_req 0 "
                     "dropped_rep 0 dup_req 0 dup_rep 0 delayed 0 cuts 0 unparsed 0 stalls 0\n");
    fp_start(&px, port, NULL);
    fp_stop(&px, 0);                    /* only the lifeline closes */
    close(lfd);
}
END_TEST

/*
 * --stall-big: the first frame of a split request stops its direction.
 * What came before it arrives; replies still pass; the client's sends
 * back up; and at the proxy's exit the upstream has had nothing more.
 */
START_TEST(test_stall_big)
{
    static uint8_t chunk[64 << 10];
    bytes in = { 0 }, want = { 0 }, reply = { 0 };
    uint8_t extra[64];
    size_t queued = 0;
    plink l;
    frame f;
    const char *stats;

    by_hello(&in, 1);
    by_frame(&in, T_REQUEST, F_END, 1, 20);
    by_add(&want, in.p, in.len);
    by_frame(&in, T_REQUEST, 0, 2, 100);        /* a split request's first frame */
    by_frame(&in, T_REQUEST, F_END, 3, 20);
    link_open(&l, (const char *const[]){ "--stall-big", NULL });
    ck_assert(raw_send(l.cli, in.p, in.len));
    expect_bytes(l.srv, &want, "the frames before the stall");
    by_frame(&reply, T_REPLY, F_END, 1, 28);
    ck_assert(raw_send(l.srv, reply.p, reply.len));
    ck_assert(read_frame(l.cli, &f));
    ck_assert_int_eq(f.type, T_REPLY);
    ck_assert_int_eq(f.stream, 1);
    ck_assert_int_eq(f.len, 28);
    for (;;) {
        ssize_t w = send(l.cli, chunk, sizeof chunk, MSG_DONTWAIT | MSG_NOSIGNAL);

        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        ck_assert_msg(w > 0, "send: %s", strerror(errno));
        queued += (size_t)w;
        ck_assert_msg(queued < (256u << 20), "the proxy keeps reading a stalled client");
    }
    close(l.cli);
    stats = fp_stop(&l.px, 0);
    ck_assert_int_eq(read_to_eof(l.srv, extra, sizeof extra), 0);
    close(l.srv);
    close(l.lfd);
    ck_assert_int_eq(stat_of(stats, "stalls"), 1);
    ck_assert_int_eq(stat_of(stats, "frames"), 3);
    ck_assert_int_eq(stat_of(stats, "connections"), 1);
    free(in.p);
    free(want.p);
    free(reply.p);
}
END_TEST

/* Bad command lines are refused with a message that says what was wrong (status 2). */
START_TEST(test_usage)
{
    static const struct {
        const char *args[4];
        int status;
        const char *says;
    } cases[] = {
        { { "--help" }, 0, "usage: faultproxy --upstream 127.0.0.1:PORT" },
        { { "--upstream", "127.0.0.1:1", "--drop-req", "2000" }, 2,
          "faultproxy: --drop-req: expected 0..1000, got 2000" },
        { { "--upstream", "10.0.0.1:80" }, 2, "loopback only" },
        { { "--upstream", "127.0.0.1:0" }, 2, "expected 1..65535, got 0" },
        { { "--seed", "1" }, 2, "--upstream 127.0.0.1:PORT is required" },
        { { "--upstream", "127.0.0.1:1", "--delay-ms", "0" }, 2, "--delay-ms: expected 1.." },
        { { "--upstream", "127.0.0.1:1", "--cut-after", "x" }, 2, "--cut-after: expected" },
        { { "--upstream", "127.0.0.1:1", "--frobnicate" }, 2, "unknown option --frobnicate" },
    };
    size_t c;

    for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char *argv[6] = { (char *)tu_env("QRPC_FAULTPROXY") }, *out = NULL, *err = NULL;
        int i, status;

        for (i = 0; i < 4 && cases[c].args[i] != NULL; i++)
            argv[i + 1] = (char *)cases[c].args[i];
        status = tu_run(NULL, argv, &out, &err);
        ck_assert_msg(status == cases[c].status, "case %zu: status %d", c, status);
        ck_assert_msg(strstr(cases[c].status == 0 ? out : err, cases[c].says) != NULL,
                      "case %zu: output lacks '%s': %s%s", c, cases[c].says, out, err);
        free(out);
        free(err);
    }
}
END_TEST

static Suite *faultproxy_suite(void)
{
    Suite *s = suite_create("faultproxy");
    TCase *tc = tcase_create("faultproxy");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_usage);
    tcase_add_test(tc, test_forward_exact);
    tcase_add_loop_test(tc, test_drop_dup, 0, 4);
    tcase_add_loop_test(tc, test_delay, 0, 4);
    tcase_add_test(tc, test_delay_boundary);
    tcase_add_loop_test(tc, test_cut_after, 0, 2);
    tcase_add_loop_test(tc, test_cut_random, 0, 3);
    tcase_add_test(tc, test_same_seed);
    tcase_add_test(tc, test_garbage);
    tcase_add_test(tc, test_backpressure);
    tcase_add_loop_test(tc, test_reset_passed_on, 0, 2);
    tcase_add_test(tc, test_upstream_refused);
    tcase_add_test(tc, test_signals_lifeline);
    tcase_add_test(tc, test_stall_big);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(faultproxy_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
