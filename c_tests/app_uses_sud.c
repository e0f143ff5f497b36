/*
 * usertrap-test: unsupported
 * (Syscall User Dispatch cannot be shared: the prctl is refused with EBUSY: see README, Limits.)
 *
 * Hard case: the program uses Syscall User Dispatch itself (as Wine does to
 * catch Windows syscalls), with its own selector, exempt region and SIGSYS
 * handler that emulates syscalls by setting RAX.
 *
 * Why it is hard for a syscall interposer: SUD is one per-thread setting.
 * An interposer built on SUD is replaced by the program's prctl (its gate is
 * no longer exempt, its selector no longer consulted) and must virtualise
 * the program's SUD instead; an interposer built on seccomp receives the
 * program's SUD SIGSYS (si_code SYS_USER_DISPATCH) in its own handler and
 * must pass it on unchanged, and its own gate syscalls are subject to the
 * program's selector.  rt_sigreturn from the program's handler is itself
 * dispatched unless the handler flips the selector first.
 *
 * What it checks: prctl(PR_SET_SYSCALL_USER_DISPATCH, ON) with an exempt
 * asm function and a selector byte; with the selector on BLOCK a syscall
 * (inline asm and glibc) reaches the program's handler with si_code
 * SYS_USER_DISPATCH and si_syscall, is not executed, and returns the RAX
 * the handler set (100 times); the exempt function's syscall runs for real
 * under BLOCK; ALLOW lets syscalls through; a thread created meanwhile is
 * not dispatched (SUD is not inherited); PR_SYS_DISPATCH_OFF restores
 * everything.  If the kernel lacks SUD (EINVAL) a fixed line is printed;
 * any other prctl failure is a FAIL.
 */
#include "common.h"

#include <pthread.h>
#include <sys/prctl.h>
#include <ucontext.h>

#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#define PR_SYS_DISPATCH_OFF 0
#define PR_SYS_DISPATCH_ON 1
#define SYSCALL_DISPATCH_FILTER_ALLOW 0
#define SYSCALL_DISPATCH_FILTER_BLOCK 1
#endif
#ifndef SYS_USER_DISPATCH
#define SYS_USER_DISPATCH 2
#endif

#define MAGIC 0x5d5d

static volatile char g_sel = SYSCALL_DISPATCH_FILTER_ALLOW;
static volatile int g_count, g_code, g_nr, g_arch_ok;

__asm__(".text\n"
        ".globl sud_exempt_start\n"
        "sud_exempt_start:\n"
        ".globl sud_exempt_getppid\n.type sud_exempt_getppid,@function\n"
        "sud_exempt_getppid:\n"
        "    mov $110, %eax\n"
        "    syscall\n"
        "    ret\n"
        ".size sud_exempt_getppid, .-sud_exempt_getppid\n"
        ".globl sud_exempt_end\n"
        "sud_exempt_end:\n");
extern char sud_exempt_start[], sud_exempt_end[];
long sud_exempt_getppid(void);

static void on_sigsys(int sig, siginfo_t *si, void *ucv)
{
    (void)sig;
    ucontext_t *uc = ucv;
    g_sel = SYSCALL_DISPATCH_FILTER_ALLOW; /* so rt_sigreturn is not dispatched */
    g_count++;
    g_code = si->si_code;
    g_nr = si->si_syscall;
    g_arch_ok = si->si_arch == 0xc000003e; /* AUDIT_ARCH_X86_64 */
    uc->uc_mcontext.gregs[REG_RAX] = MAGIC;
}

static long asm_getppid(void)
{
    long r;
    __asm__ volatile("mov $110, %%eax\n\tsyscall" : "=a"(r) : : "rcx", "r11", "memory");
    return r;
}

static volatile int g_go, g_done;
static volatile long g_thread_result;

static void *undispatched_thread(void *unused)
{
    (void)unused;
    while (!g_go)
        ; /* spin: main cannot make syscalls while its selector blocks */
    g_thread_result = asm_getppid();
    g_done = 1;
    return NULL;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    REQUIRE(sigaction(SIGSYS, &sa, NULL) == 0, "sigaction");
    long ppid = getppid();

    int r = prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, (unsigned long)sud_exempt_start,
                  (unsigned long)(sud_exempt_end - sud_exempt_start), &g_sel);
    if (r != 0 && errno == EINVAL) {
        say("app_uses_sud: kernel without Syscall User Dispatch\n");
        return 0;
    }
    REQUIRE(r == 0, "prctl(PR_SET_SYSCALL_USER_DISPATCH, ON)");

    int s = section_begin();
    int bad = 0;
    for (int i = 0; i < 100; i++) {
        g_sel = SYSCALL_DISPATCH_FILTER_BLOCK;
        long v = asm_getppid();
        if (v != MAGIC || g_sel != SYSCALL_DISPATCH_FILTER_ALLOW)
            bad++;
    }
    EXPECT_EQ("blocked inline syscalls emulated by the handler", bad, 0);
    EXPECT_EQ("handler count", g_count, 100);
    EXPECT_EQ("si_code SYS_USER_DISPATCH", g_code, SYS_USER_DISPATCH);
    EXPECT_EQ("si_syscall", g_nr, SYS_getppid);
    EXPECT("si_arch x86_64", g_arch_ok);
    g_sel = SYSCALL_DISPATCH_FILTER_BLOCK;
    long v = syscall(SYS_gettid);
    EXPECT_EQ("glibc syscall(3) dispatched", v, MAGIC);
    EXPECT_EQ("si_syscall gettid", g_nr, SYS_gettid);
    section_end(s, "SUD with selector BLOCK: syscalls go to the program's SIGSYS handler");

    s = section_begin();
    g_count = 0;
    g_sel = SYSCALL_DISPATCH_FILTER_BLOCK;
    long e1 = sud_exempt_getppid();
    long e2 = sud_exempt_getppid();
    g_sel = SYSCALL_DISPATCH_FILTER_ALLOW;
    EXPECT_EQ("exempt region runs the real syscall", e1, ppid);
    EXPECT_EQ("exempt region again", e2, ppid);
    EXPECT_EQ("no handler for the exempt region", g_count, 0);
    bad = 0;
    for (int i = 0; i < 100; i++)
        if (getppid() != ppid)
            bad++;
    EXPECT_EQ("ALLOW lets syscalls through", bad, 0);
    EXPECT_EQ("no handler under ALLOW", g_count, 0);
    section_end(s, "exempt region under BLOCK, selector ALLOW");

    s = section_begin();
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, undispatched_thread, NULL) == 0, "thread");
    g_sel = SYSCALL_DISPATCH_FILTER_BLOCK;
    g_go = 1;
    while (!g_done)
        ;
    g_sel = SYSCALL_DISPATCH_FILTER_ALLOW;
    pthread_join(t, NULL);
    EXPECT_EQ("other thread not dispatched", g_thread_result, ppid);
    EXPECT_EQ("no handler for the other thread", g_count, 0);
    section_end(s, "SUD is per thread: a new thread is not dispatched");

    s = section_begin();
    EXPECT_EQ("PR_SYS_DISPATCH_OFF", prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_OFF, 0, 0, 0), 0);
    g_sel = SYSCALL_DISPATCH_FILTER_BLOCK; /* no effect any more */
    EXPECT_EQ("getppid after OFF", asm_getppid(), ppid);
    EXPECT_EQ("no handler after OFF", g_count, 0);
    g_sel = SYSCALL_DISPATCH_FILTER_ALLOW;
    section_end(s, "PR_SYS_DISPATCH_OFF");
    return finish();
}
