//! Start-up, in this order and nothing else: map the gate, read the settings,
//! set up the main thread's area and signal state, install the handlers,
//! remember what exec must carry, arm the backend. Runs in the constructor,
//! single-threaded as far as the library knows, before the program's main.
//! Any failure ends the process with one line on stderr and status 125
//! (the program never runs half-monitored).
//!
//! Never: leave the program running half-monitored.

use core::sync::atomic::Ordering;

use crate::emulate::exec_keep::{self, Carried};
use crate::emulate::{exec, signals};
use crate::measure::phases::{self, Mark};
use crate::measure::{report, stats};
use crate::patch;
use crate::rt::arch::{self, GATE_ADDR, GATE_LEN};
use crate::rt::log::{Buf, Line};
use crate::rt::{raw, thread};
use crate::start::config::{Config, ConfigError, KNOWN};
use crate::start::handoff::Handoff;
use crate::trap::backend::{self, sud};
use crate::trap::{fault, sigsys};

/// The launcher's file name, installed beside the library.
const LAUNCHER_NAME: &[u8] = b"usertrap-launcher";
/// Exit status when the library refuses to start the program.
const EXIT_CONFIG: u64 = 125;
const HWCAP2_FSGSBASE: u64 = 1 << 1;

/// Who is starting the interposer, and what that changes.
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "launcher"), allow(dead_code))] // the launcher's roles
pub enum Role {
    /// libusertrap.so's constructor (LD_PRELOAD), possibly in an image the
    /// launcher started (then `Startup::handoff` is set).
    Preload,
    /// The launcher, before it starts a dynamically linked program: it only
    /// serves the loader's syscalls until the library takes over (no
    /// patching of trapped sites, only of the loader's before it runs; no
    /// handlers on other signals: the library installs its own).
    LauncherBridge,
    /// The launcher, before it starts a static program: it is the
    /// interposer for the program's whole life.
    LauncherFull,
}

/// What the caller knows that the interposer cannot find out by itself.
pub struct Startup<'a> {
    pub role: Role,
    /// The environment (NULL-terminated array of C strings).
    pub envp: *const *const u8,
    /// An entry of `envp` that is ours and not the program's (the launcher's
    /// control entry), or null.
    pub skip_env: *const u8,
    /// The auxiliary vector's AT_HWCAP2.
    pub hwcap2: u64,
    /// Absolute path of libusertrap.so (LD_PRELOAD of exec'd programs).
    pub lib_path: &'a [u8],
    /// Absolute path of the launcher (what exec runs).
    pub launcher_path: &'a [u8],
    /// The program's executable (/proc/self/exe natively); empty if the
    /// kernel's /proc/self/exe is right.
    pub exe_path: &'a [u8],
    /// The process already carries our seccomp filter.
    pub seccomp_armed: bool,
    /// /proc/self/status says the process runs under a seccomp filter
    /// (Seccomp: 2), ours or not (false if not read).
    pub seccomp_filtered: bool,
    /// The launcher's record, in an image it started.
    pub handoff: Option<&'static Handoff>,
    /// The signals with their default disposition, if known (bit n-1 for
    /// signal n; see [`default_dispositions`]): saves asking the kernel.
    pub default_signals: Option<u64>,
    /// Where libc's ELF header is mapped (the loader's `dli_fbase`), 0 if
    /// unknown (the launcher: no libc): pre-patching's libc.
    pub libc_header: u64,
    /// The interposer's own executable segment, [start, end) page-aligned,
    /// if known from the loader (else the patcher reads the maps for it).
    pub own_text: (u64, u64),
    /// Where the loader's ELF header is mapped (AT_BASE), 0 if unknown or
    /// none: pre-patching's loader (carried to the launcher of an exec'd image).
    pub loader_header: u64,
    /// The launcher and the library kept by descriptor by the exec'ing
    /// image (emulate::exec_keep), as the launcher found them; the library
    /// reads them itself from the entries in front (`kept`).
    pub kept: Option<Carried<'a>>,
}

impl Startup<'_> {
    /// The environment's entries as byte strings (without their NUL).
    fn env_entries(&self) -> impl Iterator<Item = &'static [u8]> {
        let mut p = self.envp;
        let skip = self.skip_env;
        core::iter::from_fn(move || loop {
            if p.is_null() {
                return None;
            }
            // SAFETY: `envp` is the process's NULL-terminated array of
            // NUL-terminated strings (glibc's environ or the initial stack's),
            // unchanged while the interposer starts; we stop at the NULL entry.
            unsafe {
                let s = *p;
                if s.is_null() {
                    return None;
                }
                p = p.add(1);
                if s != skip {
                    return Some(core::ffi::CStr::from_ptr(s.cast()).to_bytes());
                }
            }
        })
    }
}

/// True when a gate already exists at GATE_ADDR (the launcher's image has
/// one; an image it started inherits it): syscalls go through it from the
/// first one, and ours replaces it by an atomic remap.
static GATE_PRESENT: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// A preloaded image's constructor, before its first syscall: no gate yet.
/// Written (its value already) rather than first read: the first touch of
/// its page of .bss is then one page fault, where a read (maps the zero
/// page) and the write in `start` (copies it) are two.
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // the constructor's
pub fn no_gate_yet() {
    GATE_PRESENT.store(false, Ordering::Relaxed);
}

pub fn start(s: &Startup<'_>) {
    let launched = s.handoff.is_some();
    GATE_PRESENT.store(s.role != Role::Preload || launched, Ordering::Relaxed);
    map_gate();
    let config = read_config(s);
    // The phases are timed with this clock.
    stats::start_clock(config.tsc_hz != 0);
    phases::mark(Mark::Begin);
    if let Some(h) = s.handoff {
        phases::launcher_marks(h.launcher_marks);
    }
    // An earlier image's seccomp filter decides: it traps whatever we choose.
    let inherited_filter = s.seccomp_armed || s.handoff.is_some_and(|h| h.seccomp_armed != 0);
    let chosen = match config.backend {
        _ if inherited_filter => backend::Backend::Seccomp,
        Some(b) => b,
        None if sud::available() => backend::Backend::Sud,
        None => backend::Backend::Seccomp,
    };
    if s.seccomp_filtered && !inherited_filter && !launched && s.role == Role::Preload {
        if let Some(call) = refused_by_earlier_filter(chosen) {
            stand_aside_for_earlier_filter(call);
            return;
        }
    }
    // The gate's SUD slot is set once the backend is known: in place in a
    // gate we just mapped (no trap yet), else in the one swap that puts our
    // gate in place of the one that was there (the launcher's: its image
    // ran our syscalls so far, with the same code at the same offsets).
    if launched || s.role != Role::Preload {
        swap_in_gate(chosen == backend::Backend::Sud);
    } else if chosen == backend::Backend::Sud {
        set_sud_slot_in_place();
    }
    let bridge = s.role == Role::LauncherBridge;
    thread::set_have_fsgsbase(s.hwcap2 & HWCAP2_FSGSBASE != 0);
    thread::SIGSTACK_SIZE.store(config.sigstack_kib * 1024, Ordering::Relaxed);
    stats::set_timing(config.timing);
    crate::rt::figures::set_per_thread(config.threads);
    stats::set_known_hz(config.tsc_hz);
    configure_report(&config);
    report::trace::configure(config.trace);
    let exe = if let Some(h) = s.handoff { h.exe_path() } else { s.exe_path };
    if !exe.is_empty() {
        exec::set_exe_path(exe);
    }
    phases::enable(config.phases);
    phases::mark(Mark::Settings);

    let area = match thread::allocate() {
        Some(a) => a,
        None => fail_line("cannot allocate the main thread's signal stack"),
    };
    thread::install(area);
    phases::mark(Mark::ThreadArea);
    signals::take_over_mask(area, s.handoff.map_or(0, |h| h.blocked_owned));
    signals::take_over_altstack(area, launched);
    phases::mark(Mark::MaskStack);
    if !bridge {
        signals::watch_fatal_signals(s.default_signals);
    }
    phases::mark(Mark::FatalSignals);
    if let Some(h) = s.handoff.filter(|h| h.loader_site_count != 0) {
        // The loader's sites the launcher patched: ours from now on (before
        // our fault handlers replace the launcher's, which know them).
        patch::install::adopt_loader_sites(&h.registry, &h.loader_regions.map(|[at, len]| (at, len)));
    }
    // In a launched image the kernel holds the launcher's handlers.
    let view = |sig| s.handoff.and_then(|h| h.owned_action(sig));
    let ours = [
        (signals::SIGSYS, sigsys::handler_action(), view(signals::SIGSYS)),
        (signals::SIGSEGV, fault::handler_action(), view(signals::SIGSEGV)),
        (signals::SIGILL, fault::handler_action(), view(signals::SIGILL)),
        (signals::SIGBUS, fault::handler_action(), view(signals::SIGBUS)),
    ];
    // SAFETY: the library's own handlers (handler_action: our_action).
    if let Err((sig, e)) = unsafe { signals::take_over(&ours) } {
        Line::new().str("cannot install the handler for signal ").num(sig as u64).str(": errno ").num(e as u64).emit();
        exit(EXIT_CONFIG);
    }
    phases::mark(Mark::Handlers);
    record_exec_env(s);
    phases::mark(Mark::ExecEnv);
    if !bridge {
        // Under `usertrap stat`: this image exists (the library greets for
        // an image the launcher bridged).
        report::greet();
    }
    phases::mark(Mark::Greet);
    if config.patch && !bridge {
        patch::install::note_own_text(s.own_text.0, s.own_text.1);
        enable_patching();
    }
    if config.patch && bridge && arch::trampoline_layout_ok() {
        patch::install::LOADER_PATCHING.store(true, Ordering::Relaxed);
    }
    if s.handoff.is_some_and(|h| h.loader_site_count != 0) {
        patch::install::open_fast_path();
    }
    phases::mark(Mark::Patching);
    // The launcher's bridge applies the loader's carried sites (launch::patch_loader).
    if config.patch && config.prepatch && (s.libc_header != 0 || bridge) {
        patch::install::prepatch::ENABLED.store(true, Ordering::Relaxed);
        if s.libc_header != 0 {
            patch::install::prepatch::note_libc(s.libc_header);
        }
        if s.loader_header != 0 {
            patch::install::prepatch::note_loader(s.loader_header);
        }
        if let Some(sites) = carried_sites(s) {
            patch::install::prepatch::keep(sites);
        }
        // The bridge reads it when the loader maps libc (install::await_libc).
        if s.libc_header != 0 || bridge {
            patch::install::sitecache::configure(config.site_cache);
        }
    }
    phases::mark(Mark::Prepatch);
    if inherited_filter {
        // The filter of an earlier image is still installed (it survives
        // exec and cannot be removed); a second one would only stack.
        backend::assume_armed(backend::Backend::Seccomp);
        phases::mark(Mark::Armed);
        return;
    }
    if let Err(e) = backend::arm(chosen) {
        let mut l = Line::new();
        l.str("USERTRAP_BACKEND=")
            .str(chosen.name())
            .str(" cannot be armed: ")
            .str(e.what)
            .str(" failed with errno ")
            .num(e.errno as u64);
        if !e.hint.is_empty() {
            l.str(" (").str(e.hint).str(")");
        }
        l.emit();
        exit(EXIT_CONFIG);
    }
    phases::mark(Mark::Armed);
}

/// What a seccomp filter installed before usertrap started (by whoever
/// started the program: a sandbox, or the program itself before an exec)
/// refuses of what usertrap needs before anything is armed: installing its
/// handlers (rt_sigaction, asked with a query here) and, for `sud`, the
/// prctl that arms it (asked with PR_SYS_DISPATCH_OFF, which changes
/// nothing). A filter that kills for these kills here, as it would at the
/// real calls.
fn refused_by_earlier_filter(chosen: backend::Backend) -> Option<&'static str> {
    let mut old = raw::KernelSigaction::default();
    // SAFETY: a query; nothing is installed.
    if unsafe { raw::rt_sigaction(libc::SIGSYS, None, Some(&mut old)) }.is_err() {
        return Some("rt_sigaction");
    }
    if chosen == backend::Backend::Sud {
        const PR_SET_SYSCALL_USER_DISPATCH: u64 = 59;
        // SAFETY: turns off what is off (this image has not armed it).
        let r = unsafe { raw::syscall6(raw::SYS_prctl, [PR_SET_SYSCALL_USER_DISPATCH, 0, 0, 0, 0, 0]) };
        if r < 0 {
            return Some("prctl(PR_SET_SYSCALL_USER_DISPATCH)");
        }
    }
    None
}

/// Nothing is armed yet and nothing of the program's state changed: the
/// program runs as natively, without usertrap, and is told so (rather than
/// refused: natively it runs). The gate goes too.
fn stand_aside_for_earlier_filter(call: &str) {
    Line::new()
        .str("a seccomp filter installed before usertrap started refuses ")
        .str(call)
        .str(", which usertrap needs: the program runs without usertrap (not monitored)")
        .emit();
    // SAFETY: our gate, mapped by map_gate just before; nothing runs
    // through it any more (we return), and this call not either: no trap
    // is armed (the filter is not ours).
    unsafe { direct_syscall(libc::SYS_munmap, [GATE_ADDR, GATE_LEN, 0, 0, 0, 0]) };
    GATE_PRESENT.store(false, Ordering::Relaxed);
}

/// The exec'ing library's list of sites: only among the entries it put in
/// front of the environment (a program cannot pass one of its own).
fn carried_sites(s: &Startup<'_>) -> Option<&'static [u8]> {
    let leading = s.handoff?.env_leading as usize;
    s.env_entries().take(leading).find_map(|e| e.strip_prefix(patch::install::prepatch::ENTRY))
}

/// The exec'ing library's kept descriptors: only among the entries it put
/// in front of the environment (the launcher's, or as the hand-off counts them).
fn kept<'a>(s: &Startup<'a>) -> Option<Carried<'a>> {
    if s.kept.is_some() {
        return s.kept;
    }
    let leading = s.handoff?.env_leading as usize;
    s.env_entries().take(leading).find_map(|e| exec_keep::parse(e.strip_prefix(exec_keep::ENTRY)?))
}

/// Patching is on; what it needs (membarrier, the decoder's tables) is set
/// up at the first patch (install::prepared), not here.
fn enable_patching() {
    if !arch::trampoline_layout_ok() {
        fail_line("internal error: the trampoline template is not encoded as expected");
    }
    patch::install::ENABLED.store(true, Ordering::Relaxed);
}

/// `path` made absolute against the current directory (the program may
/// change directory before it ends).
/// The report's settings, the output path made absolute: apart from
/// `start`, so the path's page of stack is not under every deeper call of
/// start-up (each page of stack a process reaches is a page fault).
#[inline(never)]
fn configure_report(config: &Config) {
    let mut output = [0u8; 4096];
    let n = absolute_into(config.output, &mut output);
    // The path alone, not the buffer's zeros: copying those would touch
    // a second page of the settings.
    report::configure(output.get(..n).unwrap_or(&[]), config.format, config.summary, config.tmpdir, config.collect);
}

/// `path` made absolute against the current directory, into `out`; its
/// length. Works before the gate exists (the constructor's first steps).
pub fn absolute_into(path: &[u8], out: &mut [u8; 4096]) -> usize {
    // The directory is read straight into `out`: no second buffer of a
    // page on the stack (each page of a frame is a page fault at start).
    let cwd = if !path.is_empty() && path.first() != Some(&b'/') { getcwd(out) } else { 0 };
    let mut w = Buf { buf: out, len: cwd };
    if cwd > 0 {
        w.put(b"/");
    }
    w.put(path);
    w.len
}

/// The program runs on valgrind's synthetic CPU: its code (ours too) is
/// translated, and valgrind makes every syscall for it from valgrind's own
/// code, so a trap here would never fire. Interposing is for the usertrap
/// around valgrind, if any: when valgrind's tool runs under the launcher (its
/// gate is at GATE_ADDR), the program's syscalls are counted in that report
/// and nothing needs saying; otherwise say once that they are not seen.
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // the constructor's
pub fn stand_aside_under_valgrind() {
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64;
    // SAFETY: NOREPLACE: nothing mapped is touched.
    let r = unsafe { bootstrap_syscall(libc::SYS_mmap, [GATE_ADDR, 4096, libc::PROT_NONE as u64, flags, u64::MAX, 0]) };
    if r >= 0 {
        // SAFETY: the probe page just mapped, used by nothing.
        unsafe { bootstrap_syscall(libc::SYS_munmap, [r as u64, 4096, 0, 0, 0, 0]) };
    }
    if r as u64 == GATE_ADDR {
        boot_write(2, b"usertrap: running under valgrind, which makes the program's syscalls itself: not monitored\n");
    }
}

/// The process is traced, from its first instruction, by a process that
/// runs under usertrap (its gate is mapped there): a program of the tree
/// traces it (PTRACE_TRACEME and exec, or a debugger measured by
/// `usertrap stat`). The tracer must see what a native run does, without
/// our traps: the image is not intercepted and says so once. A tracer that
/// does not run under usertrap (gdb started by hand with gdb/usertrap.gdb)
/// gets the program intercepted, as asked. True: stand aside.
/// `status`: this process's /proc/self/status (read_status).
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // the constructor's
pub fn stand_aside_when_traced_by_usertrap(status: &[u8]) -> bool {
    const KEY: &[u8] = b"\nTracerPid:\t";
    let Some(at) = status.windows(KEY.len()).position(|w| w == KEY) else { return false };
    let tracer = status
        .get(at + KEY.len()..)
        .unwrap_or(&[])
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |v, &d| v * 10 + (d - b'0') as u64);
    if tracer == 0 {
        return false;
    }
    let mut path = [0u8; 40];
    Buf::new(&mut path).put(b"/proc/").num(tracer).put(b"/maps\0");
    if !maps_have_gate(&path) {
        return false;
    }
    let mut line = [0u8; 200];
    let mut w = Buf::new(&mut line);
    w.put(b"usertrap: pid ")
        // SAFETY: no arguments.
        .num(unsafe { bootstrap_syscall(libc::SYS_getpid, [0; 6]) } as u64)
        .put(b" is traced by pid ")
        .num(tracer)
        .put(b", which runs under usertrap: not intercepted (the tracer sees it as natively)\n");
    let len = w.len;
    boot_write(2, line.get(..len).unwrap_or_default());
    true
}

/// This process's /proc/self/status, read into `buf` before the gate exists.
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // the constructor's
pub fn read_status(buf: &mut [u8; 4096]) -> &[u8] {
    let n = read_file(b"/proc/self/status\0", buf);
    buf.get(..n).unwrap_or(&[])
}

/// The signals that have their default disposition, from `status` (a
/// /proc/self/status: neither in SigIgn nor in SigCgt), bit n-1 for signal
/// n; None if either line is missing or malformed.
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // the constructor's
pub fn default_dispositions(status: &[u8]) -> Option<u64> {
    let ignored = status_hex(status, b"\nSigIgn:\t")?;
    let caught = status_hex(status, b"\nSigCgt:\t")?;
    Some(!(ignored | caught))
}

/// Whether `status` (/proc/self/status) says a seccomp filter is in force.
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // the constructor's
pub fn under_seccomp_filter(status: &[u8]) -> bool {
    const KEY: &[u8] = b"\nSeccomp:\t2\n";
    status.windows(KEY.len()).any(|w| w == KEY)
}

/// The 16 hex digits after `key` in `status`, as a number.
fn status_hex(status: &[u8], key: &[u8]) -> Option<u64> {
    let at = status.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = status.get(at..at + 16)?;
    if status.get(at + 16) != Some(&b'\n') {
        return None;
    }
    digits.iter().try_fold(0u64, |v, &d| Some(v << 4 | (d as char).to_digit(16)? as u64))
}

/// Does the maps file at `path` (NUL-terminated) list a mapping at GATE_ADDR?
fn maps_have_gate(path: &[u8]) -> bool {
    const LINE: &[u8] = b"\n7e9000000000-";
    let fd = boot_open(path);
    if fd < 0 {
        return false;
    }
    // A window of the previous chunk's tail and the new chunk, so a line
    // start split between two reads is still seen. The first line follows
    // the '\n' the window starts with.
    let mut window = [0u8; LINE.len() + 4096];
    window[0] = b'\n';
    let mut kept = 1;
    let mut found = false;
    while let Some(room) = window.get_mut(kept..) {
        let r = boot_read(fd, room);
        if r <= 0 {
            break;
        }
        let end = kept + r as usize;
        let seen = window.get(..end).unwrap_or(&[]);
        if seen.windows(LINE.len()).any(|w| w == LINE) {
            found = true;
            break;
        }
        let tail = end.min(LINE.len() - 1);
        window.copy_within(end - tail..end, 0);
        kept = tail;
    }
    boot_close(fd);
    found
}

/// Reads the start of the file at `path` (NUL-terminated) into `buf`; bytes read.
fn read_file(path: &[u8], buf: &mut [u8]) -> usize {
    let fd = boot_open(path);
    if fd < 0 {
        return 0;
    }
    let mut n = 0;
    while n < buf.len() {
        let Some(room) = buf.get_mut(n..) else { break };
        let r = boot_read(fd, room);
        if r <= 0 {
            break;
        }
        n += r as usize;
    }
    boot_close(fd);
    n
}

/// A syscall before our gate is in place: from the gate that is already
/// there (the launcher's), or else from the library's own text, which is
/// safe only because no trap is armed yet.
///
/// # Safety
/// As `raw::syscall6`.
unsafe fn bootstrap_syscall(nr: i64, a: [u64; 6]) -> i64 {
    if GATE_PRESENT.load(Ordering::Relaxed) {
        // SAFETY: the caller's contract.
        return unsafe { raw::syscall6(nr, a) };
    }
    // SAFETY: no gate and no trap yet (see ut_bootstrap_syscall6); the
    // arguments are the caller's contract.
    unsafe { arch::ut_bootstrap_syscall6(nr as u64, a[0], a[1], a[2], a[3], a[4], a[5]) }
}

/// A syscall from the library's own text, whether or not the gate exists:
/// only while no trap is armed in this process (no inherited filter either).
unsafe fn direct_syscall(nr: i64, a: [u64; 6]) -> i64 {
    // SAFETY: the caller's contract.
    unsafe { arch::ut_bootstrap_syscall6(nr as u64, a[0], a[1], a[2], a[3], a[4], a[5]) }
}

/// write(2) before the gate: the kernel's result.
fn boot_write(fd: i32, buf: &[u8]) -> i64 {
    // SAFETY: the kernel reads `buf`, valid for its length.
    unsafe { bootstrap_syscall(libc::SYS_write, [fd as u64, buf.as_ptr() as u64, buf.len() as u64, 0, 0, 0]) }
}

/// openat(AT_FDCWD, path up to its NUL, O_RDONLY) before the gate: a
/// descriptor or -errno.
fn boot_open(path: &[u8]) -> i64 {
    let Ok(path) = core::ffi::CStr::from_bytes_until_nul(path) else { return -raw::EINVAL };
    let flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
    // SAFETY: the kernel reads the NUL-terminated `path`.
    unsafe { bootstrap_syscall(libc::SYS_openat, [libc::AT_FDCWD as u64, path.as_ptr() as u64, flags, 0, 0, 0]) }
}

/// read(2) before the gate: bytes read or -errno.
fn boot_read(fd: i64, buf: &mut [u8]) -> i64 {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    unsafe { bootstrap_syscall(libc::SYS_read, [fd as u64, buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0, 0]) }
}

fn boot_close(fd: i64) {
    // SAFETY: an integer.
    unsafe { bootstrap_syscall(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0]) };
}

/// Put our gate at its fixed address, slots filled (SUD slot off for now);
/// a gate that is there already (the launcher's) stays until `start` swaps
/// ours in.
fn map_gate() {
    if !arch::gate_layout_ok() {
        bootstrap_fail(b"usertrap: internal error: the gate image is not laid out as the library expects\n");
    }
    if GATE_PRESENT.load(Ordering::Relaxed) {
        // Ours replaces it once the backend is known (`start`): one swap.
        return;
    }
    let prot_rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64;
    // SAFETY: NOREPLACE: nothing mapped is touched.
    let r = unsafe { bootstrap_syscall(libc::SYS_mmap, [GATE_ADDR, GATE_LEN, prot_rw, flags, u64::MAX, 0]) };
    if r as u64 != GATE_ADDR {
        bootstrap_fail(b"usertrap: cannot map the syscall gate at 0x7e9000000000 (already in use: the library loaded twice, or started by a usertrap-launcher of another build?)\n");
    }
    fill_gate(GATE_ADDR, false);
    let rx = (libc::PROT_READ | libc::PROT_EXEC) as u64;
    // SAFETY: our gate page, filled; nothing writes it any more.
    let r = unsafe { bootstrap_syscall(libc::SYS_mprotect, [GATE_ADDR, GATE_LEN, rx, 0, 0, 0]) };
    if r != 0 && map_gate_rx(GATE_ADDR, false, bootstrap_syscall).is_err() {
        bootstrap_fail(b"usertrap: cannot make the syscall gate executable (a policy against writable code, such as MemoryDenyWriteExecute, and no /proc/self/mem)\n");
    }
    GATE_PRESENT.store(true, Ordering::Relaxed);
}

/// Map a gate at `at` (our own page, or the gate's own address, replaced)
/// R-X from the start and write it through /proc/self/mem: where a policy
/// refuses to make written memory executable (systemd's
/// MemoryDenyWriteExecute filter refuses `mprotect` with `PROT_EXEC`,
/// `prctl(PR_SET_MDWE)` any `mprotect` that adds it) but lets an anonymous
/// R-X page be mapped and written through /proc, as the patcher writes code.
/// Nothing may run through the page at `at` meanwhile.
/// `sys` makes the syscalls: [`bootstrap_syscall`], or [`direct_syscall`]
/// while the gate is not executable.
fn map_gate_rx(at: u64, sud_on: bool, sys: unsafe fn(i64, [u64; 6]) -> i64) -> Result<(), i64> {
    let mut image = [0u8; GATE_LEN as usize];
    fill_gate(image.as_mut_ptr() as u64, sud_on);
    let rx = (libc::PROT_READ | libc::PROT_EXEC) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED) as u64;
    // SAFETY: replaces only `at`'s page, ours and unused (the caller's
    // contract).
    let r = unsafe { sys(libc::SYS_mmap, [at, GATE_LEN, rx, flags, u64::MAX, 0]) };
    if r as u64 != at {
        return Err(-r);
    }
    let path = c"/proc/self/mem".as_ptr() as u64;
    let open_flags = (libc::O_RDWR | libc::O_CLOEXEC) as u64;
    // SAFETY: the kernel reads the NUL-terminated path.
    let fd = unsafe { sys(libc::SYS_openat, [libc::AT_FDCWD as u64, path, open_flags, 0, 0, 0]) };
    if fd < 0 {
        return Err(-fd);
    }
    // SAFETY: the kernel reads GATE_LEN bytes of `image` and writes them at
    // `at`, our page.
    let w = unsafe { sys(libc::SYS_pwrite64, [fd as u64, image.as_ptr() as u64, GATE_LEN, at, 0, 0]) };
    // SAFETY: our descriptor.
    unsafe { sys(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0]) };
    if w as u64 == GATE_LEN {
        Ok(())
    } else {
        Err(raw::EFAULT)
    }
}

/// Copy the gate image to `at` (GATE_LEN writable bytes) and fill its slots.
fn fill_gate(at: u64, sud_on: bool) {
    let image = arch::gate_image();
    // SAFETY: `at` maps GATE_LEN writable bytes that only we use, and the
    // image is exactly GATE_LEN bytes (checked by gate_layout_ok).
    unsafe { core::ptr::copy_nonoverlapping(image.as_ptr(), at as *mut u8, image.len()) };
    for (off, value, size) in arch::gate_slots(sud::selector_addr(), sud_on) {
        let bytes = value.to_le_bytes();
        // SAFETY: slots lie inside the page (offsets from the image's own symbols).
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), (at + off) as *mut u8, size) };
    }
}

/// Refill the gate this constructor mapped with the SUD slot on: made
/// writable, written, made executable again, by syscalls from the library's
/// own text (the gate cannot issue the mprotect that takes its own execute
/// permission away). Cheaper than a swap: no new page, no mremap.
fn set_sud_slot_in_place() {
    let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let rx = (libc::PROT_READ | libc::PROT_EXEC) as u64;
    // SAFETY: no trap is armed yet (the backend is armed at the end of
    // start), so a syscall from our own text is not intercepted; the gate
    // is ours (mapped by map_gate) and nothing runs through it meanwhile:
    // one thread of ours, no handler of ours installed yet.
    let r = unsafe { arch::ut_bootstrap_syscall6(libc::SYS_mprotect as u64, GATE_ADDR, GATE_LEN, rw, 0, 0, 0) };
    if r != 0 {
        swap_in_gate(true);
        return;
    }
    fill_gate(GATE_ADDR, true);
    // SAFETY: as above.
    let r = unsafe { arch::ut_bootstrap_syscall6(libc::SYS_mprotect as u64, GATE_ADDR, GATE_LEN, rx, 0, 0, 0) };
    if r != 0 && map_gate_rx(GATE_ADDR, true, direct_syscall).is_err() {
        bootstrap_fail(b"usertrap: cannot make the syscall gate executable again\n");
    }
}

/// Replace the gate at GATE_ADDR while syscalls keep going through it: build
/// the new one elsewhere, make it R-X, and move it over the old one with one
/// mremap. That mremap is itself issued from the old gate and returns into
/// the new one, at the same offset, where the code bytes are the same.
fn swap_in_gate(sud_on: bool) {
    let Ok(page) = raw::mmap_anon(GATE_LEN as usize, libc::PROT_READ | libc::PROT_WRITE) else {
        bootstrap_fail(b"usertrap: cannot map a page for the syscall gate\n");
    };
    fill_gate(page, sud_on);
    // SAFETY: the page just filled; nothing writes it any more.
    let made_rx = unsafe { raw::mprotect(page, GATE_LEN as usize, libc::PROT_READ | libc::PROT_EXEC) };
    if made_rx.is_err() && map_gate_rx(page, sud_on, bootstrap_syscall).is_err() {
        bootstrap_fail(b"usertrap: cannot make the syscall gate executable (a policy against writable code, such as MemoryDenyWriteExecute, and no /proc/self/mem)\n");
    }
    let flags = libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED;
    // SAFETY: moves our new gate over the old one at GATE_ADDR, which only
    // ever holds a gate (the same code at the same offsets, see above); the
    // page at `page` is used by nothing else.
    let r = unsafe { raw::mremap(page, GATE_LEN, GATE_LEN, flags, GATE_ADDR) };
    if r != Ok(GATE_ADDR) {
        bootstrap_fail(b"usertrap: cannot move the syscall gate into place\n");
    }
}

/// The current directory into `out`, whether or not our gate exists yet;
/// its length without the NUL (0 on failure).
fn getcwd(out: &mut [u8; 4096]) -> usize {
    // SAFETY: the kernel writes at most `out.len()` bytes into `out`.
    let r = unsafe { bootstrap_syscall(libc::SYS_getcwd, [out.as_mut_ptr() as u64, out.len() as u64, 0, 0, 0, 0]) };
    if r > 1 {
        r as usize - 1
    } else {
        0
    }
}

fn bootstrap_fail(msg: &[u8]) -> ! {
    boot_write(2, msg);
    // SAFETY: an integer; the call does not return.
    unsafe { bootstrap_syscall(libc::SYS_exit_group, [EXIT_CONFIG, 0, 0, 0, 0, 0]) };
    loop {
        core::hint::spin_loop();
    }
}

fn read_config(s: &Startup<'_>) -> Config {
    // Values are shown escaped and cut (log::Line::escaped): the message
    // stays one line whatever the environment holds.
    match Config::from_entries(s.env_entries()) {
        Ok(c) => {
            if let crate::start::config::Summary::File(path) = c.summary {
                if let Err(e) = report::check_summary_path(path) {
                    Line::new()
                        .str("USERTRAP_SUMMARY=\"")
                        .escaped(path, 200)
                        .str("\" is not valid: cannot append to it (")
                        .errno(e)
                        .str("); accepted: 0, 1 (stderr), or an absolute path of a file that can be appended to")
                        .emit();
                    exit(EXIT_CONFIG)
                }
            }
            c
        }
        Err(ConfigError::Invalid { name, value, accepted }) => {
            Line::new()
                .str(name)
                .str("=\"")
                .escaped(value, 200)
                .str("\" is not valid; accepted: ")
                .str(accepted)
                .emit();
            exit(EXIT_CONFIG)
        }
        Err(ConfigError::Unknown { name }) => {
            Line::new().str("unknown setting ").escaped(name, 100).str("; known settings: ").str(KNOWN).emit();
            exit(EXIT_CONFIG)
        }
    }
}

/// What exec'd programs must get: LD_PRELOAD naming the library, the
/// launcher to run them with, and our USERTRAP_* entries.
fn record_exec_env(s: &Startup<'_>) {
    // Kept by the exec'ing image: the paths recorded are the ones it had
    // (this image's loader may have opened the library through
    // /proc/self/fd), and exec goes through the descriptors.
    let kept = kept(s);
    let lib_path = kept.map_or(s.lib_path, |k| k.lib_path);
    let mut launcher_buf = [0u8; crate::start::handoff::PATH_LEN];
    let launcher_path = match kept {
        Some(k) => {
            let dir = k.lib_path.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
            let n = Buf::new(&mut launcher_buf).put(k.lib_path.get(..dir).unwrap_or(&[])).put(LAUNCHER_NAME).len;
            launcher_buf.get(..n).unwrap_or(&[])
        }
        None => s.launcher_path,
    };
    if let Some(k) = kept {
        exec::adopt_kept(k.kept);
    }
    let by_fd = exec_keep::kept().is_some();
    exec::set_exec_env(|env| {
        env.put_preload(lib_path);
        // Only a launcher that is there (or kept): without one, exec under
        // SUD falls back to a native exec, and under seccomp is refused
        // with a message.
        let launcher = env.put_launcher(launcher_path);
        let ok = raw::cstr(launcher).and_then(|p| raw::faccessat2(libc::AT_FDCWD, p, libc::X_OK, 0)).is_ok();
        if !ok && !by_fd {
            env.drop_launcher();
        }
        // Not the list of sites nor the kept descriptors: each image writes
        // its own at exec.
        let ours = |e: &&[u8]| {
            e.starts_with(b"USERTRAP_")
                && !e.starts_with(patch::install::prepatch::ENTRY)
                && !e.starts_with(exec_keep::ENTRY)
        };
        env.put_settings(s.env_entries().filter(ours));
    });
}

/// Make the kernel's copy of the auxiliary vector (/proc/self/auxv) the one
/// on the program's stack: `auxv` up to its first AT_NULL pair (nothing
/// happens without one). Needs CAP_SYS_RESOURCE; without it /proc/self/auxv
/// keeps describing the launcher.
pub fn set_kernel_auxv(auxv: &[u64]) {
    if !has_cap_sys_resource() {
        return;
    }
    let Some(pairs) = auxv.chunks(2).position(|p| p.first() == Some(&0)) else { return };
    if let Some(vector) = auxv.get(..2 * (pairs + 1)) {
        let _ = raw::prctl_set_mm_auxv(vector);
    }
}

/// Start the kernel's view of the environment (/proc/self/environ) at
/// `start` (past the entries we added, whose strings come first). Needs
/// CAP_SYS_RESOURCE, like set_kernel_auxv.
pub fn set_kernel_env_start(start: u64) {
    if !has_cap_sys_resource() {
        return;
    }
    let _ = raw::prctl_set_mm_env_start(start);
}

/// Make /proc/self/exe name `path` (NUL-terminated) instead of the launcher,
/// whose file must no longer be mapped. Needs CAP_SYS_RESOURCE; false if
/// the kernel refused.
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // the constructor's
pub fn set_kernel_exe(path: &[u8]) -> bool {
    // Most processes lack the capability: one capget instead of opening the
    // program (a path walk) only to be refused.
    if !has_cap_sys_resource() {
        return false;
    }
    let Ok(fd) = raw::open_cwd(path, libc::O_RDONLY | libc::O_CLOEXEC, 0) else {
        return false;
    };
    let r = raw::prctl_set_mm_exe_file(fd);
    let _ = raw::close(fd);
    r.is_ok()
}

/// Whether this thread's effective capabilities include CAP_SYS_RESOURCE
/// (what PR_SET_MM needs); true if the kernel does not say (then try).
/// Asked once per image (start-up only): 0 not yet, 1 no, 2 yes.
static CAP_SYS_RESOURCE_SEEN: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

fn has_cap_sys_resource() -> bool {
    match CAP_SYS_RESOURCE_SEEN.load(Ordering::Relaxed) {
        1 => return false,
        2 => return true,
        _ => {}
    }
    let yes = ask_cap_sys_resource();
    CAP_SYS_RESOURCE_SEEN.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
    yes
}

fn ask_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    raw::capget_effective().map_or(true, |effective| effective & (1 << CAP_SYS_RESOURCE) != 0)
}

/// The value of the process's first `LD_PRELOAD=` entry for which `pick`
/// holds, with its terminating NUL, writable in place.
fn preload_value(envp: *const u64, pick: impl Fn(&[u8]) -> bool) -> Option<&'static mut [u8]> {
    if envp.is_null() {
        return None;
    }
    let head = b"LD_PRELOAD=".len();
    let mut i = 0;
    loop {
        // SAFETY: `envp` is the process's initial NULL-terminated
        // environment, whose strings are NUL-terminated, writable and used by
        // nobody else yet (the program has not started).
        let s = unsafe {
            let p = *envp.add(i) as *mut u8;
            if p.is_null() {
                return None;
            }
            let len = core::ffi::CStr::from_ptr(p.cast()).to_bytes().len();
            core::slice::from_raw_parts_mut(p, len + 1)
        };
        if s.starts_with(b"LD_PRELOAD=") && s.get(head..s.len() - 1).is_some_and(&pick) {
            return s.get_mut(head..);
        }
        i += 1;
    }
}

/// Take this library back out of the front of the program's LD_PRELOAD if
/// the exec'ing library put it there: "LD_PRELOAD=<lib>:<theirs>" becomes
/// "LD_PRELOAD=<theirs>", in place in the environment's strings.
pub fn unprefix_preload(envp: *const u64, lib_path: &[u8]) {
    let ours = |v: &[u8]| v.starts_with(lib_path) && v.get(lib_path.len()) == Some(&b':');
    if let Some(value) = preload_value(envp, ours) {
        // The rest, with its NUL, moves to the front.
        value.copy_within(lib_path.len() + 1.., 0);
    }
}

/// Take this library (by `lib_path`) out of the program's LD_PRELOAD, in
/// place: the launcher serves a dynamic program whose loader cannot open
/// it, and would otherwise print "cannot be preloaded" on its stderr.
#[cfg_attr(not(feature = "launcher"), allow(dead_code))] // the launcher's
pub fn drop_from_preload(envp: *const u64, lib_path: &[u8]) {
    if lib_path.is_empty() {
        return;
    }
    let Some(s) = preload_value(envp, |_| true) else { return };
    // Entries are kept in order, joined by ':', never longer than before.
    let len = s.len() - 1;
    let mut at = 0;
    let mut start = 0;
    let mut first = true;
    while start < len {
        let end = (start..len).find(|&j| matches!(s.get(j), Some(b':' | b' '))).unwrap_or(len);
        let ours = s.get(start..end) == Some(lib_path);
        if !ours && end > start {
            if !first {
                if let Some(b) = s.get_mut(at) {
                    *b = b':';
                }
                at += 1;
            }
            s.copy_within(start..end, at);
            at += end - start;
            first = false;
        }
        start = end + 1;
    }
    if let Some(b) = s.get_mut(at) {
        *b = 0;
    }
}

fn fail_line(msg: &str) -> ! {
    Line::new().str(msg).emit();
    exit(EXIT_CONFIG)
}

fn exit(status: u64) -> ! {
    raw::exit_group(status as i32)
}

#[cfg(test)]
mod tests {
    use super::{drop_from_preload, unprefix_preload};

    /// Run `edit` on an environment made of `entries`; the entries after.
    fn edited(entries: &[&str], edit: impl Fn(*const u64)) -> Vec<String> {
        let mut strings: Vec<Vec<u8>> = entries.iter().map(|e| format!("{e}\0").into_bytes()).collect();
        let mut envp: Vec<u64> = strings.iter_mut().map(|s| s.as_mut_ptr() as u64).collect();
        envp.push(0);
        edit(envp.as_ptr());
        strings.iter().map(|s| String::from_utf8_lossy(s.split(|&b| b == 0).next().unwrap()).into_owned()).collect()
    }

    #[test]
    fn unprefix_takes_our_library_off_the_front_only() {
        let lib = "/u/libusertrap.so";
        let unprefix = |envp| unprefix_preload(envp, lib.as_bytes());
        assert_eq!(
            edited(&["A=1", "LD_PRELOAD=/u/libusertrap.so:/x/liba.so", "B=2"], unprefix),
            ["A=1", "LD_PRELOAD=/x/liba.so", "B=2"]
        );
        // Not put there by us (alone, or not at the front): left alone.
        assert_eq!(edited(&["LD_PRELOAD=/u/libusertrap.so"], unprefix), ["LD_PRELOAD=/u/libusertrap.so"]);
        assert_eq!(
            edited(&["LD_PRELOAD=/x/liba.so:/u/libusertrap.so"], unprefix),
            ["LD_PRELOAD=/x/liba.so:/u/libusertrap.so"]
        );
        // The first entry that starts with us, past another.
        assert_eq!(
            edited(&["LD_PRELOAD=/y.so", "LD_PRELOAD=/u/libusertrap.so:/z.so"], unprefix),
            ["LD_PRELOAD=/y.so", "LD_PRELOAD=/z.so"]
        );
        assert_eq!(edited(&[], unprefix), Vec::<String>::new());
    }

    #[test]
    fn drop_takes_every_copy_of_our_library_out_of_the_first_entry() {
        let lib = "/u/libusertrap.so";
        let drop = |envp| drop_from_preload(envp, lib.as_bytes());
        assert_eq!(
            edited(
                &["LD_PRELOAD=/u/libusertrap.so /a.so:/u/libusertrap.so::/b.so", "LD_PRELOAD=/u/libusertrap.so"],
                drop
            ),
            ["LD_PRELOAD=/a.so:/b.so", "LD_PRELOAD=/u/libusertrap.so"]
        );
        assert_eq!(edited(&["LD_PRELOAD=/u/libusertrap.so"], drop), ["LD_PRELOAD="]);
        assert_eq!(edited(&["X=/u/libusertrap.so"], drop), ["X=/u/libusertrap.so"]);
    }
}
