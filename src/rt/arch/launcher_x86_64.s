# usertrap-launcher: the assembly only the launcher links (see src/launch).
# The launcher is a static executable without libc: its entry point, the
# jump into the program it loaded, and the four memory functions the
# compiler emits calls to live here.

# --- ut_launcher_start: the kernel's entry point ------------------------------
# The kernel starts us with rsp at argc (then argv, envp, auxv) and every
# other register meaningless. Our own gate is already mapped (it is a
# segment of this file), so Rust code may make syscalls from the first line.
# The launcher runs on a stack of its own (ut_launcher_stack, below): the
# kernel's stack is the program's, which must find it as a native exec
# leaves it, all but the strings free (RLIMIT_STACK may make it small).
    .text
    .globl ut_launcher_start
    .type ut_launcher_start, @function
ut_launcher_start:
    xor %ebp, %ebp              # the outermost frame, for debuggers
    mov %rsp, %rdi              # argument: the initial stack
    lea ut_launcher_stack_top(%rip), %rsp # our own stack (16-aligned)
    call ut_launcher_main       # never returns
    ud2
    .size ut_launcher_start, .-ut_launcher_start

# --- ut_launcher_jump(block, words, entry, top) -> ! ---------------------------
# Copy the program's initial stack block (argc, argv, envp, auxv: `words`
# 8-byte words at `block`) onto the kernel's stack, ending at `top` (where
# the kernel's own block ended, below the strings), point rsp at it and
# jump to `entry` with the registers as the kernel leaves them (rdx = 0: no
# function for atexit). The stack below is the program's, untouched.
    .globl ut_launcher_jump
    .hidden ut_launcher_jump
    .type ut_launcher_jump, @function
ut_launcher_jump:
    mov %rdx, %r11              # the entry point
    lea (,%rsi,8), %rax         # block size in bytes
    mov %rcx, %rdx              # the end of the kernel's block
    sub %rax, %rdx              # room for ours below it
    and $-16, %rdx              # the program's rsp: 16-aligned, argc at (%rsp)
    mov %rsi, %rcx              # word count for rep movsq
    mov %rdi, %rsi              # source: the block
    mov %rdx, %rdi              # destination: the new stack top
    cld
    rep movsq                   # copy the block
    mov %rdx, %rsp              # switch to the program's stack
    xor %eax, %eax              # clear what the program could read
    xor %ebx, %ebx
    xor %ecx, %ecx
    xor %edx, %edx              # rdx = 0: no atexit function (x86-64 ABI)
    xor %esi, %esi
    xor %edi, %edi
    xor %ebp, %ebp
    xor %r8d, %r8d
    xor %r9d, %r9d
    xor %r10d, %r10d
    xor %r12d, %r12d
    xor %r13d, %r13d
    xor %r14d, %r14d
    xor %r15d, %r15d
    jmp *%r11                   # the program's (or its loader's) entry
    .size ut_launcher_jump, .-ut_launcher_jump

# --- the launcher's own stack ----------------------------------------------------
# 1 MiB in .bss (touched pages only); its lowest page is made PROT_NONE by
# ut_launcher_main, a guard against overflowing into other data.
    .bss
    .balign 4096
    .globl ut_launcher_stack
    .hidden ut_launcher_stack
ut_launcher_stack:
    .skip 1048576               # the stack's pages
ut_launcher_stack_top:          # its top: rsp starts here
    .text

# --- memory functions (no libc here) -------------------------------------------
# memcpy(dst, src, n) -> dst
    .globl memcpy
    .type memcpy, @function
memcpy:
    mov %rdi, %rax              # return dst
    mov %rdx, %rcx              # count
    cld
    rep movsb                   # byte copy, fast on every CPU with ERMSB
    ret
    .size memcpy, .-memcpy

# memmove(dst, src, n) -> dst: forwards unless dst overlaps src from above
    .globl memmove
    .type memmove, @function
memmove:
    mov %rdi, %rax              # return dst
    mov %rdx, %rcx              # count
    cmp %rsi, %rdi
    jbe 1f                      # dst <= src: a forward copy is safe
    lea -1(%rsi,%rdx), %rsi     # else copy backwards from the last byte
    lea -1(%rdi,%rdx), %rdi
    std
    rep movsb
    cld                         # the ABI wants DF clear
    ret
1:  cld
    rep movsb
    ret
    .size memmove, .-memmove

# memset(dst, byte, n) -> dst
    .globl memset
    .type memset, @function
memset:
    mov %rdi, %r9               # keep dst to return it
    mov %esi, %eax              # the byte
    mov %rdx, %rcx              # count
    cld
    rep stosb
    mov %r9, %rax
    ret
    .size memset, .-memset

# memcmp(a, b, n) / bcmp(a, b, n) -> <0, 0, >0
    .globl memcmp
    .type memcmp, @function
    .globl bcmp
    .type bcmp, @function
memcmp:
bcmp:
    xor %eax, %eax
    test %rdx, %rdx
    jz 2f                       # n == 0: equal
1:  movzbl (%rdi), %eax         # byte of a
    movzbl (%rsi), %ecx         # byte of b
    sub %ecx, %eax              # their difference
    jnz 2f                      # first difference decides
    inc %rdi
    inc %rsi
    dec %rdx
    jnz 1b
2:  ret
    .size memcmp, .-memcmp

# strlen(s) -> length
    .globl strlen
    .type strlen, @function
strlen:
    mov %rdi, %rax
1:  cmpb $0, (%rax)             # at the NUL?
    je 2f
    inc %rax
    jmp 1b
2:  sub %rdi, %rax              # length = end - start
    ret
    .size strlen, .-strlen
