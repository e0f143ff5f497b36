//! The program's signal syscalls, answered against its view: rt_sigaction,
//! rt_sigprocmask, rt_sigpending, rt_sigtimedwait, sigaltstack, and the
//! calls that install a temporary mask (ppoll, pselect6, epoll_pwait(2),
//! rt_sigsuspend, io_pgetevents).
//! Never: change the kernel's view of an owned signal.

use super::delivery::kernel_action_for;
use super::state::{
    deferred_info, discard_held_back, on_stack, owned, raise_deferred, set_program_altstack, set_program_mask,
    with_table_from, OWNED_SIGNALS, SIGKILL, SIGSTOP, SIG_IGN, SS_DISABLE, SS_ONSTACK, UAPI_SA_FLAGS, UNBLOCKABLE,
};
use crate::rt::frame::{StackT, Ucontext};
use crate::rt::raw::{self, KernelSigaction};
use crate::rt::sigtable::{action_of, bit, seq_now, seq_settled, AppAction, SigTable, OWNED};
use crate::rt::thread::ThreadArea;
use crate::rt::thread::SS_AUTODISARM;
use crate::trap::syscalls::{uring_enter_sigset, SigsetArg, SigsetAt};

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
    let table = area.sigtable.get();
    let Some(stored) = new.as_ref().map(as_kernel_stores) else {
        // A query changes nothing: no lock, no mask change (see `query`).
        let old = match query(table, sig) {
            Ok(o) => o,
            Err(e) => return e,
        };
        return write_old_action(old_ptr, &old);
    };
    let old = if owned(sig) {
        let old = with_table_from(area, table, |t| {
            let slot = t.get_mut(sig as usize);
            match slot {
                Some(slot) => {
                    let old = slot.act;
                    *slot = AppAction { act: stored, known: true };
                    old
                }
                None => KernelSigaction::default(),
            }
        });
        // SIG_IGN discards a pending instance (POSIX; the kernel does so for
        // signals it holds). The owned signals' default action is never to
        // ignore, so SIG_DFL discards nothing.
        if stored.handler == SIG_IGN {
            discard_held_back(table, sig);
        }
        old
    } else {
        // The kernel keeps the real disposition; it just never gets an owned
        // signal in sa_mask, and under SUD returns through the gate's restorer.
        let to_kernel = kernel_action_for(sig, &stored);
        let r = with_table_from(area, table, |t| {
            let mut kold = KernelSigaction::default();
            // SAFETY: the program's own action (its handler, flags and mask),
            // made to return through our restorer by kernel_action_for
            // (rt::raw: forwarded program calls).
            if let Err(e) = unsafe { raw::rt_sigaction(sig, Some(&to_kernel), Some(&mut kold)) } {
                return Err(-e);
            }
            let slot = t.get_mut(sig as usize);
            let mut reported = kold;
            if let Some(slot) = slot {
                reported = shown(sig, &kold, slot);
                *slot = AppAction { act: stored, known: true };
            }
            Ok(reported)
        });
        match r {
            Ok(o) => o,
            Err(e) => return e,
        }
    };
    write_old_action(old_ptr, &old)
}

/// rt_sigaction's last step: the old action where the program asked for it.
fn write_old_action(old_ptr: u64, old: &KernelSigaction) -> i64 {
    if old_ptr != 0 {
        // SAFETY: where the program asked the kernel to write the old action.
        if let Err(e) = unsafe { raw::write_user(old_ptr, old) } {
            return -e;
        }
    }
    0
}

/// What the program is shown of the kernel's action `kold` for a signal it
/// does not own: while the kernel still holds what we installed for the
/// program (`slot`), the program's own version (its mask, its restorer).
fn shown(sig: i32, kold: &KernelSigaction, slot: &AppAction) -> KernelSigaction {
    let k = kernel_action_for(sig, &slot.act);
    if slot.known && k.handler == kold.handler && k.flags == kold.flags {
        slot.act
    } else {
        *kold
    }
}

/// rt_sigaction without a new action: the old one, read without the table's
/// lock and without changing the mask (posix_spawn's child asks about every
/// signal: 64 queries per child, one syscall each instead of five on the
/// fast path). The kernel's answer and the table's entry must belong
/// together: the table's write sequence is read before and after, and any
/// write in between (another thread's, or a handler of this thread that
/// interrupted the query) makes it read both again. The answer is then the
/// state at the kernel's query; a handler that runs after it and changes
/// the disposition is, as natively, one that ran after the call. Err: the
/// kernel's error, negated.
fn query(table: *mut SigTable, sig: i32) -> Result<KernelSigaction, i64> {
    loop {
        let before = seq_settled(table);
        let old = if owned(sig) {
            action_of(table, sig).act
        } else {
            let mut kold = KernelSigaction::default();
            // SAFETY: only reads the action (rt::raw: forwarded program calls).
            if let Err(e) = unsafe { raw::rt_sigaction(sig, None, Some(&mut kold)) } {
                return Err(-e);
            }
            shown(sig, &kold, &action_of(table, sig))
        };
        if seq_now(table) == before {
            return Ok(old);
        }
    }
}

/// What the kernel stores of a new action (do_sigaction()): the flags it
/// knows only (so a program can probe for one, sigaction(2)), never SIGKILL
/// or SIGSTOP in sa_mask.
fn as_kernel_stores(a: &KernelSigaction) -> KernelSigaction {
    KernelSigaction { flags: a.flags & UAPI_SA_FLAGS, mask: a.mask & !UNBLOCKABLE, ..*a }
}

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
        match next_mask(how as i32, current, set) {
            Ok(new) => set_program_mask(area, uc, new),
            Err(e) => return -e,
        }
    }
    if old_ptr != 0 {
        // SAFETY: where the program asked the kernel to write the old mask.
        if let Err(e) = unsafe { raw::write_user(old_ptr, &current) } {
            return -e;
        }
    }
    0
}

/// sigprocmask()'s new mask from the current one (kernel/signal.c):
/// Err(EINVAL) for an unknown `how`; SIGKILL and SIGSTOP are never blocked.
pub(super) fn next_mask(how: i32, current: u64, set: u64) -> Result<u64, i64> {
    let new = match how {
        libc::SIG_BLOCK => current | set,
        libc::SIG_UNBLOCK => current & !set,
        libc::SIG_SETMASK => set,
        _ => return Err(raw::EINVAL),
    };
    Ok(new & !UNBLOCKABLE)
}

/// rt_sigtimedwait: an owned signal held back for the program is taken first;
/// otherwise the kernel waits.
pub fn rt_sigtimedwait(area: &ThreadArea, args: [u64; 6]) -> i64 {
    let (set_ptr, info_ptr, timeout_ptr, size) = (args[0], args[1], args[2], args[3]);
    // The kernel's order: the timeout is read and checked before a signal
    // is taken, the siginfo written after (a bad pointer there costs the
    // signal).
    if size == 8 && timeout_usable(timeout_ptr) {
        if let Ok(set) = raw::read_user::<u64>(set_ptr) {
            let ready = set & area.deferred.get();
            if let Some(&sig) = OWNED_SIGNALS.iter().find(|&&s| ready & bit(s) != 0) {
                let info = deferred_info(area, sig);
                area.deferred.remove(bit(sig));
                if info_ptr != 0 {
                    // SAFETY: where the program asked for the siginfo.
                    if let Err(e) = unsafe { raw::write_user(info_ptr, &info) } {
                        return -e;
                    }
                }
                return sig as i64;
            }
        }
    }
    // SAFETY: the program's own call (rt::raw: forwarded program calls).
    unsafe { raw::program_syscall6(libc::SYS_rt_sigtimedwait, args) }
}

/// Whether rt_sigtimedwait's timeout (`ptr`, 0: none) is one the kernel
/// takes: readable, tv_sec >= 0, tv_nsec in [0, 1e9). Otherwise the call is
/// left to the kernel, which refuses it (EFAULT, EINVAL) and takes nothing.
fn timeout_usable(ptr: u64) -> bool {
    ptr == 0 || raw::read_user::<[i64; 2]>(ptr).is_ok_and(|[sec, nsec]| sec >= 0 && (0..1_000_000_000).contains(&nsec))
}

/// Run a syscall that installs a temporary mask, with the owned signals
/// removed from that mask and kept in the program's view for the duration.
/// `sigset`: where the call keeps its mask (see trap::syscalls). An owned signal held
/// back for the program that the temporary mask unblocks is delivered now,
/// and the call returns EINTR, as a pending signal makes it natively. One
/// held back during the call does not end it (`wait_again`), and is let in
/// after it when the program's own mask does not block it.
#[inline(never)]
pub fn with_temp_mask(area: &ThreadArea, nr: i64, args: [u64; 6], sigset: SigsetArg) -> i64 {
    let Some((temp, rest)) = temp_mask_arg(&args, sigset) else {
        // SAFETY: the program's own call (rt::raw: forwarded program calls);
        // the kernel reports what was wrong with its sigset argument.
        return unsafe { raw::program_syscall6(nr, args) };
    };
    let ready = area.deferred.get() & !temp;
    if ready != 0 {
        let view = area.app_blocked_owned.replace(temp & OWNED);
        raise_deferred(area, ready);
        area.app_blocked_owned.set(view);
        return -(libc::EINTR as i64);
    }
    let view = area.app_blocked_owned.replace(temp & OWNED);
    let outer_temp = area.temp_mask.replace((true, temp));
    let waiting = area.postponed_len.get();
    let r = with_clean_mask(args, sigset, temp, rest, |args| loop {
        area.wait_held.set(false);
        // SAFETY: the program's own call (rt::raw: forwarded program calls),
        // its mask argument pointing at with_clean_mask's copy (ours, alive
        // until after the call, and only read by the kernel).
        let r = unsafe { raw::program_syscall6(nr, args) };
        if !wait_again(r, area.postponed_len.get() != waiting, area) {
            break r;
        }
    });
    area.temp_mask.set(outer_temp);
    area.app_blocked_owned.set(view);
    if area.postponed_len.get() == waiting {
        // Owned signals held back during the wait that the program's own
        // mask does not block: natively let in as the call restores that
        // mask, before the program sees the result (raised now, they are
        // postponed and entered as our handler returns). If a handler is
        // postponed (it ended the wait, or arrived after it), its
        // sigreturn lets them in, as natively (delivery::sigreturn).
        raise_deferred(area, area.deferred.get() & !view);
    }
    r
}

/// Whether a wait with a temporary mask that returned `r` must wait again:
/// it ended with EINTR, no program handler ran for it (`handled`: one did),
/// and an owned signal was held back meanwhile (`ThreadArea::wait_held`):
/// natively the kernel would not have interrupted the wait for that signal,
/// which the temporary mask (or the program's mask, or SIG_IGN) keeps from
/// it; our handler, which the kernel ran, did. ppoll and pselect6 wrote the
/// time left into the program's timeout, and wait that long, as natively
/// when the kernel restarts them; the others wait their whole timeout again.
pub(super) fn wait_again(r: i64, handled: bool, area: &ThreadArea) -> bool {
    r == -(libc::EINTR as i64) && !handled && area.wait_held.get()
}

/// Run `call` with the arguments of a call whose temporary mask `temp`
/// (`sigset`: where; `rest`: the words after the mask pointer in the
/// structure that holds it, as temp_mask_arg read them) is rewritten to a
/// copy of ours without the owned signals: the kernel must never block
/// those. Integer stores only (the fast path runs it: no vector register).
#[inline(always)]
pub(super) fn with_clean_mask(
    mut args: [u64; 6],
    sigset: SigsetArg,
    temp: u64,
    rest: [u64; 2],
    call: impl FnOnce([u64; 6]) -> i64,
) -> i64 {
    let clean: u64 = temp & !OWNED;
    // The structure the call reads, the mask pointer ours, the rest the
    // program's (the size; io_uring's minimum wait and timeout).
    let mut holder: [u64; 3] = [0; 3];
    for (slot, word) in holder.iter_mut().zip([(&raw const clean) as u64, rest[0], rest[1]]) {
        // SAFETY: a local of ours; volatile, one word at a time, so that no
        // vector store builds the structure.
        unsafe { core::ptr::write_volatile(slot, word) };
    }
    if let Some(a) = args.get_mut(sigset.index) {
        *a = match sigset.at {
            SigsetAt::Args => (&raw const clean) as u64,
            SigsetAt::Pair | SigsetAt::GeteventsArg => holder.as_ptr() as u64,
        };
    }
    let r = call(args);
    // Keep the locals alive until the syscall has used them.
    core::hint::black_box((&clean, &holder));
    r
}

/// io_uring_enter: a wait installs a temporary mask (where:
/// trap::syscalls::uring_enter_sigset), as with_temp_mask runs it; any
/// other call runs as it is.
pub fn io_uring_enter(area: &ThreadArea, args: [u64; 6]) -> i64 {
    match uring_enter_sigset(&args) {
        Some(sigset) => with_temp_mask(area, libc::SYS_io_uring_enter, args, sigset),
        // SAFETY: the program's own call (rt::raw: forwarded program calls).
        None => unsafe { raw::program_syscall6(libc::SYS_io_uring_enter, args) },
    }
}

/// Whether io_uring_enter with `args` installs a temporary mask that
/// with_temp_mask must adjust (the fast path sends those to the slow path).
pub fn io_uring_enter_masks(args: &[u64; 6]) -> bool {
    uring_enter_sigset(args).is_some_and(|sigset| temp_mask_arg(args, sigset).is_some())
}

/// The temporary mask a call passes (`sigset`: where), read from program
/// memory, and the words after the mask pointer in the structure that holds
/// it (for a copy); None when there is none to adjust: no mask, a size
/// other than 8 (or a structure size other than the kernel's), or
/// unreadable (the kernel then answers as natively, EINVAL or EFAULT).
pub(super) fn temp_mask_arg(args: &[u64; 6], sigset: SigsetArg) -> Option<(u64, [u64; 2])> {
    let SigsetArg { index, at } = sigset;
    let arg = args.get(index).copied().unwrap_or(0);
    let next = args.get(index + 1).copied().unwrap_or(0);
    let (mask_ptr, size, rest) = match at {
        SigsetAt::Args => (arg, next, [0, 0]),
        SigsetAt::Pair => {
            if arg == 0 {
                return None;
            }
            let v = raw::read_user::<[u64; 2]>(arg).ok()?;
            (v[0], v[1], [v[1], 0])
        }
        SigsetAt::GeteventsArg => {
            // io_get_ext_arg: the structure's exact size, else EINVAL.
            if arg == 0 || next != 24 {
                return None;
            }
            let v = raw::read_user::<[u64; 3]>(arg).ok()?;
            // sigmask_sz is the low half of the second word.
            (v[0], v[1] as u32 as u64, [v[1], v[2]])
        }
    };
    if mask_ptr == 0 || size != 8 {
        return None;
    }
    raw::read_user::<u64>(mask_ptr).ok().map(|m| (m, rest))
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
        // SAFETY: where the program asked the kernel to write the old stack.
        if let Err(e) = unsafe { raw::write_user(old_ptr, &old) } {
            return -e;
        }
    }
    0
}

/// rt_sigpending: the kernel's pending set plus owned signals held back for
/// the program.
/// Like the kernel, any size up to 8 is taken and that many bytes written.
pub fn rt_sigpending(area: &ThreadArea, args: [u64; 6]) -> i64 {
    let set = (raw::rt_sigpending() | area.deferred.get()).to_ne_bytes();
    let Some(bytes) = usize::try_from(args[1]).ok().and_then(|n| set.get(..n)) else {
        return -raw::EINVAL;
    };
    // SAFETY: where the program asked the kernel to write the set.
    match unsafe { raw::copy_to_user(args[0], bytes) } {
        Ok(()) => 0,
        Err(e) => -e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::frame::Siginfo;
    use crate::rt::thread::test_area;
    use crate::trap::syscalls::{EPOLL_PWAIT_MASK, PPOLL_MASK, PSELECT6_MASK, SIGSUSPEND_MASK, URING_ENTER_EXT_MASK};

    const USR1: u64 = bit(libc::SIGUSR1);
    const USR2: u64 = bit(libc::SIGUSR2);
    const SYS: u64 = bit(libc::SIGSYS);
    const KILL_STOP: u64 = bit(libc::SIGKILL) | bit(libc::SIGSTOP);

    #[test]
    fn a_wait_goes_on_only_for_a_held_owned_signal() {
        let a = test_area();
        let eintr = -(libc::EINTR as i64);
        // Nothing held: an EINTR of the kernel's own (a stop) is the
        // program's, as natively.
        assert!(!wait_again(eintr, false, &a));
        a.wait_held.set(true);
        assert!(wait_again(eintr, false, &a));
        // A program handler ended the wait: EINTR, as natively.
        assert!(!wait_again(eintr, true, &a));
        // Any other result ends it.
        for r in [0, 1, -(libc::EFAULT as i64), -(libc::EINVAL as i64)] {
            assert!(!wait_again(r, false, &a), "result {r}");
        }
    }

    #[test]
    fn next_mask_per_how() {
        // include/uapi/asm-generic/signal-defs.h
        assert_eq!((libc::SIG_BLOCK, libc::SIG_UNBLOCK, libc::SIG_SETMASK), (0, 1, 2));
        let cur = USR1 | SYS;
        assert_eq!(next_mask(0, cur, USR2), Ok(cur | USR2));
        assert_eq!(next_mask(1, cur, USR1 | USR2), Ok(SYS));
        assert_eq!(next_mask(2, cur, USR2), Ok(USR2));
        assert_eq!(next_mask(2, cur, 0), Ok(0));
        for how in [-1, 3, 4, i32::MAX, i32::MIN] {
            assert_eq!(next_mask(how, cur, USR2), Err(raw::EINVAL), "how {how}");
        }
        // SIGKILL and SIGSTOP cannot be blocked (sigprocmask(2)), silently.
        assert_eq!(next_mask(0, 0, !0), Ok(!KILL_STOP));
        assert_eq!(next_mask(2, 0, KILL_STOP | USR1), Ok(USR1));
        assert_eq!(next_mask(1, !KILL_STOP, 0), Ok(!KILL_STOP));
    }

    #[test]
    fn kernel_stores_known_flags_and_a_blockable_mask() {
        // include/uapi/asm-generic/signal-defs.h and arch/x86 (SA_RESTORER):
        // the flags do_sigaction() keeps (UAPI_SA_FLAGS).
        let known: u64 = 0x1 // SA_NOCLDSTOP
            | 0x2 // SA_NOCLDWAIT
            | 0x4 // SA_SIGINFO
            | 0x800 // SA_EXPOSE_TAGBITS
            | 0x0400_0000 // SA_RESTORER
            | 0x0800_0000 // SA_ONSTACK
            | 0x1000_0000 // SA_RESTART
            | 0x4000_0000 // SA_NODEFER
            | 0x8000_0000; // SA_RESETHAND
        let a = KernelSigaction { handler: 0x1234, flags: !0, restorer: 0x5678, mask: !0 };
        let s = as_kernel_stores(&a);
        assert_eq!(s.flags, known);
        assert_eq!(s.mask, !KILL_STOP);
        assert_eq!((s.handler, s.restorer), (0x1234, 0x5678));
        // sigaction(2), "Dynamically probing for flag bit support": the
        // kernel clears SA_UNSUPPORTED (0x400), so the old action read back
        // shows whether a flag is supported.
        let probe = KernelSigaction { flags: 0x400 | 0x4, ..a };
        assert_eq!(as_kernel_stores(&probe).flags, 0x4);
        // The kernel's internal x86 ABI flags are not the program's to set.
        let internal = KernelSigaction { flags: 0x0200_0000 | 0x0100_0000, ..a };
        assert_eq!(as_kernel_stores(&internal).flags, 0);
    }

    #[test]
    fn sigprocmask_against_the_program_view() {
        let a = test_area();
        let mut uc = Ucontext { uc_sigmask: USR1, ..Default::default() };
        a.app_blocked_owned.set(SYS);
        let mut old: u64 = 0;
        let set: u64 = SYS | USR2;
        let args = |how: i64, set: u64, old: u64, size: u64| [how as u64, set, old, size, 0, 0];
        let p = |v: &u64| core::ptr::from_ref(v) as u64;
        let pm = |v: &mut u64| core::ptr::from_mut(v) as u64;

        // The old mask is the program's view, owned signals included.
        assert_eq!(rt_sigprocmask(&a, &mut uc, args(1, p(&set), pm(&mut old), 8)), 0);
        assert_eq!(old, USR1 | SYS);
        assert_eq!((uc.uc_sigmask, a.app_blocked_owned.get()), (USR1, 0));

        assert_eq!(rt_sigprocmask(&a, &mut uc, args(0, p(&set), pm(&mut old), 8)), 0);
        assert_eq!(old, USR1);
        assert_eq!((uc.uc_sigmask, a.app_blocked_owned.get()), (USR1 | USR2, SYS));

        // EINVAL for a sigsetsize other than 8, or an unknown how with a
        // set; nothing changes.
        assert_eq!(rt_sigprocmask(&a, &mut uc, args(2, p(&set), 0, 16)), -raw::EINVAL);
        assert_eq!(rt_sigprocmask(&a, &mut uc, args(3, p(&set), 0, 8)), -raw::EINVAL);
        assert_eq!((uc.uc_sigmask, a.app_blocked_owned.get()), (USR1 | USR2, SYS));
        // Without a set, `how` is not looked at (kernel/signal.c): just the
        // old mask.
        old = 0;
        assert_eq!(rt_sigprocmask(&a, &mut uc, args(99, 0, pm(&mut old), 8)), 0);
        assert_eq!(old, USR1 | USR2 | SYS);
        // `how` is an int: the upper half of the register does not count.
        let all: u64 = !0;
        assert_eq!(rt_sigprocmask(&a, &mut uc, args(2 | (1 << 32), p(&all), 0, 8)), 0);
        assert_eq!(uc.uc_sigmask, !(OWNED | KILL_STOP));
        assert_eq!(a.app_blocked_owned.get(), OWNED);
    }

    #[test]
    fn temp_mask_where_each_call_keeps_it() {
        let mask: u64 = USR1 | SYS;
        let m = (&raw const mask) as u64;
        // rt_sigsuspend(mask, size), ppoll(.., mask, size), epoll_pwait(.., mask, size).
        let m_of = |args: [u64; 6], sigset| temp_mask_arg(&args, sigset).map(|(m, _)| m);
        assert_eq!(m_of([m, 8, 0, 0, 0, 0], SIGSUSPEND_MASK), Some(mask));
        assert_eq!(m_of([0, 0, 0, m, 8, 0], PPOLL_MASK), Some(mask));
        assert_eq!(m_of([0, 0, 0, 0, m, 8], EPOLL_PWAIT_MASK), Some(mask));
        // No mask, or a size the kernel refuses: left to the kernel.
        assert_eq!(temp_mask_arg(&[0, 0, 0, 0, 0, 8], PPOLL_MASK), None);
        assert_eq!(temp_mask_arg(&[0, 0, 0, m, 16, 0], PPOLL_MASK), None);
        // pselect6's last argument points to {mask pointer, size}.
        let pair: [u64; 2] = [m, 8];
        let pp = pair.as_ptr() as u64;
        assert_eq!(temp_mask_arg(&[0, 0, 0, 0, 0, pp], PSELECT6_MASK), Some((mask, [8, 0])));
        assert_eq!(temp_mask_arg(&[0, 0, 0, 0, 0, 0], PSELECT6_MASK), None);
        // io_uring_enter with IORING_ENTER_EXT_ARG: a struct
        // io_uring_getevents_arg of 24 bytes (the size is the next argument),
        // the mask's size a u32 beside min_wait_usec, the timeout kept.
        let ext: [u64; 3] = [m, 8 | (50 << 32), 0x7000];
        let ep = ext.as_ptr() as u64;
        assert_eq!(temp_mask_arg(&[3, 0, 1, 9, ep, 24], URING_ENTER_EXT_MASK), Some((mask, [8 | (50 << 32), 0x7000])));
        assert_eq!(temp_mask_arg(&[3, 0, 1, 9, ep, 16], URING_ENTER_EXT_MASK), None);
        let ext_bad: [u64; 3] = [m, 4, 0];
        assert_eq!(temp_mask_arg(&[3, 0, 1, 9, ext_bad.as_ptr() as u64, 24], URING_ENTER_EXT_MASK), None);
        assert!(io_uring_enter_masks(&[3, 0, 1, 9, ep, 24]));
        assert!(io_uring_enter_masks(&[3, 0, 1, 1, m, 8]));
        assert!(!io_uring_enter_masks(&[3, 0, 1, 0, m, 8]), "no wait: no mask");
        assert!(!io_uring_enter_masks(&[3, 0, 1, 1, 0, 8]), "no mask given");
        let no_mask: [u64; 2] = [0, 8];
        assert_eq!(temp_mask_arg(&[0, 0, 0, 0, 0, no_mask.as_ptr() as u64], PSELECT6_MASK), None);
        let bad_size: [u64; 2] = [m, 4];
        assert_eq!(temp_mask_arg(&[0, 0, 0, 0, 0, bad_size.as_ptr() as u64], PSELECT6_MASK), None);
    }

    #[test]
    fn sigaltstack_old_value_and_eperm() {
        let a = test_area();
        let mut old = StackT::default();
        let old_ptr = (&raw mut old) as u64;
        // None set: SS_DISABLE.
        assert_eq!(sigaltstack(&a, 0x1234, [0, old_ptr, 0, 0, 0, 0]), 0);
        assert!(old == StackT { ss_sp: 0, ss_flags: SS_DISABLE, _pad: 0, ss_size: 0 });
        let new = StackT { ss_sp: 0x10000, ss_flags: 0, _pad: 0, ss_size: 0x4000 };
        assert_eq!(sigaltstack(&a, 0x1234, [(&raw const new) as u64, 0, 0, 0, 0, 0]), 0);
        // Off it: flags 0; on it: SS_ONSTACK, and no change allowed (EPERM).
        assert_eq!(sigaltstack(&a, 0x1234, [0, old_ptr, 0, 0, 0, 0]), 0);
        assert!(old == new);
        let other = StackT { ss_sp: 0x90000, ..new };
        let other_ptr = (&raw const other) as u64;
        assert_eq!(sigaltstack(&a, 0x12000, [other_ptr, old_ptr, 0, 0, 0, 0]), -raw::EPERM);
        assert!(old == new, "on an error the old value is not written (the kernel's sigaltstack)");
        assert!(a.app_altstack.get() == new);
        assert_eq!(sigaltstack(&a, 0x12000, [0, old_ptr, 0, 0, 0, 0]), 0);
        assert!(old == StackT { ss_flags: SS_ONSTACK, ..new });
        // SS_AUTODISARM is reported back; such a stack never counts as in use.
        let auto = StackT { ss_flags: SS_AUTODISARM, ..new };
        assert_eq!(sigaltstack(&a, 0x1234, [(&raw const auto) as u64, 0, 0, 0, 0, 0]), 0);
        assert_eq!(sigaltstack(&a, 0x12000, [0, old_ptr, 0, 0, 0, 0]), 0);
        assert!(old == auto);
    }

    #[test]
    fn sigtimedwait_takes_a_held_back_owned_signal() {
        let a = test_area();
        let held = Siginfo { si_signo: libc::SIGSEGV, si_code: 2, addr: 0xdead, ..Default::default() };
        super::super::state::defer(&a, libc::SIGSEGV, &held);
        let set: u64 = bit(libc::SIGSEGV) | USR1;
        let mut info = Siginfo::default();
        let args = [(&raw const set) as u64, (&raw mut info) as u64, 0, 8, 0, 0];
        assert_eq!(rt_sigtimedwait(&a, args), libc::SIGSEGV as i64);
        assert_eq!((info.si_signo, info.si_code, info.addr), (libc::SIGSEGV, 2, 0xdead));
        assert_eq!(a.deferred.get(), 0, "taken: no longer pending");
    }
}
