//! Messages to stderr from trap context: a fixed buffer, no allocation, no
//! `core::fmt` (which can panic), one write(2) per line through the gate.

use crate::sigsafe::raw;

/// `v` in decimal at the start of `out`; returns how many digits.
pub fn decimal(v: u64, out: &mut [u8; 20]) -> usize {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let mut v = v;
    loop {
        i -= 1;
        if let Some(d) = tmp.get_mut(i) {
            *d = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    let n = tmp.len() - i;
    if let (Some(dst), Some(src)) = (out.get_mut(..n), tmp.get(i..)) {
        dst.copy_from_slice(src);
    }
    n
}

/// Appends bytes to a fixed buffer, dropping what does not fit (never
/// panics, never allocates). `len` is how much was written.
pub struct Buf<'a> {
    pub buf: &'a mut [u8],
    pub len: usize,
}

impl<'a> Buf<'a> {
    pub fn new(buf: &'a mut [u8]) -> Buf<'a> {
        Buf { buf, len: 0 }
    }

    pub fn put(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
        self
    }

    pub fn num(&mut self, v: u64) -> &mut Self {
        let mut d = [0u8; 20];
        let n = decimal(v, &mut d);
        self.put(d.get(..n).unwrap_or(&[]))
    }

    /// Each byte as two lowercase hex digits (names that may hold any byte,
    /// inside a `:`-separated field).
    pub fn hex_bytes(&mut self, bytes: &[u8]) -> &mut Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for &b in bytes {
            self.put(&[DIGITS[(b >> 4) as usize], DIGITS[(b & 15) as usize]]);
        }
        self
    }
}

pub struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    /// A line that starts with "usertrap: ".
    pub fn new() -> Line {
        let mut l = Line { buf: [0; 512], len: 0 };
        l.str("usertrap: ");
        l
    }

    pub fn str(&mut self, s: &str) -> &mut Line {
        self.bytes(s.as_bytes())
    }

    pub fn bytes(&mut self, s: &[u8]) -> &mut Line {
        for &b in s {
            // Keep one byte for the newline; truncate the rest.
            if self.len + 1 < self.buf.len() {
                if let Some(slot) = self.buf.get_mut(self.len) {
                    *slot = b;
                    self.len += 1;
                }
            }
        }
        self
    }

    pub fn num(&mut self, v: u64) -> &mut Line {
        let mut digits = [0u8; 20];
        let n = decimal(v, &mut digits);
        self.bytes(digits.get(..n).unwrap_or(&[]))
    }

    /// Write the line (with its newline) to stderr.
    pub fn emit(&mut self) {
        self.emit_to(2);
    }

    /// Write the line (with its newline) to `fd`, in one write.
    pub fn emit_to(&mut self, fd: i32) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b'\n';
        }
        let n = (self.len + 1).min(self.buf.len());
        raw::write_all(fd, self.buf.get(..n).unwrap_or(&[]));
    }
}
