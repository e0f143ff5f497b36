//! The forms beyond the seed: which bytes around a `syscall` may be
//! rewritten, proven from the whole function decoded forward from its start,
//! and the trampoline that does their work. Pure functions over bytes (the
//! golden tests below feed them bytes); install.rs applies them, write.rs
//! writes them, fault.rs completes threads caught inside them.
//!
//! **Form R (relocated range).** R = whole instructions I0..Ik, one of them
//! the `syscall`, 7 to [`MAX_RANGE`] bytes, inside one function; every
//! instruction but the `syscall` is on a short allow-list of integer
//! instructions without rip-relative operands (copied into the trampoline
//! unchanged, they do the same), or `lea disp32(%rip),%r64` (pthread_create's
//! `lea sigset(%rip),%rsi; syscall` for rt_sigprocmask), whose copy is
//! `movabs $target,%r64`: the address it computes, known when the
//! trampoline is built (from R's address and the displacement, in the
//! original bytes the proof checked), in the same register, flags
//! untouched as by `lea`. The copy is 3 bytes longer: where a thread is
//! resumed in the trampoline counts copies, not R's offsets
//! ([`resume_offset`]). R becomes `jmp *slot` (ff 24 25 + 4 bytes)
//! followed by 0x06 filler. Safety, for every thread at every moment:
//! every instruction boundary of R but the first is, in every byte sequence
//! the write protocol passes through, an invalid opcode: offset 5 is the
//! slot's 0x06 byte, offsets from 7 on are filler, offsets 1 and 2 (0x24,
//! 0x25) are never boundaries, offsets 3, 4 and 6 are boundaries only with a
//! slot whose address bytes there are invalid opcodes too ("punned" slots,
//! table.rs). The protocol (write.rs) first puts 0x06 on the first byte of
//! every instruction, then the rest, then the first byte. So a thread that
//! fetches an instruction of R either runs the whole original instruction
//! or faults on its first byte; a fault at boundary j means it ran I0..I(j-1)
//! natively, its state is exact, and fault.rs resumes it at the trampoline's
//! copy of Ij (at the `syscall` itself the call is run in the handler, as for
//! the seed, which keeps `restart_syscall` right). A thread blocked in the
//! old `syscall` returns to its end: R's end (untouched) or a boundary
//! (faults, same rule); a restart rewinds onto the `syscall`: a boundary.
//! No direct branch of the function may target any byte of R but the first,
//! and a function with an indirect `jmp` (jump tables) is refused; a branch
//! from elsewhere (a `.cold` part) to a boundary would still be safe (it
//! faults into the trampoline).
//!
//! **Form P (pad).** Only the `syscall` changes: to `jmp rel8` (eb dd) into
//! a run of NOP/INT3 instructions of the same function that follows an
//! unconditional transfer (ret, jmp, ud2, hlt) and that no branch of the
//! function targets (so no thread can be in it: it is dead), holding `jmp
//! *slot` to the trampoline; the rest of a partly covered NOP becomes INT3 so
//! the function still decodes whole. The pad is written first; then the
//! `syscall`'s bytes go 0f 05 -> 06 05 -> 06 dd -> eb dd. A thread at the
//! `syscall` runs it, or faults on 0x06 (the handler runs the call with the
//! thread's rax and resumes after it), or jumps; a thread returning from it
//! lands after it, where nothing changed.
//!
//! **The trampoline** (both forms) uses the number in rax at run time:
//!   <copies of R's instructions before the syscall>
//!   movabs $Tret,%r11; movabs $ut_fast_entry,%rcx; jmp *%rcx
//!   syscall                      <- ut_fast_entry diverts here for calls
//!                                   the fast path must not run (emulated)
//!   Tret: movabs $<after syscall>,%rcx   (rcx as the old syscall leaves it)
//!   <copies of R's instructions after the syscall>
//!   jmp *0(%rip); .quad <R's end>
//!
//! Analysis sees the program's bytes: decoding goes through [`Code`], which
//! puts the original bytes of already patched sites back.
//!
//! Runs in trap context: no allocation beyond the decoder's tables, no
//! panics. Never: accept a range or pad without the whole-function proof.

use core::ops::ControlFlow;

use iced_x86::{Code as Op, Decoder, DecoderError, DecoderOptions, Instruction, Mnemonic, OpKind, Register};

use super::reject::Reject;

/// Longest rewritten range.
pub const MAX_RANGE: usize = 24;
/// Most instructions in a range.
pub const MAX_INSNS: usize = 8;
/// `jmp *abs32`.
pub const JUMP_LEN: usize = 7;
/// Tret's offset in a trampoline past the copies of R's instructions
/// before the `syscall` ([`trampoline`]): the return address the fast path
/// is given, and the address after the trampoline's own `syscall`.
pub const TRAMP_RET_OFF: usize = 24;
/// Longest trampoline ([`trampoline`]).
pub const TRAMP_MAX: usize = 128;
/// Most patched sites put back while decoding one function.
pub const MAX_OVERLAYS: usize = 32;
/// Longest original bytes kept for one overlay.
pub const OVERLAY_BYTES: usize = 32;

/// One-byte opcodes that are invalid in 64-bit mode whatever follows (not
/// prefixes of valid encodings such as 62, c4, c5, 8f).
pub const INVALID_OPCODES: [u8; 20] = [
    0x06, 0x07, 0x0e, 0x16, 0x17, 0x1e, 0x1f, 0x27, 0x2f, 0x37, 0x3f, 0x60, 0x61, 0x82, 0x9a, 0xce, 0xd4, 0xd5, 0xd6,
    0xea,
];

pub fn is_invalid_opcode(b: u8) -> bool {
    INVALID_OPCODES.contains(&b)
}

/// Original bytes of a patched site, put back while decoding.
#[derive(Clone, Copy)]
pub struct Overlay {
    pub addr: u64,
    pub len: usize,
    pub bytes: [u8; OVERLAY_BYTES],
}

impl Overlay {
    pub const EMPTY: Overlay = Overlay { addr: 0, len: 0, bytes: [0; OVERLAY_BYTES] };
}

/// A function's code as the program wrote it: the live bytes from `start`
/// with the originals of patched sites put back.
pub struct Code<'a> {
    pub start: u64,
    pub live: &'a [u8],
    pub overlays: &'a [Overlay],
}

impl Code<'_> {
    pub fn end(&self) -> u64 {
        self.start + self.live.len() as u64
    }

    /// The original bytes at [addr, addr + buf.len()); false outside the code.
    pub fn bytes(&self, addr: u64, buf: &mut [u8]) -> bool {
        let Some(off) = addr.checked_sub(self.start) else { return false };
        let Some(src) = self.live.get(off as usize..off as usize + buf.len()) else { return false };
        buf.copy_from_slice(src);
        for o in self.overlays {
            for i in 0..o.len.min(OVERLAY_BYTES) {
                let a = o.addr + i as u64;
                if a >= addr && a < addr + buf.len() as u64 {
                    if let (Some(d), Some(s)) = (buf.get_mut((a - addr) as usize), o.bytes.get(i)) {
                        *d = *s;
                    }
                }
            }
        }
        true
    }

    /// Does [addr, addr+len) touch a patched site?
    pub fn overlaps_patch(&self, addr: u64, len: u64) -> bool {
        self.overlays.iter().any(|o| o.addr < addr + len && addr < o.addr + o.len as u64)
    }

    /// The instruction at `ip` (None: undecodable or running past the end).
    pub fn decode(&self, ip: u64) -> Option<Instruction> {
        let (ins, _) = self.decode_one(ip);
        (!ins.is_invalid() && ins.len() != 0).then_some(ins)
    }

    /// The instruction at `ip` (its original bytes, at most 15, none past
    /// the end), and whether it ran out of bytes (invalid then).
    pub fn decode_one(&self, ip: u64) -> (Instruction, bool) {
        let mut buf = [0u8; 15];
        let n = self.end().saturating_sub(ip).min(buf.len() as u64) as usize;
        let window = buf.get_mut(..n).unwrap_or(&mut []);
        if !self.bytes(ip, window) {
            return (Instruction::default(), true);
        }
        let Ok(mut decoder) = Decoder::try_with_ip(64, window, ip, DecoderOptions::NONE) else {
            return (Instruction::default(), true);
        };
        let ins = decoder.decode();
        (ins, decoder.last_error() == DecoderError::NoMoreBytes)
    }

    /// `f` for each instruction from `from` on, in order, each as
    /// [`Code::decode_one`] gives it (an invalid one too: `f` decides),
    /// until `f` breaks, an instruction is invalid or the code ends. Over
    /// the bytes no overlay touches, one decoder runs through them (building
    /// one per instruction, and copying its bytes through the overlays,
    /// cost most of a proof); an instruction that does not decode whole
    /// there (it reaches an overlay or the end, or is invalid) is decoded
    /// alone, as decode_one would. A valid instruction's decoding depends
    /// on its own bytes only, so both give the same.
    pub fn each_insn<R>(&self, from: u64, mut f: impl FnMut(&Instruction, bool) -> ControlFlow<R>) -> Option<R> {
        let mut ip = from;
        while ip < self.end() {
            let run_end = self.clean_run_end(ip);
            if let (Some(off), Some(len)) = (ip.checked_sub(self.start), run_end.checked_sub(ip)) {
                let run = self.live.get(off as usize..(off + len) as usize).unwrap_or(&[]);
                if let Ok(mut d) = Decoder::try_with_ip(64, run, ip, DecoderOptions::NONE) {
                    while d.can_decode() {
                        let ins = d.decode();
                        if ins.is_invalid() || ins.len() == 0 {
                            break;
                        }
                        if let ControlFlow::Break(r) = f(&ins, false) {
                            return Some(r);
                        }
                        ip = ins.next_ip();
                    }
                }
            }
            if ip >= self.end() {
                break;
            }
            let (ins, ran_out) = self.decode_one(ip);
            if let ControlFlow::Break(r) = f(&ins, ran_out) {
                return Some(r);
            }
            if ins.is_invalid() || ins.len() == 0 {
                break;
            }
            ip = ins.next_ip();
        }
        None
    }

    /// Where the bytes from `ip` (not in an overlay) stop being the live
    /// ones: the first overlay's start after it, or the end; `ip` itself
    /// if an overlay covers it.
    fn clean_run_end(&self, ip: u64) -> u64 {
        let mut end = self.end();
        for o in self.overlays {
            let o_end = o.addr + o.len.min(OVERLAY_BYTES) as u64;
            if o.addr <= ip && ip < o_end {
                return ip;
            }
            if o.addr > ip {
                end = end.min(o.addr);
            }
        }
        end
    }

    /// Decode every instruction from the start to the end, in order.
    pub fn walk(&self, mut f: impl FnMut(&Instruction) -> Result<(), Reject>) -> Result<(), Reject> {
        let r = self.each_insn(self.start, |ins, _| {
            if ins.is_invalid() || ins.len() == 0 {
                return ControlFlow::Break(Err(Reject::Undecodable));
            }
            match f(ins) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => ControlFlow::Break(Err(e)),
            }
        });
        r.unwrap_or(Ok(()))
    }
}

/// Copied into a trampoline, does this instruction do exactly what it did
/// in place? A short allow-list: integer data movement and arithmetic, and
/// legacy-SSE moves between general registers, xmm registers and memory
/// (ut_fast_entry keeps xmm0-15 as the program left them, as a native
/// `syscall` does); no rip-relative operand, no control flow, no segment or
/// stack-pointer games, no MMX or VEX/EVEX encodings.
pub fn relocatable(ins: &Instruction) -> bool {
    if ins.is_ip_rel_memory_operand() {
        return false;
    }
    for i in 0..ins.op_count() {
        let r = ins.op_register(i);
        if matches!(r, Register::ES | Register::CS | Register::SS | Register::DS | Register::FS | Register::GS)
            || r == Register::RIP
            || r == Register::EIP
            || (Register::MM0 as u32..=Register::MM7 as u32).contains(&(r as u32))
        {
            return false;
        }
    }
    integer_op(ins) || sse_move(ins)
}

/// `lea disp32(%rip),%r64` exactly (REX.W, 8d, ModRM mod 00 r/m 101,
/// no other prefix): its register number and displacement. RIP-relative
/// addressing ignores REX.X and REX.B.
pub fn rip_lea(insn: &[u8]) -> Option<(u8, i32)> {
    match *insn {
        [rex, 0x8d, modrm, d0, d1, d2, d3] if rex & 0xf8 == 0x48 && modrm & 0xc7 == 0x05 => {
            Some((((rex & 4) << 1) | ((modrm >> 3) & 7), i32::from_le_bytes([d0, d1, d2, d3])))
        }
        _ => None,
    }
}

/// `movabs $imm64,%r64`: the copy of a [`rip_lea`].
pub const MOVABS_LEN: usize = 10;

/// The bytes of an instruction's copy in a trampoline, for the instruction
/// `insn` at `addr`: itself, or for a [`rip_lea`] the `movabs` of the
/// address it computes.
fn copy_of(insn: &[u8], addr: u64) -> ([u8; 15], usize) {
    let mut out = [0u8; 15];
    if let Some((reg, disp)) = rip_lea(insn) {
        let target = addr.wrapping_add(insn.len() as u64).wrapping_add(disp as i64 as u64);
        out[0] = 0x48 | (reg >> 3);
        out[1] = 0xb8 + (reg & 7);
        out[2..MOVABS_LEN].copy_from_slice(&target.to_le_bytes());
        return (out, MOVABS_LEN);
    }
    let n = insn.len().min(out.len());
    out[..n].copy_from_slice(insn.get(..n).unwrap_or(&[]));
    (out, n)
}

/// Can `ins` (in `code`) go into a range: [`relocatable`], or a
/// [`rip_lea`] (whose copy is rewritten).
fn movable(code: &Code<'_>, ins: &Instruction) -> bool {
    if relocatable(ins) {
        return true;
    }
    let mut buf = [0u8; 7];
    ins.mnemonic() == Mnemonic::Lea
        && ins.is_ip_rel_memory_operand()
        && ins.len() == buf.len()
        && code.bytes(ins.ip(), &mut buf)
        && rip_lea(&buf).is_some()
}

/// R's instructions: (offset, original bytes) for each of `offs` in `orig`.
fn each_insn_of<'a>(orig: &'a [u8], offs: &'a [u8]) -> impl Iterator<Item = (usize, &'a [u8])> + 'a {
    offs.iter().enumerate().map(move |(i, &o)| {
        let end = offs.get(i + 1).map_or(orig.len(), |&e| e as usize);
        (o as usize, orig.get(o as usize..end).unwrap_or(&[]))
    })
}

/// ld.so's `set_robust_list` at thread set-up: `movq %rdi,%xmm0;
/// punpcklqdq %xmm0,%xmm0; movups %xmm0,0x2d8(%rbx); syscall`, where
/// nothing else fits (no pad within reach).
fn sse_move(ins: &Instruction) -> bool {
    // iced names the VEX and EVEX forms apart (Vmovups, ...).
    matches!(
        ins.mnemonic(),
        Mnemonic::Movq
            | Mnemonic::Movd
            | Mnemonic::Movups
            | Mnemonic::Movaps
            | Mnemonic::Movdqu
            | Mnemonic::Movdqa
            | Mnemonic::Punpcklqdq
    )
}

fn integer_op(ins: &Instruction) -> bool {
    matches!(
        ins.mnemonic(),
        Mnemonic::Mov
            | Mnemonic::Movzx
            | Mnemonic::Movsx
            | Mnemonic::Movsxd
            | Mnemonic::Xor
            | Mnemonic::And
            | Mnemonic::Or
            | Mnemonic::Add
            | Mnemonic::Sub
            | Mnemonic::Cmp
            | Mnemonic::Test
            | Mnemonic::Lea
            | Mnemonic::Neg
            | Mnemonic::Not
            | Mnemonic::Shl
            | Mnemonic::Shr
            | Mnemonic::Sar
            | Mnemonic::Nop
    ) && ins.code() != Op::Nopd
}

/// jmp, jcc, call, loop, jrcxz, xbegin to a fixed address.
fn is_direct_branch(ins: &Instruction) -> bool {
    matches!(ins.op0_kind(), OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64)
}

/// `jmp` through a register or memory.
fn is_indirect_jmp(ins: &Instruction) -> bool {
    ins.mnemonic() == Mnemonic::Jmp && matches!(ins.op0_kind(), OpKind::Register | OpKind::Memory)
}

/// Branch targets and jump tables: `Err` if a direct branch targets a byte
/// of [lo, hi) or the function has an indirect `jmp` (not through the GOT).
fn check_branches(code: &Code<'_>, lo: u64, hi: u64) -> Result<(), Reject> {
    code.walk(|ins| {
        if is_direct_branch(ins) {
            let t = ins.near_branch_target();
            if t >= lo && t < hi {
                return Err(Reject::BranchIntoRange);
            }
        }
        if is_indirect_jmp(ins) && !ins.is_ip_rel_memory_operand() {
            return Err(Reject::IndirectJump);
        }
        Ok(())
    })
}

/// A proven range (Form R).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub len: usize,
    /// Offsets of the instructions in R (the first is 0).
    pub offs: [u8; MAX_INSNS],
    pub n: usize,
    /// Offset of the `syscall` in R.
    pub sys_off: usize,
    /// Bytes at offsets 3, 4, 6 that must be invalid opcodes (bits 0, 1, 2).
    pub pun: u8,
    pub orig: [u8; MAX_RANGE],
}

impl Range {
    pub fn end(&self) -> u64 {
        self.start + self.len as u64
    }
    pub fn orig(&self) -> &[u8] {
        self.orig.get(..self.len).unwrap_or(&[])
    }
}

/// Offsets 3, 4, 6 of `jmp *abs32` are slot address bytes 0, 1, 3.
pub const PUN_OFFSETS: [usize; 3] = [3, 4, 6];

/// Form R for the `syscall` at `sys`: the shortest range that needs no
/// punned slot, else the shortest that does.
pub fn plan_range(code: &Code<'_>, sys: u64) -> Result<Range, Reject> {
    // Up to MAX_INSNS instructions before the syscall, and the one after it.
    let mut before = [Instruction::default(); MAX_INSNS];
    let mut nb = 0usize;
    let found = code.each_insn(code.start, |ins, _| {
        if ins.is_invalid() || ins.len() == 0 {
            return ControlFlow::Break(Err(Reject::Undecodable));
        }
        if ins.ip() == sys {
            if ins.code() != Op::Syscall {
                return ControlFlow::Break(Err(Reject::NotSyscall));
            }
            return ControlFlow::Break(Ok(ins.next_ip()));
        }
        if ins.next_ip() > sys {
            return ControlFlow::Break(Err(Reject::NotBoundary));
        }
        before.rotate_left(1);
        if let Some(last) = before.last_mut() {
            *last = *ins;
        }
        nb = (nb + 1).min(MAX_INSNS);
        ControlFlow::Continue(())
    });
    let after = code.decode(found.unwrap_or(Err(Reject::NotBoundary))?);
    let mut best: Option<Range> = None;
    let mut why = Reject::RangeTooShort;
    // a: how many instructions before the syscall; tail: the one after too.
    'grow: for a in 1..=nb.min(MAX_INSNS - 2) {
        let Some(&first) = before.get(MAX_INSNS - a) else { break };
        if !movable(code, &first) {
            why = Reject::NotRelocatable;
            break 'grow;
        }
        for tail in [false, true] {
            let mut insns = [Instruction::default(); MAX_INSNS];
            let mut n = 0;
            for ins in before.iter().skip(MAX_INSNS - a) {
                if let Some(slot) = insns.get_mut(n) {
                    *slot = *ins;
                    n += 1;
                }
            }
            let sys_idx = n;
            n += 1; // the syscall (2 bytes)
            if tail {
                match after {
                    Some(t) if movable(code, &t) && n < MAX_INSNS => {
                        if let Some(slot) = insns.get_mut(n) {
                            *slot = t;
                        }
                        n += 1;
                    }
                    _ => continue,
                }
            }
            let start = first.ip();
            let mut offs = [0u8; MAX_INSNS];
            let mut o = 0usize;
            for (i, off) in offs.iter_mut().enumerate().take(n) {
                *off = o as u8;
                o += if i == sys_idx { 2 } else { insns.get(i).map_or(0, |x| x.len()) };
            }
            let len = o;
            if len < JUMP_LEN {
                why = Reject::RangeTooShort;
                continue;
            }
            if len > MAX_RANGE {
                continue;
            }
            let mut pun = 0u8;
            let mut ok = true;
            for &b in offs.iter().take(n).skip(1) {
                match b {
                    1 | 2 => ok = false,
                    3 => pun |= 1,
                    4 => pun |= 2,
                    6 => pun |= 4,
                    _ => {}
                }
            }
            if !ok {
                why = Reject::FirstTooShort;
                continue;
            }
            let mut orig = [0u8; MAX_RANGE];
            if !code.bytes(start, orig.get_mut(..len).ok_or(Reject::OutsideCode)?) {
                return Err(Reject::OutsideCode);
            }
            let sys_off = offs.get(sys_idx).copied().unwrap_or(0) as usize;
            let r = Range { start, len, offs, n, sys_off, pun, orig };
            if pun == 0 {
                best = Some(r);
                break 'grow;
            }
            if best.is_none() {
                best = Some(r);
            }
        }
    }
    let r = best.ok_or(why)?;
    if r.end() > code.end() {
        return Err(Reject::SyscallOutsideFunction);
    }
    if code.overlaps_patch(r.start, r.len as u64) {
        return Err(Reject::AlreadyPatched);
    }
    check_branches(code, r.start + 1, r.end())?;
    Ok(r)
}

/// A proven pad (Form P): where the `jmp *slot` goes, and how many bytes
/// are written there (the jump, then INT3 to the end of the last NOP it
/// covers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pad {
    pub at: u64,
    pub len: usize,
}

/// Form P for the `syscall` at `sys`.
pub fn plan_pad(code: &Code<'_>, sys: u64) -> Result<Pad, Reject> {
    plan_pad_from(code, sys, false)
}

/// [`plan_pad`] over `code` that begins with the padding before the
/// function (from the end of the function before it, which
/// [`ends_in_transfer`] proved ends in an unconditional transfer, to this
/// function's start): that padding is dead from its first byte, as the
/// padding after a `ret` inside the function is. Reads' `xor %eax,%eax;
/// syscall` in the loader has no room of its own (a 3-byte NOP after its
/// `ret`), but 10 bytes of padding before it.
pub fn plan_pad_after_gap(code: &Code<'_>, sys: u64) -> Result<Pad, Reject> {
    plan_pad_from(code, sys, true)
}

/// Whether `prev` (a whole function of the unwind table, decoded from its
/// start) ends with an unconditional transfer (`jmp`, `ret`, `ud2`, `hlt`)
/// whose last byte is its last, and has no direct branch into [lo, hi)
/// (the padding after it) and no jump table: then no thread runs that
/// padding, whoever jumps where inside these two functions.
pub fn ends_in_transfer(prev: &Code<'_>, lo: u64, hi: u64) -> bool {
    let mut last = None;
    let walked = prev.walk(|ins| {
        last = Some(ins.mnemonic());
        Ok(())
    });
    walked.is_ok()
        && matches!(last, Some(Mnemonic::Jmp | Mnemonic::Ret | Mnemonic::Ud2 | Mnemonic::Hlt))
        && check_branches(prev, lo, hi).is_ok()
}

fn plan_pad_from(code: &Code<'_>, sys: u64, starts_dead: bool) -> Result<Pad, Reject> {
    let (lo, hi) = ((sys + 2).saturating_sub(128), sys + 2 + 127);
    let mut seen_sys = false;
    let mut dead = starts_dead; // after an unconditional transfer, in a NOP run
    let mut run_start = 0u64;
    let mut found: Option<Pad> = None;
    // Boundaries of the current NOP run, to know where a 7-byte pad ends.
    code.walk(|ins| {
        if ins.ip() == sys {
            if ins.code() != Op::Syscall {
                return Err(Reject::NotSyscall);
            }
            seen_sys = true;
        } else if ins.ip() < sys && ins.next_ip() > sys {
            return Err(Reject::NotBoundary);
        }
        let m = ins.mnemonic();
        let filler = m == Mnemonic::Nop || m == Mnemonic::Int3;
        if filler && dead {
            if run_start == 0 {
                run_start = ins.ip();
            }
            // A pad starting at run_start is complete once this NOP covers
            // its last byte.
            if found.is_none()
                && run_start >= lo
                && run_start <= hi
                && ins.next_ip() >= run_start + JUMP_LEN as u64
                && !code.overlaps_patch(run_start, ins.next_ip() - run_start)
            {
                found = Some(Pad { at: run_start, len: (ins.next_ip() - run_start) as usize });
            }
            return Ok(());
        }
        run_start = 0;
        dead = matches!(m, Mnemonic::Jmp | Mnemonic::Ret | Mnemonic::Ud2 | Mnemonic::Hlt);
        Ok(())
    })?;
    if !seen_sys {
        return Err(Reject::NotBoundary);
    }
    let pad = found.ok_or(Reject::NoPad)?;
    // No branch to the syscall's second byte, none into the pad.
    check_branches(code, sys + 1, sys + 2)?;
    check_branches(code, pad.at, pad.at + pad.len as u64)?;
    Ok(pad)
}

/// Is `bytes` (at `start`) whole NOP and INT3 instructions only? The
/// padding between two functions of the unwind table, which no FDE covers:
/// with the function before it ending in an unconditional transfer (which
/// [`plan_pad`] checks), no thread runs it.
pub fn all_filler(start: u64, bytes: &[u8]) -> bool {
    let code = Code { start, live: bytes, overlays: &[] };
    !bytes.is_empty()
        && code
            .walk(|ins| match ins.mnemonic() {
                Mnemonic::Nop | Mnemonic::Int3 => Ok(()),
                _ => Err(Reject::NoPad),
            })
            .is_ok()
}

/// The bytes of `jmp *slot` (ff 24 25 + disp32).
pub fn jump(slot: u64) -> [u8; JUMP_LEN] {
    let d = (slot as u32).to_le_bytes();
    [0xff, 0x24, 0x25, d[0], d[1], d[2], d[3]]
}

/// R's final bytes: the jump, then 0x06 to R's end (0 past it).
pub fn range_final(r: &Range, slot: u64) -> [u8; MAX_RANGE] {
    let mut out = [0u8; MAX_RANGE];
    for b in out.iter_mut().take(r.len) {
        *b = 0x06;
    }
    out[..JUMP_LEN].copy_from_slice(&jump(slot));
    out
}

/// Whether a slot address suits a range: 0x06 at bit 16, and invalid
/// opcodes where R has boundaries at offsets 3, 4, 6.
pub fn slot_fits(slot: u64, pun: u8) -> bool {
    let j = jump(slot);
    j[5] == 0x06 && PUN_OFFSETS.iter().enumerate().all(|(i, &o)| pun & (1 << i) == 0 || is_invalid_opcode(j[o]))
}

/// The pad's bytes: the jump, then INT3 to the pad's end (0 past it).
pub fn pad_bytes(pad: &Pad, slot: u64) -> [u8; OVERLAY_BYTES] {
    let mut out = [0u8; OVERLAY_BYTES];
    for b in out.iter_mut().take(pad.len) {
        *b = 0xcc;
    }
    out[..JUMP_LEN].copy_from_slice(&jump(slot));
    out
}

/// `jmp rel8` from the `syscall` at `sys` to the pad.
pub fn pad_branch(sys: u64, pad: &Pad) -> [u8; 2] {
    [0xeb, (pad.at.wrapping_sub(sys + 2)) as u8]
}

/// A built trampoline: its bytes, and where the copies of R's instructions
/// after the `syscall` start (for resuming a thread caught at one of them).
pub struct Tramp {
    pub code: [u8; TRAMP_MAX],
    pub len: usize,
    pub post_base: usize,
}

/// The trampoline at `at` for `pre` (R's bytes before the syscall), the
/// syscall ending at `sys_end`, `post` (R's bytes after it), returning to
/// `back`; `entry` is ut_fast_entry.
pub fn trampoline(at: u64, entry: u64, pre: &[u8], sys_end: u64, post: &[u8], back: u64) -> Option<Tramp> {
    let mut code = [0u8; TRAMP_MAX];
    let mut n = 0usize;
    let mut put = |bytes: &[u8], n: &mut usize| -> Option<()> {
        code.get_mut(*n..*n + bytes.len())?.copy_from_slice(bytes);
        *n += bytes.len();
        Some(())
    };
    put(pre, &mut n)?;
    // movabs $Tret,%r11 (10) ; movabs $entry,%rcx (10) ; jmp *%rcx (2) ; syscall (2)
    let tret = at + (n + TRAMP_RET_OFF) as u64;
    put(&[0x49, 0xbb], &mut n)?;
    put(&tret.to_le_bytes(), &mut n)?;
    put(&[0x48, 0xb9], &mut n)?;
    put(&entry.to_le_bytes(), &mut n)?;
    put(&[0xff, 0xe1, 0x0f, 0x05], &mut n)?;
    put(&[0x48, 0xb9], &mut n)?;
    put(&sys_end.to_le_bytes(), &mut n)?;
    let post_base = n;
    put(post, &mut n)?;
    put(&[0xff, 0x25, 0, 0, 0, 0], &mut n)?;
    put(&back.to_le_bytes(), &mut n)?;
    Some(Tramp { code, len: n, post_base })
}

/// Form R's trampoline at `at`: R at `start` with original bytes `orig`,
/// its instructions at `offs`, the `syscall` at `sys_off`; each other
/// instruction copied ([`copy_of`]: a rip-relative `lea` as `movabs`),
/// returning to `back` (R's end).
pub fn range_trampoline(
    at: u64,
    entry: u64,
    start: u64,
    orig: &[u8],
    offs: &[u8],
    sys_off: usize,
    back: u64,
) -> Option<Tramp> {
    let (mut pre, mut post) = ([0u8; TRAMP_MAX], [0u8; TRAMP_MAX]);
    let (mut npre, mut npost) = (0usize, 0usize);
    for (o, insn) in each_insn_of(orig, offs) {
        if o == sys_off {
            continue;
        }
        let (bytes, n) = copy_of(insn, start + o as u64);
        let (buf, len) = if o < sys_off { (&mut pre, &mut npre) } else { (&mut post, &mut npost) };
        buf.get_mut(*len..*len + n)?.copy_from_slice(bytes.get(..n)?);
        *len += n;
    }
    let sys_end = start + sys_off as u64 + 2;
    trampoline(at, entry, pre.get(..npre)?, sys_end, post.get(..npost)?, back)
}

/// Where a thread that faulted at offset `o` of R resumes in its
/// trampoline (built by [`range_trampoline`] from `orig`): None for the
/// `syscall` itself (the handler runs it) and for a non-boundary.
pub fn resume_offset(orig: &[u8], r_offs: &[u8], sys_off: usize, post_base: usize, o: usize) -> Option<usize> {
    if !r_offs.contains(&(o as u8)) || o == sys_off {
        return None;
    }
    // The copies of the instructions before `o` on its side of the syscall.
    let (mut at, from) = if o < sys_off { (0, 0) } else { (post_base, sys_off + 2) };
    for (off, insn) in each_insn_of(orig, r_offs) {
        if off >= from && off < o && off != sys_off {
            at += copy_of(insn, 0).1;
        }
    }
    Some(at)
}

/// Where Tret lies in a trampoline whose post copies start at
/// `post_base` (after `movabs $<after syscall>,%rcx`).
pub fn tret_offset(post_base: usize) -> usize {
    post_base.saturating_sub(MOVABS_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x40_1000;

    fn code(bytes: &[u8]) -> Code<'_> {
        Code { start: BASE, live: bytes, overlays: &[] }
    }

    // mov $0xca,%eax; xor $0x81,%sil; syscall; ret  (glibc futex)
    const FUTEX: [u8; 14] = [0xb8, 0xca, 0, 0, 0, 0x40, 0x80, 0xf6, 0x81, 0x0f, 0x05, 0xc3, 0x90, 0x90];

    #[test]
    fn futex_range() {
        let r = plan_range(&code(&FUTEX), BASE + 9).unwrap();
        assert_eq!((r.start, r.len, r.n, r.sys_off, r.pun), (BASE, 11, 3, 9, 0));
        assert_eq!(&r.offs[..3], &[0, 5, 9]);
        assert_eq!(r.orig(), &FUTEX[..11]);
        // Bytes out: the jump through a slot at 0x7f060010, then 0x06.
        let out = range_final(&r, 0x7f06_0010);
        assert_eq!(&out[..11], &[0xff, 0x24, 0x25, 0x10, 0x00, 0x06, 0x7f, 0x06, 0x06, 0x06, 0x06]);
        // Every boundary but the first is an invalid opcode.
        for &o in &r.offs[1..r.n] {
            assert!(is_invalid_opcode(out[o as usize]), "offset {o}");
        }
        assert!(slot_fits(0x7f06_0010, r.pun));
    }

    #[test]
    fn syscall3_range() {
        // syscall(3)'s end: mov 0x8(%rsp),%r9 (5 bytes); syscall; cmp; jae; ret
        let bytes = [
            0x48, 0x89, 0xf8, // mov %rdi,%rax
            0x4c, 0x8b, 0x4c, 0x24, 0x08, // mov 0x8(%rsp),%r9
            0x0f, 0x05, // syscall
            0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff, // cmp $-4095,%rax
            0x73, 0x01, // jae +1
            0xc3, // ret
            0xcc,
        ];
        let r = plan_range(&code(&bytes), BASE + 8).unwrap();
        // The 5-byte mov + syscall is the smallest range without a pun.
        assert_eq!((r.start, r.len, r.sys_off, r.pun), (BASE + 3, 7, 5, 0));
    }

    #[test]
    fn loader_set_robust_list_range() {
        // ld.so (glibc 2.36): mov $0x111,%eax; movq %rdi,%xmm0;
        // punpcklqdq %xmm0,%xmm0; movups %xmm0,0x2d8(%rbx); syscall;
        // xor %edx,%edx; lea 0xc(%rsp),%rsi
        let bytes = [
            0xb8, 0x11, 0x01, 0, 0, 0x66, 0x48, 0x0f, 0x6e, 0xc7, 0x66, 0x0f, 0x6c, 0xc0, 0x0f, 0x11, 0x83, 0xd8, 0x02,
            0, 0, 0x0f, 0x05, 0x31, 0xd2, 0x48, 0x8d, 0x74, 0x24, 0x0c, 0xc3,
        ];
        let r = plan_range(&code(&bytes), BASE + 21).unwrap();
        // The movups (7 bytes) and the syscall.
        assert_eq!((r.start, r.len, r.sys_off, r.pun), (BASE + 14, 9, 7, 0));
        // The MMX form of movq (0f 6e with an mm register) stays refused.
        let mmx = [0x48, 0x0f, 0x6e, 0xc7, 0x0f, 0x7f, 0x03, 0x0f, 0x05, 0xc3]; // movq %rdi,%mm0; movq %mm0,(%rbx)
        assert_eq!(plan_range(&code(&mmx), BASE + 7), Err(Reject::NotRelocatable));
        // So does a VEX-encoded move (vmovups %xmm0,(%rbx)).
        let vex = [0xc5, 0xf8, 0x11, 0x03, 0x90, 0x90, 0x90, 0x0f, 0x05, 0xc3];
        assert_ne!(plan_range(&code(&vex), BASE + 7).map(|r| r.start), Ok(BASE));
    }

    #[test]
    fn go_syscall6_needs_punned_slot() {
        // mov %rdi,%rdx; mov %rcx,%rsi; mov %rbx,%rdi; syscall; cmp $-4095,%rax
        let bytes = [
            0x48, 0x89, 0xfa, 0x48, 0x89, 0xce, 0x48, 0x89, 0xdf, 0x0f, 0x05, 0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff, 0xc3,
        ];
        let r = plan_range(&code(&bytes), BASE + 9).unwrap();
        // mov %rbx,%rdi (3) + syscall + cmp (6): boundaries 3 and 5.
        assert_eq!((r.start, r.len, r.sys_off), (BASE + 6, 11, 3));
        assert_eq!(r.pun, 1);
        assert!(!slot_fits(0x7f06_0010, r.pun));
        assert!(slot_fits(0x7f06_0006, r.pun));
    }

    #[test]
    fn trampoline_layout() {
        let r = plan_range(&code(&FUTEX), BASE + 9).unwrap();
        let t = trampoline(0x1000, 0xdead_beef, &r.orig()[..9], BASE + 11, &[], BASE + 11).unwrap();
        let c = &t.code[..t.len];
        assert_eq!(&c[..9], &FUTEX[..9]);
        assert_eq!(&c[9..11], &[0x49, 0xbb]);
        assert_eq!(u64::from_le_bytes(c[11..19].try_into().unwrap()), 0x1000 + 9 + 24);
        assert_eq!(&c[19..21], &[0x48, 0xb9]);
        assert_eq!(u64::from_le_bytes(c[21..29].try_into().unwrap()), 0xdead_beef);
        assert_eq!(&c[29..33], &[0xff, 0xe1, 0x0f, 0x05]);
        assert_eq!(&c[33..35], &[0x48, 0xb9]);
        assert_eq!(u64::from_le_bytes(c[35..43].try_into().unwrap()), BASE + 11);
        assert_eq!(t.post_base, 43);
        assert_eq!(&c[43..49], &[0xff, 0x25, 0, 0, 0, 0]);
        assert_eq!(u64::from_le_bytes(c[49..57].try_into().unwrap()), BASE + 11);
        assert_eq!(t.len, 57);
        assert_eq!(resume_offset(r.orig(), &r.offs[..r.n], r.sys_off, t.post_base, 5), Some(5));
        assert_eq!(resume_offset(r.orig(), &r.offs[..r.n], r.sys_off, t.post_base, 9), None);
        assert_eq!(resume_offset(r.orig(), &r.offs[..r.n], r.sys_off, t.post_base, 6), None);
    }

    // pthread_create's rt_sigprocmask: mov $0xe,%eax; lea 0x1178dd(%rip),%rsi;
    // syscall; mov 0x28(%r12),%rax.
    const SIGMASK: [u8; 19] = [
        0xb8, 0x0e, 0, 0, 0, // mov $0xe,%eax
        0x48, 0x8d, 0x35, 0xdd, 0x78, 0x11, 0x00, // lea 0x1178dd(%rip),%rsi
        0x0f, 0x05, // syscall
        0x49, 0x8b, 0x44, 0x24, 0x28, // mov 0x28(%r12),%rax
    ];

    #[test]
    fn rip_relative_lea_range() {
        let r = plan_range(&code(&SIGMASK), BASE + 12).unwrap();
        // The lea and the syscall: 9 bytes, boundaries at 0 and 7.
        assert_eq!((r.start, r.len, r.n, r.sys_off, r.pun), (BASE + 5, 9, 2, 7, 0));
        assert_eq!(&r.offs[..2], &[0, 7]);
        let out = range_final(&r, 0x7f06_0010);
        assert_eq!(&out[..9], &[0xff, 0x24, 0x25, 0x10, 0x00, 0x06, 0x7f, 0x06, 0x06]);
        // Bytes out in the trampoline: movabs $<the lea's address>,%rsi.
        let t = range_trampoline(0x1000, 0xdead_beef, r.start, r.orig(), &r.offs[..r.n], r.sys_off, r.end()).unwrap();
        let c = &t.code[..t.len];
        assert_eq!(&c[..2], &[0x48, 0xbe]);
        assert_eq!(u64::from_le_bytes(c[2..10].try_into().unwrap()), BASE + 12 + 0x1178dd);
        // Tret after the 10-byte copy; back to R's end.
        assert_eq!(&c[10..12], &[0x49, 0xbb]);
        assert_eq!(u64::from_le_bytes(c[12..20].try_into().unwrap()), 0x1000 + 10 + TRAMP_RET_OFF as u64);
        assert_eq!(tret_offset(t.post_base), 10 + TRAMP_RET_OFF);
        assert_eq!(u64::from_le_bytes(c[36..44].try_into().unwrap()), BASE + 14);
        assert_eq!(u64::from_le_bytes(c[t.len - 8..].try_into().unwrap()), BASE + 14);
        // A thread caught at the lea resumes at its copy; at the syscall: the handler.
        assert_eq!(resume_offset(r.orig(), &r.offs[..r.n], r.sys_off, t.post_base, 0), Some(0));
        assert_eq!(resume_offset(r.orig(), &r.offs[..r.n], r.sys_off, t.post_base, 7), None);
        // r8-r15 need REX.B; the displacement is signed.
        assert_eq!(rip_lea(&[0x4c, 0x8d, 0x05, 0xf0, 0xff, 0xff, 0xff]), Some((8, -16)));
        let (copy, n) = copy_of(&[0x4c, 0x8d, 0x05, 0xf0, 0xff, 0xff, 0xff], 0x7f00_0000_1000);
        assert_eq!(&copy[..2], &[0x49, 0xb8]);
        assert_eq!(u64::from_le_bytes(copy[2..n].try_into().unwrap()), 0x7f00_0000_1000 + 7 - 16);
    }

    #[test]
    fn copies_after_a_rip_lea_resume_at_their_copy() {
        // mov %rdi,%rax; lea 0x10(%rip),%rdx; mov %rsi,%r10; syscall; lea -8(%rip),%rcx; mov %rax,%rdi
        let bytes = [
            0x48, 0x89, 0xf8, // mov %rdi,%rax (0)
            0x48, 0x8d, 0x15, 0x10, 0, 0, 0, // lea 0x10(%rip),%rdx (3)
            0x49, 0x89, 0xf2, // mov %rsi,%r10 (10)
            0x0f, 0x05, // syscall (13)
            0x48, 0x8d, 0x0d, 0xf8, 0xff, 0xff, 0xff, // lea -8(%rip),%rcx (15)
            0x48, 0x89, 0xc7, // mov %rax,%rdi (22)
            0xc3,
        ];
        let orig = &bytes[..25];
        let offs = [0u8, 3, 10, 13, 15, 22];
        let t = range_trampoline(0x1000, 0xdead_beef, BASE, orig, &offs, 13, BASE + 25).unwrap();
        let c = &t.code[..t.len];
        assert_eq!(&c[..3], &bytes[..3]);
        assert_eq!(&c[3..5], &[0x48, 0xba]); // movabs $..,%rdx
        assert_eq!(u64::from_le_bytes(c[5..13].try_into().unwrap()), BASE + 10 + 0x10);
        assert_eq!(&c[13..16], &bytes[10..13]);
        let p = t.post_base;
        assert_eq!(&c[p..p + 2], &[0x48, 0xb9]); // movabs $..,%rcx
        assert_eq!(u64::from_le_bytes(c[p + 2..p + 10].try_into().unwrap()), BASE + 22 - 8);
        assert_eq!(&c[p + 10..p + 13], &bytes[22..25]);
        let at = |o| resume_offset(orig, &offs, 13, p, o);
        assert_eq!(
            [at(0), at(3), at(10), at(13), at(15), at(22)],
            [Some(0), Some(3), Some(13), None, Some(p), Some(p + 10)]
        );
        assert_eq!(at(4), None);
    }

    #[test]
    fn rip_relative_refusals() {
        // lea into a 32-bit register (no REX.W), and rip-relative loads.
        let lea32 = [0x8d, 0x35, 0x10, 0, 0, 0, 0x0f, 0x05, 0xc3];
        assert_eq!(plan_range(&code(&lea32), BASE + 6), Err(Reject::NotRelocatable));
        let load = [0x48, 0x8b, 0x35, 0x10, 0, 0, 0, 0x0f, 0x05, 0xc3]; // mov 0x10(%rip),%rsi
        assert_eq!(plan_range(&code(&load), BASE + 7), Err(Reject::NotRelocatable));
        // A branch into the range (to the syscall) still refuses it.
        let mut b = SIGMASK.to_vec();
        b.extend_from_slice(&[0xeb, 0xf7]); // jmp to the syscall, BASE+12 (from BASE+21)
        assert_eq!(plan_range(&code(&b), BASE + 12), Err(Reject::BranchIntoRange));
        assert_eq!(rip_lea(&[0x48, 0x8d, 0x34, 0x25, 0, 0, 0]), None); // lea 0x0,%rsi (SIB)
        assert_eq!(rip_lea(&[0x48, 0x8d, 0x75, 0x10, 0, 0, 0]), None); // lea 0x10(%rbp),%rsi
    }

    #[test]
    fn range_refusals() {
        // A branch into the range (to the xor).
        let mut b = FUTEX.to_vec();
        b.extend_from_slice(&[0xeb, 0xf1]); // jmp to BASE+5 (from BASE+16)
        assert_eq!(plan_range(&code(&b), BASE + 9), Err(Reject::BranchIntoRange));
        // A branch to the first byte is fine.
        let mut b = FUTEX.to_vec();
        b.extend_from_slice(&[0xeb, 0xec]); // jmp to BASE (from BASE+16)
        assert!(plan_range(&code(&b), BASE + 9).is_ok());
        // An indirect jump (jump table) anywhere in the function.
        let mut b = FUTEX.to_vec();
        b.extend_from_slice(&[0xff, 0xe0]); // jmp *%rax
        assert_eq!(plan_range(&code(&b), BASE + 9), Err(Reject::IndirectJump));
        // Through the GOT (a tail call) is not a jump table.
        let mut b = FUTEX.to_vec();
        b.extend_from_slice(&[0xff, 0x25, 0, 0, 0, 0]);
        assert!(plan_range(&code(&b), BASE + 9).is_ok());
        // The range crossing the function's end: the instruction after the
        // syscall is needed (mov %rbx,%rdi is 3 bytes) but lies outside.
        let short = [0x48, 0x89, 0xdf, 0x0f, 0x05];
        assert_eq!(plan_range(&code(&short), BASE + 3), Err(Reject::RangeTooShort));
        // rip-relative instruction before the syscall.
        let rip = [0x8b, 0x05, 0x10, 0, 0, 0, 0x0f, 0x05, 0xc3]; // mov 0x10(%rip),%eax
        assert_eq!(plan_range(&code(&rip), BASE + 6), Err(Reject::NotRelocatable));
        // Too-short first instruction: xor %eax,%eax (2 bytes) puts a
        // boundary at offset 2 (0x25, valid); nothing before it to take.
        // xor %eax,%eax; mov %r10,%rdx; syscall: 7 bytes, boundary at 2.
        let two = [0x31, 0xc0, 0x4c, 0x89, 0xd2, 0x0f, 0x05, 0xc3];
        assert_eq!(plan_range(&code(&two), BASE + 5), Err(Reject::FirstTooShort));
        // read: xor %eax,%eax; syscall and nothing else to take.
        let read = [0x31, 0xc0, 0x0f, 0x05, 0xc3];
        assert_eq!(plan_range(&code(&read), BASE + 2), Err(Reject::RangeTooShort));
        // Not at an instruction boundary / not a syscall.
        assert_eq!(plan_range(&code(&FUTEX), BASE + 10), Err(Reject::NotBoundary));
        assert_eq!(plan_range(&code(&FUTEX), BASE + 5), Err(Reject::NotSyscall));
        // A call before the syscall is not relocated.
        let call = [0xe8, 0, 0, 0, 0, 0x0f, 0x05, 0xc3];
        assert_eq!(plan_range(&code(&call), BASE + 5), Err(Reject::NotRelocatable));
    }

    #[test]
    fn range_sees_original_bytes() {
        // A patched futex range (0x06 filler) in the same function as a
        // second site: decoding uses the originals.
        let mut live = FUTEX.to_vec();
        live.extend_from_slice(&[0xb8, 0xca, 0, 0, 0, 0x40, 0x80, 0xf6, 0x81, 0x0f, 0x05, 0xc3]);
        let fin = range_final(&plan_range(&code(&live), BASE + 9).unwrap(), 0x7f06_0010);
        let orig = live.clone();
        live[..11].copy_from_slice(&fin[..11]);
        let mut ov = Overlay::EMPTY;
        ov.addr = BASE;
        ov.len = 11;
        ov.bytes[..11].copy_from_slice(&orig[..11]);
        let plain = Code { start: BASE, live: &live, overlays: &[] };
        assert_eq!(plan_range(&plain, BASE + 23), Err(Reject::Undecodable));
        let ovs = [ov];
        let seen = Code { start: BASE, live: &live, overlays: &ovs };
        assert_eq!(plan_range(&seen, BASE + 23).map(|r| r.start), Ok(BASE + 14));
        // The patched range itself is not planned again.
        assert_eq!(plan_range(&seen, BASE + 9), Err(Reject::AlreadyPatched));
    }

    // glibc read: cmpb $0,x(%rip); je; xor %eax,%eax; syscall; cmp; ja; ret; cs nopw (10); more code
    const READ: [u8; 36] = [
        0x80, 0x3d, 0x31, 0x33, 0x0e, 0x00, 0x00, // cmpb $0,..(%rip)
        0x74, 0x17, // je +0x17
        0x31, 0xc0, // xor %eax,%eax
        0x0f, 0x05, // syscall (offset 11)
        0x48, 0x3d, 0x00, 0xf0, 0xff, 0xff, // cmp
        0x77, 0x0e, // ja (to offset 35)
        0xc3, // ret
        0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00, // cs nopw (offset 22)
        0x48, 0x83, 0xec, 0x28, // sub $0x28,%rsp (offset 32): je's target
    ];

    #[test]
    fn read_pad() {
        let c = Code { start: BASE, live: &READ[..], overlays: &[] };
        let p = plan_pad(&c, BASE + 11).unwrap();
        assert_eq!(p, Pad { at: BASE + 22, len: 10 });
        assert_eq!(pad_branch(BASE + 11, &p), [0xeb, 0x09]);
        let bytes = pad_bytes(&p, 0x7f06_0010);
        assert_eq!(&bytes[..10], &[0xff, 0x24, 0x25, 0x10, 0x00, 0x06, 0x7f, 0xcc, 0xcc, 0xcc]);
        // Form R cannot take read (2-byte first instruction, rip-relative before).
        assert!(plan_range(&c, BASE + 11).is_err());
    }

    #[test]
    fn pad_between_functions() {
        // glibc's __read_nocancel: xor; syscall; cmp; ja; ret; nopl (3 bytes,
        // too short); the error path; ret. Then 12 bytes of padding outside
        // the unwind range, up to the next function.
        let f = [
            0x31, 0xc0, 0x0f, 0x05, 0x48, 0x3d, 0x00, 0xf0, 0xff, 0xff, 0x77, 0x04, 0xc3, 0x0f, 0x1f,
            0x00, // 0..16
            0x48, 0xc7, 0xc0, 0xff, 0xff, 0xff, 0xff, 0xc3, // 16..24: mov $-1,%rax; ret
        ];
        let pad = [0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00, 0x66, 0x90];
        assert_eq!(plan_pad(&code(&f), BASE + 2), Err(Reject::NoPad));
        assert!(all_filler(BASE + 24, &pad));
        assert!(!all_filler(BASE + 24, &[0x90, 0x90, 0xc3]));
        assert!(!all_filler(BASE + 24, &pad[..5])); // a NOP cut short
        let mut with_gap = f.to_vec();
        with_gap.extend_from_slice(&pad);
        assert_eq!(plan_pad(&code(&with_gap), BASE + 2), Ok(Pad { at: BASE + 24, len: 10 }));
        // Not after a transfer: the function falls through into the gap.
        let mut falls = with_gap.clone();
        falls[23] = 0x90;
        assert_eq!(plan_pad(&code(&falls), BASE + 2), Err(Reject::NoPad));
    }

    #[test]
    fn pad_before_the_function() {
        // The loader's read (ld-linux-x86-64.so.2 +0x20b70): xor; syscall;
        // cmp; ja; ret; nopl (3 bytes, too short); the error path. Before
        // it, 10 bytes of padding outside every FDE, after the previous
        // function's `ret`.
        let prev = [0x48, 0x3d, 0x00, 0xf0, 0xff, 0xff, 0x77, 0x01, 0xc3, 0xf7, 0xd8, 0xc3]; // cmp; ja +1; ret; neg; ret
        let gap = [0x66, 0x2e, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00];
        let f = [
            0x31, 0xc0, 0x0f, 0x05, 0x48, 0x3d, 0x00, 0xf0, 0xff, 0xff, 0x77, 0x04, 0xc3, 0x0f, 0x1f, 0x00, 0xf7, 0xd8,
            0xc3,
        ];
        let (g, fs) = (BASE + prev.len() as u64, BASE + (prev.len() + gap.len()) as u64);
        let mut bytes = gap.to_vec();
        bytes.extend_from_slice(&f);
        let with_gap = Code { start: g, live: &bytes, overlays: &[] };
        let alone = Code { start: fs, live: &f, overlays: &[] };
        assert_eq!(plan_pad(&alone, fs + 2), Err(Reject::NoPad));
        let p = plan_pad_after_gap(&with_gap, fs + 2).unwrap();
        assert_eq!(p, Pad { at: g, len: 10 });
        // Back over the gap.
        assert_eq!(pad_branch(fs + 2, &p), [0xeb, (-14i8) as u8]);
        // Only after a previous function that ends in a transfer, with no
        // branch into the gap: plan_pad's own rule (a pad after a `ret`)
        // for the byte before the gap.
        let p_code = Code { start: BASE, live: &prev, overlays: &[] };
        assert!(ends_in_transfer(&p_code, g, fs));
        let mut falls = prev;
        falls[11] = 0x90; // the last `ret` becomes a nop: it falls into the gap
        assert!(!ends_in_transfer(&Code { start: BASE, live: &falls, overlays: &[] }, g, fs));
        let mut into = prev.to_vec();
        into[7] = 0x04; // ja +4: from offset 8 to 12, the gap's first byte
        into.truncate(9);
        into.extend_from_slice(&[0x90, 0x90, 0xc3]);
        assert!(!ends_in_transfer(&Code { start: BASE, live: &into, overlays: &[] }, g, fs));
        let cut = &prev[..11]; // a function whose last instruction runs past its end
        assert!(!ends_in_transfer(&Code { start: BASE, live: cut, overlays: &[] }, g, fs));
        let mut table = prev.to_vec();
        table.splice(9..9, [0xff, 0xe0]); // jmp *%rax: a jump table could reach anything
        assert!(!ends_in_transfer(&Code { start: BASE, live: &table, overlays: &[] }, g, fs));
        // A branch of the function itself into the gap.
        let mut back = bytes.clone();
        back[gap.len() + 11] = 0xf0; // ja -16: into the gap
        assert_eq!(
            plan_pad_after_gap(&Code { start: g, live: &back, overlays: &[] }, fs + 2),
            Err(Reject::BranchIntoRange)
        );
    }

    #[test]
    fn pad_refusals() {
        // Pad not after an unconditional transfer: NOPs that run into code.
        let mut b = READ;
        b[21] = 0x90; // ret -> nop: the pad is reached by falling through
        assert_eq!(plan_pad(&code(&b), BASE + 11), Err(Reject::NoPad));
        // A branch into the pad.
        let mut b = READ.to_vec();
        b[20] = 0x02; // ja -> offset 23 (inside the nopw)
        b.truncate(32);
        assert_eq!(plan_pad(&code(&b), BASE + 11), Err(Reject::BranchIntoRange));
        let mut b = READ.to_vec();
        b[20] = 0x01; // ja -> offset 22 (the pad's start)
        assert_eq!(plan_pad(&code(&b), BASE + 11), Err(Reject::BranchIntoRange));
        // Pad too short: a 5-byte nopl.
        let mut b = READ[..22].to_vec();
        b.extend_from_slice(&[0x0f, 0x1f, 0x44, 0x00, 0x00, 0x48, 0x83, 0xec, 0x28]);
        b[8] = 0x12; // je -> offset 27 (the sub)
        assert_eq!(plan_pad(&code(&b), BASE + 11), Err(Reject::NoPad));
        // Out of rel8 reach: 200 bytes of code between the syscall and the pad.
        let mut b = READ[..13].to_vec();
        b.extend([0x50u8; 200]); // push %rax, 200 times
        b.push(0xc3);
        b.extend_from_slice(&[0xcc; 8]);
        let mut c = b.clone();
        c[8] = 0x00; // je +0
        assert_eq!(plan_pad(&code(&c), BASE + 11), Err(Reject::NoPad));
        // An indirect jump in the function.
        let mut b = READ.to_vec();
        b.extend_from_slice(&[0xff, 0xe0]);
        assert_eq!(plan_pad(&code(&b), BASE + 11), Err(Reject::IndirectJump));
        // A pad already used by another site is not used again.
        let mut ov = Overlay::EMPTY;
        ov.addr = BASE + 22;
        ov.len = 10;
        let ovs = [ov];
        let c = Code { start: BASE, live: &READ[..], overlays: &ovs };
        assert_eq!(plan_pad(&c, BASE + 11), Err(Reject::NoPad));
    }
}
