# tests/soak/soak.mk - the at-most-once soak test's programs and `make soak`,
# included by tests/tests.mk.
#
# soak-server and soak-client (tests/soak/) are separate processes driven
# by tests/unit/test_soak.c, which `make check` builds and runs like every
# test_*.c, in its short form, and by tests/unit/test_binding.c, which also
# runs qrpc-master and qrpc (built by runtime/tools/tools.mk).  They link
# against the generated soak.Ledger code (tests/idl/soak.qidl, in libgen.a)
# and libqrpc.a.
#
#   make soak [SOAK_TIMEOUT=3600]   the long run (QRPC_SOAK_LONG=1); the
#                                   sizes and the seed can be overridden from
#                                   the environment (see test_soak.c's top)

SOAK_SERVER  := $(BUILD)/tests/soak-server
SOAK_CLIENT  := $(BUILD)/tests/soak-client
SOAK_OBJDIR  := $(BUILD)/obj/tests/soak
SOAK_TIMEOUT ?= 3600

# A pattern rule with every stamp as a prerequisite, as tests.mk's own: a
# stamp named in an explicit rule would no longer be an intermediate file,
# and would survive make's removal of the generated .c files it stands for.
$(SOAK_OBJDIR)/%.o: tests/soak/%.c $(TEST_IDL:tests/idl/%.qidl=$(TEST_GENDIR)/%.stamp)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(RUNTIME_INC) -I$(TEST_GENDIR) -Itests/soak -c -o $@ $<

$(SOAK_SERVER): $(SOAK_OBJDIR)/soak_server.o $(TEST_LIBGEN) $(LIBQRPC_A)
	$(CC) $(LDFLAGS_ALL) -o $@ $< $(TEST_LIBGEN) $(LIBQRPC_A) $(RUNTIME_LIBS)

$(SOAK_CLIENT): $(SOAK_OBJDIR)/soak_client.o $(TEST_LIBGEN) $(LIBQRPC_A)
	$(CC) $(LDFLAGS_ALL) -o $@ $< $(TEST_LIBGEN) $(LIBQRPC_A) $(RUNTIME_LIBS)

SOAK_MASTER := $(BUILD)/bin/qrpc-master
SOAK_TOOL   := $(BUILD)/bin/qrpc

TEST_ENV += QRPC_SOAK_SERVER=$(abspath $(SOAK_SERVER)) QRPC_SOAK_CLIENT=$(abspath $(SOAK_CLIENT)) \
            QRPC_MASTER_BIN=$(abspath $(SOAK_MASTER)) QRPC_TOOL_BIN=$(abspath $(SOAK_TOOL))

check: $(SOAK_SERVER) $(SOAK_CLIENT) $(SOAK_MASTER) $(SOAK_TOOL)

.PHONY: soak
soak: all $(BUILD)/tests/test_soak $(FAULTPROXY) $(SOAK_SERVER) $(SOAK_CLIENT)
	env $(TEST_ENV) QRPC_SOAK_LONG=1 timeout $(SOAK_TIMEOUT) $(BUILD)/tests/test_soak
