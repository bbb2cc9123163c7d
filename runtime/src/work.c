/*
 * work.c - the node's workers: threads that take received requests from
 * the node's queue, run them through qrpc__dispatch() (the same path a
 * local call takes) and queue the reply on the connection the request
 * came from.
 *
 * The queue is a plain mutex and condition variable: it is touched once
 * per request by the I/O thread and once by a worker, and a worker's
 * wake-up costs more than the lock.  Known limit: one queue for the whole
 * node, so a flood of requests for one service delays the others (no
 * per-service fairness).
 */
#include <stdlib.h>
#include <string.h>

#include "net.h"

struct qrpc__work {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    qrpc__job *head, *tail;
    bool stop;
    pthread_t *threads;
    unsigned n_threads;
};

/*
 * The request stops counting against max_inflight before its reply goes
 * out: a caller that sends its next call on seeing the reply must find
 * the room free.
 */
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
        qrpc__conn_reply(wr->conn, wr->stream, status, results);
    qrpc__conn_unref(wr->conn);
}

static void work_run(qrpc_node *n, qrpc__job *job)
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
        qrpc__conn_reply(job->conn, job->msg.stream, status, &results);
    work_free_job(job);
}

static void *work_main(void *arg)
{
    qrpc_node *n = arg;
    qrpc__work *w = n->work;

    for (;;) {
        qrpc__job *job;

        pthread_mutex_lock(&w->lock);
        while (w->head == NULL && !w->stop)
            pthread_cond_wait(&w->cond, &w->lock);
        job = w->head;
        if (job == NULL) {
            pthread_mutex_unlock(&w->lock);
            return NULL;
        }
        w->head = job->next;
        if (w->head == NULL)
            w->tail = NULL;
        pthread_mutex_unlock(&w->lock);
        work_run(n, job);
    }
}

void qrpc__work_push(qrpc_node *n, qrpc__job *job)
{
    qrpc__work *w = n->work;

    job->next = NULL;
    pthread_mutex_lock(&w->lock);
    if (w->stop) {
        pthread_mutex_unlock(&w->lock);
        qrpc__conn_job_done(job->conn);
        work_free_job(job);
        return;
    }
    if (w->tail != NULL)
        w->tail->next = job;
    else
        w->head = job;
    w->tail = job;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

int qrpc__work_start(qrpc_node *n)
{
    qrpc__work *w;
    unsigned i;

    if (n->work != NULL)
        return 0;
    w = calloc(1, sizeof *w);
    if (w == NULL)
        return QRPC_ENOMEM;
    w->threads = calloc(n->cfg.workers, sizeof *w->threads);
    if (w->threads == NULL || pthread_mutex_init(&w->lock, NULL) != 0) {
        free(w->threads);
        free(w);
        return QRPC_ENOMEM;
    }
    if (pthread_cond_init(&w->cond, NULL) != 0) {
        pthread_mutex_destroy(&w->lock);
        free(w->threads);
        free(w);
        return QRPC_ENOMEM;
    }
    n->work = w;
    for (i = 0; i < n->cfg.workers; i++) {
        if (pthread_create(&w->threads[i], NULL, work_main, n) != 0)
            break;
        w->n_threads++;
    }
    if (w->n_threads == 0) {
        qrpc__work_stop(n);
        return QRPC_EIO;
    }
    return 0;
}

void qrpc__work_stop(qrpc_node *n)
{
    qrpc__work *w = n->work;
    qrpc__job *job, *next;
    unsigned i;

    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    job = w->head;
    w->head = w->tail = NULL;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    /* queued, never run: the callers learn so */
    for (; job != NULL; job = next) {
        qrpc_buf none = { NULL, 0, 0 };

        next = job->next;
        qrpc__conn_job_done(job->conn);
        if (!(job->msg.req.flags & QRPC_METHOD_ONEWAY))
            qrpc__conn_reply(job->conn, job->msg.stream, QRPC_ECLOSED, &none);
        work_free_job(job);
    }
    for (i = 0; i < w->n_threads; i++)
        pthread_join(w->threads[i], NULL);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w->threads);
    free(w);
    n->work = NULL;
}
