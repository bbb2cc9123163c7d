/*
 * fuzz_files.h - the fixed files that fuzz_qidl.c writes next to every
 * fuzz input, so that inputs can import them: the .qidl files of tests/idl,
 * tests/qidl-good/inc and tests/qidl-bad/inc, embedded at build time by
 * embed.awk.  Read-only data for the harness; not fuzz inputs themselves.
 */
#ifndef QRPC_FUZZ_FILES_H
#define QRPC_FUZZ_FILES_H

typedef struct fuzz_file {
    const char *name;           /* relative to the fuzz directory */
    const char *text;
} fuzz_file;

/* Ends with { NULL, NULL }. */
extern const fuzz_file fuzz_files[];

#endif
