/*
 * Hard case: a program that blocks every signal (SIGSYS, SIGSEGV, SIGILL
 * included) and keeps making syscalls.
 *
 * Why it is hard for a syscall interposer: the interposer's SIGSYS trap is a
 * forced signal: if SIGSYS is blocked when a trapped syscall happens, the
 * kernel resets it to SIG_DFL and kills the process.  So every path that
 * sets a mask (rt_sigprocmask, pthread_sigmask, the temporary masks of
 * ppoll/pselect6/epoll_pwait, sigaction's sa_mask that applies while a
 * handler runs, fork/clone inheritance) must keep SIGSYS really deliverable,
 * while reporting to the program exactly the mask it asked for.
 *
 * What it checks:
 *  - sigfillset + sigprocmask(SIG_BLOCK), then 10000+ syscalls (pipes,
 *    files, mmap, getppid), a thread and a fork created with everything
 *    blocked; the mask read back is "all but SIGKILL, SIGSTOP and glibc's
 *    32/33" (what glibc + kernel give natively).
 *  - the raw rt_sigprocmask syscall with an all-ones mask reads back all
 *    but SIGKILL/SIGSTOP (32/33 included).
 *  - a worker thread does the same with pthread_sigmask.
 *  - ppoll / pselect / epoll_pwait with a full sigmask and a timeout time
 *    out normally; with a mask that admits a pending SIGUSR1 they fail with
 *    EINTR after running the handler; the mask afterwards is unchanged.
 *  - sigtimedwait picks a pending SIGUSR2 while everything is blocked.
 *  - sigaction(SIGUSR1) with sa_mask = full set: inside the handler the mask
 *    is full, and sigaction read back reports the full sa_mask (also via
 *    the raw rt_sigaction with an all-ones sa_mask).
 */
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/wait.h>

/* What a full block looks like natively through glibc / through raw syscalls. */
#define GLIBC_FULL (~0ULL & ~(SIGBIT(SIGKILL) | SIGBIT(SIGSTOP) | SIGBIT(32) | SIGBIT(33)))
#define KERNEL_FULL (~0ULL & ~(SIGBIT(SIGKILL) | SIGBIT(SIGSTOP)))

static void expect_mask_bits(const char *what, uint64_t want)
{
    sigset_t cur;
    if (pthread_sigmask(SIG_SETMASK, NULL, &cur) != 0) {
        FAILF("%s: query failed", what);
        return;
    }
    sigset_t exp;
    sigset_from_bits(&exp, want);
    EXPECT_SIGSET(what, &cur, &exp);
}

static uint64_t raw_query_mask(void)
{
    uint64_t m = 0;
    long r = raw_syscall4(SYS_rt_sigprocmask, SIG_SETMASK, 0, &m, 8);
    if (r != 0)
        FAILF("raw rt_sigprocmask query %ld", r);
    return m;
}

/* A burst of ordinary syscalls; returns the number of mismatches. */
static int syscall_burst(int rounds)
{
    int bad = 0;
    pid_t pp = getppid();
    int p[2];
    if (pipe(p) != 0)
        return 1000;
    for (int i = 0; i < rounds; i++) {
        if (getppid() != pp)
            bad++;
        uint32_t v = (uint32_t)i, w = 0;
        if (write(p[1], &v, sizeof v) != (ssize_t)sizeof v)
            bad++;
        if (read(p[0], &w, sizeof w) != (ssize_t)sizeof w || w != v)
            bad++;
        if (i % 8 == 0) {
            int fd = open("/dev/null", O_RDONLY);
            if (fd < 0 || close(fd) != 0)
                bad++;
            void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m == MAP_FAILED || munmap(m, 4096) != 0)
                bad++;
        }
    }
    close(p[0]);
    close(p[1]);
    return bad;
}

static void *blocked_thread(void *unused)
{
    (void)unused;
    /* created while main had everything blocked: inherits it */
    expect_mask_bits("new thread inherits the full mask", GLIBC_FULL);
    return (void *)(intptr_t)syscall_burst(300);
}

static void *worker(void *unused)
{
    (void)unused;
    sigset_t full;
    sigfillset(&full);
    if (pthread_sigmask(SIG_BLOCK, &full, NULL) != 0)
        FAILF("worker pthread_sigmask");
    int bad = syscall_burst(2000);
    expect_mask_bits("worker mask after 2000 rounds", GLIBC_FULL);
    return (void *)(intptr_t)bad;
}

static volatile sig_atomic_t g_usr1;
static volatile uint64_t g_handler_mask;

static void on_usr1(int sig)
{
    (void)sig;
    g_usr1++;
    sigset_t cur;
    sigprocmask(SIG_SETMASK, NULL, &cur);
    g_handler_mask = sigset_bits(&cur);
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    REQUIRE(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction SIGUSR1");

    /* ---- block everything through glibc ---- */
    int s = section_begin();
    sigset_t full;
    sigfillset(&full);
    EXPECT_EQ("sigprocmask(SIG_BLOCK, full)", sigprocmask(SIG_BLOCK, &full, NULL), 0);
    expect_mask_bits("mask right after blocking all", GLIBC_FULL);
    EXPECT_EQ("syscall burst with all blocked", syscall_burst(2000), 0);
    pthread_t t;
    void *ret = (void *)1;
    EXPECT_EQ("pthread_create with all blocked", pthread_create(&t, NULL, blocked_thread, NULL), 0);
    pthread_join(t, &ret);
    EXPECT_EQ("blocked thread burst", (intptr_t)ret, 0);
    pid_t pid = fork();
    if (pid == 0) {
        sigset_t cur;
        sigprocmask(SIG_SETMASK, NULL, &cur);
        int bad = sigset_bits(&cur) != GLIBC_FULL;
        bad |= syscall_burst(200) != 0;
        _exit(bad ? 1 : 0);
    }
    int st = -1;
    waitpid(pid, &st, 0);
    EXPECT_EQ("forked child (mask + burst)", st, 0);
    expect_mask_bits("mask after burst, thread and fork", GLIBC_FULL);
    EXPECT_EQ("raw query agrees", raw_query_mask(), GLIBC_FULL);
    section_end(s, "sigfillset+SIG_BLOCK: 10000 syscalls, thread, fork; mask reads back full");

    /* ---- raw all-ones mask ---- */
    s = section_begin();
    uint64_t ones = ~0ULL;
    EXPECT_EQ("raw rt_sigprocmask all ones", raw_syscall4(SYS_rt_sigprocmask, SIG_SETMASK, &ones, 0, 8), 0);
    EXPECT_EQ("raw query", raw_query_mask(), KERNEL_FULL);
    EXPECT_EQ("burst under raw full mask", syscall_burst(500), 0);
    EXPECT_EQ("raw query after burst", raw_query_mask(), KERNEL_FULL);
    sigset_t cur;
    sigprocmask(SIG_SETMASK, NULL, &cur);
    EXPECT_EQ("glibc query sees 32/33 too", sigset_bits(&cur), KERNEL_FULL);
    sigprocmask(SIG_SETMASK, &full, NULL);
    expect_mask_bits("back to glibc full", GLIBC_FULL);
    section_end(s, "raw rt_sigprocmask with all 64 bits set");

    /* ---- worker thread ---- */
    s = section_begin();
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL); /* worker starts unblocked */
    EXPECT_EQ("create worker", pthread_create(&t, NULL, worker, NULL), 0);
    pthread_join(t, &ret);
    EXPECT_EQ("worker burst", (intptr_t)ret, 0);
    expect_mask_bits("main unaffected by the worker's mask", 0);
    sigprocmask(SIG_SETMASK, &full, NULL);
    section_end(s, "pthread_sigmask(all) in a worker thread");

    /* ---- ppoll / pselect / epoll_pwait with full masks ---- */
    s = section_begin();
    int p[2];
    REQUIRE(pipe(p) == 0, "pipe");
    struct pollfd pfd = { p[0], POLLIN, 0 };
    struct timespec ts = { 0, 10 * 1000000L };
    EXPECT_EQ("ppoll full mask timeout", ppoll(&pfd, 1, &ts, &full), 0);
    expect_mask_bits("after ppoll", GLIBC_FULL);
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(p[0], &rs);
    ts.tv_nsec = 10 * 1000000L;
    EXPECT_EQ("pselect full mask timeout", pselect(p[0] + 1, &rs, NULL, NULL, &ts, &full), 0);
    expect_mask_bits("after pselect", GLIBC_FULL);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    REQUIRE(ep >= 0, "epoll_create1");
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 7 };
    REQUIRE(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0, "epoll_ctl");
    EXPECT_EQ("epoll_pwait full mask timeout", epoll_pwait(ep, &ev, 1, 10, &full), 0);
    expect_mask_bits("after epoll_pwait", GLIBC_FULL);
    EXPECT_EQ("write", write(p[1], "x", 1), 1);
    EXPECT_EQ("ppoll full mask ready", ppoll(&pfd, 1, &ts, &full), 1);
    EXPECT_EQ("epoll_pwait ready", epoll_pwait(ep, &ev, 1, 10, &full), 1);
    EXPECT_EQ("epoll data", ev.data.u32, 7);
    char c;
    EXPECT_EQ("read", read(p[0], &c, 1), 1);
    section_end(s, "ppoll/pselect/epoll_pwait with a full sigmask");

    s = section_begin();
    sigset_t admit = full;
    sigdelset(&admit, SIGUSR1);
    uint64_t in_handler_expect = GLIBC_FULL; /* old mask | SIGUSR1 */
    for (int which = 0; which < 3; which++) {
        g_usr1 = 0;
        raise(SIGUSR1); /* stays pending: blocked */
        EXPECT_EQ("handler not yet run", g_usr1, 0);
        int r;
        errno = 0;
        ts.tv_sec = 5;
        ts.tv_nsec = 0;
        if (which == 0) {
            r = ppoll(&pfd, 1, &ts, &admit);
        } else if (which == 1) {
            FD_ZERO(&rs);
            FD_SET(p[0], &rs);
            r = pselect(p[0] + 1, &rs, NULL, NULL, &ts, &admit);
        } else {
            r = epoll_pwait(ep, &ev, 1, 5000, &admit);
        }
        int e = errno;
        EXPECT_EQ("call interrupted", r, -1);
        EXPECT_EQ("EINTR", e, EINTR);
        EXPECT_EQ("handler ran once", g_usr1, 1);
        EXPECT_EQ("mask inside the handler", g_handler_mask, in_handler_expect);
        expect_mask_bits("mask restored after the call", GLIBC_FULL);
        sigset_t pend;
        sigpending(&pend);
        EXPECT_EQ("nothing pending", sigset_bits(&pend), 0);
    }
    close(ep);
    close(p[0]);
    close(p[1]);
    section_end(s, "ppoll/pselect/epoll_pwait admitting a pending SIGUSR1: EINTR, handler, mask back");

    /* ---- sigtimedwait with all blocked ---- */
    s = section_begin();
    raise(SIGUSR2);
    sigset_t w;
    sigemptyset(&w);
    sigaddset(&w, SIGUSR2);
    siginfo_t si;
    ts.tv_sec = 1;
    ts.tv_nsec = 0;
    EXPECT_EQ("sigtimedwait SIGUSR2", sigtimedwait(&w, &si, &ts), SIGUSR2);
    /* the kernel reports SI_TKILL; glibc's sigtimedwait folds it to SI_USER */
    EXPECT_EQ("si_code", si.si_code, SI_USER);
    EXPECT_EQ("si_pid", si.si_pid, getpid());
    expect_mask_bits("mask after sigtimedwait", GLIBC_FULL);
    section_end(s, "sigtimedwait with everything blocked");

    /* ---- sa_mask = full set ---- */
    s = section_begin();
    sigprocmask(SIG_SETMASK, &none, NULL);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigfillset(&sa.sa_mask);
    EXPECT_EQ("sigaction full sa_mask", sigaction(SIGUSR1, &sa, NULL), 0);
    g_usr1 = 0;
    g_handler_mask = 0;
    raise(SIGUSR1);
    EXPECT_EQ("handler ran", g_usr1, 1);
    EXPECT_EQ("mask in handler with full sa_mask", g_handler_mask, GLIBC_FULL);
    expect_mask_bits("mask after the handler", 0);
    struct sigaction back;
    memset(&back, 0, sizeof back);
    EXPECT_EQ("sigaction query", sigaction(SIGUSR1, NULL, &back), 0);
    EXPECT("handler reported back", back.sa_handler == on_usr1);
    EXPECT_EQ("sa_mask reported back", sigset_bits(&back.sa_mask), GLIBC_FULL);

    struct {
        void *handler;
        unsigned long flags;
        void *restorer;
        uint64_t mask;
    } ksa, kold;
    memset(&kold, 0, sizeof kold);
    EXPECT_EQ("raw rt_sigaction query", raw_syscall4(SYS_rt_sigaction, SIGUSR1, 0, &kold, 8), 0);
    ksa = kold;
    ksa.mask = ~0ULL;
    EXPECT_EQ("raw rt_sigaction all-ones sa_mask", raw_syscall4(SYS_rt_sigaction, SIGUSR1, &ksa, 0, 8), 0);
    memset(&kold, 0, sizeof kold);
    EXPECT_EQ("raw rt_sigaction query", raw_syscall4(SYS_rt_sigaction, SIGUSR1, 0, &kold, 8), 0);
    EXPECT_EQ("raw sa_mask reported back", kold.mask, KERNEL_FULL);
    g_usr1 = 0;
    raise(SIGUSR1);
    EXPECT_EQ("handler ran", g_usr1, 1);
    EXPECT_EQ("mask in handler with all-ones sa_mask", g_handler_mask, KERNEL_FULL);
    expect_mask_bits("mask after the handler", 0);
    section_end(s, "sigaction with sa_mask = full set: handler mask and read-back");
    return finish();
}
