//! usertrap-launcher: see `launch` in the usertrap library. Everything is
//! there (entry point, loader, the interposer itself); this crate only makes
//! it a static executable.
// `clippy --all-targets` also builds this file as a test harness (with std):
// there the library, whose no_std panic handler would clash with std's, is
// left out, and there is nothing to test.
#![cfg_attr(not(test), no_std)]
#![cfg_attr(not(test), no_main)]

// Linked for its items (the entry point, the panic handler), not named.
#[cfg(not(test))]
use usertrap as _;
