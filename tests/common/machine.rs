//! Facts about the machine and its files that decide what a test expects:
//! whether it runs as root, whether an executable is statically linked.

use std::fs;
use std::path::Path;

extern "C" {
    fn geteuid() -> u32;
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { geteuid() == 0 }
}

/// Some(true) for an x86-64 ELF executable without PT_INTERP (statically
/// linked), Some(false) with one, None if `path` is not a readable ELF64.
pub fn elf_is_static(path: &Path) -> Option<bool> {
    use usertrap_core::elf;
    let b = fs::read(path).ok()?;
    let h = elf::Header::parse(&b).filter(|h| h.class == elf::ELFCLASS64 && h.data == elf::ELFDATA2LSB)?;
    let table = b.get(usize::try_from(h.phoff).ok()?..)?;
    let table = table.get(..h.phdrs_len()).unwrap_or(table);
    Some(elf::find(table, h.phentsize.into(), elf::PT_INTERP).is_none())
}
