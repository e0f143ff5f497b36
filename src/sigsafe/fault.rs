//! SIGSEGV and SIGILL: faults of our fault-tolerant copies (resume at their
//! fixup), and everything else, which belongs to the program (its handler, or
//! its default action). Patched-site faults of the fast path will land here too.

use crate::arch;
use crate::sigsafe::frame::{Siginfo, Ucontext};
use crate::sigsafe::raw::KernelSigaction;
use crate::sigsafe::signals;
use crate::sigsafe::sigsys::out_of_memory;
use crate::sigsafe::thread;

pub extern "C" fn on_fault(sig: i32, info: *mut Siginfo, ctx: *mut core::ffi::c_void) {
    // SAFETY: as in on_sigsys: kernel-provided pointers into our frame.
    let (info, uc) = unsafe { (&mut *info, &mut *(ctx as *mut Ucontext)) };
    if let Some(fixup) = arch::safe_copy_fixup(uc.mc.rip) {
        uc.mc.rip = fixup;
        return;
    }
    let area = match thread::current() {
        Some(a) => a,
        None => out_of_memory(),
    };
    signals::deliver_to_program(sig, info, uc, area);
}

/// The action we install for SIGSEGV and SIGILL.
pub fn handler_action() -> KernelSigaction {
    signals::our_action(on_fault)
}
