//! usertrap: intercept every system call of an unmodified x86-64 Linux program.
//!
//! `LD_PRELOAD=libusertrap.so ./app`. The constructor ([`start`]) maps a
//! syscall gate at a fixed address, installs SIGSYS/SIGSEGV/SIGILL handlers and
//! arms a trap ([`trap::backend`]) so that every syscall not issued from the
//! gate raises SIGSYS. The handler ([`trap::sigsys`]) runs the syscall through
//! the gate with the program's registers and writes the result back, passing
//! through one dispatch ([`trap::dispatch`]) where measurement sits
//! ([`measure`]). The calls that cannot simply be re-run are emulated
//! ([`emulate`]); a trapped `mov $nr,%eax; syscall` site is rewritten into a
//! jump to a fast path that skips the signal ([`patch`]).
//!
//! Floors, lowest first; a file imports only from its own floor or below, and
//! the file-level import graph has no cycle (`tests/layout.rs` checks both,
//! with the same list):
//! 1. [`rt`]: assembly and gate, raw syscalls, log line, bump arena, kernel
//!    frame types, own mappings, the thread area and the two tables it points
//!    to (signal dispositions, per-thread figures);
//! 2. [`patch`]'s mechanism: maps, unwind tables, ELF headers, site proof,
//!    slots and trampolines, the write protocol, the registry of sites;
//! 3. [`measure`]: per-thread figures and syscall names;
//! 4. the handlers and what they call: [`trap`] (entry, dispatch, the
//!    per-syscall table [`trap::syscalls`]), [`emulate`], `patch::install`
//!    (when to patch) and `measure::report` (the report at exit);
//! 5. [`start`]: constructor time;
//! 6. `launch`: the launcher (feature `launcher`).
//!
//! Trap context, a rule for the whole library: code reachable from the signal
//! handlers, the trampolines or the hooks may run at any instruction of the
//! program, in any thread, nested in itself. There:
//! - no libc call that can enter the kernel (a trapped syscall issued here
//!   would raise SIGSYS again, or kill the process): every syscall goes
//!   through [`rt::raw`], which enters the gate;
//! - no allocation outside the bump arena, no std locks, no thread-locals
//!   (`__tls_get_addr` may call malloc), no panics (no slicing or indexing that
//!   can fail, no unwrap);
//! - program memory is read and written only through `rt::raw::copy_from_user`
//!   and friends, which turn a bad pointer into -EFAULT instead of a crash.
//!
//! The crate is `no_std`, so std's locks and allocator are not even reachable;
//! `tests/library.rs` checks that the library imports no libc function outside
//! an allowed list.
//!
//! This is a measurement and interposition tool, not a sandbox: code in the
//! same process can always get around it.

#![cfg_attr(not(test), no_std)]
// Unit tests compile the library without its constructor: start-up code and
// the trap-context paths it reaches are unused there.
#![cfg_attr(test, allow(dead_code))]

mod emulate;
#[cfg(feature = "launcher")]
pub mod launch;
mod measure;
mod patch;
mod rt;
mod start;
mod trap;

pub use trap::hooks;

/// The only allocator: a bump arena for the instruction decoder's tables
/// (`rt::bump`); trap-context safe, never frees.
#[cfg(not(test))]
#[global_allocator]
static ALLOC: rt::bump::Bump = rt::bump::Bump::new();

#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // Never expected: trap-context code is written not to panic. End the
    // process loudly rather than run the program half-monitored.
    rt::log::Line::new().str("internal error (panic); aborting").emit();
    let _ = rt::raw::tgkill(rt::raw::getpid(), rt::raw::gettid(), libc::SIGABRT);
    rt::raw::exit_group(134)
}

/// Never called (panic = "abort": nothing unwinds), but core's precompiled
/// objects reference it when the crate is linked into the launcher.
#[cfg(all(not(test), feature = "launcher"))]
#[no_mangle]
extern "C" fn rust_eh_personality() {}
