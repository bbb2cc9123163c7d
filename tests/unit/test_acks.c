/*
 * test_acks.c - a client's sequence numbers and acknowledgement watermark
 * (runtime/src/acks.c): numbers from 1 in order; the watermark is the
 * longest prefix of finished calls, checked against a plain array after
 * every step of seeded random completion orders; the bitmap's growth with
 * many calls in flight; reports for numbers not in flight ignored; and
 * many threads at once.
 */
#include <check.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "qrpc_errors.h"
#include "../../runtime/src/acks.h"

static uint64_t rng_state = 0x2545f4914f6cdd1du;

static uint64_t rng(void)                   /* xorshift64*, fixed seed */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717u;
}

START_TEST(acks_in_order)
{
    qrpc__acks a;
    uint64_t seq, acked, i;

    ck_assert_int_eq(qrpc__acks_init(&a), 0);
    ck_assert_uint_eq(qrpc__acks_watermark(&a), 0);
    for (i = 1; i <= 1000; i++) {
        ck_assert_int_eq(qrpc__acks_next(&a, &seq, &acked), 0);
        ck_assert_uint_eq(seq, i);
        ck_assert_uint_eq(acked, i - 1);        /* the one before has finished */
        qrpc__acks_done(&a, seq);
        ck_assert_uint_eq(qrpc__acks_watermark(&a), i);
    }
    qrpc__acks_fini(&a);
}
END_TEST

/* n calls in flight, finished in a random order; the watermark after each. */
static void check_random_order(uint64_t n)
{
    qrpc__acks a;
    uint64_t *order = malloc(n * sizeof *order);
    bool *done = calloc(n + 1, sizeof *done);
    uint64_t seq, acked, i, prefix = 0;

    ck_assert(order != NULL && done != NULL);
    ck_assert_int_eq(qrpc__acks_init(&a), 0);
    for (i = 0; i < n; i++) {
        ck_assert_int_eq(qrpc__acks_next(&a, &seq, &acked), 0);
        ck_assert_uint_eq(seq, i + 1);
        ck_assert_uint_eq(acked, 0);            /* nothing finished yet */
        order[i] = seq;
    }
    for (i = n - 1; i > 0; i--) {               /* Fisher-Yates */
        uint64_t j = rng() % (i + 1), t = order[i];

        order[i] = order[j];
        order[j] = t;
    }
    for (i = 0; i < n; i++) {
        done[order[i]] = true;
        qrpc__acks_done(&a, order[i]);
        while (prefix < n && done[prefix + 1])
            prefix++;
        ck_assert_uint_eq(qrpc__acks_watermark(&a), prefix);
    }
    ck_assert_uint_eq(prefix, n);
    /* and the numbers go on from there */
    ck_assert_int_eq(qrpc__acks_next(&a, &seq, &acked), 0);
    ck_assert_uint_eq(seq, n + 1);
    ck_assert_uint_eq(acked, n);
    qrpc__acks_fini(&a);
    free(order);
    free(done);
}

START_TEST(acks_random_order)
{
    check_random_order(1);
    check_random_order(300);
    check_random_order(5000);
}
END_TEST

/* The bitmap grows while calls stay in flight, old and new ones mixed. */
START_TEST(acks_growth)
{
    qrpc__acks a;
    uint64_t seq, acked, i;

    ck_assert_int_eq(qrpc__acks_init(&a), 0);
    ck_assert_int_eq(qrpc__acks_next(&a, &seq, &acked), 0);    /* 1 stays in flight */
    for (i = 2; i <= 200000; i++) {
        ck_assert_int_eq(qrpc__acks_next(&a, &seq, &acked), 0);
        ck_assert_uint_eq(seq, i);
        ck_assert_uint_eq(acked, 0);
        if (i % 3 != 0)
            qrpc__acks_done(&a, seq);
    }
    ck_assert_uint_eq(qrpc__acks_watermark(&a), 0);
    qrpc__acks_done(&a, 1);
    ck_assert_uint_eq(qrpc__acks_watermark(&a), 2);             /* 3 is in flight */
    for (i = 3; i <= 200000; i += 3)
        qrpc__acks_done(&a, i);
    ck_assert_uint_eq(qrpc__acks_watermark(&a), 200000);
    qrpc__acks_fini(&a);
}
END_TEST

/* Reports for numbers not in flight change nothing. */
START_TEST(acks_ignores_strangers)
{
    qrpc__acks a;
    uint64_t seq, acked;

    ck_assert_int_eq(qrpc__acks_init(&a), 0);
    qrpc__acks_done(&a, 0);
    qrpc__acks_done(&a, 1);                     /* not handed out yet */
    qrpc__acks_done(&a, UINT64_MAX);
    ck_assert_uint_eq(qrpc__acks_watermark(&a), 0);
    ck_assert_int_eq(qrpc__acks_next(&a, &seq, &acked), 0);
    ck_assert_int_eq(qrpc__acks_next(&a, &seq, &acked), 0);
    ck_assert_uint_eq(seq, 2);
    qrpc__acks_done(&a, 2);
    qrpc__acks_done(&a, 2);                     /* twice: the same */
    ck_assert_uint_eq(qrpc__acks_watermark(&a), 0);
    qrpc__acks_done(&a, 1);
    ck_assert_uint_eq(qrpc__acks_watermark(&a), 2);
    qrpc__acks_done(&a, 1);                     /* below the watermark */
    ck_assert_uint_eq(qrpc__acks_watermark(&a), 2);
    qrpc__acks_fini(&a);
}
END_TEST

#define MT_THREADS 4
#define MT_CALLS   50000

static void *mt_main(void *arg)
{
    qrpc__acks *a = arg;
    uint64_t seq[4], acked;
    int i, k;

    /* a few in flight at a time, finished newest first */
    for (i = 0; i < MT_CALLS / 4; i++) {
        for (k = 0; k < 4; k++)
            if (qrpc__acks_next(a, &seq[k], &acked) != 0)
                return (void *)1;
        for (k = 3; k >= 0; k--)
            qrpc__acks_done(a, seq[k]);
    }
    return NULL;
}

START_TEST(acks_threads)
{
    qrpc__acks a;
    pthread_t t[MT_THREADS];
    void *r;
    int i;

    ck_assert_int_eq(qrpc__acks_init(&a), 0);
    for (i = 0; i < MT_THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, mt_main, &a), 0);
    for (i = 0; i < MT_THREADS; i++) {
        ck_assert_int_eq(pthread_join(t[i], &r), 0);
        ck_assert_ptr_null(r);
    }
    ck_assert_uint_eq(qrpc__acks_watermark(&a), (uint64_t)MT_THREADS * MT_CALLS);
    qrpc__acks_fini(&a);
}
END_TEST

static Suite *acks_suite(void)
{
    Suite *s = suite_create("acks");
    TCase *tc = tcase_create("acks");

    tcase_add_test(tc, acks_in_order);
    tcase_add_test(tc, acks_random_order);
    tcase_add_test(tc, acks_growth);
    tcase_add_test(tc, acks_ignores_strangers);
    tcase_add_test(tc, acks_threads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(acks_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
