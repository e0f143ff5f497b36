/*
 * Hard case: the program sandboxes itself with a seccomp allow-list (read,
 * write, exit, exit_group, rt_sigreturn, getppid; anything else kills the
 * process) and goes on working inside it.
 *
 * Why it is hard for a syscall interposer: the program's filter applies to
 * the interposer's own syscalls too (it cannot tell them apart), so every
 * syscall the interposer makes for itself after that point (gettid to find
 * its thread state, a mask change, a clock, opening its report at exit)
 * kills the process.  It must need none on the path of an allowed syscall,
 * and give up (and say so) what it cannot do inside the sandbox.
 *
 * What it checks: after the filter, getppid (glibc and raw), write and read
 * of a pipe made before, a loop of them, and exit_group with status 0.  A
 * note the interposer prints about what the filter forbids it goes to
 * stderr, which the program points at /dev/null before the filter (the
 * output compared is stdout and the exit status).
 */
#include "common.h"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>

int main(void)
{
    int p[2];
    REQUIRE(pipe(p) == 0, "pipe");
    pid_t ppid = getppid();
    int null = open("/dev/null", O_WRONLY);
    REQUIRE(null >= 0 && dup2(null, 2) == 2, "stderr to /dev/null");
    close(null);

    struct sock_filter rules[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_read, 6, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_write, 5, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_exit, 4, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_exit_group, 3, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_rt_sigreturn, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { sizeof rules / sizeof rules[0], rules };
    REQUIRE(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "no_new_privs");
    REQUIRE(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0, "seccomp filter");

    /* From here on: only the allowed syscalls (say() is one write). */
    int s = section_begin();
    EXPECT_EQ("getppid", getppid(), ppid);
    EXPECT_EQ("raw getppid", raw_syscall0(SYS_getppid), ppid);
    int bad = 0;
    for (int i = 0; i < 1000; i++) {
        char c = (char)i, in = 0;
        if (write(p[1], &c, 1) != 1 || read(p[0], &in, 1) != 1 || in != c || getppid() != ppid)
            bad++;
    }
    EXPECT_EQ("write/read/getppid x1000", bad, 0);
    section_end(s, "inside an allow-list filter (read, write, exit, exit_group, rt_sigreturn, getppid)");
    say("result: %s\n", t_failure_count() ? "failed" : "all ok");
    raw_syscall1(SYS_exit_group, t_failure_count() ? 1 : 0);
    return 99;
}
