//! Turning a trapped `mov $nr,%eax; syscall` site into a jump to the fast
//! path, once per site, under one lock.
//!
//! Called from the slow path after each of our traps. A site is patched only
//! if its bytes are `b8 imm32 0f 05` with imm32 = the syscall that trapped,
//! the syscall does not need the signal frame (see [`needs_slow_path`]), and
//! decoding forward from the start of its function proves the `mov` is a real
//! instruction (site.rs). Anything else is recorded once, with the reason, and
//! stays on the slow path.

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::patch::registry::{self, PATCHED, PATCHING, UNPATCHED};
use crate::patch::site;
use crate::patch::table::Table;
use crate::patch::write::{self, Mem};
use crate::rt::arch;
use crate::rt::raw;
use crate::rt::thread;
use crate::trap::syscalls;

/// USERTRAP_PATCH (on by default; off when membarrier is missing).
pub static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether what patching needs is in place: membarrier registered for
/// cross-modifying code, the decoder's tables built. Done at the first
/// patch, not at start-up: it costs about half a millisecond, which a
/// short-lived process (most of an exec-heavy tree) would pay for nothing.
/// Written under the PATCHER lock.
static PREPARED: AtomicU8 = AtomicU8::new(NOT_YET);
const NOT_YET: u8 = 0;
const READY: u8 = 1;
const UNAVAILABLE: u8 = 2;

static PATCHER: spin::Mutex<Table> = spin::Mutex::new(Table::new());
/// More than the decoder's tables take (about 0.3 MiB, in bump chunks).
const DECODER_MEMORY: usize = 1 << 20;

/// Whether the sites of syscall `nr` keep the slow path (trap::syscalls says
/// which calls are emulated; readlink is, where the launcher started the
/// image).
pub fn needs_slow_path(nr: u64) -> bool {
    !syscalls::patchable(nr as i64, crate::emulate::exec::exe_path_override().is_some())
}

/// After a trap at `rip` (the address after the `syscall`) for syscall `nr`.
pub fn consider(rip: u64, nr: u64) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let key = rip.wrapping_sub(2);
    if registry::lookup(key).is_some() {
        return;
    }
    thread::with_signals_blocked(|| {
        // Never wait for the lock: its holder writes through /proc/self/mem
        // and issues membarrier, and threads spinning here (thousands may
        // trap at once) would take the CPUs it needs. This call runs on the
        // slow path anyway; the site is considered again at its next trap.
        let Some(mut table) = PATCHER.try_lock() else { return };
        if registry::lookup(key).is_some() {
            return; // another thread got here first
        }
        if !registry::prepare() {
            patching_off("no memory for the table of sites");
            return;
        }
        if let Err(why) = try_patch(&mut table, key, nr) {
            registry::record(key, UNPATCHED, nr as u32, why, 0);
        }
    });
}

#[inline(never)] // its buffers must not sit in every trap's stack frame
fn try_patch(table: &mut Table, key: u64, nr: u64) -> Result<(), &'static str> {
    let site = key.wrapping_sub(5);
    let mut bytes = [0u8; 7];
    raw::copy_from_user(&mut bytes, site).map_err(|_| "site not readable")?;
    let [b0, n0, n1, n2, n3, s0, s1] = bytes;
    if b0 != 0xb8 || s0 != 0x0f || s1 != 0x05 {
        return Err("not preceded by mov $imm32,%eax");
    }
    if u32::from_le_bytes([n0, n1, n2, n3]) as u64 != nr {
        return Err("eax did not come from the mov before it");
    }
    if needs_slow_path(nr) {
        return Err("emulated syscall: keeps the slow path");
    }
    // Only now, for a site that may really be patched.
    if !prepared() {
        return Err("membarrier SYNC_CORE unavailable: patching off");
    }
    site::check(site).map_err(|r| r.as_str())?;
    let slot = table.alloc_slot().ok_or("trap table full (no free window below 2 GiB)")?;
    let tramp = table.alloc_trampoline().ok_or("no memory for trampolines")?;
    let mem = Mem::open().map_err(|_| "cannot open /proc/self/mem")?;
    let code = arch::trampoline(nr as u32, site + 7);
    mem.write(tramp, &code).map_err(|_| "cannot write the trampoline")?;
    mem.write(slot, &tramp.to_le_bytes()).map_err(|_| "cannot write the slot")?;
    if !registry::record(key, PATCHING, nr as u32, "", slot as u32) {
        return Err("site table full");
    }
    // From the first byte written on, a thread may fault at the old syscall;
    // the registry already says PATCHING, so fault.rs knows the site. If a
    // write fails half-way the site stays PATCHING: every call then faults
    // and is served by the SIGILL path, slowly but correctly.
    if write::patch_site(&mem, site, slot).is_ok() {
        registry::set_state(key, PATCHED);
    }
    Ok(())
}

/// Make patching possible (under the PATCHER lock); false if it cannot be,
/// and then patching is off for good.
fn prepared() -> bool {
    match PREPARED.load(Ordering::Relaxed) {
        READY => return true,
        UNAVAILABLE => return false,
        _ => {}
    }
    // The decoder builds its tables in the bump arena, whose failure would
    // be a panic: make sure the memory is there first (RLIMIT_AS).
    match raw::mmap_anon(DECODER_MEMORY, libc::PROT_READ | libc::PROT_WRITE) {
        Ok(a) => {
            // SAFETY: the mapping just made, used by nothing.
            let _ = unsafe { raw::munmap(a, DECODER_MEMORY) };
        }
        Err(_) => {
            PREPARED.store(UNAVAILABLE, Ordering::Relaxed);
            patching_off("no memory for the instruction decoder's tables");
            return false;
        }
    }
    if let Err(e) = write::register_membarrier() {
        PREPARED.store(UNAVAILABLE, Ordering::Relaxed);
        ENABLED.store(false, Ordering::Relaxed);
        if crate::measure::report::summary_on() {
            crate::rt::log::Line::new()
                .str("membarrier SYNC_CORE unavailable (errno ")
                .num(e as u64)
                .str("): patching off, every call takes the slow path")
                .emit();
        }
        return false;
    }
    site::warm_up();
    PREPARED.store(READY, Ordering::Relaxed);
    true
}

/// What the program is about to do to code that may hold recorded sites.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum CodeChange {
    /// Unmapped or replaced (munmap, mmap MAP_FIXED; after it succeeded):
    /// the sites are gone, forget them.
    Gone,
    /// Made writable (mprotect/pkey_mprotect with PROT_WRITE) or about to
    /// move (mremap): give the program back its own bytes at every patched
    /// site (a JIT that rewrites a `mov`'s immediate must find the `mov`; a
    /// moved jump would return to the old address), then forget them.
    Rewritable,
}

/// Forget (and for Rewritable, first unpatch) every recorded site in
/// [addr, addr+len). Cheap when the range holds none. Integer-only: also
/// called from the fast path.
#[inline(always)]
pub fn code_changing(addr: u64, len: u64, change: CodeChange) {
    if registry::may_have_sites(addr, len) {
        forget_sites(addr, len, change);
    }
}

#[inline(never)]
fn forget_sites(addr: u64, len: u64, change: CodeChange) {
    let mut any = false;
    registry::for_each_in(addr, len, |_| any = true);
    if !any {
        return; // the chunk holds sites, the range none: no lock needed
    }
    thread::with_signals_blocked(|| {
        // This one must happen: wait for the lock, but yield the CPU while
        // another thread patches (signals are blocked, so no handler of this
        // thread can be the holder).
        let _table = loop {
            if let Some(t) = PATCHER.try_lock() {
                break t;
            }
            raw::sched_yield();
        };
        let mut mem: Option<Mem> = None;
        let mut restored = false;
        registry::for_each_in(addr, len, |site| {
            if change == CodeChange::Rewritable && (site.state == PATCHED || site.state == PATCHING) {
                if mem.is_none() {
                    mem = Mem::open().ok();
                }
                if let Some(m) = &mem {
                    restored |= write::unpatch_site(m, site.key - 5, site.slot as u64, site.nr).is_ok();
                }
            }
        });
        if restored {
            // No thread may still run the old bytes once the site is forgotten
            // (a SIGILL at its 0x06 would no longer be recognised).
            write::sync_cores();
        }
        registry::for_each_in(addr, len, |site| registry::forget(site.key));
    });
}

/// Out of memory for patching: every call keeps the slow path; say so once.
fn patching_off(why: &str) {
    if ENABLED.swap(false, Ordering::Relaxed) {
        crate::rt::log::Line::new().str(why).str(": patching off, every call takes the slow path").emit();
    }
}

/// The program installed a seccomp filter of its own: patch no more sites.
pub fn stop_for_program_filter() {
    ENABLED.store(false, Ordering::Relaxed);
}

/// In a new process: a thread that held the patch lock at fork time is gone.
pub fn after_fork_in_child() {
    // SAFETY: only this thread exists in the new process.
    unsafe { PATCHER.force_unlock() };
}
