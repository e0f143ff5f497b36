//! Shared harness of usertrap's integration tests.
//!
//! The library is a cdylib loaded with LD_PRELOAD, so tests cannot link it:
//! they run programs, natively and under the library, and compare what the
//! programs did: stdout, stderr, exit status and the files left in a scratch
//! directory. Only std is used.
//!
//! Knobs read by the test runner itself (they are never passed to children):
//! - `USERTRAP_TEST_LIB=/path/to/x.so` preloads that file instead of
//!   target/release/libusertrap.so. With a no-op library
//!   (`gcc -shared -fPIC -o /tmp/noop.so -x c /dev/null`) every
//!   native-vs-traced comparison must pass: that checks the harness and the
//!   determinism of the test programs, independently of the library.
//! - `USERTRAP_TEST_KEEP=1` keeps scratch directories of passing tests too
//!   (a failing comparison always keeps its directory).
//!
//! Children run with: the test runner's environment minus `LD_PRELOAD` and
//! every `USERTRAP_*` variable, plus `LC_ALL=C`; for traced runs
//! `LD_PRELOAD=<absolute library path>` and `USERTRAP_BACKEND=<backend>`;
//! then the per-command variables. Each child is the leader of its own
//! process group (killed as a whole on timeout), has RLIMIT_CORE=0 (the
//! machine's core_pattern may be `core`, which would drop core files into the
//! compared scratch directory), and stdin from /dev/null unless bytes are given.

#![allow(dead_code)]

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt::{self, Write as _};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Timeout of one command unless the test says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// Files up to this size are compared byte for byte; larger ones by size.
pub const MAX_COMPARED_FILE: u64 = 1 << 20;

// ---------------------------------------------------------------------------
// Paths

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Absolute path of the library to preload (see `USERTRAP_TEST_LIB`).
pub fn lib_path() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        if let Some(p) = std::env::var_os("USERTRAP_TEST_LIB") {
            let p = PathBuf::from(p);
            let p = if p.is_absolute() { p } else { std::env::current_dir().expect("current dir").join(p) };
            assert!(p.is_file(), "USERTRAP_TEST_LIB={} does not name an existing file", p.display());
            return p;
        }
        let p = repo_root().join("target/release/libusertrap.so");
        assert!(
            p.is_file(),
            "{} is missing: run `make` first (or `make test`, which builds it and the C test programs)",
            p.display()
        );
        p
    })
    .clone()
}

/// target/c_tests/NAME, built from c_tests/NAME.c by `make c-tests`.
pub fn c_test_binary(name: &str) -> PathBuf {
    let p = repo_root().join("target/c_tests").join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `make c-tests` first (or `make test`); source: c_tests/{}.c",
        p.display(),
        name
    );
    p
}

/// Full path of `name` found on PATH. A missing program fails the test (the
/// Makefile's `deps` target installs what the tests drive); it never skips.
pub fn which(name: &str) -> PathBuf {
    if name.contains('/') {
        let p = PathBuf::from(name);
        assert!(is_executable(&p), "required program {} is missing", p.display());
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(name);
        if is_executable(&p) {
            return p;
        }
    }
    panic!(
        "required program `{}` was not found on PATH ({}): install it (`make deps`); \
         tests never skip a missing program",
        name,
        path.to_string_lossy()
    );
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// python3 with a reproducible environment: no user site dir or startup
/// file, stable hashing, no .pyc writes; 60 s to run.
pub fn python_cmd() -> Cmd {
    Cmd::new(python3())
        .env("PYTHONHASHSEED", "0")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONNOUSERSITE", "1")
        .env_remove("PYTHONSTARTUP")
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONWARNINGS")
        .timeout(Duration::from_secs(60))
}

/// The real python3 interpreter, not a wrapper script or pyenv shim (whose
/// exec would be measured as well).
pub fn python3() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let shim = which("python3");
        let out = Command::new(&shim)
            .args(["-c", "import sys; print(sys.executable)"])
            .env_remove("LD_PRELOAD")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {}", shim.display(), e));
        assert!(
            out.status.success(),
            "{} -c 'import sys; print(sys.executable)' failed: {}",
            shim.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string());
        assert!(is_executable(&p), "python3 reports sys.executable={}, not an executable", p.display());
        p
    })
    .clone()
}

// ---------------------------------------------------------------------------
// Backends and run modes

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    Seccomp,
    Sud,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Seccomp, Backend::Sud];

    /// Value of USERTRAP_BACKEND.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Seccomp => "seccomp",
            Backend::Sud => "sud",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Native,
    Traced(Backend),
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Native => f.write_str("native"),
            Mode::Traced(b) => write!(f, "traced ({})", b),
        }
    }
}

// ---------------------------------------------------------------------------
// Commands

#[derive(Clone, Debug)]
pub struct Cmd {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Set after the harness's own variables, so they can override them
    /// (e.g. USERTRAP_BACKEND=bogus).
    pub env: Vec<(OsString, OsString)>,
    pub env_remove: Vec<OsString>,
    /// None: /dev/null.
    pub stdin: Option<Vec<u8>>,
    pub timeout: Duration,
    /// None: the runner's cwd for `run`, the scratch dir for a `Case` step.
    /// Relative: relative to the scratch dir for a `Case` step.
    pub cwd: Option<PathBuf>,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            program: PathBuf::from(program.as_ref()),
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
            cwd: None,
        }
    }

    /// `sh -c SCRIPT` (sh itself execs: Sud only until seccomp follows exec).
    pub fn sh(script: &str) -> Cmd {
        Cmd::new("/bin/sh").args(["-c", script])
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Cmd {
        self.args.push(a.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Cmd {
        self.env.push((k.as_ref().to_owned(), v.as_ref().to_owned()));
        self
    }

    pub fn env_remove(mut self, k: impl AsRef<OsStr>) -> Cmd {
        self.env_remove.push(k.as_ref().to_owned());
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn timeout(mut self, t: Duration) -> Cmd {
        self.timeout = t;
        self
    }

    pub fn cwd(mut self, d: impl AsRef<Path>) -> Cmd {
        self.cwd = Some(d.as_ref().to_owned());
        self
    }

    /// A shell command line that reproduces this run by hand.
    pub fn shell_line(&self, mode: Mode) -> String {
        let mut s = String::new();
        if let Some(d) = &self.cwd {
            let _ = write!(s, "cd {} && ", shell_quote(d.as_os_str()));
        }
        s.push_str("env LC_ALL=C");
        if let Mode::Traced(b) = mode {
            let _ = write!(s, " LD_PRELOAD={} USERTRAP_BACKEND={}", shell_quote(lib_path().as_os_str()), b.name());
        }
        for k in &self.env_remove {
            let _ = write!(s, " -u {}", shell_quote(k));
        }
        for (k, v) in &self.env {
            let _ = write!(s, " {}={}", k.to_string_lossy(), shell_quote(v));
        }
        let _ = write!(s, " {}", shell_quote(self.program.as_os_str()));
        for a in &self.args {
            let _ = write!(s, " {}", shell_quote(a));
        }
        if let Some(i) = &self.stdin {
            let _ = write!(s, "  # plus {} bytes on stdin", i.len());
        }
        s
    }
}

pub fn shell_quote(s: &OsStr) -> String {
    let t = s.to_string_lossy();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_./=:,+-@%".contains(&b)) {
        t.into_owned()
    } else {
        format!("'{}'", t.replace('\'', r"'\''"))
    }
}

// ---------------------------------------------------------------------------
// Running

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

pub fn signal_name(sig: i32) -> &'static str {
    const NAMES: [&str; 32] = [
        "?",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    match sig {
        1..=31 => NAMES[sig as usize],
        _ => "real-time signal",
    }
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

fn tail(bytes: &[u8], max: usize) -> String {
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
            if setrlimit(RLIMIT_CORE, &zero) != 0 {
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
        unsafe {
            kill(-pid, SIGKILL);
        }
        let what = if status.is_none() {
            let _ = child.wait();
            "did not exit".to_string()
        } else {
            format!("exited ({}) but something it started kept its stdout/stderr open", Status::from(status.unwrap()))
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
    Output { stdout, stderr, status: Status::from(status.unwrap()), elapsed }
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

// ---------------------------------------------------------------------------
// Scratch directories and file snapshots

/// Fixed per test case and backend, so native and traced runs see the same
/// absolute cwd while tests running in parallel never share one.
pub fn scratch_dir(case: &str, backend: Backend) -> PathBuf {
    assert!(
        !case.is_empty() && case.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)),
        "case name {:?}: use [A-Za-z0-9_.-] only",
        case
    );
    std::env::temp_dir().join("usertrap-tests").join(format!("{}-{}", case, backend.name()))
}

/// Removes `dir` (whatever permissions its contents have) and recreates it empty.
pub fn fresh_dir(dir: &Path) {
    if fs::symlink_metadata(dir).is_ok() && fs::remove_dir_all(dir).is_err() {
        make_writable(dir);
        fs::remove_dir_all(dir).unwrap_or_else(|e| panic!("cannot remove {}: {}", dir.display(), e));
    }
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {}", dir.display(), e));
}

fn make_writable(dir: &Path) {
    if let Ok(m) = fs::symlink_metadata(dir) {
        if m.is_dir() {
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700 | m.permissions().mode()));
            if let Ok(rd) = fs::read_dir(dir) {
                for e in rd.flatten() {
                    make_writable(&e.path());
                }
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// `content` is None for files larger than MAX_COMPARED_FILE.
    File {
        mode: u32,
        size: u64,
        content: Option<Vec<u8>>,
    },
    Dir {
        mode: u32,
    },
    Symlink {
        target: PathBuf,
    },
    Other {
        kind: &'static str,
        mode: u32,
    },
}

impl Entry {
    fn kind(&self) -> &'static str {
        match self {
            Entry::File { .. } => "file",
            Entry::Dir { .. } => "directory",
            Entry::Symlink { .. } => "symlink",
            Entry::Other { kind, .. } => kind,
        }
    }
}

/// Everything under a directory, by path relative to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub entries: BTreeMap<PathBuf, Entry>,
}

/// Walks `root`. `ignore` lists relative paths left out, each with everything
/// below it (e.g. ".git/index").
pub fn snapshot(root: &Path, ignore: &[String]) -> Snapshot {
    let mut snap = Snapshot::default();
    walk(root, Path::new(""), ignore, &mut snap);
    snap
}

fn walk(root: &Path, rel: &Path, ignore: &[String], snap: &mut Snapshot) {
    let dir = root.join(rel);
    let rd = fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {}", dir.display(), e));
    for e in rd {
        let e = e.unwrap_or_else(|err| panic!("cannot list {}: {}", dir.display(), err));
        let r = rel.join(e.file_name());
        if ignore.iter().any(|i| Path::new(i) == r || r.starts_with(i)) {
            continue;
        }
        let p = root.join(&r);
        let m = fs::symlink_metadata(&p).unwrap_or_else(|err| panic!("cannot stat {}: {}", p.display(), err));
        let ft = m.file_type();
        let mode = m.permissions().mode() & 0o7777;
        let entry = if ft.is_symlink() {
            Entry::Symlink { target: fs::read_link(&p).unwrap() }
        } else if ft.is_dir() {
            walk(root, &r, ignore, snap);
            Entry::Dir { mode }
        } else if ft.is_file() {
            let size = m.len();
            let content = if size <= MAX_COMPARED_FILE {
                Some(fs::read(&p).unwrap_or_else(|err| panic!("cannot read {}: {}", p.display(), err)))
            } else {
                None
            };
            Entry::File { mode, size, content }
        } else {
            let kind = if ft.is_fifo() {
                "fifo"
            } else if ft.is_socket() {
                "socket"
            } else if ft.is_block_device() {
                "block device"
            } else {
                "char device"
            };
            Entry::Other { kind, mode }
        };
        snap.entries.insert(r, entry);
    }
}

/// Human-readable differences, empty when equal.
pub fn diff_snapshots(native: &Snapshot, traced: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (p, n) in &native.entries {
        let d = p.display();
        match traced.entries.get(p) {
            None => out.push(format!("only in native run: {} ({})", d, n.kind())),
            Some(t) if t == n => {}
            Some(t) => out.push(match (n, t) {
                (Entry::File { mode: nm, size: ns, content: nc }, Entry::File { mode: tm, size: ts, content: tc }) => {
                    let mut v = Vec::new();
                    if nm != tm {
                        v.push(format!("mode {:o} vs {:o}", nm, tm));
                    }
                    if ns != ts {
                        v.push(format!("size {} vs {}", ns, ts));
                    }
                    if let (Some(a), Some(b)) = (nc, tc) {
                        if a != b {
                            let i = a.iter().zip(b.iter()).take_while(|(x, y)| x == y).count();
                            v.push(format!("content first differs at byte {}", i));
                        }
                    }
                    format!("file {}: {} (native vs traced)", d, v.join(", "))
                }
                (Entry::Dir { mode: a }, Entry::Dir { mode: b }) => {
                    format!("directory {}: mode {:o} vs {:o} (native vs traced)", d, a, b)
                }
                (Entry::Symlink { target: a }, Entry::Symlink { target: b }) => {
                    format!("symlink {}: target {} vs {} (native vs traced)", d, a.display(), b.display())
                }
                _ => format!("{}: {} in native run, {} in traced run", d, n.kind(), t.kind()),
            }),
        }
    }
    for (p, t) in &traced.entries {
        if !native.entries.contains_key(p) {
            out.push(format!("only in traced run: {} ({})", p.display(), t.kind()));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Text diffs

fn clip(line: &str) -> String {
    const MAX: usize = 200;
    if line.chars().count() > MAX {
        let s: String = line.chars().take(MAX).collect();
        format!("{}[... {} chars]", s, line.chars().count())
    } else {
        line.to_string()
    }
}

/// Where two outputs first differ, with a few lines of context from each.
/// None when equal.
pub fn text_diff(what: &str, native: &[u8], traced: &[u8]) -> Option<String> {
    if native == traced {
        return None;
    }
    const BEFORE: usize = 3;
    const AFTER: usize = 8;
    let a = String::from_utf8_lossy(native);
    let b = String::from_utf8_lossy(traced);
    // split_inclusive keeps a missing final newline visible as a difference.
    let la: Vec<&str> = a.split_inclusive('\n').collect();
    let lb: Vec<&str> = b.split_inclusive('\n').collect();
    let i = la.iter().zip(lb.iter()).take_while(|(x, y)| x == y).count();
    let mut s = format!(
        "{} differs at line {} (native: {} lines, {} bytes; traced: {} lines, {} bytes)\n",
        what,
        i + 1,
        la.len(),
        native.len(),
        lb.len(),
        traced.len()
    );
    for (name, lines) in [("native", &la), ("traced", &lb)] {
        let _ = writeln!(s, "    {}:", name);
        let from = i.saturating_sub(BEFORE);
        let to = (i + AFTER + 1).min(lines.len());
        if lines.is_empty() {
            let _ = writeln!(s, "      [empty]");
        } else if from >= to {
            let _ = writeln!(s, "      [no line {}: output ends after line {}]", i + 1, lines.len());
        }
        for (j, l) in lines.iter().enumerate().take(to).skip(from) {
            let marker = if j == i { '>' } else { ' ' };
            let (body, nl) = match l.strip_suffix('\n') {
                Some(b) => (b, ""),
                None => (*l, "  [no newline at end]"),
            };
            let _ = writeln!(s, "    {} {:>5} | {}{}", marker, j + 1, clip(body), nl);
        }
        if to < lines.len() {
            let _ = writeln!(s, "      [... {} more lines]", lines.len() - to);
        }
    }
    Some(s)
}

// ---------------------------------------------------------------------------
// Native-vs-traced comparisons

type Setup = Box<dyn Fn(&Path) + Send + Sync>;

/// A scenario: steps run in order in a fresh scratch directory (their cwd
/// unless they set one), once natively and once under the library.
pub struct Case {
    pub name: String,
    pub steps: Vec<Cmd>,
    /// Prepares the fresh scratch directory before each run.
    pub setup: Option<Setup>,
    /// Relative paths left out of the file comparison (with all below them).
    pub ignore_files: Vec<String>,
    /// Native runs must exit 0 at every step (else the test itself is broken).
    pub native_must_succeed: bool,
    /// Set HOME to the scratch directory.
    pub home_in_scratch: bool,
}

impl Case {
    pub fn new(name: impl Into<String>) -> Case {
        Case {
            name: name.into(),
            steps: Vec::new(),
            setup: None,
            ignore_files: Vec::new(),
            native_must_succeed: true,
            home_in_scratch: false,
        }
    }

    pub fn step(mut self, cmd: Cmd) -> Case {
        self.steps.push(cmd);
        self
    }

    pub fn setup(mut self, f: impl Fn(&Path) + Send + Sync + 'static) -> Case {
        self.setup = Some(Box::new(f));
        self
    }

    pub fn ignore(mut self, rel: impl Into<String>) -> Case {
        self.ignore_files.push(rel.into());
        self
    }

    pub fn allow_native_failure(mut self) -> Case {
        self.native_must_succeed = false;
        self
    }

    pub fn home_in_scratch(mut self) -> Case {
        self.home_in_scratch = true;
        self
    }

    fn resolved_steps(&self, dir: &Path) -> Vec<Cmd> {
        self.steps
            .iter()
            .map(|s| {
                let mut s = s.clone();
                s.cwd = Some(match &s.cwd {
                    None => dir.to_owned(),
                    Some(c) => dir.join(c),
                });
                if self.home_in_scratch {
                    s.env.insert(0, ("HOME".into(), dir.as_os_str().to_owned()));
                }
                s
            })
            .collect()
    }

    fn run_all(&self, dir: &Path, mode: Mode) -> Vec<Output> {
        fresh_dir(dir);
        if let Some(f) = &self.setup {
            f(dir);
        }
        self.resolved_steps(dir).iter().map(|s| run(s, mode)).collect()
    }
}

/// Catches two tests of one test binary using the same scratch directory at
/// the same time (same case name and backend), which would make both flaky.
struct ScratchClaim(PathBuf);

static CLAIMED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

impl ScratchClaim {
    fn new(dir: &Path) -> ScratchClaim {
        let mut c = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            !c.iter().any(|d| d == dir),
            "two tests use the scratch directory {} at once: give their cases distinct names",
            dir.display()
        );
        c.push(dir.to_owned());
        ScratchClaim(dir.to_owned())
    }
}

impl Drop for ScratchClaim {
    fn drop(&mut self) {
        let mut c = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
        c.retain(|d| *d != self.0);
    }
}

fn keep_scratch() -> bool {
    std::env::var_os("USERTRAP_TEST_KEEP").is_some_and(|v| v == "1")
}

/// Runs `case` natively, then under the library with `backend`, in the same
/// scratch directory (wiped in between), and panics with a readable report
/// unless stdout, stderr and status of every step and the files left behind
/// are the same. Returns the native outputs.
pub fn compare_native_and_traced(case: &Case, backend: Backend) -> Vec<Output> {
    assert!(!case.steps.is_empty(), "case {} has no steps", case.name);
    let dir = scratch_dir(&case.name, backend);
    let _claim = ScratchClaim::new(&dir);
    let steps = case.resolved_steps(&dir);

    let native = case.run_all(&dir, Mode::Native);
    if case.native_must_succeed {
        for (i, (o, s)) in native.iter().zip(&steps).enumerate() {
            assert!(
                o.status.success(),
                "the NATIVE run of case {} failed at step {}/{} ({}): the test itself is broken, \
                 not the library.\n  command: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n---",
                case.name,
                i + 1,
                steps.len(),
                o.status,
                s.shell_line(Mode::Native),
                tail(&o.stdout, 3000),
                tail(&o.stderr, 3000)
            );
        }
    }
    let native_files = snapshot(&dir, &case.ignore_files);

    let traced = case.run_all(&dir, Mode::Traced(backend));
    let traced_files = snapshot(&dir, &case.ignore_files);

    let mut report = String::new();
    for (i, ((n, t), s)) in native.iter().zip(&traced).zip(&steps).enumerate() {
        let mut step = String::new();
        if n.status != t.status {
            let _ = writeln!(step, "  status DIFFERS: native {}, traced {}", n.status, t.status);
        }
        if let Some(d) = text_diff("stdout", &n.stdout, &t.stdout) {
            let _ = write!(step, "  {}", d);
        }
        if let Some(d) = text_diff("stderr", &n.stderr, &t.stderr) {
            let _ = write!(step, "  {}", d);
        }
        if !step.is_empty() {
            let same =
                if n.status == t.status { format!("  status: {} in both runs\n", n.status) } else { String::new() };
            let _ = writeln!(
                report,
                "step {}/{}: {}\n  reproduce: {}\n  (native took {:.2?}, traced {:.2?})\n{}{}",
                i + 1,
                steps.len(),
                s.program.display(),
                s.shell_line(Mode::Traced(backend)),
                n.elapsed,
                t.elapsed,
                same,
                step
            );
        }
    }
    let files = diff_snapshots(&native_files, &traced_files);
    if !files.is_empty() {
        let _ = writeln!(report, "files left in the scratch directory differ:");
        for f in &files {
            let _ = writeln!(report, "  {}", f);
        }
    }
    if !report.is_empty() {
        panic!(
            "\n=== case {}: native and traced ({}) runs differ ===\nlibrary: {}\n\
             scratch dir (holds the traced run's files): {}\n\n{}",
            case.name,
            backend,
            lib_path().display(),
            dir.display(),
            report
        );
    }
    if !keep_scratch() {
        let _ = fs::remove_dir_all(&dir);
    }
    native
}

// ---------------------------------------------------------------------------
// Latency reports of traced runs

/// A fresh directory for the reports of one test's traced runs, beside the
/// scratch directories but outside them (a `Case` compares and then removes
/// its scratch directory; the reports are read afterwards).
pub fn fresh_reports_dir(case: &str, backend: Backend) -> PathBuf {
    let dir = scratch_dir(&format!("{}-reports", case), backend);
    fresh_dir(&dir);
    dir
}

/// `cmd` writing one JSON report per process image into `dir`
/// (`USERTRAP_OUTPUT=<dir>/%p.%t.json`, `USERTRAP_FORMAT=json`). Native runs
/// ignore both variables.
pub fn with_json_reports(cmd: Cmd, dir: &Path) -> Cmd {
    cmd.env("USERTRAP_OUTPUT", dir.join("%p.%t.json")).env("USERTRAP_FORMAT", "json")
}

/// Every file in `dir`, by name, with its text.
pub fn report_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut v: Vec<(PathBuf, String)> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {}", dir.display(), e))
        .map(|e| {
            let p = e.expect("read_dir entry").path();
            let text = fs::read_to_string(&p).unwrap_or_else(|err| panic!("cannot read {}: {}", p.display(), err));
            (p, text)
        })
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// Machine facts

extern "C" {
    fn geteuid() -> u32;
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { geteuid() == 0 }
}

/// Some(true) for an x86-64 ELF executable without PT_INTERP (statically
/// linked), Some(false) with one, None if `path` is not a readable ELF64.
pub fn elf_is_static(path: &Path) -> Option<bool> {
    let b = fs::read(path).ok()?;
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
    let phoff = u64_at(32)? as usize;
    let phentsize = u16_at(54)? as usize;
    let phnum = u16_at(56)? as usize;
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        if u32_at(phoff + i * phentsize)? == PT_INTERP {
            return Some(false);
        }
    }
    Some(true)
}
