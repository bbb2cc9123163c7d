/*
 * rcu.c - the writer side of rcu.h: grace periods, and slot assignment.
 * The read side is static inline in rcu.h because every call runs it.
 */
#include <stdlib.h>

#include "qrpc_errors.h"
#include "rcu.h"

_Thread_local unsigned qrpc__rcu_tls_slot;

static atomic_uint rcu_next_slot;

unsigned qrpc__rcu_slot_assign(void)
{
    qrpc__rcu_tls_slot = atomic_fetch_add(&rcu_next_slot, 1) % QRPC__RCU_SLOTS + 1;
    return qrpc__rcu_tls_slot;
}

int qrpc__rcu_init(qrpc__rcu *r)
{
    int rc = QRPC_ENOMEM;
    unsigned i;

    atomic_init(&r->phase, 0);
    atomic_init(&r->waiting, 0);
    r->slots = aligned_alloc(64, QRPC__RCU_SLOTS * sizeof(qrpc__rcu_slot));
    if (r->slots == NULL)
        goto fail;
    for (i = 0; i < QRPC__RCU_SLOTS; i++) {
        atomic_init(&r->slots[i].active[0], 0);
        atomic_init(&r->slots[i].active[1], 0);
    }
    if (pthread_mutex_init(&r->gp_lock, NULL) != 0)
        goto fail_slots;
    if (pthread_mutex_init(&r->wait_lock, NULL) != 0)
        goto fail_gp;
    if (pthread_cond_init(&r->wake, NULL) != 0)
        goto fail_wait;
    return 0;

fail_wait:
    pthread_mutex_destroy(&r->wait_lock);
fail_gp:
    pthread_mutex_destroy(&r->gp_lock);
fail_slots:
    free(r->slots);
    r->slots = NULL;
fail:
    return rc;
}

void qrpc__rcu_fini(qrpc__rcu *r)
{
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->wait_lock);
    pthread_mutex_destroy(&r->gp_lock);
    free(r->slots);
    r->slots = NULL;
}

static unsigned long rcu_active(qrpc__rcu *r, unsigned phase)
{
    unsigned long sum = 0;
    unsigned i;

    for (i = 0; i < QRPC__RCU_SLOTS; i++)
        sum += atomic_load(&r->slots[i].active[phase]);
    return sum;
}

void qrpc__rcu_wake(qrpc__rcu *r)
{
    pthread_mutex_lock(&r->wait_lock);
    pthread_cond_broadcast(&r->wake);
    pthread_mutex_unlock(&r->wait_lock);
}

/*
 * Sleeps until no reader is left in phase.  waiting is set before the
 * counters are read (under wait_lock) and a reader reads waiting after its
 * decrement, so either this sees the decrement or that reader sees waiting
 * and wakes us, after we sleep: it needs wait_lock to do so.
 */
static void rcu_wait_phase(qrpc__rcu *r, unsigned phase)
{
    pthread_mutex_lock(&r->wait_lock);
    atomic_store(&r->waiting, phase + 1);
    while (rcu_active(r, phase) != 0)
        pthread_cond_wait(&r->wake, &r->wait_lock);
    atomic_store(&r->waiting, 0);
    pthread_mutex_unlock(&r->wait_lock);
}

void qrpc__rcu_synchronize(qrpc__rcu *r)
{
    int i;

    pthread_mutex_lock(&r->gp_lock);
    for (i = 0; i < 2; i++)
        rcu_wait_phase(r, atomic_fetch_add(&r->phase, 1) & 1u);
    pthread_mutex_unlock(&r->gp_lock);
}
