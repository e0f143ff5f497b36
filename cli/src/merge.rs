//! Merging per-process reports into one aggregate: per-syscall sums, merged
//! histograms and the percentiles read from them.
//!
//! Histograms are merged by adding the counts of equal buckets. When the
//! inputs' buckets do not line up (two processes calibrated slightly
//! different TSC frequencies, so their bounds converted to ns differ), every
//! bucket is re-bucketed by its midpoint into the library's log-linear
//! scheme, in ns: exact below 16 ns, then each power of two split into 16
//! equal parts.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::Serialize;
use usertrap_core::report;

use crate::args::SortKey;
use crate::report::{Bucket, Exit, Report, SyscallStats, ThreadReport, Totals, UnpatchedSite};
use crate::sites::{self as call_sites, MergedSite};
use crate::trace::TraceFilter;

/// The `format` of the aggregate `usertrap stat --json` and `usertrap
/// report --json` print (docs/report-schema.md).
pub const AGGREGATE_FORMAT: &str = "usertrap-aggregate";
/// Version 2 added `sites`, `sites_not_kept` and each process's `sites` (-f).
pub const AGGREGATE_VERSION: u64 = 2;

/// What an empty aggregate says.
pub const NO_REPORT_NOTE: &str =
    "no report was written by any process (killed by SIGKILL, or a set-user-ID program run unmonitored?)";

/// A report and where it came from.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file (`usertrap report`); None for the private files of `stat`.
    pub file: Option<PathBuf>,
    pub report: Report,
}

/// The aggregate over every process (JSON: see docs/report-schema.md,
/// "Aggregate (usertrap stat --json)").
#[derive(Debug, Clone, Serialize)]
pub struct Aggregate {
    pub format: &'static str,
    pub version: u64,
    /// `stat`: the command line run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// `stat`: how the command ended (`{"how":"exit","status":N}` or
    /// `{"how":"signal","signal":N,"name":"SIGX"}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Exit>,
    /// The `-e trace=` sets in effect (`;` between several), or null.
    pub trace: Option<String>,
    /// One entry per report (per process image), by start time.
    pub processes: Vec<Process>,
    /// Sums over `syscalls`.
    pub totals: Totals,
    /// Merged per syscall, by total time (or the `-S` key).
    pub syscalls: Vec<MergedSyscall>,
    pub unpatched_sites: Vec<Site>,
    /// Call sites merged over the processes (by object and offset), by
    /// total time.
    pub sites: Vec<MergedSite>,
    /// Calls at sites the library had no room to keep apart.
    pub sites_not_kept: u64,
    /// Reports that could not be read (`stat` only; `report` stops instead).
    pub skipped: Vec<Skipped>,
    /// `stat`: processes that started and sent no report (empty for `report`).
    pub missing: Vec<crate::collect::Missing>,
    /// `stat`: how many process images started or reported (0 for `report`).
    #[serde(skip_serializing_if = "is_zero")]
    pub processes_seen: usize,
    /// Set when there is no process: NO_REPORT_NOTE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One process (one report) in the aggregate.
#[derive(Debug, Clone, Serialize)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub command: String,
    pub backend: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub clock: String,
    pub exit: Option<Exit>,
    /// `usertrap report`: the file read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Sums over this process's syscalls (those `-e trace=` shows).
    pub totals: Totals,
    /// With `-f`: this process's own syscalls, as in its report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscalls: Option<Vec<SyscallStats>>,
    /// With `-f`: this process's unpatched sites.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unpatched_sites: Option<Vec<UnpatchedSite>>,
    /// With `--per-thread`: this process's threads (those whose report has
    /// them), by tid, with the syscalls shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<Vec<ThreadReport>>,
    /// With `-f`: this process's call sites.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sites: Option<Vec<MergedSite>>,
}

/// A syscall's figures merged over processes: the fields of a report's
/// syscall entry, plus how many processes made it.
#[derive(Debug, Clone, Serialize)]
pub struct MergedSyscall {
    #[serde(flatten)]
    pub stats: SyscallStats,
    pub processes: u64,
}

/// An unpatched site of one process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Site {
    pub pid: u32,
    pub address: String,
    pub nr: i64,
    pub name: String,
    pub reason: String,
}

/// A report `stat` could not use.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub file: String,
    pub error: String,
}

/// Builds the aggregate of `sources`, showing only the syscalls `filter`
/// keeps; `per_process` keeps each process's own rows too (`-f`).
pub fn aggregate(
    mut sources: Vec<Source>,
    filter: Option<&TraceFilter>,
    per_process: bool,
    per_thread: bool,
) -> Aggregate {
    sources.sort_by_key(|s| (s.report.start_ns, s.report.pid));
    let sources = latest_of_each_image(sources);
    let shown = |name: &str| filter.is_none_or(|f| f.matches(name));

    let mut processes = Vec::new();
    let mut sites = Vec::new();
    for src in &sources {
        let r = &src.report;
        let mut rows: Vec<SyscallStats> = r.syscalls.iter().filter(|s| shown(&s.name)).cloned().collect();
        sort_rows(&mut rows, |s| s);
        let own_sites: Vec<UnpatchedSite> = r.unpatched_sites.iter().filter(|s| shown(&s.name)).cloned().collect();
        sites.extend(own_sites.iter().map(|s| Site {
            pid: r.pid,
            address: s.address.clone(),
            nr: s.nr,
            name: s.name.clone(),
            reason: s.reason.clone(),
        }));
        processes.push(Process {
            pid: r.pid,
            ppid: r.ppid,
            command: r.command.clone(),
            backend: r.backend.clone(),
            start_ns: r.start_ns,
            end_ns: r.end_ns,
            clock: r.clock.clone(),
            exit: r.exit.clone(),
            file: src.file.as_ref().map(|f| f.display().to_string()),
            totals: Totals::of(&rows),
            syscalls: per_process.then(|| rows.clone()),
            unpatched_sites: per_process.then_some(own_sites),
            sites: per_process.then(|| call_sites::merge(std::iter::once(r), shown)),
            threads: per_thread.then(|| {
                let mut threads: Vec<ThreadReport> = r
                    .threads
                    .iter()
                    .map(|t| {
                        let mut rows: Vec<SyscallStats> =
                            t.syscalls.iter().filter(|s| shown(&s.name)).cloned().collect();
                        sort_rows(&mut rows, |s| s);
                        ThreadReport { totals: Totals::of(&rows), syscalls: rows, ..t.clone() }
                    })
                    .filter(|t| !t.syscalls.is_empty())
                    .collect();
                threads.sort_by_key(|t| t.tid);
                threads
            }),
        });
    }

    // Group every shown entry by syscall (number, then name).
    let mut groups: BTreeMap<(i64, &str), Vec<&SyscallStats>> = BTreeMap::new();
    for src in &sources {
        for s in src.report.syscalls.iter().filter(|s| shown(&s.name)) {
            groups.entry((s.nr, s.name.as_str())).or_default().push(s);
        }
    }
    let mut syscalls: Vec<MergedSyscall> = groups
        .into_values()
        .map(|entries| MergedSyscall { processes: entries.len() as u64, stats: merge_syscall(&entries) })
        .collect();
    sort_rows(&mut syscalls, |m| &m.stats);
    let totals = Totals::of(syscalls.iter().map(|m| &m.stats));

    Aggregate {
        format: AGGREGATE_FORMAT,
        version: AGGREGATE_VERSION,
        command: None,
        status: None,
        trace: filter.map(|f| f.spec.clone()),
        note: processes.is_empty().then(|| NO_REPORT_NOTE.to_string()),
        processes,
        totals,
        syscalls,
        unpatched_sites: sites,
        sites: call_sites::merge(sources.iter().map(|s| &s.report), shown),
        sites_not_kept: sources.iter().fold(0u64, |n, s| n.saturating_add(s.report.sites_not_kept)),
        skipped: Vec::new(),
        missing: Vec::new(),
        processes_seen: 0,
    }
}

/// One report per process image: its last. An image writes its report
/// before an execve (the image is gone once it succeeds); when the kernel
/// refuses the exec (E2BIG: an argument list too long for a shell's glob),
/// the image goes on and reports again at its end, with every call since
/// its start: the same pid and start time, a later end. Counting both would
/// count its calls before the exec twice. `sources` are sorted by start.
fn latest_of_each_image(sources: Vec<Source>) -> Vec<Source> {
    let mut kept: Vec<Source> = Vec::with_capacity(sources.len());
    let mut at: HashMap<(u32, u64), usize> = HashMap::new();
    for src in sources {
        let key = (src.report.pid, src.report.start_ns);
        match at.get(&key) {
            Some(&i) if key.1 != 0 => {
                if src.report.end_ns >= kept[i].report.end_ns {
                    kept[i] = src;
                }
            }
            _ => {
                at.insert(key, kept.len());
                kept.push(src);
            }
        }
    }
    kept
}

/// Rows by total time, then calls (both descending), then name.
fn sort_rows<T>(rows: &mut [T], stats: impl Fn(&T) -> &SyscallStats) {
    sort_rows_by(rows, SortKey::Time, stats);
}

/// Rows by `key` (`-S`): numbers largest first (`time` then by calls, as
/// the default order), `name` alphabetical; ties in name order.
pub fn sort_rows_by<T>(rows: &mut [T], key: SortKey, stats: impl Fn(&T) -> &SyscallStats) {
    // The average as the table shows it: total over timed calls (all calls
    // when none were timed), compared as fractions.
    let avg = |s: &SyscallStats| {
        let n = if s.timed() == 0 { s.calls } else { s.timed() };
        (u128::from(s.total_ns), u128::from(n.max(1)))
    };
    rows.sort_by(|a, b| {
        let (a, b) = (stats(a), stats(b));
        let first = match key {
            SortKey::Time => b.total_ns.cmp(&a.total_ns).then(b.calls.cmp(&a.calls)),
            SortKey::Calls => b.calls.cmp(&a.calls),
            SortKey::Avg => {
                let ((an, ad), (bn, bd)) = (avg(a), avg(b));
                (bn * ad).cmp(&(an * bd))
            }
            SortKey::P50 => b.p50_ns.cmp(&a.p50_ns),
            SortKey::P99 => b.p99_ns.cmp(&a.p99_ns),
            SortKey::Max => b.max_ns.cmp(&a.max_ns),
            SortKey::Errors => b.errors.cmp(&a.errors),
            SortKey::Name => std::cmp::Ordering::Equal,
        };
        first.then(a.name.cmp(&b.name))
    });
}

/// Re-sorts the aggregate's rows, and each process's own (`-f`), by `key`.
pub fn sort(agg: &mut Aggregate, key: SortKey) {
    sort_rows_by(&mut agg.syscalls, key, |m| &m.stats);
    for p in &mut agg.processes {
        if let Some(rows) = &mut p.syscalls {
            sort_rows_by(rows, key, |s| s);
        }
        for t in p.threads.iter_mut().flatten() {
            sort_rows_by(&mut t.syscalls, key, |s| s);
        }
    }
}

/// One syscall's entries from several reports, merged: sums, errors by
/// errno, the merged histogram, exact min/max, percentiles from the merged
/// histogram (for a single entry, the ones its report gives: the library
/// reads them by the same rule off the same buckets).
pub fn merge_syscall(entries: &[&SyscallStats]) -> SyscallStats {
    let Some(first) = entries.first() else { return SyscallStats::default() };
    let mut m =
        SyscallStats { name: first.name.clone(), nr: first.nr, abi: first.abi.clone(), ..SyscallStats::default() };
    let mut min: Option<u64> = None;
    for s in entries {
        // Saturating: reports are input, and absurd counts must not wrap.
        m.calls = m.calls.saturating_add(s.calls);
        m.errors = m.errors.saturating_add(s.errors);
        m.total_ns = m.total_ns.saturating_add(s.total_ns);
        m.fast_calls = m.fast_calls.saturating_add(s.fast_calls);
        m.slow_calls = m.slow_calls.saturating_add(s.slow_calls);
        for (errno, n) in &s.errors_by_errno {
            let c = m.errors_by_errno.entry(errno.clone()).or_default();
            *c = c.saturating_add(*n);
        }
        // min_ns means something only where calls were timed.
        if s.timed() > 0 || s.max_ns > 0 {
            min = Some(min.map_or(s.min_ns, |v| v.min(s.min_ns)));
        }
        m.max_ns = m.max_ns.max(s.max_ns);
    }
    m.min_ns = min.unwrap_or(0);
    let hists: Vec<&[Bucket]> = entries.iter().map(|s| s.histogram.as_slice()).collect();
    m.histogram = merge_histograms(&hists);
    // Read off the merged histogram by the library's own rule (usertrap-core's
    // report::percentile), so one report gives back the percentiles it holds.
    let p = |per_mille| percentile(&m.histogram, per_mille, m.min_ns, m.max_ns);
    (m.p50_ns, m.p90_ns, m.p99_ns, m.p999_ns) = (p(500), p(900), p(990), p(999));
    m
}

/// Merges histograms: equal buckets add up; if the buckets of the inputs
/// overlap without being equal, every bucket is re-bucketed by its midpoint
/// into `canonical_bucket`. Empty buckets are dropped; the result is ordered.
pub fn merge_histograms(hists: &[&[Bucket]]) -> Vec<Bucket> {
    let mut all: Vec<Bucket> = hists.iter().flat_map(|h| h.iter().copied()).filter(|b| b.count > 0).collect();
    all.sort_by(|a, b| a.low.total_cmp(&b.low).then(a.high.total_cmp(&b.high)));
    let mut merged: Vec<Bucket> = Vec::with_capacity(all.len());
    for b in &all {
        match merged.last_mut() {
            Some(last) if last.low == b.low && last.high == b.high => last.count = last.count.saturating_add(b.count),
            _ => merged.push(*b),
        }
    }
    if merged.windows(2).all(|w| w[0].high <= w[1].low) {
        return merged;
    }
    let mut canon: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for b in &all {
        let (low, high) = canonical_bucket(b.midpoint());
        let c = &mut canon.entry(low).or_insert((high, 0)).1;
        *c = c.saturating_add(b.count);
    }
    canon.into_iter().map(|(low, (high, count))| Bucket { low: low as f64, high: high as f64, count }).collect()
}

/// The bucket `[low, high)` of a latency of `ns` nanoseconds in the
/// log-linear scheme (usertrap-core's `canonical_bucket`): width 1 below 16,
/// then 2^(e-4) for values in [2^e, 2^(e+1)).
pub fn canonical_bucket(ns: f64) -> (u64, u64) {
    let x = if ns.is_nan() || ns <= 0.0 {
        0
    } else if ns >= (1u64 << 62) as f64 {
        1u64 << 62
    } else {
        ns.floor() as u64
    };
    report::canonical_bucket(x)
}

/// The rank (1-based) of the `per_mille` percentile among `n` values:
/// ceil(n * per_mille / 1000), at least 1.
pub use usertrap_core::report::rank;

/// The `per_mille` percentile of a histogram (usertrap-core's
/// `percentile`): the upper bound of the bucket holding that rank, kept
/// within the exact `[min, max]` (a percentile cannot exceed the largest
/// value seen). 0 for an empty histogram.
pub fn percentile(hist: &[Bucket], per_mille: u64, min: u64, max: u64) -> u64 {
    report::percentile(hist.iter().map(|b| (b.high.ceil() as u64, b.count)), per_mille, min, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(low: f64, high: f64, count: u64) -> Bucket {
        Bucket { low, high, count }
    }

    #[test]
    fn canonical_buckets_are_log_linear() {
        assert_eq!(canonical_bucket(0.0), (0, 1));
        assert_eq!(canonical_bucket(15.9), (15, 16));
        assert_eq!(canonical_bucket(16.0), (16, 17));
        assert_eq!(canonical_bucket(31.5), (31, 32));
        assert_eq!(canonical_bucket(32.0), (32, 34));
        assert_eq!(canonical_bucket(1100.0), (1088, 1152));
        assert_eq!(canonical_bucket(4000.0), (3968, 4096));
        assert_eq!(canonical_bucket(2_100_000.0), (2_097_152, 2_228_224));
    }

    #[test]
    fn equal_buckets_add_up_and_others_are_rebucketed() {
        let a = [b(1088.0, 1152.0, 2), b(1152.0, 1216.0, 1)];
        let c = [b(1088.0, 1152.0, 3)];
        assert_eq!(merge_histograms(&[&a, &c]), vec![b(1088.0, 1152.0, 5), b(1152.0, 1216.0, 1)]);
        // Shifted bounds (another TSC frequency): re-bucketed by midpoint.
        let d = [b(1090.0, 1154.0, 4)];
        assert_eq!(merge_histograms(&[&a, &d]), vec![b(1088.0, 1152.0, 6), b(1152.0, 1216.0, 1)]);
        assert!(merge_histograms(&[&[], &[b(1.0, 2.0, 0)]]).is_empty());
    }

    #[test]
    fn percentiles_are_bucket_upper_bounds_within_min_max() {
        let h = [b(100.0, 104.0, 50), b(200.0, 208.0, 40), b(1000.0, 1024.0, 10)];
        assert_eq!(percentile(&h, 500, 100, 1010), 104);
        assert_eq!(percentile(&h, 900, 100, 1010), 208);
        assert_eq!(percentile(&h, 990, 100, 1010), 1010);
        assert_eq!(percentile(&h, 999, 100, 0), 1024);
        assert_eq!(percentile(&[], 500, 0, 0), 0);
        assert_eq!(rank(1, 999), 1);
        assert_eq!(rank(1000, 999), 999);
        assert_eq!(rank(1001, 999), 1000);
    }
}
