/*
 * usertrap-test: unsupported
 * (the library keeps its per-thread state behind the GS base: ARCH_SET_GS is refused with EPERM, and a GS base set with wrgsbase ends the process with a message: see README, Limits.)
 *
 * Hard case: the program uses the %gs segment base itself.
 *
 * Why it is hard for a syscall interposer: glibc leaves %gs unused on
 * x86-64, so interposers like to keep per-thread state behind it (gVisor
 * does).  But programs may set it too: arch_prctl(ARCH_SET_GS) (Wine,
 * some runtimes and JITs) or, where the CPU and kernel enable FSGSBASE,
 * `wrgsbase` straight from user space with no syscall at all.  The program
 * must read back exactly what it set, its %gs-relative loads must keep
 * working across syscalls, signals and thread creation, and the interposer
 * must still find its own state.  The initial value is 0.
 *
 * What it checks: ARCH_GET_GS is 0 at start; ARCH_GET_FS equals
 * pthread_self(); after ARCH_SET_GS, %gs:0 reads the program's magic and
 * ARCH_GET_GS returns its buffer across 2000 syscalls, a signal handler
 * (which also reads %gs:0) and in a new thread (which inherits the base);
 * with FSGSBASE (AT_HWCAP2 bit 1; a line says whether it was checked),
 * wrgsbase to a second buffer, then syscalls, rdgsbase and %gs:0 agree.
 */
#include "common.h"

#include <asm/prctl.h>
#include <pthread.h>
#include <sys/auxv.h>

static uint64_t gs_load0(void)
{
    uint64_t v;
    __asm__ volatile("mov %%gs:0, %0" : "=r"(v) : : "memory");
    return v;
}

static unsigned long get_gs(void)
{
    unsigned long v = 0xdead;
    if (syscall(SYS_arch_prctl, ARCH_GET_GS, &v) != 0)
        return 0xbad;
    return v;
}

static uint64_t g_buf1[8] __attribute__((aligned(64))) = { 0x1111222233334444ULL };
static uint64_t g_buf2[8] __attribute__((aligned(64))) = { 0x5555666677778888ULL };
static volatile uint64_t g_handler_seen;

static void on_usr1(int sig)
{
    (void)sig;
    g_handler_seen = gs_load0();
    (void)getppid(); /* a syscall from the handler */
}

static void *thread_fn(void *unused)
{
    (void)unused;
    int bad = 0;
    if (get_gs() != (unsigned long)g_buf1)
        bad |= 1;
    if (gs_load0() != g_buf1[0])
        bad |= 2;
    for (int i = 0; i < 200; i++)
        if (getppid() <= 0)
            bad |= 4;
    if (gs_load0() != g_buf1[0])
        bad |= 8;
    return (void *)(intptr_t)bad;
}

__attribute__((target("fsgsbase"))) static void test_fsgsbase(void)
{
    int s = section_begin();
    __builtin_ia32_wrgsbase64((unsigned long long)(uintptr_t)g_buf2);
    EXPECT_EQ("%gs:0 after wrgsbase", gs_load0(), g_buf2[0]);
    pid_t pp = getppid();
    int bad = 0;
    for (int i = 0; i < 1000; i++)
        if (getppid() != pp)
            bad++;
    EXPECT_EQ("syscalls after wrgsbase", bad, 0);
    EXPECT_EQ("rdgsbase", __builtin_ia32_rdgsbase64(), (uintptr_t)g_buf2);
    EXPECT_EQ("%gs:0 after the syscalls", gs_load0(), g_buf2[0]);
    EXPECT_EQ("ARCH_GET_GS sees the wrgsbase value", get_gs(), (uintptr_t)g_buf2);
    raise(SIGUSR1);
    EXPECT_EQ("handler read %gs:0", g_handler_seen, g_buf2[0]);
    EXPECT_EQ("rdgsbase after the signal", __builtin_ia32_rdgsbase64(), (uintptr_t)g_buf2);
    section_end(s, "fsgsbase: wrgsbase without a syscall, then syscalls and a signal");
}

int main(void)
{
    signal(SIGUSR1, on_usr1);
    int s = section_begin();
    EXPECT_EQ("initial gs base", get_gs(), 0);
    unsigned long fs = 0;
    EXPECT_EQ("ARCH_GET_FS", syscall(SYS_arch_prctl, ARCH_GET_FS, &fs), 0);
    EXPECT_EQ("fs base is the thread pointer", fs, (unsigned long)pthread_self());
    section_end(s, "initial gs base 0, fs base = pthread_self()");

    s = section_begin();
    EXPECT_EQ("ARCH_SET_GS", syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)g_buf1), 0);
    EXPECT_EQ("ARCH_GET_GS", get_gs(), (unsigned long)g_buf1);
    EXPECT_EQ("%gs:0", gs_load0(), g_buf1[0]);
    pid_t pp = getppid();
    int bad = 0;
    for (int i = 0; i < 2000; i++) {
        if (getppid() != pp)
            bad++;
        if ((i & 63) == 0 && gs_load0() != g_buf1[0])
            bad++;
    }
    EXPECT_EQ("2000 syscalls with our gs", bad, 0);
    EXPECT_EQ("ARCH_GET_GS after", get_gs(), (unsigned long)g_buf1);
    g_handler_seen = 0;
    raise(SIGUSR1);
    EXPECT_EQ("signal handler reads %gs:0", g_handler_seen, g_buf1[0]);
    EXPECT_EQ("%gs:0 after the signal", gs_load0(), g_buf1[0]);
    pthread_t t;
    void *ret = (void *)-1;
    EXPECT_EQ("pthread_create", pthread_create(&t, NULL, thread_fn, NULL), 0);
    pthread_join(t, &ret);
    EXPECT_EQ("new thread inherits gs base (check bits)", (intptr_t)ret, 0);
    EXPECT_EQ("ARCH_GET_GS at the end", get_gs(), (unsigned long)g_buf1);
    section_end(s, "ARCH_SET_GS: %gs loads and read-back across syscalls, signal, thread");

    if (getauxval(AT_HWCAP2) & 2) {
        test_fsgsbase();
        say("fsgsbase: checked\n");
    }
    /* leave gs as we found it */
    syscall(SYS_arch_prctl, ARCH_SET_GS, 0UL);
    return finish();
}
