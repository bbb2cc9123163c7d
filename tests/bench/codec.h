/*
 * codec.h - the codec benchmark's systems, as bench_codec.c drives them.
 *
 * Each system lives in its own file (codec_qrpc.c, codec_xdr.c,
 * codec_memcpy.c) so that its loop is compiled on its own and nothing of it
 * is inlined into the driver or into another system's loop.  One "op" is an
 * encode of the input value followed by a decode of those bytes into a fresh
 * value, a read of some decoded fields into a checksum and the release of
 * what the decode allocated -- what a real receiver of the value would do.
 */
#ifndef QRPC_BENCH_CODEC_H
#define QRPC_BENCH_CODEC_H

#include <stddef.h>
#include <stdint.h>

typedef struct codec_sys {
    const char *system;         /* "qrpc", "xdr", "memcpy" */
    const char *workload;       /* "codec-rec", "codec-mixed" */
    const char *what;           /* one line for the report */
    /* Builds the input; ref_bytes is qrpc's encoded size of Rec, which is
     * what the memcpy ceiling copies.  Returns the bytes one op encodes. */
    size_t (*setup)(size_t ref_bytes);
    /* Runs n ops and returns a checksum of the decoded fields. */
    uint64_t (*batch)(uint64_t n);
    void (*teardown)(void);
} codec_sys;

extern const codec_sys codec_qrpc_rec;
extern const codec_sys codec_qrpc_mixed;
extern const codec_sys codec_xdr_rec;
extern const codec_sys codec_memcpy_rec;

/* Reports a codec failure and exits: a benchmark of a broken codec is void. */
_Noreturn void codec_fail(const char *system, const char *what, int rc);

#endif
