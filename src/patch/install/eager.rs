//! The libc sites the first image of a tree patched before any call of
//! theirs (install::prove_libc), told apart from the ones its calls
//! reached: only those it called are handed on (the carried entry at exec,
//! the site cache's line), as before. Handing on every proven site would
//! make each exec'd image write hundreds of sites it mostly never calls
//! (about 4 writes to /proc/self/mem each, and a private copy of every
//! libc page holding one).
//!
//! Trap context: a static list behind a lock nobody waits for.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::measure::stats;
use crate::patch::registry;
use crate::rt::figures;

/// Most sites listed (this libc has 526 `syscall` instructions).
const MAX: usize = 640;

/// Most call sites gathered from the threads' tables.
const MAX_CALLED: usize = 512;

struct List {
    /// The `syscall` addresses (registry keys) patched without a call,
    /// ascending.
    keys: [u64; MAX],
    n: usize,
    /// The call sites (the address after each `syscall`) the threads'
    /// tables hold, ascending, as [`gather_called`] last found them.
    called: [u64; MAX_CALLED],
    n_called: usize,
}

// With the other large tables (library.ld): touched only by an image that
// proves libc whole.
#[link_section = ".bss.usertrap_large"]
static LIST: spin::Mutex<List> = spin::Mutex::new(List { keys: [0; MAX], n: 0, called: [0; MAX_CALLED], n_called: 0 });
static ANY: AtomicBool = AtomicBool::new(false);

/// `key` was patched with no call of its own (PATCHER held).
pub fn note(key: u64) {
    let Some(mut l) = LIST.try_lock() else { return };
    let n = l.n;
    let Some(list) = l.keys.get(..n) else { return };
    let Err(at) = list.binary_search(&key) else { return };
    if n >= MAX {
        return;
    }
    if let Some(tail) = l.keys.get_mut(at..=n) {
        tail.rotate_right(1);
        if let Some(first) = tail.first_mut() {
            *first = key;
        }
        l.n = n + 1;
        ANY.store(true, Ordering::Relaxed);
    }
}

/// Before sites are handed on (an exec's carried entry, the cache's line):
/// gather the call sites of every thread's table (the live ones and the
/// ended ones kept), if some site was patched without a call; nothing
/// otherwise. A site past a thread's table (SITES_PER_THREAD) or past
/// MAX_CALLED is taken for not called: it is only not handed on, and the
/// next image proves it at its own first call, as before.
pub fn gather_called() {
    if !ANY.load(Ordering::Relaxed) {
        return;
    }
    let Some(mut guard) = LIST.try_lock() else { return };
    let l = &mut *guard;
    l.n_called = 0;
    stats::for_each_table(|t, _| {
        for k in t.sites.keys.iter().map(|k| k.get()).filter(|&k| k != 0) {
            let (ret, _) = figures::site_of_key(k);
            if let Some(s) = l.called.get_mut(l.n_called) {
                *s = registry::program_site(ret);
                l.n_called += 1;
            }
        }
    });
    if let Some(s) = l.called.get_mut(..l.n_called) {
        s.sort_unstable();
    }
}

/// Whether the site whose `syscall` is at `key` is handed on: not patched
/// without a call, or called (as [`gather_called`] found).
pub fn hands_on(key: u64) -> bool {
    if !ANY.load(Ordering::Relaxed) {
        return true;
    }
    let Some(l) = LIST.try_lock() else { return true };
    let eager = l.keys.get(..l.n).is_some_and(|k| k.binary_search(&key).is_ok());
    !eager || l.called.get(..l.n_called).is_some_and(|s| s.binary_search(&(key + 2)).is_ok())
}

/// In a new process: a thread that held the lock at fork time is gone.
pub fn after_fork_in_child() {
    // SAFETY: only this thread exists in the new process.
    unsafe { LIST.force_unlock() };
}
