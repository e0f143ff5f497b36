//! The fast path: rewriting a trapped `mov $nr,%eax; syscall` site into a
//! jump through the trap table to a per-site trampoline (see table.rs), once
//! the site is proven safe to rewrite ([`site::check`], using function starts
//! from the unwind tables found by [`elf`]).
//!
//! - [`install`]: the decision and the one lock;
//! - [`site`], [`elf`]: is this a real `mov` + `syscall` instruction pair?
//! - [`table`]: slot windows below 2 GiB and trampolines;
//! - [`write`]: the cross-modifying write protocol;
//! - [`registry`]: every site looked at, for the fault handlers and reports.

pub mod elf;
pub mod hints;
pub mod install;
pub mod locate;
pub mod maps;
pub mod os;
pub mod registry;
pub mod reject;
pub mod site;
pub mod table;
pub mod unwind;
pub mod write;
