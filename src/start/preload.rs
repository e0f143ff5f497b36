//! The library's constructor: what it learns from libc (the environment, the
//! auxiliary vector, its own path) before starting the interposer. Only this
//! module names libc symbols; the launcher, which has no libc, starts the
//! interposer from its initial stack instead (`launch`).

use core::ffi::{c_char, c_void};

use crate::measure::phases::{self, Mark};
use crate::rt::log::Buf;
use crate::start::handoff::{Handoff, AT_USERTRAP_HANDOFF, PATH_LEN};
use crate::start::init::{self, Role, Startup};

const AT_HWCAP2: u64 = 26;
/// The program interpreter's (the loader's) load address.
const AT_BASE: u64 = 7;
/// The launcher's file name, installed beside the library.
const LAUNCHER_NAME: &[u8] = b"usertrap-launcher";

extern "C" {
    static mut environ: *const *const c_char;
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

#[ctor::ctor(unsafe)]
fn usertrap_constructor() {
    // The program's main must find errno as natively: getauxval sets it
    // (ENOENT) when our entry is absent, as it always is without the launcher.
    // SAFETY: glibc's errno of this thread; no syscall.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: as above, a valid pointer for this thread.
    let saved = unsafe { *errno };
    if phases_asked() {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: glibc's clock_gettime writes `ts`; CLOCK_MONOTONIC is read
        // through the vDSO (no syscall), for USERTRAP_PHASES' first phase.
        if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) } == 0 {
            phases::constructor_entered(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
        }
    }
    start_preloaded();
    // SAFETY: as above.
    unsafe { *errno = saved };
}

/// USERTRAP_PHASES=1 is in the environment (settings are parsed later, in
/// `init::start`): only then is the constructor's entry timed, since the
/// vDSO's pages the clock read touches are a page fault or two that a
/// process otherwise does not pay.
fn phases_asked() -> bool {
    // SAFETY: glibc's environ, read before the program can change it: a
    // NULL-terminated array of NUL-terminated strings.
    let mut p = unsafe { environ };
    while !p.is_null() {
        // SAFETY: as above; we stop at the NULL entry.
        let s = unsafe { *p };
        if s.is_null() {
            break;
        }
        // SAFETY: as above.
        if unsafe { core::ffi::CStr::from_ptr(s) }.to_bytes() == b"USERTRAP_PHASES=1" {
            return true;
        }
        // SAFETY: not past the NULL entry (checked above).
        p = unsafe { p.add(1) };
    }
    false
}

fn start_preloaded() {
    // SAFETY: the client request touches only its own stack; no syscall.
    if unsafe { crate::rt::arch::ut_running_on_valgrind() } != 0 {
        init::stand_aside_under_valgrind();
        return;
    }
    let mut lib = [0u8; PATH_LEN];
    let lib_len = own_path(&mut lib);
    let lib_path = lib.get(..lib_len).unwrap_or(&[]);
    let mut launcher = [0u8; PATH_LEN];
    let dir = lib_path.iter().rposition(|&b| b == b'/').map_or(&[][..], |i| lib_path.get(..=i).unwrap_or(&[]));
    let launcher_len = Buf::new(&mut launcher).put(dir).put(LAUNCHER_NAME).len;
    // SAFETY: getauxval only reads the auxiliary vector (no syscall). Our
    // entry is there only when the launcher started this image, and then it
    // points at the launcher's record, mapped for the life of the process.
    let handoff = unsafe { Handoff::at(getauxval(AT_USERTRAP_HANDOFF)) };
    // (An image the launcher started stays intercepted: the launcher served
    // its loader, and under seccomp the filter requires it.)
    let mut status_buf = [0u8; 4096];
    let status = if handoff.is_none() { init::read_status(&mut status_buf) } else { &[] };
    if handoff.is_none() && init::stand_aside_when_traced_by_usertrap(status) {
        return;
    }
    init::start(&Startup {
        role: Role::Preload,
        // SAFETY: glibc's environ, read before the program can change it.
        envp: unsafe { environ }.cast(),
        skip_env: core::ptr::null(),
        // SAFETY: as above.
        hwcap2: unsafe { getauxval(AT_HWCAP2) },
        lib_path,
        launcher_path: launcher.get(..launcher_len).unwrap_or(&[]),
        exe_path: b"",
        seccomp_armed: false,
        handoff,
        // Read with the tracer check: no query per signal. (In an image the
        // launcher started, the kernel holds its handlers for some: asked.)
        default_signals: init::default_dispositions(status),
        libc_header: libc_header(),
        // SAFETY: as above.
        loader_header: unsafe { getauxval(AT_BASE) },
    });
    if let Some(h) = handoff {
        give_back_environment(h, lib_path);
        phases::mark(Mark::Environment);
        leave_no_launcher(h);
    }
}

/// The launcher's part is over: take over what it recorded, unmap it, and
/// let the kernel name the program as /proc/self/exe where it allows.
fn leave_no_launcher(h: &Handoff) {
    let maps = h.launcher_maps;
    // The loader's syscalls, served by the launcher, count as this thread's.
    if let Some(area) = crate::rt::thread::current_unchecked() {
        if area.stats.get().is_null() && h.stats != 0 {
            area.stats.set(h.stats as *mut crate::measure::stats::ThreadStats);
        }
    }
    let image = maps[0];
    crate::emulate::signals::takeover::adopt(
        h.sigtable as *mut crate::emulate::signals::SigTable,
        (image[0], image[0] + image[1]),
    );
    phases::mark(Mark::Adopt);
    let mut exe = [0u8; PATH_LEN + 1];
    Buf::new(&mut exe).put(h.exe_path()).put(b"\0");
    // `h` lives in the launcher's image: not used past this point.
    for [addr, len] in maps {
        if len != 0 {
            // SAFETY: the launcher's own mappings (its image, its stack and
            // data), which nothing runs in or refers to any more.
            let _ = unsafe { crate::rt::raw::munmap(addr, len as usize) };
        }
    }
    if init::set_kernel_exe(&exe) {
        crate::emulate::exec::clear_exe_path();
    }
    phases::mark(Mark::Unmap);
}

/// The environment the program passed to exec, without what the exec'ing
/// library added in front: `environ` starts past those entries (the stack
/// keeps its layout: the auxiliary vector still follows the environment).
fn give_back_environment(h: &Handoff, lib_path: &[u8]) {
    // SAFETY: glibc's environ still points at the initial stack's array (no
    // constructor of the program has run; ours runs before them), which has
    // at least `env_leading` entries before its NULL (the launcher counted).
    unsafe {
        let mut n = 0;
        while !(*environ.add(n)).is_null() {
            n += 1;
        }
        // The auxiliary vector follows; our entry, last before AT_NULL,
        // becomes its end (nothing after it changes meaning).
        let auxv = environ.add(n + 1) as *mut u64;
        let mut aux = auxv;
        while *aux != 0 {
            if *aux == AT_USERTRAP_HANDOFF {
                *aux = 0;
                *aux.add(1) = 0;
                break;
            }
            aux = aux.add(2);
        }
        // `aux` is at the terminating pair (the kernel's, or ours zeroed).
        init::set_kernel_auxv(core::slice::from_raw_parts(auxv, aux.offset_from(auxv) as usize + 2));
        let leading = h.env_leading as usize;
        if leading > 0 && leading <= n {
            // Our strings come first in the environment's area (after the
            // launcher's control entry): the program's start after the last.
            let last = *environ.add(leading - 1);
            let len = core::ffi::CStr::from_ptr(last).to_bytes().len();
            init::set_kernel_env_start(last as u64 + len as u64 + 1);
        }
        if leading <= n {
            environ = environ.add(leading);
        }
        if h.preload_prefixed != 0 {
            init::unprefix_preload(environ.cast(), lib_path);
        }
    }
}

/// What the loader knows of the object holding `addr` (dladdr), if any.
fn object_holding(addr: *const c_void) -> Option<DlInfo> {
    let mut info = DlInfo {
        dli_fname: core::ptr::null(),
        dli_fbase: core::ptr::null_mut(),
        dli_sname: core::ptr::null(),
        dli_saddr: core::ptr::null_mut(),
    };
    // SAFETY: dladdr reads the loader's list of objects and writes `info`;
    // the callers pass code addresses resolved by the loader.
    (unsafe { dladdr(addr, &raw mut info) } != 0).then_some(info)
}

/// Where the loader mapped libc's ELF header (the object holding
/// getauxval), or 0.
fn libc_header() -> u64 {
    object_holding(getauxval as *const c_void).map_or(0, |i| i.dli_fbase as u64)
}

/// This library's absolute path into `out`; its length (0 if unknown).
fn own_path(out: &mut [u8; PATH_LEN]) -> usize {
    let info = object_holding(own_path as *const c_void).filter(|i| !i.dli_fname.is_null());
    let path: &[u8] = if let Some(info) = info {
        // SAFETY: dli_fname is a NUL-terminated path owned by the loader.
        unsafe { core::ffi::CStr::from_ptr(info.dli_fname).to_bytes() }
    } else {
        b""
    };
    // Relative (LD_PRELOAD=./lib...): against the directory we start in.
    init::absolute_into(path, out)
}
