//! A JSON object written straight into a byte buffer, for `usertrap
//! trace`'s per-call lines: a serde_json `Value` per call (a map, a string
//! per argument) cost about 5 us a call, longer than the traced program
//! spent making it.
//!
//! The bytes are serde_json's own for the same object (no spaces, its
//! string escapes, its float form), so the trace reads the same whichever
//! way it was written; the caller gives the keys in serde_json's order
//! (sorted: its maps are BTreeMaps). timeline.rs's tests compare the two.

/// An object being written; `end` closes it.
pub struct Obj<'a> {
    buf: &'a mut Vec<u8>,
    first: bool,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl<'a> Obj<'a> {
    pub fn new(buf: &'a mut Vec<u8>) -> Obj<'a> {
        buf.push(b'{');
        Obj { buf, first: true }
    }

    /// `"k":`, after a comma unless first. The key is written as is (the
    /// callers' keys are plain ASCII).
    pub fn key(&mut self, k: &str) -> &mut Vec<u8> {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(k.as_bytes());
        self.buf.extend_from_slice(b"\":");
        self.buf
    }

    pub fn str(&mut self, k: &str, v: &str) {
        string(self.key(k), v.as_bytes());
    }

    pub fn int(&mut self, k: &str, v: impl itoa::Integer) {
        int(self.key(k), v);
    }

    pub fn bool(&mut self, k: &str, v: bool) {
        let b = self.key(k);
        b.extend_from_slice(if v { b"true" } else { b"false" });
    }

    /// A float as serde_json writes it.
    pub fn float(&mut self, k: &str, v: f64) {
        let b = self.key(k);
        // Writing to a Vec cannot fail (and a finite f64 always serializes).
        let _ = serde_json::to_writer(b, &v);
    }

    /// `ns / 1000` as the float serde_json writes for `ns as f64 / 1000.0`
    /// (see [`micros`]).
    pub fn micros(&mut self, k: &str, ns: i64) {
        micros(self.key(k), ns);
    }

    /// `"0x1f"`, as `format!("{v:#x}")` in a JSON string.
    pub fn hex(&mut self, k: &str, v: u64) {
        let b = self.key(k);
        b.push(b'"');
        hex(b, v);
        b.push(b'"');
    }

    /// `["0x1","0x2",...]`.
    pub fn hex_list(&mut self, k: &str, vs: &[u64]) {
        let b = self.key(k);
        b.push(b'[');
        for (i, &v) in vs.iter().enumerate() {
            if i > 0 {
                b.push(b',');
            }
            b.push(b'"');
            hex(b, v);
            b.push(b'"');
        }
        b.push(b']');
    }

    pub fn end(self) {
        self.buf.push(b'}');
    }
}

pub fn int(b: &mut Vec<u8>, v: impl itoa::Integer) {
    b.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Nanoseconds below which [`micros`] writes the digits itself: 2^50 ns
/// (13 days) is 1.1e12 us, where doubles lie 2.4e-4 apart, so the decimal
/// with three fractional digits is the one shortest string that reads back
/// as the double, and serde_json's float writer (the shortest, in plain
/// decimal form below 1e16) writes it.
const MICROS_EXACT: i64 = 1 << 50;

/// `ns / 1000` microseconds, the bytes serde_json writes for the float
/// `ns as f64 / 1000.0` (`1.5`, `0.003`, `7.0`), without the float: its
/// shortest-digits search was the largest single cost of a Perfetto slice
/// (two a call). Negative or huge values go to serde_json.
pub fn micros(b: &mut Vec<u8>, ns: i64) {
    if !(0..MICROS_EXACT).contains(&ns) {
        // Writing to a Vec cannot fail (and a finite f64 always serializes).
        let _ = serde_json::to_writer(b, &(ns as f64 / 1000.0));
        return;
    }
    int(b, ns / 1000);
    b.push(b'.');
    let frac = (ns % 1000) as u16;
    if frac == 0 {
        b.push(b'0');
        return;
    }
    let digits = [b'0' + (frac / 100) as u8, b'0' + (frac / 10 % 10) as u8, b'0' + (frac % 10) as u8];
    let len = if !frac.is_multiple_of(10) {
        3
    } else if !frac.is_multiple_of(100) {
        2
    } else {
        1
    };
    b.extend_from_slice(digits.get(..len).unwrap_or_default());
}

/// `0x` and lower-case hex digits, as `{:#x}`: written on the stack and
/// copied at once (a push a digit, each checking the room left, was most
/// of a JSON line's time: six arguments of up to 16 digits), all 18 bytes
/// (a copy of known length, inlined, not a call to memcpy), the unused
/// ones then cut.
pub fn hex(b: &mut Vec<u8>, v: u64) {
    let mut d = *b"0x0000000000000000";
    let digits = (64 - v.leading_zeros()).div_ceil(4).max(1) as usize;
    let mut rest = v;
    for x in d.get_mut(2..2 + digits).unwrap_or_default().iter_mut().rev() {
        *x = HEX[rest as usize & 0xf];
        rest >>= 4;
    }
    b.extend_from_slice(&d);
    b.truncate(b.len() - (16 - digits));
}

/// `s` (UTF-8) as a JSON string, escaped as serde_json escapes it.
pub fn string(b: &mut Vec<u8>, s: &[u8]) {
    b.push(b'"');
    let mut start = 0;
    for (i, &c) in s.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => &[],
            _ => continue,
        };
        b.extend_from_slice(&s[start..i]);
        if esc.is_empty() {
            b.extend_from_slice(b"\\u00");
            b.push(HEX[(c >> 4) as usize]);
            b.push(HEX[(c & 0xf) as usize]);
        } else {
            b.extend_from_slice(esc);
        }
        start = i + 1;
    }
    b.extend_from_slice(&s[start..]);
    b.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_serde_json_writes_them() {
        for s in ["", "plain", "a\"b\\c", "\n\r\t\x08\x0c\x01\x1f\x7f", "é/ü → x", "\u{0}end"] {
            let mut b = Vec::new();
            string(&mut b, s.as_bytes());
            assert_eq!(String::from_utf8(b).unwrap(), serde_json::to_string(s).unwrap(), "{s:?}");
        }
        for v in [0u64, 1, 0xf, 0x10, 0xdead_beef, u64::MAX] {
            let mut b = Vec::new();
            hex(&mut b, v);
            assert_eq!(String::from_utf8(b).unwrap(), format!("{v:#x}"));
        }
        // Every value to 200 us, around each power of ten, and a spread of
        // others up to the limit and past it.
        let powers = (0..19).map(|p| 10i64.pow(p)).flat_map(|t| [t - 1, t, t + 1]);
        let spread = (0..20_000i64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15u64 as i64).rem_euclid(MICROS_EXACT));
        let edges = [MICROS_EXACT - 1, MICROS_EXACT, MICROS_EXACT + 1, -1, -1500, i64::MAX, i64::MIN];
        for ns in (0..200_000).chain(powers).chain(spread).chain(edges) {
            let mut b = Vec::new();
            micros(&mut b, ns);
            assert_eq!(String::from_utf8(b).unwrap(), serde_json::to_string(&(ns as f64 / 1000.0)).unwrap(), "{ns}");
        }
        let mut b = Vec::new();
        let mut o = Obj::new(&mut b);
        o.int("a", -5i64);
        o.float("b", 1.5);
        o.float("c", 2.0);
        o.hex_list("d", &[0, 255]);
        o.str("e", "x");
        o.end();
        let v = serde_json::json!({"a": -5, "b": 1.5, "c": 2.0, "d": ["0x0", "0xff"], "e": "x"});
        assert_eq!(String::from_utf8(b).unwrap(), v.to_string());
    }
}
