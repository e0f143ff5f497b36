//! Start-up, in this order and nothing else: map the gate, read the settings,
//! set up the main thread's area and signal state, install the handlers,
//! remember what exec must carry, arm the backend. Runs in the constructor,
//! single-threaded as far as the library knows, before the program's main.
//! Any failure ends the process with one line on stderr and status 125
//! (the program never runs half-monitored).

use core::ffi::{c_char, c_void};
use core::sync::atomic::Ordering;

use crate::arch::{self, GATE_ADDR, GATE_LEN};
use crate::backend::{self, sud};
use crate::config::{Config, ConfigError, KNOWN};
use crate::patch;
use crate::sigsafe::log::{Buf, Line};
use crate::sigsafe::{fault, process, raw, report, signals, sigsys, stats, thread};

/// Exit status when the library refuses to start the program.
const EXIT_CONFIG: u64 = 125;
const AT_HWCAP2: u64 = 26;
const HWCAP2_FSGSBASE: u64 = 1 << 1;

extern "C" {
    static environ: *const *const c_char;
    fn getauxval(kind: u64) -> u64;
    fn dladdr(addr: *const c_void, info: *mut DlInfo) -> i32;
}

#[repr(C)]
struct DlInfo {
    dli_fname: *const c_char,
    dli_fbase: *mut c_void,
    dli_sname: *const c_char,
    dli_saddr: *mut c_void,
}

pub fn start() {
    map_gate();
    let config = read_config();
    thread::set_have_fsgsbase(unsafe_getauxval(AT_HWCAP2) & HWCAP2_FSGSBASE != 0);
    thread::SIGSTACK_SIZE.store(config.sigstack_kib * 1024, Ordering::Relaxed);
    stats::start_clock();
    stats::set_timing(config.timing);
    stats::set_known_hz(config.tsc_hz);
    report::configure(&absolute(config.output), config.format, config.summary);

    let area = match thread::allocate() {
        Some(a) => a,
        None => fail_line("cannot allocate the main thread's signal stack"),
    };
    thread::install(area);
    signals::take_over_mask(area);
    signals::take_over_altstack(area);
    signals::watch_fatal_signals();
    for (sig, action) in [
        (signals::SIGSYS, sigsys::handler_action()),
        (signals::SIGSEGV, fault::handler_action()),
        (signals::SIGILL, fault::handler_action()),
    ] {
        if let Err(e) = signals::take_over(sig, &action) {
            Line::new().str("cannot install the handler for signal ").num(sig as u64).str(": errno ").num(e as u64).emit();
            exit(EXIT_CONFIG);
        }
    }
    record_exec_env();
    crate::hooks::init_xsave_size();
    if config.patch {
        enable_patching();
    }
    if let Err(e) = backend::arm(config.backend) {
        let mut l = Line::new();
        l.str("USERTRAP_BACKEND=").str(config.backend.name()).str(" cannot be armed: ").str(e.what).str(" failed with errno ").num(e.errno as u64);
        if !e.hint.is_empty() {
            l.str(" (").str(e.hint).str(")");
        }
        l.emit();
        exit(EXIT_CONFIG);
    }
}

/// The fast path needs core-serialising barriers for cross-modifying code
/// and a decoder with its tables built (they allocate on first use).
fn enable_patching() {
    if !arch::trampoline_layout_ok() {
        fail_line("internal error: the trampoline template is not encoded as expected");
    }
    if let Err(e) = patch::write::register_membarrier() {
        if config_summary() {
            Line::new().str("membarrier SYNC_CORE unavailable (errno ").num(e as u64).str("): patching off, every call takes the slow path").emit();
        }
        return;
    }
    patch::site::warm_up();
    patch::patcher::ENABLED.store(true, Ordering::Relaxed);
}

fn config_summary() -> bool {
    report::summary_on()
}

/// `path` made absolute against the current directory (the program may
/// change directory before it ends).
fn absolute(path: &[u8]) -> [u8; 4096] {
    let mut out = [0u8; 4096];
    let mut w = Buf::new(&mut out);
    if !path.is_empty() && path.first() != Some(&b'/') {
        let mut cwd = [0u8; 4096];
        let r = raw::syscall(libc::SYS_getcwd, cwd.as_mut_ptr() as u64, cwd.len() as u64, 0, 0);
        if r > 1 {
            w.put(cwd.get(..(r as usize - 1)).unwrap_or(&[]));
            w.put(b"/");
        }
    }
    w.put(path);
    out
}

fn unsafe_getauxval(kind: u64) -> u64 {
    // SAFETY: getauxval only reads the auxiliary vector; it makes no syscall.
    unsafe { getauxval(kind) }
}

/// Copy the gate image to its fixed address, fill its slots, make it R-X.
fn map_gate() {
    let prot_rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64;
    // SAFETY: the gate does not exist yet, so this one mmap (and the error
    // report below) is issued from the library's text; no trap is armed.
    let r = unsafe { arch::ut_bootstrap_syscall6(libc::SYS_mmap as u64, GATE_ADDR, GATE_LEN, prot_rw, flags, u64::MAX, 0) };
    if r as u64 != GATE_ADDR {
        bootstrap_fail(b"usertrap: cannot map the syscall gate at 0x757300000000 (already in use: is the library loaded twice?)\n");
    }
    if !arch::gate_layout_ok() {
        bootstrap_fail(b"usertrap: internal error: the gate image is not laid out as the library expects\n");
    }
    let image = arch::gate_image();
    // SAFETY: GATE_ADDR now maps GATE_LEN writable bytes that only we use, and
    // the image is exactly GATE_LEN bytes (checked by gate_layout_ok).
    unsafe { core::ptr::copy_nonoverlapping(image.as_ptr(), GATE_ADDR as *mut u8, image.len()) };
    for (off, value, size) in arch::gate_slots(sud::selector_addr(), false) {
        let bytes = value.to_le_bytes();
        // SAFETY: slots lie inside the gate page (offsets from the image's own symbols).
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), (GATE_ADDR + off) as *mut u8, size) };
    }
    gate_protect(libc::PROT_READ | libc::PROT_EXEC);
}

/// mprotect of the gate page, issued from the library's text: while the gate
/// is writable it is not executable, so it cannot change its own protection.
fn gate_protect(prot: i32) {
    // SAFETY: only before any trap is armed (see ut_bootstrap_syscall6).
    unsafe { arch::ut_bootstrap_syscall6(libc::SYS_mprotect as u64, GATE_ADDR, GATE_LEN, prot as u64, 0, 0, 0) };
}

/// The gate's SUD slot is set once the backend is known (before it is armed).
fn set_gate_sud_slot(on: bool) {
    for (off, value, size) in arch::gate_slots(sud::selector_addr(), on) {
        if size == 1 {
            gate_protect(libc::PROT_READ | libc::PROT_WRITE);
            // SAFETY: the gate page is ours and writable for this instant; no
            // trap is armed yet, so nothing executes it concurrently.
            unsafe { *((GATE_ADDR + off) as *mut u8) = value as u8 };
            gate_protect(libc::PROT_READ | libc::PROT_EXEC);
        }
    }
}

fn bootstrap_fail(msg: &[u8]) -> ! {
    // SAFETY: as in map_gate: no gate, no trap; write(2) then exit_group(2).
    unsafe {
        arch::ut_bootstrap_syscall6(libc::SYS_write as u64, 2, msg.as_ptr() as u64, msg.len() as u64, 0, 0, 0);
        arch::ut_bootstrap_syscall6(libc::SYS_exit_group as u64, EXIT_CONFIG, 0, 0, 0, 0, 0);
    }
    loop {
        core::hint::spin_loop();
    }
}

/// The environment's entries as byte strings (without their NUL).
fn env_entries() -> impl Iterator<Item = &'static [u8]> {
    // SAFETY: `environ` is glibc's NULL-terminated array of NUL-terminated
    // strings; the constructor runs before the program can change it.
    let mut p = unsafe { environ };
    core::iter::from_fn(move || {
        if p.is_null() {
            return None;
        }
        // SAFETY: as above; we stop at the NULL entry.
        unsafe {
            let s = *p;
            if s.is_null() {
                return None;
            }
            p = p.add(1);
            Some(core::ffi::CStr::from_ptr(s).to_bytes())
        }
    })
}

fn read_config() -> Config {
    match Config::from_entries(env_entries()) {
        Ok(c) => {
            set_gate_sud_slot(c.backend == backend::Backend::Sud);
            c
        }
        Err(ConfigError::Invalid { name, value, accepted }) => {
            Line::new().str(name).str("=\"").bytes(value).str("\" is not valid; accepted: ").str(accepted).emit();
            exit(EXIT_CONFIG)
        }
        Err(ConfigError::Unknown { name }) => {
            Line::new().str("unknown setting ").bytes(name).str("; known settings: ").str(KNOWN).emit();
            exit(EXIT_CONFIG)
        }
    }
}

/// LD_PRELOAD=<absolute path of this library> and our USERTRAP_* entries, for
/// the environments of programs this one execs.
fn record_exec_env() {
    let mut info = DlInfo { dli_fname: core::ptr::null(), dli_fbase: core::ptr::null_mut(), dli_sname: core::ptr::null(), dli_saddr: core::ptr::null_mut() };
    // SAFETY: dladdr reads the loader's list of objects; `start` is our code.
    let ok = unsafe { dladdr(start as *const c_void, &mut info) } != 0 && !info.dli_fname.is_null();
    // SAFETY: dli_fname is a NUL-terminated path owned by the loader.
    let path: &[u8] = if ok { unsafe { core::ffi::CStr::from_ptr(info.dli_fname).to_bytes() } } else { b"" };
    let mut cwd = [0u8; 4096];
    let cwd_len = if path.first() == Some(&b'/') {
        0
    } else {
        let r = raw::syscall(libc::SYS_getcwd, cwd.as_mut_ptr() as u64, cwd.len() as u64, 0, 0);
        if r > 0 { (r as usize).saturating_sub(1) } else { 0 }
    };
    process::set_exec_env(|env| {
        let mut entry = Buf::new(&mut env.preload_entry);
        entry.put(b"LD_PRELOAD=");
        if cwd_len > 0 {
            entry.put(cwd.get(..cwd_len).unwrap_or(&[]));
            entry.put(b"/");
        }
        entry.put(path);
        let path_len = entry.len - b"LD_PRELOAD=".len();
        entry.put(b"\0");
        env.path_len = path_len;
        let mut settings = Buf::new(&mut env.settings);
        for e in env_entries().filter(|e| e.starts_with(b"USERTRAP_")) {
            settings.put(e);
            settings.put(b"\0");
        }
        env.settings_len = settings.len;
    });
}

fn fail_line(msg: &str) -> ! {
    Line::new().str(msg).emit();
    exit(EXIT_CONFIG)
}

fn exit(status: u64) -> ! {
    raw::syscall(raw::SYS_exit_group, status, 0, 0, 0);
    loop {
        core::hint::spin_loop();
    }
}
