/*
 * qrpc_errors.h - the runtime's error codes, in one list.
 *
 * QRPC_ERRNO_MAP gives each code its name, value and message; the enum,
 * qrpc_strerror() and qrpc_err_name() are all made from it, so they cannot
 * drift apart.  Runtime errors are negative; 0 is success; positive values
 * are reserved for application errors that a remote handler returns.
 */
#ifndef QRPC_ERRORS_H
#define QRPC_ERRORS_H

#ifdef __cplusplus
extern "C" {
#endif

#define QRPC_ERRNO_MAP(XX)                                                      \
    XX(EINVAL,       -1, "invalid argument")                                    \
    XX(ENOMEM,       -2, "out of memory")                                       \
    XX(EDECODE,      -3, "malformed or truncated message")                      \
    XX(EBOUND,       -4, "value exceeds its declared bound")                    \
    XX(ETOOBIG,      -5, "message exceeds the configured size limit")           \
    XX(EUNAVAILABLE, -6, "service unavailable: the request was not sent")       \
    XX(ETIMEDOUT,    -7, "deadline exceeded")                                   \
    XX(EUNKNOWN,     -8, "outcome unknown: the request may have run")           \
    XX(ENOSERVICE,   -9, "no such service or version")                          \
    XX(ENOMETHOD,   -10, "no such method in the service")                       \
    XX(ECLOSED,     -11, "node or client is shutting down")                     \
    XX(EPROTO,      -12, "protocol error")                                      \
    XX(EEXIST,      -13, "already registered")                                  \
    XX(EADDR,       -14, "bad or unsupported address")                          \
    XX(EIO,         -15, "I/O error")                                           \
    XX(EBUSY,       -16, "too many calls in flight")                            \
    XX(ESTALE,      -17, "request is stale and was not executed")               \
    XX(EINTERNAL,   -18, "internal error in the remote handler")               \
    XX(ENOVERSION,  -19, "no node offers the service at this version")           \
    XX(ENOTSUP,     -20, "not supported by this build")

typedef enum qrpc_errno {
#define QRPC__ERR_ENUM(name, val, msg) QRPC_##name = (val),
    QRPC_ERRNO_MAP(QRPC__ERR_ENUM)
#undef QRPC__ERR_ENUM
    QRPC_OK = 0
} qrpc_errno;

/*
 * A message for any status: a QRPC_E* code, 0 ("success") or a positive
 * application error ("application error").  Never NULL; the string is
 * static.
 */
const char *qrpc_strerror(int status);
/* "QRPC_ETIMEDOUT" for QRPC_ETIMEDOUT; "QRPC_OK", "application", "unknown". */
const char *qrpc_err_name(int status);

#ifdef __cplusplus
}
#endif

#endif
