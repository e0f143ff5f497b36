//! Per-thread figures (USERTRAP_THREADS=1): each thread's own table, with
//! its tid and name, after the process's (JSON `threads`, text tables).
//! A thread that ended left its table to the report (figures::keep_retired)
//! with the name it had then; a live thread's name is read now.

use super::names::{read_comm, slot_name};
use super::out::Out;
use super::render::Report;
use super::settings::close;
use crate::measure::stats::{self, Owner, SysStats, ThreadStats, SLOTS};
use crate::rt::raw;
use core::sync::atomic::Ordering;
use usertrap_core::report::{self, key, Row, Totals};
use usertrap_core::sink::{self, Sink, SliceSink};

/// A thread's tid and name.
fn identify(owner: Owner<'_>) -> (i32, [u8; 16]) {
    match owner {
        Owner::Ended(tid, name) => (tid, name),
        Owner::Area(a) => {
            let tid = a.owner_tid.load(Ordering::Relaxed);
            if a.in_use() {
                (tid, live_name(tid))
            } else {
                (tid, a.exit_comm.get())
            }
        }
    }
}

/// /proc/self/task/TID/comm (empty if unreadable).
fn live_name(tid: i32) -> [u8; 16] {
    let mut path = [0u8; 64];
    let mut p = SliceSink::new(&mut path);
    p.put(b"/proc/self/task/");
    sink::num(&mut p, tid as u32 as u64);
    p.put(b"/comm\0");
    let len = p.written().len();
    let mut name = [0u8; 16];
    let Ok(c) = core::ffi::CStr::from_bytes_with_nul(path.get(..len).unwrap_or(b"\0")) else { return name };
    if let Ok(fd) = raw::openat(libc::AT_FDCWD, c, libc::O_RDONLY | libc::O_CLOEXEC, 0) {
        let mut buf = [0u8; 17];
        let n = raw::read(fd, &mut buf).unwrap_or(0);
        close(fd);
        let got = buf.get(..n).unwrap_or(&[]);
        let got = got.strip_suffix(b"\n").unwrap_or(got);
        let n = got.len().min(16);
        if let (Some(d), Some(s)) = (name.get_mut(..n), got.get(..n)) {
            d.copy_from_slice(s);
        }
    }
    name
}

fn name_bytes(name: &[u8; 16]) -> &[u8] {
    &name[..name.iter().position(|&b| b == 0).unwrap_or(16)]
}

/// A table's syscalls with calls, by total time: (count, numbers).
fn order(t: &ThreadStats, buf: &mut [u16; stats::PER_THREAD]) -> usize {
    let mut n = 0;
    for (nr, slot) in t.index.iter().enumerate() {
        let i = slot.get() as usize;
        if i == 0 {
            continue;
        }
        if let (Some(b), Some(d)) = (t.blocks.get(i - 1), buf.get_mut(n)) {
            if b.fast.get() + b.slow.get() != 0 {
                *d = nr as u16;
                n += 1;
            }
        }
    }
    let total = |nr: u16| block(t, nr as usize).map_or(0, |b| b.total.get());
    if let Some(v) = buf.get_mut(..n) {
        v.sort_unstable_by(|a, b| total(*b).cmp(&total(*a)).then(a.cmp(b)));
    }
    n
}

fn block(t: &ThreadStats, nr: usize) -> Option<&SysStats> {
    let i = t.index.get(nr)?.get() as usize;
    t.blocks.get(i.checked_sub(1)?)
}

/// (fast, slow, errors, ticks) over a table.
fn sums(t: &ThreadStats, order: &[u16]) -> (u64, u64, u64, u64) {
    let mut s = (0, 0, 0, 0);
    for &nr in order {
        if let Some(b) = block(t, nr as usize) {
            s = (s.0 + b.fast.get(), s.1 + b.slow.get(), s.2 + b.errors.get(), s.3 + b.total.get());
        }
    }
    s
}

impl Report<'_> {
    /// `threads`: one entry per thread with calls.
    pub(super) fn json_threads(&self, o: &mut Out) {
        o.key(false, key::THREADS).str("[");
        let mut first = true;
        stats::for_each_table(|t, owner| {
            let mut buf = [0u16; stats::PER_THREAD];
            let n = order(t, &mut buf);
            let rows = buf.get(..n).unwrap_or(&[]);
            if rows.is_empty() {
                return;
            }
            let (tid, name) = identify(owner);
            if !first {
                o.str(",");
            }
            first = false;
            o.str("{").key(true, key::TID).num(tid as u32 as u64);
            o.key(false, key::NAME).str("\"").json_str(name_bytes(&name)).str("\"");
            o.key(false, key::FOLDED).num(t.threads.get().into());
            let (fast, slow, errors, ticks) = sums(t, rows);
            o.key(false, key::TOTALS).str("{");
            o.key(true, key::CALLS).num(fast + slow).key(false, key::ERRORS).num(errors);
            o.key(false, key::TOTAL_NS).num(self.ns(ticks));
            o.key(false, key::FAST_CALLS).num(fast).key(false, key::SLOW_CALLS).num(slow);
            o.str("}").key(false, key::SYSCALLS).str("[");
            for (k, &nr) in rows.iter().enumerate() {
                if k > 0 {
                    o.str(",");
                }
                let b = block(t, nr as usize);
                let calls = b.map_or((0, 0), |b| (b.fast.get(), b.slow.get()));
                self.json_syscall(o, nr as usize, calls, b);
            }
            o.str("]}");
        });
        o.str("]");
    }

    /// Each thread's table, after the process's.
    pub(super) fn text_threads(&self, o: &mut Out) {
        let mut comm = [0u8; 64];
        let command = read_comm(&mut comm);
        stats::for_each_table(|t, owner| {
            let mut buf = [0u16; stats::PER_THREAD];
            let n = order(t, &mut buf);
            let rows = buf.get(..n).unwrap_or(&[]);
            if rows.is_empty() {
                return;
            }
            let (tid, name) = identify(owner);
            o.str("\n");
            report::thread_header(
                o,
                raw::getpid() as u64,
                command,
                tid as u32 as u64,
                name_bytes(&name),
                t.threads.get().into(),
            );
            o.str("\n");
            let (fast, slow, errors, ticks) = sums(t, rows);
            let totals = Totals { calls: fast + slow, errors, total_ns: self.ns(ticks), fast_calls: fast };
            let rows = rows.iter().map(|&nr| {
                let nr = nr as usize;
                let mut row = Row { name: slot_name(nr), ..Row::default() };
                if let Some(b) = block(t, nr) {
                    (row.calls, row.fast_calls, row.errors, row.timed) =
                        (b.fast.get() + b.slow.get(), b.fast.get(), b.errors.get(), b.timed.get());
                    if row.timed != 0 {
                        row.total_ns = self.ns(b.total.get());
                        row.max_ns = self.ns(b.max.get());
                        [row.p50_ns, row.p99_ns] = self.percentiles_ns(b, [500, 990]);
                    }
                }
                row
            });
            report::table(o, rows, &totals, None);
        });
    }
}

const _: () = assert!(SLOTS < u16::MAX as usize);
