// usertrap-test: exec
/*
 * Signal calls in a library constructor that runs before usertrap's
 * (c_tests/lib/early_ctor.c), in an exec'd image.
 *
 * Why it is hard: in an image exec'd under the library, the launcher
 * serves every call until the library's constructor takes over, and it
 * patches libc's sites that the exec'ing image carried as soon as the
 * loader maps libc. This program calls sigaction and sigprocmask before
 * it execs itself, so in the new image the early constructor's calls take
 * the launcher's fast versions: the handler it sets and the signal it
 * blocks must be the program's when main runs, as natively.
 *
 * Stage 0 queries the SIGUSR1 action and the mask (patching their sites)
 * and execs stage 1, which raises SIGUSR1 and prints what it sees.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

extern volatile sig_atomic_t early_ctor_got;

int main(int argc, char **argv)
{
    if (argc < 2) {
        struct sigaction old;
        sigset_t cur;
        int r = sigaction(SIGUSR1, NULL, &old);
        int m = sigprocmask(SIG_BLOCK, NULL, &cur);
        printf("stage 0: sigaction %d, sigprocmask %d\n", r, m);
        fflush(stdout);
        execl(argv[0], argv[0], "1", (char *)NULL);
        perror("execl");
        return 127;
    }
    raise(SIGUSR1);
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    struct sigaction sa;
    sigaction(SIGUSR1, NULL, &sa);
    printf("stage 1: handler ran for %d, handler kept %d, SIGUSR2 blocked %d\n", (int)early_ctor_got,
           sa.sa_handler != SIG_DFL, sigismember(&cur, SIGUSR2));
    return 0;
}
