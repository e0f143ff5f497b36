/*
 * t_raw_clone: a thread made by a raw clone(2), for tests that must start
 * threads libc knows nothing of (no pthread, no TLS of its own: it shares
 * the parent's %fs).
 *
 * long t_raw_clone(flags, stack_top, ptid, ctid, fn, arg): the child runs
 * fn(arg) on the stack below stack_top and ends with a raw exit(2) of its
 * return value (this thread only). Returns what clone returned to the
 * parent (the child's tid, or -errno).
 */
#ifndef USERTRAP_TEST_RAW_CLONE_H
#define USERTRAP_TEST_RAW_CLONE_H

long t_raw_clone(unsigned long flags, void *stack_top, int *ptid, int *ctid, long (*fn)(void *), void *arg);

__asm__(".text\n"
        ".globl t_raw_clone\n"
        ".type t_raw_clone,@function\n"
        "t_raw_clone:\n"
        "    and $-16, %rsi\n"     /* the child's stack, aligned */
        "    sub $16, %rsi\n"
        "    mov %r8, 0(%rsi)\n"   /* fn, popped by the child */
        "    mov %r9, 8(%rsi)\n"   /* arg */
        "    mov %rcx, %r10\n"     /* ctid (clone's fourth argument) */
        "    xor %r8d, %r8d\n"     /* tls: unused */
        "    mov $56, %eax\n"      /* clone */
        "    syscall\n"
        "    test %rax, %rax\n"
        "    jnz 1f\n"             /* the parent returns the result */
        "    xor %ebp, %ebp\n"     /* the child: outermost frame */
        "    pop %rax\n"
        "    pop %rdi\n"
        "    call *%rax\n"
        "    mov %rax, %rdi\n"
        "    mov $60, %eax\n"      /* exit (this thread only) */
        "    syscall\n"
        "    ud2\n"
        "1:  ret\n"
        ".size t_raw_clone, .-t_raw_clone\n");

#endif
