//! Function starts from Go's own function table (`.gopclntab`), for Go
//! binaries, which have no `.eh_frame`: the table the Go runtime itself
//! uses to find the function of a PC (runtime/symtab.go, `pcHeader` and
//! `functab`), sorted by entry PC, each function ending where the next one
//! starts.
//!
//! Formats: Go 1.18-1.19 (magic 0xfffffff0) and 1.20+ (0xfffffff1):
//! 32-bit entry offsets from `textStart`; Go 1.16-1.17 (0xfffffffa): 64-bit
//! entry PCs. Anything else is refused.
//!
//! The table is found in memory, once per object (cached): in the object's
//! read-only mappings, at a 32-byte boundary, a header with a known magic,
//! 0, 0, minLC 1, pointer size 8, and (Go 1.18+) `textStart` inside the
//! object's text, whose function table lies in the same mapping.
//!
//! Trap-context safe: reads through [`Os`], bounded by the mapping, no
//! panics; the cache is written under the patch lock (or in single-threaded
//! tests).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::maps::{scan_maps, Object};
use super::os::{read_array, Os};
use super::reject::Reject;

const MAGIC_118: u32 = 0xffff_fff0;
const MAGIC_120: u32 = 0xffff_fff1;
const MAGIC_116: u32 = 0xffff_fffa;

fn u64_at<O: Os>(os: &mut O, addr: u64) -> Option<u64> {
    read_array::<O, 8>(os, addr).map(u64::from_le_bytes)
}

fn u32_at<O: Os>(os: &mut O, addr: u64) -> Option<u32> {
    read_array::<O, 4>(os, addr).map(u32::from_le_bytes)
}

/// (function start, function end) of the function containing `pc`, from
/// the `.gopclntab` at [tab, tab + len).
pub(super) fn lookup<O: Os>(os: &mut O, tab: u64, len: u64, pc: u64) -> Result<(u64, u64), Reject> {
    let bad = Reject::BadUnwind;
    let head: [u8; 8] = read_array(os, tab).ok_or(bad)?;
    let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if head[4] != 0 || head[5] != 0 || head[6] != 1 || head[7] != 8 {
        return Err(Reject::UnsupportedUnwind);
    }
    let nfunc = u64_at(os, tab + 8).ok_or(bad)?;
    let (text, pcln_off, entry_size) = match magic {
        MAGIC_118 | MAGIC_120 => (u64_at(os, tab + 24).ok_or(bad)?, u64_at(os, tab + 64).ok_or(bad)?, 8u64),
        MAGIC_116 => (0, u64_at(os, tab + 56).ok_or(bad)?, 16u64),
        _ => return Err(Reject::UnsupportedUnwind),
    };
    let ftab = tab.checked_add(pcln_off).ok_or(bad)?;
    // nfunc + 1 entries (the last one is the end of the last function).
    let ftab_end = nfunc.checked_add(1).and_then(|n| n.checked_mul(entry_size)).and_then(|b| ftab.checked_add(b));
    if nfunc == 0 || ftab_end.is_none_or(|e| e > tab.saturating_add(len)) {
        return Err(bad);
    }
    let entry = |os: &mut O, i: u64| -> Option<u64> {
        let at = ftab + i * entry_size;
        if entry_size == 8 {
            text.checked_add(u32_at(os, at)? as u64)
        } else {
            u64_at(os, at)
        }
    };
    // Largest i < nfunc with entry(i) <= pc.
    let (mut lo, mut hi) = (0u64, nfunc);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if entry(os, mid).ok_or(bad)? <= pc {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if lo == 0 {
        return Err(Reject::NoFunctionStart);
    }
    let start = entry(os, lo - 1).ok_or(bad)?;
    let end = entry(os, lo).ok_or(bad)?;
    if pc >= end || end <= start {
        return Err(Reject::PastFunctionEnd);
    }
    Ok((start, end))
}

/// Objects looked at: (ELF header, table start, table bound); a bound of 0
/// means "no Go table".
const CACHED: usize = 16;
/// Set once a site's function was found in a Go function table: Go code
/// runs in this process, its syscall stubs on goroutine stacks of a few KiB
/// (patch::install then keeps emulated calls on the slow path).
static GO_CODE: AtomicBool = AtomicBool::new(false);

/// Whether a site of Go code was located in this process (see GO_CODE).
pub fn go_code_seen() -> bool {
    GO_CODE.load(Ordering::Relaxed)
}

pub(super) fn note_go_code() {
    GO_CODE.store(true, Ordering::Relaxed);
}

static CACHE: [[AtomicU64; 3]; CACHED] = [const { [const { AtomicU64::new(0) }; 3] }; CACHED];
static CACHE_NEXT: AtomicU64 = AtomicU64::new(0);

/// The `.gopclntab` of `obj` (start, bytes up to the end of its mapping),
/// if it is a Go object.
pub(super) fn table_of<O: Os>(os: &mut O, obj: &Object) -> Option<(u64, u64)> {
    for e in CACHE.iter() {
        if e[0].load(Ordering::Acquire) == obj.header {
            let (start, len) = (e[1].load(Ordering::Relaxed), e[2].load(Ordering::Relaxed));
            return (len != 0).then_some((start, len));
        }
    }
    let found = search(os, obj);
    let i = (CACHE_NEXT.fetch_add(1, Ordering::Relaxed) as usize) % CACHED;
    if let Some(e) = CACHE.get(i) {
        let (start, len) = found.unwrap_or((0, 0));
        e[0].store(0, Ordering::Release);
        e[1].store(start, Ordering::Relaxed);
        e[2].store(len, Ordering::Relaxed);
        e[0].store(obj.header, Ordering::Release);
    }
    found
}

fn search<O: Os>(os: &mut O, obj: &Object) -> Option<(u64, u64)> {
    // The object's readable, non-executable mappings (Go puts the table in
    // its read-only data, after the text).
    let mut ranges = [(0u64, 0u64); 8];
    let mut n = 0usize;
    scan_maps(os, |m| {
        if m.key() == obj.key && !m.executable() && m.read_only() {
            if let Some(r) = ranges.get_mut(n) {
                *r = (m.start, m.end);
                n += 1;
            }
        }
        true
    })
    .ok()?;
    let mut chunk = [0u8; 4096];
    for &(start, end) in ranges.iter().take(n) {
        let mut at = start;
        while at < end {
            let len = ((end - at) as usize).min(chunk.len());
            let buf = chunk.get_mut(..len)?;
            if os.read(at, buf) {
                let mut o = 0usize;
                while o + 8 <= len {
                    if is_header(buf.get(o..o + 8).unwrap_or(&[])) {
                        let tab = at + o as u64;
                        if plausible(os, tab, end - tab, obj) {
                            return Some((tab, end - tab));
                        }
                    }
                    o += 32;
                }
            }
            at += len as u64;
        }
    }
    None
}

fn is_header(b: &[u8]) -> bool {
    b.len() == 8 && matches!(b[0], 0xf0 | 0xf1 | 0xfa) && b[1..4] == [0xff; 3] && b[4..8] == [0, 0, 1, 8]
}

/// A header whose first function starts in the object's text and whose
/// function table resolves.
fn plausible<O: Os>(os: &mut O, tab: u64, len: u64, obj: &Object) -> bool {
    match lookup(os, tab, len, obj.text_start) {
        Ok((s, e)) => s >= obj.text_start && e <= obj.text_end.saturating_add(1 << 20),
        Err(_) => {
            // The text may start with non-Go code: the first Go function.
            let Some(magic) = u32_at(os, tab) else { return false };
            let first = if magic == MAGIC_116 {
                u64_at(os, tab + 56).and_then(|off| u64_at(os, tab + off))
            } else {
                u64_at(os, tab + 24)
            };
            first.is_some_and(|f| f >= obj.text_start && f < obj.text_end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::patch::os::Bytes;

    /// A Go 1.18 table at 0: text at 0x401000, functions at +0, +0x40,
    /// +0x100, text end +0x180.
    fn table(magic: u8) -> Bytes {
        let mut b = vec![magic, 0xff, 0xff, 0xff, 0, 0, 1, 8];
        b.extend_from_slice(&3u64.to_le_bytes()); // nfunc
        b.extend_from_slice(&1u64.to_le_bytes()); // nfiles
        b.extend_from_slice(&0x401000u64.to_le_bytes()); // textStart
        for _ in 0..4 {
            b.extend_from_slice(&0u64.to_le_bytes()); // funcname .. pctab offsets
        }
        b.extend_from_slice(&72u64.to_le_bytes()); // pclnOffset
        for off in [0u32, 0x40, 0x100, 0x180] {
            b.extend_from_slice(&off.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
        }
        Bytes(b)
    }

    #[test]
    fn functions_from_the_table() {
        let mut t = table(0xf0);
        let len = t.0.len() as u64;
        assert!(is_header(&t.0[..8]));
        assert_eq!(lookup(&mut t, 0, len, 0x401000), Ok((0x401000, 0x401040)));
        assert_eq!(lookup(&mut t, 0, len, 0x401041), Ok((0x401040, 0x401100)));
        assert_eq!(lookup(&mut t, 0, len, 0x40117f), Ok((0x401100, 0x401180)));
        assert_eq!(lookup(&mut t, 0, len, 0x401180), Err(Reject::PastFunctionEnd));
        assert_eq!(lookup(&mut t, 0, len, 0x400fff), Err(Reject::NoFunctionStart));
        // Go 1.20's magic reads the same way.
        let mut t = table(0xf1);
        assert_eq!(lookup(&mut t, 0, len, 0x401050), Ok((0x401040, 0x401100)));
        // Unknown magic, wrong pointer size, a table running past its bound.
        let mut t = table(0xfb);
        assert_eq!(lookup(&mut t, 0, len, 0x401050), Err(Reject::UnsupportedUnwind));
        let mut t = table(0xf0);
        t.0[7] = 4;
        assert_eq!(lookup(&mut t, 0, len, 0x401050), Err(Reject::UnsupportedUnwind));
        let mut t = table(0xf0);
        assert_eq!(lookup(&mut t, 0, len - 1, 0x401050), Err(Reject::BadUnwind));
    }
}
