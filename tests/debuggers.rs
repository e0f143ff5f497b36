//! Tools that run a program their own way: valgrind (a synthetic CPU that
//! makes the program's syscalls itself), debuggers and tracers (ptrace).
//! Each is run natively and under usertrap; what may differ is stated
//! precisely (one note line, or the documented limit).

mod common;

use common::*;
use std::fs;
use std::path::PathBuf;

fn usertrap_cli() -> PathBuf {
    lib_path().with_file_name("usertrap")
}

/// valgrind starts its lines with `==pid==`: the pids differ between runs.
fn without_pids(text: &str) -> String {
    text.lines()
        .map(|l| {
            let rest = l.strip_prefix("==").and_then(|r| {
                let digits = r.bytes().take_while(u8::is_ascii_digit).count();
                (digits > 0).then(|| r[digits..].strip_prefix("=="))?
            });
            match rest {
                Some(r) => format!("==PID=={r}\n"),
                None => format!("{l}\n"),
            }
        })
        .collect()
}

/// The traced run did what the native run did: same stdout and exit status,
/// and the same stderr (pids aside) once the usertrap note lines containing
/// `note` are taken out; there are exactly `notes` of those and no other
/// usertrap line.
fn assert_same_plus_notes(what: &str, native: &Output, traced: &Output, note: &str, notes: usize) {
    assert_eq!(traced.status, native.status, "{what}: exit status\n--- traced stderr ---\n{}", traced.stderr_text());
    if let Some(d) = text_diff(&format!("{what}: stdout"), &native.stdout, &traced.stdout) {
        panic!("{d}");
    }
    let traced_err = traced.stderr_text();
    let (ours, theirs): (Vec<&str>, Vec<&str>) = traced_err.lines().partition(|l| l.starts_with("usertrap: "));
    assert!(
        ours.len() == notes && ours.iter().all(|l| l.contains(note)),
        "{what}: expected {notes} usertrap line(s) containing {note:?}, got {ours:#?}"
    );
    let theirs: String = theirs.iter().map(|l| format!("{l}\n")).collect();
    if let Some(d) = text_diff(&format!("{what}: stderr"), without_pids(&native.stderr_text()).as_bytes(), without_pids(&theirs).as_bytes()) {
        panic!("{d}");
    }
}

fn valgrind(args: &[&str]) -> Cmd {
    Cmd::new(which("valgrind")).args(["-q", "--trace-children=yes"]).args(args)
}

// ---------------------------------------------------------------------------
// valgrind

/// `usertrap stat -- valgrind ...` under SUD: valgrind's tool is exec'd
/// natively (with one note), the program it runs behaves and is reported on
/// as natively (the memory error, the signal, the thread, the child), and
/// the aggregate holds the processes before the tool.
#[test]
fn valgrind_under_stat_sud() {
    let guest = c_test_binary("valgrind_guest");
    let native = run_native(&valgrind(&[guest.to_str().unwrap()]));
    assert_eq!(native.status, Status::Exited(7), "native run: {}", native.stderr_text());
    assert!(native.stderr_text().contains("Invalid read of size 4"), "native valgrind: {}", native.stderr_text());
    let dir = scratch_dir("valgrind-stat", Backend::Sud);
    fresh_dir(&dir);
    let report = dir.join("report.txt");
    let stat = Cmd::new(usertrap_cli())
        .args(["stat", "--backend", "sud", "-o"])
        .arg(&report)
        .args(["--", "valgrind", "-q", "--trace-children=yes"])
        .arg(&guest);
    let traced = run_native(&stat);
    assert_same_plus_notes("usertrap stat -- valgrind", &native, &traced, "valgrind's tool exec'd natively and not monitored", 1);
    let text = fs::read_to_string(&report).expect("the aggregate report");
    assert!(text.contains("valgrind"), "the aggregate names valgrind's processes:\n{text}");
}

/// `LD_PRELOAD=libusertrap.so valgrind -q PROGRAM` under SUD: the same, with
/// the library's own report going where USERTRAP_OUTPUT says.
#[test]
fn valgrind_preloaded_sud() {
    let guest = c_test_binary("valgrind_guest");
    let cmd = valgrind(&[guest.to_str().unwrap()]);
    let native = run_native(&cmd);
    let traced = run_traced(&cmd, Backend::Sud);
    assert_same_plus_notes("LD_PRELOAD=libusertrap.so valgrind", &native, &traced, "valgrind's tool exec'd natively and not monitored", 1);
    let cmd = Cmd::new(which("valgrind")).args(["-q", "/bin/true"]);
    let (native, traced) = (run_native(&cmd), run_traced(&cmd, Backend::Sud));
    assert_same_plus_notes("valgrind -q /bin/true", &native, &traced, "valgrind's tool exec'd natively and not monitored", 1);
}

/// Under seccomp the filter stays, so valgrind's tool runs under the
/// launcher and is measured, the program's syscalls included (valgrind
/// makes them), with no note. (A signal that interrupts one of valgrind's
/// syscalls aborts valgrind there: README, Limits. These programs send
/// none.)
#[test]
fn valgrind_preloaded_seccomp() {
    let dir = scratch_dir("valgrind-seccomp", Backend::Seccomp);
    fresh_dir(&dir);
    for args in [&["-q", "/bin/true"][..], &["-q", "/bin/echo", "hello"][..], &["-q", "/bin/ls", "/"][..]] {
        let cmd = Cmd::new(which("valgrind")).args(args);
        let native = run_native(&cmd);
        let traced = run_traced(&cmd.clone().env("USERTRAP_OUTPUT", dir.join("r.%p.%t")), Backend::Seccomp);
        assert_same_plus_notes(&format!("valgrind {args:?}"), &native, &traced, "", 0);
    }
    let reports: String = fs::read_dir(&dir).unwrap().map(|e| fs::read_to_string(e.unwrap().path()).unwrap()).collect();
    assert!(reports.contains("(memcheck-amd64-)"), "valgrind's tool is measured:\n{reports}");
}
