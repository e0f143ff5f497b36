# usertrap: every line of assembly in the library lives in this file.
#
# Two kinds of code are here:
#  1. The gate image (ut_gate_image .. ut_gate_image_end). It is never run where
#     the linker put it: the constructor copies it to GATE_ADDR, a fixed address
#     that is the same in every process, and the trap backends exempt exactly that
#     range. So it must be position independent and reach data only through
#     rip-relative slots inside the image (filled in before the copy is made
#     read-only) or through %gs (the per-thread area).
#  2. Helpers that stay in the library's text: the typed entry into the gate, the
#     clone child's first steps, sigreturn onto a chosen frame, fault-tolerant
#     copies, and the GS base accessors.
#
# Names in curly braces are constants filled in by global_asm! from Rust
# (src/arch/mod.rs), so every offset has one definition.

    .section .usertrap_gate,"ax",@progbits
    .balign 4096
    .globl ut_gate_image
    .hidden ut_gate_image
ut_gate_image:

# --- gate +0x000: the generic gate -------------------------------------------
# Entered by `call` from ut_syscall6 with the kernel's register convention
# already set up (rax = number, rdi, rsi, rdx, r10, r8, r9 = arguments).
    .globl ut_gate_syscall
    .hidden ut_gate_syscall
ut_gate_syscall:
    syscall                     # the only instruction most of our syscalls use
    ret                         # back to ut_syscall6, on the caller's stack

# --- gate restorer -----------------------------------------------------------
# sa_restorer of every handler we install (and of the program's own under SUD).
# The bytes are exactly glibc's __restore_rt (48 c7 c0 0f 00 00 00 0f 05):
# unwinders and debuggers recognise a signal frame by them.
    .org {off_restorer}          # fixed offsets: Rust knows them as GATE_OFF_*
    .globl ut_gate_restorer
    .hidden ut_gate_restorer
ut_gate_restorer:
    mov $15, %rax               # rt_sigreturn
    syscall                     # returns only if refused (the program's seccomp filter)
    jmp ut_gate_user_sigreturn  # then restore the frame at rsp without the kernel

# --- gate clone: clone/clone3 whose child must start on a stack of its own ----
# Called from ut_clone_with_frame. The parent returns normally; the child
# starts right after the syscall with rsp = its new stack and r12 = the frame
# the parent prepared below that stack, and leaves through the child slot.
    .org {off_clone}
    .globl ut_gate_clone
    .hidden ut_gate_clone
ut_gate_clone:
    syscall                     # clone/clone3 (rax = number, args as usual)
    test %rax, %rax             # 0 only in the child
    jz 1f
    ret                         # parent, or the call failed: back to ut_clone_with_frame
1:  jmp *ut_slot_child_entry(%rip)  # child: continue in ut_clone_child_entry

# --- gate vfork stub ---------------------------------------------------------
# vfork and clone(CLONE_VFORK) cannot run inside the SIGSYS handler (the child
# would share the handler's signal stack with its suspended parent). Instead the
# handler stores the return address in the thread area, points the saved rip
# here and returns: sigreturn restores every program register and the mask, and
# the syscall below runs exactly as the program issued it.
#
# Why this is safe on a stack shared with the child (Go's rawVforkSyscall pops
# its return address into a register first and pushes it back after, glibc's
# vfork does the same): the child runs first; it writes only below the red
# zone under the stack pointer the syscall ran with (S), where the parent keeps
# nothing live, and reads the return address from the parent's thread area,
# which it does not write (its own traps claim the area the handler set aside,
# see thread::current). The parent resumes only once the child has exec'd or
# exited, then rewrites the same words below S for itself. Nothing at or above
# S is touched by either. Registers and flags leave exactly as after a native
# syscall: rax the result, rcx the return address, r11 the flags.
    .org {off_vfork}
    .globl ut_gate_vfork
    .hidden ut_gate_vfork
ut_gate_vfork:
    syscall                     # vfork/clone with the program's own registers
    lea -128(%rsp), %rsp        # step over the red zone; lea leaves the flags alone
    pushfq                      # flags as the syscall left them
    test %rax, %rax             # 0 only in the child
    jz ut_gate_vfork_child      # child: its own signal stack and SUD first
ut_gate_vfork_resume:           # parent (or error), and the child once set up
    mov (%rsp), %r11            # r11 = rflags, as after a native syscall
    popfq                       # the flags as the syscall returned them
    lea 128(%rsp), %rsp         # back to the program's stack pointer
    mov %gs:{area_vfork_return}, %rcx   # rcx = return address, as after a native syscall
    jmp *%rcx                   # back into the program

# --- gate program syscall: the program's own syscall from the slow path -------
# Like the generic gate, but abortable. A program signal that arrives while
# the slow path runs is postponed until the slow path is done (delivery.rs):
# the program's syscall must then not start (a blocking call would wait for
# a wakeup that only the postponed handler can cause). So a waiting signal
# makes it return -ERESTARTNOINTR without entering the kernel, and a signal
# that arrives between the check and the `syscall`, or interrupts the call so
# that the kernel would restart it (rip back on the `syscall`), sends it to
# the abort exit as well (delivery::postpone): the slow path then rewinds the
# program onto its own `syscall`, which runs again after the handler, as it
# would natively.
    .org {off_program_syscall}
    .globl ut_gate_program_syscall
    .hidden ut_gate_program_syscall
ut_gate_program_syscall:
    cmpq $0, %gs:{area_postponed_len}   # a program signal waits for its handler?
    jne 1f                      #   then do not start the call
    .org {off_program_syscall_insn}, 0x90   # (nops up to the fixed offset)
    syscall                     # the program's syscall, with its arguments
    ret                         # back to ut_program_syscall6
    .org {off_program_syscall_abort}, 0x90
1:  mov $-513, %rax             # -ERESTARTNOINTR: restart after the handler
    ret

# --- gate int80: an i386 syscall (int $0x80) trapped by SUD, re-issued --------
# Called from ut_int80 with the i386 convention set up (eax, ebx, ecx, edx,
# esi, edi, ebp).
    .org {off_int80}
    .globl ut_gate_int80
ut_gate_int80:
    int $0x80                   # the 32-bit entry, from the exempt range
    ret

# --- data slots (written once by the constructor, then read-only) -------------
    .org {off_slots}
    .globl ut_slot_child_entry
    .hidden ut_slot_child_entry
ut_slot_child_entry:  .quad 0   # absolute address of ut_clone_child_entry
    .globl ut_slot_gate_base
    .hidden ut_slot_gate_base
ut_slot_gate_base:    .quad 0   # GATE_ADDR
    .globl ut_slot_gate_len
    .hidden ut_slot_gate_len
ut_slot_gate_len:     .quad 0   # GATE_LEN
    .globl ut_slot_selector
    .hidden ut_slot_selector
ut_slot_selector:     .quad 0   # address of the SUD selector byte
    .globl ut_slot_sud
    .hidden ut_slot_sud
ut_slot_sud:          .byte 0   # 1 when the SUD backend is armed
    .balign 8
    .globl ut_slot_fast_entry
    .hidden ut_slot_fast_entry
ut_slot_fast_entry:   .quad 0   # absolute address of the gate owner's ut_fast_entry

# --- gate vfork stub, the child's part ----------------------------------------
# Entered from ut_gate_vfork in the child only, on the parent's stack with the
# parent's GS base (so %gs: is still the parent's area, read-only here) and the
# flags pushed below the red zone. Two things the child does not inherit in a
# usable form:
#  - its signal stack: CLONE_VFORK keeps the parent's alternate stack, the
#    signal stack of the parent's area. The child switches to the one of the
#    area the handler set aside for it, so that its handlers can tell their
#    own stack (ThreadArea::on_own_stack) and never write the parent's. (Were
#    the kernel to refuse, the child would keep the parent's, on which the
#    parent, suspended here outside any handler, keeps nothing live.)
#  - Syscall User Dispatch, which is per thread and not inherited: armed again.
    .org {off_vfork_child}
    .globl ut_gate_vfork_child
    .hidden ut_gate_vfork_child
ut_gate_vfork_child:
    push %rdi                   # save the registers the syscalls below take
    push %rsi
    push %rdx
    push %r10
    push %r8
    mov $131, %eax              # sigaltstack
    mov %gs:{area_pending_child}, %rdi  # the area set aside for this child...
    add ${area_altstack}, %rdi  # ...and the stack_t of its signal stack
    xor %esi, %esi              # no old value wanted
    syscall                     # from the gate, not trapped; EPERM: see above
    cmpb $0, ut_slot_sud(%rip)  # SUD backend?
    je 1f                       #   no: seccomp's filter is inherited
    mov $157, %eax              # prctl
    mov $59, %edi               # PR_SET_SYSCALL_USER_DISPATCH
    mov $1, %esi                # PR_SYS_DISPATCH_ON
    mov ut_slot_gate_base(%rip), %rdx   # exempt range: the gate page
    mov ut_slot_gate_len(%rip), %r10
    mov ut_slot_selector(%rip), %r8     # the selector byte (always BLOCK)
    syscall                     # from the gate, so it is not dispatched itself
1:  pop %r8                     # restore the program's registers
    pop %r10
    pop %rdx
    pop %rsi
    pop %rdi
    xor %eax, %eax              # the child's vfork result is 0
    jmp ut_gate_vfork_resume    # flags, rcx, r11 and rsp as for the parent


# --- gate fast entry -------------------------------------------------------------
# Where the trampolines the launcher makes for the loader's sites jump
# (patch::install::patch_loader): the same address before and after the
# library takes over, since the library's gate replaces the launcher's in one
# mremap, and the slot then names the library's ut_fast_entry. No syscall here.
    .org {off_fast_entry}
    .globl ut_gate_fast_entry
    .hidden ut_gate_fast_entry
ut_gate_fast_entry:
    jmp *ut_slot_fast_entry(%rip)   # registers untouched: on to ut_fast_entry

# --- gate user sigreturn: rt_sigreturn without the kernel ---------------------
# Reached from the restorer when the program's own seccomp filter refused
# rt_sigreturn with an errno (emulate::own_filter). The frame whose ucontext
# is at rsp is restored as far as user space can, in the kernel's order:
# the FPU/vector state, the alternate stack, the signal mask (from the gate:
# the backends let both calls through), then the flags and every general
# register, rsp and rip. What the last steps need is first copied into a
# block below the target's red zone (where a signal frame may be built
# anyway), and rsp moved there: the frame's stack (often the library's
# signal stack, re-armed here) is no longer used once signals can arrive.
# The block's last word, the target's rip, lies 8 bytes below the red
# zone: `ret $128` pops it and steps back over the red zone. A signal that
# arrives from the switch onto the block to that ret is given the target's
# context by each library handler first (signals::delivery::
# finish_user_sigreturn, by the fixed offsets and block layout of
# rt/arch/mod.rs), as if the kernel had delivered it after the sigreturn.
    .org {off_user_sigreturn}
ut_gate_user_sigreturn:
    mov {uc_fpstate}(%rsp), %rdi    # the saved FPU state, or 0
    test %rdi, %rdi
    jz 2f                       #   none saved: leave the FPU as it is
    cmpl ${fp_xstate_magic1}, {fx_sw_magic1}(%rdi)  # xsave layout?
    jne 1f                      #   no: the legacy 512-byte fxsave area
    mov $-1, %eax               # every component the frame holds
    mov $-1, %edx
    xrstor64 (%rdi)             # 64-byte aligned by the kernel; read before
    jmp 2f                      #   the block below may overwrite it
1:  fxrstor64 (%rdi)            # x87 and SSE only
2:  mov {uc_rsp}(%rsp), %r11    # the target stack pointer...
    sub ${blk_size}, %r11       # ...less the block: r11 = the block
    mov {uc_sigmask}(%rsp), %rcx    # the mask first (without an FPU state
    mov %rcx, {blk_mask}(%r11)  #   the block may reach the frame's end)
    cld                         # (cleared for handlers anyway)
    lea {uc_r8}(%rsp), %rsi     # r8..rcx, 15 words...
    mov %r11, %rdi              # ...to the block's start
    mov $15, %ecx
    rep movsq
    mov {uc_eflags}(%rsp), %rcx # the flags
    mov %rcx, {blk_eflags}(%r11)
    mov {uc_stack}(%rsp), %rcx  # the alternate stack (a stack_t, 3 words)
    mov %rcx, {blk_stack}(%r11)
    mov {uc_stack}+8(%rsp), %rcx
    mov %rcx, {blk_stack}+8(%r11)
    mov {uc_stack}+16(%rsp), %rcx
    mov %rcx, {blk_stack}+16(%r11)
    mov {uc_rip}(%rsp), %rcx    # the target's rip, 8 bytes below its red zone
    mov %rcx, {blk_rip}(%r11)
    .org {off_user_sigreturn_switch}, 0x90
    mov %r11, %rsp              # onto the block: the frame is left behind
    mov $131, %eax              # sigaltstack
    lea {blk_stack}(%rsp), %rdi # the frame's (restore_altstack; errors ignored)
    xor %esi, %esi              # no old value wanted
    syscall
    mov $14, %eax               # rt_sigprocmask
    mov $2, %edi                # SIG_SETMASK
    lea {blk_mask}(%rsp), %rsi  # the frame's mask
    xor %edx, %edx              # no old mask wanted
    mov $8, %r10d               # sizeof(kernel sigset)
    syscall
    pushq {blk_eflags}(%rsp)    # the flags...
    popfq                       # ...now (mov and lea below leave them alone)
    mov 0(%rsp), %r8            # every general register but rsp
    mov 8(%rsp), %r9
    mov 16(%rsp), %r10
    mov 24(%rsp), %r11
    mov 32(%rsp), %r12
    mov 40(%rsp), %r13
    mov 48(%rsp), %r14
    mov 56(%rsp), %r15
    mov 64(%rsp), %rdi
    mov 72(%rsp), %rsi
    mov 80(%rsp), %rbp
    mov 88(%rsp), %rbx
    mov 96(%rsp), %rdx
    mov 104(%rsp), %rax
    mov 112(%rsp), %rcx
    .org {off_user_sigreturn_lea}, 0x90
    lea {blk_rip}(%rsp), %rsp   # onto the target's rip
    .org {off_user_sigreturn_ret}, 0x90
    ret $128                    # rip popped, rsp back to the target's
    .balign 4096
    .globl ut_gate_image_end
    .hidden ut_gate_image_end
ut_gate_image_end:

# The image's symbols as absolute 64-bit addresses, for Rust. In the
# launcher the image is linked at GATE_ADDR, out of reach of the 32-bit
# addresses (static code model) Rust would otherwise use to name them.
    .section .data.rel.ro.ut_gate_symbols,"aw",@progbits
    .balign 8
    .globl ut_gate_symbols
    .hidden ut_gate_symbols
ut_gate_symbols:                # order: GSYM_* in src/arch/mod.rs
    .quad ut_gate_image
    .quad ut_gate_image_end
    .quad ut_gate_syscall
    .quad ut_gate_restorer
    .quad ut_gate_clone
    .quad ut_gate_vfork
    .quad ut_gate_program_syscall
    .quad ut_gate_int80
    .quad ut_slot_child_entry
    .quad ut_slot_gate_base
    .quad ut_slot_gate_len
    .quad ut_slot_selector
    .quad ut_slot_sud
    .quad ut_gate_vfork_child
    .quad ut_gate_fast_entry
    .quad ut_slot_fast_entry

    .text

# --- ut_syscall6(nr, a1, a2, a3, a4, a5, a6) -> rax ---------------------------
# The System V call convention in, the kernel's out, through the gate at its
# fixed address (so seccomp and SUD let it pass).
# ut_program_syscall6: the same through the gate's abortable entry
# (ut_gate_program_syscall), for the program's own syscall on the slow path.
    .globl ut_syscall6
    .hidden ut_syscall6
    .type ut_syscall6, @function
ut_syscall6:
    movabs ${gate_syscall}, %r11    # the entry to call (r11: clobbered by syscall anyway)
    jmp 1f
    .size ut_syscall6, .-ut_syscall6
    .globl ut_program_syscall6
    .hidden ut_program_syscall6
    .type ut_program_syscall6, @function
ut_program_syscall6:
    movabs ${gate_program_syscall}, %r11
1:  mov %rdi, %rax              # syscall number
    mov %rsi, %rdi              # argument 1
    mov %rdx, %rsi              # argument 2
    mov %rcx, %rdx              # argument 3
    mov %r8, %r10               # argument 4 (the kernel takes it in r10)
    mov %r9, %r8                # argument 5
    mov 8(%rsp), %r9            # argument 6, from the stack (nothing pushed yet)
    call *%r11                  # syscall (or, at the abortable entry, not); ret at the gate
    ret
    .size ut_program_syscall6, .-ut_program_syscall6

# --- ut_bootstrap_syscall6(nr, a1, a2, a3, a4, a5, a6) -> rax -----------------
# A syscall issued from the library's own text, NOT from the gate. Used only
# by the constructor before the gate exists (to map it, or to report that it
# cannot be mapped and exit). Once a trap is armed this would trap like any
# program syscall, so nothing else may call it.
    .globl ut_bootstrap_syscall6
    .hidden ut_bootstrap_syscall6
    .type ut_bootstrap_syscall6, @function
ut_bootstrap_syscall6:
    mov %rdi, %rax              # syscall number
    mov %rsi, %rdi              # argument 1
    mov %rdx, %rsi              # argument 2
    mov %rcx, %rdx              # argument 3
    mov %r8, %r10               # argument 4
    mov %r9, %r8                # argument 5
    mov 8(%rsp), %r9            # argument 6
    syscall
    ret
    .size ut_bootstrap_syscall6, .-ut_bootstrap_syscall6

# --- ut_running_on_valgrind() -> rax -----------------------------------------
# valgrind's RUNNING_ON_VALGRIND client request (valgrind.h, amd64-linux): a
# no-op on a real CPU, which leaves rdx (the default answer, 0) alone; under
# valgrind, which recognises the rotate preamble followed by xchg %rbx,%rbx,
# rdx becomes how many valgrinds the code runs under. No syscall.
    .globl ut_running_on_valgrind
    .hidden ut_running_on_valgrind
    .type ut_running_on_valgrind, @function
ut_running_on_valgrind:
    push %rbx                   # xchg %rbx,%rbx must leave rbx as it was; saved anyway
    sub $48, %rsp               # the request block: six words (keeps rsp 16-aligned)
    movq $0x1001, (%rsp)        # [0] VG_USERREQ__RUNNING_ON_VALGRIND
    movq $0, 8(%rsp)            # [1..5] its arguments: none
    movq $0, 16(%rsp)
    movq $0, 24(%rsp)
    movq $0, 32(%rsp)
    movq $0, 40(%rsp)
    mov %rsp, %rax              # rax = the request block
    xor %edx, %edx              # rdx = the answer when not under valgrind
    rolq $3, %rdi               # the preamble: four rotations of rdi by
    rolq $13, %rdi              # 3+13+61+51 = 128 bits, which leave it
    rolq $61, %rdi              # unchanged on a real CPU
    rolq $51, %rdi
    xchgq %rbx, %rbx            # the request marker: valgrind answers in rdx
    mov %rdx, %rax              # the answer
    add $48, %rsp               # drop the request block
    pop %rbx                    # restore rbx
    ret
    .size ut_running_on_valgrind, .-ut_running_on_valgrind

# --- ut_int80(nr, a1, a2, a3, a4, a5, a6) -> rax ---------------------------------
# The System V call convention in, the i386 syscall convention out, through
# the gate's int $0x80.
    .globl ut_int80
    .hidden ut_int80
    .type ut_int80, @function
ut_int80:
    push %rbx                   # callee-saved, but the i386 ABI takes arguments there
    push %rbp
    mov %rdi, %rax              # syscall number (i386 numbering)
    mov %rsi, %rbx              # argument 1
    mov %rcx, %r10              # (argument 3, parked)
    mov %rdx, %rcx              # argument 2
    mov %r10, %rdx              # argument 3
    mov %r8, %rsi               # argument 4
    mov %r9, %rdi               # argument 5
    mov 24(%rsp), %rbp          # argument 6 (7th C argument, above two pushes)
    movabs ${gate_int80}, %r11
    call *%r11
    pop %rbp
    pop %rbx
    ret
    .size ut_int80, .-ut_int80

# --- ut_clone_with_frame(nr, a1, a2, a3, a4, a5, frame) -> rax ----------------
# Like ut_syscall6 for clone/clone3, but through the clone gate, and with the
# child's frame in r12 so the child (which gets a copy of every register) finds it.
    .globl ut_clone_with_frame
    .hidden ut_clone_with_frame
    .type ut_clone_with_frame, @function
ut_clone_with_frame:
    push %r12                   # callee-saved: keep the caller's value
    mov 16(%rsp), %r12          # frame (7th argument; 8 more for the push)
    mov %rdi, %rax              # syscall number
    mov %rsi, %rdi              # argument 1
    mov %rdx, %rsi              # argument 2
    mov %rcx, %rdx              # argument 3
    mov %r8, %r10               # argument 4
    mov %r9, %r8                # argument 5
    movabs ${gate_clone}, %r11
    call *%r11                  # only the parent comes back here
    pop %r12
    ret
    .size ut_clone_with_frame, .-ut_clone_with_frame

# --- ut_clone_child_entry: the clone child's first instructions ----------------
# rsp = the child's stack as the program asked for it, r12 = the frame below it.
# Runs Rust setup on the stack below the frame header, then rt_sigreturn onto
# the frame, which gives the child every program register, its FPU state, its
# signal mask and rsp = its stack, with rax = 0.
    .globl ut_clone_child_entry
    .hidden ut_clone_child_entry
    .type ut_clone_child_entry, @function
ut_clone_child_entry:
    lea -{child_header}(%r12), %rsp  # below the header the parent wrote
    and $-16, %rsp              # System V stack alignment for the call
    mov %r12, %rdi              # argument: the frame
    call ut_clone_child_setup@PLT   # Rust: thread area, SUD, fork fix-ups;
                                #   returns the restorer to leave through
    lea 8(%r12), %rsp           # rsp = &frame.uc, as after a handler's `ret`
    jmp *%rax                   # rt_sigreturn from the gate (or without it)
    .size ut_clone_child_entry, .-ut_clone_child_entry

# --- ut_sigreturn_at(uc, restorer) -> ! ---------------------------------------
# rt_sigreturn onto a signal frame whose ucontext is at `uc` (SUD: a program
# handler returned through a restorer outside the gate), through `restorer`
# (the gate's, or its user sigreturn).
    .globl ut_sigreturn_at
    .hidden ut_sigreturn_at
    .type ut_sigreturn_at, @function
ut_sigreturn_at:
    mov %rdi, %rsp              # the kernel reads the frame at rsp - 8
    jmp *%rsi
    .size ut_sigreturn_at, .-ut_sigreturn_at

# --- ut_safe_copy(dst, src, len) -> 0 or -EFAULT ------------------------------
# Copies program memory that may be unmapped. A fault on the one instruction at
# ut_safe_copy_insn is turned by the SIGSEGV/SIGBUS handler into a jump to
# ut_safe_copy_fault (the kernel's exception-table idea).
    .globl ut_safe_copy
    .hidden ut_safe_copy
    .type ut_safe_copy, @function
ut_safe_copy:
    mov %rdx, %rcx              # byte count
    .globl ut_safe_copy_insn
    .hidden ut_safe_copy_insn
ut_safe_copy_insn:
    rep movsb                   # may fault: see above
    xor %eax, %eax              # success
    ret
    .globl ut_safe_copy_fault
    .hidden ut_safe_copy_fault
ut_safe_copy_fault:
    mov $-14, %rax              # -EFAULT
    ret
    .size ut_safe_copy, .-ut_safe_copy

# --- ut_safe_strnlen(s, max) -> length, or -EFAULT -----------------------------
    .globl ut_safe_strnlen
    .hidden ut_safe_strnlen
    .type ut_safe_strnlen, @function
ut_safe_strnlen:
    mov %rsi, %rcx              # scan at most max bytes
    xor %eax, %eax              # looking for the NUL byte
    .globl ut_safe_strnlen_insn
    .hidden ut_safe_strnlen_insn
ut_safe_strnlen_insn:
    repne scasb                 # may fault; rdi walks the string
    jne 1f                      # no NUL within max bytes
    mov %rsi, %rax
    sub %rcx, %rax
    dec %rax                    # length = max - remaining - 1
    ret
1:  mov %rsi, %rax              # not terminated: report max
    ret
    .globl ut_safe_strnlen_fault
    .hidden ut_safe_strnlen_fault
ut_safe_strnlen_fault:
    mov $-14, %rax              # -EFAULT
    ret
    .size ut_safe_strnlen, .-ut_safe_strnlen

# --- GS base accessors (FSGSBASE instructions; the caller checks HWCAP2) -------
    .globl ut_rdgsbase
    .hidden ut_rdgsbase
    .type ut_rdgsbase, @function
ut_rdgsbase:
    rdgsbase %rax
    ret
    .size ut_rdgsbase, .-ut_rdgsbase

    .globl ut_wrgsbase

    .hidden ut_wrgsbase
    .type ut_wrgsbase, @function
ut_wrgsbase:
    wrgsbase %rdi
    ret
    .size ut_wrgsbase, .-ut_wrgsbase

# --- ut_fast_entry: the fast path, where every patched site's trampoline jumps --
# In: rax = syscall number, r11 = return address (site + 7); every other register
# is the program's; rcx is free (the `syscall` it replaces clobbers it). Out, at
# site + 7: rax = result, rcx = return address, r11 = flags, as after a native
# syscall; every other register, the flags and all vector/FPU state unchanged.
# Or, when ut_fast_dispatch says so (rdx = 1: a fast version that declined,
# rax = the number), every register as it came in, on to the trampoline's own
# `syscall`, which traps: the slow path, as for a number ut_fast_ok does not list.
# Nothing is written above rsp - 128 (the red zone), and nothing is kept
# outside the stacks, so a signal handler may re-enter here or siglongjmp away.
#
# The stack: on the program's, only the first steps: the red zone skipped,
# the return address, the flags and the program's registers (240 bytes below
# its rsp, 112 written; a goroutine's stack has only a few hundred bytes of
# room below the stack pointer at its syscall); then the thread's own
# fast-path stack (ThreadArea::fast_top/fast_size) for the Rust call, the
# vector state and the hooks. Its first word, right below the top, is the
# link: where the registers were saved on the program's side, 0 while no
# fast call is on it. Nesting needs no counter: a call from elsewhere goes to
# the top, unless that slot is in use (a fast call is live there, interrupted
# by a program handler, which delivery.rs runs on the stack the call came
# from, below the link): it then stays on the stack it came from, as every
# call did before. A call whose rsp is already on the fast stack stays and
# continues below. Without an area found through rdgsbase (no FSGSBASE, or a
# thread from before the library) it stays as well.
    .globl ut_fast_entry
    .hidden ut_fast_entry
    .type ut_fast_entry, @function
ut_fast_entry:
    lea -128(%rsp), %rsp        # step over the red zone (lea keeps the flags)
    push %r11                   # return address
    pushfq                      # the program's flags
    cmp $512, %rax              # a number ut_fast_ok does not list (FAST_OK_LEN)...
    jae 9f                      #   ...takes the slow path
    lea ut_fast_ok(%rip), %rcx  # the table of numbers the fast path may run
    cmpb $0, (%rcx,%rax)        # emulated calls (clone, sigaction, ...) at a site
    je 9f                       #   that takes its number from a register: slow path
    cld                         # the System V ABI wants DF clear in Rust code
    push %rdi                   # syscall arguments: the program expects them
    push %rsi                   #   unchanged, and the Rust call may clobber them
    push %rdx                   #   (on the program's side, where a conservative
    push %r10                   #   scanner of its stack, a GC's signal handler,
    push %r8                    #   still finds them: `saved` for ut_fast_dispatch,
    push %r9                    #   with the flags and return address above)
    push %rbx                   # the callee-saved registers too, for the same
    push %rbp                   #   scanners only: Rust keeps them, and may spill
    push %r12                   #   them onto the fast-path stack, which no
    push %r13                   #   scanner of the program's knows
    push %r14
    push %r15                   # the link points here: 240 bytes below the program's rsp
    xor %ecx, %ecx              # rcx = the GS base (the thread's area), 0 if unknown
    cmpb $0, ut_have_fsgsbase(%rip)
    je 5f                       # no rdgsbase: the area is unknown, stay here
    rdgsbase %rcx               # the thread's area (the program cannot set it but by wrgsbase)
    test %rcx, %rcx
    jz 5f                       # no area (a thread from before the library): stay here
    movabs ${area_magic_value}, %r11    # (r11 is free: the return address is pushed)
    cmp %r11, {area_magic}(%rcx)    # one of our areas?
    jne 5f                      #   not ours (the program's own wrgsbase): stay here
    mov {area_fast_top}(%rcx), %r11 # r11 = the top of the thread's fast-path stack
    sub %rsp, %r11              # r11 = how far rsp is below that top
    cmp {area_fast_size}(%rcx), %r11    # less than its size (rsp above the top wraps)?
    jb 5f                       #   already on it: continue below
    mov {area_fast_top}(%rcx), %r11 # r11 = the top again
    cmpq $0, -8(%r11)           # the outermost call's link slot, right below the top
    jne 5f                      #   in use: a fast call lives there (interrupted): stay here
    mov %rsp, -8(%r11)          # the link (the registers saved above), first: a
                                #   signal from here on finds the slot in use
    xchg %r11, %rsp             # switch: rsp = the top, r11 = the program-side frame
    lea -8(%rsp), %rsp          # over the link stored above (lea keeps the flags)
    jmp 6f
5:  push %rsp                   # no switch: the link is the stack pointer before this push
6:  push %rax                   # the syscall number
    push %rbp                   # frame: 8(%rbp) number, 16(%rbp) the link
    mov %rsp, %rbp
    push %rcx                   # -8(%rbp): the GS base read above, 0 if unknown
    and $-16, %rsp              # System V stack alignment for the call
    cmpb $0, ut_hooks_active(%rip)
    jne 1f                      # hooks may use any register: see below
    # Rust code for baseline x86-64 may copy data through xmm0-15 (legacy SSE,
    # which leaves the upper ymm/zmm bits alone) but never touches AVX,
    # AVX-512, x87 or MXCSR (tests/patching.rs checks the disassembly):
    # saving xmm0-15 is enough.
    sub $256, %rsp              # 16 x 16 bytes, still 16-byte aligned
    movaps %xmm0, 0(%rsp)
    movaps %xmm1, 16(%rsp)
    movaps %xmm2, 32(%rsp)
    movaps %xmm3, 48(%rsp)
    movaps %xmm4, 64(%rsp)
    movaps %xmm5, 80(%rsp)
    movaps %xmm6, 96(%rsp)
    movaps %xmm7, 112(%rsp)
    movaps %xmm8, 128(%rsp)
    movaps %xmm9, 144(%rsp)
    movaps %xmm10, 160(%rsp)
    movaps %xmm11, 176(%rsp)
    movaps %xmm12, 192(%rsp)
    movaps %xmm13, 208(%rsp)
    movaps %xmm14, 224(%rsp)
    movaps %xmm15, 240(%rsp)
    mov 8(%rbp), %rdi           # argument 1: syscall number
    mov 16(%rbp), %rsi          # the link, 48 bytes (r15..rbx) below...
    add $48, %rsi               # argument 2: ...the saved registers r9, r8, r10, rdx, rsi, rdi
    mov -8(%rbp), %rdx          # argument 3: the GS base
    xor %ecx, %ecx              # argument 4: no hooks (nothing saved for them)
    call ut_fast_dispatch@PLT   # Rust: rax = result, rdx = 1 to send the call to the slow path
    movaps 0(%rsp), %xmm0
    movaps 16(%rsp), %xmm1
    movaps 32(%rsp), %xmm2
    movaps 48(%rsp), %xmm3
    movaps 64(%rsp), %xmm4
    movaps 80(%rsp), %xmm5
    movaps 96(%rsp), %xmm6
    movaps 112(%rsp), %xmm7
    movaps 128(%rsp), %xmm8
    movaps 144(%rsp), %xmm9
    movaps 160(%rsp), %xmm10
    movaps 176(%rsp), %xmm11
    movaps 192(%rsp), %xmm12
    movaps 208(%rsp), %xmm13
    movaps 224(%rsp), %xmm14
    movaps 240(%rsp), %xmm15
    jmp 2f
1:  sub ut_xsave_size(%rip), %rsp   # room for the whole extended state...
    and $-64, %rsp              # ...64-byte aligned, as XSAVE requires
    xor %eax, %eax              # zero the XSAVE header (bytes 512-575):
    mov %rax, 512(%rsp)         #   XRSTOR checks it, XSAVE writes only part of it
    mov %rax, 520(%rsp)
    mov %rax, 528(%rsp)
    mov %rax, 536(%rsp)
    mov %rax, 544(%rsp)
    mov %rax, 552(%rsp)
    mov %rax, 560(%rsp)
    mov %rax, 568(%rsp)
    mov $-1, %eax               # every component XCR0 enables (x87, SSE,
    mov $-1, %edx               #   AVX, AVX-512, ...)
    xsave64 (%rsp)              # the program's vector and FPU state
    mov 8(%rbp), %rdi           # argument 1: syscall number
    mov 16(%rbp), %rsi          # the link, 48 bytes (r15..rbx) below...
    add $48, %rsi               # argument 2: ...the saved registers
    mov -8(%rbp), %rdx          # argument 3: the GS base
    mov $1, %ecx                # argument 4: run the hooks (state saved)
    call ut_fast_dispatch@PLT   # runs the hooks, which may use floating point
    mov %rax, 8(%rbp)           # keep the result while XRSTOR needs rax...
    mov %rdx, -8(%rbp)          # ...and rdx (the GS base's slot is free now)
    mov $-1, %eax
    mov $-1, %edx
    xrstor64 (%rsp)             # the program's vector and FPU state again
    mov 8(%rbp), %rax           # the result
    mov -8(%rbp), %rdx          # the slow-path flag
2:  test %rdx, %rdx             # sent back to the slow path? Nothing below
                                #   changes the flags before the jnz (mov, lea, pop)
    mov %rbp, %rsp
    pop %rbp                    # the program's rbp
    lea 8(%rsp), %rcx           # rcx = the link slot (above the syscall number)
    mov (%rcx), %rsp            # back on the program's side (or where this call began)
    movq $0, (%rcx)             # the link slot is free again (once off the fast stack)
    lea 48(%rsp), %rsp          # drop r15..rbx: Rust kept the registers themselves
    pop %r9                     # the program's argument registers
    pop %r8
    pop %r10
    pop %rdx
    pop %rsi
    pop %rdi
    jnz 9f                      # sent back (a fast version declined): rax = its
                                #   number, rsp at the flags, as the slow path wants
    mov (%rsp), %r11            # r11 = flags, as after a native syscall
    popfq                       # the program's flags
    pop %rcx                    # rcx = return address, as after a native syscall
    lea 128(%rsp), %rsp         # the program's stack pointer again
    jmp *%rcx                   # back to the program, after its old `syscall`
9:  popfq                       # the program's flags again
    pop %r11                    # the return address
    lea 128(%rsp), %rsp         # the program's stack pointer again
    lea -2(%r11), %rcx          # the trampoline's own `syscall`, right before its
    jmp *%rcx                   #   return point (forms.rs): it traps, slow path
    .size ut_fast_entry, .-ut_fast_entry

# --- data the fast path reads (set by the constructor / usertrap_set_hooks) --
    .data
    .balign 8
    .globl ut_xsave_size
    .hidden ut_xsave_size
ut_xsave_size:  .quad 4096      # XSAVE area size (CPUID 0xd.0 EBX), rounded up
    .globl ut_hooks_active
    .hidden ut_hooks_active
ut_hooks_active: .byte 0        # 1 once a hook is installed
    .globl ut_have_fsgsbase
    .hidden ut_have_fsgsbase
ut_have_fsgsbase: .byte 0       # 1 when rdgsbase/wrgsbase may be used (AT_HWCAP2)
    .globl ut_fast_ok
    .hidden ut_fast_ok
ut_fast_ok: .zero 512           # 1 per syscall number the fast path may run (arch::set_fast_ok)
    .text

# --- the per-site trampoline, as a template ------------------------------------
# Never executed here: the patcher copies these 27 bytes for every patched site
# and fills in the three immediates (offsets checked at start-up).
    .globl ut_tramp_template
    .hidden ut_tramp_template
ut_tramp_template:
    mov $0x7fffffff, %eax                 # b8 imm32: the site's syscall number
    movabs $0x7fffffffffffffff, %r11      # 49 bb imm64: the site's return address
    movabs $0x7fffffffffffffff, %rcx      # 48 b9 imm64: ut_fast_entry
    jmp *%rcx                             # ff e1
    .globl ut_tramp_template_end
    .hidden ut_tramp_template_end
ut_tramp_template_end:
