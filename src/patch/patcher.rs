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

use crate::arch;
use crate::patch::registry::{self, PATCHED, PATCHING, UNPATCHED};
use crate::patch::table::Table;
use crate::patch::write::{self, Mem};
use crate::patch::site;
use crate::sigsafe::raw;
use crate::sigsafe::thread;

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

/// Syscalls whose sites keep the slow path, and why:
/// - the signal-mask, pending-set and alternate-stack calls change the ucontext that our
///   sigreturn restores (rt_sigprocmask, sigaltstack, rt_sigreturn), or
///   install a temporary mask we rewrite (rt_sigsuspend, ppoll, pselect6,
///   epoll_pwait(2), io_pgetevents), or touch the disposition table
///   (rt_sigaction): their emulation is written for the signal frame;
/// - clone/clone3/fork/vfork/execve/execveat need the frame to give the child
///   or the new image the program's exact state;
/// - exit/exit_group do per-thread and per-process bookkeeping;
/// - arch_prctl and prctl guard state the library owns (GS base, SUD);
///   seccomp stops patching when the program installs a filter;
/// - ptrace: PTRACE_TRACEME ends interception (process::ptrace).
pub fn needs_slow_path(nr: u64) -> bool {
    // readlink of /proc/self/exe is answered by us where the launcher
    // started the image (the kernel's answer names the launcher).
    let exe_link = matches!(nr as i64, libc::SYS_readlink | libc::SYS_readlinkat)
        && crate::sigsafe::exec::exe_path_override().is_some();
    exe_link || matches!(
        nr as i64,
        libc::SYS_rt_sigaction
            | libc::SYS_rt_sigprocmask
            | libc::SYS_rt_sigreturn
            | libc::SYS_sigaltstack
            | libc::SYS_rt_sigpending
            | libc::SYS_rt_sigtimedwait
            | libc::SYS_rt_sigsuspend
            | libc::SYS_ppoll
            | libc::SYS_pselect6
            | libc::SYS_epoll_pwait
            | libc::SYS_epoll_pwait2
            | raw::SYS_io_pgetevents
            | libc::SYS_clone
            | libc::SYS_clone3
            | libc::SYS_fork
            | libc::SYS_vfork
            | libc::SYS_execve
            | libc::SYS_execveat
            | libc::SYS_exit
            | libc::SYS_exit_group
            | libc::SYS_arch_prctl
            | libc::SYS_prctl
            | libc::SYS_seccomp
            | libc::SYS_ptrace
    )
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
        let mut table = PATCHER.lock();
        if registry::lookup(key).is_some() {
            return; // another thread got here first
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
    raw::copy_from_user(bytes.as_mut_ptr(), site as *const u8, 7).map_err(|_| "site not readable")?;
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
    if let Err(e) = write::register_membarrier() {
        PREPARED.store(UNAVAILABLE, Ordering::Relaxed);
        ENABLED.store(false, Ordering::Relaxed);
        if crate::sigsafe::report::summary_on() {
            crate::sigsafe::log::Line::new()
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

/// The program installed a seccomp filter of its own: patch no more sites.
pub fn stop_for_program_filter() {
    ENABLED.store(false, Ordering::Relaxed);
}

/// In a new process: a thread that held the patch lock at fork time is gone.
pub fn after_fork_in_child() {
    // SAFETY: only this thread exists in the new process.
    unsafe { PATCHER.force_unlock() };
}
