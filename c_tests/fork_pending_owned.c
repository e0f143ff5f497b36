/*
 * A fork child starts with no pending signal (fork(2)), including the
 * SIGSEGV, SIGBUS, SIGILL and SIGSYS the library holds back for a program
 * that blocks them (they are never blocked in the kernel). The parent
 * blocks SIGSEGV and SIGBUS, sends both to itself (sigqueue and raise), and
 * forks in three ways (fork, raw clone without CLONE_VM, clone3): each
 * child must see neither pending and run no handler when it unblocks them;
 * the parent still has both and takes each once when it unblocks.
 * Found by comparing sigpending in a fork child natively and under the
 * library: the child's copy of the parent's thread state kept the
 * held-back signals.
 */
#include "common.h"
#include <linux/sched.h>
#include <sched.h>

static volatile sig_atomic_t handled_segv, handled_bus, segv_code, segv_value;

static void on_signal(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (sig == SIGSEGV) {
        handled_segv++;
        segv_code = si->si_code;
        segv_value = si->si_value.sival_int;
    } else {
        handled_bus++;
    }
}

static sigset_t owned_pair(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGSEGV);
    sigaddset(&s, SIGBUS);
    return s;
}

/* In the child: nothing pending, nothing delivered on unblocking. */
static int child_checks(void)
{
    sigset_t pending;
    sigemptyset(&pending);
    if (sigpending(&pending) != 0)
        return 10;
    if (sigismember(&pending, SIGSEGV))
        return 11;
    if (sigismember(&pending, SIGBUS))
        return 12;
    sigset_t s = owned_pair();
    sigprocmask(SIG_UNBLOCK, &s, NULL);
    if (handled_segv != 0 || handled_bus != 0)
        return 13;
    return 0;
}

static void check_child(const char *how, pid_t pid)
{
    REQUIRE(pid > 0, how);
    int st = wait_status(pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        FAILF("%s child: status %#x (10+: 1 sigpending failed, 11 SIGSEGV pending, "
              "12 SIGBUS pending, 13 a handler ran)", how, st);
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO;
    REQUIRE(sigaction(SIGSEGV, &sa, NULL) == 0, "sigaction SIGSEGV");
    REQUIRE(sigaction(SIGBUS, &sa, NULL) == 0, "sigaction SIGBUS");
    sigset_t s = owned_pair();
    REQUIRE(sigprocmask(SIG_BLOCK, &s, NULL) == 0, "block");
    union sigval v = { .sival_int = 42 };
    REQUIRE(sigqueue(getpid(), SIGSEGV, v) == 0, "sigqueue");
    REQUIRE(raise(SIGBUS) == 0, "raise");

    int start = section_begin();
    sigset_t pending;
    sigemptyset(&pending);
    EXPECT("sigpending", sigpending(&pending) == 0);
    EXPECT("SIGSEGV pending before", sigismember(&pending, SIGSEGV));
    EXPECT("SIGBUS pending before", sigismember(&pending, SIGBUS));
    section_end(start, "pending in the parent");

    start = section_begin();
    pid_t pid = fork();
    if (pid == 0)
        _exit(child_checks());
    check_child("fork", pid);
    section_end(start, "fork child has none pending");

    start = section_begin();
    pid = (pid_t)syscall(SYS_clone, (long)SIGCHLD, 0L, 0L, 0L, 0L);
    if (pid == 0)
        _exit(child_checks());
    check_child("clone", pid);
    section_end(start, "clone child has none pending");

    start = section_begin();
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.exit_signal = SIGCHLD;
    pid = (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
    if (pid == 0)
        _exit(child_checks());
    check_child("clone3", pid);
    section_end(start, "clone3 child has none pending");

    start = section_begin();
    sigemptyset(&pending);
    EXPECT("sigpending after", sigpending(&pending) == 0);
    EXPECT("SIGSEGV still pending", sigismember(&pending, SIGSEGV));
    EXPECT("SIGBUS still pending", sigismember(&pending, SIGBUS));
    EXPECT("unblock", sigprocmask(SIG_UNBLOCK, &s, NULL) == 0);
    EXPECT_EQ("SIGSEGV handled", handled_segv, 1);
    EXPECT_EQ("SIGBUS handled", handled_bus, 1);
    EXPECT_EQ("SIGSEGV si_code", segv_code, SI_QUEUE);
    EXPECT_EQ("SIGSEGV value", segv_value, 42);
    section_end(start, "parent takes both once");
    return finish();
}
