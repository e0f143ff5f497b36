/*
 * Hard case: a signal handler that siglongjmps out of a blocking syscall.
 *
 * Why it is hard for a syscall interposer: the app's SIGALRM handler runs
 * while the thread is blocked inside the interposer (in its gate, or inside
 * its SIGSYS handler's emulation of read()), and never returns: the
 * interposer's frame, any "in syscall" flag, any lock it holds and any
 * signal mask it changed for the duration are abandoned.  Done 1000 times,
 * leaked state (altstack nesting, per-thread depth counters, masks) shows.
 * With plain longjmp (no mask restore) the kernel leaves SIGALRM blocked,
 * and a mask query must say so.
 *
 * What it checks: 1000 x (sigsetjmp; one-shot timer; read() on an empty
 * pipe; handler siglongjmps), then the same out of nanosleep, poll and
 * futex-based sem_wait; afterwards the signal mask is exactly what it was
 * (SIGUSR2 blocked as a marker, SIGALRM not), and pipes, files and threads
 * work.  Then _setjmp/_longjmp (no mask restore) leaves SIGALRM blocked,
 * which sigprocmask reports.
 */
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <sys/time.h>

static sigjmp_buf g_env;
static jmp_buf g_plain_env;
static volatile sig_atomic_t g_use_plain;
static volatile sig_atomic_t g_handled;

static void on_alarm(int sig)
{
    (void)sig;
    g_handled++;
    if (g_use_plain)
        _longjmp(g_plain_env, 1);
    siglongjmp(g_env, 1);
}

static void arm_us(long us)
{
    struct itimerval it = { { 0, 0 }, { us / 1000000, us % 1000000 } };
    setitimer(ITIMER_REAL, &it, NULL);
}

static void disarm(void)
{
    struct itimerval it = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &it, NULL);
}

enum { OP_READ, OP_NANOSLEEP, OP_POLL, OP_SEM };

static int g_pipe[2];
static sem_t g_sem;

static void blocking_op(int op)
{
    switch (op) {
    case OP_READ: {
        char c;
        ssize_t r = read(g_pipe[0], &c, 1);
        FAILF("read returned %zd instead of blocking", r);
        break;
    }
    case OP_NANOSLEEP: {
        struct timespec ts = { 10, 0 };
        nanosleep(&ts, NULL);
        FAILF("nanosleep returned");
        break;
    }
    case OP_POLL: {
        struct pollfd p = { g_pipe[0], POLLIN, 0 };
        poll(&p, 1, 10000);
        FAILF("poll returned");
        break;
    }
    case OP_SEM:
        sem_wait(&g_sem);
        FAILF("sem_wait returned");
        break;
    }
}

static void run_jumps(int op, int count, const char *name)
{
    int s = section_begin();
    g_handled = 0;
    volatile int jumped = 0;
    for (volatile int i = 0; i < count; i++) {
        if (sigsetjmp(g_env, 1) == 0) {
            arm_us(200);
            blocking_op(op);
        } else {
            jumped++;
        }
    }
    disarm();
    EXPECT_EQ("siglongjmps", jumped, count);
    EXPECT_EQ("handler runs", g_handled, count);
    char line[128];
    snprintf(line, sizeof line, "%d siglongjmps out of a blocked %s", count, name);
    section_end(s, line);
}

static void *thread_fn(void *p)
{
    int *fds = p;
    char c = 0;
    if (write(fds[1], "t", 1) != 1 || read(fds[0], &c, 1) != 1 || c != 't')
        return (void *)1;
    return NULL;
}

int main(void)
{
    REQUIRE(pipe(g_pipe) == 0, "pipe");
    REQUIRE(sem_init(&g_sem, 0, 0) == 0, "sem_init");

    sigset_t marker, before;
    sigemptyset(&marker);
    sigaddset(&marker, SIGUSR2);
    REQUIRE(sigprocmask(SIG_BLOCK, &marker, NULL) == 0, "block SIGUSR2");
    sigprocmask(SIG_SETMASK, NULL, &before);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    REQUIRE(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction");

    run_jumps(OP_READ, 1000, "read() on an empty pipe");
    run_jumps(OP_NANOSLEEP, 300, "nanosleep");
    run_jumps(OP_POLL, 300, "poll");
    run_jumps(OP_SEM, 300, "sem_wait (futex)");

    int s = section_begin();
    sigset_t now;
    EXPECT_EQ("sigprocmask query", sigprocmask(SIG_SETMASK, NULL, &now), 0);
    EXPECT_SIGSET("mask after 1900 siglongjmps", &now, &before);
    EXPECT_EQ("pipe write", write(g_pipe[1], "ab", 2), 2);
    char buf[2];
    EXPECT_EQ("pipe read", read(g_pipe[0], buf, 2), 2);
    int fd = open("after_jumps.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    EXPECT("open file", fd >= 0);
    EXPECT_EQ("write file", write(fd, "syscalls work after siglongjmp\n", 31), 31);
    EXPECT_EQ("close file", close(fd), 0);
    int fds[2];
    REQUIRE(pipe(fds) == 0, "pipe");
    pthread_t t;
    void *ret = (void *)1;
    EXPECT_EQ("pthread_create", pthread_create(&t, NULL, thread_fn, fds), 0);
    pthread_join(t, &ret);
    EXPECT("thread ran", ret == NULL);
    /* a real sleep still sleeps: not cut short by leftover state */
    long long t0 = now_ns();
    sleep_ms(20);
    EXPECT("sleep 20ms", now_ns() - t0 >= 20000000LL);
    /* SIGALRM delivery still works with a returning handler */
    section_end(s, "mask, pipes, files, threads after the jumps");

    s = section_begin();
    g_use_plain = 1;
    g_handled = 0;
    if (_setjmp(g_plain_env) == 0) {
        arm_us(200);
        blocking_op(OP_READ);
    }
    disarm();
    EXPECT_EQ("plain longjmp handler ran", g_handled, 1);
    sigprocmask(SIG_SETMASK, NULL, &now);
    sigset_t expect = before;
    sigaddset(&expect, SIGALRM);
    EXPECT_SIGSET("mask after _longjmp out of the handler keeps SIGALRM blocked", &now, &expect);
    sigprocmask(SIG_SETMASK, &before, NULL);
    sigprocmask(SIG_SETMASK, NULL, &now);
    EXPECT_SIGSET("mask restored by hand", &now, &before);
    section_end(s, "_longjmp without mask restore leaves SIGALRM blocked");
    return finish();
}
