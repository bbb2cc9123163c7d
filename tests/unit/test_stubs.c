/*
 * test_stubs.c - generated stubs end to end through the in-process path:
 * stub -> encode -> qrpc_call -> dispatcher -> handler -> reply -> decode
 * -> caller, for every method form of tests/idl/kitchen.qidl (in, out,
 * inout, results, void, oneway, idempotent) in the synchronous and the
 * asynchronous form, and for the errors a caller can meet on this path.
 */
#include <pthread.h>

#include "testutil.h"
#include "bank.h"
#include "kitchen.h"

/* ---- the service under test ---------------------------------------------------- */

typedef struct ks_state {
    int pings;
    int notifies;
    char *last_notify;
    uint64_t last_client;
    int echo_calls;
} ks_state;

static int ks_echo(qrpc_ctx *ctx, const kitchen_Everything *e, kitchen_Everything *result)
{
    ks_state *st = qrpc_ctx_state(ctx);

    st->echo_calls++;
    st->last_client = qrpc_ctx_client_id(ctx);
    return kitchen_Everything_copy(result, e) == 0 ? 0 : 99;
}

static int ks_add(qrpc_ctx *ctx, int32_t a, int32_t b, int32_t *result)
{
    (void)ctx;
    *result = (int32_t)((uint32_t)a + (uint32_t)b);
    return 0;
}

static int ks_fill(qrpc_ctx *ctx, int32_t n, kitchen_i32_list *values, kitchen_Hash *h,
                   kitchen_Leaf **leaf)
{
    int32_t i;

    (void)ctx;
    if (n < 0)
        return 42;              /* an application error */
    if (n > 1000)
        return -5;              /* a handler bug: negative codes are not passed on */
    values->items = n ? calloc((size_t)n, sizeof *values->items) : NULL;
    values->len = (size_t)n;
    for (i = 0; i < n; i++)
        values->items[i] = i * i;
    for (i = 0; i < 32; i++)
        (*h)[i] = (uint8_t)(n + i);
    if (n > 0) {
        *leaf = calloc(1, sizeof **leaf);
        (*leaf)->id = n;
        (*leaf)->label = strdup("leaf");
    }
    return 0;
}

static int ks_update(qrpc_ctx *ctx, kitchen_Everything *e, char **note, int32_t *counter,
                     bool *result)
{
    size_t n = strlen(*note);
    char *longer = malloc(n + 2);

    (void)ctx;
    memcpy(longer, *note, n);
    longer[n] = '!';
    longer[n + 1] = '\0';
    free(*note);
    *note = longer;
    *counter += 1;
    e->s32 += 1;
    *result = true;
    return 0;
}

static int ks_notify(qrpc_ctx *ctx, const char *what, const kitchen_Leaf *leaf)
{
    ks_state *st = qrpc_ctx_state(ctx);

    st->notifies++;
    free(st->last_notify);
    st->last_notify = strdup(leaf != NULL ? leaf->label : what);
    return 0;
}

static int ks_grow(qrpc_ctx *ctx, const kitchen_Tree *t, uint32_t depth, kitchen_Tree *result)
{
    (void)ctx;
    result->value = t->value + (int32_t)depth;
    result->kids.items = calloc(1, sizeof *result->kids.items);
    result->kids.len = 1;
    return kitchen_Tree_copy(&result->kids.items[0], t);
}

static int ks_ping(qrpc_ctx *ctx)
{
    ks_state *st = qrpc_ctx_state(ctx);

    st->pings++;
    return 0;
}

static int ks_digest(qrpc_ctx *ctx, const qrpc_bytes *data, const kitchen_Hash *seed,
                     const common_Money *m, kitchen_Color c, common_Cents cents,
                     kitchen_Hash *result)
{
    size_t i;

    (void)ctx;
    for (i = 0; i < 32; i++)
        (*result)[i] = (*seed)[i] ^ (uint8_t)(i < data->len ? data->data[i] : 0);
    (*result)[0] = (uint8_t)m->cur;
    (*result)[1] = (uint8_t)c;
    (*result)[2] = (uint8_t)cents;
    return 0;
}

/* digest_tail: the seed, xor the data's length, xor a sum of its bytes at i mod 32. */
static int ks_digest_tail(qrpc_ctx *ctx, const kitchen_Hash *seed, const qrpc_bytes *data,
                          kitchen_Hash *result)
{
    size_t i;

    (void)ctx;
    memcpy(*result, *seed, 32);
    for (i = 0; i < data->len; i++)
        (*result)[i % 32] = (uint8_t)((*result)[i % 32] + data->data[i]);
    (*result)[0] ^= (uint8_t)data->len;
    return 0;
}

static const kitchen_Kitchen_handlers ks_handlers = {
    .echo = ks_echo,
    .add = ks_add,
    .fill = ks_fill,
    .update = ks_update,
    .notify = ks_notify,
    .grow = ks_grow,
    .ping = ks_ping,
    .digest = ks_digest,
    .classify = NULL,           /* not implemented: QRPC_ENOMETHOD */
    .digest_tail = ks_digest_tail,
};

static ks_state ks;
static qrpc_node *ks_node;
static qrpc_client *ks_client;

static void ks_setup(void)
{
    memset(&ks, 0, sizeof ks);
    ck_assert_int_eq(qrpc_node_create(NULL, &ks_node), 0);
    ck_assert_int_eq(kitchen_Kitchen_serve(ks_node, &ks_handlers, &ks), 0);
    ck_assert_int_eq(kitchen_Kitchen_connect(ks_node, "local", &ks_client), 0);
}

static void ks_teardown(void)
{
    qrpc_client_destroy(ks_client);
    qrpc_node_destroy(ks_node);
    free(ks.last_notify);
}

/* A valid Everything (a zeroed one is not: 0 is no Color). */
static void ks_everything(kitchen_Everything *e)
{
    uint64_t seed = 4242;

    ck_assert_int_eq(kitchen_Everything_random(e, &seed, 0), 0);
}

/* ---- synchronous stubs ------------------------------------------------------------ */

START_TEST(stub_add)
{
    int32_t r = 0;

    ck_assert_int_eq(kitchen_Kitchen_add(ks_client, 40, 2, &r), 0);
    ck_assert_int_eq(r, 42);
    ck_assert_int_eq(kitchen_Kitchen_add(ks_client, INT32_MAX, 1, &r), 0);
    ck_assert_int_eq(r, INT32_MIN);
    ck_assert_int_eq(kitchen_Kitchen_add(ks_client, 1, 2, NULL), QRPC_EINVAL);
}
END_TEST

START_TEST(stub_echo_random)
{
    uint64_t seed = 77;
    int i;

    for (i = 0; i < 200; i++) {
        kitchen_Everything in, out;

        ck_assert_int_eq(kitchen_Everything_random(&in, &seed, 0), 0);
        ck_assert_int_eq(kitchen_Kitchen_echo(ks_client, &in, &out), 0);
        ck_assert_msg(kitchen_Everything_equal(&in, &out), "echo %d changed the value", i);
        kitchen_Everything_free(&in);
        kitchen_Everything_free(&out);
    }
    ck_assert_int_eq(ks.echo_calls, 200);
    ck_assert(ks.last_client == qrpc_client_id(ks_client));
}
END_TEST

START_TEST(stub_out_params)
{
    kitchen_i32_list values;
    kitchen_Hash h;
    kitchen_Leaf *leaf = NULL;
    int i;

    ck_assert_int_eq(kitchen_Kitchen_fill(ks_client, 5, &values, &h, &leaf), 0);
    ck_assert_uint_eq(values.len, 5);
    for (i = 0; i < 5; i++)
        ck_assert_int_eq(values.items[i], i * i);
    ck_assert_uint_eq(h[0], 5);
    ck_assert_uint_eq(h[31], 36);
    ck_assert_ptr_nonnull(leaf);
    ck_assert_int_eq(leaf->id, 5);
    ck_assert_str_eq(leaf->label, "leaf");
    kitchen_i32_list_free(&values);
    kitchen_Leaf_opt_free(&leaf);
    ck_assert_ptr_null(leaf);

    ck_assert_int_eq(kitchen_Kitchen_fill(ks_client, 0, &values, &h, &leaf), 0);
    ck_assert_uint_eq(values.len, 0);
    ck_assert_ptr_null(leaf);
}
END_TEST

START_TEST(stub_app_error)
{
    kitchen_i32_list values = { NULL, 0 };
    kitchen_Hash h;
    kitchen_Leaf *leaf = (kitchen_Leaf *)&h;   /* must be left as it was */

    memset(h, 0xAB, sizeof h);
    ck_assert_int_eq(kitchen_Kitchen_fill(ks_client, -1, &values, &h, &leaf), 42);
    ck_assert_ptr_eq(leaf, (kitchen_Leaf *)&h);
    ck_assert_uint_eq(h[0], 0xAB);
    ck_assert_ptr_null(values.items);
    /* a negative return from a handler is reported as QRPC_EINTERNAL */
    ck_assert_int_eq(kitchen_Kitchen_fill(ks_client, 5000, &values, &h, &leaf), QRPC_EINTERNAL);
    ck_assert_str_eq(qrpc_strerror(42), "application error");
}
END_TEST

START_TEST(stub_inout)
{
    kitchen_Everything e;
    char *note = strdup("hello");
    int32_t counter = 7;
    bool changed = false;

    ks_everything(&e);
    e.s32 = 100;
    free(e.s);
    e.s = strdup("kept");
    ck_assert_int_eq(kitchen_Kitchen_update(ks_client, &e, &note, &counter, &changed), 0);
    ck_assert(changed);
    ck_assert_int_eq(counter, 8);
    ck_assert_int_eq(e.s32, 101);
    ck_assert_str_eq(e.s, "kept");
    ck_assert_str_eq(note, "hello!");
    free(note);
    kitchen_Everything_free(&e);
}
END_TEST

START_TEST(stub_oneway_and_void)
{
    kitchen_Leaf leaf = { 3, "green" };

    ck_assert_int_eq(kitchen_Kitchen_notify(ks_client, "first", NULL), 0);
    ck_assert_str_eq(ks.last_notify, "first");
    ck_assert_int_eq(kitchen_Kitchen_notify(ks_client, "second", &leaf), 0);
    ck_assert_str_eq(ks.last_notify, "green");
    ck_assert_int_eq(ks.notifies, 2);
    ck_assert_int_eq(kitchen_Kitchen_ping(ks_client), 0);
    ck_assert_int_eq(kitchen_Kitchen_ping(ks_client), 0);
    ck_assert_int_eq(ks.pings, 2);
}
END_TEST

START_TEST(stub_recursive_and_arrays)
{
    kitchen_Tree t, grown;
    kitchen_Hash seed, digest;
    common_Money m = { common_Currency_GBP, 1 };
    uint8_t bytes[3] = { 1, 2, 3 };
    qrpc_bytes data = { bytes, 3 };
    uint64_t s = 5;
    size_t i;

    ck_assert_int_eq(kitchen_Tree_random(&t, &s, 0), 0);
    ck_assert_int_eq(kitchen_Kitchen_grow(ks_client, &t, 10, &grown), 0);
    ck_assert_int_eq(grown.value, t.value + 10);
    ck_assert_uint_eq(grown.kids.len, 1);
    ck_assert(kitchen_Tree_equal(&grown.kids.items[0], &t));
    kitchen_Tree_free(&t);
    kitchen_Tree_free(&grown);

    for (i = 0; i < 32; i++)
        seed[i] = (uint8_t)(0xF0 + i);
    ck_assert_int_eq(kitchen_Kitchen_digest(ks_client, &data, (const kitchen_Hash *)&seed, &m,
                                            kitchen_Color_BLUE, 300, &digest), 0);
    ck_assert_uint_eq(digest[0], common_Currency_GBP);
    ck_assert_uint_eq(digest[1], kitchen_Color_BLUE);
    ck_assert_uint_eq(digest[2], (uint8_t)300);
    ck_assert_uint_eq(digest[3], (uint8_t)(0xF3));
    ck_assert_uint_eq(digest[31], (uint8_t)(0xF0 + 31));

    /* a tail over 64 KiB to a local service: joined to the arguments for the dispatch */
    {
        size_t n = (1u << 20) + 5;
        uint8_t *big = malloc(n);
        qrpc_bytes bd = { big, n };
        kitchen_Hash want;

        ck_assert_ptr_nonnull(big);
        for (i = 0; i < n; i++)
            big[i] = (uint8_t)(i * 131 + (i >> 9));
        ck_assert_int_eq(ks_digest_tail(NULL, (const kitchen_Hash *)&seed, &bd, &want), 0);
        ck_assert_int_eq(kitchen_Kitchen_digest_tail(ks_client, (const kitchen_Hash *)&seed, &bd,
                                                     &digest), 0);
        ck_assert(memcmp(digest, want, 32) == 0);
        free(big);
    }
}
END_TEST

START_TEST(stub_errors)
{
    kitchen_Shape sh;
    kitchen_Toggle tg;
    kitchen_Code code;
    kitchen_Everything e;
    kitchen_i32_list kept;
    int32_t six[6] = { 1, 2, 3, 4, 5, 6 };
    qrpc_buf args, reply;
    qrpc_service_desc other = kitchen_Kitchen_desc;
    qrpc_client *c2;
    bank_Account acct;

    memset(&sh, 0, sizeof sh);
    memset(&tg, 0, sizeof tg);
    sh.kind = kitchen_Color_BLACK;
    /* a method without a handler */
    ck_assert_int_eq(kitchen_Kitchen_classify(ks_client, &sh, &tg, &code), QRPC_ENOMETHOD);
    /* an argument over its bound never leaves the caller */
    ks_everything(&e);
    kept = e.few_ints;
    e.few_ints.items = six;
    e.few_ints.len = 6;
    ck_assert_int_eq(kitchen_Kitchen_echo(ks_client, &e, &e), QRPC_EBOUND);
    ck_assert_int_eq(ks.echo_calls, 0);
    e.few_ints = kept;
    kitchen_Everything_free(&e);
    /* another version of the service is not served */
    other.version = 4;
    ck_assert_int_eq(qrpc_client_create(ks_node, "local", &other, &c2), 0);
    qrpc_buf_init(&args);
    qrpc_buf_init(&reply);
    ck_assert_int_eq(qrpc_put_i32(&args, 1), 0);
    ck_assert_int_eq(qrpc_put_i32(&args, 2), 0);
    ck_assert_int_eq(qrpc_call(c2, kitchen_Kitchen_add_ID, &args, &reply), QRPC_ENOSERVICE);
    ck_assert_uint_eq(args.len, 0);         /* taken in every case */
    ck_assert_uint_eq(reply.len, 0);
    qrpc_client_destroy(c2);
    /* nor is a service nobody registered */
    ck_assert_int_eq(bank_Bank_connect(ks_node, "local", &c2), 0);
    ck_assert_int_eq(bank_Bank_get(c2, "nobody", &acct), QRPC_ENOSERVICE);
    qrpc_client_destroy(c2);
    /* serving twice */
    ck_assert_int_eq(kitchen_Kitchen_serve(ks_node, &ks_handlers, &ks), QRPC_EEXIST);
}
END_TEST

/* ---- asynchronous stubs ------------------------------------------------------------ */

typedef struct as_result {
    int calls;
    int status;
    int32_t value;
    char *note;
} as_result;

static void as_add_done(int status, kitchen_Kitchen_add_reply *reply, void *arg)
{
    as_result *res = arg;

    res->calls++;
    res->status = status;
    if (status == 0)
        res->value = reply->result;
}

static void as_update_done(int status, kitchen_Kitchen_update_reply *reply, void *arg)
{
    as_result *res = arg;

    res->calls++;
    res->status = status;
    if (status == 0) {
        res->value = reply->counter;
        res->note = reply->note;        /* taken: the stub frees what is left */
        reply->note = NULL;
    }
}

static void as_ping_done(int status, void *arg)
{
    as_result *res = arg;

    res->calls++;
    res->status = status;
}

START_TEST(stub_async)
{
    as_result a = { 0, -100, 0, NULL }, u = { 0, -100, 0, NULL }, p = { 0, -100, 0, NULL };
    kitchen_Everything e;
    kitchen_Shape sh;
    kitchen_Toggle tg;
    int i;

    for (i = 0; i < 100; i++)
        ck_assert_int_eq(kitchen_Kitchen_add_async(ks_client, i, 1, as_add_done, &a), 0);
    ck_assert_int_eq(a.calls, 100);
    ck_assert_int_eq(a.status, 0);
    ck_assert_int_eq(a.value, 100);

    ks_everything(&e);
    ck_assert_int_eq(kitchen_Kitchen_update_async(ks_client, &e, "n", 1, as_update_done, &u), 0);
    kitchen_Everything_free(&e);
    ck_assert_int_eq(u.calls, 1);
    ck_assert_int_eq(u.status, 0);
    ck_assert_int_eq(u.value, 2);
    ck_assert_str_eq(u.note, "n!");
    free(u.note);

    ck_assert_int_eq(kitchen_Kitchen_ping_async(ks_client, as_ping_done, &p), 0);
    ck_assert_int_eq(p.calls, 1);
    ck_assert_int_eq(p.status, 0);
    /* the error reaches the callback */
    memset(&sh, 0, sizeof sh);
    memset(&tg, 0, sizeof tg);
    sh.kind = kitchen_Color_BLACK;
    ck_assert_int_eq(kitchen_Kitchen_classify_async(ks_client, &sh, &tg, NULL, NULL), 0);
    ck_assert_int_eq(kitchen_Kitchen_ping_async(ks_client, NULL, NULL), 0);
    ck_assert_int_eq(ks.pings, 2);
    /* an argument that cannot be encoded: not started, callback never runs */
    sh.kind = (kitchen_Color)1234;
    p.calls = 0;
    ck_assert_int_eq(kitchen_Kitchen_classify_async(ks_client, &sh, &tg, NULL, &p), QRPC_EINVAL);
    ck_assert_int_eq(p.calls, 0);
}
END_TEST

/* ---- threads -------------------------------------------------------------------- */

static void *th_adder(void *arg)
{
    int32_t base = (int32_t)(intptr_t)arg;
    int i;

    for (i = 0; i < 5000; i++) {
        int32_t r = 0;

        if (kitchen_Kitchen_add(ks_client, base, i, &r) != 0 || r != base + i)
            return (void *)1;
    }
    return NULL;
}

START_TEST(stub_threads)
{
    pthread_t th[4];
    void *ret;
    int i;

    for (i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, th_adder, (void *)(intptr_t)(i * 100000)), 0);
    for (i = 0; i < 4; i++) {
        ck_assert_int_eq(pthread_join(th[i], &ret), 0);
        ck_assert_ptr_null(ret);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("stubs");
    TCase *tc = tcase_create("in-process");

    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, ks_setup, ks_teardown);
    tcase_add_test(tc, stub_add);
    tcase_add_test(tc, stub_echo_random);
    tcase_add_test(tc, stub_out_params);
    tcase_add_test(tc, stub_app_error);
    tcase_add_test(tc, stub_inout);
    tcase_add_test(tc, stub_oneway_and_void);
    tcase_add_test(tc, stub_recursive_and_arrays);
    tcase_add_test(tc, stub_errors);
    tcase_add_test(tc, stub_async);
    tcase_add_test(tc, stub_threads);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
