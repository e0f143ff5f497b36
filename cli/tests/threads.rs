//! `usertrap report --per-thread` and the call sites of a version 2 report:
//! fixtures/threads.json (written by the library with USERTRAP_THREADS=1
//! for c_tests/named_threads, trimmed to getppid, futex, clone3 and
//! exit_group): the main thread (tid 500) made 50 getppid calls, beta (501)
//! 200 and alpha (502) 100.

mod common;

use common::*;
use serde_json::Value;

/// (tid, name) of each thread header, in order, and the text after each.
fn thread_tables(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for part in text.split("usertrap: pid 500 (named_threads) thread ").skip(1) {
        let (head, rest) = part.split_once('\n').unwrap();
        out.push((head.to_string(), rest.split("\n\n").next().unwrap().to_string()));
    }
    out
}

fn calls_of(table: &str, syscall: &str) -> u64 {
    let cols: Vec<&str> = table
        .lines()
        .map(str::trim)
        .find(|l| l.ends_with(&format!("  {syscall}")))
        .unwrap()
        .split_whitespace()
        .collect();
    cols[2].parse().unwrap()
}

#[test]
fn per_thread_tables_by_tid_with_names() {
    let o = run(&["report", "--per-thread", &fixture("threads.json")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let tables = thread_tables(&text);
    let heads: Vec<&str> = tables.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(heads, ["500 (named_threads)", "501 (beta)", "502 (alpha)"], "{text}");
    for ((_, table), n) in tables.iter().zip([50, 200, 100]) {
        assert_eq!(calls_of(table, "getppid"), n, "{table}");
    }
    // alpha and beta made only getppid calls (in the fixture).
    for (_, table) in &tables[1..] {
        assert_eq!(calls_of(table, "total"), calls_of(table, "getppid"), "{table}");
    }
    // The main thread's own rows, by total time, with its total.
    assert!(tables[0].1.contains("futex") && tables[0].1.contains("clone3"), "{}", tables[0].1);
    // Without --per-thread: no thread table.
    let o = run(&["report", &fixture("threads.json")]);
    assert!(!stdout(&o).contains(") thread "), "{}", stdout(&o));
}

#[test]
fn per_thread_follows_trace_and_sort() {
    let o = run(&["report", "--per-thread", "-e", "trace=!getppid", &fixture("threads.json")]);
    let text = stdout(&o);
    let heads: Vec<String> = thread_tables(&text).into_iter().map(|t| t.0).collect();
    // alpha and beta made only getppid calls: no table left for them.
    assert_eq!(heads, ["500 (named_threads)"], "{text}");
    let o = run(&["report", "--per-thread", "-S", "calls", &fixture("threads.json")]);
    let text = stdout(&o);
    let main = &thread_tables(&text)[0].1;
    let first_row = main.lines().nth(1).unwrap();
    assert!(first_row.ends_with("  getppid"), "-S calls puts getppid (50 calls) first:\n{main}");
}

#[test]
fn per_thread_json() {
    let o = run(&["report", "--per-thread", "--json", &fixture("threads.json")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let d: Value = serde_json::from_slice(&o.stdout).unwrap();
    let threads = d["processes"][0]["threads"].as_array().unwrap();
    let got: Vec<(u64, &str, u64)> = threads
        .iter()
        .map(|t| {
            let g = t["syscalls"].as_array().unwrap().iter().find(|s| s["name"] == "getppid").unwrap();
            (t["tid"].as_u64().unwrap(), t["name"].as_str().unwrap(), g["calls"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(got, [(500, "named_threads", 50), (501, "beta", 200), (502, "alpha", 100)]);
    for t in threads {
        let sum: u64 = t["syscalls"].as_array().unwrap().iter().map(|s| s["calls"].as_u64().unwrap()).sum();
        assert_eq!(t["totals"]["calls"].as_u64().unwrap(), sum, "{t}");
    }
    // Without --per-thread the processes carry no threads.
    let o = run(&["report", "--json", &fixture("threads.json")]);
    let d: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(d["processes"][0].get("threads").is_none());
}
