/*
 * server.c - calc-server: serves calc.Calc over TCP.
 *
 *   calc-server [ADDR]      ADDR is host:port, default 127.0.0.1:0 (any port)
 *
 * Prints one line, "listening on HOST:PORT", once it accepts connections
 * (so that a script can read the port it got), then serves until SIGINT
 * or SIGTERM, destroys its node (the calls being served are answered
 * first) and exits 0.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "calc.h"
#include "calc_impl.h"

int main(int argc, char **argv)
{
    calc_state state = { PTHREAD_MUTEX_INITIALIZER, 0 };
    const char *listen = argc > 1 ? argv[1] : "127.0.0.1:0";
    qrpc_node_config cfg;
    qrpc_node *node = NULL;
    sigset_t stop;
    int rc, sig = 0;

    if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
        fprintf(stderr, "usage: calc-server [HOST:PORT]\n");
        return 2;
    }
    /*
     * SIGINT and SIGTERM are blocked before the node starts its threads,
     * which inherit the mask: only sigwait() below takes them.
     */
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    qrpc_node_config_init(&cfg);
    cfg.listen = listen;
    rc = qrpc_node_create(&cfg, &node);
    if (rc != 0) {
        fprintf(stderr, "calc-server: cannot listen on %s: %s\n", listen, qrpc_strerror(rc));
        return 1;
    }
    rc = calc_Calc_serve(node, &calc_handlers, &state);
    if (rc != 0) {
        fprintf(stderr, "calc-server: serving calc.Calc: %s\n", qrpc_strerror(rc));
        qrpc_node_destroy(node);
        return 1;
    }
    printf("listening on %s\n", qrpc_node_address(node));
    fflush(stdout);

    while (sigwait(&stop, &sig) != 0)
        ;
    fprintf(stderr, "calc-server: %s: stopping\n", strsignal(sig));
    /* answers the calls in progress; no handler runs after it returns */
    qrpc_node_destroy(node);
    fprintf(stderr, "calc-server: stopped with a total of %lld\n", (long long)state.total);
    pthread_mutex_destroy(&state.lock);
    return 0;
}
