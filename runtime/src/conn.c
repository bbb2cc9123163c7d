/*
 * conn.c - one connection between two nodes: its send queue and writer,
 * its reader's callbacks, and (for connections we dialled) the calls
 * waiting for replies on it.
 *
 * Sending, as the original design has it: a sender pushes its message on
 * a lock-free multi-producer queue and, if no thread is writing, becomes
 * the writer and sends everything queued, gathering frames into one
 * writev; otherwise it returns at once.  Unlike the original, a large
 * message is not handed to a temporary thread: the writer cuts every
 * message into frames and takes frames from the messages in turn, so a
 * 64 MiB argument holds a small call back by one frame at most.  A write
 * that would block leaves the writer role to the node's loop (io.c),
 * which resumes on EPOLLOUT.  No thread is ever created per message.
 * Senders that know more is coming (an asynchronous call behind others,
 * a reply while requests wait to run) queue without writing, and one
 * sendmsg then carries them all.
 *
 * Failure honesty: the writer marks a request sent (under the lock of the
 * pending table) before the writev that may carry its first byte, and a
 * failing connection is shut down before its pending calls are looked at.
 * So a call found unmarked then was never sent (QRPC_EUNAVAILABLE), and
 * every other gets QRPC_EUNKNOWN: it may have run.
 *
 * Threads: the reader belongs to the thread that owns the connection
 * (io_lock, see io.c): a loop thread, or a synchronous caller reading its
 * own reply (conn_help); the writer state to whichever thread holds
 * `writing`; the pending table and the deadline heap are under `lock`.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "net.h"

#define CONN_IOV_MAX     64     /* iovecs in one writev */
#define CONN_FRAME_IOV   3      /* a frame's: header, body, the body's tail */
#define CONN_BATCH_BYTES (256u << 10)   /* payload bytes in one writev */
#define CONN_READ_CHUNK  (256u << 10)
#define CONN_WINDOW_MIN  (16u << 10)    /* body bytes read in place, not copied */
#define CONN_HDR_READ    512u   /* a read after one in place: the next headers */
#define CONN_BIG_JOB     (64u << 10)    /* requests run after the smaller ones */
/*
 * How long a synchronous caller reads its own connection (conn_help)
 * before it leaves that to the loop and sleeps: a small call's round
 * trip, with room to spare.  Bounded, since while it reads, others'
 * replies complete on its thread and a retransmission of its call may
 * have gone to another connection.
 */
#define CONN_HELP_NS     (2u * 1000000u)

/* One frame of the current writev batch. */
typedef struct conn_frame {
    qrpc__omsg *msg;
    uint8_t hdr[QRPC__FRAME_HDR];   /* a DATA frame's header */
    int iov_end;                /* index after this frame's last iovec */
} conn_frame;

struct qrpc__conn {
    qrpc_node *node;
    int fd;                     /* the socket, or the pipe's descriptor */
    const qrpc__pipe_ops *pops; /* NULL: fd is a socket; else the pipe's ops ... */
    void *pipe;                 /* ... and the pipe */
    qrpc__conn_role role;
    char peer[64];
    atomic_uint refs;
    atomic_bool failing;        /* qrpc__conn_fail() has begun (runs once) */
    atomic_bool dead;

    /*
     * The loop's registration (io.c, edge-triggered): the thread that
     * epoll gave the connection to owns it, and so its reader, until it
     * lets go; an event that came meanwhile, or a writer waiting for room,
     * sets rearm, and the owner re-arms the fd when it lets go.
     */
    pthread_mutex_t io_lock;
    bool owned;                 /* under io_lock */
    bool helped;                /* ... by a synchronous caller (conn_help) */
    bool rearm;                 /* under io_lock */
    uint64_t io_key;

    /* the owning loop thread's */
    qrpc__rx *rx;
    /*
     * Slow-peer detection: when the frame now being read began, and the
     * bytes read since.  A full frame's worth of bytes means some frame
     * completed, which restarts the clock; one byte a second does not.
     */
    uint64_t frame_start_ns;
    uint64_t frame_bytes;
    bool hello_seen;
    /* requests of the current read, run together once it is over: small
     * ones first, as large ones take long to decode (CONN_BIG_JOB) */
    qrpc__job *jobs_head, *jobs_tail;
    qrpc__job *big_head, *big_tail;
    uint64_t read_ns;           /* the clock when the read began */

    /* what the peer's HELLO said; read by writers */
    atomic_uint peer_max_frame;
    atomic_uint peer_max_message;
    atomic_uint peer_max_inflight;
    atomic_uint_least64_t peer_incarnation;     /* 0 until the HELLO */
    atomic_bool peer_hello;     /* the HELLO has come: the limits above are the peer's */

    /*
     * Since when a write has found no room, with no byte taken since
     * (0: writing freely): a peer that reads nothing for stall_timeout_ms
     * is dropped, as one that sends nothing mid-frame is, so that what we
     * queued for it (and the callers' tails) does not wait for ever.
     */
    atomic_uint_least64_t blocked_ns;

    /* the send queue: a Treiber stack the writer empties in one exchange */
    _Atomic(qrpc__omsg *) queue;
    atomic_int writing;
    atomic_bool flush_queued;   /* on the loop's flush list */

    /* the writer's: messages being sent (round robin) and the batch */
    qrpc__omsg *ring;           /* circular, singly linked through next */
    /* the last conn_fill kept a message of several frames back for the
     * peer's HELLO, or found one over the peer's max_message */
    bool held, refusals;
    /* messages of several frames started and not ended, and their bodies'
     * bytes: bounded by the peer's max_inflight and max_message */
    uint32_t mf_count;
    uint64_t mf_bytes;
    struct iovec iov[CONN_IOV_MAX];
    int iov_n, iov_pos;
    conn_frame frames[CONN_IOV_MAX / 2];
    int f_n, f_pos;

    /* calls waiting for replies (client role), under lock */
    pthread_mutex_t lock;
    qrpc__pcall **ptab;
    uint32_t pmask;
    uint32_t pcount;
    qrpc__pcall **heap;
    size_t heap_n, heap_cap;
    atomic_uint next_stream;

    /* requests being served (server role) */
    atomic_uint inflight;
};

static const qrpc__rx_ops conn_rx_ops;

/*
 * The writer role (`writing`): CONN_IDLE, CONN_WRITING (a thread holds it),
 * or CONN_HANDED (the holder found the socket full and left its batch to
 * the I/O thread).  Taking the role is always a compare-and-swap from
 * idle, so nobody can overwrite a hand-over; release and acquire make the
 * batch state the last holder wrote visible to the next.
 */
enum { CONN_IDLE = 0, CONN_WRITING = 1, CONN_HANDED = 2 };

/* ---- references --------------------------------------------------------- */

static void conn_omsg_free(qrpc__omsg *m)
{
    if (m->blob != NULL)
        qrpc__blob_unref(m->blob);      /* body points into it */
    else
        free(m->body);
    free(m);
}

static void conn_free_list(qrpc__omsg *m)
{
    while (m != NULL) {
        qrpc__omsg *next = m->next;

        conn_omsg_free(m);
        m = next;
    }
}

static void conn_free_ring(qrpc__conn *c)
{
    qrpc__omsg *m, *next;

    if (c->ring == NULL)
        return;
    m = c->ring->next;
    c->ring->next = NULL;       /* break the circle */
    for (; m != NULL; m = next) {
        next = m->next;
        conn_omsg_free(m);
    }
    c->ring = NULL;
}

void qrpc__conn_ref(qrpc__conn *c)
{
    atomic_fetch_add(&c->refs, 1);
}

void qrpc__conn_unref(qrpc__conn *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    if (c->pops != NULL)
        c->pops->p_close(c->pipe);
    else if (c->fd >= 0)
        close(c->fd);
    qrpc__rx_free(c->rx);
    conn_free_list(atomic_load(&c->queue));
    conn_free_ring(c);
    free(c->ptab);
    free(c->heap);
    pthread_mutex_destroy(&c->io_lock);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

bool qrpc__conn_dead(const qrpc__conn *c)
{
    return atomic_load(&c->dead);
}

/* ---- pending calls: a hash table by stream and a heap by deadline ---------- */

/* When an attempt stops waiting: wait_ns from now, never past the call's deadline. */
static inline uint64_t conn_attempt_deadline(uint64_t now, uint64_t wait_ns,
                                             uint64_t call_deadline_ns)
{
    return wait_ns != 0 && call_deadline_ns > now && wait_ns < call_deadline_ns - now
           ? now + wait_ns : call_deadline_ns;
}

static int conn_ptab_grow(qrpc__conn *c)
{
    uint32_t ncap = c->pmask ? (c->pmask + 1) * 2 : 64, i;
    qrpc__pcall **nt = calloc(ncap, sizeof *nt);

    if (nt == NULL)
        return QRPC_ENOMEM;
    for (i = 0; c->ptab != NULL && i <= c->pmask; i++) {
        qrpc__pcall *p = c->ptab[i], *next;

        for (; p != NULL; p = next) {
            next = p->hnext;
            p->hnext = nt[p->stream & (ncap - 1)];
            nt[p->stream & (ncap - 1)] = p;
        }
    }
    free(c->ptab);
    c->ptab = nt;
    c->pmask = ncap - 1;
    return 0;
}

static qrpc__pcall *conn_ptab_find(qrpc__conn *c, uint32_t stream)
{
    qrpc__pcall *p;

    if (c->ptab == NULL)
        return NULL;
    for (p = c->ptab[stream & c->pmask]; p != NULL; p = p->hnext)
        if (p->stream == stream)
            return p;
    return NULL;
}

static void conn_ptab_remove(qrpc__conn *c, qrpc__pcall *pc)
{
    qrpc__pcall **pp = &c->ptab[pc->stream & c->pmask];

    while (*pp != pc)
        pp = &(*pp)->hnext;
    *pp = pc->hnext;
    c->pcount--;
}

static void conn_heap_swap(qrpc__conn *c, size_t a, size_t b)
{
    qrpc__pcall *t = c->heap[a];

    c->heap[a] = c->heap[b];
    c->heap[b] = t;
    c->heap[a]->heap_pos = a;
    c->heap[b]->heap_pos = b;
}

static void conn_heap_up(qrpc__conn *c, size_t i)
{
    while (i > 0 && c->heap[(i - 1) / 2]->deadline_ns > c->heap[i]->deadline_ns) {
        conn_heap_swap(c, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void conn_heap_down(qrpc__conn *c, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;

        if (l < c->heap_n && c->heap[l]->deadline_ns < c->heap[m]->deadline_ns)
            m = l;
        if (r < c->heap_n && c->heap[r]->deadline_ns < c->heap[m]->deadline_ns)
            m = r;
        if (m == i)
            return;
        conn_heap_swap(c, i, m);
        i = m;
    }
}

static void conn_heap_remove(qrpc__conn *c, qrpc__pcall *pc)
{
    size_t i = pc->heap_pos;

    c->heap_n--;
    if (i == c->heap_n)
        return;
    c->heap[i] = c->heap[c->heap_n];
    c->heap[i]->heap_pos = i;
    conn_heap_up(c, i);
    conn_heap_down(c, c->heap[i]->heap_pos);
}

/* Adds pc to the table and the heap (lock held): QRPC_ENOMEM. */
static int conn_pending_add(qrpc__conn *c, qrpc__pcall *pc)
{
    if ((c->pcount + 1) * 2 > c->pmask + 1 && conn_ptab_grow(c) != 0)
        return QRPC_ENOMEM;
    if (c->heap_n == c->heap_cap) {
        size_t ncap = c->heap_cap ? c->heap_cap * 2 : 64;
        qrpc__pcall **nh = realloc(c->heap, ncap * sizeof *nh);

        if (nh == NULL)
            return QRPC_ENOMEM;
        c->heap = nh;
        c->heap_cap = ncap;
    }
    pc->hnext = c->ptab[pc->stream & c->pmask];
    c->ptab[pc->stream & c->pmask] = pc;
    c->pcount++;
    pc->heap_pos = c->heap_n;
    c->heap[c->heap_n++] = pc;
    conn_heap_up(c, pc->heap_pos);
    return 0;
}

/* Removes and returns the call of stream (lock held), or NULL. */
static qrpc__pcall *conn_pending_take(qrpc__conn *c, uint32_t stream)
{
    qrpc__pcall *pc = conn_ptab_find(c, stream);

    if (pc != NULL) {
        conn_ptab_remove(c, pc);
        conn_heap_remove(c, pc);
    }
    return pc;
}

/* How a call ended without a reply, for its attempt record (transport.h). */
enum { CONN_REPLIED, CONN_EXPIRED, CONN_BROKEN };

/* Completes a call and frees it.  body (malloc'd, may be NULL) is taken. */
static void conn_complete(qrpc__conn *c, qrpc__pcall *pc, int status,
                          uint8_t *body, uint32_t len, int how)
{
    qrpc_reader r;

    if (pc->att != NULL && how != CONN_REPLIED) {
        pc->att->sent = pc->sent;
        pc->att->expired = how == CONN_EXPIRED;
        pc->att->broken = how == CONN_BROKEN;
        pc->att->peer_incarnation = atomic_load(&c->peer_incarnation);
    }
    if (status != 0) {
        free(body);
        pc->done(status, NULL, pc->fn, pc->arg);
    } else if (pc->reply != NULL) {
        /* the caller's buffer takes the body as it is: no copy */
        free(pc->reply->data);
        pc->reply->data = body;
        pc->reply->len = len;
        pc->reply->cap = len;
        qrpc_reader_init(&r, body, len);
        r.max_depth = c->node->cfg.max_depth;
        pc->done(0, &r, pc->fn, pc->arg);
    } else {
        qrpc_reader_init(&r, body, len);
        r.max_depth = c->node->cfg.max_depth;
        pc->done(0, &r, pc->fn, pc->arg);
        free(body);
    }
    free(pc);
}

/* ---- failure ---------------------------------------------------------------- */

void qrpc__conn_fail(qrpc__conn *c, int may_have_run, const char *why)
{
    qrpc__pcall *list = NULL, *pc, *next;
    uint32_t i;

    if (atomic_exchange(&c->failing, true))
        return;
    /*
     * Out of epoll before anyone can see `dead`: the loop drops its
     * reference to a dead connection, so once it could see dead, no later
     * epoll_wait may return this connection again (and one returned
     * before finds its key gone: io.c).
     */
    qrpc__io_del(c->node, c->fd);
    /*
     * A pipe is shut before anyone can see `dead`: a writer that sees it
     * frees its messages, whose bytes the pipe's peer may still be reading
     * (rdma.c's zero-copy path) until the shutdown.
     */
    if (c->pops != NULL)
        c->pops->p_shutdown(c->pipe);
    atomic_store(&c->dead, true);
    /*
     * Logged once no new call can pick c (they look at dead), so a call
     * made after the line is seen dials afresh.
     */
    if (why != NULL)
        qrpc__log(c->node, "closing connection %s %s: %s",
                  c->role == QRPC__CONN_CLIENT ? "to" : "from", c->peer, why);
    /* After this no write can carry anything (see the top of the file). */
    if (c->pops == NULL)
        shutdown(c->fd, SHUT_RDWR);
    /*
     * A batch left to the loop would wait for an EPOLLOUT that no longer
     * comes (the fd is out of epoll): its messages go now (conn_drain).
     * A writer at work sees dead itself.
     */
    qrpc__conn_on_writable(c);
    pthread_mutex_lock(&c->lock);
    for (i = 0; c->ptab != NULL && i <= c->pmask; i++) {
        for (pc = c->ptab[i]; pc != NULL; pc = next) {
            next = pc->hnext;
            pc->hnext = list;
            list = pc;
        }
        c->ptab[i] = NULL;
    }
    c->pcount = 0;
    c->heap_n = 0;
    pthread_mutex_unlock(&c->lock);
    for (pc = list; pc != NULL; pc = next) {
        next = pc->hnext;
        conn_complete(c, pc, pc->sent ? may_have_run : QRPC_EUNAVAILABLE, NULL, 0,
                      CONN_BROKEN);
    }
}

/* ---- the loop's registration -------------------------------------------------- */

/*
 * Sets the registration (io_lock held): reading unless a caller reads c
 * itself, and room to write while a batch waits for it.  A pipe's
 * descriptor tells room as a read event (conn_want_write).
 */
static void conn_rearm(qrpc__conn *c)
{
    bool write = c->pops == NULL && atomic_load(&c->writing) == CONN_HANDED;

    if (!atomic_load(&c->dead))
        qrpc__io_rearm(c->node, c->fd, c->io_key, !c->helped, write);
}

bool qrpc__conn_own(qrpc__conn *c)
{
    bool ok;

    pthread_mutex_lock(&c->io_lock);
    ok = !c->owned;
    if (ok)
        c->owned = true;
    else
        c->rearm = true;        /* the owner may have read before this came */
    pthread_mutex_unlock(&c->io_lock);
    return ok;
}

void qrpc__conn_disown(qrpc__conn *c)
{
    pthread_mutex_lock(&c->io_lock);
    c->owned = false;
    if (c->rearm)
        conn_rearm(c);
    c->rearm = false;
    pthread_mutex_unlock(&c->io_lock);
}

/*
 * A writer found the socket full and handed its batch to the loop: ask
 * epoll for room, which also reports room that came before the hand-over
 * (now, or when the loop thread that owns c lets go; a caller reading c
 * itself does not write, so not then).
 */
static void conn_want_write(qrpc__conn *c)
{
    /* a pipe's descriptor says nothing about room unless asked to */
    if (c->pops != NULL)
        c->pops->p_want_write(c->pipe);
    pthread_mutex_lock(&c->io_lock);
    if (c->owned && !c->helped)
        c->rearm = true;
    else
        conn_rearm(c);
    pthread_mutex_unlock(&c->io_lock);
}

/* ---- the writer ----------------------------------------------------------------- */

static bool conn_take_role(qrpc__conn *c)
{
    int idle = CONN_IDLE;

    /* sequentially consistent: see the end of conn_drain() */
    return atomic_compare_exchange_strong_explicit(&c->writing, &idle, CONN_WRITING,
                                                   memory_order_seq_cst,
                                                   memory_order_seq_cst);
}

/*
 * Gives up the role, then looks once more: true when a message came
 * meanwhile and the role is ours again.  Sequentially consistent, store
 * and look: with a release store the look could pass it (x86 lets a load
 * overtake an earlier store), and a sender that pushed meanwhile and still
 * saw the role taken would leave its message queued with no writer at all.
 */
static bool conn_let_go(qrpc__conn *c)
{
    bool held = c->held;        /* read while the role is still ours */

    atomic_store(&c->writing, CONN_IDLE);
    /* a HELLO that came meanwhile found the role taken (conn_on_hello) */
    return (atomic_load(&c->queue) != NULL || (held && atomic_load(&c->peer_hello))) &&
           conn_take_role(c);
}

static void conn_push(qrpc__conn *c, qrpc__omsg *m)
{
    qrpc__omsg *head = atomic_load_explicit(&c->queue, memory_order_relaxed);

    do
        m->next = head;
    while (!atomic_compare_exchange_weak_explicit(&c->queue, &head, m,
                                                  memory_order_seq_cst,
                                                  memory_order_relaxed));
}

/* Moves the queued messages, oldest first, to the end of the ring. */
static void conn_take_queue(qrpc__conn *c)
{
    qrpc__omsg *lifo = atomic_exchange_explicit(&c->queue, NULL, memory_order_acquire);
    qrpc__omsg *fifo = NULL, *last;

    if (lifo == NULL)
        return;
    last = lifo;
    while (lifo != NULL) {
        qrpc__omsg *next = lifo->next;

        lifo->next = fifo;
        fifo = lifo;
        lifo = next;
    }
    /* fifo .. last, oldest first; splice after the ring's tail */
    if (c->ring == NULL) {
        last->next = fifo;
    } else {
        last->next = c->ring->next;
        c->ring->next = fifo;
    }
    c->ring = last;
}

/*
 * The iovecs of the next chunk bytes of m's body, from body_off: what of
 * them lies in the owned part, then what lies in the tail.
 */
static void conn_body_iov(qrpc__conn *c, const qrpc__omsg *m, uint32_t chunk)
{
    uint32_t flat = m->body_len - m->tail_len, off = m->body_off;

    if (chunk != 0 && off < flat) {
        uint32_t k = flat - off < chunk ? flat - off : chunk;

        c->iov[c->iov_n].iov_base = m->body + off;
        c->iov[c->iov_n++].iov_len = k;
        off += k;
        chunk -= k;
    }
    if (chunk != 0) {
        c->iov[c->iov_n].iov_base = (void *)(uintptr_t)(m->tail + (off - flat));
        c->iov[c->iov_n++].iov_len = chunk;
    }
}

static bool conn_has_frames(const qrpc__omsg *m)
{
    return !m->first_built || m->body_off < m->body_len;
}

/* Removes a fully written message from the ring. */
static void conn_ring_remove(qrpc__conn *c, qrpc__omsg *m)
{
    qrpc__omsg *prev = c->ring;

    while (prev->next != m)
        prev = prev->next;
    if (prev == m) {
        c->ring = NULL;
    } else {
        prev->next = m->next;
        if (c->ring == m)
            c->ring = prev;
    }
    conn_omsg_free(m);
}

/*
 * Builds the next batch of frames, taking one frame from each message in
 * turn.  Streams of requests whose first frame goes out in this batch are
 * collected in sent[] so that they can be marked before the write.
 *
 * A message of several frames starts only when the peer's HELLO has come:
 * before it, frames are cut to the smallest size any peer accepts (1 KiB),
 * and a 64 MiB argument sent on a fresh connection would go as 65 536
 * frames instead of 1 024.  It then starts when it fits the peer's bounds
 * on messages being assembled (qrpc-protocol(7), "Splitting and
 * interleaving"); until then it waits its turn while the others, and every
 * single-frame message, go on.  A message on its own always fits, except
 * one over the peer's max_message, which callers checked against our own
 * limit while the peer's was unknown: that one is marked refused (never
 * sent; conn_refuse fails its call QRPC_ETOOBIG), so the started ones
 * always make room.
 */
static int conn_fill(qrpc__conn *c, uint32_t *sent, int *n_sent)
{
    bool hello = atomic_load(&c->peer_hello);   /* before the limits it publishes */
    uint32_t max_frame = atomic_load_explicit(&c->peer_max_frame, memory_order_relaxed);
    uint32_t max_inflight = atomic_load_explicit(&c->peer_max_inflight, memory_order_relaxed);
    uint64_t max_message = atomic_load_explicit(&c->peer_max_message, memory_order_relaxed);
    size_t bytes = 0;
    bool any = true;

    c->iov_n = c->iov_pos = c->f_n = c->f_pos = 0;
    c->held = false;
    *n_sent = 0;
    /* passes over the ring, oldest first, one frame per message a pass */
    while (c->ring != NULL && any) {
        qrpc__omsg *first = c->ring->next, *m = first;

        any = false;
        do {
            conn_frame *f = &c->frames[c->f_n];
            uint32_t chunk;
            qrpc__fhdr h;

            if (c->f_n == CONN_IOV_MAX / 2 || c->iov_n > CONN_IOV_MAX - CONN_FRAME_IOV ||
                bytes >= CONN_BATCH_BYTES)
                return c->iov_n;
            if (!conn_has_frames(m) || m->refused) {
                m = m->next;
                continue;
            }
            f->msg = m;
            if (!m->first_built) {
                uint32_t room = max_frame - (m->head_len - QRPC__FRAME_HDR);

                chunk = m->body_len < room ? m->body_len : room;
                if (chunk < m->body_len && !hello) {
                    c->held = true;
                    m = m->next;
                    continue;
                }
                if (hello && m->body_len > max_message) {
                    m->refused = c->refusals = true;
                    m = m->next;
                    continue;
                }
                if (chunk < m->body_len) {
                    if (c->mf_count >= max_inflight ||
                        c->mf_bytes + m->body_len > max_message) {
                        m = m->next;    /* not yet */
                        continue;
                    }
                    c->mf_count++;
                    c->mf_bytes += m->body_len;
                }
                h.type = m->type;
                /* END marks the last frame of a message; control frames have no flags */
                h.flags = chunk == m->body_len && (m->type == QRPC__F_REQUEST ||
                                                   m->type == QRPC__F_REPLY)
                              ? QRPC__FF_END : 0;
                h.stream = m->stream;
                h.len = m->head_len - QRPC__FRAME_HDR + chunk;
                qrpc__fhdr_put(m->head, &h);
                c->iov[c->iov_n].iov_base = m->head;
                c->iov[c->iov_n++].iov_len = m->head_len;
                m->first_built = true;
                if (m->type == QRPC__F_REQUEST)
                    sent[(*n_sent)++] = m->stream;
            } else {
                uint32_t left = m->body_len - m->body_off;

                chunk = left < max_frame ? left : max_frame;
                h.type = QRPC__F_DATA;
                h.flags = chunk == left ? QRPC__FF_END : 0;
                if (chunk == left) {
                    c->mf_count--;
                    c->mf_bytes -= m->body_len;
                }
                h.stream = m->stream;
                h.len = chunk;
                qrpc__fhdr_put(f->hdr, &h);
                c->iov[c->iov_n].iov_base = f->hdr;
                c->iov[c->iov_n++].iov_len = QRPC__FRAME_HDR;
            }
            conn_body_iov(c, m, chunk);
            m->body_off += chunk;
            m->frames_out++;
            f->iov_end = c->iov_n;
            c->f_n++;
            bytes += chunk + QRPC__FRAME_HDR;
            any = true;
            m = m->next;
        } while (m != first);
    }
    return c->iov_n;
}

/* Marks the requests of streams sent (see the top of the file). */
static void conn_mark_sent(qrpc__conn *c, const uint32_t *streams, int n)
{
    int i;

    if (n == 0)
        return;
    pthread_mutex_lock(&c->lock);
    for (i = 0; i < n; i++) {
        qrpc__pcall *pc = conn_ptab_find(c, streams[i]);

        if (pc != NULL)
            pc->sent = true;
    }
    pthread_mutex_unlock(&c->lock);
}

/* Accounts for n written bytes: completes frames, frees finished messages. */
static void conn_consume(qrpc__conn *c, size_t n)
{
    while (n > 0) {
        struct iovec *v = &c->iov[c->iov_pos];

        if (n < v->iov_len) {
            v->iov_base = (uint8_t *)v->iov_base + n;
            v->iov_len -= n;
            break;
        }
        n -= v->iov_len;
        c->iov_pos++;
    }
    while (c->f_pos < c->f_n && c->frames[c->f_pos].iov_end <= c->iov_pos) {
        qrpc__omsg *m = c->frames[c->f_pos++].msg;

        if (--m->frames_out == 0 && !conn_has_frames(m))
            conn_ring_remove(c, m);
    }
}

/* The first message of the ring that conn_fill refused, or NULL. */
static qrpc__omsg *conn_refused(const qrpc__conn *c)
{
    qrpc__omsg *m = c->ring;

    if (m == NULL)
        return NULL;
    do {
        m = m->next;
        if (m->refused)
            return m;
    } while (m != c->ring);
    return NULL;
}

/*
 * Drops the messages conn_fill refused (the writer's).  Only requests are
 * refused (a server has its client's HELLO before any request, so its
 * replies never wait for one): each call fails QRPC_ETOOBIG, as it would
 * have had the peer's limit been known when it was made, nothing of it
 * having been sent.  Rare, so each is looked for from the ring's start.
 */
static void conn_refuse(qrpc__conn *c)
{
    qrpc__omsg *m;

    c->refusals = false;
    while ((m = conn_refused(c)) != NULL) {
        uint32_t stream = m->stream;
        qrpc__pcall *pc;

        conn_ring_remove(c, m);
        pthread_mutex_lock(&c->lock);
        pc = conn_pending_take(c, stream);
        pthread_mutex_unlock(&c->lock);
        if (pc != NULL)         /* NULL: it timed out meanwhile */
            conn_complete(c, pc, QRPC_ETOOBIG, NULL, 0, CONN_REPLIED);
    }
}

/*
 * Writes while there is something to write and the socket takes it.  The
 * caller holds the writer role; this either releases it (nothing left) or
 * hands it to the loop (the socket is full).
 */
static void conn_drain(qrpc__conn *c)
{
    uint32_t sent[CONN_IOV_MAX];
    int n_sent;

    for (;;) {
        ssize_t w;

        if (atomic_load(&c->dead)) {
            /*
             * Nothing will be sent: every message goes now, the queued
             * ones too, so that what they hold (a caller's tail, a blob
             * other attempts share) is given back at once, not when the
             * last reference to the connection goes.
             */
            conn_free_ring(c);
            conn_free_list(atomic_exchange(&c->queue, NULL));
            c->iov_n = c->iov_pos = c->f_n = c->f_pos = 0;
            if (!conn_let_go(c))
                return;
            continue;
        }
        if (c->iov_pos == c->iov_n) {
            int n_iov;

            conn_take_queue(c);
            n_iov = conn_fill(c, sent, &n_sent);
            if (c->refusals)
                conn_refuse(c);
            if (n_iov == 0) {
                if (!conn_let_go(c))    /* nothing left, or held for the HELLO */
                    return;
                continue;
            }
            conn_mark_sent(c, sent, n_sent);
        }
        {
            /* sendmsg, not writev: MSG_NOSIGNAL, or a vanished peer kills the process */
            struct msghdr mh;

            memset(&mh, 0, sizeof mh);
            mh.msg_iov = c->iov + c->iov_pos;
            mh.msg_iovlen = (size_t)(c->iov_n - c->iov_pos);
            w = c->pops != NULL
                ? c->pops->p_writev(c->pipe, mh.msg_iov, (int)mh.msg_iovlen)
                : sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        }
        if (w > 0) {
            if (atomic_load_explicit(&c->blocked_ns, memory_order_relaxed) != 0)
                atomic_store_explicit(&c->blocked_ns, 0, memory_order_relaxed);
            conn_consume(c, (size_t)w);
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (atomic_load_explicit(&c->blocked_ns, memory_order_relaxed) == 0) {
                uint64_t now = qrpc__now_ns(c->node);

                atomic_store_explicit(&c->blocked_ns, now, memory_order_relaxed);
                qrpc__io_wake(c->node,
                              now + (uint64_t)c->node->cfg.stall_timeout_ms * 1000000u);
            }
            /* publish the batch state before a loop thread can be woken */
            atomic_store_explicit(&c->writing, CONN_HANDED, memory_order_release);
            conn_want_write(c);
            return;             /* the loop holds the role now */
        }
        qrpc__conn_fail(c, QRPC_EUNKNOWN, w < 0 ? strerror(errno) : "write failed");
    }
}

static void conn_send(qrpc__conn *c, qrpc__omsg *m)
{
    conn_push(c, m);
    if (conn_take_role(c))
        conn_drain(c);
}

/*
 * Queues m without writing: a loop thread (or the next sender) writes it
 * with whatever else was queued by then, one sendmsg for many messages.
 * For senders with more to send (asynchronous calls while others are in
 * flight, replies while requests wait to run); the loop is woken once per
 * batch, not per message.
 */
static void conn_send_later(qrpc__conn *c, qrpc__omsg *m)
{
    if (atomic_load(&c->dead)) {        /* its loop may be gone: no list to join */
        conn_send(c, m);
        return;
    }
    conn_push(c, m);
    if (!atomic_exchange(&c->flush_queued, true)) {
        qrpc__conn_ref(c);
        qrpc__io_flush_later(c->node, c);
    }
}

void qrpc__conn_flush(qrpc__conn *c)
{
    atomic_store(&c->flush_queued, false);
    if (conn_take_role(c))
        conn_drain(c);
}

void qrpc__conn_on_writable(qrpc__conn *c)
{
    int w = CONN_HANDED;

    /* only a handed-over batch: an idle or busy writer needs no help */
    if (atomic_compare_exchange_strong_explicit(&c->writing, &w, CONN_WRITING,
                                                memory_order_acquire,
                                                memory_order_relaxed))
        conn_drain(c);
}

static qrpc__omsg *conn_omsg(uint8_t type, uint32_t stream)
{
    qrpc__omsg *m = calloc(1, sizeof *m);

    if (m != NULL) {
        m->type = type;
        m->stream = stream;
        m->head_len = QRPC__FRAME_HDR;
    }
    return m;
}

/* A control frame with a small payload (HELLO, PONG, GOAWAY). */
static void conn_send_control(qrpc__conn *c, uint8_t type, uint32_t stream,
                              const uint8_t *payload, uint32_t len)
{
    qrpc__omsg *m = conn_omsg(type, stream);

    if (m == NULL) {
        qrpc__conn_fail(c, QRPC_EUNKNOWN, "out of memory");
        return;
    }
    if (len != 0)               /* payload may be NULL then: memcpy must not see it */
        memcpy(m->head + QRPC__FRAME_HDR, payload, len);
    m->head_len += len;
    conn_send(c, m);
}

/* ---- requests and replies ------------------------------------------------- */

int qrpc__conn_request(qrpc__conn *c, const qrpc__call *call)
{
    qrpc__reqhdr h;
    qrpc__pcall *pc = NULL;
    qrpc__omsg *m;
    uint64_t now, left_ms, wake;
    bool oneway = (call->flags & QRPC_METHOD_ONEWAY) != 0;
    bool later = false;
    uint64_t body_len = qrpc__call_len(call);
    int rc;

    if (call->svc->name_len == 0 || call->svc->name_len > QRPC__NAME_MAX)
        return QRPC_EINVAL;
    if (body_len > atomic_load(&c->peer_max_message))
        return QRPC_ETOOBIG;
    m = conn_omsg(QRPC__F_REQUEST, 0);
    if (m == NULL)
        return QRPC_ENOMEM;
    do
        m->stream = atomic_fetch_add(&c->next_stream, 1);
    while (m->stream == 0);
    now = qrpc__now_ns(c->node);
    memset(&h, 0, sizeof h);
    h.body_len = body_len;
    h.method = call->method;
    h.version = call->svc->version;
    h.flags = call->flags | (call->retry ? QRPC__REQ_RETRY : 0);
    h.client_id = call->client_id;
    h.seq = call->seq;
    h.acked = call->acked;
    h.incarnation = call->retry ? call->incarnation : 0;
    left_ms = call->deadline_ns == UINT64_MAX ? 0
            : call->deadline_ns <= now ? 1 : (call->deadline_ns - now + 999999) / 1000000;
    h.deadline_ms = left_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)left_ms;
    h.name_len = (uint16_t)call->svc->name_len;
    memcpy(h.name, call->svc->name, call->svc->name_len);
    m->head_len = QRPC__FRAME_HDR + (uint32_t)qrpc__reqhdr_put(m->head + QRPC__FRAME_HDR, &h);

    /*
     * Shared arguments are referenced before the call is in the pending
     * table: from then on another thread may complete it (the connection
     * fails), and the completion may free the blob's last other holder,
     * and *call with it.
     */
    if (call->blob != NULL) {
        qrpc__blob_ref(call->blob);
        m->blob = call->blob;
        m->body = call->blob->data;
        m->body_len = (uint32_t)body_len;
        m->tail = call->blob->tail;
        m->tail_len = call->blob->tail_len;
    }
    if (!oneway) {
        pc = calloc(1, sizeof *pc);
        if (pc == NULL) {
            conn_omsg_free(m);
            return QRPC_ENOMEM;
        }
        pc->stream = m->stream;
        pc->flags = call->flags;
        pc->call_deadline_ns = call->deadline_ns;
        pc->wait_ns = call->wait_ns;
        pc->deadline_ns = conn_attempt_deadline(now, call->wait_ns, call->deadline_ns);
        pc->att = call->att;
        pc->done = call->done;
        pc->fn = call->fn;
        pc->arg = call->arg;
        pc->reply = call->reply;
        wake = pc->deadline_ns;
        pthread_mutex_lock(&c->lock);
        /* an asynchronous call behind others in flight need not write now */
        later = call->reply == NULL && c->pcount > 0;
        rc = atomic_load(&c->dead) ? QRPC_EUNAVAILABLE : conn_pending_add(c, pc);
        pthread_mutex_unlock(&c->lock);
        if (rc != 0) {
            free(pc);
            conn_omsg_free(m);
            return rc;
        }
        /* pc and (with a blob) *call may be gone from here on */
        qrpc__io_wake(c->node, wake);
    }
    /* The message takes the argument bytes as they are: no copy. */
    if (m->blob == NULL) {
        m->body = call->args->data;
        m->body_len = (uint32_t)call->args->len;
        call->args->data = NULL;
        call->args->len = call->args->cap = 0;
    }
    if (later)
        conn_send_later(c, m);
    else
        conn_send(c, m);
    if (oneway)                 /* handed over: that is all a oneway call gets */
        call->done(0, NULL, call->fn, call->arg);
    return 0;
}

void qrpc__conn_reply(qrpc__conn *c, uint32_t stream, int status, qrpc_buf *results,
                      bool later)
{
    qrpc__rephdr h;
    qrpc__omsg *m;

    if (atomic_load(&c->dead)) {
        qrpc_buf_free(results);
        return;
    }
    if (status == 0 && results->len > atomic_load(&c->peer_max_message))
        status = QRPC_ETOOBIG;
    m = conn_omsg(QRPC__F_REPLY, stream);
    if (m == NULL) {
        qrpc_buf_free(results);
        qrpc__conn_fail(c, QRPC_EUNKNOWN, "out of memory");
        return;
    }
    h.status = status;
    h.body_len = status == 0 ? (uint32_t)results->len : 0;
    qrpc__rephdr_put(m->head + QRPC__FRAME_HDR, &h);
    m->head_len += QRPC__REPHDR_LEN;
    if (status == 0) {
        m->body = results->data;
        m->body_len = (uint32_t)results->len;
        results->data = NULL;
        results->len = results->cap = 0;
    }
    qrpc_buf_free(results);
    if (later)
        conn_send_later(c, m);
    else
        conn_send(c, m);
}

/* ---- the reader's callbacks (the owning loop thread) ------------------------- */

static int conn_on_hello(void *owner, const qrpc__hello *h)
{
    qrpc__conn *c = owner;
    uint32_t mf = h->max_frame < QRPC__FRAME_MIN ? QRPC__FRAME_MIN : h->max_frame;

    /* never frames larger than our own limit either */
    if (mf > c->node->cfg.max_frame)
        mf = c->node->cfg.max_frame;
    atomic_store(&c->peer_max_frame, mf);
    atomic_store(&c->peer_max_message, h->max_message);
    atomic_store(&c->peer_max_inflight, h->max_inflight);     /* not 0: frame.c */
    atomic_store(&c->peer_incarnation, h->incarnation);
    c->hello_seen = true;
    /* after the limits: a writer that sees it sees them */
    atomic_store(&c->peer_hello, true);
    /* messages held back for it (conn_fill) go now, or the writer sends them */
    if (conn_take_role(c))
        conn_drain(c);
    return 0;
}

/*
 * A reply's status comes from the peer: pass on only what a server can
 * truthfully say about a call.  A peer claiming QRPC_EUNAVAILABLE ("never
 * sent") for a request it received would make the caller believe a lie.
 */
static int conn_sane_status(int32_t s)
{
    switch (s) {
    case QRPC_EDECODE: case QRPC_ETOOBIG: case QRPC_ETIMEDOUT:
    case QRPC_ENOSERVICE: case QRPC_ENOMETHOD: case QRPC_ECLOSED:
    case QRPC_EBUSY: case QRPC_EINTERNAL: case QRPC_ESTALE: case QRPC_EUNKNOWN:
        return s;
    default:
        return s >= 0 ? s : QRPC_EPROTO;
    }
}

static void conn_job_append(qrpc__job **head, qrpc__job **tail, qrpc__job *job)
{
    if (*tail != NULL)
        (*tail)->next = job;
    else
        *head = job;
    *tail = job;
}

static int conn_on_msg(void *owner, qrpc__rx_msg *msg)
{
    qrpc__conn *c = owner;
    qrpc__pcall *pc;
    qrpc__job *job;

    if (msg->type == QRPC__F_REPLY) {
        if (c->role != QRPC__CONN_CLIENT) {
            free(msg->body);
            return QRPC_EPROTO;
        }
        pthread_mutex_lock(&c->lock);
        pc = conn_pending_take(c, msg->stream);
        pthread_mutex_unlock(&c->lock);
        if (pc == NULL) {       /* timed out already, or never ours */
            free(msg->body);
            return 0;
        }
        conn_complete(c, pc, conn_sane_status(msg->rep.status), msg->body, msg->body_len,
                      CONN_REPLIED);
        return 0;
    }
    if (c->role != QRPC__CONN_SERVER) {
        free(msg->body);
        return QRPC_EPROTO;
    }
    if (atomic_load(&c->inflight) >= c->node->cfg.max_inflight) {
        qrpc_buf none = { NULL, 0, 0 };

        free(msg->body);
        if (!(msg->req.flags & QRPC_METHOD_ONEWAY))
            qrpc__conn_reply(c, msg->stream, QRPC_EBUSY, &none, false);
        return 0;
    }
    job = calloc(1, sizeof *job);
    if (job == NULL) {
        free(msg->body);
        return QRPC_ENOMEM;
    }
    job->msg = *msg;
    if (c->read_ns == 0)        /* one clock reading for every request of a read */
        c->read_ns = qrpc__now_ns(c->node);
    job->recv_ns = c->read_ns;
    job->deadline_ns = msg->req.deadline_ms == 0 ? UINT64_MAX
                     : c->read_ns + (uint64_t)msg->req.deadline_ms * 1000000u;
    job->conn = c;
    qrpc__conn_ref(c);
    atomic_fetch_add(&c->inflight, 1);
    if (msg->body_len >= CONN_BIG_JOB)
        conn_job_append(&c->big_head, &c->big_tail, job);
    else
        conn_job_append(&c->jobs_head, &c->jobs_tail, job);
    return 0;
}

static int conn_on_ping(void *owner, uint32_t stream)
{
    conn_send_control(owner, QRPC__F_PONG, stream, NULL, 0);
    return 0;
}

static int conn_on_pong(void *owner, uint32_t stream)
{
    (void)owner;
    (void)stream;
    return 0;
}

static int conn_on_goaway(void *owner, uint32_t reason)
{
    qrpc__conn *c = owner;

    (void)reason;
    /* The peer is closing; calls it may have received may have run. */
    qrpc__conn_fail(c, QRPC_EUNKNOWN, NULL);
    return 1;
}

static const qrpc__rx_ops conn_rx_ops = {
    .on_hello = conn_on_hello,
    .on_msg = conn_on_msg,
    .on_ping = conn_on_ping,
    .on_pong = conn_on_pong,
    .on_goaway = conn_on_goaway,
};

void qrpc__conn_job_done(qrpc__conn *c)
{
    atomic_fetch_sub(&c->inflight, 1);
}

/* After a read: restarts or keeps the slow-peer clock, and tells the loop. */
static void conn_stall_account(qrpc__conn *c, bool was_idle, size_t n)
{
    uint64_t frame = QRPC__FRAME_HDR + (uint64_t)c->node->cfg.max_frame;

    if (qrpc__rx_idle(c->rx))
        return;
    c->frame_bytes += n;
    if (was_idle || c->frame_bytes >= frame) {
        c->frame_start_ns = qrpc__now_ns(c->node);
        c->frame_bytes = was_idle ? n : 0;
        qrpc__io_wake(c->node, c->frame_start_ns +
                               (uint64_t)c->node->cfg.stall_timeout_ms * 1000000u);
    }
}

static void conn_read(qrpc__conn *c, bool hup);

qrpc__job *qrpc__conn_on_readable(qrpc__conn *c, bool hup)
{
    qrpc__job *jobs;

    c->read_ns = 0;
    conn_read(c, hup);
    /*
     * A pipe's descriptor has one event for everything: room for a writer
     * waiting for it (conn_want_write) comes as a read event too.
     */
    if (c->pops != NULL && !atomic_load(&c->dead))
        qrpc__conn_on_writable(c);
    if (c->jobs_tail != NULL)
        c->jobs_tail->next = c->big_head;
    else
        c->jobs_head = c->big_head;
    jobs = c->jobs_head;
    c->jobs_head = c->jobs_tail = c->big_head = c->big_tail = NULL;
    return jobs;
}

/*
 * Reads what the connection has, feeding the reader.  Large bodies skip
 * the copy: while the reader is inside a body frame with CONN_WINDOW_MIN
 * or more bytes to come, those bytes are read straight into the message's
 * buffer (qrpc__rx_window), together with the next frame's header (a
 * socket's readv; a pipe reads the window alone).  After such a read, and
 * while a message of several frames is being assembled, the other reads
 * are small (CONN_HDR_READ), so that headers do not pull the next body
 * through the copy; a stream of small messages alone is read in full
 * chunks as before.
 */
static void conn_read(qrpc__conn *c, bool hup)
{
    static _Thread_local uint8_t buf[CONN_READ_CHUNK];
    size_t total = 0;
    bool small = false;

    while (!atomic_load(&c->dead) && total < 4 * CONN_READ_CHUNK) {
        const char *why = NULL;
        uint8_t *win;
        size_t wlen, want;
        ssize_t r;
        bool was_idle;
        int rc;

        if (qrpc__rx_window(c->rx, CONN_WINDOW_MIN, &win, &wlen, &why) != 0) {
            qrpc__conn_fail(c, QRPC_EUNKNOWN, why);
            return;
        }
        if (win != NULL && c->pops != NULL) {
            want = wlen;
            r = c->pops->p_read(c->pipe, win, wlen);
        } else if (win != NULL) {
            struct iovec iov[2] = { { win, wlen }, { buf, QRPC__FRAME_HDR } };

            want = wlen + QRPC__FRAME_HDR;
            r = readv(c->fd, iov, 2);
        } else {
            want = small ? CONN_HDR_READ : sizeof buf;
            r = c->pops != NULL ? c->pops->p_read(c->pipe, buf, want) : read(c->fd, buf, want);
        }
        if (r == 0) {
            /* a peer may hang up between frames; in the middle of one it is news */
            qrpc__conn_fail(c, QRPC_EUNKNOWN,
                            !qrpc__rx_idle(c->rx) ? "closed by the peer in the middle of a frame"
                            : qrpc__rx_assembling(c->rx)
                                ? "closed by the peer in the middle of a message"
                            : c->role == QRPC__CONN_CLIENT ? "closed by the peer" : NULL);
            return;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            qrpc__conn_fail(c, QRPC_EUNKNOWN, strerror(errno));
            return;
        }
        total += (size_t)r;
        was_idle = qrpc__rx_idle(c->rx);
        if (win != NULL) {
            rc = qrpc__rx_window_done(c->rx, (size_t)r < wlen ? (size_t)r : wlen, &why);
            if (rc == 0 && (size_t)r > wlen)
                rc = qrpc__rx_feed(c->rx, buf, (size_t)r - wlen, &why);
        } else {
            rc = qrpc__rx_feed(c->rx, buf, (size_t)r, &why);
        }
        small = win != NULL || (small && qrpc__rx_assembling(c->rx));
        if (rc == QRPC_EPROTO) {
            qrpc__conn_fail(c, QRPC_EUNKNOWN, why != NULL ? why : "protocol error");
            return;
        }
        if (rc != 0) {
            if (!atomic_load(&c->dead))
                qrpc__conn_fail(c, QRPC_EUNKNOWN, rc == QRPC_ENOMEM ? "out of memory"
                                                                    : "protocol error");
            return;
        }
        conn_stall_account(c, was_idle, (size_t)r);
        /*
         * A short read drained the socket: what comes next is a new edge.
         * Not the end of the stream, though, if it came with the data: read on.
         */
        if ((size_t)r < want && !hup)
            return;
    }
    /* stopped early, for the other connections' sake: no edge will say so */
    pthread_mutex_lock(&c->io_lock);
    c->rearm = true;
    pthread_mutex_unlock(&c->io_lock);
}

uint64_t qrpc__conn_tick(qrpc__conn *c, uint64_t now)
{
    qrpc__pcall *expired = NULL, *pc, *next;
    uint64_t stall = (uint64_t)c->node->cfg.stall_timeout_ms * 1000000u;
    uint64_t wake = UINT64_MAX, blocked;
    bool stalled = false;

    if (atomic_load(&c->dead))
        return UINT64_MAX;
    /* the reader's state is the owner's; an owned connection is being read */
    pthread_mutex_lock(&c->io_lock);
    if (!c->owned && !qrpc__rx_idle(c->rx)) {
        stalled = now - c->frame_start_ns >= stall;
        wake = c->frame_start_ns + stall;
    }
    pthread_mutex_unlock(&c->io_lock);
    if (stalled) {
        qrpc__conn_fail(c, QRPC_EUNKNOWN, "the peer left a frame unfinished too long");
        return UINT64_MAX;
    }
    blocked = atomic_load_explicit(&c->blocked_ns, memory_order_relaxed);
    if (blocked != 0 && now > blocked && now - blocked >= stall) {
        qrpc__conn_fail(c, QRPC_EUNKNOWN, "the peer took no bytes for too long");
        return UINT64_MAX;
    }
    if (blocked != 0 && blocked + stall < wake)
        wake = blocked + stall;
    pthread_mutex_lock(&c->lock);
    while (c->heap_n > 0 && c->heap[0]->deadline_ns <= now) {
        pc = c->heap[0];
        if (pc->wait_ns != 0 && pc->call_deadline_ns > now &&
            (atomic_load(&c->writing) != CONN_IDLE || atomic_load(&c->queue) != NULL)) {
            /*
             * An attempt's wait ran out while the connection is still
             * busy writing (a large message, a slow peer): a copy sent
             * now would only queue behind, so the attempt waits another
             * round instead.  Not so while a message waits for the
             * peer's HELLO: a peer that never sends one is a hung node,
             * and a bound call must be able to leave it (bind.c).
             */
            pc->deadline_ns = conn_attempt_deadline(now, pc->wait_ns, pc->call_deadline_ns);
            conn_heap_down(c, 0);
            continue;
        }
        conn_ptab_remove(c, pc);
        conn_heap_remove(c, pc);
        pc->hnext = expired;
        expired = pc;
    }
    if (c->heap_n > 0 && c->heap[0]->deadline_ns < wake)
        wake = c->heap[0]->deadline_ns;
    pthread_mutex_unlock(&c->lock);
    for (pc = expired; pc != NULL; pc = next) {
        next = pc->hnext;
        conn_complete(c, pc, QRPC_ETIMEDOUT, NULL, 0, CONN_EXPIRED);
    }
    return wake;
}

/* ---- creation ------------------------------------------------------------------ */

int qrpc__conn_new(qrpc_node *n, int fd, qrpc__conn_role role, const char *peer,
                   qrpc__conn **out)
{
    return qrpc__conn_new_pipe(n, fd, NULL, NULL, role, peer, out);
}

int qrpc__conn_new_pipe(qrpc_node *n, int fd, const qrpc__pipe_ops *pops, void *pipe,
                        qrpc__conn_role role, const char *peer, qrpc__conn **out)
{
    qrpc__rx_limits lim;
    qrpc__conn *c;
    qrpc__hello hello;
    uint8_t hb[QRPC__HELLO_LEN];
    int rc;

    c = calloc(1, sizeof *c);
    if (c == NULL)
        return QRPC_ENOMEM;
    c->node = n;
    c->fd = fd;
    c->pops = pops;
    c->pipe = pipe;
    c->role = role;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    atomic_init(&c->refs, 1);
    atomic_init(&c->failing, false);
    atomic_init(&c->dead, false);
    atomic_init(&c->queue, NULL);
    atomic_init(&c->writing, 0);
    atomic_init(&c->next_stream, 1);
    atomic_init(&c->blocked_ns, 0);
    atomic_init(&c->inflight, 0);
    /* Until the peer's HELLO says otherwise, assume the smallest limits. */
    atomic_init(&c->peer_max_frame, QRPC__FRAME_MIN);
    atomic_init(&c->peer_max_message, n->cfg.max_message);
    atomic_init(&c->peer_max_inflight, 1);
    atomic_init(&c->peer_incarnation, 0);
    atomic_init(&c->peer_hello, false);
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return QRPC_ENOMEM;
    }
    if (pthread_mutex_init(&c->io_lock, NULL) != 0) {
        pthread_mutex_destroy(&c->lock);
        free(c);
        return QRPC_ENOMEM;
    }
    lim.max_frame = n->cfg.max_frame;
    lim.max_message = n->cfg.max_message;
    lim.max_streams = n->cfg.max_inflight;
    lim.max_buffered = (uint64_t)n->cfg.max_message * 2;
    c->rx = qrpc__rx_new(&lim, &conn_rx_ops, c);
    if (c->rx == NULL) {
        rc = QRPC_ENOMEM;
        goto fail;
    }
    c->frame_start_ns = qrpc__now_ns(n);
    hello.incarnation = n->incarnation;
    hello.max_frame = n->cfg.max_frame;
    hello.max_message = n->cfg.max_message;
    hello.max_inflight = n->cfg.max_inflight;
    qrpc__hello_put(hb, &hello);
    /*
     * Ours until registered: a HELLO that finds no room asks for EPOLLOUT
     * through rearm (conn_want_write), which disowning below does.
     */
    c->owned = true;
    /* First on the queue, so first on the wire. */
    conn_send_control(c, QRPC__F_HELLO, 0, hb, sizeof hb);
    if (atomic_load(&c->dead)) {
        rc = QRPC_EUNAVAILABLE;
        goto fail;
    }
    qrpc__conn_ref(c);          /* the loop's */
    rc = qrpc__io_track(n, c, fd, &c->io_key);
    if (rc != 0) {
        qrpc__conn_unref(c);    /* the loop's, never taken */
        goto fail;
    }
    qrpc__conn_disown(c);
    *out = c;
    return 0;

fail:
    c->fd = -1;                 /* the caller still owns fd, or the pipe */
    c->pops = NULL;
    qrpc__conn_unref(c);
    return rc;
}

/* ---- the FrontEnd over connections (net.h) ------------------------------------ */

void qrpc__cfe_init(qrpc__cfe *fe, qrpc_node *n,
                    int (*dial)(qrpc__cfe *fe, uint64_t deadline_ns, qrpc__conn **out))
{
    fe->node = n;
    pthread_mutex_init(&fe->lock, NULL);    /* cannot fail on Linux */
    fe->conn = NULL;
    fe->bulk = NULL;
    fe->bulk_min = 0;
    fe->closed = false;
    fe->dial = dial;
}

void qrpc__cfe_op_close(void *fep)
{
    qrpc__cfe *fe = fep;
    qrpc__conn *c[2];
    int i;

    pthread_mutex_lock(&fe->lock);
    fe->closed = true;
    c[0] = fe->conn;
    c[1] = fe->bulk;
    fe->conn = fe->bulk = NULL;
    pthread_mutex_unlock(&fe->lock);
    for (i = 0; i < 2; i++) {
        if (c[i] != NULL) {
            qrpc__conn_fail(c[i], QRPC_ECLOSED, NULL);
            qrpc__conn_unref(c[i]);
        }
    }
}

void qrpc__cfe_op_fini(void *fep)
{
    qrpc__cfe *fe = fep;

    if (fe->conn != NULL)
        qrpc__conn_unref(fe->conn);
    if (fe->bulk != NULL)
        qrpc__conn_unref(fe->bulk);
    pthread_mutex_destroy(&fe->lock);
    free(fe);
}

/* The FrontEnd's slot for a call of len bytes of arguments (lock held). */
static qrpc__conn **cfe_slot(qrpc__cfe *fe, size_t len)
{
    return fe->bulk_min != 0 && len >= fe->bulk_min ? &fe->bulk : &fe->conn;
}

int qrpc__cfe_op_call(void *fep, const qrpc__call *call)
{
    qrpc__cfe *fe = fep;
    qrpc__conn *c, **slot;
    int tries, rc = QRPC_EUNAVAILABLE;

    /* A connection found broken is replaced once, within this call. */
    for (tries = 0; tries < 2; tries++) {
        pthread_mutex_lock(&fe->lock);
        if (fe->closed) {
            pthread_mutex_unlock(&fe->lock);
            return QRPC_ECLOSED;
        }
        slot = cfe_slot(fe, qrpc__call_len(call));
        c = *slot;
        if (c != NULL && qrpc__conn_dead(c)) {
            qrpc__conn_unref(c);
            *slot = c = NULL;
        }
        if (c == NULL) {
            rc = fe->dial(fe, call->deadline_ns, &c);
            if (rc != 0) {
                pthread_mutex_unlock(&fe->lock);
                return rc;
            }
            *slot = c;
        }
        qrpc__conn_ref(c);
        pthread_mutex_unlock(&fe->lock);
        rc = qrpc__conn_request(c, call);
        qrpc__conn_unref(c);
        if (rc != QRPC_EUNAVAILABLE)
            return rc;
    }
    return rc;
}

/*
 * A synchronous caller reads c itself until *done, until_ns (CLOCK_MONOTONIC)
 * or c's end, rather than sleeping until a loop thread has read its reply
 * and woken it: no thread through the scheduler while it spins (spin_ns),
 * one after, as with a bare socket, where it used to take two.  It owns
 * c as a loop thread would, with reading taken out of c's registration
 * meanwhile, so that no loop thread is woken for what it reads; writes
 * waiting for room still go to the loop (conn_want_write).  Only a
 * client connection over a socket, which brings replies and never
 * requests.  Returns whether it read (and so
 * spun) at all.
 */
static bool conn_help(qrpc__conn *c, const atomic_bool *done, uint64_t spin_ns,
                      uint64_t until_ns)
{
    uint64_t now = qrpc__mono_ns(), spin_until = now + spin_ns;

    pthread_mutex_lock(&c->io_lock);
    if (c->owned || atomic_load(&c->dead) || atomic_load(done)) {
        pthread_mutex_unlock(&c->io_lock);
        return false;           /* a loop thread reads it: it wakes us */
    }
    c->owned = c->helped = true;
    conn_rearm(c);
    pthread_mutex_unlock(&c->io_lock);
    /*
     * First the spin (config spin_us), reading as it goes: the CPU stays
     * awake, and a reply is read as soon as it is there, with no wake-up
     * at all.  Then sleep in ppoll.  Replies only: no requests to run.
     */
    while (!atomic_load(done) && !atomic_load(&c->dead) && now < until_ns) {
        struct pollfd p = { .fd = c->fd, .events = POLLIN | POLLRDHUP };
        struct timespec ts = { .tv_sec = (time_t)((until_ns - now) / 1000000000u),
                               .tv_nsec = (long)((until_ns - now) % 1000000000u) };
        int k;

        if (now < spin_until) {
            (void)qrpc__conn_on_readable(c, false);
            if (!atomic_load(done))
                sched_yield();
        } else if ((k = ppoll(&p, 1, &ts, NULL)) > 0) {
            (void)qrpc__conn_on_readable(c, (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0);
        } else if (k < 0 && errno != EINTR) {
            break;
        }
        now = qrpc__mono_ns();
    }
    pthread_mutex_lock(&c->io_lock);
    c->owned = c->helped = c->rearm = false;
    conn_rearm(c);              /* the loop's again: it hears of what came since */
    pthread_mutex_unlock(&c->io_lock);
    /* a connection found dead here is reaped at the loop's next tick, which
     * our call's deadline has set, as after a sender finds it dead */
    if (!atomic_load(&c->dead) && atomic_load(done))
        qrpc__counter_add(&c->node->st_caller_reads, 1);
    return true;
}

bool qrpc__cfe_op_wait(void *fep, size_t len, const atomic_bool *done, uint64_t deadline_ns)
{
    qrpc__cfe *fe = fep;
    uint64_t until = qrpc__mono_ns() + CONN_HELP_NS;
    qrpc__conn *c;
    bool read = false;

    /* a deadline on another clock (a test's) bounds nothing here */
    if (fe->node->now == NULL && deadline_ns < until)
        until = deadline_ns;
    if (pthread_mutex_trylock(&fe->lock) != 0)
        return false;           /* a dial holds it (the other lane, or ours anew): sleep */
    c = *cfe_slot(fe, len);
    if (c != NULL)
        qrpc__conn_ref(c);
    pthread_mutex_unlock(&fe->lock);
    if (c == NULL)
        return false;
    /* a FrontEnd's connections are dialled: client connections */
    if (c->pops == NULL)
        read = conn_help(c, done, qrpc__spin_ns(fe->node), until);
    qrpc__conn_unref(c);
    return read;
}

/* ---- logging -------------------------------------------------------------------- */

void qrpc__vlog(const qrpc_node *n, const char *fmt, va_list ap)
{
    char line[512];

    vsnprintf(line, sizeof line, fmt, ap);
    if (n->cfg.log != NULL)
        n->cfg.log(n->cfg.log_arg, line);
    else
        fprintf(stderr, "qrpc: %s\n", line);
}

void qrpc__log(const qrpc_node *n, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    qrpc__vlog(n, fmt, ap);
    va_end(ap);
}
