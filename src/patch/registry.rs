//! Every `syscall` site the library has looked at: patched, being patched, or
//! left on the slow path with a reason. Keyed by the address of the `syscall`
//! instruction (for a patched site, the `jmp` starts 5 bytes earlier).
//!
//! Written only under the patch lock; read lock-free from any handler (an
//! entry's fields are stored before its key is published with Release).
//!
//! A site whose code is unmapped, replaced or about to be rewritten by the
//! program is forgotten (install::code_changing): its key becomes
//! [`FORGOTTEN_KEY`], which lookups step over and which is never reused. To
//! keep that check cheap for every munmap/mprotect/mremap/mmap(MAP_FIXED),
//! the 2 MiB chunks holding recorded sites are listed ([`may_have_sites`]).
//!
//! Every change to a record, and every byte the patcher writes into code
//! (write::Mem), is counted in [`CHANGES`]: the fault handler reads the code
//! and these records at different moments, and says a fault is not ours
//! only if no change fell between its reads ([`settled_since`]).
//!
//! Never: reuse a forgotten key, or write outside the patch lock.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::forms;

const CAPACITY: usize = 1 << 16;

/// A seqlock's count over the sites' records and code: odd while a change
/// is under way. One writer at a time (the patch lock).
static CHANGES: AtomicU64 = AtomicU64::new(0);

/// One change to a record or to code bytes (patch lock held): the count is
/// odd from here until the value drops.
pub struct Change(());

impl Change {
    pub fn begin() -> Change {
        CHANGES.fetch_add(1, Ordering::AcqRel);
        Change(())
    }
}

impl Drop for Change {
    fn drop(&mut self) {
        CHANGES.fetch_add(1, Ordering::Release);
    }
}

/// The change count now, for [`settled_since`].
pub fn changes() -> u64 {
    CHANGES.load(Ordering::Acquire)
}

/// Was no change under way at `before` (read with [`changes`]) and none
/// made since? Then everything read in between was one consistent state.
pub fn settled_since(before: u64) -> bool {
    core::sync::atomic::fence(Ordering::Acquire);
    before & 1 == 0 && CHANGES.load(Ordering::Relaxed) == before
}

// State 0: an entry not yet written.
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
    /// 1 + index of the site's [`Ext`] (Forms R and P), 0 for the seed form.
    ext: AtomicU32,
}

/// The key of a forgotten entry: never an address of a site (the top of the
/// address space is the kernel's).
const FORGOTTEN_KEY: u64 = u64::MAX;

/// The table (entries, then where every recorded site is among them, in the
/// order they were met), mapped by [`prepare`] before the first record:
/// 2.25 MiB a process that never patches (or runs under a tight
/// RLIMIT_AS) need not have.
#[repr(C)]
struct Table {
    entries: [Entry; CAPACITY],
    all: [AtomicU32; CAPACITY],
}
static TABLE: AtomicU64 = AtomicU64::new(0);

/// Form R: a relocated range ending with or containing the `syscall`.
pub const FORM_RANGE: u8 = 1;
/// Form P: the `syscall` jumps to a pad.
pub const FORM_PAD: u8 = 2;

/// What a site of Form R or P needs kept: where its bytes are, the
/// program's original bytes (to decode the function later, and to give them
/// back), the bytes written, and its trampoline. Written once, under the
/// patch lock, before the site's key is published; never changed after.
#[derive(Clone, Copy)]
pub struct Ext {
    pub form: u8,
    /// R's first byte; for P the `syscall`.
    pub start: u64,
    pub len: u8,
    /// Offsets of R's instructions (P: just the syscall, at 0).
    pub offs: [u8; forms::MAX_INSNS],
    pub n: u8,
    pub sys_off: u8,
    pub tramp: u64,
    pub post_base: u8,
    pub orig: [u8; forms::MAX_RANGE],
    pub written: [u8; forms::MAX_RANGE],
    /// P: the pad, its original and written bytes.
    pub pad: u64,
    pub pad_len: u8,
    pub pad_orig: [u8; forms::OVERLAY_BYTES],
}

impl Ext {
    pub const EMPTY: Ext = Ext {
        form: 0,
        start: 0,
        len: 0,
        offs: [0; forms::MAX_INSNS],
        n: 0,
        sys_off: 0,
        tramp: 0,
        post_base: 0,
        orig: [0; forms::MAX_RANGE],
        written: [0; forms::MAX_RANGE],
        pad: 0,
        pad_len: 0,
        pad_orig: [0; forms::OVERLAY_BYTES],
    };

    /// A Form R site: `r` rewritten into `written`, its trampoline at `tramp`
    /// (`post_base`: where the relocated instructions after the syscall start).
    pub fn range(r: &forms::Range, written: [u8; forms::MAX_RANGE], tramp: u64, post_base: usize) -> Ext {
        Ext {
            form: FORM_RANGE,
            start: r.start,
            len: r.len as u8,
            offs: r.offs,
            n: r.n as u8,
            sys_off: r.sys_off as u8,
            tramp,
            post_base: post_base as u8,
            orig: r.orig,
            written,
            ..Ext::EMPTY
        }
    }

    /// A Form P site: the `syscall` at `sys` turned into `branch`, a short
    /// jump to the pad `p` (whose original bytes the caller fills in).
    pub fn pad(sys: u64, branch: [u8; 2], p: &forms::Pad, tramp: u64, post_base: usize) -> Ext {
        let mut x = Ext {
            form: FORM_PAD,
            start: sys,
            len: 2,
            n: 1,
            tramp,
            post_base: post_base as u8,
            pad: p.at,
            pad_len: p.len as u8,
            ..Ext::EMPTY
        };
        x.orig[..2].copy_from_slice(&[0x0f, 0x05]);
        x.written[..2].copy_from_slice(&branch);
        x
    }

    /// Every byte the site changed: [lo, hi).
    fn span(&self) -> (u64, u64) {
        let (mut lo, mut hi) = (self.start, self.start + self.len as u64);
        if self.pad_len > 0 {
            lo = lo.min(self.pad);
            hi = hi.max(self.pad + self.pad_len as u64);
        }
        (lo, hi)
    }
}

const EXT_CAPACITY: usize = 8192;
/// The table of [`Ext`]s, mapped at the first site of Form R or P.
static EXT: AtomicU64 = AtomicU64::new(0);
static EXT_COUNT: AtomicUsize = AtomicUsize::new(0);

fn ext_at(index: u32) -> Option<&'static Ext> {
    let p = EXT.load(Ordering::Acquire);
    let i = (index as usize).checked_sub(1)?;
    if p == 0 || i >= EXT_COUNT.load(Ordering::Acquire) {
        return None;
    }
    // SAFETY: a mapping of EXT_CAPACITY entries, never unmapped; entry i
    // was written before EXT_COUNT was raised past it (Release) and is
    // never written again.
    Some(unsafe { &*(p as *const Ext).add(i) })
}

/// Keep `ext` (patch lock held): its index + 1 for [`record_ext`], or None.
fn store_ext(ext: &Ext) -> Option<u32> {
    if EXT.load(Ordering::Relaxed) == 0 {
        let len = (core::mem::size_of::<Ext>() * EXT_CAPACITY + 4095) & !4095;
        let p = crate::rt::owned::map(len, libc::PROT_READ | libc::PROT_WRITE).ok()?;
        EXT.store(p, Ordering::Release);
    }
    let n = EXT_COUNT.load(Ordering::Relaxed);
    if n >= EXT_CAPACITY {
        return None;
    }
    // SAFETY: entry n of the mapping, not yet published (EXT_COUNT == n).
    unsafe { core::ptr::write((EXT.load(Ordering::Relaxed) as *mut Ext).add(n), *ext) };
    EXT_COUNT.store(n + 1, Ordering::Release);
    Some(n as u32 + 1)
}

/// The program's call site (the address right after its `syscall`) of
/// `ret`, a return address the dispatch was given: for a site of Form R or
/// P it is the address after its trampoline's own `syscall` (Tret in
/// forms.rs: where both the fast path returns and the trampoline's
/// fallback `syscall` traps from), which this maps back to the site; any
/// other address is the site already. Walks the Forms R/P records (at most
/// 8192): for reports, never per call.
pub fn program_site(ret: u64) -> u64 {
    let n = EXT_COUNT.load(Ordering::Acquire);
    for i in 0..n {
        if let Some(x) = ext_at(i as u32 + 1) {
            if x.tramp != 0 && ret == x.tramp + forms::tret_offset(x.post_base as usize) as u64 {
                return x.start + x.sys_off as u64 + 2;
            }
        }
    }
    ret
}

/// Whether any site of Form R or P was ever recorded (the fault handler's
/// search for one is skipped until then).
pub fn any_ext() -> bool {
    EXT_COUNT.load(Ordering::Relaxed) != 0
}

/// The [`Ext`] of a site of Form R or P.
pub fn ext_of(site: &Site) -> Option<&'static Ext> {
    if site.ext == 0 {
        None
    } else {
        ext_at(site.ext)
    }
}

fn table() -> Option<&'static Table> {
    let p = TABLE.load(Ordering::Acquire);
    if p == 0 {
        return None;
    }
    // SAFETY: a zeroed private mapping of the table's size (all-zero atomics
    // are valid), published once and never unmapped.
    Some(unsafe { &*(p as *const Table) })
}

/// What the launcher's registry holds after it patched the loader's sites,
/// for the library to take over whole (its pages are faulted in already:
/// recording the sites afresh would fault in as many again, one per site,
/// about as much as their calls save).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Snapshot {
    table: u64,
    all_count: u64,
    patched: u64,
    chunk_count: u64,
    chunks: [u64; MAX_CHUNKS],
    /// The Forms R/P records (the loader's sites carried from the exec'ing
    /// image, prepatch::apply_to_loader): their mapping and count.
    ext: u64,
    ext_count: u64,
}

impl Snapshot {
    pub const EMPTY: Snapshot =
        Snapshot { table: 0, all_count: 0, patched: 0, chunk_count: 0, chunks: [0; MAX_CHUNKS], ext: 0, ext_count: 0 };

    /// The Forms R/P records' mapping, (address, length); (0, 0) if none.
    pub fn ext_mapping(&self) -> (u64, u64) {
        if self.ext == 0 {
            return (0, 0);
        }
        (self.ext, ((core::mem::size_of::<Ext>() * EXT_CAPACITY + 4095) & !4095) as u64)
    }

    /// The table's mapping, (address, length); (0, 0) if none.
    pub fn mapping(&self) -> (u64, u64) {
        if self.table == 0 {
            return (0, 0);
        }
        (self.table, ((core::mem::size_of::<Table>() + 4095) & !4095) as u64)
    }
}

/// This registry as a [`Snapshot`] (the launcher's, before it jumps to the
/// loader). It holds only the loader's patched sites: those of the seed
/// form it proved, and those of any form the exec'ing image carried (with
/// their Form R/P records); the launcher patches nothing after a trap
/// (install::ENABLED stays off in its bridge), so there is no unpatched
/// list to carry.
#[cfg_attr(not(feature = "launcher"), allow(dead_code))] // the launcher's
pub fn snapshot() -> Snapshot {
    let mut s = Snapshot {
        table: TABLE.load(Ordering::Acquire),
        all_count: ALL_COUNT.load(Ordering::Acquire) as u64,
        patched: PATCHED_COUNT.load(Ordering::Relaxed) as u64,
        chunk_count: CHUNK_COUNT.load(Ordering::Acquire) as u64,
        chunks: [0; MAX_CHUNKS],
        ext: EXT.load(Ordering::Acquire),
        ext_count: EXT_COUNT.load(Ordering::Acquire) as u64,
    };
    for (o, c) in s.chunks.iter_mut().zip(CHUNKS.iter()) {
        *o = c.load(Ordering::Relaxed);
    }
    s
}

/// Take over the launcher's registry (see [`Snapshot`]) as this one, before
/// anything is recorded here (the constructor, single-threaded). False if
/// this registry is in use already or `s` is empty.
pub fn adopt(s: &Snapshot) -> bool {
    if s.table == 0 || TABLE.load(Ordering::Relaxed) != 0 {
        return false;
    }
    for (c, &v) in CHUNKS.iter().zip(s.chunks.iter()) {
        c.store(v, Ordering::Relaxed);
    }
    if s.ext != 0 && EXT.load(Ordering::Relaxed) == 0 && s.ext_count as usize <= EXT_CAPACITY {
        EXT_COUNT.store(s.ext_count as usize, Ordering::Relaxed);
        EXT.store(s.ext, Ordering::Release);
    }
    CHUNK_COUNT.store(s.chunk_count as usize, Ordering::Release);
    PATCHED_COUNT.store(s.patched as usize, Ordering::Relaxed);
    ALL_COUNT.store(s.all_count as usize, Ordering::Release);
    TABLE.store(s.table, Ordering::Release);
    true
}

/// Map the table (patch lock held). False: no memory, patching stays off.
pub fn prepare() -> bool {
    if TABLE.load(Ordering::Relaxed) != 0 {
        return true;
    }
    let len = (core::mem::size_of::<Table>() + 4095) & !4095;
    match crate::rt::owned::map(len, libc::PROT_READ | libc::PROT_WRITE) {
        Ok(p) => {
            TABLE.store(p, Ordering::Release);
            true
        }
        Err(_) => false,
    }
}
static ALL_COUNT: AtomicUsize = AtomicUsize::new(0);
/// 2 MiB chunks that hold (or held) a recorded site; past MAX_CHUNKS every
/// range may hold one.
const CHUNK_SHIFT: u32 = 21;
const MAX_CHUNKS: usize = 64;
static CHUNKS: [AtomicU64; MAX_CHUNKS] = [const { AtomicU64::new(0) }; MAX_CHUNKS];
static CHUNK_COUNT: AtomicUsize = AtomicUsize::new(0);
static PATCHED_COUNT: AtomicUsize = AtomicUsize::new(0);
static UNPATCHED_COUNT: AtomicUsize = AtomicUsize::new(0);
/// Where the unpatched sites are in ENTRIES, in the order they were met, so
/// the report visits a few entries instead of touching the whole table.
const LISTED: usize = 4096;
#[link_section = ".bss.usertrap_large"]
static UNPATCHED_LIST: [AtomicU32; LISTED] = [const { AtomicU32::new(0) }; LISTED];

/// What is known about one site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    pub key: u64,
    pub state: u32,
    pub nr: u32,
    pub reason: &'static str,
    pub slot: u32,
    /// 1 + index of its [`Ext`], 0 for the seed form.
    pub ext: u32,
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
    // Fibonacci hashing of the 64 KiB of code around the site, then the
    // site's place in it by KiB: the sites of those 16 pages of code share a
    // run of 64 entries (2.5 KiB, one or two pages of this table). Hashing
    // each code page apart gave every page with a site a run of its own (a
    // fresh page of the table each: the loader's 33 sites, on 12 pages of
    // its text, touched 14 pages of the table, now about 5). Dense code
    // spills into the next run; linear probing finds it there.
    let region = ((key >> 16).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 48) as usize;
    (region + ((key & 0xffff) >> 10) as usize) % CAPACITY
}

fn find(key: u64) -> Result<&'static Entry, Option<&'static Entry>> {
    find_index(key).map(|(e, _)| e).map_err(|o| o.map(|(e, _)| e))
}

/// The entry of `key` (Ok) or the free entry where it would go (Err), with
/// its index.
fn find_index(key: u64) -> Result<(&'static Entry, usize), Option<(&'static Entry, usize)>> {
    let mut i = start(key);
    for _ in 0..CAPACITY {
        let e = table().ok_or(None)?.entries.get(i).ok_or(None)?;
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
        ext: e.ext.load(Ordering::Relaxed),
    })
}

/// Make the first access to the page where `key`'s search starts a write
/// (patch lock held; before a lookup of a site about to be recorded): a
/// search reads first, which on a fresh page maps the kernel's zero page,
/// and the write after it faults a second time (the launcher's carried
/// loader sites took two faults a page). A compare-exchange of 0 for 0
/// changes nothing a reader could see (x86's `lock cmpxchg` writes the old
/// value back when it fails), but is a write access.
pub fn prefault(key: u64) {
    if let Some(e) = table().and_then(|t| t.entries.get(start(key))) {
        let _ = e.key.compare_exchange(0, 0, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// Record a site (patch lock held). False if the table is full.
pub fn record(key: u64, state: u32, nr: u32, reason: &'static str, slot: u32) -> bool {
    record_with(key, state, nr, reason, slot, 0)
}

/// Record a site of Form R or P (patch lock held). False if a table is full.
pub fn record_ext(key: u64, state: u32, nr: u32, slot: u32, ext: &Ext) -> bool {
    // The range and the pad may lie in other 2 MiB chunks than the key.
    note_chunk(ext.start);
    if ext.pad_len > 0 {
        note_chunk(ext.pad);
    }
    match store_ext(ext) {
        Some(i) => record_with(key, state, nr, "", slot, i),
        None => false,
    }
}

fn record_with(key: u64, state: u32, nr: u32, reason: &'static str, slot: u32, ext: u32) -> bool {
    let _change = Change::begin();
    prefault(key);
    let (e, index) = match find_index(key) {
        Ok(found) => found,
        Err(Some(free)) => free,
        Err(None) => return false,
    };
    let fresh = e.key.load(Ordering::Relaxed) == 0;
    if fresh {
        note_chunk(key);
        let n = ALL_COUNT.load(Ordering::Relaxed);
        if let Some(slot) = table().and_then(|t| t.all.get(n)) {
            slot.store(index as u32, Ordering::Relaxed);
        }
        ALL_COUNT.store(n + 1, Ordering::Release);
    }
    e.nr.store(nr, Ordering::Relaxed);
    e.reason_ptr.store(reason.as_ptr() as u64, Ordering::Relaxed);
    e.reason_len.store(reason.len() as u32, Ordering::Relaxed);
    e.slot.store(slot, Ordering::Relaxed);
    e.ext.store(ext, Ordering::Relaxed);
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
    let _change = Change::begin();
    if let Ok(e) = find(key) {
        e.state.store(state, Ordering::Release);
        if state == PATCHED {
            PATCHED_COUNT.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// List the chunk of `key` (patch lock held).
fn note_chunk(key: u64) {
    let chunk = key >> CHUNK_SHIFT;
    let n = CHUNK_COUNT.load(Ordering::Relaxed);
    if CHUNKS.iter().take(n.min(MAX_CHUNKS)).any(|c| c.load(Ordering::Relaxed) == chunk) {
        return;
    }
    if let Some(c) = CHUNKS.get(n) {
        c.store(chunk, Ordering::Relaxed);
    }
    // Past MAX_CHUNKS the count alone says "anywhere" (see may_have_sites).
    CHUNK_COUNT.store(n + 1, Ordering::Release);
}

/// Might [addr, addr+len) hold a recorded site? Integer-only and lock-free:
/// also used on the fast path for every munmap/mprotect/mremap/mmap.
#[inline(always)]
pub fn may_have_sites(addr: u64, len: u64) -> bool {
    let n = CHUNK_COUNT.load(Ordering::Acquire);
    if n == 0 || len == 0 {
        return false;
    }
    if n > MAX_CHUNKS {
        return true;
    }
    let first = addr >> CHUNK_SHIFT;
    let last = addr.saturating_add(len - 1) >> CHUNK_SHIFT;
    let mut i = 0;
    while i < n {
        if let Some(c) = CHUNKS.get(i) {
            let c = c.load(Ordering::Relaxed);
            if c >= first && c <= last {
                return true;
            }
        }
        i += 1;
    }
    false
}

/// Visit every recorded site whose 7 bytes overlap [addr, addr+len).
pub fn for_each_in(addr: u64, len: u64, mut f: impl FnMut(&Site)) {
    let end = addr.saturating_add(len);
    let n = ALL_COUNT.load(Ordering::Acquire).min(CAPACITY);
    let mut i = 0;
    while i < n {
        let Some(t) = table() else { return };
        if let Some(e) = t.all.get(i).and_then(|x| t.entries.get(x.load(Ordering::Relaxed) as usize)) {
            let key = e.key.load(Ordering::Acquire);
            let ext = e.ext.load(Ordering::Relaxed);
            // key is the `syscall`: a seed site is [key - 5, key + 2).
            let (lo, hi) = match ext_at(ext) {
                Some(x) => x.span(),
                None => (key.wrapping_sub(5), key + 2),
            };
            if key != 0 && key != FORGOTTEN_KEY && lo < end && hi > addr {
                f(&Site {
                    key,
                    state: e.state.load(Ordering::Acquire),
                    nr: e.nr.load(Ordering::Relaxed),
                    reason: reason_of(e),
                    slot: e.slot.load(Ordering::Relaxed),
                    ext,
                });
            }
        }
        i += 1;
    }
}

/// Forget a site (patch lock held): lookups no longer find it, and the
/// next trap there is considered afresh.
pub fn forget(key: u64) {
    let _change = Change::begin();
    if let Ok(e) = find(key) {
        if e.state.load(Ordering::Relaxed) == PATCHED {
            PATCHED_COUNT.fetch_sub(1, Ordering::Relaxed);
        }
        e.key.store(FORGOTTEN_KEY, Ordering::Release);
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
    let Some(t) = table() else { return };
    for e in t.entries.iter() {
        let key = e.key.load(Ordering::Acquire);
        if key != 0 && key != FORGOTTEN_KEY && e.state.load(Ordering::Acquire) == PATCHED {
            f(&Site {
                key,
                state: PATCHED,
                nr: e.nr.load(Ordering::Relaxed),
                reason: "",
                slot: e.slot.load(Ordering::Relaxed),
                ext: e.ext.load(Ordering::Relaxed),
            });
        }
    }
}

/// Visit the sites left on the slow path (the first 4096), with why.
pub fn for_each_unpatched(mut f: impl FnMut(&Site)) {
    let n = UNPATCHED_COUNT.load(Ordering::Acquire).min(LISTED);
    for slot in UNPATCHED_LIST.iter().take(n) {
        let Some(e) = table().and_then(|t| t.entries.get(slot.load(Ordering::Acquire) as usize)) else { return };
        let key = e.key.load(Ordering::Acquire);
        if key != 0 && key != FORGOTTEN_KEY && e.state.load(Ordering::Acquire) == UNPATCHED {
            f(&Site { key, state: UNPATCHED, nr: e.nr.load(Ordering::Relaxed), reason: reason_of(e), slot: 0, ext: 0 });
        }
    }
}

/// Syscalls run at a patched site by the fault handler (a thread caught
/// mid-patch, or a branch straight to the old `syscall`), for the report.
static SITE_FAULTS: AtomicU64 = AtomicU64::new(0);

pub fn count_site_fault() {
    SITE_FAULTS.fetch_add(1, Ordering::Relaxed);
}

pub fn site_faults() -> u64 {
    SITE_FAULTS.load(Ordering::Relaxed)
}

/// The original bytes of every patched (or being patched) site that touches
/// [lo, hi), for decoding a function as the program wrote it (patch lock
/// held). None if more than `out` holds.
pub fn overlays_in(lo: u64, hi: u64, out: &mut [forms::Overlay]) -> Option<usize> {
    let mut n = 0usize;
    let mut full = false;
    let mut push = |addr: u64, bytes: &[u8]| {
        if addr >= hi || addr + bytes.len() as u64 <= lo {
            return;
        }
        match out.get_mut(n) {
            Some(o) => {
                let len = bytes.len().min(forms::OVERLAY_BYTES);
                o.addr = addr;
                o.len = len;
                o.bytes[..len].copy_from_slice(&bytes[..len]);
                n += 1;
            }
            None => full = true,
        }
    };
    for_each_in(lo, hi - lo, |site| {
        if site.state != PATCHING && site.state != PATCHED {
            return;
        }
        match ext_of(site) {
            Some(x) => {
                push(x.start, x.orig.get(..x.len as usize).unwrap_or(&[]));
                if x.pad_len > 0 {
                    push(x.pad, x.pad_orig.get(..x.pad_len as usize).unwrap_or(&[]));
                }
            }
            None => {
                let b = site.nr.to_le_bytes();
                push(site.key - 5, &[0xb8, b[0], b[1], b[2], b[3], 0x0f, 0x05]);
            }
        }
    });
    if full {
        None
    } else {
        Some(n)
    }
}

/// Spans of code recently given back to the program, with their original
/// bytes: a thread that faulted on one of our invalid bytes just before it
/// was restored (its SIGILL delivered after the site was forgotten) is sent
/// back to run the original instruction ([`restored_original`]).
const RETIRED: usize = 256;
static RETIRED_NEXT: AtomicUsize = AtomicUsize::new(0);
#[link_section = ".bss.usertrap_large"]
static RETIRED_AT: [AtomicU64; RETIRED] = [const { AtomicU64::new(0) }; RETIRED];
#[link_section = ".bss.usertrap_large"]
static RETIRED_BYTES: [[AtomicU64; 3]; RETIRED] = [const { [const { AtomicU64::new(0) }; 3] }; RETIRED];

/// Note a site about to be unpatched (patch lock held).
pub fn retire(site: &Site) {
    // Byte by byte through black_box: reachable from the fast path, which
    // must not call memcpy or touch vector registers.
    let mut words = [0u64; 3];
    let (at, len) = match ext_of(site) {
        Some(x) => {
            let len = (x.len as usize).min(24);
            for (i, b) in x.orig.iter().take(len).enumerate() {
                if let Some(w) = words.get_mut(i / 8) {
                    *w |= (core::hint::black_box(*b) as u64) << ((i % 8) * 8);
                }
            }
            (x.start, len)
        }
        None => {
            // b8 nr 0f 05
            words[0] = 0xb8 | (site.nr as u64) << 8 | 0x0f << 40 | 0x05 << 48;
            (site.key - 5, 7)
        }
    };
    let tag = at | ((len as u64) << 56);
    // A span given back again (a JIT that makes the same code writable over
    // and over) keeps its one entry: the ring then holds the last RETIRED
    // different spans, however often each comes back.
    if retired_index(tag, &words).is_some() {
        return;
    }
    let _change = Change::begin();
    let i = RETIRED_NEXT.fetch_add(1, Ordering::Relaxed) % RETIRED;
    let (Some(slot), Some(at_slot)) = (RETIRED_BYTES.get(i), RETIRED_AT.get(i)) else { return };
    for (w, v) in slot.iter().zip(words) {
        w.store(v, Ordering::Relaxed);
    }
    // Address and length together: len in the top byte (user addresses
    // fit in 47 bits).
    at_slot.store(tag, Ordering::Release);
}

/// The ring's entry for the span `tag` (address | length << 56) holding
/// `words`, if there is one.
fn retired_index(tag: u64, words: &[u64; 3]) -> Option<usize> {
    let n = RETIRED_NEXT.load(Ordering::Acquire).min(RETIRED);
    (0..n).find(|&i| {
        RETIRED_AT.get(i).is_some_and(|a| a.load(Ordering::Acquire) == tag)
            && RETIRED_BYTES.get(i).is_some_and(|b| b.iter().zip(words).all(|(w, &v)| w.load(Ordering::Relaxed) == v))
    })
}

/// Is `rip` inside a span given back to the program, at an offset whose
/// original byte `now` holds again?
pub fn restored_original(rip: u64, now: u8) -> bool {
    let n = RETIRED_NEXT.load(Ordering::Acquire).min(RETIRED);
    let mut i = 0;
    while i < n {
        let v = RETIRED_AT.get(i).map(|a| a.load(Ordering::Acquire)).unwrap_or(0);
        let (at, len) = (v & ((1 << 56) - 1), v >> 56);
        if v != 0 && rip >= at && rip < at + len {
            let o = (rip - at) as usize;
            let word = RETIRED_BYTES.get(i).and_then(|b| b.get(o / 8)).map(|w| w.load(Ordering::Relaxed)).unwrap_or(0);
            if (word >> ((o % 8) * 8)) as u8 == now && !forms::is_invalid_opcode(now) {
                return true;
            }
        }
        i += 1;
    }
    false
}
