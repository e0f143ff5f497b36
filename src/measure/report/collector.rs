//! Talking to `usertrap stat`'s collector (the protocol is below), and the
//! children seen killed by a signal, which the collector is told of.
//! Never: write a file.

use super::settings::{close, cstr, settings};
use crate::rt::log::{self, Buf};
use crate::rt::raw;
use core::sync::atomic::Ordering;

pub(super) fn collecting() -> bool {
    settings().collect[0] != 0
}

/// The collector's address (sockaddr_un) and its length.
pub(super) fn address() -> Option<([u8; 110], usize)> {
    let name = cstr(&settings().collect);
    let mut addr = [0u8; 110];
    // sockaddr_un: sun_family (AF_UNIX, 16 bits), then sun_path whose first
    // byte 0 makes it an abstract name (no file, no permissions).
    addr[0] = libc::AF_UNIX as u8;
    let dst = addr.get_mut(3..3 + name.len())?;
    // Byte by byte, volatile: `usertrap trace` sends from the fast path,
    // where a call to memcpy (which may use vector registers) must not be.
    for (d, &b) in dst.iter_mut().zip(name) {
        // SAFETY: `d` is a valid, exclusive reference.
        unsafe { core::ptr::write_volatile(d, b) };
    }
    Some((addr, 3 + name.len()))
}

/// Sends `head` then `body` over a new connection to the collector.
/// Bounded: a full backlog is retried for at most 2 s, a stalled reader
/// gives up after log::NO_PROGRESS_MS.
pub(super) fn collector_send(head: &[u8], body: &[u8]) -> Result<(), i64> {
    let Some((addr, alen)) = address() else { return Err(libc::EINVAL as i64) };
    let ty = libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    let fd = raw::socket(libc::AF_UNIX, ty, 0)?;
    let mut tries = 0;
    let r = loop {
        let r = raw::connect(fd, addr.get(..alen).unwrap_or_default());
        if r != Err(libc::EAGAIN as i64) || tries >= 2000 {
            break r;
        }
        tries += 1;
        let _ = raw::nanosleep(0, 1_000_000);
    };
    let r = if let Err(e) = r {
        e
    } else {
        match log::write_bounded(fd, head) {
            (_, 0) => log::write_bounded(fd, body).1,
            (_, e) => e,
        }
    };
    close(fd);
    if r == 0 {
        Ok(())
    } else {
        Err(r)
    }
}

/// Under `usertrap stat`: tell the collector this process image exists
/// (start-up), so that it can name it if no report comes.
pub fn greet() {
    if collecting() {
        hello(b"hello ", raw::getpid() as u64, raw::getppid() as u64);
    }
}

/// A clone/fork/clone3 returned `child` in the parent: if it made a process
/// (not a thread), tell the collector about it now, before the parent can
/// wait for it or end (the child's own greeting may come too late).
pub fn after_clone_in_parent(nr: i64, args: [u64; 6], child: i64) {
    if child <= 0 || !collecting() {
        return;
    }
    let flags = match nr {
        raw::SYS_fork => 0,
        raw::SYS_clone => args[0],
        raw::SYS_clone3 => raw::read_user::<u64>(args[0]).unwrap_or(libc::CLONE_VM as u64),
        _ => return,
    };
    if flags & (libc::CLONE_VM | libc::CLONE_THREAD) as u64 == 0 {
        hello(b"child ", child as u64, raw::getpid() as u64);
    }
}

pub(super) fn hello(kind: &[u8], pid: u64, ppid: u64) {
    let comm = raw::prctl_get_name();
    let n = comm.iter().position(|&b| b == 0).unwrap_or(16);
    let mut head = [0u8; 128];
    let mut w = Buf::new(&mut head);
    w.put(kind).num(pid).put(b" ").num(ppid).put(b" ");
    w.hex_bytes(comm.get(..n).unwrap_or(&[]));
    // Where `usertrap stat -i` reads this process's figures while it runs.
    w.put(b" live ").num(super::live::index_address()).put(b"\n");
    let len = w.len;
    let _ = log::without_write_signals(|| {
        raw::with_spare_fd(|| collector_send(head.get(..len).unwrap_or(&[]), &[]), |r| *r == Err(libc::EMFILE as i64))
    });
}

// Children this process saw end by a signal (wait4/waitid results), for the
// report: the collector names a child that sent no report "killed by
// SIGKILL" from its parent's word. Entries: pid << 8 | signal.
pub(super) const KILLED_MAX: usize = 64;

pub(super) static KILLED: [core::sync::atomic::AtomicU64; KILLED_MAX] =
    [const { core::sync::atomic::AtomicU64::new(0) }; KILLED_MAX];

pub(super) static KILLED_N: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// After every wait4/waitid (any path): note a child killed by a signal.
/// Integer-only (the fast path calls it), one read of program memory each.
#[inline(never)]
pub fn note_wait(nr: i64, args: [u64; 6], r: i64) {
    let (pid, sig) = if nr == libc::SYS_wait4 {
        if r <= 0 || args[1] == 0 {
            return;
        }
        let Ok(status) = raw::read_user::<i32>(args[1]) else { return };
        let sig = status & 0x7f;
        if sig == 0 || sig == 0x7f {
            return;
        }
        (r, sig)
    } else {
        // siginfo_t: si_code at 8, si_pid at 16, si_status at 24.
        if r != 0 || args[2] == 0 {
            return;
        }
        let (Ok(code), Ok(pid), Ok(status)) = (
            raw::read_user::<i32>(args[2] + 8),
            raw::read_user::<i32>(args[2] + 16),
            raw::read_user::<i32>(args[2] + 24),
        ) else {
            return;
        };
        if code != libc::CLD_KILLED && code != libc::CLD_DUMPED {
            return;
        }
        (pid as i64, status)
    };
    let i = KILLED_N.fetch_add(1, Ordering::Relaxed);
    if let Some(slot) = KILLED.get(i) {
        slot.store((pid as u64) << 8 | (sig as u64 & 0xff), Ordering::Relaxed);
    }
}
