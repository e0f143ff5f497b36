//! The one place every intercepted syscall passes, from the slow path (a
//! signal) and the fast path (a patched site's trampoline) alike:
//! (number, six arguments) in, result out. Measurement and hooks sit in
//! [`dispatch`]; what running the syscall means differs per path.
//!
//! Never: touch a vector register on the fast path (tests/library.rs
//! disassembles it).

use crate::emulate::exec;
use crate::emulate::own_filter;
use crate::emulate::process;
use crate::emulate::signals;
use crate::emulate::signals::delivery;
use crate::emulate::{exec_keep, stderr_keep};
use crate::measure::report;
use crate::measure::report::trace;
use crate::measure::stats::{self, Path};
use crate::rt::frame::Ucontext;
use crate::rt::raw;
use crate::rt::thread::{self, ThreadArea};
use crate::trap::hooks;
use crate::trap::syscalls::{self, Emulation, Handling};

pub use crate::emulate::Outcome;

/// The trapped thread: its area and the saved state of its program.
pub struct Trap<'a> {
    pub area: &'a ThreadArea,
    pub uc: &'a mut Ucontext,
}

/// The hook point: every intercepted syscall enters here. On the fast path
/// this is inlined into code that must not touch vector registers: keep it
/// integer-only.
/// `site`: the call site, the return address the path was given: right
/// after the program's `syscall` for the seed form and the slow path, the
/// trampoline's own return point for Forms R and P (the same value for the
/// same instruction; patch::registry::program_site maps it back, at report
/// time). `with_hooks`: run the installed hooks around the syscall (the fast
/// path passes what ut_fast_entry decided, since it saved the vector state
/// for them). `TRACE`: record the call for `usertrap trace` (callers choose
/// it with one check of trace::on, outside the fast path's own frame: see
/// [`ut_fast_dispatch`]).
#[inline(always)]
pub fn dispatch<const TRACE: bool>(
    area: Option<&ThreadArea>,
    path: Path,
    nr: i64,
    args: [u64; 6],
    site: u64,
    with_hooks: bool,
    run: impl FnOnce(i64, [u64; 6]) -> Outcome,
) -> Outcome {
    let block = stats::begin(area, path, nr);
    let at_site = stats::site_begin(area, path, site, nr);
    // Two closures, not one with an `if TRACE` inside: a closure captures
    // what it names even where a constant makes it dead, and the untraced
    // one must stay as small as it was (see ut_fast_dispatch).
    if TRACE {
        let timed = |nr, args| {
            let (out, t0, ticks) = timed_run(block, at_site, run, nr, args);
            if let Outcome::Return(r) = out {
                trace::record(area, nr, &args, r, t0, ticks, traced_site(site), path == Path::Fast, false);
            }
            out
        };
        let out = if with_hooks { hooks::call_hooks(nr, args, timed) } else { timed(nr, args) };
        return taken_back(out, area, path, nr, block, at_site);
    }
    // Written out rather than through timed_run: its tuple made this
    // closure's frame 0x88 bytes instead of 0x50.
    let timed = |nr, args| {
        let timing = stats::timing();
        let t0 = if timing { stats::now() } else { 0 };
        let out = run(nr, args);
        if let Outcome::Return(r) = out {
            let ticks = if timing { stats::now().wrapping_sub(t0) } else { 0 };
            stats::end(block, r, ticks);
            stats::site_end(at_site, r, ticks);
            if nr == libc::SYS_wait4 || nr == libc::SYS_waitid {
                report::note_wait(nr, args, r);
            }
        }
        out
    };
    let out = if with_hooks { hooks::call_hooks(nr, args, timed) } else { timed(nr, args) };
    taken_back(out, area, path, nr, block, at_site)
}

/// A fast version that declined its call (Outcome::Decline): the call was
/// counted by `dispatch` but runs on the slow path, which counts it there.
#[inline(always)]
fn taken_back(
    out: Outcome,
    area: Option<&ThreadArea>,
    path: Path,
    nr: i64,
    block: Option<&stats::SysStats>,
    at_site: Option<&stats::SiteStats>,
) -> Outcome {
    if let Outcome::Decline = out {
        stats::retract(area, path, nr, block, at_site);
    }
    out
}

/// Run the call, timed (the latency is the time of `run` alone: the real
/// syscall or its emulation, not the hooks around it), and count it:
/// (outcome, start, ticks).
#[inline(always)]
fn timed_run(
    block: Option<&stats::SysStats>,
    at_site: Option<&stats::SiteStats>,
    run: impl FnOnce(i64, [u64; 6]) -> Outcome,
    nr: i64,
    args: [u64; 6],
) -> (Outcome, u64, u64) {
    let timing = stats::timing();
    let t0 = if timing { stats::now() } else { 0 };
    let out = run(nr, args);
    let mut ticks = 0;
    if let Outcome::Return(r) = out {
        ticks = if timing { stats::now().wrapping_sub(t0) } else { 0 };
        stats::end(block, r, ticks);
        stats::site_end(at_site, r, ticks);
        if nr == libc::SYS_wait4 || nr == libc::SYS_waitid {
            report::note_wait(nr, args, r);
        }
    }
    (out, t0, ticks)
}

/// The slow path: run one syscall for the program, natively through the gate
/// or emulated where the library must keep control (signals, processes, its
/// own memory). The program's rip in `t.uc` is the address after its
/// `syscall` (sigsys.rs, and fault.rs moves it there before calling).
pub fn slow(t: &mut Trap<'_>, nr: i64, args: [u64; 6]) -> Outcome {
    let area = t.area;
    let site = t.uc.mc.rip;
    if trace::on() {
        return dispatch::<true>(Some(area), Path::Slow, nr, args, site, hooks::active(), |nr, args| {
            emulate(t, nr, args)
        });
    }
    dispatch::<false>(Some(area), Path::Slow, nr, args, site, hooks::active(), |nr, args| emulate(t, nr, args))
}

/// The program's own call, one that needs no emulation, run for it on the
/// slow path (`SLOW`: through the gate's program-syscall entry) or the fast
/// path: first what the library watches in such calls (the program letting
/// go of its stderr: emulate::stderr_keep; a call that changes what paths
/// resolve to: emulate::exec_keep; a memory call that would change
/// the library's own memory or recorded sites: process::memory_call, which
/// refuses it, saying why on the slow path only; a close, close_range,
/// dup2 or dup3 over the kept launcher and library:
/// exec_keep::descriptor_call, which passes over them or moves them), then
/// the call.
#[inline(always)]
fn forward<const SLOW: bool>(nr: i64, args: [u64; 6]) -> i64 {
    stderr_keep::before_native_call(nr, &args);
    let mut output = None;
    if exec_keep::changes_paths(nr, &args) {
        exec::before_path_change();
        if SLOW {
            output = exec::output_before_root_change(nr);
        }
    }
    let run = |nr, args| {
        if SLOW {
            // SAFETY: the program's own syscall with its own arguments
            // (rt::raw: forwarded program calls), or a part of it
            // (exec_keep::descriptor_call: a close_range's range in pieces).
            unsafe { raw::program_syscall6(nr, args) }
        } else {
            // SAFETY: the program's own syscall (rt::raw: forwarded program
            // calls), or a part of it as above.
            unsafe { raw::syscall6(nr, args) }
        }
    };
    let r = process::memory_call(nr, args, SLOW)
        .or_else(|| exec_keep::descriptor_call(nr, &args, run))
        .unwrap_or_else(|| run(nr, args));
    if let Some(place) = output {
        exec::after_path_change(nr, place, r);
    }
    r
}

fn emulate(t: &mut Trap<'_>, nr: i64, args: [u64; 6]) -> Outcome {
    use Outcome::Return;
    if t.area.strict.get() && !process::strict_allows(nr) {
        process::strict_violation(t.area);
    }
    let e = match syscalls::handling(nr) {
        Handling::Native => return Return(forward::<true>(nr, args)),
        Handling::Emulated(e) => e,
    };
    // The kernel never sees the program's own emulated call: its filters
    // are run here, first, as the kernel would (calls run natively meet
    // them in the kernel).
    if own_filter::any() {
        if let Some(out) = own_filter::check(t.area, t.uc, nr, &args) {
            return out;
        }
    }
    let args = syscalls::kernel_args(nr, args);
    match e {
        Emulation::SigAction => Return(signals::rt_sigaction(t.area, args)),
        Emulation::SigProcMask => Return(signals::rt_sigprocmask(t.area, t.uc, args)),
        Emulation::SigAltStack => Return(signals::sigaltstack(t.area, t.uc.mc.rsp, args)),
        Emulation::SigPending => Return(signals::rt_sigpending(t.area, args)),
        Emulation::SigTimedWait => Return(signals::rt_sigtimedwait(t.area, args)),
        Emulation::SigReturn => delivery::sigreturn(t.area, t.uc),
        Emulation::TempMask(sigset) => Return(signals::with_temp_mask(t.area, nr, args, sigset)),
        Emulation::UringEnter => Return(signals::io_uring_enter(t.area, args)),
        Emulation::Clone => {
            if exec_keep::clone_changes_paths(nr, &args) {
                exec::before_path_change();
            }
            let out = process::clone(t.area, t.uc, nr, args);
            if let Outcome::Return(child) = out {
                report::after_clone_in_parent(nr, args, child);
            }
            out
        }
        Emulation::Exec => {
            // Recorded before: a successful exec does not return.
            pending(t, nr, args);
            Return(exec::exec(t.area, nr, args))
        }
        Emulation::ReadlinkExe => Return(exec::readlink(nr, args).unwrap_or_else(|| {
            // SAFETY: the program's own readlink (rt::raw: forwarded program calls).
            unsafe { raw::syscall6(nr, args) }
        })),
        // Counted (by `dispatch`), never timed: they do not return.
        Emulation::Exit => {
            pending(t, nr, args);
            Return(exit_thread(t.area, nr, args))
        }
        Emulation::ExitGroup => {
            pending(t, nr, args);
            Return(exit_process(nr, args))
        }
        Emulation::ArchPrctl => Return(process::arch_prctl(args)),
        Emulation::Seccomp => Return(process::seccomp(t.area, args)),
        Emulation::Prctl => Return(process::prctl(t.area, args)),
        Emulation::Ptrace => Return(process::ptrace(t.area, t.uc, args)),
        Emulation::Membarrier => Return(crate::patch::write::program_membarrier(args)),
    }
}

/// `usertrap trace`: a call that may not return, recorded before it runs.
fn pending(t: &Trap<'_>, nr: i64, args: [u64; 6]) {
    if trace::on() {
        trace::record(Some(t.area), nr, &args, 0, stats::now(), 0, t.uc.mc.rip, false, true);
    }
}

/// The site a trace names: Forms R and P return through their trampoline,
/// below 2 GiB; the program's own `syscall` instead.
fn traced_site(site: u64) -> u64 {
    if site < 1 << 31 && crate::patch::registry::any_ext() {
        crate::patch::registry::program_site(site)
    } else {
        site
    }
}

/// exit: the thread's bookkeeping (the last thread writes the report),
/// then the call. Either path; on the fast one with every signal held
/// (signals::fast::ending), on the slow one held from the report on
/// (signals::hold_signals_for_exit, which the fast one repeats: one call
/// per process). Not inlined: tests/patching.rs stops its walk
/// of the fast path's code here (the thread ends; no register of the
/// program's is used again).
#[inline(never)]
fn exit_thread(area: &ThreadArea, nr: i64, args: [u64; 6]) -> i64 {
    // A vfork child (it runs on an area its parent set aside) is no thread
    // of the parent's count, and its area is the parent's to give back when
    // it runs again (thread::current): retiring it here too would hand it
    // out twice.
    if !area.vfork_child.get() {
        trace::thread_exit(area);
        if crate::rt::thread::retire(area) {
            signals::hold_signals_for_exit();
            report::at_exit(report::Exit::LastThread(args[0] as i32 & 0xff));
        }
    }
    // SAFETY: the program's own exit (rt::raw: forwarded program calls).
    unsafe { raw::syscall6(nr, args) }
}

/// exit_group: the report, then the call (as `exit_thread`).
#[inline(never)]
fn exit_process(nr: i64, args: [u64; 6]) -> i64 {
    signals::hold_signals_for_exit();
    report::at_exit(report::Exit::ExitGroup(args[0] as i32 & 0xff));
    // SAFETY: the program's own exit_group (rt::raw: forwarded program calls).
    unsafe { raw::syscall6(nr, args) }
}

/// What ut_fast_dispatch returns to ut_fast_entry, in rax and rdx (the
/// System V convention for a struct of two integer words): the call's
/// result, or, with `slow` set, the call sent back to the slow path (a fast
/// version that declined it, Outcome::Decline), with `rax` its number, as
/// the trampoline's own `syscall` needs it to trap.
#[repr(C)]
pub struct FastReturn {
    pub rax: i64,
    pub slow: u64,
}

/// The fast path, called by ut_fast_entry with the six argument registers it
/// saved (in push order: r9, r8, r10, rdx, rsi, rdi; then the flags and the
/// return address into the site, right after its syscall), the GS base, and
/// whether it saved the extended state so that hooks may run. Only syscalls
/// that need no emulation, or whose emulation has a fast version, are ever
/// patched or let through by ut_fast_entry (trap::syscalls::patchable and
/// `fast`), so this runs them through the gate, after the integer-only check
/// that keeps the library's own memory mapped, or emulates them here
/// ([`fast_emulated`]), or sends them back to the slow path. No vector
/// register may be touched from here down: `tests/library.rs` disassembles
/// this function and what it calls.
///
/// Under `usertrap trace` the call goes through [`fast_traced`], apart:
/// recording inside this frame made it 64 bytes larger, and the fast path
/// runs on the program's stack (a Go goroutine's has little room:
/// tests/go.rs's exec_goroutines crashed 8 times in 10). Off, the cost is
/// this one branch.
#[no_mangle]
pub extern "C" fn ut_fast_dispatch(nr: i64, saved: *const u64, gs_base: u64, with_hooks: u64) -> FastReturn {
    if let Handling::Emulated(e) = syscalls::handling(nr) {
        // Only those with a fast version get here (ut_fast_ok). Apart: the
        // frame of this function is the stack every native fast call uses
        // below the program's stack pointer, which must stay small (Go's
        // syscall stubs run on goroutine stacks of a few KiB).
        if syscalls::fast(e) {
            let done = if trace::on() {
                fast_emulated_call::<true>(e, nr, saved, gs_base, with_hooks)
            } else {
                fast_emulated_call::<false>(e, nr, saved, gs_base, with_hooks)
            };
            return match done {
                Some(r) => FastReturn { rax: r, slow: 0 },
                None => FastReturn { rax: nr, slow: 1 },
            };
        }
    }
    let r = if trace::on() {
        fast_traced(nr, saved, gs_base, with_hooks)
    } else {
        fast_dispatch::<false>(nr, saved, gs_base, with_hooks)
    };
    FastReturn { rax: r, slow: 0 }
}

/// [`ut_fast_dispatch`] under `usertrap trace`.
#[inline(never)]
#[cold]
fn fast_traced(nr: i64, saved: *const u64, gs_base: u64, with_hooks: u64) -> i64 {
    fast_dispatch::<true>(nr, saved, gs_base, with_hooks)
}

#[inline(always)]
fn fast_dispatch<const TRACE: bool>(nr: i64, saved: *const u64, gs_base: u64, with_hooks: u64) -> i64 {
    // SAFETY: ut_fast_entry passes a pointer to the six registers it pushed,
    // in that order, on the stack, live for this call, with the flags and
    // the return address it pushed before them right above. Volatile reads, one by
    // one: a vectorised copy would clobber the program's xmm registers.
    let arg = |i: usize| unsafe { core::ptr::read_volatile(saved.add(i)) };
    let args = [arg(5), arg(4), arg(3), arg(2), arg(1), arg(0)];
    let site = arg(7);
    let area = thread::fast_area(gs_base);
    if let Some(a) = area {
        if a.strict.get() && !process::strict_allows(nr) {
            process::strict_violation_fast(a);
        }
    }
    // Only sites of calls that need no emulation are patched.
    let outcome = dispatch::<TRACE>(area, Path::Fast, nr, args, site, with_hooks != 0, |nr, args| {
        Outcome::Return(forward::<false>(nr, args))
    });
    match outcome {
        Outcome::Return(r) => r,
        // Never: only emulated syscalls resume or decline.
        Outcome::Resume | Outcome::Decline => -raw::ENOSYS,
    }
}

/// ut_fast_dispatch for an emulated syscall `e` with a fast version:
/// measured and hooked as any fast call, emulated by [`fast_emulated`].
/// None: declined (not counted; the slow path runs it).
#[inline(never)]
fn fast_emulated_call<const TRACE: bool>(
    e: Emulation,
    nr: i64,
    saved: *const u64,
    gs_base: u64,
    with_hooks: u64,
) -> Option<i64> {
    // SAFETY: as in ut_fast_dispatch.
    let arg = |i: usize| unsafe { core::ptr::read_volatile(saved.add(i)) };
    let args = [arg(5), arg(4), arg(3), arg(2), arg(1), arg(0)];
    let area = thread::fast_area(gs_base);
    if let Some(a) = area {
        if a.strict.get() && !process::strict_allows(nr) {
            process::strict_violation_fast(a);
        }
    }
    if area.is_some_and(|a| a.left_library.get()) {
        // Not intercepted any more (a vfork child after PTRACE_TRACEME):
        // as if the site were not patched.
        // SAFETY: the program's own call (rt::raw: forwarded program calls).
        return Some(unsafe { raw::syscall6(nr, args) });
    }
    if own_filter::any() {
        // The program's own seccomp filter decides first, on the slow path
        // (emulate::own_filter): its interpreter is not for this frame.
        return None;
    }
    let site = arg(7);
    // Whether this call moved onto the thread's own fast-path stack (the
    // room exit's report and exec's checks need; see syscalls::fast).
    let on_own_stack = area.is_some_and(|a| a.fast_call_switched(saved as u64));
    let measured = || {
        dispatch::<TRACE>(area, Path::Fast, nr, args, site, with_hooks != 0, |nr, args| {
            match syscalls::handling(nr) {
                // (A hook may have changed the number: exit and exec only
                // as what was prepared for above.)
                Handling::Emulated(h) if syscalls::fast(h) && (h == e || !prepared_for(h)) => {
                    fast_emulated(area, saved, site, h, nr, &args).map_or(Outcome::Decline, Outcome::Return)
                }
                // A hook changed the number: as ut_fast_dispatch runs others.
                _ => Outcome::Return(forward::<false>(nr, args)),
            }
        })
    };
    let outcome = match e {
        Emulation::Exit | Emulation::ExitGroup => {
            // The thread's own area, not a vfork child's on its parent's
            // (whose fast-path stack this call would leave marked in use).
            // A parent whose vfork has finished still names the child's
            // area until something looks it up (fast_current frees it):
            // without that, a `cc` that vforked and then exits with no
            // other call between took the slow path for its exit_group.
            let own = thread::fast_current(area).filter(|a| {
                on_own_stack
                    && a.pending_child.get().is_null()
                    && a.owner_tid.load(core::sync::atomic::Ordering::Relaxed) != 0
                    && !a.vfork_child.get()
            })?;
            // Nothing of the program runs from here: the report and the
            // thread's retirement are not interleaved with its handlers.
            signals::fast::ending(own, measured).ok()?
        }
        // Hooks see each call once: a declined exec would reach them twice.
        Emulation::Exec if !on_own_stack || with_hooks != 0 => return None,
        // A wait with a temporary mask is told apart from other fast calls
        // by its link on the fast-path stack (signals::fast::with_temp_mask);
        // it declines (rarely) once hooks have seen it.
        Emulation::TempMask(_) if !on_own_stack || with_hooks != 0 => return None,
        // Refused with a line on stderr: the slow path's.
        Emulation::ArchPrctl if args[0] == process::ARCH_SET_GS => return None,
        _ => measured(),
    };
    match outcome {
        Outcome::Return(r) => Some(r),
        Outcome::Decline => None,
        Outcome::Resume => Some(-raw::ENOSYS), // never: fast emulations return
    }
}

/// Whether the fast version of `e` runs only as fast_emulated_call prepares
/// it (signals held, on the fast-path stack, hooks off).
fn prepared_for(e: Emulation) -> bool {
    matches!(e, Emulation::Exit | Emulation::ExitGroup | Emulation::Exec)
}

/// An emulated syscall on the fast path (trap::syscalls::fast says which):
/// `seen` is the area at the GS base, `saved` what ut_fast_entry saved,
/// `site` the call's return address. None: declined.
#[inline(never)]
fn fast_emulated(
    seen: Option<&'static ThreadArea>,
    saved: *const u64,
    site: u64,
    e: Emulation,
    nr: i64,
    args: &[u64; 6],
) -> Option<i64> {
    // (`args` by reference: a copy would be 48 more bytes of the program's
    // stack in ut_fast_dispatch's frame, on every fast call.)
    let args = syscalls::kernel_args(nr, *args);
    match e {
        Emulation::ReadlinkExe => {
            return Some(exec::readlink(nr, args).unwrap_or_else(|| {
                // SAFETY: the program's own readlink (rt::raw: forwarded program calls).
                unsafe { raw::syscall6(nr, args) }
            }));
        }
        Emulation::ArchPrctl => return process::arch_prctl_quietly(args),
        Emulation::Exec => return exec::fails_before_open(nr, args),
        // A temporary mask needs the slow path's frame (trap::syscalls::fast).
        Emulation::UringEnter if signals::io_uring_enter_masks(&args) => return None,
        Emulation::UringEnter => return Some(forward::<false>(nr, args)),
        _ => {}
    }
    // The rest change this thread's state: its own area (a vfork child's,
    // not its parent's).
    let area = match thread::fast_current(seen) {
        Some(a) => a,
        None => thread::out_of_memory(),
    };
    if let Emulation::TempMask(sigset) = e {
        // The thread's own call on its own fast-path stack (checked by
        // fast_emulated_call; a vfork child's area has no link there).
        let link = area.fast_call_link(saved as u64)?;
        return signals::fast::with_temp_mask(area, link, nr, args, sigset);
    }
    let pending = || {
        if trace::on() {
            trace::record(Some(area), nr, &args, 0, stats::now(), 0, traced_site(site), true, true);
        }
    };
    Some(match e {
        Emulation::SigAction => signals::fast::rt_sigaction(area, args),
        Emulation::SigProcMask => signals::fast::rt_sigprocmask(area, args),
        Emulation::SigAltStack => {
            let sp = (saved as u64).wrapping_add(crate::rt::arch::FAST_SAVED_TO_PROGRAM_SP);
            signals::fast::sigaltstack(area, sp, args)
        }
        // Inside signals::fast::ending (fast_emulated_call).
        Emulation::Exit => {
            pending();
            exit_thread(area, nr, args)
        }
        Emulation::ExitGroup => {
            pending();
            exit_process(nr, args)
        }
        // Never: trap::syscalls::fast lists only those above.
        _ => -raw::ENOSYS,
    })
}
