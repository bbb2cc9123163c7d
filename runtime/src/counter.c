/*
 * counter.c - the striped counters of counter.h.
 */
#include "counter.h"

void qrpc__counter_init(qrpc__counter *c, uint64_t v)
{
    unsigned i;

    for (i = 0; i < QRPC__STRIPES; i++)
        atomic_init(&c->s[i].v, i == 0 ? v : 0);
}

uint64_t qrpc__counter_sum(const qrpc__counter *c)
{
    uint64_t sum = 0;
    unsigned i;

    for (i = 0; i < QRPC__STRIPES; i++)
        sum += atomic_load_explicit(&c->s[i].v, memory_order_relaxed);
    return sum;
}
