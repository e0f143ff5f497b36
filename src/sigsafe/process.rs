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
//!   the program's own registers and mask, outside any handler.
//! - fork (no new stack, no shared memory): runs in the handler; the child
//!   continues in its copy of the handler and fixes up per-process state.
//! - execve: see `exec` (the launcher runs the new program).

use crate::arch;
use crate::backend;
use crate::patch::table;
use crate::sigsafe::dispatch::Outcome;
use crate::sigsafe::frame::{self, Ucontext};
use crate::sigsafe::log::Line;
use crate::sigsafe::raw;
use crate::sigsafe::signals;
use crate::sigsafe::stats;
use crate::sigsafe::thread::{self, ThreadArea};

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

#[inline(never)]
pub fn clone(area: &ThreadArea, uc: &mut Ucontext, nr: i64, args: [u64; 6]) -> Outcome {
    let (flags, stack) = match nr {
        raw::SYS_clone => (args[0], args[1]),
        raw::SYS_clone3 => {
            let size = args[1] as usize;
            if !(CLONE_ARGS_SIZE_VER0..=4096).contains(&size) {
                return Outcome::Return(raw::syscall6(nr, args)); // the kernel's error
            }
            let mut ca = [0u64; CLONE_ARGS_SIZE / 8];
            let n = size.min(CLONE_ARGS_SIZE);
            if raw::copy_from_user(ca.as_mut_ptr() as *mut u8, args[0] as *const u8, n).is_err() {
                return Outcome::Return(-raw::EFAULT);
            }
            // struct clone_args: flags [0], ..., stack [5], stack_size [6].
            let (stack, stack_size) = (ca[5], ca[6]);
            (ca[0], if stack != 0 { stack.wrapping_add(stack_size) } else { 0 })
        }
        raw::SYS_fork => (SIGCHLD, 0),
        _ => (CLONE_VM | CLONE_VFORK | SIGCHLD, 0), // vfork
    };
    if flags & CLONE_VFORK != 0 {
        vfork_via_stub(area, uc, nr, flags)
    } else if stack == 0 && flags & CLONE_VM == 0 {
        fork_in_handler(area, nr, args, flags)
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

fn fork_in_handler(area: &ThreadArea, nr: i64, args: [u64; 6], flags: u64) -> Outcome {
    let r = raw::syscall6(nr, args);
    if r == 0 {
        after_fork_in_child(area, flags);
    }
    Outcome::Return(r)
}

/// Per-process state in a new process (fork, or clone without CLONE_VM).
fn after_fork_in_child(area: &ThreadArea, flags: u64) {
    thread::after_fork_in_child(area);
    signals::after_fork_in_child();
    crate::sigsafe::report::after_fork_in_child();
    crate::patch::patcher::after_fork_in_child();
    stats::after_fork_in_child();
    if flags & CLONE_CLEAR_SIGHAND != 0 {
        signals::reset_after_clear_sighand(&crate::sigsafe::sigsys::handler_action());
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
    let written = raw::write_user(uc_addr, &child_uc)
        .and_then(|_| raw::write_user(header_addr, &header))
        .and_then(|_| {
            if fp_size != 0 {
                raw::copy_to_user(fp_dst as *mut u8, uc.mc.fpstate as *const u8, fp_size)
            } else {
                Ok(())
            }
        });
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
/// blocked, before the rt_sigreturn that starts the program's code.
#[no_mangle]
pub extern "C" fn ut_clone_child_setup(frame_base: u64) {
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
}

// --- other syscalls the library must not let through unchanged ------------------

const ARCH_SET_GS: u64 = 0x1001;
const ARCH_GET_GS: u64 = 0x1004;

/// arch_prctl: the GS base belongs to the library (it finds each thread's
/// area through it); the program sees 0 and may not change it.
#[inline(never)]
pub fn arch_prctl(args: [u64; 6]) -> i64 {
    match args[0] {
        ARCH_SET_GS => {
            Line::new().str("the program tried to set the GS base (arch_prctl ARCH_SET_GS), which usertrap needs for itself: refused with EPERM").emit();
            -raw::EPERM
        }
        ARCH_GET_GS => match raw::write_user(args[1], &0u64) {
            Ok(()) => 0,
            Err(e) => -e,
        },
        _ => raw::syscall6(raw::SYS_arch_prctl, args),
    }
}

/// prctl: Syscall User Dispatch cannot be shared with the program; a seccomp
/// filter of the program's own stops patching (see `seccomp`).
#[inline(never)]
pub fn prctl(args: [u64; 6]) -> i64 {
    if args[0] == linux_raw_sys::prctl::PR_SET_SYSCALL_USER_DISPATCH as u64 {
        // Under SUD the kernel's dispatch is ours; under seccomp the program's
        // dispatch would stop the library's own syscalls from the gate too.
        Line::new().str("the program tried to configure Syscall User Dispatch, which usertrap cannot share: refused with EBUSY").emit();
        return -raw::EBUSY;
    }
    let r = raw::syscall6(raw::SYS_prctl, args);
    if r == 0 && args[0] == libc::PR_SET_SECCOMP as u64 {
        crate::patch::patcher::stop_for_program_filter();
    }
    r
}

/// seccomp(2): the program's filter stacks on ours and still works. Its
/// traps of syscalls that a patched site re-issues from the gate could not be
/// shown to it against its own registers, so from now on no site is patched.
pub fn seccomp(args: [u64; 6]) -> i64 {
    let r = raw::syscall6(libc::SYS_seccomp, args);
    if r >= 0 && args[0] == 1 {
        // SECCOMP_SET_MODE_FILTER
        crate::patch::patcher::stop_for_program_filter();
    }
    r
}

/// Does [addr, addr+len) touch the gate, the trap table or the trampolines?
fn touches_ours(addr: u64, len: u64) -> bool {
    let end = addr.saturating_add(len);
    (addr < arch::GATE_ADDR + arch::GATE_LEN && end > arch::GATE_ADDR) || table::overlaps_ours(addr, len)
}

/// Would munmap/mprotect/mremap/mmap(MAP_FIXED) change the library's own
/// mappings? Integer-only: also used on the fast path.
#[inline(always)]
pub fn touches_own_memory(nr: i64, args: [u64; 6]) -> bool {
    match nr {
        raw::SYS_munmap | raw::SYS_mprotect => touches_ours(args[0], args[1]),
        raw::SYS_mremap => touches_ours(args[0], args[1]) || (args[3] & libc::MREMAP_FIXED as u64 != 0 && touches_ours(args[4], args[2])),
        raw::SYS_mmap => args[3] & (libc::MAP_FIXED | libc::MAP_FIXED_NOREPLACE) as u64 != 0 && touches_ours(args[0], args[1]),
        _ => false,
    }
}

/// Unmapping, remapping or reprotecting the gate or the trap table would cut
/// the library's only ways to make syscalls: refused with EINVAL.
#[inline(never)]
pub fn guard_own_memory(nr: i64, args: [u64; 6]) -> Option<i64> {
    if touches_own_memory(nr, args) {
        Line::new().str("the program tried to unmap, remap or reprotect usertrap's own memory (gate or trap table): refused with EINVAL").emit();
        Some(-raw::EINVAL)
    } else {
        None
    }
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
    let r = raw::syscall6(libc::SYS_ptrace, args);
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
    crate::sigsafe::report::at_exit(crate::sigsafe::report::Exit::Traced);
    if !shared_memory {
        crate::patch::patcher::stop_for_program_filter();
        if let Ok(mem) = crate::patch::write::Mem::open() {
            crate::patch::registry::for_each_patched(|s| {
                let _ = crate::patch::write::unpatch_site(&mem, s.key - 5, s.slot as u64, s.nr);
            });
        }
    }
    // Dispatch off first: from here on a syscall outside the gate must not
    // trap, since SIGSYS gets the program's disposition back.
    backend::sud::disarm_this_thread();
    // No note: the report says how it ended, and nothing differs from native.
    signals::give_back_to_kernel(area, uc);
}
