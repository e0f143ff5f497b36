/*
 * Hard case: a storm of asynchronous signals hitting threads that are in
 * the middle of syscalls, with handlers that make syscalls themselves.
 *
 * Why it is hard for a syscall interposer: a signal can arrive at any
 * instruction of the interposer's trampoline or SIGSYS handler, or while a
 * syscall it issued is blocked; the program's handler then runs on top of
 * the interposer's frame, makes syscalls (re-entering the interposer), and
 * returns into it.  Any state not kept per frame (a per-thread "current
 * syscall" slot, a scratch register save area, a non-reentrant lock) is
 * clobbered by the nested entry, and SA_RESTART restarts must land
 * correctly.  Results must still be exactly right.
 *
 * What it checks: 4 worker threads each run 3000 rounds of getppid, a
 * write/read round trip on a private pipe (blocking read, data from a
 * partner thread), open/fstat/close and a contended mutex, all checked,
 * while a periodic ITIMER_REAL (SIGALRM, 200 us) and a thread sending
 * SIGUSR1 to the workers with tgkill keep interrupting them; both handlers
 * (SA_RESTART) make syscalls and check their own mask.  Only "ok" lines are
 * printed (handler counts vary from run to run and are not printed).
 */
#include "common.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/time.h>

#define WORKERS 4
#define ROUNDS 3000

static pid_t g_ppid;
static volatile int g_stop;
static int g_handler_bad;
static long g_handled;
static pthread_mutex_t g_mutex = PTHREAD_MUTEX_INITIALIZER;
static long g_counter;
static pid_t g_tids[WORKERS];
static int g_req[WORKERS][2], g_resp[WORKERS][2];

static void handler(int sig)
{
    int saved = errno;
    __atomic_add_fetch(&g_handled, 1, __ATOMIC_RELAXED);
    if (getppid() != g_ppid)
        __atomic_add_fetch(&g_handler_bad, 1, __ATOMIC_RELAXED);
    sigset_t cur;
    if (pthread_sigmask(SIG_SETMASK, NULL, &cur) != 0 || sigismember(&cur, sig) != 1)
        __atomic_add_fetch(&g_handler_bad, 1, __ATOMIC_RELAXED);
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        __atomic_add_fetch(&g_handler_bad, 1, __ATOMIC_RELAXED);
    errno = saved;
}

/* The partner echoes every request from worker i back, +1. */
static void *partner(void *p)
{
    int i = (int)(intptr_t)p;
    for (;;) {
        uint32_t v;
        ssize_t r = read(g_req[i][0], &v, sizeof v);
        if (r == 0)
            break;
        if (r != (ssize_t)sizeof v) {
            FAILF("partner %d read %zd errno %d", i, r, errno);
            break;
        }
        v++;
        if (write(g_resp[i][1], &v, sizeof v) != (ssize_t)sizeof v) {
            FAILF("partner %d write", i);
            break;
        }
    }
    return NULL;
}

static void *worker(void *p)
{
    int i = (int)(intptr_t)p;
    g_tids[i] = gettid();
    int bad = 0;
    for (uint32_t round = 0; round < ROUNDS; round++) {
        if (getppid() != g_ppid)
            bad++;
        uint32_t v = round * 7 + (uint32_t)i, w = 0;
        if (write(g_req[i][1], &v, sizeof v) != (ssize_t)sizeof v)
            bad++;
        if (read(g_resp[i][0], &w, sizeof w) != (ssize_t)sizeof w || w != v + 1)
            bad++;
        if (round % 4 == 0) {
            int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            struct stat st;
            if (fd < 0 || fstat(fd, &st) != 0 || !S_ISCHR(st.st_mode) || close(fd) != 0)
                bad++;
        }
        pthread_mutex_lock(&g_mutex);
        g_counter++;
        pthread_mutex_unlock(&g_mutex);
    }
    close(g_req[i][1]);
    return (void *)(intptr_t)bad;
}

static void *pelter(void *unused)
{
    (void)unused;
    pid_t pid = getpid();
    while (!__atomic_load_n(&g_stop, __ATOMIC_ACQUIRE)) {
        for (int i = 0; i < WORKERS; i++)
            if (g_tids[i])
                syscall(SYS_tgkill, pid, g_tids[i], SIGUSR1);
        struct timespec ts = { 0, 300000 };
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int main(void)
{
    g_ppid = getppid();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    REQUIRE(sigaction(SIGALRM, &sa, NULL) == 0 && sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");

    int s = section_begin();
    pthread_t part[WORKERS], work[WORKERS], pel;
    for (int i = 0; i < WORKERS; i++) {
        REQUIRE(pipe(g_req[i]) == 0 && pipe(g_resp[i]) == 0, "pipes");
        REQUIRE(pthread_create(&part[i], NULL, partner, (void *)(intptr_t)i) == 0, "partner");
    }
    struct itimerval it = { { 0, 200 }, { 0, 200 } };
    REQUIRE(setitimer(ITIMER_REAL, &it, NULL) == 0, "setitimer");
    for (int i = 0; i < WORKERS; i++)
        REQUIRE(pthread_create(&work[i], NULL, worker, (void *)(intptr_t)i) == 0, "worker");
    REQUIRE(pthread_create(&pel, NULL, pelter, NULL) == 0, "pelter");
    for (int i = 0; i < WORKERS; i++) {
        void *ret;
        pthread_join(work[i], &ret);
        if ((intptr_t)ret != 0)
            FAILF("worker %d: %ld wrong results", i, (long)(intptr_t)ret);
    }
    struct itimerval off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &off, NULL);
    __atomic_store_n(&g_stop, 1, __ATOMIC_RELEASE);
    pthread_join(pel, NULL);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(part[i], NULL);
    EXPECT_EQ("mutex counter", g_counter, (long)WORKERS * ROUNDS);
    EXPECT_EQ("handler checks", g_handler_bad, 0);
    EXPECT("handlers ran", g_handled > 0);
    section_end(s, "4 workers x 3000 rounds of checked syscalls under SIGALRM + SIGUSR1 storms");
    return finish();
}
