/*
 * counter.h - counters that many threads add to and few read (statistics,
 * gauges without a limit): one stripe per cache line, and each thread
 * adds to the stripe it was given, so that threads counting at once do
 * not pull one line back and forth.  A sum is exact when nobody adds
 * meanwhile.  Not for a value that a limit is checked against: that
 * needs one word and a compare-and-swap.
 */
#ifndef QRPC_COUNTER_H
#define QRPC_COUNTER_H

#include <stdatomic.h>
#include <stdint.h>

#include "rcu.h"

#pragma GCC visibility push(hidden)

#define QRPC__STRIPES 8u

/*
 * Stripes 64 bytes apart: each 8-byte value lies in a cache line of its
 * own whatever the alignment of the whole (no _Alignas, so the structs
 * holding counters need no aligned allocation).
 */
typedef struct qrpc__counter {
    struct {
        atomic_uint_least64_t v;
        char pad[64 - sizeof(atomic_uint_least64_t)];
    } s[QRPC__STRIPES];
} qrpc__counter;

/* The calling thread's stripe, given out round robin on its first use. */
/*
 * The calling thread's stripe: its RCU slot (rcu.h, given round robin on
 * first use) folded onto the stripes, so a thread keeps one of each.
 */
static inline unsigned qrpc__stripe(void)
{
    unsigned s = qrpc__rcu_tls_slot;

    if (s == 0)
        s = qrpc__rcu_slot_assign();
    return (s - 1) % QRPC__STRIPES;
}

/* Sets every stripe: the sum becomes v. */
void qrpc__counter_init(qrpc__counter *c, uint64_t v);

/* Adds n (a negated value subtracts: the sum wraps back). */
static inline void qrpc__counter_add(qrpc__counter *c, uint64_t n)
{
    atomic_fetch_add_explicit(&c->s[qrpc__stripe()].v, n, memory_order_relaxed);
}

uint64_t qrpc__counter_sum(const qrpc__counter *c);

#pragma GCC visibility pop

#endif
