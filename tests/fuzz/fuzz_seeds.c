/*
 * fuzz_seeds.c - writes fuzz_decode's seed corpus: for every type of
 * fuzz_decode.h's table and every seed 1..FUZZ_SEEDS, the type's index byte
 * followed by the encoding of the value the generated X_random function
 * makes from that seed.  The same files on every run.
 *
 *   fuzz_seeds DIR      (DIR must exist; files are named NN-TYPE-SEED)
 *
 * A build tool, not a test: failing to encode a random value is reported
 * and fails the build, but nothing more is checked here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_decode.h"

#define FUZZ_SEEDS 8u
/* Deep enough for nested lists and recursion, small enough for fast seeds. */
#define FUZZ_SEED_DEPTH 3u

int main(int argc, char **argv)
{
    unsigned i, s;
    int status = 0;

    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_seeds DIR\n");
        return 2;
    }
    for (i = 0; i < FUZZ_NTYPES; i++) {
        const fuzz_type *t = &fuzz_types[i];

        for (s = 1; s <= FUZZ_SEEDS; s++) {
            uint64_t seed = s * UINT64_C(0x9E3779B97F4A7C15) + i;
            uint8_t index = (uint8_t)i;
            char path[4096];
            qrpc_buf b;
            void *v = calloc(1, t->size);
            FILE *f;
            int rc;

            if (!v)
                return 1;
            qrpc_buf_init(&b);
            rc = t->random(v, &seed, FUZZ_SEED_DEPTH);
            if (rc == 0)
                rc = t->encode(&b, v);
            if (rc != 0) {
                fprintf(stderr, "fuzz_seeds: %s seed %u: %s\n", t->name, s,
                        qrpc_strerror(rc));
                status = 1;
            } else {
                snprintf(path, sizeof path, "%s/%02x-%s-%u", argv[1], i,
                         t->name, s);
                f = fopen(path, "wb");
                if (!f || fwrite(&index, 1, 1, f) != 1 ||
                    fwrite(b.data, 1, b.len, f) != b.len || fclose(f) != 0) {
                    fprintf(stderr, "fuzz_seeds: %s: %s\n", path,
                            strerror(errno));
                    return 1;
                }
            }
            t->free(v);
            free(v);
            qrpc_buf_free(&b);
        }
    }
    return status;
}
