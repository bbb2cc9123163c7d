/*
 * master.c - the master (qrpc-master(8), qrpc_master_start()): the table
 * of the cluster's nodes, their ranks, addresses and services, kept by
 * one thread that serves qrpc.Master (idl/master.qidl) on a node of its
 * own.
 *
 * The service is opened as a channel, not with handlers: watch calls are
 * held until the table changes (or their hold time passes), which a
 * handler returning its results could not do without a thread per held
 * call.  So one thread takes every request from the channel, decodes it
 * with the generated types, answers at once or holds it, and owns the
 * whole table: nothing here takes a lock.  Every method is idempotent, so
 * the node keeps no reply cache for it.
 *
 * The table: nodes by id in a chained hash (MASTER_BUCKETS buckets, so
 * lookups stay short up to several thousand nodes), ranks the smallest
 * free (or the one a re-registering node asks back), a node dropped when
 * its lease runs out or when a new node registers the same address (the
 * old one cannot be listening there any more).  Each change bumps the
 * epoch; the table is encoded once per epoch and the bytes copied into
 * every answer.  Bad input is answered with an error and changes
 * nothing: ids unknown to heartbeat get NOT_REGISTERED, oversized or
 * malformed registrations BAD_REGISTRATION or TOO_MANY_SERVICES, a full
 * table TOO_MANY_NODES; garbage on a connection is the runtime's to drop.
 *
 * What it is not: replicated or persistent.  A restarted master starts
 * empty with a new identity, and the nodes, seeing it, register again.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binder.h"
#include "master.h"
#include "net.h"

#define MASTER_DEFAULT_LISTEN   "127.0.0.1:7700"
#define MASTER_DEFAULT_LEASE_MS 3000u
#define MASTER_MIN_LEASE_MS     100u
#define MASTER_MAX_LEASE_MS     3600000u
#define MASTER_DEFAULT_NODES    4096u
#define MASTER_MAX_NODES        (1u << 20)
#define MASTER_DEFAULT_SERVICES 1024u
#define MASTER_MAX_SERVICES     65536u
#define MASTER_MAX_HOLD_MS      60000u
#define MASTER_POLL_MS          50      /* how soon a stop is noticed */
#define MASTER_BUCKETS          4096u
#define MASTER_MAX_MESSAGE      (16u << 20)
#define MASTER_NO_RANK          0xffffffffu

typedef struct master_node {
    struct master_node *next;   /* its bucket */
    qrpc_Node info;
    uint64_t seen_ns;           /* its last join or heartbeat */
} master_node;

typedef struct master_hold {
    qrpc_request *req;
    uint64_t until_ns;
    uint64_t master, epoch;     /* the table its node holds */
} master_hold;

struct qrpc_master {
    qrpc_master_config cfg;
    char listen[QRPC__ADDR_MAX];
    qrpc_node *node;
    qrpc_channel *ch;
    pthread_t thread;
    atomic_bool stop;
    uint64_t id;                /* random: tells a restarted master apart */
    uint64_t epoch;
    master_node *bucket[MASTER_BUCKETS];
    size_t count;
    master_hold *holds;
    size_t n_holds, cap_holds;
    uint64_t next_until_ns;     /* the earliest hold's end; UINT64_MAX: none */
    uint64_t recover_ns;        /* the end of the first lease (see master_release) */
    bool recovering;
    uint64_t enc_epoch;         /* the epoch enc_table was made at; 0: none */
    qrpc_buf enc_table;         /* the Table, encoded */
    uint64_t sweep_ns;          /* when the leases are next checked */
};

static void master_log(const qrpc_master *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Lines go through the master's node, whose log is the master's (below). */
static void master_log(const qrpc_master *m, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    qrpc__vlog(m->node, fmt, ap);
    va_end(ap);
}

static uint64_t master_now(const qrpc_master *m)
{
    return qrpc__now_ns(m->node);
}

/* ---- the table ---------------------------------------------------------------- */

static master_node **master_slot(qrpc_master *m, uint64_t id)
{
    master_node **pp = &m->bucket[(id * 0x9e3779b97f4a7c15u) >> 52 & (MASTER_BUCKETS - 1)];

    while (*pp != NULL && (*pp)->info.id != id)
        pp = &(*pp)->next;
    return pp;
}

static const char *master_addr(const qrpc_Node *nd)
{
    return nd->addresses.len != 0 ? nd->addresses.items[0].address : "?";
}

static void master_changed(qrpc_master *m)
{
    m->epoch++;
}

static void master_remove(qrpc_master *m, master_node **pp, const char *why)
{
    master_node *e = *pp;

    master_log(m, "node %u (%s) %s", (unsigned)e->info.rank, master_addr(&e->info), why);
    *pp = e->next;
    qrpc_Node_free(&e->info);
    free(e);
    m->count--;
    master_changed(m);
}

static bool master_rank_used(qrpc_master *m, uint32_t rank)
{
    size_t i;
    master_node *e;

    for (i = 0; i < MASTER_BUCKETS; i++)
        for (e = m->bucket[i]; e != NULL; e = e->next)
            if (e->info.rank == rank)
                return true;
    return false;
}

/* The smallest rank no node has: one pass marking the ranks below count. */
static int master_free_rank(qrpc_master *m, uint32_t *out)
{
    size_t n = m->count + 1, i;
    bool *used = calloc(n, sizeof *used);
    master_node *e;

    if (used == NULL)
        return QRPC_ENOMEM;
    for (i = 0; i < MASTER_BUCKETS; i++)
        for (e = m->bucket[i]; e != NULL; e = e->next)
            if (e->info.rank < n)
                used[e->info.rank] = true;
    for (i = 0; i < n && used[i]; i++)
        ;
    free(used);
    *out = (uint32_t)i;
    return 0;
}

static int master_ref_cmp(const void *a, const void *b)
{
    const qrpc_ServiceRef *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    return c != 0 ? c : x->ver < y->ver ? -1 : x->ver > y->ver;
}

int qrpc__registration_check(qrpc_Registration *r, uint32_t max_services)
{
    size_t i;

    if (r->id == 0 || r->addresses.len == 0)
        return qrpc_MasterError_BAD_REGISTRATION;
    if (r->services.len > max_services)
        return qrpc_MasterError_TOO_MANY_SERVICES;
    for (i = 0; i < r->addresses.len; i++) {
        const qrpc_Address *a = &r->addresses.items[i];

        if (a->transport[0] == '\0' || a->address[0] == '\0')
            return qrpc_MasterError_BAD_REGISTRATION;
    }
    /* sorted, so that the same services compare equal whatever their order */
    if (r->services.len > 1)
        qsort(r->services.items, r->services.len, sizeof *r->services.items, master_ref_cmp);
    for (i = 0; i < r->services.len; i++) {
        if (r->services.items[i].name[0] == '\0')
            return qrpc_MasterError_BAD_REGISTRATION;
        if (i > 0 && master_ref_cmp(&r->services.items[i - 1], &r->services.items[i]) == 0)
            return qrpc_MasterError_BAD_REGISTRATION;
    }
    return 0;
}

/* Drops every other node at one of r's addresses: it cannot be there any more. */
static void master_evict_same_address(qrpc_master *m, const qrpc_Registration *r)
{
    size_t b, i, j;

    for (b = 0; b < MASTER_BUCKETS; b++) {
        master_node **pp = &m->bucket[b];

        while (*pp != NULL) {
            master_node *e = *pp;
            bool same = false;

            for (i = 0; e->info.id != r->id && i < e->info.addresses.len && !same; i++)
                for (j = 0; j < r->addresses.len && !same; j++)
                    same = strcmp(e->info.addresses.items[i].transport,
                                  r->addresses.items[j].transport) == 0 &&
                           strcmp(e->info.addresses.items[i].address,
                                  r->addresses.items[j].address) == 0;
            if (same)
                master_remove(m, pp, "replaced by a new node at its address");
            else
                pp = &e->next;
        }
    }
}

/* join: 0 with *lease, a MasterError, or a QRPC_E* code. */
static int master_join(qrpc_master *m, qrpc_Registration *r, qrpc_Lease *lease)
{
    master_node **pp, *e;
    int rc = qrpc__registration_check(r, m->cfg.max_services);

    if (rc != 0)
        return rc;
    master_evict_same_address(m, r);
    pp = master_slot(m, r->id);
    e = *pp;
    if (e != NULL) {            /* again: the same rank, what may have changed */
        if (!qrpc_Address_list_equal(&e->info.addresses, &r->addresses) ||
            !qrpc_ServiceRef_list_equal(&e->info.services, &r->services)) {
            qrpc_Address_list_free(&e->info.addresses);
            qrpc_ServiceRef_list_free(&e->info.services);
            e->info.addresses = r->addresses;
            e->info.services = r->services;
            memset(&r->addresses, 0, sizeof r->addresses);
            memset(&r->services, 0, sizeof r->services);
            master_log(m, "node %u (%s) now offers %zu services", (unsigned)e->info.rank,
                       master_addr(&e->info), e->info.services.len);
            master_changed(m);
        }
    } else {
        if (m->count >= m->cfg.max_nodes)
            return qrpc_MasterError_TOO_MANY_NODES;
        e = calloc(1, sizeof *e);
        if (e == NULL)
            return QRPC_ENOMEM;
        if (r->rank_hint != MASTER_NO_RANK && r->rank_hint < m->cfg.max_nodes &&
            !master_rank_used(m, r->rank_hint)) {
            e->info.rank = r->rank_hint;
        } else if ((rc = master_free_rank(m, &e->info.rank)) != 0) {
            free(e);
            return rc;
        }
        e->info.id = r->id;
        e->info.addresses = r->addresses;
        e->info.services = r->services;
        memset(&r->addresses, 0, sizeof r->addresses);
        memset(&r->services, 0, sizeof r->services);
        e->next = NULL;
        *pp = e;
        m->count++;
        master_log(m, "node %u (%s) joined with %zu services", (unsigned)e->info.rank,
                   master_addr(&e->info), e->info.services.len);
        master_changed(m);
    }
    e->seen_ns = master_now(m);
    lease->master = m->id;
    lease->rank = e->info.rank;
    lease->lease_ms = m->cfg.lease_ms;
    return 0;
}

/* Drops the nodes whose lease ran out; at most every lease / 8. */
static void master_sweep(qrpc_master *m, uint64_t now)
{
    uint64_t lease = (uint64_t)m->cfg.lease_ms * 1000000u;
    size_t b;

    if (now < m->sweep_ns)
        return;
    m->sweep_ns = now + lease / 8;
    for (b = 0; b < MASTER_BUCKETS; b++) {
        master_node **pp = &m->bucket[b];

        while (*pp != NULL) {
            if (now - (*pp)->seen_ns > lease)
                master_remove(m, pp, "dropped: its lease ran out");
            else
                pp = &(*pp)->next;
        }
    }
}

/* The table, encoded, as of the current epoch. */
static int master_table(qrpc_master *m, const qrpc_buf **out)
{
    qrpc_Table t;
    size_t i, k = 0;
    master_node *e;
    int rc;

    if (m->enc_epoch == m->epoch) {
        *out = &m->enc_table;
        return 0;
    }
    memset(&t, 0, sizeof t);
    t.master = m->id;
    t.epoch = m->epoch;
    if (m->count != 0) {
        t.nodes.items = malloc(m->count * sizeof *t.nodes.items);
        if (t.nodes.items == NULL)
            return QRPC_ENOMEM;
    }
    /* shallow copies: the entries keep their storage */
    for (i = 0; i < MASTER_BUCKETS; i++)
        for (e = m->bucket[i]; e != NULL; e = e->next)
            t.nodes.items[k++] = e->info;
    t.nodes.len = k;
    m->enc_table.len = 0;
    rc = qrpc_Table_encode(&m->enc_table, &t);
    free(t.nodes.items);
    if (rc != 0) {
        m->enc_epoch = 0;
        return rc;
    }
    m->enc_epoch = m->epoch;
    *out = &m->enc_table;
    return 0;
}

/* ---- answering ------------------------------------------------------------------ */

/* Answers req with status and, on 0, a copy of the bytes in body (NULL: none). */
static void master_answer(qrpc_request *req, int status, const qrpc_buf *pre,
                          const qrpc_buf *body)
{
    qrpc_buf out;
    int rc = 0;

    qrpc_buf_init(&out);
    if (status == 0 && pre != NULL)
        rc = qrpc_put_raw(&out, pre->data, pre->len);
    if (status == 0 && rc == 0 && body != NULL)
        rc = qrpc_put_raw(&out, body->data, body->len);
    if (rc != 0)
        status = rc;
    (void)qrpc_send_response(req, status, &out);
}

/* A watch's answer: changed and the table, or unchanged and an empty one. */
static void master_answer_watch(qrpc_master *m, qrpc_request *req, bool changed)
{
    const qrpc_buf *tab = NULL;
    qrpc_buf pre;
    int rc;

    qrpc_buf_init(&pre);
    if (changed) {
        rc = qrpc_put_bool(&pre, true);
        if (rc == 0)
            rc = master_table(m, &tab);
    } else {
        qrpc_Table empty;

        memset(&empty, 0, sizeof empty);
        empty.master = m->id;
        empty.epoch = m->epoch;
        rc = qrpc_put_bool(&pre, false);
        if (rc == 0)
            rc = qrpc_Table_encode(&pre, &empty);
    }
    master_answer(req, rc, &pre, tab);
    qrpc_buf_free(&pre);
}

/*
 * Whether a node holding (master, epoch) gets the table now.  During its
 * first lease a master that has just started is still being told who is
 * alive: a node that knew another master keeps its old table until every
 * live node has had the time to register again (they heartbeat every
 * third of a lease), rather than switch to a table with half the
 * cluster missing.  A node that knows no table gets it at once.
 */
static bool master_due(const qrpc_master *m, uint64_t master, uint64_t epoch)
{
    if (master == m->id)
        return epoch != m->epoch;
    return master == 0 || !m->recovering;
}

/*
 * Answers the held watches that are due (master_due) or whose hold ran
 * out; called when the table changed, when the earliest hold ends and
 * when the first lease ends.
 */
static void master_release(qrpc_master *m, uint64_t now)
{
    size_t i = 0;

    m->next_until_ns = UINT64_MAX;
    while (i < m->n_holds) {
        master_hold *h = &m->holds[i];
        bool due = master_due(m, h->master, h->epoch);

        if (due || h->until_ns <= now) {
            master_answer_watch(m, h->req, due);
            *h = m->holds[--m->n_holds];
        } else {
            if (h->until_ns < m->next_until_ns)
                m->next_until_ns = h->until_ns;
            i++;
        }
    }
}

static void master_watch(qrpc_master *m, qrpc_request *req, qrpc_reader *rd)
{
    uint64_t master = 0, epoch = 0;
    uint32_t hold = 0;
    int rc = qrpc_get_u64(rd, &master);

    if (rc == 0)
        rc = qrpc_get_u64(rd, &epoch);
    if (rc == 0)
        rc = qrpc_get_u32(rd, &hold);
    if (rc == 0 && qrpc_reader_left(rd) != 0)
        rc = QRPC_EDECODE;
    if (rc != 0) {
        master_answer(req, rc, NULL, NULL);
        return;
    }
    if (master_due(m, master, epoch)) {
        master_answer_watch(m, req, true);
        return;
    }
    /* at most one held call per node and a few for tools: beyond, no hold */
    if (m->n_holds >= (size_t)m->cfg.max_nodes * 2 || hold == 0) {
        master_answer_watch(m, req, false);
        return;
    }
    if (m->n_holds == m->cap_holds) {
        size_t cap = m->cap_holds != 0 ? m->cap_holds * 2 : 16;
        master_hold *h = realloc(m->holds, cap * sizeof *h);

        if (h == NULL) {
            master_answer(req, QRPC_ENOMEM, NULL, NULL);
            return;
        }
        m->holds = h;
        m->cap_holds = cap;
    }
    if (hold > MASTER_MAX_HOLD_MS)
        hold = MASTER_MAX_HOLD_MS;
    m->holds[m->n_holds].req = req;
    m->holds[m->n_holds].until_ns = master_now(m) + (uint64_t)hold * 1000000u;
    m->holds[m->n_holds].master = master;
    m->holds[m->n_holds].epoch = epoch;
    if (m->holds[m->n_holds].until_ns < m->next_until_ns)
        m->next_until_ns = m->holds[m->n_holds].until_ns;
    m->n_holds++;
}

static void master_handle(qrpc_master *m, qrpc_request *req)
{
    qrpc_reader rd;
    qrpc_buf out;
    uint64_t id = 0;
    int rc;

    qrpc_request_args(req, &rd);
    qrpc_buf_init(&out);
    switch (qrpc_request_method(req)) {
    case qrpc_Master_join_ID: {
        qrpc_Registration r;
        qrpc_Lease lease;

        memset(&r, 0, sizeof r);
        rc = qrpc_Registration_decode(&rd, &r);
        if (rc == 0 && qrpc_reader_left(&rd) != 0)
            rc = QRPC_EDECODE;
        if (rc == 0)
            rc = master_join(m, &r, &lease);
        if (rc == 0)
            rc = qrpc_Lease_encode(&out, &lease);
        else if (rc > 0)
            master_log(m, "refused a registration from %016llx: %s",
                       (unsigned long long)r.id, qrpc_MasterError_name((qrpc_MasterError)rc));
        qrpc_Registration_free(&r);
        break;
    }
    case qrpc_Master_leave_ID: {
        master_node **pp;

        rc = qrpc_get_u64(&rd, &id);
        if (rc == 0 && qrpc_reader_left(&rd) != 0)
            rc = QRPC_EDECODE;
        if (rc == 0 && *(pp = master_slot(m, id)) != NULL)
            master_remove(m, pp, "left");
        break;
    }
    case qrpc_Master_heartbeat_ID: {
        master_node *e;

        rc = qrpc_get_u64(&rd, &id);
        if (rc == 0 && qrpc_reader_left(&rd) != 0)
            rc = QRPC_EDECODE;
        if (rc != 0)
            break;
        e = *master_slot(m, id);
        if (e == NULL) {
            rc = qrpc_MasterError_NOT_REGISTERED;
        } else {
            qrpc_Lease lease = { m->id, e->info.rank, m->cfg.lease_ms };

            e->seen_ns = master_now(m);
            rc = qrpc_Lease_encode(&out, &lease);
        }
        break;
    }
    case qrpc_Master_get_table_ID: {
        const qrpc_buf *tab;

        rc = qrpc_reader_left(&rd) != 0 ? QRPC_EDECODE : master_table(m, &tab);
        if (rc == 0)
            rc = qrpc_put_raw(&out, tab->data, tab->len);
        break;
    }
    case qrpc_Master_watch_ID:
        master_watch(m, req, &rd);      /* answers or holds req */
        qrpc_buf_free(&out);
        return;
    default:
        rc = QRPC_ENOMETHOD;    /* the channel's desc lets none through */
        break;
    }
    (void)qrpc_send_response(req, rc, &out);
}

static void *master_main(void *arg)
{
    qrpc_master *m = arg;

    while (!atomic_load(&m->stop)) {
        uint64_t now = master_now(m), before = m->epoch;
        int timeout = MASTER_POLL_MS;
        qrpc_request *req;
        bool recovered = false;
        int rc;

        if (m->next_until_ns <= now)
            timeout = 0;
        else if ((m->next_until_ns - now) / 1000000u < (uint64_t)timeout)
            timeout = (int)((m->next_until_ns - now) / 1000000u);
        rc = qrpc_recv_request(m->ch, timeout, &req);
        if (rc == 0)
            master_handle(m, req);
        else if (rc != QRPC_ETIMEDOUT)
            break;
        now = master_now(m);
        master_sweep(m, now);
        if (m->recovering && now >= m->recover_ns) {
            m->recovering = false;
            recovered = true;
        }
        if (m->epoch != before || recovered || now >= m->next_until_ns)
            master_release(m, now);
    }
    /* nodes holding a watch learn at once that this master is gone */
    for (size_t i = 0; i < m->n_holds; i++)
        (void)qrpc_send_response(m->holds[i].req, QRPC_ECLOSED, NULL);
    m->n_holds = 0;
    qrpc_channel_close(m->ch);
    m->ch = NULL;
    return NULL;
}

/* ---- life cycle ----------------------------------------------------------------- */

void qrpc_master_config_init(qrpc_master_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->listen = MASTER_DEFAULT_LISTEN;
    cfg->lease_ms = MASTER_DEFAULT_LEASE_MS;
    cfg->max_nodes = MASTER_DEFAULT_NODES;
    cfg->max_services = MASTER_DEFAULT_SERVICES;
}

static int master_config_fill(qrpc_master_config *out, const qrpc_master_config *in)
{
    qrpc_master_config_init(out);
    if (in == NULL)
        return 0;
    if ((in->lease_ms != 0 && (in->lease_ms < MASTER_MIN_LEASE_MS ||
                               in->lease_ms > MASTER_MAX_LEASE_MS)) ||
        in->max_nodes > MASTER_MAX_NODES || in->max_services > MASTER_MAX_SERVICES)
        return QRPC_EINVAL;
    if (in->listen != NULL)
        out->listen = in->listen;
    if (in->lease_ms != 0)
        out->lease_ms = in->lease_ms;
    if (in->max_nodes != 0)
        out->max_nodes = in->max_nodes;
    if (in->max_services != 0)
        out->max_services = in->max_services;
    out->log = in->log;
    out->log_arg = in->log_arg;
    return 0;
}

/* Without a log function of the master's, its node's lines go to stderr. */
static void master_stderr_log(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "qrpc master: %s\n", line);
}

int qrpc_master_start(const qrpc_master_config *cfg, qrpc_master **out)
{
    qrpc_node_config nc;
    qrpc_master *m;
    int rc;

    if (out == NULL)
        return QRPC_EINVAL;
    *out = NULL;
    m = calloc(1, sizeof *m);
    if (m == NULL)
        return QRPC_ENOMEM;
    rc = master_config_fill(&m->cfg, cfg);
    if (rc != 0)
        goto fail;
    if (strlen(m->cfg.listen) >= sizeof m->listen) {
        rc = QRPC_EADDR;
        goto fail;
    }
    snprintf(m->listen, sizeof m->listen, "%s", m->cfg.listen);
    m->cfg.listen = m->listen;
    m->id = qrpc__random64() | 1;       /* never 0: "no master yet" */
    m->epoch = 1;
    atomic_init(&m->stop, false);
    qrpc_buf_init(&m->enc_table);
    qrpc_node_config_init(&nc);
    nc.listen = m->listen;
    nc.master = "";             /* it must not register with itself */
    nc.workers = 1;             /* the channel needs none; dispatch wants one */
    nc.max_message = MASTER_MAX_MESSAGE;
    nc.log = m->cfg.log != NULL ? m->cfg.log : master_stderr_log;
    nc.log_arg = m->cfg.log_arg;
    rc = qrpc_node_create(&nc, &m->node);
    if (rc != 0)
        goto fail;
    rc = qrpc_channel_open(m->node, &qrpc_Master_desc, &m->ch);
    if (rc != 0)
        goto fail;
    m->next_until_ns = UINT64_MAX;
    m->recovering = true;
    m->recover_ns = master_now(m) + (uint64_t)m->cfg.lease_ms * 1000000u;
    if (pthread_create(&m->thread, NULL, master_main, m) != 0) {
        rc = QRPC_ENOMEM;
        goto fail;
    }
    master_log(m, "listening on %s (lease %u ms)", qrpc_node_address(m->node),
               (unsigned)m->cfg.lease_ms);
    *out = m;
    return 0;

fail:
    qrpc_channel_close(m->ch);
    qrpc_node_destroy(m->node);
    qrpc_buf_free(&m->enc_table);
    free(m);
    return rc;
}

const char *qrpc_master_address(const qrpc_master *m)
{
    return m != NULL ? qrpc_node_address(m->node) : NULL;
}

void qrpc_master_stop(qrpc_master *m)
{
    size_t i;
    master_node *e, *next;

    if (m == NULL)
        return;
    atomic_store(&m->stop, true);
    pthread_join(m->thread, NULL);      /* it closes the channel */
    qrpc_node_destroy(m->node);
    for (i = 0; i < MASTER_BUCKETS; i++)
        for (e = m->bucket[i]; e != NULL; e = next) {
            next = e->next;
            qrpc_Node_free(&e->info);
            free(e);
        }
    free(m->holds);
    qrpc_buf_free(&m->enc_table);
    free(m);
}
