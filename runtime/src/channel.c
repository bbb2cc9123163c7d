/*
 * channel.c - RpcChannels: services whose requests are queued for the
 * program instead of dispatched to handlers, and the low-level API that
 * takes them out and answers them (qrpc_recv_request(),
 * qrpc_send_response()).
 *
 * A channel is served like any service (qrpc__serve() with no dispatch
 * functions); qrpc__dispatch() hands its requests to qrpc__channel_defer(),
 * which copies what the answer will need (the transport's responder, a
 * few bytes) into the queued request and takes or copies the argument
 * bytes.  The request then lives on its own: the transport's responder
 * holds whatever reference it needs (a connection, a waiting caller).
 *
 * Known limit: the queue is not bounded here; over TCP each connection's
 * max_inflight bounds what its peer can queue, and local callers are the
 * program's own threads.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core.h"

struct qrpc_channel {
    qrpc_node *node;
    const qrpc_service_desc *desc;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    qrpc_request *head, *tail;
    bool closed;
    unsigned receivers;         /* threads inside qrpc_recv_request() */
};

struct qrpc_request {
    qrpc_request *next;
    uint32_t method;
    uint32_t flags;             /* QRPC_METHOD_* */
    uint64_t client_id;
    uint8_t *args;
    size_t args_len;
    void (*respond)(void *ctx, int status, qrpc_buf *results);
    _Alignas(max_align_t) unsigned char ctx[];
};

int qrpc__channel_defer(qrpc_channel *ch, const qrpc__request *req, uint32_t flags)
{
    qrpc_request *r = malloc(sizeof *r + req->resp->ctx_len);

    if (r == NULL)
        return QRPC_ENOMEM;
    r->next = NULL;
    r->method = req->method;
    r->flags = flags;
    r->client_id = req->client_id;
    r->args_len = req->args_len;
    if (req->args_owned != NULL && *req->args_owned != NULL) {
        r->args = *req->args_owned;     /* taken, not copied */
        *req->args_owned = NULL;
    } else if (req->args_len == 0) {
        r->args = NULL;
    } else {
        r->args = malloc(req->args_len);
        if (r->args == NULL) {
            free(r);
            return QRPC_ENOMEM;
        }
        memcpy(r->args, req->args, req->args_len);
    }
    r->respond = req->resp->respond;
    memcpy(r->ctx, req->resp->ctx, req->resp->ctx_len);
    pthread_mutex_lock(&ch->lock);
    if (ch->closed) {
        pthread_mutex_unlock(&ch->lock);
        free(r->args);
        free(r);
        return QRPC_ECLOSED;
    }
    if (ch->tail != NULL)
        ch->tail->next = r;
    else
        ch->head = r;
    ch->tail = r;
    pthread_cond_signal(&ch->cond);
    pthread_mutex_unlock(&ch->lock);
    return QRPC__DEFERRED;
}

int qrpc_channel_open(qrpc_node *n, const qrpc_service_desc *desc, qrpc_channel **out)
{
    qrpc_channel *ch;
    int rc;

    if (out == NULL)
        return QRPC_EINVAL;
    *out = NULL;
    if (n == NULL || qrpc__desc_check(desc) != 0)
        return QRPC_EINVAL;
    ch = calloc(1, sizeof *ch);
    if (ch == NULL)
        return QRPC_ENOMEM;
    ch->node = n;
    ch->desc = desc;
    if (pthread_mutex_init(&ch->lock, NULL) != 0 || qrpc__cond_init_mono(&ch->cond) != 0) {
        free(ch);
        return QRPC_ENOMEM;
    }
    rc = qrpc__serve(n, desc, NULL, NULL, NULL, ch);
    if (rc != 0) {
        pthread_cond_destroy(&ch->cond);
        pthread_mutex_destroy(&ch->lock);
        free(ch);
        return rc;
    }
    *out = ch;
    return 0;
}

void qrpc_channel_close(qrpc_channel *ch)
{
    qrpc_request *r, *next;

    if (ch == NULL)
        return;
    /* After this no request can reach the queue (an RCU grace period). */
    (void)qrpc_unserve(ch->node, ch->desc->name, ch->desc->version);
    pthread_mutex_lock(&ch->lock);
    ch->closed = true;
    r = ch->head;
    ch->head = ch->tail = NULL;
    pthread_cond_broadcast(&ch->cond);
    while (ch->receivers > 0)
        pthread_cond_wait(&ch->cond, &ch->lock);
    pthread_mutex_unlock(&ch->lock);
    for (; r != NULL; r = next) {
        next = r->next;
        qrpc_send_response(r, QRPC_ECLOSED, NULL);
    }
    pthread_cond_destroy(&ch->cond);
    pthread_mutex_destroy(&ch->lock);
    free(ch);
}

int qrpc_recv_request(qrpc_channel *ch, int timeout_ms, qrpc_request **out)
{
    struct timespec until;
    int rc = 0;

    if (ch == NULL || out == NULL)
        return QRPC_EINVAL;
    *out = NULL;
    if (timeout_ms > 0) {
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&ch->lock);
    ch->receivers++;
    while (ch->head == NULL && !ch->closed && rc == 0) {
        if (timeout_ms == 0)
            rc = QRPC_ETIMEDOUT;
        else if (timeout_ms < 0)
            pthread_cond_wait(&ch->cond, &ch->lock);
        else if (pthread_cond_timedwait(&ch->cond, &ch->lock, &until) == ETIMEDOUT)
            rc = QRPC_ETIMEDOUT;
    }
    if (ch->closed) {
        rc = QRPC_ECLOSED;
    } else if (ch->head != NULL) {
        *out = ch->head;
        ch->head = ch->head->next;
        if (ch->head == NULL)
            ch->tail = NULL;
        rc = 0;
    }
    if (--ch->receivers == 0 && ch->closed)
        pthread_cond_broadcast(&ch->cond);
    pthread_mutex_unlock(&ch->lock);
    return rc;
}

uint32_t qrpc_request_method(const qrpc_request *r)
{
    return r != NULL ? r->method : 0;
}

uint64_t qrpc_request_client_id(const qrpc_request *r)
{
    return r != NULL ? r->client_id : 0;
}

void qrpc_request_args(const qrpc_request *r, qrpc_reader *out)
{
    if (r == NULL)
        qrpc_reader_init(out, NULL, 0);
    else
        qrpc_reader_init(out, r->args, r->args_len);
}

int qrpc_send_response(qrpc_request *r, int status, qrpc_buf *results)
{
    qrpc_buf none = { NULL, 0, 0 };

    if (r == NULL) {
        if (results != NULL)
            qrpc_buf_free(results);
        return QRPC_EINVAL;
    }
    if (results == NULL)
        results = &none;
    if (r->flags & QRPC_METHOD_ONEWAY) {
        status = 0;             /* nobody to tell */
        results->len = 0;
    }
    if (status != 0)
        qrpc_buf_free(results);
    r->respond(r->ctx, status, results);
    qrpc_buf_free(results);
    free(r->args);
    free(r);
    return 0;
}
