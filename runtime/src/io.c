/*
 * io.c - a node's I/O thread: one epoll loop that accepts connections on
 * the listening socket, reads every connection, resumes writes the socket
 * could not take at once, and keeps time for call deadlines and stalled
 * peers.  It is the "background receiving thread" of the original design.
 *
 * It does not run handlers (the workers do: work.c) and it does not write
 * in the common case (senders do: conn.c).  Completion callbacks of
 * asynchronous calls run here, so a callback that blocks holds up every
 * connection of the node: qrpc(3) says so.
 *
 * Known limit: ticks walk every connection, which is fine for the tens of
 * peers a node talks to and would want a shared timer heap for thousands.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "net.h"

#define IO_EVENTS 64

/* epoll's data.ptr for the two fds that are not connections */
static char io_tag_wake, io_tag_listen;

struct qrpc__io {
    int ep;
    int wakefd;
    int listenfd;               /* -1 when the node does not listen */
    pthread_t thread;
    atomic_bool stop;
    /* the earliest moment the loop must wake for; UINT64_MAX: none */
    atomic_uint_least64_t next_ns;
    /* the connections being watched, each holding a reference */
    pthread_mutex_t lock;
    qrpc__conn **conns;
    size_t n_conns, cap_conns;
};

int qrpc__io_add(qrpc_node *n, int fd, qrpc__conn *c)
{
    struct epoll_event ev;

    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = c != NULL ? (void *)c : (void *)&io_tag_listen;
    if (epoll_ctl(n->io->ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        return errno == ENOMEM ? QRPC_ENOMEM : QRPC_EIO;
    return 0;
}

void qrpc__io_del(qrpc_node *n, int fd)
{
    if (n->io != NULL)
        (void)epoll_ctl(n->io->ep, EPOLL_CTL_DEL, fd, NULL);
}

void qrpc__io_want_write(qrpc_node *n, qrpc__conn *c, bool on)
{
    struct epoll_event ev;

    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0);
    ev.data.ptr = c;
    /* ENOENT: the connection failed and was removed; nothing to wait for */
    (void)epoll_ctl(n->io->ep, EPOLL_CTL_MOD, qrpc__conn_fd(c), &ev);
}

void qrpc__io_wake(qrpc_node *n, uint64_t deadline_ns)
{
    qrpc__io *io = n->io;
    uint64_t cur = atomic_load(&io->next_ns);
    uint64_t one = 1;

    while (deadline_ns < cur) {
        if (atomic_compare_exchange_weak(&io->next_ns, &cur, deadline_ns)) {
            if (write(io->wakefd, &one, sizeof one) < 0 && errno != EAGAIN)
                qrpc__log(n, "cannot wake the I/O thread: %s", strerror(errno));
            return;
        }
    }
}

void qrpc__io_track(qrpc_node *n, qrpc__conn *c)
{
    qrpc__io *io = n->io;

    pthread_mutex_lock(&io->lock);
    if (io->n_conns == io->cap_conns) {
        size_t ncap = io->cap_conns ? io->cap_conns * 2 : 16;
        qrpc__conn **nc = realloc(io->conns, ncap * sizeof *nc);

        if (nc == NULL) {
            pthread_mutex_unlock(&io->lock);
            /* untracked: the caller's failure path drops the reference */
            qrpc__conn_fail(c, QRPC_EUNKNOWN, "out of memory");
            return;
        }
        io->conns = nc;
        io->cap_conns = ncap;
    }
    io->conns[io->n_conns++] = c;
    pthread_mutex_unlock(&io->lock);
}


/*
 * Drops dead connections and ticks the others.  The references are
 * dropped outside the lock: the last one closes the socket.
 */
static uint64_t io_tick(qrpc_node *n, uint64_t now)
{
    qrpc__io *io = n->io;
    qrpc__conn **snap, **dead;
    size_t count, i, n_dead = 0;
    uint64_t next = UINT64_MAX;

    pthread_mutex_lock(&io->lock);
    count = io->n_conns;
    snap = malloc((count ? count : 1) * 2 * sizeof *snap);
    if (snap == NULL) {
        pthread_mutex_unlock(&io->lock);
        return now + 10000000u;         /* try again in 10 ms */
    }
    dead = snap + count;
    for (i = 0; i < io->n_conns;) {
        if (qrpc__conn_dead(io->conns[i])) {
            dead[n_dead++] = io->conns[i];
            io->conns[i] = io->conns[--io->n_conns];
            continue;
        }
        qrpc__conn_ref(io->conns[i]);
        snap[i] = io->conns[i];
        i++;
    }
    count = io->n_conns;
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
    return next;
}

static void *io_main(void *arg)
{
    qrpc_node *n = arg;
    qrpc__io *io = n->io;
    struct epoll_event ev[IO_EVENTS];

    while (!atomic_load(&io->stop)) {
        uint64_t now = qrpc__now_ns(n), next = atomic_load(&io->next_ns);
        int timeout, k, i;

        if (next <= now) {
            atomic_store(&io->next_ns, UINT64_MAX);
            next = io_tick(n, now);
            qrpc__io_wake(n, next);
            continue;
        }
        timeout = next == UINT64_MAX ? -1
                : (next - now) / 1000000u >= INT32_MAX ? INT32_MAX
                : (int)((next - now + 999999u) / 1000000u);
        k = epoll_wait(io->ep, ev, IO_EVENTS, timeout);
        if (k < 0) {
            if (errno != EINTR)
                qrpc__log(n, "epoll_wait: %s", strerror(errno));
            continue;
        }
        for (i = 0; i < k; i++) {
            void *p = ev[i].data.ptr;

            if (p == &io_tag_wake) {
                uint64_t v;

                if (read(io->wakefd, &v, sizeof v) < 0 && errno != EAGAIN)
                    qrpc__log(n, "eventfd: %s", strerror(errno));
                continue;
            }
            if (p == &io_tag_listen) {
                qrpc__tcp_accept(n, io->listenfd);
                continue;
            }
            if (ev[i].events & EPOLLOUT)
                qrpc__conn_on_writable(p);
            if (ev[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                qrpc__conn_on_readable(p);
        }
        /* dead connections are reaped at once: their fds must not linger */
        for (i = 0; i < k; i++) {
            void *p = ev[i].data.ptr;

            if (p != &io_tag_wake && p != &io_tag_listen && qrpc__conn_dead(p)) {
                atomic_store(&io->next_ns, 0);
                break;
            }
        }
    }
    return NULL;
}

int qrpc__io_start(qrpc_node *n)
{
    qrpc__io *io;
    struct epoll_event ev;
    int rc = QRPC_EIO;

    if (n->io != NULL)
        return 0;
    io = calloc(1, sizeof *io);
    if (io == NULL)
        return QRPC_ENOMEM;
    io->listenfd = -1;
    io->wakefd = -1;
    atomic_init(&io->stop, false);
    atomic_init(&io->next_ns, UINT64_MAX);
    if (pthread_mutex_init(&io->lock, NULL) != 0) {
        free(io);
        return QRPC_ENOMEM;
    }
    io->ep = epoll_create1(EPOLL_CLOEXEC);
    if (io->ep < 0)
        goto fail;
    io->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (io->wakefd < 0)
        goto fail;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.ptr = &io_tag_wake;
    if (epoll_ctl(io->ep, EPOLL_CTL_ADD, io->wakefd, &ev) != 0)
        goto fail;
    n->io = io;
    if (pthread_create(&io->thread, NULL, io_main, n) != 0) {
        n->io = NULL;
        goto fail;
    }
    return 0;

fail:
    if (io->wakefd >= 0)
        close(io->wakefd);
    if (io->ep >= 0)
        close(io->ep);
    pthread_mutex_destroy(&io->lock);
    free(io);
    return rc;
}

int qrpc__io_listen(qrpc_node *n, int fd)
{
    int rc;

    n->io->listenfd = fd;
    rc = qrpc__io_add(n, fd, NULL);
    if (rc != 0)
        n->io->listenfd = -1;
    return rc;
}

void qrpc__io_stop(qrpc_node *n)
{
    qrpc__io *io = n->io;
    uint64_t one = 1;
    size_t i;

    if (io == NULL)
        return;
    atomic_store(&io->stop, true);
    if (write(io->wakefd, &one, sizeof one) < 0 && errno != EAGAIN)
        qrpc__log(n, "eventfd: %s", strerror(errno));
    pthread_join(io->thread, NULL);
    if (io->listenfd >= 0) {
        qrpc__io_del(n, io->listenfd);
        close(io->listenfd);
        io->listenfd = -1;
    }
    /*
     * The loop is gone, so the list is ours: fail every connection (its
     * calls complete with QRPC_ECLOSED) and drop the loop's references.
     */
    for (i = 0; i < io->n_conns; i++) {
        qrpc__conn_fail(io->conns[i], QRPC_ECLOSED, NULL);
        qrpc__conn_unref(io->conns[i]);
    }
    free(io->conns);
    close(io->wakefd);
    close(io->ep);
    pthread_mutex_destroy(&io->lock);
    free(io);
    n->io = NULL;
}
