/*
 * A program whose syscalls are known, for the latency report's tests:
 *   10,000 getppid (and it times that loop itself),
 *   200 nanosleep of 2 ms,
 *   100 open of a missing file (ENOENT),
 *   20 reads on a pipe fed by a thread every 3 ms.
 * Argument: a file to write, in ns, the wall time of the getppid loop, of the
 * nanosleep loop and of the phase the feeder thread sleeps in (the report's
 * totals for those calls cannot exceed them).
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
    double getppid_ns = now_ns() - t0;

    struct timespec d = { 0, 2000000 };
    double t1 = now_ns();
    for (int i = 0; i < 200; i++)
        nanosleep(&d, NULL);
    double sleep_ns = now_ns() - t1;
    for (int i = 0; i < 100; i++)
        if (open("/nonexistent/usertrap-known", O_RDONLY) >= 0)
            return 4;
    if (pipe(fds) != 0)
        return 5;
    pthread_t t;
    double t2 = now_ns();
    pthread_create(&t, NULL, feeder, NULL);
    char c;
    for (int i = 0; i < 20; i++)
        if (read(fds[0], &c, 1) != 1)
            return 6;
    pthread_join(t, NULL);
    double feeder_ns = now_ns() - t2;
    if (argc > 1) {
        FILE *f = fopen(argv[1], "w");
        if (!f)
            return 7;
        fprintf(f, "%.0f %.0f %.0f\n", getppid_ns, sleep_ns, feeder_ns);
        fclose(f);
    }
    printf("known calls: done\n");
    return 0;
}
