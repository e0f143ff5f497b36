//! SIGSEGV, SIGBUS and SIGILL: faults of our fault-tolerant copies (resume at
//! their fixup: SIGSEGV for an unmapped or protected page, SIGBUS for a page
//! of a shared file mapping past the file's end), faults at patched sites
//! (run the syscall; SIGSEGV and SIGILL only), and everything else, which
//! belongs to the program (its handler, or its default action).
//!
//! Patched-site faults (handle_fault):
//! - SIGILL at site+5, on the 0x06 byte where the old `syscall` began: the
//!   thread ran the old `mov` before the patch, or was caught between the
//!   patch's writes, or branched straight to the old `syscall`. We run the
//!   syscall with the thread's current rax (not the site's own number, which
//!   would be wrong for the branch case; gVisor rewinds instead) and resume at
//!   site+7. One exception: a thread that decoded the site between write 2 and
//!   write 3 loaded the jump's own bytes as the immediate ("torn" eax, never a
//!   valid syscall number): it meant the site's syscall. A `restart_syscall`
//!   (rax 219) simply runs here, before our sigreturn resets the restart block.
//!   The same at the `syscall` of a Form R or P site (patch/forms.rs), with
//!   rax as it is.
//! - SIGILL at another instruction boundary of a Form R range (0x06 or an
//!   invalid byte of the jump): the thread ran the range's instructions
//!   before it natively; it resumes at the trampoline's copy of that
//!   instruction.
//! - SIGSEGV at the site itself, whose bytes are still our jump: its slot is
//!   not readable (the trap table was unmapped behind our back). The site's
//!   own syscall is run, as if the jump had worked (Form R: resumed at the
//!   trampoline's start).
//!
//! - SIGILL where a site was just given back (registry::retire) and the
//!   byte is the original again: the thread faulted on our invalid byte
//!   before it was restored; it runs the original instruction.
//!
//! Never: take a fault at a site for the library's own unless the bytes
//! there are still the ones it wrote (or, just given back, the program's).

use crate::emulate::signals::{self, SIGBUS, SIGILL, SIGSEGV};
use crate::patch::forms;
use crate::patch::install;
use crate::patch::registry::{self, PATCHED, PATCHING};
use crate::patch::write::torn_eax;
use crate::rt::arch;
use crate::rt::frame::{Siginfo, Ucontext};
use crate::rt::raw::{self, KernelSigaction};
use crate::rt::thread;
use crate::rt::thread::out_of_memory;
use crate::trap::sigsys::run_for_program;

pub extern "C" fn on_fault(sig: i32, info: *mut Siginfo, ctx: *mut core::ffi::c_void) {
    // SAFETY: as in on_sigsys: kernel-provided pointers into our frame.
    let (info, uc) = unsafe { (&mut *info, &mut *ctx.cast::<Ucontext>()) };
    signals::take_passed_on(info);
    // Only a fault (si_code > 0) can be ours. A SIGSEGV, SIGBUS or SIGILL sent by
    // kill, tgkill or sigqueue (si_code <= 0) may arrive while the thread is
    // at a fault-tolerant copy or about to run a patched site's jump: it is
    // the program's, wherever it lands.
    let fault = info.si_code > 0;
    if fault {
        if let Some(fixup) = arch::safe_copy_fixup(uc.mc.rip) {
            uc.mc.rip = fixup;
            return;
        }
    }
    let registered = if fault { None } else { thread::current_registered() };
    let area = match registered {
        // Sent: SIGSEGV, SIGBUS and SIGILL stay blocked (our sa_mask) until our
        // sigreturn, so a storm of them cannot nest this handler; the program's
        // handler is entered after it (delivery.rs), with its own mask.
        Some(a) => a,
        None => {
            // From here on as with SA_NODEFER: a fault while they are blocked
            // would kill the process.
            raw::sigprocmask(libc::SIG_SETMASK, Some(uc.uc_sigmask));
            match thread::current() {
                Some(a) => a,
                None => out_of_memory(),
            }
        }
    };
    let outermost = signals::entered_from_program(area, uc);
    // Only a fault can be at one of our sites.
    if !(fault && handled_as_site_fault(sig, area, uc)) {
        signals::deliver_to_program(sig, info, uc, area);
    }
    if outermost {
        crate::emulate::signals::delivery::run_postponed(area, uc);
    }
}

/// A fault at one of our sites or ranges, or where one was just given back:
/// served here (true), or not ours (false).
///
/// The checks read the code and the site records at different moments. A
/// patch or unpatch by another thread in between (this one may wait long
/// for a CPU) can leave each check a state in which the fault is not its
/// case: the first sees a range's original bytes while its record is still
/// there, the next sees the bytes marked by the following patch. So "not
/// ours" stands only if the patcher changed nothing during the checks
/// (registry::settled_since); else they run again on the new state.
fn handled_as_site_fault(sig: i32, area: &thread::ThreadArea, uc: &mut Ucontext) -> bool {
    loop {
        let before = registry::changes();
        if let Some(nr) = patched_site_fault(sig, uc) {
            registry::count_site_fault();
            run_for_program(area, uc, nr);
            return true;
        }
        if resume_in_trampoline(sig, uc) {
            registry::count_site_fault();
            return true;
        }
        if sig == SIGILL && raw::read_user::<u8>(uc.mc.rip).is_ok_and(|b| registry::restored_original(uc.mc.rip, b)) {
            // The site was given back while this fault was on its way: run
            // the original instruction, which is there again.
            return true;
        }
        // A fault of the patcher's own code during a change (a bug) must
        // not wait for that change to end.
        if registry::settled_since(before) || install::in_own_text(uc.mc.rip) {
            return false;
        }
        if before & 1 == 1 {
            raw::sched_yield(); // a change under way: let its thread finish it
        }
    }
}

/// If this fault is at one of our sites: the syscall to run, with uc.rip
/// moved to the instruction after the old `syscall`.
fn patched_site_fault(sig: i32, uc: &mut Ucontext) -> Option<u64> {
    let rip = uc.mc.rip;
    if sig == SIGILL {
        // rip is the old `syscall`, now starting with 0x06.
        let site = registry::lookup(rip)?;
        if site.state != PATCHING && site.state != PATCHED {
            return None;
        }
        let byte = raw::read_user::<u8>(rip).ok()?;
        // A Form R range may end its jump on a punned slot byte there.
        let final_byte = registry::ext_of(&site).and_then(|x| x.written.get(x.sys_off as usize).copied());
        if byte != crate::patch::table::SLOT_BYTE as u8 && Some(byte) != final_byte {
            return None;
        }
        // Forms R and P take the number from rax whatever it is.
        let seed = site.ext == 0;
        let nr = if seed && uc.mc.rax as u32 == torn_eax(site.slot as u64) { site.nr as u64 } else { uc.mc.rax };
        uc.mc.rip = rip + 2;
        Some(nr)
    } else if sig == SIGSEGV {
        // rip is the patched site's jump.
        let key = rip.wrapping_add(5);
        let site = registry::lookup(key)?;
        if site.state != PATCHED || site.ext != 0 {
            return None;
        }
        // Ours only while the bytes there are still the jump we wrote: code
        // the program rewrote in place (a JIT through a second, writable
        // mapping) faults on its own account.
        if raw::read_user::<[u8; 7]>(rip).ok()? != crate::patch::write::jump_bytes(site.slot as u64) {
            return None;
        }
        uc.mc.rip = key + 2;
        Some(site.nr as u64)
    } else {
        None
    }
}

/// A fault inside a Form R range (forms.rs): SIGILL on an instruction
/// boundary other than the `syscall`'s (the thread ran the instructions
/// before it natively), or SIGSEGV on the range's jump (its slot unmapped):
/// resume the thread at the trampoline's copy of that instruction. The
/// byte there must be the 0x06 the protocol wrote or the final byte.
fn resume_in_trampoline(sig: i32, uc: &mut Ucontext) -> bool {
    let rip = uc.mc.rip;
    if (sig != SIGILL && sig != SIGSEGV) || !registry::any_ext() {
        return false;
    }
    let Ok(byte) = raw::read_user::<u8>(rip) else { return false };
    // The `syscall` lies within MAX_RANGE of any byte of its range.
    let mut key = rip.saturating_sub(forms::MAX_RANGE as u64);
    while key <= rip.saturating_add(forms::MAX_RANGE as u64) {
        if let Some(site) = registry::lookup(key) {
            if let Some(x) = registry::ext_of(&site) {
                if let Some(to) = resume_at(sig, &site, x, rip, byte) {
                    uc.mc.rip = to;
                    return true;
                }
            }
        }
        key += 1;
    }
    false
}

fn resume_at(sig: i32, site: &registry::Site, x: &registry::Ext, rip: u64, byte: u8) -> Option<u64> {
    if x.form != registry::FORM_RANGE || (site.state != PATCHING && site.state != PATCHED) {
        return None;
    }
    let o = rip.checked_sub(x.start).filter(|&o| o < x.len as u64)? as usize;
    if sig == SIGSEGV {
        // The jump itself, still ours.
        if o != 0 || raw::read_user::<[u8; 7]>(rip).ok()? != forms::jump(site.slot as u64) {
            return None;
        }
    } else if byte != 0x06 && Some(&byte) != x.written.get(o) {
        return None;
    }
    let offs = x.offs.get(..x.n as usize)?;
    let orig = x.orig.get(..x.len as usize)?;
    let r = forms::resume_offset(orig, offs, x.sys_off as usize, x.post_base as usize, o)?;
    Some(x.tramp + r as u64)
}

/// The action we install for SIGSEGV, SIGBUS and SIGILL: unlike our SIGSYS
/// handler, the kernel blocks all three on entry (no SA_NODEFER), so that
/// signals of theirs sent by kill cannot nest it; it unblocks them at once
/// for a fault (before anything that might fault again).
pub fn handler_action() -> KernelSigaction {
    let ours = signals::our_action(on_fault);
    KernelSigaction {
        flags: ours.flags & !(libc::SA_NODEFER as u32 as u64),
        mask: signals::bit(SIGSEGV) | signals::bit(SIGBUS) | signals::bit(SIGILL),
        ..ours
    }
}
