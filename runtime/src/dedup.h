/*
 * dedup.h - the server's reply cache for at-most-once calls: it decides,
 * for each request of a client (its id, a sequence number and the
 * client's acknowledgement watermark), whether the handler runs, whether
 * the request waits for a run already under way, whether it is answered
 * from the cache, or whether it is refused (stale, unknown, busy).
 *
 * The semantics (qrpc(3) will describe them to users) in short: a call
 * runs at most once per (client, seq) for as long as the cache remembers
 * the client; a duplicate of a running call waits for its one result; a
 * duplicate of an answered call gets a copy of the cached reply; a client
 * forgets nothing it has not acknowledged, and the cache keeps nothing a
 * client has acknowledged, so memory is O(clients x unacknowledged calls),
 * all of it bounded by qrpc__dedup_limits.  What it is not (in memory
 * only, the lease assumption) is told in dedup.c's first comment.
 *
 * Thread-safe: any function may be called from several threads at once,
 * but qrpc__dedup_free() only when no other call is in progress.  The
 * answer callback runs with no lock of the cache held, so it may call
 * back into the cache.
 */
#ifndef QRPC_DEDUP_H
#define QRPC_DEDUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qrpc_wire.h"

/* Internal: kept out of libqrpc.so's exported symbols. */
#pragma GCC visibility push(hidden)

typedef struct qrpc__dedup qrpc__dedup;

typedef struct qrpc__dedup_limits {
    uint64_t lease_ns;      /* a client silent this long (and with no call running) loses its state */
    size_t max_clients;     /* clients remembered at once; a new one beyond is QRPC__DEDUP_BUSY */
    size_t max_entries;     /* calls remembered per client (running or answered, not yet
                               acknowledged); beyond: BUSY */
    size_t max_total_entries;   /* the same for all clients together; 0: no limit beyond
                                   max_clients x max_entries */
    size_t max_bytes;       /* cached reply bytes in all; a reply that would exceed it is not
                               cached (a later duplicate gets QRPC_EUNKNOWN, see below) */
    size_t max_waiters;     /* duplicates waiting for running calls, in all; beyond: BUSY.
                               0 allows none: every duplicate of a running call is BUSY */
} qrpc__dedup_limits;

typedef enum qrpc__dedup_verdict {
    QRPC__DEDUP_RUN,        /* new call: run the handler, then qrpc__dedup_done(ticket) */
    QRPC__DEDUP_WAIT,       /* duplicate of a call still running: `waiter` is registered and will
                               be handed to the answer callback when it finishes */
    QRPC__DEDUP_REPLY,      /* duplicate of a finished call: *status and *reply filled */
    QRPC__DEDUP_STALE,      /* seq at or below the client's acknowledgement watermark: never run;
                               the caller answers QRPC_ESTALE */
    QRPC__DEDUP_UNKNOWN,    /* a retransmission (retry set) from a client the cache does not know
                               (its state expired, or this server never saw it): it may have run
                               before, so it is not run; the caller answers QRPC_EUNKNOWN */
    QRPC__DEDUP_BUSY        /* a limit was reached or memory ran out: not run, the call is not
                               remembered; the caller answers QRPC_EBUSY */
} qrpc__dedup_verdict;

/* What qrpc__dedup_done() needs of a RUN; opaque to callers. */
typedef struct qrpc__dedup_ticket {
    void *client;
    void *entry;
} qrpc__dedup_ticket;

/*
 * Called, with no lock of the cache held, once for each waiter when the
 * call it waits for finishes (with that call's status and reply, whether
 * or not the reply could be cached), and with QRPC_ECLOSED, NULL and 0 for
 * the waiters still registered when the cache is freed.  reply is
 * borrowed for the duration of the call.
 */
typedef void (*qrpc__dedup_answer_fn)(void *arg, void *waiter, int status,
                                      const uint8_t *reply, size_t len);

/*
 * A new, empty cache; lim is copied.  NULL when out of memory or when
 * lim or answer is NULL.
 */
qrpc__dedup *qrpc__dedup_new(const qrpc__dedup_limits *lim, qrpc__dedup_answer_fn answer,
                             void *arg);
/*
 * Frees d and everything it holds, answering every registered waiter with
 * QRPC_ECLOSED first.  The tickets of calls still running become invalid:
 * their qrpc__dedup_done() must not be called.  NULL is ignored.
 */
void qrpc__dedup_free(qrpc__dedup *d);

/*
 * One request of client `client`, sequence number `seq` (>= 1; 0 is always
 * stale), carrying the client's watermark `ack` ("I have the outcome of
 * every call <= ack"); retry: this is a retransmission.  now_ns is the
 * caller's monotonic clock (the same clock for every call on d).
 *
 * First the client's watermark becomes max(old, ack) and every answered
 * entry at or below it is forgotten (a running one stays until its done(),
 * which then forgets it at once).  Then: seq <= watermark: STALE.  An entry
 * for seq that is running: WAIT (waiter registered; several per entry
 * may be).  One that is answered: REPLY, with *status set and a copy of
 * the reply appended to *reply (normally empty; the caller frees it) --
 * or, when the reply was too large to cache, *status = QRPC_EUNKNOWN and
 * nothing appended: the call ran once and its answer cannot be repeated.
 * No entry: a client the cache does not know with retry set: UNKNOWN;
 * otherwise the client (if new) and the entry are made, running: RUN, and
 * *ticket is filled for qrpc__dedup_done().
 *
 * Every call from a known client renews its lease (last seen = now_ns).
 * An unknown client's STALE, UNKNOWN or BUSY leaves no trace.  *status and
 * *reply are touched only for REPLY, *ticket is zeroed but for RUN.
 */
qrpc__dedup_verdict qrpc__dedup_begin(qrpc__dedup *d, uint64_t client, uint64_t seq,
                                      uint64_t ack, bool retry, uint64_t now_ns, void *waiter,
                                      qrpc__dedup_ticket *ticket, int *status, qrpc_buf *reply);

/*
 * The handler of a RUN ticket finished with status and the encoded
 * results (reply, len bytes; copied if cached).  Answers every waiter of
 * the call with them.  Must be called exactly once per RUN ticket.
 */
void qrpc__dedup_done(qrpc__dedup *d, qrpc__dedup_ticket ticket, int status,
                      const uint8_t *reply, size_t len);

/*
 * Forgets the clients silent for lease_ns or longer (now_ns - last seen
 * >= lease_ns) that have no call running; returns the moment (ns) at which
 * it next has something to do, or UINT64_MAX.  A client whose lease ran
 * out while a call ran is forgotten by the done() of its last call.
 */
uint64_t qrpc__dedup_expire(qrpc__dedup *d, uint64_t now_ns);

/*
 * Puts back an answered call (the durable reply log's, after a restart):
 * client (made, with watermark 0, if new) and its entry for seq, answered
 * with status and a copy of reply, as if the call had just run; now_ns
 * starts the client's lease.  QRPC_EEXIST when seq is at or below the
 * client's watermark or has an entry already, QRPC_EBUSY when a limit or
 * memory stops it (nothing is changed then), QRPC_EINVAL for seq 0.
 */
int qrpc__dedup_restore(qrpc__dedup *d, uint64_t client, uint64_t seq, int status,
                        const uint8_t *reply, size_t len, uint64_t now_ns);

/*
 * A retransmission addressed to another server incarnation: REPLY (as
 * qrpc__dedup_begin() gives it) when an answered entry for (client, seq)
 * is held -- restored from the reply log of an earlier life, or left by
 * a copy that ran here, once -- else UNKNOWN.  It never makes an entry,
 * never runs anything, and ignores acknowledgements.
 */
qrpc__dedup_verdict qrpc__dedup_lookup(qrpc__dedup *d, uint64_t client, uint64_t seq,
                                       uint64_t now_ns, int *status, qrpc_buf *reply);

/*
 * Calls each for every answered entry (one shard at a time, under its
 * lock: each must not call into d); stops at the first nonzero return,
 * which it returns.  reply is borrowed for the call.
 */
typedef int (*qrpc__dedup_each_fn)(void *arg, uint64_t client, uint64_t seq, int status,
                                   const uint8_t *reply, size_t len);
int qrpc__dedup_snapshot(qrpc__dedup *d, qrpc__dedup_each_fn each, void *arg);

/*
 * A plain struct tag, not a typedef: the function below has the name, and
 * C gives typedefs and functions one name space.
 */
struct qrpc__dedup_stats {
    size_t clients, entries, running, waiters;
    size_t bytes;           /* reply bytes cached */
    size_t heap;            /* an estimate of all heap the cache holds: structures and replies */
    uint64_t duplicates;    /* WAIT and REPLY verdicts */
    uint64_t stale, unknown, busy;      /* those verdicts */
    uint64_t expired;       /* clients forgotten because their lease ran out */
};

/* A snapshot; exact when no other call is in progress. */
void qrpc__dedup_stats(qrpc__dedup *d, struct qrpc__dedup_stats *out);

/*
 * For the tests: the nth allocation the cache makes from now on (1: the
 * next one) fails, as if malloc had returned NULL; 0 cancels.  Returns
 * what was left of the previous countdown: 0 when its failure happened
 * (or none was set), so a test can tell whether a script reached it.
 */
uint64_t qrpc__dedup_fail_alloc(qrpc__dedup *d, uint64_t nth);

#pragma GCC visibility pop

#endif
