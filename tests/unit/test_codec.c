/*
 * test_codec.c - the generated encoders and decoders, as properties and
 * against hostile input.
 *
 * For every type of the test interfaces (tests/idl/): random values
 * (seeded, from the generated *_random.c) survive encode -> decode ->
 * equal, encode again gives the same bytes, copy gives an equal value.
 * Then the decoders are fed what an attacker would send: every strict
 * prefix of a valid encoding, random corruption, huge counts, bad bools,
 * unknown enum values and tags, NULs in strings, over-bound lengths and
 * over-deep recursion.  Each must fail with a clear code, and under
 * ASan/valgrind without a leak or a stray read.  Exact bytes of a few
 * values pin the wire format of qidl(5).
 */
#include <math.h>

#include "testutil.h"
#include "bank.h"
#include "common.h"
#include "kitchen.h"

typedef struct codec_type {
    const char *name;
    size_t size;
    int (*random)(void *v, uint64_t *seed, unsigned depth);
    int (*encode)(qrpc_buf *b, const void *v);
    int (*decode)(qrpc_reader *r, void *v);
    void (*free)(void *v);
    int (*copy)(void *dst, const void *src);
    bool (*equal)(const void *a, const void *b);
} codec_type;

/*
 * Typed wrappers: calling through a cast function pointer would be
 * undefined.  The explicit casts matter for array typedefs (Hash, Pairs),
 * whose const pointers do not convert implicitly in ISO C11.
 */
#define CODEC_WRAP(T)                                                                   \
    static int T##_w_random(void *v, uint64_t *s, unsigned d) { return T##_random(v, s, d); } \
    static int T##_w_encode(qrpc_buf *b, const void *v) { return T##_encode(b, (const T *)v); } \
    static int T##_w_decode(qrpc_reader *r, void *v) { return T##_decode(r, v); }      \
    static void T##_w_free(void *v) { T##_free(v); }                                    \
    static int T##_w_copy(void *d, const void *s) { return T##_copy(d, (const T *)s); } \
    static bool T##_w_equal(const void *a, const void *b)                               \
    {                                                                                   \
        return T##_equal((const T *)a, (const T *)b);                                   \
    }
#define CODEC_ENTRY(T)                                                                  \
    { #T, sizeof(T), T##_w_random, T##_w_encode, T##_w_decode, T##_w_free,              \
      T##_w_copy, T##_w_equal }

CODEC_WRAP(kitchen_Everything)
CODEC_WRAP(kitchen_Leaf)
CODEC_WRAP(kitchen_Money2)
CODEC_WRAP(kitchen_Pair)
CODEC_WRAP(kitchen_Tree)
CODEC_WRAP(kitchen_Chain)
CODEC_WRAP(kitchen_Shape)
CODEC_WRAP(kitchen_Toggle)
CODEC_WRAP(kitchen_Code)
CODEC_WRAP(kitchen_Hash)
CODEC_WRAP(kitchen_Ints)
CODEC_WRAP(kitchen_Matrix)
CODEC_WRAP(kitchen_MaybeLeaf)
CODEC_WRAP(kitchen_Pairs)
CODEC_WRAP(bank_Account)
CODEC_WRAP(bank_Reply)
CODEC_WRAP(common_Money)
CODEC_WRAP(common_Name)
CODEC_WRAP(common_Cents)

static const codec_type codec_types[] = {
    CODEC_ENTRY(kitchen_Everything), CODEC_ENTRY(kitchen_Leaf),
    CODEC_ENTRY(kitchen_Money2),     CODEC_ENTRY(kitchen_Pair),
    CODEC_ENTRY(kitchen_Tree),       CODEC_ENTRY(kitchen_Chain),
    CODEC_ENTRY(kitchen_Shape),      CODEC_ENTRY(kitchen_Toggle),
    CODEC_ENTRY(kitchen_Code),       CODEC_ENTRY(kitchen_Hash),
    CODEC_ENTRY(kitchen_Ints),       CODEC_ENTRY(kitchen_Matrix),
    CODEC_ENTRY(kitchen_MaybeLeaf),  CODEC_ENTRY(kitchen_Pairs),
    CODEC_ENTRY(bank_Account),       CODEC_ENTRY(bank_Reply),
    CODEC_ENTRY(common_Money),       CODEC_ENTRY(common_Name),
    CODEC_ENTRY(common_Cents),
};

#define CODEC_NTYPES (sizeof codec_types / sizeof codec_types[0])

static uint64_t codec_seed(size_t type_index, int i)
{
    return UINT64_C(0x51ED5EED) ^ ((uint64_t)type_index << 32) ^ (uint64_t)(i + 1);
}

/* Encodes one random value of t into b; v is left holding the value. */
static void codec_random_encoded(const codec_type *t, size_t ti, int i, void *v, qrpc_buf *b)
{
    uint64_t seed = codec_seed(ti, i);

    ck_assert_int_eq(t->random(v, &seed, 0), 0);
    qrpc_buf_init(b);
    ck_assert_msg(t->encode(b, v) == 0, "%s: encode of random value %d failed", t->name, i);
}

/* ---- properties ---------------------------------------------------------- */

START_TEST(codec_roundtrip)
{
    const codec_type *t = &codec_types[_i];
    void *v = calloc(1, t->size), *w = calloc(1, t->size), *c = calloc(1, t->size);
    int i;

    for (i = 0; i < 400; i++) {
        qrpc_buf b, b2;
        qrpc_reader r;

        codec_random_encoded(t, (size_t)_i, i, v, &b);
        qrpc_reader_init(&r, b.data, b.len);
        ck_assert_msg(t->decode(&r, w) == 0, "%s: decode of value %d failed", t->name, i);
        ck_assert_msg(qrpc_reader_left(&r) == 0, "%s: decode left %zu bytes", t->name,
                      qrpc_reader_left(&r));
        ck_assert_msg(t->equal(v, w), "%s: value %d changed in a round trip", t->name, i);
        qrpc_buf_init(&b2);
        ck_assert_int_eq(t->encode(&b2, w), 0);
        ck_assert_msg(b2.len == b.len && memcmp(b.data, b2.data, b.len) == 0,
                      "%s: re-encoding value %d gave other bytes", t->name, i);
        ck_assert_int_eq(t->copy(c, v), 0);
        ck_assert_msg(t->equal(c, v), "%s: copy of value %d differs", t->name, i);
        t->free(v);
        ck_assert_msg(t->equal(c, w), "%s: copy shares memory with its source", t->name);
        t->free(w);
        t->free(c);
        qrpc_buf_free(&b);
        qrpc_buf_free(&b2);
    }
    free(v);
    free(w);
    free(c);
}
END_TEST

/* Every strict prefix of a valid encoding is truncated input. */
START_TEST(codec_truncated)
{
    const codec_type *t = &codec_types[_i];
    void *v = calloc(1, t->size), *w = calloc(1, t->size);
    int i;

    for (i = 0; i < 40; i++) {
        qrpc_buf b;
        size_t n;

        codec_random_encoded(t, (size_t)_i, i, v, &b);
        for (n = 0; n < b.len; n++) {
            qrpc_reader r;
            uint8_t *copy = malloc(n ? n : 1);

            /* an exact-size copy, so that ASan sees any read past the end */
            memcpy(copy, b.data, n);
            qrpc_reader_init(&r, copy, n);
            ck_assert_msg(t->decode(&r, w) == QRPC_EDECODE,
                          "%s: a %zu-byte prefix of %zu bytes did not fail", t->name, n, b.len);
            free(copy);
        }
        t->free(v);
        qrpc_buf_free(&b);
    }
    free(v);
    free(w);
}
END_TEST

/* Random corruption: any outcome but a crash, a leak or a bad read is fine. */
START_TEST(codec_corrupted)
{
    const codec_type *t = &codec_types[_i];
    void *v = calloc(1, t->size), *w = calloc(1, t->size);
    uint64_t rnd = 0x1234567u + (uint64_t)_i;
    int i, ok = 0, bad = 0;

    for (i = 0; i < 300; i++) {
        qrpc_buf b;
        qrpc_reader r;
        int k, rc;

        codec_random_encoded(t, (size_t)_i, i, v, &b);
        for (k = 0; k < 3 && b.len > 0; k++) {
            rnd = rnd * 6364136223846793005u + 1442695040888963407u;
            b.data[(rnd >> 33) % b.len] ^= (uint8_t)(1u << ((rnd >> 20) & 7));
        }
        qrpc_reader_init(&r, b.data, b.len);
        rc = t->decode(&r, w);
        ck_assert_msg(rc == 0 || rc == QRPC_EDECODE || rc == QRPC_ENOMEM,
                      "%s: corrupted input gave %d", t->name, rc);
        if (rc == 0) {
            qrpc_buf b2;

            ok++;
            qrpc_buf_init(&b2);
            /* what decodes must encode again */
            ck_assert_int_eq(t->encode(&b2, w), 0);
            qrpc_buf_free(&b2);
            t->free(w);
        } else {
            bad++;
        }
        t->free(v);
        qrpc_buf_free(&b);
    }
    ck_assert_int_eq(ok + bad, 300);
    free(v);
    free(w);
}
END_TEST

/* ---- hostile input, case by case ----------------------------------------------- */

static int codec_decode_bytes(const codec_type *t, const void *bytes, size_t n, void *out)
{
    qrpc_reader r;
    uint8_t *copy = malloc(n ? n : 1);
    int rc;

    memcpy(copy, bytes, n);
    qrpc_reader_init(&r, copy, n);
    rc = t->decode(&r, out);
    if (rc == 0 && qrpc_reader_left(&r) != 0)
        rc = 1;                 /* a test that expects success wants every byte used */
    free(copy);
    return rc;
}

static const codec_type *codec_find(const char *name)
{
    size_t i;

    for (i = 0; i < CODEC_NTYPES; i++)
        if (strcmp(codec_types[i].name, name) == 0)
            return &codec_types[i];
    ck_abort_msg("no codec type %s", name);
    return NULL;
}

START_TEST(codec_huge_counts)
{
    /* list<i32> claiming 2^32-1 items with 8 bytes behind it */
    static const uint8_t ints[] = { 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 2, 0, 0, 0 };
    /* list<list<string>>: outer count 1, inner count 0x40000000 */
    static const uint8_t matrix[] = { 1, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0 };
    /* a string<64> claiming 4 GiB, and one claiming 65 bytes */
    static const uint8_t name[] = { 0xff, 0xff, 0xff, 0xff, 'a' };
    uint8_t name65[4 + 65];
    kitchen_Ints iv;
    kitchen_Matrix mv;
    common_Name nv;

    ck_assert_int_eq(codec_decode_bytes(codec_find("kitchen_Ints"), ints, sizeof ints, &iv),
                     QRPC_EDECODE);
    ck_assert_int_eq(codec_decode_bytes(codec_find("kitchen_Matrix"), matrix, sizeof matrix, &mv),
                     QRPC_EDECODE);
    ck_assert_int_eq(codec_decode_bytes(codec_find("common_Name"), name, sizeof name, &nv),
                     QRPC_EDECODE);
    memset(name65, 'x', sizeof name65);
    name65[0] = 65;
    name65[1] = name65[2] = name65[3] = 0;
    ck_assert_int_eq(codec_decode_bytes(codec_find("common_Name"), name65, sizeof name65, &nv),
                     QRPC_EDECODE);
    name65[0] = 64;             /* at the bound, with one byte over: trailing */
    ck_assert_int_eq(codec_decode_bytes(codec_find("common_Name"), name65, sizeof name65 - 1, &nv),
                     0);
    ck_assert_uint_eq(strlen(nv), 64);
    common_Name_free(&nv);
}
END_TEST

START_TEST(codec_bad_values)
{
    /* Toggle: bool discriminant 2 */
    static const uint8_t toggle[] = { 2 };
    /* Money: currency 3 is not a member of Currency */
    static const uint8_t money[] = { 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
    /* Shape: kind 0x11 is BLACK (valid, void arm); 0x12 is no member */
    static const uint8_t shape_ok[] = { 0x11, 0, 0, 0 };
    static const uint8_t shape_bad[] = { 0x12, 0, 0, 0 };
    /* Leaf: a label with a NUL inside */
    static const uint8_t leaf[] = { 1, 0, 0, 0, 3, 0, 0, 0, 'a', 0, 'b' };
    /* Chain: presence byte 7 */
    static const uint8_t chain[] = { 1, 0, 7 };
    kitchen_Toggle tv;
    common_Money mv;
    kitchen_Shape sv;
    kitchen_Leaf lv;
    kitchen_Chain cv;

    ck_assert_int_eq(codec_decode_bytes(codec_find("kitchen_Toggle"), toggle, 1, &tv), QRPC_EDECODE);
    ck_assert_int_eq(codec_decode_bytes(codec_find("common_Money"), money, sizeof money, &mv),
                     QRPC_EDECODE);
    ck_assert_int_eq(codec_decode_bytes(codec_find("kitchen_Shape"), shape_ok, 4, &sv), 0);
    ck_assert_int_eq(sv.kind, kitchen_Color_BLACK);
    ck_assert_int_eq(codec_decode_bytes(codec_find("kitchen_Shape"), shape_bad, 4, &sv),
                     QRPC_EDECODE);
    ck_assert_int_eq(codec_decode_bytes(codec_find("kitchen_Leaf"), leaf, sizeof leaf, &lv),
                     QRPC_EDECODE);
    ck_assert_int_eq(codec_decode_bytes(codec_find("kitchen_Chain"), chain, sizeof chain, &cv),
                     QRPC_EDECODE);
}
END_TEST

START_TEST(codec_encode_rejects)
{
    qrpc_buf b;
    common_Money m = { (common_Currency)3, 5 };
    kitchen_Shape sh;
    common_Name long_name;
    kitchen_Everything e;
    kitchen_i32_list kept;
    int32_t six[6] = { 1, 2, 3, 4, 5, 6 };
    uint64_t seed = 99;

    qrpc_buf_init(&b);
    ck_assert_int_eq(common_Money_encode(&b, &m), QRPC_EINVAL);
    memset(&sh, 0, sizeof sh);
    sh.kind = (kitchen_Color)77;
    ck_assert_int_eq(kitchen_Shape_encode(&b, &sh), QRPC_EINVAL);
    long_name = malloc(66);
    memset(long_name, 'n', 65);
    long_name[65] = '\0';
    ck_assert_int_eq(common_Name_encode(&b, &long_name), QRPC_EBOUND);
    long_name[64] = '\0';
    b.len = 0;
    ck_assert_int_eq(common_Name_encode(&b, &long_name), 0);
    ck_assert_uint_eq(b.len, 4 + 64);
    free(long_name);
    /* list<i32, 5> with six items, in an otherwise valid value */
    ck_assert_int_eq(kitchen_Everything_random(&e, &seed, 0), 0);
    kept = e.few_ints;
    e.few_ints.items = six;
    e.few_ints.len = 6;
    b.len = 0;
    ck_assert_int_eq(kitchen_Everything_encode(&b, &e), QRPC_EBOUND);
    e.few_ints.len = 5;
    b.len = 0;
    ck_assert_int_eq(kitchen_Everything_encode(&b, &e), 0);
    e.few_ints = kept;
    kitchen_Everything_free(&e);
    qrpc_buf_free(&b);
}
END_TEST

/* A Chain n levels deep, built by hand. */
static kitchen_Chain *codec_chain(int n)
{
    kitchen_Chain *head = calloc(1, sizeof *head), *c = head;
    int i;

    for (i = 1; i < n; i++) {
        c->next = calloc(1, sizeof *c->next);
        c->n = (uint16_t)i;
        c = c->next;
    }
    return head;
}

START_TEST(codec_depth_limit)
{
    kitchen_Chain *deep = codec_chain(100), out;
    kitchen_Chain *shallow = codec_chain(60);
    qrpc_buf b;
    qrpc_reader r;

    qrpc_buf_init(&b);
    ck_assert_int_eq(kitchen_Chain_encode(&b, deep), 0);
    qrpc_reader_init(&r, b.data, b.len);
    ck_assert_int_eq(kitchen_Chain_decode(&r, &out), QRPC_EDECODE);
    qrpc_reader_init(&r, b.data, b.len);
    r.max_depth = 200;
    ck_assert_int_eq(kitchen_Chain_decode(&r, &out), 0);
    ck_assert(kitchen_Chain_equal(&out, deep));
    ck_assert_uint_eq(r.depth, 0);
    kitchen_Chain_free(&out);
    b.len = 0;
    ck_assert_int_eq(kitchen_Chain_encode(&b, shallow), 0);
    qrpc_reader_init(&r, b.data, b.len);
    ck_assert_int_eq(kitchen_Chain_decode(&r, &out), 0);
    kitchen_Chain_free(&out);
    kitchen_Chain_free(deep);
    kitchen_Chain_free(shallow);
    free(deep);
    free(shallow);
    qrpc_buf_free(&b);
}
END_TEST

static void codec_expect_bytes(const qrpc_buf *b, const uint8_t *want, size_t n)
{
    size_t i;

    ck_assert_uint_eq(b->len, n);
    for (i = 0; i < n; i++)
        ck_assert_msg(b->data[i] == want[i], "byte %zu is %02x, want %02x", i, b->data[i],
                      want[i]);
}

START_TEST(codec_wire_bytes)
{
    static const uint8_t money[] = { 1, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1 };
    static const uint8_t leaf[] = { 0xfe, 0xff, 0xff, 0xff, 2, 0, 0, 0, 'h', 'i' };
    static const uint8_t chain[] = { 2, 1, 1, 3, 0, 0 };
    static const uint8_t toggle[] = { 1, 1, 0, 0, 0, 'x' };
    static const uint8_t code[] = { 5, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0 };
    static const uint8_t pair[] = { 0x10, 0, 0, 0, 0, 0, 0xc0, 0x3f };
    common_Money m = { common_Currency_EUR, 0x0102030405060708 };
    kitchen_Leaf l = { -2, "hi" };
    kitchen_Chain c2 = { 3, NULL }, c1 = { 0x0102, &c2 };
    kitchen_Toggle t;
    kitchen_Code k;
    kitchen_Pair p = { kitchen_Color_BLUE, 1.5f };
    qrpc_buf b;

    t.on = true;
    t.why = "x";
    k.code = 5;
    k.other = 7;
    qrpc_buf_init(&b);
    ck_assert_int_eq(common_Money_encode(&b, &m), 0);
    codec_expect_bytes(&b, money, sizeof money);
    b.len = 0;
    ck_assert_int_eq(kitchen_Leaf_encode(&b, &l), 0);
    codec_expect_bytes(&b, leaf, sizeof leaf);
    b.len = 0;
    ck_assert_int_eq(kitchen_Chain_encode(&b, &c1), 0);
    codec_expect_bytes(&b, chain, sizeof chain);
    b.len = 0;
    ck_assert_int_eq(kitchen_Toggle_encode(&b, &t), 0);
    codec_expect_bytes(&b, toggle, sizeof toggle);
    b.len = 0;
    ck_assert_int_eq(kitchen_Code_encode(&b, &k), 0);
    codec_expect_bytes(&b, code, sizeof code);
    b.len = 0;
    ck_assert_int_eq(kitchen_Pair_encode(&b, &p), 0);
    codec_expect_bytes(&b, pair, sizeof pair);
    qrpc_buf_free(&b);
    ck_assert_str_eq(kitchen_Color_name(kitchen_Color_GREEN), "GREEN");
    ck_assert_int_eq(kitchen_Color_GREEN, -1);
    ck_assert_int_eq(kitchen_Color_BLACK, 0x11);
    ck_assert(kitchen_Color_name((kitchen_Color)5) == NULL);
}
END_TEST

START_TEST(codec_constants)
{
    ck_assert_int_eq(kitchen_SHORT, 10);
    ck_assert(kitchen_NEG == -30);
    ck_assert(kitchen_BIG == UINT64_MAX);
    ck_assert_int_eq(kitchen_FROM_ENUM, 0x11);
    ck_assert_uint_eq(kitchen_MASK, 0xF);
    ck_assert_uint_eq(sizeof(kitchen_Hash), 32);
    ck_assert_uint_eq(common_NAME_MAX, 64);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("codec");
    TCase *tc = tcase_create("properties");
    TCase *th = tcase_create("hostile");

    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, codec_roundtrip, 0, (int)CODEC_NTYPES);
    tcase_add_loop_test(tc, codec_truncated, 0, (int)CODEC_NTYPES);
    tcase_add_loop_test(tc, codec_corrupted, 0, (int)CODEC_NTYPES);
    suite_add_tcase(s, tc);
    tcase_set_timeout(th, 60);
    tcase_add_test(th, codec_huge_counts);
    tcase_add_test(th, codec_bad_values);
    tcase_add_test(th, codec_encode_rejects);
    tcase_add_test(th, codec_depth_limit);
    tcase_add_test(th, codec_wire_bytes);
    tcase_add_test(th, codec_constants);
    suite_add_tcase(s, th);
    return tu_run_suite(s);
}
