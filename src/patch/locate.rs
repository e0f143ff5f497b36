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
//! `StdOs` (os.rs) (std files and /proc/self/mem) because the gate is not mapped there.

use super::elf::program_headers;
use super::hints::eh_frame_hint;
use super::maps::find_object;
use super::os::Os;
use super::reject::Reject;
use super::unwind::{lookup_fde, next_fde_start, prev_fde, scan_eh_frame};

/// Set by `usertrap trace` (measure::report::trace::configure): where the
/// fast path stays on the program's stack (no FSGSBASE), Go code is not
/// patched (Reject::GoUnderTrace): recording needs more stack than a
/// goroutine leaves at its `SYSCALL`. Its calls stay on the slow path.
pub static NO_GO_SITES: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Where the function containing an address lies, and the run of executable
/// mappings (of the same file, adjacent) that contains the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Located {
    /// `pc_begin` of the FDE: the function start.
    pub func_start: u64,
    /// `pc_begin + pc_range`.
    pub func_end: u64,
    /// Where the next function of the unwind table starts (the padding
    /// after this one ends there); `func_end` when not known.
    pub next_start: u64,
    /// The function before this one in the unwind table, [prev_start,
    /// prev_end), where the padding before this one begins; both
    /// `func_start` when not known (no `.eh_frame_hdr`, or none before).
    pub prev_start: u64,
    pub prev_end: u64,
    /// The run of adjacent readable+executable mappings of the object's file
    /// around the address, as /proc/self/maps listed them.
    pub text_start: u64,
    pub text_end: u64,
}

/// The function containing `site` in the running process, and the bounds of
/// its mapping, through a given [`Os`] (the library passes [`RawOs`]).
pub fn locate_with<O: Os>(os: &mut O, site: u64) -> Result<Located, Reject> {
    let obj = find_object(os, site)?;
    let mut next_start = None;
    let mut prev = None;
    let found = match program_headers(os, obj.header, site) {
        Ok(eh) => {
            let f = lookup_fde(os, eh, site);
            if let Ok((start, end)) = f {
                next_start = next_fde_start(os, eh, end.saturating_sub(1)).filter(|&n| n >= end);
                prev = prev_fde(os, eh, start);
            }
            f
        }
        // No .eh_frame_hdr: the .eh_frame itself, if the launcher found it
        // in the section headers when it loaded this object.
        Err(Reject::NoEhFrameHdr) => match eh_frame_hint(obj.header) {
            Some((start, len)) => scan_eh_frame(os, start, len, site),
            None => Err(Reject::NoEhFrameHdr),
        },
        Err(e) => Err(e),
    };
    let (func_start, func_end) = match found {
        Ok(f) => f,
        // No unwind entry for it: Go code (a static Go binary has no
        // .eh_frame, a cgo one none for its Go functions) has a table of its own.
        Err(e @ (Reject::NoEhFrameHdr | Reject::NoFunctionStart | Reject::PastFunctionEnd)) => {
            match super::gopclntab::table_of(os, &obj) {
                Some((start, len)) => {
                    let f = super::gopclntab::lookup(os, start, len, site)?;
                    super::gopclntab::note_go_code();
                    if NO_GO_SITES.load(core::sync::atomic::Ordering::Relaxed)
                        && !crate::rt::thread::fast_path_switches_stacks()
                    {
                        return Err(Reject::GoUnderTrace);
                    }
                    f
                }
                None => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    let next_start = next_start.unwrap_or(func_end);
    let (prev_start, prev_end) = prev.unwrap_or((func_start, func_start));
    Ok(Located {
        func_start,
        func_end,
        next_start,
        prev_start,
        prev_end,
        text_start: obj.text_start,
        text_end: obj.text_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::maps::{Mapping, Parser};
    use crate::patch::os::{read_u8, StdOs};
    use crate::patch::unwind::{read_encoded, read_leb, PE_DATAREL, PE_PCREL, PE_SDATA4, PE_UDATA4};

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
        use crate::patch::os::Bytes;
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
