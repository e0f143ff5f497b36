//! The report's buffer: a growing buffer in memory of our own (mmap), a
//! `Sink` for usertrap-core's renderers and number formatting.
//! Never: write to a descriptor (deliver.rs does).

use crate::rt::raw;
use usertrap_core::sink::{self, Sink};

/// The report being built: a private mapping that grows (mremap) as
/// needed; no allocator. If it cannot grow, the report is dropped whole
/// (`data` is None) rather than delivered cut short.
pub(super) struct Out {
    pub(super) base: u64,
    pub(super) cap: usize,
    pub(super) len: usize,
    pub(super) oom: bool,
}

pub(super) const OUT_START: usize = 64 * 1024;

impl Drop for Out {
    fn drop(&mut self) {
        if self.base != 0 {
            // SAFETY: our own mapping; `data()` borrows self, so no slice of
            // it outlives this.
            let _ = unsafe { raw::munmap(self.base, self.cap) };
        }
    }
}

impl Out {
    pub(super) fn new() -> Out {
        match raw::mmap_anon(OUT_START, libc::PROT_READ | libc::PROT_WRITE) {
            Ok(base) => Out { base, cap: OUT_START, len: 0, oom: false },
            Err(_) => Out { base: 0, cap: 0, len: 0, oom: true },
        }
    }

    pub(super) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        if self.oom {
            return self;
        }
        if self.len + b.len() > self.cap {
            let want = (self.cap * 2).max((self.len + b.len() + 4095) & !4095);
            // SAFETY: our own mapping, no slice of which is alive (`data()`
            // borrows self); MAYMOVE without FIXED replaces nothing.
            let r = unsafe { raw::mremap(self.base, self.cap as u64, want as u64, libc::MREMAP_MAYMOVE, 0) };
            let Ok(new_base) = r else {
                self.oom = true;
                return self;
            };
            self.base = new_base;
            self.cap = want;
        }
        // SAFETY: [base, base + cap) is our own read-write mapping and
        // len + b.len() <= cap; `b` is a live slice elsewhere.
        unsafe { core::ptr::copy_nonoverlapping(b.as_ptr(), (self.base as *mut u8).add(self.len), b.len()) };
        self.len += b.len();
        self
    }

    pub(super) fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// The whole report, or None if memory ran out while building it.
    pub(super) fn data(&self) -> Option<&[u8]> {
        if self.oom {
            return None;
        }
        // SAFETY: the first `len` bytes of our mapping, written above; the
        // mapping lives until `self` is dropped.
        Some(unsafe { core::slice::from_raw_parts(self.base as *const u8, self.len) })
    }

    /// `v` in decimal.
    pub(super) fn num(&mut self, v: u64) -> &mut Self {
        sink::num(self, v);
        self
    }

    /// `v` in hexadecimal, `0x...`.
    pub(super) fn hex(&mut self, v: u64) -> &mut Self {
        sink::hex(self, v);
        self
    }

    /// A JSON string's contents, escaped.
    pub(super) fn json_str(&mut self, s: &[u8]) -> &mut Self {
        sink::json_str(self, s);
        self
    }

    /// A JSON field's name and colon, after a comma unless it is the
    /// object's first: `,"pid":`.
    pub(super) fn key(&mut self, first: bool, key: &str) -> &mut Self {
        self.str(if first { "\"" } else { ",\"" }).str(key).str("\":")
    }
}

/// usertrap-core's renderers write here.
impl Sink for Out {
    fn put(&mut self, bytes: &[u8]) {
        self.bytes(bytes);
    }
}
