/*
 * Hard case: a program that places memory at fixed low addresses once the
 * library has patched sites (emulators, JITs, some allocators; LTP munmap04).
 *
 * Why it is hard: the library's slot windows must live below 2 GiB (patched
 * sites jump through a 32-bit absolute address). They used to start at
 * 0x10060000, and every MAP_FIXED_NOREPLACE request touching one got EINVAL
 * from the library's guard, where the kernel would map the range (it was
 * free) or, on a real overlap, say EEXIST. LTP munmap04 maps 3-page regions
 * with MAP_FIXED_NOREPLACE in a loop, skips on EEXIST, and stops at any other
 * error: it stopped after 16 regions.
 *
 * What it checks, after a patchable site ran a few times (so a window
 * exists when patching is on):
 *   - a 1 GiB MAP_FIXED_NOREPLACE mapping at 0x10000000 succeeds (it does
 *     natively: the range is free in this program);
 *   - MAP_FIXED_NOREPLACE regions of 1 MiB over the whole range
 *     0x10000000-0x80000000: every one that fails fails with EEXIST (an
 *     overlap), never with another errno;
 *   - MAP_FIXED_NOREPLACE over a mapping of the program's own: EEXIST.
 */
#include "common.h"

#include <sys/mman.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

__attribute__((noinline)) static long site_getppid(void)
{
    long ret;
    __asm__ volatile("mov $110, %%eax\n\tsyscall" : "=a"(ret) : : "rcx", "r11", "memory");
    return ret;
}

int main(void)
{
    const int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE;
    pid_t ppid = getppid();
    for (int i = 0; i < 10; i++)
        EXPECT_EQ("getppid through a patchable site", site_getppid(), ppid);

    int s = section_begin();
    void *want = (void *)0x10000000UL;
    void *p = mmap(want, 1UL << 30, PROT_NONE, flags, -1, 0);
    if (p == MAP_FAILED)
        FAILF("1 GiB MAP_FIXED_NOREPLACE at 0x10000000 failed (errno %d)", errno);
    else {
        EXPECT("mapped where asked", p == want);
        EXPECT_EQ("munmap 1 GiB", munmap(p, 1UL << 30), 0);
    }
    section_end(s, "1 GiB at 0x10000000");

    s = section_begin();
    int other = 0;
    for (unsigned long a = 0x10000000UL; a < 0x80000000UL; a += 1UL << 20) {
        void *q = mmap((void *)a, 1UL << 20, PROT_NONE, flags, -1, 0);
        if (q == MAP_FAILED) {
            if (errno != EEXIST && other++ < 5)
                FAILF("MAP_FIXED_NOREPLACE at %#lx: errno %d (an overlap is EEXIST)", a, errno);
            continue;
        }
        if (q != (void *)a)
            FAILF("MAP_FIXED_NOREPLACE at %#lx mapped at %p", a, q);
        munmap(q, 1UL << 20);
    }
    section_end(s, "1 MiB regions from 0x10000000 to 2 GiB: mapped or EEXIST");

    s = section_begin();
    char *mine = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(mine != MAP_FAILED, "a mapping of our own");
    void *r = mmap(mine + 4096, 4096, PROT_READ, flags, -1, 0);
    EXPECT("NOREPLACE over our own mapping fails", r == MAP_FAILED);
    EXPECT_EQ("... with EEXIST", errno, EEXIST);
    munmap(mine, 3 * 4096);
    section_end(s, "MAP_FIXED_NOREPLACE over an existing mapping: EEXIST");
    return finish();
}
