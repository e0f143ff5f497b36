/*
 * Hard case: SIGSEGV and SIGBUS sent by another thread (tgkill, kill) while
 * the program waits in pselect6, ppoll, epoll_pwait or rt_sigsuspend with
 * a temporary mask that blocks them, its own mask not blocking them.
 *
 * Natively the signal stays pending while the wait goes on (it ends as it
 * would have: the pipe becomes readable, or, for sigsuspend, SIGUSR1
 * arrives); when the call puts the program's mask back, the signal is let
 * in: its handler runs before the program sees the call's result (for
 * sigsuspend, after SIGUSR1's handler, at its sigreturn). Sent to the
 * whole process (kill), it goes to the thread that does not block it.
 *
 * Why it is hard for a syscall interposer: it owns SIGSEGV and SIGBUS (it
 * needs them for its own faults), so the kernel never blocks them; the one
 * sent interrupts the wait with the interposer's handler, which must hold
 * it back for the program (the temporary mask blocks it), make the wait go
 * on, and let it in once the wait is over.
 *
 * Each wait is made 6 times from the same site (the first through a trap,
 * the next through the patched site); the sender waits until the main
 * thread sleeps in the call (/proc/self/task/TID/syscall) before sending.
 */
#include "common.h"

#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/select.h>

static pid_t g_main_tid;
static volatile pid_t g_sender_tid;
static volatile sig_atomic_t g_caught;       /* SIGSEGV or SIGBUS handlers run */
static volatile sig_atomic_t g_usr1;         /* SIGUSR1 handlers run */
static volatile sig_atomic_t g_returned;     /* the wait has returned to main */
static volatile sig_atomic_t g_late;         /* a handler ran after that */
static volatile pid_t g_caught_by;           /* the thread that ran it */
static volatile sig_atomic_t g_usr1_first;   /* SIGUSR1's handler ran before it */

static int g_data[2];   /* what ends pselect, ppoll, epoll_pwait */
static int g_go[2];     /* main to sender: which round */

static void on_owned(int sig)
{
    (void)sig;
    if (g_returned)
        g_late = 1;
    g_caught_by = (pid_t)syscall(SYS_gettid);
    g_usr1_first = g_usr1;
    g_caught++;
}

static void on_usr1(int sig)
{
    (void)sig;
    g_usr1++;
}

enum { PSELECT, PPOLL, EPOLL_PWAIT, SIGSUSPEND };
static const char *const NAMES[] = { "pselect6", "ppoll", "epoll_pwait", "rt_sigsuspend" };
static const long NRS[] = { SYS_pselect6, SYS_ppoll, SYS_epoll_pwait, SYS_rt_sigsuspend };

struct round {
    int which;
    int sig;
    int whole_process; /* kill instead of tgkill */
};

/* Whether the thread `tid` sleeps in syscall `nr`. */
static int sleeps_in(pid_t tid, long nr)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    if (t_read_small(path, buf, sizeof buf) <= 0)
        return 0;
    return strtol(buf, NULL, 10) == nr;
}

static void *sender(void *arg)
{
    (void)arg;
    g_sender_tid = (pid_t)syscall(SYS_gettid);
    struct round r;
    while (read(g_go[0], &r, sizeof r) == sizeof r) {
        while (!sleeps_in(g_main_tid, NRS[r.which]))
            usleep(1000);
        int before = g_caught;
        if (r.whole_process) {
            kill(getpid(), r.sig);
            /* Natively this thread takes it (the waiting one blocks it). */
            while (g_caught == before)
                sched_yield();
        } else {
            syscall(SYS_tgkill, getpid(), g_main_tid, r.sig);
        }
        if (r.which == SIGSUSPEND) {
            syscall(SYS_tgkill, getpid(), g_main_tid, SIGUSR1);
        } else {
            char c = 'x';
            if (write(g_data[1], &c, 1) != 1)
                say("FAIL: write to the pipe\n");
        }
    }
    return NULL;
}

/* One wait of kind `which`, with mask `temp`: its result and errno. */
static int wait_once(int which, int ep, const sigset_t *temp, int *err)
{
    struct timespec ts = { 30, 0 };
    struct pollfd pfd = { g_data[0], POLLIN, 0 };
    struct epoll_event ev;
    fd_set rs;
    int r;
    errno = 0;
    switch (which) {
    case PSELECT:
        FD_ZERO(&rs);
        FD_SET(g_data[0], &rs);
        r = pselect(g_data[0] + 1, &rs, NULL, NULL, &ts, temp);
        break;
    case PPOLL:
        r = ppoll(&pfd, 1, &ts, temp);
        break;
    case EPOLL_PWAIT:
        r = epoll_pwait(ep, &ev, 1, 30000, temp);
        break;
    default:
        r = sigsuspend(temp);
        break;
    }
    *err = errno;
    g_returned = 1;
    return r;
}

static void run(struct round rd, int ep, const sigset_t *temp)
{
    int s = section_begin();
    for (int i = 0; i < 6; i++) {
        g_caught = 0;
        g_usr1 = 0;
        g_returned = 0;
        g_late = 0;
        g_caught_by = 0;
        g_usr1_first = 0;
        REQUIRE(write(g_go[1], &rd, sizeof rd) == sizeof rd, "write to the sender");
        int err;
        int r = wait_once(rd.which, ep, temp, &err);
        int late = g_late;
        if (rd.which == SIGSUSPEND) {
            EXPECT_EQ("sigsuspend's result", r, -1);
            EXPECT_EQ("sigsuspend's errno", err, EINTR);
            EXPECT_EQ("SIGUSR1's handler ran once", g_usr1, 1);
            EXPECT_EQ("SIGUSR1's handler ran first", g_usr1_first, 1);
        } else {
            EXPECT_EQ("the wait's result: the pipe readable", r, 1);
            EXPECT_EQ("the wait's errno", err, 0);
            char c;
            REQUIRE(read(g_data[0], &c, 1) == 1, "read the pipe");
        }
        /* For kill, the sender saw the handler run before it ended the wait. */
        EXPECT_EQ("the handler ran once", g_caught, 1);
        EXPECT_EQ("before the program saw the result", late, 0);
        EXPECT_EQ("in the thread natively chosen", g_caught_by, rd.whole_process ? g_sender_tid : g_main_tid);
    }
    char name[96];
    snprintf(name, sizeof name, "%s, %s by %s", NAMES[rd.which], rd.sig == SIGSEGV ? "SIGSEGV" : "SIGBUS",
             rd.whole_process ? "kill" : "tgkill");
    section_end(s, name);
}

int main(void)
{
    g_main_tid = (pid_t)syscall(SYS_gettid);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_owned;
    sigemptyset(&sa.sa_mask);
    REQUIRE(sigaction(SIGSEGV, &sa, NULL) == 0, "sigaction SIGSEGV");
    REQUIRE(sigaction(SIGBUS, &sa, NULL) == 0, "sigaction SIGBUS");
    sa.sa_handler = on_usr1;
    REQUIRE(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction SIGUSR1");

    REQUIRE(pipe(g_data) == 0 && pipe(g_go) == 0, "pipe");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    REQUIRE(ep >= 0, "epoll_create1");
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 1 };
    REQUIRE(epoll_ctl(ep, EPOLL_CTL_ADD, g_data[0], &ev) == 0, "epoll_ctl");

    /* The program's mask blocks SIGUSR1 (sigsuspend's mask lets it in);
     * every wait's mask blocks SIGSEGV and SIGBUS. */
    sigset_t program, temp;
    sigemptyset(&program);
    sigaddset(&program, SIGUSR1);
    REQUIRE(sigprocmask(SIG_SETMASK, &program, NULL) == 0, "sigprocmask");
    sigemptyset(&temp);
    sigaddset(&temp, SIGSEGV);
    sigaddset(&temp, SIGBUS);

    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, sender, NULL) == 0, "pthread_create");
    for (int which = 0; which < 4; which++) {
        run((struct round){ which, SIGSEGV, 0 }, ep, &temp);
        run((struct round){ which, SIGBUS, 0 }, ep, &temp);
    }
    /* Not epoll_pwait: under the library the kernel may wake the waiting
     * thread for a kill (it does not block SIGSEGV or SIGBUS for real) and
     * another thread take the signal first; epoll_pwait then returns EINTR
     * with no handler run, as it does natively after SIGSTOP (README,
     * Limits). ppoll, pselect6 and sigsuspend are restarted by the kernel. */
    run((struct round){ PPOLL, SIGSEGV, 1 }, ep, &temp);
    run((struct round){ PSELECT, SIGBUS, 1 }, ep, &temp);
    close(g_go[1]);
    pthread_join(th, NULL);
    return finish();
}
