//! What the library counts. For now one process-wide counter of intercepted
//! syscalls, printed at exit when USERTRAP_SUMMARY=1; the latency statistics
//! of the reporting issue replace this with per-thread figures.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::backend;
use crate::sigsafe::log::Line;
use crate::sigsafe::raw;

static INTERCEPTED: AtomicU64 = AtomicU64::new(0);
/// USERTRAP_SUMMARY=1: print one line per process at exit.
pub static SUMMARY: AtomicBool = AtomicBool::new(false);
static PRINTED: AtomicBool = AtomicBool::new(false);

/// Called once for every intercepted syscall.
#[inline]
pub fn count(_nr: i64) {
    INTERCEPTED.fetch_add(1, Ordering::Relaxed);
}

/// The process is about to end (exit_group, or a fatal signal).
pub fn at_exit() {
    if !SUMMARY.load(Ordering::Relaxed) || PRINTED.swap(true, Ordering::Relaxed) {
        return;
    }
    Line::new()
        .str("pid ")
        .num(raw::getpid() as u64)
        .str(": ")
        .num(INTERCEPTED.load(Ordering::Relaxed))
        .str(" syscalls intercepted (")
        .str(backend::name())
        .str(")")
        .emit();
}

pub fn at_fatal_signal() {
    at_exit();
}

/// A new process starts with its own figures, not its parent's.
pub fn after_fork_in_child() {
    INTERCEPTED.store(0, Ordering::Relaxed);
    PRINTED.store(false, Ordering::Relaxed);
}
