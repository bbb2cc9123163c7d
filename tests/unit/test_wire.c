/*
 * test_wire.c - the wire primitives of qrpc_wire.h: round trips of every
 * type at its extremes and exact little-endian bytes; every get on every
 * truncation of valid input (read from an exactly-sized heap copy, so the
 * sanitizers see any over-read); bools other than 0 and 1; strings with a
 * NUL; bounds on put and get; counts that the bytes left cannot hold,
 * including count * min_elem overflowing 32 bits; buffer growth; nesting
 * depth.  Deterministic: no randomness beyond a fixed-seed generator.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qrpc_wire.h"

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void)                   /* xorshift64*, fixed seed */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717u;
}

/* A reader over a malloc'd copy of exactly len bytes (NULL when len is 0). */
static uint8_t *heap_copy(const void *p, size_t len)
{
    uint8_t *c;

    if (len == 0)
        return NULL;
    c = malloc(len);
    ck_assert_ptr_nonnull(c);
    memcpy(c, p, len);
    return c;
}

static void assert_bytes(const qrpc_buf *b, const uint8_t *want, size_t len)
{
    ck_assert_uint_eq(b->len, len);
    if (len != 0)               /* an empty buffer's data may be NULL */
        ck_assert_int_eq(memcmp(b->data, want, len), 0);
}

/* ---- round trips -------------------------------------------------------- */

START_TEST(test_roundtrip_integers)
{
    qrpc_buf b = { NULL, 0, 0 };
    qrpc_reader r;
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    int8_t i8;
    int16_t i16;
    int32_t i32;
    int64_t i64;
    bool t, f;

    ck_assert_int_eq(qrpc_put_u8(&b, 0), 0);
    ck_assert_int_eq(qrpc_put_u8(&b, UINT8_MAX), 0);
    ck_assert_int_eq(qrpc_put_u16(&b, UINT16_MAX), 0);
    ck_assert_int_eq(qrpc_put_u32(&b, UINT32_MAX), 0);
    ck_assert_int_eq(qrpc_put_u64(&b, UINT64_MAX), 0);
    ck_assert_int_eq(qrpc_put_i8(&b, INT8_MIN), 0);
    ck_assert_int_eq(qrpc_put_i8(&b, INT8_MAX), 0);
    ck_assert_int_eq(qrpc_put_i16(&b, INT16_MIN), 0);
    ck_assert_int_eq(qrpc_put_i32(&b, INT32_MIN), 0);
    ck_assert_int_eq(qrpc_put_i32(&b, -1), 0);
    ck_assert_int_eq(qrpc_put_i64(&b, INT64_MIN), 0);
    ck_assert_int_eq(qrpc_put_i64(&b, INT64_MAX), 0);
    ck_assert_int_eq(qrpc_put_bool(&b, true), 0);
    ck_assert_int_eq(qrpc_put_bool(&b, false), 0);
    ck_assert_uint_eq(b.len, 1 + 1 + 2 + 4 + 8 + 1 + 1 + 2 + 4 + 4 + 8 + 8 + 1 + 1);

    qrpc_reader_init(&r, b.data, b.len);
    ck_assert_int_eq(qrpc_get_u8(&r, &u8), 0);
    ck_assert_uint_eq(u8, 0);
    ck_assert_int_eq(qrpc_get_u8(&r, &u8), 0);
    ck_assert_uint_eq(u8, UINT8_MAX);
    ck_assert_int_eq(qrpc_get_u16(&r, &u16), 0);
    ck_assert_uint_eq(u16, UINT16_MAX);
    ck_assert_int_eq(qrpc_get_u32(&r, &u32), 0);
    ck_assert_uint_eq(u32, UINT32_MAX);
    ck_assert_int_eq(qrpc_get_u64(&r, &u64), 0);
    ck_assert(u64 == UINT64_MAX);
    ck_assert_int_eq(qrpc_get_i8(&r, &i8), 0);
    ck_assert_int_eq(i8, INT8_MIN);
    ck_assert_int_eq(qrpc_get_i8(&r, &i8), 0);
    ck_assert_int_eq(i8, INT8_MAX);
    ck_assert_int_eq(qrpc_get_i16(&r, &i16), 0);
    ck_assert_int_eq(i16, INT16_MIN);
    ck_assert_int_eq(qrpc_get_i32(&r, &i32), 0);
    ck_assert_int_eq(i32, INT32_MIN);
    ck_assert_int_eq(qrpc_get_i32(&r, &i32), 0);
    ck_assert_int_eq(i32, -1);
    ck_assert_int_eq(qrpc_get_i64(&r, &i64), 0);
    ck_assert(i64 == INT64_MIN);
    ck_assert_int_eq(qrpc_get_i64(&r, &i64), 0);
    ck_assert(i64 == INT64_MAX);
    ck_assert_int_eq(qrpc_get_bool(&r, &t), 0);
    ck_assert_int_eq(qrpc_get_bool(&r, &f), 0);
    ck_assert(t && !f);
    ck_assert_uint_eq(qrpc_reader_left(&r), 0);
    ck_assert_int_eq(qrpc_get_u8(&r, &u8), QRPC_EDECODE);
    qrpc_buf_free(&b);
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(b.cap, 0);
}
END_TEST

START_TEST(test_little_endian_bytes)
{
    static const uint8_t want[] = {
        0x02, 0x01,                                     /* u16 0x0102 */
        0x04, 0x03, 0x02, 0x01,                         /* u32 0x01020304 */
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* u64 */
        0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* i64 -2 */
        0x00, 0x00, 0x00, 0x80,                         /* f32 -0.0 */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0x3f, /* f64 1.0 */
        0x01,                                           /* true */
        0x03, 0x00, 0x00, 0x00, 'a', 'b', 'c',          /* "abc" */
    };
    qrpc_buf b = { NULL, 0, 0 };

    ck_assert_int_eq(qrpc_put_u16(&b, 0x0102), 0);
    ck_assert_int_eq(qrpc_put_u32(&b, 0x01020304u), 0);
    ck_assert_int_eq(qrpc_put_u64(&b, 0x0102030405060708u), 0);
    ck_assert_int_eq(qrpc_put_i64(&b, -2), 0);
    ck_assert_int_eq(qrpc_put_f32(&b, -0.0f), 0);
    ck_assert_int_eq(qrpc_put_f64(&b, 1.0), 0);
    ck_assert_int_eq(qrpc_put_bool(&b, true), 0);
    ck_assert_int_eq(qrpc_put_string(&b, "abc", 0), 0);
    assert_bytes(&b, want, sizeof want);
    qrpc_buf_free(&b);
}
END_TEST

static uint32_t f32_bits(float f)
{
    uint32_t u;

    memcpy(&u, &f, 4);
    return u;
}

static uint64_t f64_bits(double d)
{
    uint64_t u;

    memcpy(&u, &d, 8);
    return u;
}

START_TEST(test_roundtrip_floats)
{
    /* Quiet NaNs with payloads and both signs, zeros, infinities, subnormals. */
    static const uint32_t f32s[] = {
        0x7fc00001u, 0xffc12345u, 0x80000000u, 0x00000000u, 0x7f800000u,
        0xff800000u, 0x00000001u, 0x7f7fffffu,
    };
    static const uint64_t f64s[] = {
        0x7ff8000000000001u, 0xfff8deadbeef0001u, 0x8000000000000000u,
        0x0000000000000000u, 0x7ff0000000000000u, 0xfff0000000000000u,
        0x0000000000000001u, 0x7fefffffffffffffu,
    };
    qrpc_buf b = { NULL, 0, 0 };
    qrpc_reader r;
    size_t i;

    for (i = 0; i < sizeof f32s / sizeof f32s[0]; i++) {
        float f;

        memcpy(&f, &f32s[i], 4);
        ck_assert_int_eq(qrpc_put_f32(&b, f), 0);
    }
    for (i = 0; i < sizeof f64s / sizeof f64s[0]; i++) {
        double d;

        memcpy(&d, &f64s[i], 8);
        ck_assert_int_eq(qrpc_put_f64(&b, d), 0);
    }
    qrpc_reader_init(&r, b.data, b.len);
    for (i = 0; i < sizeof f32s / sizeof f32s[0]; i++) {
        float f;

        ck_assert_int_eq(qrpc_get_f32(&r, &f), 0);
        ck_assert_uint_eq(f32_bits(f), f32s[i]);
    }
    for (i = 0; i < sizeof f64s / sizeof f64s[0]; i++) {
        double d;

        ck_assert_int_eq(qrpc_get_f64(&r, &d), 0);
        ck_assert(f64_bits(d) == f64s[i]);
    }
    ck_assert_uint_eq(qrpc_reader_left(&r), 0);

    /* And as values: -0.0 keeps its sign, NaN stays NaN. */
    b.len = 0;
    ck_assert_int_eq(qrpc_put_f64(&b, -0.0), 0);
    ck_assert_int_eq(qrpc_put_f64(&b, NAN), 0);
    qrpc_reader_init(&r, b.data, b.len);
    {
        double z, n;

        ck_assert_int_eq(qrpc_get_f64(&r, &z), 0);
        ck_assert_int_eq(qrpc_get_f64(&r, &n), 0);
        ck_assert(z == 0.0 && signbit(z));
        ck_assert(isnan(n));
    }
    qrpc_buf_free(&b);
}
END_TEST

START_TEST(test_roundtrip_strings_bytes)
{
    static const char *strs[] = { "", "x", "hello, world", "caf\xc3\xa9 \xe2\x82\xac" };
    qrpc_buf b = { NULL, 0, 0 };
    qrpc_bytes in, out;
    qrpc_reader r;
    char *big, *s;
    uint8_t all[256];
    size_t i;

    big = malloc(100001);
    ck_assert_ptr_nonnull(big);
    for (i = 0; i < 100000; i++)
        big[i] = (char)('a' + i % 26);
    big[100000] = '\0';
    for (i = 0; i < 256; i++)
        all[i] = (uint8_t)i;                /* NUL bytes are fine in bytes */

    for (i = 0; i < sizeof strs / sizeof strs[0]; i++)
        ck_assert_int_eq(qrpc_put_string(&b, strs[i], 0), 0);
    ck_assert_int_eq(qrpc_put_string(&b, NULL, 0), 0);     /* as "" */
    ck_assert_int_eq(qrpc_put_string(&b, big, 0), 0);
    in.data = NULL;
    in.len = 0;
    ck_assert_int_eq(qrpc_put_bytes(&b, &in, 0), 0);
    in.data = all;
    in.len = sizeof all;
    ck_assert_int_eq(qrpc_put_bytes(&b, &in, 256), 0);
    ck_assert_int_eq(qrpc_put_count(&b, 0, 0), 0);
    ck_assert_int_eq(qrpc_put_count(&b, UINT32_MAX, 0), 0);

    qrpc_reader_init(&r, b.data, b.len);
    for (i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        ck_assert_int_eq(qrpc_get_string(&r, &s, 0), 0);
        ck_assert_str_eq(s, strs[i]);
        free(s);
    }
    ck_assert_int_eq(qrpc_get_string(&r, &s, 0), 0);
    ck_assert_str_eq(s, "");
    free(s);
    ck_assert_int_eq(qrpc_get_string(&r, &s, 100000), 0);
    ck_assert_str_eq(s, big);
    free(s);
    ck_assert_int_eq(qrpc_get_bytes(&r, &out, 0), 0);
    ck_assert_ptr_null(out.data);           /* empty bytes hold no storage */
    ck_assert_uint_eq(out.len, 0);
    ck_assert_int_eq(qrpc_get_bytes(&r, &out, 256), 0);
    ck_assert_uint_eq(out.len, 256);
    ck_assert_int_eq(memcmp(out.data, all, 256), 0);
    qrpc_bytes_free(&out);
    {
        uint32_t c;

        ck_assert_int_eq(qrpc_get_count(&r, &c, 0, 0), 0);
        ck_assert_uint_eq(c, 0);
        /* 2^32-1 elements of 0 bytes: only a bound could refuse it. */
        ck_assert_int_eq(qrpc_get_count(&r, &c, 0, 0), 0);
        ck_assert_uint_eq(c, UINT32_MAX);
    }
    ck_assert_uint_eq(qrpc_reader_left(&r), 0);
    free(big);
    qrpc_buf_free(&b);
}
END_TEST

/* ---- truncation --------------------------------------------------------- */

/*
 * One decoder per get: decodes one value from r and frees whatever it got.
 * Returns the get's status.
 */
typedef int (*decode_fn)(qrpc_reader *r);

static int dec_u8(qrpc_reader *r) { uint8_t v; return qrpc_get_u8(r, &v); }
static int dec_u16(qrpc_reader *r) { uint16_t v; return qrpc_get_u16(r, &v); }
static int dec_u32(qrpc_reader *r) { uint32_t v; return qrpc_get_u32(r, &v); }
static int dec_u64(qrpc_reader *r) { uint64_t v; return qrpc_get_u64(r, &v); }
static int dec_i8(qrpc_reader *r) { int8_t v; return qrpc_get_i8(r, &v); }
static int dec_i16(qrpc_reader *r) { int16_t v; return qrpc_get_i16(r, &v); }
static int dec_i32(qrpc_reader *r) { int32_t v; return qrpc_get_i32(r, &v); }
static int dec_i64(qrpc_reader *r) { int64_t v; return qrpc_get_i64(r, &v); }
static int dec_f32(qrpc_reader *r) { float v; return qrpc_get_f32(r, &v); }
static int dec_f64(qrpc_reader *r) { double v; return qrpc_get_f64(r, &v); }
static int dec_bool(qrpc_reader *r) { bool v; return qrpc_get_bool(r, &v); }
static int dec_present(qrpc_reader *r) { bool v; return qrpc_get_present(r, &v); }

static int dec_raw(qrpc_reader *r)
{
    uint8_t v[5];

    return qrpc_get_raw(r, v, sizeof v);
}

static int dec_string(qrpc_reader *r)
{
    char *s = (char *)&s;               /* must come back NULL on failure */
    int rc = qrpc_get_string(r, &s, 0);

    if (rc != 0)
        ck_assert_ptr_null(s);
    free(s);
    return rc;
}

static int dec_bytes(qrpc_reader *r)
{
    qrpc_bytes v = { (uint8_t *)&v, 99 };
    int rc = qrpc_get_bytes(r, &v, 0);

    if (rc != 0) {
        ck_assert_ptr_null(v.data);
        ck_assert_uint_eq(v.len, 0);
    }
    qrpc_bytes_free(&v);
    return rc;
}

static int dec_bytes_view(qrpc_reader *r)
{
    qrpc_bytes v = { (uint8_t *)&v, 99 };
    int rc = qrpc_get_bytes_view(r, &v, 0);

    if (rc != 0) {
        ck_assert_ptr_null(v.data);
        ck_assert_uint_eq(v.len, 0);
    }
    return rc;                  /* a view is never freed */
}

/* A count of 3 elements of at least 2 bytes, and the elements. */
static int dec_list(qrpc_reader *r)
{
    uint32_t n, i;
    uint16_t e;
    int rc = qrpc_get_count(r, &n, 10, 2);

    for (i = 0; rc == 0 && i < n; i++)
        rc = qrpc_get_u16(r, &e);
    return rc;
}

static const struct {
    const char *name;
    decode_fn dec;
    uint8_t enc[16];
    size_t len;
} cases[] = {
    { "u8", dec_u8, { 0xab }, 1 },
    { "u16", dec_u16, { 1, 2 }, 2 },
    { "u32", dec_u32, { 1, 2, 3, 4 }, 4 },
    { "u64", dec_u64, { 1, 2, 3, 4, 5, 6, 7, 8 }, 8 },
    { "i8", dec_i8, { 0x80 }, 1 },
    { "i16", dec_i16, { 0, 0x80 }, 2 },
    { "i32", dec_i32, { 0, 0, 0, 0x80 }, 4 },
    { "i64", dec_i64, { 0, 0, 0, 0, 0, 0, 0, 0x80 }, 8 },
    { "f32", dec_f32, { 0, 0, 0xc0, 0x7f }, 4 },
    { "f64", dec_f64, { 0, 0, 0, 0, 0, 0, 0xf8, 0x7f }, 8 },
    { "bool", dec_bool, { 1 }, 1 },
    { "present", dec_present, { 0 }, 1 },
    { "raw", dec_raw, { 1, 2, 3, 4, 5 }, 5 },
    { "string", dec_string, { 5, 0, 0, 0, 'h', 'e', 'l', 'l', 'o' }, 9 },
    { "empty string", dec_string, { 0, 0, 0, 0 }, 4 },
    { "bytes", dec_bytes, { 3, 0, 0, 0, 0, 1, 0 }, 7 },
    { "bytes view", dec_bytes_view, { 3, 0, 0, 0, 0, 1, 0 }, 7 },
    { "list", dec_list, { 3, 0, 0, 0, 1, 0, 2, 0, 3, 0 }, 10 },
};

START_TEST(test_truncation)
{
    size_t i, cut;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (cut = 0; cut <= cases[i].len; cut++) {
            uint8_t *p = heap_copy(cases[i].enc, cut);
            qrpc_reader r;
            int rc;

            qrpc_reader_init(&r, p, cut);
            rc = cases[i].dec(&r);
            if (cut < cases[i].len) {
                ck_assert_msg(rc == QRPC_EDECODE, "%s cut at %zu: %d",
                              cases[i].name, cut, rc);
            } else {
                ck_assert_msg(rc == 0, "%s whole: %d", cases[i].name, rc);
                ck_assert_uint_eq(qrpc_reader_left(&r), 0);
            }
            free(p);
        }
    }
}
END_TEST

START_TEST(test_failed_get_leaves_reader)
{
    static const uint8_t shortstr[] = { 9, 0, 0, 0, 'a', 'b' };
    static const uint8_t nul[] = { 3, 0, 0, 0, 'a', 0, 'b' };
    qrpc_reader r;
    qrpc_bytes v;
    uint32_t n = 77;
    char *s;

    qrpc_reader_init(&r, shortstr, sizeof shortstr);
    ck_assert_int_eq(qrpc_get_string(&r, &s, 0), QRPC_EDECODE);
    ck_assert_ptr_eq(r.p, shortstr);
    ck_assert_int_eq(qrpc_get_bytes(&r, &v, 0), QRPC_EDECODE);
    ck_assert_ptr_eq(r.p, shortstr);
    ck_assert_int_eq(qrpc_get_count(&r, &n, 0, 1), QRPC_EDECODE);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_eq(r.p, shortstr);
    qrpc_reader_init(&r, nul, sizeof nul);
    ck_assert_int_eq(qrpc_get_string(&r, &s, 0), QRPC_EDECODE);
    ck_assert_ptr_eq(r.p, nul);
    /* The reader that failed is still usable: as bytes it decodes. */
    ck_assert_int_eq(qrpc_get_bytes(&r, &v, 0), 0);
    ck_assert_uint_eq(v.len, 3);
    qrpc_bytes_free(&v);
}
END_TEST

/* ---- invalid values ----------------------------------------------------- */

START_TEST(test_bool_bytes)
{
    unsigned v;

    for (v = 0; v < 256; v++) {
        uint8_t byte = (uint8_t)v;
        qrpc_reader r;
        bool b = false, p = false;

        qrpc_reader_init(&r, &byte, 1);
        ck_assert_int_eq(qrpc_get_bool(&r, &b), v <= 1 ? 0 : QRPC_EDECODE);
        qrpc_reader_init(&r, &byte, 1);
        ck_assert_int_eq(qrpc_get_present(&r, &p), v <= 1 ? 0 : QRPC_EDECODE);
        if (v <= 1)
            ck_assert(b == (v == 1) && p == (v == 1));
    }
}
END_TEST

START_TEST(test_string_with_nul)
{
    static const uint8_t at[3][8] = {
        { 3, 0, 0, 0, 0, 'a', 'b' },
        { 3, 0, 0, 0, 'a', 0, 'b' },
        { 3, 0, 0, 0, 'a', 'b', 0 },
    };
    size_t i;

    for (i = 0; i < 3; i++) {
        uint8_t *p = heap_copy(at[i], 7);
        qrpc_reader r;
        char *s = (char *)&s;

        qrpc_reader_init(&r, p, 7);
        ck_assert_int_eq(qrpc_get_string(&r, &s, 0), QRPC_EDECODE);
        ck_assert_ptr_null(s);
        free(p);
    }
}
END_TEST

/* ---- bounds ------------------------------------------------------------- */

START_TEST(test_put_bounds)
{
    qrpc_buf b = { NULL, 0, 0 };
    qrpc_bytes v = { (uint8_t *)"12345", 5 };

    ck_assert_int_eq(qrpc_put_u8(&b, 0xaa), 0);
    ck_assert_int_eq(qrpc_put_string(&b, "hello", 5), 0);
    ck_assert_uint_eq(b.len, 1 + 4 + 5);
    ck_assert_int_eq(qrpc_put_string(&b, "hello", 4), QRPC_EBOUND);
    ck_assert_int_eq(qrpc_put_bytes(&b, &v, 5), 0);
    ck_assert_int_eq(qrpc_put_bytes(&b, &v, 1), QRPC_EBOUND);
    ck_assert_int_eq(qrpc_put_count(&b, 10, 10), 0);
    ck_assert_int_eq(qrpc_put_count(&b, 11, 10), QRPC_EBOUND);
    ck_assert_uint_eq(b.len, 1 + 9 + 9 + 4);    /* failures wrote nothing */
    ck_assert_int_eq(qrpc_put_string(&b, "", 1), 0);
    ck_assert_int_eq(qrpc_put_string(&b, NULL, 1), 0);
    ck_assert_int_eq(qrpc_put_count(&b, UINT32_MAX, 0), 0);
#if SIZE_MAX > UINT32_MAX
    ck_assert_int_eq(qrpc_put_count(&b, (size_t)UINT32_MAX + 1, 0), QRPC_EBOUND);
    {
        /* Over 2^32-1 bytes cannot be encoded; caught before reading them. */
        qrpc_bytes huge = { (uint8_t *)"x", (size_t)UINT32_MAX + 1 };

        ck_assert_int_eq(qrpc_put_bytes(&b, &huge, 0), QRPC_EBOUND);
    }
#endif
    ck_assert_uint_eq(b.len, 1 + 9 + 9 + 4 + 4 + 4 + 4);
    /* the head: the length qrpc_put_bytes writes, and not the bytes */
    ck_assert_int_eq(qrpc_put_bytes_head(&b, &v, 5), 0);
    ck_assert_uint_eq(b.len, 1 + 9 + 9 + 4 + 4 + 4 + 4 + 4);
    ck_assert_int_eq(memcmp(b.data + b.len - 4, "\x05\0\0\0", 4), 0);
    ck_assert_int_eq(qrpc_put_bytes_head(&b, &v, 4), QRPC_EBOUND);
    ck_assert_uint_eq(b.len, 1 + 9 + 9 + 4 + 4 + 4 + 4 + 4);
    v.data = NULL;                  /* 5 bytes at NULL */
    ck_assert_int_eq(qrpc_put_bytes(&b, &v, 0), QRPC_EINVAL);
    ck_assert_int_eq(qrpc_put_bytes(&b, NULL, 0), QRPC_EINVAL);
    ck_assert_int_eq(qrpc_put_bytes_head(&b, &v, 0), QRPC_EINVAL);
    ck_assert_int_eq(qrpc_put_bytes_head(&b, NULL, 0), QRPC_EINVAL);
    ck_assert_uint_eq(b.len, 1 + 9 + 9 + 4 + 4 + 4 + 4 + 4);
    qrpc_buf_free(&b);
}
END_TEST

START_TEST(test_get_bounds)
{
    static const uint8_t five[] = { 5, 0, 0, 0, 'a', 'b', 'c', 'd', 'e' };
    qrpc_reader r;
    qrpc_bytes v;
    uint32_t n;
    char *s;

    qrpc_reader_init(&r, five, sizeof five);
    ck_assert_int_eq(qrpc_get_string(&r, &s, 4), QRPC_EDECODE);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(qrpc_get_bytes(&r, &v, 4), QRPC_EDECODE);
    ck_assert_ptr_null(v.data);
    ck_assert_int_eq(qrpc_get_count(&r, &n, 4, 0), QRPC_EDECODE);
    ck_assert_int_eq(qrpc_get_count(&r, &n, 5, 1), 0);
    ck_assert_uint_eq(n, 5);
    qrpc_reader_init(&r, five, sizeof five);
    ck_assert_int_eq(qrpc_get_string(&r, &s, 5), 0);
    ck_assert_str_eq(s, "abcde");
    free(s);
}
END_TEST

/* A view points into the reader's own bytes, and fails as the copy does. */
START_TEST(test_bytes_view)
{
    static const uint8_t enc[] = { 3, 0, 0, 0, 'x', 'y', 'z', 0, 0, 0, 0, 9, 0, 0, 0, 'a' };
    qrpc_reader r;
    qrpc_bytes v;

    qrpc_reader_init(&r, enc, sizeof enc);
    ck_assert_int_eq(qrpc_get_bytes_view(&r, &v, 2), QRPC_EDECODE);     /* over bound */
    ck_assert_ptr_null(v.data);
    ck_assert_ptr_eq(r.p, enc);
    ck_assert_int_eq(qrpc_get_bytes_view(&r, &v, 3), 0);
    ck_assert_ptr_eq(v.data, enc + 4);
    ck_assert_uint_eq(v.len, 3);
    ck_assert_ptr_eq(r.p, enc + 7);
    ck_assert_int_eq(qrpc_get_bytes_view(&r, &v, 0), 0);                /* empty */
    ck_assert_ptr_null(v.data);
    ck_assert_uint_eq(v.len, 0);
    ck_assert_int_eq(qrpc_get_bytes_view(&r, &v, 0), QRPC_EDECODE);     /* 9 declared, 1 left */
    ck_assert_ptr_null(v.data);
    ck_assert_ptr_eq(r.p, enc + 11);
    ck_assert_uint_eq(qrpc_reader_left(&r), 5);
}
END_TEST

/* ---- counts that cannot fit --------------------------------------------- */

START_TEST(test_count_limits)
{
    static const struct {
        uint32_t count;
        uint32_t min_elem;
        size_t extra;           /* bytes after the count */
        int want;
    } t[] = {
        { 3, 4, 12, 0 },
        { 3, 4, 11, QRPC_EDECODE },
        { 0, UINT32_MAX, 0, 0 },
        { 1, UINT32_MAX, 16, QRPC_EDECODE },
        { UINT32_MAX, 1, 3, QRPC_EDECODE },
        { UINT32_MAX, 0, 0, 0 },                /* zero-size elements */
        /* Products that a 32-bit multiplication would wrap to 0 or less. */
        { 0x10000u, 0x10000u, 0, QRPC_EDECODE },
        { 0x80000000u, 2, 0, QRPC_EDECODE },
        { 0x80000000u, 0x80000000u, 16, QRPC_EDECODE },
        { UINT32_MAX, UINT32_MAX, 16, QRPC_EDECODE },
        { 0x40000001u, 4, 4, QRPC_EDECODE },    /* wraps to 4 */
    };
    size_t i;

    for (i = 0; i < sizeof t / sizeof t[0]; i++) {
        size_t len = 4 + t[i].extra;
        uint8_t *p = calloc(1, len);
        qrpc_reader r;
        uint32_t n = 12345;

        ck_assert_ptr_nonnull(p);
        memcpy(p, &(uint8_t[4]){ (uint8_t)t[i].count, (uint8_t)(t[i].count >> 8),
                                 (uint8_t)(t[i].count >> 16),
                                 (uint8_t)(t[i].count >> 24) }, 4);
        qrpc_reader_init(&r, p, len);
        ck_assert_msg(qrpc_get_count(&r, &n, 0, t[i].min_elem) == t[i].want,
                      "case %zu", i);
        if (t[i].want == 0) {
            ck_assert_uint_eq(n, t[i].count);
            ck_assert_uint_eq(qrpc_reader_left(&r), t[i].extra);
        } else {
            ck_assert_uint_eq(n, 0);
            ck_assert_uint_eq(qrpc_reader_left(&r), len);
        }
        free(p);
    }
}
END_TEST

/*
 * A 4 GiB length with a few bytes behind it must be refused before any
 * allocation.  Shown by running the gets in a child whose address space is
 * capped: an implementation that allocated first would see ENOMEM there
 * instead of QRPC_EDECODE.  Sanitizers map terabytes of shadow memory, so
 * their builds skip the cap (the result must still be QRPC_EDECODE).
 */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define WIRE_CAP_AS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define WIRE_CAP_AS 0
#endif
#endif
#ifndef WIRE_CAP_AS
#define WIRE_CAP_AS 1
#endif

static int huge_lengths(void)
{
    static const uint8_t huge[] = { 0xf0, 0xff, 0xff, 0xff, 'a', 'b', 'c' };
    qrpc_reader r;
    qrpc_bytes v;
    uint32_t n;
    char *s;

    qrpc_reader_init(&r, huge, sizeof huge);
    if (qrpc_get_string(&r, &s, 0) != QRPC_EDECODE || s != NULL)
        return 1;
    if (qrpc_get_bytes(&r, &v, 0) != QRPC_EDECODE || v.data != NULL)
        return 2;
    if (qrpc_get_count(&r, &n, 0, 1) != QRPC_EDECODE)
        return 3;
    return 0;
}

START_TEST(test_no_alloc_for_huge_lengths)
{
    pid_t pid;
    int status;

    ck_assert_int_eq(huge_lengths(), 0);
    if (!WIRE_CAP_AS || getenv("QRPC_TEST_NO_RLIMIT") != NULL)
        return;
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct rlimit rl = { (rlim_t)1 << 30, (rlim_t)1 << 30 };    /* 1 GiB */

        if (setrlimit(RLIMIT_AS, &rl) != 0)
            _exit(10);
        _exit(huge_lengths());
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

/* ---- buffers ------------------------------------------------------------ */

START_TEST(test_buffer_growth)
{
    size_t size, i, reallocs = 0;

    /* From empty to many sizes, in one step and in random steps. */
    for (size = 0; size < 70000; size = size * 3 / 2 + 1) {
        qrpc_buf b;
        uint8_t *chunk = malloc(size + 1);
        size_t done = 0;

        ck_assert_ptr_nonnull(chunk);
        for (i = 0; i < size; i++)
            chunk[i] = (uint8_t)(i * 7 + size);
        qrpc_buf_init(&b);
        ck_assert_int_eq(qrpc_put_raw(&b, chunk, size), 0);
        ck_assert_uint_ge(b.cap, b.len);
        assert_bytes(&b, chunk, size);
        qrpc_buf_free(&b);

        while (done < size) {
            size_t step = (size_t)(rng() % 300) + 1;

            if (step > size - done)
                step = size - done;
            ck_assert_int_eq(qrpc_put_raw(&b, chunk + done, step), 0);
            done += step;
            ck_assert_uint_ge(b.cap, b.len);
        }
        assert_bytes(&b, chunk, size);
        qrpc_buf_free(&b);
        free(chunk);
    }

    /* Appending a byte at a time grows geometrically. */
    {
        qrpc_buf b = { NULL, 0, 0 };
        size_t cap = 0;

        for (i = 0; i < 1000000; i++) {
            ck_assert_int_eq(qrpc_put_u8(&b, (uint8_t)i), 0);
            if (b.cap != cap) {
                ck_assert_uint_ge(b.cap, 2 * cap);
                cap = b.cap;
                reallocs++;
            }
        }
        ck_assert_uint_le(reallocs, 20);
        for (i = 0; i < 1000000; i += 4099)
            ck_assert_uint_eq(b.data[i], (uint8_t)i);
        qrpc_buf_free(&b);
    }
}
END_TEST

START_TEST(test_buffer_limits)
{
    qrpc_buf b = { NULL, 0, 0 };
    uint8_t *data;

    ck_assert_int_eq(qrpc_buf_reserve(&b, 0), 0);
    ck_assert_int_eq(qrpc_put_raw(&b, NULL, 0), 0);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_int_eq(qrpc_put_u32(&b, 7), 0);
    data = b.data;
    /* Refused without touching the buffer: over 4 GiB, and size_t overflow. */
    ck_assert_int_eq(qrpc_buf_reserve(&b, ((size_t)1 << 32) - 3), QRPC_ETOOBIG);
    ck_assert_int_eq(qrpc_buf_reserve(&b, SIZE_MAX), QRPC_ETOOBIG);
    ck_assert_int_eq(qrpc_buf_reserve(&b, SIZE_MAX - 3), QRPC_ETOOBIG);
    ck_assert_ptr_eq(b.data, data);
    ck_assert_uint_eq(b.len, 4);
    qrpc_buf_free(&b);
    qrpc_buf_free(&b);                  /* twice is harmless */
}
END_TEST

START_TEST(test_depth)
{
    qrpc_reader r;
    unsigned i;

    qrpc_reader_init(&r, NULL, 0);
    ck_assert_uint_eq(r.max_depth, QRPC_DEFAULT_MAX_DEPTH);
    r.max_depth = 3;
    for (i = 0; i < 3; i++)
        ck_assert_int_eq(qrpc_reader_enter(&r), 0);
    ck_assert_int_eq(qrpc_reader_enter(&r), QRPC_EDECODE);
    ck_assert_uint_eq(r.depth, 3);
    qrpc_reader_leave(&r);
    ck_assert_int_eq(qrpc_reader_enter(&r), 0);
    for (i = 0; i < 3; i++)
        qrpc_reader_leave(&r);
    ck_assert_uint_eq(r.depth, 0);
    r.max_depth = 0;
    ck_assert_int_eq(qrpc_reader_enter(&r), QRPC_EDECODE);
    qrpc_reader_init(&r, NULL, 0);
    for (i = 0; i < QRPC_DEFAULT_MAX_DEPTH; i++)
        ck_assert_int_eq(qrpc_reader_enter(&r), 0);
    ck_assert_int_eq(qrpc_reader_enter(&r), QRPC_EDECODE);
}
END_TEST

/* ---- helpers for generated code ----------------------------------------- */

START_TEST(test_copy_equal_free)
{
    qrpc_bytes a = { (uint8_t *)"a\0c", 3 }, e = { NULL, 0 }, c, d;
    char *s;

    ck_assert_int_eq(qrpc_bytes_copy(&c, &a), 0);
    ck_assert_ptr_ne(c.data, a.data);
    ck_assert(qrpc_bytes_equal(&a, &c));
    c.data[1] = 'b';
    ck_assert(!qrpc_bytes_equal(&a, &c));
    ck_assert_int_eq(qrpc_bytes_copy(&d, &e), 0);
    ck_assert_ptr_null(d.data);
    ck_assert(qrpc_bytes_equal(&d, &e));
    ck_assert(!qrpc_bytes_equal(&d, &a));
    qrpc_bytes_free(&c);
    ck_assert_ptr_null(c.data);
    ck_assert_uint_eq(c.len, 0);
    qrpc_bytes_free(&c);
    qrpc_bytes_free(&d);

    ck_assert_int_eq(qrpc_string_copy(&s, "copy me"), 0);
    ck_assert_str_eq(s, "copy me");
    free(s);
    s = (char *)&s;
    ck_assert_int_eq(qrpc_string_copy(&s, NULL), 0);
    ck_assert_ptr_null(s);
    ck_assert(qrpc_string_equal(NULL, ""));
    ck_assert(qrpc_string_equal("", NULL));
    ck_assert(qrpc_string_equal(NULL, NULL));
    ck_assert(qrpc_string_equal("ab", "ab"));
    ck_assert(!qrpc_string_equal("ab", "abc"));
    ck_assert(!qrpc_string_equal("a", NULL));
}
END_TEST

static Suite *wire_suite(void)
{
    Suite *s = suite_create("wire");
    TCase *tc = tcase_create("wire");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_roundtrip_integers);
    tcase_add_test(tc, test_little_endian_bytes);
    tcase_add_test(tc, test_roundtrip_floats);
    tcase_add_test(tc, test_roundtrip_strings_bytes);
    tcase_add_test(tc, test_truncation);
    tcase_add_test(tc, test_failed_get_leaves_reader);
    tcase_add_test(tc, test_bool_bytes);
    tcase_add_test(tc, test_string_with_nul);
    tcase_add_test(tc, test_put_bounds);
    tcase_add_test(tc, test_get_bounds);
    tcase_add_test(tc, test_bytes_view);
    tcase_add_test(tc, test_count_limits);
    tcase_add_test(tc, test_no_alloc_for_huge_lengths);
    tcase_add_test(tc, test_buffer_growth);
    tcase_add_test(tc, test_buffer_limits);
    tcase_add_test(tc, test_depth);
    tcase_add_test(tc, test_copy_equal_free);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(wire_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
