/*
 * Hard case: pointers into a page that raises SIGBUS, passed to the calls
 * the library emulates or whose arguments it reads, and the program's own
 * SIGBUS, caught and uncaught.
 *
 * Why it is hard for a syscall interposer: the page belongs to a shared
 * mapping of a file truncated to 0 bytes, so touching it raises SIGBUS (not
 * SIGSEGV). Natively each call below returns -1 EFAULT (the kernel's own
 * copies fail quietly). An interposer that copies the argument itself must
 * turn that SIGBUS into EFAULT as it does a SIGSEGV, whatever the program
 * did to SIGBUS (its own handler, SIG_IGN, blocked), on the slow path, on
 * the fast path (each call is made three times: the site is patched after
 * its first trap) and inside a signal handler on an alternate stack. And
 * the program's own SIGBUS must still be its own: its handler gets the
 * fault's si_code and si_addr (and a sent one SI_USER / SI_TKILL), a
 * blocked one stays pending, rt_sigaction reports what the program set,
 * and an uncaught one ends the process by SIGBUS (also when ignored or
 * blocked, as the kernel forces a fault's signal).
 *
 * What it checks: one line per call and case, compared with a native run;
 * at the end the process touches the page with SIGBUS at its default
 * action and dies by SIGBUS (the harness compares the wait status).
 */
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <sys/mman.h>
#include <sys/prctl.h>

static char *bus;
static sigjmp_buf jump_back;
static volatile sig_atomic_t caught_code, caught_sig;
static void *volatile caught_addr;

/* One raw call through syscall(3): "name: -1 Bad address" natively. */
#define CALL(name, ...)                                                                             \
    do {                                                                                            \
        errno = 0;                                                                                  \
        long r_ = syscall(__VA_ARGS__);                                                             \
        say("%s %s: %ld %s\n", where, name, r_, r_ < 0 ? strerror(errno) : "");                     \
    } while (0)

/* Every call whose pointer argument the library reads or writes. */
static void bad_pointer_calls(const char *where, char *p)
{
    char *argv[] = { "/bin/true", p, NULL };
    CALL("execve path", SYS_execve, p, NULL, NULL);
    CALL("execve argv string", SYS_execve, "/bin/true", argv, NULL);
    CALL("execve argv array", SYS_execve, "/bin/true", p, NULL);
    CALL("execve envp array", SYS_execve, "/bin/true", NULL, p);
    CALL("execve envp string", SYS_execve, "/bin/true", NULL, argv + 1);
    CALL("execveat path", SYS_execveat, AT_FDCWD, p, NULL, NULL, 0);
    CALL("rt_sigaction act", SYS_rt_sigaction, SIGUSR2, p, NULL, 8);
    CALL("rt_sigaction oldact", SYS_rt_sigaction, SIGUSR2, NULL, p, 8);
    CALL("rt_sigaction owned act", SYS_rt_sigaction, SIGSEGV, p, NULL, 8);
    CALL("rt_sigaction owned oldact", SYS_rt_sigaction, SIGBUS, NULL, p, 8);
    CALL("rt_sigprocmask set", SYS_rt_sigprocmask, SIG_BLOCK, p, NULL, 8);
    CALL("rt_sigprocmask oldset", SYS_rt_sigprocmask, SIG_BLOCK, NULL, p, 8);
    CALL("sigaltstack ss", SYS_sigaltstack, p, NULL);
    CALL("sigaltstack old", SYS_sigaltstack, NULL, p);
    CALL("readlink buf", SYS_readlink, "/proc/self/exe", p, 10);
    CALL("readlink path", SYS_readlink, p, p, 10);
    CALL("readlinkat path", SYS_readlinkat, AT_FDCWD, p, p, 10);
    CALL("readlinkat buf", SYS_readlinkat, AT_FDCWD, "/proc/self/exe", p, 10);
    CALL("openat path", SYS_openat, AT_FDCWD, p, O_RDONLY);
    CALL("clone3 args", SYS_clone3, p, 88);
    CALL("rt_sigtimedwait set", SYS_rt_sigtimedwait, p, NULL, NULL, 8);
    struct timespec zero = { 0, 0 };
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    CALL("rt_sigtimedwait info", SYS_rt_sigtimedwait, &usr2, p, &zero, 8);
    CALL("rt_sigsuspend", SYS_rt_sigsuspend, p, 8);
    CALL("rt_sigpending", SYS_rt_sigpending, p, 8);
    CALL("prctl PR_SET_NAME", SYS_prctl, PR_SET_NAME, p, 0, 0, 0);
    CALL("prctl PR_GET_NAME", SYS_prctl, PR_GET_NAME, p, 0, 0, 0);
    CALL("seccomp filter", SYS_seccomp, 1, 0, p);
    CALL("signalfd4", SYS_signalfd4, -1, p, 8, 0);
    CALL("pselect6 sigmask", SYS_pselect6, 0, NULL, NULL, NULL, NULL, p);
    uint64_t pair[2] = { (uint64_t)(uintptr_t)p, 8 };
    CALL("pselect6 sigmask set", SYS_pselect6, 0, NULL, NULL, NULL, &zero, pair);
    CALL("ppoll sigmask", SYS_ppoll, NULL, 0, &zero, p, 8);
    CALL("ppoll fds", SYS_ppoll, p, 1, &zero, NULL, 8);
    CALL("epoll_pwait sigmask", SYS_epoll_pwait, -1, NULL, 1, 0, p, 8);
}

static void on_bus(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    caught_sig = sig;
    caught_code = si->si_code;
    caught_addr = si->si_addr;
    siglongjmp(jump_back, 1);
}

static void install(int sig, void (*h)(int, siginfo_t *, void *), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = h;
    sa.sa_flags = SA_SIGINFO | flags;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) != 0)
        say("FAIL: sigaction %d: %s\n", sig, strerror(errno));
}

static void set_disposition(int sig, void (*h)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) != 0)
        say("FAIL: sigaction %d: %s\n", sig, strerror(errno));
}

static void set_blocked(int how, int sig)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    if (sigprocmask(how, &s, NULL) != 0)
        say("FAIL: sigprocmask: %s\n", strerror(errno));
}

/* The raw action the kernel (or the library's view) reports for SIGBUS. */
static void show_bus_action(const char *when)
{
    struct { unsigned long handler, flags, restorer, mask; } k;
    memset(&k, 0xa5, sizeof k);
    long r = syscall(SYS_rt_sigaction, SIGBUS, NULL, &k, 8);
    const char *h = k.handler == (unsigned long)SIG_DFL ? "SIG_DFL"
                    : k.handler == (unsigned long)SIG_IGN ? "SIG_IGN"
                    : k.handler == (unsigned long)(uintptr_t)on_bus ? "on_bus"
                                                                    : "other";
    say("rt_sigaction(SIGBUS) %s: %ld handler %s flags %#lx mask %#lx\n", when, r, h,
        k.flags & ~0x04000000UL, k.mask); /* SA_RESTORER: glibc adds it */
}

/* Touch the page in the program's own code: its own SIGBUS. */
static int touch(void)
{
    return *(volatile char *)bus;
}

/* A child that ends the way `how` says; its wait status is printed. */
static void child_dies(const char *what, void (*how)(void))
{
    pid_t pid = fork();
    if (pid == 0) {
        how();
        _exit(0);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) != pid) {
        say("FAIL: waitpid: %s\n", strerror(errno));
        return;
    }
    if (WIFSIGNALED(st))
        say("child %s: killed by signal %d%s\n", what, WTERMSIG(st), WCOREDUMP(st) ? " (core)" : "");
    else
        say("child %s: exit %d\n", what, WEXITSTATUS(st));
}

static void die_default(void) { touch(); }
static void die_ignored(void) { set_disposition(SIGBUS, SIG_IGN); touch(); }
static void die_blocked(void) { set_blocked(SIG_BLOCK, SIGBUS); touch(); }
static void die_sent(void) { kill(getpid(), SIGBUS); }
static void die_blocked_sent_then_unblocked(void)
{
    set_blocked(SIG_BLOCK, SIGBUS);
    kill(getpid(), SIGBUS);
    say("child blocked: still alive with SIGBUS pending\n");
    set_blocked(SIG_UNBLOCK, SIGBUS);
}
static void bad_calls_then_exit(void)
{
    bad_pointer_calls("child", bus);
}

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    (void)uc;
    stack_t ss;
    int on_alt = sigaltstack(NULL, &ss) == 0 && (ss.ss_flags & SS_ONSTACK);
    say("in SIGUSR1 handler, on the alternate stack: %d\n", on_alt);
    bad_pointer_calls("handler", bus);
}

int main(void)
{
    const char *name = "sigbus_pointers.map";
    int fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096) != 0) {
        say("FAIL: cannot make %s: %s\n", name, strerror(errno));
        return 1;
    }
    bus = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (bus == MAP_FAILED || ftruncate(fd, 0) != 0) {
        say("FAIL: mmap/ftruncate: %s\n", strerror(errno));
        return 1;
    }
    close(fd);
    unlink(name);

    show_bus_action("at start");
    /* Slow path, then (the same sites, patched) the fast path. */
    for (int round = 0; round < 3; round++)
        bad_pointer_calls("default", bus);

    /* The program's own handler: a library fault must never reach it. */
    install(SIGBUS, on_bus, 0);
    show_bus_action("with a handler");
    for (int round = 0; round < 2; round++)
        bad_pointer_calls("handled", bus);
    say("handler called by the bad calls: %d\n", (int)caught_sig);

    /* Its own fault: the handler sees the fault's si_code and address. */
    caught_sig = 0;
    if (sigsetjmp(jump_back, 1) == 0) {
        touch();
        say("FAIL: touching the page did not fault\n");
    }
    say("own fault: signal %d si_code %d si_addr is the page: %d\n", (int)caught_sig, (int)caught_code,
        caught_addr == bus);
    caught_sig = 0;
    if (sigsetjmp(jump_back, 1) == 0) {
        kill(getpid(), SIGBUS);
        say("FAIL: kill(SIGBUS) did not reach the handler\n");
    }
    say("kill: signal %d si_code %d\n", (int)caught_sig, (int)caught_code);
    caught_sig = 0;
    if (sigsetjmp(jump_back, 1) == 0) {
        syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGBUS);
        say("FAIL: tgkill(SIGBUS) did not reach the handler\n");
    }
    say("tgkill: signal %d si_code %d\n", (int)caught_sig, (int)caught_code);

    /* Blocked: the bad calls still fail cleanly; a sent one stays pending. */
    set_blocked(SIG_BLOCK, SIGBUS);
    bad_pointer_calls("blocked", bus);
    caught_sig = 0;
    kill(getpid(), SIGBUS);
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    say("blocked: SIGBUS pending %d, handler called %d\n", sigismember(&pending, SIGBUS), (int)caught_sig);
    if (sigsetjmp(jump_back, 1) == 0) {
        set_blocked(SIG_UNBLOCK, SIGBUS);
        say("FAIL: unblocking did not deliver the pending SIGBUS\n");
    }
    say("unblocked: signal %d si_code %d\n", (int)caught_sig, (int)caught_code);
    /* siglongjmp put back the mask of sigsetjmp's time: SIGBUS blocked. */
    set_blocked(SIG_UNBLOCK, SIGBUS);

    /* Ignored: the same. */
    set_disposition(SIGBUS, SIG_IGN);
    show_bus_action("ignored");
    bad_pointer_calls("ignored", bus);
    kill(getpid(), SIGBUS);
    say("ignored: a sent SIGBUS is discarded\n");

    /* Inside a handler on an alternate stack (nested delivery). */
    set_disposition(SIGBUS, SIG_DFL);
    static char altstack[64 * 1024];
    stack_t ss = { .ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0 };
    if (sigaltstack(&ss, NULL) != 0)
        say("FAIL: sigaltstack: %s\n", strerror(errno));
    install(SIGUSR1, on_usr1, SA_ONSTACK);
    raise(SIGUSR1);

    /* A child makes the calls too (its own process, inherited state). */
    child_dies("bad calls", bad_calls_then_exit);
    /* Uncaught: killed by SIGBUS, as natively. */
    child_dies("default", die_default);
    child_dies("ignored", die_ignored);
    child_dies("blocked", die_blocked);
    child_dies("sent", die_sent);
    child_dies("blocked, sent, unblocked", die_blocked_sent_then_unblocked);

    show_bus_action("at the end");
    say("sigbus_pointers: the process now dies of its own SIGBUS\n");
    touch();
    say("FAIL: still alive\n");
    return 1;
}
