//! /proc/self/maps, streamed through a fixed buffer (no allocation): the
//! mapping of an address, the run of executable mappings of its file around
//! it, and the offset-0 mapping of that file that holds its ELF header.
//! Never: read the ELF object itself (elf.rs, unwind.rs).

use super::os::Os;
use super::reject::Reject;
use crate::rt::raw;
use core::sync::atomic::{AtomicU64, Ordering};

// ---------------------------------------------------------------------------
// /proc/self/maps

/// How many leading bytes of a mapping's name are kept (enough for "[vsyscall]").
pub(super) const NAME_KEEP: usize = 16;

/// One line of /proc/self/maps.
#[derive(Clone, Copy, Default)]
pub(super) struct Mapping {
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) perms: [u8; 4],
    pub(super) offset: u64,
    /// major << 32 | minor.
    pub(super) dev: u64,
    pub(super) inode: u64,
    pub(super) name: [u8; NAME_KEEP],
    /// Full length of the name (may exceed NAME_KEEP).
    pub(super) name_len: usize,
}

impl Mapping {
    pub(super) fn readable_executable(&self) -> bool {
        self.perms.first() == Some(&b'r') && self.perms.get(2) == Some(&b'x')
    }

    pub(super) fn executable(&self) -> bool {
        self.perms.get(2) == Some(&b'x')
    }

    /// Readable and not writable (read-only data).
    pub(super) fn read_only(&self) -> bool {
        self.perms.first() == Some(&b'r') && self.perms.get(1) != Some(&b'w')
    }

    /// A mapping of a file (anonymous and special mappings have inode 0).
    pub(super) fn is_file(&self) -> bool {
        self.inode != 0
    }

    pub(super) fn key(&self) -> (u64, u64) {
        (self.dev, self.inode)
    }

    pub(super) fn name_is(&self, s: &[u8]) -> bool {
        self.name_len == s.len() && self.name.get(..s.len()) == Some(s)
    }

    pub(super) fn contains(&self, a: u64) -> bool {
        self.start <= a && a < self.end
    }
}

/// Byte-at-a-time parser of /proc/self/maps lines, so that lines may straddle
/// read buffers. Format: `start-end perms offset major:minor inode   name`.
pub(super) struct Parser {
    pub(super) cur: Mapping,
    pub(super) field: u8,
    pub(super) digits: u8,
    pub(super) perm_i: usize,
    pub(super) ok: bool,
}

impl Parser {
    pub(super) const fn new() -> Parser {
        Parser {
            cur: Mapping {
                start: 0,
                end: 0,
                perms: [0; 4],
                offset: 0,
                dev: 0,
                inode: 0,
                name: [0; NAME_KEEP],
                name_len: 0,
            },
            field: 0,
            digits: 0,
            perm_i: 0,
            ok: true,
        }
    }

    pub(super) fn hex(v: &mut u64, b: u8) -> bool {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return false,
        };
        if *v >> 60 != 0 {
            return false;
        }
        *v = (*v << 4) | d as u64;
        true
    }

    pub(super) fn dec(v: &mut u64, b: u8) -> bool {
        if !b.is_ascii_digit() {
            return false;
        }
        match v.checked_mul(10).and_then(|x| x.checked_add((b - b'0') as u64)) {
            Some(x) => {
                *v = x;
                true
            }
            None => false,
        }
    }

    /// Field separator: ends field `self.field` (which must have had digits).
    pub(super) fn next_field(&mut self) {
        if self.digits == 0 {
            self.ok = false;
        }
        self.field += 1;
        self.digits = 0;
    }

    /// Feed one byte; a complete, well-formed line yields its mapping.
    pub(super) fn feed(&mut self, b: u8) -> Option<Mapping> {
        if b == b'\n' {
            // A line is usable once its inode has been read (field 6 or on).
            let done = self.ok && (self.field > 6 || (self.field == 6 && self.digits > 0));
            let m = self.cur;
            *self = Parser::new();
            return if done { Some(m) } else { None };
        }
        if !self.ok {
            return None;
        }
        let c = &mut self.cur;
        let good = match (self.field, b) {
            (0, b'-') | (1, b' ') | (3, b' ') | (4, b':') | (5, b' ') | (6, b' ') => {
                self.next_field();
                return None;
            }
            (0, _) => Parser::hex(&mut c.start, b),
            (1, _) => Parser::hex(&mut c.end, b),
            (2, b' ') => {
                self.field = 3;
                self.digits = 0;
                return None;
            }
            (2, _) => match c.perms.get_mut(self.perm_i) {
                Some(p) => {
                    *p = b;
                    self.perm_i += 1;
                    true
                }
                None => false,
            },
            (3, _) => Parser::hex(&mut c.offset, b),
            (4, _) | (5, _) => {
                let mut part = if self.field == 4 { c.dev >> 32 } else { c.dev & 0xffff_ffff };
                let good = Parser::hex(&mut part, b) && part <= 0xffff_ffff;
                c.dev =
                    if self.field == 4 { (part << 32) | (c.dev & 0xffff_ffff) } else { (c.dev & !0xffff_ffff) | part };
                good
            }
            (6, _) => Parser::dec(&mut c.inode, b),
            _ => {
                // The name: padded with spaces up to a column, then to the end
                // of the line (it may contain spaces itself).
                if !(c.name_len == 0 && b == b' ') {
                    if let Some(slot) = c.name.get_mut(c.name_len) {
                        *slot = b;
                    }
                    c.name_len = c.name_len.saturating_add(1);
                }
                return None;
            }
        };
        self.digits = self.digits.saturating_add(1);
        if !good {
            self.ok = false;
        }
        None
    }
}

/// Stream /proc/self/maps through `f` (in address order) until it returns false.
pub(super) fn scan_maps<O: Os, F: FnMut(&Mapping) -> bool>(os: &mut O, mut f: F) -> Result<(), Reject> {
    if !os.maps_open() {
        return Err(Reject::MapsUnreadable);
    }
    let mut buf = [0u8; 1024];
    let mut parser = Parser::new();
    let mut result = Ok(());
    'read: loop {
        let n = os.maps_read(&mut buf);
        if n < 0 {
            result = Err(Reject::MapsUnreadable);
            break;
        }
        if n == 0 {
            break;
        }
        for &b in buf.get(..n as usize).unwrap_or(&[]) {
            if let Some(m) = parser.feed(b) {
                if !f(&m) {
                    break 'read;
                }
            }
        }
    }
    os.maps_close();
    result
}

/// The ELF object holding a code address, per /proc/self/maps.
#[derive(Clone, Copy)]
pub(super) struct Object {
    /// Address of its ELF header (its offset-0 mapping).
    pub(super) header: u64,
    /// Its file (device, inode).
    pub(super) key: (u64, u64),
    pub(super) text_start: u64,
    pub(super) text_end: u64,
}

/// How many files' offset-0 mappings are remembered while streaming (the
/// header normally sits right below the text; a miss costs a second pass).
pub(super) const RECENT: usize = 16;

pub(super) fn find_object<O: Os>(os: &mut O, site: u64) -> Result<Object, Reject> {
    if !os.caches_objects() {
        return scan_for_object(os, site);
    }
    let cache = &OBJECTS;
    let Some(generation) = settled_generation() else { return scan_for_object(os, site) };
    // Contended (another thread patches, or a handler of this one
    // interrupted a lookup): read the maps, as without a cache.
    if let Some(mut c) = cache.try_lock() {
        if let Some(o) = c.get(generation, site) {
            return Ok(o);
        }
    }
    let found = scan_for_object(os, site)?;
    if let Some(mut c) = cache.try_lock() {
        c.put(generation, found);
    }
    Ok(found)
}

// ---------------------------------------------------------------------------
// Objects found before

/// Only calls that unmap, replace, move or reprotect memory make a run of
/// an object's executable mappings, as the maps listed it, stop being that
/// (a new mapping never overlaps an existing one): munmap, mremap,
/// mprotect, pkey_mprotect, mmap with MAP_FIXED, shmat, shmdt. Each of the
/// program's goes through emulate::process::memory_call on either path,
/// inside a [`MappingChange`]: CHANGING counts those in flight, and
/// GENERATION moves when one ends. A cached object is used, or kept, only
/// while none is in flight and the generation is the one its scan began in,
/// so no lookup trusts a scan that a change may have overlapped.
static CHANGING: AtomicU64 = AtomicU64::new(0);
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// A call of the program's that may change existing mappings, in flight.
pub struct MappingChange(());

impl MappingChange {
    #[inline(always)]
    pub fn begin() -> MappingChange {
        CHANGING.fetch_add(1, Ordering::SeqCst);
        MappingChange(())
    }
}

impl Drop for MappingChange {
    #[inline(always)]
    fn drop(&mut self) {
        GENERATION.fetch_add(1, Ordering::SeqCst);
        CHANGING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The current generation, if no change is in flight.
fn settled_generation() -> Option<u64> {
    let g = GENERATION.load(Ordering::SeqCst);
    (CHANGING.load(Ordering::SeqCst) == 0).then_some(g)
}

/// In a fork child: calls that other threads had in flight never end here.
pub fn after_fork_in_child() {
    CHANGING.store(0, Ordering::SeqCst);
    GENERATION.fetch_add(1, Ordering::SeqCst);
    // SAFETY: only this thread exists in the new process; a lookup of its
    // own that a handler interrupted only unlocks again when it ends.
    unsafe { OBJECTS.force_unlock() };
}

/// How many objects are kept (a process's syscalls live in a few: libc,
/// the loader, the program, a runtime or two).
const CACHED_OBJECTS: usize = 8;

/// Objects found by a scan of /proc/self/maps, each valid while the
/// generation it was found in is current: a site inside one's executable
/// run needs no scan (about 20-40 us each, at every first hit of a site).
struct ObjectCache {
    generation: u64,
    objects: [Option<Object>; CACHED_OBJECTS],
    next: usize,
}

/// The library's cache (RawOs); a spin lock, taken only with try_lock on
/// the patching path (cold).
static OBJECTS: spin::Mutex<ObjectCache> =
    spin::Mutex::new(ObjectCache { generation: 0, objects: [None; CACHED_OBJECTS], next: 0 });

impl ObjectCache {
    fn get(&mut self, generation: u64, site: u64) -> Option<Object> {
        if generation != self.generation {
            return None;
        }
        self.objects.iter().flatten().find(|o| o.text_start <= site && site < o.text_end).copied()
    }

    /// Keep `o`, found by a scan that started in `generation`: dropped at
    /// once if the mappings changed since, or are changing (the scan may
    /// predate the change).
    fn put(&mut self, generation: u64, o: Object) {
        if settled_generation() != Some(generation) {
            return;
        }
        if generation != self.generation {
            self.objects = [None; CACHED_OBJECTS];
            self.generation = generation;
            self.next = 0;
        }
        if let Some(slot) = self.objects.get_mut(self.next % CACHED_OBJECTS) {
            *slot = Some(o);
        }
        self.next = self.next.wrapping_add(1);
    }
}

/// [`find_object`] by a scan of /proc/self/maps.
fn scan_for_object<O: Os>(os: &mut O, site: u64) -> Result<Object, Reject> {
    let mut recent = [((0u64, 0u64), 0u64); RECENT];
    let mut recent_next = 0usize;
    let mut found: Option<Mapping> = None;
    let mut early: Option<Reject> = None;
    let mut header: Option<u64> = None;
    // Current run of adjacent executable mappings of one file: (key, start, end).
    let mut run: Option<((u64, u64), u64, u64)> = None;
    scan_maps(os, |m| {
        if let Some(f) = found {
            // Past the site's mapping: extend the run while it continues.
            return match run {
                Some((k, s, e)) if m.readable_executable() && m.key() == f.key() && m.start == e => {
                    run = Some((k, s, m.end));
                    true
                }
                _ => false,
            };
        }
        if m.is_file() && m.offset == 0 {
            let slot = recent.iter().position(|(k, _)| *k == m.key()).unwrap_or(recent_next % RECENT);
            if slot == recent_next % RECENT {
                recent_next = recent_next.wrapping_add(1);
            }
            if let Some(r) = recent.get_mut(slot) {
                *r = (m.key(), m.start);
            }
        }
        run = match run {
            Some((k, s, e)) if m.readable_executable() && m.key() == k && m.start == e => Some((k, s, m.end)),
            _ if m.readable_executable() => Some((m.key(), m.start, m.end)),
            _ => None,
        };
        if !m.contains(site) {
            return true;
        }
        early = if m.name_is(b"[vdso]") {
            Some(Reject::InVdso)
        } else if m.name_is(b"[vsyscall]") {
            Some(Reject::InVsyscall)
        } else if !m.is_file() {
            Some(Reject::NotElfObject)
        } else if !m.readable_executable() {
            Some(Reject::NotExecutable)
        } else {
            None
        };
        if early.is_some() {
            return false;
        }
        found = Some(*m);
        header = recent.iter().find(|(k, _)| *k == m.key()).map(|&(_, a)| a);
        true
    })?;
    if let Some(r) = early {
        return Err(r);
    }
    let f = found.ok_or(Reject::NotMapped)?;
    let (_, text_start, text_end) = run.ok_or(Reject::NotExecutable)?;
    let header = match header {
        Some(h) => h,
        None => {
            // Evicted from `recent` (many files mapped in between): look again.
            let mut best: Option<u64> = None;
            scan_maps(os, |m| {
                if m.start > site {
                    return false;
                }
                if m.key() == f.key() && m.offset == 0 {
                    best = Some(m.start);
                }
                true
            })?;
            best.ok_or(Reject::NotElfObject)?
        }
    };
    Ok(Object { header, key: f.key(), text_start, text_end })
}

/// Where code addresses lie, for the report's call sites: one pass over
/// /proc/self/maps (in address order) for `addrs`, which must be sorted
/// ascending. `f(i, name, file_offset)` for each `addrs[i]` inside a mapping:
/// the mapping's name as the kernel gives it (a path, `[vdso]`, empty for
/// anonymous memory; cut at 4095 bytes) and the address's offset in the
/// file (`address - start + offset`). False if the maps could not be read.
pub fn locate_sorted(addrs: &[u64], mut f: impl FnMut(usize, &[u8], u64)) -> bool {
    let mut os = super::os::RawOs::new();
    if !os.maps_open() {
        return false;
    }
    // Ask the kernel for the mapping of each address, where it can say
    // (PROCMAP_QUERY: a lookup each, not the whole file as text, which
    // costs 45-65 us here even for a short /bin/true); the text for the
    // addresses from the first it cannot. Only in a process without any
    // seccomp filter (under SUD, and neither the program nor an earlier
    // image installed one): a filter may forbid ioctl, or kill for it.
    let first = if raw::prctl_get_seccomp() == Ok(0) { query_each(os.fd as i32, addrs, &mut f) } else { 0 };
    let ok = read_each(&mut os, addrs, first, &mut f);
    os.maps_close();
    ok
}

/// `locate_sorted` by PROCMAP_QUERY, until an address it cannot decide:
/// the kernel lacks the call, a name does not fit or holds a `\n` (the
/// maps file escapes it), or an address above user space (the vsyscall
/// page is no mapping of the process's but a line of the file). Returns
/// how many addresses it decided (their mapping reported, or none).
fn query_each(fd: i32, addrs: &[u64], f: &mut impl FnMut(usize, &[u8], u64)) -> usize {
    let mut name = [0u8; 4096];
    // The mapping of the last address (sorted: the next may share it).
    let mut last: Option<raw::Mapping> = None;
    for (k, &a) in addrs.iter().enumerate() {
        let m = match last.take() {
            Some(m) if a >= m.start && a < m.end => m,
            _ => match raw::procmap_query(fd, a, &mut name) {
                Ok(m) => m,
                Err(e) if e == libc::ENOENT as i64 && a < USER_END => continue,
                Err(_) => return k,
            },
        };
        // The name with its NUL (0: anonymous), at most the buffer.
        let named = name.get(..m.name_size.saturating_sub(1)).unwrap_or(&[]);
        if named.contains(&b'\n') {
            return k;
        }
        f(k, named, a.wrapping_sub(m.start).wrapping_add(m.offset));
        last = Some(m);
    }
    addrs.len()
}

/// Addresses at and above this are not user space.
const USER_END: u64 = 1 << 47;

/// `locate_sorted` over the maps file's text, for `addrs[first..]`.
fn read_each(os: &mut super::os::RawOs, addrs: &[u64], first: usize, f: &mut impl FnMut(usize, &[u8], u64)) -> bool {
    let mut buf = [0u8; 1024];
    let mut name = [0u8; 4095];
    let mut name_len = 0usize;
    let mut parser = Parser::new();
    let mut next = first;
    let mut ok = true;
    'read: while next < addrs.len() {
        let n = os.maps_read(&mut buf);
        if n <= 0 {
            ok = n == 0;
            break;
        }
        for &b in buf.get(..n as usize).unwrap_or(&[]) {
            // The name is what follows the inode field (the parser keeps
            // only its first NAME_KEEP bytes): kept whole here.
            if b != b'\n' && parser.field > 6 && !(name_len == 0 && b == b' ') {
                if let Some(slot) = name.get_mut(name_len) {
                    *slot = b;
                    name_len += 1;
                }
            }
            let line_end = b == b'\n';
            if let Some(m) = parser.feed(b) {
                let named = name.get(..name_len).unwrap_or(&[]);
                while let Some(&a) = addrs.get(next) {
                    if a >= m.end {
                        break;
                    }
                    if a >= m.start {
                        f(next, named, a - m.start + m.offset);
                    }
                    next += 1;
                }
                if next >= addrs.len() {
                    break 'read;
                }
            }
            if line_end {
                name_len = 0;
            }
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn libc_like() -> Object {
        Object { header: 0x7000_0000, key: (1, 2), text_start: 0x7000_1000, text_end: 0x7000_9000 }
    }

    #[test]
    fn an_object_is_reused_only_while_no_mapping_changes() {
        let mut cache = ObjectCache { generation: 0, objects: [None; CACHED_OBJECTS], next: 0 };
        let g = settled_generation().expect("nothing in flight");
        cache.put(g, libc_like());
        assert_eq!(cache.get(g, 0x7000_2000).map(|o| o.header), Some(0x7000_0000), "inside its text");
        assert!(cache.get(g, 0x7000_9000).is_none(), "past its text");
        // An munmap in flight: nothing is trusted, nothing kept.
        let change = MappingChange::begin();
        assert_eq!(settled_generation(), None);
        cache.put(g, libc_like());
        drop(change);
        // After it: the generation the object was found in is gone.
        let g2 = settled_generation().expect("settled again");
        assert_ne!(g2, g);
        assert!(cache.get(g2, 0x7000_2000).is_none(), "found before the change");
        // A scan that began before the change is not kept after it.
        cache.put(g, libc_like());
        assert!(cache.get(g2, 0x7000_2000).is_none(), "a scan that overlapped the change");
        cache.put(g2, libc_like());
        assert!(cache.get(g2, 0x7000_2000).is_some(), "a scan after the change");
    }
}
