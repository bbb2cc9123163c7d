/*
 * ast.c - the memory behind the syntax tree: a bump allocator (arena) that
 * owns every node, name and string of one qg_program, and the program
 * object itself.
 *
 * Nothing allocated here is freed on its own; qg_program_free() releases
 * the whole arena at once.  That suits a compiler that runs once and exits,
 * and it makes error recovery in the parser leak-free by construction.
 * Running out of memory aborts: there is nothing useful a compiler can do
 * instead.  Diagnostics are in diag.c; this file is not about them.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ast.h"

/* Small allocations share chunks of this size; larger ones get their own. */
#define ARENA_CHUNK 65536

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t size;                /* bytes usable in data */
    max_align_t data[];
} arena_chunk;

struct qg_arena {
    arena_chunk *chunks;        /* the current chunk first */
    size_t used;                /* bytes taken from the current chunk */
};

static void arena_oom(void)
{
    fputs("qrpcgen: out of memory\n", stderr);
    abort();
}

static arena_chunk *arena_chunk_new(size_t size)
{
    arena_chunk *c = malloc(sizeof *c + size);

    if (!c)
        arena_oom();
    c->size = size;
    c->next = NULL;
    return c;
}

qg_program *qg_program_new(void)
{
    qg_program *p = calloc(1, sizeof *p);

    if (!p)
        arena_oom();
    p->arena = calloc(1, sizeof *p->arena);
    if (!p->arena)
        arena_oom();
    return p;
}

void qg_program_free(qg_program *p)
{
    arena_chunk *c, *next;

    if (!p)
        return;
    for (c = p->arena->chunks; c; c = next) {
        next = c->next;
        free(c);
    }
    free(p->arena);
    free(p);
}

void *qg_alloc(qg_program *p, size_t n)
{
    struct qg_arena *a = p->arena;
    const size_t align = sizeof(max_align_t);
    size_t need;
    void *r;

    if (n > SIZE_MAX - align)
        arena_oom();
    need = (n + align - 1) / align * align;
    if (need == 0)
        need = align;
    if (need > ARENA_CHUNK / 4) {
        /* A big block gets a chunk of its own, linked behind the current
         * one so that the current chunk's free space is not lost. */
        arena_chunk *c = arena_chunk_new(need);

        if (a->chunks) {
            c->next = a->chunks->next;
            a->chunks->next = c;
        } else {
            a->chunks = c;
            a->used = need;
        }
        memset(c->data, 0, need);
        return c->data;
    }
    if (!a->chunks || a->chunks->size - a->used < need) {
        arena_chunk *c = arena_chunk_new(ARENA_CHUNK);

        c->next = a->chunks;
        a->chunks = c;
        a->used = 0;
    }
    r = (char *)a->chunks->data + a->used;
    a->used += need;
    memset(r, 0, need);
    return r;
}

char *qg_strndup(qg_program *p, const char *s, size_t n)
{
    char *r = qg_alloc(p, n + 1);

    memcpy(r, s, n);
    r[n] = '\0';
    return r;
}

char *qg_strdup(qg_program *p, const char *s)
{
    return qg_strndup(p, s, strlen(s));
}

/* Formats into a stack buffer first, so that the usual short result costs
 * one vsnprintf; a longer one is formatted again into its exact size. */
char *qg_printf(qg_program *p, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    int n;
    char *r;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        arena_oom();
    if ((size_t)n < sizeof small)
        return qg_strndup(p, small, (size_t)n);
    r = qg_alloc(p, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(r, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return r;
}

const char *qg_kind_word(const qg_decl *d)
{
    switch (d->kind) {
    case QG_D_CONST: return "constant";
    case QG_D_ENUM: return "enum";
    case QG_D_ENUM_MEMBER: return "enum member";
    case QG_D_TYPEDEF: return "typedef";
    case QG_D_STRUCT: return "struct";
    case QG_D_UNION: return "union";
    case QG_D_SERVICE: return "service";
    }
    return "declaration";
}
