//! usertrap: intercept every system call of an unmodified x86-64 Linux program.
//!
//! `LD_PRELOAD=libusertrap.so ./app`. The constructor ([`init`]) maps a syscall
//! gate at a fixed address, installs SIGSYS/SIGSEGV/SIGILL handlers and arms a
//! trap ([`backend`]) so that every syscall not issued from the gate raises
//! SIGSYS. The handler ([`sigsafe::sigsys`]) runs the syscall through the gate
//! with the program's registers and writes the result back, passing through
//! one dispatch function ([`sigsafe::dispatch`]) where measurement sits.
//!
//! Layout: `arch` (all assembly), `config` and `init` (constructor time,
//! before any trap), `backend` (how the first hit reaches us), `sigsafe`
//! (everything that runs in trap context, with its own rules).
//!
//! This is a measurement and interposition tool, not a sandbox: code in the
//! same process can always get around it.

#![cfg_attr(not(test), no_std)]
// Unit tests compile the library without its constructor: start-up code and
// the trap-context paths it reaches are unused there.
#![cfg_attr(test, allow(dead_code))]

extern crate alloc;

mod arch;
mod backend;
mod config;
mod handoff;
pub mod hooks;
mod init;
#[cfg(feature = "launcher")]
pub mod launch;
mod patch;
mod sigsafe;
mod syscall_names;

/// The only allocator: a bump arena for the instruction decoder's tables
/// (`sigsafe::bump`); trap-context safe, never frees.
#[cfg(not(test))]
#[global_allocator]
static ALLOC: sigsafe::bump::Bump = sigsafe::bump::Bump::new();

#[cfg(all(not(test), feature = "preload"))]
mod preload;

#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // Never expected: trap-context code is written not to panic. End the
    // process loudly rather than run the program half-monitored.
    sigsafe::log::Line::new().str("internal error (panic); aborting").emit();
    let _ = sigsafe::raw::tgkill(sigsafe::raw::getpid(), sigsafe::raw::gettid(), 6);
    sigsafe::raw::syscall(sigsafe::raw::SYS_exit_group, 134, 0, 0, 0);
    loop {
        core::hint::spin_loop();
    }
}

/// Never called (panic = "abort": nothing unwinds), but core's precompiled
/// objects reference it when the crate is linked into the launcher.
#[cfg(all(not(test), feature = "launcher"))]
#[no_mangle]
extern "C" fn rust_eh_personality() {}
