/*
 * parser.y - the grammar of .qidl files (see qidl(5)): a pure (reentrant)
 * bison parser that builds the syntax tree of ast.h for one file.
 *
 * It checks only what the grammar can see: the order and uniqueness of the
 * package line, reserved words used as names, a 'default' label sharing an
 * arm, fixed-array parameters, empty import paths.  Names are resolved and values computed
 * later, in sema.c, so a declaration may be used before it is written.
 *
 * Syntax errors are reported by a custom reporter in the style of bison's
 * "detailed" errors ("syntax error, unexpected X, expecting Y or Z"); LAC
 * keeps the list of expected tokens exact.  Error productions at the
 * declaration, field, arm and method level resume after the next ';' or
 * '}', so one run reports several syntax errors.
 *
 * The '>>' token: the scanner cannot know whether '>>' is a shift or two
 * closing brackets of nested type arguments (list<list<i32>>), so the type
 * rules accept SHR wherever two '>' close.  A bound inside <...> is a
 * constant expression without a top-level '>>' (parenthesize a shift).
 *
 * Every node gets the file:line:col of its first token; declarations,
 * fields, params and methods get the location of their name.  /// doc
 * comments arrive attached to the location of the token that follows them
 * (see lexer.l) and are taken from the first token of a construct.
 */

%code requires {
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ast.h"

#ifndef YY_TYPEDEF_YY_SCANNER_T
#define YY_TYPEDEF_YY_SCANNER_T
typedef void *yyscan_t;
#endif

/* A location: where a token or rule starts and ends, and the /// comment
 * that came right before its first token.  `empty` marks the location of an
 * empty rule, which never supplies a start or a doc comment. */
typedef struct qg_yyltype {
    int first_line, first_column;
    int last_line, last_column;
    const char *doc;
    bool empty;
} qg_yyltype;

/* State shared by the scanner and the parser of one file. */
typedef struct qg_parse_ctx {
    qg_program *p;
    qg_file *f;
    int line, col;              /* scanner: where the next byte is */
    char *doc;                  /* scanner: /// text not yet attached */
    qg_yyltype comment_start;   /* scanner: the open block comment */
    bool saw_package_kw;        /* scanner: a 'package' token was read */
    bool seen_item;             /* parser: an import or declaration came */
    int syntax_errors;          /* parser: syntax errors reported */
    qg_decl *decl_tail;         /* parser: last of f->decls */
    qg_import *import_tail;     /* parser: last of f->imports */
} qg_parse_ctx;

/* Lists under construction (appended in order). */
typedef struct { qg_field *head, *tail; } qg_field_list;
typedef struct { qg_decl *head, *tail; } qg_decl_list;
typedef struct { qg_arm *head, *tail; } qg_arm_list;
typedef struct { qg_param *head, *tail; } qg_param_list;
typedef struct { qg_method *head, *tail; } qg_method_list;
typedef struct {
    qg_case *head, *tail;       /* the case labels */
    int n_default;              /* 'default' labels among them */
    int n_labels;
    qg_yyltype default_loc;
} qg_label_list;
}

%define api.pure full
%define api.location.type {qg_yyltype}
%define parse.error custom
%define parse.lac full
%locations
%param {yyscan_t scanner}

%code {
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lexer.h"

#define YYLLOC_DEFAULT(Cur, Rhs, N) parse_lloc_default(&(Cur), (Rhs), (N))

/* Appends x (if not NULL) to a qg_*_list. */
#define PARSE_APPEND(l, x) do {                                 \
        if (x) {                                                \
            if ((l).tail)                                       \
                (l).tail->next = (x);                           \
            else                                                \
                (l).head = (x);                                 \
            (l).tail = (x);                                     \
        }                                                       \
    } while (0)

#define CTX ((qg_parse_ctx *)yyget_extra(scanner))
#define PROG (CTX->p)
#define LOC(l) parse_loc(CTX, &(l))

static void parse_lloc_default(qg_yyltype *cur, const qg_yyltype *rhs, int n);
static qg_loc parse_loc(const qg_parse_ctx *ctx, const qg_yyltype *l);
static void yyerror(qg_yyltype *loc, yyscan_t scanner, const char *msg);
static qg_type *parse_type(yyscan_t scanner, qg_type_kind kind,
                           const qg_yyltype *loc);
static qg_type *parse_bounded(yyscan_t scanner, qg_type_kind kind,
                              const qg_yyltype *loc, qg_type *elem,
                              qg_expr *bound);
static qg_expr *parse_binary(yyscan_t scanner, int op, qg_expr *lhs,
                             qg_expr *rhs, const qg_yyltype *loc);
static qg_expr *parse_unary(yyscan_t scanner, int op, qg_expr *operand,
                            const qg_yyltype *loc);
static qg_field *parse_field(yyscan_t scanner, qg_type *type,
                             const char *name, const qg_yyltype *name_loc,
                             qg_expr *array_len, const char *doc);
static qg_decl *parse_decl(yyscan_t scanner, qg_decl_kind kind,
                           const char *name, const qg_yyltype *name_loc,
                           const char *doc);
static void parse_package(yyscan_t scanner, const char *name,
                          const qg_yyltype *kw_loc,
                          const qg_yyltype *name_loc);
static void parse_import(yyscan_t scanner, const char *path,
                         const qg_yyltype *loc);
static void parse_add_decl(yyscan_t scanner, qg_decl *d);
static void parse_add_label(qg_label_list *l, qg_case *c,
                            const qg_yyltype *loc);
static qg_arm *parse_arm(yyscan_t scanner, const qg_label_list *l,
                         const qg_yyltype *loc);
}

%union {
    const char *str;
    uint64_t num;
    int flag;
    qg_expr *expr;
    qg_type *type;
    qg_field *field;
    qg_decl *decl;
    qg_case *kase;
    qg_arm *arm;
    qg_param *param;
    qg_method *method;
    qg_field_list fields;
    qg_decl_list decls;
    qg_arm_list arms;
    qg_param_list params;
    qg_method_list methods;
    qg_label_list labels;
}

%token <str> IDENT "identifier"
%token <num> INT "integer literal"
%token <str> STR "string literal"
%token SHL "'<<'"
%token SHR "'>>'"
%token <str> KW_PACKAGE "'package'" KW_IMPORT "'import'" KW_CONST "'const'"
%token <str> KW_ENUM "'enum'" KW_TYPEDEF "'typedef'" KW_STRUCT "'struct'"
%token <str> KW_UNION "'union'" KW_SWITCH "'switch'" KW_CASE "'case'"
%token <str> KW_DEFAULT "'default'" KW_SERVICE "'service'"
%token <str> KW_VERSION "'version'" KW_IDEMPOTENT "'idempotent'"
%token <str> KW_ONEWAY "'oneway'" KW_IN "'in'" KW_OUT "'out'"
%token <str> KW_INOUT "'inout'" KW_VOID "'void'" KW_BOOL "'bool'"
%token <str> KW_I8 "'i8'" KW_I16 "'i16'" KW_I32 "'i32'" KW_I64 "'i64'"
%token <str> KW_U8 "'u8'" KW_U16 "'u16'" KW_U32 "'u32'" KW_U64 "'u64'"
%token <str> KW_F32 "'f32'" KW_F64 "'f64'" KW_STRING "'string'"
%token <str> KW_BYTES "'bytes'" KW_LIST "'list'" KW_OPTIONAL "'optional'"
%token <str> KW_TRUE "'true'" KW_FALSE "'false'"

%type <str> name reserved qname
%type <expr> expr or_e and_e sh_e add_e mul_e un_e prim
%type <expr> bexpr b_or b_and b_sh array_opt
%type <type> type tc
%type <flag> scalar flags dir
%type <decl> decl const_decl enum_decl typedef_decl struct_decl union_decl
%type <decl> service_decl enum_member
%type <decls> enum_body enum_list
%type <field> field
%type <fields> field_list
%type <kase> label
%type <labels> labels
%type <arm> arm
%type <arms> arm_list
%type <param> param
%type <params> params param_list
%type <method> method
%type <methods> method_list

%%

file
    : %empty
    | file item
    ;

item
    : KW_PACKAGE name ';'
        { parse_package(scanner, $2, &@1, &@2); }
    | KW_IMPORT STR ';'
        { parse_import(scanner, $2, &@2); }
    | decl
        { parse_add_decl(scanner, $1); }
    | error ';'
    | error '}'
    ;

decl
    : const_decl
    | enum_decl
    | typedef_decl
    | struct_decl
    | union_decl
    | service_decl
    ;

/* ---- names -------------------------------------------------------------- */

name
    : IDENT
    | reserved
        {
            qg_error(PROG, LOC(@1), "'%s' is a reserved word", $1);
            $$ = $1;
        }
    ;

reserved
    : KW_PACKAGE | KW_IMPORT | KW_CONST | KW_ENUM | KW_TYPEDEF | KW_STRUCT
    | KW_UNION | KW_SWITCH | KW_CASE | KW_DEFAULT | KW_SERVICE | KW_VERSION
    | KW_IDEMPOTENT | KW_ONEWAY | KW_IN | KW_OUT | KW_INOUT | KW_VOID
    | KW_BOOL | KW_I8 | KW_I16 | KW_I32 | KW_I64 | KW_U8 | KW_U16 | KW_U32
    | KW_U64 | KW_F32 | KW_F64 | KW_STRING | KW_BYTES | KW_LIST
    | KW_OPTIONAL | KW_TRUE | KW_FALSE
    ;

qname
    : IDENT
    | IDENT '.' IDENT
        { $$ = qg_printf(PROG, "%s.%s", $1, $3); }
    ;

/* ---- declarations ------------------------------------------------------- */

const_decl
    : KW_CONST type name '=' expr ';'
        {
            $$ = parse_decl(scanner, QG_D_CONST, $3, &@3, @$.doc);
            $$->const_type = $2;
            $$->value = $5;
        }
    ;

enum_decl
    : KW_ENUM name '{' enum_body '}'
        {
            qg_decl *m;

            $$ = parse_decl(scanner, QG_D_ENUM, $2, &@2, @$.doc);
            $$->members = $4.head;
            for (m = $4.head; m; m = m->next)
                m->parent = $$;
        }
    ;

enum_body
    : %empty
        { $$.head = $$.tail = NULL; }
    | enum_list
    | enum_list ','
    ;

enum_list
    : enum_member
        { $$.head = $$.tail = $1; }
    | enum_list ',' enum_member
        { $$ = $1; PARSE_APPEND($$, $3); }
    ;

enum_member
    : name
        { $$ = parse_decl(scanner, QG_D_ENUM_MEMBER, $1, &@1, @$.doc); }
    | name '=' expr
        {
            $$ = parse_decl(scanner, QG_D_ENUM_MEMBER, $1, &@1, @$.doc);
            $$->value = $3;
        }
    ;

typedef_decl
    : KW_TYPEDEF type name array_opt ';'
        {
            $$ = parse_decl(scanner, QG_D_TYPEDEF, $3, &@3, @$.doc);
            $$->tdef = parse_field(scanner, $2, $3, &@3, $4, NULL);
        }
    ;

struct_decl
    : KW_STRUCT name '{' field_list '}'
        {
            $$ = parse_decl(scanner, QG_D_STRUCT, $2, &@2, @$.doc);
            $$->fields = $4.head;
        }
    ;

field_list
    : %empty
        { $$.head = $$.tail = NULL; }
    | field_list field
        { $$ = $1; PARSE_APPEND($$, $2); }
    | field_list error ';'
    ;

field
    : type name array_opt ';'
        { $$ = parse_field(scanner, $1, $2, &@2, $3, @$.doc); }
    ;

array_opt
    : %empty
        { $$ = NULL; }
    | '[' expr ']'
        { $$ = $2; }
    ;

union_decl
    : KW_UNION name KW_SWITCH '(' type name ')' '{' arm_list '}'
        {
            $$ = parse_decl(scanner, QG_D_UNION, $2, &@2, @$.doc);
            $$->disc_type = $5;
            $$->disc_name = $6;
            $$->disc_loc = LOC(@6);
            $$->arms = $9.head;
        }
    ;

arm_list
    : %empty
        { $$.head = $$.tail = NULL; }
    | arm_list arm
        { $$ = $1; PARSE_APPEND($$, $2); }
    | arm_list error ';'
    ;

arm
    : labels type name array_opt ';'
        {
            $$ = parse_arm(scanner, &$1, &@1);
            $$->field = parse_field(scanner, $2, $3, &@3, $4, @$.doc);
        }
    | labels KW_VOID ';'
        { $$ = parse_arm(scanner, &$1, &@1); }
    ;

labels
    : label
        {
            memset(&$$, 0, sizeof $$);
            parse_add_label(&$$, $1, &@1);
        }
    | labels label
        {
            $$ = $1;
            parse_add_label(&$$, $2, &@2);
        }
    ;

/* A case label, or NULL for 'default'. */
label
    : KW_CASE expr ':'
        {
            $$ = qg_alloc(PROG, sizeof *$$);
            $$->loc = LOC(@2);
            $$->value = $2;
        }
    | KW_CASE KW_TRUE ':'
        {
            $$ = qg_alloc(PROG, sizeof *$$);
            $$->loc = LOC(@2);
            $$->is_bool = true;
            $$->bool_val = true;
        }
    | KW_CASE KW_FALSE ':'
        {
            $$ = qg_alloc(PROG, sizeof *$$);
            $$->loc = LOC(@2);
            $$->is_bool = true;
        }
    | KW_DEFAULT ':'
        { $$ = NULL; }
    ;

service_decl
    : KW_SERVICE name KW_VERSION expr '{' method_list '}'
        {
            $$ = parse_decl(scanner, QG_D_SERVICE, $2, &@2, @$.doc);
            $$->version_expr = $4;
            $$->methods = $6.head;
        }
    ;

method_list
    : %empty
        { $$.head = $$.tail = NULL; }
    | method_list method
        { $$ = $1; PARSE_APPEND($$, $2); }
    | method_list error ';'
    ;

method
    : flags type name '(' params ')' '=' expr ';'
        {
            $$ = qg_alloc(PROG, sizeof *$$);
            $$->loc = LOC(@3);
            $$->name = $3;
            $$->doc = @$.doc;
            $$->result = $2;
            $$->params = $5.head;
            $$->id_expr = $8;
            $$->idempotent = $1 == 1;
            $$->oneway = $1 == 2;
        }
    ;

/* 0: none, 1: idempotent, 2: oneway */
flags
    : %empty        { $$ = 0; }
    | KW_IDEMPOTENT { $$ = 1; }
    | KW_ONEWAY     { $$ = 2; }
    ;

params
    : %empty
        { $$.head = $$.tail = NULL; }
    | param_list
    ;

param_list
    : param
        { $$.head = $$.tail = $1; }
    | param_list ',' param
        { $$ = $1; PARSE_APPEND($$, $3); }
    ;

param
    : dir type name array_opt
        {
            $$ = qg_alloc(PROG, sizeof *$$);
            $$->f.loc = LOC(@3);
            $$->f.name = $3;
            $$->f.type = $2;
            $$->f.doc = @$.doc;
            $$->dir = $1 == 3 ? QG_INOUT : $1 == 2 ? QG_OUT : QG_IN;
            $$->dir_explicit = $1 != 0;
            if ($4)
                qg_error(PROG, LOC(@4), "parameter '%s' cannot be a fixed "
                         "array; declare a typedef for the array type and "
                         "use that", $3);
        }
    ;

/* 0: in by default, 1: in, 2: out, 3: inout */
dir
    : %empty    { $$ = 0; }
    | KW_IN     { $$ = 1; }
    | KW_OUT    { $$ = 2; }
    | KW_INOUT  { $$ = 3; }
    ;

/* ---- types -------------------------------------------------------------- */

type
    : scalar
        { $$ = parse_type(scanner, (qg_type_kind)$1, &@1); }
    | KW_VOID
        { $$ = parse_type(scanner, QG_T_VOID, &@1); }
    | KW_STRING
        { $$ = parse_type(scanner, QG_T_STRING, &@1); }
    | KW_BYTES
        { $$ = parse_type(scanner, QG_T_BYTES, &@1); }
    | qname
        {
            $$ = parse_type(scanner, QG_T_NAMED, &@1);
            $$->name = $1;
        }
    | KW_STRING '<' bexpr '>'
        { $$ = parse_bounded(scanner, QG_T_STRING, &@1, NULL, $3); }
    | KW_BYTES '<' bexpr '>'
        { $$ = parse_bounded(scanner, QG_T_BYTES, &@1, NULL, $3); }
    | KW_LIST '<' tc
        { $$ = parse_bounded(scanner, QG_T_LIST, &@1, $3, NULL); }
    | KW_LIST '<' type ',' bexpr '>'
        { $$ = parse_bounded(scanner, QG_T_LIST, &@1, $3, $5); }
    | KW_OPTIONAL '<' tc
        { $$ = parse_bounded(scanner, QG_T_OPTIONAL, &@1, $3, NULL); }
    ;

/* A type followed by one closing '>' that belongs to an enclosing type;
 * where the type itself ends in '>', the two arrive as one SHR token. */
tc
    : type '>'
        { $$ = $1; }
    | KW_LIST '<' type SHR
        { $$ = parse_bounded(scanner, QG_T_LIST, &@1, $3, NULL); }
    | KW_LIST '<' type ',' bexpr SHR
        { $$ = parse_bounded(scanner, QG_T_LIST, &@1, $3, $5); }
    | KW_OPTIONAL '<' type SHR
        { $$ = parse_bounded(scanner, QG_T_OPTIONAL, &@1, $3, NULL); }
    | KW_STRING '<' bexpr SHR
        { $$ = parse_bounded(scanner, QG_T_STRING, &@1, NULL, $3); }
    | KW_BYTES '<' bexpr SHR
        { $$ = parse_bounded(scanner, QG_T_BYTES, &@1, NULL, $3); }
    ;

scalar
    : KW_BOOL   { $$ = QG_T_BOOL; }
    | KW_I8     { $$ = QG_T_I8; }
    | KW_I16    { $$ = QG_T_I16; }
    | KW_I32    { $$ = QG_T_I32; }
    | KW_I64    { $$ = QG_T_I64; }
    | KW_U8     { $$ = QG_T_U8; }
    | KW_U16    { $$ = QG_T_U16; }
    | KW_U32    { $$ = QG_T_U32; }
    | KW_U64    { $$ = QG_T_U64; }
    | KW_F32    { $$ = QG_T_F32; }
    | KW_F64    { $$ = QG_T_F64; }
    ;

/* ---- constant expressions (C precedence; no comparisons, no '^') -------- */

expr
    : or_e
    ;

or_e
    : and_e
    | or_e '|' and_e    { $$ = parse_binary(scanner, '|', $1, $3, &@$); }
    ;

and_e
    : sh_e
    | and_e '&' sh_e    { $$ = parse_binary(scanner, '&', $1, $3, &@$); }
    ;

sh_e
    : add_e
    | sh_e SHL add_e    { $$ = parse_binary(scanner, QG_OP_SHL, $1, $3, &@$); }
    | sh_e SHR add_e    { $$ = parse_binary(scanner, QG_OP_SHR, $1, $3, &@$); }
    ;

add_e
    : mul_e
    | add_e '+' mul_e   { $$ = parse_binary(scanner, '+', $1, $3, &@$); }
    | add_e '-' mul_e   { $$ = parse_binary(scanner, '-', $1, $3, &@$); }
    ;

mul_e
    : un_e
    | mul_e '*' un_e    { $$ = parse_binary(scanner, '*', $1, $3, &@$); }
    | mul_e '/' un_e    { $$ = parse_binary(scanner, '/', $1, $3, &@$); }
    | mul_e '%' un_e    { $$ = parse_binary(scanner, '%', $1, $3, &@$); }
    ;

un_e
    : prim
    | '-' un_e          { $$ = parse_unary(scanner, '-', $2, &@$); }
    | '+' un_e          { $$ = parse_unary(scanner, '+', $2, &@$); }
    | '~' un_e          { $$ = parse_unary(scanner, '~', $2, &@$); }
    ;

prim
    : INT
        {
            $$ = qg_alloc(PROG, sizeof *$$);
            $$->kind = QG_E_INT;
            $$->loc = LOC(@1);
            $$->lit = $1;
        }
    | qname
        {
            $$ = qg_alloc(PROG, sizeof *$$);
            $$->kind = QG_E_NAME;
            $$->loc = LOC(@1);
            $$->name = $1;
        }
    | '(' expr ')'
        { $$ = $2; }
    ;

/* A bound inside <...>: no top-level '>>', which would close the brackets. */
bexpr
    : b_or
    ;

b_or
    : b_and
    | b_or '|' b_and    { $$ = parse_binary(scanner, '|', $1, $3, &@$); }
    ;

b_and
    : b_sh
    | b_and '&' b_sh    { $$ = parse_binary(scanner, '&', $1, $3, &@$); }
    ;

b_sh
    : add_e
    | b_sh SHL add_e    { $$ = parse_binary(scanner, QG_OP_SHL, $1, $3, &@$); }
    ;

%%

static void parse_lloc_default(qg_yyltype *cur, const qg_yyltype *rhs, int n)
{
    int i;

    /* rhs[1..n] are the symbols of the rule, rhs[0] the one before it. */
    for (i = 1; i <= n && rhs[i].empty; i++)
        ;
    if (i <= n) {
        cur->first_line = rhs[i].first_line;
        cur->first_column = rhs[i].first_column;
        cur->doc = rhs[i].doc;
        cur->empty = false;
        cur->last_line = rhs[n].last_line;
        cur->last_column = rhs[n].last_column;
    } else {
        cur->first_line = cur->last_line = rhs[0].last_line;
        cur->first_column = cur->last_column = rhs[0].last_column;
        cur->doc = NULL;
        cur->empty = true;
    }
}

static qg_loc parse_loc(const qg_parse_ctx *ctx, const qg_yyltype *l)
{
    qg_loc loc;

    loc.file = ctx->f->path;
    loc.line = l->first_line;
    loc.col = l->first_column;
    return loc;
}

/* Bison calls this only for its own failures (a parse stack exhausted by
 * absurd nesting); syntax errors go through yyreport_syntax_error(). */
static void yyerror(qg_yyltype *loc, yyscan_t scanner, const char *msg)
{
    qg_parse_ctx *ctx = yyget_extra(scanner);

    qg_error(ctx->p, parse_loc(ctx, loc), "%s", msg);
}

static bool parse_is_operator(yysymbol_kind_t sym)
{
    static const char *const ops[] = {
        "'+'", "'-'", "'*'", "'/'", "'%'", "'&'", "'|'", "'<<'", "'>>'",
    };
    const char *name = yysymbol_name(sym);
    size_t i;

    for (i = 0; i < sizeof ops / sizeof *ops; i++)
        if (strcmp(name, ops[i]) == 0)
            return true;
    return false;
}

/*
 * "syntax error, unexpected X, expecting A or B": like bison's detailed
 * messages, with the expected tokens listed when there are at most four.
 * After a complete expression every binary operator could follow; they are
 * left out of the list so that it shows what was probably missing (a ';').
 */
static int yyreport_syntax_error(const yypcontext_t *yyctx, yyscan_t scanner)
{
    qg_parse_ctx *ctx = yyget_extra(scanner);
    yysymbol_kind_t expected[YYNTOKENS];
    yysymbol_kind_t tok = yypcontext_token(yyctx);
    int n = yypcontext_expected_tokens(yyctx, expected, YYNTOKENS);
    bool after_expr = false;
    char msg[512];
    size_t len;
    int i, k;

    for (i = 0; i < n; i++)
        if (strcmp(yysymbol_name(expected[i]), "'*'") == 0)
            after_expr = true;
    for (i = k = 0; i < n; i++)
        if (!after_expr || !parse_is_operator(expected[i]))
            expected[k++] = expected[i];
    n = k;
    len = (size_t)snprintf(msg, sizeof msg, "syntax error");
    if (tok != YYSYMBOL_YYEMPTY)
        len += (size_t)snprintf(msg + len, sizeof msg - len,
                                ", unexpected %s", yysymbol_name(tok));
    for (i = 0; n <= 4 && i < n && len < sizeof msg; i++)
        len += (size_t)snprintf(msg + len, sizeof msg - len, "%s%s",
                                i == 0 ? ", expecting " : " or ",
                                yysymbol_name(expected[i]));
    qg_error(ctx->p, parse_loc(ctx, yypcontext_location(yyctx)), "%s", msg);
    ctx->syntax_errors++;
    return 0;
}

static qg_type *parse_type(yyscan_t scanner, qg_type_kind kind,
                           const qg_yyltype *loc)
{
    qg_type *t = qg_alloc(PROG, sizeof *t);

    t->kind = kind;
    t->loc = parse_loc(CTX, loc);
    return t;
}

static qg_type *parse_bounded(yyscan_t scanner, qg_type_kind kind,
                              const qg_yyltype *loc, qg_type *elem,
                              qg_expr *bound)
{
    qg_type *t = parse_type(scanner, kind, loc);

    t->elem = elem;
    t->bound = bound;
    return t;
}

static int parse_depth(const qg_expr *e)
{
    return e == NULL ? 0 : e->depth > 0 ? e->depth : 1;
}

/*
 * Sema walks expressions recursively, so their depth is bounded here: a
 * chain like 0+0+...+0 of a hundred thousand terms would otherwise
 * overflow its stack.  Past the limit the expression is reported once and
 * replaced by the literal 0, which stops it growing.
 */
static qg_expr *parse_depth_check(yyscan_t scanner, qg_expr *e)
{
    if (e->depth <= QG_MAX_EXPR_DEPTH)
        return e;
    if (e->depth == QG_MAX_EXPR_DEPTH + 1)
        qg_error(PROG, e->loc, "expression nested more than %d deep",
                 QG_MAX_EXPR_DEPTH);
    e->kind = QG_E_INT;
    e->lit = 0;
    e->lhs = e->rhs = NULL;
    e->depth = QG_MAX_EXPR_DEPTH + 2;   /* stays over: no second error */
    return e;
}

static qg_expr *parse_binary(yyscan_t scanner, int op, qg_expr *lhs,
                             qg_expr *rhs, const qg_yyltype *loc)
{
    qg_expr *e = qg_alloc(PROG, sizeof *e);

    e->kind = QG_E_BINARY;
    e->loc = parse_loc(CTX, loc);
    e->op = op;
    e->lhs = lhs;
    e->rhs = rhs;
    e->depth = 1 + (parse_depth(lhs) > parse_depth(rhs) ? parse_depth(lhs) : parse_depth(rhs));
    return parse_depth_check(scanner, e);
}

static qg_expr *parse_unary(yyscan_t scanner, int op, qg_expr *operand,
                            const qg_yyltype *loc)
{
    qg_expr *e = qg_alloc(PROG, sizeof *e);

    e->kind = QG_E_UNARY;
    e->loc = parse_loc(CTX, loc);
    e->op = op;
    e->lhs = operand;
    e->depth = 1 + parse_depth(operand);
    return parse_depth_check(scanner, e);
}

static qg_field *parse_field(yyscan_t scanner, qg_type *type,
                             const char *name, const qg_yyltype *name_loc,
                             qg_expr *array_len, const char *doc)
{
    qg_field *f = qg_alloc(PROG, sizeof *f);

    f->loc = parse_loc(CTX, name_loc);
    f->name = name;
    f->type = type;
    f->array_len = array_len;
    f->doc = doc;
    return f;
}

static qg_decl *parse_decl(yyscan_t scanner, qg_decl_kind kind,
                           const char *name, const qg_yyltype *name_loc,
                           const char *doc)
{
    qg_decl *d = qg_alloc(PROG, sizeof *d);

    d->kind = kind;
    d->loc = parse_loc(CTX, name_loc);
    d->name = name;
    d->doc = doc;
    d->file = CTX->f;
    return d;
}

static void parse_package(yyscan_t scanner, const char *name,
                          const qg_yyltype *kw_loc,
                          const qg_yyltype *name_loc)
{
    qg_parse_ctx *ctx = CTX;
    qg_file *f = ctx->f;

    if (f->package) {
        qg_error(ctx->p, parse_loc(ctx, kw_loc), "repeated package line");
        qg_note(ctx->p, f->package_loc, "the package is declared here");
        return;
    }
    if (ctx->seen_item)
        qg_error(ctx->p, parse_loc(ctx, kw_loc),
                 "the package line must come before imports and "
                 "declarations");
    f->package = name;
    f->package_loc = parse_loc(ctx, name_loc);
    f->doc = kw_loc->doc;
}

static void parse_import(yyscan_t scanner, const char *path,
                         const qg_yyltype *loc)
{
    qg_parse_ctx *ctx = CTX;
    qg_import *imp = qg_alloc(ctx->p, sizeof *imp);

    ctx->seen_item = true;
    imp->loc = parse_loc(ctx, loc);
    imp->path = path;
    if (!*path)
        qg_error(ctx->p, imp->loc, "empty import path");
    if (ctx->import_tail)
        ctx->import_tail->next = imp;
    else
        ctx->f->imports = imp;
    ctx->import_tail = imp;
}

static void parse_add_label(qg_label_list *l, qg_case *c,
                            const qg_yyltype *loc)
{
    l->n_labels++;
    if (c) {
        PARSE_APPEND(*l, c);
    } else if (l->n_default++ == 0) {
        l->default_loc = *loc;
    }
}

/* An arm with its labels; a 'default' must be its only label, so that the
 * default arm is the one with no case labels (ast.h). */
static qg_arm *parse_arm(yyscan_t scanner, const qg_label_list *l,
                         const qg_yyltype *loc)
{
    qg_arm *a = qg_alloc(PROG, sizeof *a);

    a->loc = parse_loc(CTX, loc);
    if (l->n_default > 0) {
        a->is_default = true;
        if (l->n_labels > 1)
            qg_error(PROG, parse_loc(CTX, &l->default_loc),
                     "'default' must label an arm of its own");
    } else {
        a->labels = l->head;
    }
    return a;
}

static void parse_add_decl(yyscan_t scanner, qg_decl *d)
{
    qg_parse_ctx *ctx = CTX;

    ctx->seen_item = true;
    if (ctx->decl_tail)
        ctx->decl_tail->next = d;
    else
        ctx->f->decls = d;
    ctx->decl_tail = d;
}

void qg_parse(qg_program *p, qg_file *f, const char *text, size_t len)
{
    qg_parse_ctx ctx;
    yyscan_t scanner;
    YY_BUFFER_STATE buf;
    int errors_before = p->errors;

    if (len > (size_t)INT_MAX / 2) {
        qg_loc loc = { f->path, 0, 0 };

        qg_error(p, loc, "file too large");
        return;
    }
    memset(&ctx, 0, sizeof ctx);
    ctx.p = p;
    ctx.f = f;
    ctx.line = 1;
    ctx.col = 1;
    if (yylex_init_extra(&ctx, &scanner) != 0) {
        fputs("qrpcgen: out of memory\n", stderr);
        abort();
    }
    buf = yy_scan_bytes(text, (int)len, scanner);
    yyparse(scanner);
    yy_delete_buffer(buf, scanner);
    yylex_destroy(scanner);
    if (!f->package && !ctx.saw_package_kw && p->errors == errors_before) {
        qg_loc loc;

        loc.file = f->path;
        loc.line = 1;
        loc.col = 1;
        qg_error(p, loc, "missing package line: a .qidl file must begin "
                 "with 'package NAME;'");
    }
}
