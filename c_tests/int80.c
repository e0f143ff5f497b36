/*
 * Hard case: 32-bit system calls (`int $0x80`) made from 64-bit code.
 *
 * Why it is hard for a syscall interposer: int $0x80 enters the kernel's
 * i386 syscall table with i386 numbers and arguments in ebx/ecx/edx/esi/
 * edi/ebp; seccomp reports it with arch AUDIT_ARCH_I386 (Syscall User
 * Dispatch also traps it).  An interposer that treats every trap as an
 * x86-64 syscall runs the wrong call (i386 20 is getpid, x86-64 20 is
 * writev), and one whose filter kills or mishandles foreign arches breaks
 * programs (old JITs, Wine, tests, exploits-checkers) that do this.  The
 * trap cannot be fixed up by patching (`cd 80` is 2 bytes).
 *
 * What it checks: i386 getpid (20), getppid (64) and write (4) of a buffer
 * below 4 GiB (MAP_32BIT) to a pipe, an invalid i386 number (ENOSYS), and
 * that r8-r15 survive int $0x80 (preserved natively since Linux 4.17).
 * When the kernel has no IA-32 emulation the program prints the same
 * "unavailable" line in both runs.
 */
#include "common.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>

static long int80(long nr, long b, long c, long d)
{
    long ret;
    __asm__ volatile("int $0x80"
                     : "=a"(ret)
                     : "a"(nr), "b"(b), "c"(c), "d"(d)
                     : "memory");
    return ret;
}

/* r8-r15 loaded with known values around int $0x80 (getpid); returns the
 * number of registers that changed. */
static int int80_regs(void)
{
    int changed;
    __asm__ volatile("movabs $0x0808080808080808, %%r8\n\t"
                     "movabs $0x0909090909090909, %%r9\n\t"
                     "movabs $0x1010101010101010, %%r10\n\t"
                     "movabs $0x1111111111111111, %%r11\n\t"
                     "movabs $0x1212121212121212, %%r12\n\t"
                     "movabs $0x1313131313131313, %%r13\n\t"
                     "movabs $0x1414141414141414, %%r14\n\t"
                     "movabs $0x1515151515151515, %%r15\n\t"
                     "mov $20, %%eax\n\t"
                     "int $0x80\n\t"
                     "xor %%eax, %%eax\n\t"
                     "movabs $0x0808080808080808, %%rdx\n\t"
                     "cmp %%rdx, %%r8\n\t"
                     "setne %%dl\n\t"
                     "movzbl %%dl, %%edx\n\t"
                     "add %%edx, %%eax\n\t"
                     "movabs $0x0909090909090909, %%rdx\n\t"
                     "cmp %%rdx, %%r9\n\t"
                     "setne %%dl\n\t"
                     "movzbl %%dl, %%edx\n\t"
                     "add %%edx, %%eax\n\t"
                     "movabs $0x1010101010101010, %%rdx\n\t"
                     "cmp %%rdx, %%r10\n\t"
                     "setne %%dl\n\t"
                     "movzbl %%dl, %%edx\n\t"
                     "add %%edx, %%eax\n\t"
                     "movabs $0x1111111111111111, %%rdx\n\t"
                     "cmp %%rdx, %%r11\n\t"
                     "setne %%dl\n\t"
                     "movzbl %%dl, %%edx\n\t"
                     "add %%edx, %%eax\n\t"
                     "movabs $0x1212121212121212, %%rdx\n\t"
                     "cmp %%rdx, %%r12\n\t"
                     "setne %%dl\n\t"
                     "movzbl %%dl, %%edx\n\t"
                     "add %%edx, %%eax\n\t"
                     "movabs $0x1313131313131313, %%rdx\n\t"
                     "cmp %%rdx, %%r13\n\t"
                     "setne %%dl\n\t"
                     "movzbl %%dl, %%edx\n\t"
                     "add %%edx, %%eax\n\t"
                     "movabs $0x1414141414141414, %%rdx\n\t"
                     "cmp %%rdx, %%r14\n\t"
                     "setne %%dl\n\t"
                     "movzbl %%dl, %%edx\n\t"
                     "add %%edx, %%eax\n\t"
                     "movabs $0x1515151515151515, %%rdx\n\t"
                     "cmp %%rdx, %%r15\n\t"
                     "setne %%dl\n\t"
                     "movzbl %%dl, %%edx\n\t"
                     "add %%edx, %%eax\n\t"
                     : "=a"(changed)
                     :
                     : "rdx", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "memory", "cc");
    return changed;
}

int main(void)
{
    /* Probe in a child first: without IA-32 emulation int $0x80 is SIGSEGV.
     * (A wrong result is not "unavailable": the checks below report it.) */
    pid_t pid = fork();
    if (pid == 0) {
        (void)int80(20, 0, 0, 0);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV) {
        say("int80: IA-32 emulation unavailable on this kernel\n");
        return 0;
    }
    EXPECT("int $0x80 probe child exited normally", WIFEXITED(st) && WEXITSTATUS(st) == 0);

    int s = section_begin();
    EXPECT_EQ("i386 getpid (20)", int80(20, 0, 0, 0), getpid());
    EXPECT_EQ("i386 getppid (64)", int80(64, 0, 0, 0), getppid());
    char *buf = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    REQUIRE(buf != MAP_FAILED && (uintptr_t)buf < 0x100000000ULL, "MAP_32BIT buffer");
    int p[2];
    REQUIRE(pipe2(p, O_NONBLOCK) == 0, "pipe"); /* a failed write must not hang the read */
    int bad = 0;
    for (int i = 0; i < 200; i++) {
        int n = snprintf(buf, 64, "int80 write %d", i);
        if (int80(4, p[1], (long)(uintptr_t)buf, n) != n)
            bad++;
        char in[64];
        if (read(p[0], in, (size_t)n) != n || memcmp(in, buf, (size_t)n) != 0)
            bad++;
    }
    EXPECT_EQ("i386 write (4) x200", bad, 0);
    EXPECT_EQ("i386 write to a bad fd", int80(4, -1, (long)(uintptr_t)buf, 1), -EBADF);
    EXPECT_EQ("invalid i386 number", int80(0xffff, 0, 0, 0), -ENOSYS);
    EXPECT_EQ("r8-r15 preserved across int $0x80", int80_regs(), 0);
    close(p[0]);
    close(p[1]);
    section_end(s, "int80: i386 getpid/getppid/write, ENOSYS, r8-r15 preserved");
    return finish();
}
