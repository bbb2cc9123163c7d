/*
 * acks.h - a client's sequence numbers and its acknowledgement watermark:
 * the highest sequence number up to which every call of the client has
 * its outcome ("I have the replies to everything <= X"), which every
 * request carries so that the server's reply cache can forget what the
 * client will never ask again (qrpc-protocol(7), "acknowledged").
 *
 * Calls finish in any order, so the finished ones above the watermark are
 * kept in a bitmap over [base, next), base being the oldest call still in
 * flight; the bitmap grows with that span, which is bounded by the calls
 * a client issues while its oldest is in flight (its deadline at most).
 * Not a retransmission scheme: only the numbers and the watermark.
 */
#ifndef QRPC_ACKS_H
#define QRPC_ACKS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#pragma GCC visibility push(hidden)

typedef struct qrpc__acks {
    pthread_mutex_t lock;
    uint64_t base;              /* every number below it has finished */
    uint64_t next;              /* the next number to hand out */
    uint64_t *bits;             /* finished flags of [base, next), circular */
    size_t nbits;               /* a power of two, or 0 */
} qrpc__acks;

/* Numbers start at 1; 0 is no call.  QRPC_ENOMEM. */
int qrpc__acks_init(qrpc__acks *a);
void qrpc__acks_fini(qrpc__acks *a);

/*
 * Hands out the next sequence number into *seq and the watermark to send
 * with it into *acked.  QRPC_ENOMEM if the bitmap cannot grow (no number
 * is handed out then).
 */
int qrpc__acks_next(qrpc__acks *a, uint64_t *seq, uint64_t *acked);

/* Call seq has its outcome (a reply, or a final error). */
void qrpc__acks_done(qrpc__acks *a, uint64_t seq);

/* The current watermark. */
uint64_t qrpc__acks_watermark(qrpc__acks *a);

#pragma GCC visibility pop

#endif
