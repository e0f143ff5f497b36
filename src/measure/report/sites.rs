//! The report's call sites: every thread's site figures (stats::site_begin)
//! merged, ordered by total time, and, when the report names them, located:
//! the object (the file named in /proc/self/maps) and the offset in it of
//! each site's `syscall` instruction, which `usertrap` symbolises
//! (.symtab/.dynsym) when it reads the report. Built once at the end, in memory of its own (one mapping,
//! zero-filled: every field here is valid as zeros), outside the fast path.
//! Bounded: MERGED_SLOTS slots, filled to 3/4; calls at sites past that are
//! counted (`not_kept`), never dropped silently.

use crate::measure::stats::{self, MergedSites, SiteStats, SITE_MERGE};
use crate::patch::maps;
use crate::rt::raw;
use core::cell::Cell;
use usertrap_core::report::{self, HIST_LEN};

/// Slots of the merged table (a power of two).
const MERGED_SLOTS: usize = 1024;
/// Bytes for the objects' names (one copy per run of sites in one mapping).
const NAMES_LEN: usize = 64 * 1024;

/// Where a site is: its object's name in `names`, and the offset in the file.
#[derive(Clone, Copy)]
#[repr(C)]
struct Loc {
    found: bool,
    name_start: u32,
    name_len: u32,
    offset: u64,
}

/// Sites kept at most (3/4 of the slots, as MergedSites fills them).
const MERGED_MAX: usize = MERGED_SLOTS * 3 / 4;

/// Laid out so that a process with a few sites touches a few pages of the
/// mapping (each a page fault): the counts and the slots first, then the
/// arrays indexed by rank (sorted here), the names, and the entries, each
/// holding all that is kept of one site.
#[repr(C)]
pub(super) struct Sites {
    n: usize,
    not_kept: u64,
    names_len: usize,
    /// Whether `locate` ran (each entry's `loc` is meaningful).
    located: bool,
    /// 1 + the entry of the site hashed there (0: free); see MergedSites.
    slots: [Cell<u16>; MERGED_SLOTS],
    /// Entries, by total time (largest first).
    order: [u16; MERGED_MAX],
    /// Entries by the address of their `syscall`, and those addresses.
    by_addr: [u16; MERGED_MAX],
    addrs: [u64; MERGED_MAX],
    names: [u8; NAMES_LEN],
    /// In order of first use.
    entries: [Entry; MERGED_MAX],
}

/// One merged site: its key (stats::site_key), figures and location.
#[repr(C)]
struct Entry {
    key: Cell<u64>,
    loc: Loc,
    stats: SiteStats,
}

/// One site as the report gives it.
pub(super) struct Site<'a> {
    /// The address of its `syscall` instruction.
    pub(super) address: u64,
    /// Syscall number (0xffff: a number past 0xfffe).
    pub(super) nr: u64,
    /// Object (empty: anonymous memory) and offset in it, if located.
    pub(super) object: Option<(&'a [u8], u64)>,
    pub(super) stats: &'a SiteStats,
}

/// The merged sites in their own mapping, unmapped when dropped.
pub(super) struct Merged {
    base: u64,
}

const LEN: usize = (core::mem::size_of::<Sites>() + 4095) & !4095;

impl Merged {
    /// Merge every thread's sites, by total time; None without memory.
    /// Where each is ([`Merged::locate`]) is left for the report to ask.
    pub(super) fn build() -> Option<Merged> {
        let base = raw::mmap_anon(LEN, libc::PROT_READ | libc::PROT_WRITE).ok()?;
        let m = Merged { base };
        // SAFETY: a fresh zeroed mapping of LEN >= size_of::<Sites>() bytes,
        // ours until drop; every field of Sites is valid as zeros; this is
        // the only reference to it for now.
        let s = unsafe { &mut *(base as *mut Sites) };
        // The first page (the counts, then the slots) written before the
        // merge reads a slot: one page fault, where a read (maps the zero
        // page) and the write after it (copies it) are two. Volatile: `n`
        // is set again below, and a plain store could be dropped.
        // SAFETY: a field of the fresh mapping above, ours.
        unsafe { core::ptr::write_volatile(&raw mut s.n, 0) };
        let mut merged = MergedSites {
            slots: &s.slots,
            entries: &s.entries,
            entry: |e: &Entry| (&e.key, &e.stats),
            used: 0,
            not_kept: 0,
        };
        stats::merge_sites_into(&mut merged, crate::patch::registry::program_site);
        s.not_kept = merged.not_kept;
        let n = merged.used.min(MERGED_MAX);
        for (i, o) in s.order.iter_mut().take(n).enumerate() {
            *o = i as u16;
        }
        s.n = n;
        let entries = &s.entries;
        let total = |i: u16| entries.get(i as usize).map_or(0, |e| e.stats.total.get());
        let key = |i: u16| entries.get(i as usize).map_or(0, |e| e.key.get());
        if let Some(v) = s.order.get_mut(..n) {
            v.sort_unstable_by(|a, b| total(*b).cmp(&total(*a)).then(key(*a).cmp(&key(*b))));
        }
        Some(m)
    }

    /// Find each site's object and offset (one pass over /proc/self/maps),
    /// once: only reports that show a site's location ask (JSON always; the
    /// text only when a site's slow calls matter, see `needs_location`).
    pub(super) fn locate(&mut self) {
        // SAFETY: built in `build`, ours until drop; `&mut self` means no
        // reference into it (from `get` or `each`) is alive.
        let s = unsafe { &mut *(self.base as *mut Sites) };
        if !s.located {
            s.locate();
            s.located = true;
        }
    }

    /// Whether some site has slow calls enough to matter in a text report
    /// (report::slow_site_matters: at least 100, whatever the total).
    pub(super) fn any_slow_site_may_matter(&self) -> bool {
        let s = self.get();
        s.entries.iter().take(s.n).any(|e| report::slow_site_matters(e.stats.slow.get(), e.stats.slow.get()))
    }

    fn get(&self) -> &Sites {
        // SAFETY: built in `build`, ours until drop; shared from here on.
        unsafe { &*(self.base as *const Sites) }
    }

    /// The sites, by total time (located if `locate` ran).
    pub(super) fn each(&self) -> impl Iterator<Item = Site<'_>> {
        let s = self.get();
        s.order.iter().take(s.n).filter_map(move |&i| {
            let e = s.entries.get(i as usize)?;
            let (site, nr) = stats::site_of_key(e.key.get());
            let loc = &e.loc;
            let object = (s.located && loc.found)
                .then(|| {
                    let start = loc.name_start as usize;
                    Some((s.names.get(start..start + loc.name_len as usize)?, loc.offset))
                })
                .flatten();
            Some(Site { address: site.wrapping_sub(2), nr, object, stats: &e.stats })
        })
    }

    /// Calls at sites that no table had room for.
    pub(super) fn not_kept(&self) -> u64 {
        self.get().not_kept
    }
}

impl Drop for Merged {
    fn drop(&mut self) {
        // SAFETY: our mapping from `build`; nothing borrowed from it
        // outlives self (`each` borrows self).
        let _ = unsafe { raw::munmap(self.base, LEN) };
    }
}

impl Sites {
    /// Find each site's object and offset, in one pass over /proc/self/maps.
    fn locate(&mut self) {
        let n = self.n;
        // By address: (address << 16 | entry) sorts as the addresses do
        // (user addresses are below 2^47, entries below 2^16).
        for (k, &i) in self.order.iter().take(n).enumerate() {
            let key = self.entries.get(i as usize).map_or(0, |e| e.key.get());
            let (site, _) = stats::site_of_key(key);
            if let Some(a) = self.addrs.get_mut(k) {
                *a = (site.wrapping_sub(2) << 16) | i as u64;
            }
        }
        let Some(addrs) = self.addrs.get_mut(..n) else { return };
        addrs.sort_unstable();
        for (a, e) in addrs.iter_mut().zip(self.by_addr.iter_mut()) {
            *e = *a as u16;
            *a >>= 16;
        }
        let (addrs, by_addr, entries, names, names_len) =
            (&self.addrs, &self.by_addr, &mut self.entries, &mut self.names, &mut self.names_len);
        let mut last: Option<(u32, u32)> = None;
        maps::locate_sorted(addrs.get(..n).unwrap_or(&[]), |k, name, offset| {
            let Some(&i) = by_addr.get(k) else { return };
            let Some(e) = entries.get_mut(i as usize) else { return };
            // Consecutive sites mostly lie in one object: store its name once.
            let same = last.is_some_and(|(st, len)| names.get(st as usize..(st + len) as usize) == Some(name));
            if !same {
                let start = *names_len;
                let Some(dst) = names.get_mut(start..start + name.len()) else { return };
                dst.copy_from_slice(name);
                *names_len += name.len();
                last = Some((start as u32, name.len() as u32));
            }
            if let Some((st, len)) = last {
                e.loc = Loc { found: true, name_start: st, name_len: len, offset };
            }
        });
    }
}

/// Site histogram slot `j`: the values [low, high) in clock ticks.
pub(super) fn bounds(j: usize) -> (u64, u64) {
    let first = j * SITE_MERGE;
    let last = (first + SITE_MERGE - 1).min(HIST_LEN - 1);
    (report::bucket_bounds(first).0, report::bucket_bounds(last).1)
}
