/*
 * cname.c - the C spelling of every generated identifier, and the check
 * that no two of them collide.
 *
 * The rules are listed in cname.h.  The collision check generates, for one
 * main file, every identifier its outputs would define at file scope and
 * reports the second declaration that produces an identifier already
 * produced by another.  It also rejects parameter names that would clash
 * with the names the generated stubs use themselves.
 */
#include <stdlib.h>
#include <string.h>

#include "cname.h"

static const char *cname_scalar_tag(qg_type_kind k)
{
    switch (k) {
    case QG_T_BOOL: return "bool";
    case QG_T_I8: return "i8";
    case QG_T_I16: return "i16";
    case QG_T_I32: return "i32";
    case QG_T_I64: return "i64";
    case QG_T_U8: return "u8";
    case QG_T_U16: return "u16";
    case QG_T_U32: return "u32";
    case QG_T_U64: return "u64";
    case QG_T_F32: return "f32";
    case QG_T_F64: return "f64";
    case QG_T_STRING: return "string";
    case QG_T_BYTES: return "bytes";
    default: return "void";
    }
}

const char *qg_cname_decl(qg_program *p, const qg_decl *d)
{
    if (d->cname == NULL)
        ((qg_decl *)d)->cname = qg_printf(p, "%s_%s", d->file->package, d->name);
    return d->cname;
}

const char *qg_cname_member(qg_program *p, const qg_decl *m)
{
    return qg_printf(p, "%s_%s_%s", m->parent->file->package, m->parent->name,
                     m->name);
}

/*
 * A type node belongs to one file and its tag is only ever asked for with
 * that file as `in`, so the first answer is cached in the node: deep
 * nesting (list<list<...>>) would otherwise rebuild the inner tags at
 * every level, quadratically.
 */
const char *qg_cname_tag(qg_program *p, const qg_file *in, const qg_type *t)
{
    const char *tag;

    if (t->ctag != NULL)
        return t->ctag;
    switch (t->kind) {
    case QG_T_LIST:
        tag = qg_printf(p, "%s_list", qg_cname_tag(p, in, t->elem));
        break;
    case QG_T_OPTIONAL:
        tag = qg_printf(p, "%s_opt", qg_cname_tag(p, in, t->elem));
        break;
    case QG_T_NAMED:
        if (t->ref->file == in)
            tag = t->ref->name;
        else
            tag = qg_printf(p, "%s_%s", t->ref->file->package, t->ref->name);
        break;
    default:
        tag = cname_scalar_tag(t->kind);
        break;
    }
    ((qg_type *)t)->ctag = tag;
    return tag;
}

const char *qg_cname_list(qg_program *p, const qg_file *in, const qg_type *list)
{
    return qg_printf(p, "%s_%s", in->package, qg_cname_tag(p, in, list));
}

const char *qg_cname_method(qg_program *p, const qg_decl *svc, const qg_method *m)
{
    return qg_printf(p, "%s_%s_%s", svc->file->package, svc->name, m->name);
}

/* ---- the collision check ------------------------------------------------- */

typedef struct cname_entry {
    const char *name;
    const char *what;           /* "struct 'Money'" */
    qg_loc loc;
} cname_entry;

typedef struct cname_set {
    cname_entry *slots;
    size_t cap;
    size_t used;
    qg_program *p;
} cname_set;

static size_t cname_hash(const char *s)
{
    size_t h = 1469598103934665603u;

    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211u;
    return h;
}

static void cname_grow(cname_set *s)
{
    size_t ncap = s->cap ? s->cap * 2 : 256;
    cname_entry *ns = qg_alloc(s->p, ncap * sizeof *ns);
    size_t i;

    for (i = 0; i < s->cap; i++) {
        size_t j;

        if (s->slots[i].name == NULL)
            continue;
        j = cname_hash(s->slots[i].name) & (ncap - 1);
        while (ns[j].name != NULL)
            j = (j + 1) & (ncap - 1);
        ns[j] = s->slots[i];
    }
    s->slots = ns;              /* the old table stays in the arena */
    s->cap = ncap;
}

static void cname_add(cname_set *s, const char *name, const char *what, qg_loc loc)
{
    size_t j;

    if ((s->used + 1) * 2 > s->cap)
        cname_grow(s);
    j = cname_hash(name) & (s->cap - 1);
    while (s->slots[j].name != NULL) {
        if (strcmp(s->slots[j].name, name) == 0) {
            if (strcmp(s->slots[j].what, what) != 0) {
                qg_error(s->p, loc, "C name '%s' of %s collides with the one "
                         "generated for %s", name, what, s->slots[j].what);
                qg_note(s->p, s->slots[j].loc, "%s declared here", s->slots[j].what);
            }
            return;
        }
        j = (j + 1) & (s->cap - 1);
    }
    s->slots[j].name = name;
    s->slots[j].what = what;
    s->slots[j].loc = loc;
    s->used++;
}

static const char *const cname_type_suffixes[] = {
    "", "_encode", "_decode", "_free", "_copy", "_equal", "_random", NULL
};

static void cname_add_type(cname_set *s, const char *base, const char *what, qg_loc loc)
{
    int i;

    for (i = 0; cname_type_suffixes[i] != NULL; i++)
        cname_add(s, qg_printf(s->p, "%s%s", base, cname_type_suffixes[i]), what, loc);
}

static void cname_add_anon(cname_set *s, const qg_file *f, const qg_type *t);

static void cname_add_anon_field(cname_set *s, const qg_file *f, const qg_field *fd)
{
    if (fd != NULL && fd->type != NULL)
        cname_add_anon(s, f, fd->type);
}

/* Anonymous list and optional types get their own generated names. */
static void cname_add_anon(cname_set *s, const qg_file *f, const qg_type *t)
{
    const char *tag;

    if (t->kind != QG_T_LIST && t->kind != QG_T_OPTIONAL)
        return;
    cname_add_anon(s, f, t->elem);
    tag = qg_printf(s->p, "%s_%s", f->package, qg_cname_tag(s->p, f, t));
    /*
     * Two uses of the same anonymous type share its name; only a clash with
     * a declared name matters, so the anonymous type is entered under one
     * shared description.
     */
    cname_add_type(s, tag, qg_printf(s->p, "the anonymous type %s", tag), t->loc);
}

/*
 * Names of the C library that generated code uses next to user-chosen
 * names: a macro (NULL, errno, INT32_MAX) breaks a struct member of that
 * name, and a parameter named like a function or type the stub body uses
 * (free, memcpy, size_t, int32_t) shadows it.  User names are checked
 * against these and against the qrpc_/QRPC_ prefixes.
 */
static const char *const cname_clib[] = {
    "NULL", "errno", "assert", "offsetof", "EOF", "stdin", "stdout", "stderr",
    "free", "malloc", "calloc", "realloc", "memset", "memcpy", "memcmp",
    "memmove", "strlen", "strcmp", "strdup", "abort", "exit",
    "size_t", "ssize_t", "ptrdiff_t", "intptr_t", "uintptr_t", "intmax_t",
    "uintmax_t", "wchar_t", "max_align_t",
    "int8_t", "int16_t", "int32_t", "int64_t",
    "uint8_t", "uint16_t", "uint32_t", "uint64_t",
    "SIZE_MAX", "PTRDIFF_MIN", "PTRDIFF_MAX", "INTPTR_MIN", "INTPTR_MAX",
    "UINTPTR_MAX", "INTMAX_MIN", "INTMAX_MAX", "UINTMAX_MAX",
    "INTMAX_C", "UINTMAX_C", "__bool_true_false_are_defined", NULL
};

/* INT8_C .. UINT64_MAX: the <stdint.h> macros named after integer widths. */
static bool cname_is_stdint_macro(const char *n)
{
    static const char *const widths[] = { "8", "16", "32", "64", NULL };
    static const char *const tails[] = { "_C", "_MAX", "_MIN", NULL };
    int w, t;

    if (strncmp(n, "UINT", 4) == 0)
        n += 4;
    else if (strncmp(n, "INT", 3) == 0)
        n += 3;
    else
        return false;
    for (w = 0; widths[w]; w++) {
        size_t wl = strlen(widths[w]);

        if (strncmp(n, widths[w], wl) != 0)
            continue;
        for (t = 0; tails[t]; t++)
            if (strcmp(n + wl, tails[t]) == 0)
                return true;
    }
    return false;
}

static void cname_check_clib(qg_program *p, qg_loc loc, const char *what,
                             const char *name)
{
    int i;

    if (strncmp(name, "qrpc_", 5) == 0 || strncmp(name, "QRPC_", 5) == 0) {
        qg_error(p, loc, "%s name '%s' uses the prefix reserved for the qrpc "
                 "runtime", what, name);
        return;
    }
    for (i = 0; cname_clib[i] != NULL; i++) {
        if (strcmp(name, cname_clib[i]) == 0)
            break;
    }
    if (cname_clib[i] != NULL || cname_is_stdint_macro(name))
        qg_error(p, loc, "%s name '%s' is a name of the C library that the "
                 "generated code uses", what, name);
}

static const char *const cname_reserved_params[] = {
    "client", "ctx", "cb", "arg", "result", "args", "reply", "rc", NULL
};

static void cname_check_params(qg_program *p, const qg_method *m)
{
    const qg_param *pa;
    int i;

    for (pa = m->params; pa != NULL; pa = pa->next) {
        cname_check_clib(p, pa->f.loc, "parameter", pa->f.name);
        for (i = 0; cname_reserved_params[i] != NULL; i++) {
            if (strcmp(pa->f.name, cname_reserved_params[i]) == 0) {
                qg_error(p, pa->f.loc, "parameter name '%s' is reserved: the "
                         "generated stubs use it", pa->f.name);
                break;
            }
        }
    }
}


void qg_check_cnames(qg_program *p, qg_file *f)
{
    static const char *const svc_suffixes[] = {
        "_desc", "_handlers", "_serve", "_connect", "_methods", "_dispatch", NULL
    };
    static const char *const method_suffixes[] = {
        "", "_async", "_cb", "_reply", "_reply_free", "_ID", "_put_args", "_take",
        "_done", "_dispatch", "_reply_decode", "_reply_encode", NULL
    };
    cname_set s;
    qg_decl *d;

    memset(&s, 0, sizeof s);
    s.p = p;
    for (d = f->decls; d != NULL; d = d->next) {
        const char *what = qg_printf(p, "%s '%s'", qg_kind_word(d), d->name);
        const char *base = qg_cname_decl(p, d);
        const qg_decl *m;
        const qg_field *fd;
        const qg_arm *arm;
        const qg_method *me;
        int i;

        switch (d->kind) {
        case QG_D_CONST:
            cname_add(&s, base, what, d->loc);
            break;
        case QG_D_ENUM:
            cname_add_type(&s, base, what, d->loc);
            cname_add(&s, qg_printf(p, "%s_valid", base), what, d->loc);
            cname_add(&s, qg_printf(p, "%s_name", base), what, d->loc);
            for (m = d->members; m != NULL; m = m->next)
                cname_add(&s, qg_cname_member(p, m),
                          qg_printf(p, "enum member '%s'", m->name), m->loc);
            break;
        case QG_D_TYPEDEF:
            cname_add_type(&s, base, what, d->loc);
            cname_add_anon_field(&s, f, d->tdef);
            break;
        case QG_D_STRUCT:
            cname_add_type(&s, base, what, d->loc);
            for (fd = d->fields; fd != NULL; fd = fd->next) {
                cname_check_clib(p, fd->loc, "field", fd->name);
                cname_add_anon_field(&s, f, fd);
            }
            break;
        case QG_D_UNION:
            cname_add_type(&s, base, what, d->loc);
            cname_check_clib(p, d->disc_loc, "discriminant", d->disc_name);
            for (arm = d->arms; arm != NULL; arm = arm->next) {
                if (arm->field != NULL)
                    cname_check_clib(p, arm->field->loc, "union arm", arm->field->name);
                cname_add_anon_field(&s, f, arm->field);
            }
            break;
        case QG_D_SERVICE:
            for (i = 0; svc_suffixes[i] != NULL; i++)
                cname_add(&s, qg_printf(p, "%s%s", base, svc_suffixes[i]), what, d->loc);
            for (me = d->methods; me != NULL; me = me->next) {
                const char *mw = qg_printf(p, "method '%s.%s'", d->name, me->name);
                const char *mb = qg_cname_method(p, d, me);
                const qg_param *pa;

                cname_check_clib(p, me->loc, "method", me->name);
                for (i = 0; method_suffixes[i] != NULL; i++)
                    cname_add(&s, qg_printf(p, "%s%s", mb, method_suffixes[i]), mw, me->loc);
                cname_add_anon(&s, f, me->result);
                for (pa = me->params; pa != NULL; pa = pa->next)
                    cname_add_anon(&s, f, pa->f.type);
                cname_check_params(p, me);
            }
            break;
        case QG_D_ENUM_MEMBER:
            break;
        }
    }
}
