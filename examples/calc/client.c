/*
 * client.c - calc-client: calls a calc-server over TCP.
 *
 *   calc-client HOST:PORT
 *
 * Calls add (synchronously and asynchronously), shows an application
 * error crossing the network, and adds to the server's running total
 * with incrementBy, printing each step.  Exits 0 when every call returned
 * what it should, 1 otherwise.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>

#include "calc.h"

/* An asynchronous call's outcome; its callback runs on a runtime thread. */
typedef struct pending {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done, status;
    int32_t sum;
} pending;

static void add_done(int status, calc_Calc_add_reply *reply, void *arg)
{
    pending *p = arg;

    pthread_mutex_lock(&p->lock);
    p->status = status;
    if (status == 0)
        p->sum = reply->result;
    p->done = 1;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "calc-client: %s: %s (%s)\n", what, qrpc_strerror(rc), qrpc_err_name(rc));
    return 1;
}

int main(int argc, char **argv)
{
    pending p = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0 };
    qrpc_node *node = NULL;
    qrpc_client *calc = NULL;
    int64_t total = 0, before = 0;
    int32_t sum = 0;
    int rc, status = 1;

    if (argc != 2) {
        fprintf(stderr, "usage: calc-client HOST:PORT\n");
        return 2;
    }
    /* A node that only calls others: no listening socket. */
    rc = qrpc_node_create(NULL, &node);
    if (rc != 0)
        return fail("creating the node", rc);
    rc = calc_Calc_connect(node, argv[1], &calc);
    if (rc != 0) {
        status = fail(argv[1], rc);
        goto out;
    }
    qrpc_client_set_timeout(calc, 5000);        /* no call waits longer than 5 s */

    /* The first call opens the connection. */
    rc = calc_Calc_add(calc, 2, 40, &sum);
    if (rc != 0) {
        status = fail("add(2, 40)", rc);
        goto out;
    }
    printf("add(2, 40) = %" PRId32 "\n", sum);
    if (sum != 42)
        goto out;

    rc = calc_Calc_add(calc, INT32_MAX, 1, &sum);
    printf("add(INT32_MAX, 1) -> application error %d (%s)\n", rc,
           calc_CalcError_name((calc_CalcError)rc));
    if (rc != calc_CalcError_OVERFLOW) {
        status = fail("add(INT32_MAX, 1) should overflow", rc);
        goto out;
    }

    /* The same call, asynchronously: the callback runs when the reply comes. */
    rc = calc_Calc_add_async(calc, -8, 50, add_done, &p);
    if (rc != 0) {
        status = fail("add_async(-8, 50)", rc);
        goto out;
    }
    pthread_mutex_lock(&p.lock);
    while (!p.done)             /* the 5 s deadline bounds this wait */
        pthread_cond_wait(&p.cond, &p.lock);
    pthread_mutex_unlock(&p.lock);
    if (p.status != 0) {
        status = fail("add_async(-8, 50)", p.status);
        goto out;
    }
    printf("add_async(-8, 50) = %" PRId32 "\n", p.sum);
    if (p.sum != 42)
        goto out;

    /* The server keeps a running total across calls (and clients). */
    for (int i = 1; i <= 3; i++) {
        rc = calc_Calc_incrementBy(calc, 10 * i, &total);
        if (rc != 0) {
            status = fail("incrementBy", rc);
            goto out;
        }
        printf("incrementBy(%d) = %" PRId64 "\n", 10 * i, total);
        if (i > 1 && total != before + 10 * i) {
            fprintf(stderr, "calc-client: expected %" PRId64 "\n", before + 10 * i);
            goto out;
        }
        before = total;
    }
    printf("calc-client: all calls to %s returned what they should\n", argv[1]);
    status = 0;

out:
    qrpc_client_destroy(calc);
    qrpc_node_destroy(node);
    pthread_cond_destroy(&p.cond);
    pthread_mutex_destroy(&p.lock);
    return status;
}
