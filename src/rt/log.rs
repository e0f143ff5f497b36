//! Messages to stderr from trap context: a fixed buffer, no allocation, no
//! `core::fmt` (which can panic), one write(2) per line through the gate.
//!
//! "stderr" is the file descriptor 2 was when the process image started:
//! a program may close it and open a data file that gets descriptor 2, and
//! nothing of ours may land in that file. When the program lets go of
//! descriptor 2, a duplicate kept just before (`keep_stderr`) stands for
//! it, checked to be that file before every write (`stderr_fd`). Writes never raise SIGPIPE or
//! SIGXFSZ (a closed pipe or a file size limit would otherwise end the
//! program with another status than its own).
//!
//! Never: format with `core::fmt`, or write anywhere but the image's own stderr.

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

use crate::rt::raw;
use usertrap_core::names::errno_name;
use usertrap_core::sink::decimal;

/// What identifies an open file: enough to tell whether descriptor 2 still
/// is the stderr the image started with.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub rdev: u64,
    /// S_IFMT bits of st_mode.
    pub kind: u32,
}

pub const S_IFMT: u32 = 0o170000;

/// fstat(2) of `fd` (through the gate), None if it is not open.
pub fn file_id(fd: i32) -> Option<FileId> {
    // The kernel's struct stat on x86-64 (144 bytes): st_dev at 0, st_ino at
    // 8, st_mode (32 bits) at 24, st_rdev at 40.
    let st = raw::fstat(fd).ok()?;
    Some(FileId { dev: st.st_dev, ino: st.st_ino, rdev: st.st_rdev, kind: st.st_mode & S_IFMT })
}

// stderr at start: dev, ino, rdev, kind | SET (0: not recorded yet, so
// messages before that go to descriptor 2 as it is: settings errors).
static STDERR_DEV: AtomicU64 = AtomicU64::new(0);
static STDERR_INO: AtomicU64 = AtomicU64::new(0);
static STDERR_RDEV: AtomicU64 = AtomicU64::new(0);
static STDERR_KIND: AtomicU64 = AtomicU64::new(0);
const SET: u64 = 1 << 40;
const CLOSED: u64 = 1 << 41;

/// Start-up (every image): remember what descriptor 2 is.
pub fn remember_stderr() {
    match file_id(2) {
        Some(id) => {
            STDERR_DEV.store(id.dev, Ordering::Relaxed);
            STDERR_INO.store(id.ino, Ordering::Relaxed);
            STDERR_RDEV.store(id.rdev, Ordering::Relaxed);
            STDERR_KIND.store(id.kind as u64 | SET, Ordering::Relaxed);
        }
        None => STDERR_KIND.store(SET | CLOSED, Ordering::Relaxed),
    }
}

/// stderr as it was at start, if recorded and open then.
fn start_stderr() -> Option<FileId> {
    let kind = STDERR_KIND.load(Ordering::Relaxed);
    if kind & SET == 0 || kind & CLOSED != 0 {
        return None;
    }
    Some(FileId {
        dev: STDERR_DEV.load(Ordering::Relaxed),
        ino: STDERR_INO.load(Ordering::Relaxed),
        rdev: STDERR_RDEV.load(Ordering::Relaxed),
        kind: (kind & !SET) as u32,
    })
}

/// Where the image's stderr can be written now: descriptor 2 while it
/// still is the file it was at start (or nothing was recorded yet), else
/// the duplicate kept before the program closed or replaced it
/// ([`keep_stderr`]) while that still is the same file; None when neither
/// is (the program closed every descriptor, or a file of its own took the
/// number: nothing of ours may land there).
pub fn stderr_fd() -> Option<i32> {
    if STDERR_KIND.load(Ordering::Relaxed) & SET == 0 {
        return Some(2);
    }
    let start = start_stderr()?;
    if file_id(2) == Some(start) {
        return Some(2);
    }
    let kept = KEPT_FD.load(Ordering::Relaxed);
    (kept >= 0 && file_id(kept) == Some(start)).then_some(kept)
}

// The image's stderr kept for the report when the program closes or
// replaces descriptor 2 (coreutils and tar close it in an atexit handler,
// before the library writes the report at exit_group).
static KEEP_WANTED: AtomicBool = AtomicBool::new(false);
/// The duplicate, close-on-exec (an exec'd image starts over with its own
/// descriptor 2); -1: none. Inherited by fork children, which report to it
/// too.
static KEPT_FD: AtomicI32 = AtomicI32::new(-1);
/// Held by the thread that is making the duplicate: another one that closes
/// descriptor 2 at that moment does not wait (a signal handler of the
/// holder's could be the other one); it is the holder's check of what it
/// duplicated that keeps a wrong file out.
static KEEPING: AtomicBool = AtomicBool::new(false);

/// Start-up: something of ours will be written to stderr at exit (the
/// report, the summary line, the phases line), so stderr is kept when the
/// program lets go of descriptor 2.
pub fn want_stderr_kept() {
    KEEP_WANTED.store(true, Ordering::Relaxed);
}

/// The program is about to close descriptor 2 or put another file on it
/// (close, close_range, dup2, dup3): keep a duplicate of the image's
/// stderr first, if it is wanted, descriptor 2 still is that file and no
/// good duplicate is kept yet. The duplicate takes a high number
/// ([`dup_high`]), not the lowest free one, which the program's next open
/// expects to get.
pub fn keep_stderr() {
    if !KEEP_WANTED.load(Ordering::Relaxed) {
        return;
    }
    let Some(start) = start_stderr() else { return };
    let kept = KEPT_FD.load(Ordering::Relaxed);
    if kept >= 0 && file_id(kept) == Some(start) {
        return;
    }
    if KEEPING.swap(true, Ordering::Acquire) {
        return;
    }
    if file_id(2) == Some(start) {
        if let Some(fd) = dup_high(2) {
            // Another thread may have closed descriptor 2 and opened a file
            // there between the look above and the duplicate: keep only
            // the image's stderr. (A number kept before that is no longer
            // that file is the program's now: never closed here.)
            if file_id(fd) == Some(start) {
                KEPT_FD.store(fd, Ordering::Relaxed);
            } else {
                let _ = raw::close(fd);
            }
        }
    }
    KEEPING.store(false, Ordering::Release);
}

/// A fork child: no other thread of its own can be making a duplicate.
pub fn after_fork_in_child() {
    KEEPING.store(false, Ordering::Relaxed);
}

/// A close-on-exec duplicate of `fd` at a number the program does not
/// count on: a program's opens take the lowest free number, and one that
/// fills every descriptor up to its RLIMIT_NOFILE must get as many as
/// natively. So:
/// - where the soft limit is below the hard one and at most LOW_TABLE,
///   just above the soft limit: raised by a few for the duplicate, then
///   put back (a descriptor above the limit stays valid; `raw::with_spare_fd`
///   does the same for exec and reports). Another thread that opens a
///   file in those few microseconds with every number below the limit
///   taken gets one above it instead of EMFILE;
/// - where the soft limit is large (at least 4 * LOW_TABLE), from
///   LOW_TABLE - 1 up: below the limit, but a program fills thousands of
///   descriptors before it gets one fewer than natively (the kernel's
///   descriptor table grows to the highest number in use: a number near
///   a limit of 1048576, as in many containers, would cost megabytes in
///   every such process and its forks);
/// - else (a limit of a few thousand or less that the program cannot
///   raise) none: the duplicate would take a number the program may
///   need, and the report goes to the rescue file as before.
pub fn dup_high(fd: i32) -> Option<i32> {
    const LOW_TABLE: u64 = 1024;
    let [soft, hard] = raw::prlimit_nofile(None).ok()?;
    if soft < hard && soft <= LOW_TABLE {
        return raw::with_nofile_raised([soft, hard], || raw::dup_cloexec_from(fd, soft as i32))?.ok();
    }
    if soft >= 4 * LOW_TABLE {
        return raw::dup_cloexec_from(fd, LOW_TABLE as i32 - 1).ok();
    }
    None
}

const SIGPIPE_BIT: u64 = 1 << (libc::SIGPIPE - 1);
const SIGXFSZ_BIT: u64 = 1 << (libc::SIGXFSZ - 1);

fn pending() -> u64 {
    raw::rt_sigpending()
}

/// Runs `f` (our writes) with SIGPIPE and SIGXFSZ blocked, and takes back
/// those that `f` raised (not the program's own, already pending), so a
/// closed pipe or a file size limit gives an error, never a signal.
pub fn without_write_signals<R>(f: impl FnOnce() -> R) -> R {
    let bits = SIGPIPE_BIT | SIGXFSZ_BIT;
    let before = pending() & bits;
    let old = raw::sigprocmask(libc::SIG_BLOCK, Some(bits));
    let r = f();
    let ours = pending() & bits & !before;
    if ours != 0 {
        for _ in 0..2 {
            if raw::rt_sigtimedwait_poll(ours).is_err() {
                break;
            }
        }
    }
    raw::sigprocmask(libc::SIG_SETMASK, Some(old));
    r
}

/// How long a write to a pipe, FIFO or socket may wait for room without any
/// progress before the report is given up (a reader that stopped reading
/// must not hang the program at exit).
pub const NO_PROGRESS_MS: u64 = 2000;

/// Writes all of `data` to `fd`, waiting (poll) at most NO_PROGRESS_MS for
/// room each time a non-blocking descriptor is full. Returns how much was
/// written and the error that stopped it (0: none).
pub fn write_bounded(fd: i32, data: &[u8]) -> (usize, i64) {
    let mut done = 0usize;
    while let Some(rest) = data.get(done..).filter(|r| !r.is_empty()) {
        match raw::write(fd, rest) {
            Ok(0) => return (done, libc::EIO as i64),
            Ok(n) => done += n,
            Err(e) if e == libc::EINTR as i64 => continue,
            Err(e) if e == libc::EAGAIN as i64 => {
                let mut pfd = [libc::pollfd { fd, events: libc::POLLOUT, revents: 0 }];
                match raw::poll(&mut pfd, NO_PROGRESS_MS as i32) {
                    Ok(0) => return (done, libc::ETIMEDOUT as i64),
                    Err(e) if e != libc::EINTR as i64 => return (done, e),
                    _ => {}
                }
            }
            Err(e) => return (done, e),
        }
    }
    (done, 0)
}

/// Appends bytes to a fixed buffer, dropping what does not fit (never
/// panics, never allocates). `len` is how much was written.
pub struct Buf<'a> {
    pub buf: &'a mut [u8],
    pub len: usize,
}

impl<'a> Buf<'a> {
    pub fn new(buf: &'a mut [u8]) -> Buf<'a> {
        Buf { buf, len: 0 }
    }

    pub fn put(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
        self
    }

    pub fn num(&mut self, v: u64) -> &mut Self {
        let mut d = [0u8; 20];
        self.put(decimal(v, &mut d))
    }

    /// Each byte as two lowercase hex digits (names that may hold any byte,
    /// inside a `:`-separated field).
    pub fn hex_bytes(&mut self, bytes: &[u8]) -> &mut Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for &b in bytes {
            self.put(&[DIGITS[(b >> 4) as usize], DIGITS[(b & 15) as usize]]);
        }
        self
    }
}

pub struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    /// A line that starts with "usertrap: ".
    pub fn new() -> Line {
        let mut l = Line { buf: [0; 512], len: 0 };
        l.str("usertrap: ");
        l
    }

    pub fn str(&mut self, s: &str) -> &mut Line {
        self.bytes(s.as_bytes())
    }

    pub fn bytes(&mut self, s: &[u8]) -> &mut Line {
        for &b in s {
            // Keep one byte for the newline; truncate the rest.
            if self.len + 1 < self.buf.len() {
                if let Some(slot) = self.buf.get_mut(self.len) {
                    *slot = b;
                    self.len += 1;
                }
            }
        }
        self
    }

    pub fn num(&mut self, v: u64) -> &mut Line {
        let mut digits = [0u8; 20];
        self.bytes(decimal(v, &mut digits))
    }

    /// Bytes from outside (a setting's value, a path) kept on one line:
    /// control characters, backslashes and non-ASCII bytes as `\xNN`, and at
    /// most `max` bytes of `s` shown, then "... (N bytes)".
    pub fn escaped(&mut self, s: &[u8], max: usize) -> &mut Line {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for &b in s.iter().take(max) {
            if !(0x20..0x7f).contains(&b) || b == b'\\' {
                self.bytes(&[b'\\', b'x', DIGITS[(b >> 4) as usize], DIGITS[(b & 15) as usize]]);
            } else {
                self.bytes(&[b]);
            }
        }
        if s.len() > max {
            self.str("... (").num(s.len() as u64).str(" bytes)");
        }
        self
    }

    /// errno as its name ("ENOSPC"), or "errno N".
    pub fn errno(&mut self, e: i64) -> &mut Line {
        match errno_name(e) {
            Some(n) => self.str(n),
            None => self.str("errno ").num(e as u64),
        }
    }

    /// The line's bytes so far, with its newline.
    pub fn finished(&mut self) -> &[u8] {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b'\n';
        }
        let n = (self.len + 1).min(self.buf.len());
        self.buf.get(..n).unwrap_or(&[])
    }

    /// Write the line (with its newline) to the image's stderr, descriptor 2
    /// or the duplicate kept of it ([`stderr_fd`]); nowhere if neither is
    /// that file any more (it would land in a file of the program's).
    pub fn emit(&mut self) {
        if let Some(fd) = stderr_fd() {
            self.emit_to(fd);
        }
    }

    /// Write the line (with its newline) to `fd`, in one write; false if it
    /// could not be written whole.
    pub fn emit_to(&mut self, fd: i32) -> bool {
        let line = self.finished();
        let (n, err) = without_write_signals(|| write_bounded(fd, line));
        err == 0 && n == line.len()
    }
}
