# tests/tests.mk - the test suite, included by the top-level Makefile.
#
# tests/idl/*.qidl are compiled by the qrpcgen just built into
# $(BUILD)/tests/gen/ (with the strict flags generated code promises) and
# archived into libgen.a; every tests/unit/test_*.c becomes one Check
# binary linked against it and libqrpc.a.  `make check` runs them all, each
# under a time limit, and fails if any fails.

TEST_IDL     := $(wildcard tests/idl/*.qidl)
TEST_GENDIR  := $(BUILD)/tests/gen
TEST_GEN_C   := $(foreach f,$(TEST_IDL:tests/idl/%.qidl=%),\
                  $(TEST_GENDIR)/$(f)_types.c $(TEST_GENDIR)/$(f)_client.c \
                  $(TEST_GENDIR)/$(f)_server.c $(TEST_GENDIR)/$(f)_random.c)
TEST_GEN_OBJ := $(TEST_GEN_C:%.c=%.o)
TEST_LIBGEN  := $(BUILD)/tests/libgen.a
TEST_SRC     := $(wildcard tests/unit/test_*.c)
TEST_BIN     := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TEST_TIMEOUT ?= 600

# Generated code must compile cleanly under exactly these flags.
GENERATED_STRICT := -std=c11 -Wall -Wextra -Werror -pedantic

# One stamp per .qidl: qrpcgen writes all outputs at once, plus the
# dependency file (-M) that makes imports rebuild what includes them.
$(TEST_GENDIR)/%.stamp: tests/idl/%.qidl $(QRPCGEN)
	@mkdir -p $(TEST_GENDIR)
	$(QRPCGEN) -I tests/idl -o $(TEST_GENDIR) -M $(TEST_GENDIR)/$*.qd $<
	$(QRPCGEN) -I tests/idl -o $(TEST_GENDIR) --random $<
	@touch $@

$(TEST_GENDIR)/%_types.c $(TEST_GENDIR)/%_client.c $(TEST_GENDIR)/%_server.c \
$(TEST_GENDIR)/%_random.c $(TEST_GENDIR)/%.h: $(TEST_GENDIR)/%.stamp ;

$(TEST_GENDIR)/%.o: $(TEST_GENDIR)/%.c $(TEST_IDL:tests/idl/%.qidl=$(TEST_GENDIR)/%.stamp)
	$(CC) $(GENERATED_STRICT) $(OPT) $(SANFLAGS) -Iruntime/include -I$(TEST_GENDIR) -c -o $@ $<

$(TEST_LIBGEN): $(TEST_GEN_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

# Tests may also include the master's generated interface (master.h, from
# idl/master.qidl), whose stubs libqrpc.a holds.
$(BUILD)/obj/tests/%.o: tests/unit/%.c $(TEST_IDL:tests/idl/%.qidl=$(TEST_GENDIR)/%.stamp) \
                        | $(IDL_GENDIR)/master.stamp
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Wno-missing-prototypes $(CHECK_CFLAGS) $(RUNTIME_DEFS) $(RUNTIME_INC) -I$(TEST_GENDIR) \
	    -I$(IDL_GENDIR) -Itests/unit -c -o $@ $<

# These expect zk:// to work or not as the build says (QRPC_HAVE_ZOOKEEPER).
$(BUILD)/obj/tests/test_master.o $(BUILD)/obj/tests/test_binding.o: $(ZK_STAMP)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_LIBGEN) $(LIBQRPC_A)
	$(CC) $(LDFLAGS_ALL) -o $@ $< $(TEST_LIBGEN) $(LIBQRPC_A) $(CHECK_LIBS) $(RUNTIME_LIBS)

# tests/faultproxy: a standalone fault-injection TCP proxy for the tests
# (see the comment at the top of faultproxy.c); no runtime library needed.
FAULTPROXY     := $(BUILD)/tests/faultproxy
FAULTPROXY_OBJ := $(BUILD)/obj/tests/faultproxy/faultproxy.o

$(FAULTPROXY_OBJ): tests/faultproxy/faultproxy.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

$(FAULTPROXY): $(FAULTPROXY_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $<

TEST_ENV = QRPCGEN=$(abspath $(QRPCGEN)) QRPC_SRCDIR=$(CURDIR) \
           QRPC_BUILDDIR=$(abspath $(BUILD)) QRPC_CC=$(CC) \
           QRPC_FAULTPROXY=$(abspath $(FAULTPROXY)) \
           QRPC_SANFLAGS='$(SANFLAGS)' CK_DEFAULT_TIMEOUT=120

check: all $(TEST_BIN) $(FAULTPROXY)
	@fail=0; for t in $(TEST_BIN); do \
	    echo "== $$t"; \
	    env $(TEST_ENV) timeout $(TEST_TIMEOUT) $$t || { echo "FAILED: $$t"; fail=1; }; \
	done; \
	if [ $$fail = 0 ]; then echo "make check: all test programs passed"; \
	else echo "make check: some test programs FAILED"; exit 1; fi

-include $(wildcard $(TEST_GENDIR)/*.qd)

# Rewrites the expected outputs of test_golden.c from the current qrpcgen.
GOLDEN_CASES := common bank kitchen
golden-update: $(QRPCGEN)
	@for n in $(GOLDEN_CASES); do \
	    rm -rf tests/golden/$$n && mkdir -p tests/golden/$$n && \
	    $(QRPCGEN) -I tests/idl -o tests/golden/$$n tests/idl/$$n.qidl && \
	    $(QRPCGEN) -I tests/idl -o tests/golden/$$n --random tests/idl/$$n.qidl || exit 1; \
	    echo "golden-update: tests/golden/$$n"; done

# The at-most-once soak test's server and client programs, and `make soak`.
include tests/soak/soak.mk
