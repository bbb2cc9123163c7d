/*
 * demo.c - the calc example end to end in one process, bound by name
 * through an embedded master: no address to configure anywhere.
 *
 *   1. qrpc_master_start() runs a master inside this process, on a free
 *      port of 127.0.0.1;
 *   2. two server nodes serve calc.Calc and register with it;
 *   3. a client node binds to calc.Calc version 1 by name: its calls go
 *      over TCP to the servers the master lists, round robin;
 *   4. one server stops: the master drops it and the calls go on to the
 *      other one;
 *   5. a client of the client node's own calc.Calc takes the in-process
 *      path (no socket) once that node serves the service too.
 *
 * Each step checks what it shows, and the program exits 1 if anything
 * was not as it should be.
 */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "calc.h"
#include "calc_impl.h"

static int demo_fail(const char *what, int rc)
{
    fprintf(stderr, "calc-demo: %s: %s (%s)\n", what, qrpc_strerror(rc), qrpc_err_name(rc));
    return 1;
}

/* A node that listens on a free port and registers with the master. */
static int demo_node(const char *master, const char *listen, qrpc_node **out)
{
    qrpc_node_config cfg;

    qrpc_node_config_init(&cfg);
    cfg.listen = listen;
    cfg.master = master;
    return qrpc_node_create(&cfg, out);
}

/* Waits (bounded) until n's table lists `nodes` nodes. */
static int demo_wait_table(qrpc_node *n, uint32_t nodes)
{
    qrpc_binding_info bi;
    int i;

    for (i = 0; i < 500; i++) {         /* 5 s */
        if (qrpc_node_get_binding(n, &bi) == 0 && bi.nodes == nodes)
            return 0;
        nanosleep(&(struct timespec){ 0, 10 * 1000000 }, NULL);
    }
    return QRPC_ETIMEDOUT;
}

int main(void)
{
    calc_state st[3] = { { PTHREAD_MUTEX_INITIALIZER, 0 }, { PTHREAD_MUTEX_INITIALIZER, 0 },
                         { PTHREAD_MUTEX_INITIALIZER, 0 } };
    qrpc_master_config mcfg;
    qrpc_master *master = NULL;
    qrpc_node *server[2] = { NULL, NULL }, *node = NULL;
    qrpc_client *calc = NULL;
    const char *maddr;
    int32_t sum = 0;
    int64_t total = 0;
    int rc, i, status = 1;

    /* 1 */
    qrpc_master_config_init(&mcfg);
    mcfg.listen = "127.0.0.1:0";
    rc = qrpc_master_start(&mcfg, &master);
    if (rc != 0)
        return demo_fail("starting the embedded master", rc);
    maddr = qrpc_master_address(master);
    printf("embedded master on %s\n", maddr);

    /* 2 */
    for (i = 0; i < 2; i++) {
        rc = demo_node(maddr, "127.0.0.1:0", &server[i]);
        if (rc == 0)
            rc = calc_Calc_serve(server[i], &calc_handlers, &st[i]);
        if (rc != 0) {
            status = demo_fail("starting a server node", rc);
            goto out;
        }
        printf("server %d serves %s version %u on %s\n", i, calc_Calc_desc.name,
               (unsigned)calc_Calc_desc.version, qrpc_node_address(server[i]));
    }

    /* 3: a node that serves nothing yet, and a client bound by name */
    rc = demo_node(maddr, NULL, &node);
    if (rc == 0)
        rc = demo_wait_table(node, 2);
    if (rc == 0)
        rc = calc_Calc_connect(node, NULL, &calc);
    if (rc != 0) {
        status = demo_fail("binding to calc.Calc", rc);
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
    for (i = 1; i <= 4; i++) {
        rc = calc_Calc_incrementBy(calc, 10, &total);
        if (rc != 0) {
            status = demo_fail("incrementBy", rc);
            goto out;
        }
    }
    printf("4 x incrementBy(10): server 0 counted %" PRId64 ", server 1 %" PRId64 "\n",
           st[0].total, st[1].total);
    if (st[0].total != 20 || st[1].total != 20) {
        fprintf(stderr, "calc-demo: the calls should have gone round robin, 2 to each\n");
        goto out;
    }

    /* 4 */
    qrpc_node_destroy(server[1]);
    server[1] = NULL;
    printf("server 1 stopped\n");
    rc = demo_wait_table(node, 1);
    for (i = 0; rc == 0 && i < 3; i++)
        rc = calc_Calc_incrementBy(calc, 10, &total);
    if (rc != 0) {
        status = demo_fail("incrementBy after server 1 stopped", rc);
        goto out;
    }
    printf("3 x incrementBy(10) more: server 0 counted %" PRId64 "\n", st[0].total);
    if (st[0].total != 50) {
        fprintf(stderr, "calc-demo: server 0 should have counted 50\n");
        goto out;
    }

    /* 5 */
    rc = calc_Calc_serve(node, &calc_handlers, &st[2]);
    if (rc == 0)
        rc = calc_Calc_incrementBy(calc, 5, &total);
    if (rc != 0) {
        status = demo_fail("the in-process call", rc);
        goto out;
    }
    printf("once this node serves calc.Calc too, incrementBy(5) runs here: %" PRId64 "\n",
           st[2].total);
    if (st[2].total != 5 || st[0].total != 50) {
        fprintf(stderr, "calc-demo: the call should have stayed in this process\n");
        goto out;
    }
    printf("calc demo: all calls returned what they should\n");
    status = 0;

out:
    qrpc_client_destroy(calc);
    qrpc_node_destroy(node);
    qrpc_node_destroy(server[1]);
    qrpc_node_destroy(server[0]);
    qrpc_master_stop(master);
    return status;
}
