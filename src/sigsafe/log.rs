//! Messages to stderr from trap context: a fixed buffer, no allocation, no
//! `core::fmt` (which can panic), one write(2) per line through the gate.

use crate::sigsafe::raw;

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
        let mut i = digits.len();
        let mut v = v;
        loop {
            i -= 1;
            if let Some(d) = digits.get_mut(i) {
                *d = b'0' + (v % 10) as u8;
            }
            v /= 10;
            if v == 0 || i == 0 {
                break;
            }
        }
        let tail = digits.get(i..).unwrap_or(&[]);
        let mut copy = [0u8; 20];
        let n = tail.len();
        if let Some(dst) = copy.get_mut(..n) {
            dst.copy_from_slice(tail);
        }
        self.bytes(copy.get(..n).unwrap_or(&[]))
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
