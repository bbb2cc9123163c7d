/*
 * tcp.c - the TCP transport: addresses ("host:port", "[v6]:port"), the
 * node's listening socket and what it accepts, and the FrontEnd of a
 * remote node, which dials lazily on the first call and again after its
 * connection breaks.  What happens on a connection is conn.c's.
 *
 * A FrontEnd has one connection, which every client of that destination
 * shares and calls from many threads interleave on, and a second one, the
 * bulk lane (config bulk_lane), for calls with large arguments: frames
 * interleave only while we hold them, and once a large argument's bytes
 * are in the kernel's buffers a small call waits behind all of them.
 * Dialling happens on the calling thread, bounded by the call's deadline
 * and QRPC__DIAL_MS; a destination that refuses or cannot be reached
 * fails the call at once with QRPC_EUNAVAILABLE (nothing was sent).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net.h"

#define QRPC__DIAL_MS 10000u    /* longest wait for a connect to complete */
#define TCP_NOTSENT_LOWAT_BYTES (256 << 10)     /* unsent bytes a socket may hold */

typedef struct tcp_fe {
    qrpc__cfe cfe;              /* first: the FrontEnd's connection */
    char addr[QRPC__ADDR_MAX];
    struct sockaddr_storage sa;
    socklen_t salen;
} tcp_fe;

/* ---- addresses ------------------------------------------------------------ */

int qrpc__addr_parse(const char *text, bool passive, struct sockaddr_storage *sa,
                     socklen_t *salen)
{
    char host[QRPC__ADDR_MAX];
    const char *colon, *port;
    struct addrinfo hints, *res = NULL;
    size_t hl;
    char *end;
    long pn;

    if (text == NULL || strlen(text) >= sizeof host)
        return QRPC_EADDR;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');

        if (close == NULL || close[1] != ':')
            return QRPC_EADDR;
        hl = (size_t)(close - text - 1);
        memcpy(host, text + 1, hl);
        port = close + 2;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL || strchr(text, ':') != colon)
            return QRPC_EADDR;      /* a bare IPv6 address needs brackets */
        hl = (size_t)(colon - text);
        memcpy(host, text, hl);
        port = colon + 1;
    }
    host[hl] = '\0';
    errno = 0;
    pn = strtol(port, &end, 10);
    if (*port == '\0' || *end != '\0' || errno != 0 || pn < 0 || pn > 65535 ||
        (pn == 0 && !passive))
        return QRPC_EADDR;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    if (getaddrinfo(hl > 0 ? host : NULL, port, &hints, &res) != 0 || res == NULL)
        return QRPC_EADDR;
    memcpy(sa, res->ai_addr, res->ai_addrlen);
    *salen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

void qrpc__addr_format(const struct sockaddr *sa, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
        snprintf(out, len, "[%s]:%u", ip, (unsigned)ntohs(s6->sin6_port));
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
        snprintf(out, len, "%s:%u", ip, (unsigned)ntohs(s4->sin_port));
    } else {
        snprintf(out, len, "?");
    }
}

/*
 * A bound on the kernel's receive buffer, when the node sets one: set
 * before listen() (accepted sockets inherit it) and before connect(), so
 * that the window scale offered in the handshake fits it.
 */
static void tcp_rcvbuf(const qrpc_node *n, int fd)
{
    int v;

    if (n->cfg.tcp_rcvbuf == 0)
        return;
    v = (int)n->cfg.tcp_rcvbuf;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
}

static void tcp_tune(int fd)
{
    int one = 1, lowat = TCP_NOTSENT_LOWAT_BYTES;

    /* small calls must not wait for Nagle */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /*
     * Nor behind megabytes of a large message sitting in the kernel: our
     * writer interleaves frames, but only those it still holds.  Keeping
     * the unsent bytes in the socket low keeps the rest of a large
     * message with the writer, where a small one can pass it.
     */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat);
}

/* ---- listening ----------------------------------------------------------------- */

int qrpc__tcp_listen(qrpc_node *n)
{
    struct sockaddr_storage sa;
    socklen_t salen;
    int fd, one = 1, rc;

    rc = qrpc__addr_parse(n->cfg.listen, true, &sa, &salen);
    if (rc != 0)
        return rc;
    fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return QRPC_EIO;
    /* a restarted server gets its port back at once */
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    tcp_rcvbuf(n, fd);
    if (bind(fd, (struct sockaddr *)&sa, salen) != 0 || listen(fd, 512) != 0) {
        qrpc__log(n, "cannot listen on %s: %s", n->cfg.listen, strerror(errno));
        close(fd);
        return errno == EADDRINUSE || errno == EADDRNOTAVAIL ? QRPC_EADDR : QRPC_EIO;
    }
    salen = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &salen) == 0)
        qrpc__addr_format((struct sockaddr *)&sa, n->address, sizeof n->address);
    rc = qrpc__io_listen(n, fd);
    if (rc != 0)
        close(fd);
    return rc;
}

void qrpc__tcp_accept(qrpc_node *n, int listenfd)
{
    for (;;) {
        struct sockaddr_storage sa;
        socklen_t salen = sizeof sa;
        char peer[QRPC__ADDR_MAX];
        qrpc__conn *c;
        int fd = accept4(listenfd, (struct sockaddr *)&sa, &salen,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE) {
                /*
                 * Out of descriptors: the listener stays readable, and a
                 * level-triggered loop would spin.  Turning the pending
                 * connection away with the spare descriptor keeps the
                 * loop serving the connections it has.
                 */
                qrpc__log(n, "accept: %s; refusing a connection", strerror(errno));
                if (n->spare_fd >= 0) {
                    close(n->spare_fd);
                    fd = accept(listenfd, NULL, NULL);
                    if (fd >= 0)
                        close(fd);
                    n->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                }
            } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
                qrpc__log(n, "accept: %s", strerror(errno));
            }
            return;
        }
        tcp_tune(fd);
        qrpc__addr_format((struct sockaddr *)&sa, peer, sizeof peer);
        if (qrpc__conn_new(n, fd, QRPC__CONN_SERVER, peer, &c) != 0) {
            qrpc__log(n, "dropping connection from %s: out of resources", peer);
            close(fd);
            continue;
        }
        qrpc__conn_unref(c);    /* the loop keeps its own */
    }
}

/* ---- the FrontEnd of a remote node ------------------------------------------------- */

/* Connects fe's socket, waiting until deadline_ns at most (qrpc__cfe's dial). */
static int tcp_dial(qrpc__cfe *cfe, uint64_t deadline_ns, qrpc__conn **out)
{
    tcp_fe *fe = (tcp_fe *)cfe;
    qrpc_node *n = cfe->node;
    uint64_t now = qrpc__now_ns(n), wait_ms;
    struct pollfd pfd;
    socklen_t elen = sizeof(int);
    int fd, err = 0, rc;

    fd = socket(fe->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return QRPC_EUNAVAILABLE;
    tcp_tune(fd);
    tcp_rcvbuf(n, fd);
    if (connect(fd, (struct sockaddr *)&fe->sa, fe->salen) != 0) {
        if (errno != EINPROGRESS) {
            err = errno;
            goto fail;
        }
        wait_ms = deadline_ns <= now ? 0 : (deadline_ns - now) / 1000000u;
        if (wait_ms > QRPC__DIAL_MS)
            wait_ms = QRPC__DIAL_MS;
        pfd.fd = fd;
        pfd.events = POLLOUT;
        do
            rc = poll(&pfd, 1, (int)wait_ms);
        while (rc < 0 && errno == EINTR);
        if (rc == 0) {
            err = ETIMEDOUT;
            goto fail;
        }
        if (rc < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0) {
            if (err == 0)
                err = errno;
            goto fail;
        }
    }
    rc = qrpc__conn_new(n, fd, QRPC__CONN_CLIENT, fe->addr, out);
    if (rc != 0) {
        close(fd);
        return QRPC_EUNAVAILABLE;
    }
    return 0;

fail:
    close(fd);
    qrpc__log(n, "cannot connect to %s: %s", fe->addr, strerror(err));
    return QRPC_EUNAVAILABLE;
}

static int tcp_fe_init(void **fep, qrpc_node *n, const char *addr)
{
    tcp_fe *fe;
    int rc;

    fe = calloc(1, sizeof *fe);
    if (fe == NULL)
        return QRPC_ENOMEM;
    rc = qrpc__addr_parse(addr, false, &fe->sa, &fe->salen);
    if (rc != 0) {
        free(fe);
        return rc;
    }
    qrpc__cfe_init(&fe->cfe, n, tcp_dial);
    if (n->cfg.bulk_lane > 0)
        fe->cfe.bulk_min = (size_t)n->cfg.bulk_lane;
    snprintf(fe->addr, sizeof fe->addr, "%s", addr);
    *fep = fe;
    return 0;
}

static const qrpc__fe_ops tcp_fe_ops = {
    .fe_init = tcp_fe_init,
    .fe_close = qrpc__cfe_op_close,
    .fe_fini = qrpc__cfe_op_fini,
    .fe_call = qrpc__cfe_op_call,
    .fe_wait = qrpc__cfe_op_wait,
};

const qrpc__tran qrpc__tran_tcp = {
    .tran_name = "tcp",
    .tran_fe = &tcp_fe_ops,
};
