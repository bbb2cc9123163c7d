/*
 * bench_codec.c - the "codec" workload of make bench: encode+decode
 * operations per second of qrpc's generated code, of rpcgen's XDR for the
 * same struct, and of plain memcpy of the same bytes (codec.h says what one
 * op is for each).
 *
 *   bench_codec RESULTS.jsonl     (appends to it; progress on stdout)
 *
 * Method: every measurement runs for BENCH_SECONDS (default 0.5) of wall
 * time; BENCH_RUNS rounds (default 5, at least 3) measure every system once
 * each, the order rotating from round to round so that no system always
 * runs first or last; the report gives the median and the min and max.  The
 * host's steal time on the watched CPU (the one taskset pinned us to) is
 * read from /proc/stat around each measurement, and one that saw more than
 * BENCH_STEAL_LIMIT_PCT, or whose thread got less than
 * BENCH_CPU_SHARE_MIN_PCT of the wall time as CPU time (another process of
 * this VM shared the CPU), is redone, up to BENCH_STEAL_RETRIES times.  Ratios
 * are taken per round, between measurements of the same round, and then
 * summarised the same way.  It measures one thread; it is not a
 * network or RPC benchmark.
 */
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "codec.h"

/* Ops per clock check: small enough to stop within a millisecond or so. */
#define CODEC_BATCH 64

static const codec_sys *const codec_systems[] = {
    &codec_qrpc_rec, &codec_xdr_rec, &codec_memcpy_rec, &codec_qrpc_mixed,
};
#define CODEC_NSYS ((int)(sizeof codec_systems / sizeof codec_systems[0]))

/* Every checksum ends up here, so no loop's result is ever unused. */
static volatile uint64_t codec_sink;

_Noreturn void codec_fail(const char *system, const char *what, int rc)
{
    fprintf(stderr, "bench: codec %s: %s failed (%d)\n", system, what, rc);
    exit(1);
}

typedef struct codec_meas {
    double ops_per_s;
    double steal;
    double share;               /* CPU time / wall time, in % */
    uint64_t iters;
} codec_meas;

/* Runs sys for `seconds` of wall time. */
static codec_meas codec_measure(const codec_sys *sys, double seconds, int cpu)
{
    bench_cpu c0, c1;
    codec_meas m;
    double t0, t, cpu0;
    uint64_t n = 0;

    bench_cpu_read(&c0, cpu);
    cpu0 = bench_thread_cpu();
    t0 = bench_now();
    do {
        codec_sink += sys->batch(CODEC_BATCH);
        n += CODEC_BATCH;
        t = bench_now();
    } while (t - t0 < seconds);
    m.share = 100.0 * (bench_thread_cpu() - cpu0) / (t - t0);
    bench_cpu_read(&c1, cpu);
    m.ops_per_s = (double)n / (t - t0);
    m.steal = bench_steal_pct(&c0, &c1);
    m.iters = n;
    return m;
}

static void codec_ratio(FILE *out, const char *name, const char *workload,
                        const codec_meas *num, const codec_meas *den, int runs)
{
    double v[BENCH_MAX_RUNS], st[BENCH_MAX_RUNS], sh[BENCH_MAX_RUNS];
    bench_result r;
    int i;

    /* A ratio is as disturbed as the worse of its two measurements. */
    for (i = 0; i < runs; i++) {
        v[i] = num[i].ops_per_s / den[i].ops_per_s;
        st[i] = num[i].steal > den[i].steal ? num[i].steal : den[i].steal;
        sh[i] = num[i].share < den[i].share ? num[i].share : den[i].share;
    }
    r.system = name;
    r.workload = workload;
    r.metric = "ratio";
    r.unit = "x";
    bench_summarise(&r, v, st, sh, NULL, runs);
    bench_write_jsonl(out, &r);
}

int main(int argc, char **argv)
{
    static codec_meas meas[CODEC_NSYS][BENCH_MAX_RUNS];
    size_t bytes[CODEC_NSYS], ref;
    int runs = bench_env_int("BENCH_RUNS", 5, 3, BENCH_MAX_RUNS);
    double seconds = bench_env_double("BENCH_SECONDS", 0.5, 0.05, 60.0);
    int cpu = bench_watched_cpu();
    int run, k, s, retry;
    FILE *out;

    if (argc != 2) {
        fprintf(stderr, "usage: bench_codec RESULTS.jsonl\n");
        return 2;
    }
    out = fopen(argv[1], "a");
    if (!out) {
        perror(argv[1]);
        return 1;
    }
    printf("bench: codec: %d runs of %.2f s per system, steal watched on %s\n",
           runs, seconds, cpu < 0 ? "all CPUs (not pinned)" : "the pinned CPU");
    ref = codec_qrpc_rec.setup(0);
    for (s = 0; s < CODEC_NSYS; s++) {
        bytes[s] = codec_systems[s] == &codec_qrpc_rec ? ref
                                                      : codec_systems[s]->setup(ref);
        printf("bench: codec %s %s: %zu bytes per encode: %s\n",
               codec_systems[s]->system, codec_systems[s]->workload, bytes[s],
               codec_systems[s]->what);
    }
    /* Warm caches, the allocator and the CPU's clock before anything counts. */
    for (s = 0; s < CODEC_NSYS; s++)
        codec_measure(codec_systems[s], seconds / 4, cpu);

    for (run = 0; run < runs; run++) {
        for (k = 0; k < CODEC_NSYS; k++) {
            const codec_sys *sys;
            codec_meas *m;

            s = (k + run) % CODEC_NSYS;
            sys = codec_systems[s];
            m = &meas[s][run];
            for (retry = 0;; retry++) {
                *m = codec_measure(sys, seconds, cpu);
                printf("bench: codec %s %s run %d/%d: %.0f ops/s (steal %.1f%%, "
                       "CPU share %.0f%%)", sys->system, sys->workload, run + 1,
                       runs, m->ops_per_s, m->steal, m->share);
                if (m->steal <= BENCH_STEAL_LIMIT_PCT &&
                    m->share >= BENCH_CPU_SHARE_MIN_PCT)
                    break;
                if (retry == BENCH_STEAL_RETRIES) {
                    printf(" -- disturbed, kept after %d retries", retry);
                    break;
                }
                printf(" -- disturbed (steal over %.0f%% or CPU share under "
                       "%.0f%%), redoing\n", BENCH_STEAL_LIMIT_PCT,
                       BENCH_CPU_SHARE_MIN_PCT);
            }
            printf("\n");
            fflush(stdout);
        }
    }

    for (s = 0; s < CODEC_NSYS; s++) {
        double v[BENCH_MAX_RUNS], st[BENCH_MAX_RUNS], sh[BENCH_MAX_RUNS];
        uint64_t it[BENCH_MAX_RUNS];
        bench_result r;

        for (run = 0; run < runs; run++) {
            v[run] = meas[s][run].ops_per_s;
            st[run] = meas[s][run].steal;
            sh[run] = meas[s][run].share;
            it[run] = meas[s][run].iters;
        }
        r.system = codec_systems[s]->system;
        r.workload = codec_systems[s]->workload;
        r.metric = "encode+decode";
        r.unit = "ops/s";
        bench_summarise(&r, v, st, sh, it, runs);
        bench_write_jsonl(out, &r);

        v[0] = (double)bytes[s];
        r.metric = "bytes_per_op";
        r.unit = "bytes";
        bench_summarise(&r, v, NULL, NULL, NULL, 1);
        bench_write_jsonl(out, &r);
    }
    /* codec_systems[0..2] are qrpc, xdr and memcpy on Rec. */
    codec_ratio(out, "qrpc/xdr", "codec-rec", meas[0], meas[1], runs);
    codec_ratio(out, "qrpc/memcpy", "codec-rec", meas[0], meas[2], runs);

    for (s = 0; s < CODEC_NSYS; s++)
        codec_systems[s]->teardown();
    printf("bench: codec done (checksum %llu)\n", (unsigned long long)codec_sink);
    if (fclose(out) != 0) {
        perror(argv[1]);
        return 1;
    }
    return 0;
}
