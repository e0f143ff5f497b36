//! The one place every intercepted syscall passes: (number, six arguments) in,
//! result out. Latency measurement and user hooks sit here.

use crate::sigsafe::frame::Ucontext;
use crate::sigsafe::raw;
use crate::sigsafe::signals;
use crate::sigsafe::stats;
use crate::sigsafe::process;
use crate::sigsafe::thread::ThreadArea;

/// What the trap handler does with the saved registers afterwards.
pub enum Outcome {
    /// The syscall returned this value (or -errno): put it in rax.
    Return(i64),
    /// The emulation already arranged the registers (vfork stub): leave them.
    Resume,
}

/// The trapped thread: its area and the saved state of its program.
pub struct Trap<'a> {
    pub area: &'a mut ThreadArea,
    pub uc: &'a mut Ucontext,
}

/// Every intercepted syscall enters here.
pub fn dispatch(t: &mut Trap, nr: i64, args: [u64; 6]) -> Outcome {
    stats::count(nr);
    run(t, nr, args)
}

/// Run one syscall for the program: natively through the gate, or emulated
/// where the library must keep control (signals, processes, its own memory).
fn run(t: &mut Trap, nr: i64, args: [u64; 6]) -> Outcome {
    use Outcome::Return;
    match nr {
        raw::SYS_rt_sigaction => Return(signals::rt_sigaction(t.area, args)),
        raw::SYS_rt_sigprocmask => Return(signals::rt_sigprocmask(t.area, t.uc, args)),
        raw::SYS_sigaltstack => Return(signals::sigaltstack(t.area, t.uc, args)),
        raw::SYS_rt_sigreturn => signals::rt_sigreturn(t.uc),
        // Temporary masks: (argument index of the sigset pointer, via a struct?)
        raw::SYS_rt_sigsuspend => Return(signals::with_temp_mask(nr, args, 0, false)),
        raw::SYS_ppoll => Return(signals::with_temp_mask(nr, args, 3, false)),
        raw::SYS_epoll_pwait | raw::SYS_epoll_pwait2 => Return(signals::with_temp_mask(nr, args, 4, false)),
        raw::SYS_pselect6 | raw::SYS_io_pgetevents => Return(signals::with_temp_mask(nr, args, 5, true)),
        raw::SYS_clone | raw::SYS_clone3 | raw::SYS_fork | raw::SYS_vfork => process::clone(t.area, t.uc, nr, args),
        raw::SYS_execve | raw::SYS_execveat => Return(process::exec(t.area, nr, args)),
        raw::SYS_exit => {
            crate::sigsafe::thread::retire(t.area);
            Return(raw::syscall6(nr, args))
        }
        raw::SYS_exit_group => {
            stats::at_exit();
            Return(raw::syscall6(nr, args))
        }
        raw::SYS_arch_prctl => Return(process::arch_prctl(args)),
        raw::SYS_prctl => Return(process::prctl(args)),
        raw::SYS_munmap | raw::SYS_mprotect | raw::SYS_mremap | raw::SYS_mmap => {
            Return(process::guard_gate(nr, args).unwrap_or_else(|| raw::syscall6(nr, args)))
        }
        _ => Return(raw::syscall6(nr, args)),
    }
}
