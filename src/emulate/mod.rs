//! What cannot simply be re-run through the gate: the syscalls whose effect on
//! the process the library must take into account or reproduce.
//!
//! Owns: the program's signal state as it sees it ([`signals`]), threads,
//! vfork, exit, prctl, seccomp, ptrace and memory calls that touch code
//! ([`process`]), exec through the launcher ([`exec`], [`exec_target`],
//! [`exec_keep`]: kept by descriptor across a change of root), and
//! keeping the image's stderr when the program lets go of descriptor 2
//! ([`stderr_keep`]).
//! Never: decide whether a call is intercepted (that is `trap`), or keep the
//! figures (that is `measure`).

pub mod exec;
pub mod exec_keep;
pub mod exec_target;
pub mod own_filter;
pub mod process;
pub mod signals;
pub mod stderr_keep;

/// What the trap handler does with the saved registers afterwards.
pub enum Outcome {
    /// The syscall returned this value (or -errno): put it in rax.
    Return(i64),
    /// The emulation already arranged the registers (vfork stub): leave them.
    Resume,
    /// Fast path only: its version cannot finish this call (trap::syscalls::
    /// fast says when). Nothing was done and the call is not counted: it
    /// traps again from its site and runs on the slow path.
    Decline,
}
