//! What the library (libusertrap.so), the launcher and the `usertrap`
//! command must agree on, written once:
//!
//! - [`elf`]: the ELF64 header and program headers, with the kernel's checks
//!   and one program-header limit;
//! - [`script`]: the `#!` line, as fs/binfmt_script.c reads it;
//! - [`syscalls`]: syscall numbers and names (x86-64 and i386), strace's
//!   classes (`%file`, ...);
//! - [`report`]: the report schema, histogram buckets, percentiles and the
//!   text table;
//! - [`names`]: signal and errno names;
//! - [`exec_control`]: the `USERTRAP_EXEC` entry handed to the launcher;
//! - [`sink`]: the byte sink the renderers write to, and number formatting.
//!
//! The library uses this crate in trap context (signal handlers, the exit
//! path), so everything here is `no_std`, allocates nothing, makes no
//! syscall, does not use `core::fmt`, and cannot panic on any input: no
//! indexing or slicing that can fail, no unwrap, no arithmetic that can
//! overflow (checked or saturating instead).

#![no_std]
#![forbid(unsafe_code)]
// No panic on any input: no indexing or slicing that can fail, no unwrap.
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod elf;
pub mod exec_control;
pub mod names;
pub mod report;
pub mod script;
pub mod sink;
pub mod syscalls;
pub mod trace;
