/*
 * The report names the process by its main thread's name (/proc/PID/comm),
 * whichever thread ends it: the main thread renames itself, then either
 * exits itself or lets a thread with another name call exit().
 *   comm_of_report main|thread
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static void *worker(void *unused)
{
    (void)unused;
    prctl(PR_SET_NAME, "worker-name");
    printf("comm_of_report: worker calls exit(3)\n");
    fflush(stdout);
    exit(3);
}

int main(int argc, char **argv)
{
    prctl(PR_SET_NAME, "main-name");
    if (argc > 1 && strcmp(argv[1], "thread") == 0) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, NULL) != 0)
            return 2;
        for (;;)
            pause();
    }
    printf("comm_of_report: main exits\n");
    return 4;
}
