//! Measurement: per-thread figures for every intercepted call ([`stats`])
//! and the report written at exit ([`report`], rendered by usertrap-core).
//!
//! Never: change what a call does. Recording must stay integer-only and
//! allocation-free on the fast path.

pub mod report;
pub mod stats;
