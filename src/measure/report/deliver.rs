//! Delivering a finished report where the settings say, in one write, or
//! saying once why it could not be (see the module doc of `report`).

use super::collector::{collecting, collector_send};
use super::names::read_comm;
use super::settings::{close, copy_cstr, cstr, expand, Settings};
use crate::measure::stats;
use crate::rt::log::{self, Buf, Line};
use crate::rt::raw;

/// Why a report was not delivered.
pub(super) struct Failed {
    errno: i64,
    written: usize,
}

/// errno-like code for "descriptor 2 is not the image's stderr any more".
pub(super) const STDERR_GONE: i64 = -1;

/// Sends the finished report (None: it could not be built, out of memory)
/// where the settings say, or says why not.
pub(super) fn deliver(s: &Settings, data: Option<&[u8]>) {
    if collecting() {
        let mut head = [0u8; 64];
        let mut w = Buf::new(&mut head);
        match data {
            Some(_) => w.put(b"report ").num(raw::getpid() as u64).put(b"\n"),
            None => w.put(b"lost ").num(raw::getpid() as u64).put(b" out of memory\n"),
        };
        let len = w.len;
        // Nowhere else: the collector names a process whose report did not come.
        let _ = raw::with_spare_fd(
            || collector_send(head.get(..len).unwrap_or(&[]), data.unwrap_or(&[])),
            |r| *r == Err(libc::EMFILE as i64),
        );
        return;
    }
    to_output(s, data);
}

/// `deliver` without a collector: to USERTRAP_OUTPUT or stderr. Not inlined:
/// its path buffer would deepen every delivery's frame on the signal stack,
/// a collector's too (a page fault or two per process under `usertrap stat`).
#[inline(never)]
fn to_output(s: &Settings, data: Option<&[u8]>) {
    let mut path = [0u8; 4200];
    let template = cstr(&s.output);
    let n = if template.is_empty() { 0 } else { expand(template, &mut path) };
    let dest = path.get(..n).unwrap_or(&[]);
    let result = match data {
        None => Err(Failed { errno: raw::ENOMEM, written: 0 }),
        Some(d) if dest.is_empty() => to_stderr(d),
        Some(d) => raw::with_spare_fd(|| to_path(dest, d), |r| matches!(r, Err(f) if f.errno == libc::EMFILE as i64)),
    };
    if let Err(f) = result {
        lost(s, dest, data, f);
    }
}

pub(super) fn to_stderr(data: &[u8]) -> Result<(), Failed> {
    let Some(fd) = log::stderr_fd() else {
        return Err(Failed { errno: STDERR_GONE, written: 0 });
    };
    match log::write_bounded(fd, data) {
        (_, 0) => Ok(()),
        (written, errno) => Err(Failed { errno, written }),
    }
}

/// Appends `data` to the file at `path` (see the module's comment).
pub(super) fn to_path(path: &[u8], data: &[u8]) -> Result<(), Failed> {
    let mut p = [0u8; 4200];
    copy_cstr(&mut p, path);
    let fail = |errno: i64, written: usize| Err(Failed { errno, written });
    // Twice: a file another process created between our open and our link.
    for _ in 0..2 {
        let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
        match raw::open_cwd(&p, flags, 0) {
            Ok(fd) => {
                let r = log::write_bounded(fd, data);
                close(fd);
                return match r {
                    (_, 0) => Ok(()),
                    (written, errno) => fail(errno, written),
                };
            }
            Err(e) if e != libc::ENOENT as i64 => return fail(e, 0),
            Err(_) => {}
        }
        match create(&p, path, data) {
            Ok(true) => return Ok(()),
            Ok(false) => continue,
            Err(f) => return Err(f),
        }
    }
    fail(libc::EEXIST as i64, 0)
}

/// A new file at `p` (NUL-terminated `path`) holding `data`, which appears
/// only complete. Ok(false): someone else created it first. Not inlined:
/// only the first report to a file creates it, and its directory's buffer
/// would deepen every delivery's frame on the signal stack.
#[inline(never)]
pub(super) fn create(p: &[u8], path: &[u8], data: &[u8]) -> Result<bool, Failed> {
    let slash = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
    let mut dir = [0u8; 4200];
    copy_cstr(&mut dir, if slash == 0 { b"/" } else { path.get(..slash).unwrap_or(b"/") });
    match raw::open_cwd(&dir, libc::O_TMPFILE | libc::O_WRONLY | libc::O_CLOEXEC, 0o644) {
        Ok(tfd) => {
            let (written, errno) = log::write_bounded(tfd, data);
            if errno != 0 {
                close(tfd);
                return Err(Failed { errno, written });
            }
            let mut proc_path = [0u8; 40];
            let mut w = Buf::new(&mut proc_path);
            w.put(b"/proc/self/fd/").num(tfd as u64).put(b"\0");
            let r = raw::cstr(&proc_path).and_then(|from| {
                raw::linkat(libc::AT_FDCWD, from, libc::AT_FDCWD, raw::cstr(p)?, libc::AT_SYMLINK_FOLLOW)
            });
            close(tfd);
            match r {
                Ok(()) => return Ok(true),
                Err(e) if e == libc::EEXIST as i64 => return Ok(false),
                Err(_) => {} // No /proc (a chroot): create it by name below.
            }
        }
        Err(e) if [libc::EOPNOTSUPP, libc::EISDIR, libc::EINVAL].iter().any(|&n| e == n as i64) => {}
        Err(e) => return Err(Failed { errno: e, written: 0 }),
    }
    // Without O_TMPFILE: exclusively, and removed again if incomplete.
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_CLOEXEC;
    let fd = match raw::open_cwd(p, flags, 0o644) {
        Ok(fd) => fd,
        Err(e) if e == libc::EEXIST as i64 => return Ok(false),
        Err(e) => return Err(Failed { errno: e, written: 0 }),
    };
    let (written, errno) = log::write_bounded(fd, data);
    close(fd);
    if errno != 0 {
        let _ = raw::cstr(p).and_then(|p| raw::unlinkat(libc::AT_FDCWD, p, 0));
        return Err(Failed { errno, written });
    }
    Ok(true)
}

/// The report did not arrive: one line saying so on stderr, or, when stderr
/// cannot take it, the line and the report in a new file of our own.
pub(super) fn lost(s: &Settings, dest: &[u8], data: Option<&[u8]>, f: Failed) {
    let mut line = Line::new();
    line.str("pid ").num(raw::getpid() as u64).str(" (");
    let mut comm = [0u8; 64];
    line.bytes(read_comm(&mut comm)).str("): the report could not be written to ");
    if dest.is_empty() {
        line.str("stderr");
    } else {
        line.escaped(dest, 200);
    }
    line.str(": ");
    match f.errno {
        STDERR_GONE => line.str("descriptor 2 is closed or is another file than at start"),
        e if e == raw::ENOMEM && data.is_none() => line.str("out of memory"),
        e if e == libc::ETIMEDOUT as i64 => line.str("its reader took no data for 2 s"),
        e if e == libc::ENXIO as i64 => line.str("ENXIO (a FIFO or socket nobody reads)"),
        e => line.errno(e),
    };
    if let Some(d) = data {
        if f.written != 0 {
            line.str(" (").num(f.written as u64).str(" of ").num(d.len() as u64).str(" bytes written)");
        }
    }
    if !dest.is_empty() && log::stderr_fd().is_some_and(|fd| line.emit_to(fd)) {
        return;
    }
    // stderr is what failed, or is gone too.
    let mut p = [0u8; 400];
    let mut w = Buf::new(&mut p);
    w.put(cstr(&s.tmpdir))
        .put(b"/usertrap.")
        .num(raw::getpid() as u64)
        .put(b".")
        .num(stats::start_realtime_ns())
        .put(b".report\0");
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_CLOEXEC;
    if let Ok(fd) = raw::open_cwd(&p, flags, 0o600) {
        line.emit_to(fd);
        if let Some(d) = data {
            log::write_bounded(fd, d);
        }
        close(fd);
    }
}
