/*
 * Two named threads, each calling getppid a known number of times, one
 * after the other (the second starts once the first has ended, so it may
 * reuse the first one's signal stack area), and the main thread's own
 * calls: per-thread reports must give each thread its own counts.
 *   named_threads [N_ALPHA N_BETA N_MAIN]   (default 100 200 50)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static long n_of[2];

static void *worker(void *arg)
{
    long which = (long)arg;
    pthread_setname_np(pthread_self(), which == 0 ? "alpha" : "beta");
    long sum = 0;
    for (long i = 0; i < n_of[which]; i++)
        sum += getppid() > 0;
    return (void *)sum;
}

int main(int argc, char **argv)
{
    long n_main = 50;
    n_of[0] = argc > 1 ? atol(argv[1]) : 100;
    n_of[1] = argc > 2 ? atol(argv[2]) : 200;
    if (argc > 3)
        n_main = atol(argv[3]);
    for (long which = 0; which < 2; which++) {
        pthread_t t;
        void *got;
        if (pthread_create(&t, NULL, worker, (void *)which) != 0 || pthread_join(t, &got) != 0)
            return 1;
        printf("%s: %ld\n", which == 0 ? "alpha" : "beta", (long)got);
    }
    long sum = 0;
    for (long i = 0; i < n_main; i++)
        sum += getppid() > 0;
    printf("main: %ld\n", sum);
    return 0;
}
