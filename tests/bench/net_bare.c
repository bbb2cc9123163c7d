/*
 * net_bare.c - the "bare" system of the network workloads: plain C over
 * blocking TCP sockets with TCP_NODELAY, carrying only the payload bytes.
 * It is the physical limit qrpc is compared with: the same calls, the same
 * client threads, on the same loopback, with nothing but read and write.
 *
 * Each connection starts with an 8-byte hello, outside every measurement:
 * u32 request size, u32 reply size (native byte order; both ends are this
 * program).  After it the client sends requests of exactly that size and
 * the server answers each with a reply of exactly that size, in order:
 * for 8-byte requests (add) the reply is the i32 sum of the two i32s, for
 * any other size (bulk) the u32 request size.  The server reads whatever
 * the socket has, answers every whole request in it with one write, and
 * keeps the rest for the next read: a stream of small requests is answered
 * in batches, a large request is read straight into a buffer of its size
 * (the whole message lands in the server's memory, as qrpc's argument
 * does).  One server thread per connection.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
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

#define BARE_CHUNK (64u << 10)          /* read size for streams of small requests */
#define BARE_IO_TIMEOUT_S 30            /* a client blocked longer than this fails */

static void bare_fail(const char *what)
{
    net_fail("bare", what, strerror(errno));
}

static int bare_write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;

    while (n > 0) {
        ssize_t w = write(fd, b, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* -1 on error or end of file (errno 0 then). */
static int bare_read_all(int fd, void *p, size_t n)
{
    uint8_t *b = p;

    while (n > 0) {
        ssize_t r = read(fd, b, n);

        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            errno = 0;
        if (r <= 0)
            return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static void bare_nodelay(int fd)
{
    int one = 1;

    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        bare_fail("setsockopt TCP_NODELAY");
}

/* ---- the server ------------------------------------------------------------ */

static void *bare_conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    uint32_t hello[2], req, rep, k;
    uint8_t *buf = NULL, *out = NULL;
    size_t cap, have = 0, off;

    if (bare_read_all(fd, hello, sizeof hello) != 0)
        goto done;
    req = hello[0];
    rep = hello[1];
    if (req < NET_SMALL_REQ || req > NET_MAX_MESSAGE || rep != 4) {
        fprintf(stderr, "bench: bare server: bad hello (%u, %u)\n", req, rep);
        goto done;
    }
    cap = req >= BARE_CHUNK ? req : BARE_CHUNK / req * req;
    buf = malloc(cap);
    out = malloc(cap / req * rep);
    if (buf == NULL || out == NULL) {
        fprintf(stderr, "bench: bare server: out of memory\n");
        goto done;
    }
    for (;;) {
        ssize_t r = read(fd, buf + have, cap - have);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        have += (size_t)r;
        for (off = 0, k = 0; have - off >= req; off += req, k++) {
            if (req == NET_SMALL_REQ) {
                uint32_t a, b, sum;

                memcpy(&a, buf + off, 4);
                memcpy(&b, buf + off + 4, 4);
                sum = a + b;
                memcpy(out + (size_t)k * rep, &sum, 4);
            } else {
                memcpy(out + (size_t)k * rep, &req, 4);
            }
        }
        if (off > 0 && off < have)
            memmove(buf, buf + off, have - off);
        have -= off;
        if (k > 0 && bare_write_all(fd, out, (size_t)k * rep) != 0)
            goto done;
    }

done:
    free(buf);
    free(out);
    close(fd);
    return NULL;
}

static void *bare_accept_main(void *arg)
{
    int lfd = (int)(intptr_t)arg;

    for (;;) {
        pthread_attr_t attr;
        pthread_t t;
        int fd = accept(lfd, NULL, NULL);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            perror("bench: bare server: accept");
            exit(1);
        }
        bare_nodelay(fd);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, bare_conn_main, (void *)(intptr_t)fd) != 0) {
            fprintf(stderr, "bench: bare server: cannot start a thread\n");
            close(fd);
        }
        pthread_attr_destroy(&attr);
    }
    return NULL;
}

static int bare_serve(void)
{
    pthread_t t;
    char c;
    unsigned port;
    int lfd = net_listen_loopback("bare", &port);

    if (pthread_create(&t, NULL, bare_accept_main, (void *)(intptr_t)lfd) != 0)
        net_fail("bare", "server", "cannot start the accept thread");
    printf("127.0.0.1:%u\n", port);
    fflush(stdout);
    /* Until the driver goes away (or closes our stdin). */
    while (read(0, &c, 1) > 0 || errno == EINTR)
        ;
    return 0;
}

/* ---- the client ------------------------------------------------------------ */

static struct sockaddr_in bare_addr;
static int bare_small = -1;             /* the latency workload's connection */

/* A connection to the server for requests of req bytes. */
static int bare_connect(uint32_t req)
{
    struct timeval tv = { BARE_IO_TIMEOUT_S, 0 };
    uint32_t hello[2] = { req, 4 };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        bare_fail("socket");
    if (connect(fd, (struct sockaddr *)&bare_addr, sizeof bare_addr) != 0)
        bare_fail("connect");
    bare_nodelay(fd);
    /* bounded: a server that stops answering fails the benchmark */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
        bare_fail("setsockopt SO_RCVTIMEO");
    if (bare_write_all(fd, hello, sizeof hello) != 0)
        bare_fail("hello");
    return fd;
}

static void bare_open(const char *addr)
{
    unsigned port;

    if (sscanf(addr, "127.0.0.1:%u", &port) != 1 || port == 0 || port > 65535)
        net_fail("bare", "open", addr);
    memset(&bare_addr, 0, sizeof bare_addr);
    bare_addr.sin_family = AF_INET;
    bare_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bare_addr.sin_port = htons((uint16_t)port);
    bare_small = bare_connect(NET_SMALL_REQ);
}

static void bare_close(void)
{
    if (bare_small >= 0)
        close(bare_small);
    bare_small = -1;
}

/* One add(a, b) on fd: 8 bytes out, 4 back. */
static void bare_add(int fd, int32_t a, int32_t b)
{
    int32_t req[2] = { a, b }, sum;

    if (bare_write_all(fd, req, sizeof req) != 0)
        bare_fail("write");
    if (bare_read_all(fd, &sum, sizeof sum) != 0)
        bare_fail("read");
    if (sum != (int32_t)((uint32_t)a + (uint32_t)b))
        net_fail("bare", "add", "wrong sum");
}

/* ---- latency, and threads: one connection and one call in flight per thread ------------- */

static void *bare_thread_open(void)
{
    return (void *)(intptr_t)bare_connect(NET_SMALL_REQ);
}

static void bare_thread_call(void *conn, int32_t k)
{
    bare_add((int)(intptr_t)conn, k, 1);
}

static void bare_thread_close(void *conn)
{
    close((int)(intptr_t)conn);
}

static const net_caller bare_caller = { bare_thread_open, bare_thread_call,
                                        bare_thread_close };

static void bare_latency(int n, double *us)
{
    net_run_latency(bare_thread_call, (void *)(intptr_t)bare_small, n, us);
}

static void bare_threads(int nthreads, double warm, double seconds, uint64_t *calls,
                         double *elapsed)
{
    net_run_threads("bare", &bare_caller, nthreads, warm, seconds, calls, elapsed);
}

static atomic_bool bare_stop;   /* the pipelined workload's */

/* ---- pipelined: a writer and a reader thread on one connection ------------- */

typedef struct bare_pipe {
    int fd;
    uint32_t window;
    atomic_uint_least64_t sent, received;
    atomic_bool writer_done;
    atomic_int waiting;             /* the writer sleeps for credit */
    pthread_mutex_t lock;
    pthread_cond_t cond;
} bare_pipe;

static void *bare_pipe_writer(void *arg)
{
    bare_pipe *p = arg;
    int32_t *reqs = malloc((size_t)p->window * NET_SMALL_REQ);
    uint32_t i;

    if (reqs == NULL)
        net_fail("bare", "pipelined", "out of memory");
    for (i = 0; i < p->window; i++) {
        reqs[2 * i] = 1;
        reqs[2 * i + 1] = 2;
    }
    while (!atomic_load(&bare_stop)) {
        uint64_t inflight = atomic_load(&p->sent) - atomic_load(&p->received);
        uint64_t credit = p->window - inflight;

        if (credit == 0) {
            /* Dekker with the reader: waiting, then recheck, all seq_cst */
            pthread_mutex_lock(&p->lock);
            atomic_store(&p->waiting, 1);
            while (atomic_load(&p->sent) - atomic_load(&p->received) == p->window &&
                   !atomic_load(&bare_stop))
                pthread_cond_wait(&p->cond, &p->lock);
            atomic_store(&p->waiting, 0);
            pthread_mutex_unlock(&p->lock);
            continue;
        }
        /* every request the window allows, in one write */
        if (bare_write_all(p->fd, reqs, (size_t)credit * NET_SMALL_REQ) != 0)
            bare_fail("write");
        atomic_fetch_add(&p->sent, credit);
    }
    atomic_store(&p->writer_done, true);
    free(reqs);
    return NULL;
}

static void *bare_pipe_reader(void *arg)
{
    bare_pipe *p = arg;
    static _Thread_local uint8_t buf[BARE_CHUNK];
    size_t have = 0;

    /* until the writer has stopped and every request has its reply */
    while (!atomic_load(&p->writer_done) ||
           atomic_load(&p->received) != atomic_load(&p->sent)) {
        ssize_t r;
        size_t k, i;

        if (atomic_load(&p->received) == atomic_load(&p->sent)) {
            /* nothing in flight: the writer is about to send, or done */
            sched_yield();
            continue;
        }
        r = read(p->fd, buf + have, sizeof buf - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            bare_fail("read");
        have += (size_t)r;
        k = have / NET_SMALL_REP;
        for (i = 0; i < k; i++) {
            int32_t v;

            memcpy(&v, buf + i * NET_SMALL_REP, 4);
            if (v != 3)
                net_fail("bare", "pipelined", "wrong sum");
        }
        memmove(buf, buf + k * NET_SMALL_REP, have - k * NET_SMALL_REP);
        have -= k * NET_SMALL_REP;
        atomic_fetch_add(&p->received, k);
        if (atomic_load(&p->waiting)) {
            pthread_mutex_lock(&p->lock);
            pthread_cond_signal(&p->cond);
            pthread_mutex_unlock(&p->lock);
        }
    }
    return NULL;
}

static void bare_pipelined(int window, double warm, double seconds, uint64_t *calls,
                           double *elapsed)
{
    bare_pipe p;
    pthread_t wt, rt;
    uint64_t c0;
    double t0;

    memset(&p, 0, sizeof p);
    p.fd = bare_connect(NET_SMALL_REQ);
    p.window = (uint32_t)window;
    atomic_init(&p.sent, 0);
    atomic_init(&p.received, 0);
    atomic_init(&p.writer_done, false);
    atomic_init(&p.waiting, 0);
    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.cond, NULL);
    atomic_store(&bare_stop, false);
    if (pthread_create(&wt, NULL, bare_pipe_writer, &p) != 0 ||
        pthread_create(&rt, NULL, bare_pipe_reader, &p) != 0)
        net_fail("bare", "pipelined", "cannot start a thread");
    net_sleep(warm);
    c0 = atomic_load(&p.received);
    t0 = bench_now();
    net_sleep(seconds);
    *calls = atomic_load(&p.received) - c0;
    *elapsed = bench_now() - t0;
    atomic_store(&bare_stop, true);
    pthread_mutex_lock(&p.lock);
    pthread_cond_signal(&p.cond);
    pthread_mutex_unlock(&p.lock);
    pthread_join(wt, NULL);
    pthread_join(rt, NULL);
    pthread_cond_destroy(&p.cond);
    pthread_mutex_destroy(&p.lock);
    close(p.fd);
}

/* ---- bulk: size bytes out, a 4-byte acknowledgement back ------------------- */

static uint8_t *bare_message(size_t size)
{
    uint8_t *m = malloc(size);
    size_t i;

    if (m == NULL)
        net_fail("bare", "bulk", "out of memory");
    for (i = 0; i < size; i++)
        m[i] = (uint8_t)(i * 131u);
    return m;
}

static void bare_bulk_call(int fd, const uint8_t *msg, size_t size)
{
    uint32_t ack;

    if (bare_write_all(fd, msg, size) != 0)
        bare_fail("write");
    if (bare_read_all(fd, &ack, sizeof ack) != 0)
        bare_fail("read");
    if (ack != size)
        net_fail("bare", "bulk", "wrong acknowledgement");
}

static void bare_bulk(size_t size, int min_calls, double seconds, uint64_t *calls,
                      double *elapsed)
{
    uint8_t *msg = bare_message(size);
    int fd = bare_connect((uint32_t)size);
    uint64_t n = 0;
    double t0, t;

    bare_bulk_call(fd, msg, size);      /* warm-up: the server's buffer */
    t0 = bench_now();
    do {
        bare_bulk_call(fd, msg, size);
        n++;
        t = bench_now();
    } while (t - t0 < seconds || n < (uint64_t)min_calls);
    *calls = n;
    *elapsed = t - t0;
    close(fd);
    free(msg);
}

/* ---- mixed: small calls while a second connection streams ------------------ */

typedef struct bare_stream {
    int fd;
    size_t size;
    const uint8_t *msg;
} bare_stream;

static void bare_stream_call(void *ctx)
{
    bare_stream *s = ctx;

    bare_bulk_call(s->fd, s->msg, s->size);
}

static void bare_mixed(int n_idle, double *idle_us, int n_busy, double *busy_us,
                       double seconds, size_t bulk_size, net_mixed_out *out)
{
    bare_stream s;

    bare_latency(n_idle, idle_us);
    out->n_idle = n_idle;
    s.size = bulk_size;
    s.msg = bare_message(bulk_size);
    s.fd = bare_connect((uint32_t)bulk_size);
    net_run_mixed("bare", bare_stream_call, &s, bare_thread_call,
                  (void *)(intptr_t)bare_small, n_busy, busy_us, seconds, out);
    close(s.fd);
    free((void *)s.msg);
}

const net_sys net_bare = {
    .system = "bare",
    .serve = bare_serve,
    .open = bare_open,
    .close = bare_close,
    .latency = bare_latency,
    .threads = bare_threads,
    .pipelined = bare_pipelined,
    .bulk = bare_bulk,
    .mixed = bare_mixed,
    .idempotent = NULL,                 /* no reply cache to compare */
};
