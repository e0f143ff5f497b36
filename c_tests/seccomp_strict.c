/*
 * Hard case: seccomp strict mode (SECCOMP_SET_MODE_STRICT, or
 * prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT)): only read, write, exit and
 * rt_sigreturn; any other syscall kills the thread with SIGKILL; rdtsc
 * faults (the kernel turns the TSC off).
 *
 * Why it is hard for a syscall interposer: it cannot make a syscall of its
 * own in strict mode (the kernel kills it), and a seccomp filter it installed
 * makes the kernel refuse strict mode (EINVAL), so the program would run
 * unsandboxed.  Its own timing with rdtsc faults too.
 *
 * What it checks, each in a child: strict mode entered by seccomp(2), a
 * write, then exit(7) -> status 7; a forbidden getppid -> killed by SIGKILL
 * after its write; entered by prctl, then rdtsc -> killed by SIGSEGV; a
 * pipe read and write work inside.
 */
#include "common.h"

#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <x86intrin.h>

static int g_pipe[2];

static int run(int how, int then)
{
    pid_t pid = fork();
    if (pid == 0) {
        long r = how == 0 ? raw_syscall3(SYS_seccomp, SECCOMP_SET_MODE_STRICT, 0, 0)
                          : raw_syscall2(SYS_prctl, PR_SET_SECCOMP, SECCOMP_MODE_STRICT);
        if (r != 0)
            raw_syscall1(SYS_exit, 90);
        char c = 'x';
        if (raw_syscall3(SYS_write, g_pipe[1], &c, 1) != 1 || raw_syscall3(SYS_read, g_pipe[0], &c, 1) != 1)
            raw_syscall1(SYS_exit, 91);
        if (raw_syscall3(SYS_write, 1, "child: in strict mode\n", 22) != 22)
            raw_syscall1(SYS_exit, 92);
        if (then == 1)
            raw_syscall0(SYS_getppid);
        if (then == 2)
            (void)__rdtsc();
        raw_syscall1(SYS_exit, 7);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return st;
}

int main(void)
{
    REQUIRE(pipe(g_pipe) == 0, "pipe");
    int s = section_begin();
    int st = run(0, 0);
    EXPECT("seccomp(STRICT), write, exit(7): status 7", WIFEXITED(st) && WEXITSTATUS(st) == 7);
    section_end(s, "strict mode by seccomp(2): read, write and exit work");
    s = section_begin();
    st = run(0, 1);
    EXPECT("getppid in strict mode: killed by SIGKILL", WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    section_end(s, "strict mode: a forbidden syscall kills with SIGKILL");
    s = section_begin();
    st = run(1, 0);
    EXPECT("prctl(PR_SET_SECCOMP, STRICT), exit(7): status 7", WIFEXITED(st) && WEXITSTATUS(st) == 7);
    st = run(1, 2);
    EXPECT("rdtsc in strict mode: killed by SIGSEGV", WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    section_end(s, "strict mode by prctl: exit works, rdtsc faults");
    return finish();
}
