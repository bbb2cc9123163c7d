/*
 * dlog.c - the durable reply log of dlog.h.
 *
 * The file: an 8-byte header "QRPCDLG1", then records, each
 *   u32 payload length
 *   payload: u8 type (1: completion)  3 bytes 0
 *            u64 client id   u64 sequence number   i32 status
 *            u32 reply length   the reply's bytes
 *   u32 CRC-32 of the payload (the zlib polynomial)
 * all little-endian, written and read with the wire helpers (qrpc_wire.h).
 * A record is only ever appended whole (one write() for a batch), so a
 * crash can leave a record cut short at the end; the CRC catches one
 * whose bytes did not all reach the disk.
 *
 * One thread per log writes: appenders queue their records and go on
 * (the loop threads never wait for the disk); the thread takes everything
 * queued, writes it with one write() and one fdatasync(), and only then
 * answers the calls (qrpc__dedup_done and the reply, through the done
 * callback): group commit.  After a batch it may compact: the cache's
 * answered entries, which are exactly the records still needed, are
 * written to PATH.tmp, made durable and renamed over the log.
 *
 * Known limits: a write or fdatasync error is logged and the calls are
 * answered anyway (their retransmissions after a restart will be
 * refused, not run twice); a compaction that fails is tried again after
 * every batch (and said once); a damaged record in the middle of the file
 * loses the records after it too; records are restored only as far as
 * the reply cache's limits allow (the others are logged and skipped);
 * every reply is copied once more, into the batch.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dlog.h"
#include "net.h"

#define DLOG_MAGIC        "QRPCDLG1"
#define DLOG_MAGIC_LEN    8u
#define DLOG_PAYLOAD_HDR  28u       /* type, pad, client, seq, status, reply length */
#define DLOG_T_COMPLETION 1u
/* A log of fewer records than this is never compacted. */
#define DLOG_COMPACT_MIN  4096u
/* The writer's buffer is given back after a batch when it is larger than this. */
#define DLOG_BUF_KEEP     (1u << 20)

/* One queued completion. */
typedef struct dlog_item {
    struct dlog_item *next;
    uint64_t client, seq;
    int status;
    qrpc_buf results;
    qrpc__dlog_done_fn done;
    _Alignas(max_align_t) unsigned char ctx[];
} dlog_item;

struct qrpc__dlog {
    qrpc_node *node;
    char *path;
    int fd;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    dlog_item *head;            /* queued, newest first */
    bool stopping;
    pthread_t thread;
    uint64_t records;           /* in the file now */
    bool failed;                /* a write failed: said once */
    bool compact_failed;        /* a compaction failed: said once */
    qrpc_buf buf;               /* the writer's batch */
};

/* ---- bytes ---------------------------------------------------------------- */

static uint32_t dlog_crc_table[256];
static pthread_once_t dlog_crc_once = PTHREAD_ONCE_INIT;

static void dlog_crc_init(void)
{
    uint32_t i, k, c;

    for (i = 0; i < 256; i++) {
        c = i;
        for (k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        dlog_crc_table[i] = c;
    }
}

static uint32_t dlog_crc(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;

    pthread_once(&dlog_crc_once, dlog_crc_init);
    while (n-- > 0)
        c = dlog_crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

/* Appends one record to b: false when out of memory. */
static bool dlog_encode(qrpc_buf *b, uint64_t client, uint64_t seq, int status,
                        const uint8_t *reply, size_t reply_len)
{
    static const uint8_t pad[3];
    size_t start = b->len + 4;

    if (qrpc_put_u32(b, (uint32_t)(DLOG_PAYLOAD_HDR + reply_len)) != 0 ||
        qrpc_put_u8(b, DLOG_T_COMPLETION) != 0 || qrpc_put_raw(b, pad, sizeof pad) != 0 ||
        qrpc_put_u64(b, client) != 0 || qrpc_put_u64(b, seq) != 0 ||
        qrpc_put_i32(b, status) != 0 || qrpc_put_u32(b, (uint32_t)reply_len) != 0 ||
        qrpc_put_raw(b, reply, reply_len) != 0)
        return false;
    return qrpc_put_u32(b, dlog_crc(b->data + start, b->len - start)) == 0;
}

/* write() all of p, resuming after short writes: 0 or errno. */
static int dlog_write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? errno : EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* read() up to n bytes: how many came (fewer only at end of file), or -1. */
static ssize_t dlog_read_full(int fd, uint8_t *p, size_t n)
{
    size_t got = 0;

    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* ---- loading -------------------------------------------------------------------- */

/*
 * One record's payload and CRC (len + 4 bytes in rec), read with the wire
 * helpers: puts it back into the reply cache (*restored counts it) or
 * skips it (*skipped).  False when it is damaged.
 */
static bool dlog_restore_one(qrpc__dlog *l, const uint8_t *rec, uint32_t len, uint64_t now,
                             size_t *restored, size_t *skipped)
{
    qrpc_reader r;
    uint8_t type, pad[3];
    uint64_t client, seq;
    int32_t status;
    uint32_t reply_len, crc;

    qrpc_reader_init(&r, rec + len, 4);
    if (qrpc_get_u32(&r, &crc) != 0 || crc != dlog_crc(rec, len))
        return false;
    qrpc_reader_init(&r, rec, len);
    if (qrpc_get_u8(&r, &type) != 0 || type != DLOG_T_COMPLETION ||
        qrpc_get_raw(&r, pad, sizeof pad) != 0 || qrpc_get_u64(&r, &client) != 0 ||
        qrpc_get_u64(&r, &seq) != 0 || qrpc_get_i32(&r, &status) != 0 ||
        qrpc_get_u32(&r, &reply_len) != 0 || reply_len != qrpc_reader_left(&r))
        return false;
    if (qrpc__dedup_restore(l->node->dedup, client, seq, status, r.p, reply_len, now) == 0)
        (*restored)++;
    else
        (*skipped)++;
    return true;
}

/*
 * Reads the records after the header into the reply cache.  Stops at the
 * end, or at a record cut short or damaged, whose offset goes to *end.
 */
static int dlog_load(qrpc__dlog *l, off_t *end, size_t *restored, bool *torn)
{
    qrpc_node *n = l->node;
    uint64_t now = qrpc__now_ns(n);
    uint32_t max_payload = DLOG_PAYLOAD_HDR + n->cfg.max_message;
    uint8_t hdr[4], *rec = NULL;
    size_t cap = 0, skipped = 0;
    off_t off = DLOG_MAGIC_LEN;
    qrpc_reader r;
    int rc = 0;

    *torn = false;
    for (;;) {
        ssize_t got = dlog_read_full(l->fd, hdr, sizeof hdr);
        uint32_t len = 0;

        if (got < 0) {
            rc = QRPC_EIO;
            break;
        }
        if (got == 0)
            break;
        qrpc_reader_init(&r, hdr, (size_t)got);
        if (qrpc_get_u32(&r, &len) != 0 || len < DLOG_PAYLOAD_HDR || len > max_payload) {
            *torn = true;
            break;
        }
        if (len + 4 > cap) {            /* the payload and its CRC */
            uint8_t *nr = realloc(rec, len + 4);

            if (nr == NULL) {
                rc = QRPC_ENOMEM;
                break;
            }
            rec = nr;
            cap = len + 4;
        }
        got = dlog_read_full(l->fd, rec, len + 4);
        if (got < 0) {
            rc = QRPC_EIO;
            break;
        }
        if ((size_t)got < len + 4 || !dlog_restore_one(l, rec, len, now, restored, &skipped)) {
            *torn = true;
            break;
        }
        l->records++;
        off += (off_t)(8 + len);
    }
    free(rec);
    if (skipped != 0)
        qrpc__log(n, "dedup_log %s: %zu records not restored (over the reply cache's limits, "
                  "or repeated)", l->path, skipped);
    *end = off;
    return rc;
}

/* Opens path and checks or writes its header; loads it into the cache. */
static int dlog_load_file(qrpc__dlog *l, size_t *restored)
{
    qrpc_node *n = l->node;
    uint8_t magic[DLOG_MAGIC_LEN];
    struct stat st;
    off_t end = DLOG_MAGIC_LEN;
    ssize_t got;
    bool torn = false;
    int rc;

    l->fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (l->fd < 0 || fstat(l->fd, &st) != 0) {
        qrpc__log(n, "dedup_log %s: cannot open: %s", l->path, strerror(errno));
        return QRPC_EIO;
    }
    if (!S_ISREG(st.st_mode)) {
        qrpc__log(n, "dedup_log %s: not a regular file", l->path);
        return QRPC_EIO;
    }
    got = dlog_read_full(l->fd, magic, sizeof magic);
    if (got == 0) {
        /* new: the header, durable before anything is appended */
        if (dlog_write_all(l->fd, (const uint8_t *)DLOG_MAGIC, DLOG_MAGIC_LEN) != 0 ||
            fdatasync(l->fd) != 0) {
            qrpc__log(n, "dedup_log %s: cannot write: %s", l->path, strerror(errno));
            return QRPC_EIO;
        }
        return 0;
    }
    if (got != (ssize_t)sizeof magic || memcmp(magic, DLOG_MAGIC, DLOG_MAGIC_LEN) != 0) {
        /* never overwrite a file that is not ours */
        qrpc__log(n, "dedup_log %s: not a qrpc reply log (no %s header)", l->path, DLOG_MAGIC);
        return QRPC_EIO;
    }
    rc = dlog_load(l, &end, restored, &torn);
    if (rc != 0) {
        qrpc__log(n, "dedup_log %s: cannot read: %s", l->path,
                  rc == QRPC_ENOMEM ? "out of memory" : strerror(errno));
        return rc;
    }
    if (torn) {
        qrpc__log(n, "dedup_log %s: a record cut short or damaged at offset %lld: "
                  "it and the %lld bytes after it are dropped", l->path, (long long)end,
                  (long long)(st.st_size - end));
        if (ftruncate(l->fd, end) != 0 || fdatasync(l->fd) != 0) {
            qrpc__log(n, "dedup_log %s: cannot truncate: %s", l->path, strerror(errno));
            return QRPC_EIO;
        }
    }
    if (lseek(l->fd, end, SEEK_SET) < 0)
        return QRPC_EIO;
    return 0;
}

/* ---- compaction ------------------------------------------------------------------- */

typedef struct dlog_snap {
    qrpc_buf *buf;
    uint64_t records;
} dlog_snap;

static int dlog_snap_one(void *arg, uint64_t client, uint64_t seq, int status,
                         const uint8_t *reply, size_t len)
{
    dlog_snap *s = arg;

    if (!dlog_encode(s->buf, client, seq, status, reply, len))
        return QRPC_ENOMEM;
    s->records++;
    return 0;
}

/* fsync of the directory of path, so that a rename in it is durable. */
static int dlog_sync_dir(const char *path)
{
    char *copy = strdup(path);
    int fd, rc = -1;

    if (copy == NULL)
        return -1;
    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        rc = fsync(fd);
        close(fd);
    }
    free(copy);
    return rc;
}

/*
 * Rewrites the log as the cache's answered entries: PATH.tmp written and
 * made durable, then renamed over the log.  On any failure the old log
 * stays as it is (and keeps growing until a later try succeeds).
 */
static void dlog_compact(qrpc__dlog *l)
{
    qrpc_node *n = l->node;
    dlog_snap s = { &l->buf, 0 };
    char *tmp = malloc(strlen(l->path) + 5);
    int fd = -1;

    l->buf.len = 0;
    if (tmp == NULL || qrpc_put_raw(&l->buf, DLOG_MAGIC, DLOG_MAGIC_LEN) != 0 ||
        qrpc__dedup_snapshot(n->dedup, dlog_snap_one, &s) != 0)
        goto out;
    sprintf(tmp, "%s.tmp", l->path);
    fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || dlog_write_all(fd, l->buf.data, l->buf.len) != 0 || fdatasync(fd) != 0 ||
        rename(tmp, l->path) != 0) {
        if (!l->compact_failed)
            qrpc__log(n, "dedup_log %s: cannot compact (%s): the log grows until it can",
                      l->path, strerror(errno));
        l->compact_failed = true;
        if (fd >= 0)
            unlink(tmp);
        goto out;
    }
    l->compact_failed = false;
    (void)dlog_sync_dir(l->path);
    close(l->fd);
    l->fd = fd;
    fd = -1;
    l->records = s.records;

out:
    if (fd >= 0)
        close(fd);
    free(tmp);
}

/* ---- the writer ---------------------------------------------------------------------- */

/* Writes the batch (oldest first), makes it durable, answers it. */
static void dlog_write_batch(qrpc__dlog *l, dlog_item *batch)
{
    qrpc_node *n = l->node;
    struct qrpc__dedup_stats st;
    dlog_item *it, *next;
    size_t count = 0;
    int err = 0;

    l->buf.len = 0;
    for (it = batch; it != NULL; it = it->next, count++)
        if (!dlog_encode(&l->buf, it->client, it->seq, it->status,
                         it->status == 0 ? it->results.data : NULL,
                         it->status == 0 ? it->results.len : 0))
            err = ENOMEM;
    if (err == 0)
        err = dlog_write_all(l->fd, l->buf.data, l->buf.len);
    if (err == 0 && fdatasync(l->fd) != 0)
        err = errno;
    if (err != 0 && !l->failed) {
        l->failed = true;
        qrpc__log(n, "dedup_log %s: cannot write (%s): replies go out without their records",
                  l->path, strerror(err));
    } else if (err == 0) {
        l->failed = false;
        l->records += count;
    }
    for (it = batch; it != NULL; it = next) {
        next = it->next;
        it->done(it->ctx, it->status, &it->results);
        qrpc_buf_free(&it->results);
        free(it);
    }
    qrpc__dedup_stats(n->dedup, &st);
    if (l->records > DLOG_COMPACT_MIN && l->records > 2 * (uint64_t)st.entries)
        dlog_compact(l);
    if (l->buf.cap > DLOG_BUF_KEEP)     /* a batch of large replies: not kept for ever */
        qrpc_buf_free(&l->buf);
}

static void *dlog_main(void *arg)
{
    qrpc__dlog *l = arg;
    dlog_item *lifo, *fifo, *next;

    pthread_mutex_lock(&l->lock);
    for (;;) {
        while (l->head == NULL && !l->stopping)
            pthread_cond_wait(&l->cond, &l->lock);
        if (l->head == NULL)
            break;              /* stopping, and everything written */
        lifo = l->head;
        l->head = NULL;
        pthread_mutex_unlock(&l->lock);
        for (fifo = NULL; lifo != NULL; lifo = next) {
            next = lifo->next;
            lifo->next = fifo;
            fifo = lifo;
        }
        dlog_write_batch(l, fifo);
        pthread_mutex_lock(&l->lock);
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

/* ---- the interface ---------------------------------------------------------------------- */

int qrpc__dlog_open(qrpc_node *n, const char *path, size_t *restored, qrpc__dlog **out)
{
    qrpc__dlog *l;
    int rc;

    *out = NULL;
    *restored = 0;
    l = calloc(1, sizeof *l);
    if (l == NULL)
        return QRPC_ENOMEM;
    l->node = n;
    l->fd = -1;
    l->path = strdup(path);
    if (l->path == NULL) {
        free(l);
        return QRPC_ENOMEM;
    }
    rc = dlog_load_file(l, restored);
    if (rc != 0)
        goto fail;
    if (pthread_mutex_init(&l->lock, NULL) != 0) {
        rc = QRPC_ENOMEM;
        goto fail;
    }
    if (pthread_cond_init(&l->cond, NULL) != 0) {
        pthread_mutex_destroy(&l->lock);
        rc = QRPC_ENOMEM;
        goto fail;
    }
    if (pthread_create(&l->thread, NULL, dlog_main, l) != 0) {
        pthread_cond_destroy(&l->cond);
        pthread_mutex_destroy(&l->lock);
        rc = QRPC_ENOMEM;
        goto fail;
    }
    *out = l;
    return 0;

fail:
    if (l->fd >= 0)
        close(l->fd);
    free(l->path);
    free(l);
    return rc;
}

void qrpc__dlog_close(qrpc__dlog *l)
{
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->lock);
    l->stopping = true;
    pthread_cond_signal(&l->cond);
    pthread_mutex_unlock(&l->lock);
    pthread_join(l->thread, NULL);
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
    close(l->fd);
    qrpc_buf_free(&l->buf);
    free(l->path);
    free(l);
}

int qrpc__dlog_append(qrpc__dlog *l, uint64_t client, uint64_t seq, int status,
                      qrpc_buf *results, qrpc__dlog_done_fn done, const void *ctx,
                      size_t ctx_len)
{
    dlog_item *it = malloc(sizeof *it + ctx_len);

    if (it == NULL)
        return QRPC_ENOMEM;
    it->client = client;
    it->seq = seq;
    it->status = status;
    it->results = *results;
    results->data = NULL;
    results->len = results->cap = 0;
    it->done = done;
    memcpy(it->ctx, ctx, ctx_len);
    pthread_mutex_lock(&l->lock);
    it->next = l->head;
    l->head = it;
    pthread_cond_signal(&l->cond);
    pthread_mutex_unlock(&l->lock);
    return 0;
}
