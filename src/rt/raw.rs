//! Typed wrappers over the gate: the only way trap-context code makes syscalls,
//! and the only way it touches program memory that may be unmapped.
//!
//! Results are the kernel's: a value >= 0, or -errno.
//!
//! Never: decide anything; callers check the results.

pub use libc::{
    SYS_arch_prctl, SYS_clone, SYS_clone3, SYS_execve, SYS_execveat, SYS_exit, SYS_exit_group, SYS_fork, SYS_getpid,
    SYS_gettid, SYS_mmap, SYS_mprotect, SYS_mremap, SYS_munmap, SYS_prctl, SYS_rt_sigaction, SYS_rt_sigprocmask,
    SYS_rt_sigreturn, SYS_sigaltstack, SYS_tgkill, SYS_write,
};

use crate::rt::arch;

/// io_pgetevents (libc does not name it).
#[allow(non_upper_case_globals)]
pub const SYS_io_pgetevents: i64 = 333;

/// Issue syscall `nr` from the gate.
#[inline]
pub fn syscall6(nr: i64, a: [u64; 6]) -> i64 {
    // SAFETY: the gate issues exactly this syscall; what the syscall does with
    // its arguments is the caller's contract, as for any syscall.
    unsafe { arch::ut_syscall6(nr as u64, a[0], a[1], a[2], a[3], a[4], a[5]) }
}

/// The program's own syscall on the slow path, through the gate's abortable
/// entry: -ERESTARTNOINTR, without starting it, when a program signal waits
/// for its handler (see delivery.rs); the slow path then restarts the
/// program's syscall after the handler.
#[inline]
pub fn program_syscall6(nr: i64, a: [u64; 6]) -> i64 {
    // SAFETY: as syscall6.
    unsafe { arch::ut_program_syscall6(nr as u64, a[0], a[1], a[2], a[3], a[4], a[5]) }
}

/// What program_syscall6 returns when it did not run the syscall.
pub const ERESTARTNOINTR: i64 = 513;

#[inline]
pub fn syscall(nr: i64, a1: u64, a2: u64, a3: u64, a4: u64) -> i64 {
    syscall6(nr, [a1, a2, a3, a4, 0, 0])
}

pub const EFAULT: i64 = 14;
pub const EINVAL: i64 = 22;
pub const EPERM: i64 = 1;
pub const ENOMEM: i64 = 12;
pub const ENOSYS: i64 = 38;
pub const ESRCH: i64 = 3;
pub const EBUSY: i64 = 16;
pub const EIO: i64 = 5;

pub fn gettid() -> i32 {
    syscall(SYS_gettid, 0, 0, 0, 0) as i32
}

pub fn getpid() -> i32 {
    syscall(SYS_getpid, 0, 0, 0, 0) as i32
}

pub fn write_all(fd: i32, mut buf: &[u8]) {
    while !buf.is_empty() {
        let n = syscall(SYS_write, fd as u64, buf.as_ptr() as u64, buf.len() as u64, 0);
        if n <= 0 {
            return;
        }
        buf = buf.get(n as usize..).unwrap_or(&[]);
    }
}

/// Anonymous private mapping; `Err(errno)` on failure.
pub fn mmap_anon(len: usize, prot: i32) -> Result<u64, i64> {
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE) as u64;
    let r = syscall6(SYS_mmap, [0, len as u64, prot as u64, flags, u64::MAX, 0]);
    if (-4095..0).contains(&r) {
        Err(-r)
    } else {
        Ok(r as u64)
    }
}

/// Run `f`; if it failed for want of a free descriptor (`emfile` says so)
/// and the soft RLIMIT_NOFILE is below the hard one, run it once more with
/// the soft limit a few higher (an exec's report is written while the
/// exec's own descriptor may hold the first slot above), then put the limit
/// back (a descriptor still open above it stays valid). The library's own work (the exec checks, a
/// report) must not fail where the program's native run needs no
/// descriptor at all.
pub fn with_spare_fd<T>(mut f: impl FnMut() -> T, emfile: impl Fn(&T) -> bool) -> T {
    const RLIMIT_NOFILE: u64 = 7;
    let r = f();
    if !emfile(&r) {
        return r;
    }
    let mut lim = [0u64; 2]; // struct rlimit64: soft, hard
    if syscall(libc::SYS_prlimit64, 0, RLIMIT_NOFILE, 0, lim.as_mut_ptr() as u64) != 0 || lim[0] >= lim[1] {
        return r;
    }
    let raised = [lim[0].saturating_add(4).min(lim[1]), lim[1]];
    if syscall(libc::SYS_prlimit64, 0, RLIMIT_NOFILE, raised.as_ptr() as u64, 0) != 0 {
        return r;
    }
    let r = f();
    syscall(libc::SYS_prlimit64, 0, RLIMIT_NOFILE, lim.as_ptr() as u64, 0);
    r
}

pub fn munmap(addr: u64, len: usize) {
    syscall(SYS_munmap, addr, len as u64, 0, 0);
}

pub fn mprotect(addr: u64, len: usize, prot: i32) -> i64 {
    syscall(SYS_mprotect, addr, len as u64, prot as u64, 0)
}

/// rt_sigprocmask on the real (kernel) mask; returns the previous mask.
pub fn sigprocmask(how: i32, set: Option<u64>) -> u64 {
    let mut old: u64 = 0;
    let set_ptr = match &set {
        Some(s) => s as *const u64 as u64,
        None => 0,
    };
    syscall(SYS_rt_sigprocmask, how as u64, set_ptr, &mut old as *mut u64 as u64, 8);
    old
}

/// The kernel's `struct sigaction` for rt_sigaction (not glibc's).
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelSigaction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

pub fn rt_sigaction(sig: i32, act: Option<&KernelSigaction>, old: Option<&mut KernelSigaction>) -> i64 {
    let a = act.map_or(0, |a| a as *const KernelSigaction as u64);
    let o = old.map_or(0, |o| o as *mut KernelSigaction as u64);
    syscall(SYS_rt_sigaction, sig as u64, a, o, 8)
}

pub fn tgkill(tgid: i32, tid: i32, sig: i32) -> i64 {
    syscall(SYS_tgkill, tgid as u64, tid as u64, sig as u64, 0)
}

/// Read `len` bytes of program memory at `src`; Err(EFAULT) if any is unmapped.
pub fn copy_from_user(dst: *mut u8, src: *const u8, len: usize) -> Result<(), i64> {
    // SAFETY: `dst` is our own buffer of at least `len` bytes (caller's
    // contract); a fault on `src` is caught by the fault handler, which resumes
    // at the copy's fixup label and makes it return -EFAULT.
    match unsafe { arch::ut_safe_copy(dst, src, len) } {
        0 => Ok(()),
        _ => Err(EFAULT),
    }
}

/// Write `len` bytes to program memory at `dst`; Err(EFAULT) if unmapped.
pub fn copy_to_user(dst: *mut u8, src: *const u8, len: usize) -> Result<(), i64> {
    // SAFETY: as copy_from_user, with the roles swapped.
    match unsafe { arch::ut_safe_copy(dst, src, len) } {
        0 => Ok(()),
        _ => Err(EFAULT),
    }
}

/// Read a plain value from program memory.
pub fn read_user<T: Copy + Default>(addr: u64) -> Result<T, i64> {
    let mut v = T::default();
    copy_from_user(&mut v as *mut T as *mut u8, addr as *const u8, core::mem::size_of::<T>())?;
    Ok(v)
}

/// Write a plain value to program memory.
pub fn write_user<T: Copy>(addr: u64, v: &T) -> Result<(), i64> {
    copy_to_user(addr as *mut u8, v as *const T as *const u8, core::mem::size_of::<T>())
}

/// Length of the NUL-terminated string at `s`, at most `max`.
pub fn strnlen_user(s: u64, max: usize) -> Result<usize, i64> {
    // SAFETY: faults are caught as in copy_from_user; only reads.
    let r = unsafe { arch::ut_safe_strnlen(s as *const u8, max) };
    if r < 0 {
        Err(EFAULT)
    } else {
        Ok(r as usize)
    }
}
