//! What the library counts: calls per syscall number, split by the path that
//! served them (fast: a patched site's trampoline; slow: a signal). Printed at
//! exit when USERTRAP_SUMMARY=1; the latency reports build on these.
//! For now the counters are process-wide atomics; per-thread accumulation
//! comes with the latency statistics.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::backend;
use crate::patch::registry;
use crate::sigsafe::log::Line;
use crate::sigsafe::raw;

/// Syscall numbers below this are counted one by one; the rest together.
pub const MAX_NR: usize = 512;

static FAST: [AtomicU64; MAX_NR + 1] = [const { AtomicU64::new(0) }; MAX_NR + 1];
static SLOW: [AtomicU64; MAX_NR + 1] = [const { AtomicU64::new(0) }; MAX_NR + 1];
/// USERTRAP_SUMMARY=1: print one line per process at exit.
pub static SUMMARY: AtomicBool = AtomicBool::new(false);
static PRINTED: AtomicBool = AtomicBool::new(false);

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Fast,
    Slow,
}

/// Called once for every intercepted syscall. Integer code only: it runs on
/// the fast path, where vector registers must stay untouched.
#[inline(always)]
pub fn count(path: Path, nr: i64) {
    let i = if (0..MAX_NR as i64).contains(&nr) { nr as usize } else { MAX_NR };
    let table = if path == Path::Fast { &FAST } else { &SLOW };
    if let Some(c) = table.get(i) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// (fast, slow) calls of syscall `nr` so far in this process.
pub fn calls(nr: usize) -> (u64, u64) {
    let f = FAST.get(nr).map_or(0, |c| c.load(Ordering::Relaxed));
    let s = SLOW.get(nr).map_or(0, |c| c.load(Ordering::Relaxed));
    (f, s)
}

fn totals() -> (u64, u64) {
    (0..=MAX_NR).map(calls).fold((0, 0), |(f, s), (a, b)| (f + a, s + b))
}

/// The process is about to end (exit_group, or a fatal signal).
pub fn at_exit() {
    if !SUMMARY.load(Ordering::Relaxed) || PRINTED.swap(true, Ordering::Relaxed) {
        return;
    }
    let (fast, slow) = totals();
    Line::new()
        .str("pid ")
        .num(raw::getpid() as u64)
        .str(": ")
        .num(fast + slow)
        .str(" syscalls intercepted (")
        .str(backend::name())
        .str("), ")
        .num(fast)
        .str(" on the fast path, ")
        .num(registry::patched_count() as u64)
        .str(" sites patched, ")
        .num(registry::unpatched_count() as u64)
        .str(" left on the slow path")
        .emit();
}

pub fn at_fatal_signal() {
    at_exit();
}

/// A new process starts with its own figures, not its parent's.
pub fn after_fork_in_child() {
    for c in FAST.iter().chain(SLOW.iter()) {
        c.store(0, Ordering::Relaxed);
    }
    PRINTED.store(false, Ordering::Relaxed);
}
