//! The library's own mappings that live as long as the process and that the
//! program must not change (see process::guard_own_memory): besides the gate
//! (a fixed address), the slot windows and trampoline arenas (patch/table.rs),
//! and each thread's area (its state and signal stack) and figures
//! (stats.rs). Each is mapped through [`map`] (or recorded with [`add`]) and
//! never unmapped.
//!
//! [`overlaps`] runs for every munmap/mprotect/madvise/... the program makes,
//! on the fast path too: integer-only and lock-free. A bitmap of 2 MiB
//! chunks (hashed) answers "no" for most ranges without visiting the list.
//!
//! Never: unmap what it recorded.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::rt::raw;

/// Two mappings per thread (area, figures) for up to 8,192 threads; past
/// that, new mappings stay unguarded (256 KiB of tables is the trade-off).
const MAX_REGIONS: usize = 1 << 14;
/// Each mapping's [start, len] side by side (the first ones share a page);
/// len is 0 until the entry is complete (stored last, with Release).
#[link_section = ".bss.usertrap_large"]
static REGIONS: [[AtomicU64; 2]; MAX_REGIONS] = [const { [AtomicU64::new(0), AtomicU64::new(0)] }; MAX_REGIONS];
static COUNT: AtomicUsize = AtomicUsize::new(0);

const CHUNK_SHIFT: u32 = 21;
const BITMAP_WORDS: usize = 64; // 4096 bits
static BITMAP: [AtomicU64; BITMAP_WORDS] = [const { AtomicU64::new(0) }; BITMAP_WORDS];
/// A range covering more chunks than this skips the bitmap.
const MAX_CHUNK_PROBES: u64 = 64;

#[inline(always)]
fn bit_of(chunk: u64) -> (usize, u64) {
    let h = (chunk.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize; // 12 bits
    (h / 64 % BITMAP_WORDS, 1u64 << (h % 64))
}

/// Record [start, start+len) as the library's.
pub fn add(start: u64, len: u64) {
    if len == 0 {
        return;
    }
    let mut c = start >> CHUNK_SHIFT;
    let last = (start + len - 1) >> CHUNK_SHIFT;
    while c <= last {
        let (w, b) = bit_of(c);
        if let Some(word) = BITMAP.get(w) {
            word.fetch_or(b, Ordering::Release);
        }
        c += 1;
    }
    let i = COUNT.fetch_add(1, Ordering::AcqRel);
    match REGIONS.get(i) {
        Some([s, l]) => {
            s.store(start, Ordering::Relaxed);
            l.store(len, Ordering::Release);
        }
        // Full: the mapping stays unguarded (a program that unmaps it crashes
        // as it would have before the guard existed).
        _ => {
            COUNT.store(MAX_REGIONS, Ordering::Relaxed);
        }
    }
}

/// An anonymous private mapping of the library's, guarded from the program.
pub fn map(len: usize, prot: i32) -> Result<u64, i64> {
    let a = raw::mmap_anon(len, prot)?;
    add(a, len as u64);
    Ok(a)
}

/// Does [addr, addr+len) overlap one of the recorded mappings?
#[inline(always)]
pub fn overlaps(addr: u64, len: u64) -> bool {
    let n = COUNT.load(Ordering::Acquire).min(MAX_REGIONS);
    if n == 0 || len == 0 {
        return false;
    }
    let end = addr.saturating_add(len);
    let first = addr >> CHUNK_SHIFT;
    let last = (end - 1) >> CHUNK_SHIFT;
    if last - first < MAX_CHUNK_PROBES {
        let mut c = first;
        let mut hit = false;
        while c <= last {
            let (w, b) = bit_of(c);
            if let Some(word) = BITMAP.get(w) {
                if word.load(Ordering::Acquire) & b != 0 {
                    hit = true;
                    break;
                }
            }
            c += 1;
        }
        if !hit {
            return false;
        }
    }
    let mut i = 0;
    while i < n {
        if let Some([s, l]) = REGIONS.get(i) {
            let l = l.load(Ordering::Acquire);
            let s = s.load(Ordering::Relaxed);
            if l != 0 && addr < s + l && end > s {
                return true;
            }
        }
        i += 1;
    }
    false
}
