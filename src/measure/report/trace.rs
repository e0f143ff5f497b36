//! `usertrap trace`: every intercepted call recorded as an event (start,
//! duration, thread, syscall, result, six raw arguments, call site, and the
//! first bytes of a path argument), sent to the command's collector.
//!
//! Recording is on only when USERTRAP_TRACE is set (by `usertrap trace`,
//! read by the constructor: [`configure`]); off, `dispatch` pays one load
//! and one never-taken branch ([`on`]).
//!
//! Why it holds in trap context:
//! - Each thread area has its own buffer, mapped (rt::owned::map) on its
//!   first event and found through the area: no TLS, no allocation, no lock
//!   between threads. An event is written into the buffer where it will be
//!   sent from (the path is copied there directly, with the fault-safe
//!   copy_from_user: a bad pointer costs the path, never the process).
//! - A `busy` flag, set while one event is written (or the buffer sent),
//!   keeps a signal handler that runs the program's calls in the middle of
//!   it from writing over it: such an event is counted as dropped. The
//!   thread that ends the process takes the same flag (a try, never a wait)
//!   to send the other threads' buffers.
//! - A full buffer is sent by its thread at once, on a new connection, with
//!   MSG_DONTWAIT: one connect attempt, one send. When the collector cannot
//!   take it now, its events are dropped and counted, and the count goes in
//!   the thread's next message: nothing is silently lost, and the program
//!   never waits for the collector while it runs. (A message cut short by a
//!   full socket says how many events it meant to carry: the command counts
//!   the missing ones as dropped.)
//! - When the process image ends (report::at_exit: exit_group, the last
//!   thread's exit, a fatal signal's handler, an exec), every buffer is sent
//!   with the report's bounded waits; a thread's exit sends its own.
//! - A fork child starts with empty buffers (its parent sends what was
//!   recorded before the fork).
//!
//! Death by SIGKILL (the OOM killer, `kill -9`, a timeout) runs nothing of
//! ours, so each buffer is made to outlive its process: a memfd
//! (MFD_CLOEXEC) mapped shared, whose descriptor is handed to the collector
//! right after it is made (`tracebuf` announcement, SCM_RIGHTS, one
//! non-blocking sendmsg) and closed here at once, so the program never sees
//! it (with_spare_fd where RLIMIT_NOFILE is reached). Why that is enough:
//! - `len` and `count` are stored with Release once an event is whole:
//!   [0, len) is always recorded and not yet sent; an event being written
//!   when the process dies lies past `len` and is not read.
//! - Every message names its buffer and its number. While a message's
//!   events are still at the buffer's start (from before the send until
//!   the buffer is emptied, `len` first), `sending` holds its number: the
//!   command takes those events from the message if its first line
//!   arrived, else from the buffer; events written after a failed send
//!   follow them and are read either way. Nothing is taken twice.
//! - A buffer sent at exit is empty (len 0): reading every kept buffer of
//!   every process once it has ended (a report of its pid that is not an
//!   exec's arrived: the descriptors are closed then) or once the command
//!   ends finds exactly what was never sent, whether the process was
//!   killed or a send failed. (An exec's report ends nothing: the exec
//!   may fail, and the image go on with its buffers.) So when
//!   a process image ends, the thread that ends it sends only its own kept
//!   buffer: the other threads' are read by the collector after the
//!   report, with the calls they make until then (sending them from here
//!   took each buffer from under its thread, whose call then was lost).
//! - A fork child shares its parent's kept buffers (MAP_SHARED survives
//!   fork): before it records anything ([`after_fork_in_child`], before
//!   the fork's own return is recorded) its thread's buffer is replaced in
//!   place by a fresh one of its own (MAP_FIXED), and the areas of threads
//!   that do not exist in the child forget theirs. A vfork child, which
//!   runs in its parent's memory (on the fast path, until its first trap,
//!   even on its parent's area), makes private buffers only: a kept one is
//!   made only by the area's owner thread. One it finds in a reused area
//!   is its parent's, sent by it as before. An exec sends
//!   its buffers first as at any end (at_exit); the old image's mappings
//!   then go, the other threads' kept buffers with what they still held.
//! - A collector that cannot take the descriptor (none left, or the
//!   announcement did not fit): the buffer works as a private one, and the
//!   command says how many it could not hold. Without memfd_create, or
//!   once the program's own seccomp filter forbids a call that making one
//!   takes (emulate::process checks it as the filter is installed): private
//!   buffers, as before.
//! - The per-call path is unchanged: the buffer is made once per area, in
//!   code reachable from the fast path and written as such (integer-only,
//!   the announcement built in the fresh mapping, not on the stack).
//! - The collector holds one descriptor per area (the most threads alive at
//!   once, not all threads ever: an area and its buffer are reused by the
//!   next thread), and raises its own RLIMIT_NOFILE to the hard limit.
//!
//! `-e trace=SET` and `--slow` filter here, before anything is written:
//! USERTRAP_TRACE=SLOW_NS[:NR,NR,...] keeps only calls of at least SLOW_NS
//! (0: all) and, with a list, only those syscall numbers. The counts of all
//! calls are in the process's report, sent as under `usertrap stat`.
//!
//! Protocol (docs/report-schema.md, "Trace messages"): one connection per
//! message, `trace PID TID DROPPED EVENTS HZ TICKS MONO_NS REAL_NS TICKS0
//! MONO0_NS BUF MSG\n` then EVENTS events (usertrap-core's `trace`); a
//! kept buffer is announced once by `tracebuf PID TID BUF HZ TICKS MONO_NS
//! REAL_NS TICKS0 MONO0_NS\n` with its descriptor. TICKS, MONO_NS
//! and REAL_NS are read together when the message is sent, TICKS0 and
//! MONO0_NS when the image (or fork child) started: the command maps ticks
//! to time by these two points (which the TSC frequency's error cannot move)
//! where they are at least 1 ms apart, else by HZ. HZ is 0 while the TSC
//! frequency is not measured well enough yet (a later message's is taken).

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::collector::{collecting, collector_send};
use super::settings::report_forbidden;
use crate::measure::stats::{self, SLOTS};
use crate::rt::log::{self, Buf};
use crate::rt::raw;
use crate::rt::thread::{self, ThreadArea};
use usertrap_core::trace::{self as wire, buffer, Event};

static ON: AtomicBool = AtomicBool::new(false);
/// Calls shorter than this many ticks are not recorded (`--slow`).
static SLOW_TICKS: AtomicU64 = AtomicU64::new(0);
/// A syscall set was given: only numbers in SET are recorded.
static FILTERED: AtomicBool = AtomicBool::new(false);
static SET: [AtomicU64; SLOTS / 64 + 1] = [const { AtomicU64::new(0) }; SLOTS / 64 + 1];
/// Events of threads without an area or whose buffer could not be mapped.
static DROPPED_ELSEWHERE: AtomicU64 = AtomicU64::new(0);
/// The next kept buffer's number: from the image's start time in ns, so
/// that numbers never repeat within one pid (an exec'd image starts later
/// than the last buffer of the one before it was numbered).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// The program's own seccomp filter forbids what making a kept buffer
/// takes: new buffers are private.
static NO_KEPT: AtomicBool = AtomicBool::new(false);

/// The program installed a seccomp filter that forbids a syscall making a
/// kept buffer takes (emulate::process says which).
pub fn forbid_kept() {
    NO_KEPT.store(true, Ordering::Relaxed);
}

/// The buffer's mapping: this header, room for the message's first line,
/// then the events. The command reads `len`, `count`, `dropped` and
/// `sending` of a kept buffer (usertrap-core's trace::buffer offsets).
#[repr(C)]
struct Header {
    busy: AtomicBool,
    /// Bytes of events written, each stored (Release) once its event is
    /// whole: [0, len) is recorded and not yet sent.
    len: AtomicUsize,
    /// Events written.
    count: AtomicUsize,
    /// Events dropped since the last message that was sent.
    dropped: AtomicU64,
    /// The message being sent, or last sent without success, whose events
    /// are still in [0, len) (0: none).
    sending: AtomicU64,
    /// Messages begun from this buffer.
    begun: AtomicU64,
    /// The buffer's number as the collector holds it (0: private).
    id: AtomicU64,
}

/// 128 KiB (about 1,300 events): a message must fit in the socket's send
/// buffer (net.core.wmem_default, 208 KiB by default, of which a unix
/// stream socket takes half a skb at a time) to be sent whole without
/// waiting; 256 KiB lost a fifth of python's os.stat events that way.
const MAP_LEN: usize = buffer::LEN;
/// The message's first line goes right before the events (one send).
const LINE_ROOM: usize = buffer::LINE_ROOM;
const LINE_AT: usize = buffer::LINE_AT;
const DATA_AT: usize = buffer::DATA_AT;
const DATA_LEN: usize = MAP_LEN - DATA_AT;
const _: () = {
    assert!(core::mem::size_of::<Header>() <= LINE_AT);
    assert!(core::mem::offset_of!(Header, len) == buffer::LEN_AT);
    assert!(core::mem::offset_of!(Header, count) == buffer::COUNT_AT);
    assert!(core::mem::offset_of!(Header, dropped) == buffer::DROPPED_AT);
    assert!(core::mem::offset_of!(Header, sending) == buffer::SENDING_AT);
};

/// Whether calls are recorded: the one check `dispatch` makes.
#[inline(always)]
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// USERTRAP_TRACE's value: (SLOW_NS, the syscall numbers if a list is
/// given). None if malformed (config.rs says what is accepted).
pub fn parse(value: &[u8], mut each: impl FnMut(usize)) -> Option<u64> {
    let (slow, list) = match value.iter().position(|&b| b == b':') {
        Some(i) => (value.get(..i)?, Some(value.get(i + 1..)?)),
        None => (value, None),
    };
    let slow = decimal(slow)?;
    if let Some(list) = list {
        for n in list.split(|&b| b == b',') {
            let n = decimal(n)? as usize;
            if n >= SLOTS {
                return None;
            }
            each(n);
        }
    }
    Some(slow)
}

fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 18 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |v, &d| v * 10 + (d - b'0') as u64))
}

/// Constructor only, after the clock and the report settings: record from
/// now on as USERTRAP_TRACE says (already checked by config.rs). Calls are
/// then always timed.
pub fn configure(value: &[u8]) {
    if value.is_empty() || !collecting() {
        return;
    }
    let mut filtered = false;
    let Some(slow_ns) = parse(value, |n| {
        filtered = true;
        if let Some(w) = SET.get(n / 64) {
            w.fetch_or(1 << (n % 64), Ordering::Relaxed);
        }
    }) else {
        return;
    };
    FILTERED.store(filtered || value.contains(&b':'), Ordering::Relaxed);
    if slow_ns > 0 {
        let hz = stats::ticks_per_second();
        SLOW_TICKS.store((slow_ns as u128 * hz as u128 / 1_000_000_000) as u64, Ordering::Relaxed);
    }
    stats::set_timing(true);
    NEXT_ID.store(raw::clock_gettime_ns(libc::CLOCK_MONOTONIC).max(1), Ordering::Relaxed);
    // Where the fast path stays on the program's stack (no FSGSBASE),
    // recording there needs more than a goroutine leaves (tests/go.rs runs a
    // Go program under trace): Go code then stays on the slow path.
    crate::patch::locate::NO_GO_SITES.store(true, Ordering::Relaxed);
    ON.store(true, Ordering::Relaxed);
}

#[inline(always)]
fn wanted(nr: i64) -> bool {
    if !FILTERED.load(Ordering::Relaxed) {
        return true;
    }
    let n = stats::index_of(nr);
    SET.get(n / 64).is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (n % 64)) != 0)
}

/// This area's buffer, mapped on first use.
fn header_of(area: &ThreadArea) -> Option<&Header> {
    let mut at = area.trace.get();
    if at == 0 {
        at = new_buffer(area, 0)?;
        area.trace.set(at);
    }
    // SAFETY: a mapping of MAP_LEN bytes of ours, never unmapped, zeroed at
    // first (all-zero atomics are valid), whose first bytes are the Header.
    Some(unsafe { &*(at as *const Header) })
}

/// A new, empty buffer for `area`, at `fixed` (replacing the mapping there,
/// one of MAP_LEN bytes of ours) if not 0: one the collector keeps if it
/// can, else a private mapping. Its address.
#[inline(never)]
#[cold]
fn new_buffer(area: &ThreadArea, fixed: u64) -> Option<u64> {
    // A vfork child runs in its parent's memory: a buffer it made would be
    // the parent's, named by the child's pid (and on the fast path, before
    // its first trap, it still runs on its parent's area: hence the check
    // of the owner, one syscall per buffer). A program whose own seccomp
    // filter forbids the report's calls may forbid these too.
    let owner = area.owner_tid.load(Ordering::Relaxed);
    let allowed = !report_forbidden() && !NO_KEPT.load(Ordering::Relaxed) && collecting();
    if !area.vfork_child.get() && allowed && owner != 0 && raw::gettid() == owner {
        if let Some(at) = kept_buffer(area, fixed) {
            return Some(at);
        }
    }
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    if fixed == 0 {
        return crate::rt::owned::map(MAP_LEN, rw).ok();
    }
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED;
    // SAFETY: `fixed` is a buffer of ours that no one writes any more (the
    // caller's word): replaced whole by a zeroed one.
    unsafe { raw::mmap(fixed, MAP_LEN as u64, rw, flags, -1, 0) }.ok()
}

/// A buffer in a memfd of its own, mapped shared, whose descriptor the
/// collector is given (and ours closed at once): what the thread records
/// and has not sent yet survives the process (SIGKILL), for the command
/// to read. Its address; None if it cannot be made (the caller maps a
/// private one). Given but not taken by the collector (no room, refused),
/// it serves as a private one.
fn kept_buffer(area: &ThreadArea, fixed: u64) -> Option<u64> {
    let fd = raw::with_spare_fd(
        || raw::memfd_create(c"usertrap-trace", libc::MFD_CLOEXEC),
        |r| *r == Err(libc::EMFILE as i64),
    )
    .ok()?;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let flags = libc::MAP_SHARED | if fixed != 0 { libc::MAP_FIXED } else { 0 };
    // A file size limit below MAP_LEN (`ulimit -f`) makes the kernel answer
    // with SIGXFSZ, whose default action would end the program: EFBIG
    // alone, and the buffer is a private one.
    let sized = log::without_write_signals(|| raw::ftruncate(fd, MAP_LEN as u64));
    let mapped = sized.and_then(|_| {
        // SAFETY: without MAP_FIXED the kernel picks free address space;
        // with it, `fixed` is a buffer of ours that no one writes any more
        // (new_buffer's caller's word).
        unsafe { raw::mmap(fixed, MAP_LEN as u64, rw, flags, fd, 0) }
    });
    let Ok(at) = mapped else {
        let _ = raw::close(fd);
        return None;
    };
    if fixed == 0 {
        crate::rt::owned::add(at, MAP_LEN as u64);
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the fresh, zeroed mapping of MAP_LEN bytes made above, ours
    // alone until it is returned; LINE_AT .. DATA_AT is inside it.
    let line = unsafe { core::slice::from_raw_parts_mut((at as usize + LINE_AT) as *mut u8, LINE_ROOM) };
    let n = registration(line, area, id);
    if register(line.get(..n).unwrap_or_default(), fd) {
        // SAFETY: as above: the Header at the mapping's start.
        unsafe { &*(at as *const Header) }.id.store(id, Ordering::Relaxed);
    }
    let _ = raw::close(fd);
    Some(at)
}

/// `tracebuf PID TID BUF HZ TICKS MONO_NS REAL_NS TICKS0 MONO0_NS\n` into
/// `line`; its length.
fn registration(line: &mut [u8], area: &ThreadArea, id: u64) -> usize {
    let (pid, tid) = area.ids();
    let (pid, tid) = if pid == 0 { (raw::getpid(), raw::gettid()) } else { (pid, tid) };
    let mut w = Buf::new(line);
    w.put(b"tracebuf ").num(pid as u64).put(b" ").num(tid as u64).put(b" ").num(id);
    put_clocks(&mut w, hz_now());
    w.put(b"\n");
    w.len
}

/// ` HZ TICKS MONO_NS REAL_NS TICKS0 MONO0_NS`: the TSC frequency as known
/// (0: not yet), the clocks read together now, and at the image's start:
/// what the command maps this buffer's ticks to time by.
fn put_clocks(w: &mut Buf<'_>, hz: u64) {
    let (ticks, mono, real) =
        (stats::now(), stats::clock_ns(libc::CLOCK_MONOTONIC), stats::clock_ns(libc::CLOCK_REALTIME));
    let (ticks0, mono0) = stats::start_pair();
    w.put(b" ").num(hz).put(b" ").num(ticks).put(b" ").num(mono).put(b" ").num(real);
    w.put(b" ").num(ticks0).put(b" ").num(mono0);
}

/// One connection, one non-blocking sendmsg of `line` with `fd`: true if
/// the whole line (and so the descriptor) went.
fn register(line: &[u8], fd: i32) -> bool {
    let Some((addr, alen)) = super::collector::address() else { return false };
    let ty = libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    let Ok(sock) = raw::with_spare_fd(|| raw::socket(libc::AF_UNIX, ty, 0), |r| *r == Err(libc::EMFILE as i64)) else {
        return false;
    };
    let ok = raw::connect(sock, addr.get(..alen).unwrap_or_default()).is_ok()
        && matches!(raw::sendmsg_fd_nowait(sock, line, fd), Ok(n) if n == line.len());
    let _ = raw::close(sock);
    ok
}

/// The bytes at [at, at + len) of the area's buffer mapping.
///
/// # Safety
/// The caller holds the buffer's `busy` flag (no one else writes it), and
/// the range is inside MAP_LEN.
unsafe fn bytes<'a>(area: &ThreadArea, at: usize, len: usize) -> &'a mut [u8] {
    // SAFETY: the caller's contract; the mapping lives as long as the process.
    unsafe { core::slice::from_raw_parts_mut((area.trace.get() as usize + at) as *mut u8, len) }
}

/// One call: record it unless a filter leaves it out. `pending`: it is
/// about to run and may not return (exec, exit): result and duration 0.
#[inline(never)]
#[cold]
#[allow(clippy::too_many_arguments)]
pub fn record(
    area: Option<&ThreadArea>,
    nr: i64,
    args: &[u64; 6],
    result: i64,
    start: u64,
    ticks: u64,
    site: u64,
    fast: bool,
    pending: bool,
) {
    if !wanted(nr) || (!pending && ticks < SLOW_TICKS.load(Ordering::Relaxed)) {
        return;
    }
    let Some((area, h)) = area.and_then(|a| Some((a, header_of(a)?))) else {
        DROPPED_ELSEWHERE.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if h.busy.swap(true, Ordering::Acquire) {
        h.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if h.len.load(Ordering::Relaxed) + wire::MAX_EVENT > DATA_LEN {
        send_now(area, h);
    }
    let at = h.len.load(Ordering::Relaxed);
    // SAFETY: we hold `busy`; at + MAX_EVENT <= DATA_LEN after the send
    // above emptied a full buffer.
    let slot = unsafe { bytes(area, DATA_AT + at, wire::MAX_EVENT) };
    let mut flags = if fast { wire::FAST } else { 0 };
    if pending {
        flags |= wire::PENDING;
    }
    let mut path_len = 0;
    if let Some(i) = wire::path_arg(nr) {
        let ptr = args.get(i).copied().unwrap_or(0);
        match raw::strnlen_user(ptr, wire::PATH_CAP) {
            Ok(n) => {
                if n >= wire::PATH_CAP {
                    flags |= wire::CUT;
                }
                let n = n.min(wire::PATH_CAP);
                if let Some(dst) = slot.get_mut(wire::HEAD..wire::HEAD + n) {
                    if raw::copy_from_user(dst, ptr).is_ok() {
                        path_len = n;
                    } else {
                        flags |= wire::BAD_PATH;
                    }
                }
            }
            Err(_) => flags |= wire::BAD_PATH,
        }
        if let Some(pad) = slot.get_mut(wire::HEAD + path_len..wire::event_len(path_len)) {
            pad.iter_mut().for_each(|b| put_byte(b, 0));
        }
    }
    let tid = area.owner_tid.load(Ordering::Relaxed) as u32;
    let e = Event { start, ticks, nr, result, args: *args, site, tid, flags, path_len: path_len as u16 };
    wire::encode_head(slot, &e);
    h.len.store(at + wire::event_len(path_len), Ordering::Release);
    h.count.store(h.count.load(Ordering::Relaxed) + 1, Ordering::Release);
    h.busy.store(false, Ordering::Release);
}

/// One byte stored with a volatile write: a loop of them is never turned
/// into a call to memset or memcpy (which may use vector registers).
#[inline(always)]
fn put_byte(dst: &mut u8, b: u8) {
    // SAFETY: `dst` is a valid, exclusive reference.
    unsafe { core::ptr::write_volatile(dst, b) }
}

/// The message's first line into `line`; its length. `msg`: the buffer's
/// number and the message's.
fn first_line(line: &mut [u8], area: &ThreadArea, dropped: u64, events: usize, hz: u64, msg: (u64, u64)) -> usize {
    let (pid, tid) = area.ids();
    let mut w = Buf::new(line);
    w.put(b"trace ").num(pid as u64).put(b" ").num(tid as u64).put(b" ").num(dropped).put(b" ").num(events as u64);
    put_clocks(&mut w, hz);
    w.put(b" ").num(msg.0).put(b" ").num(msg.1).put(b"\n");
    w.len
}

/// A message from `h` begins: its (buffer, message) numbers. Until the
/// buffer is emptied, `sending` says the message's events are still at
/// its start: if the process is killed now, the command takes them from
/// the message if it arrived, else from the buffer, never from both.
fn begin_message(h: &Header) -> (u64, u64) {
    let n = h.begun.load(Ordering::Relaxed) + 1;
    h.begun.store(n, Ordering::Relaxed);
    h.sending.store(n, Ordering::Release);
    (h.id.load(Ordering::Relaxed), n)
}

/// The buffer's events were sent (or said dropped): empty it. `len` first:
/// killed in between, [0, 0) holds nothing to take twice.
fn emptied(h: &Header) {
    h.len.store(0, Ordering::Release);
    h.count.store(0, Ordering::Release);
    h.sending.store(0, Ordering::Release);
}

/// Ticks per second if known without waiting (0 otherwise).
fn hz_now() -> u64 {
    if stats::uses_tsc() {
        stats::settled_hz()
    } else {
        1_000_000_000
    }
}

/// The buffer is full (the caller holds `busy`): send it now or drop it,
/// never wait. Empties it either way.
fn send_now(area: &ThreadArea, h: &Header) {
    let (len, count) = (h.len.load(Ordering::Relaxed), h.count.load(Ordering::Relaxed));
    let dropped = h.dropped.load(Ordering::Relaxed);
    // The line is written into the room before the events, then moved to
    // end right where they start: one send, and no buffer on the stack
    // (whose zeroing and copy would be calls to memset and memcpy, which may
    // use vector registers: the fast path must not).
    // SAFETY: we hold `busy`; LINE_AT .. DATA_AT + len is inside the
    // mapping (len <= DATA_LEN).
    let room = unsafe { bytes(area, LINE_AT, DATA_AT - LINE_AT + len) };
    let msg_ids = begin_message(h);
    let n = first_line(room.get_mut(..LINE_ROOM).unwrap_or_default(), area, dropped, count, hz_now(), msg_ids);
    let start = DATA_AT - LINE_AT - n;
    let mut i = n;
    while i > 0 {
        i -= 1;
        if let Some(&b) = room.get(i) {
            if let Some(d) = room.get_mut(start + i) {
                put_byte(d, b);
            }
        }
    }
    let msg = room.get(start..).unwrap_or_default();
    let sent = !report_forbidden() && send_once(msg);
    // Adjusted, not stored: a signal handler's call dropped meanwhile (it
    // found `busy` set) counts too.
    if sent {
        h.dropped.fetch_sub(dropped, Ordering::Relaxed);
    } else {
        h.dropped.fetch_add(count as u64, Ordering::Relaxed);
    }
    // Not sent: said dropped (a first line cut short reaches the command
    // damaged, with no events).
    emptied(h);
}

/// One connection, one non-blocking send: true if the whole first line went
/// (a cut-short body is counted by the command).
fn send_once(msg: &[u8]) -> bool {
    let Some((addr, alen)) = super::collector::address() else { return false };
    let ty = libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    let Ok(fd) = raw::socket(libc::AF_UNIX, ty, 0) else { return false };
    let mut ok = false;
    if raw::connect(fd, addr.get(..alen).unwrap_or_default()).is_ok() {
        let line_len = msg.iter().position(|&b| b == b'\n').map_or(msg.len(), |i| i + 1);
        ok = matches!(raw::send_nowait(fd, msg), Ok(n) if n >= line_len);
    }
    let _ = raw::close(fd);
    ok
}

/// Send one area's buffer with the report's bounded waits (process end,
/// thread exit), with `extra` more events said dropped. Returns the events
/// still to be said dropped in a later message: `extra` if nothing could be
/// sent; if another thread is writing into this buffer right now (the
/// process is ending under it), `extra` and the events it holds.
fn send_waiting(area: &ThreadArea, extra: u64) -> u64 {
    let at = area.trace.get();
    if at == 0 {
        return extra;
    }
    // SAFETY: as in header_of.
    let h = unsafe { &*(at as *const Header) };
    if h.busy.swap(true, Ordering::Acquire) {
        // A kept buffer's events, and its count of dropped ones, stay where
        // the command reads them.
        if h.id.load(Ordering::Relaxed) != 0 {
            return extra;
        }
        return extra + h.count.load(Ordering::Acquire) as u64 + h.dropped.load(Ordering::Relaxed);
    }
    let (len, count) = (h.len.load(Ordering::Acquire), h.count.load(Ordering::Acquire));
    let own = h.dropped.load(Ordering::Relaxed);
    if count == 0 && own + extra == 0 {
        h.busy.store(false, Ordering::Release);
        return 0;
    }
    let mut line = [0u8; LINE_ROOM];
    // (Never on the fast path: a stack buffer is fine here.)
    let msg_ids = begin_message(h);
    let n = first_line(&mut line, area, own + extra, count, stats::ticks_per_second(), msg_ids);
    // SAFETY: we hold `busy`; the range is inside the mapping.
    let body = unsafe { bytes(area, DATA_AT, len) };
    let sent =
        raw::with_spare_fd(|| collector_send(line.get(..n).unwrap_or(&[]), body), |r| *r == Err(libc::EMFILE as i64))
            .is_ok();
    // Not sent: the events stay, `sending` naming the message (the command
    // skips the events of it that arrived).
    if sent {
        h.dropped.fetch_sub(own, Ordering::Relaxed);
        emptied(h);
    }
    h.busy.store(false, Ordering::Release);
    if sent {
        0
    } else {
        extra
    }
}

/// The calling thread exits (not the last one): send its buffer.
pub fn thread_exit(area: &ThreadArea) {
    if on() && !report_forbidden() {
        let left = send_waiting(area, 0);
        DROPPED_ELSEWHERE.fetch_add(left, Ordering::Relaxed);
    }
}

/// Whether the area's buffer is one the collector holds.
fn kept(area: &ThreadArea) -> bool {
    let at = area.trace.get();
    // SAFETY: as in header_of.
    at != 0 && unsafe { &*(at as *const Header) }.id.load(Ordering::Relaxed) != 0
}

/// The process image ends (report::at_exit): send every buffer (a vfork
/// child, which shares its parent's areas, only its own). The other
/// threads' kept buffers are left to the collector, which reads them once
/// the report has arrived (an exec's: once a later one has, or the
/// command has ended): later than a send from here, so with the calls
/// those threads make meanwhile, and without taking their buffers from
/// under them (a call made while another thread sends its buffer is lost). Events that
/// could not be said dropped in another thread's message are said in a
/// last message of the calling thread's.
pub fn at_exit(current: Option<&ThreadArea>) {
    if !on() {
        return;
    }
    let mut extra = DROPPED_ELSEWHERE.swap(0, Ordering::Relaxed);
    match current {
        Some(a) if a.vfork_child.get() => {
            send_waiting(a, extra);
        }
        Some(a) => {
            extra = send_waiting(a, extra);
            thread::for_each_area(|other| {
                if !core::ptr::eq(other, a) && !kept(other) {
                    extra = send_waiting(other, extra);
                }
            });
            if extra > 0 {
                send_waiting(a, extra);
            }
        }
        None => thread::for_each_area(|a| {
            if !kept(a) {
                extra = send_waiting(a, extra);
            }
        }),
    }
}

/// A fork child: the events in its buffers are its parent's, which sends
/// them; a kept buffer is even the same memory as the parent's (shared):
/// the child must never write one. Its thread gets a fresh buffer of its
/// own at the same address before it records anything (this runs before
/// the fork's own return is recorded); the other areas (threads that do not
/// exist in the child) forget theirs, and get a new one if they are reused.
pub fn after_fork_in_child() {
    if !on() {
        return;
    }
    DROPPED_ELSEWHERE.store(0, Ordering::Relaxed);
    let current = thread::current_unchecked().map_or(0, |a| a as *const ThreadArea as usize);
    thread::for_each_area(|a| {
        let at = a.trace.get();
        if at == 0 {
            return;
        }
        let fresh = if core::ptr::eq(a, current as *const ThreadArea) { new_buffer(a, at) } else { None };
        // Without a fresh one, the old mapping stays, never written again.
        if fresh.is_none() {
            a.trace.set(0);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(v: &[u8]) -> Option<(u64, Vec<usize>)> {
        let mut set = Vec::new();
        parse(v, |n| set.push(n)).map(|s| (s, set))
    }

    #[test]
    fn settings() {
        assert_eq!(parsed(b"0"), Some((0, vec![])));
        assert_eq!(parsed(b"1000000:0,1,257"), Some((1_000_000, vec![0, 1, 257])));
        assert_eq!(parsed(b""), None);
        assert_eq!(parsed(b"x"), None);
        assert_eq!(parsed(b"5:"), None, "an empty number");
        assert_eq!(parsed(b"5:1,,2"), None);
        assert_eq!(parsed(b"5:99999"), None, "past the table");
        assert_eq!(parsed(b"1234567890123456789"), None, "too long");
    }
}
