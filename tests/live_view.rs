//! `usertrap stat -i 1` (issue 14): on c_tests/live_loop (about 3.5 s:
//! 35 rounds of 100 getppid calls and a 100 ms sleep), with each backend,
//! at least three interim tables whose counts grow, then a final table
//! with the same calls as a run without -i; the program's output is the
//! native one. No timed assertion beyond those counts.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

fn usertrap_bin() -> PathBuf {
    let p = repo_root().join("target/release/usertrap");
    assert!(p.is_file(), "{} is missing: run `make`", p.display());
    p
}

/// (syscall -> (calls, errors)) of a text table.
fn rows(table: &str) -> BTreeMap<String, (u64, u64)> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|c| {
            c.len() >= 5 && c[0].parse::<f64>().is_ok() && c[2].parse::<u64>().is_ok() && c[3].parse::<u64>().is_ok()
        })
        .map(|c| (c.last().unwrap().to_string(), (c[2].parse().unwrap(), c[3].parse().unwrap())))
        .collect()
}

/// Runs `usertrap stat OPTS -o FILE -- live_loop`; checks the program's
/// output against `native`; returns the file's text.
fn stat(backend: Backend, opts: &[&str], native: &Output, case: &str) -> String {
    let dir = scratch_dir(case, backend);
    fresh_dir(&dir);
    let out = dir.join("aggregate.txt");
    let cmd = Cmd::new(usertrap_bin())
        .args(["stat", "--backend", backend.name()])
        .args(opts)
        .arg("-o")
        .arg(&out)
        .arg("--")
        .arg(c_test_binary("live_loop"))
        .cwd(&dir);
    let traced = run_native(&cmd);
    assert_eq!(traced.status, native.status, "{case} ({backend}): status; stderr:\n{}", traced.stderr_text());
    assert_eq!(traced.stdout_text(), native.stdout_text(), "{case} ({backend}): stdout");
    assert_eq!(traced.stderr_text(), native.stderr_text(), "{case} ({backend}): stderr");
    fs::read_to_string(&out).unwrap()
}

#[test]
fn interval_prints_growing_interim_tables_and_the_same_final_one() {
    let native = run_native(&Cmd::new(c_test_binary("live_loop")));
    assert!(native.status.success());
    for b in Backend::ALL {
        let plain = stat(b, &[], &native, "live-plain");
        let live = stat(b, &["-i", "1"], &native, "live-interval");
        let parts: Vec<&str> = live.split("usertrap: interim, ").collect();
        let interims = &parts[1..];
        assert!(interims.len() >= 3, "{b}: {} interim tables:\n{live}", interims.len());
        // The final table follows the last interim one.
        let (last, final_table) = interims.last().unwrap().split_once("\n\nusertrap: pid ").expect("a final table");
        let mut counts: Vec<u64> = interims[..interims.len() - 1].iter().map(|t| rows(t)["getppid"].0).collect();
        counts.push(rows(last)["getppid"].0);
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{b}: getppid counts {counts:?}:\n{live}");
        assert!(counts.last() > counts.first(), "{b}: the counts grow: {counts:?}");
        let final_rows = rows(final_table);
        assert_eq!(final_rows["getppid"], (3500, 0), "{b}:\n{final_table}");
        assert!(counts.iter().all(|&c| c <= 3500), "{b}: {counts:?}");
        assert_eq!(
            final_rows,
            rows(&plain),
            "{b}: the final table's calls and errors, with -i and without:\n{live}\n{plain}"
        );
    }
}
