/*
 * test_verbs.c - the verbs layer (verbs.h) against its contract: two
 * endpoints of this process, each on its own device context, connected
 * through a listener on 127.0.0.1:0, with exact completion statuses and
 * bytes asserted.
 *
 * Every semantic test runs once per provider (the loop index): always
 * "emu" (verbs_emu.c), and "verbs" too when the build has it
 * (QRPC_HAVE_VERBS) and a device opens; otherwise main says, in one line,
 * why the real-verbs run is skipped.  A few tests are about the emulation
 * alone: RNR (hardware with rnr_retry 7 retries instead), its TCP
 * listener and wire (junk and hostile peers), and when post_* is full.
 *
 * No test sleeps to synchronise: waits are on ep_fd, the listener, a
 * socket or a CQ, each bounded by WAIT_MS.
 */
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "tcputil.h"
#include "qrpc_errors.h"
#include "../../runtime/src/verbs.h"

#define WAIT_MS   10000         /* longest wait for what must happen */
#define BUF       (8u << 20)    /* each side's registered buffer */
#define BIG       (4u << 20)    /* a large WRITE_IMM or READ */
#define MiB       (1u << 20)

/* The emulation's wire (verbs_emu.c), for the tests that play a peer. */
#define EMU_MAGIC 0x5156454du
#define EMU_HELLO (16 + QRPC__VPDATA_MAX)   /* the handshake */
#define EMU_HDR   24                        /* a packet's header */

static const qrpc__verbs_ops *provs[2];
static int n_provs;

typedef struct side {
    qrpc__vdev *dev;
    qrpc__vep *ep;
    uint8_t *buf;               /* BUF bytes, registered with every access */
    qrpc__vmr mr;
} side;

typedef struct pair {
    const qrpc__verbs_ops *o;
    qrpc__vlis *lis;
    char bound[128];
    side a;                     /* connects */
    side b;                     /* accepts */
} pair;

static uint64_t deadline_ns(unsigned ms)
{
    return tt_now_ns() + (uint64_t)ms * 1000000u;
}

static bool is_emu(const pair *p)
{
    return p->o == &qrpc__verbs_emu;
}

/* Deterministic bytes for message seed. */
static void fill(uint8_t *b, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    size_t i;

    for (i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b[i] = (uint8_t)x;
    }
}

static bool same(const uint8_t *b, size_t n, uint32_t seed)
{
    uint8_t *want = malloc(n ? n : 1);
    bool ok;

    ck_assert_ptr_nonnull(want);
    fill(want, n, seed);
    ok = memcmp(b, want, n) == 0;
    free(want);
    return ok;
}

/* Polls fd for POLLIN for up to ms: true if readable. */
static bool readable(int fd, int ms)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    int64_t end = tt_now_ms() + ms;
    int rc;

    for (;;) {
        int64_t now = tt_now_ms();

        rc = poll(&pfd, 1, now >= end ? 0 : (int)(end - now));
        if (rc >= 0 || errno != EINTR)
            break;
    }
    ck_assert_int_ge(rc, 0);
    return rc == 1;
}

/* ---- connecting ------------------------------------------------------------------- */

typedef struct cfin {
    pair *p;
    int rc;
    char why[256];
    char pdata[QRPC__VPDATA_MAX];
    size_t pdata_len;
} cfin;

static void *cfin_main(void *arg)
{
    cfin *c = arg;

    c->rc = c->p->o->connect_finish(c->p->a.ep, "from-a", 6, c->pdata, &c->pdata_len,
                                    deadline_ns(WAIT_MS), c->why, sizeof c->why);
    return NULL;
}

static void side_mem(pair *p, side *s)
{
    s->buf = calloc(1, BUF);
    ck_assert_ptr_nonnull(s->buf);
    ck_assert_int_eq(p->o->reg_mr(s->dev, s->buf, BUF, QRPC__VACC_LOCAL_WRITE |
                                  QRPC__VACC_REMOTE_WRITE | QRPC__VACC_REMOTE_READ, &s->mr), 0);
}

/* Opens both device contexts and the listener of b. */
static void pair_listen(pair *p, int prov)
{
    char why[256] = "";

    memset(p, 0, sizeof *p);
    p->o = provs[prov];
    ck_assert_msg(p->o->dev_open(&p->a.dev, why, sizeof why) == 0, "%s: %s", p->o->name, why);
    ck_assert_msg(p->o->dev_open(&p->b.dev, why, sizeof why) == 0, "%s: %s", p->o->name, why);
    ck_assert_int_eq(p->o->listen(p->b.dev, "127.0.0.1:0", &p->lis, p->bound, sizeof p->bound), 0);
    ck_assert_msg(strncmp(p->bound, "127.0.0.1:", 10) == 0 && strcmp(p->bound, "127.0.0.1:0") != 0,
                  "bound %s", p->bound);
}

/* Takes b's next connection request (within WAIT_MS), checking its private data. */
static void pair_accept(pair *p, const qrpc__vcaps *caps)
{
    int64_t end = tt_now_ms() + WAIT_MS;
    char pdata[QRPC__VPDATA_MAX], peer[128];
    size_t pdata_len = 0;

    while (p->b.ep == NULL) {
        ck_assert_msg(tt_now_ms() < end, "%s: no connection request", p->o->name);
        (void)readable(p->o->listen_fd(p->lis), (int)(end - tt_now_ms()));
        ck_assert_int_eq(p->o->accept(p->lis, caps, &p->b.ep, pdata, &pdata_len, peer,
                                      sizeof peer), 0);
    }
    ck_assert_uint_eq(pdata_len, 6);
    ck_assert(memcmp(pdata, "from-a", 6) == 0);
    ck_assert_msg(strncmp(peer, "127.0.0.1:", 10) == 0, "peer %s", peer);
}

/* Connects a to b, as the transport does: start, post nothing, finish. */
static void pair_connect(pair *p, uint32_t max_send, uint32_t max_recv)
{
    qrpc__vcaps caps = { .max_send = max_send, .max_recv = max_recv };
    char why[256] = "";
    pthread_t t;
    cfin c;

    ck_assert_msg(p->o->connect_start(p->a.dev, p->bound, &caps, deadline_ns(WAIT_MS), &p->a.ep,
                                      why, sizeof why) == 0, "%s: %s", p->o->name, why);
    memset(&c, 0, sizeof c);
    c.p = p;
    ck_assert_int_eq(pthread_create(&t, NULL, cfin_main, &c), 0);
    pair_accept(p, &caps);
    ck_assert_int_eq(p->o->accept_finish(p->b.ep, "from-b", 6), 0);
    pthread_join(t, NULL);
    ck_assert_msg(c.rc == 0, "%s: connect_finish: %s", p->o->name, c.why);
    ck_assert_uint_eq(c.pdata_len, 6);
    ck_assert(memcmp(c.pdata, "from-b", 6) == 0);
}

static void pair_open(pair *p, int prov, uint32_t max_send, uint32_t max_recv)
{
    pair_listen(p, prov);
    pair_connect(p, max_send, max_recv);
    side_mem(p, &p->a);
    side_mem(p, &p->b);
}

static void side_close(pair *p, side *s)
{
    if (s->ep != NULL)
        p->o->ep_close(s->ep);
    if (s->buf != NULL) {
        p->o->dereg_mr(s->dev, &s->mr);
        free(s->buf);
    }
    if (s->dev != NULL)
        p->o->dev_close(s->dev);
}

static void pair_close(pair *p)
{
    side_close(p, &p->a);
    if (p->lis != NULL)
        p->o->listen_close(p->lis);
    side_close(p, &p->b);
}

/* ---- posting and completions ---------------------------------------------------------- */

static qrpc__vsge sge_at(const side *s, size_t off, uint32_t len)
{
    qrpc__vsge g = { .addr = s->buf + off, .len = len, .lkey = s->mr.lkey };

    return g;
}

static uint64_t raddr(const side *s, size_t off)
{
    return (uint64_t)(uintptr_t)(s->buf + off);
}

static void recv_at(pair *p, side *s, uint64_t id, size_t off, uint32_t len)
{
    qrpc__vsge g = sge_at(s, off, len);

    ck_assert_int_eq(p->o->post_recv(s->ep, id, &g), 0);
}

static void post(pair *p, side *s, uint64_t id, qrpc__vop op, qrpc__vsge g, uint64_t ra,
                 uint32_t rkey, uint32_t imm)
{
    qrpc__vsend wr = { .wr_id = id, .op = op, .sge = g, .remote_addr = ra, .rkey = rkey,
                       .imm = imm };

    ck_assert_int_eq(p->o->post_send(s->ep, &wr), 0);
}

static void send_at(pair *p, side *s, uint64_t id, size_t off, uint32_t len)
{
    post(p, s, id, QRPC__VOP_SEND, sge_at(s, off, len), 0, 0, 0);
}

/* Collects exactly n completions of cq within WAIT_MS, as the transport waits. */
static void get_wc(pair *p, side *s, qrpc__vcq cq, qrpc__vwc *wc, int n)
{
    int64_t end = tt_now_ms() + WAIT_MS;
    int got = 0, r;

    for (;;) {
        r = p->o->poll_cq(s->ep, cq, wc + got, n - got);
        ck_assert_int_ge(r, 0);
        got += r;
        if (got == n)
            return;
        ck_assert_int_eq(p->o->arm(s->ep, cq), 0);
        r = p->o->poll_cq(s->ep, cq, wc + got, n - got);
        ck_assert_int_ge(r, 0);
        got += r;
        if (got == n)
            return;
        if (r > 0)
            continue;
        ck_assert_msg(tt_now_ms() < end, "%s: %d of %d %s completions in %d ms", p->o->name, got, n,
                      cq == QRPC__VCQ_SEND ? "send" : "recv", WAIT_MS);
        (void)readable(p->o->ep_fd(s->ep), (int)(end - tt_now_ms()));
    }
}

static void ck_wc(const pair *p, const qrpc__vwc *wc, uint64_t id, qrpc__vwc_status st,
                  qrpc__vwc_opcode op)
{
    ck_assert_msg(wc->wr_id == id && wc->status == st &&
                  (st != QRPC__VWC_OK || wc->opcode == op),
                  "%s: completion wr_id %llu status %d opcode %d, expected %llu %d %d",
                  p->o->name, (unsigned long long)wc->wr_id, (int)wc->status, (int)wc->opcode,
                  (unsigned long long)id, (int)st, (int)op);
}

/* One completion, which must be (id, st, op). */
static void expect(pair *p, side *s, qrpc__vcq cq, uint64_t id, qrpc__vwc_status st,
                   qrpc__vwc_opcode op)
{
    qrpc__vwc wc;

    get_wc(p, s, cq, &wc, 1);
    ck_wc(p, &wc, id, st, op);
}

static void expect_none(pair *p, side *s, qrpc__vcq cq)
{
    qrpc__vwc wc;

    ck_assert_int_eq(p->o->poll_cq(s->ep, cq, &wc, 1), 0);
}

/* After an error: every later post completes with FLUSH. */
static void expect_flushing(pair *p, side *s)
{
    recv_at(p, s, 901, 0, 16);
    expect(p, s, QRPC__VCQ_RECV, 901, QRPC__VWC_FLUSH, QRPC__VWC_RECV);
    send_at(p, s, 902, 0, 16);
    expect(p, s, QRPC__VCQ_SEND, 902, QRPC__VWC_FLUSH, QRPC__VWC_SEND);
}

/* ---- send and receive ----------------------------------------------------------------- */

/* Many messages, in batches of 1..16, sizes 0..4000: bytes, lengths and order. */
START_TEST(test_send_recv_order)
{
    enum { SLOT = 4096, TOTAL = 1500 };
    qrpc__vwc wc[16];
    uint32_t len[16];
    pair p;
    int j = 0, round = 0, i;

    pair_open(&p, _i, 16, 32);
    while (j < TOTAL) {
        int k = 1 + round++ % 16;

        for (i = 0; i < k; i++)
            recv_at(&p, &p.b, 100000 + (uint64_t)(j + i), (size_t)i * SLOT, SLOT);
        for (i = 0; i < k; i++) {
            len[i] = (j + i) % 97 == 0 ? 0 : (uint32_t)((j + i) * 37 % 4000 + 1);
            fill(p.a.buf + (size_t)i * SLOT, len[i], (uint32_t)(j + i));
            send_at(&p, &p.a, (uint64_t)(j + i), (size_t)i * SLOT, len[i]);
        }
        get_wc(&p, &p.b, QRPC__VCQ_RECV, wc, k);
        for (i = 0; i < k; i++) {
            ck_wc(&p, &wc[i], 100000 + (uint64_t)(j + i), QRPC__VWC_OK, QRPC__VWC_RECV);
            ck_assert_uint_eq(wc[i].byte_len, len[i]);
            ck_assert_msg(same(p.b.buf + (size_t)i * SLOT, len[i], (uint32_t)(j + i)),
                          "message %d: bytes differ", j + i);
        }
        get_wc(&p, &p.a, QRPC__VCQ_SEND, wc, k);
        for (i = 0; i < k; i++)
            ck_wc(&p, &wc[i], (uint64_t)(j + i), QRPC__VWC_OK, QRPC__VWC_SEND);
        j += k;
    }
    expect_none(&p, &p.a, QRPC__VCQ_SEND);
    expect_none(&p, &p.b, QRPC__VCQ_RECV);
    pair_close(&p);
}
END_TEST

/* Once the sends are acknowledged, one poll takes several receive completions. */
START_TEST(test_several_per_poll)
{
    qrpc__vwc wc[8];
    int i, r, got = 0, most = 0;
    pair p;

    pair_open(&p, _i, 8, 8);
    for (i = 0; i < 8; i++) {
        recv_at(&p, &p.b, 50 + (uint64_t)i, (size_t)i * 64, 64);
        fill(p.a.buf + (size_t)i * 64, 64, (uint32_t)i);
    }
    for (i = 0; i < 8; i++)
        send_at(&p, &p.a, (uint64_t)i, (size_t)i * 64, 64);
    get_wc(&p, &p.a, QRPC__VCQ_SEND, wc, 8);
    while (got < 8) {
        r = p.o->poll_cq(p.b.ep, QRPC__VCQ_RECV, wc + got, 8 - got);
        ck_assert_int_ge(r, 0);
        if (r > most)
            most = r;
        if (r == 0) {
            get_wc(&p, &p.b, QRPC__VCQ_RECV, wc + got, 1);
            r = 1;
        }
        got += r;
    }
    /* the emulation places the data and completes the receive before it acks */
    if (is_emu(&p))
        ck_assert_int_eq(most, 8);
    ck_assert_int_gt(most, 1);
    for (i = 0; i < 8; i++) {
        ck_wc(&p, &wc[i], 50 + (uint64_t)i, QRPC__VWC_OK, QRPC__VWC_RECV);
        ck_assert(same(p.b.buf + (size_t)i * 64, 64, (uint32_t)i));
    }
    pair_close(&p);
}
END_TEST

/* A message longer than the receive: LOC_LEN there, REM_INV_REQ here, then flushes. */
START_TEST(test_recv_too_small)
{
    qrpc__vwc wc[3];
    pair p;

    pair_open(&p, _i, 4, 4);
    recv_at(&p, &p.b, 11, 0, 8);
    recv_at(&p, &p.b, 12, 4096, 4096);
    recv_at(&p, &p.b, 13, 8192, 4096);
    send_at(&p, &p.a, 1, 0, 16);
    send_at(&p, &p.a, 2, 0, 16);
    get_wc(&p, &p.b, QRPC__VCQ_RECV, wc, 3);
    ck_wc(&p, &wc[0], 11, QRPC__VWC_LOC_LEN, QRPC__VWC_RECV);
    ck_wc(&p, &wc[1], 12, QRPC__VWC_FLUSH, QRPC__VWC_RECV);
    ck_wc(&p, &wc[2], 13, QRPC__VWC_FLUSH, QRPC__VWC_RECV);
    get_wc(&p, &p.a, QRPC__VCQ_SEND, wc, 2);
    ck_wc(&p, &wc[0], 1, QRPC__VWC_REM_INV_REQ, QRPC__VWC_SEND);
    ck_wc(&p, &wc[1], 2, QRPC__VWC_FLUSH, QRPC__VWC_SEND);
    expect_flushing(&p, &p.a);
    expect_flushing(&p, &p.b);
    pair_close(&p);
}
END_TEST

/* The emulation fails a SEND or WRITE_IMM that finds no receive, at once (verbs.h). */
START_TEST(test_emu_rnr)
{
    int c;

    for (c = 0; c < 2; c++) {
        pair p;

        pair_open(&p, 0, 4, 4);
        if (c == 0)
            send_at(&p, &p.a, 1, 0, 16);
        else
            post(&p, &p.a, 1, QRPC__VOP_WRITE_IMM, sge_at(&p.a, 0, 16), raddr(&p.b, 0),
                 p.b.mr.rkey, 3);
        send_at(&p, &p.a, 2, 0, 16);
        expect(&p, &p.a, QRPC__VCQ_SEND, 1, QRPC__VWC_RNR, QRPC__VWC_SEND);
        expect(&p, &p.a, QRPC__VCQ_SEND, 2, QRPC__VWC_FLUSH, QRPC__VWC_SEND);
        ck_assert(readable(p.o->ep_fd(p.b.ep), WAIT_MS));
        expect_flushing(&p, &p.b);
        pair_close(&p);
    }
}
END_TEST

/* A receive the data cannot go into: LOC_PROT there, FATAL (remote operation error) here. */
START_TEST(test_recv_bad_sge)
{
    int c;

    for (c = 0; c < 3; c++) {
        qrpc__vmr ro;
        qrpc__vsge g;
        pair p;

        pair_open(&p, _i, 4, 4);
        /* a region without LOCAL_WRITE, for case 2 */
        ck_assert_int_eq(p.o->reg_mr(p.b.dev, p.b.buf + MiB, MiB, QRPC__VACC_REMOTE_READ, &ro), 0);
        g = sge_at(&p.b, 0, 64);
        if (c == 0)
            g.lkey = p.b.mr.lkey ^ 0x5a5a5a5au;       /* no such key */
        else if (c == 1)
            g.addr = p.b.buf + BUF - 32;                /* past the end */
        else
            g = (qrpc__vsge){ .addr = p.b.buf + MiB, .len = 64, .lkey = ro.lkey };
        ck_assert_int_eq(p.o->post_recv(p.b.ep, 7, &g), 0);
        recv_at(&p, &p.b, 8, 0, 64);
        send_at(&p, &p.a, 1, 0, 16);
        expect(&p, &p.b, QRPC__VCQ_RECV, 7, QRPC__VWC_LOC_PROT, QRPC__VWC_RECV);
        expect(&p, &p.b, QRPC__VCQ_RECV, 8, QRPC__VWC_FLUSH, QRPC__VWC_RECV);
        expect(&p, &p.a, QRPC__VCQ_SEND, 1, QRPC__VWC_FATAL, QRPC__VWC_SEND);
        p.o->dereg_mr(p.b.dev, &ro);
        pair_close(&p);
    }
}
END_TEST

/* A local sge outside its registration: LOC_PROT, the queue pair fails. */
START_TEST(test_bad_lkey)
{
    int c;

    for (c = 0; c < 3; c++) {
        qrpc__vsge g;
        pair p;

        pair_open(&p, _i, 4, 4);
        recv_at(&p, &p.b, 7, 0, 4096);
        g = sge_at(&p.a, 0, 64);
        if (c == 0)
            g.lkey = p.a.mr.lkey ^ 0x5a5a5a5au;
        else if (c == 1)
            g.addr = p.a.buf + BUF - 63;
        if (c < 2)
            post(&p, &p.a, 1, QRPC__VOP_SEND, g, 0, 0, 0);
        else    /* a READ into a bad sge */
            post(&p, &p.a, 1, QRPC__VOP_READ, (qrpc__vsge){ .addr = p.a.buf, .len = 64,
                                                            .lkey = ~p.a.mr.lkey },
                 raddr(&p.b, 0), p.b.mr.rkey, 0);
        expect(&p, &p.a, QRPC__VCQ_SEND, 1, QRPC__VWC_LOC_PROT, QRPC__VWC_SEND);
        expect_flushing(&p, &p.a);
        pair_close(&p);
    }
}
END_TEST

/* ---- RDMA WRITE with immediate ---------------------------------------------------------- */

START_TEST(test_write_imm)
{
    qrpc__vwc wc[3];
    pair p;

    pair_open(&p, _i, 4, 4);
    recv_at(&p, &p.b, 21, 0, 0);
    recv_at(&p, &p.b, 22, 0, 0);
    recv_at(&p, &p.b, 23, 0, 0);
    fill(p.a.buf, 1000, 1);
    fill(p.a.buf + MiB, BIG, 2);
    post(&p, &p.a, 1, QRPC__VOP_WRITE_IMM, sge_at(&p.a, 0, 1000), raddr(&p.b, 100),
         p.b.mr.rkey, 0xdeadbeefu);
    /* zero length: just the immediate, no key needed */
    post(&p, &p.a, 2, QRPC__VOP_WRITE_IMM, (qrpc__vsge){ 0 }, 0, 0, 7);
    post(&p, &p.a, 3, QRPC__VOP_WRITE_IMM, sge_at(&p.a, MiB, BIG), raddr(&p.b, 2 * MiB),
         p.b.mr.rkey, 0);
    get_wc(&p, &p.b, QRPC__VCQ_RECV, wc, 3);
    ck_wc(&p, &wc[0], 21, QRPC__VWC_OK, QRPC__VWC_RECV_IMM);
    ck_assert_uint_eq(wc[0].imm, 0xdeadbeefu);
    ck_assert_uint_eq(wc[0].byte_len, 1000);
    ck_wc(&p, &wc[1], 22, QRPC__VWC_OK, QRPC__VWC_RECV_IMM);
    ck_assert_uint_eq(wc[1].imm, 7);
    ck_assert_uint_eq(wc[1].byte_len, 0);
    ck_wc(&p, &wc[2], 23, QRPC__VWC_OK, QRPC__VWC_RECV_IMM);
    ck_assert_uint_eq(wc[2].imm, 0);
    ck_assert_uint_eq(wc[2].byte_len, BIG);
    ck_assert(same(p.b.buf + 100, 1000, 1));
    ck_assert(p.b.buf[99] == 0 && p.b.buf[1100] == 0);
    ck_assert(same(p.b.buf + 2 * MiB, BIG, 2));
    get_wc(&p, &p.a, QRPC__VCQ_SEND, wc, 3);
    ck_wc(&p, &wc[0], 1, QRPC__VWC_OK, QRPC__VWC_WRITE);
    ck_wc(&p, &wc[1], 2, QRPC__VWC_OK, QRPC__VWC_WRITE);
    ck_wc(&p, &wc[2], 3, QRPC__VWC_OK, QRPC__VWC_WRITE);
    pair_close(&p);
}
END_TEST

/* The cases a remote access must refuse: [0] a key, [1..3] bounds, [4] access. */
enum { BAD_RKEY, BAD_PAST_END, BAD_BEFORE, BAD_WRAP, BAD_ACCESS, N_BAD };

static void remote_bad(int prov, qrpc__vop op)
{
    int c;

    for (c = 0; c < N_BAD; c++) {
        unsigned acc = op == QRPC__VOP_READ ? QRPC__VACC_LOCAL_WRITE | QRPC__VACC_REMOTE_WRITE
                                            : QRPC__VACC_LOCAL_WRITE | QRPC__VACC_REMOTE_READ;
        uint64_t ra;
        uint32_t rkey, len = 10;
        qrpc__vmr other;
        pair p;

        pair_open(&p, prov, 4, 4);
        /* a region with every access but the one op needs */
        ck_assert_int_eq(p.o->reg_mr(p.b.dev, p.b.buf + MiB, MiB, acc, &other), 0);
        rkey = p.b.mr.rkey;
        switch (c) {
        case BAD_RKEY:
            rkey ^= 0x00010001u;
            ck_assert(rkey != p.b.mr.lkey && rkey != other.rkey && rkey != other.lkey);
            ra = raddr(&p.b, 0);
            break;
        case BAD_PAST_END:                      /* one byte past the end */
            ra = raddr(&p.b, BUF - len + 1);
            break;
        case BAD_BEFORE:
            ra = raddr(&p.b, 0) - 1;
            break;
        case BAD_WRAP:                          /* addr + len wraps around 2^64 */
            ra = UINT64_MAX - 3;
            len = 8;
            break;
        default:
            ra = raddr(&p.b, MiB);
            rkey = other.rkey;
            break;
        }
        recv_at(&p, &p.b, 31, 0, 0);
        recv_at(&p, &p.a, 41, 0, 64);
        post(&p, &p.a, 1, op, sge_at(&p.a, 0, len), ra, rkey, 5);
        send_at(&p, &p.a, 2, 0, 16);
        expect(&p, &p.a, QRPC__VCQ_SEND, 1, QRPC__VWC_REM_ACCESS,
               op == QRPC__VOP_READ ? QRPC__VWC_READ : QRPC__VWC_WRITE);
        expect(&p, &p.a, QRPC__VCQ_SEND, 2, QRPC__VWC_FLUSH, QRPC__VWC_SEND);
        expect(&p, &p.a, QRPC__VCQ_RECV, 41, QRPC__VWC_FLUSH, QRPC__VWC_RECV);
        /* the responder fails too: its receive flushes, nothing was consumed or placed */
        expect(&p, &p.b, QRPC__VCQ_RECV, 31, QRPC__VWC_FLUSH, QRPC__VWC_RECV);
        expect_flushing(&p, &p.b);
        p.o->dereg_mr(p.b.dev, &other);
        pair_close(&p);
    }
}

START_TEST(test_write_imm_refused)
{
    remote_bad(_i, QRPC__VOP_WRITE_IMM);
}
END_TEST

/* ---- RDMA READ --------------------------------------------------------------------- */

START_TEST(test_read)
{
    qrpc__vwc wc[3];
    pair p;

    pair_open(&p, _i, 4, 4);
    recv_at(&p, &p.b, 51, 0, 64);
    fill(p.b.buf + 200, 1000, 3);
    fill(p.b.buf + 2 * MiB, BIG, 4);
    post(&p, &p.a, 1, QRPC__VOP_READ, sge_at(&p.a, 300, 1000), raddr(&p.b, 200), p.b.mr.rkey, 0);
    post(&p, &p.a, 2, QRPC__VOP_READ, (qrpc__vsge){ 0 }, 0, 0, 0);
    post(&p, &p.a, 3, QRPC__VOP_READ, sge_at(&p.a, MiB, BIG), raddr(&p.b, 2 * MiB),
         p.b.mr.rkey, 0);
    get_wc(&p, &p.a, QRPC__VCQ_SEND, wc, 3);
    ck_wc(&p, &wc[0], 1, QRPC__VWC_OK, QRPC__VWC_READ);
    ck_wc(&p, &wc[1], 2, QRPC__VWC_OK, QRPC__VWC_READ);
    ck_wc(&p, &wc[2], 3, QRPC__VWC_OK, QRPC__VWC_READ);
    ck_assert(same(p.a.buf + 300, 1000, 3));
    ck_assert(p.a.buf[299] == 0 && p.a.buf[1300] == 0);
    ck_assert(same(p.a.buf + MiB, BIG, 4));
    /* a READ consumes no receive at the responder */
    expect_none(&p, &p.b, QRPC__VCQ_RECV);
    pair_close(&p);
}
END_TEST

START_TEST(test_read_refused)
{
    remote_bad(_i, QRPC__VOP_READ);
}
END_TEST

/* After dereg_mr the peer's accesses with its rkey fail. */
START_TEST(test_dereg)
{
    int c;

    for (c = 0; c < 2; c++) {
        qrpc__vop op = c == 0 ? QRPC__VOP_WRITE_IMM : QRPC__VOP_READ;
        qrpc__vwc_opcode wop = c == 0 ? QRPC__VWC_WRITE : QRPC__VWC_READ;
        uint8_t *mem = calloc(1, 65536);
        qrpc__vmr r2;
        pair p;

        ck_assert_ptr_nonnull(mem);
        pair_open(&p, _i, 4, 4);
        ck_assert_int_eq(p.o->reg_mr(p.b.dev, mem, 65536, QRPC__VACC_LOCAL_WRITE |
                                     QRPC__VACC_REMOTE_WRITE | QRPC__VACC_REMOTE_READ, &r2), 0);
        recv_at(&p, &p.b, 61, 0, 0);
        recv_at(&p, &p.b, 62, 0, 0);
        fill(p.a.buf, 4096, 9);
        fill(mem, 65536, 10);
        post(&p, &p.a, 1, op, sge_at(&p.a, 0, 4096), (uint64_t)(uintptr_t)(mem + 4096), r2.rkey, 1);
        expect(&p, &p.a, QRPC__VCQ_SEND, 1, QRPC__VWC_OK, wop);
        if (c == 0) {
            expect(&p, &p.b, QRPC__VCQ_RECV, 61, QRPC__VWC_OK, QRPC__VWC_RECV_IMM);
            ck_assert(same(mem + 4096, 4096, 9));
        } else {
            ck_assert(memcmp(p.a.buf, mem + 4096, 4096) == 0);
        }
        p.o->dereg_mr(p.b.dev, &r2);
        post(&p, &p.a, 2, op, sge_at(&p.a, 0, 4096), (uint64_t)(uintptr_t)(mem + 4096), r2.rkey, 2);
        expect(&p, &p.a, QRPC__VCQ_SEND, 2, QRPC__VWC_REM_ACCESS, wop);
        expect(&p, &p.b, QRPC__VCQ_RECV, c == 0 ? 62 : 61, QRPC__VWC_FLUSH, QRPC__VWC_RECV);
        pair_close(&p);
        free(mem);
    }
}
END_TEST

/* ---- connection state ------------------------------------------------------------- */

START_TEST(test_disconnect)
{
    qrpc__vwc wc[3];
    pair p;

    pair_open(&p, _i, 4, 4);
    recv_at(&p, &p.b, 71, 0, 64);
    recv_at(&p, &p.b, 72, 64, 64);
    recv_at(&p, &p.b, 73, 128, 64);
    recv_at(&p, &p.a, 81, 0, 64);
    recv_at(&p, &p.a, 82, 64, 64);
    ck_assert(!readable(p.o->ep_fd(p.a.ep), 0));
    ck_assert(!readable(p.o->ep_fd(p.b.ep), 0));
    p.o->disconnect(p.a.ep);
    p.o->disconnect(p.a.ep);                    /* idempotent */
    ck_assert(readable(p.o->ep_fd(p.a.ep), WAIT_MS));
    ck_assert(readable(p.o->ep_fd(p.b.ep), WAIT_MS));
    /* the news is for both CQs' threads: arming one leaves it for the other */
    ck_assert_int_eq(p.o->arm(p.b.ep, QRPC__VCQ_SEND), 0);
    ck_assert(readable(p.o->ep_fd(p.b.ep), 0));
    if (is_emu(&p)) {
        ck_assert_int_eq(p.o->arm(p.b.ep, QRPC__VCQ_RECV), 0);
        ck_assert(!readable(p.o->ep_fd(p.b.ep), 0));
    }
    get_wc(&p, &p.a, QRPC__VCQ_RECV, wc, 2);
    ck_wc(&p, &wc[0], 81, QRPC__VWC_FLUSH, QRPC__VWC_RECV);
    ck_wc(&p, &wc[1], 82, QRPC__VWC_FLUSH, QRPC__VWC_RECV);
    get_wc(&p, &p.b, QRPC__VCQ_RECV, wc, 3);
    ck_wc(&p, &wc[0], 71, QRPC__VWC_FLUSH, QRPC__VWC_RECV);
    ck_wc(&p, &wc[1], 72, QRPC__VWC_FLUSH, QRPC__VWC_RECV);
    ck_wc(&p, &wc[2], 73, QRPC__VWC_FLUSH, QRPC__VWC_RECV);
    expect_flushing(&p, &p.a);
    expect_flushing(&p, &p.b);
    p.o->disconnect(p.b.ep);
    pair_close(&p);
}
END_TEST

/* Closing one end fails the other; what it had outstanding flushes. */
START_TEST(test_peer_close)
{
    pair p;

    pair_open(&p, _i, 4, 4);
    recv_at(&p, &p.a, 81, 0, 64);
    p.o->ep_close(p.b.ep);
    p.b.ep = NULL;
    ck_assert(readable(p.o->ep_fd(p.a.ep), WAIT_MS));
    expect(&p, &p.a, QRPC__VCQ_RECV, 81, QRPC__VWC_FLUSH, QRPC__VWC_RECV);
    expect_flushing(&p, &p.a);
    pair_close(&p);
}
END_TEST

/* Waits (bounded) until poll_cq on an unarmed CQ returns one completion. */
static void spin_wc(pair *p, side *s, qrpc__vcq cq, qrpc__vwc *wc)
{
    int64_t end = tt_now_ms() + WAIT_MS;
    int r;

    while ((r = p->o->poll_cq(s->ep, cq, wc, 1)) == 0) {
        ck_assert_msg(tt_now_ms() < end, "%s: no completion", p->o->name);
        sched_yield();
    }
    ck_assert_int_eq(r, 1);
}

/*
 * ep_fd: readable after a completion on an armed CQ, not before arming;
 * arm(cq) consumes cq's announcement only; usable edge-triggered.
 */
START_TEST(test_arm)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLET }, got;
    qrpc__vwc wc;
    int fd, ep, i;
    pair p;

    pair_open(&p, _i, 8, 8);
    fd = p.o->ep_fd(p.b.ep);
    for (i = 0; i < 8; i++)
        recv_at(&p, &p.b, 90 + (uint64_t)i, (size_t)i * 64, 64);
    recv_at(&p, &p.a, 99, 0, 64);
    ck_assert(!readable(fd, 0));

    /* m0 on a CQ never armed: queued, not announced */
    send_at(&p, &p.a, 0, 0, 8);
    spin_wc(&p, &p.b, QRPC__VCQ_RECV, &wc);
    ck_wc(&p, &wc, 90, QRPC__VWC_OK, QRPC__VWC_RECV);
    ck_assert(!readable(fd, 0));

    /* armed: m1 makes it readable, and it stays so until consumed */
    ck_assert_int_eq(p.o->arm(p.b.ep, QRPC__VCQ_RECV), 0);
    ck_assert(!readable(fd, 0));
    send_at(&p, &p.a, 1, 0, 8);
    ck_assert(readable(fd, WAIT_MS));
    expect(&p, &p.b, QRPC__VCQ_RECV, 91, QRPC__VWC_OK, QRPC__VWC_RECV);
    ck_assert(readable(fd, 0));

    /* arming the send CQ leaves the receive CQ's announcement; arming that consumes it */
    ck_assert_int_eq(p.o->arm(p.b.ep, QRPC__VCQ_SEND), 0);
    ck_assert(readable(fd, 0));
    ck_assert_int_eq(p.o->arm(p.b.ep, QRPC__VCQ_RECV), 0);
    ck_assert(!readable(fd, 0));

    /* both armed: b's send completion, then m2, each announced for its CQ */
    send_at(&p, &p.b, 5, 0, 8);
    ck_assert(readable(fd, WAIT_MS));
    expect(&p, &p.b, QRPC__VCQ_SEND, 5, QRPC__VWC_OK, QRPC__VWC_SEND);
    expect(&p, &p.a, QRPC__VCQ_RECV, 99, QRPC__VWC_OK, QRPC__VWC_RECV);
    send_at(&p, &p.a, 2, 0, 8);
    spin_wc(&p, &p.b, QRPC__VCQ_RECV, &wc);
    ck_wc(&p, &wc, 92, QRPC__VWC_OK, QRPC__VWC_RECV);
    ck_assert_int_eq(p.o->arm(p.b.ep, QRPC__VCQ_SEND), 0);
    ck_assert(readable(fd, 0));                 /* the receive CQ's, still */
    ck_assert_int_eq(p.o->arm(p.b.ep, QRPC__VCQ_RECV), 0);
    ck_assert(!readable(fd, 0));

    /* edge-triggered epoll sees each announcement after each arm */
    ep = epoll_create1(EPOLL_CLOEXEC);
    ck_assert_int_ge(ep, 0);
    ck_assert_int_eq(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), 0);
    for (i = 3; i < 6; i++) {
        send_at(&p, &p.a, (uint64_t)i, 0, 8);
        ck_assert_int_eq(epoll_wait(ep, &got, 1, WAIT_MS), 1);
        expect(&p, &p.b, QRPC__VCQ_RECV, 90 + (uint64_t)i, QRPC__VWC_OK, QRPC__VWC_RECV);
        ck_assert_int_eq(p.o->arm(p.b.ep, QRPC__VCQ_RECV), 0);
    }
    for (i = 0; i < 6; i++) {
        get_wc(&p, &p.a, QRPC__VCQ_SEND, &wc, 1);
        ck_wc(&p, &wc, (uint64_t)i, QRPC__VWC_OK, QRPC__VWC_SEND);
    }

    /* hardware may write a receive's CQE after its ack: these two are emu-only */
    if (is_emu(&p)) {
        /* one announcement per arm: m6 is, m7 (not re-armed) is not */
        send_at(&p, &p.a, 6, 0, 8);
        ck_assert_int_eq(epoll_wait(ep, &got, 1, WAIT_MS), 1);
        send_at(&p, &p.a, 7, 0, 8);
        get_wc(&p, &p.a, QRPC__VCQ_SEND, &wc, 1);
        get_wc(&p, &p.a, QRPC__VCQ_SEND, &wc, 1);   /* m7 acked: its receive completed */
        ck_assert_int_eq(epoll_wait(ep, &got, 1, 0), 0);
        /* queued before arming: not announced (the caller polls after arming) */
        ck_assert_int_eq(p.o->arm(p.b.ep, QRPC__VCQ_RECV), 0);
        ck_assert(!readable(fd, 0));
        expect(&p, &p.b, QRPC__VCQ_RECV, 96, QRPC__VWC_OK, QRPC__VWC_RECV);
        expect(&p, &p.b, QRPC__VCQ_RECV, 97, QRPC__VWC_OK, QRPC__VWC_RECV);
    }
    close(ep);
    pair_close(&p);
}
END_TEST

START_TEST(test_accept_nothing)
{
    char pdata[QRPC__VPDATA_MAX], peer[128];
    qrpc__vcaps caps = { 4, 4 };
    size_t pdata_len = 0;
    qrpc__vep *e = (qrpc__vep *)&e;
    pair p;

    pair_listen(&p, _i);
    ck_assert_int_eq(p.o->accept(p.lis, &caps, &e, pdata, &pdata_len, peer, sizeof peer), 0);
    ck_assert_ptr_null(e);
    pair_connect(&p, 4, 4);
    e = (qrpc__vep *)&e;
    ck_assert_int_eq(p.o->accept(p.lis, &caps, &e, pdata, &pdata_len, peer, sizeof peer), 0);
    ck_assert_ptr_null(e);
    pair_close(&p);
}
END_TEST

START_TEST(test_connect_refused)
{
    qrpc__vcaps caps = { 4, 4 };
    char addr[64], why[256] = "", pd[QRPC__VPDATA_MAX];
    const qrpc__verbs_ops *o = provs[_i];
    qrpc__vdev *d;
    qrpc__vep *e = NULL;
    size_t pd_len;
    int64_t t0;
    int port, rc;

    /* a port nobody listens on: bound, then closed */
    close(raw_bind_loopback(&port));
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    ck_assert_int_eq(o->dev_open(&d, why, sizeof why), 0);
    t0 = tt_now_ms();
    rc = o->connect_start(d, addr, &caps, deadline_ns(WAIT_MS), &e, why, sizeof why);
    if (rc == 0)                /* rdma_cm learns of the refusal when it connects */
        rc = o->connect_finish(e, "x", 1, pd, &pd_len, deadline_ns(WAIT_MS), why, sizeof why);
    ck_assert_int_eq(rc, QRPC_EUNAVAILABLE);
    ck_assert_msg(tt_now_ms() - t0 < 2000, "%s: refused after %llu ms", o->name,
                  (unsigned long long)(tt_now_ms() - t0));
    ck_assert(why[0] != '\0');
    if (e != NULL)
        o->ep_close(e);
    ck_assert_int_eq(o->connect_start(d, "no-port", &caps, deadline_ns(WAIT_MS), &e, why,
                                      sizeof why), QRPC_EADDR);
    o->dev_close(d);
}
END_TEST

/*
 * Both directions at once, each endpoint's send and receive sides on
 * their own threads, each arming its CQ and waiting on the endpoint's one
 * ep_fd as the transport does.
 */
enum { DUPLEX_N = 3000, DUPLEX_Q = 16, DUPLEX_SLOT = 512 };

typedef struct duplex {
    pair *p;
    side *me;
    atomic_int *credits;        /* receives the peer has posted for me */
    atomic_int *given;          /* receives I posted for the peer */
    bool recv_side;
    const char *fail;
} duplex;

static void *duplex_main(void *arg)
{
    duplex *d = arg;
    const qrpc__verbs_ops *o = d->p->o;
    int64_t end = tt_now_ms() + 60000;
    struct pollfd pfd = { .fd = o->ep_fd(d->me->ep), .events = POLLIN };
    int next = 0, done = 0, out = 0, i;
    qrpc__vwc wc[DUPLEX_Q];
    bool armed = false;

    while (done < DUPLEX_N && d->fail == NULL) {
        int r;

        if (tt_now_ms() > end) {
            d->fail = "timed out";
            break;
        }
        if (d->recv_side) {
            r = o->poll_cq(d->me->ep, QRPC__VCQ_RECV, wc, DUPLEX_Q);
            for (i = 0; i < r; i++, done++) {
                size_t slot = (size_t)(wc[i].wr_id % DUPLEX_Q);
                uint8_t *b = d->me->buf + MiB + slot * DUPLEX_SLOT;
                uint32_t seq;

                memcpy(&seq, b, 4);
                if (wc[i].status != QRPC__VWC_OK || wc[i].wr_id != (uint64_t)done ||
                    seq != (uint32_t)done || wc[i].byte_len != 4 + seq % 300 ||
                    !same(b + 4, seq % 300, seq)) {
                    d->fail = "wrong message";
                    break;
                }
                if (done + DUPLEX_Q < DUPLEX_N) {
                    qrpc__vsge g = { b, DUPLEX_SLOT, d->me->mr.lkey };

                    if (o->post_recv(d->me->ep, (uint64_t)(done + DUPLEX_Q), &g) != 0) {
                        d->fail = "post_recv";
                        break;
                    }
                    atomic_fetch_add(d->given, 1);
                }
            }
        } else {
            while (next < DUPLEX_N && out < DUPLEX_Q && atomic_load(d->credits) > 0) {
                uint8_t *b = d->me->buf + (size_t)(next % DUPLEX_Q) * DUPLEX_SLOT;
                uint32_t seq = (uint32_t)next;
                qrpc__vsend wr = { .wr_id = (uint64_t)next, .op = QRPC__VOP_SEND,
                                   .sge = { b, 4 + seq % 300, d->me->mr.lkey } };

                memcpy(b, &seq, 4);
                fill(b + 4, seq % 300, seq);
                atomic_fetch_sub(d->credits, 1);
                if (o->post_send(d->me->ep, &wr) != 0) {
                    d->fail = "post_send";
                    break;
                }
                next++;
                out++;
            }
            r = o->poll_cq(d->me->ep, QRPC__VCQ_SEND, wc, DUPLEX_Q);
            for (i = 0; i < r; i++, done++, out--)
                if (wc[i].status != QRPC__VWC_OK || wc[i].wr_id != (uint64_t)done)
                    d->fail = "wrong send completion";
        }
        if (r < 0) {
            d->fail = "poll_cq";
        } else if (r > 0) {
            armed = false;
        } else if (!d->recv_side && out == 0) {
            sched_yield();      /* waiting for credit: nothing to announce here */
        } else if (!armed) {
            /* as the transport waits: arm, poll again (the next round), then the fd */
            if (o->arm(d->me->ep, d->recv_side ? QRPC__VCQ_RECV : QRPC__VCQ_SEND) != 0)
                d->fail = "arm";
            armed = true;
        } else {
            /*
             * The other thread's announcements keep the fd readable until it
             * arms again: a bounded wait, then the CQ is polled again anyway.
             */
            (void)poll(&pfd, 1, 10);
            armed = false;
        }
    }
    return NULL;
}

START_TEST(test_duplex_threads)
{
    atomic_int credit_a = DUPLEX_Q, credit_b = DUPLEX_Q;
    duplex d[4];
    pthread_t t[4];
    pair p;
    int i;

    pair_open(&p, _i, DUPLEX_Q, DUPLEX_Q);
    for (i = 0; i < DUPLEX_Q; i++) {
        recv_at(&p, &p.a, (uint64_t)i, MiB + (size_t)i * DUPLEX_SLOT, DUPLEX_SLOT);
        recv_at(&p, &p.b, (uint64_t)i, MiB + (size_t)i * DUPLEX_SLOT, DUPLEX_SLOT);
    }
    d[0] = (duplex){ &p, &p.a, &credit_a, NULL, false, NULL };
    d[1] = (duplex){ &p, &p.b, NULL, &credit_a, true, NULL };
    d[2] = (duplex){ &p, &p.b, &credit_b, NULL, false, NULL };
    d[3] = (duplex){ &p, &p.a, NULL, &credit_b, true, NULL };
    for (i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, duplex_main, &d[i]), 0);
    for (i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    for (i = 0; i < 4; i++)
        ck_assert_msg(d[i].fail == NULL, "%s: thread %d: %s", p.o->name, i, d[i].fail);
    pair_close(&p);
}
END_TEST

/* ---- the emulation alone ------------------------------------------------------------ */

/* A slot is free again only when its completion was polled. */
START_TEST(test_emu_full)
{
    qrpc__vsend wr = { .wr_id = 9, .op = QRPC__VOP_SEND };
    qrpc__vsge g;
    qrpc__vwc wc[4];
    pair p;
    int i;

    pair_open(&p, 0, 2, 4);
    g = sge_at(&p.b, 0, 64);
    for (i = 0; i < 4; i++)
        recv_at(&p, &p.b, (uint64_t)i, 0, 64);
    ck_assert_int_eq(p.o->post_recv(p.b.ep, 4, &g), QRPC_ENOMEM);
    send_at(&p, &p.a, 0, 0, 8);
    send_at(&p, &p.a, 1, 0, 8);
    ck_assert_int_eq(p.o->post_send(p.a.ep, &wr), QRPC_ENOMEM);
    get_wc(&p, &p.b, QRPC__VCQ_RECV, wc, 1);
    ck_assert_int_eq(p.o->post_recv(p.b.ep, 4, &g), 0);
    ck_assert_int_eq(p.o->post_recv(p.b.ep, 5, &g), QRPC_ENOMEM);
    get_wc(&p, &p.a, QRPC__VCQ_SEND, wc, 2);
    send_at(&p, &p.a, 2, 0, 8);
    get_wc(&p, &p.a, QRPC__VCQ_SEND, wc, 1);
    ck_wc(&p, &wc[0], 2, QRPC__VWC_OK, QRPC__VWC_SEND);
    get_wc(&p, &p.b, QRPC__VCQ_RECV, wc, 2);
    ck_wc(&p, &wc[1], 2, QRPC__VWC_OK, QRPC__VWC_RECV);
    pair_close(&p);
}
END_TEST

/* A plain TCP connection to the listener at bound ("127.0.0.1:PORT"). */
static int tcp_to(const char *bound)
{
    const char *colon = strrchr(bound, ':');

    ck_assert_ptr_nonnull(colon);
    return raw_connect(atoi(colon + 1));
}

/* Reads what s has until EOF (within WAIT_MS): the bytes, up to cap. */
static size_t read_to_eof(int s, uint8_t *b, size_t cap)
{
    size_t n = 0;

    for (;;) {
        ssize_t r;

        ck_assert_msg(readable(s, WAIT_MS), "no EOF");
        r = recv(s, b + n, cap - n, 0);
        if (r == 0)
            return n;
        if (r < 0 && errno == ECONNRESET)
            return n;
        ck_assert_int_gt(r, 0);
        n += (size_t)r;
        ck_assert_uint_lt(n, cap);
    }
}

/* Stores the n low bytes of v at p, big-endian (the emulation's byte order). */
static void be_put(uint8_t *p, uint64_t v, size_t n)
{
    while (n-- > 0) {
        p[n] = (uint8_t)v;
        v >>= 8;
    }
}

/* The emulation's handshake: magic, version, pdata length, queues (4, 4), pdata. */
static void emu_hello(uint8_t *b, uint32_t magic, uint16_t version, uint16_t pdlen)
{
    memset(b, 0, EMU_HELLO);
    be_put(b, magic, 4);
    be_put(b + 4, version, 2);
    be_put(b + 6, pdlen, 2);
    be_put(b + 8, 4, 4);
    be_put(b + 12, 4, 4);
    memcpy(b + 16, "from-a", 6);
}

/* Junk at the listener is refused, one connection at a time; good ones still work. */
START_TEST(test_emu_junk_client)
{
    char pdata[QRPC__VPDATA_MAX], peer[128];
    qrpc__vcaps caps = { 4, 4 };
    size_t pdata_len;
    uint8_t junk[EMU_HELLO], b[256];
    int c;
    pair p;

    pair_listen(&p, 0);
    for (c = 0; c < 4; c++) {
        qrpc__vep *e = NULL;
        int s = tcp_to(p.bound), rc;
        int64_t t0 = tt_now_ms();

        if (c == 0)
            memset(junk, 'x', sizeof junk);
        else if (c == 1)
            emu_hello(junk, EMU_MAGIC, 99, 6);          /* unknown version */
        else if (c == 2)
            emu_hello(junk, EMU_MAGIC, 1, 57);          /* too much private data */
        ck_assert_int_eq(send(s, junk, c == 3 ? 10 : sizeof junk, MSG_NOSIGNAL),
                         c == 3 ? 10 : (int)sizeof junk);
        if (c == 3)
            shutdown(s, SHUT_WR);                       /* short, then EOF */
        ck_assert(readable(p.o->listen_fd(p.lis), WAIT_MS));
        rc = p.o->accept(p.lis, &caps, &e, pdata, &pdata_len, peer, sizeof peer);
        ck_assert_int_eq(rc, c == 3 ? QRPC_EIO : QRPC_EPROTO);
        ck_assert_ptr_null(e);
        ck_assert_uint_lt(tt_now_ms() - t0, 2000);
        ck_assert_uint_eq(read_to_eof(s, b, sizeof b), 0);
        close(s);
    }
    pair_connect(&p, 4, 4);
    side_mem(&p, &p.a);
    side_mem(&p, &p.b);
    recv_at(&p, &p.b, 1, 0, 64);
    fill(p.a.buf, 64, 5);
    send_at(&p, &p.a, 2, 0, 64);
    expect(&p, &p.b, QRPC__VCQ_RECV, 1, QRPC__VWC_OK, QRPC__VWC_RECV);
    ck_assert(same(p.b.buf, 64, 5));
    expect(&p, &p.a, QRPC__VCQ_SEND, 2, QRPC__VWC_OK, QRPC__VWC_SEND);
    pair_close(&p);
}
END_TEST

/* A hostile peer on the emulation's wire: refused without harm. */
START_TEST(test_emu_hostile_peer)
{
    qrpc__vcaps caps = { 4, 4 };
    uint8_t hello[EMU_HELLO], h[EMU_HDR], b[256];
    int c;

    for (c = 0; c < 5; c++) {
        uint32_t len = 0, rkey = 0;
        uint64_t addr = 0;
        uint8_t type = 1;
        size_t n;
        pair p;
        int s;

        pair_listen(&p, 0);
        s = tcp_to(p.bound);
        emu_hello(hello, EMU_MAGIC, 1, 6);
        ck_assert_int_eq(send(s, hello, sizeof hello, MSG_NOSIGNAL), (int)sizeof hello);
        pair_accept(&p, &caps);
        side_mem(&p, &p.b);
        recv_at(&p, &p.b, 1, 0, 64);
        ck_assert_int_eq(p.o->accept_finish(p.b.ep, "from-b", 6), 0);
        ck_assert(readable(s, WAIT_MS));
        ck_assert_int_eq(recv(s, hello, sizeof hello, MSG_WAITALL), (int)sizeof hello);
        switch (c) {
        case 0:                 /* an unknown type */
            type = 9;
            break;
        case 1:                 /* a SEND longer than any message */
            len = 0x80000000u;
            break;
        case 2:                 /* a SEND longer than the receive */
            len = 65;
            break;
        case 3:                 /* a WRITE_IMM just past the end of b's region */
            type = 2;
            len = 16;
            addr = raddr(&p.b, BUF - 15);
            rkey = p.b.mr.rkey;
            break;
        default:                /* a response to nothing */
            type = 4;
            break;
        }
        memset(h, 0, sizeof h);
        h[0] = type;
        be_put(h + 4, len, 4);
        be_put(h + 8, addr, 8);
        be_put(h + 16, rkey, 4);
        ck_assert_int_eq(send(s, h, sizeof h, MSG_NOSIGNAL), (int)sizeof h);
        ck_assert(readable(p.o->ep_fd(p.b.ep), WAIT_MS));
        expect(&p, &p.b, QRPC__VCQ_RECV, 1, c == 2 ? QRPC__VWC_LOC_LEN : QRPC__VWC_FLUSH,
               QRPC__VWC_RECV);
        /* checked NAKs (REM_INV_REQ, REM_ACCESS) are told; garbage just closes */
        n = read_to_eof(s, b, sizeof b);
        if (c == 2 || c == 3) {
            ck_assert_uint_eq(n, EMU_HDR);
            ck_assert_int_eq(b[0], 4);
            ck_assert_int_eq(b[1], c == 2 ? 2 : 3);
        } else {
            ck_assert_uint_eq(n, 0);
        }
        close(s);
        pair_close(&p);
    }
}
END_TEST

static Suite *verbs_suite(void)
{
    Suite *s = suite_create("verbs");
    TCase *tc = tcase_create("verbs");

    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_send_recv_order, 0, n_provs);
    tcase_add_loop_test(tc, test_several_per_poll, 0, n_provs);
    tcase_add_loop_test(tc, test_recv_too_small, 0, n_provs);
    tcase_add_loop_test(tc, test_recv_bad_sge, 0, n_provs);
    tcase_add_loop_test(tc, test_bad_lkey, 0, n_provs);
    tcase_add_loop_test(tc, test_write_imm, 0, n_provs);
    tcase_add_loop_test(tc, test_write_imm_refused, 0, n_provs);
    tcase_add_loop_test(tc, test_read, 0, n_provs);
    tcase_add_loop_test(tc, test_read_refused, 0, n_provs);
    tcase_add_loop_test(tc, test_dereg, 0, n_provs);
    tcase_add_loop_test(tc, test_disconnect, 0, n_provs);
    tcase_add_loop_test(tc, test_peer_close, 0, n_provs);
    tcase_add_loop_test(tc, test_arm, 0, n_provs);
    tcase_add_loop_test(tc, test_accept_nothing, 0, n_provs);
    tcase_add_loop_test(tc, test_connect_refused, 0, n_provs);
    tcase_add_loop_test(tc, test_duplex_threads, 0, n_provs);
    tcase_add_test(tc, test_emu_rnr);
    tcase_add_test(tc, test_emu_full);
    tcase_add_test(tc, test_emu_junk_client);
    tcase_add_test(tc, test_emu_hostile_peer);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    provs[n_provs++] = &qrpc__verbs_emu;
#ifdef QRPC_HAVE_VERBS
    {
        char why[256] = "";
        qrpc__vdev *d;

        if (qrpc__verbs_ibv.dev_open(&d, why, sizeof why) == 0) {
            qrpc__verbs_ibv.dev_close(d);
            provs[n_provs++] = &qrpc__verbs_ibv;
        } else {
            printf("test_verbs: real verbs skipped: %s\n", why[0] ? why : "no RDMA device");
        }
    }
#else
    printf("test_verbs: real verbs skipped: not built (QRPC_VERBS=no or no verbs headers)\n");
#endif
    fflush(stdout);
    return tu_run_suite(verbs_suite());
}
