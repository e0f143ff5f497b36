/*
 * Hard case: a signal the kernel forces on the program as a syscall
 * returns, not for a faulting instruction: the `uretprobe` syscall (335,
 * Linux 6.11+) made outside a uretprobe trampoline raises SIGILL (si_code
 * SI_KERNEL) and returns -1. (Kernels without it answer ENOSYS: the
 * comparison with the native run still holds.)
 *
 * Why it is hard for a syscall interposer: it runs the program's syscall
 * itself, from its own code and inside its own signal handler, so the
 * SIGILL arrives there, looking like a fault of the interposer's code; and
 * a forced signal whose action is the default cannot be left to "fault
 * again when the instruction runs again", as a real fault would: nothing
 * there faults again, and the process would go on.
 *
 * What it checks, each in a fork child whose end the parent prints:
 *   default action: the child dies of SIGILL at the first call;
 *   a handler: it runs at each call, with SI_KERNEL, and for the first call
 *     (always the slow path: its site has not trapped before) sees the
 *     program's state at the syscall's return (rip just after it);
 *   SIGILL blocked, SIGILL ignored: the child dies of SIGILL (forced).
 */
#include "common.h"
#include <ucontext.h>

extern char after_uretprobe[];

static long uretprobe_call(void)
{
    long ret;
    __asm__ volatile("syscall\n\t"
                     ".globl after_uretprobe\n"
                     "after_uretprobe:"
                     : "=a"(ret)
                     : "a"(335L)
                     : "rcx", "r11", "memory");
    return ret;
}

static volatile int calls;

static void on_sigill(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    calls++;
    if (calls == 1)
        say("handler: signal %d si_code %#x, at the syscall's return: %s\n", sig, si->si_code,
            uc->uc_mcontext.gregs[REG_RIP] == (greg_t)after_uretprobe ? "yes" : "no");
    else
        say("handler: signal %d si_code %#x\n", sig, si->si_code);
}

static void report(const char *what, int st)
{
    if (WIFSIGNALED(st))
        say("%s: killed by signal %d\n", what, WTERMSIG(st));
    else
        say("%s: exited %d\n", what, WEXITSTATUS(st));
}

int main(void)
{
    static const char *const cases[] = { "default", "handler", "blocked", "ignored" };
    for (int c = 0; c < 4; c++) {
        pid_t pid = fork();
        REQUIRE(pid >= 0, "fork");
        if (pid == 0) {
            if (c == 1) {
                struct sigaction sa;
                memset(&sa, 0, sizeof sa);
                sa.sa_sigaction = on_sigill;
                sa.sa_flags = SA_SIGINFO;
                sigaction(SIGILL, &sa, NULL);
            } else if (c == 2) {
                sigset_t m;
                sigemptyset(&m);
                sigaddset(&m, SIGILL);
                sigprocmask(SIG_BLOCK, &m, NULL);
            } else if (c == 3) {
                signal(SIGILL, SIG_IGN);
            }
            for (int i = 0; i < 3; i++) {
                long r = uretprobe_call();
                say("%s: call %d returned %ld\n", cases[c], i, r);
            }
            _exit(0);
        }
        report(cases[c], wait_status(pid));
    }
    return finish();
}
