//! Where does the function containing an address start? From the unwind
//! tables of the ELF object mapped there, found without libc or allocation.
//!
//! Steps: stream /proc/self/maps (raw syscalls, fixed buffer) to find the
//! mapping of the address and the lowest-addressed offset-0 mapping of the same
//! file (device + inode) below it, which holds the ELF header; read the program
//! headers; take `PT_GNU_EH_FRAME` (`.eh_frame_hdr`), binary-search its sorted
//! table for the last FDE starting at or below the address, and read that
//! FDE's `pc_begin`/`pc_range` from `.eh_frame` (with the pointer encoding its
//! CIE declares). An object without `.eh_frame_hdr` (a static program linked
//! without --eh-frame-hdr) is walked linearly instead, if the launcher found
//! its `.eh_frame` in the section headers when it loaded it.
//!
//! Trap-context safe: every syscall and every read of program memory goes
//! through the [`Os`] layer ([`RawOs`]: `rt::raw`, the gate and the
//! fault-tolerant copy), buffers are fixed-size, nothing panics. Tests use
//! `StdOs` (std files and /proc/self/mem) because the gate is not mapped there.

use super::reject::Reject;
use crate::rt::raw;

/// What the lookup needs from the system; lets tests run without the gate.
pub trait Os {
    /// Fill `buf` from process memory at `addr`; false if any byte is unreadable.
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool;
    /// Open /proc/self/maps for [`Os::maps_read`]; false on failure.
    fn maps_open(&mut self) -> bool;
    /// Next bytes of /proc/self/maps: count, 0 at the end, negative on error.
    fn maps_read(&mut self, buf: &mut [u8]) -> isize;
    /// Close what [`Os::maps_open`] opened.
    fn maps_close(&mut self);
}

/// The library's [`Os`]: syscalls through the gate, memory through the
/// fault-tolerant copy (a bad address gives false, not a crash).
pub struct RawOs {
    fd: i64,
}

impl RawOs {
    pub const fn new() -> RawOs {
        RawOs { fd: -1 }
    }
}

const EINTR: i64 = 4;

impl Os for RawOs {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        raw::copy_from_user(buf.as_mut_ptr(), addr as *const u8, buf.len()).is_ok()
    }

    fn maps_open(&mut self) -> bool {
        const PATH: &[u8] = b"/proc/self/maps\0";
        let flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
        let fd = raw::syscall(libc::SYS_openat, libc::AT_FDCWD as i64 as u64, PATH.as_ptr() as u64, flags, 0);
        if fd < 0 {
            return false;
        }
        self.fd = fd;
        true
    }

    fn maps_read(&mut self, buf: &mut [u8]) -> isize {
        if self.fd < 0 {
            return -1;
        }
        loop {
            let n = raw::syscall(libc::SYS_read, self.fd as u64, buf.as_mut_ptr() as u64, buf.len() as u64, 0);
            if n != -EINTR {
                return n as isize;
            }
        }
    }

    fn maps_close(&mut self) {
        if self.fd >= 0 {
            raw::syscall(libc::SYS_close, self.fd as u64, 0, 0, 0);
            self.fd = -1;
        }
    }
}

/// Where the function containing an address lies, and the run of executable
/// mappings (of the same file, adjacent) that contains the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Located {
    /// `pc_begin` of the FDE: the function start.
    pub func_start: u64,
    /// `pc_begin + pc_range`.
    pub func_end: u64,
    /// The run of adjacent readable+executable mappings of the object's file
    /// around the address, as /proc/self/maps listed them.
    pub text_start: u64,
    pub text_end: u64,
}

/// The function containing `site` in the running process, and the bounds of
/// its mapping, through a given [`Os`] (the library passes [`RawOs`]).
pub fn locate_with<O: Os>(os: &mut O, site: u64) -> Result<Located, Reject> {
    let obj = find_object(os, site)?;
    let (func_start, func_end) = match program_headers(os, obj.header, site) {
        Ok(eh) => lookup_fde(os, eh, site)?,
        // No .eh_frame_hdr: the .eh_frame itself, if the launcher found it
        // in the section headers when it loaded this object.
        Err(Reject::NoEhFrameHdr) => match eh_frame_hint(obj.header) {
            Some((start, len)) => scan_eh_frame(os, start, len, site)?,
            None => return Err(Reject::NoEhFrameHdr),
        },
        Err(e) => return Err(e),
    };
    Ok(Located { func_start, func_end, text_start: obj.text_start, text_end: obj.text_end })
}

// ---------------------------------------------------------------------------
// /proc/self/maps

/// How many leading bytes of a mapping's name are kept (enough for "[vsyscall]").
const NAME_KEEP: usize = 16;

/// One line of /proc/self/maps.
#[derive(Clone, Copy, Default)]
struct Mapping {
    start: u64,
    end: u64,
    perms: [u8; 4],
    offset: u64,
    /// major << 32 | minor.
    dev: u64,
    inode: u64,
    name: [u8; NAME_KEEP],
    /// Full length of the name (may exceed NAME_KEEP).
    name_len: usize,
}

impl Mapping {
    fn readable_executable(&self) -> bool {
        self.perms.first() == Some(&b'r') && self.perms.get(2) == Some(&b'x')
    }

    #[cfg(test)]
    fn executable(&self) -> bool {
        self.perms.get(2) == Some(&b'x')
    }

    /// A mapping of a file (anonymous and special mappings have inode 0).
    fn is_file(&self) -> bool {
        self.inode != 0
    }

    fn key(&self) -> (u64, u64) {
        (self.dev, self.inode)
    }

    fn name_is(&self, s: &[u8]) -> bool {
        self.name_len == s.len() && self.name.get(..s.len()) == Some(s)
    }

    fn contains(&self, a: u64) -> bool {
        self.start <= a && a < self.end
    }
}

/// Byte-at-a-time parser of /proc/self/maps lines, so that lines may straddle
/// read buffers. Format: `start-end perms offset major:minor inode   name`.
struct Parser {
    cur: Mapping,
    field: u8,
    digits: u8,
    perm_i: usize,
    ok: bool,
}

impl Parser {
    const fn new() -> Parser {
        Parser {
            cur: Mapping {
                start: 0,
                end: 0,
                perms: [0; 4],
                offset: 0,
                dev: 0,
                inode: 0,
                name: [0; NAME_KEEP],
                name_len: 0,
            },
            field: 0,
            digits: 0,
            perm_i: 0,
            ok: true,
        }
    }

    fn hex(v: &mut u64, b: u8) -> bool {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return false,
        };
        if *v >> 60 != 0 {
            return false;
        }
        *v = (*v << 4) | d as u64;
        true
    }

    fn dec(v: &mut u64, b: u8) -> bool {
        if !b.is_ascii_digit() {
            return false;
        }
        match v.checked_mul(10).and_then(|x| x.checked_add((b - b'0') as u64)) {
            Some(x) => {
                *v = x;
                true
            }
            None => false,
        }
    }

    /// Field separator: ends field `self.field` (which must have had digits).
    fn next_field(&mut self) {
        if self.digits == 0 {
            self.ok = false;
        }
        self.field += 1;
        self.digits = 0;
    }

    /// Feed one byte; a complete, well-formed line yields its mapping.
    fn feed(&mut self, b: u8) -> Option<Mapping> {
        if b == b'\n' {
            // A line is usable once its inode has been read (field 6 or on).
            let done = self.ok && (self.field > 6 || (self.field == 6 && self.digits > 0));
            let m = self.cur;
            *self = Parser::new();
            return if done { Some(m) } else { None };
        }
        if !self.ok {
            return None;
        }
        let c = &mut self.cur;
        let good = match (self.field, b) {
            (0, b'-') | (1, b' ') | (3, b' ') | (4, b':') | (5, b' ') | (6, b' ') => {
                self.next_field();
                return None;
            }
            (0, _) => Parser::hex(&mut c.start, b),
            (1, _) => Parser::hex(&mut c.end, b),
            (2, b' ') => {
                self.field = 3;
                self.digits = 0;
                return None;
            }
            (2, _) => match c.perms.get_mut(self.perm_i) {
                Some(p) => {
                    *p = b;
                    self.perm_i += 1;
                    true
                }
                None => false,
            },
            (3, _) => Parser::hex(&mut c.offset, b),
            (4, _) | (5, _) => {
                let mut part = if self.field == 4 { c.dev >> 32 } else { c.dev & 0xffff_ffff };
                let good = Parser::hex(&mut part, b) && part <= 0xffff_ffff;
                c.dev =
                    if self.field == 4 { (part << 32) | (c.dev & 0xffff_ffff) } else { (c.dev & !0xffff_ffff) | part };
                good
            }
            (6, _) => Parser::dec(&mut c.inode, b),
            _ => {
                // The name: padded with spaces up to a column, then to the end
                // of the line (it may contain spaces itself).
                if !(c.name_len == 0 && b == b' ') {
                    if let Some(slot) = c.name.get_mut(c.name_len) {
                        *slot = b;
                    }
                    c.name_len = c.name_len.saturating_add(1);
                }
                return None;
            }
        };
        self.digits = self.digits.saturating_add(1);
        if !good {
            self.ok = false;
        }
        None
    }
}

/// Stream /proc/self/maps through `f` (in address order) until it returns false.
fn scan_maps<O: Os, F: FnMut(&Mapping) -> bool>(os: &mut O, mut f: F) -> Result<(), Reject> {
    if !os.maps_open() {
        return Err(Reject::MapsUnreadable);
    }
    let mut buf = [0u8; 1024];
    let mut parser = Parser::new();
    let mut result = Ok(());
    'read: loop {
        let n = os.maps_read(&mut buf);
        if n < 0 {
            result = Err(Reject::MapsUnreadable);
            break;
        }
        if n == 0 {
            break;
        }
        for &b in buf.get(..n as usize).unwrap_or(&[]) {
            if let Some(m) = parser.feed(b) {
                if !f(&m) {
                    break 'read;
                }
            }
        }
    }
    os.maps_close();
    result
}

/// The ELF object holding a code address, per /proc/self/maps.
struct Object {
    /// Address of its ELF header (its offset-0 mapping).
    header: u64,
    text_start: u64,
    text_end: u64,
}

/// How many files' offset-0 mappings are remembered while streaming (the
/// header normally sits right below the text; a miss costs a second pass).
const RECENT: usize = 16;

fn find_object<O: Os>(os: &mut O, site: u64) -> Result<Object, Reject> {
    let mut recent = [((0u64, 0u64), 0u64); RECENT];
    let mut recent_next = 0usize;
    let mut found: Option<Mapping> = None;
    let mut early: Option<Reject> = None;
    let mut header: Option<u64> = None;
    // Current run of adjacent executable mappings of one file: (key, start, end).
    let mut run: Option<((u64, u64), u64, u64)> = None;
    scan_maps(os, |m| {
        if let Some(f) = found {
            // Past the site's mapping: extend the run while it continues.
            return match run {
                Some((k, s, e)) if m.readable_executable() && m.key() == f.key() && m.start == e => {
                    run = Some((k, s, m.end));
                    true
                }
                _ => false,
            };
        }
        if m.is_file() && m.offset == 0 {
            let slot = recent.iter().position(|(k, _)| *k == m.key()).unwrap_or(recent_next % RECENT);
            if slot == recent_next % RECENT {
                recent_next = recent_next.wrapping_add(1);
            }
            if let Some(r) = recent.get_mut(slot) {
                *r = (m.key(), m.start);
            }
        }
        run = match run {
            Some((k, s, e)) if m.readable_executable() && m.key() == k && m.start == e => Some((k, s, m.end)),
            _ if m.readable_executable() => Some((m.key(), m.start, m.end)),
            _ => None,
        };
        if !m.contains(site) {
            return true;
        }
        early = if m.name_is(b"[vdso]") {
            Some(Reject::InVdso)
        } else if m.name_is(b"[vsyscall]") {
            Some(Reject::InVsyscall)
        } else if !m.is_file() {
            Some(Reject::NotElfObject)
        } else if !m.readable_executable() {
            Some(Reject::NotExecutable)
        } else {
            None
        };
        if early.is_some() {
            return false;
        }
        found = Some(*m);
        header = recent.iter().find(|(k, _)| *k == m.key()).map(|&(_, a)| a);
        true
    })?;
    if let Some(r) = early {
        return Err(r);
    }
    let f = found.ok_or(Reject::NotMapped)?;
    let (_, text_start, text_end) = run.ok_or(Reject::NotExecutable)?;
    let header = match header {
        Some(h) => h,
        None => {
            // Evicted from `recent` (many files mapped in between): look again.
            let mut best: Option<u64> = None;
            scan_maps(os, |m| {
                if m.start > site {
                    return false;
                }
                if m.key() == f.key() && m.offset == 0 {
                    best = Some(m.start);
                }
                true
            })?;
            best.ok_or(Reject::NotElfObject)?
        }
    };
    Ok(Object { header, text_start, text_end })
}

// ---------------------------------------------------------------------------
// Reading program memory

fn read_array<O: Os, const N: usize>(os: &mut O, addr: u64) -> Option<[u8; N]> {
    let mut b = [0u8; N];
    if os.read(addr, &mut b) {
        Some(b)
    } else {
        None
    }
}

fn read_u8<O: Os>(os: &mut O, addr: u64) -> Option<u8> {
    read_array::<O, 1>(os, addr).map(|b| b[0])
}

fn read_u16<O: Os>(os: &mut O, addr: u64) -> Option<u16> {
    read_array(os, addr).map(u16::from_le_bytes)
}

fn read_u32<O: Os>(os: &mut O, addr: u64) -> Option<u32> {
    read_array(os, addr).map(u32::from_le_bytes)
}

fn read_u64<O: Os>(os: &mut O, addr: u64) -> Option<u64> {
    read_array(os, addr).map(u64::from_le_bytes)
}

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

const PT_LOAD: u32 = 1;
const PT_GNU_EH_FRAME: u32 = 0x6474_e550;
const PF_X: u32 = 1;
const EM_X86_64: u64 = 62;
const PHDR_SIZE: usize = 56;
const MAX_PHNUM: u64 = 4096;

/// Check the ELF header at `header`, find the load bias from the PT_LOAD at
/// file offset 0, confirm an executable PT_LOAD covers `site`, and return the
/// run-time address of `.eh_frame_hdr`.
fn program_headers<O: Os>(os: &mut O, header: u64, site: u64) -> Result<u64, Reject> {
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

fn read_phdr<O: Os>(os: &mut O, header: u64, phoff: u64, phentsize: u64, i: u64) -> Result<[u8; PHDR_SIZE], Reject> {
    let addr = i
        .checked_mul(phentsize)
        .and_then(|o| o.checked_add(phoff))
        .and_then(|o| o.checked_add(header))
        .ok_or(Reject::BadElf)?;
    read_array(os, addr).ok_or(Reject::BadElf)
}

// ---------------------------------------------------------------------------
// .eh_frame_hdr and .eh_frame

// DW_EH_PE_* pointer encodings: low nibble = format, next 3 bits = application.
const PE_OMIT: u8 = 0xff;
const PE_ABSPTR: u8 = 0x00;
const PE_ULEB128: u8 = 0x01;
const PE_UDATA2: u8 = 0x02;
const PE_UDATA4: u8 = 0x03;
const PE_UDATA8: u8 = 0x04;
const PE_SLEB128: u8 = 0x09;
const PE_SDATA2: u8 = 0x0a;
const PE_SDATA4: u8 = 0x0b;
const PE_SDATA8: u8 = 0x0c;
const PE_PCREL: u8 = 0x10;
const PE_DATAREL: u8 = 0x30;

/// Read an unsigned (or signed) LEB128 number at `addr`: (value, length).
fn read_leb<O: Os>(os: &mut O, addr: u64, signed: bool) -> Option<(u64, u64)> {
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
fn read_encoded<O: Os>(os: &mut O, addr: u64, enc: u8, datarel: Option<u64>) -> Result<(u64, u64), Reject> {
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
fn fixed_size(enc: u8) -> Option<u64> {
    match enc & 0x0f {
        PE_ABSPTR | PE_UDATA8 | PE_SDATA8 => Some(8),
        PE_UDATA4 | PE_SDATA4 => Some(4),
        PE_UDATA2 | PE_SDATA2 => Some(2),
        _ => None,
    }
}

/// Find the FDE covering `site` through the `.eh_frame_hdr` at `hdr`:
/// (function start, function end).
fn lookup_fde<O: Os>(os: &mut O, hdr: u64, site: u64) -> Result<(u64, u64), Reject> {
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
    if site >= end {
        return Err(Reject::PastFunctionEnd);
    }
    Ok((start, end))
}

// ---------------------------------------------------------------------------
// .eh_frame without its index: objects the launcher loaded (static programs
// linked without --eh-frame-hdr, as `gcc -static` does by default).

/// Objects whose `.eh_frame` the launcher located (header address, start,
/// length), written before the program starts and only read afterwards.
const MAX_HINTS: usize = 4;
struct Hints(core::cell::UnsafeCell<[(u64, u64, u64); MAX_HINTS]>);
// SAFETY: written only by the launcher, single-threaded, before the program
// (and so any reader) runs; read-only from then on.
unsafe impl Sync for Hints {}
static EH_FRAME_HINTS: Hints = Hints(core::cell::UnsafeCell::new([(0, 0, 0); MAX_HINTS]));

/// The launcher, before the program runs: the object whose ELF header is
/// mapped at `header` has its `.eh_frame` at [start, start + len).
#[cfg_attr(not(feature = "launcher"), allow(dead_code))]
pub fn add_eh_frame_hint(header: u64, start: u64, len: u64) {
    // SAFETY: see `Hints`.
    let hints = unsafe { &mut *EH_FRAME_HINTS.0.get() };
    if let Some(slot) = hints.iter_mut().find(|h| h.0 == 0) {
        *slot = (header, start, len);
    }
}

fn eh_frame_hint(header: u64) -> Option<(u64, u64)> {
    // SAFETY: see `Hints`.
    let hints = unsafe { &*EH_FRAME_HINTS.0.get() };
    hints.iter().find(|h| h.0 == header && h.0 != 0).map(|h| (h.1, h.2))
}

/// Walk the records of the `.eh_frame` at [start, start + len) for the FDE
/// covering `site`: (function start, function end). Linear, with the last
/// CIE's pointer encoding remembered (nearly every FDE shares one CIE).
fn scan_eh_frame<O: Os>(os: &mut O, start: u64, len: u64, site: u64) -> Result<(u64, u64), Reject> {
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
fn read_fde<O: Os>(os: &mut O, fde: u64) -> Result<(u64, u64), Reject> {
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
fn fde_range<O: Os>(os: &mut O, cie_ptr_field: u64, enc: u8) -> Result<(u64, u64), Reject> {
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
fn record_header<O: Os>(os: &mut O, rec: u64) -> Result<(u64, u64), Reject> {
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
fn cie_fde_encoding<O: Os>(os: &mut O, cie: u64) -> Result<u8, Reject> {
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

// ---------------------------------------------------------------------------
// Tests: std stands in for the gate.

/// [`Os`] over std: /proc/self/maps as a file, memory through /proc/self/mem
/// (an unmapped address gives an error, not a crash).
#[cfg(test)]
pub struct StdOs {
    mem: std::fs::File,
    maps: Option<std::fs::File>,
}

#[cfg(test)]
impl StdOs {
    pub fn new() -> StdOs {
        StdOs { mem: std::fs::File::open("/proc/self/mem").expect("open /proc/self/mem"), maps: None }
    }
}

#[cfg(test)]
impl Os for StdOs {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        use std::os::unix::fs::FileExt;
        self.mem.read_exact_at(buf, addr).is_ok()
    }

    fn maps_open(&mut self) -> bool {
        self.maps = std::fs::File::open("/proc/self/maps").ok();
        self.maps.is_some()
    }

    fn maps_read(&mut self, buf: &mut [u8]) -> isize {
        use std::io::Read;
        match self.maps.as_mut().map(|f| f.read(buf)) {
            Some(Ok(n)) => n as isize,
            _ => -1,
        }
    }

    fn maps_close(&mut self) {
        self.maps = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed a whole text through the parser.
    fn parse(text: &str) -> Vec<Mapping> {
        let mut p = Parser::new();
        text.bytes().filter_map(|b| p.feed(b)).collect()
    }

    #[test]
    fn parses_maps_lines() {
        let text = "\
55d0c8a00000-55d0c8a02000 r--p 00000000 fe:01 1234                       /usr/bin/cat\n\
7f0000001000-7f0000002000 r-xp 00028000 103:02 987654321                 /usr/lib/x86_64-linux-gnu/libc.so.6\n\
7f0000003000-7f0000004000 rw-p 00000000 00:00 0 \n\
7ffc00000000-7ffc00002000 r-xp 00000000 00:00 0                          [vdso]\n\
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n\
7f0000005000-7f0000006000 r-xp 00000000 00:05 77                         /memfd:jit code (deleted)\n\
garbage line\n\
7f0000003000-7f0000004000 rw-p 00000000 00:00 0";
        let m = parse(text);
        assert_eq!(m.len(), 6, "the unterminated last line and the garbage are dropped");
        assert_eq!((m[0].start, m[0].end, m[0].offset), (0x55d0c8a00000, 0x55d0c8a02000, 0));
        assert_eq!(m[0].key(), ((0xfe << 32) | 1, 1234));
        assert!(!m[0].executable());
        assert_eq!((m[1].offset, m[1].dev, m[1].inode), (0x28000, (0x103 << 32) | 2, 987654321));
        assert!(m[1].readable_executable() && m[1].is_file());
        assert_eq!(m[1].name_len, "/usr/lib/x86_64-linux-gnu/libc.so.6".len());
        assert!(!m[2].is_file() && m[2].name_len == 0);
        assert!(m[3].name_is(b"[vdso]"));
        assert!(m[4].name_is(b"[vsyscall]") && m[4].executable() && !m[4].readable_executable());
        assert!(m[4].contains(0xffffffffff600400));
        assert_eq!(m[5].name_len, "/memfd:jit code (deleted)".len());
    }

    #[test]
    fn libc_functions_start_at_their_symbols() {
        let mut os = StdOs::new();
        for f in [
            libc::getppid as *const () as usize,
            libc::getpid as *const () as usize,
            libc::read as *const () as usize,
            libc::write as *const () as usize,
        ] {
            let f = f as u64;
            let l = locate_with(&mut os, f).expect("locate");
            assert_eq!(l.func_start, f, "function at {f:#x}");
            assert!(l.func_end > f && l.text_start <= f && f < l.text_end);
            // Inside the function, too.
            assert_eq!(locate_with(&mut os, f + 1).map(|l| l.func_start), Ok(f));
        }
    }

    #[test]
    fn functions_of_this_executable() {
        #[inline(never)]
        fn some_function(x: u64) -> u64 {
            std::hint::black_box(x).wrapping_mul(3).rotate_left(7) ^ 0x55
        }
        std::hint::black_box(some_function(1));
        let f = some_function as *const () as usize as u64;
        let mut os = StdOs::new();
        let l = locate_with(&mut os, f + 2).expect("locate in the test binary");
        assert_eq!(l.func_start, f);
    }

    /// The linear walk of `.eh_frame` (objects without `.eh_frame_hdr`)
    /// finds the same functions as the indexed lookup, in libc.
    #[test]
    fn linear_eh_frame_walk_agrees_with_the_index() {
        let mut os = StdOs::new();
        for f in
            [libc::getppid as *const () as usize, libc::read as *const () as usize, libc::malloc as *const () as usize]
        {
            let f = f as u64 + 1;
            let obj = find_object(&mut os, f).expect("object");
            let hdr = program_headers(&mut os, obj.header, f).expect("eh_frame_hdr");
            // The .eh_frame the index points at (eh_frame_ptr), walked to its
            // zero terminator.
            let enc = read_u8(&mut os, hdr + 1).unwrap();
            let (eh_frame, _) = read_encoded(&mut os, hdr + 4, enc, Some(hdr)).unwrap();
            let walked = scan_eh_frame(&mut os, eh_frame, 64 << 20, f).expect("walk");
            assert_eq!(walked, lookup_fde(&mut os, hdr, f).expect("index"), "at {f:#x}");
            assert_eq!(walked.0, f - 1);
        }
    }

    #[test]
    fn leb128() {
        struct Bytes(Vec<u8>);
        impl Os for Bytes {
            fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
                match self.0.get(addr as usize..addr as usize + buf.len()) {
                    Some(s) => {
                        buf.copy_from_slice(s);
                        true
                    }
                    None => false,
                }
            }
            fn maps_open(&mut self) -> bool {
                false
            }
            fn maps_read(&mut self, _: &mut [u8]) -> isize {
                -1
            }
            fn maps_close(&mut self) {}
        }
        let mut b = Bytes(vec![0xe5, 0x8e, 0x26, 0x7f, 0x80, 0x7f]);
        assert_eq!(read_leb(&mut b, 0, false), Some((624485, 3)));
        assert_eq!(read_leb(&mut b, 3, true), Some((-1i64 as u64, 1)));
        assert_eq!(read_leb(&mut b, 4, true), Some((-128i64 as u64, 2)));
        assert_eq!(read_leb(&mut Bytes(vec![0x80]), 0, false), None);
        // Encoded values.
        let mut b = Bytes(vec![0xfc, 0xff, 0xff, 0xff, 0x10, 0, 0, 0]);
        assert_eq!(read_encoded(&mut b, 0, PE_PCREL | PE_SDATA4, None), Ok((-4i64 as u64, 4)));
        assert_eq!(read_encoded(&mut b, 4, PE_DATAREL | PE_SDATA4, Some(0x100)), Ok((0x110, 4)));
        assert_eq!(read_encoded(&mut b, 4, PE_DATAREL | PE_SDATA4, None), Err(Reject::UnsupportedUnwind));
        assert_eq!(read_encoded(&mut b, 4, PE_UDATA4, None), Ok((0x10, 4)));
        assert_eq!(read_encoded(&mut b, 6, PE_UDATA4, None), Err(Reject::BadUnwind));
        assert_eq!(read_encoded(&mut b, 0, 0x80 | PE_SDATA4, None), Err(Reject::UnsupportedUnwind));
        // No maps: a clean rejection.
        assert_eq!(locate_with(&mut b, 0x1000).map(|_| ()), Err(Reject::MapsUnreadable));
    }
}
