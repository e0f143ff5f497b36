/*
 * Hard case: the program's own alternate signal stacks.
 *
 * Why it is hard for a syscall interposer: the interposer wants its SIGSYS
 * handler on an alternate stack of its own, but there is only one altstack
 * per thread and the program sets, queries, disables and auto-disarms its
 * own, runs SA_ONSTACK handlers on it, and makes syscalls from those
 * handlers (each one a nested SIGSYS while already on an altstack).  The
 * program must see exactly its own settings from sigaltstack(), including
 * SS_ONSTACK while running on it, SS_DISABLE before it ever set one, EPERM
 * when changing it while on it, and SS_AUTODISARM behaviour.  A stack
 * overflow caught on the altstack is the classic use (Rust, Go, JVMs).
 *
 * What it checks:
 *  - first query reports SS_DISABLE; after setting, queries report flags 0
 *    and the same ss_sp/ss_size; in an SA_ONSTACK handler a local variable
 *    lies inside the stack, the query reports SS_ONSTACK, changing the stack
 *    fails with EPERM, 200 syscalls work, and a nested SA_ONSTACK signal
 *    also runs on it (below the first frame).
 *  - SS_DISABLE: query reports it, the handler runs on the normal stack.
 *  - SS_AUTODISARM: outside reports SS_AUTODISARM; inside the handler the
 *    kernel reports SS_DISABLE with a null stack; restored afterwards.
 *  - an altstack of exactly SIGSTKSZ bytes in a thread whose handler makes
 *    syscalls.
 *  - stack overflow: deep recursion in a thread hits the guard page; the
 *    SIGSEGV handler on that thread's altstack siglongjmps out ("caught
 *    overflow"), twice, then the thread's mask and altstack are as before.
 */
#include "common.h"

#include <pthread.h>
#include <setjmp.h>
#include <sys/mman.h>

#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31)
#endif

#define ALT_SIZE (128 * 1024)

static char *g_alt;
static size_t g_alt_size;

static int in_alt(const void *p)
{
    const char *c = p;
    return c >= g_alt && c < g_alt + g_alt_size;
}

/* results recorded by handlers (printed by main) */
static volatile int g_h_onstack, g_h_flags, g_h_sp_ok, g_h_eperm, g_h_syscalls_ok;
static volatile int g_nested_onstack, g_nested_below, g_nested_flags;
static volatile uintptr_t g_h_local_addr;
static volatile int g_mode; /* 0: full checks, 1: just record */

static void on_usr2(int sig)
{
    (void)sig;
    volatile char local = 0;
    stack_t cur;
    g_nested_onstack = in_alt((const void *)&local);
    g_nested_below = (uintptr_t)&local < g_h_local_addr;
    sigaltstack(NULL, &cur);
    g_nested_flags = cur.ss_flags;
}

static void on_usr1(int sig)
{
    (void)sig;
    volatile char local = 0;
    stack_t cur;
    g_h_local_addr = (uintptr_t)&local;
    g_h_onstack = in_alt((const void *)&local);
    memset(&cur, 0, sizeof cur);
    sigaltstack(NULL, &cur);
    g_h_flags = cur.ss_flags;
    g_h_sp_ok = (cur.ss_sp == g_alt && cur.ss_size == g_alt_size);
    if (g_mode != 0)
        return;
    /* changing the altstack while running on it must fail with EPERM */
    stack_t other = { .ss_sp = g_alt, .ss_size = g_alt_size, .ss_flags = 0 };
    g_h_eperm = (sigaltstack(&other, NULL) == -1 && errno == EPERM);
    int ok = 1;
    pid_t pp = getppid();
    for (int i = 0; i < 200; i++)
        if (getppid() != pp)
            ok = 0;
    g_h_syscalls_ok = ok;
    raise(SIGUSR2);
}

static void install(int sig, void (*h)(int), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    REQUIRE(sigaction(sig, &sa, NULL) == 0, "sigaction");
}

static void test_basic(void)
{
    int s = section_begin();
    stack_t old;
    memset(&old, 0x55, sizeof old);
    EXPECT_EQ("initial query", sigaltstack(NULL, &old), 0);
    EXPECT_EQ("initial flags SS_DISABLE", old.ss_flags, SS_DISABLE);

    g_alt_size = ALT_SIZE;
    g_alt = mmap(NULL, g_alt_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(g_alt != MAP_FAILED, "mmap altstack");
    stack_t ss = { .ss_sp = g_alt, .ss_size = g_alt_size, .ss_flags = 0 };
    EXPECT_EQ("set altstack", sigaltstack(&ss, &old), 0);
    EXPECT_EQ("old flags from set", old.ss_flags, SS_DISABLE);
    memset(&old, 0, sizeof old);
    EXPECT_EQ("query", sigaltstack(NULL, &old), 0);
    EXPECT_EQ("flags outside handler", old.ss_flags, 0);
    EXPECT("ss_sp/ss_size reported back", old.ss_sp == g_alt && old.ss_size == g_alt_size);

    install(SIGUSR1, on_usr1, SA_ONSTACK);
    install(SIGUSR2, on_usr2, SA_ONSTACK);
    g_mode = 0;
    raise(SIGUSR1);
    EXPECT("handler local lies on the altstack", g_h_onstack);
    EXPECT_EQ("flags in handler", g_h_flags, SS_ONSTACK);
    EXPECT("ss_sp/ss_size in handler", g_h_sp_ok);
    EXPECT("changing the altstack on it fails with EPERM", g_h_eperm);
    EXPECT("200 syscalls in the handler", g_h_syscalls_ok);
    EXPECT("nested handler on the altstack", g_nested_onstack);
    EXPECT("nested frame below the first", g_nested_below);
    EXPECT_EQ("nested flags", g_nested_flags, SS_ONSTACK);

    memset(&old, 0, sizeof old);
    sigaltstack(NULL, &old);
    EXPECT_EQ("flags after handler", old.ss_flags, 0);
    EXPECT("ss_sp/ss_size after handler", old.ss_sp == g_alt && old.ss_size == g_alt_size);
    section_end(s, "sigaltstack set/query, SA_ONSTACK handler on it, SS_ONSTACK, EPERM, nesting");

    s = section_begin();
    stack_t dis = { .ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE };
    EXPECT_EQ("disable", sigaltstack(&dis, &old), 0);
    EXPECT_EQ("old flags at disable", old.ss_flags, 0);
    memset(&old, 0, sizeof old);
    sigaltstack(NULL, &old);
    EXPECT_EQ("flags after disable", old.ss_flags, SS_DISABLE);
    g_mode = 1;
    raise(SIGUSR1);
    EXPECT("handler not on the disabled altstack", !g_h_onstack);
    EXPECT_EQ("flags in handler when disabled", g_h_flags, SS_DISABLE);
    section_end(s, "SS_DISABLE: reported, handler runs on the normal stack");

    s = section_begin();
    stack_t ad = { .ss_sp = g_alt, .ss_size = g_alt_size, .ss_flags = SS_AUTODISARM };
    EXPECT_EQ("set SS_AUTODISARM", sigaltstack(&ad, NULL), 0);
    memset(&old, 0, sizeof old);
    sigaltstack(NULL, &old);
    EXPECT_EQ("flags outside", (unsigned)old.ss_flags, SS_AUTODISARM);
    g_mode = 1;
    raise(SIGUSR1);
    EXPECT("autodisarm handler on the altstack", g_h_onstack);
    EXPECT_EQ("flags in autodisarm handler", g_h_flags, SS_DISABLE);
    memset(&old, 0, sizeof old);
    sigaltstack(NULL, &old);
    EXPECT_EQ("flags after autodisarm handler", (unsigned)old.ss_flags, SS_AUTODISARM);
    EXPECT("sp/size restored after autodisarm handler", old.ss_sp == g_alt && old.ss_size == g_alt_size);
    EXPECT_EQ("disable again", sigaltstack(&dis, NULL), 0);
    section_end(s, "SS_AUTODISARM semantics");
}

/* ------------------------------------------ SIGSTKSZ altstack in a thread */

static char *g_small;
static size_t g_small_size;
static volatile int g_small_ok;

static void on_small(int sig)
{
    (void)sig;
    volatile char local;
    int ok = ((char *)&local >= g_small && (char *)&local < g_small + g_small_size);
    pid_t pp = getppid();
    for (int i = 0; i < 100; i++) {
        if (getppid() != pp)
            ok = 0;
        struct timespec ts;
        if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
            ok = 0;
    }
    int fds[2];
    if (pipe(fds) != 0)
        ok = 0;
    else {
        char c = 0;
        if (write(fds[1], "s", 1) != 1 || read(fds[0], &c, 1) != 1 || c != 's')
            ok = 0;
        close(fds[0]);
        close(fds[1]);
    }
    g_small_ok = ok;
}

static void *small_thread(void *unused)
{
    (void)unused;
    g_small_size = SIGSTKSZ;
    g_small = malloc(g_small_size);
    stack_t ss = { .ss_sp = g_small, .ss_size = g_small_size, .ss_flags = 0 };
    if (sigaltstack(&ss, NULL) != 0)
        return (void *)1;
    install(SIGURG, on_small, SA_ONSTACK);
    pthread_kill(pthread_self(), SIGURG);
    stack_t dis = { .ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE };
    sigaltstack(&dis, NULL);
    free(g_small);
    return NULL;
}

static void test_small(void)
{
    int s = section_begin();
    pthread_t t;
    void *ret = (void *)1;
    REQUIRE(pthread_create(&t, NULL, small_thread, NULL) == 0, "thread");
    pthread_join(t, &ret);
    EXPECT("thread setup", ret == NULL);
    EXPECT("handler on a SIGSTKSZ altstack made syscalls", g_small_ok);
    section_end(s, "SIGSTKSZ-sized altstack, handler makes syscalls");
}

/* --------------------------------------------------- stack overflow ---- */

static __thread sigjmp_buf t_overflow_env;
static volatile int g_segv_on_alt, g_segv_addr_ok;
static char *g_ov_alt;
static uintptr_t g_ov_lo, g_ov_hi; /* thread stack range incl. guard */

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    volatile char local;
    g_segv_on_alt = ((char *)&local >= g_ov_alt && (char *)&local < g_ov_alt + ALT_SIZE);
    uintptr_t a = (uintptr_t)si->si_addr;
    g_segv_addr_ok = (a >= g_ov_lo && a < g_ov_hi);
    siglongjmp(t_overflow_env, 1);
}

static volatile long g_depth_limit = 1L << 40; /* never reached */

static __attribute__((noinline)) long recurse(long depth)
{
    volatile char pad[512];
    if (depth > g_depth_limit)
        return 0;
    pad[0] = (char)depth;
    pad[511] = (char)(depth >> 8);
    long r = recurse(depth + 1);
    return r + pad[0] + pad[511];
}

static void *overflow_thread(void *unused)
{
    (void)unused;
    pthread_attr_t at;
    void *stk;
    size_t stksz, guard;
    pthread_getattr_np(pthread_self(), &at);
    pthread_attr_getstack(&at, &stk, &stksz);
    pthread_attr_getguardsize(&at, &guard);
    pthread_attr_destroy(&at);
    g_ov_lo = (uintptr_t)stk - guard - 65536;
    g_ov_hi = (uintptr_t)stk + 4096;

    g_ov_alt = mmap(NULL, ALT_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g_ov_alt == MAP_FAILED)
        return (void *)1;
    stack_t ss = { .ss_sp = g_ov_alt, .ss_size = ALT_SIZE, .ss_flags = 0 };
    if (sigaltstack(&ss, NULL) != 0)
        return (void *)2;
    sigset_t before;
    pthread_sigmask(SIG_SETMASK, NULL, &before);
    volatile int caught = 0;
    for (volatile int round = 0; round < 2; round++) {
        g_segv_on_alt = 0;
        g_segv_addr_ok = 0;
        if (sigsetjmp(t_overflow_env, 1) == 0) {
            recurse(0);
            FAILF("recursion returned");
        } else {
            say("caught overflow\n");
            if (!g_segv_on_alt)
                FAILF("SIGSEGV handler not on the altstack");
            if (!g_segv_addr_ok)
                FAILF("si_addr not near the thread's stack guard");
            caught++;
        }
    }
    sigset_t after;
    pthread_sigmask(SIG_SETMASK, NULL, &after);
    EXPECT_SIGSET("thread mask after siglongjmp out of SIGSEGV", &after, &before);
    stack_t cur;
    sigaltstack(NULL, &cur);
    EXPECT_EQ("altstack flags after the jump", cur.ss_flags, 0);
    EXPECT("altstack still the same", cur.ss_sp == g_ov_alt && cur.ss_size == ALT_SIZE);
    return (void *)(intptr_t)(caught == 2 ? 0 : 3);
}

static void test_overflow(void)
{
    int s = section_begin();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    REQUIRE(sigaction(SIGSEGV, &sa, NULL) == 0, "sigaction SIGSEGV");
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 256 * 1024);
    pthread_t t;
    void *ret = (void *)1;
    REQUIRE(pthread_create(&t, &at, overflow_thread, NULL) == 0, "thread");
    pthread_join(t, &ret);
    pthread_attr_destroy(&at);
    EXPECT_EQ("overflow thread result", (intptr_t)ret, 0);
    signal(SIGSEGV, SIG_DFL);
    section_end(s, "stack overflow on a thread caught on its altstack, twice");
}

int main(void)
{
    test_basic();
    test_small();
    test_overflow();
    return finish();
}
