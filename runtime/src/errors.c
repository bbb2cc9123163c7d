/*
 * errors.c - qrpc_strerror() and qrpc_err_name(), both generated from
 * QRPC_ERRNO_MAP in qrpc_errors.h so that names, values and messages
 * cannot drift apart.  Two codes with one value would not compile: they
 * would be duplicate case labels.
 *
 * This file only names codes; what each means for each call is in the
 * headers and in qrpc(3).
 */
#include "qrpc_errors.h"

const char *qrpc_strerror(int status)
{
    switch (status) {
#define ERRORS_MSG(name, val, msg) case QRPC_##name: return msg;
    QRPC_ERRNO_MAP(ERRORS_MSG)
#undef ERRORS_MSG
    case QRPC_OK:
        return "success";
    default:
        return status > 0 ? "application error" : "unknown error";
    }
}

const char *qrpc_err_name(int status)
{
    switch (status) {
#define ERRORS_NAME(name, val, msg) case QRPC_##name: return "QRPC_" #name;
    QRPC_ERRNO_MAP(ERRORS_NAME)
#undef ERRORS_NAME
    case QRPC_OK:
        return "QRPC_OK";
    default:
        return status > 0 ? "application" : "unknown";
    }
}
