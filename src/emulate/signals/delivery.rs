//! Entering the program's signal handlers as the kernel would, while the
//! kernel's alternate signal stack stays the library's own.
//!
//! Every handler the kernel runs is one of ours, on our per-thread signal
//! stack (`SA_ONSTACK`, armed with `SS_AUTODISARM`). The program's alternate
//! stack is virtual (`ThreadArea::app_altstack`): a small one (Rust's 8 KiB,
//! faulthandler's, `SIGSTKSZ`) never has to hold the library's frames.
//!
//! To run a program handler we do what the kernel's `setup_rt_frame` does
//! (arch/x86/kernel/signal.c, signal_64.c): choose its stack (the program's
//! alternate stack for `SA_ONSTACK` when it is armed and not in use, else
//! below the interrupted stack pointer's red zone), write an `rt_sigframe`
//! there (the program's restorer as return address, the interrupted
//! ucontext with the program's mask and alternate stack, the siginfo, a copy
//! of the FPU state), and point the registers our own sigreturn restores at
//! the handler. Our handler returns, and the program's handler runs on its
//! own stack with nothing of ours left on our stack. When it returns, its
//! restorer's `rt_sigreturn` traps (it is outside the gate; both backends
//! trap it) and [`sigreturn`] puts the owned signals back into the program's
//! view and our stack back into the frame before the kernel restores it. A
//! frame that does not fit kills the process with SIGSEGV, as natively.
//!
//! A signal that interrupts the library's own code (most often a blocking
//! syscall the slow path runs for the program) cannot be entered that way:
//! our frames are live. It is postponed until that code is done, and the
//! handler then starts from the program's state after its syscall. The
//! program's syscall itself is issued through an abortable gate entry: when
//! a signal waits, or arrives before the call starts, or interrupts it so
//! that the kernel would restart it (`SA_RESTART`), the call is not (or no
//! longer) made, and the program is rewound onto its own `syscall`, which
//! runs again after the handler, as the kernel restarts it natively.

use super::state::{self, *};
use crate::rt::arch;
use crate::rt::frame::{self, Siginfo, StackT, Ucontext};
use crate::rt::frame::{SYS_SECCOMP, SYS_USER_DISPATCH};
use crate::rt::raw::{self, KernelSigaction};
use crate::rt::sigtable::{action_of, bit, OWNED, SIGSYS};
use crate::rt::thread;
use crate::rt::thread::{Postponed, ThreadArea, SS_AUTODISARM};

const SA_ONSTACK: u64 = libc::SA_ONSTACK as u32 as u64;
const SA_RESTORER: u64 = 0x0400_0000;
const SS_DISABLE: i32 = libc::SS_DISABLE;
const SIGKILL_STOP: u64 = bit(libc::SIGKILL) | bit(libc::SIGSTOP);
/// Flags the kernel clears for a handler (X86_EFLAGS_DF | RF | TF).
const HANDLER_CLEARED_FLAGS: u64 = 0x400 | 0x1_0000 | 0x100;
/// The red zone below the interrupted stack pointer (System V x86-64 ABI).
const RED_ZONE: u64 = 128;

/// The alternate stack as `sas_ss_reset` leaves it (disarmed or disabled).
pub const NO_STACK: StackT = StackT { ss_sp: 0, ss_flags: SS_DISABLE, _pad: 0, ss_size: 0 };

/// Run the program's handler for `sig` (not SIG_DFL/SIG_IGN), arriving with
/// `uc` as the interrupted state: entered after our handler returns, or
/// postponed if `uc` is the library's own code. `forced`: a fault of that
/// very code, which cannot wait (it would fault again): run the handler
/// here, as the library always did.
pub fn deliver(sig: i32, app: &KernelSigaction, info: &Siginfo, uc: &mut Ucontext, area: &ThreadArea, forced: bool) {
    if state::fast_holding(area) && !forced {
        // A signal syscall emulated on the fast path is under way (fast.rs):
        // held until it is done, then sent again.
        if !postpone(sig, app, info, uc, area) {
            handler_here(sig, app, info, uc, area);
        }
        return;
    }
    if area.on_own_stack(uc.mc.rsp) {
        if forced {
            handler_here(sig, app, info, uc, area);
        } else if area.draining.get()
            && SYNCHRONOUS & bit(sig) != 0
            && (bit(sig) & NOT_HANDLER_BLOCKED == 0 || !state::masks_forbidden())
        {
            // Our code is on its way back to the program, with every other
            // signal blocked (run_postponed): one that a fault can raise,
            // sent by kill, is queued again for the kernel to deliver at
            // that return (blocked until then in the state it interrupted).
            // (Others can only arrive here before the next handler of ours
            // clears `draining`: they are postponed for that handler.)
            // SIGSYS (our handler's is SA_NODEFER) and a SIGTRAP or SIGFPE
            // whose program action is SA_NODEFER are not blocked in this
            // handler: queued again as they are, they would come back at
            // once, into this handler again, without end (SIGSYS, SIGSEGV
            // and SIGUSR1 unblocked at once on the fast path did so until
            // the stack overflowed: the kernel delivers SIGSEGV and SIGSYS
            // together, the SIGSYS interrupts our SIGSEGV handler before it
            // clears `draining`). Blocked first: no trap can come meanwhile
            // (our code makes its syscalls from the gate).
            if bit(sig) & NOT_HANDLER_BLOCKED != 0 {
                raw::sigprocmask(libc::SIG_BLOCK, Some(bit(sig)));
            }
            resend(sig, info);
            uc.uc_sigmask |= bit(sig);
        } else if !postpone(sig, app, info, uc, area) {
            handler_here(sig, app, info, uc, area);
        }
        return;
    }
    // A fast call that waits with a temporary mask, interrupted in its
    // syscall: the handler runs with that mask (the record is this
    // handler's: one that never returns leaves nothing behind).
    let temp = wait_interrupted(area, uc);
    if temp.is_some() {
        area.fast_wait.set((0, 0));
    }
    enter(sig, app, info, temp.map_or((false, 0), |t| (true, t)), uc, area);
}

/// The temporary mask of a fast call waiting with one (fast::with_temp_mask)
/// when `uc` is that call interrupted in its syscall by a signal whose
/// handler runs (see there); None otherwise.
pub fn wait_interrupted(area: &ThreadArea, uc: &Ucontext) -> Option<u64> {
    let (link, temp) = area.fast_wait.get();
    let in_call = link != 0
        && uc.mc.rip == arch::GATE_SYSCALL_RETURN
        && uc.mc.rax == -(libc::EINTR as i64) as u64
        && area.fast_link(uc.mc.rsp) == Some(link);
    if in_call {
        Some(temp)
    } else {
        None
    }
}

/// `state::run_handler_here`, after SA_RESETHAND's reset.
fn handler_here(sig: i32, app: &KernelSigaction, info: &Siginfo, uc: &mut Ucontext, area: &ThreadArea) {
    reset_hand(sig, app, area);
    state::run_handler_here(sig, app, info, uc, area);
}

/// SA_RESETHAND: at delivery the kernel sets the handler to SIG_DFL and
/// keeps the action's flags, mask and restorer. An owned signal's action is
/// the table's alone (state::reset_hand_if_asked). Another's is the one we
/// gave the kernel (kernel_action_for, SA_RESETHAND included), which the
/// kernel has reset as it delivered the signal to us: the table's entry
/// goes to SIG_DFL too, and the kernel is given kernel_action_for of that
/// (for a signal that ends the process by default, our handler again, so
/// that its next delivery writes the report first; the kernel alone ended
/// the process without it; for the others the program's flags, mask and
/// restorer, which a query shows). Only while the kernel still holds the
/// reset form of what we gave it: a sigaction of the program's since then
/// went through the table's lock, taken here.
fn reset_hand(sig: i32, app: &KernelSigaction, area: &ThreadArea) {
    if app.flags & SA_RESETHAND == 0 {
        return;
    }
    if owned(sig) {
        state::reset_hand_if_asked(sig, app, area);
        return;
    }
    state::with_table(area.sigtable.get(), |t| {
        let Some(slot) = t.get_mut(sig as usize) else { return };
        if slot.act.handler != app.handler || slot.act.flags != app.flags {
            return; // the program installed another action since
        }
        let given = kernel_action_for(sig, &slot.act);
        let mut now = KernelSigaction::default();
        // SAFETY: only reads the kernel's action.
        if unsafe { raw::rt_sigaction(sig, None, Some(&mut now)) }.is_err() {
            return;
        }
        if now.handler != SIG_DFL || now.flags != given.flags || now.restorer != given.restorer {
            return;
        }
        slot.act.handler = SIG_DFL;
        let k = kernel_action_for(sig, &slot.act);
        // SAFETY: the program's action with SIG_DFL, as kernel_action_for
        // gives every program action to the kernel.
        let _ = unsafe { raw::rt_sigaction(sig, Some(&k), None) };
    });
}

/// Build the program's signal frame and point `uc` at its handler.
fn enter(
    sig: i32,
    app: &KernelSigaction,
    info: &Siginfo,
    temp_mask: (bool, u64),
    uc: &mut Ucontext,
    area: &ThreadArea,
) {
    reset_hand(sig, app, area);
    let view = area.app_blocked_owned.get();
    let interrupted_mask = (uc.uc_sigmask & !OWNED) | view;
    let running = handler_mask(sig, app, if temp_mask.0 { temp_mask.1 } else { interrupted_mask });

    // get_sigframe(): which stack, and whether the frame fits.
    let ss = area.app_altstack.get();
    let sp = uc.mc.rsp;
    // A fast call interrupted on its own stack (ut_fast_entry): the handler
    // runs where it would natively, on the stack the call came from, below
    // the registers the call saved there (its link), not on the fast-path
    // stack (small, and not the program's: stack scanners, guard checks),
    // and sees the link as the interrupted stack pointer (sigreturn puts
    // the real one back). Its own fast calls stay on that stack (the link
    // slot is in use).
    let link = area.fast_link(sp);
    let program_sp = link.map_or(sp, |l| l + arch::FAST_LINK_TO_PROGRAM_SP);
    let was_on_altstack = state::on_stack(&ss, program_sp);
    let entering_altstack = app.flags & SA_ONSTACK != 0 && ss.ss_size != 0 && !was_on_altstack;
    let top = if entering_altstack { ss.ss_sp + ss.ss_size } else { link.unwrap_or(sp - RED_ZONE) };
    let fp_size = frame::fpstate_size(uc.mc.fpstate).unwrap_or(0) as u64;
    let fp_addr = top.wrapping_sub(fp_size) & !63;
    let frame_len = (8 + core::mem::size_of::<Ucontext>() + core::mem::size_of::<Siginfo>()) as u64;
    let frame_sp = (fp_addr.wrapping_sub(frame_len) & !15).wrapping_sub(8);
    let uc_addr = frame_sp + 8;
    let info_addr = uc_addr + core::mem::size_of::<Ucontext>() as u64;
    let fits = !(entering_altstack || was_on_altstack) || state::on_stack(&StackT { ss_flags: 0, ..ss }, frame_sp);

    let mut saved = *uc;
    saved.uc_sigmask = interrupted_mask;
    saved.uc_stack = ss; // __save_altstack(): the setting as it is now
    saved.mc.fpstate = if fp_size != 0 { fp_addr } else { 0 };
    if let Some(l) = link {
        saved.mc.rsp = l;
        area.fast_resume.set((uc_addr, sp));
    }
    let written =
        if !fits || app.flags & SA_RESTORER == 0 {
            Err(raw::EFAULT) // x86-64 has no default restorer: the kernel fails too
        } else {
            // SAFETY: the program handler's frame goes where the kernel would
            // build it: on the program's stack or its alternate stack (checked to
            // fit), program memory it named; the FPU state is read from our own
            // signal frame.
            unsafe {
                raw::write_user(frame_sp, &app.restorer)
                    .and_then(|_| raw::write_user(uc_addr, &saved))
                    .and_then(|_| raw::write_user(info_addr, info))
                    .and_then(|_| {
                        if fp_size != 0 {
                            raw::copy_user(fp_addr, uc.mc.fpstate, fp_size as usize)
                        } else {
                            Ok(())
                        }
                    })
            }
        };
    if written.is_err() {
        // force_sigsegv(): the frame could not be set up (a stack overflow,
        // most often: the classic case for SA_ONSTACK).
        state::die_of_bad_frame();
        return;
    }
    if entering_altstack && ss.ss_flags & SS_AUTODISARM != 0 {
        area.app_altstack.set(NO_STACK);
    }
    area.app_blocked_owned.set(running & OWNED);
    let m = &mut uc.mc;
    m.rip = app.handler;
    m.rsp = frame_sp;
    m.rdi = sig as u64;
    m.rsi = info_addr;
    m.rdx = uc_addr;
    m.rax = 0;
    m.eflags &= !HANDLER_CLEARED_FLAGS;
    uc.uc_sigmask = running & !OWNED;
}

/// Keep `sig` for when the library's code that it interrupted is done.
/// False if there is no room.
fn postpone(sig: i32, app: &KernelSigaction, info: &Siginfo, uc: &mut Ucontext, area: &ThreadArea) -> bool {
    let n = area.postponed_len.get();
    let Some(slot) = area.postponed.get(n) else {
        return false;
    };
    // Claim the slot before filling it: a signal that interrupts us here
    // takes the next one (a handler of ours runs to its end before we go on).
    area.postponed_len.set(n + 1);
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    slot.set(Postponed { sig, info: *info, temp_mask: area.temp_mask.get() });
    // Until its handler runs, what the handler would block stays blocked
    // for our code too (the program's mask at our sigreturn is unaffected).
    uc.uc_sigmask |= handler_mask(sig, app, 0) & !OWNED;
    if (arch::GATE_PROGRAM_SYSCALL..=arch::GATE_PROGRAM_SYSCALL_INSN).contains(&uc.mc.rip) {
        // The program's syscall is about to start, or the kernel rewound it
        // to restart it: it would block with the handler still waiting. Take
        // the gate's abort exit; the slow path restarts the program's own
        // syscall after the handler (raw::program_syscall6).
        uc.mc.rip = arch::GATE_PROGRAM_SYSCALL_ABORT;
    }
    true
}

/// Run the handlers postponed while our code ran, now that `uc` is the
/// program's state again. Each later one starts from the earlier one's entry,
/// as when the kernel sets up several frames at once.
pub fn run_postponed(area: &ThreadArea, uc: &mut Ucontext) {
    // A signal arriving after the last look at the list would wait for the
    // thread's next trap, and one arriving while the loop below takes from
    // it could be lost: block every signal a fault cannot raise until our
    // sigreturn (which restores `uc`'s mask; the kernel then delivers what is
    // pending, to this thread or another, as natively). The few that a fault
    // can raise, when sent, are queued again (see deliver).
    block_async_signals();
    area.draining.set(true);
    while area.postponed_len.get() != 0 {
        let first = area.postponed.first().map_or(Postponed::default(), |c| c.get());
        let n = area.postponed_len.get();
        for i in 1..n {
            if let (Some(to), Some(from)) = (area.postponed.get(i - 1), area.postponed.get(i)) {
                to.set(from.get());
            }
        }
        area.postponed_len.set(n - 1);
        let app = state::program_action_of(area, first.sig);
        match app.handler {
            0 => state::default_action(first.sig, &first.info),
            1 => {} // ignored meanwhile: discarded
            _ => {
                // Taken at the same return as an owned signal that
                // interrupted a fast wait (the kernel sets up both frames):
                // the first ends the wait with its temporary mask, as the
                // wait's record says (fast::with_temp_mask).
                let temp = wait_interrupted(area, uc);
                let temp_mask = match temp {
                    Some(t) if !first.temp_mask.0 => {
                        area.fast_wait.set((0, 0));
                        (true, t)
                    }
                    _ => first.temp_mask,
                };
                enter(first.sig, &app, &first.info, temp_mask, uc, area)
            }
        }
    }
}

/// Of those, the ones our handler for them may run with unblocked.
const NOT_HANDLER_BLOCKED: u64 = bit(libc::SIGSYS) | bit(libc::SIGTRAP) | bit(libc::SIGFPE);

/// Signals a fault of our own code can raise: blocked, the kernel would kill
/// the process on one (force_sig_info resets a blocked handler to SIG_DFL).
const SYNCHRONOUS: u64 = bit(libc::SIGSEGV)
    | bit(libc::SIGBUS)
    | bit(libc::SIGILL)
    | bit(libc::SIGFPE)
    | bit(libc::SIGTRAP)
    | bit(libc::SIGSYS);

/// Block every signal but those (until our sigreturn restores the mask).
/// Not where the program's own seccomp filter forbids it (it would end the
/// process): a signal that arrives at the end of our handler then waits for
/// the thread's next trap.
fn block_async_signals() {
    if !state::masks_forbidden() {
        raw::sigprocmask(libc::SIG_BLOCK, Some(!(SYNCHRONOUS | SIGKILL_STOP)));
    }
}

/// The signals waiting in the postponed list, as a mask.
pub fn postponed_signals(area: &ThreadArea) -> u64 {
    area.postponed.iter().take(area.postponed_len.get()).fold(0, |m, p| m | bit(p.get().sig))
}

/// Queue the postponed signals to this thread again, with their siginfo.
fn resend_postponed(area: &ThreadArea) {
    for p in area.postponed.iter().take(area.postponed_len.get()) {
        let p = p.get();
        resend(p.sig, &p.info);
    }
    area.postponed_len.set(0);
}

/// Queue `sig` to this thread again with its own siginfo (rt_tgsigqueueinfo
/// to oneself accepts any si_code).
pub(super) fn resend(sig: i32, info: &Siginfo) {
    let (pid, tid) = crate::rt::thread::ids();
    let _ = raw::rt_tgsigqueueinfo(pid, tid, sig, info);
}

/// rt_sigreturn of a program handler's frame (its restorer trapped): the
/// frame's mask and alternate stack are the program's view; the kernel gets
/// the mask without the owned signals and our own stack, then restores it.
pub fn sigreturn(area: &ThreadArea, uc: &Ucontext) -> ! {
    let uc_addr = uc.mc.rsp; // the handler's `ret` popped the restorer address
    if let Ok(mut saved) = raw::read_user::<Ucontext>(uc_addr) {
        let mask = saved.uc_sigmask;
        area.app_blocked_owned.set(mask & OWNED);
        saved.uc_sigmask = mask & !OWNED;
        restore_program_altstack(area, &saved.uc_stack, uc_addr);
        // A fast call the handler interrupted (enter showed it its link):
        // back onto the fast-path stack, if the handler left the link and
        // that call is still the live one there.
        let (frame, resume) = area.fast_resume.get();
        if frame == uc_addr && area.fast_link(resume) == Some(saved.mc.rsp) {
            saved.mc.rsp = resume;
            area.fast_resume.set((0, 0));
        }
        saved.uc_stack = if area.on_own_stack(saved.mc.rsp) { NO_STACK } else { area.altstack.get() };
        // SAFETY: the frame the program's handler returns from, on the
        // program's stack, read from the same place just above.
        if unsafe { raw::write_user(uc_addr, &saved) }.is_ok() {
            // Signals postponed while this ran, and held-back owned signals
            // the frame's mask unblocks, are sent again, blocked until the
            // sigreturn below (no trap can happen in between: our syscalls
            // come from the gate): the kernel delivers them in the program,
            // as it would pending signals at a sigreturn. (Entering them here
            // would build their frames over the one being returned from.)
            // As in run_postponed: nothing is postponed from here on.
            block_async_signals();
            area.draining.set(true);
            let again = postponed_signals(area) | (state::unblocked_deferred(area, mask) & OWNED);
            if again != 0 {
                raw::sigprocmask(libc::SIG_BLOCK, Some(again | OWNED));
                resend_postponed(area);
                state::raise_unblocked(area, mask);
            }
        }
    }
    // SAFETY: rsp at the trap is the frame's ucontext, just above its
    // return-address slot; the kernel validates the frame it finds there.
    unsafe { arch::ut_sigreturn_at(uc_addr, state::restorer()) }
}

/// restore_altstack(): sigreturn installs the frame's alternate stack, as
/// sigaltstack would at that point (`sp`: the stack pointer at the
/// sigreturn, in the handler's frame: refused if the handler ran on the
/// current alternate stack); errors are ignored.
fn restore_program_altstack(area: &ThreadArea, new: &StackT, sp: u64) {
    let cur = area.app_altstack.get();
    if state::on_stack(&cur, area.program_sp(sp)) {
        return;
    }
    let _ = state::set_program_altstack(area, new);
}

/// What the kernel holds for a signal we do not own, given the program's
/// action: never an owned signal in sa_mask; a handler is wrapped by
/// `on_program_signal`, run on our own stack (SA_ONSTACK), returning through
/// the gate's restorer; it enters the program's handler (delivery.rs).
pub(crate) fn kernel_action_for(sig: i32, app: &KernelSigaction) -> KernelSigaction {
    let mut k = KernelSigaction { mask: app.mask & !OWNED, ..*app };
    if (app.handler != SIG_DFL && app.handler != SIG_IGN) || (app.handler == SIG_DFL && fatal_by_default(sig)) {
        k.handler = on_program_signal as *const () as u64;
        k.flags |= SA_SIGINFO | SA_ONSTACK | SA_RESTORER;
        k.restorer = state::restorer();
    }
    k
}

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
    let waiting = postponed_signals(area) & bit(sig);
    // Against the temporary mask of a fast call whose wait it ended.
    let view = wait_interrupted(area, uc).map_or(area.app_blocked_owned.get(), |t| t & OWNED);
    let blocked = (uc.uc_sigmask | view | waiting) & bit(sig) != 0;
    if blocked && !is_forced {
        // Sent to the whole process: another thread that does not block it
        // takes it, as natively. Otherwise it stays pending until the
        // program unblocks it, whatever its disposition is now (the kernel
        // never ignores a blocked signal either). Either way, natively it
        // would not have ended a wait of this thread's: one with a
        // temporary mask waits again (with_temp_mask).
        area.wait_held.set(true);
        if !pass_on(area, sig, info) {
            defer(area, sig, info);
        }
        return;
    }
    if area.table_writing.get() && !is_forced {
        // This thread is writing its table in a fast signal call that holds
        // signals (state::with_table_from): reading the table now would wait
        // for ourselves. Held for the call's end, like any signal arriving
        // in it (its disposition is read when it is sent again); with no
        // room to hold it, kept pending as if blocked.
        if !postpone(sig, &KernelSigaction::default(), info, uc, area) {
            defer(area, sig, info);
        }
        return;
    }
    let app = action_of(area.sigtable.get(), sig).act;
    match app.handler {
        SIG_DFL => die_from(sig, info, uc),
        SIG_IGN => {
            if is_forced {
                die_from(sig, info, uc)
            }
            // Natively discarded when sent, ending no wait.
            area.wait_held.set(true);
        }
        // A forced signal the program blocked kills it, as natively.
        _ if blocked => die_from(sig, info, uc),
        _ if here => handler_here(sig, &app, info, uc, area),
        _ => deliver(sig, &app, info, uc, area, is_forced && !raised_at_gate_syscall_return(info, uc)),
    }
}

/// `si_code` of a signal the kernel raised for reasons of its own (not an
/// instruction's fault code).
const SI_KERNEL: i32 = 0x80;

/// A forced signal the kernel raised as one of the gate's syscalls returned,
/// not for the instruction at rip: the `uretprobe` syscall made outside a
/// uretprobe trampoline (SIGILL, Linux 6.11+), a corrupt rseq area
/// (SIGSEGV). Nothing there faults again, so it waits for the library's
/// code like any other signal, and the program's handler starts from the
/// program's state after its syscall, as natively.
fn raised_at_gate_syscall_return(info: &Siginfo, uc: &Ucontext) -> bool {
    let rip = uc.mc.rip;
    info.si_code == SI_KERNEL
        && gate_contains(rip)
        && raw::read_user::<[u8; 2]>(rip.wrapping_sub(2)).is_ok_and(|b| b == [0x0f, 0x05])
}

/// A seccomp filter of the program's kills it for a call the library
/// answers (emulate::own_filter): SIGSYS with its default action, whatever
/// the program's disposition, after the report; `uc` is the trapped call's
/// frame.
pub fn die_of_filter(info: &Siginfo, uc: &mut Ucontext) {
    die_from(SIGSYS, info, uc);
}

/// `die`, from a handler whose frame is `uc`: a fault ends the process when
/// its instruction runs again after our sigreturn, which must not let in
/// another signal held back meanwhile (it would end it first).
fn die_from(sig: i32, info: &Siginfo, uc: &mut Ucontext) {
    uc.uc_sigmask |= !OWNED;
    die(sig, info);
}

/// The handler the kernel runs for every signal the program handles (other
/// than the owned ones): the kernel already applied the program's sa_mask
/// minus the owned signals; the owned ones it asked for are added to its view
/// for the duration, and the ucontext shows the interrupted mask as it knew it.
pub extern "C" fn on_program_signal(sig: i32, info: *mut Siginfo, ctx: *mut core::ffi::c_void) {
    // SAFETY: kernel-provided pointers into the frame built for this handler.
    let (info, uc) = unsafe { (&mut *info, &mut *ctx.cast::<Ucontext>()) };
    let area = match thread::current() {
        Some(a) => a,
        None => thread::out_of_memory(),
    };
    if crate::measure::report::ending() {
        park_until_exit();
    }
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
                hold_signals_for_exit();
                crate::measure::report::at_exit(crate::measure::report::Exit::Signal(sig));
            }
            reraise_default(sig, true);
        }
        // A fault of the library's own code cannot wait (see delivery::deliver).
        _ => {
            let fault = matches!(sig, libc::SIGFPE | libc::SIGTRAP) && info.si_code > 0;
            deliver(sig, &app, info, uc, area, fault)
        }
    }
    if outermost {
        run_postponed(area, uc);
    }
}

/// Another thread called exit_group and writes the report: natively this
/// thread would be gone, and no signal would end the process otherwise or
/// run a handler of the program's (a SIGTERM given to this thread killed
/// the process with SIGTERM). It waits for the exit, every signal but the
/// owned ones blocked.
fn park_until_exit() -> ! {
    if !state::masks_forbidden() {
        raw::sigprocmask(libc::SIG_BLOCK, Some(!OWNED));
    }
    loop {
        let _ = raw::poll(&mut [], -1);
    }
}

/// At the entry of each of our handlers: true if it interrupted the program
/// (not the library's own code, which runs on our stack). Then no slow path
/// is under way on this thread, whatever a handler that never returned left.
pub fn entered_from_program(area: &ThreadArea, uc: &mut Ucontext) -> bool {
    finish_user_sigreturn(uc);
    if state::fast_holding(area) {
        // A fast-path signal syscall is under way (fast.rs): what arrives
        // now waits for its end, not for ours.
        return false;
    }
    if area.on_own_stack(uc.mc.rsp) {
        return false;
    }
    area.program_uc.set(0);
    area.draining.set(false);
    true
}

/// A signal that arrived while the gate restored a frame in user space
/// (its rt_sigreturn refused by the program's own filter: the gate's user
/// sigreturn in rt/arch/x86_64.s, once it moved onto its block below the
/// target's red zone): the context it interrupted becomes the target's,
/// with its mask and alternate stack, as if the kernel had restored the
/// frame and then delivered the signal. (The FPU state is already the
/// target's there.)
fn finish_user_sigreturn(uc: &mut Ucontext) {
    let off = uc.mc.rip.wrapping_sub(arch::GATE_ADDR);
    let from = arch::GATE_OFF_USER_SIGRETURN_SWITCH + arch::USER_SIGRETURN_SWITCH_LEN;
    if !(from..=arch::GATE_OFF_USER_SIGRETURN_RET).contains(&off) {
        return;
    }
    let m = &mut uc.mc;
    if off <= arch::GATE_OFF_USER_SIGRETURN_LEA {
        // The block at rsp: r8..rcx, flags, mask, stack_t, then rip.
        let Ok(b) = raw::read_user::<[u64; 22]>(m.rsp) else {
            return;
        };
        let [r8, r9, r10, r11, r12, r13, r14, r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, eflags, mask, ss_sp, ss_flags, ss_size, _, rip] =
            b;
        let rsp = m.rsp.wrapping_add(arch::BLK_SIZE as u64);
        *m = frame::Sigcontext {
            r8,
            r9,
            r10,
            r11,
            r12,
            r13,
            r14,
            r15,
            rdi,
            rsi,
            rbp,
            rbx,
            rdx,
            rax,
            rcx,
            rsp,
            rip,
            eflags,
            ..*m
        };
        uc.uc_sigmask = mask;
        uc.uc_stack = StackT { ss_sp, ss_flags: ss_flags as i32, _pad: (ss_flags >> 32) as i32, ss_size };
    } else if let Ok(rip) = raw::read_user::<u64>(m.rsp) {
        // Past the block: every register the target's, rsp at its rip,
        // 136 bytes below its own.
        m.rip = rip;
        m.rsp = m.rsp.wrapping_add(136);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::thread::test_area;

    const USR1: u64 = bit(libc::SIGUSR1);

    #[test]
    fn the_kernel_never_holds_an_owned_signal_in_sa_mask() {
        for handler in [SIG_DFL, SIG_IGN, 0x4000] {
            let app = KernelSigaction { handler, flags: 0, restorer: 0, mask: OWNED | USR1 };
            assert_eq!(kernel_action_for(libc::SIGUSR2, &app).mask, USR1, "handler {handler:#x}");
        }
    }

    #[test]
    fn a_program_handler_is_wrapped_by_ours() {
        let flags = SA_RESTART | SA_NODEFER | SA_RESETHAND;
        let app = KernelSigaction { handler: 0x4000, flags, restorer: 0x5000, mask: USR1 };
        let k = kernel_action_for(libc::SIGUSR2, &app);
        assert_eq!(k.handler, on_program_signal as *const () as u64);
        // Its own flags kept (the kernel applies them: restart, defer,
        // reset), ours added: siginfo, our stack, the gate's restorer.
        assert_eq!(k.flags, flags | SA_SIGINFO | SA_ONSTACK | SA_RESTORER);
        assert_eq!(k.restorer, arch::GATE_RESTORER);
        assert_eq!(k.mask, USR1);
    }

    #[test]
    fn defaults_the_kernel_keeps_and_those_we_watch() {
        // SIG_IGN, and SIG_DFL of a signal that does not end the process:
        // the kernel's own, unchanged.
        let ign = KernelSigaction { handler: SIG_IGN, flags: SA_RESTART, restorer: 0, mask: 0 };
        assert!(kernel_action_for(libc::SIGTERM, &ign) == ign);
        let dfl = KernelSigaction { handler: SIG_DFL, flags: 0, restorer: 0, mask: 0 };
        for sig in [libc::SIGCHLD, libc::SIGCONT, libc::SIGWINCH, libc::SIGURG, libc::SIGTSTP] {
            assert!(kernel_action_for(sig, &dfl) == dfl, "signal {sig}");
        }
        // SIG_DFL of a fatal signal: ours runs first (to write the report).
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGUSR1, 40] {
            let k = kernel_action_for(sig, &dfl);
            assert_eq!(k.handler, on_program_signal as *const () as u64, "signal {sig}");
            assert_eq!(k.flags, SA_SIGINFO | SA_ONSTACK | SA_RESTORER);
        }
    }

    #[test]
    fn postponed_signals_as_a_mask() {
        let a = test_area();
        assert_eq!(postponed_signals(&a), 0);
        for (i, sig) in [libc::SIGUSR1, libc::SIGALRM, libc::SIGUSR1].into_iter().enumerate() {
            a.postponed[i].set(Postponed { sig, ..Default::default() });
        }
        a.postponed[3].set(Postponed { sig: libc::SIGTERM, ..Default::default() });
        a.postponed_len.set(3);
        assert_eq!(postponed_signals(&a), USR1 | bit(libc::SIGALRM), "only the first postponed_len count");
    }
}
