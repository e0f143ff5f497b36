//! Messages to stderr from trap context: a fixed buffer, no allocation, no
//! `core::fmt` (which can panic), one write(2) per line through the gate.
//!
//! "stderr" is the file descriptor 2 was when the process image started:
//! a program may close it and open a data file that gets descriptor 2, and
//! nothing of ours may land in that file. Writes never raise SIGPIPE or
//! SIGXFSZ (a closed pipe or a file size limit would otherwise end the
//! program with another status than its own).
//!
//! Never: format with `core::fmt`, or write anywhere but the image's own stderr.

use core::sync::atomic::{AtomicU64, Ordering};

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

/// Descriptor 2 is still the stderr the image started with (or nothing was
/// recorded yet).
pub fn stderr_intact() -> bool {
    let kind = STDERR_KIND.load(Ordering::Relaxed);
    if kind & SET == 0 {
        return true;
    }
    if kind & CLOSED != 0 {
        return false;
    }
    let start = FileId {
        dev: STDERR_DEV.load(Ordering::Relaxed),
        ino: STDERR_INO.load(Ordering::Relaxed),
        rdev: STDERR_RDEV.load(Ordering::Relaxed),
        kind: (kind & !SET) as u32,
    };
    file_id(2) == Some(start)
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

    /// Write the line (with its newline) to stderr, if descriptor 2 still is
    /// the image's stderr (else it would land in a file of the program's).
    pub fn emit(&mut self) {
        if stderr_intact() {
            self.emit_to(2);
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
