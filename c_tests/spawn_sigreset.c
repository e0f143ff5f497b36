// usertrap-test: exec timeout=60
/*
 * Hard case: the signal resets of posix_spawn's and vfork's children, which
 * run on their parent's memory.
 *
 * Why it is hard for a syscall interposer: glibc's posix_spawn child
 * (clone(CLONE_VM|CLONE_VFORK), every signal blocked) asks about every
 * signal's disposition and sets each handled or (with SETSIGDEF) listed one
 * to SIG_DFL before it execs; a vfork child may install a handler, take a
 * signal and change its mask. The kernel keeps the child's dispositions and
 * mask apart from the parent's (no CLONE_SIGHAND), but whatever an
 * interposer keeps of them in memory (its view of the dispositions, of the
 * blocked signals it must keep deliverable) is shared with the parent unless
 * kept apart: the parent would find its handlers reported as SIG_DFL, or its
 * mask changed, once the child has exec'd.
 *
 * What it checks:
 *  - The parent sets handlers (SIGUSR1 with SA_SIGINFO|SA_RESTART and an
 *    sa_mask, SIGTERM, SIGSEGV with SA_NODEFER), ignores SIGPIPE and SIGHUP,
 *    and blocks SIGUSR2, SIGHUP and SIGSEGV; it prints its dispositions and
 *    mask before and after each child, and they must not change.
 *  - posix_spawn of itself with SETSIGDEF {SIGHUP, SIGPIPE} and SETSIGMASK
 *    {SIGWINCH, SIGUSR2, SIGSYS}, and without attributes: the exec'd child
 *    prints its own dispositions and mask.
 *  - vfork: the child installs a handler for SIGUSR1 (the parent's is
 *    reported as the old one), reads it back, raises SIGUSR1 (its handler
 *    runs: a counter in the shared memory moves), changes its mask (the old
 *    one is the parent's) and execs itself, which prints its state.
 *  - After all of it the parent's own handlers still run (raise).
 *  - 20 more posix_spawns of a child that exits at once (the cost per child
 *    is measured from these, tests/spawn_signals.rs).
 */
#include "common.h"

#include <spawn.h>

extern char **environ;

static volatile sig_atomic_t g_usr1_ran, g_term_ran, g_child_handler_ran;

static void h_usr1(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    (void)uc;
    g_usr1_ran++;
}

static void h_term(int sig)
{
    (void)sig;
    g_term_ran++;
}

static void h_segv(int sig)
{
    (void)sig;
}

static void h_child(int sig)
{
    (void)sig;
    g_child_handler_ran++;
}

static const char *handler_name(void *h)
{
    if (h == (void *)SIG_DFL)
        return "SIG_DFL";
    if (h == (void *)SIG_IGN)
        return "SIG_IGN";
    if (h == (void *)h_usr1)
        return "h_usr1";
    if (h == (void *)h_term)
        return "h_term";
    if (h == (void *)h_segv)
        return "h_segv";
    if (h == (void *)h_child)
        return "h_child";
    return "other";
}

static unsigned long long set_bits(const sigset_t *s)
{
    unsigned long long bits = 0;
    for (int sig = 1; sig <= 64; sig++)
        if (sig != 32 && sig != 33 && sigismember(s, sig) == 1)
            bits |= 1ULL << (sig - 1);
    return bits;
}

#define SHOWN_FLAGS (SA_SIGINFO | SA_RESTART | SA_NODEFER | SA_RESETHAND | SA_ONSTACK | SA_NOCLDSTOP)

/* Every disposition that is not SIG_DFL, and the mask, as one text. */
static void describe(char *out, size_t cap)
{
    size_t n = 0;
    for (int sig = 1; sig <= 64 && n < cap; sig++) {
        if (sig == 32 || sig == 33)
            continue;
        struct sigaction sa;
        if (sigaction(sig, NULL, &sa) != 0) {
            n += (size_t)snprintf(out + n, cap - n, " %d:error", sig);
            continue;
        }
        void *h = (sa.sa_flags & SA_SIGINFO) ? (void *)sa.sa_sigaction : (void *)sa.sa_handler;
        if (h == (void *)SIG_DFL)
            continue;
        n += (size_t)snprintf(out + n, cap - n, " %d:%s/%x/%llx", sig, handler_name(h),
                              (unsigned)(sa.sa_flags & SHOWN_FLAGS), set_bits(&sa.sa_mask));
    }
    sigset_t cur;
    sigprocmask(SIG_SETMASK, NULL, &cur);
    if (n < cap)
        snprintf(out + n, cap - n, " mask=%llx", set_bits(&cur));
}

static int child_main(const char *who)
{
    char text[2048];
    describe(text, sizeof text);
    say("%s child:%s\n", who, text);
    return 0;
}

static void parent_setup(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = h_usr1;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGUSR2);
    sigaddset(&sa.sa_mask, SIGSYS);
    REQUIRE(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction SIGUSR1");
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h_term;
    REQUIRE(sigaction(SIGTERM, &sa, NULL) == 0, "sigaction SIGTERM");
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h_segv;
    sa.sa_flags = SA_NODEFER;
    sigaddset(&sa.sa_mask, SIGILL);
    REQUIRE(sigaction(SIGSEGV, &sa, NULL) == 0, "sigaction SIGSEGV");
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR2);
    sigaddset(&m, SIGHUP);
    sigaddset(&m, SIGSEGV);
    REQUIRE(sigprocmask(SIG_SETMASK, &m, NULL) == 0, "sigprocmask");
}

static char g_before[2048];

static void check_parent(const char *after_what)
{
    char now[2048];
    describe(now, sizeof now);
    if (strcmp(now, g_before) != 0)
        FAILF("parent's signal state changed by %s:\n  before:%s\n  after: %s", after_what, g_before, now);
    else
        say("parent unchanged after %s\n", after_what);
}

static void spawn_and_wait(const char *self, const posix_spawnattr_t *at, char *mode, const char *what)
{
    char *argv[] = { "spawn_sigreset", mode, NULL };
    pid_t pid;
    int rc = posix_spawn(&pid, self, NULL, at, argv, environ);
    EXPECT_EQ(what, rc, 0);
    if (rc == 0)
        EXPECT_EQ("child status", wait_status(pid), 0);
}

static void test_posix_spawn(const char *self)
{
    int s = section_begin();
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    sigset_t def, mask;
    sigemptyset(&def);
    sigaddset(&def, SIGHUP);
    sigaddset(&def, SIGPIPE);
    sigemptyset(&mask);
    sigaddset(&mask, SIGWINCH);
    sigaddset(&mask, SIGUSR2);
    sigaddset(&mask, SIGSYS);
    posix_spawnattr_setsigdefault(&at, &def);
    posix_spawnattr_setsigmask(&at, &mask);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    spawn_and_wait(self, &at, "spawned-with-attrs", "posix_spawn with SETSIGDEF and SETSIGMASK");
    posix_spawnattr_destroy(&at);
    check_parent("posix_spawn with attributes");
    spawn_and_wait(self, NULL, "spawned-plain", "posix_spawn without attributes");
    check_parent("posix_spawn without attributes");
    section_end(s, "posix_spawn children reset their signals; the parent's stay");
}

static void test_vfork(const char *self)
{
    int s = section_begin();
    char *argv[] = { "spawn_sigreset", "vforked", NULL };
    pid_t pid = vfork();
    if (pid == 0) {
        struct sigaction sa, old, back;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = h_child;
        sigaddset(&sa.sa_mask, SIGINT);
        if (sigaction(SIGUSR1, &sa, &old) != 0)
            _exit(20);
        if (sigaction(SIGUSR1, NULL, &back) != 0)
            _exit(21);
        say("vfork child: old SIGUSR1 %s/%x/%llx, now %s/%llx\n",
            handler_name((old.sa_flags & SA_SIGINFO) ? (void *)old.sa_sigaction : (void *)old.sa_handler),
            (unsigned)(old.sa_flags & SHOWN_FLAGS), set_bits(&old.sa_mask), handler_name((void *)back.sa_handler),
            set_bits(&back.sa_mask));
        raise(SIGUSR1);
        sigset_t m, oldm;
        sigemptyset(&m);
        sigaddset(&m, SIGUSR1);
        sigaddset(&m, SIGINT);
        if (sigprocmask(SIG_SETMASK, &m, &oldm) != 0)
            _exit(22);
        say("vfork child: old mask %llx\n", set_bits(&oldm));
        execve(self, argv, environ);
        _exit(23);
    }
    REQUIRE(pid > 0, "vfork");
    EXPECT_EQ("vfork child status", wait_status(pid), 0);
    EXPECT_EQ("the vfork child's handler ran (in the child)", g_child_handler_ran, 1);
    EXPECT_EQ("the parent's SIGUSR1 handler did not", g_usr1_ran, 0);
    check_parent("vfork");
    section_end(s, "a vfork child's handler, signal and mask are its own; exec from it");
}

static void test_parent_handlers_run(void)
{
    int s = section_begin();
    raise(SIGUSR1);
    raise(SIGTERM);
    EXPECT_EQ("parent's SIGUSR1 handler ran", g_usr1_ran, 1);
    EXPECT_EQ("parent's SIGTERM handler ran", g_term_ran, 1);
    check_parent("raising its own signals");
    section_end(s, "the parent's handlers still run");
}

static void test_many(const char *self)
{
    int s = section_begin();
    for (int i = 0; i < 20; i++)
        spawn_and_wait(self, NULL, "quiet", "posix_spawn quiet");
    check_parent("20 more children");
    section_end(s, "20 more posix_spawn children");
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "quiet") == 0)
        return 0;
    if (argc == 2)
        return child_main(argv[1]);

    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    REQUIRE(n > 0, "readlink /proc/self/exe");
    self[n] = 0;

    parent_setup();
    describe(g_before, sizeof g_before);
    say("parent:%s\n", g_before);
    test_posix_spawn(self);
    test_vfork(self);
    test_parent_handlers_run();
    test_many(self);
    return finish();
}
