//! Latency reports of traced runs: a directory per test for them, the
//! settings that write one JSON report per process image there, and reading
//! them back.

use super::{fresh_dir, scratch_dir, Backend, Cmd};
use std::fs;
use std::path::{Path, PathBuf};

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
