/*
 * Hard case: every signal's disposition written and read back, including
 * the signals an interposer uses itself.
 *
 * Why it is hard for a syscall interposer: it keeps its own handlers for
 * SIGSYS (and maybe SIGSEGV/SIGILL/SIGTRAP/SIGBUS) really installed while the
 * program believes it owns them, so rt_sigaction must be virtualised for
 * those: the initial disposition (SIG_DFL, not the interposer's handler),
 * the old action returned by a set, handler, flags (including the kernel's
 * clearing of unknown flag bits), sa_mask, and SA_RESETHAND's reset after
 * one delivery (by raise() or by a real fault) all have to look native.
 *
 * What it checks:
 *  - initial dispositions of 1..64 (printed as a summary: none have handlers).
 *  - for every signal but SIGKILL/SIGSTOP/32/33: install a handler with a
 *    per-signal combination of flags and mask, read back via the old action
 *    of the next call and via a query; compare handler, flags (minus
 *    SA_RESTORER) and sa_mask; restore and compare with the original.
 *  - EINVAL for SIGKILL, SIGSTOP, 0, 65 and glibc's 32/33; raw rt_sigaction
 *    with a bad sigsetsize; queries of SIGKILL work.
 *  - SA_RESETHAND on SIGUSR1, SIGSYS, SIGSEGV, SIGILL, SIGTRAP (raise), and
 *    on a real SIGSEGV fault and a real ud2: one delivery, then SIG_DFL.
 *  - SA_UNSUPPORTED (0x400) is treated the same for SIGSYS as for SIGUSR2
 *    (the kernel clears it), and the result is printed.
 */
#include "common.h"

#include <sys/mman.h>
#include <ucontext.h>

#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000
#endif
#ifndef SA_UNSUPPORTED
#define SA_UNSUPPORTED 0x00000400
#endif

static volatile int g_hits[65];

static void h_a(int sig) { g_hits[sig]++; }
static void h_b(int sig) { g_hits[sig] += 1000; }
static void i_a(int sig, siginfo_t *si, void *uc) { (void)si; (void)uc; g_hits[sig]++; }
static void i_b(int sig, siginfo_t *si, void *uc) { (void)si; (void)uc; g_hits[sig] += 1000; }

static int skip_sig(int sig)
{
    return sig == SIGKILL || sig == SIGSTOP || sig == 32 || sig == 33;
}

static const int g_flag_sets[] = {
    0,
    SA_RESTART,
    SA_SIGINFO,
    SA_SIGINFO | SA_NODEFER,
    SA_ONSTACK | SA_RESTART,
    SA_RESETHAND | SA_SIGINFO,
    SA_NODEFER | SA_RESETHAND | SA_RESTART,
};

static struct sigaction g_orig[65];

static void build(int sig, struct sigaction *sa)
{
    memset(sa, 0, sizeof *sa);
    int flags = g_flag_sets[sig % (int)(sizeof g_flag_sets / sizeof g_flag_sets[0])];
    if (sig == SIGCHLD)
        flags |= SA_NOCLDSTOP;
    sa->sa_flags = flags;
    if (flags & SA_SIGINFO)
        sa->sa_sigaction = (sig % 2) ? i_a : i_b;
    else
        sa->sa_handler = (sig % 2) ? h_a : h_b;
    sigemptyset(&sa->sa_mask);
    int other = sig % 64 + 1;
    if (!skip_sig(other))
        sigaddset(&sa->sa_mask, other);
    if (sig % 2 == 0)
        sigaddset(&sa->sa_mask, SIGSYS);
    if (sig % 3 == 0)
        sigaddset(&sa->sa_mask, SIGSEGV);
    if (sig % 5 == 0)
        sigaddset(&sa->sa_mask, SIGILL);
}

static int same_action(const struct sigaction *a, const struct sigaction *b)
{
    if ((void *)a->sa_handler != (void *)b->sa_handler)
        return 0;
    if ((a->sa_flags & ~SA_RESTORER) != (b->sa_flags & ~SA_RESTORER))
        return 0;
    return sigset_equal(&a->sa_mask, &b->sa_mask);
}

static void describe(const char *what, int sig, const struct sigaction *got, const struct sigaction *want)
{
    char gm[300], wm[300];
    sigset_describe(&got->sa_mask, gm, sizeof gm);
    sigset_describe(&want->sa_mask, wm, sizeof wm);
    FAILF("signal %d %s: handler %s, flags 0x%x vs 0x%x, mask {%s} vs {%s}", sig, what,
          (void *)got->sa_handler == (void *)want->sa_handler ? "same" : "differs",
          got->sa_flags & ~SA_RESTORER, want->sa_flags & ~SA_RESTORER, gm, wm);
}

static void test_initial(void)
{
    char handlers[300] = "", ignored[300] = "";
    size_t hp = 0, ip = 0;
    for (int sig = 1; sig <= 64; sig++) {
        if (sig == 32 || sig == 33)
            continue;
        if (sigaction(sig, NULL, &g_orig[sig]) != 0) {
            FAILF("query signal %d", sig);
            continue;
        }
        if (g_orig[sig].sa_handler == SIG_IGN)
            ip += (size_t)snprintf(ignored + ip, sizeof ignored - ip, "%s%d", ip ? "," : "", sig);
        else if (g_orig[sig].sa_handler != SIG_DFL)
            hp += (size_t)snprintf(handlers + hp, sizeof handlers - hp, "%s%d", hp ? "," : "", sig);
    }
    say("initial dispositions: handlers {%s}, ignored {%s}\n", handlers, ignored);
    EXPECT("no signal starts with a handler", hp == 0);
}

static void test_roundtrip(void)
{
    int s = section_begin();
    int count = 0;
    for (int sig = 1; sig <= 64; sig++) {
        if (skip_sig(sig))
            continue;
        struct sigaction want, old, q;
        build(sig, &want);
        memset(&old, 0x5a, sizeof old);
        if (sigaction(sig, &want, &old) != 0) {
            FAILF("install signal %d: errno %d", sig, errno);
            continue;
        }
        if (!same_action(&old, &g_orig[sig]))
            describe("old action returned by the set", sig, &old, &g_orig[sig]);
        memset(&q, 0, sizeof q);
        sigaction(sig, NULL, &q);
        if (!same_action(&q, &want))
            describe("read back", sig, &q, &want);
        /* second handler, read back through the old action of the set */
        struct sigaction want2 = want;
        want2.sa_flags ^= SA_RESTART;
        sigaddset(&want2.sa_mask, SIGUSR2);
        memset(&old, 0, sizeof old);
        sigaction(sig, &want2, &old);
        if (!same_action(&old, &want))
            describe("old action after re-install", sig, &old, &want);
        memset(&q, 0, sizeof q);
        sigaction(sig, NULL, &q);
        if (!same_action(&q, &want2))
            describe("read back after re-install", sig, &q, &want2);
        /* restore */
        sigaction(sig, &g_orig[sig], NULL);
        memset(&q, 0, sizeof q);
        sigaction(sig, NULL, &q);
        if (!same_action(&q, &g_orig[sig]))
            describe("restored", sig, &q, &g_orig[sig]);
        count++;
    }
    EXPECT_EQ("signals exercised", count, 60);
    section_end(s, "sigaction round trip for 60 signals (handler, flags, sa_mask, old action)");
}

static void test_einval(void)
{
    int s = section_begin();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h_a;
    int bad[] = { SIGKILL, SIGSTOP, 0, 65, 32, 33 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        if (sigaction(bad[i], &sa, NULL) != -1 || errno != EINVAL)
            FAILF("sigaction(%d) did not fail with EINVAL", bad[i]);
    }
    struct sigaction q;
    EXPECT_EQ("query SIGKILL", sigaction(SIGKILL, NULL, &q), 0);
    EXPECT("SIGKILL is SIG_DFL", q.sa_handler == SIG_DFL);
    struct {
        void *handler;
        unsigned long flags;
        void *restorer;
        uint64_t mask;
    } k;
    memset(&k, 0, sizeof k);
    EXPECT_EQ("raw rt_sigaction sigsetsize 4", raw_syscall4(SYS_rt_sigaction, SIGUSR1, 0, &k, 4), -EINVAL);
    EXPECT_EQ("raw rt_sigaction sigsetsize 16", raw_syscall4(SYS_rt_sigaction, SIGSYS, 0, &k, 16), -EINVAL);
    EXPECT_EQ("raw rt_sigaction signal 0", raw_syscall4(SYS_rt_sigaction, 0, 0, &k, 8), -EINVAL);
    EXPECT_EQ("raw rt_sigaction signal 65", raw_syscall4(SYS_rt_sigaction, 65, 0, &k, 8), -EINVAL);
    k.handler = (void *)h_a;
    EXPECT_EQ("raw rt_sigaction SIGSTOP", raw_syscall4(SYS_rt_sigaction, SIGSTOP, &k, 0, 8), -EINVAL);
    section_end(s, "EINVAL for SIGKILL/SIGSTOP/0/65/32/33 and bad sigsetsize");
}

/* ---------------------------------------------------------- RESETHAND ---- */

static volatile int g_reset_hits;
static char *g_page;

static void reset_handler(int sig, siginfo_t *si, void *ucv)
{
    (void)si;
    ucontext_t *uc = ucv;
    g_reset_hits++;
    if (sig == SIGSEGV && si->si_code > 0)
        mprotect(g_page, 4096, PROT_READ | PROT_WRITE);
    if (sig == SIGILL && si->si_code > 0)
        uc->uc_mcontext.gregs[REG_RIP] += 2;
}

static void install_reset(int sig)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = reset_handler;
    sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    REQUIRE(sigaction(sig, &sa, NULL) == 0, "sigaction SA_RESETHAND");
}

static void expect_dfl(int sig, const char *what)
{
    struct sigaction q;
    memset(&q, 0, sizeof q);
    sigaction(sig, NULL, &q);
    if (q.sa_handler != SIG_DFL)
        FAILF("%s: not SIG_DFL after one delivery", what);
}

static void test_resethand(void)
{
    int s = section_begin();
    int sigs[] = { SIGUSR1, SIGSYS, SIGSEGV, SIGILL, SIGTRAP, SIGBUS };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        install_reset(sigs[i]);
        g_reset_hits = 0;
        raise(sigs[i]);
        if (g_reset_hits != 1)
            FAILF("signal %d: handler ran %d times", sigs[i], g_reset_hits);
        expect_dfl(sigs[i], strsignal(sigs[i]));
    }

    g_page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(g_page != MAP_FAILED, "mmap");
    install_reset(SIGSEGV);
    g_reset_hits = 0;
    *(volatile char *)g_page = 1;
    EXPECT_EQ("real SIGSEGV handled once", g_reset_hits, 1);
    expect_dfl(SIGSEGV, "SIGSEGV after a real fault");
    munmap(g_page, 4096);

    install_reset(SIGILL);
    g_reset_hits = 0;
    __asm__ volatile("ud2");
    EXPECT_EQ("real SIGILL handled once", g_reset_hits, 1);
    expect_dfl(SIGILL, "SIGILL after a real ud2");
    section_end(s, "SA_RESETHAND: one delivery (raise or real fault), then SIG_DFL");
}

static void test_unsupported(void)
{
    int s = section_begin();
    int reported[2];
    int sigs[2] = { SIGUSR2, SIGSYS };
    for (int i = 0; i < 2; i++) {
        struct sigaction sa, q;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = i_a;
        sa.sa_flags = SA_SIGINFO | SA_UNSUPPORTED;
        sigemptyset(&sa.sa_mask);
        EXPECT_EQ("install with SA_UNSUPPORTED", sigaction(sigs[i], &sa, NULL), 0);
        memset(&q, 0, sizeof q);
        sigaction(sigs[i], NULL, &q);
        reported[i] = q.sa_flags & ~SA_RESTORER;
        sigaction(sigs[i], &g_orig[sigs[i]], NULL);
    }
    EXPECT_EQ("SIGSYS flags read back like SIGUSR2's", reported[1], reported[0]);
    say("SA_UNSUPPORTED read back: %s\n", (reported[0] & SA_UNSUPPORTED) ? "kept" : "cleared");
    section_end(s, "unknown sa_flags bit treated alike for SIGSYS and SIGUSR2");
}

int main(void)
{
    test_initial();
    test_roundtrip();
    test_einval();
    test_resethand();
    test_unsupported();
    return finish();
}
