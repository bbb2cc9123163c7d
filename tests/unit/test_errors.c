/*
 * test_errors.c - qrpc_strerror() and qrpc_err_name() against
 * QRPC_ERRNO_MAP: every code distinct and negative, with a non-empty,
 * unique message and the name QRPC_<NAME>; 0, positive (application) and
 * unknown negative statuses.
 */
#include <check.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "qrpc.h"

static const struct {
    int value;
    const char *name;
    const char *msg;
} codes[] = {
#define TEST_CODE(name, val, msg) { QRPC_##name, "QRPC_" #name, msg },
    QRPC_ERRNO_MAP(TEST_CODE)
#undef TEST_CODE
};

#define N_CODES (sizeof codes / sizeof codes[0])

START_TEST(test_codes_distinct_negative)
{
    size_t i, j;

    ck_assert_uint_ge(N_CODES, 18);
    for (i = 0; i < N_CODES; i++) {
        ck_assert_int_lt(codes[i].value, 0);
        for (j = i + 1; j < N_CODES; j++)
            ck_assert_int_ne(codes[i].value, codes[j].value);
    }
}
END_TEST

START_TEST(test_messages)
{
    size_t i, j;

    for (i = 0; i < N_CODES; i++) {
        const char *m = qrpc_strerror(codes[i].value);

        ck_assert_ptr_nonnull(m);
        ck_assert_str_eq(m, codes[i].msg);
        ck_assert_uint_gt(strlen(m), 0);
        ck_assert_str_ne(m, "unknown error");
        for (j = i + 1; j < N_CODES; j++)
            ck_assert_str_ne(m, qrpc_strerror(codes[j].value));
    }
}
END_TEST

START_TEST(test_names)
{
    size_t i, j;

    for (i = 0; i < N_CODES; i++) {
        const char *n = qrpc_err_name(codes[i].value);

        ck_assert_str_eq(n, codes[i].name);
        ck_assert_int_eq(strncmp(n, "QRPC_E", 6), 0);
        for (j = i + 1; j < N_CODES; j++)
            ck_assert_str_ne(n, qrpc_err_name(codes[j].value));
    }
    ck_assert_str_eq(qrpc_err_name(QRPC_ETIMEDOUT), "QRPC_ETIMEDOUT");
}
END_TEST

START_TEST(test_success_and_application)
{
    static const int app[] = { 1, 2, 42, 1000, INT_MAX };
    size_t i;

    ck_assert_int_eq(QRPC_OK, 0);
    ck_assert_str_eq(qrpc_strerror(0), "success");
    ck_assert_str_eq(qrpc_err_name(0), "QRPC_OK");
    for (i = 0; i < sizeof app / sizeof app[0]; i++) {
        ck_assert_str_eq(qrpc_strerror(app[i]), "application error");
        ck_assert_str_eq(qrpc_err_name(app[i]), "application");
    }
}
END_TEST

START_TEST(test_unknown)
{
    static const int unknown[] = { -21, -100, -1000, INT_MIN };
    size_t i;

    for (i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        ck_assert_str_eq(qrpc_strerror(unknown[i]), "unknown error");
        ck_assert_str_eq(qrpc_err_name(unknown[i]), "unknown");
    }
}
END_TEST

static Suite *errors_suite(void)
{
    Suite *s = suite_create("errors");
    TCase *tc = tcase_create("map");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_codes_distinct_negative);
    tcase_add_test(tc, test_messages);
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_success_and_application);
    tcase_add_test(tc, test_unknown);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(errors_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
