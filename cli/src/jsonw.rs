//! JSON values written straight into a byte buffer, for `usertrap
//! trace`'s per-call lines: a serde_json `Value` per call (a map, a string
//! per argument) cost about 5 us a call, longer than the traced program
//! spent making it.
//!
//! The bytes are serde_json's own for the same values (no spaces, its
//! string escapes, its float form), so the trace reads the same whichever
//! way it was written; the callers write the keys, in serde_json's order
//! (sorted: its maps are BTreeMaps), as constant fragments.
//! timeline.rs's tests compare whole lines, these tests each writer.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The two hex digits of each byte.
const HEX_PAIRS: [[u8; 2]; 256] = {
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 0xf]];
        i += 1;
    }
    t
};

/// The bytes a JSON string cannot hold as they are: controls, `"`, `\`.
const MUST_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

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

/// `0x` and lower-case hex digits, as `{:#x}`: the digits shifted to
/// the top of the word, written two a byte from a table into a buffer on
/// the stack (no loop whose length depends on the value: a branch that
/// mispredicts, six arguments a call), copied whole (a copy of known
/// length, inlined, not a call to memcpy), the unused ones then cut.
pub fn hex(b: &mut Vec<u8>, v: u64) {
    let digits = (64 - v.leading_zeros()).div_ceil(4).max(1) as usize;
    let top = (v << (64 - 4 * digits)).to_be_bytes();
    let mut d = *b"0x0000000000000000";
    for (pair, &byte) in d[2..].chunks_exact_mut(2).zip(&top) {
        pair.copy_from_slice(&HEX_PAIRS[byte as usize]);
    }
    b.extend_from_slice(&d);
    b.truncate(b.len() - (16 - digits));
}

/// `"0x1f"`: [`hex`] in a JSON string.
pub fn hex_str(b: &mut Vec<u8>, v: u64) {
    b.push(b'"');
    hex(b, v);
    b.push(b'"');
}

/// `["0x1","0x2",...]`.
pub fn hex_array(b: &mut Vec<u8>, vs: &[u64]) {
    b.push(b'[');
    for (i, &v) in vs.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        hex_str(b, v);
    }
    b.push(b']');
}

/// `s` (UTF-8) as a JSON string, escaped as serde_json escapes it.
pub fn string(b: &mut Vec<u8>, s: &[u8]) {
    b.push(b'"');
    escaped(b, s);
    b.push(b'"');
}

/// `s` (UTF-8) escaped as in a JSON string, without the quotes. Most
/// strings (paths, names) need no escape: checked first by table, then
/// copied at once.
pub fn escaped(b: &mut Vec<u8>, s: &[u8]) {
    if !s.iter().any(|&c| MUST_ESCAPE[c as usize]) {
        b.extend_from_slice(s);
        return;
    }
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
            b.extend_from_slice(&HEX_PAIRS[c as usize]);
        } else {
            b.extend_from_slice(esc);
        }
        start = i + 1;
    }
    b.extend_from_slice(&s[start..]);
}

/// `s` escaped as in a JSON string, then that escaped again: a JSON
/// string (without its quotes) inside a JSON string.
pub fn escaped_twice(b: &mut Vec<u8>, s: &[u8]) {
    if !s.iter().any(|&c| MUST_ESCAPE[c as usize]) {
        b.extend_from_slice(s);
        return;
    }
    let mut once = Vec::with_capacity(2 * s.len());
    escaped(&mut once, s);
    escaped(b, &once);
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
        hex_array(&mut b, &[0, 255, u64::MAX]);
        assert_eq!(String::from_utf8(b).unwrap(), serde_json::json!(["0x0", "0xff", "0xffffffffffffffff"]).to_string());
    }

    /// Every digit count, and every digit in every place (each byte, each
    /// nibble), as `{:#x}` writes them.
    #[test]
    fn hex_as_format_writes_it() {
        let mut values = vec![0u64, u64::MAX];
        for shift in 0..64 {
            values.extend([1u64 << shift, (1u64 << shift) - 1, (1u64 << shift) | 1, u64::MAX >> shift]);
        }
        for byte in 0..=255u64 {
            for place in 0..8 {
                values.extend([byte << (8 * place), (byte << (8 * place)) | 0x0f00_0000_0000_0000]);
            }
        }
        values.extend((0..50_000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (i % 64)));
        let mut b = Vec::new();
        for v in values {
            b.clear();
            b.extend_from_slice(b"x");
            hex(&mut b, v);
            assert_eq!(std::str::from_utf8(&b).unwrap(), format!("x{v:#x}"));
        }
    }

    /// Every character below 0x100 alone, at the start, middle and end of
    /// plain text, and escapes side by side, as serde_json escapes them.
    #[test]
    fn strings_as_serde_json_escapes_them() {
        let mut cases: Vec<String> = Vec::new();
        for c in (0..0x100u32).filter_map(char::from_u32) {
            cases.extend([c.to_string(), format!("{c}/usr/lib"), format!("/usr{c}lib"), format!("/usr/lib{c}")]);
        }
        cases.extend(["\"\"\\\\\n\n".to_string(), "a".repeat(300) + "\"", "é\u{1}ü\u{7f}→\u{1f}".to_string()]);
        let mut b = Vec::new();
        for s in &cases {
            b.clear();
            string(&mut b, s.as_bytes());
            assert_eq!(std::str::from_utf8(&b).unwrap(), serde_json::to_string(s).unwrap(), "{s:?}");
            b.clear();
            b.push(b'"');
            escaped_twice(&mut b, s.as_bytes());
            b.push(b'"');
            let once = serde_json::to_string(s).unwrap();
            let twice = serde_json::to_string(&once[1..once.len() - 1]).unwrap();
            assert_eq!(std::str::from_utf8(&b).unwrap(), twice, "{s:?}");
        }
    }
}
