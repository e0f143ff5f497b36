//! The unwind tables (`.eh_frame_hdr` and `.eh_frame`, DWARF pointer
//! encodings): the FDE covering an address gives its function's start and
//! end. Through the sorted index when there is one, else by a linear walk of
//! `.eh_frame` (objects the launcher loaded, see hints.rs).
//! Never: trust a length or offset unchecked (every read is bounded).

use super::os::{read_array, read_u16, read_u32, read_u64, read_u8, Os};
use super::reject::Reject;

// ---------------------------------------------------------------------------
// .eh_frame_hdr and .eh_frame

// DW_EH_PE_* pointer encodings: low nibble = format, next 3 bits = application.
pub(super) const PE_OMIT: u8 = 0xff;
pub(super) const PE_ABSPTR: u8 = 0x00;
pub(super) const PE_ULEB128: u8 = 0x01;
pub(super) const PE_UDATA2: u8 = 0x02;
pub(super) const PE_UDATA4: u8 = 0x03;
pub(super) const PE_UDATA8: u8 = 0x04;
pub(super) const PE_SLEB128: u8 = 0x09;
pub(super) const PE_SDATA2: u8 = 0x0a;
pub(super) const PE_SDATA4: u8 = 0x0b;
pub(super) const PE_SDATA8: u8 = 0x0c;
pub(super) const PE_PCREL: u8 = 0x10;
pub(super) const PE_DATAREL: u8 = 0x30;

/// Read an unsigned (or signed) LEB128 number at `addr`: (value, length).
pub(super) fn read_leb<O: Os>(os: &mut O, addr: u64, signed: bool) -> Option<(u64, u64)> {
    let mut v = 0u64;
    let mut shift = 0u32;
    for i in 0..10u64 {
        let b = read_u8(os, addr.checked_add(i)?)?;
        if shift < 64 {
            v |= ((b & 0x7f) as u64) << shift;
        }
        shift += 7;
        if b & 0x80 == 0 {
            if signed && shift < 64 && b & 0x40 != 0 {
                v |= u64::MAX << shift;
            }
            return Some((v, i + 1));
        }
    }
    None
}

/// Read a value of pointer encoding `enc` at `addr`: (value, length).
/// `datarel` is the base for DW_EH_PE_datarel (the .eh_frame_hdr start), when
/// that application is meaningful. Indirect, aligned, textrel and funcrel are
/// not supported (GNU ld and gcc do not emit them here).
pub(super) fn read_encoded<O: Os>(os: &mut O, addr: u64, enc: u8, datarel: Option<u64>) -> Result<(u64, u64), Reject> {
    let bad = Reject::BadUnwind;
    let (raw, len) = match enc & 0x0f {
        PE_ABSPTR | PE_UDATA8 | PE_SDATA8 => (read_u64(os, addr).ok_or(bad)?, 8),
        PE_UDATA4 => (read_u32(os, addr).ok_or(bad)? as u64, 4),
        PE_SDATA4 => (read_u32(os, addr).ok_or(bad)? as i32 as i64 as u64, 4),
        PE_UDATA2 => (read_u16(os, addr).ok_or(bad)? as u64, 2),
        PE_SDATA2 => (read_u16(os, addr).ok_or(bad)? as i16 as i64 as u64, 2),
        PE_ULEB128 => read_leb(os, addr, false).ok_or(bad)?,
        PE_SLEB128 => read_leb(os, addr, true).ok_or(bad)?,
        _ => return Err(Reject::UnsupportedUnwind),
    };
    let value = match enc & 0xf0 {
        0x00 => raw,
        PE_PCREL => addr.wrapping_add(raw),
        PE_DATAREL => datarel.ok_or(Reject::UnsupportedUnwind)?.wrapping_add(raw),
        _ => return Err(Reject::UnsupportedUnwind),
    };
    Ok((value, len))
}

/// Size of a fixed-size encoded value (for indexing the search table).
pub(super) fn fixed_size(enc: u8) -> Option<u64> {
    match enc & 0x0f {
        PE_ABSPTR | PE_UDATA8 | PE_SDATA8 => Some(8),
        PE_UDATA4 | PE_SDATA4 => Some(4),
        PE_UDATA2 | PE_SDATA2 => Some(2),
        _ => None,
    }
}

/// Find the FDE covering `site` through the `.eh_frame_hdr` at `hdr`:
/// (function start, function end).
pub(super) fn lookup_fde<O: Os>(os: &mut O, hdr: u64, site: u64) -> Result<(u64, u64), Reject> {
    let (start, end) = fde_at_or_below(os, hdr, site)?;
    if site >= end {
        return Err(Reject::PastFunctionEnd);
    }
    Ok((start, end))
}

/// The FDE with the largest start at or below `site`, whether or not it
/// covers `site`: (function start, function end).
fn fde_at_or_below<O: Os>(os: &mut O, hdr: u64, site: u64) -> Result<(u64, u64), Reject> {
    let bad = Reject::BadUnwind;
    let head: [u8; 4] = read_array(os, hdr).ok_or(bad)?;
    let [version, eh_frame_ptr_enc, fde_count_enc, table_enc] = head;
    if version != 1 {
        return Err(Reject::UnsupportedUnwind);
    }
    if eh_frame_ptr_enc == PE_OMIT || fde_count_enc == PE_OMIT || table_enc == PE_OMIT {
        // No binary-search table (a linear walk of .eh_frame is not done).
        return Err(Reject::UnsupportedUnwind);
    }
    let mut p = hdr.checked_add(4).ok_or(bad)?;
    let (_eh_frame, n) = read_encoded(os, p, eh_frame_ptr_enc, Some(hdr))?;
    p = p.checked_add(n).ok_or(bad)?;
    let (count, n) = read_encoded(os, p, fde_count_enc, Some(hdr))?;
    let table = p.checked_add(n).ok_or(bad)?;
    let size = fixed_size(table_enc).ok_or(Reject::UnsupportedUnwind)?;
    let entry = size * 2;
    if count == 0 {
        return Err(Reject::NoFunctionStart);
    }
    // Largest i with initial_location(i) <= site.
    let (mut lo, mut hi) = (0u64, count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let at = mid.checked_mul(entry).and_then(|o| table.checked_add(o)).ok_or(bad)?;
        let (loc, _) = read_encoded(os, at, table_enc, Some(hdr))?;
        if loc <= site {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if lo == 0 {
        return Err(Reject::NoFunctionStart);
    }
    let at = (lo - 1).checked_mul(entry).and_then(|o| table.checked_add(o)).ok_or(bad)?;
    let (initial, _) = read_encoded(os, at, table_enc, Some(hdr))?;
    let (fde, _) = read_encoded(os, at.checked_add(size).ok_or(bad)?, table_enc, Some(hdr))?;
    let (start, range) = read_fde(os, fde)?;
    if start != initial {
        return Err(bad);
    }
    let end = start.checked_add(range).ok_or(bad)?;
    Ok((start, end))
}

/// The function before the one starting at `func_start`: the last FDE of
/// the table starting below it, (start, end), if it ends at or below
/// `func_start` (where the padding before that function begins).
pub(super) fn prev_fde<O: Os>(os: &mut O, hdr: u64, func_start: u64) -> Option<(u64, u64)> {
    let (start, end) = fde_at_or_below(os, hdr, func_start.checked_sub(1)?).ok()?;
    (start < end && end <= func_start).then_some((start, end))
}

/// The lowest function start in `.eh_frame_hdr`'s table above `addr`
/// (None: none, or the table cannot be read): where the padding after a
/// function ends.
pub(super) fn next_fde_start<O: Os>(os: &mut O, hdr: u64, addr: u64) -> Option<u64> {
    let head: [u8; 4] = read_array(os, hdr)?;
    let [version, eh_frame_ptr_enc, fde_count_enc, table_enc] = head;
    if version != 1 || eh_frame_ptr_enc == PE_OMIT || fde_count_enc == PE_OMIT || table_enc == PE_OMIT {
        return None;
    }
    let mut p = hdr.checked_add(4)?;
    let (_, n) = read_encoded(os, p, eh_frame_ptr_enc, Some(hdr)).ok()?;
    p = p.checked_add(n)?;
    let (count, n) = read_encoded(os, p, fde_count_enc, Some(hdr)).ok()?;
    let table = p.checked_add(n)?;
    let entry = fixed_size(table_enc)? * 2;
    // Smallest i with initial_location(i) > addr.
    let (mut lo, mut hi) = (0u64, count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let at = table.checked_add(mid.checked_mul(entry)?)?;
        if read_encoded(os, at, table_enc, Some(hdr)).ok()?.0 <= addr {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if lo >= count {
        return None;
    }
    let at = table.checked_add(lo.checked_mul(entry)?)?;
    Some(read_encoded(os, at, table_enc, Some(hdr)).ok()?.0)
}

/// Walk the records of the `.eh_frame` at [start, start + len) for the FDE
/// covering `site`: (function start, function end). Linear, with the last
/// CIE's pointer encoding remembered (nearly every FDE shares one CIE).
pub(super) fn scan_eh_frame<O: Os>(os: &mut O, start: u64, len: u64, site: u64) -> Result<(u64, u64), Reject> {
    let bad = Reject::BadUnwind;
    let end = start.checked_add(len).ok_or(bad)?;
    let mut rec = start;
    let mut cie_cache: Option<(u64, u8)> = None;
    while rec.checked_add(4).is_some_and(|r| r <= end) {
        if read_u32(os, rec).ok_or(bad)? == 0 {
            break; // terminator
        }
        let (rec_len, id_field) = record_header(os, rec)?;
        let cie_off = read_u32(os, id_field).ok_or(bad)?;
        if cie_off != 0 {
            let cie = id_field.checked_sub(cie_off as u64).ok_or(bad)?;
            let enc = match cie_cache {
                Some((c, e)) if c == cie => e,
                _ => {
                    let e = cie_fde_encoding(os, cie)?;
                    cie_cache = Some((cie, e));
                    e
                }
            };
            let (begin, range) = fde_range(os, id_field, enc)?;
            if begin <= site && site < begin.saturating_add(range) {
                return Ok((begin, begin.saturating_add(range)));
            }
        }
        rec = id_field.checked_add(rec_len).ok_or(bad)?;
    }
    Err(Reject::NoFunctionStart)
}

/// (pc_begin, pc_range) of the FDE at `fde`.
pub(super) fn read_fde<O: Os>(os: &mut O, fde: u64) -> Result<(u64, u64), Reject> {
    let bad = Reject::BadUnwind;
    let (_, cie_ptr_field) = record_header(os, fde)?;
    let cie_off = read_u32(os, cie_ptr_field).ok_or(bad)?;
    if cie_off == 0 {
        return Err(bad); // a CIE, not an FDE
    }
    let cie = cie_ptr_field.checked_sub(cie_off as u64).ok_or(bad)?;
    let enc = cie_fde_encoding(os, cie)?;
    fde_range(os, cie_ptr_field, enc)
}

/// (pc_begin, pc_range) of an FDE whose CIE pointer is at `cie_ptr_field`,
/// its CIE declaring pointer encoding `enc`.
pub(super) fn fde_range<O: Os>(os: &mut O, cie_ptr_field: u64, enc: u8) -> Result<(u64, u64), Reject> {
    let bad = Reject::BadUnwind;
    let begin_field = cie_ptr_field.checked_add(4).ok_or(bad)?;
    // pc_begin: full encoding (pcrel from its own field); datarel is not
    // meaningful in .eh_frame on x86-64.
    let (begin, n) = read_encoded(os, begin_field, enc, None)?;
    // pc_range: the same format, no application.
    let (range, _) = read_encoded(os, begin_field.checked_add(n).ok_or(bad)?, enc & 0x0f, None)?;
    Ok((begin, range))
}

/// Length word of a CIE/FDE at `rec`: (length, address of the id/CIE-pointer field).
pub(super) fn record_header<O: Os>(os: &mut O, rec: u64) -> Result<(u64, u64), Reject> {
    let bad = Reject::BadUnwind;
    let len = read_u32(os, rec).ok_or(bad)?;
    match len {
        0 => Err(bad), // terminator
        0xffff_ffff => {
            let len64 = read_u64(os, rec.checked_add(4).ok_or(bad)?).ok_or(bad)?;
            Ok((len64, rec.checked_add(12).ok_or(bad)?))
        }
        _ => Ok((len as u64, rec.checked_add(4).ok_or(bad)?)),
    }
}

/// The FDE pointer encoding declared by the CIE at `cie` ('R' augmentation;
/// absptr without one).
pub(super) fn cie_fde_encoding<O: Os>(os: &mut O, cie: u64) -> Result<u8, Reject> {
    let bad = Reject::BadUnwind;
    let (_, id_field) = record_header(os, cie)?;
    if read_u32(os, id_field).ok_or(bad)? != 0 {
        return Err(bad);
    }
    let mut p = id_field.checked_add(4).ok_or(bad)?;
    let version = read_u8(os, p).ok_or(bad)?;
    if version != 1 && version != 3 {
        return Err(Reject::UnsupportedUnwind);
    }
    p = p.checked_add(1).ok_or(bad)?;
    let mut aug = [0u8; 8];
    let mut aug_len = 0usize;
    loop {
        let c = read_u8(os, p).ok_or(bad)?;
        p = p.checked_add(1).ok_or(bad)?;
        if c == 0 {
            break;
        }
        *aug.get_mut(aug_len).ok_or(Reject::UnsupportedUnwind)? = c;
        aug_len += 1;
    }
    let aug = aug.get(..aug_len).unwrap_or(&[]);
    if aug.is_empty() {
        return Ok(PE_ABSPTR);
    }
    if aug.first() != Some(&b'z') {
        return Err(Reject::UnsupportedUnwind);
    }
    // code_alignment_factor, data_alignment_factor, return_address_register.
    let (_, n) = read_leb(os, p, false).ok_or(bad)?;
    p = p.checked_add(n).ok_or(bad)?;
    let (_, n) = read_leb(os, p, true).ok_or(bad)?;
    p = p.checked_add(n).ok_or(bad)?;
    let n = if version == 1 { 1 } else { read_leb(os, p, false).ok_or(bad)?.1 };
    p = p.checked_add(n).ok_or(bad)?;
    // Augmentation data length, then the data in the order of the letters.
    let (_, n) = read_leb(os, p, false).ok_or(bad)?;
    p = p.checked_add(n).ok_or(bad)?;
    for &c in aug.get(1..).unwrap_or(&[]) {
        match c {
            b'R' => return read_u8(os, p).ok_or(bad),
            b'L' => p = p.checked_add(1).ok_or(bad)?,
            b'P' => {
                let penc = read_u8(os, p).ok_or(bad)?;
                p = p.checked_add(1).ok_or(bad)?;
                // Skip the personality pointer (aligned encodings unsupported).
                if penc & 0x70 == 0x50 {
                    return Err(Reject::UnsupportedUnwind);
                }
                let (_, n) = read_encoded(os, p, penc & 0x0f, None)?;
                p = p.checked_add(n).ok_or(bad)?;
            }
            b'S' | b'B' | b'G' => {}
            _ => return Err(Reject::UnsupportedUnwind),
        }
    }
    Ok(PE_ABSPTR)
}
