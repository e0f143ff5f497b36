// usertrap-test: exec
/*
 * Hard case: emulated calls whose `int` arguments carry garbage in the
 * upper half of their register.
 *
 * Why it is hard for a syscall interposer: the kernel casts each argument
 * register to the type of its prototype, so rt_sigaction(SIGSYS | 1 << 32)
 * is SIGSYS's, prctl(PR_SET_TSC | 1 << 32) turns the TSC off, and
 * execveat's flags are an int. An emulation that compares the whole
 * register refuses what the kernel takes (EINVAL), or does not recognise
 * the call and lets the kernel run it as it is: the program's own action
 * installed for the interposer's SIGSYS, a TSC turned off under its clock.
 *
 * What it checks (the same natively and under the library): actions set
 * and asked for with bit 32 set in the signal number (SIGUSR2, and SIGSYS
 * set to SIG_IGN, then calls still work); rt_sigprocmask's `how`;
 * arch_prctl(ARCH_GET_GS); membarrier's commands; seccomp's
 * GET_ACTION_AVAIL; prctl(PR_SET_NAME/PR_GET_NAME), and PR_SET_TSC in a
 * fork child (whose calls then still work); execveat with bit 32 set in its dirfd and flags,
 * into the program again (`again`).
 */
#include "common.h"

#include <asm/prctl.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>

#define HIGH (1l << 32)
#ifndef MEMBARRIER_CMD_GET_REGISTRATIONS
#define MEMBARRIER_CMD_GET_REGISTRATIONS (1 << 9)
#endif

struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    unsigned long mask;
};

static void on_usr2(int sig) { (void)sig; }

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "again") == 0) {
        say("again: started by execveat\n");
        return 0;
    }
    struct kernel_sigaction act = {0}, old = {0};
    SAY_CALL("rt_sigaction SIGUSR2|HIGH query", SYS_rt_sigaction, SIGUSR2 | HIGH, 0l, &old, 8l);
    act.handler = on_usr2;
    SAY_CALL("rt_sigaction SIGUSR2|HIGH set", SYS_rt_sigaction, SIGUSR2 | HIGH, &act, 0l, 8l);
    SAY_CALL("rt_sigaction SIGUSR2 query", SYS_rt_sigaction, SIGUSR2, 0l, &old, 8l);
    say("  SIGUSR2 handler is ours: %d\n", old.handler == on_usr2);
    act.handler = SIG_IGN;
    SAY_CALL("rt_sigaction SIGSYS|HIGH set SIG_IGN", SYS_rt_sigaction, SIGSYS | HIGH, &act, 0l, 8l);
    SAY_CALL("rt_sigaction SIGSYS query", SYS_rt_sigaction, SIGSYS, 0l, &old, 8l);
    say("  SIGSYS ignored: %d\n", old.handler == SIG_IGN);
    act.handler = SIG_DFL;
    SAY_CALL("rt_sigaction SIGSYS|HIGH set SIG_DFL", SYS_rt_sigaction, SIGSYS | HIGH, &act, 0l, 8l);
    say("  getppid still works: %d\n", (pid_t)syscall(SYS_getppid) == getppid());

    sigset_t set, now;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    SAY_CALL("rt_sigprocmask SIG_BLOCK|HIGH", SYS_rt_sigprocmask, SIG_BLOCK | HIGH, &set, 0l, 8l);
    sigprocmask(SIG_BLOCK, NULL, &now);
    say("  SIGUSR1 blocked: %d\n", sigismember(&now, SIGUSR1));
    sigprocmask(SIG_UNBLOCK, &set, NULL);

    unsigned long gs = 1;
    SAY_CALL("arch_prctl ARCH_GET_GS|HIGH", SYS_arch_prctl, ARCH_GET_GS | HIGH, &gs);
    say("  GS base: %#lx\n", gs);

    long regs = syscall(SYS_membarrier, MEMBARRIER_CMD_GET_REGISTRATIONS, 0l, 0l);
    errno = 0;
    long regs_high = syscall(SYS_membarrier, MEMBARRIER_CMD_GET_REGISTRATIONS | HIGH, HIGH, HIGH);
    say("membarrier GET_REGISTRATIONS|HIGH as without: %d (errno %d)\n", regs == regs_high, errno);
    SAY_CALL("membarrier SYNC_CORE|HIGH (never registered)", SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE | HIGH, 0l, 0l);

    unsigned int action = SECCOMP_RET_TRAP;
    SAY_CALL("seccomp GET_ACTION_AVAIL|HIGH", SYS_seccomp, SECCOMP_GET_ACTION_AVAIL | HIGH, HIGH, &action);

    char name[32] = {0};
    SAY_CALL("prctl PR_SET_NAME|HIGH", SYS_prctl, PR_SET_NAME | HIGH, "renamed", 0l, 0l, 0l);
    SAY_CALL("prctl PR_GET_NAME|HIGH", SYS_prctl, PR_GET_NAME | HIGH, name, 0l, 0l, 0l);
    say("  name: %s\n", name);
    /* In a child: an exec'd image with the TSC off dies in glibc's loader. */
    pid_t child = fork();
    REQUIRE(child >= 0, "fork");
    if (child == 0) {
        SAY_CALL("prctl PR_SET_TSC|HIGH, PR_TSC_SIGSEGV|HIGH", SYS_prctl, PR_SET_TSC | HIGH, PR_TSC_SIGSEGV | HIGH, 0l, 0l, 0l);
        int tsc = 0;
        SAY_CALL("prctl PR_GET_TSC", SYS_prctl, PR_GET_TSC, &tsc, 0l, 0l, 0l);
        say("  TSC mode: %d\n", tsc);
        for (int i = 0; i < 100; i++)
            syscall(SYS_getppid);
        say("  calls after it: ok\n");
        _exit(0);
    }
    int st = wait_status(child);
    say("  child: exited %d, status %d\n", WIFEXITED(st), WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));

    char *again[] = {argv[0], "again", NULL};
    extern char **environ;
    errno = 0;
    long r = syscall(SYS_execveat, (long)(unsigned)AT_FDCWD | HIGH, "/proc/self/exe", again, environ, HIGH);
    say("FAIL: execveat with bit 32 set in dirfd and flags returned %ld (errno %d)\n", r, errno);
    return 1;
}
