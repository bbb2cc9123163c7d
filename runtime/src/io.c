/*
 * io.c - a node's event loop: one epoll set, shared by a pool of loop
 * threads (cfg.workers of them) in the leader/followers style, and one
 * standby thread.  The pool thread that epoll wakes reads the connection,
 * runs the handlers of the requests it read and writes their replies; no
 * request changes threads between the socket and its handler, which is
 * what keeps a small call within a few microseconds of a bare socket
 * ping-pong.  Loop threads also accept connections, finish writes the
 * socket could not take at once (EPOLLOUT), complete calls (the callbacks
 * of asynchronous calls run here) and keep time for deadlines and stalled
 * peers (a timerfd).
 *
 * Handlers run concurrently as they did on a worker pool: a read that
 * brought several requests keeps the first for its thread and queues the
 * rest, each for the first pool thread free.  When every pool thread is
 * running a handler, nobody would read: then the standby thread (the old
 * "I/O thread") takes over the loop, reading and queueing requests but
 * never running them, so that replies to a handler's own calls, pings,
 * new connections and EBUSY answers still get through; it sleeps again
 * as soon as a pool thread is free.
 *
 * Sharing one epoll set between threads needs three rules:
 *  - The thread an event goes to owns the connection (qrpc__conn_own)
 *    until it has read what there was, so no two threads ever read one
 *    connection; it lets go before it runs the handlers, so the next
 *    requests of the connection can be read by another thread while they
 *    run.  Connections are registered once, edge-triggered, for reading,
 *    so that the common case costs no epoll_ctl: an event that finds the
 *    connection owned is remembered there and the owner re-arms it
 *    (EPOLL_CTL_MOD, which reports what is pending) when it lets go, as
 *    it does when it stopped reading early.  EPOLLOUT is asked for only
 *    while a writer waits for room (conn.c), so that a socket that is
 *    merely writable wakes nobody, and it is served whoever owns the
 *    connection: the writer role is a lock of its own.  A synchronous
 *    caller may own a client connection too, to read its own reply
 *    (conn.c's helper); reading is out of the registration until it lets
 *    go.  The listener is EPOLLONESHOT, re-armed after each accept.
 *  - epoll's data is a key (slot and generation in the table below), not a
 *    pointer: a thread may hold an event for a connection that another has
 *    failed and released since; the key then finds nothing.
 *  - Every thread waits without a timeout.  Time is a timerfd, set for the
 *    earliest deadline any connection needs; whichever thread it wakes runs
 *    the tick, one at a time.
 *
 * Known limits: epoll wakes the thread that waited last (LIFO), which is
 * what we want for latency (a warm thread) but spreads one connection's
 * requests unevenly; ticks walk every connection, fine for the tens of
 * peers a node talks to, not for thousands.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "net.h"
#include "rdma.h"

#define IO_EVENTS     4         /* events one thread takes at once: the rest
                                   are left for the other threads */
#define IO_GATHER     32        /* requests run before the flush list is written */
#define IO_NO_SLOT    UINT32_MAX
/* a connection's registration: see the top of the file */
#define IO_CONN_READ  (EPOLLIN | EPOLLRDHUP)

/* epoll data of the fds that are not connections */
#define IO_KEY_WAKE   UINT64_MAX
#define IO_KEY_TIMER  (UINT64_MAX - 1)
#define IO_KEY_LISTEN (UINT64_MAX - 2)
#define IO_KEY_RLISTEN (UINT64_MAX - 3)

typedef struct io_slot {
    qrpc__conn *c;              /* a reference; NULL when free */
    uint32_t gen;               /* bumped when the slot is freed */
    uint32_t next_free;
} io_slot;

struct qrpc__io {
    int ep;
    int wakefd;                 /* stop, and the flush list */
    int timerfd;
    int listenfd;               /* -1 when the node does not listen */
    int rlistenfd;              /* the RDMA listener's (rdma.c's), or -1 */
    atomic_bool stop;
    atomic_bool ticking;        /* a thread is running the tick */
    /*
     * A wake-up is written and no thread has read it yet: another is
     * not written (io_kick).  While one thread keeps the CPU and its peers
     * wait in epoll, every queued request and reply would otherwise cost
     * a write(2), for one wake-up's worth of use.
     */
    atomic_bool kicked;

    /* the earliest moment the timer is set for; UINT64_MAX: none */
    pthread_mutex_t timer_lock;
    atomic_uint_least64_t next_ns;

    pthread_mutex_t lock;       /* everything below */
    io_slot *slots;
    uint32_t n_slots, cap_slots, free_head;
    /* connections with messages queued for a loop thread to write */
    qrpc__conn **flush;
    size_t n_flush, cap_flush;
    atomic_size_t flush_waiting;        /* n_flush, read without the lock */
    /* requests queued for the pool, a list through next */
    qrpc__job *jhead, *jtail;
    atomic_size_t jqueued;

    /* the threads: base pool threads, then the standby */
    pthread_t *threads;
    unsigned n_threads, base;
    atomic_uint idle;           /* pool threads waiting in epoll */
    atomic_uint busy;           /* pool threads running handlers */
    bool standby_on;            /* under standby_lock */
    pthread_mutex_t standby_lock;
    pthread_cond_t standby_cond;
};

static void *io_main(void *arg);

/* ---- registration ----------------------------------------------------------- */

static uint64_t io_key(uint32_t slot, uint32_t gen)
{
    return (uint64_t)gen << 32 | slot;
}

static int io_ctl(qrpc__io *io, int op, int fd, uint32_t events, uint64_t key)
{
    struct epoll_event ev;

    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.u64 = key;
    return epoll_ctl(io->ep, op, fd, &ev);
}

int qrpc__io_track(qrpc_node *n, qrpc__conn *c, int fd, uint64_t *key)
{
    qrpc__io *io = n->io;
    uint32_t slot;

    pthread_mutex_lock(&io->lock);
    if (io->free_head != IO_NO_SLOT) {
        slot = io->free_head;
        io->free_head = io->slots[slot].next_free;
    } else {
        if (io->n_slots == io->cap_slots) {
            uint32_t ncap = io->cap_slots ? io->cap_slots * 2 : 16;
            io_slot *ns = realloc(io->slots, ncap * sizeof *ns);

            if (ns == NULL) {
                pthread_mutex_unlock(&io->lock);
                return QRPC_ENOMEM;
            }
            io->slots = ns;
            io->cap_slots = ncap;
        }
        slot = io->n_slots++;
        io->slots[slot].gen = 0;
    }
    io->slots[slot].c = c;
    *key = io_key(slot, io->slots[slot].gen);
    /* under the lock: the key must not be reused before epoll knows it */
    if (io_ctl(io, EPOLL_CTL_ADD, fd, IO_CONN_READ | EPOLLET, *key) != 0) {
        io->slots[slot].c = NULL;
        io->slots[slot].gen++;
        io->slots[slot].next_free = io->free_head;
        io->free_head = slot;
        pthread_mutex_unlock(&io->lock);
        return errno == ENOMEM ? QRPC_ENOMEM : QRPC_EIO;
    }
    pthread_mutex_unlock(&io->lock);
    return 0;
}

void qrpc__io_rearm(qrpc_node *n, int fd, uint64_t key, bool read, bool write)
{
    uint32_t events = EPOLLET | (read ? IO_CONN_READ : 0) | (write ? EPOLLOUT : 0);

    /* ENOENT: the connection failed and was removed; nothing to wait for */
    (void)io_ctl(n->io, EPOLL_CTL_MOD, fd, events, key);
}

void qrpc__io_del(qrpc_node *n, int fd)
{
    if (n->io != NULL)
        (void)epoll_ctl(n->io->ep, EPOLL_CTL_DEL, fd, NULL);
}

/* The connection of key, with a reference, or NULL if it is gone. */
static qrpc__conn *io_lookup(qrpc__io *io, uint64_t key)
{
    uint32_t slot = (uint32_t)key, gen = (uint32_t)(key >> 32);
    qrpc__conn *c = NULL;

    pthread_mutex_lock(&io->lock);
    if (slot < io->n_slots && io->slots[slot].gen == gen && io->slots[slot].c != NULL) {
        c = io->slots[slot].c;
        qrpc__conn_ref(c);
    }
    pthread_mutex_unlock(&io->lock);
    return c;
}

/* ---- time ---------------------------------------------------------------------- */

/*
 * Arms the timer for deadline_ns if that is nearer than what it is armed
 * for, or (force) for the nearer of the two whatever it was armed for.
 */
static void io_timer(qrpc_node *n, uint64_t deadline_ns, bool force)
{
    qrpc__io *io = n->io;
    struct itimerspec its;
    uint64_t now, rel;

    if (!force && deadline_ns >= atomic_load(&io->next_ns))
        return;
    pthread_mutex_lock(&io->timer_lock);
    if (deadline_ns > atomic_load(&io->next_ns))
        deadline_ns = atomic_load(&io->next_ns);
    if (deadline_ns != UINT64_MAX && (force || deadline_ns < atomic_load(&io->next_ns))) {
        atomic_store(&io->next_ns, deadline_ns);
        now = qrpc__now_ns(n);
        /* relative: the node's clock need not be CLOCK_MONOTONIC; 0 would disarm */
        rel = deadline_ns > now ? deadline_ns - now : 1;
        memset(&its, 0, sizeof its);
        its.it_value.tv_sec = (time_t)(rel / 1000000000u);
        its.it_value.tv_nsec = (long)(rel % 1000000000u);
        if (timerfd_settime(io->timerfd, 0, &its, NULL) != 0)
            qrpc__log(n, "cannot set the timer: %s", strerror(errno));
    }
    pthread_mutex_unlock(&io->timer_lock);
}

void qrpc__io_wake(qrpc_node *n, uint64_t deadline_ns)
{
    io_timer(n, deadline_ns, false);
}

/*
 * Drops dead connections and ticks the others; one thread at a time.  The
 * references are dropped outside the lock: the last one closes the socket.
 */
static void io_tick(qrpc_node *n)
{
    qrpc__io *io = n->io;
    qrpc__conn **snap, **dead;
    size_t count = 0, n_dead = 0, i;
    uint64_t now, next = UINT64_MAX, v;
    uint32_t s;

    if (read(io->timerfd, &v, sizeof v) < 0 && errno != EAGAIN)
        qrpc__log(n, "timerfd: %s", strerror(errno));
    if (atomic_exchange(&io->ticking, true))
        return;
    pthread_mutex_lock(&io->timer_lock);
    atomic_store(&io->next_ns, UINT64_MAX);
    pthread_mutex_unlock(&io->timer_lock);
    now = qrpc__now_ns(n);

    pthread_mutex_lock(&io->lock);
    snap = malloc((io->n_slots ? io->n_slots : 1) * 2 * sizeof *snap);
    if (snap == NULL) {
        pthread_mutex_unlock(&io->lock);
        atomic_store(&io->ticking, false);
        qrpc__io_wake(n, now + 10000000u);      /* try again in 10 ms */
        return;
    }
    dead = snap + io->n_slots;
    for (s = 0; s < io->n_slots; s++) {
        qrpc__conn *c = io->slots[s].c;

        if (c == NULL)
            continue;
        if (qrpc__conn_dead(c)) {
            dead[n_dead++] = c;
            io->slots[s].c = NULL;
            io->slots[s].gen++;
            io->slots[s].next_free = io->free_head;
            io->free_head = s;
            continue;
        }
        qrpc__conn_ref(c);
        snap[count++] = c;
    }
    pthread_mutex_unlock(&io->lock);
    for (i = 0; i < count; i++) {
        uint64_t w = qrpc__conn_tick(snap[i], now);

        if (w < next)
            next = w;
        qrpc__conn_unref(snap[i]);
    }
    for (i = 0; i < n_dead; i++)
        qrpc__conn_unref(dead[i]);
    free(snap);
    if (n->dedup != NULL) {
        uint64_t w = qrpc__dedup_expire(n->dedup, now);

        if (w < next)
            next = w;
    }
    atomic_store(&io->ticking, false);
    /*
     * Armed again even if it seems armed already: a deadline that came
     * during this tick may have had its expiry read by a thread that
     * found this one ticking and went away, leaving the timer disarmed
     * while next_ns still names that deadline.  Every later wake would
     * then see a nearer deadline armed and do nothing, and calls would
     * wait past their deadlines for ever.
     */
    io_timer(n, next, true);
}

/* ---- deferred writes ----------------------------------------------------------- */

/* Makes the wake-up descriptor readable, whatever `kicked` says. */
static void io_wake_fd(qrpc_node *n)
{
    uint64_t one = 1;

    if (write(n->io->wakefd, &one, sizeof one) < 0 && errno != EAGAIN)
        qrpc__log(n, "cannot wake the loop: %s", strerror(errno));
}

/*
 * Wakes a loop thread to look at the job queue and the flush list, unless
 * a wake-up is already on its way: the thread that reads it clears
 * `kicked` before it looks (io_main), so whatever was queued before a
 * kick that found the flag set is seen.
 */
static void io_kick(qrpc_node *n)
{
    if (!atomic_exchange(&n->io->kicked, true))
        io_wake_fd(n);
}

void qrpc__io_flush_later(qrpc_node *n, qrpc__conn *c)
{
    qrpc__io *io = n->io;
    bool first;

    pthread_mutex_lock(&io->lock);
    if (io->n_flush == io->cap_flush) {
        size_t ncap = io->cap_flush ? io->cap_flush * 2 : 16;
        qrpc__conn **nf = realloc(io->flush, ncap * sizeof *nf);

        if (nf == NULL) {
            pthread_mutex_unlock(&io->lock);
            /* no room on the list: write now instead */
            qrpc__conn_flush(c);
            qrpc__conn_unref(c);
            return;
        }
        io->flush = nf;
        io->cap_flush = ncap;
    }
    first = io->n_flush == 0;
    io->flush[io->n_flush++] = c;
    atomic_store_explicit(&io->flush_waiting, io->n_flush, memory_order_relaxed);
    pthread_mutex_unlock(&io->lock);
    /*
     * Woken at once, even from a loop thread: the one queueing may run a
     * handler that blocks before it comes back to the list.
     */
    if (first)
        io_kick(n);
}

/* Writes what the senders left to the loop. */
static void io_flush(qrpc__io *io)
{
    qrpc__conn **list;
    size_t count, i;

    if (atomic_load_explicit(&io->flush_waiting, memory_order_relaxed) == 0)
        return;
    pthread_mutex_lock(&io->lock);
    list = io->flush;
    count = io->n_flush;
    io->flush = NULL;
    io->n_flush = io->cap_flush = 0;
    atomic_store_explicit(&io->flush_waiting, 0, memory_order_relaxed);
    pthread_mutex_unlock(&io->lock);
    for (i = 0; i < count; i++) {
        qrpc__conn_flush(list[i]);
        qrpc__conn_unref(list[i]);
    }
    free(list);
}

/* ---- the pool's queue ------------------------------------------------------------ */

/* Queues jobs (a list, taken) for the pool. */
static void io_queue(qrpc__io *io, qrpc__job *jobs)
{
    qrpc__job *last = jobs;
    size_t k = 1;

    while (last->next != NULL) {
        last = last->next;
        k++;
    }
    pthread_mutex_lock(&io->lock);
    if (io->jtail != NULL)
        io->jtail->next = jobs;
    else
        io->jhead = jobs;
    io->jtail = last;
    atomic_fetch_add(&io->jqueued, k);
    pthread_mutex_unlock(&io->lock);
}

/*
 * The next queued job, or NULL; wakes another thread for the rest.  One
 * at a time: a job taken is run before the next is, so a job left queued
 * behind a handler that blocks would wait for it while other threads are
 * free; queued, any thread that frees up takes it.
 */
static qrpc__job *io_take(qrpc_node *n)
{
    qrpc__io *io = n->io;
    qrpc__job *job;
    bool more = false;

    if (atomic_load_explicit(&io->jqueued, memory_order_relaxed) == 0)
        return NULL;
    pthread_mutex_lock(&io->lock);
    job = io->jhead;
    if (job != NULL) {
        io->jhead = job->next;
        if (io->jhead == NULL)
            io->jtail = NULL;
        job->next = NULL;
        atomic_fetch_sub(&io->jqueued, 1);
        more = io->jhead != NULL;
    }
    pthread_mutex_unlock(&io->lock);
    if (more && atomic_load(&io->idle) != 0)
        io_kick(n);
    return job;
}

bool qrpc__io_more_queued(qrpc_node *n)
{
    qrpc__io *io = n->io;

    return io != NULL && !atomic_load(&io->stop) &&
           atomic_load_explicit(&io->jqueued, memory_order_relaxed) != 0;
}

/* Runs a job on a pool thread; the standby takes over if none is left free. */
static void io_run(qrpc_node *n, qrpc__job *job)
{
    qrpc__io *io = n->io;

    /*
     * Requests waiting while a thread idles: this thread may have taken
     * the wake-up meant for it (with an event of its own, in one
     * epoll_wait) and may now block in a handler: pass the wake-up on.
     */
    if (atomic_load(&io->jqueued) != 0 && atomic_load(&io->idle) != 0)
        io_kick(n);
    if (atomic_fetch_add(&io->busy, 1) + 1 == io->base) {
        pthread_mutex_lock(&io->standby_lock);
        io->standby_on = true;
        pthread_cond_signal(&io->standby_cond);
        pthread_mutex_unlock(&io->standby_lock);
    }
    qrpc__work_run(n, job);
    atomic_fetch_sub(&io->busy, 1);
}

/*
 * Keeps the first job of one read for this thread and queues the others,
 * for whichever thread is free first (this one, once its job is done);
 * see io_take() for why not more.
 */
static qrpc__job *io_share(qrpc_node *n, qrpc__job *jobs)
{
    qrpc__io *io = n->io;

    if (jobs->next == NULL)
        return jobs;
    io_queue(io, jobs->next);
    jobs->next = NULL;
    if (atomic_load(&io->idle) != 0)
        io_kick(n);
    return jobs;
}

/* ---- the loop ------------------------------------------------------------------- */

/*
 * One connection's event: read and write it, then run (pool) or queue
 * (standby) the requests it brought.
 */
static void io_conn_events(qrpc_node *n, qrpc__conn *c, uint32_t events, bool standby)
{
    qrpc__job *jobs = NULL;

    /* room for a waiting writer: the writer role needs no ownership */
    if (events & EPOLLOUT)
        qrpc__conn_on_writable(c);
    /* Not ours if another thread owns it; that one re-arms it. */
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && qrpc__conn_own(c)) {
        jobs = qrpc__conn_on_readable(c, (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
        qrpc__conn_disown(c);
    }
    if (qrpc__conn_dead(c))
        qrpc__io_wake(n, 0);            /* reap it now: its fd must not linger */
    if (jobs != NULL && standby) {
        /* the pool threads may all be free again by now */
        io_queue(n->io, jobs);
        io_kick(n);
    } else if (jobs != NULL) {
        io_run(n, io_share(n, jobs));
    }
}

static void io_conn_event(qrpc_node *n, uint64_t key, uint32_t events, bool standby)
{
    qrpc__conn *c = io_lookup(n->io, key);

    if (c == NULL)
        return;
    io_conn_events(n, c, events, standby);
    qrpc__conn_unref(c);
}

void qrpc__io_poll_conn(qrpc_node *n, qrpc__conn *c)
{
    io_conn_events(n, c, EPOLLIN, false);
}

typedef struct io_arg {
    qrpc_node *n;
    bool standby;
} io_arg;

/* The standby waits here while a pool thread is free; false: stop. */
static bool io_standby_wait(qrpc_node *n)
{
    qrpc__io *io = n->io;

    /*
     * The standby may have taken the wake-up meant for an idle pool thread
     * (epoll wakes the thread that waited last): pass it on before sleeping.
     */
    if (atomic_load(&io->jqueued) != 0 && atomic_load(&io->idle) != 0)
        io_kick(n);
    pthread_mutex_lock(&io->standby_lock);
    if (atomic_load(&io->busy) < io->base)
        io->standby_on = false;
    while (!io->standby_on && !atomic_load(&io->stop))
        pthread_cond_wait(&io->standby_cond, &io->standby_lock);
    pthread_mutex_unlock(&io->standby_lock);
    return !atomic_load(&io->stop);
}

static void *io_main(void *arg)
{
    io_arg a = *(io_arg *)arg;
    qrpc_node *n = a.n;
    qrpc__io *io = n->io;
    struct epoll_event ev[IO_EVENTS];
    unsigned gathered = 0;

    free(arg);
    while (!atomic_load(&io->stop)) {
        qrpc__job *jobs;
        int k, i;

        /*
         * While requests wait, the replies gather for one write (work.c),
         * for IO_GATHER requests at most: a connection whose replies wait
         * must not wait for the others' requests for as long as they come.
         */
        if (a.standby || atomic_load_explicit(&io->jqueued, memory_order_relaxed) == 0 ||
            ++gathered >= IO_GATHER) {
            io_flush(io);
            gathered = 0;
        }
        if (a.standby) {
            if (!io_standby_wait(n))
                break;
        } else if ((jobs = io_take(n)) != NULL) {
            io_run(n, jobs);
            continue;
        } else {
            /*
             * Idle, then a last look at the queue: a thread queueing
             * requests kicks only if it sees a thread idle, so one queued
             * between our look and our count would otherwise be missed
             * (both are sequentially consistent: one of us sees the other).
             */
            atomic_fetch_add(&io->idle, 1);
            if (atomic_load(&io->jqueued) != 0) {
                atomic_fetch_sub(&io->idle, 1);
                continue;
            }
        }
        k = epoll_wait(io->ep, ev, IO_EVENTS, -1);
        if (!a.standby)
            atomic_fetch_sub(&io->idle, 1);
        if (k < 0) {
            if (errno != EINTR)
                qrpc__log(n, "epoll_wait: %s", strerror(errno));
            continue;
        }
        for (i = 0; i < k; i++) {
            uint64_t key = ev[i].data.u64, v;

            if (key == IO_KEY_WAKE) {
                /* left unread when stopping, so that every thread sees it */
                if (atomic_load(&io->stop))
                    continue;
                if (read(io->wakefd, &v, sizeof v) < 0 && errno != EAGAIN)
                    qrpc__log(n, "eventfd: %s", strerror(errno));
                /* after the read: a kick from now on writes again */
                atomic_store(&io->kicked, false);
            } else if (key == IO_KEY_TIMER) {
                io_tick(n);
            } else if (key == IO_KEY_LISTEN || key == IO_KEY_RLISTEN) {
                int fd = key == IO_KEY_LISTEN ? io->listenfd : io->rlistenfd;

                if (key == IO_KEY_LISTEN)
                    qrpc__tcp_accept(n, fd);
                else
                    qrpc__rdma_accept(n);
                (void)io_ctl(io, EPOLL_CTL_MOD, fd, EPOLLIN | EPOLLONESHOT, key);
            } else {
                io_conn_event(n, key, ev[i].events, a.standby);
            }
        }
    }
    return NULL;
}

/* Starts one more thread; QRPC_ENOMEM, QRPC_EIO. */
static int io_spawn(qrpc_node *n, bool standby)
{
    qrpc__io *io = n->io;
    io_arg *a = malloc(sizeof *a);

    if (a == NULL)
        return QRPC_ENOMEM;
    a->n = n;
    a->standby = standby;
    if (pthread_create(&io->threads[io->n_threads], NULL, io_main, a) != 0) {
        free(a);
        return QRPC_EIO;
    }
    io->n_threads++;
    return 0;
}

/* ---- start and stop ------------------------------------------------------------ */

/* Tells every thread to stop and joins them. */
static void io_join(qrpc_node *n)
{
    qrpc__io *io = n->io;
    unsigned i;

    atomic_store(&io->stop, true);
    io_wake_fd(n);      /* even if kicked: a thread may have read that one */
    pthread_mutex_lock(&io->standby_lock);
    pthread_cond_broadcast(&io->standby_cond);
    pthread_mutex_unlock(&io->standby_lock);
    for (i = 0; i < io->n_threads; i++)
        pthread_join(io->threads[i], NULL);
    io->n_threads = 0;
}

static void io_free(qrpc__io *io)
{
    if (io->timerfd >= 0)
        close(io->timerfd);
    if (io->wakefd >= 0)
        close(io->wakefd);
    if (io->ep >= 0)
        close(io->ep);
    pthread_cond_destroy(&io->standby_cond);
    pthread_mutex_destroy(&io->standby_lock);
    pthread_mutex_destroy(&io->timer_lock);
    pthread_mutex_destroy(&io->lock);
    free(io->slots);
    free(io->threads);
    free(io);
}

int qrpc__io_start(qrpc_node *n)
{
    qrpc__io *io;
    unsigned i;
    int rc = QRPC_EIO;

    if (n->io != NULL)
        return 0;
    io = calloc(1, sizeof *io);
    if (io == NULL)
        return QRPC_ENOMEM;
    io->ep = io->wakefd = io->timerfd = io->listenfd = io->rlistenfd = -1;
    io->free_head = IO_NO_SLOT;
    io->base = n->cfg.workers;
    atomic_init(&io->stop, false);
    atomic_init(&io->ticking, false);
    atomic_init(&io->kicked, false);
    atomic_init(&io->next_ns, UINT64_MAX);
    atomic_init(&io->flush_waiting, 0);
    atomic_init(&io->jqueued, 0);
    atomic_init(&io->idle, 0);
    atomic_init(&io->busy, 0);
    io->threads = calloc(io->base + 1, sizeof *io->threads);
    if (io->threads == NULL || pthread_mutex_init(&io->lock, NULL) != 0) {
        free(io->threads);
        free(io);
        return QRPC_ENOMEM;
    }
    /* Linux's mutex and condition variable initialisers cannot fail */
    pthread_mutex_init(&io->timer_lock, NULL);
    pthread_mutex_init(&io->standby_lock, NULL);
    pthread_cond_init(&io->standby_cond, NULL);
    io->ep = epoll_create1(EPOLL_CLOEXEC);
    io->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    io->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (io->ep < 0 || io->wakefd < 0 || io->timerfd < 0 ||
        io_ctl(io, EPOLL_CTL_ADD, io->wakefd, EPOLLIN, IO_KEY_WAKE) != 0 ||
        io_ctl(io, EPOLL_CTL_ADD, io->timerfd, EPOLLIN, IO_KEY_TIMER) != 0) {
        io_free(io);
        return rc;
    }
    n->io = io;
    for (i = 0; i <= io->base; i++) {
        rc = io_spawn(n, i == io->base);
        if (rc != 0)
            break;
    }
    if (rc != 0) {
        io_join(n);
        n->io = NULL;
        io_free(io);
        return rc;
    }
    return 0;
}

/* Watches listening descriptor fd, kept in *slot, under key (one-shot). */
static int io_listen_on(qrpc__io *io, int *slot, int fd, uint64_t key)
{
    *slot = fd;
    if (io_ctl(io, EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLONESHOT, key) != 0) {
        *slot = -1;
        return errno == ENOMEM ? QRPC_ENOMEM : QRPC_EIO;
    }
    return 0;
}

int qrpc__io_listen(qrpc_node *n, int fd)
{
    return io_listen_on(n->io, &n->io->listenfd, fd, IO_KEY_LISTEN);
}

int qrpc__io_listen_rdma(qrpc_node *n, int fd)
{
    return io_listen_on(n->io, &n->io->rlistenfd, fd, IO_KEY_RLISTEN);
}

void qrpc__io_stop(qrpc_node *n)
{
    qrpc__io *io = n->io;
    qrpc__job *jobs, *next;
    uint32_t s;

    if (io == NULL)
        return;
    io_join(n);
    /* replies left for the loop go out before the connections close */
    io_flush(io);
    if (io->listenfd >= 0) {
        qrpc__io_del(n, io->listenfd);
        close(io->listenfd);
        io->listenfd = -1;
    }
    /* queued, never run: the callers learn so */
    for (jobs = io->jhead; jobs != NULL; jobs = next) {
        next = jobs->next;
        jobs->next = NULL;
        qrpc__work_refuse(jobs);
    }
    io->jhead = io->jtail = NULL;
    /*
     * The loop is gone, so the table is ours: fail every connection (its
     * calls complete with QRPC_ECLOSED) and drop the loop's references.
     */
    for (s = 0; s < io->n_slots; s++) {
        if (io->slots[s].c == NULL)
            continue;
        qrpc__conn_fail(io->slots[s].c, QRPC_ECLOSED, NULL);
        qrpc__conn_unref(io->slots[s].c);
        io->slots[s].c = NULL;
    }
    io_flush(io);
    io_free(io);
    n->io = NULL;
}
