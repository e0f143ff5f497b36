//! Ground floor: what every other floor stands on, and nothing above it.
//!
//! Owns: the assembly and the gate ([`arch`]), the raw syscalls through the
//! gate and the fault-tolerant copies of program memory ([`raw`]), the log line
//! ([`log`]), the bump arena ([`bump`]), the kernel's signal frame types
//! ([`frame`]), mappings of our own ([`owned`]) and the per-thread area
//! ([`thread`]) with the tables it points to.
//! Never: policy. Nothing here decides how a syscall is handled; it only gives
//! the floors above the means, all of them usable in trap context.

pub mod arch;
pub mod bump;
pub mod figures;
pub mod frame;
pub mod log;
pub mod owned;
pub mod raw;
pub mod sigtable;
pub mod thread;
