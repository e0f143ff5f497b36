//! The program lets go of descriptor 2 (close, close_range, dup2, dup3 onto
//! it): the image's stderr is kept first (rt::log::keep_stderr), so the
//! report at exit still reaches the stderr the process started with.
//! coreutils and tar close stderr in an atexit handler, before exit_group.
//! Both paths call [`before_native_call`] ahead of every call they run
//! natively; every other call costs a compare or two.
//! Never: keep it in a vfork child, which shares its parent's memory (the
//! number it got would be recorded for the parent, whose descriptor table
//! is another) and never reports.

use crate::rt::log;
use crate::rt::thread;

/// close_range's flag that only marks the range close-on-exec (the image's
/// own descriptor 2 then lasts until an exec, which starts over).
const CLOSE_RANGE_CLOEXEC: u64 = 4;

#[inline(always)]
pub fn before_native_call(nr: i64, args: &[u64; 6]) {
    // The kernel takes descriptors as unsigned int.
    let lets_go = match nr {
        libc::SYS_close => args[0] as u32 == 2,
        // dup2(2, 2) changes nothing; dup3(2, 2, ..) is EINVAL.
        libc::SYS_dup2 | libc::SYS_dup3 => args[1] as u32 == 2 && args[0] as u32 != 2,
        libc::SYS_close_range => args[0] as u32 <= 2 && args[1] as u32 >= 2 && args[2] & CLOSE_RANGE_CLOEXEC == 0,
        _ => return,
    };
    if lets_go {
        keep();
    }
}

#[cold]
#[inline(never)]
fn keep() {
    // The calling thread's own area (on the fast path the one at the GS
    // base is the parent's in a vfork child).
    if thread::current().is_some_and(|a| a.vfork_child.get()) {
        return;
    }
    log::keep_stderr();
}
