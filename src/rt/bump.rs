//! The library's global allocator: a lock-free bump arena, usable in trap context.
//!
//! Only the instruction decoder (iced-x86, in `patch::site`) allocates: it
//! builds its opcode tables once, on first use (a few thousand small
//! allocations, a bounded amount in total), and never frees them. So:
//! - memory comes from anonymous mappings made through the gate
//!   ([`raw::mmap_anon`]): chunks of [`CHUNK`] bytes, and a mapping of its own
//!   for any request larger than [`BIG`];
//! - allocation is a compare-and-swap on the current chunk's offset: no lock,
//!   so a signal handler may allocate while the code it interrupted was
//!   allocating too (the interrupted CAS fails and retries);
//! - `dealloc` is a no-op: nothing is ever returned (realloc copies into a new
//!   block). Chunks are never unmapped once published, so a pointer to a chunk
//!   read by any thread stays valid forever.
//!
//! Out of memory gives a null pointer (the `alloc` crate then panics, which
//! the library's panic handler turns into an abort with a message).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

#[cfg(not(test))]
use crate::rt::raw;

/// Size of one arena chunk.
pub const CHUNK: usize = 256 * 1024;
/// Requests above this get their own mapping.
pub const BIG: usize = CHUNK / 4;
const PAGE: usize = 4096;

/// Header at the start of every chunk.
#[repr(C)]
struct Chunk {
    /// Address of the next free byte.
    next: AtomicUsize,
    /// Address one past the chunk's last byte.
    end: usize,
}

pub struct Bump {
    current: AtomicPtr<Chunk>,
    /// Bytes mapped so far (chunks and big blocks), for diagnostics.
    mapped: AtomicUsize,
}

impl Bump {
    pub const fn new() -> Bump {
        Bump { current: AtomicPtr::new(ptr::null_mut()), mapped: AtomicUsize::new(0) }
    }

    /// Bytes of memory mapped by this allocator so far.
    #[cfg(test)]
    pub fn mapped_bytes(&self) -> usize {
        self.mapped.load(Ordering::Relaxed)
    }

    fn map(&self, len: usize) -> Option<usize> {
        let p = map_rw(len)?;
        self.mapped.fetch_add(len, Ordering::Relaxed);
        Some(p)
    }

    /// A request with its own mapping (page-aligned; more for larger alignments).
    fn alloc_big(&self, size: usize, align: usize) -> *mut u8 {
        let extra = if align > PAGE { align } else { 0 };
        let Some(len) = size.checked_add(extra).and_then(round_to_page) else {
            return ptr::null_mut();
        };
        match self.map(len) {
            Some(base) => match align_up(base, align) {
                Some(p) => p as *mut u8,
                None => ptr::null_mut(),
            },
            None => ptr::null_mut(),
        }
    }
}

impl Default for Bump {
    fn default() -> Self {
        Bump::new()
    }
}

fn align_up(v: usize, align: usize) -> Option<usize> {
    // `align` is a power of two (Layout guarantees it).
    Some(v.checked_add(align - 1)? & !(align - 1))
}

fn round_to_page(v: usize) -> Option<usize> {
    align_up(v, PAGE)
}

/// Carve `size` bytes aligned to `align` from `chunk`, or None if it is full.
fn take(chunk: &Chunk, size: usize, align: usize) -> Option<*mut u8> {
    let mut cur = chunk.next.load(Ordering::Relaxed);
    loop {
        let start = align_up(cur, align)?;
        let end = start.checked_add(size)?;
        if end > chunk.end {
            return None;
        }
        match chunk.next.compare_exchange_weak(cur, end, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Some(start as *mut u8),
            Err(now) => cur = now,
        }
    }
}

// SAFETY: every block handed out is a distinct range of a live read-write
// mapping (ranges are claimed by CAS on a monotonically increasing offset, and
// mappings are never unmapped once published), aligned as requested and of at
// least the requested size.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let size = layout.size().max(1);
        let align = layout.align();
        if size > BIG || align > PAGE {
            return self.alloc_big(size, align);
        }
        loop {
            let c = self.current.load(Ordering::Acquire);
            if !c.is_null() {
                // SAFETY: published chunks stay mapped forever; the header was
                // initialised before the Release store that published it.
                if let Some(p) = take(unsafe { &*c }, size, align) {
                    return p;
                }
            }
            // Full (or none yet): map a new chunk and try to publish it.
            let Some(base) = self.map(CHUNK) else {
                return ptr::null_mut();
            };
            let fresh = base as *mut Chunk;
            // SAFETY: `base` is a fresh private read-write mapping of CHUNK
            // bytes, page-aligned, which nobody else can see yet.
            unsafe {
                fresh.write(Chunk { next: AtomicUsize::new(base + core::mem::size_of::<Chunk>()), end: base + CHUNK })
            };
            if self.current.compare_exchange(c, fresh, Ordering::AcqRel, Ordering::Acquire).is_err() {
                // Someone else (another thread, or a signal handler that
                // interrupted us) published a chunk first: use theirs.
                // SAFETY: our chunk, never published: nobody else saw it.
                unsafe { unmap(base, CHUNK) };
                self.mapped.fetch_sub(CHUNK, Ordering::Relaxed);
            }
        }
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {
        // Never freed: see the module documentation.
    }
}

#[cfg(not(test))]
fn map_rw(len: usize) -> Option<usize> {
    raw::mmap_anon(len, libc::PROT_READ | libc::PROT_WRITE).ok().map(|a| a as usize)
}

/// # Safety
/// `addr..addr+len` is a mapping of ours that nothing uses.
#[cfg(not(test))]
unsafe fn unmap(addr: usize, len: usize) {
    // SAFETY: the caller's contract.
    let _ = unsafe { raw::munmap(addr as u64, len) };
}

// Unit tests have no gate: map through libc there.
#[cfg(test)]
fn map_rw(len: usize) -> Option<usize> {
    // SAFETY: a fresh anonymous mapping; no existing memory is touched.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        Some(p as usize)
    }
}

/// # Safety
/// As the other `unmap`.
#[cfg(test)]
unsafe fn unmap(addr: usize, len: usize) {
    // SAFETY: the caller's contract.
    unsafe { libc::munmap(addr as *mut libc::c_void, len) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_aligned_distinct_and_writable() {
        let a = Bump::new();
        let mut blocks: Vec<(usize, usize)> = Vec::new();
        for i in 0..20_000usize {
            let size = 1 + (i * 37) % 700;
            let align = 1 << (i % 7);
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a valid layout of non-zero size.
            let p = unsafe { a.alloc(l) };
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0);
            // SAFETY: `p` is a fresh block of `size` bytes.
            unsafe { ptr::write_bytes(p, i as u8, size) };
            blocks.push((p as usize, size));
        }
        // Big and over-aligned requests.
        for (size, align) in [(BIG + 1, 8), (3 * CHUNK, 16), (100, 8192), (PAGE, 1 << 16)] {
            // SAFETY: a valid layout of non-zero size.
            let p = unsafe { a.alloc(Layout::from_size_align(size, align).unwrap()) };
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0);
            // SAFETY: `p` is a fresh block of `size` bytes.
            unsafe { ptr::write_bytes(p, 0xaa, size) };
            blocks.push((p as usize, size));
        }
        blocks.sort();
        for w in blocks.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "overlap: {:x?}", w);
        }
        assert!(a.mapped_bytes() >= 20_000 * 300);
    }

    #[test]
    fn concurrent_allocation() {
        static A: Bump = Bump::new();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut v = Vec::new();
                    for i in 0..5000usize {
                        let size = 8 + (i + t) % 200;
                        // SAFETY: a valid layout of non-zero size.
                        let p = unsafe { A.alloc(Layout::from_size_align(size, 8).unwrap()) };
                        assert!(!p.is_null());
                        // SAFETY: `p` is a fresh block of `size` bytes.
                        unsafe { ptr::write_bytes(p, t as u8, size) };
                        v.push((p as usize, size, t as u8));
                    }
                    v
                })
            })
            .collect();
        let mut all: Vec<(usize, usize, u8)> = threads.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort();
        for w in all.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0);
        }
        for &(p, size, t) in &all {
            // SAFETY: every block stays allocated (the arena never frees)
            // and was written above.
            let s = unsafe { std::slice::from_raw_parts(p as *const u8, size) };
            assert!(s.iter().all(|&b| b == t));
        }
    }
}
