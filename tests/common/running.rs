//! Running one command natively or under the library: the child's
//! environment and limits, its output collected by reader threads, the
//! timeout that kills its whole process group, and how it ended.

use super::{lib_path, Backend, Cmd, Mode};
use std::borrow::Cow;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Exited(i32),
    Signaled(i32),
}

impl Status {
    pub fn success(self) -> bool {
        self == Status::Exited(0)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Status::Exited(c) => write!(f, "exit code {}", c),
            Status::Signaled(s) => write!(f, "killed by signal {} ({})", s, signal_name(s)),
        }
    }
}

/// A signal's name (usertrap-core's: `SIGTERM`, `SIGRT_3`, `signal 99`).
pub fn signal_name(sig: i32) -> String {
    struct S(Vec<u8>);
    impl usertrap_core::sink::Sink for S {
        fn put(&mut self, b: &[u8]) {
            self.0.extend_from_slice(b);
        }
    }
    let mut s = S(Vec::new());
    usertrap_core::names::write_signal(&mut s, sig.into());
    String::from_utf8_lossy(&s.0).into_owned()
}

#[derive(Clone, Debug)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: Status,
    pub elapsed: Duration,
}

impl Output {
    pub fn stdout_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }
    pub fn stderr_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }
}

// std only: the libc crate is not a dependency of the tests, and these two
// are plain glibc functions that std links anyway.
#[repr(C)]
struct RLimit {
    cur: u64,
    max: u64,
}
extern "C" {
    fn setrlimit(resource: i32, rlim: *const RLimit) -> i32;
    fn kill(pid: i32, sig: i32) -> i32;
}
const RLIMIT_CORE: i32 = 4;
const SIGKILL: i32 = 9;

type Shared = Arc<Mutex<Vec<u8>>>;

fn spawn_reader(mut r: impl Read + Send + 'static) -> (Shared, thread::JoinHandle<()>) {
    let buf: Shared = Arc::new(Mutex::new(Vec::new()));
    let b = buf.clone();
    let h = thread::spawn(move || {
        let mut chunk = [0u8; 65536];
        loop {
            match r.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => b.lock().unwrap().extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    });
    (buf, h)
}

pub(super) fn tail(bytes: &[u8], max: usize) -> String {
    let start = bytes.len().saturating_sub(max);
    let mut s = String::from_utf8_lossy(&bytes[start..]).into_owned();
    if start > 0 {
        s.insert_str(0, "[...]");
    }
    s
}

/// Runs `cmd` natively or under the library. Panics with a clear message if
/// the program cannot be started or does not finish (exit and closing of its
/// stdout and stderr) within `cmd.timeout`; its process group is then killed.
pub fn run(cmd: &Cmd, mode: Mode) -> Output {
    let mut c = Command::new(&cmd.program);
    c.args(&cmd.args);
    for (k, _) in std::env::vars_os() {
        let kb = k.as_bytes();
        if kb == b"LD_PRELOAD" || kb.starts_with(b"USERTRAP_") {
            c.env_remove(&k);
        }
    }
    c.env("LC_ALL", "C");
    if let Mode::Traced(b) = mode {
        c.env("LD_PRELOAD", lib_path());
        c.env("USERTRAP_BACKEND", b.name());
        // Every process writes its latency report at exit, on stderr by
        // default: the comparisons want the program's own stderr, so reports
        // go nowhere unless a test asks for them (its env comes after).
        c.env("USERTRAP_OUTPUT", "/dev/null");
    }
    for (k, v) in &cmd.env {
        c.env(k, v);
    }
    for k in &cmd.env_remove {
        c.env_remove(k);
    }
    if let Some(d) = &cmd.cwd {
        c.current_dir(d);
    }
    c.stdin(if cmd.stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    c.stdout(Stdio::piped());
    c.stderr(Stdio::piped());
    c.process_group(0);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        c.pre_exec(|| {
            let zero = RLimit { cur: 0, max: 0 };
            if setrlimit(RLIMIT_CORE, &raw const zero) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }

    let start = Instant::now();
    let mut child = c.spawn().unwrap_or_else(|e| {
        panic!("cannot start {} ({}): {}\n  command: {}", cmd.program.display(), mode, e, cmd.shell_line(mode))
    });
    let pid = child.id() as i32;
    let writer = match (&cmd.stdin, child.stdin.take()) {
        (Some(bytes), Some(mut w)) => {
            let bytes = bytes.clone();
            // The program may not read it all: a broken pipe is not an error.
            Some(thread::spawn(move || {
                let _ = w.write_all(&bytes);
            }))
        }
        _ => None,
    };
    let (out, out_h) = spawn_reader(child.stdout.take().unwrap());
    let (err, err_h) = spawn_reader(child.stderr.take().unwrap());

    let deadline = start + cmd.timeout;
    let mut status = None;
    let mut nap = Duration::from_millis(1);
    let timed_out = loop {
        if status.is_none() {
            status = child.try_wait().expect("waitpid");
        }
        if status.is_some() && out_h.is_finished() && err_h.is_finished() {
            break false;
        }
        if Instant::now() >= deadline {
            break true;
        }
        thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();

    if timed_out {
        // The group stays alive while an unreaped leader or any member exists.
        // SAFETY: kill takes no pointers; the group is ours (process_group(0)).
        unsafe {
            kill(-pid, SIGKILL);
        }
        let what = match status {
            None => {
                let _ = child.wait();
                "did not exit".to_string()
            }
            Some(s) => format!("exited ({}) but something it started kept its stdout/stderr open", Status::from(s)),
        };
        let grace = Instant::now() + Duration::from_secs(2);
        while !(out_h.is_finished() && err_h.is_finished()) && Instant::now() < grace {
            thread::sleep(Duration::from_millis(10));
        }
        let o = out.lock().unwrap().clone();
        let e = err.lock().unwrap().clone();
        panic!(
            "TIMEOUT after {:?}: the {} run {}; its process group was killed.\n  command: {}\n\
             --- stdout so far ---\n{}\n--- stderr so far ---\n{}\n---",
            cmd.timeout,
            mode,
            what,
            cmd.shell_line(mode),
            tail(&o, 3000),
            tail(&e, 3000)
        );
    }
    let _ = out_h.join();
    let _ = err_h.join();
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = std::mem::take(&mut *out.lock().unwrap());
    let stderr = std::mem::take(&mut *err.lock().unwrap());
    // Reaped by try_wait above: wait returns the status it kept.
    let status = child.wait().expect("waitpid");
    Output { stdout, stderr, status: Status::from(status), elapsed }
}

impl From<std::process::ExitStatus> for Status {
    fn from(s: std::process::ExitStatus) -> Status {
        match (s.code(), s.signal()) {
            (Some(c), _) => Status::Exited(c),
            (None, Some(sig)) => Status::Signaled(sig),
            _ => panic!("unexpected wait status {:?}", s),
        }
    }
}

pub fn run_native(cmd: &Cmd) -> Output {
    run(cmd, Mode::Native)
}

pub fn run_traced(cmd: &Cmd, backend: Backend) -> Output {
    run(cmd, Mode::Traced(backend))
}
