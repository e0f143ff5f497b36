/*
 * Hard case: syscalls from code generated at run time, rewritten code,
 * branches into the middle of a syscall site, and odd syscall numbers.
 *
 * Why it is hard for a syscall interposer: a trap-then-patch interposer
 * rewrites `mov $nr,%eax; syscall` sites into jumps to per-site trampolines
 * that carry the syscall number.  JIT code changes under it: the program
 * rewrites the page (through mprotect RW/RX, or directly on an RWX page,
 * sometimes only the 4 immediate bytes, which in a patched site are the
 * middle of the jump), unmaps it and maps other code at the same address;
 * any cached number or stale patch runs the wrong syscall or crashes.
 * Code can also branch straight to the `syscall` instruction of a site with
 * a different eax.  The interposer also sees syscall numbers that do not
 * exist (ENOSYS), the x32 bit, high bits in rax, and restart_syscall called
 * directly.
 *
 * What it checks:
 *  - RW->RX page `mov $39,%eax; syscall; ret` (getpid) called 1000 times;
 *    rewritten (mprotect RW, new bytes, RX) to getppid; then only the imm32
 *    bytes rewritten back; every call checked against getpid()/getppid().
 *  - an RWX page whose imm32 is flipped in place 40 times between bursts of
 *    calls (no syscall tells anyone the code changed).
 *  - the page unmapped and new code mapped at the same address.
 *  - write(2) and 6-argument mmap(2) stubs using the C argument registers.
 *  - a second entry point that sets eax=110 and jumps to the `syscall`
 *    byte of a getpid site (JIT page and static code), interleaved with
 *    normal calls of that site.
 *  - syscall(3): getppid, write; syscall(100000), syscall(-1), 500, 511 ->
 *    ENOSYS; restart_syscall with nothing to restart -> EINTR; a raw -1.
 *  - reports how the kernel treats the x32 bit and high bits in rax (same
 *    line expected under the interposer).
 */
#include "common.h"

#include <sys/mman.h>

typedef long (*fn0)(void);
typedef long (*fn3)(long, long, long);
typedef long (*fn6)(long, long, long, long, long, long);

static long g_page;
static pid_t g_pid, g_ppid;

/* mov $nr,%eax; syscall; ret */
static void emit_sys(unsigned char *p, uint32_t nr)
{
    p[0] = 0xb8;
    memcpy(p + 1, &nr, 4);
    p[5] = 0x0f;
    p[6] = 0x05;
    p[7] = 0xc3;
}

static int call_n(fn0 f, int n, long want)
{
    int bad = 0;
    for (int i = 0; i < n; i++)
        if (f() != want)
            bad++;
    return bad;
}

static void test_rw_rx(void)
{
    int s = section_begin();
    unsigned char *p = mmap(NULL, (size_t)g_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED, "mmap");
    emit_sys(p, SYS_getpid);
    REQUIRE(mprotect(p, (size_t)g_page, PROT_READ | PROT_EXEC) == 0, "mprotect RX");
    fn0 f = (fn0)(void *)p;
    EXPECT_EQ("getpid stub x1000", call_n(f, 1000, g_pid), 0);

    REQUIRE(mprotect(p, (size_t)g_page, PROT_READ | PROT_WRITE) == 0, "mprotect RW");
    emit_sys(p, SYS_getppid);
    REQUIRE(mprotect(p, (size_t)g_page, PROT_READ | PROT_EXEC) == 0, "mprotect RX");
    EXPECT_EQ("rewritten to getppid x1000", call_n(f, 1000, g_ppid), 0);

    REQUIRE(mprotect(p, (size_t)g_page, PROT_READ | PROT_WRITE) == 0, "mprotect RW");
    uint32_t nr = SYS_getpid;
    memcpy(p + 1, &nr, 4); /* only the immediate */
    REQUIRE(mprotect(p, (size_t)g_page, PROT_READ | PROT_EXEC) == 0, "mprotect RX");
    EXPECT_EQ("imm32-only rewrite back to getpid x1000", call_n(f, 1000, g_pid), 0);
    munmap(p, (size_t)g_page);
    section_end(s, "RW->RX JIT page: call, rewrite whole site, rewrite imm32 only");
}

static void test_rwx(void)
{
    int s = section_begin();
    unsigned char *p = mmap(NULL, (size_t)g_page, PROT_READ | PROT_WRITE | PROT_EXEC,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED, "mmap RWX");
    emit_sys(p, SYS_getpid);
    fn0 f = (fn0)(void *)p;
    for (int round = 0; round < 40; round++) {
        uint32_t nr = (round % 2) ? SYS_getppid : SYS_getpid;
        memcpy(p + 1, &nr, 4);
        long want = (round % 2) ? g_ppid : g_pid;
        int bad = call_n(f, 100, want);
        if (bad)
            FAILF("RWX round %d: %d wrong results", round, bad);
    }
    /* whole-site rewrite with a different syscall, no mprotect */
    emit_sys(p, SYS_gettid);
    EXPECT_EQ("RWX rewritten to gettid", call_n(f, 100, gettid()), 0);
    munmap(p, (size_t)g_page);
    section_end(s, "RWX JIT page: imm32 flipped in place 40 times between 100-call bursts");
}

static void test_remap(void)
{
    int s = section_begin();
    unsigned char *p = mmap(NULL, (size_t)g_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED, "mmap");
    emit_sys(p, SYS_getppid);
    mprotect(p, (size_t)g_page, PROT_READ | PROT_EXEC);
    fn0 f = (fn0)(void *)p;
    EXPECT_EQ("getppid x500", call_n(f, 500, g_ppid), 0);
    for (int round = 0; round < 10; round++) {
        REQUIRE(munmap(p, (size_t)g_page) == 0, "munmap");
        unsigned char *q = mmap(p, (size_t)g_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        REQUIRE(q == p, "mmap at the same address");
        int gp = round % 2 == 0;
        emit_sys(q, gp ? SYS_getpid : SYS_getppid);
        mprotect(q, (size_t)g_page, PROT_READ | PROT_EXEC);
        if (call_n(f, 100, gp ? g_pid : g_ppid) != 0)
            FAILF("remap round %d: wrong results", round);
    }
    munmap(p, (size_t)g_page);
    section_end(s, "JIT page unmapped and replaced at the same address, 10 times");
}

static void test_args(void)
{
    int s = section_begin();
    unsigned char *p = mmap(NULL, (size_t)g_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED, "mmap");
    emit_sys(p, SYS_write); /* write(rdi, rsi, rdx) */
    /* at 16: mov %rcx,%r10; mov $9,%eax; syscall; ret  (mmap with 6 args) */
    static const unsigned char mm[] = { 0x49, 0x89, 0xca, 0xb8, 0x09, 0, 0, 0, 0x0f, 0x05, 0xc3 };
    memcpy(p + 16, mm, sizeof mm);
    emit_sys(p + 32, SYS_munmap);
    mprotect(p, (size_t)g_page, PROT_READ | PROT_EXEC);
    fn3 wr = (fn3)(void *)p;
    fn6 mmap6 = (fn6)(void *)(p + 16);
    fn3 unmap = (fn3)(void *)(p + 32);
    int fds[2];
    REQUIRE(pipe(fds) == 0, "pipe");
    int bad = 0;
    for (int i = 0; i < 200; i++) {
        char out[8], in[8] = { 0 };
        snprintf(out, sizeof out, "j%05d", i);
        if (wr(fds[1], (long)out, 6) != 6 || read(fds[0], in, 6) != 6 || memcmp(in, out, 6) != 0)
            bad++;
        long m = mmap6(0, g_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m < 0 && m > -4096) {
            bad++;
            continue;
        }
        ((volatile char *)m)[0] = 1;
        if (unmap(m, g_page, 0) != 0)
            bad++;
    }
    EXPECT_EQ("write/mmap/munmap stubs x200", bad, 0);
    EXPECT_EQ("write to a bad fd", wr(-1, (long)"x", 1), -EBADF);
    close(fds[0]);
    close(fds[1]);
    munmap(p, (size_t)g_page);
    section_end(s, "JIT stubs with arguments: write(3 args), mmap(6 args), munmap");
}

/* ---------------------------------------------- branch to the syscall ---- */

/* static code: site_getpid is `mov $39,%eax; syscall; ret`; entry_getppid
 * sets eax=110 and jumps to that site's `syscall` instruction. */
__asm__(".text\n"
        ".globl site_getpid\n.type site_getpid,@function\n"
        "site_getpid:\n"
        "    mov $39, %eax\n"
        ".globl site_getpid_syscall\n"
        "site_getpid_syscall:\n"
        "    syscall\n"
        "    ret\n"
        ".size site_getpid, .-site_getpid\n"
        ".globl entry_getppid\n.type entry_getppid,@function\n"
        "entry_getppid:\n"
        "    mov $110, %eax\n"
        "    jmp site_getpid_syscall\n"
        ".size entry_getppid, .-entry_getppid\n");
long site_getpid(void);
long entry_getppid(void);

static void test_branch_into_site(void)
{
    int s = section_begin();
    int bad = 0;
    for (int i = 0; i < 1000; i++) {
        if (site_getpid() != g_pid)
            bad++;
        if (i % 3 == 0 && entry_getppid() != g_ppid)
            bad++;
    }
    EXPECT_EQ("static site and branch into its syscall", bad, 0);

    unsigned char *p = mmap(NULL, (size_t)g_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED, "mmap");
    emit_sys(p, SYS_getpid);
    /* at 16: mov $110,%eax; jmp p+5 */
    p[16] = 0xb8;
    uint32_t nr = SYS_getppid;
    memcpy(p + 17, &nr, 4);
    p[21] = 0xe9;
    int32_t rel = (int32_t)(5 - (21 + 5));
    memcpy(p + 22, &rel, 4);
    mprotect(p, (size_t)g_page, PROT_READ | PROT_EXEC);
    fn0 site = (fn0)(void *)p, entry = (fn0)(void *)(p + 16);
    bad = call_n(site, 1000, g_pid);
    for (int i = 0; i < 1000; i++) {
        if (entry() != g_ppid)
            bad++;
        if (site() != g_pid)
            bad++;
    }
    EXPECT_EQ("JIT site and branch into its syscall", bad, 0);
    munmap(p, (size_t)g_page);
    section_end(s, "branch straight to a site's syscall instruction with another eax");
}

/* ------------------------------------------------------ odd numbers ---- */

static long raw_rax(uint64_t rax)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(rax) : "rcx", "r11", "memory");
    return ret;
}

static void test_numbers(void)
{
    int s = section_begin();
    EXPECT_EQ("syscall(SYS_getppid)", syscall(SYS_getppid), g_ppid);
    EXPECT_EQ("syscall(SYS_write)", syscall(SYS_write, 1, "", 0), 0);
    long nums[] = { 100000, -1, 500, 511, 0x7fffffff, -100 };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        errno = 0;
        long r = syscall(nums[i]);
        if (r != -1 || errno != ENOSYS)
            FAILF("syscall(%ld) returned %ld errno %d, expected ENOSYS", nums[i], r, errno);
    }
    EXPECT_EQ("raw rax=-1", raw_rax((uint64_t)-1), -ENOSYS);
    EXPECT_EQ("raw rax=100000", raw_rax(100000), -ENOSYS);
    errno = 0;
    EXPECT_EQ("restart_syscall with nothing to restart", syscall(SYS_restart_syscall), -1);
    EXPECT_EQ("errno EINTR", errno, EINTR);
    section_end(s, "syscall(3) and invalid numbers (ENOSYS), restart_syscall (EINTR)");

    long x32 = raw_rax(0x40000000ULL | SYS_getpid);
    say("x32 bit + getpid: %s\n", x32 == g_pid ? "runs getpid" : x32 == -ENOSYS ? "ENOSYS" : "other result");
    long high = raw_rax(0x100000000ULL | SYS_getpid);
    say("rax = 2^32 + 39: %s\n", high == g_pid ? "runs getpid" : high == -ENOSYS ? "ENOSYS" : "other result");
}

int main(void)
{
    g_page = sysconf(_SC_PAGESIZE);
    g_pid = getpid();
    g_ppid = getppid();
    test_rw_rx();
    test_rwx();
    test_remap();
    test_args();
    test_branch_into_site();
    test_numbers();
    return finish();
}
