/*
 * fuzz_decode.h - the table of generated types that fuzz_decode.c and
 * fuzz_seeds.c share: the named types of the tests/idl packages that
 * fuzz.mk lists (fuzz_types.h and fuzz_includes.h, made by types.awk from
 * the generated headers), each with type-erased wrappers around its
 * generated functions.
 *
 * A fuzz input's first byte is an index into this table; fuzz_seeds.c
 * writes that byte before each seed's encoding.  Not an API of qrpc.
 */
#ifndef QRPC_FUZZ_DECODE_H
#define QRPC_FUZZ_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fuzz_includes.h"

typedef struct fuzz_type {
    const char *name;
    size_t size;                /* sizeof the C type */
    int (*encode)(qrpc_buf *b, const void *v);
    int (*decode)(qrpc_reader *r, void *v);
    void (*free)(void *v);
    bool (*equal)(const void *a, const void *b);
    int (*random)(void *v, uint64_t *seed, unsigned depth);
} fuzz_type;

/*
 * Wrappers with the table's signatures: calling the generated functions
 * through casted pointers would be undefined behaviour.  An enum owns
 * nothing and compares with ==.
 */
#define FUZZ_COMMON(T)                                                        \
    static int T##_fz_encode(qrpc_buf *b, const void *v)                      \
    { return T##_encode(b, (const T *)v); }                                   \
    static int T##_fz_decode(qrpc_reader *r, void *v)                         \
    { return T##_decode(r, (T *)v); }                                         \
    static int T##_fz_random(void *v, uint64_t *seed, unsigned depth)         \
    { return T##_random((T *)v, seed, depth); }
#define FUZZ_TYPE(T)                                                          \
    FUZZ_COMMON(T)                                                            \
    static void T##_fz_free(void *v) { T##_free((T *)v); }                    \
    static bool T##_fz_equal(const void *a, const void *b)                    \
    { return T##_equal((const T *)a, (const T *)b); }
#define FUZZ_ENUM(T)                                                          \
    FUZZ_COMMON(T)                                                            \
    static void T##_fz_free(void *v) { (void)v; }                             \
    static bool T##_fz_equal(const void *a, const void *b)                    \
    { return *(const T *)a == *(const T *)b; }
#include "fuzz_types.h"
#undef FUZZ_TYPE
#undef FUZZ_ENUM

#define FUZZ_TYPE(T)                                                          \
    { #T, sizeof(T), T##_fz_encode, T##_fz_decode, T##_fz_free,              \
      T##_fz_equal, T##_fz_random },
#define FUZZ_ENUM(T) FUZZ_TYPE(T)
static const fuzz_type fuzz_types[] = {
#include "fuzz_types.h"
};
#undef FUZZ_TYPE
#undef FUZZ_ENUM
#undef FUZZ_COMMON

#define FUZZ_NTYPES (sizeof fuzz_types / sizeof fuzz_types[0])
_Static_assert(FUZZ_NTYPES <= 256, "a type index must fit in one byte");

#endif
