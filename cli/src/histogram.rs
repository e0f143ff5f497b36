//! `usertrap report --histogram SYSCALL` (and `stat`'s): a syscall's latency distribution
//! drawn in the terminal, one line per non-empty bucket range, with the
//! p50/p90/p99/p99.9 markers.

use std::fmt::Write as _;

use crate::error::Failure;
use crate::merge::{rank, Aggregate};
use crate::report::{Bucket, SyscallStats};
use crate::text::fmt_ns;

/// Above this many non-empty buckets, lines cover a power of two each.
const MAX_LINES: usize = 40;
/// Width of the longest bar.
const BAR: u64 = 50;
/// The percentiles marked, as (per mille, label).
const MARKS: [(u64, &str); 4] = [(500, "p50"), (900, "p90"), (990, "p99"), (999, "p99.9")];

/// One drawn line: a range and its count.
struct Line {
    low: f64,
    high: f64,
    count: u64,
}

/// The buckets as lines: one each, or grouped by power of two (values below
/// 16 ns together) when there are more than MAX_LINES.
fn lines(hist: &[Bucket]) -> (Vec<Line>, bool) {
    let nonempty = hist.iter().filter(|b| b.count > 0);
    if hist.iter().filter(|b| b.count > 0).count() <= MAX_LINES {
        return (nonempty.map(|b| Line { low: b.low, high: b.high, count: b.count }).collect(), false);
    }
    let octave = |b: &Bucket| if b.low < 16.0 { 0 } else { (b.low as u64).ilog2() };
    let mut out: Vec<(u32, Line)> = Vec::new();
    for b in nonempty {
        let k = octave(b);
        match out.last_mut() {
            Some((lk, l)) if *lk == k => {
                l.high = l.high.max(b.high);
                l.count = l.count.saturating_add(b.count);
            }
            _ => out.push((k, Line { low: b.low, high: b.high, count: b.count })),
        }
    }
    (out.into_iter().map(|(_, l)| l).collect(), true)
}

/// Checks the `--histogram` names before anything runs: each must be a
/// syscall a report can hold (exit status 2 otherwise).
pub fn check_names(names: &[String]) -> Result<(), Failure> {
    let unknown: Vec<&str> =
        names.iter().map(String::as_str).filter(|n| !usertrap_core::syscalls::is_report_name(n)).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(Failure::usage(format!(
        "--histogram: unknown syscall {} (x86-64 names, as in the kernel's syscall_64.tbl)",
        unknown.join(", ")
    )))
}

/// The histograms of `names` in the aggregate, a blank line between them;
/// a line saying so for a syscall no process made.
pub fn draw_named(agg: &Aggregate, names: &[String]) -> String {
    let mut out = String::new();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match agg.syscalls.iter().find(|m| &m.stats.name == name) {
            Some(m) => out.push_str(&draw(&m.stats, m.processes)),
            None => {
                let within = agg.trace.as_ref().map(|t| format!(" of trace={t}")).unwrap_or_default();
                out.push_str(&format!("usertrap: no calls of {name} in these reports{within}\n"));
            }
        }
    }
    out
}

/// Draws `s`'s histogram (already merged over processes).
pub fn draw(s: &SyscallStats, processes: u64) -> String {
    let mut out = String::new();
    let timed = s.timed();
    let procs = if processes == 1 { "1 process".to_string() } else { format!("{processes} processes") };
    let _ = writeln!(out, "{} (nr {}): {} calls in {procs}, {timed} timed", s.name, s.nr, s.calls);
    if timed == 0 {
        out.push_str("  no latency was measured (no histogram)\n");
        return out;
    }
    let (lines, grouped) = lines(&s.histogram);
    let biggest = lines.iter().map(|l| l.count).max().unwrap_or(1).max(1);
    // Which line holds each marked rank.
    let mut marks: Vec<Vec<&str>> = vec![Vec::new(); lines.len()];
    for (per_mille, label) in MARKS {
        let target = rank(timed, per_mille);
        let mut seen = 0u64;
        for (i, l) in lines.iter().enumerate() {
            seen = l.count.saturating_add(seen);
            if seen >= target {
                marks[i].push(label);
                break;
            }
        }
    }
    let _ = writeln!(out, "{:^23}  {:>10}", "latency", "count");
    for (l, m) in lines.iter().zip(&marks) {
        let width = ((l.count as u128 * BAR as u128).div_ceil(biggest as u128)).max(1) as usize;
        let bar = "#".repeat(width);
        let mark = if m.is_empty() { String::new() } else { format!("  <- {}", m.join(" ")) };
        let _ = writeln!(
            out,
            "{:>10} .. {:<9}  {:>10}  {:<w$}{mark}",
            fmt_ns(l.low),
            fmt_ns(l.high),
            l.count,
            bar,
            w = BAR as usize
        );
        // Trim the padding of lines without a marker.
        if m.is_empty() {
            let trimmed = out.trim_end().len();
            out.truncate(trimmed);
            out.push('\n');
        }
    }
    if grouped {
        let _ = writeln!(out, "  (buckets grouped by powers of two: {} buckets)", s.histogram.len());
    }
    let _ = writeln!(
        out,
        "p50 {}  p90 {}  p99 {}  p99.9 {}  min {}  max {}",
        fmt_ns(s.p50_ns as f64),
        fmt_ns(s.p90_ns as f64),
        fmt_ns(s.p99_ns as f64),
        fmt_ns(s.p999_ns as f64),
        fmt_ns(s.min_ns as f64),
        fmt_ns(s.max_ns as f64)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_land_on_the_buckets_holding_the_ranks() {
        let s = SyscallStats {
            name: "read".into(),
            calls: 100,
            histogram: vec![
                Bucket { low: 100.0, high: 104.0, count: 60 },
                Bucket { low: 200.0, high: 208.0, count: 39 },
                Bucket { low: 1000.0, high: 1024.0, count: 1 },
            ],
            ..SyscallStats::default()
        };
        let d = draw(&s, 2);
        let lines: Vec<&str> = d.lines().collect();
        assert!(lines[0].starts_with("read (nr 0): 100 calls in 2 processes, 100 timed"), "{d}");
        assert!(lines[2].ends_with("<- p50"), "{d}");
        assert!(lines[3].ends_with("<- p90 p99"), "{d}");
        assert!(lines[4].ends_with("<- p99.9"), "{d}");
        assert_eq!(lines[2].matches('#').count(), 50);
        assert_eq!(lines[4].matches('#').count(), 1);
    }

    #[test]
    fn many_buckets_are_grouped() {
        let histogram: Vec<Bucket> = (0..64)
            .map(|i| {
                let (low, high) = crate::merge::canonical_bucket(16.0 * 1.1f64.powi(i));
                Bucket { low: low as f64, high: high as f64, count: 1 }
            })
            .collect();
        let merged = crate::merge::merge_histograms(&[&histogram]);
        assert!(merged.len() > MAX_LINES);
        let s = SyscallStats { name: "x".into(), calls: 64, histogram: merged, ..SyscallStats::default() };
        let d = draw(&s, 1);
        assert!(d.contains("buckets grouped by powers of two"), "{d}");
        assert!(d.lines().count() < MAX_LINES, "{d}");
    }
}
