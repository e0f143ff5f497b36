//! Turning a trapped `mov $nr,%eax; syscall` site into a jump to the fast
//! path, once per site, under one lock.
//!
//! Called from the slow path after each of our traps. A site is patched only
//! if the syscall does not need the signal frame (see [`needs_slow_path`])
//! and: its bytes are `b8 imm32 0f 05` with imm32 = the syscall that trapped
//! and decoding forward from the start of its function proves the `mov` is a
//! real instruction (site.rs); or else forms.rs proves a Form R range or a
//! Form P pad for it over the whole function (those trampolines take the
//! number from rax; ut_fast_entry sends numbers the fast path may not run,
//! listed in `ut_fast_ok` before the first patch, to the trampoline's own
//! `syscall`). Anything else is recorded once, with the reason, and stays on
//! the slow path.
//!
//! The one exception to "after a trap": the launcher patches the loader's
//! sites of the first form before the loader runs ([`patch_loader`]), and
//! the library takes them over ([`adopt_loader_sites`]).

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use crate::patch::registry::{self, PATCHED, PATCHING, UNPATCHED};
use crate::patch::reject::Reject;
use crate::patch::table::Table;
use crate::patch::write::{self, Mem};
use crate::patch::{forms, locate, os, site};
use crate::rt::arch;
use crate::rt::raw;
use crate::rt::thread;
use crate::trap::syscalls;

pub mod prepatch;
pub mod sitecache;

/// USERTRAP_PATCH (on by default; off when membarrier is missing).
pub static ENABLED: AtomicBool = AtomicBool::new(false);
/// In the launcher before a dynamic program: USERTRAP_PATCH is on, so
/// patch the loader's sites before it runs ([`patch_loader`]).
pub static LOADER_PATCHING: AtomicBool = AtomicBool::new(false);

/// Whether what patching needs is in place: membarrier registered for
/// cross-modifying code, the decoder's tables built. Done at the first
/// patch, not at start-up: it costs about half a millisecond, which a
/// short-lived process (most of an exec-heavy tree) would pay for nothing.
/// Written under the PATCHER lock.
static PREPARED: AtomicU8 = AtomicU8::new(NOT_YET);
const NOT_YET: u8 = 0;
const READY: u8 = 1;
const UNAVAILABLE: u8 = 2;

static PATCHER: spin::Mutex<Table> = spin::Mutex::new(Table::new());
/// More than the decoder's tables take (about 0.3 MiB, in bump chunks).
const DECODER_MEMORY: usize = 1 << 20;

/// Whether the sites of syscall `nr` keep the slow path (trap::syscalls says
/// which calls are emulated, and which emulations have a fast version).
pub fn needs_slow_path(nr: u64) -> bool {
    !syscalls::patchable(nr as i64) || (go_stack_is_short() && emulated(nr))
}

fn emulated(nr: u64) -> bool {
    syscalls::handling(nr as i64) != syscalls::Handling::Native
}

/// Go code runs in this process (a site's function was in Go's table) and
/// patched calls run on the program's stack (no FSGSBASE): Go's syscall
/// stubs leave 584-608 bytes below the stack pointer on a goroutine stack
/// of a few KiB, less than the fast versions of emulated calls need there.
fn go_stack_is_short() -> bool {
    crate::patch::gopclntab::go_code_seen() && !crate::rt::thread::fast_path_switches_stacks()
}

/// When the Go stack is short (`go_stack_is_short`): emulated calls keep
/// the slow path, sites patched before included (ut_fast_entry sends them
/// back, before it uses any stack to speak of). Where the fast path moves
/// to the thread's own stack, 240 bytes below the caller's stack pointer
/// is all it takes, and Go code is treated as any other. Err: `nr` is such
/// a call.
fn slow_in_go(nr: u64) -> Result<(), &'static str> {
    if !go_stack_is_short() {
        return Ok(());
    }
    for n in 0..arch::FAST_OK_LEN as u64 {
        if emulated(n) {
            arch::clear_fast_ok(n);
        }
    }
    if emulated(nr) {
        return Err("emulated syscall in a process with Go code: keeps the slow path");
    }
    Ok(())
}

/// Whether syscall `nr`'s fast version changes the kernel's signal mask.
fn changes_mask(nr: u64) -> bool {
    matches!(syscalls::handling(nr as i64), syscalls::Handling::Emulated(e) if syscalls::fast_changes_mask(e))
}

/// The program's seccomp filter forbids the library rt_sigprocmask: the
/// calls whose fast version needs it go back to the slow path (patched
/// sites included: ut_fast_entry sends them to their `syscall`, which traps).
pub fn forbid_fast_masks() {
    for nr in 0..arch::FAST_OK_LEN as u64 {
        if changes_mask(nr) {
            arch::clear_fast_ok(nr);
        }
    }
}

/// After a trap at `rip` (the address after the `syscall`) for syscall `nr`.
pub fn consider(rip: u64, nr: u64) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let key = rip.wrapping_sub(2);
    if registry::lookup(key).is_some() {
        return;
    }
    // A trampoline's own `syscall` (a call the fast path diverted), or the
    // library's own code: never patched.
    if crate::rt::owned::overlaps(key, 2) || in_own_text(key) {
        return;
    }
    if nothing_to_record(key, nr) || ends_unprepared(nr) {
        return;
    }
    thread::with_signals_blocked(|| {
        // Never wait for the lock: its holder writes through /proc/self/mem
        // and issues membarrier, and threads spinning here (thousands may
        // trap at once) would take the CPUs it needs. This call runs on the
        // slow path anyway; the site is considered again at its next trap.
        let Some(mut table) = PATCHER.try_lock() else { return };
        if registry::lookup(key).is_some() {
            return; // another thread got here first
        }
        if !registry::prepare() {
            patching_off("no memory for the table of sites");
            return;
        }
        // The sites the exec'ing image carried: all at once, at the first
        // trap of a call the fast path may run (prepatch.rs).
        // And those the other processes of the tree proved (sitecache.rs).
        if (prepatch::pending() || sitecache::pending()) && !needs_slow_path(nr) && !ends(nr) {
            prepatch::apply(&mut table, fast_path_ready, needs_slow_path);
            sitecache::apply(&mut table, fast_path_ready, needs_slow_path);
            if registry::lookup(key).is_some() {
                return;
            }
        }
        match try_patch(&mut table, key, nr) {
            Ok(()) | Err(None) => {}
            Err(Some(why)) => {
                registry::record(key, UNPATCHED, nr as u32, why, 0);
            }
        }
    });
}

/// A call that keeps the slow path at a site not of the `mov $nr,%eax;
/// syscall` form: what the locked part would decide (try_other_forms:
/// not now, nothing recorded), without its cost: two mask changes, the
/// site table mapped and a page or two of it touched. The common case is
/// the `exit_group` every process ends with (glibc's `_exit` takes the
/// number from a register), which this kept from ending in that work.
/// Only pre-patching could differ, and it waits for a call that needs no
/// slow path anyway.
fn nothing_to_record(key: u64, nr: u64) -> bool {
    needs_slow_path(nr) && seed_immediate(key).is_none()
}

/// exit or exit_group: the thread or the process ends with this call.
fn ends(nr: u64) -> bool {
    nr == libc::SYS_exit as u64 || nr == libc::SYS_exit_group as u64
}

/// An ending call (fast since exit and exit_group have fast versions) in an
/// image that has not got patching ready: its site would serve only the
/// rest of the tree (fork children, the site cache), and getting ready
/// (the decoder's tables, membarrier, the site table; and the carried and
/// cached lists, which wait for a call that is not the last) cost a
/// `/bin/true` 113 more syscalls and about 40 page faults at its end. An
/// image that patched before (bash's `cat`) patches it as any site.
fn ends_unprepared(nr: u64) -> bool {
    ends(nr) && PREPARED.load(Ordering::Relaxed) != READY
}

/// The 4 bytes of `mov $nr,%eax`'s immediate right before the `syscall` at
/// `key`, if the seed form is there (None too if unreadable).
fn seed_immediate(key: u64) -> Option<[u8; 4]> {
    let mut bytes = [0u8; 7];
    raw::copy_from_user(&mut bytes, key.wrapping_sub(5)).ok()?;
    let [b0, n0, n1, n2, n3, s0, s1] = bytes;
    (b0 == 0xb8 && s0 == 0x0f && s1 == 0x05).then_some([n0, n1, n2, n3])
}

/// Err(None): not now (the site is considered again at its next trap).
#[inline(never)] // its buffers must not sit in every trap's stack frame
fn try_patch(table: &mut Table, key: u64, nr: u64) -> Result<(), Option<&'static str>> {
    match seed_immediate(key) {
        Some(imm) => try_seed(table, key, nr, imm).map_err(Some),
        None => try_other_forms(table, key, nr),
    }
}

fn try_seed(table: &mut Table, key: u64, nr: u64, [n0, n1, n2, n3]: [u8; 4]) -> Result<(), &'static str> {
    let site = key.wrapping_sub(5);
    if u32::from_le_bytes([n0, n1, n2, n3]) as u64 != nr {
        return Err("eax did not come from the mov before it");
    }
    if needs_slow_path(nr) {
        return Err("emulated syscall: keeps the slow path");
    }
    // Only now, for a site that may really be patched.
    if !prepared() {
        return Err("membarrier SYNC_CORE unavailable: patching off");
    }
    if in_own_text(key) {
        return Err("the library's own code");
    }
    site::check(site).map_err(|r| r.as_str())?;
    slow_in_go(nr)?;
    let slot = table.alloc_slot().ok_or("trap table full (no free window below 2 GiB)")?;
    let tramp = table.alloc_trampoline().ok_or("no memory for trampolines")?;
    let mem = Mem::open().map_err(|_| "cannot open /proc/self/mem")?;
    let code = arch::trampoline(nr as u32, site + 7);
    mem.write(tramp, &code).map_err(|_| "cannot write the trampoline")?;
    mem.write(slot, &tramp.to_le_bytes()).map_err(|_| "cannot write the slot")?;
    if !registry::record(key, PATCHING, nr as u32, "", slot as u32) {
        return Err("site table full");
    }
    // From the first byte written on, a thread may fault at the old syscall;
    // the registry already says PATCHING, so fault.rs knows the site. If a
    // write fails half-way the site stays PATCHING: every call then faults
    // and is served by the SIGILL path, slowly but correctly.
    if write::patch_site(&mem, site, slot).is_ok() {
        registry::set_state(key, PATCHED);
    }
    Ok(())
}

/// Forms R and P (forms.rs) for the `syscall` at `key`, whose number came
/// from elsewhere than a `mov` right before it.
fn try_other_forms(table: &mut Table, key: u64, nr: u64) -> Result<(), Option<&'static str>> {
    if needs_slow_path(nr) {
        // The number may come from a register: another call may suit.
        return Err(None);
    }
    if !prepared() {
        return Err(Some("membarrier SYNC_CORE unavailable: patching off"));
    }
    if in_own_text(key) {
        return Err(Some("the library's own code"));
    }
    // glibc's `__restore_rt` (`mov $15,%rax; syscall`), whatever the number.
    let mut head = [0u8; 7];
    if raw::copy_from_user(&mut head, key.wrapping_sub(7)).is_ok() && head == site::SIGRETURN_STUB[..7] {
        return Err(Some(Reject::SigreturnStub.as_str()));
    }
    let loc = locate::locate_with(&mut os::RawOs::new(), key).map_err(|r| Some(r.as_str()))?;
    slow_in_go(nr).map_err(Some)?;
    if key + 2 > loc.func_end {
        return Err(Some(Reject::SyscallOutsideFunction.as_str()));
    }
    if loc.func_end - loc.func_start > site::MAX_DECODE {
        return Err(Some(Reject::TooFar.as_str()));
    }
    if loc.func_start < loc.text_start || loc.func_end > loc.text_end {
        return Err(Some(Reject::StraddlesMapping.as_str()));
    }
    // The padding after the function, up to the next function of the
    // unwind table, if it is NOP/INT3 fill only (a pad candidate; never
    // decoded as part of a function).
    let gap_end =
        if loc.next_start > loc.func_end && loc.next_start - loc.func_end <= 64 && loc.next_start <= loc.text_end {
            loc.next_start
        } else {
            loc.func_end
        };
    let mut overlays = [forms::Overlay::EMPTY; forms::MAX_OVERLAYS];
    let n =
        registry::overlays_in(loc.func_start, gap_end, &mut overlays).ok_or(Some(Reject::TooManyPatched.as_str()))?;
    // SAFETY: [func_start, gap_end) lies inside one run of adjacent readable
    // and executable mappings of the ELF file that holds the site (checked
    // just above from /proc/self/maps, or from the object cache, which
    // stands for it while no mapping has changed since; gap_end is at most
    // text_end), at most
    // MAX_DECODE + 64 long; as in site::check, only our patcher (holding the
    // lock we hold) writes it.
    let with_gap =
        unsafe { core::slice::from_raw_parts(loc.func_start as *const u8, (gap_end - loc.func_start) as usize) };
    let live = with_gap.get(..(loc.func_end - loc.func_start) as usize).unwrap_or(&[]);
    let gap = with_gap.get(live.len()..).unwrap_or(&[]);
    let overlays = overlays.get(..n).unwrap_or(&[]);
    let code = forms::Code { start: loc.func_start, live, overlays };
    // The gap joins the pad search only if it holds nothing but fill now.
    let pad_code = if forms::all_filler(loc.func_end, gap) {
        forms::Code { start: loc.func_start, live: with_gap, overlays }
    } else {
        forms::Code { start: loc.func_start, live, overlays }
    };
    match forms::plan_range(&code, key) {
        Ok(r) => install_range(table, key, nr, &r).map_err(Some),
        Err(why_r) => match forms::plan_pad(&pad_code, key).or_else(|e| pad_before(&loc, &pad_code, key).ok_or(e)) {
            Ok(p) => install_pad(table, key, nr, &p).map_err(Some),
            // The range's reason when it came close (its own refusals).
            Err(Reject::NoPad) if why_r != Reject::RangeTooShort && why_r != Reject::NotRelocatable => {
                Err(Some(why_r.as_str()))
            }
            Err(why_p) => Err(Some(why_p.as_str())),
        },
    }
}

/// Form P's pad in the padding before the function (forms::plan_pad_after_gap):
/// the bytes from the end of the function before it (`loc.prev_end`, at
/// most 64 bytes back, in the same text) are NOP/INT3 fill only, and that
/// function, decoded whole from its start, ends with an unconditional
/// transfer and branches into none of them. `code`: the function (and the
/// fill after it) as try_other_forms planned it.
fn pad_before(loc: &locate::Located, code: &forms::Code<'_>, key: u64) -> Option<forms::Pad> {
    let (prev_start, gap_start) = (loc.prev_start, loc.prev_end);
    if gap_start >= loc.func_start
        || loc.func_start - gap_start > 64
        || prev_start < loc.text_start
        || gap_start - prev_start > site::MAX_DECODE
    {
        return None;
    }
    let mut overlays = [forms::Overlay::EMPTY; forms::MAX_OVERLAYS];
    let n = registry::overlays_in(prev_start, code.end(), &mut overlays)?;
    let overlays = overlays.get(..n)?;
    // SAFETY: [prev_start, code.end()) lies in the run of readable and
    // executable mappings of the site's object (prev_start >= text_start,
    // checked above; code.end() is at most text_end, see try_other_forms),
    // and only our patcher (holding the lock we hold) writes it.
    let all = unsafe { core::slice::from_raw_parts(prev_start as *const u8, (code.end() - prev_start) as usize) };
    let prev = forms::Code { start: prev_start, live: all.get(..(gap_start - prev_start) as usize)?, overlays };
    let gap = all.get((gap_start - prev_start) as usize..(loc.func_start - prev_start) as usize)?;
    if !forms::all_filler(gap_start, gap) || !forms::ends_in_transfer(&prev, gap_start, loc.func_start) {
        return None;
    }
    let with_gap = forms::Code { start: gap_start, live: all.get((gap_start - prev_start) as usize..)?, overlays };
    forms::plan_pad_after_gap(&with_gap, key).ok()
}

fn install_range(table: &mut Table, key: u64, nr: u64, r: &forms::Range) -> Result<(), &'static str> {
    let slot = if r.pun == 0 { table.alloc_slot() } else { table.alloc_punned_slot() };
    let slot = slot.ok_or(Reject::NoPunnedSlot.as_str())?;
    if !forms::slot_fits(slot, r.pun) {
        return Err(Reject::NoPunnedSlot.as_str());
    }
    let tramp = table.alloc_big_trampoline().ok_or("no memory for trampolines")?;
    let orig = r.orig();
    let offs = r.offs.get(..r.n).unwrap_or(&[]);
    let t = forms::range_trampoline(tramp, arch::fast_entry(), r.start, orig, offs, r.sys_off, r.end())
        .ok_or("trampoline too long")?;
    let mem = Mem::open().map_err(|_| "cannot open /proc/self/mem")?;
    mem.write(tramp, t.code.get(..t.len).unwrap_or(&[])).map_err(|_| "cannot write the trampoline")?;
    mem.write(slot, &tramp.to_le_bytes()).map_err(|_| "cannot write the slot")?;
    let fin = forms::range_final(r, slot);
    let ext = registry::Ext::range(r, fin, tramp, t.post_base);
    if !registry::record_ext(key, PATCHING, nr as u32, slot as u32, &ext) {
        return Err("site table full");
    }
    // As for the seed: a failed write leaves the site PATCHING, every
    // boundary faulting into the trampoline or the handler.
    if write::patch_range(&mem, r.start, orig, r.offs.get(..r.n).unwrap_or(&[]), fin.get(..r.len).unwrap_or(&[]))
        .is_ok()
    {
        registry::set_state(key, PATCHED);
    }
    Ok(())
}

fn install_pad(table: &mut Table, key: u64, nr: u64, p: &forms::Pad) -> Result<(), &'static str> {
    let slot = table.alloc_slot().ok_or("trap table full (no free window below 2 GiB)")?;
    let tramp = table.alloc_big_trampoline().ok_or("no memory for trampolines")?;
    let t = forms::trampoline(tramp, arch::fast_entry(), &[], key + 2, &[], key + 2).ok_or("trampoline too long")?;
    let mem = Mem::open().map_err(|_| "cannot open /proc/self/mem")?;
    mem.write(tramp, t.code.get(..t.len).unwrap_or(&[])).map_err(|_| "cannot write the trampoline")?;
    mem.write(slot, &tramp.to_le_bytes()).map_err(|_| "cannot write the slot")?;
    let branch = forms::pad_branch(key, p);
    let pad_bytes = forms::pad_bytes(p, slot);
    let mut ext = registry::Ext::pad(key, branch, p, tramp, t.post_base);
    let pad_len = p.len.min(forms::OVERLAY_BYTES);
    raw::copy_from_user(ext.pad_orig.get_mut(..pad_len).unwrap_or_default(), p.at).map_err(|_| "pad not readable")?;
    if !registry::record_ext(key, PATCHING, nr as u32, slot as u32, &ext) {
        return Err("site table full");
    }
    if write::patch_pad(&mem, key, branch, p.at, pad_bytes.get(..pad_len).unwrap_or(&[])).is_ok() {
        registry::set_state(key, PATCHED);
    }
    Ok(())
}

/// The run of executable mappings holding the library's own code (noted at
/// start-up, or found when patching is prepared): [start, end), or 0, 0.
static OWN_TEXT: [core::sync::atomic::AtomicU64; 2] = [const { core::sync::atomic::AtomicU64::new(0) }; 2];

/// Start-up: the library's executable segment, [start, end) page-aligned,
/// as the loader mapped it (one mapping: the run `prepared` would find).
pub fn note_own_text(start: u64, end: u64) {
    if start < end {
        OWN_TEXT[0].store(start, Ordering::Relaxed);
        OWN_TEXT[1].store(end, Ordering::Relaxed);
    }
}

pub fn in_own_text(addr: u64) -> bool {
    addr >= OWN_TEXT[0].load(Ordering::Relaxed) && addr < OWN_TEXT[1].load(Ordering::Relaxed)
}

/// Make patching possible (under the PATCHER lock); false if it cannot be,
/// and then patching is off for good.
fn prepared() -> bool {
    match PREPARED.load(Ordering::Relaxed) {
        READY => return true,
        UNAVAILABLE => return false,
        _ => {}
    }
    // The decoder builds its tables in the bump arena, whose failure would
    // be a panic: make sure the memory is there first (RLIMIT_AS).
    match raw::mmap_anon(DECODER_MEMORY, libc::PROT_READ | libc::PROT_WRITE) {
        Ok(a) => {
            // SAFETY: the mapping just made, used by nothing.
            let _ = unsafe { raw::munmap(a, DECODER_MEMORY) };
        }
        Err(_) => {
            PREPARED.store(UNAVAILABLE, Ordering::Relaxed);
            patching_off("no memory for the instruction decoder's tables");
            return false;
        }
    }
    if let Err(e) = write::register_membarrier() {
        PREPARED.store(UNAVAILABLE, Ordering::Relaxed);
        ENABLED.store(false, Ordering::Relaxed);
        if crate::measure::report::summary_on() {
            crate::rt::log::Line::new()
                .str("membarrier SYNC_CORE unavailable (errno ")
                .num(e as u64)
                .str("): patching off, every call takes the slow path")
                .emit();
        }
        return false;
    }
    site::warm_up();
    set_fast_ok();
    // Known from the loader's program headers (note_own_text) in a
    // preloaded library; else from the maps (20-60 us).
    if OWN_TEXT[1].load(Ordering::Relaxed) == 0 {
        if let Ok(own) = crate::patch::maps::find_object(&mut os::RawOs::new(), arch::fast_entry()) {
            OWN_TEXT[0].store(own.text_start, Ordering::Relaxed);
            OWN_TEXT[1].store(own.text_end, Ordering::Relaxed);
        }
    }
    PREPARED.store(READY, Ordering::Relaxed);
    true
}

/// Which numbers ut_fast_entry may run (before the first patch).
fn set_fast_ok() {
    prefault_own_fast_stack();
    let masks_forbidden = crate::emulate::signals::masks_forbidden();
    arch::set_fast_ok(|nr| !(needs_slow_path(nr) || masks_forbidden && changes_mask(nr)));
    FAST_OK_SET.store(true, Ordering::Relaxed);
}

static FAST_OK_SET: AtomicBool = AtomicBool::new(false);

/// What pre-patching needs of [`prepared`] (under the PATCHER lock): the
/// fast path's list of numbers and membarrier for the write protocol, not
/// the decoder (prepatch.rs carries the proofs).
fn fast_path_ready() -> bool {
    match PREPARED.load(Ordering::Relaxed) {
        READY => return true,
        UNAVAILABLE => return false,
        _ => {}
    }
    if !MEMBARRIER_READY.load(Ordering::Relaxed) {
        if write::register_membarrier().is_err() {
            return false; // prepared() says so at the first lazy patch
        }
        MEMBARRIER_READY.store(true, Ordering::Relaxed);
    }
    if !FAST_OK_SET.load(Ordering::Relaxed) {
        set_fast_ok();
    }
    true
}

static MEMBARRIER_READY: AtomicBool = AtomicBool::new(false);

/// What the program is about to do to code that may hold recorded sites.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum CodeChange {
    /// Unmapped or replaced (munmap, mmap MAP_FIXED; after it succeeded):
    /// the sites are gone, forget them.
    Gone,
    /// Made writable (mprotect/pkey_mprotect with PROT_WRITE) or about to
    /// move (mremap): give the program back its own bytes at every patched
    /// site (a JIT that rewrites a `mov`'s immediate must find the `mov`; a
    /// moved jump would return to the old address), then forget them.
    Rewritable,
}

/// Forget (and for Rewritable, first unpatch) every recorded site in
/// [addr, addr+len). Cheap when the range holds none. Integer-only: also
/// called from the fast path.
#[inline(always)]
pub fn code_changing(addr: u64, len: u64, change: CodeChange) {
    if registry::may_have_sites(addr, len) {
        forget_sites(addr, len, change);
    }
}

#[inline(never)]
fn forget_sites(addr: u64, len: u64, change: CodeChange) {
    let mut any = false;
    registry::for_each_in(addr, len, |_| any = true);
    if !any {
        return; // the chunk holds sites, the range none: no lock needed
    }
    thread::with_signals_blocked(|| {
        // This one must happen: wait for the lock, but yield the CPU while
        // another thread patches (signals are blocked, so no handler of this
        // thread can be the holder).
        let _table = loop {
            if let Some(t) = PATCHER.try_lock() {
                break t;
            }
            raw::sched_yield();
        };
        let mut mem: Option<Mem> = None;
        let mut restored = false;
        registry::for_each_in(addr, len, |site| {
            if change == CodeChange::Rewritable && (site.state == PATCHED || site.state == PATCHING) {
                if mem.is_none() {
                    mem = Mem::open().ok();
                }
                if let Some(m) = &mem {
                    restored |= write::unpatch(m, site).is_ok();
                }
            }
        });
        if restored {
            // No thread may still run the old bytes once the site is forgotten
            // (a SIGILL at its 0x06 would no longer be recognised).
            write::sync_cores();
        }
        registry::for_each_in(addr, len, |site| registry::forget(site.key));
    });
}

/// Out of memory for patching: every call keeps the slow path; say so once.
/// Never inlined: its line's buffer would sit in the frame of every trap
/// (tests/library.rs, slow_path_stack_frames_are_small).
#[cold]
#[inline(never)]
fn patching_off(why: &str) {
    if ENABLED.swap(false, Ordering::Relaxed) {
        crate::rt::log::Line::new().str(why).str(": patching off, every call takes the slow path").emit();
    }
}

/// The program installed a seccomp filter of its own: patch no more sites.
pub fn stop_for_program_filter() {
    ENABLED.store(false, Ordering::Relaxed);
}

/// In a new process: a thread that held the patch lock at fork time is gone.
pub fn after_fork_in_child() {
    // SAFETY: only this thread exists in the new process.
    unsafe { PATCHER.force_unlock() };
    sitecache::after_fork_in_child();
    crate::patch::maps::after_fork_in_child();
}

/// The most loader sites the launcher patches (ld.so has about 35 of the
/// seed form) and hands to the library.
pub const LOADER_SITES: usize = 128;
/// The farthest from its function's start a loader site is decoded.
const LOADER_DECODE_MAX: u64 = 1024;

/// A site the launcher patched in the loader: its `syscall`'s address (the
/// registry's key), slot and number.
#[derive(Clone, Copy, Default)]
pub struct LoaderSite {
    pub key: u64,
    pub slot: u32,
    pub nr: u32,
}

/// The launcher, before it jumps to the loader it has just mapped: patch
/// the loader's `mov $nr,%eax; syscall` sites (the seed form), so that its
/// calls take the fast path from the first one instead of a SIGSYS each
/// (about 30 per process). Same proof as a trapped site's: the function
/// start from the loader's .eh_frame_hdr, decoding forward from it to the
/// site ([`crate::patch::lengths`], a decoder without tables to build: iced's
/// would cost more than the calls it saves). `text` is the loader's
/// executable segment as mapped, with its protection; `eh_frame_hdr` its
/// PT_GNU_EH_FRAME at run time. Fills `out`; how many were patched.
///
/// No race to guard against: the launcher is the process's only thread and
/// no byte of the loader has run yet, so the final bytes are written
/// directly, without the write protocol's order or membarrier: the
/// trampolines and slots first, then each page's jumps in one write through
/// /proc/self/mem (the text's protection never changes).
/// The trampolines jump to the gate's fast entry (arch::GATE_FAST_ENTRY):
/// the launcher's ut_fast_entry now, the library's once its gate replaces
/// the launcher's, so they never jump into the launcher's text, which the
/// library unmaps.
#[cfg_attr(not(feature = "launcher"), allow(dead_code))] // the launcher's
pub fn patch_loader(text: (u64, u64), eh_frame_hdr: u64, out: &mut [LoaderSite]) -> usize {
    let (text_start, text_end) = text;
    if text_end <= text_start || eh_frame_hdr == 0 || !arch::trampoline_layout_ok() {
        return 0;
    }
    // SAFETY: the loader's executable segment, mapped readable by the
    // launcher (the caller) and written by nothing but the code below.
    let code = unsafe { core::slice::from_raw_parts(text_start as *const u8, (text_end - text_start) as usize) };
    let mut candidates = [0u32; LOADER_CANDIDATES];
    let found = seed_candidates(code, &mut candidates);
    let mut n = 0usize;
    let mut os = os::RawOs::new();
    for &mov in candidates.get(..found).unwrap_or(&[]) {
        let site = text_start + mov as u64;
        if n >= out.len() {
            break;
        }
        let Ok((start, end)) = crate::patch::unwind::lookup_fde(&mut os, eh_frame_hdr, site) else { continue };
        // Long functions (the loader's main steps, whose calls are one-offs)
        // cost more to decode than their calls save: left to the library.
        if start < text_start || site + site::SITE_LEN > end || end > text_end || site - start > LOADER_DECODE_MAX {
            continue;
        }
        let func = code.get((start - text_start) as usize..(site + site::SITE_LEN - text_start) as usize);
        let mut copy = [0u8; LOADER_DECODE_MAX as usize + site::SITE_LEN as usize];
        let func = func.and_then(|f| with_originals(start, f, &mut copy));
        let Some(Ok(nr)) = func.map(|f| crate::patch::lengths::verify(start, f, site)) else { continue };
        if needs_slow_path(nr as u64) {
            continue;
        }
        if let Some(o) = out.get_mut(n) {
            *o = LoaderSite { key: site + 5, slot: 0, nr };
            n += 1;
        }
    }
    if n == 0 || !registry::prepare() {
        return 0;
    }
    let Some(mut table) = PATCHER.try_lock() else { return 0 };
    let mut tramps = [0u64; LOADER_SITES];
    for (s, t) in out.iter_mut().zip(tramps.iter_mut()).take(n) {
        match (table.alloc_slot(), table.alloc_trampoline()) {
            (Some(slot), Some(tramp)) => {
                s.slot = slot as u32;
                *t = tramp;
            }
            _ => return 0,
        }
    }
    // All in the table's first window and arena (n is far below their 8192).
    let [window, arena, _, _] = table.regions();
    drop(table);
    // The table's own window and arena: made writable for the trampolines
    // and slots, then given their protections back, all before a byte of
    // the loader changes (so a refusal leaves the loader as it was).
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY: the window and arena just mapped by the table for these
    // sites, used by nothing yet. Each gets its protection back below.
    let writable = unsafe {
        raw::mprotect(window.0, window.1 as usize, rw).is_ok() && raw::mprotect(arena.0, arena.1 as usize, rw).is_ok()
    };
    if writable {
        for (s, &t) in out.iter().zip(tramps.iter()).take(n) {
            let code = arch::trampoline_to(s.nr, s.key + 2, arch::GATE_FAST_ENTRY);
            // SAFETY: `t` is a trampoline of the arena (TRAMP_STRIDE >=
            // TRAMP_LEN bytes) and the slot 8 bytes of the window, both
            // writable now and ours alone.
            unsafe {
                core::ptr::copy_nonoverlapping(code.as_ptr(), t as *mut u8, code.len());
                core::ptr::write(s.slot as u64 as *mut u64, t);
            }
        }
    }
    // SAFETY: as above: the same two ranges, back to their protections.
    let restored = unsafe {
        raw::mprotect(window.0, window.1 as usize, libc::PROT_READ).is_ok()
            && raw::mprotect(arena.0, arena.1 as usize, libc::PROT_READ | libc::PROT_EXEC).is_ok()
    };
    if !writable || !restored {
        // Refused (a security module's policy, say): the loader runs
        // unpatched, its calls on the slow path as before. The window and
        // arena may be left writable and not executable: no later site
        // (libc's, when the loader maps it) may get a trampoline there.
        if let Some(mut table) = PATCHER.try_lock() {
            table.abandon_window_and_arena();
        }
        return 0;
    }
    // The loader's text through /proc/self/mem, as the library writes
    // sites: its protection never changes, so no policy on making modified
    // file pages executable again (SELinux execmod) can leave the loader
    // unable to run. No /proc: unpatched.
    let Ok(mem) = Mem::open() else { return 0 };
    let written = write_loader_jumps(&mem, (text_start, text_end), out.get(..n).unwrap_or(&[]));
    // Only the sites written from the first on are recorded: a write that
    // fails leaves that site and the ones after it as they were.
    let n = written;
    if n == 0 {
        return 0;
    }
    record_loader_sites(out.get(..n).unwrap_or(&[]));
    open_fast_path();
    n
}

/// `live` (the loader's bytes from `start`), with the original bytes of
/// the carried sites patched in it put back (patch_carried_loader runs
/// first: a Form R range before a seed site changes what decoding from the
/// function's start sees), in `buf` where there are any.
#[cfg_attr(not(feature = "launcher"), allow(dead_code))] // the launcher's
fn with_originals<'a>(start: u64, live: &'a [u8], buf: &'a mut [u8]) -> Option<&'a [u8]> {
    let mut overlays = [forms::Overlay::EMPTY; forms::MAX_OVERLAYS];
    let n = registry::overlays_in(start, start + live.len() as u64, &mut overlays)?;
    if n == 0 {
        return Some(live);
    }
    let out = buf.get_mut(..live.len())?;
    let code = forms::Code { start, live, overlays: overlays.get(..n)? };
    code.bytes(start, out).then_some(&*out)
}

/// The jumps of `sites` (ascending, in the loader's text `text`) through
/// `mem`, one write per page of text that holds sites: the bytes between
/// two sites of a page are written back as they are (no thread runs yet),
/// so each page costs one copy-on-write and one syscall. How many sites,
/// from the first, were written.
#[cfg_attr(not(feature = "launcher"), allow(dead_code))] // the launcher's
fn write_loader_jumps(mem: &Mem, text: (u64, u64), sites: &[LoaderSite]) -> usize {
    const PAGE: u64 = 4096;
    let mut done = 0;
    while let Some(first) = sites.get(done) {
        let start = first.key - 5;
        // The sites of this page, ascending (jumps never cross into the next).
        let mut end = done;
        while let Some(s) = sites.get(end) {
            let at = s.key - 5;
            if at < start || at / PAGE != start / PAGE || at + site::SITE_LEN > text.1 {
                break;
            }
            end += 1;
        }
        if end == done {
            break;
        }
        let last = sites.get(end - 1).map_or(start, |s| s.key - 5);
        let mut buf = [0u8; PAGE as usize + 16];
        let len = (last + site::SITE_LEN - start) as usize;
        let Some(span) = buf.get_mut(..len) else { break };
        // SAFETY: [start, last + 7) lies in the loader's text (checked
        // against text.1 above), mapped readable by the launcher.
        span.copy_from_slice(unsafe { core::slice::from_raw_parts(start as *const u8, len) });
        for s in sites.get(done..end).unwrap_or(&[]) {
            let off = (s.key - 5 - start) as usize;
            let jump = write::jump_bytes(s.slot as u64);
            if let Some(d) = span.get_mut(off..off + jump.len()) {
                d.copy_from_slice(&jump);
            }
        }
        if mem.write(start, span).is_err() {
            break;
        }
        done = end;
    }
    done
}

/// The most `syscall` candidates the launcher looks at in the loader (ld.so
/// has about 50).
const LOADER_CANDIDATES: usize = 256;

/// Where `mov $imm32,%eax; syscall` (b8 .. .. .. .. 0f 05) may start in
/// `code`: the offsets of the 0xb8, at most `out.len()` of them (a guess to
/// be proved, not a proof). The whole text is scanned (about 150 KiB for
/// ld.so), 16 bytes at a time for the 0x05.
#[cfg_attr(not(feature = "launcher"), allow(dead_code))] // the launcher's
fn seed_candidates(code: &[u8], out: &mut [u32]) -> usize {
    use core::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
    let mut n = 0;
    let mut note = |i: usize| {
        // `i` is the 0x05: 0x0f before it, 0xb8 five bytes before that.
        if i >= 6 && code.get(i - 1) == Some(&0x0f) && code.get(i - 6) == Some(&0xb8) {
            if let Some(o) = out.get_mut(n) {
                *o = (i - 6) as u32;
                n += 1;
            }
        }
    };
    let blocks = code.len() / 16;
    for b in 0..blocks {
        // SAFETY: SSE2 is part of x86-64; the 16 bytes at b * 16 lie inside
        // `code` (b < code.len() / 16); unaligned loads are allowed.
        let mask = unsafe {
            let v = _mm_loadu_si128(code.as_ptr().add(b * 16).cast());
            _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(0x05))) as u32
        };
        let mut m = mask;
        while m != 0 {
            note(b * 16 + m.trailing_zeros() as usize);
            m &= m - 1;
        }
    }
    for i in blocks * 16..code.len() {
        if code.get(i) == Some(&0x05) {
            note(i);
        }
    }
    n.min(out.len())
}

/// Record the loader's sites the launcher patched (`sites`), in the
/// launcher right after patching them: its fault handlers then know them.
fn record_loader_sites(sites: &[LoaderSite]) {
    for s in sites {
        if registry::record(s.key, PATCHING, s.nr, "", s.slot) {
            registry::set_state(s.key, PATCHED);
        }
    }
}

/// The library, taking over from the launcher: the launcher's registry,
/// with the loader's sites it patched, becomes ours (before our fault
/// handlers replace the launcher's, so that a thread at a site's 0x06 is
/// recognised all along), and its slot window, trampoline arena and table
/// (`regions`) are guarded from the program as our own. Until
/// [`open_fast_path`], calls through these sites reach ut_fast_entry and go
/// on to the slow path.
pub fn adopt_loader_sites(snapshot: &registry::Snapshot, regions: &[(u64, u64)]) {
    if !registry::adopt(snapshot) {
        return;
    }
    let (table, len) = snapshot.mapping();
    crate::rt::owned::add(table, len);
    let (ext, len) = snapshot.ext_mapping();
    if ext != 0 {
        crate::rt::owned::add(ext, len);
    }
    for &(addr, len) in regions {
        crate::rt::owned::add(addr, len);
    }
}

/// Let ut_fast_entry run the calls the fast path may run (as [`prepared`]
/// does at the first patch): once the interposer is set up.
pub fn open_fast_path() {
    prefault_own_fast_stack();
    arch::set_fast_ok(|nr| !needs_slow_path(nr));
}

/// The thread that opens the fast path is the one about to take it (the
/// launcher's before the loader runs, an image's main thread): its first
/// fast call then takes one page fault on its fast-path stack, not two.
fn prefault_own_fast_stack() {
    if let Some(area) = thread::current_unchecked() {
        area.prefault_fast_stack();
    }
}

/// The slot windows and trampoline arenas of the loader's sites, for the
/// hand-off.
#[cfg_attr(not(feature = "launcher"), allow(dead_code))] // the launcher's
pub fn loader_regions() -> [(u64, u64); 4] {
    PATCHER.try_lock().map_or([(0, 0); 4], |t| t.regions())
}

/// The launcher, after [`patch_loader`], before the loader runs: the
/// loader's sites the exec'ing image carried (`value`, the
/// `USERTRAP_SITES=` entry's value; prepatch.rs), of every form, for the
/// loader whose ELF header is at `header`. Their proofs were made by the
/// exec'ing image's decoder (iced, from the unwind tables' function
/// starts) in the same file (build ID), and their original bytes are
/// checked against the entry's checksum before anything is written; the
/// final bytes are written at once (nothing runs them yet). Their trampolines
/// jump to the gate's jump to its owner's fast entry, as patch_loader's do,
/// so they serve the library after the hand-off. How many were patched.
#[cfg_attr(not(feature = "launcher"), allow(dead_code))] // the launcher's
pub fn patch_carried_loader(header: u64, value: &[u8]) -> usize {
    if header == 0 || !arch::trampoline_layout_ok() || !registry::prepare() {
        return 0;
    }
    let Some(mut table) = PATCHER.try_lock() else { return 0 };
    let n = prepatch::apply_to_loader(&mut table, value, header, arch::GATE_FAST_ENTRY, needs_slow_path);
    drop(table);
    if n > 0 {
        open_fast_path();
    }
    n
}

/// While the launcher awaits libc ([`await_libc`], [`code_mapped`]): the
/// carried entry's value, and what to call once libc's sites are patched
/// (the launcher's hand-off refresh).
static LIBC_AWAITED: AtomicBool = AtomicBool::new(false);
static AWAITING: spin::Mutex<Option<Awaited>> = spin::Mutex::new(None);
/// The carried entry's value and the launcher's hand-off refresh.
type Awaited = (&'static [u8], fn(usize));
/// The last file mapping from offset 0 the loader made: (descriptor + 1,
/// address), where an object's ELF header is while its segments follow.
static HEADER_FD: AtomicU64 = AtomicU64::new(0);
static HEADER_AT: AtomicU64 = AtomicU64::new(0);

/// The launcher, before the loader runs: patch libc's sites of the carried
/// entry (`value`), and those of the site cache if there is one, when the
/// loader maps libc's code ([`code_mapped`]), then
/// call `after` (which hands the registry over again). libc's start-up
/// calls before the library's constructor (`prlimit64`, `getrandom`: two
/// slow calls in every exec'd image otherwise) then take the fast path,
/// served by the launcher until the library takes over its registry.
#[cfg_attr(not(feature = "launcher"), allow(dead_code))] // the launcher's
pub fn await_libc(value: &'static [u8], after: fn(usize)) {
    if value.is_empty() || !prepatch::ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let Some(mut waiting) = AWAITING.try_lock() else { return };
    *waiting = Some((value, after));
    LIBC_AWAITED.store(true, Ordering::Release);
}

/// A successful mmap (`args`, at `addr`), on either path: in the launcher
/// awaiting libc, an executable mapping of the file whose offset 0 was
/// mapped last is an object's code; if it is the carried entry's libc, its
/// sites are patched now, before anything runs them (the loader maps,
/// relocates and only then initialises, on its one thread). One load of a
/// flag otherwise (the library never awaits).
#[inline(always)]
pub fn code_mapped(addr: u64, args: [u64; 6]) {
    if LIBC_AWAITED.load(Ordering::Relaxed) {
        code_mapped_while_awaiting(addr, args);
    }
}

#[inline(never)]
fn code_mapped_while_awaiting(addr: u64, args: [u64; 6]) {
    let (prot, fd, offset) = (args[2], args[4] as i32, args[5]);
    if fd < 0 {
        return;
    }
    if offset == 0 {
        HEADER_FD.store(fd as u64 + 1, Ordering::Relaxed);
        HEADER_AT.store(addr, Ordering::Relaxed);
        return;
    }
    if prot & libc::PROT_EXEC as u64 == 0 || HEADER_FD.load(Ordering::Relaxed) != fd as u64 + 1 {
        return;
    }
    let Some((value, after)) = AWAITING.try_lock().and_then(|w| *w) else { return };
    let header = HEADER_AT.load(Ordering::Relaxed);
    let Some(mut table) = PATCHER.try_lock() else { return };
    if !arch::trampoline_layout_ok() || !registry::prepare() {
        return;
    }
    // Calls that end the image (exit, exec) wait for the library's own
    // pre-patching: the launcher's fast versions serve the loader's calls,
    // and none of those.
    let slow =
        |nr: u64| needs_slow_path(nr) || ends(nr) || nr == raw::SYS_execve as u64 || nr == raw::SYS_execveat as u64;
    let Some(carried) = prepatch::apply_to_mapped_libc(&mut table, value, header, arch::GATE_FAST_ENTRY, slow) else {
        return;
    };
    // What the tree's other processes proved (usertrap stat's site cache).
    let n = carried + sitecache::apply_at_map(&mut table, slow, arch::GATE_FAST_ENTRY);
    drop(table);
    LIBC_AWAITED.store(false, Ordering::Relaxed);
    if n > 0 {
        open_fast_path();
        after(n);
    }
}

/// Whether [`prove_loader_sites`] ran in this image (a fork child inherits
/// its parent's: the same sites, patched in its copy of the memory).
static LOADER_PROVED: AtomicBool = AtomicBool::new(false);

/// Before an exec through the launcher, or a fork (emulate, trap context): patch
/// the loader's sites of Forms R and P here, so that pre-patching carries
/// them to the new image, whose launcher patches them before its loader
/// makes its calls (the loader's `openat`, `read`, `arch_prctl`, ...: a
/// few slow calls in every exec'd process otherwise, since the launcher's
/// own decoder proves only the seed form, and the library comes too late
/// for them). Each is proven as after a trap (try_other_forms: iced from
/// the unwind tables' function start); the seed form's sites are left to
/// the launcher. Once per image, and only where the decoder is built
/// already (a process that patched something): building it costs more
/// than the calls it would save in one child. The number each site is
/// tried with is the one loaded just before it where there is one (the
/// registry names the site with it; Forms R and P run rax's number).
/// libc's `_exit` goes with them ([`prove_exit_sites`]).
pub fn prove_loader_sites() {
    if !ENABLED.load(Ordering::Relaxed)
        || !prepatch::ENABLED.load(Ordering::Relaxed)
        || PREPARED.load(Ordering::Relaxed) != READY
        || LOADER_PROVED.swap(true, Ordering::Relaxed)
    {
        return;
    }
    thread::with_signals_blocked(|| {
        let Some(mut table) = PATCHER.try_lock() else { return };
        if !registry::prepare() {
            return;
        }
        prove_exit_sites(&mut table);
        let Some((lo, hi)) = prepatch::loader_text() else { return };
        let mut page = [0u8; 4096 + 16];
        let mut at = lo;
        while at < hi {
            // A page and the bytes after it (an instruction may straddle).
            let len = ((hi - at) as usize).min(page.len());
            let Some(buf) = page.get_mut(..len) else { return };
            if raw::copy_from_user(buf, at).is_err() {
                return;
            }
            let step = len.min(4096);
            for i in 0..step {
                if buf.get(i..i + 2) != Some(&[0x0f, 0x05][..]) {
                    continue;
                }
                let key = at + i as u64;
                if registry::lookup(key).is_some() || seed_immediate(key).is_some() {
                    continue;
                }
                let nr = number_before(key);
                if needs_slow_path(nr) {
                    continue;
                }
                let _ = try_other_forms(&mut table, key, nr);
            }
            at += step as u64;
        }
    });
}

/// libc's `_exit`, as the preloaded library's start-up found it
/// ([`note_exit_function`]), or 0.
static EXIT_FUNCTION: AtomicU64 = AtomicU64::new(0);
/// The longest `_exit` [`prove_exit_sites`] decodes (this glibc's is 72
/// bytes: exit_group, then exit in a loop).
const EXIT_FUNCTION_MAX: u64 = 256;

/// Start-up of the preloaded library: where libc's `_exit` is (its
/// address through the library's own import; checked against libc's text
/// and the unwind tables before anything is proven in it).
#[cfg_attr(feature = "launcher", allow(dead_code))] // the preloaded library's
pub fn note_exit_function(addr: u64) {
    EXIT_FUNCTION.store(addr, Ordering::Relaxed);
}

/// With [`prove_loader_sites`] (PATCHER held, signals blocked, the
/// registry mapped): the sites of libc's `_exit`, through which every
/// image ends (`exit_group`, `mov %esi,%eax; syscall` in this glibc, a
/// Form R/P site). An image's last call is never worth patching in it
/// (`ends_unprepared`), so until now each exec'd image made it on the
/// slow path (55 of make -j2's 410 slow calls): proven here, once, in the
/// image about to exec or fork, it is carried to every image exec'd from
/// here on (prepatch.rs) and inherited by fork children. Each `syscall`
/// of the function is proven as after a trap of its own (the seed form
/// by site::check, the others by try_other_forms, from the function's
/// start in the unwind tables, which must be `_exit`'s address); a site
/// not proven is left to its own trap, nothing recorded.
fn prove_exit_sites(table: &mut Table) {
    let f = EXIT_FUNCTION.load(Ordering::Relaxed);
    let Some((lo, hi)) = prepatch::libc_text() else { return };
    if f < lo || f >= hi {
        return; // not libc's own (a program's `_exit`, or a PLT entry)
    }
    let Ok(loc) = locate::locate_with(&mut os::RawOs::new(), f) else { return };
    if loc.func_start != f || loc.func_end <= f || loc.func_end - f > EXIT_FUNCTION_MAX {
        return;
    }
    let mut bytes = [0u8; EXIT_FUNCTION_MAX as usize];
    let Some(buf) = bytes.get_mut(..(loc.func_end - f) as usize) else { return };
    if raw::copy_from_user(buf, f).is_err() {
        return;
    }
    for (i, pair) in buf.windows(2).enumerate() {
        let key = f + i as u64;
        if pair != [0x0f, 0x05] || registry::lookup(key).is_some() {
            continue;
        }
        match seed_immediate(key) {
            Some(imm) => {
                let nr = u32::from_le_bytes(imm) as u64;
                if !needs_slow_path(nr) {
                    let _ = try_seed(table, key, nr, imm);
                }
            }
            None => {
                let nr = number_before(key);
                if !needs_slow_path(nr) {
                    let _ = try_other_forms(table, key, nr);
                }
            }
        }
    }
}

/// Before a fork ([`patch_fork_child_sites`]): the sites the site cache
/// gained since this image last read it (its earlier children's proofs),
/// patched here, so the child starts with them (sitecache.rs).
fn refresh_from_site_cache() {
    if !sitecache::read_before() {
        return;
    }
    thread::with_signals_blocked(|| {
        let Some(mut table) = PATCHER.try_lock() else { return };
        if registry::prepare() {
            sitecache::refresh(&mut table, fast_path_ready, needs_slow_path);
        }
    });
}

/// How far after a fork's `syscall` [`patch_fork_child_sites`] looks.
const FORK_CHILD_REACH: usize = 64;

/// Before a fork (emulate::process, trap context; `rip`: the address after
/// the fork's `syscall`): the seed-form sites in the few bytes after it,
/// which the child runs and the parent does not (glibc's `_Fork`:
/// `set_robust_list` in the child's branch, once in every fork child, a
/// slow first call in each since its parent never made it), are patched
/// here as after a trap of theirs ([`consider`]: proven by decoding from
/// their function's start, or recorded with the reason), once: every
/// later child inherits them. Only where the decoder is built already (a
/// process that patched something): building it for one call a child
/// makes costs more than that call.
pub fn patch_fork_child_sites(rip: u64) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    refresh_from_site_cache();
    if PREPARED.load(Ordering::Relaxed) != READY {
        return;
    }
    let mut b = [0u8; FORK_CHILD_REACH + 7];
    if raw::copy_from_user(&mut b, rip).is_err() {
        return;
    }
    for i in 0..FORK_CHILD_REACH {
        let (Some(&0xb8), Some(&[0x0f, 0x05])) = (b.get(i), b.get(i + 5..i + 7)) else { continue };
        let nr = b.get(i + 1..i + 5).and_then(|n| <[u8; 4]>::try_from(n).ok()).map_or(0, u32::from_le_bytes);
        let after = rip + i as u64 + 7;
        if !needs_slow_path(nr as u64) && registry::lookup(after - 2).is_none() {
            consider(after, nr as u64);
        }
    }
}

/// The number loaded into eax before the `syscall` at `key`: 0 after `xor
/// %eax,%eax`, else the last `mov $imm32,%eax` in the 24 bytes before it
/// with a syscall number's value, else 0. Only a name for the site.
fn number_before(key: u64) -> u64 {
    let mut b = [0u8; 24];
    if raw::copy_from_user(&mut b, key.wrapping_sub(24)).is_err() {
        return 0;
    }
    if b[22..24] == [0x31, 0xc0] {
        return 0;
    }
    (0..=19)
        .rev()
        .find_map(|i| {
            let imm = u32::from_le_bytes([*b.get(i + 1)?, *b.get(i + 2)?, *b.get(i + 3)?, *b.get(i + 4)?]);
            (b.get(i) == Some(&0xb8) && imm < 512).then_some(imm as u64)
        })
        .unwrap_or(0)
}
