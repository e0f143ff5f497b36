//! What the launcher tells the library in the image it started.
//!
//! When the library execs a program it runs the launcher instead (see
//! `emulate::exec` and `launch`). For a dynamically linked program the
//! launcher serves the loader's syscalls until this library's constructor
//! takes over in the new image; the constructor finds this record through an
//! auxiliary-vector entry of our own (AT_USERTRAP_HANDOFF), which no other
//! code reads. It says what the launcher changed that the program must not
//! see: the gate already exists (so the constructor swaps in its own copy
//! instead of mapping one), the seccomp filter is already installed (a second
//! would stack, and 1,000 execs would run out of filter space), and the
//! program's own view of SIGSYS and of the blocked owned signals, which the
//! launcher's handler hides from the kernel; and the loader's sites it
//! patched, which the library records as its own.

use crate::patch::registry::Snapshot;
use crate::rt::raw::KernelSigaction;

/// Our auxiliary-vector type ("us"); the kernel's types stop below 64.
pub const AT_USERTRAP_HANDOFF: u64 = 0x7573;

/// Changes whenever `Handoff`'s layout does: the launcher and the library are
/// built from one source tree, and a mismatch is refused rather than misread.
pub const HANDOFF_MAGIC: u64 = 0x7573_6572_7472_0001
    ^ ((core::mem::size_of::<Handoff>() as u64) << 16)
    ^ ((core::mem::size_of::<crate::emulate::signals::SigTable>() as u64) << 32)
    ^ ((core::mem::size_of::<crate::measure::stats::ThreadStats>() as u64) << 8);

/// Length of the path buffers (PATH_MAX).
pub const PATH_LEN: usize = 4096;

/// The order of `Handoff::owned_actions`.
pub const OWNED_ORDER: [i32; 4] = [libc::SIGSYS, libc::SIGSEGV, libc::SIGILL, libc::SIGBUS];

#[repr(C)]
pub struct Handoff {
    pub magic: u64,
    /// 1 when this process already carries our seccomp filter.
    pub seccomp_armed: u64,
    /// The program's dispositions of SIGSYS, SIGSEGV, SIGILL and SIGBUS as exec left
    /// them (default or ignored); the kernel holds the launcher's handlers.
    pub owned_actions: [KernelSigaction; 4],
    /// The owned signals the program has blocked (the kernel mask has them unblocked).
    pub blocked_owned: u64,
    /// Entries the exec'ing library put in front of the program's
    /// environment, and whether it put itself in front of the program's
    /// LD_PRELOAD: the library takes both back out once it has read its
    /// settings (it starts `environ` past the first).
    pub env_leading: u64,
    pub preload_prefixed: u64,
    /// The launcher's figures for the syscalls it served (the loader's): a
    /// mapping of its own (not in `launcher_maps`) that the library's main
    /// thread adopts, so the report counts them.
    pub stats: u64,
    /// The launcher's signal table (same layout: same sources, same magic),
    /// for dispositions set before the library took over.
    pub sigtable: u64,
    /// What the launcher leaves mapped that the library unmaps once it has
    /// taken over, as (address, length): its image (text, data, .bss), its
    /// thread area and the block it built the initial stack in. The first
    /// is also the range of its code, for `signals::adopt`.
    pub launcher_maps: [[u64; 2]; 3],
    /// The clock's values when the launcher started (its phases'
    /// reference, `measure::phases`), when its interposer was started, and
    /// when it jumped to the program's (or its loader's) entry, so the
    /// library's USERTRAP_PHASES line can say how long the launcher's steps
    /// and the loader took; 0 if unknown.
    pub launcher_marks: [u64; 3],
    /// How many of the loader's sites the launcher patched before the loader
    /// ran (install::patch_loader), its registry of them, which the library
    /// takes over before its fault handlers replace the launcher's, and the
    /// slot windows and trampoline arenas they use (seed, Forms R/P,
    /// punned slots: install::loader_regions). Those of any form the
    /// exec'ing image carried count too (install::patch_carried_loader).
    pub loader_site_count: u64,
    pub registry: Snapshot,
    pub loader_regions: [[u64; 2]; 4],
    /// The program's executable (what /proc/self/exe names natively), NUL-terminated.
    pub exe_path: [u8; PATH_LEN],
}

impl Handoff {
    #[cfg_attr(not(feature = "launcher"), allow(dead_code))] // used by the launcher
    pub const fn empty() -> Handoff {
        Handoff {
            magic: 0,
            seccomp_armed: 0,
            owned_actions: [KernelSigaction { handler: 0, flags: 0, restorer: 0, mask: 0 }; 4],
            blocked_owned: 0,
            env_leading: 0,
            preload_prefixed: 0,
            stats: 0,
            sigtable: 0,
            launcher_maps: [[0; 2]; 3],
            launcher_marks: [0; 3],
            loader_site_count: 0,
            registry: Snapshot::EMPTY,
            loader_regions: [[0; 2]; 4],
            exe_path: [0; PATH_LEN],
        }
    }

    /// The record at `addr` if it is one (the magic matches).
    ///
    /// # Safety
    /// `addr` is 0 or the value of our auxv entry, set by the launcher to a
    /// `Handoff` that stays mapped for the life of the process.
    #[cfg_attr(not(feature = "preload"), allow(dead_code))] // the constructor's
    pub unsafe fn at(addr: u64) -> Option<&'static Handoff> {
        if addr == 0 {
            return None;
        }
        // SAFETY: per the contract above.
        let h = unsafe { &*(addr as *const Handoff) };
        (h.magic == HANDOFF_MAGIC).then_some(h)
    }

    /// The program's view of owned signal `sig` (SIGSYS, SIGSEGV, SIGILL or SIGBUS).
    pub fn owned_action(&self, sig: i32) -> Option<KernelSigaction> {
        let i = OWNED_ORDER.iter().position(|&s| s == sig)?;
        self.owned_actions.get(i).copied()
    }

    pub fn exe_path(&self) -> &[u8] {
        let n = self.exe_path.iter().position(|&b| b == 0).unwrap_or(0);
        self.exe_path.get(..n).unwrap_or(&[])
    }
}
