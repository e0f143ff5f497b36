//! Syscall User Dispatch (Documentation/admin-guide/syscall-user-dispatch.rst).
//!
//! `prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, gate, len, &selector)`:
//! syscalls issued from [gate, gate+len) always run; any other raises SIGSYS
//! (si_code SYS_USER_DISPATCH) while the selector byte says BLOCK. The selector
//! is one byte for the whole process and never changes: the gate is how the
//! library's own syscalls get through.

use core::sync::atomic::AtomicU8;

use linux_raw_sys::prctl::SYSCALL_DISPATCH_FILTER_BLOCK;

use super::error::ArmError;
use crate::rt::arch::{GATE_ADDR, GATE_LEN};
use crate::rt::raw;

/// The selector byte the kernel reads on every syscall of an armed thread.
pub static SELECTOR: AtomicU8 = AtomicU8::new(SYSCALL_DISPATCH_FILTER_BLOCK as u8);

pub fn selector_addr() -> u64 {
    SELECTOR.as_ptr() as u64
}

/// Does the kernel have Syscall User Dispatch? (Turning it off is harmless
/// and fails with EINVAL exactly where it is missing.)
pub fn available() -> bool {
    raw::sud_off().is_ok()
}

/// Arm dispatch for the calling thread.
pub fn arm_this_thread() -> Result<(), ArmError> {
    if let Err(e) = raw::sud_on(GATE_ADDR, GATE_LEN, &SELECTOR) {
        return Err(ArmError {
            what: "prctl(PR_SET_SYSCALL_USER_DISPATCH)",
            errno: e,
            hint: "Syscall User Dispatch needs Linux 5.11 or later built with CONFIG_GENERIC_ENTRY; try USERTRAP_BACKEND=seccomp",
        });
    }
    Ok(())
}

/// Turn dispatch off for the calling thread (a traced process leaves the
/// library: emulate::process::stop_intercepting).
pub fn disarm_this_thread() {
    let _ = raw::sud_off();
}
