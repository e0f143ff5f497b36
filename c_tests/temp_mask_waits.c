/*
 * Hard case: calls that wait with a temporary signal mask (pselect6, ppoll,
 * epoll_pwait, rt_sigsuspend), made again and again from the same sites, so
 * that the library runs them on the fast path (no signal frame of its own),
 * while a signal ends each wait.
 *
 * Why it is hard for a syscall interposer: the kernel installs the
 * temporary mask for the wait only. A handler that ends the wait runs with
 * the temporary mask (plus its sa_mask and its own signal), not the
 * program's mask, and its ucontext shows the program's mask, which is back
 * in force after the call. An interposer that runs the call for the program
 * and enters the program's handler itself must tell a signal that ended
 * the wait (temporary mask) from one that arrived around it (the program's
 * mask). The owned signals (SIGSEGV here) must stay out of the kernel's
 * temporary mask, yet be judged against it: a SIGSEGV held back for the
 * program (blocked) and unblocked by the wait's mask ends the wait too.
 *
 * What it does, 40 rounds per call: the program blocks SIGUSR1 and
 * SIGUSR2; SIGUSR1 (handler with SIGTERM in sa_mask) is raised and stays
 * pending; the call waits with a mask of SIGHUP only (SIGUSR1 unblocked):
 * it returns EINTR (-1/EINTR; sigsuspend always), the handler ran once and
 * saw SIGHUP, SIGUSR1 and SIGTERM blocked (not SIGUSR2), its ucontext's
 * mask is SIGUSR1 and SIGUSR2, and after the call the mask is the
 * program's again. Then a round with SIGSEGV blocked and sent (kill), and
 * a wait that unblocks it: EINTR, its handler ran, nothing pending.
 */
#include "common.h"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <ucontext.h>

static volatile sig_atomic_t g_handled;
static volatile uint64_t g_running_mask;
static volatile uint64_t g_uc_mask;
static volatile sig_atomic_t g_segv;

static void on_usr1(int sig, siginfo_t *info, void *ctx)
{
    (void)sig;
    (void)info;
    sigset_t now;
    sigprocmask(SIG_BLOCK, NULL, &now);
    g_running_mask = sigset_bits(&now);
    g_uc_mask = sigset_bits(&((ucontext_t *)ctx)->uc_sigmask);
    g_handled++;
}

static void on_segv(int sig)
{
    (void)sig;
    g_segv++;
}

/* One wait of kind `which` with temporary mask `temp`: its result and errno. */
static int wait_once(int which, int fd, int ep, const sigset_t *temp, int *err)
{
    struct timespec ts = { 5, 0 };
    struct pollfd pfd = { fd, POLLIN, 0 };
    struct epoll_event ev;
    fd_set rs;
    int r;
    errno = 0;
    switch (which) {
    case 0:
        FD_ZERO(&rs);
        FD_SET(fd, &rs);
        r = pselect(fd + 1, &rs, NULL, NULL, &ts, temp);
        break;
    case 1:
        r = ppoll(&pfd, 1, &ts, temp);
        break;
    case 2:
        r = epoll_pwait(ep, &ev, 1, 5000, temp);
        break;
    default:
        r = sigsuspend(temp);
        break;
    }
    *err = errno;
    return r;
}

static const char *const NAMES[] = { "pselect", "ppoll", "epoll_pwait", "sigsuspend" };

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGTERM);
    REQUIRE(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction SIGUSR1");
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_segv;
    REQUIRE(sigaction(SIGSEGV, &sa, NULL) == 0, "sigaction SIGSEGV");

    int p[2];
    REQUIRE(pipe(p) == 0, "pipe");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    REQUIRE(ep >= 0, "epoll_create1");
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 1 };
    REQUIRE(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) == 0, "epoll_ctl");

    const uint64_t program = SIGBIT(SIGUSR1) | SIGBIT(SIGUSR2);
    sigset_t program_set, temp, now;
    sigset_from_bits(&program_set, program);
    sigset_from_bits(&temp, SIGBIT(SIGHUP));
    REQUIRE(sigprocmask(SIG_SETMASK, &program_set, NULL) == 0, "sigprocmask");

    for (int which = 0; which < 4; which++) {
        int s = section_begin();
        int wrong = 0;
        for (int round = 0; round < 40; round++) {
            g_handled = 0;
            g_running_mask = 0;
            g_uc_mask = 0;
            raise(SIGUSR1); /* pending: the program blocks it */
            int err;
            int r = wait_once(which, p[0], ep, &temp, &err);
            sigprocmask(SIG_BLOCK, NULL, &now);
            uint64_t want_running = SIGBIT(SIGHUP) | SIGBIT(SIGUSR1) | SIGBIT(SIGTERM);
            if (r != -1 || err != EINTR || g_handled != 1 || g_running_mask != want_running ||
                g_uc_mask != program || sigset_bits(&now) != program) {
                if (wrong++ < 3)
                    FAILF("%s round %d: r=%d errno=%d handled=%d in handler %#llx (want %#llx) uc %#llx after %#llx",
                          NAMES[which], round, r, err, (int)g_handled, (unsigned long long)g_running_mask,
                          (unsigned long long)want_running, (unsigned long long)g_uc_mask,
                          (unsigned long long)sigset_bits(&now));
                else
                    t_count_failure();
            }
        }
        say("%s: 40 waits ended by the signal\n", NAMES[which]);
        section_end(s, NAMES[which]);
    }

    /* An owned signal held back for the program, unblocked by the wait. */
    int s = section_begin();
    sigset_t with_segv;
    sigset_from_bits(&with_segv, program | SIGBIT(SIGSEGV));
    for (int which = 0; which < 4; which++) {
        REQUIRE(sigprocmask(SIG_SETMASK, &with_segv, NULL) == 0, "block SIGSEGV");
        g_segv = 0;
        REQUIRE(kill(getpid(), SIGSEGV) == 0, "kill SIGSEGV");
        EXPECT_EQ("SIGSEGV held while blocked", g_segv, 0);
        int err;
        int r = wait_once(which, p[0], ep, &temp, &err);
        EXPECT_EQ(NAMES[which], r, -1);
        EXPECT_EQ("EINTR", err, EINTR);
        EXPECT_EQ("SIGSEGV handler ran", g_segv, 1);
        sigset_t pending;
        sigpending(&pending);
        EXPECT_EQ("nothing pending", sigset_bits(&pending), 0);
    }
    REQUIRE(sigprocmask(SIG_SETMASK, &program_set, NULL) == 0, "sigprocmask");
    section_end(s, "SIGSEGV held back, ending a wait");
    return finish();
}
