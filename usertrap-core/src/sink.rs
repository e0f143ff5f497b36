//! Where renderers write, and the number formatting they use: integers and
//! fixed-point decimals without `core::fmt` (which the library cannot use in
//! trap context), right-aligned in a width as `format!("{:>w$}")` would.

/// A destination for bytes that cannot fail: a caller that can run out of
/// room (a fixed buffer) records that itself and drops the rest.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

/// A fixed buffer: what fits is kept, the rest is counted as lost.
pub struct SliceSink<'a> {
    buf: &'a mut [u8],
    len: usize,
    lost: bool,
}

impl<'a> SliceSink<'a> {
    pub fn new(buf: &'a mut [u8]) -> SliceSink<'a> {
        SliceSink { buf, len: 0, lost: false }
    }

    /// The bytes written so far.
    pub fn written(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// Whether something did not fit.
    pub fn overflowed(&self) -> bool {
        self.lost
    }
}

impl Sink for SliceSink<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.len.saturating_add(bytes.len());
        match self.buf.get_mut(self.len..end) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len = end;
            }
            None => self.lost = true,
        }
    }
}

/// `v` in decimal into `out`, right-aligned; returns the digits' slice.
pub fn decimal(v: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut i = out.len();
    let mut v = v;
    loop {
        i = i.saturating_sub(1);
        if let Some(d) = out.get_mut(i) {
            *d = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    out.get(i..).unwrap_or(&[])
}

/// `width - len` spaces (none if `len >= width`).
pub fn pad(s: &mut dyn Sink, len: usize, width: usize) {
    const SPACES: &[u8; 32] = b"                                ";
    let mut n = width.saturating_sub(len);
    while n > 0 {
        let k = n.min(SPACES.len());
        s.put(SPACES.get(..k).unwrap_or(&[]));
        n -= k;
    }
}

/// `v` in decimal.
pub fn num(s: &mut dyn Sink, v: u64) {
    let mut d = [0u8; 20];
    s.put(decimal(v, &mut d));
}

/// A signed `v` in decimal.
pub fn signed(s: &mut dyn Sink, v: i64) {
    if v < 0 {
        s.put(b"-");
    }
    num(s, v.unsigned_abs());
}

/// `bytes` right-aligned in `width`.
pub fn right(s: &mut dyn Sink, bytes: &[u8], width: usize) {
    pad(s, bytes.len(), width);
    s.put(bytes);
}

/// `v` in decimal, right-aligned in `width`.
pub fn num_right(s: &mut dyn Sink, v: u64, width: usize) {
    let mut d = [0u8; 20];
    right(s, decimal(v, &mut d), width);
}

/// `v` in lower-case hexadecimal with `0x` (`0x0` for 0).
pub fn hex(s: &mut dyn Sink, v: u64) {
    let mut out = [0u8; 18];
    let mut i = out.len();
    let mut v = v;
    loop {
        i = i.saturating_sub(1);
        let d = (v & 0xf) as u8;
        if let Some(c) = out.get_mut(i) {
            *c = if d < 10 { b'0' + d } else { b'a' + d - 10 };
        }
        v >>= 4;
        if v == 0 || i <= 2 {
            break;
        }
    }
    s.put(b"0x");
    s.put(out.get(i..).unwrap_or(&[]));
}

/// 10^`dec` (`dec` at most 19).
const fn pow10(dec: u32) -> u128 {
    let mut p = 1u128;
    let mut i = 0;
    while i < dec && i < 19 {
        p *= 10;
        i += 1;
    }
    p
}

/// `num / den` rounded to the nearest integer, halves up (0 if `den` is 0).
pub fn div_round(num: u128, den: u128) -> u128 {
    if den == 0 {
        return 0;
    }
    let q = num / den;
    // Compare the remainder with half the divisor without overflow.
    if num % den >= den - den / 2 {
        q + 1
    } else {
        q
    }
}

/// `num / den` with `dec` decimals (rounded to nearest, halves up),
/// right-aligned in `width`: (1, 8, 2) -> "0.13". What `{:>width$.dec$}`
/// prints for the exact quotient, except that it rounds exact halves up
/// where binary floating point rounds the nearest double.
pub fn fixed(s: &mut dyn Sink, num: u128, den: u128, dec: u32, width: usize) {
    let dec = dec.min(19);
    let p = pow10(dec);
    let scaled = div_round(num.saturating_mul(p), den);
    let int = scaled / p;
    let frac = (scaled % p) as u64;
    let mut d = [0u8; 20];
    let int = u64::try_from(int).unwrap_or(u64::MAX);
    let digits = decimal(int, &mut d);
    let len = digits.len().saturating_add(if dec > 0 { 1 + dec as usize } else { 0 });
    pad(s, len, width);
    s.put(digits);
    if dec > 0 {
        s.put(b".");
        let mut f = [0u8; 20];
        let fd = decimal(frac, &mut f);
        pad_zeros(s, fd.len(), dec as usize);
        s.put(fd);
    }
}

fn pad_zeros(s: &mut dyn Sink, len: usize, width: usize) {
    for _ in len..width {
        s.put(b"0");
    }
}

/// A duration of `num / den` nanoseconds as the report table shows it:
/// `850ns` (whole nanoseconds below 1 us), then two decimals in the largest
/// unit that keeps the value under 1000: `12.34us`, `2.10ms`, `1.50s`
/// (rounded to nearest; a value that rounds to 1000 of a unit moves up).
/// Right-aligned in `width`.
pub fn duration(s: &mut dyn Sink, num: u128, den: u128, width: usize) {
    let ns = div_round(num, den);
    if ns < 1000 {
        let mut d = [0u8; 20];
        let digits = decimal(ns as u64, &mut d);
        pad(s, digits.len() + 2, width);
        s.put(digits);
        s.put(b"ns");
        return;
    }
    let units: [(&[u8], u128); 2] = [(b"us", 1_000), (b"ms", 1_000_000)];
    for (unit, per) in units {
        // Hundredths of the unit.
        if div_round(num.saturating_mul(100), den.saturating_mul(per)) < 100_000 {
            fixed(s, num, den.saturating_mul(per), 2, width.saturating_sub(2));
            s.put(unit);
            return;
        }
    }
    fixed(s, num, den.saturating_mul(1_000_000_000), 2, width.saturating_sub(1));
    s.put(b"s");
}

/// Bytes of a JSON string's contents: `"` and `\` escaped, control bytes as
/// `\u00XX`, bytes from 0x7f up replaced by `?` (keeps the JSON valid UTF-8
/// whatever a process name holds).
pub fn json_str(s: &mut dyn Sink, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &c in bytes {
        match c {
            b'"' => s.put(b"\\\""),
            b'\\' => s.put(b"\\\\"),
            0x7f.. => s.put(b"?"),
            0..=0x1f => {
                let hi = HEX.get(usize::from(c >> 4)).copied().unwrap_or(b'0');
                let lo = HEX.get(usize::from(c & 15)).copied().unwrap_or(b'0');
                s.put(&[b'\\', b'u', b'0', b'0', hi, lo]);
            }
            _ => s.put(&[c]),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    struct V(Vec<u8>);
    impl Sink for V {
        fn put(&mut self, b: &[u8]) {
            self.0.extend_from_slice(b);
        }
    }

    fn with(f: impl FnOnce(&mut dyn Sink)) -> std::string::String {
        let mut v = V(Vec::new());
        f(&mut v);
        std::string::String::from_utf8(v.0).unwrap()
    }

    #[test]
    fn integers_and_hex() {
        assert_eq!(with(|s| num(s, 0)), "0");
        assert_eq!(with(|s| num(s, u64::MAX)), "18446744073709551615");
        assert_eq!(with(|s| signed(s, i64::MIN)), "-9223372036854775808");
        assert_eq!(with(|s| num_right(s, 42, 6)), "    42");
        assert_eq!(with(|s| num_right(s, 1234567, 3)), "1234567");
        assert_eq!(with(|s| hex(s, 0)), "0x0");
        assert_eq!(with(|s| hex(s, 0x7f00_dead_beef)), "0x7f00deadbeef");
        assert_eq!(with(|s| hex(s, u64::MAX)), "0xffffffffffffffff");
    }

    #[test]
    fn fixed_point_rounds_to_nearest() {
        assert_eq!(with(|s| fixed(s, 1, 8, 2, 7)), "   0.13");
        assert_eq!(with(|s| fixed(s, 100, 1, 2, 7)), " 100.00");
        assert_eq!(with(|s| fixed(s, 1_500, 1_000_000_000, 6, 11)), "   0.000002");
        assert_eq!(with(|s| fixed(s, 2, 3, 1, 0)), "0.7");
        assert_eq!(with(|s| fixed(s, 5, 0, 1, 0)), "0.0");
        assert!(with(|s| fixed(s, u128::MAX, 1, 2, 0)).starts_with("18446744073709551615."));
        assert_eq!(div_round(5, 2), 3);
        assert_eq!(div_round(4, 3), 1);
        assert_eq!(div_round(u128::MAX, u128::MAX), 1);
    }

    #[test]
    fn durations_like_the_table() {
        assert_eq!(with(|s| duration(s, 0, 1, 0)), "0ns");
        assert_eq!(with(|s| duration(s, 8504, 10, 0)), "850ns");
        assert_eq!(with(|s| duration(s, 9995, 10, 0)), "1.00us");
        assert_eq!(with(|s| duration(s, 12_340, 1, 0)), "12.34us");
        assert_eq!(with(|s| duration(s, 999_999, 1, 0)), "1.00ms");
        assert_eq!(with(|s| duration(s, 2_100_000, 1, 10)), "    2.10ms");
        assert_eq!(with(|s| duration(s, 1_500_000_000, 1, 0)), "1.50s");
        assert_eq!(with(|s| duration(s, u128::MAX, 1, 0)).len(), "18446744073709551615.00s".len());
        assert_eq!(with(|s| duration(s, 7, 0, 4)), " 0ns");
    }

    #[test]
    fn slice_sink_keeps_what_fits() {
        let mut b = [0u8; 4];
        let mut s = SliceSink::new(&mut b);
        s.put(b"ab");
        s.put(b"cde");
        assert_eq!(s.written(), b"ab");
        assert!(s.overflowed());
    }

    #[test]
    fn json_strings() {
        assert_eq!(with(|s| json_str(s, b"a\"b\\c\n\x01\xff")), "a\\\"b\\\\c\\u000a\\u0001?");
    }
}
