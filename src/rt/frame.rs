//! The kernel's signal frame as the handlers see it (x86-64).
//!
//! Mirrors `struct ucontext`, `struct sigcontext_64` and `siginfo_t` from
//! arch/x86/include/uapi/asm/{ucontext,sigcontext}.h and
//! include/uapi/asm-generic/siginfo.h. glibc's `ucontext_t` is larger (its
//! sigset is 128 bytes) and must not be used to copy a kernel frame.
//!
//! Never: copy a kernel frame with glibc's `ucontext_t`.

/// `struct sigcontext_64`: the program's registers at the moment of the trap.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Sigcontext {
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub rdx: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rsp: u64,
    pub rip: u64,
    pub eflags: u64,
    pub cs: u16,
    pub gs: u16,
    pub fs: u16,
    pub ss: u16,
    pub err: u64,
    pub trapno: u64,
    pub oldmask: u64,
    pub cr2: u64,
    /// Points at the saved FPU/vector state (`struct _fpstate_64` + xsave).
    pub fpstate: u64,
    pub reserved1: [u64; 8],
}

/// `stack_t` as the kernel lays it out.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct StackT {
    pub ss_sp: u64,
    pub ss_flags: i32,
    pub _pad: i32,
    pub ss_size: u64,
}

/// The kernel's `struct ucontext` (304 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Ucontext {
    pub uc_flags: u64,
    pub uc_link: u64,
    pub uc_stack: StackT,
    pub mc: Sigcontext,
    /// The signal mask to restore at sigreturn (the kernel's 64-bit sigset).
    pub uc_sigmask: u64,
}

// The offsets the gate's user sigreturn (rt/arch/x86_64.s) reads.
const _: () = {
    use crate::rt::arch;
    use core::mem::offset_of;
    let mc = offset_of!(Ucontext, mc);
    assert!(offset_of!(Ucontext, uc_sigmask) == arch::UC_SIGMASK);
    assert!(offset_of!(Ucontext, uc_stack) == arch::UC_STACK);
    assert!(arch::BLK_SIZE - arch::BLK_RIP == 136);
    assert!(mc + offset_of!(Sigcontext, fpstate) == arch::UC_FPSTATE);
    assert!(mc + offset_of!(Sigcontext, r8) == arch::UC_R8);
    assert!(mc + offset_of!(Sigcontext, rcx) == arch::UC_R8 + 14 * 8);
    assert!(mc + offset_of!(Sigcontext, rsp) == arch::UC_RSP);
    assert!(mc + offset_of!(Sigcontext, rip) == arch::UC_RIP);
    assert!(mc + offset_of!(Sigcontext, eflags) == arch::UC_EFLAGS);
};

impl Ucontext {
    /// The six syscall arguments in the kernel's register order.
    pub fn syscall_args(&self) -> [u64; 6] {
        let m = &self.mc;
        [m.rdi, m.rsi, m.rdx, m.r10, m.r8, m.r9]
    }

    /// Make the trapped syscall return `ret`, leaving rcx and r11 as the
    /// `syscall` instruction and sysret would (return address and flags).
    pub fn set_syscall_result(&mut self, ret: i64) {
        self.mc.rax = ret as u64;
        self.mc.rcx = self.mc.rip;
        self.mc.r11 = self.mc.eflags;
    }
}

/// `siginfo_t`, with the fields of the SIGSYS and fault layouts we read.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Siginfo {
    pub si_signo: i32,
    pub si_errno: i32,
    pub si_code: i32,
    pub _pad: i32,
    /// SIGSYS: `si_call_addr`; SIGSEGV/SIGILL/SIGBUS: `si_addr`.
    pub addr: u64,
    /// SIGSYS: `si_syscall`.
    pub syscall: i32,
    /// SIGSYS: `si_arch`.
    pub arch: u32,
    pub _rest: [u64; 12],
}

/// `si_code` of a SIGSYS raised by a seccomp filter (SYS_SECCOMP).
pub const SYS_SECCOMP: i32 = 1;
/// `si_code` of a SIGSYS raised by Syscall User Dispatch (SYS_USER_DISPATCH).
pub const SYS_USER_DISPATCH: i32 = 2;

/// Offset of `sw_reserved` (struct _fpx_sw_bytes) inside the fxsave area.
const FPX_SW_BYTES_OFFSET: usize = 464;
/// `FP_XSTATE_MAGIC1`: the frame's FPU state is followed by xsave state.
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
/// Size of the legacy fxsave area, all a frame has without xsave.
const FXSAVE_SIZE: usize = 512;

/// How many bytes of FPU state the kernel wrote at `fpstate` (xsave area
/// including its trailing FP_XSTATE_MAGIC2), or `None` if it cannot be read.
pub fn fpstate_size(fpstate: u64) -> Option<usize> {
    if fpstate == 0 {
        return None;
    }
    // The kernel wrote this state for us; still read it the fault-tolerant way.
    let sw = crate::rt::raw::entry::read_user::<[u32; 2]>(fpstate.wrapping_add(FPX_SW_BYTES_OFFSET as u64)).ok()?;
    if sw[0] == FP_XSTATE_MAGIC1 && sw[1] as usize >= FXSAVE_SIZE && sw[1] <= 64 * 1024 {
        Some(sw[1] as usize)
    } else {
        Some(FXSAVE_SIZE)
    }
}
