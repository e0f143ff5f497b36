/*
 * Signal dispositions inherited across exec, as a preloaded library's first
 * image sees them: the caller (tests/exec.rs) ignores SIGHUP, SIGUSR1,
 * SIGBUS (one the library owns: its disposition is virtual) and signal 37
 * (a real-time signal) and then execs this program natively with
 * LD_PRELOAD set. The library reads which signals still have their default
 * disposition from /proc/self/status at start instead of asking for each:
 * an ignored signal it took for a default one would be reported as SIG_DFL
 * and would kill the process when raised.
 * Prints each signal's disposition, raises the ignored ones, and says it
 * survived; SIGTERM and SIGUSR2 stay default (and are not raised).
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

static const char *disposition(int sig)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    if (sigaction(sig, NULL, &sa) != 0)
        return "error";
    if (sa.sa_handler == SIG_IGN)
        return "ignored";
    if (sa.sa_handler == SIG_DFL)
        return "default";
    return "handler";
}

int main(void)
{
    int sigs[] = { SIGHUP, SIGUSR1, SIGBUS, 37, SIGTERM, SIGUSR2 };
    for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        printf("signal %d: %s\n", sigs[i], disposition(sigs[i]));
    fflush(stdout);
    for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        if (strcmp(disposition(sigs[i]), "ignored") == 0 && raise(sigs[i]) != 0)
            printf("raise %d failed\n", sigs[i]);
    }
    printf("still running after raising the ignored signals\n");
    return 0;
}
