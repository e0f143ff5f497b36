//! Map an ELF executable (and its interpreter) the way the kernel's
//! binfmt_elf does: each PT_LOAD at its address (ET_EXEC) or at one chosen
//! base plus its address (ET_DYN), file pages private, the tail of the last
//! file page and the pages after it zero (.bss).

use crate::patch::elf::field;
use crate::rt::raw;

const PAGE: u64 = 4096;
const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const PT_GNU_EH_FRAME: u32 = 0x6474_e550;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;
/// Program headers we read (real programs have about a dozen).
const MAX_PHDRS: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Default)]
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

/// An ELF file's headers, read from its descriptor.
pub struct Elf {
    pub fd: i64,
    kind: u16,
    entry: u64,
    phoff: u64,
    phdrs: [Phdr; MAX_PHDRS],
    phnum: usize,
    /// PT_INTERP's path, NUL-terminated, if any.
    pub interp: [u8; 4096],
    pub has_interp: bool,
    /// `.eh_frame` (address, size) from the section headers, when there is
    /// no PT_GNU_EH_FRAME to find it by (see `patch::elf`).
    eh_frame: Option<(u64, u64)>,
}

/// Where a mapped ELF ended up.
#[derive(Clone, Copy, Default)]
pub struct Image {
    pub base: u64,
    pub entry: u64,
    pub phdr: u64,
    pub phnum: u64,
    /// `.eh_frame` at run time, if the program headers do not index it.
    pub eh_frame: Option<(u64, u64)>,
}

fn pread(fd: i64, buf: *mut u8, len: usize, off: u64) -> bool {
    raw::syscall(libc::SYS_pread64, fd as u64, buf as u64, len as u64, off) == len as i64
}

fn word(b: &[u8], o: usize) -> u64 {
    field(b, o, 8)
}

fn half(b: &[u8], o: usize) -> u16 {
    field(b, o, 2) as u16
}

impl Elf {
    pub fn read(fd: i64) -> Result<Elf, &'static str> {
        let mut eh = [0u8; 64];
        if !pread(fd, eh.as_mut_ptr(), 64, 0) || !eh.starts_with(b"\x7fELF") || eh.get(4) != Some(&2) {
            return Err("not a 64-bit ELF file");
        }
        let kind = half(&eh, 16);
        if half(&eh, 18) != 62 || !(kind == ET_EXEC || kind == ET_DYN) || half(&eh, 54) != 56 {
            return Err("not an x86-64 executable");
        }
        let phnum = half(&eh, 56) as usize;
        if phnum == 0 || phnum > MAX_PHDRS {
            return Err("too many program headers");
        }
        let mut elf = Elf {
            fd,
            kind,
            entry: word(&eh, 24),
            phoff: word(&eh, 32),
            phdrs: [Phdr::default(); MAX_PHDRS],
            phnum,
            interp: [0; 4096],
            has_interp: false,
            eh_frame: None,
        };
        if !pread(fd, elf.phdrs.as_mut_ptr().cast(), phnum * 56, elf.phoff) {
            return Err("cannot read the program headers");
        }
        let interp = elf.phdrs().iter().find(|p| p.p_type == PT_INTERP).copied();
        if let Some(p) = interp {
            let len = p.p_filesz as usize;
            if !(2..=4096).contains(&len)
                || !pread(fd, elf.interp.as_mut_ptr(), len, p.p_offset)
                || elf.interp.get(len - 1) != Some(&0)
            {
                return Err("bad PT_INTERP");
            }
            elf.has_interp = true;
        }
        if !elf.phdrs().iter().any(|p| p.p_type == PT_GNU_EH_FRAME) {
            elf.eh_frame = find_section(fd, &eh, b".eh_frame");
        }
        Ok(elf)
    }

    fn phdrs(&self) -> &[Phdr] {
        self.phdrs.get(..self.phnum).unwrap_or(&[])
    }

    /// Map every PT_LOAD; the image's load base, entry and program headers.
    pub fn map(&self) -> Result<Image, &'static str> {
        let loads = || self.phdrs().iter().filter(|p| p.p_type == PT_LOAD);
        let lo = loads().map(|p| p.p_vaddr).min().ok_or("no PT_LOAD segment")? & !(PAGE - 1);
        let hi = loads().map(|p| p.p_vaddr.saturating_add(p.p_memsz)).max().unwrap_or(0);
        let hi = hi.checked_add(PAGE - 1).ok_or("bad segment size")? & !(PAGE - 1);
        let align = loads().map(|p| p.p_align).filter(|a| a.is_power_of_two()).max().unwrap_or(PAGE).max(PAGE);
        let span = hi - lo;
        let none = 0u64;
        let anon_private = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        // Reserve the whole span first, so the segments land together.
        let bias = if self.kind == ET_DYN {
            let r = raw::syscall6(
                libc::SYS_mmap,
                [0, span + align, none, anon_private | libc::MAP_NORESERVE as u64, u64::MAX, 0],
            );
            if r < 0 {
                return Err("cannot reserve address space");
            }
            let base = (r as u64 + align - 1) & !(align - 1);
            // Give back the slack before and after the aligned span.
            if base > r as u64 {
                raw::munmap(r as u64, (base - r as u64) as usize);
            }
            let end = r as u64 + span + align;
            if end > base + span {
                raw::munmap(base + span, (end - base - span) as usize);
            }
            base - lo
        } else {
            let flags = anon_private | libc::MAP_FIXED_NOREPLACE as u64;
            let r = raw::syscall6(libc::SYS_mmap, [lo, span, none, flags, u64::MAX, 0]);
            if r as u64 != lo {
                return Err("its fixed load addresses are in use");
            }
            0
        };
        for p in loads() {
            self.map_segment(p, bias)?;
        }
        let phdr = match self.phdrs().iter().find(|p| p.p_type == PT_PHDR) {
            Some(p) => bias + p.p_vaddr,
            None => loads()
                .find(|p| p.p_offset <= self.phoff && self.phoff < p.p_offset + p.p_filesz)
                .map(|p| bias + p.p_vaddr + (self.phoff - p.p_offset))
                .unwrap_or(0),
        };
        let eh_frame = self.eh_frame.map(|(addr, size)| (bias + addr, size));
        Ok(Image { base: bias + lo, entry: bias + self.entry, phdr, phnum: self.phnum as u64, eh_frame })
    }

    fn map_segment(&self, p: &Phdr, bias: u64) -> Result<(), &'static str> {
        let prot = (if p.p_flags & PF_R != 0 { libc::PROT_READ } else { 0 })
            | (if p.p_flags & PF_W != 0 { libc::PROT_WRITE } else { 0 })
            | (if p.p_flags & PF_X != 0 { libc::PROT_EXEC } else { 0 });
        let start = bias + p.p_vaddr;
        let page_start = start & !(PAGE - 1);
        let file_end = start + p.p_filesz;
        let mem_end = start + p.p_memsz;
        let fixed_private = (libc::MAP_PRIVATE | libc::MAP_FIXED) as u64;
        if p.p_filesz > 0 {
            let off = p.p_offset - (start - page_start);
            let len = ((file_end + PAGE - 1) & !(PAGE - 1)) - page_start;
            // Writable while we zero the .bss part of the last file page.
            let bss_in_page = p.p_memsz > p.p_filesz && file_end & (PAGE - 1) != 0;
            let map_prot = prot | if bss_in_page { libc::PROT_WRITE } else { 0 };
            let r =
                raw::syscall6(libc::SYS_mmap, [page_start, len, map_prot as u64, fixed_private, self.fd as u64, off]);
            if r as u64 != page_start {
                return Err("cannot map a segment");
            }
            if bss_in_page {
                // To the end of the page, as the kernel's padzero does: the
                // loader's early malloc uses what follows its own .bss.
                let zero_len = PAGE - (file_end & (PAGE - 1));
                // SAFETY: [file_end, file_end + zero_len) lies in the last page we
                // just mapped writable, private to this process.
                unsafe { core::ptr::write_bytes(file_end as *mut u8, 0, zero_len as usize) };
                if map_prot != prot {
                    raw::mprotect(page_start, len as usize, prot);
                }
            }
        }
        let anon_start = if p.p_filesz > 0 { (file_end + PAGE - 1) & !(PAGE - 1) } else { page_start };
        let anon_end = (mem_end + PAGE - 1) & !(PAGE - 1);
        if anon_end > anon_start {
            let flags = fixed_private | libc::MAP_ANONYMOUS as u64;
            let r = raw::syscall6(libc::SYS_mmap, [anon_start, anon_end - anon_start, prot as u64, flags, u64::MAX, 0]);
            if r as u64 != anon_start {
                return Err("cannot map a segment's .bss");
            }
        }
        Ok(())
    }
}

/// (sh_addr, sh_size) of the allocated section `name` of the ELF file open
/// on `fd` whose header is `eh`, read from its section headers.
fn find_section(fd: i64, eh: &[u8; 64], name: &[u8]) -> Option<(u64, u64)> {
    const SHF_ALLOC: u64 = 2;
    let (shoff, shentsize, shnum, shstrndx) =
        (word(eh, 40), half(eh, 58) as u64, half(eh, 60) as u64, half(eh, 62) as u64);
    if shoff == 0 || shentsize < 64 || shnum == 0 || shnum > 4096 || shstrndx >= shnum {
        return None;
    }
    let section = |i: u64| {
        let mut sh = [0u8; 64];
        pread(fd, sh.as_mut_ptr(), 64, shoff + i * shentsize).then_some(sh)
    };
    let strtab_off = word(&section(shstrndx)?, 24);
    for i in 0..shnum {
        let sh = section(i)?;
        let mut sname = [0u8; 16];
        let name_off = u32::from_le_bytes([sh[0], sh[1], sh[2], sh[3]]) as u64;
        if name.len() >= sname.len() || !pread(fd, sname.as_mut_ptr(), name.len() + 1, strtab_off + name_off) {
            continue;
        }
        if sname.get(..name.len()) == Some(name) && sname.get(name.len()) == Some(&0) && word(&sh, 8) & SHF_ALLOC != 0 {
            return Some((word(&sh, 16), word(&sh, 32)));
        }
    }
    None
}
