/*
 * soak_record.h - the execution record of the soak test: the file in
 * which every incarnation of tests/soak/soak_server.c appends one
 * fixed-size record per execution of incrementBy or deposit, and which
 * tests/unit/test_soak.c reads back to check the at-most-once invariants.
 *
 * What it is: the record layout and a reader shared by the server (which
 * rebuilds its state from the file when it starts) and the driver (which
 * checks it), so that the two cannot disagree on the format.  Records are
 * written raw, in the machine's byte order: the file never leaves the
 * machine and lives no longer than one test run.
 *
 * What it is not: a durable log.  Nothing is fsync'd, because the record
 * only has to survive its writer being killed (SIGKILL), not the machine
 * going down; the page cache outlives any process.  A record is appended
 * with a single write() on an O_APPEND descriptor, so a killed writer
 * leaves at worst a torn last record, which readers report and ignore.
 *
 * Header-only (static functions), with no Check dependency: the server
 * includes it too.
 */
#ifndef QRPC_SOAK_RECORD_H
#define QRPC_SOAK_RECORD_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* One execution of a state-changing method. */
typedef struct soak_record {
    uint64_t op;                /* the operation id the client chose */
    int64_t amount;             /* what was added */
    uint32_t method;            /* soak_Ledger_incrementBy_ID or soak_Ledger_deposit_ID */
    uint32_t account;           /* deposit's account; 0 for incrementBy */
    uint32_t incarnation;       /* which start of the server executed it (0: the first) */
    uint32_t check;             /* soak_record_check() of the fields above */
} soak_record;

_Static_assert(sizeof(soak_record) == 32, "soak_record must have no padding");

#define SOAK_ACCOUNTS 8u        /* deposit's accounts are 0 .. SOAK_ACCOUNTS - 1 */

/*
 * A hash of a record's fields.  Records are never damaged in place, so this
 * only guards the reader against a file that is not a record at all (a
 * wrong path, a format change) instead of summing garbage.
 */
static inline uint32_t soak_record_check(const soak_record *r)
{
    uint64_t h = 0x6a09e667f3bcc908u;
    const uint64_t words[4] = { r->op, (uint64_t)r->amount,
                                (uint64_t)r->method << 32 | r->account, r->incarnation };
    size_t i;

    for (i = 0; i < 4; i++) {
        h ^= words[i];
        h *= 0x9e3779b97f4a7c15u;
        h ^= h >> 29;
    }
    return (uint32_t)(h ^ (h >> 32));
}

/* What soak_record_load() found in a file. */
typedef struct soak_record_file {
    soak_record *recs;          /* malloc'd; NULL when there are none */
    size_t n;                   /* whole records */
    size_t torn;                /* bytes after the last whole record (a torn write) */
    size_t bad;                 /* index of the first record whose check fails, or n */
} soak_record_file;

/*
 * Reads every whole record of the file open as fd (from its start; the
 * offset of an O_APPEND descriptor does not matter to later writes).
 * Returns 0, or an errno value with *f left empty.  A file that does not
 * exist yet is the caller's business (open it with O_CREAT).
 */
static inline int soak_record_load(int fd, soak_record_file *f)
{
    struct stat st;
    size_t size, got = 0;
    int err = 0;

    f->recs = NULL;
    f->n = f->torn = f->bad = 0;
    if (fstat(fd, &st) != 0)
        return errno;
    size = (size_t)st.st_size;
    f->torn = size % sizeof(soak_record);
    f->n = size / sizeof(soak_record);
    if (f->n == 0)
        return 0;
    f->recs = malloc(f->n * sizeof(soak_record));
    if (f->recs == NULL) {
        err = ENOMEM;
        goto fail;
    }
    /* only the whole records: the torn tail is not read at all */
    while (got < f->n * sizeof(soak_record)) {
        ssize_t r = pread(fd, (char *)f->recs + got, f->n * sizeof(soak_record) - got,
                          (off_t)got);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            err = r < 0 ? errno : EIO;  /* EIO: the file shrank under us */
            goto fail;
        }
        got += (size_t)r;
    }
    for (f->bad = 0; f->bad < f->n; f->bad++)
        if (f->recs[f->bad].check != soak_record_check(&f->recs[f->bad]))
            break;
    return 0;

fail:
    free(f->recs);
    f->recs = NULL;
    f->n = f->torn = f->bad = 0;
    return err;
}

#endif
