//! How a program's syscall reaches us, and the one place each call passes.
//!
//! Owns: the trap backends ([`backend`]: seccomp filter, Syscall User
//! Dispatch), the SIGSYS handler ([`sigsys`]), the SIGILL/SIGSEGV handler for
//! faults at patched sites ([`fault`]), the dispatch every intercepted call
//! goes through, slow or fast ([`dispatch`]), the table of how each
//! syscall is handled ([`syscalls`]), and the public hooks ([`hooks`]).
//! Never: emulate a syscall itself (that is `emulate`), or format a report.

pub mod backend;
pub mod dispatch;
pub mod fault;
pub mod hooks;
pub mod sigsys;
pub mod syscalls;
