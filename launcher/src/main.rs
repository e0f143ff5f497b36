//! usertrap-launcher: see `launch` in the usertrap library. Everything is
//! there (entry point, loader, the interposer itself); this crate only makes
//! it a static executable.
#![no_std]
#![no_main]

extern crate usertrap;
