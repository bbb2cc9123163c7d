/*
 * wire.c - the parts of the wire encoding (qrpc_wire.h) that are not
 * static inline: buffer growth, strings, bytes, counts and the helpers that
 * generated free/copy/equal functions call.
 *
 * The encoding itself is specified in qidl(5).  Every reader here treats
 * its input as hostile: lengths and counts are checked against the bytes
 * actually left before anything is allocated, so a 5-byte message cannot
 * make the decoder allocate 4 GiB.  A get that fails leaves the reader
 * where it was; a put that fails leaves the buffer as it was.
 */
#include <stdlib.h>
#include <string.h>

#include "qrpc_wire.h"

/* Largest buffer qrpc__buf_grow() makes: lengths on the wire are u32. */
#define WIRE_BUF_MAX ((uint64_t)1 << 32)
/* First allocation, so that small messages do not realloc byte by byte. */
#define WIRE_BUF_MIN 64u

void qrpc_buf_init(qrpc_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void qrpc_buf_free(qrpc_buf *b)
{
    free(b->data);
    qrpc_buf_init(b);
}

int qrpc__buf_grow(qrpc_buf *b, size_t n)
{
    uint64_t need, cap;
    uint8_t *p;

    if (n > SIZE_MAX - b->len)
        return QRPC_ETOOBIG;
    need = (uint64_t)b->len + n;
    if (need > WIRE_BUF_MAX)
        return QRPC_ETOOBIG;
    if (need <= b->cap)
        return 0;
    /* Doubling keeps appends amortised O(1); need <= 2^32 bounds the loop. */
    cap = b->cap < WIRE_BUF_MIN ? WIRE_BUF_MIN : b->cap;
    while (cap < need)
        cap *= 2;
    if (cap > WIRE_BUF_MAX)
        cap = WIRE_BUF_MAX;
    if (cap > SIZE_MAX)         /* 32-bit hosts: need itself fits */
        cap = SIZE_MAX;
    p = realloc(b->data, (size_t)cap);
    if (p == NULL)
        return QRPC_ENOMEM;
    b->data = p;
    b->cap = (size_t)cap;
    return 0;
}

/* True when n elements cannot be sent: over bound (0: none) or over u32. */
static bool wire_over_bound(uint64_t n, uint64_t bound)
{
    return n > UINT32_MAX || (bound != 0 && n > bound);
}

/* A u32 length and then len bytes, reserved at once so failure writes nothing. */
static int wire_put_counted(qrpc_buf *b, const void *p, size_t len, uint64_t bound)
{
    int rc;

    if (wire_over_bound(len, bound))
        return QRPC_EBOUND;
    if (len > SIZE_MAX - 4)
        return QRPC_ETOOBIG;
    rc = qrpc_buf_reserve(b, 4 + len);
    if (rc != 0)
        return rc;
    rc = qrpc_put_u32(b, (uint32_t)len);
    if (rc == 0)
        rc = qrpc_put_raw(b, p, len);
    return rc;
}

int qrpc_put_string(qrpc_buf *b, const char *s, uint64_t bound)
{
    if (s == NULL)
        s = "";
    return wire_put_counted(b, s, strlen(s), bound);
}

/* A bytes value no put can take: none, or a length without data. */
static bool wire_bytes_bad(const qrpc_bytes *v)
{
    return v == NULL || (v->len != 0 && v->data == NULL);
}

int qrpc_put_bytes(qrpc_buf *b, const qrpc_bytes *v, uint64_t bound)
{
    if (wire_bytes_bad(v))
        return QRPC_EINVAL;
    return wire_put_counted(b, v->data, v->len, bound);
}

int qrpc_put_count(qrpc_buf *b, size_t n, uint64_t bound)
{
    if (wire_over_bound(n, bound))
        return QRPC_EBOUND;
    return qrpc_put_u32(b, (uint32_t)n);
}

int qrpc_put_bytes_head(qrpc_buf *b, const qrpc_bytes *v, uint64_t bound)
{
    if (wire_bytes_bad(v))
        return QRPC_EINVAL;
    return qrpc_put_count(b, v->len, bound);
}

int qrpc_get_count(qrpc_reader *r, uint32_t *count, uint64_t bound, uint32_t min_elem)
{
    const uint8_t *start = r->p;
    uint32_t n;

    *count = 0;
    if (qrpc_get_u32(r, &n) != 0)
        return QRPC_EDECODE;
    /* u32 * u32 fits in u64: the product cannot overflow. */
    if ((bound != 0 && n > bound) ||
        (uint64_t)n * min_elem > qrpc_reader_left(r)) {
        r->p = start;
        return QRPC_EDECODE;
    }
    *count = n;
    return 0;
}

int qrpc_get_string(qrpc_reader *r, char **out, uint64_t bound)
{
    const uint8_t *start = r->p;
    uint32_t len;
    char *s;
    int rc;

    *out = NULL;
    rc = qrpc_get_count(r, &len, bound, 1);
    if (rc != 0)
        return rc;
    if (len != 0 && memchr(r->p, 0, len) != NULL) {
        rc = QRPC_EDECODE;
        goto fail;
    }
    s = malloc((size_t)len + 1);
    if (s == NULL) {
        rc = QRPC_ENOMEM;
        goto fail;
    }
    if (len != 0)
        memcpy(s, r->p, len);
    s[len] = '\0';
    r->p += len;
    *out = s;
    return 0;

fail:
    r->p = start;
    return rc;
}

int qrpc_get_bytes_view(qrpc_reader *r, qrpc_bytes *out, uint64_t bound)
{
    uint32_t len;
    int rc;

    out->data = NULL;
    out->len = 0;
    rc = qrpc_get_count(r, &len, bound, 1);
    if (rc != 0 || len == 0)
        return rc;
    /* the type has no const data member; the view's users get it const */
    out->data = (uint8_t *)(uintptr_t)r->p;
    out->len = len;
    r->p += len;
    return 0;
}

int qrpc_get_bytes(qrpc_reader *r, qrpc_bytes *out, uint64_t bound)
{
    int rc = qrpc_get_bytes_view(r, out, bound);
    const uint8_t *view = out->data;

    if (rc != 0 || out->len == 0)
        return rc;
    out->data = malloc(out->len);
    if (out->data == NULL) {
        r->p -= 4 + out->len;   /* un-read the value: leave r as it was */
        out->len = 0;
        return QRPC_ENOMEM;
    }
    memcpy(out->data, view, out->len);
    return 0;
}

void qrpc_bytes_free(qrpc_bytes *v)
{
    free(v->data);
    v->data = NULL;
    v->len = 0;
}

int qrpc_bytes_copy(qrpc_bytes *dst, const qrpc_bytes *src)
{
    const uint8_t *data = src->data;
    size_t len = src->len;

    dst->data = NULL;
    dst->len = 0;
    if (len == 0)
        return 0;
    if (data == NULL)
        return QRPC_EINVAL;
    dst->data = malloc(len);
    if (dst->data == NULL)
        return QRPC_ENOMEM;
    memcpy(dst->data, data, len);
    dst->len = len;
    return 0;
}

bool qrpc_bytes_equal(const qrpc_bytes *a, const qrpc_bytes *b)
{
    if (a->len != b->len)
        return false;
    return a->len == 0 || memcmp(a->data, b->data, a->len) == 0;
}

int qrpc_string_copy(char **dst, const char *s)
{
    *dst = NULL;
    if (s == NULL)
        return 0;
    *dst = strdup(s);
    return *dst != NULL ? 0 : QRPC_ENOMEM;
}

bool qrpc_string_equal(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}
