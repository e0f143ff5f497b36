/*
 * Hard case: threads created by a raw clone/clone3 syscall, not by glibc.
 *
 * Why it is hard for a syscall interposer: the child starts at the
 * instruction after the `syscall` on a stack the app chose, with no
 * CLONE_SETTLS, so it shares %fs (TLS, errno, glibc's thread pointer) with
 * its parent.  The interposer ran the clone for the app, so the child first
 * executes interposer code: it must come back with rax=0, rsp exactly the
 * stack pointer passed (nothing pushed on, nothing popped off), and every
 * other register as the parent had it at the syscall.  Any per-thread state
 * the interposer finds through %fs/TLS is the parent's, and the child's
 * syscalls (all raw) are trapped while another thread with the same %fs runs.
 *
 * What it checks:
 *  - raw clone() child on its own mmap'd stack, no CLONE_SETTLS: raw
 *    getpid/gettid/getppid/write/nanosleep, result in shared memory, futex
 *    wake of the parent, raw exit(60); CLONE_PARENT_SETTID/CHILD_CLEARTID.
 *  - 8 such children at once, each making 300 raw syscalls.
 *  - register check: rbx, rbp, r12-r15 and xmm8 set to known values before the
 *    clone syscall; the child verifies them, rax == 0 and rsp == the stack
 *    passed, before touching anything; the parent verifies its own copy.
 *  - raw fork-style clone (flags = SIGCHLD, no stack): child exit status.
 *  - clone3 (syscall 435) with a stack for a thread, and clone3 fork-style
 *    through glibc's syscall(3); when clone3 is ENOSYS the same lines print.
 */
#include "common.h"
#include "raw_clone.h"

#include <linux/futex.h>
#include <linux/sched.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define STACK_SIZE (64 * 1024)

/* ---------------------------------------------------------------- asm ---- */

/* long rc_clone3(struct clone_args *, size_t): the stack's top 16 bytes
 * (at stack + stack_size) must hold fn and arg. */
long rc_clone3(struct clone_args *args, size_t size);
/* Register check clone: returns the parent's failure bits. */
long rc_regcheck(unsigned long flags);

/* Shared with the asm (non-static so the names are plain symbols). */
unsigned long g_rc_stack_lo, g_rc_stack_hi;
int g_rc_child_bits = -1;
int g_rc_child_done;
int g_rc_ctid;
long g_rc_tid;

__asm__(
    ".text\n"
    ".globl rc_clone3\n"
    ".type rc_clone3,@function\n"
    "rc_clone3:\n"
    "    mov $435, %eax\n"     /* clone3 */
    "    syscall\n"
    "    test %rax, %rax\n"
    "    jnz 1f\n"
    "    xor %ebp, %ebp\n"
    "    pop %rax\n"
    "    pop %rdi\n"
    "    call *%rax\n"
    "    mov %rax, %rdi\n"
    "    mov $60, %eax\n"
    "    syscall\n"
    "    ud2\n"
    "1:  ret\n"
    ".size rc_clone3, .-rc_clone3\n"

    ".globl rc_regcheck\n"
    ".type rc_regcheck,@function\n"
    "rc_regcheck:\n"
    "    push %rbx\n"
    "    push %rbp\n"
    "    push %r12\n"
    "    push %r13\n"
    "    push %r14\n"
    "    push %r15\n"
    "    movabs $0x7777777777777777, %rax\n"
    "    movq %rax, %xmm8\n"
    "    movabs $0x8888888888888888, %rax\n"
    "    movq %rax, %xmm9\n"
    "    punpcklqdq %xmm9, %xmm8\n"
    "    movabs $0x1111111111111111, %rbx\n"
    "    movabs $0x2222222222222222, %rbp\n"
    "    movabs $0x3333333333333333, %r12\n"
    "    movabs $0x4444444444444444, %r13\n"
    "    movabs $0x5555555555555555, %r14\n"
    "    movabs $0x6666666666666666, %r15\n"
    "    mov g_rc_stack_hi(%rip), %rsi\n"
    "    lea g_rc_ctid(%rip), %rdx\n"   /* parent tid */
    "    mov %rdx, %r10\n"              /* child tid (cleared at exit) */
    "    xor %r8d, %r8d\n"
    "    mov $56, %eax\n"
    "    syscall\n"
    /* child iff rsp lies in the child's stack mapping */
    "    mov g_rc_stack_lo(%rip), %r11\n"
    "    cmp %r11, %rsp\n"
    "    jb .Lrc_parent\n"
    "    mov g_rc_stack_hi(%rip), %r11\n"
    "    cmp %r11, %rsp\n"
    "    ja .Lrc_parent\n"
    "    xor %ecx, %ecx\n"
    "    movabs $0x1111111111111111, %r11\n"
    "    cmp %r11, %rbx\n"
    "    je 1f\n"
    "    or $1, %ecx\n"
    "1:  movabs $0x2222222222222222, %r11\n"
    "    cmp %r11, %rbp\n"
    "    je 1f\n"
    "    or $2, %ecx\n"
    "1:  movabs $0x3333333333333333, %r11\n"
    "    cmp %r11, %r12\n"
    "    je 1f\n"
    "    or $4, %ecx\n"
    "1:  movabs $0x4444444444444444, %r11\n"
    "    cmp %r11, %r13\n"
    "    je 1f\n"
    "    or $8, %ecx\n"
    "1:  movabs $0x5555555555555555, %r11\n"
    "    cmp %r11, %r14\n"
    "    je 1f\n"
    "    or $16, %ecx\n"
    "1:  movabs $0x6666666666666666, %r11\n"
    "    cmp %r11, %r15\n"
    "    je 1f\n"
    "    or $32, %ecx\n"
    "1:  movq %xmm8, %r11\n"
    "    movabs $0x7777777777777777, %rdx\n"
    "    cmp %rdx, %r11\n"
    "    je 1f\n"
    "    or $64, %ecx\n"
    "1:  pshufd $0x4e, %xmm8, %xmm0\n"
    "    movq %xmm0, %r11\n"
    "    movabs $0x8888888888888888, %rdx\n"
    "    cmp %rdx, %r11\n"
    "    je 1f\n"
    "    or $128, %ecx\n"
    "1:  test %rax, %rax\n"
    "    jz 1f\n"
    "    or $256, %ecx\n"
    "1:  mov g_rc_stack_hi(%rip), %r11\n"
    "    cmp %r11, %rsp\n"
    "    je 1f\n"
    "    or $512, %ecx\n"
    "1:  mov %ecx, g_rc_child_bits(%rip)\n"
    "    movl $1, g_rc_child_done(%rip)\n"
    "    mov $202, %eax\n"              /* futex(&done, FUTEX_WAKE_PRIVATE, 1) */
    "    lea g_rc_child_done(%rip), %rdi\n"
    "    mov $129, %esi\n"
    "    mov $1, %edx\n"
    "    syscall\n"
    "    mov $60, %eax\n"
    "    mov $60, %edi\n"
    "    syscall\n"
    "    ud2\n"
    ".Lrc_parent:\n"
    "    xor %ecx, %ecx\n"
    "    movabs $0x1111111111111111, %r11\n"
    "    cmp %r11, %rbx\n"
    "    je 1f\n"
    "    or $1, %ecx\n"
    "1:  movabs $0x2222222222222222, %r11\n"
    "    cmp %r11, %rbp\n"
    "    je 1f\n"
    "    or $2, %ecx\n"
    "1:  movabs $0x3333333333333333, %r11\n"
    "    cmp %r11, %r12\n"
    "    je 1f\n"
    "    or $4, %ecx\n"
    "1:  movabs $0x4444444444444444, %r11\n"
    "    cmp %r11, %r13\n"
    "    je 1f\n"
    "    or $8, %ecx\n"
    "1:  movabs $0x5555555555555555, %r11\n"
    "    cmp %r11, %r14\n"
    "    je 1f\n"
    "    or $16, %ecx\n"
    "1:  movabs $0x6666666666666666, %r11\n"
    "    cmp %r11, %r15\n"
    "    je 1f\n"
    "    or $32, %ecx\n"
    "1:  movq %xmm8, %r11\n"
    "    movabs $0x7777777777777777, %rdx\n"
    "    cmp %rdx, %r11\n"
    "    je 1f\n"
    "    or $64, %ecx\n"
    "1:  pshufd $0x4e, %xmm8, %xmm0\n"
    "    movq %xmm0, %r11\n"
    "    movabs $0x8888888888888888, %rdx\n"
    "    cmp %rdx, %r11\n"
    "    je 1f\n"
    "    or $128, %ecx\n"
    "1:  mov %rax, g_rc_tid(%rip)\n"
    "    mov %ecx, %eax\n"
    "    pop %r15\n"
    "    pop %r14\n"
    "    pop %r13\n"
    "    pop %r12\n"
    "    pop %rbp\n"
    "    pop %rbx\n"
    "    ret\n"
    ".size rc_regcheck, .-rc_regcheck\n");

/* ------------------------------------------------------------ helpers ---- */

static long futex_wait(int *addr, int val, int op)
{
    return syscall(SYS_futex, addr, op, val, NULL, NULL, 0);
}

/* Wait until *addr (a CLONE_CHILD_CLEARTID word) becomes 0.  The kernel's
 * wake at thread exit is a shared futex wake, so wait without the private
 * flag (as glibc's pthread_join does). */
static void wait_cleared(int *addr)
{
    int v;
    while ((v = __atomic_load_n(addr, __ATOMIC_ACQUIRE)) != 0)
        futex_wait(addr, v, FUTEX_WAIT);
}

static void wait_set(int *addr)
{
    while (__atomic_load_n(addr, __ATOMIC_ACQUIRE) == 0)
        futex_wait(addr, 0, FUTEX_WAIT_PRIVATE);
}

static void *map_stack(void)
{
    void *p = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    REQUIRE(p != MAP_FAILED, "mmap stack");
    return p;
}

#define THREAD_FLAGS                                                           \
    (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |        \
     CLONE_SYSVSEM)

/* ------------------------------------------------- simple raw children ---- */

struct child {
    long pid, tid, ppid, wrote, slept, loops_bad;
    int done;   /* futex word the child sets and wakes */
    int ctid;   /* CLONE_PARENT_SETTID / CLONE_CHILD_CLEARTID word */
    int loops;
    int fd;
};

/* Runs without TLS: raw syscalls only, no errno, no libc. */
static long child_fn(void *p)
{
    struct child *c = p;
    struct timespec ts = { 0, 1000000 };
    c->pid = raw_syscall0(SYS_getpid);
    c->tid = raw_syscall0(SYS_gettid);
    c->ppid = raw_syscall0(SYS_getppid);
    c->wrote = raw_syscall3(SYS_write, c->fd, "c", 1);
    c->slept = raw_syscall2(SYS_nanosleep, &ts, 0);
    long bad = 0;
    for (int i = 0; i < c->loops; i++) {
        if (raw_syscall0(SYS_getppid) != c->ppid)
            bad++;
        if (raw_syscall0(SYS_gettid) != c->tid)
            bad++;
    }
    c->loops_bad = bad;
    __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
    raw_syscall6(SYS_futex, (long)&c->done, FUTEX_WAKE_PRIVATE, 1, 0, 0, 0);
    return 60;
}

static void test_simple(void)
{
    int s = section_begin();
    int p[2];
    REQUIRE(pipe(p) == 0, "pipe");
    void *stk = map_stack();
    static struct child c;
    memset(&c, 0, sizeof c);
    c.fd = p[1];
    c.loops = 10;
    long tid = t_raw_clone(THREAD_FLAGS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID,
                        (char *)stk + STACK_SIZE, &c.ctid, &c.ctid, child_fn, &c);
    REQUIRE(tid > 0, "raw clone");
    wait_set(&c.done);
    wait_cleared(&c.ctid);
    EXPECT_EQ("child getpid == parent getpid", c.pid, getpid());
    EXPECT_EQ("child gettid == clone return", c.tid, tid);
    EXPECT("child tid differs from parent", c.tid != gettid());
    EXPECT_EQ("child getppid", c.ppid, getppid());
    EXPECT_EQ("child write", c.wrote, 1);
    EXPECT_EQ("child nanosleep", c.slept, 0);
    EXPECT_EQ("child loop mismatches", c.loops_bad, 0);
    char ch = 0;
    EXPECT_EQ("read child byte", read(p[0], &ch, 1), 1);
    EXPECT_EQ("child byte", ch, 'c');
    munmap(stk, STACK_SIZE);
    close(p[0]);
    close(p[1]);
    section_end(s, "raw clone child without CLONE_SETTLS");
}

static void test_many(void)
{
    int s = section_begin();
    enum { N = 8 };
    int p[2];
    REQUIRE(pipe(p) == 0, "pipe");
    static struct child c[N];
    void *stk[N];
    long tids[N];
    for (int i = 0; i < N; i++) {
        memset(&c[i], 0, sizeof c[i]);
        c[i].fd = p[1];
        c[i].loops = 150;
        stk[i] = map_stack();
        tids[i] = t_raw_clone(THREAD_FLAGS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID,
                           (char *)stk[i] + STACK_SIZE, &c[i].ctid, &c[i].ctid, child_fn, &c[i]);
        REQUIRE(tids[i] > 0, "raw clone");
    }
    for (int i = 0; i < N; i++) {
        wait_set(&c[i].done);
        wait_cleared(&c[i].ctid);
        EXPECT_EQ("child pid", c[i].pid, getpid());
        EXPECT_EQ("child tid", c[i].tid, tids[i]);
        EXPECT_EQ("child ppid", c[i].ppid, getppid());
        EXPECT_EQ("child write", c[i].wrote, 1);
        EXPECT_EQ("child loop mismatches", c[i].loops_bad, 0);
        munmap(stk[i], STACK_SIZE);
    }
    char buf[N];
    EXPECT_EQ("bytes from children", read(p[0], buf, N), N);
    close(p[0]);
    close(p[1]);
    section_end(s, "8 concurrent raw clone children, 300 raw syscalls each");
}

static void test_regcheck(void)
{
    int s = section_begin();
    for (int round = 0; round < 3; round++) {
        void *stk = map_stack();
        g_rc_stack_lo = (unsigned long)stk;
        g_rc_stack_hi = (unsigned long)stk + STACK_SIZE; /* 16-aligned */
        g_rc_child_bits = -1;
        g_rc_child_done = 0;
        g_rc_ctid = 0;
        long parent_bits = rc_regcheck(THREAD_FLAGS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID);
        REQUIRE(g_rc_tid > 0, "regcheck clone");
        wait_set(&g_rc_child_done);
        wait_cleared(&g_rc_ctid);
        if (parent_bits != 0)
            FAILF("parent registers after clone differ: bits 0x%lx "
                  "(1 rbx 2 rbp 4 r12 8 r13 16 r14 32 r15 64/128 xmm8)", parent_bits);
        if (g_rc_child_bits != 0)
            FAILF("child registers after clone differ: bits 0x%x (1 rbx 2 rbp 4 r12 "
                  "8 r13 16 r14 32 r15 64/128 xmm8 256 rax!=0 512 rsp!=stack)", g_rc_child_bits);
        munmap(stk, STACK_SIZE);
    }
    section_end(s, "raw clone registers: rbx rbp r12-r15 xmm8 rax=0 rsp=stack");
}

static void test_fork_style(void)
{
    int s = section_begin();
    long pid = raw_syscall6(SYS_clone, SIGCHLD, 0, 0, 0, 0, 0);
    if (pid == 0) {
        long ok = raw_syscall0(SYS_getppid) > 0;
        raw_syscall1(SYS_exit_group, ok ? 42 : 1);
    }
    REQUIRE(pid > 0, "fork-style clone");
    int st = 0;
    EXPECT_EQ("waitpid", waitpid((pid_t)pid, &st, 0), pid);
    EXPECT("exited", WIFEXITED(st));
    EXPECT_EQ("exit status", WEXITSTATUS(st), 42);
    section_end(s, "raw fork-style clone(SIGCHLD)");
}

/* ------------------------------------------------------------- clone3 ---- */

static long clone3_child(void *p)
{
    struct child *c = p;
    return child_fn(c);
}

static void test_clone3(void)
{
    int s = section_begin();
    int p[2];
    REQUIRE(pipe(p) == 0, "pipe");
    void *stk = map_stack();
    static struct child c;
    memset(&c, 0, sizeof c);
    c.fd = p[1];
    c.loops = 20;
    /* fn and arg sit at the top of the stack; the child starts just below. */
    void **top = (void **)((char *)stk + STACK_SIZE - 16);
    top[0] = (void *)clone3_child;
    top[1] = &c;
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = THREAD_FLAGS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;
    ca.parent_tid = (uintptr_t)&c.ctid;
    ca.child_tid = (uintptr_t)&c.ctid;
    ca.stack = (uintptr_t)stk;
    ca.stack_size = STACK_SIZE - 16;
    long tid = rc_clone3(&ca, sizeof ca);
    if (tid == -ENOSYS) {
        /* kernel without clone3: nothing to check, same output */
    } else {
        REQUIRE(tid > 0, "clone3 thread");
        wait_set(&c.done);
        wait_cleared(&c.ctid);
        EXPECT_EQ("clone3 child pid", c.pid, getpid());
        EXPECT_EQ("clone3 child tid", c.tid, tid);
        EXPECT_EQ("clone3 child ppid", c.ppid, getppid());
        EXPECT_EQ("clone3 child write", c.wrote, 1);
        EXPECT_EQ("clone3 child loops", c.loops_bad, 0);
        char ch;
        EXPECT_EQ("read clone3 byte", read(p[0], &ch, 1), 1);
    }
    munmap(stk, STACK_SIZE);
    close(p[0]);
    close(p[1]);
    section_end(s, "clone3 thread with its own stack");

    s = section_begin();
    memset(&ca, 0, sizeof ca);
    ca.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &ca, sizeof ca);
    if (pid == 0)
        raw_syscall1(SYS_exit_group, 61);
    if (pid < 0 && errno == ENOSYS) {
        /* same output */
    } else {
        REQUIRE(pid > 0, "clone3 fork-style");
        int st = 0;
        EXPECT_EQ("waitpid clone3 child", waitpid((pid_t)pid, &st, 0), pid);
        EXPECT("clone3 child exited", WIFEXITED(st));
        EXPECT_EQ("clone3 child status", WEXITSTATUS(st), 61);
    }
    section_end(s, "clone3 fork-style through syscall(3)");
}

int main(void)
{
    test_simple();
    test_many();
    test_regcheck();
    test_fork_style();
    test_clone3();
    /* The parent (which shares %fs with all those children) still works. */
    int s = section_begin();
    errno = 0;
    EXPECT_EQ("close(-1)", close(-1), -1);
    EXPECT_EQ("errno after close(-1)", errno, EBADF);
    EXPECT_EQ("gettid is pid in main", gettid(), getpid());
    section_end(s, "parent TLS/errno intact");
    return finish();
}
