//! Tools that run or watch a program their own way: valgrind (a synthetic
//! CPU that makes the program's syscalls itself), debuggers and tracers
//! (ptrace), fanotify permission listeners, and the kernel's own view of
//! the running program (ETXTBSY). Each is run natively and under usertrap;
//! what may differ is stated precisely (a note line, or the documented
//! limit).

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
    if let Some(d) = text_diff(
        &format!("{what}: stderr"),
        without_pids(&native.stderr_text()).as_bytes(),
        without_pids(&theirs).as_bytes(),
    ) {
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
    assert_same_plus_notes(
        "usertrap stat -- valgrind",
        &native,
        &traced,
        "valgrind's tool exec'd natively and not monitored",
        1,
    );
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
    assert_same_plus_notes(
        "LD_PRELOAD=libusertrap.so valgrind",
        &native,
        &traced,
        "valgrind's tool exec'd natively and not monitored",
        1,
    );
    let cmd = Cmd::new(which("valgrind")).args(["-q", "/bin/true"]);
    let (native, traced) = (run_native(&cmd), run_traced(&cmd, Backend::Sud));
    assert_same_plus_notes(
        "valgrind -q /bin/true",
        &native,
        &traced,
        "valgrind's tool exec'd natively and not monitored",
        1,
    );
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

// ---------------------------------------------------------------------------
// Tracers: a program that traces its own child (PTRACE_TRACEME)

/// Lines starting with `usertrap: ` on stderr, and the rest.
fn split_notes(stderr: &str) -> (Vec<String>, String) {
    let (ours, theirs): (Vec<&str>, Vec<&str>) = stderr.lines().partition(|l| l.starts_with("usertrap: "));
    (ours.into_iter().map(String::from).collect(), theirs.iter().map(|l| format!("{l}\n")).collect())
}

/// Under SUD the traced child stops being intercepted at PTRACE_TRACEME, so
/// its tracer sees exactly the native stops: its own signals (suppressed,
/// handled, or fatal: one stop each), the exec's SIGTRAP (the exec'd image,
/// traced by a process under usertrap, is not intercepted: one note), and
/// with PTRACE_SYSCALL the program's own code as every syscall's address
/// (the sites patched before are put back). With patching on and off.
#[test]
fn ptrace_traceme_sud() {
    let cmd = Cmd::new(c_test_binary("ptrace_traceme"));
    let native = run_native(&cmd);
    assert_eq!(native.status, Status::Exited(0), "native run:\n{}{}", native.stdout_text(), native.stderr_text());
    for patch in ["1", "0"] {
        let traced = run_traced(&cmd.clone().env("USERTRAP_PATCH", patch), Backend::Sud);
        let what = format!("ptrace_traceme, sud, USERTRAP_PATCH={patch}");
        assert_same_plus_notes(
            &what,
            &native,
            &traced,
            "which runs under usertrap: not intercepted (the tracer sees it as natively)",
            1,
        );
    }
}

/// Under seccomp the filter cannot be removed: the tracer sees usertrap's
/// SIGSYS at the child's intercepted syscalls (passed on, so the child still
/// finishes as natively), a fatal signal twice (usertrap's handler writes
/// the report, then raises it again), and a note per PTRACE_TRACEME. That is
/// the documented limit, asserted line by line.
#[test]
fn ptrace_traceme_seccomp() {
    let cmd = Cmd::new(c_test_binary("ptrace_traceme"));
    let native = run_native(&cmd);
    let traced = run_traced(&cmd, Backend::Seccomp);
    assert_eq!(traced.status, native.status, "exit status\n{}", traced.stderr_text());
    let mut kept = String::new();
    let mut sigsys_cases = Vec::new();
    for line in traced.stdout_text().lines() {
        let count = |prefix: &str| line.strip_prefix(prefix).and_then(|n| n.parse::<u32>().ok());
        let case = line.get(5..6).unwrap_or("");
        if count(&format!("case {case}: unexpected Bad system call stops: ")).is_some_and(|n| n > 0) {
            sigsys_cases.push(case.to_string());
        } else if line == "case 3: unexpected User defined signal 1 stops: 1"
            || count("case 5: syscall stops at usertrap's gate: ").is_some()
        {
        } else {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    if let Some(d) =
        text_diff("ptrace_traceme, seccomp: stdout without the documented extra stops", &native.stdout, kept.as_bytes())
    {
        panic!("{d}");
    }
    assert_eq!(
        sigsys_cases,
        ["1", "2", "3", "4", "5"],
        "every traced child shows usertrap's SIGSYS:\n{}",
        traced.stdout_text()
    );
    let (notes, rest) = split_notes(&traced.stderr_text());
    assert_eq!(rest, native.stderr_text(), "stderr besides usertrap's notes");
    assert!(
        notes.len() == 5
            && notes.iter().all(|n| n.contains(
                "asked to be traced (PTRACE_TRACEME): under the seccomp backend its tracer sees usertrap's SIGSYS"
            )),
        "one note per PTRACE_TRACEME: {notes:#?}"
    );
}

// ---------------------------------------------------------------------------
// gdb

fn gdb_file() -> PathBuf {
    repo_root().join("gdb/usertrap.gdb")
}

/// gdb's messages carry addresses, pids and thread ids that differ between
/// runs: every number becomes N.
fn numbers_masked(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            if c == '0' && chars.peek() == Some(&'x') {
                chars.next();
            }
            while chars.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                chars.next();
            }
            out.push('N');
        } else {
            out.push(c);
        }
    }
    out
}

/// What a gdb session on valgrind_guest prints: a breakpoint in its thread,
/// a backtrace there, then the run to its end (SIGUSR1 passed silently).
fn gdb_session(extra: &[String]) -> Cmd {
    let mut c = Cmd::new(which("gdb")).args(["-batch", "-nx"]);
    for e in extra {
        c = c.arg(e);
    }
    c.args([
        "-ex",
        "handle SIGUSR1 nostop noprint pass",
        "-ex",
        "break worker",
        "-ex",
        "run",
        "-ex",
        "bt",
        "-ex",
        "continue",
        "--args",
    ])
    .arg(c_test_binary("valgrind_guest"))
    .timeout(std::time::Duration::from_secs(60))
}

fn assert_same_gdb_session(what: &str, native: &Output, traced: &Output, allowed_note: &str) {
    assert_eq!(traced.status, native.status, "{what}: gdb's exit status\n{}", traced.stderr_text());
    let (n_out, t_out) = (numbers_masked(&native.stdout_text()), numbers_masked(&traced.stdout_text()));
    assert!(
        n_out.contains("hit Breakpoint N, worker") && n_out.contains("exited with code N"),
        "native gdb session:\n{n_out}"
    );
    if let Some(d) = text_diff(&format!("{what}: gdb's stdout (numbers masked)"), n_out.as_bytes(), t_out.as_bytes()) {
        panic!("{d}");
    }
    let (notes, rest) = split_notes(&traced.stderr_text());
    assert!(
        notes.iter().all(|n| !allowed_note.is_empty() && n.contains(allowed_note)),
        "{what}: usertrap's lines: {notes:#?}"
    );
    if let Some(d) = text_diff(
        &format!("{what}: gdb's stderr"),
        numbers_masked(&native.stderr_text()).as_bytes(),
        numbers_masked(&rest).as_bytes(),
    ) {
        panic!("{d}");
    }
}

/// gdb started by hand on a program preloaded with the library, with the
/// shipped command file: the session (breakpoint, backtrace, the program's
/// output, its exit status) is the native one. Without the file gdb stops at
/// the first trapped syscall with SIGSYS, and its shell execs the program
/// through the launcher, so the breakpoint is never hit.
fn gdb_with_command_file(backend: Backend) {
    let file = gdb_file().to_str().unwrap().to_string();
    let native = run_native(&gdb_session(&["-x".into(), file.clone()]));
    let env = |k: &str, v: &str| ["-ex".to_string(), format!("set environment {k} {v}")];
    let mut extra = vec!["-x".to_string(), file];
    extra.extend(env("LD_PRELOAD", lib_path().to_str().unwrap()));
    extra.extend(env("USERTRAP_BACKEND", backend.name()));
    extra.extend(env("USERTRAP_OUTPUT", "/dev/null"));
    let traced = run_native(&gdb_session(&extra));
    assert_same_gdb_session(&format!("gdb -x gdb/usertrap.gdb, {backend}"), &native, &traced, "");
    // The fast path too (a patched site is a jump into the library).
    extra.extend(env("USERTRAP_PATCH", "1"));
    let traced = run_native(&gdb_session(&extra));
    assert_same_gdb_session(&format!("gdb -x gdb/usertrap.gdb, {backend}, patching on"), &native, &traced, "");
}

#[test]
fn gdb_with_command_file_sud() {
    gdb_with_command_file(Backend::Sud);
}

#[test]
fn gdb_with_command_file_seccomp() {
    gdb_with_command_file(Backend::Seccomp);
}

/// gdb itself measured by `usertrap stat` (sud): its inferior, traced by a
/// process under usertrap, is not intercepted (one note per image), and the
/// session is the native one.
#[test]
fn gdb_under_stat_sud() {
    let native = run_native(&gdb_session(&[]));
    let dir = scratch_dir("gdb-stat", Backend::Sud);
    fresh_dir(&dir);
    let report = dir.join("report.txt");
    let session = gdb_session(&[]);
    let stat = Cmd::new(usertrap_cli())
        .args(["stat", "--backend", "sud", "-o"])
        .arg(&report)
        .arg("--")
        .arg(&session.program)
        .args(&session.args)
        .timeout(session.timeout);
    let traced = run_native(&stat);
    assert_same_gdb_session(
        "usertrap stat -- gdb",
        &native,
        &traced,
        "which runs under usertrap: not intercepted (the tracer sees it as natively)",
    );
    let text = fs::read_to_string(&report).expect("the aggregate report");
    assert!(text.contains("(gdb "), "gdb is measured:\n{text}");
}

/// Under seccomp gdb's vfork child, traced, would stop at its first trapped
/// syscall while gdb waits for it (a hang): its PTRACE_TRACEME is refused
/// with EPERM and a note, and gdb says it cannot trace the program.
#[test]
fn gdb_under_stat_seccomp_refuses_cleanly() {
    let session = gdb_session(&[]);
    let stat = Cmd::new(usertrap_cli())
        .args(["stat", "--backend", "seccomp", "-o", "/dev/null", "--"])
        .arg(&session.program)
        .args(&session.args)
        .timeout(session.timeout);
    let traced = run_native(&stat);
    let err = traced.stderr_text();
    assert!(err.contains("PTRACE_TRACEME in a vfork child refused with EPERM"), "{err}");
    assert!(err.contains("ptrace: Operation not permitted"), "{err}");
    assert!(!traced.stdout_text().contains("hit Breakpoint"), "{}", traced.stdout_text());
}

// ---------------------------------------------------------------------------
// fanotify and the exe file

/// A fanotify listener denies the program's exec (LTP fanotify03/24): a
/// denied read of its header or a denied open fails exec with EPERM, as
/// natively (the read used to become ENOEXEC). A denied open *for exec*
/// (FAN_OPEN_EXEC_PERM) cannot be seen: the library opens the file for
/// reading and the launcher maps it, so the program runs (README, Limits).
fn fanotify_exec(backend: Backend) {
    let dir = scratch_dir("fanotify-exec", backend);
    fresh_dir(&dir);
    let cmd = Cmd::new(c_test_binary("fanotify_exec")).cwd(&dir);
    let native = run_native(&cmd);
    assert_eq!(
        native.stdout_text(),
        "ACCESS_PERM: exec EPERM\nOPEN_PERM: exec EPERM\nOPEN_EXEC_PERM: exec EPERM\n",
        "native run (needs CAP_SYS_ADMIN): {}",
        native.stderr_text()
    );
    let traced = run_traced(&cmd, backend);
    assert_eq!(traced.status, native.status, "{backend}: {}", traced.stderr_text());
    assert_eq!(
        traced.stdout_text(),
        "ACCESS_PERM: exec EPERM\nOPEN_PERM: exec EPERM\nOPEN_EXEC_PERM: exec ran, exit 0\n",
        "{backend}: {}",
        traced.stderr_text()
    );
    assert_eq!(traced.stderr_text(), native.stderr_text(), "{backend}: stderr");
}

#[test]
fn fanotify_exec_sud() {
    fanotify_exec(Backend::Sud);
}

#[test]
fn fanotify_exec_seccomp() {
    fanotify_exec(Backend::Seccomp);
}

/// Does this process have CAP_SYS_RESOURCE (bit 24 of CapEff)?
fn have_cap_sys_resource() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim();
    u64::from_str_radix(hex, 16).unwrap() & (1 << 24) != 0
}

/// A running program's file opened for writing (LTP creat07): ETXTBSY
/// natively. A program the launcher started is the kernel's exe file, and
/// so protected, exactly when the library could make it so with
/// PR_SET_MM_EXE_FILE, which needs CAP_SYS_RESOURCE: with it the run is
/// native; without it the kernel's link names the launcher and the open
/// succeeds (README, Limits).
fn exec_etxtbsy(backend: Backend) {
    let dir = scratch_dir("exec-etxtbsy", backend);
    fresh_dir(&dir);
    let cmd = Cmd::new(c_test_binary("exec_etxtbsy")).cwd(&dir);
    let native = run_native(&cmd);
    let protected = "the kernel's exe link names the program: yes; open for writing: ETXTBSY\n";
    assert_eq!(native.stdout_text(), protected, "native: {}", native.stderr_text());
    let traced = run_traced(&cmd, backend);
    let expected = if have_cap_sys_resource() {
        protected
    } else {
        "the kernel's exe link names the program: no; open for writing: ok\n"
    };
    assert_eq!(traced.stdout_text(), expected, "{backend}: {}", traced.stderr_text());
    assert_eq!((traced.status, traced.stderr_text()), (native.status, native.stderr_text()), "{backend}");
}

#[test]
fn exec_etxtbsy_sud() {
    exec_etxtbsy(Backend::Sud);
}

#[test]
fn exec_etxtbsy_seccomp() {
    exec_etxtbsy(Backend::Seccomp);
}
