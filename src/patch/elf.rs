//! ELF program headers of a mapped object: the `PT_GNU_EH_FRAME` segment
//! (`.eh_frame_hdr`), checked against the mapping of the site. The headers
//! are read with usertrap-core's ELF reader (the one exec's checks and the
//! launcher use), with its one program-header limit.
//! Never: decode the unwind tables (unwind.rs).

use super::os::{read_array, Os};
use super::reject::Reject;
use usertrap_core::elf::{self, Header, Phdr, ELFCLASS64, ELFDATA2LSB, EM_X86_64, PF_X, PT_GNU_EH_FRAME, PT_LOAD};

/// Check the ELF header at `header`, find the load bias from the PT_LOAD at
/// file offset 0, confirm an executable PT_LOAD covers `site`, and return the
/// run-time address of `.eh_frame_hdr`. An object with more program headers
/// than exec accepts (elf::MAX_PHNUM) is left unpatched.
pub(super) fn program_headers<O: Os>(os: &mut O, header: u64, site: u64) -> Result<u64, Reject> {
    let eh: [u8; elf::EHDR_SIZE] = read_array(os, header).ok_or(Reject::BadElf)?;
    let h = Header::parse(&eh).ok_or(Reject::NotElfObject)?;
    if h.class != ELFCLASS64 || h.data != ELFDATA2LSB || h.machine != EM_X86_64 {
        return Err(Reject::BadElf);
    }
    let phentsize = u64::from(h.phentsize);
    if usize::from(h.phentsize) < elf::PHDR_SIZE || h.phnum == 0 || usize::from(h.phnum) > elf::MAX_PHNUM {
        return Err(Reject::BadElf);
    }
    let phdr = |os: &mut O, i: u64| read_phdr(os, header, h.phoff, phentsize, i);
    // Pass 1: the load bias (header address minus the page-aligned vaddr of
    // the segment mapped from file offset 0).
    let mut first_vaddr: Option<u64> = None;
    let mut eh_frame_vaddr: Option<u64> = None;
    for i in 0..u64::from(h.phnum) {
        let p = phdr(os, i)?;
        if p.p_type == PT_LOAD && p.p_offset == 0 && first_vaddr.is_none() {
            first_vaddr = Some(p.p_vaddr & !0xfff);
        } else if p.p_type == PT_GNU_EH_FRAME {
            eh_frame_vaddr = Some(p.p_vaddr);
        }
    }
    let bias = header.wrapping_sub(first_vaddr.ok_or(Reject::BadElf)?);
    // Pass 2: the site must be in an executable segment of this object.
    let mut covered = false;
    for i in 0..u64::from(h.phnum) {
        let p = phdr(os, i)?;
        if p.p_type == PT_LOAD && p.p_flags & PF_X != 0 && p.contains(bias, site) {
            covered = true;
            break;
        }
    }
    if !covered {
        return Err(Reject::BadElf);
    }
    Ok(bias.wrapping_add(eh_frame_vaddr.ok_or(Reject::NoEhFrameHdr)?))
}

/// Program header `i` of the table at `header + phoff`, `phentsize` apart.
fn read_phdr<O: Os>(os: &mut O, header: u64, phoff: u64, phentsize: u64, i: u64) -> Result<Phdr, Reject> {
    let addr = i
        .checked_mul(phentsize)
        .and_then(|o| o.checked_add(phoff))
        .and_then(|o| o.checked_add(header))
        .ok_or(Reject::BadElf)?;
    let ph: [u8; elf::PHDR_SIZE] = read_array(os, addr).ok_or(Reject::BadElf)?;
    Phdr::parse(&ph).ok_or(Reject::BadElf)
}
