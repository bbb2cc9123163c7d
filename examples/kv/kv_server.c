/*
 * kv_server.c - kv-server: serves kv.KV, an in-memory key-value store,
 * over TCP.
 *
 *   kv-server [HOST:PORT]      default 127.0.0.1:0 (any port)
 *
 * Prints "listening on HOST:PORT", serves until SIGINT or SIGTERM, then
 * destroys its node (answering the calls in progress), frees the store
 * and exits 0.
 *
 * The store is a sorted array of entries under one mutex: lookups are
 * binary searches, inserts and deletes move the tail.  Handlers run on
 * the node's worker threads, so every access takes the lock.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"

typedef struct kv_entry {
    char *key;
    qrpc_bytes value;
} kv_entry;

typedef struct kv_store {
    pthread_mutex_t lock;
    kv_entry *items;            /* sorted by key (strcmp) */
    size_t len, cap;
} kv_store;

/* The index of key, or where it would go (*found false). */
static size_t store_find(const kv_store *s, const char *key, bool *found)
{
    size_t lo = 0, hi = s->len;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->items[mid].key, key);

        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static int kv_put(qrpc_ctx *ctx, const char *key, const qrpc_bytes *value)
{
    kv_store *s = qrpc_ctx_state(ctx);
    qrpc_bytes copy;
    size_t i;
    bool found;
    int rc = 0;

    /* copied outside the lock: the in parameters belong to the runtime */
    if (qrpc_bytes_copy(&copy, value) != 0)
        return QRPC_ENOMEM;
    pthread_mutex_lock(&s->lock);
    i = store_find(s, key, &found);
    if (found) {
        qrpc_bytes_free(&s->items[i].value);
        s->items[i].value = copy;
        goto out;
    }
    if (s->len >= kv_MAX_KEYS) {
        rc = kv_KvError_FULL;
        goto out;
    }
    if (s->len == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 16;
        kv_entry *n = realloc(s->items, ncap * sizeof *n);

        if (n == NULL) {
            rc = QRPC_ENOMEM;
            goto out;
        }
        s->items = n;
        s->cap = ncap;
    }
    s->items[s->len].key = strdup(key);
    if (s->items[s->len].key == NULL) {
        rc = QRPC_ENOMEM;
        goto out;
    }
    s->items[s->len].value = copy;
    /* rotate the new entry from the end into place */
    if (i < s->len) {
        kv_entry e = s->items[s->len];

        memmove(&s->items[i + 1], &s->items[i], (s->len - i) * sizeof *s->items);
        s->items[i] = e;
    }
    s->len++;
out:
    pthread_mutex_unlock(&s->lock);
    if (rc != 0)
        qrpc_bytes_free(&copy);
    return rc;
}

static int kv_get(qrpc_ctx *ctx, const char *key, qrpc_bytes **result)
{
    kv_store *s = qrpc_ctx_state(ctx);
    size_t i;
    bool found;
    int rc = 0;

    pthread_mutex_lock(&s->lock);
    i = store_find(s, key, &found);
    if (found)              /* the runtime frees *result once it is sent */
        rc = kv_bytes_opt_copy(result, &s->items[i].value) == 0 ? 0 : QRPC_ENOMEM;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int kv_delete(qrpc_ctx *ctx, const char *key, bool *result)
{
    kv_store *s = qrpc_ctx_state(ctx);
    size_t i;
    bool found;

    pthread_mutex_lock(&s->lock);
    i = store_find(s, key, &found);
    if (found) {
        free(s->items[i].key);
        qrpc_bytes_free(&s->items[i].value);
        memmove(&s->items[i], &s->items[i + 1], (s->len - i - 1) * sizeof *s->items);
        s->len--;
    }
    pthread_mutex_unlock(&s->lock);
    *result = found;
    return 0;
}

static int kv_keys(qrpc_ctx *ctx, kv_string_list *result)
{
    kv_store *s = qrpc_ctx_state(ctx);
    size_t i;
    int rc = 0;

    pthread_mutex_lock(&s->lock);
    result->items = s->len ? calloc(s->len, sizeof *result->items) : NULL;
    if (s->len != 0 && result->items == NULL) {
        rc = QRPC_ENOMEM;
        goto out;
    }
    for (i = 0; i < s->len; i++) {
        result->items[i] = strdup(s->items[i].key);
        if (result->items[i] == NULL) {
            rc = QRPC_ENOMEM;
            break;
        }
        result->len = i + 1;        /* what the runtime frees on error too */
    }
out:
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static const kv_KV_handlers kv_handlers = {
    .put = kv_put,
    .get = kv_get,
    .delete = kv_delete,
    .keys = kv_keys,
};

static void store_free(kv_store *s)
{
    size_t i;

    for (i = 0; i < s->len; i++) {
        free(s->items[i].key);
        qrpc_bytes_free(&s->items[i].value);
    }
    free(s->items);
    pthread_mutex_destroy(&s->lock);
}

int main(int argc, char **argv)
{
    kv_store store = { PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0 };
    const char *listen = argc > 1 ? argv[1] : "127.0.0.1:0";
    qrpc_node_config cfg;
    qrpc_node *node = NULL;
    sigset_t stop;
    int rc, sig = 0;

    if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
        fprintf(stderr, "usage: kv-server [HOST:PORT]\n");
        return 2;
    }
    /* blocked in every thread the node starts: only sigwait() takes them */
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    qrpc_node_config_init(&cfg);
    cfg.listen = listen;
    cfg.max_message = 2 * kv_MAX_VALUE;     /* a full value and its key fit */
    rc = qrpc_node_create(&cfg, &node);
    if (rc != 0) {
        fprintf(stderr, "kv-server: cannot listen on %s: %s\n", listen, qrpc_strerror(rc));
        return 1;
    }
    rc = kv_KV_serve(node, &kv_handlers, &store);
    if (rc != 0) {
        fprintf(stderr, "kv-server: serving kv.KV: %s\n", qrpc_strerror(rc));
        qrpc_node_destroy(node);
        return 1;
    }
    printf("listening on %s\n", qrpc_node_address(node));
    fflush(stdout);

    while (sigwait(&stop, &sig) != 0)
        ;
    fprintf(stderr, "kv-server: %s: stopping\n", strsignal(sig));
    /* answers the calls in progress; no handler runs after it returns */
    qrpc_node_destroy(node);
    fprintf(stderr, "kv-server: stopped with %zu keys\n", store.len);
    store_free(&store);
    return 0;
}
