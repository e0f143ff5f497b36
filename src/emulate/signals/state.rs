//! The program's signal state and the library's rules for it: the writers of
//! the disposition table (one lock), owned signals held back while the
//! program blocks them, its alternate stack setting, running a program
//! handler synchronously, and the default actions (ending the process as the
//! kernel would). The building blocks of the files beside it.
//! Never: enter a program handler on the program's own stack (delivery.rs).

use crate::rt::arch;
use crate::rt::frame::{Siginfo, StackT, Ucontext, SYS_SECCOMP};
use crate::rt::raw::{self, KernelSigaction};
use crate::rt::sigtable::{action_of, bit, AppAction, SigTable, OWNED, SIGBUS, SIGILL, SIGSEGV, SIGSYS};
use crate::rt::thread::SS_AUTODISARM;
use crate::rt::thread::{self, ThreadArea, FAST_ARMING, FAST_FINAL, FAST_UNCOMMITTED};
use core::sync::atomic::{AtomicBool, Ordering};

pub(super) const SIGKILL: i32 = libc::SIGKILL;

pub(super) const SIGSTOP: i32 = libc::SIGSTOP;

pub(super) const SIG_DFL: u64 = 0;

pub(super) const SIG_IGN: u64 = 1;
/// `si_code` of a signal sent by kill(2) to the whole process.
const SI_USER: i32 = 0;

pub(super) const SA_SIGINFO: u64 = libc::SA_SIGINFO as u32 as u64;

pub(super) const SA_ONSTACK: u64 = libc::SA_ONSTACK as u32 as u64;

pub(super) const SA_RESTART: u64 = libc::SA_RESTART as u32 as u64;

pub(super) const SA_NODEFER: u64 = libc::SA_NODEFER as u32 as u64;

pub(super) const SA_RESETHAND: u64 = libc::SA_RESETHAND as u32 as u64;

pub(super) const SA_RESTORER: u64 = 0x0400_0000;

/// The flags the kernel keeps (UAPI_SA_FLAGS in include/linux/signal.h, x86).
pub(super) const UAPI_SA_FLAGS: u64 = libc::SA_NOCLDSTOP as u32 as u64
    | libc::SA_NOCLDWAIT as u32 as u64
    | SA_SIGINFO
    | SA_ONSTACK
    | SA_RESTART
    | SA_NODEFER
    | SA_RESETHAND
    | 0x0000_0800 // SA_EXPOSE_TAGBITS
    | SA_RESTORER;

pub(super) const SS_ONSTACK: i32 = libc::SS_ONSTACK;

pub(super) const SS_DISABLE: i32 = libc::SS_DISABLE;

/// MINSIGSTKSZ of the sigaltstack syscall (arch/x86/include/uapi/asm/signal.h).
pub(super) const MINSIGSTKSZ: u64 = 2048;

pub(super) const UNBLOCKABLE: u64 = bit(SIGKILL) | bit(SIGSTOP);

/// Serialises writers (taken with signals blocked).
pub(super) static TABLE_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// Change a table: one writer at a time, readers see the sequence move.
pub(super) fn with_table<R>(t: *mut SigTable, f: impl FnOnce(&mut [AppAction; 65]) -> R) -> R {
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

/// `with_table` for this thread's own signal syscall: inside a fast-path
/// emulation that holds signals (fast.rs, `fast_holding`), the kernel's
/// mask already blocks every signal but the owned ones, and an owned one
/// that arrives is postponed without reading the table (`table_writing`,
/// delivery::deliver_owned): no handler of this thread can wait for the
/// lock or the sequence, so the mask is left as it is (two syscalls fewer
/// per rt_sigaction that sets an action). Elsewhere, `with_table`.
pub(super) fn with_table_from<R>(area: &ThreadArea, t: *mut SigTable, f: impl FnOnce(&mut [AppAction; 65]) -> R) -> R {
    if !fast_holding(area) {
        return with_table(t, f);
    }
    area.table_writing.set(true);
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    let r = {
        let _g = TABLE_LOCK.lock();
        // SAFETY: as in with_table; the lock excludes other writers, and
        // no handler of this thread reads the table while table_writing.
        let table = unsafe { &mut *t };
        table.seq.fetch_add(1, Ordering::AcqRel);
        let r = f(&mut table.actions);
        table.seq.fetch_add(1, Ordering::Release);
        r
    };
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    area.table_writing.set(false);
    r
}

pub(super) fn owned(sig: i32) -> bool {
    (1..=64).contains(&sig) && OWNED & bit(sig) != 0
}

/// Set once the program's own seccomp filter is about to refuse the
/// library's rt_sigreturn in a way the gate's restorer cannot come back
/// from (kill, trap, a supervisor): every handler of ours then returns
/// through the gate's user sigreturn, which makes no rt_sigreturn at all
/// (rt/arch/x86_64.s; debuggers and unwinders no longer recognise those
/// frames).
static RESTORE_IN_USER: AtomicBool = AtomicBool::new(false);

/// The restorer of every handler the library installs.
pub fn restorer() -> u64 {
    if RESTORE_IN_USER.load(Ordering::Relaxed) {
        arch::GATE_USER_SIGRETURN
    } else {
        arch::GATE_RESTORER
    }
}

/// From now on, handlers return without rt_sigreturn: the kernel's actions
/// that return through the gate's restorer are given its user sigreturn
/// (before the filter is in place: it may refuse rt_sigaction too).
pub fn restore_in_user() {
    if RESTORE_IN_USER.swap(true, Ordering::Relaxed) {
        return;
    }
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        let mut old = KernelSigaction::default();
        // SAFETY: reading the action only.
        if unsafe { raw::rt_sigaction(sig, None, Some(&mut old)) }.is_ok() && old.restorer == arch::GATE_RESTORER {
            let new = KernelSigaction { restorer: arch::GATE_USER_SIGRETURN, ..old };
            // SAFETY: the same action, returning through the gate's other
            // way back, which restores the frame as rt_sigreturn would.
            let _ = unsafe { raw::rt_sigaction(sig, Some(&new), None) };
        }
    }
}

/// The frame `uc` of a handler of ours, about to return: if handlers now
/// return without rt_sigreturn (a filter installed while it ran), so does
/// this one (its return address was the gate's restorer when the kernel
/// built it).
pub fn return_without_sigreturn(uc: &Ucontext) {
    if !RESTORE_IN_USER.load(Ordering::Relaxed) {
        return;
    }
    let slot = (uc as *const Ucontext as u64).wrapping_sub(8);
    if raw::read_user::<u64>(slot) == Ok(arch::GATE_RESTORER) {
        // SAFETY: the return-address slot of the frame the kernel built for
        // our handler, on our own signal stack, just below its ucontext.
        let _ = unsafe { raw::write_user(slot, &arch::GATE_USER_SIGRETURN) };
    }
}

/// The handler we install for every owned signal.
pub fn our_action(handler: extern "C" fn(i32, *mut Siginfo, *mut core::ffi::c_void)) -> KernelSigaction {
    action_at(handler as *const () as u64)
}

pub(super) fn action_at(handler: u64) -> KernelSigaction {
    KernelSigaction {
        handler,
        // NODEFER and an empty mask: the handler runs with the program's own
        // mask, so a blocking syscall inside it is interrupted exactly as the
        // program's would be.
        flags: SA_SIGINFO | SA_ONSTACK | SA_NODEFER | SA_RESTART | SA_RESTORER,
        restorer: restorer(),
        mask: 0,
    }
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

/// Make `mask` the program's mask at our sigreturn; owned signals stay
/// deliverable for real, and any that arrived while blocked are raised again
/// (with their original siginfo).
pub(super) fn set_program_mask(area: &ThreadArea, uc: &mut Ucontext, mask: u64) {
    uc.uc_sigmask = mask & !OWNED;
    area.app_blocked_owned.set(mask & OWNED);
    raise_deferred(area, area.deferred.get() & !mask);
}

/// Send the held-back owned signals in `ready` again, with their original
/// siginfo; they are delivered as soon as the kernel returns to this thread.
pub(super) fn raise_deferred(area: &ThreadArea, ready: u64) {
    if ready == 0 {
        return;
    }
    let ready = area.deferred.remove(ready);
    let (pid, tid) = area.ids();
    for sig in OWNED_SIGNALS {
        if ready & bit(sig) != 0 {
            let info = deferred_info(area, sig);
            let _ = raw::rt_tgsigqueueinfo(pid, tid, sig, &info);
        }
    }
}

pub(crate) const OWNED_SIGNALS: [i32; 4] = [SIGILL, SIGBUS, SIGSEGV, SIGSYS];

pub(super) fn deferred_info(area: &ThreadArea, sig: i32) -> Siginfo {
    let i = OWNED_SIGNALS.iter().position(|&s| s == sig).unwrap_or(0);
    area.deferred_info.get(i).map_or(Siginfo::default(), |c| c.get())
}

/// Hold back an owned signal the program has blocked, until it unblocks it
/// or takes it with sigtimedwait/sigwaitinfo.
pub(super) fn defer(area: &ThreadArea, sig: i32, info: &Siginfo) {
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

/// `si_code` of an owned signal sent to the whole process that one thread
/// passes on to another (`pass_on`): negative and not SI_TKILL, so
/// rt_tgsigqueueinfo may queue it to any thread of the process. The original
/// `si_code` rides in the siginfo's sixth word, a marker in the fifth.
const SI_PASSED_ON: i32 = -0x7554;
const PASSED_ON_MARK: u64 = 0x7573_6572_7472_6170; // "usertrap"

/// An owned signal sent to the whole process (`kill`: SI_USER) reached a
/// thread that blocks it, the kernel seeing it unblocked everywhere: queue it
/// to a thread of the process that does not block it, as the kernel's choice
/// of thread would have (complete_signal). False: none (it stays here).
/// The kernel lets a thread queue a siginfo that names a sender (SI_USER)
/// only to itself, so it travels under SI_PASSED_ON and is restored by
/// `take_passed_on` in the receiving thread's handler.
pub(super) fn pass_on(area: &ThreadArea, sig: i32, info: &Siginfo) -> bool {
    if info.si_code != SI_USER {
        return false;
    }
    let (tgid, me) = area.ids();
    let mut target = 0;
    thread::for_each_area(|a| {
        let (pid, tid) = a.ids();
        let eligible = a.in_use() && !a.vfork_child.get() && !a.left_library.get() && !a.strict.get();
        // A thread in a fast wait blocks what its temporary mask blocks
        // (on the slow path that mask is in its view already).
        let (waiting, temp) = a.fast_wait.get();
        let blocks = a.app_blocked_owned.get() | if waiting != 0 { temp } else { 0 };
        if target == 0 && eligible && pid == tgid && tid != 0 && tid != me && blocks & bit(sig) == 0 {
            target = tid;
        }
    });
    if target == 0 {
        return false;
    }
    // The target may have ended meanwhile (ESRCH): then it stays here.
    raw::rt_tgsigqueueinfo(tgid, target, sig, &passed_on(info)).is_ok()
}

/// `info` as `pass_on` queues it: SI_PASSED_ON, the marker and the original
/// code within the kernel's 48 bytes of siginfo (past SI_USER's pid and
/// uid): for a code it does not know, the kernel refuses any byte set
/// beyond them (E2BIG).
fn passed_on(info: &Siginfo) -> Siginfo {
    let mut passed = *info;
    passed.si_code = SI_PASSED_ON;
    passed._rest = [0; 12];
    let [mark, code, ..] = &mut passed._rest;
    *mark = PASSED_ON_MARK;
    *code = info.si_code as u32 as u64;
    passed
}

/// In an owned signal's handler, before anything looks at it: a signal
/// another thread passed on (`pass_on`) gets its original siginfo back.
pub fn take_passed_on(info: &mut Siginfo) {
    if info.si_code != SI_PASSED_ON {
        return;
    }
    let [mark, code, ..] = &mut info._rest;
    if *mark == PASSED_ON_MARK {
        info.si_code = *code as u32 as i32;
        *mark = 0;
        *code = 0;
    }
}

/// The program set `sig` to SIG_IGN: like the kernel, discard it where it is
/// pending, in every thread that shares these dispositions.
pub(super) fn discard_held_back(table: *mut SigTable, sig: i32) {
    thread::for_each_area(|a| {
        if a.sigtable.get() == table {
            a.deferred.remove(bit(sig));
        }
    });
}

/// A signal syscall emulated on the fast path (fast.rs) is between its first
/// mask change, which the kernel has made (it wrote `fast_old`), and its
/// last, which the kernel has not made yet (`fast_done` unwritten): a
/// signal that arrives now is held for its end.
pub(super) fn fast_holding(area: &ThreadArea) -> bool {
    match area.fast_window.get() {
        FAST_ARMING => area.fast_old.load(Ordering::Relaxed) != FAST_UNCOMMITTED,
        FAST_FINAL => area.fast_done.load(Ordering::Relaxed) == FAST_UNCOMMITTED,
        _ => false,
    }
}

/// on_sig_stack() in include/linux/sched/signal.h (stacks grow down): an
/// SS_AUTODISARM stack never counts as in use.
pub(crate) fn on_stack(ss: &StackT, sp: u64) -> bool {
    ss.ss_size != 0 && ss.ss_flags & SS_AUTODISARM == 0 && sp > ss.ss_sp && sp - ss.ss_sp <= ss.ss_size
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

pub(crate) fn gate_contains(addr: u64) -> bool {
    (arch::GATE_ADDR..=arch::GATE_ADDR + arch::GATE_LEN).contains(&addr)
}

/// SA_RESETHAND of an owned signal, whose real disposition stays ours: the
/// table goes back to SIG_DFL as the kernel's would at delivery. (For other
/// signals the kernel resets its own: delivery::reset_hand.)
pub(crate) fn reset_hand_if_asked(sig: i32, app: &KernelSigaction, area: &ThreadArea) {
    if owned(sig) && app.flags & SA_RESETHAND != 0 {
        with_table(area.sigtable.get(), |t| {
            if let Some(slot) = t.get_mut(sig as usize) {
                // Only the handler: flags, mask and restorer stay, as a
                // query after the delivery shows natively.
                slot.act.handler = SIG_DFL;
            }
        });
    }
}

/// The program's action for `sig` as this thread sees it.
pub(crate) fn program_action_of(area: &ThreadArea, sig: i32) -> KernelSigaction {
    action_of(area.sigtable.get(), sig).act
}

/// The mask a handler runs with (the kernel's signal_delivered()): `base`,
/// plus its sa_mask, plus the signal itself unless SA_NODEFER; never SIGKILL
/// or SIGSTOP (the program's view: owned signals included).
pub(super) fn handler_mask(sig: i32, app: &KernelSigaction, base: u64) -> u64 {
    let mut m = base | app.mask;
    if app.flags & SA_NODEFER == 0 {
        m |= bit(sig);
    }
    m & !UNBLOCKABLE
}

/// Call the program's handler right here, on the current stack, and return:
/// for the few cases that cannot be entered through a frame of their own
/// (delivery.rs): a fault of the library's own code, the program's own
/// seccomp trap of a syscall the slow path re-issued, no room to postpone.
/// (SA_RESETHAND's reset is the caller's: delivery::reset_hand.)
pub(crate) fn run_handler_here(sig: i32, app: &KernelSigaction, info: &Siginfo, uc: &mut Ucontext, area: &ThreadArea) {
    // The mask while the handler runs; owned signals only in the program's view.
    let add = handler_mask(sig, app, 0);
    raw::sigprocmask(libc::SIG_SETMASK, Some(uc.uc_sigmask | (add & !OWNED)));
    let mut info = *info;
    invoke_in_program_view(app.handler, app.flags, add & OWNED, sig, &mut info, uc, area);
}

/// Call the program's handler with the owned signals `blocked` added to the
/// program's view for its duration, showing it the interrupted mask as the
/// program knew it. Afterwards (the handler may have edited the mask to
/// restore) owned bits go back to the program's view, the rest to the kernel
/// at our sigreturn.
pub(super) fn invoke_in_program_view(
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
pub(super) fn invoke(handler: u64, flags: u64, sig: i32, info: &mut Siginfo, uc: &mut Ucontext) {
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

/// End the process with `sig`'s default action, as natively: restore the
/// default disposition, then let the signal happen again. A fault re-executes
/// its instruction when the handler returns; anything else is re-sent.
/// The report is written first: a re-sent signal kills the process as soon
/// as the kernel returns from tgkill.
pub(crate) fn die(sig: i32, info: &Siginfo) {
    hold_signals_for_exit();
    crate::measure::report::at_exit(crate::measure::report::Exit::Signal(sig));
    // Queued again with its own siginfo, a fault included: not every signal
    // the kernel raises (si_code > 0) comes again when the instruction at
    // rip runs again. The `uretprobe` syscall made outside a uretprobe
    // trampoline raises SIGILL at its return, a corrupt rseq area SIGSEGV
    // at a return to user space, a machine check's SIGBUS "action optional"
    // is about memory the thread may never touch again. A fault that does
    // come again finds the queued one delivered first, with the same
    // default action.
    reraise_default(sig, false);
    if !masks_forbidden() {
        raw::sigprocmask(libc::SIG_UNBLOCK, Some(bit(sig)));
    }
    let (pid, tid) = thread::ids();
    let _ = raw::rt_tgsigqueueinfo(pid, tid, sig, info);
}

/// Restore `sig`'s default disposition and, if `resend`, send it again to
/// this thread (it is delivered, with its default action, when the kernel
/// returns to user space: it alone is unblocked, so that another signal
/// held back meanwhile, see `hold_signals_for_exit`, cannot end the process
/// in its place).
pub(super) fn reraise_default(sig: i32, resend: bool) {
    // SAFETY: SIG_DFL.
    let _ = unsafe { raw::rt_sigaction(sig, Some(&KernelSigaction::default()), None) };
    if resend {
        if !masks_forbidden() {
            raw::sigprocmask(libc::SIG_UNBLOCK, Some(bit(sig)));
        }
        let (pid, tid) = thread::ids();
        let _ = raw::tgkill(pid, tid, sig);
    }
}

/// The program called exit_group (or its last thread exit), or a signal
/// ends it: from here on every signal but the owned ones (a fault must
/// never be blocked) stays blocked in the kernel, and the end discards
/// them. Natively nothing of the program runs once exit_group has begun,
/// and the first fatal signal is the one that ends it; the report written
/// first must not let another one in (a SIGTERM then killed the process,
/// its report cut off).
pub fn hold_signals_for_exit() {
    if !masks_forbidden() {
        raw::sigprocmask(libc::SIG_BLOCK, Some(!OWNED));
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
    hold_signals_for_exit();
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

/// AUDIT_ARCH_I386 (include/uapi/linux/audit.h).
pub(super) const AUDIT_ARCH_I386: u32 = 0x4000_0003;

/// The legacy vsyscall page: its calls trap under seccomp with si_call_addr
/// in the page and rip at the caller's return address (the kernel emulates
/// the `ret`).
pub(super) const VSYSCALL_PAGE: u64 = 0xffff_ffff_ff60_0000;

/// What the kernel guarantees for a SIGSYS from a seccomp RET_TRAP or from
/// Syscall User Dispatch: the syscall was rolled back (rax is its number,
/// as si_syscall), si_call_addr is the interrupted rip (except for the
/// emulated vsyscall page), and the instruction before rip is the one that
/// made the call (`syscall`, or `int $0x80`/`sysenter` for i386), unless a
/// thread patched that site since (the trap was already on its way).
pub(super) fn real_trap(info: &Siginfo, uc: &Ucontext) -> bool {
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

/// In a new process: a thread that held the table lock at fork time is gone,
/// and, as fork(2) says, the child starts with no pending signal: neither the
/// owned ones held back for the parent's thread nor those postponed while the
/// library ran the fork for it (they were the parent's), copied with `area`.
pub fn after_fork_in_child(area: &ThreadArea) {
    // SAFETY: only this thread exists in the new process.
    unsafe { TABLE_LOCK.force_unlock() };
    area.deferred.set(0);
    area.postponed_len.set(0);
}

/// Set once a filter of the program's forbids rt_sigprocmask from the gate:
/// the library then changes no mask for itself (delivery.rs).
static MASKS_FORBIDDEN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

pub fn masks_forbidden() -> bool {
    MASKS_FORBIDDEN.load(Ordering::Relaxed)
}

/// The program's seccomp filter forbids rt_sigprocmask (emulate::process).
pub fn forbid_masks() {
    MASKS_FORBIDDEN.store(true, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::thread::test_area;

    const USR1: u64 = bit(libc::SIGUSR1);

    fn action(flags: u64, mask: u64) -> KernelSigaction {
        KernelSigaction { handler: 0x4000, flags, restorer: 0, mask }
    }

    #[test]
    fn owned_signals() {
        for sig in -1..=66 {
            let expected = matches!(sig, 4 | 7 | 11 | 31); // SIGILL, SIGBUS, SIGSEGV, SIGSYS
            assert_eq!(owned(sig), expected, "signal {sig}");
        }
        assert_eq!(OWNED_SIGNALS.map(bit).iter().fold(0, |m, b| m | b), OWNED);
    }

    #[test]
    fn fatal_by_default_follows_signal_7() {
        // signal(7)'s default actions, numbered for x86-64: Term or Core
        // end the process; Ign, Stop and Cont do not. Real-time signals
        // (32..=64) terminate.
        let ends: &[i32] = &[
            1,  // SIGHUP Term
            2,  // SIGINT Term
            3,  // SIGQUIT Core
            4,  // SIGILL Core
            5,  // SIGTRAP Core
            6,  // SIGABRT Core
            7,  // SIGBUS Core
            8,  // SIGFPE Core
            9,  // SIGKILL Term
            10, // SIGUSR1 Term
            11, // SIGSEGV Core
            12, // SIGUSR2 Term
            13, // SIGPIPE Term
            14, // SIGALRM Term
            15, // SIGTERM Term
            16, // SIGSTKFLT Term
            24, // SIGXCPU Core
            25, // SIGXFSZ Core
            26, // SIGVTALRM Term
            27, // SIGPROF Term
            29, // SIGIO Term
            30, // SIGPWR Term
            31, // SIGSYS Core
        ];
        // 17 SIGCHLD Ign, 18 SIGCONT Cont, 19 SIGSTOP, 20 SIGTSTP, 21 SIGTTIN,
        // 22 SIGTTOU Stop, 23 SIGURG Ign, 28 SIGWINCH Ign.
        for sig in 1..=64 {
            let native = ends.contains(&sig) || sig >= 32;
            // Not counted: the owned signals (the library handles their
            // default itself), SIGKILL (never caught) and glibc's internal
            // 32 and 33 (never left at SIG_DFL by a glibc program).
            let excluded = owned(sig) || sig == SIGKILL || sig == 32 || sig == 33;
            assert_eq!(fatal_by_default(sig), native && !excluded, "signal {sig}");
        }
        assert!(!fatal_by_default(0) && !fatal_by_default(65));
    }

    #[test]
    fn on_stack_like_on_sig_stack() {
        let ss = StackT { ss_sp: 0x7000_0000, ss_flags: 0, _pad: 0, ss_size: 0x2000 };
        // Stacks grow down: sp == ss_sp is below the stack (full), sp ==
        // ss_sp + size is its empty top.
        assert!(!on_stack(&ss, 0x7000_0000));
        assert!(on_stack(&ss, 0x7000_0001));
        assert!(on_stack(&ss, 0x7000_2000));
        assert!(!on_stack(&ss, 0x7000_2001));
        assert!(!on_stack(&ss, 0x6fff_ffff));
        // SS_AUTODISARM: never counted as in use; none set: never on it.
        assert!(!on_stack(&StackT { ss_flags: SS_AUTODISARM, ..ss }, 0x7000_1000));
        assert!(!on_stack(&StackT { ss_size: 0, ..ss }, 0x7000_0000));
        assert!(!on_stack(&StackT::default(), 1));
    }

    #[test]
    fn handler_mask_as_signal_delivered() {
        let base = bit(libc::SIGINT);
        // The signal itself is blocked while its handler runs...
        assert_eq!(handler_mask(libc::SIGUSR1, &action(SA_SIGINFO, 0), base), base | USR1);
        // ...unless SA_NODEFER; sa_mask is added either way.
        let sa_mask = bit(libc::SIGTERM) | bit(libc::SIGHUP);
        assert_eq!(handler_mask(libc::SIGUSR1, &action(SA_NODEFER, sa_mask), base), base | sa_mask);
        assert_eq!(handler_mask(libc::SIGUSR1, &action(0, sa_mask), 0), sa_mask | USR1);
        // Owned signals stay in (the program's view); SIGKILL and SIGSTOP
        // are never blocked, whoever asks.
        let owned_handler = handler_mask(SIGSEGV, &action(0, bit(SIGSYS)), 0);
        assert_eq!(owned_handler, bit(SIGSEGV) | bit(SIGSYS));
        assert_eq!(handler_mask(libc::SIGUSR1, &action(SA_NODEFER, UNBLOCKABLE), UNBLOCKABLE), 0);
        assert_eq!(handler_mask(libc::SIGUSR1, &action(0, !0), 0), !UNBLOCKABLE);
    }

    #[test]
    fn program_mask_splits_owned_from_the_kernels() {
        let a = test_area();
        let mut uc = Ucontext { uc_sigmask: bit(libc::SIGTERM), ..Default::default() };
        // A held-back SIGSEGV the new mask still blocks stays held back (its
        // re-raise is a syscall this test does not make).
        a.deferred.set(bit(SIGSEGV));
        set_program_mask(&a, &mut uc, USR1 | bit(SIGSYS) | bit(SIGSEGV));
        assert_eq!(uc.uc_sigmask, USR1, "the kernel's mask: no owned signal, the old mask replaced");
        assert_eq!(a.app_blocked_owned.get(), bit(SIGSYS) | bit(SIGSEGV), "the program's view");
        assert_eq!(a.deferred.get(), bit(SIGSEGV));
        set_program_mask(&a, &mut uc, bit(SIGSEGV));
        assert_eq!(uc.uc_sigmask, 0);
        assert_eq!(a.app_blocked_owned.get(), bit(SIGSEGV));
    }

    #[test]
    fn unblocked_deferred_is_what_the_mask_lets_through() {
        let a = test_area();
        a.deferred.set(bit(SIGSEGV) | bit(SIGSYS));
        assert_eq!(unblocked_deferred(&a, bit(SIGSYS) | USR1), bit(SIGSEGV));
        assert_eq!(unblocked_deferred(&a, OWNED), 0);
        assert_eq!(unblocked_deferred(&a, 0), bit(SIGSEGV) | bit(SIGSYS));
        assert_eq!(a.deferred.get(), bit(SIGSEGV) | bit(SIGSYS), "only asked, not taken");
    }

    #[test]
    fn a_signal_passed_on_gets_its_siginfo_back() {
        // SI_USER from pid 77, uid 1000 (si_pid and si_uid share `addr`).
        let sent = Siginfo { si_signo: SIGBUS, si_code: SI_USER, addr: (1000 << 32) | 77, ..Default::default() };
        let mut got = passed_on(&sent);
        assert_eq!(got.si_code, SI_PASSED_ON);
        assert!(got._rest.iter().skip(2).all(|&w| w == 0), "nothing past the kernel's 48 bytes");
        take_passed_on(&mut got);
        assert_eq!((got.si_signo, got.si_code, got.addr), (SIGBUS, SI_USER, (1000 << 32) | 77));
        assert_eq!(got._rest, [0; 12]);
        // The program's own signal with that code but no marker is left alone.
        let mut own = Siginfo { si_signo: SIGBUS, si_code: SI_PASSED_ON, ..Default::default() };
        take_passed_on(&mut own);
        assert_eq!(own.si_code, SI_PASSED_ON);
    }

    #[test]
    fn a_held_back_standard_signal_is_pending_once() {
        // signal(7): standard signals do not queue; the first instance's
        // siginfo is the one delivered.
        let a = test_area();
        let first = Siginfo { si_signo: SIGSEGV, si_code: 1, addr: 0x1000, ..Default::default() };
        let second = Siginfo { si_signo: SIGSEGV, si_code: 2, addr: 0x2000, ..Default::default() };
        defer(&a, SIGSEGV, &first);
        defer(&a, SIGSEGV, &second);
        assert_eq!(a.deferred.get(), bit(SIGSEGV));
        assert_eq!(deferred_info(&a, SIGSEGV).addr, 0x1000);
        let sys = Siginfo { si_signo: SIGSYS, addr: 0x3000, ..Default::default() };
        defer(&a, SIGSYS, &sys);
        assert_eq!(a.deferred.get(), bit(SIGSEGV) | bit(SIGSYS));
        assert_eq!(deferred_info(&a, SIGSYS).addr, 0x3000);
        assert_eq!(deferred_info(&a, SIGSEGV).addr, 0x1000);
    }

    #[test]
    fn altstack_checks_of_do_sigaltstack() {
        let a = test_area();
        let ss = |sp, flags, size| StackT { ss_sp: sp, ss_flags: flags, _pad: 0, ss_size: size };
        // Unknown mode bits: EINVAL, nothing changed.
        assert_eq!(set_program_altstack(&a, &ss(0x1000, 4, 0x4000)), Err(raw::EINVAL));
        assert!(a.app_altstack.get() == StackT::default());
        // Smaller than MINSIGSTKSZ: ENOMEM, nothing changed.
        assert_eq!(set_program_altstack(&a, &ss(0x1000, 0, MINSIGSTKSZ - 1)), Err(raw::ENOMEM));
        assert!(a.app_altstack.get() == StackT::default());
        assert_eq!(set_program_altstack(&a, &ss(0x1000, 0, MINSIGSTKSZ)), Ok(()));
        assert!(a.app_altstack.get() == ss(0x1000, 0, MINSIGSTKSZ));
        // SS_ONSTACK as a mode is accepted (and kept, as the kernel keeps
        // ss_flags); SS_AUTODISARM is a flag on top of a mode.
        assert_eq!(set_program_altstack(&a, &ss(0x9000, SS_ONSTACK | SS_AUTODISARM, 0x4000)), Ok(()));
        assert!(a.app_altstack.get() == ss(0x9000, SS_ONSTACK | SS_AUTODISARM, 0x4000));
        // SS_DISABLE: no stack, whatever size was given (even a small one).
        assert_eq!(set_program_altstack(&a, &ss(0x5000, SS_DISABLE, 16)), Ok(()));
        assert!(a.app_altstack.get() == ss(0, SS_DISABLE, 0));
    }
}
