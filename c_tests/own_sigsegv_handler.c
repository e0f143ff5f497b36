/*
 * Hard case: the program installs its own handlers for the signals the
 * interposer itself depends on (SIGSEGV, SIGILL, SIGTRAP, SIGSYS) and for
 * SIGBUS, and relies on resuming after faults.
 *
 * Why it is hard for a syscall interposer: the interposer keeps its own
 * SIGSYS (and SIGILL, for patched-site races) handlers installed, so it must
 * report the program's handler, flags and mask back from rt_sigaction, and
 * forward every signal that is not its own with the original siginfo and a
 * ucontext whose changes (RIP, RAX) take effect: a real SIGSYS from kill()
 * or raise() is the program's, a #UD on a byte that happens to be 0x06
 * (the interposer's own marker byte) is the program's.  Handlers that make
 * syscalls (mprotect inside a SIGSEGV handler) re-enter the interposer.
 *
 * What it checks:
 *  - SIGSEGV (SA_SIGINFO): writing to a PROT_NONE page 100 times; the handler
 *    sees si_addr == the address, SEGV_ACCERR, its sa_mask and SIGSEGV
 *    blocked, mprotects the page and returns; the write is retried and
 *    lands.  Also a read-only page, and an unmapped page (SEGV_MAPERR) that
 *    the handler maps with MAP_FIXED.  A read() into a PROT_NONE buffer
 *    fails with EFAULT instead (no signal).
 *  - SIGBUS on a memfd mapping past EOF; handler ftruncates and returns.
 *  - SIGILL from ud2 and from a lone 0x06 byte: si_addr/RIP at the
 *    instruction, ILL_ILLOPN; handler advances RIP through the ucontext.
 *  - SIGTRAP from int3: SI_KERNEL, RIP after the int3.
 *  - SIGSYS from raise (SI_TKILL), kill (SI_USER, si_pid), sigqueue
 *    (SI_QUEUE, si_value) reaches the program's handler; SIG_IGN'd SIGSYS
 *    is discarded.
 *  - sigaction(NULL, &old) for SIGSEGV/SIGILL/SIGSYS/SIGTRAP/SIGBUS reports
 *    exactly the program's handler, flags (minus SA_RESTORER) and mask.
 */
#include "common.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <ucontext.h>

#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000
#endif

static long g_page;

/* ------------------------------------------------------------ SIGSEGV ---- */

static volatile char *g_fault_page;
static volatile uintptr_t g_expect_addr;
static volatile int g_segv_count, g_segv_bad, g_segv_code;
static volatile int g_segv_map_instead; /* map the page instead of mprotect */

static void on_segv(int sig, siginfo_t *si, void *ucv)
{
    (void)ucv;
    g_segv_count++;
    g_segv_code = si->si_code;
    if (sig != SIGSEGV || si->si_signo != SIGSEGV)
        g_segv_bad |= 1;
    if ((uintptr_t)si->si_addr != g_expect_addr)
        g_segv_bad |= 2;
    sigset_t cur;
    sigprocmask(SIG_SETMASK, NULL, &cur);
    if (sigismember(&cur, SIGSEGV) != 1 || sigismember(&cur, SIGUSR1) != 1)
        g_segv_bad |= 4;
    if (g_segv_map_instead) {
        void *p = mmap((void *)g_fault_page, (size_t)g_page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (p != (void *)g_fault_page)
            g_segv_bad |= 8;
    } else if (mprotect((void *)g_fault_page, (size_t)g_page, PROT_READ | PROT_WRITE) != 0) {
        g_segv_bad |= 16;
    }
}

static void test_segv(void)
{
    int s = section_begin();
    g_fault_page = mmap(NULL, (size_t)g_page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(g_fault_page != MAP_FAILED, "mmap");
    for (int i = 0; i < 100; i++) {
        int off = (i * 37) % (int)g_page;
        mprotect((void *)g_fault_page, (size_t)g_page, PROT_NONE);
        g_expect_addr = (uintptr_t)(g_fault_page + off);
        int before = g_segv_count;
        g_fault_page[off] = (char)(i + 1);
        if (g_segv_count != before + 1)
            FAILF("iteration %d: handler count", i);
        if (g_fault_page[off] != (char)(i + 1))
            FAILF("iteration %d: retried write did not land", i);
    }
    EXPECT_EQ("handler check bits", g_segv_bad, 0);
    EXPECT_EQ("si_code", g_segv_code, SEGV_ACCERR);
    section_end(s, "SIGSEGV on PROT_NONE page x100: si_addr, mask, mprotect in handler, retry");

    s = section_begin();
    mprotect((void *)g_fault_page, (size_t)g_page, PROT_READ);
    g_expect_addr = (uintptr_t)(g_fault_page + 100);
    g_segv_count = 0;
    g_fault_page[100] = 42;
    EXPECT_EQ("one fault", g_segv_count, 1);
    EXPECT_EQ("read-only si_code", g_segv_code, SEGV_ACCERR);
    EXPECT_EQ("value", g_fault_page[100], 42);

    munmap((void *)g_fault_page, (size_t)g_page);
    g_segv_map_instead = 1;
    g_expect_addr = (uintptr_t)(g_fault_page + 8);
    g_segv_count = 0;
    g_fault_page[8] = 9;
    EXPECT_EQ("one fault", g_segv_count, 1);
    EXPECT_EQ("unmapped si_code", g_segv_code, SEGV_MAPERR);
    EXPECT_EQ("value", g_fault_page[8], 9);
    g_segv_map_instead = 0;
    EXPECT_EQ("handler check bits", g_segv_bad, 0);

    /* a syscall given an inaccessible buffer gets EFAULT, no signal */
    mprotect((void *)g_fault_page, (size_t)g_page, PROT_NONE);
    int p[2];
    REQUIRE(pipe(p) == 0, "pipe");
    EXPECT_EQ("write", write(p[1], "z", 1), 1);
    g_segv_count = 0;
    errno = 0;
    EXPECT_EQ("read into PROT_NONE", read(p[0], (void *)g_fault_page, 1), -1);
    EXPECT_EQ("EFAULT", errno, EFAULT);
    EXPECT_EQ("no SIGSEGV for EFAULT", g_segv_count, 0);
    close(p[0]);
    close(p[1]);
    munmap((void *)g_fault_page, (size_t)g_page);
    section_end(s, "SIGSEGV on read-only and unmapped pages; EFAULT from a syscall");
}

/* ------------------------------------------------------------- SIGBUS ---- */

static volatile int g_bus_count, g_bus_code, g_bus_fd = -1;

static void on_bus(int sig, siginfo_t *si, void *ucv)
{
    (void)sig;
    (void)ucv;
    g_bus_count++;
    g_bus_code = si->si_code;
    if (ftruncate(g_bus_fd, g_page) != 0)
        g_bus_code = -1;
}

static void test_bus(void)
{
    int s = section_begin();
    int fd = memfd_create("usertrap-sigbus", MFD_CLOEXEC);
    REQUIRE(fd >= 0, "memfd_create");
    g_bus_fd = fd;
    volatile char *m = mmap(NULL, (size_t)g_page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    REQUIRE(m != MAP_FAILED, "mmap memfd");
    m[10] = 5;
    EXPECT_EQ("one SIGBUS", g_bus_count, 1);
    EXPECT_EQ("BUS_ADRERR", g_bus_code, BUS_ADRERR);
    EXPECT_EQ("value after retry", m[10], 5);
    munmap((void *)m, (size_t)g_page);
    close(fd);
    section_end(s, "SIGBUS past EOF of a memfd mapping, ftruncate in the handler");
}

/* ------------------------------------------------------------- SIGILL ---- */

static volatile uintptr_t g_ill_expect;
static volatile int g_ill_count, g_ill_bad, g_ill_skip;

static void on_ill(int sig, siginfo_t *si, void *ucv)
{
    (void)sig;
    ucontext_t *uc = ucv;
    g_ill_count++;
    if ((uintptr_t)si->si_addr != g_ill_expect)
        g_ill_bad |= 1;
    if ((uintptr_t)uc->uc_mcontext.gregs[REG_RIP] != g_ill_expect)
        g_ill_bad |= 2;
    if (si->si_code != ILL_ILLOPN)
        g_ill_bad |= 4;
    uc->uc_mcontext.gregs[REG_RIP] += g_ill_skip;
}

static void test_ill(void)
{
    int s = section_begin();
    for (int i = 0; i < 20; i++) {
        uintptr_t addr;
        g_ill_skip = 2;
        __asm__ volatile("lea 1f(%%rip), %0\n\t"
                         "mov %0, %1\n\t"
                         "1: ud2\n\t"
                         : "=&r"(addr), "=m"(g_ill_expect)
                         :
                         : "memory");
        (void)addr;
    }
    EXPECT_EQ("ud2 handler runs", g_ill_count, 20);
    EXPECT_EQ("ud2 handler check bits", g_ill_bad, 0);

    g_ill_count = 0;
    for (int i = 0; i < 20; i++) {
        uintptr_t addr;
        g_ill_skip = 1;
        /* 0x06 is `push %es`, invalid in 64-bit mode: the marker byte
         * trap-then-patch interposers put at site+5 */
        __asm__ volatile("lea 1f(%%rip), %0\n\t"
                         "mov %0, %1\n\t"
                         "1: .byte 0x06\n\t"
                         : "=&r"(addr), "=m"(g_ill_expect)
                         :
                         : "memory");
        (void)addr;
    }
    EXPECT_EQ("0x06 handler runs", g_ill_count, 20);
    EXPECT_EQ("0x06 handler check bits", g_ill_bad, 0);
    section_end(s, "SIGILL from ud2 and from a 0x06 byte, RIP advanced via ucontext");
}

/* ------------------------------------------------------------ SIGTRAP ---- */

static volatile uintptr_t g_trap_expect;
static volatile int g_trap_count, g_trap_bad;

static void on_trap(int sig, siginfo_t *si, void *ucv)
{
    (void)sig;
    ucontext_t *uc = ucv;
    g_trap_count++;
    if ((uintptr_t)uc->uc_mcontext.gregs[REG_RIP] != g_trap_expect)
        g_trap_bad |= 1;
    if (si->si_code != SI_KERNEL)
        g_trap_bad |= 2;
}

static void test_trap(void)
{
    int s = section_begin();
    for (int i = 0; i < 20; i++) {
        uintptr_t addr;
        __asm__ volatile("lea 1f(%%rip), %0\n\t"
                         "mov %0, %1\n\t"
                         "int3\n"
                         "1:\n\t"
                         : "=&r"(addr), "=m"(g_trap_expect)
                         :
                         : "memory");
        (void)addr;
    }
    EXPECT_EQ("int3 handler runs", g_trap_count, 20);
    EXPECT_EQ("int3 check bits", g_trap_bad, 0);
    section_end(s, "SIGTRAP from int3: SI_KERNEL, RIP after int3");
}

/* ------------------------------------------------------------- SIGSYS ---- */

static volatile int g_sys_count, g_sys_code, g_sys_pid, g_sys_value, g_sys_signo;

static void on_sys(int sig, siginfo_t *si, void *ucv)
{
    (void)ucv;
    g_sys_count++;
    g_sys_signo = sig;
    g_sys_code = si->si_code;
    g_sys_pid = si->si_pid;
    g_sys_value = si->si_value.sival_int;
}

static void test_sys(void)
{
    int s = section_begin();
    pid_t me = getpid();
    g_sys_count = 0;
    EXPECT_EQ("raise(SIGSYS)", raise(SIGSYS), 0);
    EXPECT_EQ("handler ran", g_sys_count, 1);
    EXPECT_EQ("signo", g_sys_signo, SIGSYS);
    EXPECT_EQ("raise si_code SI_TKILL", g_sys_code, SI_TKILL);
    EXPECT_EQ("raise si_pid", g_sys_pid, me);

    EXPECT_EQ("kill(getpid(), SIGSYS)", kill(me, SIGSYS), 0);
    EXPECT_EQ("handler ran", g_sys_count, 2);
    EXPECT_EQ("kill si_code SI_USER", g_sys_code, SI_USER);
    EXPECT_EQ("kill si_pid", g_sys_pid, me);

    union sigval v = { .sival_int = 4321 };
    EXPECT_EQ("sigqueue SIGSYS", sigqueue(me, SIGSYS, v), 0);
    EXPECT_EQ("handler ran", g_sys_count, 3);
    EXPECT_EQ("sigqueue si_code SI_QUEUE", g_sys_code, SI_QUEUE);
    EXPECT_EQ("sigqueue si_value", g_sys_value, 4321);

    EXPECT_EQ("tgkill SIGSYS", syscall(SYS_tgkill, me, gettid(), SIGSYS), 0);
    EXPECT_EQ("handler ran", g_sys_count, 4);
    EXPECT_EQ("tgkill si_code SI_TKILL", g_sys_code, SI_TKILL);

    /* ignored SIGSYS is discarded */
    struct sigaction ign, old;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    EXPECT_EQ("SIG_IGN SIGSYS", sigaction(SIGSYS, &ign, &old), 0);
    EXPECT("old handler returned by the set", old.sa_sigaction == on_sys);
    raise(SIGSYS);
    kill(me, SIGSYS);
    EXPECT_EQ("ignored SIGSYS did not reach the handler", g_sys_count, 4);
    struct sigaction q;
    sigaction(SIGSYS, NULL, &q);
    EXPECT("query reports SIG_IGN", q.sa_handler == SIG_IGN);
    sigset_t pend;
    sigpending(&pend);
    EXPECT_EQ("nothing pending", sigismember(&pend, SIGSYS), 0);
    EXPECT_EQ("restore handler", sigaction(SIGSYS, &old, NULL), 0);
    raise(SIGSYS);
    EXPECT_EQ("handler back", g_sys_count, 5);
    section_end(s, "SIGSYS from raise/kill/sigqueue/tgkill reaches the program's handler; SIG_IGN");
}

/* ---------------------------------------------------------- read-back ---- */

struct expect_sa {
    int sig;
    void (*fn)(int, siginfo_t *, void *);
    int flags;
    int mask_sig;
    const char *name;
};

static const struct expect_sa g_expect[] = {
    { SIGSEGV, on_segv, SA_SIGINFO, SIGUSR1, "SIGSEGV" },
    { SIGBUS, on_bus, SA_SIGINFO | SA_RESTART, SIGUSR2, "SIGBUS" },
    { SIGILL, on_ill, SA_SIGINFO | SA_RESTART, SIGALRM, "SIGILL" },
    { SIGTRAP, on_trap, SA_SIGINFO | SA_ONSTACK, SIGHUP, "SIGTRAP" },
    { SIGSYS, on_sys, SA_SIGINFO | SA_NODEFER, SIGWINCH, "SIGSYS" },
};

static void install_all(void)
{
    for (size_t i = 0; i < sizeof g_expect / sizeof g_expect[0]; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = g_expect[i].fn;
        sa.sa_flags = g_expect[i].flags;
        sigemptyset(&sa.sa_mask);
        sigaddset(&sa.sa_mask, g_expect[i].mask_sig);
        REQUIRE(sigaction(g_expect[i].sig, &sa, NULL) == 0, "sigaction");
    }
}

static void check_readback(const char *when)
{
    int s = section_begin();
    for (size_t i = 0; i < sizeof g_expect / sizeof g_expect[0]; i++) {
        struct sigaction q;
        memset(&q, 0, sizeof q);
        EXPECT_EQ("query", sigaction(g_expect[i].sig, NULL, &q), 0);
        if (q.sa_sigaction != g_expect[i].fn)
            FAILF("%s: handler not reported back", g_expect[i].name);
        if ((q.sa_flags & ~SA_RESTORER) != g_expect[i].flags)
            FAILF("%s: flags 0x%x vs 0x%x", g_expect[i].name, q.sa_flags & ~SA_RESTORER,
                  g_expect[i].flags);
        sigset_t m;
        sigemptyset(&m);
        sigaddset(&m, g_expect[i].mask_sig);
        EXPECT_SIGSET(g_expect[i].name, &q.sa_mask, &m);
    }
    char line[128];
    snprintf(line, sizeof line, "sigaction read-back of own handlers %s", when);
    section_end(s, line);
}

int main(void)
{
    g_page = sysconf(_SC_PAGESIZE);
    install_all();
    check_readback("before faults");
    test_segv();
    test_bus();
    test_ill();
    test_trap();
    test_sys();
    check_readback("after faults");

    int s = section_begin();
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    int sigs[] = { SIGSEGV, SIGILL, SIGSYS, SIGTRAP, SIGBUS };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction q;
        EXPECT_EQ("reset to SIG_DFL", sigaction(sigs[i], &dfl, NULL), 0);
        EXPECT_EQ("query", sigaction(sigs[i], NULL, &q), 0);
        EXPECT("SIG_DFL reported", q.sa_handler == SIG_DFL);
        EXPECT_EQ("flags 0", q.sa_flags & ~SA_RESTORER, 0);
    }
    section_end(s, "SIG_DFL reported back after reset");
    return finish();
}
