# runtime/tools/tools.mk - the command-line programs, included by the
# top-level Makefile after the runtime's rules:
#
#   $(BUILD)/bin/qrpc-master   the master daemon, qrpc-master(8)
#   $(BUILD)/bin/qrpc          the cluster inspector, qrpc(1)
#
# Both link libqrpc.a, whose hidden master_types.o and master_client.o
# (from idl/master.qidl) they use through $(IDL_GENDIR)/master.h.
# QRPC_TOOLS lists them; `make install` and `make uninstall` handle them
# through install-tools and uninstall-tools.  Their man pages are in man/
# and installed with the others.

QRPC_MASTER_BIN := $(BUILD)/bin/qrpc-master
QRPC_TOOL_BIN   := $(BUILD)/bin/qrpc
QRPC_TOOLS      := $(QRPC_MASTER_BIN) $(QRPC_TOOL_BIN)

.PHONY: programs install-tools uninstall-tools

all: programs
programs: $(QRPC_TOOLS)

$(BUILD)/obj/tools/%.o: runtime/tools/%.c $(IDL_GENDIR)/master.stamp
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(RUNTIME_INC) -Iruntime/src -I$(IDL_GENDIR) -Iruntime/tools -c -o $@ $<

$(QRPC_MASTER_BIN): $(BUILD)/obj/tools/qrpc_master.o $(LIBQRPC_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $< $(LIBQRPC_A) $(RUNTIME_LIBS)

$(QRPC_TOOL_BIN): $(BUILD)/obj/tools/qrpc_tool.o $(LIBQRPC_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $< $(LIBQRPC_A) $(RUNTIME_LIBS)

install: install-tools
install-tools: $(QRPC_TOOLS)
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(QRPC_TOOLS) $(DESTDIR)$(PREFIX)/bin/

uninstall: uninstall-tools
uninstall-tools:
	rm -f $(QRPC_TOOLS:$(BUILD)/bin/%=$(DESTDIR)$(PREFIX)/bin/%)
