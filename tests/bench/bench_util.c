/*
 * bench_util.c - clock, steal time, medians and JSONL output for the
 * benchmark drivers; see bench_util.h.  Not a benchmark itself.
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

double bench_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double bench_thread_cpu(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int bench_watched_cpu(void)
{
    cpu_set_t set;
    int i, found = -1;

    if (sched_getaffinity(0, sizeof set, &set) != 0 || CPU_COUNT(&set) != 1)
        return -1;
    for (i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &set))
            found = i;
    return found;
}

void bench_cpu_read(bench_cpu *c, int cpu)
{
    char want[32], line[512];
    FILE *f = fopen("/proc/stat", "r");
    size_t wl;

    memset(c, 0, sizeof *c);
    if (!f)
        return;
    if (cpu < 0)
        snprintf(want, sizeof want, "cpu ");
    else
        snprintf(want, sizeof want, "cpu%d ", cpu);
    wl = strlen(want);
    while (fgets(line, sizeof line, f)) {
        /* user nice system idle iowait irq softirq steal [guest guest_nice];
         * guest time is already counted in user, so it is not added. */
        unsigned long long v[8] = { 0 };
        int k;

        if (strncmp(line, want, wl) != 0)
            continue;
        if (sscanf(line + wl, "%llu %llu %llu %llu %llu %llu %llu %llu",
                   &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                   &v[7]) < 8)
            break;
        for (k = 0; k < 8; k++)
            c->total += v[k];
        c->steal = v[7];
        c->ok = 1;
        break;
    }
    fclose(f);
}

double bench_steal_pct(const bench_cpu *a, const bench_cpu *b)
{
    if (!a->ok || !b->ok || b->total <= a->total)
        return 0.0;
    return 100.0 * (double)(b->steal - a->steal) /
           (double)(b->total - a->total);
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

int bench_env_int(const char *name, int def, int min, int max)
{
    const char *s = getenv(name);
    char *end;
    long v;

    if (!s || !*s)
        return def;
    v = strtol(s, &end, 10);
    if (*end || v < min || v > max) {
        fprintf(stderr, "bench: %s=%s is not an integer in [%d, %d]; "
                "using %d\n", name, s, min, max, def);
        return def;
    }
    return (int)v;
}

double bench_env_double(const char *name, double def, double min, double max)
{
    const char *s = getenv(name);
    char *end;
    double v;

    if (!s || !*s)
        return def;
    v = strtod(s, &end);
    if (*end || !(v >= min && v <= max)) {
        fprintf(stderr, "bench: %s=%s is not a number in [%g, %g]; "
                "using %g\n", name, s, min, max, def);
        return def;
    }
    return v;
}

void bench_summarise(bench_result *r, const double *vals, const double *steal,
                     const double *share, const uint64_t *iters, int n)
{
    double sorted[BENCH_MAX_RUNS];
    int i, mid = 0;

    r->runs = n;
    r->steal_pct = steal ? 0.0 : -1.0;
    r->cpu_share_pct = share ? share[0] : -1.0;
    r->min = r->max = vals[0];
    for (i = 0; i < n; i++) {
        sorted[i] = vals[i];
        if (vals[i] < r->min)
            r->min = vals[i];
        if (vals[i] > r->max)
            r->max = vals[i];
        if (steal && steal[i] > r->steal_pct)
            r->steal_pct = steal[i];
        if (share && share[i] < r->cpu_share_pct)
            r->cpu_share_pct = share[i];
    }
    r->value = bench_median(sorted, n);
    /* The iteration count reported is the run closest to the median. */
    for (i = 1; i < n; i++) {
        double d = vals[i] - r->value, dm = vals[mid] - r->value;

        if ((d < 0 ? -d : d) < (dm < 0 ? -dm : dm))
            mid = i;
    }
    r->iterations = iters ? iters[mid] : 0;
}

/* A percentage, or null when negative (not measured). */
static void bench_fmt_pct(char *buf, size_t n, double pct)
{
    if (pct < 0)
        snprintf(buf, n, "null");
    else
        snprintf(buf, n, "%.1f", pct);
}

void bench_write_jsonl(FILE *out, const bench_result *r)
{
    char steal[32], share[32];

    bench_fmt_pct(steal, sizeof steal, r->steal_pct);
    bench_fmt_pct(share, sizeof share, r->cpu_share_pct);
    fprintf(out, "{\"system\":\"%s\",\"workload\":\"%s\",\"metric\":\"%s\","
            "\"value\":%.10g,\"unit\":\"%s\",\"iterations\":%llu,"
            "\"min\":%.10g,\"max\":%.10g,\"runs\":%d,\"steal_pct\":%s,"
            "\"cpu_share_pct\":%s}\n",
            r->system, r->workload, r->metric, r->value, r->unit,
            (unsigned long long)r->iterations, r->min, r->max, r->runs,
            steal, share);
    fflush(out);
}
