/*
 * Hard case: a syscall site patched while 64 threads are running it, with
 * signals arriving throughout.
 *
 * Why it is hard for a trap-then-patch interposer: the first thread to trap
 * at the site rewrites its 7 bytes (cross-modifying code) while the other
 * threads are executing them: some have run the old `mov $nr,%eax` and are
 * about to run the old `syscall` (which now starts with the invalid byte
 * 0x06), some decode a half-written site, some jump through the new slot.
 * Meanwhile SIGALRM arrives every 100 us; its handler runs the same site, so
 * the trampoline and the fault handlers are entered again from a handler
 * that interrupted them.
 *
 * What it checks: every call of the site (getppid through an inline
 * `mov $110,%eax; syscall` that nothing has run before the threads start)
 * returns the parent's pid, in the threads and in the handlers; the handlers
 * ran; no crash. The harness also runs it many times in a row.
 */
#include "common.h"

#include <pthread.h>
#include <sys/time.h>

#define THREADS 64
#define CALLS 2000

static pid_t g_ppid;
static volatile int g_go;
static int g_bad;
static int g_handler_calls;

/* The site: a function of its own (so it has unwind info and a known start),
 * run for the first time by the threads below. */
__attribute__((noinline)) static long site_getppid(void)
{
    long ret;
    __asm__ volatile("mov $110, %%eax\n\tsyscall" : "=a"(ret) : : "rcx", "r11", "memory");
    return ret;
}

static void on_alarm(int sig)
{
    (void)sig;
    int saved = errno;
    if (site_getppid() != g_ppid)
        __atomic_add_fetch(&g_bad, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&g_handler_calls, 1, __ATOMIC_RELAXED);
    errno = saved;
}

static void *worker(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&g_go, __ATOMIC_ACQUIRE))
        ;
    for (int i = 0; i < CALLS; i++)
        if (site_getppid() != g_ppid)
            __atomic_add_fetch(&g_bad, 1, __ATOMIC_RELAXED);
    return NULL;
}

int main(void)
{
    g_ppid = getppid();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = { { 0, 100 }, { 0, 100 } };
    setitimer(ITIMER_REAL, &it, NULL);

    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, worker, NULL) != 0) {
            say("FAIL: pthread_create %d\n", i);
            return 1;
        }
    __atomic_store_n(&g_go, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    /* Let the timer fire a few more times on the main thread. */
    while (__atomic_load_n(&g_handler_calls, __ATOMIC_RELAXED) < 20)
        site_getppid();
    struct itimerval off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &off, NULL);

    if (g_bad != 0)
        say("FAIL: %d calls of the racing site returned the wrong value\n", g_bad);
    else
        say("patch race: %d threads x %d calls of one site, with SIGALRM handlers calling it too: ok\n",
            THREADS, CALLS);
    return g_bad != 0;
}
