//! Every `syscall` site the library has looked at: patched, being patched, or
//! left on the slow path with a reason. Keyed by the address of the `syscall`
//! instruction (for a patched site, the `jmp` starts 5 bytes earlier).
//!
//! Written only under the patch lock; read lock-free from any handler (an
//! entry's fields are stored before its key is published with Release).

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

const CAPACITY: usize = 1 << 16;

pub const EMPTY: u32 = 0;
/// The write protocol has started: a thread may fault at the old `syscall`.
pub const PATCHING: u32 = 1;
pub const PATCHED: u32 = 2;
/// Left on the slow path; `reason` says why.
pub const UNPATCHED: u32 = 3;

struct Entry {
    key: AtomicU64,
    state: AtomicU32,
    nr: AtomicU32,
    /// Why the site stays on the slow path (a static string).
    reason_ptr: AtomicU64,
    reason_len: AtomicU32,
    /// The slot the site jumps through (patched sites).
    slot: AtomicU32,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_ENTRY: Entry = Entry {
    key: AtomicU64::new(0),
    state: AtomicU32::new(EMPTY),
    nr: AtomicU32::new(0),
    reason_ptr: AtomicU64::new(0),
    reason_len: AtomicU32::new(0),
    slot: AtomicU32::new(0),
};

static ENTRIES: [Entry; CAPACITY] = [EMPTY_ENTRY; CAPACITY];
static PATCHED_COUNT: AtomicUsize = AtomicUsize::new(0);
static UNPATCHED_COUNT: AtomicUsize = AtomicUsize::new(0);
/// Where the unpatched sites are in ENTRIES, in the order they were met, so
/// the report visits a few entries instead of touching the whole table.
const LISTED: usize = 4096;
static UNPATCHED_LIST: [AtomicU32; LISTED] = [const { AtomicU32::new(0) }; LISTED];

/// What is known about one site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    pub key: u64,
    pub state: u32,
    pub nr: u32,
    pub reason: &'static str,
    pub slot: u32,
}

fn reason_of(e: &Entry) -> &'static str {
    let (p, n) = (e.reason_ptr.load(Ordering::Relaxed), e.reason_len.load(Ordering::Relaxed));
    if p == 0 {
        return "";
    }
    // SAFETY: reason_ptr/len are only ever stored from a &'static str.
    unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(p as *const u8, n as usize)) }
}

fn start(key: u64) -> usize {
    // Fibonacci hashing of the address.
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 48) as usize % CAPACITY
}

fn find(key: u64) -> Result<&'static Entry, Option<&'static Entry>> {
    find_index(key).map(|(e, _)| e).map_err(|o| o.map(|(e, _)| e))
}

/// The entry of `key` (Ok) or the free entry where it would go (Err), with
/// its index.
fn find_index(key: u64) -> Result<(&'static Entry, usize), Option<(&'static Entry, usize)>> {
    let mut i = start(key);
    for _ in 0..CAPACITY {
        let e = ENTRIES.get(i).ok_or(None)?;
        match e.key.load(Ordering::Acquire) {
            k if k == key => return Ok((e, i)),
            0 => return Err(Some((e, i))),
            _ => i = (i + 1) % CAPACITY,
        }
    }
    Err(None)
}

/// Look a site up (any thread, any context).
pub fn lookup(key: u64) -> Option<Site> {
    let e = find(key).ok()?;
    Some(Site {
        key,
        state: e.state.load(Ordering::Acquire),
        nr: e.nr.load(Ordering::Relaxed),
        reason: reason_of(e),
        slot: e.slot.load(Ordering::Relaxed),
    })
}

/// Record a site (patch lock held). False if the table is full.
pub fn record(key: u64, state: u32, nr: u32, reason: &'static str, slot: u32) -> bool {
    let (e, index) = match find_index(key) {
        Ok(found) => found,
        Err(Some(free)) => free,
        Err(None) => return false,
    };
    let fresh = e.key.load(Ordering::Relaxed) == 0;
    e.nr.store(nr, Ordering::Relaxed);
    e.reason_ptr.store(reason.as_ptr() as u64, Ordering::Relaxed);
    e.reason_len.store(reason.len() as u32, Ordering::Relaxed);
    e.slot.store(slot, Ordering::Relaxed);
    e.state.store(state, Ordering::Release);
    e.key.store(key, Ordering::Release);
    if fresh && state == UNPATCHED {
        let n = UNPATCHED_COUNT.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = UNPATCHED_LIST.get(n) {
            slot.store(index as u32, Ordering::Release);
        }
    }
    true
}

/// Change the state of a recorded site (patch lock held).
pub fn set_state(key: u64, state: u32) {
    if let Ok(e) = find(key) {
        e.state.store(state, Ordering::Release);
        if state == PATCHED {
            PATCHED_COUNT.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub fn patched_count() -> usize {
    PATCHED_COUNT.load(Ordering::Relaxed)
}

pub fn unpatched_count() -> usize {
    UNPATCHED_COUNT.load(Ordering::Relaxed)
}

/// Visit every patched site (walks the whole table: for rare uses).
pub fn for_each_patched(mut f: impl FnMut(&Site)) {
    for e in ENTRIES.iter() {
        let key = e.key.load(Ordering::Acquire);
        if key != 0 && e.state.load(Ordering::Acquire) == PATCHED {
            f(&Site { key, state: PATCHED, nr: e.nr.load(Ordering::Relaxed), reason: "", slot: e.slot.load(Ordering::Relaxed) });
        }
    }
}

/// Visit the sites left on the slow path (the first 4096), with why.
pub fn for_each_unpatched(mut f: impl FnMut(&Site)) {
    let n = UNPATCHED_COUNT.load(Ordering::Acquire).min(LISTED);
    for slot in UNPATCHED_LIST.iter().take(n) {
        let Some(e) = ENTRIES.get(slot.load(Ordering::Acquire) as usize) else { continue };
        let key = e.key.load(Ordering::Acquire);
        if key != 0 && e.state.load(Ordering::Acquire) == UNPATCHED {
            f(&Site {
                key,
                state: UNPATCHED,
                nr: e.nr.load(Ordering::Relaxed),
                reason: reason_of(e),
                slot: 0,
            });
        }
    }
}
