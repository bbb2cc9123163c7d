# Makefile - builds qrpcgen, libqrpc, the tests and the examples.
#
#   make                 build/bin/qrpcgen, build/lib/libqrpc.{a,so}
#   make check           build and run every test (Check framework)
#   make check SANITIZE=1       the same under ASan+UBSan, in build/asan
#   make check SANITIZE=thread  the same under TSan, in build/tsan
#   make demo            build and run examples/calc end to end
#   make bench           benchmarks, results in build/bench/
#   make fuzz            libFuzzer harnesses, FUZZ_SECONDS each (default 60)
#   make soak            the long at-most-once soak test (tests/soak/soak.mk)
#   make install PREFIX=/usr/local DESTDIR=
#
# Plain GNU make.  Every target first runs tools/deps.sh, which installs
# missing Debian packages (as root) or prints the apt-get line to run.

PREFIX   ?= /usr/local
DESTDIR  ?=
SANITIZE ?=
CC       ?= cc
FLEX     ?= flex
BISON    ?= bison

ifeq ($(SANITIZE),)
BUILD    ?= build
SANFLAGS :=
else ifeq ($(SANITIZE),thread)
BUILD    ?= build/tsan
SANFLAGS := -fsanitize=thread
else
BUILD    ?= build/asan
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
endif

OPT      ?= -O2 -g
WARN     := -Wall -Wextra -Werror -pedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CSTD     := -std=c11 -D_GNU_SOURCE
CFLAGS_ALL = $(CSTD) $(OPT) $(WARN) $(SANFLAGS) -MMD -MP $(CFLAGS)
LDFLAGS_ALL = $(SANFLAGS) $(LDFLAGS)

CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs check 2>/dev/null)

RUNTIME_LIBS := -lpthread

# The Debian packages are installed before the rest of this file is read,
# since what is installed decides what is built (ZooKeeper below).  The
# deps target fails the build when that did not succeed (running deps.sh
# again, for its message), and runs it when it was not run here.
ifeq ($(filter clean,$(MAKECMDGOALS)),)
ifndef QRPC_DEPS_CHECKED
QRPC_DEPS_STATUS := $(shell tools/deps.sh >&2 && echo ok || echo failed)
export QRPC_DEPS_CHECKED := 1
endif
endif

# yes when every header of $(1) can be included, no otherwise.
have_headers = $(shell printf '$(foreach h,$(1),\043include <$(h)>\n)' | \
                 $(CC) -E -x c - >/dev/null 2>&1 && echo yes || echo no)

# ZooKeeper binding (runtime/src/bind_zk.c, zk:// master addresses) is
# built in when ZooKeeper's C client is installed; QRPC_ZOOKEEPER=no
# leaves it out (zk:// then fails with QRPC_ENOTSUP and says why).
QRPC_ZOOKEEPER ?= auto
ifeq ($(QRPC_ZOOKEEPER),auto)
QRPC_ZOOKEEPER := $(call have_headers,zookeeper/zookeeper.h)
endif
ifeq ($(QRPC_ZOOKEEPER),yes)
RUNTIME_DEFS := -DQRPC_HAVE_ZOOKEEPER
RUNTIME_LIBS := -lzookeeper_mt -lpthread
endif

# The RDMA transport's real provider (runtime/src/verbs_ibv.c) is built in
# when libibverbs' and librdmacm's headers are installed; QRPC_VERBS=no
# leaves it out.  The software emulation (verbs_emu.c) is always there.
QRPC_VERBS ?= auto
ifeq ($(QRPC_VERBS),auto)
QRPC_VERBS := $(call have_headers,infiniband/verbs.h rdma/rdma_cma.h)
endif
ifeq ($(QRPC_VERBS),yes)
RUNTIME_DEFS += -DQRPC_HAVE_VERBS
RUNTIME_LIBS := -lrdmacm -libverbs $(RUNTIME_LIBS)
endif

.PHONY: all deps check demo bench bench-peers fuzz install uninstall clean \
        golden-update compiler runtime
all: deps compiler runtime

deps:
	@[ "$(QRPC_DEPS_STATUS)" = ok ] || tools/deps.sh

# ---- compiler -------------------------------------------------------------

QRPCGEN      := $(BUILD)/bin/qrpcgen
COMPILER_SRC := $(wildcard compiler/*.c)
COMPILER_GEN := $(BUILD)/gen/compiler/lexer.c $(BUILD)/gen/compiler/parser.c
COMPILER_OBJ := $(COMPILER_SRC:%.c=$(BUILD)/obj/%.o) \
                $(BUILD)/obj/gen/compiler/lexer.o $(BUILD)/obj/gen/compiler/parser.o

compiler: $(QRPCGEN)

$(BUILD)/gen/compiler/parser.c $(BUILD)/gen/compiler/parser.h &: compiler/parser.y
	@mkdir -p $(dir $@)
	$(BISON) -Wall -Werror --defines=$(BUILD)/gen/compiler/parser.h -o $(BUILD)/gen/compiler/parser.c $<

$(BUILD)/gen/compiler/lexer.c $(BUILD)/gen/compiler/lexer.h &: compiler/lexer.l
	@mkdir -p $(dir $@)
	$(FLEX) --header-file=$(BUILD)/gen/compiler/lexer.h -o $(BUILD)/gen/compiler/lexer.c $<

# The generated scanner and parser get the same warnings but the few that
# flex's and bison's own skeletons trip.
GEN_CFLAGS = $(CSTD) $(OPT) -Wall -Wextra -Werror -Wno-unused-function \
             -Wno-sign-compare -Wno-unused-parameter $(SANFLAGS) -MMD -MP \
             -Icompiler -I$(BUILD)/gen/compiler $(CFLAGS)

$(BUILD)/obj/gen/compiler/%.o: $(BUILD)/gen/compiler/%.c $(BUILD)/gen/compiler/parser.h $(BUILD)/gen/compiler/lexer.h
	@mkdir -p $(dir $@)
	$(CC) $(GEN_CFLAGS) -c -o $@ $<

$(BUILD)/obj/compiler/%.o: compiler/%.c $(BUILD)/gen/compiler/parser.h $(BUILD)/gen/compiler/lexer.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Icompiler -I$(BUILD)/gen/compiler -DQRPC_VERSION='"$(VERSION)"' -c -o $@ $<

$(QRPCGEN): $(COMPILER_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^

VERSION := 0.1.0

# ---- runtime ---------------------------------------------------------------

# The master's interface (idl/master.qidl) is compiled by the qrpcgen just
# built, into $(IDL_GENDIR), and its types and client stubs go into libqrpc
# with hidden visibility: the node side and the master use them, the
# library does not export them (programs linked against libqrpc.a, such
# as qrpc(1), still can).
IDL_GENDIR  := $(BUILD)/gen/idl
IDL_GEN_C   := $(IDL_GENDIR)/master_types.c $(IDL_GENDIR)/master_client.c
IDL_GEN_OBJ := $(IDL_GEN_C:$(IDL_GENDIR)/%.c=$(BUILD)/obj/gen/idl/%.o)

$(IDL_GENDIR)/master.stamp: idl/master.qidl $(QRPCGEN)
	@mkdir -p $(IDL_GENDIR)
	$(QRPCGEN) -Werror -o $(IDL_GENDIR) --header --types --client $<
	@touch $@

$(IDL_GENDIR)/master.h $(IDL_GEN_C): $(IDL_GENDIR)/master.stamp ;

$(BUILD)/obj/gen/idl/%.o: $(IDL_GENDIR)/%.c $(IDL_GENDIR)/master.stamp
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(OPT) -Wall -Wextra -Werror -pedantic $(SANFLAGS) -fPIC \
	    -fvisibility=hidden $(RUNTIME_INC) -I$(IDL_GENDIR) -c -o $@ $<

RUNTIME_SRC := $(wildcard runtime/src/*.c)
RUNTIME_OBJ := $(RUNTIME_SRC:%.c=$(BUILD)/obj/%.o) $(IDL_GEN_OBJ)
LIBQRPC_A   := $(BUILD)/lib/libqrpc.a
LIBQRPC_SO  := $(BUILD)/lib/libqrpc.so
RUNTIME_INC := -Iruntime/include

runtime: $(LIBQRPC_A) $(LIBQRPC_SO)

$(BUILD)/obj/runtime/%.o: runtime/%.c | $(IDL_GENDIR)/master.stamp
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -fPIC $(RUNTIME_DEFS) $(RUNTIME_INC) -Iruntime/src -I$(IDL_GENDIR) \
	    -c -o $@ $<

# A stamp per value of a build option (option-NAME-VALUE.stamp), so that the
# objects that depend on the option are built again when it changes:
# bind_zk.o (and tests.mk's ZooKeeper tests) on QRPC_ZOOKEEPER, verbs_ibv.o
# and rdma.o on QRPC_VERBS.
$(BUILD)/gen/option-%.stamp:
	@mkdir -p $(dir $@)
	rm -f $(BUILD)/gen/option-$(firstword $(subst -, ,$*))-*.stamp
	touch $@
ZK_STAMP    := $(BUILD)/gen/option-zookeeper-$(QRPC_ZOOKEEPER).stamp
VERBS_STAMP := $(BUILD)/gen/option-verbs-$(QRPC_VERBS).stamp
$(BUILD)/obj/runtime/src/bind_zk.o: $(ZK_STAMP)
$(BUILD)/obj/runtime/src/verbs_ibv.o $(BUILD)/obj/runtime/src/rdma.o: $(VERBS_STAMP)

$(LIBQRPC_A): $(RUNTIME_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

$(LIBQRPC_SO): $(RUNTIME_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS_ALL) -Wl,-soname,libqrpc.so.0 -o $@ $^ $(RUNTIME_LIBS)
	ln -sf libqrpc.so $(BUILD)/lib/libqrpc.so.0

# ---- programs: qrpc-master(8) and qrpc(1) -----------------------------------

include runtime/tools/tools.mk

# ---- tests, examples, bench, fuzz ------------------------------------------

include tests/tests.mk
-include tests/bench/bench.mk
-include tests/fuzz/fuzz.mk
-include examples/examples.mk

# ---- install ----------------------------------------------------------------

MAN_PAGES := $(wildcard man/*.[1-8])

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib \
	    $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(QRPCGEN) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 runtime/include/*.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(LIBQRPC_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIBQRPC_SO) $(DESTDIR)$(PREFIX)/lib/libqrpc.so.$(VERSION)
	ln -sf libqrpc.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libqrpc.so.0
	ln -sf libqrpc.so.0 $(DESTDIR)$(PREFIX)/lib/libqrpc.so
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|@LIBS@|$(RUNTIME_LIBS)|g' runtime/qrpc.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/qrpc.pc
	for m in $(MAN_PAGES); do \
	    s=$${m##*.}; install -d $(DESTDIR)$(PREFIX)/share/man/man$$s; \
	    install -m 644 $$m $(DESTDIR)$(PREFIX)/share/man/man$$s/; done

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/qrpcgen $(DESTDIR)$(PREFIX)/lib/libqrpc.* \
	    $(DESTDIR)$(PREFIX)/lib/pkgconfig/qrpc.pc
	for h in runtime/include/*.h; do rm -f $(DESTDIR)$(PREFIX)/include/$${h##*/}; done
	for m in $(MAN_PAGES); do s=$${m##*.}; \
	    rm -f $(DESTDIR)$(PREFIX)/share/man/man$$s/$${m##*/}; done

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
