/*
 * cname.h - the C names the generated code gives to .qidl declarations.
 *
 * One place decides every spelling, so that the semantic pass can check
 * that no two generated identifiers collide and the back ends emit exactly
 * the names that were checked.  All results are allocated in p's arena.
 *
 *   type X of package p        p_X            (+ _encode _decode _free _copy
 *                                               _equal _random)
 *   enum member M of enum E    p_E_M
 *   constant C                 p_C
 *   list<T> used in p          p_<tag(T)>_list, tag(i32) = "i32",
 *                              tag(string) = "string", tag(common.Money) =
 *                              "common_Money", tag(optional<T>) = tag(T)_opt,
 *                              tag(list<T>) = tag(T)_list
 *   method m of service S      p_S_m, p_S_m_async, p_S_m_cb, p_S_m_reply,
 *                              p_S_m_reply_free, p_S_m_ID
 *   service S                  p_S_desc, p_S_handlers, p_S_serve
 */
#ifndef QRPCGEN_CNAME_H
#define QRPCGEN_CNAME_H

#include "ast.h"

/* p_X for a typedef/enum/struct/union/const/service declaration. */
const char *qg_cname_decl(qg_program *p, const qg_decl *d);
/* p_E_M for an enum member. */
const char *qg_cname_member(qg_program *p, const qg_decl *member);
/* The tag of a type, as used in list type names ("i32", "common_Money"). */
const char *qg_cname_tag(qg_program *p, const qg_file *in, const qg_type *t);
/* p_<tag>_list: the C type a list<T> maps to, named in file `in`. */
const char *qg_cname_list(qg_program *p, const qg_file *in, const qg_type *list);
/* p_S_m */
const char *qg_cname_method(qg_program *p, const qg_decl *svc, const qg_method *m);

/*
 * Reports (qg_error) every pair of identifiers that the generated code for
 * file f would define twice, e.g. a struct A_encode next to a struct A, or
 * an enum member Color_RED next to a struct named Color_RED.  Called by
 * qg_sema() after names are resolved, for main files.
 */
void qg_check_cnames(qg_program *p, qg_file *f);

#endif
