/*
 * demo.c - the calc example end to end in one process: a node serves
 * calc.Calc and a client on the same node calls it through the generated
 * stubs.  The call takes the in-process path: no socket, but the same
 * encode -> dispatch -> handler -> reply -> decode steps a remote call takes.
 */
#include <inttypes.h>
#include <stdio.h>

#include "calc.h"
#include "calc_impl.h"

static int demo_fail(const char *what, int rc)
{
    fprintf(stderr, "calc-demo: %s: %s (%s)\n", what, qrpc_strerror(rc), qrpc_err_name(rc));
    return 1;
}

int main(void)
{
    calc_state state = { PTHREAD_MUTEX_INITIALIZER, 0 };
    qrpc_node *node = NULL;
    qrpc_client *calc = NULL;
    int32_t sum = 0;
    int64_t total = 0;
    int rc, status = 1;

    rc = qrpc_node_create(NULL, &node);
    if (rc != 0)
        return demo_fail("creating the node", rc);
    rc = calc_Calc_serve(node, &calc_handlers, &state);
    if (rc != 0) {
        status = demo_fail("serving calc.Calc", rc);
        goto out;
    }
    printf("serving %s version %u on this node\n", calc_Calc_desc.name,
           (unsigned)calc_Calc_desc.version);
    rc = calc_Calc_connect(node, "local", &calc);
    if (rc != 0) {
        status = demo_fail("connecting", rc);
        goto out;
    }

    rc = calc_Calc_add(calc, 2, 40, &sum);
    if (rc != 0) {
        status = demo_fail("add(2, 40)", rc);
        goto out;
    }
    printf("add(2, 40) = %" PRId32 "\n", sum);

    rc = calc_Calc_add(calc, INT32_MAX, 1, &sum);
    printf("add(INT32_MAX, 1) -> status %d: %s (application error %s)\n", rc,
           qrpc_strerror(rc), calc_CalcError_name((calc_CalcError)rc));
    if (rc != calc_CalcError_OVERFLOW) {
        status = demo_fail("add(INT32_MAX, 1) should overflow", rc);
        goto out;
    }

    for (int i = 1; i <= 3; i++) {
        rc = calc_Calc_incrementBy(calc, 10 * i, &total);
        if (rc != 0) {
            status = demo_fail("incrementBy", rc);
            goto out;
        }
        printf("incrementBy(%d) = %" PRId64 "\n", 10 * i, total);
    }
    if (total != 60) {
        fprintf(stderr, "calc-demo: expected a total of 60, got %" PRId64 "\n", total);
        goto out;
    }
    printf("calc demo: all calls returned what they should\n");
    status = 0;

out:
    qrpc_client_destroy(calc);
    qrpc_node_destroy(node);
    return status;
}
