//! The latency reports each process writes (src/measure/report/,
//! docs/report-schema.md): counts, errors and latencies of programs whose
//! syscalls are known, fork and thread totals, death by signal, exec trees.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Build tests/data/NAME.c into target/report-tests/NAME-N, a copy per test
/// (tests run in parallel; a binary being rewritten cannot be run).
fn program(name: &str) -> PathBuf {
    static BUILDS: AtomicUsize = AtomicUsize::new(0);
    let dir = repo_root().join("target/report-tests");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let out = dir.join(format!("{}-{}", name, BUILDS.fetch_add(1, Ordering::Relaxed)));
    let src = repo_root().join("tests/data").join(format!("{}.c", name));
    let ok = Command::new(which("gcc")).args(["-O2", "-pthread", "-o"]).arg(&out).arg(&src).status().expect("gcc");
    assert!(ok.success(), "cannot build {}", src.display());
    out
}

/// Run `cmd` under `backend` with JSON reports into a fresh directory;
/// returns the run and every report.
fn run_with_reports(cmd: Cmd, backend: Backend, case: &str) -> (Output, Vec<Value>, PathBuf) {
    let dir = scratch_dir(case, backend);
    fresh_dir(&dir);
    let reports = dir.join("reports");
    std::fs::create_dir_all(&reports).unwrap();
    let cmd = cmd.cwd(&dir).env("USERTRAP_OUTPUT", reports.join("%p.%t.json")).env("USERTRAP_FORMAT", "json");
    let out = run_traced(&cmd, backend);
    let mut all = Vec::new();
    for e in std::fs::read_dir(&reports).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON ({}):\n{}", p.display(), e, text));
        assert_eq!(v["format"], "usertrap-report", "{}", p.display());
        assert_eq!(v["version"], 2, "{}", p.display());
        percentiles_follow_the_rule(&v);
        sites_add_up(&v, &p);
        all.push(v);
    }
    (out, all, dir)
}

/// Every x86-64 call is at one call site or counted as not kept, and each
/// site's figures are consistent (fast + slow = calls; the histogram holds
/// every timed call; percentiles by the one rule).
fn sites_add_up(report: &Value, p: &Path) {
    let n = |v: &Value| v.as_u64().unwrap();
    let calls_of = |pred: &dyn Fn(&Value) -> bool| -> u64 {
        report["syscalls"].as_array().unwrap().iter().filter(|s| pred(s)).map(|s| n(&s["calls"])).sum()
    };
    // int $0x80 calls have no call site; those numbered past 511 are in
    // `other` with x86-64 ones (which have).
    let i386 = calls_of(&|s| s["abi"] == "i386");
    let other = calls_of(&|s| s["name"] == "other");
    let sites = report["sites"].as_array().unwrap();
    let at_sites: u64 = sites.iter().map(|s| n(&s["calls"])).sum();
    let unplaced = n(&report["totals"]["calls"]) - i386 - at_sites - n(&report["sites_not_kept"]);
    assert!(unplaced <= other, "{}: {unplaced} calls at no site", p.display());
    for s in sites {
        assert_eq!(n(&s["fast_calls"]) + n(&s["slow_calls"]), n(&s["calls"]), "{}: {s}", p.display());
        let hist: Vec<(u64, u64)> = s["histogram"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| (b[1].as_f64().unwrap().ceil() as u64, b[2].as_u64().unwrap()))
            .collect();
        for (per_mille, key) in usertrap_core::report::SITE_PERCENTILES {
            let want =
                usertrap_core::report::percentile(hist.iter().copied(), per_mille, n(&s["min_ns"]), n(&s["max_ns"]));
            assert_eq!(n(&s[key]), want, "{}: {key} of {s}", p.display());
        }
    }
}

/// Each syscall's percentiles are what usertrap-core's one rule reads off
/// the report's own histogram (so `usertrap report` gets them back).
fn percentiles_follow_the_rule(report: &Value) {
    for s in report["syscalls"].as_array().unwrap() {
        let hist: Vec<(u64, u64)> = s["histogram"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| (b[1].as_f64().unwrap().ceil() as u64, b[2].as_u64().unwrap()))
            .collect();
        for (per_mille, key) in usertrap_core::report::PERCENTILES {
            let want =
                usertrap_core::report::percentile(hist.iter().copied(), per_mille, num(s, "min_ns"), num(s, "max_ns"));
            assert_eq!(num(s, key), want, "{key} of {}", s);
        }
    }
}

fn syscall<'a>(report: &'a Value, name: &str) -> Option<&'a Value> {
    report["syscalls"].as_array()?.iter().find(|s| s["name"] == name)
}

fn num(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no number {} in {}", key, v))
}

fn known_calls(backend: Backend) {
    let prog = program("known_calls");
    let dir = scratch_dir("known-calls-own", backend);
    fresh_dir(&dir);
    let own = dir.join("own_ns.txt");
    let (out, reports, run_dir) = run_with_reports(Cmd::new(&prog).arg(&own), backend, "known-calls");
    assert!(out.status.success(), "known_calls failed: {}", out.stderr_text());
    assert_eq!(out.stdout_text(), "known calls: done\n");
    assert_eq!(reports.len(), 1, "one process, one report");
    let r = &reports[0];
    assert_eq!(r["exit"]["how"], "exit_group");
    assert_eq!(r["backend"], backend.name());

    let g = syscall(r, "getppid").expect("getppid in the report");
    assert_eq!(num(g, "calls"), 10_000);
    assert_eq!(num(g, "errors"), 0);
    // No speed comparison here (a shared machine's load decides speed; that
    // is `make bench`'s job): only what holds however slow the machine is.
    // The calls' summed durations lie inside the loops that made them, so
    // they cannot exceed the loops' wall time (5% for the TSC's calibration);
    // a sleep lasts at least what it asked for.
    let own: Vec<f64> = std::fs::read_to_string(&own).unwrap().split_whitespace().map(|v| v.parse().unwrap()).collect();
    let (loop_ns, sleep_ns, feeder_ns) = (own[0], own[1], own[2]);
    let within = |reported: u64, wall: f64| reported as f64 <= wall * 1.05 + 20_000.0;
    let g_total = num(g, "total_ns");
    assert!(
        g_total > 0 && within(g_total, loop_ns),
        "getppid total {g_total} ns, the loop around them took {loop_ns} ns"
    );

    let s = syscall(r, "clock_nanosleep").or_else(|| syscall(r, "nanosleep")).expect("nanosleep in the report");
    assert_eq!(num(s, "calls"), 200 + 20, "200 in main, 20 in the feeder thread");
    let s_total = num(s, "total_ns");
    assert!(
        within(s_total, sleep_ns + feeder_ns),
        "nanosleep total {s_total} ns, the loops around them took {} ns",
        sleep_ns + feeder_ns
    );
    assert!(num(s, "min_ns") >= 1_900_000, "nanosleep(2 ms) min = {} ns", num(s, "min_ns"));
    for key in ["min_ns", "p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns"].windows(2) {
        assert!(num(s, key[0]) <= num(s, key[1]), "{} > {} in {}", key[0], key[1], s);
    }

    let o = syscall(r, "openat").expect("openat in the report");
    assert_eq!(o["errors_by_errno"]["ENOENT"], 100, "{}", o);

    let rd = syscall(r, "read").expect("read in the report");
    assert!(num(rd, "calls") >= 20);
    let hist_total: u64 = s["histogram"].as_array().unwrap().iter().map(|b| b[2].as_u64().unwrap()).sum();
    assert_eq!(hist_total, 220, "histogram counts add up to the calls");
    let totals = &r["totals"];
    let sum: u64 = r["syscalls"].as_array().unwrap().iter().map(|s| num(s, "calls")).sum();
    assert_eq!(num(totals, "calls"), sum);
    assert_eq!(num(totals, "fast_calls") + num(totals, "slow_calls"), sum);

    // `usertrap report` of this one report prints the process's own figures.
    let files: Vec<PathBuf> = std::fs::read_dir(run_dir.join("reports")).unwrap().map(|e| e.unwrap().path()).collect();
    let cli = Command::new(repo_root().join("target/release/usertrap"))
        .args(["report", "--json"])
        .args(&files)
        .output()
        .expect("target/release/usertrap");
    assert!(cli.status.success(), "usertrap report: {}", String::from_utf8_lossy(&cli.stderr));
    let agg: Value = serde_json::from_slice(&cli.stdout).expect("usertrap report --json");
    for s in r["syscalls"].as_array().unwrap() {
        let m = agg["syscalls"].as_array().unwrap().iter().find(|m| m["name"] == s["name"]).expect("the same syscalls");
        for key in ["calls", "errors", "total_ns", "min_ns", "max_ns", "p50_ns", "p90_ns", "p99_ns", "p999_ns"] {
            assert_eq!(m[key], s[key], "{key}: `usertrap report` {m} against the process's own {s}");
        }
    }
}

#[test]
fn known_calls_seccomp() {
    known_calls(Backend::Seccomp);
}

#[test]
fn known_calls_sud() {
    known_calls(Backend::Sud);
}

fn getppid_calls(r: &Value) -> u64 {
    syscall(r, "getppid").map_or(0, |s| num(s, "calls"))
}

fn forks_add_up(backend: Backend) {
    let prog = program("forks_and_threads");
    let (out, reports, _) = run_with_reports(Cmd::new(&prog).args(["forks", "50"]), backend, "forks-50");
    assert!(out.status.success(), "{}", out.stderr_text());
    assert_eq!(reports.len(), 51, "the parent and 50 children each write a report");
    let children: Vec<&Value> = reports.iter().filter(|r| getppid_calls(r) == 100).collect();
    assert_eq!(children.len(), 50, "each child made exactly 100 getppid: its own figures, not its parent's");
    let parent_pid = out_pid(&reports, &children);
    for c in &children {
        assert_eq!(c["ppid"], parent_pid);
    }
}

fn out_pid(reports: &[Value], children: &[&Value]) -> Value {
    let parent: Vec<&Value> = reports.iter().filter(|r| !children.iter().any(|c| c["pid"] == r["pid"])).collect();
    assert_eq!(parent.len(), 1);
    parent[0]["pid"].clone()
}

#[test]
fn forks_add_up_seccomp() {
    forks_add_up(Backend::Seccomp);
}

#[test]
fn forks_add_up_sud() {
    forks_add_up(Backend::Sud);
}

fn threads_add_up(backend: Backend) {
    let prog = program("forks_and_threads");
    let (out, reports, _) = run_with_reports(Cmd::new(&prog).args(["threads", "8"]), backend, "threads-8");
    assert!(out.status.success(), "{}", out.stderr_text());
    assert_eq!(reports.len(), 1);
    assert_eq!(getppid_calls(&reports[0]), 8 * 1000, "8 threads x 1000 getppid");
}

#[test]
fn threads_add_up_seccomp() {
    threads_add_up(Backend::Seccomp);
}

#[test]
fn threads_add_up_sud() {
    threads_add_up(Backend::Sud);
}

/// vfork children that end with the exit syscall (Go's os/exec children
/// whose exec failed) are no threads of their parent: after them and the
/// end of a second thread, the main thread's calls are still in the one
/// report, written when it exits. (A child's exit once counted as one of
/// the parent's threads ending, so the report was written, early, when the
/// second thread ended; and its area was given back twice, once by the
/// child and once by the parent, so two threads could later share it.)
fn vfork_children_exit(backend: Backend) {
    let prog = program("forks_and_threads");
    let (out, reports, _) = run_with_reports(Cmd::new(&prog).args(["vfork-exit", "1"]), backend, "vfork-exit");
    assert!(out.status.success(), "{:?}: {}", out.status, out.stderr_text());
    assert_eq!(reports.len(), 1, "one process, one report (vfork children write none)");
    assert_eq!(getppid_calls(&reports[0]), 1000, "the main thread's last calls are in the report");
}

#[test]
fn vfork_children_exit_seccomp() {
    vfork_children_exit(Backend::Seccomp);
}

#[test]
fn vfork_children_exit_sud() {
    vfork_children_exit(Backend::Sud);
}

/// A fork from a vfork child (busybox `timeout`) makes a process of its own
/// with its own memory: it writes its own report. (It once kept the vfork
/// child's mark, so it wrote none, and `usertrap stat` named it missing.)
fn fork_from_vfork_child(backend: Backend) {
    let prog = program("forks_and_threads");
    let cmd = Cmd::new(&prog).arg("vfork-fork");
    let native = run_native(&cmd);
    assert!(native.status.success(), "natively: {:?}", native.status);
    let (out, reports, _) = run_with_reports(cmd, backend, "vfork-fork");
    assert_eq!(out.status, native.status, "{}", out.stderr_text());
    assert_eq!(out.stdout, native.stdout);
    assert_eq!(reports.len(), 2, "the parent and the grandchild each write a report (the vfork child none)");
    let grandchild: Vec<&Value> = reports.iter().filter(|r| getppid_calls(r) == 100).collect();
    assert_eq!(grandchild.len(), 1, "the grandchild's own figures: {reports:?}");
}

#[test]
fn fork_from_vfork_child_seccomp() {
    fork_from_vfork_child(Backend::Seccomp);
}

#[test]
fn fork_from_vfork_child_sud() {
    fork_from_vfork_child(Backend::Sud);
}

/// Death by SIGSEGV or abort: the report is written, and the process still
/// dies by the same signal as natively.
fn death_by_signal(backend: Backend, how: &str, sig: i32) {
    let prog = program("forks_and_threads");
    let native = run_native(&Cmd::new(&prog).arg(how));
    assert_eq!(native.status, Status::Signaled(sig), "natively");
    let (out, reports, _) = run_with_reports(Cmd::new(&prog).arg(how), backend, &format!("death-{how}"));
    assert_eq!(out.status, native.status, "status under the library; stderr:\n{}", out.stderr_text());
    assert_eq!(reports.len(), 1, "the report is written before the process dies");
    let r = &reports[0];
    assert_eq!(r["exit"]["how"], "signal");
    assert_eq!(r["exit"]["signal"], sig);
    assert_eq!(getppid_calls(r), 10);
}

#[test]
fn death_by_sigsegv_seccomp() {
    death_by_signal(Backend::Seccomp, "segv", 11);
}

#[test]
fn death_by_sigsegv_sud() {
    death_by_signal(Backend::Sud, "segv", 11);
}

/// An owned signal re-sent with its default action (the library writes the
/// report before re-sending it: the kernel kills on tgkill's return).
#[test]
fn death_by_sigsys_seccomp() {
    death_by_signal(Backend::Seccomp, "sigsys", 31);
}

#[test]
fn death_by_sigsys_sud() {
    death_by_signal(Backend::Sud, "sigsys", 31);
}

/// An owned signal's own fault (SIGBUS: a shared mapping past its file's
/// end), at its default action.
#[test]
fn death_by_sigbus_seccomp() {
    death_by_signal(Backend::Seccomp, "sigbus", 7);
}

#[test]
fn death_by_sigbus_sud() {
    death_by_signal(Backend::Sud, "sigbus", 7);
}

#[test]
fn death_by_abort_seccomp() {
    death_by_signal(Backend::Seccomp, "abort", 6);
}

#[test]
fn death_by_abort_sud() {
    death_by_signal(Backend::Sud, "abort", 6);
}

/// Under SUD (which follows exec): `sh -c` running several commands; every
/// process image of the tree writes its report.
#[test]
fn exec_tree_reports_every_process_sud() {
    let py = python3();
    let script = format!(
        "/bin/true; {} -c 'import os\nfor _ in range(300): os.getppid()'; echo done",
        shell_quote(py.as_os_str())
    );
    let (out, reports, _) = run_with_reports(Cmd::new("/bin/sh").args(["-c", &script]), Backend::Sud, "exec-tree");
    assert!(out.status.success(), "{}", out.stderr_text());
    assert_eq!(out.stdout_text(), "done\n");
    let commands: Vec<String> = reports.iter().map(|r| r["command"].as_str().unwrap_or("?").to_string()).collect();
    assert!(commands.iter().any(|c| c == "sh"), "{commands:?}");
    assert!(commands.iter().any(|c| c == "true"), "{commands:?}");
    assert!(reports.iter().any(|r| getppid_calls(r) >= 300), "python3's 300 getppid calls: {commands:?}");
}

/// Text to stderr by default, nothing on stdout.
#[test]
fn text_report_goes_to_stderr() {
    let prog = program("known_calls");
    let out = run_traced(&Cmd::new(&prog).env_remove("USERTRAP_OUTPUT"), Backend::Seccomp);
    assert_eq!(out.stdout_text(), "known calls: done\n", "the report must never reach stdout");
    let err = out.stderr_text();
    assert!(err.starts_with("usertrap: pid "), "stderr: {err}");
    assert!(err.contains("% time") && err.contains("getppid") && err.contains("total"), "stderr: {err}");
    let line = err.lines().find(|l| l.trim_end().ends_with(" getppid")).unwrap();
    assert!(line.split_whitespace().nth(2) == Some("10000"), "getppid row: {line}");
}

/// `int $0x80` (c_tests/int80.c): under sud each is counted as an i386
/// call of its own (`i386:<name>`, `abi: i386`, its i386 number), never as
/// the x86-64 call of the same number (i386 20 is getpid, x86-64 20 writev);
/// under seccomp, whose filter lets other arches by, the report says they
/// were not seen.
fn int80_calls(backend: Backend) {
    let (out, reports, _) = run_with_reports(Cmd::new(c_test_binary("int80")), backend, "int80-report");
    assert!(out.status.success(), "{}", out.stderr_text());
    if out.stdout_text().contains("unavailable") {
        eprintln!("no IA-32 emulation in this kernel: nothing to count");
        return;
    }
    assert_eq!(reports.len(), 2, "the program and its probe child");
    for r in &reports {
        assert!(syscall(r, "writev").is_none(), "an i386 call counted as x86-64: {r}");
        let i386: Vec<&Value> = r["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["name"].as_str().unwrap().starts_with("i386:"))
            .collect();
        if backend == Backend::Seccomp {
            assert_eq!(r["i386_calls"], "not_seen", "{r}");
            assert!(i386.is_empty(), "{i386:?}");
            continue;
        }
        assert_eq!(r["i386_calls"], "counted", "{r}");
        for s in &i386 {
            assert_eq!(s["abi"], "i386", "{s}");
        }
    }
    if backend == Backend::Seccomp {
        return;
    }
    let main = reports.iter().find(|r| syscall(r, "i386:getppid").is_some()).expect("a report with i386 getppid");
    let child = reports.iter().find(|r| r["pid"] != main["pid"]).unwrap();
    let getpid = syscall(main, "i386:getpid").expect("i386 getpid");
    assert_eq!((num(getpid, "nr"), num(getpid, "calls")), (20, 2), "{getpid}");
    let getppid = syscall(main, "i386:getppid").unwrap();
    assert_eq!((num(getppid, "nr"), num(getppid, "calls")), (64, 1), "{getppid}");
    let write = syscall(main, "i386:write").expect("i386 write");
    assert_eq!((num(write, "nr"), num(write, "calls"), num(write, "errors")), (4, 201, 1), "{write}");
    assert_eq!(write["errors_by_errno"]["EBADF"], 1, "{write}");
    let probe = syscall(child, "i386:getpid").expect("the probe child's i386 getpid");
    assert_eq!(num(probe, "calls"), 1);
    let totals = &main["totals"];
    let sum: u64 = main["syscalls"].as_array().unwrap().iter().map(|s| num(s, "calls")).sum();
    assert_eq!(num(totals, "calls"), sum, "the totals count the i386 calls too");
}

#[test]
fn int80_calls_sud() {
    int80_calls(Backend::Sud);
}

#[test]
fn int80_calls_seccomp() {
    int80_calls(Backend::Seccomp);
}
