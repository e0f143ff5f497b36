//! How a program's syscall first reaches us: the trap backends.
//!
//! Both make every syscall issued outside the gate raise SIGSYS, and let the
//! gate's own syscalls through:
//! - `seccomp`: a `SECCOMP_RET_TRAP` filter that exempts the gate by
//!   instruction pointer. Covers every thread at once (TSYNC) and is inherited
//!   by children, but outlives exec.
//! - `sud`: Syscall User Dispatch (Linux 5.11+), armed per thread with the gate
//!   as the exempt range; cleared at exec and not inherited by new threads or
//!   processes, so every child is armed by the library as it starts.

pub mod error;
pub mod seccomp;
pub mod sud;

use core::sync::atomic::{AtomicU8, Ordering};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backend {
    Seccomp,
    Sud,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Seccomp => "seccomp",
            Backend::Sud => "sud",
        }
    }
}

const NONE: u8 = 0;
const SECCOMP: u8 = 1;
const SUD: u8 = 2;
/// The armed backend (set once, before the trap is armed).
static ARMED: AtomicU8 = AtomicU8::new(NONE);

pub fn is_seccomp() -> bool {
    ARMED.load(Ordering::Relaxed) == SECCOMP
}

pub fn is_sud() -> bool {
    ARMED.load(Ordering::Relaxed) == SUD
}

pub fn name() -> &'static str {
    match ARMED.load(Ordering::Relaxed) {
        SECCOMP => "seccomp",
        SUD => "sud",
        _ => "none",
    }
}

pub use error::ArmError;

/// Arm `b` for the whole process (seccomp) or the calling thread (SUD).
pub fn arm(b: Backend) -> Result<(), ArmError> {
    // Record first: from the moment the trap is live, handlers consult it.
    ARMED.store(if b == Backend::Seccomp { SECCOMP } else { SUD }, Ordering::Relaxed);
    let r = match b {
        Backend::Seccomp => seccomp::arm(),
        Backend::Sud => sud::arm_this_thread(),
    };
    if r.is_err() {
        ARMED.store(NONE, Ordering::Relaxed);
    }
    r
}

/// Record `b` as armed without arming it: an earlier image of this process
/// installed it and it survived exec (a seccomp filter).
pub fn assume_armed(b: Backend) {
    ARMED.store(if b == Backend::Seccomp { SECCOMP } else { SUD }, Ordering::Relaxed);
}

/// A new thread or process of ours starts: arm it if the backend is per thread.
pub fn arm_this_thread() {
    if is_sud() {
        let _ = sud::arm_this_thread();
    }
}
