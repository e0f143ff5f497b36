//! The public hook interface: other code in the process (a library preloaded
//! after this one) sees, changes or replaces every intercepted syscall.
//!
//! ```c
//! struct usertrap_call { long nr; unsigned long args[6]; long result; };
//! /* before: return 0 to run the syscall (nr and args may be changed), or
//!  *         non-zero to skip it and return call->result (-errno or value);
//!  * after:  may change call->result. Either may be NULL. */
//! int usertrap_set_hooks(int (*before)(struct usertrap_call *, void *),
//!                        void (*after)(struct usertrap_call *, void *),
//!                        void *user);
//! long usertrap_syscall(long nr, long a1, long a2, long a3, long a4, long a5, long a6);
//! ```
//!
//! Hooks run in trap context: inside a signal handler or on the fast path,
//! in any thread, possibly nested in themselves. They may use any register
//! (with hooks installed the fast path saves the whole XSAVE state), but must
//! not allocate, lock, or make syscalls through libc (they would be
//! intercepted again): `usertrap_syscall` issues one from the gate, unhooked.
//! Syscalls that replace or end the process image (execve, exit_group) and
//! those that return twice (fork, clone, vfork) reach `before` but their
//! `after` sees only the parent's result (vfork: none).

use core::ffi::c_void;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::emulate::Outcome;
use crate::rt::arch;
use crate::rt::raw;

/// `struct usertrap_call`.
#[repr(C)]
pub struct Call {
    pub nr: i64,
    pub args: [u64; 6],
    pub result: i64,
}

type Before = extern "C" fn(*mut Call, *mut c_void) -> i32;
type After = extern "C" fn(*mut Call, *mut c_void);

static BEFORE: AtomicUsize = AtomicUsize::new(0);
static AFTER: AtomicUsize = AtomicUsize::new(0);
static USER: AtomicUsize = AtomicUsize::new(0);

/// Install (or, with both NULL, remove) the hooks. Returns 0.
#[no_mangle]
pub extern "C" fn usertrap_set_hooks(before: Option<Before>, after: Option<After>, user: *mut c_void) -> i32 {
    USER.store(user as usize, Ordering::Relaxed);
    BEFORE.store(before.map_or(0, |f| f as usize), Ordering::Relaxed);
    AFTER.store(after.map_or(0, |f| f as usize), Ordering::Release);
    let on = before.is_some() || after.is_some();
    if on {
        // Only hooks need it; CPUID costs 7-15 us in a nested VM, paid here
        // rather than by every process at start-up.
        init_xsave_size();
    }
    // SAFETY: an atomic byte defined in x86_64.s, read by ut_fast_entry.
    unsafe { arch::ut_hooks_active.store(on as u8, Ordering::Release) };
    0
}

/// A syscall from the gate, not intercepted and not hooked: what hooks use.
///
/// # Safety
/// As for any raw syscall (`syscall(2)`): the arguments are the caller's,
/// and so is what the kernel does with them (the hook's own call, or the
/// program's call it forwards).
#[no_mangle]
pub unsafe extern "C" fn usertrap_syscall(nr: i64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, a6: u64) -> i64 {
    // SAFETY: the caller's contract, which is raw::syscall6's.
    unsafe { raw::syscall6(nr, [a1, a2, a3, a4, a5, a6]) }
}

#[inline(always)]
pub fn active() -> bool {
    // SAFETY: as in usertrap_set_hooks.
    unsafe { arch::ut_hooks_active.load(Ordering::Relaxed) != 0 }
}

/// Run one intercepted syscall through the hooks; `run` performs it.
#[inline(never)]
pub fn call_hooks(nr: i64, args: [u64; 6], run: impl FnOnce(i64, [u64; 6]) -> Outcome) -> Outcome {
    let user = USER.load(Ordering::Relaxed) as *mut c_void;
    let mut call = Call { nr, args, result: 0 };
    let before = BEFORE.load(Ordering::Acquire);
    if before != 0 {
        // SAFETY: stored from a `Before` function pointer by usertrap_set_hooks.
        let f: Before = unsafe { core::mem::transmute(before) };
        if f(&raw mut call, user) != 0 {
            return Outcome::Return(call.result);
        }
    }
    match run(call.nr, call.args) {
        Outcome::Return(r) => {
            call.result = r;
            let after = AFTER.load(Ordering::Acquire);
            if after != 0 {
                // SAFETY: stored from an `After` function pointer.
                let f: After = unsafe { core::mem::transmute(after) };
                f(&raw mut call, user);
            }
            Outcome::Return(call.result)
        }
        Outcome::Resume => Outcome::Resume,
        // Never with hooks on: the fast path declines such calls before
        // the hooks see them (they see them once, on the slow path).
        Outcome::Decline => Outcome::Decline,
    }
}

/// Before hooks go on: how much room ut_fast_entry needs for XSAVE with
/// hooks on (stored before ut_hooks_active, which publishes it).
fn init_xsave_size() {
    // CPUID leaf 0xd, sub-leaf 0: EBX = bytes for the components XCR0 enables.
    let size = {
        // CPUID is available on every x86-64 CPU; leaf 0xd exists wherever
        // XSAVE does (checked through leaf 1, ECX bit 26).
        let leaf1 = core::arch::x86_64::__cpuid(1);
        if leaf1.ecx & (1 << 26) != 0 {
            core::arch::x86_64::__cpuid_count(0xd, 0).ebx as u64
        } else {
            0
        }
    };
    // Rounded up, with room for the alignment; without XSAVE, hooks stay off.
    let room = (size.max(576) + 63) & !63;
    // SAFETY: an atomic u64 defined in x86_64.s.
    unsafe { arch::ut_xsave_size.store(room, Ordering::Relaxed) };
}
