/*
 * fuzz_decode.c - libFuzzer harness for the decoders that qrpcgen
 * generates, on the named types of tests/idl's kitchen, bank and common.
 *
 * The first input byte picks the type (an index into fuzz_decode.h's table;
 * a byte past its end is ignored), the rest is decoded into a fresh value.
 * A decoder must never crash, leak or read out of bounds, whatever the
 * bytes.  When it accepts them, the value must survive a round trip:
 * re-encoding succeeds, decoding that encoding succeeds and consumes it
 * exactly, the two values are _equal, and encoding the second value gives
 * the same bytes again.  Anything else is __builtin_trap(), which libFuzzer
 * reports as a crash.  Trailing bytes after what the decoder consumed are
 * allowed: the generated decoders read one value, not a whole message.
 *
 * Values live in heap blocks of exactly their size, so that AddressSanitizer
 * sees a decoder writing past its value.  Not a test of the encoders on
 * values the decoders cannot produce (test_codec.c does that).
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const fuzz_type *t;
    qrpc_buf e1, e2;
    qrpc_reader r;
    void *a, *b;

    if (size < 1 || data[0] >= FUZZ_NTYPES)
        return 0;
    t = &fuzz_types[data[0]];
    a = calloc(1, t->size);
    b = calloc(1, t->size);
    if (!a || !b)
        abort();
    qrpc_buf_init(&e1);
    qrpc_buf_init(&e2);
    qrpc_reader_init(&r, data + 1, size - 1);
    if (t->decode(&r, a) == 0) {
        if (t->encode(&e1, a) != 0)
            __builtin_trap();       /* a decoded value must encode */
        qrpc_reader_init(&r, e1.data, e1.len);
        if (t->decode(&r, b) != 0 || qrpc_reader_left(&r) != 0)
            __builtin_trap();       /* its encoding must decode, exactly */
        if (!t->equal(a, b))
            __builtin_trap();       /* to the same value */
        if (t->encode(&e2, b) != 0 || e2.len != e1.len ||
            (e1.len != 0 && memcmp(e1.data, e2.data, e1.len) != 0))
            __builtin_trap();       /* which encodes to the same bytes */
        t->free(b);
    }
    /* A failed decode must leave a value that _free accepts, too. */
    t->free(a);
    qrpc_buf_free(&e1);
    qrpc_buf_free(&e2);
    free(a);
    free(b);
    return 0;
}
