/*
 * dlog.h - the durable reply log of a serving node (config dedup_log):
 * an append-only file of completion records, one per at-most-once call
 * that ran, written and made durable (fdatasync, one for a whole batch)
 * before the call's reply goes out, and read back when the node starts
 * again, so that a restarted server answers retransmissions meant for its
 * previous incarnation from the log instead of refusing them (in the
 * spirit of RIFL, SOSP 2015).
 *
 * What it is not: a record of the handler's effects.  A handler that ran
 * and whose record was not yet durable when the process died has no
 * record; its retransmission is refused (QRPC_EUNKNOWN), never run again.
 * The log is bounded by the reply cache: it is rewritten from the cache's
 * answered entries (compaction) once it holds more than twice as many
 * records as the cache, so acknowledged calls and forgotten clients leave
 * it too.  A record cut short or damaged (a crash in the middle of a
 * write) ends the log: it and whatever follows are cut off at the next
 * start, with a log line.
 */
#ifndef QRPC_DLOG_H
#define QRPC_DLOG_H

#include "core.h"
#include "dedup.h"

#pragma GCC visibility push(hidden)

typedef struct qrpc__dlog qrpc__dlog;

/*
 * Opens (or creates) the log at path for node n, whose reply cache
 * (n->dedup) receives every record the file holds (a torn or damaged
 * tail is cut off), and starts the thread that writes it.  Errors, with a
 * log line saying what and where: QRPC_EIO (cannot open, read or write
 * it, or it is not a reply log), QRPC_ENOMEM.  *restored: the records
 * put back into the cache.
 */
int qrpc__dlog_open(qrpc_node *n, const char *path, size_t *restored, qrpc__dlog **out);

/*
 * Writes what is queued, runs its completions, stops the thread and
 * closes the file.  Nothing may be appended meanwhile or after.  NULL is
 * ignored.
 */
void qrpc__dlog_close(qrpc__dlog *l);

/*
 * Queues the completion record of (client, seq) with status and results.
 * Once it is durable (or could not be written: then the failure is
 * logged, and the reply goes out without a record), done runs on the
 * log's thread with a copy of ctx (ctx_len bytes), status and results,
 * which it takes.  On 0 results has been taken; on QRPC_ENOMEM nothing
 * was queued and results is still the caller's.
 */
typedef void (*qrpc__dlog_done_fn)(void *ctx, int status, qrpc_buf *results);
int qrpc__dlog_append(qrpc__dlog *l, uint64_t client, uint64_t seq, int status,
                      qrpc_buf *results, qrpc__dlog_done_fn done, const void *ctx,
                      size_t ctx_len);

#pragma GCC visibility pop

#endif
