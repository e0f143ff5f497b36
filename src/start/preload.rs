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
    // Its address only, never called (patch::install::prove_exit_sites).
    fn _exit(status: i32) -> !;
}

/// The constructor, in `.init_array`: glibc's loader calls each entry
/// with (argc, argv, envp), envp its own record of the initial stack's
/// environment. That is the environment where libc's `environ` is NULL:
/// in `libc.so.6` run as a program (to print its version), whose entry
/// never starts libc.
#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn(i32, *const *const c_char, *const *const c_char) = usertrap_constructor;

extern "C" fn usertrap_constructor(_argc: i32, _argv: *const *const c_char, envp: *const *const c_char) {
    // The program's main must find errno as natively: getauxval sets it
    // (ENOENT) when our entry is absent, as it always is without the launcher.
    // SAFETY: glibc's errno of this thread; no syscall.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: as above, a valid pointer for this thread.
    let saved = unsafe { *errno };
    let envp = program_environment(envp);
    if phases_asked(envp) {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: glibc's clock_gettime writes `ts`; CLOCK_MONOTONIC is read
        // through the vDSO (no syscall), for USERTRAP_PHASES' first phase.
        if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) } == 0 {
            phases::constructor_entered(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
        }
    }
    start_preloaded(envp);
    // SAFETY: as above.
    unsafe { *errno = saved };
}

/// USERTRAP_PHASES=1 is in the environment (settings are parsed later, in
/// `init::start`): only then is the constructor's entry timed, since the
/// vDSO's pages the clock read touches are a page fault or two that a
/// process otherwise does not pay.
fn phases_asked(envp: *const *const c_char) -> bool {
    let mut p = envp;
    while !p.is_null() {
        // SAFETY: `envp` is `program_environment`'s: NULL (not entered) or
        // a NULL-terminated array of NUL-terminated strings, which nothing
        // has changed yet; we stop at the NULL entry.
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

/// The environment: glibc's `environ` (which a library the program links
/// may have changed already, in its own constructor), else the loader's
/// `envp`, where libc is the program and never set `environ`.
fn program_environment(envp: *const *const c_char) -> *const *const c_char {
    // SAFETY: glibc's environ, read before the program can change it.
    let libc_view = unsafe { environ };
    if libc_view.is_null() {
        envp
    } else {
        libc_view
    }
}

/// `envp`: `program_environment`'s.
fn start_preloaded(envp: *const *const c_char) {
    // SAFETY: the client request touches only its own stack; no syscall.
    if unsafe { crate::rt::arch::ut_running_on_valgrind() } != 0 {
        init::stand_aside_under_valgrind();
        return;
    }
    // This library (for its path) and libc (for pre-patching), in one walk.
    let [own, libc] = objects_holding([own_path as *const () as u64, getauxval as *const () as u64]);
    let mut lib = [0u8; PATH_LEN];
    let lib_len = own_path(own, &mut lib);
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
    // Read with the tracer check: no query per signal. (In an image the
    // launcher started, the kernel holds its handlers for some: asked.)
    let (default_signals, seccomp_filtered) = if handoff.is_none() {
        init::no_gate_yet();
        match read_status_facts() {
            StatusFacts::TracedByUsertrap => return,
            StatusFacts::Defaults(d, filtered) => (d, filtered),
        }
    } else {
        (None, false)
    };
    init::start(&Startup {
        role: Role::Preload,
        envp: envp.cast(),
        skip_env: core::ptr::null(),
        // SAFETY: as above.
        hwcap2: unsafe { getauxval(AT_HWCAP2) },
        lib_path,
        launcher_path: launcher.get(..launcher_len).unwrap_or(&[]),
        exe_path: b"",
        seccomp_armed: false,
        seccomp_filtered,
        handoff,
        default_signals,
        // Where the loader mapped libc's ELF header (the object holding
        // getauxval), or 0.
        libc_header: libc.map_or(0, |o| o.header),
        own_text: own.map_or((0, 0), |o| o.text),
        // SAFETY: as above.
        loader_header: unsafe { getauxval(AT_BASE) },
        kept: None,
    });
    // Where every image ends (its exit_group site, proven before a fork
    // or exec).
    crate::patch::install::note_exit_function(_exit as *const () as u64);
    if let Some(h) = handoff {
        give_back_environment(h, envp, lib_path);
        phases::mark(Mark::Environment);
        leave_no_launcher(h);
    }
}

/// What the constructor learns from /proc/self/status.
enum StatusFacts {
    /// A tracer that runs under usertrap traces this process: stand aside.
    TracedByUsertrap,
    /// The signals with their default disposition, if the file said, and
    /// whether a seccomp filter is in force (Seccomp: 2).
    Defaults(Option<u64>, bool),
}

/// Read /proc/self/status once for the tracer check and the dispositions,
/// in a frame of its own: its page of buffer is not on the stack under
/// the rest of start-up (each page of stack reached is a page fault).
#[inline(never)]
fn read_status_facts() -> StatusFacts {
    let mut buf = [0u8; 4096];
    let status = init::read_status(&mut buf);
    if init::stand_aside_when_traced_by_usertrap(status) {
        StatusFacts::TracedByUsertrap
    } else {
        StatusFacts::Defaults(init::default_dispositions(status), init::under_seccomp_filter(status))
    }
}

/// The launcher's part is over: take over what it recorded, unmap it, and
/// let the kernel name the program as /proc/self/exe where it allows.
#[inline(never)] // its path buffer apart from the constructor's frame
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
/// `envp` is `program_environment`'s; a NULL `environ` stays NULL, as
/// natively.
fn give_back_environment(h: &Handoff, envp: *const *const c_char, lib_path: &[u8]) {
    if envp.is_null() {
        return;
    }
    // SAFETY: `envp` is glibc's environ, which still points at the initial
    // stack's array (no constructor of the program has run; ours runs
    // before them), or the loader's pointer to that array: it has at least
    // `env_leading` entries before its NULL (the launcher counted).
    unsafe {
        let mut n = 0;
        while !(*envp.add(n)).is_null() {
            n += 1;
        }
        // The auxiliary vector follows; our entry, last before AT_NULL,
        // becomes its end (nothing after it changes meaning).
        let auxv = envp.add(n + 1) as *mut u64;
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
            let last = *envp.add(leading - 1);
            let len = core::ffi::CStr::from_ptr(last).to_bytes().len();
            init::set_kernel_env_start(last as u64 + len as u64 + 1);
        }
        let program_env = if leading <= n { envp.add(leading) } else { envp };
        if !environ.is_null() {
            environ = program_env;
        }
        if h.preload_prefixed != 0 {
            init::unprefix_preload(program_env.cast(), lib_path);
        }
    }
}

/// An object the loader has loaded: its name as the loader keeps it (what
/// dladdr's `dli_fname` gives) and where its ELF header is mapped (dladdr's
/// `dli_fbase`: the start of its lowest PT_LOAD).
#[derive(Clone, Copy)]
struct Object {
    name: *const c_char,
    header: u64,
    /// The executable PT_LOAD holding the address, page-aligned as mapped.
    text: (u64, u64),
}

/// The objects holding `addrs` (code addresses the loader resolved), found in
/// one walk of the loader's list by their PT_LOAD ranges. Not dladdr: it
/// also looks for the nearest symbol, scanning every dynamic symbol of the
/// object (3,000 in libc, their pages faulted in), which we do not need.
fn objects_holding<const N: usize>(addrs: [u64; N]) -> [Option<Object>; N] {
    struct Search<const N: usize> {
        addrs: [u64; N],
        found: [Option<Object>; N],
    }
    extern "C" fn visit<const N: usize>(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> i32 {
        // SAFETY: `data` is the Search passed to dl_iterate_phdr below, alive
        // and not otherwise borrowed during the call; `info` is the loader's
        // description of one object for the duration of this callback, its
        // `dlpi_phdr` an array of `dlpi_phnum` program headers.
        let (search, info) = unsafe { (&mut *data.cast::<Search<N>>(), &*info) };
        let phdrs = if info.dlpi_phdr.is_null() {
            &[][..]
        } else {
            // SAFETY: as above.
            unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) }
        };
        let loads = || phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD);
        let Some(lowest) = loads().map(|p| p.p_vaddr & !0xfff).min() else { return 0 };
        let bias = info.dlpi_addr;
        for (addr, found) in search.addrs.iter().zip(search.found.iter_mut()) {
            let inside = |p: &libc::Elf64_Phdr| {
                let start = bias.wrapping_add(p.p_vaddr);
                *addr >= start && *addr - start < p.p_memsz
            };
            if found.is_some() {
                continue;
            }
            if let Some(p) = loads().find(|p| inside(p)) {
                let start = bias.wrapping_add(p.p_vaddr);
                let text = if p.p_flags & libc::PF_X != 0 {
                    (start & !0xfff, start.wrapping_add(p.p_memsz).wrapping_add(0xfff) & !0xfff)
                } else {
                    (0, 0)
                };
                *found = Some(Object { name: info.dlpi_name, header: bias.wrapping_add(lowest), text });
            }
        }
        // Stop the walk once every address is placed.
        i32::from(search.found.iter().all(Option::is_some))
    }
    let mut search = Search { addrs, found: [None; N] };
    // SAFETY: dl_iterate_phdr walks the loader's list under its lock and
    // calls `visit` with `search`, which outlives the call; no syscall
    // (the lock is uncontended in the constructor).
    unsafe { libc::dl_iterate_phdr(Some(visit::<N>), (&raw mut search).cast()) };
    search.found
}

/// This library's absolute path into `out`; its length (0 if unknown).
/// `own`: the object holding this function.
fn own_path(own: Option<Object>, out: &mut [u8; PATH_LEN]) -> usize {
    let path: &[u8] = if let Some(o) = own.filter(|o| !o.name.is_null()) {
        // SAFETY: the loader's name of the object, a NUL-terminated path it
        // keeps for as long as the object is loaded.
        unsafe { core::ffi::CStr::from_ptr(o.name).to_bytes() }
    } else {
        b""
    };
    // Relative (LD_PRELOAD=./lib...): against the directory we start in.
    init::absolute_into(path, out)
}
