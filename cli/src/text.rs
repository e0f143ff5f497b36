//! The text form of an aggregate: like `strace -c`, with percentiles
//! (docs/report-schema.md, "Text").

use std::fmt::Write as _;

use usertrap_core::report::{self as core_report, Name, Row};
use usertrap_core::sink::{self, Sink};

use crate::merge::{Aggregate, Process, Site};
use crate::report::{Exit, SyscallStats, Totals, UnpatchedSite};
use crate::sites::MergedSite;

/// Processes named in a header before "... N more".
const MAX_NAMED: usize = 8;

/// A growing buffer for usertrap-core's renderers.
#[derive(Default)]
pub struct ByteSink(pub Vec<u8>);

impl Sink for ByteSink {
    fn put(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

/// What `f` renders, as text (the renderers copy the reports' strings and
/// add ASCII, so nothing is lost).
pub fn rendered(f: impl FnOnce(&mut dyn Sink)) -> String {
    let mut b = ByteSink::default();
    f(&mut b);
    String::from_utf8_lossy(&b.0).into_owned()
}

/// A duration for the table: `850ns`, `12.34us`, `2.10ms`, `1.50s`
/// (usertrap-core's, here to a thousandth of a nanosecond).
pub fn fmt_ns(ns: f64) -> String {
    let milli = if ns.is_finite() && ns > 0.0 { (ns * 1000.0).round() as u128 } else { 0 };
    rendered(|s| sink::duration(s, milli, 1000, 0))
}

/// The report's exit fields as usertrap-core's.
fn core_exit(e: &Exit) -> core_report::Exit<'_> {
    core_report::Exit::from_fields(e.how.as_bytes(), e.status, e.signal, e.name.as_deref().map(str::as_bytes))
}

/// How a process or command ended, in words: `exit status 0`, `killed by
/// SIGSEGV`, `replaced by execve`.
pub fn describe_exit(e: &Exit) -> String {
    rendered(|s| core_report::describe_exit(s, &core_exit(e)))
}

/// What to show of the call sites.
#[derive(Debug, Clone, Copy, Default)]
pub struct SiteView {
    /// `--sites`: the table of every call site.
    pub table: bool,
    /// `-v`: every site with slow-path calls, not only those that matter.
    pub verbose: bool,
}

/// The whole aggregate: with `-f`, every process's own table first (when
/// the aggregate kept them), then the aggregate's.
pub fn render(agg: &Aggregate, view: SiteView) -> String {
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
            match p.sites.as_deref() {
                Some(sites) if !sites.is_empty() => call_sites(&mut out, sites, p.totals.calls, view),
                _ => sites_of_process(&mut out, p.unpatched_sites.as_deref().unwrap_or(&[])),
            }
            out.push('\n');
        }
    }
    let _ = writeln!(out, "{}", aggregate_header(agg));
    table(&mut out, agg.syscalls.iter().map(|m| &m.stats), &agg.totals, agg.trace.as_deref());
    if agg.sites.is_empty() {
        // Reports of version 1: no call sites, their unpatched sites.
        aggregate_sites(&mut out, &agg.unpatched_sites);
    } else {
        call_sites(&mut out, &agg.sites, agg.totals.calls, view);
    }
    for p in &agg.processes {
        for t in p.threads.iter().flatten() {
            out.push('\n');
            out.push_str(&rendered(|s| {
                core_report::thread_header(
                    s,
                    p.pid.into(),
                    p.command.as_bytes(),
                    t.tid.into(),
                    t.name.as_bytes(),
                    t.folded,
                )
            }));
            out.push('\n');
            table(&mut out, t.syscalls.iter(), &t.totals, agg.trace.as_deref());
        }
    }
    if agg.sites_not_kept > 0 {
        let _ = writeln!(
            out,
            "usertrap: {} calls were made at call sites past the ones kept per thread (48) or per process (768): \
             counted above, not by site",
            agg.sites_not_kept
        );
    }
    out
}

/// The slow-path sites that matter (all with `-v`), then with `--sites`
/// the table of every call site.
fn call_sites(out: &mut String, sites: &[MergedSite], all_calls: u64, view: SiteView) {
    let slow: Vec<&MergedSite> = sites
        .iter()
        .filter(|s| {
            s.stats.slow_calls > 0 && (view.verbose || core_report::slow_site_matters(s.stats.slow_calls, all_calls))
        })
        .collect();
    if !slow.is_empty() {
        out.push_str(&String::from_utf8_lossy(core_report::SLOW_SITES_TITLE));
        for s in slow {
            out.push_str(&rendered(|o| {
                core_report::slow_site(
                    o,
                    s.stats.slow_calls,
                    &Name::Text(s.stats.name.as_bytes()),
                    s.location().as_bytes(),
                    s.reason.as_deref().unwrap_or("").as_bytes(),
                )
            }));
        }
    }
    if view.table {
        site_table(out, sites);
    }
}

/// Every call site: calls, errors, total, avg, p50, p99, fast %, syscall,
/// and where (function+offset and object).
pub fn site_table(out: &mut String, sites: &[MergedSite]) {
    out.push_str("call sites, by total time:\n");
    out.push_str("      calls     errors      total        avg        p50        p99  fast %  syscall  site\n");
    for s in sites {
        let st = &s.stats;
        let timed = st.timed();
        let avg = if timed == 0 { 0.0 } else { st.total_ns as f64 / timed as f64 };
        let untimed = timed == 0;
        let d = |v: f64| if untimed { "-".to_string() } else { fmt_ns(v) };
        let fast = if st.calls == 0 { 0.0 } else { st.fast_calls as f64 * 100.0 / st.calls as f64 };
        let _ = writeln!(
            out,
            "{:>11} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7.1}  {}  {}",
            st.calls,
            st.errors,
            d(st.total_ns as f64),
            d(avg),
            d(st.p50_ns as f64),
            d(st.p99_ns as f64),
            fast,
            st.name,
            s.location()
        );
    }
}

/// `usertrap: pid 4242 (python3), seccomp, exit status 0`.
fn process_header(p: &Process, trace: Option<&str>) -> String {
    let exit = p.exit.as_ref().map(core_exit);
    rendered(|s| {
        core_report::process_header(
            s,
            p.pid.into(),
            p.command.as_bytes(),
            p.backend.as_bytes(),
            exit.as_ref(),
            trace.map(str::as_bytes),
        )
    })
}

/// The aggregate's first line: the process's own header when there is one
/// process, else `usertrap: 3 processes (sh 4242, ls 4243, ...), seccomp`;
/// then the command's status (stat) and the trace sets.
fn aggregate_header(agg: &Aggregate) -> String {
    let mut h = if let [p] = agg.processes.as_slice() {
        // The process's own exit, unless the command's status follows.
        let exit = p.exit.as_ref().filter(|_| agg.status.is_none()).map(core_exit);
        rendered(|s| {
            core_report::process_header(
                s,
                p.pid.into(),
                p.command.as_bytes(),
                p.backend.as_bytes(),
                exit.as_ref(),
                None,
            )
        })
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

/// The table (usertrap-core's, as the library prints it): one row per
/// syscall, then the total row.
fn table<'a>(out: &mut String, rows: impl Iterator<Item = &'a SyscallStats>, totals: &Totals, trace: Option<&str>) {
    let rows = rows.map(|s| Row {
        name: Name::Text(s.name.as_bytes()),
        calls: s.calls,
        errors: s.errors,
        total_ns: s.total_ns,
        timed: s.timed(),
        p50_ns: s.p50_ns,
        p99_ns: s.p99_ns,
        max_ns: s.max_ns,
        fast_calls: s.fast_calls,
    });
    let totals = core_report::Totals {
        calls: totals.calls,
        errors: totals.errors,
        total_ns: totals.total_ns,
        fast_calls: totals.fast_calls,
    };
    out.push_str(&rendered(|s| core_report::table(s, rows, &totals, trace.map(str::as_bytes))));
}

/// One unpatched site, as the library prints it.
fn site_line(out: &mut String, address: &str, name: &str, reason: &str) {
    out.push_str(&rendered(|s| {
        core_report::unpatched_site(s, address.as_bytes(), &Name::Text(name.as_bytes()), reason.as_bytes())
    }));
}

/// One process's unpatched sites, as the library prints them.
fn sites_of_process(out: &mut String, sites: &[UnpatchedSite]) {
    if sites.is_empty() {
        return;
    }
    out.push_str(&String::from_utf8_lossy(core_report::UNPATCHED_TITLE));
    for s in sites {
        site_line(out, &s.address, &s.name, &s.reason);
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
        out.push_str(&String::from_utf8_lossy(core_report::UNPATCHED_TITLE));
        for s in sites {
            site_line(out, &s.address, &s.name, &s.reason);
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
