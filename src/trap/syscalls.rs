//! How each syscall is handled: run as it is, or emulated (and by which
//! emulation), and whether its sites may be patched. The one table that the
//! slow path's dispatch ([`super::dispatch`]) and the patcher
//! (`patch::install`) both consult, so that they cannot drift apart.
//!
//! A patched site's calls take the fast path, which has no signal frame and
//! runs the call through the gate as it is (after the check that keeps the
//! library's own memory mapped), or, for the few emulations that need no
//! frame ([`fast`]), emulates it there (or, where that version says so,
//! sends the call back to the slow path): so a syscall is patchable exactly
//! when it is not emulated or its emulation has a fast version.
//! Never: run anything. This is a description; the emulations live in
//! `emulate`.

/// Where a call that installs a temporary signal mask keeps its sigset.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SigsetArg {
    /// The argument that holds the sigset pointer (its size is the next
    /// one), or points to a structure that holds it (`at`).
    pub index: usize,
    pub at: SigsetAt,
}

/// How the argument of a [`SigsetArg`] names the sigset.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SigsetAt {
    /// The sigset pointer itself, its size in the next argument.
    Args,
    /// A `{sigset pointer, size}` pair (pselect6, `struct __aio_sigset`).
    Pair,
    /// A `struct io_uring_getevents_arg` (`{sigmask, sigmask_sz (u32),
    /// min_wait_usec (u32), ts}`), whose size (24) is the next argument.
    GeteventsArg,
}

/// rt_sigsuspend(mask, size).
pub const SIGSUSPEND_MASK: SigsetArg = SigsetArg { index: 0, at: SigsetAt::Args };
/// ppoll(fds, n, timeout, mask, size).
pub const PPOLL_MASK: SigsetArg = SigsetArg { index: 3, at: SigsetAt::Args };
/// epoll_pwait(fd, events, max, timeout, mask, size), and epoll_pwait2.
pub const EPOLL_PWAIT_MASK: SigsetArg = SigsetArg { index: 4, at: SigsetAt::Args };
/// pselect6(n, r, w, e, timeout, &{mask, size}), and io_pgetevents's last
/// argument (`struct __aio_sigset`).
pub const PSELECT6_MASK: SigsetArg = SigsetArg { index: 5, at: SigsetAt::Pair };
/// io_uring_enter(fd, to_submit, min_complete, flags, mask, size) waiting
/// (`IORING_ENTER_GETEVENTS`).
pub const URING_ENTER_MASK: SigsetArg = SigsetArg { index: 4, at: SigsetAt::Args };
/// The same with `IORING_ENTER_EXT_ARG`: (.., flags, &getevents_arg, 24).
pub const URING_ENTER_EXT_MASK: SigsetArg = SigsetArg { index: 4, at: SigsetAt::GeteventsArg };

/// io_uring_enter's flags that decide where its temporary mask is.
const IORING_ENTER_GETEVENTS: u64 = 1 << 0;
const IORING_ENTER_EXT_ARG: u64 = 1 << 3;
/// The argument is an offset into a region registered with the ring: not
/// program memory we could rewrite (Linux 6.13+).
const IORING_ENTER_EXT_ARG_REG: u64 = 1 << 6;

/// Where io_uring_enter with these arguments keeps a temporary mask: only
/// a call that waits for completions installs one (io_uring/io_uring.c,
/// io_cqring_wait). None: no mask to adjust.
pub fn uring_enter_sigset(args: &[u64; 6]) -> Option<SigsetArg> {
    let flags = args[3] as u32 as u64;
    if flags & IORING_ENTER_GETEVENTS == 0 || flags & IORING_ENTER_EXT_ARG_REG != 0 {
        None
    } else if flags & IORING_ENTER_EXT_ARG != 0 {
        Some(URING_ENTER_EXT_MASK)
    } else {
        Some(URING_ENTER_MASK)
    }
}

/// What the library does for one syscall on the slow path.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Handling {
    /// Run through the gate with the program's registers (calls on the
    /// library's own memory are checked first, on both paths).
    Native,
    /// Emulated: needs the signal frame or the library's bookkeeping.
    Emulated(Emulation),
}

/// The emulations, by what they keep right.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Emulation {
    /// rt_sigaction: the disposition table (owned signals stay ours).
    SigAction,
    /// rt_sigprocmask: changes the ucontext our sigreturn restores.
    SigProcMask,
    /// sigaltstack: the program's alternate stack is virtual.
    SigAltStack,
    /// rt_sigpending: owned signals held back for the program are added.
    SigPending,
    /// rt_sigtimedwait: may take an owned signal held back for the program.
    SigTimedWait,
    /// rt_sigreturn: puts the owned signals back into the program's view.
    SigReturn,
    /// A call that installs a temporary mask we rewrite.
    TempMask(SigsetArg),
    /// io_uring_enter: when it waits, a temporary mask as TempMask, where
    /// its flags say ([`uring_enter_sigset`]); run as it is otherwise.
    UringEnter,
    /// clone, clone3, fork, vfork: the child gets the program's exact state.
    Clone,
    /// execve, execveat: through the launcher, with the program's state.
    Exec,
    /// readlink(at): /proc/self/exe names the program, not the launcher.
    ReadlinkExe,
    /// exit: per-thread bookkeeping (the last thread writes the report).
    Exit,
    /// exit_group: the report.
    ExitGroup,
    /// arch_prctl: the GS base belongs to the library.
    ArchPrctl,
    /// seccomp: the program's filter is checked against what we need, and
    /// patching stops.
    Seccomp,
    /// prctl: Syscall User Dispatch and other state the library owns.
    Prctl,
    /// ptrace: PTRACE_TRACEME ends interception.
    Ptrace,
    /// membarrier: answered as if the library had not registered for
    /// SYNC_CORE.
    Membarrier,
}

/// How syscall `nr` is handled.
#[inline(always)]
pub fn handling(nr: i64) -> Handling {
    use Emulation::*;
    use Handling::Emulated;
    match nr {
        libc::SYS_rt_sigaction => Emulated(SigAction),
        libc::SYS_rt_sigprocmask => Emulated(SigProcMask),
        libc::SYS_sigaltstack => Emulated(SigAltStack),
        libc::SYS_rt_sigpending => Emulated(SigPending),
        libc::SYS_rt_sigtimedwait => Emulated(SigTimedWait),
        libc::SYS_rt_sigreturn => Emulated(SigReturn),
        libc::SYS_rt_sigsuspend => Emulated(TempMask(SIGSUSPEND_MASK)),
        libc::SYS_ppoll => Emulated(TempMask(PPOLL_MASK)),
        libc::SYS_epoll_pwait | libc::SYS_epoll_pwait2 => Emulated(TempMask(EPOLL_PWAIT_MASK)),
        libc::SYS_pselect6 | crate::rt::raw::SYS_io_pgetevents => Emulated(TempMask(PSELECT6_MASK)),
        libc::SYS_clone | libc::SYS_clone3 | libc::SYS_fork | libc::SYS_vfork => Emulated(Clone),
        libc::SYS_execve | libc::SYS_execveat => Emulated(Exec),
        libc::SYS_readlink | libc::SYS_readlinkat => Emulated(ReadlinkExe),
        libc::SYS_exit => Emulated(Exit),
        libc::SYS_exit_group => Emulated(ExitGroup),
        libc::SYS_arch_prctl => Emulated(ArchPrctl),
        libc::SYS_seccomp => Emulated(Seccomp),
        libc::SYS_prctl => Emulated(Prctl),
        libc::SYS_ptrace => Emulated(Ptrace),
        libc::SYS_membarrier => Emulated(Membarrier),
        libc::SYS_io_uring_enter => Emulated(UringEnter),
        _ => Handling::Native,
    }
}

/// The arguments of emulated call `nr` as the kernel takes them: those its
/// prototype declares `int` sign-extended from their low 32 bits, `unsigned
/// int` zero-extended (the kernel's syscall wrappers cast each register to
/// its type: `rt_sigaction(SIGUSR1 | 1 << 32, ...)` is SIGUSR1's), so the
/// emulations compare and forward what the kernel would see. The others
/// (pointers, sizes, longs) are whole; readlink's bufsiz and the exit codes
/// are narrowed where they are read.
pub fn kernel_args(nr: i64, mut args: [u64; 6]) -> [u64; 6] {
    let int = |a: u64| a as i32 as i64 as u64;
    let uint = |a: u64| a as u32 as u64;
    match nr {
        // rt_sigaction(int sig, ...), rt_sigprocmask(int how, ...),
        // arch_prctl(int option, ...), prctl(int option, ...)
        libc::SYS_rt_sigaction | libc::SYS_rt_sigprocmask | libc::SYS_arch_prctl | libc::SYS_prctl => {
            args[0] = int(args[0]);
        }
        // execveat(int dfd, ..., int flags)
        libc::SYS_execveat => {
            args[0] = int(args[0]);
            args[4] = int(args[4]);
        }
        // seccomp(unsigned int op, unsigned int flags, void *uargs)
        libc::SYS_seccomp => {
            args[0] = uint(args[0]);
            args[1] = uint(args[1]);
        }
        // membarrier(int cmd, unsigned int flags, int cpu_id)
        libc::SYS_membarrier => {
            args[0] = int(args[0]);
            args[1] = uint(args[1]);
            args[2] = int(args[2]);
        }
        _ => {}
    }
    args
}

/// Whether emulation `e` has a version for the fast path, which has no
/// signal frame (`ut_fast_dispatch`). Each holds for its own reason:
/// - rt_sigprocmask, rt_sigaction, sigaltstack: they only change the
///   program's signal state, made atomic without a frame by two mask
///   changes that hold every signal between them
///   (emulate::signals::fast).
/// - readlink(at) and arch_prctl need no frame and no signal state: the
///   first answers /proc/self/exe from what the library knows; the second
///   answers ARCH_GET_GS (the GS base is the library's) and runs every
///   other code natively (ARCH_SET_FS, ARCH_GET_FS, CET and AMX requests:
///   the library's code uses neither FS nor those states); ARCH_SET_GS,
///   refused with a line on stderr, is declined to the slow path.
/// - exit and exit_group: their bookkeeping (the report, retiring the
///   thread's area) runs with every signal held, as in the signal calls'
///   window (`fast::ending`), so nothing of the program runs in the middle;
///   and only on the thread's own fast-path stack, as large as the signal
///   stack the slow path uses. A call that did not move there (no
///   FSGSBASE, a call nested in a handler that interrupted another, a
///   vfork child on its parent's area) is declined before it is counted
///   (`Outcome::Decline`) and trapped again: the slow path.
/// - execve and execveat: only the attempts that fail before the file is
///   opened (a path that does not resolve: ENOENT, ENOTDIR, ELOOP,
///   ENAMETOOLONG, EACCES on a directory, EBADF, EFAULT; a bad flag): the
///   same checks as the slow path's emulation, in the same order, decided
///   by one `newfstatat` of the name the slow path would open, whose
///   failure means its open would fail alike (the same lookup). These
///   change nothing; a program handler that interrupts them is entered as
///   for any fast call. Every other attempt (the file exists) is declined
///   before anything is done to it, and the slow path hands the program's
///   state to the launcher as always (so the file is opened once).
/// - ppoll, pselect6, epoll_pwait(2), rt_sigsuspend, io_pgetevents (the
///   temporary masks): they change no state of the program's; the kernel
///   installs the mask (without the owned signals) for the wait alone, and
///   a handler that ends the wait is entered with it, as natively
///   (emulate::signals::fast::with_temp_mask says how it is told apart).
///   Only on the thread's own fast-path stack and without hooks; a call
///   that an owned signal held back for the program would end at once is
///   declined.
/// - io_uring_enter: a call that installs no temporary mask (it does not
///   wait, or names none) runs as it is, as any fast call; one that does is
///   declined to the slow path, as the other temporary masks (below).
/// - A thread that left the library (a vfork child after PTRACE_TRACEME,
///   which keeps its parent's patched sites) makes all of them natively.
///
/// The others stay slow: rt_sigreturn restores a frame; clone, fork and
/// vfork start a child from the program's exact registers (a thread on
/// its own stack from a frame the parent writes; vfork from a gate stub
/// after sigreturn); rt_sigtimedwait may take an owned signal held back
/// for the program; prctl, seccomp, ptrace and membarrier are rare and change what
/// the library itself relies on; rt_sigpending is rare.
pub fn fast(e: Emulation) -> bool {
    matches!(
        e,
        Emulation::SigAction
            | Emulation::SigProcMask
            | Emulation::SigAltStack
            | Emulation::ReadlinkExe
            | Emulation::ArchPrctl
            | Emulation::Exit
            | Emulation::ExitGroup
            | Emulation::Exec
            | Emulation::UringEnter
            | Emulation::TempMask(_)
    )
}

/// Whether emulation `e`'s fast version changes the kernel's signal mask
/// (which a seccomp filter of the program's may forbid the library).
pub fn fast_changes_mask(e: Emulation) -> bool {
    matches!(
        e,
        Emulation::SigAction | Emulation::SigProcMask | Emulation::SigAltStack | Emulation::Exit | Emulation::ExitGroup
    )
}

/// Whether the sites of syscall `nr` may be patched: their calls then take
/// the fast path, which runs them natively, or their fast emulation.
pub fn patchable(nr: i64) -> bool {
    match handling(nr) {
        Handling::Native => true,
        Handling::Emulated(e) => fast(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The syscalls kept on the slow path before this table existed
    /// (patcher::needs_slow_path), readlink(at) aside.
    const SLOW: [i64; 25] = [
        libc::SYS_rt_sigaction,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_sigaltstack,
        libc::SYS_rt_sigpending,
        libc::SYS_rt_sigtimedwait,
        libc::SYS_rt_sigsuspend,
        libc::SYS_ppoll,
        libc::SYS_pselect6,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_pwait2,
        333, // io_pgetevents
        libc::SYS_clone,
        libc::SYS_clone3,
        libc::SYS_fork,
        libc::SYS_vfork,
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_exit,
        libc::SYS_exit_group,
        libc::SYS_arch_prctl,
        libc::SYS_prctl,
        libc::SYS_seccomp,
        libc::SYS_membarrier,
        libc::SYS_ptrace,
    ];

    /// Emulated calls with a version for the fast path (their sites are
    /// patched).
    const FAST: [i64; 17] = [
        libc::SYS_rt_sigaction,
        libc::SYS_rt_sigprocmask,
        libc::SYS_sigaltstack,
        libc::SYS_readlink,
        libc::SYS_readlinkat,
        libc::SYS_arch_prctl,
        libc::SYS_exit,
        libc::SYS_exit_group,
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_io_uring_enter,
        libc::SYS_rt_sigsuspend,
        libc::SYS_ppoll,
        libc::SYS_pselect6,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_pwait2,
        333, // io_pgetevents
    ];

    #[test]
    fn emulated_calls_are_patched_only_with_a_fast_version() {
        for nr in -1..1024 {
            if let Handling::Emulated(e) = handling(nr) {
                assert_eq!(patchable(nr), FAST.contains(&nr), "{nr} ({e:?})");
                assert_eq!(fast(e), FAST.contains(&nr), "{nr} ({e:?})");
                if fast_changes_mask(e) {
                    assert!(fast(e), "{nr} ({e:?})");
                }
            } else {
                assert!(patchable(nr), "{nr} runs natively but is not patchable");
            }
        }
    }

    #[test]
    fn the_same_calls_keep_the_slow_path_as_before() {
        // Emulated, yet never on the slow path only.
        let emulated_not_slow = [libc::SYS_readlink, libc::SYS_readlinkat, libc::SYS_io_uring_enter];
        for nr in -1..1024 {
            let slow = SLOW.contains(&nr);
            assert_eq!(patchable(nr), !slow || FAST.contains(&nr), "{nr}");
            assert_eq!(handling(nr) != Handling::Native, slow || emulated_not_slow.contains(&nr), "{nr}");
        }
    }

    #[test]
    fn temporary_masks_name_their_sigset() {
        assert_eq!(handling(libc::SYS_ppoll), Handling::Emulated(Emulation::TempMask(PPOLL_MASK)));
        assert_eq!(handling(333), Handling::Emulated(Emulation::TempMask(PSELECT6_MASK)));
        assert_eq!(PSELECT6_MASK, SigsetArg { index: 5, at: SigsetAt::Pair });
        // io_uring_enter(fd, submit, min, flags, arg, argsz): only a wait.
        let enter = |flags: u64| uring_enter_sigset(&[3, 0, 1, flags, 0x1000, 8]);
        assert_eq!(enter(0), None);
        assert_eq!(enter(IORING_ENTER_GETEVENTS), Some(URING_ENTER_MASK));
        assert_eq!(enter(IORING_ENTER_GETEVENTS | 1 << 32), Some(URING_ENTER_MASK));
        assert_eq!(enter(IORING_ENTER_EXT_ARG | 1), Some(URING_ENTER_EXT_MASK));
        assert_eq!(enter(IORING_ENTER_EXT_ARG_REG | IORING_ENTER_EXT_ARG | 1), None);
    }

    #[test]
    fn int_arguments_are_narrowed_as_the_kernel_casts_them() {
        const HIGH: u64 = 1 << 32;
        let sig = kernel_args(libc::SYS_rt_sigaction, [31 | HIGH, 7 | HIGH, 0, 8, 0, 0]);
        assert_eq!(sig, [31, 7 | HIGH, 0, 8, 0, 0]);
        // An int is sign-extended (AT_FDCWD), an unsigned int is not.
        let at = kernel_args(libc::SYS_execveat, [(-100i32 as u32 as u64) | HIGH, 1, 2, 3, 0x1000 | HIGH, 0]);
        assert_eq!(at, [-100i64 as u64, 1, 2, 3, 0x1000, 0]);
        let sc = kernel_args(libc::SYS_seccomp, [u32::MAX as u64 | HIGH, HIGH, 5, 0, 0, 0]);
        assert_eq!(sc, [u32::MAX as u64, 0, 5, 0, 0, 0]);
        let other = [HIGH | 1, HIGH, HIGH, HIGH, HIGH, HIGH];
        assert_eq!(kernel_args(libc::SYS_clone, other), other);
    }
}
