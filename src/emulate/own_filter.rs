//! The program's own seccomp filters, kept so that the calls the library
//! emulates meet them as natively. The kernel runs a filter on every syscall
//! before the call does anything, with the program's registers and the
//! address after its `syscall`. Under the library an emulated call is
//! answered by the library (rt_sigprocmask, sigaltstack, rt_sigpending, an
//! owned signal's rt_sigaction, readlink of /proc/self/exe, ARCH_GET_GS,
//! the refusals of SUD and of the library's memory) or made from the gate
//! with other arguments: the kernel never sees the program's call. So the
//! slow path runs the filters itself, first, with the program's number,
//! registers and site, and does what the kernel does with the verdict:
//! - ALLOW, LOG: the emulation runs (a LOG verdict is not logged);
//! - ERRNO: -data (at most 4095), nothing done;
//! - TRAP: SIGSYS for the program (si_code SYS_SECCOMP, the filter's data in
//!   si_errno, si_call_addr its site, rax its number), forced as the kernel
//!   forces it: blocked or ignored, it ends the process;
//! - KILL_PROCESS (and any action the kernel does not know), KILL_THREAD of
//!   the only thread: the process ends with SIGSYS after its report;
//!   KILL_THREAD of one of several: the thread ends;
//! - TRACE, USER_NOTIF: the emulation runs, as for ALLOW. These hand the
//!   call to a tracer or supervisor, which would see the library's state,
//!   not the program's (its mask, its alternate stack): not faithful either
//!   way; calls the library makes from the gate still meet them in the
//!   kernel (README, Limits).
//!
//! Filters are copied when installed (before: the filter may forbid the
//! mmap), kept for the process, and run newest first with the kernel's
//! precedence (the lowest action wins; among equals, the newest filter's
//! data). They are taken as the whole process's: a filter installed without
//! TSYNC in a process with other threads applies natively only to its
//! thread and that thread's later children.
//!
//! Never: run on the fast path (an emulated fast call is declined to the
//! slow path while a filter is kept: see trap::dispatch).

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use linux_raw_sys::ptrace::{
    SECCOMP_RET_ACTION_FULL, SECCOMP_RET_ALLOW, SECCOMP_RET_DATA, SECCOMP_RET_ERRNO, SECCOMP_RET_KILL_THREAD,
    SECCOMP_RET_LOG, SECCOMP_RET_TRACE, SECCOMP_RET_TRAP, SECCOMP_RET_USER_NOTIF,
};

use crate::emulate::signals;
use crate::emulate::Outcome;
use crate::rt::frame::{Siginfo, Ucontext, SYS_SECCOMP};
use crate::rt::log::Line;
use crate::rt::raw;
use crate::rt::thread::{self, ThreadArea};
use crate::trap::backend::seccomp::{self, SockFilter};

/// Filters kept (a program that stacks more is checked against its first
/// ones, and told so).
const SLOTS: usize = 32;
/// BPF_MAXINSNS: the kernel refuses a longer filter.
const MAX_INSNS: usize = 4096;
/// The largest errno a RET_ERRNO returns (MAX_ERRNO).
const MAX_ERRNO: u32 = 4095;
const AUDIT_ARCH_X86_64: u32 = linux_raw_sys::ptrace::AUDIT_ARCH_X86_64;
const SECCOMP_FILTER_FLAG_NEW_LISTENER: u64 = 1 << 3;

/// One kept filter: its instructions (a mapping of ours) and their count;
/// `addr` is 0 until the filter is in place (stored last, with Release).
struct Slot {
    addr: AtomicU64,
    len: AtomicU32,
}

static FILTERS: [Slot; SLOTS] = [const { Slot { addr: AtomicU64::new(0), len: AtomicU32::new(0) } }; SLOTS];
/// Slots taken (some may still be filling).
static TAKEN: AtomicUsize = AtomicUsize::new(0);

/// Whether the program has installed a filter of its own: the one check the
/// fast path makes for it.
#[inline(always)]
pub fn any() -> bool {
    TAKEN.load(Ordering::Relaxed) != 0
}

/// A copy of the filter the program is about to install.
pub struct Copy {
    addr: u64,
    map_len: usize,
    len: usize,
}

/// Copy the filter at `fprog` (a struct sock_fprog), before it is
/// installed. None: unreadable or too long (the kernel refuses it), or no
/// memory.
pub fn copy(fprog: u64) -> Option<Copy> {
    let [len, filter] = raw::read_user::<[u64; 2]>(fprog).ok()?;
    let len = len as u16 as usize;
    if len == 0 || len > MAX_INSNS {
        return None;
    }
    let map_len = (len * 8).next_multiple_of(4096);
    let addr = raw::mmap_anon(map_len, libc::PROT_READ | libc::PROT_WRITE).ok()?;
    // SAFETY: `addr` is a fresh mapping of ours of map_len >= len * 8 bytes.
    if unsafe { raw::copy_user(addr, filter, len * 8) }.is_err() {
        // SAFETY: the mapping just made, not used.
        let _ = unsafe { raw::munmap(addr, map_len) };
        return None;
    }
    Some(Copy { addr, map_len, len })
}

/// Whether seccomp(2) with `flags` (0 for prctl) returning `r` installed
/// the filter: 0, or a listener's descriptor; a positive value without
/// NEW_LISTENER is the thread that made TSYNC fail (nothing installed).
pub fn installed(flags: u64, r: i64) -> bool {
    r == 0 || (r > 0 && flags & SECCOMP_FILTER_FLAG_NEW_LISTENER != 0)
}

/// The filter copied as `c` is now in place: keep it (or, not installed,
/// give its memory back).
pub fn keep(c: Copy, in_place: bool) {
    if !in_place {
        // SAFETY: the copy's own mapping, never read: the filter is not kept.
        let _ = unsafe { raw::munmap(c.addr, c.map_len) };
        return;
    }
    let i = TAKEN.fetch_add(1, Ordering::AcqRel);
    let Some(slot) = FILTERS.get(i) else {
        TAKEN.store(SLOTS, Ordering::Relaxed);
        Line::new()
            .str("the program installed more than 32 seccomp filters: the calls usertrap answers itself are checked against the first 32 only")
            .emit();
        return;
    };
    crate::rt::owned::add(c.addr, c.map_len as u64);
    slot.len.store(c.len as u32, Ordering::Relaxed);
    slot.addr.store(c.addr, Ordering::Release);
}

/// What the kept filters return together for syscall `nr` with registers
/// `args` from `ip` (seccomp_run_filters: the lowest action, as a signed
/// number, wins; the newest filter first, so among equal actions its data).
fn verdict(nr: i64, args: &[u64; 6], ip: u64) -> u32 {
    let n = TAKEN.load(Ordering::Acquire).min(SLOTS);
    let mut ret = SECCOMP_RET_ALLOW;
    for slot in FILTERS.iter().take(n).rev() {
        let addr = slot.addr.load(Ordering::Acquire);
        if addr == 0 {
            continue;
        }
        let len = slot.len.load(Ordering::Relaxed) as usize;
        let insn = |i: usize| {
            if i < len {
                raw::read_user::<SockFilter>(addr.wrapping_add(8 * i as u64)).ok()
            } else {
                None
            }
        };
        let cur = seccomp::evaluate_call(len, insn, nr as u32, ip, args);
        if ((cur & SECCOMP_RET_ACTION_FULL) as i32) < ((ret & SECCOMP_RET_ACTION_FULL) as i32) {
            ret = cur;
        }
    }
    ret
}

/// Whether the kept filters refuse, from the gate, what the library of an
/// image exec'd now needs before anything else under `sud`: rt_sigaction
/// (its handlers) and the prctl that arms SUD. That image is exec'd by the
/// kernel, not the launcher (which would need them too), and its library
/// steps aside (start::init). Filters installed before this image started
/// are not known here.
pub fn refuses_a_sud_start() -> bool {
    if !any() {
        return false;
    }
    let ip = crate::rt::arch::GATE_ADDR + crate::rt::arch::GATE_OFF_SYSCALL + 2;
    let refused = |nr: i64, args: [u64; 6]| !seccomp::verdict_allows(verdict(nr, &args, ip));
    const PR_SET_SYSCALL_USER_DISPATCH: u64 = 59;
    const PR_SYS_DISPATCH_ON: u64 = 1;
    let gate = [crate::rt::arch::GATE_ADDR, crate::rt::arch::GATE_LEN];
    refused(libc::SYS_rt_sigaction, [libc::SIGSYS as u64, 0, 0, 8, 0, 0])
        || refused(raw::SYS_prctl, [PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, gate[0], gate[1], 0, 0])
}

/// Whether the kept filters refuse the library's execveat of the kept
/// launcher (`fd`, "", AT_EMPTY_PATH) from the gate, where the program
/// itself calls execve (filters that allow execve and not execveat exist):
/// exec then names the launcher through /proc/self/fd with execve.
pub fn refuses_execveat(fd: i32) -> bool {
    if !any() {
        return false;
    }
    let ip = crate::rt::arch::GATE_ADDR + crate::rt::arch::GATE_OFF_SYSCALL + 2;
    const AT_EMPTY_PATH: u64 = 0x1000;
    !seccomp::verdict_allows(verdict(libc::SYS_execveat, &[fd as u64, 0, 0, 0, AT_EMPTY_PATH, 0], ip))
}

/// The slow path's check of an emulated call (`args` the program's
/// registers, `uc` its state, rip after its `syscall`): None, the emulation
/// runs; or what the kernel would have done instead.
#[inline(never)]
pub fn check(area: &ThreadArea, uc: &mut Ucontext, nr: i64, args: &[u64; 6]) -> Option<Outcome> {
    let rip = uc.mc.rip;
    // A declined fast call traps from its trampoline: the filter sees the
    // program's own site, as natively.
    let site = if rip < 1 << 31 && crate::patch::registry::any_ext() {
        crate::patch::registry::program_site(rip)
    } else {
        rip
    };
    let ret = verdict(nr, args, site);
    let data = ret & SECCOMP_RET_DATA;
    let info = || Siginfo {
        si_signo: libc::SIGSYS,
        si_errno: data as i32,
        si_code: SYS_SECCOMP,
        addr: rip,
        syscall: nr as i32,
        arch: AUDIT_ARCH_X86_64,
        ..Siginfo::default()
    };
    match ret & SECCOMP_RET_ACTION_FULL {
        SECCOMP_RET_ALLOW | SECCOMP_RET_LOG | SECCOMP_RET_TRACE | SECCOMP_RET_USER_NOTIF => None,
        SECCOMP_RET_ERRNO => Some(Outcome::Return(-(data.min(MAX_ERRNO) as i64))),
        SECCOMP_RET_TRAP => {
            // syscall_rollback(): the handler sees the number in rax.
            uc.mc.rax = nr as u64;
            let mut info = info();
            signals::deliver_to_program(libc::SIGSYS, &mut info, uc, area);
            Some(Outcome::Resume)
        }
        SECCOMP_RET_KILL_THREAD if thread::live_threads() > 1 => {
            // do_exit(SIGSYS): this thread only; the last one left ends the
            // process as below.
            if !thread::retire(area) {
                raw::exit_thread(0)
            }
            uc.mc.rax = nr as u64;
            signals::die_of_filter(&info(), uc);
            Some(Outcome::Resume)
        }
        _ => {
            // KILL_PROCESS, KILL_THREAD of the only thread, or an unknown
            // action: SIGSYS with its default action, whatever the
            // program's disposition and mask (force_sig_seccomp).
            uc.mc.rax = nr as u64;
            signals::die_of_filter(&info(), uc);
            Some(Outcome::Resume)
        }
    }
}
