//! ELF64 file and program headers: one reader for the library (exec checks,
//! patching), the launcher (loading) and the `usertrap` command (what a
//! command is). Constants are named as in include/uapi/linux/elf.h; the
//! checks are those of the kernel's fs/binfmt_elf.c (load_elf_binary,
//! elf_read_phdrs), so that what we accept is exactly what exec runs.
//!
//! Everything works on byte slices the caller read (pread, or the memory of
//! a mapped object): out-of-range reads give 0 or None, never a panic.

/// `\x7fELF` (EI_MAG0..EI_MAG3).
pub const ELFMAG: [u8; 4] = *b"\x7fELF";
/// e_ident[EI_CLASS].
pub const EI_CLASS: usize = 4;
pub const ELFCLASS32: u8 = 1;
pub const ELFCLASS64: u8 = 2;
/// e_ident[EI_DATA].
pub const EI_DATA: usize = 5;
pub const ELFDATA2LSB: u8 = 1;
/// e_type.
pub const ET_EXEC: u16 = 2;
pub const ET_DYN: u16 = 3;
/// e_machine.
pub const EM_386: u16 = 3;
pub const EM_X86_64: u16 = 62;

/// p_type.
pub const PT_NULL: u32 = 0;
pub const PT_LOAD: u32 = 1;
pub const PT_DYNAMIC: u32 = 2;
pub const PT_INTERP: u32 = 3;
pub const PT_NOTE: u32 = 4;
pub const PT_PHDR: u32 = 6;
pub const PT_TLS: u32 = 7;
pub const PT_GNU_EH_FRAME: u32 = 0x6474_e550;
pub const PT_GNU_STACK: u32 = 0x6474_e551;
pub const PT_GNU_RELRO: u32 = 0x6474_e552;
pub const PT_GNU_PROPERTY: u32 = 0x6474_e553;
/// p_flags.
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;

/// sizeof(Elf64_Ehdr) and sizeof(Elf64_Phdr).
pub const EHDR_SIZE: usize = 64;
pub const PHDR_SIZE: usize = 56;

/// The most program-header bytes exec reads: elf_read_phdrs refuses
/// `e_phnum * sizeof(struct elf_phdr)` of 0 or above 64 KiB (ENOEXEC).
/// (Kernels before about 4.x also refused more than a page; not followed.)
pub const MAX_PHDRS_BYTES: usize = 65_536;
/// The one program-header limit: 1170 (65536 / 56), the most the kernel
/// execs. The exec check refuses more (ENOEXEC, as the kernel); the
/// launcher must be able to hold this many (MAX_PHDRS_BYTES of storage);
/// the patcher leaves a mapped object with more unpatched.
pub const MAX_PHNUM: usize = MAX_PHDRS_BYTES / PHDR_SIZE;
/// PATH_MAX, the longest PT_INTERP load_elf_binary accepts (with its NUL).
pub const INTERP_MAX: usize = 4096;

/// Little-endian `u16` at `off` (0 if out of range).
pub fn u16_at(b: &[u8], off: usize) -> u16 {
    match b.get(off..off.saturating_add(2)) {
        Some(&[x, y]) => u16::from_le_bytes([x, y]),
        _ => 0,
    }
}

/// Little-endian `u32` at `off` (0 if out of range).
pub fn u32_at(b: &[u8], off: usize) -> u32 {
    match b.get(off..off.saturating_add(4)) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// Little-endian `u64` at `off` (0 if out of range).
pub fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut v = [0u8; 8];
    if let Some(s) = b.get(off..off.saturating_add(8)) {
        v.copy_from_slice(s);
    }
    u64::from_le_bytes(v)
}

/// The fields of an Elf64_Ehdr, as read (no check beyond the length).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub class: u8,
    pub data: u8,
    pub e_type: u16,
    pub machine: u16,
    pub entry: u64,
    pub phoff: u64,
    pub shoff: u64,
    pub phentsize: u16,
    pub phnum: u16,
    pub shentsize: u16,
    pub shnum: u16,
    pub shstrndx: u16,
}

impl Header {
    /// The ELF64 header at the start of `b`: None if `b` is shorter than
    /// EHDR_SIZE or does not start with ELFMAG.
    pub fn parse(b: &[u8]) -> Option<Header> {
        if b.len() < EHDR_SIZE || !b.starts_with(&ELFMAG) {
            return None;
        }
        Some(Header {
            class: b.get(EI_CLASS).copied().unwrap_or(0),
            data: b.get(EI_DATA).copied().unwrap_or(0),
            e_type: u16_at(b, 16),
            machine: u16_at(b, 18),
            entry: u64_at(b, 24),
            phoff: u64_at(b, 32),
            shoff: u64_at(b, 40),
            phentsize: u16_at(b, 54),
            phnum: u16_at(b, 56),
            shentsize: u16_at(b, 58),
            shnum: u16_at(b, 60),
            shstrndx: u16_at(b, 62),
        })
    }

    /// Bytes of the program header table (`phnum * phentsize`).
    pub fn phdrs_len(&self) -> usize {
        usize::from(self.phnum).saturating_mul(usize::from(self.phentsize))
    }
}

/// Why exec would refuse an ELF file (the kernel's ENOEXEC), or why it is
/// not one the launcher loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// No ELF magic: not an ELF file at all.
    NotElf,
    /// Shorter than its header.
    Truncated,
    /// e_ident[EI_CLASS] neither 32- nor 64-bit.
    Class(u8),
    /// Not for this machine (with its class: a 32-bit file of another
    /// machine than i386 is `Machine { class: 1, .. }`).
    Machine { class: u8, machine: u16 },
    /// Neither ET_EXEC nor ET_DYN.
    Type(u16),
    /// e_phentsize is not sizeof(Elf64_Phdr).
    PhentSize(u16),
    /// No program header, or more than MAX_PHNUM.
    PhNum(u16),
    /// PT_INTERP shorter than 2 or longer than INTERP_MAX bytes, or not
    /// NUL-terminated.
    Interp,
}

/// What exec makes of an ELF file the kernel would run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exec {
    /// An x86-64 executable (checked as load_elf_binary does).
    X86_64(Header),
    /// A 32-bit i386 executable (ET_EXEC or ET_DYN): the compat loader's;
    /// the launcher cannot load it.
    I386,
}

/// The checks of load_elf_binary and elf_read_phdrs on the first bytes of
/// a file (at least EHDR_SIZE for an x86-64 file): the magic, e_type,
/// e_machine, e_phentsize and the program-header count (1 to MAX_PHNUM).
/// Like the kernel, EI_DATA and the version fields are not looked at.
pub fn check_exec(head: &[u8]) -> Result<Exec, Error> {
    if !head.starts_with(&ELFMAG) {
        return Err(Error::NotElf);
    }
    let class = head.get(EI_CLASS).copied().ok_or(Error::Truncated)?;
    // e_type and e_machine sit at the same offsets in both classes.
    if head.len() < 20 {
        return Err(Error::Truncated);
    }
    let (e_type, machine) = (u16_at(head, 16), u16_at(head, 18));
    let executable = e_type == ET_EXEC || e_type == ET_DYN;
    match class {
        ELFCLASS32 if machine == EM_386 && executable => return Ok(Exec::I386),
        ELFCLASS32 => return Err(Error::Machine { class, machine }),
        ELFCLASS64 if machine != EM_X86_64 => return Err(Error::Machine { class, machine }),
        ELFCLASS64 => {}
        c => return Err(Error::Class(c)),
    }
    let h = Header::parse(head).ok_or(Error::Truncated)?;
    if !executable {
        return Err(Error::Type(e_type));
    }
    if usize::from(h.phentsize) != PHDR_SIZE {
        return Err(Error::PhentSize(h.phentsize));
    }
    if h.phnum == 0 || usize::from(h.phnum) > MAX_PHNUM {
        return Err(Error::PhNum(h.phnum));
    }
    Ok(Exec::X86_64(h))
}

/// One Elf64_Phdr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Phdr {
    pub p_type: u32,
    pub p_flags: u32,
    pub p_offset: u64,
    pub p_vaddr: u64,
    pub p_paddr: u64,
    pub p_filesz: u64,
    pub p_memsz: u64,
    pub p_align: u64,
}

impl Phdr {
    /// The program header at the start of `b` (None if shorter than PHDR_SIZE).
    pub fn parse(b: &[u8]) -> Option<Phdr> {
        if b.len() < PHDR_SIZE {
            return None;
        }
        Some(Phdr {
            p_type: u32_at(b, 0),
            p_flags: u32_at(b, 4),
            p_offset: u64_at(b, 8),
            p_vaddr: u64_at(b, 16),
            p_paddr: u64_at(b, 24),
            p_filesz: u64_at(b, 32),
            p_memsz: u64_at(b, 40),
            p_align: u64_at(b, 48),
        })
    }

    /// Whether `addr` lies in the segment's memory, `bias` added.
    pub fn contains(&self, bias: u64, addr: u64) -> bool {
        let lo = bias.wrapping_add(self.p_vaddr);
        addr >= lo && addr - lo < self.p_memsz
    }
}

/// The program headers in `table` (the bytes at e_phoff), `entsize` bytes
/// apart (e_phentsize, at least PHDR_SIZE); a short last entry is left out.
pub fn phdrs(table: &[u8], entsize: usize) -> impl Iterator<Item = Phdr> + '_ {
    let step = entsize.max(PHDR_SIZE);
    (0..table.len() / step).filter_map(move |i| Phdr::parse(table.get(i.saturating_mul(step)..).unwrap_or(&[])))
}

/// The first program header of type `p_type` in `table`.
pub fn find(table: &[u8], entsize: usize, p_type: u32) -> Option<Phdr> {
    phdrs(table, entsize).find(|p| p.p_type == p_type)
}

/// Where to read a PT_INTERP's name: (file offset, length with its NUL),
/// checked as load_elf_binary does (2 to INTERP_MAX bytes, else ENOEXEC).
pub fn interp_span(p: &Phdr) -> Result<(u64, usize), Error> {
    match usize::try_from(p.p_filesz) {
        Ok(len) if (2..=INTERP_MAX).contains(&len) => Ok((p.p_offset, len)),
        _ => Err(Error::Interp),
    }
}

/// The interpreter's path from the `interp_span` bytes read: they must end
/// in NUL (ENOEXEC otherwise); the path is a C string (to its first NUL).
pub fn interp_name(read: &[u8]) -> Result<&[u8], Error> {
    if read.len() < 2 || read.last() != Some(&0) {
        return Err(Error::Interp);
    }
    let end = read.iter().position(|&b| b == 0).unwrap_or(read.len());
    Ok(read.get(..end).unwrap_or(&[]))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// An x86-64 ELF header with `phnum` program headers right after it.
    fn elf(phnum: u16, types: &[u32]) -> Vec<u8> {
        let mut b = std::vec![0u8; EHDR_SIZE];
        b[..4].copy_from_slice(&ELFMAG);
        b[EI_CLASS] = ELFCLASS64;
        b[EI_DATA] = ELFDATA2LSB;
        b[6] = 1;
        b[16..18].copy_from_slice(&ET_DYN.to_le_bytes());
        b[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        b[32..40].copy_from_slice(&(EHDR_SIZE as u64).to_le_bytes());
        b[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        b[56..58].copy_from_slice(&phnum.to_le_bytes());
        for &t in types {
            let mut ph = [0u8; PHDR_SIZE];
            ph[..4].copy_from_slice(&t.to_le_bytes());
            ph[4..8].copy_from_slice(&(PF_R | PF_X).to_le_bytes());
            ph[8..16].copy_from_slice(&0x318u64.to_le_bytes());
            ph[16..24].copy_from_slice(&0x1000u64.to_le_bytes());
            ph[32..40].copy_from_slice(&28u64.to_le_bytes());
            ph[40..48].copy_from_slice(&0x2000u64.to_le_bytes());
            b.extend_from_slice(&ph);
        }
        b
    }

    #[test]
    fn a_dynamic_executable() {
        let b = elf(2, &[PT_PHDR, PT_INTERP]);
        let Ok(Exec::X86_64(h)) = check_exec(&b) else { panic!("{:?}", check_exec(&b)) };
        assert_eq!((h.phnum, h.phoff, h.phdrs_len()), (2, 64, 112));
        let table = &b[h.phoff as usize..][..h.phdrs_len()];
        assert_eq!(phdrs(table, PHDR_SIZE).count(), 2);
        let interp = find(table, PHDR_SIZE, PT_INTERP).unwrap();
        assert_eq!(interp_span(&interp), Ok((0x318, 28)));
        assert!(interp.contains(0x10_0000, 0x10_1000) && interp.contains(0x10_0000, 0x10_2fff));
        assert!(!interp.contains(0x10_0000, 0x10_3000) && !interp.contains(0x10_0000, 0xfff));
        assert_eq!(find(table, PHDR_SIZE, PT_LOAD), None);
        assert_eq!(interp_name(b"/lib64/ld-linux-x86-64.so.2\0"), Ok(&b"/lib64/ld-linux-x86-64.so.2"[..]));
        assert_eq!(interp_name(b"/lib/ld\0x\0"), Ok(&b"/lib/ld"[..]));
        assert_eq!(interp_name(b"/lib/ld"), Err(Error::Interp), "no NUL at the end");
        assert_eq!(interp_name(b"\0"), Err(Error::Interp));
    }

    #[test]
    fn truncated_files() {
        let b = elf(1, &[PT_LOAD]);
        assert_eq!(check_exec(&b[..3]), Err(Error::NotElf));
        assert_eq!(check_exec(&b[..4]), Err(Error::Truncated));
        assert_eq!(check_exec(&b[..19]), Err(Error::Truncated));
        assert_eq!(check_exec(&b[..63]), Err(Error::Truncated));
        assert!(check_exec(&b[..64]).is_ok());
        assert_eq!(Header::parse(&b[..63]), None);
        // A table cut inside an entry: the whole entries only.
        assert_eq!(phdrs(&b[64..64 + 55], PHDR_SIZE).count(), 0);
        assert_eq!(phdrs(&[], PHDR_SIZE).count(), 0);
        assert_eq!(u64_at(&b, b.len() - 4), 0, "a field past the end reads 0");
        assert_eq!(u16_at(&b, usize::MAX), 0);
    }

    #[test]
    fn program_header_counts() {
        assert_eq!(MAX_PHNUM, 1170);
        assert_eq!(check_exec(&elf(0, &[])), Err(Error::PhNum(0)));
        assert!(check_exec(&elf(MAX_PHNUM as u16, &[])).is_ok());
        assert_eq!(check_exec(&elf(1171, &[])), Err(Error::PhNum(1171)));
        assert_eq!(check_exec(&elf(0xffff, &[])), Err(Error::PhNum(0xffff)), "PN_XNUM: exec does not follow it");
        let mut b = elf(1, &[]);
        b[54] = 64;
        assert_eq!(check_exec(&b), Err(Error::PhentSize(64)));
        // A larger stride still iterates (objects in memory, not exec).
        let table = [0u8; 128];
        assert_eq!(phdrs(&table, 64).count(), 2);
        assert_eq!(phdrs(&table, 0).count(), 2, "a stride below PHDR_SIZE is PHDR_SIZE");
    }

    #[test]
    fn wrong_machine_class_and_type() {
        let mut b = elf(1, &[]);
        b[18] = 183; // EM_AARCH64
        assert_eq!(check_exec(&b), Err(Error::Machine { class: 2, machine: 183 }));
        let mut b = elf(1, &[]);
        b[EI_CLASS] = ELFCLASS32;
        assert_eq!(check_exec(&b), Err(Error::Machine { class: 1, machine: 62 }));
        b[18] = EM_386 as u8;
        assert_eq!(check_exec(&b[..52]), Ok(Exec::I386));
        b[16] = 1; // ET_REL
        assert_eq!(check_exec(&b), Err(Error::Machine { class: 1, machine: 3 }));
        let mut b = elf(1, &[]);
        b[EI_CLASS] = 7;
        assert_eq!(check_exec(&b), Err(Error::Class(7)));
        let mut b = elf(1, &[]);
        b[16] = 1;
        assert_eq!(check_exec(&b), Err(Error::Type(1)));
        // Big-endian: the kernel reads e_machine as little-endian and refuses it.
        let mut b = elf(1, &[]);
        b[EI_DATA] = 2;
        b[18..20].copy_from_slice(&EM_X86_64.to_be_bytes());
        assert_eq!(check_exec(&b), Err(Error::Machine { class: 2, machine: 0x3e00 }));
    }

    #[test]
    fn interp_lengths() {
        let p = |len: u64| Phdr { p_type: PT_INTERP, p_filesz: len, ..Phdr::default() };
        assert_eq!(interp_span(&p(1)), Err(Error::Interp));
        assert_eq!(interp_span(&p(2)), Ok((0, 2)));
        assert_eq!(interp_span(&p(4096)), Ok((0, 4096)));
        assert_eq!(interp_span(&p(4097)), Err(Error::Interp));
        assert_eq!(interp_span(&p(u64::MAX)), Err(Error::Interp));
    }
}
