/*
 * Hard case: more syscall sites than one trap-table window holds.
 *
 * Why it is hard for a trap-then-patch interposer: every patched site needs
 * its own 8-byte slot below 2 GiB (bits 16-23 = 0x06) and its own
 * trampoline; one 64 KiB window holds 8192 slots, so the table must grow into
 * further windows without ever replacing a mapping of the program.
 *
 * What it checks: 10,000 distinct functions, each with its own inline
 * `mov $110,%eax; syscall` (getppid), are each called three times and return
 * the parent's pid every time.
 */
#include "common.h"

#define SITE(n)                                                                         \
    __attribute__((noinline)) static long site_##n(void)                               \
    {                                                                                   \
        long r;                                                                         \
        __asm__ volatile("mov $110, %%eax\n\tsyscall" : "=a"(r) : : "rcx", "r11", "memory"); \
        return r;                                                                       \
    }
/* Four levels of ten, each its own macro (a macro cannot expand itself). */
#define XA(m, p) m(p##0) m(p##1) m(p##2) m(p##3) m(p##4) m(p##5) m(p##6) m(p##7) m(p##8) m(p##9)
#define XB(m, p) XA(m, p##0) XA(m, p##1) XA(m, p##2) XA(m, p##3) XA(m, p##4) \
                 XA(m, p##5) XA(m, p##6) XA(m, p##7) XA(m, p##8) XA(m, p##9)
#define XC(m, p) XB(m, p##0) XB(m, p##1) XB(m, p##2) XB(m, p##3) XB(m, p##4) \
                 XB(m, p##5) XB(m, p##6) XB(m, p##7) XB(m, p##8) XB(m, p##9)
#define XD(m, p) XC(m, p##0) XC(m, p##1) XC(m, p##2) XC(m, p##3) XC(m, p##4) \
                 XC(m, p##5) XC(m, p##6) XC(m, p##7) XC(m, p##8) XC(m, p##9)
XD(SITE, 1) /* site_10000 .. site_19999 */

#define REF(n) site_##n,
static long (*const g_sites[])(void) = { XD(REF, 1) };

int main(void)
{
    long ppid = getppid();
    size_t n = sizeof g_sites / sizeof g_sites[0];
    long bad = 0;
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < n; i++)
            if (g_sites[i]() != ppid)
                bad++;
    if (bad)
        say("FAIL: %ld of %zu calls returned the wrong value\n", bad, 3 * n);
    else
        say("many sites: %zu distinct sites called 3 times each: ok\n", n);
    return bad != 0;
}
