/*
 * Hard case: a patched site that takes its syscall number from a register
 * (glibc's syscall(3): Form R), used for calls the fast path must not run.
 *
 * Why it is hard: once syscall(3)'s `syscall` is rewritten into a jump to a
 * trampoline, every call through it reaches the fast path, whatever its
 * number; but rt_sigaction, rt_sigprocmask, sigaltstack and clone need the
 * library's emulation (a signal frame, the virtual signal state, the child's
 * exact registers). ut_fast_entry sends them to the trampoline's own
 * `syscall`, which traps into the slow path; a clone child starts there and
 * must find its way back to the caller.
 *
 * Also: rcx after a patched range and a patched pad (Form P) is the address
 * after the old `syscall`, as the kernel leaves it.
 */
#include "common.h"

#include <sys/syscall.h>
#include <sys/wait.h>

/* Returns rcx minus the address after the syscall: 0 natively. */
long rcx_range(long unused);
long rcx_pad(long nr);

__asm__(".text\n"
        ".p2align 4\n"
        ".type rcx_range,@function\n"
        "rcx_range:\n"
        ".cfi_startproc\n"
        "    mov $110, %eax\n"
        "    mov %rdi, %rsi\n"
        "    syscall\n"
        "1:  lea 1b(%rip), %rax\n"
        "    sub %rax, %rcx\n"
        "    mov %rcx, %rax\n"
        "    ret\n"
        ".cfi_endproc\n"
        ".size rcx_range, .-rcx_range\n"
        ".p2align 4\n"
        ".type rcx_pad,@function\n"
        "rcx_pad:\n"
        ".cfi_startproc\n"
        "    mov %rdi, %rax\n"
        "    lea 0(%rip), %r11\n"
        "    mov %eax, %eax\n"
        "    syscall\n"
        "1:  lea 1b(%rip), %rax\n"
        "    sub %rax, %rcx\n"
        "    mov %rcx, %rax\n"
        "    ret\n"
        "    .byte 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00\n"
        ".cfi_endproc\n"
        ".size rcx_pad, .-rcx_pad\n");

static volatile int g_usr1;

static void on_usr1(int sig)
{
    (void)sig;
    g_usr1++;
}

int main(void)
{
    /* Patch syscall(3)'s site (and the two asm sites) with plain calls. */
    for (int i = 0; i < 5; i++) {
        EXPECT_EQ("syscall(SYS_getppid)", syscall(SYS_getppid), getppid());
        EXPECT_EQ("rcx after a range", rcx_range(0), 0);
        EXPECT_EQ("rcx after a pad", rcx_pad(SYS_getppid), 0);
    }

    /* rt_sigaction and tgkill through syscall(3). */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    /* The kernel's struct: handler, flags, restorer, mask; use glibc's to
     * get a restorer: install through sigaction, read back through syscall. */
    REQUIRE(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
    struct {
        void *handler;
        unsigned long flags;
        void *restorer;
        unsigned long mask;
    } k;
    memset(&k, 0, sizeof k);
    EXPECT_EQ("rt_sigaction via syscall(3)", syscall(SYS_rt_sigaction, SIGUSR1, NULL, &k, 8), 0);
    EXPECT("rt_sigaction reports the handler", k.handler == (void *)on_usr1);
    EXPECT_EQ("tgkill via syscall(3)", syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGUSR1), 0);
    EXPECT_EQ("handler ran", g_usr1, 1);

    /* rt_sigprocmask through syscall(3): block SIGUSR1, raise, unblock. */
    unsigned long set = 1UL << (SIGUSR1 - 1), prev = 0;
    EXPECT_EQ("block via syscall(3)", syscall(SYS_rt_sigprocmask, SIG_BLOCK, &set, &prev, 8), 0);
    EXPECT_EQ("raise while blocked", raise(SIGUSR1), 0);
    EXPECT_EQ("handler held back", g_usr1, 1);
    EXPECT_EQ("unblock via syscall(3)", syscall(SYS_rt_sigprocmask, SIG_SETMASK, &prev, NULL, 8), 0);
    EXPECT_EQ("handler ran on unblock", g_usr1, 2);

    /* sigaltstack through syscall(3): none set. */
    stack_t ss;
    memset(&ss, 0, sizeof ss);
    EXPECT_EQ("sigaltstack via syscall(3)", syscall(SYS_sigaltstack, NULL, &ss), 0);
    EXPECT("no alternate stack of the program's", ss.ss_flags & SS_DISABLE);

    /* clone (fork-like) through syscall(3): the child returns 0 from it. */
    fflush(stdout);
    long pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) {
        if (syscall(SYS_getppid) <= 0)
            _exit(3);
        _exit(rcx_range(0) == 0 && rcx_pad(SYS_getppid) == 0 ? 7 : 4);
    }
    REQUIRE(pid > 0, "clone via syscall(3)");
    int status = 0;
    EXPECT_EQ("waitpid", waitpid((pid_t)pid, &status, 0), pid);
    EXPECT("child exited 7", WIFEXITED(status) && WEXITSTATUS(status) == 7);

    if (t_failure_count() == 0)
        say("emulated calls through a patched syscall(3), rcx after patched sites: ok\n");
    return t_failure_count() != 0;
}
