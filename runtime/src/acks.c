/*
 * acks.c - a client's sequence numbers and acknowledgement watermark (see
 * acks.h).  One mutex: a call takes it twice, to get its number and to
 * report its outcome, each time for a few instructions.
 */
#include <stdlib.h>
#include <string.h>

#include "acks.h"
#include "qrpc_errors.h"

#define ACKS_MIN_BITS 256u

static size_t acks_word(const qrpc__acks *a, uint64_t seq)
{
    return (size_t)((seq & (a->nbits - 1)) / 64u);
}

static uint64_t acks_mask(uint64_t seq)
{
    return (uint64_t)1 << (seq % 64u);
}

int qrpc__acks_init(qrpc__acks *a)
{
    memset(a, 0, sizeof *a);
    a->base = a->next = 1;
    return pthread_mutex_init(&a->lock, NULL) == 0 ? 0 : QRPC_ENOMEM;
}

void qrpc__acks_fini(qrpc__acks *a)
{
    pthread_mutex_destroy(&a->lock);
    free(a->bits);
    a->bits = NULL;
}

/* Makes room for span numbers from base on; under the lock. */
static int acks_grow(qrpc__acks *a, uint64_t span)
{
    qrpc__acks bigger = *a;
    uint64_t s;

    bigger.nbits = a->nbits != 0 ? a->nbits : ACKS_MIN_BITS;
    while (bigger.nbits < span)
        bigger.nbits *= 2;
    bigger.bits = calloc(bigger.nbits / 64u, sizeof *bigger.bits);
    if (bigger.bits == NULL)
        return QRPC_ENOMEM;
    for (s = a->base; s < a->next; s++)
        if (a->bits[acks_word(a, s)] & acks_mask(s))
            bigger.bits[acks_word(&bigger, s)] |= acks_mask(s);
    free(a->bits);
    a->bits = bigger.bits;
    a->nbits = bigger.nbits;
    return 0;
}

int qrpc__acks_next(qrpc__acks *a, uint64_t *seq, uint64_t *acked)
{
    int rc = 0;

    pthread_mutex_lock(&a->lock);
    if (a->next - a->base + 1 > a->nbits)
        rc = acks_grow(a, a->next - a->base + 1);
    if (rc == 0) {
        a->bits[acks_word(a, a->next)] &= ~acks_mask(a->next);
        *seq = a->next++;
        *acked = a->base - 1;
    }
    pthread_mutex_unlock(&a->lock);
    return rc;
}

void qrpc__acks_done(qrpc__acks *a, uint64_t seq)
{
    pthread_mutex_lock(&a->lock);
    /* outside [base, next): not a call in flight; nothing to record */
    if (seq >= a->base && seq < a->next) {
        a->bits[acks_word(a, seq)] |= acks_mask(seq);
        while (a->base < a->next && (a->bits[acks_word(a, a->base)] & acks_mask(a->base))) {
            a->bits[acks_word(a, a->base)] &= ~acks_mask(a->base);
            a->base++;
        }
    }
    pthread_mutex_unlock(&a->lock);
}

uint64_t qrpc__acks_watermark(qrpc__acks *a)
{
    uint64_t w;

    pthread_mutex_lock(&a->lock);
    w = a->base - 1;
    pthread_mutex_unlock(&a->lock);
    return w;
}
