//! The control entry the library (exec) and the `usertrap` command (a
//! static first program) hand the launcher in its environment:
//!
//! `USERTRAP_EXEC=<fd>:<seccomp armed 0|1>:<entries in front>:<LD_PRELOAD
//! prefixed 0|1>:<comm, hex>:<file name as passed>`
//!
//! - fd: the program's ELF file, open (not close-on-exec) for the launcher;
//! - seccomp armed: the process already carries the library's filter;
//! - entries in front: how many environment entries the library put before
//!   the program's own (right after this one), and whether LD_PRELOAD was
//!   prefixed with the library's path, so the new image can take them out
//!   again and the program sees the environment it passed;
//! - comm: the process name the kernel would give (at most 15 bytes,
//!   PR_SET_NAME's limit), in hex since it may hold any byte but NUL;
//! - the file name: AT_EXECFN, last so it may hold `:`.
//!
//! The launcher removes the entry before the program can see it. No kernel
//! header: this is usertrap's own protocol (the format is this file).

use crate::sink::{self, Sink};

/// The variable's name.
pub const NAME: &str = "USERTRAP_EXEC";
/// How the entry starts in an environment block.
pub const PREFIX: &[u8] = b"USERTRAP_EXEC=";
/// The most bytes of comm (TASK_COMM_LEN - 1).
pub const COMM_MAX: usize = 15;

/// The fields of the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control<'a> {
    pub fd: u32,
    pub seccomp_armed: bool,
    pub leading: u32,
    pub preload_prefixed: bool,
    /// At most COMM_MAX bytes are sent.
    pub comm: &'a [u8],
    pub execfn: &'a [u8],
}

impl Control<'_> {
    /// The value (what follows `USERTRAP_EXEC=`), without a NUL.
    pub fn encode_value(&self, s: &mut dyn Sink) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        sink::num(s, u64::from(self.fd));
        s.put(if self.seccomp_armed { b":1:" } else { b":0:" });
        sink::num(s, u64::from(self.leading));
        s.put(if self.preload_prefixed { b":1:" } else { b":0:" });
        for &b in self.comm.iter().take(COMM_MAX) {
            let hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
            let lo = HEX.get(usize::from(b & 15)).copied().unwrap_or(b'0');
            s.put(&[hi, lo]);
        }
        s.put(b":");
        s.put(self.execfn);
    }

    /// The whole entry, `USERTRAP_EXEC=...`, without a NUL.
    pub fn encode_entry(&self, s: &mut dyn Sink) {
        s.put(PREFIX);
        self.encode_value(s);
    }
}

/// A decoded entry: `comm` copied out of its hex, `execfn` pointing into
/// the decoded value (the launcher passes its address on as AT_EXECFN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub fd: u32,
    pub seccomp_armed: bool,
    pub leading: u32,
    pub preload_prefixed: bool,
    pub comm: [u8; COMM_MAX + 1],
    pub comm_len: usize,
    pub execfn: &'a [u8],
}

impl Decoded<'_> {
    pub fn comm(&self) -> &[u8] {
        self.comm.get(..self.comm_len).unwrap_or(&[])
    }
}

/// Decodes an environment entry: None unless it starts with PREFIX and
/// every field is well formed.
pub fn decode_entry(entry: &[u8]) -> Option<Decoded<'_>> {
    decode_value(entry.strip_prefix(PREFIX)?)
}

/// Decodes the value of the entry (what follows `USERTRAP_EXEC=`).
pub fn decode_value(value: &[u8]) -> Option<Decoded<'_>> {
    let mut parts = value.splitn(6, |&b| b == b':');
    let fd = number(parts.next()?)?;
    let seccomp_armed = flag(parts.next()?)?;
    let leading = number(parts.next()?)?;
    let preload_prefixed = flag(parts.next()?)?;
    let mut comm = [0u8; COMM_MAX + 1];
    let comm_len = from_hex(parts.next()?, comm.get_mut(..COMM_MAX)?)?;
    let execfn = parts.next()?;
    Some(Decoded { fd, seccomp_armed, leading, preload_prefixed, comm, comm_len, execfn })
}

/// A decimal of 1 to 9 digits (no sign, no overflow).
fn number(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 9 {
        return None;
    }
    s.iter().try_fold(0u32, |n, &b| b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0')))
}

fn flag(s: &[u8]) -> Option<bool> {
    match s {
        b"0" => Some(false),
        b"1" => Some(true),
        _ => None,
    }
}

/// The bytes `hex` spells (two digits each) into `out`; how many, or None
/// if it is not hex or does not fit.
fn from_hex(hex: &[u8], out: &mut [u8]) -> Option<usize> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut n = 0;
    for pair in hex.chunks(2) {
        let (&hi, &lo) = (pair.first()?, pair.get(1)?);
        *out.get_mut(n)? = digit(hi)? << 4 | digit(lo)?;
        n += 1;
    }
    Some(n)
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

    fn entry(c: &Control<'_>) -> Vec<u8> {
        let mut v = V(Vec::new());
        c.encode_entry(&mut v);
        v.0
    }

    #[test]
    fn round_trip() {
        let c = Control {
            fd: 7,
            seccomp_armed: true,
            leading: 3,
            preload_prefixed: false,
            comm: b"my:prog\x01\xff",
            execfn: b"/tmp/a:b/my:prog",
        };
        let e = entry(&c);
        assert_eq!(e, b"USERTRAP_EXEC=7:1:3:0:6d793a70726f6701ff:/tmp/a:b/my:prog");
        let d = decode_entry(&e).unwrap();
        assert_eq!((d.fd, d.seccomp_armed, d.leading, d.preload_prefixed), (7, true, 3, false));
        assert_eq!(d.comm(), c.comm);
        assert_eq!(d.execfn, c.execfn);
        assert_eq!(d.execfn.as_ptr(), e[e.len() - c.execfn.len()..].as_ptr(), "execfn points into the entry");
    }

    #[test]
    fn comm_is_cut_to_fifteen_bytes() {
        let c =
            Control { fd: 0, seccomp_armed: false, leading: 0, preload_prefixed: true, comm: &[b'x'; 20], execfn: b"" };
        let d = decode_entry(&entry(&c)).map(|d| (d.comm_len, d.preload_prefixed, d.execfn.len()));
        assert_eq!(d, Some((15, true, 0)));
    }

    #[test]
    fn malformed_entries_are_refused() {
        for bad in [
            &b"USERTRAP_EXEC="[..],
            b"USERTRAP_EXEC=7:1:3:0:61",
            b"USERTRAP_EXEC=:1:3:0:61:x",
            b"USERTRAP_EXEC=-7:1:3:0:61:x",
            b"USERTRAP_EXEC=1234567890:1:3:0:61:x",
            b"USERTRAP_EXEC=7:2:3:0:61:x",
            b"USERTRAP_EXEC=7:1:3:yes:61:x",
            b"USERTRAP_EXEC=7:1:3:0:6:x",
            b"USERTRAP_EXEC=7:1:3:0:zz:x",
            b"USERTRAP_EXEC=7:1:3:0:61616161616161616161616161616161:x",
            b"USERTRAP_EXECX=7:1:3:0:61:x",
            b"OTHER=7:1:3:0:61:x",
        ] {
            assert_eq!(decode_entry(bad), None, "{}", std::string::String::from_utf8_lossy(bad));
        }
        assert!(decode_value(b"7:0:0:0::").is_some(), "empty comm and name");
    }
}
