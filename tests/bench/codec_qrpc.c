/*
 * codec_qrpc.c - the codec benchmark's qrpc loops: the code qrpcgen
 * generates for Rec and Mixed (bench.qidl), over libqrpc.a's wire functions.
 *
 * The send buffer is reused across ops, as a sender would reuse it; every
 * decode goes into a fresh value that is freed again, as a receiver would.
 * Not a correctness test: a failure only aborts the benchmark.
 */
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "codec.h"

static bench_Rec rec_in;
static bench_Mixed mixed_in;
static qrpc_buf rec_buf, mixed_buf;  /* each system its own send buffer */

static uint8_t *codec_filled(size_t n, uint8_t seed)
{
    uint8_t *p = malloc(n);
    size_t i;

    if (!p)
        codec_fail("qrpc", "malloc", 0);
    for (i = 0; i < n; i++)
        p[i] = (uint8_t)(seed + i * 7);
    return p;
}

static char *codec_string(size_t n, char first)
{
    char *s = malloc(n + 1);
    size_t i;

    if (!s)
        codec_fail("qrpc", "malloc", 0);
    for (i = 0; i < n; i++)
        s[i] = (char)(first + (char)(i % 26));
    s[n] = '\0';
    return s;
}

static size_t codec_encoded_size(int rc, const qrpc_buf *b, const char *what)
{
    if (rc != 0)
        codec_fail("qrpc", what, rc);
    return b->len;
}

/* ---- Rec ------------------------------------------------------------------ */

static size_t qrpc_rec_setup(size_t ref_bytes)
{
    int i;

    (void)ref_bytes;
    rec_in.a = 1;
    rec_in.b = INT64_C(0x0123456789ABCDEF);
    rec_in.s = codec_string(32, 'a');
    rec_in.blob.data = codec_filled(256, 3);
    rec_in.blob.len = 256;
    for (i = 0; i < 16; i++)
        rec_in.v[i] = i * 1000003;
    qrpc_buf_init(&rec_buf);
    return codec_encoded_size(bench_Rec_encode(&rec_buf, &rec_in), &rec_buf,
                              "Rec encode");
}

static uint64_t qrpc_rec_batch(uint64_t n)
{
    uint64_t sum = 0, i;

    for (i = 0; i < n; i++) {
        bench_Rec out;
        qrpc_reader r;
        int rc;

        rec_in.a = (int32_t)i;
        rec_buf.len = 0;
        rc = bench_Rec_encode(&rec_buf, &rec_in);
        if (rc != 0)
            codec_fail("qrpc", "Rec encode", rc);
        qrpc_reader_init(&r, rec_buf.data, rec_buf.len);
        rc = bench_Rec_decode(&r, &out);
        if (rc != 0 || qrpc_reader_left(&r) != 0)
            codec_fail("qrpc", "Rec decode", rc);
        sum += (uint64_t)(uint32_t)out.a + (uint64_t)out.b +
               (uint8_t)out.s[31] + out.blob.data[255] + (uint32_t)out.v[15];
        bench_Rec_free(&out);
    }
    return sum;
}

static void qrpc_rec_teardown(void)
{
    bench_Rec_free(&rec_in);
    qrpc_buf_free(&rec_buf);
}

const codec_sys codec_qrpc_rec = {
    "qrpc", "codec-rec",
    "qrpcgen's Rec_encode, then Rec_decode into a fresh value and Rec_free",
    qrpc_rec_setup, qrpc_rec_batch, qrpc_rec_teardown
};

/* ---- Mixed ---------------------------------------------------------------- */

static size_t qrpc_mixed_setup(size_t ref_bytes)
{
    size_t i;

    (void)ref_bytes;
    mixed_in.id = 42;
    mixed_in.stamp = INT64_C(1700000000123456789);
    mixed_in.flag = true;
    mixed_in.name = codec_string(16, 'k');
    mixed_in.payload.data = codec_filled(64, 9);
    mixed_in.payload.len = 64;
    mixed_in.values.items = malloc(16 * sizeof *mixed_in.values.items);
    if (!mixed_in.values.items)
        codec_fail("qrpc", "malloc", 0);
    mixed_in.values.len = 16;
    for (i = 0; i < 16; i++)
        mixed_in.values.items[i] = (int32_t)(i * i * 31);
    mixed_in.inner = calloc(1, sizeof *mixed_in.inner);
    if (!mixed_in.inner)
        codec_fail("qrpc", "malloc", 0);
    mixed_in.inner->id = 7;
    mixed_in.inner->name = codec_string(8, 'q');
    qrpc_buf_init(&mixed_buf);
    return codec_encoded_size(bench_Mixed_encode(&mixed_buf, &mixed_in),
                              &mixed_buf, "Mixed encode");
}

static uint64_t qrpc_mixed_batch(uint64_t n)
{
    uint64_t sum = 0, i;

    for (i = 0; i < n; i++) {
        bench_Mixed out;
        qrpc_reader r;
        int rc;

        mixed_in.id = (uint32_t)i;
        mixed_buf.len = 0;
        rc = bench_Mixed_encode(&mixed_buf, &mixed_in);
        if (rc != 0)
            codec_fail("qrpc", "Mixed encode", rc);
        qrpc_reader_init(&r, mixed_buf.data, mixed_buf.len);
        rc = bench_Mixed_decode(&r, &out);
        if (rc != 0 || qrpc_reader_left(&r) != 0 || !out.inner)
            codec_fail("qrpc", "Mixed decode", rc);
        sum += out.id + (uint64_t)out.stamp + (uint8_t)out.name[0] +
               out.payload.data[63] + (uint32_t)out.values.items[15] +
               out.inner->id + (uint8_t)out.inner->name[7];
        bench_Mixed_free(&out);
    }
    return sum;
}

static void qrpc_mixed_teardown(void)
{
    bench_Mixed_free(&mixed_in);
    qrpc_buf_free(&mixed_buf);
}

const codec_sys codec_qrpc_mixed = {
    "qrpc", "codec-mixed",
    "Mixed (ints, 16-char string, 64 bytes, list of 16 i32, optional struct)",
    qrpc_mixed_setup, qrpc_mixed_batch, qrpc_mixed_teardown
};
