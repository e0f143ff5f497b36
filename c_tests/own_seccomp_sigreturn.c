/*
 * The program's own seccomp filter refuses rt_sigreturn, the call that ends
 * every signal handler (an interposer performs it for the program's
 * handlers itself).  Natively the filter decides before the call does
 * anything:
 * - RET_ERRNO: rt_sigreturn returns -errno to the instruction after the
 *   restorer's `syscall`, on the handler's stack, with the handler's mask
 *   still in force; the program goes on from there (here: its own restorer
 *   reports the result and exits);
 * - RET_KILL_PROCESS, RET_KILL_THREAD: the process dies of SIGSYS, with
 *   glibc's restorer or the program's own, when the handler returns, and
 *   not before: the calls made before the signal (an interposer returns
 *   from its own handlers too) work.
 * Each case runs in a forked child; the parent prints how it ended.
 */
#include "common.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>

/* struct sigaction as the kernel takes it (x86-64). */
struct ksigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};
#define SA_RESTORER_FLAG 0x04000000

static volatile long g_sigreturn_result;

void after_failed_sigreturn(void);
/* Our own restorer: rt_sigreturn, then, if that comes back, what it
 * returned is kept and after_failed_sigreturn runs (16-byte aligned stack). */
__asm__(".text\n"
        ".globl own_restorer\n"
        "own_restorer:\n"
        "    mov $15, %eax\n"
        "    syscall\n"
        "    mov %rax, g_sigreturn_result(%rip)\n"
        "    and $-16, %rsp\n"
        "    call after_failed_sigreturn\n"
        "    ud2\n");
void own_restorer(void);

static volatile int g_handled;

static void on_usr1(int sig)
{
    (void)sig;
    g_handled++;
}

void after_failed_sigreturn(void)
{
    sigset_t now;
    sigprocmask(SIG_BLOCK, NULL, &now);
    say("handled %d, rt_sigreturn returned %ld, SIGUSR1 still blocked: %d\n", g_handled, g_sigreturn_result,
        sigismember(&now, SIGUSR1));
    _exit(7);
}

static void install(uint32_t verdict)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_rt_sigreturn, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, verdict),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fp = {.len = sizeof f / sizeof f[0], .filter = f};
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fp) != 0)
        say("FAIL: seccomp: %s\n", strerror(errno));
}

static void child(uint32_t verdict, int own)
{
    struct rlimit r = {0, 0};
    setrlimit(RLIMIT_CORE, &r);
    if (own) {
        struct ksigaction ka = {on_usr1, SA_RESTORER_FLAG, own_restorer, 0};
        if (syscall(SYS_rt_sigaction, SIGUSR1, &ka, NULL, 8) != 0)
            say("FAIL: rt_sigaction: %s\n", strerror(errno));
    } else {
        signal(SIGUSR1, on_usr1);
    }
    install(verdict);
    /* Calls before any handler returns: natively nothing refuses them. */
    say("filter installed, pid known: %d\n", getpid() > 0);
    raise(SIGUSR1);
    say("after the handler (handled %d)\n", g_handled);
    _exit(0);
}

static void run(const char *what, uint32_t verdict, int own)
{
    pid_t pid = fork();
    if (pid == 0)
        child(verdict, own);
    int st;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st))
        say("%s: killed by signal %d\n", what, WTERMSIG(st));
    else
        say("%s: exited %d\n", what, WEXITSTATUS(st));
}

int main(void)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        say("FAIL: no_new_privs\n");
        return 1;
    }
    run("ERRNO(EPERM), own restorer", SECCOMP_RET_ERRNO | EPERM, 1);
    run("ERRNO(0), own restorer", SECCOMP_RET_ERRNO | 0, 1);
    run("KILL_PROCESS, own restorer", SECCOMP_RET_KILL_PROCESS, 1);
    run("KILL_PROCESS, glibc's restorer", SECCOMP_RET_KILL_PROCESS, 0);
    run("KILL_THREAD, glibc's restorer", SECCOMP_RET_KILL_THREAD, 0);
    say("done\n");
    return 0;
}
