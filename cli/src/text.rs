//! The text form of an aggregate: like `strace -c`, with percentiles
//! (docs/report-schema.md, "Text").

use std::fmt::Write as _;

use crate::merge::{Aggregate, Process, Site};
use crate::report::{Exit, SyscallStats, Totals, UnpatchedSite};

/// Processes named in a header before "... N more".
const MAX_NAMED: usize = 8;

/// A duration for the table: `850ns`, `12.34us`, `2.10ms`, `1.50s`.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 999.5 {
        format!("{}ns", ns.round() as u64)
    } else if ns < 999_995.0 {
        format!("{:.2}us", ns / 1e3)
    } else if ns < 999_995_000.0 {
        format!("{:.2}ms", ns / 1e6)
    } else {
        format!("{:.2}s", ns / 1e9)
    }
}

/// How a process or command ended, in words: `exit status 0`, `killed by
/// SIGSEGV`, `replaced by execve`.
pub fn describe_exit(e: &Exit) -> String {
    match e.how.as_str() {
        "exit_group" | "exit" => match e.status {
            Some(s) => format!("exit status {s}"),
            None => "exited".to_string(),
        },
        "signal" => match (&e.name, e.signal) {
            (Some(n), _) => format!("killed by {n}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "killed by a signal".to_string(),
        },
        "exec" => "replaced by execve".to_string(),
        other => other.to_string(),
    }
}

/// The whole aggregate: with `-f`, every process's own table first (when
/// the aggregate kept them), then the aggregate's.
pub fn render(agg: &Aggregate) -> String {
    let mut out = String::new();
    for s in &agg.skipped {
        let _ = writeln!(out, "usertrap: skipped the report {}: {}", s.file, s.error);
    }
    if !agg.missing.is_empty() {
        let _ = writeln!(out, "usertrap: {}", crate::collect::describe(&agg.missing, agg.processes_seen));
    }
    if agg.processes.is_empty() {
        let _ = write!(out, "usertrap: {}", agg.note.as_deref().unwrap_or(crate::merge::NO_REPORT_NOTE));
        if let Some(st) = &agg.status {
            let _ = write!(out, "; the command ended: {}", describe_exit(st));
        }
        out.push('\n');
        return out;
    }
    for p in &agg.processes {
        if let Some(rows) = &p.syscalls {
            let _ = writeln!(out, "{}", process_header(p, agg.trace.as_deref()));
            table(&mut out, rows.iter(), &p.totals, agg.trace.as_deref());
            sites_of_process(&mut out, p.unpatched_sites.as_deref().unwrap_or(&[]));
            out.push('\n');
        }
    }
    let _ = writeln!(out, "{}", aggregate_header(agg));
    table(&mut out, agg.syscalls.iter().map(|m| &m.stats), &agg.totals, agg.trace.as_deref());
    aggregate_sites(&mut out, &agg.unpatched_sites);
    out
}

/// `usertrap: pid 4242 (python3), seccomp, exit status 0`.
fn process_header(p: &Process, trace: Option<&str>) -> String {
    let mut h = format!("usertrap: pid {} ({})", p.pid, p.command);
    if !p.backend.is_empty() {
        let _ = write!(h, ", {}", p.backend);
    }
    if let Some(e) = &p.exit {
        let _ = write!(h, ", {}", describe_exit(e));
    }
    if let Some(t) = trace {
        let _ = write!(h, ", trace={t}");
    }
    h
}

/// The aggregate's first line: the process's own header when there is one
/// process, else `usertrap: 3 processes (sh 4242, ls 4243, ...), seccomp`;
/// then the command's status (stat) and the trace sets.
fn aggregate_header(agg: &Aggregate) -> String {
    let mut h = if let [p] = agg.processes.as_slice() {
        let mut h = format!("usertrap: pid {} ({})", p.pid, p.command);
        if !p.backend.is_empty() {
            let _ = write!(h, ", {}", p.backend);
        }
        if agg.status.is_none() {
            if let Some(e) = &p.exit {
                let _ = write!(h, ", {}", describe_exit(e));
            }
        }
        h
    } else {
        // One entry per pid, in start order, with the commands its images
        // ran (`sh->ls` for a shell that exec'd ls).
        let mut pids: Vec<(u32, Vec<&str>)> = Vec::new();
        for p in &agg.processes {
            match pids.iter_mut().find(|(pid, _)| *pid == p.pid) {
                Some((_, cmds)) => cmds.push(&p.command),
                None => pids.push((p.pid, vec![&p.command])),
            }
        }
        let n = pids.len();
        let named: Vec<String> =
            pids.iter().take(MAX_NAMED).map(|(pid, cmds)| format!("{} {pid}", cmds.join("->"))).collect();
        let more = if n > MAX_NAMED { format!(", ... {} more", n - MAX_NAMED) } else { String::new() };
        let what = if n == 1 { "1 process".to_string() } else { format!("{n} processes") };
        let mut h = format!("usertrap: {what} ({}{more})", named.join(", "));
        let mut backends: Vec<&str> =
            agg.processes.iter().map(|p| p.backend.as_str()).filter(|b| !b.is_empty()).collect();
        backends.sort_unstable();
        backends.dedup();
        if !backends.is_empty() {
            let _ = write!(h, ", {}", backends.join("/"));
        }
        h
    };
    if let Some(st) = &agg.status {
        let _ = write!(h, ", {}", describe_exit(st));
    }
    if let Some(t) = &agg.trace {
        let _ = write!(h, ", trace={t}");
    }
    h
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The table: one row per syscall, then the total row.
fn table<'a>(out: &mut String, rows: impl Iterator<Item = &'a SyscallStats>, totals: &Totals, trace: Option<&str>) {
    let rows: Vec<&SyscallStats> = rows.collect();
    if rows.is_empty() {
        match trace {
            Some(t) => {
                let _ = writeln!(out, "  (no syscall of trace={t} was called)");
            }
            None => out.push_str("  (no syscalls were recorded)\n"),
        }
        return;
    }
    let _ = writeln!(
        out,
        "{:>7} {:>11} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7}  syscall",
        "% time", "seconds", "calls", "errors", "avg", "p50", "p99", "max", "fast %"
    );
    for s in &rows {
        let timed = match s.timed() {
            0 => s.calls,
            n => n,
        };
        // Calls that never return (exit_group, a successful execve) are
        // counted but not timed (or timed as 0, which no real syscall
        // takes): no latency to show.
        let untimed = s.max_ns == 0 && s.total_ns == 0;
        let dur = |ns: f64| if untimed { "-".to_string() } else { fmt_ns(ns) };
        let avg = if timed == 0 { 0.0 } else { s.total_ns as f64 / timed as f64 };
        let _ = writeln!(
            out,
            "{:>7.2} {:>11.6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7.1}  {}",
            pct(s.total_ns, totals.total_ns),
            s.total_ns as f64 / 1e9,
            s.calls,
            s.errors,
            dur(avg),
            dur(s.p50_ns as f64),
            dur(s.p99_ns as f64),
            dur(s.max_ns as f64),
            pct(s.fast_calls, s.calls),
            s.name
        );
    }
    let _ = writeln!(
        out,
        "{:>7.2} {:>11.6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7.1}  total",
        100.0,
        totals.total_ns as f64 / 1e9,
        totals.calls,
        totals.errors,
        "",
        "",
        "",
        "",
        pct(totals.fast_calls, totals.calls)
    );
}

/// One process's unpatched sites, as the library prints them.
fn sites_of_process(out: &mut String, sites: &[UnpatchedSite]) {
    if sites.is_empty() {
        return;
    }
    out.push_str("unpatched sites:\n");
    for s in sites {
        let _ = writeln!(out, "  {}  {}  {}", s.address, s.name, s.reason);
    }
}

/// The aggregate's unpatched sites: with one process, each site as the
/// library prints it; with several (whose addresses are not comparable
/// across exec), one line per syscall and reason with how many sites and
/// processes (`-f` lists each process's addresses).
fn aggregate_sites(out: &mut String, sites: &[Site]) {
    if sites.is_empty() {
        return;
    }
    let first = sites[0].pid;
    if sites.iter().all(|s| s.pid == first) {
        out.push_str("unpatched sites:\n");
        for s in sites {
            let _ = writeln!(out, "  {}  {}  {}", s.address, s.name, s.reason);
        }
        return;
    }
    /// The sites of one (syscall, reason): distinct addresses (a forked
    /// child shares its parent's) and distinct pids.
    struct Group<'a> {
        name: &'a str,
        reason: &'a str,
        addresses: Vec<&'a str>,
        pids: Vec<u32>,
    }
    let mut groups: Vec<Group<'_>> = Vec::new();
    for s in sites {
        let i = match groups.iter().position(|g| g.name == s.name && g.reason == s.reason) {
            Some(i) => i,
            None => {
                groups.push(Group { name: &s.name, reason: &s.reason, addresses: Vec::new(), pids: Vec::new() });
                groups.len() - 1
            }
        };
        let g = &mut groups[i];
        if !g.addresses.contains(&s.address.as_str()) {
            g.addresses.push(&s.address);
        }
        if !g.pids.contains(&s.pid) {
            g.pids.push(s.pid);
        }
    }
    out.push_str("unpatched sites (per syscall and reason; -f lists each process's):\n");
    for g in groups {
        let plural = |n: usize, one: &str, many: &str| if n == 1 { format!("1 {one}") } else { format!("{n} {many}") };
        let sites = plural(g.addresses.len(), "site", "sites");
        let procs = plural(g.pids.len(), "process", "processes");
        let _ = writeln!(out, "  {}  {}  ({sites} in {procs})", g.name, g.reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(fmt_ns(0.0), "0ns");
        assert_eq!(fmt_ns(850.4), "850ns");
        assert_eq!(fmt_ns(12_340.0), "12.34us");
        assert_eq!(fmt_ns(999_999.0), "1.00ms");
        assert_eq!(fmt_ns(2_100_000.0), "2.10ms");
        assert_eq!(fmt_ns(1.5e9), "1.50s");
    }

    #[test]
    fn exits() {
        let e = Exit { how: "exit_group".into(), status: Some(3), ..Exit::default() };
        assert_eq!(describe_exit(&e), "exit status 3");
        let e = Exit { how: "signal".into(), signal: Some(11), name: Some("SIGSEGV".into()), ..Exit::default() };
        assert_eq!(describe_exit(&e), "killed by SIGSEGV");
    }
}
