/*
 * Hard case: the main thread calls pthread_exit while other threads keep
 * running; the process ends when the last thread returns.
 *
 * Why it is hard for a syscall interposer: the thread group leader becomes a
 * zombie while the process lives on; state the interposer attached to the
 * main thread (its altstack, its per-thread data, anything keyed by
 * pid == tid) must not be needed by the remaining threads, which keep
 * making syscalls, and the process's exit status comes from the last
 * thread's implicit exit (0), not from main.
 *
 * What it checks: 4 workers make syscalls for a while after main is gone;
 * worker 0 joins the others, checks getpid() is unchanged, prints a summary
 * and returns; exit status 0.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_t g_workers[4];
static pid_t g_pid;
static volatile int g_main_gone;

static void *worker(void *p)
{
    long id = (long)p;
    int bad = 0;
    while (!g_main_gone)
        usleep(1000);
    for (int i = 0; i < 2000; i++) {
        if (getpid() != g_pid)
            bad++;
        if (i % 100 == 0)
            usleep(500);
    }
    if (id == 0) {
        for (int i = 1; i < 4; i++) {
            void *r;
            pthread_join(g_workers[i], &r);
            bad += (int)(long)r;
        }
        printf("main_pthread_exit: workers finished after main exited: %s\n", bad ? "FAIL" : "ok");
        fflush(stdout);
    }
    return (void *)(long)bad;
}

int main(void)
{
    g_pid = getpid();
    for (long i = 0; i < 4; i++)
        if (pthread_create(&g_workers[i], NULL, worker, (void *)i) != 0)
            return 2;
    printf("main_pthread_exit: main calls pthread_exit\n");
    fflush(stdout);
    g_main_gone = 1;
    pthread_exit(NULL);
}
