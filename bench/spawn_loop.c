/*
 * The benchmark's per-process workload: posix_spawn a program N times, one
 * after the other, waiting for each.
 *   spawn_loop ROUNDS N [NAME=VALUE...] PROGRAM [ARGS...]
 * Prints one line per round:
 *   "<wall us per child> <children's CPU us per child> <children's minor faults per child>"
 * CPU time is the children's user+sys (getrusage RUSAGE_CHILDREN): on a
 * loaded machine it moves less than wall time. The children get this
 * program's environment plus the NAME=VALUE entries, as env(1) would give
 * them: so this program can run natively while its children are preloaded.
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static double cpu_us(const struct rusage *r)
{
    return (r->ru_utime.tv_sec + r->ru_stime.tv_sec) * 1e6 + r->ru_utime.tv_usec + r->ru_stime.tv_usec;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s ROUNDS N PROGRAM [ARGS...]\n", argv[0]);
        return 2;
    }
    int rounds = atoi(argv[1]);
    long n = atol(argv[2]);
    int first = 3;
    while (first < argc && strchr(argv[first], '=') && argv[first][0] != '/')
        first++;
    if (first == argc) {
        fprintf(stderr, "no PROGRAM\n");
        return 2;
    }
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    char **env = calloc(nenv + first + 1, sizeof *env);
    if (!env)
        return 1;
    size_t k = 0;
    for (int i = 3; i < first; i++)
        env[k++] = argv[i];
    for (size_t i = 0; i < nenv; i++)
        env[k++] = environ[i];
    char **child = &argv[first];
    for (int r = 0; r < rounds; r++) {
        struct rusage before, after;
        getrusage(RUSAGE_CHILDREN, &before);
        double t0 = now_us();
        for (long i = 0; i < n; i++) {
            pid_t pid;
            int err = posix_spawn(&pid, child[0], NULL, NULL, child, env);
            if (err) {
                fprintf(stderr, "posix_spawn %s: error %d\n", child[0], err);
                return 1;
            }
            int status;
            if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "%s did not exit with status 0 (wait status %#x)\n", child[0], status);
                return 1;
            }
        }
        double t1 = now_us();
        getrusage(RUSAGE_CHILDREN, &after);
        printf("%.1f %.1f %.2f\n", (t1 - t0) / n, (cpu_us(&after) - cpu_us(&before)) / n,
               (double)(after.ru_minflt - before.ru_minflt) / n);
        fflush(stdout);
    }
    return 0;
}
