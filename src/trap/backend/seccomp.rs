//! The seccomp backend: a classic-BPF filter that traps every syscall not
//! issued from the gate.
//!
//! The program, against `struct seccomp_data` (include/uapi/linux/seccomp.h:
//! nr at 0, arch at 4, instruction_pointer at 8, args from 16):
//!
//! ```text
//!  0: ld  ip >> 32                           (the gate first: with patched sites
//!  1: jeq gate >> 32 ? next : OTHER           most syscalls come from it)
//!  2: ld  ip & 0xffffffff
//!  3: jge gate_lo ? next : OTHER             (ip is the address after `syscall`:
//!  4: jgt gate_lo + len ? OTHER : ALLOW       within (gate, gate + len])
//!  5: OTHER: ld arch
//!  6: jeq AUDIT_ARCH_X86_64 ? TRAP : ALLOW   (i386/x32 entry points cannot be re-issued from the gate)
//!  7: TRAP:  ret SECCOMP_RET_TRAP | TRAP_DATA
//!  8: ALLOW: ret SECCOMP_RET_ALLOW
//! ```
//!
//! `rt_sigreturn` traps too unless it comes from the gate: every handler the
//! kernel runs is ours and returns through the gate's restorer, while the
//! program's own handlers return through their restorer to a trapped
//! `rt_sigreturn`, which the library performs after taking back what the
//! frame says of the owned signals and the alternate stack (emulate::signals).
//!
//! TRAP_DATA comes back as `si_errno` and tells our SIGSYS from one raised by a
//! filter the program installs itself (its traps go to its own handler).
//! Because the filter looks at the instruction pointer, the kernel's
//! per-syscall action cache cannot skip it: it runs on every syscall.

use linux_raw_sys::ptrace::{
    AUDIT_ARCH_X86_64, BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_K, BPF_LD, BPF_W,
    SECCOMP_FILTER_FLAG_SPEC_ALLOW, SECCOMP_FILTER_FLAG_TSYNC, SECCOMP_RET_ALLOW, SECCOMP_RET_TRAP,
};

use super::error::ArmError;
use crate::rt::arch::{GATE_ADDR, GATE_LEN};
use crate::rt::raw;

/// SECCOMP_RET_DATA of our traps ("ut"), seen by the handler as si_errno.
pub const TRAP_DATA: u32 = 0x7574;

/// One classic BPF instruction (`struct sock_filter`, include/uapi/linux/filter.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// SAFETY: u16, u8, u8, u32 at offsets 0, 2, 3, 4 (8 bytes, no padding);
// any bytes are a value.
unsafe impl raw::Plain for SockFilter {}

// Opcodes: the classes, sizes, modes and operations of
// include/uapi/linux/bpf_common.h, combined as the kernel's BPF_STMT and
// BPF_JUMP macros do (BPF_LD and BPF_W are 0: the load is the default).
pub const BPF_LD_W_ABS: u16 = (BPF_LD | BPF_W | BPF_ABS) as u16;
pub const BPF_JEQ_K: u16 = (BPF_JMP | BPF_JEQ | BPF_K) as u16;
pub const BPF_JGE_K: u16 = (BPF_JMP | BPF_JGE | BPF_K) as u16;
pub const BPF_JGT_K: u16 = (BPF_JMP | BPF_JGT | BPF_K) as u16;
pub const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_IP_LO: u32 = 8;
const OFF_IP_HI: u32 = 12;

const fn stmt(code: u16, k: u32) -> SockFilter {
    SockFilter { code, jt: 0, jf: 0, k }
}

const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

/// The filter for a gate at [gate, gate + len).
pub fn program(gate: u64, len: u64) -> [SockFilter; 9] {
    let lo = gate as u32;
    let hi = (gate >> 32) as u32;
    // Jump offsets count instructions after the jump itself.
    [
        stmt(BPF_LD_W_ABS, OFF_IP_HI),
        jump(BPF_JEQ_K, hi, 0, 3), // -> 5 OTHER
        stmt(BPF_LD_W_ABS, OFF_IP_LO),
        jump(BPF_JGE_K, lo, 0, 1),              // -> 5 OTHER
        jump(BPF_JGT_K, lo + len as u32, 0, 3), // -> 5 OTHER : 8 ALLOW
        stmt(BPF_LD_W_ABS, OFF_ARCH),
        jump(BPF_JEQ_K, AUDIT_ARCH_X86_64, 0, 1), // -> 7 TRAP : 8 ALLOW
        stmt(BPF_RET_K, SECCOMP_RET_TRAP | TRAP_DATA),
        stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
    ]
}

/// Install the filter on every thread of the process.
pub fn arm() -> Result<(), ArmError> {
    let prog = program(GATE_ADDR, GATE_LEN);
    // SPEC_ALLOW: without it the kernel forces speculation mitigations on the
    // task, a large slowdown for the whole program.
    let flags = (SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_SPEC_ALLOW) as u64;
    let install = || raw::seccomp_set_mode_filter(flags, &prog);
    // no_new_privs is permanent, inherited and visible to the program: set it
    // only when seccomp(2) requires it (EACCES: no CAP_SYS_ADMIN in the
    // caller's user namespace, and the flag not already set).
    let mut r = install();
    if r == Err(libc::EACCES as i64) {
        if let Err(e) = raw::prctl_set_no_new_privs() {
            return Err(ArmError { what: "prctl(PR_SET_NO_NEW_PRIVS)", errno: e, hint: "" });
        }
        r = install();
        if r == Ok(0) {
            crate::rt::log::Line::new()
                .str("the seccomp backend set no_new_privs (seccomp(2) needs it without CAP_SYS_ADMIN): the program and its children see it, and set-user-ID programs they run do not gain privileges")
                .emit();
        }
    }
    if r != Ok(0) {
        return Err(ArmError {
            what: "seccomp(SECCOMP_SET_MODE_FILTER, TSYNC | SPEC_ALLOW)",
            errno: r.err().unwrap_or(0),
            hint: if r.is_ok() {
                "another thread runs under a different seccomp filter (TSYNC failed)"
            } else {
                "the kernel needs CONFIG_SECCOMP_FILTER; try USERTRAP_BACKEND=sud"
            },
        });
    }
    Ok(())
}

/// What a program's classic-BPF seccomp filter returns for a syscall `nr`
/// (x86-64) issued from `ip` with all arguments 0 (see [`evaluate_call`]).
/// Used to learn, when the program installs a filter, which of the library's
/// own syscalls it forbids. An argument-dependent verdict is taken for
/// arguments 0.
pub fn evaluate(len: usize, insn: impl Fn(usize) -> Option<SockFilter>, nr: u32, ip: u64) -> u32 {
    evaluate_call(len, insn, nr, ip, &[0; 6])
}

/// What a program's classic-BPF seccomp filter returns for a syscall `nr`
/// (x86-64) issued from `ip` (the address after its `syscall`) with the
/// registers `args` (whole, as struct seccomp_data holds them), as the
/// kernel's interpreter would run it (net/core/filter.c,
/// seccomp_check_filter); `insn(i)` reads instruction i (None: unreadable,
/// taken as a kill).
pub fn evaluate_call(len: usize, insn: impl Fn(usize) -> Option<SockFilter>, nr: u32, ip: u64, args: &[u64; 6]) -> u32 {
    const KILL: u32 = 0;
    let data = |off: u32| -> Option<u32> {
        match off {
            OFF_NR => Some(nr),
            OFF_ARCH => Some(AUDIT_ARCH_X86_64),
            OFF_IP_LO => Some(ip as u32),
            OFF_IP_HI => Some((ip >> 32) as u32),
            // args[i] at 16 + 8i, little-endian: low word first.
            16..=63 if off.is_multiple_of(4) => {
                let word = ((off - 16) / 4) as usize;
                args.get(word / 2).map(|a| if word.is_multiple_of(2) { *a as u32 } else { (*a >> 32) as u32 })
            }
            _ => None,
        }
    };
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; 16];
    let mut pc = 0usize;
    // Every jump goes forward, so at most `len` steps.
    for _ in 0..=len {
        if pc >= len {
            return KILL;
        }
        let Some(i) = insn(pc) else { return KILL };
        pc += 1;
        let k = i.k;
        let src = if i.code & 0x08 != 0 { x } else { k }; // BPF_X : BPF_K
        match i.code & 0x07 {
            0x00 | 0x01 => {
                // BPF_LD / BPF_LDX (word size only in seccomp)
                let v = match i.code & 0xe0 {
                    0x00 => k, // BPF_IMM
                    0x20 => match data(k) {
                        Some(v) => v,
                        None => return KILL,
                    }, // BPF_ABS
                    0x60 => mem.get(k as usize).copied().unwrap_or(0), // BPF_MEM
                    0x80 => 64, // BPF_LEN
                    _ => return KILL,
                };
                if i.code & 0x07 == 0x00 {
                    a = v;
                } else {
                    x = v;
                }
            }
            0x02 => {
                if let Some(m) = mem.get_mut(k as usize) {
                    *m = a
                }
            } // BPF_ST
            0x03 => {
                if let Some(m) = mem.get_mut(k as usize) {
                    *m = x
                }
            } // BPF_STX
            0x04 => {
                // BPF_ALU
                a = match i.code & 0xf0 {
                    0x00 => a.wrapping_add(src),
                    0x10 => a.wrapping_sub(src),
                    0x20 => a.wrapping_mul(src),
                    0x30 => match a.checked_div(src) {
                        Some(v) => v,
                        None => return KILL,
                    },
                    0x40 => a | src,
                    0x50 => a & src,
                    0x60 => a.checked_shl(src).unwrap_or(0),
                    0x70 => a.checked_shr(src).unwrap_or(0),
                    0x80 => a.wrapping_neg(),
                    0x90 => match a.checked_rem(src) {
                        Some(v) => v,
                        None => return KILL,
                    },
                    0xa0 => a ^ src,
                    _ => return KILL,
                };
            }
            0x05 => {
                // BPF_JMP
                let taken = match i.code & 0xf0 {
                    0x00 => {
                        pc = pc.saturating_add(k as usize); // BPF_JA
                        continue;
                    }
                    0x10 => a == src,
                    0x20 => a > src,
                    0x30 => a >= src,
                    0x40 => a & src != 0,
                    _ => return KILL,
                };
                pc += if taken { i.jt } else { i.jf } as usize;
            }
            0x06 => return if i.code & 0x18 == 0x10 { a } else { k }, // BPF_RET (A or K)
            _ => {
                // BPF_MISC: TAX / TXA
                if i.code & 0xf8 == 0x00 {
                    x = a;
                } else {
                    a = x;
                }
            }
        }
    }
    KILL
}

/// Does a filter verdict let the syscall run? (ALLOW, or LOG which allows.)
pub fn verdict_allows(ret: u32) -> bool {
    let action = ret & linux_raw_sys::ptrace::SECCOMP_RET_ACTION_FULL;
    action == SECCOMP_RET_ALLOW || action == linux_raw_sys::ptrace::SECCOMP_RET_LOG
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic-BPF interpreter for the few opcodes the filter uses, so the
    /// tests check decisions, not just bytes.
    fn run(prog: &[SockFilter], nr: u32, arch: u32, ip: u64) -> u32 {
        let data = |off: u32| match off {
            OFF_NR => nr,
            OFF_ARCH => arch,
            OFF_IP_LO => ip as u32,
            OFF_IP_HI => (ip >> 32) as u32,
            _ => panic!("unexpected load at {off}"),
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                BPF_LD_W_ABS => acc = data(i.k),
                BPF_JEQ_K => pc += if acc == i.k { i.jt } else { i.jf } as usize,
                BPF_JGE_K => pc += if acc >= i.k { i.jt } else { i.jf } as usize,
                BPF_JGT_K => pc += if acc > i.k { i.jt } else { i.jf } as usize,
                BPF_RET_K => return i.k,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    const TRAP: u32 = SECCOMP_RET_TRAP | TRAP_DATA;
    const ALLOW: u32 = SECCOMP_RET_ALLOW;

    #[test]
    fn gate_syscalls_are_allowed() {
        let p = program(GATE_ADDR, GATE_LEN);
        for ip in [GATE_ADDR + 2, GATE_ADDR + 0x22, GATE_ADDR + GATE_LEN] {
            assert_eq!(run(&p, 39, AUDIT_ARCH_X86_64, ip), ALLOW, "ip {ip:#x}");
        }
    }

    #[test]
    fn everything_else_traps() {
        let p = program(GATE_ADDR, GATE_LEN);
        for ip in [0x401000, GATE_ADDR + GATE_LEN + 1, GATE_ADDR - 2, 0x7f12_3456_7000, (GATE_ADDR & 0xffff_ffff) + 2] {
            assert_eq!(run(&p, 39, AUDIT_ARCH_X86_64, ip), TRAP, "ip {ip:#x}");
        }
        assert_eq!(run(&p, 100_000, AUDIT_ARCH_X86_64, 0x401000), TRAP);
    }

    #[test]
    fn foreign_arches_pass() {
        let p = program(GATE_ADDR, GATE_LEN);
        assert_eq!(run(&p, 39, 0x4000_0003 /* AUDIT_ARCH_I386 */, 0x401000), ALLOW);
    }

    #[test]
    fn rt_sigreturn_traps_unless_from_the_gate() {
        let p = program(GATE_ADDR, GATE_LEN);
        assert_eq!(run(&p, 15, AUDIT_ARCH_X86_64, 0x401000), TRAP);
        assert_eq!(run(&p, 15, AUDIT_ARCH_X86_64, GATE_ADDR + 0x22), ALLOW);
    }

    #[test]
    fn evaluate_runs_our_own_filter() {
        let p = program(GATE_ADDR, GATE_LEN);
        let at = |i: usize| p.get(i).copied();
        assert_eq!(evaluate(p.len(), at, 39, GATE_ADDR + 2), ALLOW);
        assert_eq!(evaluate(p.len(), at, 39, 0x401000), TRAP);
        assert_eq!(evaluate(p.len(), at, 15, 0x401000), TRAP);
        assert_eq!(evaluate(p.len(), at, 15, GATE_ADDR + 2), ALLOW);
        assert!(verdict_allows(ALLOW) && !verdict_allows(TRAP));
    }

    #[test]
    fn evaluate_an_allow_list() {
        // ld nr; jeq 110 ? allow : next; ret KILL_PROCESS; ret ALLOW
        let p = [
            stmt(BPF_LD_W_ABS, OFF_NR),
            jump(BPF_JEQ_K, 110, 1, 0),
            stmt(BPF_RET_K, 0x8000_0000),
            stmt(BPF_RET_K, ALLOW),
        ];
        let at = |i: usize| p.get(i).copied();
        assert_eq!(evaluate(p.len(), at, 110, 0), ALLOW);
        assert_eq!(evaluate(p.len(), at, 186, 0), 0x8000_0000);
        assert_eq!(evaluate(p.len(), |_| None, 110, 0), 0);
    }

    #[test]
    fn evaluate_reads_the_arguments() {
        // ld args[1] high word; jeq 7 ? next : allow; ld args[1] low; jeq 9 ? errno : allow
        let p = [
            stmt(BPF_LD_W_ABS, 28),
            jump(BPF_JEQ_K, 7, 0, 3),
            stmt(BPF_LD_W_ABS, 24),
            jump(BPF_JEQ_K, 9, 0, 1),
            stmt(BPF_RET_K, 0x0005_0001),
            stmt(BPF_RET_K, ALLOW),
        ];
        let at = |i: usize| p.get(i).copied();
        assert_eq!(evaluate_call(p.len(), at, 1, 0, &[0, 7 << 32 | 9, 0, 0, 0, 0]), 0x0005_0001);
        assert_eq!(evaluate_call(p.len(), at, 1, 0, &[7 << 32 | 9, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(evaluate(p.len(), at, 1, 0), ALLOW);
    }

    #[test]
    fn jumps_stay_inside_the_program() {
        let p = program(GATE_ADDR, GATE_LEN);
        for (i, ins) in p.iter().enumerate() {
            if ins.code & 0x07 == 0x05 {
                assert!(i + 1 + (ins.jt.max(ins.jf) as usize) < p.len(), "instruction {i}");
            }
        }
    }
}
