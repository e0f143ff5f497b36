//! Syscall names and `-e trace=SET`: which syscalls a report shows.
//!
//! The names come from the library's src/syscalls.tbl (the kernel's
//! syscall_64.tbl format, `number abi name`), compiled in. The classes
//! (`%file`, `%network`, ...) are strace's, written out below.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use crate::error::Failure;

/// The x86-64 syscall table of the library (kernel syscall_64.tbl format).
const TBL: &str = include_str!("../../src/syscalls.tbl");

/// Syscall numbers and names of x86-64.
#[derive(Debug)]
pub struct SyscallTable {
    by_name: BTreeMap<&'static str, u32>,
}

impl SyscallTable {
    /// Parses syscall_64.tbl text: `number abi name [entry points]`, `#`
    /// comments; x32-only entries are left out. Malformed lines are skipped
    /// (the table is compiled in; a unit test checks every line is used).
    pub fn parse(text: &'static str) -> SyscallTable {
        let mut by_name = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut f = line.split_whitespace();
            let (Some(nr), Some(abi), Some(name)) = (f.next(), f.next(), f.next()) else { continue };
            let Ok(nr) = nr.parse::<u32>() else { continue };
            if abi == "x32" {
                continue;
            }
            by_name.insert(name, nr);
        }
        SyscallTable { by_name }
    }

    /// The table compiled into this program.
    pub fn get() -> &'static SyscallTable {
        static TABLE: OnceLock<SyscallTable> = OnceLock::new();
        TABLE.get_or_init(|| SyscallTable::parse(TBL))
    }

    /// The number of syscall `name`.
    #[cfg(test)]
    pub fn number(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.keys().copied()
    }

    /// Whether `name` can appear in a report: a name of the table, or
    /// `syscall_N`, the reports' name for a number the table does not know.
    pub fn is_valid_name(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
            || name.strip_prefix("syscall_").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }
}

/// A class of syscalls, as strace's `-e trace=%CLASS`.
#[derive(Debug)]
pub struct Class {
    /// With the `%`.
    pub name: &'static str,
    /// Other spellings strace accepts, with the `%`.
    pub aliases: &'static [&'static str],
    pub members: &'static [&'static str],
}

// The class memberships.
//
// Source: strace(1) describes each class (the doc comment of each list
// quotes it), and strace's per-architecture syscall table for x86-64
// (src/linux/x86_64/syscallent.h with src/linux/generic/syscallent-common.h,
// strace 6.x) marks each syscall with the classes it belongs to: TF %file,
// TN %network, TP %process, TS %signal, TM %memory, TD %desc, TI %ipc,
// TC %creds, TCL %clock. The lists below were written from those marks, for
// the syscalls of src/syscalls.tbl; a unit test checks every name is in it.
// Syscalls newer than the table consulted (listxattrat, removexattrat,
// open_tree_attr, file_getattr, file_setattr: Linux 6.13-6.17) are put in
// the classes of their siblings (getxattrat, open_tree, statx): %desc and
// %file.

/// strace(1): "all system calls which take a file name as an argument".
#[rustfmt::skip]
const FILE: &[&str] = &[
    "open", "stat", "lstat", "access", "execve", "truncate", "getcwd", "chdir", "rename", "mkdir", "rmdir",
    "creat", "link", "unlink", "symlink", "readlink", "chmod", "chown", "lchown", "utime", "mknod", "uselib",
    "statfs", "pivot_root", "chroot", "acct", "mount", "umount2", "swapon", "swapoff", "quotactl", "setxattr",
    "lsetxattr", "getxattr", "lgetxattr", "listxattr", "llistxattr", "removexattr", "lremovexattr", "utimes",
    "inotify_add_watch", "openat", "mkdirat", "mknodat", "fchownat", "futimesat", "newfstatat", "unlinkat",
    "renameat", "linkat", "symlinkat", "readlinkat", "fchmodat", "faccessat", "utimensat", "fanotify_mark",
    "name_to_handle_at", "renameat2", "execveat", "statx", "open_tree", "move_mount", "fsconfig", "fspick",
    "openat2", "faccessat2", "mount_setattr", "fchmodat2", "setxattrat", "getxattrat",
    // newer than the strace table consulted, classed as their siblings
    "listxattrat", "removexattrat", "open_tree_attr", "file_getattr", "file_setattr",
];

/// strace(1): "all the network related system calls".
#[rustfmt::skip]
const NETWORK: &[&str] = &[
    "sendfile", "socket", "connect", "accept", "sendto", "recvfrom", "sendmsg", "recvmsg", "shutdown", "bind",
    "listen", "getsockname", "getpeername", "socketpair", "setsockopt", "getsockopt", "getpmsg", "putpmsg",
    "accept4", "recvmmsg", "sendmmsg",
];

/// strace(1): "system calls associated with process lifecycle (creation, exec, termination)".
#[rustfmt::skip]
const PROCESS: &[&str] = &[
    "clone", "fork", "vfork", "execve", "exit", "wait4", "kill", "rt_sigqueueinfo", "tkill", "exit_group",
    "tgkill", "waitid", "rt_tgsigqueueinfo", "execveat", "pidfd_send_signal", "clone3",
];

/// strace(1): "all signal related system calls".
#[rustfmt::skip]
const SIGNAL: &[&str] = &[
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "pause", "kill", "rt_sigpending", "rt_sigtimedwait",
    "rt_sigqueueinfo", "rt_sigsuspend", "sigaltstack", "tkill", "tgkill", "signalfd", "signalfd4",
    "rt_tgsigqueueinfo", "pidfd_send_signal", "io_uring_enter",
];

/// strace(1): "all memory mapping related system calls".
#[rustfmt::skip]
const MEMORY: &[&str] = &[
    "mmap", "mprotect", "munmap", "brk", "mremap", "msync", "mincore", "madvise", "shmat", "shmdt", "mlock",
    "munlock", "mlockall", "munlockall", "io_setup", "io_destroy", "remap_file_pages", "mbind",
    "set_mempolicy", "get_mempolicy", "migrate_pages", "move_pages", "mlock2", "pkey_mprotect",
    "io_uring_register", "set_mempolicy_home_node", "map_shadow_stack", "mseal",
];

/// strace(1): "all file descriptor related system calls".
#[rustfmt::skip]
const DESC: &[&str] = &[
    "read", "write", "open", "close", "fstat", "poll", "lseek", "mmap", "ioctl", "pread64", "pwrite64", "readv",
    "writev", "pipe", "select", "dup", "dup2", "sendfile", "fcntl", "flock", "fsync", "fdatasync", "ftruncate",
    "getdents", "fchdir", "creat", "fchmod", "fchown", "fstatfs", "readahead", "fsetxattr", "fgetxattr",
    "flistxattr", "fremovexattr", "epoll_create", "getdents64", "fadvise64", "epoll_wait", "epoll_ctl",
    "mq_open", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr", "inotify_init",
    "inotify_add_watch", "inotify_rm_watch", "openat", "mkdirat", "mknodat", "fchownat", "futimesat",
    "newfstatat", "unlinkat", "renameat", "linkat", "symlinkat", "readlinkat", "fchmodat", "faccessat",
    "pselect6", "ppoll", "splice", "tee", "sync_file_range", "vmsplice", "utimensat", "epoll_pwait", "signalfd",
    "timerfd_create", "eventfd", "fallocate", "timerfd_settime", "timerfd_gettime", "signalfd4", "eventfd2",
    "epoll_create1", "dup3", "pipe2", "inotify_init1", "preadv", "pwritev", "perf_event_open", "fanotify_init",
    "fanotify_mark", "name_to_handle_at", "open_by_handle_at", "syncfs", "setns", "finit_module", "renameat2",
    "memfd_create", "kexec_file_load", "bpf", "execveat", "userfaultfd", "copy_file_range", "preadv2",
    "pwritev2", "statx", "pidfd_send_signal", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "pidfd_open", "openat2",
    "pidfd_getfd", "faccessat2", "process_madvise", "epoll_pwait2", "mount_setattr", "quotactl_fd",
    "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self", "memfd_secret",
    "process_mrelease", "cachestat", "fchmodat2", "setxattrat", "getxattrat",
    // newer than the strace table consulted, classed as their siblings
    "listxattrat", "removexattrat", "open_tree_attr", "file_getattr", "file_setattr",
];

/// strace(1): "all IPC related system calls".
#[rustfmt::skip]
const IPC: &[&str] = &[
    "shmget", "shmat", "shmctl", "semget", "semop", "semctl", "shmdt", "msgget", "msgsnd", "msgrcv", "msgctl",
    "semtimedop",
];

/// strace(1): "system calls that read or modify user and group identifiers or capability sets".
#[rustfmt::skip]
const CREDS: &[&str] = &[
    "getuid", "getgid", "setuid", "setgid", "geteuid", "getegid", "setreuid", "setregid", "getgroups",
    "setgroups", "setresuid", "getresuid", "setresgid", "getresgid", "setfsuid", "setfsgid", "capget", "capset",
    "prctl",
];

/// strace(1): "system calls that read or modify system clocks".
#[rustfmt::skip]
const CLOCK: &[&str] = &[
    "gettimeofday", "adjtimex", "settimeofday", "time", "clock_settime", "clock_gettime", "clock_getres",
    "clock_adjtime",
];

/// Every class `-e trace=` accepts.
pub const CLASSES: &[Class] = &[
    Class { name: "%file", aliases: &[], members: FILE },
    Class { name: "%network", aliases: &["%net"], members: NETWORK },
    Class { name: "%process", aliases: &[], members: PROCESS },
    Class { name: "%signal", aliases: &[], members: SIGNAL },
    Class { name: "%memory", aliases: &[], members: MEMORY },
    Class { name: "%desc", aliases: &[], members: DESC },
    Class { name: "%ipc", aliases: &[], members: IPC },
    Class { name: "%creds", aliases: &[], members: CREDS },
    Class { name: "%clock", aliases: &[], members: CLOCK },
];

/// The class called `name` (with its `%`), aliases included.
pub fn class(name: &str) -> Option<&'static Class> {
    CLASSES.iter().find(|c| c.name == name || c.aliases.contains(&name))
}

/// "%file, %network (%net), ...": the accepted class names.
fn class_list() -> String {
    CLASSES
        .iter()
        .map(
            |c| {
                if c.aliases.is_empty() {
                    c.name.to_string()
                } else {
                    format!("{} ({})", c.name, c.aliases.join(", "))
                }
            },
        )
        .collect::<Vec<_>>()
        .join(", ")
}

/// One `-e trace=SET`: the named syscalls, or every syscall but them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TraceSet {
    negated: bool,
    names: BTreeSet<String>,
}

/// The syscalls a report shows: the union of every `-e trace=SET` given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceFilter {
    sets: Vec<TraceSet>,
    /// The sets as given (`%file,read`; `;`-joined when several), for headers.
    pub spec: String,
}

impl TraceFilter {
    /// Parses the `-e` arguments: each `trace=SET` (or a bare `SET`, as
    /// strace takes it), SET being comma-separated syscall names, classes
    /// (`%file`, ...), `all` or `none`, the whole set optionally preceded by
    /// `!` (every syscall but those). None when no `-e` was given. Every
    /// unknown name and class is reported in one error (exit status 2).
    pub fn parse(exprs: &[String]) -> Result<Option<TraceFilter>, Failure> {
        if exprs.is_empty() {
            return Ok(None);
        }
        let table = SyscallTable::get();
        let mut sets = Vec::new();
        let mut specs = Vec::new();
        for expr in exprs {
            let set = match expr.split_once('=') {
                Some(("trace" | "t", set)) => set,
                Some((q, _)) => {
                    return Err(Failure::usage(format!("-e {expr}: only trace=SET is supported, not {q}=")))
                }
                None => expr.as_str(),
            };
            let (negated, list) = match set.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, set),
            };
            let mut names = BTreeSet::new();
            let mut unknown_names = Vec::new();
            let mut unknown_classes = Vec::new();
            let mut problems = Vec::new();
            if list.is_empty() {
                problems.push("the set is empty (give names, classes such as %file, all or none)".to_string());
            }
            for item in list.split(',').filter(|_| !list.is_empty()) {
                let item = item.trim();
                if item.is_empty() {
                    problems.push("an empty name (two commas, or a trailing comma)".to_string());
                } else if item == "all" {
                    names.extend(table.names().map(str::to_string));
                } else if item == "none" {
                } else if item.starts_with('%') {
                    match class(item) {
                        Some(c) => names.extend(c.members.iter().map(|s| s.to_string())),
                        None => unknown_classes.push(item.to_string()),
                    }
                } else if item.starts_with('/') || item.starts_with('?') {
                    problems.push(format!("{item}: regular expressions and `?` are not supported"));
                } else if table.is_valid_name(item) {
                    names.insert(item.to_string());
                } else if class(&format!("%{item}")).is_some() {
                    unknown_names.push(format!("{item} (the class is %{item})"));
                } else {
                    unknown_names.push(item.to_string());
                }
            }
            if !unknown_names.is_empty() {
                let s = if unknown_names.len() == 1 { "" } else { "s" };
                problems.push(format!(
                    "unknown syscall{s} {} (x86-64 names, as in the kernel's syscall_64.tbl)",
                    unknown_names.join(", ")
                ));
            }
            if !unknown_classes.is_empty() {
                let es = if unknown_classes.len() == 1 { "" } else { "es" };
                problems.push(format!("unknown class{es} {} (classes: {})", unknown_classes.join(", "), class_list()));
            }
            if !problems.is_empty() {
                return Err(Failure::usage(format!("-e {expr}: {}", problems.join("; "))));
            }
            sets.push(TraceSet { negated, names });
            specs.push(set.to_string());
        }
        Ok(Some(TraceFilter { sets, spec: specs.join(";") }))
    }

    /// Whether the report shows syscall `name` (an i386 call, `i386:<name>`,
    /// as the x86-64 call of that name).
    pub fn matches(&self, name: &str) -> bool {
        let name = name.strip_prefix("i386:").unwrap_or(name);
        self.sets.iter().any(|s| s.names.contains(name) != s.negated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_the_table_is_a_syscall() {
        let lines = TBL.lines().filter(|l| !l.trim().is_empty() && !l.trim().starts_with('#')).count();
        let t = SyscallTable::get();
        assert_eq!(t.len(), lines);
        assert_eq!(t.number("read"), Some(0));
        assert_eq!(t.number("getppid"), Some(110));
        assert_eq!(t.number("openat"), Some(257));
        assert!(t.is_valid_name("syscall_999"));
        assert!(!t.is_valid_name("syscall_"));
        assert!(!t.is_valid_name("bogus"));
    }

    #[test]
    fn every_class_member_is_an_x86_64_syscall() {
        let t = SyscallTable::get();
        for c in CLASSES {
            for m in c.members {
                assert!(t.number(m).is_some(), "{} lists {m}, which syscalls.tbl does not have", c.name);
            }
            let unique: BTreeSet<_> = c.members.iter().collect();
            assert_eq!(unique.len(), c.members.len(), "{} lists a name twice", c.name);
        }
    }

    #[test]
    fn sets_classes_and_negation() {
        let f = TraceFilter::parse(&["trace=%file,read".into()]).unwrap().unwrap();
        assert!(f.matches("openat") && f.matches("read") && !f.matches("write"));
        let f = TraceFilter::parse(&["%net".into()]).unwrap().unwrap();
        assert!(f.matches("connect") && !f.matches("read"));
        let f = TraceFilter::parse(&["trace=!%memory".into()]).unwrap().unwrap();
        assert!(!f.matches("mmap") && f.matches("read") && f.matches("syscall_999"));
        let f = TraceFilter::parse(&["trace=read".into(), "trace=write".into()]).unwrap().unwrap();
        assert!(f.matches("read") && f.matches("write") && !f.matches("close"));
        assert_eq!(f.spec, "read;write");
        assert!(TraceFilter::parse(&[]).unwrap().is_none());
    }

    #[test]
    fn unknown_names_and_classes_are_all_reported() {
        let e = TraceFilter::parse(&["trace=read,bogus,%nope,file".into()]).unwrap_err();
        assert_eq!(e.code, crate::error::USAGE);
        assert!(e.message.contains("unknown syscalls bogus, file (the class is %file)"), "{}", e.message);
        assert!(e.message.contains("unknown class %nope (classes: %file, %network (%net),"), "{}", e.message);
        assert!(TraceFilter::parse(&["signal=SIGINT".into()]).is_err());
        assert!(TraceFilter::parse(&["trace=".into()]).is_err());
        assert!(TraceFilter::parse(&["trace=read,".into()]).is_err());
    }
}
