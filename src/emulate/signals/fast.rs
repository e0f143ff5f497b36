//! The program's signal syscalls on the fast path: rt_sigprocmask,
//! rt_sigaction and sigaltstack from a patched site, without a signal frame.
//!
//! On the slow path these run inside our SIGSYS handler, which makes them
//! atomic for free: a signal that arrives meanwhile interrupts the library's
//! code and is postponed until the handler is done (delivery.rs), and the
//! program's new mask is the one our sigreturn restores (`uc_sigmask`). On
//! the fast path there is no frame, and signals arrive at any instruction.
//! The program's signal state (the kernel's mask without the owned signals,
//! its view of the owned ones `app_blocked_owned`, the disposition table,
//! its alternate stack, and what the call writes back to its memory) must
//! still change at one instant, seen by every handler either wholly before
//! or wholly after, as the kernel's own syscall does. How [`atomically`]
//! does it, in four steps:
//!
//! 1. `fast_old := FAST_UNCOMMITTED`, `fast_window := FAST_ARMING`. A
//!    signal arriving now is handled as always: nothing has changed yet,
//!    and `uc` shows the kernel's real mask. (A program handler entered
//!    here returns before we go on, or never: either way this is "before".)
//! 2. rt_sigprocmask(SIG_SETMASK, every signal but the owned ones,
//!    old = &fast_old). The kernel writes the old mask into `fast_old`
//!    before it returns, so from the instant the block takes effect
//!    `fast_old` is a real mask (never with SIGKILL) and
//!    `state::fast_holding` is true: the commit point. From here no
//!    signal but an owned one can arrive (the kernel would kill us for a
//!    blocked fault: the owned signals stay deliverable). One that does
//!    is not the program's to see yet: `entered_from_program` says our
//!    handler is not the outermost, and `deliver` postpones it (a fault of
//!    our own copies still reaches its fixup). Nothing of the program runs
//!    until step 4; the state is read, computed and written here, program
//!    memory included (a fault there is one of our copies': -EFAULT).
//! 3. `fast_done := FAST_UNCOMMITTED`, `fast_window := FAST_FINAL`, then
//!    rt_sigprocmask(SIG_SETMASK, K, old = &fast_done), K the kernel's mask
//!    the program ends with. Until the kernel has written `fast_done`
//!    (while the kernel's mask is still step 2's, so only an owned signal
//!    can arrive) signals are still held; from that write on, the
//!    program's whole new state is in force, and signals are handled as
//!    always (one that K lets through arrives at the syscall's return, as
//!    natively; a program handler entered then may change the mask it
//!    returns to, and nothing here touches the mask again).
//!    Skipped when K is step 2's mask (the program ends with every signal
//!    blocked, as posix_spawn's parent around its child and the child until
//!    its exec): the program's new state is whole when step 2's body is
//!    done, and signals are held until step 4 as in step 3.
//! 4. `fast_window` (and the two masks) as before step 1. Signals held in
//!    steps 2 and 3 are sent again, with every signal blocked while they
//!    are taken from the list (no handler can take them twice) and the
//!    mask in force then put back; they arrive after the call, as natively
//!    a signal does that arrived during it. Owned signals the program had
//!    held back and the new mask unblocks are raised last, as the slow
//!    path does.
//!
//! An rt_sigaction that only asks (no new action) changes no state: it
//! needs no window (syscalls::query reads the kernel's action and the table
//! against the table's write sequence), one syscall as natively. One that
//! sets an action writes the table in step 2 without blocking the owned
//! signals (state::with_table_from): one that arrives then is postponed
//! without reading the table.
//!
//! Nesting: a program handler entered in step 1 (before the commit) or
//! after step 3's commit may make these calls itself; each saves and
//! restores the window state of the one it interrupts. A handler that
//! never returns (siglongjmp) leaves a state that holds nothing (step 1
//! uncommitted, or step 3 committed).
//!
//! exit and exit_group use steps 1 and 2 only ([`ending`]): the calls end
//! the thread or the process inside the window.
//!
//! If the program's seccomp filter forbids rt_sigprocmask from the gate
//! (`state::masks_forbidden`), these numbers go back to the slow path
//! (`forbid_fast_masks`).
//!
//! Never: run a program handler between the two commits.

use core::sync::atomic::{compiler_fence, Ordering};

use super::delivery;
use super::state::{masks_forbidden, raise_deferred, UNBLOCKABLE};
use super::syscalls;
use crate::rt::raw;
use crate::rt::sigtable::OWNED;
use crate::rt::thread::{ThreadArea, FAST_ARMING, FAST_FINAL, FAST_UNCOMMITTED};
use crate::trap::syscalls::SigsetArg;

/// Everything the kernel lets a mask block but the owned signals.
const HOLD_MASK: u64 = !(OWNED | UNBLOCKABLE);

/// rt_sigprocmask from a patched site: as `syscalls::rt_sigprocmask` does on
/// the slow path (the same rules), with the kernel's mask changed here.
pub fn rt_sigprocmask(area: &ThreadArea, args: [u64; 6]) -> i64 {
    let (how, set_ptr, old_ptr, size) = (args[0] as i32, args[1], args[2], args[3]);
    if size != 8 {
        return -raw::EINVAL;
    }
    let outcome = atomically(area, |kernel| {
        let current = (kernel & !OWNED) | area.app_blocked_owned.get();
        let mut new = current;
        if set_ptr != 0 {
            let set: u64 = match raw::read_user(set_ptr) {
                Ok(s) => s,
                Err(e) => return ((-e, current), kernel),
            };
            match syscalls::next_mask(how, current, set) {
                Ok(n) => new = n,
                Err(e) => return ((-e, current), kernel),
            }
            area.app_blocked_owned.set(new & OWNED);
        }
        let mut r = 0;
        if old_ptr != 0 {
            // SAFETY: where the program asked the kernel to write the old mask.
            if let Err(e) = unsafe { raw::write_user(old_ptr, &current) } {
                r = -e;
            }
        }
        ((r, new), new & !OWNED)
    });
    let (r, new) = match outcome {
        Ok(v) => v,
        Err(e) => return -e,
    };
    let ready = area.deferred.get() & !new;
    if ready & ready.wrapping_sub(1) != 0 && !masks_forbidden() {
        // Several let in at once are queued while blocked and then let in
        // together: the kernel delivers them in its own order (the lowest
        // first, the handler of the last one delivered running first), as
        // natively when an unblock lets in several pending signals; one by
        // one, each handler ran to its end before the next was sent. No
        // fault can come meanwhile (only the queueing runs).
        let before = raw::sigprocmask(libc::SIG_BLOCK, Some(ready));
        raise_deferred(area, ready);
        raw::sigprocmask(libc::SIG_SETMASK, Some(before));
    } else {
        raise_deferred(area, ready);
    }
    r
}

/// rt_sigaction from a patched site: `syscalls::rt_sigaction`, made atomic.
/// A query (no new action) changes nothing and is atomic by itself
/// (syscalls::query): it needs no window.
pub fn rt_sigaction(area: &ThreadArea, args: [u64; 6]) -> i64 {
    if args[1] == 0 {
        return syscalls::rt_sigaction(area, args);
    }
    atomically(area, |kernel| (syscalls::rt_sigaction(area, args), kernel)).unwrap_or_else(|e| -e)
}

/// sigaltstack from a patched site; `sp`: the program's stack pointer at
/// the call.
pub fn sigaltstack(area: &ThreadArea, sp: u64, args: [u64; 6]) -> i64 {
    atomically(area, |kernel| (syscalls::sigaltstack(area, sp, args), kernel)).unwrap_or_else(|e| -e)
}

/// ppoll, pselect6, epoll_pwait(2), rt_sigsuspend and io_pgetevents from a
/// patched site, on the thread's own fast-path stack (`link`: the call's
/// link there). None: declined to the slow path (an owned signal held
/// back for the program that the temporary mask unblocks: the slow path
/// delivers it and answers EINTR).
///
/// No window is needed, unlike the calls above: nothing of the program's
/// state changes. The kernel installs the temporary mask (the owned
/// signals taken out, as on the slow path: syscalls::with_clean_mask) for
/// the wait alone and puts the program's back itself. What must still be
/// right is the mask a program handler runs with when a signal ends the
/// wait: the kernel blocks the temporary mask with the handler's
/// (saved_sigmask: the frame keeps the program's own mask), so
/// `fast_wait` names the call while it runs, and delivery::deliver enters
/// the handler with that mask only for a signal that interrupted this very
/// syscall: the thread right after the gate's `syscall`, on the fast-path
/// stack under this call's link, with -EINTR (the kernel turned the
/// wait's ERESTARTNOHAND into EINTR because a handler runs: the temporary
/// mask was in force). A signal that arrives before the syscall starts or
/// after it returned finds the program's own mask, as natively; the
/// program's view of the owned signals is not touched (deliver_owned
/// judges an owned signal that ended the wait against the temporary mask).
/// The record is taken by the handler's entry, and cleared here after the
/// call: a handler entered just before the syscall that never returns
/// (siglongjmp) leaves it behind, matched again only by a later fast call
/// with the same link interrupted in the gate's `syscall` with EINTR.
/// An owned signal held back for the program also ends the syscall (our
/// handler ran): with the record still here (no program handler took it),
/// the call is made again (syscalls::wait_again), and the held-back
/// signals the program's own mask lets in are raised after the call.
pub fn with_temp_mask(area: &ThreadArea, link: u64, nr: i64, args: [u64; 6], sigset: SigsetArg) -> Option<i64> {
    let Some((temp, rest)) = syscalls::temp_mask_arg(&args, sigset) else {
        // SAFETY: the program's own call (rt::raw: forwarded program calls);
        // the kernel reports what was wrong with its sigset argument.
        return Some(unsafe { raw::syscall6(nr, args) });
    };
    if area.deferred.get() & !temp != 0 {
        return None;
    }
    let r = syscalls::with_clean_mask(args, sigset, temp, rest, |args| loop {
        area.wait_held.set(false);
        area.fast_wait.set((link, temp));
        compiler_fence(Ordering::SeqCst);
        // SAFETY: the program's own call (rt::raw: forwarded program calls),
        // its mask argument pointing at with_clean_mask's copy (ours, alive
        // until after the call, and only read by the kernel).
        let r = unsafe { raw::syscall6(nr, args) };
        compiler_fence(Ordering::SeqCst);
        // Cleared by a program handler that this very syscall let in.
        let handled = area.fast_wait.get().0 == 0;
        area.fast_wait.set((0, 0));
        if !syscalls::wait_again(r, handled, area) {
            break r;
        }
    });
    // Owned signals held back during the wait that the program's own mask
    // does not block: natively let in as the call restores that mask, their
    // handlers run before the program sees the result. (One whose handler
    // ended the wait was raised at that handler's sigreturn already.)
    raise_deferred(area, area.deferred.get() & !area.app_blocked_owned.get());
    Some(r)
}

/// Run `f` with the program's signals held, as between the two commits of
/// a signal call (steps 1 and 2 of [`atomically`]): for exit and
/// exit_group, whose bookkeeping (the report, retiring the thread's area)
/// must not be interleaved with the program's handlers, as it is not on
/// the slow path, inside our handler. `f` does not return when the call
/// ends the thread or the process; a signal held meanwhile is then gone,
/// as one that arrives during the syscall is. If it returns (a hook made
/// it another call), the mask goes back and held signals are sent again,
/// as after a signal call. Err(errno): the kernel refused to block (only a
/// seccomp filter of the program's can), and `f` did not run.
pub fn ending<R>(area: &ThreadArea, f: impl FnOnce() -> R) -> Result<R, i64> {
    atomically(area, |kernel| (f(), kernel))
}

/// Run `body` as one atomic step of the program's signal state (see the
/// module doc). `body` gets the kernel's mask at the commit point and
/// returns its result and the kernel's mask to end with. Err(errno): the
/// kernel refused to change the mask (only a seccomp filter of the
/// program's can), and nothing was done.
fn atomically<R>(area: &ThreadArea, body: impl FnOnce(u64) -> (R, u64)) -> Result<R, i64> {
    let outer = (area.fast_window.get(), area.fast_old.load(Ordering::Relaxed), area.fast_done.load(Ordering::Relaxed));
    let restore = || {
        area.fast_window.set(outer.0);
        area.fast_old.store(outer.1, Ordering::Relaxed);
        area.fast_done.store(outer.2, Ordering::Relaxed);
    };
    let waiting = area.postponed_len.get();
    // Step 1.
    area.fast_old.store(FAST_UNCOMMITTED, Ordering::Relaxed);
    compiler_fence(Ordering::SeqCst);
    area.fast_window.set(FAST_ARMING);
    compiler_fence(Ordering::SeqCst);
    // Step 2: the commit point is the kernel's write of the old mask.
    let committed = raw::sigprocmask_setmask_into(HOLD_MASK, &area.fast_old);
    compiler_fence(Ordering::SeqCst);
    if let Err(e) = committed {
        // A filter installed by another thread just now (these calls then
        // go back to the slow path, forbid_fast_masks): as it says.
        restore();
        return Err(e);
    }
    let (r, last) = body(area.fast_old.load(Ordering::Relaxed));
    // Step 3: the kernel's write of the old mask commits the new one.
    // Unless the mask to end with is step 2's (a program that blocks every
    // signal, as posix_spawn does around its child and the child until its
    // exec): the program's new state is whole once `body` is done, and
    // signals arriving until step 4 are held as they are in step 3.
    if last != HOLD_MASK {
        area.fast_done.store(FAST_UNCOMMITTED, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        area.fast_window.set(FAST_FINAL);
        compiler_fence(Ordering::SeqCst);
        // Cannot fail where step 2 did not (the same call, the same filter).
        let _ = raw::sigprocmask_setmask_into(last, &area.fast_done);
        compiler_fence(Ordering::SeqCst);
    }
    // Step 4.
    restore();
    compiler_fence(Ordering::SeqCst);
    if area.postponed_len.get() > waiting {
        resend_held(area, waiting);
    }
    Ok(r)
}

/// Send the signals postponed since there were `waiting` again, with every
/// signal blocked while they are taken; then the mask as it was (a program
/// handler that ran after the commit may have changed it).
fn resend_held(area: &ThreadArea, waiting: usize) {
    let mask = raw::sigprocmask(libc::SIG_SETMASK, Some(!0));
    let n = area.postponed_len.get();
    for p in area.postponed.iter().take(n).skip(waiting) {
        // SAFETY: this thread's own list, which only its handlers write,
        // and none can run (every signal is blocked): read in place (a copy
        // of the whole entry would be a memcpy, which the fast path must
        // not call).
        let (sig, info) = unsafe { ((*p.as_ptr()).sig, &(*p.as_ptr()).info) };
        delivery::resend(sig, info);
    }
    area.postponed_len.set(waiting.min(n));
    raw::sigprocmask(libc::SIG_SETMASK, Some(mask));
}
