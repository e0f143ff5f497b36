//! `usertrap stat -i SECS`: while the command runs, the aggregate of the
//! whole tree every SECS seconds. The reports of processes that ended are
//! the collector's; a running process's figures are read from its memory
//! (process_vm_readv) through the index its greeting gave (the library's
//! src/measure/report/live.rs says why pulling by reading memory: the
//! program is never interrupted, and a process blocked for long is read
//! all the same). Reads race with the process's own updates: an interim
//! table may be a call behind; the final report is the processes' own.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use usertrap_core::report::{self as schema, live as idx, Name};

use crate::args::SortKey;
use crate::collect::LiveView;
use crate::merge::{self, Source};
use crate::report::{Bucket, Report, SyscallStats};
use crate::text::{self, SiteView};
use crate::trace::TraceFilter;

/// The thread that writes the interim tables.
pub struct Interim {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<()>,
}

impl Interim {
    /// Every `secs` seconds, `render(seconds since start)` written to `to`.
    pub fn start(secs: f64, render: impl Fn(f64) -> String + Send + 'static, mut to: Box<dyn Write + Send>) -> Interim {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let handle = thread::spawn(move || {
            let start = Instant::now();
            let every = Duration::from_secs_f64(secs);
            let mut next = every;
            loop {
                while start.elapsed() < next {
                    if st.load(Ordering::SeqCst) {
                        return;
                    }
                    thread::sleep(Duration::from_millis(10).min(next.saturating_sub(start.elapsed())));
                }
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let text = render(start.elapsed().as_secs_f64());
                let _ = to.write_all(text.as_bytes()).and_then(|()| to.flush());
                next += every;
            }
        });
        Interim { stop, handle }
    }

    /// No more tables (the command ended); waits for one being written.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.handle.join();
    }
}

/// One interim table: the reports received so far and every running
/// process read now, merged as the final aggregate is.
pub fn render_interim(view: &LiveView, filter: Option<&TraceFilter>, sort: SortKey, hz: u64, elapsed: f64) -> String {
    let (reports, running) = view.now();
    let mut sources: Vec<Source> = reports.into_iter().map(|report| Source { file: None, report }).collect();
    let mut unread = 0;
    for r in &running {
        match read_process(r.pid, r.index, &r.command, hz) {
            Some(report) => sources.push(Source { file: None, report }),
            None => unread += 1,
        }
    }
    let ended = sources.len() - (running.len() - unread);
    let mut agg = merge::aggregate(sources, filter, false, false);
    merge::sort(&mut agg, sort);
    let mut out = format!(
        "usertrap: interim, {elapsed:.1} s: {} running, {ended} ended{}\n",
        running.len() - unread,
        if unread > 0 { format!(", {unread} running that could not be read") } else { String::new() }
    );
    agg.sites.clear();
    let body = text::render(&agg, SiteView::default());
    // The table without its header line (the line above says what it is).
    out.push_str(body.split_once('\n').map_or("", |b| b.1));
    out.push('\n');
    out
}

/// Reads `len` bytes at `addr` of process `pid`.
fn read(pid: u32, addr: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: len };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: len };
    // SAFETY: one local buffer of `len` bytes we own; the remote side is
    // only read by the kernel (with the ptrace access check).
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &raw const local, 1, &raw const remote, 1, 0) };
    (n == len as isize).then_some(buf)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8).map_or(0, |s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4).map_or(0, |s| u32::from_le_bytes(s.try_into().unwrap_or([0; 4])))
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2).map_or(0, |s| u16::from_le_bytes(s.try_into().unwrap_or([0; 2])))
}

/// One slot's figures, summed over threads, in clock ticks.
#[derive(Default)]
struct Sum {
    fast: u64,
    slow: u64,
    errors: u64,
    total: u64,
    min: Option<u64>,
    max: u64,
    hist: BTreeMap<usize, u64>,
}

/// Process `pid`'s figures now, as a report (`hz`: clock ticks per second),
/// or None if its memory cannot be read (it ended, or switched user).
pub fn read_process(pid: u32, index: u64, command: &str, hz: u64) -> Option<Report> {
    let ix = read(pid, index, idx::WORDS * 8)?;
    let w = |i: usize| u64_at(&ix, i * 8);
    if w(idx::MAGIC) != idx::MAGIC_VALUE {
        return None;
    }
    let slots = w(idx::SLOTS) as usize;
    let (used_off, blocks_off, block_size) =
        (w(idx::USED_OFFSET) as usize, w(idx::BLOCKS_OFFSET) as usize, w(idx::BLOCK_SIZE) as usize);
    let (errnos_off, hist_off, hist_len) =
        (w(idx::ERRNOS_OFFSET) as usize, w(idx::HIST_OFFSET) as usize, w(idx::HIST_LEN) as usize);
    let per_thread = w(idx::PER_THREAD) as usize;
    let _ = (errnos_off, w(idx::MAX_ERRNO));
    // Every table: the areas', then those threads that ended left.
    let mut tables = Vec::new();
    let count = (read(pid, w(idx::AREA_COUNT), 8).map(|b| u64_at(&b, 0))?).min(w(idx::MAX_AREAS)) as usize;
    if count > 0 {
        let areas = read(pid, w(idx::AREAS), count * 8)?;
        for i in 0..count {
            let area = u64_at(&areas, i * 8);
            if area != 0 {
                if let Some(t) = read(pid, area + w(idx::STATS_OFFSET), 8).map(|b| u64_at(&b, 0)) {
                    tables.push(t);
                }
            }
        }
    }
    let retired = (read(pid, w(idx::RETIRED_N), 8).map_or(0, |b| u64_at(&b, 0))).min(w(idx::RETIRED_MAX)) as usize;
    if retired > 0 {
        let stride = w(idx::RETIRED_STRIDE) as usize;
        if let Some(r) = read(pid, w(idx::RETIRED), retired * stride) {
            tables.extend((0..retired).map(|i| u64_at(&r, i * stride)));
        }
    }
    let mut sums: BTreeMap<usize, Sum> = BTreeMap::new();
    for t in tables.into_iter().filter(|&t| t != 0) {
        let Some(head) = read(pid, t, used_off + 2) else { continue };
        let used = (u16_at(&head, used_off) as usize).min(per_thread);
        if used == 0 {
            continue;
        }
        let Some(blocks) = read(pid, t + blocks_off as u64, used * block_size) else { continue };
        for nr in 0..slots {
            let i = u16_at(&head, nr * 2) as usize;
            if i == 0 || i > used {
                continue;
            }
            let b = &blocks[(i - 1) * block_size..i * block_size];
            let s = sums.entry(nr).or_default();
            let timed = u64_at(b, 48);
            s.fast += u64_at(b, 0);
            s.slow += u64_at(b, 8);
            s.errors += u64_at(b, 16);
            s.total += u64_at(b, 24);
            if timed > 0 {
                s.min = Some(s.min.map_or(u64_at(b, 32), |m| m.min(u64_at(b, 32))));
                s.max = s.max.max(u64_at(b, 40));
            }
            for k in 0..hist_len {
                let c = u32_at(b, hist_off + k * 4);
                if c != 0 {
                    *s.hist.entry(k).or_default() += u64::from(c);
                }
            }
        }
    }
    let ns = |ticks: u64| (u128::from(ticks) * 1_000_000_000 / u128::from(hz.max(1))) as u64;
    let (max_nr, i386_base) = (w(idx::MAX_NR) as usize, w(idx::I386_BASE) as usize);
    let syscalls = sums
        .into_iter()
        .filter(|(_, s)| s.fast + s.slow > 0)
        .map(|(slot, s)| {
            let (name, nr, abi) = match slot.checked_sub(i386_base) {
                Some(n) => (Name::Number { nr: n as u64, i386: true }, n as i64, schema::ABI_I386.to_string()),
                None if slot >= max_nr => (Name::Text(b"other"), slot as i64, String::new()),
                None => (Name::Number { nr: slot as u64, i386: false }, slot as i64, String::new()),
            };
            let name = crate::text::rendered(|o| schema::write_name(o, &name));
            let histogram = s
                .hist
                .iter()
                .map(|(&k, &c)| {
                    let (lo, hi) = schema::bucket_bounds(k);
                    Bucket { low: ns(lo) as f64, high: ns(hi) as f64, count: c }
                })
                .collect();
            SyscallStats {
                name,
                nr,
                abi,
                calls: s.fast + s.slow,
                errors: s.errors,
                total_ns: ns(s.total),
                min_ns: ns(s.min.unwrap_or(0)),
                max_ns: ns(s.max),
                fast_calls: s.fast,
                slow_calls: s.slow,
                histogram,
                ..SyscallStats::default()
            }
        })
        .collect();
    Some(Report {
        format: schema::FORMAT.into(),
        version: schema::VERSION,
        pid,
        ppid: 0,
        command: command.into(),
        backend: String::new(),
        start_ns: 0,
        end_ns: 0,
        clock: String::new(),
        tsc_hz: hz,
        i386_calls: String::new(),
        exit: None,
        totals: None,
        syscalls,
        unpatched_sites: Vec::new(),
        sites: Vec::new(),
        sites_not_kept: 0,
        threads: Vec::new(),
        killed_children: Vec::new(),
    })
}
