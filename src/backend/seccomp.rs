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
//! frame says of the owned signals and the alternate stack (signals.rs).
//!
//! TRAP_DATA comes back as `si_errno` and tells our SIGSYS from one raised by a
//! filter the program installs itself (its traps go to its own handler).
//! Because the filter looks at the instruction pointer, the kernel's
//! per-syscall action cache cannot skip it: it runs on every syscall.

use linux_raw_sys::ptrace::{AUDIT_ARCH_X86_64, SECCOMP_FILTER_FLAG_SPEC_ALLOW, SECCOMP_FILTER_FLAG_TSYNC, SECCOMP_RET_ALLOW, SECCOMP_RET_TRAP};

use crate::arch::{GATE_ADDR, GATE_LEN};
use crate::backend::ArmError;
use crate::sigsafe::raw;

/// SECCOMP_RET_DATA of our traps ("ut"), seen by the handler as si_errno.
pub const TRAP_DATA: u32 = 0x7574;

/// One classic BPF instruction (`struct sock_filter`, include/uapi/linux/filter.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// `struct sock_fprog`.
#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

// Opcodes (include/uapi/linux/bpf_common.h).
pub const BPF_LD_W_ABS: u16 = 0x00 | 0x00 | 0x20; // BPF_LD | BPF_W | BPF_ABS
pub const BPF_JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
pub const BPF_JGE_K: u16 = 0x05 | 0x30; // BPF_JMP | BPF_JGE | BPF_K
pub const BPF_JGT_K: u16 = 0x05 | 0x20; // BPF_JMP | BPF_JGT | BPF_K
pub const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K

#[cfg(test)] // the filter never looks at the number; the tests' interpreter does
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
        jump(BPF_JGE_K, lo, 0, 1),               // -> 5 OTHER
        jump(BPF_JGT_K, lo + len as u32, 0, 3), // -> 5 OTHER : 8 ALLOW
        stmt(BPF_LD_W_ABS, OFF_ARCH),
        jump(BPF_JEQ_K, AUDIT_ARCH_X86_64, 0, 1), // -> 7 TRAP : 8 ALLOW
        stmt(BPF_RET_K, SECCOMP_RET_TRAP | TRAP_DATA),
        stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
    ]
}

const PR_SET_NO_NEW_PRIVS: u64 = 38;
const SECCOMP_SET_MODE_FILTER: u64 = 1;

/// Install the filter on every thread of the process.
pub fn arm() -> Result<(), ArmError> {
    // Without CAP_SYS_ADMIN a filter needs no_new_privs, which is permanent and
    // inherited: set-user-ID programs run later do not gain privileges.
    let r = raw::syscall(raw::SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0);
    if r < 0 {
        return Err(ArmError { what: "prctl(PR_SET_NO_NEW_PRIVS)", errno: -r, hint: "" });
    }
    let prog = program(GATE_ADDR, GATE_LEN);
    let fprog = SockFprog { len: prog.len() as u16, filter: prog.as_ptr() };
    // SPEC_ALLOW: without it the kernel forces speculation mitigations on the
    // task, a large slowdown for the whole program.
    let flags = (SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_SPEC_ALLOW) as u64;
    let r = raw::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog as *const SockFprog as u64, 0);
    if r != 0 {
        return Err(ArmError {
            what: "seccomp(SECCOMP_SET_MODE_FILTER, TSYNC | SPEC_ALLOW)",
            errno: if r < 0 { -r } else { 0 },
            hint: if r > 0 {
                "another thread runs under a different seccomp filter (TSYNC failed)"
            } else {
                "the kernel needs CONFIG_SECCOMP_FILTER; try USERTRAP_BACKEND=sud"
            },
        });
    }
    Ok(())
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
    fn jumps_stay_inside_the_program() {
        let p = program(GATE_ADDR, GATE_LEN);
        for (i, ins) in p.iter().enumerate() {
            if ins.code & 0x07 == 0x05 {
                assert!(i + 1 + (ins.jt.max(ins.jf) as usize) < p.len(), "instruction {i}");
            }
        }
    }
}
