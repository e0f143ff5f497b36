//! Where and how the report goes: the settings taken at start-up
//! (USERTRAP_OUTPUT, USERTRAP_FORMAT, USERTRAP_SUMMARY, TMPDIR,
//! USERTRAP_COLLECT), the output path template's expansion, and the checks on
//! a summary path.
//! Never: build or write the report.

use crate::measure::stats;
use crate::rt::log::{self, Buf};
use crate::rt::raw;
use core::sync::atomic::{AtomicBool, Ordering};

/// USERTRAP_SUMMARY: where the one-line summary goes (start::config parses it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Summary<'a> {
    Off,
    Stderr,
    File(&'a [u8]),
}

/// USERTRAP_FORMAT: how the report is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// The short fields first and the whole on a page of its own: a process
/// that writes a short output path touches one page of it, not three.
#[repr(C, align(4096))]
pub(super) struct Settings {
    pub(super) format: Format,
    pub(super) summary: Summary<'static>,
    /// Where a report goes when stderr cannot take it (TMPDIR or /tmp).
    pub(super) tmpdir: [u8; 256],
    /// USERTRAP_COLLECT (empty: not under `usertrap stat`).
    pub(super) collect: [u8; 128],
    pub(super) output: [u8; 4096],
    pub(super) summary_path: [u8; 4096],
}

pub(super) struct SettingsCell(core::cell::UnsafeCell<Settings>);

// SAFETY: written once by the constructor before any trap is armed, then read.
unsafe impl Sync for SettingsCell {}

#[link_section = ".bss.usertrap_large"]
pub(super) static SETTINGS: SettingsCell = SettingsCell(core::cell::UnsafeCell::new(Settings {
    format: Format::Text,
    summary: Summary::Off,
    tmpdir: [0; 256],
    collect: [0; 128],
    output: [0; 4096],
    summary_path: [0; 4096],
}));

/// Set once [`configure`] has filled SETTINGS (the constructor, after the
/// settings were read): until then no report is written, whatever ends the
/// process.
pub(super) static CONFIGURED: AtomicBool = AtomicBool::new(false);

pub(super) fn settings() -> &'static Settings {
    // SAFETY: read-only after the constructor.
    unsafe { &*SETTINGS.0.get() }
}

/// Set once a filter of the program's forbids a syscall the report needs:
/// writing it would end the process the way the filter says.
pub(super) static REPORT_FORBIDDEN: AtomicBool = AtomicBool::new(false);

/// The report cannot be written (emulate::process, at the program's seccomp).
pub fn forbid() {
    REPORT_FORBIDDEN.store(true, Ordering::Relaxed);
}

pub(super) fn report_forbidden() -> bool {
    REPORT_FORBIDDEN.load(Ordering::Relaxed)
}

/// Constructor only: where and how to report. `output` is an absolute path
/// template (or empty: stderr); `tmpdir` the environment's TMPDIR (used if
/// absolute and short), for reports that stderr cannot take.
pub fn configure(output: &[u8], format: Format, summary: Summary<'static>, tmpdir: &[u8], collect: &[u8]) {
    log::remember_stderr();
    // SAFETY: single-threaded start-up, before any reader exists.
    let s = unsafe { &mut *SETTINGS.0.get() };
    copy_cstr(&mut s.output, output);
    s.format = format;
    s.summary = summary;
    if let Summary::File(p) = summary {
        copy_cstr(&mut s.summary_path, p);
    }
    let tmp: &[u8] = if tmpdir.first() == Some(&b'/') && tmpdir.len() < 200 { tmpdir } else { b"/tmp" };
    copy_cstr(&mut s.tmpdir, tmp);
    copy_cstr(&mut s.collect, collect);
    if collect.is_empty() && (output.first().is_none_or(|&b| b == 0) || matches!(summary, Summary::Stderr)) {
        // The report or the summary goes to stderr at exit.
        log::want_stderr_kept();
    }
    CONFIGURED.store(true, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------
// The collector of `usertrap stat` (cli/src/stat.rs reads this protocol):
// one stream connection per message to the abstract unix socket named by
// USERTRAP_COLLECT, the message, then close:
//   "hello PID PPID COMM live ADDR\n"   a process image starts (COMM in
//                             hex; ADDR, decimal: its live index, live.rs)
//   "child PID PPID COMM live ADDR\n"   its parent forked it (sent before
//                             fork returns in the parent: the collector
//                             knows of a child before its parent can wait
//                             for it or end; ADDR is the parent's, the same
//                             in the child's copy of its memory)
// Words after COMM come in NAME VALUE pairs; a reader skips the names it
// does not know (added: `live`).
//   "report PID\n" + report   it ended (the JSON report follows)
//   "lost PID REASON\n"       it ended, its report could not be built
//   "trace PID TID ...\n" + events   `usertrap trace`'s recorded calls
//                             (trace.rs; docs/report-schema.md)

pub(super) fn copy_cstr(dst: &mut [u8], src: &[u8]) {
    let n = src.len().min(dst.len().saturating_sub(1));
    if let (Some(d), Some(s)) = (dst.get_mut(..n), src.get(..n)) {
        d.copy_from_slice(s);
    }
}

pub(super) fn cstr(buf: &[u8]) -> &[u8] {
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    buf.get(..n).unwrap_or(&[])
}

/// The USERTRAP_OUTPUT template when reports go to a path (not to
/// `usertrap stat`'s collector, which no root or mount change affects).
pub fn output_path() -> Option<&'static [u8]> {
    if !CONFIGURED.load(Ordering::Relaxed) {
        return None;
    }
    let s = settings();
    let output = cstr(&s.output);
    (cstr(&s.collect).is_empty() && !output.is_empty()).then_some(output)
}

pub fn summary_on() -> bool {
    !matches!(settings().summary, Summary::Off)
}

/// Start-up: a USERTRAP_SUMMARY file must be one we can append to (an
/// existing writable file, or a new one in a writable directory); else the
/// errno, which the constructor reports as a bad setting. Not inlined: its
/// two path buffers would sit in the constructor's frame, two pages of
/// stack (two page faults) in every process, asked for or not.
#[inline(never)]
pub fn check_summary_path(path: &[u8]) -> Result<(), i64> {
    let mut p = [0u8; 4200];
    copy_cstr(&mut p, path);
    match raw::cstr(&p).and_then(|c| raw::faccessat(libc::AT_FDCWD, c, libc::W_OK)) {
        Ok(()) => {
            return match stat_kind(&p) {
                Some(0o040000) => Err(libc::EISDIR as i64),
                _ => Ok(()),
            };
        }
        Err(e) if e != libc::ENOENT as i64 => return Err(e),
        Err(_) => {}
    }
    let slash = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
    let mut d = [0u8; 4200];
    copy_cstr(&mut d, if slash == 0 { b"/" } else { path.get(..slash).unwrap_or(b"/") });
    raw::cstr(&d).and_then(|c| raw::faccessat(libc::AT_FDCWD, c, libc::W_OK | libc::X_OK))
}

/// S_IFMT bits of the file at the NUL-terminated `p`.
pub(super) fn stat_kind(p: &[u8]) -> Option<u32> {
    let st = raw::cstr(p).and_then(|c| raw::newfstatat(libc::AT_FDCWD, c, 0)).ok()?;
    Some(st.st_mode & log::S_IFMT)
}

pub(super) fn close(fd: i32) {
    let _ = raw::close(fd);
}

/// Expand %p (pid), %t (image start, ns since the epoch) and %% in `t`.
pub(super) fn expand(t: &[u8], out: &mut [u8]) -> usize {
    // getpid only when asked for: the program's own filter may forbid it.
    expand_with(t, || raw::getpid() as u64, stats::start_realtime_ns(), out)
}

/// `expand` with the pid and the start time given; the length written (the
/// expansion is cut at the end of `out`). Any other `%` stays as it is.
fn expand_with(t: &[u8], pid: impl Fn() -> u64, start_ns: u64, out: &mut [u8]) -> usize {
    let mut w = Buf::new(out);
    let mut it = t.iter().peekable();
    while let Some(&c) = it.next() {
        if c == b'%' {
            match it.peek() {
                Some(b'p') => {
                    it.next();
                    w.num(pid());
                }
                Some(b't') => {
                    it.next();
                    w.num(start_ns);
                }
                Some(b'%') => {
                    it.next();
                    w.put(b"%");
                }
                _ => {
                    w.put(b"%");
                }
            }
        } else {
            w.put(&[c]);
        }
    }
    w.len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expanded(t: &[u8], out_len: usize) -> Vec<u8> {
        let mut out = vec![0u8; out_len];
        let n = expand_with(t, || 4242, 1_700_000_000_123_456_789, &mut out);
        out.truncate(n);
        out
    }

    #[test]
    fn expands_pid_time_and_percent() {
        assert_eq!(expanded(b"/tmp/r.%p", 64), b"/tmp/r.4242");
        assert_eq!(expanded(b"/tmp/%t-%p.json", 64), b"/tmp/1700000000123456789-4242.json");
        assert_eq!(expanded(b"/tmp/%p%p", 64), b"/tmp/42424242");
        assert_eq!(expanded(b"/tmp/100%%", 64), b"/tmp/100%");
        // %% is one percent sign: "%%p" is "%p" literally, not the pid.
        assert_eq!(expanded(b"/tmp/%%p", 64), b"/tmp/%p");
        assert_eq!(expanded(b"/plain", 64), b"/plain");
    }

    #[test]
    fn other_percents_stay() {
        assert_eq!(expanded(b"/tmp/a%", 64), b"/tmp/a%");
        assert_eq!(expanded(b"/tmp/%x%", 64), b"/tmp/%x%");
        assert_eq!(expanded(b"%", 64), b"%");
        assert_eq!(expanded(b"%%%p", 64), b"%4242");
    }

    #[test]
    fn the_pid_is_asked_for_only_when_used() {
        let mut out = [0u8; 64];
        let n = expand_with(b"/tmp/%t.%%p", || panic!("pid asked for"), 7, &mut out);
        assert_eq!(&out[..n], b"/tmp/7.%p");
    }

    #[test]
    fn cut_at_the_end_of_the_buffer() {
        assert_eq!(expanded(b"/tmp/r.%p", 9), b"/tmp/r.42");
        assert_eq!(expanded(b"/tmp/%t", 8), b"/tmp/170");
        assert_eq!(expanded(b"/tmp/xyz", 0), b"");
        // The template the settings hold (4095 bytes) of %t, into deliver's
        // buffer: the length never passes the buffer.
        let t = b"%t".repeat(2047);
        assert_eq!(expanded(&t, 4200).len(), 4200);
    }

    #[test]
    fn cstr_copies() {
        let mut d = [0xffu8; 6];
        copy_cstr(&mut d, b"abcdefgh");
        assert_eq!(&d, b"abcde\xff", "at most len - 1 bytes: room for the NUL a zeroed buffer keeps");
        assert_eq!(cstr(b"ab\0cd"), b"ab");
        assert_eq!(cstr(b"abc"), b"abc");
        let mut z = [0u8; 0];
        copy_cstr(&mut z, b"x");
    }
}
