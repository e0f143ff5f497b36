//! ELF program headers of a mapped object: the `PT_GNU_EH_FRAME` segment
//! (`.eh_frame_hdr`), checked against the mapping of the site; and the
//! little-endian field reader exec's checks and the launcher share.
//! Never: decode the unwind tables (unwind.rs).

use super::os::{read_array, Os};
use super::reject::Reject;

/// Little-endian field of `len` (2, 4 or 8) bytes at `off` in `b` (0 if
/// out of range). Also what exec's checks and the launcher read ELF headers with.
pub fn field(b: &[u8], off: usize, len: usize) -> u64 {
    let mut v = [0u8; 8];
    if let (Some(dst), Some(src)) = (v.get_mut(..len), b.get(off..off.saturating_add(len))) {
        dst.copy_from_slice(src);
    }
    u64::from_le_bytes(v)
}

// ---------------------------------------------------------------------------
// ELF headers

pub(super) const PT_LOAD: u32 = 1;
pub(super) const PT_GNU_EH_FRAME: u32 = 0x6474_e550;
pub(super) const PF_X: u32 = 1;
pub(super) const EM_X86_64: u64 = 62;
pub(super) const PHDR_SIZE: usize = 56;
pub(super) const MAX_PHNUM: u64 = 4096;

/// Check the ELF header at `header`, find the load bias from the PT_LOAD at
/// file offset 0, confirm an executable PT_LOAD covers `site`, and return the
/// run-time address of `.eh_frame_hdr`.
pub(super) fn program_headers<O: Os>(os: &mut O, header: u64, site: u64) -> Result<u64, Reject> {
    let eh: [u8; 64] = read_array(os, header).ok_or(Reject::BadElf)?;
    if eh.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(Reject::NotElfObject);
    }
    // ELFCLASS64, little-endian, x86-64.
    if eh.get(4) != Some(&2) || eh.get(5) != Some(&1) || field(&eh, 18, 2) != EM_X86_64 {
        return Err(Reject::BadElf);
    }
    let phoff = field(&eh, 32, 8);
    let phentsize = field(&eh, 54, 2);
    let phnum = field(&eh, 56, 2);
    if phentsize < PHDR_SIZE as u64 || phnum == 0 || phnum > MAX_PHNUM {
        return Err(Reject::BadElf);
    }
    // Pass 1: the load bias (header address minus the page-aligned vaddr of
    // the segment mapped from file offset 0).
    let mut first_vaddr: Option<u64> = None;
    let mut eh_frame_vaddr: Option<u64> = None;
    for i in 0..phnum {
        let ph = read_phdr(os, header, phoff, phentsize, i)?;
        let p_type = field(&ph, 0, 4) as u32;
        if p_type == PT_LOAD && field(&ph, 8, 8) == 0 && first_vaddr.is_none() {
            first_vaddr = Some(field(&ph, 16, 8) & !0xfff);
        } else if p_type == PT_GNU_EH_FRAME {
            eh_frame_vaddr = Some(field(&ph, 16, 8));
        }
    }
    let bias = header.wrapping_sub(first_vaddr.ok_or(Reject::BadElf)?);
    // Pass 2: the site must be in an executable segment of this object.
    let mut covered = false;
    for i in 0..phnum {
        let ph = read_phdr(os, header, phoff, phentsize, i)?;
        let (p_type, p_flags) = (field(&ph, 0, 4) as u32, field(&ph, 4, 4) as u32);
        let lo = bias.wrapping_add(field(&ph, 16, 8));
        let hi = lo.wrapping_add(field(&ph, 40, 8));
        if p_type == PT_LOAD && p_flags & PF_X != 0 && lo <= site && site < hi {
            covered = true;
            break;
        }
    }
    if !covered {
        return Err(Reject::BadElf);
    }
    Ok(bias.wrapping_add(eh_frame_vaddr.ok_or(Reject::NoEhFrameHdr)?))
}

pub(super) fn read_phdr<O: Os>(
    os: &mut O,
    header: u64,
    phoff: u64,
    phentsize: u64,
    i: u64,
) -> Result<[u8; PHDR_SIZE], Reject> {
    let addr = i
        .checked_mul(phentsize)
        .and_then(|o| o.checked_add(phoff))
        .and_then(|o| o.checked_add(header))
        .ok_or(Reject::BadElf)?;
    read_array(os, addr).ok_or(Reject::BadElf)
}
