/*
 * core.h - the runtime's internals shared between its files: the node, the
 * services it serves, the method index, clients, the per-call context and
 * the server-side dispatch that every transport ends in.
 *
 * Not installed and not an interface: only runtime/src includes it.  The
 * transports' side is in transport.h; hooks for the tests in testing.h.
 */
#ifndef QRPC_CORE_H
#define QRPC_CORE_H

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <time.h>

#include "qrpc.h"
#include "acks.h"
#include "counter.h"
#include "rcu.h"
#include "transport.h"

/* Internal: kept out of libqrpc.so's exported symbols. */
#pragma GCC visibility push(hidden)

/* Limits on what qrpc_serve() and qrpc_client_create() accept. */
#define QRPC__MAX_METHODS (1u << 20)

/* The longest address text, "[v6 address]:port" with room to spare. */
#define QRPC__ADDR_MAX 128
#define QRPC__MASTER_MAX 1024   /* host:port, or zk:// with an ensemble and a path */

/* Limits of qrpc_node_config (qrpc(3), LIMITS). */
#define QRPC__MAX_WORKERS      1024u
#define QRPC__MIN_MESSAGE      1024u
#define QRPC__MAX_INFLIGHT     (1u << 20)
#define QRPC__MAX_DEPTH        1024u
#define QRPC__MAX_FRAME        (16u << 20)

/* ---- service identity --------------------------------------------------- */

/*
 * Which service a request is for.  name need not be NUL-terminated: the
 * TCP server will point it into the received frame.  hash is computed
 * once (qrpc__svc_key_init) by whoever builds the key: a client at create
 * time, a server per request.
 */
typedef struct qrpc__svc_key {
    const char *name;
    size_t name_len;
    uint32_t version;
    uint32_t hash;
} qrpc__svc_key;

void qrpc__svc_key_init(qrpc__svc_key *k, const char *name, size_t name_len,
                        uint32_t version);

/* Checks a desc as qrpc_serve() and qrpc_client_create() need it: QRPC_EINVAL. */
int qrpc__desc_check(const qrpc_service_desc *desc);

/* ---- method index ------------------------------------------------------- */

/*
 * An open-addressing hash table from method id to the method's position
 * in its desc, built once per service (and per client) so that a call
 * finds its method in O(1) even among thousands.  Ids come from the desc,
 * which is trusted; only lookups come from the wire, and a lookup probes
 * at most the longest run of the table, which the desc alone determines.
 */
typedef struct qrpc__mslot {
    uint32_t id;
    uint32_t flags;             /* QRPC_METHOD_* */
    uint32_t pos;               /* 1 + index in desc->methods; 0: empty slot */
} qrpc__mslot;

typedef struct qrpc__mtab {
    qrpc__mslot *slots;         /* a power of two, at least twice the methods */
    uint32_t mask;              /* slots - 1 */
    unsigned shift;             /* 32 - log2(slots) */
} qrpc__mtab;

/* QRPC_EINVAL for a duplicate id, QRPC_ENOMEM; on error t is left empty. */
int qrpc__mtab_build(qrpc__mtab *t, const qrpc_method_desc *m, size_t n);
void qrpc__mtab_free(qrpc__mtab *t);

static inline const qrpc__mslot *qrpc__mtab_find(const qrpc__mtab *t, uint32_t id)
{
    uint32_t i = (uint32_t)(id * 2654435769u) >> t->shift;    /* Fibonacci hashing */

    for (;;) {
        const qrpc__mslot *s = &t->slots[i];

        if (s->pos == 0)
            return NULL;
        if (s->id == id)
            return s;
        i = (i + 1) & t->mask;
    }
}

/* ---- the node ----------------------------------------------------------- */

/* One registration of qrpc_serve(); immutable once published. */
typedef struct qrpc__svc {
    qrpc__svc_key key;          /* name points into desc */
    const qrpc_service_desc *desc;
    const qrpc_dispatch_fn *dispatch;   /* NULL for a channel's service */
    qrpc_channel *channel;      /* qrpc_channel_open(): requests queue here */
    const void *handlers;
    void *state;
    qrpc__mtab methods;
} qrpc__svc;

/*
 * The services of a node: an open-addressing table, never changed once
 * published.  qrpc_serve() and qrpc_unserve() build a new one, swap it in
 * and free the old one after an RCU grace period.
 */
typedef struct qrpc__svctab {
    size_t mask;                /* slots - 1; at least twice count */
    size_t count;
    qrpc__svc *slot[];
} qrpc__svctab;

/* qrpc_serve() for both kinds of service: dispatch functions or a channel. */
int qrpc__serve(qrpc_node *n, const qrpc_service_desc *desc,
                const qrpc_dispatch_fn *dispatch, const void *handlers,
                void *state, qrpc_channel *channel);

/* Whether n serves k now (a bound client's first choice). */
bool qrpc__serves(qrpc_node *n, const qrpc__svc_key *k);

/* An empty table for a new node; QRPC_ENOMEM as NULL. */
qrpc__svctab *qrpc__services_new(void);
/* Frees t and every service in it; NULL is ignored. */
void qrpc__services_free(qrpc__svctab *t);

struct qrpc_node {
    qrpc_node_config cfg;       /* validated, defaults filled in */
    atomic_int closed;          /* qrpc_node_destroy() has begun */
    /*
     * One reference for the node itself and one per client: a client that
     * (wrongly) outlives qrpc_node_destroy() gets QRPC_ECLOSED instead of
     * touching freed memory, and the last reference frees the node.
     */
    atomic_uint refs;
    _Atomic(qrpc__svctab *) services;   /* read inside rcu read sections */
    qrpc__rcu rcu;
    pthread_mutex_t lock;       /* orders serve, unserve and destroy */
    /*
     * The FrontEnd of destination "local".  Network FrontEnds, one per
     * destination, will be listed beside it by the TCP transport.
     */
    qrpc__fe local;
    /* the FrontEnds of remote destinations, one per address, under fe_lock */
    pthread_mutex_t fe_lock;
    struct qrpc__fe_entry *fes;
    /* the network side (net.h): NULL until needed */
    struct qrpc__io *io;
    struct qrpc__dedup *dedup;  /* the reply cache of a serving node (dedup.h) */
    struct qrpc__dlog *dlog;    /* its durable log (dlog.h), or NULL */
    uint64_t incarnation;       /* random per node: tells a restarted peer apart */
    char address[QRPC__ADDR_MAX];   /* what it listens on, or "" */
    int spare_fd;               /* given up when out of descriptors (tcp.c) */
    uint64_t (*now)(void *arg); /* testing.h; NULL: CLOCK_MONOTONIC */
    void *now_arg;
    struct qrpc__retryq *retry; /* client.c: calls waiting to be sent again */
    struct qrpc__bind *bind;    /* bind.c: binding through a master, or NULL */
    struct qrpc__rdma *rdma;    /* rdma.c: its RDMA device, or NULL */
    char master[QRPC__MASTER_MAX];      /* cfg.master (or $QRPC_MASTER), or "" */
    /* qrpc_node_get_stats(), its clients' half (the served half is the reply cache's) */
    qrpc__counter st_calls, st_retransmissions, st_caller_reads;
};

/*
 * The queue of calls to be sent again and the thread that sends them
 * (client.c), started on first use: QRPC_ENOMEM.  stop completes every
 * call still queued with QRPC_ECLOSED and joins the thread; later
 * retransmissions complete the same way.  fini frees it.
 */
int qrpc__retry_init(qrpc_node *n);
void qrpc__retry_stop(qrpc_node *n);
void qrpc__retry_fini(qrpc_node *n);

/* One remote destination's FrontEnd; lives as long as the node. */
typedef struct qrpc__fe_entry {
    struct qrpc__fe_entry *next;
    char addr[QRPC__ADDR_MAX];
    qrpc__fe fe;
} qrpc__fe_entry;

/* The FrontEnd for addr, created on first use: QRPC_EADDR, QRPC_ENOMEM. */
int qrpc__node_fe(qrpc_node *n, const char *addr, qrpc__fe **out);

/* 64 random bits (getrandom, or time and pid when it has none). */
uint64_t qrpc__random64(void);

/* Drops one reference; the last frees the node. */
void qrpc__node_unref(qrpc_node *n);

/* CLOCK_MONOTONIC in ns. */
static inline uint64_t qrpc__mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The node's clock, in ns; deadlines are on it. */
static inline uint64_t qrpc__now_ns(const qrpc_node *n)
{
    return n->now != NULL ? n->now(n->now_arg) : qrpc__mono_ns();
}

/* How long a caller of n waiting for a reply spins first (config spin_us). */
static inline uint64_t qrpc__spin_ns(const qrpc_node *n)
{
    return n->cfg.spin_us < 0 ? 0 : (uint64_t)n->cfg.spin_us * 1000u;
}

/* Initialises c to time its waits on CLOCK_MONOTONIC: QRPC_ENOMEM. */
static inline int qrpc__cond_init_mono(pthread_cond_t *c)
{
    pthread_condattr_t ca;
    int rc;

    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    rc = pthread_cond_init(c, &ca) != 0 ? QRPC_ENOMEM : 0;
    pthread_condattr_destroy(&ca);
    return rc;
}

/*
 * Waits on c (from qrpc__cond_init_mono(), with m held) for at most
 * wait_ns; a signal, a timeout and a spurious wake-up all return.
 */
static inline void qrpc__cond_wait_ns(pthread_cond_t *c, pthread_mutex_t *m, uint64_t wait_ns)
{
    struct timespec ts;
    uint64_t t;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    t = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    t = wait_ns > UINT64_MAX - t ? UINT64_MAX : t + wait_ns;
    ts.tv_sec = (time_t)(t / 1000000000u);
    ts.tv_nsec = (long)(t % 1000000000u);
    pthread_cond_timedwait(c, m, &ts);
}

/*
 * Waits up to spin_ns for *flag to become true, yielding the CPU between
 * looks; returns whether it did.  Used before blocking on a condition
 * variable: a reply that comes within it costs no wake-up (qrpc(3),
 * spin_us).
 */
static inline bool qrpc__spin_wait(const atomic_bool *flag, uint64_t spin_ns)
{
    struct timespec ts;
    uint64_t start, t;

    if (atomic_load_explicit(flag, memory_order_acquire))
        return true;
    if (spin_ns == 0)
        return false;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    start = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    for (;;) {
        sched_yield();
        if (atomic_load_explicit(flag, memory_order_acquire))
            return true;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        t = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        if (t - start >= spin_ns)
            return false;
    }
}

/* ---- a call on the server side ------------------------------------------ */

/* The context handed to the dispatch function; lives on the dispatching stack. */
struct qrpc_ctx {
    void *state;
    uint64_t client_id;
    uint32_t method;
};

/* True while the calling thread runs a handler (of any node). */
bool qrpc__in_handler(void);

/*
 * How a request that a channel took (and answers later) is answered: the
 * transport's respond function, with ctx_len bytes of its context, which
 * the channel copies.  respond runs once, on the thread that calls
 * qrpc_send_response() (or closes the channel); it takes results.
 */
typedef struct qrpc__responder {
    void (*respond)(void *ctx, int status, qrpc_buf *results);
    const void *ctx;
    size_t ctx_len;
} qrpc__responder;

/* qrpc__dispatch(): the request went to a channel; respond comes later. */
#define QRPC__DEFERRED (-1000)

/* One request as every transport hands it to qrpc__dispatch(). */
typedef struct qrpc__request {
    const qrpc__svc_key *svc;
    uint32_t method;
    uint64_t client_id;
    uint64_t deadline_ns;       /* on qrpc__now_ns(n); UINT64_MAX: none */
    const uint8_t *args;        /* borrowed for the call; NULL if args_len is 0 */
    size_t args_len;
    /* when not NULL, a channel may take *args_owned (== args) instead of copying */
    uint8_t **args_owned;
    const qrpc__responder *resp;        /* for channels */
} qrpc__request;

/* service.c -> channel.c: queue req for ch; QRPC__DEFERRED, or an error. */
int qrpc__channel_defer(qrpc_channel *ch, const qrpc__request *req, uint32_t flags);

/*
 * Runs one request on node n, on the calling thread: finds the service by
 * name and version and the method by id, checks the deadline, makes the
 * context and calls the method's dispatch function, which decodes the
 * arguments, runs the handler and encodes the results into results.
 * results must be empty (its storage is reused).
 *
 * Returns the call's status: 0 with the encoded results in results; a
 * positive application error; QRPC_ECLOSED, QRPC_ENOSERVICE,
 * QRPC_ENOMETHOD, QRPC_ETIMEDOUT, QRPC_ETOOBIG (results over max_message)
 * or whatever negative code the dispatch function returned (QRPC_EDECODE:
 * the handler did not run).  On any status but 0 results is left empty.
 * A oneway method's results and application error are dropped: it returns
 * 0 once the handler has run.  For the service of a channel the request is
 * queued there instead and QRPC__DEFERRED returned: req->resp answers it
 * later (the oneway rule then applies in qrpc_send_response()).
 *
 * The local transport calls it from qrpc_call(); the TCP server from the
 * loop thread that read the request (work.c).  Takes no lock: an rcu read section of the node.
 */
int qrpc__dispatch(qrpc_node *n, const qrpc__request *req, qrpc_buf *results);

/* ---- clients ------------------------------------------------------------ */

/*
 * What a bound client remembers between calls (bind.c): the FrontEnds of
 * the nodes that offer its service, as of table generation gen.  Guarded
 * by the node's binding lock.
 */
typedef struct qrpc__bcache {
    uint64_t gen;               /* 0: never built */
    qrpc__fe **fes;
    size_t n, cap;
    size_t next;                /* round robin */
    bool other_versions;        /* nodes offer the name at other versions */
    uint64_t said_gen;          /* "no node offers it" was logged at this gen */
} qrpc__bcache;

struct qrpc_client {
    qrpc_node *node;            /* holds a reference */
    qrpc__fe *fe;               /* the node's FrontEnd for the destination;
                                   NULL for a bound client */
    bool quiet;                 /* the node's own (bind.c): not in its stats */
    qrpc__bcache bc;            /* a bound client's */
    qrpc__svc_key key;
    qrpc__mtab methods;         /* the client's view: flags, known ids */
    uint64_t id;
    qrpc__acks acks;            /* sequence numbers of its calls, watermark */
    atomic_uint timeout_ms;     /* 0: the node's default */
};

#pragma GCC visibility pop

#endif
