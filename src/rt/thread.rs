//! The per-thread area: state the handlers keep for one thread, found through
//! the GS base (glibc leaves %gs unused on x86-64), never through TLS.
//!
//! An area is one private mapping: a header page with [`ThreadArea`], a guard
//! page, and the thread's signal stack. Areas are recycled through a pool: a
//! thread that exits is put on a "dying" queue and its area is reused only once
//! the kernel says the thread is gone (tgkill(.., 0) -> ESRCH), because the
//! thread still runs on that signal stack while it issues exit(2).
//!
//! Ownership: `owner_tid` is checked on a slow-path entry while a vfork is in
//! flight (`pending_child`), the only time a thread runs on an area it does not
//! own: a vfork child shares its parent's memory and GS base, so it must not
//! write the parent's area; it claims the area the parent set aside for it.
//! Otherwise the area at the GS base is the caller's, found without a
//! syscall (the program's own seccomp filter may forbid gettid). Threads that
//! existed before the library have no GS base and get an area on first use.
//!
//! Never: reach an area through TLS, or hand out `&mut` to one (handlers nest).

use core::cell::{Cell, UnsafeCell};
use core::ptr;
use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::rt::arch;
use crate::rt::figures;
use crate::rt::frame::{Siginfo, StackT};
use crate::rt::raw;
use crate::rt::sigtable::{self, SigTable};

const AREA_MAGIC: u64 = 0x7061_7274_7265_7375; // "usertrap"
const PAGE: usize = 4096;
const HEADER_LEN: usize = (core::mem::size_of::<ThreadArea>() + PAGE - 1) & !(PAGE - 1);

const STATE_IN_USE: u32 = 1;
const STATE_DYING: u32 = 2;
const STATE_FREE: u32 = 3;

/// One thread's state. Handlers nest (a signal can interrupt a handler of the
/// same thread, which then runs another), so every field that changes after
/// allocation is a `Cell` or an atomic, and the area is only ever shared by
/// reference: no handler holds a `&mut` another could invalidate.
#[repr(C)]
pub struct ThreadArea {
    /// Offset 0: the area's own address (for %gs:0 loads).
    pub self_ptr: Cell<u64>,
    /// Offset 8 (arch::AREA_VFORK_RETURN): where the gate's vfork stub returns.
    pub vfork_return: Cell<u64>,
    /// Offset 16 (arch::AREA_POSTPONED_LEN): how many program signals wait
    /// in `postponed` (the gate's program-syscall entry reads it).
    pub postponed_len: Cell<usize>,
    /// Offset 24 (arch::AREA_FAST_TOP): the top of this thread's fast-path
    /// stack, where ut_fast_entry moves from the program's stack. The word
    /// right below it is the outermost fast call's link (the program-side
    /// stack pointer it came from), 0 while no fast call is on it.
    pub fast_top: Cell<u64>,
    /// Offset 32 (arch::AREA_FAST_SIZE): that stack's size in bytes.
    pub fast_size: Cell<u64>,
    /// Offset 40 (arch::AREA_MAGIC): AREA_MAGIC (ut_fast_entry checks it too).
    magic: Cell<u64>,
    /// The thread that owns the area; 0 while set aside for a vfork child.
    pub owner_tid: AtomicI32,
    state: AtomicU32,
    next: Cell<*mut ThreadArea>,
    /// Our signal stack in this mapping.
    pub altstack: Cell<StackT>,
    /// The alternate stack as the program set it (ss_size 0: none).
    pub app_altstack: Cell<StackT>,
    /// Owned signals (SIGSYS, SIGSEGV, SIGILL, SIGBUS) the program believes blocked:
    /// the kernel never blocks them, or a trap would kill the process.
    pub app_blocked_owned: Cell<u64>,
    /// Owned signals that arrived while the program had them blocked (another
    /// thread clears them when the program's SIG_IGN discards them).
    pub deferred: Bits,
    /// The dispositions this thread sees: the process table, or for a child
    /// that shares memory but not handlers (vfork), `private_sigtable`.
    pub sigtable: Cell<*mut SigTable>,
    /// An area set aside for the child of a vfork in progress.
    pub pending_child: Cell<*mut ThreadArea>,
    map_len: Cell<usize>,
    pub private_sigtable: UnsafeCell<SigTable>,
    /// The siginfo of each deferred owned signal (see signals::OWNED_SIGNALS).
    pub deferred_info: [Cell<Siginfo>; 4],
    /// Set in a vfork child's area: it shares its parent's memory, so its
    /// figures are its parent's and it writes no report of its own.
    pub vfork_child: Cell<bool>,
    /// This thread's per-syscall figures (stats.rs), mapped on first use.
    pub stats: Cell<*mut figures::ThreadStats>,
    /// The program's saved state while the slow path runs a syscall for it
    /// (0 otherwise): a SIGSYS from the program's own seccomp filter that hits
    /// the gate's re-issued syscall is shown to the program against it.
    pub program_uc: Cell<u64>,
    /// Program signals that arrived while the library's own code ran on its
    /// signal stack, delivered when that code is done (signals::postpone).
    pub postponed: [Cell<Postponed>; POSTPONED_MAX],
    /// Set when the outermost handler has begun to run the postponed
    /// signals (or to return from a program handler): one arriving later is
    /// queued to the kernel again, not postponed (delivery::deliver).
    pub draining: Cell<bool>,
    /// The temporary mask of the ppoll/pselect6/sigsuspend/... the slow path
    /// is running ((true, mask) only during that syscall): a handler
    /// postponed from it runs with that mask, as it would inside the call.
    pub temp_mask: Cell<(bool, u64)>,
    /// The thread group (process) id of the owner, with `owner_tid`: what
    /// the library would otherwise ask the kernel for (getpid, gettid), which
    /// the program's own seccomp filter may forbid.
    pub tgid: AtomicI32,
    /// The thread entered seccomp strict mode (emulated: process::seccomp).
    pub strict: Cell<bool>,
    /// The thread left the library for good (emulate::process::
    /// stop_intercepting): its calls from patched sites (a vfork child's,
    /// which keeps its parent's) are the kernel's, emulated ones included.
    pub left_library: Cell<bool>,
    /// The thread's name when it exited (per-thread reports only).
    pub exit_comm: Cell<[u8; 16]>,
    /// Under `usertrap trace`: the address of this area's event buffer
    /// (measure::report::trace), mapped on first use; 0 before.
    pub trace: Cell<u64>,
    /// A signal syscall emulated on the fast path, without a signal frame
    /// (emulate::signals::fast): where it is (FAST_NONE, FAST_ARMING,
    /// FAST_FINAL).
    pub fast_window: Cell<u8>,
    /// The kernel's mask before that emulation blocked every signal it can
    /// (written by the kernel, as rt_sigprocmask's old set, so that it is
    /// set exactly when the block took effect); FAST_UNCOMMITTED before.
    pub fast_old: AtomicU64,
    /// The same for its last mask change, which installs the program's new
    /// mask (in FAST_FINAL).
    pub fast_done: AtomicU64,
    /// (frame, stack pointer): a program handler's frame (the address of
    /// its ucontext) that interrupted a fast call on the fast-path stack,
    /// and that call's stack pointer. delivery::enter shows the handler the
    /// call's link instead; its sigreturn puts this back (that frame only:
    /// a signal that interrupts ut_fast_entry right at the switch also sees
    /// the link as its stack pointer, and must keep it).
    pub fast_resume: Cell<(u64, u64)>,
    /// Set while this thread writes a disposition table without blocking
    /// the owned signals (emulate::signals::state::with_table_from, inside
    /// a fast signal call that holds every other signal): an owned signal
    /// arriving then must not read the table (it would wait for itself).
    pub table_writing: Cell<bool>,
    /// (link, mask): a call that installs a temporary mask (ppoll,
    /// pselect6, ...) under way on the fast path (emulate::signals::fast::
    /// with_temp_mask): the link of the fast call on the fast-path stack
    /// and the mask the program passed; (0, 0) otherwise. A handler entered
    /// from inside that very syscall runs with that mask, as natively.
    pub fast_wait: Cell<(u64, u64)>,
    /// Set when an owned signal arrived and was held back for the program
    /// (blocked in its view, the temporary mask of a wait included, or
    /// ignored): natively the kernel would not have interrupted a wait
    /// for it. A wait with a temporary mask (emulate::signals::
    /// with_temp_mask, both paths) clears it before its syscall and, if
    /// that ends with EINTR and no program handler ran meanwhile, waits
    /// again instead of answering EINTR.
    pub wait_held: Cell<bool>,
}

/// No signal syscall is emulated on the fast path (see `fast_window`).
pub const FAST_NONE: u8 = 0;
/// One is under way: signals arriving once `fast_old` is written are held
/// for its end.
pub const FAST_ARMING: u8 = 1;
/// It has decided the program's new state and installs the new mask:
/// signals arriving before `fast_done` is written are held for its end.
pub const FAST_FINAL: u8 = 2;
/// `fast_old` and `fast_done` before the kernel wrote them: a mask with
/// SIGKILL, which no mask the kernel reports holds.
pub const FAST_UNCOMMITTED: u64 = 1 << (libc::SIGKILL - 1);

/// How many program signals may wait for the library's code at once: one of
/// each (an owned one arriving again is held back; others stay blocked by
/// the kernel until their handler has run, unless SA_NODEFER). More are run
/// where they arrived, on the library's stack.
pub const POSTPONED_MAX: usize = 64;

/// A program signal that arrived while the library's code ran.
#[derive(Clone, Copy, Default)]
pub struct Postponed {
    pub sig: i32,
    pub info: Siginfo,
    /// The temporary mask in effect when it arrived (see `temp_mask`).
    pub temp_mask: (bool, u64),
}

/// A set of signal bits used like a `Cell<u64>` by its thread, which another
/// thread may clear (a pending signal discarded by the program's SIG_IGN).
#[repr(transparent)]
pub struct Bits(AtomicU64);

impl Bits {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Release)
    }
    pub fn insert(&self, bits: u64) {
        self.0.fetch_or(bits, Ordering::AcqRel);
    }
    /// Clear `bits`; returns the bits of them that were set.
    pub fn remove(&self, bits: u64) -> u64 {
        self.0.fetch_and(!bits, Ordering::AcqRel) & bits
    }
}

const _: () = {
    assert!(core::mem::offset_of!(ThreadArea, vfork_return) == arch::AREA_VFORK_RETURN);
    assert!(core::mem::offset_of!(ThreadArea, postponed_len) == arch::AREA_POSTPONED_LEN);
    assert!(core::mem::offset_of!(ThreadArea, pending_child) == arch::AREA_PENDING_CHILD);
    assert!(core::mem::offset_of!(ThreadArea, altstack) == arch::AREA_ALTSTACK);
    assert!(core::mem::offset_of!(ThreadArea, fast_top) == arch::AREA_FAST_TOP);
    assert!(core::mem::offset_of!(ThreadArea, fast_size) == arch::AREA_FAST_SIZE);
    assert!(core::mem::offset_of!(ThreadArea, magic) == arch::AREA_MAGIC);
    assert!(AREA_MAGIC == arch::AREA_MAGIC_VALUE);
};

/// Without a thread area we cannot run the program faithfully: say so, and end.
/// Never inlined: the fast path's check (tests/patching.rs) lets it use any
/// register by its name.
#[inline(never)]
#[cold]
pub fn out_of_memory() -> ! {
    crate::rt::log::Line::new().str("out of memory for a thread area; cannot continue").emit();
    raw::exit_group(127)
}

/// Signal stack size in bytes (USERTRAP_SIGSTACK_KIB).
pub static SIGSTACK_SIZE: AtomicUsize = AtomicUsize::new(256 * 1024);
/// Whether the CPU and kernel allow rdgsbase/wrgsbase (AT_HWCAP2 bit 1);
/// a byte in x86_64.s, since ut_fast_entry reads it too.
pub fn set_have_fsgsbase(on: bool) {
    // SAFETY: an atomic byte defined in x86_64.s.
    unsafe { arch::ut_have_fsgsbase.store(on as u8, Ordering::Relaxed) };
}

/// Whether ut_fast_entry moves a patched call onto the thread's own
/// fast-path stack (240 bytes below the program's stack pointer instead of
/// about 1 KiB, more with a hook): it finds the thread's area by rdgsbase.
/// Every thread started under the library has an area (emulate::process);
/// without FSGSBASE, calls stay on the program's stack.
pub fn fast_path_switches_stacks() -> bool {
    have_fsgsbase()
}

fn have_fsgsbase() -> bool {
    // SAFETY: as above.
    unsafe { arch::ut_have_fsgsbase.load(Ordering::Relaxed) != 0 }
}

fn gs_base() -> u64 {
    if have_fsgsbase() {
        // SAFETY: FSGSBASE is enabled (checked at start-up), so rdgsbase is valid.
        unsafe { arch::ut_rdgsbase() }
    } else {
        raw::arch_get_gs()
    }
}

fn set_gs_base(v: u64) {
    if have_fsgsbase() {
        // SAFETY: as gs_base; glibc does not use %gs on x86-64.
        unsafe { arch::ut_wrgsbase(v) }
    } else {
        let _ = raw::arch_set_gs(v);
    }
}

/// Free and dying areas. Taken only with every signal blocked, so a handler
/// can never interrupt its own thread while it holds the lock.
struct Pool {
    free: *mut ThreadArea,
    dying_head: *mut ThreadArea,
    dying_tail: *mut ThreadArea,
}

// SAFETY: the raw pointers are only touched under the pool's lock.
unsafe impl Send for Pool {}

static POOL: spin::Mutex<Pool> =
    spin::Mutex::new(Pool { free: ptr::null_mut(), dying_head: ptr::null_mut(), dying_tail: ptr::null_mut() });

/// Run `f` with every signal blocked (the kernel keeps SIGKILL/SIGSTOP).
pub fn with_signals_blocked<R>(f: impl FnOnce() -> R) -> R {
    let old = raw::sigprocmask(libc::SIG_SETMASK, Some(!0u64));
    let r = f();
    raw::sigprocmask(libc::SIG_SETMASK, Some(old));
    r
}

fn take_from_pool() -> *mut ThreadArea {
    with_signals_blocked(|| {
        let mut pool = POOL.lock();
        let a = pool.free;
        if !a.is_null() {
            // SAFETY: areas on the free list are ours and unused.
            pool.free = unsafe { (*a).next.get() };
            return a;
        }
        // The oldest dying thread is the likeliest to be gone.
        let head = pool.dying_head;
        if head.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: areas on the dying list stay mapped; owner_tid is atomic.
        let tid = unsafe { (*head).owner_tid.load(Ordering::Relaxed) };
        if raw::tgkill(raw::getpid(), tid, 0) != Err(raw::ESRCH) {
            return ptr::null_mut();
        }
        // SAFETY: as above; we hold the lock.
        pool.dying_head = unsafe { (*head).next.get() };
        if pool.dying_head.is_null() {
            pool.dying_tail = ptr::null_mut();
        }
        head
    })
}

/// Every area ever mapped (they are never unmapped), for the totals at exit.
const MAX_AREAS: usize = 1 << 16;
#[link_section = ".bss.usertrap_large"]
static ALL_AREAS: [AtomicUsize; MAX_AREAS] = [const { AtomicUsize::new(0) }; MAX_AREAS];
static AREA_COUNT: AtomicUsize = AtomicUsize::new(0);

impl ThreadArea {
    /// Whether a thread runs on this area (not dying or free).
    pub fn in_use(&self) -> bool {
        self.state.load(Ordering::Relaxed) == STATE_IN_USE
    }
}

/// Where the list of areas is, for the live view (measure::report::live):
/// (ALL_AREAS, AREA_COUNT, MAX_AREAS, offset of `stats` in an area).
pub fn areas_location() -> (u64, u64, u64, u64) {
    (
        ALL_AREAS.as_ptr() as u64,
        (&raw const AREA_COUNT) as u64,
        MAX_AREAS as u64,
        core::mem::offset_of!(ThreadArea, stats) as u64,
    )
}

/// Visit every area of the process (live, dying or free).
pub fn for_each_area(mut f: impl FnMut(&ThreadArea)) {
    let n = AREA_COUNT.load(Ordering::Acquire).min(MAX_AREAS);
    for slot in ALL_AREAS.iter().take(n) {
        let p = slot.load(Ordering::Acquire);
        if p != 0 {
            // SAFETY: registered areas stay mapped for the life of the process.
            f(unsafe { &*(p as *const ThreadArea) });
        }
    }
}

/// The calling thread's area on the fast path, from the GS base that
/// ut_fast_entry read (0 without FSGSBASE): no syscall, no check of the
/// owner (a vfork child counts in its parent's area until its first trap).
#[inline(always)]
pub fn fast_area(base: u64) -> Option<&'static ThreadArea> {
    if base == 0 {
        return None;
    }
    // SAFETY: a non-zero GS base is one of our areas: the program cannot set
    // it through arch_prctl, and one set with wrgsbase is caught (and the
    // process ended) on its first slow-path trap.
    let a = unsafe { &*(base as *const ThreadArea) };
    if a.magic.get() == AREA_MAGIC {
        Some(a)
    } else {
        None
    }
}

fn map_new_area() -> *mut ThreadArea {
    let stack = SIGSTACK_SIZE.load(Ordering::Relaxed);
    // Header, guard, signal stack, guard, fast-path stack: an overflow of
    // either stack faults on a guard page instead of writing the other.
    let len = HEADER_LEN + PAGE + stack + PAGE + stack;
    let base = match crate::rt::owned::map(len, libc::PROT_READ | libc::PROT_WRITE) {
        Ok(b) => b,
        Err(_) => return ptr::null_mut(),
    };
    // The guard page between header and stack turns an overflow into a fault.
    // SAFETY: a fresh mapping of ours; nothing uses the guard page.
    let _ = unsafe { raw::guard_pages(base + HEADER_LEN as u64, PAGE) };
    // SAFETY: as above, the guard page between the two stacks.
    let _ = unsafe { raw::guard_pages(base + (HEADER_LEN + PAGE + stack) as u64, PAGE) };
    let a = base as *mut ThreadArea;
    // SAFETY: fresh zeroed mapping, large enough and page aligned; all-zero
    // bytes are a valid ThreadArea (Cells, atomics, null pointers).
    let area = unsafe { &*a };
    area.map_len.set(len);
    let i = AREA_COUNT.fetch_add(1, Ordering::AcqRel);
    if let Some(slot) = ALL_AREAS.get(i) {
        slot.store(a as usize, Ordering::Release);
    }
    // SS_AUTODISARM: the kernel disarms the stack while one of our handlers
    // runs, so a signal that interrupts our own code nests below it on the
    // same stack (and sigreturn re-arms it).
    area.altstack.set(StackT {
        ss_sp: base + (HEADER_LEN + PAGE) as u64,
        ss_flags: SS_AUTODISARM,
        _pad: 0,
        ss_size: stack as u64,
    });
    // The fast path's own stack (ut_fast_entry), apart from the signal
    // stack: with SS_AUTODISARM the kernel starts every frame of ours at
    // that stack's top, which would overwrite a fast call it interrupted.
    area.fast_top.set(base + len as u64);
    area.fast_size.set(stack as u64);
    a
}

/// `SS_AUTODISARM` (include/uapi/linux/signal.h).
pub const SS_AUTODISARM: i32 = 1 << 31;

impl ThreadArea {
    /// (process id, thread id) of the owner, as recorded (no syscall).
    pub fn ids(&self) -> (i32, i32) {
        (self.tgid.load(Ordering::Relaxed), self.owner_tid.load(Ordering::Relaxed))
    }

    /// Whether `sp` lies on this thread's own signal stack: the code it
    /// belongs to is one of the library's handlers.
    pub fn on_own_stack(&self, sp: u64) -> bool {
        let s = self.altstack.get();
        sp > s.ss_sp && sp - s.ss_sp <= s.ss_size
    }

    /// Whether `sp` lies on this thread's fast-path stack (ut_fast_entry's
    /// test: below its top by less than its size).
    pub fn on_fast_stack(&self, sp: u64) -> bool {
        self.fast_top.get().wrapping_sub(sp) < self.fast_size.get()
    }

    /// For `sp` on the fast-path stack while a fast call that moved there
    /// is live: that call's link, its stack pointer on the program's side
    /// (where it saved the program's registers, 240 bytes below the
    /// program's stack pointer at the `syscall`). None elsewhere.
    pub fn fast_link(&self, sp: u64) -> Option<u64> {
        if !self.on_fast_stack(sp) {
            return None;
        }
        // SAFETY: the word below the top of this area's fast-path stack
        // (non-empty, as `sp` is on it), mapped with the area for good.
        let link = unsafe { ((self.fast_top.get() - 8) as *const u64).read_volatile() };
        if link == 0 {
            None
        } else {
            Some(link)
        }
    }

    /// Whether the fast call whose registers ut_fast_entry saved at `saved`
    /// (the pointer it passes to ut_fast_dispatch) is the one that moved
    /// onto this thread's fast-path stack, at its top: the link slot holds
    /// that call's link. Only that call writes it (a call nested in a
    /// handler, or without the switch, leaves it alone).
    pub fn fast_call_switched(&self, saved: u64) -> bool {
        self.fast_call_link(saved).is_some()
    }

    /// The link of the fast call whose registers ut_fast_entry saved at
    /// `saved`, if that call is the one that moved onto this thread's
    /// fast-path stack (see `fast_call_switched`); None otherwise.
    pub fn fast_call_link(&self, saved: u64) -> Option<u64> {
        if self.fast_size.get() == 0 {
            return None;
        }
        let link = saved.wrapping_sub(arch::FAST_LINK_TO_PROGRAM_SP - arch::FAST_SAVED_TO_PROGRAM_SP);
        // SAFETY: the word below the top of this area's fast-path stack
        // (non-empty), mapped with the area for good.
        let slot = unsafe { ((self.fast_top.get() - 8) as *const u64).read_volatile() };
        if slot == link {
            Some(link)
        } else {
            None
        }
    }

    /// Make the top page of the fast-path stack present before this
    /// thread's first fast call: ut_fast_entry reads the link slot below
    /// the top before it writes it, and a first read maps the kernel's zero
    /// page, so that call took two page faults there instead of one. A
    /// compare-exchange of 0 for 0 writes whatever the slot holds (x86's
    /// locked compare-exchange always writes) and changes nothing: a live
    /// fast call's link stays.
    pub fn prefault_fast_stack(&self) {
        if self.fast_size.get() == 0 {
            return;
        }
        // SAFETY: the word below the top of this area's fast-path stack
        // (non-empty), mapped with the area for good, 8-byte aligned; the
        // asm reads and writes it as a plain word, which an atomic access
        // of the same word is compatible with.
        let slot = unsafe { &*((self.fast_top.get() - 8) as *const AtomicU64) };
        let _ = slot.compare_exchange(0, 0, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The program's stack pointer behind `sp`: on the fast-path stack, the
    /// one the fast call came from, as the program would see it natively
    /// (for its alternate stack's SS_ONSTACK); else `sp`.
    pub fn program_sp(&self, sp: u64) -> u64 {
        self.fast_link(sp).map_or(sp, |link| link.wrapping_add(arch::FAST_LINK_TO_PROGRAM_SP))
    }
}

/// An area in a known initial state, not yet owned (owner_tid 0), with the
/// process-wide dispositions; None if memory is exhausted.
pub fn allocate() -> Option<&'static ThreadArea> {
    let mut a = take_from_pool();
    let reused = !a.is_null();
    if a.is_null() {
        a = map_new_area();
    }
    if a.is_null() {
        return None;
    }
    // SAFETY: `a` came from the pool or a fresh mapping; areas are never unmapped.
    let area = unsafe { &*a };
    // Per-thread reports: the figures of the thread that had this area
    // before stay its own (figures::keep_retired), and the new thread
    // starts a table of its own; if they cannot be kept apart, the new
    // thread adds to them and the table counts one more thread.
    let table = area.stats.get();
    if !table.is_null() && figures::per_thread() {
        let old = area.owner_tid.load(Ordering::Relaxed);
        if figures::keep_retired(table, old, area.exit_comm.get()) {
            area.stats.set(ptr::null_mut());
        } else {
            // SAFETY: a table of an area no thread runs on; only its next
            // thread (this caller's) writes it from now on.
            unsafe { (*table).threads.set((*table).threads.get() + 1) };
        }
    }
    area.exit_comm.set([0; 16]);
    area.self_ptr.set(a as u64);
    area.vfork_return.set(0);
    area.magic.set(AREA_MAGIC);
    area.owner_tid.store(0, Ordering::Relaxed);
    area.state.store(STATE_IN_USE, Ordering::Relaxed);
    area.next.set(ptr::null_mut());
    area.app_altstack.set(StackT { ss_sp: 0, ss_flags: libc::SS_DISABLE, _pad: 0, ss_size: 0 });
    area.app_blocked_owned.set(0);
    area.deferred.set(0);
    area.strict.set(false);
    area.left_library.set(false);
    area.sigtable.set(sigtable::process_table());
    area.pending_child.set(ptr::null_mut());
    area.vfork_child.set(false);
    area.postponed_len.set(0);
    area.temp_mask.set((false, 0));
    area.draining.set(false);
    area.fast_window.set(FAST_NONE);
    area.fast_resume.set((0, 0));
    area.table_writing.set(false);
    area.fast_wait.set((0, 0));
    area.wait_held.set(false);
    // No fast call is on its stack (the link slot below its top). A fresh
    // mapping reads zero there already: writing would only fault the top
    // page in (most processes never use the fast-path stack).
    if reused && area.fast_size.get() != 0 {
        // SAFETY: the word below the top of the area's own fast-path stack,
        // mapped with it; no thread runs on the area yet.
        unsafe { ((area.fast_top.get() - 8) as *mut u64).write_volatile(0) };
    }
    Some(area)
}

/// Give an area back (it was never run on, or its thread is gone).
pub fn release(a: *const ThreadArea) {
    if a.is_null() {
        return;
    }
    let a = a as *mut ThreadArea;
    with_signals_blocked(|| {
        let mut pool = POOL.lock();
        // SAFETY: the caller hands over an area nobody runs on.
        unsafe {
            (*a).state.store(STATE_FREE, Ordering::Relaxed);
            (*a).next.set(pool.free);
        }
        pool.free = a;
    });
}

/// An area for a child that shares our memory (CLONE_VM): it inherits the
/// program's view of blocked signals and, unless it shares the handlers
/// (CLONE_SIGHAND), gets its own copy of the dispositions.
pub fn allocate_for_child(parent: &ThreadArea, share_handlers: bool) -> Option<&'static ThreadArea> {
    let child = allocate()?;
    child.app_blocked_owned.set(parent.app_blocked_owned.get());
    if share_handlers {
        child.sigtable.set(parent.sigtable.get());
    } else {
        // SAFETY: the child area is not yet visible to any other thread.
        let private = unsafe { &mut *child.private_sigtable.get() };
        sigtable::copy_table(parent.sigtable.get(), private);
        child.sigtable.set(private);
    }
    Some(child)
}

/// Where an area is mapped (address, length), for the launcher to hand off.
#[cfg_attr(not(feature = "launcher"), allow(dead_code))]
pub fn mapping_of(a: &ThreadArea) -> (u64, u64) {
    (a as *const ThreadArea as u64, a.map_len.get() as u64)
}

/// Make `a` the calling thread's area.
pub fn install(a: &ThreadArea) {
    a.tgid.store(raw::getpid(), Ordering::Relaxed);
    a.owner_tid.store(raw::gettid(), Ordering::Relaxed);
    set_gs_base(a as *const ThreadArea as u64);
}

/// The area the GS base points at, if it is one of ours.
fn area_at_gs() -> Option<&'static ThreadArea> {
    let base = gs_base();
    if base == 0 {
        return None;
    }
    // The program cannot set the GS base through arch_prctl (refused), but
    // it can with wrgsbase: check the magic the fault-tolerant way first.
    let magic = raw::read_user::<u64>(base + core::mem::offset_of!(ThreadArea, magic) as u64);
    if magic != Ok(AREA_MAGIC) {
        foreign_gs_base();
    }
    // SAFETY: a GS base with our magic at its offset is one of our areas
    // (set by `install`), mapped for the life of the process.
    Some(unsafe { &*(base as *const ThreadArea) })
}

/// The program set the GS base itself (wrgsbase). The library finds each
/// thread's state through it and cannot share it: rather than corrupt the
/// program's %gs or its own state, end the process with a clear message.
#[inline(never)]
#[cold]
fn foreign_gs_base() -> ! {
    crate::rt::log::Line::new()
        .str("the program set the GS base itself (wrgsbase), which usertrap needs for its per-thread state; cannot continue")
        .emit();
    raw::exit_group(125)
}

/// The calling thread's own area on the fast path, for what changes its
/// state: `seen` (the area at the GS base, `fast_area`) when no vfork is in
/// flight, else as `current` finds it (a vfork child claims its own).
pub fn fast_current(seen: Option<&'static ThreadArea>) -> Option<&'static ThreadArea> {
    match seen {
        Some(a) if a.pending_child.get().is_null() && a.owner_tid.load(Ordering::Relaxed) != 0 => Some(a),
        _ => current(),
    }
}

/// The calling thread's area, set up on first use. None only if memory is
/// exhausted.
pub fn current() -> Option<&'static ThreadArea> {
    let at_gs = area_at_gs();
    if let Some(a) = at_gs {
        // An owned area with no vfork in flight is the caller's: only a vfork
        // child runs on an area it does not own. No syscall on this path (the
        // program's own seccomp filter may forbid gettid).
        if a.pending_child.get().is_null() && a.owner_tid.load(Ordering::Relaxed) != 0 {
            return Some(a);
        }
    }
    let tid = raw::gettid();
    match at_gs {
        Some(a) if a.owner_tid.load(Ordering::Relaxed) == tid => {
            // Our own area. A vfork we started has finished by the time we run
            // again (the parent sleeps until the child execs or exits), so the
            // area set aside for its child is free again.
            let child = a.pending_child.replace(ptr::null_mut());
            if !child.is_null() {
                release(child);
            }
            Some(a)
        }
        Some(parent) => {
            // Inherited: we are the child of a vfork (it shares the parent's
            // memory): claim the area the parent set aside for us.
            let child = parent.pending_child.get();
            // SAFETY: a pending child area stays allocated until the parent
            // runs again; claiming it is a single atomic exchange.
            let claimed = !child.is_null()
                && unsafe { (*child).owner_tid.compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed) }.is_ok();
            if claimed {
                set_gs_base(child as u64);
                // SAFETY: claimed above.
                let c = unsafe { &*child };
                c.tgid.store(raw::getpid(), Ordering::Relaxed);
                c.vfork_child.set(true);
                return Some(c);
            }
            let a = allocate_for_child(parent, true)?;
            a.app_altstack.set(parent.app_altstack.get());
            install(a);
            Some(a)
        }
        None => {
            // A thread that existed before the library.
            let a = allocate()?;
            install(a);
            Some(a)
        }
    }
}

/// The calling thread's own area, found without touching memory that might
/// not be mapped (the GS base is looked up among the areas we mapped): for
/// code that runs while a fault would kill the process. None without one, or
/// while a vfork is in flight (see `current`).
pub fn current_registered() -> Option<&'static ThreadArea> {
    let base = gs_base();
    if base == 0 {
        return None;
    }
    let n = AREA_COUNT.load(Ordering::Acquire).min(MAX_AREAS);
    if !ALL_AREAS.iter().take(n).any(|s| s.load(Ordering::Acquire) as u64 == base) {
        return None;
    }
    // SAFETY: one of our areas, mapped for the life of the process.
    let a = unsafe { &*(base as *const ThreadArea) };
    if a.pending_child.get().is_null() && a.owner_tid.load(Ordering::Relaxed) != 0 {
        Some(a)
    } else {
        None
    }
}

/// (process id, thread id) of the calling thread, from its area when it has
/// one (no syscall), else from the kernel.
pub fn ids() -> (i32, i32) {
    match area_at_gs() {
        Some(a) if a.pending_child.get().is_null() && a.owner_tid.load(Ordering::Relaxed) != 0 => a.ids(),
        _ => (raw::getpid(), raw::gettid()),
    }
}

/// The area the GS base points at, whoever owns it (a fork child's copy).
pub fn current_unchecked() -> Option<&'static ThreadArea> {
    area_at_gs()
}

/// Threads of the process the library knows of (the main thread, and every
/// CLONE_THREAD child it started); when the last exits, the process ends.
static LIVE_THREADS: AtomicUsize = AtomicUsize::new(1);

/// Threads of the process still running (after `retire`: the others).
pub fn live_threads() -> usize {
    LIVE_THREADS.load(Ordering::Acquire)
}

/// A CLONE_THREAD child is about to start (undone by `thread_not_started`).
pub fn thread_starting() {
    LIVE_THREADS.fetch_add(1, Ordering::Relaxed);
}

pub fn thread_not_started() {
    LIVE_THREADS.fetch_sub(1, Ordering::Relaxed);
}

/// The thread is about to exit(2): queue its area for reuse after it is
/// gone. True if it is the process's last thread.
pub fn retire(a: &ThreadArea) -> bool {
    if figures::per_thread() {
        a.exit_comm.set(raw::prctl_get_name());
    }
    let child = a.pending_child.replace(ptr::null_mut());
    if !child.is_null() {
        release(child);
    }
    let p = a as *const ThreadArea as *mut ThreadArea;
    with_signals_blocked(|| {
        let mut pool = POOL.lock();
        a.state.store(STATE_DYING, Ordering::Relaxed);
        a.next.set(ptr::null_mut());
        if pool.dying_tail.is_null() {
            pool.dying_head = p;
        } else {
            // SAFETY: the tail is a live area on the dying list; we hold the lock.
            unsafe { (*pool.dying_tail).next.set(p) };
        }
        pool.dying_tail = p;
    });
    LIVE_THREADS.fetch_sub(1, Ordering::AcqRel) == 1
}

/// In a child process after fork: other threads are gone, and a lock they held
/// at fork time would stay locked forever.
pub fn after_fork_in_child(a: &ThreadArea) {
    // SAFETY: only this thread exists in the new process.
    unsafe { POOL.force_unlock() };
    a.tgid.store(raw::getpid(), Ordering::Relaxed);
    a.owner_tid.store(raw::gettid(), Ordering::Relaxed);
    // A fork from a vfork child (busybox `timeout`) makes a process with
    // memory of its own: its area is no longer one set aside in a parent's.
    a.vfork_child.set(false);
    LIVE_THREADS.store(1, Ordering::Relaxed);
}

/// A zeroed area on the heap for unit tests (all-zero bytes are a valid
/// `ThreadArea`, as for a fresh mapping): no owner, no table, no stacks.
#[cfg(test)]
pub(crate) fn test_area() -> Box<ThreadArea> {
    // SAFETY: see map_new_area; the box is sized and aligned for the type.
    unsafe { Box::<ThreadArea>::new_zeroed().assume_init() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_insert_and_remove() {
        let b = Bits(AtomicU64::new(0));
        b.insert(0b0110);
        b.insert(0b0011);
        assert_eq!(b.get(), 0b0111);
        // remove says which of the asked bits were set (a pending signal
        // taken once, not twice).
        assert_eq!(b.remove(0b1100), 0b0100);
        assert_eq!(b.get(), 0b0011);
        assert_eq!(b.remove(0b1100), 0);
        b.set(u64::MAX);
        assert_eq!(b.remove(1 << 63), 1 << 63);
        assert_eq!(b.get(), u64::MAX >> 1);
    }

    #[test]
    fn own_stack_bounds() {
        let a = test_area();
        a.altstack.set(StackT { ss_sp: 0x10000, ss_flags: SS_AUTODISARM, _pad: 0, ss_size: 0x4000 });
        // Stacks grow down: the top (sp + size) is on it, the base is not.
        assert!(!a.on_own_stack(0x10000));
        assert!(a.on_own_stack(0x10001));
        assert!(a.on_own_stack(0x14000));
        assert!(!a.on_own_stack(0x14001));
        assert!(!a.on_own_stack(0));
    }
}
