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

use crate::emulate::signals::{self, bit, OWNED};
use crate::rt::arch;
use crate::rt::frame::{self, Siginfo, StackT, Ucontext};
use crate::rt::raw::{self, KernelSigaction};
use crate::rt::thread::{Postponed, ThreadArea, SS_AUTODISARM};

const SA_ONSTACK: u64 = libc::SA_ONSTACK as u32 as u64;
const SA_NODEFER: u64 = libc::SA_NODEFER as u32 as u64;
const SA_RESTORER: u64 = 0x0400_0000;
const SS_DISABLE: i32 = libc::SS_DISABLE;
const SIGKILL_STOP: u64 = bit(libc::SIGKILL) | bit(libc::SIGSTOP);
/// Flags the kernel clears for a handler (X86_EFLAGS_DF | RF | TF).
const HANDLER_CLEARED_FLAGS: u64 = 0x400 | 0x1_0000 | 0x100;
/// The red zone below the interrupted stack pointer (System V x86-64 ABI).
const RED_ZONE: u64 = 128;

/// The alternate stack as `sas_ss_reset` leaves it (disarmed or disabled).
pub const NO_STACK: StackT = StackT { ss_sp: 0, ss_flags: SS_DISABLE, _pad: 0, ss_size: 0 };

/// The mask a handler runs with: `base`, plus its sa_mask, plus the signal
/// itself unless SA_NODEFER (the program's view: owned signals included).
fn handler_mask(sig: i32, app: &KernelSigaction, base: u64) -> u64 {
    let mut m = base | app.mask;
    if app.flags & SA_NODEFER == 0 {
        m |= bit(sig);
    }
    m & !SIGKILL_STOP
}

/// Run the program's handler for `sig` (not SIG_DFL/SIG_IGN), arriving with
/// `uc` as the interrupted state: entered after our handler returns, or
/// postponed if `uc` is the library's own code. `forced`: a fault of that
/// very code, which cannot wait (it would fault again): run the handler
/// here, as the library always did.
pub fn deliver(sig: i32, app: &KernelSigaction, info: &Siginfo, uc: &mut Ucontext, area: &ThreadArea, forced: bool) {
    if area.on_own_stack(uc.mc.rsp) {
        if forced {
            signals::run_handler_here(sig, app, info, uc, area);
        } else if area.draining.get() && SYNCHRONOUS & bit(sig) != 0 {
            // Our code is on its way back to the program, with every other
            // signal blocked (run_postponed): one that a fault can raise,
            // sent by kill, is queued again for the kernel to deliver at
            // that return (blocked until then in the state it interrupted).
            // (Others can only arrive here before the next handler of ours
            // clears `draining`: they are postponed for that handler.)
            resend(sig, info);
            uc.uc_sigmask |= bit(sig);
        } else if !postpone(sig, app, info, uc, area) {
            signals::run_handler_here(sig, app, info, uc, area);
        }
        return;
    }
    enter(sig, app, info, (false, 0), uc, area);
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
    signals::reset_hand_if_asked(sig, app, area);
    let view = area.app_blocked_owned.get();
    let interrupted_mask = (uc.uc_sigmask & !OWNED) | view;
    let running = handler_mask(sig, app, if temp_mask.0 { temp_mask.1 } else { interrupted_mask });

    // get_sigframe(): which stack, and whether the frame fits.
    let ss = area.app_altstack.get();
    let sp = uc.mc.rsp;
    let was_on_altstack = signals::on_stack(&ss, sp);
    let entering_altstack = app.flags & SA_ONSTACK != 0 && ss.ss_size != 0 && !was_on_altstack;
    let top = if entering_altstack { ss.ss_sp + ss.ss_size } else { sp - RED_ZONE };
    let fp_size = frame::fpstate_size(uc.mc.fpstate).unwrap_or(0) as u64;
    let fp_addr = top.wrapping_sub(fp_size) & !63;
    let frame_len = (8 + core::mem::size_of::<Ucontext>() + core::mem::size_of::<Siginfo>()) as u64;
    let frame_sp = (fp_addr.wrapping_sub(frame_len) & !15).wrapping_sub(8);
    let uc_addr = frame_sp + 8;
    let info_addr = uc_addr + core::mem::size_of::<Ucontext>() as u64;
    let fits = !(entering_altstack || was_on_altstack) || signals::on_stack(&StackT { ss_flags: 0, ..ss }, frame_sp);

    let mut saved = *uc;
    saved.uc_sigmask = interrupted_mask;
    saved.uc_stack = ss; // __save_altstack(): the setting as it is now
    saved.mc.fpstate = if fp_size != 0 { fp_addr } else { 0 };
    let written = if !fits || app.flags & SA_RESTORER == 0 {
        Err(raw::EFAULT) // x86-64 has no default restorer: the kernel fails too
    } else {
        raw::write_user(frame_sp, &app.restorer)
            .and_then(|_| raw::write_user(uc_addr, &saved))
            .and_then(|_| raw::write_user(info_addr, info))
            .and_then(|_| {
                if fp_size != 0 {
                    raw::copy_to_user(fp_addr as *mut u8, uc.mc.fpstate as *const u8, fp_size as usize)
                } else {
                    Ok(())
                }
            })
    };
    if written.is_err() {
        // force_sigsegv(): the frame could not be set up (a stack overflow,
        // most often: the classic case for SA_ONSTACK).
        signals::die_of_bad_frame();
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
        let app = signals::program_action_of(area, first.sig);
        match app.handler {
            0 => signals::default_action(first.sig, &first.info),
            1 => {} // ignored meanwhile: discarded
            _ => enter(first.sig, &app, &first.info, first.temp_mask, uc, area),
        }
    }
}

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
    if !crate::emulate::process::masks_forbidden() {
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
fn resend(sig: i32, info: &Siginfo) {
    let (pid, tid) = crate::rt::thread::ids();
    raw::syscall(libc::SYS_rt_tgsigqueueinfo, pid as u64, tid as u64, sig as u64, info as *const Siginfo as u64);
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
        saved.uc_stack = if area.on_own_stack(saved.mc.rsp) { NO_STACK } else { area.altstack.get() };
        if raw::write_user(uc_addr, &saved).is_ok() {
            // Signals postponed while this ran, and held-back owned signals
            // the frame's mask unblocks, are sent again, blocked until the
            // sigreturn below (no trap can happen in between: our syscalls
            // come from the gate): the kernel delivers them in the program,
            // as it would pending signals at a sigreturn. (Entering them here
            // would build their frames over the one being returned from.)
            // As in run_postponed: nothing is postponed from here on.
            block_async_signals();
            area.draining.set(true);
            let again = postponed_signals(area) | (signals::unblocked_deferred(area, mask) & OWNED);
            if again != 0 {
                raw::sigprocmask(libc::SIG_BLOCK, Some(again | OWNED));
                resend_postponed(area);
                signals::raise_unblocked(area, mask);
            }
        }
    }
    // SAFETY: rsp at the trap is the frame's ucontext, just above its
    // return-address slot; the kernel validates the frame it finds there.
    unsafe { arch::ut_sigreturn_at(uc_addr) }
}

/// restore_altstack(): sigreturn installs the frame's alternate stack, as
/// sigaltstack would at that point (`sp`: the stack pointer at the
/// sigreturn, in the handler's frame: refused if the handler ran on the
/// current alternate stack); errors are ignored.
fn restore_program_altstack(area: &ThreadArea, new: &StackT, sp: u64) {
    let cur = area.app_altstack.get();
    if signals::on_stack(&cur, sp) {
        return;
    }
    let _ = signals::set_program_altstack(area, new);
}
