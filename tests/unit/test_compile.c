/*
 * test_compile.c - the generated code compiles cleanly: every .qidl in
 * tests/idl/ and tests/qidl-good/ is compiled by qrpcgen (all outputs and
 * --random) and each output is built with gcc and with clang under
 * -std=c11 -Wall -Wextra -Werror -pedantic plus the warnings the runtime
 * itself is built with.  A compiler that is not installed fails the test:
 * tools/deps.sh installs both.
 */
#include "testutil.h"

static const char *const compile_flags =
    "-std=c11 -Wall -Wextra -Werror -pedantic -Wshadow -Wstrict-prototypes "
    "-Wmissing-prototypes -Wcast-qual -Wpointer-arith -O1";

/* The "// args: ..." line of a .qidl file, or "". */
static char *compile_args_of(const char *path)
{
    char *text = tu_read_file(path, NULL);
    char *p, *end, *args;

    ck_assert_msg(text != NULL, "cannot read %s", path);
    p = strstr(text, "// args:");
    if (p == NULL) {
        free(text);
        return strdup("");
    }
    p += strlen("// args:");
    end = strchr(p, '\n');
    args = strndup(p, end ? (size_t)(end - p) : strlen(p));
    free(text);
    return args;
}

static void compile_dir(const char *subdir, const char *cc)
{
    const char *src = tu_env("QRPC_SRCDIR");
    char dir[4096];
    char **files;
    size_t i;

    snprintf(dir, sizeof dir, "%s/%s", src, subdir);
    files = tu_list_dir(dir, ".qidl");
    ck_assert_msg(files[0] != NULL, "no .qidl files in %s", dir);
    for (i = 0; files[i] != NULL; i++) {
        char path[8192], cmd[32768];
        char *out = tu_mkdtemp();
        char *args, *err = NULL;
        char **gen;
        size_t k, base_len, compiled;
        int rc;

        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        args = compile_args_of(path);
        /*
         * Imported files' headers must exist where the generated #include
         * lines look: tests/idl/ files at the top, inc/ files under inc/.
         * Those preparatory runs may fail (some files exist only to be
         * imported in a particular way); the main file's run may not.
         */
        snprintf(cmd, sizeof cmd,
                 "cd '%s' && for f in '%s'/tests/idl/*.qidl; do "
                 "'%s' -I '%s/tests/idl' -o '%s' \"$f\" 2>/dev/null; done; "
                 "if [ -d inc ]; then mkdir -p '%s/inc'; for f in inc/*.qidl; do "
                 "'%s' %s -I '%s/tests/idl' -o '%s/inc' \"$f\" 2>/dev/null; done; fi; "
                 "'%s' %s -I '%s/tests/idl' -o '%s' '%s' && "
                 "'%s' %s -I '%s/tests/idl' -o '%s' --random '%s'",
                 dir, src, tu_env("QRPCGEN"), src, out,
                 out, tu_env("QRPCGEN"), args, src, out,
                 tu_env("QRPCGEN"), args, src, out, files[i],
                 tu_env("QRPCGEN"), args, src, out, files[i]);
        rc = tu_sh(cmd, NULL, &err);
        ck_assert_msg(rc == 0, "qrpcgen %s: %s", files[i], err);
        free(err);
        gen = tu_list_dir(out, ".c");
        base_len = strlen(files[i]) - strlen(".qidl");
        compiled = 0;
        for (k = 0; gen[k] != NULL; k++) {
            if (strncmp(gen[k], files[i], base_len) != 0 || gen[k][base_len] != '_')
                continue;
            compiled++;
            snprintf(cmd, sizeof cmd,
                     "%s %s -I '%s/runtime/include' -I '%s' -I '%s/inc' -c -o /dev/null '%s/%s'",
                     cc, compile_flags, src, out, out, out, gen[k]);
            rc = tu_sh(cmd, NULL, &err);
            ck_assert_msg(rc == 0, "%s: %s/%s (from %s) does not compile cleanly:\n%s",
                          cc, subdir, gen[k], files[i], err);
            free(err);
        }
        ck_assert_msg(compiled == 4, "%s: expected 4 generated C files, found %zu",
                      files[i], compiled);
        tu_free_list(gen);
        free(args);
        tu_rmtree(out);
        free(out);
    }
    tu_free_list(files);
}

START_TEST(compile_idl_gcc) { compile_dir("tests/idl", "gcc"); }
END_TEST

START_TEST(compile_idl_clang) { compile_dir("tests/idl", "clang"); }
END_TEST

START_TEST(compile_good_gcc) { compile_dir("tests/qidl-good", "gcc"); }
END_TEST

START_TEST(compile_good_clang) { compile_dir("tests/qidl-good", "clang"); }
END_TEST

int main(void)
{
    Suite *s = suite_create("compile");
    TCase *tc = tcase_create("generated code");

    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, compile_idl_gcc);
    tcase_add_test(tc, compile_idl_clang);
    tcase_add_test(tc, compile_good_gcc);
    tcase_add_test(tc, compile_good_clang);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
