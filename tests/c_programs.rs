//! The C test programs of c_tests/, each run natively and under the library
//! with each backend; stdout, stderr, exit status (or terminating signal) and
//! the files left in the scratch cwd must be the same.
//!
//! Directives in a program's source, normally its first line (a comment
//! line of its own, `//` or inside a `/* */` block):
//!   // usertrap-test: exec        the program calls execve (documentation
//!                                 only: exec is followed under both backends,
//!                                 so such programs are compared like any
//!                                 other; tests/exec.rs has more on exec).
//!   // usertrap-test: timeout=N   N seconds instead of the default 20.
//!   // usertrap-test: report=json  traced runs write their reports as JSON
//!                                 (still to /dev/null): the larger report
//!                                 at exit must not disturb the program.
//!   // usertrap-test: unsupported the program does something the library
//!                                 cannot share with it and refuses (see the
//!                                 README's limits). It must pass natively;
//!                                 under the library it must end on its own
//!                                 (no hang, not killed by a signal) with a
//!                                 `usertrap:` line on stderr saying why.
//! Several may share a line: `// usertrap-test: exec timeout=40`.
//!
//! Each program gets a module with four tests: `NAME::seccomp` and `NAME::sud`
//! (patching on, the default), `NAME::seccomp_slow_path_only` and
//! `NAME::sud_slow_path_only` (USERTRAP_PATCH=0); formerly two,
//! (macro_rules cannot paste identifiers into `NAME_seccomp` without a crate);
//! `cargo test --release --test c_programs NAME` runs both.
//! `every_c_program_is_listed` fails when a c_tests/*.c is missing from the list.
//!
//! c_tests/static_*.c are linked statically (the Makefile's static_% rule).
//! Started straight from the harness, LD_PRELOAD never reaches them, so here
//! they only show the comparison itself holds; tests/exec.rs starts them from
//! traced processes, where they must be intercepted.

mod common;

use common::*;
use std::fs;
use std::time::Duration;

#[derive(Debug, Default)]
struct Directives {
    /// Documentation only: programs that exec are compared like any other.
    #[allow(dead_code)]
    exec: bool,
    unsupported: bool,
    timeout: Option<Duration>,
    json_report: bool,
}

fn directives(name: &str) -> Directives {
    let path = repo_root().join("c_tests").join(format!("{}.c", name));
    let src = fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {}", path.display(), e));
    let mut d = Directives::default();
    for line in src.lines() {
        // `// usertrap-test: ...`, or the same inside a `/* ... */` block
        // (` * usertrap-test: ...`).
        let text = line.trim().trim_start_matches(['/', '*']).trim();
        let Some(rest) = text.strip_prefix("usertrap-test:") else {
            continue;
        };
        let rest = rest.trim_end().trim_end_matches("*/");
        for tok in rest.split(|c: char| c.is_whitespace() || c == ',').filter(|t| !t.is_empty()) {
            if tok == "exec" {
                d.exec = true;
            } else if tok == "unsupported" {
                d.unsupported = true;
            } else if tok == "report=json" {
                d.json_report = true;
            } else if let Some(n) = tok.strip_prefix("timeout=") {
                let secs: u64 = n
                    .parse()
                    .unwrap_or_else(|_| panic!("{}: bad directive `{}`: timeout=SECONDS", path.display(), tok));
                d.timeout = Some(Duration::from_secs(secs));
            } else {
                panic!(
                    "{}: unknown directive `{}` (known: exec, unsupported, timeout=N, report=json); teach tests/c_programs.rs about it",
                    path.display(),
                    tok
                );
            }
        }
    }
    d
}

fn c_cmd(name: &str, d: &Directives) -> Cmd {
    let cmd = Cmd::new(c_test_binary(name)).timeout(d.timeout.unwrap_or(DEFAULT_TIMEOUT));
    // The native run ignores the variable; the library reads it.
    if d.json_report {
        cmd.env("USERTRAP_FORMAT", "json")
    } else {
        cmd
    }
}

/// With patching (the default: sites become jumps to the fast path after
/// their first trap) or without (USERTRAP_PATCH=0: every call a signal).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Patching {
    On,
    Off,
}

fn run_c_test(name: &str, backend: Backend, patching: Patching) {
    let d = directives(name);
    let (suffix, patch) = match patching {
        Patching::On => ("", "1"),
        Patching::Off => ("-slow", "0"),
    };
    // The native run ignores the variable; the library reads it.
    let c_cmd = |name: &str, d: &Directives| c_cmd(name, d).env("USERTRAP_PATCH", patch);
    if d.unsupported {
        if patching == Patching::On {
            refusal_is_reported(name, &d, backend);
        }
        return;
    }
    // Some programs end on purpose with an exit code or a signal: only
    // sameness with the native run is checked.
    let case = Case::new(format!("c-{}{}", name, suffix)).step(c_cmd(name, &d)).allow_native_failure();
    let native = compare_native_and_traced(&case, backend);
    // Identical failures natively and traced would compare equal: a program
    // whose own checks fail natively is broken and must not pass silently.
    let out = native[0].stdout_text();
    let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        fails.is_empty(),
        "c_tests/{}.c reports failed checks when run NATIVELY (the same under the library): \
         the test program itself is broken:\n  {}",
        name,
        fails.join("\n  ")
    );
}

/// A program doing what the library refuses: natively it passes; under the
/// library it is told no, clearly, and is not left hanging or crashed.
fn refusal_is_reported(name: &str, d: &Directives, backend: Backend) {
    let dir = scratch_dir(&format!("c-{}-refused", name), backend);
    fresh_dir(&dir);
    let native = run_native(&c_cmd(name, d).cwd(&dir));
    assert!(
        native.status.success() && !native.stdout_text().lines().any(|l| l.starts_with("FAIL")),
        "c_tests/{}.c must pass natively; it ended with {}:\n{}",
        name,
        native.status,
        native.stdout_text()
    );
    fresh_dir(&dir);
    let out = run_traced(&c_cmd(name, d).cwd(&dir), backend);
    let stderr = out.stderr_text();
    assert!(
        stderr.lines().any(|l| l.starts_with("usertrap:")) && matches!(out.status, Status::Exited(_)),
        "{} does what usertrap refuses; under {} it should end on its own with a `usertrap:` \
         line on stderr. It ended with {} and printed:\n--- stdout ---\n{}\n--- stderr ---\n{}---",
        name,
        backend,
        out.status,
        out.stdout_text(),
        stderr
    );
    let _ = fs::remove_dir_all(&dir);
}

fn c_sources() -> Vec<String> {
    let dir = repo_root().join("c_tests");
    let mut v: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {}", dir.display(), e))
        .filter_map(|e| {
            let p = e.ok()?.path();
            if p.extension()? == "c" {
                Some(p.file_stem()?.to_string_lossy().into_owned())
            } else {
                None
            }
        })
        .collect();
    v.sort();
    v
}

/// C programs another test file runs, because what they print differs from
/// a native run in a documented way (tests/debuggers.rs asserts exactly how),
/// or because they are run under a command (trace_calls: tests/trace.rs,
/// under `usertrap trace`, against a native run).
const RUN_ELSEWHERE: &[&str] =
    &["exec_etxtbsy", "fanotify_exec", "own_seccomp_before_start", "ptrace_traceme", "trace_calls"];

/// c_tests/own_seccomp_before_start.c: an image that starts under a filter
/// refusing rt_sigaction and SUD's prctl (installed before its exec). Under
/// SUD the library steps aside for that image: the same output, status and
/// stderr as natively, plus one `usertrap:` line saying so (the image
/// before the exec is intercepted as usual).
#[test]
fn a_filter_from_before_the_start_sud() {
    let name = "own_seccomp_before_start";
    let d = directives(name);
    let dir = scratch_dir("c-own_seccomp_before_start", Backend::Sud);
    fresh_dir(&dir);
    let native = run_native(&c_cmd(name, &d).cwd(&dir));
    assert_eq!(native.status, Status::Exited(3), "natively:\n{}", native.stdout_text());
    fresh_dir(&dir);
    let traced = run_traced(&c_cmd(name, &d).cwd(&dir), Backend::Sud);
    let stderr = traced.stderr_text();
    let (ours, rest): (Vec<&str>, Vec<&str>) = stderr.lines().partition(|l| l.starts_with("usertrap:"));
    assert!(
        traced.status == native.status
            && traced.stdout_text() == native.stdout_text()
            && rest.join("\n") == native.stderr_text().lines().collect::<Vec<_>>().join("\n")
            && ours.iter().any(|l| l.contains("runs without usertrap")),
        "under sud the exec'd image should run as natively, with one line saying usertrap steps aside.\n\
         native: {}\n{}\ntraced: {}\n--- stdout ---\n{}--- stderr ---\n{}",
        native.status,
        native.stdout_text(),
        traced.status,
        traced.stdout_text(),
        stderr
    );
    let _ = fs::remove_dir_all(&dir);
}

/// The same under the seccomp backend: the library's own filter, inherited
/// with the program's, traps every syscall of the new image, whose
/// handlers cannot be installed: it is refused (status 125), with a
/// `usertrap:` line, not left to die of the first trap (README, Limits).
#[test]
fn a_filter_from_before_the_start_seccomp() {
    let name = "own_seccomp_before_start";
    let d = directives(name);
    let dir = scratch_dir("c-own_seccomp_before_start", Backend::Seccomp);
    fresh_dir(&dir);
    let native = run_native(&c_cmd(name, &d).cwd(&dir));
    assert_eq!(native.status, Status::Exited(3), "natively:\n{}", native.stdout_text());
    fresh_dir(&dir);
    let traced = run_traced(&c_cmd(name, &d).cwd(&dir), Backend::Seccomp);
    let stderr = traced.stderr_text();
    assert!(
        traced.status == Status::Exited(125) && stderr.lines().any(|l| l.starts_with("usertrap:")),
        "under seccomp the exec'd image should be refused with a `usertrap:` line; it ended with {}:\n\
         --- stdout ---\n{}--- stderr ---\n{}",
        traced.status,
        traced.stdout_text(),
        stderr
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn every_c_program_is_listed() {
    let sources = c_sources();
    let missing: Vec<&String> =
        sources.iter().filter(|s| !LISTED.contains(&s.as_str()) && !RUN_ELSEWHERE.contains(&s.as_str())).collect();
    let stale: Vec<&&str> = LISTED.iter().filter(|l| !sources.iter().any(|s| s == *l)).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "tests/c_programs.rs and c_tests/ disagree.\n  not listed in the c_tests! macro (never run): {:?}\n  \
         listed but c_tests/NAME.c does not exist: {:?}\nAdd or remove the names in the c_tests! list.",
        missing,
        stale
    );
}

macro_rules! c_tests {
    ($($name:ident),* $(,)?) => {
        const LISTED: &[&str] = &[$(stringify!($name)),*];
        $(
            mod $name {
                use super::{run_c_test, Backend, Patching};
                #[test]
                fn seccomp() {
                    run_c_test(stringify!($name), Backend::Seccomp, Patching::On);
                }
                #[test]
                fn sud() {
                    run_c_test(stringify!($name), Backend::Sud, Patching::On);
                }
                #[test]
                fn seccomp_slow_path_only() {
                    run_c_test(stringify!($name), Backend::Seccomp, Patching::Off);
                }
                #[test]
                fn sud_slow_path_only() {
                    run_c_test(stringify!($name), Backend::Sud, Patching::Off);
                }
            }
        )*
    };
}

c_tests! {
    signal_during_exit_report,
    fork_child_killed_at_once,
    int_arguments_upper_bits,
    syscall_number_upper_bits,
    bad_arguments,
    valgrind_guest,
    exec_refused,
    call_sites,
    named_threads,
    live_loop,
    app_uses_gs,
    app_uses_sud,
    patch_race,
    patch_race_forms,
    seed_after_form,
    block_all_signals,
    close_all_fds,
    comm_of_report,
    daemon_closes_all,
    deny_write_execute,
    die_abort,
    die_sigill,
    die_sigsegv,
    die_sigsys_kill,
    die_sigsys_pending,
    die_sigterm_raise,
    early_ctor_signals,
    errno_at_main,
    exec_errors,
    exec_many,
    exec_observe,
    execve_chain,
    execveat_fexecve,
    exec_few_fds,
    exec_small_stack,
    chroot_exec,
    exit_42,
    exit_from_thread,
    exit_group_threads,
    fast_emulated,
    fast_path_stack,
    fixed_low_mappings,
    forged_sigsys,
    fork,
    fork_pending_owned,
    int80,
    io_and_fds,
    io_uring_wait_mask,
    jit_dual_mapping,
    jit_syscall,
    kill_owned_other_thread,
    kill_segv_storm,
    main_pthread_exit,
    many_sites,
    membarrier_sync_core,
    no_new_privs,
    own_memory_calls,
    own_seccomp_allowlist,
    own_seccomp_emulated,
    own_seccomp_filter,
    own_seccomp_sigreturn,
    own_sigsegv_handler,
    owned_signal_in_masked_wait,
    posix_spawn,
    prepatch_exec,
    preinit_handler,
    pthread_exit_all,
    raw_clone_no_settls,
    registers,
    report_targets,
    registers_rcx_r11,
    sigaction_roundtrip,
    sa_resethand,
    signal_at_syscall_return,
    unblock_many_pending,
    sig_ign_inherit,
    sigaltstack_user,
    sigbus_pointers,
    seccomp_strict,
    sigsegv_discard,
    siglongjmp_read,
    sigmask_race,
    sigmask_report,
    signal_during_sigreturn,
    signal_frames,
    signal_restart,
    signal_storm,
    small_altstacks,
    small_stacks,
    stale_sites,
    sockets_loopback,
    spawn_sigreset,
    syscall3_emulated,
    temp_mask_waits,
    static_getppid_loop,
    static_hello,
    thread_start_crowd,
    thread_storm,
    tsc_disabled,
    vfork_exec,
    vfork_go_style,
    vfork_then_exit,
    vsyscall,
}
