// usertrap-test: unsupported
/*
 * Hard case: calls that change mappings, aimed at the interposer's own
 * memory: the gate (a fixed address, 0x7e9000000000), the slot windows
 * (0x7f060000 now, 0x10060000 before), the calling thread's area (its state
 * and signal stack; found through the GS base, where FSGSBASE lets a program
 * read it).
 *
 * Why it is hard: munmap/mprotect/mremap/mmap(MAP_FIXED) of them were
 * refused, but madvise(MADV_DONTNEED) (the gate's code becomes zeros),
 * MADV_DONTFORK / MADV_WIPEONFORK (a fork child without its gate or with
 * empty slots), pkey_mprotect (slots made writable), shmat(SHM_REMAP) (a
 * shared segment in place of the gate), munmap/madvise of the thread's area
 * crashed the program silently.
 *
 * Natively there is nothing at those addresses (or GS base 0): every call
 * fails or maps harmlessly, and the program goes on. Under the library each
 * must be refused with a `usertrap:` line (the harness checks it), and the
 * program must keep working: syscalls, a fork child, a patched site.
 */
#include "common.h"

#include <sys/auxv.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>

#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif

#define GATE 0x7e9000000000UL
static const unsigned long windows[] = { 0x7f060000UL, 0x10060000UL };

__attribute__((noinline)) static long site_getppid(void)
{
    long ret;
    __asm__ volatile("mov $110, %%eax\n\tsyscall" : "=a"(ret) : : "rcx", "r11", "memory");
    return ret;
}

static pid_t g_ppid;

/* The program still works: a patched site, plain syscalls, a fork child
 * that makes syscalls. */
static void still_working(const char *after)
{
    for (int i = 0; i < 5; i++)
        if (site_getppid() != g_ppid)
            FAILF("after %s: getppid through the patched site", after);
    if (getpid() <= 0)
        FAILF("after %s: getpid", after);
    pid_t pid = fork();
    if (pid == 0) {
        _exit(site_getppid() == getppid() && getpid() > 0 ? 0 : 3);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        FAILF("after %s: fork child failed (status %#x)", after, st);
}

int main(void)
{
    g_ppid = getppid();
    still_working("start"); /* patches the site: a slot window exists */

    int s = section_begin();
    madvise((void *)GATE, 4096, MADV_DONTNEED);
    still_working("madvise(gate, MADV_DONTNEED)");
    madvise((void *)GATE, 4096, MADV_DONTFORK);
    still_working("madvise(gate, MADV_DONTFORK)");
    for (unsigned i = 0; i < sizeof windows / sizeof windows[0]; i++) {
        madvise((void *)windows[i], 65536, MADV_WIPEONFORK);
        still_working("madvise(window, MADV_WIPEONFORK)");
        madvise((void *)windows[i], 65536, MADV_DONTNEED);
        still_working("madvise(window, MADV_DONTNEED)");
        if (syscall(SYS_pkey_mprotect, windows[i], 65536, PROT_READ | PROT_WRITE, -1) == 0)
            FAILF("pkey_mprotect made %#lx writable", windows[i]);
        still_working("pkey_mprotect(window)");
    }
    int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    REQUIRE(id >= 0, "shmget");
    void *p = shmat(id, (void *)GATE, SHM_REMAP);
    if (p != (void *)-1)
        shmdt(p); /* natively: nothing was there */
    shmctl(id, IPC_RMID, NULL);
    still_working("shmat(gate, SHM_REMAP)");

    if (getauxval(AT_HWCAP2) & 2) { /* FSGSBASE */
        unsigned long gs;
        __asm__ volatile("rdgsbase %0" : "=r"(gs));
        if (gs != 0) {
            madvise((void *)gs, 4096, MADV_DONTNEED);
            still_working("madvise(thread area, MADV_DONTNEED)");
            mprotect((void *)gs, 4096, PROT_NONE);
            still_working("mprotect(thread area, PROT_NONE)");
            munmap((void *)gs, 8192);
            still_working("munmap(thread area)");
        }
    }
    section_end(s, "calls on the library's memory: the program goes on");
    return finish();
}
