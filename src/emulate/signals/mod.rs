//! The program's signal state, virtualised where the library needs the real one.
//!
//! The kernel delivers a trap's SIGSYS by force: if SIGSYS is blocked or
//! ignored at that moment, the process dies. And the library's own handlers for
//! SIGSYS, SIGSEGV and SIGILL (the *owned* signals) must stay installed. So:
//! - dispositions of owned signals live in a table; the program's
//!   `rt_sigaction` reads and writes the table, and faults that are not ours are
//!   passed to the handler recorded there, or end the process as the default
//!   action would;
//! - the kernel's mask never contains an owned signal; what the program
//!   believes blocked is kept per thread and reported back. Every syscall that
//!   installs a mask (`rt_sigprocmask`, the temporary masks of `ppoll`,
//!   `pselect6`, `epoll_pwait(2)`, `rt_sigsuspend`, `io_pgetevents`, and the
//!   `sa_mask` of every handler) has the owned signals removed on the way in;
//! - `rt_sigprocmask` changes the saved ucontext rather than the kernel: our
//!   handler's sigreturn restores the mask from it, so a direct change would
//!   be undone;
//! - the alternate stack the kernel knows is always the library's own; the
//!   program's `sigaltstack` is kept per thread and only reported back, and
//!   its handlers are entered on the stack it chose (delivery.rs).

use core::sync::atomic::Ordering;

pub mod delivery;

use crate::rt::arch;
use crate::trap::backend;

use crate::rt::frame::{Siginfo, StackT, Ucontext, SYS_SECCOMP, SYS_USER_DISPATCH};
use crate::rt::raw::{self, KernelSigaction};
use crate::rt::thread::{self, ThreadArea};

pub use crate::rt::sigtable::{action_of, bit, process_table, AppAction, SigTable, OWNED, SIGILL, SIGSEGV, SIGSYS};
const SIGKILL: i32 = libc::SIGKILL;
const SIGSTOP: i32 = libc::SIGSTOP;

const SIG_DFL: u64 = 0;
const SIG_IGN: u64 = 1;

const SA_SIGINFO: u64 = libc::SA_SIGINFO as u32 as u64;
const SA_ONSTACK: u64 = libc::SA_ONSTACK as u32 as u64;
const SA_RESTART: u64 = libc::SA_RESTART as u32 as u64;
const SA_NODEFER: u64 = libc::SA_NODEFER as u32 as u64;
const SA_RESETHAND: u64 = libc::SA_RESETHAND as u32 as u64;
const SA_RESTORER: u64 = 0x0400_0000;
/// The flags the kernel keeps (UAPI_SA_FLAGS in include/linux/signal.h, x86).
const UAPI_SA_FLAGS: u64 = libc::SA_NOCLDSTOP as u32 as u64
    | libc::SA_NOCLDWAIT as u32 as u64
    | SA_SIGINFO
    | SA_ONSTACK
    | SA_RESTART
    | SA_NODEFER
    | SA_RESETHAND
    | 0x0000_0800 // SA_EXPOSE_TAGBITS
    | SA_RESTORER;

const SS_ONSTACK: i32 = libc::SS_ONSTACK;
const SS_DISABLE: i32 = libc::SS_DISABLE;
use crate::rt::thread::SS_AUTODISARM;
/// MINSIGSTKSZ of the sigaltstack syscall (arch/x86/include/uapi/asm/signal.h).
const MINSIGSTKSZ: u64 = 2048;

const UNBLOCKABLE: u64 = bit(SIGKILL) | bit(SIGSTOP);

/// Serialises writers (taken with signals blocked).
static TABLE_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// Change a table: one writer at a time, readers see the sequence move.
fn with_table<R>(t: *mut SigTable, f: impl FnOnce(&mut [AppAction; 65]) -> R) -> R {
    thread::with_signals_blocked(|| {
        let _g = TABLE_LOCK.lock();
        // SAFETY: tables are the process table or an area's private copy, both
        // live for the process; the lock excludes other writers, and readers
        // only copy (and retry when `seq` says a write overlapped).
        let table = unsafe { &mut *t };
        table.seq.fetch_add(1, Ordering::AcqRel);
        let r = f(&mut table.actions);
        table.seq.fetch_add(1, Ordering::Release);
        r
    })
}

fn owned(sig: i32) -> bool {
    (1..=64).contains(&sig) && OWNED & bit(sig) != 0
}

/// The handler we install for every owned signal.
pub fn our_action(handler: extern "C" fn(i32, *mut Siginfo, *mut core::ffi::c_void)) -> KernelSigaction {
    KernelSigaction {
        handler: handler as *const () as u64,
        // NODEFER and an empty mask: the handler runs with the program's own
        // mask, so a blocking syscall inside it is interrupted exactly as the
        // program's would be.
        flags: SA_SIGINFO | SA_ONSTACK | SA_NODEFER | SA_RESTART | SA_RESTORER,
        restorer: arch::GATE_RESTORER,
        mask: 0,
    }
}

/// At start-up: remember what the program (or an earlier library) had set
/// for an owned signal, then install ours. Err(errno) if the kernel refuses.
/// `program_view`: what the program had, when the kernel holds something
/// else (the launcher's handler, in an image it started).
pub fn take_over(sig: i32, ours: &KernelSigaction, program_view: Option<KernelSigaction>) -> Result<(), i64> {
    let mut old = KernelSigaction::default();
    let r = raw::rt_sigaction(sig, Some(ours), Some(&mut old));
    if r < 0 {
        return Err(-r);
    }
    let old = program_view.unwrap_or(old);
    with_table(process_table(), |t| {
        if let Some(slot) = t.get_mut(sig as usize) {
            *slot = AppAction { act: old, known: true };
        }
    });
    Ok(())
}

/// Re-install our handlers (a child created with CLONE_CLEAR_SIGHAND).
pub fn reset_after_clear_sighand(ours: &KernelSigaction) {
    for sig in [SIGSYS, SIGSEGV, SIGILL] {
        raw::rt_sigaction(sig, Some(ours), None);
    }
    with_table(process_table(), |t| *t = [AppAction::default(); 65]);
}

/// Signals whose default action ends the process (signal(7): Term and Core),
/// other than the owned ones and glibc's internal 32 and 33.
pub fn fatal_by_default(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGHUP
            | libc::SIGINT
            | libc::SIGQUIT
            | libc::SIGTRAP
            | libc::SIGABRT
            | libc::SIGBUS
            | libc::SIGFPE
            | libc::SIGUSR1
            | libc::SIGUSR2
            | libc::SIGPIPE
            | libc::SIGALRM
            | libc::SIGTERM
            | libc::SIGSTKFLT
            | libc::SIGXCPU
            | libc::SIGXFSZ
            | libc::SIGVTALRM
            | libc::SIGPROF
            | libc::SIGIO
            | libc::SIGPWR
    ) || (34..=64).contains(&sig)
}

/// At start-up: for every signal that would end the process by default and
/// still has its default disposition, install the wrapper, so the report is
/// written before the process dies as natively. The program still sees SIG_DFL.
pub fn watch_fatal_signals() {
    for sig in 1..=64 {
        if !fatal_by_default(sig) {
            continue;
        }
        let mut cur = KernelSigaction::default();
        if raw::rt_sigaction(sig, None, Some(&mut cur)) != 0 || cur.handler != SIG_DFL {
            continue;
        }
        let app = KernelSigaction::default();
        let k = kernel_version(sig, &app);
        if raw::rt_sigaction(sig, Some(&k), None) == 0 {
            with_table(process_table(), |t| {
                if let Some(slot) = t.get_mut(sig as usize) {
                    *slot = AppAction { act: app, known: true };
                }
            });
        }
    }
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
/// record them here and install our own version.
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // the constructor's
pub fn adopt(launcher_table: *mut SigTable, launcher: (u64, u64)) {
    for sig in 1..=64 {
        if owned(sig) || sig == SIGKILL || sig == SIGSTOP {
            continue;
        }
        let mut cur = KernelSigaction::default();
        if raw::rt_sigaction(sig, None, Some(&mut cur)) != 0 {
            continue;
        }
        if !(launcher.0..launcher.1).contains(&cur.handler) {
            continue; // the kernel holds the program's own choice
        }
        let app = action_of(launcher_table, sig);
        let app = if app.known { app.act } else { KernelSigaction::default() };
        let k = kernel_version(sig, &app);
        if raw::rt_sigaction(sig, Some(&k), None) == 0 {
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
    let mut cur = StackT::default();
    raw::syscall(raw::SYS_sigaltstack, 0, &mut cur as *mut StackT as u64, 0, 0);
    if !inherited_is_ours && cur.ss_flags & SS_DISABLE == 0 && cur.ss_size != 0 {
        area.app_altstack.set(StackT { ss_flags: cur.ss_flags & SS_AUTODISARM, _pad: 0, ..cur });
    }
    let ours = area.altstack.get();
    raw::syscall(raw::SYS_sigaltstack, &ours as *const StackT as u64, 0, 0, 0);
}

// --- rt_sigaction -------------------------------------------------------------

/// What the kernel holds for a signal we do not own, given the program's
/// action: never an owned signal in sa_mask; a handler is wrapped by
/// `on_program_signal`, run on our own stack (SA_ONSTACK), returning through
/// the gate's restorer; it enters the program's handler (delivery.rs).
pub(crate) fn kernel_version(sig: i32, app: &KernelSigaction) -> KernelSigaction {
    let mut k = KernelSigaction { mask: app.mask & !OWNED, ..*app };
    if (app.handler != SIG_DFL && app.handler != SIG_IGN) || (app.handler == SIG_DFL && fatal_by_default(sig)) {
        k.handler = on_program_signal as *const () as u64;
        k.flags |= SA_SIGINFO | SA_ONSTACK | SA_RESTORER;
        k.restorer = arch::GATE_RESTORER;
    }
    k
}

#[inline(never)]
pub fn rt_sigaction(area: &ThreadArea, args: [u64; 6]) -> i64 {
    let (sig, act_ptr, old_ptr, size) = (args[0] as i64, args[1], args[2], args[3]);
    if size != 8 || !(1..=64).contains(&sig) {
        return -raw::EINVAL;
    }
    let sig = sig as i32;
    let new = if act_ptr != 0 {
        match raw::read_user::<KernelSigaction>(act_ptr) {
            Ok(a) => Some(a),
            Err(e) => return -e,
        }
    } else {
        None
    };
    if new.is_some() && (sig == SIGKILL || sig == SIGSTOP) {
        return -raw::EINVAL;
    }
    // What the kernel would store: known flags only, never SIGKILL/SIGSTOP in the mask.
    let stored = new.map(|a| KernelSigaction { flags: a.flags & UAPI_SA_FLAGS, mask: a.mask & !UNBLOCKABLE, ..a });
    let table = area.sigtable.get();
    let old = if owned(sig) {
        let old = with_table(table, |t| {
            let slot = t.get_mut(sig as usize);
            match slot {
                Some(slot) => {
                    let old = slot.act;
                    if let Some(s) = stored {
                        *slot = AppAction { act: s, known: true };
                    }
                    old
                }
                None => KernelSigaction::default(),
            }
        });
        // SIG_IGN discards a pending instance (POSIX; the kernel does so for
        // signals it holds). The owned signals' default action is never to
        // ignore, so SIG_DFL discards nothing.
        if stored.is_some_and(|s| s.handler == SIG_IGN) {
            discard_held_back(table, sig);
        }
        old
    } else {
        // The kernel keeps the real disposition; it just never gets an owned
        // signal in sa_mask, and under SUD returns through the gate's restorer.
        let to_kernel = stored.map(|s| kernel_version(sig, &s));
        let r = with_table(table, |t| {
            let mut kold = KernelSigaction::default();
            let r = raw::rt_sigaction(sig, to_kernel.as_ref(), Some(&mut kold));
            if r < 0 {
                return Err(r);
            }
            let slot = t.get_mut(sig as usize);
            let mut reported = kold;
            if let Some(slot) = slot {
                // The kernel still holds what we installed for the program:
                // report the program's own version (its mask, its restorer).
                let k = kernel_version(sig, &slot.act);
                if slot.known && k.handler == kold.handler && k.flags == kold.flags {
                    reported = slot.act;
                }
                if let Some(s) = stored {
                    *slot = AppAction { act: s, known: true };
                }
            }
            Ok(reported)
        });
        match r {
            Ok(o) => o,
            Err(e) => return e,
        }
    };
    if old_ptr != 0 {
        if let Err(e) = raw::write_user(old_ptr, &old) {
            return -e;
        }
    }
    0
}

// --- masks ----------------------------------------------------------------------

/// rt_sigprocmask, applied to the ucontext our sigreturn will restore.
pub fn rt_sigprocmask(area: &ThreadArea, uc: &mut Ucontext, args: [u64; 6]) -> i64 {
    let (how, set_ptr, old_ptr, size) = (args[0] as i64, args[1], args[2], args[3]);
    if size != 8 {
        return -raw::EINVAL;
    }
    let current = uc.uc_sigmask | area.app_blocked_owned.get();
    if set_ptr != 0 {
        let set: u64 = match raw::read_user(set_ptr) {
            Ok(s) => s,
            Err(e) => return -e,
        };
        let new = match how as i32 {
            libc::SIG_BLOCK => current | set,
            libc::SIG_UNBLOCK => current & !set,
            libc::SIG_SETMASK => set,
            _ => return -raw::EINVAL,
        } & !UNBLOCKABLE;
        set_program_mask(area, uc, new);
    }
    if old_ptr != 0 {
        if let Err(e) = raw::write_user(old_ptr, &current) {
            return -e;
        }
    }
    0
}

/// Make `mask` the program's mask at our sigreturn; owned signals stay
/// deliverable for real, and any that arrived while blocked are raised again
/// (with their original siginfo).
fn set_program_mask(area: &ThreadArea, uc: &mut Ucontext, mask: u64) {
    uc.uc_sigmask = mask & !OWNED;
    area.app_blocked_owned.set(mask & OWNED);
    raise_deferred(area, area.deferred.get() & !mask);
}

/// Send the held-back owned signals in `ready` again, with their original
/// siginfo; they are delivered as soon as the kernel returns to this thread.
fn raise_deferred(area: &ThreadArea, ready: u64) {
    if ready == 0 {
        return;
    }
    let ready = area.deferred.remove(ready);
    let (pid, tid) = area.ids();
    for sig in OWNED_SIGNALS {
        if ready & bit(sig) != 0 {
            let info = deferred_info(area, sig);
            raw::syscall(
                libc::SYS_rt_tgsigqueueinfo,
                pid as u64,
                tid as u64,
                sig as u64,
                &info as *const Siginfo as u64,
            );
        }
    }
}

const OWNED_SIGNALS: [i32; 3] = [SIGILL, SIGSEGV, SIGSYS];

fn deferred_info(area: &ThreadArea, sig: i32) -> Siginfo {
    let i = OWNED_SIGNALS.iter().position(|&s| s == sig).unwrap_or(0);
    area.deferred_info.get(i).map_or(Siginfo::default(), |c| c.get())
}

/// Hold back an owned signal the program has blocked, until it unblocks it
/// or takes it with sigtimedwait/sigwaitinfo.
fn defer(area: &ThreadArea, sig: i32, info: &Siginfo) {
    if area.deferred.get() & bit(sig) != 0 {
        // One pending instance per standard signal: the first one is kept.
        return;
    }
    if let Some(i) = OWNED_SIGNALS.iter().position(|&s| s == sig) {
        if let Some(c) = area.deferred_info.get(i) {
            c.set(*info);
        }
    }
    area.deferred.insert(bit(sig));
}

/// The program set `sig` to SIG_IGN: like the kernel, discard it where it is
/// pending, in every thread that shares these dispositions.
fn discard_held_back(table: *mut SigTable, sig: i32) {
    thread::for_each_area(|a| {
        if a.sigtable.get() == table {
            a.deferred.remove(bit(sig));
        }
    });
}

/// rt_sigtimedwait: an owned signal held back for the program is taken first;
/// otherwise the kernel waits.
pub fn rt_sigtimedwait(area: &ThreadArea, args: [u64; 6]) -> i64 {
    let (set_ptr, info_ptr, size) = (args[0], args[1], args[3]);
    if size == 8 {
        if let Ok(set) = raw::read_user::<u64>(set_ptr) {
            let ready = set & area.deferred.get();
            if let Some(&sig) = OWNED_SIGNALS.iter().find(|&&s| ready & bit(s) != 0) {
                let info = deferred_info(area, sig);
                if info_ptr != 0 {
                    if let Err(e) = raw::write_user(info_ptr, &info) {
                        return -e;
                    }
                }
                area.deferred.remove(bit(sig));
                return sig as i64;
            }
        }
    }
    raw::program_syscall6(libc::SYS_rt_sigtimedwait, args)
}

/// Run a syscall that installs a temporary mask, with the owned signals
/// removed from that mask and kept in the program's view for the duration.
/// `mask_arg`: index of the sigset pointer argument (its size follows it);
/// `indirect`: the argument points to {sigset*, size}. An owned signal held
/// back for the program that the temporary mask unblocks is delivered now,
/// and the call returns EINTR, as a pending signal makes it natively.
#[inline(never)]
pub fn with_temp_mask(area: &ThreadArea, nr: i64, mut args: [u64; 6], mask_arg: usize, indirect: bool) -> i64 {
    let (mask_ptr, size) = if indirect {
        let p = args.get(mask_arg).copied().unwrap_or(0);
        if p == 0 {
            return raw::program_syscall6(nr, args);
        }
        match raw::read_user::<[u64; 2]>(p) {
            Ok(v) => (v[0], v[1]),
            Err(_) => return raw::program_syscall6(nr, args), // the kernel reports EFAULT
        }
    } else {
        (args.get(mask_arg).copied().unwrap_or(0), args.get(mask_arg + 1).copied().unwrap_or(0))
    };
    if mask_ptr == 0 || size != 8 {
        return raw::program_syscall6(nr, args);
    }
    let temp = match raw::read_user::<u64>(mask_ptr) {
        Ok(m) => m,
        Err(_) => return raw::program_syscall6(nr, args),
    };
    let ready = area.deferred.get() & !temp;
    if ready != 0 {
        let view = area.app_blocked_owned.replace(temp & OWNED);
        raise_deferred(area, ready);
        area.app_blocked_owned.set(view);
        return -(libc::EINTR as i64);
    }
    let clean: u64 = temp & !OWNED;
    let pair: [u64; 2] = [&clean as *const u64 as u64, 8];
    if let Some(a) = args.get_mut(mask_arg) {
        *a = if indirect { pair.as_ptr() as u64 } else { &clean as *const u64 as u64 };
    }
    let view = area.app_blocked_owned.replace(temp & OWNED);
    let outer_temp = area.temp_mask.replace((true, temp));
    let r = raw::program_syscall6(nr, args);
    area.temp_mask.set(outer_temp);
    area.app_blocked_owned.set(view);
    // Keep the locals alive until the syscall has used them.
    core::hint::black_box((&clean, &pair));
    r
}

// --- sigaltstack ------------------------------------------------------------------

/// on_sig_stack() in include/linux/sched/signal.h (stacks grow down): an
/// SS_AUTODISARM stack never counts as in use.
pub(crate) fn on_stack(ss: &StackT, sp: u64) -> bool {
    ss.ss_size != 0 && ss.ss_flags & SS_AUTODISARM == 0 && sp > ss.ss_sp && sp - ss.ss_sp <= ss.ss_size
}

/// sigaltstack, against the program's view only: the kernel's alternate
/// stack stays ours (delivery.rs enters the program's handlers on its own).
/// `sp`: the program's stack pointer at the call.
pub fn sigaltstack(area: &ThreadArea, sp: u64, args: [u64; 6]) -> i64 {
    let (ss_ptr, old_ptr) = (args[0], args[1]);
    let app = area.app_altstack.get();
    // do_sigaltstack(): the old value as sas_ss_flags() describes it.
    let state = if app.ss_size == 0 {
        SS_DISABLE
    } else if on_stack(&app, sp) {
        SS_ONSTACK
    } else {
        0
    };
    let old =
        StackT { ss_sp: app.ss_sp, ss_flags: state | (app.ss_flags & SS_AUTODISARM), _pad: 0, ss_size: app.ss_size };
    if ss_ptr != 0 {
        let new: StackT = match raw::read_user(ss_ptr) {
            Ok(s) => s,
            Err(e) => return -e,
        };
        if state == SS_ONSTACK {
            return -raw::EPERM;
        }
        if let Err(e) = set_program_altstack(area, &new) {
            return -e;
        }
    }
    if old_ptr != 0 {
        if let Err(e) = raw::write_user(old_ptr, &old) {
            return -e;
        }
    }
    0
}

/// do_sigaltstack()'s checks and update of the program's setting. Err(errno).
pub(crate) fn set_program_altstack(area: &ThreadArea, new: &StackT) -> Result<(), i64> {
    let mode = new.ss_flags & !SS_AUTODISARM;
    if mode != SS_DISABLE && mode != SS_ONSTACK && mode != 0 {
        return Err(raw::EINVAL);
    }
    let cur = area.app_altstack.get();
    if cur.ss_sp == new.ss_sp && cur.ss_size == new.ss_size && cur.ss_flags == new.ss_flags {
        return Ok(());
    }
    if mode == SS_DISABLE {
        area.app_altstack.set(StackT { ss_sp: 0, ss_flags: new.ss_flags, _pad: 0, ss_size: 0 });
    } else {
        if new.ss_size < MINSIGSTKSZ {
            return Err(raw::ENOMEM);
        }
        area.app_altstack.set(StackT { _pad: 0, ..*new });
    }
    Ok(())
}

// --- signals that are not our traps -------------------------------------------

/// Would the kernel have forced this signal on the program (a fault or a
/// seccomp/SUD trap), killing it if blocked or ignored? A SIGSYS with a trap's
/// si_code that is not a real trap was sent (rt_tgsigqueueinfo): an ordinary
/// signal. Signals sent by kill, tgkill or sigqueue have si_code <= 0.
fn forced(sig: i32, info: &Siginfo, uc: &Ucontext) -> bool {
    if sig == SIGSYS {
        (info.si_code == SYS_SECCOMP || info.si_code == SYS_USER_DISPATCH) && real_trap(info, uc)
    } else {
        info.si_code > 0
    }
}

/// Deliver an owned signal that is not one of our traps to the program, as the
/// kernel would have: its handler, its ignore, or its default action.
#[inline(never)]
pub fn deliver_to_program(sig: i32, info: &mut Siginfo, uc: &mut Ucontext, area: &ThreadArea) {
    deliver_owned(sig, info, uc, area, false);
}

/// `here`: run a handler synchronously, on this stack, and return.
fn deliver_owned(sig: i32, info: &mut Siginfo, uc: &mut Ucontext, area: &ThreadArea, here: bool) {
    let outer = area.program_uc.get();
    if sig == SIGSYS && info.si_code == SYS_SECCOMP && outer != 0 && gate_contains(info.addr) && real_trap(info, uc) {
        // The program's own filter trapped the syscall we re-issued for it
        // from the gate. Show the program its own state: its registers, and the
        // address after its own syscall; whatever its handler leaves in rax
        // becomes the result of our re-issued syscall, and so of its own.
        // SAFETY: program_uc points at the frame of the slow path that is
        // running this very syscall, further up this thread's stack.
        let program = unsafe { &mut *(outer as *mut Ucontext) };
        info.addr = program.mc.rip;
        area.program_uc.set(0);
        deliver_owned(sig, info, program, area, true);
        area.program_uc.set(outer);
        uc.mc.rax = program.mc.rax;
        return;
    }
    let is_forced = forced(sig, info, uc);
    // One already waiting for its handler holds back another, as the
    // handler's own mask would.
    let waiting = delivery::postponed_signals(area) & bit(sig);
    let blocked = (uc.uc_sigmask | area.app_blocked_owned.get() | waiting) & bit(sig) != 0;
    if blocked && !is_forced {
        // Stays pending until the program unblocks it, whatever its disposition
        // is now (the kernel never ignores a blocked signal either).
        defer(area, sig, info);
        return;
    }
    let app = action_of(area.sigtable.get(), sig).act;
    match app.handler {
        SIG_DFL => die(sig, info),
        SIG_IGN => {
            if is_forced {
                die(sig, info)
            }
        }
        // A forced signal the program blocked kills it, as natively.
        _ if blocked => die(sig, info),
        _ if here => run_handler_here(sig, &app, info, uc, area),
        _ => delivery::deliver(sig, &app, info, uc, area, is_forced),
    }
}

pub(crate) fn gate_contains(addr: u64) -> bool {
    (arch::GATE_ADDR..=arch::GATE_ADDR + arch::GATE_LEN).contains(&addr)
}

/// rt_sigpending: the kernel's pending set plus owned signals held back for
/// the program.
pub fn rt_sigpending(area: &ThreadArea, args: [u64; 6]) -> i64 {
    if args[1] != 8 {
        return -raw::EINVAL;
    }
    let mut set: u64 = 0;
    let r = raw::syscall(libc::SYS_rt_sigpending, &mut set as *mut u64 as u64, 8, 0, 0);
    if r < 0 {
        return r;
    }
    set |= area.deferred.get();
    match raw::write_user(args[0], &set) {
        Ok(()) => 0,
        Err(e) => -e,
    }
}

/// SA_RESETHAND of an owned signal, whose real disposition stays ours: the
/// table goes back to SIG_DFL as the kernel's would at delivery. (For other
/// signals the kernel resets its own.)
pub(crate) fn reset_hand_if_asked(sig: i32, app: &KernelSigaction, area: &ThreadArea) {
    if owned(sig) && app.flags & SA_RESETHAND != 0 {
        with_table(area.sigtable.get(), |t| {
            if let Some(slot) = t.get_mut(sig as usize) {
                slot.act = KernelSigaction { handler: SIG_DFL, flags: 0, restorer: 0, mask: 0 };
            }
        });
    }
}

/// The program's action for `sig` as this thread sees it.
pub(crate) fn program_action_of(area: &ThreadArea, sig: i32) -> KernelSigaction {
    action_of(area.sigtable.get(), sig).act
}

/// Call the program's handler right here, on the current stack, and return:
/// for the few cases that cannot be entered through a frame of their own
/// (delivery.rs): a fault of the library's own code, the program's own
/// seccomp trap of a syscall the slow path re-issued, no room to postpone.
pub(crate) fn run_handler_here(sig: i32, app: &KernelSigaction, info: &Siginfo, uc: &mut Ucontext, area: &ThreadArea) {
    reset_hand_if_asked(sig, app, area);
    // The mask while the handler runs: sa_mask, plus the signal itself unless
    // SA_NODEFER. Owned signals only in the program's view.
    let mut add = app.mask;
    if app.flags & SA_NODEFER == 0 {
        add |= bit(sig);
    }
    raw::sigprocmask(libc::SIG_SETMASK, Some(uc.uc_sigmask | (add & !OWNED & !UNBLOCKABLE)));
    let mut info = *info;
    invoke_in_program_view(app.handler, app.flags, add & OWNED, sig, &mut info, uc, area);
}

/// Call the program's handler with the owned signals `blocked` added to the
/// program's view for its duration, showing it the interrupted mask as the
/// program knew it. Afterwards (the handler may have edited the mask to
/// restore) owned bits go back to the program's view, the rest to the kernel
/// at our sigreturn.
fn invoke_in_program_view(
    handler: u64,
    flags: u64,
    blocked: u64,
    sig: i32,
    info: &mut Siginfo,
    uc: &mut Ucontext,
    area: &ThreadArea,
) {
    let view_before = area.app_blocked_owned.get();
    area.app_blocked_owned.set(view_before | blocked);
    uc.uc_sigmask |= view_before;
    invoke(handler, flags, sig, info, uc);
    area.app_blocked_owned.set(uc.uc_sigmask & OWNED);
    uc.uc_sigmask &= !OWNED;
}

/// Call the program's handler as the kernel would: (sig, info, ucontext) for
/// SA_SIGINFO, else (sig).
fn invoke(handler: u64, flags: u64, sig: i32, info: &mut Siginfo, uc: &mut Ucontext) {
    let uc_ptr = uc as *mut Ucontext;
    let info_ptr = info as *mut Siginfo;
    // SAFETY: `handler` is the function the program registered for `sig`
    // (neither SIG_DFL nor SIG_IGN), called with the arguments it expects.
    unsafe {
        if flags & SA_SIGINFO != 0 {
            let f: extern "C" fn(i32, *mut Siginfo, *mut Ucontext) = core::mem::transmute(handler as usize);
            f(sig, info_ptr, uc_ptr);
        } else {
            let f: extern "C" fn(i32) = core::mem::transmute(handler as usize);
            f(sig);
        }
    }
}

/// The handler the kernel runs for every signal the program handles (other
/// than the owned ones): the kernel already applied the program's sa_mask
/// minus the owned signals; the owned ones it asked for are added to its view
/// for the duration, and the ucontext shows the interrupted mask as it knew it.
pub extern "C" fn on_program_signal(sig: i32, info: *mut Siginfo, ctx: *mut core::ffi::c_void) {
    // SAFETY: kernel-provided pointers into the frame built for this handler.
    let (info, uc) = unsafe { (&mut *info, &mut *(ctx as *mut Ucontext)) };
    let area = match thread::current() {
        Some(a) => a,
        None => crate::trap::sigsys::out_of_memory(),
    };
    let outermost = entered_from_program(area, uc);
    let app = action_of(area.sigtable.get(), sig).act;
    match app.handler {
        // The program changed the disposition while the signal was on its way.
        SIG_IGN => {}
        // A signal whose default action ends the process (we keep a handler
        // for those, so the report is written first), or a disposition the
        // program changed while the signal was on its way.
        SIG_DFL => {
            if fatal_by_default(sig) {
                crate::measure::report::at_exit(crate::measure::report::Exit::Signal(sig));
            }
            reraise_default(sig, true);
        }
        // A fault of the library's own code cannot wait (see delivery::deliver).
        _ => {
            let fault = matches!(sig, libc::SIGBUS | libc::SIGFPE | libc::SIGTRAP) && info.si_code > 0;
            delivery::deliver(sig, &app, info, uc, area, fault)
        }
    }
    if outermost {
        delivery::run_postponed(area, uc);
    }
}

/// At the entry of each of our handlers: true if it interrupted the program
/// (not the library's own code, which runs on our stack). Then no slow path
/// is under way on this thread, whatever a handler that never returned left.
pub fn entered_from_program(area: &ThreadArea, uc: &Ucontext) -> bool {
    if area.on_own_stack(uc.mc.rsp) {
        return false;
    }
    area.program_uc.set(0);
    area.draining.set(false);
    true
}

/// End the process with `sig`'s default action, as natively: restore the
/// default disposition, then let the signal happen again. A fault re-executes
/// its instruction when the handler returns; anything else is re-sent.
/// The report is written first: a re-sent signal kills the process as soon
/// as the kernel returns from tgkill.
pub(crate) fn die(sig: i32, info: &Siginfo) {
    crate::measure::report::at_exit(crate::measure::report::Exit::Signal(sig));
    let refaults = sig != SIGSYS && info.si_code > 0;
    reraise_default(sig, !refaults);
}

/// Restore `sig`'s default disposition and, if `resend`, send it again to
/// this thread (it is delivered, with its default action, when the kernel
/// returns to user space).
fn reraise_default(sig: i32, resend: bool) {
    raw::rt_sigaction(sig, Some(&KernelSigaction::default()), None);
    if resend {
        let (pid, tid) = thread::ids();
        raw::tgkill(pid, tid, sig);
    }
}

/// A postponed signal whose disposition went back to SIG_DFL meanwhile.
pub(crate) fn default_action(sig: i32, info: &Siginfo) {
    if owned(sig) || fatal_by_default(sig) {
        die(sig, info);
    }
}

/// A program handler's frame could not be written (force_sigsegv()).
pub(crate) fn die_of_bad_frame() {
    crate::measure::report::at_exit(crate::measure::report::Exit::Signal(SIGSEGV));
    reraise_default(SIGSEGV, true);
}

/// After a program handler's sigreturn: owned signals held back while it ran
/// that `mask` (the program's mask from the frame) no longer blocks.
pub(crate) fn raise_unblocked(area: &ThreadArea, mask: u64) {
    raise_deferred(area, unblocked_deferred(area, mask));
}

/// Owned signals held back that `mask` does not block.
pub(crate) fn unblocked_deferred(area: &ThreadArea, mask: u64) -> u64 {
    area.deferred.get() & !mask
}

/// Run `exec` (an execve from the gate) with the kernel holding the program's
/// own view of the owned signals: blocked ones blocked, ignored ones ignored.
/// Both survive exec natively, and the library in the new image reads them
/// back at start-up. Nothing traps in between: SUD is off in the new image
/// until our constructor runs, and this thread issues syscalls only from the
/// gate. If exec fails, our state is put back.
pub fn with_program_signal_state_for_exec(area: &ThreadArea, exec: impl FnOnce() -> i64) -> i64 {
    let mut ignored = [false; 3];
    let owned_sigs = [SIGSYS, SIGSEGV, SIGILL];
    let mut saved = [KernelSigaction::default(); 3];
    for (i, &sig) in owned_sigs.iter().enumerate() {
        if action_of(area.sigtable.get(), sig).act.handler == SIG_IGN {
            let ign = KernelSigaction { handler: SIG_IGN, ..KernelSigaction::default() };
            if let (Some(flag), Some(old)) = (ignored.get_mut(i), saved.get_mut(i)) {
                *flag = raw::rt_sigaction(sig, Some(&ign), Some(old)) == 0;
            }
        }
    }
    let old_mask = raw::sigprocmask(libc::SIG_BLOCK, Some(area.app_blocked_owned.get()));
    let r = exec();
    raw::sigprocmask(libc::SIG_SETMASK, Some(old_mask));
    for (i, &sig) in owned_sigs.iter().enumerate() {
        if let (Some(true), Some(old)) = (ignored.get(i), saved.get(i)) {
            raw::rt_sigaction(sig, Some(old), None);
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
            raw::rt_sigaction(sig, Some(&a.act), None);
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

/// AUDIT_ARCH_I386 (include/uapi/linux/audit.h).
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// The legacy vsyscall page: its calls trap under seccomp with si_call_addr
/// in the page and rip at the caller's return address (the kernel emulates
/// the `ret`).
const VSYSCALL_PAGE: u64 = 0xffff_ffff_ff60_0000;

/// What the kernel guarantees for a SIGSYS from a seccomp RET_TRAP or from
/// Syscall User Dispatch: the syscall was rolled back (rax is its number,
/// as si_syscall), si_call_addr is the interrupted rip (except for the
/// emulated vsyscall page), and the instruction before rip is the one that
/// made the call (`syscall`, or `int $0x80`/`sysenter` for i386), unless a
/// thread patched that site since (the trap was already on its way).
fn real_trap(info: &Siginfo, uc: &Ucontext) -> bool {
    let rip = uc.mc.rip;
    if info.syscall != uc.mc.rax as i32 {
        return false;
    }
    if info.addr & !0xfff == VSYSCALL_PAGE {
        return info.si_code == SYS_SECCOMP;
    }
    if info.addr != rip {
        return false;
    }
    let Some(at) = rip.checked_sub(2) else { return false };
    match raw::read_user::<[u8; 2]>(at) {
        Ok([0x0f, 0x05]) => true,
        Ok([0xcd, 0x80]) | Ok([0x0f, 0x34]) => info.arch == AUDIT_ARCH_I386,
        Ok(_) => crate::patch::registry::lookup(at).is_some_and(|site| {
            site.state == crate::patch::registry::PATCHING || site.state == crate::patch::registry::PATCHED
        }),
        // Execute-only code: what can be checked was.
        Err(_) => true,
    }
}

/// In a new process: a thread that held the table lock at fork time is gone.
pub fn after_fork_in_child() {
    // SAFETY: only this thread exists in the new process.
    unsafe { TABLE_LOCK.force_unlock() };
}
