//! The launcher and the library kept by descriptor, so that exec still
//! reaches them after the program changed what absolute paths resolve to.
//!
//! Every exec runs `usertrap-launcher`, found by its absolute path, with
//! `LD_PRELOAD` naming the library by its absolute path (`exec`). After
//! chroot, pivot_root, setns, or a mount in a new mount namespace (build
//! chroots, bubblewrap, container runtimes) those paths lead elsewhere or
//! nowhere, and the program's own exec would fail with ENOENT where natively
//! it works. So just before the program runs such a call (natively: both
//! paths call [`changes_paths`], a compare for any other call), the image
//! opens both files with O_PATH|O_CLOEXEC at a number the program does not
//! count on (rt::log::dup_high, as for the kept stderr) and from then on:
//! - exec runs the launcher with execveat(fd, "", AT_EMPTY_PATH) (an ELF
//!   file: the kernel loads it through a close-on-exec descriptor too);
//! - the new image's loader gets `LD_PRELOAD=/proc/self/fd/<lib fd>` where
//!   the library's path no longer leads to it (the magic link reaches the
//!   file whatever the root is, if /proc is mounted there); without /proc
//!   the launcher serves the program itself, for its whole life, as it
//!   serves static programs (`launch`);
//! - both descriptors go to the new image (inherited across that one exec,
//!   named in an entry in front of the environment, `USERTRAP_KEPT_FDS=`,
//!   hidden from the program with the others), which keeps them
//!   close-on-exec at the same numbers: a chain of execs inside the chroot
//!   or namespace keeps working, and so does a process whose parent
//!   entered the namespace (`unshare -m sh -c 'mount ...; exec ...'`: sh
//!   itself never calls mount).
//!
//! The program's close and close_range pass over them, and its dup2 or
//! dup3 onto one moves it first ([`descriptor_call`]): natively those
//! numbers are free, and a process that closes every descriptor before its
//! exec is common.
//!
//! Kept on: chroot, pivot_root, setns, mount, umount2, move_mount (each can
//! put another file at a path, or none), unshare and clone/clone3 with
//! CLONE_NEWNS (the new namespace is what later mounts change, possibly
//! from another process). Not on open_tree, fsmount, mount_setattr, which
//! attach nothing by themselves (move_mount does); a noexec mount over the
//! launcher stops exec through a descriptor too, as it would the program's.
//!
//! A vfork child keeps them too (its exec after a chroot is followed): it
//! shares its parent's memory but not its descriptor table, so the numbers
//! it records are not the parent's files; [`kept`] checks every descriptor
//! against the file recorded (device and inode) before it is used, and the
//! parent keeps its own when it needs them.
//!
//! Never: use a kept number without that check (the program may have
//! closed it or put a file of its own there).

use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

use crate::rt::log::{self, Buf, FileId};
use crate::rt::raw;

/// The entry that names the kept descriptors to the new image:
/// `USERTRAP_KEPT_FDS=<launcher fd>:<library fd>:<preload by fd 0|1>:<library path>`
/// (the library's path as it was before the change: the library recorded
/// in the new image is that, while its loader may have opened the fd).
pub const ENTRY: &[u8] = b"USERTRAP_KEPT_FDS=";

/// The launcher and the library, each with the file it was when kept.
#[derive(Clone, Copy)]
pub struct Kept {
    pub launcher: i32,
    pub lib: i32,
}

static LAUNCHER_FD: AtomicI32 = AtomicI32::new(-1);
static LIB_FD: AtomicI32 = AtomicI32::new(-1);
static LAUNCHER_DEV: AtomicU64 = AtomicU64::new(0);
static LAUNCHER_INO: AtomicU64 = AtomicU64::new(0);
static LIB_DEV: AtomicU64 = AtomicU64::new(0);
static LIB_INO: AtomicU64 = AtomicU64::new(0);
/// Held by the thread that is keeping them (another one does not wait).
static KEEPING: AtomicBool = AtomicBool::new(false);

/// Whether the program's call `nr` (run natively) can change what absolute
/// paths resolve to, for this process or the ones it starts.
#[inline(always)]
pub fn changes_paths(nr: i64, args: &[u64; 6]) -> bool {
    match nr {
        libc::SYS_chroot
        | libc::SYS_pivot_root
        | libc::SYS_setns
        | libc::SYS_mount
        | libc::SYS_umount2
        | libc::SYS_move_mount => true,
        libc::SYS_unshare => args[0] & libc::CLONE_NEWNS as u64 != 0,
        _ => false,
    }
}

/// Whether clone/clone3 (`nr`, `args` as the program passed them) makes a
/// new mount namespace.
pub fn clone_changes_paths(nr: i64, args: &[u64; 6]) -> bool {
    let flags = if nr == libc::SYS_clone3 {
        // struct clone_args starts with its flags.
        raw::read_user::<u64>(args[0]).unwrap_or(0)
    } else {
        args[0]
    };
    flags & libc::CLONE_NEWNS as u64 != 0
}

fn id_of(fd: i32) -> Option<(u64, u64)> {
    log::file_id(fd).map(|id: FileId| (id.dev, id.ino))
}

/// The kept descriptors, if kept and each still the file it was (the
/// program may have closed them, or put files of its own at the numbers).
pub fn kept() -> Option<Kept> {
    let (launcher, lib) = (LAUNCHER_FD.load(Ordering::Relaxed), LIB_FD.load(Ordering::Relaxed));
    if launcher < 0 || lib < 0 {
        return None;
    }
    let same = |fd, dev: &AtomicU64, ino: &AtomicU64| {
        id_of(fd) == Some((dev.load(Ordering::Relaxed), ino.load(Ordering::Relaxed)))
    };
    (same(launcher, &LAUNCHER_DEV, &LAUNCHER_INO) && same(lib, &LIB_DEV, &LIB_INO)).then_some(Kept { launcher, lib })
}

/// The program's close or close_range over a kept descriptor, or dup2 or
/// dup3 onto one: natively those numbers are free, so close says EBADF,
/// close_range closes the rest of its range around them, leaving the kept
/// files open, and a dup onto one moves that kept file to another number
/// first. A process
/// that closes every descriptor after its change (Python's subprocess in
/// a chroot, daemons, container runtimes before exec) would otherwise lose
/// the launcher, and its exec fail under seccomp. `run` makes the program's
/// call (the gate's program entry on the slow path). None: not such a call.
#[inline(always)]
pub fn descriptor_call(nr: i64, args: &[u64; 6], run: impl Fn(i64, [u64; 6]) -> i64) -> Option<i64> {
    if !matches!(nr, libc::SYS_close | libc::SYS_close_range | libc::SYS_dup2 | libc::SYS_dup3)
        || LAUNCHER_FD.load(Ordering::Relaxed) < 0
    {
        return None;
    }
    spare_kept(nr, args, run)
}

#[cold]
#[inline(never)]
fn spare_kept(nr: i64, args: &[u64; 6], run: impl Fn(i64, [u64; 6]) -> i64) -> Option<i64> {
    let k = kept()?;
    // The kernel takes descriptors as unsigned int.
    let (a, b) = (k.launcher.min(k.lib) as u32, k.launcher.max(k.lib) as u32);
    if matches!(nr, libc::SYS_dup2 | libc::SYS_dup3) {
        // The program puts a file of its own on a kept number: ours move
        // first (dup2(x, x) changes nothing; dup3(x, x) is EINVAL).
        let (old, new) = (args[0] as u32, args[1] as u32);
        if old != new && (new == a || new == b) {
            move_kept(k, new as i32);
        }
        return None;
    }
    if nr == libc::SYS_close {
        return [a, b].contains(&(args[0] as u32)).then_some(-EBADF);
    }
    let (lo, hi, flags) = (args[0] as u32, args[1] as u32, args[2]);
    if lo > hi || !(lo..=hi).contains(&a) && !(lo..=hi).contains(&b) {
        return None;
    }
    // The range without a and b: up to three pieces, each run as the
    // program's call (the first one unshares the table if asked).
    let pieces = [(lo, a.checked_sub(1)), (a.saturating_add(1), b.checked_sub(1)), (b.saturating_add(1), Some(hi))];
    let mut ran = false;
    for (from, to) in pieces {
        let Some(to) = to else { continue };
        let (from, to) = (from.max(lo), to.min(hi));
        if from > to || from <= a && a <= to || from <= b && b <= to {
            continue;
        }
        let r = run(nr, [u64::from(from), u64::from(to), flags, 0, 0, 0]);
        if r < 0 {
            return Some(r);
        }
        ran = true;
    }
    if !ran && flags & !(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC) != 0 {
        return Some(-raw::EINVAL);
    }
    if !ran && flags & CLOSE_RANGE_UNSHARE != 0 {
        return Some(run(libc::SYS_unshare, [libc::CLONE_FILES as u64, 0, 0, 0, 0, 0]));
    }
    Some(0)
}

/// Move the kept descriptor at `at` to another high number. Not in a vfork
/// child: the numbers are recorded in memory its parent shares, for the
/// parent's own table.
#[cold]
fn move_kept(k: Kept, at: i32) {
    if crate::rt::thread::current().is_some_and(|a| a.vfork_child.get()) {
        return;
    }
    let Some(moved) = log::dup_high(at) else { return };
    let slot = if at == k.launcher { &LAUNCHER_FD } else { &LIB_FD };
    slot.store(moved, Ordering::Relaxed);
    let _ = raw::close(at);
}

const EBADF: i64 = libc::EBADF as i64;
const CLOSE_RANGE_UNSHARE: u64 = 2;
const CLOSE_RANGE_CLOEXEC: u64 = 4;

/// Whether an LD_PRELOAD entry names the kept library as
/// `/proc/self/fd/<lib fd>` ([`preload_by_fd`]).
pub fn names_lib_by_fd(entry: &[u8]) -> bool {
    let lib = LIB_FD.load(Ordering::Relaxed);
    lib >= 0 && entry.strip_prefix(b"/proc/self/fd/").and_then(fd_number) == Some(lib)
}

/// Whether `path` (NUL-terminated) leads to the kept library now.
pub fn leads_to_lib(path: &[u8]) -> bool {
    let Ok(p) = raw::cstr(path) else { return false };
    raw::newfstatat(libc::AT_FDCWD, p, 0)
        .is_ok_and(|st| (st.st_dev, st.st_ino) == (LIB_DEV.load(Ordering::Relaxed), LIB_INO.load(Ordering::Relaxed)))
}

fn record(launcher: i32, lib: i32) -> bool {
    let (Some(l), Some(s)) = (id_of(launcher), id_of(lib)) else { return false };
    LAUNCHER_DEV.store(l.0, Ordering::Relaxed);
    LAUNCHER_INO.store(l.1, Ordering::Relaxed);
    LIB_DEV.store(s.0, Ordering::Relaxed);
    LIB_INO.store(s.1, Ordering::Relaxed);
    LAUNCHER_FD.store(launcher, Ordering::Relaxed);
    LIB_FD.store(lib, Ordering::Relaxed);
    true
}

/// Keep the launcher and the library (NUL-terminated absolute paths),
/// unless kept already and still good. A path that leads nowhere now keeps
/// nothing.
pub fn keep(launcher_path: &[u8], lib_path: &[u8]) {
    if kept().is_some() || KEEPING.swap(true, Ordering::Acquire) {
        return;
    }
    let (launcher, lib) = (open_high(launcher_path), open_high(lib_path));
    match (launcher, lib) {
        (Some(l), Some(s)) if record(l, s) => {}
        _ => {
            for fd in [launcher, lib].into_iter().flatten() {
                let _ = raw::close(fd);
            }
        }
    }
    KEEPING.store(false, Ordering::Release);
}

/// `path` opened O_PATH|O_CLOEXEC at a high number (log::dup_high).
fn open_high(path: &[u8]) -> Option<i32> {
    let low = raw::open_cwd(path, libc::O_PATH | libc::O_CLOEXEC, 0).ok()?;
    let high = log::dup_high(low);
    let _ = raw::close(low);
    high
}

/// Start-up of an image exec'd with kept descriptors (`ENTRY`): take them
/// as ours again, close-on-exec (the exec let them through).
pub fn adopt(k: Kept) {
    if record(k.launcher, k.lib) {
        for fd in [k.launcher, k.lib] {
            let _ = raw::fcntl_setfd(fd, libc::FD_CLOEXEC);
        }
    }
}

/// A fork child: no other thread of its own can be keeping them.
pub fn after_fork_in_child() {
    KEEPING.store(false, Ordering::Relaxed);
}

/// Let both descriptors through the coming exec (`through`: true), or make
/// them close-on-exec again after it failed.
pub fn through_exec(k: Kept, through: bool) {
    for fd in [k.launcher, k.lib] {
        let _ = raw::fcntl_setfd(fd, if through { 0 } else { libc::FD_CLOEXEC });
    }
}

/// "LD_PRELOAD=/proc/self/fd/<lib>\0" into `out`; its length.
pub fn preload_by_fd(k: Kept, out: &mut [u8; 40]) -> usize {
    Buf::new(out).put(b"LD_PRELOAD=/proc/self/fd/").num(k.lib as u64).put(b"\0").len
}

/// The entry (`ENTRY`) for the new image into `out`, NUL-terminated; its
/// length (0 if `lib_path` does not fit).
pub fn entry(k: Kept, by_fd: bool, lib_path: &[u8], out: &mut [u8]) -> usize {
    // "<launcher>:<lib>:<0|1>:<path>\0" after the name.
    let needed = ENTRY.len() + digits_len(k) + 5 + lib_path.len();
    if needed > out.len() {
        return 0;
    }
    let mut w = Buf::new(out);
    w.put(ENTRY).num(k.launcher as u64).put(b":").num(k.lib as u64).put(if by_fd { b":1:" } else { b":0:" });
    w.put(lib_path).put(b"\0").len
}

fn digits_len(k: Kept) -> usize {
    let d = |mut v: u64| {
        let mut n = 1;
        while v >= 10 {
            v /= 10;
            n += 1;
        }
        n
    };
    d(k.launcher as u64) + d(k.lib as u64)
}

/// What an entry's value says: the descriptors, whether the loader was
/// given the library by descriptor, and the library's path.
#[derive(Clone, Copy)]
pub struct Carried<'a> {
    pub kept: Kept,
    #[cfg_attr(not(feature = "launcher"), allow(dead_code))] // the launcher reads it
    pub by_fd: bool,
    pub lib_path: &'a [u8],
}

/// Parse an entry's value (what follows ENTRY).
pub fn parse(value: &[u8]) -> Option<Carried<'_>> {
    let mut parts = value.splitn(4, |&b| b == b':');
    let launcher = fd_number(parts.next()?)?;
    let lib = fd_number(parts.next()?)?;
    let by_fd = match parts.next()? {
        b"0" => false,
        b"1" => true,
        _ => return None,
    };
    let lib_path = parts.next()?;
    (lib_path.first() == Some(&b'/')).then_some(Carried { kept: Kept { launcher, lib }, by_fd, lib_path })
}

fn fd_number(s: &[u8]) -> Option<i32> {
    if s.is_empty() || s.len() > 9 {
        return None;
    }
    s.iter().try_fold(0i32, |n, &b| b.is_ascii_digit().then(|| n * 10 + i32::from(b - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trip() {
        let mut out = [0u8; 128];
        let k = Kept { launcher: 1023, lib: 1024 };
        let n = entry(k, true, b"/opt/ut/libusertrap.so", &mut out);
        assert_eq!(&out[..n], b"USERTRAP_KEPT_FDS=1023:1024:1:/opt/ut/libusertrap.so\0");
        let c = parse(&out[ENTRY.len()..n - 1]).unwrap();
        assert_eq!(
            (c.kept.launcher, c.kept.lib, c.by_fd, c.lib_path),
            (1023, 1024, true, &b"/opt/ut/libusertrap.so"[..])
        );
        let mut small = [0u8; 30];
        assert_eq!(entry(k, false, b"/opt/ut/libusertrap.so", &mut small), 0, "does not fit");
        assert!(parse(b"1:2:1:relative").is_none());
        assert!(parse(b"1:x:1:/a").is_none());
        assert!(parse(b"1:2:2:/a").is_none());
        let mut p = [0u8; 40];
        let n = preload_by_fd(k, &mut p);
        assert_eq!(&p[..n], b"LD_PRELOAD=/proc/self/fd/1024\0");
    }
}
