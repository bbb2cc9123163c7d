/*
 * testing.h - hooks for the runtime's own tests (tests/unit), which
 * include this file by its relative path.  Not part of the API: not
 * installed, and may change with any commit.
 */
#ifndef QRPC_TESTING_H
#define QRPC_TESTING_H

#include <stdint.h>

#include "qrpc.h"

/* Internal: kept out of libqrpc.so's exported symbols. */
#pragma GCC visibility push(hidden)

/*
 * Replaces node n's clock (CLOCK_MONOTONIC, in ns) by now_ns(arg), or
 * restores it when now_ns is NULL.  Deadlines are computed and checked on
 * this clock, which makes QRPC_ETIMEDOUT testable without sleeping.  Set
 * it before any call on n is made or while none is in progress.
 */
void qrpc__node_set_clock(qrpc_node *n, uint64_t (*now_ns)(void *arg), void *arg);

#pragma GCC visibility pop

#endif
