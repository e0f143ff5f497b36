//! Map an ELF executable (and its interpreter) the way the kernel's
//! binfmt_elf does: each PT_LOAD at its address (ET_EXEC) or at one chosen
//! base plus its address (ET_DYN), file pages private, the tail of the last
//! file page and the pages after it zero (.bss).

use crate::rt::raw;
use usertrap_core::elf::{
    self, Header, Phdr, ET_DYN, PF_R, PF_W, PF_X, PT_DYNAMIC, PT_GNU_EH_FRAME, PT_INTERP, PT_LOAD, PT_PHDR,
};

const PAGE: u64 = 4096;

/// Which of the two ELF files the launcher reads: each has its own room for
/// its program-header table.
#[derive(Clone, Copy)]
pub enum Role {
    Program,
    Interpreter,
}

/// Room for one program-header table, up to the kernel's limit, in .bss:
/// only the pages a table fills are touched (about one). Held in `Elf`
/// itself, the 64 KiB were zeroed in the launcher's frame and copied with
/// every move of an `Elf`: a 221 KiB frame whose stack probe alone took 54
/// page faults per launched process.
/// PT_INTERP's path has a room beside it for the same reason: a page-sized
/// array in `Elf` was zeroed in the launcher's frame for a path of a few
/// dozen bytes (a page of stack touched per `Elf`).
struct Room {
    phdrs: [u8; elf::MAX_PHDRS_BYTES],
    interp: [u8; elf::INTERP_MAX],
}
struct PhdrRoom(core::cell::UnsafeCell<Room>);
// SAFETY: used by the launcher's main thread only, before the program
// starts, each room by one `Elf::read` (see there).
unsafe impl Sync for PhdrRoom {}
const EMPTY_ROOM: Room = Room { phdrs: [0; elf::MAX_PHDRS_BYTES], interp: [0; elf::INTERP_MAX] };
static PROGRAM_PHDRS: PhdrRoom = PhdrRoom(core::cell::UnsafeCell::new(EMPTY_ROOM));
static INTERPRETER_PHDRS: PhdrRoom = PhdrRoom(core::cell::UnsafeCell::new(EMPTY_ROOM));

/// An ELF file's headers, read from its descriptor: the program-header
/// table whole, up to the kernel's limit (elf::MAX_PHNUM, what exec accepts
/// and the library's exec check lets through).
pub struct Elf {
    pub fd: i64,
    header: Header,
    /// The program-header table's bytes (`header.phdrs_len()` of them), in
    /// the room of the file's role.
    phdrs: &'static [u8],
    /// PT_INTERP's path, NUL-terminated (the bytes read, in the file's
    /// role's room), if any; else empty.
    pub interp: &'static [u8],
    pub has_interp: bool,
    /// A dynamic loader run as a program (`ld.so prog`, `ldd`): see
    /// `is_dynamic_loader`.
    pub is_loader: bool,
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
    /// `.eh_frame_hdr` (PT_GNU_EH_FRAME) at run time, 0 if none.
    pub eh_frame_hdr: u64,
    /// The first executable segment's pages, [start, end): the loader's
    /// sites are patched there (install::patch_loader).
    pub text: (u64, u64),
}

/// Exactly `buf.len()` bytes at `off`.
fn pread(fd: i64, buf: &mut [u8], off: u64) -> bool {
    raw::pread(fd as i32, buf, off) == Ok(buf.len())
}

impl Elf {
    /// The headers of the ELF file open on `fd`, checked as exec checks
    /// them (usertrap-core's `elf::check_exec`).
    ///
    /// The launcher reads each role's file once per process (the program,
    /// then its interpreter): each read fills its role's room.
    pub fn read(fd: i64, role: Role) -> Result<Elf, &'static str> {
        let mut eh = [0u8; elf::EHDR_SIZE];
        let n = raw::pread(fd as i32, &mut eh, 0).unwrap_or(0);
        let header = match elf::check_exec(eh.get(..n).unwrap_or(&[])) {
            Ok(elf::Exec::X86_64(h)) => h,
            Ok(elf::Exec::I386) | Err(elf::Error::NotElf | elf::Error::Truncated | elf::Error::Class(_)) => {
                return Err("not a 64-bit ELF file")
            }
            Err(elf::Error::PhNum(_)) => return Err("no program header, or more than the kernel allows"),
            Err(_) => return Err("not an x86-64 executable"),
        };
        let room = match role {
            Role::Program => &PROGRAM_PHDRS,
            Role::Interpreter => &INTERPRETER_PHDRS,
        };
        // SAFETY: one thread, and each role's room is read into once (see
        // above): no other reference to it exists.
        let Room { phdrs, interp: interp_room } = unsafe { &mut *room.0.get() };
        let len = header.phdrs_len();
        let Some(table) = phdrs.get_mut(..len) else { return Err("cannot read the program headers") };
        if !pread(fd, table, header.phoff) {
            return Err("cannot read the program headers");
        }
        let mut elf =
            Elf { fd, header, phdrs: table, interp: &[], has_interp: false, is_loader: false, eh_frame: None };
        let interp = elf.phdrs().find(|p| p.p_type == PT_INTERP);
        if let Some(p) = interp {
            let (off, len) = elf::interp_span(&p).map_err(|_| "bad PT_INTERP")?;
            let Some(path) = interp_room.get_mut(..len) else { return Err("bad PT_INTERP") };
            if !pread(fd, path, off) || elf::interp_name(path).is_err() {
                return Err("bad PT_INTERP");
            }
            elf.interp = path;
            elf.has_interp = true;
        }
        if !elf.has_interp && header.e_type == ET_DYN {
            let dynamic = elf.phdrs().find(|p| p.p_type == PT_DYNAMIC);
            elf.is_loader = dynamic.is_some_and(|d| is_dynamic_loader(fd, &d));
        }
        if !elf.phdrs().any(|p| p.p_type == PT_GNU_EH_FRAME) {
            elf.eh_frame = find_section(fd, &header, b".eh_frame");
        }
        Ok(elf)
    }

    /// The program headers.
    fn phdrs(&self) -> impl Iterator<Item = Phdr> + '_ {
        elf::phdrs(self.phdrs, elf::PHDR_SIZE)
    }

    /// Map every PT_LOAD; the image's load base, entry and program headers.
    pub fn map(&self) -> Result<Image, &'static str> {
        let loads = || self.phdrs().filter(|p| p.p_type == PT_LOAD);
        let lo = loads().map(|p| p.p_vaddr).min().ok_or("no PT_LOAD segment")? & !(PAGE - 1);
        let hi = loads().map(|p| p.p_vaddr.saturating_add(p.p_memsz)).max().unwrap_or(0);
        let hi = hi.checked_add(PAGE - 1).ok_or("bad segment size")? & !(PAGE - 1);
        let align = loads().map(|p| p.p_align).filter(|a| a.is_power_of_two()).max().unwrap_or(PAGE).max(PAGE);
        let span = hi - lo;
        let none = 0;
        let anon_private = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        // Reserve the whole span first, so the segments land together.
        let bias = if self.header.e_type == ET_DYN {
            // SAFETY: not fixed: the kernel picks free address space.
            let r = unsafe { raw::mmap(0, span + align, none, anon_private | libc::MAP_NORESERVE, -1, 0) };
            let Ok(r) = r else {
                return Err("cannot reserve address space");
            };
            let base = (r + align - 1) & !(align - 1);
            // Give back the slack before and after the aligned span.
            if base > r {
                // SAFETY: a part of the reservation just made, used by nothing.
                let _ = unsafe { raw::munmap(r, (base - r) as usize) };
            }
            let end = r + span + align;
            if end > base + span {
                // SAFETY: as above.
                let _ = unsafe { raw::munmap(base + span, (end - base - span) as usize) };
            }
            base - lo
        } else {
            let flags = anon_private | libc::MAP_FIXED_NOREPLACE;
            // SAFETY: NOREPLACE: nothing mapped is touched.
            let r = unsafe { raw::mmap(lo, span, none, flags, -1, 0) };
            if r != Ok(lo) {
                return Err("its fixed load addresses are in use");
            }
            0
        };
        for p in loads() {
            self.map_segment(&p, bias)?;
        }
        let phoff = self.header.phoff;
        let phdr = match self.phdrs().find(|p| p.p_type == PT_PHDR) {
            Some(p) => bias + p.p_vaddr,
            None => loads()
                .find(|p| p.p_offset <= phoff && phoff < p.p_offset + p.p_filesz)
                .map(|p| bias + p.p_vaddr + (phoff - p.p_offset))
                .unwrap_or(0),
        };
        let eh_frame = self.eh_frame.map(|(addr, size)| (bias + addr, size));
        let phnum = u64::from(self.header.phnum);
        let eh_frame_hdr = self.phdrs().find(|p| p.p_type == PT_GNU_EH_FRAME).map_or(0, |p| bias + p.p_vaddr);
        let text = loads().find(|p| p.p_flags & PF_X != 0 && p.p_filesz > 0).map_or((0, 0), |p| {
            let start = (bias + p.p_vaddr) & !(PAGE - 1);
            let end = (bias + p.p_vaddr + p.p_filesz + PAGE - 1) & !(PAGE - 1);
            (start, end)
        });
        Ok(Image { base: bias + lo, entry: bias + self.header.entry, phdr, phnum, eh_frame, eh_frame_hdr, text })
    }

    fn map_segment(&self, p: &Phdr, bias: u64) -> Result<(), &'static str> {
        let prot = segment_prot(p);
        let start = bias + p.p_vaddr;
        let page_start = start & !(PAGE - 1);
        let file_end = start + p.p_filesz;
        let mem_end = start + p.p_memsz;
        let fixed_private = libc::MAP_PRIVATE | libc::MAP_FIXED;
        if p.p_filesz > 0 {
            let off = p.p_offset - (start - page_start);
            let len = ((file_end + PAGE - 1) & !(PAGE - 1)) - page_start;
            // Writable while we zero the .bss part of the last file page.
            let bss_in_page = p.p_memsz > p.p_filesz && file_end & (PAGE - 1) != 0;
            let map_prot = prot | if bss_in_page { libc::PROT_WRITE } else { 0 };
            // SAFETY: inside the span reserved by `map` for this image:
            // nothing else lives there.
            let r = unsafe { raw::mmap(page_start, len, map_prot, fixed_private, self.fd as i32, off) };
            if r != Ok(page_start) {
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
                    // SAFETY: the segment just mapped; the zeroing above was
                    // its last write through the extra permission.
                    let _ = unsafe { raw::mprotect(page_start, len as usize, prot) };
                }
            }
        }
        let anon_start = if p.p_filesz > 0 { (file_end + PAGE - 1) & !(PAGE - 1) } else { page_start };
        let anon_end = (mem_end + PAGE - 1) & !(PAGE - 1);
        if anon_end > anon_start {
            let flags = fixed_private | libc::MAP_ANONYMOUS;
            // SAFETY: as for the file part: inside this image's reservation.
            let r = unsafe { raw::mmap(anon_start, anon_end - anon_start, prot, flags, -1, 0) };
            if r != Ok(anon_start) {
                return Err("cannot map a segment's .bss");
            }
        }
        Ok(())
    }
}

/// Whether a position-independent ELF without PT_INTERP, whose PT_DYNAMIC
/// is `dynamic`, is a dynamic loader (glibc's `ld.so`) rather than a
/// static-pie program: the kernel maps both alike, but only a loader
/// reads LD_PRELOAD and loads the library. A loader is a shared object
/// with a name (DT_SONAME, what programs' DT_NEEDED and PT_INTERP name); a
/// static-pie program is linked with `-pie` (DT_FLAGS_1 has DF_1_PIE, as
/// binutils sets since 2.34) and has no DT_SONAME unless asked for one.
fn is_dynamic_loader(fd: i64, dynamic: &Phdr) -> bool {
    const DT_NULL: u64 = 0;
    const DT_SONAME: u64 = 14;
    const DT_FLAGS_1: u64 = 0x6fff_fffb;
    const DF_1_PIE: u64 = 0x0800_0000;
    /// Entries read at most (glibc's ld.so has 21; libc.so.6 about 30).
    const MAX_ENTRIES: u64 = 1024;
    let (mut soname, mut pie) = (false, false);
    let mut chunk = [0u8; 16 * 32];
    let end = dynamic.p_filesz.min(16 * MAX_ENTRIES) & !15;
    let mut off = 0;
    while off < end {
        let len = (end - off).min(chunk.len() as u64) as usize;
        let Some(part) = chunk.get_mut(..len) else { break };
        if !pread(fd, part, dynamic.p_offset + off) {
            break;
        }
        for entry in part.chunks_exact(16) {
            match elf::u64_at(entry, 0) {
                DT_NULL => return soname && !pie,
                DT_SONAME => soname = true,
                DT_FLAGS_1 => pie = elf::u64_at(entry, 8) & DF_1_PIE != 0,
                _ => {}
            }
        }
        off += len as u64;
    }
    soname && !pie
}

/// The protection a segment is mapped with, from its flags.
fn segment_prot(p: &Phdr) -> i32 {
    (if p.p_flags & PF_R != 0 { libc::PROT_READ } else { 0 })
        | (if p.p_flags & PF_W != 0 { libc::PROT_WRITE } else { 0 })
        | (if p.p_flags & PF_X != 0 { libc::PROT_EXEC } else { 0 })
}

/// (sh_addr, sh_size) of the allocated section `name` of the ELF file open
/// on `fd` whose header is `eh`, read from its section headers.
fn find_section(fd: i64, eh: &Header, name: &[u8]) -> Option<(u64, u64)> {
    const SHF_ALLOC: u64 = 2;
    let (shoff, shentsize, shnum, shstrndx) =
        (eh.shoff, u64::from(eh.shentsize), u64::from(eh.shnum), u64::from(eh.shstrndx));
    if shoff == 0 || shentsize < 64 || shnum == 0 || shnum > 4096 || shstrndx >= shnum {
        return None;
    }
    let section = |i: u64| {
        let mut sh = [0u8; 64];
        pread(fd, &mut sh, shoff + i * shentsize).then_some(sh)
    };
    let strtab_off = elf::u64_at(&section(shstrndx)?, 24);
    for i in 0..shnum {
        let sh = section(i)?;
        let mut sname = [0u8; 16];
        let name_off = u64::from(elf::u32_at(&sh, 0));
        if name.len() >= sname.len()
            || !pread(fd, sname.get_mut(..name.len() + 1).unwrap_or_default(), strtab_off + name_off)
        {
            continue;
        }
        if sname.get(..name.len()) == Some(name)
            && sname.get(name.len()) == Some(&0)
            && elf::u64_at(&sh, 8) & SHF_ALLOC != 0
        {
            return Some((elf::u64_at(&sh, 16), elf::u64_at(&sh, 32)));
        }
    }
    None
}
