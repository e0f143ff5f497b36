//! The slow path: SIGSYS from our trap (seccomp or SUD). The kernel skipped
//! the program's syscall and saved its registers; we run the syscall through
//! the gate with those registers' arguments and put the result in rax. All
//! other registers, the flags and the FPU/vector state come back untouched
//! from the frame at sigreturn, as after a native syscall. Then, the first
//! time a site traps, it is considered for patching (the fast path).
//!
//! Never: emulate a call itself (dispatch and `emulate` do).

use crate::emulate::signals;
use crate::emulate::signals::delivery;
use crate::measure::stats::{self, Path};
use crate::patch::install;
use crate::rt::frame::{Siginfo, Ucontext};
use crate::rt::raw::{self, KernelSigaction};
use crate::rt::thread::{self, ThreadArea};
use crate::trap::dispatch::{self, Outcome, Trap};

/// `si_arch` of an i386 syscall (AUDIT_ARCH_I386, include/uapi/linux/audit.h).
const AUDIT_ARCH_I386: u32 = 0x4000_0003;

pub extern "C" fn on_sigsys(sig: i32, info: *mut Siginfo, ctx: *mut core::ffi::c_void) {
    // SAFETY: the kernel passes valid siginfo and ucontext pointers into the
    // frame it built for this handler (SA_SIGINFO), live until we return.
    let (info, uc) = unsafe { (&mut *info, &mut *ctx.cast::<Ucontext>()) };
    signals::take_passed_on(info);
    let area = match thread::current() {
        Some(a) => a,
        None => thread::out_of_memory(),
    };
    let outermost = signals::entered_from_program(area, uc);
    trap(sig, info, uc, area);
    if outermost {
        delivery::run_postponed(area, uc);
    }
    // The call may have installed a filter of the program's that refuses
    // our rt_sigreturn (process::install_program_filter).
    signals::return_without_sigreturn(uc);
}

fn trap(sig: i32, info: &mut Siginfo, uc: &mut Ucontext, area: &ThreadArea) {
    if !signals::is_our_trap(info, uc) {
        signals::deliver_to_program(sig, info, uc, area);
        return;
    }
    if info.arch == AUDIT_ARCH_I386 {
        // SUD also stops `int $0x80` (seccomp lets other arches through):
        // re-issue it as what it is, from the gate, counted and timed as an
        // i386 call of its own (the report's `i386:` entries); never patched.
        let m = &uc.mc;
        let nr = m.rax & 0xffff_ffff;
        let block = stats::begin(Some(area), Path::Slow, stats::I386_FLAG + nr as i64);
        let timing = stats::timing();
        let t0 = if timing { stats::now() } else { 0 };
        // SAFETY: the gate's int $0x80 with the program's i386 arguments.
        let r = unsafe { crate::rt::arch::ut_int80(nr, m.rbx, m.rcx, m.rdx, m.rsi, m.rdi, m.rbp) };
        let ticks = if timing { stats::now().wrapping_sub(t0) } else { 0 };
        // The i386 result is 32 bits wide (eax), an errno as -1..-4095.
        stats::end(block, r as i32 as i64, ticks);
        uc.mc.rax = r as u64;
        return;
    }
    let nr = uc.mc.rax;
    // Patch first: exit, exec and the like never come back here.
    install::consider(uc.mc.rip, kernel_nr(nr) as u64);
    run_for_program(area, uc, nr);
}

/// The syscall the kernel runs for `rax`: its low 32 bits, sign-extended
/// (entry_64.S's `movslq %eax`), as seccomp and SUD name it in si_syscall.
/// A program that leaves garbage in the upper half still makes that call:
/// `execve` with bit 32 set is still an execve, to be emulated.
fn kernel_nr(rax: u64) -> i64 {
    rax as i32 as i64
}

/// Run syscall `nr` for the program whose state is `uc` (uc.rip: the address
/// after its `syscall`), and leave the result where the program expects it.
pub fn run_for_program(area: &ThreadArea, uc: &mut Ucontext, nr: u64) {
    uc.mc.rax = nr;
    let args = uc.syscall_args();
    let outer = area.program_uc.replace(uc as *mut Ucontext as u64);
    let mut trap = Trap { area, uc };
    let outcome = dispatch::slow(&mut trap, kernel_nr(nr), args);
    area.program_uc.set(outer);
    match outcome {
        Outcome::Return(r) if r == -raw::ERESTARTNOINTR => {
            // A program signal waits for its handler and the syscall did not
            // run, or would have been restarted (raw::program_syscall6):
            // rewind the program onto its `syscall` with the number in rax,
            // as the kernel does for a restart; it runs again once the
            // handler returns.
            trap.uc.mc.rip -= 2;
            trap.uc.mc.rax = nr;
        }
        Outcome::Return(r) => trap.uc.set_syscall_result(r),
        Outcome::Resume => {}
        // Never: only the fast path's versions decline.
        Outcome::Decline => trap.uc.set_syscall_result(-raw::ENOSYS),
    }
}

/// The action we install for SIGSYS.
pub fn handler_action() -> KernelSigaction {
    signals::our_action(on_sigsys)
}
