//! The report's figures, merged over every thread, and the one-line summary;
//! the full report is written by text.rs and json.rs.
//! Never: choose where it goes (deliver.rs does).

use super::settings::{close, copy_cstr, cstr, Settings, Summary};
use crate::measure::stats::{self, SysStats, SLOTS};
use crate::patch::registry;
use crate::rt::log::{self, Line};
use crate::rt::raw;
use crate::trap::backend;
use usertrap_core::report;

/// How the process (image) ended.
#[derive(Clone, Copy)]
// `ExitGroup` names the syscall exit_group(2), as `LastThread` names exit(2)
// of the last thread: not a kind of "Exit" with "Group" left over.
#[allow(clippy::enum_variant_names)]
pub enum Exit {
    ExitGroup(i32),
    LastThread(i32),
    Signal(i32),
    Exec,
    /// The process asked to be traced: interception ends here.
    Traced,
}

pub(super) struct Report<'a> {
    /// The merged blocks, and which syscall has which (stats::merge_into).
    pub(super) merged: &'a [SysStats],
    pub(super) index: &'a stats::MergeIndex,
    pub(super) used: stats::Used,
    pub(super) hz: u64,
    pub(super) how: Exit,
    pub(super) end_real_ns: u64,
    /// The call sites (None: no memory for them, said in the report).
    pub(super) sites: Option<&'a super::sites::Merged>,
}

impl Report<'_> {
    pub(super) fn ns(&self, ticks: u64) -> u64 {
        (ticks as u128 * 1_000_000_000 / self.hz.max(1) as u128) as u64
    }

    /// The merged figures of `nr`, if it was used (others are never touched).
    pub(super) fn block(&self, nr: usize) -> Option<&SysStats> {
        if !stats::is_used(&self.used, nr) {
            return None;
        }
        let i = *self.index.get(nr)? as usize;
        self.merged.get(i.checked_sub(1)?)
    }

    /// (fast, slow) over every syscall, threads with tables or not.
    pub(super) fn calls(&self, nr: usize) -> (u64, u64) {
        if !stats::is_used(&self.used, nr) {
            return (0, 0);
        }
        let (ff, fs) = stats::fallback_calls(nr);
        self.block(nr).map_or((ff, fs), |b| (b.fast.get() + ff, b.slow.get() + fs))
    }

    pub(super) fn totals(&self) -> (u64, u64, u64, u64) {
        let (mut fast, mut slow, mut errors, mut ticks) = (0, 0, 0, 0);
        for nr in 0..SLOTS {
            let (f, s) = self.calls(nr);
            fast += f;
            slow += s;
            if let Some(b) = self.block(nr) {
                errors += b.errors.get();
                ticks += b.total.get();
            }
        }
        (fast, slow, errors, ticks)
    }

    /// Not inlined into the report: its path buffer would deepen the
    /// report's frame on the signal stack (a page fault a page) in every
    /// process, with a summary asked for or not.
    #[inline(never)]
    pub(super) fn summary(&self, s: &Settings) {
        let (fast, slow, _, _) = self.totals();
        let mut line = Line::new();
        line.str("pid ")
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
            .str(" left on the slow path, ")
            .num(registry::site_faults())
            .str(" site faults");
        match s.summary {
            Summary::Stderr => line.emit(),
            Summary::File(_) => {
                let path = cstr(&s.summary_path);
                let mut p = [0u8; 4200];
                copy_cstr(&mut p, path);
                let flags = libc::O_WRONLY
                    | libc::O_APPEND
                    | libc::O_CREAT
                    | libc::O_NONBLOCK
                    | libc::O_NOCTTY
                    | libc::O_CLOEXEC;
                let errno = match raw::open_cwd(&p, flags, 0o644) {
                    Err(e) => e,
                    Ok(fd) => {
                        let (_, e) = log::write_bounded(fd, line.finished());
                        close(fd);
                        e
                    }
                };
                if errno != 0 {
                    Line::new()
                        .str("pid ")
                        .num(raw::getpid() as u64)
                        .str(": the summary could not be appended to ")
                        .escaped(path, 200)
                        .str(": ")
                        .errno(errno)
                        .emit();
                }
            }
            Summary::Off => {}
        }
    }

    /// Syscall numbers with calls, by total time, largest first.
    pub(super) fn order(&self, buf: &mut [u16; SLOTS]) -> usize {
        let mut n = 0;
        for nr in 0..SLOTS {
            let (f, s) = self.calls(nr);
            if f + s != 0 {
                if let Some(slot) = buf.get_mut(n) {
                    *slot = nr as u16;
                    n += 1;
                }
            }
        }
        let total = |nr: u16| self.block(nr as usize).map_or(0, |b| b.total.get());
        if let Some(v) = buf.get_mut(..n) {
            v.sort_unstable_by(|a, b| total(*b).cmp(&total(*a)).then(a.cmp(b)));
        }
        n
    }

    /// The `per_mille` percentiles of a syscall's latencies, in ns, by
    /// usertrap-core's rule (report::percentile, all of them in one pass of
    /// the histogram: report::percentiles): for each, the upper bound of the
    /// histogram bucket holding that rank, kept within [min, max]. Read off
    /// the ticks and converted, it is what `usertrap report` reads off the
    /// JSON histogram (whose bounds are these ticks converted the same way).
    pub(super) fn percentiles_ns<const K: usize>(&self, b: &SysStats, per_mille: [u64; K]) -> [u64; K] {
        let counts = b.hist.iter().map(|c| u64::from(c.get()));
        let (min, max) = if b.timed.get() == 0 { (0, 0) } else { (b.min.get(), b.max.get()) };
        report::percentiles(counts, |i| stats::bucket_bounds(i).1, per_mille, min, max).map(|t| self.ns(t))
    }

    /// The same for a call site's (coarser) histogram.
    pub(super) fn site_percentiles_ns<const K: usize>(&self, b: &stats::SiteStats, per_mille: [u64; K]) -> [u64; K] {
        let counts = b.hist.iter().map(|c| u64::from(c.get()));
        let (min, max) = if b.timed.get() == 0 { (0, 0) } else { (b.min.get(), b.max.get()) };
        report::percentiles(counts, |j| super::sites::bounds(j).1, per_mille, min, max).map(|t| self.ns(t))
    }
}
