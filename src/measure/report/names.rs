//! Names in the report: syscalls (x86-64 and i386) and errnos, spelled by
//! usertrap-core; the command.
//! Never: anything but naming.

use super::out::Out;
use super::settings::close;
use crate::measure::stats::{I386_BASE, MAX_NR};
use crate::rt::raw;
use usertrap_core::names;
use usertrap_core::report::{self, Name};

/// The name of the figures' slot `nr` (measure::stats): an x86-64 number,
/// `other` for the numbers kept together, or an i386 number.
pub(super) fn slot_name(nr: usize) -> Name<'static> {
    match nr.checked_sub(I386_BASE) {
        Some(n) => Name::Number { nr: n as u64, i386: true },
        None if nr >= MAX_NR => Name::Text(b"other"),
        None => Name::Number { nr: nr as u64, i386: false },
    }
}

/// Writes the slot's name (usertrap-core's spelling: `read`, `i386:read`,
/// `syscall_N`).
pub(super) fn name(o: &mut Out, nr: usize) {
    report::write_name(o, &slot_name(nr));
}

/// The process's name, /proc/self/comm.
pub(super) fn command(o: &mut Out, json: bool) {
    let mut buf = [0u8; 64];
    let name = read_comm(&mut buf);
    if json {
        o.json_str(name);
    } else {
        o.bytes(name);
    }
}

/// /proc/self/comm into `buf`, without its newline (empty if unreadable):
/// the name of the process's main thread.
pub(super) fn read_comm(buf: &mut [u8; 64]) -> &[u8] {
    // The main thread asks the kernel for its own name: the same bytes,
    // without opening a /proc file (7 us here, against two cheap syscalls).
    if raw::gettid() == raw::getpid() {
        return own_name(buf);
    }
    let Ok(fd) = raw::openat(libc::AT_FDCWD, c"/proc/self/comm", libc::O_RDONLY | libc::O_CLOEXEC, 0) else {
        // No /proc (a chroot): the kernel's name through prctl.
        return own_name(buf);
    };
    let n = raw::read(fd, buf).unwrap_or(0);
    close(fd);
    let name = buf.get(..n).unwrap_or(&[]);
    name.strip_suffix(b"\n").unwrap_or(name)
}

/// The calling thread's name (prctl PR_GET_NAME) into `buf`.
fn own_name(buf: &mut [u8; 64]) -> &[u8] {
    let name = raw::prctl_get_name();
    let n = name.iter().position(|&b| b == 0).unwrap_or(16);
    if let Some(d) = buf.get_mut(..n) {
        d.copy_from_slice(name.get(..n).unwrap_or_default());
    }
    buf.get(..n).unwrap_or(&[])
}

/// An errno's name for `errors_by_errno` (index 0: any errno from
/// MAX_ERRNO on, E_OTHER).
pub(super) fn errno_name(o: &mut Out, e: usize) {
    o.str(names::errno_name(e as i64).unwrap_or(names::ERRNO_OTHER));
}
