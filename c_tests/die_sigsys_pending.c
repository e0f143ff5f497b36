/*
 * Hard case: SIGSYS raised while blocked, delivered (default action) when
 * the program unblocks it.
 *
 * Why it is hard for a syscall interposer: the interposer cannot really
 * block SIGSYS (its traps would kill the process), so the program's "blocked"
 * SIGSYS must be held back by the interposer, reported by sigpending, and
 * delivered with the default action (death by SIGSYS) at the moment the
 * program unblocks it, not earlier and not never.
 *
 * What it checks: block SIGSYS, raise(SIGSYS), the process is still alive
 * and sigpending lists SIGSYS, a line is printed; then sigprocmask unblocks
 * it: death by SIGSYS before the following line is printed.
 * RLIMIT_CORE is set to 0 so no core file appears in cwd.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void out(const char *s)
{
    if (write(1, s, strlen(s)) < 0)
        _exit(5);
}

int main(void)
{
    struct rlimit rl = { 0, 0 };
    setrlimit(RLIMIT_CORE, &rl);
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGSYS);
    sigprocmask(SIG_BLOCK, &m, NULL);
    raise(SIGSYS);
    out("die_sigsys_pending: alive after raise(SIGSYS) while blocked\n");
    sigset_t pend;
    sigemptyset(&pend);
    sigpending(&pend);
    out(sigismember(&pend, SIGSYS) == 1 ? "die_sigsys_pending: SIGSYS is pending\n"
                                        : "FAIL: SIGSYS not reported pending\n");
    for (int i = 0; i < 100; i++)
        getppid(); /* more syscalls while it is pending */
    out("die_sigsys_pending: unblocking SIGSYS\n");
    sigprocmask(SIG_UNBLOCK, &m, NULL);
    out("FAIL: still alive after unblocking SIGSYS\n");
    return 1;
}
