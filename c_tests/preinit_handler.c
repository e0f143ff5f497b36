/*
 * Dispositions set before any library's constructor runs: a function in the
 * executable's .preinit_array (run by the loader before every shared
 * library's initializer) installs a SIGUSR1 handler and ignores SIGUSR2.
 * Under the library, an exec'd image is started by usertrap-launcher, which
 * serves the loader's syscalls until the library's constructor takes over:
 * these dispositions are set through the launcher, and the library must
 * adopt them (the kernel holds the launcher's wrapper, unmapped afterwards).
 * Stage 0 execs this program again (stage 1), which checks what it sees
 * and raises both signals.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t got;

static void on_usr1(int sig, siginfo_t *info, void *uc)
{
    (void)info;
    (void)uc;
    got = sig;
}

static void early(int argc, char **argv, char **envp)
{
    (void)argc;
    (void)argv;
    (void)envp;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGUSR2, SIG_IGN);
}

__attribute__((section(".preinit_array"), used)) static void (*const preinit)(int, char **, char **) = early;

int main(int argc, char **argv)
{
    if (argc < 2) {
        printf("stage 0: exec stage 1\n");
        fflush(stdout);
        execl("/proc/self/exe", argv[0], "1", (char *)NULL);
        perror("execl");
        return 1;
    }
    struct sigaction q;
    sigaction(SIGUSR1, NULL, &q);
    printf("SIGUSR1: %s\n", q.sa_sigaction == on_usr1 && (q.sa_flags & SA_SIGINFO) ? "our handler" : "something else");
    sigaction(SIGUSR2, NULL, &q);
    printf("SIGUSR2: %s\n", q.sa_handler == SIG_IGN ? "ignored" : "something else");
    raise(SIGUSR1);
    printf("SIGUSR1 handled: %s\n", got == SIGUSR1 ? "yes" : "no");
    raise(SIGUSR2);
    printf("still running after SIGUSR2\n");
    return 0;
}
