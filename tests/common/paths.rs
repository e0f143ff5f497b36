//! Where things are: the repository, the library to preload, the C test
//! programs, programs on PATH (a missing one fails the test, never skips it)
//! and the real python3 interpreter.

use super::Cmd;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

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
