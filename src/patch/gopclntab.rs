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
//! Trap-context safe: reads through [`Os`], bounded by the section, no panics.

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
    let mut entry = |os: &mut O, i: u64| -> Option<u64> {
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
