/*
 * faultproxy.c - a seeded, frame-aware TCP proxy that injects faults into
 * qrpc conversations, for tests.
 *
 * What it is: a single-threaded epoll loop that listens on 127.0.0.1 (a
 * port of the system's choosing, printed on stdout), connects every
 * accepted connection to one upstream on 127.0.0.1, and forwards both
 * directions.  Each direction is parsed as qrpc frames (qrpc-protocol(7),
 * FRAMES: a 16-byte little-endian header, then the payload), and per
 * frame it may drop, duplicate or delay a message that travels in a single
 * frame, or cut the connection after a frame or in the middle of one.
 * Decisions come from a seeded PRNG, one stream per connection and
 * direction (splitmix64 of the seed, the connection's accept number and
 * the direction), and every frame draws the same number of values whatever
 * is decided, so the same seed and the same frames on the n-th connection
 * give the same decisions however the bytes are split by the network.
 *
 * Which frames are affected: --*-req options act on REQUEST frames flowing
 * from the client to the upstream, --*-rep options on REPLY frames flowing
 * back, and only on those with END set: a REQUEST or REPLY frame is the
 * first frame of its message, so with END it is the whole message and
 * losing or repeating it loses or repeats a message.  HELLO, DATA, PING,
 * PONG, GOAWAY and every frame of a multi-frame message are forwarded as
 * they are (else the stream would become a protocol violation rather than
 * a lossy network).  A delayed message is held for --delay-ms, then sent at
 * the next frame boundary of its direction; frames behind it pass it.
 *
 * Cuts: the connection stops forwarding at the cut point; what was
 * forwarded before it is still delivered, then both sides get a FIN
 * (shutdown) and whatever they send afterwards is read and discarded until
 * they close (at most 2 s).  A plain FIN makes the cut point exact: a peer
 * sees every byte before it and none after.  --cut-rst resets both sides
 * instead (SO_LINGER 0), and bytes not yet delivered may then be lost too.
 * Messages held back for a delay are lost in a cut, as on a network.
 *
 * A stall (--stall-big) stands for a path that stops carrying one
 * connection while others flow: at the first REQUEST frame without END
 * (the start of a message split into frames), that connection's
 * client-to-upstream direction stops.  Neither that frame nor anything
 * after it is forwarded, and the client's bytes are no longer read, so
 * the client's sends back up; replies still flow.  It lasts until the
 * proxy exits (the client's close of a stalled connection is not seen
 * either).
 *
 * A frame chosen for a cut in its middle is otherwise forwarded as it is
 * (not dropped, duplicated or delayed), so that its first bytes do arrive.
 * --cut-after and the "frames" statistic count the whole frames of both
 * directions, dropped ones included.  A reset from either side is passed
 * on (after the bytes that came before it), and when the upstream refuses
 * the connection, the client's connection is reset.
 *
 * Buffers are bounded: a direction stops reading its source while
 * FLOW_LIMIT bytes or more wait for its destination (to be written or
 * held back), so a slow reader slows the writer instead of growing the
 * proxy.  A frame being duplicated or delayed is held whole, so with the
 * largest frames a direction can hold up to about FLOW_LIMIT plus four
 * frames of MAX_PAYLOAD; frames that pass unharmed are streamed.
 *
 * What it is not: a protocol validator (it checks only the magic, the
 * version and the payload length, to find frame boundaries; on anything
 * else it forwards the rest of that direction unparsed), a general proxy
 * (IPv4 loopback only, one upstream), or fast (one thread, copies).  It
 * never rewrites a byte of a frame it forwards.
 *
 * It exits when its stdin reaches end of file (the lifeline: a test holds
 * the other end of a pipe, so the proxy never outlives it) or on SIGTERM
 * or SIGINT, closing every connection.  Statistics go to stderr at exit
 * and on SIGUSR1, and to the --stats file.  Run with --help for the
 * options.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HDR_LEN      16u
#define MAX_PAYLOAD  (16u << 20)         /* larger payload lengths are not frames */
#define FLOW_LIMIT   (1u << 20)          /* bytes waiting before a source is paused */
#define READ_CHUNK   65536u
#define DRAIN_NS     2000000000ull       /* how long a cut or reset connection may linger */
#define NO_CUT       UINT64_MAX

#define T_REQUEST 2
#define T_REPLY   3
#define F_END     0x01

enum { TO_UP = 0, TO_CLIENT = 1 };      /* flow directions; also the index of the source fd */
enum { P_HEADER, P_PAYLOAD, P_RAW };
enum { A_PASS, A_DROP, A_HOLD };

/* ---- options and statistics ---------------------------------------------- */

typedef struct policy {
    unsigned drop, dup, delay;          /* per mille */
} policy;

static struct {
    uint16_t upstream_port;
    uint64_t seed;
    policy pol[2];                      /* [TO_UP]: requests, [TO_CLIENT]: replies */
    unsigned delay_ms;
    unsigned cut;                       /* per mille */
    bool cut_mid, cut_rst, lifeline, stall_big;
    uint64_t cut_after;                 /* 0: off */
    const char *stats_path;
} opt = { .seed = 1, .delay_ms = 50, .lifeline = true };

static struct {
    uint64_t connections, frames, dropped[2], dup[2], delayed, cuts, unparsed, stalls;
} st;

/* ---- small helpers --------------------------------------------------------- */

/*
 * Prints "faultproxy: MESSAGE" and exits with status: 1 for a system
 * error (die), 2 for a usage error (usage_error, with a pointer to --help).
 */
static void fail(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

static void fail(int status, const char *fmt, ...)
{
    va_list ap;

    fputs("faultproxy: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(status == 2 ? "\n(faultproxy --help lists the options)\n" : "\n", stderr);
    exit(status);
}

#define die(...)         fail(1, __VA_ARGS__)
#define usage_error(...) fail(2, __VA_ARGS__)

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* splitmix64: the next value of the stream whose state is *s. */
static uint64_t rng_next(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15u;
    return mix64(*s);
}

static bool roll(uint64_t r, unsigned per_mille)
{
    return r % 1000u < per_mille;
}

/* A growable byte queue: bytes [head, head + len) of p are pending. */
typedef struct buf {
    uint8_t *p;
    size_t head, len, cap;
} buf;

static void buf_add(buf *b, const void *data, size_t n)
{
    if (n == 0)
        return;
    if (b->head > 0 && b->head + b->len + n > b->cap) {
        memmove(b->p, b->p + b->head, b->len);
        b->head = 0;
    }
    if (b->len + n > b->cap) {
        size_t ncap = b->cap ? b->cap : 4096;
        uint8_t *np;

        while (ncap < b->len + n)
            ncap *= 2;
        np = realloc(b->p, ncap);
        if (np == NULL)
            die("out of memory (%zu bytes)", ncap);
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->head + b->len, data, n);
    b->len += n;
}

static void buf_take(buf *b, size_t n)
{
    b->head += n;
    b->len -= n;
    if (b->len == 0)
        b->head = 0;
}

static void buf_free(buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- connections -------------------------------------------------------------- */

/* A message held back by a delay. */
typedef struct held {
    struct held *next;
    uint64_t due_ns;
    size_t len;
    uint8_t data[];
} held;

/* One direction of a connection: from fd[dir] to fd[1 - dir]. */
typedef struct flow {
    int dir;
    uint64_t rng;
    int state;                          /* P_* */
    uint8_t hdr[HDR_LEN];
    size_t hdr_len;
    uint64_t total, done;               /* the current frame's size and bytes seen */
    int act;                            /* A_*: what happens to the current frame */
    bool dup, delay, cut_end;
    uint64_t cut_at;                    /* cut when done reaches this, or NO_CUT */
    bool out_mid;                       /* out ends inside a frame being streamed */
    buf out;                            /* bytes for the destination */
    buf hold;                           /* the current frame, held whole */
    held *dq, *dq_tail;                 /* delayed messages, due in order */
    size_t dq_bytes;
    bool src_eof;                       /* the source has finished sending */
    bool stalled;                       /* --stall-big: nothing more is read or passed */
    bool dst_shut;                      /* we have shut down writing to the destination */
} flow;

struct conn;

typedef struct tag {                    /* what an epoll event points at */
    struct conn *c;                     /* NULL: the listener, stdin or the signalfd */
    int side;
} tag;

typedef struct conn {
    struct conn *prev, *next;
    int fd[2];                          /* [0]: the client, [1]: the upstream */
    uint32_t ev[2];                     /* epoll interest now (for EPOLL_CTL_MOD) */
    bool in_epoll[2];
    tag tags[2];
    flow f[2];                          /* f[TO_UP] reads fd[0], f[TO_CLIENT] reads fd[1] */
    bool connecting;
    bool cutting;
    bool cut_next;                      /* --cut-after with --cut-mid: cut inside the next frame */
    bool gone[2];                       /* side s was reset: nothing more is written to it */
    bool resetting;                     /* reset both once f[reset_side] is flushed */
    int reset_side;
    bool dead;
    uint64_t index, frames, deadline;   /* deadline: of a cut or a reset */
} conn;

static int ep = -1;
static conn *conns;
static conn *graveyard;                 /* closed during this batch of events; freed after it */
static int listen_fd = -1;
static bool accept_paused;
static tag t_listen, t_stdin, t_signal;   /* c == NULL: told apart by address */

static void ep_ctl(int op, int fd, uint32_t events, void *ptr)
{
    struct epoll_event e;

    memset(&e, 0, sizeof e);
    e.events = events;
    e.data.ptr = ptr;
    if (epoll_ctl(ep, op, fd, &e) != 0)
        die("epoll_ctl: %s", strerror(errno));
}

static void flow_clear_delayed(flow *f)
{
    while (f->dq != NULL) {
        held *h = f->dq;

        f->dq = h->next;
        free(h);
    }
    f->dq_tail = NULL;
    f->dq_bytes = 0;
}

/* Closes both sockets (resetting them when rst) and buries the connection. */
static void conn_close(conn *c, bool rst)
{
    int s;

    if (c->dead)
        return;
    for (s = 0; s < 2; s++) {
        if (c->fd[s] >= 0 && rst) {
            struct linger lg = { 1, 0 };

            (void)setsockopt(c->fd[s], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        if (c->fd[s] >= 0)
            close(c->fd[s]);            /* also takes it out of the epoll set */
        c->fd[s] = -1;
        flow_clear_delayed(&c->f[s]);
        buf_free(&c->f[s].out);
        buf_free(&c->f[s].hold);
    }
    c->dead = true;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->next = graveyard;
    graveyard = c;
    if (accept_paused) {
        ep_ctl(EPOLL_CTL_MOD, listen_fd, EPOLLIN, &t_listen);
        accept_paused = false;
    }
}

/* Stops forwarding: flush what passed before this point, then FIN (or RST). */
static void conn_cut(conn *c)
{
    int s;

    if (c->cutting || c->dead)
        return;
    c->cutting = true;
    st.cuts++;
    for (s = 0; s < 2; s++) {
        flow *f = &c->f[s];

        flow_clear_delayed(f);
        f->hold.len = f->hold.head = 0;
        f->hdr_len = 0;
        f->state = P_RAW;               /* nothing more is parsed, or added at EOF */
        f->out_mid = false;
    }
    if (opt.cut_rst)
        conn_close(c, true);
    else
        c->deadline = now_ns() + DRAIN_NS;
}

/* Appends the due delayed messages to out, if out is at a frame boundary. */
static void flow_release(flow *f, uint64_t now, bool all)
{
    while (f->dq != NULL && !f->out_mid && (all || f->dq->due_ns <= now)) {
        held *h = f->dq;

        buf_add(&f->out, h->data, h->len);
        f->dq_bytes -= h->len;
        f->dq = h->next;
        if (f->dq == NULL)
            f->dq_tail = NULL;
        free(h);
    }
}

static void flow_delay(flow *f, const buf *b)
{
    held *h = malloc(sizeof *h + b->len);

    if (h == NULL)
        die("out of memory");
    h->next = NULL;
    h->due_ns = now_ns() + (uint64_t)opt.delay_ms * 1000000u;
    h->len = b->len;
    memcpy(h->data, b->p + b->head, b->len);
    if (f->dq_tail != NULL)
        f->dq_tail->next = h;
    else
        f->dq = h;
    f->dq_tail = h;
    f->dq_bytes += h->len;
}

/* The current frame is complete: act on it, count it, maybe cut. */
static void frame_end(conn *c, flow *f)
{
    if (f->act == A_DROP) {
        st.dropped[f->dir]++;
    } else if (f->act == A_HOLD) {
        if (f->dup) {
            st.dup[f->dir]++;
            buf_add(&f->out, f->hold.p + f->hold.head, f->hold.len);
        }
        if (f->delay) {
            st.delayed++;
            flow_delay(f, &f->hold);
        } else {
            buf_add(&f->out, f->hold.p + f->hold.head, f->hold.len);
        }
        f->hold.len = f->hold.head = 0;
    }
    f->out_mid = false;
    f->state = P_HEADER;
    f->hdr_len = 0;
    st.frames++;
    c->frames++;
    flow_release(f, now_ns(), false);
    if (f->cut_end || (opt.cut_after != 0 && c->frames == opt.cut_after && !opt.cut_mid))
        conn_cut(c);
    else if (opt.cut_after != 0 && c->frames == opt.cut_after)
        c->cut_next = true;
}

/* Bytes of the current frame (n at most what is left of it). */
static void frame_feed(conn *c, flow *f, const uint8_t *p, size_t n)
{
    bool cut = false;

    if (f->cut_at != NO_CUT && f->done + n >= f->cut_at) {
        n = (size_t)(f->cut_at - f->done);
        cut = true;
    }
    if (f->act == A_PASS)
        buf_add(&f->out, p, n);
    else if (f->act == A_HOLD)
        buf_add(&f->hold, p, n);
    f->done += n;
    if (cut)
        conn_cut(c);
    else if (f->done == f->total)
        frame_end(c, f);
}

/* A whole header has arrived: decide the frame's fate, then feed the header. */
static void frame_begin(conn *c, flow *f)
{
    uint8_t type = f->hdr[3], flags = f->hdr[4];
    const policy *pol = &opt.pol[f->dir];
    bool single = (flags & F_END) != 0 &&
                  type == (f->dir == TO_UP ? T_REQUEST : T_REPLY);
    /* Always the same five draws, so that decisions stay aligned with frames. */
    uint64_t r_drop = rng_next(&f->rng), r_dup = rng_next(&f->rng);
    uint64_t r_delay = rng_next(&f->rng), r_cut = rng_next(&f->rng);
    uint64_t r_off = rng_next(&f->rng);
    bool cut = roll(r_cut, opt.cut) || c->cut_next;

    if (opt.stall_big && f->dir == TO_UP && type == T_REQUEST && !(flags & F_END)) {
        f->stalled = true;              /* this frame and the rest stay with the client */
        st.stalls++;
        return;
    }
    f->total = HDR_LEN + (uint64_t)get_le32(f->hdr + 12);
    f->done = 0;
    f->act = A_PASS;
    f->dup = f->delay = f->cut_end = false;
    f->cut_at = NO_CUT;
    if (cut && opt.cut_mid) {
        /* a strict prefix of the frame, at least one byte: the frame passes as is */
        f->cut_at = 1 + r_off % (f->total - 1);
        c->cut_next = false;
    } else {
        f->cut_end = cut;
        if (single && roll(r_drop, pol->drop)) {
            f->act = A_DROP;
        } else if (single) {
            f->dup = roll(r_dup, pol->dup);
            f->delay = roll(r_delay, pol->delay);
            if (f->dup || f->delay)
                f->act = A_HOLD;
        }
    }
    f->out_mid = f->act == A_PASS;
    f->state = P_PAYLOAD;
    frame_feed(c, f, f->hdr, HDR_LEN);
}

/* The rest of this direction is not frames: forward it as it comes. */
static void flow_go_raw(flow *f)
{
    st.unparsed++;
    f->state = P_RAW;
    flow_release(f, 0, true);           /* at a boundary: these came first */
    buf_add(&f->out, f->hdr, f->hdr_len);
    f->hdr_len = 0;
}

/* Bytes read from the source of f. */
static void flow_input(conn *c, flow *f, const uint8_t *p, size_t n)
{
    while (n > 0 && !c->cutting && !c->dead && !f->stalled) {
        if (f->state == P_RAW) {
            buf_add(&f->out, p, n);
            return;
        }
        if (f->state == P_HEADER) {
            static const uint8_t lead[3] = { 'Q', 'R', 1 };    /* magic, version */
            size_t k = HDR_LEN - f->hdr_len;

            if (k > n)
                k = n;
            memcpy(f->hdr + f->hdr_len, p, k);
            p += k;
            n -= k;
            f->hdr_len += k;
            if (memcmp(f->hdr, lead, f->hdr_len < 3 ? f->hdr_len : 3) != 0 ||
                (f->hdr_len == HDR_LEN && get_le32(f->hdr + 12) > MAX_PAYLOAD)) {
                flow_go_raw(f);
                continue;
            }
            if (f->hdr_len == HDR_LEN)
                frame_begin(c, f);
        } else {
            size_t k = f->total - f->done < n ? (size_t)(f->total - f->done) : n;

            frame_feed(c, f, p, k);
            p += k;
            n -= k;
        }
    }
}

/*
 * The source of f has ended.  At a frame boundary, delayed messages still
 * go at their time.  Mid-frame, the frame goes out truncated as it came;
 * delayed messages go at once ahead of it if they still can (none of it
 * is out yet), else they are lost.
 */
static void flow_eof(flow *f)
{
    f->src_eof = true;
    if ((f->state == P_HEADER && f->hdr_len > 0) || f->state == P_PAYLOAD) {
        flow_release(f, 0, true);
        flow_clear_delayed(f);
        if (f->state == P_HEADER)
            buf_add(&f->out, f->hdr, f->hdr_len);
        else
            buf_add(&f->out, f->hold.p + f->hold.head, f->hold.len);
    }
    f->hold.len = f->hold.head = 0;
    f->hdr_len = 0;
    f->state = P_RAW;
    f->out_mid = false;
}

/*
 * Side s was reset, or could not be written to: what would go to it is
 * dropped.  What it sent before is still read (see conn_reset_from).
 */
static void conn_side_gone(conn *c, int s)
{
    flow *to = &c->f[1 - s];

    c->gone[s] = true;
    to->out.len = to->out.head = 0;
    flow_clear_delayed(to);
    to->dst_shut = true;
}

/*
 * Side s ended in a reset, everything it sent before having been read:
 * that is passed on (a frame cut short by the reset goes truncated), then
 * the other side is reset too (conn_update).  Held-back messages are lost,
 * as in a cut.
 */
static void conn_reset_from(conn *c, int s)
{
    if (c->resetting || c->dead)
        return;
    conn_side_gone(c, s);
    flow_clear_delayed(&c->f[s]);
    flow_eof(&c->f[s]);
    if (c->cutting)
        return;                         /* the cut ends it, with a FIN */
    c->resetting = true;
    c->reset_side = s;
    c->deadline = now_ns() + DRAIN_NS;
}

/* Writes what it can of f's out (dropping it if its destination is gone). */
static void flow_flush(conn *c, flow *f)
{
    int d = 1 - f->dir, dst = c->fd[d];

    if (c->gone[d])
        f->out.len = f->out.head = 0;
    if (c->dead || c->gone[d] || (d == 1 && c->connecting))
        return;
    while (f->out.len > 0) {
        ssize_t w = send(dst, f->out.p + f->out.head, f->out.len, MSG_NOSIGNAL);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (w <= 0) {
            /* reset: read what it sent before, unless that is over already */
            conn_side_gone(c, d);
            if (c->f[d].src_eof)
                conn_reset_from(c, d);
            return;
        }
        buf_take(&f->out, (size_t)w);
    }
    if ((f->src_eof || c->cutting) && f->dq == NULL && !f->dst_shut && !c->resetting) {
        (void)shutdown(dst, SHUT_WR);
        f->dst_shut = true;
    }
}

/* Reads once from side s; the bytes go to f[s] (or nowhere once cut). */
static void conn_read(conn *c, int s)
{
    static uint8_t chunk[READ_CHUNK];
    flow *f = &c->f[s];
    ssize_t r;

    if (f->src_eof)
        return;
    do
        r = recv(c->fd[s], chunk, sizeof chunk, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (r < 0 || (r == 0 && c->gone[s]))
        conn_reset_from(c, s);          /* (a reset seen by a send or at connect ends in EOF) */
    else if (r == 0)
        flow_eof(f);
    else if (!c->cutting)
        flow_input(c, f, chunk, (size_t)r);
    flow_flush(c, f);
}

/* Whether side s is wanted for reading now. */
static bool want_read(const conn *c, int s)
{
    const flow *f = &c->f[s];

    if (f->src_eof || f->stalled || c->resetting || c->gone[1 - s])
        return false;
    if (c->cutting)
        return true;
    if (s == 1 && c->connecting)
        return false;
    return f->out.len + f->dq_bytes < FLOW_LIMIT;
}

/* Closes a finished connection, or brings its epoll interest up to date. */
static void conn_update(conn *c)
{
    int s;

    /* a cut sends what passed before it both ways, then FINs both ways */
    for (s = 0; s < 2 && (c->cutting || c->resetting); s++)
        flow_flush(c, &c->f[s]);
    if (c->dead)
        return;
    if (c->resetting && c->f[c->reset_side].out.len == 0) {
        conn_close(c, true);
        return;
    }
    if (c->f[0].src_eof && c->f[1].src_eof && c->f[0].dst_shut && c->f[1].dst_shut) {
        conn_close(c, false);
        return;
    }
    for (s = 0; s < 2; s++) {
        uint32_t ev = 0;

        if (c->connecting && s == 1)
            ev = EPOLLOUT;
        else {
            if (want_read(c, s))
                ev |= EPOLLIN;
            if (c->f[1 - s].out.len > 0)
                ev |= EPOLLOUT;
        }
        if (c->in_epoll[s] && ev == 0 && c->f[s].src_eof && c->f[1 - s].dst_shut) {
            /* Done with this socket both ways: stop hearing its EPOLLHUP. */
            ep_ctl(EPOLL_CTL_DEL, c->fd[s], 0, NULL);
            c->in_epoll[s] = false;
        } else if (c->in_epoll[s] && ev != c->ev[s]) {
            ep_ctl(EPOLL_CTL_MOD, c->fd[s], ev, &c->tags[s]);
            c->ev[s] = ev;
        }
    }
}

static void conn_connected(conn *c)
{
    int err = 0, one = 1;
    socklen_t len = sizeof err;

    if (getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &err, &len) != 0 ||
        (err != 0 && err != ECONNRESET && err != EPIPE)) {
        conn_close(c, true);            /* refused: the client sees a reset */
        return;
    }
    c->connecting = false;
    if (err != 0)
        conn_side_gone(c, 1);           /* connected, then reset: read what it sent */
    (void)setsockopt(c->fd[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    flow_flush(c, &c->f[TO_UP]);
}

static void conn_event(conn *c, int s, uint32_t events)
{
    if (c->dead)
        return;
    if (s == 1 && c->connecting) {
        conn_connected(c);
    } else {
        /*
         * On a reset, the bytes that came before it are still read and
         * passed on; the read that then fails resets both sides.
         */
        if ((events & EPOLLERR) && c->f[s].src_eof)
            conn_reset_from(c, s);
        else if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
            conn_read(c, s);
        if (!c->dead && (events & EPOLLOUT))
            flow_flush(c, &c->f[1 - s]);
    }
    conn_update(c);
}

static void accept_one(void)
{
    struct sockaddr_in up;
    conn *c;
    int fd, ufd, one = 1, s;

    fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            fprintf(stderr, "faultproxy: accept: %s; waiting for a connection to close\n",
                    strerror(errno));
            ep_ctl(EPOLL_CTL_MOD, listen_fd, 0, &t_listen);
            accept_paused = true;
        }
        return;                         /* EAGAIN, ECONNABORTED, ...: try again later */
    }
    ufd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c = calloc(1, sizeof *c);
    if (ufd < 0 || c == NULL) {
        fprintf(stderr, "faultproxy: cannot open an upstream connection: %s\n",
                c == NULL ? "out of memory" : strerror(errno));
        close(fd);
        if (ufd >= 0)
            close(ufd);
        free(c);
        return;
    }
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd[0] = fd;
    c->fd[1] = ufd;
    c->index = st.connections++;
    for (s = 0; s < 2; s++) {
        c->f[s].dir = s;
        c->f[s].rng = mix64(opt.seed ^ mix64(2 * c->index + (uint64_t)s + 1));
        c->f[s].cut_at = NO_CUT;
        c->tags[s].c = c;
        c->tags[s].side = s;
    }
    c->next = conns;
    if (conns != NULL)
        conns->prev = c;
    conns = c;

    memset(&up, 0, sizeof up);
    up.sin_family = AF_INET;
    up.sin_port = htons(opt.upstream_port);
    up.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->connecting = true;
    if (connect(ufd, (struct sockaddr *)&up, sizeof up) != 0 && errno != EINPROGRESS) {
        conn_close(c, true);
        return;
    }
    for (s = 0; s < 2; s++) {
        c->ev[s] = s == 1 ? EPOLLOUT : EPOLLIN;
        ep_ctl(EPOLL_CTL_ADD, c->fd[s], c->ev[s], &c->tags[s]);
        c->in_epoll[s] = true;
    }
}

/* Releases due delayed messages, ends lingering cuts and resets; returns ms to the next. */
static int timers(void)
{
    uint64_t now = now_ns(), next = UINT64_MAX;
    conn *c, *nx;
    int s;

    for (c = conns; c != NULL; c = nx) {
        nx = c->next;
        if ((c->cutting || c->resetting) && now >= c->deadline) {
            conn_close(c, c->resetting);
            continue;
        }
        if ((c->cutting || c->resetting) && c->deadline < next)
            next = c->deadline;
        for (s = 0; s < 2 && !c->dead; s++) {
            flow *f = &c->f[s];

            if (f->dq == NULL)
                continue;
            flow_release(f, now, false);
            flow_flush(c, f);
            if (!c->dead && f->dq != NULL && f->dq->due_ns < next)
                next = f->dq->due_ns;
        }
        conn_update(c);
    }
    if (next == UINT64_MAX)
        return -1;
    if (next <= now)
        return 1;                       /* due but blocked mid-frame: look again soon */
    return (int)((next - now + 999999u) / 1000000u);
}

/* ---- statistics ------------------------------------------------------------------ */

static void stats_line(char *line, size_t n)
{
    snprintf(line, n,
             "faultproxy: connections %" PRIu64 " frames %" PRIu64 " dropped_req %" PRIu64
             " dropped_rep %" PRIu64 " dup_req %" PRIu64 " dup_rep %" PRIu64
             " delayed %" PRIu64 " cuts %" PRIu64 " unparsed %" PRIu64 " stalls %" PRIu64 "\n",
             st.connections, st.frames, st.dropped[TO_UP], st.dropped[TO_CLIENT],
             st.dup[TO_UP], st.dup[TO_CLIENT], st.delayed, st.cuts, st.unparsed, st.stalls);
}

/* Prints the line to stderr and replaces the --stats file; false if that failed. */
static bool stats_report(void)
{
    char line[512], tmp[4096];
    FILE *fp;
    bool ok;

    stats_line(line, sizeof line);
    fputs(line, stderr);
    fflush(stderr);
    if (opt.stats_path == NULL)
        return true;
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", opt.stats_path) >= sizeof tmp) {
        fprintf(stderr, "faultproxy: --stats: path too long\n");
        return false;
    }
    fp = fopen(tmp, "w");
    ok = fp != NULL && fputs(line, fp) >= 0;
    if (fp != NULL && fclose(fp) != 0)
        ok = false;
    if (ok && rename(tmp, opt.stats_path) != 0)
        ok = false;
    if (!ok) {
        fprintf(stderr, "faultproxy: --stats %s: %s\n", opt.stats_path, strerror(errno));
        (void)unlink(tmp);
    }
    return ok;
}

/* ---- the command line ----------------------------------------------------------- */

static const char usage_text[] =
    "usage: faultproxy --upstream 127.0.0.1:PORT [options]\n"
    "\n"
    "A TCP proxy for tests of qrpc that injects faults into the frames of\n"
    "qrpc-protocol(7) it forwards.  It listens on 127.0.0.1 at a port the system\n"
    "chooses, prints \"127.0.0.1:PORT\" on stdout, and forwards every connection to\n"
    "the upstream.  It exits when its stdin reaches end of file, or on SIGTERM or\n"
    "SIGINT; on SIGUSR1 it reports its statistics.\n"
    "\n"
    "Faults, each decided per frame with probability P per mille (0..1000,\n"
    "default 0).  Only a request or reply sent as one frame (a REQUEST frame to\n"
    "the upstream, or a REPLY frame from it, with END) is dropped, duplicated or\n"
    "delayed; other frames always pass.\n"
    "  --drop-req P      drop such a request\n"
    "  --drop-rep P      drop such a reply\n"
    "  --dup-req P       forward such a request twice\n"
    "  --dup-rep P       forward such a reply twice\n"
    "  --delay-req P     hold such a request back for --delay-ms while later\n"
    "                    frames pass it (with --dup-req too: one copy now, one late)\n"
    "  --delay-rep P     the same for such a reply\n"
    "  --delay-ms MS     how long a message is held back (default 50; 1..600000)\n"
    "  --cut P           cut the connection after a frame (any frame, either way)\n"
    "  --cut-mid         cut inside the frame instead, after a random number of\n"
    "                    its bytes (at least one, not all)\n"
    "  --cut-after N     cut every connection after N frames, both directions\n"
    "                    counted (with --cut-mid: inside the frame after them)\n"
    "  --cut-rst         cut with a reset; by default the bytes before the cut are\n"
    "                    delivered and both sides get a FIN\n"
    "  --stall-big       at the first frame of a request split into frames (a\n"
    "                    REQUEST frame without END), stop forwarding that\n"
    "                    connection's requests and reading its client, until exit\n"
    "\n"
    "Other options:\n"
    "  --upstream 127.0.0.1:PORT  where to forward (loopback only)\n"
    "  --seed N          the seed of every decision (default 1; 0..2^64-1); the same\n"
    "                    seed and the same frames give the same decisions\n"
    "  --stats FILE      write the statistics line to FILE at exit and on SIGUSR1\n"
    "  --no-lifeline     do not exit when stdin reaches end of file\n"
    "  -h, --help        this text\n"
    "\n"
    "Statistics, one line to stderr at exit and on SIGUSR1:\n"
    "  faultproxy: connections C frames F dropped_req N dropped_rep N dup_req N\n"
    "  dup_rep N delayed N cuts N unparsed N stalls N\n"
    "(unparsed: directions forwarded as raw bytes after something that was not a\n"
    "frame header).  Exit status: 0, 1 on a system error, 2 on a usage error.\n";

/* A whole decimal number in [min, max], or a usage error naming the option. */
static uint64_t parse_num(const char *name, const char *s, uint64_t min, uint64_t max)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (*s < '0' || *s > '9' || *end != '\0' || errno != 0 || v < min || v > max)
        usage_error("%s: expected %" PRIu64 "..%" PRIu64 ", got %s", name, min, max,
                    *s != '\0' ? s : "nothing");
    return (uint64_t)v;
}

static void parse_upstream(const char *s)
{
    static const char host[] = "127.0.0.1:";
    size_t hl = sizeof host - 1;

    if (strncmp(s, host, hl) != 0)
        usage_error("--upstream: expected 127.0.0.1:PORT (loopback only), got %s", s);
    opt.upstream_port = (uint16_t)parse_num("--upstream port", s + hl, 1, 65535);
}

enum {
    O_UPSTREAM = 256, O_SEED, O_DROP_REQ, O_DROP_REP, O_DUP_REQ, O_DUP_REP, O_DELAY_REQ,
    O_DELAY_REP, O_DELAY_MS, O_CUT, O_CUT_MID, O_CUT_AFTER, O_CUT_RST, O_STATS, O_NO_LIFELINE,
    O_STALL_BIG
};

static void parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "upstream", required_argument, NULL, O_UPSTREAM },
        { "seed", required_argument, NULL, O_SEED },
        { "drop-req", required_argument, NULL, O_DROP_REQ },
        { "drop-rep", required_argument, NULL, O_DROP_REP },
        { "dup-req", required_argument, NULL, O_DUP_REQ },
        { "dup-rep", required_argument, NULL, O_DUP_REP },
        { "delay-req", required_argument, NULL, O_DELAY_REQ },
        { "delay-rep", required_argument, NULL, O_DELAY_REP },
        { "delay-ms", required_argument, NULL, O_DELAY_MS },
        { "cut", required_argument, NULL, O_CUT },
        { "cut-mid", no_argument, NULL, O_CUT_MID },
        { "cut-after", required_argument, NULL, O_CUT_AFTER },
        { "cut-rst", no_argument, NULL, O_CUT_RST },
        { "stats", required_argument, NULL, O_STATS },
        { "no-lifeline", no_argument, NULL, O_NO_LIFELINE },
        { "stall-big", no_argument, NULL, O_STALL_BIG },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    bool have_upstream = false;
    int o, idx;

    opterr = 0;
    for (;;) {
        char name[32];

        idx = -1;
        o = getopt_long(argc, argv, ":h", longopts, &idx);
        if (o == -1)
            break;
        if (o == '?')
            usage_error("unknown option %s", argv[optind - 1]);
        if (o == ':')
            usage_error("%s needs a value", argv[optind - 1]);
        snprintf(name, sizeof name, "--%s", idx >= 0 ? longopts[idx].name : "help");
        switch (o) {
        case 'h':
            fputs(usage_text, stdout);
            exit(0);
        case O_UPSTREAM:
            parse_upstream(optarg);
            have_upstream = true;
            break;
        case O_SEED:
            opt.seed = parse_num(name, optarg, 0, UINT64_MAX);
            break;
        case O_DROP_REQ:
        case O_DROP_REP:
        case O_DUP_REQ:
        case O_DUP_REP:
        case O_DELAY_REQ:
        case O_DELAY_REP: {
            int d = (o == O_DROP_REQ || o == O_DUP_REQ || o == O_DELAY_REQ) ? TO_UP : TO_CLIENT;
            unsigned v = (unsigned)parse_num(name, optarg, 0, 1000);

            if (o == O_DROP_REQ || o == O_DROP_REP)
                opt.pol[d].drop = v;
            else if (o == O_DUP_REQ || o == O_DUP_REP)
                opt.pol[d].dup = v;
            else
                opt.pol[d].delay = v;
            break;
        }
        case O_DELAY_MS:
            opt.delay_ms = (unsigned)parse_num(name, optarg, 1, 600000);
            break;
        case O_CUT:
            opt.cut = (unsigned)parse_num(name, optarg, 0, 1000);
            break;
        case O_CUT_MID:
            opt.cut_mid = true;
            break;
        case O_CUT_AFTER:
            opt.cut_after = parse_num(name, optarg, 1, UINT64_MAX);
            break;
        case O_CUT_RST:
            opt.cut_rst = true;
            break;
        case O_STATS:
            if (*optarg == '\0')
                usage_error("--stats: expected a file name, got nothing");
            opt.stats_path = optarg;
            break;
        case O_NO_LIFELINE:
            opt.lifeline = false;
            break;
        case O_STALL_BIG:
            opt.stall_big = true;
            break;
        default:
            usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        usage_error("unexpected argument %s", argv[optind]);
    if (!have_upstream)
        usage_error("--upstream 127.0.0.1:PORT is required");
}

/* ---- main ------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    sigset_t sigs;
    int sfd, one = 1;
    bool running = true;

    parse_args(argc, argv);

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &sigs, NULL) != 0)
        die("sigprocmask: %s", strerror(errno));
    sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (sfd < 0 || ep < 0)
        die("signalfd/epoll: %s", strerror(errno));

    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd < 0)
        die("socket: %s", strerror(errno));
    (void)setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(listen_fd, 128) != 0 ||
        getsockname(listen_fd, (struct sockaddr *)&sa, &sl) != 0)
        die("listening on 127.0.0.1: %s", strerror(errno));

    ep_ctl(EPOLL_CTL_ADD, listen_fd, EPOLLIN, &t_listen);
    ep_ctl(EPOLL_CTL_ADD, sfd, EPOLLIN, &t_signal);
    if (opt.lifeline) {
        struct epoll_event e = { .events = EPOLLIN, .data.ptr = &t_stdin };

        if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &e) != 0)
            die("cannot watch stdin (%s): give it a pipe or a terminal, or use --no-lifeline",
                errno == EPERM ? "a regular file or /dev/null" : strerror(errno));
    }
    printf("127.0.0.1:%u\n", (unsigned)ntohs(sa.sin_port));
    if (fflush(stdout) != 0)
        die("stdout: %s", strerror(errno));

    while (running) {
        struct epoll_event evs[64];
        int timeout = timers(), n, i;

        n = epoll_wait(ep, evs, 64, timeout);
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (i = 0; i < n; i++) {
            tag *t = evs[i].data.ptr;

            if (t == &t_listen) {
                accept_one();
            } else if (t == &t_stdin) {
                char junk[256];
                ssize_t r = read(0, junk, sizeof junk);

                if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN))
                    running = false;
            } else if (t == &t_signal) {
                struct signalfd_siginfo si;

                while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
                    if (si.ssi_signo == SIGUSR1)
                        (void)stats_report();
                    else
                        running = false;
                }
            } else {
                conn_event(t->c, t->side, evs[i].events);
            }
        }
        while (graveyard != NULL) {
            conn *c = graveyard;

            graveyard = c->next;
            free(c);
        }
    }
    while (conns != NULL)
        conn_close(conns, false);
    while (graveyard != NULL) {
        conn *c = graveyard;

        graveyard = c->next;
        free(c);
    }
    close(listen_fd);
    close(sfd);
    close(ep);
    return stats_report() ? 0 : 1;
}
