//! The report's formatter: a growing buffer in memory of our own (mmap),
//! with the few ways of writing numbers and strings the report needs.
//! Never: write to a descriptor (deliver.rs does).

use crate::rt::log::decimal;
use crate::rt::raw;

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

    pub(super) fn num(&mut self, v: u64) -> &mut Self {
        let mut d = [0u8; 20];
        let n = decimal(v, &mut d);
        self.bytes(d.get(..n).unwrap_or(&[]))
    }

    pub(super) fn pad(&mut self, len: usize, width: usize) -> &mut Self {
        for _ in len..width {
            self.bytes(b" ");
        }
        self
    }

    pub(super) fn pad_num(&mut self, v: u64, width: usize) -> &mut Self {
        let mut d = [0u8; 20];
        let n = decimal(v, &mut d);
        self.pad(n, width).num(v)
    }

    /// `v` with `dec` implied decimals (v = 1234, dec = 2 -> "12.34"),
    /// right-aligned in `width`.
    pub(super) fn fixed(&mut self, v: u64, dec: u32, width: usize) -> &mut Self {
        let p = 10u64.pow(dec);
        let (int, frac) = (v / p, v % p);
        let mut d = [0u8; 20];
        let n = decimal(int, &mut d);
        self.pad(n + 1 + dec as usize, width).num(int).bytes(b".");
        let mut f = [0u8; 20];
        let m = decimal(frac, &mut f);
        for _ in m..dec as usize {
            self.bytes(b"0");
        }
        self.bytes(f.get(..m).unwrap_or(&[]))
    }

    /// A duration: "123ns", "12.34us", "1.23ms", "1.23s", right-aligned.
    pub(super) fn dur(&mut self, ns: u64, width: usize) -> &mut Self {
        let (v, unit) = if ns < 1000 {
            (ns * 100, "ns")
        } else if ns < 1_000_000 {
            (ns / 10, "us")
        } else if ns < 1_000_000_000 {
            (ns / 10_000, "ms")
        } else {
            (ns / 10_000_000, "s")
        };
        if unit == "ns" {
            let mut d = [0u8; 20];
            let n = decimal(ns, &mut d);
            return self.pad(n + 2, width).num(ns).str("ns");
        }
        self.fixed(v, 2, width - unit.len()).str(unit)
    }

    pub(super) fn hex(&mut self, v: u64) -> &mut Self {
        self.bytes(b"0x");
        let mut started = false;
        for shift in (0..16).rev() {
            let d = ((v >> (shift * 4)) & 0xf) as u8;
            if d != 0 || started || shift == 0 {
                started = true;
                self.bytes(&[if d < 10 { b'0' + d } else { b'a' + d - 10 }]);
            }
        }
        self
    }

    /// A JSON string's contents, escaped.
    pub(super) fn json_str(&mut self, s: &[u8]) -> &mut Self {
        for &c in s {
            match c {
                b'"' => self.bytes(b"\\\""),
                b'\\' => self.bytes(b"\\\\"),
                0..=0x1f | 0x7f.. => {
                    let hexd = |n: u8| if n < 10 { b'0' + n } else { b'a' + n - 10 };
                    // Non-ASCII bytes of a name are replaced, keeping the JSON valid UTF-8.
                    if c >= 0x7f {
                        self.bytes(b"?")
                    } else {
                        self.bytes(&[b'\\', b'u', b'0', b'0', hexd(c >> 4), hexd(c & 15)])
                    }
                }
                _ => self.bytes(&[c]),
            };
        }
        self
    }
}
