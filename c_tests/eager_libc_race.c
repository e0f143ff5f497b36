/*
 * usertrap-test: timeout=60
 *
 * Hard case (issue 12): libc's sites patched all at once, at the first
 * patchable trap of the first image of a tree (install::prove_libc: with a
 * site cache that is empty, as tests/sitecache.rs runs this 200 times per
 * backend; c_programs.rs runs it without one, lazily patched), while other
 * threads run those very sites, not yet patched, and signals arrive.
 *
 * No libc call comes before the threads: they are started by a raw clone
 * (emulated, never a patch), on static stacks, so none of libc's sites has
 * trapped yet when they start. Each then loops on libc's getppid() (the
 * seed form), syscall(SYS_getppid) (syscall(3): Form R), read() of stdin,
 * which is /dev/null (Form P), and two of them pass a token back and forth
 * through futex waits and wakes in syscall(3) (blocked in the site's
 * syscall while it may be patched, then woken). The first thread to trap
 * patches libc whole while the others trap, fault or run there. The main
 * thread then installs a SIGUSR1 handler that makes the same calls (its
 * rt_sigaction may be the first trap) and sends the threads 100 signals, one at a time.
 *
 * What it checks: every call returns what it must (the parent's pid, 0
 * bytes from /dev/null), the token makes all its trips, the handlers ran,
 * no crash.
 */
#include "common.h"
#include "raw_clone.h"

#include <linux/futex.h>
#include <sched.h>

#define LOOPERS 3
#define THREADS (LOOPERS + 2)
#define STACK_SIZE (128 * 1024)
#define TRIPS 200
#define SIGNALS 100

static char stacks[THREADS][STACK_SIZE] __attribute__((aligned(64)));
static int tids[THREADS];
static volatile int stop;
static int finished;
static int bad_calls;
static int handled;
static int token; /* whose turn: 0 or 1, for the futex pair */
static int trips;

static void check_calls(void)
{
    long a = getppid();
    long b = syscall(SYS_getppid);
    char c;
    ssize_t r = read(0, &c, 1);
    if (a != b || a <= 0 || r != 0)
        __atomic_add_fetch(&bad_calls, 1, __ATOMIC_RELAXED);
}

static long looper(void *arg)
{
    (void)arg;
    while (!stop) {
        check_calls();
        sched_yield(); /* two CPUs shared by seven threads: let main send */
    }
    __atomic_add_fetch(&finished, 1, __ATOMIC_RELEASE);
    return 0;
}

/* Each side waits (futex through syscall(3)) until the token is its own,
 * passes it on and wakes the other. */
static long passer(void *arg)
{
    int me = (int)(long)arg;
    for (;;) {
        int t = __atomic_load_n(&token, __ATOMIC_ACQUIRE);
        if (t == 2)
            break;
        if (t != me) {
            syscall(SYS_futex, &token, FUTEX_WAIT_PRIVATE, t, NULL, NULL, 0);
            continue;
        }
        check_calls();
        int next = __atomic_add_fetch(&trips, 1, __ATOMIC_RELAXED) >= TRIPS ? 2 : 1 - me;
        __atomic_store_n(&token, next, __ATOMIC_RELEASE);
        syscall(SYS_futex, &token, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    }
    syscall(SYS_futex, &token, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    __atomic_add_fetch(&finished, 1, __ATOMIC_RELEASE);
    return 0;
}

static void on_usr1(int sig)
{
    (void)sig;
    int saved = errno;
    check_calls();
    __atomic_add_fetch(&handled, 1, __ATOMIC_RELAXED);
    errno = saved;
}

int main(void)
{
    const unsigned long flags =
        CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_PARENT_SETTID;
    for (int i = 0; i < THREADS; i++) {
        long (*fn)(void *) = i < LOOPERS ? looper : passer;
        void *arg = (void *)(long)(i < LOOPERS ? 0 : i - LOOPERS);
        if (t_raw_clone(flags, stacks[i] + STACK_SIZE, &tids[i], NULL, fn, arg) <= 0) {
            say("FAIL: raw clone %d\n", i);
            return 1;
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGUSR1, &sa, NULL) != 0) {
        say("FAIL: sigaction\n");
        return 1;
    }
    pid_t pid = getpid();
    for (int n = 0; n < SIGNALS; n++) {
        /* Only to the loopers (the passers may have ended), one at a time:
         * a signal sent while the last is pending would merge with it. */
        syscall(SYS_tgkill, pid, tids[n % LOOPERS], SIGUSR1);
        while (__atomic_load_n(&handled, __ATOMIC_RELAXED) <= n)
            sched_yield();
    }
    stop = 1;
    while (__atomic_load_n(&finished, __ATOMIC_ACQUIRE) < THREADS)
        sched_yield();
    check_calls();
    int failed = 0;
    if (bad_calls != 0) {
        say("FAIL: %d rounds of calls returned the wrong value\n", bad_calls);
        failed = 1;
    }
    if (trips < TRIPS) {
        say("FAIL: the token made %d trips of %d\n", trips, TRIPS);
        failed = 1;
    }
    if (!failed)
        say("eager libc race: %d threads on libc's sites, a futex pair, %d signals with handlers: ok\n", THREADS,
            SIGNALS);
    return failed;
}
