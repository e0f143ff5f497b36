//! The unsafe floor of [`super`]: the gate's syscall entries, the kernel's
//! result convention, and the fault-tolerant copies of program memory (see
//! the module doc of `rt::raw` for what is safe and why).

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
