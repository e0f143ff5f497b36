//! What the signal resets of posix_spawn's and vfork's children cost
//! (c_tests/spawn_sigreset; tests/c_programs.rs compares its output natively
//! and under the library). glibc's posix_spawn child asks about every
//! signal's disposition and sets most of them to SIG_DFL before its exec:
//! about 120 signal calls per child. Under the library they take the fast
//! path (the call-site report says so), and each costs at most one syscall
//! more than natively: counted with `strace -f`, the children's
//! rt_sigaction and rt_sigprocmask calls up to their exec, natively and
//! under each backend. (Before, each emulated call cost five: a query or a
//! set of a disposition made two mask changes for its atomicity and two
//! more around the table's lock.)

mod common;

use common::*;
use std::collections::HashMap;
use std::fs;
use std::path::Path;

/// The rt_sigaction and rt_sigprocmask calls each process of an
/// `strace -f` log made before its first execve, summed over the processes
/// that exec'd (the children; the program itself starts with its execve).
fn child_signal_calls(log: &Path) -> u64 {
    let text = fs::read_to_string(log).unwrap_or_else(|e| panic!("cannot read {}: {}", log.display(), e));
    let mut before_exec: HashMap<&str, u64> = HashMap::new();
    let mut exec_seen: HashMap<&str, bool> = HashMap::new();
    let mut total = 0;
    for line in text.lines() {
        let Some((pid, rest)) = line.split_once(' ') else { continue };
        let call = rest.trim_start();
        if exec_seen.get(pid).copied().unwrap_or(false) {
            continue;
        }
        if call.starts_with("execve(") {
            exec_seen.insert(pid, true);
            total += before_exec.get(pid).copied().unwrap_or(0);
        } else if call.starts_with("rt_sigaction(") || call.starts_with("rt_sigprocmask(") {
            *before_exec.entry(pid).or_insert(0) += 1;
        }
    }
    total
}

/// spawn_sigreset under `strace -f` (natively, or with the library through
/// strace's -E, so that strace itself is not preloaded): its output, and
/// the children's signal calls before their exec. `test`: the backend of
/// the test (its scratch directory), `traced`: whether under the library.
fn strace_run(test: Backend, traced: bool) -> (String, u64) {
    let name = if traced { test.name() } else { "native" };
    let dir = scratch_dir(&format!("spawn-signals-strace-{name}"), test);
    fresh_dir(&dir);
    let log = dir.join("strace.log");
    let mut cmd = Cmd::new(which("strace"))
        .args(["-f", "-qq", "-e", "trace=rt_sigaction,rt_sigprocmask,execve", "-o"])
        .arg(&log)
        .timeout(std::time::Duration::from_secs(120))
        .cwd(&dir);
    if traced {
        let preload = format!("LD_PRELOAD={}", lib_path().display());
        let backend = format!("USERTRAP_BACKEND={}", test.name());
        cmd = cmd.args(["-E", &preload, "-E", &backend, "-E", "USERTRAP_OUTPUT=/dev/null"]);
    }
    let out = run_native(&cmd.arg(c_test_binary("spawn_sigreset")));
    assert!(out.status.success(), "spawn_sigreset under strace ({name}) failed: {}", out.stderr_text());
    (out.stdout_text().into_owned(), child_signal_calls(&log))
}

fn children_pay_one_syscall_per_signal_call(backend: Backend) {
    let (native_out, native) = strace_run(backend, false);
    let (traced_out, traced) = strace_run(backend, true);
    assert_eq!(traced_out, native_out, "{backend}: output under strace");
    // 22 posix_spawn children and a vfork child, about 120 calls each.
    eprintln!("{backend}: the children's signal syscalls before their exec: {native} natively, {traced} traced");
    assert!(native >= 22 * 100, "natively only {native} signal calls of the children before their exec");
    assert!(
        traced <= 2 * native,
        "{backend}: the children made {traced} rt_sigaction/rt_sigprocmask syscalls before their exec, \
         against {native} natively: more than one added per call"
    );
}

#[test]
fn children_pay_one_syscall_per_signal_call_seccomp() {
    children_pay_one_syscall_per_signal_call(Backend::Seccomp);
}

#[test]
fn children_pay_one_syscall_per_signal_call_sud() {
    children_pay_one_syscall_per_signal_call(Backend::Sud);
}

/// The children's signal calls, counted in the parent's report (a vfork
/// child's figures are its parent's), take the fast path: all but each
/// site's first call; and each child's exec is followed (its image reports).
fn children_signal_calls_are_fast(backend: Backend) {
    let dir = fresh_reports_dir("spawn_signal_calls_are_fast", backend);
    let cmd = with_json_reports(Cmd::new(c_test_binary("spawn_sigreset")), &dir);
    let out = run_traced(&cmd, backend);
    assert!(out.status.success(), "{backend}: {}", out.stderr_text());
    let reports: Vec<serde_json::Value> = report_files(&dir)
        .iter()
        .flat_map(|(path, text)| {
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: not JSON ({}): {}", path.display(), e, l))
                })
                .collect::<Vec<serde_json::Value>>()
        })
        .collect();
    // The parent's report: the process the others' are children of (they
    // exec the same program).
    let parent = reports
        .iter()
        .find(|r| reports.iter().any(|c| c["ppid"] == r["pid"]))
        .unwrap_or_else(|| panic!("{backend}: no parent among {} reports", reports.len()));
    // Every child's exec went through the launcher: each exec'd image
    // reports (22 posix_spawn children, one vfork child).
    let children = reports.iter().filter(|c| c["ppid"] == parent["pid"]).count();
    assert_eq!(children, 23, "{backend}: reports of exec'd children");
    let sigaction = parent["syscalls"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == "rt_sigaction")
        .unwrap_or_else(|| panic!("{backend}: no rt_sigaction in the parent's report"));
    let (calls, fast) = (sigaction["calls"].as_u64().unwrap_or(0), sigaction["fast_calls"].as_u64().unwrap_or(0));
    assert!(calls >= 22 * 100, "{backend}: only {calls} rt_sigaction calls in the parent's report");
    assert!(fast + 10 >= calls, "{backend}: only {fast} of {calls} rt_sigaction calls took the fast path");
}

#[test]
fn children_signal_calls_are_fast_seccomp() {
    children_signal_calls_are_fast(Backend::Seccomp);
}

#[test]
fn children_signal_calls_are_fast_sud() {
    children_signal_calls_are_fast(Backend::Sud);
}
