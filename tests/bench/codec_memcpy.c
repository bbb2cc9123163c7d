/*
 * codec_memcpy.c - the codec benchmark's ceiling: no codec at all, only the
 * bytes an encode and a decode would have to move.
 *
 * One op copies qrpc's encoded size of Rec (372 bytes) from the value into
 * a wire buffer and from there into the receiver's buffer -- two memcpy
 * calls, the least any encode plus decode of those bytes can cost.  The
 * size is only known at run time and the buffers escape through empty asm
 * statements, so the compiler must do both copies every time.
 */
#include <stdlib.h>
#include <string.h>

#include "codec.h"

static uint8_t *mc_src, *mc_wire, *mc_dst;
static size_t mc_len;

/* Tells the compiler that p's bytes are read and written behind its back. */
static inline void mc_escape(void *p)
{
    __asm__ __volatile__("" : : "r"(p) : "memory");
}

static size_t memcpy_rec_setup(size_t ref_bytes)
{
    size_t i;

    mc_len = ref_bytes;
    mc_src = malloc(mc_len);
    mc_wire = malloc(mc_len);
    mc_dst = malloc(mc_len);
    if (!mc_src || !mc_wire || !mc_dst)
        codec_fail("memcpy", "malloc", 0);
    for (i = 0; i < mc_len; i++)
        mc_src[i] = (uint8_t)(i * 13);
    return mc_len;
}

static uint64_t memcpy_rec_batch(uint64_t n)
{
    uint64_t sum = 0, i;

    for (i = 0; i < n; i++) {
        mc_src[0] = (uint8_t)i;
        memcpy(mc_wire, mc_src, mc_len);
        mc_escape(mc_wire);
        memcpy(mc_dst, mc_wire, mc_len);
        mc_escape(mc_dst);
        sum += mc_dst[0] + mc_dst[mc_len - 1];
    }
    return sum;
}

static void memcpy_rec_teardown(void)
{
    free(mc_src);
    free(mc_wire);
    free(mc_dst);
}

const codec_sys codec_memcpy_rec = {
    "memcpy", "codec-rec",
    "the encoded bytes of Rec copied out and back (two memcpy calls)",
    memcpy_rec_setup, memcpy_rec_batch, memcpy_rec_teardown
};
