/*
 * bench_util.h - what the benchmark drivers (bench_codec.c, bench_compile.c)
 * share: the clock, the host's steal time from /proc/stat, medians and the
 * results.jsonl line format.
 *
 * This is measurement plumbing only; the measured loops live elsewhere, each
 * in its own file so that no system's loop is inlined into the driver.
 */
#ifndef QRPC_BENCH_UTIL_H
#define QRPC_BENCH_UTIL_H

#include <stdint.h>
#include <stdio.h>

/*
 * A measurement that saw more steal than this, or that got less of its CPU
 * than BENCH_CPU_SHARE_MIN_PCT (other processes of this VM ran on it: steal
 * does not show those), is redone ...
 */
#define BENCH_STEAL_LIMIT_PCT 10.0
#define BENCH_CPU_SHARE_MIN_PCT 90.0
/* ... at most this many times; after that it is kept, and flagged. */
#define BENCH_STEAL_RETRIES 3
/* Runs are capped so that results fit in fixed arrays. */
#define BENCH_MAX_RUNS 50

/* Seconds on CLOCK_MONOTONIC. */
double bench_now(void);
/* CPU seconds this thread has used. */
double bench_thread_cpu(void);

/* Jiffies of one CPU line of /proc/stat. */
typedef struct bench_cpu {
    uint64_t steal;
    uint64_t total;
    int ok;                     /* 0 if /proc/stat could not be read */
} bench_cpu;

/*
 * The CPU to watch for steal: the only one this process may run on (it was
 * started under taskset -c N), or -1 for the "cpu" line of all CPUs.
 */
int bench_watched_cpu(void);
void bench_cpu_read(bench_cpu *c, int cpu);
/* Percentage of the CPU's time stolen between a and b; 0 if unknown. */
double bench_steal_pct(const bench_cpu *a, const bench_cpu *b);

/* Median of v[0..n) (n >= 1); v is left sorted. */
double bench_median(double *v, int n);

/* Positive integer from the environment variable name, or def. */
int bench_env_int(const char *name, int def, int min, int max);
double bench_env_double(const char *name, double def, double min, double max);

/* Summary of one (system, workload, metric): runs values with their steal. */
typedef struct bench_result {
    const char *system;
    const char *workload;
    const char *metric;
    const char *unit;
    double value;               /* the median */
    double min;
    double max;
    uint64_t iterations;        /* of the median run, or 0 when meaningless */
    int runs;
    double steal_pct;           /* the highest steal among the runs kept; < 0: none */
    double cpu_share_pct;       /* the lowest CPU share among them; < 0: none */
} bench_result;

/*
 * Fills r's figures from vals[0..n) (per-run values, in run order),
 * steal[0..n) and share[0..n) (CPU time over wall time, in %); iters[i] is
 * the iteration count of run i.  steal, share and iters may be NULL.
 */
void bench_summarise(bench_result *r, const double *vals, const double *steal,
                     const double *share, const uint64_t *iters, int n);

/*
 * Appends r to results.jsonl as one JSON object on one line: the fields
 * system, workload, metric, value, unit, iterations, min, max, runs,
 * steal_pct and cpu_share_pct (both null for figures that are not timed).
 */
void bench_write_jsonl(FILE *out, const bench_result *r);

#endif
