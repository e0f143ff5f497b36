//! Trap context: everything reachable from a signal handler or from the gate.
//!
//! Code below this module may run inside the SIGSYS/SIGILL/SIGSEGV handlers, at
//! any instruction of the program, in any thread, nested in itself. The rules:
//! - no libc call that can enter the kernel (a trapped syscall issued here would
//!   raise SIGSYS again, or kill the process): every syscall goes through
//!   [`raw`], which enters the gate;
//! - no allocation, no std locks, no thread-locals (`__tls_get_addr` may call
//!   malloc), no panics (no slicing or indexing that can fail, no unwrap);
//! - program memory is read and written only through [`raw::copy_from_user`]
//!   and friends, which turn a bad pointer into -EFAULT instead of a crash.
//! The crate is `no_std`, so std's locks and allocator are not even reachable;
//! `tests/library.rs` checks that the library imports no libc function outside
//! an allowed list.

pub mod bump;
pub mod delivery;
pub mod dispatch;
pub mod exec;
pub mod exec_target;
pub mod fault;
pub mod frame;
pub mod log;
pub mod owned;
pub mod process;
pub mod raw;
pub mod report;
pub mod signals;
pub mod sigsys;
pub mod stats;
pub mod thread;
