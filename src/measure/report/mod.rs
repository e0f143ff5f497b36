//! The report a process writes when it ends: its figures merged over every
//! thread, as text (like `strace -c`, with percentiles) or JSON
//! (docs/report-schema.md), to USERTRAP_OUTPUT or stderr; and the one-line
//! USERTRAP_SUMMARY. Runs in trap context (the exit_group trap, a fatal
//! signal's handler): memory comes from mmap, nothing allocates or locks.
//!
//! Delivery (README, "Measurement and reports"): the whole report is built
//! in memory first, then written in one write(2):
//! - to a USERTRAP_OUTPUT path: appended, never truncated (an exec'd image,
//!   forked children and `/dev/stdout` redirected to a file all keep what
//!   is there); a file that does not exist yet is written unnamed
//!   (O_TMPFILE) and linked in only once complete, so a process killed
//!   meanwhile leaves no empty or partial file; a pipe, FIFO or socket is
//!   opened non-blocking: no reader means no wait, a reader that stopped
//!   reading means at most log::NO_PROGRESS_MS of waiting;
//! - to stderr: only if descriptor 2 still is the stderr the image started
//!   with (log::stderr_intact);
//! - never with SIGPIPE or SIGXFSZ (log::without_write_signals).
//! A report that cannot be delivered is said once, in one line, on stderr;
//! when stderr itself is what failed (closed, replaced, a closed pipe, full),
//! the line and the report go to a new file $TMPDIR/usertrap.PID.TIME.report
//! (mode 0600) instead: never into a file of the program's.
//!
//! Under `usertrap stat` (USERTRAP_COLLECT set) none of that: every process
//! image greets the command's collector when it starts (a fork child is
//! announced by its parent), and sends its report there when it ends, each over a
//! short connection of its own to an abstract unix socket (no file, no
//! permission, no descriptor kept open: whatever the process's user, root
//! or descriptors). A report that cannot be sent is never written anywhere
//! else: the collector names every process that greeted and did not report.

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::measure::names as syscall_names;
use crate::measure::stats::{self, SysStats, HIST_LEN, I386_BASE, MAX_NR, SLOTS};
use crate::patch::registry;
use crate::rt::log::{self, decimal, Buf, Line};
use crate::rt::raw;
use crate::trap::backend;

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

/// How the process (image) ended.
#[derive(Clone, Copy)]
pub enum Exit {
    ExitGroup(i32),
    LastThread(i32),
    Signal(i32),
    Exec,
    /// The process asked to be traced: interception ends here.
    Traced,
}

struct Settings {
    output: [u8; 4096],
    format: Format,
    summary: Summary<'static>,
    summary_path: [u8; 4096],
    /// Where a report goes when stderr cannot take it (TMPDIR or /tmp).
    tmpdir: [u8; 256],
    /// USERTRAP_COLLECT (empty: not under `usertrap stat`).
    collect: [u8; 128],
}

struct SettingsCell(core::cell::UnsafeCell<Settings>);
// SAFETY: written once by the constructor before any trap is armed, then read.
unsafe impl Sync for SettingsCell {}
static SETTINGS: SettingsCell = SettingsCell(core::cell::UnsafeCell::new(Settings {
    output: [0; 4096],
    format: Format::Text,
    summary: Summary::Off,
    summary_path: [0; 4096],
    tmpdir: [0; 256],
    collect: [0; 128],
}));
static WRITTEN: AtomicBool = AtomicBool::new(false);
/// Set when the report is off (USERTRAP_OUTPUT names nothing to write).
static MODE: AtomicU8 = AtomicU8::new(0);

fn settings() -> &'static Settings {
    // SAFETY: read-only after the constructor.
    unsafe { &*SETTINGS.0.get() }
}

/// Set once a filter of the program's forbids a syscall the report needs:
/// writing it would end the process the way the filter says.
static REPORT_FORBIDDEN: AtomicBool = AtomicBool::new(false);

/// The report cannot be written (emulate::process, at the program's seccomp).
pub fn forbid() {
    REPORT_FORBIDDEN.store(true, Ordering::Relaxed);
}

fn report_forbidden() -> bool {
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
    MODE.store(1, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------
// The collector of `usertrap stat` (cli/src/stat.rs reads this protocol):
// one stream connection per message to the abstract unix socket named by
// USERTRAP_COLLECT, the message, then close:
//   "hello PID PPID COMM\n"   a process image starts (COMM in hex)
//   "child PID PPID COMM\n"   its parent forked it (sent before fork returns
//                             in the parent: the collector knows of a child
//                             before its parent can wait for it or end)
//   "report PID\n" + report   it ended (the JSON report follows)
//   "lost PID REASON\n"       it ended, its report could not be built

fn collecting() -> bool {
    settings().collect[0] != 0
}

/// Sends `head` then `body` over a new connection to the collector.
/// Bounded: a full backlog is retried for at most 2 s, a stalled reader
/// gives up after log::NO_PROGRESS_MS.
fn collector_send(head: &[u8], body: &[u8]) -> Result<(), i64> {
    let name = cstr(&settings().collect);
    let mut addr = [0u8; 110];
    // sockaddr_un: sun_family (AF_UNIX, 16 bits), then sun_path whose first
    // byte 0 makes it an abstract name (no file, no permissions).
    addr[0] = libc::AF_UNIX as u8;
    if let Some(d) = addr.get_mut(3..3 + name.len()) {
        d.copy_from_slice(name);
    }
    let alen = 3 + name.len();
    let ty = libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    let fd = raw::syscall(libc::SYS_socket, libc::AF_UNIX as u64, ty as u64, 0, 0);
    if fd < 0 {
        return Err(-fd);
    }
    let fd = fd as i32;
    let mut tries = 0;
    let r = loop {
        let r = raw::syscall(libc::SYS_connect, fd as u64, addr.as_ptr() as u64, alen as u64, 0);
        if r != -(libc::EAGAIN as i64) || tries >= 2000 {
            break r;
        }
        tries += 1;
        let ms = [0i64, 1_000_000];
        raw::syscall(libc::SYS_nanosleep, ms.as_ptr() as u64, 0, 0, 0);
    };
    let r = if r < 0 {
        -r
    } else {
        match log::write_bounded(fd, head) {
            (_, 0) => log::write_bounded(fd, body).1,
            (_, e) => e,
        }
    };
    close(fd);
    if r == 0 {
        Ok(())
    } else {
        Err(r)
    }
}

/// Under `usertrap stat`: tell the collector this process image exists
/// (start-up), so that it can name it if no report comes.
pub fn greet() {
    if collecting() {
        hello(b"hello ", raw::getpid() as u64, raw::syscall(libc::SYS_getppid, 0, 0, 0, 0) as u64);
    }
}

/// A clone/fork/clone3 returned `child` in the parent: if it made a process
/// (not a thread), tell the collector about it now, before the parent can
/// wait for it or end (the child's own greeting may come too late).
pub fn after_clone_in_parent(nr: i64, args: [u64; 6], child: i64) {
    if child <= 0 || !collecting() {
        return;
    }
    let flags = match nr {
        raw::SYS_fork => 0,
        raw::SYS_clone => args[0],
        raw::SYS_clone3 => raw::read_user::<u64>(args[0]).unwrap_or(libc::CLONE_VM as u64),
        _ => return,
    };
    if flags & (libc::CLONE_VM | libc::CLONE_THREAD) as u64 == 0 {
        hello(b"child ", child as u64, raw::getpid() as u64);
    }
}

fn hello(kind: &[u8], pid: u64, ppid: u64) {
    let mut comm = [0u8; 17];
    raw::syscall(libc::SYS_prctl, libc::PR_GET_NAME as u64, comm.as_mut_ptr() as u64, 0, 0);
    let n = comm.iter().position(|&b| b == 0).unwrap_or(16);
    let mut head = [0u8; 128];
    let mut w = Buf::new(&mut head);
    w.put(kind).num(pid).put(b" ").num(ppid).put(b" ");
    w.hex_bytes(comm.get(..n).unwrap_or(&[])).put(b"\n");
    let len = w.len;
    let _ = log::without_write_signals(|| {
        raw::with_spare_fd(|| collector_send(head.get(..len).unwrap_or(&[]), &[]), |r| *r == Err(libc::EMFILE as i64))
    });
}

// Children this process saw end by a signal (wait4/waitid results), for the
// report: the collector names a child that sent no report "killed by
// SIGKILL" from its parent's word. Entries: pid << 8 | signal.
const KILLED_MAX: usize = 64;
static KILLED: [core::sync::atomic::AtomicU64; KILLED_MAX] =
    [const { core::sync::atomic::AtomicU64::new(0) }; KILLED_MAX];
static KILLED_N: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// After every wait4/waitid (any path): note a child killed by a signal.
/// Integer-only (the fast path calls it), one read of program memory each.
#[inline(never)]
pub fn note_wait(nr: i64, args: [u64; 6], r: i64) {
    let (pid, sig) = if nr == libc::SYS_wait4 {
        if r <= 0 || args[1] == 0 {
            return;
        }
        let Ok(status) = raw::read_user::<i32>(args[1]) else { return };
        let sig = status & 0x7f;
        if sig == 0 || sig == 0x7f {
            return;
        }
        (r, sig)
    } else {
        // siginfo_t: si_code at 8, si_pid at 16, si_status at 24.
        if r != 0 || args[2] == 0 {
            return;
        }
        let (Ok(code), Ok(pid), Ok(status)) = (
            raw::read_user::<i32>(args[2] + 8),
            raw::read_user::<i32>(args[2] + 16),
            raw::read_user::<i32>(args[2] + 24),
        ) else {
            return;
        };
        if code != libc::CLD_KILLED && code != libc::CLD_DUMPED {
            return;
        }
        (pid as i64, status)
    };
    let i = KILLED_N.fetch_add(1, Ordering::Relaxed);
    if let Some(slot) = KILLED.get(i) {
        slot.store((pid as u64) << 8 | (sig as u64 & 0xff), Ordering::Relaxed);
    }
}

fn copy_cstr(dst: &mut [u8], src: &[u8]) {
    let n = src.len().min(dst.len().saturating_sub(1));
    if let (Some(d), Some(s)) = (dst.get_mut(..n), src.get(..n)) {
        d.copy_from_slice(s);
    }
}

fn cstr(buf: &[u8]) -> &[u8] {
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    buf.get(..n).unwrap_or(&[])
}

pub fn summary_on() -> bool {
    !matches!(settings().summary, Summary::Off)
}

/// Start-up: a USERTRAP_SUMMARY file must be one we can append to (an
/// existing writable file, or a new one in a writable directory); else the
/// errno, which the constructor reports as a bad setting.
pub fn check_summary_path(path: &[u8]) -> Result<(), i64> {
    let mut p = [0u8; 4200];
    copy_cstr(&mut p, path);
    let r = raw::syscall(libc::SYS_faccessat, libc::AT_FDCWD as u64, p.as_ptr() as u64, libc::W_OK as u64, 0);
    if r == 0 {
        return match stat_kind(&p) {
            Some(k) if k == 0o040000 => Err(libc::EISDIR as i64),
            _ => Ok(()),
        };
    }
    if r != -(libc::ENOENT as i64) {
        return Err(-r);
    }
    let slash = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
    let mut d = [0u8; 4200];
    copy_cstr(&mut d, if slash == 0 { b"/" } else { path.get(..slash).unwrap_or(b"/") });
    let r = raw::syscall(
        libc::SYS_faccessat,
        libc::AT_FDCWD as u64,
        d.as_ptr() as u64,
        (libc::W_OK | libc::X_OK) as u64,
        0,
    );
    if r < 0 {
        return Err(-r);
    }
    Ok(())
}

/// S_IFMT bits of the file at the NUL-terminated `p`.
fn stat_kind(p: &[u8]) -> Option<u32> {
    let mut st = [0u64; 18];
    let r = raw::syscall(libc::SYS_newfstatat, libc::AT_FDCWD as u64, p.as_ptr() as u64, st.as_mut_ptr() as u64, 0);
    (r == 0).then_some(st[3] as u32 & log::S_IFMT)
}

/// A new process (fork child) writes its own report (its parent already
/// told the collector about it: after_clone_in_parent).
pub fn after_fork_in_child() {
    WRITTEN.store(false, Ordering::Relaxed);
    KILLED_N.store(0, Ordering::Relaxed);
}

/// An execve failed: the image goes on and will report again at its end.
pub fn exec_failed() {
    WRITTEN.store(false, Ordering::Relaxed);
}

/// The process image ends: write the summary line and the report, once.
#[inline(never)]
pub fn at_exit(how: Exit) {
    // The program's own seccomp filter forbids what writing it needs (said
    // when the filter was installed).
    if MODE.load(Ordering::Relaxed) == 0 || report_forbidden() {
        return;
    }
    // A vfork child shares its parent's memory: its figures are the parent's,
    // and marking the report written would silence the parent's.
    if crate::rt::thread::current_unchecked().is_some_and(|a| a.vfork_child.get()) {
        return;
    }
    if WRITTEN.swap(true, Ordering::Relaxed) {
        return;
    }
    log::without_write_signals(|| report(how));
}

fn report(how: Exit) {
    let s = settings();
    let len = SLOTS * core::mem::size_of::<SysStats>();
    let Ok(base) = raw::mmap_anon(len, libc::PROT_READ | libc::PROT_WRITE) else {
        deliver(s, None);
        return;
    };
    // SAFETY: a fresh zeroed mapping of SLOTS SysStats (all Cells: zero
    // is a valid value), ours until the munmap below.
    let merged = unsafe { core::slice::from_raw_parts(base as *const SysStats, SLOTS) };
    let used = stats::merge_into(merged);
    let hz = stats::ticks_per_second();
    let r = Report { merged, used, hz, how, end_real_ns: stats::clock_ns(libc::CLOCK_REALTIME) };
    if !matches!(s.summary, Summary::Off) {
        r.summary(s);
    }
    let mut out = Out::new();
    match s.format {
        Format::Text => r.text(&mut out),
        Format::Json => r.json(&mut out),
    }
    raw::munmap(base, len);
    deliver(s, out.data());
}

/// Why a report was not delivered.
struct Failed {
    errno: i64,
    written: usize,
}

/// errno-like code for "descriptor 2 is not the image's stderr any more".
const STDERR_GONE: i64 = -1;

/// Sends the finished report (None: it could not be built, out of memory)
/// where the settings say, or says why not.
fn deliver(s: &Settings, data: Option<&[u8]>) {
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

fn to_stderr(data: &[u8]) -> Result<(), Failed> {
    if !log::stderr_intact() {
        return Err(Failed { errno: STDERR_GONE, written: 0 });
    }
    match log::write_bounded(2, data) {
        (_, 0) => Ok(()),
        (written, errno) => Err(Failed { errno, written }),
    }
}

/// Appends `data` to the file at `path` (see the module's comment).
fn to_path(path: &[u8], data: &[u8]) -> Result<(), Failed> {
    let mut p = [0u8; 4200];
    copy_cstr(&mut p, path);
    let fail = |errno: i64, written: usize| Err(Failed { errno, written });
    // Twice: a file another process created between our open and our link.
    for _ in 0..2 {
        let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
        let fd = raw::syscall(libc::SYS_openat, libc::AT_FDCWD as u64, p.as_ptr() as u64, flags as u64, 0);
        if fd >= 0 {
            let r = log::write_bounded(fd as i32, data);
            close(fd as i32);
            return match r {
                (_, 0) => Ok(()),
                (written, errno) => fail(errno, written),
            };
        }
        if fd != -(libc::ENOENT as i64) {
            return fail(-fd, 0);
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
/// only complete. Ok(false): someone else created it first.
fn create(p: &[u8], path: &[u8], data: &[u8]) -> Result<bool, Failed> {
    let slash = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
    let mut dir = [0u8; 4200];
    copy_cstr(&mut dir, if slash == 0 { b"/" } else { path.get(..slash).unwrap_or(b"/") });
    let tfd = raw::syscall(
        libc::SYS_openat,
        libc::AT_FDCWD as u64,
        dir.as_ptr() as u64,
        (libc::O_TMPFILE | libc::O_WRONLY | libc::O_CLOEXEC) as u64,
        0o644,
    );
    if tfd >= 0 {
        let (written, errno) = log::write_bounded(tfd as i32, data);
        if errno != 0 {
            close(tfd as i32);
            return Err(Failed { errno, written });
        }
        let mut proc_path = [0u8; 40];
        let mut w = Buf::new(&mut proc_path);
        w.put(b"/proc/self/fd/").num(tfd as u64).put(b"\0");
        let r = raw::syscall6(
            libc::SYS_linkat,
            [
                libc::AT_FDCWD as u64,
                proc_path.as_ptr() as u64,
                libc::AT_FDCWD as u64,
                p.as_ptr() as u64,
                libc::AT_SYMLINK_FOLLOW as u64,
                0,
            ],
        );
        close(tfd as i32);
        if r == 0 {
            return Ok(true);
        }
        if r == -(libc::EEXIST as i64) {
            return Ok(false);
        }
        // No /proc (a chroot): create it by name below.
    } else if ![libc::EOPNOTSUPP, libc::EISDIR, libc::EINVAL].iter().any(|&e| tfd == -(e as i64)) {
        return Err(Failed { errno: -tfd, written: 0 });
    }
    // Without O_TMPFILE: exclusively, and removed again if incomplete.
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_CLOEXEC;
    let fd = raw::syscall(libc::SYS_openat, libc::AT_FDCWD as u64, p.as_ptr() as u64, flags as u64, 0o644);
    if fd == -(libc::EEXIST as i64) {
        return Ok(false);
    }
    if fd < 0 {
        return Err(Failed { errno: -fd, written: 0 });
    }
    let (written, errno) = log::write_bounded(fd as i32, data);
    close(fd as i32);
    if errno != 0 {
        raw::syscall(libc::SYS_unlinkat, libc::AT_FDCWD as u64, p.as_ptr() as u64, 0, 0);
        return Err(Failed { errno, written });
    }
    Ok(true)
}

/// The report did not arrive: one line saying so on stderr, or, when stderr
/// cannot take it, the line and the report in a new file of our own.
fn lost(s: &Settings, dest: &[u8], data: Option<&[u8]>, f: Failed) {
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
    if !dest.is_empty() && log::stderr_intact() && line.emit_to(2) {
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
    let fd = raw::syscall(libc::SYS_openat, libc::AT_FDCWD as u64, p.as_ptr() as u64, flags as u64, 0o600);
    if fd >= 0 {
        line.emit_to(fd as i32);
        if let Some(d) = data {
            log::write_bounded(fd as i32, d);
        }
        close(fd as i32);
    }
}

struct Report<'a> {
    merged: &'a [SysStats],
    used: stats::Used,
    hz: u64,
    how: Exit,
    end_real_ns: u64,
}

impl Report<'_> {
    fn ns(&self, ticks: u64) -> u64 {
        (ticks as u128 * 1_000_000_000 / self.hz.max(1) as u128) as u64
    }

    /// The merged figures of `nr`, if it was used (others are never touched).
    fn block(&self, nr: usize) -> Option<&SysStats> {
        if stats::is_used(&self.used, nr) {
            self.merged.get(nr)
        } else {
            None
        }
    }

    /// (fast, slow) over every syscall, threads with tables or not.
    fn calls(&self, nr: usize) -> (u64, u64) {
        if !stats::is_used(&self.used, nr) {
            return (0, 0);
        }
        let (ff, fs) = stats::fallback_calls(nr);
        self.merged.get(nr).map_or((ff, fs), |b| (b.fast.get() + ff, b.slow.get() + fs))
    }

    fn totals(&self) -> (u64, u64, u64, u64) {
        let (mut fast, mut slow, mut errors, mut ticks) = (0, 0, 0, 0);
        for nr in 0..SLOTS {
            let (f, s) = self.calls(nr);
            fast += f;
            slow += s;
            if let Some(b) = self.block(nr) {
                errors += b.errors.get();
                ticks += b.total.get();
            }
        }
        (fast, slow, errors, ticks)
    }

    fn summary(&self, s: &Settings) {
        let (fast, slow, _, _) = self.totals();
        let mut line = Line::new();
        line.str("pid ")
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
            .num(registry::site_faults())
            .str(" site faults");
        match s.summary {
            Summary::Stderr => line.emit(),
            Summary::File(_) => {
                let path = cstr(&s.summary_path);
                let mut p = [0u8; 4200];
                copy_cstr(&mut p, path);
                let flags = libc::O_WRONLY
                    | libc::O_APPEND
                    | libc::O_CREAT
                    | libc::O_NONBLOCK
                    | libc::O_NOCTTY
                    | libc::O_CLOEXEC;
                let fd = raw::syscall(libc::SYS_openat, libc::AT_FDCWD as u64, p.as_ptr() as u64, flags as u64, 0o644);
                let errno = if fd < 0 {
                    -fd
                } else {
                    let (_, e) = log::write_bounded(fd as i32, line.finished());
                    close(fd as i32);
                    e
                };
                if errno != 0 {
                    Line::new()
                        .str("pid ")
                        .num(raw::getpid() as u64)
                        .str(": the summary could not be appended to ")
                        .escaped(path, 200)
                        .str(": ")
                        .errno(errno)
                        .emit();
                }
            }
            Summary::Off => {}
        }
    }

    /// Syscall numbers with calls, by total time, largest first.
    fn order(&self, buf: &mut [u16; SLOTS]) -> usize {
        let mut n = 0;
        for nr in 0..SLOTS {
            let (f, s) = self.calls(nr);
            if f + s != 0 {
                if let Some(slot) = buf.get_mut(n) {
                    *slot = nr as u16;
                    n += 1;
                }
            }
        }
        let total = |nr: u16| self.block(nr as usize).map_or(0, |b| b.total.get());
        if let Some(v) = buf.get_mut(..n) {
            v.sort_unstable_by(|a, b| total(*b).cmp(&total(*a)).then(a.cmp(b)));
        }
        n
    }

    /// The q-th quantile (q in thousandths) of a histogram, in ticks: the
    /// upper bound of the bucket holding that rank, kept within [min, max].
    fn quantile(b: &SysStats, q: u64) -> u64 {
        let n = b.timed.get();
        if n == 0 {
            return 0;
        }
        let rank = (n * q).div_ceil(1000).max(1);
        let mut seen = 0u64;
        for (i, c) in b.hist.iter().enumerate().take(HIST_LEN) {
            seen += c.get() as u64;
            if seen >= rank {
                let (_, hi) = stats::bucket_bounds(i);
                return (hi - 1).clamp(b.min.get(), b.max.get());
            }
        }
        b.max.get()
    }

    fn text(&self, o: &mut Out) {
        let mut order = [0u16; SLOTS];
        let n = self.order(&mut order);
        let (fast, slow, errors, ticks) = self.totals();
        o.str("usertrap: pid ").num(raw::getpid() as u64).str(" (");
        command(o, false);
        o.str("), ").str(backend::name()).str(", ");
        match self.how {
            Exit::ExitGroup(s) | Exit::LastThread(s) => o.str("exit status ").num(s as u64),
            Exit::Signal(sig) => o.str("killed by ").str(signal_name(sig)),
            Exit::Exec => o.str("replaced by execve"),
            Exit::Traced => o.str("traced (PTRACE_TRACEME): not intercepted from then on"),
        };
        o.str("\n % time     seconds      calls     errors        avg        p50        p99        max  fast %  syscall\n");
        let total_ns = self.ns(ticks);
        for &nr in order.iter().take(n) {
            let nr = nr as usize;
            let (f, s) = self.calls(nr);
            let b = self.block(nr);
            let (tns, errs, avg, p50, p99, max) = match b {
                Some(b) if b.timed.get() != 0 => (
                    self.ns(b.total.get()),
                    b.errors.get(),
                    self.ns(b.total.get() / b.timed.get()),
                    self.ns(Self::quantile(b, 500)),
                    self.ns(Self::quantile(b, 990)),
                    self.ns(b.max.get()),
                ),
                Some(b) => (0, b.errors.get(), 0, 0, 0, 0),
                None => (0, 0, 0, 0, 0, 0),
            };
            o.fixed(if total_ns == 0 { 0 } else { tns * 10_000 / total_ns }, 2, 7)
                .fixed(tns / 1000, 6, 12)
                .pad_num(f + s, 11)
                .pad_num(errs, 11)
                .dur(avg, 11)
                .dur(p50, 11)
                .dur(p99, 11)
                .dur(max, 11)
                .fixed(if f + s == 0 { 0 } else { f * 1000 / (f + s) }, 1, 8)
                .str("  ");
            name(o, nr);
            o.str("\n");
        }
        o.fixed(if total_ns == 0 { 0 } else { 10_000 }, 2, 7)
            .fixed(total_ns / 1000, 6, 12)
            .pad_num(fast + slow, 11)
            .pad_num(errors, 11)
            .str("                                            ")
            .fixed(if fast + slow == 0 { 0 } else { fast * 1000 / (fast + slow) }, 1, 8)
            .str("  total\n");
        let mut first = true;
        registry::for_each_unpatched(|site| {
            if first {
                o.str("unpatched sites:\n");
                first = false;
            }
            o.str("  ").hex(site.key.wrapping_sub(5)).str("  ");
            name(o, site.nr as usize);
            o.str("  ").str(site.reason).str("\n");
        });
    }

    fn json(&self, o: &mut Out) {
        let mut order = [0u16; SLOTS];
        let n = self.order(&mut order);
        let (fast, slow, errors, ticks) = self.totals();
        o.str("{\"format\":\"usertrap-report\",\"version\":1,\"pid\":").num(raw::getpid() as u64);
        o.str(",\"ppid\":").num(raw::syscall(libc::SYS_getppid, 0, 0, 0, 0) as u64);
        o.str(",\"command\":\"");
        command(o, true);
        o.str("\",\"backend\":\"").str(backend::name());
        o.str("\",\"start_ns\":").num(stats::start_realtime_ns()).str(",\"end_ns\":").num(self.end_real_ns);
        o.str(",\"clock\":\"").str(if stats::uses_tsc() { "tsc" } else { "monotonic" });
        o.str("\",\"tsc_hz\":").num(if stats::uses_tsc() { self.hz } else { 0 });
        // SUD traps `int $0x80` too; the seccomp filter lets other arches by.
        o.str(",\"i386_calls\":\"").str(if backend::is_seccomp() { "not_seen" } else { "counted" }).str("\"");
        o.str(",\"exit\":{");
        match self.how {
            Exit::ExitGroup(s) => o.str("\"how\":\"exit_group\",\"status\":").num(s as u64),
            Exit::LastThread(s) => o.str("\"how\":\"exit\",\"status\":").num(s as u64),
            Exit::Signal(sig) => o
                .str("\"how\":\"signal\",\"signal\":")
                .num(sig as u64)
                .str(",\"name\":\"")
                .str(signal_name(sig))
                .str("\""),
            Exit::Exec => o.str("\"how\":\"exec\""),
            Exit::Traced => o.str("\"how\":\"traced\""),
        };
        o.str("},\"totals\":{\"calls\":").num(fast + slow).str(",\"errors\":").num(errors);
        o.str(",\"total_ns\":").num(self.ns(ticks)).str(",\"fast_calls\":").num(fast).str(",\"slow_calls\":").num(slow);
        o.str("},\"syscalls\":[");
        for (k, &nr) in order.iter().take(n).enumerate() {
            let nr = nr as usize;
            let (f, s) = self.calls(nr);
            if k > 0 {
                o.str(",");
            }
            o.str("{\"name\":\"");
            name(o, nr);
            match nr.checked_sub(I386_BASE) {
                Some(n) => o.str("\",\"nr\":").num(n as u64).str(",\"abi\":\"i386\""),
                None => o.str("\",\"nr\":").num(nr as u64),
            };
            o.str(",\"calls\":").num(f + s);
            let Some(b) = self.block(nr) else { continue };
            o.str(",\"errors\":").num(b.errors.get()).str(",\"errors_by_errno\":{");
            let mut first = true;
            for (e, c) in b.errnos.iter().enumerate() {
                if c.get() != 0 {
                    if !first {
                        o.str(",");
                    }
                    first = false;
                    o.str("\"");
                    errno_name(o, e);
                    o.str("\":").num(c.get() as u64);
                }
            }
            o.str("},\"total_ns\":").num(self.ns(b.total.get()));
            o.str(",\"min_ns\":").num(self.ns(b.min.get())).str(",\"max_ns\":").num(self.ns(b.max.get()));
            for (key, q) in [("p50_ns", 500), ("p90_ns", 900), ("p99_ns", 990), ("p999_ns", 999)] {
                o.str(",\"").str(key).str("\":").num(self.ns(Self::quantile(b, q)));
            }
            o.str(",\"fast_calls\":").num(f).str(",\"slow_calls\":").num(s).str(",\"histogram\":[");
            let mut first = true;
            for (i, c) in b.hist.iter().enumerate() {
                if c.get() != 0 {
                    if !first {
                        o.str(",");
                    }
                    first = false;
                    let (lo, hi) = stats::bucket_bounds(i);
                    o.str("[").num(self.ns(lo)).str(",").num(self.ns(hi)).str(",").num(c.get() as u64).str("]");
                }
            }
            o.str("]}");
        }
        o.str("]");
        let killed = KILLED_N.load(Ordering::Relaxed).min(KILLED_MAX);
        if killed != 0 {
            o.str(",\"killed_children\":[");
            for (k, slot) in KILLED.iter().take(killed).enumerate() {
                let v = slot.load(Ordering::Relaxed);
                if k > 0 {
                    o.str(",");
                }
                o.str("{\"pid\":").num(v >> 8).str(",\"signal\":").num(v & 0xff).str("}");
            }
            o.str("]");
        }
        o.str(",\"unpatched_sites\":[");
        let mut first = true;
        registry::for_each_unpatched(|site| {
            if !first {
                o.str(",");
            }
            first = false;
            o.str("{\"address\":\"")
                .hex(site.key.wrapping_sub(5))
                .str("\",\"nr\":")
                .num(site.nr as u64)
                .str(",\"name\":\"");
            name(o, site.nr as usize);
            o.str("\",\"reason\":\"").json_str(site.reason.as_bytes()).str("\"}");
        });
        o.str("]}\n");
    }
}

fn name(o: &mut Out, nr: usize) {
    if let Some(n) = nr.checked_sub(I386_BASE) {
        // `int $0x80`: i386 numbers, names and arguments.
        o.str("i386:");
        match syscall_names::name_i386(n as u64) {
            Some(name) => o.str(name),
            None => o.str("syscall_").num(n as u64),
        };
        return;
    }
    match syscall_names::name(nr as u64) {
        Some(n) if nr < MAX_NR => {
            o.str(n);
        }
        _ if nr >= MAX_NR => {
            o.str("other");
        }
        _ => {
            o.str("syscall_").num(nr as u64);
        }
    }
}

/// The process's name, /proc/self/comm.
fn command(o: &mut Out, json: bool) {
    let mut buf = [0u8; 64];
    let name = read_comm(&mut buf);
    if json {
        o.json_str(name);
    } else {
        o.bytes(name);
    }
}

/// /proc/self/comm into `buf`, without its newline (empty if unreadable).
fn read_comm(buf: &mut [u8; 64]) -> &[u8] {
    let path = b"/proc/self/comm\0";
    let fd = raw::syscall(
        libc::SYS_openat,
        libc::AT_FDCWD as u64,
        path.as_ptr() as u64,
        (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
        0,
    );
    if fd < 0 {
        // No /proc (a chroot): the kernel's name through prctl.
        raw::syscall(libc::SYS_prctl, libc::PR_GET_NAME as u64, buf.as_mut_ptr() as u64, 0, 0);
        let n = buf.iter().take(16).position(|&b| b == 0).unwrap_or(16);
        return buf.get(..n).unwrap_or(&[]);
    }
    let n = raw::syscall(libc::SYS_read, fd as u64, buf.as_mut_ptr() as u64, buf.len() as u64, 0).max(0) as usize;
    close(fd as i32);
    let name = buf.get(..n).unwrap_or(&[]);
    name.strip_suffix(b"\n").unwrap_or(name)
}

fn close(fd: i32) {
    raw::syscall(libc::SYS_close, fd as u64, 0, 0, 0);
}

/// Expand %p (pid), %t (image start, ns since the epoch) and %% in `t`.
fn expand(t: &[u8], out: &mut [u8]) -> usize {
    let mut w = Buf::new(out);
    let mut it = t.iter().peekable();
    while let Some(&c) = it.next() {
        if c == b'%' {
            match it.peek() {
                Some(b'p') => {
                    it.next();
                    w.num(raw::getpid() as u64);
                }
                Some(b't') => {
                    it.next();
                    w.num(stats::start_realtime_ns());
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

fn signal_name(sig: i32) -> &'static str {
    const NAMES: [&str; 32] = [
        "signal 0",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    NAMES.get(sig as usize).copied().unwrap_or("a real-time signal")
}

fn errno_name(o: &mut Out, e: usize) {
    match log::errno_name(e as i64) {
        "" => o.str("E_OTHER"),
        n => o.str(n),
    };
}

/// The report being built: a private mapping that grows (mremap) as
/// needed; no allocator. If it cannot grow, the report is dropped whole
/// (`data` is None) rather than delivered cut short.
struct Out {
    base: u64,
    cap: usize,
    len: usize,
    oom: bool,
}

const OUT_START: usize = 64 * 1024;

impl Drop for Out {
    fn drop(&mut self) {
        if self.base != 0 {
            raw::munmap(self.base, self.cap);
        }
    }
}

impl Out {
    fn new() -> Out {
        match raw::mmap_anon(OUT_START, libc::PROT_READ | libc::PROT_WRITE) {
            Ok(base) => Out { base, cap: OUT_START, len: 0, oom: false },
            Err(_) => Out { base: 0, cap: 0, len: 0, oom: true },
        }
    }

    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        if self.oom {
            return self;
        }
        if self.len + b.len() > self.cap {
            let want = (self.cap * 2).max((self.len + b.len() + 4095) & !4095);
            let r = raw::syscall6(
                libc::SYS_mremap,
                [self.base, self.cap as u64, want as u64, libc::MREMAP_MAYMOVE as u64, 0, 0],
            );
            if (-4095..0).contains(&r) {
                self.oom = true;
                return self;
            }
            self.base = r as u64;
            self.cap = want;
        }
        // SAFETY: [base, base + cap) is our own read-write mapping and
        // len + b.len() <= cap; `b` is a live slice elsewhere.
        unsafe { core::ptr::copy_nonoverlapping(b.as_ptr(), (self.base as *mut u8).add(self.len), b.len()) };
        self.len += b.len();
        self
    }

    fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// The whole report, or None if memory ran out while building it.
    fn data(&self) -> Option<&[u8]> {
        if self.oom {
            return None;
        }
        // SAFETY: the first `len` bytes of our mapping, written above; the
        // mapping lives until `self` is dropped.
        Some(unsafe { core::slice::from_raw_parts(self.base as *const u8, self.len) })
    }

    fn num(&mut self, v: u64) -> &mut Self {
        let mut d = [0u8; 20];
        let n = decimal(v, &mut d);
        self.bytes(d.get(..n).unwrap_or(&[]))
    }

    fn pad(&mut self, len: usize, width: usize) -> &mut Self {
        for _ in len..width {
            self.bytes(b" ");
        }
        self
    }

    fn pad_num(&mut self, v: u64, width: usize) -> &mut Self {
        let mut d = [0u8; 20];
        let n = decimal(v, &mut d);
        self.pad(n, width).num(v)
    }

    /// `v` with `dec` implied decimals (v = 1234, dec = 2 -> "12.34"),
    /// right-aligned in `width`.
    fn fixed(&mut self, v: u64, dec: u32, width: usize) -> &mut Self {
        let p = 10u64.pow(dec);
        let (int, frac) = (v / p, v % p);
        let mut d = [0u8; 20];
        let n = decimal(int, &mut d);
        self.pad(n + 1 + dec as usize, width).num(int).bytes(b".");
        let mut f = [0u8; 20];
        let m = decimal(frac, &mut f);
        for _ in m..dec as usize {
            self.bytes(b"0");
        }
        self.bytes(f.get(..m).unwrap_or(&[]))
    }

    /// A duration: "123ns", "12.34us", "1.23ms", "1.23s", right-aligned.
    fn dur(&mut self, ns: u64, width: usize) -> &mut Self {
        let (v, unit) = if ns < 1000 {
            (ns * 100, "ns")
        } else if ns < 1_000_000 {
            (ns / 10, "us")
        } else if ns < 1_000_000_000 {
            (ns / 10_000, "ms")
        } else {
            (ns / 10_000_000, "s")
        };
        if unit == "ns" {
            let mut d = [0u8; 20];
            let n = decimal(ns, &mut d);
            return self.pad(n + 2, width).num(ns).str("ns");
        }
        self.fixed(v, 2, width - unit.len()).str(unit)
    }

    fn hex(&mut self, v: u64) -> &mut Self {
        self.bytes(b"0x");
        let mut started = false;
        for shift in (0..16).rev() {
            let d = ((v >> (shift * 4)) & 0xf) as u8;
            if d != 0 || started || shift == 0 {
                started = true;
                self.bytes(&[if d < 10 { b'0' + d } else { b'a' + d - 10 }]);
            }
        }
        self
    }

    /// A JSON string's contents, escaped.
    fn json_str(&mut self, s: &[u8]) -> &mut Self {
        for &c in s {
            match c {
                b'"' => self.bytes(b"\\\""),
                b'\\' => self.bytes(b"\\\\"),
                0..=0x1f | 0x7f.. => {
                    let hexd = |n: u8| if n < 10 { b'0' + n } else { b'a' + n - 10 };
                    // Non-ASCII bytes of a name are replaced, keeping the JSON valid UTF-8.
                    if c >= 0x7f {
                        self.bytes(b"?")
                    } else {
                        self.bytes(&[b'\\', b'u', b'0', b'0', hexd(c >> 4), hexd(c & 15)])
                    }
                }
                _ => self.bytes(&[c]),
            };
        }
        self
    }
}
