//! Where a process's report goes at exit, and where never (issue 10,
//! "Reports"): each case runs c_tests/report_targets natively and under each
//! backend, with the settings that matter, and checks that the program did
//! the same (status, stdout, its own files) and that the report arrived or
//! its loss was said in exactly one line.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn prog() -> PathBuf {
    c_test_binary("report_targets")
}

/// Runs `cmd` natively and traced, each in a fresh `dir` (prepared by
/// `setup`); panics unless the status and stdout are the same. Returns
/// (native, traced).
fn native_and_traced(
    case: &str,
    backend: Backend,
    cmd: impl Fn(&Path) -> Cmd,
    setup: impl Fn(&Path),
) -> (Output, Output, PathBuf) {
    let dir = scratch_dir(case, backend);
    fresh_dir(&dir);
    setup(&dir);
    let native = run_native(&cmd(&dir).cwd(&dir));
    fresh_dir(&dir);
    setup(&dir);
    let traced = run_traced(&cmd(&dir).cwd(&dir), backend);
    assert_eq!(traced.status, native.status, "{case} ({backend}): status; traced stderr:\n{}", traced.stderr_text());
    assert_eq!(traced.stdout_text(), native.stdout_text(), "{case} ({backend}): stdout");
    (native, traced, dir)
}

/// The traced run's stderr is the native one plus exactly one usertrap line
/// containing every piece of `says`.
fn one_line_saying(native: &Output, traced: &Output, says: &[&str]) {
    let t = traced.stderr_text();
    let extra = t.strip_prefix(&*native.stderr_text()).unwrap_or(&t);
    let lines: Vec<&str> = extra.lines().collect();
    assert_eq!(lines.len(), 1, "one line about the lost report, got:\n{t}");
    assert!(lines[0].starts_with("usertrap: pid "), "{}", lines[0]);
    for s in says {
        assert!(lines[0].contains(s), "{:?} not in {:?}", s, lines[0]);
    }
}

/// A directory outside the scratch dir, as TMPDIR: where reports go that
/// stderr cannot take. Returns its files' texts.
fn tmp_reports(dir: &Path) -> Vec<String> {
    report_files(dir).into_iter().map(|(_, t)| t).collect()
}

#[test]
fn fifo_nobody_reads_does_not_hang() {
    for b in Backend::ALL {
        let (n, t, _) = native_and_traced(
            "report-fifo",
            b,
            |d| Cmd::new(prog()).env("USERTRAP_OUTPUT", d.join("fifo")).timeout(Duration::from_secs(15)),
            |d| {
                let ok = std::process::Command::new("mkfifo").arg(d.join("fifo")).status().expect("mkfifo");
                assert!(ok.success());
            },
        );
        one_line_saying(&n, &t, &["could not be written to", "fifo", "ENXIO"]);
    }
}

#[test]
fn stderr_replaced_by_a_data_file_gets_no_report() {
    for b in Backend::ALL {
        let tmp = fresh_reports_dir("report-stderr-replaced-tmp", b);
        let (_, t, dir) = native_and_traced(
            "report-stderr-replaced",
            b,
            |_| Cmd::new(prog()).arg("stderr-replaced").env_remove("USERTRAP_OUTPUT").env("TMPDIR", &tmp),
            |_| {},
        );
        assert_eq!(
            fs::read_to_string(dir.join("data.txt")).unwrap(),
            "the program's data\n",
            "{b}: the program's file"
        );
        assert!(t.stderr.is_empty());
        let saved = tmp_reports(&tmp);
        assert_eq!(saved.len(), 1, "{b}: the report, kept in TMPDIR: {saved:?}");
        assert!(
            saved[0].contains("descriptor 2 is closed or is another file") && saved[0].contains("report_targets), "),
            "{}",
            saved[0]
        );
    }
}

#[test]
fn stderr_broken_pipe_keeps_the_exit_status() {
    for b in Backend::ALL {
        let tmp = fresh_reports_dir("report-broken-pipe-tmp", b);
        let (n, _, _) = native_and_traced(
            "report-broken-pipe",
            b,
            |_| Cmd::new(prog()).arg("stderr-broken-pipe").env_remove("USERTRAP_OUTPUT").env("TMPDIR", &tmp),
            |_| {},
        );
        assert_eq!(n.status, Status::Exited(3));
        assert_eq!(tmp_reports(&tmp).len(), 1, "{b}: the report, kept in TMPDIR");
    }
}

/// `prog 2>&1 | head -c1`: the same pipe as at start, closed: EPIPE, no
/// SIGPIPE, the report kept in TMPDIR.
#[test]
fn closed_stderr_pipe_in_a_shell_pipeline() {
    for b in Backend::ALL {
        let tmp = fresh_reports_dir("report-head-tmp", b);
        // head is gone (the pipe closed) before the program runs.
        let script = format!("(echo x; sleep 0.5; {} >/dev/null; echo status $? >&3) 2>&1 3>status.txt | head -c1 >/dev/null; cat status.txt", prog().display());
        let (n, _, _) = native_and_traced(
            "report-head",
            b,
            |_| Cmd::sh(&script).env_remove("USERTRAP_OUTPUT").env("TMPDIR", &tmp),
            |_| {},
        );
        assert_eq!(n.stdout_text(), "status 0\n");
    }
}

#[test]
fn dev_stdout_redirected_to_a_file_is_not_truncated() {
    for b in Backend::ALL {
        let (_, _, dir) = native_and_traced(
            "report-dev-stdout",
            b,
            |_| Cmd::new(prog()).arg("stdout-file").env("USERTRAP_OUTPUT", "/dev/stdout"),
            |_| {},
        );
        let out = fs::read_to_string(dir.join("out.txt")).unwrap();
        assert!(out.starts_with("the program's own output\nusertrap: pid "), "{b}: out.txt:\n{out}");
    }
}

#[test]
fn exec_appends_to_the_same_pid_file() {
    for b in Backend::ALL {
        let reports = fresh_reports_dir("report-exec", b);
        let pattern = reports.join("r.%p");
        native_and_traced(
            "report-exec-run",
            b,
            |_| Cmd::new(prog()).arg("exec").env("USERTRAP_OUTPUT", &pattern),
            |_| {},
        );
        let files = report_files(&reports);
        assert_eq!(files.len(), 1, "{b}: one pid, one file");
        let text = &files[0].1;
        assert_eq!(text.matches("usertrap: pid ").count(), 2, "{b}: both images' reports:\n{text}");
        assert!(text.contains("replaced by execve") && text.contains("exit status 0"), "{text}");
    }
}

#[test]
fn forked_children_append_whole_reports() {
    for b in Backend::ALL {
        let reports = fresh_reports_dir("report-forks", b);
        let file = reports.join("all.json");
        native_and_traced(
            "report-forks-run",
            b,
            |_| Cmd::new(prog()).args(["forks", "8"]).env("USERTRAP_OUTPUT", &file).env("USERTRAP_FORMAT", "json"),
            |_| {},
        );
        let text = fs::read_to_string(&file).unwrap();
        let mut pids: Vec<u64> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("{b}: not one JSON report per line ({e}):\n{l}"));
                v["pid"].as_u64().unwrap()
            })
            .collect();
        pids.sort();
        pids.dedup();
        assert_eq!(pids.len(), 9, "{b}: the parent and 8 children:\n{text}");
    }
}

#[test]
fn dev_full_is_said_once() {
    for b in Backend::ALL {
        let (n, t, _) =
            native_and_traced("report-dev-full", b, |_| Cmd::new(prog()).env("USERTRAP_OUTPUT", "/dev/full"), |_| {});
        one_line_saying(&n, &t, &["/dev/full", "ENOSPC"]);
    }
}

/// RLIMIT_FSIZE 0 (a full disk, as far as the process can tell): no
/// SIGXFSZ, no empty or partial file, one line.
#[test]
fn file_size_limit_leaves_no_partial_file() {
    for b in Backend::ALL {
        let reports = fresh_reports_dir("report-fsize", b);
        let (n, t, _) = native_and_traced(
            "report-fsize-run",
            b,
            |_| {
                Cmd::new(prog())
                    .arg("fsize0")
                    .env("USERTRAP_OUTPUT", reports.join("r.json"))
                    .env("USERTRAP_FORMAT", "json")
            },
            |_| {},
        );
        one_line_saying(&n, &t, &["r.json", "EFBIG"]);
        assert!(report_files(&reports).is_empty(), "{b}: no report file, not an empty one");
    }
}

#[test]
fn no_memory_is_said_once() {
    for b in Backend::ALL {
        let reports = fresh_reports_dir("report-nomem", b);
        let (n, t, _) = native_and_traced(
            "report-nomem-run",
            b,
            |_| Cmd::new(prog()).arg("no-memory").env("USERTRAP_OUTPUT", reports.join("r.txt")),
            |_| {},
        );
        one_line_saying(&n, &t, &["out of memory"]);
    }
}

/// A summary file that cannot be appended to is a bad setting, refused at
/// start like the others.
#[test]
fn unusable_summary_path_is_refused_at_start() {
    for b in Backend::ALL {
        let cmd = Cmd::new(prog()).env("USERTRAP_SUMMARY", "/nonexistent-usertrap/dir/s.txt");
        assert!(run_native(&cmd).status.success());
        let t = run_traced(&cmd, b);
        assert_eq!(t.status, Status::Exited(125), "{b}: {}", t.stderr_text());
        assert!(t.stdout.is_empty(), "the program must not start");
        let err = t.stderr_text();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("usertrap: USERTRAP_SUMMARY=\"/nonexistent-usertrap/dir/s.txt\" is not valid")
                && err.contains("ENOENT"),
            "{err}"
        );
    }
}

/// A long value with control characters: still one line, escaped, cut,
/// ending with what is accepted.
#[test]
fn long_setting_value_keeps_the_message_one_line() {
    let value = "x\n\x1b[31m".repeat(200);
    for b in Backend::ALL {
        let t = run_traced(&Cmd::new(prog()).env("USERTRAP_FORMAT", &value), b);
        assert_eq!(t.status, Status::Exited(125), "{b}");
        let err = t.stderr_text();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.len() < 512, "{err}");
        assert!(err.starts_with("usertrap: USERTRAP_FORMAT=\"x\\x0a\\x1b[31mx"), "{err}");
        assert!(err.ends_with("(1400 bytes)\" is not valid; accepted: text, json\n"), "{err}");
    }
}

/// The report's title names the process as /proc/PID/comm does (its main
/// thread's name), whether the main thread ends it or a thread with a
/// name of its own calls exit(), in text and JSON.
#[test]
fn report_names_the_main_threads_comm() {
    let prog = c_test_binary("comm_of_report");
    for b in Backend::ALL {
        for (mode, status) in [("main", 4), ("thread", 3)] {
            for format in ["text", "json"] {
                let case = format!("report-comm-{mode}-{format}");
                let (_, t, dir) = native_and_traced(
                    &case,
                    b,
                    |d| {
                        Cmd::new(&prog)
                            .arg(mode)
                            .env("USERTRAP_OUTPUT", d.join("report"))
                            .env("USERTRAP_FORMAT", format)
                    },
                    |_| {},
                );
                assert_eq!(t.status, Status::Exited(status), "{case} ({b})");
                let report = fs::read_to_string(dir.join("report")).unwrap();
                let named = if format == "text" {
                    report.lines().next().is_some_and(|l| l.contains("(main-name)"))
                } else {
                    report.contains("\"command\":\"main-name\"")
                };
                assert!(named, "{case} ({b}): not named main-name:\n{report}");
            }
        }
    }
}
