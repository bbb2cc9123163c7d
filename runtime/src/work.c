/*
 * work.c - running received requests: the loop thread that read them
 * (io.c) hands the requests of one read here, and each goes through
 * qrpc__dispatch() (the same path a local call takes) and has its reply
 * queued on the connection it came from.
 *
 * Replies are written together: every reply but the last of a read is
 * left for the next write on the connection (qrpc__conn_reply's later),
 * so one sendmsg carries many when a peer pipelines its calls.  That
 * holds a reply back while the handlers after it run, so it stops once
 * the read's handlers have taken WORK_GATHER_NS: a handler that runs
 * long still holds back the replies before it in its read (known limit;
 * a handler expected to block should answer through a channel).
 */
#include <stdlib.h>
#include <string.h>

#include "net.h"

#define WORK_GATHER_NS 50000u   /* replies gathered this long, about */

static void work_free_job(qrpc__job *job)
{
    qrpc__conn_unref(job->conn);
    free(job->msg.body);
    free(job);
}

/* What answering a request later (from a channel) needs. */
typedef struct work_resp {
    qrpc__conn *conn;           /* the job's reference, moved here */
    uint32_t stream;
    uint32_t flags;
} work_resp;

static void work_respond(void *ctx, int status, qrpc_buf *results)
{
    work_resp *wr = ctx;

    qrpc__conn_job_done(wr->conn);
    if (wr->flags & QRPC_METHOD_ONEWAY)
        qrpc_buf_free(results);
    else
        qrpc__conn_reply(wr->conn, wr->stream, status, results, false);
    qrpc__conn_unref(wr->conn);
}

static void work_run(qrpc_node *n, qrpc__job *job, bool more)
{
    const qrpc__reqhdr *h = &job->msg.req;
    qrpc_buf results = { NULL, 0, 0 };
    work_resp wr = { job->conn, job->msg.stream, h->flags };
    qrpc__responder resp = { work_respond, &wr, sizeof wr };
    qrpc__svc_key key;
    qrpc__request req;
    int status;

    if (qrpc__conn_dead(job->conn)) {
        qrpc__conn_job_done(job->conn);
        work_free_job(job);     /* nobody to answer: the caller is told by its side */
        return;
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
    qrpc__conn_job_done(job->conn);
    if (h->flags & QRPC_METHOD_ONEWAY)
        qrpc_buf_free(&results);
    else
        /* more requests to answer: this reply can go out with theirs */
        qrpc__conn_reply(job->conn, job->msg.stream, status, &results, more);
    work_free_job(job);
}

void qrpc__work_run(qrpc_node *n, qrpc__job *jobs)
{
    qrpc__conn *held = NULL;
    qrpc__job *job;
    uint64_t start = 0;
    bool gather = true;
    unsigned k = 0;

    if (jobs != NULL && jobs->next != NULL)
        start = qrpc__now_ns(n);
    for (job = jobs; job != NULL; job = jobs) {
        bool later;

        jobs = job->next;
        /* the clock costs as much as a small handler: look every few jobs */
        if (gather && ++k % 8 == 0)
            gather = qrpc__now_ns(n) - start < WORK_GATHER_NS;
        later = gather && jobs != NULL && jobs->conn == job->conn;
        if (later && held == NULL) {
            /* the job's reference goes with it: keep one for the flush */
            held = job->conn;
            qrpc__conn_ref(held);
        }
        work_run(n, job, later);
        if (!later && held != NULL) {
            /* the last reply wrote them all, unless it was none (oneway, channel) */
            qrpc__conn_flush(held);
            qrpc__conn_unref(held);
            held = NULL;
        }
    }
}

void qrpc__work_refuse(qrpc__job *job)
{
    qrpc_buf none = { NULL, 0, 0 };

    qrpc__conn_job_done(job->conn);
    if (!(job->msg.req.flags & QRPC_METHOD_ONEWAY))
        qrpc__conn_reply(job->conn, job->msg.stream, QRPC_ECLOSED, &none, false);
    work_free_job(job);
}
