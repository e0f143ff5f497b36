//! The report a process writes when it ends: its figures merged over every
//! thread, as text (like `strace -c`, with percentiles) or JSON
//! (docs/report-schema.md), to USERTRAP_OUTPUT or stderr; and the one-line
//! USERTRAP_SUMMARY. Runs in trap context (the exit_group trap, a fatal
//! signal's handler): memory comes from mmap, output goes out through a fixed
//! buffer, nothing allocates or locks.

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::backend;
use crate::config::{Format, Summary};
use crate::patch::registry;
use crate::sigsafe::log::{decimal, Buf, Line};
use crate::sigsafe::raw;
use crate::sigsafe::stats::{self, SysStats, HIST_LEN, MAX_ERRNO, MAX_NR};
use crate::syscall_names;

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
}

struct SettingsCell(core::cell::UnsafeCell<Settings>);
// SAFETY: written once by the constructor before any trap is armed, then read.
unsafe impl Sync for SettingsCell {}
static SETTINGS: SettingsCell = SettingsCell(core::cell::UnsafeCell::new(Settings {
    output: [0; 4096],
    format: Format::Text,
    summary: Summary::Off,
    summary_path: [0; 4096],
}));
static WRITTEN: AtomicBool = AtomicBool::new(false);
/// Set when the report is off (USERTRAP_OUTPUT names nothing to write).
static MODE: AtomicU8 = AtomicU8::new(0);

fn settings() -> &'static Settings {
    // SAFETY: read-only after the constructor.
    unsafe { &*SETTINGS.0.get() }
}

/// Constructor only: where and how to report. `output` is an absolute path
/// template (or empty: stderr).
pub fn configure(output: &[u8], format: Format, summary: Summary<'static>) {
    // SAFETY: single-threaded start-up, before any reader exists.
    let s = unsafe { &mut *SETTINGS.0.get() };
    copy_cstr(&mut s.output, output);
    s.format = format;
    s.summary = summary;
    if let Summary::File(p) = summary {
        copy_cstr(&mut s.summary_path, p);
    }
    MODE.store(1, Ordering::Relaxed);
}

fn copy_cstr(dst: &mut [u8; 4096], src: &[u8]) {
    let n = src.len().min(dst.len() - 1);
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

/// A new process (fork child) writes its own report.
pub fn after_fork_in_child() {
    WRITTEN.store(false, Ordering::Relaxed);
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
    if MODE.load(Ordering::Relaxed) == 0 || crate::sigsafe::process::report_forbidden() {
        return;
    }
    // A vfork child shares its parent's memory: its figures are the parent's,
    // and marking the report written would silence the parent's.
    if crate::sigsafe::thread::current_unchecked().is_some_and(|a| a.vfork_child.get()) {
        return;
    }
    if WRITTEN.swap(true, Ordering::Relaxed) {
        return;
    }
    let len = (MAX_NR + 1) * core::mem::size_of::<SysStats>();
    let Ok(base) = raw::mmap_anon(len, libc::PROT_READ | libc::PROT_WRITE) else { return };
    // SAFETY: a fresh zeroed mapping of MAX_NR + 1 SysStats (all Cells: zero
    // is a valid value), ours until the munmap below.
    let merged = unsafe { core::slice::from_raw_parts(base as *const SysStats, MAX_NR + 1) };
    let used = stats::merge_into(merged);
    let hz = stats::ticks_per_second();
    let r = Report { merged, used, hz, how, end_real_ns: stats::clock_ns(libc::CLOCK_REALTIME) };
    let s = settings();
    if !matches!(s.summary, Summary::Off) {
        r.summary(s);
    }
    r.write(s);
    raw::munmap(base, len);
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
        for nr in 0..=MAX_NR {
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
            .num(crate::sigsafe::fault::site_faults())
            .str(" site faults");
        match s.summary {
            Summary::Stderr => line.emit(),
            Summary::File(_) => {
                if let Some(fd) = open_for_write(cstr(&s.summary_path), false) {
                    line.emit_to(fd);
                    close(fd);
                }
            }
            Summary::Off => {}
        }
    }

    fn write(&self, s: &Settings) {
        let template = cstr(&s.output);
        let fd = if template.is_empty() {
            2
        } else {
            let mut path = [0u8; 4200];
            let n = expand(template, &mut path);
            match open_for_write(path.get(..n).unwrap_or(&[]), true) {
                Some(fd) => fd,
                None => {
                    Line::new().str("cannot write the report to ").bytes(path.get(..n).unwrap_or(&[])).emit();
                    return;
                }
            }
        };
        let mut out = Out::new(fd);
        match s.format {
            Format::Text => self.text(&mut out),
            Format::Json => self.json(&mut out),
        }
        out.flush();
        if fd != 2 {
            close(fd);
        }
    }

    /// Syscall numbers with calls, by total time, largest first.
    fn order(&self, buf: &mut [u16; MAX_NR + 1]) -> usize {
        let mut n = 0;
        for nr in 0..=MAX_NR {
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
        let mut order = [0u16; MAX_NR + 1];
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
        let mut order = [0u16; MAX_NR + 1];
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
        o.str(",\"exit\":{");
        match self.how {
            Exit::ExitGroup(s) => o.str("\"how\":\"exit_group\",\"status\":").num(s as u64),
            Exit::LastThread(s) => o.str("\"how\":\"exit\",\"status\":").num(s as u64),
            Exit::Signal(sig) => o.str("\"how\":\"signal\",\"signal\":").num(sig as u64).str(",\"name\":\"").str(signal_name(sig)).str("\""),
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
            o.str("\",\"nr\":").num(nr as u64).str(",\"calls\":").num(f + s);
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
        o.str("],\"unpatched_sites\":[");
        let mut first = true;
        registry::for_each_unpatched(|site| {
            if !first {
                o.str(",");
            }
            first = false;
            o.str("{\"address\":\"").hex(site.key.wrapping_sub(5)).str("\",\"nr\":").num(site.nr as u64).str(",\"name\":\"");
            name(o, site.nr as usize);
            o.str("\",\"reason\":\"").json_str(site.reason.as_bytes()).str("\"}");
        });
        o.str("]}\n");
    }
}

fn name(o: &mut Out, nr: usize) {
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
    let path = b"/proc/self/comm\0";
    let fd = raw::syscall(libc::SYS_openat, libc::AT_FDCWD as u64, path.as_ptr() as u64, (libc::O_RDONLY | libc::O_CLOEXEC) as u64, 0);
    if fd < 0 {
        return;
    }
    let n = raw::syscall(libc::SYS_read, fd as u64, buf.as_mut_ptr() as u64, buf.len() as u64, 0).max(0) as usize;
    close(fd as i32);
    let name = buf.get(..n).unwrap_or(&[]);
    let name = name.strip_suffix(b"\n").unwrap_or(name);
    if json {
        o.json_str(name);
    } else {
        o.bytes(name);
    }
}

fn open_for_write(path: &[u8], truncate: bool) -> Option<i32> {
    let mut p = [0u8; 4200];
    let n = path.len().min(p.len() - 1);
    p.get_mut(..n)?.copy_from_slice(path.get(..n)?);
    let mode = if truncate { libc::O_TRUNC } else { libc::O_APPEND };
    let flags = (libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC | mode) as u64;
    let fd = raw::syscall(libc::SYS_openat, libc::AT_FDCWD as u64, p.as_ptr() as u64, flags, 0o644);
    (fd >= 0).then_some(fd as i32)
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
        "signal 0", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL",
        "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT",
        "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF",
        "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
    ];
    NAMES.get(sig as usize).copied().unwrap_or("a real-time signal")
}

fn errno_name(o: &mut Out, e: usize) {
    const NAMES: [&str; MAX_ERRNO] = [
        "", "EPERM", "ENOENT", "ESRCH", "EINTR", "EIO", "ENXIO", "E2BIG", "ENOEXEC", "EBADF", "ECHILD",
        "EAGAIN", "ENOMEM", "EACCES", "EFAULT", "ENOTBLK", "EBUSY", "EEXIST", "EXDEV", "ENODEV", "ENOTDIR",
        "EISDIR", "EINVAL", "ENFILE", "EMFILE", "ENOTTY", "ETXTBSY", "EFBIG", "ENOSPC", "ESPIPE", "EROFS",
        "EMLINK", "EPIPE", "EDOM", "ERANGE", "EDEADLK", "ENAMETOOLONG", "ENOLCK", "ENOSYS", "ENOTEMPTY",
        "ELOOP", "", "ENOMSG", "EIDRM", "ECHRNG", "EL2NSYNC", "EL3HLT", "EL3RST", "ELNRNG", "EUNATCH",
        "ENOCSI", "EL2HLT", "EBADE", "EBADR", "EXFULL", "ENOANO", "EBADRQC", "EBADSLT", "", "EBFONT",
        "ENOSTR", "ENODATA", "ETIME", "ENOSR", "ENONET", "ENOPKG", "EREMOTE", "ENOLINK", "EADV", "ESRMNT",
        "ECOMM", "EPROTO", "EMULTIHOP", "EDOTDOT", "EBADMSG", "EOVERFLOW", "ENOTUNIQ", "EBADFD", "EREMCHG",
        "ELIBACC", "ELIBBAD", "ELIBSCN", "ELIBMAX", "ELIBEXEC", "EILSEQ", "ERESTART", "ESTRPIPE", "EUSERS",
        "ENOTSOCK", "EDESTADDRREQ", "EMSGSIZE", "EPROTOTYPE", "ENOPROTOOPT", "EPROTONOSUPPORT",
        "ESOCKTNOSUPPORT", "EOPNOTSUPP", "EPFNOSUPPORT", "EAFNOSUPPORT", "EADDRINUSE", "EADDRNOTAVAIL",
        "ENETDOWN", "ENETUNREACH", "ENETRESET", "ECONNABORTED", "ECONNRESET", "ENOBUFS", "EISCONN", "ENOTCONN",
        "ESHUTDOWN", "ETOOMANYREFS", "ETIMEDOUT", "ECONNREFUSED", "EHOSTDOWN", "EHOSTUNREACH", "EALREADY",
        "EINPROGRESS", "ESTALE", "EUCLEAN", "ENOTNAM", "ENAVAIL", "EISNAM", "EREMOTEIO", "EDQUOT", "ENOMEDIUM",
        "EMEDIUMTYPE", "ECANCELED", "ENOKEY", "EKEYEXPIRED", "EKEYREVOKED", "EKEYREJECTED", "EOWNERDEAD",
        "ENOTRECOVERABLE", "ERFKILL", "EHWPOISON",
    ];
    match NAMES.get(e) {
        Some(n) if !n.is_empty() => {
            o.str(n);
        }
        _ => {
            o.str("E_OTHER");
        }
    }
}

/// Buffered output to a descriptor, without allocation.
struct Out {
    fd: i32,
    buf: [u8; 8192],
    len: usize,
}

impl Out {
    fn new(fd: i32) -> Out {
        Out { fd, buf: [0; 8192], len: 0 }
    }

    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        for &c in b {
            if self.len == self.buf.len() {
                self.flush();
            }
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = c;
                self.len += 1;
            }
        }
        self
    }

    fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    fn flush(&mut self) {
        raw::write_all(self.fd, self.buf.get(..self.len).unwrap_or(&[]));
        self.len = 0;
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
