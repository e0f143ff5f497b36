//! Constructor time: before any trap is armed, in the process's first thread.
//!
//! Owns: the start-up order ([`init`]), the USERTRAP_* settings ([`config`]),
//! the LD_PRELOAD constructor ([`preload`], feature `preload`) and what the
//! launcher hands the library of the image it started ([`handoff`]).
//! Never: run in trap context. Code here may assume a single thread and no
//! trap armed yet, unless it says otherwise.

pub mod config;
pub mod handoff;
pub mod init;
#[cfg(all(not(test), feature = "preload"))]
mod preload;
