//! The fast path: rewriting a trapped `mov $nr,%eax; syscall` site into a
//! jump through the trap table to a per-site trampoline (see table.rs), once
//! the site is proven safe to rewrite ([`site::check`], using the function
//! start that [`locate`] finds in the unwind tables).
//!
//! - [`install`]: when to patch (after a trap, for a syscall the table in
//!   `trap::syscalls` says is patchable), the one lock, and forgetting sites
//!   when code changes; it sits on the floor of the traps that call it;
//!   `install::prepatch` carries proven sites to exec'd images,
//!   `install::sitecache` to the rest of the process tree;
//! - [`forms`]: the other sites (Form R, a relocated range around the
//!   `syscall`; Form P, a short jump to a dead pad), proven over the whole
//!   function, and their trampolines; [`gopclntab`]: function starts of Go
//!   code, which has no unwind tables;
//! - [`site`]: is this a real `mov` + `syscall` instruction pair? With
//!   [`locate`] (the function around it), built on [`maps`]
//!   (/proc/self/maps), [`elf`] (program headers), [`unwind`] (.eh_frame),
//!   [`hints`] (the launcher's), [`os`] (reads through the gate) and
//!   [`reject`] (why a site is refused);
//! - [`table`]: slot windows below 2 GiB and trampolines;
//! - [`write`]: the cross-modifying write protocol;
//! - [`registry`]: every site looked at, for the fault handlers and reports;
//! - [`lengths`]: a decoder without tables, for the launcher's proof of
//!   the loader's sites before it runs (install::patch_loader).
//!
//! Never: patch a site without proof, or write code other than through
//! [`write`]'s protocol.

pub mod elf;
pub mod forms;
pub mod gopclntab;
pub mod hints;
pub mod install;
#[cfg_attr(not(feature = "launcher"), allow(dead_code))] // the launcher's
pub mod lengths;
pub mod locate;
pub mod maps;
pub mod os;
pub mod registry;
pub mod reject;
pub mod site;
pub mod table;
pub mod unwind;
pub mod write;
