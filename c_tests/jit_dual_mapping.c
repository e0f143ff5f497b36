/*
 * Hard case: JIT code written through one mapping and executed through
 * another (the W^X "double mapping" used by .NET, Firefox, V8 on some
 * platforms): a memfd mapped twice, read-write and read-execute.
 *
 * Why it is hard for a syscall interposer: the code page never becomes
 * writable, no mprotect happens, and the writes go to a different virtual
 * address; a trap-then-patch interposer that patches the executable view
 * also changes the writable view (same physical page), and the program's
 * next update of only the immediate bytes lands in the middle of the
 * interposer's jump.  Without patching, a stale per-address cache of the
 * syscall number runs the wrong syscall.
 *
 * What it checks: `mov $39,%eax; syscall; ret` written through the RW view,
 * called 500 times through the RX view; then the imm32 flipped through the
 * RW view 20 times (getpid/getppid) with 100 calls after each flip; then a
 * whole-site rewrite to gettid; results compared every call.
 */
#include "common.h"

#include <sys/mman.h>

typedef long (*fn0)(void);

static int calls(fn0 f, int n, long want)
{
    int bad = 0;
    for (int i = 0; i < n; i++)
        if (f() != want)
            bad++;
    return bad;
}

int main(void)
{
    long page = sysconf(_SC_PAGESIZE);
    int fd = memfd_create("usertrap-jit", MFD_CLOEXEC);
    REQUIRE(fd >= 0, "memfd_create");
    REQUIRE(ftruncate(fd, page) == 0, "ftruncate");
    unsigned char *w = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    unsigned char *x = mmap(NULL, (size_t)page, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0);
    REQUIRE(w != MAP_FAILED && x != MAP_FAILED, "mmap views");
    pid_t pid = getpid(), ppid = getppid(), tid = gettid();

    int s = section_begin();
    static const unsigned char code[] = { 0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xc3 };
    memcpy(w, code, sizeof code);
    fn0 f = (fn0)(void *)x;
    EXPECT_EQ("getpid through the RX view x500", calls(f, 500, pid), 0);
    for (int round = 0; round < 20; round++) {
        uint32_t nr = (round % 2 == 0) ? SYS_getppid : SYS_getpid;
        memcpy(w + 1, &nr, 4);
        int bad = calls(f, 100, (round % 2 == 0) ? ppid : pid);
        if (bad)
            FAILF("flip %d: %d wrong results", round, bad);
    }
    static const unsigned char code2[] = { 0xb8, 186, 0, 0, 0, 0x0f, 0x05, 0xc3 };
    memcpy(w, code2, sizeof code2);
    EXPECT_EQ("whole site rewritten to gettid", calls(f, 100, tid), 0);
    EXPECT("RW view still shows the program's bytes", memcmp(w, code2, sizeof code2) == 0);
    section_end(s, "double-mapped JIT page: written via RW view, run via RX view");
    munmap(w, (size_t)page);
    munmap(x, (size_t)page);
    close(fd);
    return finish();
}
