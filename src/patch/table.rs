//! The trap table: where patched sites jump.
//!
//! A patched site is `jmp *disp32` (ff 24 25 d0 d1 d2 d3): an indirect jump
//! through the 8-byte slot at absolute address disp32. disp32 is sign-extended,
//! so slots live below 2 GiB, and every slot address has 0x06 in bits 16-23
//! (d2): byte 5 of the patched site, where the old `syscall` began, becomes
//! 0x06 (`push %es`, invalid in 64-bit mode), so a thread that arrives there
//! (it ran the old `mov` before the patch, or branched to the old `syscall`)
//! faults with SIGILL instead of running garbage (see fault.rs).
//!
//! Slots come in windows of 64 KiB at 0xHH060000 (8192 slots each), mapped
//! one at a time as sites are patched (a process with fewer than 8192
//! patched sites has one), from HH = 0x7f down to 0x10: just below 2 GiB
//! first, far from the round low addresses programs map at fixed places
//! (0x10000000, 0x40000000, the brk heap after a non-PIE program). Each is
//! mapped with MAP_FIXED_NOREPLACE so no mapping of the program is ever
//! replaced; a window that is taken is skipped. Each slot
//! holds the address of the site's own trampoline (27 bytes: the site's
//! syscall number, its return address, a jump to ut_fast_entry), in arenas of
//! 8192 trampolines mapped anywhere. Slots are read-only and trampolines
//! read-execute from the start: they are written through /proc/self/mem.
//!
//! Forms R and P (forms.rs) get 128-byte trampolines of their own, and
//! ranges with an instruction boundary on the jump's address bytes get a
//! punned slot (below).
//!
//! Never: make slots or trampolines writable by the program.

use crate::rt::{owned, raw};

pub const SLOT_BYTE: u64 = 0x06;
const WINDOW_LEN: usize = 0x1_0000;
const SLOTS_PER_WINDOW: usize = WINDOW_LEN / 8;
const FIRST_HH: u64 = 0x7f;
const LAST_HH: u64 = 0x10;
pub const TRAMP_STRIDE: usize = 32;
const ARENA_LEN: usize = SLOTS_PER_WINDOW * TRAMP_STRIDE;

/// Punned windows (Form R ranges with boundaries at offsets 3, 4 or 6 of
/// the jump): HH, and the slot's two low bytes, are all invalid opcodes, so
/// every byte of `jmp *slot` from offset 3 on faults as an instruction start.
/// Slots there are 8 bytes apart at least (the low bytes below), 280 per
/// window.
const PUN_HH: [u64; 10] = [0x61, 0x60, 0x3f, 0x37, 0x2f, 0x27, 0x1f, 0x1e, 0x17, 0x16];
const PUN_D0: [u8; 14] = [0x06, 0x0e, 0x16, 0x1e, 0x27, 0x2f, 0x37, 0x3f, 0x60, 0x82, 0x9a, 0xce, 0xd6, 0xea];
const PUN_PER_WINDOW: usize = PUN_D0.len() * crate::patch::forms::INVALID_OPCODES.len();
/// Trampolines of Forms R and P (forms::trampoline), 128 bytes apart.
const BIG_STRIDE: usize = crate::patch::forms::TRAMP_MAX;
const BIG_ARENA_LEN: usize = 0x1_0000;

/// Allocation state; only touched under the patch lock.
pub struct Table {
    window: u64,
    next_slot: usize,
    next_hh: u64,
    arena: u64,
    next_tramp: usize,
    pun_window: u64,
    next_pun: usize,
    next_pun_hh: usize,
    big_arena: u64,
    next_big: usize,
}

impl Table {
    pub const fn new() -> Table {
        Table {
            window: 0,
            next_slot: SLOTS_PER_WINDOW,
            next_hh: FIRST_HH,
            arena: 0,
            next_tramp: SLOTS_PER_WINDOW,
            pun_window: 0,
            next_pun: PUN_PER_WINDOW,
            next_pun_hh: 0,
            big_arena: 0,
            next_big: BIG_ARENA_LEN / BIG_STRIDE,
        }
    }

    /// Use neither the current slot window nor the current trampoline arena
    /// any more (the launcher could not give them their protections back
    /// after writing them: a policy against making written memory
    /// executable): the next site maps new ones, written through
    /// /proc/self/mem.
    #[cfg_attr(not(feature = "launcher"), allow(dead_code))] // the launcher's
    pub fn abandon_window_and_arena(&mut self) {
        self.next_slot = SLOTS_PER_WINDOW;
        self.next_tramp = SLOTS_PER_WINDOW;
    }

    /// A slot whose address bytes 0, 1 and 3 are invalid opcodes.
    pub fn alloc_punned_slot(&mut self) -> Option<u64> {
        if self.next_pun == PUN_PER_WINDOW {
            loop {
                let hh = *PUN_HH.get(self.next_pun_hh)?;
                self.next_pun_hh += 1;
                if let Some(w) = map_at((hh << 24) | (SLOT_BYTE << 16)) {
                    self.pun_window = w;
                    self.next_pun = 0;
                    break;
                }
            }
        }
        let i = self.next_pun;
        self.next_pun += 1;
        let d0 = *PUN_D0.get(i % PUN_D0.len())? as u64;
        let d1 = *crate::patch::forms::INVALID_OPCODES.get(i / PUN_D0.len())? as u64;
        Some(self.pun_window | (d1 << 8) | d0)
    }

    /// A fresh 128-byte trampoline for Forms R and P.
    pub fn alloc_big_trampoline(&mut self) -> Option<u64> {
        if self.next_big == BIG_ARENA_LEN / BIG_STRIDE {
            self.big_arena = owned::map(BIG_ARENA_LEN, libc::PROT_READ | libc::PROT_EXEC).ok()?;
            self.next_big = 0;
        }
        let t = self.big_arena + (self.next_big * BIG_STRIDE) as u64;
        self.next_big += 1;
        Some(t)
    }

    /// A fresh slot address (0xHH06xxxx), mapping a new window if needed.
    pub fn alloc_slot(&mut self) -> Option<u64> {
        if self.next_slot == SLOTS_PER_WINDOW {
            self.window = self.map_window()?;
            self.next_slot = 0;
        }
        let slot = self.window + (self.next_slot * 8) as u64;
        self.next_slot += 1;
        Some(slot)
    }

    fn map_window(&mut self) -> Option<u64> {
        while self.next_hh >= LAST_HH {
            let base = (self.next_hh << 24) | (SLOT_BYTE << 16);
            self.next_hh -= 1;
            if PUN_HH.contains(&(base >> 24)) {
                continue; // kept for punned slots
            }
            if let Some(w) = map_at(base) {
                return Some(w);
            }
        }
        None
    }
}

/// Map a read-only window at `base`, never over a mapping of the program.
fn map_at(base: u64) -> Option<u64> {
    match raw::mmap_fixed_noreplace(base, WINDOW_LEN, libc::PROT_READ) {
        Ok(r) if r == base => {
            owned::add(base, WINDOW_LEN as u64);
            Some(base)
        }
        // An old kernel treated NOREPLACE as a hint: not ours to keep.
        Ok(r) => {
            // SAFETY: the fresh mapping just made, used by nothing.
            let _ = unsafe { raw::munmap(r, WINDOW_LEN) };
            None
        }
        Err(_) => None,
    }
}

impl Table {
    /// A fresh trampoline address, mapping a new arena if needed.
    pub fn alloc_trampoline(&mut self) -> Option<u64> {
        if self.next_tramp == SLOTS_PER_WINDOW {
            let a = owned::map(ARENA_LEN, libc::PROT_READ | libc::PROT_EXEC).ok()?;
            self.arena = a;
            self.next_tramp = 0;
        }
        let t = self.arena + (self.next_tramp * TRAMP_STRIDE) as u64;
        self.next_tramp += 1;
        Some(t)
    }
}

impl Table {
    /// The current slot window, trampoline arena, Form R/P trampoline arena
    /// and punned slot window, as (address, length) ((0, 0) when not mapped
    /// yet): what the launcher's loader patches use (a few dozen sites, far
    /// below one of each), handed to the library (see install::patch_loader).
    #[cfg_attr(not(feature = "launcher"), allow(dead_code))] // the launcher's
    pub fn regions(&self) -> [(u64, u64); 4] {
        let of = |at: u64, len: usize| if at != 0 { (at, len as u64) } else { (0, 0) };
        [
            of(self.window, WINDOW_LEN),
            of(self.arena, ARENA_LEN),
            of(self.big_arena, BIG_ARENA_LEN),
            of(self.pun_window, WINDOW_LEN),
        ]
    }
}
