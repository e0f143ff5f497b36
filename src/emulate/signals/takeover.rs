//! Taking the owned signals over from the kernel at start-up (and from the
//! launcher, in an image it started), and handing them back: before exec,
//! when interception ends, after fork.
//! Never: emulate a syscall of the program (syscalls.rs does).

use super::delivery::kernel_action_for;
use super::state::{
    action_at, fatal_by_default, gate_contains, owned, raise_deferred, real_trap, with_table, OWNED_SIGNALS, SIGKILL,
    SIGSTOP, SIG_DFL, SIG_IGN, SS_DISABLE,
};
use crate::rt::frame::{Siginfo, StackT, Ucontext, SYS_SECCOMP, SYS_USER_DISPATCH};
use crate::rt::raw::{self, KernelSigaction};
use crate::rt::sigtable::{action_of, process_table, AppAction, SigTable, OWNED};
use crate::rt::thread::ThreadArea;
use crate::rt::thread::SS_AUTODISARM;
use crate::trap::backend;
use core::sync::atomic::{AtomicU64, Ordering};

/// At start-up: remember what the program (or an earlier library) had set
/// for each owned signal, then install ours, all in one window with every
/// signal blocked (two mask changes for the four, not two each). Each
/// entry: the signal, our action, and `program_view`: what the program had,
/// when the kernel holds something else (the launcher's handler, in an
/// image it started). Err((signal, errno)) if the kernel refuses one (the
/// ones before it are installed).
///
/// # Safety
/// Each action is one of the library's handler actions (`our_action`).
pub unsafe fn take_over(list: &[(i32, KernelSigaction, Option<KernelSigaction>)]) -> Result<(), (i32, i64)> {
    with_table(process_table(), |t| {
        for (sig, ours, program_view) in list {
            if let Some(i) = OWNED_SIGNALS.iter().position(|s| s == sig) {
                if let Some(slot) = INSTALLED.get(i) {
                    slot.store(ours.handler, ours.flags, ours.mask);
                }
            }
            let mut old = KernelSigaction::default();
            // SAFETY: the caller's contract.
            unsafe { raw::rt_sigaction(*sig, Some(ours), Some(&mut old)) }.map_err(|e| (*sig, e))?;
            if let Some(slot) = t.get_mut(*sig as usize) {
                *slot = AppAction { act: program_view.unwrap_or(old), known: true };
            }
        }
        Ok(())
    })
}

/// One of our actions for an owned signal, as [`take_over`] installed it
/// (the SIGSYS handler trap::sigsys::on_sigsys, the fault handler
/// trap::fault::on_fault): recorded here so that re-installing it needs
/// nothing from the trap floor above. The restorer is always the gate's.
struct Installed {
    handler: AtomicU64,
    flags: AtomicU64,
    mask: AtomicU64,
}

impl Installed {
    const fn new() -> Installed {
        Installed { handler: AtomicU64::new(0), flags: AtomicU64::new(0), mask: AtomicU64::new(0) }
    }

    fn store(&self, handler: u64, flags: u64, mask: u64) {
        self.flags.store(flags, Ordering::Relaxed);
        self.mask.store(mask, Ordering::Relaxed);
        self.handler.store(handler, Ordering::Relaxed);
    }

    fn action(&self) -> Option<KernelSigaction> {
        let handler = self.handler.load(Ordering::Relaxed);
        (handler != 0).then(|| KernelSigaction {
            flags: self.flags.load(Ordering::Relaxed),
            mask: self.mask.load(Ordering::Relaxed),
            ..action_at(handler)
        })
    }
}

/// Our actions for the owned signals, in OWNED_SIGNALS' order.
static INSTALLED: [Installed; OWNED_SIGNALS.len()] = [const { Installed::new() }; OWNED_SIGNALS.len()];

/// Re-install our handlers (a child created with CLONE_CLEAR_SIGHAND): each
/// owned signal gets the action take_over gave it (the fault handler too,
/// so the copies of program memory still turn a fault into EFAULT).
pub fn reset_after_clear_sighand() {
    for (sig, installed) in OWNED_SIGNALS.iter().zip(INSTALLED.iter()) {
        let Some(ours) = installed.action() else { continue };
        // SAFETY: our own handler, as take_over installed it.
        let _ = unsafe { raw::rt_sigaction(*sig, Some(&ours), None) };
    }
    with_table(process_table(), |t| *t = [AppAction::default(); 65]);
}

/// At start-up: for every signal that would end the process by default and
/// still has its default disposition, install the wrapper, so the report is
/// written before the process dies as natively. The program still sees SIG_DFL.
/// `defaults`: the signals known to have their default disposition now
/// (bit n-1 for signal n, from /proc/self/status), or None: the kernel's
/// answer decides, read back from the set itself (the old action), and a
/// signal that turns out not to be at SIG_DFL (ignored across exec, or the
/// launcher's wrapper) gets its old action back: one syscall per signal
/// instead of a query and a set, and no signal can arrive in between (all
/// are blocked around the loop). The whole loop runs under one mask change
/// and one hold of the table (about 50 signals: per-signal mask changes were
/// 200 of the syscalls a short process paid for).
pub fn watch_fatal_signals(defaults: Option<u64>) {
    with_table(process_table(), |t| {
        for sig in 1..=64 {
            if !fatal_by_default(sig) {
                continue;
            }
            if defaults.is_some_and(|mask| mask & (1u64 << (sig - 1)) == 0) {
                continue;
            }
            let app = KernelSigaction::default();
            let k = kernel_action_for(sig, &app);
            let mut old = KernelSigaction::default();
            // SAFETY: kernel_action_for gives our wrapper (on_program_signal),
            // SIG_DFL or SIG_IGN.
            if unsafe { raw::rt_sigaction(sig, Some(&k), Some(&mut old)) }.is_err() {
                continue;
            }
            if old.handler != SIG_DFL {
                // Not at its default after all: as it was.
                // SAFETY: the action the kernel held a moment ago, unchanged.
                let _ = unsafe { raw::rt_sigaction(sig, Some(&old), None) };
                continue;
            }
            if let Some(slot) = t.get_mut(sig as usize) {
                *slot = AppAction { act: app, known: true };
            }
        }
    });
}

/// At start-up: the program's initial mask may block an owned signal
/// (inherited across exec). Record that as its view and unblock for real.
/// `also_blocked`: owned signals the program blocks that the kernel mask no
/// longer shows (the launcher unblocked them).
pub fn take_over_mask(area: &ThreadArea, also_blocked: u64) {
    let old = raw::sigprocmask(libc::SIG_UNBLOCK, Some(OWNED));
    area.app_blocked_owned.set((old | also_blocked) & OWNED);
}

/// In an image the launcher started: dispositions the program set while the
/// launcher served its syscalls (constructors that ran before ours) are in
/// the launcher's table, and the kernel may hold the launcher's wrapper for
/// them (code in `launcher`, a range about to be unmapped). Take them over:
/// record them here and install our own version. Only signals the
/// launcher's table knows are asked about: the launcher installs a handler
/// of its own for a signal that is not owned only when the program sets a
/// disposition through it, which it records (a query per signal was 62
/// syscalls per launched image).
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // the constructor's
pub fn adopt(launcher_table: *mut SigTable, launcher: (u64, u64)) {
    for sig in 1..=64 {
        if owned(sig) || sig == SIGKILL || sig == SIGSTOP || !action_of(launcher_table, sig).known {
            continue;
        }
        let mut cur = KernelSigaction::default();
        // SAFETY: only reads the action.
        if unsafe { raw::rt_sigaction(sig, None, Some(&mut cur)) }.is_err() {
            continue;
        }
        if !(launcher.0..launcher.1).contains(&cur.handler) {
            continue; // the kernel holds the program's own choice
        }
        let app = action_of(launcher_table, sig);
        let app = if app.known { app.act } else { KernelSigaction::default() };
        let k = kernel_action_for(sig, &app);
        // SAFETY: as in watch_fatal_signals.
        if unsafe { raw::rt_sigaction(sig, Some(&k), None) }.is_ok() {
            with_table(process_table(), |t| {
                if let Some(slot) = t.get_mut(sig as usize) {
                    *slot = AppAction { act: app, known: true };
                }
            });
        }
    }
}

/// The program's disposition of an owned signal as recorded here (the
/// launcher hands these to the library of the image it starts).
#[cfg_attr(not(feature = "launcher"), allow(dead_code))] // used by the launcher
pub fn program_action(sig: i32) -> KernelSigaction {
    action_of(process_table(), sig).act
}

/// At start-up: record the program's alternate stack, if one was set before
/// us, as its view in `area`, and give the kernel ours. `inherited_is_ours`:
/// the current one is the launcher's (exec leaves a new image none).
pub fn take_over_altstack(area: &ThreadArea, inherited_is_ours: bool) {
    let cur = raw::sigaltstack_get().unwrap_or_default();
    if !inherited_is_ours && cur.ss_flags & SS_DISABLE == 0 && cur.ss_size != 0 {
        area.app_altstack.set(StackT { ss_flags: cur.ss_flags & SS_AUTODISARM, _pad: 0, ..cur });
    }
    let ours = area.altstack.get();
    // SAFETY: the thread area's own signal stack, mapped as long as the area.
    let _ = unsafe { raw::sigaltstack_set(&ours) };
}

/// Run `exec` (an execve from the gate) with the kernel holding the program's
/// own view of the owned signals: blocked ones blocked, ignored ones ignored.
/// Both survive exec natively, and the library in the new image reads them
/// back at start-up. Nothing traps in between: SUD is off in the new image
/// until our constructor runs, and this thread issues syscalls only from the
/// gate. If exec fails, our state is put back.
pub fn with_program_signal_state_for_exec(area: &ThreadArea, exec: impl FnOnce() -> i64) -> i64 {
    let mut ignored = [false; OWNED_SIGNALS.len()];
    let mut saved = [KernelSigaction::default(); OWNED_SIGNALS.len()];
    for (i, &sig) in OWNED_SIGNALS.iter().enumerate() {
        if action_of(area.sigtable.get(), sig).act.handler == SIG_IGN {
            let ign = KernelSigaction { handler: SIG_IGN, ..KernelSigaction::default() };
            if let (Some(flag), Some(old)) = (ignored.get_mut(i), saved.get_mut(i)) {
                // SAFETY: SIG_IGN.
                *flag = unsafe { raw::rt_sigaction(sig, Some(&ign), Some(old)) }.is_ok();
            }
        }
    }
    let old_mask = raw::sigprocmask(libc::SIG_BLOCK, Some(area.app_blocked_owned.get()));
    let r = exec();
    raw::sigprocmask(libc::SIG_SETMASK, Some(old_mask));
    for (i, &sig) in OWNED_SIGNALS.iter().enumerate() {
        if let (Some(true), Some(old)) = (ignored.get(i), saved.get(i)) {
            // SAFETY: the action the kernel held just before (ours).
            let _ = unsafe { raw::rt_sigaction(sig, Some(old), None) };
        }
    }
    r
}

/// Interception ends in this thread (process::stop_intercepting): the kernel
/// gets the program's own dispositions (no more wrappers) and alternate
/// stack, and the owned
/// signals the program blocks are blocked for real, in the current mask and
/// in `uc`'s (restored at sigreturn); ones held back are sent again, and stay
/// pending as natively.
pub fn give_back_to_kernel(area: &ThreadArea, uc: &mut Ucontext) {
    for sig in 1..=64 {
        if sig == SIGKILL || sig == SIGSTOP {
            continue;
        }
        let a = action_of(area.sigtable.get(), sig);
        if a.known {
            // SAFETY: the program's own action, as it set it (rt::raw:
            // forwarded program calls).
            let _ = unsafe { raw::rt_sigaction(sig, Some(&a.act), None) };
        }
    }
    let blocked = area.app_blocked_owned.get();
    raw::sigprocmask(libc::SIG_BLOCK, Some(blocked));
    uc.uc_sigmask |= blocked;
    // The program's alternate stack becomes the kernel's at our sigreturn.
    uc.uc_stack = area.app_altstack.get();
    raise_deferred(area, area.deferred.get());
}

/// Whether `info` (delivered with `uc`) is one of our own traps.
///
/// The si_code alone does not say: a thread may send itself a SIGSYS with any
/// si_code and fields (rt_tgsigqueueinfo). A signal it sends that way is
/// delivered when the sending syscall returns, and every syscall of the
/// program returns in the gate (slow or fast path), which never traps.
/// Another thread's process-wide forgery can land anywhere, so the rest of
/// what the kernel guarantees for a real trap is checked too (`real_trap`).
pub fn is_our_trap(info: &Siginfo, uc: &Ucontext) -> bool {
    let ours = match info.si_code {
        SYS_SECCOMP => backend::is_seccomp() && info.si_errno == backend::seccomp::TRAP_DATA as i32,
        SYS_USER_DISPATCH => backend::is_sud(),
        _ => false,
    };
    ours && !gate_contains(uc.mc.rip) && real_trap(info, uc)
}
