//! Checks of the library itself: what it links against, how it rejects bad
//! configuration, and that it really intercepts (its USERTRAP_SUMMARY line).

mod common;

use common::*;
use std::process::Command;

/// Dynamic symbols libusertrap.so may import (version suffixes such as
/// `@GLIBC_2.14` are stripped before comparing).
///
/// Code reachable from the library's signal handlers must not call libc
/// functions that enter the kernel: those would be intercepted themselves
/// (recursion), may take locks the interrupted code holds, or touch errno and
/// other TLS that threads made without CLONE_SETTLS do not have. The library
/// makes its system calls itself; from libc it may only use pure memory
/// functions the compiler emits calls to, plus what runs at load time.
const ALLOWED_UNDEFINED: &[&str] = &[
    // Memory functions the compiler emits calls to: no syscall, no lock.
    "memcpy",
    "memmove",
    "memset",
    "memcmp",
    "bcmp",
    "strlen",
    // Constructor only, before any trap is armed: the environment (settings),
    // the auxiliary vector (FSGSBASE), the library's own path (for exec).
    "environ",
    "getauxval",
    "dl_iterate_phdr",
    // Its address only, never called: libc's `_exit`, whose exit_group
    // site the library proves before a fork or exec (patch::install).
    "_exit",
    // The constructor keeps the program's errno (no syscall).
    "__errno_location",
    // Constructor entry only, before any trap of ours is armed: when the
    // constructor began (USERTRAP_PHASES' `constructor` phase), CLOCK_MONOTONIC
    // through the vDSO.
    "clock_gettime",
    // Weak symbols every shared object references.
    "__cxa_finalize",
    "__gmon_start__",
    "_ITM_registerTMCloneTable",
    "_ITM_deregisterTMCloneTable",
];

#[test]
fn undefined_symbols_are_allowed() {
    let lib = lib_path();
    let nm = which("nm");
    let out = Command::new(&nm)
        .args(["-D", "--undefined-only"])
        .arg(&lib)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {}", nm.display(), e));
    assert!(
        out.status.success(),
        "nm -D --undefined-only {} failed: {}",
        lib.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut bad = Vec::new();
    for line in text.lines() {
        // "                 U memcpy@GLIBC_2.14" or "                 w __gmon_start__"
        let Some(sym) = line.split_whitespace().last() else { continue };
        let base = sym.split('@').next().unwrap_or(sym);
        if !ALLOWED_UNDEFINED.contains(&base) {
            bad.push(line.trim().to_string());
        }
    }
    assert!(
        bad.is_empty(),
        "{} imports symbols outside the allowed list (ALLOWED_UNDEFINED in tests/library.rs):\n  {}\n\
         Code reachable from signal handlers must not call libc functions that enter the kernel \
         (they would be intercepted again, may deadlock on locks held by the interrupted code, \
         and use errno/TLS that raw clone() threads lack): make the system call directly. If the \
         symbol is genuinely safe (pure memory function, load-time only), add it to the list \
         with a comment saying why.",
        lib.display(),
        bad.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// Configuration errors: the library refuses to run the program at all.

/// Runs /bin/echo under the library with `env` and checks that main never ran
/// (no stdout), the exit is non-zero, and stderr is exactly one line holding
/// every word of `needles`.
fn assert_config_error(backend: Backend, env: &[(&str, &str)], needles: &[&str]) {
    let mut cmd = Cmd::new("/bin/echo").arg("hello").cwd(std::env::temp_dir());
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let out = run_traced(&cmd, backend);
    let stderr = out.stderr_text();
    let ctx = format!(
        "with {:?} (USERTRAP_BACKEND={} unless overridden): {}\n--- stdout ---\n{}\n--- stderr ---\n{}---",
        env,
        backend,
        out.status,
        out.stdout_text(),
        stderr
    );
    assert!(
        matches!(out.status, Status::Exited(c) if c != 0),
        "a configuration error must end the program with a non-zero exit code, {}",
        ctx
    );
    assert!(out.stdout.is_empty(), "main must never run on a configuration error, {}", ctx);
    assert!(
        stderr.ends_with('\n') && stderr.lines().count() == 1,
        "a configuration error is exactly one line on stderr, {}",
        ctx
    );
    for n in needles {
        assert!(stderr.contains(n), "the error line should mention `{}`, {}", n, ctx);
    }
}

#[test]
fn bogus_backend_is_rejected() {
    for b in Backend::ALL {
        assert_config_error(b, &[("USERTRAP_BACKEND", "bogus")], &["USERTRAP_BACKEND", "bogus", "seccomp", "sud"]);
    }
}

#[test]
fn unknown_variable_is_rejected() {
    for b in Backend::ALL {
        assert_config_error(b, &[("USERTRAP_BOGUS", "1")], &["USERTRAP_BOGUS"]);
    }
}

#[test]
fn bad_summary_value_is_rejected() {
    for b in Backend::ALL {
        assert_config_error(b, &[("USERTRAP_SUMMARY", "maybe")], &["USERTRAP_SUMMARY", "maybe", "0", "1"]);
    }
}

// ---------------------------------------------------------------------------
// USERTRAP_SUMMARY=1: one line per process at exit, on stderr.

struct Summary {
    pid: u64,
    count: u64,
    backend: String,
}

/// `usertrap: pid <N>: <M> syscalls intercepted (<backend>)`, optionally
/// followed by `, <more details>`.
fn parse_summary(line: &str) -> Option<Summary> {
    let rest = line.strip_prefix("usertrap: pid ")?;
    let (pid, rest) = rest.split_once(": ")?;
    let (count, rest) = rest.split_once(' ')?;
    let (backend, details) = rest.strip_prefix("syscalls intercepted (")?.split_once(')')?;
    if !(details.is_empty() || details.starts_with(", ")) {
        return None;
    }
    Some(Summary { pid: pid.parse().ok()?, count: count.parse().ok()?, backend: backend.to_string() })
}

/// Runs `cmd` natively and with USERTRAP_SUMMARY=1 under `backend`; checks
/// stdout and status are unchanged and that stderr is the native stderr plus
/// summary lines only. Returns the summaries.
fn summaries(cmd: &Cmd, backend: Backend) -> Vec<Summary> {
    let cmd = &cmd.clone().cwd(std::env::temp_dir());
    let native = run_native(cmd);
    let traced = run_traced(&cmd.clone().env("USERTRAP_SUMMARY", "1"), backend);
    let ctx = format!(
        "command: {}\n--- native stdout ---\n{}--- traced stdout ---\n{}--- traced stderr ---\n{}---",
        cmd.shell_line(Mode::Traced(backend)),
        native.stdout_text(),
        traced.stdout_text(),
        traced.stderr_text()
    );
    assert_eq!(native.status, traced.status, "exit status changed under the library; {}", ctx);
    assert!(
        native.stdout == traced.stdout,
        "stdout changed under the library with USERTRAP_SUMMARY=1: the library must never write \
         to stdout; {}",
        ctx
    );
    let mut found = Vec::new();
    let mut rest = String::new();
    for line in traced.stderr_text().lines() {
        match parse_summary(line) {
            Some(s) => found.push(s),
            None => {
                rest.push_str(line);
                rest.push('\n');
            }
        }
    }
    assert_eq!(
        rest,
        native.stderr_text(),
        "traced stderr, summary lines removed, should be the native stderr; {}",
        ctx
    );
    for s in &found {
        assert_eq!(s.backend, backend.name(), "summary names the wrong backend; {}", ctx);
        assert!(s.pid > 0, "summary with pid 0; {}", ctx);
    }
    found
}

/// Runs `cmd` under `backend` with USERTRAP_SUMMARY naming a file, which
/// every process of the tree appends its line to (programs that close stderr
/// before exiting, as coreutils' echo and env do, still get theirs); checks
/// stdout and status against the native run. Returns the summaries.
fn summaries_in_file(cmd: &Cmd, backend: Backend, case: &str) -> Vec<Summary> {
    let dir = scratch_dir(case, backend);
    fresh_dir(&dir);
    let file = dir.join("summary.txt");
    let cmd = &cmd.clone().cwd(&dir);
    let native = run_native(cmd);
    let traced = run_traced(&cmd.clone().env("USERTRAP_SUMMARY", &file), backend);
    assert_eq!(native.status, traced.status, "exit status changed under the library");
    assert!(native.stdout == traced.stdout, "stdout changed under the library");
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let found: Vec<Summary> = text.lines().filter_map(parse_summary).collect();
    assert_eq!(found.len(), text.lines().count(), "unexpected lines in the summary file:\n{}", text);
    let _ = std::fs::remove_dir_all(&dir);
    found
}

const GETPPID_5000: &str = "import os\nfor _ in range(5000): os.getppid()\nprint('done')";

fn interception_is_counted(backend: Backend) {
    let cmd = Cmd::new(python3()).args(["-c", GETPPID_5000]);
    let s = summaries(&cmd, backend);
    assert_eq!(s.len(), 1, "python3 is one process: expected exactly one summary line, got {}", s.len());
    assert!(
        s[0].count >= 5000,
        "python3 made at least 5000 getppid calls, the library counted {} ({})",
        s[0].count,
        backend
    );
}

#[test]
fn interception_is_counted_seccomp() {
    interception_is_counted(Backend::Seccomp);
}

#[test]
fn interception_is_counted_sud() {
    interception_is_counted(Backend::Sud);
}

#[test]
fn library_output_never_goes_to_stdout() {
    let py = python3();
    for b in Backend::ALL {
        summaries(&Cmd::new("/bin/echo").args(["hello", "world"]), b);
        summaries(
            &Cmd::new(&py).args(["-c", "import sys\nprint('out'); print('err', file=sys.stderr)\nsys.exit(3)"]),
            b,
        );
        summaries(&Cmd::new(which("cat")).stdin(b"through cat\n".repeat(100)), b);
    }
}

/// A child that execs after `env -i` (which scrubs LD_PRELOAD and every
/// USERTRAP_* variable) must be traced again: the library puts its variables
/// back into the environment of every execve.
#[test]
fn exec_under_sud_retraces_children() {
    // Four processes: sh, and the three it forks: /bin/true, env -i
    // /bin/echo, env -i python3 (dash forks for the last command too; were
    // it to exec it instead, sh's line would simply come from python3).
    // Whether the library prints a summary at each exec or only at exit,
    // that is at least 4 lines, and python3's 5000 getppid calls are counted
    // only if it was traced after env -i. coreutils' echo and env close
    // stderr before exiting: the summary goes to a file.
    let script = format!("/bin/true; env -i /bin/echo hi; env -i {} -c \"$1\"", shell_quote(python3().as_os_str()));
    let cmd = Cmd::new("/bin/sh").args(["-c", &script, "sh", GETPPID_5000]);
    let s = summaries_in_file(&cmd, Backend::Sud, "exec-retrace");
    let lines: Vec<String> = s.iter().map(|s| format!("pid {}: {} ({})", s.pid, s.count, s.backend)).collect();
    assert!(
        s.len() >= 4,
        "expected a summary line per process (sh, true, env -i echo, env -i python3: at least 4), got {}:\n  {}\n\
         (every process appends its line to the USERTRAP_SUMMARY file)",
        s.len(),
        lines.join("\n  ")
    );
    assert!(
        s.iter().any(|s| s.count >= 5000),
        "no summary counts python3's 5000 getppid calls: the program exec'd after `env -i` was \
         not traced (the library must restore LD_PRELOAD and its settings on execve). Summaries:\n  {}",
        lines.join("\n  ")
    );
}

/// The slow path runs on whatever stack the trap found the thread on, often
/// a program's own small alternate stack (SIGSTKSZ). Every trapped syscall
/// passes through on_sigsys, run_for_program and the dispatch closure: their
/// frames must stay small, so big buffers (reports, exec environments) must
/// stay in functions of their own (#[inline(never)]).
#[test]
fn slow_path_stack_frames_are_small() {
    let out = Command::new(which("objdump"))
        .args(["-d", "--no-show-raw-insn", "-C"])
        .arg(lib_path())
        .output()
        .expect("objdump");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut frames: Vec<(String, u64)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_suffix(">:").and_then(|l| l.split_once(" <")).map(|(_, n)| n.to_string()) {
            frames.push((name, 0));
        } else if let Some(imm) = line.split("sub    $0x").nth(1).and_then(|r| r.strip_suffix(",%rsp")) {
            if let (Ok(v), Some(last)) = (u64::from_str_radix(imm, 16), frames.last_mut()) {
                last.1 += v;
            }
        }
    }
    let hot = [
        "sigsys::on_sigsys",
        "sigsys::run_for_program",
        // The timed call (the slow path's and the fast path's, traced or not).
        "dispatch::dispatch::{{closure}}",
        "fault::on_fault",
        "delivery::on_program_signal",
    ];
    let mut total = 0;
    for name in hot {
        let size = frames.iter().filter(|(f, _)| f.contains(name)).map(|(_, s)| *s).max();
        let size = size.unwrap_or_else(|| panic!("{} not found in the library's disassembly", name));
        total += size;
        assert!(size <= 512, "{} reserves {} bytes of stack on every trapped syscall", name, size);
    }
    assert!(total <= 1024, "the slow path's frames add up to {} bytes", total);
}

/// Out of address space (`ulimit -v 6000`, the library preloaded into
/// /bin/echo): the library's tables for patching do not fit. That must mean
/// the slow path and one note, never a panic, and the program runs as
/// natively (it used to abort with "internal error (panic)").
fn runs_with_little_address_space(backend: Backend) {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("/bin/echo");
    cmd.arg("hi").env("LD_PRELOAD", lib_path()).env("USERTRAP_BACKEND", backend.name());
    // SAFETY: setrlimit is async-signal-safe; it runs in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 6000 * 1024, rlim_max: 6000 * 1024 };
            if libc::setrlimit(libc::RLIMIT_AS, &raw const lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().expect("run /bin/echo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stdout).as_ref()),
        (Some(0), "hi\n"),
        "/bin/echo under RLIMIT_AS 6000 KiB ({}): {}\nstderr:\n{}",
        backend,
        out.status,
        stderr
    );
    assert!(!stderr.contains("panic"), "stderr:\n{}", stderr);
    assert!(
        stderr.lines().all(|l| l.starts_with("usertrap: ") || l.starts_with("  ") || l.starts_with(" ")),
        "stderr:\n{}",
        stderr
    );
}

#[test]
fn runs_with_little_address_space_seccomp() {
    runs_with_little_address_space(Backend::Seccomp);
}

#[test]
fn runs_with_little_address_space_sud() {
    runs_with_little_address_space(Backend::Sud);
}
