//! What the library counts: calls per syscall number, split by the path that
//! served them (fast: a patched site's trampoline; slow: a signal). Printed at
//! exit when USERTRAP_SUMMARY is set; the latency reports build on these.
//! Each thread counts in its own area; the totals are summed over every area
//! when they are read.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use crate::config::Summary;

use crate::backend;
use crate::patch::registry;
use crate::sigsafe::log::Line;
use crate::sigsafe::raw;
use crate::sigsafe::thread::{self, ThreadArea};
use core::cell::Cell;

/// Syscall numbers below this are counted one by one; the rest together.
pub const MAX_NR: usize = 512;

static FAST: [AtomicU64; MAX_NR + 1] = [const { AtomicU64::new(0) }; MAX_NR + 1];
static SLOW: [AtomicU64; MAX_NR + 1] = [const { AtomicU64::new(0) }; MAX_NR + 1];
/// USERTRAP_SUMMARY: where the one line per process goes at exit.
static SUMMARY: AtomicU8 = AtomicU8::new(SUMMARY_OFF);
const SUMMARY_OFF: u8 = 0;
const SUMMARY_STDERR: u8 = 1;
const SUMMARY_FILE: u8 = 2;
struct PathCell(core::cell::UnsafeCell<[u8; 4096]>);
// SAFETY: written once by the constructor before any trap is armed, then read.
unsafe impl Sync for PathCell {}
static SUMMARY_PATH: PathCell = PathCell(core::cell::UnsafeCell::new([0; 4096]));

/// Constructor only.
pub fn set_summary(s: Summary) {
    let mode = match s {
        Summary::Off => SUMMARY_OFF,
        Summary::Stderr => SUMMARY_STDERR,
        Summary::File(p) => {
            // SAFETY: single-threaded start-up, before any reader exists.
            let buf = unsafe { &mut *SUMMARY_PATH.0.get() };
            let n = p.len().min(buf.len() - 1);
            if let (Some(dst), Some(src)) = (buf.get_mut(..n), p.get(..n)) {
                dst.copy_from_slice(src);
            }
            SUMMARY_FILE
        }
    };
    SUMMARY.store(mode, Ordering::Relaxed);
}

pub fn summary_on() -> bool {
    SUMMARY.load(Ordering::Relaxed) != SUMMARY_OFF
}
static PRINTED: AtomicBool = AtomicBool::new(false);
/// Syscalls run by the SIGILL/SIGSEGV handler at a patched site (a thread
/// caught mid-patch, or a branch straight to the old `syscall`).
static SITE_FAULTS: AtomicU64 = AtomicU64::new(0);

pub fn count_site_fault() {
    SITE_FAULTS.fetch_add(1, Ordering::Relaxed);
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Fast = 0,
    Slow = 1,
}

/// Called once for every intercepted syscall: in the calling thread's area
/// (no shared cache line written), or, for a thread without one, in the
/// process-wide fallback. Integer code only: it runs on the fast path, where
/// vector registers must stay untouched.
#[inline(always)]
pub fn count(area: Option<&ThreadArea>, path: Path, nr: i64) {
    let i = if (0..MAX_NR as i64).contains(&nr) { nr as usize } else { MAX_NR };
    let p = path as usize;
    match area.and_then(|a| a.calls.get(p)).and_then(|row| row.get(i)) {
        Some(c) => c.set(c.get() + 1),
        None => {
            let table = if path == Path::Fast { &FAST } else { &SLOW };
            if let Some(c) = table.get(i) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// (fast, slow) calls of syscall `nr` so far in this process.
#[allow(dead_code)] // the latency reports (issue 4) print these
pub fn calls(nr: usize) -> (u64, u64) {
    let mut f = FAST.get(nr).map_or(0, |c| c.load(Ordering::Relaxed));
    let mut s = SLOW.get(nr).map_or(0, |c| c.load(Ordering::Relaxed));
    thread::for_each_area(|a| {
        f += a.calls.first().and_then(|row| row.get(nr)).map_or(0, |c| c.get());
        s += a.calls.get(1).and_then(|row| row.get(nr)).map_or(0, |c| c.get());
    });
    (f, s)
}

fn totals() -> (u64, u64) {
    let sum = |t: &[AtomicU64]| t.iter().map(|c| c.load(Ordering::Relaxed)).sum::<u64>();
    let (mut f, mut s) = (sum(&FAST), sum(&SLOW));
    thread::for_each_area(|a| {
        f += a.calls.first().map_or(0, |row| row.iter().map(Cell::get).sum::<u64>());
        s += a.calls.get(1).map_or(0, |row| row.iter().map(Cell::get).sum::<u64>());
    });
    (f, s)
}

/// The process is about to end (exit_group, or a fatal signal).
pub fn at_exit() {
    let mode = SUMMARY.load(Ordering::Relaxed);
    if mode == SUMMARY_OFF || PRINTED.swap(true, Ordering::Relaxed) {
        return;
    }
    let (fast, slow) = totals();
    let mut line = Line::new();
    line
        .str("pid ")
        .num(raw::getpid() as u64)
        .str(": ")
        .num(fast + slow)
        .str(" syscalls intercepted (")
        .str(backend::name())
        .str("), ")
        .num(fast)
        .str(" on the fast path, ")
        .num(registry::patched_count() as u64)
        .str(" sites patched, ")
        .num(registry::unpatched_count() as u64)
        .str(" left on the slow path, ")
        .num(SITE_FAULTS.load(Ordering::Relaxed))
        .str(" site faults");
    if mode == SUMMARY_STDERR {
        line.emit();
    } else {
        // SAFETY: the path was written once at start-up and is NUL-terminated.
        let path = unsafe { (*SUMMARY_PATH.0.get()).as_ptr() };
        let flags = (libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC) as u64;
        let fd = raw::syscall(libc::SYS_openat, libc::AT_FDCWD as u64, path as u64, flags, 0o644);
        if fd >= 0 {
            line.emit_to(fd as i32);
            raw::syscall(libc::SYS_close, fd as u64, 0, 0, 0);
        }
    }
}

pub fn at_fatal_signal() {
    at_exit();
}

/// A new process starts with its own figures, not its parent's.
pub fn after_fork_in_child() {
    for c in FAST.iter().chain(SLOW.iter()) {
        c.store(0, Ordering::Relaxed);
    }
    thread::for_each_area(|a| a.calls.iter().flatten().for_each(|c| c.set(0)));
    PRINTED.store(false, Ordering::Relaxed);
    SITE_FAULTS.store(0, Ordering::Relaxed);
}
