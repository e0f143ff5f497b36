/*
 * usertrap-test: exec report=json timeout=60
 *
 * Hard case: small alternate signal stacks with a guard page below them.
 *
 * Rust's std gives every thread an alternate stack of about 8 KiB with a
 * guard page below it; CPython's faulthandler and the classic
 * `static char stk[SIGSTKSZ]` do the same.  An interposer whose own
 * handlers run on the program's alternate stack overflows it: the program
 * hangs at exit (the report), or dies in posix_spawn, threads, exec.  The
 * kernel's alternate stack must stay the interposer's, and the program's
 * must be kept virtually: queries report it (SS_ONSTACK while a handler runs
 * there, SS_AUTODISARM), and its SA_ONSTACK handlers run on it.
 *
 * For each size (the kernel's minimum, 8 KiB, 16 KiB; each mapped with a
 * PROT_NONE guard page below it), in a child process of its own:
 *  - idle: set the stack, make some syscalls, return from main (the report
 *    at exit, in JSON under the harness's `report=json`);
 *  - spawn: posix_spawn, fork+exec and a plain exec of /bin/true;
 *  - threads: four threads, each with its own small stack, making syscalls
 *    and taking an SA_ONSTACK signal;
 *  - handler: an SA_ONSTACK handler runs inside the stack, sees SS_ONSTACK,
 *    cannot change the stack (EPERM), makes syscalls; a handler without
 *    SA_ONSTACK runs on the normal stack;
 *  - nested (16 KiB only; two frames do not fit 8 KiB natively): a second
 *    SA_ONSTACK signal raised in the first handler runs below its frame;
 *  - autodisarm: SS_AUTODISARM is reported outside, the handler sees
 *    SS_DISABLE, and the setting is back afterwards;
 *  - readonly: the stack is made read-only (LTP signal06 does it from
 *    another thread) and the program goes on making syscalls: no handler
 *    of the program runs, so nothing may fault.
 * Each child is killed if it hangs (SIGKILL from the parent's alarm), which
 * prints a FAIL line.
 */
#include "common.h"

#include <pthread.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>

#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31)
#endif

extern char **environ;

struct altstack {
    char *base;
    size_t size;
};

/* size bytes of stack with an inaccessible guard page below them. */
static struct altstack make_stack(size_t size)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t len = (size + (size_t)page - 1) & ~((size_t)page - 1);
    char *m = mmap(NULL, len + (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(m != MAP_FAILED, "mmap altstack");
    REQUIRE(mprotect(m, (size_t)page, PROT_NONE) == 0, "mprotect guard");
    /* The usable bytes end at the mapping's end, as Rust lays them out. */
    struct altstack s = { m + (size_t)page + len - size, size };
    return s;
}

static void use_stack(struct altstack s, int flags)
{
    stack_t ss = { .ss_sp = s.base, .ss_size = s.size, .ss_flags = flags };
    REQUIRE(sigaltstack(&ss, NULL) == 0, "sigaltstack");
}

static int inside(struct altstack s, const void *p)
{
    const char *c = p;
    return c >= s.base && c < s.base + s.size;
}

static void some_syscalls(int n)
{
    for (int i = 0; i < n; i++) {
        getppid();
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        close(-1);
    }
}

/* --- handlers: record where they ran and what sigaltstack said ----------- */

static __thread struct altstack t_stack;
static __thread volatile int t_h_inside, t_h_flags, t_h_eperm, t_h_calls;
static __thread volatile int t_n_inside, t_n_below, t_n_flags;
static __thread volatile uintptr_t t_h_local;

static void on_usr2(int sig)
{
    (void)sig;
    volatile char local = 0;
    stack_t cur;
    t_n_inside = inside(t_stack, (const void *)&local);
    t_n_below = (uintptr_t)&local < t_h_local;
    t_n_flags = sigaltstack(NULL, &cur) == 0 ? cur.ss_flags : -1;
}

static void on_usr1(int sig)
{
    (void)sig;
    volatile char local = 0;
    stack_t cur, other;
    t_h_local = (uintptr_t)&local;
    t_h_inside = inside(t_stack, (const void *)&local);
    t_h_flags = sigaltstack(NULL, &cur) == 0 ? cur.ss_flags : -1;
    other = cur;
    other.ss_flags = 0;
    errno = 0;
    t_h_eperm = sigaltstack(&other, NULL) == -1 && errno == EPERM;
    pid_t pp = getppid();
    int ok = 0;
    for (int i = 0; i < 20; i++)
        ok += getppid() == pp;
    t_h_calls = ok;
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

/* --- scenarios, each run in a child -------------------------------------- */

static void scenario_idle(size_t size)
{
    t_stack = make_stack(size);
    use_stack(t_stack, 0);
    some_syscalls(50);
}

static void scenario_spawn(size_t size)
{
    t_stack = make_stack(size);
    use_stack(t_stack, 0);
    char *argv[] = { "true", NULL };
    pid_t pid;
    int st;
    EXPECT_EQ("posix_spawn", posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ), 0);
    EXPECT("posix_spawn child exits 0", waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) {
        execv("/bin/true", argv);
        _exit(126);
    }
    EXPECT("fork+exec child exits 0", waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) {
        /* a grandchild that sets its own small stack, then execs */
        use_stack(make_stack(size), 0);
        execv("/bin/true", argv);
        _exit(126);
    }
    EXPECT("exec with a small stack exits 0", waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static size_t g_size;

static void *thread_main(void *arg)
{
    (void)arg;
    t_stack = make_stack(g_size);
    use_stack(t_stack, 0);
    some_syscalls(100);
    pthread_kill(pthread_self(), SIGUSR1);
    some_syscalls(10);
    return (void *)(uintptr_t)(t_h_inside && t_h_calls == 20);
}

static void scenario_threads(size_t size)
{
    g_size = size;
    install(SIGUSR1, on_usr1, SA_ONSTACK);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        REQUIRE(pthread_create(&th[i], NULL, thread_main, NULL) == 0, "pthread_create");
    for (int i = 0; i < 4; i++) {
        void *ok = NULL;
        pthread_join(th[i], &ok);
        EXPECT("thread's handler ran on its stack and made syscalls", ok != NULL);
    }
}

static void scenario_handler(size_t size)
{
    t_stack = make_stack(size);
    use_stack(t_stack, 0);
    install(SIGUSR1, on_usr1, SA_ONSTACK);
    raise(SIGUSR1);
    EXPECT("SA_ONSTACK handler runs inside the alternate stack", t_h_inside);
    EXPECT_EQ("sigaltstack in the handler reports SS_ONSTACK", t_h_flags, SS_ONSTACK);
    EXPECT("changing the stack from its handler fails with EPERM", t_h_eperm);
    EXPECT_EQ("syscalls in the handler", t_h_calls, 20);
    stack_t cur;
    EXPECT("query after the handler", sigaltstack(NULL, &cur) == 0 && cur.ss_flags == 0 &&
                                          cur.ss_sp == t_stack.base && cur.ss_size == t_stack.size);
    install(SIGUSR1, on_usr1, 0);
    raise(SIGUSR1);
    EXPECT("a handler without SA_ONSTACK runs on the normal stack", !t_h_inside);
    EXPECT_EQ("... and sees the stack not in use", t_h_flags, 0);
}

static void on_usr1_nesting(int sig)
{
    on_usr1(sig);
    raise(SIGUSR2);
}

static void scenario_nested(size_t size)
{
    t_stack = make_stack(size);
    use_stack(t_stack, 0);
    install(SIGUSR1, on_usr1_nesting, SA_ONSTACK);
    install(SIGUSR2, on_usr2, SA_ONSTACK);
    raise(SIGUSR1);
    EXPECT("outer handler on the stack", t_h_inside);
    EXPECT("nested handler on the stack", t_n_inside);
    EXPECT("nested handler below the outer frame", t_n_below);
    EXPECT_EQ("nested handler sees SS_ONSTACK", t_n_flags, SS_ONSTACK);
}

static void scenario_autodisarm(size_t size)
{
    t_stack = make_stack(size);
    use_stack(t_stack, (int)SS_AUTODISARM);
    stack_t cur;
    EXPECT("SS_AUTODISARM reported", sigaltstack(NULL, &cur) == 0 && cur.ss_flags == (int)SS_AUTODISARM &&
                                          cur.ss_sp == t_stack.base);
    install(SIGUSR1, on_usr1, SA_ONSTACK);
    raise(SIGUSR1);
    EXPECT("handler ran on the stack", t_h_inside);
    EXPECT_EQ("inside, the disarmed stack reads SS_DISABLE", t_h_flags, SS_DISABLE);
    EXPECT_EQ("syscalls in the handler", t_h_calls, 20);
    EXPECT("armed again afterwards", sigaltstack(NULL, &cur) == 0 && cur.ss_flags == (int)SS_AUTODISARM &&
                                         cur.ss_sp == t_stack.base && cur.ss_size == t_stack.size);
}

static void scenario_readonly(size_t size)
{
    t_stack = make_stack(size);
    use_stack(t_stack, 0);
    long page = sysconf(_SC_PAGESIZE);
    char *first = (char *)((uintptr_t)t_stack.base & ~((uintptr_t)page - 1));
    REQUIRE(mprotect(first, (size_t)(t_stack.base + t_stack.size - first), PROT_READ) == 0, "mprotect read-only");
    some_syscalls(50);
    g_size = size;
    install(SIGUSR1, on_usr1, SA_ONSTACK);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, thread_main, NULL) == 0, "pthread_create");
    pthread_join(th, NULL);
}

static void run(const char *name, size_t size, void (*scenario)(size_t))
{
    int before = t_failure_count();
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) {
        scenario(size);
        /* Return through exit(): atexit handlers, the report at exit. */
        exit(t_failure_count() != before ? 1 : 0);
    }
    int st = 0;
    pid_t r;
    long long deadline = now_ns() + 15LL * 1000000000LL;
    while ((r = waitpid(pid, &st, WNOHANG)) == 0 && now_ns() < deadline)
        sleep_ms(5);
    if (r == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        FAILF("%s (%zu bytes): hung", name, size);
    } else if (WIFSIGNALED(st)) {
        FAILF("%s (%zu bytes): killed by signal %d", name, size, WTERMSIG(st));
    } else if (WEXITSTATUS(st) != 0) {
        FAILF("%s (%zu bytes): exit status %d", name, size, WEXITSTATUS(st));
    } else {
        say("%s (%s): ok\n", name, size == 8192 ? "8 KiB" : size == 16384 ? "16 KiB" : "minimum");
    }
}

int main(void)
{
    /* The kernel refuses stacks under MINSIGSTKSZ (2048); frames need more
     * on CPUs with large vector state, so the handler scenarios use 8 KiB
     * and up, and the minimum only where no handler runs on it. */
    size_t minimum = 2048;
    run("idle", minimum, scenario_idle);
    run("spawn", minimum, scenario_spawn);
    size_t sizes[] = { 8192, 16384 };
    for (size_t i = 0; i < 2; i++) {
        size_t s = sizes[i];
        run("idle", s, scenario_idle);
        run("spawn", s, scenario_spawn);
        run("threads", s, scenario_threads);
        run("handler", s, scenario_handler);
        run("autodisarm", s, scenario_autodisarm);
        run("readonly", s, scenario_readonly);
    }
    run("nested", 16384, scenario_nested);
    return finish();
}
