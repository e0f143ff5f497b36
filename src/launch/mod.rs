//! usertrap-launcher: start a program under the interposer when the kernel
//! cannot be asked to (see `emulate::exec` for why).
//!
//! A static executable without libc, linked with the gate as a segment at
//! GATE_ADDR, so the syscalls it makes are exempt from an inherited seccomp
//! filter from its very first instruction. It is exec'd with the program's
//! argv and environment plus one control entry, USERTRAP_EXEC=<fd>:<seccomp
//! armed>:<entries appended>:<LD_PRELOAD prefixed>:<comm, hex>:<name>
//! (see `emulate::exec`), where <fd> is the program's ELF file, already checked by
//! the caller (the library, or the `usertrap` command for a first process).
//! It then:
//! 1. starts the interposer: for a dynamically linked program only as a
//!    bridge (SIGSYS handler, backend, no patching of trapped sites) until
//!    the library, which the loader preloads, takes over in the program's
//!    constructor phase; for a static program fully, for good (it is that
//!    program's library);
//! 2. maps the program and its interpreter as binfmt_elf would (`load`),
//!    and patches the interpreter's `mov $nr,%eax; syscall` sites before it
//!    runs (patch::install::patch_loader), so that the loader's calls take
//!    the fast path from the first one; the library takes the sites over;
//! 3. builds the initial stack the program expects (`stack`): its argv as
//!    given (the same strings, so /proc/self/cmdline is the program's), its
//!    environment without the control entry, an auxiliary vector describing
//!    the program, AT_EXECFN the name it was exec'd by, and, for the library
//!    in a dynamic program, an entry of ours pointing at the hand-off record;
//! 4. names the process after the program (comm) and jumps to the entry.
//!
//! What stays the launcher's: the kernel's /proc/self/exe (answered for
//! readlink by the interposer; see `emulate::exec::readlink`), the brk area
//! (after the launcher's, which malloc does not mind), /proc/self/auxv, and
//! the launcher's own pages (about 1 MiB, left mapped, and its own stack,
//! 1 MiB of .bss: the kernel's stack is the program's, whole).

mod load;
mod stack;

use crate::emulate::signals;
use crate::rt::log::{Buf, Line};
use crate::rt::{raw, thread};
use crate::start::handoff::{Handoff, AT_USERTRAP_HANDOFF, HANDOFF_MAGIC, OWNED_ORDER, PATH_LEN};
use crate::start::init::{self, Role, Startup};
use crate::trap::backend;
use load::Elf;
use stack::Initial;
use usertrap_core::{elf, exec_control};

/// The library's file name, installed beside the launcher.
const LIBRARY_NAME: &[u8] = b"libusertrap.so";
/// Exit status when the launcher cannot start the program.
const EXIT_CANNOT_START: u64 = 127;

struct HandoffCell(core::cell::UnsafeCell<Handoff>);
// SAFETY: written once by the launcher's main thread before the program
// starts, then only read (by the library's constructor).
unsafe impl Sync for HandoffCell {}
static HANDOFF: HandoffCell = HandoffCell(core::cell::UnsafeCell::new(Handoff::empty()));

/// Keeps the entry point's callee in the link (it is called from assembly).
#[used]
static KEEP_MAIN: unsafe extern "C" fn(*const u64) -> ! = ut_launcher_main;

/// The control entry (see `emulate::exec`).
struct Control {
    /// The entry itself (left out of the program's environment).
    entry: u64,
    /// The program's ELF file.
    fd: i64,
    /// The process already carries our seccomp filter.
    seccomp_armed: bool,
    /// Entries put in front of the program's environment (right after this
    /// one), LD_PRELOAD prefixed.
    leading: usize,
    preload_prefixed: bool,
    /// The process's name (comm), at most 15 bytes, NUL-terminated.
    comm: [u8; exec_control::COMM_MAX + 1],
    /// AT_EXECFN: the name the program was exec'd by.
    execfn: u64,
}

fn cstr_at(p: u64) -> &'static [u8] {
    // SAFETY: `p` points at a NUL-terminated string of the initial stack,
    // which stays mapped and unchanged while the launcher runs.
    unsafe { core::ffi::CStr::from_ptr(p as *const core::ffi::c_char).to_bytes() }
}

/// The first environment entry that is a well-formed control entry
/// (usertrap-core's `exec_control`, which the library and the `usertrap`
/// command write).
fn find_control(initial: &Initial) -> Option<Control> {
    (0..initial.envc()).find_map(|i| {
        let entry = initial.env(i);
        let d = exec_control::decode_entry(cstr_at(entry))?;
        Some(Control {
            entry,
            fd: i64::from(d.fd),
            seccomp_armed: d.seccomp_armed,
            leading: d.leading as usize,
            preload_prefixed: d.preload_prefixed,
            comm: d.comm,
            execfn: d.execfn.as_ptr() as u64,
        })
    })
}

fn fail(what: &[u8], detail: &str) -> ! {
    Line::new().str("usertrap-launcher: ").bytes(what).str(": ").str(detail).emit();
    raw::exit_group(EXIT_CANNOT_START as i32)
}

/// readlink into `out` (at most PATH_LEN - 1 bytes); the length (0 on failure).
fn readlink(path: &[u8], out: &mut [u8]) -> usize {
    let room = out.get_mut(..PATH_LEN - 1).unwrap_or_default();
    raw::cstr(path).and_then(|p| raw::readlink(p, room)).unwrap_or(0)
}

/// Room for the launcher's three paths (its own, the library's, the
/// program's), packed one after another: as three page-sized arrays in
/// `ut_launcher_main`'s frame they were zeroed whole, three pages of the
/// launcher's stack touched (a page fault each) for a few dozen bytes.
struct PathRoom(core::cell::UnsafeCell<[u8; 3 * PATH_LEN]>);
// SAFETY: taken once, by `ut_launcher_main` on the launcher's one thread.
unsafe impl Sync for PathRoom {}
#[link_section = ".bss.usertrap_large"]
static PATHS: PathRoom = PathRoom(core::cell::UnsafeCell::new([0; 3 * PATH_LEN]));

/// Fill the front of `room` (at most PATH_LEN bytes) with `fill`, which
/// returns the length written; split there: (the path, the rest).
fn take_path(room: &'static mut [u8], fill: impl FnOnce(&mut [u8]) -> usize) -> (&'static [u8], &'static mut [u8]) {
    let len = fill(room.get_mut(..PATH_LEN).unwrap_or_default()).min(PATH_LEN);
    let (path, rest) = room.split_at_mut(len.min(room.len()));
    (path, rest)
}

/// The launcher's Rust entry, called by `_start` (launcher_x86_64.s).
///
/// # Safety
/// `sp` is the kernel's initial stack pointer (argc, argv, envp, auxv).
#[no_mangle]
pub unsafe extern "C" fn ut_launcher_main(sp: *const u64) -> ! {
    // A guard page at the bottom of our own stack (a page of our .bss, see
    // launcher_x86_64.s; only its address is taken).
    let guard = core::ptr::addr_of!(crate::rt::arch::ut_launcher_stack) as u64;
    // SAFETY: that page is reserved as the guard: nothing lives in it.
    let _ = unsafe { raw::guard_pages(guard, 4096) };
    // SAFETY: the caller's contract: the kernel's initial stack pointer.
    let initial = unsafe { Initial::parse(sp) };
    let Some(ctl) = find_control(&initial) else {
        fail(
            b"no program to start",
            "the launcher is run by libusertrap.so and the `usertrap` command (USERTRAP_EXEC is not set)",
        );
    };
    let execfn = cstr_at(ctl.execfn);

    // Our own path, and the library's beside it: the name we were exec'd by
    // (absolute: the library and the `usertrap` command use absolute paths),
    // else the kernel's /proc/self/exe (there may be no /proc in a chroot).
    // SAFETY: the launcher's one thread, and the only reference taken.
    let room = unsafe { &mut *PATHS.0.get() };
    let execfn_self = cstr_at(initial.aux(stack::AT_EXECFN));
    let (own_path, room) = take_path(room, |out| {
        if execfn_self.first() == Some(&b'/') {
            Buf::new(out).put(execfn_self).len
        } else {
            readlink(b"/proc/self/exe\0", out)
        }
    });
    let dir_len = own_path.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    // Exec'd through kept descriptors (emulate::exec_keep), our own name is
    // /dev/fd/N: the library is the one the exec'ing image named.
    let kept = carried_kept(&initial, &ctl);
    let (lib_path, room) = take_path(room, |out| match kept {
        Some(k) if k.by_fd => Buf::new(out).put(b"/proc/self/fd/").num(k.kept.lib as u64).len,
        Some(k) => Buf::new(out).put(k.lib_path).len,
        None => Buf::new(out).put(own_path.get(..dir_len).unwrap_or(&[])).put(LIBRARY_NAME).len,
    });
    // The program's own path: what /proc/self/exe would name natively.
    let (exe_path, _) = take_path(room, |out| readlink(&crate::emulate::exec_target::fd_path(ctl.fd), out));

    let program = match Elf::read(ctl.fd, load::Role::Program) {
        Ok(e) => e,
        Err(e) => fail(execfn, e),
    };
    // A dynamic program whose loader cannot open the library (kept by
    // descriptor, with no /proc in the new root) is served by us for its
    // whole life, as a static one: its loader would print "cannot be
    // preloaded" on the program's stderr and run it unmonitored. The
    // loader run as a program (`ld.so prog`, `ldd`) is served as a
    // program's loader is: it loads the library too, which takes over.
    let loads_library = program.has_interp || program.is_loader;
    let role = if loads_library && library_reachable(lib_path) { Role::LauncherBridge } else { Role::LauncherFull };
    init::start(&Startup {
        role,
        envp: initial.envp.cast(),
        skip_env: ctl.entry as *const u8,
        hwcap2: initial.aux(stack::AT_HWCAP2),
        lib_path,
        launcher_path: own_path,
        exe_path,
        seccomp_armed: ctl.seccomp_armed,
        seccomp_filtered: false,
        handoff: None,
        default_signals: None,
        libc_header: 0,
        own_text: (0, 0),
        loader_header: 0,
        kept,
    });
    let started = crate::measure::stats::now();

    let image = match program.map() {
        Ok(i) => i,
        Err(e) => fail(execfn, e),
    };
    let _ = raw::close(ctl.fd as i32);
    if let Some((start, len)) = image.eh_frame {
        // Function starts for the patcher's site check (static programs
        // often have no .eh_frame_hdr).
        crate::patch::hints::add_eh_frame_hint(image.base, start, len);
    }
    let interp_image = if program.has_interp {
        // The kernel opens the interpreter without a descriptor of the
        // program's: where every one below the soft limit is taken (the
        // program's own descriptor sat above it), raise the limit for it.
        let open = || raw::open_cwd(program.interp, libc::O_RDONLY | libc::O_CLOEXEC, 0);
        // The path up to its NUL (Elf::read checked there is one).
        let interp_name = program.interp.split(|&b| b == 0).next().unwrap_or(&[]);
        let Ok(fd) = raw::with_spare_fd(open, |r| *r == Err(libc::EMFILE as i64)) else {
            fail(interp_name, "cannot open the program's interpreter");
        };
        let img = Elf::read(fd.into(), load::Role::Interpreter).and_then(|e| e.map());
        let _ = raw::close(fd);
        match img {
            Ok(i) => Some(i),
            Err(e) => fail(interp_name, e),
        }
    } else {
        None
    };

    // The loader: the program's interpreter, or the program itself.
    let loader_image = interp_image.as_ref().or(program.is_loader.then_some(&image));
    if let (Some(i), Role::LauncherBridge) = (loader_image, role) {
        patch_loader(i, carried_sites(&initial, &ctl));
    }

    // The process's name, as the kernel would have set it.
    let _ = raw::prctl_set_name(&ctl.comm);

    // The loader needs our entries (LD_PRELOAD) and the library takes them
    // back out; a static program gets its own environment right away.
    let words = initial.block_words();
    let bytes = (words * 8 + 4095) & !4095;
    let block = match raw::mmap_anon(bytes, libc::PROT_READ | libc::PROT_WRITE) {
        Ok(p) => p,
        Err(_) => fail(execfn, "out of memory for the initial stack"),
    };
    let (extra, skip_leading) = if role == Role::LauncherBridge {
        ((AT_USERTRAP_HANDOFF, fill_handoff(exe_path, &ctl, (block, bytes as u64), own_image(&initial), started)), 0)
    } else {
        if ctl.preload_prefixed {
            init::unprefix_preload(initial.envp, lib_path);
        }
        if loads_library {
            // Its loader cannot open the library (`role` above).
            init::drop_from_preload(initial.envp, lib_path);
        }
        ((stack::AT_NULL, 0), ctl.leading)
    };
    // SAFETY: a fresh private mapping of `bytes` >= words * 8 bytes.
    let out = unsafe { core::slice::from_raw_parts_mut(block as *mut u64, words) };
    let (n, auxv_at) = initial.build(out, (ctl.entry, skip_leading), &image, interp_image.as_ref(), ctl.execfn, extra);
    if role == Role::LauncherFull {
        // What /proc/self/auxv and /proc/self/environ show (where the kernel
        // lets us: CAP_SYS_RESOURCE); in a dynamic program the library does it.
        init::set_kernel_auxv(out.get(auxv_at..).unwrap_or_default());
        if ctl.leading > 0 {
            let last = cstr_at(initial.env(ctl.leading));
            init::set_kernel_env_start(initial.env(ctl.leading) + last.len() as u64 + 1);
        }
    }
    let entry = interp_image.as_ref().map_or(image.entry, |i| i.entry);
    if role == Role::LauncherBridge {
        mark_jump();
    }
    // The block goes where the kernel's own block was, so the program has the
    // whole stack below (RLIMIT_STACK) as natively; that block is not read again.
    // SAFETY: the block is a complete initial stack for the image we mapped,
    // and `entry` is its (or its interpreter's) entry point.
    unsafe { crate::rt::arch::ut_launcher_jump(block as *const u64, n as u64, entry, initial.end()) }
}

/// Our image's pages, [start, end), from our own program headers (the
/// kernel's AT_PHDR for us): every PT_LOAD but the gate's.
fn own_image(initial: &Initial) -> (u64, u64) {
    let (phdr, phnum) = (initial.aux(stack::AT_PHDR), initial.aux(stack::AT_PHNUM));
    let len = (phnum as usize).min(elf::MAX_PHNUM) * elf::PHDR_SIZE;
    if phdr == 0 {
        return (0, 0);
    }
    // SAFETY: the kernel maps our program headers (AT_PHDR, AT_PHNUM
    // entries of PHDR_SIZE bytes) for our whole life, and nothing writes them.
    let table = unsafe { core::slice::from_raw_parts(phdr as *const u8, len) };
    let (mut lo, mut hi) = (u64::MAX, 0);
    for p in elf::phdrs(table, elf::PHDR_SIZE) {
        if p.p_type == elf::PT_LOAD && p.p_vaddr < crate::rt::arch::GATE_ADDR {
            lo = lo.min(p.p_vaddr);
            hi = hi.max(p.p_vaddr + p.p_memsz);
        }
    }
    if hi == 0 {
        return (0, 0);
    }
    (lo & !4095, (hi + 4095) & !4095)
}

/// The exec'ing library's list of sites to pre-patch (the value of its
/// `USERTRAP_SITES=` entry): only among the entries it put in front of the
/// environment, right after the control entry (a program cannot pass one
/// of its own).
fn carried_sites(initial: &Initial, ctl: &Control) -> &'static [u8] {
    (0..initial.envc())
        .map(|i| initial.env(i))
        .skip_while(|&e| e != ctl.entry)
        .skip(1)
        .take(ctl.leading)
        .find_map(|e| cstr_at(e).strip_prefix(crate::patch::install::prepatch::ENTRY))
        .unwrap_or(&[])
}

/// The exec'ing library's kept descriptors (emulate::exec_keep), among the
/// entries it put in front, like `carried_sites`.
fn carried_kept(initial: &Initial, ctl: &Control) -> Option<crate::emulate::exec_keep::Carried<'static>> {
    use crate::emulate::exec_keep::{parse, ENTRY};
    (0..initial.envc())
        .map(|i| initial.env(i))
        .skip_while(|&e| e != ctl.entry)
        .skip(1)
        .take(ctl.leading)
        .find_map(|e| parse(cstr_at(e).strip_prefix(ENTRY)?))
}

/// Whether the loader can open the library at `path` (what LD_PRELOAD names).
/// In a frame of its own: its page of path is not in `ut_launcher_main`'s,
/// under everything the launcher calls after it.
#[inline(never)]
fn library_reachable(path: &[u8]) -> bool {
    let mut p = [0u8; PATH_LEN + 1];
    Buf::new(&mut p).put(path).put(b"\0");
    raw::cstr(&p).is_ok_and(|p| raw::faccessat(libc::AT_FDCWD, p, libc::R_OK).is_ok())
}

/// Patch the loader's syscall sites before it runs (install::patch_loader,
/// then those `carried` from the exec'ing image: install::patch_carried_loader),
/// into the hand-off record, unless patching is off (USERTRAP_PATCH=0); and
/// libc's carried sites once the loader has mapped libc (install::await_libc).
fn patch_loader(interp: &load::Image, carried: &'static [u8]) {
    if !crate::patch::install::LOADER_PATCHING.load(core::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let mut sites = [crate::patch::install::LoaderSite::default(); crate::patch::install::LOADER_SITES];
    // The carried sites first: their checksum is over the original bytes,
    // which patch_loader's own jumps would change.
    let mut n = 0;
    if !carried.is_empty() && crate::patch::install::prepatch::ENABLED.load(core::sync::atomic::Ordering::Relaxed) {
        n += crate::patch::install::patch_carried_loader(interp.base, carried);
    }
    n += crate::patch::install::patch_loader(interp.text, interp.eh_frame_hdr, &mut sites);
    sites_patched(n);
    // libc's carried sites: once the loader maps libc, before it runs.
    crate::patch::install::await_libc(carried, sites_patched);
}

/// `n` more sites patched by the launcher: the hand-off names them (and
/// the registry and regions as they are now) for the library to take over.
fn sites_patched(n: usize) {
    if n == 0 {
        return;
    }
    // SAFETY: the launcher's one thread (before the program starts, or the
    // loader mapping libc before it runs anything of it); the library reads
    // the record only in its constructor, later, on this same thread.
    let h = unsafe { &mut *HANDOFF.0.get() };
    h.loader_site_count += n as u64;
    h.registry = crate::patch::registry::snapshot();
    for (out, (addr, len)) in h.loader_regions.iter_mut().zip(crate::patch::install::loader_regions()) {
        *out = [addr, len];
    }
}

/// The last of the launcher's phase marks: it jumps to the loader now.
fn mark_jump() {
    // SAFETY: single-threaded, before the program starts; nobody reads it yet.
    let h = unsafe { &mut *HANDOFF.0.get() };
    if let Some(m) = h.launcher_marks.get_mut(2) {
        *m = crate::measure::stats::now();
    }
}

/// What the library of the started image needs from us (see `handoff`).
fn fill_handoff(exe: &[u8], ctl: &Control, block: (u64, u64), image: (u64, u64), started: u64) -> u64 {
    // SAFETY: single-threaded, before the program starts; nobody reads it yet.
    let h = unsafe { &mut *HANDOFF.0.get() };
    h.seccomp_armed = backend::is_seccomp() as u64;
    for (slot, &sig) in h.owned_actions.iter_mut().zip(OWNED_ORDER.iter()) {
        *slot = signals::takeover::program_action(sig);
    }
    h.blocked_owned = thread::current_unchecked().map_or(0, |a| a.app_blocked_owned.get());
    h.env_leading = ctl.leading as u64;
    h.sigtable = crate::rt::sigtable::process_table() as u64;
    // Mapped now, filled while the loader runs, adopted by the library.
    h.stats = thread::current_unchecked().and_then(crate::measure::stats::table_of).map_or(0, |t| t as u64);
    let (image_start, image_end) = image;
    let area = thread::current_unchecked().map_or((0, 0), thread::mapping_of);
    h.launcher_maps = [[image_start, image_end - image_start], [area.0, area.1], [block.0, block.1]];
    h.preload_prefixed = ctl.preload_prefixed as u64;
    h.launcher_marks = [crate::measure::phases::begun(), started, 0];
    Buf::new(&mut h.exe_path).put(exe).put(b"\0");
    h.magic = HANDOFF_MAGIC;
    h as *const Handoff as u64
}
