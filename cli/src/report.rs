//! The per-process report the library writes (docs/report-schema.md,
//! format `usertrap-report`, version 1), as serde types, and reading it.
//! The field names are usertrap-core's schema (a unit test checks them).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::Path;

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::io_msg;

/// The `format` of a per-process report.
pub const FORMAT: &str = usertrap_core::report::FORMAT;
/// The report version the library writes; this program reads it and every
/// version from OLDEST_VERSION on (version 1 has no `sites`).
pub const VERSION: u64 = usertrap_core::report::VERSION;
pub const OLDEST_VERSION: u64 = usertrap_core::report::OLDEST_VERSION;

/// One process's report: one JSON object (a file holds one, or one per line).
///
/// Fields the schema documents but that a consumer can do without default
/// when absent (`ppid`, `backend`, times, `clock`, `exit`, `totals`,
/// `unpatched_sites`); `format`, `version`, `pid`, `command` and `syscalls`
/// are required. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Report {
    pub format: String,
    pub version: u64,
    pub pid: u32,
    #[serde(default)]
    pub ppid: u32,
    pub command: String,
    #[serde(default)]
    pub backend: String,
    #[serde(default)]
    pub start_ns: u64,
    #[serde(default)]
    pub end_ns: u64,
    #[serde(default)]
    pub clock: String,
    #[serde(default)]
    pub tsc_hz: u64,
    /// `counted` (sud: `int $0x80` calls are the `abi: i386` entries) or
    /// `not_seen` (seccomp); empty in reports from before it existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub i386_calls: String,
    #[serde(default)]
    pub exit: Option<Exit>,
    #[serde(default)]
    pub totals: Option<Totals>,
    pub syscalls: Vec<SyscallStats>,
    #[serde(default)]
    pub unpatched_sites: Vec<UnpatchedSite>,
    /// Every call site, by total time (version 2 on; empty before).
    #[serde(default)]
    pub sites: Vec<CallSite>,
    /// Calls made at sites the library had no room to keep apart.
    #[serde(default)]
    pub sites_not_kept: u64,
    /// With USERTRAP_THREADS=1 (`--per-thread`): each thread's figures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub threads: Vec<ThreadReport>,
    /// Children this process saw end by a signal (its wait4/waitid
    /// results): how `usertrap stat` explains a child that did not report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub killed_children: Vec<KilledChild>,
}

/// A child a process reaped that a signal had killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct KilledChild {
    pub pid: u32,
    pub signal: i64,
}

/// How a process ended: `exit_group` and `exit` (with `status`), `signal`
/// (with `signal` and its `name`), or `exec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Exit {
    pub how: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Sums over a set of syscalls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Totals {
    #[serde(default)]
    pub calls: u64,
    #[serde(default)]
    pub errors: u64,
    #[serde(default)]
    pub total_ns: u64,
    #[serde(default)]
    pub fast_calls: u64,
    #[serde(default)]
    pub slow_calls: u64,
}

impl Totals {
    /// The sums of `rows` (saturating: reports are input, not trusted).
    pub fn of<'a>(rows: impl IntoIterator<Item = &'a SyscallStats>) -> Totals {
        let mut t = Totals::default();
        for s in rows {
            t.calls = t.calls.saturating_add(s.calls);
            t.errors = t.errors.saturating_add(s.errors);
            t.total_ns = t.total_ns.saturating_add(s.total_ns);
            t.fast_calls = t.fast_calls.saturating_add(s.fast_calls);
            t.slow_calls = t.slow_calls.saturating_add(s.slow_calls);
        }
        t
    }
}

/// One syscall number's figures: in a report, or merged over several.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct SyscallStats {
    pub name: String,
    pub nr: i64,
    /// `i386` for an `int $0x80` call (its `nr` is an i386 number, its name
    /// `i386:<name>`); empty for x86-64.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub abi: String,
    pub calls: u64,
    pub errors: u64,
    #[serde(default)]
    pub errors_by_errno: BTreeMap<String, u64>,
    pub total_ns: u64,
    #[serde(default)]
    pub min_ns: u64,
    #[serde(default)]
    pub max_ns: u64,
    #[serde(default)]
    pub p50_ns: u64,
    #[serde(default)]
    pub p90_ns: u64,
    #[serde(default)]
    pub p99_ns: u64,
    #[serde(default)]
    pub p999_ns: u64,
    #[serde(default)]
    pub fast_calls: u64,
    #[serde(default)]
    pub slow_calls: u64,
    #[serde(default)]
    pub histogram: Vec<Bucket>,
}

impl SyscallStats {
    /// Calls counted in the histogram (calls that never return, such as
    /// exit_group, are counted in `calls` but not timed).
    pub fn timed(&self) -> u64 {
        self.histogram.iter().fold(0u64, |n, b| n.saturating_add(b.count))
    }
}

/// A syscall site left on the slow path, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct UnpatchedSite {
    pub address: String,
    #[serde(default)]
    pub nr: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub reason: String,
}

/// One thread's figures: its tid and name (`folded`: threads before it
/// whose figures could not be kept apart from its own), sums, syscalls.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ThreadReport {
    pub tid: u32,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub folded: u64,
    #[serde(default)]
    pub totals: Totals,
    pub syscalls: Vec<SyscallStats>,
}

/// One call site (the `syscall` instruction at `address`, `offset` bytes
/// into the file `object`) and one syscall number: its figures.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct CallSite {
    pub address: String,
    /// The mapping's name in /proc/self/maps (a path; `[vdso]`; empty for
    /// anonymous memory); absent when the site was in no mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(default)]
    pub nr: i64,
    #[serde(default)]
    pub name: String,
    pub calls: u64,
    #[serde(default)]
    pub errors: u64,
    #[serde(default)]
    pub total_ns: u64,
    #[serde(default)]
    pub min_ns: u64,
    #[serde(default)]
    pub max_ns: u64,
    #[serde(default)]
    pub p50_ns: u64,
    #[serde(default)]
    pub p99_ns: u64,
    #[serde(default)]
    pub fast_calls: u64,
    #[serde(default)]
    pub slow_calls: u64,
    #[serde(default)]
    pub histogram: Vec<Bucket>,
    /// Why the site was left on the slow path, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl CallSite {
    /// Its figures as a syscall entry's (to merge them the same way).
    pub fn as_stats(&self) -> SyscallStats {
        SyscallStats {
            name: self.name.clone(),
            nr: self.nr,
            calls: self.calls,
            errors: self.errors,
            total_ns: self.total_ns,
            min_ns: self.min_ns,
            max_ns: self.max_ns,
            p50_ns: self.p50_ns,
            p99_ns: self.p99_ns,
            fast_calls: self.fast_calls,
            slow_calls: self.slow_calls,
            histogram: self.histogram.clone(),
            ..SyscallStats::default()
        }
    }
}

/// A histogram bucket, `[low_ns, high_ns, count]` in JSON: `count` calls
/// took at least `low_ns` and less than `high_ns` (equal bounds are
/// accepted: a bucket narrower than 1 ns may round to them). Bounds are read as
/// numbers (a report converted from clock cycles may have fractional ones)
/// and written as integers when they are whole.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub low: f64,
    pub high: f64,
    pub count: u64,
}

impl Bucket {
    pub fn midpoint(&self) -> f64 {
        (self.low + self.high) / 2.0
    }
}

/// A bound as a JSON number: an integer when it is one.
fn serialize_bound<S: SerializeTuple>(t: &mut S, v: f64) -> Result<(), S::Error> {
    if v.fract() == 0.0 && (0.0..1.8e19).contains(&v) {
        t.serialize_element(&(v as u64))
    } else {
        t.serialize_element(&v)
    }
}

impl Serialize for Bucket {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(3)?;
        serialize_bound(&mut t, self.low)?;
        serialize_bound(&mut t, self.high)?;
        t.serialize_element(&self.count)?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for Bucket {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bucket, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Bucket;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a histogram bucket [low_ns, high_ns, count]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bucket, A::Error> {
                let low: f64 = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let high: f64 = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let count: u64 = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(2, &self))?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(4, &self));
                }
                if !(low.is_finite() && high.is_finite() && low >= 0.0 && low <= high) {
                    return Err(de::Error::custom(format_args!(
                        "histogram bucket [{low}, {high}, {count}]: bounds must satisfy 0 <= low_ns <= high_ns"
                    )));
                }
                Ok(Bucket { low, high, count })
            }
        }
        d.deserialize_seq(V)
    }
}

/// Parses one report's text. The error names the problem (the caller adds
/// the file name): not JSON (with line and column), not a usertrap report,
/// another version, or a field missing or of the wrong type.
pub fn parse(text: &str) -> Result<Report, String> {
    // Most texts are reports: check their two identifying fields without
    // building the whole text as a tree of values (a `Value` allocates for
    // every number and string; the collector parses one report per process).
    #[derive(Deserialize)]
    struct Head {
        format: Option<serde_json::Value>,
        version: Option<serde_json::Value>,
    }
    if let Ok(Head { format: Some(serde_json::Value::String(f)), version: Some(v) }) = serde_json::from_str(text) {
        if f == FORMAT && v.as_u64().is_some_and(|v| (OLDEST_VERSION..=VERSION).contains(&v)) {
            return parse_report(text);
        }
    }
    // Anything else: find what is wrong, for the message.
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let Some(obj) = value.as_object() else {
        return Err("not a usertrap report (expected a JSON object)".to_string());
    };
    match obj.get("format") {
        None => return Err(format!("not a usertrap report (no \"format\"; expected \"{FORMAT}\")")),
        Some(serde_json::Value::String(f)) if f == FORMAT => {}
        Some(serde_json::Value::String(f)) if f == crate::merge::AGGREGATE_FORMAT => {
            let what = "an aggregate printed by usertrap --json; give the per-process reports";
            return Err(format!("format is \"{f}\" ({what}, \"{FORMAT}\")"));
        }
        Some(f) => return Err(format!("format is {f}, expected \"{FORMAT}\"")),
    }
    match obj.get("version") {
        Some(v) if v.as_u64().is_some_and(|v| (OLDEST_VERSION..=VERSION).contains(&v)) => {}
        Some(v) => {
            return Err(format!(
                "version {v} is not supported (this usertrap reads versions {OLDEST_VERSION} to {VERSION})"
            ))
        }
        None => return Err(format!("no \"version\" (expected {VERSION})")),
    }
    parse_report(text)
}

/// A text whose format and version are right, as a report.
fn parse_report(text: &str) -> Result<Report, String> {
    // Parsed from the text, so a missing or mistyped field is reported with
    // its line and column.
    let mut report: Report = serde_json::from_str(text).map_err(|e| format!("not a valid report: {e}"))?;
    let by_bounds = |a: &Bucket, b: &Bucket| a.low.total_cmp(&b.low).then(a.high.total_cmp(&b.high));
    for s in &mut report.syscalls {
        s.histogram.sort_by(by_bounds);
    }
    for s in &mut report.sites {
        s.histogram.sort_by(by_bounds);
    }
    for t in &mut report.threads {
        for s in &mut t.syscalls {
            s.histogram.sort_by(by_bounds);
        }
    }
    Ok(report)
}

/// Parses a file's text: one report, or several, one per line (the library
/// appends each process's report, whole and on one line, to a
/// USERTRAP_OUTPUT file that processes share: an exec'd image, forked
/// children). A line that is not a report is an error naming the line.
pub fn parse_all(text: &str) -> Result<Vec<Report>, String> {
    let first = match parse(text) {
        Ok(r) => return Ok(vec![r]),
        Err(e) => e,
    };
    let lines: Vec<(usize, &str)> = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).collect();
    // Several lines, the first a JSON value of its own: one report per line.
    let one_per_line = lines.len() >= 2 && serde_json::from_str::<serde_json::Value>(lines[0].1).is_ok();
    if !one_per_line {
        return Err(first);
    }
    lines.iter().map(|(i, l)| parse(l).map_err(|e| format!("line {}: {e}", i + 1))).collect()
}

/// Reads and parses the reports in `path`; the error names the file.
pub fn load(path: &Path) -> Result<Vec<Report>, String> {
    let text = fs::read(path).map_err(|e| format!("{}: cannot read: {}", path.display(), io_msg(&e)))?;
    let text = String::from_utf8(text).map_err(|_| format!("{}: invalid JSON: not UTF-8", path.display()))?;
    parse_all(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"format":"usertrap-report","version":1,"pid":7,"command":"x",
        "syscalls":[{"name":"read","nr":0,"calls":2,"errors":0,"total_ns":30,
        "histogram":[[20,21,1],[10.5,11,1]]}]}"#;

    #[test]
    fn minimal_report_parses_with_sorted_histogram() {
        let r = parse(MINIMAL).unwrap();
        assert_eq!(r.pid, 7);
        assert_eq!(r.syscalls[0].histogram[0], Bucket { low: 10.5, high: 11.0, count: 1 });
        assert_eq!(r.syscalls[0].timed(), 2);
        let out = serde_json::to_string(&r.syscalls[0].histogram).unwrap();
        assert_eq!(out, "[[10.5,11,1],[20,21,1]]");
    }

    #[test]
    fn problems_are_named() {
        assert!(parse("{").unwrap_err().starts_with("invalid JSON: "));
        assert!(parse("[]").unwrap_err().contains("expected a JSON object"));
        assert!(parse(r#"{"format":"other","version":1}"#).unwrap_err().contains("format is \"other\""));
        assert!(parse(r#"{"format":"usertrap-report","version":3}"#)
            .unwrap_err()
            .contains("version 3 is not supported"));
        assert!(parse(r#"{"format":"usertrap-report","version":0}"#)
            .unwrap_err()
            .contains("version 0 is not supported"));
        let v2 = MINIMAL.replace("\"version\":1", "\"version\":2");
        assert_eq!(parse(&v2).unwrap().version, 2, "both versions are read");
        let e = parse(r#"{"format":"usertrap-report","version":1,"pid":1,"command":"x"}"#).unwrap_err();
        assert!(e.contains("missing field `syscalls`"), "{e}");
        let bad = MINIMAL.replace("[20,21,1]", "[21,20,1]");
        assert!(parse(&bad).unwrap_err().contains("low_ns <= high_ns"));
        let trailing = format!("{MINIMAL} x");
        assert!(parse(&trailing).unwrap_err().starts_with("invalid JSON"));
    }

    #[test]
    fn one_report_per_line() {
        let one = MINIMAL.replace('\n', " ");
        let two = format!("{one}\n{}\n", one.replace("\"pid\":7", "\"pid\":8"));
        let all = parse_all(&two).unwrap();
        assert_eq!(all.iter().map(|r| r.pid).collect::<Vec<_>>(), [7, 8]);
        assert_eq!(parse_all(MINIMAL).unwrap().len(), 1, "a report over several lines");
        let bad = format!("{one}\n{{\n");
        assert!(parse_all(&bad).unwrap_err().starts_with("line 2: invalid JSON"), "{}", parse_all(&bad).unwrap_err());
    }

    /// The serde names of this reader are the schema usertrap-core writes
    /// (and the library uses): every field of every object, no other.
    #[test]
    fn field_names_are_the_core_schema() {
        use usertrap_core::report as schema;
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let sorted = |k: &[&str]| {
            let mut k: Vec<String> = k.iter().map(|s| s.to_string()).collect();
            k.sort();
            k
        };
        let mut r = parse(MINIMAL).unwrap();
        r.i386_calls = schema::I386_COUNTED.into();
        r.exit = Some(Exit { how: "signal".into(), status: Some(0), signal: Some(9), name: Some("SIGKILL".into()) });
        r.totals = Some(Totals::default());
        r.killed_children = vec![KilledChild { pid: 9, signal: 9 }];
        r.unpatched_sites = vec![UnpatchedSite::default()];
        r.sites = vec![CallSite {
            object: Some("/x".into()),
            offset: Some(1),
            reason: Some("why".into()),
            ..CallSite::default()
        }];
        r.syscalls[0].abi = schema::ABI_I386.into();
        r.threads = vec![ThreadReport { syscalls: vec![r.syscalls[0].clone()], ..ThreadReport::default() }];
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(keys(&v), sorted(schema::REPORT_KEYS));
        assert_eq!(keys(&v["exit"]), sorted(schema::EXIT_KEYS));
        assert_eq!(keys(&v["totals"]), sorted(schema::TOTALS_KEYS));
        assert_eq!(keys(&v["syscalls"][0]), sorted(schema::SYSCALL_KEYS));
        assert_eq!(keys(&v["unpatched_sites"][0]), sorted(schema::SITE_KEYS));
        assert_eq!(keys(&v["killed_children"][0]), sorted(schema::KILLED_KEYS));
        assert_eq!(keys(&v["sites"][0]), sorted(schema::CALL_SITE_KEYS));
        assert_eq!(keys(&v["threads"][0]), sorted(schema::THREAD_KEYS));
        assert_eq!((FORMAT, VERSION), (schema::FORMAT, schema::VERSION));
    }
}
