/*
 * For the report tests: `forks N` forks N children that each call getppid
 * 100 times and exit 0; `threads N` runs N threads that each call getppid
 * 1000 times; `segv` calls getppid 10 times then writes through NULL;
 * `abort` calls getppid 10 times then abort()s; `sigsys` calls getppid 10
 * times then sends itself SIGSYS (its default action kills).
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void *worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++)
        getppid();
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    int n = argc > 2 ? atoi(argv[2]) : 0;
    if (strcmp(argv[1], "forks") == 0) {
        for (int i = 0; i < n; i++) {
            pid_t p = fork();
            if (p == 0) {
                for (int j = 0; j < 100; j++)
                    getppid();
                _exit(0);
            }
            waitpid(p, NULL, 0);
        }
    } else if (strcmp(argv[1], "threads") == 0) {
        pthread_t t[64];
        for (int i = 0; i < n && i < 64; i++)
            pthread_create(&t[i], NULL, worker, NULL);
        for (int i = 0; i < n && i < 64; i++)
            pthread_join(t[i], NULL);
    } else if (strcmp(argv[1], "segv") == 0 || strcmp(argv[1], "abort") == 0 || strcmp(argv[1], "sigsys") == 0) {
        for (int i = 0; i < 10; i++)
            getppid();
        fflush(stdout);
        if (strcmp(argv[1], "segv") == 0)
            *(volatile int *)0 = 1;
        if (strcmp(argv[1], "sigsys") == 0)
            kill(getpid(), SIGSYS);
        abort();
    }
    return 0;
}
