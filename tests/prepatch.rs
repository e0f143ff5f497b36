//! Pre-patching across exec (issue 12): an exec'd image starts with the
//! libc sites its parent image had patched already patched, so their first
//! calls take the fast path. c_tests/prepatch_exec calls libc's write(2),
//! read(2) and close(2) three times, then execs itself; the new image calls
//! each once (and writes its output). Under each backend the program behaves as natively, and the
//! new image's report shows those calls on the fast path, while with
//! USERTRAP_PREPATCH=0 the same calls (each the first at its site) take
//! the slow path.

mod common;

use common::*;
use serde_json::Value;

/// The exec'd image's libc sites of `name`, as
/// (fast_calls, slow_calls), from its JSON report in `dir`.
fn child_first_calls(dir: &std::path::Path, name: &str) -> Vec<(u64, u64)> {
    let reports: Vec<Value> = report_files(dir)
        .into_iter()
        .map(|(p, t)| serde_json::from_str(&t).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect();
    let in_libc = |s: &&Value| s["object"].as_str().is_some_and(|o| o.contains("/libc.so"));
    // The parent's image reads three times, the exec'd one once.
    let child: Vec<&Value> = reports
        .iter()
        .filter(|r| {
            r["sites"]
                .as_array()
                .is_some_and(|sites| sites.iter().filter(in_libc).any(|s| s["name"] == "read" && s["calls"] == 1))
        })
        .collect();
    assert_eq!(child.len(), 1, "one report of the exec'd image among {}: {reports:#?}", reports.len());
    let sites = child[0]["sites"].as_array().unwrap();
    sites
        .iter()
        .filter(in_libc)
        .filter(|s| s["name"] == name)
        .map(|s| (s["fast_calls"].as_u64().unwrap(), s["slow_calls"].as_u64().unwrap()))
        .collect()
}

/// (`tag` names the reports' directory: tests run in parallel.)
fn run_case(backend: Backend, prepatch: &str, tag: &str) -> std::path::PathBuf {
    let case = format!("prepatch-exec-{tag}-{prepatch}");
    let prog = c_test_binary("prepatch_exec");
    let native = run_native(&Cmd::new(&prog));
    assert!(native.status.success(), "native run failed: {}", native.stderr_text());
    let dir = fresh_reports_dir(&case, backend);
    let cmd = with_json_reports(Cmd::new(&prog).env("USERTRAP_PREPATCH", prepatch), &dir);
    let traced = run_traced(&cmd, backend);
    assert_eq!(traced.status, native.status, "{case} ({backend}): status; stderr:\n{}", traced.stderr_text());
    assert_eq!(traced.stdout_text(), native.stdout_text(), "{case} ({backend}): stdout");
    assert_eq!(traced.stderr_text(), native.stderr_text(), "{case} ({backend}): stderr");
    dir
}

#[test]
fn first_calls_in_an_execd_image_are_fast() {
    for b in Backend::ALL {
        let dir = run_case(b, "1", "first");
        for name in ["write", "read", "close"] {
            let got = child_first_calls(&dir, name);
            assert!(!got.is_empty(), "{b}: no {name} site in libc in the exec'd image's report");
            for (fast, slow) in got {
                assert_eq!((fast, slow), (fast + slow, 0), "{b}: {name}'s first calls in the exec'd image were slow");
            }
        }
    }
}

#[test]
fn without_prepatching_first_calls_are_slow() {
    for b in Backend::ALL {
        let dir = run_case(b, "0", "first");
        // read once (slow), write twice (pipe and stdout: the first slow).
        assert_eq!(child_first_calls(&dir, "read"), [(0, 1)], "{b}: read in the exec'd image, USERTRAP_PREPATCH=0");
        assert_eq!(child_first_calls(&dir, "write"), [(1, 1)], "{b}: write in the exec'd image, USERTRAP_PREPATCH=0");
    }
}

/// libc's own start-up calls in an exec'd image (`prlimit64` for
/// RLIMIT_STACK, before any constructor, so before the library's): the
/// launcher patches libc's carried sites when the loader maps libc, so
/// the child's first call there is fast (its parent called getrlimit at
/// the same site); with USERTRAP_PREPATCH=0 it is slow.
#[test]
fn libc_start_up_calls_are_fast_in_execd_images() {
    for b in Backend::ALL {
        let on = child_first_calls(&run_case(b, "1", "start-up"), "prlimit64");
        assert!(!on.is_empty(), "{b}: libc's prlimit64 in the exec'd image's report");
        assert!(on.iter().all(|&(fast, slow)| fast > 0 && slow == 0), "{b}: prepatched: {on:?}");
        let off = child_first_calls(&run_case(b, "0", "start-up"), "prlimit64");
        assert!(off.iter().any(|&(_, slow)| slow > 0), "{b}: USERTRAP_PREPATCH=0: {off:?}");
    }
}

/// `bash -> bash -> cat` (`echo a; bash -c 'echo b; cat /dev/null; echo
/// c'`) natively and under the library with USERTRAP_PREPATCH=`prepatch`
/// (output and status compared), reports in a directory named `case`:
/// every JSON report written, in file order.
fn reports_of_bash_chain(case: &str, backend: Backend, prepatch: &str) -> Vec<Value> {
    let script = "echo a; bash -c 'echo b; cat /dev/null; echo c'";
    let native = run_native(&Cmd::new(which("bash")).args(["-c", script]));
    assert!(native.status.success(), "native run failed: {}", native.stderr_text());
    let dir = fresh_reports_dir(case, backend);
    let cmd = with_json_reports(Cmd::new(which("bash")).args(["-c", script]).env("USERTRAP_PREPATCH", prepatch), &dir);
    let traced = run_traced(&cmd, backend);
    assert_eq!(traced.status, native.status, "{case} ({backend}): status; stderr:\n{}", traced.stderr_text());
    assert_eq!(traced.stdout_text(), native.stdout_text(), "{case} ({backend}): stdout");
    assert_eq!(traced.stderr_text(), native.stderr_text(), "{case} ({backend}): stderr");
    let mut reports = Vec::new();
    for (path, text) in report_files(&dir) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            reports.push(serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
        }
    }
    reports
}

/// The loader's sites of Forms R and P (`openat` with its number loaded
/// earlier, `read`'s `xor %eax,%eax; syscall`), which the launcher cannot
/// prove itself: the first image proves them before it execs, and they go
/// with its pre-patched sites to the launcher of the exec'd image, which
/// patches them before the loader runs, and from there to the next image.
/// In `bash -> bash -> cat` the second bash's and cat's loaders make those
/// calls on the fast path from the first; with USERTRAP_PREPATCH=0 on the
/// slow path. (loader sites of the exec'd images of the syscalls `names`,
/// (fast, slow) per report.)
fn loader_calls_of_execd_images(backend: Backend, prepatch: &str, names: &[&str]) -> Vec<(u64, u64)> {
    // Named by the calls too: the tests that use this run in parallel, each
    // in a reports directory of its own.
    let case = format!("prepatch-loader-{}-{prepatch}", names.join("-"));
    let mut per_image = Vec::new();
    for r in reports_of_bash_chain(&case, backend, prepatch) {
        let (mut fast, mut slow) = (0, 0);
        for s in r["sites"].as_array().into_iter().flatten() {
            let loader = s["object"].as_str().is_some_and(|o| o.contains("/ld-linux"));
            if loader && names.iter().any(|n| s["name"] == *n) {
                fast += s["fast_calls"].as_u64().unwrap();
                slow += s["slow_calls"].as_u64().unwrap();
            }
        }
        // The first image's loader ran before the library: no such calls.
        if fast + slow > 0 {
            per_image.push((fast, slow));
        }
    }
    assert_eq!(per_image.len(), 2, "{case} ({backend}): the second bash and cat call the loader's openat/read");
    per_image
}

#[test]
fn loader_sites_of_other_forms_are_fast_in_execd_images() {
    for b in Backend::ALL {
        for (fast, slow) in loader_calls_of_execd_images(b, "1", &["openat", "read"]) {
            assert_eq!((fast, slow), (fast + slow, 0), "{b}: the loader's openat/read in an exec'd image were slow");
        }
    }
}

/// The loader's thread set-up, which runs before the library is loaded in
/// the first process too (never trapped there): `set_robust_list` after
/// three SSE moves (Form R over `movups; syscall`), and `rseq` in the
/// same function (seed form, which the launcher proves by decoding over
/// that range's original bytes). Proven by the first image before it
/// execs, both are fast in every exec'd image.
#[test]
fn loader_thread_setup_calls_are_fast_in_execd_images() {
    for b in Backend::ALL {
        for (fast, slow) in loader_calls_of_execd_images(b, "1", &["set_robust_list", "rseq"]) {
            assert_eq!((fast, slow), (fast + slow, 0), "{b}: the loader's set_robust_list/rseq were slow");
        }
    }
}

#[test]
fn without_prepatching_loader_sites_of_other_forms_are_slow() {
    for b in Backend::ALL {
        for (fast, slow) in loader_calls_of_execd_images(b, "0", &["openat", "read"]) {
            assert_eq!((fast, slow), (0, fast + slow), "{b}: the loader's openat/read, USERTRAP_PREPATCH=0");
        }
    }
}

/// libc's `_exit` (`mov %esi,%eax; syscall`: `exit_group`, a Form R
/// site), the last call of every image: never worth patching in the image
/// itself, so until an image about to fork or exec proved it for its
/// descendants, every exec'd image ended with a slow call. In
/// `bash -> bash -> cat` the second bash and cat end on the fast path.
/// (libc's `exit_group` sites, (fast, slow) per report that has one.)
fn libc_exit_calls_of_execd_images(backend: Backend, prepatch: &str) -> Vec<(u64, u64)> {
    let case = format!("prepatch-exit-{prepatch}");
    let mut per_image = Vec::new();
    for r in reports_of_bash_chain(&case, backend, prepatch) {
        let exits: Vec<(u64, u64)> = r["sites"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["object"].as_str().is_some_and(|o| o.contains("/libc.so")) && s["name"] == "exit_group")
            .map(|s| (s["fast_calls"].as_u64().unwrap(), s["slow_calls"].as_u64().unwrap()))
            .collect();
        if !exits.is_empty() {
            per_image.push(exits.iter().fold((0, 0), |(f, s), &(f1, s1)| (f + f1, s + s1)));
        }
    }
    // The first bash execs the second (its last command); it forks cat.
    assert_eq!(per_image.len(), 2, "{case} ({backend}): the second bash and cat end with exit_group: {per_image:?}");
    per_image
}

#[test]
fn libc_exit_is_fast_in_execd_images() {
    for b in Backend::ALL {
        for (fast, slow) in libc_exit_calls_of_execd_images(b, "1") {
            assert_eq!((fast, slow), (1, 0), "{b}: libc's exit_group in an exec'd image was slow");
        }
    }
}

#[test]
fn without_prepatching_libc_exit_is_slow() {
    for b in Backend::ALL {
        for (fast, slow) in libc_exit_calls_of_execd_images(b, "0") {
            assert_eq!((fast, slow), (0, 1), "{b}: libc's exit_group, USERTRAP_PREPATCH=0");
        }
    }
}
