// usertrap-test: exec
/*
 * Hard case: syscalls made with garbage in the upper half of rax.
 *
 * Why it is hard for a syscall interposer: the kernel runs the call named
 * by the low 32 bits of rax (sign-extended; entry_64.S's `movslq %eax`),
 * and seccomp and Syscall User Dispatch name that number in si_syscall,
 * but the trapped frame's rax keeps all 64 bits. An interposer that looks
 * the number up with the upper bits does not recognise the calls it must
 * emulate, and lets the kernel run them as they are: a mask that blocks
 * its own SIGSYS, an execve that skips its launcher (the new image then
 * dies of the inherited seccomp filter), an exit_group without a report.
 *
 * What it checks: getpid with bit 32 set is getpid; rt_sigprocmask with
 * bit 33 set blocks SIGUSR1 and SIGSYS as the program asked (later calls
 * still work, and a SIGSYS sent meanwhile stays pending); execve with bit
 * 32 set runs the program again (`again`), which ends with exit_group
 * with bit 32 set and status 3.
 */
#include "common.h"

#define HIGH (1ul << 32)

static long raw3(unsigned long nr, long a, long b, long c)
{
    long r;
    register long rdx __asm__("rdx") = c;
    register long r10 __asm__("r10") = 8;
    __asm__ volatile("syscall" : "=a"(r) : "a"(nr), "D"(a), "S"(b), "r"(rdx), "r"(r10) : "rcx", "r11", "memory");
    return r;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "again") == 0) {
        say("again: getpid with bit 32 set: %s\n", raw3(SYS_getpid | HIGH, 0, 0, 0) == getpid() ? "ok" : "FAIL");
        raw3(SYS_exit_group | HIGH, 3, 0, 0);
        say("FAIL: exit_group returned\n");
        return 1;
    }
    say("getpid with bit 32 set: %s\n", raw3(SYS_getpid | HIGH, 0, 0, 0) == getpid() ? "ok" : "FAIL");

    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGSYS);
    long r = raw3(SYS_rt_sigprocmask | (HIGH << 1), SIG_BLOCK, (long)&set, (long)&old);
    EXPECT_EQ("rt_sigprocmask with bit 33 set", r, 0);
    sigset_t now;
    sigprocmask(SIG_BLOCK, NULL, &now);
    say("SIGUSR1 blocked: %d, SIGSYS blocked: %d\n", sigismember(&now, SIGUSR1), sigismember(&now, SIGSYS));
    kill(getpid(), SIGSYS);
    sigset_t pending;
    sigpending(&pending);
    say("SIGSYS pending: %d\n", sigismember(&pending, SIGSYS));
    sigset_t sys;
    sigemptyset(&sys);
    sigaddset(&sys, SIGSYS);
    struct timespec zero = {0, 0};
    say("SIGSYS taken: %d\n", sigtimedwait(&sys, NULL, &zero));
    sigprocmask(SIG_SETMASK, &old, NULL);

    char *again[] = {argv[0], "again", NULL};
    extern char **environ;
    r = raw3(SYS_execve | HIGH, (long)"/proc/self/exe", (long)again, (long)environ);
    say("FAIL: execve with bit 32 set returned %ld\n", r);
    return 1;
}
