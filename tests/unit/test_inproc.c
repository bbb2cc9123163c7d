/*
 * test_inproc.c - calls to a service served by the same node ("local"),
 * end to end through qrpc_call() / qrpc_call_async(), the local FrontEnd
 * and qrpc__dispatch().
 *
 * The service, test.Calc, is written here by hand the way qrpcgen emits
 * one: a desc, a handler table, and one dispatch function per method that
 * decodes the arguments with the wire functions (rejecting trailing bytes
 * before the handler runs), calls the handler and encodes its results.
 * Handler runs are counted, so "the handler did not run" is checked, not
 * assumed.  Timeouts use the injectable clock of testing.h; threads
 * synchronise with mutexes and condition variables, never with sleeps.
 */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "qrpc.h"
#include "../../runtime/src/testing.h"

/* ---- the service, as generated code would have it ----------------------- */

enum {
    CALC_ADD = 1,               /* add(i32 a, i32 b) -> i32, idempotent */
    CALC_DIV = 2,               /* div(i32 a, i32 b) -> i32; b == 0: error 7 */
    CALC_NOTE = 3,              /* oneway note(string s); "fail": error 9 */
    CALC_WHOAMI = 4,            /* whoami() -> (u64 client, u32 method, u64 state) */
    CALC_ECHO = 5,              /* echo(string s) -> string; "+..." comes back twice */
    CALC_NEST = 6,              /* nest(Node n) -> u32 depth; Node: optional<Node> */
    CALC_REENTER = 7,           /* reenter() -> (i32 serve, i32 unserve, i32 nested add) */
    CALC_BLOCK = 8,             /* block(): waits until the test releases it */
};

#define CALC_APP_DIV0 7
#define CALC_APP_NOTE 9

typedef struct calc_handlers {
    int (*add)(qrpc_ctx *ctx, int32_t a, int32_t b, int32_t *out);
    int (*div)(qrpc_ctx *ctx, int32_t a, int32_t b, int32_t *out);
    int (*note)(qrpc_ctx *ctx, const char *s);
    int (*whoami)(qrpc_ctx *ctx, uint64_t *client, uint32_t *method, uint64_t *state);
    int (*echo)(qrpc_ctx *ctx, const char *s, char **out);
    int (*nest)(qrpc_ctx *ctx, uint32_t depth, uint32_t *out);
    int (*reenter)(qrpc_ctx *ctx, int32_t *serve, int32_t *unserve, int32_t *add);
    int (*block)(qrpc_ctx *ctx);
} calc_handlers;

static int calc_d_add(qrpc_ctx *ctx, const void *h, qrpc_reader *args, qrpc_buf *res)
{
    int32_t a, b, out = 0;
    int rc;

    if (qrpc_get_i32(args, &a) != 0 || qrpc_get_i32(args, &b) != 0 ||
        qrpc_reader_left(args) != 0)
        return QRPC_EDECODE;
    rc = ((const calc_handlers *)h)->add(ctx, a, b, &out);
    return rc != 0 ? rc : qrpc_put_i32(res, out);
}

static int calc_d_div(qrpc_ctx *ctx, const void *h, qrpc_reader *args, qrpc_buf *res)
{
    int32_t a, b, out = 0;
    int rc;

    if (qrpc_get_i32(args, &a) != 0 || qrpc_get_i32(args, &b) != 0 ||
        qrpc_reader_left(args) != 0)
        return QRPC_EDECODE;
    rc = ((const calc_handlers *)h)->div(ctx, a, b, &out);
    return rc != 0 ? rc : qrpc_put_i32(res, out);
}

static int calc_d_note(qrpc_ctx *ctx, const void *h, qrpc_reader *args, qrpc_buf *res)
{
    char *s;
    int rc;

    (void)res;
    rc = qrpc_get_string(args, &s, 64);
    if (rc != 0)
        return rc;
    if (qrpc_reader_left(args) != 0) {
        free(s);
        return QRPC_EDECODE;
    }
    rc = ((const calc_handlers *)h)->note(ctx, s);
    free(s);
    return rc;
}

static int calc_d_whoami(qrpc_ctx *ctx, const void *h, qrpc_reader *args, qrpc_buf *res)
{
    uint64_t client = 0, state = 0;
    uint32_t method = 0;
    int rc;

    if (qrpc_reader_left(args) != 0)
        return QRPC_EDECODE;
    rc = ((const calc_handlers *)h)->whoami(ctx, &client, &method, &state);
    if (rc == 0)
        rc = qrpc_put_u64(res, client);
    if (rc == 0)
        rc = qrpc_put_u32(res, method);
    if (rc == 0)
        rc = qrpc_put_u64(res, state);
    return rc;
}

static int calc_d_echo(qrpc_ctx *ctx, const void *h, qrpc_reader *args, qrpc_buf *res)
{
    char *s, *out = NULL;
    int rc;

    rc = qrpc_get_string(args, &s, 0);
    if (rc != 0)
        return rc;
    if (qrpc_reader_left(args) != 0) {
        free(s);
        return QRPC_EDECODE;
    }
    rc = ((const calc_handlers *)h)->echo(ctx, s, &out);
    if (rc == 0)
        rc = qrpc_put_string(res, out, 0);
    free(out);
    free(s);
    return rc;
}

/* A recursive type, decoded the way generated code must: enter, then leave. */
static int calc_decode_node(qrpc_reader *r, uint32_t *depth)
{
    bool present;
    int rc;

    if (qrpc_reader_enter(r) != 0)
        return QRPC_EDECODE;
    rc = qrpc_get_present(r, &present);
    if (rc == 0) {
        ++*depth;
        if (present)
            rc = calc_decode_node(r, depth);
    }
    qrpc_reader_leave(r);
    return rc;
}

static int calc_d_nest(qrpc_ctx *ctx, const void *h, qrpc_reader *args, qrpc_buf *res)
{
    uint32_t depth = 0, out = 0;
    int rc;

    if (calc_decode_node(args, &depth) != 0 || qrpc_reader_left(args) != 0)
        return QRPC_EDECODE;
    rc = ((const calc_handlers *)h)->nest(ctx, depth, &out);
    return rc != 0 ? rc : qrpc_put_u32(res, out);
}

static int calc_d_reenter(qrpc_ctx *ctx, const void *h, qrpc_reader *args, qrpc_buf *res)
{
    int32_t a = 0, b = 0, c = 0;
    int rc;

    if (qrpc_reader_left(args) != 0)
        return QRPC_EDECODE;
    rc = ((const calc_handlers *)h)->reenter(ctx, &a, &b, &c);
    if (rc == 0)
        rc = qrpc_put_i32(res, a);
    if (rc == 0)
        rc = qrpc_put_i32(res, b);
    if (rc == 0)
        rc = qrpc_put_i32(res, c);
    return rc;
}

static int calc_d_block(qrpc_ctx *ctx, const void *h, qrpc_reader *args, qrpc_buf *res)
{
    (void)res;
    if (qrpc_reader_left(args) != 0)
        return QRPC_EDECODE;
    return ((const calc_handlers *)h)->block(ctx);
}

static const qrpc_method_desc calc_methods[] = {
    { CALC_ADD, "add", QRPC_METHOD_IDEMPOTENT },
    { CALC_DIV, "div", 0 },
    { CALC_NOTE, "note", QRPC_METHOD_ONEWAY },
    { CALC_WHOAMI, "whoami", QRPC_METHOD_IDEMPOTENT },
    { CALC_ECHO, "echo", 0 },
    { CALC_NEST, "nest", 0 },
    { CALC_REENTER, "reenter", 0 },
    { CALC_BLOCK, "block", 0 },
};

static const qrpc_dispatch_fn calc_dispatch[] = {
    calc_d_add, calc_d_div, calc_d_note, calc_d_whoami, calc_d_echo,
    calc_d_nest, calc_d_reenter, calc_d_block,
};

static const qrpc_service_desc calc_desc = {
    "test.Calc", 1, calc_methods, sizeof calc_methods / sizeof calc_methods[0]
};

/* ---- the handlers and their state --------------------------------------- */

typedef struct calc_state {
    atomic_ulong runs[16];      /* handler runs, by method id */
    atomic_ulong bumps;         /* add() calls with a == 1: a shared counter */
    char note[65];
    qrpc_node *node;            /* for reenter() */
    qrpc_client *inner;         /* for reenter(): a client of the same node */
    /* block(): entered is signalled, then it waits for release */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool entered, release, returned;
} calc_state;

static unsigned long runs(calc_state *st, int method)
{
    return atomic_load(&st->runs[method]);
}

static calc_state *calc_st(qrpc_ctx *ctx, int method)
{
    calc_state *st = qrpc_ctx_state(ctx);

    ck_assert_ptr_nonnull(st);
    ck_assert_uint_eq(qrpc_ctx_method(ctx), (uint32_t)method);
    atomic_fetch_add(&st->runs[method], 1);
    return st;
}

static int h_add(qrpc_ctx *ctx, int32_t a, int32_t b, int32_t *out)
{
    calc_state *st = calc_st(ctx, CALC_ADD);

    if (a == 1)
        atomic_fetch_add(&st->bumps, 1);
    *out = (int32_t)((uint32_t)a + (uint32_t)b);
    return 0;
}

static int h_div(qrpc_ctx *ctx, int32_t a, int32_t b, int32_t *out)
{
    calc_st(ctx, CALC_DIV);
    if (b == 0)
        return CALC_APP_DIV0;
    *out = a / b;
    return 0;
}

static int h_note(qrpc_ctx *ctx, const char *s)
{
    calc_state *st = calc_st(ctx, CALC_NOTE);

    if (strcmp(s, "fail") == 0)
        return CALC_APP_NOTE;
    strcpy(st->note, s);
    return 0;
}

static int h_whoami(qrpc_ctx *ctx, uint64_t *client, uint32_t *method, uint64_t *state)
{
    calc_st(ctx, CALC_WHOAMI);
    *client = qrpc_ctx_client_id(ctx);
    *method = qrpc_ctx_method(ctx);
    *state = (uint64_t)(uintptr_t)qrpc_ctx_state(ctx);
    return 0;
}

static int h_echo(qrpc_ctx *ctx, const char *s, char **out)
{
    size_t len = strlen(s);

    calc_st(ctx, CALC_ECHO);
    if (s[0] != '+')
        return qrpc_string_copy(out, s);
    *out = malloc(2 * len + 1);
    if (*out == NULL)
        return QRPC_ENOMEM;
    memcpy(*out, s, len);
    memcpy(*out + len, s, len + 1);
    return 0;
}

static int h_nest(qrpc_ctx *ctx, uint32_t depth, uint32_t *out)
{
    calc_st(ctx, CALC_NEST);
    *out = depth;
    return 0;
}

static int call_add(qrpc_client *c, int32_t a, int32_t b, int32_t *sum);

static int h_reenter(qrpc_ctx *ctx, int32_t *serve, int32_t *unserve, int32_t *add)
{
    calc_state *st = calc_st(ctx, CALC_REENTER);
    int32_t sum = 0;

    *serve = qrpc_serve(st->node, &calc_desc, calc_dispatch, NULL, st);
    *unserve = qrpc_unserve(st->node, "test.Calc", 1);
    *add = call_add(st->inner, 20, 22, &sum);
    if (*add == 0 && sum != 42)
        *add = -1000;
    return 0;
}

static int h_block(qrpc_ctx *ctx)
{
    calc_state *st = calc_st(ctx, CALC_BLOCK);

    pthread_mutex_lock(&st->lock);
    st->entered = true;
    pthread_cond_broadcast(&st->cond);
    while (!st->release)
        pthread_cond_wait(&st->cond, &st->lock);
    st->returned = true;
    pthread_mutex_unlock(&st->lock);
    return 0;
}

static const calc_handlers calc_impl = {
    .add = h_add, .div = h_div, .note = h_note, .whoami = h_whoami,
    .echo = h_echo, .nest = h_nest, .reenter = h_reenter, .block = h_block,
};

/* ---- the client side, as generated stubs would have it ------------------ */

static int call_add(qrpc_client *c, int32_t a, int32_t b, int32_t *sum)
{
    qrpc_buf args = { NULL, 0, 0 }, reply = { NULL, 0, 0 };
    qrpc_reader r;
    int rc;

    if ((rc = qrpc_put_i32(&args, a)) != 0 || (rc = qrpc_put_i32(&args, b)) != 0) {
        qrpc_buf_free(&args);
        return rc;
    }
    rc = qrpc_call(c, CALC_ADD, &args, &reply);
    ck_assert_ptr_null(args.data);          /* taken in every case */
    ck_assert_uint_eq(args.len, 0);
    if (rc == 0) {
        qrpc_reader_init(&r, reply.data, reply.len);
        if (qrpc_get_i32(&r, sum) != 0 || qrpc_reader_left(&r) != 0)
            rc = QRPC_EDECODE;
    } else {
        ck_assert_uint_eq(reply.len, 0);
    }
    qrpc_buf_free(&reply);
    return rc;
}

/* ---- fixture ------------------------------------------------------------ */

static qrpc_node *node;
static qrpc_client *client;
static calc_state state;

static void calc_state_init(calc_state *st)
{
    int i;

    memset(st, 0, sizeof *st);
    for (i = 0; i < 16; i++)
        atomic_init(&st->runs[i], 0);
    atomic_init(&st->bumps, 0);
    pthread_mutex_init(&st->lock, NULL);
    pthread_cond_init(&st->cond, NULL);
}

static void setup(void)
{
    calc_state_init(&state);
    ck_assert_int_eq(qrpc_node_create(NULL, &node), 0);
    state.node = node;
    ck_assert_int_eq(qrpc_serve(node, &calc_desc, calc_dispatch, &calc_impl, &state), 0);
    ck_assert_int_eq(qrpc_client_create(node, "local", &calc_desc, &client), 0);
    ck_assert_int_eq(qrpc_client_create(node, NULL, &calc_desc, &state.inner), 0);
}

static void teardown(void)
{
    qrpc_client_destroy(state.inner);
    qrpc_client_destroy(client);
    qrpc_node_destroy(node);
    pthread_cond_destroy(&state.cond);
    pthread_mutex_destroy(&state.lock);
    node = NULL;
    client = NULL;
}

/* Calls method with raw argument bytes; returns the status, reply in *reply. */
static int call_raw(qrpc_client *c, uint32_t method, const void *p, size_t len,
                    qrpc_buf *reply)
{
    qrpc_buf args = { NULL, 0, 0 };

    ck_assert_int_eq(qrpc_put_raw(&args, p, len), 0);
    return qrpc_call(c, method, &args, reply);
}

/* ---- tests: results and errors ------------------------------------------ */

START_TEST(test_success)
{
    qrpc_buf args = { NULL, 0, 0 }, reply = { NULL, 0, 0 };
    qrpc_reader r;
    int32_t sum = 0;
    int i;

    ck_assert_int_eq(call_add(client, 2, 3, &sum), 0);
    ck_assert_int_eq(sum, 5);
    ck_assert_int_eq(call_add(client, INT32_MAX, 1, &sum), 0);
    ck_assert_int_eq(sum, INT32_MIN);
    ck_assert_uint_eq(runs(&state, CALC_ADD), 2);

    /* One reply buffer reused across calls: its storage is kept. */
    for (i = 0; i < 100; i++) {
        int32_t q;

        ck_assert_int_eq(qrpc_put_i32(&args, 100 * i), 0);
        ck_assert_int_eq(qrpc_put_i32(&args, 10), 0);
        ck_assert_int_eq(qrpc_call(client, CALC_DIV, &args, &reply), 0);
        ck_assert_ptr_null(args.data);
        ck_assert_uint_eq(reply.len, 4);
        qrpc_reader_init(&r, reply.data, reply.len);
        ck_assert_int_eq(qrpc_get_i32(&r, &q), 0);
        ck_assert_int_eq(q, 10 * i);
    }
    qrpc_buf_free(&reply);

    /* Strings both ways. */
    {
        char *s;

        ck_assert_int_eq(qrpc_put_string(&args, "round trip", 0), 0);
        ck_assert_int_eq(qrpc_call(client, CALC_ECHO, &args, &reply), 0);
        qrpc_reader_init(&r, reply.data, reply.len);
        ck_assert_int_eq(qrpc_get_string(&r, &s, 0), 0);
        ck_assert_str_eq(s, "round trip");
        free(s);
        qrpc_buf_free(&reply);
    }
}
END_TEST

START_TEST(test_application_error)
{
    static const uint8_t div0[] = { 1, 0, 0, 0, 0, 0, 0, 0 };
    qrpc_buf reply = { NULL, 0, 0 };

    /* A reply buffer with old contents: emptied on error, storage kept. */
    ck_assert_int_eq(qrpc_put_u64(&reply, 42), 0);
    ck_assert_int_eq(call_raw(client, CALC_DIV, div0, sizeof div0, &reply), CALC_APP_DIV0);
    ck_assert_uint_eq(reply.len, 0);
    ck_assert_uint_eq(runs(&state, CALC_DIV), 1);
    ck_assert_str_eq(qrpc_strerror(CALC_APP_DIV0), "application error");
    qrpc_buf_free(&reply);
}
END_TEST

START_TEST(test_no_service)
{
    static const qrpc_service_desc v2 = { "test.Calc", 2, calc_methods, 8 };
    static const qrpc_service_desc other = { "test.Other", 1, calc_methods, 8 };
    static const qrpc_service_desc prefix = { "test.Cal", 1, calc_methods, 8 };
    qrpc_client *c2, *co, *cp;
    int32_t sum;

    ck_assert_int_eq(qrpc_client_create(node, "local", &v2, &c2), 0);
    ck_assert_int_eq(qrpc_client_create(node, "local", &other, &co), 0);
    ck_assert_int_eq(qrpc_client_create(node, "local", &prefix, &cp), 0);
    ck_assert_int_eq(call_add(c2, 1, 2, &sum), QRPC_ENOSERVICE);
    ck_assert_int_eq(call_add(co, 1, 2, &sum), QRPC_ENOSERVICE);
    ck_assert_int_eq(call_add(cp, 1, 2, &sum), QRPC_ENOSERVICE);

    /* Served later: found then.  Withdrawn: gone again. */
    ck_assert_int_eq(qrpc_serve(node, &v2, calc_dispatch, &calc_impl, &state), 0);
    ck_assert_int_eq(call_add(c2, 1, 2, &sum), 0);
    ck_assert_int_eq(sum, 3);
    ck_assert_int_eq(qrpc_unserve(node, "test.Calc", 2), 0);
    ck_assert_int_eq(call_add(c2, 1, 2, &sum), QRPC_ENOSERVICE);
    ck_assert_int_eq(qrpc_unserve(node, "test.Calc", 2), QRPC_ENOSERVICE);
    ck_assert_int_eq(qrpc_unserve(node, "test.Nope", 1), QRPC_ENOSERVICE);

    /* Version 1 was never disturbed, until it is withdrawn too. */
    ck_assert_int_eq(call_add(client, 1, 2, &sum), 0);
    ck_assert_int_eq(qrpc_unserve(node, "test.Calc", 1), 0);
    ck_assert_int_eq(call_add(client, 1, 2, &sum), QRPC_ENOSERVICE);
    ck_assert_uint_eq(runs(&state, CALC_ADD), 2);

    qrpc_client_destroy(c2);
    qrpc_client_destroy(co);
    qrpc_client_destroy(cp);
}
END_TEST

/*
 * QRPC_METHOD_PING: every served service answers it without running a
 * handler; a service not served answers QRPC_ENOSERVICE; no service may
 * define it.
 */
START_TEST(test_ping)
{
    static const qrpc_method_desc ping_m[] = {
        { QRPC_METHOD_PING, "ping", QRPC_METHOD_IDEMPOTENT },
    };
    static const qrpc_service_desc pcalc = { "test.Calc", 1, ping_m, 1 };
    static const qrpc_service_desc pother = { "test.Calc", 9, ping_m, 1 };
    qrpc_dispatch_fn d[1];
    qrpc_channel *ch = NULL;
    qrpc_client *c, *co;
    qrpc_buf args, reply;
    unsigned before;
    int i;

    ck_assert_int_eq(qrpc_client_create(node, "local", &pcalc, &c), 0);
    ck_assert_int_eq(qrpc_client_create(node, "local", &pother, &co), 0);
    before = 0;
    for (i = 0; i < 8; i++)
        before += runs(&state, i);
    qrpc_buf_init(&reply);
    qrpc_buf_init(&args);
    ck_assert_int_eq(qrpc_call(c, QRPC_METHOD_PING, &args, &reply), 0);
    ck_assert_uint_eq(reply.len, 0);
    qrpc_buf_init(&args);
    ck_assert_int_eq(qrpc_call(co, QRPC_METHOD_PING, &args, &reply), QRPC_ENOSERVICE);
    for (i = 0; i < 8; i++)
        before -= runs(&state, i);
    ck_assert_uint_eq(before, 0);       /* no handler ran */
    /* serving it is refused, with dispatch functions or as a channel */
    d[0] = calc_dispatch[0];
    ck_assert_int_eq(qrpc_serve(node, &pother, d, NULL, NULL), QRPC_EINVAL);
    ck_assert_int_eq(qrpc_channel_open(node, &pother, &ch), QRPC_EINVAL);
    ck_assert_ptr_null(ch);
    qrpc_buf_free(&reply);
    qrpc_client_destroy(c);
    qrpc_client_destroy(co);
}
END_TEST

START_TEST(test_no_method)
{
    /* The client knows a method (50) that the served desc does not. */
    static const qrpc_method_desc more[] = {
        { CALC_ADD, "add", QRPC_METHOD_IDEMPOTENT }, { 50, "later", 0 },
    };
    static const qrpc_service_desc newer = { "test.Calc", 1, more, 2 };
    qrpc_buf reply = { NULL, 0, 0 };
    qrpc_client *c;
    int32_t sum;

    ck_assert_int_eq(call_raw(client, 99, "", 0, &reply), QRPC_ENOMETHOD);
    ck_assert_int_eq(call_raw(client, 0, "", 0, &reply), QRPC_ENOMETHOD);
    ck_assert_int_eq(qrpc_client_create(node, "local", &newer, &c), 0);
    ck_assert_int_eq(call_raw(c, 50, "", 0, &reply), QRPC_ENOMETHOD);
    ck_assert_uint_eq(reply.len, 0);
    ck_assert_int_eq(call_add(c, 5, 6, &sum), 0);
    ck_assert_int_eq(sum, 11);
    qrpc_client_destroy(c);
    qrpc_buf_free(&reply);
}
END_TEST

START_TEST(test_decode_errors)
{
    static const uint8_t add9[] = { 1, 0, 0, 0, 2, 0, 0, 0, 0xee };
    static const uint8_t nul[] = { 3, 0, 0, 0, 'a', 0, 'b' };
    static const uint8_t note_long[] = { 65, 0, 0, 0 };     /* over string<64> */
    qrpc_buf reply = { NULL, 0, 0 };
    size_t cut;

    /* Every truncation of add's 8 argument bytes, and one trailing byte. */
    for (cut = 0; cut < 8; cut++)
        ck_assert_int_eq(call_raw(client, CALC_ADD, add9, cut, &reply), QRPC_EDECODE);
    ck_assert_int_eq(call_raw(client, CALC_ADD, add9, 9, &reply), QRPC_EDECODE);
    ck_assert_int_eq(call_raw(client, CALC_WHOAMI, add9, 1, &reply), QRPC_EDECODE);
    ck_assert_int_eq(call_raw(client, CALC_ECHO, nul, sizeof nul, &reply), QRPC_EDECODE);
    ck_assert_int_eq(call_raw(client, CALC_NOTE, note_long, sizeof note_long, NULL),
                     QRPC_EDECODE);
    ck_assert_uint_eq(reply.len, 0);
    ck_assert_uint_eq(runs(&state, CALC_ADD), 0);
    ck_assert_uint_eq(runs(&state, CALC_WHOAMI), 0);
    ck_assert_uint_eq(runs(&state, CALC_ECHO), 0);
    ck_assert_uint_eq(runs(&state, CALC_NOTE), 0);

    /* The same bytes, well-formed, do run it. */
    ck_assert_int_eq(call_raw(client, CALC_ADD, add9, 8, &reply), 0);
    ck_assert_uint_eq(runs(&state, CALC_ADD), 1);
    qrpc_buf_free(&reply);
}
END_TEST

START_TEST(test_serve_errors)
{
    static const qrpc_method_desc dup[] = {
        { 1, "a", 0 }, { 2, "b", 0 }, { 1, "c", 0 },
    };
    static const qrpc_service_desc dup_desc = { "test.Dup", 1, dup, 3 };
    static const qrpc_service_desc empty_name = { "", 1, calc_methods, 8 };
    static const qrpc_service_desc null_name = { NULL, 1, calc_methods, 8 };
    static const qrpc_service_desc null_methods = { "test.X", 1, NULL, 3 };
    static const qrpc_service_desc no_methods = { "test.Empty", 1, NULL, 0 };
    static const qrpc_dispatch_fn holes[] = { calc_d_add, NULL, calc_d_add };
    qrpc_client *c;

    ck_assert_int_eq(qrpc_serve(node, &calc_desc, calc_dispatch, &calc_impl, &state),
                     QRPC_EEXIST);
    ck_assert_int_eq(qrpc_serve(node, &dup_desc, holes, NULL, NULL), QRPC_EINVAL);
    ck_assert_int_eq(qrpc_serve(node, &dup_desc, calc_dispatch, NULL, NULL), QRPC_EINVAL);
    ck_assert_int_eq(qrpc_client_create(node, "local", &dup_desc, &c), QRPC_EINVAL);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(qrpc_serve(node, &empty_name, calc_dispatch, NULL, NULL), QRPC_EINVAL);
    ck_assert_int_eq(qrpc_serve(node, &null_name, calc_dispatch, NULL, NULL), QRPC_EINVAL);
    ck_assert_int_eq(qrpc_serve(node, &null_methods, calc_dispatch, NULL, NULL), QRPC_EINVAL);
    ck_assert_int_eq(qrpc_serve(node, &calc_desc, NULL, NULL, NULL), QRPC_EINVAL);
    ck_assert_int_eq(qrpc_serve(node, NULL, calc_dispatch, NULL, NULL), QRPC_EINVAL);
    ck_assert_int_eq(qrpc_serve(NULL, &calc_desc, calc_dispatch, NULL, NULL), QRPC_EINVAL);
    ck_assert_int_eq(qrpc_unserve(node, NULL, 1), QRPC_EINVAL);
    ck_assert_int_eq(qrpc_unserve(NULL, "test.Calc", 1), QRPC_EINVAL);
    /* A service without methods is legal; every call on it is ENOMETHOD. */
    ck_assert_int_eq(qrpc_serve(node, &no_methods, NULL, NULL, NULL), 0);
    ck_assert_int_eq(qrpc_unserve(node, "test.Empty", 1), 0);
    ck_assert_int_eq(qrpc_client_create(node, "local", NULL, &c), QRPC_EINVAL);
    ck_assert_int_eq(qrpc_client_create(NULL, "local", &calc_desc, &c), QRPC_EINVAL);
    ck_assert_int_eq(qrpc_client_create(node, "local", &calc_desc, NULL), QRPC_EINVAL);
}
END_TEST

START_TEST(test_call_argument_errors)
{
    qrpc_buf args = { NULL, 0, 0 };

    ck_assert_int_eq(qrpc_call(client, CALC_ADD, NULL, NULL), QRPC_EINVAL);
    /* A two-way method needs a reply buffer; args are taken regardless. */
    ck_assert_int_eq(qrpc_put_u64(&args, 1), 0);
    ck_assert_int_eq(qrpc_call(client, CALC_ADD, &args, NULL), QRPC_EINVAL);
    ck_assert_ptr_null(args.data);
    ck_assert_int_eq(qrpc_put_u64(&args, 1), 0);
    ck_assert_int_eq(qrpc_call(client, CALC_ADD, &args, &args), QRPC_EINVAL);
    ck_assert_ptr_null(args.data);
    ck_assert_int_eq(qrpc_put_u64(&args, 1), 0);
    ck_assert_int_eq(qrpc_call(NULL, CALC_ADD, &args, NULL), QRPC_EINVAL);
    ck_assert_ptr_null(args.data);
    ck_assert_uint_eq(runs(&state, CALC_ADD), 0);
    /* Harmless on NULL. */
    qrpc_client_destroy(NULL);
    qrpc_node_destroy(NULL);
    qrpc_client_set_timeout(NULL, 5);
    ck_assert(qrpc_client_id(NULL) == 0);
    ck_assert_ptr_null(qrpc_ctx_state(NULL));
}
END_TEST

/* ---- timeouts ----------------------------------------------------------- */

/* A clock that moves on by *step ns at every reading. */
static uint64_t stepping_clock(void *arg)
{
    static _Thread_local uint64_t t = 1000000000u;
    uint64_t *step = arg;

    t += *step;
    return t;
}

START_TEST(test_timeout)
{
    uint64_t step = 1000000000u;            /* 1 s between call start and dispatch */
    qrpc_buf reply = { NULL, 0, 0 };
    int32_t sum = 0;

    qrpc__node_set_clock(node, stepping_clock, &step);
    qrpc_client_set_timeout(client, 999);
    ck_assert_int_eq(call_add(client, 1, 2, &sum), QRPC_ETIMEDOUT);
    ck_assert_int_eq(call_raw(client, CALC_NOTE, "\0\0\0\0", 4, NULL), QRPC_ETIMEDOUT);
    ck_assert_uint_eq(runs(&state, CALC_ADD), 0);
    ck_assert_uint_eq(runs(&state, CALC_NOTE), 0);
    qrpc_client_set_timeout(client, 1000);  /* exactly at the deadline: not past */
    ck_assert_int_eq(call_add(client, 1, 2, &sum), 0);
    qrpc_client_set_timeout(client, 1001);
    ck_assert_int_eq(call_add(client, 1, 2, &sum), 0);
    ck_assert_int_eq(sum, 3);

    /* 0: the node's default of 30 s. */
    qrpc_client_set_timeout(client, 0);
    ck_assert_int_eq(call_add(client, 1, 2, &sum), 0);
    step = 30000000001u;
    ck_assert_int_eq(call_add(client, 1, 2, &sum), QRPC_ETIMEDOUT);
    ck_assert_uint_eq(runs(&state, CALC_ADD), 3);
    qrpc__node_set_clock(node, NULL, NULL);
    ck_assert_int_eq(call_add(client, 1, 2, &sum), 0);
    qrpc_buf_free(&reply);
}
END_TEST

START_TEST(test_timeout_config)
{
    qrpc_node_config cfg;
    qrpc_node *n;
    qrpc_client *c;
    uint64_t step = 5000000u;               /* 5 ms */
    int32_t sum;

    qrpc_node_config_init(&cfg);
    cfg.timeout_ms = 4;
    ck_assert_int_eq(qrpc_node_create(&cfg, &n), 0);
    ck_assert_int_eq(qrpc_serve(n, &calc_desc, calc_dispatch, &calc_impl, &state), 0);
    ck_assert_int_eq(qrpc_client_create(n, "local", &calc_desc, &c), 0);
    qrpc__node_set_clock(n, stepping_clock, &step);
    ck_assert_int_eq(call_add(c, 1, 2, &sum), QRPC_ETIMEDOUT);
    qrpc_client_set_timeout(c, 6);
    ck_assert_int_eq(call_add(c, 1, 2, &sum), 0);
    qrpc_client_destroy(c);
    qrpc_node_destroy(n);
}
END_TEST

/* ---- async -------------------------------------------------------------- */

typedef struct async_result {
    int runs;
    int status;
    bool had_reader;
    int32_t value;
    void (*fn)(void);
} async_result;

static void async_marker(void)
{
}

static void async_done(int status, qrpc_reader *results, void (*fn)(void), void *arg)
{
    async_result *ar = arg;

    ar->runs++;
    ar->status = status;
    ar->fn = fn;
    ar->had_reader = results != NULL;
    if (results != NULL && qrpc_get_i32(results, &ar->value) != 0)
        ar->status = QRPC_EDECODE;
}

static int async_add(qrpc_client *c, uint32_t method, int32_t a, int32_t b,
                     async_result *ar)
{
    qrpc_buf args = { NULL, 0, 0 };
    int rc;

    memset(ar, 0, sizeof *ar);
    ck_assert_int_eq(qrpc_put_i32(&args, a), 0);
    ck_assert_int_eq(qrpc_put_i32(&args, b), 0);
    rc = qrpc_call_async(c, method, &args, async_done, async_marker, ar);
    ck_assert_ptr_null(args.data);
    return rc;
}

START_TEST(test_async)
{
    qrpc_buf args = { NULL, 0, 0 };
    async_result ar;
    uint64_t step = 2000000000u;

    /* Done ran once, on this thread, before the call returned. */
    ck_assert_int_eq(async_add(client, CALC_ADD, 40, 2, &ar), 0);
    ck_assert_int_eq(ar.runs, 1);
    ck_assert_int_eq(ar.status, 0);
    ck_assert(ar.had_reader);
    ck_assert_int_eq(ar.value, 42);
    ck_assert(ar.fn == async_marker);

    /* Errors after the start are reported through done, with no reader. */
    ck_assert_int_eq(async_add(client, CALC_DIV, 1, 0, &ar), 0);
    ck_assert_int_eq(ar.runs, 1);
    ck_assert_int_eq(ar.status, CALC_APP_DIV0);
    ck_assert(!ar.had_reader);
    ck_assert_int_eq(async_add(client, CALC_WHOAMI, 1, 0, &ar), 0);   /* 8 bytes too many */
    ck_assert_int_eq(ar.runs, 1);
    ck_assert_int_eq(ar.status, QRPC_EDECODE);
    qrpc__node_set_clock(node, stepping_clock, &step);
    qrpc_client_set_timeout(client, 1000);
    ck_assert_int_eq(async_add(client, CALC_ADD, 1, 0, &ar), 0);
    ck_assert_int_eq(ar.runs, 1);
    ck_assert_int_eq(ar.status, QRPC_ETIMEDOUT);
    ck_assert(!ar.had_reader);
    qrpc_client_set_timeout(client, 0);
    qrpc__node_set_clock(node, NULL, NULL);
    ck_assert_int_eq(qrpc_unserve(node, "test.Calc", 1), 0);
    ck_assert_int_eq(async_add(client, CALC_ADD, 1, 0, &ar), 0);
    ck_assert_int_eq(ar.runs, 1);
    ck_assert_int_eq(ar.status, QRPC_ENOSERVICE);

    /* Not started: negative, and done never runs; args taken anyway. */
    ck_assert_int_eq(async_add(client, 77, 1, 0, &ar), QRPC_ENOMETHOD);
    ck_assert_int_eq(ar.runs, 0);
    ck_assert_int_eq(async_add(NULL, CALC_ADD, 1, 0, &ar), QRPC_EINVAL);
    ck_assert_int_eq(ar.runs, 0);
    ck_assert_int_eq(qrpc_put_u32(&args, 1), 0);
    ck_assert_int_eq(qrpc_call_async(client, CALC_ADD, &args, NULL, NULL, NULL), QRPC_EINVAL);
    ck_assert_ptr_null(args.data);
    ck_assert_int_eq(qrpc_call_async(client, CALC_ADD, NULL, async_done, NULL, &ar),
                     QRPC_EINVAL);
    ck_assert_int_eq(ar.runs, 0);
}
END_TEST

/* ---- oneway ------------------------------------------------------------- */

static int note(qrpc_client *c, const char *s, qrpc_buf *reply)
{
    qrpc_buf args = { NULL, 0, 0 };

    ck_assert_int_eq(qrpc_put_string(&args, s, 64), 0);
    return qrpc_call(c, CALC_NOTE, &args, reply);
}

START_TEST(test_oneway)
{
    qrpc_buf reply = { NULL, 0, 0 };

    ck_assert_int_eq(note(client, "hello", NULL), 0);
    ck_assert_str_eq(state.note, "hello");
    /* The handler's application error has nobody to go to. */
    ck_assert_int_eq(note(client, "fail", NULL), 0);
    ck_assert_str_eq(state.note, "hello");
    ck_assert_uint_eq(runs(&state, CALC_NOTE), 2);
    /* A reply buffer may be given; it comes back empty. */
    ck_assert_int_eq(qrpc_put_u32(&reply, 5), 0);
    ck_assert_int_eq(note(client, "again", &reply), 0);
    ck_assert_uint_eq(reply.len, 0);
    ck_assert_str_eq(state.note, "again");
    qrpc_buf_free(&reply);
}
END_TEST

/* ---- the context -------------------------------------------------------- */

static void whoami(qrpc_client *c, uint64_t *client_id, uint32_t *method, uint64_t *st)
{
    qrpc_buf args = { NULL, 0, 0 }, reply = { NULL, 0, 0 };
    qrpc_reader r;

    ck_assert_int_eq(qrpc_call(c, CALC_WHOAMI, &args, &reply), 0);
    qrpc_reader_init(&r, reply.data, reply.len);
    ck_assert_int_eq(qrpc_get_u64(&r, client_id), 0);
    ck_assert_int_eq(qrpc_get_u32(&r, method), 0);
    ck_assert_int_eq(qrpc_get_u64(&r, st), 0);
    ck_assert_uint_eq(qrpc_reader_left(&r), 0);
    qrpc_buf_free(&reply);
}

START_TEST(test_ctx)
{
    uint64_t id1, id2, id3, st;
    uint32_t method;
    qrpc_client *other, *third;

    ck_assert_int_eq(qrpc_client_create(node, "local", &calc_desc, &other), 0);
    whoami(client, &id1, &method, &st);
    ck_assert(id1 == qrpc_client_id(client));
    ck_assert(id1 != 0);
    ck_assert_uint_eq(method, CALC_WHOAMI);
    ck_assert(st == (uint64_t)(uintptr_t)&state);
    whoami(other, &id2, &method, &st);
    ck_assert(id2 == qrpc_client_id(other));
    ck_assert(id2 != id1);
    qrpc_client_destroy(other);
    /* Ids are not reused within the incarnation. */
    ck_assert_int_eq(qrpc_client_create(node, "local", &calc_desc, &third), 0);
    whoami(third, &id3, &method, &st);
    ck_assert(id3 != id1 && id3 != id2);
    ck_assert(qrpc_client_id(state.inner) != id1);
    qrpc_client_destroy(third);
}
END_TEST

/* ---- calls from inside a handler ---------------------------------------- */

START_TEST(test_reentry)
{
    qrpc_buf args = { NULL, 0, 0 }, reply = { NULL, 0, 0 };
    qrpc_reader r;
    int32_t serve_rc, unserve_rc, add_rc;

    ck_assert_int_eq(qrpc_call(client, CALC_REENTER, &args, &reply), 0);
    qrpc_reader_init(&r, reply.data, reply.len);
    ck_assert_int_eq(qrpc_get_i32(&r, &serve_rc), 0);
    ck_assert_int_eq(qrpc_get_i32(&r, &unserve_rc), 0);
    ck_assert_int_eq(qrpc_get_i32(&r, &add_rc), 0);
    /* serve and unserve would wait for the handler that calls them. */
    ck_assert_int_eq(serve_rc, QRPC_EBUSY);
    ck_assert_int_eq(unserve_rc, QRPC_EBUSY);
    /* A nested local call is fine. */
    ck_assert_int_eq(add_rc, 0);
    ck_assert_uint_eq(runs(&state, CALC_ADD), 1);
    qrpc_buf_free(&reply);
}
END_TEST

/* ---- many threads ------------------------------------------------------- */

#define THREADS 8
#define CALLS 10000

typedef struct worker {
    pthread_t tid;
    qrpc_client *c;             /* own client, or the shared one */
    int index;
    int failures;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    int i;

    for (i = 0; i < CALLS; i++) {
        int32_t sum = 0;

        /* a == 1 bumps the shared counter; b makes each result distinct. */
        if (call_add(w->c, 1, w->index * CALLS + i, &sum) != 0 ||
            sum != 1 + w->index * CALLS + i)
            w->failures++;
    }
    return NULL;
}

START_TEST(test_threads)
{
    worker w[THREADS];
    int i;

    for (i = 0; i < THREADS; i++) {
        w[i].index = i;
        w[i].failures = 0;
        /* Half share the fixture's client, half have their own. */
        if (i % 2 == 0)
            w[i].c = client;
        else
            ck_assert_int_eq(qrpc_client_create(node, "local", &calc_desc, &w[i].c), 0);
        ck_assert_int_eq(pthread_create(&w[i].tid, NULL, worker_main, &w[i]), 0);
    }
    for (i = 0; i < THREADS; i++) {
        ck_assert_int_eq(pthread_join(w[i].tid, NULL), 0);
        ck_assert_int_eq(w[i].failures, 0);
        if (i % 2 != 0)
            qrpc_client_destroy(w[i].c);
    }
    ck_assert_uint_eq(atomic_load(&state.bumps), THREADS * CALLS);
    ck_assert_uint_eq(runs(&state, CALC_ADD), THREADS * CALLS);
}
END_TEST

/* Serving and withdrawing other services while calls run: no call fails. */
static atomic_int churn_stop;

static void *churn_main(void *arg)
{
    static const qrpc_service_desc other = { "test.Churn", 1, calc_methods, 8 };
    int i;

    (void)arg;
    for (i = 0; !atomic_load(&churn_stop); i++) {
        ck_assert_int_eq(qrpc_serve(node, &other, calc_dispatch, &calc_impl, &state), 0);
        ck_assert_int_eq(qrpc_unserve(node, "test.Churn", 1), 0);
    }
    return NULL;
}

START_TEST(test_threads_with_churn)
{
    worker w[4];
    pthread_t churn;
    int i;

    atomic_store(&churn_stop, 0);
    ck_assert_int_eq(pthread_create(&churn, NULL, churn_main, NULL), 0);
    for (i = 0; i < 4; i++) {
        w[i].index = i;
        w[i].failures = 0;
        w[i].c = client;
        ck_assert_int_eq(pthread_create(&w[i].tid, NULL, worker_main, &w[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        ck_assert_int_eq(pthread_join(w[i].tid, NULL), 0);
        ck_assert_int_eq(w[i].failures, 0);
    }
    atomic_store(&churn_stop, 1);
    ck_assert_int_eq(pthread_join(churn, NULL), 0);
    ck_assert_uint_eq(runs(&state, CALC_ADD), 4 * CALLS);
}
END_TEST

/* ---- a large service ---------------------------------------------------- */

#define BIG_METHODS 2000
#define BIG_KINDS 8

/* Each dispatch function answers its kind and the method id it was called as. */
#define BIG_FN(k)                                                             \
    static int big_d##k(qrpc_ctx *ctx, const void *h, qrpc_reader *args,      \
                        qrpc_buf *res)                                        \
    {                                                                         \
        int rc;                                                               \
        (void)h;                                                              \
        if (qrpc_reader_left(args) != 0)                                      \
            return QRPC_EDECODE;                                              \
        rc = qrpc_put_u32(res, k);                                            \
        return rc != 0 ? rc : qrpc_put_u32(res, qrpc_ctx_method(ctx));        \
    }
BIG_FN(0) BIG_FN(1) BIG_FN(2) BIG_FN(3) BIG_FN(4) BIG_FN(5) BIG_FN(6) BIG_FN(7)

static const qrpc_dispatch_fn big_kinds[BIG_KINDS] = {
    big_d0, big_d1, big_d2, big_d3, big_d4, big_d5, big_d6, big_d7,
};

START_TEST(test_many_methods)
{
    static qrpc_method_desc methods[BIG_METHODS];
    static qrpc_dispatch_fn dispatch[BIG_METHODS];
    static const qrpc_service_desc big = { "test.Big", 3, methods, BIG_METHODS };
    uint64_t seed = 12345;
    qrpc_buf reply = { NULL, 0, 0 };
    qrpc_client *c;
    size_t i, j;

    /* Unique ids: sequential runs, sparse random ones, 0 and UINT32_MAX. */
    for (i = 0; i < BIG_METHODS; i++) {
        uint32_t id;

        if (i < 500) {
            id = (uint32_t)i;
        } else if (i == 500) {
            id = UINT32_MAX - 1;        /* the largest (UINT32_MAX is the ping) */
        } else {
            for (;;) {
                seed = seed * 6364136223846793005u + 1442695040888963407u;
                id = (uint32_t)(seed >> 33) | 0x1000u;
                for (j = 0; j < i && methods[j].id != id; j++)
                    ;
                if (j == i)
                    break;
            }
        }
        methods[i].id = id;
        methods[i].name = "m";
        methods[i].flags = 0;
        dispatch[i] = big_kinds[i % BIG_KINDS];
    }
    ck_assert_int_eq(qrpc_serve(node, &big, dispatch, NULL, NULL), 0);
    ck_assert_int_eq(qrpc_client_create(node, "local", &big, &c), 0);
    for (i = 0; i < BIG_METHODS; i++) {
        qrpc_buf args = { NULL, 0, 0 };
        qrpc_reader r;
        uint32_t kind, id;

        ck_assert_int_eq(qrpc_call(c, methods[i].id, &args, &reply), 0);
        qrpc_reader_init(&r, reply.data, reply.len);
        ck_assert_int_eq(qrpc_get_u32(&r, &kind), 0);
        ck_assert_int_eq(qrpc_get_u32(&r, &id), 0);
        ck_assert_uint_eq(kind, i % BIG_KINDS);
        ck_assert_uint_eq(id, methods[i].id);
    }
    /* Ids next to served ones are not served. */
    {
        qrpc_buf args = { NULL, 0, 0 };

        ck_assert_int_eq(qrpc_call(c, 500, &args, &reply), QRPC_ENOMETHOD);
        ck_assert_int_eq(qrpc_call(c, UINT32_MAX - 2, &args, &reply), QRPC_ENOMETHOD);
    }
    /* A duplicate among 2000 is found. */
    methods[1999].id = methods[1000].id;
    ck_assert_int_eq(qrpc_unserve(node, "test.Big", 3), 0);
    ck_assert_int_eq(qrpc_serve(node, &big, dispatch, NULL, NULL), QRPC_EINVAL);
    qrpc_client_destroy(c);
    qrpc_buf_free(&reply);
}
END_TEST

/* ---- destinations and configuration ------------------------------------- */

START_TEST(test_targets)
{
    /* creating a client dials nothing: the first call does */
    static const char *good[] = { "127.0.0.1:8080", "[::1]:8080", "localhost:1" };
    static const char *bad[] = {
        "", "LOCAL", "local ", "tcp://127.0.0.1:1", "127.0.0.1", "127.0.0.1:",
        "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:80x",
        "::1:80", "[::1]", "[::1:80",
    };
    qrpc_client *c = (qrpc_client *)&c;
    size_t i;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(qrpc_client_create(node, bad[i], &calc_desc, &c) == QRPC_EADDR,
                      "%s", bad[i]);
        ck_assert_ptr_null(c);
    }
    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        ck_assert_msg(qrpc_client_create(node, good[i], &calc_desc, &c) == 0, "%s", good[i]);
        qrpc_client_destroy(c);
    }
    ck_assert_int_eq(qrpc_client_create(node, "local", &calc_desc, &c), 0);
    qrpc_client_destroy(c);
    ck_assert_int_eq(qrpc_client_create(node, NULL, &calc_desc, &c), 0);
    qrpc_client_destroy(c);
}
END_TEST

START_TEST(test_config)
{
    qrpc_node_config cfg;
    qrpc_node *n = (qrpc_node *)&n;

    qrpc_node_config_init(&cfg);
    ck_assert_ptr_null(cfg.listen);
    ck_assert_uint_eq(cfg.workers, 2);
    ck_assert_uint_eq(cfg.max_message, 64u << 20);
    ck_assert_uint_eq(cfg.max_inflight, 1024);
    ck_assert_uint_eq(cfg.timeout_ms, 30000);
    ck_assert_uint_eq(cfg.max_depth, 64);
    ck_assert_int_eq(cfg.spin_us, 50);
    ck_assert_uint_eq(cfg.lease_ms, 60000);
    ck_assert_int_eq(qrpc_node_create(&cfg, &n), 0);
    qrpc_node_destroy(n);

    memset(&cfg, 0, sizeof cfg);            /* all defaults */
    ck_assert_int_eq(qrpc_node_create(&cfg, &n), 0);
    qrpc_node_destroy(n);

    qrpc_node_config_init(&cfg);
    cfg.workers = 1024;
    cfg.max_message = 1024;
    cfg.max_inflight = 1u << 20;
    cfg.max_depth = 1024;
    cfg.timeout_ms = UINT32_MAX;
    cfg.spin_us = 100000;
    cfg.lease_ms = UINT32_MAX;
    ck_assert_int_eq(qrpc_node_create(&cfg, &n), 0);
    qrpc_node_destroy(n);
    cfg.spin_us = -1;                       /* never spin */
    ck_assert_int_eq(qrpc_node_create(&cfg, &n), 0);
    qrpc_node_destroy(n);

#define BAD_CONFIG(field, value, err)                               \
    do {                                                            \
        qrpc_node_config_init(&cfg);                                \
        cfg.field = value;                                          \
        n = (qrpc_node *)&n;                                        \
        ck_assert_int_eq(qrpc_node_create(&cfg, &n), err);          \
        ck_assert_ptr_null(n);                                      \
    } while (0)
    BAD_CONFIG(workers, 1025, QRPC_EINVAL);
    BAD_CONFIG(max_message, 1023, QRPC_EINVAL);
    BAD_CONFIG(max_message, 1, QRPC_EINVAL);
    BAD_CONFIG(max_inflight, (1u << 20) + 1, QRPC_EINVAL);
    BAD_CONFIG(max_depth, 1025, QRPC_EINVAL);
    BAD_CONFIG(max_frame, 1023, QRPC_EINVAL);
    BAD_CONFIG(max_frame, (16u << 20) + 1, QRPC_EINVAL);
    BAD_CONFIG(spin_us, -2, QRPC_EINVAL);
    BAD_CONFIG(spin_us, 100001, QRPC_EINVAL);
    BAD_CONFIG(listen, "nowhere", QRPC_EADDR);
    BAD_CONFIG(listen, "127.0.0.1:65536", QRPC_EADDR);
#undef BAD_CONFIG
    /* listening on an ephemeral loopback port reports the port it got */
    qrpc_node_config_init(&cfg);
    cfg.listen = "127.0.0.1:0";
    ck_assert_int_eq(qrpc_node_create(&cfg, &n), 0);
    ck_assert_ptr_nonnull(qrpc_node_address(n));
    ck_assert(strncmp(qrpc_node_address(n), "127.0.0.1:", 10) == 0);
    ck_assert_str_ne(qrpc_node_address(n), "127.0.0.1:0");
    qrpc_node_destroy(n);
    ck_assert_int_eq(qrpc_node_create(NULL, NULL), QRPC_EINVAL);
}
END_TEST

/* A nest() argument of depth levels: depth-1 present bytes, then absent. */
static int nest(qrpc_client *c, unsigned depth)
{
    qrpc_buf args = { NULL, 0, 0 }, reply = { NULL, 0, 0 };
    unsigned i;
    int rc;

    for (i = 1; i < depth; i++)
        ck_assert_int_eq(qrpc_put_u8(&args, 1), 0);
    ck_assert_int_eq(qrpc_put_u8(&args, 0), 0);
    rc = qrpc_call(c, CALC_NEST, &args, &reply);
    qrpc_buf_free(&reply);
    return rc;
}

START_TEST(test_config_applies)
{
    qrpc_node_config cfg;
    qrpc_node *n;
    qrpc_client *c;
    qrpc_buf args = { NULL, 0, 0 }, reply = { NULL, 0, 0 };
    char big[1100];

    qrpc_node_config_init(&cfg);
    cfg.max_depth = 5;
    cfg.max_message = 1024;
    ck_assert_int_eq(qrpc_node_create(&cfg, &n), 0);
    ck_assert_int_eq(qrpc_serve(n, &calc_desc, calc_dispatch, &calc_impl, &state), 0);
    ck_assert_int_eq(qrpc_client_create(n, "local", &calc_desc, &c), 0);

    /* The decoder's depth limit is the node's. */
    ck_assert_int_eq(nest(c, 5), 0);
    ck_assert_int_eq(nest(c, 6), QRPC_EDECODE);
    ck_assert_int_eq(nest(client, 64), 0);          /* the default node: 64 */
    ck_assert_int_eq(nest(client, 65), QRPC_EDECODE);
    ck_assert_uint_eq(runs(&state, CALC_NEST), 2);

    /* Arguments over max_message are refused before they are sent... */
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ck_assert_int_eq(qrpc_put_string(&args, big, 0), 0);
    ck_assert_int_eq(qrpc_call(c, CALC_ECHO, &args, &reply), QRPC_ETOOBIG);
    ck_assert_ptr_null(args.data);
    ck_assert_uint_eq(runs(&state, CALC_ECHO), 0);
    /* ...and results over it after the handler ran. */
    big[1020] = '\0';                               /* 4 + 1020: just fits */
    ck_assert_int_eq(qrpc_put_string(&args, big, 0), 0);
    ck_assert_int_eq(qrpc_call(c, CALC_ECHO, &args, &reply), 0);
    ck_assert_uint_eq(reply.len, 1024);
    big[0] = '+';
    big[600] = '\0';                                /* 604 bytes in, 1208 out */
    ck_assert_int_eq(qrpc_put_string(&args, big, 0), 0);
    ck_assert_int_eq(qrpc_call(c, CALC_ECHO, &args, &reply), QRPC_ETOOBIG);
    ck_assert_uint_eq(reply.len, 0);
    ck_assert_int_eq(qrpc_put_string(&args, big, 0), 0);
    ck_assert_int_eq(qrpc_call(client, CALC_ECHO, &args, &reply), 0);  /* 64 MiB node */
    ck_assert_uint_eq(reply.len, 4 + 1200);
    ck_assert_uint_eq(runs(&state, CALC_ECHO), 3);

    qrpc_client_destroy(c);
    qrpc_node_destroy(n);
    qrpc_buf_free(&reply);
}
END_TEST

/* ---- destruction -------------------------------------------------------- */

static void *block_main(void *arg)
{
    qrpc_buf args = { NULL, 0, 0 }, reply = { NULL, 0, 0 };
    int *rc = arg;

    *rc = qrpc_call(client, CALC_BLOCK, &args, &reply);
    qrpc_buf_free(&reply);
    return NULL;
}

static bool destroy_saw_handler_return;

static void *destroy_main(void *arg)
{
    (void)arg;
    qrpc_node_destroy(node);
    pthread_mutex_lock(&state.lock);
    destroy_saw_handler_return = state.returned;
    pthread_mutex_unlock(&state.lock);
    return NULL;
}

/*
 * destroy waits for the handler in flight; calls that start once destroy
 * has begun get QRPC_ECLOSED.  The clients outlive the node here, which
 * the rules forbid; the runtime still answers QRPC_ECLOSED rather than
 * touch freed memory, and the last client frees what is left.
 */
START_TEST(test_destroy_racing)
{
    pthread_t blocker, destroyer;
    async_result ar;
    qrpc_buf args = { NULL, 0, 0 };
    int block_rc = 1, rc;
    int32_t sum;
    qrpc_client *c;

    ck_assert_int_eq(pthread_create(&blocker, NULL, block_main, &block_rc), 0);
    pthread_mutex_lock(&state.lock);
    while (!state.entered)
        pthread_cond_wait(&state.cond, &state.lock);
    pthread_mutex_unlock(&state.lock);

    destroy_saw_handler_return = false;
    ck_assert_int_eq(pthread_create(&destroyer, NULL, destroy_main, NULL), 0);
    /* Calls succeed until destroy has begun, then fail with QRPC_ECLOSED. */
    while ((rc = call_add(state.inner, 1, 1, &sum)) == 0)
        sched_yield();
    ck_assert_int_eq(rc, QRPC_ECLOSED);
    ck_assert_int_eq(call_add(client, 1, 1, &sum), QRPC_ECLOSED);
    ck_assert_int_eq(async_add(client, CALC_ADD, 1, 1, &ar), 0);
    ck_assert_int_eq(ar.runs, 1);
    ck_assert_int_eq(ar.status, QRPC_ECLOSED);
    ck_assert_int_eq(qrpc_serve(node, &calc_desc, calc_dispatch, &calc_impl, &state),
                     QRPC_ECLOSED);
    ck_assert_int_eq(qrpc_client_create(node, "local", &calc_desc, &c), QRPC_ECLOSED);

    pthread_mutex_lock(&state.lock);
    state.release = true;
    pthread_cond_broadcast(&state.cond);
    pthread_mutex_unlock(&state.lock);
    ck_assert_int_eq(pthread_join(blocker, NULL), 0);
    ck_assert_int_eq(pthread_join(destroyer, NULL), 0);
    ck_assert_int_eq(block_rc, 0);              /* it was admitted before destroy */
    ck_assert(destroy_saw_handler_return);

    ck_assert_int_eq(qrpc_put_u32(&args, 1), 0);
    ck_assert_int_eq(qrpc_call(client, CALC_NOTE, &args, NULL), QRPC_ECLOSED);
    /* The fixture's teardown destroys the clients, which frees the node. */
    qrpc_client_destroy(state.inner);
    qrpc_client_destroy(client);
    state.inner = NULL;
    client = NULL;
    node = NULL;
}
END_TEST

/* Threads calling in a loop while the node is destroyed: 0 or ECLOSED, never a crash. */
typedef struct racer {
    pthread_t tid;
    qrpc_client *c;
    atomic_ulong ok;
    int bad;
} racer;

static void *racer_main(void *arg)
{
    racer *rc = arg;
    int32_t sum;
    int s;

    while ((s = call_add(rc->c, 2, 2, &sum)) == 0)
        atomic_fetch_add(&rc->ok, 1);
    if (s != QRPC_ECLOSED)
        rc->bad++;
    /* Once closed, closed for good. */
    if (call_add(rc->c, 2, 2, &sum) != QRPC_ECLOSED)
        rc->bad++;
    return NULL;
}

START_TEST(test_destroy_under_load)
{
    racer r[4];
    int i;

    for (i = 0; i < 4; i++) {
        atomic_init(&r[i].ok, 0);
        r[i].bad = 0;
        ck_assert_int_eq(qrpc_client_create(node, "local", &calc_desc, &r[i].c), 0);
        ck_assert_int_eq(pthread_create(&r[i].tid, NULL, racer_main, &r[i]), 0);
    }
    /* Let every thread get going, then pull the node away under them. */
    for (i = 0; i < 4; i++)
        while (atomic_load(&r[i].ok) < 100)
            sched_yield();
    qrpc_node_destroy(node);
    for (i = 0; i < 4; i++) {
        ck_assert_int_eq(pthread_join(r[i].tid, NULL), 0);
        ck_assert_int_eq(r[i].bad, 0);
        qrpc_client_destroy(r[i].c);
    }
    qrpc_client_destroy(state.inner);
    qrpc_client_destroy(client);
    state.inner = NULL;
    client = NULL;
    node = NULL;
}
END_TEST

static Suite *inproc_suite(void)
{
    Suite *s = suite_create("inproc");
    TCase *tc = tcase_create("local");

    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_success);
    tcase_add_test(tc, test_application_error);
    tcase_add_test(tc, test_no_service);
    tcase_add_test(tc, test_no_method);
    tcase_add_test(tc, test_ping);
    tcase_add_test(tc, test_decode_errors);
    tcase_add_test(tc, test_serve_errors);
    tcase_add_test(tc, test_call_argument_errors);
    tcase_add_test(tc, test_timeout);
    tcase_add_test(tc, test_timeout_config);
    tcase_add_test(tc, test_async);
    tcase_add_test(tc, test_oneway);
    tcase_add_test(tc, test_ctx);
    tcase_add_test(tc, test_reentry);
    tcase_add_test(tc, test_threads);
    tcase_add_test(tc, test_threads_with_churn);
    tcase_add_test(tc, test_many_methods);
    tcase_add_test(tc, test_targets);
    tcase_add_test(tc, test_config);
    tcase_add_test(tc, test_config_applies);
    tcase_add_test(tc, test_destroy_racing);
    tcase_add_test(tc, test_destroy_under_load);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(inproc_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
