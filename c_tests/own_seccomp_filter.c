/*
 * Hard case: the program installs its own seccomp BPF filters, including a
 * SECCOMP_RET_TRAP rule with its own SIGSYS handler.
 *
 * Why it is hard for a syscall interposer: filters stack, and the program's
 * filter also applies to the syscalls the interposer issues on its behalf
 * from its gate.  A RET_ERRNO result must reach the program as that errno; a
 * RET_TRAP for a syscall the interposer re-issued raises a second SIGSYS
 * inside the interposer (at the gate), which must be handed to the
 * program's handler as if it had come from the program's own call site:
 * si_code SYS_SECCOMP, si_syscall, si_arch, si_errno (the filter's data),
 * si_call_addr and RIP at the instruction after the program's `syscall`,
 * and the handler's REG_RAX becoming the result.  Interposer-internal
 * syscalls denied by the program's policy (mprotect with PROT_EXEC, a common
 * W^X rule) must not break interception.  Threads that existed before the
 * filter do not get it unless TSYNC is used.
 *
 * What it checks: NO_NEW_PRIVS + filter: getpriority -> EPERM, getegid ->
 * TRAP (data 0x77; handler sets RAX = 0x4242), mprotect(PROT_EXEC) -> EPERM,
 * everything else allowed.  getegid through glibc, syscall(3) and an inline
 * asm site (exact si_call_addr / RIP), siginfo fields, EPERM cases, normal
 * files and pipes, a new thread (inherits), a pre-existing thread (does not,
 * until a second filter is added with SECCOMP_FILTER_FLAG_TSYNC), a forked
 * child (inherits filter and handler), PR_GET_SECCOMP / PR_GET_NO_NEW_PRIVS.
 */
#include "common.h"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <ucontext.h>

#define MAGIC 0x4242
#define TRAP_DATA 0x77

#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1
#endif

static volatile int g_traps, g_bad;
static volatile uintptr_t g_expect_call_addr;
static volatile uintptr_t g_seen_call_addr, g_seen_rip;

static void on_sigsys(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    g_traps++;
    if (sig != SIGSYS)
        g_bad |= 1;
    if (si->si_code != SYS_SECCOMP)
        g_bad |= 2;
    if (si->si_syscall != SYS_getegid)
        g_bad |= 4;
    if (si->si_arch != AUDIT_ARCH_X86_64)
        g_bad |= 8;
    if (si->si_errno != TRAP_DATA)
        g_bad |= 16;
    g_seen_call_addr = (uintptr_t)si->si_call_addr;
    g_seen_rip = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    if (g_seen_call_addr != g_seen_rip)
        g_bad |= 32;
    uc->uc_mcontext.gregs[REG_RAX] = MAGIC;
}

static int install_filter(unsigned int flags, int with_rules)
{
    struct sock_filter rules[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpriority, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getegid, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP | TRAP_DATA),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_mprotect, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_filter allow_all[] = {
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog;
    if (with_rules) {
        prog.len = sizeof rules / sizeof rules[0];
        prog.filter = rules;
    } else {
        prog.len = 1;
        prog.filter = allow_all;
    }
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

/* getegid from an inline-asm site whose return address we know. */
static long asm_getegid(uintptr_t *after)
{
    long ret;
    uintptr_t a;
    __asm__ volatile("lea 1f(%%rip), %1\n\t"
                     "mov %1, %2\n\t"
                     "mov $108, %%eax\n\t"
                     "syscall\n"
                     "1:\n\t"
                     : "=&a"(ret), "=&r"(a), "=m"(g_expect_call_addr)
                     :
                     : "rcx", "r11", "memory");
    *after = a;
    return ret;
}

/* Everything a thread checks; returns failure bits. */
static int filtered_checks(void)
{
    int bad = 0;
    errno = 0;
    if (getpriority(PRIO_PROCESS, 0) != -1 || errno != EPERM)
        bad |= 1;
    int before = g_traps;
    if (getegid() != MAGIC)
        bad |= 2;
    if (syscall(SYS_getegid) != MAGIC)
        bad |= 4;
    if (g_traps != before + 2)
        bad |= 8;
    if (getppid() <= 0)
        bad |= 16;
    return bad;
}

static pthread_barrier_t g_bar;
static volatile int g_pre_before_bits = -1, g_pre_after_bits = -1;

static void *pre_existing(void *unused)
{
    (void)unused;
    pthread_barrier_wait(&g_bar); /* main installed the first filter (no TSYNC) */
    int bits = 0;
    errno = 0;
    int prio = getpriority(PRIO_PROCESS, 0);
    if (prio == -1 && errno == EPERM)
        bits |= 1; /* must not happen: no filter on this thread yet */
    if (getegid() == MAGIC)
        bits |= 2;
    g_pre_before_bits = bits;
    pthread_barrier_wait(&g_bar); /* checked */
    pthread_barrier_wait(&g_bar); /* main added a filter with TSYNC */
    g_pre_after_bits = filtered_checks();
    return NULL;
}

static void *new_thread(void *unused)
{
    (void)unused;
    return (void *)(intptr_t)filtered_checks();
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    REQUIRE(sigaction(SIGSYS, &sa, NULL) == 0, "sigaction SIGSYS");

    REQUIRE(pthread_barrier_init(&g_bar, NULL, 2) == 0, "barrier");
    pthread_t pre;
    REQUIRE(pthread_create(&pre, NULL, pre_existing, NULL) == 0, "pre-existing thread");

    int s = section_begin();
    EXPECT_EQ("PR_SET_NO_NEW_PRIVS", prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    EXPECT_EQ("PR_GET_NO_NEW_PRIVS", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), 1);
    REQUIRE(install_filter(0, 1) == 0, "seccomp filter");
    EXPECT_EQ("PR_GET_SECCOMP", prctl(PR_GET_SECCOMP, 0, 0, 0, 0), 2);
    section_end(s, "filter installed (NO_NEW_PRIVS, SECCOMP_SET_MODE_FILTER)");

    s = section_begin();
    errno = 0;
    EXPECT_EQ("getpriority denied", getpriority(PRIO_PROCESS, 0), -1);
    EXPECT_EQ("errno EPERM", errno, EPERM);
    EXPECT_EQ("raw getpriority", raw_syscall2(SYS_getpriority, PRIO_PROCESS, 0), -EPERM);
    void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(page != MAP_FAILED, "mmap");
    errno = 0;
    EXPECT_EQ("mprotect PROT_EXEC denied", mprotect(page, 4096, PROT_READ | PROT_EXEC), -1);
    EXPECT_EQ("errno EPERM", errno, EPERM);
    EXPECT_EQ("mprotect PROT_READ allowed", mprotect(page, 4096, PROT_READ), 0);
    munmap(page, 4096);
    section_end(s, "SECCOMP_RET_ERRNO: getpriority and mprotect(PROT_EXEC) fail with EPERM");

    s = section_begin();
    g_traps = 0;
    g_bad = 0;
    EXPECT_EQ("getegid trapped", getegid(), MAGIC);
    EXPECT_EQ("syscall(SYS_getegid) trapped", syscall(SYS_getegid), MAGIC);
    EXPECT_EQ("traps", g_traps, 2);
    EXPECT_EQ("siginfo check bits (2 code 4 nr 8 arch 16 data 32 rip)", g_bad, 0);
    for (int i = 0; i < 50; i++)
        if (getegid() != MAGIC)
            FAILF("getegid iteration %d", i);
    EXPECT_EQ("traps after loop", g_traps, 52);
    section_end(s, "SECCOMP_RET_TRAP: handler's REG_RAX is the result, siginfo fields");

    s = section_begin();
    uintptr_t after = 0;
    g_bad = 0;
    EXPECT_EQ("asm getegid trapped", asm_getegid(&after), MAGIC);
    EXPECT_EQ("si_call_addr is after the program's syscall", g_seen_call_addr, after);
    EXPECT_EQ("RIP is after the program's syscall", g_seen_rip, after);
    EXPECT_EQ("check bits", g_bad, 0);
    section_end(s, "SECCOMP_RET_TRAP from an inline site: si_call_addr and RIP exact");

    s = section_begin();
    int fd = open("seccomp_file.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    EXPECT("open", fd >= 0);
    EXPECT_EQ("write", write(fd, "written under the program's own seccomp filter\n", 47), 47);
    EXPECT_EQ("close", close(fd), 0);
    char buf[64] = { 0 };
    fd = open("seccomp_file.txt", O_RDONLY);
    EXPECT_EQ("read back", read(fd, buf, sizeof buf), 47);
    close(fd);
    EXPECT("content", memcmp(buf, "written under", 13) == 0);
    int p[2];
    EXPECT_EQ("pipe", pipe(p), 0);
    EXPECT_EQ("pipe write", write(p[1], "abc", 3), 3);
    EXPECT_EQ("pipe read", read(p[0], buf, 3), 3);
    close(p[0]);
    close(p[1]);
    pthread_t t;
    void *ret = (void *)-1;
    EXPECT_EQ("create thread", pthread_create(&t, NULL, new_thread, NULL), 0);
    pthread_join(t, &ret);
    EXPECT_EQ("new thread inherits the filter", (intptr_t)ret, 0);
    pid_t pid = fork();
    if (pid == 0)
        _exit(filtered_checks() == 0 ? 0 : 1);
    int st = -1;
    waitpid(pid, &st, 0);
    EXPECT("forked child inherits the filter and the handler", WIFEXITED(st) && WEXITSTATUS(st) == 0);
    section_end(s, "other syscalls work: files, pipes, threads, fork");

    s = section_begin();
    pthread_barrier_wait(&g_bar);
    pthread_barrier_wait(&g_bar);
    EXPECT_EQ("pre-existing thread unaffected by a non-TSYNC filter", g_pre_before_bits, 0);
    EXPECT_EQ("second filter with TSYNC", install_filter(SECCOMP_FILTER_FLAG_TSYNC, 0), 0);
    pthread_barrier_wait(&g_bar);
    pthread_join(pre, NULL);
    EXPECT_EQ("pre-existing thread filtered after TSYNC", g_pre_after_bits, 0);
    section_end(s, "pre-existing thread: no filter, then synced with TSYNC");

    return finish();
}
