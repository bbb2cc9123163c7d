/*
 * rcu.h - read-mostly protection for a node's service table, in the manner
 * of userspace RCU: every call is a reader and pays two atomic adds on a
 * counter that its thread (almost always) has to itself; the rare writers
 * (qrpc_serve, qrpc_unserve, qrpc_node_destroy) publish a new table and
 * then wait in qrpc__rcu_synchronize() until no reader can still see the
 * old one, which they then free.
 *
 * Readers are counted per slot and per phase.  A writer flips the phase
 * and waits for the old phase's counters to drain, twice: the second flip
 * catches a reader that read the phase just before the first flip and only
 * then incremented (the classic two-phase grace period).  Readers never
 * wait.  All the atomics are sequentially consistent: on x86 that costs
 * the loads nothing, and it keeps the proof short (a reader either sees
 * the writer's new pointer or the writer sees the reader's count).
 *
 * Not a general RCU: no callbacks, no deferred reclamation.  Readers may
 * nest.  A thread must not call qrpc__rcu_synchronize() from inside a read
 * section of the same qrpc__rcu: it would wait for itself (the node
 * refuses such calls from handlers, see qrpc__in_handler()).
 */
#ifndef QRPC_RCU_H
#define QRPC_RCU_H

#include <pthread.h>
#include <stdatomic.h>

/* Internal: kept out of libqrpc.so's exported symbols. */
#pragma GCC visibility push(hidden)

/* Slots per qrpc__rcu; threads beyond this share slots, which stays correct. */
#define QRPC__RCU_SLOTS 64u

/* One cache line of counters, so that threads do not bounce each other's. */
typedef struct qrpc__rcu_slot {
    atomic_ulong active[2];     /* readers inside, per phase */
    char pad[64 - 2 * sizeof(atomic_ulong)];
} qrpc__rcu_slot;

typedef struct qrpc__rcu {
    atomic_uint phase;          /* bit 0 picks active[]; +2 per grace period */
    atomic_uint waiting;        /* 1 + the phase a writer waits on, or 0 */
    pthread_mutex_t gp_lock;    /* one grace period at a time */
    pthread_mutex_t wait_lock;  /* guards the sleep on wake */
    pthread_cond_t wake;
    qrpc__rcu_slot *slots;      /* QRPC__RCU_SLOTS, 64-byte aligned */
} qrpc__rcu;

/* What a reader must hand back to qrpc__rcu_read_unlock(). */
typedef struct qrpc__rcu_reader {
    qrpc__rcu_slot *slot;
    unsigned phase;
} qrpc__rcu_reader;

/* QRPC_ENOMEM or 0. */
int qrpc__rcu_init(qrpc__rcu *r);
/* No reader may be inside. */
void qrpc__rcu_fini(qrpc__rcu *r);
/*
 * Returns once every read section that began before the call has ended.
 * Blocks; safe from any thread that is not itself inside a read section
 * of r.
 */
void qrpc__rcu_synchronize(qrpc__rcu *r);

/* The calling thread's slot number + 1, 0 until it is first needed. */
extern _Thread_local unsigned qrpc__rcu_tls_slot;
/* Picks the calling thread's slot (round robin) and returns it + 1. */
unsigned qrpc__rcu_slot_assign(void);
/* Wakes a writer waiting in qrpc__rcu_synchronize(); the readers' slow path. */
void qrpc__rcu_wake(qrpc__rcu *r);

static inline qrpc__rcu_reader qrpc__rcu_read_lock(qrpc__rcu *r)
{
    qrpc__rcu_reader rd;
    unsigned s = qrpc__rcu_tls_slot;

    if (s == 0)
        s = qrpc__rcu_slot_assign();
    rd.slot = &r->slots[s - 1];
    rd.phase = atomic_load(&r->phase) & 1u;
    atomic_fetch_add(&rd.slot->active[rd.phase], 1);
    return rd;
}

static inline void qrpc__rcu_read_unlock(qrpc__rcu *r, qrpc__rcu_reader rd)
{
    /* Only the reader that empties a slot of the awaited phase wakes. */
    if (atomic_fetch_sub(&rd.slot->active[rd.phase], 1) == 1 &&
        atomic_load(&r->waiting) == rd.phase + 1)
        qrpc__rcu_wake(r);
}

#pragma GCC visibility pop

#endif
