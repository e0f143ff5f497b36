//! The call-site report (issue 14): c_tests/call_sites reads /dev/zero
//! 1000 times from its own reader_one, 2000 from reader_two (each its own
//! `syscall`) and 3000 through libc's read(2); under `usertrap stat`, with
//! each backend, the program behaves as natively and the report names each
//! site's object and function with exactly its calls.

mod common;

use common::*;
use std::fs;
use std::path::PathBuf;

fn usertrap_bin() -> PathBuf {
    let p = repo_root().join("target/release/usertrap");
    assert!(p.is_file(), "{} is missing: run `make`", p.display());
    p
}

const COUNTS: [u64; 3] = [1000, 2000, 3000];

/// Runs the program natively and under `usertrap stat` with `opts`; the
/// same stdout, stderr and status; returns what `stat` wrote to its output.
fn stat_vs_native(case: &str, backend: Backend, opts: &[&str]) -> String {
    let prog = c_test_binary("call_sites");
    let args: Vec<String> = COUNTS.iter().map(|n| n.to_string()).collect();
    let dir = scratch_dir(case, backend);
    fresh_dir(&dir);
    let native = run_native(&Cmd::new(&prog).args(&args).cwd(&dir));
    assert!(native.status.success(), "native run failed: {}", native.stderr_text());
    let out = dir.join("aggregate");
    let cmd = Cmd::new(usertrap_bin())
        .args(["stat", "--backend", backend.name(), "-o"])
        .arg(&out)
        .args(opts)
        .arg("--")
        .arg(&prog)
        .args(&args)
        .cwd(&dir);
    let traced = run_native(&cmd);
    assert_eq!(traced.status, native.status, "{case} ({backend}): status; stderr:\n{}", traced.stderr_text());
    assert_eq!(traced.stdout_text(), native.stdout_text(), "{case} ({backend}): stdout");
    assert_eq!(traced.stderr_text(), native.stderr_text(), "{case} ({backend}): stderr");
    fs::read_to_string(&out).unwrap()
}

#[test]
fn call_sites_name_object_and_function_with_exact_counts() {
    let prog = c_test_binary("call_sites");
    let prog_path = prog.to_str().unwrap();
    for b in Backend::ALL {
        let text = stat_vs_native("call-sites-json", b, &["--json"]);
        let agg: serde_json::Value = serde_json::from_str(&text).unwrap();
        let sites = agg["sites"].as_array().expect("sites");
        let reads: Vec<&serde_json::Value> = sites.iter().filter(|s| s["name"] == "read").collect();
        let calls = |s: &serde_json::Value| s["calls"].as_u64().unwrap();
        let find = |pred: &dyn Fn(&serde_json::Value) -> bool| -> Vec<&serde_json::Value> {
            reads.iter().copied().filter(|s| pred(s)).collect()
        };
        for (func, n) in [("reader_one", COUNTS[0]), ("reader_two", COUNTS[1])] {
            let at = find(&|s| s["symbol"] == func);
            assert_eq!(at.len(), 1, "{b}: one site in {func}:\n{text}");
            assert_eq!(at[0]["object"], prog_path, "{b}: {func}'s object");
            assert_eq!(calls(at[0]), n, "{b}: calls at {func}");
            let (fast, slow) = (at[0]["fast_calls"].as_u64().unwrap(), at[0]["slow_calls"].as_u64().unwrap());
            assert_eq!(fast + slow, n, "{b}: fast + slow at {func}");
            assert!(fast > 0, "{b}: {func}'s site was patched (fast path)");
        }
        // libc's read(2): its own site in libc, with a symbol of libc's.
        let libc = find(&|s| s["object"].as_str().is_some_and(|o| o.contains("/libc.so")));
        assert_eq!(libc.len(), 1, "{b}: one read site in libc:\n{text}");
        assert_eq!(calls(libc[0]), COUNTS[2], "{b}: calls at libc's read");
        assert!(libc[0]["symbol"].as_str().is_some_and(|s| s.contains("read")), "{b}: {}", libc[0]);
        // Every read is at one of the three.
        assert_eq!(reads.len(), 3, "{b}: read sites:\n{text}");
        let all = agg["syscalls"].as_array().unwrap().iter().find(|s| s["name"] == "read").unwrap();
        assert_eq!(calls(all), COUNTS.iter().sum::<u64>(), "{b}: read calls in all");
        assert_eq!(agg["sites_not_kept"], 0, "{b}");

        // The text: the table names the functions.
        let text = stat_vs_native("call-sites-text", b, &["--sites"]);
        let line = |func: &str| text.lines().find(|l| l.contains(&format!("  read  {func}+0x"))).map(str::to_string);
        for (func, n) in [("reader_one", COUNTS[0]), ("reader_two", COUNTS[1])] {
            let l = line(func).unwrap_or_else(|| panic!("{b}: no line for {func}:\n{text}"));
            assert_eq!(l.split_whitespace().next(), Some(n.to_string().as_str()), "{b}: {l}");
            assert!(l.ends_with("(call_sites)"), "{b}: {l}");
        }
    }
}

/// The process's own text report (preloaded, every call on the slow path)
/// lists the sites whose slow calls matter with their object and offset:
/// the report reads /proc/self/maps for them only when some site has that
/// many slow calls, and must not leave them unlocated then.
#[test]
fn text_report_locates_the_slow_sites_that_matter() {
    let prog = c_test_binary("call_sites");
    let args: Vec<String> = COUNTS.iter().map(|n| n.to_string()).collect();
    for b in Backend::ALL {
        let dir = scratch_dir("call-sites-own-text", b);
        fresh_dir(&dir);
        let out = dir.join("report.txt");
        let cmd = Cmd::new(&prog).args(&args).env("USERTRAP_PATCH", "0").env("USERTRAP_OUTPUT", &out).cwd(&dir);
        let native = run_native(&Cmd::new(&prog).args(&args).cwd(&dir));
        let traced = run_traced(&cmd, b);
        assert_eq!(traced.status, native.status, "{b}: status; stderr:\n{}", traced.stderr_text());
        assert_eq!(traced.stdout_text(), native.stdout_text(), "{b}: stdout");
        let text = fs::read_to_string(&out).unwrap();
        let listed: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("calls left on the slow path")).collect();
        assert!(!listed.is_empty(), "{b}: no slow sites listed:\n{text}");
        // `  <slow calls>  read  <object>+0x<offset>`, one line per site.
        for (object, n) in [("call_sites", COUNTS[0]), ("call_sites", COUNTS[1]), ("libc.so.6", COUNTS[2])] {
            let at = format!("  read  {object}+0x");
            let found = listed.iter().any(|l| l.contains(&at) && l.split_whitespace().next() == Some(&n.to_string()));
            assert!(found, "{b}: no line for {n} reads in {object}:\n{text}");
        }
    }
}

/// Where each site is (its object and offset) is the same whether the
/// library asks the kernel mapping by mapping (PROCMAP_QUERY, under SUD
/// without any seccomp filter) or reads /proc/self/maps as text (under
/// seccomp, whose filter rules the query out): c_tests/jit_syscall calls
/// from its own code, libc's and pages of generated code, some of them
/// unmapped before the end (no object).
#[test]
fn site_locations_are_the_same_by_query_and_by_text() {
    let prog = c_test_binary("jit_syscall");
    let mut seen = Vec::new();
    for b in Backend::ALL {
        let dir = scratch_dir("site-locations", b);
        fresh_dir(&dir);
        let out = dir.join("report.json");
        let cmd = Cmd::new(&prog).env("USERTRAP_FORMAT", "json").env("USERTRAP_OUTPUT", &out).cwd(&dir);
        let traced = run_traced(&cmd, b);
        assert!(traced.status.success(), "{b}: {}", traced.stderr_text());
        let report: serde_json::Value = serde_json::from_str(&fs::read_to_string(&out).unwrap()).unwrap();
        let sites = report["sites"].as_array().expect("sites");
        // In a file: (object, offset, number, calls), exact; generated code
        // (an empty object: its offset depends on where it was mapped) and
        // code gone at the end (no object): how many sites.
        let mut in_files: Vec<String> = Vec::new();
        let (mut anonymous, mut gone) = (0, 0);
        for s in sites {
            match s["object"].as_str() {
                Some("") => anonymous += 1,
                Some(o) => in_files.push(format!("{o} {} {} {}", s["offset"], s["nr"], s["calls"])),
                None => gone += 1,
            }
        }
        in_files.sort();
        assert!(in_files.iter().any(|s| s.contains("/libc.so")), "{b}: no site in libc: {in_files:?}");
        assert!(in_files.iter().any(|s| s.contains("jit_syscall")), "{b}: no site in the program: {in_files:?}");
        seen.push((b, in_files, anonymous, gone));
    }
    let (b0, files0, anon0, gone0) = &seen[0];
    for (b, files, anon, gone) in &seen[1..] {
        assert_eq!(files, files0, "sites in files: {b} against {b0}");
        assert_eq!((anon, gone), (anon0, gone0), "sites in generated code, and gone: {b} against {b0}");
    }
}
