/*
 * valgrind_guest.c - a program for valgrind to run (tests/debuggers.rs):
 * one memory error valgrind reports (a read past a heap block), a signal
 * delivered to a handler (valgrind's async signal path, which aborts when
 * one of its syscalls is interrupted from a place it does not know), a
 * thread, and a child that execs. Exit status 7.
 */
#include "common.h"
#include <pthread.h>
#include <sys/wait.h>

static volatile sig_atomic_t got;

static void on_usr1(int sig)
{
    (void)sig;
    got = 1;
}

static void *worker(void *arg)
{
    (void)arg;
    say("thread: ok\n");
    return NULL;
}

int main(void)
{
    volatile int *p = malloc(10);
    volatile size_t past = 3; /* a variable index: no compile-time bounds warning */
    if (signal(SIGUSR1, on_usr1) == SIG_ERR || raise(SIGUSR1) != 0 || !got)
        say("FAIL: signal\n");
    else
        say("signal: ok\n");
    pthread_t th;
    if (pthread_create(&th, NULL, worker, NULL) == 0)
        pthread_join(th, NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/echo", "echo", "child: ok", (char *)NULL);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (p[past] == 12345) /* the read valgrind reports: 2 bytes past the block */
        say("unlikely\n");
    say("exit: %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 7;
}
