//! The report a process writes at its end and the `usertrap` command reads
//! (docs/report-schema.md, format `usertrap-report`, version 2): the JSON
//! field names, the latency histogram's buckets, percentiles read from a
//! histogram, and the text table (like `strace -c`, with percentiles) that
//! both the library and the command print, byte for byte the same.
//!
//! The library writes it in trap context, so the table is rendered into a
//! [`Sink`] with integer arithmetic only (see `sink`).

use crate::names;
use crate::sink::{self, Sink};
use crate::syscalls;

/// The `format` of a per-process report.
pub const FORMAT: &str = "usertrap-report";
/// The report version written (the command reads 1 and 2; 2 added `sites`
/// and `sites_not_kept`).
pub const VERSION: u64 = 2;
/// The oldest version the command reads.
pub const OLDEST_VERSION: u64 = 1;

/// Field names of the JSON report, by object.
pub mod key {
    // The report object.
    pub const FORMAT: &str = "format";
    pub const VERSION: &str = "version";
    pub const PID: &str = "pid";
    pub const PPID: &str = "ppid";
    pub const COMMAND: &str = "command";
    pub const BACKEND: &str = "backend";
    pub const START_NS: &str = "start_ns";
    pub const END_NS: &str = "end_ns";
    pub const CLOCK: &str = "clock";
    pub const TSC_HZ: &str = "tsc_hz";
    pub const I386_CALLS: &str = "i386_calls";
    pub const EXIT: &str = "exit";
    pub const TOTALS: &str = "totals";
    pub const SYSCALLS: &str = "syscalls";
    pub const KILLED_CHILDREN: &str = "killed_children";
    pub const UNPATCHED_SITES: &str = "unpatched_sites";
    pub const SITES: &str = "sites";
    pub const THREADS: &str = "threads";
    pub const SITES_NOT_KEPT: &str = "sites_not_kept";
    // `exit`.
    pub const HOW: &str = "how";
    pub const STATUS: &str = "status";
    pub const SIGNAL: &str = "signal";
    pub const NAME: &str = "name";
    // `totals` and each `syscalls` entry.
    pub const CALLS: &str = "calls";
    pub const ERRORS: &str = "errors";
    pub const TOTAL_NS: &str = "total_ns";
    pub const FAST_CALLS: &str = "fast_calls";
    pub const SLOW_CALLS: &str = "slow_calls";
    // Each `syscalls` entry (with NAME and the above).
    pub const NR: &str = "nr";
    pub const ABI: &str = "abi";
    pub const ERRORS_BY_ERRNO: &str = "errors_by_errno";
    pub const MIN_NS: &str = "min_ns";
    pub const MAX_NS: &str = "max_ns";
    pub const P50_NS: &str = "p50_ns";
    pub const P90_NS: &str = "p90_ns";
    pub const P99_NS: &str = "p99_ns";
    pub const P999_NS: &str = "p999_ns";
    pub const HISTOGRAM: &str = "histogram";
    // Each `unpatched_sites` entry (with NR, NAME).
    pub const ADDRESS: &str = "address";
    pub const REASON: &str = "reason";
    // Each `threads` entry (with NAME, TOTALS, SYSCALLS).
    pub const TID: &str = "tid";
    pub const FOLDED: &str = "folded";
    // Each `sites` entry (with ADDRESS, NR, NAME, REASON and the figures).
    pub const OBJECT: &str = "object";
    pub const OFFSET: &str = "offset";
    // Each `killed_children` entry: PID, SIGNAL.
}

/// The fields of each object, in the order the library writes them.
pub const REPORT_KEYS: &[&str] = &[
    key::FORMAT,
    key::VERSION,
    key::PID,
    key::PPID,
    key::COMMAND,
    key::BACKEND,
    key::START_NS,
    key::END_NS,
    key::CLOCK,
    key::TSC_HZ,
    key::I386_CALLS,
    key::EXIT,
    key::TOTALS,
    key::SYSCALLS,
    key::KILLED_CHILDREN,
    key::UNPATCHED_SITES,
    key::SITES,
    key::SITES_NOT_KEPT,
    key::THREADS,
];
pub const THREAD_KEYS: &[&str] = &[key::TID, key::NAME, key::FOLDED, key::TOTALS, key::SYSCALLS];
pub const EXIT_KEYS: &[&str] = &[key::HOW, key::STATUS, key::SIGNAL, key::NAME];
pub const TOTALS_KEYS: &[&str] = &[key::CALLS, key::ERRORS, key::TOTAL_NS, key::FAST_CALLS, key::SLOW_CALLS];
pub const SYSCALL_KEYS: &[&str] = &[
    key::NAME,
    key::NR,
    key::ABI,
    key::CALLS,
    key::ERRORS,
    key::ERRORS_BY_ERRNO,
    key::TOTAL_NS,
    key::MIN_NS,
    key::MAX_NS,
    key::P50_NS,
    key::P90_NS,
    key::P99_NS,
    key::P999_NS,
    key::FAST_CALLS,
    key::SLOW_CALLS,
    key::HISTOGRAM,
];
pub const SITE_KEYS: &[&str] = &[key::ADDRESS, key::NR, key::NAME, key::REASON];
pub const CALL_SITE_KEYS: &[&str] = &[
    key::ADDRESS,
    key::OBJECT,
    key::OFFSET,
    key::NR,
    key::NAME,
    key::CALLS,
    key::ERRORS,
    key::TOTAL_NS,
    key::MIN_NS,
    key::MAX_NS,
    key::P50_NS,
    key::P99_NS,
    key::FAST_CALLS,
    key::SLOW_CALLS,
    key::HISTOGRAM,
    key::REASON,
];
/// The percentiles a call site gives.
pub const SITE_PERCENTILES: [(u64, &str); 2] = [(500, key::P50_NS), (990, key::P99_NS)];
pub const KILLED_KEYS: &[&str] = &[key::PID, key::SIGNAL];

/// The index of a running process's figures that `usertrap stat -i` reads
/// (process_vm_readv): one u64 per word, at the address the greeting gives
/// (`hello PID PPID COMM live ADDR`). A thread's table: `SLOTS` u16 block
/// numbers (+1, 0: none) from its start, a u16 count at `USED_OFFSET`,
/// blocks of `BLOCK_SIZE` bytes from `BLOCKS_OFFSET`; a block: u64 fast,
/// slow, errors, total (ticks), min, max, timed; u32 errnos at
/// `ERRNOS_OFFSET`, u32 histogram counts at `HIST_OFFSET`.
pub mod live {
    pub const MAGIC: usize = 0;
    pub const AREAS: usize = 1;
    pub const AREA_COUNT: usize = 2;
    pub const MAX_AREAS: usize = 3;
    pub const STATS_OFFSET: usize = 4;
    pub const RETIRED: usize = 5;
    pub const RETIRED_N: usize = 6;
    pub const RETIRED_STRIDE: usize = 7;
    pub const RETIRED_MAX: usize = 8;
    pub const SLOTS: usize = 9;
    pub const USED_OFFSET: usize = 10;
    pub const BLOCKS_OFFSET: usize = 11;
    pub const BLOCK_SIZE: usize = 12;
    pub const PER_THREAD: usize = 13;
    pub const ERRNOS_OFFSET: usize = 14;
    pub const MAX_ERRNO: usize = 15;
    pub const HIST_OFFSET: usize = 16;
    pub const HIST_LEN: usize = 17;
    /// Slots below MAX_NR are x86-64 numbers, MAX_NR is `other`, from
    /// I386_BASE on i386 numbers.
    pub const MAX_NR: usize = 18;
    pub const I386_BASE: usize = 19;
    pub const WORDS: usize = 20;
    /// "utlive01" (little-endian).
    pub const MAGIC_VALUE: u64 = u64::from_le_bytes(*b"utlive01");
}

/// Values of `exit.how`.
pub mod how {
    pub const EXIT_GROUP: &str = "exit_group";
    /// The last thread called exit.
    pub const EXIT: &str = "exit";
    pub const SIGNAL: &str = "signal";
    pub const EXEC: &str = "exec";
    /// PTRACE_TRACEME: interception ended there.
    pub const TRACED: &str = "traced";
}

/// Values of `clock`, `i386_calls` and a syscall's `abi`.
pub const CLOCK_TSC: &str = "tsc";
pub const CLOCK_MONOTONIC: &str = "monotonic";
pub const I386_COUNTED: &str = "counted";
pub const I386_NOT_SEEN: &str = "not_seen";
pub const ABI_I386: &str = "i386";

/// The percentiles a report gives: (per mille, field).
pub const PERCENTILES: [(u64, &str); 4] =
    [(500, key::P50_NS), (900, key::P90_NS), (990, key::P99_NS), (999, key::P999_NS)];

// ---------------------------------------------------------------------------
// Histogram buckets: log-linear. Values below SUB each have a bucket; above,
// every power of two [2^e, 2^(e+1)) is split into SUB equal buckets. The
// library counts clock ticks in HIST_LEN buckets (values from 2^(MAX_EXP+1)
// on share the last); the command re-buckets nanoseconds the same way.

pub const SUB_BITS: u32 = 4;
pub const SUB: usize = 1 << SUB_BITS;
/// The largest power of two with buckets of its own in the library.
pub const MAX_EXP: u32 = 47;
pub const HIST_LEN: usize = SUB + (MAX_EXP as usize - SUB_BITS as usize + 1) * SUB;

/// The bucket of value `v`, below HIST_LEN (on the library's fast path).
#[inline]
pub fn bucket(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let e = (63 - v.leading_zeros()).min(MAX_EXP);
    let v = v.min((1u64 << (MAX_EXP + 1)) - 1);
    let sub = ((v >> (e - SUB_BITS)) as usize) & (SUB - 1);
    SUB + (e - SUB_BITS) as usize * SUB + sub
}

/// The values bucket `i` holds: [low, high). Past the last bucket, the
/// last bucket's bounds.
pub fn bucket_bounds(i: usize) -> (u64, u64) {
    let i = i.min(HIST_LEN - 1);
    if i < SUB {
        return (i as u64, i as u64 + 1);
    }
    let shift = ((i - SUB) / SUB) as u32;
    let sub = ((i - SUB) % SUB) as u64;
    ((SUB as u64 + sub) << shift, (SUB as u64 + sub + 1) << shift)
}

/// The bucket [low, high) of `v` in the same scheme without the library's
/// upper limit (values from 2^62 on share one bucket): how the command
/// re-buckets latencies in nanoseconds.
pub fn canonical_bucket(v: u64) -> (u64, u64) {
    let x = v.min(1 << 62);
    if x < SUB as u64 {
        return (x, x + 1);
    }
    let e = 63 - x.leading_zeros();
    let width = 1u64 << (e - SUB_BITS);
    let low = x & !(width - 1);
    (low, low + width)
}

/// The rank (1-based) of the `per_mille` percentile among `n` values:
/// ceil(n * per_mille / 1000), at least 1.
pub fn rank(n: u64, per_mille: u64) -> u64 {
    let r = (u128::from(n) * u128::from(per_mille)).div_ceil(1000);
    u64::try_from(r).unwrap_or(u64::MAX).max(1)
}

/// The `per_mille` percentile of a histogram given as (upper bound, count)
/// pairs in ascending order: the upper bound of the bucket that holds the
/// rank, kept within the exact [min, max] when `max` is known (not 0); 0 for
/// an empty histogram. The one rule: the library applies it to its buckets
/// in clock ticks and converts the result to ns; the command applies it to
/// the report's histogram, whose bounds are those ticks converted the same
/// (monotonic) way, and so gets the same figures back from one report.
pub fn percentile<I>(buckets: I, per_mille: u64, min: u64, max: u64) -> u64
where
    I: Iterator<Item = (u64, u64)> + Clone,
{
    // The bound of the one bucket that holds the rank (or of the last).
    let bound = |i: usize| buckets.clone().nth(i).map_or(0, |(v, _)| v);
    let [value] = percentiles(buckets.clone().map(|(_, c)| c), bound, [per_mille], min, max);
    value
}

/// [`percentile`] for several ranks of one histogram, in one pass and
/// without the bounds of the buckets passed over: `counts` in bucket
/// order, `bound(i)` the upper bound of bucket `i` (the library's reports
/// ask for four per syscall and two per call site, over 720 buckets each).
pub fn percentiles<I, const K: usize>(
    counts: I,
    bound: impl Fn(usize) -> u64,
    per_mille: [u64; K],
    min: u64,
    max: u64,
) -> [u64; K]
where
    I: Iterator<Item = u64> + Clone,
{
    let mut out = [0u64; K];
    let n = counts.clone().fold(0u64, |n, c| n.saturating_add(c));
    if n == 0 {
        return out;
    }
    let targets = per_mille.map(|p| rank(n, p));
    let mut found = [false; K];
    let mut left = K;
    let mut seen = 0u64;
    let mut last = None;
    for (i, c) in counts.enumerate() {
        last = Some(i);
        seen = seen.saturating_add(c);
        for ((v, done), &target) in out.iter_mut().zip(found.iter_mut()).zip(targets.iter()) {
            if !*done && seen >= target {
                *v = bound(i);
                *done = true;
                left -= 1;
            }
        }
        if left == 0 {
            break;
        }
    }
    for (v, done) in out.iter_mut().zip(found) {
        // Never reached (as `percentile`): the last bucket's bound.
        if !done {
            *v = last.map_or(0, &bound);
        }
        if max > 0 {
            *v = (*v).min(max).max(min.min(max));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The text table.

/// One row of the table: a syscall's figures, in nanoseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Row<'a> {
    pub name: Name<'a>,
    pub calls: u64,
    pub errors: u64,
    pub total_ns: u64,
    /// Calls with a latency (in the histogram); 0: every call counts.
    pub timed: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
    pub fast_calls: u64,
}

/// A row's (or an unpatched site's) syscall name.
#[derive(Clone, Copy, Debug)]
pub enum Name<'a> {
    /// As given (a report's `name`).
    Text(&'a [u8]),
    /// A number, named from the tables: `read`, `i386:read`, `syscall_999`.
    Number { nr: u64, i386: bool },
}

impl Default for Name<'_> {
    fn default() -> Self {
        Name::Text(b"")
    }
}

/// Writes a syscall's name as reports give it: `read`; `i386:read` for an
/// `int $0x80` call; `syscall_N` (`i386:syscall_N`) for a number the table
/// does not know.
pub fn write_name(s: &mut dyn Sink, name: &Name<'_>) {
    match *name {
        Name::Text(t) => s.put(t),
        Name::Number { nr, i386 } => {
            let known = if i386 {
                s.put(syscalls::I386_PREFIX.as_bytes());
                syscalls::name_i386(nr)
            } else {
                syscalls::name(nr)
            };
            match known {
                Some(n) => s.put(n.as_bytes()),
                None => {
                    s.put(syscalls::UNNAMED_PREFIX.as_bytes());
                    sink::num(s, nr);
                }
            }
        }
    }
}

/// Sums over the rows of a table.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    pub calls: u64,
    pub errors: u64,
    pub total_ns: u64,
    pub fast_calls: u64,
}

/// The table's header line.
pub const TABLE_HEADER: &[u8] =
    b" % time     seconds      calls     errors        avg        p50        p99        max  fast %  syscall\n";

/// Widths of the columns (each after one blank but the first).
const W_PCT: usize = 7;
const W_SECS: usize = 11;
const W_NUM: usize = 10;
const W_FAST: usize = 7;

/// `part` of `whole` in percent with `dec` decimals (0 when `whole` is 0).
fn percent(s: &mut dyn Sink, part: u64, whole: u64, dec: u32, width: usize) {
    if whole == 0 {
        sink::fixed(s, 0, 1, dec, width);
    } else {
        sink::fixed(s, u128::from(part) * 100, u128::from(whole), dec, width);
    }
}

/// One row: `% time` of `all_ns`, seconds, calls, errors, avg, p50, p99,
/// max (`-` for a syscall whose calls were never timed: exit_group, a
/// successful execve), `fast %`, name.
pub fn table_row(s: &mut dyn Sink, r: &Row<'_>, all_ns: u64) {
    percent(s, r.total_ns, all_ns, 2, W_PCT);
    s.put(b" ");
    sink::fixed(s, u128::from(r.total_ns), 1_000_000_000, 6, W_SECS);
    s.put(b" ");
    sink::num_right(s, r.calls, W_NUM);
    s.put(b" ");
    sink::num_right(s, r.errors, W_NUM);
    let untimed = r.max_ns == 0 && r.total_ns == 0;
    let timed = if r.timed == 0 { r.calls } else { r.timed };
    let durations =
        [(u128::from(r.total_ns), u128::from(timed)), (r.p50_ns.into(), 1), (r.p99_ns.into(), 1), (r.max_ns.into(), 1)];
    for (num, den) in durations {
        s.put(b" ");
        if untimed {
            sink::right(s, b"-", W_NUM);
        } else if den == 0 {
            sink::duration(s, 0, 1, W_NUM);
        } else {
            sink::duration(s, num, den, W_NUM);
        }
    }
    s.put(b" ");
    percent(s, r.fast_calls, r.calls, 1, W_FAST);
    s.put(b"  ");
    write_name(s, &r.name);
    s.put(b"\n");
}

/// The total line.
pub fn table_total(s: &mut dyn Sink, t: &Totals) {
    sink::fixed(s, 100, 1, 2, W_PCT);
    s.put(b" ");
    sink::fixed(s, u128::from(t.total_ns), 1_000_000_000, 6, W_SECS);
    s.put(b" ");
    sink::num_right(s, t.calls, W_NUM);
    s.put(b" ");
    sink::num_right(s, t.errors, W_NUM);
    for _ in 0..4 {
        s.put(b" ");
        sink::pad(s, 0, W_NUM);
    }
    s.put(b" ");
    percent(s, t.fast_calls, t.calls, 1, W_FAST);
    s.put(b"  total\n");
}

/// The whole table: the header, one row each (in the order given), the
/// total line; or, with no row, a line saying so (naming the trace set
/// `-e trace=` chose, if any).
pub fn table<'a>(s: &mut dyn Sink, rows: impl Iterator<Item = Row<'a>>, totals: &Totals, trace: Option<&[u8]>) {
    let mut any = false;
    for r in rows {
        if !any {
            s.put(TABLE_HEADER);
            any = true;
        }
        table_row(s, &r, totals.total_ns);
    }
    if any {
        table_total(s, totals);
        return;
    }
    match trace {
        Some(t) => {
            s.put(b"  (no syscall of trace=");
            s.put(t);
            s.put(b" was called)\n");
        }
        None => s.put(b"  (no syscalls were recorded)\n"),
    }
}

/// How a process ended, for words.
#[derive(Clone, Copy, Debug)]
pub enum Exit<'a> {
    /// exit_group or the last thread's exit, with the status if known.
    Exited(Option<i64>),
    /// Killed by a signal: its number and name, if known.
    Signal {
        signal: Option<i64>,
        name: Option<&'a [u8]>,
    },
    Exec,
    Traced,
    /// Another `how`, shown as is.
    Other(&'a [u8]),
}

impl<'a> Exit<'a> {
    /// From a report's `exit` fields.
    pub fn from_fields(how: &'a [u8], status: Option<i64>, signal: Option<i64>, name: Option<&'a [u8]>) -> Exit<'a> {
        match how {
            h if h == how::EXIT_GROUP.as_bytes() || h == how::EXIT.as_bytes() => Exit::Exited(status),
            h if h == how::SIGNAL.as_bytes() => Exit::Signal { signal, name },
            h if h == how::EXEC.as_bytes() => Exit::Exec,
            h if h == how::TRACED.as_bytes() => Exit::Traced,
            other => Exit::Other(other),
        }
    }
}

/// `exit status 0`, `killed by SIGSEGV`, `replaced by execve`, ...
pub fn describe_exit(s: &mut dyn Sink, e: &Exit<'_>) {
    match *e {
        Exit::Exited(Some(status)) => {
            s.put(b"exit status ");
            sink::signed(s, status);
        }
        Exit::Exited(None) => s.put(b"exited"),
        Exit::Signal { name: Some(n), .. } => {
            s.put(b"killed by ");
            s.put(n);
        }
        Exit::Signal { signal: Some(sig), name: None } => {
            s.put(b"killed by ");
            names::write_signal(s, sig);
        }
        Exit::Signal { signal: None, name: None } => s.put(b"killed by a signal"),
        Exit::Exec => s.put(b"replaced by execve"),
        Exit::Traced => s.put(b"traced (PTRACE_TRACEME): not intercepted from then on"),
        Exit::Other(how) => s.put(how),
    }
}

/// A process's title line, without its newline: `usertrap: pid 4242
/// (python3), seccomp, exit status 0, trace=%file` (the backend, exit and
/// trace parts only when known).
pub fn process_header(
    s: &mut dyn Sink,
    pid: u64,
    command: &[u8],
    backend: &[u8],
    exit: Option<&Exit<'_>>,
    trace: Option<&[u8]>,
) {
    s.put(b"usertrap: pid ");
    sink::num(s, pid);
    s.put(b" (");
    s.put(command);
    s.put(b")");
    if !backend.is_empty() {
        s.put(b", ");
        s.put(backend);
    }
    if let Some(e) = exit {
        s.put(b", ");
        describe_exit(s, e);
    }
    if let Some(t) = trace {
        s.put(b", trace=");
        s.put(t);
    }
}

/// A thread's title line, without its newline: `usertrap: pid 4242
/// (python3) thread 4243 (worker)`; with `folded` threads whose figures
/// could not be kept apart from it: `, with 3 threads before it`.
pub fn thread_header(s: &mut dyn Sink, pid: u64, command: &[u8], tid: u64, name: &[u8], folded: u64) {
    s.put(b"usertrap: pid ");
    sink::num(s, pid);
    s.put(b" (");
    s.put(command);
    s.put(b") thread ");
    sink::num(s, tid);
    s.put(b" (");
    s.put(name);
    s.put(b")");
    if folded > 0 {
        s.put(b", with ");
        sink::num(s, folded);
        s.put(if folded == 1 { b" thread before it".as_slice() } else { b" threads before it".as_slice() });
    }
}

/// The title of a process's unpatched sites.
pub const UNPATCHED_TITLE: &[u8] = b"unpatched sites:\n";

/// One unpatched site of one process: `  0x7f..  read  reason`.
pub fn unpatched_site(s: &mut dyn Sink, address: &[u8], name: &Name<'_>, reason: &[u8]) {
    s.put(b"  ");
    s.put(address);
    s.put(b"  ");
    write_name(s, name);
    s.put(b"  ");
    s.put(reason);
    s.put(b"\n");
}

/// Whether a site's slow-path calls are worth a line without `-v`: at
/// least 100 of them and at least 1% of the process's calls (an
/// `exit_group` called once, a start-up `openat`, never are).
pub fn slow_site_matters(slow_calls: u64, all_calls: u64) -> bool {
    slow_calls >= 100 && u128::from(slow_calls) * 100 >= u128::from(all_calls)
}

/// The title of the slow-path sites that matter.
pub const SLOW_SITES_TITLE: &[u8] = b"calls left on the slow path (a signal each), by site:\n";

/// One slow-path site: `  300320  read  libc.so.6+0x11ba5e  reason`, where
/// `location` is the object and offset (the command adds the symbol).
pub fn slow_site(s: &mut dyn Sink, slow_calls: u64, name: &Name<'_>, location: &[u8], reason: &[u8]) {
    s.put(b"  ");
    sink::num_right(s, slow_calls, W_NUM);
    s.put(b"  ");
    write_name(s, name);
    s.put(b"  ");
    s.put(location);
    if !reason.is_empty() {
        s.put(b"  (");
        s.put(reason);
        s.put(b")");
    }
    s.put(b"\n");
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    struct V(Vec<u8>);
    impl Sink for V {
        fn put(&mut self, b: &[u8]) {
            self.0.extend_from_slice(b);
        }
    }
    fn with(f: impl FnOnce(&mut dyn Sink)) -> String {
        let mut v = V(Vec::new());
        f(&mut v);
        String::from_utf8(v.0).unwrap()
    }

    #[test]
    fn buckets_cover_values_in_order() {
        let mut last = 0;
        for v in [0u64, 1, 15, 16, 17, 31, 32, 33, 100, 1000, 123_456, 1 << 40, u64::MAX] {
            let b = bucket(v);
            assert!(b >= last && b < HIST_LEN, "bucket of {v}");
            let (lo, hi) = bucket_bounds(b);
            if v < (1u64 << (MAX_EXP + 1)) {
                assert!(lo <= v && v < hi, "{v} not in [{lo}, {hi})");
                assert_eq!(canonical_bucket(v), (lo, hi), "the library's and the command's buckets agree");
            }
            last = b;
        }
        assert_eq!(bucket_bounds(usize::MAX), bucket_bounds(HIST_LEN - 1));
        assert_eq!(canonical_bucket(1100), (1088, 1152));
        assert_eq!(canonical_bucket(u64::MAX), (1 << 62, (1 << 62) + (1 << 58)));
    }

    #[test]
    fn buckets_are_narrow() {
        for b in SUB..HIST_LEN {
            let (lo, hi) = bucket_bounds(b);
            assert!((hi - lo) * 16 <= lo, "bucket {b} [{lo}, {hi}) wider than 1/16");
            assert_eq!(bucket(lo), b);
            assert_eq!(bucket(hi - 1), b);
        }
    }

    /// Over many generated histograms of the library's shape, several ranks
    /// asked at once (in any order) are each what that rank alone gives
    /// (`percentile`: one rank, the buckets as (bound, count) pairs).
    #[test]
    fn percentiles_agree_with_percentile() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let mut counts = [0u64; HIST_LEN];
            for _ in 0..next() % 12 {
                let at = (next() % HIST_LEN as u64) as usize;
                counts[at] += next() % 5000;
            }
            let bound = |i: usize| bucket_bounds(i).1;
            let (min, max) = match next() % 3 {
                0 => (0, 0),
                1 => (next() % 5000, 5000 + next() % 100_000),
                _ => (next() % 1_000_000, next() % 1_000_000),
            };
            let pm = PERCENTILES.map(|(p, _)| p);
            let pairs = counts.iter().enumerate().map(|(i, &c)| (bound(i), c));
            let one = pm.map(|p| percentile(pairs.clone(), p, min, max));
            assert_eq!(percentiles(counts.iter().copied(), bound, pm, min, max), one);
            let reversed = [999, 990, 500];
            assert_eq!(
                percentiles(counts.iter().copied(), bound, reversed, min, max),
                reversed.map(|p| percentile(pairs.clone(), p, min, max))
            );
        }
    }

    #[test]
    fn percentile_arithmetic() {
        // (upper bound, count): ranks 1-50, 51-90, 91-100.
        let h = [(104u64, 50u64), (208, 40), (1024, 10)];
        let p = |pm, min, max| percentile(h.iter().copied(), pm, min, max);
        assert_eq!(p(500, 100, 1010), 104);
        assert_eq!(p(501, 100, 1010), 208, "rank 51 is in the second bucket");
        assert_eq!(p(900, 100, 1010), 208);
        assert_eq!(p(990, 100, 1010), 1010, "never above the largest value seen");
        assert_eq!(p(999, 100, 0), 1024, "max unknown: the bucket's value");
        assert_eq!(p(500, 150, 1010), 150, "never below the smallest value seen");
        assert_eq!(p(500, 2000, 1010), 1010, "min above max (inconsistent input): max");
        assert_eq!(percentile([].iter().copied(), 500, 0, 0), 0);
        assert_eq!(percentile([(5u64, 0u64)].iter().copied(), 500, 0, 0), 0);
        assert_eq!(percentile([(7u64, u64::MAX), (9, u64::MAX)].iter().copied(), 999, 0, 0), 7, "counts saturate");
        // The one-pass form gives the same.
        let many = |pm: [u64; 4], min, max| percentiles(h.iter().map(|&(_, c)| c), |i| h[i].0, pm, min, max);
        for (min, max) in [(100, 1010), (100, 0), (150, 1010), (2000, 1010)] {
            let pm = [500, 501, 990, 999];
            assert_eq!(many(pm, min, max), pm.map(|x| p(x, min, max)), "{min} {max}");
        }
        assert_eq!(percentiles([].into_iter(), |_| 1, [500], 0, 0), [0]);
        assert_eq!(percentiles([0u64].into_iter(), |_| 5, [500], 0, 0), [0]);
        assert_eq!(percentiles([u64::MAX, u64::MAX].into_iter(), |i| [7, 9][i], [999], 0, 0), [7]);
        assert_eq!(rank(1, 999), 1);
        assert_eq!(rank(0, 500), 1);
        assert_eq!(rank(1000, 999), 999);
        assert_eq!(rank(1001, 999), 1000);
        assert_eq!(rank(u64::MAX, 1000), u64::MAX);
    }

    fn row(name: &'static str, calls: u64, total_ns: u64, p50: u64, p99: u64, max: u64, fast: u64) -> Row<'static> {
        Row {
            name: Name::Text(name.as_bytes()),
            calls,
            errors: 0,
            total_ns,
            timed: calls,
            p50_ns: p50,
            p99_ns: p99,
            max_ns: max,
            fast_calls: fast,
        }
    }

    #[test]
    fn renderer_golden_output() {
        let rows = [
            row("read", 3, 12_345, 1_100, 8_200, 9_999, 2),
            Row { errors: 1, ..row("openat", 8, 1_999_995, 250_000, 999_999, 1_000_000, 8) },
            Row { timed: 0, ..row("exit_group", 1, 0, 0, 0, 0, 0) },
        ];
        let totals = Totals { calls: 12, errors: 1, total_ns: 2_012_340, fast_calls: 10 };
        let out = with(|s| {
            process_header(s, 42, b"cat", b"seccomp", Some(&Exit::Exited(Some(0))), None);
            s.put(b"\n");
            table(s, rows.iter().copied(), &totals, None);
            s.put(UNPATCHED_TITLE);
            unpatched_site(s, b"0x7f0012", &Name::Number { nr: 0, i386: false }, b"no room");
            unpatched_site(s, b"0x7f0034", &Name::Number { nr: 999, i386: true }, b"why");
        });
        let want = "\
usertrap: pid 42 (cat), seccomp, exit status 0
 % time     seconds      calls     errors        avg        p50        p99        max  fast %  syscall
   0.61    0.000012          3          0     4.12us     1.10us     8.20us    10.00us    66.7  read
  99.39    0.002000          8          1   250.00us   250.00us     1.00ms     1.00ms   100.0  openat
   0.00    0.000000          1          0          -          -          -          -     0.0  exit_group
 100.00    0.002012         12          1                                                83.3  total
unpatched sites:
  0x7f0012  read  no room
  0x7f0034  i386:syscall_999  why
";
        assert_eq!(out, want);
    }

    #[test]
    fn empty_tables_and_exits() {
        let t = Totals::default();
        assert_eq!(with(|s| table(s, [].into_iter(), &t, None)), "  (no syscalls were recorded)\n");
        assert_eq!(
            with(|s| table(s, [].into_iter(), &t, Some(b"%file"))),
            "  (no syscall of trace=%file was called)\n"
        );
        let d = |e: Exit<'_>| with(|s| describe_exit(s, &e));
        assert_eq!(d(Exit::from_fields(b"exit_group", Some(3), None, None)), "exit status 3");
        assert_eq!(d(Exit::from_fields(b"exit", None, None, None)), "exited");
        assert_eq!(d(Exit::from_fields(b"signal", None, Some(11), Some(b"SIGSEGV"))), "killed by SIGSEGV");
        assert_eq!(d(Exit::from_fields(b"signal", None, Some(35), None)), "killed by SIGRT_3");
        assert_eq!(d(Exit::from_fields(b"signal", None, None, None)), "killed by a signal");
        assert_eq!(d(Exit::from_fields(b"exec", None, None, None)), "replaced by execve");
        assert_eq!(
            d(Exit::from_fields(b"traced", None, None, None)),
            "traced (PTRACE_TRACEME): not intercepted from then on"
        );
        assert_eq!(d(Exit::from_fields(b"unknown", None, None, None)), "unknown");
        let h = with(|s| process_header(s, 7, b"sh", b"", None, Some(b"read;write")));
        assert_eq!(h, "usertrap: pid 7 (sh), trace=read;write");
    }

    #[test]
    fn zero_and_huge_rows_do_not_panic() {
        let r = Row {
            name: Name::Number { nr: u64::MAX, i386: false },
            calls: u64::MAX,
            total_ns: u64::MAX,
            max_ns: u64::MAX,
            ..Row::default()
        };
        let out = with(|s| table_row(s, &r, 0));
        assert!(out.ends_with("  syscall_18446744073709551615\n"), "{out}");
        let out = with(|s| table_row(s, &Row { total_ns: 5, ..Row::default() }, 5));
        assert!(out.starts_with(" 100.00    0.000000          0          0        0ns"), "{out}");
    }
}
