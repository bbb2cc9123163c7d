/*
 * ast.h - the abstract syntax tree of a .qidl program, shared by the front
 * end (lexer.l, parser.y, loader.c, sema.c) and the back ends (gen_*.c).
 *
 * The parser builds the tree with every node carrying the file:line:col it
 * came from; sema.c then resolves names, evaluates constant expressions and
 * fills in the fields marked "sema" below.  The back ends only read a tree
 * that passed sema without errors.  All nodes live in one arena owned by the
 * qg_program and are freed together; nothing here is freed one by one.
 *
 * This is not the C type model: the back ends derive C spellings from it.
 */
#ifndef QRPCGEN_AST_H
#define QRPCGEN_AST_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

typedef struct qg_loc {
    const char *file;           /* path as given or resolved; arena-owned */
    int line;                   /* 1-based */
    int col;                    /* 1-based, in bytes */
} qg_loc;

typedef struct qg_decl qg_decl;
typedef struct qg_file qg_file;

/* ---- constant expressions ---------------------------------------------- */

typedef enum qg_expr_kind {
    QG_E_INT,                   /* literal: ival holds its value */
    QG_E_NAME,                  /* a const or an enum member; may be "pkg.NAME" */
    QG_E_UNARY,                 /* op is '-', '+' or '~'; operand in lhs */
    QG_E_BINARY                 /* op is one of + - * / % & | QG_OP_SHL QG_OP_SHR */
} qg_expr_kind;

enum { QG_OP_SHL = 256, QG_OP_SHR = 257 };

typedef struct qg_expr qg_expr;
struct qg_expr {
    qg_expr_kind kind;
    qg_loc loc;
    int op;
    qg_expr *lhs, *rhs;
    uint64_t lit;               /* QG_E_INT: the literal as written (unsigned) */
    const char *name;           /* QG_E_NAME: as written */
    qg_decl *ref;               /* sema: QG_D_CONST or QG_D_ENUM_MEMBER */
    int depth;                  /* parser: 1 for a leaf, else 1 + deepest operand */
};

/* Operators nest at most this deep (the parser says so past it). */
#define QG_MAX_EXPR_DEPTH 256

/* ---- types --------------------------------------------------------------- */

typedef enum qg_type_kind {
    QG_T_VOID,                  /* only as a method result or a union arm */
    QG_T_BOOL,
    QG_T_I8, QG_T_I16, QG_T_I32, QG_T_I64,
    QG_T_U8, QG_T_U16, QG_T_U32, QG_T_U64,
    QG_T_F32, QG_T_F64,
    QG_T_STRING,                /* string, string<N> */
    QG_T_BYTES,                 /* bytes, bytes<N> */
    QG_T_LIST,                  /* list<T>, list<T, N> */
    QG_T_OPTIONAL,              /* optional<T> */
    QG_T_NAMED                  /* a typedef, enum, struct or union by name */
} qg_type_kind;

typedef struct qg_type qg_type;
struct qg_type {
    qg_type_kind kind;
    qg_loc loc;
    qg_type *elem;              /* LIST, OPTIONAL: the element type */
    qg_expr *bound;             /* STRING, BYTES, LIST: NULL when unbounded */
    uint64_t bound_val;         /* sema: the bound's value, 0 when unbounded */
    const char *name;           /* NAMED: as written, "Money" or "common.Money" */
    qg_decl *ref;               /* sema, NAMED: the typedef/enum/struct/union */
    const char *ctag;           /* back ends: cached qg_cname_tag() */
};

/*
 * A declarator: a name, a type and an optional fixed array length, as in
 * "i32 pin[4]".  Used for struct fields, union arms, typedefs and params.
 */
typedef struct qg_field qg_field;
struct qg_field {
    qg_loc loc;                 /* of the name */
    const char *name;
    qg_type *type;
    qg_expr *array_len;         /* NULL unless a fixed array */
    uint64_t array_val;         /* sema: the evaluated length */
    const char *doc;            /* /// comment before it, or NULL */
    qg_field *next;
};

/* ---- unions ---------------------------------------------------------------- */

typedef struct qg_case qg_case;
struct qg_case {
    qg_loc loc;
    qg_expr *value;             /* NULL when is_bool */
    bool is_bool;               /* label written as true or false */
    bool bool_val;
    int64_t val;                /* sema: the label's value (bool: 0 or 1) */
    qg_case *next;
};

typedef struct qg_arm qg_arm;
struct qg_arm {
    qg_loc loc;
    qg_case *labels;            /* NULL for the default arm */
    bool is_default;
    qg_field *field;            /* NULL for "void" */
    qg_arm *next;
};

/* ---- services -------------------------------------------------------------- */

typedef enum qg_dir { QG_IN, QG_OUT, QG_INOUT } qg_dir;

typedef struct qg_param qg_param;
struct qg_param {
    qg_field f;                 /* name, type; array_len is always NULL */
    qg_dir dir;
    bool dir_explicit;          /* "in" was written */
    qg_param *next;
};

typedef struct qg_method qg_method;
struct qg_method {
    qg_loc loc;                 /* of the name */
    const char *name;
    const char *doc;
    qg_type *result;            /* QG_T_VOID for void */
    qg_param *params;
    qg_expr *id_expr;
    uint32_t id;                /* sema */
    bool idempotent;
    bool oneway;
    qg_method *next;
};

/* ---- declarations ---------------------------------------------------------- */

typedef enum qg_decl_kind {
    QG_D_CONST,
    QG_D_ENUM,
    QG_D_ENUM_MEMBER,           /* not in qg_file.decls; reached via the enum */
    QG_D_TYPEDEF,
    QG_D_STRUCT,
    QG_D_UNION,
    QG_D_SERVICE
} qg_decl_kind;

struct qg_decl {
    qg_decl_kind kind;
    qg_loc loc;                 /* of the name */
    const char *name;           /* as written, without package */
    const char *doc;            /* /// comment, or NULL */
    qg_file *file;              /* the file (package) that declares it */
    qg_decl *next;              /* next declaration of the file, in order */

    /* CONST */
    qg_type *const_type;        /* a scalar integer type */
    qg_expr *value;             /* CONST and ENUM_MEMBER (may be NULL for a member) */
    int64_t ival;               /* sema: CONST, ENUM_MEMBER value */
    uint64_t uval;              /* sema: same value for unsigned constants */

    /* ENUM */
    qg_decl *members;           /* ENUM_MEMBER list, linked through next */
    qg_decl *parent;            /* ENUM_MEMBER: its enum */

    /* TYPEDEF: the declarator; field.name equals decl name */
    qg_field *tdef;

    /* STRUCT */
    qg_field *fields;

    /* UNION */
    qg_type *disc_type;
    const char *disc_name;
    qg_loc disc_loc;
    qg_arm *arms;               /* in source order, default included */

    /* SERVICE */
    qg_expr *version_expr;
    uint32_t version;           /* sema */
    qg_method *methods;

    /* sema scratch and results */
    int state;                  /* sema: 0 unvisited, 1 in progress, 2 done */
    bool used;                  /* sema: referenced from the main file */
    uint32_t min_size;          /* sema: fewest bytes its encoding can take */
    bool recursive;             /* sema: reaches itself through optional/list */
    const char *cname;          /* back ends: cached qg_cname_decl() */
};

typedef struct qg_import qg_import;
struct qg_import {
    qg_loc loc;
    const char *path;           /* as written in the import line */
    qg_file *file;              /* loader: the file it names */
    bool used;                  /* sema: something of it was referenced */
    qg_import *next;
};

struct qg_file {
    const char *path;           /* path used to open it */
    const char *package;        /* NULL if the package line is missing */
    qg_loc package_loc;
    const char *doc;            /* /// comment before the package line */
    qg_import *imports;
    qg_decl *decls;             /* in source order */
    bool is_main;               /* named on the command line */
    void *symtab;               /* sema: name -> qg_decl, private to sema.c */
    qg_file *next;              /* all loaded files */

    /* Added by the front end, private to loader.c: */
    const char *canon;          /* realpath() of path: one qg_file per file */
    int load_state;             /* 1 while its imports load, 2 after */
};

typedef struct qg_program qg_program;

/* ---- the program, diagnostics and the arena (ast.c, diag.c) ------------- */

struct qg_program {
    qg_file *files;             /* every loaded file, main files included */
    const char **incdirs;       /* -I dirs, in order */
    int n_incdirs;
    int errors;
    int warnings;
    struct qg_arena *arena;

    /* Added by the front end: */
    bool werror;                /* -Werror: qg_warning reports an error */
};

qg_program *qg_program_new(void);
void qg_program_free(qg_program *p);
void *qg_alloc(qg_program *p, size_t n);            /* zeroed; aborts on OOM */
char *qg_strdup(qg_program *p, const char *s);
char *qg_strndup(qg_program *p, const char *s, size_t n);
char *qg_printf(qg_program *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* "struct", "enum member", ...: how messages name a declaration's kind. */
const char *qg_kind_word(const qg_decl *d);

/* gcc-style "file:line:col: error: msg" on stderr; counts in p->errors. */
void qg_error(qg_program *p, qg_loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void qg_warning(qg_program *p, qg_loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A follow-up line, "file:line:col: note: msg", not counted. */
void qg_note(qg_program *p, qg_loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * loader.c: parse the file at path and, recursively, its imports (resolved
 * relative to the importing file, then the -I dirs).  Returns the file, or
 * NULL if it could not be read; syntax errors are reported and counted and
 * the file is still returned with what could be parsed.  A file is loaded
 * once however often it is imported; import cycles are reported here.
 */
qg_file *qg_load(qg_program *p, const char *path, bool is_main);

/* parser.y through loader.c: parse one buffer into f. */
void qg_parse(qg_program *p, qg_file *f, const char *text, size_t len);

/* sema.c: resolve and check every loaded file; returns p->errors == 0. */
bool qg_sema(qg_program *p);

/* sema.c helpers for the back ends */
qg_type *qg_resolve_typedefs(qg_type *t);   /* follow NAMED typedefs without arrays */
bool qg_is_reserved(const char *name);

#endif
