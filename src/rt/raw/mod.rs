//! The only way the library makes syscalls and touches program memory that
//! may be unmapped: the gate's entries, unsafe, and typed safe wrappers over
//! them ([`calls`]) for the calls the library itself makes.
//!
//! The raw entries ([`syscall6`], [`entry::syscall`], [`program_syscall6`]) are
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
//! else returns `Result<_, i64>` with a positive errno ([`entry::result`] converts),
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
pub mod entry;

/// The launcher's (it names the process).
#[cfg(feature = "launcher")]
pub use calls::prctl_set_name;
pub use calls::{
    arch_get_gs, arch_set_gs, capget_effective, clock_getres_ns, clock_gettime_ns, close, connect, cstr, dup_cloexec,
    dup_cloexec_from, exit_group, exit_thread, faccessat, faccessat2, fcntl_getfd, fcntl_getfl, fcntl_setfd,
    fcntl_setlease, fstat, fstatfs, ftruncate, geteuid, getpid, getppid, gettid, guard_pages, linkat, membarrier,
    memfd_create, mmap, mmap_anon, mmap_fixed_noreplace, mprotect, mremap, munmap, nanosleep, newfstatat, open_cwd,
    openat, poll, prctl_get_name, prctl_get_no_new_privs, prctl_get_seccomp, prctl_get_tsc, prctl_set_mm_auxv,
    prctl_set_mm_env_start, prctl_set_mm_exe_file, prctl_set_no_new_privs, prctl_set_tsc, pread, prlimit_nofile,
    procmap_query, pwrite, read, readlink, rt_sigaction, rt_sigpending, rt_sigtimedwait_poll, rt_tgsigqueueinfo,
    sched_yield, seccomp_set_mode_filter, send_nowait, sendmsg_fd_nowait, shmctl_stat, sigaltstack_get,
    sigaltstack_set, sigprocmask, sigprocmask_setmask_into, socket, sud_off, sud_on, tgkill, unlinkat,
    with_nofile_raised, with_spare_fd, write, write_all, KernelSigaction, Mapping,
};
pub use entry::{
    copy_from_user, copy_to_user, copy_user, program_syscall6, read_user, strnlen_user, syscall6, write_user, Plain,
    SYS_io_pgetevents, EBUSY, EFAULT, EINVAL, EIO, ENOMEM, ENOSYS, EPERM, ERESTARTNOINTR, ESRCH,
};
pub use libc::{
    SYS_arch_prctl, SYS_clone, SYS_clone3, SYS_execve, SYS_execveat, SYS_exit, SYS_fork, SYS_mmap, SYS_mprotect,
    SYS_mremap, SYS_munmap, SYS_prctl, SYS_rt_sigreturn, SYS_write,
};
