//! The live view of `usertrap stat -i SECS`: the command reads the running
//! process's figures itself (process_vm_readv), from the per-thread tables
//! the fast and slow paths fill anyway; the process does nothing for it.
//!
//! Why pull by reading memory: a process runs library code only at its
//! syscalls and signals. Pushing a snapshot at the next syscall after an
//! interval never comes from a process blocked for long (a server in
//! epoll_wait, `sleep`), and building one there would put report code on
//! the fast path. Pulling by a signal the library owns interrupts the
//! program's blocking calls: nanosleep, poll, epoll_wait and friends end
//! with EINTR whenever a handler runs, whatever SA_RESTART says, which the
//! program would see. Reading memory costs the program nothing and needs
//! what a debugger needs (the command is the program's ancestor: same user,
//! or root; Yama's ptrace_scope 1 allows an ancestor). A process that
//! switched user is then missing from the interim tables only; its final
//! report comes as ever.
//!
//! The index (LIVE_INDEX, u64 words; its address is sent in the greeting,
//! `hello ... live ADDR`): what the command needs to find and parse the
//! tables, so that it never assumes the library's layout.

use crate::measure::stats::{SysStats, ThreadStats, I386_BASE, MAX_ERRNO, MAX_NR, PER_THREAD, SLOTS};
use crate::rt::{figures, thread};
use core::sync::atomic::{AtomicU64, Ordering};
use usertrap_core::report::live as idx;

static LIVE_INDEX: [AtomicU64; idx::WORDS] = [const { AtomicU64::new(0) }; idx::WORDS];

/// The index's address, filled in (it holds addresses of this image).
pub(super) fn index_address() -> u64 {
    let (areas, area_count, max_areas, stats_off) = thread::areas_location();
    let (retired, retired_n, retired_stride, retired_max) = figures::retired_location();
    let words: [(usize, u64); idx::WORDS] = [
        (idx::MAGIC, idx::MAGIC_VALUE),
        (idx::AREAS, areas),
        (idx::AREA_COUNT, area_count),
        (idx::MAX_AREAS, max_areas),
        (idx::STATS_OFFSET, stats_off),
        (idx::RETIRED, retired),
        (idx::RETIRED_N, retired_n),
        (idx::RETIRED_STRIDE, retired_stride),
        (idx::RETIRED_MAX, retired_max),
        (idx::SLOTS, SLOTS as u64),
        (idx::USED_OFFSET, core::mem::offset_of!(ThreadStats, used) as u64),
        (idx::BLOCKS_OFFSET, core::mem::offset_of!(ThreadStats, blocks) as u64),
        (idx::BLOCK_SIZE, core::mem::size_of::<SysStats>() as u64),
        (idx::PER_THREAD, PER_THREAD as u64),
        (idx::ERRNOS_OFFSET, core::mem::offset_of!(SysStats, errnos) as u64),
        (idx::MAX_ERRNO, MAX_ERRNO as u64),
        (idx::HIST_OFFSET, core::mem::offset_of!(SysStats, hist) as u64),
        (idx::HIST_LEN, usertrap_core::report::HIST_LEN as u64),
        (idx::MAX_NR, MAX_NR as u64),
        (idx::I386_BASE, I386_BASE as u64),
    ];
    for (i, v) in words {
        if let Some(w) = LIVE_INDEX.get(i) {
            w.store(v, Ordering::Relaxed);
        }
    }
    LIVE_INDEX.as_ptr() as u64
}
