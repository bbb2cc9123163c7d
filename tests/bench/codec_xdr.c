/*
 * codec_xdr.c - the codec benchmark's XDR loop: the xdr_Rec routine that
 * rpcgen generates from rec.x (at build time, into the build directory),
 * over libtirpc's xdrmem streams.
 *
 * One op is what qrpc's op is: encode into a reused buffer, decode into a
 * fresh zeroed Rec (xdr_Rec allocates its string and opaque), read the same
 * fields into a checksum, xdr_free.  Not a test of libtirpc.
 */
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "rec.h"

/* Rec encodes to 372 bytes in XDR; a fixed buffer is what xdrmem needs. */
static char xdr_wire[1024];
static Rec xdr_in;

static size_t xdr_rec_setup(size_t ref_bytes)
{
    XDR x;
    size_t len;
    int i;

    (void)ref_bytes;
    xdr_in.a = 1;
    xdr_in.b = INT64_C(0x0123456789ABCDEF);
    xdr_in.s = malloc(33);
    xdr_in.blob.blob_val = malloc(256);
    if (!xdr_in.s || !xdr_in.blob.blob_val)
        codec_fail("xdr", "malloc", 0);
    for (i = 0; i < 32; i++)
        xdr_in.s[i] = (char)('a' + i % 26);
    xdr_in.s[32] = '\0';
    for (i = 0; i < 256; i++)
        xdr_in.blob.blob_val[i] = (char)(3 + i * 7);
    xdr_in.blob.blob_len = 256;
    for (i = 0; i < 16; i++)
        xdr_in.v[i] = i * 1000003;
    xdrmem_create(&x, xdr_wire, sizeof xdr_wire, XDR_ENCODE);
    if (!xdr_Rec(&x, &xdr_in))
        codec_fail("xdr", "xdr_Rec encode", 0);
    len = xdr_getpos(&x);
    xdr_destroy(&x);
    return len;
}

static uint64_t xdr_rec_batch(uint64_t n)
{
    uint64_t sum = 0, i;

    for (i = 0; i < n; i++) {
        Rec out;
        XDR x;
        u_int len;

        xdr_in.a = (int)i;
        xdrmem_create(&x, xdr_wire, sizeof xdr_wire, XDR_ENCODE);
        if (!xdr_Rec(&x, &xdr_in))
            codec_fail("xdr", "xdr_Rec encode", 0);
        len = xdr_getpos(&x);
        xdr_destroy(&x);

        memset(&out, 0, sizeof out);
        xdrmem_create(&x, xdr_wire, len, XDR_DECODE);
        if (!xdr_Rec(&x, &out) || xdr_getpos(&x) != len)
            codec_fail("xdr", "xdr_Rec decode", 0);
        xdr_destroy(&x);
        sum += (uint64_t)(uint32_t)out.a + (uint64_t)out.b +
               (uint8_t)out.s[31] + (uint8_t)out.blob.blob_val[255] +
               (uint32_t)out.v[15];
        xdr_free((xdrproc_t)xdr_Rec, (char *)&out);
    }
    return sum;
}

static void xdr_rec_teardown(void)
{
    free(xdr_in.s);
    free(xdr_in.blob.blob_val);
    memset(&xdr_in, 0, sizeof xdr_in);
}

const codec_sys codec_xdr_rec = {
    "xdr", "codec-rec",
    "rpcgen's xdr_Rec over xdrmem (libtirpc), decode into a fresh Rec, xdr_free",
    xdr_rec_setup, xdr_rec_batch, xdr_rec_teardown
};
