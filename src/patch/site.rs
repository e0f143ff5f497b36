//! Is this `mov $nr,%eax; syscall` site safe to patch?
//!
//! The seven bytes `b8 n0 n1 n2 n3 0f 05` before a trapped syscall's return
//! address are not proof of a `mov $nr,%eax` instruction: they can be the tail
//! of a longer instruction (gVisor issue #10849: glibc's `ioctl` has
//! `movl $0x10,-0x48(%rsp)` = `c7 44 24 b8 10 00 00 00` right before `0f 05`).
//! Patching such a "site" corrupts the longer instruction. So the decision is
//! made by decoding FORWARD from a known function start (from the unwind
//! tables, [`super::elf`]) and accepting only when an instruction boundary falls
//! exactly on the `mov`.
//!
//! Runs in trap context: no syscalls except through `rt::raw`, no panics.
//! The decoder (iced-x86) allocates its tables once, on first use, through the
//! bump allocator (`rt::bump`): call [`warm_up`] at start-up, before any
//! trap can reach [`check`].

use core::ops::ControlFlow;

use iced_x86::{Code, Register};

pub use super::reject::Reject;
use super::{forms, locate, os, registry};

/// Longest distance decoded from a function start to a site.
pub const MAX_DECODE: u64 = 1 << 20;

/// Length of the patchable pair: `mov $imm32,%eax` (5) + `syscall` (2).
pub const SITE_LEN: u64 = 7;

/// rt_sigreturn: never patched (unwinders and debuggers recognise signal frames
/// by the bytes of the stub that issues it).
pub const NR_RT_SIGRETURN: u32 = 15;

/// glibc's `__restore_rt`: `mov $15,%rax; syscall`.
pub const SIGRETURN_STUB: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];

/// Decide from the code alone. `code` holds the bytes from `func_start` on,
/// at least up to `site + 7`. Ok(syscall number) only when, decoding forward
/// from `func_start`, an instruction starts exactly at `site`, it is
/// `mov $imm32,%eax` (5 bytes) and the next one is `syscall`.
pub fn verify(func_start: u64, code: &[u8], site: u64) -> Result<u32, Reject> {
    verify_original(&forms::Code { start: func_start, live: code, overlays: &[] }, site)
}

/// [`verify`] over a function's original bytes: its live bytes with the
/// originals of the sites patched in it already put back. A seed after a
/// Form R or P site of the same function (glibc's start_thread) is decoded
/// through the instructions the program wrote there, not through the jump
/// and invalid-opcode filler that replaced them.
pub fn verify_original(code: &forms::Code<'_>, site: u64) -> Result<u32, Reject> {
    let func_start = code.start;
    let off = site.checked_sub(func_start).ok_or(Reject::OutsideCode)?;
    if off > MAX_DECODE {
        return Err(Reject::TooFar);
    }
    let end = off.checked_add(SITE_LEN).ok_or(Reject::OutsideCode)?;
    let live = code.live.get(..end as usize).ok_or(Reject::OutsideCode)?;
    let mut head = [0u8; SIGRETURN_STUB.len()];
    if code.bytes(site, &mut head) && head == SIGRETURN_STUB {
        return Err(Reject::SigreturnStub);
    }
    // Decoded up to the site's end only: nothing past it is the site's.
    let window = forms::Code { start: func_start, live, overlays: code.overlays };
    // Every byte before the site consumed without landing on it (the end
    // reached) cannot happen (the window extends past the site), but be total.
    let found = window.each_insn(func_start, |ins, ran_out| {
        if ins.ip() == site {
            return ControlFlow::Break(Ok(*ins));
        }
        // An instruction that starts before the site and ends after it (or
        // runs out of bytes, which only happens past the site) hides the site.
        if ins.next_ip() > site || ran_out {
            return ControlFlow::Break(Err(Reject::NotBoundary));
        }
        if ins.is_invalid() {
            return ControlFlow::Break(Err(Reject::Undecodable));
        }
        ControlFlow::Continue(())
    });
    let ins = found.unwrap_or(Err(Reject::NotBoundary))?;
    if ins.code() != Code::Mov_r32_imm32 || ins.op0_register() != Register::EAX || ins.len() != 5 {
        return Err(Reject::NotMovEax);
    }
    let nr = ins.immediate32();
    let (ins, _) = window.decode_one(site.wrapping_add(5));
    if ins.ip() != site.wrapping_add(5) || ins.code() != Code::Syscall || ins.len() != 2 {
        return Err(Reject::NotSyscall);
    }
    if nr == NR_RT_SIGRETURN {
        return Err(Reject::SigreturnStub);
    }
    Ok(nr)
}

/// Full decision for a site in the running process (trap-context safe).
/// `site` is the address of the `mov`, i.e. the syscall's return address - 7.
pub fn check(site: u64) -> Result<u32, Reject> {
    check_with(&mut os::RawOs::new(), site)
}

/// [`check`] over a given system layer (tests use std instead of the gate).
pub fn check_with<O: os::Os>(os: &mut O, site: u64) -> Result<u32, Reject> {
    // glibc's restorer first, whatever the unwind tables say about it (its
    // hand-written FDE starts one byte early, inside the alignment padding).
    let mut head = [0u8; SIGRETURN_STUB.len()];
    if os.read(site, &mut head) && head == SIGRETURN_STUB {
        return Err(Reject::SigreturnStub);
    }
    let loc = locate::locate_with(os, site)?;
    let end = site.checked_add(SITE_LEN).ok_or(Reject::OutsideCode)?;
    if end > loc.func_end {
        return Err(Reject::SyscallOutsideFunction);
    }
    let off = site.checked_sub(loc.func_start).ok_or(Reject::NoFunctionStart)?;
    if off > MAX_DECODE {
        return Err(Reject::TooFar);
    }
    if loc.func_start < loc.text_start || end > loc.text_end {
        return Err(Reject::StraddlesMapping);
    }
    // SAFETY: [func_start, site + 7) lies inside one run of adjacent readable
    // and executable mappings of the ELF file that contains the site, as
    // /proc/self/maps listed them (just now, or when maps::ObjectCache kept
    // the object, with no mapping changed since; locate_with checked it), and is at
    // most MAX_DECODE + 7 bytes long. It is program text: nothing writes it
    // except our own patcher, which rewrites other sites (the bytes change,
    // the memory stays valid; their originals are put back for the decoding,
    // read from the registry under the patch lock our caller holds). The thread that
    // trapped was executing the syscall at this site a moment ago, so the
    // object is loaded; unmapping it concurrently (dlclose while one of its
    // functions runs) would already be a bug of the program.
    let live = unsafe { core::slice::from_raw_parts(loc.func_start as *const u8, (end - loc.func_start) as usize) };
    let mut overlays = [forms::Overlay::EMPTY; forms::MAX_OVERLAYS];
    let n = registry::overlays_in(loc.func_start, end, &mut overlays).ok_or(Reject::TooManyPatched)?;
    let overlays = overlays.get(..n).unwrap_or(&[]);
    verify_original(&forms::Code { start: loc.func_start, live, overlays }, site)
}

/// A function whose `mov $257,%eax; syscall` (at 22) follows other
/// instructions, one of which holds a b8 byte (at 12) that is no
/// instruction start: what both site decoders' tests check them on.
#[cfg(test)]
pub(super) const MOV_AFTER_OTHERS: [u8; 30] = [
    0xf3, 0x0f, 0x1e, 0xfa, // endbr64
    0x48, 0x89, 0xf8, // mov %rdi,%rax
    0x48, 0x83, 0xec, 0x08, // sub $8,%rsp
    0x41, 0xb8, 0x01, 0x00, 0x00, 0x00, // mov $1,%r8d (contains b8)
    0x0f, 0x1f, 0x44, 0x00, 0x00, // nopl 0(%rax,%rax,1)
    0xb8, 0x01, 0x01, 0x00, 0x00, // mov $257,%eax
    0x0f, 0x05, // syscall
    0xc3, // ret
];

/// Decode once so that iced-x86 builds its tables (thousands of allocations)
/// at start-up rather than in the first SIGSYS handler. True if the decoder
/// recognised `mov $39,%eax; syscall`.
pub fn warm_up() -> bool {
    const GETPID: [u8; 7] = [0xb8, 0x27, 0x00, 0x00, 0x00, 0x0f, 0x05];
    verify(0x1000, &GETPID, 0x1000) == Ok(39)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const BASE: u64 = 0x40_1000;

    fn v(code: &[u8], site_off: u64) -> Result<u32, Reject> {
        verify(BASE, code, BASE + site_off)
    }

    #[test]
    fn warm_up_decodes() {
        assert!(warm_up());
    }

    #[test]
    fn mov_syscall_at_function_start() {
        assert_eq!(v(&[0xb8, 39, 0, 0, 0, 0x0f, 0x05], 0), Ok(39));
        // Trailing bytes after the pair do not matter.
        assert_eq!(v(&[0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0xc3, 0xcc], 0), Ok(39));
    }

    #[test]
    fn mov_syscall_after_other_instructions() {
        let code = MOV_AFTER_OTHERS;
        assert_eq!(v(&code, 22), Ok(257));
        // The b8 inside `mov $1,%r8d` is not an instruction start.
        assert_eq!(v(&code, 12), Err(Reject::NotBoundary));
    }

    #[test]
    fn gvisor_10849_movl_to_stack_is_not_a_site() {
        // glibc ioctl: movl $0x10,-0x48(%rsp); syscall. The bytes from offset
        // 3 read b8 10 00 00 00 0f 05, but offset 3 is inside the movl.
        let code = [0xc7, 0x44, 0x24, 0xb8, 0x10, 0x00, 0x00, 0x00, 0x0f, 0x05];
        assert_eq!(&code[3..], &[0xb8, 0x10, 0, 0, 0, 0x0f, 0x05]);
        assert_eq!(v(&code, 3), Err(Reject::NotBoundary));
        // With something before it, too.
        let mut longer = vec![0x48, 0x89, 0xe5]; // mov %rsp,%rbp
        longer.extend_from_slice(&code);
        assert_eq!(v(&longer, 6), Err(Reject::NotBoundary));
    }

    #[test]
    fn glibc_sigreturn_stub_is_never_patchable() {
        let stub = SIGRETURN_STUB;
        // Whatever byte the caller points at, nothing in it is patchable.
        for off in 0..3 {
            let r = v(&stub, off);
            assert!(r.is_err(), "offset {off}: {r:?}");
        }
        assert_eq!(v(&stub, 0), Err(Reject::SigreturnStub));
        // After a nop (glibc puts one before __restore_rt).
        let mut with_nop = vec![0x90];
        with_nop.extend_from_slice(&stub);
        assert_eq!(v(&with_nop, 1), Err(Reject::SigreturnStub));
        // The 32-bit-immediate form of the same syscall.
        assert_eq!(v(&[0xb8, 15, 0, 0, 0, 0x0f, 0x05], 0), Err(Reject::SigreturnStub));
    }

    #[test]
    fn other_forms_are_rejected() {
        // mov %r8d,%eax; syscall
        assert_eq!(v(&[0x44, 0x89, 0xc0, 0x0f, 0x05, 0, 0, 0, 0], 0), Err(Reject::NotMovEax));
        // mov $nr,%eax; nop; syscall
        assert_eq!(v(&[0xb8, 39, 0, 0, 0, 0x90, 0x0f, 0x05], 0), Err(Reject::NotSyscall));
        // mov $nr,%ecx; syscall
        assert_eq!(v(&[0xb9, 39, 0, 0, 0, 0x0f, 0x05], 0), Err(Reject::NotMovEax));
        // mov $nr,%eax; sysenter
        assert_eq!(v(&[0xb8, 39, 0, 0, 0, 0x0f, 0x34], 0), Err(Reject::NotSyscall));
        // prefixed mov (66 b8 = mov $imm16,%ax): the site is the prefix.
        assert_eq!(v(&[0x66, 0xb8, 39, 0, 0x0f, 0x05, 0x90], 0), Err(Reject::NotMovEax));
    }

    #[test]
    fn site_outside_code() {
        let code = [0xb8, 39, 0, 0, 0, 0x0f, 0x05];
        // Past the end: the 7 bytes are not all there.
        assert_eq!(v(&code, 1), Err(Reject::OutsideCode));
        assert_eq!(v(&code, 100), Err(Reject::OutsideCode));
        // Before the function start.
        assert_eq!(verify(BASE, &code, BASE - 1), Err(Reject::OutsideCode));
        // Too far from the start (checked before the code length).
        assert_eq!(verify(BASE, &code, BASE + MAX_DECODE + 1), Err(Reject::TooFar));
        assert_eq!(verify(u64::MAX - 3, &code, u64::MAX), Err(Reject::OutsideCode));
        assert_eq!(verify(0, &[], 0), Err(Reject::OutsideCode));
    }

    #[test]
    fn data_in_code_desynchronises_and_is_rejected() {
        // A jump over embedded data whose last byte swallows the mov's opcode:
        // decoding forward (linearly) runs into the data and is rejected.
        let code = [
            0xeb, 0x02, // jmp +2
            0x0f, 0xff, // data: ud0 needs a modrm byte -> takes the b8
            0xb8, 39, 0, 0, 0, 0x0f, 0x05,
        ];
        assert!(v(&code, 4).is_err());
        // Invalid bytes before the site.
        let bad = [0x06, 0x90, 0xb8, 39, 0, 0, 0, 0x0f, 0x05];
        assert_eq!(v(&bad, 2), Err(Reject::Undecodable));
    }

    #[test]
    fn a_seed_after_a_patched_range_is_decoded_through_the_originals() {
        // mov $110,%eax; mov %rdi,%rsi; syscall; mov $102,%eax; syscall; ret
        let original = [0xb8, 110, 0, 0, 0, 0x48, 0x89, 0xfe, 0x0f, 0x05, 0xb8, 102, 0, 0, 0, 0x0f, 0x05, 0xc3];
        assert_eq!(v(&original, 10), Ok(102));
        // The first ten bytes rewritten as Form R leaves them: a 7-byte jump
        // and invalid-opcode filler up to the end of the old syscall.
        let mut live = original;
        live[..10].copy_from_slice(&[0xff, 0x24, 0x25, 0x00, 0x10, 0x00, 0x00, 0x06, 0x06, 0x06]);
        assert_eq!(v(&live, 10), Err(Reject::Undecodable));
        let mut orig_bytes = [0u8; forms::OVERLAY_BYTES];
        orig_bytes[..10].copy_from_slice(&original[..10]);
        let overlays = [forms::Overlay { addr: BASE, len: 10, bytes: orig_bytes }];
        let code = forms::Code { start: BASE, live: &live, overlays: &overlays };
        assert_eq!(verify_original(&code, BASE + 10), Ok(102));
        // Still a proof: a site inside the put-back range is no boundary.
        assert_eq!(verify_original(&code, BASE + 3), Err(Reject::NotBoundary));
    }

    #[test]
    fn texts_are_distinct() {
        let all = [
            Reject::NotMovEax,
            Reject::NotSyscall,
            Reject::NotBoundary,
            Reject::Undecodable,
            Reject::SigreturnStub,
            Reject::TooFar,
            Reject::OutsideCode,
            Reject::NoFunctionStart,
            Reject::PastFunctionEnd,
            Reject::SyscallOutsideFunction,
            Reject::NoEhFrameHdr,
            Reject::UnsupportedUnwind,
            Reject::BadUnwind,
            Reject::BadElf,
            Reject::InVdso,
            Reject::InVsyscall,
            Reject::NotElfObject,
            Reject::NotExecutable,
            Reject::NotMapped,
            Reject::MapsUnreadable,
            Reject::StraddlesMapping,
            Reject::BranchIntoRange,
            Reject::IndirectJump,
            Reject::RangeTooShort,
            Reject::NotRelocatable,
            Reject::FirstTooShort,
            Reject::AlreadyPatched,
            Reject::TooManyPatched,
            Reject::NoPad,
            Reject::NoPunnedSlot,
            Reject::GoUnderTrace,
        ];
        let texts: std::collections::BTreeSet<_> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(texts.len(), all.len());
    }

    // -------------------------------------------------------------------
    // Against the real libc of the test process.

    /// Executable mappings, (start, end), of the loaded object whose path
    /// ends with `suffix`, and the object's lowest address.
    fn object_text(suffix: &str) -> (Vec<(u64, u64)>, u64) {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let mut out = Vec::new();
        let mut base = u64::MAX;
        for line in maps.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 6 && f[5].ends_with(suffix) {
                let (a, b) = f[0].split_once('-').unwrap();
                let (a, b) = (u64::from_str_radix(a, 16).unwrap(), u64::from_str_radix(b, 16).unwrap());
                base = base.min(a);
                if f[1].contains('x') {
                    out.push((a, b));
                }
            }
        }
        assert!(!out.is_empty(), "no executable {suffix} mapping in /proc/self/maps");
        (out, base)
    }

    fn libc_text() -> Vec<(u64, u64)> {
        object_text("/libc.so.6").0
    }

    fn text_bytes(start: u64, end: u64) -> &'static [u8] {
        // SAFETY: an r-x mapping of libc or ld.so, which stay loaded for the test.
        unsafe { std::slice::from_raw_parts(start as *const u8, (end - start) as usize) }
    }

    fn is_candidate(w: &[u8]) -> bool {
        w.len() >= 7 && w[0] == 0xb8 && w[5] == 0x0f && w[6] == 0x05
    }

    /// Run the full check on every `b8 xx xx xx xx 0f 05` in an object's text:
    /// (candidates, accepted, rejection reasons).
    fn scan_object(suffix: &str) -> (usize, usize, BTreeMap<&'static str, usize>) {
        let (texts, base) = object_text(suffix);
        let name = suffix.trim_start_matches('/');
        let mut os = os::StdOs::new();
        let (mut total, mut accepted) = (0usize, 0usize);
        let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut nrs: BTreeMap<u32, usize> = BTreeMap::new();
        for (start, end) in texts {
            let text = text_bytes(start, end);
            for i in 0..text.len().saturating_sub(6) {
                if !is_candidate(&text[i..]) {
                    continue;
                }
                total += 1;
                let site = start + i as u64;
                match check_with(&mut os, site) {
                    Ok(nr) => {
                        accepted += 1;
                        let imm = u32::from_le_bytes(text[i + 1..i + 5].try_into().unwrap());
                        assert_eq!(nr, imm);
                        *nrs.entry(nr).or_default() += 1;
                    }
                    Err(r) => {
                        let imm = u32::from_le_bytes(text[i + 1..i + 5].try_into().unwrap());
                        eprintln!("  rejected {name}+{:#x} (nr {imm}): {}", site - base, r.as_str());
                        *reasons.entry(r.as_str()).or_default() += 1
                    }
                }
            }
        }
        eprintln!(
            "{name}: {total} candidate b8 xx xx xx xx 0f 05 sites, {accepted} accepted ({} distinct syscall numbers)",
            nrs.len()
        );
        for (r, n) in &reasons {
            eprintln!("  rejected {n:4}: {r}");
        }
        assert!(!nrs.contains_key(&NR_RT_SIGRETURN));
        (total, accepted, reasons)
    }

    #[test]
    fn libc_sites() {
        let (total, accepted, reasons) = scan_object("/libc.so.6");
        assert!(accepted >= 300, "only {accepted} of {total} accepted; rejections: {reasons:?}");
    }

    #[test]
    fn ld_so_sites() {
        let (total, accepted, reasons) = scan_object("/ld-linux-x86-64.so.2");
        assert!(accepted * 4 >= total * 3, "only {accepted} of {total} accepted; rejections: {reasons:?}");
    }

    /// Every `syscall` of libc that is not the seed form: how many Form R
    /// or Form P take (the rest stays on the slow path, with a reason).
    #[test]
    fn libc_other_forms() {
        use crate::patch::forms::{plan_pad, plan_range, Code};
        let (texts, base) = object_text("/libc.so.6");
        let mut os = os::StdOs::new();
        let (mut total, mut range, mut pad) = (0usize, 0usize, 0usize);
        let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
        for (start, end) in texts {
            let text = text_bytes(start, end);
            for i in 0..text.len().saturating_sub(1) {
                if text[i] != 0x0f || text[i + 1] != 0x05 {
                    continue;
                }
                let sys = start + i as u64;
                let Ok(loc) = locate::locate_with(&mut os, sys) else { continue };
                if sys + 2 > loc.func_end || loc.func_end > end || loc.func_start < start {
                    continue;
                }
                if i >= 5 && is_candidate(&text[i - 5..]) && check_with(&mut os, sys - 5).is_ok() {
                    continue; // the seed form
                }
                let code =
                    Code { start: loc.func_start, live: text_bytes(loc.func_start, loc.func_end), overlays: &[] };
                // With the padding up to the next function, as install.rs.
                let gap_end =
                    if loc.next_start > loc.func_end && loc.next_start - loc.func_end <= 64 && loc.next_start <= end {
                        loc.next_start
                    } else {
                        loc.func_end
                    };
                let pad_code = if crate::patch::forms::all_filler(loc.func_end, text_bytes(loc.func_end, gap_end)) {
                    Code { start: loc.func_start, live: text_bytes(loc.func_start, gap_end), overlays: &[] }
                } else {
                    Code { start: loc.func_start, live: text_bytes(loc.func_start, loc.func_end), overlays: &[] }
                };
                match plan_range(&code, sys) {
                    Err(Reject::NotBoundary) | Err(Reject::NotSyscall) => continue, // not an instruction
                    Ok(_) => {
                        total += 1;
                        range += 1;
                    }
                    Err(why_r) => {
                        total += 1;
                        match plan_pad(&pad_code, sys) {
                            Ok(_) => pad += 1,
                            Err(why_p) => {
                                eprintln!("  slow libc+{:#x}: {} / {}", sys - base, why_r.as_str(), why_p.as_str());
                                *reasons.entry(why_p.as_str()).or_default() += 1;
                            }
                        }
                    }
                }
            }
        }
        eprintln!("libc: {total} syscall instructions not of the seed form: {range} Form R, {pad} Form P");
        for (r, n) in &reasons {
            eprintln!("  left {n:4}: {r}");
        }
        assert!(total >= 50, "only {total} non-seed syscalls found in libc");
        assert!((range + pad) * 10 >= total * 7, "only {} of {total} non-seed sites take Form R or P", range + pad);
    }

    /// Find `pat` within `max` bytes after the function at `f`.
    fn find_after(f: u64, max: u64, pat: &[u8]) -> u64 {
        let (_, end) = libc_text().into_iter().find(|&(s, e)| s <= f && f < e).expect("function not in libc text");
        let text = text_bytes(f, end.min(f + max));
        f + text.windows(pat.len()).position(|w| w == pat).expect("pattern not found") as u64
    }

    #[test]
    fn clone_is_not_accepted() {
        // glibc's clone ends its unwind info right before the syscall (the
        // child must not unwind into the parent's frames).
        let site = find_after(libc::clone as *const () as usize as u64, 128, &[0xb8, 56, 0, 0, 0, 0x0f, 0x05]);
        assert_eq!(check_with(&mut os::StdOs::new(), site), Err(Reject::SyscallOutsideFunction));
    }

    #[test]
    fn getppid_wrapper_is_accepted() {
        let f = libc::getppid as *const () as usize as u64;
        let mut os = os::StdOs::new();
        let site = find_after(f, 256, &[0xb8, 0x6e, 0x00, 0x00, 0x00, 0x0f, 0x05]);
        assert_eq!(locate::locate_with(&mut os, site).map(|l| l.func_start), Ok(f));
        assert_eq!(check_with(&mut os, site), Ok(110));
    }

    #[test]
    fn glibc_restore_rt_is_not_accepted() {
        // glibc reports its own restorer (__restore_rt) in sa_restorer.
        extern "C" fn handler(_: libc::c_int) {}
        let sig = libc::SIGRTMIN() + 5;
        // SAFETY: sigaction structs are plain data (zero is valid); the
        // handler does nothing, and the old action is put back at once.
        let restorer = unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = handler as *const () as usize;
            let mut old: libc::sigaction = std::mem::zeroed();
            assert_eq!(libc::sigaction(sig, &raw const act, &raw mut old), 0);
            let mut now: libc::sigaction = std::mem::zeroed();
            assert_eq!(libc::sigaction(sig, &raw const old, &raw mut now), 0);
            now.sa_restorer.map(|f| f as usize as u64).expect("no sa_restorer")
        };
        let bytes = text_bytes(restorer, restorer + 9);
        assert_eq!(bytes, &SIGRETURN_STUB, "__restore_rt is not the expected stub");
        let mut os = os::StdOs::new();
        for site in restorer.saturating_sub(7)..restorer + 9 {
            let r = check_with(&mut os, site);
            assert!(r.is_err(), "site {site:#x} near __restore_rt accepted: {r:?}");
        }
        assert_eq!(check_with(&mut os, restorer), Err(Reject::SigreturnStub));
    }

    #[test]
    fn anonymous_and_vdso_are_rejected() {
        let mut os = os::StdOs::new();
        // JIT-like anonymous code.
        // SAFETY: a fresh anonymous mapping; nothing existing is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // SAFETY: 7 bytes into the writable page just mapped.
        unsafe { std::ptr::copy_nonoverlapping([0xb8u8, 39, 0, 0, 0, 0x0f, 0x05].as_ptr(), p.cast::<u8>(), 7) };
        assert_eq!(check_with(&mut os, p as u64), Err(Reject::NotElfObject));
        // SAFETY: the page mapped above, used by nothing any more.
        unsafe { libc::munmap(p, 4096) };
        // The vDSO.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        if let Some(line) = maps.lines().find(|l| l.ends_with("[vdso]")) {
            let start = u64::from_str_radix(line.split('-').next().unwrap(), 16).unwrap();
            assert_eq!(check_with(&mut os, start + 16), Err(Reject::InVdso));
        }
        // The stack and unmapped memory.
        let local = 0u64;
        assert_eq!(check_with(&mut os, (&raw const local) as u64), Err(Reject::NotElfObject));
        assert_eq!(check_with(&mut os, 8), Err(Reject::NotMapped));
    }
}
