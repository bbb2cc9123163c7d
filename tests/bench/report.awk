# report.awk - turns results.jsonl (one flat JSON object per line, as
# bench_util.c writes them) into report.md, a Markdown report with the
# ratios against the targets.  Reads only what bench_util.c writes: flat
# objects whose strings hold no quotes or commas; it is no JSON parser.
# Variables: date, host, rev, pinned, big, and, when the network driver
# was bench_net_peers, grpc_version and tirpc_version (set by run.sh).  The
# network workloads' section (bench_net.c) follows the compile one; it has
# a column per system that ran (qrpc and bare; with make bench-peers also
# rpcgen and grpc) and each one's ratio to bare.

function jget(line, key,    s, k) {
    k = "\"" key "\":"
    s = index(line, k)
    if (s == 0)
        return ""
    s = substr(line, s + length(k))
    if (substr(s, 1, 1) == "\"") {
        s = substr(s, 2)
        return substr(s, 1, index(s, "\"") - 1)
    }
    match(s, /^[^,}]*/)
    return substr(s, 1, RLENGTH)
}

# 1234567.8 -> "1,234,568"
function grouped(x,    s, out) {
    s = sprintf("%.0f", x)
    out = ""
    while (length(s) > 3) {
        out = "," substr(s, length(s) - 2) out
        s = substr(s, 1, length(s) - 3)
    }
    return s out
}

# Two decimals, or three significant digits below 0.1 (0.00350x, not 0.00x).
function ratio(x) { return x > 0 && x < 0.1 ? sprintf("%.3gx", x) : sprintf("%.2fx", x) }

# A figure of any size, to three or so significant digits.
function num(x) {
    if (x >= 10000)
        return grouped(x)
    if (x >= 100)
        return sprintf("%.0f", x)
    if (x >= 10)
        return sprintf("%.1f", x)
    if (x >= 1)
        return sprintf("%.2f", x)
    return sprintf("%.3f", x)
}

# "median [min, max]" of one key, or "-".
function spread(k) {
    if (!(k in seen))
        return "-"
    return num(val[k]) " [" num(lo[k]) ", " num(hi[k]) "]"
}

function rspread(k) {
    if (!(k in seen))
        return "-"
    return ratio(val[k]) " [" ratio(lo[k]) ", " ratio(hi[k]) "]"
}

# The worst steal and CPU share of the figures of keys, a list joined by "|".
function disturbance_of(keys,    ks, n, i, k, st, sh) {
    st = -1
    sh = 101
    n = split(keys, ks, "|")
    for (i = 1; i <= n; i++) {
        k = ks[i]
        if (!(k in seen))
            continue
        if (steal[k] > st)
            st = steal[k]
        if (share[k] != "null" && share[k] + 0 < sh)
            sh = share[k] + 0
    }
    return (st < 0 ? "-" : sprintf("%.1f", st)) " | " (sh > 100 ? "-" : sprintf("%.0f", sh))
}

# The same for the figures of keys a and b.
function disturbance(a, b) {
    return disturbance_of(a "|" b)
}

function net_fact(m,    k) {
    k = "bench" SUBSEP "net-config" SUBSEP m
    return (k in seen) ? val[k] : ""
}

# A system's figure in a throughput row: "n/a" when the system ran but
# cannot do this workload (rpcgen's pipelined: bench_net wrote nothing).
function net_cell(sys, wl, metric,    k) {
    k = sys SUBSEP wl SUBSEP metric
    if (!(k in seen) && net_sys[sys])
        return "n/a"
    return spread(k)
}

# One throughput row: every system, then each one's ratio to bare; goal > 0
# checks qrpc's median.
function net_tput(wl, metric, label, target, goal,    i, k, any, keys, cells, rcells, verdict) {
    any = 0
    keys = ""
    cells = ""
    rcells = ""
    for (i = 1; i <= net_nsys; i++) {
        k = net_order[i] SUBSEP wl SUBSEP metric
        if (k in seen)
            any = 1
        keys = keys "|" k
        cells = cells " | " net_cell(net_order[i], wl, metric)
    }
    if (!any)
        return
    for (i = 1; i <= net_nsys; i++)
        if (net_order[i] != "bare") {
            k = net_order[i] "/bare" SUBSEP wl SUBSEP "ratio:" metric
            if (net_cell(net_order[i], wl, metric) == "n/a")
                rcells = rcells " | n/a"
            else
                rcells = rcells " | " rspread(k)
        }
    verdict = "-"
    k = "qrpc" SUBSEP wl SUBSEP metric
    if (goal > 0 && (k in seen))
        verdict = val[k] >= goal ? "met" : "**NOT met**"
    printf "| %s | %s%s%s | %s | %s | %s |\n", label, metric, cells, rcells, target, verdict,
        disturbance_of(substr(keys, 2))
}

# One row of the dedup section: at-most-once, idempotent, their ratio, and
# the verdict of the ratio's median against goal (at least goal for a
# rate, at most goal for a latency).
function net_dedup_row(label, m, target, goal, rate,    p, r, verdict) {
    p = "qrpc" SUBSEP "net-dedup" SUBSEP m
    r = p "_at-most-once/idempotent"
    if (!(r in seen))
        return
    verdict = (rate ? val[r] >= goal : val[r] <= goal) ? "met" : "**NOT met**"
    printf "| %s | %s | %s | %s | %s | %s | %s |\n", label, spread(p "_at-most-once"),
        spread(p "_idempotent"), rspread(r), target, verdict,
        disturbance(p "_at-most-once", p "_idempotent")
}

# Workload 6, qrpc only: add through the server's reply cache against
# add_idem without it.
function net_dedup_report(    k) {
    k = "qrpc" SUBSEP "net-dedup" SUBSEP "calls/s_at-most-once/idempotent"
    print ""
    print "#### dedup cost: at-most-once `add` against its idempotent twin `add_idem` (qrpc only)"
    print ""
    if (!(k in seen)) {
        print "Not measured in this run (BENCH_NET_ONLY or BENCH_NET_SYSTEMS left it out)."
        return
    }
    print "| call | at-most-once (`add`) | idempotent (`add_idem`) | at-most-once / idempotent | target | | steal % | CPU share % |"
    print "|---|---:|---:|---:|---|---|---:|---:|"
    net_dedup_row(sprintf("pipelined: %d in flight (calls/s)", net_fact("window")), "calls/s",
        ">= 0.90x", 0.90, 1)
    net_dedup_row(sprintf("latency: one in flight, %s calls (p50, us)",
        grouped(net_fact("dedup_calls"))), "p50", "<= 1.10x", 1.10, 0)
    print ""
    print "`add` is at-most-once (the default): the server runs every call through"
    print "its reply cache, keyed by client and sequence number, and keeps the reply"
    print "until the client acknowledges it.  `add_idem` is the same call, the same"
    print "argument and result bytes, declared `idempotent`: no cache.  In each round"
    print "the pipelined rate (as measured above) and the latency p50 are measured with"
    print "each method, back to back, the method that goes first alternating from"
    print "round to round; the ratio is taken within the round.  bare, rpcgen and grpc"
    print "have no such notion (no reply cache, no idempotent methods) and do not run"
    print "this workload."
    print ""
    printf "Target: at-most-once within 10%% of idempotent (RIFL: +4%%) -- %s "\
        "(medians: rate %s, p50 %s).\n",
        dedup_met() ? "met" : "**NOT met**", ratio(val[k]),
        ratio(val["qrpc" SUBSEP "net-dedup" SUBSEP "p50_at-most-once/idempotent"])
}

# Both dedup ratios within 10%.
function dedup_met(    p) {
    p = "qrpc" SUBSEP "net-dedup" SUBSEP
    return val[p "calls/s_at-most-once/idempotent"] >= 0.90 &&
        val[p "p50_at-most-once/idempotent"] <= 1.10
}

function net_lat_row(sys, wl,    k) {
    k = sys SUBSEP wl SUBSEP "p50"
    if (!(k in seen))
        return
    printf "| %s | %s | %s | %s | %s | %d | %s |\n", sys, spread(k),
        spread(sys SUBSEP wl SUBSEP "p99"), spread(sys SUBSEP wl SUBSEP "p99.9"),
        grouped(iters[k]), runs[k], disturbance(k, k)
}

function net_mixed_row(sys,    p) {
    p = sys SUBSEP "net-mixed" SUBSEP
    if (!((p "p99_idle") in seen))
        return
    printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", sys, spread(p "p50_idle"),
        spread(p "p99_idle"), spread(p "p50_busy"), spread(p "p99_busy"),
        rspread(p "p99_busy/idle"), spread(p "bulk_GiB/s"),
        disturbance(p "p99_busy", p "p99_busy")
}

# The systems of the network workloads that have figures, in column order.
function net_systems(    all, n, i) {
    n = split("qrpc bare rpcgen grpc qrpc-rdma-emu qrpc-rdma", all, " ")
    net_nsys = 0
    for (i = 1; i <= n; i++)
        if (net_sys[all[i]])
            net_order[++net_nsys] = all[i]
    net_peers = net_sys["rpcgen"] || net_sys["grpc"]
}

function net_report(    i, k, q, d, verdict, head, rule, lane) {
    net_systems()
    if (!net_nsys && !(("direct" SUBSEP "net-local" SUBSEP "ns/call") in seen))
        return
    print ""
    if (net_peers)
        print "### network: qrpc over TCP against bare sockets, ONC RPC (rpcgen) and gRPC"
    else
        print "### network: qrpc over TCP against bare sockets"
    print ""
    printf "127.0.0.1 only.  Server processes pinned to CPU %s, the client to CPU %s.  ",
        net_fact("server_cpu"), net_fact("client_cpu")
    print "qrpc: the stubs of tests/bench/netbench.qidl over libqrpc's TCP transport,"
    print "server node with the default workers, one client node whose calls share"
    print "one connection (max_message raised to 128 MiB on both: the default 64 MiB"
    print "refuses a 64 MiB `bytes` argument, whose encoding is 4 bytes longer).  bare:"
    print "blocking sockets with TCP_NODELAY carrying only the payload (8-byte add"
    print "request, 4-byte reply; bulk messages acknowledged by 4 bytes), one server"
    print "thread per connection: the physical limit.  Every figure is the median"
    print "[min, max] over the runs; ratios are each system's figure over bare's,"
    print "taken within each round; steal and CPU share are the worst of the figures"
    print "in the row, measured on both pinned CPUs (CPU share: the part of those"
    print "CPUs' busy time that the client and server processes got)."
    if (net_sys["qrpc-rdma-emu"]) {
        print ""
        print "qrpc-rdma-emu: the same stubs over qrpc's RDMA transport on the SOFTWARE"
        print "EMULATION of the verbs layer (runtime/src/verbs_emu.c, which carries each"
        print "queue pair over a loopback TCP socket with a thread per queue pair): for"
        print "tracking the RDMA transport's own costs from run to run, not a measure of"
        print "RDMA.  qrpc-rdma, over real verbs, runs only where an RDMA device exists."
    }
    print ""
    if (net_peers) {
        print "The peers ran in the same rounds, each round's order of the systems"
        print "rotating.  rpcgen: ONC RPC as `rpcgen -M` generates it from"
        printf "tests/bench/onc_netbench.x, over libtirpc%s's TCP transport without\n",
            (tirpc_version != "" ? " " tirpc_version : "")
        print "rpcbind (the client is handed the port); record buffers of 256 KiB, the"
        print "most libtirpc allows (longer messages go as several record fragments);"
        print "one server thread serving every connection, as libtirpc's svc loop does;"
        print "one CLIENT, hence one connection, per calling thread.  grpc: gRPC C++"
        printf "%swith the code protoc generates from tests/bench/netbench.proto, a\n",
            (grpc_version != "" ? grpc_version " " : "")
        print "callback-API server and one client channel (one HTTP/2 connection) that"
        print "every calling thread shares; message limits raised to 128 MiB on both"
        print "sides; add's fields are fixed32, so its payload is that of the others."
        print ""
    }
    printf "#### latency: one caller, one add in flight, %s calls per run (us)\n",
        grouped(net_fact("latency_calls"))
    print ""
    print "| system | p50 | p99 | p99.9 | calls/run | runs | steal % | CPU share % |"
    print "|---|---:|---:|---:|---:|---:|---:|---:|"
    for (i = 1; i <= net_nsys; i++)
        net_lat_row(net_order[i], "net-latency")
    for (i = 1; i <= net_nsys; i++) {
        k = net_order[i] "/bare" SUBSEP "net-latency" SUBSEP
        if ((k "ratio:p50") in seen)
            printf "| %s/bare | %s | %s | %s | | | | |\n", net_order[i],
                rspread(k "ratio:p50"), rspread(k "ratio:p99"), rspread(k "ratio:p99.9")
    }
    spin = net_fact("qrpc_spin_us")
    if (spin != "") {
        print ""
        if (spin < 0)
            print "qrpc's client slept for each reply at once, as bare does in recv() (spin_us -1, BENCH_QRPC_SPIN_US)."
        else
            printf "qrpc's client read its connection for up to %d us before sleeping (spin_us, BENCH_QRPC_SPIN_US; bare sleeps in recv() at once, as qrpc does with -1).\n", spin == 0 ? 50 : spin
    }
    print ""
    print "#### throughput"
    print ""
    head = "| workload | unit"
    rule = "|---|---"
    for (i = 1; i <= net_nsys; i++) {
        head = head " | " net_order[i]
        rule = rule "|---:"
    }
    for (i = 1; i <= net_nsys; i++)
        if (net_order[i] != "bare") {
            head = head " | " net_order[i] "/bare"
            rule = rule "|---:"
        }
    print head " | target | | steal % | CPU share % |"
    print rule "|---|---|---:|---:|"
    net_tput("net-threads", "calls/s", sprintf("threads: %d callers, one sync add each",
        net_fact("threads")), "", 0)
    net_tput("net-pipelined", "calls/s", sprintf("pipelined: %d adds in flight, one connection",
        net_fact("window")), ">= 2,000,000 calls/s", 2000000)
    net_tput("net-bulk-1MiB", "GiB/s", "bulk: 1 MiB argument, one in flight", "", 0)
    net_tput("net-bulk-64MiB", "GiB/s", "bulk: 64 MiB argument, one in flight", "", 0)
    print ""
    print "threads: qrpc's callers share one client and connection; bare has one"
    print "connection per thread.  pipelined: qrpc's async stubs, an issuing thread"
    print "that refills the window when half of it has completed, completions on the"
    print "client node's loop threads; bare: a writer thread sending every request the"
    print "window allows in one write and a reader thread.  Payload GiB/s counts the"
    print "argument bytes only."
    if (net_sys["rpcgen"]) {
        print ""
        print "rpcgen cannot pipeline (n/a above): `clnt_call` sends one call and"
        print "waits for its reply, and a CLIENT may not be used by two threads at"
        print "once, so one connection never has more than one call in flight; its"
        print "threads figure uses a connection per thread instead."
    }
    if (net_sys["grpc"]) {
        print ""
        print "grpc's pipelined: the async stub on a CompletionQueue driven by the"
        print "measuring thread, which starts a new call for each one that completes,"
        print "so that the window stays full; its threads share one channel."
    }
    net_dedup_report()
    print ""
    printf "#### mixed: add latency alone and while another thread streams 64 MiB calls (us, %s s under transfer)\n",
        net_fact("mixed_seconds")
    print ""
    print "| system | p50 idle | p99 idle | p50 under transfer | p99 under transfer | p99 under transfer / idle | transfer GiB/s | steal % | CPU share % |"
    print "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    net_mixed_row("qrpc")
    net_mixed_row("bare")
    net_mixed_row("qrpc-rdma-emu")
    net_mixed_row("qrpc-rdma")
    if (net_peers) {
        print ""
        print "The peers do not run this workload."
    }
    q = "qrpc" SUBSEP "net-mixed" SUBSEP "p99_busy/idle"
    if (q in seen) {
        print ""
        lane = net_fact("qrpc_bulk_lane")
        printf "qrpc streams on the same client (FrontEnd) as the small calls, "
        if (lane == "")
            printf "and on the same connection (a run from before the bulk lane); "
        else if (lane < 0)
            printf "and on the same connection (bulk_lane -1, BENCH_QRPC_BULK_LANE); "
        else
            printf "the stream on its bulk lane, a second connection (bulk_lane %s, BENCH_QRPC_BULK_LANE); ", lane == 0 ? "default" : lane
        printf "bare on a second connection.  %d idle calls per run.  ", net_fact("mixed_calls")
        if (net_fact("qrpc_rcvbuf") > 0)
            printf "qrpc's nodes had tcp_rcvbuf %d (BENCH_QRPC_RCVBUF).  ", net_fact("qrpc_rcvbuf")
        else
            printf "qrpc's nodes left their receive buffers to the kernel (tcp_rcvbuf 0).  "
        printf "Target: p99 under transfer at most 3x p99 idle -- %s (median %s).\n",
            val[q] <= 3 ? "met" : "**NOT met**", ratio(val[q])
    }
    print ""
    print "#### in-process: add on the caller's own node (target \"local\")"
    print ""
    print "| system | ns/call | calls (median run) | runs | steal % | CPU share % |"
    print "|---|---:|---:|---:|---:|---:|"
    q = "qrpc" SUBSEP "net-local" SUBSEP "ns/call"
    d = "direct" SUBSEP "net-local" SUBSEP "ns/call"
    if (q in seen)
        printf "| qrpc local | %s | %s | %d | %s |\n", spread(q), grouped(iters[q]), runs[q],
            disturbance(q, q)
    if (d in seen)
        printf "| direct call through a pointer | %s | %s | %d | %s |\n", spread(d),
            grouped(iters[d]), runs[d], disturbance(d, d)
    if (q in seen) {
        verdict = val[q] < 500 ? "met" : "**NOT met**"
        print ""
        printf "Target: under 500 ns per call -- %s (median %s ns).\n", verdict, num(val[q])
    }
}

function pct(s) { return s == "null" || s == "" ? "-" : sprintf("%.0f", s) }

{
    key = jget($0, "system") SUBSEP jget($0, "workload") SUBSEP jget($0, "metric")
    val[key] = jget($0, "value") + 0
    lo[key] = jget($0, "min") + 0
    hi[key] = jget($0, "max") + 0
    runs[key] = jget($0, "runs") + 0
    steal[key] = jget($0, "steal_pct") + 0
    share[key] = jget($0, "cpu_share_pct")
    if (share[key] != "null" && share[key] + 0 < 90)
        disturbed++
    iters[key] = jget($0, "iterations") + 0
    seen[key] = 1
    if (jget($0, "workload") ~ /^net-/ && jget($0, "workload") != "net-config")
        net_sys[jget($0, "system")] = 1
    m = jget($0, "metric")
    if (jget($0, "workload") == "compile" && m ~ /^lines:/ && m != "lines:total")
        outputs[++n_outputs] = m
}

function codec_row(sys, wl, label,    k, b) {
    k = sys SUBSEP wl SUBSEP "encode+decode"
    if (!(k in seen))
        return
    b = sys SUBSEP wl SUBSEP "bytes_per_op"
    printf "| %s | %s | %s | %s | %s | %d | %s | %d | %.1f | %s |\n", label,
        sys, grouped(val[k]), grouped(lo[k]), grouped(hi[k]), val[b],
        grouped(iters[k]), runs[k], steal[k], pct(share[k])
}

function ratio_row(sys, wl, label, target, goal,    k, verdict) {
    k = sys SUBSEP wl SUBSEP "ratio"
    if (!(k in seen))
        return
    verdict = "-"
    if (goal > 0)
        verdict = val[k] >= goal ? "met" : "**NOT met**"
    printf "| %s | %s | %s | %s | %s | %s |\n", label, ratio(val[k]),
        ratio(lo[k]), ratio(hi[k]), target, verdict
}

END {
    print "## Benchmark report"
    print ""
    printf "Run of %s on %s; commit %s; pinned: %s.  ", date, host, rev, pinned
    print "Every figure below comes from this one run: the median of the runs"
    print "(min and max beside it), systems interleaved round by round; steal is"
    print "the highest share of CPU time the hypervisor stole during any kept run,"
    print "CPU share the lowest share of its wall time a kept run got as CPU time"
    print "(less means other processes of this machine ran on its CPU)."
    print ""
    if (disturbed)
        printf "**Warning: %d figure(s) come from runs that got under 90%% of their CPU "\
            "even after retries: the machine was busy; treat them with care.**\n\n", disturbed
    print "### codec: encode + decode, one thread"
    print ""
    print "| struct | system | ops/s (median) | min | max | bytes/op | iterations | runs | steal % | CPU share % |"
    print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    codec_row("qrpc", "codec-rec", "Rec")
    codec_row("xdr", "codec-rec", "Rec")
    codec_row("memcpy", "codec-rec", "Rec")
    codec_row("qrpc", "codec-mixed", "Mixed")
    print ""
    print "Rec is `{ i32 a; i64 b; string<32> s; bytes<256> blob; i32 v[16]; }`"
    print "with all 32 + 256 bytes filled; Mixed has ints, a 16-byte string,"
    print "64 bytes, a list of 16 i32 and a present optional struct.  One op:"
    print "encode into a reused buffer, decode into a fresh value, read fields,"
    print "free.  xdr is rpcgen's `xdr_Rec` over libtirpc's xdrmem; memcpy copies"
    print "the encoded bytes out and back (two `memcpy` calls), the ceiling."
    print ""
    print "| ratio (per round, same run) | median | min | max | target | |"
    print "|---|---:|---:|---:|---|---|"
    ratio_row("qrpc/xdr", "codec-rec", "qrpc / XDR, Rec", ">= 2x", 2)
    ratio_row("qrpc/memcpy", "codec-rec", "qrpc / memcpy, Rec", "(ceiling)", 0)
    print ""
    printf "### compile: qrpcgen on %s\n", (big != "" ? big : "the generated file")
    print ""
    print "| metric | median | min | max | runs | steal % | CPU share % |"
    print "|---|---:|---:|---:|---:|---:|---:|"
    split("wall cpu peak_rss", ms, " ")
    split("ms ms KB", us, " ")
    for (i = 1; i <= 3; i++) {
        k = "qrpcgen" SUBSEP "compile" SUBSEP ms[i]
        if (k in seen)
            printf "| %s (%s) | %s | %s | %s | %d | %.1f | %s |\n", ms[i], us[i],
                grouped(val[k]), grouped(lo[k]), grouped(hi[k]), runs[k], steal[k],
                pct(share[k])
    }
    k = "qrpcgen" SUBSEP "compile" SUBSEP "wall"
    if (k in seen) {
        print ""
        if (val[k] < 500)
            verdict = "met"
        else if (val[k] < 1000)
            verdict = "under a second, but not well under"
        else
            verdict = "**NOT met**"
        printf "Target: well under a second of wall time -- %s (median %s ms).\n",
            verdict, grouped(val[k])
    }
    print ""
    print "| file | lines |"
    print "|---|---:|"
    k = "qrpcgen" SUBSEP "compile" SUBSEP "input_lines"
    if (k in seen)
        printf "| input .qidl | %s |\n", grouped(val[k])
    for (i = 1; i <= n_outputs; i++) {
        k = "qrpcgen" SUBSEP "compile" SUBSEP outputs[i]
        printf "| %s | %s |\n", substr(outputs[i], 7), grouped(val[k])
    }
    k = "qrpcgen" SUBSEP "compile" SUBSEP "lines:total"
    if (k in seen)
        printf "| generated, total | %s |\n", grouped(val[k])
    net_report()
}
