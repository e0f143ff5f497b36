/*
 * The program's own seccomp filter against the calls an interposer answers
 * itself (without making them, or making them with other arguments):
 * rt_sigprocmask, sigaltstack, rt_sigpending, rt_sigaction of SIGSEGV,
 * readlink("/proc/self/exe"), arch_prctl(ARCH_GET_GS), membarrier(QUERY),
 * prctl(PR_SET_SYSCALL_USER_DISPATCH) (refused with EBUSY by the
 * interposer), exit_group.  Natively the kernel runs
 * the filter before any call does anything, with the program's registers:
 * each verdict must come out the same.
 *
 * The filter's rules name argument values only this program passes (the
 * address of one of its variables, an odd cpu_id, exit code 77), so that
 * the interposer's own calls of the same syscalls are never refused.
 * Checked: RET_ERRNO (each call fails with the filter's errno, and does
 * nothing), RET_TRAP (SIGSYS with si_code, si_errno, si_syscall, si_arch,
 * si_call_addr == RIP, RAX == the number at entry; the handler's RAX the
 * result), RET_TRAP with SIGSYS blocked or at SIG_DFL (the process dies of
 * SIGSYS), RET_KILL_PROCESS, RET_KILL_THREAD of the only thread (SIGSYS),
 * RET_KILL_THREAD of one thread of two (that thread ends, the process goes
 * on).  Each call is made a few times before the filter exists, so that
 * its site is patched (fast path) when the interposer patches.
 */
#include "common.h"

#include <asm/prctl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/membarrier.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <ucontext.h>

#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1
#endif
#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#endif

#define MAGIC 0x4242
#define TRAP_DATA 0x55
#define ODD_CPU 0x1234

static sigset_t deny_set, kill_set, kill_thread_set;
static uint64_t pend_set, trap_dfl_set;
static stack_t deny_ss, kill_ss;
static char deny_path[] = "/proc/self/exe";
static unsigned long deny_gs;

static struct sock_filter prog[256];
static int n_insns;

static void emit(struct sock_filter f)
{
    prog[n_insns++] = f;
}

#define ARG_LO(i) (offsetof(struct seccomp_data, args) + 8 * (i))
#define ARG_HI(i) (ARG_LO(i) + 4)

/* nr == `nr` && args[i] == v  ->  ret `ret` */
static void rule(int nr, int i, uint64_t v, uint32_t ret)
{
    emit((struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
    emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 5));
    emit((struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(i)));
    emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)v, 0, 3));
    emit((struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_HI(i)));
    emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)(v >> 32), 0, 1));
    emit((struct sock_filter)BPF_STMT(BPF_RET | BPF_K, ret));
}

static void begin(void)
{
    n_insns = 0;
    emit((struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
    emit((struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
    emit((struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
}

static int install(void)
{
    emit((struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    struct sock_fprog fp = {.len = (unsigned short)n_insns, .filter = prog};
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fp);
}

static volatile int g_traps, g_bad;

static void on_sigsys(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    g_traps++;
    if (sig != SIGSYS || si->si_code != SYS_SECCOMP)
        g_bad |= 1;
    if (si->si_syscall != SYS_rt_sigpending || si->si_arch != AUDIT_ARCH_X86_64)
        g_bad |= 2;
    if (si->si_errno != TRAP_DATA)
        g_bad |= 4;
    if ((uintptr_t)si->si_call_addr != (uintptr_t)uc->uc_mcontext.gregs[REG_RIP])
        g_bad |= 8;
    if (uc->uc_mcontext.gregs[REG_RAX] != SYS_rt_sigpending)
        g_bad |= 16;
    uc->uc_mcontext.gregs[REG_RAX] = MAGIC;
}

/* Each call, allowed, before the filter: its site is patched if it can be. */
static void warm_up(void)
{
    sigset_t none, old;
    sigemptyset(&none);
    stack_t ss;
    struct sigaction sa;
    char buf[256];
    unsigned long gs;
    for (int i = 0; i < 4; i++) {
        sigprocmask(SIG_BLOCK, &none, &old);
        sigaltstack(NULL, &ss);
        uint64_t p;
        syscall(SYS_rt_sigpending, &p, 8);
        sigaction(SIGSEGV, NULL, &sa);
        syscall(SYS_readlink, "/proc/self/exe", buf, sizeof buf);
        syscall(SYS_arch_prctl, ARCH_GET_GS, &gs);
        syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    }
}

static void show(const char *what, long r)
{
    say("%s: %ld errno %s\n", what, r, r < 0 ? strerror(errno) : "-");
}

static void errno_verdicts(void)
{
    sigset_t before, after;
    sigprocmask(SIG_BLOCK, NULL, &before);
    sigaddset(&deny_set, SIGUSR1);
    show("rt_sigprocmask refused", sigprocmask(SIG_BLOCK, &deny_set, NULL));
    sigprocmask(SIG_BLOCK, NULL, &after);
    say("mask unchanged: %d\n", sigismember(&after, SIGUSR1) == sigismember(&before, SIGUSR1));

    stack_t now;
    deny_ss.ss_sp = malloc(65536);
    deny_ss.ss_size = 65536;
    show("sigaltstack refused", sigaltstack(&deny_ss, NULL));
    sigaltstack(NULL, &now);
    say("altstack unchanged: %d\n", now.ss_sp != deny_ss.ss_sp);

    struct sigaction sa = {0}, old;
    sa.sa_handler = SIG_IGN;
    show("rt_sigaction(SIGSEGV) refused", sigaction(SIGSEGV, &sa, NULL));
    show("rt_sigaction(SIGSEGV) query refused", sigaction(SIGSEGV, NULL, &old));
    sa.sa_handler = SIG_IGN;
    show("rt_sigaction(SIGUSR2) allowed", sigaction(SIGUSR2, &sa, NULL));

    char buf[256];
    show("readlink(/proc/self/exe) refused", syscall(SYS_readlink, deny_path, buf, sizeof buf));
    show("arch_prctl(ARCH_GET_GS) refused", syscall(SYS_arch_prctl, ARCH_GET_GS, &deny_gs));
    show("membarrier(QUERY) refused", syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, ODD_CPU));
    show("prctl(PR_SET_SYSCALL_USER_DISPATCH) refused", prctl(PR_SET_SYSCALL_USER_DISPATCH, 0, ODD_CPU, 0, 0));
    show("exit_group(77) refused", syscall(SYS_exit_group, 77));
}

static void trap_verdict(void)
{
    struct sigaction sa = {0};
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSYS, &sa, NULL);
    for (int i = 0; i < 3; i++) {
        long r = syscall(SYS_rt_sigpending, &pend_set, 8);
        say("rt_sigpending trapped: %s\n", r == MAGIC ? "result from the handler" : "FAIL: other result");
    }
    say("traps %d, bad fields %#x\n", g_traps, g_bad);
}

static void no_core(void)
{
    struct rlimit r = {0, 0};
    setrlimit(RLIMIT_CORE, &r);
}

static void report_child(const char *what, pid_t pid)
{
    int st;
    if (waitpid(pid, &st, 0) != pid) {
        say("FAIL: %s: waitpid\n", what);
        return;
    }
    if (WIFSIGNALED(st))
        say("%s: killed by signal %d\n", what, WTERMSIG(st));
    else
        say("%s: exited %d\n", what, WEXITSTATUS(st));
}

static void *kill_this_thread(void *arg)
{
    (void)arg;
    sigprocmask(SIG_BLOCK, &kill_thread_set, NULL);
    say("FAIL: thread survived KILL_THREAD\n");
    return NULL;
}

static void kill_verdicts(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        no_core();
        begin();
        rule(SYS_sigaltstack, 1, (uintptr_t)&kill_ss, SECCOMP_RET_KILL_PROCESS);
        install();
        sigaltstack(NULL, &kill_ss);
        _exit(3);
    }
    report_child("KILL_PROCESS on sigaltstack", pid);

    pid = fork();
    if (pid == 0) {
        no_core();
        begin();
        rule(SYS_rt_sigprocmask, 1, (uintptr_t)&kill_set, SECCOMP_RET_KILL_THREAD);
        install();
        sigprocmask(SIG_BLOCK, &kill_set, NULL);
        _exit(3);
    }
    report_child("KILL_THREAD of the only thread", pid);

    pid = fork();
    if (pid == 0) {
        no_core();
        begin();
        rule(SYS_rt_sigprocmask, 1, (uintptr_t)&kill_thread_set, SECCOMP_RET_KILL_THREAD);
        install();
        pthread_t t;
        pthread_create(&t, NULL, kill_this_thread, NULL);
        pthread_join(t, NULL);
        say("KILL_THREAD of one of two: the other goes on\n");
        _exit(4);
    }
    report_child("KILL_THREAD of one of two", pid);

    pid = fork();
    if (pid == 0) {
        no_core();
        sigset_t sys;
        sigemptyset(&sys);
        sigaddset(&sys, SIGSYS);
        sigprocmask(SIG_BLOCK, &sys, NULL);
        syscall(SYS_rt_sigpending, &pend_set, 8);
        _exit(5);
    }
    report_child("TRAP with SIGSYS blocked", pid);

    pid = fork();
    if (pid == 0) {
        no_core();
        signal(SIGSYS, SIG_DFL);
        begin();
        rule(SYS_rt_sigpending, 0, (uintptr_t)&trap_dfl_set, SECCOMP_RET_TRAP);
        install();
        syscall(SYS_rt_sigpending, &trap_dfl_set, 8);
        _exit(6);
    }
    report_child("TRAP with SIGSYS at SIG_DFL", pid);
}

int main(void)
{
    warm_up();
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        say("FAIL: no_new_privs\n");
        return 1;
    }
    begin();
    rule(SYS_rt_sigprocmask, 1, (uintptr_t)&deny_set, SECCOMP_RET_ERRNO | EPERM);
    rule(SYS_sigaltstack, 0, (uintptr_t)&deny_ss, SECCOMP_RET_ERRNO | EACCES);
    rule(SYS_rt_sigaction, 0, SIGSEGV, SECCOMP_RET_ERRNO | EPERM);
    rule(SYS_readlink, 0, (uintptr_t)deny_path, SECCOMP_RET_ERRNO | ENOENT);
    rule(SYS_arch_prctl, 1, (uintptr_t)&deny_gs, SECCOMP_RET_ERRNO | EPERM);
    rule(SYS_membarrier, 2, ODD_CPU, SECCOMP_RET_ERRNO | EPERM);
    /* Not on its first argument: the interposer arms SUD in a forked child. */
    rule(SYS_prctl, 2, ODD_CPU, SECCOMP_RET_ERRNO | EPERM);
    rule(SYS_exit_group, 0, 77, SECCOMP_RET_ERRNO | EPERM);
    rule(SYS_rt_sigpending, 0, (uintptr_t)&pend_set, SECCOMP_RET_TRAP | TRAP_DATA);
    if (install() != 0) {
        say("FAIL: install: %s\n", strerror(errno));
        return 1;
    }
    errno_verdicts();
    trap_verdict();
    kill_verdicts();
    say("done\n");
    return 0;
}
