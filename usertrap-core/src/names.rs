//! Signal and errno names, from the libc crate's constants (which mirror
//! include/uapi/asm-generic/signal.h, arch/x86/include/uapi/asm/signal.h and
//! include/uapi/asm-generic/errno-base.h, errno.h): no number typed by hand.
//!
//! Real-time signals are named as strace names them, in the kernel's
//! numbering: `SIGRT_0` is signal 32 (SIGRTMIN in the kernel; glibc's
//! SIGRTMIN is 34 because it keeps two for itself).

use crate::sink::{self, Sink};

/// The standard signals of x86-64 Linux, 1 to 31.
const SIGNALS: [(i32, &str); 31] = [
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGINT, "SIGINT"),
    (libc::SIGQUIT, "SIGQUIT"),
    (libc::SIGILL, "SIGILL"),
    (libc::SIGTRAP, "SIGTRAP"),
    (libc::SIGABRT, "SIGABRT"),
    (libc::SIGBUS, "SIGBUS"),
    (libc::SIGFPE, "SIGFPE"),
    (libc::SIGKILL, "SIGKILL"),
    (libc::SIGUSR1, "SIGUSR1"),
    (libc::SIGSEGV, "SIGSEGV"),
    (libc::SIGUSR2, "SIGUSR2"),
    (libc::SIGPIPE, "SIGPIPE"),
    (libc::SIGALRM, "SIGALRM"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGSTKFLT, "SIGSTKFLT"),
    (libc::SIGCHLD, "SIGCHLD"),
    (libc::SIGCONT, "SIGCONT"),
    (libc::SIGSTOP, "SIGSTOP"),
    (libc::SIGTSTP, "SIGTSTP"),
    (libc::SIGTTIN, "SIGTTIN"),
    (libc::SIGTTOU, "SIGTTOU"),
    (libc::SIGURG, "SIGURG"),
    (libc::SIGXCPU, "SIGXCPU"),
    (libc::SIGXFSZ, "SIGXFSZ"),
    (libc::SIGVTALRM, "SIGVTALRM"),
    (libc::SIGPROF, "SIGPROF"),
    (libc::SIGWINCH, "SIGWINCH"),
    (libc::SIGIO, "SIGIO"),
    (libc::SIGPWR, "SIGPWR"),
    (libc::SIGSYS, "SIGSYS"),
];

/// The kernel's first real-time signal (include/uapi/asm-generic/signal.h
/// SIGRTMIN) and _NSIG.
pub const SIGRT_FIRST: i32 = 32;
pub const SIG_LAST: i32 = 64;

/// The name of standard signal `sig` (1 to 31), or None.
pub fn signal_name(sig: i32) -> Option<&'static str> {
    SIGNALS.iter().find(|(n, _)| *n == sig).map(|(_, name)| *name)
}

/// The number of a signal name: `SIGTERM`, `SIGRT_3` (35).
pub fn signal_number(name: &str) -> Option<i32> {
    if let Some(&(n, _)) = SIGNALS.iter().find(|(_, s)| *s == name) {
        return Some(n);
    }
    let n = name.strip_prefix("SIGRT_")?;
    if n.is_empty() || n.len() > 2 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v = n.bytes().fold(0i32, |v, b| v * 10 + i32::from(b - b'0'));
    (SIGRT_FIRST + v <= SIG_LAST).then_some(SIGRT_FIRST + v)
}

/// Writes the name of any signal number: `SIGTERM`, `SIGRT_3` (kernel
/// numbering, as strace), or `signal 99` for numbers that are none.
pub fn write_signal(s: &mut dyn Sink, sig: i64) {
    if let Some(name) = i32::try_from(sig).ok().and_then(signal_name) {
        s.put(name.as_bytes());
    } else if (i64::from(SIGRT_FIRST)..=i64::from(SIG_LAST)).contains(&sig) {
        s.put(b"SIGRT_");
        sink::signed(s, sig - i64::from(SIGRT_FIRST));
    } else {
        s.put(b"signal ");
        sink::signed(s, sig);
    }
}

/// errno names of x86-64 Linux (every name the kernel's uapi errno headers
/// define, aliases such as EWOULDBLOCK and EDEADLOCK left out).
const ERRNOS: [(i32, &str); 131] = [
    (libc::EPERM, "EPERM"),
    (libc::ENOENT, "ENOENT"),
    (libc::ESRCH, "ESRCH"),
    (libc::EINTR, "EINTR"),
    (libc::EIO, "EIO"),
    (libc::ENXIO, "ENXIO"),
    (libc::E2BIG, "E2BIG"),
    (libc::ENOEXEC, "ENOEXEC"),
    (libc::EBADF, "EBADF"),
    (libc::ECHILD, "ECHILD"),
    (libc::EAGAIN, "EAGAIN"),
    (libc::ENOMEM, "ENOMEM"),
    (libc::EACCES, "EACCES"),
    (libc::EFAULT, "EFAULT"),
    (libc::ENOTBLK, "ENOTBLK"),
    (libc::EBUSY, "EBUSY"),
    (libc::EEXIST, "EEXIST"),
    (libc::EXDEV, "EXDEV"),
    (libc::ENODEV, "ENODEV"),
    (libc::ENOTDIR, "ENOTDIR"),
    (libc::EISDIR, "EISDIR"),
    (libc::EINVAL, "EINVAL"),
    (libc::ENFILE, "ENFILE"),
    (libc::EMFILE, "EMFILE"),
    (libc::ENOTTY, "ENOTTY"),
    (libc::ETXTBSY, "ETXTBSY"),
    (libc::EFBIG, "EFBIG"),
    (libc::ENOSPC, "ENOSPC"),
    (libc::ESPIPE, "ESPIPE"),
    (libc::EROFS, "EROFS"),
    (libc::EMLINK, "EMLINK"),
    (libc::EPIPE, "EPIPE"),
    (libc::EDOM, "EDOM"),
    (libc::ERANGE, "ERANGE"),
    (libc::EDEADLK, "EDEADLK"),
    (libc::ENAMETOOLONG, "ENAMETOOLONG"),
    (libc::ENOLCK, "ENOLCK"),
    (libc::ENOSYS, "ENOSYS"),
    (libc::ENOTEMPTY, "ENOTEMPTY"),
    (libc::ELOOP, "ELOOP"),
    (libc::ENOMSG, "ENOMSG"),
    (libc::EIDRM, "EIDRM"),
    (libc::ECHRNG, "ECHRNG"),
    (libc::EL2NSYNC, "EL2NSYNC"),
    (libc::EL3HLT, "EL3HLT"),
    (libc::EL3RST, "EL3RST"),
    (libc::ELNRNG, "ELNRNG"),
    (libc::EUNATCH, "EUNATCH"),
    (libc::ENOCSI, "ENOCSI"),
    (libc::EL2HLT, "EL2HLT"),
    (libc::EBADE, "EBADE"),
    (libc::EBADR, "EBADR"),
    (libc::EXFULL, "EXFULL"),
    (libc::ENOANO, "ENOANO"),
    (libc::EBADRQC, "EBADRQC"),
    (libc::EBADSLT, "EBADSLT"),
    (libc::EBFONT, "EBFONT"),
    (libc::ENOSTR, "ENOSTR"),
    (libc::ENODATA, "ENODATA"),
    (libc::ETIME, "ETIME"),
    (libc::ENOSR, "ENOSR"),
    (libc::ENONET, "ENONET"),
    (libc::ENOPKG, "ENOPKG"),
    (libc::EREMOTE, "EREMOTE"),
    (libc::ENOLINK, "ENOLINK"),
    (libc::EADV, "EADV"),
    (libc::ESRMNT, "ESRMNT"),
    (libc::ECOMM, "ECOMM"),
    (libc::EPROTO, "EPROTO"),
    (libc::EMULTIHOP, "EMULTIHOP"),
    (libc::EDOTDOT, "EDOTDOT"),
    (libc::EBADMSG, "EBADMSG"),
    (libc::EOVERFLOW, "EOVERFLOW"),
    (libc::ENOTUNIQ, "ENOTUNIQ"),
    (libc::EBADFD, "EBADFD"),
    (libc::EREMCHG, "EREMCHG"),
    (libc::ELIBACC, "ELIBACC"),
    (libc::ELIBBAD, "ELIBBAD"),
    (libc::ELIBSCN, "ELIBSCN"),
    (libc::ELIBMAX, "ELIBMAX"),
    (libc::ELIBEXEC, "ELIBEXEC"),
    (libc::EILSEQ, "EILSEQ"),
    (libc::ERESTART, "ERESTART"),
    (libc::ESTRPIPE, "ESTRPIPE"),
    (libc::EUSERS, "EUSERS"),
    (libc::ENOTSOCK, "ENOTSOCK"),
    (libc::EDESTADDRREQ, "EDESTADDRREQ"),
    (libc::EMSGSIZE, "EMSGSIZE"),
    (libc::EPROTOTYPE, "EPROTOTYPE"),
    (libc::ENOPROTOOPT, "ENOPROTOOPT"),
    (libc::EPROTONOSUPPORT, "EPROTONOSUPPORT"),
    (libc::ESOCKTNOSUPPORT, "ESOCKTNOSUPPORT"),
    (libc::EOPNOTSUPP, "EOPNOTSUPP"),
    (libc::EPFNOSUPPORT, "EPFNOSUPPORT"),
    (libc::EAFNOSUPPORT, "EAFNOSUPPORT"),
    (libc::EADDRINUSE, "EADDRINUSE"),
    (libc::EADDRNOTAVAIL, "EADDRNOTAVAIL"),
    (libc::ENETDOWN, "ENETDOWN"),
    (libc::ENETUNREACH, "ENETUNREACH"),
    (libc::ENETRESET, "ENETRESET"),
    (libc::ECONNABORTED, "ECONNABORTED"),
    (libc::ECONNRESET, "ECONNRESET"),
    (libc::ENOBUFS, "ENOBUFS"),
    (libc::EISCONN, "EISCONN"),
    (libc::ENOTCONN, "ENOTCONN"),
    (libc::ESHUTDOWN, "ESHUTDOWN"),
    (libc::ETOOMANYREFS, "ETOOMANYREFS"),
    (libc::ETIMEDOUT, "ETIMEDOUT"),
    (libc::ECONNREFUSED, "ECONNREFUSED"),
    (libc::EHOSTDOWN, "EHOSTDOWN"),
    (libc::EHOSTUNREACH, "EHOSTUNREACH"),
    (libc::EALREADY, "EALREADY"),
    (libc::EINPROGRESS, "EINPROGRESS"),
    (libc::ESTALE, "ESTALE"),
    (libc::EUCLEAN, "EUCLEAN"),
    (libc::ENOTNAM, "ENOTNAM"),
    (libc::ENAVAIL, "ENAVAIL"),
    (libc::EISNAM, "EISNAM"),
    (libc::EREMOTEIO, "EREMOTEIO"),
    (libc::EDQUOT, "EDQUOT"),
    (libc::ENOMEDIUM, "ENOMEDIUM"),
    (libc::EMEDIUMTYPE, "EMEDIUMTYPE"),
    (libc::ECANCELED, "ECANCELED"),
    (libc::ENOKEY, "ENOKEY"),
    (libc::EKEYEXPIRED, "EKEYEXPIRED"),
    (libc::EKEYREVOKED, "EKEYREVOKED"),
    (libc::EKEYREJECTED, "EKEYREJECTED"),
    (libc::EOWNERDEAD, "EOWNERDEAD"),
    (libc::ENOTRECOVERABLE, "ENOTRECOVERABLE"),
    (libc::ERFKILL, "ERFKILL"),
    (libc::EHWPOISON, "EHWPOISON"),
];

/// The name of errno `e` (positive), or None for numbers that are none.
pub fn errno_name(e: i64) -> Option<&'static str> {
    ERRNOS.iter().find(|(n, _)| i64::from(*n) == e).map(|(_, name)| *name)
}

/// The number of errno name `name`.
pub fn errno_number(name: &str) -> Option<i32> {
    ERRNOS.iter().find(|(_, s)| *s == name).map(|(n, _)| *n)
}

/// The name the JSON report gives an errno without one (errors_by_errno).
pub const ERRNO_OTHER: &str = "E_OTHER";

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    struct V(std::vec::Vec<u8>);
    impl Sink for V {
        fn put(&mut self, b: &[u8]) {
            self.0.extend_from_slice(b);
        }
    }
    fn sig(n: i64) -> std::string::String {
        let mut v = V(std::vec::Vec::new());
        write_signal(&mut v, n);
        std::string::String::from_utf8(v.0).unwrap()
    }

    #[test]
    fn every_standard_signal_once_in_order() {
        for (i, (n, name)) in SIGNALS.iter().enumerate() {
            assert_eq!(*n as usize, i + 1, "{name}");
            assert_eq!(signal_number(name), Some(*n));
        }
        assert_eq!(sig(15), "SIGTERM");
        assert_eq!(sig(31), "SIGSYS");
        assert_eq!(sig(32), "SIGRT_0");
        assert_eq!(sig(35), "SIGRT_3");
        assert_eq!(sig(64), "SIGRT_32");
        assert_eq!(sig(0), "signal 0");
        assert_eq!(sig(65), "signal 65");
        assert_eq!(sig(-3), "signal -3");
        assert_eq!(sig(i64::MIN), "signal -9223372036854775808");
        assert_eq!(signal_number("SIGRT_3"), Some(35));
        assert_eq!(signal_number("SIGRT_33"), None);
        assert_eq!(signal_number("SIGRT_"), None);
        assert_eq!(signal_number("SIGFOO"), None);
    }

    #[test]
    fn errnos_both_ways() {
        assert_eq!(errno_name(2), Some("ENOENT"));
        assert_eq!(errno_name(133), Some("EHWPOISON"));
        assert_eq!(errno_name(41), None, "no errno 41 on x86-64");
        assert_eq!(errno_name(0), None);
        assert_eq!(errno_name(-1), None);
        for (n, name) in ERRNOS {
            assert_eq!(errno_number(name), Some(n));
            assert_eq!(errno_name(i64::from(n)), Some(name));
        }
        let mut seen = std::collections::BTreeSet::new();
        assert!(ERRNOS.iter().all(|(n, _)| seen.insert(*n)), "an errno twice");
    }
}
