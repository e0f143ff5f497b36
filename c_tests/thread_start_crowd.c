/*
 * Hard case: 2,000 threads start at once and each makes syscalls.
 *
 * Why it is hard for a trap-then-patch interposer: every syscall site the
 * threads run (thread start-up in glibc, then the calls below) traps the
 * first time and one thread patches it: writes through /proc/self/mem and a
 * membarrier, under one lock. If the threads that trap meanwhile spin on
 * that lock, 2,000 of them on 2 CPUs starve the one that holds it: natively
 * this program takes a fraction of a second, it took 27-73 s under the
 * library with a spin lock. No timing is checked here (a shared machine):
 * the program must complete within the harness's default timeout (20 s,
 * about 50 times what it takes now, 0.4 s) and every call must return what
 * it returns natively.
 */
#include "common.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/utsname.h>

#define THREADS 2000

static pid_t g_pid, g_ppid;
static pthread_barrier_t g_barrier;
static int g_bad;

/* A site of its own that nothing runs before the threads start. */
__attribute__((noinline)) static long site_getppid(void)
{
    long ret;
    __asm__ volatile("mov $110, %%eax\n\tsyscall" : "=a"(ret) : : "rcx", "r11", "memory");
    return ret;
}

static void *body(void *arg)
{
    (void)arg;
    int bad = 0;
    pthread_barrier_wait(&g_barrier);
    for (int i = 0; i < 20; i++) {
        if (site_getppid() != g_ppid)
            bad |= 1;
        if (getpid() != g_pid)
            bad |= 2;
        if (gettid() == g_pid)
            bad |= 4;
    }
    struct utsname u;
    if (uname(&u) != 0)
        bad |= 8;
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "x", 1) != 1)
        bad |= 16;
    if (fd >= 0)
        close(fd);
    if (bad)
        __atomic_or_fetch(&g_bad, bad, __ATOMIC_SEQ_CST);
    return NULL;
}

int main(void)
{
    g_pid = getpid();
    g_ppid = getppid();
    static pthread_t th[THREADS];
    pthread_attr_t at;
    REQUIRE(pthread_attr_init(&at) == 0, "attr");
    REQUIRE(pthread_attr_setstacksize(&at, 64 * 1024) == 0, "stack size");
    /* Every thread and the main one meet at the barrier: they all start
     * their syscalls at once. */
    REQUIRE(pthread_barrier_init(&g_barrier, NULL, THREADS + 1) == 0, "barrier");
    int s = section_begin();
    int created = 0;
    for (int i = 0; i < THREADS; i++) {
        int rc = pthread_create(&th[i], &at, body, NULL);
        if (rc != 0) {
            FAILF("pthread_create %d: %d", i, rc);
            break;
        }
        created++;
    }
    if (created == THREADS)
        pthread_barrier_wait(&g_barrier);
    else
        exit(1); /* the others wait forever at the barrier */
    for (int i = 0; i < created; i++)
        EXPECT_EQ("join", pthread_join(th[i], NULL), 0);
    EXPECT_EQ("checks in the threads (bit mask)", g_bad, 0);
    section_end(s, "2000 threads start at once and make syscalls");
    return finish();
}
