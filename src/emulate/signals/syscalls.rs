//! The program's signal syscalls, answered against its view: rt_sigaction,
//! rt_sigprocmask, rt_sigpending, rt_sigtimedwait, sigaltstack, and the
//! calls that install a temporary mask (ppoll, pselect6, epoll_pwait(2),
//! rt_sigsuspend, io_pgetevents).
//! Never: change the kernel's view of an owned signal.

use super::delivery::kernel_action_for;
use super::state::{
    deferred_info, discard_held_back, on_stack, owned, raise_deferred, set_program_altstack, set_program_mask,
    with_table, OWNED_SIGNALS, SIGKILL, SIGSTOP, SIG_IGN, SS_DISABLE, SS_ONSTACK, UAPI_SA_FLAGS, UNBLOCKABLE,
};
use crate::rt::frame::{StackT, Ucontext};
use crate::rt::raw::{self, KernelSigaction};
use crate::rt::sigtable::{bit, AppAction, OWNED};
use crate::rt::thread::ThreadArea;
use crate::rt::thread::SS_AUTODISARM;
use crate::trap::syscalls::SigsetArg;

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
        let to_kernel = stored.map(|s| kernel_action_for(sig, &s));
        let r = with_table(table, |t| {
            let mut kold = KernelSigaction::default();
            // SAFETY: the program's own action (its handler, flags and mask),
            // made to return through our restorer by kernel_action_for
            // (rt::raw: forwarded program calls).
            if let Err(e) = unsafe { raw::rt_sigaction(sig, to_kernel.as_ref(), Some(&mut kold)) } {
                return Err(-e);
            }
            let slot = t.get_mut(sig as usize);
            let mut reported = kold;
            if let Some(slot) = slot {
                // The kernel still holds what we installed for the program:
                // report the program's own version (its mask, its restorer).
                let k = kernel_action_for(sig, &slot.act);
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
        // SAFETY: where the program asked the kernel to write the old action.
        if let Err(e) = unsafe { raw::write_user(old_ptr, &old) } {
            return -e;
        }
    }
    0
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
        let new = match how as i32 {
            libc::SIG_BLOCK => current | set,
            libc::SIG_UNBLOCK => current & !set,
            libc::SIG_SETMASK => set,
            _ => return -raw::EINVAL,
        } & !UNBLOCKABLE;
        set_program_mask(area, uc, new);
    }
    if old_ptr != 0 {
        // SAFETY: where the program asked the kernel to write the old mask.
        if let Err(e) = unsafe { raw::write_user(old_ptr, &current) } {
            return -e;
        }
    }
    0
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
                    // SAFETY: where the program asked for the siginfo.
                    if let Err(e) = unsafe { raw::write_user(info_ptr, &info) } {
                        return -e;
                    }
                }
                area.deferred.remove(bit(sig));
                return sig as i64;
            }
        }
    }
    // SAFETY: the program's own call (rt::raw: forwarded program calls).
    unsafe { raw::program_syscall6(libc::SYS_rt_sigtimedwait, args) }
}

/// Run a syscall that installs a temporary mask, with the owned signals
/// removed from that mask and kept in the program's view for the duration.
/// `sigset`: where the call keeps its mask (see trap::syscalls). An owned signal held
/// back for the program that the temporary mask unblocks is delivered now,
/// and the call returns EINTR, as a pending signal makes it natively.
#[inline(never)]
pub fn with_temp_mask(area: &ThreadArea, nr: i64, mut args: [u64; 6], sigset: SigsetArg) -> i64 {
    let SigsetArg { index: mask_arg, in_struct: indirect } = sigset;
    let (mask_ptr, size) = if indirect {
        let p = args.get(mask_arg).copied().unwrap_or(0);
        if p == 0 {
            // SAFETY: the program's own call (rt::raw: forwarded program calls).
            return unsafe { raw::program_syscall6(nr, args) };
        }
        match raw::read_user::<[u64; 2]>(p) {
            Ok(v) => (v[0], v[1]),
            // SAFETY: as above; the kernel reports EFAULT.
            Err(_) => return unsafe { raw::program_syscall6(nr, args) },
        }
    } else {
        (args.get(mask_arg).copied().unwrap_or(0), args.get(mask_arg + 1).copied().unwrap_or(0))
    };
    if mask_ptr == 0 || size != 8 {
        // SAFETY: the program's own call (rt::raw: forwarded program calls).
        return unsafe { raw::program_syscall6(nr, args) };
    }
    let temp = match raw::read_user::<u64>(mask_ptr) {
        Ok(m) => m,
        // SAFETY: as above.
        Err(_) => return unsafe { raw::program_syscall6(nr, args) },
    };
    let ready = area.deferred.get() & !temp;
    if ready != 0 {
        let view = area.app_blocked_owned.replace(temp & OWNED);
        raise_deferred(area, ready);
        area.app_blocked_owned.set(view);
        return -(libc::EINTR as i64);
    }
    let clean: u64 = temp & !OWNED;
    let pair: [u64; 2] = [(&raw const clean) as u64, 8];
    if let Some(a) = args.get_mut(mask_arg) {
        *a = if indirect { pair.as_ptr() as u64 } else { (&raw const clean) as u64 };
    }
    let view = area.app_blocked_owned.replace(temp & OWNED);
    let outer_temp = area.temp_mask.replace((true, temp));
    // SAFETY: the program's own call (rt::raw: forwarded program calls), its
    // mask argument pointing at `clean` (or `pair`, which points at it): ours,
    // alive until after the call, and only read by the kernel.
    let r = unsafe { raw::program_syscall6(nr, args) };
    area.temp_mask.set(outer_temp);
    area.app_blocked_owned.set(view);
    // Keep the locals alive until the syscall has used them.
    core::hint::black_box((&clean, &pair));
    r
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
pub fn rt_sigpending(area: &ThreadArea, args: [u64; 6]) -> i64 {
    if args[1] != 8 {
        return -raw::EINVAL;
    }
    let set = raw::rt_sigpending() | area.deferred.get();
    // SAFETY: where the program asked the kernel to write the set.
    match unsafe { raw::write_user(args[0], &set) } {
        Ok(()) => 0,
        Err(e) => -e,
    }
}
