//! Syscalls that create, replace or end threads and processes.
//!
//! A trapped syscall runs inside our SIGSYS handler, on our signal stack. For
//! most syscalls that is invisible; for these it is not:
//! - clone with a new stack (threads, posix_spawn-like children): the child
//!   starts after the gate's `syscall` on its new stack, in our code, with the
//!   handler's registers. The parent therefore writes a complete signal frame
//!   (the program's registers with rax = 0, its FPU/vector state, its signal
//!   mask, a fresh signal stack) below the child's stack, and the child does
//!   its setup and then rt_sigreturn onto that frame.
//! - vfork / CLONE_VFORK: the child runs first on the parent's stack while the
//!   parent sleeps inside the syscall. Run from the handler, the child would
//!   overwrite the parent's handler frame on the shared signal stack. Instead
//!   the handler returns to the gate's vfork stub, which issues the syscall with
//!   the program's own registers and mask, outside any handler. The child then
//!   moves to the signal stack of the area set aside for it: the alternate
//!   stack CLONE_VFORK leaves it may be the program's own and too small for
//!   our handlers (Go's 32 KiB one, heap right below it).
//! - fork (no new stack, no shared memory): runs in the handler; the child
//!   continues in its copy of the handler and fixes up per-process state.
//! - execve: see `exec` (the launcher runs the new program).
//!
//! Never: let the program unmap, move or reprotect the library's own memory.

use crate::rt::arch;

use crate::emulate::own_filter;
use crate::emulate::signals;
use crate::emulate::Outcome;
use crate::measure::stats;
use crate::patch::maps;
use crate::rt::frame::{self, Ucontext};
use crate::rt::log::Line;
use crate::rt::owned;
use crate::rt::raw;
use crate::rt::thread::{self, ThreadArea};
use crate::trap::backend::{self, seccomp};

const CLONE_VM: u64 = libc::CLONE_VM as u64;
const CLONE_VFORK: u64 = libc::CLONE_VFORK as u64;
const CLONE_SIGHAND: u64 = libc::CLONE_SIGHAND as u64;
const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;
const SIGCHLD: u64 = libc::SIGCHLD as u64;
/// Size of `struct clone_args` as of CLONE_ARGS_SIZE_VER2.
const CLONE_ARGS_SIZE: usize = 88;
const CLONE_ARGS_SIZE_VER0: usize = 64;

/// What the clone child finds below its frame (written by the parent).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ChildHeader {
    /// The child's thread area (CLONE_VM), or 0: keep the inherited copy.
    area: u64,
    flags: u64,
}

// SAFETY: two u64s, no padding.
unsafe impl raw::Plain for ChildHeader {}

#[inline(never)]
pub fn clone(area: &ThreadArea, uc: &mut Ucontext, nr: i64, args: [u64; 6]) -> Outcome {
    let (flags, stack) = match nr {
        raw::SYS_clone => (args[0], args[1]),
        raw::SYS_clone3 => {
            let size = args[1] as usize;
            if !(CLONE_ARGS_SIZE_VER0..=4096).contains(&size) {
                // SAFETY: the program's own clone3, for the kernel's error
                // (it creates nothing with this size) (rt::raw: forwarded program calls).
                return Outcome::Return(unsafe { raw::syscall6(nr, args) });
            }
            let mut ca = [0u8; CLONE_ARGS_SIZE];
            let n = size.min(CLONE_ARGS_SIZE);
            if raw::copy_from_user(ca.get_mut(..n).unwrap_or_default(), args[0]).is_err() {
                return Outcome::Return(-raw::EFAULT);
            }
            let ca = |i: usize| {
                let mut w = [0u8; 8];
                w.copy_from_slice(ca.get(8 * i..8 * i + 8).unwrap_or(&[0; 8]));
                u64::from_le_bytes(w)
            };
            // struct clone_args: flags [0], ..., stack [5], stack_size [6].
            let (stack, stack_size) = (ca(5), ca(6));
            (ca(0), if stack != 0 { stack.wrapping_add(stack_size) } else { 0 })
        }
        raw::SYS_fork => (SIGCHLD, 0),
        _ => (CLONE_VM | CLONE_VFORK | SIGCHLD, 0), // vfork
    };
    if flags & CLONE_VFORK != 0 {
        vfork_via_stub(area, uc, nr, flags)
    } else if stack == 0 && flags & CLONE_VM == 0 {
        fork_in_handler(area, uc.mc.rip, nr, args, flags)
    } else {
        clone_with_frame(area, uc, nr, args, flags, stack)
    }
}

fn vfork_via_stub(area: &ThreadArea, uc: &mut Ucontext, nr: i64, flags: u64) -> Outcome {
    // The child shares our memory, so it must not use our area: set one aside
    // for it to claim on its first trap (see thread::current).
    match thread::allocate_for_child(area, flags & CLONE_SIGHAND != 0) {
        Some(child) => {
            child.app_altstack.set(area.app_altstack.get());
            area.pending_child.set(child as *const ThreadArea as *mut ThreadArea);
        }
        None => return Outcome::Return(-raw::ENOMEM),
    }
    area.vfork_return.set(uc.mc.rip);
    uc.mc.rax = nr as u64;
    uc.mc.rip = arch::GATE_VFORK;
    Outcome::Resume
}

/// `rip`: the address after the program's fork `syscall`.
fn fork_in_handler(area: &ThreadArea, rip: u64, nr: i64, args: [u64; 6], flags: u64) -> Outcome {
    // A fork child usually execs: the loader's sites it would prove for
    // the new image are proven here once, and every child inherits them
    // (proven in the child, they would be proven again in each). So are
    // the sites only the child runs right after the fork (glibc's _Fork:
    // set_robust_list).
    crate::patch::install::prove_loader_sites();
    crate::patch::install::patch_fork_child_sites(rip);
    let fork = || {
        // SAFETY: the program's own fork (or clone without CLONE_VM or a
        // stack): the child gets a copy of everything, this thread goes on
        // as it was (rt::raw: forwarded program calls).
        let r = unsafe { raw::syscall6(nr, args) };
        if r == 0 {
            after_fork_in_child(area, flags);
        }
        r
    };
    // The child starts with its parent's ids and figures until
    // after_fork_in_child: a signal that arrived first (a SIGTERM sent as
    // soon as fork returned in the parent) would report as the parent and
    // be sent again to the parent. Blocked, it waits for the child's own.
    let r = if signals::masks_forbidden() { fork() } else { thread::with_signals_blocked(fork) };
    Outcome::Return(r)
}

/// Per-process state in a new process (fork, or clone without CLONE_VM).
fn after_fork_in_child(area: &ThreadArea, flags: u64) {
    thread::after_fork_in_child(area);
    signals::after_fork_in_child(area);
    crate::measure::report::after_fork_in_child();
    crate::rt::log::after_fork_in_child();
    crate::emulate::exec_keep::after_fork_in_child();
    crate::patch::install::after_fork_in_child();
    stats::after_fork_in_child();
    if flags & CLONE_CLEAR_SIGHAND != 0 {
        signals::reset_after_clear_sighand();
    }
    backend::arm_this_thread();
}

fn clone_with_frame(area: &ThreadArea, uc: &mut Ucontext, nr: i64, args: [u64; 6], flags: u64, stack: u64) -> Outcome {
    // With CLONE_VM and no stack the child shares the program's stack: build
    // its frame below the red zone there (the kernel will start it on ours,
    // which it leaves at once, with every signal blocked).
    let top = if stack != 0 { stack } else { uc.mc.rsp - 128 };
    let fp_size = frame::fpstate_size(uc.mc.fpstate).unwrap_or(0);
    let fp_dst = (top - fp_size as u64) & !63;
    let uc_addr = (fp_dst - core::mem::size_of::<Ucontext>() as u64) & !15;
    let frame_base = uc_addr - 8; // the restorer's return-address slot
    let header_addr = frame_base - arch::CHILD_HEADER as u64;

    let child_area = if flags & CLONE_VM != 0 {
        match thread::allocate_for_child(area, flags & CLONE_SIGHAND != 0) {
            Some(a) => Some(a),
            None => return Outcome::Return(-raw::ENOMEM),
        }
    } else {
        None
    };

    let mut child_uc = *uc;
    child_uc.mc.rax = 0;
    child_uc.mc.rcx = uc.mc.rip;
    child_uc.mc.r11 = uc.mc.eflags;
    child_uc.mc.rsp = if stack != 0 { stack } else { uc.mc.rsp };
    child_uc.mc.fpstate = if fp_size != 0 { fp_dst } else { 0 };
    if let Some(a) = &child_area {
        // A CLONE_VM child starts without an alternate stack: give it ours.
        child_uc.uc_stack = a.altstack.get();
    }
    let header = ChildHeader { area: child_area.as_ref().map_or(0, |a| *a as *const ThreadArea as u64), flags };
    // SAFETY: the child's frame goes on the stack the program gave it (or
    // below the red zone of its own), where the kernel would build the
    // child's first frame too: program memory, named by the program; the
    // FPU state is read from our own signal frame.
    let written = unsafe {
        raw::write_user(uc_addr, &child_uc).and_then(|_| raw::write_user(header_addr, &header)).and_then(|_| {
            if fp_size != 0 {
                raw::copy_user(fp_dst, uc.mc.fpstate, fp_size)
            } else {
                Ok(())
            }
        })
    };
    if let Err(e) = written {
        if let Some(a) = child_area {
            thread::release(a);
        }
        return Outcome::Return(-e);
    }

    let is_thread = flags & libc::CLONE_THREAD as u64 != 0;
    if is_thread {
        thread::thread_starting();
    }
    // Block everything until the child's sigreturn installs the program's mask.
    let old = raw::sigprocmask(libc::SIG_SETMASK, Some(!0u64));
    // SAFETY: the frame and header were written above; only the child uses
    // them; the gate issues clone/clone3 with the program's own arguments.
    let r = unsafe { arch::ut_clone_with_frame(nr as u64, args[0], args[1], args[2], args[3], args[4], frame_base) };
    raw::sigprocmask(libc::SIG_SETMASK, Some(old));
    if r < 0 {
        if let Some(a) = child_area {
            thread::release(a);
        }
        if is_thread {
            thread::thread_not_started();
        }
    }
    Outcome::Return(r)
}

/// Called by ut_clone_child_entry on the child's own stack, every signal
/// blocked, before the rt_sigreturn that starts the program's code; returns
/// the restorer that makes it.
#[no_mangle]
pub extern "C" fn ut_clone_child_setup(frame_base: u64) -> u64 {
    let header_addr = frame_base - arch::CHILD_HEADER as u64;
    // SAFETY: the parent wrote this header just before the clone, below the
    // frame and above the stack this function runs on.
    let header = unsafe { *(header_addr as *const ChildHeader) };
    if header.area != 0 {
        // SAFETY: allocated by the parent for this child alone.
        let a = unsafe { &mut *(header.area as *mut ThreadArea) };
        thread::install(a);
        backend::arm_this_thread();
    } else if let Some(a) = thread::current_unchecked() {
        after_fork_in_child(a, header.flags);
    }
    signals::restorer()
}

// --- other syscalls the library must not let through unchanged ------------------

pub const ARCH_SET_GS: u64 = 0x1001;
const ARCH_GET_GS: u64 = 0x1004;

/// arch_prctl: the GS base belongs to the library (it finds each thread's
/// area through it); the program sees 0 and may not change it.
#[inline(never)]
pub fn arch_prctl(args: [u64; 6]) -> i64 {
    arch_prctl_quietly(args).unwrap_or_else(|| {
        Line::new().str("the program tried to set the GS base (arch_prctl ARCH_SET_GS), which usertrap needs for itself: refused with EPERM").emit();
        -raw::EPERM
    })
}

/// arch_prctl but for ARCH_SET_GS (None: refused, with a line on stderr,
/// by `arch_prctl`): what the fast path runs (the line's buffer would be
/// zeroed by memset, which may use vector registers; ARCH_SET_GS is
/// declined there and takes the slow path).
#[inline(never)]
pub fn arch_prctl_quietly(args: [u64; 6]) -> Option<i64> {
    match args[0] {
        ARCH_SET_GS => None,
        // SAFETY: where the program asked the kernel to write the base.
        ARCH_GET_GS => Some(match unsafe { raw::write_user(args[1], &0u64) } {
            Ok(()) => 0,
            Err(e) => -e,
        }),
        // SAFETY: the program's own arch_prctl, GS excepted (rt::raw:
        // forwarded program calls).
        _ => Some(unsafe { raw::syscall6(raw::SYS_arch_prctl, args) }),
    }
}

const PR_SET_TSC: u64 = libc::PR_SET_TSC as u64;
const PR_TSC_SIGSEGV: u64 = libc::PR_TSC_SIGSEGV as u64;
const SECCOMP_MODE_STRICT: u64 = 1;
const SECCOMP_MODE_FILTER: u64 = 2;
const SECCOMP_SET_MODE_STRICT: u64 = 0;
const SECCOMP_SET_MODE_FILTER: u64 = 1;

/// prctl: Syscall User Dispatch cannot be shared with the program; a seccomp
/// filter of the program's own stops patching (see `seccomp`); strict mode
/// is emulated; a TSC turned off for the thread stops our own rdtsc.
#[inline(never)]
pub fn prctl(area: &ThreadArea, args: [u64; 6]) -> i64 {
    if args[0] == linux_raw_sys::prctl::PR_SET_SYSCALL_USER_DISPATCH as u64 {
        // Under SUD the kernel's dispatch is ours; under seccomp the program's
        // dispatch would stop the library's own syscalls from the gate too.
        Line::new()
            .str(
                "the program tried to configure Syscall User Dispatch, which usertrap cannot share: refused with EBUSY",
            )
            .emit();
        return -raw::EBUSY;
    }
    if args[0] == libc::PR_SET_SECCOMP as u64 {
        match args[1] {
            SECCOMP_MODE_STRICT => return enter_strict_mode(area),
            SECCOMP_MODE_FILTER => {
                // SAFETY: the program's own filter (rt::raw: forwarded program calls).
                return install_program_filter(args[2], 0, || unsafe { raw::syscall6(raw::SYS_prctl, args) });
            }
            _ => {}
        }
    }
    if args[0] == PR_SET_TSC {
        // Stop using the TSC before the kernel makes rdtsc fault (it cannot
        // be turned back on for us alone; the clock is per process).
        // set_tsc_mode takes an unsigned int.
        if args[1] as u32 as u64 == PR_TSC_SIGSEGV {
            stats::tsc_disabled();
        }
    }
    // SAFETY: the program's own prctl, SUD excepted (rt::raw: forwarded
    // program calls).
    unsafe { raw::syscall6(raw::SYS_prctl, args) }
}

/// seccomp(2): the program's filter stacks on ours and still works. Its
/// traps of syscalls that a patched site re-issues from the gate could not be
/// shown to it against its own registers, so from now on no site is patched.
/// Strict mode is emulated.
#[inline(never)]
pub fn seccomp(area: &ThreadArea, args: [u64; 6]) -> i64 {
    match args[0] {
        SECCOMP_SET_MODE_FILTER => {
            // SAFETY: the program's own filter (rt::raw: forwarded program calls).
            install_program_filter(args[2], args[1], || unsafe { raw::syscall6(libc::SYS_seccomp, args) })
        }
        SECCOMP_SET_MODE_STRICT if args[1] == 0 && args[2] == 0 => enter_strict_mode(area),
        // SAFETY: as above.
        _ => unsafe { raw::syscall6(libc::SYS_seccomp, args) },
    }
}

/// Syscalls the library makes for itself after start-up, and what for: the
/// program's own filter applies to them too (it cannot tell the gate).
const REPORT_NEEDS: [i64; 19] = [
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_openat,
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_close,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_faccessat,
    libc::SYS_linkat,
    libc::SYS_poll,
    libc::SYS_getpid,
    libc::SYS_getppid,
    libc::SYS_clock_gettime,
    libc::SYS_prctl,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigpending,
    libc::SYS_rt_sigtimedwait,
];
const SIGNAL_NEEDS: [i64; 3] = [libc::SYS_rt_sigprocmask, libc::SYS_rt_tgsigqueueinfo, libc::SYS_tgkill];
/// What making a trace buffer the collector keeps takes
/// (measure::report::trace): without one of them, buffers stay private.
const KEPT_TRACE_NEEDS: [i64; 8] = [
    libc::SYS_memfd_create,
    libc::SYS_ftruncate,
    libc::SYS_socket,
    libc::SYS_connect,
    libc::SYS_sendmsg,
    libc::SYS_gettid,
    libc::SYS_prlimit64,
    libc::SYS_close,
];

/// Install the program's filter (`install` makes the call) after checking,
/// with the kernel's own rules, which of the library's syscalls it forbids:
/// those are named in one line, the report is given up if it needs them
/// (never written half-way, never killing the process at exit), and the
/// library makes no other syscall on its common path (the slow path of an
/// allowed syscall makes none of its own).
#[inline(never)]
fn install_program_filter(fprog: u64, flags: u64, install: impl FnOnce() -> i64) -> i64 {
    let (report, signals, kept_trace) = forbidden_by(fprog);
    // Copied now: the filter may forbid the mmap (own_filter).
    let copy = own_filter::copy(fprog);
    // Said before the filter is in place: saying it (a write, and checking
    // that stderr is still the program's) may need what the filter forbids.
    if report != 0 || signals != 0 {
        let mut l = Line::new();
        l.str("the program's seccomp filter forbids syscalls usertrap makes for itself:");
        let names = |l: &mut Line, list: &[i64], mask: u64| {
            for (i, nr) in list.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    l.str(" ").str(usertrap_core::syscalls::name(*nr as u64).unwrap_or("?"));
                }
            }
        };
        if report != 0 {
            names(&mut l, &REPORT_NEEDS, report);
            l.str(" (to write its report: this process's report will not be written)");
        }
        if signals != 0 {
            names(&mut l, &SIGNAL_NEEDS, signals);
            l.str(" (to pass SIGSEGV, SIGBUS, SIGILL and SIGSYS to the program's handlers: such a signal will end the process as the filter says)");
        }
        l.emit();
    }
    if !sigreturn_comes_back(fprog) {
        // The gate restorer's rt_sigreturn would end the process (or go to
        // a supervisor) at the next return of any handler of ours: they
        // return without it from now on (an errno comes back to the
        // restorer, which then does the same).
        signals::restore_in_user();
    }
    let r = install();
    if let Some(c) = copy {
        own_filter::keep(c, own_filter::installed(flags, r));
    }
    if r < 0 {
        return r;
    }
    crate::patch::install::stop_for_program_filter();
    if report != 0 {
        crate::measure::report::forbid();
    }
    if kept_trace != 0 {
        crate::measure::report::trace::forbid_kept();
    }
    if signals & 1 != 0 {
        // SIGNAL_NEEDS[0]: rt_sigprocmask.
        crate::emulate::signals::forbid_masks();
        crate::patch::install::forbid_fast_masks();
    }
    r
}

/// Which of REPORT_NEEDS and SIGNAL_NEEDS (bit i: entry i) the filter at
/// `fprog` (a struct sock_fprog) does not allow from the gate.
fn forbidden_by(fprog: u64) -> (u64, u64, u64) {
    let Ok([len, filter]) = raw::read_user::<[u64; 2]>(fprog) else { return (0, 0, 0) };
    let len = len as u16 as usize;
    let insn = |i: usize| raw::read_user::<seccomp::SockFilter>(filter.wrapping_add(8 * i as u64)).ok();
    let ip = arch::GATE_ADDR + arch::GATE_OFF_SYSCALL + 2;
    let mask = |list: &[i64]| {
        let mut m = 0u64;
        for (i, nr) in list.iter().enumerate() {
            if !seccomp::verdict_allows(seccomp::evaluate(len, insn, *nr as u32, ip)) {
                m |= 1 << i;
            }
        }
        m
    };
    (mask(&REPORT_NEEDS), mask(&SIGNAL_NEEDS), mask(&KEPT_TRACE_NEEDS))
}

/// Whether the library's rt_sigreturn, made by the gate's restorer, either
/// passes the filter at `fprog` or comes back to the restorer (RET_ERRNO,
/// RET_TRACE without a tracer) instead of ending the thread or going to a
/// signal handler or a supervisor. Unreadable: taken as passing (the
/// kernel refuses the filter).
fn sigreturn_comes_back(fprog: u64) -> bool {
    use linux_raw_sys::ptrace::{SECCOMP_RET_ACTION_FULL, SECCOMP_RET_ERRNO, SECCOMP_RET_TRACE};
    let Ok([len, filter]) = raw::read_user::<[u64; 2]>(fprog) else { return true };
    let len = len as u16 as usize;
    let insn = |i: usize| raw::read_user::<seccomp::SockFilter>(filter.wrapping_add(8 * i as u64)).ok();
    // After the restorer's `mov $15, %rax` (7 bytes) and `syscall` (2).
    let ip = arch::GATE_RESTORER + 9;
    let v = seccomp::evaluate(len, insn, raw::SYS_rt_sigreturn as u32, ip);
    let action = v & SECCOMP_RET_ACTION_FULL;
    seccomp::verdict_allows(v) || action == SECCOMP_RET_ERRNO || action == SECCOMP_RET_TRACE
}

/// Strict mode (SECCOMP_SET_MODE_STRICT, PR_SET_SECCOMP 1): only read, write,
/// exit and rt_sigreturn, anything else kills the thread with SIGKILL, and
/// rdtsc faults. The kernel's strict mode cannot be entered under the seccomp
/// backend (a filter is installed) and would kill the library's own syscalls
/// under SUD, so the library enforces it for the thread instead (every one
/// of its syscalls passes through here) and turns off the TSC as the kernel
/// would. The program's view differs only in /proc (Seccomp: 0).
fn enter_strict_mode(area: &ThreadArea) -> i64 {
    stats::tsc_disabled();
    let _ = raw::prctl_set_tsc(libc::PR_TSC_SIGSEGV);
    area.strict.set(true);
    0
}

/// A syscall of a thread in (emulated) strict mode that the kernel would not
/// allow: end the thread with SIGKILL, as the kernel's do_exit(SIGKILL); the
/// last thread's SIGKILL is the process's, after its report.
#[inline(never)]
#[cold]
pub fn strict_violation(area: &ThreadArea) -> ! {
    if thread::retire(area) {
        crate::measure::report::at_exit(crate::measure::report::Exit::Signal(libc::SIGKILL));
    }
    strict_kill(area)
}

/// The same from the fast path, which must not reach the report's code
/// (vector registers): the process ends without a report, as a SIGKILL does.
#[inline(never)]
#[cold]
pub fn strict_violation_fast(area: &ThreadArea) -> ! {
    thread::retire(area);
    strict_kill(area)
}

fn strict_kill(area: &ThreadArea) -> ! {
    if thread::live_threads() == 0 {
        let (pid, tid) = area.ids();
        let _ = raw::tgkill(pid, tid, libc::SIGKILL);
    }
    raw::exit_thread(0)
}

/// The syscalls strict mode allows (mode1_syscalls in kernel/seccomp.c).
#[inline(always)]
pub fn strict_allows(nr: i64) -> bool {
    matches!(nr, libc::SYS_read | raw::SYS_write | raw::SYS_exit | raw::SYS_rt_sigreturn)
}

/// Does [addr, addr+len) touch the gate, the trap table, the trampolines, or
/// a thread's area (its state and signal stack) or figures?
fn touches_ours(addr: u64, len: u64) -> bool {
    let end = addr.saturating_add(len);
    (addr < arch::GATE_ADDR + arch::GATE_LEN && end > arch::GATE_ADDR) || owned::overlaps(addr, len)
}

const SHM_RND: u64 = 0o20000;
const SHM_REMAP: u64 = 0o40000;
/// Advice that leaves a mapping's contents, protection and inheritance as
/// they are (hints, paging, dumps, KSM, huge pages, population).
fn harmless_advice(advice: u64) -> bool {
    matches!(advice as i32, 0..=3 | 11..=17 | 19..=23 | 25)
}

/// Where shmat(SHM_REMAP) would map (it replaces whatever is there), or None.
fn shmat_remap_range(args: [u64; 6]) -> Option<(u64, u64)> {
    let (id, addr, flags) = (args[0], args[1], args[2]);
    if flags & SHM_REMAP == 0 || addr == 0 {
        return None;
    }
    // If the segment cannot be inspected, the kernel refuses shmat too.
    let ds = raw::shmctl_stat(id as i32).ok()?;
    let addr = if flags & SHM_RND != 0 { addr & !4095 } else { addr };
    Some((addr, ds.shm_segsz as u64))
}

/// Would this call unmap, replace, move, reprotect, empty or change the
/// inheritance of the library's own mappings? Integer-only: also used on
/// the fast path.
#[inline(always)]
pub fn touches_own_memory(nr: i64, args: [u64; 6]) -> bool {
    match nr {
        raw::SYS_munmap | raw::SYS_mprotect | libc::SYS_pkey_mprotect => touches_ours(args[0], args[1]),
        raw::SYS_mremap => {
            touches_ours(args[0], args[1])
                || (args[3] & libc::MREMAP_FIXED as u64 != 0 && touches_ours(args[4], args[2]))
        }
        // MAP_FIXED_NOREPLACE never replaces a mapping: the kernel itself
        // answers EEXIST where it would overlap ours.
        raw::SYS_mmap => {
            args[3] & libc::MAP_FIXED as u64 != 0
                && args[3] & libc::MAP_FIXED_NOREPLACE as u64 == 0
                && touches_ours(args[0], args[1])
        }
        libc::SYS_madvise => !harmless_advice(args[2]) && touches_ours(args[0], args[1]),
        libc::SYS_shmat => shmat_remap_range(args).is_some_and(|(a, l)| touches_ours(a, l)),
        _ => false,
    }
}

/// Changing the gate, the trap table, the trampolines or a thread's area
/// would cut the library's only ways to make syscalls or lose its state:
/// refused with EINVAL, and said in one line.
#[inline(never)]
pub fn guard_own_memory(nr: i64, args: [u64; 6]) -> Option<i64> {
    if !touches_own_memory(nr, args) {
        return None;
    }
    let name = usertrap_core::syscalls::name(nr as u64).unwrap_or("?");
    let addr = if nr == libc::SYS_shmat { args[1] } else { args[0] };
    let mut line = Line::new();
    let mut hex = [0u8; 18];
    line.str("the program's ").str(name).str(" at ").bytes(hex_addr(addr, &mut hex));
    if nr == libc::SYS_madvise {
        line.str(" (advice ").num(args[2]).str(")");
    }
    line.str(" would change usertrap's own memory (gate, trap table, trampolines, or a thread's signal stack or figures): refused with EINVAL")
        .emit();
    Some(-raw::EINVAL)
}

/// The calls that can unmap, replace, move or reprotect memory, on either
/// path: refused when they would change the library's own memory, and the
/// patch registry told when they change code that holds recorded sites (see
/// install::code_changing). None: not such a call. `report`: say in one
/// line why a call is refused (the slow path; the fast path must stay
/// integer-only and just refuses).
#[inline(always)]
pub fn memory_call(nr: i64, args: [u64; 6], report: bool) -> Option<i64> {
    use crate::patch::install::{code_changing, CodeChange};
    if !matches!(
        nr,
        raw::SYS_munmap
            | raw::SYS_mprotect
            | libc::SYS_pkey_mprotect
            | raw::SYS_mremap
            | raw::SYS_mmap
            | libc::SYS_madvise
            | libc::SYS_shmat
            | libc::SYS_shmdt
    ) {
        return None;
    }
    if report {
        if let Some(e) = guard_own_memory(nr, args) {
            return Some(e);
        }
    } else if touches_own_memory(nr, args) {
        refused_on_fast_path(nr);
        return Some(-raw::EINVAL);
    }
    let (addr, len, flags) = (args[0], args[1], args[3]);
    let replaces =
        nr == raw::SYS_mmap && flags & libc::MAP_FIXED as u64 != 0 && flags & libc::MAP_FIXED_NOREPLACE as u64 == 0;
    match nr {
        raw::SYS_mprotect | libc::SYS_pkey_mprotect if args[2] & libc::PROT_WRITE as u64 != 0 => {
            code_changing(addr, len, CodeChange::Rewritable)
        }
        raw::SYS_mremap => code_changing(addr, len, CodeChange::Rewritable),
        _ => {}
    }
    // Whether existing mappings may go, move or change protection (the
    // patcher's object cache must not be trusted meanwhile and after).
    let remaps = match nr {
        raw::SYS_mmap => replaces,
        libc::SYS_madvise => false,
        _ => true,
    };
    let changing = remaps.then(maps::MappingChange::begin);
    // SAFETY: the program's own memory call, checked above not to touch the
    // library's mappings (rt::raw: forwarded program calls).
    let r = unsafe { raw::syscall6(nr, args) };
    drop(changing);
    if r >= 0 {
        match nr {
            raw::SYS_munmap => code_changing(addr, len, CodeChange::Gone),
            raw::SYS_mmap => {
                if replaces {
                    code_changing(addr, len, CodeChange::Gone);
                }
                crate::patch::install::code_mapped(r as u64, args);
            }
            libc::SYS_shmat => {
                if let Some((a, l)) = shmat_remap_range(args) {
                    code_changing(a, l, CodeChange::Gone);
                }
            }
            // The target of a fixed move was replaced.
            raw::SYS_mremap if flags & libc::MREMAP_FIXED as u64 != 0 => {
                code_changing(args[4], args[2], CodeChange::Gone)
            }
            // Private pages dropped: the code is the file's (or zeros) again.
            libc::SYS_madvise
                if matches!(args[2] as i32, libc::MADV_DONTNEED | libc::MADV_FREE | libc::MADV_REMOVE) =>
            {
                code_changing(addr, len, CodeChange::Gone)
            }
            _ => {}
        }
    }
    Some(r)
}

/// `0x...` of `v`, in `buf`.
fn hex_addr(v: u64, buf: &mut [u8; 18]) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut n = 0;
    let mut shift = 60i32;
    while shift > 0 && (v >> shift) & 0xf == 0 {
        shift -= 4;
    }
    for b in [b'0', b'x'] {
        if let Some(slot) = buf.get_mut(n) {
            *slot = b;
            n += 1;
        }
    }
    while shift >= 0 {
        if let (Some(slot), Some(d)) = (buf.get_mut(n), DIGITS.get(((v >> shift) & 0xf) as usize)) {
            *slot = *d;
            n += 1;
        }
        shift -= 4;
    }
    buf.get(..n).unwrap_or(&[])
}

/// The one line for a refusal on the fast path, which must stay
/// integer-only (no formatting): a fixed text per call.
#[inline(never)]
fn refused_on_fast_path(nr: i64) {
    macro_rules! line {
        ($name:literal) => {
            concat!(
                "usertrap: the program's ",
                $name,
                " would change usertrap's own memory (gate, trap table, trampolines, or a thread's signal stack or figures): refused with EINVAL\n"
            )
            .as_bytes()
        };
    }
    let text: &[u8] = match nr {
        raw::SYS_munmap => line!("munmap"),
        raw::SYS_mprotect => line!("mprotect"),
        libc::SYS_pkey_mprotect => line!("pkey_mprotect"),
        raw::SYS_mremap => line!("mremap"),
        raw::SYS_mmap => line!("mmap"),
        libc::SYS_madvise => line!("madvise"),
        _ => line!("shmat"),
    };
    raw::write_all(2, text);
}

// --- tracers ---------------------------------------------------------------------

const PTRACE_TRACEME: u64 = 0;

/// ptrace: after a successful PTRACE_TRACEME this thread is traced by its
/// parent, which sees every signal it receives as a stop, the library's
/// SIGSYS traps included (LTP ptrace01: "Child is stopped unexpectedly").
/// Under SUD the process then stops being intercepted (`stop_intercepting`);
/// a seccomp filter cannot be removed, so there the tracer keeps seeing
/// them, and a note says so.
#[inline(never)]
pub fn ptrace(area: &ThreadArea, uc: &mut Ucontext, args: [u64; 6]) -> i64 {
    let traceme = args[0] == PTRACE_TRACEME;
    // A vfork child (gdb starts its program so) runs while its parent waits
    // for it to exec or exit; traced, it stops at its next SIGSYS, and its
    // parent, the tracer, never gets to resume it.
    let vfork_child = area.vfork_child.get();
    if traceme && vfork_child && !backend::is_sud() {
        Line::new().str("pid ").num(raw::getpid() as u64).str(": PTRACE_TRACEME in a vfork child refused with EPERM: under the seccomp backend its first intercepted syscall would stop it for a tracer that waits for it (use the sud backend)").emit();
        return -raw::EPERM;
    }
    // SAFETY: the program's own ptrace (rt::raw: forwarded program calls).
    let r = unsafe { raw::syscall6(libc::SYS_ptrace, args) };
    if r != 0 || !traceme {
        return r;
    }
    if !backend::is_sud() {
        Line::new().str("pid ").num(raw::getpid() as u64).str(" asked to be traced (PTRACE_TRACEME): under the seccomp backend its tracer sees usertrap's SIGSYS at every intercepted syscall (the filter cannot be removed; the sud backend stops intercepting instead)").emit();
        return r;
    }
    if !vfork_child && thread::live_threads() > 1 {
        // Other threads would run patched sites while they are put back, and
        // keep trapping: only this one is traced; the tracer sees its traps.
        Line::new().str("pid ").num(raw::getpid() as u64).str(" asked to be traced (PTRACE_TRACEME) with other threads running: still intercepted, its tracer sees usertrap's SIGSYS").emit();
        return r;
    }
    stop_intercepting(area, uc, vfork_child);
    r
}

/// The process's only thread leaves the library for good, as if it had never
/// been preloaded: its report is written now (how: traced), every patched
/// site gets its `mov $nr,%eax; syscall` back, the kernel gets the program's
/// own signal dispositions and mask, and Syscall User Dispatch is turned off.
/// Nothing of the library runs for it afterwards: its syscalls, threads,
/// children and execs (which preload the library again; see
/// init::stand_aside_when_traced_by_usertrap) go straight to the kernel. The
/// library's signal stack stays its alternate stack until the program sets
/// its own. A vfork child (`shared_memory`) leaves the sites and the patcher
/// alone: they are its parent's, whose other threads run them; it only
/// execs or exits, and a patched site it runs meanwhile raises no signal.
fn stop_intercepting(area: &ThreadArea, uc: &mut Ucontext, shared_memory: bool) {
    crate::measure::report::at_exit(crate::measure::report::Exit::Traced);
    // A vfork child keeps its parent's patched sites: its exec and exit
    // there are the kernel's from now on (trap::dispatch), not declined to
    // a trap that no longer comes.
    area.left_library.set(true);
    if !shared_memory {
        crate::patch::install::stop_for_program_filter();
        if let Ok(mem) = crate::patch::write::Mem::open() {
            crate::patch::registry::for_each_patched(|s| {
                let _ = crate::patch::write::unpatch(&mem, s);
            });
        }
    }
    // Dispatch off first: from here on a syscall outside the gate must not
    // trap, since SIGSYS gets the program's disposition back.
    backend::sud::disarm_this_thread();
    // No note: the report says how it ended, and nothing differs from native.
    signals::give_back_to_kernel(area, uc);
}
