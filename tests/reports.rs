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

/// A SIGTERM that arrives while a process that called exit_group writes
/// its report (to a FIFO its parent filled, so the write waits) changes
/// nothing: the process exits with its status, as natively where nothing
/// runs after exit_group (c_tests/signal_during_exit_report.c). It was
/// delivered then, and killed the process with SIGTERM before the report
/// was out (multiprocessing.Pool.terminate()'s workers went missing).
#[test]
fn a_signal_during_the_exit_report_changes_nothing() {
    for b in Backend::ALL {
        let (_, traced, _) = native_and_traced(
            "report-signal-at-exit",
            b,
            |d| {
                Cmd::new(c_test_binary("signal_during_exit_report"))
                    .env("USERTRAP_OUTPUT", d.join("report.fifo"))
                    .env("USERTRAP_FORMAT", "json")
            },
            |_| {},
        );
        assert_eq!(traced.stdout_text(), "child: exited 0\nthreaded: exited 0\nsleeper: killed by signal 15\n", "{b}");
    }
}

/// The text reports in `text` (each begins with this line).
fn text_reports(text: &str) -> usize {
    text.matches("usertrap: pid ").count()
}

/// How descriptors may be limited when the program lets go of descriptor
/// 2: as the test runs (the machine's limits), and a soft limit below the
/// hard one (the kept copy then goes just above the soft limit).
const LIMITS: [&str; 2] = ["", "ulimit -Sn 256; "];

/// `sh -c 'LIMIT exec prog MODE 2>stderr.txt'`: the program with stderr a
/// file of its own, the report to stderr (the default).
fn with_stderr_file(limit: &str, mode: &str, tmp: &Path) -> Cmd {
    let script = format!("{limit}exec {} {mode} 2>stderr.txt", prog().display());
    Cmd::sh(&script).env_remove("USERTRAP_OUTPUT").env("TMPDIR", tmp)
}

/// Runs `with_stderr_file` natively and traced: the same status, stdout
/// and `file` (the program's own, byte for byte); natively stderr.txt
/// stays empty. Returns the traced run's stderr.txt and the reports left
/// in TMPDIR (the rescue file).
fn run_with_stderr_file(case: &str, b: Backend, limit: &str, mode: &str, file: &str) -> (String, Vec<String>) {
    let tmp = fresh_reports_dir(&format!("{case}-tmp"), b);
    let native_dir = scratch_dir(&format!("{case}-native"), b);
    fresh_dir(&native_dir);
    let native = run_native(&with_stderr_file(limit, mode, &tmp).cwd(&native_dir));
    assert_eq!(native.status, Status::Exited(0), "{case}: natively");
    assert_eq!(fs::read(native_dir.join("stderr.txt")).unwrap(), b"", "{case}: natively nothing on stderr");
    let (_, _, dir) = native_and_traced(case, b, |_| with_stderr_file(limit, mode, &tmp), |_| {});
    assert_eq!(
        fs::read(dir.join(file)).unwrap(),
        fs::read(native_dir.join(file)).unwrap(),
        "{case} ({b}): the program's {file}, byte for byte"
    );
    (fs::read_to_string(dir.join("stderr.txt")).unwrap(), tmp_reports(&tmp))
}

/// The program closes or replaces descriptor 2 before it ends (close and
/// open a data file, which gets descriptor 2; dup2 a file onto it;
/// close_range; close and fork): the report still reaches the stderr the
/// process started with (the library kept a duplicate of it when the
/// program let go of descriptor 2), never the program's file, and no file
/// is left in TMPDIR. A fork child inherits the duplicate and reports there
/// too.
#[test]
fn closed_or_replaced_stderr_still_gets_the_report() {
    let cases: [(&str, &str, usize); 4] = [
        ("stderr-replaced", "data.txt", 1),
        ("stderr-dup2", "errors.txt", 1),
        ("stderr-close-range", "data.txt", 1),
        ("stderr-close-fork", "data.txt", 2),
    ];
    for b in Backend::ALL {
        for (i, limit) in LIMITS.iter().enumerate() {
            for (mode, file, reports) in cases {
                let case = format!("report-{mode}-{i}");
                let (err, rescued) = run_with_stderr_file(&case, b, limit, mode, file);
                assert_eq!(text_reports(&err), reports, "{case} ({b}): the reports on the original stderr:\n{err}");
                assert!(err.starts_with("usertrap: pid "), "{case} ({b}): nothing but reports:\n{err}");
                assert!(rescued.is_empty(), "{case} ({b}): nothing left in TMPDIR: {rescued:?}");
            }
        }
    }
}

/// Where no copy can be kept, or it is gone when the process ends, the
/// report never lands in a file of the program's: it goes to TMPDIR with
/// the line that says why. No copy: a small descriptor limit the program
/// cannot raise (the copy would take a number it may need). Gone: the
/// program closes every descriptor after descriptor 2, or puts its data
/// file on every number it has open (the copy's too).
#[test]
fn stderr_and_no_copy_of_it_get_no_report() {
    let cases = [
        ("ulimit -n 256; ", "stderr-replaced"),
        ("", "stderr-close-all"),
        ("", "stderr-fds-taken"),
        ("ulimit -Sn 256; ", "stderr-close-all"),
        ("ulimit -Sn 256; ", "stderr-fds-taken"),
    ];
    for b in Backend::ALL {
        for (i, (limit, mode)) in cases.into_iter().enumerate() {
            let case = format!("report-gone-{mode}-{i}");
            let (err, rescued) = run_with_stderr_file(&case, b, limit, mode, "data.txt");
            assert_eq!(err, "", "{case} ({b}): stderr.txt");
            // (With the small limit, sh's image, which put stderr.txt on
            // descriptor 2 before its exec, leaves its report there too.)
            let ours: Vec<&String> = rescued.iter().filter(|r| r.contains("(report_targets), ")).collect();
            assert_eq!(ours.len(), 1, "{case} ({b}): the report, kept in TMPDIR: {rescued:?}");
            assert!(ours[0].contains("descriptor 2 is closed or is another file"), "{}", ours[0]);
        }
    }
}

/// coreutils close stderr in an atexit handler (close_stdout): `ls` and
/// `cat` with stderr to a file print their report there, their output is
/// the native one, and nothing is left in TMPDIR.
#[test]
fn coreutils_that_close_stderr_at_exit_still_report() {
    // Patching on (their close(2) on the fast path: glibc's close was
    // patched by their earlier closes) and off.
    for (b, patch) in Backend::ALL.into_iter().flat_map(|b| [(b, "1"), (b, "0")]) {
        let tmp = fresh_reports_dir("report-coreutils-tmp", b);
        let script = "ls / >ls.out 2>ls.err; cat in.txt >cat.out 2>cat.err";
        let setup = |d: &Path| fs::write(d.join("in.txt"), "a line of the program's\n").unwrap();
        let (_, _, dir) = native_and_traced(
            "report-coreutils",
            b,
            |_| Cmd::sh(script).env_remove("USERTRAP_OUTPUT").env("TMPDIR", &tmp).env("USERTRAP_PATCH", patch),
            setup,
        );
        let dir_native = scratch_dir("report-coreutils-native", b);
        fresh_dir(&dir_native);
        setup(&dir_native);
        assert_eq!(run_native(&Cmd::sh(script).cwd(&dir_native)).status, Status::Exited(0));
        for (out, err, comm) in [("ls.out", "ls.err", "(ls)"), ("cat.out", "cat.err", "(cat)")] {
            let native_out = fs::read(dir_native.join(out)).unwrap();
            assert_eq!(fs::read(dir.join(out)).unwrap(), native_out, "{b}: {out}, byte for byte");
            assert_eq!(fs::read(dir_native.join(err)).unwrap(), b"", "{b}: natively nothing in {err}");
            let text = fs::read_to_string(dir.join(err)).unwrap();
            assert_eq!(text_reports(&text), 1, "{b}: the report in {err}:\n{text}");
            assert!(text.starts_with("usertrap: pid ") && text.contains(comm), "{b}: {err}:\n{text}");
        }
        let rescued = tmp_reports(&tmp);
        assert!(rescued.is_empty(), "{b}: nothing left in TMPDIR: {rescued:?}");
    }
}

/// The summary and phases lines go to stderr too (the report elsewhere):
/// `cat`, which closes stderr at exit, prints both into its stderr file.
#[test]
fn summary_and_phases_lines_reach_the_original_stderr() {
    for b in Backend::ALL {
        let tmp = fresh_reports_dir("report-summary-tmp", b);
        let (_, _, dir) = native_and_traced(
            "report-summary",
            b,
            |_| {
                Cmd::sh("cat in.txt 2>cat.err")
                    .env("USERTRAP_SUMMARY", "1")
                    .env("USERTRAP_PHASES", "1")
                    .env("TMPDIR", &tmp)
            },
            |d| fs::write(d.join("in.txt"), "a line\n").unwrap(),
        );
        let text = fs::read_to_string(dir.join("cat.err")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{b}: the summary and phases lines of cat:\n{text}");
        assert!(lines[0].contains(" syscalls intercepted ("), "{b}: {text}");
        assert!(lines[1].starts_with("usertrap: phases (us) pid "), "{b}: {text}");
        assert!(tmp_reports(&tmp).is_empty(), "{b}: nothing left in TMPDIR");
    }
}

/// Descriptor 2 becomes a pipe whose reader is gone: no SIGPIPE (the
/// program's exit status stays its own), and the report goes to the
/// stderr the process started with.
#[test]
fn stderr_broken_pipe_keeps_the_exit_status() {
    for b in Backend::ALL {
        let tmp = fresh_reports_dir("report-broken-pipe-tmp", b);
        let (n, t, _) = native_and_traced(
            "report-broken-pipe",
            b,
            |_| Cmd::new(prog()).arg("stderr-broken-pipe").env_remove("USERTRAP_OUTPUT").env("TMPDIR", &tmp),
            |_| {},
        );
        assert_eq!(n.status, Status::Exited(3));
        assert_eq!(text_reports(&t.stderr_text()), 1, "{b}: the report on the original stderr");
        assert!(tmp_reports(&tmp).is_empty(), "{b}: nothing left in TMPDIR");
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
