//! Names in the report: syscalls (x86-64 and i386), signals, errnos, the
//! command.
//! Never: anything but naming.

use super::out::Out;
use super::settings::close;
use crate::measure::names as syscall_names;
use crate::measure::stats::{I386_BASE, MAX_NR};
use crate::rt::log;
use crate::rt::raw;

pub(super) fn name(o: &mut Out, nr: usize) {
    if let Some(n) = nr.checked_sub(I386_BASE) {
        // `int $0x80`: i386 numbers, names and arguments.
        o.str("i386:");
        match syscall_names::name_i386(n as u64) {
            Some(name) => o.str(name),
            None => o.str("syscall_").num(n as u64),
        };
        return;
    }
    match syscall_names::name(nr as u64) {
        Some(n) if nr < MAX_NR => {
            o.str(n);
        }
        _ if nr >= MAX_NR => {
            o.str("other");
        }
        _ => {
            o.str("syscall_").num(nr as u64);
        }
    }
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

/// /proc/self/comm into `buf`, without its newline (empty if unreadable).
pub(super) fn read_comm(buf: &mut [u8; 64]) -> &[u8] {
    let Ok(fd) = raw::openat(libc::AT_FDCWD, c"/proc/self/comm", libc::O_RDONLY | libc::O_CLOEXEC, 0) else {
        // No /proc (a chroot): the kernel's name through prctl.
        let name = raw::prctl_get_name();
        let n = name.iter().position(|&b| b == 0).unwrap_or(16);
        if let Some(d) = buf.get_mut(..n) {
            d.copy_from_slice(name.get(..n).unwrap_or_default());
        }
        return buf.get(..n).unwrap_or(&[]);
    };
    let n = raw::read(fd, buf).unwrap_or(0);
    close(fd);
    let name = buf.get(..n).unwrap_or(&[]);
    name.strip_suffix(b"\n").unwrap_or(name)
}

pub(super) fn signal_name(sig: i32) -> &'static str {
    const NAMES: [&str; 32] = [
        "signal 0",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    NAMES.get(sig as usize).copied().unwrap_or("a real-time signal")
}

pub(super) fn errno_name(o: &mut Out, e: usize) {
    match log::errno_name(e as i64) {
        "" => o.str("E_OTHER"),
        n => o.str(n),
    };
}
