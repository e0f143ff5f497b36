//! The public hook interface (src/hooks.rs): a library preloaded after
//! libusertrap.so installs hooks that see and change every syscall.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Build tests/data/NAME.c into target/hooks/NAME-TAG.so (one file per
/// test: tests run in parallel).
fn hook_library(name: &str, tag: Backend) -> PathBuf {
    let src = repo_root().join("tests/data").join(format!("{}.c", name));
    let dir = repo_root().join("target/hooks");
    std::fs::create_dir_all(&dir).expect("mkdir target/hooks");
    let out = dir.join(format!("{}-{}.so", name, tag));
    let st = Command::new(which("gcc"))
        .args(["-O3", "-shared", "-fPIC", "-Wall", "-Wextra", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc");
    assert!(st.success(), "cannot build {}", src.display());
    out
}

fn with_hook(cmd: Cmd, hook: &Path) -> Cmd {
    cmd.env("LD_PRELOAD", format!("{} {}", lib_path().display(), hook.display()))
}

/// c_tests/registers (every register across `syscall`, fast path included)
/// with a hook that uses floating point and vector registers on every call.
fn registers_survive_a_floating_point_hook(backend: Backend) {
    let hook = hook_library("fp_hook", backend);
    let prog = Cmd::new(c_test_binary("registers"));
    let native = run_native(&prog);
    let traced = run_traced(&with_hook(prog, &hook), backend);
    assert_eq!(traced.status, native.status, "status; stderr:\n{}", traced.stderr_text());
    assert_eq!(
        traced.stdout_text(),
        native.stdout_text(),
        "stdout differs with the hook; stderr:\n{}",
        traced.stderr_text()
    );
    let calls: u64 = traced
        .stderr_text()
        .lines()
        .find_map(|l| l.strip_prefix("fp_hook: ")?.strip_suffix(" calls")?.parse().ok())
        .unwrap_or_else(|| panic!("the hook did not report; stderr:\n{}", traced.stderr_text()));
    assert!(calls >= 1000, "the hook saw only {} calls", calls);
}

#[test]
fn registers_survive_a_floating_point_hook_seccomp() {
    registers_survive_a_floating_point_hook(Backend::Seccomp);
}

#[test]
fn registers_survive_a_floating_point_hook_sud() {
    registers_survive_a_floating_point_hook(Backend::Sud);
}

fn hooks_inject_errors(backend: Backend) {
    let hook = hook_library("inject_hook", backend);
    let script = "import os\ntry:\n    os.uname()\n    print('uname ran')\nexcept PermissionError:\n    print('uname: EPERM')\nprint(os.getppid() > 0)";
    let out = run_traced(&with_hook(Cmd::new(python3()).args(["-c", script]), &hook), backend);
    assert_eq!(out.stdout_text(), "uname: EPERM\nTrue\n", "stderr:\n{}", out.stderr_text());
}

#[test]
fn hooks_inject_errors_seccomp() {
    hooks_inject_errors(Backend::Seccomp);
}

#[test]
fn hooks_inject_errors_sud() {
    hooks_inject_errors(Backend::Sud);
}
