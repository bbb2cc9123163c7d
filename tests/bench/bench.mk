# tests/bench/bench.mk - `make bench` and `make bench-peers`, included by the
# top-level Makefile.
#
# make bench builds the benchmark programs into $(BUILD)/bench/, runs them
# through tests/bench/run.sh and writes $(BUILD)/bench/results.jsonl (one
# JSON object per figure) and $(BUILD)/bench/report.md, which it prints.
# Workloads: codec (qrpc vs rpcgen's XDR vs memcpy, bench_codec.c),
# compile (qrpcgen on a generated 1000-struct, 1000-method file,
# bench_compile.c) and the network workloads (qrpc over TCP vs bare sockets
# carrying the same payload, bench_net.c: latency, threads, pipelined,
# dedup (qrpc's at-most-once add against its idempotent twin), bulk 1 MiB
# and 64 MiB, mixed, in-process).  BENCH_RUNS (default 5, at
# least 3) and BENCH_SECONDS (per codec measurement, default 0.5) trade time
# for precision; for the network workloads BENCH_NET_SECONDS (per throughput
# measurement, default 0.5), BENCH_NET_CALLS (latency calls per run, default
# 20000), BENCH_NET_MIXED_CALLS (default 2000) and BENCH_NET_MIXED_SECONDS
# (default 2) do, and BENCH_NET_SERVER_CPU (default 1) picks the servers'
# CPU.
#
# make bench-peers installs what the peers need (tools/deps.sh --peers:
# gRPC C++, protoc and grpc_cpp_plugin; rpcgen and libtirpc are in the
# base set), then runs the whole of make bench with bench_net_peers in
# place of bench_net: the same driver linked with two more systems of the
# network workloads, rpcgen (ONC RPC over libtirpc's TCP transport,
# net_rpcgen.c and onc_netbench.x) and grpc (gRPC C++, net_grpc.cc and
# netbench.proto), measured in the same rounds as qrpc and bare, into the
# same results.jsonl and report.  Plain make bench needs none of them.

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

# The network driver make bench runs: bench_net, or bench_net_peers (make
# bench-peers sets it).
BENCH_NET_PROG ?= bench_net

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
       $(BENCH_DIR)/$(BENCH_NET_PROG) $(BENCH_DIR)/compile/big.qidl
	BENCH_RUNS=$(BENCH_RUNS) BENCH_SECONDS=$(BENCH_SECONDS) \
	BENCH_NET_SECONDS=$(BENCH_NET_SECONDS) BENCH_NET_CALLS=$(BENCH_NET_CALLS) \
	BENCH_NET_MIXED_CALLS=$(BENCH_NET_MIXED_CALLS) \
	BENCH_NET_MIXED_SECONDS=$(BENCH_NET_MIXED_SECONDS) \
	BENCH_NET_SERVER_CPU=$(BENCH_NET_SERVER_CPU) \
	    tests/bench/run.sh $(BENCH_DIR) $(QRPCGEN) $(BENCH_NET_PROG)

# ---- make bench-peers: the rpcgen and gRPC peers of the network workloads ----

# The packages first, in a make of their own, so that pkg-config, protoc
# and grpc_cpp_plugin exist before anything asks them; then make bench with
# the peers' driver.
bench-peers: deps
	@tools/deps.sh --peers
	$(MAKE) bench BENCH_NET_PROG=bench_net_peers

BENCH_NET_PEERS_OBJ := $(addprefix $(BENCH_OBJ)/,bench_net_peers.o net_qrpc.o net_bare.o \
                       net_rpcgen.o net_grpc.o bench_util.o netbench_types.o \
                       netbench_client.o netbench_server.o onc_netbench_xdr.o \
                       onc_netbench_clnt.o onc_netbench_svc.o netbench.pb.o \
                       netbench.grpc.pb.o)

# Recursive on purpose: pkg-config is asked only when a peer is built.
BENCH_GRPC_CFLAGS = $(shell pkg-config --cflags grpc++ protobuf)
BENCH_GRPC_LIBS   = $(shell pkg-config --libs grpc++ protobuf)
BENCH_CXXFLAGS    = -std=c++17 $(OPT) -Wall -Wextra -Werror $(SANFLAGS) -MMD -MP $(CXXFLAGS)

# The driver, with NET_PEERS: four systems instead of two.
$(BENCH_OBJ)/bench_net_peers.o: tests/bench/bench_net.c $(BENCH_GEN)/netbench.stamp
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -DNET_PEERS $(RUNTIME_INC) -I$(BENCH_GEN) -Itests/bench -c -o $@ $<

# rpcgen -M: thread-safe stubs with result pointers; -m: the dispatcher
# without a main.  As for rec.x, rpcgen runs on a copy in the generated
# directory and refuses to overwrite its outputs.
$(BENCH_GEN)/onc_netbench.stamp: tests/bench/onc_netbench.x
	@mkdir -p $(BENCH_GEN)
	cp $< $(BENCH_GEN)/onc_netbench.x
	cd $(BENCH_GEN) && \
	    rm -f onc_netbench.h onc_netbench_xdr.c onc_netbench_clnt.c onc_netbench_svc.c && \
	    rpcgen -M -h -o onc_netbench.h onc_netbench.x && \
	    rpcgen -M -c -o onc_netbench_xdr.c onc_netbench.x && \
	    rpcgen -M -l -o onc_netbench_clnt.c onc_netbench.x && \
	    rpcgen -M -m -o onc_netbench_svc.c onc_netbench.x
	@touch $@

$(BENCH_GEN)/onc_netbench.h $(BENCH_GEN)/onc_netbench_xdr.c $(BENCH_GEN)/onc_netbench_clnt.c \
$(BENCH_GEN)/onc_netbench_svc.c: $(BENCH_GEN)/onc_netbench.stamp ;

# rpcgen's output declares variables it does not use and casts xdr_void
# to xdrproc_t: those two warnings off, the rest as for rec_xdr.o.
$(BENCH_OBJ)/onc_netbench_%.o: $(BENCH_GEN)/onc_netbench_%.c $(BENCH_GEN)/onc_netbench.stamp
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(OPT) -Wall -Wextra -Werror -Wno-unused-variable \
	    -Wno-cast-function-type $(SANFLAGS) $(BENCH_TIRPC_CFLAGS) -I$(BENCH_GEN) -c -o $@ $<

$(BENCH_OBJ)/net_rpcgen.o: $(BENCH_GEN)/onc_netbench.stamp

$(BENCH_GEN)/netbench-proto.stamp: tests/bench/netbench.proto
	@mkdir -p $(BENCH_GEN)
	protoc -Itests/bench --cpp_out=$(BENCH_GEN) --grpc_out=$(BENCH_GEN) \
	    --plugin=protoc-gen-grpc="$$(command -v grpc_cpp_plugin)" $<
	@touch $@

$(BENCH_GEN)/netbench.pb.h $(BENCH_GEN)/netbench.pb.cc $(BENCH_GEN)/netbench.grpc.pb.h \
$(BENCH_GEN)/netbench.grpc.pb.cc: $(BENCH_GEN)/netbench-proto.stamp ;

$(BENCH_OBJ)/netbench.pb.o $(BENCH_OBJ)/netbench.grpc.pb.o: $(BENCH_OBJ)/%.o: \
    $(BENCH_GEN)/%.cc $(BENCH_GEN)/netbench-proto.stamp
	@mkdir -p $(dir $@)
	$(CXX) $(BENCH_CXXFLAGS) $(BENCH_GRPC_CFLAGS) -I$(BENCH_GEN) -c -o $@ $<

$(BENCH_OBJ)/net_grpc.o: tests/bench/net_grpc.cc $(BENCH_GEN)/netbench-proto.stamp
	@mkdir -p $(dir $@)
	$(CXX) $(BENCH_CXXFLAGS) $(BENCH_GRPC_CFLAGS) -I$(BENCH_GEN) -Itests/bench -c -o $@ $<

# C and C++: g++ links, for libstdc++.
$(BENCH_DIR)/bench_net_peers: $(BENCH_NET_PEERS_OBJ) $(LIBQRPC_A)
	$(CXX) $(LDFLAGS_ALL) -o $@ $(BENCH_NET_PEERS_OBJ) $(LIBQRPC_A) $(BENCH_TIRPC_LIBS) \
	    $(BENCH_GRPC_LIBS) $(RUNTIME_LIBS)
