//! Per-thread tables (issue 14): `usertrap stat --per-thread` on
//! c_tests/named_threads (thread alpha: 100 getppid calls, then thread
//! beta, started after alpha ended so that it may get alpha's area: 200,
//! the main thread: 50), with each backend: the program behaves as
//! natively, and each thread is reported under its tid and name with
//! exactly its own calls.

mod common;

use common::*;
use std::fs;
use std::path::PathBuf;

fn usertrap_bin() -> PathBuf {
    let p = repo_root().join("target/release/usertrap");
    assert!(p.is_file(), "{} is missing: run `make`", p.display());
    p
}

#[test]
fn each_thread_has_its_own_calls_tid_and_name() {
    let prog = c_test_binary("named_threads");
    for b in Backend::ALL {
        let dir = scratch_dir("per-thread", b);
        fresh_dir(&dir);
        let native = run_native(&Cmd::new(&prog).cwd(&dir));
        let out = dir.join("aggregate.json");
        let cmd = Cmd::new(usertrap_bin())
            .args(["stat", "--per-thread", "--json", "--backend", b.name(), "-o"])
            .arg(&out)
            .arg("--")
            .arg(&prog)
            .cwd(&dir);
        let traced = run_native(&cmd);
        assert_eq!(traced.status, native.status, "{b}: status; stderr:\n{}", traced.stderr_text());
        assert_eq!(traced.stdout_text(), native.stdout_text(), "{b}: stdout");
        assert_eq!(traced.stderr_text(), native.stderr_text(), "{b}: stderr");
        let d: serde_json::Value = serde_json::from_str(&fs::read_to_string(&out).unwrap()).unwrap();
        let p = &d["processes"][0];
        let threads = p["threads"].as_array().unwrap_or_else(|| panic!("{b}: no threads in {p}"));
        let getppid = |name: &str| -> Vec<(u64, u64)> {
            threads
                .iter()
                .filter(|t| t["name"] == name)
                .map(|t| {
                    let calls = t["syscalls"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|s| s["name"] == "getppid")
                        .map_or(0, |s| s["calls"].as_u64().unwrap());
                    (t["tid"].as_u64().unwrap(), calls)
                })
                .collect()
        };
        let main = getppid("named_threads");
        let (alpha, beta) = (getppid("alpha"), getppid("beta"));
        assert_eq!(main, [(p["pid"].as_u64().unwrap(), 50)], "{b}: the main thread is the pid:\n{threads:#?}");
        assert_eq!(alpha.iter().map(|t| t.1).collect::<Vec<_>>(), [100], "{b}: alpha");
        assert_eq!(beta.iter().map(|t| t.1).collect::<Vec<_>>(), [200], "{b}: beta");
        assert!(alpha[0].0 != beta[0].0 && alpha[0].0 != main[0].0, "{b}: distinct tids");
        assert_eq!(threads.len(), 3, "{b}: three threads");
        for t in threads {
            assert_eq!(t["folded"], 0, "{b}: {t}");
        }
    }
}
