/*
 * qrpc_wire.h - the wire encoding's primitives, used by code that qrpcgen
 * generates and by programs that encode or decode by hand.
 *
 * The encoding (specified in qidl(5)): little-endian fixed-width scalars,
 * bool as one byte 0 or 1, u32 lengths and counts, strings without their
 * NUL, no padding, no alignment.  Writers append to a growable qrpc_buf;
 * readers consume a qrpc_reader and treat every byte as hostile: each get
 * checks the bytes left first, and counts are checked against both the
 * declared bound and what the remaining bytes could possibly hold before
 * anything is allocated.
 *
 * The scalar accessors are static inline because generated encoders and
 * decoders are made of little else; the rest lives in runtime/src/wire.c.
 * Every function returns 0 or a negative QRPC_E* code from qrpc_errors.h.
 */
#ifndef QRPC_WIRE_H
#define QRPC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "qrpc_errors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque bytes, as generated code maps `bytes` and `bytes<N>`. */
typedef struct qrpc_bytes {
    uint8_t *data;              /* malloc'd; NULL when len is 0 */
    size_t len;
} qrpc_bytes;

/* A growable output buffer.  Zero-initialised (or qrpc_buf_init) is empty. */
typedef struct qrpc_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} qrpc_buf;

/* An input cursor over bytes someone else owns. */
typedef struct qrpc_reader {
    const uint8_t *p;
    const uint8_t *end;
    unsigned depth;             /* current nesting of recursive types */
    unsigned max_depth;         /* beyond it decoding fails with QRPC_EDECODE */
} qrpc_reader;

/* Default for qrpc_reader.max_depth; qrpc_node_config.max_depth overrides. */
#define QRPC_DEFAULT_MAX_DEPTH 64u

/* Makes b empty, without storage. */
void qrpc_buf_init(qrpc_buf *b);
/* Releases b's storage and leaves it empty. */
void qrpc_buf_free(qrpc_buf *b);
/* Grows b so that n more bytes fit: QRPC_ENOMEM or QRPC_ETOOBIG (> 4 GiB). */
int qrpc__buf_grow(qrpc_buf *b, size_t n);

/* data may be NULL when len is 0 (an empty qrpc_buf). */
static inline void qrpc_reader_init(qrpc_reader *r, const void *data, size_t len)
{
    r->p = (const uint8_t *)data;
    r->end = len != 0 ? r->p + len : r->p;  /* NULL + 0 is undefined in C */
    r->depth = 0;
    r->max_depth = QRPC_DEFAULT_MAX_DEPTH;
}

static inline size_t qrpc_reader_left(const qrpc_reader *r)
{
    return (size_t)(r->end - r->p);
}

static inline int qrpc_buf_reserve(qrpc_buf *b, size_t n)
{
    if (b->cap - b->len >= n)
        return 0;
    return qrpc__buf_grow(b, n);
}

/* ---- writers --------------------------------------------------------- */

static inline int qrpc_put_raw(qrpc_buf *b, const void *p, size_t n)
{
    int rc = qrpc_buf_reserve(b, n);

    if (rc != 0)
        return rc;
    if (n != 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static inline int qrpc_put_u8(qrpc_buf *b, uint8_t v)
{
    int rc = qrpc_buf_reserve(b, 1);

    if (rc != 0)
        return rc;
    b->data[b->len++] = v;
    return 0;
}

static inline int qrpc_put_u16(qrpc_buf *b, uint16_t v)
{
    uint8_t le[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

    return qrpc_put_raw(b, le, 2);
}

static inline int qrpc_put_u32(qrpc_buf *b, uint32_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return qrpc_put_raw(b, &v, 4);
#else
    uint8_t le[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16),
                      (uint8_t)(v >> 24) };

    return qrpc_put_raw(b, le, 4);
#endif
}

static inline int qrpc_put_u64(qrpc_buf *b, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return qrpc_put_raw(b, &v, 8);
#else
    int rc = qrpc_put_u32(b, (uint32_t)v);

    if (rc != 0)
        return rc;
    return qrpc_put_u32(b, (uint32_t)(v >> 32));
#endif
}

static inline int qrpc_put_bool(qrpc_buf *b, bool v) { return qrpc_put_u8(b, v ? 1 : 0); }
static inline int qrpc_put_i8(qrpc_buf *b, int8_t v) { return qrpc_put_u8(b, (uint8_t)v); }
static inline int qrpc_put_i16(qrpc_buf *b, int16_t v) { return qrpc_put_u16(b, (uint16_t)v); }
static inline int qrpc_put_i32(qrpc_buf *b, int32_t v) { return qrpc_put_u32(b, (uint32_t)v); }
static inline int qrpc_put_i64(qrpc_buf *b, int64_t v) { return qrpc_put_u64(b, (uint64_t)v); }

static inline int qrpc_put_f32(qrpc_buf *b, float v)
{
    uint32_t bits;

    memcpy(&bits, &v, 4);
    return qrpc_put_u32(b, bits);
}

static inline int qrpc_put_f64(qrpc_buf *b, double v)
{
    uint64_t bits;

    memcpy(&bits, &v, 8);
    return qrpc_put_u64(b, bits);
}

/*
 * A string: u32 length, then its bytes without the NUL.  NULL encodes as
 * the empty string.  bound is the declared maximum length (0: unbounded);
 * a longer string fails with QRPC_EBOUND and writes nothing.
 */
int qrpc_put_string(qrpc_buf *b, const char *s, uint64_t bound);
/* Bytes: u32 length, then the bytes; bound as for strings. */
int qrpc_put_bytes(qrpc_buf *b, const qrpc_bytes *v, uint64_t bound);
/*
 * The length qrpc_put_bytes() would write, and not the bytes: they follow
 * as a call's tail (qrpc_call_tail), or are appended with qrpc_put_raw().
 * Fails as qrpc_put_bytes() and writes nothing then.
 */
int qrpc_put_bytes_head(qrpc_buf *b, const qrpc_bytes *v, uint64_t bound);
/* A list or bytes count: QRPC_EBOUND when over bound (0: unbounded) or 2^32-1. */
int qrpc_put_count(qrpc_buf *b, size_t n, uint64_t bound);

/* ---- readers ----------------------------------------------------------- */

static inline int qrpc_get_raw(qrpc_reader *r, void *p, size_t n)
{
    if (qrpc_reader_left(r) < n)
        return QRPC_EDECODE;
    if (n != 0) {
        memcpy(p, r->p, n);
        r->p += n;
    }
    return 0;
}

static inline int qrpc_get_u8(qrpc_reader *r, uint8_t *v)
{
    if (r->p == r->end)
        return QRPC_EDECODE;
    *v = *r->p++;
    return 0;
}

static inline int qrpc_get_u16(qrpc_reader *r, uint16_t *v)
{
    if (qrpc_reader_left(r) < 2)
        return QRPC_EDECODE;
    *v = (uint16_t)(r->p[0] | (uint16_t)r->p[1] << 8);
    r->p += 2;
    return 0;
}

static inline int qrpc_get_u32(qrpc_reader *r, uint32_t *v)
{
    if (qrpc_reader_left(r) < 4)
        return QRPC_EDECODE;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(v, r->p, 4);
#else
    *v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 |
         (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
#endif
    r->p += 4;
    return 0;
}

static inline int qrpc_get_u64(qrpc_reader *r, uint64_t *v)
{
    if (qrpc_reader_left(r) < 8)
        return QRPC_EDECODE;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(v, r->p, 8);
#else
    {
        uint32_t lo = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 |
                      (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
        uint32_t hi = (uint32_t)r->p[4] | (uint32_t)r->p[5] << 8 |
                      (uint32_t)r->p[6] << 16 | (uint32_t)r->p[7] << 24;
        *v = (uint64_t)hi << 32 | lo;
    }
#endif
    r->p += 8;
    return 0;
}

/* A bool is one byte, 0 or 1; anything else is QRPC_EDECODE. */
static inline int qrpc_get_bool(qrpc_reader *r, bool *v)
{
    uint8_t u;

    if (qrpc_get_u8(r, &u) != 0 || u > 1)
        return QRPC_EDECODE;
    *v = u == 1;
    return 0;
}

static inline int qrpc_get_i8(qrpc_reader *r, int8_t *v)
{
    return qrpc_get_u8(r, (uint8_t *)v);
}

static inline int qrpc_get_i16(qrpc_reader *r, int16_t *v)
{
    uint16_t u = 0;      /* defined even when the get fails */
    int rc = qrpc_get_u16(r, &u);

    *v = (int16_t)u;
    return rc;
}

static inline int qrpc_get_i32(qrpc_reader *r, int32_t *v)
{
    uint32_t u = 0;      /* defined even when the get fails */
    int rc = qrpc_get_u32(r, &u);

    *v = (int32_t)u;
    return rc;
}

static inline int qrpc_get_i64(qrpc_reader *r, int64_t *v)
{
    uint64_t u = 0;      /* defined even when the get fails */
    int rc = qrpc_get_u64(r, &u);

    *v = (int64_t)u;
    return rc;
}

static inline int qrpc_get_f32(qrpc_reader *r, float *v)
{
    uint32_t bits = 0;   /* defined even when the get fails */
    int rc = qrpc_get_u32(r, &bits);

    memcpy(v, &bits, 4);
    return rc;
}

static inline int qrpc_get_f64(qrpc_reader *r, double *v)
{
    uint64_t bits = 0;   /* defined even when the get fails */
    int rc = qrpc_get_u64(r, &bits);

    memcpy(v, &bits, 8);
    return rc;
}

/*
 * A string into a fresh NUL-terminated malloc'd *out.  Fails with
 * QRPC_EDECODE when truncated, longer than bound (0: unbounded) or when it
 * holds a NUL byte (a C string could not carry it), QRPC_ENOMEM otherwise.
 * On failure *out is NULL.
 */
int qrpc_get_string(qrpc_reader *r, char **out, uint64_t bound);
/* Bytes into out (data malloc'd, NULL when empty); as qrpc_get_string. */
int qrpc_get_bytes(qrpc_reader *r, qrpc_bytes *out, uint64_t bound);
/*
 * Bytes as a view: out->data points into the reader's buffer, no copy and
 * nothing allocated, valid as long as that buffer and never to be freed
 * (not with qrpc_bytes_free either).  Generated dispatchers read bytes
 * in-parameters this way.  Fails as qrpc_get_bytes, leaving r as it was.
 */
int qrpc_get_bytes_view(qrpc_reader *r, qrpc_bytes *out, uint64_t bound);
/*
 * A list count: QRPC_EDECODE when over bound (0: unbounded) or when the
 * bytes left could not hold count elements of at least min_elem bytes each.
 * With min_elem 0 (elements that may encode to nothing) only bound limits
 * the count.  On failure *count is 0.  A failed string, bytes or count get
 * leaves r where it was.
 */
int qrpc_get_count(qrpc_reader *r, uint32_t *count, uint64_t bound, uint32_t min_elem);
/* Presence byte of an optional: 0 or 1, anything else QRPC_EDECODE. */
static inline int qrpc_get_present(qrpc_reader *r, bool *present)
{
    return qrpc_get_bool(r, present);
}

/* Enter and leave one level of a recursive type (checks max_depth). */
static inline int qrpc_reader_enter(qrpc_reader *r)
{
    if (r->depth >= r->max_depth)
        return QRPC_EDECODE;
    r->depth++;
    return 0;
}

static inline void qrpc_reader_leave(qrpc_reader *r)
{
    r->depth--;
}

/* ---- helpers for generated free/copy/equal ----------------------------- */

/* Frees v's data and leaves it empty. */
void qrpc_bytes_free(qrpc_bytes *v);
/*
 * Copies src into *dst, which is overwritten, not freed (data NULL when
 * empty).  QRPC_ENOMEM, or QRPC_EINVAL for src->len bytes at NULL; on
 * error *dst is empty.
 */
int qrpc_bytes_copy(qrpc_bytes *dst, const qrpc_bytes *src);
/* Same length and bytes. */
bool qrpc_bytes_equal(const qrpc_bytes *a, const qrpc_bytes *b);
/* Copies s (NULL stays NULL) into *dst; QRPC_ENOMEM, with *dst NULL. */
int qrpc_string_copy(char **dst, const char *s);
/* NULL and "" are equal, as they encode the same. */
bool qrpc_string_equal(const char *a, const char *b);

#ifdef __cplusplus
}
#endif

#endif
