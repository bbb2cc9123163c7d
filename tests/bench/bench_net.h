/*
 * bench_net.h - the network workloads' systems, as bench_net.c drives them.
 *
 * Two systems do the same work in make bench: qrpc (net_qrpc.c: the
 * generated stubs of netbench.qidl over the TCP transport) and bare
 * (net_bare.c: plain blocking sockets with TCP_NODELAY that carry only the
 * payload bytes, the physical limit qrpc is compared with).  make
 * bench-peers adds two peers, in bench_net_peers only: rpcgen (net_rpcgen.c:
 * ONC RPC from onc_netbench.x over libtirpc) and grpc (net_grpc.cc: gRPC C++
 * from netbench.proto).  Each lives in its own file so that its loops are
 * compiled on their own, as the codec systems are.  net_grpc.cc is C++,
 * hence the C linkage below.
 *
 * The small call is add(i32, i32) -> i32: 8 bytes out, 4 back.  The bulk
 * call carries `size` bytes out and 4 back.  Every function below runs in
 * the client process except serve(), which is the whole server process.
 */
#ifndef QRPC_BENCH_NET_H
#define QRPC_BENCH_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define NET_NORETURN [[noreturn]]
extern "C" {
#else
#define NET_NORETURN _Noreturn
#endif

#define NET_SMALL_REQ 8u        /* add's arguments: two i32 */
#define NET_SMALL_REP 4u        /* add's result: one i32 */
#define NET_ACK_LEN   4u        /* sink's result: one u32 */

/* The largest message either system is asked to carry (the 64 MiB call). */
#define NET_MAX_MESSAGE (128u << 20)

/* What the mixed workload measured (one run). */
typedef struct net_mixed_out {
    int n_idle, n_busy;         /* samples taken of each kind */
    uint64_t bulk_calls;        /* 64 MiB calls completed while sampling busy */
    double bulk_seconds;        /* how long the busy sampling lasted */
} net_mixed_out;

typedef struct net_sys {
    const char *system;         /* "qrpc", "bare", "rpcgen", "grpc", ... */
    /* NULL, or whether the system can run here (why not in why if not) */
    bool (*available)(char *why, size_t len);
    /*
     * The server process: listens on 127.0.0.1:0, writes its address and
     * a newline to stdout, and serves until stdin reaches end of file
     * (the driver holds the other end).  Returns the exit status.
     */
    int (*serve)(void);
    /* Client side: prepares to call the server at addr ("127.0.0.1:PORT"). */
    void (*open)(const char *addr);
    void (*close)(void);
    /* n small calls, one in flight; us[i] is call i's round trip in us. */
    void (*latency)(int n, double *us);
    /*
     * nthreads threads each with one small call in flight; the calls
     * completed during `seconds` of wall time after `warm` seconds of
     * warm-up, and the exact time they were counted over.
     */
    void (*threads)(int nthreads, double warm, double seconds, uint64_t *calls,
                    double *elapsed);
    /*
     * The same with `window` small calls in flight on one connection; NULL
     * for a system that cannot have more than one (the workload skips it).
     */
    void (*pipelined)(int window, double warm, double seconds, uint64_t *calls,
                      double *elapsed);
    /*
     * Calls carrying `size` bytes, one in flight, for at least `seconds`
     * and at least min_calls calls (after one call of warm-up).
     */
    void (*bulk)(size_t size, int min_calls, double seconds, uint64_t *calls,
                 double *elapsed);
    /*
     * n_idle small calls alone, then small calls back to back for
     * `seconds` (at most n_busy of them) while another thread streams calls
     * of bulk_size bytes back to back: on the same client and connection
     * for qrpc, on a second connection for bare.  Latencies in us.  NULL
     * for the peers: the workload skips them.
     */
    void (*mixed)(int n_idle, double *idle_us, int n_busy, double *busy_us,
                  double seconds, size_t bulk_size, net_mixed_out *out);
    /*
     * on: the small call of the functions above is the idempotent twin of
     * add (add_idem), which the server runs without its reply cache; off:
     * add again, at-most-once (the default).  NULL for a system without
     * that notion (bare and the peers): the dedup workload skips it.
     */
    void (*idempotent)(bool on);
} net_sys;

extern const net_sys net_qrpc;
extern const net_sys net_bare;
extern const net_sys net_rpcgen;    /* bench_net_peers only */
extern const net_sys net_grpc;      /* bench_net_peers only */
extern const net_sys net_qrpc_rdma_emu;     /* over the verbs emulation */
extern const net_sys net_qrpc_rdma;         /* over real verbs, with a device */

/*
 * The in-process workload: qrpc's add on a node that serves it itself
 * (target "local"), and the same addition as a plain function call through
 * a pointer.  n calls; returns a checksum of the results.
 */
uint64_t net_local_qrpc_setup(void);
uint64_t net_local_qrpc(uint64_t n);
void net_local_qrpc_teardown(void);
uint64_t net_local_direct(uint64_t n);

/*
 * The qrpc nodes' settings, from BENCH_QRPC_RCVBUF (both nodes'
 * tcp_rcvbuf), BENCH_QRPC_SPIN_US (the client's spin_us) and
 * BENCH_QRPC_BULK_LANE (its bulk_lane); 0 when unset: the defaults.
 */
uint32_t net_qrpc_rcvbuf(void);
int32_t net_qrpc_spin_us(void);
int32_t net_qrpc_bulk_lane(void);

/* Reports a failure and exits (the driver's atexit handler stops the
 * servers): a benchmark of a broken system is void. */
NET_NORETURN void net_fail(const char *system, const char *what, const char *detail);

/* Sleeps s seconds (restarted after signals). */
void net_sleep(double s);

/* A blocking socket listening on 127.0.0.1 on a free port, which *port
 * receives; fails the benchmark (net_fail) if there is none. */
int net_listen_loopback(const char *system, unsigned *port);

/*
 * The threads workload as every system runs it: nthreads threads, thread
 * i calling call(conn[i], k) back to back (k = 0, 1, ...), where conn[i]
 * is open() (called here, before the threads start; NULL open: conn[i]
 * NULL) and is handed to close() (if not NULL) once the threads are
 * joined.  The calls completed during `seconds` after `warm` seconds of
 * warm-up, and the exact time they were counted over.
 */
typedef struct net_caller {
    void *(*open)(void);
    void (*call)(void *conn, int32_t k);
    void (*close)(void *conn);
} net_caller;

void net_run_threads(const char *system, const net_caller *nc, int nthreads, double warm,
                     double seconds, uint64_t *calls, double *elapsed);
/*
 * The mixed workload's measurement under transfer: after one bulk(ctx) of
 * warm-up, a thread calls bulk(ctx) back to back while this one makes up
 * to n_busy calls call(conn, i) for at most `seconds`; fills busy_us
 * (us each) and out's n_busy, bulk_calls and bulk_seconds.
 */
void net_run_mixed(const char *system, void (*bulk)(void *ctx), void *ctx,
                   void (*call)(void *conn, int32_t k), void *conn, int n_busy,
                   double *busy_us, double seconds, net_mixed_out *out);
/* The latency workload: n calls call(conn, i), one at a time; us[i] is
 * call i's round trip in us. */
void net_run_latency(void (*call)(void *conn, int32_t k), void *conn, int n, double *us);

#ifdef __cplusplus
}
#endif

#endif
