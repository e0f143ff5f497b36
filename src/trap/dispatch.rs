//! The one place every intercepted syscall passes, from the slow path (a
//! signal) and the fast path (a patched site's trampoline) alike:
//! (number, six arguments) in, result out. Measurement and hooks sit in
//! [`dispatch`]; what running the syscall means differs per path.
//!
//! Never: touch a vector register on the fast path (tests/library.rs
//! disassembles it).

use crate::emulate::exec;
use crate::emulate::process;
use crate::emulate::signals;
use crate::emulate::signals::delivery;
use crate::emulate::stderr_keep;
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
                // Forms R and P return through their trampoline, below 2 GiB:
                // a trace names the program's own syscall instead.
                let site = if site < 1 << 31 && crate::patch::registry::any_ext() {
                    crate::patch::registry::program_site(site)
                } else {
                    site
                };
                trace::record(area, nr, &args, r, t0, ticks, site, path == Path::Fast, false);
            }
            out
        };
        if with_hooks {
            return hooks::call_hooks(nr, args, timed);
        }
        return timed(nr, args);
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
    if with_hooks {
        return hooks::call_hooks(nr, args, timed);
    }
    timed(nr, args)
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
/// go of its stderr: emulate::stderr_keep; a memory call that would change
/// the library's own memory or recorded sites: process::memory_call, which
/// refuses it, saying why on the slow path only), then the call.
#[inline(always)]
fn forward<const SLOW: bool>(nr: i64, args: [u64; 6]) -> i64 {
    stderr_keep::before_native_call(nr, &args);
    process::memory_call(nr, args, SLOW).unwrap_or_else(|| {
        if SLOW {
            // SAFETY: the program's own syscall with its own arguments
            // (rt::raw: forwarded program calls).
            unsafe { raw::program_syscall6(nr, args) }
        } else {
            // SAFETY: the program's own syscall (rt::raw: forwarded program
            // calls).
            unsafe { raw::syscall6(nr, args) }
        }
    })
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
    let args = syscalls::kernel_args(nr, args);
    match e {
        Emulation::SigAction => Return(signals::rt_sigaction(t.area, args)),
        Emulation::SigProcMask => Return(signals::rt_sigprocmask(t.area, t.uc, args)),
        Emulation::SigAltStack => Return(signals::sigaltstack(t.area, t.uc.mc.rsp, args)),
        Emulation::SigPending => Return(signals::rt_sigpending(t.area, args)),
        Emulation::SigTimedWait => Return(signals::rt_sigtimedwait(t.area, args)),
        Emulation::SigReturn => delivery::sigreturn(t.area, t.uc),
        Emulation::TempMask(sigset) => Return(signals::with_temp_mask(t.area, nr, args, sigset)),
        Emulation::Clone => {
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
            // A vfork child (it runs on an area its parent set aside) is no
            // thread of the parent's count, and its area is the parent's to
            // give back when it runs again (thread::current): retiring it here
            // too would hand it out twice.
            if !t.area.vfork_child.get() {
                trace::thread_exit(t.area);
                if crate::rt::thread::retire(t.area) {
                    signals::hold_signals_for_exit();
                    report::at_exit(report::Exit::LastThread(args[0] as i32 & 0xff));
                }
            }
            // SAFETY: the program's own exit (rt::raw: forwarded program calls).
            Return(unsafe { raw::syscall6(nr, args) })
        }
        Emulation::ExitGroup => {
            pending(t, nr, args);
            signals::hold_signals_for_exit();
            report::at_exit(report::Exit::ExitGroup(args[0] as i32 & 0xff));
            // SAFETY: the program's own exit_group (rt::raw: forwarded program calls).
            Return(unsafe { raw::syscall6(nr, args) })
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

/// The fast path, called by ut_fast_entry with the six argument registers it
/// saved (in push order: r9, r8, r10, rdx, rsi, rdi; then the flags and the
/// return address into the site, right after its syscall), the GS base, and
/// whether it saved the extended state so that hooks may run. Only syscalls
/// that need no emulation, or whose emulation has a fast version, are ever
/// patched or let through by ut_fast_entry (trap::syscalls::patchable and
/// `fast`), so this runs them through the gate, after the integer-only check
/// that keeps the library's own memory mapped, or emulates them here
/// ([`fast_emulated`]). No vector register may be touched from here down:
/// `tests/library.rs` disassembles this function and what it calls.
///
/// Under `usertrap trace` the call goes through [`fast_traced`], apart:
/// recording inside this frame made it 64 bytes larger, and the fast path
/// runs on the program's stack (a Go goroutine's has little room:
/// tests/go.rs's exec_goroutines crashed 8 times in 10). Off, the cost is
/// this one branch.
#[no_mangle]
pub extern "C" fn ut_fast_dispatch(nr: i64, saved: *const u64, gs_base: u64, with_hooks: u64) -> i64 {
    if let Handling::Emulated(e) = syscalls::handling(nr) {
        // Only those with a fast version get here (ut_fast_ok). Apart: the
        // frame of this function is the stack every native fast call uses
        // below the program's stack pointer, which must stay small (Go's
        // syscall stubs run on goroutine stacks of a few KiB).
        if syscalls::fast(e) {
            if trace::on() {
                return fast_emulated_call::<true>(nr, saved, gs_base, with_hooks);
            }
            return fast_emulated_call::<false>(nr, saved, gs_base, with_hooks);
        }
    }
    if trace::on() {
        return fast_traced(nr, saved, gs_base, with_hooks);
    }
    fast_dispatch::<false>(nr, saved, gs_base, with_hooks)
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
        Outcome::Resume => -raw::ENOSYS, // never: only emulated syscalls resume
    }
}

/// ut_fast_dispatch for an emulated syscall with a fast version: measured
/// and hooked as any fast call, emulated by [`fast_emulated`].
#[inline(never)]
fn fast_emulated_call<const TRACE: bool>(nr: i64, saved: *const u64, gs_base: u64, with_hooks: u64) -> i64 {
    // SAFETY: as in ut_fast_dispatch.
    let arg = |i: usize| unsafe { core::ptr::read_volatile(saved.add(i)) };
    let args = [arg(5), arg(4), arg(3), arg(2), arg(1), arg(0)];
    let area = thread::fast_area(gs_base);
    if let Some(a) = area {
        if a.strict.get() && !process::strict_allows(nr) {
            process::strict_violation_fast(a);
        }
    }
    let site = arg(7);
    let outcome = dispatch::<TRACE>(area, Path::Fast, nr, args, site, with_hooks != 0, |nr, args| {
        let r = match syscalls::handling(nr) {
            Handling::Emulated(h) if syscalls::fast(h) => fast_emulated(area, saved, h, nr, &args),
            // A hook changed the number: as ut_fast_dispatch runs others.
            _ => forward::<false>(nr, args),
        };
        Outcome::Return(r)
    });
    match outcome {
        Outcome::Return(r) => r,
        Outcome::Resume => -raw::ENOSYS, // never: fast emulations return
    }
}

/// An emulated syscall on the fast path (trap::syscalls::fast says which):
/// `seen` is the area at the GS base, `saved` what ut_fast_entry saved.
#[inline(never)]
fn fast_emulated(seen: Option<&'static ThreadArea>, saved: *const u64, e: Emulation, nr: i64, args: &[u64; 6]) -> i64 {
    // (`args` by reference: a copy would be 48 more bytes of the program's
    // stack in ut_fast_dispatch's frame, on every fast call.)
    let args = syscalls::kernel_args(nr, *args);
    if e == Emulation::ReadlinkExe {
        return exec::readlink(nr, args).unwrap_or_else(|| {
            // SAFETY: the program's own readlink (rt::raw: forwarded program calls).
            unsafe { raw::syscall6(nr, args) }
        });
    }
    // The rest change this thread's signal state: its own area (a vfork
    // child's, not its parent's).
    let area = match thread::fast_current(seen) {
        Some(a) => a,
        None => thread::out_of_memory(),
    };
    match e {
        Emulation::SigAction => signals::fast::rt_sigaction(area, args),
        Emulation::SigProcMask => signals::fast::rt_sigprocmask(area, args),
        Emulation::SigAltStack => {
            let sp = (saved as u64).wrapping_add(crate::rt::arch::FAST_SAVED_TO_PROGRAM_SP);
            signals::fast::sigaltstack(area, sp, args)
        }
        // Never: trap::syscalls::fast lists only the four above.
        _ => -raw::ENOSYS,
    }
}
