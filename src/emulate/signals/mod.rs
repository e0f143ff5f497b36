//! The program's signal state, virtualised where the library needs the real one.
//!
//! The kernel delivers a trap's SIGSYS by force: if SIGSYS is blocked or
//! ignored at that moment, the process dies. And the library's own handlers for
//! SIGSYS, SIGSEGV, SIGILL and SIGBUS (the *owned* signals) must stay
//! installed: the last three for faults at patched sites and in the
//! library's copies of program memory (a bad pointer, or a page of a shared
//! file mapping past the file's end: SIGBUS), which become EFAULT. So:
//! - dispositions of owned signals live in a table; the program's
//!   `rt_sigaction` reads and writes the table, and faults that are not ours are
//!   passed to the handler recorded there, or end the process as the default
//!   action would;
//! - the kernel's mask never contains an owned signal; what the program
//!   believes blocked is kept per thread and reported back. Every syscall that
//!   installs a mask (`rt_sigprocmask`, the temporary masks of `ppoll`,
//!   `pselect6`, `epoll_pwait(2)`, `rt_sigsuspend`, `io_pgetevents`, a waiting
//!   `io_uring_enter`, and the
//!   `sa_mask` of every handler) has the owned signals removed on the way in;
//! - `rt_sigprocmask` on the slow path changes the saved ucontext rather
//!   than the kernel: our handler's sigreturn restores the mask from it, so
//!   a direct change would be undone (on the fast path, fast.rs changes the
//!   kernel's, atomically as seen by any signal);
//! - the alternate stack the kernel knows is always the library's own; the
//!   program's `sigaltstack` is kept per thread and only reported back, and
//!   its handlers are entered on the stack it chose (delivery.rs).
//!
//! Files, each importing only those listed before it: `state.rs` (the table's
//! writers, held-back signals, default actions), `delivery.rs` (entering the
//! program's handlers), `syscalls.rs` (the program's signal syscalls),
//! `fast.rs` (some of them on the fast path, without a signal frame),
//! `takeover.rs` (start-up, exec, fork).

pub mod delivery;
pub mod fast;
pub mod state;
pub mod syscalls;
pub mod takeover;

pub use crate::rt::sigtable::{bit, SigTable, SIGBUS, SIGILL, SIGSEGV, SIGSYS};
pub use delivery::{deliver_to_program, die_of_filter, entered_from_program};
pub use state::{
    after_fork_in_child, forbid_masks, hold_signals_for_exit, masks_forbidden, our_action, restore_in_user, restorer,
    return_without_sigreturn, take_passed_on,
};
pub use syscalls::{
    io_uring_enter, io_uring_enter_masks, rt_sigaction, rt_sigpending, rt_sigprocmask, rt_sigtimedwait, sigaltstack,
    with_temp_mask,
};
pub use takeover::{
    give_back_to_kernel, is_our_trap, reset_after_clear_sighand, take_over, take_over_altstack, take_over_mask,
    watch_fatal_signals, with_program_signal_state_for_exec,
};
