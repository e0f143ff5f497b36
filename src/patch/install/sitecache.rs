//! The site cache (`USERTRAP_SITE_CACHE=DIR`; `usertrap stat` and `usertrap
//! trace` set it to a directory of their own for the run and remove it at
//! the end): libc sites proven in one process of the tree reach the others,
//! not only the images it execs (prepatch.rs) and the children it forks
//! after proving them.
//!
//! One file per libc build ID, `DIR/<build ID in hex>`, of lines in
//! prepatch.rs's group format (`<build ID>:<sites>:<checksum>`), each
//! appended whole by one `write` (O_APPEND) by a process at the end of its
//! image (exit, exec, a fatal signal) with the libc sites it had patched
//! that the file did not hold as far as it knows. A process reads the file
//! at its first trap of a call the fast path may run (with the carried
//! entry's sites, same moment, same reason: a process that makes no such
//! call pays nothing), and again before each fork if it grew, so a parent
//! (bash) hands to its next children the sites its earlier children
//! proved; the lines are checked and patched as the carried entry's are
//! (prepatch::parse_libc_group: the build ID, every span in libc's text,
//! the checksum of the original bytes there now, each form's shape), so a
//! stale, truncated, garbled or forged line is refused whole and changes no
//! byte. The file must be a regular file owned by the process's effective
//! user, written by no one else (no group or other write bit), opened
//! without following a symbolic link; otherwise it is ignored.
//!
//! Bounds: only the first [`FILE_MAX`] bytes are read, and nothing is
//! appended once the file is that long; one line per image at most, of at most
//! [`prepatch::MAX_SITES`] sites. The environment grows by the setting
//! alone. Nothing is inherited: each access opens, reads or writes, and
//! closes (close-on-exec) in one go.
//!
//! Trap context throughout: raw syscalls, static buffers behind a lock
//! that nobody waits for.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::patch::install::prepatch::{self, Item};
use crate::rt::raw;

/// The longest directory name accepted (start::config checks it).
pub const DIR_MAX: usize = 1024;
/// How much of a file is read at most; nothing is appended past it.
pub const FILE_MAX: usize = 32 * 1024;
/// Most sites taken from the file in one reading (this libc has 526
/// `syscall` instructions).
const MAX_ITEMS: usize = 640;
/// Most sites remembered as in the file already.
const MAX_KNOWN: usize = 1024;

struct Cache {
    /// `DIR/` and, once libc's build ID is known, its hex and a NUL.
    path: [u8; DIR_MAX + 48],
    dir_len: usize,
    path_len: usize,
    /// Bytes of the file taken (whole lines).
    taken: usize,
    /// What was read and not taken yet (the part after `taken`).
    buf: [u8; FILE_MAX],
    items: [Item; MAX_ITEMS],
    line: [Item; prepatch::MAX_SITES],
    /// Addresses of the sites the file holds, as far as this image knows
    /// (read from it or written to it), ascending.
    known: [u64; MAX_KNOWN],
    n_known: usize,
}

// With the other large tables (library.ld): not among the small statics
// every process touches.
#[link_section = ".bss.usertrap_large"]
static CACHE: spin::Mutex<Cache> = spin::Mutex::new(Cache {
    path: [0; DIR_MAX + 48],
    dir_len: 0,
    path_len: 0,
    taken: 0,
    buf: [0; FILE_MAX],
    items: [Item::EMPTY; MAX_ITEMS],
    line: [Item::EMPTY; prepatch::MAX_SITES],
    known: [0; MAX_KNOWN],
    n_known: 0,
});
/// A directory is set.
static ON: AtomicBool = AtomicBool::new(false);
/// The file has not been read in this image yet.
static UNREAD: AtomicBool = AtomicBool::new(false);

/// The constructor (one thread; prepatch noted libc): use `dir`.
pub fn configure(dir: &[u8]) {
    if dir.is_empty() || dir.len() > DIR_MAX || !prepatch::ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let Some(mut c) = CACHE.try_lock() else { return };
    let Some(d) = c.path.get_mut(..dir.len()) else { return };
    d.copy_from_slice(dir);
    if let Some(slash) = c.path.get_mut(dir.len()) {
        *slash = b'/';
    }
    c.dir_len = dir.len() + 1;
    // libc's sites recorded already are the launcher's, taken over: the
    // carried entry's and the file's. Known, so that an image that never
    // reads the file (no trap: `/bin/true`) does not write them back to
    // it at its end, a line per process.
    if let Some((lo, hi)) = prepatch::libc_text() {
        let Cache { known, n_known, .. } = &mut *c;
        crate::patch::registry::for_each_in(lo, hi - lo, |site| {
            insert_known(known, n_known, site.key);
        });
    }
    ON.store(true, Ordering::Relaxed);
    UNREAD.store(true, Ordering::Relaxed);
}

/// Whether the file waits for its first reading ([`apply`]).
#[inline]
pub fn pending() -> bool {
    UNREAD.load(Ordering::Relaxed)
}

/// At the image's first trap of a call the fast path may run (as
/// prepatch::apply: PATCHER held, signals blocked, the registry mapped):
/// read the file and patch what it holds. How many sites were patched.
#[inline(never)]
pub fn apply(table: &mut crate::patch::table::Table, ready: impl FnOnce() -> bool, slow: fn(u64) -> bool) -> usize {
    if !UNREAD.swap(false, Ordering::Relaxed) {
        return 0;
    }
    take_new(table, ready, slow)
}

/// The launcher, when the loader has just mapped libc (prepatch noted it;
/// nothing runs its code yet; PATCHER held, the registry mapped): patch
/// what the file holds, the final bytes at once, trampolines jumping to
/// `entry`. How many sites were patched. The library reads the file again
/// at its first trap: what the launcher patched is recorded already (the
/// hand-off) and left alone.
#[cfg_attr(not(feature = "launcher"), allow(dead_code))] // the launcher's
#[inline(never)]
pub fn apply_at_map(table: &mut crate::patch::table::Table, slow: fn(u64) -> bool, entry: u64) -> usize {
    if !UNREAD.swap(false, Ordering::Relaxed) {
        return 0;
    }
    with_new_lines(|items| prepatch::patch_items_alone(table, items, slow, entry))
}

/// Before a fork (PATCHER held, signals blocked, the registry mapped): if
/// the file grew since this image last read it, patch what was added, so
/// the child starts with it.
#[inline(never)]
pub fn refresh(table: &mut crate::patch::table::Table, ready: impl FnOnce() -> bool, slow: fn(u64) -> bool) -> usize {
    if !read_before() || !grew() {
        return 0;
    }
    take_new(table, ready, slow)
}

/// Whether this image has read the file already (so [`refresh`] may find
/// something new in it).
#[inline]
pub fn read_before() -> bool {
    ON.load(Ordering::Relaxed) && !UNREAD.load(Ordering::Relaxed)
}

/// Whether the file is longer than what this image took of it: one
/// `newfstatat`, the whole cost of a fork when nothing was added.
fn grew() -> bool {
    let Some(c) = CACHE.try_lock() else { return false };
    if c.path_len == 0 || c.taken >= FILE_MAX {
        return false;
    }
    let Some(path) = c.path.get(..c.path_len).and_then(|p| raw::cstr(p).ok()) else { return false };
    raw::newfstatat(libc::AT_FDCWD, path, libc::AT_SYMLINK_NOFOLLOW).is_ok_and(|st| st.st_size as u64 > c.taken as u64)
}

fn take_new(table: &mut crate::patch::table::Table, ready: impl FnOnce() -> bool, slow: fn(u64) -> bool) -> usize {
    with_new_lines(|items| prepatch::patch_items(table, items, ready, slow))
}

/// `patch` given the sites of the file's lines this image has not taken
/// yet (read_lines); what it returns (0 if the file cannot be read).
fn with_new_lines(patch: impl FnOnce(&[Item]) -> usize) -> usize {
    let Some(mut guard) = CACHE.try_lock() else { return 0 };
    let c = &mut *guard;
    let Some((fd, _)) = open(c, libc::O_RDONLY) else { return 0 };
    let n = read_lines(c, fd);
    let _ = raw::close(fd);
    patch(c.items.get(..n).unwrap_or(&[]))
}

/// The file's lines past `taken` that hold sites of this libc (checked),
/// into `items` (those not known yet, each once): how many.
fn read_lines(c: &mut Cache, fd: i32) -> usize {
    let room = FILE_MAX.saturating_sub(c.taken);
    let Some(buf) = c.buf.get_mut(..room) else { return 0 };
    let mut got = 0;
    while got < buf.len() {
        match raw::pread(fd, buf.get_mut(got..).unwrap_or_default(), (c.taken + got) as u64) {
            Ok(0) | Err(_) => break,
            Ok(k) => got += k,
        }
    }
    // Whole lines only: a line being appended is taken next time.
    let Some(end) = buf.get(..got).and_then(|b| b.iter().rposition(|&b| b == b'\n')) else { return 0 };
    c.taken += end + 1;
    let mut n = 0;
    let Cache { buf, items, line, known, n_known, .. } = c;
    for text in buf.get(..end).unwrap_or(&[]).split(|&b| b == b'\n') {
        let k = prepatch::parse_libc_group(text, line);
        for it in line.get(..k).unwrap_or(&[]) {
            if insert_known(known, n_known, it.sys()) {
                if let Some(slot) = items.get_mut(n) {
                    *slot = *it;
                    n += 1;
                }
            }
        }
    }
    n
}

/// Add `addr` to the ascending `known`; false if it was there already
/// (or there is no room: then it is taken as new each time).
fn insert_known(known: &mut [u64; MAX_KNOWN], n: &mut usize, addr: u64) -> bool {
    let Some(list) = known.get(..*n) else { return true };
    let Err(at) = list.binary_search(&addr) else { return false };
    if *n < MAX_KNOWN {
        if let Some(tail) = known.get_mut(at..=*n) {
            tail.rotate_right(1);
            if let Some(first) = tail.first_mut() {
                *first = addr;
            }
            *n += 1;
        }
    }
    true
}

/// The image ends (report::at_exit, once; not a vfork child): append the
/// libc sites it has patched that the file does not hold as far as it
/// knows, in one line.
pub fn publish() {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    let Some(mut guard) = CACHE.try_lock() else { return };
    let c = &mut *guard;
    if c.taken >= FILE_MAX {
        return;
    }
    let mut line = [0u8; prepatch::ENTRY_LEN];
    let mut wrote = [0u64; prepatch::MAX_SITES];
    let mut n_wrote = 0;
    let (known, n_known) = (&c.known, c.n_known);
    let len = prepatch::libc_group(
        &mut line,
        |a| known.get(..n_known).is_some_and(|k| k.binary_search(&a).is_ok()),
        |a| {
            if let Some(w) = wrote.get_mut(n_wrote) {
                *w = a;
                n_wrote += 1;
            }
        },
    );
    if len == 0 || len >= line.len() {
        return;
    }
    if let Some(nl) = line.get_mut(len) {
        *nl = b'\n';
    }
    let Some((fd, size)) = open(c, libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT) else { return };
    // Nobody reads past FILE_MAX: the file stops growing there.
    let done = size < FILE_MAX as u64 && raw::write(fd, line.get(..len + 1).unwrap_or(&[])) == Ok(len + 1);
    let _ = raw::close(fd);
    if done {
        let Cache { known, n_known, .. } = c;
        for &a in wrote.get(..n_wrote).unwrap_or(&[]) {
            insert_known(known, n_known, a);
        }
    }
}

/// The file, opened with `flags` (and close-on-exec, no symbolic link
/// followed), and its size, if it is a regular file of this process's
/// effective user that no one else may write.
fn open(c: &mut Cache, flags: i32) -> Option<(i32, u64)> {
    if c.path_len == 0 {
        let id = prepatch::libc_id()?;
        let mut at = c.dir_len;
        for b in id {
            for d in [b >> 4, b & 15] {
                *c.path.get_mut(at)? = b"0123456789abcdef"[d as usize];
                at += 1;
            }
        }
        *c.path.get_mut(at)? = 0;
        c.path_len = at + 1;
    }
    let path = raw::cstr(c.path.get(..c.path_len)?).ok()?;
    let fd = raw::openat(libc::AT_FDCWD, path, flags | libc::O_CLOEXEC | libc::O_NOFOLLOW, 0o600).ok()?;
    let size = raw::fstat(fd).ok().filter(|st| {
        st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_mode & 0o022 == 0 && st.st_uid == raw::geteuid()
    });
    let Some(st) = size else {
        let _ = raw::close(fd);
        return None;
    };
    Some((fd, st.st_size as u64))
}

/// In a new process: a thread that held the lock at fork time is gone.
pub fn after_fork_in_child() {
    // SAFETY: only this thread exists in the new process.
    unsafe { CACHE.force_unlock() };
}
