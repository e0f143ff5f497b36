/*
 * Hard case: exit from main while many threads are blocked in syscalls or
 * in the middle of making them.
 *
 * Why it is hard for a syscall interposer: exit_group kills every other
 * thread wherever it is: blocked inside a read()/futex()/nanosleep()/poll()
 * the interposer is running on its behalf, or halfway through the
 * interposer's SIGSYS handler or trampoline.  Nothing may hang (a lock held
 * by a dying thread, an interposer that waits for threads to leave), and
 * the exit status and the output flushed by exit() must be exactly the
 * program's.
 *
 * What it checks: 16 threads (8 blocked in read on pipes, 3 in futex wait,
 * 2 in nanosleep, 1 in poll, 2 issuing getppid in a tight loop), all
 * confirmed started; then main prints a line and calls exit(0); an atexit
 * handler prints a line; exit status 0 and nothing else printed.
 */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int g_pipes[8][2];
static int g_futex_word;
static int g_started;

static void started(void)
{
    __atomic_add_fetch(&g_started, 1, __ATOMIC_SEQ_CST);
}

static void *reader(void *p)
{
    int i = (int)(long)p;
    started();
    char c;
    ssize_t r = read(g_pipes[i][0], &c, 1);
    printf("FAIL: reader %d woke up (%zd)\n", i, r);
    return NULL;
}

static void *futex_waiter(void *unused)
{
    (void)unused;
    started();
    for (;;)
        syscall(SYS_futex, &g_futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    return NULL;
}

static void *sleeper(void *unused)
{
    (void)unused;
    started();
    struct timespec ts = { 100, 0 };
    for (;;)
        nanosleep(&ts, NULL);
    return NULL;
}

static void *poller(void *unused)
{
    (void)unused;
    started();
    for (;;)
        poll(NULL, 0, -1);
    return NULL;
}

static void *spinner(void *unused)
{
    (void)unused;
    pid_t pp = getppid();
    started();
    for (;;)
        if (getppid() != pp)
            printf("FAIL: getppid changed\n");
    return NULL;
}

static void at_exit_handler(void)
{
    printf("exit_group_threads: atexit handler ran\n");
}

int main(void)
{
    atexit(at_exit_handler);
    pthread_t t;
    for (long i = 0; i < 8; i++) {
        if (pipe(g_pipes[i]) != 0 || pthread_create(&t, NULL, reader, (void *)i) != 0)
            return 2;
    }
    for (int i = 0; i < 3; i++)
        if (pthread_create(&t, NULL, futex_waiter, NULL) != 0)
            return 2;
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t, NULL, sleeper, NULL) != 0)
            return 2;
    if (pthread_create(&t, NULL, poller, NULL) != 0)
        return 2;
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t, NULL, spinner, NULL) != 0)
            return 2;
    while (__atomic_load_n(&g_started, __ATOMIC_SEQ_CST) < 16)
        usleep(1000);
    usleep(30000); /* let them block */
    printf("exit_group_threads: 16 threads started, main calls exit(0)\n");
    exit(0);
}
