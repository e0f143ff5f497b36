//! The launcher itself (target/release/usertrap-launcher): what it must be
//! for an inherited seccomp filter to let it run, how it refuses to run on
//! its own, and what the library does when it is missing.

mod common;

use common::*;
use std::fs;
use std::process::Command;

fn launcher_path() -> std::path::PathBuf {
    let p = lib_path().with_file_name("usertrap-launcher");
    assert!(p.is_file(), "{} is missing: run `make` (it builds the launcher beside the library)", p.display());
    p
}

/// A static executable without a loader, and every `syscall` instruction in
/// it is in the gate segment (which it shares, at the same address, with the
/// library), except the library's bootstrap one, which the launcher never
/// takes (its gate exists from its first instruction). A syscall anywhere
/// else would kill it under an inherited filter.
#[test]
fn launcher_is_static_and_makes_syscalls_only_from_the_gate() {
    let l = launcher_path();
    let headers = Command::new(which("readelf")).args(["-lW"]).arg(&l).output().expect("readelf");
    let headers = String::from_utf8_lossy(&headers.stdout);
    assert!(headers.contains("Elf file type is EXEC"), "not a fixed-address executable:\n{headers}");
    assert!(!headers.contains("INTERP") && !headers.contains("DYNAMIC"), "not static:\n{headers}");
    let gate = headers
        .lines()
        .filter(|l| l.trim_start().starts_with("LOAD"))
        .any(|l| l.split_whitespace().nth(2) == Some("0x00007e9000000000"));
    assert!(gate, "no LOAD segment at the gate's address 0x7e9000000000:\n{headers}");

    let dis = Command::new(which("objdump")).args(["-d", "--no-show-raw-insn"]).arg(&l).output().expect("objdump");
    let dis = String::from_utf8_lossy(&dis.stdout);
    let (mut section, mut function) = (String::new(), String::new());
    let mut outside = Vec::new();
    let mut in_gate = 0;
    for line in dis.lines() {
        if let Some(s) = line.strip_prefix("Disassembly of section ") {
            section = s.trim_end_matches(':').to_string();
        } else if let Some(f) = line.strip_suffix(">:").and_then(|l| l.split_once(" <")).map(|(_, n)| n) {
            function = f.to_string();
        } else if line.split('\t').nth(1).is_some_and(|i| i.trim() == "syscall") {
            if section == ".usertrap_gate" {
                in_gate += 1;
            } else if function != "ut_bootstrap_syscall6" {
                outside.push(format!("{section} {function}: {}", line.trim()));
            }
        }
    }
    assert!(in_gate >= 3, "expected the gate's syscall instructions in .usertrap_gate, found {in_gate}");
    assert!(outside.is_empty(), "syscall instructions outside the gate:\n  {}", outside.join("\n  "));
}

#[test]
fn launcher_run_by_hand_says_what_it_is_for() {
    let out = Command::new(launcher_path()).arg("x").env_remove("USERTRAP_EXEC").output().expect("run the launcher");
    assert_eq!(out.status.code(), Some(127));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("usertrap: usertrap-launcher: no program to start:") && err.contains("USERTRAP_EXEC"),
        "{err}"
    );
}

/// The launcher's main function keeps a small stack frame: every page of it
/// is a fresh page of the launcher's .bss stack, touched by the stack probe
/// in every launched process (a page fault each). Its program-header tables
/// (up to 64 KiB each) live in .bss rooms, not in `Elf` values on the stack
/// (a 221 KiB frame, 54 faults per exec, before). Read from the prologue's
/// stack adjustments: `sub $N,%rsp`, and the probe loop's `sub $N,%r11`.
#[test]
fn launcher_main_frame_is_small() {
    let dis = Command::new(which("objdump"))
        .args(["-d", "--no-show-raw-insn", "--disassemble=ut_launcher_main"])
        .arg(launcher_path())
        .output()
        .expect("objdump");
    let dis = String::from_utf8_lossy(&dis.stdout);
    let body: Vec<&str> = dis.lines().skip_while(|l| !l.ends_with("<ut_launcher_main>:")).skip(1).take(40).collect();
    assert!(!body.is_empty(), "ut_launcher_main not found in the launcher's disassembly");
    let frame: u64 = body
        .iter()
        .filter_map(|l| {
            let ins = l.split('\t').nth(1)?.trim();
            let (op, rest) = ins.split_once(char::is_whitespace)?;
            let (imm, reg) = rest.trim().split_once(',')?;
            (op == "sub" && (reg == "%rsp" || reg == "%r11")).then_some(())?;
            u64::from_str_radix(imm.strip_prefix("$0x")?, 16).ok()
        })
        .sum();
    assert!(frame > 0, "no stack adjustment found in ut_launcher_main's prologue:\n{}", body.join("\n"));
    assert!(frame <= 64 * 1024, "ut_launcher_main's frame is {frame} bytes (at most 64 KiB):\n{}", body.join("\n"));
}

/// A copy of the library without the launcher beside it: under `sud` exec
/// falls back to the kernel (LD_PRELOAD carries the library on), under
/// `seccomp` it is refused with ENOSYS and a line that says why (the new
/// image would die of the filter).
#[test]
fn without_the_launcher_exec_falls_back_or_is_refused() {
    let dir = std::env::temp_dir().join(format!("usertrap-no-launcher-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let lib = dir.join("libusertrap.so");
    fs::copy(lib_path(), &lib).unwrap();
    let run = |backend: &str| {
        Command::new(which("sh"))
            .args(["-c", "/bin/echo child ran"])
            .env("LD_PRELOAD", &lib)
            .env("USERTRAP_BACKEND", backend)
            .env("USERTRAP_OUTPUT", "/dev/null")
            .output()
            .expect("sh")
    };
    let sud = run("sud");
    assert_eq!(String::from_utf8_lossy(&sud.stdout), "child ran\n", "{}", String::from_utf8_lossy(&sud.stderr));
    assert!(sud.status.success());
    let sec = run("seccomp");
    let err = String::from_utf8_lossy(&sec.stderr);
    assert!(!sec.status.success(), "the child cannot have run: {err}");
    assert!(sec.stdout.is_empty());
    assert!(err.contains("execve refused with ENOSYS") && err.contains("usertrap-launcher is missing"), "{err}");
    let _ = fs::remove_dir_all(&dir);
}

/// Issue 12/13: the loader's `mov $nr,%eax; syscall` sites are patched by
/// the launcher before the loader runs, so in every launched process each
/// of its calls there takes the fast path, the first included (before, the
/// launcher only bridged them: a SIGSYS each, about 30 per process).
/// `sh` runs two children (each exec'd through the launcher); the run is
/// the same as natively, and every loader site of the seed form (its bytes
/// in the loader's file) that was called has no slow call.
#[test]
fn loader_sites_take_the_fast_path_from_the_first_call() {
    let sh = which("sh");
    let script = "/bin/true; cat /dev/null; echo done";
    let native = run_native(&Cmd::new(&sh).args(["-c", script]));
    assert!(native.status.success(), "{}", native.stderr_text());
    let usertrap = repo_root().join("target/release/usertrap");
    for b in Backend::ALL {
        let dir = scratch_dir("loader-sites", b);
        fresh_dir(&dir);
        let out = dir.join("report.json");
        let cmd = Cmd::new(&usertrap)
            .args(["stat", "--json", "--backend", b.name(), "-o"])
            .arg(&out)
            .arg("--")
            .arg(&sh)
            .args(["-c", script]);
        let traced = run_native(&cmd);
        assert_eq!(traced.status, native.status, "{b}: {}", traced.stderr_text());
        assert_eq!(traced.stdout_text(), native.stdout_text(), "{b}: stdout");
        assert_eq!(traced.stderr_text(), native.stderr_text(), "{b}: stderr");
        let report: serde_json::Value = serde_json::from_str(&fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(report["processes"].as_array().map(Vec::len), Some(3), "{b}: sh and its two children");
        let mut seed_sites = 0;
        for s in report["sites"].as_array().expect("sites") {
            let object = s["object"].as_str().unwrap_or("");
            if !object.contains("/ld-linux") {
                continue;
            }
            // The `mov` and the `syscall` (at `offset`) in the loader's file.
            let file = fs::read(object).unwrap();
            let off = s["offset"].as_u64().unwrap() as usize;
            let bytes = &file[off - 5..off + 2];
            if bytes[0] != 0xb8 || bytes[5..] != [0x0f, 0x05] {
                continue; // another form: patched lazily by the library, if at all
            }
            seed_sites += 1;
            assert_eq!(s["slow_calls"], 0, "{b}: a loader call took the slow path: {s}");
            assert_eq!(s["fast_calls"], s["calls"], "{b}: {s}");
        }
        // mmap, mprotect, openat's neighbours (close, newfstatat, pread64,
        // access, munmap, brk, ...): the loader's calls in every process.
        assert!(seed_sites >= 5, "{b}: only {seed_sites} loader sites of the seed form were called");
    }
}
