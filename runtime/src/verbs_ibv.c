/*
 * verbs_ibv.c - the real provider of the verbs layer (verbs.h): RDMA
 * hardware through libibverbs, connections through librdmacm.  rdma_cm
 * resolves "host:port" addresses (IPv4 or IPv6 addresses of an RDMA
 * device: InfiniBand's IPoIB, RoCE, iWARP) and connects reliable-connected
 * queue pairs; work requests, completions and memory registrations are
 * direct ibv_* calls.  What the transport does with them is rdma.c's.
 *
 * Shape of an endpoint: its own rdma_cm event channel (the listener's
 * requests are migrated to one each, so connection events never mix),
 * one completion channel with two CQs on it (send, receive), one RC queue
 * pair, and an epoll set over the two channels and an eventfd, which is
 * the one descriptor the transport waits on (ep_fd).  The eventfd (the
 * wake-up) makes ep_fd readable when nothing else would: at once after
 * disconnect, instead of when the connection manager's DISCONNECTED event
 * arrives (which, with a peer that is gone, takes the IB CM's timeouts),
 * and when one side's arm took a completion event meant for the other.
 *
 * Known limits:
 *  - One device.  dev_open takes the first device librdmacm lists and
 *    allocates its protection domain there; a connection whose address
 *    resolves to another device (or a request that arrives on one) is
 *    refused with QRPC_EADDR.  A listener bound to a wildcard address
 *    hears every device, so on a multi-device host bind a specific one.
 *  - Private data: the connection manager pads it (an IB REQ carries 56
 *    bytes, a REP more), so the lengths accept and connect_finish report
 *    are those of the padded buffer, at most QRPC__VPDATA_MAX, zeros past
 *    what the peer sent: the transport must not expect them exact.
 *  - connect_start resolves a host name with getaddrinfo, which does not
 *    heed the deadline; numeric addresses do not wait.
 *  - Untested on this project's build machines, which have no RDMA device:
 *    it is compiled everywhere the headers are, and the test suite's
 *    test_verbs runs it where `ibv_devices` lists a device (an adapter or
 *    rdma_rxe).  verbs_emu.c is what CI runs the transport against.
 *
 * Threads (verbs.h): the send side (post_send, poll_cq of the send CQ)
 * and the receive side (post_recv, poll_cq of the receive CQ, arm) may run
 * at once; the transport also arms the send CQ from its writer, so arm
 * copes with calls from both sides at once.  ibv_* and rdma_cm calls are
 * thread-safe; what is shared here is atomic: the `down` flag (disconnect
 * runs once, whoever gets there first) and the time of poll_cq's next
 * look at connection events.  Completion events are acknowledged in the
 * call that takes them, so no count of unacknowledged ones is kept, and
 * destroying a CQ never waits.
 */
#ifdef QRPC_HAVE_VERBS

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "net.h"
#include "verbs.h"

#define VI_BACKLOG    128       /* connection requests queued at a listener */
#define VI_RESOLVE_MS 2000      /* longest address or route resolution step */
#define VI_POLL_BATCH 32        /* completions taken from a CQ per ibv_poll_cq */
#define VI_RETRY      7         /* transport retries; RNR: 7 is "for ever" */
#define VI_CM_CHECK_NS 1000000u /* poll_cq's look at connection events, at most */

struct qrpc__vdev {
    struct ibv_context **list;  /* rdma_get_devices(): owns the contexts */
    struct ibv_context *ctx;    /* list[0], the one device used */
    struct ibv_pd *pd;
    uint8_t max_resp;           /* RDMA READs we serve at once (max_qp_rd_atom) */
    uint8_t max_init;           /* RDMA READs we issue at once (max_qp_init_rd_atom) */
    int max_qp_wr;
    int max_cqe;
};

struct qrpc__vlis {
    qrpc__vdev *d;
    struct rdma_event_channel *ch;
    struct rdma_cm_id *id;
};

struct qrpc__vep {
    qrpc__vdev *d;
    struct rdma_event_channel *ch;  /* this endpoint's connection events only */
    struct rdma_cm_id *id;          /* NULL until attached */
    struct ibv_comp_channel *cc;
    struct ibv_cq *cq[2];           /* by qrpc__vcq */
    struct ibv_qp *qp;              /* id->qp once created */
    int wakefd;                     /* eventfd: disconnect's wake-up */
    int epfd;                       /* ep_fd: cc, ch and wakefd */
    bool cm_started;                /* rdma_connect or rdma_accept was called */
    uint8_t req_resp;               /* accept: the request's responder_resources */
    uint8_t req_init;               /* and initiator_depth */
    atomic_bool down;               /* disconnected, or the connection failed */
    _Atomic uint64_t cm_next;       /* poll_cq's next look at connection events */
};

/* ---- small helpers -------------------------------------------------------- */

static void vi_why(char *why, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void vi_why(char *why, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (why == NULL || len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
}

/* The qrpc code for a failed call's errno (set, or returned as ibv_post_* do). */
static int vi_errno_rc(int err)
{
    return err == ENOMEM ? QRPC_ENOMEM : QRPC_EIO;
}

static int vi_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static uint8_t vi_u8(int v)
{
    return v < 0 ? 0 : v > UINT8_MAX ? UINT8_MAX : (uint8_t)v;
}

static uint8_t vi_min8(uint8_t a, uint8_t b)
{
    return a < b ? a : b;
}

static const char *vi_devname(const struct ibv_context *ctx)
{
    const char *name = ctx != NULL ? ibv_get_device_name(ctx->device) : NULL;

    return name != NULL ? name : "(none)";
}

/*
 * An event's status as text: a negative errno, or a transport's reason,
 * such as the IB CM's reject reasons (REJECTED over InfiniBand and RoCE).
 */
static void vi_status(enum rdma_cm_event_type type, int status, char *buf, size_t len)
{
    if (status < 0)
        snprintf(buf, len, "%s", strerror(-status));
    else if (type == RDMA_CM_EVENT_REJECTED && status == 8)
        snprintf(buf, len, "reason 8: nothing listens there");
    else if (type == RDMA_CM_EVENT_REJECTED && status == 28)
        snprintf(buf, len, "reason 28: refused by the peer");
    else
        snprintf(buf, len, "status %d", status);
}

/* Milliseconds left until deadline for one resolution step: 1..VI_RESOLVE_MS. */
static int vi_step_ms(uint64_t deadline)
{
    uint64_t now = qrpc__mono_ns(), ms;

    ms = deadline <= now ? 1 : (deadline - now + 999999u) / 1000000u;
    return ms > VI_RESOLVE_MS ? VI_RESOLVE_MS : ms == 0 ? 1 : (int)ms;
}

/*
 * Takes the next event of ch, waiting until deadline at most: 0 and *ev
 * (to be acknowledged), QRPC_ETIMEDOUT, or QRPC_EIO with errno set.
 */
static int vi_cm_next(struct rdma_event_channel *ch, uint64_t deadline,
                      struct rdma_cm_event **ev)
{
    for (;;) {
        struct pollfd pfd = {.fd = ch->fd, .events = POLLIN};
        uint64_t now, ms;

        if (rdma_get_cm_event(ch, ev) == 0)
            return 0;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return QRPC_EIO;
        now = qrpc__mono_ns();
        if (now >= deadline)
            return QRPC_ETIMEDOUT;
        ms = (deadline - now + 999999u) / 1000000u;
        if (poll(&pfd, 1, ms > INT_MAX ? INT_MAX : (int)ms) < 0 && errno != EINTR)
            return QRPC_EIO;
    }
}

/*
 * Waits for event `want` on e's channel (what: the step, for why).  On 0,
 * *ev is it, for the caller to read and acknowledge; any other event, or
 * none by the deadline, fails the step with QRPC_EUNAVAILABLE.
 */
static int vi_cm_expect(qrpc__vep *e, enum rdma_cm_event_type want, const char *what,
                        uint64_t deadline, struct rdma_cm_event **ev, char *why,
                        size_t why_len)
{
    char st[64];
    int rc;

    rc = vi_cm_next(e->ch, deadline, ev);
    if (rc == QRPC_ETIMEDOUT) {
        vi_why(why, why_len, "%s: timed out", what);
        return QRPC_EUNAVAILABLE;
    }
    if (rc != 0) {
        vi_why(why, why_len, "%s: rdma_get_cm_event: %s", what, strerror(errno));
        return QRPC_EUNAVAILABLE;
    }
    if ((*ev)->event == want && (*ev)->status == 0)
        return 0;
    vi_status((*ev)->event, (*ev)->status, st, sizeof st);
    vi_why(why, why_len, "%s: %s (%s)", what, rdma_event_str((*ev)->event), st);
    rdma_ack_cm_event(*ev);
    *ev = NULL;
    return QRPC_EUNAVAILABLE;
}

/* Copies an event's private data (at most QRPC__VPDATA_MAX bytes, padded: see the top). */
static void vi_pdata(const struct rdma_cm_event *ev, void *out, size_t *len)
{
    size_t n = ev->param.conn.private_data != NULL ? ev->param.conn.private_data_len : 0;

    if (n > QRPC__VPDATA_MAX)
        n = QRPC__VPDATA_MAX;
    if (n > 0)
        memcpy(out, ev->param.conn.private_data, n);
    *len = n;
}

/* ---- the device --------------------------------------------------------------- */

static int vi_dev_open(qrpc__vdev **out, char *why, size_t why_len)
{
    struct ibv_device_attr attr;
    qrpc__vdev *d;
    int n = 0, rc, err;

    *out = NULL;
    d = calloc(1, sizeof *d);
    if (d == NULL)
        return QRPC_ENOMEM;
    d->list = rdma_get_devices(&n);
    if (d->list == NULL || n <= 0) {
        /* librdmacm fails outright (ENODEV, EPERM) where rdma_cm is absent */
        err = errno;
        if (d->list == NULL && err == ENOMEM) {
            rc = QRPC_ENOMEM;
        } else {
            vi_why(why, why_len, "no RDMA device: rdma_get_devices() found none (%s)",
                   d->list == NULL ? strerror(err) : "empty list");
            rc = QRPC_ENOTSUP;
        }
        goto fail;
    }
    d->ctx = d->list[0];
    err = ibv_query_device(d->ctx, &attr);
    if (err != 0) {
        vi_why(why, why_len, "ibv_query_device(%s): %s", vi_devname(d->ctx),
               strerror(err));
        rc = QRPC_EIO;
        goto fail;
    }
    d->max_resp = vi_u8(attr.max_qp_rd_atom);
    d->max_init = vi_u8(attr.max_qp_init_rd_atom);
    d->max_qp_wr = attr.max_qp_wr;
    d->max_cqe = attr.max_cqe;
    d->pd = ibv_alloc_pd(d->ctx);
    if (d->pd == NULL) {
        err = errno;
        vi_why(why, why_len, "ibv_alloc_pd(%s): %s", vi_devname(d->ctx), strerror(err));
        rc = vi_errno_rc(err);
        goto fail;
    }
    *out = d;
    return 0;

fail:
    if (d->list != NULL)
        rdma_free_devices(d->list);
    free(d);
    return rc;
}

static void vi_dev_close(qrpc__vdev *d)
{
    if (d == NULL)
        return;
    ibv_dealloc_pd(d->pd);
    rdma_free_devices(d->list);
    free(d);
}

static int vi_reg_mr(qrpc__vdev *d, void *addr, size_t len, unsigned access, qrpc__vmr *out)
{
    struct ibv_mr *mr;
    int flags = 0;

    if (access & QRPC__VACC_LOCAL_WRITE)
        flags |= IBV_ACCESS_LOCAL_WRITE;
    /* verbs refuse remote write access without local write access */
    if (access & QRPC__VACC_REMOTE_WRITE)
        flags |= IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_LOCAL_WRITE;
    if (access & QRPC__VACC_REMOTE_READ)
        flags |= IBV_ACCESS_REMOTE_READ;
    mr = ibv_reg_mr(d->pd, addr, len, flags);
    if (mr == NULL)
        return vi_errno_rc(errno);
    out->addr = addr;
    out->len = len;
    out->lkey = mr->lkey;
    out->rkey = mr->rkey;
    out->prov = mr;
    return 0;
}

static void vi_dereg_mr(qrpc__vdev *d, qrpc__vmr *mr)
{
    (void)d;
    if (mr->prov != NULL)
        ibv_dereg_mr(mr->prov);
    mr->prov = NULL;
}

/* ---- endpoints -------------------------------------------------------------- */

static int vi_epoll_add(int epfd, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};

    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void vi_ep_close(qrpc__vep *e);

/*
 * A new endpoint without a connection manager id yet: its channels, CQs
 * and descriptors.  QRPC_EINVAL (caps beyond the device), QRPC_ENOMEM,
 * QRPC_EIO.
 */
static int vi_ep_new(qrpc__vdev *d, const qrpc__vcaps *caps, qrpc__vep **out, char *why,
                     size_t why_len)
{
    uint64_t cqe = (uint64_t)caps->max_send + caps->max_recv;
    const char *step;
    qrpc__vep *e;
    int err;

    *out = NULL;
    if (caps->max_send > (uint64_t)d->max_qp_wr || caps->max_recv > (uint64_t)d->max_qp_wr ||
        cqe > (uint64_t)d->max_cqe) {
        vi_why(why, why_len, "queue sizes %u+%u beyond %s's limits (%d per queue, %d per CQ)",
               caps->max_send, caps->max_recv, vi_devname(d->ctx), d->max_qp_wr, d->max_cqe);
        return QRPC_EINVAL;
    }
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return QRPC_ENOMEM;
    e->d = d;
    e->wakefd = e->epfd = -1;
    atomic_init(&e->down, false);
    atomic_init(&e->cm_next, 0);

    step = "rdma_create_event_channel";
    e->ch = rdma_create_event_channel();
    if (e->ch == NULL || vi_nonblock(e->ch->fd) != 0)
        goto fail;
    step = "ibv_create_comp_channel";
    e->cc = ibv_create_comp_channel(d->ctx);
    if (e->cc == NULL || vi_nonblock(e->cc->fd) != 0)
        goto fail;
    step = "ibv_create_cq";
    e->cq[QRPC__VCQ_SEND] = ibv_create_cq(d->ctx, (int)cqe, e, e->cc, 0);
    if (e->cq[QRPC__VCQ_SEND] == NULL)
        goto fail;
    e->cq[QRPC__VCQ_RECV] = ibv_create_cq(d->ctx, (int)cqe, e, e->cc, 0);
    if (e->cq[QRPC__VCQ_RECV] == NULL)
        goto fail;
    step = "eventfd";
    e->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (e->wakefd < 0)
        goto fail;
    /* level-triggered members: the set stays readable until arm drains them */
    step = "epoll";
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (e->epfd < 0 || vi_epoll_add(e->epfd, e->cc->fd) != 0 ||
        vi_epoll_add(e->epfd, e->ch->fd) != 0 || vi_epoll_add(e->epfd, e->wakefd) != 0)
        goto fail;
    *out = e;
    return 0;

fail:
    err = errno;
    vi_why(why, why_len, "%s: %s", step, strerror(err));
    vi_ep_close(e);
    return vi_errno_rc(err);
}

/* Creates the queue pair on e->id, which is on our device: QRPC_ENOMEM, QRPC_EIO. */
static int vi_ep_qp(qrpc__vep *e, const qrpc__vcaps *caps, char *why, size_t why_len)
{
    struct ibv_qp_init_attr attr;
    int err;

    memset(&attr, 0, sizeof attr);
    attr.qp_context = e;
    attr.send_cq = e->cq[QRPC__VCQ_SEND];
    attr.recv_cq = e->cq[QRPC__VCQ_RECV];
    attr.cap.max_send_wr = caps->max_send;
    attr.cap.max_recv_wr = caps->max_recv;
    attr.cap.max_send_sge = 1;
    attr.cap.max_recv_sge = 1;
    attr.qp_type = IBV_QPT_RC;
    attr.sq_sig_all = 1;
    if (rdma_create_qp(e->id, e->d->pd, &attr) != 0) {
        err = errno;
        vi_why(why, why_len, "rdma_create_qp: %s", strerror(err));
        return vi_errno_rc(err);
    }
    e->qp = e->id->qp;
    return 0;
}

/*
 * Takes the endpoint down, once: tells the peer (if a connection was
 * started), moves the queue pair to the error state so that every posted
 * request flushes (rdma_disconnect does that on InfiniBand and RoCE but
 * only drains the send queue on iWARP, hence the explicit move), and
 * makes ep_fd readable.
 */
static void vi_down(qrpc__vep *e)
{
    struct ibv_qp_attr attr;

    if (atomic_exchange(&e->down, true))
        return;
    if (e->cm_started && e->id != NULL)
        (void)rdma_disconnect(e->id);
    if (e->qp != NULL) {
        memset(&attr, 0, sizeof attr);
        attr.qp_state = IBV_QPS_ERR;
        (void)ibv_modify_qp(e->qp, &attr, IBV_QP_STATE);
    }
    if (e->wakefd >= 0)
        (void)eventfd_write(e->wakefd, 1);
}

static void vi_ep_close(qrpc__vep *e)
{
    if (e == NULL)
        return;
    if (e->qp != NULL) {
        vi_down(e);
        rdma_destroy_qp(e->id);
    }
    /* every completion event taken was acknowledged by arm: no wait here */
    for (int i = 0; i < 2; i++)
        if (e->cq[i] != NULL)
            ibv_destroy_cq(e->cq[i]);
    if (e->cc != NULL)
        ibv_destroy_comp_channel(e->cc);
    /* likewise every connection event, so this does not block */
    if (e->id != NULL)
        rdma_destroy_id(e->id);
    if (e->ch != NULL)
        rdma_destroy_event_channel(e->ch);
    if (e->epfd >= 0)
        close(e->epfd);
    if (e->wakefd >= 0)
        close(e->wakefd);
    free(e);
}

static int vi_ep_fd(qrpc__vep *e)
{
    return e->epfd;
}

/* Takes the connection events waiting, without blocking: a failure takes e down. */
static void vi_cm_drain(qrpc__vep *e)
{
    struct rdma_cm_event *ev;

    while (rdma_get_cm_event(e->ch, &ev) == 0) {
        switch (ev->event) {
        case RDMA_CM_EVENT_ESTABLISHED:
            /* the passive side's queue pair is ready since rdma_accept */
            break;
        case RDMA_CM_EVENT_DISCONNECTED:
        case RDMA_CM_EVENT_CONNECT_ERROR:
        case RDMA_CM_EVENT_UNREACHABLE:
        case RDMA_CM_EVENT_REJECTED:
        case RDMA_CM_EVENT_DEVICE_REMOVAL:
            vi_down(e);
            break;
        default:
            /* ADDR_CHANGE, TIMEWAIT_EXIT: the queue pair is unaffected */
            break;
        }
        rdma_ack_cm_event(ev);
    }
}

/*
 * Drains what can make ep_fd readable, without blocking, and asks for
 * cq's next completion.  The receive side's arm also takes the connection
 * events and the wake-up.  Both CQs share one completion channel, so
 * either arm may take the other CQ's events (acknowledged here, one call
 * per CQ): those are passed on through the wake-up, so that the side
 * waiting for them, perhaps another thread, still finds ep_fd readable.
 */
static int vi_arm(qrpc__vep *e, qrpc__vcq cq)
{
    qrpc__vcq other = cq == QRPC__VCQ_SEND ? QRPC__VCQ_RECV : QRPC__VCQ_SEND;
    unsigned int nev[2] = {0, 0};
    struct ibv_cq *got;
    void *ctx;
    eventfd_t v;
    int rc = 0;

    if (cq == QRPC__VCQ_RECV) {
        /* the wake-up first: one passed on from now on stays set */
        (void)eventfd_read(e->wakefd, &v);
        vi_cm_drain(e);
    }
    while (ibv_get_cq_event(e->cc, &got, &ctx) == 0)
        nev[got == e->cq[QRPC__VCQ_RECV] ? QRPC__VCQ_RECV : QRPC__VCQ_SEND]++;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
        rc = QRPC_EIO;
    for (int i = 0; i < 2; i++)
        if (nev[i] > 0)
            ibv_ack_cq_events(e->cq[i], nev[i]);
    if (nev[other] > 0)
        (void)eventfd_write(e->wakefd, 1);
    if (rc == 0 && ibv_req_notify_cq(e->cq[cq], 0) != 0)
        rc = QRPC_EIO;
    return rc;
}

static int vi_post_recv(qrpc__vep *e, uint64_t wr_id, const qrpc__vsge *sge)
{
    struct ibv_recv_wr wr, *bad;
    struct ibv_sge s;
    int err;

    memset(&wr, 0, sizeof wr);
    s.addr = (uintptr_t)sge->addr;
    s.length = sge->len;
    s.lkey = sge->lkey;
    wr.wr_id = wr_id;
    wr.sg_list = &s;
    wr.num_sge = sge->len > 0 ? 1 : 0;
    err = ibv_post_recv(e->qp, &wr, &bad);
    return err == 0 ? 0 : vi_errno_rc(err);
}

static int vi_post_send(qrpc__vep *e, const qrpc__vsend *w)
{
    struct ibv_send_wr wr, *bad;
    struct ibv_sge s;
    int err;

    memset(&wr, 0, sizeof wr);
    s.addr = (uintptr_t)w->sge.addr;
    s.length = w->sge.len;
    s.lkey = w->sge.lkey;
    wr.wr_id = w->wr_id;
    wr.sg_list = &s;
    wr.num_sge = w->sge.len > 0 ? 1 : 0;
    wr.send_flags = IBV_SEND_SIGNALED;
    switch (w->op) {
    case QRPC__VOP_SEND:
        wr.opcode = IBV_WR_SEND;
        break;
    case QRPC__VOP_WRITE_IMM:
        wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
        wr.imm_data = htonl(w->imm);
        wr.wr.rdma.remote_addr = w->remote_addr;
        wr.wr.rdma.rkey = w->rkey;
        break;
    case QRPC__VOP_READ:
        wr.opcode = IBV_WR_RDMA_READ;
        wr.wr.rdma.remote_addr = w->remote_addr;
        wr.wr.rdma.rkey = w->rkey;
        break;
    default:
        return QRPC_EINVAL;
    }
    err = ibv_post_send(e->qp, &wr, &bad);
    return err == 0 ? 0 : vi_errno_rc(err);
}

static qrpc__vwc_status vi_wc_status(enum ibv_wc_status s)
{
    switch (s) {
    case IBV_WC_SUCCESS:           return QRPC__VWC_OK;
    case IBV_WC_WR_FLUSH_ERR:      return QRPC__VWC_FLUSH;
    case IBV_WC_LOC_LEN_ERR:       return QRPC__VWC_LOC_LEN;
    case IBV_WC_LOC_PROT_ERR:      return QRPC__VWC_LOC_PROT;
    case IBV_WC_REM_ACCESS_ERR:    return QRPC__VWC_REM_ACCESS;
    case IBV_WC_REM_INV_REQ_ERR:   return QRPC__VWC_REM_INV_REQ;
    case IBV_WC_RNR_RETRY_EXC_ERR: return QRPC__VWC_RNR;
    case IBV_WC_RETRY_EXC_ERR:     return QRPC__VWC_RETRY;
    default:                       return QRPC__VWC_FATAL;
    }
}

static void vi_wc(const struct ibv_wc *w, qrpc__vwc *out)
{
    out->wr_id = w->wr_id;
    out->status = vi_wc_status(w->status);
    out->opcode = QRPC__VWC_SEND;
    out->byte_len = w->byte_len;
    out->imm = (w->wc_flags & IBV_WC_WITH_IMM) ? ntohl(w->imm_data) : 0;
    if (out->status != QRPC__VWC_OK)
        return;     /* the opcode of a failed completion is undefined */
    switch (w->opcode) {
    case IBV_WC_SEND:               out->opcode = QRPC__VWC_SEND; break;
    case IBV_WC_RDMA_READ:          out->opcode = QRPC__VWC_READ; break;
    case IBV_WC_RDMA_WRITE:         out->opcode = QRPC__VWC_WRITE; break;
    case IBV_WC_RECV:               out->opcode = QRPC__VWC_RECV; break;
    case IBV_WC_RECV_RDMA_WITH_IMM: out->opcode = QRPC__VWC_RECV_IMM; break;
    default:
        /* nothing we post completes so: not something the transport can use */
        out->status = QRPC__VWC_FATAL;
        break;
    }
}

/*
 * Looks at the connection events now and then (VI_CM_CHECK_NS) while a
 * CQ is empty.  In polling mode the transport never arms, and a peer that
 * disconnected would otherwise leave our queue pair up, its receives
 * posted for ever: this takes it down, and the receives flush.
 */
static void vi_cm_check(qrpc__vep *e)
{
    uint64_t now = qrpc__mono_ns(), next = atomic_load(&e->cm_next);

    if (now < next || atomic_load(&e->down) ||
        !atomic_compare_exchange_strong(&e->cm_next, &next, now + VI_CM_CHECK_NS))
        return;
    vi_cm_drain(e);
}

static int vi_poll_cq(qrpc__vep *e, qrpc__vcq cq, qrpc__vwc *wc, int n)
{
    struct ibv_wc w[VI_POLL_BATCH];
    int got = 0;

    while (got < n) {
        int want = n - got < VI_POLL_BATCH ? n - got : VI_POLL_BATCH;
        int r = ibv_poll_cq(e->cq[cq], want, w);

        if (r < 0)
            /* keep what was taken; the error comes back on the next poll */
            return got > 0 ? got : QRPC_EIO;
        for (int i = 0; i < r; i++)
            vi_wc(&w[i], &wc[got + i]);
        got += r;
        if (r < want)
            break;
    }
    if (got == 0)
        vi_cm_check(e);
    return got;
}

static void vi_disconnect(qrpc__vep *e)
{
    vi_down(e);
}

/* ---- listening and accepting ------------------------------------------------ */

static int vi_listen(qrpc__vdev *d, const char *addr, qrpc__vlis **out, char *bound,
                     size_t bound_len)
{
    struct sockaddr_storage sa;
    socklen_t salen;
    qrpc__vlis *l;
    int rc, err;

    *out = NULL;
    rc = qrpc__addr_parse(addr, true, &sa, &salen);
    if (rc != 0)
        return rc;
    l = calloc(1, sizeof *l);
    if (l == NULL)
        return QRPC_ENOMEM;
    l->d = d;
    l->ch = rdma_create_event_channel();
    if (l->ch == NULL || vi_nonblock(l->ch->fd) != 0 ||
        rdma_create_id(l->ch, &l->id, l, RDMA_PS_TCP) != 0) {
        rc = vi_errno_rc(errno);
        goto fail;
    }
    if (rdma_bind_addr(l->id, (struct sockaddr *)&sa) != 0) {
        /* ENODEV, EADDRNOTAVAIL: not an address of an RDMA device */
        err = errno;
        rc = err == ENOMEM ? QRPC_ENOMEM : QRPC_EADDR;
        goto fail;
    }
    /* a wildcard address has no device (verbs NULL); a specific one has */
    if (l->id->verbs != NULL && l->id->verbs != d->ctx) {
        rc = QRPC_EADDR;
        goto fail;
    }
    if (rdma_listen(l->id, VI_BACKLOG) != 0) {
        err = errno;
        rc = err == EADDRINUSE ? QRPC_EADDR : vi_errno_rc(err);
        goto fail;
    }
    qrpc__addr_format(rdma_get_local_addr(l->id), bound, bound_len);
    *out = l;
    return 0;

fail:
    if (l->id != NULL)
        rdma_destroy_id(l->id);
    if (l->ch != NULL)
        rdma_destroy_event_channel(l->ch);
    free(l);
    return rc;
}

static int vi_listen_fd(qrpc__vlis *l)
{
    return l->ch->fd;
}

static int vi_accept(qrpc__vlis *l, const qrpc__vcaps *caps, qrpc__vep **out, void *pdata,
                     size_t *pdata_len, char *peer, size_t peer_len)
{
    struct rdma_cm_event *ev;
    struct rdma_cm_id *id;
    qrpc__vep *e = NULL;
    uint8_t req_resp, req_init;
    int rc;

    *out = NULL;
    *pdata_len = 0;
    for (;;) {
        if (rdma_get_cm_event(l->ch, &ev) != 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : QRPC_EIO;
        }
        if (ev->event == RDMA_CM_EVENT_CONNECT_REQUEST)
            break;
        /* nothing else concerns the listener (its requests' events go to
         * their own channels once migrated) */
        rdma_ack_cm_event(ev);
    }
    id = ev->id;
    vi_pdata(ev, pdata, pdata_len);
    req_resp = ev->param.conn.responder_resources;
    req_init = ev->param.conn.initiator_depth;
    /*
     * Acknowledged before the id moves to its own channel: rdma_migrate_id
     * blocks while events on the current channel are unacknowledged.
     */
    rdma_ack_cm_event(ev);
    qrpc__addr_format(rdma_get_peer_addr(id), peer, peer_len);

    if (id->verbs != l->d->ctx) {
        rc = QRPC_EADDR;        /* another device: see the top of the file */
        goto refuse;
    }
    rc = vi_ep_new(l->d, caps, &e, NULL, 0);
    if (rc != 0)
        goto refuse;
    if (rdma_migrate_id(id, e->ch) != 0) {
        rc = vi_errno_rc(errno);
        goto refuse;
    }
    e->id = id;
    rc = vi_ep_qp(e, caps, NULL, 0);
    if (rc != 0)
        goto refuse;
    e->req_resp = req_resp;
    e->req_init = req_init;
    *out = e;
    return 0;

refuse:
    (void)rdma_reject(id, NULL, 0);
    if (e == NULL || e->id == NULL)
        rdma_destroy_id(id);
    vi_ep_close(e);
    return rc;
}

static int vi_accept_finish(qrpc__vep *e, const void *pdata, size_t pdata_len)
{
    struct rdma_conn_param p;

    if (pdata_len > QRPC__VPDATA_MAX)
        return QRPC_EINVAL;
    memset(&p, 0, sizeof p);
    p.private_data = pdata;
    p.private_data_len = (uint8_t)pdata_len;
    /* the request's values are what the requester can take; RDMA READ
     * needs both directions agreed */
    p.responder_resources = vi_min8(e->d->max_resp, e->req_resp);
    p.initiator_depth = vi_min8(e->d->max_init, e->req_init);
    p.retry_count = VI_RETRY;
    p.rnr_retry_count = VI_RETRY;
    if (rdma_accept(e->id, &p) != 0)
        return QRPC_EIO;
    e->cm_started = true;
    return 0;
}

static void vi_listen_close(qrpc__vlis *l)
{
    if (l == NULL)
        return;
    rdma_destroy_id(l->id);
    rdma_destroy_event_channel(l->ch);
    free(l);
}

/* ---- connecting ------------------------------------------------------------ */

static int vi_connect_start(qrpc__vdev *d, const char *addr, const qrpc__vcaps *caps,
                            uint64_t deadline, qrpc__vep **out, char *why, size_t why_len)
{
    struct sockaddr_storage sa;
    struct rdma_cm_event *ev;
    socklen_t salen;
    qrpc__vep *e = NULL;
    int rc;

    *out = NULL;
    rc = qrpc__addr_parse(addr, false, &sa, &salen);
    if (rc != 0) {
        vi_why(why, why_len, "bad address \"%s\" (want host:port or [v6]:port)",
               addr != NULL ? addr : "");
        return rc;
    }
    rc = vi_ep_new(d, caps, &e, why, why_len);
    if (rc != 0)
        return rc;
    if (rdma_create_id(e->ch, &e->id, e, RDMA_PS_TCP) != 0) {
        rc = vi_errno_rc(errno);
        vi_why(why, why_len, "rdma_create_id: %s", strerror(errno));
        goto fail;
    }
    if (qrpc__mono_ns() >= deadline) {
        rc = QRPC_EUNAVAILABLE;
        vi_why(why, why_len, "%s: timed out before resolving", addr);
        goto fail;
    }
    if (rdma_resolve_addr(e->id, NULL, (struct sockaddr *)&sa, vi_step_ms(deadline)) != 0) {
        rc = QRPC_EUNAVAILABLE;
        vi_why(why, why_len, "%s: rdma_resolve_addr: %s", addr, strerror(errno));
        goto fail;
    }
    rc = vi_cm_expect(e, RDMA_CM_EVENT_ADDR_RESOLVED, "address resolution", deadline, &ev,
                      why, why_len);
    if (rc != 0)
        goto fail;
    rdma_ack_cm_event(ev);
    if (e->id->verbs != d->ctx) {
        rc = QRPC_EADDR;
        vi_why(why, why_len, "%s is reached through RDMA device %s, but only %s is open "
               "(one device per process)", addr, vi_devname(e->id->verbs),
               vi_devname(d->ctx));
        goto fail;
    }
    if (rdma_resolve_route(e->id, vi_step_ms(deadline)) != 0) {
        rc = QRPC_EUNAVAILABLE;
        vi_why(why, why_len, "%s: rdma_resolve_route: %s", addr, strerror(errno));
        goto fail;
    }
    rc = vi_cm_expect(e, RDMA_CM_EVENT_ROUTE_RESOLVED, "route resolution", deadline, &ev,
                      why, why_len);
    if (rc != 0)
        goto fail;
    rdma_ack_cm_event(ev);
    rc = vi_ep_qp(e, caps, why, why_len);
    if (rc != 0)
        goto fail;
    *out = e;
    return 0;

fail:
    vi_ep_close(e);
    return rc;
}

static int vi_connect_finish(qrpc__vep *e, const void *pdata, size_t pdata_len,
                             void *peer_pdata, size_t *peer_pdata_len, uint64_t deadline,
                             char *why, size_t why_len)
{
    struct rdma_conn_param p;
    struct rdma_cm_event *ev;
    int rc;

    *peer_pdata_len = 0;
    if (pdata_len > QRPC__VPDATA_MAX) {
        vi_why(why, why_len, "private data of %zu bytes (at most %d)", pdata_len,
               QRPC__VPDATA_MAX);
        return QRPC_EINVAL;
    }
    memset(&p, 0, sizeof p);
    p.private_data = pdata;
    p.private_data_len = (uint8_t)pdata_len;
    /* the most our device allows; the peer's accept lowers them to its own */
    p.responder_resources = e->d->max_resp;
    p.initiator_depth = e->d->max_init;
    p.retry_count = VI_RETRY;
    p.rnr_retry_count = VI_RETRY;
    if (rdma_connect(e->id, &p) != 0) {
        vi_why(why, why_len, "rdma_connect: %s", strerror(errno));
        return QRPC_EUNAVAILABLE;
    }
    e->cm_started = true;
    rc = vi_cm_expect(e, RDMA_CM_EVENT_ESTABLISHED, "connect", deadline, &ev, why, why_len);
    if (rc != 0)
        return rc;
    vi_pdata(ev, peer_pdata, peer_pdata_len);
    rdma_ack_cm_event(ev);
    return 0;
}

const qrpc__verbs_ops qrpc__verbs_ibv = {
    .name = "verbs",
    .transport = "rdma",
    .dev_open = vi_dev_open,
    .dev_close = vi_dev_close,
    .reg_mr = vi_reg_mr,
    .dereg_mr = vi_dereg_mr,
    .listen = vi_listen,
    .listen_fd = vi_listen_fd,
    .accept = vi_accept,
    .accept_finish = vi_accept_finish,
    .listen_close = vi_listen_close,
    .connect_start = vi_connect_start,
    .connect_finish = vi_connect_finish,
    .ep_fd = vi_ep_fd,
    .arm = vi_arm,
    .post_recv = vi_post_recv,
    .post_send = vi_post_send,
    .poll_cq = vi_poll_cq,
    .disconnect = vi_disconnect,
    .ep_close = vi_ep_close,
};

#else /* QRPC_HAVE_VERBS */

/* ISO C wants a declaration in every translation unit. */
typedef int qrpc__verbs_ibv_absent;

#endif /* QRPC_HAVE_VERBS */
