//! `usertrap trace`: run the command with USERTRAP_TRACE set, decode the
//! events its processes send (src/measure/report/trace.rs writes them,
//! usertrap-core's `trace` says their bytes) and write them as strace-like
//! text, JSON lines or a Chrome trace-event timeline.
//!
//! Each message is decoded on the collector's thread that read it
//! ([`Gathered`]), while the command runs: of a call, what putting the
//! calls in time order and linking them needs ([`Placed`]) and where its
//! event is in the message, which is kept as it arrived (the compact
//! binary events, about 100 bytes a call). Once the command has ended,
//! the calls are put in order and formatted one after the other into one
//! small buffer that is written whenever it holds [`CHUNK`] bytes. Why
//! not format them as they arrive, into memory kept until the end (as
//! this did before): the output is about three times the events (280
//! bytes a call in JSON), and taking its pages, then copying them, cold,
//! into the page cache cost more than formatting; a buffer that stays in
//! the CPU's cache costs neither (python's 200,000 `os.stat` in JSON: the
//! collector's CPU time about halved).
//!
//! Why Chrome's trace-event JSON rather than Perfetto's protobuf: it needs
//! no proto schema or generated code (serde_json, which the command already
//! uses), it is a documented, stable format that both ui.perfetto.dev and
//! chrome://tracing open, and a test can read it back. Its limits: it is
//! read whole into memory (ui.perfetto.dev handles a few hundred MB, about
//! a million calls; chrome://tracing less), timestamps are microseconds (we
//! write fractions, which Perfetto keeps to the ns), and it has no typed
//! arguments. For longer runs, `--slow` keeps what matters.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufWriter, Write};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use usertrap_core::names::errno_name;
use usertrap_core::syscalls;
use usertrap_core::trace::{self as wire, Event};

use crate::args::{TraceArgs, TraceFormat};
use crate::collect::{KeptBuffer, TraceSink};
use crate::error::{io_msg, Failure, OWN_FAILURE};
use crate::jsonw;
use crate::stat::{self, Outcome};
use crate::trace::TraceFilter;

/// One recorded call, its times in ns: what the formatters read, built
/// while its message is decoded (its path borrowed from the message).
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub pid: u32,
    pub tid: u32,
    /// CLOCK_MONOTONIC ns (the same clock in every process).
    pub mono_ns: i128,
    /// CLOCK_REALTIME ns.
    pub real_ns: i128,
    pub dur_ns: u64,
    pub e: Event,
    pub path: Option<Cow<'a, str>>,
}

/// A call once decoded: what putting the calls in order needs, and where
/// its event is. The [`Call`] itself is not kept: at about 200 bytes and a
/// path allocated per call, keeping every one until the end cost more
/// (memory touched for the first time, page by page) than decoding its
/// event again when it is written.
#[derive(Debug, Clone, Copy)]
pub struct Placed {
    /// CLOCK_MONOTONIC ns.
    pub mono_ns: i64,
    pub dur_ns: u64,
    pub nr: i64,
    pub result: i64,
    /// Its message's arrival number, and its place in the message.
    pub order: (u64, u32),
    pub pid: u32,
    pub tid: u32,
    pub flags: u16,
    /// Where its event is: (message in [`Decoded::messages`], the event's
    /// offset in it).
    pub at: (u32, u32),
}

/// A message whose events are kept until they are written.
#[derive(Debug)]
pub struct Message {
    /// The whole message, as it arrived.
    bytes: Vec<u8>,
    /// REAL_NS - MONO_NS at its send: a call's wall time from its mono.
    real_minus_mono: i128,
}

/// What the processes sent, decoded.
#[derive(Debug, Default)]
pub struct Decoded {
    pub calls: Vec<Placed>,
    /// Events dropped, by (pid, tid).
    pub dropped: BTreeMap<(u32, u32), u64>,
    /// Messages that could not be read.
    pub damaged: usize,
    /// The messages the calls' events are in: see [`Placed::at`].
    pub messages: Vec<Message>,
}

impl Decoded {
    /// The call, decoded again from its message (None: never, for a
    /// [`Placed`] made from the message).
    fn call(&self, c: &Placed) -> Option<Call<'_>> {
        let m = self.messages.get(c.at.0 as usize)?;
        let (e, path, _) = wire::decode(m.bytes.get(c.at.1 as usize..)?)?;
        let mono_ns = c.mono_ns as i128;
        let path =
            (wire::path_arg(e.nr).is_some() && e.flags & wire::BAD_PATH == 0).then(|| String::from_utf8_lossy(path));
        Some(Call { pid: c.pid, tid: e.tid, mono_ns, real_ns: mono_ns + m.real_minus_mono, dur_ns: c.dur_ns, e, path })
    }

    /// The call's output in `format` (a Perfetto slice up to its `ts`).
    fn format_call(&self, c: &Placed, format: TraceFormat, clock: &mut Clock, out: &mut Vec<u8>) {
        let Some(call) = self.call(c) else { return };
        match format {
            TraceFormat::Text => text_line_into(&call, clock, out),
            TraceFormat::Json => json_call(&call, out),
            TraceFormat::Perfetto => perfetto_head(&call, out),
        }
    }
}

/// The first bytes of `calls` whose pages are taken at once; then as many
/// as all before, each time the calls reach them.
const FIRST_BLOCK: usize = 256 << 10;

/// Takes the pages of bytes [from, to) of `v`'s allocation (those whole
/// in it) in one call: a long trace's calls are tens of MB, and taking
/// their pages one fault at a time cost more than a quarter of the
/// collector's time; MADV_POPULATE_WRITE (Linux 5.14) takes them at once.
/// (Huge pages were tried, and were slower on this project's VM.)
fn populate<T>(v: &mut Vec<T>, from: usize, to: usize) {
    let base = v.as_mut_ptr() as usize;
    let to = to.min(v.capacity() * std::mem::size_of::<T>());
    let (start, end) = ((base + from).next_multiple_of(4096), (base + to) & !4095);
    if end > start {
        // SAFETY: pages inside the allocation `v` owns (and holds by a
        // unique borrow); populating them changes no byte (a page already
        // there is left as it is, a new one is zero, and a Vec's spare
        // capacity is not read before it is written). An older kernel
        // refuses the advice (EINVAL), and the pages come as written.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_POPULATE_WRITE) };
    }
}

#[derive(Clone, Copy)]
struct Head {
    pid: u32,
    tid: u32,
    dropped: u64,
    events: u64,
    hz: u64,
    ticks: u64,
    mono: u64,
    real: u64,
    ticks0: u64,
    mono0: u64,
    /// The buffer's number (0: one the collector was not given) and the
    /// message's, from it.
    buf: u64,
    msg: u64,
}

fn head_of(line: &str) -> Option<Head> {
    let w: Vec<u64> = line.split(' ').skip(1).map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let (head, buf, msg) = match w[..] {
        [a, b, c, d, e, f, g, h, i, j] => ([a, b, c, d, e, f, g, h, i, j], 0, 0),
        [a, b, c, d, e, f, g, h, i, j, buf, msg] => ([a, b, c, d, e, f, g, h, i, j], buf, msg),
        _ => return None,
    };
    let [pid, tid, dropped, events, hz, ticks, mono, real, ticks0, mono0] = head;
    Some(Head { pid: pid as u32, tid: tid as u32, dropped, events, hz, ticks, mono, real, ticks0, mono0, buf, msg })
}

/// Every message so far, decoded as it arrived, on the collector's thread
/// that read it: the calls of all of them in one list (in no order yet:
/// each knows its message's arrival number), so that gathering them, too,
/// is done while the command runs.
pub struct Gathered {
    calls: Vec<Placed>,
    /// Bytes of `calls`' allocation whose pages were taken ([`populate`]).
    calls_ready: usize,
    /// The messages, kept for their events.
    messages: Vec<Message>,
    /// Each message read: (arrival number, head, events it carried).
    heads: Vec<(u64, Head, u64)>,
    /// Messages whose head says no frequency and whose times cannot be
    /// scaled without one: decoded at the end, with their process's
    /// frequency from another message.
    later: Vec<(u64, Head, Vec<u8>)>,
    damaged: usize,
    /// Each message that arrived from a kept buffer: (pid, buffer,
    /// message) -> (events, dropped) its head said.
    from_kept: HashMap<(u32, u64, u64), (u64, u64)>,
    /// Events taken from the buffers of processes that did not send them,
    /// by pid.
    pub recovered: BTreeMap<u32, u64>,
}

/// `msg`'s head, and where its body starts.
fn split(peer: u32, msg: &[u8]) -> Option<(Head, usize)> {
    let nl = msg.iter().position(|&b| b == b'\n').unwrap_or(msg.len());
    let mut h = std::str::from_utf8(&msg[..nl]).ok().and_then(head_of)?;
    h.pid = peer;
    Some((h, (nl + 1).min(msg.len())))
}

/// Ticks to ns: (num, den). None when the message cannot say (no frequency,
/// and less than 1 ms between the image's start and the message).
fn scale(h: &Head, hz: Option<u64>) -> Option<(i128, i128)> {
    // Ticks per ns between the image's start and this message: exact at
    // both points, whatever the error of HZ.
    let (dt, dm) = (h.ticks as i128 - h.ticks0 as i128, h.mono as i128 - h.mono0 as i128);
    if dm >= 1_000_000 && dt > 0 {
        return Some((dm, dt));
    }
    let hz = if h.hz != 0 { h.hz } else { hz? };
    Some((1_000_000_000, hz as i128))
}

impl Default for Gathered {
    fn default() -> Gathered {
        Gathered::new()
    }
}

impl Gathered {
    pub fn new() -> Gathered {
        Gathered {
            // Past glibc's largest mmap threshold (32 MiB): a mapping of its
            // own, which grows by mremap, not by copying every call so far
            // into memory touched afresh; pages not reached cost nothing.
            calls: Vec::with_capacity((32 << 20) / std::mem::size_of::<Placed>() + 1),
            calls_ready: 0,
            messages: Vec::new(),
            heads: Vec::new(),
            later: Vec::new(),
            damaged: 0,
            from_kept: HashMap::new(),
            recovered: BTreeMap::new(),
        }
    }

    /// Message number `seq` from `peer`: decoded, and kept for its events.
    pub fn add(&mut self, seq: u64, peer: u32, mut msg: Vec<u8>) {
        // Messages are read into room for a whole buffer, a mapping of its
        // own (past malloc's threshold): a short one (a short process's only
        // message) is kept in a copy of its size from the heap, so that a
        // tree of 100,000 processes does not reach the kernel's limit of
        // mappings (shrink_to_fit would keep the mapping, smaller; 500
        // `/bin/true` kept 365 mappings so, 56 now).
        if msg.len() < msg.capacity() / 2 {
            msg = msg.as_slice().to_vec();
        }
        let Some((head, body)) = split(peer, &msg) else {
            self.damaged += 1;
            return;
        };
        if head.buf != 0 {
            self.from_kept.insert((head.pid, head.buf, head.msg), (head.events, head.dropped));
        }
        let Some(sc) = scale(&head, None) else {
            self.later.push((seq, head, msg));
            return;
        };
        self.decode_body(seq, &head, sc, msg, body);
    }

    /// The calls of a message from its body (at `at`), the message kept.
    fn decode_body(&mut self, seq: u64, h: &Head, (num, den): (i128, i128), msg: Vec<u8>, at: usize) {
        let index = self.messages.len() as u32;
        let mut body = msg.get(at..).unwrap_or_default();
        let need = self.calls.len() + body.len() / wire::HEAD;
        self.calls.reserve(need - self.calls.len());
        // Pages for the calls ahead, taken (as the blocks' are) in steps
        // as large as those before. (Grown by mremap, `calls` keeps them.)
        let want = need * std::mem::size_of::<Placed>();
        if want > self.calls_ready {
            let to = want.max(2 * self.calls_ready).max(FIRST_BLOCK);
            populate(&mut self.calls, self.calls_ready, to);
            self.calls_ready = to;
        }
        let mut got = 0u32;
        let mut offset = at;
        while let Some((e, _, len)) = wire::decode(body) {
            body = &body[len..];
            let ago = mul_div(h.ticks as i128 - e.start as i128, num, den);
            let mono_ns = h.mono as i128 - ago;
            self.calls.push(Placed {
                mono_ns: mono_ns as i64,
                dur_ns: mul_div(e.ticks as i128, num, den) as u64,
                nr: e.nr,
                result: e.result,
                order: (seq, got),
                pid: h.pid,
                tid: e.tid,
                flags: e.flags,
                at: (index, offset as u32),
            });
            offset += len;
            got += 1;
        }
        self.heads.push((seq, *h, got.into()));
        self.messages.push(Message { bytes: msg, real_minus_mono: h.real as i128 - h.mono as i128 });
    }

    /// Once every message has arrived: the events still in the buffers the
    /// collector kept, never sent (a process killed by SIGKILL, a send
    /// that failed at exit). A buffer whose message was being sent when
    /// its process died still holds that message's events at its start:
    /// taken from the message if it arrived (its head), else from the
    /// buffer, never from both.
    pub fn add_kept(&mut self, kept: &[KeptBuffer]) {
        for k in kept {
            let w: Vec<&str> = k.line.split(' ').collect();
            // tracebuf PID TID BUF HZ TICKS MONO_NS REAL_NS TICKS0 MONO0_NS
            let (Some(tid), Some(buf), Some(rest)) =
                (w.get(2), w.get(3).and_then(|b| b.parse::<u64>().ok()), w.get(4..10))
            else {
                self.damaged += 1;
                continue;
            };
            // The events are those whole in [0, len): `count`, stored after
            // `len`, may be read ahead of it while a thread still writes
            // (other threads do while their process ends).
            let (mut body, mut dropped) = (&k.events[..], k.dropped);
            if let Some(&(sent, said_dropped)) = self.from_kept.get(&(k.pid, buf, k.sending)).filter(|_| k.sending != 0)
            {
                body = past_events(body, sent).0;
                dropped = dropped.saturating_sub(said_dropped);
            }
            if body.is_empty() && dropped == 0 {
                continue;
            }
            let n = past_events(body, u64::MAX).1;
            *self.recovered.entry(k.pid).or_default() += n;
            let mut msg = format!("trace {} {tid} {dropped} {n} {} {buf} 0\n", k.pid, rest.join(" ")).into_bytes();
            msg.extend_from_slice(body);
            self.add(k.seq, k.pid, msg);
        }
    }
}

/// `x * num / den`, in 64 bits when every step fits (nearly always: ticks
/// a message back, scaled), else in 128: a 128-bit division is a call to
/// a slow routine, two a call.
fn mul_div(x: i128, num: i128, den: i128) -> i128 {
    let fast = || i64::try_from(x).ok()?.checked_mul(i64::try_from(num).ok()?)?.checked_div(i64::try_from(den).ok()?);
    match fast() {
        Some(v) => v.into(),
        None => x * num / den,
    }
}

/// `body` (whole events) past its first `n` events (or all it holds), and
/// how many that was.
fn past_events(mut body: &[u8], n: u64) -> (&[u8], u64) {
    let mut passed = 0;
    while passed < n {
        let Some((_, _, len)) = wire::decode(body) else { break };
        body = &body[len..];
        passed += 1;
    }
    (body, passed)
}

/// Decode the trace messages (sender pid, message) in arrival order.
#[cfg(test)]
pub fn decode(msgs: &[(u32, Vec<u8>)]) -> Decoded {
    let mut g = Gathered::new();
    for (i, (peer, m)) in msgs.iter().enumerate() {
        g.add(i as u64, *peer, m.clone());
    }
    assemble(g)
}

/// The messages' calls, in time order.
pub fn assemble(mut g: Gathered) -> Decoded {
    // A process's frequency: any message that knew it (a running process
    // may not have measured it yet when its first buffer filled): the last
    // to arrive.
    let mut known: Vec<(u64, u32, u64)> = g.heads.iter().map(|(s, h, _)| (*s, h.pid, h.hz)).collect();
    known.extend(g.later.iter().map(|(s, h, _)| (*s, h.pid, h.hz)));
    known.sort_unstable();
    let hz_of: HashMap<u32, u64> = known.into_iter().filter(|k| k.2 != 0).map(|(_, pid, hz)| (pid, hz)).collect();
    for (seq, head, msg) in std::mem::take(&mut g.later) {
        let hz = hz_of.get(&head.pid).copied().unwrap_or(1_000_000_000);
        let at = split(head.pid, &msg).map_or(msg.len(), |(_, at)| at);
        let sc = scale(&head, Some(hz)).unwrap_or((1_000_000_000, hz as i128));
        g.decode_body(seq, &head, sc, msg, at);
    }
    let mut d = Decoded { calls: g.calls, damaged: g.damaged, messages: g.messages, ..Decoded::default() };
    for (_, h, got) in &g.heads {
        let lost = h.dropped + h.events.saturating_sub(*got);
        if lost > 0 {
            *d.dropped.entry((h.pid, h.tid)).or_default() += lost;
        }
    }
    // In time order; calls of the same thread at the same ns in the order
    // they arrived (an exec recorded before it ran, then when it failed).
    // Most often they are in order already (one thread, or threads whose
    // messages arrived in time order): then there is nothing to sort.
    let key = |c: &Placed| (c.mono_ns, c.pid, c.tid, c.order);
    if !d.calls.is_sorted_by_key(key) {
        // A stable sort: linear on the runs of calls already in order.
        d.calls.sort_by_key(key);
    }
    // An exec recorded before it ran, then again when it failed: keep the
    // completed one.
    let mut keep = vec![true; d.calls.len()];
    let mut last_pending: HashMap<u32, usize> = HashMap::new();
    let mut dropped = false;
    for (i, c) in d.calls.iter().enumerate() {
        if c.flags & wire::PENDING != 0 {
            last_pending.insert(c.tid, i);
        } else if let Some(p) = (!last_pending.is_empty()).then(|| last_pending.remove(&c.tid)).flatten() {
            if d.calls[p].nr == c.nr && d.calls[p].pid == c.pid {
                keep[p] = false;
                dropped = true;
            }
        }
    }
    if dropped {
        let mut k = keep.into_iter();
        d.calls.retain(|_| k.next().unwrap_or(true));
    }
    d
}

/// The syscall's name ("syscall_N" if unnamed).
pub fn name_of(nr: i64) -> Cow<'static, str> {
    const I386: i64 = 1 << 40;
    if nr & I386 != 0 {
        let n = (nr & !I386) as u64;
        return Cow::Owned(format!("i386:{}", syscalls::name_i386(n).map_or(format!("syscall_{n}"), str::to_string)));
    }
    syscalls::name(nr as u64).map_or_else(|| Cow::Owned(format!("syscall_{nr}")), Cow::Borrowed)
}

/// Runs `usertrap trace`.
pub fn run(args: TraceArgs) -> Result<Outcome, Failure> {
    let filter = TraceFilter::parse(&args.expr)?;
    let checked = stat::check_command(args.run.lib.as_deref(), &args.run.command)?;
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(BufWriter::with_capacity(OUT_BUF, stat::open_output(p)?)),
        None => Box::new(BufWriter::with_capacity(OUT_BUF, io::stdout().lock())),
    };
    let mut value = args.slow.unwrap_or(0).to_string();
    if let Some(f) = &filter {
        // x86-64 numbers (the library's table has 512); none: 512, the
        // slot of numbers past the table, which no program calls.
        let nrs: Vec<String> =
            (0..512u64).filter(|&n| syscalls::name(n).is_some_and(|s| f.matches(s))).map(|n| n.to_string()).collect();
        let list = if nrs.is_empty() { "512".to_string() } else { nrs.join(",") };
        value = format!("{value}:{list}");
    }
    // Each message decoded on the collector's thread that read it, while
    // the command runs; putting the calls in order and formatting them is
    // left for when it has ended.
    let gathered = Arc::new(Mutex::new(Gathered::new()));
    let sink: TraceSink = {
        let gathered = gathered.clone();
        Arc::new(move |seq, pid, msg| {
            gathered.lock().unwrap_or_else(|e| e.into_inner()).add(seq, pid, msg);
        })
    };
    let extra = [("USERTRAP_TRACE", value)];
    let (status, got) = stat::run_collected(checked, args.run.backend, &args.run.command, &extra, None, Some(sink))?;
    let mut gathered = std::mem::take(&mut *gathered.lock().unwrap_or_else(|e| e.into_inner()));
    gathered.add_kept(&got.kept);
    let recovered = std::mem::take(&mut gathered.recovered);
    let decoded = assemble(gathered);
    let names = process_names(&got.greetings, &got.sources);
    let counts = merge_counts(&got.sources);
    let written = write_trace(&mut *out, args.format, &decoded, &names, &counts, args.slow.is_some());
    if let Err(e) = written {
        let to = args.output.as_ref().map_or("stdout".to_string(), |p| p.display().to_string());
        return Err(Failure::new(OWN_FAILURE, format!("cannot write the trace to {to}: {}", io_msg(&e))));
    }
    let mut err = io::stderr().lock();
    for ((pid, tid), n) in &decoded.dropped {
        let _ = writeln!(
            err,
            "usertrap: {n} events dropped in pid {pid} thread {tid} (the collector could not take them in time)"
        );
    }
    // Said for the processes that did not end as they should (the others'
    // threads leave their buffers to be read so too, as they end).
    for m in &got.missing {
        if let Some(n) = recovered.get(&m.pid).filter(|n| **n > 0) {
            let _ =
                writeln!(err, "usertrap: {n} events of pid {} taken from its buffers (it did not send them)", m.pid);
        }
    }
    if got.unkept > 0 {
        let _ = writeln!(
            err,
            "usertrap: {} thread buffers could not be held by the collector (no descriptor left): \
             the calls their processes had not sent when killed are missing",
            got.unkept
        );
    }
    if decoded.damaged > 0 {
        let _ = writeln!(err, "usertrap: {} trace messages arrived damaged", decoded.damaged);
    }
    if !got.missing.is_empty() {
        let _ = writeln!(err, "usertrap: {}", crate::collect::describe(&got.missing, got.processes));
    }
    // The command ends now: unmapping the calls' output would only make it
    // end later.
    std::mem::forget(decoded);
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => Outcome::Exit(code),
        (None, Some(sig)) => Outcome::Signal(sig),
        (None, None) => Outcome::Exit(OWN_FAILURE),
    })
}

/// Each pid's name: its commands in exec order ("sh → ls").
fn process_names(greetings: &[(u32, u32, String, bool)], sources: &[crate::merge::Source]) -> BTreeMap<u32, String> {
    let mut names: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    // A parent's word of its fork child first: the child's own greeting
    // (after an exec) may reach the collector before it.
    let forks = greetings.iter().filter(|g| g.3);
    for (pid, _, cmd, _) in forks.chain(greetings.iter().filter(|g| !g.3)) {
        let v = names.entry(*pid).or_default();
        if v.last() != Some(cmd) {
            v.push(cmd.clone());
        }
    }
    for s in sources {
        let v = names.entry(s.report.pid).or_default();
        // A static program started by usertrap-launcher greets under the
        // launcher's name; its report names the program.
        if let Some(i) = v.iter().position(|n| n == "usertrap-launch") {
            if !v.contains(&s.report.command) {
                v[i] = s.report.command.clone();
            }
        } else if v.is_empty() {
            v.push(s.report.command.clone());
        }
    }
    names.into_iter().map(|(p, v)| (p, v.join(" → "))).collect()
}

/// Calls of every syscall over every process (recorded or not): name ->
/// (calls, errors).
fn merge_counts(sources: &[crate::merge::Source]) -> BTreeMap<String, (u64, u64)> {
    let agg = crate::merge::aggregate(sources.to_vec(), None, false, false);
    agg.syscalls.iter().map(|s| (s.stats.name.clone(), (s.stats.calls, s.stats.errors))).collect()
}

/// The writer's own buffer, for the few lines written apart from the calls
/// (process names, counts): less than [`CHUNK`], so that the calls' chunks
/// go to the file as they are, not copied into it first.
const OUT_BUF: usize = 1 << 16;

/// Calls are formatted into one buffer, handed to the writer when it holds
/// this much: small enough to stay in the CPU's cache while it is filled
/// and then copied into the file's pages, large enough for few writes.
const CHUNK: usize = 1 << 17;

fn write_trace(
    out: &mut dyn Write,
    format: TraceFormat,
    d: &Decoded,
    names: &BTreeMap<u32, String>,
    counts: &BTreeMap<String, (u64, u64)>,
    slow: bool,
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(CHUNK + (64 << 10));
    let flush = |buf: &mut Vec<u8>, out: &mut dyn Write, at: usize| -> io::Result<()> {
        if !buf.is_empty() && buf.len() >= at {
            out.write_all(buf)?;
            buf.clear();
        }
        Ok(())
    };
    match format {
        TraceFormat::Text => {
            write_lines(out, d, format)?;
            if slow {
                writeln!(out, "# calls made (all, recorded or not):")?;
                for (name, (calls, errors)) in counts {
                    writeln!(out, "# {name} {calls} calls, {errors} errors")?;
                }
            }
        }
        TraceFormat::Json => {
            for (pid, name) in names {
                writeln!(out, "{}", json!({"type": "process", "pid": pid, "command": name}))?;
            }
            write_lines(out, d, format)?;
            for ((pid, tid), n) in &d.dropped {
                writeln!(out, "{}", json!({"type": "dropped", "pid": pid, "tid": tid, "events": n}))?;
            }
            for (name, (calls, errors)) in counts {
                writeln!(out, "{}", json!({"type": "count", "syscall": name, "calls": calls, "errors": errors}))?;
            }
        }
        TraceFormat::Perfetto => {
            // One event at a time: a tree of a million values would take
            // gigabytes.
            write!(out, "{{\"displayTimeUnit\":\"ns\",\"traceEvents\":[")?;
            let mut first = true;
            let mut clock = Clock::default();
            perfetto_events(d, names, |e| {
                if !first {
                    buf.extend_from_slice(b",\n");
                }
                first = false;
                match e {
                    Slice::Value(v) => serde_json::to_writer(&mut buf, &v).map_err(io::Error::other)?,
                    Slice::Call(c, base) => {
                        d.format_call(c, format, &mut clock, &mut buf);
                        perfetto_tail(c.mono_ns, base, &mut buf);
                    }
                }
                flush(&mut buf, out, CHUNK)
            })?;
            flush(&mut buf, out, 0)?;
            writeln!(out, "]}}")?;
        }
    }
    out.flush()
}

/// Every call's line, in order, formatted into one buffer written as it
/// fills.
fn write_lines(out: &mut dyn Write, d: &Decoded, format: TraceFormat) -> io::Result<()> {
    let mut buf = Vec::with_capacity(CHUNK + (64 << 10));
    let mut clock = Clock::default();
    for c in &d.calls {
        d.format_call(c, format, &mut clock, &mut buf);
        if buf.len() >= CHUNK {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)
}

/// "ENOENT" (or "E123" for a number without a name).
fn errno_of(e: i64) -> Cow<'static, str> {
    errno_name(e).map_or_else(|| Cow::Owned(format!("E{e}")), Cow::Borrowed)
}

/// `,"errno":"ENOENT","result":-1` or `,"result":N` (the keys' order in
/// serde_json's maps), unless the call is PENDING (then nothing, and
/// false).
fn result_json(c: &Call<'_>, b: &mut Vec<u8>) -> bool {
    let r = c.e.result;
    if c.e.flags & wire::PENDING != 0 {
        return false;
    }
    if (-4095..0).contains(&r) {
        b.extend_from_slice(b",\"errno\":");
        jsonw::string(b, errno_of(-r).as_bytes());
    }
    b.extend_from_slice(b",\"result\":");
    jsonw::int(b, result_value(r));
    true
}

fn result_value(r: i64) -> i64 {
    if (-4095..0).contains(&r) {
        -1
    } else {
        r
    }
}

/// One line of `--format json` (docs/report-schema.md, "Trace"): the keys
/// sorted, as serde_json writes a map, each run of keys between two values
/// written as one constant.
fn json_call(c: &Call<'_>, b: &mut Vec<u8>) {
    let pending = c.e.flags & wire::PENDING != 0;
    b.extend_from_slice(b"{\"args\":");
    jsonw::hex_array(b, &c.e.args);
    b.extend_from_slice(b",\"dur_ns\":");
    jsonw::int(b, c.dur_ns);
    let r = c.e.result;
    if !pending && (-4095..0).contains(&r) {
        b.extend_from_slice(b",\"errno\":");
        jsonw::string(b, errno_of(-r).as_bytes());
    }
    if let Some(p) = &c.path {
        b.extend_from_slice(b",\"file\":");
        jsonw::string(b, p.as_bytes());
        if c.e.flags & wire::CUT != 0 {
            b.extend_from_slice(b",\"file_cut\":true");
        }
    }
    b.extend_from_slice(b",\"mono_ns\":");
    jsonw::int(b, c.mono_ns as i64);
    b.extend_from_slice(b",\"nr\":");
    jsonw::int(b, c.e.nr);
    b.extend_from_slice(if c.e.flags & wire::FAST != 0 {
        b",\"path\":\"fast\",\"pid\":"
    } else {
        b",\"path\":\"slow\",\"pid\":"
    });
    jsonw::int(b, c.pid);
    if !pending {
        b.extend_from_slice(b",\"result\":");
        jsonw::int(b, result_value(r));
    }
    b.extend_from_slice(b",\"site\":");
    jsonw::hex_str(b, c.e.site);
    b.extend_from_slice(b",\"syscall\":");
    jsonw::string(b, name_of(c.e.nr).as_bytes());
    b.extend_from_slice(b",\"tid\":");
    jsonw::int(b, c.tid);
    b.extend_from_slice(b",\"time_ns\":");
    jsonw::int(b, c.real_ns as i64);
    b.extend_from_slice(if pending { b",\"type\":\"call\",\"unfinished\":true}\n" } else { b",\"type\":\"call\"}\n" });
}

/// A trace event: most are few (names, flows, drops) and built as values;
/// the calls, one per recorded call, are written by hand.
pub enum Slice<'a> {
    Value(Value),
    /// A call, and the time (mono ns) that is 0 on the timeline.
    Call(&'a Placed, i64),
}

/// µs since `base`, as the trace's timestamps are.
fn us(ns: i64, base: i64) -> f64 {
    (ns - base) as f64 / 1000.0
}

/// A call's complete ("X") slice, its keys sorted as serde_json writes a map.
#[cfg(test)]
fn perfetto_call(c: &Call<'_>, base: i64, b: &mut Vec<u8>) {
    perfetto_head(c, b);
    perfetto_tail(c.mono_ns as i64, base, b);
}

/// Its timestamp and the end of the slice: the timestamp is from the
/// trace's first call, known only once every message has arrived.
fn perfetto_tail(mono_ns: i64, base: i64, b: &mut Vec<u8>) {
    // As serde_json writes `us(mono_ns, base)`.
    match mono_ns.checked_sub(base) {
        Some(ns) => jsonw::micros(b, ns),
        None => {
            // Writing to a Vec cannot fail (and a finite f64 always serializes).
            let _ = serde_json::to_writer(&mut *b, &us(mono_ns, base));
        }
    }
    b.push(b'}');
}

/// The slice up to its last key's value (`..."ts":`), which
/// [`perfetto_tail`] writes: the keys sorted, as serde_json writes a map,
/// each run of keys between two values written as one constant; the
/// strace-like line written into the slice as a JSON string at once (it
/// holds nothing to escape but its quoted path).
fn perfetto_head(c: &Call<'_>, b: &mut Vec<u8>) {
    b.extend_from_slice(b"{\"args\":{\"args\":");
    jsonw::hex_array(b, &c.e.args);
    b.extend_from_slice(b",\"call\":\"");
    text_call(c, b, true);
    b.push(b'"');
    result_json(c, b);
    b.extend_from_slice(b",\"site\":");
    jsonw::hex_str(b, c.e.site);
    b.extend_from_slice(b"},\"cat\":\"syscall\",\"dur\":");
    match i64::try_from(c.dur_ns) {
        Ok(ns) => jsonw::micros(b, ns),
        Err(_) => {
            // Writing to a Vec cannot fail (and a finite f64 always serializes).
            let _ = serde_json::to_writer(&mut *b, &(c.dur_ns as f64 / 1000.0));
        }
    }
    b.extend_from_slice(b",\"name\":");
    jsonw::string(b, name_of(c.e.nr).as_bytes());
    b.extend_from_slice(b",\"ph\":\"X\",\"pid\":");
    jsonw::int(b, c.pid);
    b.extend_from_slice(b",\"tid\":");
    jsonw::int(b, c.tid);
    b.extend_from_slice(b",\"ts\":");
}

/// Chrome trace-event JSON: a track per thread, grouped by process, each
/// call a complete ("X") slice; fork and exec as flow events from the call
/// to the first call after it in the new process (image), and a new
/// thread's as one from the clone to the thread's first call.
pub fn perfetto_events<'a>(
    d: &'a Decoded,
    names: &BTreeMap<u32, String>,
    mut each: impl FnMut(Slice<'a>) -> io::Result<()>,
) -> io::Result<()> {
    let base = d.calls.first().map_or(0, |c| c.mono_ns);
    let us = |ns: i64| us(ns, base);
    let mut ev = Emit(&mut each, std::marker::PhantomData);
    // Each set looked up only where the thread (process) changes from the
    // call before: not a search (a hash) a call.
    let mut threads: BTreeMap<(u32, u32), ()> = BTreeMap::new();
    let mut last = None;
    for c in &d.calls {
        if last != Some((c.pid, c.tid)) {
            threads.insert((c.pid, c.tid), ());
            last = Some((c.pid, c.tid));
        }
    }
    for (pid, name) in names {
        ev.push(json!({"ph": "M", "name": "process_name", "pid": pid, "tid": pid, "args": {"name": name}}))?;
    }
    for (pid, tid) in threads.keys() {
        ev.push(
            json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": format!("tid {tid}")}}),
        )?;
    }
    for c in &d.calls {
        (ev.0)(Slice::Call(c, base))?;
    }
    // Flows: a fork-like call that returned a child's pid, to the child's
    // first call; one that returned a new thread's tid, to that thread's
    // first call after it (tids are reused: not an earlier thread's); an
    // exec, to the first call after it in that process.
    let mut first_of: HashMap<u32, &Placed> = HashMap::new();
    let mut last = None;
    for c in &d.calls {
        if last != Some(c.pid) {
            first_of.entry(c.pid).or_insert(c);
            last = Some(c.pid);
        }
    }
    let is_fork_like = |c: &Placed| traits(c.nr).fork_like && c.result > 0;
    let mut thread_start: HashMap<usize, &Placed> = HashMap::new();
    let mut awaited: HashMap<(u32, u32), usize> = HashMap::new();
    for (i, c) in d.calls.iter().enumerate() {
        if let Some(from) = (!awaited.is_empty()).then(|| awaited.remove(&(c.pid, c.tid))).flatten() {
            thread_start.insert(from, c);
        }
        if is_fork_like(c) && first_of.get(&(c.result as u32)).is_none_or(|t| t.pid == c.pid) {
            awaited.insert((c.pid, c.result as u32), i);
        }
    }
    let mut id = 0u64;
    for (i, c) in d.calls.iter().enumerate() {
        let t = traits(c.nr);
        let target = if is_fork_like(c) {
            first_of
                .get(&(c.result as u32))
                .copied()
                .filter(|t| t.pid != c.pid)
                .or_else(|| thread_start.get(&i).copied())
        } else if t.exec && c.flags & wire::PENDING != 0 {
            d.calls[i + 1..].iter().find(|t| t.pid == c.pid && t.mono_ns >= c.mono_ns)
        } else {
            None
        };
        if let Some(t) = target {
            id += 1;
            let cat = if name_of(c.nr).starts_with("exec") {
                "exec"
            } else if t.pid == c.pid {
                "thread"
            } else {
                "fork"
            };
            ev.push(json!({"ph": "s", "cat": cat, "name": cat, "id": id, "pid": c.pid, "tid": c.tid,
                "ts": us(c.mono_ns + c.dur_ns as i64)}))?;
            ev.push(json!({"ph": "f", "bp": "e", "cat": cat, "name": cat, "id": id, "pid": t.pid, "tid": t.tid,
                "ts": us(t.mono_ns)}))?;
        }
    }
    for ((pid, tid), n) in &d.dropped {
        let ts = d.calls.iter().rev().find(|c| c.pid == *pid && c.tid == *tid).map_or(0.0, |c| us(c.mono_ns));
        ev.push(json!({"ph": "i", "s": "t", "name": format!("{n} events dropped"), "pid": pid, "tid": tid, "ts": ts}))?;
    }
    Ok(())
}

/// `push` an event to a writer (so the code reads as building a list).
struct Emit<'a, 'b, F: FnMut(Slice<'b>) -> io::Result<()>>(&'a mut F, std::marker::PhantomData<&'b ()>);

impl<'b, F: FnMut(Slice<'b>) -> io::Result<()>> Emit<'_, 'b, F> {
    fn push(&mut self, v: Value) -> io::Result<()> {
        (self.0)(Slice::Value(v))
    }
}

// --- strace-like text ------------------------------------------------------

#[derive(Clone, Copy)]
enum Arg {
    Fd,
    DirFd,
    Path,
    OFlags,
    Mode,
    Int,
    Hex,
    Sig,
}

/// The decoded calls (about 50 common ones); the rest are shown raw.
fn shape(name: &str) -> Option<&'static [Arg]> {
    use Arg::*;
    Some(match name {
        "read" | "write" | "getdents64" => &[Fd, Hex, Int],
        "pread64" | "pwrite64" => &[Fd, Hex, Int, Int],
        "readv" | "writev" => &[Fd, Hex, Int],
        "open" => &[Path, OFlags, Mode],
        "creat" => &[Path, Mode],
        "openat" => &[DirFd, Path, OFlags, Mode],
        "close" | "fsync" | "fdatasync" | "dup" | "syncfs" => &[Fd],
        "dup2" => &[Fd, Fd],
        "dup3" => &[Fd, Fd, Hex],
        "stat" | "lstat" | "statfs" => &[Path, Hex],
        "fstat" | "fstatfs" => &[Fd, Hex],
        "newfstatat" => &[DirFd, Path, Hex, Hex],
        "statx" => &[DirFd, Path, Hex, Hex, Hex],
        "access" => &[Path, Int],
        "faccessat" | "faccessat2" => &[DirFd, Path, Int],
        "lseek" => &[Fd, Int, Int],
        "mmap" => &[Hex, Int, Hex, Hex, Fd, Int],
        "mprotect" | "madvise" => &[Hex, Int, Hex],
        "munmap" => &[Hex, Int],
        "brk" => &[Hex],
        "ioctl" | "fcntl" => &[Fd, Hex, Hex],
        "pipe" | "pipe2" => &[Hex, Hex],
        "nanosleep" => &[Hex, Hex],
        "clock_nanosleep" => &[Int, Int, Hex, Hex],
        "getpid" | "getppid" | "gettid" | "fork" | "vfork" | "sched_yield" | "getuid" | "geteuid" => &[],
        "exit" | "exit_group" => &[Int],
        "kill" => &[Int, Sig],
        "tgkill" => &[Int, Int, Sig],
        "rt_sigaction" => &[Sig, Hex, Hex, Int],
        "socket" => &[Int, Int, Int],
        "connect" | "bind" | "accept" => &[Fd, Hex, Int],
        "accept4" => &[Fd, Hex, Hex, Hex],
        "listen" | "shutdown" => &[Fd, Int],
        "sendto" | "recvfrom" => &[Fd, Hex, Int, Hex],
        "sendmsg" | "recvmsg" => &[Fd, Hex, Hex],
        "poll" => &[Hex, Int, Int],
        "epoll_wait" => &[Fd, Hex, Int, Int],
        "epoll_ctl" => &[Fd, Int, Fd, Hex],
        "futex" => &[Hex, Int, Int, Hex],
        "wait4" => &[Int, Hex, Hex, Hex],
        "execve" => &[Path, Hex, Hex],
        "chdir" | "rmdir" | "unlink" => &[Path],
        "mkdir" => &[Path, Mode],
        "mkdirat" => &[DirFd, Path, Mode],
        "unlinkat" => &[DirFd, Path, Hex],
        "readlink" => &[Path, Hex, Int],
        "readlinkat" => &[DirFd, Path, Hex, Int],
        "rename" => &[Path, Hex],
        "ftruncate" => &[Fd, Int],
        "truncate" => &[Path, Int],
        "getrandom" => &[Hex, Int, Hex],
        "clone" => &[Hex, Hex, Hex, Hex, Hex],
        _ => return None,
    })
}

fn open_flags(f: u64) -> String {
    let mut parts = vec![match f & 3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    }
    .to_string()];
    // The kernel's values (libc's O_LARGEFILE is 0 on x86-64, the kernel's
    // is not).
    let named: [(u64, &str); 14] = [
        (libc::O_CREAT as u64, "O_CREAT"),
        (libc::O_EXCL as u64, "O_EXCL"),
        (libc::O_NOCTTY as u64, "O_NOCTTY"),
        (libc::O_TRUNC as u64, "O_TRUNC"),
        (libc::O_APPEND as u64, "O_APPEND"),
        (libc::O_NONBLOCK as u64, "O_NONBLOCK"),
        (libc::O_DSYNC as u64, "O_DSYNC"),
        (libc::O_DIRECT as u64, "O_DIRECT"),
        (0o100000, "O_LARGEFILE"),
        (libc::O_NOFOLLOW as u64, "O_NOFOLLOW"),
        (libc::O_NOATIME as u64, "O_NOATIME"),
        (libc::O_CLOEXEC as u64, "O_CLOEXEC"),
        (libc::O_PATH as u64, "O_PATH"),
        (libc::O_TMPFILE as u64, "O_TMPFILE"),
    ];
    let mut rest = f & !3;
    for (bit, name) in named {
        if rest & bit == bit {
            parts.push(name.to_string());
            rest &= !bit;
        }
    }
    if rest & libc::O_DIRECTORY as u64 != 0 {
        parts.push("O_DIRECTORY".into());
        rest &= !(libc::O_DIRECTORY as u64);
    }
    if rest != 0 {
        parts.push(format!("{rest:#o}"));
    }
    parts.join("|")
}

/// What the writers need of a syscall besides its name, by number
/// ([`traits`]).
#[derive(Clone, Copy)]
struct Traits {
    /// [`shape`]'s.
    shape: Option<&'static [Arg]>,
    /// open's and openat's: the argument holding the open flags.
    open_flags: Option<usize>,
    /// mmap, brk and mremap: a result shown in hex.
    hex_result: bool,
    fork_like: bool,
    exec: bool,
}

impl Traits {
    fn of(name: &str) -> Traits {
        Traits {
            shape: shape(name),
            open_flags: match name {
                "open" => Some(1),
                "openat" => Some(2),
                _ => None,
            },
            hex_result: matches!(name, "mmap" | "brk" | "mremap"),
            fork_like: matches!(name, "fork" | "vfork" | "clone" | "clone3"),
            exec: matches!(name, "execve" | "execveat"),
        }
    }
}

/// Syscall `nr`'s [`Traits`], from its name: looked up once per number
/// below 1024, in a table made at the first call (matching the name
/// against the 50 decoded ones, a few times a call, was a tenth of a
/// line's time), the others (i386 calls) from their names each time.
fn traits(nr: i64) -> Traits {
    static TABLE: std::sync::LazyLock<Vec<Traits>> =
        std::sync::LazyLock::new(|| (0..1024).map(|nr| Traits::of(&name_of(nr))).collect());
    match usize::try_from(nr).ok().and_then(|i| TABLE.get(i)) {
        Some(t) => *t,
        None => Traits::of(&name_of(nr)),
    }
}

/// A path argument: the recorded path as a JSON string ("..." after it if
/// cut), else the pointer; `in_json`: as escaped in a JSON string.
fn quoted(c: &Call<'_>, b: &mut Vec<u8>, in_json: bool) {
    match &c.path {
        Some(p) if in_json => {
            b.extend_from_slice(b"\\\"");
            jsonw::escaped_twice(b, p.as_bytes());
            b.extend_from_slice(b"\\\"");
            if c.e.flags & wire::CUT != 0 {
                b.extend_from_slice(b"...");
            }
        }
        Some(p) => {
            jsonw::string(b, p.as_bytes());
            if c.e.flags & wire::CUT != 0 {
                b.extend_from_slice(b"...");
            }
        }
        None => jsonw::hex(b, c.e.args[wire::path_arg(c.e.nr).unwrap_or(0)]),
    }
}

/// The arguments a text line shows for a call of these traits and how
/// (None: all six, raw): strace shows open's mode only where it is used.
fn shown_args(t: &Traits, a: &[u64; 6]) -> Option<&'static [Arg]> {
    let creates = |f: u64| f & libc::O_CREAT as u64 != 0 || f & libc::O_TMPFILE as u64 == libc::O_TMPFILE as u64;
    match (t.open_flags, t.shape) {
        (Some(at), Some(k)) if !a.get(at).is_some_and(|&f| creates(f)) => k.get(..at + 1),
        (_, k) => k,
    }
}

/// "openat(AT_FDCWD, \"/x\", O_RDONLY)"; `in_json`: as escaped in a JSON
/// string (only its quoted path has anything to escape: the rest is
/// names, numbers, flags, commas and parentheses).
fn text_call(c: &Call<'_>, b: &mut Vec<u8>, in_json: bool) {
    let name = name_of(c.e.nr);
    let a = &c.e.args;
    let kinds = shown_args(&traits(c.e.nr), a);
    b.extend_from_slice(name.as_bytes());
    b.push(b'(');
    match kinds {
        Some(kinds) => {
            for (i, (k, &v)) in kinds.iter().zip(a).enumerate() {
                if i > 0 {
                    b.extend_from_slice(b", ");
                }
                match k {
                    Arg::Fd => jsonw::int(b, v as i32),
                    Arg::DirFd if v as i32 == libc::AT_FDCWD => b.extend_from_slice(b"AT_FDCWD"),
                    Arg::DirFd => jsonw::int(b, v as i32),
                    Arg::Path => quoted(c, b, in_json),
                    Arg::OFlags => b.extend_from_slice(open_flags(v).as_bytes()),
                    Arg::Mode => {
                        let _ = write!(b, "{:#o}", v & 0o7777);
                    }
                    Arg::Int => jsonw::int(b, v as i64),
                    Arg::Hex => jsonw::hex(b, v),
                    Arg::Sig => match usertrap_core::names::signal_name(v as i32) {
                        Some(s) => b.extend_from_slice(s.as_bytes()),
                        None => jsonw::int(b, v),
                    },
                }
            }
        }
        None => {
            for (i, &v) in a.iter().enumerate() {
                if i > 0 {
                    b.extend_from_slice(b", ");
                }
                jsonw::hex(b, v);
            }
        }
    }
    b.push(b')');
}

fn result_text(c: &Call<'_>, b: &mut Vec<u8>) {
    if c.e.flags & wire::PENDING != 0 {
        b.push(b'?');
        return;
    }
    let r = c.e.result;
    if (-4095..0).contains(&r) {
        let text = io::Error::from_raw_os_error(-r as i32).to_string();
        let text = text.split(" (os error").next().unwrap_or_default();
        let _ = write!(b, "-1 {} ({text})", errno_of(-r));
        return;
    }
    if traits(c.e.nr).hex_result {
        jsonw::hex(b, r as u64);
    } else {
        jsonw::int(b, r);
    }
}

/// `n` (below 10^6) as six digits.
fn six_digits(b: &mut Vec<u8>, n: u64) {
    let mut d = [b'0'; 6];
    let mut n = n % 1_000_000;
    for x in d.iter_mut().rev() {
        *x = b'0' + (n % 10) as u8;
        n /= 10;
    }
    b.extend_from_slice(&d);
}

/// Local "HH:MM:SS" of the last second asked (localtime_r once a second,
/// not once a call).
#[derive(Default)]
struct Clock {
    secs: Option<libc::time_t>,
    hms: [u8; 8],
}

impl Clock {
    /// "12:34:56.123456" in local time.
    fn write(&mut self, real_ns: i128, b: &mut Vec<u8>) {
        // In 64 bits when it fits (until 2262): a 128-bit division is a
        // call to a slow routine.
        let (secs, micros) = match i64::try_from(real_ns) {
            Ok(ns) => (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000) / 1000),
            Err(_) => {
                (real_ns.div_euclid(1_000_000_000) as libc::time_t, (real_ns.rem_euclid(1_000_000_000) / 1000) as i64)
            }
        };
        if self.secs != Some(secs) {
            // SAFETY: localtime_r fills the tm we pass, from the time_t we pass.
            let mut tm: libc::tm = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            unsafe { libc::localtime_r(&raw const secs, &raw mut tm) };
            let s = format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec);
            self.hms.copy_from_slice(&s.as_bytes()[..8]);
            self.secs = Some(secs);
        }
        b.extend_from_slice(&self.hms);
        b.push(b'.');
        six_digits(b, micros as u64);
    }
}

/// "[pid 12 13] 12:34:56.123456 openat(...) = -1 ENOENT (...) <0.000012>\n".
fn text_line_into(c: &Call<'_>, clock: &mut Clock, b: &mut Vec<u8>) {
    b.extend_from_slice(b"[pid ");
    jsonw::int(b, c.pid);
    b.push(b' ');
    jsonw::int(b, c.tid);
    b.extend_from_slice(b"] ");
    clock.write(c.real_ns, b);
    b.push(b' ');
    text_call(c, b, false);
    b.extend_from_slice(b" = ");
    result_text(c, b);
    if c.e.flags & wire::PENDING == 0 {
        b.extend_from_slice(b" <");
        jsonw::int(b, c.dur_ns / 1_000_000_000);
        b.push(b'.');
        six_digits(b, c.dur_ns % 1_000_000_000 / 1000);
        b.push(b'>');
    }
    b.push(b'\n');
}

/// [`text_line_into`]'s line, without its newline.
#[cfg(test)]
fn text_line(c: &Call<'_>) -> String {
    let mut b = Vec::new();
    text_line_into(c, &mut Clock::default(), &mut b);
    b.pop();
    String::from_utf8_lossy(&b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    // --- the writers before they wrote by hand (serde_json values, format!),
    // kept to check that the bytes did not change.

    fn old_result_json(r: i64) -> Value {
        if (-4095..0).contains(&r) {
            json!({"result": -1, "errno": errno_name(-r).map_or(format!("E{}", -r), str::to_string)})
        } else {
            json!({"result": r})
        }
    }

    fn old_json_call(c: &Call<'_>) -> Value {
        let mut v = json!({
            "type": "call", "pid": c.pid, "tid": c.tid, "time_ns": c.real_ns as i64, "mono_ns": c.mono_ns as i64,
            "dur_ns": c.dur_ns, "syscall": name_of(c.e.nr), "nr": c.e.nr,
            "args": c.e.args.iter().map(|a| format!("{a:#x}")).collect::<Vec<_>>(),
            "site": format!("{:#x}", c.e.site),
            "path": if c.e.flags & wire::FAST != 0 { "fast" } else { "slow" },
        });
        let o = v.as_object_mut().unwrap();
        if c.e.flags & wire::PENDING != 0 {
            o.insert("unfinished".into(), json!(true));
        } else if let Some(r) = old_result_json(c.e.result).as_object() {
            o.extend(r.clone());
        }
        if let Some(p) = &c.path {
            o.insert("file".into(), json!(p));
            if c.e.flags & wire::CUT != 0 {
                o.insert("file_cut".into(), json!(true));
            }
        }
        v
    }

    fn old_perfetto_call(c: &Call<'_>, base: i64) -> Value {
        let mut args = json!({
            "args": c.e.args.iter().map(|a| format!("{a:#x}")).collect::<Vec<_>>(),
            "site": format!("{:#x}", c.e.site),
            "call": old_text_call(c),
        });
        if let (Some(o), Some(r)) = (args.as_object_mut(), old_result_json(c.e.result).as_object()) {
            if c.e.flags & wire::PENDING == 0 {
                o.extend(r.clone());
            }
        }
        json!({
            "ph": "X", "cat": "syscall", "name": name_of(c.e.nr), "pid": c.pid, "tid": c.tid,
            "ts": (c.mono_ns - base as i128) as f64 / 1000.0, "dur": c.dur_ns as f64 / 1000.0, "args": args,
        })
    }

    fn old_shown_args(name: &str, a: &[u64; 6]) -> Option<&'static [Arg]> {
        let creates = |f: u64| f & libc::O_CREAT as u64 != 0 || f & libc::O_TMPFILE as u64 == libc::O_TMPFILE as u64;
        match (name, shape(name)) {
            ("open", Some(k)) if !creates(a[1]) => k.get(..2),
            ("openat", Some(k)) if !creates(a[2]) => k.get(..3),
            (_, k) => k,
        }
    }

    fn old_text_call(c: &Call<'_>) -> String {
        let name = name_of(c.e.nr);
        let a = &c.e.args;
        let kinds = old_shown_args(&name, a);
        let quoted = |c: &Call<'_>| match &c.path {
            Some(p) => {
                let cut = if c.e.flags & wire::CUT != 0 { "..." } else { "" };
                format!("{}{cut}", serde_json::to_string(p).unwrap_or_default())
            }
            None => format!("{:#x}", c.e.args[wire::path_arg(c.e.nr).unwrap_or(0)]),
        };
        let parts: Vec<String> = match kinds {
            Some(kinds) => kinds
                .iter()
                .zip(a)
                .map(|(k, &v)| match k {
                    Arg::Fd => (v as i32).to_string(),
                    Arg::DirFd if v as i32 == libc::AT_FDCWD => "AT_FDCWD".into(),
                    Arg::DirFd => (v as i32).to_string(),
                    Arg::Path => quoted(c),
                    Arg::OFlags => open_flags(v),
                    Arg::Mode => format!("{:#o}", v & 0o7777),
                    Arg::Int => (v as i64).to_string(),
                    Arg::Hex => format!("{v:#x}"),
                    Arg::Sig => usertrap_core::names::signal_name(v as i32).map_or(v.to_string(), str::to_string),
                })
                .collect(),
            None => a.iter().map(|v| format!("{v:#x}")).collect(),
        };
        format!("{name}({})", parts.join(", "))
    }

    fn old_text_line(c: &Call<'_>) -> String {
        let result = if c.e.flags & wire::PENDING != 0 {
            "?".to_string()
        } else if (-4095..0).contains(&c.e.result) {
            let r = c.e.result;
            let e = errno_name(-r).map_or(format!("E{}", -r), str::to_string);
            let text = io::Error::from_raw_os_error(-r as i32).to_string();
            format!("-1 {e} ({})", text.split(" (os error").next().unwrap_or_default())
        } else {
            match &*name_of(c.e.nr) {
                "mmap" | "brk" | "mremap" => format!("{:#x}", c.e.result),
                _ => c.e.result.to_string(),
            }
        };
        let dur = if c.e.flags & wire::PENDING != 0 {
            String::new()
        } else {
            format!(" <{}.{:06}>", c.dur_ns / 1_000_000_000, c.dur_ns % 1_000_000_000 / 1000)
        };
        let secs = c.real_ns.div_euclid(1_000_000_000) as libc::time_t;
        let micros = c.real_ns.rem_euclid(1_000_000_000) / 1000;
        // SAFETY: localtime_r fills the tm we pass, from the time_t we pass.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::localtime_r(&raw const secs, &raw mut tm) };
        let clock = format!("{:02}:{:02}:{:02}.{micros:06}", tm.tm_hour, tm.tm_min, tm.tm_sec);
        format!("[pid {} {}] {clock} {} = {result}{dur}", c.pid, c.tid, old_text_call(c))
    }

    /// Calls of every shape the writers tell apart.
    fn varied_calls() -> Vec<Call<'static>> {
        let call = |nr: i64, result: i64, flags: u16, args: [u64; 6], path: Option<&'static str>| Call {
            pid: 4000 + nr as u32 % 3,
            tid: 4100 + nr as u32 % 5,
            mono_ns: 1_000_000_000 + nr as i128 * 1_234_567,
            real_ns: 1_700_000_000_123_456_789 + nr as i128 * 987_654_321,
            dur_ns: (nr as u64 * 7919) % 3_000_000_123,
            e: Event { nr, result, flags, args, site: 0x7f00_0000_1234 + nr as u64, tid: 0, ..Default::default() },
            path: path.map(Cow::Borrowed),
        };
        let fdcwd = (-100i64) as u64;
        vec![
            call(257, -2, wire::FAST, [fdcwd, 0x1000, 0, 0, 0, 0], Some("/no/such")),
            call(257, 3, 0, [5, 0x1000, (libc::O_CREAT | libc::O_WRONLY) as u64, 0o644, 0, 0], Some("a\"b\\c\n\u{1}é")),
            call(2, 4, wire::CUT, [0x2000, libc::O_TMPFILE as u64 | 2, 0o600, 0, 0, 0], Some("/long/pa")),
            call(4, -14, wire::BAD_PATH, [0xdead, 0, 0, 0, 0, 0], None),
            call(59, 0, wire::PENDING, [0x3000, 0x4000, 0x5000, 0, 0, 0], Some("/bin/true")),
            call(9, 0x7f12_3456_7000, wire::FAST, [0, 4096, 3, 0x22, u64::MAX, 0], None),
            call(0, 12, wire::FAST, [3, 0x7ffd_0000, 4096, 0, 0, 0], None),
            call(62, 0, 0, [77, 9, 0, 0, 0, 0], None),
            call(62, -3, 0, [77, 99, 0, 0, 0, 0], None),
            call(39, 4000, wire::FAST, [0; 6], None),
            call(231, 0, wire::PENDING, [1, 0, 0, 0, 0, 0], None),
            call(449, -4095, 0, [1, 2, 3, 4, 5, 6], None),
            call(999, 5, 0, [u64::MAX, 0, 1, 2, 3, 4], None),
            call(1 << 40 | 20, -38, 0, [1, 2, 3, 0, 0, 0], None),
            call(1 << 40 | 9999, 0, 0, [0; 6], None),
            call(202, -110, 0, [0x1234, 0x80, 0, 0, 0, 0], None),
            call(12, 0x55_0000, 0, [0, 0, 0, 0, 0, 0], None),
            call(262, 0, wire::FAST, [fdcwd, 0x1000, 0x2000, 0x100, 0, 0], Some("/")),
        ]
    }

    /// Messages of two processes, one of them without a frequency (decoded
    /// at the end with its process's from another message).
    fn sample_messages() -> Vec<(u32, Vec<u8>)> {
        let ev = |tid: u32, start: u64, nr: i64, result: i64| Event {
            start,
            ticks: 3,
            nr,
            result,
            args: [3, 0x1000, 16, 0, 0, 0],
            tid,
            site: 0x4000,
            flags: if nr == 59 { wire::PENDING } else { wire::FAST },
            ..Default::default()
        };
        let mut msgs = vec![
            msg(7, &[(ev(7, 3000, 0, 5), b""), (ev(7, 3500, 257, -2), b"/a\\"), (ev(7, 3200, 39, 7), b"")], 3, 1),
            msg(8, &[(ev(8, 3100, 1, 5), b""), (ev(8, 4100, 59, 0), b"/bin/x")], 2, 0),
            // No frequency, and too short a time to scale by: decoded at the
            // end with pid 7's frequency.
            msg(7, &[(ev(9, 3300, 262, 0), b"/")], 1, 0),
        ];
        let head_end = msgs[2].1.iter().position(|&b| b == b'\n').unwrap();
        let head = String::from_utf8(msgs[2].1[..head_end].to_vec()).unwrap().replace(" 1000000000 ", " 0 ");
        msgs[2].1.splice(..head_end, head.into_bytes());
        msgs
    }

    /// One call's output.
    fn formatted(d: &Decoded, c: &Placed, format: TraceFormat) -> Vec<u8> {
        let mut b = Vec::new();
        d.format_call(c, format, &mut Clock::default(), &mut b);
        b
    }

    fn written(format: TraceFormat, d: &Decoded) -> String {
        let names = BTreeMap::from([(7, "a".to_string()), (8, "b".to_string())]);
        let counts = BTreeMap::from([("read".to_string(), (1, 0))]);
        let mut out = Vec::new();
        write_trace(&mut out, format, d, &names, &counts, true).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn messages_in_any_arrival_order_give_the_same_trace() {
        let msgs = sample_messages();
        for format in [TraceFormat::Text, TraceFormat::Json, TraceFormat::Perfetto] {
            let in_order = decode(&msgs);
            assert_eq!(in_order.calls.len(), 6);
            // In any order (the collector's threads end in any order).
            let mut g = Gathered::new();
            for (i, (p, m)) in msgs.iter().enumerate().rev() {
                g.add(i as u64, *p, m.clone());
            }
            let reversed = assemble(g);
            assert_eq!(reversed.messages.len(), 3, "{format:?}: every message kept");
            assert_eq!(written(format, &in_order), written(format, &reversed), "{format:?}");
        }
    }

    /// The bytes of each format for a few calls, as they were before calls
    /// were formatted into blocks as their messages arrived (and since, at
    /// the end).
    #[test]
    fn a_few_calls_written_byte_for_byte() {
        let msgs = sample_messages();
        let json = written(TraceFormat::Json, &decode(&msgs));
        let expect_json = r#"{"command":"a","pid":7,"type":"process"}
{"command":"b","pid":8,"type":"process"}
{"args":["0x3","0x1000","0x10","0x0","0x0","0x0"],"dur_ns":3,"mono_ns":998000,"nr":0,"path":"fast","pid":7,"result":5,"site":"0x4000","syscall":"read","tid":7,"time_ns":1998000,"type":"call"}
{"args":["0x3","0x1000","0x10","0x0","0x0","0x0"],"dur_ns":3,"mono_ns":998100,"nr":1,"path":"fast","pid":8,"result":5,"site":"0x4000","syscall":"write","tid":8,"time_ns":1998100,"type":"call"}
{"args":["0x3","0x1000","0x10","0x0","0x0","0x0"],"dur_ns":3,"mono_ns":998200,"nr":39,"path":"fast","pid":7,"result":7,"site":"0x4000","syscall":"getpid","tid":7,"time_ns":1998200,"type":"call"}
{"args":["0x3","0x1000","0x10","0x0","0x0","0x0"],"dur_ns":3,"file":"/","mono_ns":998300,"nr":262,"path":"fast","pid":7,"result":0,"site":"0x4000","syscall":"newfstatat","tid":9,"time_ns":1998300,"type":"call"}
{"args":["0x3","0x1000","0x10","0x0","0x0","0x0"],"dur_ns":3,"errno":"ENOENT","file":"/a\\","mono_ns":998500,"nr":257,"path":"fast","pid":7,"result":-1,"site":"0x4000","syscall":"openat","tid":7,"time_ns":1998500,"type":"call"}
{"args":["0x3","0x1000","0x10","0x0","0x0","0x0"],"dur_ns":3,"file":"/bin/x","mono_ns":999100,"nr":59,"path":"slow","pid":8,"site":"0x4000","syscall":"execve","tid":8,"time_ns":1999100,"type":"call","unfinished":true}
{"events":1,"pid":7,"tid":7,"type":"dropped"}
{"calls":1,"errors":0,"syscall":"read","type":"count"}
"#;
        assert_eq!(json, expect_json);
        let perfetto = written(TraceFormat::Perfetto, &decode(&msgs));
        let expect_perfetto = r#"{"displayTimeUnit":"ns","traceEvents":[{"args":{"name":"a"},"name":"process_name","ph":"M","pid":7,"tid":7},
{"args":{"name":"b"},"name":"process_name","ph":"M","pid":8,"tid":8},
{"args":{"name":"tid 7"},"name":"thread_name","ph":"M","pid":7,"tid":7},
{"args":{"name":"tid 9"},"name":"thread_name","ph":"M","pid":7,"tid":9},
{"args":{"name":"tid 8"},"name":"thread_name","ph":"M","pid":8,"tid":8},
{"args":{"args":["0x3","0x1000","0x10","0x0","0x0","0x0"],"call":"read(3, 0x1000, 16)","result":5,"site":"0x4000"},"cat":"syscall","dur":0.003,"name":"read","ph":"X","pid":7,"tid":7,"ts":0.0},
{"args":{"args":["0x3","0x1000","0x10","0x0","0x0","0x0"],"call":"write(3, 0x1000, 16)","result":5,"site":"0x4000"},"cat":"syscall","dur":0.003,"name":"write","ph":"X","pid":8,"tid":8,"ts":0.1},
{"args":{"args":["0x3","0x1000","0x10","0x0","0x0","0x0"],"call":"getpid()","result":7,"site":"0x4000"},"cat":"syscall","dur":0.003,"name":"getpid","ph":"X","pid":7,"tid":7,"ts":0.2},
{"args":{"args":["0x3","0x1000","0x10","0x0","0x0","0x0"],"call":"newfstatat(3, \"/\", 0x10, 0x0)","result":0,"site":"0x4000"},"cat":"syscall","dur":0.003,"name":"newfstatat","ph":"X","pid":7,"tid":9,"ts":0.3},
{"args":{"args":["0x3","0x1000","0x10","0x0","0x0","0x0"],"call":"openat(3, \"/a\\\\\", O_RDONLY|0o20)","errno":"ENOENT","result":-1,"site":"0x4000"},"cat":"syscall","dur":0.003,"name":"openat","ph":"X","pid":7,"tid":7,"ts":0.5},
{"args":{"args":["0x3","0x1000","0x10","0x0","0x0","0x0"],"call":"execve(\"/bin/x\", 0x1000, 0x10)","site":"0x4000"},"cat":"syscall","dur":0.003,"name":"execve","ph":"X","pid":8,"tid":8,"ts":1.1},
{"name":"1 events dropped","ph":"i","pid":7,"s":"t","tid":7,"ts":0.5}]}
"#;
        assert_eq!(perfetto, expect_perfetto);
        let text = written(TraceFormat::Text, &decode(&msgs));
        let lines: Vec<&str> = text.lines().collect();
        // Local time, whatever the zone: the clock is checked apart (below).
        let expect_text = [
            ("[pid 7 7] ", "read(3, 0x1000, 16) = 5 <0.000000>"),
            ("[pid 8 8] ", "write(3, 0x1000, 16) = 5 <0.000000>"),
            ("[pid 7 7] ", "getpid() = 7 <0.000000>"),
            ("[pid 7 9] ", r#"newfstatat(3, "/", 0x10, 0x0) = 0 <0.000000>"#),
            ("[pid 7 7] ", r#"openat(3, "/a\\", O_RDONLY|0o20) = -1 ENOENT (No such file or directory) <0.000000>"#),
            ("[pid 8 8] ", r#"execve("/bin/x", 0x1000, 0x10) = ?"#),
        ];
        assert_eq!(lines.len(), expect_text.len() + 2, "{text}");
        for (line, (start, end)) in lines.iter().zip(expect_text) {
            assert!(line.starts_with(start) && line.ends_with(end), "{line}");
            let clock = &line[start.len()..line.len() - end.len()];
            assert!(clock.len() == 16 && clock.ends_with(' ') && clock.as_bytes()[8] == b'.', "{line}");
        }
        assert_eq!(lines[lines.len() - 2..], ["# calls made (all, recorded or not):", "# read 1 calls, 0 errors"]);
    }

    /// A large trace of several threads, its messages arriving out of
    /// order: every call is written once, in time order, each line as its
    /// event said, across many chunks.
    #[test]
    fn a_large_trace_reads_back_whole_and_in_order() {
        const THREADS: u64 = 4;
        const PER_MSG: u64 = 500;
        const MSGS: u64 = 20;
        let mut msgs = Vec::new();
        for m in 0..MSGS {
            for t in 0..THREADS {
                let tid = 100 + t as u32;
                let events: Vec<(Event, &[u8])> = (0..PER_MSG)
                    .map(|i| {
                        let n = m * PER_MSG + i;
                        let e = Event {
                            start: 4000 + n * 8 + t,
                            ticks: 1 + n % 7,
                            nr: if n.is_multiple_of(3) { 262 } else { 0 },
                            result: if n.is_multiple_of(5) { -2 } else { n as i64 },
                            args: [n, t, 3, 4, 5, 6],
                            site: 0x1000 + n,
                            tid,
                            ..Default::default()
                        };
                        (e, if n.is_multiple_of(3) { &b"/some/path/\"\n\x01\xff"[..] } else { &b""[..] })
                    })
                    .collect();
                msgs.push(msg(tid, &events, PER_MSG, 0));
            }
        }
        let mut g = Gathered::new();
        // Arrival: the last message first.
        for (i, (p, m)) in msgs.iter().enumerate().rev() {
            g.add(i as u64, *p, m.clone());
        }
        let d = assemble(g);
        let json = written(TraceFormat::Json, &d);
        assert!(json.len() > 4 * CHUNK, "{} bytes", json.len());
        let calls: Vec<Value> =
            json.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|v| v["type"] == "call").collect();
        assert_eq!(calls.len() as u64, THREADS * MSGS * PER_MSG);
        let mut seen = std::collections::HashSet::new();
        let mut last = i64::MIN;
        for c in &calls {
            let mono = c["mono_ns"].as_i64().unwrap();
            assert!(mono >= last, "in time order");
            last = mono;
            let args = c["args"].as_array().unwrap();
            let n = u64::from_str_radix(args[0].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
            let t = u64::from_str_radix(args[1].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
            assert!(seen.insert((n, t)), "call {n} of thread {t} written once");
            assert_eq!(c["tid"], 100 + t);
            assert_eq!(c["mono_ns"], 1_000_000 - (5000 - (4000 + n * 8 + t)) as i64);
            assert_eq!(c["dur_ns"], 1 + n % 7);
            assert_eq!(c["site"], format!("{:#x}", 0x1000 + n));
            if n.is_multiple_of(5) {
                assert_eq!((c["result"].as_i64(), c["errno"].as_str()), (Some(-1), Some("ENOENT")));
            } else {
                assert_eq!(c["result"], n);
            }
            if n.is_multiple_of(3) {
                assert_eq!(
                    (c["syscall"].as_str(), c["file"].as_str()),
                    (Some("newfstatat"), Some("/some/path/\"\n\u{1}\u{fffd}"))
                );
            } else {
                assert_eq!((c["syscall"].as_str(), c.get("file")), (Some("read"), None));
            }
        }
    }

    #[test]
    fn the_written_bytes_are_those_of_serde_json_values() {
        let base = 999_000_000;
        for c in &varied_calls() {
            let mut b = Vec::new();
            json_call(c, &mut b);
            assert_eq!(String::from_utf8(b).unwrap(), format!("{}\n", old_json_call(c)));
            let mut b = Vec::new();
            perfetto_call(c, base, &mut b);
            assert_eq!(String::from_utf8(b).unwrap(), old_perfetto_call(c, base).to_string());
            assert_eq!(text_line(c), old_text_line(c));
        }
        // The clock's second, kept from one call to the next, is redone
        // when the second changes.
        let mut clock = Clock::default();
        let mut b = Vec::new();
        for c in &varied_calls() {
            text_line_into(c, &mut clock, &mut b);
        }
        let old: String = varied_calls().iter().map(|c| old_text_line(c) + "\n").collect();
        assert_eq!(String::from_utf8(b).unwrap(), old);
    }

    fn msg(pid: u32, events: &[(Event, &[u8])], declared: u64, dropped: u64) -> (u32, Vec<u8>) {
        let mut m = format!("trace {pid} {} {dropped} {declared} 1000000000 5000 1000000 2000000 4000 999000\n", pid)
            .into_bytes();
        for (e, path) in events {
            let mut b = vec![0u8; wire::event_len(path.len())];
            wire::encode_head(&mut b, &Event { path_len: path.len() as u16, ..*e });
            b[wire::HEAD..wire::HEAD + path.len()].copy_from_slice(path);
            m.extend(b);
        }
        (pid, m)
    }

    #[test]
    fn events_decode_to_times_paths_and_drops() {
        let open = Event {
            start: 4000,
            ticks: 7,
            nr: 257,
            result: -2,
            args: [(-100i64) as u64, 0, 0, 0, 0, 0],
            tid: 9,
            ..Default::default()
        };
        let read =
            Event { start: 3000, ticks: 10, nr: 0, result: 5, args: [3, 0, 16, 0, 0, 0], tid: 9, ..Default::default() };
        // Declares 3 events, carries 2 (cut short), and 4 dropped before.
        let msgs = [msg(9, &[(read, b""), (open, b"/no/such")], 3, 4)];
        let d = decode(&msgs);
        assert_eq!(d.calls.len(), 2);
        assert_eq!(d.calls[0].nr, 0, "sorted by time");
        assert_eq!(d.calls[0].mono_ns, 1_000_000 - 2000);
        let open: Value = serde_json::from_slice(&formatted(&d, &d.calls[1], TraceFormat::Json)).unwrap();
        assert_eq!(open["time_ns"], 2_000_000 - 1000);
        assert_eq!(open["file"], "/no/such");
        assert_eq!(d.dropped.get(&(9, 9)), Some(&5));
        let d = decode(&msgs);
        let line = String::from_utf8_lossy(&formatted(&d, &d.calls[1], TraceFormat::Text)).trim_end().to_string();
        assert!(
            line.contains("openat(AT_FDCWD, \"/no/such\", O_RDONLY) = -1 ENOENT (No such file or directory)"),
            "{line}"
        );
        assert!(line.ends_with("<0.000000>"), "{line}");
    }

    /// A killed process's kept buffer: the events of the message it was
    /// sending are taken from the message if it arrived, else from the
    /// buffer; those written after it always from the buffer.
    #[test]
    fn kept_buffers_give_what_was_never_sent_once() {
        let ev = |start: u64| Event { start, ticks: 1, nr: 39, result: 7, tid: 5, ..Default::default() };
        let events: Vec<(Event, &[u8])> = (0..3).map(|i| (ev(4000 + i), &b""[..])).collect();
        let body = |evs: &[(Event, &[u8])]| msg(5, evs, 0, 0).1.splitn(2, |&b| b == b'\n').nth(1).unwrap().to_vec();
        let kept = |sending: u64| KeptBuffer {
            seq: 9,
            pid: 5,
            line: "tracebuf 5 5 77 1000000000 5000 1000000 2000000 4000 999000".into(),
            count: 3,
            dropped: 0,
            sending,
            events: body(&events),
        };
        // Message 1 of buffer 77 carried the first two events.
        let mut sent = msg(5, &events[..2], 2, 0);
        let nl = sent.1.iter().position(|&b| b == b'\n').unwrap();
        sent.1.splice(nl..nl, b" 77 1".iter().copied());
        for (sending, with_msg, expect) in [(1, true, 3), (1, false, 3), (0, false, 3), (2, true, 5)] {
            let mut g = Gathered::new();
            if with_msg {
                g.add(0, sent.0, sent.1.clone());
            }
            g.add_kept(&[kept(sending)]);
            let from_buffer = g.recovered.get(&5).copied().unwrap_or(0);
            let d = assemble(g);
            let starts: Vec<i64> = d.calls.iter().map(|c| c.mono_ns).collect();
            let n = if with_msg { 2 } else { 0 };
            assert_eq!(d.calls.len(), expect, "sending {sending}, message {with_msg}: {starts:?}");
            assert_eq!(from_buffer as usize, expect - n, "sending {sending}, message {with_msg}");
            assert!(d.dropped.is_empty(), "{:?}", d.dropped);
        }
    }

    #[test]
    fn a_failed_exec_is_shown_once() {
        let pend = Event { start: 100, nr: 59, flags: wire::PENDING, tid: 3, ..Default::default() };
        let done = Event { start: 100, ticks: 50, nr: 59, result: -2, tid: 3, ..Default::default() };
        let d = decode(&[msg(3, &[(pend, b"/x"), (done, b"/x")], 2, 0)]);
        assert_eq!(d.calls.len(), 1);
        assert_eq!(d.calls[0].result, -2);
    }

    #[test]
    fn mul_div_is_the_128_bit_result() {
        let edges = [0i128, 1, -1, 7, 1 << 31, 1 << 32, 3_000_000_000, 1 << 62, i64::MAX as i128, i64::MIN as i128];
        let big = [(i64::MAX as i128) + 1, 1 << 80, -(1 << 70)];
        let spread = (0..2000i64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15u64 as i64) as i128 >> (i % 64));
        let values: Vec<i128> = edges.into_iter().chain(big).chain(spread).collect();
        for &x in &values {
            for &num in &values {
                for den in [1i128, 3, 1_000_000_000, 2_893_456_789, i64::MAX as i128, (i64::MAX as i128) + 5] {
                    if let Some(want) = x.checked_mul(num).map(|p| p / den) {
                        assert_eq!(mul_div(x, num, den), want, "{x} * {num} / {den}");
                    }
                }
            }
        }
    }

    #[test]
    fn open_flags_by_name() {
        assert_eq!(open_flags(0), "O_RDONLY");
        assert_eq!(open_flags((libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC) as u64), "O_WRONLY|O_CREAT|O_CLOEXEC");
        assert_eq!(open_flags(libc::O_TMPFILE as u64 | 2), "O_RDWR|O_TMPFILE");
    }
}
