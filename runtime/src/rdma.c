/*
 * rdma.c - the RDMA transport: a node's RDMA device and listener, the
 * FrontEnd of a remote node reached over a reliable-connected queue pair,
 * and the byte stream such a queue pair carries for conn.c.
 *
 * Everything above the byte stream is the TCP transport's: conn.c frames
 * messages, interleaves the frames of large ones, keeps the pending
 * calls, deadlines and at-most-once state, and fails the connection when
 * the stream breaks.  So an RDMA connection behaves exactly as a TCP one
 * does, and a broken queue pair is a failed connection (EPIPE), which the
 * FrontEnd redials and binding skips meanwhile.  What is here is how the
 * bytes move:
 *
 *  - Small messages: SEND into receive buffers the peer posted from a
 *    registered pool (rd_pipe.rbufs), copied there from a registered send
 *    pool.  SEND/RECV rather than RDMA WRITE with immediate because the
 *    receiver then needs no ring of its own to manage: receives complete
 *    in order into whichever buffer was posted next, and the sender needs
 *    no remote addresses; with WRITE_IMM each message would still consume
 *    a posted receive, for no gain at these sizes.  Several frames (and
 *    messages) share one buffer: the writer fills a buffer with what conn
 *    offers in one writev.
 *  - Credit-based flow control: a sender may only SEND while it holds a
 *    credit, one per receive buffer the peer has posted for it; every
 *    message carries the credits its sender gives back (buffers it has
 *    emptied and posted again), and a receiver that has many to give back
 *    and nothing to say sends them alone.  The last credit is kept for
 *    such messages, so two sides that both run out can always tell each
 *    other.  A fast sender thus never overruns the peer's receives (the
 *    emulation fails the queue pair if one ever did).
 *  - Large pieces: a piece of a frame body of at least RD_ZC_MIN bytes is
 *    not copied.  Its sender registers the caller's memory and sends its
 *    address and remote key (RDREQ); the receiver reads it with RDMA READ
 *    into a registered staging buffer and, when the bytes have gone up to
 *    conn, says so (RDDONE); only then does the writer report them taken,
 *    so conn keeps them.  The writer goes on sending what follows (up to
 *    RD_ZC_MAX pieces out), and only the reporting waits; the receiver
 *    reads the pieces one after the other, so the small messages queued
 *    behind wait a few frames at most, and copies each once more into the
 *    message conn assembles, as TCP's read does.  A peer advertising a
 *    bogus address, key or length gets a failed READ (the adapter checks
 *    them against the registrations of the side that owns the memory) or,
 *    for a length beyond our staging buffer, a protocol error: either way
 *    that connection closes.
 *
 * Completions: in event mode (the default) the queue pair's completion
 * channel sits in the node's epoll set, behind a small epoll set of the
 * pipe's own; in polling mode (cfg.rdma_polling) one thread per node
 * spins over its RDMA connections and reads them as a loop thread would,
 * running handlers itself: the lowest latency, for a dedicated core.
 *
 * Addresses: a node with a device (cfg.rdma) listens for RDMA next to
 * TCP and advertises "<transport> host:port" in the cluster table
 * (transport "rdma", or "rdma-emu" for the emulation); FrontEnd addresses
 * are "rdma://host:port" and "rdma-emu://host:port".
 *
 * Known limits: a receiver reads one piece at a time (one staging
 * buffer), and each piece is registered afresh (no registration cache);
 * one device per node; the dial happens on the calling thread, as TCP's
 * does.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "net.h"
#include "rdma.h"
#include "verbs.h"

#define RD_MAGIC        0x5152444du     /* "QRDM" */
#define RD_VERSION      1u
#define RD_HDR          8u              /* type, 0, credits (16), length (32): LE */
#define RD_BUF          16384u          /* one send or receive buffer */
#define RD_ZC_MIN       8192u           /* pieces this large are read, not copied */
#define RD_ZC_MAX       8u              /* pieces out for the peer to read at once */
#define RD_DIAL_MS      10000u
#define RD_LINGER_MS    1000u           /* a closing pipe waits for its sends */
#define RD_CREDITS_MIN  4u
#define RD_CREDITS_MAX  1024u
#define RD_WR_READ      UINT64_MAX      /* wr_id of the zero-copy READ */

enum {
    RD_DATA = 1,                /* stream bytes */
    RD_CREDIT = 2,              /* credits only */
    RD_RDREQ = 3,               /* read my memory: addr, rkey, len, id (+1 each) */
    RD_RDDONE = 4               /* your pieces up to id went up */
};
#define RD_RDREQ_LEN 20u
#define RD_RDDONE_LEN 4u

/* What connect and accept carry (private data), little-endian as the rest. */
#define RD_PDATA_LEN 16u

typedef struct rd_pipe rd_pipe;

/* A piece of the stream out for the peer to read (RDREQ sent). */
typedef struct rd_zc {
    qrpc__vmr mr;               /* the caller's memory, registered */
    uint64_t start;             /* where it begins, past what conn was told is taken */
    uint32_t id;
    bool done;                  /* its RDDONE came */
} rd_zc;

struct qrpc__rdma {
    qrpc_node *node;
    const qrpc__verbs_ops *ops;
    qrpc__vdev *dev;
    qrpc__vlis *lis;            /* NULL: not listening */
    char address[QRPC__ADDR_MAX];       /* where it listens, or "" */
    char url[QRPC__ADDR_MAX + 16];      /* the same as "<transport>://address" */
    uint32_t credits;           /* receive buffers per connection */
    bool polling;
    /* polling mode: the poller and the connections it polls */
    pthread_t poller;
    bool poller_on;
    atomic_bool stop;
    pthread_mutex_t lock;
    rd_pipe *pipes;             /* under lock */
};

struct rd_pipe {
    qrpc__rdma *r;
    qrpc__vep *ep;
    int efd;                    /* our epoll set: the endpoint's fd and wfd */
    int wfd;                    /* eventfd: the writer tells the reader */
    char peer[QRPC__ADDR_MAX + 16];     /* "<transport>://host:port" */
    qrpc__conn *conn;           /* polling mode: who to read (no reference) */
    rd_pipe *pnext;             /* polling list */
    bool listed;

    uint32_t nrecv;             /* our receive buffers */
    uint32_t nsend;             /* our send buffers: the peer's receives */
    uint32_t zc_max;            /* our staging buffer */
    uint32_t peer_zc_max;       /* the peer's */
    uint8_t *rbufs, *sbufs, *stage;
    qrpc__vmr rmr, smr, stmr;
    bool rmr_ok, smr_ok, stmr_ok;

    /* the reader's (conn's read side) */
    uint8_t *cur;               /* the receive buffer being read, or NULL */
    uint32_t cur_idx, cur_off, cur_end;
    bool rd_posted;             /* a READ into stage is outstanding */
    uint32_t rd_id, rd_len;
    uint32_t st_off, st_len;    /* stage bytes being handed up */
    bool done_owed;             /* an RDDONE not sent yet: pieces up to */
    uint32_t done_id;           /* this one have gone up */
    atomic_bool st_ready;       /* the READ completed (set by whoever reaps) */
    atomic_bool wfd_set;

    /* shared */
    atomic_uint credits;        /* the peer's receives we may fill */
    atomic_uint returns;        /* our receives posted again, not yet told */
    atomic_bool broken;
    atomic_bool eof;            /* the peer disconnected cleanly: no error line */

    /* the send side, under tx_lock */
    pthread_mutex_t tx_lock;
    uint32_t *sfree;
    uint32_t nfree;
    bool shut;
    uint64_t ahead;             /* bytes sent beyond what conn was told is taken */
    bool tx_blocked;            /* the last writev stopped for want of credit or buffer */
    rd_zc zc[RD_ZC_MAX];        /* pieces out for the peer to read, oldest first */
    uint32_t zc_head, nzc, zc_next;
};

static const qrpc__pipe_ops rd_pipe_ops;

/* ---- helpers ---------------------------------------------------------------- */

static const char *rd_status_name(qrpc__vwc_status s)
{
    switch (s) {
    case QRPC__VWC_OK: return "success";
    case QRPC__VWC_FLUSH: return "flushed";
    case QRPC__VWC_LOC_LEN: return "local length error";
    case QRPC__VWC_LOC_PROT: return "local protection error";
    case QRPC__VWC_REM_ACCESS: return "remote access error";
    case QRPC__VWC_REM_INV_REQ: return "remote invalid request";
    case QRPC__VWC_RNR: return "receiver not ready";
    case QRPC__VWC_RETRY: return "retries exhausted";
    default: return "fatal error";
    }
}

static void rd_wake_reader(rd_pipe *p)
{
    uint64_t one = 1;

    if (!atomic_exchange(&p->wfd_set, true) && write(p->wfd, &one, sizeof one) < 0)
        qrpc__log(p->r->node, "rdma: cannot wake a reader: %s", strerror(errno));
}

/* Marks the pipe broken, once, with a log line unless why is NULL. */
static void rd_break(rd_pipe *p, const char *why)
{
    if (atomic_exchange(&p->broken, true))
        return;
    if (why != NULL && !atomic_load(&p->eof))
        qrpc__log(p->r->node, "rdma connection %s: %s", p->peer, why);
    p->r->ops->disconnect(p->ep);
    /*
     * Like a socket's end of stream, a break stays news until read: a
     * read that returned data with it, or a writer that found it, must
     * not leave the reader waiting for an event that already came.
     */
    rd_wake_reader(p);
}

/* ---- the send side (tx_lock held) ----------------------------------------------- */

/* Reaps send completions: buffers back, the READ's end noted. */
static void rd_reap_send(rd_pipe *p, bool reader)
{
    qrpc__vwc wc[16];
    int k, i;

    do {
        k = p->r->ops->poll_cq(p->ep, QRPC__VCQ_SEND, wc, 16);
        if (k < 0) {
            rd_break(p, "cannot poll the send queue");
            return;
        }
        for (i = 0; i < k; i++) {
            if (wc[i].status != QRPC__VWC_OK) {
                char why[96];

                snprintf(why, sizeof why, "%s %s", wc[i].wr_id == RD_WR_READ
                         ? "RDMA READ" : "send", rd_status_name(wc[i].status));
                rd_break(p, wc[i].status == QRPC__VWC_FLUSH ? NULL : why);
            }
            if (wc[i].wr_id == RD_WR_READ) {
                atomic_store(&p->st_ready, true);
                if (!reader)
                    rd_wake_reader(p);
            } else if (wc[i].wr_id < p->nsend) {
                p->sfree[p->nfree++] = (uint32_t)wc[i].wr_id;
            }
        }
    } while (k == 16);
}

/*
 * A free send buffer, for a message that needs `need` credits (data 2,
 * so that the last is left for control messages): its index, or -1 (none
 * free, or no credit: nothing taken).
 */
static int64_t rd_take_buf(rd_pipe *p, unsigned need)
{
    if (atomic_load(&p->broken) || p->shut)
        return -1;
    if (p->nfree == 0)
        rd_reap_send(p, false);
    if (p->nfree == 0 || atomic_load(&p->credits) < need)
        return -1;
    return p->sfree[--p->nfree];
}

/* Sends buffer idx as a message of type with len bytes after the header,
 * giving back the credits we owe: 0, or QRPC_EIO (broken). */
static int rd_post_buf(rd_pipe *p, uint32_t idx, uint8_t type, uint32_t len)
{
    uint8_t *buf = p->sbufs + (size_t)idx * RD_BUF;
    uint32_t ret = atomic_exchange(&p->returns, 0);     /* <= nrecv <= 0xffff */
    qrpc__vsend wr;

    buf[0] = type;
    buf[1] = 0;
    qrpc__put16(buf + 2, (uint16_t)ret);
    qrpc__put32(buf + 4, len);
    memset(&wr, 0, sizeof wr);
    wr.wr_id = idx;
    wr.op = QRPC__VOP_SEND;
    wr.sge.addr = buf;
    wr.sge.len = RD_HDR + len;
    wr.sge.lkey = p->smr.lkey;
    atomic_fetch_sub(&p->credits, 1);
    if (p->r->ops->post_send(p->ep, &wr) != 0) {
        rd_break(p, "cannot post a send");
        return QRPC_EIO;
    }
    return 0;
}

/*
 * Sends a control message (or an RDREQ) of type with body: 0, or
 * QRPC_EBUSY (no credit or buffer: nothing sent), QRPC_EIO (broken).
 */
static int rd_send_msg(rd_pipe *p, uint8_t type, const void *body, uint32_t len)
{
    int64_t idx = rd_take_buf(p, type == RD_RDREQ ? 2 : 1);

    if (idx < 0)
        return atomic_load(&p->broken) || p->shut ? QRPC_EIO : QRPC_EBUSY;
    if (len != 0)
        memcpy(p->sbufs + (size_t)idx * RD_BUF + RD_HDR, body, len);
    return rd_post_buf(p, (uint32_t)idx, type, len);
}

/* Sends what the reader owes (RDDONE, credits) if it can; tx_lock held. */
static void rd_send_owed(rd_pipe *p)
{
    uint8_t id[4];

    if (p->done_owed) {
        qrpc__put32(id, p->done_id);
        if (rd_send_msg(p, RD_RDDONE, id, sizeof id) == 0)
            p->done_owed = false;
    }
    if (atomic_load(&p->returns) >= (p->nrecv + 1) / 2)
        (void)rd_send_msg(p, RD_CREDIT, NULL, 0);
}

/* Whether an offered piece of len bytes goes by RDMA READ, not copied. */
static bool rd_zc_piece(const rd_pipe *p, uint32_t len)
{
    return len >= RD_ZC_MIN && len <= p->peer_zc_max;
}

/*
 * Offers the piece at base (len bytes, starting `start` bytes past what
 * conn has been told is taken) for the peer to read: registers it and
 * sends its RDREQ.  0, or QRPC_EBUSY (no credit or buffer, or RD_ZC_MAX
 * pieces out: nothing done), QRPC_EIO (broken).
 */
static int rd_zc_offer(rd_pipe *p, const uint8_t *base, uint32_t len, uint64_t start)
{
    uint8_t req[RD_RDREQ_LEN];
    rd_zc *z;
    int rc;

    if (p->nzc == RD_ZC_MAX || atomic_load(&p->credits) < 2)
        return QRPC_EBUSY;
    z = &p->zc[(p->zc_head + p->nzc) % RD_ZC_MAX];
    if (p->r->ops->reg_mr(p->r->dev, (void *)base, len, QRPC__VACC_REMOTE_READ,
                          &z->mr) != 0) {
        rd_break(p, "cannot register memory for a zero-copy read");
        return QRPC_EIO;
    }
    z->id = ++p->zc_next;
    z->start = start;
    z->done = false;
    qrpc__put64(req, (uint64_t)(uintptr_t)base);
    qrpc__put32(req + 8, z->mr.rkey);
    qrpc__put32(req + 12, len);
    qrpc__put32(req + 16, z->id);
    rc = rd_send_msg(p, RD_RDREQ, req, sizeof req);
    if (rc != 0) {
        p->r->ops->dereg_mr(p->r->dev, &z->mr);
        return rc;
    }
    p->nzc++;
    return 0;
}

/*
 * How many of the bytes sent ahead conn may be told are taken: up to the
 * first piece the peer has not read yet.  Read pieces are let go.
 */
static uint64_t rd_zc_reap(rd_pipe *p)
{
    while (p->nzc > 0 && p->zc[p->zc_head].done) {
        p->r->ops->dereg_mr(p->r->dev, &p->zc[p->zc_head].mr);
        p->zc_head = (p->zc_head + 1) % RD_ZC_MAX;
        p->nzc--;
    }
    return p->nzc > 0 ? p->zc[p->zc_head].start : p->ahead;
}

/*
 * Sends what conn offers beyond what was sent already (p->ahead bytes,
 * offered again first), small pieces copied into buffers, large ones
 * offered for RDMA READ; tells conn taken what precedes the first piece
 * the peer has not read yet.  Several pieces may be out at once, and
 * bytes after them are sent meanwhile: only the telling waits.
 */
static ssize_t rd_writev(void *pp, const struct iovec *iov, int iovcnt)
{
    rd_pipe *p = pp;
    uint64_t skip, taken, i64;
    uint32_t off = 0;
    int i = 0;

    pthread_mutex_lock(&p->tx_lock);
    /* past what was sent already */
    for (skip = p->ahead; i < iovcnt && skip >= iov[i].iov_len; i++)
        skip -= iov[i].iov_len;
    if (i == iovcnt && skip > 0) {
        rd_break(p, "internal error: fewer bytes offered than were sent");
        goto broken;
    }
    off = (uint32_t)skip;
    p->tx_blocked = false;
    while (i < iovcnt && !atomic_load(&p->broken)) {
        uint32_t left = (uint32_t)(iov[i].iov_len - off);

        if (left == 0) {
            i++;
            off = 0;
            continue;
        }
        if (off == 0 && rd_zc_piece(p, left)) {
            if (rd_zc_offer(p, iov[i].iov_base, left, p->ahead) != 0) {
                p->tx_blocked = true;
                break;
            }
            p->ahead += left;
            i++;
            continue;
        }
        {
            /* gather what follows, up to a buffer, into one SEND */
            uint32_t room = RD_BUF - RD_HDR, fill = 0;
            int64_t idx = rd_take_buf(p, 2);
            uint8_t *buf;

            if (idx < 0) {
                p->tx_blocked = true;
                break;
            }
            buf = p->sbufs + (size_t)idx * RD_BUF;
            while (i < iovcnt && fill < room) {
                uint32_t l = (uint32_t)(iov[i].iov_len - off), n;

                if (off == 0 && rd_zc_piece(p, l))
                    break;
                n = l < room - fill ? l : room - fill;
                memcpy(buf + RD_HDR + fill, (const uint8_t *)iov[i].iov_base + off, n);
                fill += n;
                off += n;
                if (off == iov[i].iov_len) {
                    i++;
                    off = 0;
                }
            }
            if (rd_post_buf(p, (uint32_t)idx, RD_DATA, fill) != 0)
                break;
            p->ahead += fill;
        }
    }
    if (atomic_load(&p->broken))
        goto broken;
    taken = rd_zc_reap(p);
    p->ahead -= taken;
    for (i64 = 0; i64 < p->nzc; i64++)
        p->zc[(p->zc_head + i64) % RD_ZC_MAX].start -= taken;
    pthread_mutex_unlock(&p->tx_lock);
    if (taken > 0)
        return (ssize_t)taken;
    errno = EAGAIN;
    return -1;

broken:
    pthread_mutex_unlock(&p->tx_lock);
    errno = EPIPE;
    return -1;
}

static void rd_want_write(void *pp)
{
    rd_pipe *p = pp;

    if (p->r->polling)
        return;                 /* the poller looks at it anyway */
    /*
     * Room comes back as credits (a receive: the reader's CQ is armed),
     * a send buffer (the send CQ, armed here) or an RDDONE (a receive).
     * Armed first, then looked at: a completion that came in between is
     * seen here instead of announced.
     */
    pthread_mutex_lock(&p->tx_lock);
    (void)p->r->ops->arm(p->ep, QRPC__VCQ_SEND);
    if (p->nfree == 0)
        rd_reap_send(p, false);
    /* only a writer that stopped for want of room: one waiting for RDDONEs
     * hears of them from the reader, and waking it here would spin */
    if (p->tx_blocked && p->nfree != 0 && atomic_load(&p->credits) >= 2 &&
        p->nzc < RD_ZC_MAX)
        rd_wake_reader(p);
    pthread_mutex_unlock(&p->tx_lock);
}

/*
 * RDDONE id: the pieces out up to the one of that id have been read.
 * False when no piece out that is not done yet has it.  tx_lock held.
 */
static bool rd_zc_done(rd_pipe *p, uint32_t id)
{
    uint32_t k, n = 0;

    for (k = 0; k < p->nzc; k++) {
        rd_zc *z = &p->zc[(p->zc_head + k) % RD_ZC_MAX];

        if (z->done)
            continue;
        n++;
        if (z->id == id) {
            for (; n > 0; n--, k--)
                p->zc[(p->zc_head + k) % RD_ZC_MAX].done = true;
            return true;
        }
    }
    return false;
}

/* Lets every piece out go (the connection closes). */
static void rd_zc_drop(rd_pipe *p)
{
    while (p->nzc > 0) {
        p->r->ops->dereg_mr(p->r->dev, &p->zc[p->zc_head].mr);
        p->zc_head = (p->zc_head + 1) % RD_ZC_MAX;
        p->nzc--;
    }
}

/* ---- the receive side ------------------------------------------------------------ */

static int rd_post_recv(rd_pipe *p, uint32_t idx)
{
    qrpc__vsge sge;

    sge.addr = p->rbufs + (size_t)idx * RD_BUF;
    sge.len = RD_BUF;
    sge.lkey = p->rmr.lkey;
    return p->r->ops->post_recv(p->ep, idx, &sge);
}

/* Gives receive buffer idx back to the peer (posted again, credited later). */
static void rd_recycle(rd_pipe *p, uint32_t idx)
{
    if (rd_post_recv(p, idx) != 0) {
        rd_break(p, "cannot post a receive");
        return;
    }
    atomic_fetch_add(&p->returns, 1);
}

/* One received message: false when it broke the pipe. */
static bool rd_on_recv(rd_pipe *p, const qrpc__vwc *wc)
{
    uint8_t *buf;
    uint32_t len, credit;
    const char *bad = NULL;

    if (wc->status != QRPC__VWC_OK) {
        if (wc->status == QRPC__VWC_FLUSH) {
            /* the peer went away (or a failure already logged): an end of stream */
            atomic_store(&p->eof, true);
            rd_break(p, NULL);
        }
        else
            rd_break(p, rd_status_name(wc->status));
        return false;
    }
    if (wc->wr_id >= p->nrecv || wc->opcode != QRPC__VWC_RECV || wc->byte_len < RD_HDR) {
        rd_break(p, "a malformed message from the peer");
        return false;
    }
    buf = p->rbufs + (size_t)wc->wr_id * RD_BUF;
    credit = qrpc__get16(buf + 2);
    len = qrpc__get32(buf + 4);
    if (len != wc->byte_len - RD_HDR)
        bad = "a message whose length disagrees with what arrived";
    else if (atomic_load(&p->credits) + credit > p->nsend)
        bad = "more credits than it has buffers";
    else if (buf[0] == RD_DATA && len == 0)
        bad = "an empty data message";
    else if (buf[0] == RD_CREDIT && len != 0)
        bad = "a credit message with data";
    else if (buf[0] == RD_RDDONE && len != RD_RDDONE_LEN)
        bad = "a malformed read-done message";
    else if (buf[0] == RD_RDREQ && (len != RD_RDREQ_LEN || p->rd_posted || p->st_len != 0))
        bad = "a malformed or unexpected read request";
    else if (buf[0] < RD_DATA || buf[0] > RD_RDDONE)
        bad = "a message of unknown type";
    if (bad != NULL) {
        char why[128];

        snprintf(why, sizeof why, "protocol error: %s", bad);
        rd_break(p, why);
        return false;
    }
    atomic_fetch_add(&p->credits, credit);
    switch (buf[0]) {
    case RD_DATA:
        p->cur = buf;
        p->cur_idx = (uint32_t)wc->wr_id;
        p->cur_off = RD_HDR;
        p->cur_end = RD_HDR + len;
        return true;
    case RD_RDDONE:
        /* pieces are read in order: every one up to this id is done */
        pthread_mutex_lock(&p->tx_lock);
        bad = rd_zc_done(p, qrpc__get32(buf + RD_HDR)) ? NULL : "a read-done for no read";
        pthread_mutex_unlock(&p->tx_lock);
        break;
    case RD_RDREQ: {
        uint64_t addr = qrpc__get64(buf + RD_HDR);
        uint32_t rkey = qrpc__get32(buf + RD_HDR + 8);
        uint32_t rlen = qrpc__get32(buf + RD_HDR + 12);
        qrpc__vsend wr;

        if (rlen == 0 || rlen > p->zc_max) {
            bad = "a read request longer than our staging buffer";
            break;
        }
        /*
         * The peer's address and key go to the adapter as they are: it
         * checks them against the peer's registrations, so a bogus one
         * fails the READ (and the connection), never reads elsewhere.
         */
        memset(&wr, 0, sizeof wr);
        wr.wr_id = RD_WR_READ;
        wr.op = QRPC__VOP_READ;
        wr.sge.addr = p->stage;
        wr.sge.len = rlen;
        wr.sge.lkey = p->stmr.lkey;
        wr.remote_addr = addr;
        wr.rkey = rkey;
        p->rd_posted = true;
        p->rd_id = qrpc__get32(buf + RD_HDR + 16);
        p->rd_len = rlen;
        atomic_store(&p->st_ready, false);
        pthread_mutex_lock(&p->tx_lock);
        if (p->r->ops->post_send(p->ep, &wr) != 0)
            bad = "cannot post an RDMA READ";
        pthread_mutex_unlock(&p->tx_lock);
        break;
    }
    default:
        break;
    }
    if (bad != NULL) {
        char why[128];

        snprintf(why, sizeof why, "protocol error: %s", bad);
        rd_break(p, why);
        return false;
    }
    rd_recycle(p, (uint32_t)wc->wr_id);
    return true;
}

/* Copies what fits in room bytes at out from src[*off, end); advances *off. */
static size_t rd_copy_out(uint8_t *out, size_t room, const uint8_t *src, uint32_t *off,
                          uint32_t end)
{
    size_t n = end - *off < room ? end - *off : room;

    memcpy(out, src + *off, n);
    *off += (uint32_t)n;
    return n;
}

static ssize_t rd_read(void *pp, void *dst, size_t len)
{
    rd_pipe *p = pp;
    uint8_t *out = dst;
    size_t got = 0;
    bool armed_recv = false, armed_send = false;    /* each CQ once per read */
    uint64_t v;

    /* a plain load first: the common read has nothing to drain */
    if (atomic_load_explicit(&p->wfd_set, memory_order_relaxed) &&
        atomic_exchange(&p->wfd_set, false) && read(p->wfd, &v, sizeof v) < 0 &&
        errno != EAGAIN)
        qrpc__log(p->r->node, "rdma: eventfd: %s", strerror(errno));
    while (got < len) {
        qrpc__vwc wc;
        int k;

        if (p->st_len != 0) {           /* a read piece going up */
            got += rd_copy_out(out + got, len - got, p->stage, &p->st_off, p->st_len);
            if (p->st_off == p->st_len) {
                p->st_len = p->st_off = 0;
                p->done_owed = true;
                p->done_id = p->rd_id;
            }
            continue;
        }
        if (p->rd_posted) {             /* nothing goes up past the piece */
            if (!atomic_load(&p->st_ready)) {
                pthread_mutex_lock(&p->tx_lock);
                rd_reap_send(p, true);
                pthread_mutex_unlock(&p->tx_lock);
            }
            if (atomic_load(&p->broken))
                break;
            if (atomic_load(&p->st_ready)) {
                p->rd_posted = false;
                p->st_off = 0;
                p->st_len = p->rd_len;
                continue;
            }
            if (p->r->polling || armed_send)
                break;
            (void)p->r->ops->arm(p->ep, QRPC__VCQ_SEND);
            armed_send = true;
            continue;
        }
        if (p->cur != NULL) {           /* a received message going up */
            got += rd_copy_out(out + got, len - got, p->cur, &p->cur_off, p->cur_end);
            if (p->cur_off == p->cur_end) {
                p->cur = NULL;
                rd_recycle(p, p->cur_idx);
            }
            continue;
        }
        if (atomic_load(&p->broken))
            break;
        k = p->r->ops->poll_cq(p->ep, QRPC__VCQ_RECV, &wc, 1);
        if (k < 0) {
            rd_break(p, "cannot poll the receive queue");
            break;
        }
        if (k == 1) {
            if (!rd_on_recv(p, &wc))
                break;
            continue;
        }
        /* nothing: arm, then look once more (see verbs.h, arm) */
        if (p->r->polling || armed_recv)
            break;
        (void)p->r->ops->arm(p->ep, QRPC__VCQ_RECV);
        armed_recv = true;
    }
    if (p->done_owed || atomic_load(&p->returns) >= (p->nrecv + 1) / 2) {
        pthread_mutex_lock(&p->tx_lock);
        rd_send_owed(p);
        pthread_mutex_unlock(&p->tx_lock);
    }
    /*
     * A full buffer may leave more behind, and conn may stop reading for
     * the other connections' sake and re-arm the descriptor, which would
     * then say nothing: keep it readable.
     */
    if (got == len)
        rd_wake_reader(p);
    if (got > 0)
        return (ssize_t)got;
    if (atomic_load(&p->broken)) {
        if (atomic_load(&p->eof))
            return 0;
        errno = EPIPE;
        return -1;
    }
    errno = EAGAIN;
    return -1;
}

/* ---- the pipe's life ---------------------------------------------------------------- */

static void rd_unlist(rd_pipe *p)
{
    qrpc__rdma *r = p->r;
    rd_pipe **pp;

    if (!r->polling)
        return;
    pthread_mutex_lock(&r->lock);
    for (pp = &r->pipes; p->listed && *pp != NULL; pp = &(*pp)->pnext)
        if (*pp == p) {
            *pp = p->pnext;
            break;
        }
    p->listed = false;
    pthread_mutex_unlock(&r->lock);
}

/*
 * Waits (RD_LINGER_MS at most) for what was sent to be acknowledged: a
 * queue pair that is torn down flushes its sends, where a closed socket
 * would still deliver what it holds.  tx_lock held.
 */
static void rd_linger(rd_pipe *p)
{
    uint64_t until = qrpc__mono_ns() + (uint64_t)RD_LINGER_MS * 1000000u;
    struct pollfd pf;

    pf.fd = p->r->ops->ep_fd(p->ep);
    pf.events = POLLIN;
    while (!atomic_load(&p->broken)) {
        (void)p->r->ops->arm(p->ep, QRPC__VCQ_SEND);
        rd_reap_send(p, false);
        if (p->nfree == p->nsend || qrpc__mono_ns() >= until)
            break;
        (void)poll(&pf, 1, 10);
    }
    /* the reader may have wanted what the arming took */
    rd_wake_reader(p);
}

static void rd_shutdown(void *pp)
{
    rd_pipe *p = pp;

    rd_unlist(p);
    pthread_mutex_lock(&p->tx_lock);
    if (p->smr_ok)
        rd_linger(p);
    p->shut = true;
    atomic_store(&p->broken, true);
    p->r->ops->disconnect(p->ep);
    /* conn frees the pieces' bytes after this: no READ of them may follow */
    rd_zc_drop(p);
    pthread_mutex_unlock(&p->tx_lock);
}

static void rd_free(rd_pipe *p)
{
    const qrpc__verbs_ops *ops = p->r->ops;

    rd_unlist(p);
    if (p->ep != NULL)
        ops->ep_close(p->ep);   /* after it, nothing touches the buffers */
    rd_zc_drop(p);
    if (p->rmr_ok)
        ops->dereg_mr(p->r->dev, &p->rmr);
    if (p->smr_ok)
        ops->dereg_mr(p->r->dev, &p->smr);
    if (p->stmr_ok)
        ops->dereg_mr(p->r->dev, &p->stmr);
    if (p->efd >= 0)
        close(p->efd);
    if (p->wfd >= 0)
        close(p->wfd);
    free(p->rbufs);
    free(p->sbufs);
    free(p->stage);
    free(p->sfree);
    pthread_mutex_destroy(&p->tx_lock);
    free(p);
}

static void rd_close(void *pp)
{
    rd_free(pp);
}

static const qrpc__pipe_ops rd_pipe_ops = {
    .p_read = rd_read,
    .p_writev = rd_writev,
    .p_want_write = rd_want_write,
    .p_shutdown = rd_shutdown,
    .p_close = rd_close,
};

/* A new pipe with its buffers, not yet connected. */
static int rd_pipe_new(qrpc__rdma *r, rd_pipe **out)
{
    rd_pipe *p = calloc(1, sizeof *p);
    size_t rb;

    if (p == NULL)
        return QRPC_ENOMEM;
    p->r = r;
    p->efd = p->wfd = -1;
    pthread_mutex_init(&p->tx_lock, NULL);
    p->nrecv = r->credits;
    p->zc_max = r->node->cfg.max_frame;
    rb = (size_t)p->nrecv * RD_BUF;
    p->rbufs = malloc(rb);
    p->stage = malloc(p->zc_max);
    if (p->rbufs == NULL || p->stage == NULL)
        goto nomem;
    if (r->ops->reg_mr(r->dev, p->rbufs, rb, QRPC__VACC_LOCAL_WRITE, &p->rmr) != 0)
        goto nomem;
    p->rmr_ok = true;
    if (r->ops->reg_mr(r->dev, p->stage, p->zc_max, QRPC__VACC_LOCAL_WRITE, &p->stmr) != 0)
        goto nomem;
    p->stmr_ok = true;
    *out = p;
    return 0;

nomem:
    rd_free(p);
    return QRPC_ENOMEM;
}

/* The queue pair's sizes: our receives, and sends the peer's receives allow. */
static void rd_caps(const qrpc__rdma *r, qrpc__vcaps *caps)
{
    caps->max_recv = r->credits;
    /* the peer's credits are not known yet: its limit, plus the READ */
    caps->max_send = RD_CREDITS_MAX + 1;
}

/* Posts every receive (before the peer can send). */
static int rd_post_all(rd_pipe *p)
{
    uint32_t i;

    for (i = 0; i < p->nrecv; i++)
        if (rd_post_recv(p, i) != 0)
            return QRPC_EIO;
    return 0;
}

static void rd_pdata_put(const rd_pipe *p, uint8_t *pd)
{
    memset(pd, 0, RD_PDATA_LEN);
    qrpc__put32(pd, RD_MAGIC);
    pd[4] = RD_VERSION;
    qrpc__put16(pd + 6, (uint16_t)p->nrecv);
    qrpc__put32(pd + 8, RD_BUF);
    qrpc__put32(pd + 12, p->zc_max);
}

/* The peer's private data: its receives become our send buffers and credits. */
static int rd_pdata_take(rd_pipe *p, const uint8_t *pd, size_t len, const char **why)
{
    uint32_t credits, zc;
    size_t sb;

    if (len < RD_PDATA_LEN || qrpc__get32(pd) != RD_MAGIC) {
        *why = "not a qrpc RDMA peer";
        return QRPC_EPROTO;
    }
    if (pd[4] != RD_VERSION) {
        *why = "an RDMA protocol version we do not speak";
        return QRPC_EPROTO;
    }
    credits = qrpc__get16(pd + 6);
    zc = qrpc__get32(pd + 12);
    if (credits < RD_CREDITS_MIN || credits > RD_CREDITS_MAX || qrpc__get32(pd + 8) != RD_BUF ||
        zc > QRPC__MAX_FRAME) {
        *why = "RDMA parameters out of range";
        return QRPC_EPROTO;
    }
    p->nsend = credits;
    p->peer_zc_max = zc;
    atomic_init(&p->credits, credits);
    sb = (size_t)credits * RD_BUF;
    p->sbufs = malloc(sb);
    p->sfree = malloc(credits * sizeof *p->sfree);
    if (p->sbufs == NULL || p->sfree == NULL ||
        p->r->ops->reg_mr(p->r->dev, p->sbufs, sb, 0, &p->smr) != 0) {
        *why = "out of memory";
        return QRPC_ENOMEM;
    }
    p->smr_ok = true;
    for (p->nfree = 0; p->nfree < credits; p->nfree++)
        p->sfree[p->nfree] = credits - 1 - p->nfree;
    return 0;
}

/* Our epoll set over the endpoint's fd and the wake-up, for the node's loop. */
static int rd_pipe_fds(rd_pipe *p)
{
    struct epoll_event ev;

    p->efd = epoll_create1(EPOLL_CLOEXEC);
    p->wfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->efd < 0 || p->wfd < 0)
        return QRPC_EIO;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    if (epoll_ctl(p->efd, EPOLL_CTL_ADD, p->wfd, &ev) != 0 ||
        epoll_ctl(p->efd, EPOLL_CTL_ADD, p->r->ops->ep_fd(p->ep), &ev) != 0)
        return QRPC_EIO;
    return 0;
}

/* Hands a connected pipe to conn.c; on failure the pipe is freed. */
static int rd_pipe_start(rd_pipe *p, qrpc__conn_role role, qrpc__conn **out)
{
    qrpc__rdma *r = p->r;
    int rc;

    if (!r->polling)
        (void)r->ops->arm(p->ep, QRPC__VCQ_RECV);
    rc = qrpc__conn_new_pipe(r->node, p->efd, &rd_pipe_ops, p, role, p->peer, out);
    if (rc != 0) {
        rd_free(p);
        return rc;
    }
    if (r->polling) {
        pthread_mutex_lock(&r->lock);
        p->conn = *out;
        p->pnext = r->pipes;
        r->pipes = p;
        p->listed = true;
        pthread_mutex_unlock(&r->lock);
    }
    /* completions that came before the loop watched the fd */
    rd_wake_reader(p);
    return 0;
}

/* ---- the node's device and listener ------------------------------------------------ */

static void *rd_poller(void *arg);

static const qrpc__verbs_ops *rd_provider(const char *name)
{
    if (strcmp(name, "emu") == 0)
        return &qrpc__verbs_emu;
#ifdef QRPC_HAVE_VERBS
    if (strcmp(name, "verbs") == 0 || strcmp(name, "auto") == 0)
        return &qrpc__verbs_ibv;
#endif
    return NULL;
}

int qrpc__rdma_open(qrpc_node *n)
{
    const char *want = n->cfg.rdma;
    const qrpc__verbs_ops *ops;
    qrpc__rdma *r;
    char why[160] = "";
    int rc;

    if (want == NULL)
        want = getenv("QRPC_RDMA");
    if (want == NULL || want[0] == '\0')
        want = "auto";
    if (strcmp(want, "none") == 0)
        return 0;
    if (strcmp(want, "auto") != 0 && strcmp(want, "verbs") != 0 && strcmp(want, "emu") != 0) {
        qrpc__log(n, "rdma: unknown provider \"%s\" (auto, verbs, emu or none)", want);
        return QRPC_EINVAL;
    }
    ops = rd_provider(want);
    if (ops == NULL) {
        if (strcmp(want, "auto") == 0)
            return 0;           /* no verbs in this build: TCP only */
        qrpc__log(n, "rdma: provider \"%s\" is not in this build (no libibverbs)", want);
        return QRPC_ENOTSUP;
    }
    r = calloc(1, sizeof *r);
    if (r == NULL)
        return QRPC_ENOMEM;
    r->node = n;
    r->ops = ops;
    r->credits = n->cfg.rdma_credits;
    r->polling = n->cfg.rdma_polling != 0;
    atomic_init(&r->stop, false);
    pthread_mutex_init(&r->lock, NULL);
    rc = ops->dev_open(&r->dev, why, sizeof why);
    if (rc != 0) {
        pthread_mutex_destroy(&r->lock);
        free(r);
        if (strcmp(want, "auto") == 0)
            return 0;           /* no device: TCP only, as on most machines */
        qrpc__log(n, "rdma: %s", why[0] != '\0' ? why : qrpc_strerror(rc));
        return rc;
    }
    n->rdma = r;
    if (r->polling) {
        if (pthread_create(&r->poller, NULL, rd_poller, r) != 0) {
            qrpc__rdma_close(n);
            return QRPC_EIO;
        }
        r->poller_on = true;
    }
    return 0;
}

int qrpc__rdma_listen(qrpc_node *n)
{
    qrpc__rdma *r = n->rdma;
    char addr[QRPC__ADDR_MAX], *colon;
    int rc;

    if (r == NULL)
        return 0;
    if (n->cfg.rdma_listen != NULL) {
        if (strlen(n->cfg.rdma_listen) >= sizeof addr)
            return QRPC_EADDR;
        snprintf(addr, sizeof addr, "%s", n->cfg.rdma_listen);
    } else {
        /* the TCP listener's host, any port */
        snprintf(addr, sizeof addr, "%s", n->address);
        colon = strrchr(addr, ':');
        if (colon == NULL)
            return QRPC_EADDR;
        snprintf(colon, sizeof addr - (size_t)(colon - addr), ":0");
    }
    rc = r->ops->listen(r->dev, addr, &r->lis, r->address, sizeof r->address);
    if (rc != 0) {
        qrpc__log(n, "rdma: cannot listen on %s: %s", addr, qrpc_strerror(rc));
        return rc;
    }
    snprintf(r->url, sizeof r->url, "%s://%s", r->ops->transport, r->address);
    rc = qrpc__io_listen_rdma(n, r->ops->listen_fd(r->lis));
    if (rc != 0) {
        r->ops->listen_close(r->lis);
        r->lis = NULL;
        r->address[0] = r->url[0] = '\0';
    }
    return rc;
}

void qrpc__rdma_accept(qrpc_node *n)
{
    qrpc__rdma *r = n->rdma;

    for (;;) {
        uint8_t pd[QRPC__VPDATA_MAX], mine[RD_PDATA_LEN];
        size_t pdlen = sizeof pd;
        qrpc__vcaps caps;
        qrpc__conn *c;
        rd_pipe *p;
        const char *why = NULL;
        int rc;

        char peer[QRPC__ADDR_MAX] = "";
        qrpc__vep *ep = NULL;

        rd_caps(r, &caps);
        rc = r->ops->accept(r->lis, &caps, &ep, pd, &pdlen, peer, sizeof peer);
        if (rc != 0) {
            qrpc__log(n, "rdma: refused a connection: %s", qrpc_strerror(rc));
            continue;
        }
        if (ep == NULL)
            return;
        if (rd_pipe_new(r, &p) != 0) {
            qrpc__log(n, "rdma: refused a connection from %s: out of memory", peer);
            r->ops->ep_close(ep);
            continue;
        }
        p->ep = ep;
        snprintf(p->peer, sizeof p->peer, "%s://%s", r->ops->transport, peer);
        rc = rd_pdata_take(p, pd, pdlen, &why);
        if (rc == 0)
            rc = rd_post_all(p);
        if (rc == 0)
            rc = rd_pipe_fds(p);
        if (rc == 0) {
            rd_pdata_put(p, mine);
            rc = r->ops->accept_finish(p->ep, mine, sizeof mine);
        }
        if (rc != 0) {
            qrpc__log(n, "rdma: refused a connection from %s: %s", p->peer,
                      why != NULL ? why : qrpc_strerror(rc));
            rd_free(p);
            continue;
        }
        if (rd_pipe_start(p, QRPC__CONN_SERVER, &c) != 0) {
            qrpc__log(n, "rdma: dropping a connection: out of resources");
            continue;
        }
        qrpc__conn_unref(c);    /* the loop keeps its own */
    }
}

void qrpc__rdma_stop(qrpc_node *n)
{
    qrpc__rdma *r = n->rdma;

    if (r == NULL || !r->poller_on)
        return;
    atomic_store(&r->stop, true);
    pthread_join(r->poller, NULL);
    r->poller_on = false;
}

void qrpc__rdma_unlisten(qrpc_node *n)
{
    qrpc__rdma *r = n->rdma;

    if (r == NULL || r->lis == NULL)
        return;
    r->ops->listen_close(r->lis);
    r->lis = NULL;
}

void qrpc__rdma_close(qrpc_node *n)
{
    qrpc__rdma *r = n->rdma;

    if (r == NULL)
        return;
    qrpc__rdma_stop(n);
    qrpc__rdma_unlisten(n);
    r->ops->dev_close(r->dev);
    pthread_mutex_destroy(&r->lock);
    free(r);
    n->rdma = NULL;
}

const char *qrpc__rdma_transport(const qrpc_node *n)
{
    return n->rdma != NULL ? n->rdma->ops->transport : NULL;
}

const char *qrpc__rdma_address(const qrpc_node *n)
{
    return n->rdma != NULL && n->rdma->address[0] != '\0' ? n->rdma->address : NULL;
}

const char *qrpc_node_rdma_address(const qrpc_node *n)
{
    return n != NULL && n->rdma != NULL && n->rdma->url[0] != '\0' ? n->rdma->url : NULL;
}

/*
 * Polling mode: read every connection, as a loop thread would on an
 * event, over and over.  Each pass holds references, not the lock, while
 * it reads, since a read may fail a connection (which unlists it).
 */
static void *rd_poller(void *arg)
{
    qrpc__rdma *r = arg;
    qrpc__conn *snap[64];

    while (!atomic_load(&r->stop)) {
        size_t k = 0, i;
        rd_pipe *p;

        pthread_mutex_lock(&r->lock);
        for (p = r->pipes; p != NULL && k < 64; p = p->pnext) {
            qrpc__conn_ref(p->conn);
            snap[k++] = p->conn;
        }
        pthread_mutex_unlock(&r->lock);
        for (i = 0; i < k; i++) {
            if (r->node->io != NULL)
                qrpc__io_poll_conn(r->node, snap[i]);
            qrpc__conn_unref(snap[i]);
        }
        if (k == 0)
            sched_yield();      /* nothing to poll yet: stay polite */
    }
    return NULL;
}

/* ---- the FrontEnd of a remote node ---------------------------------------------- */

typedef struct rd_fe {
    qrpc__cfe cfe;              /* first: the FrontEnd's connection */
    char addr[QRPC__ADDR_MAX];  /* host:port, without the scheme */
} rd_fe;

/* Connects to fe's node, waiting until deadline_ns (node clock) at most
 * (qrpc__cfe's dial). */
static int rd_dial(qrpc__cfe *cfe, uint64_t deadline_ns, qrpc__conn **out)
{
    rd_fe *fe = (rd_fe *)cfe;
    qrpc_node *n = cfe->node;
    qrpc__rdma *r = n->rdma;
    uint64_t now = qrpc__now_ns(n), rel, deadline;
    uint8_t mine[RD_PDATA_LEN], pd[QRPC__VPDATA_MAX];
    size_t pdlen = sizeof pd;
    char why[160] = "";
    const char *bad = NULL;
    qrpc__vcaps caps;
    rd_pipe *p;
    int rc;

    rel = deadline_ns > now ? deadline_ns - now : 0;
    if (rel > (uint64_t)RD_DIAL_MS * 1000000u)
        rel = (uint64_t)RD_DIAL_MS * 1000000u;
    deadline = qrpc__mono_ns() + rel;
    rc = rd_pipe_new(r, &p);
    if (rc != 0)
        return QRPC_EUNAVAILABLE;
    snprintf(p->peer, sizeof p->peer, "%s://%s", r->ops->transport, fe->addr);
    rd_caps(r, &caps);
    rc = r->ops->connect_start(r->dev, fe->addr, &caps, deadline, &p->ep, why, sizeof why);
    if (rc == 0)
        rc = rd_post_all(p);
    if (rc == 0) {
        rd_pdata_put(p, mine);
        rc = r->ops->connect_finish(p->ep, mine, sizeof mine, pd, &pdlen, deadline, why,
                                    sizeof why);
    }
    if (rc == 0)
        rc = rd_pdata_take(p, pd, pdlen, &bad);
    if (rc == 0)
        rc = rd_pipe_fds(p);
    if (rc != 0) {
        qrpc__log(n, "cannot connect to %s: %s", p->peer,
                  bad != NULL ? bad : why[0] != '\0' ? why : qrpc_strerror(rc));
        rd_free(p);
        return QRPC_EUNAVAILABLE;
    }
    rc = rd_pipe_start(p, QRPC__CONN_CLIENT, out);
    return rc != 0 ? QRPC_EUNAVAILABLE : 0;
}

static int rd_fe_init(void **fep, qrpc_node *n, const char *addr)
{
    const char *t = qrpc__rdma_transport(n), *rest;
    rd_fe *fe;
    size_t tl;

    if (t == NULL)
        return QRPC_EADDR;      /* this node has no RDMA device */
    tl = strlen(t);
    if (strncmp(addr, t, tl) != 0 || strncmp(addr + tl, "://", 3) != 0)
        return QRPC_EADDR;
    rest = addr + tl + 3;
    if (rest[0] == '\0' || strlen(rest) >= QRPC__ADDR_MAX || strchr(rest, ':') == NULL)
        return QRPC_EADDR;
    fe = calloc(1, sizeof *fe);
    if (fe == NULL)
        return QRPC_ENOMEM;
    qrpc__cfe_init(&fe->cfe, n, rd_dial);
    snprintf(fe->addr, sizeof fe->addr, "%s", rest);
    *fep = fe;
    return 0;
}

static const qrpc__fe_ops rd_fe_ops = {
    .fe_init = rd_fe_init,
    .fe_close = qrpc__cfe_op_close,
    .fe_fini = qrpc__cfe_op_fini,
    .fe_call = qrpc__cfe_op_call,
};

const qrpc__tran qrpc__tran_rdma = {
    .tran_name = "rdma",
    .tran_fe = &rd_fe_ops,
};
