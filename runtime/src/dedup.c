/*
 * dedup.c - the reply cache of dedup.h: the server's half of at-most-once
 * calls.  A client numbers its calls and says with each request up to
 * which number it has every outcome (its watermark); the cache remembers
 * each call above the watermark, running or answered, and so can tell a
 * new request from a duplicate.
 *
 * What it is not:
 *   - Durable.  Everything lives in this process's memory: a restarted
 *     server forgets every client.  It must then refuse retransmissions
 *     addressed to its previous incarnation (the caller's job, by the
 *     node's incarnation id), or answer them from the durable reply log
 *     (dlog.c), which puts its records back with qrpc__dedup_restore().
 *   - A guarantee beyond the lease.  The lease runs from a client's
 *     latest request, so a client that keeps retransmitting keeps its
 *     state.  A client silent for lease_ns with no call running loses it,
 *     and a retransmission from it then gets UNKNOWN, not a second run.
 *     But a *first* transmission (retry not set) from a client the cache
 *     does not know simply runs, and makes the client known again; after
 *     that, a retransmission of an older call above the new watermark
 *     finds no entry and runs too.  So a request that spends longer than
 *     the lease in the network, or a client that falls silent for longer
 *     than the lease and then retransmits, could make a call run twice.
 *     Clients must therefore stop retransmitting (give up with
 *     QRPC_EUNKNOWN) well before the lease runs out, count a call they
 *     gave up on as acknowledged, and the lease must exceed any delay the
 *     network can add: the same assumption RIFL (SOSP 2015) makes of its
 *     leases.
 *   - A judge of the client's honesty.  The watermark is the client's
 *     word: a client that acknowledges calls it has no outcome of gets
 *     STALE for them, which hurts only itself.
 *
 * Data structures.  Clients are spread over DEDUP_SHARDS shards by a
 * keyed hash of their id, each shard with its own mutex, so that callers
 * on different threads rarely contend.  In a shard, clients live in an
 * open-addressing hash table (linear probing, load at most 1/2,
 * backward-shift deletion, no tombstones) and on a list in last-seen
 * order, oldest first, so that expiry looks only at the clients it
 * forgets.  Per client, its calls live in a second table of the same kind
 * keyed by sequence number.  A ring indexed by seq - watermark was the
 * other candidate, since the unacknowledged numbers are usually a small
 * window; but a client's numbers need not be contiguous (idempotent calls
 * take numbers and leave no entry; one slow call holds the watermark back
 * while later ones complete), and a hostile client can send any number,
 * so a ring would need either memory proportional to the gap or a second
 * structure for the far ones.  The table costs O(entries) whatever the
 * numbers are.  Moving the watermark forgets the entries it passes: by
 * probing each number passed when that is fewer than the table's slots,
 * by one sweep of the table otherwise, so the cost is O(min(advance,
 * table)).  Hash keys are a random per-cache key mixed into the id (or
 * seq) by splitmix64's finaliser, so a peer cannot choose ids that pile
 * into one run.  Limits hold across shards through atomic counters that
 * are reserved (compare-and-swap up to the limit) before anything is
 * allocated.
 *
 * Memory: per client its struct (80 bytes on LP64), its table of at
 * least 8 slots of 16 bytes and its slots in the shard's table; per entry
 * its struct (32 bytes) with room for DEDUP_INLINE reply bytes, the reply
 * bytes beyond them and at most 8 slots of its
 * client's table (tables grow at load 1/2 and shrink below load 1/8);
 * per waiter a 16-byte node.  So the heap is O(clients + entries + bytes + waiters), all four
 * bounded by the limits.  Every block goes through dedup_realloc() and
 * dedup_free_block(), which keep the heap estimate of the stats (the
 * requested size plus DEDUP_BLOCK_OVERHEAD per block, for malloc's
 * header) and let the tests make any allocation fail.  Nothing aborts: an
 * allocation that fails makes the request BUSY, or leaves a reply
 * uncached, or a table at its old size.
 *
 * Known limits: one slow call of a client holds its watermark, and so
 * every later answered call of that client, in memory until it finishes
 * (max_entries then answers BUSY); a client id must not be reused with
 * its numbers starting again (issue 5: a new id per incarnation), or the
 * new calls meet the old life's entries and watermark until its lease
 * runs out; a reply is copied under its shard's lock; expiry needs the
 * owner to call qrpc__dedup_expire(), and costs O(clients forgotten +
 * shards); the answer callback of a done() runs on the thread that calls
 * it, after the shard's lock is released; a caller
 * whose clock reads behind another thread's is taken to be at the later
 * time (last-seen times in a shard never go back), which can lengthen a
 * lease by that skew; times are not checked for sanity (a now_ns far in
 * the future keeps that shard's clients for as long).
 */
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "counter.h"
#include "dedup.h"

/* Shards, a power of two; the hash's top bits choose one. */
#define DEDUP_SHARD_BITS 4u
#define DEDUP_SHARDS (1u << DEDUP_SHARD_BITS)
/* Slots of the smallest hash table; a power of two. */
#define DEDUP_TAB_MIN 8u
/*
 * Reply bytes an entry holds in its own block: a small reply (most are)
 * is kept without growing the entry.
 */
#define DEDUP_INLINE 32u
/* What the heap estimate adds to each block for malloc's own header. */
#define DEDUP_BLOCK_OVERHEAD 16u

#define DEDUP_ADD(c, n) ((void)atomic_fetch_add_explicit(&(c), (n), memory_order_relaxed))
#define DEDUP_SUB(c, n) ((void)atomic_fetch_sub_explicit(&(c), (n), memory_order_relaxed))

/* A slot of a hash table: empty when val is NULL. */
typedef struct dedup_slot {
    uint64_t key;
    void *val;
} dedup_slot;

typedef struct dedup_tab {
    dedup_slot *slots;          /* NULL, or mask + 1 (a power of two) of them */
    size_t mask;
    size_t count;
} dedup_tab;

/* A duplicate waiting for a running call. */
typedef struct dedup_waiter {
    struct dedup_waiter *next;
    void *waiter;               /* the caller's, handed back to the answer callback */
} dedup_waiter;

enum {
    DEDUP_RUNNING,              /* RUN handed out, done() not yet called */
    DEDUP_ANSWERED,             /* status and the reply's len bytes kept */
    DEDUP_UNCACHED              /* answered, but its reply did not fit: repeat EUNKNOWN */
};

/* One call of a client, above its watermark or running. */
typedef struct dedup_entry {
    uint64_t seq;
    dedup_waiter *waiters;      /* while running */
    size_t len;                 /* bytes in reply[] */
    int status;
    uint8_t state;              /* DEDUP_RUNNING ... */
    uint8_t reply[];
} dedup_entry;

/* The block of an entry holding len reply bytes. */
static inline size_t dedup_entry_size(size_t len)
{
    return sizeof(dedup_entry) + (len > DEDUP_INLINE ? len : DEDUP_INLINE);
}

struct dedup_list;

typedef struct dedup_client {
    uint64_t id;
    uint64_t watermark;         /* the highest ack it sent */
    uint64_t last_seen;         /* now_ns of its latest request */
    struct dedup_client *prev, *next;
    struct dedup_list *on;      /* its shard's lru or parked list */
    dedup_tab entries;          /* by seq */
    size_t running;             /* entries in state DEDUP_RUNNING */
} dedup_client;

typedef struct dedup_list {
    dedup_client *head, *tail;
} dedup_list;

/* A cache line or more of its own, so that shards' locks do not share one. */
typedef struct dedup_shard {
    _Alignas(64) pthread_mutex_t lock;
    dedup_tab clients;          /* by id */
    dedup_list lru;             /* clients by last_seen, oldest first */
    dedup_list parked;          /* lease over while calls ran: go at the last done() */
} dedup_shard;

/*
 * The layout keeps what every call reads (limits, key) off the lines
 * that every call writes (the gauges), and those lines apart.
 */
struct qrpc__dedup {
    dedup_shard shard[DEDUP_SHARDS];
    qrpc__dedup_limits lim;
    qrpc__dedup_answer_fn answer;
    void *arg;
    uint64_t key;               /* of the hashes */
    atomic_uint_least64_t fail_at;      /* qrpc__dedup_fail_alloc() */
    /* gauges, reserved against the limits before use */
    _Alignas(64) atomic_size_t entries, bytes;
    _Alignas(64) atomic_size_t clients, waiters;
    /* gauges without a limit, striped (counter.h) */
    _Alignas(64) qrpc__counter running, heap;
    /* events, for the stats */
    _Alignas(64) atomic_uint_least64_t duplicates, stale, unknown, busy, expired;
};

/* ---- memory and counters ------------------------------------------------------ */

/*
 * realloc() for every block the cache holds (p NULL: a new one), keeping
 * the heap estimate; fails when qrpc__dedup_fail_alloc() says so.  As with
 * realloc(), p is untouched on failure.
 */
static void *dedup_realloc(qrpc__dedup *d, void *p, size_t old, size_t n)
{
    uint_least64_t k = atomic_load_explicit(&d->fail_at, memory_order_relaxed);
    void *q;

    while (k != 0 && !atomic_compare_exchange_weak(&d->fail_at, &k, k - 1))
        ;
    if (k == 1)
        return NULL;
    q = realloc(p, n);
    if (q == NULL)
        return NULL;
    if (p == NULL)
        qrpc__counter_add(&d->heap, n + DEDUP_BLOCK_OVERHEAD);
    else
        qrpc__counter_add(&d->heap, n - old);   /* wraps when it shrinks */
    return q;
}

/* Frees block p of n bytes (NULL is ignored). */
static void dedup_free_block(qrpc__dedup *d, void *p, size_t n)
{
    if (p == NULL)
        return;
    free(p);
    qrpc__counter_add(&d->heap, -(uint64_t)(n + DEDUP_BLOCK_OVERHEAD));
}

/* Adds n to *c unless that would pass max; whether it did. */
static bool dedup_take(atomic_size_t *c, size_t n, size_t max)
{
    size_t v = atomic_load_explicit(c, memory_order_relaxed);

    do {
        if (n > max || v > max - n)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(c, &v, v + n, memory_order_relaxed,
                                                    memory_order_relaxed));
    return true;
}

/* splitmix64's finaliser over the keyed value: a bijection, unknown to peers. */
static inline uint64_t dedup_hash(const qrpc__dedup *d, uint64_t x)
{
    x ^= d->key;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

static inline dedup_shard *dedup_shard_of(qrpc__dedup *d, uint64_t client)
{
    return &d->shard[dedup_hash(d, client) >> (64 - DEDUP_SHARD_BITS)];
}

/* ---- hash tables (clients by id, entries by seq) ------------------------------ */

static inline size_t dedup_tab_cap(const dedup_tab *t)
{
    return t->slots == NULL ? 0 : t->mask + 1;
}

/* Puts s, whose key is absent, in the first free slot of its run. */
static void dedup_tab_place(const qrpc__dedup *d, dedup_slot *slots, size_t mask, dedup_slot s)
{
    size_t i = dedup_hash(d, s.key) & mask;

    while (slots[i].val != NULL)
        i = (i + 1) & mask;
    slots[i] = s;
}

/* Rebuilds t with ncap slots (a power of two above its count). */
static int dedup_tab_resize(qrpc__dedup *d, dedup_tab *t, size_t ncap)
{
    size_t cap = dedup_tab_cap(t), i;
    dedup_slot *ns;

    if (ncap > SIZE_MAX / sizeof *ns)
        return QRPC_ENOMEM;
    ns = dedup_realloc(d, NULL, 0, ncap * sizeof *ns);
    if (ns == NULL)
        return QRPC_ENOMEM;
    memset(ns, 0, ncap * sizeof *ns);
    for (i = 0; i < cap; i++)
        if (t->slots[i].val != NULL)
            dedup_tab_place(d, ns, ncap - 1, t->slots[i]);
    dedup_free_block(d, t->slots, cap * sizeof *ns);
    t->slots = ns;
    t->mask = ncap - 1;
    return 0;
}

static void dedup_tab_free(qrpc__dedup *d, dedup_tab *t)
{
    dedup_free_block(d, t->slots, dedup_tab_cap(t) * sizeof *t->slots);
    t->slots = NULL;
    t->mask = 0;
    t->count = 0;
}

static dedup_slot *dedup_tab_find(const qrpc__dedup *d, const dedup_tab *t, uint64_t key)
{
    size_t i;

    if (t->count == 0)
        return NULL;
    for (i = dedup_hash(d, key) & t->mask; t->slots[i].val != NULL; i = (i + 1) & t->mask)
        if (t->slots[i].key == key)
            return &t->slots[i];
    return NULL;
}

/* Adds key (absent) with val, growing t to keep its load at most 1/2. */
static int dedup_tab_add(qrpc__dedup *d, dedup_tab *t, uint64_t key, void *val)
{
    size_t cap = dedup_tab_cap(t);
    dedup_slot s = { key, val };

    if ((t->count + 1) * 2 > cap &&
        dedup_tab_resize(d, t, cap == 0 ? DEDUP_TAB_MIN : cap * 2) != 0)
        return QRPC_ENOMEM;
    dedup_tab_place(d, t->slots, t->mask, s);
    t->count++;
    return 0;
}

/*
 * Empties slot s of t.  Later slots of the run move back into the hole
 * when it lies between their home and where they are, so that every key
 * stays reachable from its home without tombstones.  Slots only ever
 * move backwards, towards s: a sweep in index order that re-examines s
 * after each removal misses none (dedup_ack relies on this).
 */
static void dedup_tab_del(const qrpc__dedup *d, dedup_tab *t, dedup_slot *s)
{
    size_t mask = t->mask, i = (size_t)(s - t->slots), j = i, home;

    for (;;) {
        j = (j + 1) & mask;
        if (t->slots[j].val == NULL)
            break;
        home = dedup_hash(d, t->slots[j].key) & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            t->slots[i] = t->slots[j];
            i = j;
        }
    }
    t->slots[i].val = NULL;
    t->count--;
}

/*
 * After removals: a burst need not keep its large table.  Halves down to
 * a load of at least 1/8 (never below DEDUP_TAB_MIN); failing is harmless.
 */
static void dedup_tab_shrink(qrpc__dedup *d, dedup_tab *t)
{
    size_t cap = dedup_tab_cap(t), ncap = cap;

    while (ncap > DEDUP_TAB_MIN && t->count * 8 < ncap)
        ncap /= 2;
    if (ncap != cap)
        (void)dedup_tab_resize(d, t, ncap);
}

/* ---- lists of clients --------------------------------------------------------- */

static void dedup_list_put(dedup_list *l, dedup_client *c)
{
    c->on = l;
    c->next = NULL;
    c->prev = l->tail;
    if (l->tail != NULL)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
}

static void dedup_list_cut(dedup_client *c)
{
    dedup_list *l = c->on;

    if (l == NULL)
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->on = NULL;
    c->prev = c->next = NULL;
}

/* ---- entries and clients ---------------------------------------------------- */

/*
 * Frees e, which no table holds any more, and counts it out.  The waiters
 * of a running e go onto *closed (only qrpc__dedup_free() passes a list:
 * elsewhere a dropped entry has none).
 */
static void dedup_entry_drop(qrpc__dedup *d, dedup_entry *e, dedup_waiter **closed)
{
    dedup_waiter *w;

    if (e->state == DEDUP_RUNNING) {
        qrpc__counter_add(&d->running, (uint64_t)-1);
        while ((w = e->waiters) != NULL) {
            e->waiters = w->next;
            w->next = *closed;
            *closed = w;
        }
    }
    DEDUP_SUB(d->entries, 1);
    DEDUP_SUB(d->bytes, e->len);
    dedup_free_block(d, e, dedup_entry_size(e->len));
}

/* Forgets the (not running) entry at slot s of c. */
static void dedup_forget(qrpc__dedup *d, dedup_client *c, dedup_slot *s)
{
    dedup_entry *e = s->val;

    dedup_tab_del(d, &c->entries, s);
    dedup_entry_drop(d, e, NULL);
}

static inline bool dedup_answered(const dedup_slot *s)
{
    return ((const dedup_entry *)s->val)->state != DEDUP_RUNNING;
}

/* Frees c, which no shard holds any more, with its entries; as dedup_entry_drop. */
static void dedup_client_drop(qrpc__dedup *d, dedup_client *c, dedup_waiter **closed)
{
    size_t i;

    for (i = 0; i < dedup_tab_cap(&c->entries); i++)
        if (c->entries.slots[i].val != NULL)
            dedup_entry_drop(d, c->entries.slots[i].val, closed);
    dedup_tab_free(d, &c->entries);
    DEDUP_SUB(d->clients, 1);
    dedup_free_block(d, c, sizeof *c);
}

/* Forgets c, whose lease ran out and which has no call running. */
static void dedup_client_expire(qrpc__dedup *d, dedup_shard *sh, dedup_client *c)
{
    dedup_list_cut(c);
    dedup_tab_del(d, &sh->clients, dedup_tab_find(d, &sh->clients, c->id));
    dedup_client_drop(d, c, NULL);
    DEDUP_ADD(d->expired, 1);
}

/*
 * Renews c's lease: seen at now, and last on its shard's list.  A time
 * behind the list's newest is taken as that newest, so the list stays in
 * last-seen order even when callers' clocks disagree by a little.
 */
static void dedup_touch(dedup_shard *sh, dedup_client *c, uint64_t now)
{
    if (sh->lru.tail != NULL && sh->lru.tail->last_seen > now)
        now = sh->lru.tail->last_seen;
    dedup_list_cut(c);
    c->last_seen = now;
    dedup_list_put(&sh->lru, c);
}

/*
 * Raises c's watermark to ack and forgets the answered entries it passes.
 * Answered entries are always above the watermark, so only (old, ack]
 * needs looking at: number by number when that is fewer than the table's
 * slots, else one sweep.  Running entries stay; their done() forgets them.
 */
static void dedup_ack(qrpc__dedup *d, dedup_client *c, uint64_t ack)
{
    dedup_tab *t = &c->entries;
    uint64_t s = c->watermark;
    dedup_slot *p;
    size_t i;

    if (ack <= s)
        return;                 /* a watermark only grows: late requests carry old acks */
    c->watermark = ack;
    if (t->count == 0)
        return;
    if (ack - s <= dedup_tab_cap(t)) {
        while (s != ack && t->count != 0) {
            p = dedup_tab_find(d, t, ++s);
            if (p != NULL && dedup_answered(p))
                dedup_forget(d, c, p);
        }
    } else {
        for (i = 0; i < dedup_tab_cap(t); i++)
            while ((p = &t->slots[i])->val != NULL && p->key <= ack && dedup_answered(p))
                dedup_forget(d, c, p);
    }
    dedup_tab_shrink(d, t);
}

/* ---- the verdicts ------------------------------------------------------------- */

/* A new entry for seq in c, running: RUN, or BUSY with nothing changed. */
static qrpc__dedup_verdict dedup_run(qrpc__dedup *d, dedup_client *c, uint64_t seq,
                                     qrpc__dedup_ticket *ticket)
{
    dedup_entry *e;

    if (c->entries.count >= d->lim.max_entries ||
        !dedup_take(&d->entries, 1, d->lim.max_total_entries != 0 ? d->lim.max_total_entries
                                                                  : SIZE_MAX))
        return QRPC__DEDUP_BUSY;
    e = dedup_realloc(d, NULL, 0, dedup_entry_size(0));
    if (e == NULL) {
        DEDUP_SUB(d->entries, 1);
        return QRPC__DEDUP_BUSY;
    }
    e->seq = seq;
    e->waiters = NULL;
    e->len = 0;
    e->status = 0;
    e->state = DEDUP_RUNNING;
    if (dedup_tab_add(d, &c->entries, seq, e) != 0) {
        dedup_free_block(d, e, dedup_entry_size(0));
        DEDUP_SUB(d->entries, 1);
        return QRPC__DEDUP_BUSY;
    }
    c->running++;
    qrpc__counter_add(&d->running, 1);
    ticket->client = c;
    ticket->entry = e;
    return QRPC__DEDUP_RUN;
}

/* Registers waiter on running e: WAIT, or BUSY with nothing changed. */
static qrpc__dedup_verdict dedup_wait(qrpc__dedup *d, dedup_entry *e, void *waiter)
{
    dedup_waiter *w;

    if (!dedup_take(&d->waiters, 1, d->lim.max_waiters))
        return QRPC__DEDUP_BUSY;
    w = dedup_realloc(d, NULL, 0, sizeof *w);
    if (w == NULL) {
        DEDUP_SUB(d->waiters, 1);
        return QRPC__DEDUP_BUSY;
    }
    w->waiter = waiter;
    w->next = e->waiters;
    e->waiters = w;
    return QRPC__DEDUP_WAIT;
}

/* Repeats answered e: REPLY, or BUSY when the copy cannot be made. */
static qrpc__dedup_verdict dedup_reply(const dedup_entry *e, int *status, qrpc_buf *reply)
{
    if (e->state == DEDUP_UNCACHED) {
        *status = QRPC_EUNKNOWN;    /* it ran once; we cannot say what it answered */
        return QRPC__DEDUP_REPLY;
    }
    if (qrpc_put_raw(reply, e->reply, e->len) != 0)
        return QRPC__DEDUP_BUSY;
    *status = e->status;
    return QRPC__DEDUP_REPLY;
}

/* begin() for a client the shard does not hold. */
static qrpc__dedup_verdict dedup_begin_new(qrpc__dedup *d, dedup_shard *sh, uint64_t id,
                                           uint64_t seq, uint64_t ack, bool retry, uint64_t now,
                                           qrpc__dedup_ticket *ticket)
{
    dedup_client *c;

    if (seq <= ack)
        return QRPC__DEDUP_STALE;
    if (retry)
        return QRPC__DEDUP_UNKNOWN;
    if (!dedup_take(&d->clients, 1, d->lim.max_clients))
        return QRPC__DEDUP_BUSY;
    c = dedup_realloc(d, NULL, 0, sizeof *c);
    if (c == NULL)
        goto fail;
    memset(c, 0, sizeof *c);
    c->id = id;
    c->watermark = ack;
    if (dedup_run(d, c, seq, ticket) != QRPC__DEDUP_RUN ||
        dedup_tab_add(d, &sh->clients, id, c) != 0)
        goto fail;
    dedup_touch(sh, c, now);
    return QRPC__DEDUP_RUN;

fail:
    if (c != NULL)
        dedup_client_drop(d, c, NULL);      /* counts the client out too */
    else
        DEDUP_SUB(d->clients, 1);
    ticket->client = NULL;
    ticket->entry = NULL;
    return QRPC__DEDUP_BUSY;
}

static void dedup_count(qrpc__dedup *d, qrpc__dedup_verdict v)
{
    switch (v) {
    case QRPC__DEDUP_RUN:
        break;
    case QRPC__DEDUP_WAIT:
    case QRPC__DEDUP_REPLY:
        DEDUP_ADD(d->duplicates, 1);
        break;
    case QRPC__DEDUP_STALE:
        DEDUP_ADD(d->stale, 1);
        break;
    case QRPC__DEDUP_UNKNOWN:
        DEDUP_ADD(d->unknown, 1);
        break;
    case QRPC__DEDUP_BUSY:
        DEDUP_ADD(d->busy, 1);
        break;
    }
}

/*
 * Answered entry s of a finished call: status, and the reply when it fits
 * under max_bytes and memory allows (the entry grows to hold it, one
 * block for both); otherwise DEDUP_UNCACHED, and a duplicate will get
 * QRPC_EUNKNOWN.
 */
static void dedup_keep(qrpc__dedup *d, dedup_slot *s, int status, const uint8_t *reply,
                       size_t len)
{
    dedup_entry *e = s->val, *ne;

    e->status = status;
    e->state = DEDUP_ANSWERED;
    if (len == 0)
        return;
    e->state = DEDUP_UNCACHED;
    if (len > SIZE_MAX - sizeof *e || !dedup_take(&d->bytes, len, d->lim.max_bytes))
        return;
    ne = len <= DEDUP_INLINE ? e : dedup_realloc(d, e, dedup_entry_size(0),
                                                 dedup_entry_size(len));
    if (ne == NULL) {
        DEDUP_SUB(d->bytes, len);
        return;
    }
    memcpy(ne->reply, reply, len);
    ne->len = len;
    ne->state = DEDUP_ANSWERED;
    s->val = ne;
}

/* Hands each waiter of list w to the answer callback, and frees the list. */
static void dedup_answer(qrpc__dedup *d, dedup_waiter *w, int status, const uint8_t *reply,
                         size_t len)
{
    dedup_waiter *next;

    for (; w != NULL; w = next) {
        next = w->next;
        d->answer(d->arg, w->waiter, status, reply, len);
        dedup_free_block(d, w, sizeof *w);
        DEDUP_SUB(d->waiters, 1);
    }
}

/* ---- the interface ------------------------------------------------------------ */

qrpc__dedup *qrpc__dedup_new(const qrpc__dedup_limits *lim, qrpc__dedup_answer_fn answer,
                             void *arg)
{
    qrpc__dedup *d;
    unsigned i;

    if (lim == NULL || answer == NULL)
        return NULL;
    /* sizeof a type aligned to 64 is a multiple of 64, as aligned_alloc wants */
    d = aligned_alloc(_Alignof(qrpc__dedup), sizeof *d);
    if (d == NULL)
        return NULL;
    memset(d, 0, sizeof *d);
    d->lim = *lim;
    d->answer = answer;
    d->arg = arg;
    /* qrpc__random64: getrandom, or time, pid and addresses without it */
    d->key = qrpc__random64();
    atomic_init(&d->clients, 0);
    atomic_init(&d->entries, 0);
    atomic_init(&d->waiters, 0);
    atomic_init(&d->bytes, 0);
    qrpc__counter_init(&d->running, 0);
    qrpc__counter_init(&d->heap, sizeof *d + DEDUP_BLOCK_OVERHEAD);
    atomic_init(&d->duplicates, 0);
    atomic_init(&d->stale, 0);
    atomic_init(&d->unknown, 0);
    atomic_init(&d->busy, 0);
    atomic_init(&d->expired, 0);
    atomic_init(&d->fail_at, 0);
    /*
     * The shard tables are made here and never shrink below DEDUP_TAB_MIN,
     * so that a cache emptied again holds exactly what it held new.
     */
    for (i = 0; i < DEDUP_SHARDS; i++) {
        if (pthread_mutex_init(&d->shard[i].lock, NULL) != 0)
            goto fail;
        if (dedup_tab_resize(d, &d->shard[i].clients, DEDUP_TAB_MIN) != 0) {
            pthread_mutex_destroy(&d->shard[i].lock);
            goto fail;
        }
    }
    return d;

fail:
    while (i-- > 0) {
        dedup_tab_free(d, &d->shard[i].clients);
        pthread_mutex_destroy(&d->shard[i].lock);
    }
    free(d);
    return NULL;
}

void qrpc__dedup_free(qrpc__dedup *d)
{
    dedup_waiter *closed = NULL;
    dedup_shard *sh;
    size_t i;
    unsigned k;

    if (d == NULL)
        return;
    for (k = 0; k < DEDUP_SHARDS; k++) {
        sh = &d->shard[k];
        for (i = 0; i < dedup_tab_cap(&sh->clients); i++)
            if (sh->clients.slots[i].val != NULL)
                dedup_client_drop(d, sh->clients.slots[i].val, &closed);
        dedup_tab_free(d, &sh->clients);
        pthread_mutex_destroy(&sh->lock);
    }
    dedup_answer(d, closed, QRPC_ECLOSED, NULL, 0);
    free(d);
}

qrpc__dedup_verdict qrpc__dedup_begin(qrpc__dedup *d, uint64_t client, uint64_t seq,
                                      uint64_t ack, bool retry, uint64_t now_ns, void *waiter,
                                      qrpc__dedup_ticket *ticket, int *status, qrpc_buf *reply)
{
    dedup_shard *sh = dedup_shard_of(d, client);
    qrpc__dedup_verdict v;
    dedup_client *c;
    dedup_slot *s;

    ticket->client = NULL;
    ticket->entry = NULL;
    pthread_mutex_lock(&sh->lock);
    s = dedup_tab_find(d, &sh->clients, client);
    if (s == NULL) {
        v = dedup_begin_new(d, sh, client, seq, ack, retry, now_ns, ticket);
    } else {
        c = s->val;
        dedup_touch(sh, c, now_ns);
        dedup_ack(d, c, ack);
        if (seq <= c->watermark)
            v = QRPC__DEDUP_STALE;  /* even if still running: the client says it is done */
        else if ((s = dedup_tab_find(d, &c->entries, seq)) == NULL)
            v = dedup_run(d, c, seq, ticket);
        else if (!dedup_answered(s))
            v = dedup_wait(d, s->val, waiter);
        else
            v = dedup_reply(s->val, status, reply);
    }
    pthread_mutex_unlock(&sh->lock);
    dedup_count(d, v);
    return v;
}

void qrpc__dedup_done(qrpc__dedup *d, qrpc__dedup_ticket ticket, int status,
                      const uint8_t *reply, size_t len)
{
    dedup_client *c = ticket.client;
    dedup_entry *e = ticket.entry;
    dedup_shard *sh = dedup_shard_of(d, c->id);     /* id never changes */
    dedup_waiter *w;
    dedup_slot *s;

    pthread_mutex_lock(&sh->lock);
    w = e->waiters;
    e->waiters = NULL;
    e->state = DEDUP_ANSWERED;
    c->running--;
    qrpc__counter_add(&d->running, (uint64_t)-1);
    s = dedup_tab_find(d, &c->entries, e->seq);
    if (e->seq <= c->watermark) {
        /* acknowledged while it ran: nobody can ask for it again */
        dedup_forget(d, c, s);
        dedup_tab_shrink(d, &c->entries);
    } else {
        dedup_keep(d, s, status, reply, len);
    }
    if (c->running == 0 && c->on == &sh->parked)
        dedup_client_expire(d, sh, c);
    pthread_mutex_unlock(&sh->lock);
    /* the waiters get the real answer even when it was too large to keep */
    dedup_answer(d, w, status, reply, len);
}

uint64_t qrpc__dedup_expire(qrpc__dedup *d, uint64_t now_ns)
{
    uint64_t next = UINT64_MAX, lease = d->lim.lease_ns, at;
    dedup_shard *sh;
    dedup_client *c;
    unsigned k;

    for (k = 0; k < DEDUP_SHARDS; k++) {
        sh = &d->shard[k];
        pthread_mutex_lock(&sh->lock);
        while ((c = sh->lru.head) != NULL) {
            if (now_ns < c->last_seen || now_ns - c->last_seen < lease) {
                at = c->last_seen > UINT64_MAX - lease ? UINT64_MAX : c->last_seen + lease;
                if (at < next)
                    next = at;
                break;
            }
            if (c->running == 0) {
                dedup_client_expire(d, sh, c);
            } else {
                /* off the list, so that expiry does not look at it again */
                dedup_list_cut(c);
                dedup_list_put(&sh->parked, c);
            }
        }
        dedup_tab_shrink(d, &sh->clients);
        pthread_mutex_unlock(&sh->lock);
    }
    return next;
}

int qrpc__dedup_restore(qrpc__dedup *d, uint64_t client, uint64_t seq, int status,
                        const uint8_t *reply, size_t len, uint64_t now_ns)
{
    dedup_shard *sh = dedup_shard_of(d, client);
    qrpc__dedup_ticket ticket = { NULL, NULL };
    dedup_client *c;
    dedup_slot *s;
    int rc = 0;

    if (seq == 0)
        return QRPC_EINVAL;
    pthread_mutex_lock(&sh->lock);
    s = dedup_tab_find(d, &sh->clients, client);
    if (s == NULL) {
        /* a new client, watermark 0, as a first transmission would make it */
        if (dedup_begin_new(d, sh, client, seq, 0, false, now_ns, &ticket) != QRPC__DEDUP_RUN)
            rc = QRPC_EBUSY;
    } else {
        c = s->val;
        dedup_touch(sh, c, now_ns);
        if (seq <= c->watermark || dedup_tab_find(d, &c->entries, seq) != NULL)
            rc = QRPC_EEXIST;   /* acknowledged, or restored already */
        else if (dedup_run(d, c, seq, &ticket) != QRPC__DEDUP_RUN)
            rc = QRPC_EBUSY;
    }
    pthread_mutex_unlock(&sh->lock);
    if (rc == 0)
        qrpc__dedup_done(d, ticket, status, reply, len);    /* no waiters: answered */
    return rc;
}

qrpc__dedup_verdict qrpc__dedup_lookup(qrpc__dedup *d, uint64_t client, uint64_t seq,
                                       uint64_t now_ns, int *status, qrpc_buf *reply)
{
    dedup_shard *sh = dedup_shard_of(d, client);
    qrpc__dedup_verdict v = QRPC__DEDUP_UNKNOWN;
    dedup_client *c;
    dedup_slot *s;

    pthread_mutex_lock(&sh->lock);
    s = dedup_tab_find(d, &sh->clients, client);
    if (s != NULL) {
        c = s->val;
        dedup_touch(sh, c, now_ns);
        s = seq > c->watermark ? dedup_tab_find(d, &c->entries, seq) : NULL;
        if (s != NULL && dedup_answered(s))
            v = dedup_reply(s->val, status, reply);
    }
    pthread_mutex_unlock(&sh->lock);
    dedup_count(d, v);
    return v;
}

int qrpc__dedup_snapshot(qrpc__dedup *d, qrpc__dedup_each_fn each, void *arg)
{
    unsigned i;
    size_t j, k;
    int rc = 0;

    for (i = 0; i < DEDUP_SHARDS && rc == 0; i++) {
        dedup_shard *sh = &d->shard[i];

        pthread_mutex_lock(&sh->lock);
        for (j = 0; j < dedup_tab_cap(&sh->clients) && rc == 0; j++) {
            dedup_client *c = sh->clients.slots[j].val;

            for (k = 0; c != NULL && k < dedup_tab_cap(&c->entries) && rc == 0; k++) {
                dedup_entry *e = c->entries.slots[k].val;

                if (e != NULL && e->state == DEDUP_ANSWERED)
                    rc = each(arg, c->id, e->seq, e->status, e->reply, e->len);
            }
        }
        pthread_mutex_unlock(&sh->lock);
    }
    return rc;
}

void qrpc__dedup_stats(qrpc__dedup *d, struct qrpc__dedup_stats *out)
{
    out->clients = atomic_load(&d->clients);
    out->entries = atomic_load(&d->entries);
    out->running = (size_t)qrpc__counter_sum(&d->running);
    out->waiters = atomic_load(&d->waiters);
    out->bytes = atomic_load(&d->bytes);
    out->heap = (size_t)qrpc__counter_sum(&d->heap);
    out->duplicates = atomic_load(&d->duplicates);
    out->stale = atomic_load(&d->stale);
    out->unknown = atomic_load(&d->unknown);
    out->busy = atomic_load(&d->busy);
    out->expired = atomic_load(&d->expired);
}

uint64_t qrpc__dedup_fail_alloc(qrpc__dedup *d, uint64_t nth)
{
    return atomic_exchange(&d->fail_at, nth);
}
