/*
 * sema.c - the semantic pass: everything about a parsed .qidl program that
 * the grammar cannot see.  It runs over every loaded file (imports too,
 * since their declarations are used), in phases:
 *
 *   1. declare: one symbol table per file (package scope: types, constants,
 *      services and enum members share it); redefinitions; names that are
 *      C keywords; two files with the same package;
 *   2. resolve: every type name and constant name, qualified ones
 *      ("common.Money") through the imports of the file that writes them;
 *      unused imports of the files named on the command line are warned of;
 *   3. evaluate and check: constants and enum members (on demand, so order
 *      does not matter; cycles are errors), bounds, array lengths, case
 *      labels, method ids, service versions, with exact arithmetic; then
 *      the rules of structs, unions, services, void and oneway;
 *   4. by-value containment cycles (a struct holding itself but through
 *      optional<> or list<>);
 *   5. only when all is well: min_size and recursive for every type, and
 *      qg_check_cnames() for the main files.
 *
 * Later phases cope with what earlier ones could not resolve (a NULL ref
 * is skipped, a constant that failed is not reported again), so one run
 * reports as many independent errors as it soundly can.  Symbol tables are
 * open-addressing hash tables in the program's arena, so checking a file of
 * thousands of declarations stays linear.  This file neither reads files
 * (loader.c) nor decides C spellings (cname.c).
 *
 * Constant arithmetic is exact over the integers from -2^63 to 2^64-1
 * (held in __int128); a result outside that range is an overflow error.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ast.h"
#include "cname.h"

__extension__ typedef __int128 sema_int;
__extension__ typedef unsigned __int128 sema_uint;

#define SEMA_MIN (-(sema_int)INT64_MAX - 1)
#define SEMA_MAX ((sema_int)UINT64_MAX)

#define SEMA_MAX_BOUND 4294967295u      /* string/bytes/list bounds */
#define SEMA_MAX_ARRAY 1048576u         /* fixed array lengths */
#define SEMA_MAX_CHAIN 1000             /* constants defined through constants */

/* decl->state values of the evaluation phase */
enum { SEMA_UNSEEN, SEMA_BUSY, SEMA_DONE, SEMA_FAILED };

/* ---- hash tables -------------------------------------------------------- */

/* Keys are strings or, when `ints`, 64-bit integers (also pointers).
 * A slot is in use when val is not NULL; entries are never removed. */
typedef struct sema_slot {
    const char *skey;
    int64_t ikey;
    void *val;
} sema_slot;

typedef struct sema_map {
    sema_slot *slots;
    size_t cap;                 /* a power of two */
    size_t n;
    bool ints;
} sema_map;

static uint64_t sema_hash(const sema_map *m, const char *s, int64_t i)
{
    uint64_t h;

    if (m->ints) {
        h = (uint64_t)i;
        h ^= h >> 30;
        h *= 0xbf58476d1ce4e5b9u;
        h ^= h >> 27;
        h *= 0x94d049bb133111ebu;
        h ^= h >> 31;
        return h;
    }
    h = 0xcbf29ce484222325u;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3u;
    }
    return h;
}

static void sema_map_init(qg_program *p, sema_map *m, size_t expect,
                          bool ints)
{
    size_t cap = 8;

    while (cap < expect * 2)
        cap *= 2;
    m->slots = qg_alloc(p, cap * sizeof *m->slots);
    m->cap = cap;
    m->n = 0;
    m->ints = ints;
}

static sema_slot *sema_map_slot(const sema_map *m, const char *s, int64_t i)
{
    size_t mask = m->cap - 1;
    size_t at = (size_t)sema_hash(m, s, i) & mask;

    for (;; at = (at + 1) & mask) {
        sema_slot *sl = &m->slots[at];

        if (!sl->val)
            return sl;
        if (m->ints ? sl->ikey == i : strcmp(sl->skey, s) == 0)
            return sl;
    }
}

static void *sema_map_find(const sema_map *m, const char *s, int64_t i)
{
    return m->cap ? sema_map_slot(m, s, i)->val : NULL;
}

/* Adds key -> val unless the key is there; returns the value already there,
 * or NULL when val was added. */
static void *sema_map_add(qg_program *p, sema_map *m, const char *s,
                          int64_t i, void *val)
{
    sema_slot *sl;

    if (!m->cap)
        sema_map_init(p, m, 4, m->ints);
    sl = sema_map_slot(m, s, i);
    if (sl->val)
        return sl->val;
    sl->skey = s;
    sl->ikey = i;
    sl->val = val;
    if (++m->n * 2 > m->cap) {
        sema_map bigger;
        size_t k;

        sema_map_init(p, &bigger, m->cap, m->ints);
        for (k = 0; k < m->cap; k++)
            if (m->slots[k].val)
                *sema_map_slot(&bigger, m->slots[k].skey,
                               m->slots[k].ikey) = m->slots[k];
        bigger.n = m->n;
        *m = bigger;
    }
    return NULL;
}

static int64_t sema_ptrkey(const void *ptr)
{
    return (int64_t)(intptr_t)ptr;
}

/* ---- the pass's state --------------------------------------------------- */

typedef struct sema {
    qg_program *p;
    qg_file *file;              /* the file whose names are being resolved */
    sema_map prev;              /* enum member -> the member before it */
    sema_map enum_values;       /* enum -> sema_map of value -> member */
    sema_map bad_package;       /* files whose package another file has */
    size_t n_decls;             /* every declaration and member */
    qg_decl **stack;            /* constants being evaluated / types being
                                 * walked, outermost first */
    qg_field **via;             /* phase 4: the field leaving stack[i] */
    size_t depth, cap;
} sema;

static void sema_push(sema *s, qg_decl *d)
{
    if (s->depth == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        qg_decl **st = qg_alloc(s->p, cap * sizeof *st);
        qg_field **via = qg_alloc(s->p, cap * sizeof *via);

        if (s->depth) {
            memcpy(st, s->stack, s->depth * sizeof *st);
            memcpy(via, s->via, s->depth * sizeof *via);
        }
        s->stack = st;
        s->via = via;
        s->cap = cap;
    }
    s->via[s->depth] = NULL;
    s->stack[s->depth++] = d;
}

/* ---- names -------------------------------------------------------------- */

static const char *const sema_reserved[] = {
    "bool", "bytes", "case", "const", "default", "enum", "f32", "f64",
    "false", "i16", "i32", "i64", "i8", "idempotent", "import", "in",
    "inout", "list", "oneway", "optional", "out", "package", "service",
    "string", "struct", "switch", "true", "typedef", "u16", "u32", "u64",
    "u8", "union", "version", "void",
};

/* C11's keywords (6.4.1) plus bool, true and false of <stdbool.h>. */
static const char *const sema_c_keywords[] = {
    "_Alignas", "_Alignof", "_Atomic", "_Bool", "_Complex", "_Generic",
    "_Imaginary", "_Noreturn", "_Static_assert", "_Thread_local", "auto",
    "bool", "break", "case", "char", "const", "continue", "default", "do",
    "double", "else", "enum", "extern", "false", "float", "for", "goto",
    "if", "inline", "int", "long", "register", "restrict", "return",
    "short", "signed", "sizeof", "static", "struct", "switch", "true",
    "typedef", "union", "unsigned", "void", "volatile", "while",
};

static int sema_strcmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool sema_in_list(const char *name, const char *const *list,
                         size_t n)
{
    return bsearch(&name, list, n, sizeof *list, sema_strcmp) != NULL;
}

static bool sema_is_c_keyword(const char *name)
{
    return sema_in_list(name, sema_c_keywords,
                        sizeof sema_c_keywords / sizeof *sema_c_keywords);
}

/* The .qidl reserved words and C's keywords: the spellings that can never
 * be a declared name (names with a leading '_' or a "__" cannot either). */
bool qg_is_reserved(const char *name)
{
    return sema_in_list(name, sema_reserved,
                        sizeof sema_reserved / sizeof *sema_reserved) ||
           sema_is_c_keyword(name);
}

/* Declared names become C identifiers: no C keywords.  (Reserved words and
 * underscores were refused by the parser and the scanner.) */
static void sema_check_name(sema *s, qg_loc loc, const char *name)
{
    if (sema_is_c_keyword(name))
        qg_error(s->p, loc, "'%s' is a C keyword", name);
}


static const char *sema_scalar_name(qg_type_kind k)
{
    static const char *const names[] = {
        "void", "bool", "i8", "i16", "i32", "i64", "u8", "u16", "u32",
        "u64", "f32", "f64", "string", "bytes", "list", "optional",
    };

    return k < sizeof names / sizeof *names ? names[k] : "named type";
}

static bool sema_is_integer(qg_type_kind k)
{
    return k >= QG_T_I8 && k <= QG_T_U64;
}

static bool sema_is_type_decl(const qg_decl *d)
{
    return d->kind == QG_D_TYPEDEF || d->kind == QG_D_STRUCT ||
           d->kind == QG_D_UNION || d->kind == QG_D_ENUM;
}

/* ---- integers ----------------------------------------------------------- */

static bool sema_fits(sema_int v, qg_type_kind k)
{
    switch (k) {
    case QG_T_BOOL: return v >= 0 && v <= 1;
    case QG_T_I8: return v >= INT8_MIN && v <= INT8_MAX;
    case QG_T_I16: return v >= INT16_MIN && v <= INT16_MAX;
    case QG_T_I32: return v >= INT32_MIN && v <= INT32_MAX;
    case QG_T_I64: return v >= INT64_MIN && v <= INT64_MAX;
    case QG_T_U8: return v >= 0 && v <= UINT8_MAX;
    case QG_T_U16: return v >= 0 && v <= UINT16_MAX;
    case QG_T_U32: return v >= 0 && v <= UINT32_MAX;
    case QG_T_U64: return v >= 0 && v <= (sema_int)UINT64_MAX;
    default: return false;
    }
}

/* A value within [SEMA_MIN, SEMA_MAX] in decimal. */
static const char *sema_str(sema *s, sema_int v)
{
    if (v < 0)
        return qg_printf(s->p, "%" PRId64, (int64_t)v);
    return qg_printf(s->p, "%" PRIu64, (uint64_t)v);
}

static void sema_store(qg_decl *d, sema_int v)
{
    d->uval = (uint64_t)v;
    d->ival = (int64_t)d->uval;
}

static sema_int sema_load(const qg_decl *d)
{
    if (d->kind == QG_D_CONST && d->const_type &&
        d->const_type->kind >= QG_T_U8 && d->const_type->kind <= QG_T_U64)
        return (sema_int)d->uval;
    return (sema_int)d->ival;
}

/* ---- phase 1: declare --------------------------------------------------- */

static void sema_declare_one(sema *s, sema_map *tab, qg_decl *d)
{
    qg_decl *old;

    sema_check_name(s, d->loc, d->name);
    old = sema_map_add(s->p, tab, d->name, 0, d);
    if (old) {
        qg_error(s->p, d->loc, "redefinition of '%s'", d->name);
        qg_note(s->p, old->loc, "'%s' was first declared here", old->name);
    }
}

static void sema_declare(sema *s, qg_file *f)
{
    sema_map *tab = qg_alloc(s->p, sizeof *tab);
    size_t n = 0;
    qg_decl *d, *m, *prev;

    for (d = f->decls; d; d = d->next) {
        n++;
        for (m = d->members; m; m = m->next)
            n++;
    }
    s->n_decls += n;
    sema_map_init(s->p, tab, n, false);
    f->symtab = tab;
    for (d = f->decls; d; d = d->next) {
        d->file = f;
        sema_declare_one(s, tab, d);
        prev = NULL;
        for (m = d->members; m; m = m->next) {
            m->file = f;
            m->parent = d;
            sema_declare_one(s, tab, m);
            if (prev)
                sema_map_add(s->p, &s->prev, NULL, sema_ptrkey(m), prev);
            prev = m;
        }
    }
}

static void sema_packages(sema *s)
{
    sema_map pkgs;
    qg_file *f, *old;

    memset(&pkgs, 0, sizeof pkgs);
    for (f = s->p->files; f; f = f->next) {
        if (!f->package)
            continue;
        sema_check_name(s, f->package_loc, f->package);
        old = sema_map_add(s->p, &pkgs, f->package, 0, f);
        if (old) {
            sema_map_add(s->p, &s->bad_package, NULL, sema_ptrkey(f), f);
            qg_error(s->p, f->package_loc, "package '%s' is also declared "
                     "by %s", f->package, old->path);
            qg_note(s->p, old->package_loc, "package '%s' is declared here",
                    old->package);
        }
    }
}

/* ---- phase 2: resolve --------------------------------------------------- */

static qg_decl *sema_lookup(sema *s, qg_loc loc, const char *name,
                            bool want_type)
{
    const char *dot = strchr(name, '.');
    const char *base = name;
    qg_file *scope = s->file;
    qg_decl *d;

    if (dot) {
        const char *pkg = qg_strndup(s->p, name, (size_t)(dot - name));
        qg_import *imp;

        base = dot + 1;
        scope = NULL;
        if (s->file->package && strcmp(pkg, s->file->package) == 0)
            scope = s->file;
        for (imp = s->file->imports; imp && !scope; imp = imp->next) {
            if (imp->file && imp->file->package &&
                strcmp(imp->file->package, pkg) == 0) {
                scope = imp->file;
                imp->used = true;
            }
        }
        if (!scope) {
            qg_error(s->p, loc, "'%s': package '%s' is not imported by "
                     "this file", name, pkg);
            return NULL;
        }
    }
    d = scope->symtab ? sema_map_find(scope->symtab, base, 0) : NULL;
    if (!d) {
        qg_error(s->p, loc, "unknown %s '%s'",
                 want_type ? "type" : "constant", name);
        return NULL;
    }
    if (want_type && !sema_is_type_decl(d)) {
        qg_error(s->p, loc, "'%s' is not a type", name);
        qg_note(s->p, d->loc, "'%s' is declared here as a %s", d->name,
                qg_kind_word(d));
        return NULL;
    }
    if (!want_type && d->kind != QG_D_CONST && d->kind != QG_D_ENUM_MEMBER) {
        qg_error(s->p, loc, "'%s' is not a constant", name);
        qg_note(s->p, d->loc, "'%s' is declared here as a %s", d->name,
                qg_kind_word(d));
        return NULL;
    }
    if (s->file->is_main)
        d->used = true;
    return d;
}

static void sema_resolve_expr(sema *s, qg_expr *e)
{
    if (!e)
        return;
    switch (e->kind) {
    case QG_E_INT:
        break;
    case QG_E_NAME:
        e->ref = sema_lookup(s, e->loc, e->name, false);
        break;
    case QG_E_UNARY:
        sema_resolve_expr(s, e->lhs);
        break;
    case QG_E_BINARY:
        sema_resolve_expr(s, e->lhs);
        sema_resolve_expr(s, e->rhs);
        break;
    }
}

/*
 * The enum a union discriminant names, found without reporting anything
 * (the discriminant's own resolution reports its errors): follows
 * typedefs across files, at most a bounded number of them.
 */
static qg_decl *sema_disc_enum(sema *s, const qg_type *t)
{
    qg_file *scope = s->file;
    const char *name;
    int hops;

    for (hops = 0; t != NULL && t->kind == QG_T_NAMED && hops < 64; hops++) {
        const char *dot = strchr(t->name, '.');
        qg_decl *d;

        name = t->name;
        if (dot) {
            qg_import *imp;
            size_t n = (size_t)(dot - t->name);

            for (imp = scope->imports; imp; imp = imp->next)
                if (imp->file && imp->file->package &&
                    strlen(imp->file->package) == n &&
                    strncmp(imp->file->package, t->name, n) == 0)
                    break;
            if (!imp)
                return NULL;
            scope = imp->file;
            name = dot + 1;
        }
        d = scope->symtab ? sema_map_find(scope->symtab, name, 0) : NULL;
        if (!d)
            return NULL;
        if (d->kind == QG_D_ENUM)
            return d;
        if (d->kind != QG_D_TYPEDEF || d->tdef->array_len)
            return NULL;
        scope = d->file;
        t = d->tdef->type;
    }
    return NULL;
}

/*
 * A case label that is a bare name is first looked for among the members
 * of the discriminant's enum, wherever that enum is declared, so that
 * "case EUR:" works for a discriminant of an imported enum.
 */
static void sema_resolve_label(sema *s, qg_decl *u, qg_expr *e)
{
    qg_decl *en, *m;

    if (e && e->kind == QG_E_NAME && !strchr(e->name, '.') &&
        (en = sema_disc_enum(s, u->disc_type)) != NULL) {
        for (m = en->members; m; m = m->next) {
            if (strcmp(m->name, e->name) == 0) {
                qg_import *imp;

                e->ref = m;
                for (imp = s->file->imports; imp; imp = imp->next)
                    if (imp->file == en->file)
                        imp->used = true;
                if (s->file->is_main)
                    m->used = true;
                return;
            }
        }
    }
    sema_resolve_expr(s, e);
}

static void sema_resolve_type(sema *s, qg_type *t)
{
    if (!t)
        return;
    if (t->kind == QG_T_NAMED)
        t->ref = sema_lookup(s, t->loc, t->name, true);
    sema_resolve_type(s, t->elem);
    sema_resolve_expr(s, t->bound);
}

static void sema_resolve_field(sema *s, qg_field *f)
{
    if (!f)
        return;
    sema_resolve_type(s, f->type);
    sema_resolve_expr(s, f->array_len);
}

static void sema_resolve_decl(sema *s, qg_decl *d)
{
    qg_decl *m;
    qg_field *f;
    qg_arm *a;
    qg_case *c;
    qg_method *mt;
    qg_param *pa;

    switch (d->kind) {
    case QG_D_CONST:
        sema_resolve_type(s, d->const_type);
        sema_resolve_expr(s, d->value);
        break;
    case QG_D_ENUM:
        for (m = d->members; m; m = m->next)
            sema_resolve_expr(s, m->value);
        break;
    case QG_D_ENUM_MEMBER:
        break;
    case QG_D_TYPEDEF:
        sema_resolve_field(s, d->tdef);
        break;
    case QG_D_STRUCT:
        for (f = d->fields; f; f = f->next)
            sema_resolve_field(s, f);
        break;
    case QG_D_UNION:
        sema_resolve_type(s, d->disc_type);
        for (a = d->arms; a; a = a->next) {
            for (c = a->labels; c; c = c->next)
                sema_resolve_label(s, d, c->value);
            sema_resolve_field(s, a->field);
        }
        break;
    case QG_D_SERVICE:
        sema_resolve_expr(s, d->version_expr);
        for (mt = d->methods; mt; mt = mt->next) {
            sema_resolve_type(s, mt->result);
            for (pa = mt->params; pa; pa = pa->next)
                sema_resolve_field(s, &pa->f);
            sema_resolve_expr(s, mt->id_expr);
        }
        break;
    }
}

static void sema_unused_imports(sema *s, qg_file *f)
{
    qg_import *imp;

    /* an import whose package clashes cannot be used: that error is enough */
    for (imp = f->imports; imp; imp = imp->next)
        if (imp->file && !imp->used && imp->file->package &&
            !sema_map_find(&s->bad_package, NULL, sema_ptrkey(imp->file)))
            qg_warning(s->p, imp->loc, "unused import \"%s\"", imp->path);
}

/* ---- phase 3: evaluate -------------------------------------------------- */

static bool sema_value(sema *s, qg_decl *d, sema_int *v);

static bool sema_eval(sema *s, const qg_expr *e, sema_int *v)
{
    sema_int a = 0, b = 0, r = 0;
    bool ok;

    switch (e->kind) {
    case QG_E_INT:
        *v = (sema_int)e->lit;
        return true;
    case QG_E_NAME:
        return e->ref && sema_value(s, e->ref, v);
    case QG_E_UNARY:
        if (!sema_eval(s, e->lhs, &a))
            return false;
        r = e->op == '-' ? -a : e->op == '~' ? -a - 1 : a;
        break;
    case QG_E_BINARY:
        ok = sema_eval(s, e->lhs, &a);
        ok = sema_eval(s, e->rhs, &b) && ok;
        if (!ok)
            return false;
        switch (e->op) {
        case '+': r = a + b; break;
        case '-': r = a - b; break;
        case '*': {
            /* |a|, |b| < 2^64, so |a|*|b| < 2^128 fits unsigned. */
            sema_uint ua = (sema_uint)(a < 0 ? -a : a);
            sema_uint ub = (sema_uint)(b < 0 ? -b : b);
            sema_uint um = ua * ub;
            bool neg = (a < 0) != (b < 0);

            if ((!neg && um > (sema_uint)SEMA_MAX) ||
                (neg && um > (sema_uint)INT64_MAX + 1))
                goto overflow;
            r = neg ? -(sema_int)um : (sema_int)um;
            break;
        }
        case '/':
        case '%':
            if (b == 0) {
                qg_error(s->p, e->loc, "%s by zero in constant expression",
                         e->op == '/' ? "division" : "modulo");
                return false;
            }
            r = e->op == '/' ? a / b : a % b;
            break;
        case '&': r = a & b; break;
        case '|': r = a | b; break;
        case QG_OP_SHL:
        case QG_OP_SHR:
            if (b < 0 || b > 63) {
                qg_error(s->p, e->loc, "shift count %s is not between 0 "
                         "and 63", sema_str(s, b));
                return false;
            }
            if (e->op == QG_OP_SHR) {
                /* rounds toward minus infinity, for negative a too */
                r = a >= 0 ? a >> (int)b : -((-a - 1) >> (int)b) - 1;
            } else {
                sema_int m = (sema_int)1 << (int)b;

                if ((a > 0 && a > SEMA_MAX / m) ||
                    (a < 0 && -a > (-SEMA_MIN) / m))
                    goto overflow;
                r = a * m;
            }
            break;
        default:
            return false;
        }
        break;
    }
    if (r < SEMA_MIN || r > SEMA_MAX)
        goto overflow;
    *v = r;
    return true;
overflow:
    qg_error(s->p, e->loc, "integer overflow in constant expression");
    return false;
}

/* The value of a constant or an enum member, computed on first use. */
/*
 * A member without a value is its predecessor plus one.  Evaluating the
 * predecessors first, front to back, keeps a long run of such members
 * from recursing once per member.
 */
static void sema_value_implicit_chain(sema *s, qg_decl *d)
{
    qg_decl **run = NULL, *q;
    size_t n = 0, cap = 0, i;
    sema_int v;

    for (q = sema_map_find(&s->prev, NULL, sema_ptrkey(d));
         q && q->state != SEMA_DONE && q->state != SEMA_FAILED && q->state != SEMA_BUSY;
         q = q->value ? NULL : sema_map_find(&s->prev, NULL, sema_ptrkey(q))) {
        if (n == cap) {
            qg_decl **nr;

            cap = cap ? cap * 2 : 16;
            nr = qg_alloc(s->p, cap * sizeof *nr);
            if (n)
                memcpy(nr, run, n * sizeof *nr);
            run = nr;
        }
        run[n++] = q;
    }
    for (i = n; i > 0; i--)
        sema_value(s, run[i - 1], &v);
}

static bool sema_value(sema *s, qg_decl *d, sema_int *v)
{
    sema_int r = 0;
    bool ok = true;
    size_t i;

    switch (d->state) {
    case SEMA_DONE:
        *v = sema_load(d);
        return true;
    case SEMA_FAILED:
        return false;
    case SEMA_BUSY:
        qg_error(s->p, d->loc, "the value of %s '%s' depends on itself",
                 qg_kind_word(d), d->name);
        for (i = s->depth; i > 0 && s->stack[i - 1] != d; i--)
            ;
        for (; i < s->depth; i++)
            qg_note(s->p, s->stack[i]->loc, "through '%s'",
                    s->stack[i]->name);
        /* every member of the cycle fails; only this one says so */
        return false;
    }
    /* evaluation recurses through references: bound it (qidl(5), LIMITS) */
    if (s->depth >= SEMA_MAX_CHAIN) {
        qg_error(s->p, d->loc, "the value of %s '%s' is defined through more "
                 "than %d other constants", qg_kind_word(d), d->name, SEMA_MAX_CHAIN);
        d->state = SEMA_FAILED;
        return false;
    }
    if (d->kind == QG_D_ENUM_MEMBER && !d->value)
        sema_value_implicit_chain(s, d);
    d->state = SEMA_BUSY;
    sema_push(s, d);
    if (d->kind == QG_D_CONST) {
        if (d->const_type->kind == QG_T_NAMED && !d->const_type->ref) {
            ok = false;         /* an unknown type, reported already */
        } else if (!sema_is_integer(d->const_type->kind)) {
            qg_error(s->p, d->const_type->loc, "constant '%s' must have an "
                     "integer type (i8 to u64)", d->name);
            ok = false;
        }
        ok = sema_eval(s, d->value, &r) && ok;
        if (ok && !sema_fits(r, d->const_type->kind)) {
            qg_error(s->p, d->value->loc, "value %s of constant '%s' does "
                     "not fit in %s", sema_str(s, r), d->name,
                     sema_scalar_name(d->const_type->kind));
            ok = false;
        }
    } else {
        qg_decl *prev = sema_map_find(&s->prev, NULL, sema_ptrkey(d));

        if (d->value) {
            ok = sema_eval(s, d->value, &r);
        } else if (prev) {
            ok = sema_value(s, prev, &r);
            r += 1;
        }
        if (ok && !sema_fits(r, QG_T_I32)) {
            qg_error(s->p, d->value ? d->value->loc : d->loc, "value %s of "
                     "enum member '%s' does not fit in i32 (enums travel "
                     "as i32)", sema_str(s, r), d->name);
            ok = false;
        }
    }
    s->depth--;
    d->state = ok ? SEMA_DONE : SEMA_FAILED;
    if (ok) {
        sema_store(d, r);
        *v = r;
    }
    return ok;
}

/* Evaluates e into *out, which must lie in [lo, hi]; `what` names the value
 * in the error message. */
static bool sema_eval_range(sema *s, const qg_expr *e, sema_int lo,
                            sema_int hi, const char *what, uint64_t *out)
{
    sema_int v;

    if (!sema_eval(s, e, &v))
        return false;
    if (v < lo || v > hi) {
        if (lo == 1 && v < 1)
            qg_error(s->p, e->loc, "%s must be greater than 0, not %s", what,
                     sema_str(s, v));
        else if (lo == 1)
            qg_error(s->p, e->loc, "%s %s is larger than the limit of %s",
                     what, sema_str(s, v), sema_str(s, hi));
        else
            qg_error(s->p, e->loc, "%s %s does not fit in u32", what,
                     sema_str(s, v));
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

/* Follows typedefs without arrays, at most `limit` steps (cycles). */
static qg_type *sema_untypedef(qg_type *t, size_t limit)
{
    while (t && t->kind == QG_T_NAMED && t->ref &&
           t->ref->kind == QG_D_TYPEDEF && t->ref->tdef &&
           !t->ref->tdef->array_len) {
        if (limit-- == 0)
            return NULL;
        t = t->ref->tdef->type;
    }
    return t;
}

qg_type *qg_resolve_typedefs(qg_type *t)
{
    return sema_untypedef(t, SIZE_MAX);
}

/*
 * list<> and optional<> nest at most this deep.  Generated names grow with
 * the depth (list<list<i32>> is i32_list_list), so the generated code
 * grows with its square; no real interface comes near the limit.
 */
#define SEMA_MAX_NESTING 32

static int sema_nesting(const qg_type *t)
{
    int n = 0;

    while (t && (t->kind == QG_T_LIST || t->kind == QG_T_OPTIONAL)) {
        n++;
        t = t->elem;
    }
    return n;
}

static void sema_check_type(sema *s, qg_type *t, bool void_ok)
{
    if (sema_nesting(t) > SEMA_MAX_NESTING) {
        qg_error(s->p, t->loc, "list<> and optional<> are nested more than %d "
                 "deep", SEMA_MAX_NESTING);
        return;
    }
    switch (t->kind) {
    case QG_T_VOID:
        if (!void_ok)
            qg_error(s->p, t->loc, "'void' is only allowed as a method "
                     "result or a union arm");
        break;
    case QG_T_LIST:
    case QG_T_OPTIONAL:
        sema_check_type(s, t->elem, false);
        break;
    default:
        break;
    }
    if (t->bound)
        sema_eval_range(s, t->bound, 1, SEMA_MAX_BOUND, "bound",
                        &t->bound_val);
}

static void sema_check_field(sema *s, qg_field *f, bool check_name)
{
    if (check_name)
        sema_check_name(s, f->loc, f->name);
    sema_check_type(s, f->type, false);
    if (f->array_len)
        sema_eval_range(s, f->array_len, 1, SEMA_MAX_ARRAY, "array length",
                        &f->array_val);
}

/* Adds name to a per-declaration set of names; reports a duplicate. */
static void sema_unique_name(sema *s, sema_map *names, const char *what,
                             qg_loc loc, const char *name)
{
    qg_loc *old, *at = qg_alloc(s->p, sizeof *at);

    *at = loc;
    old = sema_map_add(s->p, names, name, 0, at);
    if (old) {
        qg_error(s->p, loc, "duplicate %s name '%s'", what, name);
        qg_note(s->p, *old, "'%s' was first declared here", name);
    }
}

static void sema_check_enum(sema *s, qg_decl *d)
{
    sema_map *values = qg_alloc(s->p, sizeof *values);
    qg_decl *m, *old;
    size_t n = 0;
    sema_int v;

    for (m = d->members; m; m = m->next)
        n++;
    sema_map_init(s->p, values, n, true);
    /* registered first: the check runs once, whoever asks first */
    sema_map_add(s->p, &s->enum_values, NULL, sema_ptrkey(d), values);
    if (n == 0) {
        qg_error(s->p, d->loc, "enum '%s' has no members", d->name);
        return;
    }
    for (m = d->members; m; m = m->next) {
        if (!sema_value(s, m, &v))
            continue;
        old = sema_map_add(s->p, values, NULL, (int64_t)v, m);
        if (old) {
            qg_error(s->p, m->loc, "enum member '%s' has the same value "
                     "(%s) as '%s'", m->name, sema_str(s, v), old->name);
            qg_note(s->p, old->loc, "'%s' is declared here", old->name);
        }
    }
}

static void sema_check_struct(sema *s, qg_decl *d)
{
    sema_map names;
    qg_field *f;

    memset(&names, 0, sizeof names);
    if (!d->fields)
        qg_error(s->p, d->loc, "struct '%s' has no fields", d->name);
    for (f = d->fields; f; f = f->next) {
        sema_check_field(s, f, true);
        sema_unique_name(s, &names, "field", f->loc, f->name);
    }
}

/* One case label of union d, whose discriminant resolves to disc (NULL if
 * it is not a valid discriminant type). */
static void sema_check_label(sema *s, qg_decl *d, qg_type *disc,
                             qg_case *c, sema_map *seen)
{
    qg_decl *en = NULL;
    qg_case *old;
    sema_int v;

    if (disc && disc->kind == QG_T_NAMED)
        en = disc->ref;
    if (c->is_bool) {
        if (disc && disc->kind != QG_T_BOOL) {
            qg_error(s->p, c->loc, "case '%s' needs a bool discriminant",
                     c->bool_val ? "true" : "false");
            return;
        }
        v = c->bool_val;
    } else {
        if (!sema_eval(s, c->value, &v))
            return;
        if (!disc)
            return;
        if (disc->kind == QG_T_BOOL) {
            qg_error(s->p, c->loc, "the case labels of a bool "
                     "discriminant are 'true' and 'false'");
            return;
        }
        if (en) {
            sema_map *values = sema_map_find(&s->enum_values, NULL,
                                             sema_ptrkey(en));
            const qg_expr *e = c->value;

            if (e->kind == QG_E_NAME && e->ref &&
                e->ref->kind == QG_D_ENUM_MEMBER && e->ref->parent != en) {
                qg_error(s->p, c->loc, "'%s' is a member of enum '%s', not "
                         "of '%s'", e->name, e->ref->parent->name, en->name);
                return;
            }
            if (values && !sema_map_find(values, NULL, (int64_t)v)) {
                qg_error(s->p, c->loc, "case value %s is not a member of "
                         "enum '%s'", sema_str(s, v), en->name);
                return;
            }
        } else if (!sema_fits(v, disc->kind)) {
            qg_error(s->p, c->loc, "case value %s does not fit in %s",
                     sema_str(s, v), sema_scalar_name(disc->kind));
            return;
        }
    }
    c->val = (int64_t)(uint64_t)v;
    old = sema_map_add(s->p, seen, NULL, c->val, c);
    if (old) {
        qg_error(s->p, c->loc, "duplicate case value %s in union '%s'",
                 c->is_bool ? (c->bool_val ? "true" : "false")
                            : sema_str(s, v), d->name);
        qg_note(s->p, old->loc, "the value is first used here");
    }
}

static void sema_check_union(sema *s, qg_decl *d)
{
    sema_map seen, names;
    qg_type *disc;
    qg_arm *a, *first_default = NULL;
    qg_case *c;

    memset(&seen, 0, sizeof seen);
    seen.ints = true;
    memset(&names, 0, sizeof names);
    sema_check_name(s, d->disc_loc, d->disc_name);
    sema_check_type(s, d->disc_type, false);
    disc = sema_untypedef(d->disc_type, s->n_decls);
    if (disc && !(disc->kind == QG_T_BOOL || sema_is_integer(disc->kind) ||
                  (disc->kind == QG_T_NAMED && disc->ref &&
                   disc->ref->kind == QG_D_ENUM))) {
        if (disc->kind != QG_T_NAMED || disc->ref)
            qg_error(s->p, d->disc_type->loc, "the discriminant of union "
                     "'%s' must be an enum, an integer type or bool",
                     d->name);
        disc = NULL;
    } else if (disc && disc->kind == QG_T_NAMED) {
        qg_decl *en = disc->ref;

        /* its members are needed to check the labels */
        if (!sema_map_find(&s->enum_values, NULL, sema_ptrkey(en)))
            sema_check_enum(s, en);
    }
    if (!d->arms)
        qg_error(s->p, d->loc, "union '%s' has no arms", d->name);
    for (a = d->arms; a; a = a->next) {
        if (a->is_default) {
            if (first_default) {
                qg_error(s->p, a->loc, "more than one default arm in "
                         "union '%s'", d->name);
                qg_note(s->p, first_default->loc, "the first default arm "
                        "is here");
            } else {
                first_default = a;
            }
        }
        for (c = a->labels; c; c = c->next)
            sema_check_label(s, d, disc, c, &seen);
        if (!a->field)
            continue;
        sema_check_field(s, a->field, true);
        if (strcmp(a->field->name, d->disc_name) == 0)
            qg_error(s->p, a->field->loc, "arm '%s' has the name of the "
                     "discriminant", a->field->name);
        else
            sema_unique_name(s, &names, "arm", a->field->loc,
                             a->field->name);
    }
}

static void sema_check_method(sema *s, qg_method *m, sema_map *ids)
{
    sema_map names;
    qg_param *pa;
    qg_method *old;
    uint64_t id;

    memset(&names, 0, sizeof names);
    sema_check_name(s, m->loc, m->name);
    sema_check_type(s, m->result, true);
    if (m->oneway && m->result->kind != QG_T_VOID)
        qg_error(s->p, m->result->loc, "oneway method '%s' must return "
                 "void", m->name);
    for (pa = m->params; pa; pa = pa->next) {
        sema_check_field(s, &pa->f, true);
        sema_unique_name(s, &names, "parameter", pa->f.loc, pa->f.name);
        if (m->oneway && pa->dir != QG_IN)
            qg_error(s->p, pa->f.loc, "parameter '%s' of oneway method "
                     "'%s' cannot be %s", pa->f.name, m->name,
                     pa->dir == QG_OUT ? "out" : "inout");
    }
    if (!sema_eval_range(s, m->id_expr, 0, UINT32_MAX, "method id", &id))
        return;
    if (id == UINT32_MAX) {
        qg_error(s->p, m->id_expr->loc, "method id 4294967295 is reserved: every "
                 "service answers it as a ping (QRPC_METHOD_PING)");
        return;
    }
    m->id = (uint32_t)id;
    old = sema_map_add(s->p, ids, NULL, (int64_t)id, m);
    if (old) {
        qg_error(s->p, m->id_expr->loc, "method '%s' has the same id (%"
                 PRIu32 ") as '%s'", m->name, m->id, old->name);
        qg_note(s->p, old->loc, "'%s' is declared here", old->name);
    }
}

static void sema_check_service(sema *s, qg_decl *d)
{
    sema_map names, ids;
    qg_method *m;
    uint64_t v;

    memset(&names, 0, sizeof names);
    memset(&ids, 0, sizeof ids);
    ids.ints = true;
    if (sema_eval_range(s, d->version_expr, 0, UINT32_MAX,
                        "service version", &v))
        d->version = (uint32_t)v;
    if (!d->methods)
        qg_error(s->p, d->loc, "service '%s' has no methods", d->name);
    for (m = d->methods; m; m = m->next) {
        sema_check_method(s, m, &ids);
        sema_unique_name(s, &names, "method", m->loc, m->name);
    }
}

static void sema_check_decl(sema *s, qg_decl *d)
{
    sema_int v;

    switch (d->kind) {
    case QG_D_CONST:
        sema_value(s, d, &v);
        break;
    case QG_D_ENUM:
        if (!sema_map_find(&s->enum_values, NULL, sema_ptrkey(d)))
            sema_check_enum(s, d);
        break;
    case QG_D_ENUM_MEMBER:
        break;
    case QG_D_TYPEDEF:
        sema_check_field(s, d->tdef, false);
        break;
    case QG_D_STRUCT:
        sema_check_struct(s, d);
        break;
    case QG_D_UNION:
        sema_check_union(s, d);
        break;
    case QG_D_SERVICE:
        sema_check_service(s, d);
        break;
    }
}

/* ---- phase 4: containment by value -------------------------------------- */

static void sema_byval_decl(sema *s, qg_decl *d);

static void sema_byval_report(sema *s, qg_decl *target)
{
    size_t i, j;

    for (i = s->depth; i > 0 && s->stack[i - 1] != target; i--)
        ;
    i--;
    qg_error(s->p, target->loc, "%s '%s' contains itself; recursion must "
             "go through optional<> or list<>", qg_kind_word(target),
             target->name);
    for (j = i; j < s->depth; j++) {
        const qg_decl *from = s->stack[j];
        const qg_decl *to = j + 1 < s->depth ? s->stack[j + 1] : target;
        const qg_field *f = s->via[j];

        if (from->kind == QG_D_TYPEDEF)
            qg_note(s->p, f->loc, "'%s' is a typedef of '%s'", from->name,
                    to->name);
        else
            qg_note(s->p, f->loc, "'%s' contains '%s' in %s '%s'",
                    from->name, to->name,
                    from->kind == QG_D_UNION ? "arm" : "field", f->name);
    }
}

static void sema_byval_field(sema *s, qg_field *f)
{
    qg_decl *to;

    if (!f || f->type->kind != QG_T_NAMED || !f->type->ref)
        return;
    to = f->type->ref;
    if (to->kind != QG_D_TYPEDEF && to->kind != QG_D_STRUCT &&
        to->kind != QG_D_UNION)
        return;
    s->via[s->depth - 1] = f;
    if (to->state == SEMA_BUSY)
        sema_byval_report(s, to);
    else if (to->state == SEMA_UNSEEN)
        sema_byval_decl(s, to);
}

static void sema_byval_decl(sema *s, qg_decl *d)
{
    qg_field *f;
    qg_arm *a;

    d->state = SEMA_BUSY;
    sema_push(s, d);
    if (d->kind == QG_D_TYPEDEF) {
        sema_byval_field(s, d->tdef);
    } else if (d->kind == QG_D_STRUCT) {
        for (f = d->fields; f; f = f->next)
            sema_byval_field(s, f);
    } else if (d->kind == QG_D_UNION) {
        for (a = d->arms; a; a = a->next)
            sema_byval_field(s, a->field);
    }
    s->depth--;
    d->state = SEMA_DONE;
}

/* ---- phase 5: sizes and recursion --------------------------------------- */

static uint32_t sema_sat_add(uint32_t a, uint32_t b)
{
    return a > UINT32_MAX - b ? UINT32_MAX : a + b;
}

static uint32_t sema_size_decl(qg_decl *d);

static uint32_t sema_size_type(const qg_type *t)
{
    switch (t->kind) {
    case QG_T_VOID: return 0;
    case QG_T_BOOL: case QG_T_I8: case QG_T_U8: return 1;
    case QG_T_I16: case QG_T_U16: return 2;
    case QG_T_I32: case QG_T_U32: case QG_T_F32: return 4;
    case QG_T_I64: case QG_T_U64: case QG_T_F64: return 8;
    case QG_T_STRING: case QG_T_BYTES: case QG_T_LIST: return 4;
    case QG_T_OPTIONAL: return 1;
    case QG_T_NAMED: return sema_size_decl(t->ref);
    }
    return 0;
}

static uint32_t sema_size_field(const qg_field *f)
{
    uint64_t n = sema_size_type(f->type);

    if (f->array_len)
        n *= f->array_val;      /* < 2^32 * 2^21: no overflow */
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

static uint32_t sema_size_decl(qg_decl *d)
{
    uint32_t n = 0, arm, best;
    qg_field *f;
    qg_arm *a;

    if (d->state == SEMA_DONE)
        return d->min_size;
    switch (d->kind) {
    case QG_D_ENUM:
        n = 4;
        break;
    case QG_D_TYPEDEF:
        n = sema_size_field(d->tdef);
        break;
    case QG_D_STRUCT:
        for (f = d->fields; f; f = f->next)
            n = sema_sat_add(n, sema_size_field(f));
        break;
    case QG_D_UNION:
        best = UINT32_MAX;
        for (a = d->arms; a; a = a->next) {
            arm = a->field ? sema_size_field(a->field) : 0;
            if (arm < best)
                best = arm;
        }
        n = sema_sat_add(sema_size_type(d->disc_type), best);
        break;
    default:
        break;
    }
    d->min_size = n;
    d->state = SEMA_DONE;
    return n;
}

/* Tarjan's strongly connected components over the graph "type A names
 * type B anywhere in its definition"; by-value cycles are gone by now, so
 * every cycle goes through optional<> or list<>. */
typedef struct sema_node {
    qg_decl *d;
    size_t *succ;
    size_t n_succ, cap_succ;
    size_t index, low;
    bool on_stack, self, visited;
} sema_node;

typedef struct sema_graph {
    sema_node *nodes;
    size_t n;
    size_t *stack;
    size_t depth;
    size_t next_index;
} sema_graph;

static void sema_graph_type(sema *s, sema_graph *g, size_t from,
                            const qg_type *t)
{
    sema_node *nd = &g->nodes[from];
    const qg_decl *to;

    for (; t; t = t->elem) {
        if (t->kind != QG_T_NAMED || !t->ref)
            continue;
        to = t->ref;
        if (to->kind == QG_D_ENUM)
            continue;
        if (nd->n_succ == nd->cap_succ) {
            size_t cap = nd->cap_succ ? nd->cap_succ * 2 : 4;
            size_t *succ = qg_alloc(s->p, cap * sizeof *succ);

            if (nd->n_succ)
                memcpy(succ, nd->succ, nd->n_succ * sizeof *succ);
            nd->succ = succ;
            nd->cap_succ = cap;
        }
        nd->succ[nd->n_succ++] = (size_t)to->state - 1;
        if (to == nd->d)
            nd->self = true;
    }
}

static void sema_tarjan(sema_graph *g, size_t v)
{
    sema_node *nd = &g->nodes[v];
    size_t i, w, start, size;

    nd->visited = true;
    nd->index = nd->low = g->next_index++;
    g->stack[g->depth++] = v;
    nd->on_stack = true;
    for (i = 0; i < nd->n_succ; i++) {
        w = nd->succ[i];
        if (!g->nodes[w].visited) {
            sema_tarjan(g, w);
            if (g->nodes[w].low < nd->low)
                nd->low = g->nodes[w].low;
        } else if (g->nodes[w].on_stack && g->nodes[w].index < nd->low) {
            nd->low = g->nodes[w].index;
        }
    }
    if (nd->low != nd->index)
        return;
    /* v and what is above it on the stack form one component */
    start = g->depth;
    do
        start--;
    while (g->stack[start] != v);
    size = g->depth - start;
    for (i = start; i < g->depth; i++) {
        sema_node *m = &g->nodes[g->stack[i]];

        m->on_stack = false;
        m->d->recursive = size > 1 || m->self;
    }
    g->depth = start;
}

static void sema_recursion(sema *s)
{
    sema_graph g;
    qg_file *f;
    qg_decl *d;
    qg_field *fl;
    qg_arm *a;
    size_t i;

    memset(&g, 0, sizeof g);
    for (f = s->p->files; f; f = f->next)
        for (d = f->decls; d; d = d->next)
            if (d->kind == QG_D_TYPEDEF || d->kind == QG_D_STRUCT ||
                d->kind == QG_D_UNION)
                d->state = (int)++g.n;
    if (!g.n)
        return;
    g.nodes = qg_alloc(s->p, g.n * sizeof *g.nodes);
    g.stack = qg_alloc(s->p, g.n * sizeof *g.stack);
    for (f = s->p->files; f; f = f->next) {
        for (d = f->decls; d; d = d->next) {
            if (d->kind != QG_D_TYPEDEF && d->kind != QG_D_STRUCT &&
                d->kind != QG_D_UNION)
                continue;
            i = (size_t)d->state - 1;
            g.nodes[i].d = d;
            if (d->kind == QG_D_TYPEDEF)
                sema_graph_type(s, &g, i, d->tdef->type);
            for (fl = d->fields; fl; fl = fl->next)
                sema_graph_type(s, &g, i, fl->type);
            for (a = d->arms; a; a = a->next)
                if (a->field)
                    sema_graph_type(s, &g, i, a->field->type);
        }
    }
    for (i = 0; i < g.n; i++)
        if (!g.nodes[i].visited)
            sema_tarjan(&g, i);
}

/* ---- the pass ----------------------------------------------------------- */

static void sema_reset_states(sema *s)
{
    qg_file *f;
    qg_decl *d;

    for (f = s->p->files; f; f = f->next)
        for (d = f->decls; d; d = d->next)
            if (d->kind != QG_D_CONST)
                d->state = SEMA_UNSEEN;
}

bool qg_sema(qg_program *p)
{
    sema s;
    qg_file *f;
    qg_decl *d;

    memset(&s, 0, sizeof s);
    s.p = p;
    s.prev.ints = true;
    s.enum_values.ints = true;
    s.bad_package.ints = true;

    for (f = p->files; f; f = f->next)
        sema_declare(&s, f);
    sema_packages(&s);

    for (f = p->files; f; f = f->next) {
        s.file = f;
        for (d = f->decls; d; d = d->next)
            sema_resolve_decl(&s, d);
    }
    for (f = p->files; f; f = f->next)
        if (f->is_main)
            sema_unused_imports(&s, f);

    for (f = p->files; f; f = f->next) {
        s.file = f;
        for (d = f->decls; d; d = d->next)
            sema_check_decl(&s, d);
    }

    sema_reset_states(&s);
    for (f = p->files; f; f = f->next)
        for (d = f->decls; d; d = d->next)
            if (d->state == SEMA_UNSEEN &&
                (d->kind == QG_D_TYPEDEF || d->kind == QG_D_STRUCT ||
                 d->kind == QG_D_UNION))
                sema_byval_decl(&s, d);
    if (p->errors)
        return false;

    sema_reset_states(&s);
    for (f = p->files; f; f = f->next)
        for (d = f->decls; d; d = d->next)
            if (sema_is_type_decl(d))
                sema_size_decl(d);
    sema_recursion(&s);
    sema_reset_states(&s);
    for (f = p->files; f; f = f->next)
        for (d = f->decls; d; d = d->next)
            if (d->kind != QG_D_CONST)
                d->state = SEMA_DONE;

    for (f = p->files; f; f = f->next)
        if (f->is_main)
            qg_check_cnames(p, f);
    return p->errors == 0;
}
