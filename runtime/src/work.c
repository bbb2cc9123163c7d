/*
 * work.c - running one received request: the loop thread that has it
 * (io.c) hands it here; it goes through the reply cache (dedup.c, for
 * at-most-once methods) and qrpc__dispatch() (the same path a local call
 * takes), and its reply is queued on the connection it came from.
 *
 * While more requests wait to run, a reply is queued for a loop thread
 * to write (qrpc__conn_reply's later) rather than written at once, so
 * that one sendmsg carries many when a peer pipelines its calls; the
 * loop is woken for it at once, so a handler that blocks next holds
 * nothing back.
 */
#include <stdlib.h>
#include <string.h>

#include "dlog.h"
#include "net.h"

static void work_free_job(qrpc__job *job)
{
    qrpc__conn_unref(job->conn);
    free(job->msg.body);
    free(job);
}

/* What answering a request later (from a channel, or the reply log) needs. */
typedef struct work_resp {
    qrpc__conn *conn;           /* the job's reference, moved here */
    uint32_t stream;
    uint32_t flags;
    qrpc__dedup *dedup;         /* non-NULL: the reply cache's RUN ticket */
    qrpc__dedup_ticket ticket;
    qrpc__dlog *dlog;           /* non-NULL (only with dedup): log the outcome first */
    uint64_t client, seq;
} work_resp;

/*
 * A request's outcome: the reply cache learns it, the request stops
 * counting against max_inflight before its reply goes out (a caller that
 * sends its next call on seeing the reply must find the room free), and
 * the reply is queued (results taken).
 */
static void work_finish(const work_resp *wr, int status, qrpc_buf *results, bool later)
{
    if (wr->dedup != NULL)
        qrpc__dedup_done(wr->dedup, wr->ticket, status, results->data, results->len);
    qrpc__conn_job_done(wr->conn);
    if (wr->flags & QRPC_METHOD_ONEWAY)
        qrpc_buf_free(results);
    else
        qrpc__conn_reply(wr->conn, wr->stream, status, results, later);
}

/* The reply log made the outcome durable: answer now (the log's thread). */
static void work_logged(void *ctx, int status, qrpc_buf *results)
{
    work_resp *wr = ctx;

    work_finish(wr, status, results, false);
    qrpc__conn_unref(wr->conn);
}

/*
 * A request's outcome, now or later (a channel).  With a reply log the
 * outcome of an at-most-once call is written first, and the log's thread
 * answers once it is durable; if it cannot even be queued, the reply goes
 * out without its record (a retransmission after a restart is then
 * refused, not run again).
 */
static void work_answer(const work_resp *wr, int status, qrpc_buf *results, bool later)
{
    if (wr->dlog != NULL) {
        qrpc__conn_ref(wr->conn);       /* the log's copy of wr holds one */
        if (qrpc__dlog_append(wr->dlog, wr->client, wr->seq, status, results, work_logged,
                              wr, sizeof *wr) == 0)
            return;
        qrpc__conn_unref(wr->conn);
    }
    work_finish(wr, status, results, later);
}

static void work_respond(void *ctx, int status, qrpc_buf *results)
{
    work_resp *wr = ctx;

    work_answer(wr, status, results, false);
    qrpc__conn_unref(wr->conn);
}

/*
 * The reply cache's answer to a duplicate that waited for the call it
 * duplicates (the job, kept until now): the one result, on the
 * duplicate's own connection and stream.
 */
void qrpc__work_dedup_answer(void *arg, void *waiter, int status, const uint8_t *reply,
                             size_t len)
{
    qrpc__job *job = waiter;
    qrpc_buf copy = { NULL, 0, 0 };

    (void)arg;
    if (status == 0 && len != 0 && qrpc_put_raw(&copy, reply, len) != 0)
        status = QRPC_EBUSY;    /* out of memory: the caller may try again */
    /* a waiting copy counted against max_inflight until now */
    qrpc__conn_job_done(job->conn);
    qrpc__conn_reply(job->conn, job->msg.stream, status, &copy, false);
    work_free_job(job);
}

/*
 * At-most-once: asks the reply cache whether the request runs.  False
 * when it has been answered (or will be, for a duplicate that waits) and
 * must not run; the job is then gone.  A retransmission addressed to
 * another incarnation (this server was restarted, or is another node)
 * never runs: its first copy may have run where nothing is remembered.
 */
static bool work_dedup(qrpc_node *n, qrpc__job *job, qrpc__dedup_ticket *ticket)
{
    const qrpc__reqhdr *h = &job->msg.req;
    work_resp wr = { .conn = job->conn, .stream = job->msg.stream, .flags = h->flags };
    qrpc_buf cached = { NULL, 0, 0 };
    uint64_t now = job->recv_ns;
    bool retry = (h->flags & QRPC__REQ_RETRY) != 0;
    qrpc__dedup_verdict v;
    int status = 0;

    if (retry && h->incarnation != n->incarnation)
        /* answered only by what the reply log of an earlier life put back */
        v = qrpc__dedup_lookup(n->dedup, h->client_id, h->seq, now, &status, &cached);
    else
        v = qrpc__dedup_begin(n->dedup, h->client_id, h->seq, h->acked, retry, now, job,
                              ticket, &status, &cached);
    switch (v) {
    case QRPC__DEDUP_RUN:
        /* the client's state is forgotten a lease after it falls silent */
        qrpc__io_wake(n, now + (uint64_t)n->cfg.lease_ms * 1000000u);
        return true;
    case QRPC__DEDUP_WAIT:
        /*
         * qrpc__work_dedup_answer() has the job now, and may already have
         * answered and freed it on another thread: hands off.
         */
        return false;
    case QRPC__DEDUP_REPLY:
        break;
    case QRPC__DEDUP_STALE:
        status = QRPC_ESTALE;
        break;
    case QRPC__DEDUP_UNKNOWN:
        status = QRPC_EUNKNOWN;
        break;
    default:
        status = QRPC_EBUSY;
        break;
    }
    work_answer(&wr, status, &cached, qrpc__io_more_queued(n));
    work_free_job(job);
    return false;
}

void qrpc__work_run(qrpc_node *n, qrpc__job *job)
{
    const qrpc__reqhdr *h = &job->msg.req;
    qrpc_buf results = { NULL, 0, 0 };
    work_resp wr = { .conn = job->conn, .stream = job->msg.stream, .flags = h->flags,
                     .client = h->client_id, .seq = h->seq };
    qrpc__responder resp = { work_respond, &wr, sizeof wr };
    qrpc__svc_key key;
    qrpc__request req;
    int status;

    if (qrpc__conn_dead(job->conn)) {
        qrpc__conn_job_done(job->conn);
        work_free_job(job);     /* nobody to answer: the caller is told by its side */
        return;
    }
    /* idempotent calls may run twice, oneway ones are never repeated */
    if (n->dedup != NULL && !(h->flags & (QRPC_METHOD_IDEMPOTENT | QRPC_METHOD_ONEWAY))) {
        if (!work_dedup(n, job, &wr.ticket))
            return;
        wr.dedup = n->dedup;
        wr.dlog = n->dlog;
    }
    qrpc__svc_key_init(&key, h->name, h->name_len, h->version);
    req.svc = &key;
    req.method = h->method;
    req.client_id = h->client_id;
    req.deadline_ns = job->deadline_ns;
    req.args = job->msg.body;
    req.args_len = job->msg.body_len;
    req.args_owned = &job->msg.body;
    req.resp = &resp;
    status = qrpc__dispatch(n, &req, &results);
    if (status == QRPC__DEFERRED) {
        /* the channel's request holds the connection now (work_respond) */
        free(job->msg.body);    /* NULL unless the channel copied it */
        free(job);
        return;
    }
    /* requests waiting to run: this reply can go out with theirs */
    work_answer(&wr, status, &results, qrpc__io_more_queued(n));
    work_free_job(job);
}

void qrpc__work_refuse(qrpc__job *job)
{
    work_resp wr = { .conn = job->conn, .stream = job->msg.stream,
                     .flags = job->msg.req.flags };
    qrpc_buf none = { NULL, 0, 0 };

    work_answer(&wr, QRPC_ECLOSED, &none, false);
    work_free_job(job);
}
