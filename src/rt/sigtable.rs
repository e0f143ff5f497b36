//! The table of signal dispositions as the program set them, and the signal
//! bits the whole library agrees on.
//!
//! Owns: the data (one process-wide table, a private copy per thread that
//! asked for one with CLONE_VM without CLONE_SIGHAND), and reading an entry
//! consistently without a lock. Writers are in `emulate::signals`, which
//! serialises them. Here because the thread area points at a table.
//! Never: make a syscall or take a lock.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::rt::raw::KernelSigaction;

pub const SIGILL: i32 = libc::SIGILL;
pub const SIGBUS: i32 = libc::SIGBUS;
pub const SIGSEGV: i32 = libc::SIGSEGV;
pub const SIGSYS: i32 = libc::SIGSYS;

/// The bit of `sig` in a 64-bit kernel sigset.
pub const fn bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// Signals whose real disposition belongs to the library: SIGSYS (the
/// trap), SIGILL and SIGSEGV (faults at patched sites), and SIGSEGV and
/// SIGBUS (a fault of the library's own copies of program memory, turned
/// into EFAULT: a page of a shared file mapping past the file's end raises
/// SIGBUS). Each must stay deliverable and handled by the library: the
/// kernel kills the process for a fault whose signal is blocked or ignored.
pub const OWNED: u64 = bit(SIGSYS) | bit(SIGSEGV) | bit(SIGILL) | bit(SIGBUS);

/// One signal's disposition as the program set it.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct AppAction {
    pub act: KernelSigaction,
    /// True once the program set it through us (or we recorded it at start).
    pub known: bool,
}

/// Dispositions of signals 1..=64 as the program sees them (index = signal).
///
/// Written under TABLE_LOCK with every signal blocked; read without any lock
/// (handlers read it on every delivery) through a sequence counter: a reader
/// retries if a write was in progress or happened while it copied.
#[repr(C)]
pub struct SigTable {
    pub(crate) seq: AtomicU64,
    pub(crate) actions: [AppAction; 65],
}

impl SigTable {
    pub const fn new() -> SigTable {
        SigTable {
            seq: AtomicU64::new(0),
            actions: [AppAction { act: KernelSigaction { handler: 0, flags: 0, restorer: 0, mask: 0 }, known: false };
                65],
        }
    }
}

struct TableCell(core::cell::UnsafeCell<SigTable>);
// SAFETY: writes go through `with_table` (lock, signals blocked, sequence
// counter); reads through `action_of` (sequence counter).
unsafe impl Sync for TableCell {}
static PROCESS_TABLE: TableCell = TableCell(core::cell::UnsafeCell::new(SigTable::new()));

pub fn process_table() -> *mut SigTable {
    PROCESS_TABLE.0.get()
}

/// One signal's entry, read consistently without a lock.
pub fn action_of(t: *mut SigTable, sig: i32) -> AppAction {
    let i = (sig as usize).min(64);
    loop {
        // SAFETY: `t` is a live table (see with_table); the entry is copied
        // with volatile reads and discarded if a writer overlapped.
        let (before, entry, after) = unsafe {
            let seq = &(*t).seq;
            let before = seq.load(Ordering::Acquire);
            let entry = core::ptr::read_volatile(core::ptr::addr_of!((*t).actions).cast::<AppAction>().add(i));
            core::sync::atomic::fence(Ordering::Acquire);
            (before, entry, seq.load(Ordering::Relaxed))
        };
        if before == after && before % 2 == 0 {
            return entry;
        }
        core::hint::spin_loop();
    }
}

/// The table's write sequence once no write is under way (even): a reader
/// that sees the same value again from [`seq_now`] after reading saw no
/// write overlap (see [`action_of`]). Another thread's write is waited
/// for; this thread's own cannot be in progress (writers hold signals).
pub fn seq_settled(t: *mut SigTable) -> u64 {
    loop {
        // SAFETY: `t` is a live table (see with_table); an atomic load.
        let s = unsafe { (*t).seq.load(Ordering::Acquire) };
        if s % 2 == 0 {
            return s;
        }
        core::hint::spin_loop();
    }
}

/// The table's write sequence now, ordered after the reads before it.
pub fn seq_now(t: *mut SigTable) -> u64 {
    core::sync::atomic::fence(Ordering::Acquire);
    // SAFETY: as in seq_settled.
    unsafe { (*t).seq.load(Ordering::Relaxed) }
}

pub fn copy_table(from: *mut SigTable, to: &mut SigTable) {
    for sig in 1..=64 {
        let a = action_of(from, sig);
        if let Some(slot) = to.actions.get_mut(sig as usize) {
            *slot = a;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_is_the_kernels_sigset_bit() {
        // The kernel's sigaddset(): signal n is bit n-1 of the first word.
        // glibc's sigaddset on a sigset_t says the same (it refuses its
        // internal 32 and 33).
        for sig in 1..=64 {
            // SAFETY: a zeroed sigset_t is valid; sigaddset writes within it.
            let word = unsafe {
                let mut set: libc::sigset_t = core::mem::zeroed();
                if libc::sigaddset(&raw mut set, sig) != 0 {
                    assert!(sig == 32 || sig == 33, "glibc refused signal {sig}");
                    continue;
                }
                *(&raw const set).cast::<u64>()
            };
            assert_eq!(bit(sig), word, "signal {sig}");
        }
        assert_eq!(bit(1), 1);
        assert_eq!(bit(64), 1 << 63);
    }

    #[test]
    fn owned_are_sigill_sigbus_sigsegv_sigsys_only() {
        let owned: Vec<i32> = (1..=64).filter(|&s| OWNED & bit(s) != 0).collect();
        assert_eq!(owned, vec![libc::SIGILL, libc::SIGBUS, libc::SIGSEGV, libc::SIGSYS]);
        assert_eq!((SIGILL, SIGBUS, SIGSEGV, SIGSYS), (4, 7, 11, 31));
    }

    #[test]
    fn a_write_between_two_looks_moves_the_sequence() {
        let mut t = SigTable::new();
        let p: *mut SigTable = &raw mut t;
        let before = seq_settled(p);
        assert_eq!(before % 2, 0);
        assert_eq!(seq_now(p), before, "nothing written: the same");
        // A writer (with_table): odd while it writes, even again after,
        // never the same value as before.
        t.seq.fetch_add(1, Ordering::AcqRel);
        assert_ne!(seq_now(p), before);
        t.seq.fetch_add(1, Ordering::Release);
        assert_eq!(seq_settled(p), before + 2);
        assert_ne!(seq_now(p), before);
    }

    #[test]
    fn table_entries_by_signal() {
        let mut t = SigTable::new();
        for sig in 1..=64u64 {
            t.actions[sig as usize] = AppAction {
                act: KernelSigaction { handler: 0x1000 + sig, flags: sig, restorer: 0, mask: bit(sig as i32) },
                known: true,
            };
        }
        let p: *mut SigTable = &raw mut t;
        assert_eq!(action_of(p, 10).act.handler, 0x1000 + 10);
        assert_eq!(action_of(p, 64).act.mask, 1 << 63);
        // Out of range reads clamp to the last entry instead of overrunning.
        assert_eq!(action_of(p, 200).act.handler, 0x1000 + 64);
        let mut copy = SigTable::new();
        copy_table(p, &mut copy);
        for sig in 1..=64 {
            assert!(copy.actions[sig].act == t.actions[sig].act && copy.actions[sig].known, "signal {sig}");
        }
        assert!(!copy.actions[0].known, "entry 0 is no signal and is not copied");
    }
}
