/*
 * A seccomp filter that refuses rt_sigaction (and prctl's Syscall User
 * Dispatch), installed before an exec: the new image starts under it.
 * Natively the new image runs (it never installs a handler); an
 * interposer needs rt_sigaction (and, for SUD, that prctl) before the
 * program's first instruction.  Run by tests/c_programs.rs
 * (a_filter_from_before_the_start): under SUD the interposer steps aside
 * for the new image and says so; under the seccomp backend its own filter,
 * inherited, traps every syscall, so it must refuse, and says so.
 */
#include "common.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>

static void child(void)
{
    struct sigaction sa;
    long r = syscall(SYS_rt_sigaction, SIGUSR1, NULL, &sa, 8);
    say("child: rt_sigaction query: %ld errno %s\n", r, r < 0 ? strerror(errno) : "-");
    r = prctl(59 /* PR_SET_SYSCALL_USER_DISPATCH */, 0, 0, 0, 0);
    say("child: prctl(PR_SET_SYSCALL_USER_DISPATCH): %ld errno %s\n", r, r < 0 ? strerror(errno) : "-");
    say("child: getpid works: %d\n", getpid() > 0);
    exit(3);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "child") == 0)
        child();
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        say("FAIL: no_new_privs\n");
        return 1;
    }
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_rt_sigaction, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_prctl, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 59, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fp = {.len = sizeof f / sizeof f[0], .filter = f};
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fp) != 0) {
        say("FAIL: seccomp: %s\n", strerror(errno));
        return 1;
    }
    say("filter installed; exec\n");
    char *args[] = {argv[0], "child", NULL};
    execv("/proc/self/exe", args);
    say("FAIL: execv: %s\n", strerror(errno));
    return 1;
}
