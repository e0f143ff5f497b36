//! `--prometheus FILE`: the aggregate in the Prometheus text exposition
//! format (version 0.0.4), one series per (host, command, syscall), for
//! node_exporter's textfile collector or a Pushgateway.
//!
//! The latency histogram's `le` bounds are fixed: the powers of two from
//! 32 ns to 2^36 ns (68.7 s), in seconds written exactly. They are bounds of
//! the report's own log-linear buckets (usertrap-core `report::bucket_bounds`:
//! every power of two starts a bucket), so a report's buckets in whole
//! nanoseconds fall entirely under or above each `le`, and the same `le`
//! labels on every host make the series of different processes and hosts
//! add up exactly (`sum by (le)`). A bucket whose bounds are fractional
//! (converted from another clock frequency) is placed by its midpoint, as
//! `usertrap report` re-buckets it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use usertrap_core::report::{bucket_bounds, SUB, SUB_BITS};

use crate::error::io_msg;
use crate::merge::{merge_syscall, Source};
use crate::report::SyscallStats;
use crate::trace::TraceFilter;

/// The smallest and largest power of two (in ns) used as an `le` bound.
const LE_MIN_EXP: u32 = 5;
const LE_MAX_EXP: u32 = 36;

/// The `le` bounds in ns: the low bound of the first bucket of each power
/// of two of the report's scheme, from 2^LE_MIN_EXP to 2^LE_MAX_EXP.
pub fn le_bounds_ns() -> Vec<u64> {
    (LE_MIN_EXP..=LE_MAX_EXP)
        .map(|e| {
            // Bucket index of 2^e: SUB + (e - SUB_BITS) * SUB.
            let (low, _) = bucket_bounds(SUB + (e - SUB_BITS) as usize * SUB);
            debug_assert_eq!(low, 1u64 << e);
            low
        })
        .collect()
}

/// `ns` nanoseconds as seconds, exactly: `0.000000032`, `1.5`, `68.719476736`.
pub fn seconds(ns: u64) -> String {
    let mut s = format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000);
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    s
}

/// A label value, escaped as the text format wants (`\\`, `\"`, `\n`).
fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// This machine's host name (the `host` label): /proc's, or `unknown`.
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// The cumulative counts of `s`'s histogram at each `le` of `bounds` (a
/// bucket counts under `le` when its midpoint is below it), then the total.
pub fn cumulative(s: &SyscallStats, bounds: &[u64]) -> (Vec<u64>, u64) {
    let mut counts = vec![0u64; bounds.len()];
    let mut total = 0u64;
    for b in &s.histogram {
        total = total.saturating_add(b.count);
        if let Some(i) = bounds.iter().position(|&le| b.midpoint() < le as f64) {
            counts[i] = counts[i].saturating_add(b.count);
        }
    }
    let mut run = 0u64;
    for c in &mut counts {
        run = run.saturating_add(*c);
        *c = run;
    }
    (counts, total)
}

/// The exposition text of `sources` (the syscalls `filter` keeps), merged
/// per (command, syscall); `host` labels every series.
pub fn render(sources: &[Source], filter: Option<&TraceFilter>, host: &str) -> String {
    let mut groups: BTreeMap<(&str, &str), Vec<&SyscallStats>> = BTreeMap::new();
    for src in sources {
        for s in src.report.syscalls.iter().filter(|s| filter.is_none_or(|f| f.matches(&s.name))) {
            groups.entry((src.report.command.as_str(), s.name.as_str())).or_default().push(s);
        }
    }
    let series: Vec<(String, SyscallStats)> = groups
        .into_iter()
        .map(|((command, name), entries)| {
            let labels = format!("host=\"{}\",command=\"{}\",syscall=\"{}\"", label(host), label(command), label(name));
            (labels, merge_syscall(&entries))
        })
        .collect();

    let mut out = String::new();
    out.push_str(
        "# HELP usertrap_syscall_calls_total Syscalls made, by path: fast (a patched call site) or slow \
         (trapped, through SIGSYS).\n# TYPE usertrap_syscall_calls_total counter\n",
    );
    for (l, s) in &series {
        let _ = writeln!(out, "usertrap_syscall_calls_total{{{l},path=\"fast\"}} {}", s.fast_calls);
        let _ = writeln!(out, "usertrap_syscall_calls_total{{{l},path=\"slow\"}} {}", s.slow_calls);
        // Reports where the paths do not add up to the calls: the rest, said.
        let rest = s.calls.saturating_sub(s.fast_calls.saturating_add(s.slow_calls));
        if rest > 0 {
            let _ = writeln!(out, "usertrap_syscall_calls_total{{{l},path=\"unknown\"}} {rest}");
        }
    }
    out.push_str(
        "# HELP usertrap_syscall_errors_total Syscalls that returned an error.\n\
         # TYPE usertrap_syscall_errors_total counter\n",
    );
    for (l, s) in &series {
        let _ = writeln!(out, "usertrap_syscall_errors_total{{{l}}} {}", s.errors);
    }
    out.push_str(
        "# HELP usertrap_syscall_duration_seconds Latency of the syscalls that returned (calls such as \
         exit_group are not timed).\n# TYPE usertrap_syscall_duration_seconds histogram\n",
    );
    let bounds = le_bounds_ns();
    let les: Vec<String> = bounds.iter().map(|&b| seconds(b)).collect();
    for (l, s) in &series {
        let (counts, total) = cumulative(s, &bounds);
        for (le, c) in les.iter().zip(&counts) {
            let _ = writeln!(out, "usertrap_syscall_duration_seconds_bucket{{{l},le=\"{le}\"}} {c}");
        }
        let _ = writeln!(out, "usertrap_syscall_duration_seconds_bucket{{{l},le=\"+Inf\"}} {total}");
        let _ = writeln!(out, "usertrap_syscall_duration_seconds_sum{{{l}}} {}", seconds(s.total_ns));
        let _ = writeln!(out, "usertrap_syscall_duration_seconds_count{{{l}}} {total}");
    }
    out
}

/// The file being written: a temporary file beside the target, created
/// (and so checked) first, renamed over the target when complete, so the
/// textfile collector never reads half a file. Removed if never finished.
pub struct Export {
    target: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
}

impl Export {
    /// Creates the temporary file `.NAME.PID.tmp` beside `target`.
    pub fn create(target: &Path) -> Result<Export, String> {
        let name = target.file_name().ok_or_else(|| format!("--prometheus {}: not a file name", target.display()))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = target.with_file_name(tmp_name);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| format!("cannot write the Prometheus file {}: {}", tmp.display(), io_msg(&e)))?;
        Ok(Export { target: target.to_path_buf(), tmp, file: Some(file) })
    }

    /// Writes `text`, syncs it, and renames the file over the target.
    pub fn finish(mut self, text: &str) -> Result<(), String> {
        let mut file = self.file.take().expect("finish is called once");
        let err = |what: &str, e: std::io::Error| format!("cannot {what} {}: {}", self.tmp.display(), io_msg(&e));
        file.write_all(text.as_bytes()).map_err(|e| err("write the Prometheus file", e))?;
        file.sync_all().map_err(|e| err("write the Prometheus file", e))?;
        drop(file);
        fs::rename(&self.tmp, &self.target).map_err(|e| {
            format!("cannot rename {} to {}: {}", self.tmp.display(), self.target.display(), io_msg(&e))
        })?;
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// `--pushgateway URL`: PUTs `text` to URL's
/// `/metrics/job/usertrap/instance/HOST`, replacing what this host pushed
/// before (a Pushgateway keeps one group per job and instance). Plain
/// HTTP/1.1 over TCP (`http://host[:port][/prefix]`; no TLS), 10 s timeouts.
pub fn push(url: &str, host: &str, text: &str) -> Result<(), String> {
    use std::io::Read as _;
    use std::net::{TcpStream, ToSocketAddrs};
    use std::time::Duration;

    let fail = |what: String| format!("--pushgateway {url}: {what}");
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| fail("only http://HOST[:PORT][/PREFIX] URLs are supported".into()))?;
    let (authority, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(fail("no host, or user info (not supported)".into()));
    }
    let addr_text = if authority.rsplit_once(':').is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        && !authority.ends_with(']')
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addrs: Vec<_> =
        addr_text.to_socket_addrs().map_err(|e| fail(format!("cannot resolve {authority}: {}", io_msg(&e))))?.collect();
    let timeout = Duration::from_secs(10);
    let mut last = None;
    let mut stream = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(mut stream) = stream else {
        let why = last.map(|e| io_msg(&e)).unwrap_or_else(|| "no address".into());
        return Err(fail(format!("cannot connect to {authority}: {why}")));
    };
    let io = |e: std::io::Error| fail(io_msg(&e));
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let path = format!("{prefix}/metrics/job/usertrap/instance/{}", path_segment(host));
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: usertrap\r\n\
         Content-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        text.len()
    );
    stream.write_all(head.as_bytes()).map_err(io)?;
    stream.write_all(text.as_bytes()).map_err(io)?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).map_err(|e| fail(format!("no reply: {}", io_msg(&e))))?;
    let reply = String::from_utf8_lossy(&reply);
    let status_line = reply.lines().next().unwrap_or("");
    let code = status_line.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(200..=299) => Ok(()),
        _ => {
            let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim();
            let body: String = body.chars().take(300).collect();
            Err(fail(format!(
                "the push was refused: {status_line}{}",
                if body.is_empty() { String::new() } else { format!(": {body}") }
            )))
        }
    }
}

/// `s` as one URL path segment: unreserved bytes as they are, others as %XX.
fn path_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Bucket;

    #[test]
    fn bounds_are_powers_of_two_in_exact_seconds() {
        let b = le_bounds_ns();
        assert_eq!(b.first(), Some(&32));
        assert_eq!(b.last(), Some(&(1u64 << 36)));
        assert!(b.windows(2).all(|w| w[1] == 2 * w[0]));
        assert_eq!(seconds(32), "0.000000032");
        assert_eq!(seconds(1 << 36), "68.719476736");
        assert_eq!(seconds(1_500_000_000), "1.5");
        assert_eq!(seconds(0), "0");
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn cumulative_counts_place_buckets_under_their_le() {
        let s = SyscallStats {
            histogram: vec![
                Bucket { low: 31.0, high: 32.0, count: 2 },
                Bucket { low: 32.0, high: 34.0, count: 3 },
                Bucket { low: 60.0, high: 62.0, count: 1 },
                Bucket { low: 1u64.wrapping_shl(40) as f64, high: (1u64 << 40) as f64 + 1.0, count: 4 },
            ],
            ..SyscallStats::default()
        };
        let (c, total) = cumulative(&s, &le_bounds_ns());
        assert_eq!(&c[..3], &[2, 6, 6]);
        assert_eq!(*c.last().unwrap(), 6, "beyond the last le: only in +Inf");
        assert_eq!(total, 10);
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("web-1.example_a~"), "web-1.example_a~");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }
}
