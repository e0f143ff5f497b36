/*
 * usertrap-test: timeout=60
 *
 * Hard case: a seed site (`mov $nr,%eax; syscall`) in a function whose
 * earlier site was patched with another form first. glibc's start_thread is
 * such a function: its `mov $14,%eax; lea ...,%rsi; syscall` (Form R) runs
 * before its `mov $14,%eax; syscall` and `mov $334,%eax; syscall` (seeds).
 *
 * Why it is hard: the seed's proof decodes forward from the function start.
 * Over the live bytes it meets the rewritten range (a jump and invalid-opcode
 * filler) and must decode the original instructions there instead, as the
 * other forms' proofs do; otherwise every later site of the function stays on
 * the slow path for good.
 *
 * two_sites() runs getppid through a Form R range (`mov $110,%eax; mov
 * %rdi,%rsi; syscall`), then getuid through a seed (`mov $102,%eax;
 * syscall`). The report of the traced run says whether the seed was patched
 * (tests/patching.rs); natively and traced the output is the same.
 */
#include "common.h"

long two_sites(long dummy);

__asm__(".text\n"
        ".p2align 4\n"
        ".globl two_sites\n"
        ".type two_sites,@function\n"
        "two_sites:\n"
        ".cfi_startproc\n"
        "    push %rbx\n"
        ".cfi_adjust_cfa_offset 8\n"
        "    mov $110, %eax\n" /* getppid: Form R (the mov and the mov after it relocated) */
        "    mov %rdi, %rsi\n"
        "    syscall\n"
        "    mov %rax, %rbx\n"
        "    mov $102, %eax\n" /* getuid: the seed */
        "    syscall\n"
        "    add %rbx, %rax\n"
        "    pop %rbx\n"
        ".cfi_adjust_cfa_offset -8\n"
        "    ret\n"
        ".cfi_endproc\n"
        ".size two_sites, .-two_sites\n");

#define CALLS 1000

int main(void)
{
    long expected = (long)getppid() + (long)getuid();
    for (int i = 0; i < CALLS; i++)
        EXPECT_EQ("getppid + getuid", two_sites(0), expected);
    if (t_failure_count() == 0)
        say("seed_after_form: ok\n");
    return t_failure_count() != 0;
}
