//! Native-vs-traced comparisons: a `Case` (steps run in a fresh scratch
//! directory) run natively and under the library, and every difference in
//! status, stdout, stderr and files left behind reported at once.

use super::running::tail;
use super::{diff_snapshots, fresh_dir, lib_path, run, scratch_dir, snapshot, text_diff, Backend, Cmd, Mode, Output};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// `USERTRAP_TEST_KEEP=1`: scratch directories of passing tests are kept.
pub fn keep_scratch() -> bool {
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
