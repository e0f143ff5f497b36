//! `Cmd`: a program, its arguments, environment changes, stdin, cwd and
//! timeout, built up by the tests and run by `run`; and the shell line that
//! reproduces a run by hand.

use super::{lib_path, Mode};
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Timeout of one command unless the test says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

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
