//! Measurement: per-thread figures for every intercepted call ([`stats`]),
//! the syscall names ([`names`]), and the report written at exit ([`report`]).
//!
//! Never: change what a call does. Recording must stay integer-only and
//! allocation-free on the fast path.

pub mod names;
pub mod report;
pub mod stats;
