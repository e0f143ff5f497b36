/*
 * Hard case: the signal frame a handler gets, and the stack it runs on.
 *
 * Why it is hard for a syscall interposer: its own handlers must run on a
 * stack of its own, so the program's handlers have to be entered on the
 * stack the kernel would have chosen, with a frame like the kernel's:
 * debuggers, unwinders and runtimes (Go, JVMs) look at it.  A handler
 * without SA_ONSTACK after a stack overflow cannot get a frame at all: the
 * kernel kills the process with SIGSEGV, and so must the interposer.
 *
 * What it checks:
 *  - a handler's siginfo and ucontext lie on its own stack, below the
 *    interrupted stack pointer's red zone (no SA_ONSTACK) or inside the
 *    alternate stack (SA_ONSTACK); it returns to a restorer whose bytes are
 *    glibc's __restore_rt (mov $15,%rax; syscall), and backtrace() from the
 *    handler reaches the interrupted function through the frame;
 *  - uc_stack holds the alternate stack as set (flags 0); a handler that
 *    changes uc_stack changes the alternate stack at sigreturn, unless it
 *    ran on that stack (the kernel refuses as sigaltstack would: EPERM);
 *  - fpregs points at readable FPU state; the interrupted rip/rsp are the
 *    program's;
 *  - stack overflow in a child: a SIGSEGV handler with SA_ONSTACK catches it
 *    and exits 7; a handler without SA_ONSTACK: the child dies of SIGSEGV.
 */
#include "common.h"

#include <execinfo.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <ucontext.h>

#define ALT_SIZE (64 * 1024)

static char *g_alt;
static char *g_alt2;
static volatile uintptr_t g_sp_before;
static volatile int g_info_ok, g_uc_ok, g_restorer_ok, g_bt_ok, g_uc_stack_ok, g_fp_ok, g_regs_ok;
static volatile int g_change_stack, g_alt_set;

static int within(const void *p, const char *base, size_t size)
{
    const char *c = p;
    return c >= base && c < base + size;
}

__attribute__((noinline)) static void interrupted_function(void)
{
    uintptr_t sp;
    __asm__ volatile("mov %%rsp, %0" : "=r"(sp));
    g_sp_before = sp;
    raise(SIGUSR1);
    __asm__ volatile("" ::: "memory");
}

static void on_usr1(int sig, siginfo_t *info, void *ctx)
{
    (void)sig;
    ucontext_t *uc = ctx;
    volatile char local = 0;
    int onstack = within((const void *)&local, g_alt, ALT_SIZE);
    if (onstack) {
        g_info_ok = within(info, g_alt, ALT_SIZE);
        g_uc_ok = within(uc, g_alt, ALT_SIZE);
    } else {
        /* below the interrupted rsp and its 128-byte red zone */
        uintptr_t rsp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
        g_info_ok = (uintptr_t)info < rsp - 128 && (uintptr_t)info > (uintptr_t)&local;
        g_uc_ok = (uintptr_t)uc < rsp - 128 && (uintptr_t)uc > (uintptr_t)&local;
    }
    const unsigned char *ret = __builtin_return_address(0);
    static const unsigned char restore_rt[] = { 0x48, 0xc7, 0xc0, 0x0f, 0, 0, 0, 0x0f, 0x05 };
    g_restorer_ok = memcmp(ret, restore_rt, sizeof restore_rt) == 0;
    void *frames[16];
    int n = backtrace(frames, 16);
    g_bt_ok = 0;
    for (int i = 0; i < n; i++) {
        uintptr_t f = (uintptr_t)frames[i];
        if (f >= (uintptr_t)interrupted_function && f < (uintptr_t)interrupted_function + 256)
            g_bt_ok = 1;
    }
    /* Without an alternate stack the flags depend on what the parent had. */
    g_uc_stack_ok = !g_alt_set || (uc->uc_stack.ss_sp == g_alt && uc->uc_stack.ss_size == ALT_SIZE &&
                                   uc->uc_stack.ss_flags == 0);
    g_fp_ok = uc->uc_mcontext.fpregs != NULL && uc->uc_mcontext.fpregs->mxcsr != 0;
    uintptr_t rsp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
    uintptr_t rip = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    /* raise() interrupts the program inside libc's raise, a little below the
     * caller's stack pointer */
    g_regs_ok = rsp < g_sp_before && g_sp_before - rsp < 4096 && rip != 0;
    if (g_change_stack) {
        uc->uc_stack.ss_sp = g_alt2;
        uc->uc_stack.ss_size = ALT_SIZE;
        uc->uc_stack.ss_flags = 0;
    }
}

static void install(int sig, void (*h)(int, siginfo_t *, void *), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = h;
    sa.sa_flags = SA_SIGINFO | flags;
    sigemptyset(&sa.sa_mask);
    REQUIRE(sigaction(sig, &sa, NULL) == 0, "sigaction");
}

static void check_frame(const char *name)
{
    int s = section_begin();
    g_info_ok = g_uc_ok = g_restorer_ok = g_bt_ok = g_uc_stack_ok = g_fp_ok = g_regs_ok = 0;
    interrupted_function();
    EXPECT("siginfo on the handler's stack", g_info_ok);
    EXPECT("ucontext on the handler's stack", g_uc_ok);
    EXPECT("returns to a __restore_rt-like restorer", g_restorer_ok);
    EXPECT("backtrace reaches the interrupted function", g_bt_ok);
    EXPECT("uc_stack as set", g_uc_stack_ok);
    EXPECT("fpregs readable", g_fp_ok);
    EXPECT("interrupted registers", g_regs_ok);
    section_end(s, name);
}

/* --- stack overflow --------------------------------------------------------- */

static void on_segv_exit(int sig)
{
    (void)sig;
    _exit(7);
}

#pragma GCC diagnostic ignored "-Winfinite-recursion"
__attribute__((noinline)) static int recurse(volatile char *p, int depth)
{
    volatile char buf[512];
    buf[0] = (char)depth;
    buf[511] = p ? p[0] : 0;
    return recurse(buf, depth + 1) + buf[100];
}

static void overflow_child(const char *name, int flags, int expect_exit)
{
    int s = section_begin();
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) {
        struct rlimit rl = { 1 << 20, 1 << 20 };
        setrlimit(RLIMIT_STACK, &rl);
        stack_t ss = { .ss_sp = g_alt, .ss_size = ALT_SIZE, .ss_flags = 0 };
        sigaltstack(&ss, NULL);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_segv_exit;
        sa.sa_flags = flags;
        sigaction(SIGSEGV, &sa, NULL);
        recurse(NULL, 0);
        _exit(3);
    }
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid, "waitpid");
    if (expect_exit)
        EXPECT("handler on the alternate stack caught the overflow", WIFEXITED(st) && WEXITSTATUS(st) == 7);
    else
        EXPECT("no alternate stack for the handler: killed by SIGSEGV", WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    section_end(s, name);
}

int main(void)
{
    g_alt = mmap(NULL, ALT_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    g_alt2 = mmap(NULL, ALT_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(g_alt != MAP_FAILED && g_alt2 != MAP_FAILED, "mmap");

    install(SIGUSR1, on_usr1, 0);
    check_frame("frame on the interrupted stack");

    stack_t ss = { .ss_sp = g_alt, .ss_size = ALT_SIZE, .ss_flags = 0 };
    REQUIRE(sigaltstack(&ss, NULL) == 0, "sigaltstack");
    g_alt_set = 1;
    check_frame("frame without SA_ONSTACK, alternate stack set");
    install(SIGUSR1, on_usr1, SA_ONSTACK);
    check_frame("frame on the alternate stack");

    int s = section_begin();
    g_change_stack = 1;
    raise(SIGUSR1);
    stack_t cur;
    EXPECT("uc_stack changed by a handler on that stack is ignored",
           sigaltstack(NULL, &cur) == 0 && cur.ss_sp == g_alt && cur.ss_size == ALT_SIZE);
    install(SIGUSR1, on_usr1, 0);
    raise(SIGUSR1);
    g_change_stack = 0;
    EXPECT("uc_stack changed by a handler elsewhere is installed at sigreturn",
           sigaltstack(NULL, &cur) == 0 && cur.ss_sp == g_alt2 && cur.ss_size == ALT_SIZE);
    section_end(s, "uc_stack written by a handler");

    overflow_child("stack overflow, SA_ONSTACK handler", SA_ONSTACK, 1);
    overflow_child("stack overflow, handler without SA_ONSTACK", 0, 0);
    return finish();
}
