//! The only way the library makes syscalls and touches program memory that
//! may be unmapped: the gate's entries, unsafe, and typed safe wrappers over
//! them ([`calls`]) for the calls the library itself makes.
//!
//! The raw entries ([`syscall6`], [`syscall`], [`program_syscall6`]) are
//! `unsafe fn`: their arguments may be addresses the kernel reads or writes
//! through, so only the caller can know that they are sound. Two kinds of
//! callers remain: the wrappers in [`calls`], each of which builds its
//! addresses from Rust references; and the emulation code that forwards the
//! program's own syscall with the program's own arguments, where the kernel
//! checks every program pointer exactly as it would natively.
//!
//! Forwarded program calls: where the library runs a syscall of the program
//! for it, with the program's arguments (the slow path's native calls, the
//! fast path, the pass-through parts of the emulations), the call is as
//! sound as the program's own would be natively: the kernel validates every
//! program pointer (EFAULT), and the program naming the library's own memory
//! is the program corrupting itself, as it could without us. The calls that
//! could take the library's own mappings away (munmap, mprotect, mremap,
//! mmap MAP_FIXED, shmdt ...) go through emulate::process's guard first;
//! those that change signal state or threads are emulated, not forwarded.
//! Each such call site says `SAFETY: ... (rt::raw: forwarded program calls)`.
//!
//! Results: the raw entries return the kernel's answer (a value >= 0, or
//! -errno), which is what a forwarded program syscall must see. Everything
//! else returns `Result<_, i64>` with a positive errno ([`result`] converts),
//! errno values named after libc's.
//!
//! Program memory: [`copy_from_user`], [`read_user`] and [`strnlen_user`] only
//! read, into the library's own buffers, and a fault comes back as EFAULT:
//! they are safe whatever the address (even one of the library's: reading
//! does not change it). [`copy_to_user`], [`write_user`] and [`copy_user`]
//! write at an arbitrary address, which could be the library's own memory:
//! `unsafe fn`, the caller says why the address is the program's to name.
//!
//! Never: decide anything; callers check the results.

pub mod calls;

pub use calls::{
    arch_get_gs, arch_set_gs, clock_gettime_ns, close, connect, cstr, dup_cloexec, exit_group, exit_thread, faccessat,
    faccessat2, fcntl_getfd, fcntl_getfl, fcntl_setfd, fcntl_setlease, fstat, fstatfs, getpid, getppid, gettid, linkat,
    membarrier, mmap_anon, mmap_fixed_noreplace, mprotect, mremap, munmap, nanosleep, newfstatat, open_cwd, openat,
    poll, prctl_get_name, prctl_get_no_new_privs, prctl_get_tsc, prctl_set_mm_auxv, prctl_set_mm_env_start,
    prctl_set_mm_exe_file, prctl_set_no_new_privs, prctl_set_tsc, pread, pwrite, read, readlink, rt_sigaction,
    rt_sigpending, rt_sigtimedwait_poll, rt_tgsigqueueinfo, sched_yield, seccomp_set_mode_filter, shmctl_stat,
    sigaltstack_get, sigaltstack_set, sigprocmask, socket, sud_off, sud_on, tgkill, unlinkat, with_spare_fd, write,
    write_all, KernelSigaction,
};
/// The launcher's (its loader maps fixed, it names the process).
#[cfg(feature = "launcher")]
pub use calls::{mmap, prctl_set_name};
pub use libc::{
    SYS_arch_prctl, SYS_clone, SYS_clone3, SYS_execve, SYS_execveat, SYS_exit, SYS_fork, SYS_mmap, SYS_mprotect,
    SYS_mremap, SYS_munmap, SYS_prctl, SYS_rt_sigreturn, SYS_write,
};

use crate::rt::arch;

/// io_pgetevents (libc does not name it).
#[allow(non_upper_case_globals)]
pub const SYS_io_pgetevents: i64 = 333;

/// Issue syscall `nr` from the gate, with the kernel's result (>= 0 or
/// -errno).
///
/// # Safety
/// The kernel reads and writes memory through whatever arguments `nr` takes
/// as addresses, and some syscalls change the address space or the thread
/// (munmap, mprotect, clone, sigaltstack, arch_prctl ...). The caller
/// guarantees that every such effect is sound for the library: addresses it
/// passes are valid for what the kernel does with them and nothing the
/// library holds a reference to is changed behind it; or the syscall is the
/// program's own, with the program's arguments, which the kernel checks as it
/// would natively (the library's own memory is not the program's to name, and
/// emulate::process guards our mappings against the calls that could unmap
/// them).
#[inline]
pub unsafe fn syscall6(nr: i64, a: [u64; 6]) -> i64 {
    // SAFETY: the gate issues exactly this syscall; its effects are the
    // caller's contract (above).
    unsafe { arch::ut_syscall6(nr as u64, a[0], a[1], a[2], a[3], a[4], a[5]) }
}

/// [`syscall6`] with four arguments.
///
/// # Safety
/// As [`syscall6`].
#[inline]
pub unsafe fn syscall(nr: i64, a1: u64, a2: u64, a3: u64, a4: u64) -> i64 {
    // SAFETY: the caller's contract is syscall6's.
    unsafe { syscall6(nr, [a1, a2, a3, a4, 0, 0]) }
}

/// The program's own syscall on the slow path, through the gate's abortable
/// entry: -ERESTARTNOINTR, without starting it, when a program signal waits
/// for its handler (see delivery.rs); the slow path then restarts the
/// program's syscall after the handler.
///
/// # Safety
/// As [`syscall6`]; in practice the arguments are the program's own.
#[inline]
pub unsafe fn program_syscall6(nr: i64, a: [u64; 6]) -> i64 {
    // SAFETY: as syscall6: the gate issues exactly this syscall (or none).
    unsafe { arch::ut_program_syscall6(nr as u64, a[0], a[1], a[2], a[3], a[4], a[5]) }
}

/// What program_syscall6 returns when it did not run the syscall (the
/// kernel's internal ERESTARTNOINTR, include/linux/errno.h: libc does not
/// name it).
pub const ERESTARTNOINTR: i64 = 513;

pub const EPERM: i64 = libc::EPERM as i64;
pub const ESRCH: i64 = libc::ESRCH as i64;
pub const EIO: i64 = libc::EIO as i64;
pub const ENOMEM: i64 = libc::ENOMEM as i64;
pub const EFAULT: i64 = libc::EFAULT as i64;
pub const EBUSY: i64 = libc::EBUSY as i64;
pub const EINVAL: i64 = libc::EINVAL as i64;
pub const ENOSYS: i64 = libc::ENOSYS as i64;

/// The kernel's answer as a `Result`: `Ok(value)`, or `Err(errno)` (positive)
/// for the -4095..-1 range the kernel uses for errors.
#[inline]
pub fn result(r: i64) -> Result<u64, i64> {
    if (-4095..0).contains(&r) {
        Err(-r)
    } else {
        Ok(r as u64)
    }
}

/// A type that may be copied to and from program memory as bytes: every
/// byte pattern is a valid value, and it has no padding (so its bytes are
/// all initialised).
///
/// # Safety
/// Implement only for `#[repr(C)]` (or primitive) types made of integers
/// and arrays of integers, with no padding between or after the fields.
pub unsafe trait Plain: Copy + Default {}

// SAFETY: integers: any bytes are a value, no padding.
unsafe impl Plain for u8 {}
// SAFETY: as u8.
unsafe impl Plain for u16 {}
// SAFETY: as u8.
unsafe impl Plain for u32 {}
// SAFETY: as u8.
unsafe impl Plain for u64 {}
// SAFETY: as u8.
unsafe impl Plain for i32 {}
// SAFETY: as u8.
unsafe impl Plain for i64 {}
// SAFETY: an array of Plain values has no padding between its elements.
unsafe impl<T: Plain, const N: usize> Plain for [T; N] where [T; N]: Default {}

/// Read `dst.len()` bytes of program memory at `src` into `dst`; Err(EFAULT)
/// if any of them is unmapped.
pub fn copy_from_user(dst: &mut [u8], src: u64) -> Result<(), i64> {
    // SAFETY: `dst` is a buffer of ours of exactly `len` bytes; `src` is only
    // read, and a fault on it is caught by the fault handler, which resumes at
    // the copy's fixup label and makes it return -EFAULT.
    match unsafe { arch::ut_safe_copy(dst.as_mut_ptr(), src as *const u8, dst.len()) } {
        0 => Ok(()),
        _ => Err(EFAULT),
    }
}

/// Copy `len` bytes from `src` to `dst`, both in program memory; Err(EFAULT)
/// if any byte of either is unmapped (what was copied before stays).
///
/// # Safety
/// `dst..dst+len` is not memory the library uses (no Rust reference or
/// object of ours lies there): it is the program's, named by the program (a
/// pointer argument of its syscall, its stack), where the kernel would write
/// natively.
pub unsafe fn copy_user(dst: u64, src: u64, len: usize) -> Result<(), i64> {
    // SAFETY: faults on either side are caught as in copy_from_user; that the
    // destination is the program's is the caller's contract.
    match unsafe { arch::ut_safe_copy(dst as *mut u8, src as *const u8, len) } {
        0 => Ok(()),
        _ => Err(EFAULT),
    }
}

/// Write `src` to program memory at `dst`; Err(EFAULT) if unmapped.
///
/// # Safety
/// As [`copy_user`]: `dst` is the program's memory, not the library's.
pub unsafe fn copy_to_user(dst: u64, src: &[u8]) -> Result<(), i64> {
    // SAFETY: `src` is readable for its length; `dst` is the caller's
    // contract.
    unsafe { copy_user(dst, src.as_ptr() as u64, src.len()) }
}

/// Read a plain value from program memory.
pub fn read_user<T: Plain>(addr: u64) -> Result<T, i64> {
    let mut v = T::default();
    // SAFETY: `v` is ours and T is Plain: its size_of bytes are initialised,
    // and whatever bytes the copy leaves there form a valid T.
    let bytes = unsafe { core::slice::from_raw_parts_mut((&raw mut v).cast::<u8>(), core::mem::size_of::<T>()) };
    copy_from_user(bytes, addr)?;
    Ok(v)
}

/// Write a plain value to program memory.
///
/// # Safety
/// As [`copy_user`]: `addr` is the program's memory, not the library's.
pub unsafe fn write_user<T: Plain>(addr: u64, v: &T) -> Result<(), i64> {
    // SAFETY: T is Plain (no padding): all its bytes are initialised.
    let bytes = unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), core::mem::size_of::<T>()) };
    // SAFETY: `addr` is the caller's contract.
    unsafe { copy_to_user(addr, bytes) }
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
