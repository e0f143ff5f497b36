/*
 * Hard case: POSIX discard of a pending signal.  Block SIGSEGV (or SIGILL,
 * SIGSYS), raise it, set it to SIG_IGN (which discards the pending signal,
 * for every thread of the process), back to SIG_DFL, unblock: the process
 * lives.
 *
 * Why it is hard for a syscall interposer: it never lets the kernel block
 * the signals it needs for its own traps and faults; it holds them back for
 * the program instead, and must drop what it holds when the program's
 * disposition would have made the kernel drop it.
 *
 * What it checks, for SIGSEGV, SIGILL and SIGSYS: raised while blocked it is
 * pending; SIG_IGN empties sigpending; after SIG_DFL and unblocking the
 * process is alive.  Then the same with the signal pending in another thread
 * and the disposition changed by the main thread.
 */
#include "common.h"

#include <pthread.h>

static void discard_in_this_thread(int sig, const char *name)
{
    int s = section_begin();
    sigset_t m, pend;
    sigemptyset(&m);
    sigaddset(&m, sig);
    REQUIRE(sigprocmask(SIG_BLOCK, &m, NULL) == 0, "block");
    EXPECT_EQ("raise", raise(sig), 0);
    sigemptyset(&pend);
    EXPECT_EQ("sigpending", sigpending(&pend), 0);
    EXPECT_EQ("pending after raise", sigismember(&pend, sig), 1);
    EXPECT("SIG_IGN", signal(sig, SIG_IGN) != SIG_ERR);
    sigemptyset(&pend);
    EXPECT_EQ("sigpending", sigpending(&pend), 0);
    EXPECT_EQ("not pending after SIG_IGN", sigismember(&pend, sig), 0);
    EXPECT("SIG_DFL", signal(sig, SIG_DFL) != SIG_ERR);
    REQUIRE(sigprocmask(SIG_UNBLOCK, &m, NULL) == 0, "unblock");
    section_end(s, name);
}

static int g_sig;
static pthread_barrier_t g_bar;
static volatile int g_thread_bad;

static void *pending_in_thread(void *unused)
{
    (void)unused;
    sigset_t m, pend;
    sigemptyset(&m);
    sigaddset(&m, g_sig);
    pthread_sigmask(SIG_BLOCK, &m, NULL);
    if (pthread_kill(pthread_self(), g_sig) != 0)
        g_thread_bad |= 1;
    sigemptyset(&pend);
    sigpending(&pend);
    if (sigismember(&pend, g_sig) != 1)
        g_thread_bad |= 2;
    pthread_barrier_wait(&g_bar); /* main: SIG_IGN, then SIG_DFL */
    pthread_barrier_wait(&g_bar);
    sigemptyset(&pend);
    sigpending(&pend);
    if (sigismember(&pend, g_sig) != 0)
        g_thread_bad |= 4;
    pthread_sigmask(SIG_UNBLOCK, &m, NULL);
    return NULL;
}

static void discard_in_other_thread(int sig, const char *name)
{
    int s = section_begin();
    g_sig = sig;
    g_thread_bad = 0;
    REQUIRE(pthread_barrier_init(&g_bar, NULL, 2) == 0, "barrier");
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, pending_in_thread, NULL) == 0, "thread");
    pthread_barrier_wait(&g_bar);
    EXPECT("SIG_IGN", signal(sig, SIG_IGN) != SIG_ERR);
    EXPECT("SIG_DFL", signal(sig, SIG_DFL) != SIG_ERR);
    pthread_barrier_wait(&g_bar);
    pthread_join(t, NULL);
    pthread_barrier_destroy(&g_bar);
    EXPECT_EQ("thread's check bits (1 kill, 2 pending, 4 still pending)", g_thread_bad, 0);
    section_end(s, name);
}

int main(void)
{
    discard_in_this_thread(SIGSEGV, "SIGSEGV: blocked, raised, SIG_IGN discards it, SIG_DFL, unblocked: alive");
    discard_in_this_thread(SIGILL, "SIGILL: blocked, raised, SIG_IGN discards it, SIG_DFL, unblocked: alive");
    discard_in_this_thread(SIGSYS, "SIGSYS: blocked, raised, SIG_IGN discards it, SIG_DFL, unblocked: alive");
    discard_in_other_thread(SIGSEGV, "SIGSEGV pending in another thread: discarded by SIG_IGN in main");
    discard_in_other_thread(SIGSYS, "SIGSYS pending in another thread: discarded by SIG_IGN in main");
    return finish();
}
