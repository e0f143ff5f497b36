//! `--prometheus FILE`: the aggregate in the Prometheus text format. The
//! file of the fixtures a.json, b.json, c.json (tests/fixtures/abc.prom,
//! host label replaced by HOST), its histogram buckets against the
//! reports' own, merging across processes, and `promtool check metrics`
//! (Debian's prometheus package, installed by .ci/deps.sh) on it.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;

use common::*;
use serde_json::Value;

/// `usertrap report --prometheus OUT FILES...`; the file's text.
fn export(s: &Scratch, name: &str, files: &[&str]) -> String {
    let out = s.path(name);
    let mut args = vec!["report", "--prometheus", out.to_str().unwrap()];
    args.extend_from_slice(files);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    fs::read_to_string(&out).expect("the Prometheus file")
}

/// The samples of a text exposition: (metric, labels without host) -> value.
fn samples(text: &str) -> BTreeMap<(String, String), f64> {
    let mut m = BTreeMap::new();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = l.rsplit_once(' ').expect(l);
        let (name, labels) = series.split_once('{').expect(l);
        let labels: Vec<&str> = labels.trim_end_matches('}').split(',').filter(|kv| !kv.starts_with("host=")).collect();
        let old = m.insert((name.to_string(), labels.join(",")), value.parse::<f64>().expect(l));
        assert!(old.is_none(), "a series twice: {l}");
    }
    m
}

/// The `le` bounds in ns, in order, of one series.
fn les(text: &str) -> Vec<u64> {
    let first = text.lines().find(|l| l.starts_with("usertrap_syscall_duration_seconds_bucket{")).unwrap();
    let series = first.split(",le=").next().unwrap().to_string();
    text.lines()
        .filter(|l| l.starts_with(&series) && !l.contains("+Inf"))
        .map(|l| {
            let le = l.split("le=\"").nth(1).unwrap().split('"').next().unwrap();
            (le.parse::<f64>().unwrap() * 1e9).round() as u64
        })
        .collect()
}

#[test]
fn prometheus_file_is_the_golden_one() {
    let s = Scratch::new("prom-golden");
    let text = export(&s, "x.prom", &[&fixture("a.json"), &fixture("b.json"), &fixture("c.json")]);
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let text = text.replace(&format!("host=\"{host}\""), "host=\"HOST\"");
    let golden = fs::read_to_string(fixture("abc.prom")).unwrap();
    assert_eq!(text, golden);
    let left: Vec<_> = fs::read_dir(&s.0).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["x.prom"], "the temporary file was renamed");
}

#[test]
fn prometheus_buckets_are_the_reports_histogram_counts() {
    let s = Scratch::new("prom-buckets");
    for (file, command) in [("a.json", "sh"), ("b.json", "cat"), ("c.json", "grep")] {
        let text = export(&s, &format!("{command}.prom"), &[&fixture(file)]);
        let got = samples(&text);
        let bounds = les(&text);
        assert_eq!(bounds.first(), Some(&32));
        assert!(bounds.windows(2).all(|w| w[1] == 2 * w[0]), "{bounds:?}");
        let o = run(&["report", "--json", &fixture(file)]);
        let d: Value = serde_json::from_slice(&o.stdout).unwrap();
        for sc in d["syscalls"].as_array().unwrap() {
            let name = sc["name"].as_str().unwrap();
            let labels = format!("command=\"{command}\",syscall=\"{name}\"");
            let hist: Vec<(f64, f64, u64)> = sc["histogram"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| (b[0].as_f64().unwrap(), b[1].as_f64().unwrap(), b[2].as_u64().unwrap()))
                .collect();
            let total: u64 = hist.iter().map(|b| b.2).sum();
            for &le in &bounds {
                // Whole-ns buckets (a, b) lie wholly under or above each le;
                // fractional ones (c: another clock rate) go by midpoint.
                let want: u64 = hist
                    .iter()
                    .filter(|(lo, hi, _)| if file == "c.json" { (lo + hi) / 2.0 < le as f64 } else { *hi <= le as f64 })
                    .map(|b| b.2)
                    .sum();
                if file != "c.json" {
                    let straddling = hist.iter().any(|(lo, hi, _)| *lo < le as f64 && *hi > le as f64);
                    assert!(!straddling, "{file} {name}: a bucket straddles le={le}ns");
                }
                let le_label = format!("{labels},le=\"{}\"", le_text(le));
                assert_eq!(got[&("usertrap_syscall_duration_seconds_bucket".into(), le_label)], want as f64);
            }
            let inf = format!("{labels},le=\"+Inf\"");
            assert_eq!(got[&("usertrap_syscall_duration_seconds_bucket".into(), inf)], total as f64);
            assert_eq!(got[&("usertrap_syscall_duration_seconds_count".into(), labels.clone())], total as f64);
            let sum = got[&("usertrap_syscall_duration_seconds_sum".into(), labels.clone())];
            assert_eq!((sum * 1e9).round() as u64, sc["total_ns"].as_u64().unwrap());
            let calls = |path: &str| got[&("usertrap_syscall_calls_total".into(), format!("{labels},path=\"{path}\""))];
            assert_eq!(calls("fast"), sc["fast_calls"].as_f64().unwrap());
            assert_eq!(calls("slow"), sc["slow_calls"].as_f64().unwrap());
            assert_eq!(got[&("usertrap_syscall_errors_total".into(), labels)], sc["errors"].as_f64().unwrap());
        }
    }
}

/// An `le` in ns as the file writes it: exact seconds.
fn le_text(ns: u64) -> String {
    let s = format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[test]
fn prometheus_series_of_processes_add_up_exactly() {
    // b.json as another `sh` process: its series and a.json's, exported
    // apart, add up to the series of both exported together.
    let s = Scratch::new("prom-merge");
    let b = fs::read_to_string(fixture("b.json")).unwrap().replace("\"command\": \"cat\"", "\"command\": \"sh\"");
    let b = s.file("b-sh.json", &b, 0o644);
    let b = b.to_str().unwrap();
    let a = fixture("a.json");
    let (one, two, both) = (export(&s, "1.prom", &[&a]), export(&s, "2.prom", &[b]), export(&s, "3.prom", &[&a, b]));
    let (one, two, both) = (samples(&one), samples(&two), samples(&both));
    assert!(both.keys().any(|(m, l)| m.ends_with("_bucket") && l.contains("syscall=\"read\"")));
    for (k, v) in &both {
        let sum = one.get(k).copied().unwrap_or(0.0) + two.get(k).copied().unwrap_or(0.0);
        assert!((sum - v).abs() < 1e-12, "{k:?}: {v} != {sum}");
    }
    assert_eq!(both.len(), one.keys().chain(two.keys()).collect::<std::collections::BTreeSet<_>>().len());
}

#[test]
fn promtool_accepts_the_file() {
    if Command::new("promtool").arg("--version").output().is_err() {
        eprintln!("SKIPPED: promtool is not installed (make deps installs Debian's prometheus package)");
        return;
    }
    let s = Scratch::new("promtool");
    let text = export(&s, "x.prom", &[&fixture("a.json"), &fixture("b.json"), &fixture("c.json")]);
    let o = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(fs::File::open(s.path("x.prom")).unwrap())
        .output()
        .expect("run promtool");
    assert!(o.status.success(), "promtool check metrics: {}{}\n{text}", stdout(&o), stderr(&o));
    assert!(o.stdout.is_empty() && o.stderr.is_empty(), "promtool lints: {}{}", stdout(&o), stderr(&o));
}

/// A Pushgateway on a loopback port, killed when dropped.
struct Pushgateway {
    child: std::process::Child,
    port: u16,
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GETs `path` from 127.0.0.1:`port` (HTTP/1.0, so the server closes); the
/// body, or None if there is no answer or not 200.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200").then(|| body.to_string())
}

/// Starts prometheus-pushgateway on a free loopback port (no persistence
/// file), waiting until it answers; None when it is not installed.
fn start_pushgateway() -> Option<Pushgateway> {
    for _attempt in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("prometheus-pushgateway")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--persistence.file=")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let Ok(child) = child else { return None };
        let mut pg = Pushgateway { child, port };
        // Waits for it to listen (a generous bound for a loaded machine,
        // not a measurement); another program may have taken the port.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if http_get(port, "/-/ready").is_some() {
                return Some(pg);
            }
            if pg.child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    panic!("prometheus-pushgateway did not start on a loopback port");
}

/// The labels of a sample line, as a map.
fn labels_of(line: &str) -> BTreeMap<String, String> {
    let inside = line.split_once('{').unwrap().1.rsplit_once('}').unwrap().0;
    inside
        .split("\",")
        .map(|kv| {
            let (k, v) = kv.split_once("=\"").unwrap();
            (k.to_string(), v.trim_end_matches('"').to_string())
        })
        .collect()
}

/// Histogram bucket counts: (command, syscall, le in ns or MAX for +Inf) -> count.
fn bucket_counts(text: &str) -> BTreeMap<(String, String, u64), f64> {
    text.lines()
        .filter(|l| l.starts_with("usertrap_syscall_duration_seconds_bucket{"))
        .map(|l| {
            let m = labels_of(l);
            let le = if m["le"] == "+Inf" { u64::MAX } else { (m["le"].parse::<f64>().unwrap() * 1e9).round() as u64 };
            let v: f64 = l.rsplit_once(' ').unwrap().1.parse().unwrap();
            ((m["command"].clone(), m["syscall"].clone(), le), v)
        })
        .collect()
}

#[test]
fn pushgateway_receives_the_push_and_serves_the_histogram_back() {
    let Some(pg) = start_pushgateway() else {
        eprintln!("SKIPPED: prometheus-pushgateway is not installed (make deps installs it)");
        return;
    };
    let s = Scratch::new("push");
    let out = s.path("x.prom");
    let url = format!("http://127.0.0.1:{}", pg.port);
    let files = [fixture("a.json"), fixture("b.json"), fixture("c.json")];
    let o =
        run(&["report", "--prometheus", out.to_str().unwrap(), "--pushgateway", &url, &files[0], &files[1], &files[2]]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pushed = fs::read_to_string(&out).unwrap();
    let served = http_get(pg.port, "/metrics").expect("GET /metrics");
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let ours: Vec<&str> = served.lines().filter(|l| l.starts_with("usertrap_syscall_")).collect();
    assert!(!ours.is_empty(), "nothing of ours served:\n{served}");
    for l in &ours {
        let m = labels_of(l);
        assert_eq!(
            (m["job"].as_str(), m["instance"].as_str(), m["host"].as_str()),
            ("usertrap", host.as_str(), host.as_str()),
            "{l}"
        );
    }
    let (want, got) = (bucket_counts(&pushed), bucket_counts(&served));
    assert!(want.len() > 100, "{pushed}");
    assert_eq!(got, want, "the served buckets are the pushed ones");
    // A second push replaces the group (job, instance): a.json alone now.
    let o = run(&["report", "--pushgateway", &url, &files[0]]);
    assert!(o.status.success(), "{}", stderr(&o));
    let served = http_get(pg.port, "/metrics").expect("GET /metrics");
    let commands: std::collections::BTreeSet<String> =
        bucket_counts(&served).keys().map(|(c, _, _)| c.clone()).collect();
    assert_eq!(commands.into_iter().collect::<Vec<_>>(), ["sh"]);
}

#[test]
fn pushgateway_errors_are_clear() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let o = run(&["report", "--pushgateway", &format!("http://127.0.0.1:{port}"), &fixture("a.json")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(": cannot connect to 127.0.0.1:"), "{}", stderr(&o));
    let o = run(&["report", "--pushgateway", "https://example.invalid", &fixture("a.json")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("only http://HOST[:PORT][/PREFIX] URLs are supported"), "{}", stderr(&o));
}
