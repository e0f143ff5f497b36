/*
 * Hard case: SA_RESETHAND ("one shot") handlers, of the signals an
 * interposer owns and of the others.
 *
 * Why it is hard for a syscall interposer: at delivery the kernel sets the
 * handler to SIG_DFL and keeps the action's flags, mask and restorer (a
 * query afterwards shows them). The interposer keeps the program's action
 * in a table of its own: for the signals it owns (SIGSEGV, SIGILL, SIGBUS,
 * SIGSYS) it must do the kernel's reset itself, and for the others the
 * kernel resets the action the interposer gave it (its own flags and
 * restorer, a mask without the owned signals), which must not show through;
 * and the next such signal, now with its default action, must still let
 * the interposer write its report before the process ends.
 *
 * What it checks: for each signal, a handler with SA_RESETHAND | SA_NODEFER
 * | SA_RESTART | SA_ONSTACK and SIGUSR2 and SIGSEGV in its mask runs once on
 * raise(); the action read back afterwards (handler, flags, both mask bits)
 * is printed. Then, with `again` as argument, SIGUSR1 is raised a second
 * time: the process dies of it (tests/stat_collect.rs checks that it
 * reports first).
 */
#include "common.h"

static volatile sig_atomic_t ran;

static void handler(int sig)
{
    (void)sig;
    ran++;
}

int main(int argc, char **argv)
{
    static const int sigs[] = { SIGUSR1, SIGTERM, SIGCHLD, SIGWINCH, 40, SIGSEGV, SIGSYS, SIGILL, SIGBUS };
    for (unsigned i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        int sig = sigs[i];
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = handler;
        sa.sa_flags = SA_RESETHAND | SA_NODEFER | SA_RESTART | SA_ONSTACK;
        sigaddset(&sa.sa_mask, SIGUSR2);
        sigaddset(&sa.sa_mask, SIGSEGV);
        REQUIRE(sigaction(sig, &sa, NULL) == 0, "sigaction");
        ran = 0;
        raise(sig);
        struct sigaction now;
        REQUIRE(sigaction(sig, NULL, &now) == 0, "sigaction query");
        say("signal %d: handler ran %d time(s); now handler %s flags %#x, mask SIGUSR2 %d SIGSEGV %d\n", sig, (int)ran,
            now.sa_handler == SIG_DFL ? "SIG_DFL" : "still set", (unsigned)now.sa_flags,
            sigismember(&now.sa_mask, SIGUSR2), sigismember(&now.sa_mask, SIGSEGV));
    }
    if (argc > 1 && strcmp(argv[1], "again") == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = handler;
        sa.sa_flags = SA_RESETHAND;
        REQUIRE(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
        raise(SIGUSR1);
        say("SIGUSR1 handled once; raised again\n");
        raise(SIGUSR1);
        FAILF("alive after the second SIGUSR1");
    }
    return finish();
}
