/*
 * A program whose syscalls are known, for the latency report's tests:
 *   10,000 getppid (and it times that loop itself),
 *   200 nanosleep of 2 ms,
 *   100 open of a missing file (ENOENT),
 *   20 reads on a pipe fed by a thread every 3 ms.
 * Argument: a file to write the loop's own ns per getppid into.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int fds[2];

static void *feeder(void *arg)
{
    (void)arg;
    struct timespec d = { 0, 3000000 };
    for (int i = 0; i < 20; i++) {
        nanosleep(&d, NULL);
        if (write(fds[1], "x", 1) != 1)
            exit(3);
    }
    return NULL;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    double t0 = now_ns();
    for (int i = 0; i < 10000; i++)
        getppid();
    double per_call = (now_ns() - t0) / 10000;

    struct timespec d = { 0, 2000000 };
    for (int i = 0; i < 200; i++)
        nanosleep(&d, NULL);
    for (int i = 0; i < 100; i++)
        if (open("/nonexistent/usertrap-known", O_RDONLY) >= 0)
            return 4;
    if (pipe(fds) != 0)
        return 5;
    pthread_t t;
    pthread_create(&t, NULL, feeder, NULL);
    char c;
    for (int i = 0; i < 20; i++)
        if (read(fds[0], &c, 1) != 1)
            return 6;
    pthread_join(t, NULL);
    if (argc > 1) {
        FILE *f = fopen(argv[1], "w");
        if (!f)
            return 7;
        fprintf(f, "%.1f\n", per_call);
        fclose(f);
    }
    printf("known calls: done\n");
    return 0;
}
