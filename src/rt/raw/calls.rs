//! Typed safe wrappers for the syscalls the library makes on its own behalf:
//! every address the kernel reads or writes through comes from a Rust
//! reference of the right type and length, so the call cannot touch memory
//! the caller did not hand over. The few that change the address space or a
//! process-wide attribute the library relies on (munmap, mprotect, mremap,
//! fixed mmap, signal handlers, the alternate signal stack) stay `unsafe fn`,
//! with what the caller must guarantee.
//!
//! Results: `Ok(value)`, or `Err(errno)` with a positive errno (as
//! [`super::entry::result`]); calls that cannot fail return their value.
//! All run through the gate, so all are usable in trap context.

use core::ffi::CStr;
use core::sync::atomic::{AtomicU64, AtomicU8};

use super::entry::{result, syscall, syscall6, Plain, EINVAL};
use crate::rt::frame::{Sigcontext, Siginfo, StackT, Ucontext};

/// `Ok(())` for a call whose success value carries nothing.
#[inline]
fn unit(r: i64) -> Result<(), i64> {
    result(r).map(|_| ())
}

#[inline]
pub fn gettid() -> i32 {
    // SAFETY: no arguments.
    unsafe { syscall(libc::SYS_gettid, 0, 0, 0, 0) as i32 }
}

#[inline]
pub fn getpid() -> i32 {
    // SAFETY: no arguments.
    unsafe { syscall(libc::SYS_getpid, 0, 0, 0, 0) as i32 }
}

pub fn geteuid() -> u32 {
    // SAFETY: no arguments.
    unsafe { syscall(libc::SYS_geteuid, 0, 0, 0, 0) as u32 }
}

pub fn getppid() -> i32 {
    // SAFETY: no arguments.
    unsafe { syscall(libc::SYS_getppid, 0, 0, 0, 0) as i32 }
}

pub fn sched_yield() {
    // SAFETY: no arguments.
    unsafe { syscall(libc::SYS_sched_yield, 0, 0, 0, 0) };
}

/// Send `sig` to thread `tid` of `tgid` (0: only check that it exists).
pub fn tgkill(tgid: i32, tid: i32, sig: i32) -> Result<(), i64> {
    // SAFETY: integers only.
    unit(unsafe { syscall(libc::SYS_tgkill, tgid as u64, tid as u64, sig as u64, 0) })
}

/// End the process.
pub fn exit_group(status: i32) -> ! {
    // SAFETY: an integer; the call does not return.
    unsafe { syscall(libc::SYS_exit_group, status as u64, 0, 0, 0) };
    loop {
        core::hint::spin_loop();
    }
}

/// End the calling thread.
pub fn exit_thread(status: i32) -> ! {
    // SAFETY: an integer; the call does not return.
    unsafe { syscall(libc::SYS_exit, status as u64, 0, 0, 0) };
    loop {
        core::hint::spin_loop();
    }
}

/// write(2): bytes written.
#[inline]
pub fn write(fd: i32, buf: &[u8]) -> Result<usize, i64> {
    // SAFETY: the kernel reads `buf`, valid for its length.
    result(unsafe { syscall(libc::SYS_write, fd as u64, buf.as_ptr() as u64, buf.len() as u64, 0) }).map(|n| n as usize)
}

/// Write all of `buf`, giving up silently at the first error or short write
/// of nothing (log lines: nowhere to report a failure to).
pub fn write_all(fd: i32, mut buf: &[u8]) {
    while !buf.is_empty() {
        match write(fd, buf) {
            Ok(n) if n > 0 => buf = buf.get(n..).unwrap_or(&[]),
            _ => return,
        }
    }
}

/// read(2): bytes read.
pub fn read(fd: i32, buf: &mut [u8]) -> Result<usize, i64> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    result(unsafe { syscall(libc::SYS_read, fd as u64, buf.as_mut_ptr() as u64, buf.len() as u64, 0) })
        .map(|n| n as usize)
}

/// pread64(2): bytes read at `off`.
pub fn pread(fd: i32, buf: &mut [u8], off: u64) -> Result<usize, i64> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    result(unsafe { syscall(libc::SYS_pread64, fd as u64, buf.as_mut_ptr() as u64, buf.len() as u64, off) })
        .map(|n| n as usize)
}

/// pwrite64(2): bytes written at `off`. (On /proc/self/mem this writes our
/// own memory, as std's `FileExt::write_at` would: the patch write protocol,
/// patch/write.rs, is what makes that sound.)
pub fn pwrite(fd: i32, buf: &[u8], off: u64) -> Result<usize, i64> {
    // SAFETY: the kernel reads `buf`, valid for its length.
    result(unsafe { syscall(libc::SYS_pwrite64, fd as u64, buf.as_ptr() as u64, buf.len() as u64, off) })
        .map(|n| n as usize)
}

/// `bytes` up to and including its first NUL, as a C string; Err(EINVAL)
/// if it has none (a path buffer of ours always has one).
pub fn cstr(bytes: &[u8]) -> Result<&CStr, i64> {
    CStr::from_bytes_until_nul(bytes).map_err(|_| EINVAL)
}

/// openat(2): the new descriptor.
pub fn openat(dirfd: i32, path: &CStr, flags: i32, mode: u32) -> Result<i32, i64> {
    // SAFETY: the kernel reads the NUL-terminated `path`.
    result(unsafe { syscall(libc::SYS_openat, dirfd as u64, path.as_ptr() as u64, flags as u64, mode as u64) })
        .map(|fd| fd as i32)
}

pub fn close(fd: i32) -> Result<(), i64> {
    // SAFETY: an integer. (Closing a descriptor of someone else's is not a
    // memory-safety matter; callers close only their own.)
    unit(unsafe { syscall(libc::SYS_close, fd as u64, 0, 0, 0) })
}

/// fcntl(F_GETFD): the descriptor flags (FD_CLOEXEC).
pub fn fcntl_getfd(fd: i32) -> Result<u64, i64> {
    // SAFETY: F_GETFD takes no argument.
    result(unsafe { syscall(libc::SYS_fcntl, fd as u64, libc::F_GETFD as u64, 0, 0) })
}

/// fcntl(F_SETFD).
pub fn fcntl_setfd(fd: i32, flags: i32) -> Result<(), i64> {
    // SAFETY: F_SETFD takes an integer.
    unit(unsafe { syscall(libc::SYS_fcntl, fd as u64, libc::F_SETFD as u64, flags as u64, 0) })
}

/// fcntl(F_GETFL): the file status flags and access mode.
pub fn fcntl_getfl(fd: i32) -> Result<u64, i64> {
    // SAFETY: F_GETFL takes no argument.
    result(unsafe { syscall(libc::SYS_fcntl, fd as u64, libc::F_GETFL as u64, 0, 0) })
}

/// fcntl(F_DUPFD_CLOEXEC, 0): a close-on-exec duplicate.
pub fn dup_cloexec(fd: i32) -> Result<i32, i64> {
    // SAFETY: F_DUPFD_CLOEXEC takes an integer.
    result(unsafe { syscall(libc::SYS_fcntl, fd as u64, libc::F_DUPFD_CLOEXEC as u64, 0, 0) }).map(|f| f as i32)
}

/// fcntl(F_DUPFD_CLOEXEC, min): a close-on-exec duplicate at the lowest
/// free number from `min` on.
pub fn dup_cloexec_from(fd: i32, min: i32) -> Result<i32, i64> {
    // SAFETY: F_DUPFD_CLOEXEC takes an integer.
    result(unsafe { syscall(libc::SYS_fcntl, fd as u64, libc::F_DUPFD_CLOEXEC as u64, min as u64, 0) })
        .map(|f| f as i32)
}

/// fcntl(F_SETLEASE, kind) (F_RDLCK, F_WRLCK, F_UNLCK).
pub fn fcntl_setlease(fd: i32, kind: i32) -> Result<(), i64> {
    // SAFETY: F_SETLEASE takes an integer.
    unit(unsafe { syscall(libc::SYS_fcntl, fd as u64, libc::F_SETLEASE as u64, kind as u64, 0) })
}

/// An all-zero value of a plain C struct, for the kernel to fill.
fn zeroed<T: ZeroValid>() -> T {
    // SAFETY: ZeroValid types are C structs of integers (and arrays of
    // them): all-zero bytes are a value.
    unsafe { core::mem::zeroed() }
}

/// libc's C structs that the kernel fills and for which all-zero bytes are
/// a valid value.
///
/// # Safety
/// Only C structs of integers and arrays of integers.
unsafe trait ZeroValid {}
// SAFETY: integers and arrays of integers (x86-64 `struct stat`).
unsafe impl ZeroValid for libc::stat {}
// SAFETY: integers, arrays of integers and an fsid struct of integers.
unsafe impl ZeroValid for linux_raw_sys::general::statfs {}
// SAFETY: integers and an ipc_perm struct of integers.
unsafe impl ZeroValid for libc::shmid_ds {}

/// fstat(2). (glibc's x86-64 `struct stat` is the kernel's.)
pub fn fstat(fd: i32) -> Result<libc::stat, i64> {
    let mut st: libc::stat = zeroed();
    // SAFETY: the kernel writes one struct stat into `st`.
    unit(unsafe { syscall(libc::SYS_fstat, fd as u64, (&raw mut st) as u64, 0, 0) })?;
    Ok(st)
}

/// newfstatat(2).
pub fn newfstatat(dirfd: i32, path: &CStr, flags: i32) -> Result<libc::stat, i64> {
    let mut st: libc::stat = zeroed();
    // SAFETY: the kernel reads `path` and writes one struct stat into `st`.
    unit(unsafe {
        syscall(libc::SYS_newfstatat, dirfd as u64, path.as_ptr() as u64, (&raw mut st) as u64, flags as u64)
    })?;
    Ok(st)
}

/// fstatfs(2). The kernel's struct statfs (linux-raw-sys): libc's hides
/// f_flags (ST_NOEXEC and the other mount flags) in its spare words.
pub fn fstatfs(fd: i32) -> Result<linux_raw_sys::general::statfs, i64> {
    let mut st: linux_raw_sys::general::statfs = zeroed();
    // SAFETY: the kernel writes one struct statfs into `st`.
    unit(unsafe { syscall(libc::SYS_fstatfs, fd as u64, (&raw mut st) as u64, 0, 0) })?;
    Ok(st)
}

/// faccessat(2) (no flags).
pub fn faccessat(dirfd: i32, path: &CStr, mode: i32) -> Result<(), i64> {
    // SAFETY: the kernel reads `path`.
    unit(unsafe { syscall(libc::SYS_faccessat, dirfd as u64, path.as_ptr() as u64, mode as u64, 0) })
}

/// faccessat2(2).
pub fn faccessat2(dirfd: i32, path: &CStr, mode: i32, flags: i32) -> Result<(), i64> {
    // SAFETY: the kernel reads `path`.
    unit(unsafe { syscall(libc::SYS_faccessat2, dirfd as u64, path.as_ptr() as u64, mode as u64, flags as u64) })
}

/// linkat(2).
pub fn linkat(olddirfd: i32, old: &CStr, newdirfd: i32, new: &CStr, flags: i32) -> Result<(), i64> {
    // SAFETY: the kernel reads the two NUL-terminated paths.
    unit(unsafe {
        syscall6(
            libc::SYS_linkat,
            [olddirfd as u64, old.as_ptr() as u64, newdirfd as u64, new.as_ptr() as u64, flags as u64, 0],
        )
    })
}

/// openat(AT_FDCWD) of the path in `path` up to its first NUL (Err(EINVAL)
/// without one).
pub fn open_cwd(path: &[u8], flags: i32, mode: u32) -> Result<i32, i64> {
    openat(libc::AT_FDCWD, cstr(path)?, flags, mode)
}

/// unlinkat(2).
pub fn unlinkat(dirfd: i32, path: &CStr, flags: i32) -> Result<(), i64> {
    // SAFETY: the kernel reads `path`.
    unit(unsafe { syscall(libc::SYS_unlinkat, dirfd as u64, path.as_ptr() as u64, flags as u64, 0) })
}

/// readlink(2): the link's length in `buf` (not NUL-terminated).
pub fn readlink(path: &CStr, buf: &mut [u8]) -> Result<usize, i64> {
    // SAFETY: the kernel reads `path` and writes at most `buf.len()` bytes.
    result(unsafe { syscall(libc::SYS_readlink, path.as_ptr() as u64, buf.as_mut_ptr() as u64, buf.len() as u64, 0) })
        .map(|n| n as usize)
}

/// What PROCMAP_QUERY says of the mapping that covers an address.
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// The file offset of `start` (0 for memory that is no file's).
    pub offset: u64,
    /// Bytes of the name written into the caller's buffer, with its NUL
    /// (0: no name, anonymous memory).
    pub name_size: usize,
}

/// The kernel's struct procmap_query (linux/fs.h).
#[repr(C)]
struct ProcmapQuery {
    size: u64,
    query_flags: u64,
    query_addr: u64,
    vma_start: u64,
    vma_end: u64,
    vma_flags: u64,
    vma_page_size: u64,
    vma_offset: u64,
    inode: u64,
    dev_major: u32,
    dev_minor: u32,
    vma_name_size: u32,
    build_id_size: u32,
    vma_name_addr: u64,
    build_id_addr: u64,
}

/// _IOWR('f', 17, struct procmap_query).
const PROCMAP_QUERY: u64 = 0xc000_0000 | (core::mem::size_of::<ProcmapQuery>() as u64) << 16 | (b'f' as u64) << 8 | 17;

/// ioctl(PROCMAP_QUERY) (Linux 6.11) on an open /proc/self/maps: the mapping
/// covering `addr` (ENOENT: none), its name (as the maps file gives it,
/// but for `\n`, which the file shows as `\012`) written into `name`.
pub fn procmap_query(maps_fd: i32, addr: u64, name: &mut [u8]) -> Result<Mapping, i64> {
    let mut q = ProcmapQuery {
        size: core::mem::size_of::<ProcmapQuery>() as u64,
        query_flags: 0,
        query_addr: addr,
        vma_start: 0,
        vma_end: 0,
        vma_flags: 0,
        vma_page_size: 0,
        vma_offset: 0,
        inode: 0,
        dev_major: 0,
        dev_minor: 0,
        vma_name_size: name.len().min(u32::MAX as usize) as u32,
        build_id_size: 0,
        vma_name_addr: name.as_mut_ptr() as u64,
        build_id_addr: 0,
    };
    // SAFETY: the kernel reads and writes `q` and writes at most
    // `vma_name_size` bytes at `name`.
    unit(unsafe { syscall(libc::SYS_ioctl, maps_fd as u64, PROCMAP_QUERY, (&raw mut q) as u64, 0) })?;
    Ok(Mapping { start: q.vma_start, end: q.vma_end, offset: q.vma_offset, name_size: q.vma_name_size as usize })
}

/// A new AF_UNIX (or other) socket.
pub fn socket(domain: i32, ty: i32, protocol: i32) -> Result<i32, i64> {
    // SAFETY: integers only.
    result(unsafe { syscall(libc::SYS_socket, domain as u64, ty as u64, protocol as u64, 0) }).map(|fd| fd as i32)
}

/// connect(2) to the socket address whose bytes are `addr`.
pub fn connect(fd: i32, addr: &[u8]) -> Result<(), i64> {
    // SAFETY: the kernel reads `addr.len()` bytes of `addr`.
    unit(unsafe { syscall(libc::SYS_connect, fd as u64, addr.as_ptr() as u64, addr.len() as u64, 0) })
}

/// send(2) on a connected socket with MSG_DONTWAIT | MSG_NOSIGNAL: what
/// fits now, never a wait, never SIGPIPE. The bytes sent.
pub fn send_nowait(fd: i32, buf: &[u8]) -> Result<usize, i64> {
    let flags = (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as u64;
    // SAFETY: the kernel reads `buf.len()` bytes of `buf`; no address given.
    result(unsafe { syscall6(libc::SYS_sendto, [fd as u64, buf.as_ptr() as u64, buf.len() as u64, flags, 0, 0]) })
        .map(|n| n as usize)
}

/// sendmsg(2) of `buf` with one descriptor (SCM_RIGHTS) on a connected
/// socket, with MSG_DONTWAIT | MSG_NOSIGNAL: never a wait, never SIGPIPE.
/// The bytes sent. Integer-only (the trace recorder may call it from the
/// fast path): the header and control words are plain u64 arrays.
pub fn sendmsg_fd_nowait(sock: i32, buf: &[u8], fd: i32) -> Result<usize, i64> {
    let iov = [buf.as_ptr() as u64, buf.len() as u64];
    // struct cmsghdr then the descriptor: cmsg_len = CMSG_LEN(4) = 20
    // (u64), cmsg_level SOL_SOCKET and cmsg_type SCM_RIGHTS (two i32), the
    // i32 descriptor, padded to CMSG_SPACE(4) = 24 bytes.
    let control = [20u64, libc::SOL_SOCKET as u32 as u64 | (libc::SCM_RIGHTS as u32 as u64) << 32, fd as u32 as u64];
    // struct msghdr: name, namelen, iov, iovlen, control, controllen, flags.
    let msg = [0u64, 0, iov.as_ptr() as u64, 1, control.as_ptr() as u64, 24, 0];
    let flags = (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as u64;
    // SAFETY: the kernel reads the msghdr, the one iovec and `buf` it
    // names, and the 24 control bytes, all live for the call.
    result(unsafe { syscall(libc::SYS_sendmsg, sock as u64, msg.as_ptr() as u64, flags, 0) }).map(|n| n as usize)
}

/// memfd_create(2): a new anonymous file; its descriptor.
pub fn memfd_create(name: &CStr, flags: u32) -> Result<i32, i64> {
    // SAFETY: the kernel reads the NUL-terminated `name`.
    result(unsafe { syscall(libc::SYS_memfd_create, name.as_ptr() as u64, flags as u64, 0, 0) }).map(|fd| fd as i32)
}

/// ftruncate(2).
pub fn ftruncate(fd: i32, len: u64) -> Result<(), i64> {
    // SAFETY: integers only.
    unit(unsafe { syscall(libc::SYS_ftruncate, fd as u64, len, 0, 0) })
}

/// nanosleep(2), not resumed when interrupted.
pub fn nanosleep(sec: i64, nsec: i64) -> Result<(), i64> {
    let ts = libc::timespec { tv_sec: sec, tv_nsec: nsec };
    // SAFETY: the kernel reads `ts`; no remainder is asked for.
    unit(unsafe { syscall(libc::SYS_nanosleep, (&raw const ts) as u64, 0, 0, 0) })
}

/// poll(2): how many of `fds` have events.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> Result<usize, i64> {
    // SAFETY: the kernel reads and writes `fds.len()` pollfds.
    result(unsafe { syscall(libc::SYS_poll, fds.as_mut_ptr() as u64, fds.len() as u64, timeout_ms as u64, 0) })
        .map(|n| n as usize)
}

/// clock_gettime(2) in nanoseconds (wrapping).
#[inline]
pub fn clock_gettime_ns(clock: i32) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: the kernel writes one timespec into `ts`.
    unsafe { syscall(libc::SYS_clock_gettime, clock as u64, (&raw mut ts) as u64, 0, 0) };
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(ts.tv_nsec as u64)
}

/// clock_getres(2) in nanoseconds.
pub fn clock_getres_ns(clock: i32) -> Result<u64, i64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: the kernel writes one timespec into `ts`.
    unit(unsafe { syscall(libc::SYS_clock_getres, clock as u64, (&raw mut ts) as u64, 0, 0) })?;
    Ok((ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64))
}

/// capget(2) of the calling thread (_LINUX_CAPABILITY_VERSION_3): the
/// effective set, capabilities 0-63.
pub fn capget_effective() -> Result<u64, i64> {
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let header = [LINUX_CAPABILITY_VERSION_3, 0]; // version, pid 0: this thread
                                                  // Two of { effective, permitted, inheritable }: capabilities 0-31, 32-63.
    let mut data = [[0u32; 3]; 2];
    // SAFETY: the kernel reads the 8-byte header and writes two 12-byte sets.
    unit(unsafe { syscall(libc::SYS_capget, header.as_ptr() as u64, data.as_mut_ptr() as u64, 0, 0) })?;
    Ok(u64::from(data[0][0]) | (u64::from(data[1][0]) << 32))
}

/// shmctl(IPC_STAT).
pub fn shmctl_stat(id: i32) -> Result<libc::shmid_ds, i64> {
    let mut ds: libc::shmid_ds = zeroed();
    // SAFETY: the kernel writes one struct shmid_ds into `ds`.
    unit(unsafe { syscall(libc::SYS_shmctl, id as u64, libc::IPC_STAT as u64, (&raw mut ds) as u64, 0) })?;
    Ok(ds)
}

/// membarrier(2) (its commands take integers only).
pub fn membarrier(cmd: u64, flags: u64) -> Result<u64, i64> {
    // SAFETY: integers only.
    result(unsafe { syscall(libc::SYS_membarrier, cmd, flags, 0, 0) })
}

/// An anonymous private mapping anywhere; its address.
pub fn mmap_anon(len: usize, prot: i32) -> Result<u64, i64> {
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE) as u64;
    // SAFETY: without MAP_FIXED the kernel picks free address space: nothing
    // mapped is replaced.
    result(unsafe { syscall6(libc::SYS_mmap, [0, len as u64, prot as u64, flags, u64::MAX, 0]) })
}

/// An anonymous private mapping at exactly `addr` if that range is free
/// (MAP_FIXED_NOREPLACE); the address the kernel chose (an old kernel takes
/// NOREPLACE as a hint: the caller checks it is `addr`).
pub fn mmap_fixed_noreplace(addr: u64, len: usize, prot: i32) -> Result<u64, i64> {
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64;
    // SAFETY: NOREPLACE fails rather than replace a mapping (older kernels
    // pick another free place): nothing mapped is touched.
    result(unsafe { syscall6(libc::SYS_mmap, [addr, len as u64, prot as u64, flags, u64::MAX, 0]) })
}

/// mmap(2) with any flags; the mapping's address.
///
/// # Safety
/// With MAP_FIXED the range `addr..addr+len` is replaced: it must hold
/// nothing the library (or anyone holding a reference into it) still uses.
pub unsafe fn mmap(addr: u64, len: u64, prot: i32, flags: i32, fd: i32, off: u64) -> Result<u64, i64> {
    // SAFETY: the caller's contract.
    result(unsafe { syscall6(libc::SYS_mmap, [addr, len, prot as u64, flags as u64, fd as i64 as u64, off]) })
}

/// munmap(2).
///
/// # Safety
/// Nothing in `addr..addr+len` is used any more: no reference, no code that
/// may still run, no mapping of the library's that it does not own.
pub unsafe fn munmap(addr: u64, len: usize) -> Result<(), i64> {
    // SAFETY: the caller's contract.
    unit(unsafe { syscall(libc::SYS_munmap, addr, len as u64, 0, 0) })
}

/// mprotect(2).
///
/// # Safety
/// Every access that the new protection forbids in `addr..addr+len` is one
/// that nothing makes any more (or one the caller means to fault, such as a
/// guard page).
pub unsafe fn mprotect(addr: u64, len: usize, prot: i32) -> Result<(), i64> {
    // SAFETY: the caller's contract.
    unit(unsafe { syscall(libc::SYS_mprotect, addr, len as u64, prot as u64, 0) })
}

/// MADV_GUARD_INSTALL (Linux 6.13, include/uapi/asm-generic/mman-common.h).
const MADV_GUARD_INSTALL: u64 = 102;

/// Make `addr..addr+len` (whole pages of a private mapping of ours) a guard:
/// any access faults (SIGSEGV). With MADV_GUARD_INSTALL the guard lives in
/// the page tables and the mapping stays one VMA; where the kernel lacks it,
/// PROT_NONE, which splits the mapping around the guard (a VMA split is
/// several us here, and every VMA is work again when the process ends).
///
/// # Safety
/// As [`mprotect`] to PROT_NONE: nothing uses those pages any more.
pub unsafe fn guard_pages(addr: u64, len: usize) -> Result<(), i64> {
    // SAFETY: the caller's contract; the advice drops nothing but the
    // guarded pages' contents, which nothing uses.
    if unit(unsafe { syscall(libc::SYS_madvise, addr, len as u64, MADV_GUARD_INSTALL, 0) }).is_ok() {
        return Ok(());
    }
    // SAFETY: as above.
    unsafe { mprotect(addr, len, libc::PROT_NONE) }
}

/// mremap(2); the new address.
///
/// # Safety
/// As [`munmap`] for `old..old+old_len` (it moves), and with MREMAP_FIXED as
/// [`mmap`] with MAP_FIXED for `new_addr..new_addr+new_len`.
pub unsafe fn mremap(old: u64, old_len: u64, new_len: u64, flags: i32, new_addr: u64) -> Result<u64, i64> {
    // SAFETY: the caller's contract.
    result(unsafe { syscall6(libc::SYS_mremap, [old, old_len, new_len, flags as u64, new_addr, 0]) })
}

/// rt_sigprocmask on the real (kernel) mask; returns the previous mask.
#[inline]
pub fn sigprocmask(how: i32, set: Option<u64>) -> u64 {
    let mut old: u64 = 0;
    let set_ptr = match &set {
        Some(s) => s as *const u64 as u64,
        None => 0,
    };
    // SAFETY: the kernel reads one 8-byte sigset at `set_ptr` (or none) and
    // writes one into `old`. Masks cannot block SIGKILL/SIGSTOP, and the
    // library's own signals are the callers' business, not memory safety.
    unsafe { syscall(libc::SYS_rt_sigprocmask, how as u64, set_ptr, (&raw mut old) as u64, 8) };
    old
}

/// rt_sigprocmask(SIG_SETMASK, set) with the previous mask written by the
/// kernel into `old` (so that it is there exactly when the new mask takes
/// effect, before any signal can be delivered). Err(errno).
pub fn sigprocmask_setmask_into(set: u64, old: &AtomicU64) -> Result<(), i64> {
    // SAFETY: the kernel reads one 8-byte sigset from `set` and writes one
    // into `old` (an AtomicU64 has u64's layout); as in `sigprocmask`.
    unit(unsafe {
        syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK as u64, (&raw const set) as u64, old.as_ptr() as u64, 8)
    })
}

/// rt_sigpending(2): the pending set of the thread and process.
pub fn rt_sigpending() -> u64 {
    let mut set = 0u64;
    // SAFETY: the kernel writes one 8-byte sigset into `set`.
    unsafe { syscall(libc::SYS_rt_sigpending, (&raw mut set) as u64, 8, 0, 0) };
    set
}

/// rt_sigtimedwait(2) with a zero timeout: take one pending signal of `set`
/// (its number), Err(EAGAIN) if none is.
pub fn rt_sigtimedwait_poll(set: u64) -> Result<i32, i64> {
    let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: the kernel reads `set` and `zero`; no siginfo is asked for.
    result(unsafe { syscall(libc::SYS_rt_sigtimedwait, (&raw const set) as u64, 0, (&raw const zero) as u64, 8) })
        .map(|s| s as i32)
}

/// rt_tgsigqueueinfo(2): queue `sig` with `info` to thread `tid`.
pub fn rt_tgsigqueueinfo(tgid: i32, tid: i32, sig: i32, info: &Siginfo) -> Result<(), i64> {
    // SAFETY: the kernel reads one siginfo from `info`.
    unit(unsafe {
        syscall(libc::SYS_rt_tgsigqueueinfo, tgid as u64, tid as u64, sig as u64, info as *const Siginfo as u64)
    })
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

// SAFETY: four u64s, no padding.
unsafe impl Plain for KernelSigaction {}

/// rt_sigaction(2): set and/or read the kernel's action for `sig`.
///
/// # Safety
/// `act.handler` is SIG_DFL, SIG_IGN, or code that may run as a handler of
/// `sig` with `act.flags` (with SA_RESTORER, `act.restorer` a sigreturn
/// trampoline): the library's own handlers, or the program's own action,
/// which the kernel would run natively.
pub unsafe fn rt_sigaction(
    sig: i32,
    act: Option<&KernelSigaction>,
    old: Option<&mut KernelSigaction>,
) -> Result<(), i64> {
    let a = act.map_or(0, |a| a as *const KernelSigaction as u64);
    let o = old.map_or(0, |o| o as *mut KernelSigaction as u64);
    // SAFETY: the kernel reads one action from `a` and writes one into `o`
    // (or neither); what the handler is, is the caller's contract.
    unit(unsafe { syscall(libc::SYS_rt_sigaction, sig as u64, a, o, 8) })
}

/// The calling thread's alternate signal stack.
pub fn sigaltstack_get() -> Result<StackT, i64> {
    let mut cur = StackT::default();
    // SAFETY: the kernel writes one stack_t into `cur`.
    unit(unsafe { syscall(libc::SYS_sigaltstack, 0, (&raw mut cur) as u64, 0, 0) })?;
    Ok(cur)
}

/// Set the calling thread's alternate signal stack.
///
/// # Safety
/// `ss.ss_sp..+ss_size` is memory the kernel may write signal frames into
/// for as long as it stays the stack: the library's own signal stack, or
/// the program's own choice.
pub unsafe fn sigaltstack_set(ss: &StackT) -> Result<(), i64> {
    // SAFETY: the kernel reads one stack_t from `ss`; where it points is the
    // caller's contract.
    unit(unsafe { syscall(libc::SYS_sigaltstack, ss as *const StackT as u64, 0, 0, 0) })
}

const ARCH_SET_GS: u64 = 0x1001;
const ARCH_GET_GS: u64 = 0x1004;

/// arch_prctl(ARCH_GET_GS).
pub fn arch_get_gs() -> u64 {
    let mut v: u64 = 0;
    // SAFETY: the kernel writes one u64 into `v`.
    unsafe { syscall(libc::SYS_arch_prctl, ARCH_GET_GS, (&raw mut v) as u64, 0, 0) };
    v
}

/// arch_prctl(ARCH_SET_GS). Only the base changes: nothing is dereferenced
/// here, and the library reads its thread area through %gs only after
/// checking its magic (rt::thread).
pub fn arch_set_gs(base: u64) -> Result<(), i64> {
    // SAFETY: an integer.
    unit(unsafe { syscall(libc::SYS_arch_prctl, ARCH_SET_GS, base, 0, 0) })
}

/// prctl with integer arguments only.
fn prctl_int(option: i32, a2: u64, a3: u64) -> Result<u64, i64> {
    // SAFETY: only called with options whose arguments are integers.
    result(unsafe { syscall6(libc::SYS_prctl, [option as u64, a2, a3, 0, 0, 0]) })
}

/// prctl(PR_GET_NAME): the thread's name, NUL-padded.
pub fn prctl_get_name() -> [u8; 16] {
    let mut name = [0u8; 16];
    // SAFETY: the kernel writes 16 bytes (TASK_COMM_LEN) into `name`.
    unsafe { syscall(libc::SYS_prctl, libc::PR_GET_NAME as u64, name.as_mut_ptr() as u64, 0, 0) };
    name
}

/// prctl(PR_SET_NAME): the kernel copies at most 16 bytes and terminates.
#[cfg_attr(not(feature = "launcher"), allow(dead_code))] // the launcher's
pub fn prctl_set_name(name: &[u8; 16]) -> Result<(), i64> {
    // SAFETY: the kernel reads at most 16 bytes of `name`.
    unit(unsafe { syscall(libc::SYS_prctl, libc::PR_SET_NAME as u64, name.as_ptr() as u64, 0, 0) })
}

/// prctl(PR_GET_SECCOMP): 0 without any seccomp filter, 2 with one.
pub fn prctl_get_seccomp() -> Result<u64, i64> {
    // SAFETY: integers only.
    result(unsafe { syscall(libc::SYS_prctl, libc::PR_GET_SECCOMP as u64, 0, 0, 0) })
}

pub fn prctl_get_no_new_privs() -> Result<u64, i64> {
    prctl_int(libc::PR_GET_NO_NEW_PRIVS, 0, 0)
}

pub fn prctl_set_no_new_privs() -> Result<(), i64> {
    prctl_int(libc::PR_SET_NO_NEW_PRIVS, 1, 0).map(|_| ())
}

/// prctl(PR_SET_TSC, mode).
pub fn prctl_set_tsc(mode: i32) -> Result<(), i64> {
    prctl_int(libc::PR_SET_TSC, mode as u64, 0).map(|_| ())
}

/// prctl(PR_GET_TSC).
pub fn prctl_get_tsc() -> Result<i32, i64> {
    let mut v: i32 = 0;
    // SAFETY: the kernel writes one int into `v`.
    unit(unsafe { syscall(libc::SYS_prctl, libc::PR_GET_TSC as u64, (&raw mut v) as u64, 0, 0) })?;
    Ok(v)
}

/// prctl(PR_SET_MM, PR_SET_MM_AUXV): the kernel copies `auxv`.
pub fn prctl_set_mm_auxv(auxv: &[u64]) -> Result<(), i64> {
    // SAFETY: the kernel reads `auxv`, valid for its length in bytes.
    unit(unsafe {
        syscall6(
            libc::SYS_prctl,
            [libc::PR_SET_MM as u64, libc::PR_SET_MM_AUXV as u64, auxv.as_ptr() as u64, size_of_val(auxv) as u64, 0, 0],
        )
    })
}

/// prctl(PR_SET_MM, PR_SET_MM_ENV_START): only what /proc/self/environ shows.
pub fn prctl_set_mm_env_start(start: u64) -> Result<(), i64> {
    prctl_int(libc::PR_SET_MM, libc::PR_SET_MM_ENV_START as u64, start).map(|_| ())
}

/// prctl(PR_SET_MM, PR_SET_MM_EXE_FILE): what /proc/self/exe names.
pub fn prctl_set_mm_exe_file(fd: i32) -> Result<(), i64> {
    prctl_int(libc::PR_SET_MM, libc::PR_SET_MM_EXE_FILE as u64, fd as u64).map(|_| ())
}

/// prctl(PR_SET_SYSCALL_USER_DISPATCH, ON): syscalls outside `gate..+len`
/// raise SIGSYS while `selector` says BLOCK. The kernel reads the selector
/// on every syscall: a static, so it stays valid.
pub fn sud_on(gate: u64, len: u64, selector: &'static AtomicU8) -> Result<(), i64> {
    let on = linux_raw_sys::prctl::PR_SYS_DISPATCH_ON as u64;
    let opt = linux_raw_sys::prctl::PR_SET_SYSCALL_USER_DISPATCH as u64;
    // SAFETY: the kernel only reads the selector byte, which lives forever.
    unit(unsafe { syscall6(libc::SYS_prctl, [opt, on, gate, len, selector.as_ptr() as u64, 0]) })
}

/// prctl(PR_SET_SYSCALL_USER_DISPATCH, OFF) for the calling thread.
pub fn sud_off() -> Result<(), i64> {
    let off = linux_raw_sys::prctl::PR_SYS_DISPATCH_OFF as u64;
    let opt = linux_raw_sys::prctl::PR_SET_SYSCALL_USER_DISPATCH as u64;
    // SAFETY: integers only.
    unit(unsafe { syscall6(libc::SYS_prctl, [opt, off, 0, 0, 0, 0]) })
}

/// seccomp(SECCOMP_SET_MODE_FILTER): install the classic BPF program
/// `filter` (`struct sock_filter`, 8 bytes an instruction).
pub fn seccomp_set_mode_filter<F: Plain>(flags: u64, filter: &[F]) -> Result<u64, i64> {
    const { assert!(core::mem::size_of::<F>() == 8) };
    /// `struct sock_fprog`.
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const u8,
    }
    let Ok(len) = u16::try_from(filter.len()) else { return Err(EINVAL) };
    let fprog = SockFprog { len, filter: filter.as_ptr().cast() };
    const SECCOMP_SET_MODE_FILTER: u64 = 1;
    // SAFETY: the kernel reads `fprog` and `len` instructions of 8 bytes
    // from `filter`, valid for that.
    result(unsafe { syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, (&raw const fprog) as u64, 0) })
}

/// Run `f`; if it failed for want of a free descriptor (`emfile` says so)
/// and the soft RLIMIT_NOFILE is below the hard one, run it once more with
/// the soft limit a few higher (an exec's report is written while the
/// exec's own descriptor may hold the first slot above), then put the limit
/// back (a descriptor still open above it stays valid). The library's own
/// work (the exec checks, a report) must not fail where the program's
/// native run needs no descriptor at all.
pub fn with_spare_fd<T>(mut f: impl FnMut() -> T, emfile: impl Fn(&T) -> bool) -> T {
    let r = f();
    if !emfile(&r) {
        return r;
    }
    match prlimit_nofile(None) {
        Ok(lim) => with_nofile_raised(lim, &mut f).unwrap_or(r),
        Err(_) => r,
    }
}

/// Run `f` with the soft RLIMIT_NOFILE `lim` (soft, hard: as read just
/// before) raised by a few, then put back (a descriptor `f` got above it
/// stays valid); None, `f` not run, where it cannot be raised (already at
/// the hard limit, or refused).
pub fn with_nofile_raised<T>([soft, hard]: [u64; 2], f: impl FnOnce() -> T) -> Option<T> {
    if soft >= hard || prlimit_nofile(Some([soft.saturating_add(4).min(hard), hard])).is_err() {
        return None;
    }
    let r = f();
    let _ = prlimit_nofile(Some([soft, hard]));
    Some(r)
}

/// prlimit64(0, RLIMIT_NOFILE): set `new` if given (soft, hard); the limit
/// before.
pub fn prlimit_nofile(new: Option<[u64; 2]>) -> Result<[u64; 2], i64> {
    let mut old = [0u64; 2]; // struct rlimit64: soft, hard
    let new_ptr = match &new {
        Some(n) => n.as_ptr() as u64,
        None => 0,
    };
    // SAFETY: the kernel reads one rlimit64 from `new_ptr` (or none) and
    // writes one into `old`.
    unit(unsafe { syscall(libc::SYS_prlimit64, 0, libc::RLIMIT_NOFILE as u64, new_ptr, old.as_mut_ptr() as u64) })?;
    Ok(old)
}

// The frame types are copied to and from program memory (signal frames on
// the program's stack, its sigaltstack and sigaction arguments); their
// impls live here, not in rt/frame.rs, which this file imports.
// SAFETY: integers only, laid out without padding (the four u16 selectors
// fill one 8-byte word).
unsafe impl Plain for Sigcontext {}
// SAFETY: integers only; `_pad` fills the hole after ss_flags.
unsafe impl Plain for StackT {}
// SAFETY: integers and the two types above, 8-byte fields: no padding.
unsafe impl Plain for Ucontext {}
// SAFETY: integers only; `_pad` fills the hole before `addr`.
unsafe impl Plain for Siginfo {}
