//! The layout of the per-thread figures (`measure::stats` fills and reads
//! them): what one syscall number's figures hold, and one thread's table.
//! Here because the thread area points at its table.
//! Never: code beyond plain memory updates; no syscall, no lock.

use core::cell::Cell;

/// Syscall numbers below this are kept one by one; the rest together.
pub const MAX_NR: usize = 512;
/// i386 syscalls (`int $0x80`) below this are kept one by one, in the slots
/// after MAX_NR (`I386_BASE + nr`); the rest with the other x86-64 ones.
pub const MAX_NR_I386: usize = 512;
pub const I386_BASE: usize = MAX_NR + 1;
/// Slots of figures: x86-64 numbers, the rest (MAX_NR), i386 numbers.
pub const SLOTS: usize = I386_BASE + MAX_NR_I386;
/// Added to an i386 number passed to `begin` (never a real x86-64 number).
pub const I386_FLAG: i64 = 1 << 40;
/// Distinct syscall numbers one thread keeps latencies for; a thread that
/// uses more (rare) counts the rest in the process-wide fallback, calls only.
pub const PER_THREAD: usize = 128;
/// errno values kept one by one (Linux's highest named errno is 133).
pub const MAX_ERRNO: usize = 134;

/// Histogram: values below 16 exactly, then each power of two from 2^4 to
/// 2^47 split into 16 equal parts (bucket width at most 1/16 of its value,
/// so a percentile read off it is within about 3%): usertrap-core's scheme,
/// shared with `usertrap report`.
pub use usertrap_core::report::HIST_LEN;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Fast = 0,
    Slow = 1,
}

/// One syscall number's figures, in one thread (or merged).
#[repr(C)]
pub struct SysStats {
    pub fast: Cell<u64>,
    pub slow: Cell<u64>,
    pub errors: Cell<u64>,
    /// Sum, min and max of latencies, in clock ticks.
    pub total: Cell<u64>,
    pub min: Cell<u64>,
    pub max: Cell<u64>,
    /// Calls whose latency was measured (not the ones that never return).
    pub timed: Cell<u64>,
    /// Errors by errno (index 0: errno >= MAX_ERRNO).
    pub errnos: [Cell<u32>; MAX_ERRNO],
    pub hist: [Cell<u32>; HIST_LEN],
}

impl SysStats {
    /// Add `other` into `self` (merging threads).
    pub fn add(&self, other: &SysStats) {
        let sum = |a: &Cell<u64>, b: &Cell<u64>| a.set(a.get() + b.get());
        sum(&self.fast, &other.fast);
        sum(&self.slow, &other.slow);
        sum(&self.errors, &other.errors);
        sum(&self.total, &other.total);
        if other.timed.get() != 0 {
            if self.timed.get() == 0 || other.min.get() < self.min.get() {
                self.min.set(other.min.get());
            }
            self.max.set(self.max.get().max(other.max.get()));
        }
        sum(&self.timed, &other.timed);
        for (a, b) in self.errnos.iter().zip(other.errnos.iter()) {
            a.set(a.get().saturating_add(b.get()));
        }
        for (a, b) in self.hist.iter().zip(other.hist.iter()) {
            a.set(a.get().saturating_add(b.get()));
        }
    }

    pub(crate) fn clear(&self) {
        for c in [&self.fast, &self.slow, &self.errors, &self.total, &self.min, &self.max, &self.timed] {
            c.set(0);
        }
        self.errnos.iter().for_each(|c| c.set(0));
        self.hist.iter().for_each(|c| c.set(0));
    }
}

/// A thread's figures: which block holds which syscall number.
#[repr(C)]
pub struct ThreadStats {
    /// Block index + 1 for each syscall number (0: none yet).
    pub(crate) index: [Cell<u16>; SLOTS],
    pub(crate) used: Cell<u16>,
    pub(crate) blocks: [SysStats; PER_THREAD],
}
