/*
 * Hard case: syscalls made on nearly exhausted or tiny thread stacks.
 *
 * Why it is hard for a syscall interposer: natively a syscall uses no user
 * stack at all, so a thread with a few hundred bytes of stack left (or a
 * raw-clone thread given a single 4 KiB page) can make any number of them.
 * An interposer whose SIGSYS frame (several KiB with AVX-512 state) or
 * trampoline runs on the program's stack overflows it and crashes; it has
 * to move to a stack of its own for every thread, including threads it did
 * not see pthread create (raw clone, no altstack inherited: the kernel
 * clears the altstack for CLONE_VM children).
 *
 * What it checks:
 *  - a raw clone() thread whose whole stack is one 4 KiB page above a
 *    PROT_NONE guard page makes 300 raw syscalls (getppid, gettid, write).
 *  - a pthread created with a PTHREAD_STACK_MIN stack recurses until less
 *    than 2.5 KiB of its stack is left, then makes 300 syscalls there and
 *    unwinds; results checked.
 */
#include "common.h"
#include "raw_clone.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>

struct tiny {
    long ppid, tid_expected;
    int fd;
    int bad;
    int done;
    int ctid;
};

static long tiny_child(void *p)
{
    struct tiny *t = p;
    int bad = 0;
    long tid = raw_syscall0(SYS_gettid);
    for (int i = 0; i < 100; i++) {
        if (raw_syscall0(SYS_getppid) != t->ppid)
            bad++;
        if (raw_syscall0(SYS_gettid) != tid)
            bad++;
        if (raw_syscall3(SYS_write, t->fd, "t", 1) != 1)
            bad++;
    }
    t->bad = bad;
    t->tid_expected = tid;
    __atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
    raw_syscall6(SYS_futex, (long)&t->done, FUTEX_WAKE_PRIVATE, 1, 0, 0, 0);
    return 0;
}

static void test_tiny_clone(void)
{
    int s = section_begin();
    long page = sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, (size_t)(2 * page), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(m != MAP_FAILED, "mmap");
    REQUIRE(mprotect(m, (size_t)page, PROT_NONE) == 0, "guard page");
    int p[2];
    REQUIRE(pipe(p) == 0, "pipe");
    static struct tiny t;
    memset(&t, 0, sizeof t);
    t.ppid = getppid();
    t.fd = p[1];
    t.bad = -1;
    long tid = t_raw_clone(CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM |
                            CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID,
                        m + 2 * page, &t.ctid, &t.ctid, tiny_child, &t);
    REQUIRE(tid > 0, "clone");
    while (!__atomic_load_n(&t.done, __ATOMIC_ACQUIRE))
        syscall(SYS_futex, &t.done, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
    int v;
    while ((v = __atomic_load_n(&t.ctid, __ATOMIC_ACQUIRE)) != 0)
        syscall(SYS_futex, &t.ctid, FUTEX_WAIT, v, NULL, NULL, 0);
    EXPECT_EQ("tiny-stack child mismatches", t.bad, 0);
    EXPECT_EQ("tiny-stack child tid", t.tid_expected, tid);
    char buf[128];
    long got = 0;
    while (got < 100) {
        ssize_t n = read(p[0], buf, sizeof buf);
        if (n <= 0)
            break;
        got += n;
    }
    EXPECT_EQ("bytes written by the child", got, 100);
    close(p[0]);
    close(p[1]);
    munmap(m, (size_t)(2 * page));
    section_end(s, "raw clone thread on a single 4 KiB stack page: 300 raw syscalls");
}

/* --------------------------------------------------- nearly full stack ---- */

static uintptr_t g_stack_low;
static pid_t g_ppid;
static int g_deep_bad = -1;
static long g_deepest_left;
static volatile long g_max_depth = 1L << 30;

static __attribute__((noinline)) int at_the_bottom(void)
{
    volatile char here;
    g_deepest_left = (long)((uintptr_t)&here - g_stack_low);
    int bad = 0;
    int fds[2];
    if (pipe(fds) != 0)
        return 1000;
    for (int i = 0; i < 100; i++) {
        if (getppid() != g_ppid)
            bad++;
        char c = (char)i, d = 0;
        if (write(fds[1], &c, 1) != 1 || read(fds[0], &d, 1) != 1 || d != c)
            bad++;
    }
    close(fds[0]);
    close(fds[1]);
    return bad;
}

static __attribute__((noinline)) int descend(long depth)
{
    volatile char pad[256];
    pad[0] = (char)depth;
    if ((uintptr_t)pad - g_stack_low < 2560 || depth > g_max_depth)
        return at_the_bottom() + pad[0] - (char)depth;
    return descend(depth + 1) + pad[0] - (char)depth;
}

static void *deep_thread(void *unused)
{
    (void)unused;
    pthread_attr_t at;
    void *stk;
    size_t sz;
    pthread_getattr_np(pthread_self(), &at);
    pthread_attr_getstack(&at, &stk, &sz);
    pthread_attr_destroy(&at);
    g_stack_low = (uintptr_t)stk;
    g_deep_bad = descend(0);
    return NULL;
}

static void test_deep(void)
{
    int s = section_begin();
    g_ppid = getppid();
    pthread_attr_t at;
    pthread_attr_init(&at);
    REQUIRE(pthread_attr_setstacksize(&at, PTHREAD_STACK_MIN) == 0, "setstacksize");
    pthread_t t;
    REQUIRE(pthread_create(&t, &at, deep_thread, NULL) == 0, "pthread_create");
    pthread_join(t, NULL);
    pthread_attr_destroy(&at);
    EXPECT_EQ("syscalls near the bottom of the stack", g_deep_bad, 0);
    EXPECT("less than 2.5 KiB were left", g_deepest_left > 0 && g_deepest_left < 2560);
    section_end(s, "PTHREAD_STACK_MIN thread: 300 syscalls with < 2.5 KiB of stack left");
}

int main(void)
{
    test_tiny_clone();
    test_deep();
    return finish();
}
