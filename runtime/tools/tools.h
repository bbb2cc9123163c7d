/*
 * tools.h - what the command-line programs qrpc-master(8) and qrpc(1)
 * share: strict parsing of numeric option values.
 *
 * It is not part of libqrpc and is installed nowhere; the functions are
 * static inline so that each program compiles its own copy.
 */
#ifndef QRPC_TOOLS_H
#define QRPC_TOOLS_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

/*
 * Parses s as a decimal number in [lo, hi] into *out.  The whole string
 * must be digits: no sign, no blanks, no suffix, not empty.  Returns false
 * (leaving *out alone) for anything else, an overflow included.
 */
static inline bool tools_parse_u32(const char *s, uint32_t lo, uint32_t hi,
                                   uint32_t *out)
{
    unsigned long long v;
    char *end = NULL;
    bool ok = false;

    if (s == NULL || s[0] < '0' || s[0] > '9')
        goto done;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        goto done;
    *out = (uint32_t)v;
    ok = true;
done:
    return ok;
}

#endif
