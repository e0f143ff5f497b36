//! What the kernel would do with an execve, decided before we commit to one.
//!
//! The library never lets the kernel exec the program itself: it execs the
//! launcher, which loads the program (see `exec`). Once the launcher's exec
//! succeeds the old image is gone, so every error a native execve would
//! return to the caller must be found here first, with the kernel's errno:
//! the path walk (ENOENT, ENOTDIR, ELOOP, ENAMETOOLONG, EACCES on a
//! directory in the way), the file (EACCES: a directory, not a regular file,
//! no execute permission, a noexec mount; ETXTBSY: open for writing), the format (ENOEXEC: neither ELF
//! nor `#!`; ELIBBAD: an ELF interpreter that is not ELF), and `#!` scripts,
//! followed like fs/binfmt_script.c does (interpreter and optional argument
//! from the first line, at most 5 levels, ELOOP beyond; a missing
//! interpreter is ENOENT). What the exec itself returns (E2BIG, EFAULT,
//! ENOMEM) comes from the launcher's exec, which fails without harm.
//!
//! Opening follows the kernel's open_exec: the kind of file by path first (a
//! FIFO must not block us, a device must not be opened), then a readable
//! descriptor for the launcher to map, checked. At most one descriptor of
//! the process is used at a time, and with none free the soft
//! RLIMIT_NOFILE is raised by one for the checks (a native exec needs no
//! descriptor of the caller's).
//!
//! Never: let the launcher's exec go ahead before every error a native exec
//! would return is known.

use crate::rt::raw;
use usertrap_core::{elf, script};

pub const AT_FDCWD: i64 = -100;
pub const AT_EMPTY_PATH: u64 = 0x1000;
pub const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
const AT_EACCESS: u64 = 0x200;
const O_PATH: u64 = 0o10000000;
const O_CLOEXEC: u64 = 0o2000000;
const O_NOFOLLOW: u64 = 0o400000;
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;
const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_IXGRP: u32 = 0o0010;
const ST_NOEXEC: u64 = 8;
const ENOENT: i64 = libc::ENOENT as i64;
const EACCES: i64 = libc::EACCES as i64;
const ENOEXEC: i64 = libc::ENOEXEC as i64;
const ELOOP: i64 = libc::ELOOP as i64;
const ENAMETOOLONG: i64 = libc::ENAMETOOLONG as i64;
const ELIBBAD: i64 = libc::ELIBBAD as i64;
const ETXTBSY: i64 = libc::ETXTBSY as i64;
const EMFILE: i64 = libc::EMFILE as i64;

/// The first bytes the kernel reads to pick a format (BINPRM_BUF_SIZE).
const HEAD: usize = script::HEAD;
/// Interpreters the kernel follows before it gives up with ELOOP.
pub const MAX_SCRIPT_LEVELS: usize = script::MAX_LEVELS;
pub const PATH_MAX: usize = 4096;

/// Strings prepended to the program's argv (from its second entry on):
/// interpreters, their optional arguments, and the script's name.
pub const MAX_PREFIX: usize = 2 * MAX_SCRIPT_LEVELS + 1;

/// The program the launcher must load, and how its argv changes.
pub struct Target {
    /// Readable, close-on-exec descriptor of the ELF file to load.
    pub fd: i32,
    /// Set-user-ID or set-group-ID: a native exec would change credentials.
    pub setuid: bool,
    /// 32-bit x86 ELF: the launcher cannot load it.
    pub elf32: bool,
    /// The interpreter chain's names, each NUL-terminated (one per level).
    pub interp: [[u8; HEAD + 1]; MAX_SCRIPT_LEVELS],
    pub interp_arg: [[u8; HEAD + 1]; MAX_SCRIPT_LEVELS],
    /// The strings prepended to argv[1..] in place of argv[0], as pointers
    /// into `interp`, `interp_arg` or the caller's file name (see `prefix`).
    pub levels: usize,
    pub has_arg: [bool; MAX_SCRIPT_LEVELS],
}

impl Target {
    pub fn new() -> Target {
        Target {
            fd: -1,
            setuid: false,
            elf32: false,
            interp: [[0; HEAD + 1]; MAX_SCRIPT_LEVELS],
            interp_arg: [[0; HEAD + 1]; MAX_SCRIPT_LEVELS],
            levels: 0,
            has_arg: [false; MAX_SCRIPT_LEVELS],
        }
    }

    /// The new argv's head (argv[0] of the program is dropped when this is
    /// not empty): for `#!I1 O1` naming script `filename`, [I1, O1, filename];
    /// if I1 is itself a script `#!I2 O2`, [I2, O2, I1, O1, filename]; ...
    /// Returns how many pointers were written.
    pub fn prefix(&self, filename: u64, out: &mut [u64; MAX_PREFIX]) -> usize {
        let mut n = 0;
        for level in (0..self.levels).rev() {
            if let (Some(i), Some(a), Some(&has)) =
                (self.interp.get(level), self.interp_arg.get(level), self.has_arg.get(level))
            {
                for (p, on) in [(i.as_ptr() as u64, true), (a.as_ptr() as u64, has)] {
                    if on {
                        if let Some(slot) = out.get_mut(n) {
                            *slot = p;
                            n += 1;
                        }
                    }
                }
            }
        }
        if self.levels > 0 {
            if let Some(slot) = out.get_mut(n) {
                *slot = filename;
                n += 1;
            }
        }
        n
    }
}

fn close(fd: i64) {
    let _ = raw::close(fd as i32);
}

/// A descriptor as this file keeps it: the descriptor, or -errno.
fn fd_or_errno(r: Result<i32, i64>) -> i64 {
    r.map_or_else(|e| -e, i64::from)
}

/// Open `path` (NUL-terminated, ours) relative to `dirfd` as exec would, and
/// return a readable descriptor with the file's mode. An empty `path` means
/// `dirfd` itself (AT_EMPTY_PATH).
///
/// One descriptor at a time (a native exec needs none of the caller's): the
/// kind of file is looked at by path first, so a FIFO or a device is not
/// opened (O_NONBLOCK covers one swapped in meanwhile), then the readable
/// descriptor itself is checked.
fn open_exec(dirfd: i64, path: &[u8], nofollow: bool) -> Result<(i64, u32), i64> {
    let empty = path.first().is_none_or(|&b| b == 0);
    let (at, name, flags) = if empty {
        (dirfd, &b"\0"[..], AT_EMPTY_PATH)
    } else {
        (dirfd, path, if nofollow { AT_SYMLINK_NOFOLLOW } else { 0 })
    };
    let st = raw::newfstatat(at as i32, raw::cstr(name)?, flags as i32)?;
    check_kind(st.st_mode, nofollow)?;
    let fd = readable(dirfd, path, empty, nofollow);
    if fd < 0 {
        return Err(-fd);
    }
    let r = check_inode(fd, nofollow).and_then(|mode| if open_for_writing(fd) { Err(ETXTBSY) } else { Ok(mode) });
    match r {
        Ok(mode) => Ok((fd, mode)),
        Err(e) => {
            close(fd);
            Err(e)
        }
    }
}

/// "/proc/self/fd/<fd>", NUL-terminated: the file a descriptor refers to.
pub fn fd_path(fd: i64) -> [u8; 32] {
    let mut p = [0u8; 32];
    crate::rt::log::Buf::new(&mut p).put(b"/proc/self/fd/").num(fd as u64).put(b"\0");
    p
}

/// A readable descriptor of the regular file `path` names (relative to
/// `dirfd`), or, for AT_EMPTY_PATH, of `dirfd` itself: reopened through
/// /proc/self/fd (the very same file), or without /proc (a chroot) the
/// caller's descriptor if it is open for reading. Negative errno on failure.
fn readable(dirfd: i64, path: &[u8], empty: bool, nofollow: bool) -> i64 {
    let ro = libc::O_RDONLY as u64 | O_CLOEXEC | libc::O_NONBLOCK as u64 | libc::O_NOCTTY as u64;
    if !empty {
        let flags = ro | if nofollow { O_NOFOLLOW } else { 0 };
        return fd_or_errno(raw::cstr(path).and_then(|p| raw::openat(dirfd as i32, p, flags as i32, 0)));
    }
    let proc_path = fd_path(dirfd);
    let fd = fd_or_errno(raw::cstr(&proc_path).and_then(|p| raw::openat(AT_FDCWD as i32, p, ro as i32, 0)));
    if fd >= 0 || fd != -ENOENT {
        return fd;
    }
    if let Ok(fl) = raw::fcntl_getfl(dirfd as i32) {
        if fl & O_PATH == 0 && fl & libc::O_ACCMODE as u64 != libc::O_WRONLY as u64 {
            return fd_or_errno(raw::dup_cloexec(dirfd as i32));
        }
    }
    -ENOENT
}

/// Is the file open for writing somewhere (exec says ETXTBSY)? A read lease
/// is refused with EAGAIN exactly then; taken, it is dropped at once. Where
/// leases are not ours to take (another user's file, without CAP_LEASE) we
/// cannot tell, and the launcher's exec goes ahead.
fn open_for_writing(fd: i64) -> bool {
    match raw::fcntl_setlease(fd as i32, libc::F_RDLCK) {
        Ok(()) => {
            let _ = raw::fcntl_setlease(fd as i32, libc::F_UNLCK);
            false
        }
        Err(e) => e == libc::EAGAIN as i64,
    }
}

/// A regular file (a symbolic link under AT_SYMLINK_NOFOLLOW is ELOOP).
fn check_kind(mode: u32, nofollow: bool) -> Result<(), i64> {
    let kind = mode & S_IFMT;
    if kind == S_IFLNK && nofollow {
        return Err(ELOOP);
    }
    if kind == S_IFDIR || kind != S_IFREG {
        return Err(EACCES);
    }
    Ok(())
}

/// The inode checks of open_exec and do_open_execat, on the descriptor.
fn check_inode(pfd: i64, nofollow: bool) -> Result<u32, i64> {
    let st = raw::newfstatat(pfd as i32, c"", AT_EMPTY_PATH as i32)?;
    check_kind(st.st_mode, nofollow)?;
    // A noexec mount (path_noexec in fs/exec.c). faccessat2(X_OK) below
    // says EACCES there too; this names the reason first, as exec does.
    if raw::fstatfs(pfd as i32).is_ok_and(|fs| fs.f_flags as u64 & ST_NOEXEC != 0) {
        return Err(EACCES);
    }
    let r = raw::faccessat2(pfd as i32, c"", libc::X_OK, (AT_EMPTY_PATH | AT_EACCESS) as i32);
    if let Err(e) = r {
        return Err(if e == raw::ENOSYS { EACCES } else { e });
    }
    Ok(st.st_mode)
}

/// The file's first bytes (fewer for a short file), or the read's errno: a
/// denied read (a fanotify FAN_ACCESS_PERM listener, say) fails exec with
/// its own errno, as the kernel's read of the header does.
fn read_head(fd: i64, buf: &mut [u8; HEAD]) -> Result<usize, i64> {
    raw::pread(fd as i32, buf, 0)
}

/// Follow `path` (ours, NUL-terminated) to the ELF file to load.
/// `inaccessible`: the caller's descriptor is close-on-exec, so a script
/// could not be handed its /dev/fd name (the kernel says ENOENT).
pub fn resolve(dirfd: i64, path: &[u8], nofollow: bool, inaccessible: bool, t: &mut Target) -> Result<(), i64> {
    // No descriptor free: one more slot for the checks where the hard limit
    // allows (the descriptor handed to the launcher stays valid above it).
    raw::with_spare_fd(
        || {
            *t = Target::new();
            resolve_once(dirfd, path, nofollow, inaccessible, t)
        },
        |r| *r == Err(EMFILE),
    )
}

/// (device, inode) of an open file.
fn file_id(fd: i64) -> (u64, u64) {
    raw::newfstatat(fd as i32, c"", AT_EMPTY_PATH as i32).map_or((0, 0), |st| (st.st_dev, st.st_ino))
}

fn resolve_once(dirfd: i64, path: &[u8], nofollow: bool, inaccessible: bool, t: &mut Target) -> Result<(), i64> {
    let (mut fd, mut mode) = open_exec(dirfd, path, nofollow)?;
    // How the current level was opened (to open it again).
    let (mut cur_dir, mut cur_nofollow) = (dirfd, nofollow);
    let mut cur = [0u8; PATH_MAX + 1];
    for (d, &b) in cur.iter_mut().zip(path.iter().take(PATH_MAX)) {
        *d = b;
    }
    let mut reopened = 0;
    loop {
        let mut head = [0u8; HEAD];
        let n = match read_head(fd, &mut head) {
            Ok(n) => n,
            Err(e) => {
                close(fd);
                return Err(e);
            }
        };
        let head_read = head.get(..n).unwrap_or(&[]);
        if head_read.starts_with(&elf::ELFMAG) {
            let mut iname = [0u8; PATH_MAX];
            let checked = check_elf(fd, &head, &mut iname).and_then(|(elf32, has_interp)| {
                if has_interp {
                    match check_interp(&iname) {
                        Err(EMFILE) => return Ok((elf32, true)), // see below
                        Err(e) => return Err(e),
                        Ok(()) => {}
                    }
                }
                Ok((elf32, false))
            });
            match checked {
                Ok((_, true)) => {
                    // No second descriptor for the interpreter: check it with
                    // the program's closed, then open the program again;
                    // another file there by now is checked from the start.
                    let id = file_id(fd);
                    close(fd);
                    check_interp(&iname)?;
                    (fd, mode) = open_exec(cur_dir, &cur, cur_nofollow)?;
                    if file_id(fd) != id {
                        reopened += 1;
                        if reopened > 8 {
                            close(fd);
                            return Err(EMFILE);
                        }
                        continue;
                    }
                    t.fd = fd as i32;
                    t.elf32 = false;
                    t.setuid = mode & S_ISUID != 0 || (mode & S_ISGID != 0 && mode & S_IXGRP != 0);
                    return Ok(());
                }
                Ok((elf32, false)) => {
                    t.fd = fd as i32;
                    t.elf32 = elf32;
                    t.setuid = mode & S_ISUID != 0 || (mode & S_ISGID != 0 && mode & S_IXGRP != 0);
                    return Ok(());
                }
                Err(e) => {
                    close(fd);
                    return Err(e);
                }
            }
        }
        close(fd);
        // load_script, in its order: the line (ENOEXEC), a script whose
        // name the interpreter could not open (ENOENT), then the
        // interpreter's open; an empty name (`#!` alone) fails there (EACCES).
        let line = script::parse(head_read).map_err(|_| ENOEXEC)?;
        if inaccessible && t.levels == 0 {
            return Err(ENOENT);
        }
        if line.interpreter.is_empty() {
            return Err(EACCES);
        }
        let level = t.levels;
        let (Some(ibuf), Some(abuf), Some(has)) =
            (t.interp.get_mut(level), t.interp_arg.get_mut(level), t.has_arg.get_mut(level))
        else {
            // One level too deep: the kernel opens this interpreter too
            // (its errors first), then gives up.
            let mut name = [0u8; HEAD + 1];
            copy_cstr(&mut name, line.interpreter);
            let (ifd, _) = open_exec(AT_FDCWD, &name, false)?;
            close(ifd);
            return Err(ELOOP);
        };
        copy_cstr(ibuf, line.interpreter);
        *has = line.argument.is_some();
        copy_cstr(abuf, line.argument.unwrap_or(&[]));
        t.levels += 1;
        cur = [0; PATH_MAX + 1];
        for (d, &b) in cur.iter_mut().zip(ibuf.iter()) {
            *d = b;
        }
        (cur_dir, cur_nofollow) = (AT_FDCWD, false);
        (fd, mode) = open_exec(AT_FDCWD, &cur, false)?;
    }
}

fn copy_cstr(dst: &mut [u8; HEAD + 1], s: &[u8]) {
    *dst = [0; HEAD + 1];
    for (d, &b) in dst.iter_mut().zip(s.iter().take(HEAD)) {
        *d = b;
    }
}

/// The ELF checks of load_elf_binary (usertrap-core's `elf::check_exec`
/// on the head, zero-padded as the kernel's buffer is, then PT_INTERP):
/// Ok((32-bit x86, has an interpreter)), the interpreter's name into `interp`.
fn check_elf(fd: i64, head: &[u8; HEAD], interp: &mut [u8; PATH_MAX]) -> Result<(bool, bool), i64> {
    let h = match elf::check_exec(head) {
        Ok(elf::Exec::I386) => return Ok((true, false)),
        Ok(elf::Exec::X86_64(h)) => h,
        Err(_) => return Err(ENOEXEC),
    };
    // The interpreter (PT_INTERP) must exist and be ELF.
    for i in 0..u64::from(h.phnum) {
        let mut ph = [0u8; elf::PHDR_SIZE];
        let at = h.phoff.wrapping_add(i * elf::PHDR_SIZE as u64);
        match raw::pread(fd as i32, &mut ph, at) {
            Ok(n) if n == elf::PHDR_SIZE => {}
            Ok(_) => return Err(raw::EIO),
            Err(e) => return Err(e),
        }
        match elf::Phdr::parse(&ph) {
            Some(p) if p.p_type == elf::PT_INTERP => {
                let (off, len) = elf::interp_span(&p).map_err(|_| ENOEXEC)?;
                let mut name = [0u8; PATH_MAX];
                let r = raw::pread(fd as i32, name.get_mut(..len).unwrap_or_default(), off);
                if r != Ok(len) || elf::interp_name(name.get(..len).unwrap_or(&[])).is_err() {
                    return Err(ENOEXEC);
                }
                *interp = name;
                return Ok((false, true));
            }
            _ => {}
        }
    }
    Ok((false, false))
}

/// The interpreter named by PT_INTERP must be ELF (ELIBBAD otherwise).
fn check_interp(name: &[u8; PATH_MAX]) -> Result<(), i64> {
    let (ifd, _) = open_exec(AT_FDCWD, name, false)?;
    let mut ihead = [0u8; HEAD];
    let n = read_head(ifd, &mut ihead);
    close(ifd);
    let n = n?;
    if n < 4 || !ihead.starts_with(&elf::ELFMAG) {
        return Err(ELIBBAD);
    }
    Ok(())
}

/// Does `path` name this process's own executable link (/proc/self/exe,
/// /proc/<our pid>/exe, /proc/thread-self/exe)?
/// Reachable from the fast path (readlink): compared byte by byte
/// (`same_bytes`), no memcmp.
pub fn is_proc_self_exe(path: &[u8]) -> bool {
    const PREFIX: &[u8] = b"/proc/";
    const SUFFIX: &[u8] = b"/exe";
    if path.len() < PREFIX.len() + SUFFIX.len() {
        return false;
    }
    let (head, rest) = path.split_at(PREFIX.len());
    let (who, tail) = rest.split_at(rest.len() - SUFFIX.len());
    if !same_bytes(head, PREFIX) || !same_bytes(tail, SUFFIX) {
        return false;
    }
    if same_bytes(who, b"self") || same_bytes(who, b"thread-self") {
        return true;
    }
    let mut pid = [0u8; 24];
    let n = crate::rt::log::Buf::new(&mut pid).num(raw::getpid() as u64).len;
    pid.get(..n).is_some_and(|p| same_bytes(p, who))
}

/// `a == b`, one byte at a time through `black_box`, so that the compiler
/// neither calls bcmp nor uses vector registers (the fast path reaches it;
/// tests/patching.rs disassembles it).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| core::hint::black_box(*x) == *y)
}

/// Too long for PATH_MAX.
pub const fn name_too_long() -> i64 {
    ENAMETOOLONG
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_order() {
        let mut t = Target::new();
        copy_cstr(&mut t.interp[0], b"/bin/sh");
        t.has_arg[0] = true;
        copy_cstr(&mut t.interp_arg[0], b"-e");
        copy_cstr(&mut t.interp[1], b"/usr/bin/wrap");
        t.levels = 2;
        let mut out = [0u64; MAX_PREFIX];
        let n = t.prefix(7, &mut out);
        assert_eq!(n, 4);
        assert_eq!(out[0], t.interp[1].as_ptr() as u64);
        assert_eq!(out[1], t.interp[0].as_ptr() as u64);
        assert_eq!(out[2], t.interp_arg[0].as_ptr() as u64);
        assert_eq!(out[3], 7);
    }
}
