//! execve and execveat.
//!
//! A seccomp filter survives exec and cannot be removed, while our handlers
//! do not: the new image's first syscall (the loader's) would kill it. So the
//! library never lets the kernel start the program. It execs the launcher
//! instead (`usertrap-launcher`, beside the library; see `launch`), which
//! starts with the gate mapped from its own file, serves the loader's
//! syscalls, loads the program as the kernel would and starts it; the
//! library, preloaded again, takes over in the new image. A static program
//! stays with the launcher for its whole life. Under SUD the kernel clears
//! dispatch at exec and LD_PRELOAD alone would do for dynamic programs, but
//! the launcher also covers the loader's syscalls and static programs, so
//! both backends take the same road.
//!
//! What the program can observe stays native: every error is decided before
//! the launcher's exec (`exec_target`), argv and /proc/self/cmdline are the
//! program's own (a `#!` script's argv is rewritten here as the kernel
//! would), AT_EXECFN is the name the program passed, and /proc/self/exe is
//! answered with the program's path (readlink is emulated where the launcher
//! started the image). After chroot or a mount namespace change the
//! launcher and the library are reached through descriptors kept before it
//! (`exec_keep`). The launcher learns what to load from one entry it
//! removes from the environment before the program sees it:
//! `USERTRAP_EXEC=<fd>:<seccomp armed 0|1>:<entries in front>:<LD_PRELOAD
//! prefixed 0|1>:<comm, hex>:<file name as passed>` (usertrap-core's
//! `exec_control`, which the `usertrap` command writes too). The two middle
//! fields let the new image take our LD_PRELOAD and USERTRAP_* entries back
//! out of its environment, so the program sees the one it passed (`env -i`
//! stays empty).
//!
//! Exceptions, each with a one-line note on stderr: a set-user-ID program
//! runs with the caller's credentials under seccomp (the launcher loads it;
//! when no_new_privs is set a native exec does the same), and is exec'd natively, unmonitored,
//! under SUD (where it would otherwise lose its privileges); a 32-bit program
//! cannot be loaded (refused with ENOEXEC under seccomp, exec'd natively
//! under SUD).
//!
//! Never: let the kernel exec the program itself.

use crate::emulate::exec_keep::{self, Kept};
use crate::emulate::exec_target::{self, Target, AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, MAX_PREFIX, PATH_MAX};
use crate::emulate::own_filter;
use crate::emulate::signals;
use crate::measure::report;
use crate::rt::log::{Buf, Line};
use crate::rt::raw;
use crate::rt::thread::ThreadArea;
use crate::trap::backend;
use core::sync::atomic::Ordering::Relaxed;
use usertrap_core::exec_control::Control;
use usertrap_core::sink::{Sink, SliceSink};

/// The most each of ExecEnv's strings holds, its NUL included.
const STRING_MAX: usize = 4096;

/// Environment entries the library carries into exec'd programs (set at start).
/// The three strings every image records go one after another into
/// `packed`, not into a page-sized array each: start-up writes them all on
/// one page of .bss, which costs one page fault instead of three (repr(C),
/// lengths first: they share that page).
#[repr(C)]
pub struct ExecEnv {
    /// Length of the LD_PRELOAD entry, its NUL included (0: not recorded).
    preload_len: usize,
    /// Length of the library's path inside the LD_PRELOAD entry.
    path_len: usize,
    /// Where the launcher's path starts in `packed`, and its length with its
    /// NUL (0: no launcher known).
    launcher_at: usize,
    launcher_len: usize,
    /// Where the USERTRAP_* entries start in `packed`, and their length.
    settings_at: usize,
    settings_len: usize,
    /// "LD_PRELOAD=<absolute path of this library>\0", then the launcher's
    /// absolute path and its NUL, then the process's USERTRAP_* entries,
    /// NUL-terminated one after another; each at most STRING_MAX bytes.
    packed: [u8; 3 * STRING_MAX],
    /// The program's executable when the kernel's /proc/self/exe names the
    /// launcher instead, NUL-terminated (empty: the kernel's is right).
    /// Written only in an image the launcher started.
    exe_path: [u8; STRING_MAX],
}

impl ExecEnv {
    /// The part of `packed` from `at`, at most STRING_MAX bytes.
    fn window(&mut self, at: usize) -> &mut [u8] {
        let end = (at + STRING_MAX).min(self.packed.len());
        self.packed.get_mut(at..end).unwrap_or(&mut [])
    }

    /// Record "LD_PRELOAD=<lib_path>\0" (first: the other strings follow it).
    pub fn put_preload(&mut self, lib_path: &[u8]) {
        let mut entry = Buf::new(self.window(0));
        entry.put(LD_PRELOAD).put(lib_path);
        let path_len = entry.len - LD_PRELOAD.len();
        entry.put(b"\0");
        let len = entry.len;
        (self.preload_len, self.path_len) = (len, path_len);
        self.launcher_at = len;
        self.launcher_len = 0;
    }

    /// Record the launcher's path (after the LD_PRELOAD entry): its bytes
    /// with the NUL, for the caller to check.
    pub fn put_launcher(&mut self, path: &[u8]) -> &[u8] {
        let at = self.preload_len;
        let mut launcher = Buf::new(self.window(at));
        launcher.put(path).put(b"\0");
        let len = launcher.len;
        (self.launcher_at, self.launcher_len) = (at, len);
        self.launcher()
    }

    /// No launcher after all (exec then goes without one).
    pub fn drop_launcher(&mut self) {
        self.launcher_len = 0;
    }

    /// Record the USERTRAP_* entries (last), each followed by a NUL.
    pub fn put_settings<'e>(&mut self, entries: impl Iterator<Item = &'e [u8]>) {
        let at = self.launcher_at + self.launcher_len;
        let mut settings = Buf::new(self.window(at));
        for e in entries {
            settings.put(e).put(b"\0");
        }
        let len = settings.len;
        (self.settings_at, self.settings_len) = (at, len);
    }

    /// "LD_PRELOAD=<path>\0" (empty if not recorded).
    fn preload_entry(&self) -> &[u8] {
        self.packed.get(..self.preload_len).unwrap_or(&[])
    }

    /// The library's path inside the LD_PRELOAD entry.
    fn lib_path(&self) -> &[u8] {
        self.packed.get(LD_PRELOAD.len()..LD_PRELOAD.len() + self.path_len).unwrap_or(&[])
    }

    /// The launcher's path with its NUL (empty: none known).
    fn launcher(&self) -> &[u8] {
        self.packed.get(self.launcher_at..self.launcher_at + self.launcher_len).unwrap_or(&[])
    }

    /// The USERTRAP_* entries, each followed by a NUL.
    fn settings(&self) -> &[u8] {
        self.packed.get(self.settings_at..self.settings_at + self.settings_len).unwrap_or(&[])
    }
}

struct ExecEnvCell(core::cell::UnsafeCell<ExecEnv>);
// SAFETY: written once by the constructor before any trap is armed, then only read.
unsafe impl Sync for ExecEnvCell {}
#[link_section = ".bss.usertrap_large"]
static EXEC_ENV: ExecEnvCell = ExecEnvCell(core::cell::UnsafeCell::new(ExecEnv {
    preload_len: 0,
    path_len: 0,
    launcher_at: 0,
    launcher_len: 0,
    settings_at: 0,
    settings_len: 0,
    packed: [0; 3 * STRING_MAX],
    exe_path: [0; STRING_MAX],
}));

/// Constructor only: record what exec must carry along.
pub fn set_exec_env(f: impl FnOnce(&mut ExecEnv)) {
    // SAFETY: called once, single-threaded, before any trap is armed.
    f(unsafe { &mut *EXEC_ENV.0.get() })
}

fn exec_env() -> &'static ExecEnv {
    // SAFETY: read-only after the constructor.
    unsafe { &*EXEC_ENV.0.get() }
}

/// Start-up only: the program's executable, when /proc/self/exe is wrong.
pub fn set_exe_path(path: &[u8]) {
    set_exec_env(|env| {
        Buf::new(&mut env.exe_path).put(path).put(b"\0");
    });
}

fn cstr(buf: &[u8]) -> &[u8] {
    buf.get(..buf.iter().position(|&b| b == 0).unwrap_or(0)).unwrap_or(&[])
}

/// Start-up only: the kernel's /proc/self/exe is right after all.
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // the constructor's
pub fn clear_exe_path() {
    // Its first byte only: the rest is not read past the NUL.
    set_exec_env(|env| {
        if let Some(first) = env.exe_path.first_mut() {
            *first = 0;
        }
    });
}

/// The program's executable if the launcher started this image, else None.
pub fn exe_path_override() -> Option<&'static [u8]> {
    let p = cstr(&exec_env().exe_path);
    (!p.is_empty()).then_some(p)
}

/// The program is about to change what absolute paths resolve to
/// (exec_keep::changes_paths): keep the launcher and the library by
/// descriptor first, while their paths still lead to them. Fast path too:
/// no buffer to zero or copy here (memset and memcpy may use vector
/// registers, which the fast path leaves alone).
#[cold]
#[inline(never)]
pub fn before_path_change() {
    // Also in a vfork child (posix_spawn's, or one that chroots before its
    // exec): its descriptors are its own copy of the parent's table while
    // the numbers are recorded in memory the parent shares; the parent
    // finds them not to be the files recorded (exec_keep::kept checks each
    // one's device and inode) and keeps its own when it needs them.
    let env = exec_env();
    let launcher = env.launcher();
    if !cstr(launcher).is_empty() {
        // The library's path with its NUL, inside the LD_PRELOAD entry (no
        // copy: on the fast path without FSGSBASE this runs on the
        // program's own stack).
        exec_keep::keep(launcher, env.preload_entry().get(LD_PRELOAD.len()..).unwrap_or(&[]));
    }
}

/// Slow path only: for a change of root (chroot, pivot_root, setns) whose
/// reports go to a USERTRAP_OUTPUT path, what that path leads to now, for
/// [`after_path_change`]. (A site's first call is the slow path's: these
/// calls rarely come twice from one site.)
#[cold]
#[inline(never)]
pub fn output_before_root_change(nr: i64) -> Option<Place> {
    if !matches!(nr, libc::SYS_chroot | libc::SYS_pivot_root | libc::SYS_setns) || OUTPUT_NOTED.load(Relaxed) {
        return None;
    }
    report::output_path().map(output_place)
}

/// What a USERTRAP_OUTPUT template leads to: the file (a device by its
/// number), else the directory it would be made in; 0s where nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Place([u64; 3]);

fn output_place(template: &[u8]) -> Place {
    let key = |path: &[u8]| {
        let mut p = [0u8; STRING_MAX + 1];
        Buf::new(&mut p).put(path).put(b"\0");
        let st = raw::cstr(&p).and_then(|c| raw::newfstatat(AT_FDCWD as i32, c, 0)).ok()?;
        let kind = u64::from(st.st_mode & libc::S_IFMT);
        let is_device = kind == u64::from(libc::S_IFCHR) || kind == u64::from(libc::S_IFBLK);
        Some(if is_device { [kind, st.st_rdev, 0] } else { [kind, st.st_dev, st.st_ino] })
    };
    let cut = template.iter().rposition(|&b| b == b'/').unwrap_or(0);
    let (dir, name) = template.split_at(cut);
    let file = if name.contains(&b'%') { None } else { key(template) };
    Place(
        file.or_else(|| if dir.contains(&b'%') { None } else { key(if dir.is_empty() { b"/" } else { dir }) })
            .unwrap_or([0; 3]),
    )
}

static OUTPUT_NOTED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// After a change of root (`output_before_root_change` gave `before`): if the
/// USERTRAP_OUTPUT path now leads elsewhere, say so once per image. It is
/// resolved when each report is written, in the root of that moment: the
/// reports of this process and of those it starts would land inside the
/// new root, or be lost (each loss is said on stderr), without a word.
/// `usertrap stat`'s collector is an abstract socket, which no root or
/// mount change affects.
#[cold]
#[inline(never)]
pub fn after_path_change(nr: i64, before: Place, r: i64) {
    let Some(output) = report::output_path() else { return };
    if r < 0 || output_place(output) == before || OUTPUT_NOTED.swap(true, Relaxed) {
        return;
    }
    let call = match nr {
        libc::SYS_chroot => "chroot",
        libc::SYS_pivot_root => "pivot_root",
        _ => "setns",
    };
    Line::new()
        .str(call)
        .str(": USERTRAP_OUTPUT=")
        .bytes(output)
        .str(" leads elsewhere in the new root: the reports of this process and of those it starts go where it leads there \
             (`usertrap stat`'s collector does not depend on paths)")
        .emit();
}

/// Start-up of an image exec'd with kept descriptors: ours again.
pub fn adopt_kept(k: Kept) {
    exec_keep::adopt(k);
}

const ENOENT: i64 = libc::ENOENT as i64;
const ENOEXEC: i64 = libc::ENOEXEC as i64;
const ENOTDIR: i64 = libc::ENOTDIR as i64;
const ELOOP: i64 = libc::ELOOP as i64;
const ENAMETOOLONG: i64 = libc::ENAMETOOLONG as i64;
const EACCES: i64 = libc::EACCES as i64;
const EBADF: i64 = libc::EBADF as i64;
const FD_CLOEXEC: u64 = libc::FD_CLOEXEC as u64;

/// What exec's checks of its arguments found (`named`).
struct Named {
    dirfd: i64,
    argv: u64,
    envp: u64,
    /// The name is empty (AT_EMPTY_PATH): the descriptor itself.
    empty: bool,
    relative_to_fd: bool,
    execfn_len: usize,
    /// Where to open the file: `open_name` relative to this, following a
    /// last symbolic link unless `nofollow`.
    open_dir: i64,
    nofollow: bool,
}

/// exec's checks of its arguments, in its order, up to the file it opens:
/// the name copied into `path`, the name the kernel gives the program
/// into `execfn`, the name to open into `open_name` (empty: the descriptor
/// itself). Err(errno): exec fails with it, before anything is opened.
fn named(
    nr: i64,
    args: [u64; 6],
    path: &mut [u8; PATH_MAX],
    execfn: &mut [u8; PATH_MAX + 32],
    open_name: &mut [u8; PATH_MAX + 32],
) -> Result<Named, i64> {
    let at = nr == raw::SYS_execveat;
    let (dirfd, path_ptr, argv, envp, flags) = if at {
        (args[0] as i32 as i64, args[1], args[2], args[3], args[4])
    } else {
        (AT_FDCWD, args[0], args[1], args[2], 0)
    };
    if flags & !(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0 {
        return Err(raw::EINVAL);
    }
    let len = match raw::strnlen_user(path_ptr, PATH_MAX) {
        Err(e) => return Err(e),
        Ok(n) if n >= PATH_MAX => return Err(exec_target::name_too_long()),
        Ok(n) => n,
    };
    if raw::copy_from_user(path.get_mut(..len).unwrap_or_default(), path_ptr).is_err() {
        return Err(raw::EFAULT);
    }
    let name = path.get(..len).unwrap_or(&[]);
    let empty = name.is_empty();
    if empty && flags & AT_EMPTY_PATH == 0 {
        return Err(ENOENT);
    }
    let relative_to_fd = dirfd != AT_FDCWD && name.first() != Some(&b'/');

    // The file's name as the kernel gives it to the program: AT_EXECFN, and a
    // script's argument to its interpreter.
    let mut w = Buf::new(execfn);
    if relative_to_fd {
        w.put(b"/dev/fd/").num(dirfd as u64);
        if !empty {
            w.put(b"/").put(name);
        }
    } else {
        w.put(name);
    }
    let execfn_len = w.len;
    if execfn_len >= PATH_MAX {
        return Err(exec_target::name_too_long());
    }

    // What to open: the descriptor itself for AT_EMPTY_PATH; the program's
    // real executable for its /proc/self/exe (which names the launcher).
    let (open_dir, nofollow) = if empty {
        (dirfd, false) // open_name stays empty: the descriptor itself
    } else if let Some(exe) = exe_path_override().filter(|_| !relative_to_fd && exec_target::is_proc_self_exe(name)) {
        Buf::new(open_name).put(exe).put(b"\0");
        (AT_FDCWD, false)
    } else {
        Buf::new(open_name).put(name).put(b"\0");
        (dirfd, flags & AT_SYMLINK_NOFOLLOW != 0)
    };
    Ok(Named { dirfd, argv, envp, empty, relative_to_fd, execfn_len, open_dir, nofollow })
}

/// The fast path's exec (trap::syscalls::fast): Some(-errno) for an
/// attempt that fails before the file is opened, with the errno the slow
/// path's `exec` gives (`named`'s checks, in its order, then the lookup of
/// the name it would open, which fails alike: the same lookup); None for
/// every other attempt, which nothing here has touched and the slow path
/// runs. Without buffers of its own (zeroing them would call memset, which
/// may use vector registers the fast path must leave alone): the name is
/// measured and looked up where the program keeps it.
#[inline(never)]
pub fn fails_before_open(nr: i64, args: [u64; 6]) -> Option<i64> {
    let at = nr == raw::SYS_execveat;
    let (dirfd, path_ptr, flags) = if at { (args[0] as i32 as i64, args[1], args[4]) } else { (AT_FDCWD, args[0], 0) };
    if flags & !(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0 {
        return Some(-raw::EINVAL);
    }
    if cstr(exec_env().launcher()).is_empty() {
        return None; // exec_natively: the kernel's checks
    }
    let len = match raw::strnlen_user(path_ptr, PATH_MAX) {
        Err(e) => return Some(-e),
        Ok(n) if n >= PATH_MAX => return Some(-exec_target::name_too_long()),
        Ok(n) => n,
    };
    if len == 0 {
        // AT_EMPTY_PATH: the descriptor itself, opened by the slow path.
        return if flags & AT_EMPTY_PATH == 0 { Some(-ENOENT) } else { None };
    }
    let first = raw::read_user::<u8>(path_ptr).ok()?;
    let relative_to_fd = dirfd != AT_FDCWD && first != b'/';
    // named's execfn: "/dev/fd/<dirfd>/<name>" for a name relative to a
    // descriptor.
    let execfn_len = if relative_to_fd { b"/dev/fd/".len() + digits(dirfd as u64) + 1 + len } else { len };
    if execfn_len >= PATH_MAX {
        return Some(-exec_target::name_too_long());
    }
    // /proc/self/exe where it names the launcher: the slow path opens the
    // program's real file instead.
    if exe_path_override().is_some() && !relative_to_fd {
        let mut head = [0u8; 48];
        let n = len.min(head.len());
        if raw::copy_from_user(head.get_mut(..n).unwrap_or_default(), path_ptr).is_err() {
            return None;
        }
        if len <= head.len() && exec_target::is_proc_self_exe(head.get(..n).unwrap_or(&[])) {
            return None;
        }
    }
    let at_flags = if flags & AT_SYMLINK_NOFOLLOW != 0 { AT_SYMLINK_NOFOLLOW } else { 0 };
    // A struct stat (144 bytes) for the kernel to write. Not
    // raw::newfstatat: it takes a name of ours, and the kernel is to read
    // the program's where it is.
    let mut st = [0u64; 18];
    // SAFETY: newfstatat reads the program's name (a fault is EFAULT) and
    // writes one struct stat into `st`, ours.
    let r = unsafe {
        raw::syscall6(libc::SYS_newfstatat, [dirfd as u64, path_ptr, st.as_mut_ptr() as u64, at_flags, 0, 0])
    };
    core::hint::black_box(&st);
    // The errors of the lookup itself, which the open in
    // exec_target::resolve meets first and alike; any other (none expected)
    // is left to the slow path to meet for itself.
    if [ENOENT, ENOTDIR, ELOOP, ENAMETOOLONG, EACCES, EBADF, raw::EFAULT].contains(&-r) {
        return Some(r);
    }
    None
}

/// How many decimal digits `v` takes (rt::log::Buf::num writes them).
fn digits(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

#[inline(never)]
pub fn exec(area: &ThreadArea, nr: i64, args: [u64; 6]) -> i64 {
    let flags = if nr == raw::SYS_execveat { args[4] } else { 0 };
    if flags & !(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0 {
        return -raw::EINVAL;
    }
    let env = exec_env();
    let launcher = cstr(env.launcher());
    let kept = exec_keep::kept();
    if launcher.is_empty() && kept.is_none() {
        return exec_natively(area, nr, args, b"usertrap-launcher is missing beside libusertrap.so");
    }

    let mut path = [0u8; PATH_MAX];
    let mut execfn = [0u8; PATH_MAX + 32];
    let mut open_name = [0u8; PATH_MAX + 32];
    let Named { dirfd, argv, envp, empty, relative_to_fd, execfn_len, open_dir, nofollow } =
        match named(nr, args, &mut path, &mut execfn, &mut open_name) {
            Err(e) => return -e,
            Ok(n) => n,
        };
    // The name the program gave, as the new image's AT_EXECFN.
    let execfn_bytes = execfn.get(..execfn_len).unwrap_or(&[]);
    let inaccessible = relative_to_fd && raw::fcntl_getfd(dirfd as i32).is_ok_and(|f| f & FD_CLOEXEC != 0);
    let mut t = Target::new();
    if let Err(e) = exec_target::resolve(open_dir, &open_name, nofollow, inaccessible, &mut t) {
        return -e;
    }
    let fd = t.fd as u64;
    let close_fd = || {
        let _ = raw::close(fd as i32);
    };
    if t.setuid && !t.elf32 && backend::is_sud() && !library_at_its_path(kept.is_some()) {
        // Natively exec'd, its loader would be given the library's path,
        // which leads nowhere (or elsewhere) since a chroot or mount, and
        // say "cannot be preloaded" on its stderr: the library goes out.
        close_fd();
        return exec_without_library(area, nr, args, execfn_bytes, Unmonitored::SetuidNative);
    }
    if t.elf32 || (t.setuid && backend::is_sud()) {
        close_fd();
        note(execfn_bytes, if t.elf32 { Note::Elf32 } else { Note::SetuidNative });
        if t.elf32 && backend::is_seccomp() {
            return -ENOEXEC;
        }
        return exec_natively(area, nr, args, b"");
    }
    if backend::is_sud() && own_filter::refuses_a_sud_start() {
        // The program's filter refuses what the launcher needs (handlers,
        // SUD): the kernel execs the file resolved here (the program's where
        // /proc/self/exe names the launcher), whose library steps aside
        // (start::init).
        let r = exec_natively(area, raw::SYS_execveat, [fd, c"".as_ptr() as u64, argv, envp, AT_EMPTY_PATH, 0], b"");
        close_fd();
        return r;
    }
    if t.setuid {
        note(execfn_bytes, Note::SetuidNoPrivs);
    }
    if backend::is_sud() && starts_valgrind_tool(envp) {
        // valgrind's tool runs the program on its synthetic CPU and makes
        // every syscall for it, identifying an interrupted one by the
        // address of its own `syscall` instruction: under the slow path that
        // address is the gate's, and valgrind aborts at the first signal
        // that interrupts a syscall. Exec it natively, without us.
        // Under seccomp the filter forbids that: the launcher runs it.
        close_fd();
        return exec_without_library(area, nr, args, execfn_bytes, Unmonitored::ValgrindTool);
    }

    // The process's new name (comm): the file name's last component; for an
    // exec of a descriptor itself (AT_EMPTY_PATH) the kernel names the file
    // it loads (the interpreter, for a script).
    let mut comm = [0u8; 16];
    let comm_len = comm_name(if empty { Some(t.fd) } else { None }, execfn_bytes, &mut comm);
    // The entry (usertrap-core's exec_control) fits: execfn is shorter than
    // PATH_MAX, the other fields take under 96 bytes with the NUL.
    let mut control = [0u8; PATH_MAX + 96];
    let mut fill_control = |added: Injected| {
        let entry = Control {
            fd: fd as u32,
            seccomp_armed: backend::is_seccomp(),
            leading: added.leading as u32,
            preload_prefixed: added.preload_prefixed,
            comm: comm.get(..comm_len).unwrap_or(&[]),
            execfn: execfn_bytes,
        };
        let mut out = SliceSink::new(&mut control);
        entry.encode_entry(&mut out);
        out.put(b"\0");
        control.as_ptr() as u64
    };
    let mut prefix = [0u64; MAX_PREFIX];
    let n_prefix = t.prefix(execfn.as_ptr() as u64, &mut prefix);
    // Kept by descriptor (exec_keep): the launcher through its descriptor,
    // the library by its path where that still leads to it, else through
    // /proc/self/fd (the launcher serves the program itself where that
    // cannot be opened either).
    let mut by_fd_preload = [0u8; 40];
    let mut kept_entry = [0u8; STRING_MAX + 64];
    let carry = match kept {
        Some(k) => {
            let by_fd = !exec_keep::leads_to_lib(env.preload_entry().get(LD_PRELOAD.len()..).unwrap_or(&[]));
            let n = exec_keep::entry(k, by_fd, env.lib_path(), &mut kept_entry);
            let preload = if by_fd {
                let m = exec_keep::preload_by_fd(k, &mut by_fd_preload);
                by_fd_preload.get(..m).unwrap_or(&[])
            } else {
                env.preload_entry()
            };
            Carry { preload, kept: kept_entry.get(..n).unwrap_or(&[]) }
        }
        None => Carry::plain(),
    };
    let mut proc_path = [0u8; 40];
    let by_proc_path: &[u8] = match kept {
        Some(k) if own_filter::refuses_execveat(k.launcher) => {
            let n = Buf::new(&mut proc_path).put(b"/proc/self/fd/").num(k.launcher as u64).put(b"\0").len;
            let path = proc_path.get(..n).unwrap_or(&[]);
            // Without /proc in the new root, execveat it is (and refused).
            let there = raw::cstr(path).is_ok_and(|p| raw::faccessat(AT_FDCWD as i32, p, libc::X_OK).is_ok());
            if there {
                path
            } else {
                &[]
            }
        }
        _ => &[],
    };
    // The launcher inherits the descriptor; it closes it before the program runs.
    let _ = raw::fcntl_setfd(fd as i32, 0);
    if let Some(k) = kept {
        exec_keep::through_exec(k, true);
    }
    let r = with_argv(argv, prefix.get(..n_prefix).unwrap_or(&[]), |new_argv| {
        with_our_environment(envp, &carry, Some(&mut fill_control), |new_envp| {
            let (nr, call) = match kept {
                // execve("/proc/self/fd/<fd>"): the kept launcher where the
                // program's own filter refuses execveat (and /proc is there).
                Some(_) if !by_proc_path.is_empty() => {
                    (raw::SYS_execve, [by_proc_path.as_ptr() as u64, new_argv, new_envp, 0, 0, 0])
                }
                // execveat(fd, "", AT_EMPTY_PATH): the kept launcher.
                Some(k) => {
                    (raw::SYS_execveat, [k.launcher as u64, c"".as_ptr() as u64, new_argv, new_envp, AT_EMPTY_PATH, 0])
                }
                None => (raw::SYS_execve, [env.launcher().as_ptr() as u64, new_argv, new_envp, 0, 0, 0]),
            };
            // SAFETY: exec of the launcher (a NUL-terminated path of ours,
            // or its kept descriptor with an empty name) with argument and
            // environment arrays built for it, alive until it returns.
            unsafe { exec_reported(area, nr, call) }
        })
    });
    if let Some(k) = kept {
        exec_keep::through_exec(k, false);
    }
    close_fd();
    core::hint::black_box((&by_fd_preload, &kept_entry));
    if kept.is_none() {
        let launcher_lost = |errnos: &[i32]| {
            raw::cstr(env.launcher()).is_ok_and(|l| {
                raw::faccessat(AT_FDCWD as i32, l, libc::X_OK).is_err_and(|e| errnos.contains(&(e as i32)))
            })
        };
        // The program itself passed the kernel's checks (`resolve`), so
        // EACCES is the launcher's: say so, or the program's message would
        // blame its own.
        if r == -EACCES && launcher_lost(&[libc::EACCES]) {
            note(execfn_bytes, Note::LauncherUnreachable);
        }
        // The launcher's path leads nowhere now (a root or mount namespace
        // changed where nothing was kept: a mount by a process outside the
        // tree, no descriptor number to spare): under SUD the program
        // still runs, natively and unmonitored; under seccomp the filter
        // would kill it without the launcher.
        if (r == -ENOENT || r == -ENOTDIR) && launcher_lost(&[libc::ENOENT, libc::ENOTDIR]) {
            if backend::is_seccomp() {
                note(execfn_bytes, Note::LauncherGone);
                core::hint::black_box((&t, &execfn));
                return r;
            }
            core::hint::black_box((&t, &execfn));
            return exec_without_library(area, nr, args, execfn_bytes, Unmonitored::LauncherGone);
        }
    }
    core::hint::black_box((&t, &execfn));
    r
}

/// At most 15 bytes of the name the kernel gives the process at exec: the
/// last component of `execfn`, or of the path of `loaded` when given.
fn comm_name(loaded: Option<i32>, execfn: &[u8], out: &mut [u8; 16]) -> usize {
    let mut link = [0u8; PATH_MAX];
    let file: &[u8] = match loaded {
        Some(fd) => {
            let path = exec_target::fd_path(fd as i64);
            let n = raw::cstr(&path).and_then(|p| raw::readlink(p, &mut link)).unwrap_or(0);
            link.get(..n).unwrap_or(&[])
        }
        None => execfn,
    };
    let base = file.rsplit(|&b| b == b'/').next().unwrap_or(file);
    Buf::new(&mut out[..15]).put(base).len
}

enum Note {
    /// The program could be exec'd but the launcher cannot (a directory on
    /// its path is private to another user: the process switched user).
    LauncherUnreachable,
    /// The launcher's path leads nowhere now and it was not kept (seccomp:
    /// the exec cannot go ahead).
    LauncherGone,
    SetuidNoPrivs,
    SetuidNative,
    Elf32,
}

#[inline(never)]
fn note(name: &[u8], what: Note) {
    let mut l = Line::new();
    l.str("exec of ").bytes(name).str(match what {
        Note::LauncherUnreachable => ": failed with EACCES because usertrap-launcher cannot be reached with this process's credentials \
             (install usertrap where every user can read it; `usertrap stat` run by root uses copies in the temporary directory)",
        Note::LauncherGone => ": failed with ENOENT because usertrap-launcher is no longer reachable at its path (the process's root or mount namespace changed \
             where usertrap could not keep it by descriptor first, such as by a mount of a process it does not follow), and the seccomp backend's filter needs it",
        Note::SetuidNoPrivs => if raw::prctl_get_no_new_privs() == Ok(1) {
            ": set-user-ID/set-group-ID program run with the caller's credentials (no_new_privs is set, which a native exec would honour too)"
        } else {
            ": set-user-ID/set-group-ID program run with the caller's credentials (under seccomp usertrap's launcher loads it: the filter outlives exec; a native exec would have changed credentials)"
        },
        Note::SetuidNative => ": set-user-ID/set-group-ID program exec'd natively and not monitored (the launcher would drop its privileges)",
        Note::Elf32 => if backend::is_seccomp() {
            ": 32-bit program; usertrap cannot load it, exec refused with ENOEXEC (the sud backend runs it unmonitored)"
        } else {
            ": 32-bit program exec'd natively and not monitored"
        },
    });
    l.emit();
}

/// The kernel execs the program itself, with our environment. Only under
/// SUD (a seccomp filter would kill the new image): the library is preloaded
/// again unless the program is set-user-ID or 32-bit.
fn exec_natively(area: &ThreadArea, nr: i64, args: [u64; 6], why: &[u8]) -> i64 {
    if backend::is_seccomp() {
        let mut l = Line::new();
        l.str("execve refused with ENOSYS: the seccomp backend cannot follow exec without the launcher (")
            .bytes(why)
            .str(")");
        l.emit();
        return -raw::ENOSYS;
    }
    let envp_idx = if nr == raw::SYS_execve { 2 } else { 3 };
    let envp = args.get(envp_idx).copied().unwrap_or(0);
    with_our_environment(envp, &Carry::plain(), None, |new_envp| {
        let mut a = args;
        if let Some(slot) = a.get_mut(envp_idx) {
            *slot = new_envp;
        }
        // SAFETY: the program's own execve/execveat (rt::raw: forwarded
        // program calls), its environment replaced by one built for it,
        // alive until it returns.
        unsafe { exec_reported(area, nr, a) }
    })
}

/// The exec itself: the old image's figures are reported first (the new
/// image reports its own), the kernel holds the program's view of the owned
/// signals across it, and if it fails the process goes on as it was.
///
/// # Safety
/// `nr` is execve or execveat and `args` are valid for it (the kernel only
/// reads through them, and checks every pointer).
unsafe fn exec_reported(area: &ThreadArea, nr: i64, args: [u64; 6]) -> i64 {
    report::at_exit(report::Exit::Exec);
    // SAFETY: the caller's contract.
    let r = signals::with_program_signal_state_for_exec(area, || unsafe { raw::syscall6(nr, args) });
    report::exec_failed();
    r
}

/// Pointers a new argv may hold on our stack before we map a buffer.
const ARGV_ON_STACK: usize = 256;

/// Call `run` with `argv`, or with `prefix` followed by argv[1..] when a
/// script's interpreters take argv[0]'s place.
fn with_argv(argv: u64, prefix: &[u64], run: impl FnOnce(u64) -> i64) -> i64 {
    if prefix.is_empty() {
        return run(argv);
    }
    let count = match count_user_array(argv) {
        Ok(c) => c,
        Err(e) => return -e,
    };
    let mut on_stack = [0u64; ARGV_ON_STACK];
    let mut out = match PtrArray::new(&mut on_stack, prefix.len() + count + 1) {
        Ok(a) => a,
        Err(e) => return -e,
    };
    for &p in prefix {
        out.push(p);
    }
    for i in 1..count {
        match raw::read_user::<u64>(argv + 8 * i as u64) {
            Ok(p) => out.push(p),
            Err(e) => return -e,
        }
    }
    out.push(0);
    run(out.as_ptr())
}

/// Entries of a NULL-terminated array of pointers in program memory (a NULL
/// array is empty); E2BIG past 2^24 entries, EFAULT if unreadable.
/// Whether the library's path (LD_PRELOAD's) still leads to it: to the
/// kept file where kept (exec_keep), else to a file at all.
fn library_at_its_path(kept: bool) -> bool {
    let path = exec_env().preload_entry().get(LD_PRELOAD.len()..).unwrap_or(&[]);
    if kept {
        return exec_keep::leads_to_lib(path);
    }
    raw::cstr(path).is_ok_and(|p| raw::faccessat(AT_FDCWD as i32, p, libc::F_OK).is_ok())
}

/// Why a program is exec'd natively without the library.
enum Unmonitored {
    /// Set-user-ID under SUD (as Note::SetuidNative), where the library's
    /// path no longer leads to it.
    SetuidNative,
    /// valgrind's tool: it passes LD_PRELOAD on to the program it runs,
    /// where the library could intercept nothing (valgrind makes the
    /// syscalls) and would only move the program's addresses in
    /// valgrind's messages.
    ValgrindTool,
    /// Under SUD, the launcher's path leads nowhere now and it was not kept
    /// (exec_keep): the loader could not load the library by its path
    /// either, and would say so on the program's stderr.
    LauncherGone,
}

/// Exec the program natively, with this library taken out of its
/// LD_PRELOAD, saying why in one line.
#[inline(never)]
fn exec_without_library(area: &ThreadArea, nr: i64, args: [u64; 6], name: &[u8], why: Unmonitored) -> i64 {
    let envp_idx = if nr == raw::SYS_execve { 2 } else { 3 };
    let envp = args.get(envp_idx).copied().unwrap_or(0);
    let env = exec_env();
    let ours = env.lib_path();
    let count = match count_user_array(envp) {
        Ok(c) => c,
        Err(e) => return -e,
    };
    let mut on_stack = [0u64; ENV_ON_STACK];
    let mut out = match PtrArray::new(&mut on_stack, count + 1) {
        Ok(a) => a,
        Err(e) => return -e,
    };
    let mut rewritten = [0u8; LD_PRELOAD.len() + PRELOAD_MAX + 1];
    let mut done = false;
    for i in 0..count {
        let p = match raw::read_user::<u64>(envp + 8 * i as u64) {
            Ok(p) => p,
            Err(e) => return -e,
        };
        let mut value = [0u8; LD_PRELOAD.len() + PRELOAD_MAX];
        let len = raw::strnlen_user(p, value.len()).unwrap_or(value.len());
        let entry = if len < value.len() && raw::copy_from_user(value.get_mut(..len).unwrap_or_default(), p).is_ok() {
            value.get(..len).unwrap_or(&[])
        } else {
            &[]
        };
        // Ours by its path, or through /proc/self/fd where an image before
        // this one was preloaded by the kept descriptor (exec_keep), which
        // does not outlive this exec.
        let is_ours = |c: &[u8]| c == ours || exec_keep::names_lib_by_fd(c);
        let names =
            entry.strip_prefix(LD_PRELOAD).filter(|v| !done && v.split(|&b| b == b':' || b == b' ').any(is_ours));
        let Some(v) = names else {
            out.push(p);
            continue;
        };
        done = true;
        // The other libraries, in their order, with their separators.
        let mut w = Buf::new(&mut rewritten);
        w.put(LD_PRELOAD);
        let mut first = true;
        for lib in v.split(|&b| b == b':' || b == b' ').filter(|c| !c.is_empty() && !is_ours(c)) {
            if !first {
                w.put(b":");
            }
            w.put(lib);
            first = false;
        }
        w.put(b"\0");
        out.push(rewritten.as_ptr() as u64);
    }
    out.push(0);
    Line::new()
        .str("exec of ")
        .bytes(name)
        .str(match why {
            Unmonitored::SetuidNative => {
                ": set-user-ID/set-group-ID program exec'd natively and not monitored (the launcher would drop its privileges)"
            }
            Unmonitored::ValgrindTool => ": valgrind's tool exec'd natively and not monitored, nor is the program it runs (valgrind makes its syscalls itself)",
            Unmonitored::LauncherGone => ": exec'd natively and not monitored: usertrap-launcher is no longer reachable at its path (the process's root or mount \
                 namespace changed where usertrap could not keep it by descriptor first, such as by a mount of a process it does not follow)",
        })
        .emit();
    let mut a = args;
    if let Some(slot) = a.get_mut(envp_idx) {
        *slot = out.as_ptr();
    }
    // SAFETY: the program's own execve/execveat (rt::raw: forwarded program
    // calls), its environment replaced by `out`, alive until it returns.
    let r = unsafe { exec_reported(area, nr, a) };
    core::hint::black_box(&rewritten);
    r
}

/// Does the environment passed to exec hold `VALGRIND_LAUNCHER=`? valgrind's
/// launcher sets it for the tool it execs (memcheck-amd64-linux, ...), and the
/// tool removes it from its program's environment.
fn starts_valgrind_tool(envp: u64) -> bool {
    const NAME: &[u8] = b"VALGRIND_LAUNCHER=";
    let count = count_user_array(envp).unwrap_or(0);
    (0..count).any(|i| {
        let Ok(p) = raw::read_user::<u64>(envp + 8 * i as u64) else { return false };
        let mut head = [0u8; NAME.len()];
        raw::strnlen_user(p, head.len()).is_ok_and(|n| n == head.len())
            && raw::copy_from_user(&mut head, p).is_ok()
            && head == *NAME
    })
}

fn count_user_array(array: u64) -> Result<usize, i64> {
    let mut count = 0usize;
    if array == 0 {
        return Ok(0);
    }
    loop {
        match raw::read_user::<u64>(array + 8 * count as u64)? {
            0 => return Ok(count),
            _ => count += 1,
        }
        if count > (1 << 24) {
            return Err(libc::E2BIG as i64);
        }
    }
}

/// An array of pointers we build for exec (argv, envp): in `stack` when it
/// fits, else in a private mapping, unmapped when dropped.
struct PtrArray<'a> {
    slots: &'a mut [u64],
    mapped: Option<(u64, usize)>,
    len: usize,
}

impl<'a> PtrArray<'a> {
    fn new(stack: &'a mut [u64], needed: usize) -> Result<PtrArray<'a>, i64> {
        if needed <= stack.len() {
            return Ok(PtrArray { slots: stack, mapped: None, len: 0 });
        }
        let bytes = (needed * 8 + 4095) & !4095;
        let p = raw::mmap_anon(bytes, libc::PROT_READ | libc::PROT_WRITE)?;
        // SAFETY: a fresh private mapping of `bytes` >= needed * 8 bytes,
        // ours alone until `drop` unmaps it.
        let slots = unsafe { core::slice::from_raw_parts_mut(p as *mut u64, needed) };
        Ok(PtrArray { slots, mapped: Some((p, bytes)), len: 0 })
    }

    fn push(&mut self, p: u64) {
        if let Some(slot) = self.slots.get_mut(self.len) {
            *slot = p;
            self.len += 1;
        }
    }

    fn set(&mut self, i: usize, p: u64) {
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = p;
        }
    }

    fn as_ptr(&self) -> u64 {
        self.slots.as_ptr() as u64
    }
}

impl Drop for PtrArray<'_> {
    fn drop(&mut self) {
        if let Some((p, bytes)) = self.mapped {
            // SAFETY: our mapping (PtrArray::new); `slots` dies with self.
            let _ = unsafe { raw::munmap(p, bytes) };
        }
    }
}

const LD_PRELOAD: &[u8] = b"LD_PRELOAD=";
const USERTRAP_PREFIX: &[u8] = b"USERTRAP_";
/// Pointers the new environment may hold on our stack before we map a buffer.
const ENV_ON_STACK: usize = 512;
/// Longest LD_PRELOAD value we rewrite.
const PRELOAD_MAX: usize = 4000;

/// Does the LD_PRELOAD value `v` already name this library?
fn names_us(v: &[u8], ours: &[u8]) -> bool {
    v.split(|&b| b == b':' || b == b' ').any(|c| c == ours)
}

/// What `with_our_environment` added to the program's environment, for the
/// new image to take back out (the launcher's control entry carries it).
#[derive(Clone, Copy, Default)]
pub struct Injected {
    /// Entries put in front of the program's (LD_PRELOAD, USERTRAP_* settings).
    pub leading: usize,
    /// The program's LD_PRELOAD was rewritten to `<library>:<theirs>` in place.
    pub preload_prefixed: bool,
}

/// Most USERTRAP_* settings we track as "the program has it verbatim".
const MAX_SETTINGS: usize = 64;

/// Build the program's environment with LD_PRELOAD naming this library and
/// our USERTRAP_* settings, and call `run` with a pointer to it. What we add
/// goes in front of the program's entries, which keep their order (and the
/// program's LD_PRELOAD, if it names other libraries, gets ours in front):
/// the new image then starts `environ` past ours, and the initial stack
/// keeps its layout (the auxiliary vector right after the environment).
/// `first`: called with what was added, returns an entry to put first
/// (the launcher's control entry).
/// What an exec carries besides the settings: our LD_PRELOAD entry
/// (NUL-terminated) and the kept descriptors' entry (exec_keep; empty: none).
struct Carry<'a> {
    preload: &'a [u8],
    kept: &'a [u8],
}

impl Carry<'_> {
    /// The library by the path it was loaded from; nothing kept.
    fn plain() -> Carry<'static> {
        Carry { preload: exec_env().preload_entry(), kept: &[] }
    }

    /// The library's path in the LD_PRELOAD entry.
    fn lib_path(&self) -> &[u8] {
        let value = self.preload.get(LD_PRELOAD.len()..).unwrap_or(&[]);
        value.strip_suffix(b"\0").unwrap_or(value)
    }
}

fn with_our_environment(
    envp: u64,
    carry: &Carry<'_>,
    first: Option<&mut dyn FnMut(Injected) -> u64>,
    run: impl FnOnce(u64) -> i64,
) -> i64 {
    let env = exec_env();
    let ours = carry.lib_path();
    // A NULL envp is an empty environment.
    let count = match count_user_array(envp) {
        Ok(c) => c,
        Err(e) => return -e,
    };
    let settings = env.settings();
    let n_settings = settings.iter().filter(|&&b| b == 0).count();
    // A TSC frequency this process measured well spares the new image its
    // own calibration (unless the settings already carry one).
    let mut hz_entry = [0u8; 40];
    let hz_len = tsc_hz_entry(settings, crate::measure::stats::settled_hz(), &mut hz_entry);
    // The libc sites this process has patched, for the new image to patch
    // at start (only where the launcher starts it: the entry is then
    // hidden from the program with ours).
    let mut sites_entry = [0u8; crate::patch::install::prepatch::ENTRY_LEN];
    let sites_len = if first.is_some() {
        // The loader's sites of other forms, proven here once, go with them.
        crate::patch::install::prove_loader_sites();
        crate::patch::install::prepatch::entry(&mut sites_entry)
    } else {
        0
    };
    let needed = 1 + count + 1 + n_settings + 1 + 1 + 1 + 1;

    let mut on_stack = [0u64; ENV_ON_STACK];
    let mut out = match PtrArray::new(&mut on_stack, needed) {
        Ok(a) => a,
        Err(e) => return -e,
    };

    let mut rewritten = [0u8; LD_PRELOAD.len() + 4096 + 1 + PRELOAD_MAX + 1];
    if first.is_some() {
        out.push(0); // filled in below, once we know what we added
    }
    let read_entry = |i: usize| raw::read_user::<u64>(envp + 8 * i as u64);
    let head_of = |p: u64| {
        let mut head = [0u8; 11];
        let len = raw::strnlen_user(p, head.len()).unwrap_or(0);
        let _ = raw::copy_from_user(head.get_mut(..len).unwrap_or_default(), p);
        (head, len)
    };
    // First pass: which of our entries the program passes already.
    let mut present = 0u64; // bit i: our setting i, word for word
    let mut preload_at = None;
    for i in 0..count {
        let p = match read_entry(i) {
            Ok(p) => p,
            Err(e) => return -e,
        };
        let (head, len) = head_of(p);
        let head = head.get(..len).unwrap_or(&[]);
        if head.starts_with(USERTRAP_PREFIX) {
            if let Some(i) = matching_setting(p, settings) {
                present |= 1 << i;
            }
        } else if head == LD_PRELOAD && preload_at.is_none() {
            preload_at = Some(p);
        }
    }
    // The program's LD_PRELOAD: kept if it names us, else rewritten with us
    // in front (the loader takes the last LD_PRELOAD, so ours cannot simply
    // be added); if it is too long to rewrite, ours goes last.
    let mut injected = Injected::default();
    let mut ours_last = false;
    let mut preload_rewrite = None;
    match preload_at {
        None => {}
        Some(p) => {
            let vlen = raw::strnlen_user(p + LD_PRELOAD.len() as u64, PRELOAD_MAX + 1).unwrap_or(PRELOAD_MAX + 1);
            let mut value = [0u8; PRELOAD_MAX];
            if vlen <= PRELOAD_MAX
                && raw::copy_from_user(value.get_mut(..vlen).unwrap_or_default(), p + LD_PRELOAD.len() as u64).is_ok()
            {
                let value = value.get(..vlen).unwrap_or(&[]);
                let by_path = env.lib_path();
                if ours != by_path && names_us(value, by_path) {
                    // The program's LD_PRELOAD names the library by the path
                    // that no longer leads to it (`usertrap stat` put it
                    // there for the first process): the loader would say it
                    // cannot preload it. It names the descriptor instead.
                    let mut w = Buf::new(&mut rewritten);
                    w.put(LD_PRELOAD);
                    for (i, lib) in value.split(|&b| b == b':' || b == b' ').enumerate() {
                        if i > 0 {
                            w.put(b":");
                        }
                        w.put(if lib == by_path { ours } else { lib });
                    }
                    w.put(b"\0");
                    preload_rewrite = Some(p);
                } else if !names_us(value, ours) {
                    Buf::new(&mut rewritten).put(LD_PRELOAD).put(ours).put(b":").put(value).put(b"\0");
                    preload_rewrite = Some(p);
                    injected.preload_prefixed = true;
                }
            } else {
                ours_last = true;
            }
        }
    }
    // Ours first (the new image skips exactly these), then the program's.
    if preload_at.is_none() {
        out.push(carry.preload.as_ptr() as u64);
        injected.leading += 1;
    }
    if !carry.kept.is_empty() {
        out.push(carry.kept.as_ptr() as u64);
        injected.leading += 1;
    }
    let mut start = 0usize;
    let mut index = 0usize;
    for (i, &b) in settings.iter().enumerate() {
        if b == 0 {
            if index >= MAX_SETTINGS || present & (1 << index) == 0 {
                out.push(settings.as_ptr() as u64 + start as u64);
                injected.leading += 1;
            }
            start = i + 1;
            index += 1;
        }
    }
    if hz_len != 0 {
        out.push(hz_entry.as_ptr() as u64);
        injected.leading += 1;
    }
    if sites_len != 0 {
        out.push(sites_entry.as_ptr() as u64);
        injected.leading += 1;
    }
    for i in 0..count {
        let p = match read_entry(i) {
            Ok(p) => p,
            Err(e) => return -e,
        };
        let (head, len) = head_of(p);
        if head.get(..len).unwrap_or(&[]).starts_with(USERTRAP_PREFIX) && matching_setting(p, settings).is_none() {
            continue; // one of our settings with another value: ours replaces it
        }
        out.push(if Some(p) == preload_rewrite { rewritten.as_ptr() as u64 } else { p });
    }
    if ours_last {
        out.push(carry.preload.as_ptr() as u64);
    }
    out.push(0);
    if let Some(f) = first {
        out.set(0, f(injected));
    }
    let r = run(out.as_ptr());
    core::hint::black_box((&rewritten, &hz_entry));
    r
}

/// The index of the setting (NUL-separated in `settings`) equal to the
/// program's entry at `p`, if any.
fn matching_setting(p: u64, settings: &[u8]) -> Option<usize> {
    let mut entry = [0u8; 4096];
    let len = raw::strnlen_user(p, entry.len()).ok()?;
    raw::copy_from_user(entry.get_mut(..len).unwrap_or_default(), p).ok()?;
    let entry = entry.get(..len)?;
    settings.split(|&b| b == 0).take(MAX_SETTINGS).position(|s| s == entry && !s.is_empty())
}

/// "USERTRAP_TSC_HZ=<hz>\0" into `buf` if this process knows the frequency
/// (`hz`, 0: not known) and `settings` do not already carry one; its length
/// (0: none).
fn tsc_hz_entry(settings: &[u8], hz: u64, buf: &mut [u8; 40]) -> usize {
    const KEY: &[u8] = b"USERTRAP_TSC_HZ=";
    let carried = settings.split(|&b| b == 0).any(|e| e.starts_with(KEY));
    if carried || hz == 0 {
        return 0;
    }
    Buf::new(buf).put(KEY).num(hz).put(b"\0").len
}

// --- /proc/self/exe ----------------------------------------------------------------

/// readlink/readlinkat of /proc/self/exe where the kernel's answer is the
/// launcher: the program's own path, as a native exec would give. None:
/// not that link (run the syscall).
#[inline(never)]
pub fn readlink(nr: i64, args: [u64; 6]) -> Option<i64> {
    let exe = exe_path_override()?;
    let (dirfd, path, buf, size) = if nr == libc::SYS_readlink {
        (AT_FDCWD, args[0], args[1], args[2])
    } else {
        (args[0] as i32 as i64, args[1], args[2], args[3])
    };
    let mut name = [0u8; 64];
    let n = raw::strnlen_user(path, name.len()).ok()?;
    raw::copy_from_user(name.get_mut(..n).unwrap_or_default(), path).ok()?;
    let name = name.get(..n)?;
    if (dirfd != AT_FDCWD && name.first() != Some(&b'/')) || !exec_target::is_proc_self_exe(name) {
        return None;
    }
    // The kernel's bufsiz is an int: only the low 32 bits count.
    let size = size as i32;
    if size <= 0 {
        return Some(-raw::EINVAL);
    }
    let len = exe.len().min(size as usize);
    // SAFETY: the buffer the program gave readlink to fill.
    Some(match unsafe { raw::copy_to_user(buf, exe.get(..len).unwrap_or_default()) } {
        Ok(()) => len as i64,
        Err(e) => -e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;
    use std::sync::Mutex;

    /// NUL-terminated copies of `entries` and a NULL-terminated array of
    /// pointers to them, as a program passes argv or envp.
    struct Strings {
        _owned: Vec<Vec<u8>>,
        ptrs: Vec<u64>,
    }

    impl Strings {
        fn new(entries: &[&[u8]]) -> Strings {
            let owned: Vec<Vec<u8>> = entries.iter().map(|e| [*e, b"\0"].concat()).collect();
            let mut ptrs: Vec<u64> = owned.iter().map(|o| o.as_ptr() as u64).collect();
            ptrs.push(0);
            Strings { _owned: owned, ptrs }
        }
        fn array(&self) -> u64 {
            self.ptrs.as_ptr() as u64
        }
        fn at(&self, i: usize) -> u64 {
            self.ptrs[i]
        }
    }

    /// The strings of a NULL-terminated array of pointers.
    fn read_array(array: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        // SAFETY: arrays built by the code under test from our own strings,
        // NULL-terminated, alive for the duration of the callback.
        unsafe {
            let mut p = array as *const u64;
            while *p != 0 {
                out.push(CStr::from_ptr(*p as *const core::ffi::c_char).to_bytes().to_vec());
                p = p.add(1);
            }
        }
        out
    }

    fn strs(v: &[Vec<u8>]) -> Vec<String> {
        v.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect()
    }

    const LIB: &[u8] = b"/opt/ut/libusertrap.so";
    const SETTINGS: &[u8] = b"USERTRAP_OUTPUT=/tmp/r.%p\0USERTRAP_FORMAT=json\0";

    /// EXEC_ENV is one static: the tests that set and read it take turns.
    static EXEC_ENV_TURN: Mutex<()> = Mutex::new(());

    /// with_our_environment on `envp`, with this library at LIB and
    /// SETTINGS as the process's settings: the new environment, what was
    /// injected, and its pointers.
    fn our_environment(envp: u64, with_first: bool) -> (Vec<String>, Injected, Vec<u64>) {
        let _turn = EXEC_ENV_TURN.lock().unwrap_or_else(|e| e.into_inner());
        set_exec_env(|env| {
            env.put_preload(LIB);
            env.drop_launcher();
            env.put_settings(SETTINGS.split_inclusive(|&b| b == 0).map(|e| e.strip_suffix(b"\0").unwrap_or(e)));
        });
        let mut injected = None;
        let mut fill = |i: Injected| {
            injected = Some(i);
            c"USERTRAP_EXEC=control".as_ptr() as u64
        };
        let mut seen = (Vec::new(), Vec::new());
        let first: Option<&mut dyn FnMut(Injected) -> u64> = if with_first { Some(&mut fill) } else { None };
        let r = with_our_environment(envp, &Carry::plain(), first, |new| {
            seen.0 = read_array(new);
            let n = seen.0.len();
            // SAFETY: as in read_array: `n` entries before its NULL.
            seen.1 = (0..n).map(|i| unsafe { *(new as *const u64).add(i) }).collect();
            0
        });
        assert_eq!(r, 0);
        let strings = strs(&seen.0);
        (strings, injected.unwrap_or_default(), seen.1)
    }

    const OURS: &str = "LD_PRELOAD=/opt/ut/libusertrap.so";
    const OUTPUT: &str = "USERTRAP_OUTPUT=/tmp/r.%p";
    const FORMAT: &str = "USERTRAP_FORMAT=json";

    #[test]
    fn ours_go_in_front_of_the_programs_in_order() {
        let env = Strings::new(&[b"B=2", b"A=1", b"PATH=/bin"]);
        let (got, injected, _) = our_environment(env.array(), true);
        assert_eq!(got, ["USERTRAP_EXEC=control", OURS, OUTPUT, FORMAT, "B=2", "A=1", "PATH=/bin"]);
        assert_eq!((injected.leading, injected.preload_prefixed), (3, false));
        // Without a control entry, and a NULL envp (an empty environment).
        let (got, _, _) = our_environment(0, false);
        assert_eq!(got, [OURS, OUTPUT, FORMAT]);
        let empty = Strings::new(&[]);
        let (got, injected, _) = our_environment(empty.array(), true);
        assert_eq!(got, ["USERTRAP_EXEC=control", OURS, OUTPUT, FORMAT]);
        assert_eq!(injected.leading, 3);
    }

    #[test]
    fn a_preload_naming_others_gets_ours_in_front_in_place() {
        let env = Strings::new(&[b"A=1", b"LD_PRELOAD=/x/a.so /x/b.so", b"B=2"]);
        let (got, injected, _) = our_environment(env.array(), true);
        let rewritten = "LD_PRELOAD=/opt/ut/libusertrap.so:/x/a.so /x/b.so";
        assert_eq!(got, ["USERTRAP_EXEC=control", OUTPUT, FORMAT, "A=1", rewritten, "B=2"]);
        assert_eq!((injected.leading, injected.preload_prefixed), (2, true));
    }

    #[test]
    fn a_preload_naming_us_is_kept_as_it_is() {
        let env = Strings::new(&[b"LD_PRELOAD=/x/a.so:/opt/ut/libusertrap.so", b"A=1"]);
        let (got, injected, ptrs) = our_environment(env.array(), false);
        assert_eq!(got, [OUTPUT, FORMAT, "LD_PRELOAD=/x/a.so:/opt/ut/libusertrap.so", "A=1"]);
        assert_eq!(ptrs[2], env.at(0), "the program's own string");
        assert_eq!((injected.leading, injected.preload_prefixed), (0, false));
    }

    #[test]
    fn a_preload_too_long_to_rewrite_gets_ours_last() {
        let long = [b"LD_PRELOAD=".as_slice(), &[b'a'; PRELOAD_MAX + 1]].concat();
        let env = Strings::new(&[&long, b"A=1"]);
        let (got, injected, ptrs) = our_environment(env.array(), true);
        assert_eq!(got.len(), 6);
        assert_eq!(got[..3], ["USERTRAP_EXEC=control", OUTPUT, FORMAT]);
        assert_eq!(ptrs[3], env.at(0));
        assert_eq!(got[4..], ["A=1", OURS], "the loader takes the last LD_PRELOAD");
        assert_eq!((injected.leading, injected.preload_prefixed), (2, false));
    }

    #[test]
    fn settings_are_not_repeated_and_ours_win() {
        // FORMAT word for word: the program's stays where it is and ours is
        // not added; OUTPUT with another value: ours replaces it.
        let env = Strings::new(&[b"USERTRAP_OUTPUT=/elsewhere", b"A=1", b"USERTRAP_FORMAT=json"]);
        let (got, injected, ptrs) = our_environment(env.array(), true);
        assert_eq!(got, ["USERTRAP_EXEC=control", OURS, OUTPUT, "A=1", FORMAT]);
        assert_eq!(ptrs[4], env.at(2));
        assert_eq!(injected.leading, 2);
    }

    #[test]
    fn preload_names() {
        let ours = b"/lib/libusertrap.so";
        assert!(names_us(b"/lib/libusertrap.so", ours));
        assert!(names_us(b"/a.so:/lib/libusertrap.so", ours));
        // ld.so(8): the list is separated by colons or spaces.
        assert!(names_us(b"/a.so /lib/libusertrap.so /b.so", ours));
        assert!(names_us(b"::/lib/libusertrap.so::", ours));
        assert!(!names_us(b"/lib/libusertrap.so.1", ours));
        assert!(!names_us(b"/other/lib/libusertrap.so", ours));
        assert!(!names_us(b"", ours));
    }

    #[test]
    fn settings_match_word_for_word() {
        let s = Strings::new(&[b"USERTRAP_FORMAT=json", b"USERTRAP_FORMAT=text", b"USERTRAP_FORMAT", b""]);
        assert_eq!(matching_setting(s.at(0), SETTINGS), Some(1));
        assert_eq!(matching_setting(s.at(1), SETTINGS), None);
        assert_eq!(matching_setting(s.at(2), SETTINGS), None, "a prefix is not the setting");
        assert_eq!(matching_setting(s.at(3), SETTINGS), None, "nor is the end of the list");
        let o = Strings::new(&[b"USERTRAP_OUTPUT=/tmp/r.%p"]);
        assert_eq!(matching_setting(o.at(0), SETTINGS), Some(0));
    }

    #[test]
    fn tsc_frequency_entry() {
        let mut buf = [0u8; 40];
        let n = tsc_hz_entry(SETTINGS, 2_400_000_000, &mut buf);
        assert_eq!(&buf[..n], b"USERTRAP_TSC_HZ=2400000000\0");
        assert_eq!(tsc_hz_entry(SETTINGS, 0, &mut buf), 0, "not known");
        let carried = b"USERTRAP_FORMAT=json\0USERTRAP_TSC_HZ=1000\0";
        assert_eq!(tsc_hz_entry(carried, 2_400_000_000, &mut buf), 0, "the settings carry one");
        let n = tsc_hz_entry(b"", u64::MAX, &mut buf);
        assert_eq!(&buf[..n], b"USERTRAP_TSC_HZ=18446744073709551615\0");
    }

    #[test]
    fn digits_as_buf_num_writes_them() {
        for v in [0, 9, 10, 99, 100, 12345, u64::MAX] {
            let mut b = [0u8; 32];
            assert_eq!(digits(v), Buf::new(&mut b).num(v).len, "{v}");
        }
    }

    #[test]
    fn comm_is_the_last_component_cut_to_15_bytes() {
        let comm = |execfn: &[u8]| {
            let mut out = [0xffu8; 16];
            let n = comm_name(None, execfn, &mut out);
            assert_eq!(out[15], 0xff, "the 16th byte is the kernel's NUL, never written");
            out[..n].to_vec()
        };
        // __set_task_comm(kbasename(filename)): TASK_COMM_LEN is 16 with the NUL.
        assert_eq!(comm(b"/usr/bin/python3"), b"python3");
        assert_eq!(comm(b"prog"), b"prog");
        assert_eq!(comm(b"./a-very-long-program-name"), b"a-very-long-pro");
        assert_eq!(comm(b"/dev/fd/3/x"), b"x");
        assert_eq!(comm(b"/dev/fd/3"), b"3");
        assert_eq!(comm(b"dir/"), b"");
    }

    #[test]
    fn user_arrays_are_counted_to_their_null() {
        assert_eq!(count_user_array(0), Ok(0), "a NULL array is empty");
        assert_eq!(count_user_array(Strings::new(&[]).array()), Ok(0));
        assert_eq!(count_user_array(Strings::new(&[b"a", b"", b"c"]).array()), Ok(3));
    }

    #[test]
    fn a_scripts_interpreters_take_argv0s_place() {
        // binfmt_script: argv[0] goes; interpreter, its argument and the
        // script's name come first, then argv[1..].
        let argv = Strings::new(&[b"./script", b"one", b"two"]);
        let prefix = Strings::new(&[b"/bin/sh", b"-e", b"./script"]);
        let mut got = Vec::new();
        let r = with_argv(argv.array(), &prefix.ptrs[..3], |new| {
            got = strs(&read_array(new));
            7
        });
        assert_eq!(r, 7);
        assert_eq!(got, ["/bin/sh", "-e", "./script", "one", "two"]);
        // No prefix: the program's own array, untouched.
        assert_eq!(with_argv(argv.array(), &[], |new| new as i64), argv.array() as i64);
        // An empty argv: just the prefix.
        let none = Strings::new(&[]);
        with_argv(none.array(), &prefix.ptrs[..3], |new| {
            got = strs(&read_array(new));
            0
        });
        assert_eq!(got, ["/bin/sh", "-e", "./script"]);
    }

    #[test]
    fn valgrind_tool_by_its_launcher_variable() {
        let yes = Strings::new(&[b"A=1", b"VALGRIND_LAUNCHER=/usr/bin/valgrind"]);
        assert!(starts_valgrind_tool(yes.array()));
        assert!(starts_valgrind_tool(Strings::new(&[b"VALGRIND_LAUNCHER="]).array()));
        assert!(!starts_valgrind_tool(Strings::new(&[b"VALGRIND_LAUNCHER"]).array()));
        assert!(!starts_valgrind_tool(Strings::new(&[b"XVALGRIND_LAUNCHER=/x"]).array()));
        assert!(!starts_valgrind_tool(Strings::new(&[b"VALGRIND_LIB=/x"]).array()));
        assert!(!starts_valgrind_tool(0));
    }
}
