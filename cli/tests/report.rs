//! `usertrap report`: merging saved reports (the fixtures under
//! tests/fixtures, written by hand to the schema of docs/report-schema.md),
//! the aggregate JSON, histograms, and the errors.
//!
//! Fixtures: a.json (pid 100, sh: read 10, openat 4, exit_group 1),
//! b.json (pid 101, cat: read 30, openat 2, write 5), with bucket bounds of
//! the same scheme; c.json (pid 102, grep: read 8) with bounds from another
//! clock frequency (fractional, shifted), so merging it re-buckets.

mod common;

use common::*;
use serde_json::{json, Value};

/// The row of `syscall` in a text table, split in columns.
fn row<'a>(text: &'a str, syscall: &str) -> Vec<&'a str> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.last() == Some(&syscall) && cols.len() > 2)
        .unwrap_or_else(|| panic!("no row for {syscall} in:\n{text}"))
}

fn json_of(args: &[&str]) -> Value {
    let o = run(args);
    assert!(o.status.success(), "usertrap {args:?} failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("stdout is JSON")
}

#[test]
fn report_merges_counts_errors_and_percentiles() {
    let o = run(&["report", &fixture("a.json"), &fixture("b.json")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("usertrap: 2 processes (sh 100, cat 101), seccomp\n"), "{text}");
    assert!(text.contains(
        " % time     seconds      calls     errors        avg        p50        p99        max  fast %  syscall"
    ));
    // % time, seconds, calls, errors, avg, p50, p99, max, fast %, name
    assert_eq!(
        row(&text, "read"),
        ["57.54", "0.000058", "40", "3", "1.46us", "1.09us", "8.50us", "8.50us", "95.0", "read"]
    );
    assert_eq!(
        row(&text, "openat"),
        ["41.16", "0.000042", "6", "5", "6.97us", "2.18us", "17.00us", "17.00us", "66.7", "openat"]
    );
    assert_eq!(
        row(&text, "write"),
        ["1.30", "0.000001", "5", "0", "264ns", "270ns", "270ns", "270ns", "100.0", "write"]
    );
    // Never-returning calls are counted, without latencies.
    assert_eq!(row(&text, "exit_group"), ["0.00", "0.000000", "1", "0", "-", "-", "-", "-", "0.0", "exit_group"]);
    assert_eq!(row(&text, "total"), ["100.00", "0.000102", "52", "8", "90.4", "total"]);
    // Sorted by total time.
    let order: Vec<usize> = ["read", "openat", "write", "exit_group", "total"]
        .iter()
        .map(|s| text.find(&format!("  {s}\n")).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert!(text.contains("unpatched sites"), "{text}");
    assert!(text.contains("  read  not preceded by mov $imm32,%eax  (1 site in 2 processes)"), "{text}");
}

#[test]
fn report_json_has_the_documented_fields() {
    let d = json_of(&["report", "--json", &fixture("b.json"), &fixture("a.json")]);
    assert_eq!(d["format"], "usertrap-aggregate");
    assert_eq!(d["version"], 2);
    // Version 1 reports: no call sites.
    assert_eq!((d["sites"].clone(), d["sites_not_kept"].clone()), (json!([]), json!(0)));
    assert_eq!(d["trace"], Value::Null);
    assert!(d.get("command").is_none() && d.get("status").is_none(), "stat-only fields: {d:#}");
    assert_eq!(d["skipped"], json!([]));
    assert!(d.get("note").is_none());

    // Processes by start time, with their own totals.
    let procs = d["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 2);
    assert_eq!(procs[0]["pid"], 100);
    assert_eq!(procs[0]["ppid"], 99);
    assert_eq!(procs[0]["command"], "sh");
    assert_eq!(procs[0]["backend"], "seccomp");
    assert_eq!(procs[0]["start_ns"], 1764160000000000000u64);
    assert_eq!(procs[0]["end_ns"], 1764160000050000000u64);
    assert_eq!(procs[0]["clock"], "tsc");
    assert_eq!(procs[0]["exit"], json!({"how": "exit_group", "status": 0}));
    assert!(procs[0]["file"].as_str().unwrap().ends_with("a.json"));
    assert_eq!(
        procs[0]["totals"],
        json!({"calls": 15, "errors": 6, "total_ns": 18830, "fast_calls": 12, "slow_calls": 3})
    );
    assert_eq!(procs[1]["pid"], 101);
    assert_eq!(procs[1]["totals"]["calls"], 37);
    assert!(procs[0].get("syscalls").is_none(), "per-process rows only with -f");

    assert_eq!(d["totals"], json!({"calls": 52, "errors": 8, "total_ns": 101560, "fast_calls": 47, "slow_calls": 5}));

    let sys = d["syscalls"].as_array().unwrap();
    let names: Vec<&str> = sys.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["read", "openat", "write", "exit_group"]);
    let read = &sys[0];
    assert_eq!(
        *read,
        json!({
            "name": "read", "nr": 0, "calls": 40, "errors": 3,
            "errors_by_errno": {"EAGAIN": 2, "EINTR": 1},
            "total_ns": 58440, "min_ns": 515, "max_ns": 8500,
            // ranks 20, 36, 40, 40 of 40: the upper bounds of their buckets,
            // within the exact max
            "p50_ns": 1088, "p90_ns": 1088, "p99_ns": 8500, "p999_ns": 8500,
            "fast_calls": 38, "slow_calls": 2,
            "histogram": [[512, 544, 16], [1024, 1088, 20], [4096, 4352, 1], [8192, 8704, 3]],
            "processes": 2
        })
    );
    let openat = &sys[1];
    assert_eq!(openat["calls"], 6);
    assert_eq!(openat["errors"], 5);
    assert_eq!(openat["errors_by_errno"], json!({"ENOENT": 4, "EACCES": 1}));
    assert_eq!((openat["min_ns"].as_u64(), openat["max_ns"].as_u64()), (Some(2050), Some(17000)));
    assert_eq!(openat["p50_ns"], 2176);
    assert_eq!(openat["p90_ns"], 17000);
    assert_eq!(openat["histogram"], json!([[2048, 2176, 4], [16384, 17408, 2]]));
    assert_eq!(sys[2]["processes"], 1);
    assert_eq!(sys[3]["histogram"], json!([]));

    let sites = d["unpatched_sites"].as_array().unwrap();
    assert_eq!(sites.len(), 3);
    assert_eq!(
        sites[0],
        json!({"pid": 100, "address": "0x7f0000001000", "nr": 0, "name": "read",
               "reason": "not preceded by mov $imm32,%eax"})
    );
    assert_eq!(sites[2]["pid"], 101);
    assert_eq!(sites[2]["name"], "openat");
}

#[test]
fn report_of_one_file_keeps_its_figures() {
    let d = json_of(&["report", "--json", &fixture("c.json")]);
    let read = &d["syscalls"][0];
    assert_eq!(read["calls"], 8);
    // The file's percentiles come back: read off its histogram by the
    // library's rule (rank 4 of 8: the bound 546.5, rounded up; rank 8:
    // 1094, kept within max).
    assert_eq!((read["p50_ns"].as_u64(), read["p90_ns"].as_u64()), (Some(547), Some(1090)));
    assert_eq!(read["histogram"], json!([[514.5, 546.5, 4], [1030, 1094, 4]]));
    assert_eq!(d["processes"][0]["exit"], json!({"how": "signal", "signal": 11, "name": "SIGSEGV"}));
    let text = stdout(&run(&["report", &fixture("c.json")]));
    assert!(text.starts_with("usertrap: pid 102 (grep), sud, killed by SIGSEGV\n"), "{text}");
    assert!(!text.contains("unpatched"), "{text}");
}

#[test]
fn report_rebuckets_histograms_whose_bounds_differ() {
    let d = json_of(&["report", "--json", &fixture("a.json"), &fixture("c.json")]);
    let read = &d["syscalls"][0];
    assert_eq!(read["name"], "read");
    assert_eq!(read["calls"], 18);
    // c's [514.5, 546.5) and [1030, 1094) go by midpoint into [512, 544)
    // and [1024, 1088).
    assert_eq!(read["histogram"], json!([[512, 544, 10], [1024, 1088, 7], [4096, 4352, 1]]));
    let counted: u64 = read["histogram"].as_array().unwrap().iter().map(|b| b[2].as_u64().unwrap()).sum();
    assert_eq!(counted, 18);
    // ranks 9, 17, 18, 18 of 18
    assert_eq!(
        [&read["p50_ns"], &read["p90_ns"], &read["p99_ns"], &read["p999_ns"]],
        [&json!(544), &json!(1088), &json!(4200), &json!(4200)]
    );
    assert_eq!((read["min_ns"].as_u64(), read["max_ns"].as_u64()), (Some(516), Some(4200)));
    // Two backends among the processes.
    let text = stdout(&run(&["report", &fixture("a.json"), &fixture("c.json")]));
    assert!(text.starts_with("usertrap: 2 processes (sh 100, grep 102), seccomp/sud\n"), "{text}");
}

#[test]
fn report_per_process_tables_come_first() {
    let o = run(&["report", "-f", &fixture("a.json"), &fixture("b.json")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let a = text.find("usertrap: pid 100 (sh), seccomp, exit status 0\n").expect(&text);
    let b = text.find("usertrap: pid 101 (cat), seccomp, exit status 1\n").expect(&text);
    let all = text.find("usertrap: 2 processes (sh 100, cat 101), seccomp\n").expect(&text);
    assert!(a < b && b < all, "{text}");
    // Each process's sites with their addresses.
    assert!(text[b..all].contains("  0x7f0000002000  openat  not preceded by mov $imm32,%eax\n"), "{text}");
    // The per-process figures are the report's own.
    assert_eq!(row(&text[a..b], "read")[2], "10");
    assert_eq!(row(&text[b..all], "read")[2], "30");
    assert_eq!(row(&text[all..], "read")[2], "40");

    let d = json_of(&["report", "--json", "-f", &fixture("a.json"), &fixture("b.json")]);
    assert_eq!(d["processes"][1]["syscalls"].as_array().unwrap().len(), 3);
    assert_eq!(d["processes"][1]["unpatched_sites"].as_array().unwrap().len(), 2);
}

#[test]
fn report_trace_filter_keeps_only_those_syscalls() {
    let o = run(&["report", "-e", "trace=%file", &fixture("a.json"), &fixture("b.json")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.lines().next().unwrap().ends_with(", trace=%file"), "{text}");
    assert_eq!(row(&text, "openat")[0], "100.00");
    assert!(!text.contains("  read\n") && !text.contains("  write\n"), "{text}");
    assert_eq!(row(&text, "total")[2], "6");
    let d = json_of(&["report", "--json", "-e", "trace=read,write", &fixture("a.json"), &fixture("b.json")]);
    assert_eq!(d["trace"], "read,write");
    assert_eq!(d["totals"]["calls"], 45);
    assert_eq!(d["processes"][0]["totals"]["calls"], 10);
    assert_eq!(d["unpatched_sites"].as_array().unwrap().len(), 2);
}

#[test]
fn report_histogram_draws_buckets_and_percentile_markers() {
    let o = run(&["report", "--histogram", "read", &fixture("a.json"), &fixture("b.json")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "read (nr 0): 40 calls in 2 processes, 40 timed", "{text}");
    let bars: Vec<&str> = lines.iter().copied().filter(|l| l.contains('#')).collect();
    assert_eq!(bars.len(), 4, "one line per non-empty bucket:\n{text}");
    let counts: Vec<u64> = bars.iter().map(|l| l.split_whitespace().nth(3).unwrap().parse().unwrap()).collect();
    assert_eq!(counts, [16, 20, 1, 3]);
    assert!(bars[0].trim_start().starts_with("512ns .. 544ns"), "{text}");
    assert!(bars[1].ends_with("<- p50 p90"), "{text}");
    assert!(bars[3].ends_with("<- p99 p99.9"), "{text}");
    assert!(!bars[0].contains("<-") && !bars[2].contains("<-"), "{text}");
    // The longest bar is the biggest bucket's.
    let width = |l: &str| l.matches('#').count();
    assert_eq!(width(bars[1]), 50);
    assert!(width(bars[0]) < 50 && width(bars[2]) >= 1);
    assert_eq!(*lines.last().unwrap(), "p50 1.09us  p90 1.09us  p99 8.50us  p99.9 8.50us  min 515ns  max 8.50us");
}

#[test]
fn report_histogram_of_an_unknown_syscall_is_an_error() {
    let o = run(&["report", "--histogram", "bogus_call", &fixture("a.json")]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "usertrap: --histogram: unknown syscall bogus_call (x86-64 names, as in the kernel's syscall_64.tbl)\n"
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn report_histogram_of_a_syscall_not_called() {
    let o = run(&["report", "--histogram", "write", &fixture("a.json")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "usertrap: no calls of write in these reports\n");
    // Calls that were never timed have no histogram.
    let text = stdout(&run(&["report", "--histogram", "exit_group", &fixture("a.json")]));
    assert!(text.contains("no latency was measured"), "{text}");
}

#[test]
fn report_errors_name_the_file_and_the_problem() {
    let s = Scratch::new("report-errors");
    let cases: Vec<(String, String)> = vec![
        (s.path("missing.json").display().to_string(), "cannot read: no such file or directory".into()),
        (
            s.file("broken.json", "{\"format\": \"usertrap-report\",", 0o644).display().to_string(),
            "invalid JSON: ".into(),
        ),
        (
            s.file("list.json", "[1, 2]", 0o644).display().to_string(),
            "not a usertrap report (expected a JSON object)".into(),
        ),
        (
            s.file("other.json", r#"{"format": "something-else", "version": 1}"#, 0o644).display().to_string(),
            "format is \"something-else\", expected \"usertrap-report\"".into(),
        ),
        (
            s.file(
                "v3.json",
                &std::fs::read_to_string(fixture("a.json")).unwrap().replace("\"version\": 1", "\"version\": 3"),
                0o644,
            )
            .display()
            .to_string(),
            "version 3 is not supported (this usertrap reads versions 1 to 2)".into(),
        ),
        (
            s.file(
                "nopid.json",
                &std::fs::read_to_string(fixture("a.json")).unwrap().replace("\"pid\": 100,", ""),
                0o644,
            )
            .display()
            .to_string(),
            "not a valid report: missing field `pid`".into(),
        ),
    ];
    for (file, problem) in &cases {
        let o = run(&["report", &fixture("a.json"), file]);
        assert_eq!(o.status.code(), Some(1), "{file}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.starts_with(&format!("usertrap: {file}: {problem}")), "{file}: expected {problem:?}, got {err:?}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(o.stdout.is_empty());
    }
    // An aggregate fed back is recognised as such.
    let agg = s.path("agg.json");
    std::fs::write(&agg, run(&["report", "--json", &fixture("a.json")]).stdout).unwrap();
    let o = run(&["report", agg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("format is \"usertrap-aggregate\" (an aggregate printed by usertrap --json"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn report_needs_files_and_valid_options() {
    let o = run(&["report"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["report", "--json", "--histogram", "read", &fixture("a.json")]);
    assert_eq!(o.status.code(), Some(2), "--json and --histogram conflict");
    let o = run(&["report", "-e", "trace=%bogus", &fixture("a.json")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("usertrap: -e trace=%bogus: unknown class %bogus (classes: %file, "),
        "{}",
        stderr(&o)
    );
}

/// The syscall names of a text table's rows, in order (the total row left out).
fn row_order(text: &str) -> Vec<String> {
    let header = text.lines().position(|l| l.starts_with(" % time")).expect(text);
    text.lines()
        .skip(header + 1)
        .take_while(|l| !l.ends_with("  total"))
        .map(|l| l.split_whitespace().last().unwrap().to_string())
        .collect()
}

#[test]
fn report_sorts_by_each_key() {
    // a + b: read 58us/40 calls/3 errors/avg 1.46us/p50 1.09us/p99 = max 8.50us;
    // openat 42us/6/5/6.97us/2.18us/17us; write 1.3us/5/0/264ns/270ns/270ns;
    // exit_group 0/1/0, never timed.
    // And pid 100 (a.json) alone, for -f: read 10.5us/10/2/1.05us/544ns/4.20us;
    // openat 8.3us/4/4/2.08us/2.10us/2.10us; exit_group.
    let cases: [(&str, [&str; 4], [&str; 3]); 9] = [
        ("time", ["read", "openat", "write", "exit_group"], ["read", "openat", "exit_group"]),
        ("calls", ["read", "openat", "write", "exit_group"], ["read", "openat", "exit_group"]),
        ("avg", ["openat", "read", "write", "exit_group"], ["openat", "read", "exit_group"]),
        ("p50", ["openat", "read", "write", "exit_group"], ["openat", "read", "exit_group"]),
        ("p99", ["openat", "read", "write", "exit_group"], ["read", "openat", "exit_group"]),
        ("max", ["openat", "read", "write", "exit_group"], ["read", "openat", "exit_group"]),
        // exit_group and write tie (no errors): name order.
        ("errors", ["openat", "read", "exit_group", "write"], ["openat", "read", "exit_group"]),
        ("name", ["exit_group", "openat", "read", "write"], ["exit_group", "openat", "read"]),
        // strace's spelling.
        ("avg-time", ["openat", "read", "write", "exit_group"], ["openat", "read", "exit_group"]),
    ];
    for (key, want, want_own) in cases {
        let o = run(&["report", "-S", key, &fixture("a.json"), &fixture("b.json")]);
        assert!(o.status.success(), "-S {key}: {}", stderr(&o));
        assert_eq!(row_order(&stdout(&o)), want, "-S {key}:\n{}", stdout(&o));
        // The same order in --json, and in each process's rows with -f.
        let d = json_of(&["report", "--json", "-f", "--sort", key, &fixture("a.json"), &fixture("b.json")]);
        let names: Vec<&str> = d["syscalls"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(names, want, "--json -S {key}");
        let own: Vec<&str> =
            d["processes"][0]["syscalls"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(own, want_own, "-f -S {key}");
    }
    // Without -S: the default order, the same table byte for byte.
    let plain = stdout(&run(&["report", &fixture("a.json"), &fixture("b.json")]));
    assert_eq!(plain, stdout(&run(&["report", "-S", "time", &fixture("a.json"), &fixture("b.json")])));
    let o = run(&["report", "-S", "bogus", &fixture("a.json")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("possible values: time, calls, avg, p50, p99, max, errors, name"), "{}", stderr(&o));
}

#[test]
fn report_separates_waiting_calls_with_the_wait_class() {
    // a.json with its openat renamed epoll_wait (a call made to wait).
    let s = Scratch::new("wait");
    let text = std::fs::read_to_string(fixture("a.json")).unwrap().replace("\"openat\"", "\"epoll_wait\"");
    let f = s.file("w.json", &text, 0o644);
    let f = f.to_str().unwrap();
    let working = stdout(&run(&["report", "-e", "trace=!%wait", f]));
    assert_eq!(row_order(&working), ["read", "exit_group"], "{working}");
    assert_eq!(row(&working, "read")[0], "100.00", "% time of the working calls:\n{working}");
    let waiting = stdout(&run(&["report", "-e", "%wait", f]));
    assert_eq!(row_order(&waiting), ["epoll_wait"], "{waiting}");
}
