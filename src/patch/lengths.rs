//! Instruction lengths without tables: the launcher's proof of a
//! `mov $nr,%eax; syscall` site in the loader it has just mapped.
//!
//! iced-x86 builds its decoder tables on first use: about 0.4 ms per
//! process (0.12 ms even without VEX/EVEX), more than the loader's slow
//! calls it would save (about 30 per process, 1.5-2 us each). The loader's
//! syscall wrappers are short functions of plain integer code, so the
//! launcher decodes them with this whitelist instead: the common one-byte
//! and 0x0f opcodes whose length follows from the opcode, ModRM and SIB
//! alone. Any other byte (VEX/EVEX, 0x67, x87, ...) is refused, and so is the
//! site behind it: the decoder is never guessing, it only says less than
//! iced does. The unit tests check that every instruction it accepts in
//! libc and the loader has the length iced gives it.
//!
//! Never: accept an opcode whose length is not fully determined here.

use super::reject::Reject;
use super::site::{NR_RT_SIGRETURN, SIGRETURN_STUB, SITE_LEN};

/// What an accepted instruction is, as far as the site proof cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `mov $imm32,%eax` (b8 imm32, no prefix): 5 bytes.
    MovEax(u32),
    /// `syscall` (0f 05).
    Syscall,
    Other,
}

/// Bytes taken by a ModRM byte (at `m`) and what follows it (SIB, displacement).
fn modrm_len(code: &[u8], m: usize) -> Option<usize> {
    let modrm = *code.get(m)?;
    let (md, rm) = (modrm >> 6, modrm & 7);
    if md == 3 {
        return Some(1);
    }
    let mut n = 1;
    if rm == 4 {
        let sib = *code.get(m + 1)?;
        n += 1;
        if md == 0 && sib & 7 == 5 {
            n += 4;
        }
    } else if md == 0 && rm == 5 {
        n += 4; // rip-relative
    }
    n += match md {
        1 => 1,
        2 => 4,
        _ => 0,
    };
    Some(n)
}

/// The length and kind of the instruction at the start of `code`, if it is
/// one this decoder knows exactly; None otherwise (the caller refuses).
pub fn decode(code: &[u8]) -> Option<(usize, Kind)> {
    let mut i = 0;
    let mut opsize16 = false;
    let mut prefixed = false;
    // Legacy prefixes, then at most one REX right before the opcode.
    loop {
        match *code.get(i)? {
            0x66 => opsize16 = true,
            0xf2 | 0xf3 | 0x2e | 0x3e | 0x64 | 0x65 | 0xf0 => {}
            _ => break,
        }
        prefixed = true;
        i += 1;
    }
    let mut rex_w = false;
    let b = *code.get(i)?;
    if (0x40..=0x4f).contains(&b) {
        rex_w = b & 8 != 0;
        prefixed = true;
        i += 1;
    }
    let op = *code.get(i)?;
    i += 1;
    // Iz: 4 bytes, 2 with the operand-size prefix (unless REX.W).
    let iz = if opsize16 && !rex_w { 2 } else { 4 };
    let len = match op {
        // ALU r/m,r and r,r/m (add, or, adc, sbb, and, sub, xor, cmp).
        0x00..=0x03
        | 0x08..=0x0b
        | 0x10..=0x13
        | 0x18..=0x1b
        | 0x20..=0x23
        | 0x28..=0x2b
        | 0x30..=0x33
        | 0x38..=0x3b => i + modrm_len(code, i)?,
        // ALU al,imm8.
        0x04 | 0x0c | 0x14 | 0x1c | 0x24 | 0x2c | 0x34 | 0x3c | 0xa8 => i + 1,
        // ALU eax,Iz; test eax,Iz.
        0x05 | 0x0d | 0x15 | 0x1d | 0x25 | 0x2d | 0x35 | 0x3d | 0xa9 => i + iz,
        0x50..=0x5f | 0x90..=0x99 | 0x9c | 0x9d | 0xc3 | 0xc9 | 0xcc | 0xf4 => i,
        0x63 | 0x84..=0x8b | 0xd0..=0xd3 => i + modrm_len(code, i)?,
        0x8d => {
            if *code.get(i)? >> 6 == 3 {
                return None; // lea with a register operand: invalid
            }
            i + modrm_len(code, i)?
        }
        0x8f => {
            if (*code.get(i)? >> 3) & 7 != 0 {
                return None;
            }
            i + modrm_len(code, i)?
        }
        0x68 => i + iz,
        0x6a | 0x70..=0x7f | 0xeb => i + 1,
        0x69 | 0x81 => i + modrm_len(code, i)? + iz,
        0x6b | 0x80 | 0x83 | 0xc0 | 0xc1 => i + modrm_len(code, i)? + 1,
        0xb0..=0xb7 => i + 1,
        0xb8..=0xbf => {
            if rex_w {
                i + 8
            } else {
                i + iz
            }
        }
        0xc2 => i + 2,
        0xc6 | 0xc7 => {
            if (*code.get(i)? >> 3) & 7 != 0 {
                return None; // xabort/xbegin and undefined forms
            }
            i + modrm_len(code, i)? + if op == 0xc6 { 1 } else { iz }
        }
        0xe8 | 0xe9 => {
            if opsize16 {
                return None;
            }
            i + 4
        }
        0xf6 | 0xf7 => {
            let reg = (*code.get(i)? >> 3) & 7;
            let imm = match (reg, op) {
                (0 | 1, 0xf6) => 1,
                (0 | 1, _) => iz,
                _ => 0,
            };
            i + modrm_len(code, i)? + imm
        }
        0xfe => {
            if (*code.get(i)? >> 3) & 7 > 1 {
                return None;
            }
            i + modrm_len(code, i)?
        }
        0xff => {
            let m = *code.get(i)?;
            // /7 is undefined; far call/jmp (/3, /5) need a memory operand.
            if (m >> 3) & 7 == 7 || ((m >> 3) & 7 == 3 || (m >> 3) & 7 == 5) && m >> 6 == 3 {
                return None;
            }
            i + modrm_len(code, i)?
        }
        0x0f => {
            let op2 = *code.get(i)?;
            i += 1;
            match op2 {
                0x05 => {
                    if prefixed {
                        return None;
                    }
                    return Some((i, Kind::Syscall));
                }
                // ud2, rdtsc, cpuid, bswap.
                0x0b | 0x31 | 0xa2 | 0xc8..=0xcf => i,
                // Hint nops (endbr64 is f3 0f 1e fa), prefetch, SSE moves
                // and logic, cmovcc, setcc, bt/bts/btr/btc, shld/shrd by cl,
                // imul, cmpxchg, movzx/movsx, xadd, bsf/bsr (tzcnt/lzcnt),
                // SSE2 integer ops (none of them takes an immediate).
                0x0d
                | 0x18..=0x1f
                | 0x10..=0x17
                | 0x28
                | 0x29
                | 0x2e
                | 0x2f
                | 0x40..=0x4f
                | 0x51
                | 0x54..=0x5f
                | 0x60..=0x6f
                | 0x74..=0x76
                | 0x7e
                | 0x7f
                | 0x90..=0x9f
                | 0xa3
                | 0xa5
                | 0xab
                | 0xad
                | 0xaf
                | 0xb0
                | 0xb1
                | 0xb3
                | 0xb6
                | 0xb7
                | 0xbb..=0xbf
                | 0xc0
                | 0xc1
                | 0xd1..=0xd5
                | 0xd6..=0xef
                | 0xf1..=0xfe => i + modrm_len(code, i)?,
                // Immediate byte: pshufd/pshuflw/pshufhw, shifts by imm,
                // shld/shrd by imm, bt* by imm, shufps/shufpd.
                0x70..=0x73 | 0xa4 | 0xac | 0xba | 0xc6 => i + modrm_len(code, i)? + 1,
                0x80..=0x8f => {
                    if opsize16 {
                        return None;
                    }
                    i + 4
                }
                _ => return None,
            }
        }
        _ => return None,
    };
    if len > 15 || len > code.len() {
        return None;
    }
    if op == 0xb8 && !prefixed && len == 5 {
        let imm = u32::from_le_bytes([*code.get(1)?, *code.get(2)?, *code.get(3)?, *code.get(4)?]);
        return Some((5, Kind::MovEax(imm)));
    }
    Some((len, Kind::Other))
}

/// [`super::site::verify`] with this decoder: Ok(syscall number) only when,
/// decoding forward from `func_start`, an instruction starts exactly at
/// `site`, it is `mov $imm32,%eax` and the next one is `syscall`. `code`
/// holds the bytes from `func_start` on, at least up to `site + 7`.
pub fn verify(func_start: u64, code: &[u8], site: u64) -> Result<u32, Reject> {
    let off = site.checked_sub(func_start).ok_or(Reject::OutsideCode)? as usize;
    if off > super::site::MAX_DECODE as usize {
        return Err(Reject::TooFar);
    }
    let window = code.get(..off + SITE_LEN as usize).ok_or(Reject::OutsideCode)?;
    if window.get(off..).is_some_and(|b| SIGRETURN_STUB.starts_with(b) || b.starts_with(&SIGRETURN_STUB)) {
        return Err(Reject::SigreturnStub);
    }
    let mut at = 0usize;
    while at < off {
        let (len, _) = decode(window.get(at..).unwrap_or(&[])).ok_or(Reject::Undecodable)?;
        at += len;
    }
    if at != off {
        return Err(Reject::NotBoundary);
    }
    let Some((5, Kind::MovEax(nr))) = decode(window.get(off..).unwrap_or(&[])) else {
        return Err(Reject::NotMovEax);
    };
    if decode(window.get(off + 5..).unwrap_or(&[])) != Some((2, Kind::Syscall)) {
        return Err(Reject::NotSyscall);
    }
    if nr == NR_RT_SIGRETURN {
        return Err(Reject::SigreturnStub);
    }
    Ok(nr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Code, Decoder, DecoderOptions, Instruction};

    /// Every instruction this decoder accepts, in the functions of `object`
    /// mapped in this process, has the length iced gives it, decoding each
    /// function forward from its start (from the unwind tables), as the
    /// site proofs do. iced is built without its VEX/EVEX/XOP/3DNow! tables
    /// (Cargo.toml): where it finds an instruction invalid, this decoder
    /// must refuse it too, and the rest of that function is not compared.
    /// (accepted, total) instructions.
    fn agrees_with_iced(object: &str) -> (usize, usize) {
        use crate::patch::locate::locate_with;
        use crate::patch::os::StdOs;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let (mut accepted, mut total) = (0, 0);
        for line in maps.lines().filter(|l| l.ends_with(object) && l.split_whitespace().nth(1) == Some("r-xp")) {
            let (lo, hi) = line.split_whitespace().next().unwrap().split_once('-').unwrap();
            let (lo, hi) = (u64::from_str_radix(lo, 16).unwrap(), u64::from_str_radix(hi, 16).unwrap());
            // SAFETY: a readable, executable mapping of this process, per its maps.
            let text = unsafe { std::slice::from_raw_parts(lo as *const u8, (hi - lo) as usize) };
            let mut at = lo;
            while at < hi {
                let Ok(l) = locate_with(&mut StdOs::new(), at) else {
                    at += 16;
                    continue;
                };
                let (start, end) = (l.func_start.max(lo), l.func_end.min(hi));
                let func = &text[(start - lo) as usize..(end - lo) as usize];
                let mut d = Decoder::try_with_ip(64, func, start, DecoderOptions::NONE).unwrap();
                let mut ins = Instruction::default();
                while d.can_decode() {
                    d.decode_out(&mut ins);
                    let i = (ins.ip() - lo) as usize;
                    let ours = decode(&text[i..end as usize - lo as usize]);
                    if ins.is_invalid() {
                        assert!(ours.is_none(), "{object}+{i:#x}: accepted what iced finds invalid");
                        break;
                    }
                    total += 1;
                    let Some((len, kind)) = ours else { continue };
                    accepted += 1;
                    assert_eq!(len, ins.len(), "{object}+{i:#x}: {:x?}", &text[i..i + ins.len()]);
                    match kind {
                        Kind::MovEax(n) => {
                            assert_eq!(ins.code(), Code::Mov_r32_imm32);
                            assert_eq!(ins.immediate32(), n);
                        }
                        Kind::Syscall => assert_eq!(ins.code(), Code::Syscall),
                        Kind::Other => assert!(ins.code() != Code::Syscall),
                    }
                }
                at = l.next_start.max(end).max(at + 1);
            }
        }
        (accepted, total)
    }

    #[test]
    fn lengths_agree_with_iced_in_libc_and_the_loader() {
        for object in ["/ld-linux-x86-64.so.2", "/libc.so.6"] {
            let (accepted, total) = agrees_with_iced(object);
            eprintln!("{object}: {accepted} of {total} instructions accepted, each as long as iced says");
            // Most of the code is plain integer code.
            assert!(accepted * 10 > total * 7, "{object}: {accepted} of {total}");
        }
    }

    /// Every `mov $nr,%eax; syscall` candidate in the text of libc and the
    /// loader mapped in this process: whenever this decoder proves a site,
    /// iced proves it too, with the same number (from the same function
    /// start, found in the unwind tables); and in the loader it proves every
    /// site iced does (what the launcher needs).
    #[test]
    fn proves_only_what_iced_proves() {
        use crate::patch::locate::locate_with;
        use crate::patch::os::StdOs;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        for object in ["/ld-linux-x86-64.so.2", "/libc.so.6"] {
            let (mut ours, mut iced) = (0, 0);
            for line in maps.lines().filter(|l| l.ends_with(object) && l.split_whitespace().nth(1) == Some("r-xp")) {
                let (lo, hi) = line.split_whitespace().next().unwrap().split_once('-').unwrap();
                let (lo, hi) = (u64::from_str_radix(lo, 16).unwrap(), u64::from_str_radix(hi, 16).unwrap());
                // SAFETY: a readable, executable mapping of this process, per its maps.
                let text = unsafe { std::slice::from_raw_parts(lo as *const u8, (hi - lo) as usize) };
                for i in 0..text.len().saturating_sub(7) {
                    if text[i] != 0xb8 || text[i + 5..i + 7] != [0x0f, 0x05] {
                        continue;
                    }
                    let site = lo + i as u64;
                    let Ok(l) = locate_with(&mut StdOs::new(), site) else { continue };
                    if l.func_start < lo || site + 7 > l.func_end {
                        continue;
                    }
                    let code = &text[(l.func_start - lo) as usize..i + 7];
                    let by_iced = crate::patch::site::verify(l.func_start, code, site);
                    let by_us = verify(l.func_start, code, site);
                    if let Ok(nr) = by_us {
                        assert_eq!(by_iced, Ok(nr), "{object}+{:#x}", site - lo);
                        ours += 1;
                    }
                    iced += by_iced.is_ok() as usize;
                }
            }
            assert!(ours > 0, "{object}: no site proved");
            if object.contains("ld-linux") {
                assert_eq!(ours, iced, "{object}: the loader's sites iced proves");
            }
        }
    }

    #[test]
    fn verify_matches_the_site_rules() {
        const BASE: u64 = 0x40_1000;
        let v = |code: &[u8], off: u64| verify(BASE, code, BASE + off);
        assert_eq!(v(&[0xb8, 39, 0, 0, 0, 0x0f, 0x05], 0), Ok(39));
        let code = crate::patch::site::MOV_AFTER_OTHERS;
        assert_eq!(v(&code, 22), Ok(257));
        assert_eq!(v(&code, 12), Err(Reject::NotBoundary));
        // gVisor #10849: movl $0x10,-0x48(%rsp) hides b8 10 00 00 00 0f 05.
        let ioctl = [0xc7, 0x44, 0x24, 0xb8, 0x10, 0x00, 0x00, 0x00, 0x0f, 0x05];
        assert_eq!(v(&ioctl, 3), Err(Reject::NotBoundary));
        assert_eq!(v(&SIGRETURN_STUB, 0), Err(Reject::SigreturnStub));
        assert_eq!(v(&[0xb8, 15, 0, 0, 0, 0x0f, 0x05], 0), Err(Reject::SigreturnStub));
        // Something it does not know before the site: refused, not guessed.
        let vex = [0xc5, 0xf8, 0x77, 0xb8, 39, 0, 0, 0, 0x0f, 0x05]; // vzeroupper
        assert_eq!(v(&vex, 3), Err(Reject::Undecodable));
        // A prefixed mov is not the 5-byte mov.
        assert_eq!(v(&[0x40, 0xb8, 39, 0, 0, 0, 0x0f, 0x05], 1), Err(Reject::NotBoundary));
    }
}
