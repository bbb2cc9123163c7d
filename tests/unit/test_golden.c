/*
 * test_golden.c - golden-output tests of qrpcgen: for each directory
 * tests/golden/NAME/, compiling tests/idl/NAME.qidl (all outputs and
 * --random) must write exactly the files in that directory, byte for byte,
 * and a second run must write the same bytes again (determinism).
 *
 * After an intended change to the generated code, `make golden-update`
 * rewrites the expected files; review the diff before committing it.
 */
#include "testutil.h"

static char *golden_generate(const char *name)
{
    char input[4096], incdir[4096];
    char *dir = tu_mkdtemp();
    char *err = NULL;
    int rc;

    snprintf(input, sizeof input, "%s/tests/idl/%s.qidl", tu_env("QRPC_SRCDIR"), name);
    snprintf(incdir, sizeof incdir, "%s/tests/idl", tu_env("QRPC_SRCDIR"));
    {
        char *const argv[] = { (char *)tu_env("QRPCGEN"), "-I", incdir, "-o", dir, input, NULL };

        rc = tu_run(NULL, argv, NULL, &err);
        ck_assert_msg(rc == 0, "qrpcgen %s failed (%d): %s", name, rc, err);
        ck_assert_msg(err != NULL && err[0] == '\0', "qrpcgen %s printed: %s", name, err);
        free(err);
    }
    {
        char *const argv[] = { (char *)tu_env("QRPCGEN"), "-I", incdir, "-o", dir, "--random",
                               input, NULL };

        rc = tu_run(NULL, argv, NULL, &err);
        ck_assert_msg(rc == 0, "qrpcgen --random %s failed (%d): %s", name, rc, err);
        free(err);
    }
    return dir;
}

static void golden_compare(const char *name, const char *dir)
{
    char gdir[4096];
    char **want, **got;
    size_t i;

    snprintf(gdir, sizeof gdir, "%s/tests/golden/%s", tu_env("QRPC_SRCDIR"), name);
    want = tu_list_dir(gdir, NULL);
    got = tu_list_dir(dir, NULL);
    for (i = 0; want[i] != NULL || got[i] != NULL; i++) {
        char a[8192], b[8192];
        char *ta, *tb;
        size_t la = 0, lb = 0, line = 1, k;

        ck_assert_msg(want[i] != NULL && got[i] != NULL && strcmp(want[i], got[i]) == 0,
                      "%s: expected file %s, generated %s", name,
                      want[i] ? want[i] : "(none)", got[i] ? got[i] : "(none)");
        snprintf(a, sizeof a, "%s/%s", gdir, want[i]);
        snprintf(b, sizeof b, "%s/%s", dir, got[i]);
        ta = tu_read_file(a, &la);
        tb = tu_read_file(b, &lb);
        ck_assert_ptr_nonnull(ta);
        ck_assert_ptr_nonnull(tb);
        for (k = 0; k < la && k < lb && ta[k] == tb[k]; k++)
            if (ta[k] == '\n')
                line++;
        ck_assert_msg(la == lb && k == la,
                      "%s/%s differs from the golden file at line %zu "
                      "(run `make golden-update` if the change is intended)",
                      name, want[i], line);
        free(ta);
        free(tb);
    }
    tu_free_list(want);
    tu_free_list(got);
}

static void golden_case(const char *name)
{
    char *first = golden_generate(name);
    char *second = golden_generate(name);

    golden_compare(name, first);
    golden_compare(name, second);
    tu_rmtree(first);
    tu_rmtree(second);
    free(first);
    free(second);
}

START_TEST(golden_common) { golden_case("common"); }
END_TEST

START_TEST(golden_bank) { golden_case("bank"); }
END_TEST

START_TEST(golden_kitchen) { golden_case("kitchen"); }
END_TEST

int main(void)
{
    Suite *s = suite_create("golden");
    TCase *tc = tcase_create("outputs");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, golden_common);
    tcase_add_test(tc, golden_bank);
    tcase_add_test(tc, golden_kitchen);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
