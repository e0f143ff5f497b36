//! Per-syscall figures, accumulated per thread without locks and without
//! writing a cache line another thread writes: call counts by path (fast: a
//! patched site's trampoline; slow: a signal), errors by errno, and the
//! latency of the real syscall (total, min, max and a log-linear histogram).
//!
//! Each thread's figures live in a table mapped on its first syscall and
//! found through its thread area; the report (measure::report) merges the tables
//! of every area when the process ends. Everything here is integer code: it
//! runs on the fast path, where vector registers must stay untouched.
//!
//! Time is measured with rdtsc (converted with a frequency calibrated against
//! CLOCK_MONOTONIC between start-up and the report) where the TSC is
//! invariant, and with clock_gettime(CLOCK_MONOTONIC) otherwise.

use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::rt::raw;
use crate::rt::thread::{self, ThreadArea};

use crate::rt::figures::record_latency;
pub use crate::rt::figures::{
    site_key, site_of_key, site_slot, Path, SiteStats, SysStats, ThreadStats, I386_BASE, I386_FLAG, MAX_ERRNO, MAX_NR,
    MAX_NR_I386, PER_THREAD, SITES_PER_THREAD, SITE_MERGE, SITE_SLOTS, SLOTS,
};

const TABLE_LEN: usize = (core::mem::size_of::<ThreadStats>() + 4095) & !4095;

/// Process-wide call counts for threads without a table (no thread area, or
/// more distinct syscalls than PER_THREAD).
#[link_section = ".bss.usertrap_large"]
static FALLBACK: [[AtomicU64; SLOTS]; 2] = [const { [const { AtomicU64::new(0) }; SLOTS] }; 2];
/// Whether FALLBACK has been counted into: most processes never do, and
/// its 16 KiB are then never touched (reading them at the report, or
/// clearing them in every fork child, cost a page fault per page).
static FALLBACK_USED: AtomicBool = AtomicBool::new(false);

/// The table slot of syscall `nr` (i386 numbers after the x86-64 ones).
pub fn index_of(nr: i64) -> usize {
    if (0..MAX_NR as i64).contains(&nr) {
        nr as usize
    } else if (I386_FLAG..I386_FLAG + MAX_NR_I386 as i64).contains(&nr) {
        I386_BASE + (nr - I386_FLAG) as usize
    } else {
        MAX_NR
    }
}

/// The thread's table, mapped on first use.
#[inline(always)]
pub fn table_of(area: &ThreadArea) -> Option<*mut ThreadStats> {
    let mut table = area.stats.get();
    if table.is_null() {
        table = crate::rt::owned::map(TABLE_LEN, libc::PROT_READ | libc::PROT_WRITE).ok()? as *mut ThreadStats;
        // SAFETY: the fresh zeroed mapping just made (all Cells: zero is
        // valid), this thread's own.
        let t = unsafe { &*table };
        // The index and the site keys are read before they are written:
        // write their pages first (see `claim`).
        t.used.set(0);
        for k in [t.sites.keys.first(), t.sites.keys.last()].into_iter().flatten() {
            k.set(0);
        }
        area.stats.set(table);
    }
    Some(table)
}

/// A block of a fresh table was just handed out (still all zeros): write a
/// zero at its first and last word, so the first access to each of its
/// pages is a write. A read first (the counters are read, then written)
/// maps the kernel's shared zero page, and the write after it faults a
/// second time: two page faults a page instead of one.
#[inline(always)]
fn claim(first: &Cell<u64>, last: Option<&Cell<u32>>) {
    first.set(0);
    if let Some(l) = last {
        l.set(0);
    }
}

/// This thread's block for syscall `nr`, created on first use.
#[inline(always)]
fn block(area: &ThreadArea, nr: usize) -> Option<&SysStats> {
    let table = table_of(area)?;
    // SAFETY: the table is this thread's own mapping (zeroed: all Cells 0),
    // never unmapped, and only touched by this thread (or by the report,
    // when the process ends).
    let t = unsafe { &*table };
    let slot = t.index.get(nr)?;
    let mut i = slot.get() as usize;
    if i == 0 {
        let used = t.used.get() as usize;
        if used >= PER_THREAD {
            return None;
        }
        t.used.set(used as u16 + 1);
        i = used + 1;
        slot.set(i as u16);
        let b = t.blocks.get(i - 1)?;
        claim(&b.fast, b.hist.last());
        return Some(b);
    }
    t.blocks.get(i - 1)
}

/// A syscall is about to run on `path`: count it. Returns the block to time
/// it into, if this thread keeps one.
#[inline(always)]
pub fn begin(area: Option<&ThreadArea>, path: Path, nr: i64) -> Option<&SysStats> {
    let i = index_of(nr);
    match area.and_then(|a| block(a, i)) {
        Some(b) => {
            let c = if path == Path::Fast { &b.fast } else { &b.slow };
            c.set(c.get() + 1);
            Some(b)
        }
        None => {
            if let Some(c) = FALLBACK.get(path as usize).and_then(|row| row.get(i)) {
                if !FALLBACK_USED.load(Ordering::Relaxed) {
                    FALLBACK_USED.store(true, Ordering::Relaxed);
                }
                c.fetch_add(1, Ordering::Relaxed);
            }
            None
        }
    }
}

/// The syscall returned `result` after `ticks` clock ticks.
#[inline(always)]
pub fn end(b: Option<&SysStats>, result: i64, ticks: u64) {
    let Some(b) = b else { return };
    if (-4095..0).contains(&result) {
        b.errors.set(b.errors.get() + 1);
        let e = (-result) as usize;
        if let Some(c) = b.errnos.get(if e < MAX_ERRNO { e } else { 0 }) {
            c.set(c.get().saturating_add(1));
        }
    }
    record_latency([&b.total, &b.min, &b.max, &b.timed], ticks);
    if let Some(c) = b.hist.get(bucket(ticks)) {
        c.set(c.get().saturating_add(1));
    }
}

/// Calls at a site made by threads without a table.
static SITES_UNTABLED: AtomicU64 = AtomicU64::new(0);

/// A syscall is about to run at call site `site` (the address after its
/// `syscall`) on `path`: count it in this thread's site table. Returns the
/// site's figures to time it into, None past SITES_PER_THREAD sites (then
/// counted in `not_kept`) or without a table (counted in the fallback by
/// `begin` already). A multiply, a compare or a few, two increments: the
/// table is the thread's own, so no cache line is shared.
#[inline(always)]
pub fn site_begin(area: Option<&ThreadArea>, path: Path, site: u64, nr: i64) -> Option<&SiteStats> {
    let Some(table) = area.and_then(table_of) else {
        // No table (no thread area, or no memory for it): rare, counted
        // process-wide.
        SITES_UNTABLED.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    // SAFETY: as in `block`: the thread's own table, never unmapped.
    let t = unsafe { &(*table).sites };
    let key = site_key(site, nr);
    let mut i = site_slot(key, SITE_SLOTS);
    let b = loop {
        let k = t.keys.get(i)?;
        match k.get() {
            x if x == key => break t.sites.get((t.at.get(i)?.get() as usize).checked_sub(1)?)?,
            0 => {
                let used = t.used.get();
                if used as usize >= SITES_PER_THREAD {
                    t.not_kept.set(t.not_kept.get() + 1);
                    return None;
                }
                // The figures' index is taken first: a program handler
                // that interrupts this and calls at another site gets the
                // next one.
                t.used.set(used + 1);
                let b = t.sites.get(used as usize)?;
                claim(&b.fast, b.hist.last());
                t.at.get(i)?.set(used as u8 + 1);
                k.set(key);
                break b;
            }
            _ => i = (i + 1) & (SITE_SLOTS - 1),
        }
    };
    let c = if path == Path::Fast { &b.fast } else { &b.slow };
    c.set(c.get() + 1);
    Some(b)
}

/// Take back what [`begin`] and [`site_begin`] counted for a call that
/// does not run on `path` after all (a fast version that declines it: it
/// runs on the slow path, and is counted there).
#[cold]
pub fn retract(area: Option<&ThreadArea>, path: Path, nr: i64, block: Option<&SysStats>, at_site: Option<&SiteStats>) {
    let down = |c: &core::cell::Cell<u64>| c.set(c.get().saturating_sub(1));
    let down_shared = |c: &AtomicU64| {
        let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    };
    match block {
        Some(b) => down(if path == Path::Fast { &b.fast } else { &b.slow }),
        None => {
            if let Some(c) = FALLBACK.get(path as usize).and_then(|row| row.get(index_of(nr))) {
                down_shared(c);
            }
        }
    }
    match (at_site, area.map(|a| a.stats.get()).filter(|t| !t.is_null())) {
        (Some(b), _) => down(if path == Path::Fast { &b.fast } else { &b.slow }),
        // SAFETY: as in `block`: the thread's own table, never unmapped.
        (None, Some(table)) => down(unsafe { &(*table).sites.not_kept }),
        (None, None) => down_shared(&SITES_UNTABLED),
    }
}

/// The syscall at a site returned `result` after `ticks` clock ticks.
#[inline(always)]
pub fn site_end(b: Option<&SiteStats>, result: i64, ticks: u64) {
    let Some(b) = b else { return };
    if (-4095..0).contains(&result) {
        b.errors.set(b.errors.get() + 1);
    }
    record_latency([&b.total, &b.min, &b.max, &b.timed], ticks);
    if let Some(c) = b.hist.get(bucket(ticks) / SITE_MERGE) {
        c.set(c.get().saturating_add(1));
    }
}

/// The histogram bucket of a value, and the values a bucket holds:
/// usertrap-core's log-linear scheme, which `usertrap report` reads back.
pub use usertrap_core::report::{bucket, bucket_bounds};

// --- the clock ---------------------------------------------------------------

static USE_TSC: AtomicBool = AtomicBool::new(false);
/// The TSC was turned off after start-up: ticks are CLOCK_MONOTONIC scaled to
/// its frequency (KNOWN_HZ), plus TSC_OFFSET (see `tsc_disabled`).
static TSC_OFF: AtomicBool = AtomicBool::new(false);
static TSC_OFFSET: AtomicU64 = AtomicU64::new(0);
/// USERTRAP_TIMING: take timestamps around every call.
static TIMING: AtomicBool = AtomicBool::new(true);

pub fn set_timing(on: bool) {
    TIMING.store(on, Ordering::Relaxed);
}

/// Whether calls are timed (else `now` is not called and latencies stay 0).
#[inline(always)]
pub fn timing() -> bool {
    TIMING.load(Ordering::Relaxed)
}
/// The clock at start-up, read on both sides of a CLOCK_MONOTONIC reading
/// (START_MONO_NS): the midpoint, and how far apart the two reads were.
static START_TSC: AtomicU64 = AtomicU64::new(0);
static START_TSC_SPREAD: AtomicU64 = AtomicU64::new(0);
static START_MONO_NS: AtomicU64 = AtomicU64::new(0);
static START_REAL_NS: AtomicU64 = AtomicU64::new(0);

/// Clock ticks now (TSC cycles, or ns of CLOCK_MONOTONIC).
#[inline(always)]
pub fn now() -> u64 {
    if USE_TSC.load(Ordering::Relaxed) {
        if TSC_OFF.load(Ordering::Relaxed) {
            let ticks = mono_ticks(clock_ns(libc::CLOCK_MONOTONIC), KNOWN_HZ.load(Ordering::Relaxed));
            return ticks.wrapping_add(TSC_OFFSET.load(Ordering::Relaxed));
        }
        // SAFETY: rdtsc exists on every x86-64 CPU, and is enabled (or
        // TSC_OFF would be set: the library sees every PR_SET_TSC).
        unsafe { core::arch::x86_64::_rdtsc() }
    } else {
        clock_ns(libc::CLOCK_MONOTONIC)
    }
}

pub fn clock_ns(clock: i32) -> u64 {
    raw::clock_gettime_ns(clock)
}

/// Start-up: choose the clock, note when the process image started.
/// `hz_given`: USERTRAP_TSC_HZ is set, which says the TSC is invariant (the
/// usertrap command and the library hand it down only then), so CPUID
/// need not be asked: it costs 7-15 us in a nested VM.
pub fn start_clock(hz_given: bool) {
    // CPUID 0x80000007, EDX bit 8: the TSC runs at a constant rate in every
    // P-, C- and T-state (invariant TSC). Asked directly, without first
    // asking for the highest extended leaf (one CPUID, not two: 4-7 us
    // each in a VM): every x86-64 CPU has leaves up to 0x80000008 (the
    // address sizes long mode needs are reported there).
    let invariant = hz_given || core::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0;
    // An exec'd image may start with rdtsc turned off (PR_SET_TSC survives
    // exec): CLOCK_MONOTONIC then, from the start.
    USE_TSC.store(invariant && !tsc_off_at_start(), Ordering::Relaxed);
    TSC_OFF.store(false, Ordering::Relaxed);
    restart_clock();
}

fn restart_clock() {
    START_REAL_NS.store(clock_ns(libc::CLOCK_REALTIME), Ordering::Relaxed);
    let (tsc, spread, mono) = paired_reading();
    START_MONO_NS.store(mono, Ordering::Relaxed);
    START_TSC.store(tsc, Ordering::Relaxed);
    START_TSC_SPREAD.store(spread, Ordering::Relaxed);
}

/// CLOCK_MONOTONIC and the clock's ticks at the same moment: (ticks at the
/// midpoint of two reads around the CLOCK_MONOTONIC one, the ticks between
/// those two reads, CLOCK_MONOTONIC ns). The narrowest of up to 3 tries:
/// a try the kernel preempted is wide.
fn paired_reading() -> (u64, u64, u64) {
    let mut best = (0, u64::MAX, 0);
    for _ in 0..3 {
        let before = now();
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        let spread = now().wrapping_sub(before);
        if spread < best.1 {
            best = (before.wrapping_add(spread / 2), spread, mono);
        }
        // About a microsecond or less: as good as tries get.
        if spread < 2048 {
            break;
        }
    }
    best
}

/// CLOCK_MONOTONIC's resolution in ns (1 with high-resolution timers).
fn mono_resolution_ns() -> u64 {
    // Unknown: assume a coarse clock (the wait is longer).
    raw::clock_getres_ns(libc::CLOCK_MONOTONIC).map_or(1_000_000, |ns| ns.max(1))
}

/// The TSC frequency measured between start-up and now, with a bound on
/// its error in parts per million, and the CLOCK_MONOTONIC ns measured over.
/// The bound: the TSC reads around each CLOCK_MONOTONIC one can be off the
/// kernel's by at most half their spread, and each CLOCK_MONOTONIC value by
/// its resolution.
fn measured_hz(resolution_ns: u64) -> (u64, u64, u64) {
    let (t0, w0, m0) = (
        START_TSC.load(Ordering::Relaxed),
        START_TSC_SPREAD.load(Ordering::Relaxed),
        START_MONO_NS.load(Ordering::Relaxed),
    );
    let (t1, w1, m1) = paired_reading();
    let (dt, dm) = (t1.saturating_sub(t0), m1.saturating_sub(m0));
    if dt == 0 || dm == 0 {
        return (0, u64::MAX, dm);
    }
    let hz = (dt as u128 * 1_000_000_000 / dm as u128) as u64;
    let off_ticks = (w0 / 2).saturating_add(w1 / 2) as u128 + 2 * resolution_ns as u128 * hz as u128 / 1_000_000_000;
    let ppm = (off_ticks * 1_000_000 / dt as u128).min(u64::MAX as u128) as u64;
    (hz.max(1), ppm, dm)
}

/// CLOCK_MONOTONIC when the clock was started (start_clock).
pub fn start_mono_ns() -> u64 {
    START_MONO_NS.load(Ordering::Relaxed)
}

/// The clock's ticks and CLOCK_MONOTONIC ns at the same moment, when the
/// image (or fork child) started.
pub fn start_pair() -> (u64, u64) {
    (START_TSC.load(Ordering::Relaxed), START_MONO_NS.load(Ordering::Relaxed))
}

pub fn start_realtime_ns() -> u64 {
    START_REAL_NS.load(Ordering::Relaxed)
}

/// The TSC frequency given by USERTRAP_TSC_HZ (set by the usertrap command,
/// and by the library for the programs a process execs), 0 if unknown.
static KNOWN_HZ: AtomicU64 = AtomicU64::new(0);

pub fn set_known_hz(hz: u64) {
    KNOWN_HZ.store(hz, Ordering::Relaxed);
}

/// Ticks per second: 1e9 for CLOCK_MONOTONIC; for the TSC, its frequency as
/// given, or measured against CLOCK_MONOTONIC since start-up, waiting if
/// need be until the error bound (see `measured_hz`) is under 0.5% and at
/// least 20 us have passed. Most processes have lived that long by their
/// report: a fixed 0.5 ms wait used to be most of a short process's cost.
pub fn ticks_per_second() -> u64 {
    if !USE_TSC.load(Ordering::Relaxed) {
        return 1_000_000_000;
    }
    let known = KNOWN_HZ.load(Ordering::Relaxed);
    if known != 0 {
        return known;
    }
    let resolution = mono_resolution_ns();
    loop {
        let (hz, ppm, dm) = measured_hz(resolution);
        if ppm <= 5_000 && dm >= 20_000 {
            return hz;
        }
        // Past 0.5 s the bound is met unless the clock is very coarse: take
        // what there is rather than wait on.
        if dm >= 500_000_000 {
            return hz.max(1);
        }
        core::hint::spin_loop();
    }
}

/// The TSC is about to be turned off for this thread (PR_SET_TSC
/// PR_TSC_SIGSEGV, or strict seccomp mode), after which rdtsc faults. From
/// then on timestamps come from CLOCK_MONOTONIC, scaled to the TSC frequency
/// measured now and continuing from the TSC's current value: figures already
/// taken keep their unit, and the latency of a call that spans the switch
/// stays right. (The frequency may wait up to 0.5 ms to be measured.)
pub fn tsc_disabled() {
    if !USE_TSC.load(Ordering::Relaxed) || TSC_OFF.load(Ordering::Relaxed) {
        return;
    }
    let hz = ticks_per_second();
    KNOWN_HZ.store(hz, Ordering::Relaxed);
    let mono = clock_ns(libc::CLOCK_MONOTONIC);
    // SAFETY: rdtsc exists on every x86-64 CPU, and is still enabled here.
    let tsc = unsafe { core::arch::x86_64::_rdtsc() };
    TSC_OFFSET.store(tsc.wrapping_sub(mono_ticks(mono, hz)), Ordering::Relaxed);
    TSC_OFF.store(true, Ordering::Relaxed);
}

/// CLOCK_MONOTONIC ns as TSC ticks at `hz`.
#[inline(always)]
fn mono_ticks(ns: u64, hz: u64) -> u64 {
    (ns as u128 * hz as u128 / 1_000_000_000) as u64
}

/// Whether rdtsc is turned off for this process at start (PR_GET_TSC).
fn tsc_off_at_start() -> bool {
    raw::prctl_get_tsc() == Ok(PR_TSC_SIGSEGV)
}

const PR_TSC_SIGSEGV: i32 = libc::PR_TSC_SIGSEGV;

pub fn uses_tsc() -> bool {
    USE_TSC.load(Ordering::Relaxed)
}

// --- merging -------------------------------------------------------------------

/// Syscall numbers in use, one bit each.
pub type Used = [u64; SLOTS / 64 + 1];

pub fn is_used(used: &Used, nr: usize) -> bool {
    used.get(nr / 64).is_some_and(|w| w & (1 << (nr % 64)) != 0)
}

fn mark(used: &mut Used, nr: usize) {
    if let Some(w) = used.get_mut(nr / 64) {
        *w |= 1 << (nr % 64);
    }
}

/// When every thread's figures are in one table (one thread, as most short
/// processes have, or one table shared): that table's blocks, read in place,
/// with `index` filled from its own and the numbers in use. The report
/// then merges nothing: no fresh mapping whose blocks each cost a page
/// fault. None when there are several tables (or none).
pub fn sole_table(index: &mut MergeIndex) -> Option<(&'static [SysStats], Used)> {
    let (mut tables, mut sole) = (0usize, core::ptr::null::<ThreadStats>());
    for_each_table(|t, _| {
        tables += 1;
        sole = t;
    });
    if tables != 1 || sole.is_null() {
        return None;
    }
    // SAFETY: as in `for_each_table`: a thread's table stays mapped for the
    // life of the process, and the process is ending or reporting itself.
    let t: &'static ThreadStats = unsafe { &*sole };
    let mut used: Used = [0; SLOTS / 64 + 1];
    for (nr, (slot, at)) in t.index.iter().zip(index.iter_mut()).enumerate() {
        *at = slot.get();
        if *at != 0 {
            mark(&mut used, nr);
        }
    }
    mark_fallback(&mut used);
    Some((&t.blocks, used))
}

fn mark_fallback(used: &mut Used) {
    if FALLBACK_USED.load(Ordering::Relaxed) {
        for nr in 0..SLOTS {
            if fallback_calls(nr) != (0, 0) {
                mark(used, nr);
            }
        }
    }
}

/// Add the figures of every thread into `merged` (SLOTS blocks, zeroed:
/// only the blocks of numbers in use are touched, so the mapping stays
/// mostly untouched pages). Returns the numbers in use, counting the calls
/// of threads without a table too.
/// Where each syscall's merged figures are: `index[nr]` is 1 + the block of
/// `nr` in the merged table, 0 for none. Blocks are handed out in order of
/// first use, so a process that used 20 syscalls touches 20 blocks' pages of
/// the table, not one page (or two) per syscall across all of it.
pub type MergeIndex = [u16; SLOTS];

pub fn merge_into(merged: &[SysStats], index: &mut MergeIndex) -> Used {
    let mut used: Used = [0; SLOTS / 64 + 1];
    let mut blocks = 0u16;
    for_each_table(|t, _| {
        for (nr, slot) in t.index.iter().enumerate() {
            let i = slot.get() as usize;
            let (Some(src), Some(at)) = (i.checked_sub(1).and_then(|i| t.blocks.get(i)), index.get_mut(nr)) else {
                continue;
            };
            if *at == 0 {
                blocks += 1;
                *at = blocks;
            }
            if let Some(dst) = merged.get(*at as usize - 1) {
                dst.add(src);
                mark(&mut used, nr);
            }
        }
    });
    mark_fallback(&mut used);
    used
}

/// Merged call sites: `slots[i]` (0: free) is a slot of an open-addressing
/// table over `slots.len()` slots (a power of two), holding 1 + the entry
/// of the site hashed there; `entry(d)` is entry d's key and figures.
/// Entries are handed out in order of first use, so merging 40 sites
/// touches the pages of 40 entries, not of 40 slots scattered over the
/// whole table, and the slots are two bytes each (a page for 2,048).
pub struct MergedSites<'a, E> {
    pub slots: &'a [core::cell::Cell<u16>],
    pub entries: &'a [E],
    /// Entry `e`'s key (0 until used) and figures.
    pub entry: fn(&E) -> (&core::cell::Cell<u64>, &SiteStats),
    /// Distinct sites kept (at most 3/4 of the slots).
    pub used: usize,
    /// Calls at sites no table kept (a thread's, or this one, full).
    pub not_kept: u64,
}

impl<E> MergedSites<'_, E> {
    fn add(&mut self, key: u64, src: &SiteStats) {
        let n = self.slots.len();
        let mut i = site_slot(key, n);
        for _ in 0..n {
            let Some(slot) = self.slots.get(i) else { break };
            let d = slot.get() as usize;
            if d == 0 {
                let Some(e) = self.entries.get(self.used) else { break };
                if self.used * 4 >= n * 3 {
                    break;
                }
                let (k, dst) = (self.entry)(e);
                k.set(key);
                self.used += 1;
                slot.set(self.used as u16);
                // Zero already, but written before it is read: each fresh
                // page of the entries is then one page fault, not two (a
                // read maps the zero page, the write after it copies it).
                dst.clear();
                dst.add(src);
                return;
            }
            if let Some((k, dst)) = self.entries.get(d - 1).map(self.entry) {
                if k.get() == key {
                    dst.add(src);
                    return;
                }
            }
            i = (i + 1) & (n - 1);
        }
        self.not_kept = self.not_kept.saturating_add(src.fast.get() + src.slow.get());
    }
}

/// Whose figures a table holds.
#[derive(Clone, Copy)]
pub enum Owner<'a> {
    /// A thread's area (the thread may still run, or have ended).
    Area(&'a ThreadArea),
    /// A thread that ended and whose area went to another: its tid and name.
    Ended(i32, [u8; 16]),
}

/// Visit every thread's table: those of the areas, then those kept of
/// threads that ended (figures::keep_retired).
pub fn for_each_table(mut f: impl FnMut(&ThreadStats, Owner<'_>)) {
    thread::for_each_area(|a| {
        let table = a.stats.get();
        if !table.is_null() {
            // SAFETY: as in `block`; the process is ending, or this is a
            // report of the calling thread's own process.
            f(unsafe { &*table }, Owner::Area(a));
        }
    });
    crate::rt::figures::for_each_retired(|t, tid, name| f(t, Owner::Ended(tid, name)));
}

/// Add the call sites of every thread into `m` (zeroed), each under its
/// program site (`site`: the return address the dispatch was given, which
/// for Forms R and P is in the trampoline).
pub fn merge_sites_into<E>(m: &mut MergedSites<'_, E>, site: impl Fn(u64) -> u64) {
    m.not_kept = m.not_kept.saturating_add(SITES_UNTABLED.load(Ordering::Relaxed));
    for_each_table(|t, _| {
        let t = &t.sites;
        m.not_kept = m.not_kept.saturating_add(t.not_kept.get());
        for (k, s) in t.kept() {
            let (ret, nr) = site_of_key(k);
            m.add(site_key(site(ret), nr as i64), s);
        }
    });
}

/// The process-wide fallback counts of syscall `nr` (fast, slow).
pub fn fallback_calls(nr: usize) -> (u64, u64) {
    if !FALLBACK_USED.load(Ordering::Relaxed) {
        return (0, 0);
    }
    let get = |row: usize| FALLBACK.get(row).and_then(|r| r.get(nr)).map_or(0, |c| c.load(Ordering::Relaxed));
    (get(0), get(1))
}

/// The TSC frequency, if the process knows it or has run long enough to
/// measure it well without waiting (error bound under 0.05%, see
/// `measured_hz`: the descendants it is handed to keep it); 0 otherwise.
pub fn settled_hz() -> u64 {
    if !USE_TSC.load(Ordering::Relaxed) {
        return 0;
    }
    let known = KNOWN_HZ.load(Ordering::Relaxed);
    if known != 0 {
        return known;
    }
    match measured_hz(mono_resolution_ns()) {
        (hz, ppm, _) if ppm <= 500 => hz,
        _ => 0,
    }
}

/// A new process starts with its own figures, not its parent's (and keeps
/// the parent's TSC frequency, if it was measured well).
pub fn after_fork_in_child() {
    KNOWN_HZ.store(settled_hz(), Ordering::Relaxed);
    SITES_UNTABLED.store(0, Ordering::Relaxed);
    crate::rt::figures::forget_retired();
    if FALLBACK_USED.swap(false, Ordering::Relaxed) {
        for row in FALLBACK.iter() {
            row.iter().for_each(|c| c.store(0, Ordering::Relaxed));
        }
    }
    thread::for_each_area(|a| {
        let table = a.stats.get();
        if !table.is_null() {
            // SAFETY: only this thread exists in the new process.
            let t = unsafe { &*table };
            let used = t.used.get() as usize;
            t.blocks.iter().take(used).for_each(SysStats::clear);
            t.threads.set(0);
            let sites = &t.sites;
            if sites.used.get() != 0 || sites.not_kept.get() != 0 {
                sites.kept().for_each(|(_, s)| s.clear());
                for (k, a) in sites.keys.iter().zip(sites.at.iter()) {
                    k.set(0);
                    a.set(0);
                }
                sites.used.set(0);
                sites.not_kept.set(0);
            }
        }
    });
    restart_clock();
}
