/*
 * mem.h - how the runtime asks for large message buffers to be backed by
 * huge pages.  Not an allocator: the buffers are malloc'd and freed as
 * any other; this only advises the kernel about them.  Used for bodies the
 * frame reader allocates whole (frame.c, RX_BODY_WHOLE); a buffer grown by
 * doubling is not advised, as remapping a huge-page range at each step
 * measured slower than small pages.
 *
 * Why.  A large body is received into fresh memory, and each 4 KiB page
 * of it costs a page fault on first touch: for a 64 MiB request, 16384
 * faults, each with its memory-cgroup charge, which profiled at half of
 * the receiving side's CPU, more than the copy out of the socket.  With
 * transparent huge pages in "madvise" mode (the common default) the
 * kernel backs an advised range with 2 MiB pages, one fault each.
 *
 * Known limits: only the 2 MiB-aligned interior of a buffer is advised;
 * a kernel without transparent huge pages, or with them off, refuses the
 * advice, and the buffer just stays on small pages.  Pages are still only
 * allocated on first touch, 2 MiB at a time, so the memory a buffer holds
 * still follows the bytes written into it.
 */
#ifndef QRPC_MEM_H
#define QRPC_MEM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>

/* Buffers shorter than this are not advised: at most one huge page inside. */
#define QRPC__MEM_HUGE_MIN ((size_t)4 << 20)
#define QRPC__MEM_HUGE_PAGE ((uintptr_t)2 << 20)

/* Advises huge pages for the aligned interior of [p, p + len); errors ignored. */
static inline void qrpc__mem_huge(void *p, size_t len)
{
#ifdef MADV_HUGEPAGE
    uintptr_t a = ((uintptr_t)p + QRPC__MEM_HUGE_PAGE - 1) & ~(QRPC__MEM_HUGE_PAGE - 1);
    uintptr_t e = ((uintptr_t)p + len) & ~(QRPC__MEM_HUGE_PAGE - 1);

    if (len >= QRPC__MEM_HUGE_MIN && e > a)
        (void)madvise((void *)a, e - a, MADV_HUGEPAGE);
#else
    (void)p;
    (void)len;
#endif
}

#endif
