//! Where the `.eh_frame` of objects without `.eh_frame_hdr` lies, as the
//! launcher found it in their section headers (static programs linked
//! without --eh-frame-hdr); written before the program starts, only read
//! afterwards.

// ---------------------------------------------------------------------------
// .eh_frame without its index: objects the launcher loaded (static programs
// linked without --eh-frame-hdr, as `gcc -static` does by default).

/// Objects whose `.eh_frame` the launcher located (header address, start,
/// length), written before the program starts and only read afterwards.
pub(super) const MAX_HINTS: usize = 4;
pub(super) struct Hints(core::cell::UnsafeCell<[(u64, u64, u64); MAX_HINTS]>);
// SAFETY: written only by the launcher, single-threaded, before the program
// (and so any reader) runs; read-only from then on.
unsafe impl Sync for Hints {}
pub(super) static EH_FRAME_HINTS: Hints = Hints(core::cell::UnsafeCell::new([(0, 0, 0); MAX_HINTS]));

/// The launcher, before the program runs: the object whose ELF header is
/// mapped at `header` has its `.eh_frame` at [start, start + len).
#[cfg_attr(not(feature = "launcher"), allow(dead_code))]
pub fn add_eh_frame_hint(header: u64, start: u64, len: u64) {
    // SAFETY: see `Hints`.
    let hints = unsafe { &mut *EH_FRAME_HINTS.0.get() };
    if let Some(slot) = hints.iter_mut().find(|h| h.0 == 0) {
        *slot = (header, start, len);
    }
}

pub(super) fn eh_frame_hint(header: u64) -> Option<(u64, u64)> {
    // SAFETY: see `Hints`.
    let hints = unsafe { &*EH_FRAME_HINTS.0.get() };
    hints.iter().find(|h| h.0 == header && h.0 != 0).map(|h| (h.1, h.2))
}
