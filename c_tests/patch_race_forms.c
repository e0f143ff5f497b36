/*
 * usertrap-test: timeout=60
 *
 * Hard case: sites of the non-seed forms (patch/forms.rs) patched, unpatched
 * and patched again while many threads run them, with signals arriving
 * throughout whose handlers make syscalls through the same sites.
 *
 * The sites, none run before the threads start:
 *   range_getppid   `mov $110,%eax; mov %rdi,%rsi; syscall`: Form R (3
 *                   instructions relocated into the trampoline);
 *   punned_getppid  `lea (%rip),%r11d; mov %rbx,%rdi; syscall; cmp $-4095,%rax`:
 *                   Form R (the lea, 32-bit, stays in place) with a
 *                   boundary at offset 3 and one after the syscall (punned
 *                   slot; a thread returning from the old syscall lands on a
 *                   boundary inside the range);
 *   pad_syscall3    `...; lea (%rip),%r11d; mov %eax,%eax; syscall; ret` and a
 *                   dead NOP pad: Form P (jmp rel8 to the pad), first round
 *                   only: a site given back keeps its pad's jump (a thread
 *                   may be between the two jumps), and a function holding
 *                   that indirect jump is not patched again;
 *   lea_getppid     `mov $110,%eax; lea lea_getppid(%rip),%rsi; syscall`:
 *                   Form R over the lea and the syscall, the lea's copy a
 *                   movabs of the address it computes (pthread_create's
 *                   rt_sigprocmask); the caller checks %rsi's value too;
 *   glibc's syscall(3) and read(2) (first round only: libc is not made
 *   writable).
 * Each of 200 rounds makes this program's text writable and read-only again
 * (the library gives the sites their bytes back and forgets them), then the
 * threads race on the fresh sites while SIGALRM fires every 100 us.
 *
 * Other functions branch into the ranges at an interior boundary (the
 * second instruction, the syscall, the instruction after it): patched, those
 * are invalid opcodes, and the thread is completed from the trampoline.
 *
 * A thread blocked in read(2) on a pipe at the punned site (its trap patches
 * the site, then it sleeps in the old syscall), interrupted by SIGUSR1 with a
 * restarting handler that makes syscalls, then released: it must return
 * through the rewritten range with the byte it was sent.
 *
 * What it checks: every call returns what it must (the parent's pid, one
 * zero byte from /dev/zero), the handlers ran, no crash.
 */
#include "common.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>

#define THREADS 8
#define ROUNDS 200
#define CALLS 20

long range_getppid(long dummy);
long punned_getppid(long nr, long a1, long a2);
long pad_syscall3(long nr, long a1, long a2, long a3);
long lea_getppid(long *rsi);
long enter_at_lea_syscall(long *rsi);

__asm__(".text\n"
        ".p2align 6\n"
        "sites_start:\n"
        ".globl range_getppid\n"
        ".type range_getppid,@function\n"
        "range_getppid:\n"
        ".cfi_startproc\n"
        "    mov $110, %eax\n"
        "range_mov:\n"
        "    mov %rdi, %rsi\n"
        "range_sys:\n"
        "    syscall\n"
        "    ret\n"
        ".cfi_endproc\n"
        ".size range_getppid, .-range_getppid\n"
        ".p2align 4\n"
        ".globl punned_getppid\n"
        ".type punned_getppid,@function\n"
        "punned_getppid:\n"
        ".cfi_startproc\n"
        "    push %rbx\n"
        ".cfi_adjust_cfa_offset 8\n"
        "    mov %rdi, %rax\n"
        "    mov %rsi, %rbx\n"
        "    mov %rdx, %rsi\n"
        "    mov $1, %edx\n"
        "    lea 0(%rip), %r11d\n"
        "    mov %rbx, %rdi\n"
        "punned_sys:\n"
        "    syscall\n"
        "punned_cmp:\n"
        "    cmp $-4095, %rax\n"
        "    pop %rbx\n"
        ".cfi_adjust_cfa_offset -8\n"
        "    ret\n"
        ".cfi_endproc\n"
        ".size punned_getppid, .-punned_getppid\n"
        ".p2align 4\n"
        ".globl pad_syscall3\n"
        ".type pad_syscall3,@function\n"
        "pad_syscall3:\n"
        ".cfi_startproc\n"
        "    mov %rdi, %rax\n"
        "    mov %rsi, %rdi\n"
        "    mov %rdx, %rsi\n"
        "    mov %rcx, %rdx\n"
        "    lea 0(%rip), %r11d\n"
        "    mov %eax, %eax\n"
        "    syscall\n"
        "    ret\n"
        "    .byte 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00\n"
        ".cfi_endproc\n"
        ".size pad_syscall3, .-pad_syscall3\n"
        /* Functions of their own that branch into the ranges above, at an
         * instruction boundary other than the first: once a range is
         * patched, that boundary is an invalid opcode and the thread must
         * be completed from the trampoline (or, at the syscall, by the
         * handler). */
        ".p2align 4\n"
        ".type enter_at_mov,@function\n"
        "enter_at_mov:\n"
        ".cfi_startproc\n"
        "    mov $110, %eax\n"
        "    jmp range_mov\n"
        ".cfi_endproc\n"
        ".size enter_at_mov, .-enter_at_mov\n"
        ".type enter_at_syscall,@function\n"
        "enter_at_syscall:\n"
        ".cfi_startproc\n"
        "    mov $110, %eax\n"
        "    jmp range_sys\n"
        ".cfi_endproc\n"
        ".size enter_at_syscall, .-enter_at_syscall\n"
        ".type enter_at_punned_syscall,@function\n"
        "enter_at_punned_syscall:\n"
        ".cfi_startproc\n"
        "    push %rbx\n"
        ".cfi_adjust_cfa_offset 8\n"
        "    mov $110, %eax\n"
        "    jmp punned_sys\n"
        ".cfi_endproc\n"
        ".size enter_at_punned_syscall, .-enter_at_punned_syscall\n"
        ".type enter_after_punned_syscall,@function\n"
        "enter_after_punned_syscall:\n"
        ".cfi_startproc\n"
        "    push %rbx\n"
        ".cfi_adjust_cfa_offset 8\n"
        "    mov $110, %eax\n"
        "    syscall\n"
        "    jmp punned_cmp\n"
        ".cfi_endproc\n"
        ".size enter_after_punned_syscall, .-enter_after_punned_syscall\n"
        ".p2align 4\n"
        ".globl lea_getppid\n"
        ".type lea_getppid,@function\n"
        "lea_getppid:\n"
        ".cfi_startproc\n"
        "    mov $110, %eax\n"
        "    lea lea_getppid(%rip), %rsi\n"
        "lea_sys:\n"
        "    syscall\n"
        "    mov %rsi, (%rdi)\n"
        "    ret\n"
        ".cfi_endproc\n"
        ".size lea_getppid, .-lea_getppid\n"
        ".type enter_at_lea_syscall,@function\n"
        "enter_at_lea_syscall:\n"
        ".cfi_startproc\n"
        "    mov $110, %eax\n"
        "    lea lea_getppid(%rip), %rsi\n"
        "    jmp lea_sys\n"
        ".cfi_endproc\n"
        ".size enter_at_lea_syscall, .-enter_at_lea_syscall\n"
        "sites_end:\n");

long enter_at_mov(void);
long enter_at_syscall(void);
long enter_at_punned_syscall(void);
long enter_after_punned_syscall(void);

extern char sites_start[], sites_end[];

static pid_t g_ppid;
static int g_zero = -1;
static int g_bad;
static int g_handler_calls;
static volatile int g_round;
static int g_done;
static int g_glibc_sites = 1;

static void check(const char *what, long got, long want)
{
    if (got != want) {
        if (__atomic_add_fetch(&g_bad, 1, __ATOMIC_RELAXED) < 5)
            say("FAIL: %s returned %ld, expected %ld\n", what, got, want);
    }
}

static void one_byte_from_zero(void)
{
    char c = 1;
    check("pad_syscall3(read)", pad_syscall3(SYS_read, g_zero, (long)&c, 1), 1);
    check("byte read", c, 0);
}

static void all_sites(int glibc)
{
    check("range_getppid", range_getppid(0), g_ppid);
    check("punned_getppid", punned_getppid(SYS_getppid, 0, 0), g_ppid);
    check("pad_syscall3(getppid)", pad_syscall3(SYS_getppid, 0, 0, 0), g_ppid);
    one_byte_from_zero();
    long rsi = 0;
    check("lea_getppid", lea_getppid(&rsi), g_ppid);
    check("lea_getppid's %rsi", rsi, (long)lea_getppid);
    if (glibc) {
        check("syscall(SYS_getppid)", syscall(SYS_getppid), g_ppid);
        char c = 1;
        check("read", read(g_zero, &c, 1), 1);
        check("read's byte", c, 0);
    }
}

/* Each of these faults once the range is patched: a few per round. */
static void entries(void)
{
    check("enter_at_mov", enter_at_mov(), g_ppid);
    check("enter_at_syscall", enter_at_syscall(), g_ppid);
    check("enter_at_punned_syscall", enter_at_punned_syscall(), g_ppid);
    check("enter_after_punned_syscall", enter_after_punned_syscall(), g_ppid);
    long rsi = 0;
    check("enter_at_lea_syscall", enter_at_lea_syscall(&rsi), g_ppid);
    check("enter_at_lea_syscall's %rsi", rsi, (long)lea_getppid);
}

static void on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    all_sites(0);
    __atomic_add_fetch(&g_handler_calls, 1, __ATOMIC_RELAXED);
    errno = saved;
}

static void *worker(void *arg)
{
    (void)arg;
    for (int r = 1; r <= ROUNDS; r++) {
        while (__atomic_load_n(&g_round, __ATOMIC_ACQUIRE) < r)
            sched_yield(); /* 2 CPUs: let the main thread get on */
        for (int i = 0; i < CALLS; i++) {
            all_sites(r == 1 && __atomic_load_n(&g_glibc_sites, __ATOMIC_RELAXED));
            if (i % 8 == 0)
                entries();
        }
        __atomic_add_fetch(&g_done, 1, __ATOMIC_ACQ_REL);
    }
    return NULL;
}

/* Give the sites their bytes back: the library unpatches and forgets
 * them when their code becomes writable. */
static void fresh_sites(void)
{
    uintptr_t lo = (uintptr_t)sites_start & ~(uintptr_t)4095;
    uintptr_t hi = ((uintptr_t)sites_end + 4095) & ~(uintptr_t)4095;
    if (mprotect((void *)lo, hi - lo, PROT_READ | PROT_WRITE | PROT_EXEC) != 0 ||
        mprotect((void *)lo, hi - lo, PROT_READ | PROT_EXEC) != 0) {
        say("FAIL: mprotect of the sites: %s\n", strerror(errno));
        exit(1);
    }
}

static int g_pipe[2];
static char g_got;
static long g_blocked_ret;

static void *blocked_reader(void *arg)
{
    (void)arg;
    /* read(2) through the punned range: rdi = fd, rsi = buffer, rdx = 1. */
    g_blocked_ret = punned_getppid(SYS_read, g_pipe[0], (long)&g_got);
    return NULL;
}

static void blocked_in_the_site(void)
{
    fresh_sites();
    REQUIRE(pipe(g_pipe) == 0, "pipe");
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, blocked_reader, NULL) == 0, "pthread_create");
    /* Let it block, interrupt it a few times (SA_RESTART: the read goes on
     * after handlers that call the sites). */
    for (int i = 0; i < 5; i++) {
        usleep(20000);
        pthread_kill(t, SIGUSR1);
    }
    /* Meanwhile another thread runs the very site, and enters it elsewhere. */
    for (int i = 0; i < 100; i++) {
        check("punned_getppid (other thread)", punned_getppid(SYS_getppid, 0, 0), g_ppid);
        entries();
    }
    usleep(20000);
    REQUIRE(write(g_pipe[1], "x", 1) == 1, "write");
    pthread_join(t, NULL);
    check("blocked read", g_blocked_ret, 1);
    check("blocked read's byte", g_got, 'x');
}

int main(void)
{
    g_ppid = getppid();
    g_zero = open("/dev/zero", O_RDONLY);
    REQUIRE(g_zero >= 0, "open /dev/zero");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);

    blocked_in_the_site();

    struct itimerval it = { { 0, 100 }, { 0, 100 } };
    setitimer(ITIMER_REAL, &it, NULL);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        REQUIRE(pthread_create(&t[i], NULL, worker, NULL) == 0, "pthread_create");
    for (int r = 1; r <= ROUNDS; r++) {
        fresh_sites();
        __atomic_store_n(&g_round, r, __ATOMIC_RELEASE);
        while (__atomic_load_n(&g_done, __ATOMIC_ACQUIRE) < r * THREADS)
            all_sites(0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    while (__atomic_load_n(&g_handler_calls, __ATOMIC_RELAXED) < 20)
        all_sites(0);
    struct itimerval off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &off, NULL);

    if (g_bad != 0)
        say("FAIL: %d calls returned the wrong value\n", g_bad);
    else
        say("patch race (forms R and P): %d threads x %d rounds x %d calls, blocked reader released: ok\n",
            THREADS, ROUNDS, CALLS);
    return g_bad != 0;
}
