//! Go programs (issue 9 item 2): the Go runtime forks with a raw
//! clone(CLONE_VM|CLONE_VFORK) on the parent's stack, runs every signal
//! handler with SA_ONSTACK on a 32 KiB alternate stack of its own per thread,
//! preempts goroutines with SIGURG, and its binaries are static unless they
//! use cgo. Each program of tests/data/go/ is built twice, static
//! (CGO_ENABLED=0: run by a traced `sh`, whose exec starts it through the
//! launcher) and with cgo (dynamically linked: LD_PRELOAD), and runs natively
//! and under the library with each backend: stdout, stderr and exit status
//! must be the same, and the Go program must have written its own report.
//! Then the Go toolchain itself: `go build` and `go test` (the go command
//! runs compile, asm, link, vet and the test binary) under `usertrap stat`.
//!
//! Everything builds offline from the standard library (GO111MODULE=off,
//! GOPROXY=off), with GOPATH and GOCACHE in target/gowork/, natively, before
//! any traced run. Run with `cargo test --release --test go` after `make`.

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Flavor {
    /// CGO_ENABLED=0: a static binary, run through the launcher.
    Static,
    /// CGO_ENABLED=1 and `import "C"` (tests/data/go/cgo.go): dynamically
    /// linked against libc, threads from pthread_create.
    Cgo,
}

/// Four tests per program: `NAME::static_seccomp`, `NAME::static_sud`,
/// `NAME::cgo_seccomp`, `NAME::cgo_sud`, each calling `run_go(NAME, ..)`;
/// attributes before a name (`#[ignore = ".."]`) go to all four.
macro_rules! go_programs {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::*;
                $(#[$m])*
                #[test]
                fn static_seccomp() {
                    run_go(stringify!($name), Flavor::Static, Backend::Seccomp);
                }
                $(#[$m])*
                #[test]
                fn static_sud() {
                    run_go(stringify!($name), Flavor::Static, Backend::Sud);
                }
                $(#[$m])*
                #[test]
                fn cgo_seccomp() {
                    run_go(stringify!($name), Flavor::Cgo, Backend::Seccomp);
                }
                $(#[$m])*
                #[test]
                fn cgo_sud() {
                    run_go(stringify!($name), Flavor::Cgo, Backend::Sud);
                }
            }
        )*
    };
}

go_programs! {
    exec_goroutines,
    reads,
    http_loopback,
    signals,
    // A failed syscall.Exec (E2BIG) runs the whole exec emulation, about
    // 54 KB of stack, in the handler: on Go's 32 KiB alternate stack (heap
    // objects right below it) before the kernel's alternate stack became
    // the library's own (issue 9 item 1).
    exec_in_place,
}

fn gowork() -> PathBuf {
    repo_root().join("target/gowork")
}

/// The go command with an offline, reproducible environment.
fn go_env(cmd: &mut Command) -> &mut Command {
    let w = gowork();
    cmd.env("GOPATH", w.join("path"))
        .env("GOCACHE", w.join("cache"))
        .env("GO111MODULE", "off")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "")
        .env("GOTELEMETRY", "off")
        .env("CGO_ENABLED", "0")
        .env_remove("LD_PRELOAD")
        .env_remove("GOROOT")
        .env_remove("GODEBUG")
        .env_remove("GOMAXPROCS")
        .env_remove("GOTRACEBACK")
}

/// The same variables for a `Cmd` run by the harness.
fn go_cmd_env(mut cmd: Cmd) -> Cmd {
    let w = gowork();
    for (k, v) in [
        ("GOPATH", w.join("path").into_os_string()),
        ("GOCACHE", w.join("cache").into_os_string()),
        ("GO111MODULE", "off".into()),
        ("GOPROXY", "off".into()),
        ("GOTOOLCHAIN", "local".into()),
        ("GOFLAGS", "".into()),
        ("GOTELEMETRY", "off".into()),
        ("CGO_ENABLED", "0".into()),
    ] {
        cmd = cmd.env(k, v);
    }
    cmd.env_remove("GOROOT").env_remove("GODEBUG").env_remove("GOMAXPROCS").env_remove("GOTRACEBACK")
}

/// Short binary names: the report's `command` is the 15-character comm.
fn binary_name(program: &str, flavor: Flavor) -> String {
    let short: String = program.split('_').map(|w| &w[..w.len().min(4)]).collect::<Vec<_>>().join("");
    format!("go{}_{}", short, if flavor == Flavor::Static { "s" } else { "c" })
}

/// Builds tests/data/go/PROGRAM.go (with cgo.go) once per test process.
fn build(program: &str, flavor: Flavor) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<(String, Flavor), PathBuf>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(|| Mutex::new(HashMap::new())).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.get(&(program.to_string(), flavor)) {
        return p.clone();
    }
    let src = repo_root().join("tests/data/go");
    let bin_dir = gowork().join("bin");
    fs::create_dir_all(&bin_dir).unwrap();
    let out = bin_dir.join(binary_name(program, flavor));
    let mut cmd = Command::new(which("go"));
    go_env(&mut cmd)
        .env("CGO_ENABLED", if flavor == Flavor::Static { "0" } else { "1" })
        .arg("build")
        .arg("-o")
        .arg(&out)
        .arg(src.join(format!("{}.go", program)))
        .arg(src.join("cgo.go"))
        .stdin(Stdio::null());
    let res = cmd.output().unwrap_or_else(|e| panic!("cannot run go build: {}", e));
    assert!(
        res.status.success(),
        "go build of tests/data/go/{}.go ({:?}) failed:\n{}",
        program,
        flavor,
        String::from_utf8_lossy(&res.stderr)
    );
    assert_eq!(
        elf_is_static(&out),
        Some(flavor == Flavor::Static),
        "{} should be {}",
        out.display(),
        if flavor == Flavor::Static { "statically linked (CGO_ENABLED=0)" } else { "dynamically linked (cgo)" }
    );
    built.insert((program.to_string(), flavor), out.clone());
    out
}

fn run_go(program: &str, flavor: Flavor, backend: Backend) {
    let bin = build(program, flavor);
    let name = binary_name(program, flavor);
    let reports = fresh_reports_dir(&format!("go-{}", name), backend);
    // A static program ignores LD_PRELOAD: a traced sh execs it through the
    // launcher. A cgo one is started with LD_PRELOAD directly.
    let cmd = match flavor {
        Flavor::Static => Cmd::new("/bin/sh").args(["-c", "exec \"$0\""]).arg(&bin),
        Flavor::Cgo => Cmd::new(&bin),
    };
    let cmd = with_json_reports(cmd, &reports).timeout(TIMEOUT);
    let case = Case::new(format!("go-{}", name)).step(cmd);
    let native = compare_native_and_traced(&case, backend);
    assert!(!native[0].stdout.is_empty(), "{} printed nothing natively", name);

    // The Go program itself was intercepted (not run natively by mistake).
    // One JSON report per line: an image whose exec failed reports at the
    // exec and again at its end, to the same file.
    let mine: Vec<Value> = report_files(&reports)
        .into_iter()
        .flat_map(|(p, text)| {
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {}", p.display(), e)))
                .collect::<Vec<Value>>()
        })
        .filter(|r: &Value| r["command"] == name.as_str())
        .collect();
    assert!(!mine.is_empty(), "no report from {} under {}: the Go program was not intercepted", name, backend);
    assert!(
        mine.iter().all(|r| r["backend"] == backend.name()),
        "{}'s reports name another backend than {}",
        name,
        backend
    );
}

/// tests/data/go/reads.go: Go's own syscall stubs (`mov $0,%eax; syscall`
/// in the runtime, `syscall.Syscall`'s range) are patched, their function
/// starts found in Go's function table (a static Go binary has no
/// `.eh_frame`, a cgo one none for its Go code): all its 20,000 reads but
/// a few first hits are fast.
fn go_reads_are_fast(flavor: Flavor, backend: Backend) {
    let bin = build("reads", flavor);
    let name = binary_name("reads", flavor);
    let reports = fresh_reports_dir(&format!("go-fast-{}", name), backend);
    let cmd = match flavor {
        Flavor::Static => Cmd::new("/bin/sh").args(["-c", "exec \"$0\""]).arg(&bin),
        Flavor::Cgo => Cmd::new(&bin),
    };
    let out = run_traced(&with_json_reports(cmd, &reports).timeout(TIMEOUT), backend);
    assert_eq!(out.stdout_text(), "zero bytes read: 20000\n", "{}", out.stderr_text());
    let (mut calls, mut fast) = (0, 0);
    let mut sites = Vec::new();
    for (_, text) in report_files(&reports) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let r: Value = serde_json::from_str(line).expect("a JSON report");
            if r["command"] != name.as_str() {
                continue;
            }
            for s in r["syscalls"].as_array().into_iter().flatten().filter(|s| s["name"] == "read") {
                calls += s["calls"].as_u64().unwrap_or(0);
                fast += s["fast_calls"].as_u64().unwrap_or(0);
            }
            sites.extend(r["sites"].as_array().into_iter().flatten().filter(|s| s["syscall"] == "read").cloned());
        }
    }
    assert!(calls >= 20000, "only {} reads in {}'s report", calls, name);
    // All but a few first hits, natively ~20 at most. Once, in a CI run with
    // `go build` and `go test` under usertrap beside it, 412 (seccomp) and
    // 78 (sud) of the static build's reads were slow, not seen again in 30
    // runs under load: allowed up to 5% while that is open (an unpatched
    // site makes them all slow); the sites are printed to find out.
    assert!(
        fast * 20 >= calls * 19,
        "only {} of {}'s {} reads took the fast path under {}; read sites: {:?}",
        fast,
        name,
        calls,
        backend,
        sites
    );
    if fast + 20 < calls {
        println!("{name} ({backend}): {} of {calls} reads slow; read sites: {sites:?}", calls - fast);
    }
}

#[test]
fn go_reads_are_fast_static_seccomp() {
    go_reads_are_fast(Flavor::Static, Backend::Seccomp);
}

#[test]
fn go_reads_are_fast_static_sud() {
    go_reads_are_fast(Flavor::Static, Backend::Sud);
}

#[test]
fn go_reads_are_fast_cgo_seccomp() {
    go_reads_are_fast(Flavor::Cgo, Backend::Seccomp);
}

#[test]
fn go_reads_are_fast_cgo_sud() {
    go_reads_are_fast(Flavor::Cgo, Backend::Sud);
}

// ---------------------------------------------------------------------------
// The Go toolchain under `usertrap stat`

fn usertrap_cli() -> PathBuf {
    let p = lib_path().with_file_name("usertrap");
    assert!(p.is_file(), "{} is missing: run `make`", p.display());
    p
}

/// `usertrap stat --json -o AGG -- go ARGS` in `dir`; returns the commands
/// of the processes in the aggregate.
fn go_under_stat(dir: &Path, backend: Backend, args: &[&str]) -> (Output, Vec<String>) {
    let agg = dir.join("aggregate.json");
    let cmd = go_cmd_env(
        Cmd::new(usertrap_cli())
            .args(["stat", "--json", "--backend", backend.name(), "-o"])
            .arg(&agg)
            .arg("--")
            .arg(which("go"))
            .args(args),
    )
    .cwd(dir)
    .timeout(Duration::from_secs(120));
    let out = run(&cmd, Mode::Native);
    let text = fs::read_to_string(&agg)
        .unwrap_or_else(|e| panic!("no aggregate {} ({}); stderr:\n{}", agg.display(), e, out.stderr_text()));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {}\n{}", agg.display(), e, text));
    let commands = v["processes"]
        .as_array()
        .map(|a| a.iter().map(|p| p["command"].as_str().unwrap_or("?").to_string()).collect())
        .unwrap_or_default();
    (out, commands)
}

/// A source whose text is new on every run, so the go command really
/// compiles it (the standard library comes from the warm cache).
fn unique_token() -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{}-{}", std::process::id(), t)
}

fn go_build(backend: Backend) {
    let dir = scratch_dir("go-build", backend);
    fresh_dir(&dir);
    let token = unique_token();
    let src = format!(
        "package main\n\nimport (\n\t\"fmt\"\n\t\"os/exec\"\n)\n\nfunc main() {{\n\tout, err := exec.Command(\"/bin/echo\", \"child\").Output()\n\tfmt.Printf(\"built {}: %q %v\\n\", out, err)\n}}\n",
        token
    );
    fs::write(dir.join("hello.go"), src).unwrap();
    // Warm the cache natively (the standard library), then build again
    // under usertrap stat after a change that forces compile and link.
    let mut warm = Command::new(which("go"));
    go_env(&mut warm).args(["build", "-o", "hello_native", "hello.go"]).current_dir(&dir);
    let w = warm.output().expect("go build");
    assert!(w.status.success(), "native go build failed:\n{}", String::from_utf8_lossy(&w.stderr));
    let src2 = fs::read_to_string(dir.join("hello.go")).unwrap().replace("built", "traced build");
    fs::write(dir.join("hello.go"), src2).unwrap();

    let (out, commands) = go_under_stat(&dir, backend, &["build", "-o", "hello", "hello.go"]);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "go build under usertrap stat ({}) failed: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        backend,
        out.status,
        out.stdout_text(),
        out.stderr_text()
    );
    for tool in ["go", "compile", "link"] {
        assert!(
            commands.iter().any(|c| c == tool),
            "go build under usertrap stat ({}): no report from `{}`; processes: {:?}",
            backend,
            tool,
            commands
        );
    }
    let ran = run(&Cmd::new(dir.join("hello")), Mode::Native);
    assert_eq!(
        ran.stdout_text(),
        format!("traced build {}: \"child\\n\" <nil>\n", token),
        "the binary built under usertrap stat ({}) does not work",
        backend
    );
    let _ = fs::remove_dir_all(&dir);
}

fn go_test(backend: Backend) {
    let dir = scratch_dir("go-test", backend);
    fresh_dir(&dir);
    let token = unique_token();
    fs::write(
        dir.join("sum.go"),
        format!("package sum\n\n// Add returns a+b ({}).\nfunc Add(a, b int) int {{ return a + b }}\n", token),
    )
    .unwrap();
    fs::write(
        dir.join("sum_test.go"),
        "package sum\n\nimport (\n\t\"os/exec\"\n\t\"testing\"\n)\n\n\
         func TestAdd(t *testing.T) {\n\tif Add(2, 3) != 5 {\n\t\tt.Fatal(\"2+3 != 5\")\n\t}\n}\n\n\
         func TestSubprocess(t *testing.T) {\n\tout, err := exec.Command(\"/bin/echo\", \"from a test\").Output()\n\
         \tif err != nil || string(out) != \"from a test\\n\" {\n\t\tt.Fatalf(\"echo: %q %v\", out, err)\n\t}\n}\n",
    )
    .unwrap();
    let args = ["test", "-count=1", "-v", "sum.go", "sum_test.go"];
    let native =
        run(&go_cmd_env(Cmd::new(which("go")).args(args)).cwd(&dir).timeout(Duration::from_secs(120)), Mode::Native);
    assert!(native.status.success(), "native go test failed:\n{}\n{}", native.stdout_text(), native.stderr_text());
    let (out, commands) = go_under_stat(&dir, backend, &args);
    // Durations differ between runs: compare the lines without them.
    let strip = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.split(" (").next().unwrap_or(l).split('\t').take(2).collect::<Vec<_>>().join("\t"))
            .collect()
    };
    assert_eq!(
        (out.status, strip(&out.stdout_text())),
        (native.status, strip(&native.stdout_text())),
        "go test under usertrap stat ({}) differs from the native run\n--- stderr ---\n{}",
        backend,
        out.stderr_text()
    );
    for tool in ["go", "compile", "link", "vet", "echo"] {
        assert!(
            commands.iter().any(|c| c == tool),
            "go test under usertrap stat ({}): no report from `{}`; processes: {:?}",
            backend,
            tool,
            commands
        );
    }
    let _ = fs::remove_dir_all(&dir);
}

mod toolchain {
    use super::*;
    #[test]
    fn go_build_seccomp() {
        go_build(Backend::Seccomp);
    }
    #[test]
    fn go_build_sud() {
        go_build(Backend::Sud);
    }
    #[test]
    fn go_test_seccomp() {
        go_test(Backend::Seccomp);
    }
    #[test]
    fn go_test_sud() {
        go_test(Backend::Sud);
    }
}

/// `usertrap trace` of a Go program (issue 15). Recording on the fast path
/// used to crash Go programs (a corrupted goroutine stack in 5 of 5 runs):
/// it ran on the program's stack, deeper than a goroutine leaves. It now
/// runs on the thread's own stack where the CPU has FSGSBASE, and Go's
/// sites are patched there like any other: the program runs as natively,
/// most of its calls are recorded on the fast path, none dropped. Without
/// FSGSBASE its calls stay on the slow path (patch::reject::GoUnderTrace).
#[test]
fn a_go_program_under_usertrap_trace() {
    for flavor in [Flavor::Static, Flavor::Cgo] {
        let bin = build("exec_goroutines", flavor);
        let name = binary_name("exec_goroutines", flavor);
        let native = run_native(&Cmd::new(&bin).timeout(TIMEOUT));
        for backend in Backend::ALL {
            let dir = scratch_dir(&format!("go-trace-{name}"), backend);
            fresh_dir(&dir);
            let out = dir.join("trace.json");
            let cmd = Cmd::new(usertrap_cli())
                .args(["trace", "--format", "json", "--backend", backend.name(), "-o"])
                .arg(&out)
                .arg("--")
                .arg(&bin)
                .timeout(TIMEOUT);
            let traced = run_native(&cmd);
            assert_eq!(traced.status, native.status, "{name} ({backend}): status; stderr:\n{}", traced.stderr_text());
            assert_eq!(traced.stdout_text(), native.stdout_text(), "{name} ({backend}): stdout");
            let text = fs::read_to_string(&out).unwrap();
            let recs: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            let pid = recs
                .iter()
                .find(|r| r["type"] == "process" && r["command"].as_str().is_some_and(|c| c.ends_with(name.as_str())))
                .map(|r| r["pid"].clone())
                .unwrap_or_else(|| panic!("{name} ({backend}): no process named {name} in the trace"));
            let calls = recs.iter().filter(|r| r["type"] == "call" && r["pid"] == pid).count();
            assert!(calls > 100, "{name} ({backend}): {calls} calls of the Go process recorded");
            let fast = recs.iter().filter(|r| r["type"] == "call" && r["pid"] == pid && r["path"] == "fast").count();
            if cpu_has_fsgsbase() {
                assert!(fast * 2 > calls, "{name} ({backend}): only {fast} of {calls} calls on the fast path");
            } else {
                assert_eq!(fast, 0, "{name} ({backend}): Go code patched without FSGSBASE");
            }
            assert!(!recs.iter().any(|r| r["type"] == "dropped"), "{name} ({backend}): nothing dropped");
        }
    }
}

/// The CPU flag the fast path's stack switch needs (the kernel enables it
/// where the CPU has it, since 5.9).
fn cpu_has_fsgsbase() -> bool {
    fs::read_to_string("/proc/cpuinfo")
        .is_ok_and(|c| c.lines().any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "fsgsbase")))
}
