//! The report's call sites: every thread's site figures (stats::site_begin)
//! merged, ordered by total time, and located: the object (the file named
//! in /proc/self/maps) and the offset in it of each site's `syscall`
//! instruction, which `usertrap` symbolises (.symtab/.dynsym) when it reads
//! the report. Built once at the end, in memory of its own (one mapping,
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

/// Indexed by slot: `keys`, `dense`; by entry (in order of first use, see
/// MergedSites): `site_keys`, `sites`, `locs`.
#[repr(C)]
pub(super) struct Sites {
    keys: [Cell<u64>; MERGED_SLOTS],
    dense: [Cell<u16>; MERGED_SLOTS],
    site_keys: [Cell<u64>; MERGED_MAX],
    sites: [SiteStats; MERGED_MAX],
    /// Entries, by total time (largest first).
    order: [u16; MERGED_MAX],
    n: usize,
    not_kept: u64,
    by_addr: [(u64, u16); MERGED_MAX],
    addrs: [u64; MERGED_MAX],
    locs: [Loc; MERGED_MAX],
    names: [u8; NAMES_LEN],
    names_len: usize,
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
    /// Merge and locate every thread's sites; None without memory.
    pub(super) fn build() -> Option<Merged> {
        let base = raw::mmap_anon(LEN, libc::PROT_READ | libc::PROT_WRITE).ok()?;
        let m = Merged { base };
        // SAFETY: a fresh zeroed mapping of LEN >= size_of::<Sites>() bytes,
        // ours until drop; every field of Sites is valid as zeros; this is
        // the only reference to it for now.
        let s = unsafe { &mut *(base as *mut Sites) };
        let mut merged = MergedSites {
            keys: &s.keys,
            dense: &s.dense,
            site_keys: &s.site_keys,
            sites: &s.sites,
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
        let (keys, sites) = (&s.site_keys, &s.sites);
        let total = |i: u16| sites.get(i as usize).map_or(0, |x| x.total.get());
        let key = |i: u16| keys.get(i as usize).map_or(0, |k| k.get());
        if let Some(v) = s.order.get_mut(..n) {
            v.sort_unstable_by(|a, b| total(*b).cmp(&total(*a)).then(key(*a).cmp(&key(*b))));
        }
        s.locate();
        Some(m)
    }

    fn get(&self) -> &Sites {
        // SAFETY: built in `build`, ours until drop; shared from here on.
        unsafe { &*(self.base as *const Sites) }
    }

    /// The sites, by total time.
    pub(super) fn each(&self) -> impl Iterator<Item = Site<'_>> {
        let s = self.get();
        s.order.iter().take(s.n).filter_map(move |&i| {
            let i = i as usize;
            let (site, nr) = stats::site_of_key(s.site_keys.get(i)?.get());
            let loc = s.locs.get(i)?;
            let object = loc
                .found
                .then(|| {
                    let start = loc.name_start as usize;
                    Some((s.names.get(start..start + loc.name_len as usize)?, loc.offset))
                })
                .flatten();
            Some(Site { address: site.wrapping_sub(2), nr, object, stats: s.sites.get(i)? })
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
        for (k, &i) in self.order.iter().take(n).enumerate() {
            let (site, _) = stats::site_of_key(self.site_keys.get(i as usize).map_or(0, |c| c.get()));
            if let Some(p) = self.by_addr.get_mut(k) {
                *p = (site.wrapping_sub(2), i);
            }
        }
        let Some(pairs) = self.by_addr.get_mut(..n) else { return };
        pairs.sort_unstable();
        for (a, p) in self.addrs.iter_mut().zip(pairs.iter()) {
            *a = p.0;
        }
        let (addrs, by_addr, locs, names, names_len) =
            (&self.addrs, &self.by_addr, &mut self.locs, &mut self.names, &mut self.names_len);
        let mut last: Option<(u32, u32)> = None;
        maps::locate_sorted(addrs.get(..n).unwrap_or(&[]), |k, name, offset| {
            let Some(&(_, i)) = by_addr.get(k) else { return };
            let Some(loc) = locs.get_mut(i as usize) else { return };
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
                *loc = Loc { found: true, name_start: st, name_len: len, offset };
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
