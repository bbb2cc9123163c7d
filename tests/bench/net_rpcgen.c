/*
 * net_rpcgen.c - the "rpcgen" peer of the network workloads: ONC RPC as
 * rpcgen -M generates it from onc_netbench.x (client stubs add_1 and
 * sink_1, the dispatcher netbench_1), over libtirpc's TCP transport, as a
 * C application of that stack would use it.  Only bench_net_peers (make
 * bench-peers) links it; it is not a test of libtirpc.
 *
 * The server binds a socket to 127.0.0.1:0 itself, hands it to
 * svctcp_create and registers NETBENCH with protocol 0, which keeps
 * libtirpc away from the portmapper: nothing here needs rpcbind.  One
 * thread serves every connection, one request at a time (libtirpc's server
 * side is single-threaded): a poll loop like svc_run's that also watches
 * stdin, the driver's lifeline.  libtirpc sets TCP_NODELAY on the sockets
 * it accepts.
 *
 * The client connects a socket itself (TCP_NODELAY) and wraps it with
 * clnttcp_create; a CLIENT is not thread-safe, so every thread of the
 * threads workload has its own, hence its own connection.  The latency and
 * bulk workloads share one.
 *
 * Limits of this stack, as measured: libtirpc caps the record buffers
 * (sendsz, recvsz) at 256 KiB, asked for here; longer messages travel as
 * several record fragments, so the 64 MiB argument works (opaque<> has no
 * bound), copied through those buffers on both sides and allocated afresh
 * by the server's XDR decoder for every call.  clnt_call sends one call and
 * waits for its reply, so there is no pipelining on one connection:
 * pipelined is NULL and the report says so.  mixed is NULL too.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_net.h"
#include "bench_util.h"
#include "onc_netbench.h"

/* libtirpc's cap on a transport's record buffers (__rpc_get_t_size). */
#define ONC_BUFSZ (256u << 10)

/* The dispatcher rpcgen -m generated (onc_netbench_svc.c declares no header). */
void netbench_1(struct svc_req *rqstp, SVCXPRT *transp);

static void onc_fail(const char *what)
{
    net_fail("rpcgen", what, strerror(errno));
}

static void onc_call_fail(const char *what, CLIENT *cl)
{
    net_fail("rpcgen", what, clnt_sperror(cl, "clnt_call"));
}

/* ---- the server ---------------------------------------------------------------- */

bool_t add_1_svc(addargs *argp, int *result, struct svc_req *rqstp)
{
    (void)rqstp;
    *result = (int)((unsigned)argp->a + (unsigned)argp->b);
    return TRUE;
}

bool_t sink_1_svc(sinkdata *argp, u_int *result, struct svc_req *rqstp)
{
    (void)rqstp;
    *result = argp->sinkdata_len;
    return TRUE;
}

/* The results are plain integers: nothing to free. */
int netbench_1_freeresult(SVCXPRT *transp, xdrproc_t xdr_result, caddr_t result)
{
    (void)transp;
    (void)xdr_result;
    (void)result;
    return 1;
}

static int onc_serve(void)
{
    struct pollfd *pfd = NULL;
    size_t cap = 0;
    SVCXPRT *xprt;
    unsigned port;
    int lfd = net_listen_loopback("rpcgen", &port);

    xprt = svctcp_create(lfd, ONC_BUFSZ, ONC_BUFSZ);
    if (xprt == NULL)
        net_fail("rpcgen", "server", "svctcp_create failed");
    /* protocol 0: no pmap_set, so no rpcbind */
    if (!svc_register(xprt, NETBENCH, NETBENCH_V1, netbench_1, 0))
        net_fail("rpcgen", "server", "svc_register failed");
    printf("127.0.0.1:%u\n", port);
    fflush(stdout);

    /*
     * svc_run, plus stdin: slot 0 is the lifeline, the rest a copy of
     * libtirpc's descriptors (connections come and go between polls).
     */
    for (;;) {
        size_t n = (size_t)svc_max_pollfd + 1;
        int r, ready;

        if (n > cap) {
            struct pollfd *p = realloc(pfd, n * sizeof *p);

            if (p == NULL)
                net_fail("rpcgen", "server", "out of memory");
            pfd = p;
            cap = n;
        }
        pfd[0].fd = 0;
        pfd[0].events = POLLIN;
        pfd[0].revents = 0;
        memcpy(pfd + 1, svc_pollfd, (n - 1) * sizeof *pfd);
        r = poll(pfd, (nfds_t)n, -1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            onc_fail("poll");
        ready = r;
        if (pfd[0].revents != 0) {
            char c;
            ssize_t got = read(0, &c, 1);

            if (got == 0 || (got < 0 && errno != EINTR))
                break;                  /* the driver has gone */
            ready--;
        }
        if (ready > 0)
            svc_getreq_poll(pfd + 1, ready);
    }
    svc_unregister(NETBENCH, NETBENCH_V1);
    svc_destroy(xprt);
    free(pfd);
    return 0;
}

/* ---- the client ---------------------------------------------------------------- */

static struct sockaddr_in onc_addr;
static CLIENT *onc_main;                /* latency and bulk */

/* A CLIENT on a connection of its own (closed by clnt_destroy). */
static CLIENT *onc_connect(void)
{
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CLIENT *cl;

    if (fd < 0)
        onc_fail("socket");
    if (connect(fd, (struct sockaddr *)&onc_addr, sizeof onc_addr) != 0)
        onc_fail("connect");
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        onc_fail("setsockopt TCP_NODELAY");
    cl = clnttcp_create(&onc_addr, NETBENCH, NETBENCH_V1, &fd, ONC_BUFSZ, ONC_BUFSZ);
    if (cl == NULL)
        net_fail("rpcgen", "clnttcp_create", clnt_spcreateerror("127.0.0.1"));
    if (!clnt_control(cl, CLSET_FD_CLOSE, NULL))
        net_fail("rpcgen", "clnt_control", "CLSET_FD_CLOSE refused");
    return cl;
}

static void onc_add(CLIENT *cl, int a, int b)
{
    addargs args = { a, b };
    int sum = 0;

    if (add_1(&args, &sum, cl) != RPC_SUCCESS)
        onc_call_fail("add", cl);
    if (sum != (int)((unsigned)a + (unsigned)b))
        net_fail("rpcgen", "add", "wrong sum");
}

static void onc_open(const char *addr)
{
    unsigned port;

    if (sscanf(addr, "127.0.0.1:%u", &port) != 1 || port == 0 || port > 65535)
        net_fail("rpcgen", "open", addr);
    memset(&onc_addr, 0, sizeof onc_addr);
    onc_addr.sin_family = AF_INET;
    onc_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    onc_addr.sin_port = htons((uint16_t)port);
    onc_main = onc_connect();
    onc_add(onc_main, 1, 2);
}

static void onc_close(void)
{
    if (onc_main != NULL)
        clnt_destroy(onc_main);
    onc_main = NULL;
}

/* ---- latency, and threads: a CLIENT, a connection and one call in flight per thread ------- */

static void *onc_thread_open(void)
{
    return onc_connect();
}

static void onc_thread_call(void *conn, int32_t k)
{
    onc_add(conn, k, 1);
}

static void onc_thread_close(void *conn)
{
    clnt_destroy((CLIENT *)conn);
}

static const net_caller onc_caller = { onc_thread_open, onc_thread_call, onc_thread_close };

static void onc_latency(int n, double *us)
{
    net_run_latency(onc_thread_call, onc_main, n, us);
}

static void onc_threads(int nthreads, double warm, double seconds, uint64_t *calls,
                        double *elapsed)
{
    net_run_threads("rpcgen", &onc_caller, nthreads, warm, seconds, calls, elapsed);
}

/* ---- bulk: size bytes out, an unsigned int back ------------------------------- */

static void onc_bulk_call(sinkdata *m)
{
    u_int len = 0;

    if (sink_1(m, &len, onc_main) != RPC_SUCCESS)
        onc_call_fail("sink", onc_main);
    if (len != m->sinkdata_len)
        net_fail("rpcgen", "sink", "wrong length");
}

static void onc_bulk(size_t size, int min_calls, double seconds, uint64_t *calls,
                     double *elapsed)
{
    sinkdata m;
    uint64_t n = 0;
    double t0, t;
    size_t i;

    m.sinkdata_len = (u_int)size;
    m.sinkdata_val = malloc(size);
    if (m.sinkdata_val == NULL)
        net_fail("rpcgen", "bulk", "out of memory");
    for (i = 0; i < size; i++)
        m.sinkdata_val[i] = (char)(uint8_t)(i * 131u);
    onc_bulk_call(&m);                  /* warm-up */
    t0 = bench_now();
    do {
        onc_bulk_call(&m);
        n++;
        t = bench_now();
    } while (t - t0 < seconds || n < (uint64_t)min_calls);
    *calls = n;
    *elapsed = t - t0;
    free(m.sinkdata_val);
}

const net_sys net_rpcgen = {
    .system = "rpcgen",
    .serve = onc_serve,
    .open = onc_open,
    .close = onc_close,
    .latency = onc_latency,
    .threads = onc_threads,
    .pipelined = NULL,                  /* clnt_call is synchronous */
    .bulk = onc_bulk,
    .mixed = NULL,
    .idempotent = NULL,                 /* no reply cache to compare */
};
