/*
 * A shared library whose constructor runs before usertrap's (the loader
 * initialises a program's own libraries first) and makes signal calls:
 * a SIGUSR1 handler, SIGUSR2 blocked. Linked into c_tests/early_ctor_signals.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

volatile sig_atomic_t early_ctor_got;

static void on_usr1(int sig)
{
    early_ctor_got = sig;
}

__attribute__((constructor)) static void early(void)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    int r = sigaction(SIGUSR1, &sa, &old);
    sigset_t set, prev;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    int m = sigprocmask(SIG_BLOCK, &set, &prev);
    char buf[160];
    int n = snprintf(buf, sizeof buf, "early constructor: sigaction %d (old handler default %d), sigprocmask %d (usr2 was blocked %d)\n",
                     r, old.sa_handler == SIG_DFL, m, sigismember(&prev, SIGUSR2));
    if (n > 0)
        write(1, buf, (size_t)n);
}
