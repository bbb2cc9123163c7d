# tests/bench/bench.mk - `make bench` (and the `bench-peers` placeholder),
# included by the top-level Makefile.
#
# make bench builds the benchmark programs into $(BUILD)/bench/, runs them
# through tests/bench/run.sh and writes $(BUILD)/bench/results.jsonl (one
# JSON object per figure) and $(BUILD)/bench/report.md, which it prints.
# Workloads: codec (qrpc vs rpcgen's XDR vs memcpy, bench_codec.c),
# compile (qrpcgen on a generated 1000-struct, 1000-method file,
# bench_compile.c) and the network workloads (qrpc over TCP vs bare sockets
# carrying the same payload, bench_net.c: latency, threads, pipelined,
# bulk 1 MiB and 64 MiB, mixed, in-process).  BENCH_RUNS (default 5, at
# least 3) and BENCH_SECONDS (per codec measurement, default 0.5) trade time
# for precision; for the network workloads BENCH_NET_SECONDS (per throughput
# measurement, default 0.5), BENCH_NET_CALLS (latency calls per run, default
# 20000), BENCH_NET_MIXED_CALLS (default 2000) and BENCH_NET_MIXED_SECONDS
# (default 2) do, and BENCH_NET_SERVER_CPU (default 1) picks the servers'
# CPU.  The ONC RPC and gRPC peers are not here yet.

BENCH_DIR     := $(BUILD)/bench
BENCH_GEN     := $(BENCH_DIR)/gen
BENCH_OBJ     := $(BUILD)/obj/bench
BENCH_RUNS    ?= 5
BENCH_SECONDS ?= 0.5
BENCH_TIRPC_CFLAGS := -isystem /usr/include/tirpc
BENCH_TIRPC_LIBS   := -ltirpc

BENCH_NET_SECONDS       ?= 0.5
BENCH_NET_CALLS         ?= 20000
BENCH_NET_MIXED_CALLS   ?= 2000
BENCH_NET_MIXED_SECONDS ?= 2
BENCH_NET_SERVER_CPU    ?= 1

BENCH_CODEC_OBJ := $(addprefix $(BENCH_OBJ)/,bench_codec.o codec_qrpc.o \
                   codec_xdr.o codec_memcpy.o bench_util.o bench_types.o rec_xdr.o)
BENCH_NET_OBJ   := $(addprefix $(BENCH_OBJ)/,bench_net.o net_qrpc.o net_bare.o \
                   bench_util.o netbench_types.o netbench_client.o netbench_server.o)

# qrpc's side of the codec workload: the generated code for bench.qidl, under
# the flags generated code promises to compile with.
$(BENCH_GEN)/bench.stamp: tests/bench/bench.qidl $(QRPCGEN)
	@mkdir -p $(BENCH_GEN)
	$(QRPCGEN) -o $(BENCH_GEN) --header --types $<
	@touch $@

$(BENCH_GEN)/bench.h $(BENCH_GEN)/bench_types.c: $(BENCH_GEN)/bench.stamp ;

# XDR's side: rpcgen names the header it includes after its input's path,
# so it runs on a copy of rec.x in the generated directory.  It refuses to
# overwrite its outputs, hence the rm.
$(BENCH_GEN)/rec.stamp: tests/bench/rec.x
	@mkdir -p $(BENCH_GEN)
	cp $< $(BENCH_GEN)/rec.x
	cd $(BENCH_GEN) && rm -f rec.h rec_xdr.c && rpcgen -h -o rec.h rec.x && \
	    rpcgen -c -o rec_xdr.c rec.x
	@touch $@

$(BENCH_GEN)/rec.h $(BENCH_GEN)/rec_xdr.c: $(BENCH_GEN)/rec.stamp ;

# The network workloads' service: types, client stubs and dispatchers.
$(BENCH_GEN)/netbench.stamp: tests/bench/netbench.qidl $(QRPCGEN)
	@mkdir -p $(BENCH_GEN)
	$(QRPCGEN) -o $(BENCH_GEN) $<
	@touch $@

$(BENCH_GEN)/netbench.h $(BENCH_GEN)/netbench_types.c $(BENCH_GEN)/netbench_client.c \
$(BENCH_GEN)/netbench_server.c: $(BENCH_GEN)/netbench.stamp ;

$(BENCH_OBJ)/netbench_%.o: $(BENCH_GEN)/netbench_%.c $(BENCH_GEN)/netbench.stamp
	@mkdir -p $(dir $@)
	$(CC) $(GENERATED_STRICT) $(OPT) $(SANFLAGS) $(RUNTIME_INC) -I$(BENCH_GEN) -c -o $@ $<

$(BENCH_OBJ)/bench_net.o $(BENCH_OBJ)/net_qrpc.o $(BENCH_OBJ)/net_bare.o: \
    $(BENCH_GEN)/netbench.stamp

$(BENCH_OBJ)/bench_types.o: $(BENCH_GEN)/bench_types.c $(BENCH_GEN)/bench.stamp
	@mkdir -p $(dir $@)
	$(CC) $(GENERATED_STRICT) $(OPT) $(SANFLAGS) $(RUNTIME_INC) -I$(BENCH_GEN) -c -o $@ $<

$(BENCH_OBJ)/rec_xdr.o: $(BENCH_GEN)/rec_xdr.c $(BENCH_GEN)/rec.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(OPT) -Wall -Wextra -Werror $(SANFLAGS) $(BENCH_TIRPC_CFLAGS) -I$(BENCH_GEN) -c -o $@ $<

$(BENCH_OBJ)/%.o: tests/bench/%.c $(BENCH_GEN)/bench.stamp $(BENCH_GEN)/rec.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(RUNTIME_INC) $(BENCH_TIRPC_CFLAGS) -I$(BENCH_GEN) -Itests/bench -c -o $@ $<

$(BENCH_DIR)/bench_codec: $(BENCH_CODEC_OBJ) $(LIBQRPC_A)
	$(CC) $(LDFLAGS_ALL) -o $@ $(BENCH_CODEC_OBJ) $(LIBQRPC_A) $(BENCH_TIRPC_LIBS) $(RUNTIME_LIBS)

$(BENCH_DIR)/bench_net: $(BENCH_NET_OBJ) $(LIBQRPC_A)
	$(CC) $(LDFLAGS_ALL) -o $@ $(BENCH_NET_OBJ) $(LIBQRPC_A) $(RUNTIME_LIBS)

$(BENCH_DIR)/bench_compile: $(BENCH_OBJ)/bench_compile.o $(BENCH_OBJ)/bench_util.o
	$(CC) $(LDFLAGS_ALL) -o $@ $^

# The compile workload's input, the same bytes on every run.
$(BENCH_DIR)/compile/big.qidl: tests/bench/gen_qidl.awk
	@mkdir -p $(dir $@)
	awk -v STRUCTS=1000 -v METHODS=1000 -f $< > $@.tmp && mv $@.tmp $@

bench: deps $(QRPCGEN) $(BENCH_DIR)/bench_codec $(BENCH_DIR)/bench_compile \
       $(BENCH_DIR)/bench_net $(BENCH_DIR)/compile/big.qidl
	BENCH_RUNS=$(BENCH_RUNS) BENCH_SECONDS=$(BENCH_SECONDS) \
	BENCH_NET_SECONDS=$(BENCH_NET_SECONDS) BENCH_NET_CALLS=$(BENCH_NET_CALLS) \
	BENCH_NET_MIXED_CALLS=$(BENCH_NET_MIXED_CALLS) \
	BENCH_NET_MIXED_SECONDS=$(BENCH_NET_MIXED_SECONDS) \
	BENCH_NET_SERVER_CPU=$(BENCH_NET_SERVER_CPU) \
	    tests/bench/run.sh $(BENCH_DIR) $(QRPCGEN)

# A placeholder: no network peers exist yet.
bench-peers:
	@echo "bench-peers: nothing to build yet: the ONC RPC (rpcgen) and gRPC"
	@echo "bench-peers: network peers arrive with the runtime benchmarks."
	@echo "bench-peers: the rpcgen XDR codec comparison is part of 'make bench'."
