/*
 * Hard case: death by a signal raised by the program itself (SIGTERM).
 *
 * Why it is hard for a syscall interposer: raise() is tgkill on the calling
 * thread, run through the interposer; the signal is delivered as the trapped
 * syscall returns (possibly while the interposer's handler frame is still
 * live), and the default action must terminate the process by SIGTERM.
 *
 * What it checks: stdout line, raise(SIGTERM): death by SIGTERM.
 */
#include <signal.h>
#include <stdio.h>

int main(void)
{
    printf("die_sigterm_raise: raising SIGTERM\n");
    fflush(stdout);
    raise(SIGTERM);
    printf("FAIL: still alive after raise(SIGTERM)\n");
    return 1;
}
