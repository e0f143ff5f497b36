/*
 * Hard case: code at a patched site that changes after it was patched.
 *
 * Why it is hard for a trap-then-patch interposer: a patched site's 7 bytes
 * are the library's jump, and the library keeps a registry of its sites to
 * recognise faults there. When the program rewrites or replaces that code,
 * both become stale:
 *   1. inline cache: a JIT (here: the program's own text, made writable with
 *      mprotect) rewrites only the immediate of `mov $nr,%eax; syscall`.
 *      Over the library's jump those 4 bytes make garbage; the fault used to
 *      be taken for the library's and the stale syscall run (getpid instead
 *      of getppid);
 *   2. unmapped and replaced: code mapped, run (patched), unmapped, and
 *      other code mapped at the same address. A real SIGSEGV of the new code
 *      at the old site's address used to be swallowed and the old site's
 *      syscall run instead.
 *
 * What it checks: natively and under the library, (1) the rewritten site
 * returns getppid, and writing it back returns getpid again; (2) the new
 * code's fault reaches the program's SIGSEGV handler, and code mapped at the
 * same address again runs its own syscall.
 */
#include "common.h"

#include <fcntl.h>
#include <setjmp.h>
#include <sys/mman.h>
#include <sys/stat.h>

/* A function of its own, with unwind info (so the library may patch it):
 * mov $39,%eax (getpid); syscall; ret. ic_imm is the immediate. */
__asm__(".text\n"
        ".globl ic_fn\n"
        ".type ic_fn,@function\n"
        "ic_fn:\n"
        ".cfi_startproc\n"
        "    .byte 0xb8\n"
        ".globl ic_imm\n"
        "ic_imm:\n"
        "    .long 39\n"
        "    syscall\n"
        "    ret\n"
        ".cfi_endproc\n"
        ".size ic_fn, .-ic_fn\n");
extern long ic_fn(void);
extern char ic_imm[];
extern char __ehdr_start[];

static void set_imm(uint32_t nr)
{
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t start = (uintptr_t)ic_imm & ~(uintptr_t)(pg - 1);
    size_t len = ((uintptr_t)ic_imm + 4 - start + pg - 1) & ~(size_t)(pg - 1);
    REQUIRE(mprotect((void *)start, len, PROT_READ | PROT_WRITE | PROT_EXEC) == 0, "mprotect RWX");
    memcpy(ic_imm, &nr, 4);
    REQUIRE(mprotect((void *)start, len, PROT_READ | PROT_EXEC) == 0, "mprotect RX");
}

static void inline_cache(void)
{
    int s = section_begin();
    pid_t pid = getpid(), ppid = getppid();
    for (int i = 0; i < 5; i++)
        EXPECT_EQ("site as compiled: getpid", ic_fn(), pid);
    set_imm(110);
    for (int i = 0; i < 5; i++)
        EXPECT_EQ("immediate rewritten to getppid", ic_fn(), ppid);
    set_imm(39);
    for (int i = 0; i < 5; i++)
        EXPECT_EQ("immediate back to getpid", ic_fn(), pid);
    section_end(s, "inline cache: a rewritten immediate runs the new syscall");
}

static sigjmp_buf g_jmp;
static volatile uintptr_t g_fault_rip;

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)si;
    g_fault_rip = ((ucontext_t *)ctx)->uc_mcontext.gregs[REG_RIP];
    siglongjmp(g_jmp, 1);
}

static void remapped(void)
{
    int s = section_begin();
    /* The whole executable file, mapped once more: an ELF object with unwind
     * tables in which ic_fn's site may be patched (as in a dlopen'd library). */
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0, "open /proc/self/exe");
    struct stat st;
    REQUIRE(fstat(fd, &st) == 0, "fstat");
    size_t len = ((size_t)st.st_size + 4095) & ~(size_t)4095;
    char *copy = mmap(NULL, len, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
    REQUIRE(copy != MAP_FAILED, "map the executable");
    uintptr_t off = (uintptr_t)ic_fn - (uintptr_t)__ehdr_start;
    long (*fn)(void) = (long (*)(void))(copy + off);
    pid_t pid = getpid();
    for (int i = 0; i < 5; i++)
        EXPECT_EQ("copy of the site: getpid", fn(), pid);

    /* "dlclose": unmap; another object at the same address. */
    REQUIRE(munmap(copy, len) == 0, "munmap");
    char *other = mmap(copy, len, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    REQUIRE(other == copy, "map other code at the same address");
    /* hlt at the old site: a fault in user mode (SIGSEGV), natively. */
    memset(other + off, 0xf4, 8);
    other[off + 8] = (char)0xc3;

    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    REQUIRE(sigaction(SIGSEGV, &sa, &old) == 0, "sigaction");
    g_fault_rip = 0;
    if (sigsetjmp(g_jmp, 1) == 0) {
        fn();
        FAILF("the new code's hlt did not fault (a stale syscall ran?)");
    }
    EXPECT("SIGSEGV at the new code's first byte", g_fault_rip == (uintptr_t)(copy + off));
    sigaction(SIGSEGV, &old, NULL);
    munmap(other, len);

    /* And the same file mapped there again runs its own syscall. */
    char *again = mmap(copy, len, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_FIXED_NOREPLACE, fd, 0);
    REQUIRE(again == copy, "map the executable again at the same address");
    for (int i = 0; i < 5; i++)
        EXPECT_EQ("mapped again: getpid", fn(), pid);
    munmap(again, len);
    close(fd);
    section_end(s, "unmapped and replaced: the new code's own fault, the new code's own syscall");
}

int main(void)
{
    inline_cache();
    remapped();
    return finish();
}
