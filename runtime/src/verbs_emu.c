/*
 * verbs_emu.c - the "emu" provider of verbs.h: a software stand-in for an
 * RDMA adapter, so that the RDMA transport runs, every line of it, on
 * machines without one (our build and CI machines).  It is a test double
 * for the hardware: it keeps the semantics of a reliable-connected queue
 * pair that the transport relies on, and is stricter where hardware would
 * hide a bug (see RNR below).  It is not fast, not zero-copy, and not a
 * model of InfiniBand's wire protocol.
 *
 * An endpoint (one queue pair, its send and receive CQs and its
 * completion channel) is joined to its peer, in this or another process,
 * by one TCP socket.  Each connected endpoint has an "adapter" thread that
 * plays the hardware: a poll() loop over the non-blocking socket and an
 * eventfd that post_send and disconnect kick.  It always reads (what it
 * writes waits in an outgoing queue), so two adapters writing to each
 * other can never both block: no deadlock.
 *
 * On the socket, after a fixed-size handshake (magic, version, the
 * sender's queue sizes and its private data), every packet is a 24-byte
 * header (type, status, length, remote address, rkey, immediate; big
 * endian) and, for SEND, WRITE_IMM and a READ's response, the data.  A
 * request (SEND, WRITE_IMM, READ) gets exactly one response, in order,
 * like an RC ack: OK after the data was placed (with the bytes for a
 * READ), or a NAK that fails the queue pair.  The socket is a network
 * input: every header field is checked, lengths are bounded, data is
 * buffered only once its target is known to hold it, and a peer may have
 * no more requests unanswered than the send queue it announced; anything
 * else moves the queue pair to the error state.
 *
 * What the emulation keeps of the hardware:
 *  - Local sges are read at post time (SEND, WRITE_IMM) and checked when
 *    data is placed (receives, a READ's target; LOCAL_WRITE needed): a bad
 *    one completes with QRPC__VWC_LOC_PROT.  Remote accesses are checked
 *    by the responder against its own registrations: rkey, bounds, access
 *    (QRPC__VWC_REM_ACCESS at the requester).  A zero-length WRITE_IMM or
 *    READ checks no key, as InfiniBand specifies for zero-length DMA.
 *  - A SEND consumes the oldest posted receive; a longer message fails
 *    that receive with QRPC__VWC_LOC_LEN and the send with
 *    QRPC__VWC_REM_INV_REQ.  A receive whose sge turns out bad fails with
 *    QRPC__VWC_LOC_PROT and the send with QRPC__VWC_FATAL (hardware's
 *    "remote operation error", which verbs.h does not tell apart).
 *  - Stricter than hardware with rnr_retry 7: a SEND or WRITE_IMM that
 *    finds no receive posted fails at once (QRPC__VWC_RNR) and both queue
 *    pairs go to the error state, so a flow-control bug fails a test
 *    instead of stalling it.  Also quicker: a queue pair that fails for a
 *    local reason (LOC_PROT, a disconnect) fails its peer at once, which
 *    flushes, where hardware would leave the peer to find out when its
 *    retries run out (QRPC__VWC_RETRY, never reported here).
 *  - Send-queue completions come in posting order, each when the peer's
 *    response arrived; receives complete in posting order.  Any error
 *    moves the queue pair to the error state: every outstanding request
 *    and receive, and every one posted later, completes with
 *    QRPC__VWC_FLUSH; the peer is told by shutting the socket down (after
 *    the NAK, if there is one), and goes to the error state too.
 *  - A queue's slot is free again only when its completion was polled
 *    (as mlx5 does), so post_* fail with QRPC_ENOMEM until then, and a CQ
 *    never holds more than its queue's depth: the max_send + max_recv
 *    that verbs.h gives each CQ cannot overflow.  The CQs are the done
 *    heads of the two queues, so they are kept there, not copied.
 *  - ep_fd is an eventfd, kicked when a completion reaches a CQ armed
 *    since its last announcement, and when the queue pair fails (news
 *    for both CQs).  arm(cq) consumes cq's announcement only: the fd is
 *    drained when neither CQ has one left, so the thread of the other CQ
 *    still finds it readable.
 *  - dereg_mr: bytes move in and out of registered memory only with the
 *    device's registration table read-locked, and dereg_mr write-locks
 *    it, so when it returns no emulation thread touches that memory.
 *
 * Known limits: a message is at most EMU_MSG_MAX (1 GiB; hardware: 2 GiB),
 * longer ones complete with QRPC__VWC_LOC_LEN as hardware does beyond its
 * max_msg_sz; data is copied at least twice (post time, socket); a
 * READ's response is copied out of registered memory when the request
 * arrives, so a responder holds up to the bytes its peer asked for at
 * once; accept waits up to EMU_ACCEPT_WAIT_MS (1 s) for a connection's
 * handshake, so a requester that connects (connect_start) and sends its
 * handshake (connect_finish) more than a second later is refused, and a
 * silent client holds accept for that second; lookups in the
 * registration table are linear (the transport registers a few pools);
 * a peer that stops reading keeps its responses (as many as its send
 * queue is deep) queued here until the endpoint is closed; keys repeat
 * only after 2^32 registrations of one device (never one still
 * registered).
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"
#include "verbs.h"

#define EMU_MAGIC          0x5156454du     /* "QVEM" */
#define EMU_VERSION        1u
#define EMU_HELLO          (16 + QRPC__VPDATA_MAX)   /* handshake, both ways */
#define EMU_HDR            24              /* packet header */
#define EMU_MSG_MAX        (1u << 30)      /* longest message */
#define EMU_QUEUE_MAX      32768u          /* deepest queue (mlx5's max_qp_wr) */
#define EMU_ACCEPT_WAIT_MS 1000u           /* longest wait for a handshake in accept */
#define EMU_RX_BURST       64              /* reads before the adapter looks at writing */

#define EMU_ACC_ALL (QRPC__VACC_LOCAL_WRITE | QRPC__VACC_REMOTE_WRITE | QRPC__VACC_REMOTE_READ)

/* Packet types. */
enum { EMU_T_SEND = 1, EMU_T_WRITE_IMM, EMU_T_READ, EMU_T_RESP };

/* A response's status on the wire (not the enum, which may change). */
enum { EMU_R_OK = 0, EMU_R_RNR, EMU_R_INV_REQ, EMU_R_REM_ACCESS, EMU_R_REM_OP };

/* What emu_mr_io does with the bytes. */
enum { EMU_CHECK, EMU_INTO, EMU_FROM };

/* One registration; base and len as the peer's remote_addr sees them. */
typedef struct emu_reg {
    uint64_t base;
    uint64_t len;
    unsigned access;
    uint32_t lkey, rkey;
} emu_reg;

struct qrpc__vdev {
    pthread_rwlock_t lock;      /* regs; read-held while bytes move in or out of them */
    emu_reg *regs;
    size_t nregs, cap;
    uint32_t key_seed;          /* keys: a counter, scrambled (a bijection of it) */
    uint32_t key_next;
};

struct qrpc__vlis {
    qrpc__vdev *dev;
    int fd;
};

typedef struct emu_swr {
    qrpc__vop op;
    qrpc__vsge sge;             /* READ: where the bytes go */
    qrpc__vwc wc;               /* wr_id from the start, the rest once done */
} emu_swr;

typedef struct emu_rwr {
    qrpc__vsge sge;
    qrpc__vwc wc;
} emu_rwr;

/* An outgoing packet: header and data, written from off on. */
typedef struct emu_pkt {
    struct emu_pkt *next;
    bool response;
    size_t len, off;
    uint8_t data[];
} emu_pkt;

typedef struct emu_hdr {
    uint8_t type, status;
    uint16_t zero;
    uint32_t len;
    uint64_t addr;
    uint32_t rkey, imm;
} emu_hdr;

/* The adapter's receiving state (its thread's alone). */
typedef struct emu_rx {
    uint8_t raw[EMU_HDR];
    size_t got;                 /* header bytes, then data bytes */
    emu_hdr h;
    uint8_t *data;              /* h.len (> 0) bytes once the header is in and data
                                   follows; NULL while a header is being read */
} emu_rx;

struct qrpc__vep {
    qrpc__vdev *dev;
    int sock, wake_fd, ev_fd;
    qrpc__vcaps caps;
    uint32_t peer_max_send;     /* from the handshake: the peer's unanswered requests */
    char peer[QRPC__ADDR_MAX];
    pthread_t thread;
    bool running;               /* the adapter thread exists */
    emu_rx rx;

    pthread_mutex_t lock;       /* everything below */
    bool error;                 /* the queue pair is in the error state */
    bool shut;                  /* our side of the socket is shut down */
    bool rx_eof;                /* nothing more to read */
    bool stop;                  /* ep_close: the adapter returns */
    bool armed[2];              /* by qrpc__vcq */
    bool announced[2];          /* ev_fd was kicked for it and it was not re-armed */
    /* The queues: [polled, done) completed, [done, posted) outstanding. */
    emu_swr *sq;
    uint64_t sq_polled, sq_done, sq_posted;
    emu_rwr *rq;
    uint64_t rq_polled, rq_done, rq_posted;
    emu_pkt *out, **out_tail;
    uint32_t open_reqs;         /* the peer's requests whose response is not written */
};

/* ---- small things ------------------------------------------------------------- */

/* Waits until fd polls for events or deadline: 1 ready, 0 timed out, -1 errno. */
static int emu_wait(int fd, short events, uint64_t deadline)
{
    struct pollfd pfd = { .fd = fd, .events = events };
    int rc;

    for (;;) {
        uint64_t now = qrpc__mono_ns(), left = deadline <= now ? 0 : deadline - now;
        uint64_t ms = left / 1000000u + (left % 1000000u != 0);

        if (ms > INT_MAX)
            ms = INT_MAX;
        rc = poll(&pfd, 1, (int)ms);
        if (rc > 0)
            return 1;
        if (rc == 0 && qrpc__mono_ns() >= deadline)
            return 0;
        if (rc < 0 && errno != EINTR)
            return -1;
    }
}

/*
 * Sends (out) or receives exactly len bytes on the non-blocking fd by
 * deadline: 0, or an errno value (ETIMEDOUT; ECONNRESET for an EOF).
 */
static int emu_xfer(int fd, void *buf, size_t len, bool out, uint64_t deadline)
{
    uint8_t *p = buf;
    size_t done = 0;

    while (done < len) {
        ssize_t n = out ? send(fd, p + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT)
                        : recv(fd, p + done, len - done, MSG_DONTWAIT);
        int w;

        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n == 0)
            return ECONNRESET;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return errno;
        w = emu_wait(fd, out ? POLLOUT : POLLIN, deadline);
        if (w == 0)
            return ETIMEDOUT;
        if (w < 0)
            return errno;
    }
    return 0;
}

static void emu_kick(int fd)
{
    uint64_t one = 1;

    /* the counter cannot reach its limit; EAGAIN would mean it is readable anyway */
    if (write(fd, &one, sizeof one) < 0) {
        /* nothing to do */
    }
}

static void emu_drain(int fd)
{
    uint64_t v;

    if (read(fd, &v, sizeof v) < 0) {
        /* EAGAIN: it was not readable */
    }
}

static void emu_tune(int fd)
{
    int one = 1;

    /* one small response per request: Nagle would hold them back */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void emu_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void emu_put32(uint8_t *p, uint32_t v)
{
    emu_put16(p, (uint16_t)(v >> 16));
    emu_put16(p + 2, (uint16_t)v);
}

static void emu_put64(uint8_t *p, uint64_t v)
{
    emu_put32(p, (uint32_t)(v >> 32));
    emu_put32(p + 4, (uint32_t)v);
}

static uint16_t emu_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t emu_get32(const uint8_t *p)
{
    return (uint32_t)emu_get16(p) << 16 | emu_get16(p + 2);
}

static uint64_t emu_get64(const uint8_t *p)
{
    return (uint64_t)emu_get32(p) << 32 | emu_get32(p + 4);
}

/* ---- the handshake --------------------------------------------------------------- */

static void emu_hello_put(uint8_t *b, const qrpc__vcaps *caps, const void *pdata, size_t len)
{
    memset(b, 0, EMU_HELLO);
    emu_put32(b, EMU_MAGIC);
    emu_put16(b + 4, EMU_VERSION);
    emu_put16(b + 6, (uint16_t)len);
    emu_put32(b + 8, caps->max_send);
    emu_put32(b + 12, caps->max_recv);
    if (len > 0)
        memcpy(b + 16, pdata, len);
}

/* Checks a handshake; false if it is not one.  pdata has QRPC__VPDATA_MAX bytes. */
static bool emu_hello_get(const uint8_t *b, uint32_t *max_send, void *pdata, size_t *len)
{
    uint32_t ms = emu_get32(b + 8), mr = emu_get32(b + 12);
    size_t n = emu_get16(b + 6);

    if (emu_get32(b) != EMU_MAGIC || emu_get16(b + 4) != EMU_VERSION ||
        n > QRPC__VPDATA_MAX || ms == 0 || ms > EMU_QUEUE_MAX || mr == 0 ||
        mr > EMU_QUEUE_MAX)
        return false;
    *max_send = ms;
    memcpy(pdata, b + 16, n);
    *len = n;
    return true;
}

/* ---- the device and its registrations -------------------------------------------------- */

static int emu_dev_open(qrpc__vdev **out, char *why, size_t why_len)
{
    qrpc__vdev *d = calloc(1, sizeof *d);
    pthread_rwlockattr_t attr;
    int rc;

    *out = NULL;
    if (d == NULL)
        goto fail;
    /*
     * Writers first: glibc's default lets a stream of readers (adapters
     * moving bytes) hold off reg_mr and dereg_mr for ever.
     */
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    rc = pthread_rwlock_init(&d->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (rc != 0)
        goto fail;
    d->key_seed = (uint32_t)qrpc__random64();
    d->key_next = (uint32_t)(qrpc__random64() >> 32);
    *out = d;
    return 0;

fail:
    free(d);
    snprintf(why, why_len, "emu: out of memory");
    return QRPC_ENOMEM;
}

static void emu_dev_close(qrpc__vdev *d)
{
    if (d == NULL)
        return;
    pthread_rwlock_destroy(&d->lock);
    free(d->regs);
    free(d);
}

static bool emu_key_used(const qrpc__vdev *d, uint32_t k)
{
    size_t i;

    for (i = 0; i < d->nregs; i++)
        if (d->regs[i].lkey == k || d->regs[i].rkey == k)
            return true;
    return false;
}

/* A new key (table write-locked): never 0, never one in use. */
static uint32_t emu_key(qrpc__vdev *d)
{
    uint32_t k;

    do  /* multiplying by an odd constant is a bijection mod 2^32: no repeats */
        k = (d->key_next++ * 0x9e3779b1u) ^ d->key_seed;
    while (k == 0 || emu_key_used(d, k));
    return k;
}

static int emu_reg_mr(qrpc__vdev *d, void *addr, size_t len, unsigned access, qrpc__vmr *out)
{
    uint64_t base = (uint64_t)(uintptr_t)addr;
    emu_reg *r;

    /* what ibv_reg_mr refuses (EINVAL), including remote writes without local ones */
    if (addr == NULL || len == 0 || (access & ~EMU_ACC_ALL) != 0 ||
        ((access & QRPC__VACC_REMOTE_WRITE) && !(access & QRPC__VACC_LOCAL_WRITE)) ||
        base + len < base)
        return QRPC_EIO;
    pthread_rwlock_wrlock(&d->lock);
    if (d->nregs == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        emu_reg *regs = realloc(d->regs, cap * sizeof *regs);

        if (regs == NULL)
            goto nomem;
        d->regs = regs;
        d->cap = cap;
    }
    r = &d->regs[d->nregs++];
    r->base = base;
    r->len = len;
    r->access = access;
    r->lkey = r->rkey = 0;      /* not yet in use: emu_key must not see them */
    r->lkey = emu_key(d);
    r->rkey = emu_key(d);
    out->addr = addr;
    out->len = len;
    out->lkey = r->lkey;
    out->rkey = r->rkey;
    out->prov = NULL;
    pthread_rwlock_unlock(&d->lock);
    return 0;

nomem:
    pthread_rwlock_unlock(&d->lock);
    return QRPC_ENOMEM;
}

static void emu_dereg_mr(qrpc__vdev *d, qrpc__vmr *mr)
{
    size_t i;

    pthread_rwlock_wrlock(&d->lock);
    for (i = 0; i < d->nregs; i++) {
        if (d->regs[i].lkey == mr->lkey && d->regs[i].rkey == mr->rkey) {
            d->regs[i] = d->regs[--d->nregs];
            break;
        }
    }
    pthread_rwlock_unlock(&d->lock);
}

/*
 * Finds the registration of key (an rkey if remote, else an lkey) holding
 * [addr, addr+len) with the access need and, with the table read-locked,
 * copies buf into it (EMU_INTO), or out of it into buf (EMU_FROM), or
 * nothing (EMU_CHECK).  False if there is none: nothing was copied.
 */
static bool emu_mr_io(qrpc__vdev *d, uint32_t key, bool remote, uint64_t addr, uint64_t len,
                      unsigned need, int dir, void *buf)
{
    bool ok = false;
    size_t i;

    pthread_rwlock_rdlock(&d->lock);
    for (i = 0; i < d->nregs; i++) {
        const emu_reg *r = &d->regs[i];

        if ((remote ? r->rkey : r->lkey) != key)
            continue;
        /* written so that no sum can wrap, whatever the peer sent */
        ok = (r->access & need) == need && addr >= r->base && len <= r->len &&
             addr - r->base <= r->len - len;
        if (ok && len > 0 && dir == EMU_INTO)
            memcpy((void *)(uintptr_t)addr, buf, (size_t)len);
        else if (ok && len > 0 && dir == EMU_FROM)
            memcpy(buf, (const void *)(uintptr_t)addr, (size_t)len);
        break;
    }
    pthread_rwlock_unlock(&d->lock);
    return ok;
}

/* ---- completions and the error state (endpoint locked) ------------------------------- */

static void emu_notify(qrpc__vep *e, qrpc__vcq cq)
{
    if (e->armed[cq]) {
        e->armed[cq] = false;
        e->announced[cq] = true;
        emu_kick(e->ev_fd);
    }
}

/* Completes the oldest outstanding send request. */
static void emu_sq_complete(qrpc__vep *e, qrpc__vwc_status st, uint32_t byte_len)
{
    emu_swr *w = &e->sq[e->sq_done++ % e->caps.max_send];

    w->wc.status = st;
    w->wc.opcode = w->op == QRPC__VOP_SEND ? QRPC__VWC_SEND :
                   w->op == QRPC__VOP_READ ? QRPC__VWC_READ : QRPC__VWC_WRITE;
    w->wc.byte_len = byte_len;
    w->wc.imm = 0;
    emu_notify(e, QRPC__VCQ_SEND);
}

/* Completes the oldest posted receive. */
static void emu_rq_complete(qrpc__vep *e, qrpc__vwc_status st, qrpc__vwc_opcode op,
                            uint32_t byte_len, uint32_t imm)
{
    emu_rwr *r = &e->rq[e->rq_done++ % e->caps.max_recv];

    r->wc.status = st;
    r->wc.opcode = op;
    r->wc.byte_len = byte_len;
    r->wc.imm = imm;
    emu_notify(e, QRPC__VCQ_RECV);
}

static emu_pkt *emu_pkt_new(uint8_t type, uint8_t status, uint32_t len, uint64_t addr,
                            uint32_t rkey, uint32_t imm, size_t data_len)
{
    emu_pkt *p = malloc(sizeof *p + EMU_HDR + data_len);

    if (p == NULL)
        return NULL;
    p->next = NULL;
    p->response = type == EMU_T_RESP;
    p->len = EMU_HDR + data_len;
    p->off = 0;
    p->data[0] = type;
    p->data[1] = status;
    emu_put16(p->data + 2, 0);
    emu_put32(p->data + 4, len);
    emu_put64(p->data + 8, addr);
    emu_put32(p->data + 16, rkey);
    emu_put32(p->data + 20, imm);
    return p;
}

/* Appends p to the outgoing queue; true if it was empty. */
static bool emu_append(qrpc__vep *e, emu_pkt *p)
{
    bool was_empty = e->out == NULL;

    *e->out_tail = p;
    e->out_tail = &p->next;
    return was_empty;
}

/* Queues p from outside the adapter: wakes it to write. */
static void emu_queue(qrpc__vep *e, emu_pkt *p)
{
    if (emu_append(e, p))
        emu_kick(e->wake_fd);
}

/*
 * Moves the queue pair to the error state: what is outstanding flushes
 * and ep_fd polls readable.  Requests not yet on the wire are never sent
 * (a queue pair in error transmits nothing new).  Graceful: responses
 * already queued, and the NAK nak if not EMU_R_OK, are written first and
 * the adapter then shuts the socket down (emu_write): they are facts the
 * peer should know (data placed, and why it fails).  Abrupt: the peer is
 * gone or not to be trusted, or we disconnect: everything is dropped and
 * the socket shut down now.  Either way the peer reads an EOF and fails too.
 */
static void emu_fail(qrpc__vep *e, int nak, bool abrupt)
{
    emu_pkt **pp, *p;

    if (!e->error) {
        e->error = true;
        while (e->sq_done < e->sq_posted)
            emu_sq_complete(e, QRPC__VWC_FLUSH, 0);
        while (e->rq_done < e->rq_posted)
            emu_rq_complete(e, QRPC__VWC_FLUSH, QRPC__VWC_RECV, 0, 0);
        /* news for the threads of both CQs */
        e->announced[QRPC__VCQ_SEND] = e->announced[QRPC__VCQ_RECV] = true;
        emu_kick(e->ev_fd);
    }
    for (pp = &e->out; (p = *pp) != NULL;) {
        /* a packet begun on the wire is finished, or the peer would misparse */
        if (abrupt || (!p->response && p->off == 0)) {
            *pp = p->next;
            free(p);
        } else {
            pp = &p->next;
        }
    }
    e->out_tail = pp;
    if (!abrupt && nak != EMU_R_OK && !e->shut) {
        p = emu_pkt_new(EMU_T_RESP, (uint8_t)nak, 0, 0, 0, 0, 0);
        if (p == NULL)
            abrupt = true;      /* the peer learns from the EOF alone */
        else
            emu_queue(e, p);
    }
    if (abrupt) {
        (void)shutdown(e->sock, SHUT_RDWR);
        e->shut = true;
    }
    emu_kick(e->wake_fd);
}

/*
 * Queues p (NULL: an OK without data) as the answer to a request.  The
 * adapter's own (it reads requests): it writes what is queued once
 * emu_read returns, so it needs no kick of its wake_fd.
 */
static void emu_respond(qrpc__vep *e, emu_pkt *p)
{
    if (p == NULL)
        p = emu_pkt_new(EMU_T_RESP, EMU_R_OK, 0, 0, 0, 0, 0);
    if (p == NULL)
        emu_fail(e, EMU_R_OK, true);
    else
        (void)emu_append(e, p);
}

/* ---- the adapter: writing ---------------------------------------------------------- */

/* Writes what the socket takes of the outgoing queue (endpoint locked). */
static void emu_write(qrpc__vep *e)
{
    emu_pkt *p;

    while ((p = e->out) != NULL && !e->shut) {
        ssize_t n = send(e->sock, p->data + p->off, p->len - p->off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                emu_fail(e, EMU_R_OK, true);
            return;
        }
        p->off += (size_t)n;
        if (p->off < p->len)
            return;             /* the socket is full: POLLOUT brings us back */
        e->out = p->next;
        if (e->out == NULL)
            e->out_tail = &e->out;
        if (p->response && e->open_reqs > 0)
            e->open_reqs--;
        free(p);
    }
    if (e->error && e->out == NULL && !e->shut) {
        (void)shutdown(e->sock, SHUT_WR);   /* after the NAK: the peer reads EOF */
        e->shut = true;
    }
}

/* ---- the adapter: reading ---------------------------------------------------------- */

/* A request from the peer begins; false if it has too many unanswered. */
static bool emu_req_open(qrpc__vep *e)
{
    if (e->open_reqs >= e->peer_max_send)
        return false;
    e->open_reqs++;
    return true;
}

static void emu_hdr_get(const uint8_t *b, emu_hdr *h)
{
    h->type = b[0];
    h->status = b[1];
    h->zero = emu_get16(b + 2);
    h->len = emu_get32(b + 4);
    h->addr = emu_get64(b + 8);
    h->rkey = emu_get32(b + 16);
    h->imm = emu_get32(b + 20);
}

/*
 * A whole header is in (endpoint locked): checks it, then either handles
 * the packet or, when data follows, makes room for it (rx->data).
 * Every target is checked before a byte is buffered.
 */
static void emu_rx_begin(qrpc__vep *e)
{
    emu_rx *rx = &e->rx;
    const emu_hdr *h = &rx->h;
    emu_rwr *r;
    emu_swr *w;
    emu_pkt *p;
    qrpc__vwc_status st;

    emu_hdr_get(rx->raw, &rx->h);
    rx->got = 0;
    if (e->error)
        return;                 /* failed since emu_read looked (a disconnect): dropped */
    if (h->zero != 0 || h->len > EMU_MSG_MAX)
        goto bad;
    switch (h->type) {
    case EMU_T_SEND:
        if (h->status != 0 || h->addr != 0 || h->rkey != 0 || h->imm != 0 || !emu_req_open(e))
            goto bad;
        if (e->rq_done == e->rq_posted) {
            emu_fail(e, EMU_R_RNR, false);
            return;
        }
        r = &e->rq[e->rq_done % e->caps.max_recv];
        if (h->len > r->sge.len) {
            emu_rq_complete(e, QRPC__VWC_LOC_LEN, QRPC__VWC_RECV, 0, 0);
            emu_fail(e, EMU_R_INV_REQ, false);
            return;
        }
        if (h->len == 0) {
            emu_rq_complete(e, QRPC__VWC_OK, QRPC__VWC_RECV, 0, 0);
            emu_respond(e, NULL);
            return;
        }
        /* the whole posted buffer must be registered, not just what this message fills */
        if (!emu_mr_io(e->dev, r->sge.lkey, false, (uint64_t)(uintptr_t)r->sge.addr,
                       r->sge.len, QRPC__VACC_LOCAL_WRITE, EMU_CHECK, NULL)) {
            emu_rq_complete(e, QRPC__VWC_LOC_PROT, QRPC__VWC_RECV, 0, 0);
            emu_fail(e, EMU_R_REM_OP, false);
            return;
        }
        break;
    case EMU_T_WRITE_IMM:
        if (h->status != 0 || !emu_req_open(e))
            goto bad;
        if (h->len > 0 && !emu_mr_io(e->dev, h->rkey, true, h->addr, h->len,
                                     QRPC__VACC_REMOTE_WRITE, EMU_CHECK, NULL)) {
            emu_fail(e, EMU_R_REM_ACCESS, false);
            return;
        }
        if (e->rq_done == e->rq_posted) {
            emu_fail(e, EMU_R_RNR, false);
            return;
        }
        if (h->len == 0) {
            emu_rq_complete(e, QRPC__VWC_OK, QRPC__VWC_RECV_IMM, 0, h->imm);
            emu_respond(e, NULL);
            return;
        }
        break;
    case EMU_T_READ:
        if (h->status != 0 || h->imm != 0 || !emu_req_open(e))
            goto bad;
        /* checked before the buffer is allocated, and again while copying */
        if (h->len > 0 && !emu_mr_io(e->dev, h->rkey, true, h->addr, h->len,
                                     QRPC__VACC_REMOTE_READ, EMU_CHECK, NULL)) {
            emu_fail(e, EMU_R_REM_ACCESS, false);
            return;
        }
        p = emu_pkt_new(EMU_T_RESP, EMU_R_OK, h->len, 0, 0, 0, h->len);
        if (p == NULL) {
            emu_fail(e, EMU_R_REM_OP, false);
            return;
        }
        if (h->len > 0 && !emu_mr_io(e->dev, h->rkey, true, h->addr, h->len,
                                     QRPC__VACC_REMOTE_READ, EMU_FROM, p->data + EMU_HDR)) {
            free(p);
            emu_fail(e, EMU_R_REM_ACCESS, false);
            return;
        }
        emu_respond(e, p);
        return;
    case EMU_T_RESP:
        if (h->addr != 0 || h->rkey != 0 || h->imm != 0 || e->sq_done == e->sq_posted)
            goto bad;           /* a response to nothing */
        w = &e->sq[e->sq_done % e->caps.max_send];
        if (h->status != EMU_R_OK) {
            st = h->status == EMU_R_RNR ? QRPC__VWC_RNR :
                 h->status == EMU_R_INV_REQ ? QRPC__VWC_REM_INV_REQ :
                 h->status == EMU_R_REM_ACCESS ? QRPC__VWC_REM_ACCESS :
                 h->status == EMU_R_REM_OP ? QRPC__VWC_FATAL : QRPC__VWC_OK;
            if (st == QRPC__VWC_OK || h->len != 0)
                goto bad;
            emu_sq_complete(e, st, 0);
            emu_fail(e, EMU_R_OK, false);
            return;
        }
        /* an OK carries a READ's bytes, all it asked for, and nothing else */
        if (h->len != (w->op == QRPC__VOP_READ ? w->sge.len : 0))
            goto bad;
        if (h->len == 0) {
            emu_sq_complete(e, QRPC__VWC_OK, 0);
            return;
        }
        if (!emu_mr_io(e->dev, w->sge.lkey, false, (uint64_t)(uintptr_t)w->sge.addr, h->len,
                       QRPC__VACC_LOCAL_WRITE, EMU_CHECK, NULL)) {
            emu_sq_complete(e, QRPC__VWC_LOC_PROT, 0);
            emu_fail(e, EMU_R_OK, false);
            return;
        }
        break;
    default:
        goto bad;
    }
    rx->data = malloc(h->len);
    if (rx->data == NULL)
        emu_fail(e, EMU_R_OK, true);
    return;

bad:
    /* not our protocol: nothing more from this peer can be trusted */
    emu_fail(e, EMU_R_OK, true);
}

/* Drops the packet being read: the next bytes are a header. */
static void emu_rx_reset(emu_rx *rx)
{
    free(rx->data);
    rx->data = NULL;
    rx->got = 0;
}

/* The data of the packet rx->h is in (endpoint locked): places it. */
static void emu_rx_end(qrpc__vep *e)
{
    emu_rx *rx = &e->rx;
    const emu_hdr *h = &rx->h;
    emu_rwr *r;
    emu_swr *w;

    /*
     * The queue pair may have failed meanwhile (a disconnect); if not, the
     * receive or request found at the header is still the oldest: only
     * this thread consumes them.  The registration may be gone: checked again.
     */
    if (e->error)
        goto out;
    switch (h->type) {
    case EMU_T_SEND:
        r = &e->rq[e->rq_done % e->caps.max_recv];
        if (!emu_mr_io(e->dev, r->sge.lkey, false, (uint64_t)(uintptr_t)r->sge.addr, h->len,
                       QRPC__VACC_LOCAL_WRITE, EMU_INTO, rx->data)) {
            emu_rq_complete(e, QRPC__VWC_LOC_PROT, QRPC__VWC_RECV, 0, 0);
            emu_fail(e, EMU_R_REM_OP, false);
            break;
        }
        emu_rq_complete(e, QRPC__VWC_OK, QRPC__VWC_RECV, h->len, 0);
        emu_respond(e, NULL);
        break;
    case EMU_T_WRITE_IMM:
        if (!emu_mr_io(e->dev, h->rkey, true, h->addr, h->len, QRPC__VACC_REMOTE_WRITE,
                       EMU_INTO, rx->data)) {
            emu_fail(e, EMU_R_REM_ACCESS, false);
            break;
        }
        emu_rq_complete(e, QRPC__VWC_OK, QRPC__VWC_RECV_IMM, h->len, h->imm);
        emu_respond(e, NULL);
        break;
    default:                    /* a READ's response */
        w = &e->sq[e->sq_done % e->caps.max_send];
        if (!emu_mr_io(e->dev, w->sge.lkey, false, (uint64_t)(uintptr_t)w->sge.addr, h->len,
                       QRPC__VACC_LOCAL_WRITE, EMU_INTO, rx->data)) {
            emu_sq_complete(e, QRPC__VWC_LOC_PROT, 0);
            emu_fail(e, EMU_R_OK, false);
            break;
        }
        emu_sq_complete(e, QRPC__VWC_OK, h->len);
        break;
    }
out:
    emu_rx_reset(rx);
}

/*
 * Reads what the socket has (a burst at most), packet by packet.  The
 * endpoint is locked once per whole header or data, not per recv: the
 * error state, which only grows, is looked at then (and at the start), and
 * a packet read on after a failure elsewhere (a disconnect) is dropped by
 * emu_rx_begin or emu_rx_end.
 */
static void emu_read(qrpc__vep *e)
{
    emu_rx *rx = &e->rx;
    uint8_t scrap[4096];
    bool error;
    int i;

    pthread_mutex_lock(&e->lock);
    error = e->error;
    pthread_mutex_unlock(&e->lock);
    for (i = 0; i < EMU_RX_BURST; i++) {
        uint8_t *dst;
        size_t want;
        ssize_t n;

        if (error) {
            /* read to the EOF, dropping everything: the peer must not block writing */
            emu_rx_reset(rx);
            dst = scrap;
            want = sizeof scrap;
        } else if (rx->data == NULL) {
            dst = rx->raw + rx->got;
            want = EMU_HDR - rx->got;
        } else {
            dst = rx->data + rx->got;
            want = rx->h.len - rx->got;
        }
        n = recv(e->sock, dst, want, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {           /* EOF or reset: the peer is gone */
            pthread_mutex_lock(&e->lock);
            e->rx_eof = true;
            emu_fail(e, EMU_R_OK, true);
            pthread_mutex_unlock(&e->lock);
            return;
        }
        if (error)
            continue;
        rx->got += (size_t)n;
        if (rx->got == (rx->data == NULL ? EMU_HDR : rx->h.len)) {
            pthread_mutex_lock(&e->lock);
            if (rx->data == NULL)
                emu_rx_begin(e);
            else
                emu_rx_end(e);
            error = e->error;
            pthread_mutex_unlock(&e->lock);
        }
    }
}

static void *emu_adapter(void *arg)
{
    qrpc__vep *e = arg;

    for (;;) {
        struct pollfd pfd[2];
        bool stop;

        pthread_mutex_lock(&e->lock);
        emu_write(e);           /* also shuts the socket down once a failure is told */
        stop = e->stop;
        pfd[1].events = (short)((e->rx_eof ? 0 : POLLIN) |
                                (e->out != NULL && !e->shut ? POLLOUT : 0));
        pthread_mutex_unlock(&e->lock);
        if (stop)
            break;
        pfd[0].fd = e->wake_fd;
        pfd[0].events = POLLIN;
        pfd[1].fd = pfd[1].events != 0 ? e->sock : -1;
        pfd[0].revents = pfd[1].revents = 0;
        if (poll(pfd, 2, -1) < 0)
            continue;           /* EINTR, or ENOMEM: try again */
        if (pfd[0].revents != 0)
            emu_drain(e->wake_fd);
        if (pfd[1].revents & (POLLIN | POLLHUP | POLLERR))
            emu_read(e);
    }
    return NULL;
}

/* ---- endpoints ------------------------------------------------------------------- */

static void emu_ep_free(qrpc__vep *e)
{
    emu_pkt *p;

    if (e->sock >= 0)
        close(e->sock);
    if (e->wake_fd >= 0)
        close(e->wake_fd);
    if (e->ev_fd >= 0)
        close(e->ev_fd);
    while ((p = e->out) != NULL) {
        e->out = p->next;
        free(p);
    }
    free(e->rx.data);
    free(e->sq);
    free(e->rq);
    pthread_mutex_destroy(&e->lock);
    free(e);
}

/* A new endpoint on the socket sock (its own on success; the caller's on failure). */
static int emu_ep_new(qrpc__vdev *d, int sock, const qrpc__vcaps *caps, const char *peer,
                      qrpc__vep **out)
{
    qrpc__vep *e;

    *out = NULL;
    if (caps == NULL || caps->max_send == 0 || caps->max_send > EMU_QUEUE_MAX ||
        caps->max_recv == 0 || caps->max_recv > EMU_QUEUE_MAX)
        return QRPC_EINVAL;
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return QRPC_ENOMEM;
    pthread_mutex_init(&e->lock, NULL);
    e->dev = d;
    e->caps = *caps;
    e->sock = -1;
    e->out_tail = &e->out;
    snprintf(e->peer, sizeof e->peer, "%s", peer);
    e->sq = calloc(caps->max_send, sizeof *e->sq);
    e->rq = calloc(caps->max_recv, sizeof *e->rq);
    e->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    e->ev_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (e->sq == NULL || e->rq == NULL || e->wake_fd < 0 || e->ev_fd < 0) {
        emu_ep_free(e);
        return QRPC_ENOMEM;
    }
    e->sock = sock;
    *out = e;
    return 0;
}

static int emu_start(qrpc__vep *e)
{
    if (pthread_create(&e->thread, NULL, emu_adapter, e) != 0)
        return QRPC_ENOMEM;
    e->running = true;
    return 0;
}

static int emu_ep_fd(qrpc__vep *e)
{
    return e->ev_fd;
}

static int emu_arm(qrpc__vep *e, qrpc__vcq cq)
{
    if (cq != QRPC__VCQ_SEND && cq != QRPC__VCQ_RECV)
        return QRPC_EINVAL;
    pthread_mutex_lock(&e->lock);
    /* the other CQ's announcement stays: its thread has not seen it yet */
    e->announced[cq] = false;
    if (!e->announced[cq == QRPC__VCQ_SEND ? QRPC__VCQ_RECV : QRPC__VCQ_SEND])
        emu_drain(e->ev_fd);
    e->armed[cq] = true;
    pthread_mutex_unlock(&e->lock);
    return 0;
}

static int emu_post_recv(qrpc__vep *e, uint64_t wr_id, const qrpc__vsge *sge)
{
    emu_rwr *r;
    int rc = QRPC_ENOMEM;

    pthread_mutex_lock(&e->lock);
    if (e->rq_posted - e->rq_polled < e->caps.max_recv) {
        r = &e->rq[e->rq_posted++ % e->caps.max_recv];
        r->sge = *sge;
        memset(&r->wc, 0, sizeof r->wc);
        r->wc.wr_id = wr_id;
        if (e->error)
            emu_rq_complete(e, QRPC__VWC_FLUSH, QRPC__VWC_RECV, 0, 0);
        rc = 0;
    }
    pthread_mutex_unlock(&e->lock);
    return rc;
}

static int emu_post_send(qrpc__vep *e, const qrpc__vsend *wr)
{
    qrpc__vwc_status bad = QRPC__VWC_OK;
    uint64_t local = (uint64_t)(uintptr_t)wr->sge.addr;
    uint32_t len = wr->sge.len;
    emu_pkt *p = NULL;
    emu_swr *w;

    if (wr->op != QRPC__VOP_SEND && wr->op != QRPC__VOP_WRITE_IMM && wr->op != QRPC__VOP_READ)
        return QRPC_EINVAL;
    /*
     * sq_posted and sq_polled change only on the send side (post_send and
     * poll_cq of the send CQ, one thread at a time: verbs.h), which is the
     * caller's, so the room is found without the lock and stays.  The
     * local bytes are read now, as the caller may reuse them once the
     * request completes, and the packet made without the lock too; if the
     * queue pair failed, before or meanwhile, the request flushes below.
     */
    if (e->sq_posted - e->sq_polled >= e->caps.max_send)
        return QRPC_ENOMEM;
    if (len > EMU_MSG_MAX) {
        bad = QRPC__VWC_LOC_LEN;
    } else if (wr->op == QRPC__VOP_READ) {
        if (len > 0 && !emu_mr_io(e->dev, wr->sge.lkey, false, local, len,
                                  QRPC__VACC_LOCAL_WRITE, EMU_CHECK, NULL))
            bad = QRPC__VWC_LOC_PROT;
        else if ((p = emu_pkt_new(EMU_T_READ, 0, len, wr->remote_addr, wr->rkey, 0, 0)) == NULL)
            return QRPC_ENOMEM;
    } else {
        p = wr->op == QRPC__VOP_SEND ? emu_pkt_new(EMU_T_SEND, 0, len, 0, 0, 0, len)
                                     : emu_pkt_new(EMU_T_WRITE_IMM, 0, len, wr->remote_addr,
                                                   wr->rkey, wr->imm, len);
        if (p == NULL)
            return QRPC_ENOMEM;
        if (len > 0 && !emu_mr_io(e->dev, wr->sge.lkey, false, local, len, 0, EMU_FROM,
                                  p->data + EMU_HDR)) {
            free(p);
            p = NULL;
            bad = QRPC__VWC_LOC_PROT;
        }
    }
    pthread_mutex_lock(&e->lock);
    if (!e->error && bad != QRPC__VWC_OK)
        emu_fail(e, EMU_R_OK, false);   /* before this request: the earlier ones flush first */
    else if (e->error)
        bad = QRPC__VWC_FLUSH;
    w = &e->sq[e->sq_posted++ % e->caps.max_send];
    w->op = wr->op;
    w->sge = wr->sge;
    memset(&w->wc, 0, sizeof w->wc);
    w->wc.wr_id = wr->wr_id;
    if (bad != QRPC__VWC_OK) {
        emu_sq_complete(e, bad, 0);
        free(p);
    } else {
        emu_queue(e, p);
    }
    pthread_mutex_unlock(&e->lock);
    return 0;
}

static int emu_poll_cq(qrpc__vep *e, qrpc__vcq cq, qrpc__vwc *wc, int n)
{
    int k = 0;

    if (cq != QRPC__VCQ_SEND && cq != QRPC__VCQ_RECV)
        return QRPC_EINVAL;
    pthread_mutex_lock(&e->lock);
    if (cq == QRPC__VCQ_SEND)
        while (k < n && e->sq_polled < e->sq_done)
            wc[k++] = e->sq[e->sq_polled++ % e->caps.max_send].wc;
    else
        while (k < n && e->rq_polled < e->rq_done)
            wc[k++] = e->rq[e->rq_polled++ % e->caps.max_recv].wc;
    pthread_mutex_unlock(&e->lock);
    return k;
}

static void emu_disconnect(qrpc__vep *e)
{
    pthread_mutex_lock(&e->lock);
    emu_fail(e, EMU_R_OK, true);
    pthread_mutex_unlock(&e->lock);
}

static void emu_ep_close(qrpc__vep *e)
{
    if (e == NULL)
        return;
    emu_disconnect(e);
    if (e->running) {
        pthread_mutex_lock(&e->lock);
        e->stop = true;
        pthread_mutex_unlock(&e->lock);
        emu_kick(e->wake_fd);
        pthread_join(e->thread, NULL);
    }
    emu_ep_free(e);
}

/* ---- listening and accepting ------------------------------------------------------- */

static int emu_listen(qrpc__vdev *d, const char *addr, qrpc__vlis **out, char *bound,
                      size_t bound_len)
{
    struct sockaddr_storage sa;
    socklen_t salen;
    qrpc__vlis *l;
    int fd, one = 1, rc;

    *out = NULL;
    rc = qrpc__addr_parse(addr, true, &sa, &salen);
    if (rc != 0)
        return rc;
    l = calloc(1, sizeof *l);
    if (l == NULL)
        return QRPC_ENOMEM;
    fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = QRPC_EIO;
        goto fail;
    }
    /* a restarted node gets its port back at once */
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&sa, salen) != 0 || listen(fd, 512) != 0) {
        rc = errno == EADDRINUSE || errno == EADDRNOTAVAIL ? QRPC_EADDR : QRPC_EIO;
        goto fail;
    }
    salen = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &salen) != 0) {
        rc = QRPC_EIO;
        goto fail;
    }
    qrpc__addr_format((struct sockaddr *)&sa, bound, bound_len);
    l->dev = d;
    l->fd = fd;
    *out = l;
    return 0;

fail:
    if (fd >= 0)
        close(fd);
    free(l);
    return rc;
}

static int emu_listen_fd(qrpc__vlis *l)
{
    return l->fd;
}

static void emu_listen_close(qrpc__vlis *l)
{
    if (l == NULL)
        return;
    close(l->fd);
    free(l);
}

/*
 * Takes one pending connection and reads its handshake, waiting up to
 * EMU_ACCEPT_WAIT_MS for it (see the limits at the top): a requester
 * sends it as soon as it connects, unless it is slow between
 * connect_start and connect_finish.  A connection without a good one is
 * closed: QRPC_EPROTO (not our handshake) or QRPC_EIO (none in time, or
 * the socket failed).
 */
static int emu_accept(qrpc__vlis *l, const qrpc__vcaps *caps, qrpc__vep **out, void *pdata,
                      size_t *pdata_len, char *peer, size_t peer_len)
{
    struct sockaddr_storage sa;
    socklen_t salen = sizeof sa;
    uint8_t hello[EMU_HELLO];
    char who[QRPC__ADDR_MAX];
    uint32_t peer_max_send;
    int fd, rc;

    *out = NULL;
    do
        fd = accept4(l->fd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED)
            return 0;
        return errno == ENOMEM || errno == ENOBUFS ? QRPC_ENOMEM : QRPC_EIO;
    }
    emu_tune(fd);
    qrpc__addr_format((struct sockaddr *)&sa, who, sizeof who);
    if (emu_xfer(fd, hello, sizeof hello, false,
                 qrpc__mono_ns() + EMU_ACCEPT_WAIT_MS * 1000000ull) != 0) {
        rc = QRPC_EIO;
        goto fail;
    }
    if (!emu_hello_get(hello, &peer_max_send, pdata, pdata_len)) {
        rc = QRPC_EPROTO;
        goto fail;
    }
    rc = emu_ep_new(l->dev, fd, caps, who, out);
    if (rc != 0)
        goto fail;
    (*out)->peer_max_send = peer_max_send;
    if (peer != NULL && peer_len > 0)
        snprintf(peer, peer_len, "%s", who);
    return 0;

fail:
    close(fd);
    return rc;
}

static int emu_accept_finish(qrpc__vep *e, const void *pdata, size_t pdata_len)
{
    uint8_t hello[EMU_HELLO];
    bool error;

    if (pdata_len > QRPC__VPDATA_MAX)
        return QRPC_EINVAL;
    pthread_mutex_lock(&e->lock);
    error = e->error;
    pthread_mutex_unlock(&e->lock);
    if (error)
        return QRPC_EIO;
    emu_hello_put(hello, &e->caps, pdata, pdata_len);
    /* a fresh socket's buffer takes it at once; the wait is for form's sake */
    if (emu_xfer(e->sock, hello, sizeof hello, true,
                 qrpc__mono_ns() + EMU_ACCEPT_WAIT_MS * 1000000ull) != 0)
        return QRPC_EIO;
    return emu_start(e);
}

/* ---- connecting ------------------------------------------------------------------ */

static int emu_connect_start(qrpc__vdev *d, const char *addr, const qrpc__vcaps *caps,
                             uint64_t deadline, qrpc__vep **out, char *why, size_t why_len)
{
    struct sockaddr_storage sa;
    socklen_t salen, elen = sizeof(int);
    int fd, err = 0, rc;

    *out = NULL;
    if (qrpc__addr_parse(addr, false, &sa, &salen) != 0) {
        snprintf(why, why_len, "emu: bad address \"%s\"", addr != NULL ? addr : "");
        return QRPC_EADDR;
    }
    fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, why_len, "emu: socket: %s", strerror(errno));
        return QRPC_EUNAVAILABLE;
    }
    emu_tune(fd);
    if (connect(fd, (struct sockaddr *)&sa, salen) != 0) {
        if (errno != EINPROGRESS) {
            err = errno;
            goto fail;
        }
        rc = emu_wait(fd, POLLOUT, deadline);
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
    rc = emu_ep_new(d, fd, caps, addr, out);
    if (rc != 0) {
        snprintf(why, why_len, "emu: cannot make an endpoint: %s", qrpc_strerror(rc));
        close(fd);
        return rc;
    }
    return 0;

fail:
    snprintf(why, why_len, "emu: cannot connect to %s: %s", addr, strerror(err));
    close(fd);
    return QRPC_EUNAVAILABLE;
}

static int emu_connect_finish(qrpc__vep *e, const void *pdata, size_t pdata_len,
                              void *peer_pdata, size_t *peer_pdata_len, uint64_t deadline,
                              char *why, size_t why_len)
{
    uint8_t hello[EMU_HELLO];
    uint32_t peer_max_send;
    bool error;
    int err, rc;

    if (pdata_len > QRPC__VPDATA_MAX) {
        snprintf(why, why_len, "emu: %zu bytes of private data", pdata_len);
        return QRPC_EINVAL;
    }
    pthread_mutex_lock(&e->lock);
    error = e->error;
    pthread_mutex_unlock(&e->lock);
    if (error) {
        snprintf(why, why_len, "emu: %s: disconnected before the handshake", e->peer);
        return QRPC_EUNAVAILABLE;
    }
    emu_hello_put(hello, &e->caps, pdata, pdata_len);
    err = emu_xfer(e->sock, hello, sizeof hello, true, deadline);
    if (err == 0)
        err = emu_xfer(e->sock, hello, sizeof hello, false, deadline);
    if (err != 0) {
        snprintf(why, why_len, "emu: handshake with %s: %s", e->peer,
                 err == ECONNRESET ? "refused (connection closed)" : strerror(err));
        return QRPC_EUNAVAILABLE;
    }
    if (!emu_hello_get(hello, &peer_max_send, peer_pdata, peer_pdata_len)) {
        snprintf(why, why_len, "emu: %s: not an emu handshake", e->peer);
        return QRPC_EUNAVAILABLE;
    }
    e->peer_max_send = peer_max_send;
    rc = emu_start(e);
    if (rc != 0)
        snprintf(why, why_len, "emu: cannot start the adapter thread");
    return rc;
}

const qrpc__verbs_ops qrpc__verbs_emu = {
    .name = "emu",
    .transport = "rdma-emu",
    .dev_open = emu_dev_open,
    .dev_close = emu_dev_close,
    .reg_mr = emu_reg_mr,
    .dereg_mr = emu_dereg_mr,
    .listen = emu_listen,
    .listen_fd = emu_listen_fd,
    .accept = emu_accept,
    .accept_finish = emu_accept_finish,
    .listen_close = emu_listen_close,
    .connect_start = emu_connect_start,
    .connect_finish = emu_connect_finish,
    .ep_fd = emu_ep_fd,
    .arm = emu_arm,
    .post_recv = emu_post_recv,
    .post_send = emu_post_send,
    .poll_cq = emu_poll_cq,
    .disconnect = emu_disconnect,
    .ep_close = emu_ep_close,
};
