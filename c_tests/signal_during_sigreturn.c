/*
 * Hard case: a signal that arrives while the program's handler returns.
 *
 * A timer set to expire 1-10 us later, then SIGUSR1 sent to itself: the
 * SIGALRM often arrives while the interposer serves the SIGUSR1 handler's
 * rt_sigreturn (a trapped syscall, on the interposer's own stack), where it
 * is postponed. It must still be handled at once, not at the thread's next
 * trapped syscall: the program then only polls a vDSO clock, so a signal
 * left waiting shows up as late (CPython's test_signal StressTest hung on
 * this). 2,000 rounds, with and without SA_ONSTACK handlers; each round
 * waits up to two seconds for both handlers (natively microseconds). Output: rounds and late ones.
 */
#include "common.h"

#include <sys/time.h>
#include <time.h>

static volatile sig_atomic_t n_usr1, n_alrm;

static void handler(int sig)
{
    if (sig == SIGUSR1)
        n_usr1++;
    else
        n_alrm++;
}

static void rounds(int onstack)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = onstack ? SA_ONSTACK : 0;
    EXPECT("sigaction SIGUSR1", sigaction(SIGUSR1, &sa, NULL) == 0);
    EXPECT("sigaction SIGALRM", sigaction(SIGALRM, &sa, NULL) == 0);
    n_usr1 = n_alrm = 0;
    int late = 0;
    for (int i = 0; i < 2000 && late < 3; i++) {
        struct itimerval it = { { 0, 0 }, { 0, 1 + i % 10 } };
        setitimer(ITIMER_REAL, &it, NULL);
        kill(getpid(), SIGUSR1);
        long long start = now_ns();
        while (!(n_usr1 == i + 1 && n_alrm == i + 1)) {
            if (now_ns() - start > 2000000000LL) {
                late++;
                /* Let a late one arrive (at the next trap) before going on. */
                usleep(1000);
                n_usr1 = n_alrm = i + 1;
                break;
            }
        }
    }
    printf("%s: %d late by over 2 s\n", onstack ? "SA_ONSTACK handlers" : "handlers", late);
    EXPECT_EQ("late signals", late, 0);
}

int main(void)
{
    stack_t ss = { .ss_sp = malloc(65536), .ss_size = 65536 };
    EXPECT("sigaltstack", sigaltstack(&ss, NULL) == 0);
    rounds(0);
    rounds(1);
    return t_failure_count() ? 1 : 0;
}
