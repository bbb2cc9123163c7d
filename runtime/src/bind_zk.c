/*
 * bind_zk.c - the binding backend on a ZooKeeper ensemble
 * (QRPC_MASTER=zk://HOST:PORT[,HOST:PORT...]/PATH[?session_ms=N]),
 * through ZooKeeper's multi-threaded C client (libzookeeper-mt).
 *
 * Layout under PATH (created when missing, persistent):
 *
 *   PATH/nodes/n-0000000012        one ephemeral sequential znode per
 *                                  registered node; its data is the
 *                                  node's qrpc.Registration (master.qidl,
 *                                  qrpc's wire encoding); its rank is the
 *                                  sequence number
 *   PATH/services/NAME/VER/n-...   one ephemeral znode per service a node
 *                                  serves, named after the node's znode
 *
 * The table is read from PATH/nodes alone (each node's data says all
 * about it, written in one operation); the services tree is an index for
 * operators and other tools, kept up to date but not read here.  The
 * table's identity ("master") is the czxid of PATH/nodes, the same for
 * every observer and across the ensemble's leader changes; its epoch is
 * the largest of the children's pzxid and of their data's mzxid, so two
 * nodes that read the same znodes name the same table.
 *
 * The lease is the ZooKeeper session: the client library heartbeats it,
 * and the negotiated session timeout is the lease the agent sees.  A
 * session that expires (the node was cut off or paused for longer) takes
 * the node's znodes with it, so the other nodes drop it; this backend
 * then opens a new session and tells the agent the registration is lost,
 * and the agent registers the node again (a new znode, a new rank).
 *
 * Watches: every read of the table sets a child watch on PATH/nodes and a
 * data watch on each child; any of them firing, or a session event,
 * answers the outstanding watch "unchanged", and the agent's next watch
 * reads again.  Each child's data is cached with its mzxid and read again
 * only after its own watch fired, so a change costs one listing and the
 * changed znodes, not the whole table.
 *
 * Limits: the C client's own messages (every failed connection attempt
 * to a server that is down, say) are dropped unless QRPC_ZK_LOG is set,
 * and then go to stderr at its WARN level, or INFO (each connection and
 * session) when it is "info" (a process-wide setting, made once, here):
 * this backend logs what matters through the node's log, once per streak
 * of the same error; sync
 * calls block the agent thread for up to the session timeout when the
 * ensemble is unreachable; no ACLs or authentication (open ACLs).
 *
 * Built only with QRPC_HAVE_ZOOKEEPER (the Makefile sets it when
 * zookeeper/zookeeper.h is installed); otherwise zk:// addresses are
 * parsed all the same and then refused with QRPC_ENOTSUP and a message
 * saying how to enable them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binder.h"
#include "net.h"

#define BZ_SESSION_MS_DEF 3000u         /* asked for; the ensemble may round it */
#define BZ_SESSION_MS_MIN 1000u
#define BZ_SESSION_MS_MAX 600000u
#define BZ_PATH_MAX       256u          /* PATH, as given */
#define BZ_ZPATH_MAX      (BZ_PATH_MAX + 2 * 256u + 64u)  /* a znode's full path */

/* ---- the address: parsed in every build ---------------------------------------- */

typedef struct bz_addr {
    char hosts[QRPC__MASTER_MAX];       /* "h:p,h:p" */
    char path[BZ_PATH_MAX];             /* "/qrpc": no trailing '/' */
    uint32_t session_ms;
} bz_addr;

static bool bz_path_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

/* zk://HOSTS/PATH[?session_ms=N] into *a; a message in why on error. */
static int bz_parse(const char *addr, bz_addr *a, char *why, size_t why_len)
{
    const char *h = addr + 5, *slash = strchr(h, '/'), *q, *p;
    size_t hl, pl;

    memset(a, 0, sizeof *a);
    a->session_ms = BZ_SESSION_MS_DEF;
    if (strncmp(addr, "zk://", 5) != 0 || slash == NULL || slash == h) {
        snprintf(why, why_len, "not zk://HOST:PORT[,HOST:PORT...]/PATH");
        return QRPC_EADDR;
    }
    hl = (size_t)(slash - h);
    memcpy(a->hosts, h, hl);
    a->hosts[hl] = '\0';
    for (p = a->hosts; *p != '\0';) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        char one[QRPC__ADDR_MAX];
        struct sockaddr_storage sa;
        socklen_t salen;

        if (len == 0 || len >= sizeof one) {
            snprintf(why, why_len, "an empty or overlong server in the host list");
            return QRPC_EADDR;
        }
        memcpy(one, p, len);
        one[len] = '\0';
        if (qrpc__addr_parse(one, false, &sa, &salen) != 0) {
            snprintf(why, why_len, "server '%.64s' is not host:port", one);
            return QRPC_EADDR;
        }
        p += len + (comma != NULL);
        if (comma != NULL && *p == '\0') {
            snprintf(why, why_len, "a trailing comma in the host list");
            return QRPC_EADDR;
        }
    }
    q = strchr(slash, '?');
    pl = q != NULL ? (size_t)(q - slash) : strlen(slash);
    if (pl < 2 || pl >= sizeof a->path) {
        snprintf(why, why_len, "the path must be /NAME[/NAME...], under %zu bytes",
                 sizeof a->path);
        return QRPC_EADDR;
    }
    memcpy(a->path, slash, pl);
    a->path[pl] = '\0';
    for (p = a->path; *p != '\0'; p++) {
        if (*p == '/' ? (p[1] == '/' || p[1] == '\0') : !bz_path_char(*p)) {
            snprintf(why, why_len, "path '%.64s': segments of letters, digits, '.', '_', '-'",
                     a->path);
            return QRPC_EADDR;
        }
    }
    if (strcmp(a->path, "/zookeeper") == 0 || strncmp(a->path, "/zookeeper/", 11) == 0) {
        snprintf(why, why_len, "path '%.64s' is ZooKeeper's own", a->path);
        return QRPC_EADDR;
    }
    if (q != NULL) {
        char *end;
        unsigned long v;

        if (strncmp(q, "?session_ms=", 12) != 0 || q[12] < '0' || q[12] > '9') {
            snprintf(why, why_len, "the only option is ?session_ms=N");
            return QRPC_EADDR;
        }
        errno = 0;
        v = strtoul(q + 12, &end, 10);
        if (errno != 0 || *end != '\0' || v < BZ_SESSION_MS_MIN || v > BZ_SESSION_MS_MAX) {
            snprintf(why, why_len, "session_ms must be %u to %u", BZ_SESSION_MS_MIN,
                     BZ_SESSION_MS_MAX);
            return QRPC_EADDR;
        }
        a->session_ms = (uint32_t)v;
    }
    return 0;
}

#ifndef QRPC_HAVE_ZOOKEEPER

static int bz_open(struct qrpc__bind *b, const char *addr, void **state)
{
    qrpc_node *n = qrpc__bind_node(b);
    char why[160];
    bz_addr a;
    int rc = bz_parse(addr, &a, why, sizeof why);

    (void)state;
    if (rc != 0) {
        qrpc__log(n, "the master's address '%s': %s", addr, why);
        return rc;
    }
    qrpc__log(n, "the master's address '%s' names a ZooKeeper ensemble, but this libqrpc was "
              "built without ZooKeeper: install libzookeeper-mt-dev (tools/deps.sh does) and "
              "rebuild", addr);
    return QRPC_ENOTSUP;
}

static int bz_join(void *state, const qrpc_Registration *reg, qrpc__lease *out)
{
    (void)state, (void)reg, (void)out;
    return QRPC_ENOTSUP;
}

static int bz_renew(void *state, uint64_t id, qrpc__lease *out)
{
    (void)state, (void)id, (void)out;
    return QRPC_ENOTSUP;
}

static void bz_leave(void *state, uint64_t id)
{
    (void)state, (void)id;
}

static int bz_watch(void *state, uint64_t master, uint64_t epoch, uint32_t hold_ms)
{
    (void)state, (void)master, (void)epoch, (void)hold_ms;
    return QRPC_ENOTSUP;
}

static void bz_close(void *state)
{
    (void)state;
}

#else /* QRPC_HAVE_ZOOKEEPER */

#define THREADED                /* the synchronous API of libzookeeper_mt */
#include <zookeeper/zookeeper.h>

#define BZ_CONNECT_MS 2000u             /* how long an operation waits for a session */
#define BZ_STATE_POLL_MS 50u            /* ... looking at the handle's state this often */
#define BZ_NAME_MAX   64u               /* a child of PATH/nodes we read */
#define BZ_DATA_MAX   (1u << 20)        /* a node's data (ZooKeeper's jute.maxbuffer) */
#define BZ_DATA_FIRST 4096u

/* One child of PATH/nodes as last read. */
typedef struct bz_entry {
    char name[BZ_NAME_MAX];
    uint64_t events;            /* data watches fired on it (the watcher counts) */
    uint64_t read_events;       /* events when it was last read */
    bool valid;                 /* node holds its decoded data */
    bool said;                  /* its bad data was logged */
    int64_t mzxid;
    qrpc_Node node;
} bz_entry;

typedef struct bz_state {
    struct qrpc__bind *bind;
    qrpc_node *node;
    bz_addr a;
    char nodes_path[BZ_ZPATH_MAX];      /* PATH/nodes */
    char services_path[BZ_ZPATH_MAX];   /* PATH/services */

    pthread_mutex_t lock;       /* everything below but zh's calls */
    pthread_cond_t cond;        /* session state changes (CLOCK_MONOTONIC) */
    zhandle_t *zh;              /* NULL once left or closed */
    bool closed;
    bool expired;               /* the session is gone: open another */
    bool lost;                  /* ... and with it the registration */
    bool connected;
    bool dirs;                  /* PATH/nodes and PATH/services exist (this session) */
    uint64_t master;            /* czxid of PATH/nodes */
    /* the registration */
    char me[BZ_ZPATH_MAX];      /* our znode, or "" */
    uint32_t rank;
    char **svcs;                /* the service znodes we created */
    size_t n_svcs;
    /* the watch */
    bool fired;                 /* a watch fired since the read began */
    bool pending;               /* an answer is owed when one fires */
    bz_entry *ents;
    size_t n_ents, cap_ents;
    /*
     * Bumped whenever the cache changes (an entry comes, goes or is
     * read), and its value when a table was last answered: an entry read
     * late (it could not be read when listed) changes the table but not
     * always the epoch, which it then cannot raise above pzxid.
     */
    uint64_t content, answered;
    int last_err;               /* the ZooKeeper error last logged, 0 after a success */
} bz_state;

static pthread_once_t bz_once = PTHREAD_ONCE_INIT;
static bool bz_zlog_on;                 /* QRPC_ZK_LOG: the client's messages on stderr */

/* snprintf into a path buffer; false when it does not fit. */
static bool bz_fmt(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool bz_fmt(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    int k;

    va_start(ap, fmt);
    k = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return k >= 0 && (size_t)k < len;
}

static void bz_init_once(void)
{
    const char *v = getenv("QRPC_ZK_LOG");

    bz_zlog_on = v != NULL && *v != '\0' && strcmp(v, "0") != 0;
    zoo_set_debug_level(!bz_zlog_on ? ZOO_LOG_LEVEL_ERROR
                        : strcmp(v, "info") == 0 ? ZOO_LOG_LEVEL_INFO : ZOO_LOG_LEVEL_WARN);
}

/* The ZooKeeper client's log lines (any of its threads). */
static void bz_zlog(const char *message)
{
    if (bz_zlog_on)
        fprintf(stderr, "qrpc zookeeper client: %s\n", message);
}

/* A ZooKeeper error in words, once per streak of the same error. */
static int bz_fail(bz_state *s, const char *what, const char *path, int zrc)
{
    bool say;

    pthread_mutex_lock(&s->lock);
    say = s->last_err != zrc;
    s->last_err = zrc;
    if (zrc == ZSESSIONEXPIRED || zrc == ZINVALIDSTATE)
        s->expired = true;
    pthread_mutex_unlock(&s->lock);
    if (say)
        qrpc__log(s->node, "ZooKeeper at %s: %s %s: %s", s->a.hosts, what, path, zerror(zrc));
    return QRPC_EUNAVAILABLE;
}

static void bz_ok(bz_state *s)
{
    pthread_mutex_lock(&s->lock);
    s->last_err = 0;
    pthread_mutex_unlock(&s->lock);
}

static bz_entry *bz_find(bz_state *s, const char *name)
{
    size_t i;

    for (i = 0; i < s->n_ents; i++)
        if (strcmp(s->ents[i].name, name) == 0)
            return &s->ents[i];
    return NULL;
}

/* Drops the cache and the registration: a new session.  Lock held. */
static void bz_forget(bz_state *s)
{
    size_t i;

    for (i = 0; i < s->n_ents; i++)
        if (s->ents[i].valid)
            qrpc_Node_free(&s->ents[i].node);
    s->n_ents = 0;
    s->content++;
    for (i = 0; i < s->n_svcs; i++)
        free(s->svcs[i]);
    free(s->svcs);
    s->svcs = NULL;
    s->n_svcs = 0;
    s->me[0] = '\0';
    s->dirs = false;
}

/*
 * Every watch and the session's events: wakes whoever waits for the
 * session, counts data events per child, and answers an outstanding watch.
 * On ZooKeeper's completion thread: no ZooKeeper call from here.
 */
static void bz_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
    bz_state *s = ctx;
    bool answer;

    (void)zh;
    pthread_mutex_lock(&s->lock);
    if (type == ZOO_SESSION_EVENT) {
        s->connected = state == ZOO_CONNECTED_STATE;
        if (state == ZOO_EXPIRED_SESSION_STATE || state == ZOO_AUTH_FAILED_STATE)
            s->expired = true;
        pthread_cond_broadcast(&s->cond);
    } else if (path != NULL && strncmp(path, s->nodes_path, strlen(s->nodes_path)) == 0 &&
               path[strlen(s->nodes_path)] == '/') {
        bz_entry *e = bz_find(s, path + strlen(s->nodes_path) + 1);

        if (e != NULL)
            e->events++;
    }
    s->fired = true;
    answer = s->pending;
    s->pending = false;
    pthread_mutex_unlock(&s->lock);
    if (answer)
        qrpc__bind_watched(s->bind, 0, &(qrpc_Update){ .changed = false });
}

/* Opens a session; lock not held. */
static int bz_session_open(bz_state *s)
{
    zhandle_t *zh = zookeeper_init2(s->a.hosts, bz_watcher, (int)s->a.session_ms, NULL, s, 0,
                                    bz_zlog);

    if (zh == NULL) {
        qrpc__log(s->node, "ZooKeeper at %s: cannot start a client: %s", s->a.hosts,
                  strerror(errno));
        return errno == ENOMEM ? QRPC_ENOMEM : QRPC_EUNAVAILABLE;
    }
    pthread_mutex_lock(&s->lock);
    s->zh = zh;
    s->expired = false;
    s->connected = false;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/*
 * Whether the session is connected (lock held).  The session event that
 * says so comes on the client's completion thread, which a loaded machine
 * may run late; the handle's own state, which its I/O thread sets, is
 * read too.
 */
static bool bz_connected(bz_state *s)
{
    if (!s->connected && s->zh != NULL && zoo_state(s->zh) == ZOO_CONNECTED_STATE)
        s->connected = true;
    return s->connected;
}

/*
 * A live, connected session within ms: opens a new one when the last
 * expired (the registration is then lost).  Agent thread; lock not held.
 * QRPC_EUNAVAILABLE, QRPC_ECLOSED, QRPC_ENOMEM.
 */
static int bz_ready(bz_state *s, unsigned ms)
{
    uint64_t until = qrpc__now_ns(s->node) + (uint64_t)ms * 1000000u;
    zhandle_t *old = NULL;
    int rc = 0;

    pthread_mutex_lock(&s->lock);
    if (s->closed) {
        pthread_mutex_unlock(&s->lock);
        return QRPC_ECLOSED;
    }
    if (s->zh != NULL && (s->expired || is_unrecoverable(s->zh) == ZINVALIDSTATE)) {
        old = s->zh;
        s->zh = NULL;
        s->lost = s->me[0] != '\0' || s->lost;
        bz_forget(s);
        s->fired = true;
    }
    pthread_mutex_unlock(&s->lock);
    if (old != NULL) {
        qrpc__log(s->node, "ZooKeeper at %s: the session expired; opening another",
                  s->a.hosts);
        zookeeper_close(old);
    }
    pthread_mutex_lock(&s->lock);
    if (s->zh == NULL) {
        pthread_mutex_unlock(&s->lock);
        rc = bz_session_open(s);
        pthread_mutex_lock(&s->lock);
    }
    /* every BZ_STATE_POLL_MS: nothing signals the handle's state (bz_connected) */
    while (rc == 0 && !s->expired && !bz_connected(s)) {
        uint64_t now = qrpc__now_ns(s->node);

        if (now >= until) {
            rc = QRPC_EUNAVAILABLE;
            break;
        }
        qrpc__cond_wait_ns(&s->cond, &s->lock, until - now < BZ_STATE_POLL_MS * 1000000u
                                                   ? until - now : BZ_STATE_POLL_MS * 1000000u);
    }
    if (rc == 0 && !s->connected)
        rc = QRPC_EUNAVAILABLE;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* Creates path (persistent, empty) unless it exists; 0 or a ZooKeeper error. */
static int bz_mkdir(bz_state *s, const char *path)
{
    int zrc = zoo_create(s->zh, path, NULL, -1, &ZOO_OPEN_ACL_UNSAFE, ZOO_PERSISTENT, NULL, 0);

    return zrc == ZNODEEXISTS ? ZOK : zrc;
}

/* PATH (each of its parents), PATH/nodes and PATH/services; learns the identity. */
static int bz_dirs(bz_state *s)
{
    char p[BZ_ZPATH_MAX];
    struct Stat st;
    size_t i;
    int zrc = ZOK;

    if (s->dirs)
        return 0;
    snprintf(p, sizeof p, "%s", s->a.path);
    for (i = 1; zrc == ZOK && p[i - 1] != '\0'; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char c = p[i];

        p[i] = '\0';
        zrc = bz_mkdir(s, p);
        p[i] = c;
    }
    if (zrc == ZOK)
        zrc = bz_mkdir(s, s->nodes_path);
    if (zrc == ZOK)
        zrc = bz_mkdir(s, s->services_path);
    if (zrc == ZOK)
        zrc = zoo_exists(s->zh, s->nodes_path, 0, &st);
    if (zrc != ZOK)
        return bz_fail(s, "create", s->a.path, zrc);
    pthread_mutex_lock(&s->lock);
    s->master = (uint64_t)st.czxid;
    s->dirs = true;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* The rank a znode name n-0000000012 carries, or false. */
static bool bz_rank(const char *name, uint32_t *rank)
{
    char *end;
    unsigned long v;

    if (strncmp(name, "n-", 2) != 0 || strlen(name) != 12 || name[2] < '0' || name[2] > '9')
        return false;
    errno = 0;
    v = strtoul(name + 2, &end, 10);
    if (errno != 0 || *end != '\0' || v > UINT32_MAX)
        return false;
    *rank = (uint32_t)v;
    return true;
}

static bool bz_has(char *const *v, size_t n, const char *s)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

/*
 * Makes the services index say reg's services for our znode: creates the
 * missing entries (and their directories), deletes those no longer
 * served.  0, or QRPC_EUNAVAILABLE, QRPC_ENOMEM.
 */
static int bz_index(bz_state *s, const qrpc_Registration *reg)
{
    const char *me = strrchr(s->me, '/') + 1;
    char **want = calloc(reg->services.len + 1, sizeof *want);
    char p[BZ_ZPATH_MAX];
    size_t i, k = 0;
    int rc = 0, zrc;

    if (want == NULL)
        return QRPC_ENOMEM;
    for (i = 0; i < reg->services.len && rc == 0; i++) {
        const qrpc_ServiceRef *sv = &reg->services.items[i];

        if (strchr(sv->name, '/') != NULL || sv->name[0] == '\0' || sv->name[0] == '.')
            continue;           /* not a znode name: left out of the index */
        if (!bz_fmt(p, sizeof p, "%s/%s/%" PRIu32 "/%s", s->services_path, sv->name, sv->ver,
                    me))
            continue;           /* too long a name: left out of the index */
        (void)bz_fmt(p, sizeof p, "%s/%s", s->services_path, sv->name);
        zrc = bz_mkdir(s, p);
        (void)bz_fmt(p, sizeof p, "%s/%s/%" PRIu32, s->services_path, sv->name, sv->ver);
        if (zrc == ZOK)
            zrc = bz_mkdir(s, p);
        (void)bz_fmt(p, sizeof p, "%s/%s/%" PRIu32 "/%s", s->services_path, sv->name, sv->ver,
                     me);
        if (zrc == ZOK && !bz_has(s->svcs, s->n_svcs, p)) {
            zrc = zoo_create(s->zh, p, NULL, -1, &ZOO_OPEN_ACL_UNSAFE, ZOO_EPHEMERAL, NULL, 0);
            zrc = zrc == ZNODEEXISTS ? ZOK : zrc;
        }
        if (zrc != ZOK)
            rc = bz_fail(s, "create", p, zrc);
        else if ((want[k++] = strdup(p)) == NULL)
            rc = QRPC_ENOMEM;
    }
    for (i = 0; i < s->n_svcs && rc == 0; i++) {
        if (bz_has(want, k, s->svcs[i]))
            continue;
        zrc = zoo_delete(s->zh, s->svcs[i], -1);
        if (zrc != ZOK && zrc != ZNONODE)
            rc = bz_fail(s, "delete", s->svcs[i], zrc);
    }
    if (rc != 0) {              /* keep what we had: the next join tries again */
        for (i = 0; i < k; i++)
            free(want[i]);
        free(want);
        return rc;
    }
    for (i = 0; i < s->n_svcs; i++)
        free(s->svcs[i]);
    free(s->svcs);
    s->svcs = want;
    s->n_svcs = k;
    return 0;
}

static int bz_join(void *state, const qrpc_Registration *reg, qrpc__lease *out)
{
    bz_state *s = state;
    qrpc_buf data;
    int rc, zrc = ZOK;

    qrpc_buf_init(&data);
    rc = bz_ready(s, BZ_CONNECT_MS);
    if (rc == 0)
        rc = bz_dirs(s);
    if (rc == 0)
        rc = qrpc_Registration_encode(&data, reg);
    if (rc == 0 && data.len > BZ_DATA_MAX)
        rc = qrpc_MasterError_TOO_MANY_SERVICES;
    if (rc != 0)
        goto out;
    if (s->me[0] != '\0') {
        zrc = zoo_set(s->zh, s->me, (const char *)data.data, (int)data.len, -1);
        if (zrc == ZNONODE)
            s->me[0] = '\0';    /* gone (an old session's): create it again */
        else if (zrc != ZOK)
            rc = bz_fail(s, "write", s->me, zrc);
    }
    if (rc == 0 && s->me[0] == '\0') {
        char p[BZ_ZPATH_MAX], made[BZ_ZPATH_MAX];

        (void)bz_fmt(p, sizeof p, "%s/n-", s->nodes_path);
        zrc = zoo_create(s->zh, p, (const char *)data.data, (int)data.len,
                         &ZOO_OPEN_ACL_UNSAFE, ZOO_EPHEMERAL | ZOO_SEQUENCE, made,
                         (int)sizeof made);
        if (zrc != ZOK)
            rc = bz_fail(s, "create", p, zrc);
        else if (!bz_rank(strrchr(made, '/') + 1, &s->rank))
            rc = QRPC_EPROTO;   /* not the name ZooKeeper gives: a changed server? */
        else
            snprintf(s->me, sizeof s->me, "%s", made);
    }
    if (rc == 0)
        rc = bz_index(s, reg);
    if (rc == 0) {
        bz_ok(s);
        pthread_mutex_lock(&s->lock);
        s->lost = false;
        out->master = s->master;
        out->rank = s->rank;
        out->lease_ms = (uint32_t)zoo_recv_timeout(s->zh);
        pthread_mutex_unlock(&s->lock);
    }

out:
    qrpc_buf_free(&data);
    return rc;
}

static int bz_renew(void *state, uint64_t id, qrpc__lease *out)
{
    bz_state *s = state;
    int rc;

    (void)id;
    /* the client library heartbeats the session; here: is it still ours? */
    rc = bz_ready(s, 0);
    pthread_mutex_lock(&s->lock);
    if (s->lost || s->me[0] == '\0') {
        rc = QRPC__BIND_LOST;
    } else if (rc == QRPC_EUNAVAILABLE && !s->expired) {
        rc = 0;                 /* reconnecting within the session: still ours */
    }
    if (rc == 0) {
        out->master = s->master;
        out->rank = s->rank;
        out->lease_ms = s->zh != NULL ? (uint32_t)zoo_recv_timeout(s->zh) : s->a.session_ms;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static void bz_leave(void *state, uint64_t id)
{
    bz_state *s = state;
    zhandle_t *zh;

    (void)id;
    pthread_mutex_lock(&s->lock);
    zh = s->zh;
    s->zh = NULL;
    s->closed = true;
    pthread_mutex_unlock(&s->lock);
    if (zh != NULL)
        zookeeper_close(zh);    /* ends the session: its ephemeral znodes go at once */
}

/* Decodes a child's data into *nd (rank from its name); false if it is not a node's. */
static bool bz_decode(const char *name, const char *data, int len, qrpc_Node *nd)
{
    qrpc_Registration r;
    qrpc_reader rd;
    uint32_t rank;
    bool ok;

    memset(&r, 0, sizeof r);
    if (!bz_rank(name, &rank) || len <= 0)
        return false;
    qrpc_reader_init(&rd, data, (size_t)len);
    ok = qrpc_Registration_decode(&rd, &r) == 0 && qrpc_reader_left(&rd) == 0 &&
         qrpc__registration_check(&r, UINT32_MAX) == 0;
    if (ok) {
        memset(nd, 0, sizeof *nd);
        nd->id = r.id;
        nd->rank = rank;
        nd->addresses = r.addresses;
        nd->services = r.services;
        memset(&r.addresses, 0, sizeof r.addresses);
        memset(&r.services, 0, sizeof r.services);
    }
    qrpc_Registration_free(&r);
    return ok;
}

/* Reads child name's data (with a watch) into its entry; 0 or QRPC_E*. */
static int bz_read_child(bz_state *s, const char *name, char **buf, int *cap)
{
    char p[BZ_ZPATH_MAX];
    struct Stat st;
    uint64_t events;
    qrpc_Node nd;
    bz_entry *e;
    bool ok;
    int len, zrc;

    if (!bz_fmt(p, sizeof p, "%s/%s", s->nodes_path, name))
        return 0;               /* bz_list keeps names short: cannot happen */
    pthread_mutex_lock(&s->lock);
    e = bz_find(s, name);
    events = e != NULL ? e->events : 0;
    pthread_mutex_unlock(&s->lock);
    for (;;) {
        len = *cap;
        zrc = zoo_wget(s->zh, p, bz_watcher, s, *buf, &len, &st);
        if (zrc != ZOK || st.dataLength <= *cap || st.dataLength > (int32_t)BZ_DATA_MAX)
            break;
        char *nb = realloc(*buf, (size_t)st.dataLength);

        if (nb == NULL)
            return QRPC_ENOMEM;
        *buf = nb;
        *cap = st.dataLength;
    }
    if (zrc == ZNONODE)
        return 0;               /* gone: the child watch says so */
    if (zrc != ZOK)
        return bz_fail(s, "read", p, zrc);
    ok = st.dataLength <= *cap && bz_decode(name, *buf, len, &nd);
    pthread_mutex_lock(&s->lock);
    e = bz_find(s, name);
    if (e != NULL) {
        if (e->valid)
            qrpc_Node_free(&e->node);
        e->valid = ok;
        if (ok)
            e->node = nd;
        e->mzxid = st.mzxid;
        e->read_events = events;
        s->content++;
        if (!ok && !e->said) {
            e->said = true;
            qrpc__log(s->node, "ZooKeeper at %s: %s is not a qrpc node's registration; "
                      "left out of the table", s->a.hosts, p);
        }
    } else if (ok) {
        qrpc_Node_free(&nd);
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* Lists PATH/nodes (with a watch) into the cache; the names to read go to *todo. */
static int bz_list(bz_state *s, struct Stat *st, char ***todo, size_t *n_todo)
{
    struct String_vector v = { 0, NULL };
    size_t i, j, k = 0;
    int rc = 0, zrc;

    zrc = zoo_wget_children2(s->zh, s->nodes_path, bz_watcher, s, &v, st);
    if (zrc != ZOK)
        return bz_fail(s, "list", s->nodes_path, zrc);
    *todo = calloc((size_t)v.count + 1, sizeof **todo);
    if (*todo == NULL) {
        deallocate_String_vector(&v);
        return QRPC_ENOMEM;
    }
    pthread_mutex_lock(&s->lock);
    /* drop the entries no longer listed */
    for (i = 0; i < s->n_ents;) {
        bool listed = false;

        for (j = 0; j < (size_t)v.count && !listed; j++)
            listed = strcmp(v.data[j], s->ents[i].name) == 0;
        if (listed) {
            i++;
            continue;
        }
        if (s->ents[i].valid)
            qrpc_Node_free(&s->ents[i].node);
        s->ents[i] = s->ents[--s->n_ents];
        s->content++;
    }
    for (j = 0; j < (size_t)v.count && rc == 0; j++) {
        const char *name = v.data[j];
        bz_entry *e;

        if (strlen(name) >= BZ_NAME_MAX)
            continue;
        e = bz_find(s, name);
        if (e == NULL) {
            if (s->n_ents == s->cap_ents) {
                size_t cap = s->cap_ents != 0 ? 2 * s->cap_ents : 16;
                bz_entry *ne = realloc(s->ents, cap * sizeof *ne);

                if (ne == NULL) {
                    rc = QRPC_ENOMEM;
                    break;
                }
                s->ents = ne;
                s->cap_ents = cap;
            }
            e = &s->ents[s->n_ents++];
            memset(e, 0, sizeof *e);
            snprintf(e->name, sizeof e->name, "%s", name);
            e->events = 1;      /* never read */
            s->content++;
        }
        if (e->events != e->read_events && ((*todo)[k] = strdup(name)) != NULL)
            k++;
        else if (e->events != e->read_events)
            rc = QRPC_ENOMEM;
    }
    pthread_mutex_unlock(&s->lock);
    deallocate_String_vector(&v);
    *n_todo = k;
    return rc;
}

static int bz_rank_cmp(const void *a, const void *b)
{
    const qrpc_Node *x = a, *y = b;

    return x->rank < y->rank ? -1 : x->rank > y->rank;
}

/* The table from the cache (lock held); QRPC_ENOMEM. */
static int bz_table(bz_state *s, const struct Stat *st, qrpc_Table *t)
{
    int64_t epoch = st->pzxid;
    size_t i, k = 0;
    int rc = 0;

    memset(t, 0, sizeof *t);
    t->master = (uint64_t)st->czxid;
    if (s->n_ents != 0 && (t->nodes.items = calloc(s->n_ents, sizeof *t->nodes.items)) == NULL)
        return QRPC_ENOMEM;
    for (i = 0; i < s->n_ents && rc == 0; i++) {
        const bz_entry *e = &s->ents[i];

        if (e->mzxid > epoch)
            epoch = e->mzxid;
        if (!e->valid)
            continue;
        rc = qrpc_Node_copy(&t->nodes.items[k], &e->node);
        k += rc == 0;
        t->nodes.len = k;
    }
    t->epoch = (uint64_t)epoch;
    if (rc != 0)
        qrpc_Table_free(t);
    else if (k > 1)
        qsort(t->nodes.items, k, sizeof *t->nodes.items, bz_rank_cmp);
    return rc;
}

static int bz_watch(void *state, uint64_t master, uint64_t epoch, uint32_t hold_ms)
{
    bz_state *s = state;
    qrpc_Update up;
    struct Stat st;
    char **todo = NULL, *buf = NULL;
    size_t n_todo = 0, i;
    int rc, cap = BZ_DATA_FIRST;
    bool answer = false;

    (void)hold_ms;              /* an answer comes when a watch fires */
    memset(&up, 0, sizeof up);
    rc = bz_ready(s, BZ_CONNECT_MS);
    if (rc == 0)
        rc = bz_dirs(s);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&s->lock);
    s->fired = false;
    pthread_mutex_unlock(&s->lock);
    rc = bz_list(s, &st, &todo, &n_todo);
    if (rc == 0 && n_todo != 0 && (buf = malloc((size_t)cap)) == NULL)
        rc = QRPC_ENOMEM;
    for (i = 0; i < n_todo && rc == 0; i++)
        rc = bz_read_child(s, todo[i], &buf, &cap);
    for (i = 0; i < n_todo; i++)
        free(todo[i]);
    free(todo);
    free(buf);
    if (rc != 0)
        return rc;
    bz_ok(s);
    pthread_mutex_lock(&s->lock);
    rc = bz_table(s, &st, &up.table);
    if (rc == 0 && (up.table.master != master || up.table.epoch != epoch ||
                    s->content != s->answered)) {
        up.changed = true;
        answer = true;
        s->answered = s->content;
    } else if (rc == 0 && s->fired) {
        answer = true;          /* something changed while we read: read again */
    } else if (rc == 0) {
        s->pending = true;
    }
    pthread_mutex_unlock(&s->lock);
    if (rc == 0 && !up.changed) {
        qrpc_Table_free(&up.table);
        memset(&up.table, 0, sizeof up.table);
    }
    if (answer)
        qrpc__bind_watched(s->bind, 0, &up);
    return rc;
}

static void bz_close(void *state)
{
    bz_state *s = state;

    if (s->zh != NULL)
        zookeeper_close(s->zh);
    s->zh = NULL;
    bz_forget(s);
    free(s->ents);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int bz_open(struct qrpc__bind *b, const char *addr, void **state)
{
    qrpc_node *n = qrpc__bind_node(b);
    char why[160];
    bz_state *s;
    int rc;

    s = calloc(1, sizeof *s);
    if (s == NULL)
        return QRPC_ENOMEM;
    rc = bz_parse(addr, &s->a, why, sizeof why);
    if (rc != 0) {
        qrpc__log(n, "the master's address '%s': %s", addr, why);
        free(s);
        return rc;
    }
    s->bind = b;
    s->node = n;
    (void)bz_fmt(s->nodes_path, sizeof s->nodes_path, "%s/nodes", s->a.path);
    (void)bz_fmt(s->services_path, sizeof s->services_path, "%s/services", s->a.path);
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        return QRPC_ENOMEM;
    }
    if (qrpc__cond_init_mono(&s->cond) != 0) {
        pthread_mutex_destroy(&s->lock);
        free(s);
        return QRPC_ENOMEM;
    }
    (void)pthread_once(&bz_once, bz_init_once);
    rc = bz_session_open(s);    /* connects in the background */
    if (rc != 0) {
        bz_close(s);
        return rc;
    }
    *state = s;
    return 0;
}

#endif /* QRPC_HAVE_ZOOKEEPER */

const qrpc__binder_ops qrpc__binder_zk = {
    .name = "ZooKeeper ensemble",
    .open = bz_open,
    .join = bz_join,
    .renew = bz_renew,
    .leave = bz_leave,
    .watch = bz_watch,
    .close = bz_close,
};
