/*
 * Hard case: the values the kernel leaves in rcx and r11 after `syscall`.
 *
 * Why it is hard for a syscall interposer: the `syscall` instruction puts
 * the return address in rcx and RFLAGS in r11, and the kernel returns with
 * them intact, so natively rcx == the address of the instruction after the
 * `syscall` and r11 == the flags.  The syscall ABI says these two registers
 * are clobbered, and a trampoline may well leave other values there; but
 * some code (hand-written asm, JITs, the vDSO fallback paths of emulators)
 * reads them, and an interposer that wants to be invisible must set them as
 * the kernel does.  Kept separate from registers.c so a failure here is
 * clearly this (debatable) property and nothing else.
 *
 * What it checks: for a patchable `mov $110,%eax; syscall` site and for a
 * site whose number comes from memory, with random arithmetic flags and
 * direction flag (DF), 200 times each: the flags come back as they were,
 * rcx == address right after the syscall instruction, r11's
 * arithmetic/direction flags equal the flags after the syscall, and r11 has
 * the always-one bit 1 and IF set.
 */
#include "common.h"

struct rcx_r11 {
    uint64_t flags_in;  /* 0 */
    uint64_t nr;        /* 8 */
    uint64_t rcx;       /* 16 */
    uint64_t r11;       /* 24 */
    uint64_t after;     /* 32: address after the syscall */
    uint64_t flags_out; /* 40 */
    uint64_t rax;       /* 48 */
};

/* void NAME(struct rcx_r11 *p) */
#define RCXTEST(NAME, SETNR)                                                   \
    ".globl " NAME "\n.type " NAME ",@function\n" NAME ":\n"                   \
    "    push %rbx\n"                                                          \
    "    mov %rdi, %rbx\n"                                                     \
    "    lea 1f(%rip), %rax\n"                                                 \
    "    mov %rax, 32(%rbx)\n"                                                 \
    "    lea -512(%rsp), %rsp\n"                                               \
    "    pushfq\n"                                                             \
    "    pop %rax\n"                                                           \
    "    and $~0xcd5, %rax\n"                                                  \
    "    mov 0(%rbx), %rcx\n"                                                  \
    "    and $0xcd5, %rcx\n"                                                   \
    "    or %rcx, %rax\n"                                                      \
    "    mov 8(%rbx), %rdx\n"                                                  \
    "    push %rax\n"                                                          \
    "    popfq\n"                                                              \
    "    mov $0x1111, %ecx\n"                                                  \
    "    mov $0x2222, %r11d\n"                                                 \
    SETNR                                                                      \
    "    syscall\n"                                                            \
    "1:  pushfq\n"                                                             \
    "    pop 40(%rbx)\n"                                                       \
    "    cld\n" /* the C code after us needs DF clear */                      \
    "    mov %rcx, 16(%rbx)\n"                                                 \
    "    mov %r11, 24(%rbx)\n"                                                 \
    "    mov %rax, 48(%rbx)\n"                                                 \
    "    lea 512(%rsp), %rsp\n"                                                \
    "    pop %rbx\n"                                                           \
    "    ret\n"                                                                \
    ".size " NAME ", .-" NAME "\n"

__asm__(".text\n"
        RCXTEST("rr_getppid", "    mov $110, %eax\n")
        RCXTEST("rr_generic", "    mov %edx, %eax\n"));

void rr_getppid(struct rcx_r11 *p);
void rr_generic(struct rcx_r11 *p);

static int check(const char *site, const struct rcx_r11 *p, long want)
{
    int before = t_failure_count();
    if ((long)p->rax != want)
        FAILF("%s: rax %ld vs %ld", site, (long)p->rax, want);
    if (p->rcx != p->after)
        FAILF("%s: rcx is not the address after the syscall", site);
    if ((p->r11 & 0xcd5) != (p->flags_out & 0xcd5))
        FAILF("%s: r11 0x%llx does not hold the flags 0x%llx", site,
              (unsigned long long)(p->r11 & 0xcd5), (unsigned long long)(p->flags_out & 0xcd5));
    if ((p->r11 & 0x202) != 0x202)
        FAILF("%s: r11 lacks bit 1 / IF", site);
    if ((p->flags_out & 0xcd5) != (p->flags_in & 0xcd5))
        FAILF("%s: flags not preserved", site);
    return t_failure_count() - before;
}

int main(void)
{
    long ppid = getppid();
    uint64_t seed = 0x243f6a8885a308d3ULL;
    int s = section_begin();
    int bad = 0;
    for (int i = 0; i < 200 && bad < 6; i++) {
        struct rcx_r11 p;
        memset(&p, 0, sizeof p);
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        p.flags_in = (seed >> 33) & 0xcd5;
        rr_getppid(&p);
        bad += check("mov $110,%eax; syscall", &p, ppid);
        memset(&p, 0, sizeof p);
        p.flags_in = (seed >> 17) & 0xcd5;
        p.nr = SYS_getppid;
        rr_generic(&p);
        bad += check("mov %edx,%eax; syscall", &p, ppid);
    }
    section_end(s, "rcx == return address and r11 == rflags after syscall");
    return finish();
}
