// usertrap-test: exec
/*
 * Hard case: Go's os/exec fork (syscall.rawVforkSyscall), done the same way.
 *
 * Why it is hard for a syscall interposer: Go forks with a raw
 * clone(CLONE_VM|CLONE_VFORK|SIGCHLD) and child_stack = NULL, its number
 * loaded from a register (the site is never `mov $nr,%eax; syscall`, so it
 * always traps). It pops its own return address into a register before the
 * `syscall` and pushes it back after, because the child runs on the parent's
 * stack until it execs: everything at or below the stack pointer is shared.
 * The child, with signals blocked, resets its dispositions, restores its
 * mask, moves descriptors and execs; the parent resumes when the child has
 * exec'd or exited. Go gives every thread a 32 KiB alternate signal stack
 * that it allocates from its heap, with live heap objects right below it
 * (its goroutine descriptors): the parent died of SIGSEGV at address 0xc0
 * because the interposer's handlers, running for the vfork child on that
 * stack (inherited through CLONE_VFORK), wrote past its bottom while
 * emulating the child's execve, zeroing the heap below it.
 *
 * What it checks (the parent reports, the children only exit or exec):
 *  - a 32 KiB alternate stack with 96 KiB of "heap" right below it (no
 *    guard page, like Go's), filled with a pattern: still intact after 40
 *    Go-style vforks;
 *  - the children alternate between execve("/bin/true") (or, every 4th, an
 *    execve of a missing file, then _exit(127)) and _exit(N) after a few
 *    syscalls (rt_sigaction to SIG_DFL for every handler we installed,
 *    rt_sigprocmask, dup3, getppid): exit statuses as expected;
 *  - a counter in the parent's frame that each child increments before
 *    leaving: the parent sees it (the child ran first, on shared memory);
 *  - the parent's callee-saved registers and the words of its frame above
 *    the stack pointer survive the vfork;
 *  - an SA_ONSTACK handler of the program (SIGUSR1, raised before and after
 *    the vforks) runs both times.
 */
#include "common.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>

extern char **environ;

/*
 * go_vfork(nr, flags): rawVforkSyscall's sequence. The return address goes
 * into %r9 (unused by clone, caller-saved) instead of staying on the stack;
 * %rsp is 8 higher than at the call while the syscall runs, as in Go.
 */
long go_vfork(long nr, unsigned long flags);
__asm__(".text\n"
        ".globl go_vfork\n"
        ".type go_vfork,@function\n"
        "go_vfork:\n"
        "    mov %rdi, %rax\n"      /* the number, from a register */
        "    mov %rsi, %rdi\n"      /* flags */
        "    xor %esi, %esi\n"      /* child_stack = NULL: the parent's stack */
        "    xor %edx, %edx\n"
        "    xor %r10d, %r10d\n"
        "    xor %r8d, %r8d\n"
        "    pop %r9\n"             /* keep the return address out of the shared stack */
        "    syscall\n"
        "    push %r9\n"
        "    ret\n"
        ".size go_vfork, .-go_vfork\n");

#define ALT_SIZE (32 * 1024)
#define BELOW (96 * 1024)
#define PATTERN 0x5a

static unsigned char *g_region; /* [BELOW bytes of "heap"][ALT_SIZE alternate stack] */
static volatile int g_usr1_count;

static void on_usr1(int sig)
{
    (void)sig;
    g_usr1_count++;
}

/* Lowest offset in the heap part that no longer holds the pattern, or -1. */
static long heap_clobbered_at(void)
{
    for (long i = 0; i < BELOW; i++)
        if (g_region[i] != PATTERN)
            return i;
    return -1;
}


/* The child's part: raw syscalls only, as Go's forkAndExecInChild1. */
static __attribute__((noinline)) void in_child(int i, volatile int *counter, const sigset_t *mask)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    syscall(SYS_rt_sigaction, SIGUSR1, &dfl, NULL, 8);
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, mask, NULL, 8);
    syscall(SYS_dup3, 1, 100, 0);
    syscall(SYS_close, 100);
    syscall(SYS_getppid);
    (*counter)++;
    if (i % 2 == 0) {
        char *argv[] = { "true", NULL };
        char *missing[] = { "missing", NULL };
        if (i % 4 == 0)
            syscall(SYS_execve, "/nonexistent/usertrap-go-style", missing, environ);
        else
            syscall(SYS_execve, "/bin/true", argv, environ);
        syscall(SYS_exit_group, 127);
    }
    syscall(SYS_exit_group, i % 100);
}

static void test_vforks(void)
{
    int s = section_begin();
    volatile int counter = 0;
    volatile unsigned long frame_words[8];
    for (int k = 0; k < 8; k++)
        frame_words[k] = 0x1111111111111111ul * (unsigned long)(k + 1);
    for (int i = 0; i < 40; i++) {
        sigset_t all, old;
        sigfillset(&all);
        /* Go blocks every signal around the fork (runtime_BeforeFork). */
        syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, 8);
        int before = counter;
        register long keep_rbx __asm__("rbx") = 0x0123456789abcdefl ^ i;
        register long keep_r12 __asm__("r12") = 0x7777000077770000l ^ i;
        __asm__ volatile("" : "+r"(keep_rbx), "+r"(keep_r12));
        long pid = go_vfork(SYS_clone, CLONE_VM | CLONE_VFORK | SIGCHLD);
        __asm__ volatile("" : "+r"(keep_rbx), "+r"(keep_r12));
        if (pid == 0)
            in_child(i, &counter, &old); /* never returns */
        syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, 8);
        REQUIRE(pid > 0, "clone(CLONE_VM|CLONE_VFORK)");
        EXPECT_EQ("rbx kept", keep_rbx, 0x0123456789abcdefl ^ i);
        EXPECT_EQ("r12 kept", keep_r12, 0x7777000077770000l ^ i);
        EXPECT_EQ("the child ran first, on shared memory", counter, before + 1);
        int st = wait_status((pid_t)pid);
        int want = i % 2 == 0 ? (i % 4 == 0 ? 127 : 0) : i % 100;
        EXPECT("child exited", WIFEXITED(st));
        EXPECT_EQ("child status", WEXITSTATUS(st), want);
    }
    for (int k = 0; k < 8; k++)
        EXPECT_EQ("parent frame word", frame_words[k], 0x1111111111111111ul * (unsigned long)(k + 1));
    EXPECT_EQ("children counted", counter, 40);
    section_end(s, "40 Go-style vforks: statuses, shared counter, registers, frame");
}

int main(void)
{
    g_region = mmap(NULL, BELOW + ALT_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(g_region != MAP_FAILED, "mmap");
    memset(g_region, PATTERN, BELOW + ALT_SIZE);
    stack_t ss = { .ss_sp = g_region + BELOW, .ss_size = ALT_SIZE, .ss_flags = 0 };
    REQUIRE(sigaltstack(&ss, NULL) == 0, "sigaltstack");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_ONSTACK | SA_RESTART;
    REQUIRE(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");

    raise(SIGUSR1);
    test_vforks();
    raise(SIGUSR1);

    int s = section_begin();
    EXPECT_EQ("SA_ONSTACK handler ran", g_usr1_count, 2);
    long at = heap_clobbered_at();
    if (at >= 0)
        FAILF("memory below the 32 KiB alternate stack was overwritten, %ld bytes below it", (long)BELOW - at);
    section_end(s, "memory below the alternate stack intact");
    return t_failure_count() ? 1 : 0;
}
