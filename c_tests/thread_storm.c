/*
 * Hard case: thread storm.
 *
 * Why it is hard for a syscall interposer: every new thread starts life inside
 * the clone/clone3 syscall that the interposer ran on the app's behalf (glibc
 * blocks all signals around it, and the child must come back with the app's
 * registers, rax=0, its new stack and the app's signal mask).  Per-thread
 * interposer state (alternate signal stack, per-thread stack for the
 * trampoline, saved masks) must be set up for every new thread and must not be
 * confused when glibc reuses a dead thread's stack and tid for a new thread.
 * Threads here exit while others are being created on other threads.
 *
 * What it checks: a few hundred threads in rounds (16 at a time) and a stream
 * of detached threads created while other threads exit; every thread verifies
 * getpid/getppid/gettid, the signal mask it inherited, a private pipe round
 * trip, writes a record into a shared pipe that the main thread verifies,
 * and returns a value that the joiner checks.  Nested creation (threads that
 * create threads) and concurrent creation from several threads too.
 */
#include "common.h"

#include <fcntl.h>
#include <pthread.h>

#define ROUNDS 20
#define PER_ROUND 16
#define DETACHED 150
#define NEST_DEPTH 6
#define CREATORS 4
#define PER_CREATOR 20

static pid_t g_pid, g_ppid;
static int g_shared[2]; /* records from threads */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
static int g_detached_done;

/* The syscalls each thread makes; returns 0 when everything matched. */
static int thread_body(unsigned tag)
{
    int bad = 0;
    sigset_t cur;

    if (pthread_sigmask(SIG_SETMASK, NULL, &cur) != 0)
        bad |= 1;
    /* main blocked SIGUSR2 (and only that) before creating anything */
    if (sigismember(&cur, SIGUSR2) != 1 || sigismember(&cur, SIGUSR1) != 0 ||
        sigismember(&cur, SIGSYS) != 0 || sigismember(&cur, SIGSEGV) != 0)
        bad |= 2;
    if (getpid() != g_pid)
        bad |= 4;
    if (gettid() == g_pid)
        bad |= 8;
    for (int i = 0; i < 10; i++)
        if (getppid() != g_ppid)
            bad |= 16;

    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        bad |= 32;
    } else {
        uint64_t v = 0x5151000000000000ULL | tag, w = 0;
        if (write(p[1], &v, sizeof v) != (ssize_t)sizeof v)
            bad |= 64;
        if (read(p[0], &w, sizeof w) != (ssize_t)sizeof w || w != v)
            bad |= 128;
        close(p[0]);
        close(p[1]);
    }

    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "x", 1) != 1)
        bad |= 256;
    if (fd >= 0)
        close(fd);

    uint32_t rec = tag;
    if (write(g_shared[1], &rec, sizeof rec) != (ssize_t)sizeof rec)
        bad |= 512;
    return bad;
}

struct round_arg {
    unsigned tag;
    pid_t tid;
    int bad;
};

static void *round_thread(void *p)
{
    struct round_arg *a = p;
    a->tid = gettid();
    a->bad = thread_body(a->tag);
    return (void *)(uintptr_t)(a->tag * 3 + 1);
}

/* Read n uint32 records from the shared pipe; return their sum. */
static uint64_t drain(int n)
{
    uint64_t sum = 0;
    for (int i = 0; i < n; i++) {
        uint32_t rec;
        ssize_t r = read(g_shared[0], &rec, sizeof rec);
        if (r != (ssize_t)sizeof rec) {
            FAILF("shared pipe short read %zd", r);
            return sum;
        }
        sum += rec;
    }
    return sum;
}

static void phase_rounds(void)
{
    int s = section_begin();
    for (int round = 0; round < ROUNDS; round++) {
        pthread_t th[PER_ROUND];
        struct round_arg args[PER_ROUND];
        uint64_t expect_sum = 0;
        for (int i = 0; i < PER_ROUND; i++) {
            args[i].tag = (unsigned)(round * 100 + i);
            args[i].tid = 0;
            args[i].bad = -1;
            expect_sum += args[i].tag;
            int rc = pthread_create(&th[i], NULL, round_thread, &args[i]);
            if (rc != 0) {
                FAILF("pthread_create round %d thread %d: %d", round, i, rc);
                exit(1);
            }
        }
        for (int i = 0; i < PER_ROUND; i++) {
            void *ret = NULL;
            int rc = pthread_join(th[i], &ret);
            EXPECT_EQ("pthread_join", rc, 0);
            EXPECT_EQ("thread return value", (uintptr_t)ret, args[i].tag * 3 + 1);
            if (args[i].bad != 0)
                FAILF("round %d thread %d checks failed: mask 0x%x", round, i, args[i].bad);
        }
        for (int i = 0; i < PER_ROUND; i++)
            for (int j = i + 1; j < PER_ROUND; j++)
                if (args[i].tid == args[j].tid)
                    FAILF("round %d: two live threads share a tid", round);
        EXPECT_EQ("shared pipe records", drain(PER_ROUND), expect_sum);
    }
    section_end(s, "rounds: 320 threads created and joined");
}

/* ---- detached threads exiting while others are created ---- */

static void *detached_thread(void *p)
{
    unsigned tag = (unsigned)(uintptr_t)p;
    int bad = thread_body(tag);
    if (bad)
        FAILF("detached thread %u checks failed: mask 0x%x", tag, bad);
    pthread_mutex_lock(&g_lock);
    g_detached_done++;
    pthread_cond_broadcast(&g_cond);
    pthread_mutex_unlock(&g_lock);
    if (tag % 2)
        pthread_exit(NULL); /* half leave via pthread_exit, half by returning */
    return NULL;
}

static void *detached_creator(void *unused)
{
    (void)unused;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    for (unsigned i = 0; i < DETACHED; i++) {
        pthread_t t;
        int rc;
        while ((rc = pthread_create(&t, &at, detached_thread, (void *)(uintptr_t)(50000 + i))) == EAGAIN)
            sleep_ms(1);
        if (rc != 0) {
            FAILF("detached pthread_create: %d", rc);
            exit(1);
        }
    }
    pthread_attr_destroy(&at);
    return NULL;
}

static void phase_detached(void)
{
    int s = section_begin();
    pthread_t creator;
    REQUIRE(pthread_create(&creator, NULL, detached_creator, NULL) == 0, "creator thread");

    /* Meanwhile the main thread keeps creating and joining its own threads. */
    uint64_t expect_sum = 0;
    for (int round = 0; round < 10; round++) {
        pthread_t th[8];
        struct round_arg args[8];
        for (int i = 0; i < 8; i++) {
            args[i].tag = (unsigned)(90000 + round * 10 + i);
            args[i].bad = -1;
            expect_sum += args[i].tag;
            REQUIRE(pthread_create(&th[i], NULL, round_thread, &args[i]) == 0, "pthread_create");
        }
        for (int i = 0; i < 8; i++) {
            void *ret;
            EXPECT_EQ("join", pthread_join(th[i], &ret), 0);
            EXPECT_EQ("return value", (uintptr_t)ret, args[i].tag * 3 + 1);
            if (args[i].bad != 0)
                FAILF("concurrent round %d thread %d: mask 0x%x", round, i, args[i].bad);
        }
    }
    EXPECT_EQ("join creator", pthread_join(creator, NULL), 0);

    pthread_mutex_lock(&g_lock);
    while (g_detached_done < DETACHED)
        pthread_cond_wait(&g_cond, &g_lock);
    pthread_mutex_unlock(&g_lock);
    for (unsigned i = 0; i < DETACHED; i++)
        expect_sum += 50000 + i;
    EXPECT_EQ("records from detached and joined threads", drain(DETACHED + 80), expect_sum);
    section_end(s, "detached: 150 detached threads exit while 80 more are created");
}

/* ---- nesting: each thread creates the next one ---- */

static void *nest_thread(void *p)
{
    uintptr_t depth = (uintptr_t)p;
    int bad = thread_body((unsigned)(70000 + depth));
    if (bad)
        FAILF("nested thread depth %u: mask 0x%x", (unsigned)depth, bad);
    if (depth + 1 < NEST_DEPTH) {
        pthread_t t;
        void *ret = NULL;
        if (pthread_create(&t, NULL, nest_thread, (void *)(depth + 1)) != 0) {
            FAILF("nested create at depth %u", (unsigned)depth);
            return (void *)0;
        }
        pthread_join(t, &ret);
        return (void *)((uintptr_t)ret + 1);
    }
    return (void *)1;
}

static void phase_nested(void)
{
    int s = section_begin();
    pthread_t t;
    void *ret = NULL;
    REQUIRE(pthread_create(&t, NULL, nest_thread, (void *)0) == 0, "nested root");
    EXPECT_EQ("join nested root", pthread_join(t, &ret), 0);
    EXPECT_EQ("nested depth count", (uintptr_t)ret, NEST_DEPTH);
    uint64_t expect_sum = 0;
    for (int d = 0; d < NEST_DEPTH; d++)
        expect_sum += 70000 + d;
    EXPECT_EQ("nested records", drain(NEST_DEPTH), expect_sum);
    section_end(s, "nested: thread creates thread, 6 deep");
}

/* ---- several threads creating threads at the same time ---- */

static void *creator_thread(void *p)
{
    unsigned base = (unsigned)(uintptr_t)p;
    uintptr_t good = 0;
    for (unsigned i = 0; i < PER_CREATOR; i++) {
        pthread_t t;
        struct round_arg a = { base + i, 0, -1 };
        void *ret = NULL;
        if (pthread_create(&t, NULL, round_thread, &a) != 0) {
            FAILF("creator %u: pthread_create", base);
            continue;
        }
        if (pthread_join(t, &ret) != 0)
            FAILF("creator %u: join", base);
        if ((uintptr_t)ret == a.tag * 3 + 1 && a.bad == 0)
            good++;
        else
            FAILF("creator %u child %u: ret/bad mismatch (bad 0x%x)", base, i, a.bad);
    }
    return (void *)good;
}

static void phase_creators(void)
{
    int s = section_begin();
    pthread_t t[CREATORS];
    uint64_t expect_sum = 0;
    for (unsigned c = 0; c < CREATORS; c++) {
        REQUIRE(pthread_create(&t[c], NULL, creator_thread, (void *)(uintptr_t)(100000 + c * 1000)) == 0,
                "creator");
        for (unsigned i = 0; i < PER_CREATOR; i++)
            expect_sum += 100000 + c * 1000 + i;
    }
    for (unsigned c = 0; c < CREATORS; c++) {
        void *ret = NULL;
        EXPECT_EQ("join creator", pthread_join(t[c], &ret), 0);
        EXPECT_EQ("children ok per creator", (uintptr_t)ret, PER_CREATOR);
    }
    EXPECT_EQ("creator records", drain(CREATORS * PER_CREATOR), expect_sum);
    section_end(s, "creators: 4 threads each create and join 20 threads");
}

int main(void)
{
    g_pid = getpid();
    g_ppid = getppid();
    REQUIRE(pipe2(g_shared, O_CLOEXEC) == 0, "shared pipe");

    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR2);
    REQUIRE(sigprocmask(SIG_BLOCK, &m, NULL) == 0, "block SIGUSR2");

    phase_rounds();
    phase_detached();
    phase_nested();
    phase_creators();

    /* The main thread's own view is intact afterwards. */
    int s = section_begin();
    sigset_t cur;
    EXPECT_EQ("sigprocmask query", sigprocmask(SIG_SETMASK, NULL, &cur), 0);
    EXPECT_SIGSET("main mask after storm", &cur, &m);
    EXPECT_EQ("getpid", getpid(), g_pid);
    EXPECT_EQ("gettid", gettid(), g_pid);
    EXPECT_EQ("getppid", getppid(), g_ppid);
    section_end(s, "main thread state after storm");
    return finish();
}
