/*
 * client.c - clients and the calls made on them: qrpc_client_create(),
 * qrpc_call() and qrpc_call_async().  A call is checked against the
 * client's own view of the service (method known, oneway or not), gets its
 * deadline and sequence number, and is handed to the FrontEnd of the
 * client's destination (transport.h): "local", or the TCP FrontEnd of a
 * "host:port" that every client of that address shares.
 *
 * A remote call may be sent more than once (qrpc(3), RETRANSMISSION):
 * when an attempt gets no reply within its wait (retry_ms, doubling), or
 * its connection breaks after the request may have gone out, the same
 * request -- same client id and sequence number, flagged RETRY and naming
 * the server incarnation its first copy reached -- is sent again, after a
 * backoff when the connection broke, until the call's deadline.  The
 * server's reply cache makes the copies run at most once.  A call none of
 * whose copies can have been sent fails at once with QRPC_EUNAVAILABLE
 * instead: the caller may safely try again.  Retransmissions are sent by
 * one thread per node (started on first need), since sending may mean
 * dialling, which blocks; the known cost is that a dial that hangs (up to
 * its limit in tcp.c) holds back the node's other retransmissions.
 *
 * Client ids are drawn here too: a random 64-bit base per process
 * incarnation plus a counter, so that the server's reply cache can key on
 * them across restarts.  Every call reports its outcome to its client's
 * acknowledgement watermark (acks.c) before its completion runs, so that
 * the next request tells the server what it may forget.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "bind.h"

/* ---- client ids --------------------------------------------------------- */

static pthread_once_t client_id_once = PTHREAD_ONCE_INIT;
static atomic_uint_least64_t client_id_next;

static uint64_t client_mix(uint64_t x)      /* splitmix64's finaliser */
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9u;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

uint64_t qrpc__random64(void)
{
    struct timespec ts;
    uint64_t seed = 0;
    ssize_t got;

    do
        got = getrandom(&seed, sizeof seed, GRND_NONBLOCK);
    while (got < 0 && errno == EINTR);
    if (got == (ssize_t)sizeof seed)
        return seed;
    /*
     * No entropy yet (early boot) or no getrandom(): time, pid and ASLR
     * still make two incarnations differ, if less surely.
     */
    clock_gettime(CLOCK_REALTIME, &ts);
    return client_mix((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
           client_mix((uint64_t)getpid() << 32 ^ (uint64_t)(uintptr_t)&ts);
}

/* Also the fork child handler: a child is a new incarnation. */
static void client_id_reseed(void)
{
    atomic_store(&client_id_next, qrpc__random64());
}

static void client_id_init(void)
{
    client_id_reseed();
    /* On failure forked children would repeat their parent's ids. */
    (void)pthread_atfork(NULL, NULL, client_id_reseed);
}

static uint64_t client_id_new(void)
{
    uint64_t id;

    pthread_once(&client_id_once, client_id_init);
    do                          /* 0 is kept for "no client" */
        id = atomic_fetch_add(&client_id_next, 1);
    while (id == 0);
    return id;
}

/* ---- clients ------------------------------------------------------------ */

int qrpc_client_create(qrpc_node *n, const char *target,
                       const qrpc_service_desc *desc, qrpc_client **out)
{
    qrpc_client *c;
    int rc = 0;

    if (out == NULL)
        return QRPC_EINVAL;
    *out = NULL;
    if (n == NULL || qrpc__desc_check(desc) != 0)
        return QRPC_EINVAL;
    if (atomic_load(&n->closed))
        return QRPC_ECLOSED;

    c = calloc(1, sizeof *c);
    if (c == NULL)
        return QRPC_ENOMEM;
    if (target == NULL && n->bind != NULL)
        c->fe = NULL;           /* bound: each call picks (bind.c) */
    else if (target == NULL || strcmp(target, "local") == 0)
        c->fe = &n->local;
    else
        rc = qrpc__node_fe(n, target, &c->fe);
    if (rc != 0)
        goto fail;
    rc = qrpc__mtab_build(&c->methods, desc->methods, desc->n_methods);
    if (rc != 0)
        goto fail;
    qrpc__svc_key_init(&c->key, desc->name, strlen(desc->name), desc->version);
    rc = qrpc__acks_init(&c->acks);
    if (rc != 0) {
        qrpc__mtab_free(&c->methods);
        goto fail;
    }
    c->node = n;
    c->id = client_id_new();
    atomic_init(&c->timeout_ms, 0);
    atomic_fetch_add(&n->refs, 1);
    *out = c;
    return 0;

fail:
    free(c);
    return rc;
}

void qrpc_client_destroy(qrpc_client *c)
{
    qrpc_node *n;

    if (c == NULL)
        return;
    n = c->node;
    qrpc__bcache_fini(&c->bc);
    qrpc__mtab_free(&c->methods);
    qrpc__acks_fini(&c->acks);
    free(c);
    qrpc__node_unref(n);
}

void qrpc_client_set_timeout(qrpc_client *c, uint32_t timeout_ms)
{
    if (c != NULL)
        atomic_store_explicit(&c->timeout_ms, timeout_ms, memory_order_relaxed);
}

uint64_t qrpc_client_id(const qrpc_client *c)
{
    return c != NULL ? c->id : 0;
}

/* ---- calls -------------------------------------------------------------- */

/* The first wait of a retransmission after a broken connection, and its cap. */
#define CLIENT_BACKOFF_NS   (5u * 1000000u)
#define CLIENT_BACKOFF_MAX  (1000u * 1000000u)
/* A tail shorter than this is copied after the arguments: not worth a wait. */
#define CLIENT_TAIL_MIN     (64u << 10)
/* A bound call that cannot be sent tries this many other nodes at most. */
#define CLIENT_MAX_MOVES    64u

/*
 * What a synchronous call waits for.  A local call has completed when
 * qrpc__fe_call() returns; a remote one completes on a loop thread,
 * which signals here (and never touches w after unlocking: the caller's
 * stack frame goes away once it has seen done and taken the lock).  The
 * caller first lets the transport read the reply on its own thread, if
 * it can (fe_wait), then spins a little (config spin_us): a reply that
 * comes within either saves two trips through the scheduler.  A call with a tail
 * (qrpc_call_tail) then also waits for its op to be freed (released),
 * since a message being written may read the tail until then.
 */
typedef struct client_sync {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int status;
    atomic_bool done;
    const uint8_t *tail;        /* qrpc_call_tail()'s bytes, sent from here */
    uint32_t tail_len;
    bool armed;                 /* an op took the tail: wait for released */
    bool released;              /* under lock */
} client_sync;

static void client_sync_done(int status, qrpc_reader *results,
                             void (*fn)(void), void *arg)
{
    client_sync *w = arg;

    (void)results;              /* already in the caller's reply buffer */
    (void)fn;
    pthread_mutex_lock(&w->lock);
    w->status = status;
    atomic_store_explicit(&w->done, true, memory_order_release);
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* The op is gone: nothing reads the tail any more.  Any thread. */
static void client_sync_released(client_sync *w)
{
    pthread_mutex_lock(&w->lock);
    w->released = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/*
 * One remote call across its attempts.  Its blob holds the encoded
 * arguments; the op is the blob's first member and goes with its last
 * reference: the call's own (dropped when it completes) and one per
 * message that carries the arguments.
 */
typedef struct client_op {
    qrpc__blob blob;            /* first: see above */
    qrpc_client *client;
    qrpc__fe *fe;               /* where every copy goes (a bound call may move) */
    qrpc__call call;            /* what each attempt sends; call.arg is the op */
    qrpc__attempt att;          /* how the last attempt ended */
    qrpc_done_fn done;          /* the caller's completion */
    void (*fn)(void);
    void *arg;
    uint64_t backoff_ns;        /* before the next retransmission after a break */
    uint64_t when_ns;           /* while queued: when to send again */
    bool maybe_ran;             /* some attempt may have reached a server */
    struct client_op *next;     /* the retry queue */
    struct client_sync *rel;    /* not NULL: told when the op is freed (a tail) */
} client_op;

typedef struct qrpc__retryq {
    pthread_mutex_t lock;
    pthread_cond_t cond;        /* on CLOCK_MONOTONIC */
    client_op *head;            /* by when_ns */
    bool started, stopping;
    pthread_t thread;
} qrpc__retryq;

/*
 * Fills what both kinds of call share; the deadline starts now.  tail_len
 * bytes will follow args (qrpc_call_tail).
 */
static int client_call_init(qrpc_client *c, uint32_t method, qrpc_buf *args,
                            uint64_t tail_len, qrpc__call *call)
{
    const qrpc__mslot *m;
    uint64_t timeout, now;
    int rc;

    if (c == NULL)
        return QRPC_EINVAL;
    m = qrpc__mtab_find(&c->methods, method);
    if (m == NULL)
        return QRPC_ENOMETHOD;
    if ((uint64_t)args->len + tail_len > c->node->cfg.max_message)
        return QRPC_ETOOBIG;
    timeout = atomic_load_explicit(&c->timeout_ms, memory_order_relaxed);
    if (timeout == 0)
        timeout = c->node->cfg.timeout_ms;
    memset(call, 0, sizeof *call);
    call->svc = &c->key;
    call->method = method;
    call->flags = m->flags;
    call->client_id = c->id;
    rc = qrpc__acks_next(&c->acks, &call->seq, &call->acked);
    if (rc != 0)
        return rc;
    timeout *= 1000000u;
    now = qrpc__now_ns(c->node);
    call->deadline_ns = now > UINT64_MAX - timeout ? UINT64_MAX : now + timeout;
    call->args = args;
    return 0;
}

static void client_op_free(qrpc__blob *b)
{
    struct client_sync *rel = ((client_op *)b)->rel;

    free(b);                    /* the op: its first member */
    if (rel != NULL)
        client_sync_released(rel);
}

static void client_op_attempt_done(int status, qrpc_reader *results, void (*fn)(void),
                                   void *arg);

/*
 * The op of a remote call; takes args' storage (on error too: the
 * caller frees args in every case anyway), and, when rel is not NULL,
 * rel's tail: rel is told once the op is freed, as until then some
 * message may still read the tail.  NULL: out of memory.
 */
static client_op *client_op_new(qrpc_client *c, qrpc__fe *fe, qrpc__call *call,
                                qrpc_done_fn done, void (*fn)(void), void *arg,
                                struct client_sync *rel)
{
    client_op *op = malloc(sizeof *op);
    int32_t retry_ms = c->node->cfg.retry_ms;

    if (op == NULL)
        return NULL;
    op->fe = fe;
    atomic_init(&op->blob.refs, 1);
    op->blob.data = call->args->data;
    op->blob.len = (uint32_t)call->args->len;
    op->blob.tail = NULL;
    op->blob.tail_len = 0;
    op->blob.free_fn = client_op_free;
    op->rel = rel;
    if (rel != NULL) {
        op->blob.tail = rel->tail;
        op->blob.tail_len = rel->tail_len;
        rel->armed = true;      /* the caller's thread: read after client_start */
    }
    call->args->data = NULL;
    call->args->len = call->args->cap = 0;
    op->client = c;
    op->call = *call;
    op->call.args = NULL;
    op->call.blob = &op->blob;
    op->call.att = &op->att;
    op->call.done = client_op_attempt_done;
    op->call.fn = NULL;
    op->call.arg = op;
    memset(&op->att, 0, sizeof op->att);
    op->done = done;
    op->fn = fn;
    op->arg = arg;
    op->call.wait_ns = retry_ms < 0 ? 0 : (uint64_t)retry_ms * 1000000u;
    op->backoff_ns = CLIENT_BACKOFF_NS;
    op->when_ns = 0;
    op->maybe_ran = false;
    op->next = NULL;
    return op;
}

/*
 * The call's outcome: its sequence number is done (so the next request
 * acknowledges it), the caller learns it, and the op drops its reference.
 */
static void client_op_finish(client_op *op, int status, qrpc_reader *results)
{
    /*
     * A retransmission that did not run ("not here", busy, closing)
     * says nothing about the copies before it: the call may have run.
     * QRPC_ETIMEDOUT already says as much.
     */
    if (op->call.retry && status < 0 && status != QRPC_ETIMEDOUT)
        status = QRPC_EUNKNOWN;
    qrpc__acks_done(&op->client->acks, op->call.seq);
    op->done(status, results, op->fn, op->arg);
    qrpc__blob_unref(&op->blob);
}

static void *client_retry_main(void *arg);

/* Queues op to be sent again at when_ns; completes it if the node stops. */
static void client_op_queue(client_op *op, uint64_t when_ns)
{
    qrpc__retryq *q = op->client->node->retry;
    client_op **pp;
    int rc = 0;

    op->when_ns = when_ns;
    pthread_mutex_lock(&q->lock);
    if (q->stopping) {
        rc = QRPC_ECLOSED;
    } else if (!q->started) {
        if (pthread_create(&q->thread, NULL, client_retry_main, op->client->node) == 0)
            q->started = true;
        else
            rc = QRPC_ENOMEM;
    }
    if (rc == 0) {
        for (pp = &q->head; *pp != NULL && (*pp)->when_ns <= when_ns; pp = &(*pp)->next)
            ;
        op->next = *pp;
        *pp = op;
        if (q->head == op)
            pthread_cond_signal(&q->cond);
    }
    pthread_mutex_unlock(&q->lock);
    if (rc != 0)
        client_op_finish(op, rc == QRPC_ECLOSED ? QRPC_ECLOSED : QRPC_EUNKNOWN, NULL);
}

/* The next backoff: doubled up to its cap, taken with jitter in [b/2, b). */
static uint64_t client_op_backoff(client_op *op)
{
    uint64_t b = op->backoff_ns, r;

    op->backoff_ns = b * 2 > CLIENT_BACKOFF_MAX ? CLIENT_BACKOFF_MAX : b * 2;
    r = (op->call.seq ^ (uint64_t)(uintptr_t)op) * 0x9e3779b97f4a7c15u;
    return b / 2 + (r >> 33) % (b / 2 + 1);
}

/*
 * Points a bound op at another node offering its service, marking the
 * one it leaves down first when that one failed; false when there is
 * none (a local one would need the local path, which an op does not take).
 */
static bool client_op_repick(client_op *op, bool failed)
{
    qrpc_node *n = op->client->node;
    qrpc__fe *to;

    if (failed)
        qrpc__fe_mark_down(n, op->fe);
    if (qrpc__bind_pick(op->client, op->fe, op->call.deadline_ns, &to) != 0 ||
        to == op->fe || to == &n->local)
        return false;
    op->fe = to;
    return true;
}

/*
 * Failover of a bound call (qrpc(3), BINDING): one that was certainly
 * never sent, and an idempotent one in any case, moves to another node
 * offering the service, sent from the retry thread (which may dial).  An
 * at-most-once call that may have been delivered stays: its reply cache
 * is on the node that got it.  Returns whether op was moved and queued.
 */
static bool client_op_move(client_op *op, bool broken, bool idem)
{
    if (op->maybe_ran && !idem)
        return false;
    if (!client_op_repick(op, broken))
        return false;
    op->maybe_ran = false;      /* a new node: this is its first copy */
    op->call.incarnation = 0;
    client_op_queue(op, qrpc__now_ns(op->client->node));
    return true;
}

/*
 * An attempt ended (the transport's done, on whatever thread completes
 * it): a reply or a final error completes the call; an attempt that may
 * have reached the server and got no reply is sent again while the
 * deadline allows.
 */
static void client_op_attempt_done(int status, qrpc_reader *results, void (*fn)(void),
                                   void *arg)
{
    client_op *op = arg;
    const qrpc__attempt *a = &op->att;
    qrpc_node *n = op->client->node;
    bool idem = (op->call.flags & QRPC_METHOD_IDEMPOTENT) != 0;
    uint64_t now;

    (void)fn;
    if (!a->expired && !a->broken) {            /* an answer, or oneway handed over */
        /*
         * A copy turned away because the server is busy (its reply cache
         * full of waiting copies, say) says nothing of the first, which
         * may still be running there: ask again later.
         */
        if (status == QRPC_EBUSY && op->call.retry &&
            (now = qrpc__now_ns(n)) < op->call.deadline_ns)
            client_op_queue(op, now + client_op_backoff(op));
        else
            client_op_finish(op, status, results);
        return;
    }
    /*
     * An expired request may still be queued and go out later, so it
     * counts as sent.  The first copy that may have arrived fixes the
     * incarnation every retransmission names.
     */
    if ((a->sent || a->expired) && !op->maybe_ran) {
        op->maybe_ran = true;
        op->call.incarnation = a->peer_incarnation;
    }
    now = qrpc__now_ns(n);
    if (op->client->fe == NULL && status != QRPC_ECLOSED && now < op->call.deadline_ns &&
        client_op_move(op, a->broken, idem))
        return;
    if (status == QRPC_ECLOSED || n->cfg.retry_ms < 0 || !op->maybe_ran) {
        client_op_finish(op, status, NULL);     /* closing; no retries; never sent */
        return;
    }
    if (now >= op->call.deadline_ns) {
        client_op_finish(op, a->expired ? QRPC_ETIMEDOUT : QRPC_EUNKNOWN, NULL);
        return;
    }
    if (!idem && op->call.incarnation == 0) {
        /* which server may have it is unknown: no server would run a copy */
        client_op_finish(op, QRPC_EUNKNOWN, NULL);
        return;
    }
    if (a->expired) {
        op->call.wait_ns = op->call.wait_ns > UINT64_MAX / 2 ? UINT64_MAX
                                                             : op->call.wait_ns * 2;
        client_op_queue(op, now);
    } else {
        client_op_queue(op, now + client_op_backoff(op));
    }
}

/* Sends op again (the retry thread). */
static void client_op_resend(client_op *op)
{
    qrpc_node *n = op->client->node;
    uint64_t now = qrpc__now_ns(n);
    int rc;

    if (now >= op->call.deadline_ns) {
        client_op_finish(op, QRPC_EUNKNOWN, NULL);
        return;
    }
    /* a call moved to another node (bind.c) goes there as a first copy */
    op->call.retry = op->maybe_ran;
    op->call.acked = qrpc__acks_watermark(&op->client->acks);
    memset(&op->att, 0, sizeof op->att);
    if (op->maybe_ran && !op->client->quiet)
        qrpc__counter_add(&n->st_retransmissions, 1);
    rc = qrpc__fe_call(op->fe, &op->call);
    if (rc == 0)
        return;                 /* op may be complete and gone already */
    if (rc == QRPC_EUNAVAILABLE && op->client->fe == NULL && client_op_move(op, true, false))
        return;
    if (rc == QRPC_EUNAVAILABLE && qrpc__now_ns(n) < op->call.deadline_ns)
        client_op_queue(op, qrpc__now_ns(n) + client_op_backoff(op));   /* no connection yet */
    else
        client_op_finish(op, rc, NULL);
}

static void *client_retry_main(void *arg)
{
    qrpc_node *n = arg;
    qrpc__retryq *q = n->retry;
    client_op *op;

    pthread_mutex_lock(&q->lock);
    while (!q->stopping) {
        uint64_t now = qrpc__now_ns(n);

        op = q->head;
        if (op == NULL) {
            pthread_cond_wait(&q->cond, &q->lock);
        } else if (op->when_ns > now) {
            qrpc__cond_wait_ns(&q->cond, &q->lock, op->when_ns - now);
        } else {
            q->head = op->next;
            pthread_mutex_unlock(&q->lock);
            client_op_resend(op);
            pthread_mutex_lock(&q->lock);
        }
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

int qrpc__retry_init(qrpc_node *n)
{
    qrpc__retryq *q = calloc(1, sizeof *q);

    if (q == NULL)
        return QRPC_ENOMEM;
    if (pthread_mutex_init(&q->lock, NULL) != 0 || qrpc__cond_init_mono(&q->cond) != 0) {
        free(q);
        return QRPC_ENOMEM;
    }
    n->retry = q;
    return 0;
}

void qrpc__retry_stop(qrpc_node *n)
{
    qrpc__retryq *q = n->retry;
    client_op *list, *op;
    bool started;

    pthread_mutex_lock(&q->lock);
    q->stopping = true;
    started = q->started;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
    if (started)
        pthread_join(q->thread, NULL);
    pthread_mutex_lock(&q->lock);
    list = q->head;
    q->head = NULL;
    q->started = false;
    pthread_mutex_unlock(&q->lock);
    while ((op = list) != NULL) {
        list = op->next;
        client_op_finish(op, QRPC_ECLOSED, NULL);
    }
}

void qrpc__retry_fini(qrpc_node *n)
{
    qrpc__retryq *q = n->retry;

    if (q == NULL)
        return;
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->lock);
    free(q);
    n->retry = NULL;
}

/*
 * Starts a call: "local" runs it on this thread (never more than once,
 * nothing to retransmit); a remote one gets an op.  On 0 done runs exactly
 * once; otherwise it does not, and args has been freed or is the
 * caller's to free.
 */
static int client_start(qrpc_client *c, qrpc__fe *fe, qrpc__call *call, qrpc_done_fn done,
                        void (*fn)(void), void *arg, struct client_sync *rel)
{
    qrpc_node *n = c->node;
    client_op *op;
    size_t tries = 0;
    int rc;

    if (fe == &n->local) {
        call->done = done;
        call->fn = fn;
        call->arg = arg;
        return qrpc__fe_call(fe, call);
    }
    op = client_op_new(c, fe, call, done, fn, arg, rel);
    if (op == NULL)
        return QRPC_ENOMEM;
    if (!c->quiet)
        qrpc__counter_add(&n->st_calls, 1);
    rc = qrpc__fe_call(fe, &op->call);
    /*
     * A bound call that could not be sent tries the other nodes offering
     * the service, each once at most: nothing went out, so nothing can
     * run twice.
     */
    while (rc == QRPC_EUNAVAILABLE && c->fe == NULL && tries++ < CLIENT_MAX_MOVES &&
           client_op_repick(op, true))
        rc = qrpc__fe_call(op->fe, &op->call);
    if (rc != 0)
        qrpc__blob_unref(&op->blob);    /* the arguments go with it */
    return rc;
}

/* The FrontEnd of c's next call: its own, or for a bound client a pick. */
static int client_dest(qrpc_client *c, const qrpc__call *call, qrpc__fe **fe)
{
    if (c->fe != NULL) {
        *fe = c->fe;
        return 0;
    }
    return qrpc__bind_pick(c, NULL, call->deadline_ns, fe);
}

/* A local call's completion: its outcome is known, then the caller's runs. */
typedef struct client_local {
    qrpc_client *client;
    uint64_t seq;
    qrpc_done_fn done;
    void (*fn)(void);
    void *arg;
} client_local;

static void client_local_done(int status, qrpc_reader *results, void (*fn)(void), void *arg)
{
    client_local *cl = arg;

    (void)fn;
    qrpc__acks_done(&cl->client->acks, cl->seq);
    cl->done(status, results, cl->fn, cl->arg);
}

static void client_local_async_done(int status, qrpc_reader *results, void (*fn)(void),
                                    void *arg)
{
    client_local cl = *(client_local *)arg;

    free(arg);
    client_local_done(status, results, fn, &cl);
}

/*
 * qrpc_call() and qrpc_call_tail(): a tail of CLIENT_TAIL_MIN bytes or
 * more goes to a remote node from where it is, and the call returns once
 * no message reads it any more; a shorter one, or one for a local call,
 * is copied after args.
 */
static int client_call_sync(qrpc_client *c, uint32_t method, qrpc_buf *args,
                            const void *tail, size_t tail_len, qrpc_buf *reply)
{
    client_sync w;
    client_local cl;
    qrpc__call call;
    qrpc__fe *fe;
    size_t len;
    int rc;

    if (args == NULL)
        return QRPC_EINVAL;
    if (reply == args || (tail == NULL && tail_len != 0)) {
        rc = QRPC_EINVAL;
        goto out;
    }
    if (reply != NULL)
        reply->len = 0;
    rc = client_call_init(c, method, args, tail_len, &call);
    if (rc != 0)
        goto out;
    if (call.flags & QRPC_METHOD_ONEWAY) {
        call.reply = NULL;
    } else if (reply == NULL) {
        qrpc__acks_done(&c->acks, call.seq);    /* never started */
        rc = QRPC_EINVAL;
        goto out;
    } else {
        call.reply = reply;
    }
    rc = client_dest(c, &call, &fe);
    if (rc == 0 && (tail_len < CLIENT_TAIL_MIN || fe == &c->node->local)) {
        /* short, or dispatched in place (one run of bytes): copied */
        rc = qrpc_put_raw(args, tail, tail_len);
        tail_len = 0;
    }
    if (rc != 0) {
        qrpc__acks_done(&c->acks, call.seq);    /* never started */
        goto out;
    }
    len = args->len + tail_len;                 /* fe_call takes args */
    w.tail = tail;
    w.tail_len = (uint32_t)tail_len;            /* <= max_message: client_call_init */
    w.status = QRPC_EUNKNOWN;
    atomic_init(&w.done, false);
    w.armed = w.released = false;
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    if (fe == &c->node->local) {
        cl.client = c;
        cl.seq = call.seq;
        cl.done = client_sync_done;
        cl.fn = NULL;
        cl.arg = &w;
        rc = client_start(c, fe, &call, client_local_done, NULL, &cl, NULL);
    } else {                    /* the op reports the outcome itself */
        rc = client_start(c, fe, &call, client_sync_done, NULL, &w,
                          tail_len != 0 ? &w : NULL);
    }
    if (rc != 0)
        qrpc__acks_done(&c->acks, call.seq);    /* never started */
    if (rc == 0) {
        /* every FrontEnd completes a started call by its deadline */
        uint64_t spin = qrpc__spin_ns(c->node);

        if (fe != &c->node->local && qrpc__fe_wait(fe, len, &w.done, call.deadline_ns))
            spin = 0;           /* the transport's reading spun already */
        if (!qrpc__spin_wait(&w.done, spin)) {
            pthread_mutex_lock(&w.lock);
            while (!atomic_load(&w.done))
                pthread_cond_wait(&w.cond, &w.lock);
            pthread_mutex_unlock(&w.lock);
        } else {
            /* the completer may still hold the lock: wait until it lets go */
            pthread_mutex_lock(&w.lock);
            pthread_mutex_unlock(&w.lock);
        }
        rc = w.status;
    }
    /*
     * Started or not, an op that took the tail may still be in a
     * connection's queue (a retransmission, a message half written): the
     * tail is the caller's again only once the op is freed, which every
     * connection does when its message is written or it fails.
     */
    if (w.armed) {
        pthread_mutex_lock(&w.lock);
        while (!w.released)
            pthread_cond_wait(&w.cond, &w.lock);
        pthread_mutex_unlock(&w.lock);
    }
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);

out:
    qrpc_buf_free(args);        /* empty already if the FrontEnd took it */
    return rc;
}

int qrpc_call(qrpc_client *c, uint32_t method, qrpc_buf *args, qrpc_buf *reply)
{
    return client_call_sync(c, method, args, NULL, 0, reply);
}

int qrpc_call_tail(qrpc_client *c, uint32_t method, qrpc_buf *args, const void *tail,
                   size_t tail_len, qrpc_buf *reply)
{
    return client_call_sync(c, method, args, tail, tail_len, reply);
}

int qrpc_call_async(qrpc_client *c, uint32_t method, qrpc_buf *args,
                    qrpc_done_fn done, void (*fn)(void), void *arg)
{
    qrpc__call call;
    qrpc__fe *fe;
    client_local *cl = NULL;
    int rc;

    if (args == NULL)
        return QRPC_EINVAL;
    rc = done != NULL ? client_call_init(c, method, args, 0, &call) : QRPC_EINVAL;
    if (rc != 0)
        goto out;
    rc = client_dest(c, &call, &fe);
    if (rc != 0) {
        /*
         * Found before anything started, but after the call had its
         * sequence number: reported through done, as a started call's.
         */
        qrpc__acks_done(&c->acks, call.seq);
        done(rc, NULL, fn, arg);
        rc = 0;
    } else if (fe != &c->node->local) {
        rc = client_start(c, fe, &call, done, fn, arg, NULL);
    } else {
        /* a channel may answer a local call later: its record must outlive this frame */
        cl = malloc(sizeof *cl);
        if (cl == NULL) {
            rc = QRPC_ENOMEM;
        } else {
            cl->client = c;
            cl->seq = call.seq;
            cl->done = done;
            cl->fn = fn;
            cl->arg = arg;
            rc = client_start(c, fe, &call, client_local_async_done, NULL, cl, NULL);
        }
    }
    if (rc != 0) {
        qrpc__acks_done(&c->acks, call.seq);    /* never started */
        free(cl);
    }

out:
    qrpc_buf_free(args);
    return rc;
}
