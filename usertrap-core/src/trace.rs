//! `usertrap trace`: the events the library records and sends to the
//! collector, as bytes (written in trap context by the library, read by the
//! command), and which argument of a syscall is a path the library copies
//! into its event.
//!
//! One event: [`HEAD`] bytes of little-endian fields (below), then, for a
//! path-taking call, the path's first bytes (at most [`PATH_CAP`]), padded
//! with zeros to a multiple of 8. A message of the collector protocol
//! (docs/report-schema.md, "Trace messages") carries a run of events.

/// Bytes of an event before its path.
pub const HEAD: usize = 96;
/// The most bytes of a path kept in an event (longer ones are cut, and
/// flagged [`CUT`]).
pub const PATH_CAP: usize = 256;
/// The largest event.
pub const MAX_EVENT: usize = HEAD + PATH_CAP;

/// A thread's buffer (a memfd the collector keeps, or a private mapping):
/// a header, room for a message's first line, then the events. The header
/// words the command reads from a kept buffer (little-endian, 8 bytes
/// each) are at these offsets; docs/report-schema.md, "Trace messages".
pub mod buffer {
    /// The whole mapping (the memfd's size).
    pub const LEN: usize = 128 * 1024;
    /// Bytes of events written and not yet handed to a message.
    pub const LEN_AT: usize = 8;
    /// Events in those bytes.
    pub const COUNT_AT: usize = 16;
    /// Events dropped since the last message was sent.
    pub const DROPPED_AT: usize = 24;
    /// The number of the last message begun from this buffer whose events
    /// are still at its start (0: none): the command skips that many
    /// events if the message arrived.
    pub const SENDING_AT: usize = 32;
    /// The header's size: the message's first line is written after it.
    pub const LINE_AT: usize = 64;
    pub const LINE_ROOM: usize = 192;
    /// Where the events start.
    pub const DATA_AT: usize = LINE_AT + LINE_ROOM;
}

/// Flag: the call came through a patched site's trampoline (else a signal).
pub const FAST: u16 = 1;
/// Flag: recorded before the call ran, which may not return (execve,
/// exit_group, exit): `result` and `ticks` are 0. An execve that fails is
/// recorded again when it returns.
pub const PENDING: u16 = 2;
/// Flag: the path was longer than [`PATH_CAP`] (or unreadable past it).
pub const CUT: u16 = 4;
/// Flag: the path pointer could not be read (EFAULT): no path.
pub const BAD_PATH: u16 = 8;

/// One intercepted call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// When the call started, in the process's clock ticks (the message
    /// says how ticks map to time).
    pub start: u64,
    /// Its duration in ticks (0 when PENDING).
    pub ticks: u64,
    /// Syscall number (i386 numbers have I386_FLAG set, as in the library).
    pub nr: i64,
    /// The raw result: -4095..-1 is an errno.
    pub result: i64,
    pub args: [u64; 6],
    /// The address right after the site's syscall instruction.
    pub site: u64,
    pub tid: u32,
    pub flags: u16,
    /// Bytes of path that follow the head.
    pub path_len: u16,
}

/// Bytes an event with a path of `path_len` bytes takes.
pub const fn event_len(path_len: usize) -> usize {
    HEAD + ((path_len + 7) & !7)
}

fn put(out: &mut [u8], at: usize, bytes: [u8; 8]) {
    if let Some(d) = out.get_mut(at..at + 8) {
        d.copy_from_slice(&bytes);
    }
}

fn get(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        v.copy_from_slice(s);
    }
    u64::from_le_bytes(v)
}

/// Writes the head of `e` into `out` (which must hold HEAD bytes; nothing
/// is written past it). The path, if any, is the caller's to place after it.
#[inline(always)]
pub fn encode_head(out: &mut [u8], e: &Event) {
    put(out, 0, e.start.to_le_bytes());
    put(out, 8, e.ticks.to_le_bytes());
    put(out, 16, e.nr.to_le_bytes());
    put(out, 24, e.result.to_le_bytes());
    let mut i = 0;
    while i < 6 {
        put(out, 32 + 8 * i, e.args.get(i).copied().unwrap_or(0).to_le_bytes());
        i += 1;
    }
    put(out, 80, e.site.to_le_bytes());
    let last = (e.tid as u64) | (e.flags as u64) << 32 | (e.path_len as u64) << 48;
    put(out, 88, last.to_le_bytes());
}

/// The event at the start of `b`, its path bytes and the bytes it takes;
/// None if `b` is shorter than the event.
pub fn decode(b: &[u8]) -> Option<(Event, &[u8], usize)> {
    if b.len() < HEAD {
        return None;
    }
    let last = get(b, 88);
    let mut args = [0u64; 6];
    for (i, a) in args.iter_mut().enumerate() {
        *a = get(b, 32 + 8 * i);
    }
    let e = Event {
        start: get(b, 0),
        ticks: get(b, 8),
        nr: get(b, 16) as i64,
        result: get(b, 24) as i64,
        args,
        site: get(b, 80),
        tid: last as u32,
        flags: (last >> 32) as u16,
        path_len: (last >> 48) as u16,
    };
    let len = event_len(e.path_len as usize);
    let path = b.get(HEAD..HEAD + e.path_len as usize)?;
    if b.len() < len {
        return None;
    }
    Some((e, path, len))
}

/// Which argument of x86-64 syscall `nr` is a path (a NUL-terminated
/// string the kernel reads), for the ones `usertrap trace` shows by name.
pub fn path_arg(nr: i64) -> Option<usize> {
    Some(match nr {
        2 | 4 | 6 | 21 | 59 | 76 | 80 | 82 | 83 | 84 | 85 | 86 | 87 | 88 | 89 | 90 | 92 | 94 | 132 | 133 | 137
        | 161 | 163 | 188 | 189 | 191 | 192 | 194 | 195 | 197 | 198 | 235 | 266 => 0,
        254 | 257 | 258 | 259 | 260 | 261 | 262 | 263 | 264 | 265 | 267 | 268 | 269 | 280 | 303 | 316 | 322 | 332
        | 437 | 439 | 452 => 1,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_reads_back() {
        let e = Event {
            start: 1 << 40,
            ticks: 12345,
            nr: 257,
            result: -2,
            args: [u64::MAX, 2, 3, 4, 5, 6],
            site: 0x7f00_1234,
            tid: 4242,
            flags: FAST | CUT,
            path_len: 9,
        };
        let mut b = [0u8; 200];
        encode_head(&mut b, &e);
        b[HEAD..HEAD + 9].copy_from_slice(b"/no/such!");
        let (d, path, len) = decode(&b).unwrap();
        assert_eq!(d, e);
        assert_eq!(path, b"/no/such!");
        assert_eq!(len, HEAD + 16);
        assert!(decode(&b[..HEAD + 8]).is_none(), "a cut event is not read");
        assert!(decode(&b[..HEAD - 1]).is_none());
    }

    #[test]
    fn path_arguments() {
        assert_eq!(path_arg(257), Some(1), "openat(dirfd, path, ...)");
        assert_eq!(path_arg(2), Some(0), "open(path, ...)");
        assert_eq!(path_arg(262), Some(1), "newfstatat");
        assert_eq!(path_arg(59), Some(0), "execve");
        assert_eq!(path_arg(0), None, "read");
    }
}
