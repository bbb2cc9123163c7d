# report.awk - turns results.jsonl (one flat JSON object per line, as
# bench_util.c writes them) into report.md, a Markdown report with the
# ratios against the targets.  Reads only what bench_util.c writes: flat
# objects whose strings hold no quotes or commas; it is no JSON parser.
# Variables: date, host, rev, pinned, big (set by run.sh).

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

function ratio(x) { return sprintf("%.2fx", x) }

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
}
