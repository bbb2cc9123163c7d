/*
 * bench_compile.c - the "compile" workload of make bench: wall time of
 * qrpcgen compiling one (generated, large) .qidl, and the size of what it
 * writes.
 *
 *   bench_compile RESULTS.jsonl QRPCGEN FILE.qidl OUTDIR
 *
 * Runs `QRPCGEN -o OUTDIR FILE.qidl` once to warm the page cache, then
 * BENCH_RUNS times (default 5, at least 3), each killed after
 * BENCH_COMPILE_TIMEOUT seconds (default 60); a run that fails or times out
 * fails the benchmark.  Steal time and the CPU share (qrpcgen's CPU time
 * over the wall time) are watched as in bench_codec.c, and a disturbed run
 * is redone.  Appends the median wall time, CPU time and
 * peak RSS of the runs, and the line counts of the outputs, to RESULTS.
 * It times the compiler only; it does not compile the generated C.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"

static volatile pid_t compile_child;

static void compile_on_alarm(int sig)
{
    (void)sig;
    if (compile_child > 0)
        kill(compile_child, SIGKILL);
}

typedef struct compile_meas {
    double wall_ms;
    double cpu_ms;
    double rss_kb;
    double steal;
} compile_meas;

/* One run of qrpcgen; exits the benchmark if it fails. */
static compile_meas compile_once(char *const *argv, unsigned timeout, int cpu)
{
    struct rusage ru;
    compile_meas m;
    bench_cpu c0, c1;
    double t0, t1;
    pid_t pid;
    int st = 0;

    bench_cpu_read(&c0, cpu);
    t0 = bench_now();
    pid = fork();
    if (pid < 0) {
        perror("bench: fork");
        exit(1);
    }
    if (pid == 0) {
        execv(argv[0], argv);
        perror(argv[0]);
        _exit(127);
    }
    compile_child = pid;
    alarm(timeout);
    while (wait4(pid, &st, 0, &ru) < 0) {
        if (errno != EINTR) {
            perror("bench: wait4");
            exit(1);
        }
    }
    alarm(0);
    compile_child = 0;
    t1 = bench_now();
    bench_cpu_read(&c1, cpu);
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) {
        fprintf(stderr, "bench: compile: %s took more than %u s: killed\n",
                argv[0], timeout);
        exit(1);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "bench: compile: %s failed (status 0x%x)\n", argv[0],
                (unsigned)st);
        exit(1);
    }
    m.wall_ms = (t1 - t0) * 1e3;
    m.cpu_ms = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
               (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
    m.rss_kb = (double)ru.ru_maxrss;
    m.steal = bench_steal_pct(&c0, &c1);
    return m;
}

static long compile_count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    long n = 0;
    int c;

    if (!f) {
        perror(path);
        exit(1);
    }
    while ((c = getc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static void compile_constant(FILE *out, const char *metric, double v,
                             const char *unit)
{
    bench_result r;

    r.system = "qrpcgen";
    r.workload = "compile";
    r.metric = metric;
    r.unit = unit;
    bench_summarise(&r, &v, NULL, NULL, NULL, 1);
    bench_write_jsonl(out, &r);
}

int main(int argc, char **argv)
{
    static const char *const suffixes[] = { ".h", "_types.c", "_client.c",
                                            "_server.c" };
    compile_meas meas[BENCH_MAX_RUNS];
    double wall[BENCH_MAX_RUNS], cpu_t[BENCH_MAX_RUNS], rss[BENCH_MAX_RUNS];
    double steal[BENCH_MAX_RUNS], shares[BENCH_MAX_RUNS];
    int runs = bench_env_int("BENCH_RUNS", 5, 3, BENCH_MAX_RUNS);
    int timeout = bench_env_int("BENCH_COMPILE_TIMEOUT", 60, 1, 3600);
    int cpu = bench_watched_cpu();
    struct sigaction sa;
    char *cmd[5], *base, *dot, path[4096];
    const char *slash;
    bench_result r;
    long total = 0, lines;
    double share;
    int run, retry;
    size_t i;
    FILE *out;

    if (argc != 5) {
        fprintf(stderr, "usage: bench_compile RESULTS.jsonl QRPCGEN FILE.qidl OUTDIR\n");
        return 2;
    }
    out = fopen(argv[1], "a");
    if (!out) {
        perror(argv[1]);
        return 1;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = compile_on_alarm;   /* no SA_RESTART: wait4 sees EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);

    cmd[0] = argv[2];
    cmd[1] = "-o";
    cmd[2] = argv[4];
    cmd[3] = argv[3];
    cmd[4] = NULL;
    printf("bench: compile: %s -o %s %s, %d runs\n", argv[2], argv[4], argv[3],
           runs);
    compile_once(cmd, (unsigned)timeout, cpu);      /* warm-up, not counted */
    for (run = 0; run < runs; run++) {
        for (retry = 0;; retry++) {
            meas[run] = compile_once(cmd, (unsigned)timeout, cpu);
            share = 100.0 * meas[run].cpu_ms / meas[run].wall_ms;
            printf("bench: compile qrpcgen run %d/%d: %.1f ms wall, %.1f ms CPU, "
                   "%.0f KB peak RSS (steal %.1f%%, CPU share %.0f%%)", run + 1,
                   runs, meas[run].wall_ms, meas[run].cpu_ms, meas[run].rss_kb,
                   meas[run].steal, share);
            if (meas[run].steal <= BENCH_STEAL_LIMIT_PCT &&
                share >= BENCH_CPU_SHARE_MIN_PCT)
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
        wall[run] = meas[run].wall_ms;
        cpu_t[run] = meas[run].cpu_ms;
        rss[run] = meas[run].rss_kb;
        steal[run] = meas[run].steal;
        shares[run] = share;
    }
    r.system = "qrpcgen";
    r.workload = "compile";
    r.metric = "wall";
    r.unit = "ms";
    bench_summarise(&r, wall, steal, shares, NULL, runs);
    bench_write_jsonl(out, &r);
    r.metric = "cpu";
    bench_summarise(&r, cpu_t, steal, shares, NULL, runs);
    bench_write_jsonl(out, &r);
    r.metric = "peak_rss";
    r.unit = "KB";
    bench_summarise(&r, rss, steal, shares, NULL, runs);
    bench_write_jsonl(out, &r);

    compile_constant(out, "input_lines", (double)compile_count_lines(argv[3]),
                     "lines");
    slash = strrchr(argv[3], '/');
    base = strdup(slash ? slash + 1 : argv[3]);
    if (!base)
        return 1;
    dot = strrchr(base, '.');
    if (dot)
        *dot = '\0';
    for (i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        char metric[256];

        snprintf(path, sizeof path, "%s/%s%s", argv[4], base, suffixes[i]);
        lines = compile_count_lines(path);
        total += lines;
        snprintf(metric, sizeof metric, "lines:%s%s", base, suffixes[i]);
        compile_constant(out, metric, (double)lines, "lines");
    }
    compile_constant(out, "lines:total", (double)total, "lines");
    free(base);
    printf("bench: compile done\n");
    if (fclose(out) != 0) {
        perror(argv[1]);
        return 1;
    }
    return 0;
}
