/*
 * Hard case: exit() called from a non-main thread while the main thread is
 * blocked in a syscall.
 *
 * Why it is hard for a syscall interposer: the process ends through
 * exit_group issued on a secondary thread while the main thread sits inside
 * a trapped, blocking read(); the interposer's state for the blocked thread
 * is torn down by the kernel mid-syscall, and atexit handlers run on the
 * exiting thread.  The status must be the thread's (7).
 *
 * What it checks: output of the thread and of an atexit handler, exit
 * status 7, no output from the main thread after the read.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int g_pipe[2];

static void at_exit_handler(void)
{
    printf("exit_from_thread: atexit handler ran\n");
}

static void *thread_fn(void *unused)
{
    (void)unused;
    usleep(50000); /* let main block in read (not required for the result) */
    printf("exit_from_thread: worker calls exit(7)\n");
    exit(7);
}

int main(void)
{
    if (pipe(g_pipe) != 0)
        return 2;
    atexit(at_exit_handler);
    printf("exit_from_thread: main blocks in read\n");
    fflush(stdout);
    pthread_t t;
    if (pthread_create(&t, NULL, thread_fn, NULL) != 0)
        return 3;
    char c;
    ssize_t r = read(g_pipe[0], &c, 1); /* never returns: nobody writes */
    printf("FAIL: main's read returned %zd\n", r);
    return 1;
}
