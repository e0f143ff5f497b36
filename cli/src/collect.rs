//! `usertrap stat`'s collector: an abstract unix socket (no file, no
//! permission: any process of the tree can reach it, whatever its user,
//! root or descriptors) whose name the command gets in USERTRAP_COLLECT.
//! Every process image greets it when it starts and sends its report when
//! it ends, one short connection per message (the library's side, and the
//! messages, are in src/measure/report/). The collector knows who greeted
//! and never reported, and says why when it can.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::FileExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::merge::{Skipped, Source};
use crate::report::{self, Report};

/// A process that greeted and sent no usable report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub pid: u32,
    pub command: String,
    /// "killed by SIGKILL", "still running when the command ended", ...
    pub reason: String,
}

/// What the processes sent.
pub struct Collected {
    pub sources: Vec<Source>,
    pub skipped: Vec<Skipped>,
    pub missing: Vec<Missing>,
    /// Process images known (greeted or reported).
    pub processes: usize,
    /// `usertrap trace`'s messages, in arrival order: (the sender's pid,
    /// the whole message).
    pub traces: Vec<(u32, Vec<u8>)>,
    /// Every greeting and every fork announced by a parent, in arrival
    /// order: (pid, parent's pid, command, announced by the parent).
    pub greetings: Vec<(u32, u32, String, bool)>,
    /// `usertrap trace`'s thread buffers the collector was given, as they
    /// were when their process image ended (a report of its pid that is
    /// not an exec's arrived) or when the command ended: what they still
    /// held was never sent.
    pub kept: Vec<KeptBuffer>,
    /// Buffers announced without their descriptor (the collector had no
    /// room for it): what their processes did not send is not known.
    pub unkept: usize,
}

/// A thread's trace buffer (src/measure/report/trace.rs) as last read.
#[derive(Debug, Clone, Default)]
pub struct KeptBuffer {
    /// Arrival number of its announcement.
    pub seq: u64,
    /// The process it belongs to (as the kernel saw the sender).
    pub pid: u32,
    /// The announcement: `tracebuf PID TID BUF HZ TICKS MONO_NS REAL_NS
    /// TICKS0 MONO0_NS`.
    pub line: String,
    /// The header's words (usertrap-core's trace::buffer).
    pub count: u64,
    pub dropped: u64,
    pub sending: u64,
    /// The events' bytes, [0, len).
    pub events: Vec<u8>,
}

/// A buffer the collector holds: its descriptor until it is read.
struct Kept {
    buf: KeptBuffer,
    fd: Option<OwnedFd>,
}

struct Conn {
    seq: u64,
    /// The sender's pid as the kernel saw it (SO_PEERCRED).
    peer_pid: Option<u32>,
    data: Vec<u8>,
}

/// Takes `usertrap trace`'s messages as they arrive (arrival number, the
/// sender's pid, the message, which it keeps), on the thread that read
/// each: so decoding a run's millions of calls happens while it runs, not
/// after. The collector counts a message as read only once this returned.
pub type TraceSink = Arc<dyn Fn(u64, u32, Vec<u8>) + Send + Sync>;

/// Bytes a trace message can take (a thread buffer's events and its first
/// line): read into a buffer of this size at once, not one grown (and
/// copied) by doubling from a few KiB.
const TRACE_MSG: usize = usertrap_core::trace::buffer::LEN + 4096;

#[derive(Default)]
struct State {
    conns: Mutex<Vec<Conn>>,
    /// `usertrap trace`'s messages (seq, sender, message), kept apart: they
    /// can be many megabytes, which matching greetings to reports (done
    /// again every 50 ms while processes are awaited) would copy.
    traces: Mutex<Vec<(u64, u32, Vec<u8>)>>,
    seq: AtomicU64,
    in_flight: AtomicUsize,
    stop: AtomicBool,
    /// Where trace messages go instead of `traces`.
    sink: Option<TraceSink>,
    /// `usertrap trace`'s buffers given to the collector.
    kept: Mutex<Vec<Kept>>,
    unkept: AtomicUsize,
    /// Connections accepted and not yet taken by a reader.
    readers: Mutex<Readers>,
    /// A connection was queued (or the collector stops).
    queued: Condvar,
}

/// The connections waiting for a reader, and the readers waiting for one
/// (`usertrap trace` only). A reader thread is kept once it has read its
/// connection, and takes the next: `usertrap trace` sends a message every
/// 128 KiB of calls, and a thread made and ended for each cost more than
/// reading it (python's 200,000 `os.stat`: the command's CPU outside the
/// program 125 -> 111 ms in JSON). A connection that finds no idle reader
/// gets a new one, so that a sender that stalls mid-message delays no
/// other. Not under `usertrap stat`, where a process sends two short
/// messages: there each child of a spawn loop took longer in wall time
/// (3.1 -> 3.6 ms and 2.9 -> 3.1 ms a child, median of interleaved runs),
/// as with the epoll loop tried before (README, issue 13), by a path not
/// found yet.
#[derive(Default)]
struct Readers {
    waiting: VecDeque<(u64, UnixStream)>,
    idle: usize,
}

pub struct Collector {
    name: String,
    state: Arc<State>,
    acceptor: Option<thread::JoinHandle<()>>,
}

/// How long processes that greeted and did not report yet are waited for
/// once the command has ended (its daemons may run on).
const GRACE: Duration = Duration::from_secs(2);
/// A sender that stalls this long mid-message is cut off.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const SYNC: &[u8] = b"sync\n";
/// Tests only (tests/trace.rs): a collector that cannot keep up.
pub const STALL_VAR: &str = "USERTRAP_TEST_COLLECTOR_STALL_MS";

/// The calling thread (and the threads it starts, which inherit it) takes
/// SCHED_BATCH: the same share of the CPU, but its wake-ups do not preempt
/// the task running. Each traced process connects twice (greeting, report)
/// and every connect and write woke a collector thread that took the CPU
/// from the process on the spot (`perf sched timehist`: a launched
/// `/bin/true` preempted 5-8 times, 100-250 us of its wall time spent
/// runnable while the acceptor started a reader thread and the reader read),
/// so its wall time held the collector's work for it. Unprivileged; where
/// it fails, the thread keeps the default policy.
fn batch_scheduling() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler(2) on the calling thread (pid 0), with a
    // valid parameter block; it changes nothing else.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &raw const param) };
}

impl Collector {
    /// `sink`: where trace messages go (else they are kept in `traces`).
    pub fn start(sink: Option<TraceSink>) -> io::Result<Collector> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let mut rnd = [0u8; 8];
        let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut rnd));
        let name = format!("usertrap.{}.{:x}.{:016x}", std::process::id(), nanos, u64::from_ne_bytes(rnd));
        let listener = UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)?;
        // A test of `usertrap trace` (tests/trace.rs) stands for a collector
        // that cannot keep up: a backlog of one connection, each accepted
        // this many ms late.
        let stall_ms: u64 = std::env::var(STALL_VAR).ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        let backlog = if stall_ms > 0 { 1 } else { 4096 };
        // SAFETY: plain listen(2) on our socket: a deep backlog, so that
        // many processes ending at once are not refused.
        unsafe { libc::listen(listener.as_raw_fd(), backlog) };
        let state = Arc::new(State { sink, ..State::default() });
        let st = state.clone();
        let acceptor = thread::spawn(move || {
            batch_scheduling();
            let mut first = true;
            for stream in listener.incoming() {
                if first {
                    // Room for one descriptor per thread buffer of the
                    // tree (`usertrap trace`), raised once the command's
                    // process (which keeps its own limit) has started.
                    raise_nofile();
                    first = false;
                }
                if stall_ms > 0 {
                    thread::sleep(Duration::from_millis(stall_ms));
                }
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let seq = st.seq.fetch_add(1, Ordering::SeqCst);
                st.in_flight.fetch_add(1, Ordering::SeqCst);
                if st.sink.is_none() {
                    // `usertrap stat`: a thread per connection (see Readers).
                    let st2 = st.clone();
                    if thread::Builder::new().spawn(move || read_one(&st2, seq, stream)).is_err() {
                        st.in_flight.fetch_sub(1, Ordering::SeqCst);
                    }
                    continue;
                }
                let Ok(mut r) = st.readers.lock() else { continue };
                r.waiting.push_back((seq, stream));
                // Each waiting connection has an idle reader to wake, or
                // a new one.
                if r.waiting.len() > r.idle {
                    let st2 = st.clone();
                    if thread::Builder::new().spawn(move || reader(&st2)).is_err() {
                        r.waiting.pop_back();
                        st.in_flight.fetch_sub(1, Ordering::SeqCst);
                    }
                } else {
                    st.queued.notify_one();
                }
            }
        });
        Ok(Collector { name, state, acceptor: Some(acceptor) })
    }

    /// USERTRAP_COLLECT's value.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        let mut s = UnixStream::connect_addr(&SocketAddr::from_abstract_name(self.name.as_bytes())?)?;
        s.write_all(msg)
    }

    /// Every message sent before now has been read (connections are
    /// accepted in the order they were made: ours comes after them).
    fn drain(&self) {
        let start = Instant::now();
        if self.send(SYNC).is_err() {
            return;
        }
        let synced = || self.state.conns.lock().map(|c| c.iter().any(|c| c.data == SYNC)).unwrap_or(true);
        while !(synced() && self.state.in_flight.load(Ordering::SeqCst) == 0) && start.elapsed() < READ_TIMEOUT {
            thread::sleep(Duration::from_millis(2));
        }
        if let Ok(mut c) = self.state.conns.lock() {
            c.retain(|c| c.data != SYNC);
        }
    }

    /// After the command ended (`child`: its pid and, if a signal killed
    /// it, that signal): wait for what is still on its way, then match
    /// greetings and reports.
    pub fn finish(mut self, child: u32, child_signal: Option<i32>) -> Collected {
        let start = Instant::now();
        loop {
            self.drain();
            let pending = self.match_up(child, child_signal, false).missing;
            if pending.is_empty() || start.elapsed() >= GRACE {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        // A process found dead just now may have sent its report after the
        // drain above (a daemon that outlived the command: alive at the
        // drain, reported and gone by the check). It wrote before it
        // ended, so a drain started after that check reads it.
        self.drain();
        // The acceptor ends at its next connection (this one); not joined:
        // nothing it could still do matters now.
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = self.send(b"");
        // Idle readers end (the lock taken first: none is between its
        // check of `stop` and its wait).
        if let Ok(_r) = self.state.readers.lock() {
            self.state.queued.notify_all();
        }
        drop(self.acceptor.take());
        let mut got = self.match_up(child, child_signal, true);
        let kept = self.state.kept.lock().map(|mut k| std::mem::take(&mut *k)).unwrap_or_default();
        got.kept = kept.into_iter().map(|k| read_kept(k.buf, k.fd)).collect();
        got.kept.sort_by_key(|k| k.seq);
        got.unkept = self.state.unkept.load(Ordering::SeqCst);
        let mut traces = self.state.traces.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default();
        traces.sort_by_key(|t| t.0);
        got.traces = traces.into_iter().map(|(_, pid, data)| (pid, data)).collect();
        got
    }

    /// Matches reports to greetings in arrival order. `final_`: every
    /// process without a report is missing; otherwise only those still
    /// alive (worth waiting for) are listed.
    fn match_up(&self, child: u32, child_signal: Option<i32>, final_: bool) -> Collected {
        let mut conns: Vec<(u64, Option<u32>, Vec<u8>)> = match self.state.conns.lock() {
            Ok(c) => c.iter().map(|c| (c.seq, c.peer_pid, c.data.clone())).collect(),
            Err(_) => Vec::new(),
        };
        conns.sort_by_key(|c| c.0);
        struct Image {
            pid: u32,
            /// The number its parent knows it by, where the parent runs in
            /// a nested PID namespace (else `pid`).
            named_as: u32,
            command: String,
            reported: bool,
            lost: Option<String>,
            /// Expected after an exec: the program that replaced a reported image.
            after_exec: bool,
        }
        let mut images: Vec<Image> = Vec::new();
        // The image of each pid still expected to report.
        let mut open: HashMap<u32, usize> = HashMap::new();
        let mut seen: std::collections::HashSet<u32> = std::collections::HashSet::new();
        let mut sources = Vec::new();
        let mut skipped = Vec::new();
        let mut killed: HashMap<u32, i64> = HashMap::new();
        let mut greetings = Vec::new();
        // Children named by a parent in a nested PID namespace, still open.
        let mut nested_children: std::collections::HashSet<u32> = std::collections::HashSet::new();
        // The numbers senders in a nested PID namespace gave themselves.
        let mut seen_nested: std::collections::HashSet<u32> = std::collections::HashSet::new();
        let new_image = |images: &mut Vec<Image>, pid: u32, command: String, after_exec: bool| {
            images.push(Image { pid, named_as: pid, command, reported: false, lost: None, after_exec });
            images.len() - 1
        };
        for (_, peer, data) in &conns {
            if data.is_empty() || data == SYNC {
                continue;
            }
            let nl = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
            let head = String::from_utf8_lossy(&data[..nl]).into_owned();
            let body = data.get(nl + 1..).unwrap_or(&[]);
            let words: Vec<&str> = head.split(' ').collect();
            let said: Option<u32> = words.get(1).and_then(|p| p.parse().ok());
            let kind = words.first().copied().unwrap_or("");
            // A parent speaks of its child by the child's pid; a process of
            // itself, as the kernel saw it.
            let Some(pid) = (if kind == "child" { said } else { peer.or(said) }) else { continue };
            let command = words.get(3).map(|h| unhex(h)).unwrap_or_default();
            // A fork child is named by its parent (its own greeting comes
            // only when it execs).
            if kind == "hello" || kind == "child" {
                greetings.push((pid, said_ppid(&words), command.clone(), kind == "child"));
            }
            match kind {
                // The parent's word may come after the child's own messages.
                "child" if seen.contains(&pid) => {}
                // A nested parent's child that spoke first under its own number.
                "child" if *peer != Some(said_ppid(&words)) && seen_nested.contains(&pid) => {}
                "child" => {
                    let i = new_image(&mut images, pid, command, false);
                    open.insert(pid, i);
                    let nspid = words.iter().position(|&w| w == "nspid").and_then(|at| words.get(at + 1)?.parse().ok());
                    if let Some(n) = nspid {
                        images[i].named_as = n;
                    }
                    // From a parent in a nested PID namespace: the number
                    // may be the one it sees (see child_in_our_numbering).
                    if *peer != Some(said_ppid(&words)) {
                        nested_children.insert(pid);
                    }
                }
                "hello" => {
                    let i = match open.get(&pid) {
                        Some(&i) => i,
                        None => {
                            let i = new_image(&mut images, pid, String::new(), false);
                            open.insert(pid, i);
                            i
                        }
                    };
                    images[i].command = command;
                    // In a nested PID namespace, its parent (in the same one)
                    // knows it by the number it gives itself.
                    if let (Some(s), true) = (said, images[i].named_as == images[i].pid) {
                        images[i].named_as = s;
                    }
                }
                "report" => {
                    // A fork child of a parent in a nested PID namespace that
                    // was not found under our number: named by its own.
                    let own = said.filter(|&s| Some(s) != *peer && nested_children.contains(&s));
                    let idx = match open.remove(&pid).or_else(|| own.and_then(|s| open.remove(&s))) {
                        Some(i) => i,
                        None => new_image(&mut images, pid, String::new(), false),
                    };
                    if let Some(s) = own {
                        nested_children.remove(&s);
                        images[idx].pid = pid;
                    }
                    let parsed = std::str::from_utf8(body)
                        .map_err(|_| "invalid JSON: not UTF-8".to_string())
                        .and_then(report::parse_all);
                    match parsed {
                        Ok(rs) => {
                            let mut execd = false;
                            for r in &rs {
                                for k in &r.killed_children {
                                    killed.insert(k.pid, k.signal);
                                }
                                images[idx].command = r.command.clone();
                                execd = r.exit.as_ref().is_some_and(|e| e.how == "exec");
                            }
                            images[idx].reported = true;
                            sources.extend(rs.into_iter().map(|report: Report| Source { file: None, report }));
                            if execd {
                                // Named after the image that exec'd until the new one greets.
                                let before = images[idx].command.clone();
                                let i = new_image(&mut images, pid, before, true);
                                open.insert(pid, i);
                            }
                        }
                        Err(e) => {
                            images[idx].lost = Some(format!("its report arrived damaged ({} bytes: {e})", body.len()));
                            skipped.push(Skipped { file: format!("from pid {pid}"), error: e });
                        }
                    }
                }
                "lost" => {
                    let reason = words.get(2..).map(|w| w.join(" ")).unwrap_or_default();
                    if let Some(i) = open.remove(&pid) {
                        images[i].lost = Some(format!("its report could not be built: {reason}"));
                    }
                }
                _ => skipped.push(Skipped {
                    file: format!("a message from pid {pid}"),
                    error: format!("not understood: {head}"),
                }),
            }
            seen.insert(pid);
            if let (Some(s), "hello" | "report" | "lost") = (said, kind) {
                if Some(s) != *peer {
                    seen_nested.insert(s);
                }
            }
        }
        let processes = images.len();
        let mut missing = Vec::new();
        for (i, im) in images.iter().enumerate() {
            if im.reported {
                continue;
            }
            let latest = open.get(&im.pid) == Some(&i);
            let alive = latest && is_alive(im.pid);
            if !final_ && !alive {
                continue;
            }
            let reason = if let Some(l) = &im.lost {
                l.clone()
            } else if let Some(sig) = killed.get(&im.pid).or_else(|| killed.get(&im.named_as)) {
                format!("killed by {}", crate::stat::signal_name(*sig as i32))
            } else if let (true, Some(sig)) = (im.pid == child && latest, child_signal) {
                format!("killed by {}", crate::stat::signal_name(sig))
            } else if alive {
                "still running when the command ended".to_string()
            } else if im.after_exec {
                "the program it exec'd did not report (run unmonitored, or ended early)".to_string()
            } else {
                "ended without a report".to_string()
            };
            missing.push(Missing { pid: im.pid, command: im.command.clone(), reason });
        }
        Collected { sources, skipped, missing, processes, traces: Vec::new(), greetings, kept: Vec::new(), unkept: 0 }
    }
}

/// What `stat -i` reads while the command runs: the collector's messages
/// so far.
pub struct LiveView {
    state: Arc<State>,
}

impl Collector {
    pub fn live_view(&self) -> LiveView {
        LiveView { state: self.state.clone() }
    }
}

/// A process image that greeted and has not reported: where its live index is.
pub struct Running {
    pub pid: u32,
    pub command: String,
    pub index: u64,
}

impl LiveView {
    /// The reports received so far, and the images still running.
    pub fn now(&self) -> (Vec<Report>, Vec<Running>) {
        let mut conns: Vec<(u64, Option<u32>, Vec<u8>)> = match self.state.conns.lock() {
            Ok(c) => c.iter().map(|c| (c.seq, c.peer_pid, c.data.clone())).collect(),
            Err(_) => Vec::new(),
        };
        conns.sort_by_key(|c| c.0);
        let mut reports = Vec::new();
        let mut running: BTreeMap<u32, Running> = BTreeMap::new();
        for (_, peer, data) in &conns {
            let nl = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
            let head = String::from_utf8_lossy(&data[..nl]).into_owned();
            let words: Vec<&str> = head.split(' ').collect();
            let said: Option<u32> = words.get(1).and_then(|p| p.parse().ok());
            let kind = words.first().copied().unwrap_or("");
            let Some(pid) = (if kind == "child" { said } else { peer.or(said) }) else { continue };
            match kind {
                "hello" | "child" => {
                    // `... live ADDR` (libraries from before it did not say).
                    let index = words.iter().position(|w| *w == "live").and_then(|i| words.get(i + 1)?.parse().ok());
                    if let Some(index) = index {
                        let command = words.get(3).map(|h| unhex(h)).unwrap_or_default();
                        running.insert(pid, Running { pid, command, index });
                    }
                }
                "report" => {
                    running.remove(&pid);
                    let body = data.get(nl + 1..).unwrap_or(&[]);
                    if let Ok(rs) = std::str::from_utf8(body).map_err(|_| String::new()).and_then(report::parse_all) {
                        reports.extend(rs);
                    }
                }
                _ => {}
            }
        }
        (reports, running.into_values().collect())
    }
}

/// A greeting's PPID word.
fn said_ppid(words: &[&str]) -> u32 {
    words.get(2).and_then(|p| p.parse().ok()).unwrap_or(0)
}

/// A reader thread: reads the connections queued for it, one after the
/// other, until the collector stops.
fn reader(st: &State) {
    loop {
        let next = {
            let Ok(mut r) = st.readers.lock() else { return };
            loop {
                if let Some(c) = r.waiting.pop_front() {
                    break c;
                }
                if st.stop.load(Ordering::SeqCst) {
                    return;
                }
                r.idle += 1;
                r = match st.queued.wait(r) {
                    Ok(r) => r,
                    Err(_) => return,
                };
                r.idle -= 1;
            }
        };
        read_one(st, next.0, next.1);
    }
}

fn read_one(st: &State, seq: u64, mut stream: UnixStream) {
    let peer_pid = peer_pid(&stream);
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let (mut data, fd) = read_first(&stream);
    if data.starts_with(b"trace ") && st.sink.is_some() {
        let mut b = Vec::with_capacity(TRACE_MSG);
        b.extend_from_slice(&data);
        data = b;
    }
    if !data.is_empty() {
        let _ = stream.read_to_end(&mut data);
    }
    // A thread's trace buffer, its descriptor passed along: kept until its
    // process image ends (then read), or until the command ends.
    if data.starts_with(b"tracebuf ") {
        let line = String::from_utf8_lossy(data.split(|&b| b == b'\n').next().unwrap_or_default()).into_owned();
        let said = line.split(' ').nth(1).and_then(|p| p.parse().ok());
        match (peer_pid.or(said), fd) {
            (Some(pid), Some(fd)) => {
                if let Ok(mut k) = st.kept.lock() {
                    k.push(Kept { buf: KeptBuffer { seq, pid, line, ..KeptBuffer::default() }, fd: Some(fd) });
                }
            }
            _ => {
                st.unkept.fetch_add(1, Ordering::SeqCst);
            }
        }
        st.in_flight.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    drop(fd);
    if let (true, Some(pid)) = (data.starts_with(b"report "), peer_pid) {
        report_arrived(&st.kept, pid, seq, &data);
    }
    // Recorded calls (src/measure/report/trace.rs): decoded by `usertrap
    // trace`, ignored by `usertrap stat`. The sender as the kernel saw it,
    // else as it says.
    if data.starts_with(b"trace ") {
        let said = data.split(|&b| b == b' ').nth(1).and_then(|p| std::str::from_utf8(p).ok()?.parse().ok());
        if let Some(pid) = peer_pid.or(said) {
            match &st.sink {
                Some(sink) => sink(seq, pid, data),
                None => {
                    if let Ok(mut t) = st.traces.lock() {
                        t.push((seq, pid, data));
                    }
                }
            }
        }
        st.in_flight.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let data = match peer_pid {
        Some(parent) if data.starts_with(b"child ") => child_in_our_numbering(parent, data),
        _ => data,
    };
    if let Ok(mut c) = st.conns.lock() {
        c.push(Conn { seq, peer_pid, data });
    }
    st.in_flight.fetch_sub(1, Ordering::SeqCst);
}

/// A `child CHILD PARENT ...` message (its parent names a fork child, by
/// the numbers it sees: getpid()) with CHILD in our PID namespace's
/// numbering, as every other message's sender is known (SO_PEERCRED). They
/// differ where the parent runs in a nested PID namespace (`unshare -pf`,
/// containers): then the child is the one of the parent's children
/// (/proc/PARENT/task/*/children, in our numbering; a zombie is listed
/// too) whose pid at the parent's namespace level (/proc/PID/status,
/// NSpid) is CHILD. Left as it is when the parent is in our namespace or
/// the child cannot be found (reaped already): it is then named by the
/// number its parent gave.
fn child_in_our_numbering(parent: u32, data: Vec<u8>) -> Vec<u8> {
    let nl = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let head = String::from_utf8_lossy(&data[..nl]).into_owned();
    let words: Vec<&str> = head.split(' ').collect();
    let (Some(child), Some(said_parent)) =
        (words.get(1).and_then(|p| p.parse::<u32>().ok()), words.get(2).and_then(|p| p.parse::<u32>().ok()))
    else {
        return data;
    };
    if said_parent == parent {
        return data;
    }
    let Some(level) = ns_pids(parent).map(|p| p.len()).filter(|&n| n > 0) else { return data };
    let Some(ours) =
        children_of(parent).into_iter().find(|&c| ns_pids(c).is_some_and(|p| p.get(level - 1) == Some(&child)))
    else {
        return data;
    };
    // The parent's number stays, last: its report names a child it saw
    // killed by that number.
    let rest = words.get(2..).map(|w| w.join(" ")).unwrap_or_default();
    let mut out = format!("child {ours} {rest} nspid {child}").into_bytes();
    out.extend_from_slice(&data[nl..]);
    out
}

/// The pids of process `pid` from our PID namespace inward (NSpid).
fn ns_pids(pid: u32) -> Option<Vec<u32>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    Some(line.split_whitespace().filter_map(|p| p.parse().ok()).collect())
}

/// The children of every thread of process `pid`, in our numbering.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|list| list.split_whitespace().filter_map(|c| c.parse().ok()).collect::<Vec<u32>>())
        .collect()
}

/// The connection's first bytes, and the descriptor passed with them
/// (SCM_RIGHTS), if any.
fn read_first(s: &UnixStream) -> (Vec<u8>, Option<OwnedFd>) {
    let mut data = vec![0u8; 4096];
    // Room for one descriptor (CMSG_SPACE(4)): more are cut by the kernel.
    let mut control = [0u64; 4];
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
    // SAFETY: a zeroed msghdr is valid (no name, no buffers); filled below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    let n = loop {
        // SAFETY: recvmsg writes at most iov_len bytes into `data` and
        // msg_controllen bytes into `control`, both live.
        let n = unsafe { libc::recvmsg(s.as_raw_fd(), &raw mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break n;
        }
    };
    data.truncate(n.max(0) as usize);
    let mut fd = None;
    // SAFETY: CMSG_FIRSTHDR reads the msghdr recvmsg filled.
    let c = unsafe { libc::CMSG_FIRSTHDR(&raw const msg) };
    // SAFETY: a header inside `control`, as the kernel wrote it.
    if !c.is_null() && unsafe { (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS } {
        // SAFETY: an SCM_RIGHTS message of at least one descriptor: the
        // kernel installed it in this process, ours to own.
        let raw = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>()) };
        // SAFETY: as above.
        fd = (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw) });
    }
    (data, fd)
}

/// Process `pid`'s report arrived (arrival number `seq`): if its image
/// ended, the buffers it announced before (and those of the images it
/// exec'd from) are read now, and their descriptors closed. Not at a
/// report sent before an exec: the exec may fail, and the image go on
/// writing into its buffers what it sends later (read now, that would be
/// taken twice, and what it never sends, lost); even one that succeeds
/// has other threads that run on until the kernel ends them. Those
/// buffers are read at the pid's next report that ends an image, or when
/// the command ends.
fn report_arrived(kept: &Mutex<Vec<Kept>>, pid: u32, seq: u64, msg: &[u8]) {
    let held = |k: &Kept| k.buf.pid == pid && k.buf.seq < seq && k.fd.is_some();
    // Most processes hold none (all under `usertrap stat`): their report
    // is not parsed here (it is, once, when the command has ended).
    if !kept.lock().is_ok_and(|k| k.iter().any(held)) || sent_before_exec(msg) {
        return;
    }
    let Ok(mut kept) = kept.lock() else { return };
    for k in kept.iter_mut().filter(|k| held(k)) {
        k.buf = read_kept(std::mem::take(&mut k.buf), k.fd.take());
    }
}

/// Whether a `report PID\n` message's report says its image ended by an
/// exec (one that cannot be read ended otherwise).
fn sent_before_exec(msg: &[u8]) -> bool {
    let body = msg.iter().position(|&b| b == b'\n').map_or(&[][..], |nl| &msg[nl + 1..]);
    let Ok(rs) = std::str::from_utf8(body).map_err(|_| String::new()).and_then(report::parse_all) else {
        return false;
    };
    rs.last().and_then(|r| r.exit.as_ref()).is_some_and(|e| e.how == usertrap_core::report::how::EXEC)
}

/// `b` with the header words and the events of its buffer as they are now
/// (closing the descriptor).
fn read_kept(mut b: KeptBuffer, fd: Option<OwnedFd>) -> KeptBuffer {
    use usertrap_core::trace::buffer;
    let Some(fd) = fd else { return b };
    let f = std::fs::File::from(fd);
    let mut head = [0u8; buffer::LINE_AT];
    if f.read_exact_at(&mut head, 0).is_err() {
        return b;
    }
    let word = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().unwrap_or_default());
    let len = (word(buffer::LEN_AT) as usize).min(buffer::LEN - buffer::DATA_AT);
    b.count = word(buffer::COUNT_AT);
    b.dropped = word(buffer::DROPPED_AT);
    b.sending = word(buffer::SENDING_AT);
    let mut events = vec![0u8; len];
    if f.read_exact_at(&mut events, buffer::DATA_AT as u64).is_ok() {
        b.events = events;
    }
    b
}

/// The soft RLIMIT_NOFILE up to the hard one.
fn raise_nofile() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write one rlimit we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim);
        }
    }
}

fn peer_pid(s: &UnixStream) -> Option<u32> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt(SO_PEERCRED) fills a ucred of the size we pass.
    let r = unsafe {
        libc::getsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, (&raw mut cred).cast(), &raw mut len)
    };
    (r == 0 && cred.pid > 0).then_some(cred.pid as u32)
}

/// The process exists and is not a zombie.
fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

fn unhex(h: &str) -> String {
    let bytes: Vec<u8> =
        (0..h.len() / 2).filter_map(|i| u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// "2 of 45 processes did not report: pid 123 nginx, killed by SIGKILL; ..."
pub fn describe(missing: &[Missing], processes: usize) -> String {
    let list: Vec<String> = missing
        .iter()
        .map(|m| {
            let name = if m.command.is_empty() { String::new() } else { format!(" {}", m.command) };
            format!("pid {}{}, {}", m.pid, name, m.reason)
        })
        .collect();
    format!("{} of {} processes did not report: {}", missing.len(), processes, list.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_hex() {
        assert_eq!(unhex("6e67696e78"), "nginx");
        assert_eq!(unhex(""), "");
    }

    /// Readers are reused, but a connection that finds none idle gets its
    /// own: messages sent one after the other are all read (by readers
    /// kept from the ones before), and a sender that stalls mid-message
    /// delays no other (a single reader would read nothing more until the
    /// stalled one's READ_TIMEOUT, 10 s).
    #[test]
    fn a_stalled_sender_delays_no_other_message() {
        let c = Collector::start(Some(Arc::new(|_, _, _| {}))).unwrap();
        let arrived = |msg: &[u8]| {
            let start = Instant::now();
            while start.elapsed() < READ_TIMEOUT / 2 {
                if c.state.conns.lock().unwrap().iter().any(|m| m.data == msg) {
                    return true;
                }
                thread::sleep(Duration::from_millis(5));
            }
            false
        };
        for i in 0..20 {
            c.send(format!("greeting {i}\n").as_bytes()).unwrap();
        }
        assert!(arrived(b"greeting 19\n"));
        let mut stalled =
            UnixStream::connect_addr(&SocketAddr::from_abstract_name(c.name().as_bytes()).unwrap()).unwrap();
        stalled.write_all(b"report 1\n{").unwrap();
        c.send(b"greeting after\n").unwrap();
        assert!(arrived(b"greeting after\n"), "a message waited for a stalled sender");
        let r = c.state.readers.lock().unwrap();
        assert!(r.idle >= 1 && r.waiting.is_empty());
        drop(r);
        drop(stalled);
    }

    /// A thread buffer's memfd as the library leaves it: `len` bytes of
    /// `count` events not sent yet.
    fn buffer_holding(len: u64, count: u64) -> OwnedFd {
        use usertrap_core::trace::buffer;
        // SAFETY: memfd_create with a NUL-terminated name; the descriptor
        // it returns is ours.
        let fd = unsafe { libc::memfd_create(c"test-buffer".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0, "memfd_create: {}", io::Error::last_os_error());
        // SAFETY: a descriptor just made, owned by nothing else.
        let f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        f.set_len(buffer::LEN as u64).unwrap();
        f.write_at(&len.to_le_bytes(), buffer::LEN_AT as u64).unwrap();
        f.write_at(&count.to_le_bytes(), buffer::COUNT_AT as u64).unwrap();
        f.into()
    }

    fn report_of(pid: u32, how: &str) -> Vec<u8> {
        format!(
            "report {pid}\n{{\"format\":\"usertrap-report\",\"version\":2,\"pid\":{pid},\"command\":\"x\",\
             \"exit\":{{\"how\":\"{how}\"}},\"syscalls\":[]}}"
        )
        .into_bytes()
    }

    /// A report sent before an exec leaves the image's buffers held (the
    /// exec may fail: the image writes on into them); the pid's next
    /// report that ends an image reads them, and only those announced
    /// before it, of that pid.
    #[test]
    fn buffers_are_read_once_their_image_ended_not_at_an_exec() {
        let held =
            |pid, seq| Kept { buf: KeptBuffer { seq, pid, ..KeptBuffer::default() }, fd: Some(buffer_holding(96, 1)) };
        let kept = Mutex::new(vec![held(7, 1), held(8, 2), held(7, 5)]);
        report_arrived(&kept, 7, 3, &report_of(7, "exec"));
        assert!(kept.lock().unwrap().iter().all(|k| k.fd.is_some()), "none read at the exec's report");
        report_arrived(&kept, 7, 4, &report_of(7, "exit_group"));
        let read: Vec<(u64, usize, u64)> = kept
            .lock()
            .unwrap()
            .iter()
            .filter(|k| k.fd.is_none())
            .map(|k| (k.buf.seq, k.buf.events.len(), k.buf.count))
            .collect();
        assert_eq!(read, [(1, 96, 1)], "pid 7's buffer announced before its report, as it is now");
        report_arrived(&kept, 7, 6, b"report 7\n{damaged");
        let kept = kept.into_inner().unwrap();
        assert!(kept[2].fd.is_none(), "a report that cannot be read ends its image");
        assert!(kept[1].fd.is_some(), "another pid's buffer is left");
    }

    #[test]
    fn description() {
        let m = vec![
            Missing { pid: 123, command: "nginx".into(), reason: "killed by SIGKILL".into() },
            Missing { pid: 7, command: String::new(), reason: "ended without a report".into() },
        ];
        assert_eq!(
            describe(&m, 45),
            "2 of 45 processes did not report: pid 123 nginx, killed by SIGKILL; pid 7, ended without a report"
        );
    }
}
