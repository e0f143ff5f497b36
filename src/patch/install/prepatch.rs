//! Pre-patching across exec: an exec'd image starts with the libc sites its
//! parent image had patched already patched, so their first calls take the
//! fast path (USERTRAP_PREPATCH=1, the default).
//!
//! A short process calls most libc sites once or a few times; lazily, each
//! first call pays the SIGSYS round trip and the patch (a /proc/self/maps
//! scan, the decode, the writes: about 60 us a site, plus about 650 us once
//! to build the decoder's tables). Patching a fixed list of libc functions
//! at start would need the decoder in every process (its proof is a
//! decode), which costs more than most short processes' slow calls. The
//! parent has the proofs already: a site proven in a file is proven in any
//! mapping of the same file. So at exec the library writes, as one entry it
//! puts in front of the new image's environment (`USERTRAP_SITES=`, hidden
//! from the program like the launcher's control entry), libc's build ID,
//! each patched site of libc's text with what its form needs (offsets from
//! libc's load address, never addresses), and a checksum of the original
//! bytes of every span the sites rewrite. The new image's constructor keeps
//! the entry if its libc has the same build ID ([`keep`]); at the image's
//! first trap of a syscall whose sites may be patched, [`apply`] patches
//! every kept site whose original bytes match, without decoding: no maps
//! scan, no decoder, one `/proc/self/mem` descriptor, trampolines and slots
//! written in runs, then each site's bytes. Waiting for that first trap costs one slow call and
//! spares the writes (about 100-200 us for a few dozen sites: copies of
//! libc's pages, the tables) to a process that makes no such call, such as
//! `/bin/true`; a process that makes one nearly always goes on to libc's
//! usual wrappers.
//!
//! The writes follow write.rs's protocol (0x06 first, membarrier
//! SYNC_CORE between steps), step by step over a round of sites, so the
//! argument of forms.rs and write.rs holds as for a site patched at its own
//! first trap, whatever other threads (or a process sharing the memory,
//! such as a vfork child's parent) run meanwhile: each site is recorded
//! PATCHING before its first byte changes, every intermediate and final
//! byte sequence seen from any boundary is the old code or faults into
//! fault.rs, which completes the call. The trapping thread returns past a
//! seed site, or faults inside a range, as after a lazy patch.
//!
//! The loader too, but earlier: its calls in the new image come before the
//! library is loaded, so its group of the entry (one group per object,
//! `<build ID>:<sites>:<checksum>`, `;` between) is applied by the
//! launcher before it jumps to the loader ([`apply_to_loader`]), with the
//! same checks (build ID, every span in the loader's text, the checksum of
//! the original bytes, each form's shape), the final bytes written at once
//! (nothing runs them yet: no other thread, the loader not started). The
//! loader's seed-form sites are not carried (the launcher proves those
//! itself, one write per page); its other forms are proven by the exec'ing
//! image (install::prove_loader_sites), once, and each launched image
//! carries them on from the registry it took over. Not the executables:
//! they differ.
//!
//! What the entry can and cannot do: it is written by the library into the
//! new image's environment, among the entries the launcher and library
//! read only in front (a program's own `USERTRAP_SITES` is ignored). A
//! site list is never taken as a proof of anything but "these bytes were
//! proven in a file with this build ID": the bytes themselves are compared
//! (checksum) before any write, so a different or modified file is never
//! patched. (Code in the process tree can forge the entry, as it can write
//! its own memory: usertrap is not a sandbox.)

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::patch::registry::{self, PATCHED, PATCHING};
use crate::patch::write::{self, Mem};
use crate::patch::{forms, site};
use crate::rt::{arch, raw};

/// USERTRAP_PREPATCH (set at start).
pub static ENABLED: AtomicBool = AtomicBool::new(false);

/// The environment entry's name.
pub const ENTRY: &[u8] = b"USERTRAP_SITES=";
/// Most sites carried (the entry stays under 4 KiB).
pub const MAX_SITES: usize = 160;
/// Room for the entry: name, build ID, sites, checksum, NUL.
pub const ENTRY_LEN: usize = 4096;

/// An object whose sites are carried (libc, the loader): load bias, its
/// executable segment, its build ID. Written once by [`note_libc`] or
/// [`note_loader`] at start (one thread), read after.
struct Object {
    at: [AtomicU64; 3],
    id: [AtomicU64; 3],
}

impl Object {
    const fn new() -> Object {
        Object { at: [const { AtomicU64::new(0) }; 3], id: [const { AtomicU64::new(0) }; 3] }
    }

    fn note(&self, header: u64) {
        let Some((bias, text, id)) = read_libc(header) else { return };
        let mut words = [0u64; 3];
        for (i, b) in id.iter().enumerate() {
            words[i / 8] |= (*b as u64) << (8 * (i % 8));
        }
        for (w, v) in self.id.iter().zip(words) {
            w.store(v, Ordering::Relaxed);
        }
        self.at[1].store(text.0, Ordering::Relaxed);
        self.at[2].store(text.1, Ordering::Relaxed);
        self.at[0].store(bias, Ordering::Release);
    }

    /// (load bias, text start, text end, build ID), once noted.
    fn get(&self) -> Option<(u64, u64, u64, [u8; ID_MAX])> {
        let bias = self.at[0].load(Ordering::Acquire);
        if bias == 0 {
            return None;
        }
        let mut id = [0u8; ID_MAX];
        for (i, b) in id.iter_mut().enumerate() {
            *b = (self.id.get(i / 8)?.load(Ordering::Relaxed) >> (8 * (i % 8))) as u8;
        }
        Some((bias, self.at[1].load(Ordering::Relaxed), self.at[2].load(Ordering::Relaxed), id))
    }
}

static LIBC: Object = Object::new();
static LOADER: Object = Object::new();
const ID_MAX: usize = 20;

/// Where libc is, from the address of its ELF header (the loader's
/// `dli_fbase`): its executable PT_LOAD and its NT_GNU_BUILD_ID note, read
/// from memory (no syscall but the fault-tolerant copies). No build ID or
/// no single executable segment: nothing is carried or applied.
pub fn note_libc(header: u64) {
    LIBC.note(header);
}

/// The same for the loader (its header: AT_BASE). Its sites are carried
/// too: the launcher patches them in the new image before the loader runs
/// ([`apply_to_loader`]), where the library is not loaded yet.
pub fn note_loader(header: u64) {
    LOADER.note(header);
}

/// libc's text, [start, end), once noted.
pub fn libc_text() -> Option<(u64, u64)> {
    LIBC.get().map(|(_, lo, hi, _)| (lo, hi))
}

/// The loader's text, [start, end), once noted.
pub fn loader_text() -> Option<(u64, u64)> {
    LOADER.get().map(|(_, lo, hi, _)| (lo, hi))
}

fn read_libc(header: u64) -> Option<(u64, (u64, u64), [u8; ID_MAX])> {
    let rd64 = |a: u64| raw::read_user::<u64>(a).ok();
    let rd32 = |a: u64| raw::read_user::<u32>(a).ok();
    let rd16 = |a: u64| raw::read_user::<u16>(a).ok();
    if rd32(header)? != u32::from_le_bytes(*b"\x7fELF") {
        return None;
    }
    let phoff = rd64(header + 0x20)?;
    let (phentsize, phnum) = (rd16(header + 0x36)? as u64, rd16(header + 0x38)? as u64);
    if phentsize < 56 || phnum > 64 {
        return None;
    }
    let ph = |i: u64| header + phoff + i * phentsize;
    // The load bias: the header is the first byte of the lowest PT_LOAD.
    let mut lowest = u64::MAX;
    for i in 0..phnum {
        if rd32(ph(i))? == 1 {
            lowest = lowest.min(rd64(ph(i) + 16)? & !0xfff);
        }
    }
    let bias = header.checked_sub(lowest)?;
    let mut text = None;
    let mut id = None;
    for i in 0..phnum {
        let (kind, flags, vaddr, memsz) = (rd32(ph(i))?, rd32(ph(i) + 4)?, rd64(ph(i) + 16)?, rd64(ph(i) + 40)?);
        if kind == 1 && flags & 1 != 0 {
            if text.is_some() {
                return None;
            }
            text = Some((bias + vaddr, bias + vaddr + memsz));
        }
        if kind == 4 && id.is_none() {
            id = build_id(bias + vaddr, memsz);
        }
    }
    Some((bias, text?, id?))
}

/// The NT_GNU_BUILD_ID note in the notes at [at, at + len).
fn build_id(at: u64, len: u64) -> Option<[u8; ID_MAX]> {
    let mut p = at;
    while p + 12 <= at + len {
        let (namesz, descsz, kind) = (
            raw::read_user::<u32>(p).ok()? as u64,
            raw::read_user::<u32>(p + 4).ok()? as u64,
            raw::read_user::<u32>(p + 8).ok()?,
        );
        let desc = p + 12 + ((namesz + 3) & !3);
        if kind == 3 && namesz == 4 && raw::read_user::<u32>(p + 12).ok()? == u32::from_le_bytes(*b"GNU\0") {
            let mut id = [0u8; ID_MAX];
            let n = (descsz as usize).min(ID_MAX);
            raw::copy_from_user(id.get_mut(..n)?, desc).ok()?;
            return (n == ID_MAX).then_some(id);
        }
        p = desc + ((descsz + 3) & !3);
    }
    None
}

// ---------------------------------------------------------------------------
// The carried sites: their text form and the checksum of their original bytes.

/// One carried site. Offsets are from libc's load bias.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Item {
    /// b's' (seed: `mov $nr,%eax; syscall`), b'r' (Form R), b'p' (Form P).
    form: u8,
    /// The `syscall` instruction (the registry's key).
    sys: u64,
    nr: u32,
    /// R: the range's start and length, its instruction offsets.
    start: u64,
    len: u8,
    offs: [u8; forms::MAX_INSNS],
    n: u8,
    /// P: the pad and its length.
    pad: u64,
    pad_len: u8,
}

impl Item {
    pub const EMPTY: Item =
        Item { form: 0, sys: 0, nr: 0, start: 0, len: 0, offs: [0; forms::MAX_INSNS], n: 0, pad: 0, pad_len: 0 };

    /// Its `syscall`'s address (once parsed), or offset (as encoded).
    pub fn sys(&self) -> u64 {
        self.sys
    }

    /// The spans whose original bytes the checksum covers: (offset, length).
    fn spans(&self) -> [(u64, usize); 2] {
        match self.form {
            b's' => [(self.sys - 5, 7), (0, 0)],
            b'r' => [(self.start, self.len as usize), (0, 0)],
            _ => [(self.sys, 2), (self.pad, self.pad_len as usize)],
        }
    }
}

/// FNV-1a, 64 bits: the checksum of the original bytes.
struct Fnv(u64);
impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn put(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// A fixed-size text writer: hex numbers and bytes; `ok` false once full.
struct Out<'a> {
    buf: &'a mut [u8],
    len: usize,
    ok: bool,
}
impl Out<'_> {
    fn put(&mut self, s: &[u8]) {
        match self.buf.get_mut(self.len..self.len + s.len()) {
            Some(d) if self.ok => {
                d.copy_from_slice(s);
                self.len += s.len();
            }
            _ => self.ok = false,
        }
    }
    fn hex(&mut self, v: u64) {
        let mut digits = [0u8; 16];
        let mut n = 0;
        let mut x = v;
        loop {
            if let Some(d) = digits.get_mut(n) {
                *d = b"0123456789abcdef"[(x & 15) as usize];
            }
            n += 1;
            x >>= 4;
            if x == 0 || n == 16 {
                break;
            }
        }
        for i in (0..n).rev() {
            self.put(&[digits[i]]);
        }
    }
}

/// `item` as text: `s<sys>` | `r<sys>.<nr>.<start>.<len>.<offs, 2 digits each>`
/// | `p<sys>.<nr>.<pad>.<pad len>`, all hex.
fn encode_item(o: &mut Out<'_>, it: &Item) {
    o.put(&[it.form]);
    o.hex(it.sys);
    match it.form {
        b'r' => {
            for v in [it.nr as u64, it.start, it.len as u64] {
                o.put(b".");
                o.hex(v);
            }
            o.put(b".");
            for &b in it.offs.iter().take(it.n as usize) {
                o.put(&[b"0123456789abcdef"[(b >> 4) as usize], b"0123456789abcdef"[(b & 15) as usize]]);
            }
        }
        b'p' => {
            for v in [it.nr as u64, it.pad, it.pad_len as u64] {
                o.put(b".");
                o.hex(v);
            }
        }
        _ => {}
    }
}

fn hex_digit(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(|d| d as u64)
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter().try_fold(0u64, |v, &b| Some(v << 4 | hex_digit(b)?))
}

fn decode_item(s: &[u8]) -> Option<Item> {
    let (&form, rest) = s.split_first()?;
    let mut f = rest.split(|&b| b == b'.');
    let mut it = Item { form, sys: parse_hex(f.next()?)?, ..Item::default() };
    match form {
        b's' => {}
        b'r' => {
            it.nr = u32::try_from(parse_hex(f.next()?)?).ok()?;
            it.start = parse_hex(f.next()?)?;
            it.len = u8::try_from(parse_hex(f.next()?)?).ok()?;
            let offs = f.next()?;
            if offs.len() % 2 != 0 || offs.len() / 2 > forms::MAX_INSNS || offs.is_empty() {
                return None;
            }
            for (i, pair) in offs.chunks(2).enumerate() {
                let v = hex_digit(*pair.first()?)? << 4 | hex_digit(*pair.get(1)?)?;
                *it.offs.get_mut(i)? = v as u8;
            }
            it.n = (offs.len() / 2) as u8;
        }
        b'p' => {
            it.nr = u32::try_from(parse_hex(f.next()?)?).ok()?;
            it.pad = parse_hex(f.next()?)?;
            it.pad_len = u8::try_from(parse_hex(f.next()?)?).ok()?;
        }
        _ => return None,
    }
    f.next().is_none().then_some(it)
}

/// The parent's side, at exec (trap context: no allocation, no libc): the
/// `USERTRAP_SITES=...` entry, NUL-terminated, for the loader's and libc's
/// sites this process has patched, into `buf`; its length with the NUL, 0
/// for none. One group per object, `;` between them: `<build ID>:<sites>:<checksum>`.
pub fn entry(buf: &mut [u8; ENTRY_LEN]) -> usize {
    if !ENABLED.load(Ordering::Relaxed) {
        return 0;
    }
    let mut o = Out { buf: &mut buf[..], len: 0, ok: true };
    o.put(ENTRY);
    let mut count = 0usize;
    let mut groups = 0;
    // The loader's first: a few dozen sites at most, where libc's may fill
    // the entry.
    // The loader's seed-form sites are left out: its launcher proves them
    // itself, and writes them one page at a time.
    for (obj, seeds) in [(&LOADER, false), (&LIBC, true)] {
        let Some(info) = obj.get() else { continue };
        let mark = o.len;
        if groups > 0 {
            o.put(b";");
        }
        if group(&mut o, info, seeds, &mut count) {
            groups += 1;
        } else {
            o.len = mark;
            o.ok = true;
        }
    }
    if groups == 0 {
        return 0;
    }
    o.put(b"\0");
    if o.ok {
        o.len
    } else {
        0
    }
}

/// One object's group into `o`; false if it holds no site (or does not fit).
/// `seeds`: with the sites of the seed form. `count`: the sites written so
/// far, of MAX_SITES.
fn group(o: &mut Out<'_>, info: (u64, u64, u64, [u8; ID_MAX]), seeds: bool, count: &mut usize) -> bool {
    group_where(o, info, seeds, count, |_| false, |_| {})
}

/// [`group`] without the sites whose address (its `syscall`'s) `skip`
/// names; `wrote` is told the address of each site written.
fn group_where(
    o: &mut Out<'_>,
    (bias, lo, hi, id): (u64, u64, u64, [u8; ID_MAX]),
    seeds: bool,
    count: &mut usize,
    skip: impl Fn(u64) -> bool,
    mut wrote: impl FnMut(u64),
) -> bool {
    for b in id {
        o.put(&[b"0123456789abcdef"[(b >> 4) as usize], b"0123456789abcdef"[(b & 15) as usize]]);
    }
    o.put(b":");
    if !o.ok {
        return false;
    }
    let mut sum = Fnv::new();
    let start_count = *count;
    registry::for_each_in(lo, hi - lo, |s| {
        if s.state != PATCHED || *count >= MAX_SITES {
            return;
        }
        let rel = |a: u64| a.wrapping_sub(bias);
        if skip(s.key) {
            return;
        }
        let mut it = Item { sys: rel(s.key), nr: s.nr, ..Item::default() };
        let mut orig = [0u8; forms::MAX_RANGE + forms::OVERLAY_BYTES];
        let olen;
        match registry::ext_of(s) {
            None if !seeds => return,
            None => {
                it.form = b's';
                let mut b = [0xb8, 0, 0, 0, 0, 0x0f, 0x05];
                b[1..5].copy_from_slice(&s.nr.to_le_bytes());
                orig[..7].copy_from_slice(&b);
                olen = 7;
            }
            Some(x) if x.form == registry::FORM_RANGE => {
                it.form = b'r';
                it.start = rel(x.start);
                it.len = x.len;
                it.offs = x.offs;
                it.n = x.n;
                olen = (x.len as usize).min(forms::MAX_RANGE);
                orig[..olen].copy_from_slice(&x.orig[..olen]);
            }
            Some(x) if x.form == registry::FORM_PAD => {
                it.form = b'p';
                it.pad = rel(x.pad);
                it.pad_len = x.pad_len;
                let pl = (x.pad_len as usize).min(forms::OVERLAY_BYTES);
                orig[..2].copy_from_slice(&[0x0f, 0x05]);
                orig[2..2 + pl].copy_from_slice(&x.pad_orig[..pl]);
                olen = 2 + pl;
            }
            Some(_) => return,
        }
        // Whole items only: stop at the first that does not fit (the
        // checksum's 17 bytes and the NUL stay free).
        let mark = o.len;
        if *count > start_count {
            o.put(b",");
        }
        encode_item(o, &it);
        if !o.ok || o.len + 18 > ENTRY_LEN {
            o.len = mark;
            o.ok = true;
            *count = MAX_SITES;
            return;
        }
        sum.put(&orig[..olen]);
        *count += 1;
        wrote(s.key);
    });
    if *count == start_count {
        return false;
    }
    o.put(b":");
    o.hex(sum.0);
    // Room for the NUL.
    o.ok && o.len < ENTRY_LEN
}

// ---------------------------------------------------------------------------
// For the site cache (sitecache.rs): libc's sites as lines of a file.

/// libc's build ID, once noted.
pub fn libc_id() -> Option<[u8; ID_MAX]> {
    LIBC.get().map(|(_, _, _, id)| id)
}

/// libc's group (`<build ID>:<sites>:<checksum>`, seed-form sites
/// included) into `buf`, without the sites whose address `skip` names;
/// `wrote` is told each address written. Its length, 0 for none. Trap
/// context.
pub fn libc_group(buf: &mut [u8; ENTRY_LEN], skip: impl Fn(u64) -> bool, wrote: impl FnMut(u64)) -> usize {
    let Some(info) = LIBC.get() else { return 0 };
    if !ENABLED.load(Ordering::Relaxed) {
        return 0;
    }
    let mut o = Out { buf: &mut buf[..], len: 0, ok: true };
    let mut count = 0;
    if group_where(&mut o, info, true, &mut count, skip, wrote) && o.ok {
        o.len
    } else {
        0
    }
}

/// The sites of one group of libc's (`line`, as [`libc_group`] writes
/// it) into `items`, as addresses: how many, 0 unless the build ID is
/// libc's, every span lies in libc's text, and the bytes there now are the
/// ones the checksum was made of.
pub fn parse_libc_group(line: &[u8], items: &mut [Item]) -> usize {
    let Some(obj) = LIBC.get() else { return 0 };
    match group_for(line, &obj.3) {
        Some(g) if g.len() == line.len() => parse_group(line, obj, items),
        _ => 0,
    }
}

/// Patch `items` (from [`parse_libc_group`]) as [`apply`] patches the
/// carried ones (PATCHER held, signals blocked, the registry mapped; sites
/// already recorded are left alone). How many were patched.
pub fn patch_items(
    table: &mut crate::patch::table::Table,
    items: &[Item],
    ready: impl FnOnce() -> bool,
    slow: fn(u64) -> bool,
) -> usize {
    if items.is_empty() || !ready() {
        return 0;
    }
    let Ok(mem) = Mem::open() else { return 0 };
    patch_all(table, &mem, items, slow, arch::fast_entry(), false)
}

/// [`patch_items`] where nothing runs the code yet (the launcher, before
/// the loader runs or with libc just mapped): the final bytes at once,
/// trampolines jumping to `entry`.
#[cfg_attr(not(feature = "launcher"), allow(dead_code))] // the launcher's
pub fn patch_items_alone(
    table: &mut crate::patch::table::Table,
    items: &[Item],
    slow: fn(u64) -> bool,
    entry: u64,
) -> usize {
    if items.is_empty() {
        return 0;
    }
    let Ok(mem) = Mem::open() else { return 0 };
    patch_all(table, &mem, items, slow, entry, true)
}

// ---------------------------------------------------------------------------
// The new image's side.

/// Writes to our own trampolines and slots, gathered into runs: one pwrite
/// per run instead of one per trampoline and slot. A gap of up to 256
/// bytes between two writes joins them only if it holds zeros (never
/// written: the arenas are fresh mappings of ours), which the run writes
/// back.
const RUN_LEN: usize = 2048;

struct Runs<'a> {
    mem: &'a Mem,
    at: u64,
    buf: [u8; RUN_LEN],
    len: usize,
    ok: bool,
}

impl Runs<'_> {
    fn write(&mut self, addr: u64, bytes: &[u8]) {
        let end = self.at + self.len as u64;
        let joins = self.len > 0 && addr >= end && addr - end <= 256 && zeros(end, (addr - end) as usize);
        if !(joins && (addr - self.at) as usize + bytes.len() <= self.buf.len()) {
            self.flush();
            self.at = addr;
        }
        let off = (addr - self.at) as usize;
        if let Some(d) = self.buf.get_mut(self.len..off) {
            d.fill(0);
        }
        if let Some(d) = self.buf.get_mut(off..off + bytes.len()) {
            d.copy_from_slice(bytes);
            self.len = off + bytes.len();
        }
    }

    fn flush(&mut self) {
        if self.len > 0 {
            self.ok &= self.mem.write(self.at, self.buf.get(..self.len).unwrap_or(&[])).is_ok();
        }
        self.len = 0;
    }
}

/// Whether the `len` (at most 256) bytes at `at` are all zero.
fn zeros(at: u64, len: usize) -> bool {
    let mut gap = [0u8; 256];
    len <= gap.len() && raw::copy_from_user(&mut gap[..len], at).is_ok() && gap.iter().all(|&b| b == 0)
}

/// What is written at one site once its trampoline and slot are in place.
#[derive(Clone, Copy)]
struct Planned {
    key: u64,
    nr: u32,
    slot: u64,
    ext: Option<registry::Ext>,
    site_at: u64,
    site: [u8; forms::MAX_RANGE],
    site_len: usize,
}

/// The carried entry's value, kept from the constructor to the first trap.
struct Pending {
    value: [u8; ENTRY_LEN],
    len: usize,
}
#[link_section = ".bss.usertrap_large"]
static PENDING: spin::Mutex<Pending> = spin::Mutex::new(Pending { value: [0; ENTRY_LEN], len: 0 });
static ANY_PENDING: AtomicBool = AtomicBool::new(false);

/// The new image's constructor: keep `value` (the entry's value, from the
/// entries the exec'ing library put in front) if this image's libc has the
/// build ID the sites were proven in. Nothing is written yet: a process
/// that never makes a patchable syscall (`/bin/true`) pays nothing more.
pub fn keep(value: &[u8]) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let Some((_, _, _, id)) = LIBC.get() else { return };
    let Some(group) = group_for(value, &id) else { return };
    let Some(mut p) = PENDING.try_lock() else { return };
    if group.len() > p.value.len() {
        return;
    }
    p.value[..group.len()].copy_from_slice(group);
    p.len = group.len();
    ANY_PENDING.store(true, Ordering::Release);
}

/// The group of the entry's value `value` whose build ID is `id`.
fn group_for<'a>(value: &'a [u8], id: &[u8; ID_MAX]) -> Option<&'a [u8]> {
    value.split(|&b| b == b';').find(|g| {
        let their_id = g.split(|&b| b == b':').next().unwrap_or(&[]);
        their_id.len() == 2 * ID_MAX
            && their_id.chunks(2).zip(id).all(|(h, &b)| {
                let digit = |i: usize| h.get(i).and_then(|&c| hex_digit(c)).unwrap_or(0x100);
                digit(0) << 4 | digit(1) == b as u64
            })
    })
}

/// Whether carried sites wait for [`apply`].
#[inline]
pub fn pending() -> bool {
    ANY_PENDING.load(Ordering::Relaxed)
}

/// At the process's first trap of a syscall whose sites may be patched
/// (install::consider: PATCHER lock held, signals blocked, the registry
/// mapped; `ready` makes the fast path's list and membarrier ready, true
/// when they are; `slow` is install's needs_slow_path): patch every kept site whose bytes are the ones the parent's
/// proofs were about, if this thread is the only one. Once, whatever the
/// outcome. How many were patched. Its buffers (about 20 KiB) live only
/// while it runs, on the signal stack (64 KiB at the least).
#[inline(never)]
pub fn apply(table: &mut crate::patch::table::Table, ready: impl FnOnce() -> bool, slow: fn(u64) -> bool) -> usize {
    if !ANY_PENDING.swap(false, Ordering::Relaxed) {
        return 0;
    }
    let Some(p) = PENDING.try_lock() else { return 0 };
    let Some(obj) = LIBC.get() else { return 0 };
    let mut items = [Item::default(); MAX_SITES];
    let n = parse_group(p.value.get(..p.len).unwrap_or(&[]), obj, &mut items);
    if n == 0 || !ready() {
        return 0;
    }
    let Ok(mem) = Mem::open() else { return 0 };
    patch_all(table, &mem, items.get(..n).unwrap_or(&[]), slow, arch::fast_entry(), false)
}

/// The launcher, before the loader runs (no other thread; the registry
/// mapped, PATCHER held by the caller): the loader's group of the carried
/// entry's value `value`, applied to the loader whose ELF header is at
/// `header`, its trampolines jumping to `entry` (the gate's jump to its
/// owner's fast entry: the launcher's now, the library's after the
/// hand-off). Its bytes are checked against the checksum as in [`apply`]
/// (the proofs were made in a mapping of the same file, by build ID). How
/// many sites were patched.
#[cfg_attr(not(feature = "launcher"), allow(dead_code))] // the launcher's
#[inline(never)]
pub fn apply_to_loader(
    table: &mut crate::patch::table::Table,
    value: &[u8],
    header: u64,
    entry: u64,
    slow: fn(u64) -> bool,
) -> usize {
    LOADER.note(header);
    let Some(obj) = LOADER.get() else { return 0 };
    let Some(group) = group_for(value, &obj.3) else { return 0 };
    let mut items = [Item::default(); MAX_SITES];
    let n = parse_group(group, obj, &mut items);
    patch_items_alone(table, items.get(..n).unwrap_or(&[]), slow, entry)
}

/// The launcher, when the loader has just mapped an object's code (its
/// ELF header at `header`; no thread runs that code yet: the loader maps,
/// relocates, then initialises, one thread): if the object is the libc of
/// the carried entry's value `value` (by build ID), its group applied as
/// [`apply_to_loader`] applies the loader's, the final bytes at once. None:
/// not that libc (or not readable yet); else how many were patched.
#[cfg_attr(not(feature = "launcher"), allow(dead_code))] // the launcher's
#[inline(never)]
pub fn apply_to_mapped_libc(
    table: &mut crate::patch::table::Table,
    value: &[u8],
    header: u64,
    entry: u64,
    slow: fn(u64) -> bool,
) -> Option<usize> {
    let (_, _, id) = read_libc(header)?;
    let group = group_for(value, &id)?;
    LIBC.note(header);
    let obj = LIBC.get()?;
    let mut items = [Item::default(); MAX_SITES];
    let n = parse_group(group, obj, &mut items);
    Some(patch_items_alone(table, items.get(..n).unwrap_or(&[]), slow, entry))
}

/// The sites of `group` (`<id>:<sites>:<checksum>`) for the object `obj`
/// (bias, text, ID) into `items`, as addresses: how many, 0 unless every
/// site's spans lie in the object's text and their bytes now are the ones
/// the checksum was made of.
fn parse_group(group: &[u8], (bias, lo, hi, _): (u64, u64, u64, [u8; ID_MAX]), items: &mut [Item]) -> usize {
    let mut parts = group.split(|&b| b == b':');
    let (Some(_), Some(list), Some(sum), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return 0;
    };
    let mut n = 0usize;
    let mut check = Fnv::new();
    for s in list.split(|&b| b == b',') {
        let Some(mut it) = decode_item(s) else { return 0 };
        // Back to addresses, each span inside the object's text.
        it.sys = it.sys.wrapping_add(bias);
        if it.form == b'r' {
            it.start = it.start.wrapping_add(bias);
        }
        if it.form == b'p' {
            it.pad = it.pad.wrapping_add(bias);
        }
        for (at, len) in it.spans() {
            if len == 0 {
                continue;
            }
            if at < lo || at.saturating_add(len as u64) > hi || len > forms::MAX_RANGE + forms::OVERLAY_BYTES {
                return 0;
            }
            let mut b = [0u8; forms::MAX_RANGE + forms::OVERLAY_BYTES];
            if !original_bytes(at, &mut b[..len]) {
                return 0;
            }
            check.put(&b[..len]);
        }
        let Some(slot) = items.get_mut(n) else { return 0 };
        *slot = it;
        n += 1;
    }
    // The bytes are the ones the parent's proofs were about.
    if parse_hex(sum) != Some(check.0) {
        return 0;
    }
    n
}

/// The bytes at `at` as the program wrote them: those of sites patched
/// already (carried ones applied before, in the site cache's case) put
/// back from the registry. False if unreadable.
fn original_bytes(at: u64, buf: &mut [u8]) -> bool {
    let mut overlays = [forms::Overlay::EMPTY; 8];
    let Some(n) = registry::overlays_in(at, at + buf.len() as u64, &mut overlays) else { return false };
    let mut live = [0u8; forms::MAX_RANGE + forms::OVERLAY_BYTES];
    let Some(live) = live.get_mut(..buf.len()) else { return false };
    if raw::copy_from_user(live, at).is_err() {
        return false;
    }
    forms::Code { start: at, live, overlays: overlays.get(..n).unwrap_or(&[]) }.bytes(at, buf)
}

/// Step `step` (0 to 3) of write.rs's order for the planned site `p`:
/// 0, the pad (Form P); 1, the first byte of the `syscall` (seed) or of
/// every instruction (R), or the `syscall`'s first (P), becomes 0x06; 2,
/// the bytes after the first take their final values; 3, the first byte.
fn write_step(mem: &Mem, p: &Planned, step: usize) -> Result<(), i64> {
    let fin = p.site.get(..p.site_len).unwrap_or(&[]);
    match (&p.ext, step) {
        (Some(x), 0) if x.form == registry::FORM_PAD => {
            let pl = (x.pad_len as usize).min(forms::OVERLAY_BYTES);
            let bytes = forms::pad_bytes(&forms::Pad { at: x.pad, len: x.pad_len as usize }, p.slot);
            mem.write(x.pad, bytes.get(..pl).unwrap_or(&[]))
        }
        (_, 0) => Ok(()),
        (None, 1) => mem.write(p.site_at + 5, fin.get(5..6).unwrap_or(&[])),
        (Some(x), 1) if x.form == registry::FORM_RANGE => {
            let mut marked = x.orig;
            for &o in x.offs.iter().take(x.n as usize) {
                if let Some(b) = marked.get_mut(o as usize) {
                    *b = 0x06;
                }
            }
            mem.write(p.site_at, marked.get(..p.site_len).unwrap_or(&[]))
        }
        (Some(_), 1) => mem.write(p.site_at, &[0x06]),
        (_, 2) => mem.write(p.site_at + 1, fin.get(1..).unwrap_or(&[])),
        _ => mem.write(p.site_at, fin.get(..1).unwrap_or(&[])),
    }
}

/// Sites planned and written per round (bounds the buffers on the stack).
const ROUND: usize = 16;

fn patch_all(
    table: &mut crate::patch::table::Table,
    mem: &Mem,
    items: &[Item],
    slow: fn(u64) -> bool,
    entry: u64,
    alone: bool,
) -> usize {
    // Whether a site recorded already lies among these items' spans: if
    // none does (a new image's first batch), an item can clash only with
    // one before it in `items`, and no round need search the registry
    // (every search reads all of it: 150 items of an exec'd image's libc,
    // each against the sites the earlier rounds recorded, took more CPU
    // than the rest of the batch).
    let near_recorded = extent(items).is_some_and(|(lo, hi)| patched_in(lo, hi));
    let mut done = 0;
    for (r, round) in items.chunks(ROUND).enumerate() {
        let before = items.get(..r * ROUND).unwrap_or(&[]);
        match patch_round(table, mem, (before, round), near_recorded, slow, entry, alone) {
            Some(d) => done += d,
            None => break,
        }
    }
    done
}

/// The lowest and highest address the items' spans cover.
fn extent(items: &[Item]) -> Option<(u64, u64)> {
    let spans = items.iter().flat_map(|it| it.spans()).filter(|&(_, len)| len > 0);
    spans.fold(None, |acc, (at, len)| {
        let (lo, hi) = acc.unwrap_or((at, at));
        Some((lo.min(at), hi.max(at + len as u64)))
    })
}

/// One round (`items`, after the batch's items `before`): trampolines and
/// slots first (in runs), then each site. `near_recorded`: sites recorded
/// before the batch may touch its items (search the registry for each).
/// None: a write failed, stop.
fn patch_round(
    table: &mut crate::patch::table::Table,
    mem: &Mem,
    (before, items): (&[Item], &[Item]),
    near_recorded: bool,
    slow: fn(u64) -> bool,
    entry: u64,
    alone: bool,
) -> Option<usize> {
    let mut planned = [None::<Planned>; ROUND];
    let mut tramps = Runs { mem, at: 0, buf: [0; RUN_LEN], len: 0, ok: true };
    let mut bigs = Runs { mem, at: 0, buf: [0; RUN_LEN], len: 0, ok: true };
    let mut slots = Runs { mem, at: 0, buf: [0; RUN_LEN], len: 0, ok: true };
    for (i, it) in items.iter().enumerate() {
        registry::prefault(it.sys);
        // An earlier item of the batch that touches this one, planned or
        // not, leaves it to its own trap (an unplanned one: to be safe).
        let mut earlier = before.iter().chain(items.get(..i).unwrap_or(&[]));
        if registry::lookup(it.sys).is_some()
            || (near_recorded && touches_a_patched_site(it))
            || earlier.any(|e| overlap(e, it))
        {
            continue;
        }
        let Some(out) = planned.get_mut(i) else { break };
        *out = match it.form {
            b's' => plan_seed(table, it, &mut tramps, &mut slots, slow, entry),
            b'r' => plan_range(table, it, &mut bigs, &mut slots, entry),
            _ => plan_pad(table, it, &mut bigs, &mut slots, entry),
        };
    }
    for r in [&mut tramps, &mut bigs, &mut slots] {
        r.flush();
    }
    if !(tramps.ok && bigs.ok && slots.ok) {
        return None;
    }
    // Each site recorded PATCHING before its bytes change (fault.rs knows
    // it from then on), then written in write.rs's orders, step by step
    // for the whole round: every site's order is kept, with a barrier
    // between steps (more than patch_site needs; as patch_range and
    // patch_pad have), so five barriers serve sixteen sites.
    let mut ok = [false; ROUND];
    for (p, ok) in planned.iter().zip(ok.iter_mut()) {
        if let Some(p) = p {
            *ok = match &p.ext {
                None => registry::record(p.key, PATCHING, p.nr, "", p.slot as u32),
                Some(x) => registry::record_ext(p.key, PATCHING, p.nr, p.slot as u32, x),
            };
        }
    }
    if alone {
        // Nothing runs these bytes yet (the launcher, before the loader):
        // the final bytes at once, one write per page of them.
        write_alone(mem, &planned, &mut ok);
    } else {
        for step in 0..4 {
            write::sync_cores();
            for (p, ok) in planned.iter().zip(ok.iter_mut()) {
                if let (Some(p), true) = (p, *ok) {
                    *ok = write_step(mem, p, step).is_ok();
                }
            }
        }
        write::sync_cores();
    }
    let mut done = 0;
    for (p, ok) in planned.iter().zip(ok) {
        if let (Some(p), true) = (p, ok) {
            // A failed write left its site PATCHING: its faults are served.
            registry::set_state(p.key, PATCHED);
            done += 1;
        }
    }
    Some(done)
}

/// [`patch_round`]'s writes where nothing runs the code yet: every planned
/// site's final bytes, gathered by page, each page's span from its first
/// write to its last written once (the bytes between them written back as
/// they are); Form P's pads first, in a pass of their own, and a site whose
/// pad could not be written is left as it is. A site whose write fails
/// keeps `ok` false (its registry entry stays PATCHING: should a byte
/// have changed, its faults are served).
fn write_alone(mem: &Mem, planned: &[Option<Planned>; ROUND], ok: &mut [bool; ROUND]) {
    for which in [PAD, SITE] {
        // (address, site index), by address.
        let mut writes = [(0u64, 0usize); ROUND];
        let mut n = 0;
        for (i, p) in planned.iter().enumerate() {
            let (Some(p), Some(true)) = (p, ok.get(i).copied()) else { continue };
            let at = match (which, p.ext) {
                (PAD, Some(x)) if x.form == registry::FORM_PAD => x.pad,
                (PAD, _) => continue,
                _ => p.site_at,
            };
            if let Some(w) = writes.get_mut(n) {
                *w = (at, i);
                n += 1;
            }
        }
        let writes = writes.get_mut(..n).unwrap_or_default();
        writes.sort_unstable_by_key(|w| w.0);
        write_pages(mem, writes, |i| final_bytes(planned.get(i)?.as_ref()?, which), ok);
    }
}

const PAD: u8 = 0;
const SITE: u8 = 1;

/// Whether a span of `it` (its bytes to rewrite, its pad) touches the
/// spans of a site patched already. Each site's proof saw the others
/// patched in its own process only: lines of the site cache written by
/// processes that did not see each other can give two sites one Form P pad
/// (each found it free). Patching both would send the first one's calls
/// through the second one's trampoline and back into the wrong function.
fn touches_a_patched_site(it: &Item) -> bool {
    it.spans().iter().filter(|&&(_, len)| len > 0).any(|&(at, len)| patched_in(at, at + len as u64))
}

/// Whether a patched (or patching) site's bytes or pad lie in [lo, hi).
fn patched_in(lo: u64, hi: u64) -> bool {
    let mut one = [forms::Overlay::EMPTY; 1];
    registry::overlays_in(lo, hi, &mut one) != Some(0)
}

/// Whether two items' spans overlap (two sites planned in one round).
fn overlap(a: &Item, b: &Item) -> bool {
    a.spans()
        .iter()
        .any(|&(x, xl)| b.spans().iter().any(|&(y, yl)| xl > 0 && yl > 0 && x < y + yl as u64 && y < x + xl as u64))
}

/// What [`write_alone`] writes for `p`: its pad's bytes, or its site's.
fn final_bytes(p: &Planned, which: u8) -> Option<([u8; forms::OVERLAY_BYTES], usize)> {
    let mut b = [0u8; forms::OVERLAY_BYTES];
    let len = if which == PAD {
        let x = p.ext?;
        let pl = (x.pad_len as usize).min(forms::OVERLAY_BYTES);
        let pad = forms::pad_bytes(&forms::Pad { at: x.pad, len: x.pad_len as usize }, p.slot);
        b.get_mut(..pl)?.copy_from_slice(pad.get(..pl)?);
        pl
    } else {
        let l = p.site_len.min(forms::OVERLAY_BYTES);
        b.get_mut(..l)?.copy_from_slice(p.site.get(..l)?);
        l
    };
    Some((b, len))
}

/// `writes` (address, site index; ascending, not overlapping) with their
/// bytes from `bytes_of`, one write per page; the sites of a page that
/// cannot be written get `ok` false.
fn write_pages(
    mem: &Mem,
    writes: &[(u64, usize)],
    bytes_of: impl Fn(usize) -> Option<([u8; forms::OVERLAY_BYTES], usize)>,
    ok: &mut [bool; ROUND],
) {
    const PAGE: u64 = 4096;
    let mut done = 0;
    while let Some(&(start, _)) = writes.get(done) {
        // The writes that start in start's page (the last may end past it).
        let mut end = done;
        let mut span_end = start;
        while let Some(&(at, i)) = writes.get(end) {
            let Some((_, len)) = bytes_of(i) else { break };
            if at / PAGE != start / PAGE || at < span_end {
                break;
            }
            span_end = at + len as u64;
            end += 1;
        }
        let stop = end.max(done + 1);
        let mut buf = [0u8; PAGE as usize + forms::OVERLAY_BYTES];
        let written = end > done
            && buf.get_mut(..(span_end - start) as usize).is_some_and(|span| {
                raw::copy_from_user(span, start).is_ok()
                    && writes.get(done..end).unwrap_or(&[]).iter().all(|&(at, i)| {
                        let off = (at - start) as usize;
                        bytes_of(i).is_some_and(|(b, len)| {
                            span.get_mut(off..off + len).zip(b.get(..len)).map(|(d, s)| d.copy_from_slice(s)).is_some()
                        })
                    })
                    && mem.write(start, span).is_ok()
            });
        if !written {
            for &(_, i) in writes.get(done..stop).unwrap_or(&[]) {
                if let Some(o) = ok.get_mut(i) {
                    *o = false;
                }
            }
        }
        done = stop;
    }
}

fn plan_seed(
    table: &mut crate::patch::table::Table,
    it: &Item,
    tramps: &mut Runs<'_>,
    slots: &mut Runs<'_>,
    slow: fn(u64) -> bool,
    entry: u64,
) -> Option<Planned> {
    let site = it.sys - 5;
    let mut b = [0u8; 7];
    raw::copy_from_user(&mut b, site).ok()?;
    if b[0] != 0xb8 || b[5..7] != [0x0f, 0x05] {
        return None;
    }
    let nr = u32::from_le_bytes([b[1], b[2], b[3], b[4]]);
    if nr == site::NR_RT_SIGRETURN || slow(nr as u64) {
        return None;
    }
    let slot = table.alloc_slot()?;
    let tramp = table.alloc_trampoline()?;
    tramps.write(tramp, &arch::trampoline_to(nr, site + 7, entry));
    slots.write(slot, &tramp.to_le_bytes());
    let mut bytes = [0u8; forms::MAX_RANGE];
    bytes[..forms::JUMP_LEN].copy_from_slice(&forms::jump(slot));
    Some(Planned { key: it.sys, nr, slot, ext: None, site_at: site, site: bytes, site_len: 7 })
}

fn plan_range(
    table: &mut crate::patch::table::Table,
    it: &Item,
    bigs: &mut Runs<'_>,
    slots: &mut Runs<'_>,
    entry: u64,
) -> Option<Planned> {
    let (len, n) = (it.len as usize, it.n as usize);
    let sys_off = it.sys.checked_sub(it.start)? as usize;
    let offs = it.offs.get(..n)?;
    // The shape plan_range gives: instructions from offset 0, increasing,
    // the syscall one of them, 7 to MAX_RANGE bytes.
    if !(forms::JUMP_LEN..=forms::MAX_RANGE).contains(&len)
        || offs.first() != Some(&0)
        || offs.windows(2).any(|w| w[0] >= w[1])
        || offs.last().is_some_and(|&l| l as usize >= len)
        || !offs.contains(&(sys_off as u8))
    {
        return None;
    }
    let mut orig = [0u8; forms::MAX_RANGE];
    raw::copy_from_user(orig.get_mut(..len)?, it.start).ok()?;
    if orig.get(sys_off..sys_off + 2) != Some(&[0x0f, 0x05]) {
        return None;
    }
    let mut pun = 0u8;
    for &o in offs.iter().skip(1) {
        match o {
            1 | 2 => return None,
            3 => pun |= 1,
            4 => pun |= 2,
            6 => pun |= 4,
            _ => {}
        }
    }
    let slot = if pun == 0 { table.alloc_slot() } else { table.alloc_punned_slot() }?;
    if !forms::slot_fits(slot, pun) {
        return None;
    }
    let tramp = table.alloc_big_trampoline()?;
    let end = it.start + len as u64;
    let t = forms::range_trampoline(tramp, entry, it.start, orig.get(..len)?, offs, sys_off, end)?;
    bigs.write(tramp, t.code.get(..t.len)?);
    slots.write(slot, &tramp.to_le_bytes());
    let r = forms::Range { start: it.start, len, offs: it.offs, n, sys_off, pun, orig };
    let fin = forms::range_final(&r, slot);
    let x = registry::Ext::range(&r, fin, tramp, t.post_base);
    Some(Planned { key: it.sys, nr: it.nr, slot, ext: Some(x), site_at: it.start, site: fin, site_len: len })
}

fn plan_pad(
    table: &mut crate::patch::table::Table,
    it: &Item,
    bigs: &mut Runs<'_>,
    slots: &mut Runs<'_>,
    entry: u64,
) -> Option<Planned> {
    let pad_len = it.pad_len as usize;
    let rel = it.pad.wrapping_sub(it.sys + 2) as i64;
    if !(forms::JUMP_LEN..=forms::OVERLAY_BYTES).contains(&pad_len) || !(-128..=127).contains(&rel) {
        return None;
    }
    let mut sys = [0u8; 2];
    raw::copy_from_user(&mut sys, it.sys).ok()?;
    if sys != [0x0f, 0x05] {
        return None;
    }
    let slot = table.alloc_slot()?;
    let tramp = table.alloc_big_trampoline()?;
    let t = forms::trampoline(tramp, entry, &[], it.sys + 2, &[], it.sys + 2)?;
    bigs.write(tramp, t.code.get(..t.len)?);
    slots.write(slot, &tramp.to_le_bytes());
    let pad = forms::Pad { at: it.pad, len: pad_len };
    let branch = forms::pad_branch(it.sys, &pad);
    let mut x = registry::Ext::pad(it.sys, branch, &pad, tramp, t.post_base);
    raw::copy_from_user(x.pad_orig.get_mut(..pad_len)?, it.pad).ok()?;
    let mut site_bytes = [0u8; forms::MAX_RANGE];
    site_bytes[..2].copy_from_slice(&branch);
    Some(Planned { key: it.sys, nr: it.nr, slot, ext: Some(x), site_at: it.sys, site: site_bytes, site_len: 2 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_through_text() {
        let items = [
            Item { form: b's', sys: 0xf834e, ..Item::default() },
            Item {
                form: b'r',
                sys: 0xfd7ee,
                nr: 302,
                start: 0xfd7e7,
                len: 9,
                offs: [0, 5, 7, 0, 0, 0, 0, 0],
                n: 3,
                ..Item::default()
            },
            Item { form: b'p', sys: 0xf82ac, nr: 0, pad: 0xf82f8, pad_len: 8, ..Item::default() },
        ];
        for it in items {
            let mut buf = [0u8; 200];
            let mut o = Out { buf: &mut buf, len: 0, ok: true };
            encode_item(&mut o, &it);
            let len = o.len;
            assert_eq!(decode_item(&buf[..len]), Some(it), "{}", String::from_utf8_lossy(&buf[..len]));
        }
        for bad in [&b""[..], b"x12", b"s", b"s12.3", b"r1.2.3.4.0", b"r1.2.3.4.", b"p1.2.3", b"szz"] {
            assert_eq!(decode_item(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn libc_of_this_process_has_a_build_id_and_one_text_segment() {
        // The test binary links libc: its header is where dladdr says.
        // SAFETY: Dl_info is plain data (pointers), valid all-zero.
        let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
        // SAFETY: dladdr reads the loader's list and writes `info`.
        let ok = unsafe { libc::dladdr(libc::getppid as *const libc::c_void, &raw mut info) };
        assert_ne!(ok, 0);
        let (bias, (lo, hi), id) = read_libc(info.dli_fbase as u64).expect("libc's headers");
        let getppid = libc::getppid as *const () as u64;
        assert!(lo <= getppid && getppid < hi && bias <= lo);
        assert_ne!(id, [0; ID_MAX]);
    }
}
