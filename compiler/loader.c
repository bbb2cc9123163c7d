/*
 * loader.c - reads .qidl files and, recursively, the files they import.
 *
 * An import path is tried relative to the directory of the importing file,
 * then under each -I directory in order (an absolute path only as it is).
 * A file is identified by its realpath(), so it is loaded and parsed once
 * however it is reached; its diagnostics use the path it was first opened
 * with.  Import cycles are found here (a file importing one whose imports
 * are still loading) and reported with the chain of paths; importing the
 * same file twice from one file is an error too.  This file only loads and
 * links files: names and values are sema.c's business.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ast.h"

/* The chain of files whose imports are loading, innermost first. */
typedef struct loader_frame {
    qg_file *f;
    const struct loader_frame *up;
} loader_frame;

static qg_loc loader_noloc(void)
{
    qg_loc loc = { NULL, 0, 0 };

    return loc;
}

/* Reads a whole file into a malloc'd buffer; NULL with errno set. */
static char *loader_read(const char *path, size_t *len)
{
    struct stat st;
    char *buf = NULL, *nb;
    size_t cap = 0, n = 0;
    int fd, err = 0;
    ssize_t r;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) != 0) {
        err = errno;
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        err = EISDIR;
        goto out;
    }
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            nb = realloc(buf, cap);
            if (!nb) {
                err = ENOMEM;
                goto out;
            }
            buf = nb;
        }
        r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            err = errno;
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *len = n;
out:
    close(fd);
    if (err) {
        free(buf);
        errno = err;
        return NULL;
    }
    return buf ? buf : malloc(1);
}

static qg_file *loader_find(qg_program *p, const char *canon)
{
    qg_file *f;

    for (f = p->files; f; f = f->next)
        if (strcmp(f->canon, canon) == 0)
            return f;
    return NULL;
}

static void loader_imports(qg_program *p, qg_file *f,
                           const loader_frame *frame);

/*
 * Loads the file at path (canonical name canon) that is not loaded yet:
 * reads, parses and then loads its imports.  `from` is the import line that
 * named it, for the error if it cannot be read.
 */
static qg_file *loader_file(qg_program *p, const char *path,
                            const char *canon, bool is_main,
                            const loader_frame *up, const qg_import *from)
{
    loader_frame frame;
    qg_file *f, **tail;
    size_t len = 0;
    char *text;

    text = loader_read(path, &len);
    if (!text) {
        qg_error(p, from ? from->loc : loader_noloc(), "cannot read %s: %s",
                 path, strerror(errno));
        return NULL;
    }
    f = qg_alloc(p, sizeof *f);
    f->path = qg_strdup(p, path);
    f->canon = qg_strdup(p, canon);
    f->is_main = is_main;
    for (tail = &p->files; *tail; tail = &(*tail)->next)
        ;
    *tail = f;
    qg_parse(p, f, text, len);
    free(text);
    f->load_state = 1;
    frame.f = f;
    frame.up = up;
    loader_imports(p, f, &frame);
    f->load_state = 2;
    return f;
}

/* "a.qidl -> b.qidl -> a.qidl": the files from target down to the one whose
 * imports are loading, and target again. */
static const char *loader_chain(qg_program *p, const loader_frame *frame,
                                const qg_file *target)
{
    const char *s = target->path;
    const loader_frame *fr;

    for (fr = frame; fr; fr = fr->up) {
        s = qg_printf(p, "%s -> %s", fr->f->path, s);
        if (fr->f == target)
            break;
    }
    return s;
}

static qg_file *loader_import(qg_program *p, qg_file *from, qg_import *imp,
                              const loader_frame *frame)
{
    const char *cand = NULL, *tried = NULL;
    const char *slash;
    char *canon;
    qg_file *f;
    int i;

    if (imp->path[0] == '/') {
        if (access(imp->path, F_OK) == 0)
            cand = imp->path;
        tried = imp->path;
    } else {
        slash = strrchr(from->path, '/');
        cand = slash ? qg_printf(p, "%.*s%s", (int)(slash - from->path + 1),
                                 from->path, imp->path)
                     : imp->path;
        tried = cand;
        if (access(cand, F_OK) != 0) {
            cand = NULL;
            for (i = 0; i < p->n_incdirs && !cand; i++) {
                const char *dir = p->incdirs[i];
                size_t dl = strlen(dir);
                const char *c2 = qg_printf(p, "%s%s%s", dir,
                                           dl && dir[dl - 1] == '/' ? "" : "/",
                                           imp->path);

                tried = qg_printf(p, "%s, %s", tried, c2);
                if (access(c2, F_OK) == 0)
                    cand = c2;
            }
        }
    }
    if (!cand) {
        qg_error(p, imp->loc, "cannot find import \"%s\" (tried %s)",
                 imp->path, tried);
        return NULL;
    }
    canon = realpath(cand, NULL);
    if (!canon) {
        qg_error(p, imp->loc, "cannot read %s: %s", cand, strerror(errno));
        return NULL;
    }
    f = loader_find(p, canon);
    if (f && f->load_state == 1) {
        qg_error(p, imp->loc, "import cycle: %s",
                 loader_chain(p, frame, f));
    } else if (!f) {
        f = loader_file(p, cand, canon, false, frame, imp);
    }
    free(canon);
    return f;
}

static void loader_imports(qg_program *p, qg_file *f,
                           const loader_frame *frame)
{
    qg_import *imp, *prev;

    for (imp = f->imports; imp; imp = imp->next) {
        if (!*imp->path)
            continue;           /* reported by the parser */
        imp->file = loader_import(p, f, imp, frame);
        if (!imp->file)
            continue;
        for (prev = f->imports; prev != imp; prev = prev->next) {
            if (prev->file == imp->file) {
                qg_error(p, imp->loc, "%s is already imported",
                         imp->file->path);
                qg_note(p, prev->loc, "first imported here");
                break;
            }
        }
    }
}

qg_file *qg_load(qg_program *p, const char *path, bool is_main)
{
    char *canon;
    qg_file *f;

    canon = realpath(path, NULL);
    if (!canon) {
        qg_error(p, loader_noloc(), "cannot read %s: %s", path,
                 strerror(errno));
        return NULL;
    }
    f = loader_find(p, canon);
    if (f) {
        if (is_main)
            f->is_main = true;
    } else {
        f = loader_file(p, path, canon, is_main, NULL, NULL);
    }
    free(canon);
    return f;
}
