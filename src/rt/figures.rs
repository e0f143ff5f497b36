//! The layout of the per-thread figures (`measure::stats` fills and reads
//! them): what one syscall number's figures hold, and one thread's table.
//! Here because the thread area points at its table.
//! Never: code beyond plain memory updates; no syscall, no lock.

use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

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

/// Merge one block's latency figures (total, min, max, calls timed) into
/// another's: the rule SysStats and SiteStats share.
fn merge_latency([total, min, max, timed]: [&Cell<u64>; 4], [o_total, o_min, o_max, o_timed]: [&Cell<u64>; 4]) {
    total.set(total.get().saturating_add(o_total.get()));
    if o_timed.get() != 0 {
        if timed.get() == 0 || o_min.get() < min.get() {
            min.set(o_min.get());
        }
        max.set(max.get().max(o_max.get()));
    }
    timed.set(timed.get().saturating_add(o_timed.get()));
}

/// Count one call that took `ticks` into a block's latency figures (total,
/// min, max, calls timed). On the fast path: integer code only.
#[inline(always)]
pub fn record_latency([total, min, max, timed]: [&Cell<u64>; 4], ticks: u64) {
    total.set(total.get() + ticks);
    if timed.get() == 0 || ticks < min.get() {
        min.set(ticks);
    }
    if ticks > max.get() {
        max.set(ticks);
    }
    timed.set(timed.get() + 1);
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
        merge_latency(
            [&self.total, &self.min, &self.max, &self.timed],
            [&other.total, &other.min, &other.max, &other.timed],
        );
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

/// A thread's figures: which block holds which syscall number, and its
/// call sites.
#[repr(C)]
pub struct ThreadStats {
    /// Block index + 1 for each syscall number (0: none yet).
    pub(crate) index: [Cell<u16>; SLOTS],
    pub(crate) used: Cell<u16>,
    pub(crate) blocks: [SysStats; PER_THREAD],
    pub(crate) sites: SiteTable,
    /// Threads whose figures this table holds, less one (per-thread
    /// reports: more than one when threads could not be kept apart).
    pub threads: Cell<u32>,
}

// --- per-thread reports -------------------------------------------------------

/// USERTRAP_THREADS=1: keep each thread's figures apart (a thread that
/// ends leaves its table to the report, with its tid and name).
static PER_THREAD_ON: AtomicBool = AtomicBool::new(false);

pub fn set_per_thread(on: bool) {
    PER_THREAD_ON.store(on, Ordering::Relaxed);
}

pub fn per_thread() -> bool {
    PER_THREAD_ON.load(Ordering::Relaxed)
}

/// Tables of threads that ended and whose area went to another thread,
/// kept for the report. Past RETIRED_MAX, a new thread adds to the table
/// of the one before it (ThreadStats::threads counts them).
pub const RETIRED_MAX: usize = 4096;

#[repr(C)]
struct Retired {
    table: AtomicU64,
    tid: AtomicU64,
    name: [AtomicU64; 2],
}

#[link_section = ".bss.usertrap_large"]
static RETIRED: [Retired; RETIRED_MAX] = [const {
    Retired { table: AtomicU64::new(0), tid: AtomicU64::new(0), name: [AtomicU64::new(0), AtomicU64::new(0)] }
}; RETIRED_MAX];
static RETIRED_N: AtomicUsize = AtomicUsize::new(0);

/// Keep the table of thread `tid` (named `name`), which ended: false if
/// there is no room.
pub fn keep_retired(table: *mut ThreadStats, tid: i32, name: [u8; 16]) -> bool {
    let i = RETIRED_N.fetch_add(1, Ordering::AcqRel);
    let Some(r) = RETIRED.get(i) else {
        RETIRED_N.store(RETIRED_MAX, Ordering::Release);
        return false;
    };
    let (a, b) = name.split_at(8);
    let word = |s: &[u8]| s.iter().rev().fold(0u64, |v, &x| (v << 8) | u64::from(x));
    r.name[0].store(word(a), Ordering::Relaxed);
    r.name[1].store(word(b), Ordering::Relaxed);
    r.tid.store(tid as u32 as u64, Ordering::Relaxed);
    r.table.store(table as u64, Ordering::Release);
    true
}

/// Visit the kept tables of ended threads: (table, tid, name).
pub fn for_each_retired(mut f: impl FnMut(&ThreadStats, i32, [u8; 16])) {
    let n = RETIRED_N.load(Ordering::Acquire).min(RETIRED_MAX);
    for r in RETIRED.iter().take(n) {
        let t = r.table.load(Ordering::Acquire);
        if t == 0 {
            continue;
        }
        let mut name = [0u8; 16];
        for (k, w) in r.name.iter().enumerate() {
            let v = w.load(Ordering::Relaxed).to_le_bytes();
            if let Some(d) = name.get_mut(k * 8..k * 8 + 8) {
                d.copy_from_slice(&v);
            }
        }
        // SAFETY: kept tables stay mapped for the life of the process and
        // no thread writes them any more.
        f(unsafe { &*(t as *const ThreadStats) }, r.tid.load(Ordering::Relaxed) as u32 as i32, name);
    }
}

/// Where the kept tables are, for the live view: (RETIRED, RETIRED_N,
/// the size of an entry, RETIRED_MAX); an entry starts with its table's
/// address.
pub fn retired_location() -> (u64, u64, u64, u64) {
    (RETIRED.as_ptr() as u64, (&raw const RETIRED_N) as u64, core::mem::size_of::<Retired>() as u64, RETIRED_MAX as u64)
}

/// A fork child: the parent's ended threads are not its own.
pub fn forget_retired() {
    let n = RETIRED_N.swap(0, Ordering::AcqRel).min(RETIRED_MAX);
    for r in RETIRED.iter().take(n) {
        r.table.store(0, Ordering::Relaxed);
    }
}

// --- call sites --------------------------------------------------------------

/// Slots of a thread's site table (open addressing, a power of two).
pub const SITE_SLOTS: usize = 64;
/// Call sites (site, syscall) one thread keeps figures for: the table is
/// never filled past this, so a probe always ends at a free slot within a
/// few steps. Calls at further sites are counted in `not_kept`.
pub const SITES_PER_THREAD: usize = 48;
// A site's figures are found by a u8 index + 1 (SiteTable::at).
const _: () = assert!(SITES_PER_THREAD < 255);
/// Sub-buckets of the log-linear histogram merged into one for a site:
/// 4 per power of two instead of 16 (a percentile within about 12%), so a
/// site's figures take 780 bytes, not 3.4 KiB.
pub const SITE_MERGE: usize = 4;
pub const SITE_HIST_LEN: usize = HIST_LEN.div_ceil(SITE_MERGE);

/// The figures of one call site (the address after its `syscall`) and one
/// syscall number: sites that take their number from a register (Forms R
/// and P, syscall(3)) may run several.
#[repr(C)]
pub struct SiteStats {
    pub fast: Cell<u64>,
    pub slow: Cell<u64>,
    pub errors: Cell<u64>,
    /// Sum, min and max of latencies, in clock ticks; calls timed.
    pub total: Cell<u64>,
    pub min: Cell<u64>,
    pub max: Cell<u64>,
    pub timed: Cell<u64>,
    /// Bucket `i` of the syscall histogram counts in `i / SITE_MERGE`.
    pub hist: [Cell<u32>; SITE_HIST_LEN],
}

impl SiteStats {
    /// Add `other` into `self` (merging threads).
    pub fn add(&self, other: &SiteStats) {
        let sum = |a: &Cell<u64>, b: &Cell<u64>| a.set(a.get().saturating_add(b.get()));
        sum(&self.fast, &other.fast);
        sum(&self.slow, &other.slow);
        sum(&self.errors, &other.errors);
        merge_latency(
            [&self.total, &self.min, &self.max, &self.timed],
            [&other.total, &other.min, &other.max, &other.timed],
        );
        for (a, b) in self.hist.iter().zip(other.hist.iter()) {
            a.set(a.get().saturating_add(b.get()));
        }
    }

    pub(crate) fn clear(&self) {
        for c in [&self.fast, &self.slow, &self.errors, &self.total, &self.min, &self.max, &self.timed] {
            c.set(0);
        }
        self.hist.iter().for_each(|c| c.set(0));
    }
}

/// One thread's call sites: `keys[i]` (0: free) names the site whose
/// figures are `sites[at[i] - 1]`. The figures are handed out in the order
/// sites are first met, not by hash slot: a process's first sites share a
/// few pages of the table instead of a fresh page each (the loader's 20-odd
/// sites in a launched image touched 10-12 pages of the 50 KiB the slots
/// took, and each first touch is a page fault).
#[repr(C)]
pub struct SiteTable {
    pub keys: [Cell<u64>; SITE_SLOTS],
    pub at: [Cell<u8>; SITE_SLOTS],
    pub used: Cell<u32>,
    /// Calls made at sites past SITES_PER_THREAD (counted, not kept).
    pub not_kept: Cell<u64>,
    pub sites: [SiteStats; SITES_PER_THREAD],
}

impl SiteTable {
    /// Each kept site's key and figures.
    pub fn kept(&self) -> impl Iterator<Item = (u64, &SiteStats)> {
        self.keys.iter().zip(self.at.iter()).filter_map(|(k, a)| {
            let i = (a.get() as usize).checked_sub(1)?;
            Some((k.get(), self.sites.get(i)?)).filter(|&(k, _)| k != 0)
        })
    }
}

/// The key of (site, syscall number): the site's address (below 2^47 in
/// user space) with the number above it. Numbers past 0xfffe (never valid)
/// share 0xffff. Never 0: a site is at least 2.
#[inline(always)]
pub fn site_key(site: u64, nr: i64) -> u64 {
    let nr = if (0..0xffff).contains(&nr) { nr as u64 } else { 0xffff };
    (site & ((1 << 48) - 1)) | (nr << 48)
}

/// The site and syscall number of a key (0xffff: a number past 0xfffe).
pub fn site_of_key(key: u64) -> (u64, u64) {
    (key & ((1 << 48) - 1), key >> 48)
}

/// The first slot to probe for `key` (Fibonacci hashing).
#[inline(always)]
pub fn site_slot(key: u64, slots: usize) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize & (slots - 1)
}
