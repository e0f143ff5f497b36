/*
 * Hard case: one sigprocmask that unblocks several pending signals at
 * once, some of them the signals an interposer owns (SIGSEGV, SIGBUS,
 * SIGILL, SIGSYS, sent with sigqueue while blocked), each with a handler.
 *
 * Why it is hard for a syscall interposer: it cannot block the signals it
 * owns in the kernel (a trap or fault would kill), so it holds them back
 * itself and sends them again when the program unblocks them. Natively the
 * kernel delivers everything pending at the syscall's return, the lowest
 * synchronous signal first, and the handler of the last one it delivers
 * runs first. Sent again one by one, each handler ran to its end before
 * the next signal was sent (another order); and a SIGSYS sent again while
 * the kernel delivered it with SIGSEGV came back into the interposer's own
 * handler without end, until the stack overflowed (death by SIGSEGV).
 *
 * What it checks: in a fork child per set, each signal is queued once
 * while blocked and all are unblocked with one sigprocmask (a patched site
 * after the warm-up calls, so the fast path); the child prints the order
 * its handlers ran in. The parent prints how each child ended.
 */
#include "common.h"

static void on_signal(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    say("  handler of %d (value %d)\n", sig, si->si_value.sival_int);
}

static void unblock_at_once(const int *sigs, int n)
{
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < n; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_signal;
        sa.sa_flags = SA_SIGINFO;
        REQUIRE(sigaction(sigs[i], &sa, NULL) == 0, "sigaction");
        sigaddset(&set, sigs[i]);
    }
    REQUIRE(sigprocmask(SIG_BLOCK, &set, NULL) == 0, "block");
    for (int i = 0; i < n; i++) {
        union sigval v = { .sival_int = i };
        REQUIRE(sigqueue(getpid(), sigs[i], v) == 0, "sigqueue");
    }
    REQUIRE(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0, "unblock");
    say("  unblocked\n");
}

int main(void)
{
    static const int sets[][6] = {
        { SIGSYS, SIGUSR1, SIGSEGV },
        { SIGILL, SIGBUS },
        { SIGSEGV, SIGILL },
        { SIGSYS, SIGSEGV, SIGILL, SIGBUS, SIGUSR1 },
        { SIGBUS, SIGSEGV, SIGSYS },
    };
    static const int lens[] = { 3, 2, 2, 5, 3 };
    sigset_t none;
    sigemptyset(&none);
    // Warm-up: the sites of sigprocmask are patched after their first calls.
    for (int i = 0; i < 5; i++)
        sigprocmask(SIG_UNBLOCK, &none, NULL);
    for (unsigned s = 0; s < sizeof lens / sizeof *lens; s++) {
        say("set %u:\n", s);
        pid_t pid = fork();
        REQUIRE(pid >= 0, "fork");
        if (pid == 0) {
            unblock_at_once(sets[s], lens[s]);
            _exit(0);
        }
        int st = wait_status(pid);
        if (WIFSIGNALED(st))
            FAILF("set %u: the child was killed by signal %d", s, WTERMSIG(st));
        else
            say("  child exited %d\n", WEXITSTATUS(st));
    }
    return finish();
}
