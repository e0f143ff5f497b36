//! Measurement: per-thread figures for every intercepted call ([`stats`]),
//! the report written at exit ([`report`], rendered by usertrap-core), and
//! where a process's fixed cost goes ([`phases`], USERTRAP_PHASES).
//!
//! Never: change what a call does. Recording must stay integer-only and
//! allocation-free on the fast path.

pub mod phases;
pub mod report;
pub mod stats;
