//! usertrap-launcher: start a program under the interposer when the kernel
//! cannot be asked to (see `sigsafe::exec` for why).
//!
//! A static executable without libc, linked with the gate as a segment at
//! GATE_ADDR, so the syscalls it makes are exempt from an inherited seccomp
//! filter from its very first instruction. It is exec'd with the program's
//! argv and environment plus one control entry, USERTRAP_EXEC=<fd>:<seccomp
//! armed>:<name>, where <fd> is the program's ELF file, already checked by
//! the caller (the library, or the `usertrap` command for a first process).
//! It then:
//! 1. starts the interposer: for a dynamically linked program only as a
//!    bridge (SIGSYS handler, backend, no patching) until the library, which
//!    the loader preloads, takes over in the program's constructor phase;
//!    for a static program fully, for good (it is that program's library);
//! 2. maps the program and its interpreter as binfmt_elf would (`load`);
//! 3. builds the initial stack the program expects (`stack`): its argv as
//!    given (the same strings, so /proc/self/cmdline is the program's), its
//!    environment without the control entry, an auxiliary vector describing
//!    the program, AT_EXECFN the name it was exec'd by, and, for the library
//!    in a dynamic program, an entry of ours pointing at the hand-off record;
//! 4. names the process after the program (comm) and jumps to the entry.
//!
//! What stays the launcher's: the kernel's /proc/self/exe (answered for
//! readlink by the interposer; see `sigsafe::exec::readlink`), the brk area
//! (after the launcher's, which malloc does not mind), /proc/self/auxv, and
//! the launcher's own pages (about 1 MiB, left mapped).

mod load;
mod stack;

use crate::backend;
use crate::handoff::{Handoff, AT_USERTRAP_HANDOFF, HANDOFF_MAGIC, OWNED_ORDER, PATH_LEN};
use crate::init::{self, Role, Startup};
use crate::sigsafe::exec::CONTROL;
use crate::sigsafe::log::{Buf, Line};
use crate::sigsafe::{raw, signals, thread};
use load::Elf;
use stack::Initial;

/// The library's file name, installed beside the launcher.
const LIBRARY_NAME: &[u8] = b"libusertrap.so";
/// Exit status when the launcher cannot start the program.
const EXIT_CANNOT_START: u64 = 127;
const PR_SET_NAME: u64 = 15;

struct HandoffCell(core::cell::UnsafeCell<Handoff>);
// SAFETY: written once by the launcher's main thread before the program
// starts, then only read (by the library's constructor).
unsafe impl Sync for HandoffCell {}
static HANDOFF: HandoffCell = HandoffCell(core::cell::UnsafeCell::new(Handoff::empty()));

/// Keeps the entry point's callee in the link (it is called from assembly).
#[used]
static KEEP_MAIN: extern "C" fn(*const u64) -> ! = ut_launcher_main;

/// The control entry: (its pointer, the descriptor, seccomp armed, the name).
struct Control {
    entry: u64,
    fd: i64,
    seccomp_armed: bool,
    execfn: u64,
}

fn cstr_at(p: u64) -> &'static [u8] {
    // SAFETY: `p` points at a NUL-terminated string of the initial stack,
    // which stays mapped and unchanged while the launcher runs.
    unsafe { core::ffi::CStr::from_ptr(p as *const core::ffi::c_char).to_bytes() }
}

fn find_control(initial: &Initial) -> Option<Control> {
    (0..initial.envc()).find_map(|i| {
        let entry = initial.env(i);
        let s = cstr_at(entry);
        let rest = s.strip_prefix(CONTROL)?;
        let mut parts = rest.splitn(3, |&b| b == b':');
        let fd = parse_num(parts.next()?)?;
        let armed = parts.next()? == b"1";
        let name = parts.next()?;
        let execfn = entry + (s.len() - name.len()) as u64;
        Some(Control { entry, fd: fd as i64, seccomp_armed: armed, execfn })
    })
}

fn parse_num(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 9 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| b.is_ascii_digit().then(|| n * 10 + (b - b'0') as u64))
}

fn fail(what: &[u8], detail: &str) -> ! {
    Line::new().str("usertrap-launcher: ").bytes(what).str(": ").str(detail).emit();
    raw::syscall(raw::SYS_exit_group, EXIT_CANNOT_START, 0, 0, 0);
    loop {
        core::hint::spin_loop();
    }
}

/// readlink into `out`; the length (0 on failure).
fn readlink(path: &[u8], out: &mut [u8; PATH_LEN]) -> usize {
    let r = raw::syscall(libc::SYS_readlink, path.as_ptr() as u64, out.as_mut_ptr() as u64, (PATH_LEN - 1) as u64, 0);
    if r > 0 { r as usize } else { 0 }
}

fn basename(p: &[u8]) -> &[u8] {
    p.rsplit(|&b| b == b'/').next().unwrap_or(p)
}

#[no_mangle]
pub extern "C" fn ut_launcher_main(sp: *const u64) -> ! {
    // SAFETY: the entry point passes the kernel's initial stack pointer.
    let initial = unsafe { Initial::parse(sp) };
    let Some(ctl) = find_control(&initial) else {
        fail(b"no program to start", "the launcher is run by libusertrap.so and the `usertrap` command (USERTRAP_EXEC is not set)");
    };
    let execfn = cstr_at(ctl.execfn);

    // Our own path (the kernel's /proc/self/exe, for now) and the library's beside it.
    let mut own = [0u8; PATH_LEN];
    let own_len = readlink(b"/proc/self/exe\0", &mut own);
    let own_path = own.get(..own_len).unwrap_or(&[]);
    let dir_len = own_path.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let mut lib = [0u8; PATH_LEN];
    let lib_len = Buf::new(&mut lib).put(own_path.get(..dir_len).unwrap_or(&[])).put(LIBRARY_NAME).len;
    // The program's own path: what /proc/self/exe would name natively.
    let mut exe = [0u8; PATH_LEN];
    let mut fd_link = [0u8; 32];
    Buf::new(&mut fd_link).put(b"/proc/self/fd/").num(ctl.fd as u64).put(b"\0");
    let exe_len = readlink(&fd_link, &mut exe);

    let program = match Elf::read(ctl.fd) {
        Ok(e) => e,
        Err(e) => fail(execfn, e),
    };
    let role = if program.has_interp { Role::LauncherBridge } else { Role::LauncherFull };
    init::start(&Startup {
        role,
        envp: initial.envp.cast(),
        skip_env: ctl.entry as *const u8,
        hwcap2: initial.aux(stack::AT_HWCAP2),
        lib_path: lib.get(..lib_len).unwrap_or(&[]),
        launcher_path: own_path,
        exe_path: exe.get(..exe_len).unwrap_or(&[]),
        seccomp_armed: ctl.seccomp_armed,
        handoff: None,
    });

    let image = match program.map() {
        Ok(i) => i,
        Err(e) => fail(execfn, e),
    };
    raw::syscall(libc::SYS_close, ctl.fd as u64, 0, 0, 0);
    let interp_image = if program.has_interp {
        let fd = raw::syscall(libc::SYS_openat, -100i64 as u64, program.interp.as_ptr() as u64, (libc::O_RDONLY | libc::O_CLOEXEC) as u64, 0);
        if fd < 0 {
            fail(&program.interp, "cannot open the program's interpreter");
        }
        let img = Elf::read(fd).and_then(|e| e.map());
        raw::syscall(libc::SYS_close, fd as u64, 0, 0, 0);
        match img {
            Ok(i) => Some(i),
            Err(e) => fail(&program.interp, e),
        }
    } else {
        None
    };

    // The process's name, as the kernel would set it from the file name.
    let mut comm = [0u8; 16];
    let name = if execfn.starts_with(b"/dev/fd/") { basename(exe.get(..exe_len).unwrap_or(&[])) } else { basename(execfn) };
    Buf::new(&mut comm[..15]).put(name);
    raw::syscall(raw::SYS_prctl, PR_SET_NAME, comm.as_ptr() as u64, 0, 0);

    let extra = if role == Role::LauncherBridge { (AT_USERTRAP_HANDOFF, fill_handoff(exe.get(..exe_len).unwrap_or(&[]))) } else { (stack::AT_NULL, 0) };
    let words = initial.block_words();
    let bytes = (words * 8 + 4095) & !4095;
    let block = match raw::mmap_anon(bytes, libc::PROT_READ | libc::PROT_WRITE) {
        Ok(p) => p,
        Err(_) => fail(execfn, "out of memory for the initial stack"),
    };
    // SAFETY: a fresh private mapping of `bytes` >= words * 8 bytes.
    let out = unsafe { core::slice::from_raw_parts_mut(block as *mut u64, words) };
    let n = initial.build(out, ctl.entry, &image, interp_image.as_ref(), ctl.execfn, extra);
    let entry = interp_image.as_ref().map_or(image.entry, |i| i.entry);
    // SAFETY: the block is a complete initial stack for the image we mapped,
    // and `entry` is its (or its interpreter's) entry point.
    unsafe { crate::arch::ut_launcher_jump(block as *const u64, n as u64, entry) }
}

/// What the library of the started image needs from us (see `handoff`).
fn fill_handoff(exe: &[u8]) -> u64 {
    // SAFETY: single-threaded, before the program starts; nobody reads it yet.
    let h = unsafe { &mut *HANDOFF.0.get() };
    h.seccomp_armed = backend::is_seccomp() as u64;
    for (slot, &sig) in h.owned_actions.iter_mut().zip(OWNED_ORDER.iter()) {
        *slot = signals::program_action(sig);
    }
    h.blocked_owned = thread::current_unchecked().map_or(0, |a| a.app_blocked_owned.get());
    Buf::new(&mut h.exe_path).put(exe).put(b"\0");
    h.magic = HANDOFF_MAGIC;
    h as *const Handoff as u64
}
