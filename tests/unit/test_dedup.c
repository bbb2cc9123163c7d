/*
 * test_dedup.c - the reply cache of runtime/src/dedup.h: every verdict;
 * the watermark rules (including a call acknowledged while it runs);
 * waiters answered exactly once, with the call's reply, and with
 * QRPC_ECLOSED when the cache is freed; a reply too large to cache;
 * lease expiry, and none while a call runs; the limits on clients,
 * entries, bytes and waiters; hostile numbers (seq 0 and UINT64_MAX, acks
 * above the seq, backwards and at UINT64_MAX, huge gaps, a random storm);
 * both ways of forgetting acknowledged entries; every allocation failing
 * in turn; an answer callback that calls back into the cache; two
 * multi-threaded tests (duplicates racing for the same calls, each run
 * exactly once; clients created and expired under concurrent expiry);
 * and the memory bound with 10,000 clients.
 *
 * Time is whatever the test passes as now_ns: nothing sleeps.  Heap use
 * is checked twice: the cache's own estimate against a bound computed
 * from its counts, and the process's real heap (the sanitizers' allocator
 * statistics, or glibc's mallinfo2()) against that estimate; and under
 * ASan, the real heap is back to the byte where it was once a cache is
 * freed.
 * Deterministic but for the interleavings of the threaded tests, whose
 * checks hold for any interleaving.
 */
#include <check.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qrpc.h"
#include "testutil.h"
#include "../../runtime/src/dedup.h"

/*
 * Check's ck_assert marks a point on every success (a write to its pipe);
 * the loops here check millions of things, so they fail through these.
 */
#define REQUIRE(x)                                                              \
    do {                                                                        \
        if (!(x))                                                               \
            ck_abort_msg("%s:%d: %s", __FILE__, __LINE__, #x);                  \
    } while (0)
#define REQUIRE_EQ(x, y)                                                        \
    do {                                                                        \
        uintmax_t x_ = (uintmax_t)(x), y_ = (uintmax_t)(y);                     \
        if (x_ != y_)                                                           \
            ck_abort_msg("%s:%d: %s == %ju, %s == %ju", __FILE__, __LINE__,     \
                         #x, x_, #y, y_);                                       \
    } while (0)

/* ---- helpers ------------------------------------------------------------------- */

/* The now_ns the helpers pass; tests that exercise the lease set it. */
static uint64_t t_now;

/* What the answer callback did for one waiter. */
typedef struct waitrec {
    atomic_int calls;
    int status;
    size_t len;
    uint8_t data[64];
} waitrec;

static void waiter_init(waitrec *w)
{
    atomic_init(&w->calls, 0);
    w->status = 12345;
    w->len = 0;
}

static void on_answer(void *arg, void *wp, int status, const uint8_t *reply, size_t len)
{
    waitrec *w = wp;

    (void)arg;
    if (w == NULL)
        return;
    REQUIRE(len <= sizeof w->data);
    w->status = status;
    w->len = len;
    if (len != 0)
        memcpy(w->data, reply, len);
    atomic_fetch_add_explicit(&w->calls, 1, memory_order_release);
}

/* The answer w got: exactly one, with status and text. */
static void waiter_got(waitrec *w, int status, const char *text)
{
    REQUIRE_EQ(atomic_load_explicit(&w->calls, memory_order_acquire), 1);
    REQUIRE_EQ(w->status, status);
    REQUIRE_EQ(w->len, strlen(text));
    REQUIRE(memcmp(w->data, text, w->len) == 0);
}

static qrpc__dedup_limits limits(void)
{
    qrpc__dedup_limits l = {
        .lease_ns = 1000, .max_clients = 1000, .max_entries = 64,
        .max_bytes = 1u << 20, .max_waiters = 1000,
    };

    return l;
}

static qrpc__dedup *mk(const qrpc__dedup_limits *l)
{
    qrpc__dedup *d = qrpc__dedup_new(l, on_answer, NULL);

    ck_assert_ptr_nonnull(d);
    return d;
}

/* The fixture's cache, with limits(); tests that need others make their own. */
static qrpc__dedup *d0;

static void setup(void)
{
    qrpc__dedup_limits l = limits();

    t_now = 0;
    d0 = mk(&l);
}

static void teardown(void)
{
    qrpc__dedup_free(d0);
    d0 = NULL;
}

static struct qrpc__dedup_stats stats(qrpc__dedup *d)
{
    struct qrpc__dedup_stats s;

    qrpc__dedup_stats(d, &s);
    return s;
}

/* What one begin() returned besides its verdict. */
typedef struct res {
    qrpc__dedup_ticket t;
    int status;
    qrpc_buf reply;
} res;

static qrpc__dedup_verdict req(qrpc__dedup *d, uint64_t client, uint64_t seq, uint64_t ack,
                               bool retry, void *w, res *o)
{
    qrpc_buf_free(&o->reply);
    o->status = 12345;
    return qrpc__dedup_begin(d, client, seq, ack, retry, t_now, w, &o->t, &o->status,
                             &o->reply);
}

/* A begin() that must give want, which is none of RUN, WAIT and REPLY. */
static void verdict(qrpc__dedup *d, uint64_t client, uint64_t seq, uint64_t ack, bool retry,
                    qrpc__dedup_verdict want)
{
    res o = { 0 };

    REQUIRE_EQ(req(d, client, seq, ack, retry, NULL, &o), want);
    REQUIRE(o.t.client == NULL && o.t.entry == NULL);
    REQUIRE_EQ(o.status, 12345);
    REQUIRE_EQ(o.reply.len, 0);
}

/* A begin() that must RUN; its ticket. */
static qrpc__dedup_ticket run(qrpc__dedup *d, uint64_t client, uint64_t seq, uint64_t ack)
{
    res o = { 0 };

    REQUIRE_EQ(req(d, client, seq, ack, false, NULL, &o), QRPC__DEDUP_RUN);
    REQUIRE(o.t.client != NULL && o.t.entry != NULL);
    return o.t;
}

/* A begin() that must WAIT, registering w. */
static void wait_on(qrpc__dedup *d, uint64_t client, uint64_t seq, waitrec *w)
{
    res o = { 0 };

    REQUIRE_EQ(req(d, client, seq, 0, true, w, &o), QRPC__DEDUP_WAIT);
}

static void done(qrpc__dedup *d, qrpc__dedup_ticket t, int status, const char *text)
{
    qrpc__dedup_done(d, t, status, (const uint8_t *)text, strlen(text));
}

/* A retransmission that must be answered from the cache with status and text. */
static void expect_reply(qrpc__dedup *d, uint64_t client, uint64_t seq, uint64_t ack,
                         int status, const char *text)
{
    res o = { 0 };

    REQUIRE_EQ(req(d, client, seq, ack, true, NULL, &o), QRPC__DEDUP_REPLY);
    REQUIRE_EQ(o.status, status);
    REQUIRE_EQ(o.reply.len, strlen(text));
    REQUIRE(o.reply.len == 0 || memcmp(o.reply.data, text, o.reply.len) == 0);
    qrpc_buf_free(&o.reply);
}

/* One run-and-answer: RUN, then done with status and text. */
static void run_done(qrpc__dedup *d, uint64_t client, uint64_t seq, uint64_t ack, int status,
                     const char *text)
{
    done(d, run(d, client, seq, ack), status, text);
}

extern size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));

/* The bytes this process has allocated and not freed. */
static size_t heap_real(void)
{
    struct mallinfo2 mi;

    if (__sanitizer_get_current_allocated_bytes != NULL)
        return __sanitizer_get_current_allocated_bytes();
    mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

/*
 * Whether heap_real() counts exactly the bytes asked for: ASan does;
 * TSan's allocator counts whole size classes, so it gets the slack that
 * glibc gets.
 */
static bool heap_exact(void)
{
#ifdef __SANITIZE_THREAD__
    return false;
#else
    return __sanitizer_get_current_allocated_bytes != NULL;
#endif
}

/*
 * The real heap grown since base is within the cache's estimate: exactly
 * under ASan; with glibc (which rounds chunks and keeps freed ones in
 * per-thread caches) and TSan, within some slack.
 */
static void heap_within_estimate(size_t base, size_t estimate)
{
    size_t now = heap_real(), grown = now > base ? now - base : 0;

    if (heap_exact())
        REQUIRE(grown <= estimate);
    else
        REQUIRE(grown <= estimate + estimate / 8 + (256u << 10));
}

/* ---- the verdicts ------------------------------------------------------------- */

START_TEST(test_run_then_reply)
{
    qrpc__dedup *d = d0;
    qrpc__dedup_ticket t;
    struct qrpc__dedup_stats s;

    t = run(d, 1, 1, 0);
    s = stats(d);
    ck_assert_uint_eq(s.clients, 1);
    ck_assert_uint_eq(s.entries, 1);
    ck_assert_uint_eq(s.running, 1);
    done(d, t, 0, "abc");
    s = stats(d);
    ck_assert_uint_eq(s.running, 0);
    ck_assert_uint_eq(s.bytes, 3);
    expect_reply(d, 1, 1, 0, 0, "abc");
    expect_reply(d, 1, 1, 0, 0, "abc");     /* as often as asked */

    /* a duplicate without the retry flag (the network duplicated it) too */
    {
        res o = { 0 };

        ck_assert_int_eq(req(d, 1, 1, 0, false, NULL, &o), QRPC__DEDUP_REPLY);
        ck_assert_int_eq(o.status, 0);
        ck_assert_uint_eq(o.reply.len, 3);
        qrpc_buf_free(&o.reply);
    }

    /* an application error with no results is cached as well */
    run_done(d, 1, 2, 0, 7, "");
    expect_reply(d, 1, 2, 0, 7, "");

    /* another client's seq 1 is another call */
    run_done(d, 2, 1, 0, 0, "other");
    expect_reply(d, 2, 1, 0, 0, "other");
    expect_reply(d, 1, 1, 0, 0, "abc");

    s = stats(d);
    ck_assert_uint_eq(s.clients, 2);
    ck_assert_uint_eq(s.entries, 3);
    ck_assert_uint_eq(s.bytes, 8);
    ck_assert_uint_eq(s.duplicates, 6);
    ck_assert_uint_eq(s.stale + s.unknown + s.busy + s.expired, 0);
}
END_TEST

START_TEST(test_wait)
{
    qrpc__dedup *d = d0;
    qrpc__dedup_ticket t;
    waitrec w1, w2;
    res o = { 0 };

    waiter_init(&w1);
    waiter_init(&w2);
    t = run(d, 5, 1, 0);
    wait_on(d, 5, 1, &w1);
    ck_assert_int_eq(req(d, 5, 1, 0, false, &w2, &o), QRPC__DEDUP_WAIT);
    ck_assert_uint_eq(stats(d).waiters, 2);
    ck_assert_int_eq(atomic_load(&w1.calls), 0);
    done(d, t, 3, "result");
    waiter_got(&w1, 3, "result");
    waiter_got(&w2, 3, "result");
    ck_assert_uint_eq(stats(d).waiters, 0);
    expect_reply(d, 5, 1, 0, 3, "result");
    /* nobody is answered twice */
    waiter_got(&w1, 3, "result");
    waiter_got(&w2, 3, "result");
    ck_assert_uint_eq(stats(d).duplicates, 3);
}
END_TEST

START_TEST(test_stale_and_watermark)
{
    qrpc__dedup *d = d0;
    qrpc__dedup_ticket t;

    run_done(d, 1, 1, 0, 0, "r1");
    run_done(d, 1, 2, 0, 0, "r2");
    run_done(d, 1, 3, 0, 0, "r3");
    ck_assert_uint_eq(stats(d).entries, 3);

    /* ack 2 forgets 1 and 2 */
    t = run(d, 1, 4, 2);
    ck_assert_uint_eq(stats(d).entries, 2);
    ck_assert_uint_eq(stats(d).bytes, 2);
    verdict(d, 1, 2, 2, true, QRPC__DEDUP_STALE);
    verdict(d, 1, 1, 0, true, QRPC__DEDUP_STALE);       /* an old ack changes nothing */
    expect_reply(d, 1, 3, 1, 0, "r3");                  /* still above the watermark */
    verdict(d, 1, 0, 0, false, QRPC__DEDUP_STALE);      /* seq 0 is never a call */

    /* an ack above the seq: the watermark moves, the request is stale */
    verdict(d, 1, 10, 20, false, QRPC__DEDUP_STALE);
    ck_assert_uint_eq(stats(d).entries, 1);             /* 4 runs on */
    ck_assert_uint_eq(stats(d).running, 1);
    verdict(d, 1, 4, 0, true, QRPC__DEDUP_STALE);       /* running, yet acknowledged */
    done(d, t, 0, "r4");
    ck_assert_uint_eq(stats(d).entries, 0);             /* forgotten at once */
    ck_assert_uint_eq(stats(d).bytes, 0);
    verdict(d, 1, 4, 0, true, QRPC__DEDUP_STALE);

    run_done(d, 1, 21, 0, 0, "r21");
    expect_reply(d, 1, 21, 0, 0, "r21");
    ck_assert_uint_eq(stats(d).stale, 6);
}
END_TEST

START_TEST(test_running_below_watermark_with_waiter)
{
    qrpc__dedup *d = d0;
    qrpc__dedup_ticket t1, t2;
    waitrec w;

    waiter_init(&w);
    t1 = run(d, 1, 1, 0);
    wait_on(d, 1, 1, &w);
    t2 = run(d, 1, 2, 1);       /* the client (wrongly, or late) acknowledges 1 */
    ck_assert_uint_eq(stats(d).entries, 2);
    ck_assert_uint_eq(stats(d).running, 2);
    verdict(d, 1, 1, 0, true, QRPC__DEDUP_STALE);
    done(d, t1, 0, "one");
    waiter_got(&w, 0, "one");   /* the waiter registered before still hears */
    ck_assert_uint_eq(stats(d).entries, 1);
    ck_assert_uint_eq(stats(d).bytes, 0);
    done(d, t2, 0, "two");
    expect_reply(d, 1, 2, 1, 0, "two");
}
END_TEST

START_TEST(test_unknown)
{
    qrpc__dedup *d = d0;
    size_t heap0 = stats(d).heap;

    verdict(d, 9, 5, 0, true, QRPC__DEDUP_UNKNOWN);
    verdict(d, 9, 5, 5, false, QRPC__DEDUP_STALE);      /* unknown and stale: stale */
    verdict(d, 9, 5, 7, true, QRPC__DEDUP_STALE);
    ck_assert_uint_eq(stats(d).clients, 0);             /* none of it is remembered */
    ck_assert_uint_eq(stats(d).heap, heap0);
    verdict(d, 9, 5, 0, true, QRPC__DEDUP_UNKNOWN);

    /* the first transmission makes the client known ... */
    run_done(d, 9, 5, 4, 0, "five");
    /* ... and a retransmission of a call it has not seen then runs: it never did */
    {
        res o = { 0 };

        ck_assert_int_eq(req(d, 9, 6, 4, true, NULL, &o), QRPC__DEDUP_RUN);
        done(d, o.t, 0, "six");
    }
    ck_assert_uint_eq(stats(d).unknown, 2);
    ck_assert_uint_eq(stats(d).clients, 1);
}
END_TEST

START_TEST(test_too_large)
{
    qrpc__dedup_limits l = limits();
    qrpc__dedup *d;
    qrpc__dedup_ticket t;
    waitrec w;

    l.max_bytes = 10;
    d = mk(&l);
    waiter_init(&w);
    t = run(d, 1, 1, 0);
    wait_on(d, 1, 1, &w);
    done(d, t, 0, "0123456789A");
    waiter_got(&w, 0, "0123456789A");       /* waiters get it whole */
    expect_reply(d, 1, 1, 0, QRPC_EUNKNOWN, "");
    ck_assert_uint_eq(stats(d).bytes, 0);
    ck_assert_uint_eq(stats(d).entries, 1);

    run_done(d, 1, 2, 0, 0, "0123456789");  /* exactly max_bytes fits */
    expect_reply(d, 1, 2, 0, 0, "0123456789");
    run_done(d, 1, 3, 0, 4, "x");           /* but not one byte more in all */
    expect_reply(d, 1, 3, 0, QRPC_EUNKNOWN, "");
    run_done(d, 1, 4, 0, 5, "");            /* an empty reply costs no bytes */
    expect_reply(d, 1, 4, 0, 5, "");

    /* acknowledging 2 gives its bytes back */
    run_done(d, 1, 5, 2, 0, "abcde");
    expect_reply(d, 1, 5, 2, 0, "abcde");
    expect_reply(d, 1, 3, 2, QRPC_EUNKNOWN, "");
    ck_assert_uint_eq(stats(d).bytes, 5);
    qrpc__dedup_free(d);

    /* max_bytes 0: only statuses are kept */
    l.max_bytes = 0;
    d = mk(&l);
    run_done(d, 1, 1, 0, 6, "");
    expect_reply(d, 1, 1, 0, 6, "");
    run_done(d, 1, 2, 0, 0, "a");
    expect_reply(d, 1, 2, 0, QRPC_EUNKNOWN, "");
    qrpc__dedup_free(d);
}
END_TEST

START_TEST(test_free_closes_waiters)
{
    qrpc__dedup_limits l = limits();
    qrpc__dedup *d = mk(&l);
    waitrec w1, w2, w3;

    waiter_init(&w1);
    waiter_init(&w2);
    waiter_init(&w3);
    (void)run(d, 1, 1, 0);
    wait_on(d, 1, 1, &w1);
    wait_on(d, 1, 1, &w2);
    (void)run(d, 2, 7, 0);
    wait_on(d, 2, 7, &w3);
    run_done(d, 3, 1, 0, 0, "kept");
    ck_assert_int_eq(atomic_load(&w1.calls), 0);
    qrpc__dedup_free(d);
    waiter_got(&w1, QRPC_ECLOSED, "");
    waiter_got(&w2, QRPC_ECLOSED, "");
    waiter_got(&w3, QRPC_ECLOSED, "");

    qrpc__dedup_free(NULL);
    ck_assert_ptr_null(qrpc__dedup_new(NULL, on_answer, NULL));
    ck_assert_ptr_null(qrpc__dedup_new(&l, NULL, NULL));
}
END_TEST

/* ---- the lease ------------------------------------------------------------------ */

START_TEST(test_lease)
{
    qrpc__dedup_limits l = limits();    /* lease 1000 */
    qrpc__dedup *d = mk(&l);
    size_t heap0 = stats(d).heap;

    ck_assert_uint_eq(qrpc__dedup_expire(d, 0), UINT64_MAX);
    t_now = 0;
    run_done(d, 1, 1, 0, 0, "a");
    t_now = 500;
    run_done(d, 2, 1, 0, 0, "b");
    ck_assert_uint_eq(qrpc__dedup_expire(d, 999), 1000);
    ck_assert_uint_eq(stats(d).clients, 2);
    ck_assert_uint_eq(qrpc__dedup_expire(d, 1000), 1500);
    ck_assert_uint_eq(stats(d).clients, 1);
    ck_assert_uint_eq(stats(d).expired, 1);

    /* the forgotten client's retransmission may have run: not again */
    t_now = 1100;
    verdict(d, 1, 1, 0, true, QRPC__DEDUP_UNKNOWN);
    ck_assert_uint_eq(stats(d).clients, 1);

    /* any request renews the lease, a stale one too */
    t_now = 1200;
    verdict(d, 2, 0, 0, false, QRPC__DEDUP_STALE);
    ck_assert_uint_eq(qrpc__dedup_expire(d, 1600), 2200);
    expect_reply(d, 2, 1, 0, 0, "b");           /* at 1200: a reply renews it too */
    ck_assert_uint_eq(qrpc__dedup_expire(d, 2199), 2200);
    ck_assert_uint_eq(qrpc__dedup_expire(d, 2200), UINT64_MAX);
    ck_assert_uint_eq(stats(d).clients, 0);
    ck_assert_uint_eq(stats(d).entries, 0);
    ck_assert_uint_eq(stats(d).heap, heap0);
    ck_assert_uint_eq(stats(d).expired, 2);

    /* a clock that reads behind the newest time seen counts as that time */
    t_now = 5000;
    run_done(d, 3, 1, 0, 0, "c");
    t_now = 4000;
    run_done(d, 3, 2, 0, 0, "c");
    ck_assert_uint_eq(qrpc__dedup_expire(d, 5999), 6000);
    qrpc__dedup_free(d);

    /* a lease of UINT64_MAX never runs out */
    l.lease_ns = UINT64_MAX;
    d = mk(&l);
    t_now = 7;
    run_done(d, 1, 1, 0, 0, "a");
    ck_assert_uint_eq(qrpc__dedup_expire(d, UINT64_MAX - 1), UINT64_MAX);
    ck_assert_uint_eq(stats(d).clients, 1);
    qrpc__dedup_free(d);
}
END_TEST

START_TEST(test_lease_while_running)
{
    qrpc__dedup *d = d0;                /* lease 1000 */
    size_t heap0 = stats(d).heap;
    qrpc__dedup_ticket t, t1, t2;
    waitrec w;

    waiter_init(&w);
    t = run(d, 3, 1, 0);
    t_now = 10;
    wait_on(d, 3, 1, &w);
    ck_assert_uint_eq(qrpc__dedup_expire(d, 500), 1010);
    ck_assert_uint_eq(qrpc__dedup_expire(d, 5000), UINT64_MAX);
    ck_assert_uint_eq(stats(d).clients, 1);     /* running: kept */
    ck_assert_uint_eq(stats(d).expired, 0);
    ck_assert_uint_eq(qrpc__dedup_expire(d, 6000), UINT64_MAX);
    done(d, t, 0, "late");
    waiter_got(&w, 0, "late");
    ck_assert_uint_eq(stats(d).clients, 0);     /* and gone with its last call */
    ck_assert_uint_eq(stats(d).expired, 1);
    ck_assert_uint_eq(stats(d).heap, heap0);
    t_now = 6001;
    verdict(d, 3, 1, 0, true, QRPC__DEDUP_UNKNOWN);

    /* a client heard from again is not forgotten when its call ends */
    t_now = 0;
    t1 = run(d, 4, 1, 0);
    ck_assert_uint_eq(qrpc__dedup_expire(d, 5000), UINT64_MAX);
    t_now = 5000;
    t2 = run(d, 4, 2, 0);
    done(d, t1, 0, "one");
    ck_assert_uint_eq(stats(d).clients, 1);
    ck_assert_uint_eq(qrpc__dedup_expire(d, 5999), 6000);
    done(d, t2, 0, "two");
    expect_reply(d, 4, 1, 0, 0, "one");
    ck_assert_uint_eq(qrpc__dedup_expire(d, 6000), UINT64_MAX);
    ck_assert_uint_eq(stats(d).clients, 0);
}
END_TEST

/* ---- limits ------------------------------------------------------------------- */

START_TEST(test_limit_clients)
{
    qrpc__dedup_limits l = limits();
    qrpc__dedup *d;
    size_t heap;

    l.max_clients = 2;
    d = mk(&l);
    run_done(d, 1, 1, 0, 0, "a");
    run_done(d, 2, 1, 0, 0, "b");
    heap = stats(d).heap;
    verdict(d, 3, 1, 0, false, QRPC__DEDUP_BUSY);
    ck_assert_uint_eq(stats(d).clients, 2);
    ck_assert_uint_eq(stats(d).entries, 2);
    ck_assert_uint_eq(stats(d).heap, heap);
    ck_assert_uint_eq(stats(d).busy, 1);
    verdict(d, 3, 1, 0, true, QRPC__DEDUP_UNKNOWN);    /* nothing remembered */
    run_done(d, 1, 2, 0, 0, "a2");                      /* known ones go on */

    t_now = 1000;
    verdict(d, 2, 0, 0, false, QRPC__DEDUP_STALE);     /* renews 2 */
    qrpc__dedup_expire(d, 1000);
    run_done(d, 3, 1, 0, 0, "c");                       /* 1 went: room for 3 */
    ck_assert_uint_eq(stats(d).clients, 2);
    qrpc__dedup_free(d);

    l.max_clients = 0;
    d = mk(&l);
    verdict(d, 1, 1, 0, false, QRPC__DEDUP_BUSY);
    qrpc__dedup_free(d);
}
END_TEST

START_TEST(test_limit_entries)
{
    qrpc__dedup_limits l = limits();
    qrpc__dedup *d;
    qrpc__dedup_ticket t[3];
    size_t heap;
    int i;

    l.max_entries = 3;
    d = mk(&l);
    for (i = 0; i < 3; i++)
        t[i] = run(d, 1, (uint64_t)i + 1, 0);
    heap = stats(d).heap;
    verdict(d, 1, 4, 0, false, QRPC__DEDUP_BUSY);
    verdict(d, 1, 4, 0, true, QRPC__DEDUP_BUSY);
    ck_assert_uint_eq(stats(d).heap, heap);
    for (i = 0; i < 3; i++)
        done(d, t[i], 0, "x");
    verdict(d, 1, 4, 0, true, QRPC__DEDUP_BUSY);       /* answered ones count too */
    ck_assert_uint_eq(stats(d).entries, 3);
    /* acknowledging makes room; the refused call was never run, so it runs now */
    run_done(d, 1, 4, 3, 0, "four");
    ck_assert_uint_eq(stats(d).entries, 1);
    ck_assert_uint_eq(stats(d).busy, 3);
    /* other clients have their own allowance */
    run_done(d, 2, 1, 0, 0, "a");
    qrpc__dedup_free(d);
}
END_TEST

/* The cap on calls remembered for all clients together. */
START_TEST(test_limit_total_entries)
{
    qrpc__dedup_limits l = limits();
    qrpc__dedup *d;
    qrpc__dedup_ticket t[3];
    size_t heap;

    l.max_total_entries = 3;
    d = mk(&l);
    t[0] = run(d, 1, 1, 0);
    t[1] = run(d, 1, 2, 0);
    t[2] = run(d, 2, 1, 0);
    heap = stats(d).heap;
    verdict(d, 3, 1, 0, false, QRPC__DEDUP_BUSY);      /* a new client, but no room */
    verdict(d, 2, 2, 0, false, QRPC__DEDUP_BUSY);
    ck_assert_uint_eq(stats(d).entries, 3);
    ck_assert_uint_eq(stats(d).heap, heap);
    done(d, t[0], 0, "a");
    done(d, t[1], 0, "b");
    done(d, t[2], 0, "c");
    /* client 1 acknowledges both of its calls: room for two more */
    run_done(d, 1, 3, 2, 0, "d");
    run_done(d, 3, 1, 0, 0, "e");
    ck_assert_uint_eq(stats(d).entries, 3);
    verdict(d, 2, 2, 0, false, QRPC__DEDUP_BUSY);
    qrpc__dedup_free(d);
}
END_TEST

START_TEST(test_limit_waiters)
{
    qrpc__dedup_limits l = limits();
    qrpc__dedup *d;
    qrpc__dedup_ticket t;
    waitrec w1, w2, w3;
    res o = { 0 };

    l.max_waiters = 1;
    d = mk(&l);
    waiter_init(&w1);
    waiter_init(&w2);
    waiter_init(&w3);
    t = run(d, 1, 1, 0);
    wait_on(d, 1, 1, &w1);
    ck_assert_int_eq(req(d, 1, 1, 0, true, &w2, &o), QRPC__DEDUP_BUSY);
    ck_assert_uint_eq(stats(d).waiters, 1);
    done(d, t, 0, "x");
    waiter_got(&w1, 0, "x");
    ck_assert_int_eq(atomic_load(&w2.calls), 0);
    t = run(d, 1, 2, 0);
    wait_on(d, 1, 2, &w3);       /* the slot is free again */
    done(d, t, 0, "y");
    waiter_got(&w3, 0, "y");
    qrpc__dedup_free(d);

    l.max_waiters = 0;
    d = mk(&l);
    t = run(d, 1, 1, 0);
    ck_assert_int_eq(req(d, 1, 1, 0, true, &w2, &o), QRPC__DEDUP_BUSY);
    done(d, t, 0, "x");
    qrpc__dedup_free(d);
}
END_TEST

/* ---- hostile numbers -------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rng(void)                   /* xorshift64* */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717u;
}

START_TEST(test_hostile_numbers)
{
    qrpc__dedup_limits l = limits();
    qrpc__dedup *d;
    size_t heap0, heap1;
    uint64_t seqs[] = { 1, (uint64_t)1 << 40, (uint64_t)1 << 63, UINT64_MAX - 1, UINT64_MAX };
    size_t i;

    l.max_entries = 8;
    d = mk(&l);
    heap0 = stats(d).heap;

    verdict(d, 7, 0, 0, false, QRPC__DEDUP_STALE);     /* seq 0 of a new client */
    verdict(d, 7, 3, 1000, false, QRPC__DEDUP_STALE);  /* ack above seq */
    ck_assert_uint_eq(stats(d).clients, 0);

    /* any id is an id */
    run_done(d, 0, 1, 0, 0, "zero");
    run_done(d, UINT64_MAX, 1, 0, 0, "max");
    expect_reply(d, 0, 1, 0, 0, "zero");
    expect_reply(d, UINT64_MAX, 1, 0, 0, "max");

    /* huge gaps cost an entry each, not memory proportional to the gap */
    heap1 = stats(d).heap;
    for (i = 0; i < sizeof seqs / sizeof seqs[0]; i++)
        run_done(d, 6, seqs[i], 0, 0, "g");
    for (i = 0; i < sizeof seqs / sizeof seqs[0]; i++)
        expect_reply(d, 6, seqs[i], 0, 0, "g");
    ck_assert_uint_lt(stats(d).heap - heap1, 4096);

    /* ack jumping backwards is ignored */
    verdict(d, 6, 5, 1u << 20, false, QRPC__DEDUP_STALE);
    verdict(d, 6, 1, 3, true, QRPC__DEDUP_STALE);
    expect_reply(d, 6, (uint64_t)1 << 40, 3, 0, "g");

    /* ack UINT64_MAX: everything is stale from then on, even seq UINT64_MAX */
    verdict(d, 6, 2, UINT64_MAX, true, QRPC__DEDUP_STALE);
    ck_assert_uint_eq(stats(d).entries, 2);             /* clients 0 and UINT64_MAX */
    verdict(d, 6, UINT64_MAX, 0, true, QRPC__DEDUP_STALE);
    verdict(d, 6, UINT64_MAX, 0, false, QRPC__DEDUP_STALE);

    t_now = 1000;
    qrpc__dedup_expire(d, 1000);
    ck_assert_uint_eq(stats(d).heap, heap0);
    qrpc__dedup_free(d);
}
END_TEST

/* A value at a random scale: small ones often, up to 2^64 - 1. */
static uint64_t rng_scaled(void)
{
    return rng() >> (rng() % 64);
}

/*
 * A storm of random requests from 64 clients: random seqs, acks and
 * retry flags, calls finished in random order, expiry now and then (a
 * client silent for 50 rounds goes).  Checks what must hold for any
 * input: no crash, the limits, the memory bound, a cached reply that is
 * the answer of the call asked for (each reply names its seq), and an
 * empty cache at the end.
 */
START_TEST(test_hostile_storm)
{
    enum { CLIENTS = 64, PENDING = 32, ROUNDS = 20000 };
    qrpc__dedup_limits l = limits();
    qrpc__dedup *d;
    qrpc__dedup_ticket pend[PENDING];
    uint64_t pend_seq[PENDING];
    struct qrpc__dedup_stats s;
    size_t npend = 0, heap0, k;
    int r;

    l.lease_ns = 50;
    l.max_entries = 16;
    l.max_bytes = 256;
    l.max_waiters = 0;
    d = mk(&l);
    heap0 = stats(d).heap;
    rng_state = 0x5eed;
    for (r = 0; r < ROUNDS; r++) {
        uint64_t client = rng() % CLIENTS, seq = rng_scaled(), ack = rng() % 8 == 0 ? rng_scaled() : 0;
        res o = { 0 };
        qrpc__dedup_verdict v;

        t_now = (uint64_t)r;
        v = req(d, client, seq, ack, rng() % 2 == 0, NULL, &o);
        if (v == QRPC__DEDUP_RUN) {
            REQUIRE(npend < PENDING);
            pend[npend] = o.t;
            pend_seq[npend++] = seq;
        } else if (v == QRPC__DEDUP_REPLY && o.status == 0) {
            /* the reply is the seq it was the answer to */
            REQUIRE_EQ(o.reply.len, sizeof seq);
            REQUIRE(memcmp(o.reply.data, &seq, sizeof seq) == 0);
        }
        qrpc_buf_free(&o.reply);
        /* finish calls in random order, so that some run on below the watermark */
        while (npend != 0 && (npend == PENDING || rng() % 3 == 0)) {
            k = rng() % npend;
            qrpc__dedup_done(d, pend[k], 0, (const uint8_t *)&pend_seq[k], sizeof pend_seq[k]);
            pend[k] = pend[--npend];
            pend_seq[k] = pend_seq[npend];
        }
        if (r % 7 == 0)
            qrpc__dedup_expire(d, t_now);
        s = stats(d);
        REQUIRE(s.entries <= CLIENTS * l.max_entries);
        REQUIRE(s.bytes <= l.max_bytes);
        REQUIRE(s.heap <= heap0 + CLIENTS * (512 + l.max_entries * 256) + l.max_bytes);
    }
    while (npend != 0) {
        npend--;
        qrpc__dedup_done(d, pend[npend], 0, (const uint8_t *)&pend_seq[npend],
                         sizeof pend_seq[npend]);
    }
    qrpc__dedup_expire(d, UINT64_MAX);
    s = stats(d);
    ck_assert_uint_eq(s.clients + s.entries + s.running + s.bytes, 0);
    ck_assert_uint_eq(s.heap, heap0);
    qrpc__dedup_free(d);
}
END_TEST

/*
 * Forgetting acknowledged entries, both ways: number by number for a
 * small advance, one sweep of the table for a large one (seqs 100 apart,
 * so an advance past many entries spans far more numbers than slots),
 * with running entries in the swept range left for their done().
 */
START_TEST(test_ack_paths)
{
    enum { N = 300 };
    qrpc__dedup_limits l = limits();
    qrpc__dedup *d;
    qrpc__dedup_ticket t[5];
    char text[32];
    size_t heap_one;
    uint64_t s, ack;
    int i;

    l.max_entries = 1000;
    d = mk(&l);
    run_done(d, 1, 1, 0, 0, "x");
    verdict(d, 1, 0, 1, false, QRPC__DEDUP_STALE);
    heap_one = stats(d).heap;           /* one client, no entries */

    for (s = 1; s <= N; s++) {
        snprintf(text, sizeof text, "r%llu", (unsigned long long)s);
        if (s >= 200 && s < 205)
            t[s - 200] = run(d, 1, s * 100, 1);
        else
            run_done(d, 1, s * 100, 1, 0, text);
    }
    ck_assert_uint_eq(stats(d).entries, N);

    /* sweep: 15,049 numbers, far more than the slots */
    verdict(d, 1, 0, 15049, false, QRPC__DEDUP_STALE);
    ck_assert_uint_eq(stats(d).entries, N - 150);
    /* number by number: 51 numbers, one entry among them */
    verdict(d, 1, 0, 15100, false, QRPC__DEDUP_STALE);
    ck_assert_uint_eq(stats(d).entries, N - 151);
    for (s = 1; s <= N; s++) {
        snprintf(text, sizeof text, "r%llu", (unsigned long long)s);
        if (s <= 151)
            verdict(d, 1, s * 100, 0, true, QRPC__DEDUP_STALE);
        else if (s < 200 || s >= 205)
            expect_reply(d, 1, s * 100, 0, 0, text);
    }

    /* a sweep past the running ones leaves them until done */
    verdict(d, 1, 0, 25000, false, QRPC__DEDUP_STALE);
    ck_assert_uint_eq(stats(d).entries, 5 + (N - 250));
    ck_assert_uint_eq(stats(d).running, 5);
    for (i = 0; i < 5; i++)
        done(d, t[i], 0, "late");
    ck_assert_uint_eq(stats(d).entries, N - 250);

    /* one step at a time through the rest */
    for (ack = 25000; ack < N * 100; ack += 7)
        verdict(d, 1, 0, ack, false, QRPC__DEDUP_STALE);
    verdict(d, 1, 0, N * 100, false, QRPC__DEDUP_STALE);
    ck_assert_uint_eq(stats(d).entries, 0);
    ck_assert_uint_eq(stats(d).bytes, 0);
    ck_assert_uint_eq(stats(d).heap, heap_one);      /* the table shrank back */
    qrpc__dedup_free(d);
}
END_TEST

/* ---- allocation failures ---------------------------------------------------------- */

enum { OOM_CLIENTS = 24, OOM_SEQS = 10, OOM_REPLY = 40 };

static unsigned oom_runs[OOM_CLIENTS + 1][OOM_SEQS + 2];

static void oom_reply(uint8_t *buf, uint64_t c, uint64_t s)
{
    memset(buf, (int)(c * 16 + s), OOM_REPLY);
}

/* Verdict BUSY changed nothing it must not have. */
static void oom_busy_check(const struct qrpc__dedup_stats *b, const struct qrpc__dedup_stats *a)
{
    REQUIRE_EQ(a->clients, b->clients);
    REQUIRE(a->entries <= b->entries);          /* its ack may have forgotten some */
    REQUIRE_EQ(a->running, b->running);
    REQUIRE_EQ(a->waiters, b->waiters);
    REQUIRE(a->heap <= b->heap);
}

/* Call s of client c, a duplicate while it runs and one after. */
static void oom_call(qrpc__dedup *d, uint64_t c, uint64_t s)
{
    uint64_t ack = s > 5 ? s - 5 : 0;
    struct qrpc__dedup_stats before = stats(d), after;
    uint8_t want[OOM_REPLY];
    qrpc__dedup_verdict v;
    qrpc__dedup_ticket t;
    res o = { 0 };
    waitrec w;

    waiter_init(&w);
    t_now = s;
    v = req(d, c, s, ack, false, NULL, &o);
    if (v == QRPC__DEDUP_BUSY) {
        after = stats(d);
        oom_busy_check(&before, &after);
        return;
    }
    REQUIRE_EQ(v, QRPC__DEDUP_RUN);
    REQUIRE_EQ(++oom_runs[c][s], 1);
    t = o.t;
    before = stats(d);
    v = req(d, c, s, ack, true, &w, &o);
    if (v == QRPC__DEDUP_BUSY) {
        after = stats(d);
        oom_busy_check(&before, &after);
    } else {
        REQUIRE_EQ(v, QRPC__DEDUP_WAIT);
    }
    oom_reply(want, c, s);
    qrpc__dedup_done(d, t, (int)s, want, sizeof want);
    REQUIRE_EQ(atomic_load(&w.calls), v == QRPC__DEDUP_WAIT);
    if (v == QRPC__DEDUP_WAIT)
        REQUIRE(w.status == (int)s && w.len == sizeof want && memcmp(w.data, want, w.len) == 0);
    /* answered from the cache; EUNKNOWN when the reply could not be kept */
    REQUIRE_EQ(req(d, c, s, ack, true, NULL, &o), QRPC__DEDUP_REPLY);
    if (o.status == QRPC_EUNKNOWN)
        REQUIRE_EQ(o.reply.len, 0);
    else
        REQUIRE(o.status == (int)s && o.reply.len == sizeof want &&
                memcmp(o.reply.data, want, sizeof want) == 0);
    qrpc_buf_free(&o.reply);
}

/*
 * Runs the script with the nth allocation failing; whether it got that
 * far.  Whatever failed, the cache must end up empty and consistent.
 */
static bool oom_script(uint64_t nth)
{
    qrpc__dedup_limits l = limits();
    size_t real0 = heap_real(), heap0;
    struct qrpc__dedup_stats s;
    qrpc__dedup *d;
    uint64_t c, q, left;

    l.lease_ns = 100;
    d = mk(&l);
    heap0 = stats(d).heap;
    memset(oom_runs, 0, sizeof oom_runs);
    qrpc__dedup_fail_alloc(d, nth);
    for (c = 1; c <= OOM_CLIENTS; c++)
        for (q = 1; q <= OOM_SEQS; q++)
            oom_call(d, c, q);
    left = qrpc__dedup_fail_alloc(d, 0);
    qrpc__dedup_expire(d, UINT64_MAX);
    s = stats(d);
    REQUIRE_EQ(s.clients + s.entries + s.running + s.waiters + s.bytes, 0);
    REQUIRE_EQ(s.heap, heap0);
    qrpc__dedup_free(d);
    if (heap_exact())
        REQUIRE_EQ(heap_real(), real0);
    return left == 0;
}

START_TEST(test_alloc_failures)
{
    uint64_t nth;

    for (nth = 1; oom_script(nth); nth++)
        REQUIRE(nth < 100000);
    /* the script makes hundreds of allocations: each failed once */
    ck_assert_uint_gt(nth, 200);
}
END_TEST

/* ---- re-entry from the answer callback --------------------------------------------- */

static qrpc__dedup *reenter_d;
static int reenter_verdict = -1, reenter_status = -1;

static void on_answer_reenter(void *arg, void *wp, int status, const uint8_t *reply, size_t len)
{
    struct qrpc__dedup_stats s;
    qrpc__dedup_ticket t;
    qrpc_buf b = { 0 };
    int st = -1;

    (void)arg;
    (void)wp;
    (void)status;
    (void)reply;
    (void)len;
    /* every lock is free: the same client's shard, and the stats */
    reenter_verdict = (int)qrpc__dedup_begin(reenter_d, 1, 1, 0, true, 0, NULL, &t, &st, &b);
    reenter_status = st;
    qrpc_buf_free(&b);
    qrpc__dedup_stats(reenter_d, &s);
}

START_TEST(test_callback_reenters)
{
    qrpc__dedup_limits l = limits();
    qrpc__dedup_ticket t;
    int dummy;

    reenter_d = qrpc__dedup_new(&l, on_answer_reenter, NULL);
    ck_assert_ptr_nonnull(reenter_d);
    t = run(reenter_d, 1, 1, 0);
    {
        res o = { 0 };

        ck_assert_int_eq(req(reenter_d, 1, 1, 0, true, &dummy, &o), QRPC__DEDUP_WAIT);
    }
    done(reenter_d, t, 42, "x");
    ck_assert_int_eq(reenter_verdict, QRPC__DEDUP_REPLY);
    ck_assert_int_eq(reenter_status, 42);
    qrpc__dedup_free(reenter_d);
}
END_TEST

/* ---- threads ---------------------------------------------------------------------- */

enum { MT_THREADS = 4, MT_CLIENTS = 8, MT_SEQS = 1500 };

/*
 * Every thread sends every call of every client, in its own order, so
 * that duplicates race: the thread s % MT_THREADS sends call s as the
 * original, the others as retransmissions.  A client's watermark is the
 * longest prefix of calls that some thread has the outcome of.
 */
typedef struct mt_state {
    qrpc__dedup *d;
    atomic_uint runs[MT_CLIENTS][MT_SEQS + 1];
    atomic_bool outcome[MT_CLIENTS][MT_SEQS + 1];
    atomic_uint_least64_t prefix[MT_CLIENTS];
    atomic_uint bad;            /* checks that failed on a thread */
    atomic_ulong waits, replies, stales;
    atomic_bool stop;
} mt_state;

typedef struct mt_arg {
    mt_state *st;
    unsigned i;
} mt_arg;

static uint64_t mt_id(unsigned c)
{
    return 0x9e3779b97f4a7c15u * (c + 1);
}

static int mt_status(unsigned c, uint64_t s)
{
    return (int)((c + s) % 5);
}

static void mt_reply(uint8_t buf[16], unsigned c, uint64_t s)
{
    uint64_t v[2] = { c, s };

    memcpy(buf, v, 16);
}

static bool mt_matches(unsigned c, uint64_t s, int status, const uint8_t *reply, size_t len)
{
    uint8_t want[16];

    mt_reply(want, c, s);
    return status == mt_status(c, s) && len == sizeof want && memcmp(reply, want, len) == 0;
}

/* Someone has the outcome of (c, s): the watermark may pass it. */
static void mt_outcome(mt_state *st, unsigned c, uint64_t s)
{
    uint_least64_t p;

    atomic_store(&st->outcome[c][s], true);
    p = atomic_load(&st->prefix[c]);
    while (p < MT_SEQS && atomic_load(&st->outcome[c][p + 1]))
        if (atomic_compare_exchange_weak(&st->prefix[c], &p, p + 1))
            p++;
}

static void *mt_thread(void *argp)
{
    mt_arg *a = argp;
    mt_state *st = a->st;
    uint8_t rep[16];
    uint64_t s;
    unsigned j, c;

    for (s = 2; s <= MT_SEQS; s++) {
        for (j = 0; j < MT_CLIENTS; j++) {
            qrpc_buf b = { 0 };
            qrpc__dedup_ticket t;
            int status = -1, k;
            waitrec w;

            c = (j + a->i * 3) % MT_CLIENTS;
            waiter_init(&w);
            switch (qrpc__dedup_begin(st->d, mt_id(c), s, atomic_load(&st->prefix[c]),
                                      s % MT_THREADS != a->i, 0, &w, &t, &status, &b)) {
            case QRPC__DEDUP_RUN:
                atomic_fetch_add(&st->runs[c][s], 1);
                for (k = 0; k < (int)(s % 4); k++)
                    sched_yield();      /* let duplicates find it running */
                mt_reply(rep, c, s);
                qrpc__dedup_done(st->d, t, mt_status(c, s), rep, sizeof rep);
                break;
            case QRPC__DEDUP_WAIT:
                while (atomic_load_explicit(&w.calls, memory_order_acquire) == 0)
                    sched_yield();
                if (atomic_load(&w.calls) != 1 || !mt_matches(c, s, w.status, w.data, w.len))
                    atomic_fetch_add(&st->bad, 1);
                atomic_fetch_add(&st->waits, 1);
                break;
            case QRPC__DEDUP_REPLY:
                if (!mt_matches(c, s, status, b.data, b.len))
                    atomic_fetch_add(&st->bad, 1);
                atomic_fetch_add(&st->replies, 1);
                break;
            case QRPC__DEDUP_STALE:
                /* only once someone has the outcome */
                if (!atomic_load(&st->outcome[c][s]))
                    atomic_fetch_add(&st->bad, 1);
                atomic_fetch_add(&st->stales, 1);
                break;
            default:
                atomic_fetch_add(&st->bad, 1);
                break;
            }
            qrpc_buf_free(&b);
            mt_outcome(st, c, s);
        }
    }
    return NULL;
}

/* Expiry (with nothing old enough to go) and stats, concurrently with the rest. */
static void *mt_sweeper(void *argp)
{
    mt_state *st = argp;
    struct qrpc__dedup_stats s;

    while (!atomic_load(&st->stop)) {
        qrpc__dedup_expire(st->d, 0);
        qrpc__dedup_stats(st->d, &s);
        sched_yield();
    }
    return NULL;
}

START_TEST(test_threads_run_once)
{
    qrpc__dedup_limits l = limits();
    mt_state *st = malloc(sizeof *st);
    pthread_t th[MT_THREADS], sw;
    mt_arg args[MT_THREADS];
    struct qrpc__dedup_stats s;
    unsigned i, c, q;

    ck_assert_ptr_nonnull(st);
    l.lease_ns = UINT64_MAX;
    l.max_entries = 4096;
    st->d = mk(&l);
    for (c = 0; c < MT_CLIENTS; c++) {
        for (q = 0; q <= MT_SEQS; q++) {
            atomic_init(&st->runs[c][q], 0);
            atomic_init(&st->outcome[c][q], false);
        }
        atomic_init(&st->prefix[c], 1);
        atomic_init(&st->outcome[c][1], true);
        /* seq 1 makes each client known, so that retransmissions are not UNKNOWN */
        run_done(st->d, mt_id(c), 1, 0, 0, "");
    }
    atomic_init(&st->bad, 0);
    atomic_init(&st->waits, 0);
    atomic_init(&st->replies, 0);
    atomic_init(&st->stales, 0);
    atomic_init(&st->stop, false);
    ck_assert_int_eq(pthread_create(&sw, NULL, mt_sweeper, st), 0);
    for (i = 0; i < MT_THREADS; i++) {
        args[i].st = st;
        args[i].i = i;
        ck_assert_int_eq(pthread_create(&th[i], NULL, mt_thread, &args[i]), 0);
    }
    for (i = 0; i < MT_THREADS; i++)
        pthread_join(th[i], NULL);
    atomic_store(&st->stop, true);
    pthread_join(sw, NULL);

    ck_assert_uint_eq(atomic_load(&st->bad), 0);
    for (c = 0; c < MT_CLIENTS; c++)
        for (q = 2; q <= MT_SEQS; q++)
            REQUIRE_EQ(atomic_load(&st->runs[c][q]), 1);
    s = stats(st->d);
    ck_assert_uint_eq(s.running, 0);
    ck_assert_uint_eq(s.waiters, 0);
    ck_assert_uint_eq(s.busy + s.unknown, 0);
    ck_assert_uint_eq(s.duplicates, atomic_load(&st->waits) + atomic_load(&st->replies));
    ck_assert_uint_eq(s.stale, atomic_load(&st->stales));
    ck_assert_uint_eq(s.duplicates + s.stale,
                      (uint64_t)(MT_THREADS - 1) * MT_CLIENTS * (MT_SEQS - 1));
    qrpc__dedup_free(st->d);
    free(st);
}
END_TEST

enum { CH_THREADS = 4, CH_CLIENTS = 150, CH_ROUNDS = 25 };

/* Clients made and forgotten while an expirer runs: the clock is a shared counter. */
typedef struct ch_state {
    qrpc__dedup *d;
    atomic_uint_least64_t clock;
    atomic_uint bad;
    atomic_bool stop;
} ch_state;

typedef struct ch_arg {
    ch_state *st;
    uint64_t i;
} ch_arg;

static void *ch_thread(void *argp)
{
    ch_arg *a = argp;
    ch_state *st = a->st;
    uint64_t r, k, id;

    for (r = 1; r <= CH_ROUNDS; r++) {
        for (k = 0; k < CH_CLIENTS; k++) {
            qrpc_buf b = { 0 };
            qrpc__dedup_ticket t, t2;
            int status;
            waitrec w;

            id = a->i << 32 | k;
            waiter_init(&w);
            /* whether the client was forgotten since its last call or not, this runs */
            if (qrpc__dedup_begin(st->d, id, r, r - 1, false, atomic_fetch_add(&st->clock, 1),
                                  NULL, &t, &status, &b) != QRPC__DEDUP_RUN) {
                atomic_fetch_add(&st->bad, 1);
                continue;
            }
            /* and a client with a call running is never forgotten */
            if (qrpc__dedup_begin(st->d, id, r, r - 1, true, atomic_fetch_add(&st->clock, 1),
                                  &w, &t2, &status, &b) != QRPC__DEDUP_WAIT)
                atomic_fetch_add(&st->bad, 1);
            qrpc__dedup_done(st->d, t, 0, (const uint8_t *)&id, sizeof id);
            if (atomic_load(&w.calls) != 1)
                atomic_fetch_add(&st->bad, 1);
        }
    }
    return NULL;
}

static void *ch_expirer(void *argp)
{
    ch_state *st = argp;

    while (!atomic_load(&st->stop)) {
        qrpc__dedup_expire(st->d, atomic_load(&st->clock));
        sched_yield();
    }
    return NULL;
}

START_TEST(test_threads_churn)
{
    qrpc__dedup_limits l = limits();
    ch_state st;
    pthread_t th[CH_THREADS], ex;
    ch_arg args[CH_THREADS];
    struct qrpc__dedup_stats s;
    size_t heap0;
    unsigned i;

    l.lease_ns = CH_THREADS * CH_CLIENTS;      /* about half a round */
    l.max_clients = CH_THREADS * CH_CLIENTS;
    st.d = mk(&l);
    heap0 = stats(st.d).heap;
    atomic_init(&st.clock, 0);
    atomic_init(&st.bad, 0);
    atomic_init(&st.stop, false);
    ck_assert_int_eq(pthread_create(&ex, NULL, ch_expirer, &st), 0);
    for (i = 0; i < CH_THREADS; i++) {
        args[i].st = &st;
        args[i].i = i;
        ck_assert_int_eq(pthread_create(&th[i], NULL, ch_thread, &args[i]), 0);
    }
    for (i = 0; i < CH_THREADS; i++)
        pthread_join(th[i], NULL);
    atomic_store(&st.stop, true);
    pthread_join(ex, NULL);
    ck_assert_uint_eq(atomic_load(&st.bad), 0);
    qrpc__dedup_expire(st.d, UINT64_MAX);
    s = stats(st.d);
    ck_assert_uint_eq(s.clients + s.entries + s.running + s.waiters + s.bytes, 0);
    ck_assert_uint_eq(s.heap, heap0);
    ck_assert_uint_ge(s.expired, CH_THREADS * CH_CLIENTS);
    qrpc__dedup_free(st.d);
}
END_TEST

/* ---- the memory bound ------------------------------------------------------------- */

enum {
    MB_CLIENTS = 10000,
    MB_WINDOW = 3,              /* calls a client has unacknowledged */
    MB_ROUNDS = 6,
    MB_REPLY = 32
};

/*
 * Generous per-object costs, as dedup.c describes them: a client is under
 * 100 bytes, its smallest table 8 slots of 16 bytes, and the shard tables
 * hold at most 8 slots per client; an entry is under 64 bytes and its
 * client's table at most 8 slots per entry; every block is counted with
 * 16 bytes of malloc's overhead.  MB_BASE covers the cache itself.
 */
#define MB_BASE         16384u
#define MB_PER_CLIENT   512u
#define MB_PER_ENTRY    256u

static size_t mb_bound(const struct qrpc__dedup_stats *s)
{
    return MB_BASE + s->clients * MB_PER_CLIENT + s->entries * MB_PER_ENTRY + s->bytes;
}

START_TEST(test_memory_bound)
{
    qrpc__dedup_limits l = limits();
    struct qrpc__dedup_stats s;
    size_t real0, heap0, peak = 0;
    uint8_t rep[MB_REPLY];
    qrpc__dedup *d;
    uint64_t r, c;

    l.max_clients = MB_CLIENTS;
    l.max_entries = MB_WINDOW;
    l.max_bytes = (size_t)MB_CLIENTS * MB_WINDOW * MB_REPLY;
    l.lease_ns = 1000;
    real0 = heap_real();
    d = mk(&l);
    heap0 = stats(d).heap;
    ck_assert_uint_le(heap0, MB_BASE);
    memset(rep, 'r', sizeof rep);
    /* each round, every client makes a call and acknowledges the one MB_WINDOW back */
    for (r = 1; r <= MB_ROUNDS; r++) {
        t_now = r;
        for (c = 0; c < MB_CLIENTS; c++)
            qrpc__dedup_done(d, run(d, c * 0x10001, r, r > MB_WINDOW ? r - MB_WINDOW : 0),
                             0, rep, sizeof rep);
        s = stats(d);
        ck_assert_uint_eq(s.clients, MB_CLIENTS);
        ck_assert_uint_eq(s.entries, (size_t)MB_CLIENTS * (r < MB_WINDOW ? r : MB_WINDOW));
        ck_assert_uint_le(s.heap, mb_bound(&s));
        heap_within_estimate(real0, s.heap);
        if (s.heap > peak)
            peak = s.heap;
    }
    /* all acknowledged: the entries go, the clients stay */
    for (c = 0; c < MB_CLIENTS; c++)
        verdict(d, c * 0x10001, MB_ROUNDS, MB_ROUNDS, false, QRPC__DEDUP_STALE);
    s = stats(d);
    ck_assert_uint_eq(s.entries, 0);
    ck_assert_uint_eq(s.bytes, 0);
    ck_assert_uint_le(s.heap, mb_bound(&s));
    /* down by at least the replies and an entry's struct for each call */
    ck_assert_uint_le(s.heap + (size_t)MB_CLIENTS * MB_WINDOW * (MB_REPLY + 16), peak);
    heap_within_estimate(real0, s.heap);
    /* the lease runs out: nothing is left */
    qrpc__dedup_expire(d, t_now + l.lease_ns);
    s = stats(d);
    ck_assert_uint_eq(s.clients, 0);
    ck_assert_uint_eq(s.expired, MB_CLIENTS);
    ck_assert_uint_eq(s.heap, heap0);
    heap_within_estimate(real0, s.heap);
    qrpc__dedup_free(d);
    if (heap_exact())
        ck_assert_uint_eq(heap_real(), real0);
}
END_TEST

static Suite *dedup_suite(void)
{
    Suite *s = suite_create("dedup");
    TCase *tc = tcase_create("dedup");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_run_then_reply);
    tcase_add_test(tc, test_wait);
    tcase_add_test(tc, test_stale_and_watermark);
    tcase_add_test(tc, test_running_below_watermark_with_waiter);
    tcase_add_test(tc, test_unknown);
    tcase_add_test(tc, test_too_large);
    tcase_add_test(tc, test_free_closes_waiters);
    tcase_add_test(tc, test_lease);
    tcase_add_test(tc, test_lease_while_running);
    tcase_add_test(tc, test_limit_clients);
    tcase_add_test(tc, test_limit_entries);
    tcase_add_test(tc, test_limit_total_entries);
    tcase_add_test(tc, test_limit_waiters);
    tcase_add_test(tc, test_hostile_numbers);
    tcase_add_test(tc, test_hostile_storm);
    tcase_add_test(tc, test_ack_paths);
    tcase_add_test(tc, test_alloc_failures);
    tcase_add_test(tc, test_callback_reenters);
    tcase_add_test(tc, test_threads_run_once);
    tcase_add_test(tc, test_threads_churn);
    tcase_add_test(tc, test_memory_bound);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(dedup_suite());
}
