/*
 * Hard case: the program sends itself SIGSYS with rt_tgsigqueueinfo and a
 * forged si_code: SYS_SECCOMP (with the interposer's own filter data in
 * si_errno) or SYS_USER_DISPATCH, the codes of a real syscall trap.
 *
 * Why it is hard for a syscall interposer: its SIGSYS handler must tell its
 * own traps from everything else.  Only a thread may forge a positive
 * si_code, and only for itself; the signal is then an ordinary queued
 * signal: the program's handler gets it with the fields as sent, and while
 * the program blocks SIGSYS it stays pending (a real trap would kill).
 * Taking it for a trap runs a "syscall" the program never made.
 *
 * What it checks: forged SYS_SECCOMP (si_errno 0x7574, si_call_addr the
 * address after the sending syscall, si_syscall rt_tgsigqueueinfo, like a
 * real trap of that call) and SYS_USER_DISPATCH signals reach the handler
 * once each with every field as sent; sent while blocked they are pending
 * (sigpending) and delivered at unblock; an SI_QUEUE SIGSYS as well.
 */
#include "common.h"

#include <linux/audit.h>

#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1
#endif
#ifndef SYS_USER_DISPATCH
#define SYS_USER_DISPATCH 2
#endif

static volatile int g_count, g_code, g_errno, g_syscall;
static volatile unsigned g_arch;
static volatile uintptr_t g_call_addr;

static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    (void)sig;
    g_count++;
    g_code = si->si_code;
    g_errno = si->si_errno;
    g_syscall = si->si_syscall;
    g_arch = si->si_arch;
    g_call_addr = (uintptr_t)si->si_call_addr;
}

/* rt_tgsigqueueinfo(self) from an inline site; with use_after, si_call_addr
 * is the address after its `syscall` (as in a real trap of that call), else
 * other_addr. */
static long send_forged(int code, int err, int nr, int use_after, uintptr_t other_addr)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = SIGSYS;
    si.si_code = code;
    si.si_errno = err;
    si.si_syscall = nr;
    si.si_arch = AUDIT_ARCH_X86_64;
    si.si_call_addr = (void *)other_addr;
    long ret, pid = getpid(), tid = gettid();
    /* Nothing may be called between this and the asm (calls clobber r10). */
    register long r10 __asm__("r10") = (long)&si;
    __asm__ volatile("lea 3f(%%rip), %%rcx\n\t"
                     "test %[use], %[use]\n\t"
                     "jz 4f\n\t"
                     "mov %%rcx, %[ca]\n"
                     "4:\n\t"
                     "mov %[nr], %%eax\n\t"
                     "syscall\n"
                     "3:\n\t"
                     : "=a"(ret), [ca] "+m"(si.si_call_addr)
                     : [nr] "i"(SYS_rt_tgsigqueueinfo), "D"(pid), "S"(tid), "d"((long)SIGSYS),
                       "r"(r10), [use] "r"((long)use_after)
                     : "rcx", "r11", "memory");
    return ret;
}

static void reset(void)
{
    g_count = 0;
    g_code = g_errno = g_syscall = 0;
    g_arch = 0;
    g_call_addr = 0;
}

static void check(const char *what, int code, int err, int nr, uintptr_t addr)
{
    int s = section_begin();
    EXPECT_EQ("handler calls", g_count, 1);
    EXPECT_EQ("si_code", g_code, code);
    EXPECT_EQ("si_errno", g_errno, err);
    EXPECT_EQ("si_syscall", g_syscall, nr);
    EXPECT_EQ("si_arch", g_arch, AUDIT_ARCH_X86_64);
    if (addr)
        EXPECT_EQ("si_call_addr", g_call_addr, addr);
    section_end(s, what);
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    REQUIRE(sigaction(SIGSYS, &sa, NULL) == 0, "sigaction SIGSYS");

    reset();
    EXPECT_EQ("send forged SYS_SECCOMP", send_forged(SYS_SECCOMP, 0x7574, SYS_rt_tgsigqueueinfo, 1, 0), 0);
    check("forged SYS_SECCOMP (si_errno 0x7574, like a real trap of the sending call) reaches the handler", SYS_SECCOMP,
          0x7574, SYS_rt_tgsigqueueinfo, 0);
    reset();
    EXPECT_EQ("send forged SYS_SECCOMP for getppid", send_forged(SYS_SECCOMP, 0x7574, SYS_getppid, 0, 0x1234), 0);
    check("forged SYS_SECCOMP naming getppid reaches the handler", SYS_SECCOMP, 0x7574, SYS_getppid, 0x1234);
    reset();
    EXPECT_EQ("send forged SYS_USER_DISPATCH", send_forged(SYS_USER_DISPATCH, 0, SYS_rt_tgsigqueueinfo, 1, 0), 0);
    check("forged SYS_USER_DISPATCH reaches the handler", SYS_USER_DISPATCH, 0, SYS_rt_tgsigqueueinfo, 0);
    reset();
    EXPECT_EQ("send SI_QUEUE", send_forged(SI_QUEUE, 0, 0, 0, 0), 0);
    check("SI_QUEUE SIGSYS reaches the handler", SI_QUEUE, 0, 0, 0);

    /* Blocked: pending, then delivered at unblock. */
    int s = section_begin();
    sigset_t m, pend;
    sigemptyset(&m);
    sigaddset(&m, SIGSYS);
    REQUIRE(sigprocmask(SIG_BLOCK, &m, NULL) == 0, "block SIGSYS");
    reset();
    EXPECT_EQ("send forged SYS_SECCOMP while blocked", send_forged(SYS_SECCOMP, 0x7574, SYS_getppid, 1, 0), 0);
    EXPECT_EQ("blocked: handler not called", g_count, 0);
    sigemptyset(&pend);
    EXPECT_EQ("sigpending", sigpending(&pend), 0);
    EXPECT_EQ("SIGSYS pending", sigismember(&pend, SIGSYS), 1);
    REQUIRE(sigprocmask(SIG_UNBLOCK, &m, NULL) == 0, "unblock SIGSYS");
    EXPECT_EQ("delivered at unblock", g_count, 1);
    EXPECT_EQ("si_code at unblock", g_code, SYS_SECCOMP);
    EXPECT_EQ("si_syscall at unblock", g_syscall, SYS_getppid);
    section_end(s, "forged SYS_SECCOMP while SIGSYS is blocked: pending, delivered at unblock");

    s = section_begin();
    REQUIRE(sigprocmask(SIG_BLOCK, &m, NULL) == 0, "block SIGSYS");
    reset();
    EXPECT_EQ("send forged SYS_USER_DISPATCH while blocked", send_forged(SYS_USER_DISPATCH, 0, SYS_getppid, 1, 0), 0);
    EXPECT_EQ("blocked: handler not called", g_count, 0);
    REQUIRE(sigprocmask(SIG_UNBLOCK, &m, NULL) == 0, "unblock SIGSYS");
    EXPECT_EQ("delivered at unblock", g_count, 1);
    EXPECT_EQ("si_code at unblock", g_code, SYS_USER_DISPATCH);
    section_end(s, "forged SYS_USER_DISPATCH while SIGSYS is blocked: pending, delivered at unblock");
    return finish();
}
