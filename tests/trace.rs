//! `usertrap trace` with the real library (issue 15): the recorded calls of
//! a program with known calls (threads, order, results, durations), the
//! Perfetto timeline's tracks and process names over a fork/exec tree,
//! events dropped by a collector that cannot keep up counted exactly, and a
//! death by SIGSEGV still flushing. Each program also runs natively: status,
//! stdout and stderr must be the same under `usertrap trace`. Both backends.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;

fn usertrap_bin() -> PathBuf {
    let p = repo_root().join("target/release/usertrap");
    assert!(p.is_file(), "{} is missing: run `make`", p.display());
    p
}

/// Runs `trace_calls MODE ARGS` natively, then under `usertrap trace
/// --backend B -o FILE OPTS`: same status and program output, nothing of
/// usertrap's on stderr but `stderr_ok` lines. Returns the trace file's text.
fn traced(case: &str, b: Backend, opts: &[&str], argv: &[&str], env: &[(&str, &str)]) -> (String, Output) {
    traced_program("trace_calls", case, b, opts, argv, env)
}

/// [`traced`] of another program of c_tests/.
fn traced_program(
    name: &str,
    case: &str,
    b: Backend,
    opts: &[&str],
    argv: &[&str],
    env: &[(&str, &str)],
) -> (String, Output) {
    let prog = c_test_binary(name);
    let dir = scratch_dir(case, b);
    fresh_dir(&dir);
    let native = run_native(&Cmd::new(&prog).args(argv).cwd(&dir));
    let out = dir.join("trace.out");
    let mut cmd = Cmd::new(usertrap_bin()).args(["trace", "--backend", b.name(), "-o"]).arg(&out).args(opts);
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let run = run_native(&cmd.arg("--").arg(&prog).args(argv).cwd(&dir));
    assert_eq!(run.status, native.status, "{case} ({b}): status; stderr:\n{}", run.stderr_text());
    assert_eq!(run.stdout_text(), native.stdout_text(), "{case} ({b}): stdout");
    let text = fs::read_to_string(&out).unwrap_or_else(|e| panic!("{case} ({b}): no trace: {e}"));
    (text, run)
}

/// The JSON lines of `--format json`.
fn records(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

fn of_type<'a>(recs: &'a [Value], ty: &str) -> Vec<&'a Value> {
    recs.iter().filter(|r| r["type"] == ty).collect()
}

#[test]
fn known_calls_are_recorded_exactly_with_threads_results_and_durations() {
    for b in Backend::ALL {
        let (text, run) =
            traced("trace-known", b, &["--format", "json", "-e", "trace=getppid,openat,nanosleep"], &["known"], &[]);
        assert!(run.stderr.is_empty(), "{b}: {}", run.stderr_text());
        let recs = records(&text);
        let calls = of_type(&recs, "call");
        let names: Vec<&str> = calls.iter().map(|c| c["syscall"].as_str().unwrap()).collect();
        assert_eq!(names, ["getppid", "openat", "nanosleep", "getppid"], "{b}:\n{text}");
        let pid = calls[0]["pid"].as_u64().unwrap();
        let main = calls[0]["tid"].as_u64().unwrap();
        assert_eq!(main, pid, "{b}: the first call is the main thread's");
        for (i, c) in calls.iter().enumerate() {
            assert_eq!(c["pid"].as_u64(), Some(pid), "{b}: one process");
            let tid = c["tid"].as_u64().unwrap();
            if i == 2 {
                assert_ne!(tid, main, "{b}: the nanosleep is the second thread's:\n{text}");
            } else {
                assert_eq!(tid, main, "{b}: call {i} is the main thread's:\n{text}");
            }
            assert_ne!(c["site"], "0x0", "{b}: a call site");
        }
        let ppid = calls[0]["result"].as_i64().unwrap();
        assert!(ppid > 0, "{b}: getppid's result");
        assert_eq!(calls[3]["result"].as_i64(), Some(ppid));
        assert_eq!(calls[1]["result"].as_i64(), Some(-1), "{b}: the openat failed");
        assert_eq!(calls[1]["errno"], "ENOENT");
        assert_eq!(calls[1]["file"], "/nonexistent/usertrap-trace", "{b}: the path, read at call time");
        // AT_FDCWD, raw: an int, passed in a 64-bit register.
        assert!(calls[1]["args"][0].as_str().unwrap().ends_with("ffffff9c"), "{b}: {}", calls[1]);
        assert_eq!(calls[2]["result"].as_i64(), Some(0));
        assert!(calls[2]["dur_ns"].as_u64().unwrap() >= 5_000_000, "{b}: the 5 ms sleep: {}", calls[2]);
        // In order: each call starts after the one before it ended (the
        // program waits for each).
        for w in calls.windows(2) {
            let end = w[0]["mono_ns"].as_i64().unwrap() + w[0]["dur_ns"].as_i64().unwrap();
            assert!(w[1]["mono_ns"].as_i64().unwrap() >= end, "{b}: order:\n{text}");
        }
        assert!(of_type(&recs, "dropped").is_empty(), "{b}: nothing dropped");
        let procs = of_type(&recs, "process");
        assert_eq!(procs.len(), 1, "{b}");
        assert_eq!(procs[0]["command"], "trace_calls");
        // The counts of every call (recorded or not) come with the trace.
        let counts: BTreeMap<&str, u64> = of_type(&recs, "count")
            .iter()
            .map(|c| (c["syscall"].as_str().unwrap(), c["calls"].as_u64().unwrap()))
            .collect();
        assert_eq!(counts.get("getppid"), Some(&2), "{b}");
        assert!(counts.get("mmap").is_some_and(|&n| n > 0), "{b}: counts of calls not recorded too");
    }
}

#[test]
fn text_lines_are_strace_like() {
    for b in Backend::ALL {
        let (text, _) = traced("trace-text", b, &["-e", "trace=openat,nanosleep"], &["known"], &[]);
        let open = text.lines().find(|l| l.contains("usertrap-trace")).unwrap_or_else(|| panic!("{b}:\n{text}"));
        assert!(
            open.contains(
                "openat(AT_FDCWD, \"/nonexistent/usertrap-trace\", O_RDONLY) = -1 ENOENT (No such file or directory) <0."
            ),
            "{b}: {open}"
        );
        let sleep = text.lines().find(|l| l.contains("nanosleep(")).unwrap_or_else(|| panic!("{b}:\n{text}"));
        // The 5 ms sleep: at least that long (a busy machine may make it
        // much longer; no upper bound), in seconds with six decimals.
        let secs = sleep
            .strip_suffix('>')
            .and_then(|l| l.rsplit_once(") = 0 <"))
            .map(|(_, d)| d)
            .filter(|d| d.split_once('.').is_some_and(|(_, frac)| frac.len() == 6))
            .and_then(|d| d.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{b}: not `nanosleep(...) = 0 <S.UUUUUU>`: {sleep}"));
        assert!(secs >= 0.005, "{b}: {sleep}");
    }
}

#[test]
fn slow_keeps_only_the_slow_calls_and_counts_all() {
    for b in Backend::ALL {
        let (text, _) = traced("trace-slow", b, &["--format", "json", "--slow", "4ms"], &["known"], &[]);
        let recs = records(&text);
        let calls = of_type(&recs, "call");
        assert!(calls.iter().any(|c| c["syscall"] == "nanosleep"), "{b}:\n{text}");
        for c in &calls {
            // Only calls that may not return (exit) are recorded whatever
            // their duration.
            if c["unfinished"] != true {
                assert!(c["dur_ns"].as_u64().unwrap() >= 4_000_000, "{b}: a fast call kept: {c}");
            }
            assert_ne!(c["syscall"], "getppid", "{b}");
        }
        let getppid = of_type(&recs, "count").into_iter().find(|c| c["syscall"] == "getppid").cloned();
        assert_eq!(getppid.map(|c| c["calls"].clone()), Some(2.into()), "{b}: every call counted");
    }
}

#[test]
fn perfetto_output_has_one_track_per_thread() {
    for b in Backend::ALL {
        let (text, _) = traced("trace-perfetto", b, &["--format", "perfetto"], &["known"], &[]);
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{b}: not JSON: {e}"));
        let ev = v["traceEvents"].as_array().unwrap();
        let slices: Vec<&Value> = ev.iter().filter(|e| e["ph"] == "X").collect();
        let tracks: BTreeSet<(u64, u64)> =
            slices.iter().map(|e| (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap())).collect();
        let named: Vec<(u64, u64)> = ev
            .iter()
            .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
            .map(|e| (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap()))
            .collect();
        assert_eq!(tracks.len(), 2, "{b}: the main thread and the sleeper");
        assert_eq!(named.iter().copied().collect::<BTreeSet<_>>(), tracks, "{b}: one named track per thread");
        assert_eq!(named.len(), tracks.len(), "{b}: each track named once");
        let procs: Vec<&Value> = ev.iter().filter(|e| e["ph"] == "M" && e["name"] == "process_name").collect();
        assert_eq!(procs.len(), 1, "{b}");
        assert_eq!(procs[0]["args"]["name"], "trace_calls");
        let sleep = slices.iter().find(|e| e["name"] == "nanosleep").expect("a nanosleep slice");
        assert!(sleep["dur"].as_f64().unwrap() >= 5000.0, "{b}: {sleep}");
        let open = slices.iter().find(|e| e["args"]["call"].as_str().is_some_and(|c| c.contains("usertrap-trace")));
        assert_eq!(open.map(|e| e["args"]["errno"].clone()), Some("ENOENT".into()), "{b}");
        // The sleeper's creation: a flow from the main thread's clone to the
        // sleeper's first call.
        let sleeper = sleep["tid"].as_u64().unwrap();
        let main = tracks.iter().map(|t| t.1).find(|t| *t != sleeper).unwrap();
        let ends = |ph: &str| -> Vec<u64> {
            ev.iter().filter(|e| e["ph"] == ph && e["cat"] == "thread").map(|e| e["tid"].as_u64().unwrap()).collect()
        };
        assert_eq!((ends("s"), ends("f")), (vec![main], vec![sleeper]), "{b}: one thread flow, main to sleeper");
    }
}

#[test]
fn a_fork_exec_tree_shows_every_process_named() {
    for b in Backend::ALL {
        let (text, _) = traced("trace-tree", b, &["--format", "perfetto"], &["tree"], &[]);
        let v: Value = serde_json::from_str(&text).unwrap();
        let ev = v["traceEvents"].as_array().unwrap();
        let names: BTreeMap<u64, String> = ev
            .iter()
            .filter(|e| e["ph"] == "M" && e["name"] == "process_name")
            .map(|e| (e["pid"].as_u64().unwrap(), e["args"]["name"].as_str().unwrap().to_string()))
            .collect();
        let mut sorted: Vec<&str> = names.values().map(String::as_str).collect();
        sorted.sort();
        assert_eq!(sorted, ["trace_calls", "trace_calls", "trace_calls → true"], "{b}");
        for pid in names.keys() {
            assert!(ev.iter().any(|e| e["ph"] == "X" && e["pid"].as_u64() == Some(*pid)), "{b}: pid {pid} has calls");
        }
        let execd = names.iter().find(|(_, n)| n.ends_with("true")).map(|(p, _)| *p).unwrap();
        let flows = |cat: &str| -> Vec<u64> {
            ev.iter().filter(|e| e["ph"] == "f" && e["cat"] == cat).map(|e| e["pid"].as_u64().unwrap()).collect()
        };
        let mut forked = flows("fork");
        forked.sort();
        let top = parent(ev);
        let children: Vec<u64> = names.keys().copied().filter(|p| *p != top).collect();
        assert_eq!(forked, children, "{b}: a fork flow into each child");
        assert_eq!(flows("exec"), [execd], "{b}: an exec flow in the exec'd child");
    }
}

/// The command itself: the process that waits for the others.
fn parent(ev: &[Value]) -> u64 {
    ev.iter().find(|e| e["ph"] == "X" && e["name"] == "wait4").and_then(|e| e["pid"].as_u64()).unwrap()
}

#[test]
fn a_slow_collector_drops_events_counted_and_the_rest_exact() {
    const N: u64 = 50_000;
    for b in Backend::ALL {
        let (text, run) = traced(
            "trace-dropped",
            b,
            &["--format", "json", "-e", "trace=getppid"],
            &["many", &N.to_string()],
            &[("USERTRAP_TEST_COLLECTOR_STALL_MS", "20")],
        );
        let recs = records(&text);
        let calls = of_type(&recs, "call");
        let dropped: u64 = of_type(&recs, "dropped").iter().map(|d| d["events"].as_u64().unwrap()).sum();
        assert!(dropped > 0, "{b}: a stalled collector loses events ({} recorded)", calls.len());
        assert_eq!(calls.len() as u64 + dropped, N, "{b}: every call recorded or counted as dropped");
        assert!(run.stderr_text().contains(&format!("{dropped} events dropped")), "{b}: said: {}", run.stderr_text());
        let ppid = calls[0]["result"].clone();
        assert!(calls.iter().all(|c| c["syscall"] == "getppid" && c["result"] == ppid), "{b}: the rest exact");
        assert!(calls.windows(2).all(|w| w[0]["mono_ns"].as_i64() <= w[1]["mono_ns"].as_i64()), "{b}: in order");
        let count = of_type(&recs, "count").into_iter().find(|c| c["syscall"] == "getppid").cloned();
        assert_eq!(count.map(|c| c["calls"].clone()), Some(N.into()), "{b}: the counts are whole");
    }
}

#[test]
fn death_by_sigsegv_still_flushes() {
    for b in Backend::ALL {
        let (text, run) = traced("trace-segv", b, &["--format", "json", "-e", "trace=getppid"], &["segv"], &[]);
        assert_eq!(run.status, Status::Signaled(libc::SIGSEGV), "{b}");
        let recs = records(&text);
        let calls = of_type(&recs, "call");
        assert_eq!(calls.len(), 3, "{b}: the calls made before the fault:\n{text}");
        assert!(of_type(&recs, "dropped").is_empty(), "{b}");
    }
}

/// A file size limit smaller than a thread's buffer (`ulimit -f`): the
/// buffers the collector keeps are memfds of that size, whose ftruncate the
/// kernel answers with SIGXFSZ, which killed every traced process. The
/// program runs as natively and its calls still reach the trace.
#[test]
fn a_file_size_limit_does_not_kill_a_traced_program() {
    let prog = c_test_binary("trace_calls");
    // The shell makes a getppid call of its own: exec'd, the program's
    // image is the one after it.
    let script = format!("ulimit -f 10 && exec {} known", prog.display());
    for b in Backend::ALL {
        let dir = scratch_dir("trace-fsize", b);
        fresh_dir(&dir);
        let native = run_native(&Cmd::sh(&script).cwd(&dir));
        assert_eq!(native.status, Status::Exited(0), "natively: {}", native.stderr_text());
        let out = dir.join("trace.out");
        let cmd = Cmd::new(usertrap_bin()).args(["trace", "--backend", b.name(), "--format", "json", "-o"]).arg(&out);
        let cmd = cmd.args(["-e", "trace=getppid,execve", "--", "sh", "-c", &script]).cwd(&dir);
        let run = run_native(&cmd);
        assert_eq!(run.status, native.status, "{b}: status; stderr:\n{}", run.stderr_text());
        assert_eq!(run.stdout_text(), native.stdout_text(), "{b}: stdout");
        let text = fs::read_to_string(&out).unwrap_or_else(|e| panic!("{b}: no trace: {e}"));
        let recs = records(&text);
        let calls = of_type(&recs, "call");
        let exec_at = calls.iter().filter(|c| c["syscall"] == "execve").filter_map(|c| c["mono_ns"].as_i64()).max();
        let after_exec = calls.iter().filter(|c| c["syscall"] == "getppid" && c["mono_ns"].as_i64() > exec_at).count();
        assert_eq!(after_exec, 2, "{b}: the program's two getppid calls:\n{text}");
    }
}

/// A path argument the recorder cannot read because its page raises SIGBUS
/// (a shared mapping of a file truncated under it, c_tests/sigbus_pointers.c)
/// costs the path, never the process: the call is recorded with the
/// address, and the program runs on as natively (to its own SIGBUS).
#[test]
fn a_path_in_a_sigbus_page_is_recorded_as_an_address() {
    for b in Backend::ALL {
        let opts = ["--format", "text", "-e", "trace=openat"];
        let (text, run) = traced_program("sigbus_pointers", "trace-sigbus", b, &opts, &[], &[]);
        assert_eq!(run.status, Status::Signaled(libc::SIGBUS), "{b}");
        let unreadable: Vec<&str> =
            text.lines().filter(|l| l.contains("openat(AT_FDCWD, 0x") && l.contains("EFAULT")).collect();
        // 3 rounds, then 2 with a handler, blocked, ignored, in a handler,
        // in a child: 9 calls on the page.
        assert_eq!(unreadable.len(), 9, "{b}: the openat calls on the page, by address:\n{text}");
    }
}

/// The calls of a trace in any format, counted by (pid, tid, syscall).
fn calls_in(format: &str, text: &str) -> BTreeMap<(u64, u64, String), usize> {
    let mut by = BTreeMap::new();
    let mut add = |pid: u64, tid: u64, name: &str| *by.entry((pid, tid, name.to_string())).or_default() += 1;
    match format {
        "json" => {
            for r in records(text).iter().filter(|r| r["type"] == "call") {
                add(r["pid"].as_u64().unwrap(), r["tid"].as_u64().unwrap(), r["syscall"].as_str().unwrap());
            }
        }
        "perfetto" => {
            let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON: {e}"));
            for e in v["traceEvents"].as_array().unwrap().iter().filter(|e| e["ph"] == "X") {
                add(e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap(), e["name"].as_str().unwrap());
            }
        }
        _ => {
            // "[pid P T] HH:MM:SS.UUUUUU name(...) = ..."
            for l in text.lines().filter(|l| l.starts_with("[pid ")) {
                let (ids, rest) = l["[pid ".len()..].split_once("] ").unwrap();
                let (pid, tid) = ids.split_once(' ').unwrap();
                let name = rest.split_once(' ').unwrap().1.split('(').next().unwrap();
                add(pid.parse().unwrap(), tid.parse().unwrap(), name);
            }
        }
    }
    by
}

const FORMATS: [&str; 3] = ["json", "text", "perfetto"];

/// A process killed by SIGKILL (its own) while its threads' calls are
/// still in their buffers: the trace holds exactly the calls it made (the
/// main thread's 3000 getppid: two buffers sent, the rest unsent; 7 getuid
/// and 9 getgid of two threads that never sent), none twice, nothing said
/// dropped. Fails without the collector keeping the buffers (the unsent
/// calls are lost).
#[test]
fn a_process_killed_by_sigkill_keeps_its_unsent_calls() {
    for b in Backend::ALL {
        for format in FORMATS {
            let case = format!("trace-killed-{format}");
            let opts = ["--format", format, "-e", "trace=getppid,getuid,getgid"];
            let (text, run) = traced(&case, b, &opts, &["killed"], &[]);
            assert_eq!(run.status, Status::Signaled(libc::SIGKILL), "{b}");
            let by = calls_in(format, &text);
            let pids: BTreeSet<u64> = by.keys().map(|k| k.0).collect();
            assert_eq!(pids.len(), 1, "{b} {format}: one process: {by:?}");
            let pid = *pids.iter().next().unwrap();
            let count = |name: &str| -> Vec<(u64, usize)> {
                by.iter().filter(|(k, _)| k.2 == name).map(|(k, n)| (k.1, *n)).collect()
            };
            assert_eq!(count("getppid"), [(pid, 3000)], "{b} {format}: the main thread's calls");
            let (uid, gid) = (count("getuid"), count("getgid"));
            assert_eq!((uid.len(), gid.len()), (1, 1), "{b} {format}: {by:?}");
            assert_eq!((uid[0].1, gid[0].1), (7, 9), "{b} {format}: the threads' calls");
            assert!(uid[0].0 != pid && gid[0].0 != pid && uid[0].0 != gid[0].0, "{b} {format}: three threads: {by:?}");
            assert_eq!(by.len(), 3, "{b} {format}: nothing else: {by:?}");
            let err = run.stderr_text();
            assert!(!err.contains("dropped"), "{b} {format}: nothing dropped: {err}");
            assert!(err.contains(&format!("events of pid {pid} taken from its buffers")), "{b} {format}: said: {err}");
        }
    }
}

/// A fork child killed by SIGKILL from outside (its parent) with calls in
/// its buffers, after the parent recorded calls before the fork (its
/// buffer, shared memory with the child's at the fork): each process holds
/// its own calls only, none twice (the parent's 3 + 5 getppid; the child's
/// 4 getuid and its thread's 2 getgid).
#[test]
fn a_fork_child_killed_by_sigkill_keeps_its_own_calls_only() {
    for b in Backend::ALL {
        for format in FORMATS {
            let case = format!("trace-fork-killed-{format}");
            let opts = ["--format", format, "-e", "trace=getppid,getuid,getgid"];
            let (text, run) = traced(&case, b, &opts, &["fork-killed"], &[]);
            assert_eq!(run.status, Status::Exited(0), "{b}");
            let by = calls_in(format, &text);
            let of = |name: &str| -> Vec<(u64, u64, usize)> {
                by.iter().filter(|(k, _)| k.2 == name).map(|(k, n)| (k.0, k.1, *n)).collect()
            };
            let parent = of("getppid");
            assert_eq!(parent.len(), 1, "{b} {format}: {by:?}");
            let (ppid, ptid, pn) = parent[0];
            assert_eq!((ptid, pn), (ppid, 8), "{b} {format}: the parent's calls, before and after the fork");
            let (uid, gid) = (of("getuid"), of("getgid"));
            assert_eq!((uid.len(), gid.len()), (1, 1), "{b} {format}: {by:?}");
            let child = uid[0].0;
            assert_ne!(child, ppid, "{b} {format}: the child's calls are its own");
            assert_eq!((uid[0].1, uid[0].2), (child, 4), "{b} {format}: the child's main thread");
            assert_eq!(gid[0].0, child, "{b} {format}: the child's thread");
            assert!(gid[0].1 != child && gid[0].2 == 2, "{b} {format}: {by:?}");
            assert_eq!(by.len(), 3, "{b} {format}: nothing else: {by:?}");
            assert!(!run.stderr_text().contains("dropped"), "{b} {format}: {}", run.stderr_text());
        }
    }
}

/// A process whose exec failed goes on with the buffers it had: the
/// report its image sent before the exec is no end of them. A thread's 7
/// getuid calls, still in its buffer at the exec, then 2 more, sent as it
/// ends; the main thread's 3 getppid calls before the exec, 4 after it,
/// never sent (SIGKILL): each once. Fails with a collector that reads the
/// buffers at that report (the 7 twice, the 4 lost).
#[test]
fn a_failed_exec_leaves_the_buffers_to_the_image_that_goes_on() {
    for b in Backend::ALL {
        for format in FORMATS {
            let case = format!("trace-exec-fails-{format}");
            let opts = ["--format", format, "-e", "trace=getppid,getuid"];
            let (text, run) = traced(&case, b, &opts, &["exec-fails"], &[]);
            assert_eq!(run.status, Status::Signaled(libc::SIGKILL), "{b}");
            let by = calls_in(format, &text);
            let pids: BTreeSet<u64> = by.keys().map(|k| k.0).collect();
            assert_eq!(pids.len(), 1, "{b} {format}: one process: {by:?}");
            let pid = *pids.iter().next().unwrap();
            let of = |name: &str| -> Vec<(u64, usize)> {
                by.iter().filter(|(k, _)| k.2 == name).map(|(k, n)| (k.1, *n)).collect()
            };
            assert_eq!(of("getppid"), [(pid, 7)], "{b} {format}: the main thread's calls, each once");
            let uid = of("getuid");
            assert_eq!(uid.len(), 1, "{b} {format}: {by:?}");
            assert!(uid[0].0 != pid && uid[0].1 == 9, "{b} {format}: the thread's calls, each once: {by:?}");
            assert_eq!(by.len(), 2, "{b} {format}: nothing else: {by:?}");
            assert!(!run.stderr_text().contains("dropped"), "{b} {format}: {}", run.stderr_text());
        }
    }
}
