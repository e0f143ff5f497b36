//! The fast path: sites really get patched, the race between patching and
//! threads running the site is survived many times over, and the code the
//! trampolines run leaves vector registers alone.

mod common;

use common::*;
use std::process::Command;

/// `usertrap: pid N: TOTAL syscalls intercepted (B), FAST on the fast path, ...`
fn fast_and_total(summary: &str) -> Option<(u64, u64)> {
    let rest = summary.strip_prefix("usertrap: pid ")?;
    let (_, rest) = rest.split_once(": ")?;
    let (total, rest) = rest.split_once(' ')?;
    let (_, rest) = rest.split_once("), ")?;
    let (fast, _) = rest.split_once(' ')?;
    Some((fast.parse().ok()?, total.parse().ok()?))
}

fn getppid_loop(backend: Backend, patch: &str) -> (u64, u64) {
    let cmd = Cmd::new(python3())
        .args(["-c", "import os\nfor _ in range(20000): os.getppid()"])
        .env("USERTRAP_SUMMARY", "1")
        .env("USERTRAP_PATCH", patch);
    let out = run_traced(&cmd, backend);
    assert!(out.status.success(), "python3 failed under {}: {}", backend, out.stderr_text());
    let line = out.stderr_text().lines().find(|l| l.starts_with("usertrap: pid ")).map(str::to_string);
    let line = line.unwrap_or_else(|| panic!("no summary line; stderr:\n{}", out.stderr_text()));
    fast_and_total(&line).unwrap_or_else(|| panic!("unparsable summary: {}", line))
}

fn sites_are_patched(backend: Backend) {
    let (fast, total) = getppid_loop(backend, "1");
    assert!(total >= 20000, "only {} syscalls intercepted", total);
    assert!(fast >= 19000, "only {} of {} calls took the fast path: getppid's site was not patched", fast, total);
    let (fast, total) = getppid_loop(backend, "0");
    assert_eq!(fast, 0, "USERTRAP_PATCH=0 still served {} of {} calls on the fast path", fast, total);
}

#[test]
fn sites_are_patched_seccomp() {
    sites_are_patched(Backend::Seccomp);
}

#[test]
fn sites_are_patched_sud() {
    sites_are_patched(Backend::Sud);
}

/// The number before `what` in a USERTRAP_SUMMARY line
/// ("usertrap: pid N: C syscalls intercepted (b), F on the fast path, P sites patched, ...").
fn summary_count(line: &str, what: &str) -> u64 {
    line.split(", ")
        .find_map(|part| part.strip_suffix(what)?.parse().ok())
        .unwrap_or_else(|| panic!("no '{}' in the summary: {}", what.trim(), line))
}

/// c_tests/many_sites.c: 10,000 distinct sites, more than one window holds.
fn many_sites_are_patched(backend: Backend) {
    let cmd = Cmd::new(c_test_binary("many_sites")).env("USERTRAP_SUMMARY", "1");
    let out = run_traced(&cmd, backend);
    assert!(out.status.success(), "many_sites failed under {}: {}{}", backend, out.stdout_text(), out.stderr_text());
    let line =
        out.stderr_text().lines().find(|l| l.starts_with("usertrap: pid ")).map(str::to_string).unwrap_or_default();
    let patched = summary_count(&line, " sites patched");
    assert!(patched >= 10_000, "only {} sites patched (10,000 distinct ones were run): {}", patched, line);
}

#[test]
fn many_sites_are_patched_seccomp() {
    many_sites_are_patched(Backend::Seccomp);
}

#[test]
fn many_sites_are_patched_sud() {
    many_sites_are_patched(Backend::Sud);
}

/// A static program (started by the launcher, linked without .eh_frame_hdr)
/// gets its sites patched too: 3,000 getppid calls, nearly all fast.
fn static_program_is_patched(backend: Backend) {
    let prog = c_test_binary("static_getppid_loop");
    let cmd = Cmd::sh(&format!("{} && echo done", prog.display())).env("USERTRAP_SUMMARY", "1");
    let out = run_traced(&cmd, backend);
    assert_eq!(out.stdout_text(), "getppid 3000 times: same every time\ndone\n", "{}", out.stderr_text());
    // The static program's summary is the one with over 3,000 calls.
    let line = out
        .stderr_text()
        .lines()
        .find(|l| {
            l.starts_with("usertrap: pid ")
                && l.split(": ")
                    .nth(2)
                    .and_then(|r| r.split(' ').next()?.parse::<u64>().ok())
                    .is_some_and(|n| n >= 3000)
        })
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no summary of the static program: {}", out.stderr_text()));
    let fast = summary_count(&line, " on the fast path");
    assert!(fast >= 2990, "only {} calls on the fast path: {}", fast, line);
}

#[test]
fn static_program_is_patched_seccomp() {
    static_program_is_patched(Backend::Seccomp);
}

#[test]
fn static_program_is_patched_sud() {
    static_program_is_patched(Backend::Sud);
}

/// The library's own memory cannot be unmapped or reprotected by the program.
fn own_memory_is_guarded(backend: Backend) {
    let script = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
for addr in (0x7e9000000000, 0x7f060000):
    print(libc.munmap(addr, 4096), ctypes.get_errno())
    print(libc.mprotect(addr, 4096, 0), ctypes.get_errno())
for _ in range(1000): os.getppid()
print('still running')
"#;
    let out = run_traced(&Cmd::new(python3()).args(["-c", script]), backend);
    assert_eq!(
        out.stdout_text(),
        "-1 22\n-1 22\n-1 22\n-1 22\nstill running\n",
        "munmap/mprotect of the gate (0x7e9000000000) and of the first slot window (0x7f060000) \
         must fail with EINVAL and the program keep running; stderr:\n{}",
        out.stderr_text()
    );
    assert!(out.stderr_text().lines().all(|l| l.starts_with("usertrap: ")), "stderr: {}", out.stderr_text());
}

#[test]
fn own_memory_is_guarded_seccomp() {
    own_memory_is_guarded(Backend::Seccomp);
}

#[test]
fn own_memory_is_guarded_sud() {
    own_memory_is_guarded(Backend::Sud);
}

/// c_tests/patch_race.c 200 times: 64 threads on one site while it is
/// patched, SIGALRM handlers calling the same site.
fn patch_race_many_times(backend: Backend) {
    let bin = c_test_binary("patch_race");
    let dir = scratch_dir("patch-race-200", backend);
    fresh_dir(&dir);
    let summary = dir.join("summary.txt");
    for run in 0..200 {
        let cmd = Cmd::new(&bin).cwd(&dir).env("USERTRAP_SUMMARY", &summary);
        let out = run_traced(&cmd, backend);
        assert!(
            out.status.success() && out.stdout_text().contains(": ok"),
            "run {} of patch_race under {} ended with {}:\n--- stdout ---\n{}--- stderr ---\n{}",
            run,
            backend,
            out.status,
            out.stdout_text(),
            out.stderr_text()
        );
    }
    // How often a thread was caught mid-patch (served by the SIGILL path):
    // reported, not asserted, since it depends on scheduling.
    let text = std::fs::read_to_string(&summary).unwrap_or_default();
    let faults: u64 =
        text.lines().filter_map(|l| l.rsplit_once(", ")?.1.strip_suffix(" site faults")?.parse::<u64>().ok()).sum();
    println!("patch_race x200 under {}: {} calls served at a half-patched site", backend, faults);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn patch_race_200_runs_seccomp() {
    patch_race_many_times(Backend::Seccomp);
}

#[test]
fn patch_race_200_runs_sud() {
    patch_race_many_times(Backend::Sud);
}

/// How far below the program's stack pointer the fast path may write, in
/// bytes, counted from the stack pointer the patched `syscall` ran with:
/// the red zone it steps over (128), its saved registers and flags, the
/// xmm0-15 save area (256) and ut_fast_dispatch's Rust frames. Measured by
/// c_tests/fast_path_stack.c when this test was written: 1008 bytes (both
/// backends, timing on or off, seed and Form R sites, either alignment; the
/// library then built on main: 992).
///
/// Why there is a budget at all: a native `syscall` uses no user stack, and
/// Go counts on it. Go 1.19 (runtime/stack.go):
///   `_StackGuard = 928*sys.StackGuardMultiplier + _StackSystem` (928 on Linux),
///   `_StackSmall = 128`, `_StackLimit = _StackGuard - _StackSystem - _StackSmall` (800);
/// newer Go (runtime/stack.go, internal/abi/stack.go), the same figures:
///   `stackGuard = stackNosplit + stackSystem + abi.StackSmall`,
///   `StackNosplitBase = 800`, `StackSmall = 128`.
/// A function that passed its stack check may sit StackSmall below the guard
/// (928 above the stack's bottom), so all Go promises below its stack
/// pointer is 800 bytes, for the whole NOSPLIT chain it then calls.
/// syscall.Syscall (nosplit, frame 0x68), syscall.RawSyscall6 (nosplit,
/// frame 0x40) and runtime/internal/syscall.Syscall6 (asm, NOSPLIT, $0) use
/// 192 of them, return addresses included, before its SYSCALL (Go 1.19 here;
/// through syscall.Syscall6, frame 0x80: 216). At that instruction only 608
/// bytes (584) are certain to belong to the goroutine; below them lies the
/// top of another goroutine's stack. So the fast path moves to a stack of its
/// own (ut_fast_entry, ThreadArea::fast_top) right after its first steps: on
/// the program's stack it only steps over the red zone and pushes the return
/// address, the flags and the program's registers (for stack scanners), 240
/// bytes below the stack pointer (112 written).
/// Before that move it wrote 1008 bytes below it (3352-3392 with a hook);
/// 64 more made tests/go.rs exec_goroutines crash 8 runs in 10.
const FAST_PATH_STACK_BUDGET: u64 = 240;

/// With a hook installed the fast path saves the whole XSAVE state and calls
/// the hook, on its own stack too: the program's stack sees the same 240
/// bytes (before the move: 3352-3392 with a 2432-byte XSAVE area).
fn hooked_fast_path_stack_budget() -> u64 {
    FAST_PATH_STACK_BUDGET
}

/// c_tests/fast_path_stack.c --depths under the library: the deepest byte
/// the fast path writes below the stack pointer of a patched `syscall`
/// (seed form, Form R, glibc's syscall(3)), with timing on and off, without
/// and with a hook, stays within the budget. Each depth must also be
/// non-zero: a call that never reached the fast path (site not patched)
/// writes nothing and would prove nothing.
fn fast_path_stack_depth_is_within_budget(backend: Backend) {
    let hooked_budget = hooked_fast_path_stack_budget();
    for timing in ["1", "0"] {
        let cmd = Cmd::new(c_test_binary("fast_path_stack")).args(["--depths"]).env("USERTRAP_TIMING", timing);
        let out = run_traced(&cmd, backend);
        let text = out.stdout_text();
        assert!(
            out.status.success() && text.ends_with("result: all ok\n"),
            "fast_path_stack under {} (USERTRAP_TIMING={}) failed:\n{}{}",
            backend,
            timing,
            text,
            out.stderr_text()
        );
        let mut seen = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("depth ") else { continue };
            let f: Vec<&str> = rest.split(' ').collect();
            assert_eq!(f.len(), 3, "bad line: {}", line);
            let depth: u64 = f[2].parse().unwrap_or_else(|_| panic!("bad depth: {}", line));
            let budget = if f[1] == "none" { FAST_PATH_STACK_BUDGET } else { hooked_budget };
            println!("{} timing={} site {} hook {}: {} bytes (budget {})", backend, timing, f[0], f[1], depth, budget);
            assert!(
                depth > 0,
                "{} (USERTRAP_TIMING={}): the {} site with hook {} wrote nothing below its stack pointer: \
                 the call did not take the fast path, so this test measured nothing",
                backend,
                timing,
                f[0],
                f[1]
            );
            assert!(
                depth <= budget,
                "{} (USERTRAP_TIMING={}): the fast path wrote {} bytes below the stack pointer of the {} site \
                 (hook {}), over its budget of {}: Go promises at most 800 bytes below a checked \
                 function's stack pointer (see FAST_PATH_STACK_BUDGET): ut_fast_entry must move to the \
                 thread's fast-path stack right after its first pushes",
                backend,
                timing,
                depth,
                f[0],
                f[1],
                budget
            );
            seen.push(format!("{}/{}", f[0], f[1]));
        }
        assert_eq!(
            seen,
            ["seed/none", "range/none", "glibc/none", "seed/before", "range/before", "glibc/before"],
            "fast_path_stack printed other depths than expected:\n{}",
            text
        );
    }
}

#[test]
fn fast_path_stack_depth_is_within_budget_seccomp() {
    fast_path_stack_depth_is_within_budget(Backend::Seccomp);
}

#[test]
fn fast_path_stack_depth_is_within_budget_sud() {
    fast_path_stack_depth_is_within_budget(Backend::Sud);
}

/// Register and vector instructions in the disassembly of `function` and of
/// every function of the library it calls or jumps to.
/// `relocs` is `objdump -R`: a call through a GOT slot (`call *X(%rip)`,
/// shown as `# addr <...>`) is followed to the function its
/// R_X86_64_RELATIVE relocation points at; a slot bound to an imported symbol
/// is reported as such.
/// Functions the fast path may call that never return: they end the
/// process (exit_group) after writing a line, and may use anything.
const ENDS_THE_PROCESS: [&str; 4] = [
    "usertrap::rt::thread::out_of_memory",
    "usertrap::rt::thread::foreign_gs_base",
    // exit and exit_group (and the report before them) on the fast path:
    // the thread, or the process, ends.
    "usertrap::trap::dispatch::exit_thread",
    "usertrap::trap::dispatch::exit_process",
];

fn reachable_vector_uses(objdump: &str, relocs: &str, root: &str) -> (Vec<String>, Vec<String>) {
    use std::collections::{BTreeMap, BTreeSet};
    // Split the disassembly into functions: "0000000000012340 <name>:".
    // Functions are keyed "name@address": Rust gives several closures the
    // same demangled name.
    let mut funcs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut by_addr: BTreeMap<u64, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in objdump.lines() {
        if let Some((addr, name)) = line.strip_suffix(">:").and_then(|l| l.split_once(" <")) {
            let Ok(a) = u64::from_str_radix(addr.trim(), 16) else { continue };
            let key = format!("{}@{:x}", name, a);
            by_addr.insert(a, key.clone());
            current = Some(key.clone());
            funcs.entry(key).or_default();
        } else if let Some(f) = &current {
            if line.starts_with(' ') {
                if let Some(v) = funcs.get_mut(f) {
                    v.push(line.to_string());
                }
            }
        }
    }
    // xmm0-15 may be used (ut_fast_entry saves them around the Rust call);
    // nothing else: AVX/AVX-512 state, mask registers, x87, MMX, MXCSR.
    let vector = [
        "%ymm", "%zmm", "%st", "%mm", "%k0", "%k1", "%k2", "%k3", "%k4", "%k5", "%k6", "%k7", "mxcsr", "fxsave",
        "fxrstor", "xsave", "xrstor", "vzero", "emms",
    ];
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = funcs.keys().filter(|k| k.split('@').next() == Some(root)).cloned().collect();
    let mut bad = Vec::new();
    let mut visited = Vec::new();
    while let Some(f) = todo.pop() {
        if !seen.insert(f.clone()) {
            continue;
        }
        // Hooks run only after ut_fast_entry saved the whole XSAVE state (its
        // argument 4); their code, and the hooks' own, may use anything.
        if f.starts_with("usertrap::hooks::call_hooks@") {
            visited.push(format!("{} (after XSAVE)", f));
            continue;
        }
        // They end the process (exit_group, after a message): no register
        // of the program's is used again.
        if ENDS_THE_PROCESS.iter().any(|e| f.starts_with(&format!("{}@", e))) {
            visited.push(format!("{} (ends the process)", f));
            continue;
        }
        let Some(body) = funcs.get(&f) else {
            bad.push(format!("{}: not found in the disassembly", f));
            continue;
        };
        visited.push(f.clone());
        for ins in body {
            // The save and restore themselves, on the hooks' branch.
            let protection = f.starts_with("ut_fast_entry@")
                && (ins.contains("xsave64 (%rsp)")
                    || ins.contains("xrstor64 (%rsp)")
                    || ins.contains("<ut_xsave_size>"));
            if (vector.iter().any(|v| ins.contains(v)) || touches_unsaved_xmm(ins)) && !protection {
                bad.push(format!("{}: {}", f, ins.trim()));
            }
            let is_branch =
                ins.contains("\tcall") || ins.contains("\tjmp") || ins.contains(" call") || ins.contains(" jmp");
            // Through a GOT slot: "call *0x1eb3f(%rip)  # 3e7c0 <_DYNAMIC+0x288>".
            if is_branch && ins.contains("*0x") && ins.contains("(%rip)") {
                let slot = ins
                    .rsplit_once('#')
                    .and_then(|(_, c)| c.split_whitespace().next())
                    .and_then(|a| u64::from_str_radix(a, 16).ok());
                let target = slot.and_then(|slot| {
                    relocs.lines().find_map(|r| {
                        let mut w = r.split_whitespace();
                        let at = u64::from_str_radix(w.next()?, 16).ok()?;
                        let kind = w.next()?;
                        let value = w.next()?;
                        if at != slot {
                            return None;
                        }
                        if kind == "R_X86_64_RELATIVE" {
                            let addr = u64::from_str_radix(value.trim_start_matches("*ABS*+0x"), 16).ok()?;
                            Some(by_addr.get(&addr).cloned().unwrap_or_else(|| format!("code at {:#x}", addr)))
                        } else {
                            // Bound to a symbol: ours (exported, called
                            // through the PLT) or really imported.
                            let sym = value.split('@').next().unwrap_or(value);
                            let ours = by_addr.values().find(|k| k.split('@').next() == Some(sym)).cloned();
                            Some(ours.unwrap_or_else(|| format!("imported {}", value)))
                        }
                    })
                });
                match target {
                    Some(name) => todo.push(name),
                    None => bad.push(format!("{}: indirect branch through an unknown slot: {}", f, ins.trim())),
                }
                if f.contains("@plt") {
                    // The rest of a PLT entry is lazy binding, which never
                    // runs in a library bound at load time (-z now, checked
                    // by the caller).
                    break;
                }
                continue;
            }
            // Direct calls and jumps to another function: "call 1234 <name>"
            // (jumps inside the function carry "+offset").
            if is_branch {
                if let Some((_, target)) = ins.rsplit_once('<') {
                    let label = target.trim_end_matches('>');
                    if !label.contains('+') {
                        let addr = ins
                            .split('\t')
                            .nth(1)
                            .and_then(|op| op.split_whitespace().nth(1))
                            .and_then(|a| u64::from_str_radix(a, 16).ok());
                        match addr.and_then(|a| by_addr.get(&a)) {
                            Some(key) => todo.push(key.clone()),
                            None => bad.push(format!("{}: call to something outside the library: {}", f, ins.trim())),
                        }
                    }
                }
            }
        }
    }
    (bad, visited)
}

/// xmm16-31 (AVX-512 only), or any VEX/EVEX-encoded instruction on an xmm
/// register (it zeroes the upper ymm/zmm bits): neither is saved by
/// ut_fast_entry.
fn touches_unsaved_xmm(ins: &str) -> bool {
    let mnemonic = ins.split('\t').nth(1).unwrap_or("").trim();
    let mut rest = ins;
    let mut any_xmm = false;
    while let Some(i) = rest.find("%xmm") {
        rest = &rest[i + 4..];
        any_xmm = true;
        let n: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if n.parse::<u32>().map_or(true, |n| n >= 16) {
            return true;
        }
    }
    any_xmm && mnemonic.starts_with('v')
}

#[test]
fn fast_entry_saves_xmm0_to_15() {
    let out =
        Command::new(which("objdump")).args(["-d", "--no-show-raw-insn"]).arg(lib_path()).output().expect("objdump");
    let text = String::from_utf8_lossy(&out.stdout);
    let body: Vec<&str> =
        text.lines().skip_while(|l| !l.ends_with("<ut_fast_entry>:")).take_while(|l| !l.is_empty()).collect();
    assert!(!body.is_empty(), "ut_fast_entry not found");
    for i in 0..16 {
        let reg = format!("%xmm{},", i);
        let saved = body.iter().any(|l| l.contains("movaps") && l.contains(&reg) && l.contains("(%rsp)"));
        let restored = body.iter().any(|l| {
            l.contains("movaps")
                && l.contains(&format!("(%rsp),%xmm{}", i))
                && l.trim_end().ends_with(&format!("%xmm{}", i))
        });
        assert!(saved && restored, "ut_fast_entry must save and restore xmm{} around the Rust call", i);
    }
}

#[test]
fn fast_path_uses_no_vector_registers() {
    let lib = lib_path();
    let out =
        Command::new(which("objdump")).args(["-d", "--no-show-raw-insn", "-C"]).arg(&lib).output().expect("objdump");
    assert!(out.status.success(), "objdump failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let relocs = Command::new(which("objdump")).arg("-R").arg(&lib).output().expect("objdump -R");
    let relocs = String::from_utf8_lossy(&relocs.stdout);
    // Bound at load time: the lazy-binding tail of a PLT entry never runs
    // (reachable_vector_uses stops at a PLT entry's jump through its slot).
    let dynamic = Command::new(which("objdump")).arg("-p").arg(&lib).output().expect("objdump -p");
    let dynamic = String::from_utf8_lossy(&dynamic.stdout);
    assert!(
        dynamic.lines().any(|l| {
            // "FLAGS_1  0x0000000000000001": DF_1_NOW is bit 0.
            let mut w = l.split_whitespace();
            w.next() == Some("FLAGS_1")
                && w.next()
                    .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
                    .is_some_and(|v| v & 1 != 0)
        }),
        "{} is not linked with -z now",
        lib.display()
    );
    for root in ["ut_fast_entry", "ut_fast_dispatch"] {
        let (bad, visited) = reachable_vector_uses(&text, &relocs, root);
        assert!(!visited.is_empty(), "{} not in the library", root);
        println!("{}: checked {:?}", root, visited);
        assert!(
            bad.is_empty(),
            "the fast path must leave every vector/FPU register as the program had it, but code \
             reachable from {} touches them (or calls something unknown):\n  {}\nreachable: {:?}",
            root,
            bad.join("\n  "),
            visited
        );
    }
}

/// (calls, fast calls) summed over the entries of list `list` ("syscalls"
/// or "sites") that `pick` accepts, in the JSON reports in `dir` of
/// processes whose command is `command`.
fn counted_in_reports(
    dir: &std::path::Path,
    command: &str,
    list: &str,
    pick: impl Fn(&serde_json::Value) -> bool,
) -> (u64, u64) {
    let (mut calls, mut fast) = (0, 0);
    for (path, text) in report_files(dir) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let r: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: not JSON ({}): {}", path.display(), e, line));
            if r["command"].as_str() != Some(command) {
                continue;
            }
            for s in r[list].as_array().into_iter().flatten().filter(|s| pick(s)) {
                calls += s["calls"].as_u64().unwrap_or(0);
                fast += s["fast_calls"].as_u64().unwrap_or(0);
            }
        }
    }
    (calls, fast)
}

/// (calls, fast calls) of syscall `name` in the JSON reports in `dir` of
/// processes whose command is `command` (summed).
fn calls_in_reports(dir: &std::path::Path, command: &str, name: &str) -> (u64, u64) {
    counted_in_reports(dir, command, "syscalls", |s| s["name"].as_str() == Some(name))
}

/// (calls, fast calls) of syscall `name` at the sites of the object whose
/// path ends with `object`, over the reports of `command` in `dir`.
fn site_calls_in_reports(dir: &std::path::Path, command: &str, object: &str, name: &str) -> (u64, u64) {
    counted_in_reports(dir, command, "sites", |s| {
        s["name"].as_str() == Some(name) && s["object"].as_str().is_some_and(|o| o.ends_with(object))
    })
}

/// dd with 1-byte blocks: glibc's `read` is `xor %eax,%eax; syscall` (Form P,
/// a jump to the dead padding after its `ret`); nearly every read is fast.
fn dd_reads_are_fast(backend: Backend) {
    let dir = fresh_reports_dir("dd_reads_are_fast", backend);
    let cmd = with_json_reports(Cmd::sh("dd if=/dev/zero of=/dev/null bs=1 count=20000 2>/dev/null"), &dir);
    let out = run_traced(&cmd, backend);
    assert!(out.status.success(), "dd failed under {}: {}", backend, out.stderr_text());
    let (calls, fast) = calls_in_reports(&dir, "dd", "read");
    assert!(calls >= 20000, "only {} reads of dd reported", calls);
    assert!(fast + 10 >= calls, "only {} of dd's {} reads took the fast path", fast, calls);
}

#[test]
fn dd_reads_are_fast_seccomp() {
    dd_reads_are_fast(Backend::Seccomp);
}

#[test]
fn dd_reads_are_fast_sud() {
    dd_reads_are_fast(Backend::Sud);
}

/// A seed after a Form R site of the same function (c_tests/seed_after_form.c;
/// glibc's start_thread has one, with rt_sigprocmask and rseq behind it):
/// once the range is patched, the seed's proof decodes the range's original
/// instructions, not the jump written over them, and the seed is patched too.
fn seed_after_a_patched_range(backend: Backend) {
    let dir = fresh_reports_dir("seed_after_a_patched_range", backend);
    let cmd = with_json_reports(Cmd::new(c_test_binary("seed_after_form")), &dir);
    let out = run_traced(&cmd, backend);
    assert_eq!(out.stdout_text(), "seed_after_form: ok\n", "{}", out.stderr_text());
    for name in ["getppid", "getuid"] {
        let (calls, fast) = site_calls_in_reports(&dir, "seed_after_form", "/seed_after_form", name);
        assert!(calls >= 1000, "only {} {} calls of the program's own site reported", calls, name);
        assert!(fast + 1 >= calls, "only {} of {} {} calls at the program's own site were fast", fast, calls, name);
    }
}

#[test]
fn seed_after_a_patched_range_seccomp() {
    seed_after_a_patched_range(Backend::Seccomp);
}

#[test]
fn seed_after_a_patched_range_sud() {
    seed_after_a_patched_range(Backend::Sud);
}

/// Python threads passing 20,000 items through queue.Queue: futex (glibc's
/// `mov $0xca,%eax; xor $0x81,%sil; syscall`: Form R) is fast but for each
/// site's first call; python's reads (the cancellable wrapper's `read`) too.
fn python_queue_is_fast(backend: Backend) {
    let dir = fresh_reports_dir("python_queue_is_fast", backend);
    let script = "import threading, queue\nq = queue.Queue()\ndef prod():\n    for i in range(20000): q.put(i)\n    \
                  q.put(None)\nt = threading.Thread(target=prod); t.start()\nn = 0\nwhile q.get() is not None: n += 1\n\
                  t.join(); print(n)\n";
    let cmd = with_json_reports(Cmd::new(python3()).args(["-c", script]), &dir);
    let out = run_traced(&cmd, backend);
    assert_eq!(out.stdout_text(), "20000\n", "{}", out.stderr_text());
    let (calls, fast) = calls_in_reports(&dir, "python3", "futex");
    assert!(fast + 20 >= calls, "only {} of python's {} futex calls took the fast path", fast, calls);
    let (calls, fast) = calls_in_reports(&dir, "python3", "read");
    assert!(calls >= 20 && fast * 2 >= calls, "only {} of python's {} reads took the fast path", fast, calls);
    // The loader's read (`xor %eax,%eax; syscall`, no room for a pad in its
    // own function: Form P into the padding before it), called for each
    // extension module python loads after our constructor: all but the
    // first call fast.
    let (calls, fast) = site_calls_in_reports(&dir, "python3", "/ld-linux-x86-64.so.2", "read");
    assert!(calls >= 5 && fast + 1 >= calls, "only {} of the loader's {} reads took the fast path", fast, calls);
}

#[test]
fn python_queue_is_fast_seccomp() {
    python_queue_is_fast(Backend::Seccomp);
}

#[test]
fn python_queue_is_fast_sud() {
    python_queue_is_fast(Backend::Sud);
}

/// bash with subshells and command substitutions: its signal calls
/// (rt_sigprocmask and rt_sigaction around every fork, 23 a round) are
/// emulated on the fast path once their sites are patched, as are a
/// posix_spawn child's. Natively and traced the output is the same.
fn bash_signal_calls_are_fast(backend: Backend) {
    let dir = fresh_reports_dir("bash_signal_calls_are_fast", backend);
    let script = "n=0; for i in $(seq 1 40); do (n=$((n+i))); x=$(echo $i); n=$((n+x)); done; echo $n";
    let case =
        Case::new("bash-signal-calls").step(with_json_reports(Cmd::new(which("bash")).args(["-c", script]), &dir));
    compare_native_and_traced(&case, backend);
    for name in ["rt_sigprocmask", "rt_sigaction"] {
        let (calls, fast) = calls_in_reports(&dir, "bash", name);
        assert!(calls >= 400, "only {} {} calls of bash reported", calls, name);
        // A site's first call traps; in a fork child that has not called it
        // before, again: at most a few per process.
        assert!(fast * 10 >= calls * 9, "only {} of bash's {} {} calls took the fast path", fast, calls, name);
    }
}

/// glibc's `_Fork` calls `set_robust_list` in the child's branch only, once
/// in every fork child, at a site its parent never runs: the library
/// patches it in the parent before the fork (install::patch_fork_child_sites),
/// so no fork child's call is slow. Natively and traced the output is the same.
fn fork_childs_first_call_is_fast(backend: Backend) {
    let dir = fresh_reports_dir("fork_childs_first_call_is_fast", backend);
    let script = "n=0; for i in $(seq 1 30); do (n=$((n+i))); done; echo $n";
    let case =
        Case::new("bash-fork-children").step(with_json_reports(Cmd::new(which("bash")).args(["-c", script]), &dir));
    compare_native_and_traced(&case, backend);
    let (calls, fast) = site_calls_in_reports(&dir, "bash", "/libc.so.6", "set_robust_list");
    assert!(calls >= 31, "only {} set_robust_list calls of bash's fork children reported", calls);
    assert_eq!(fast, calls, "{} of the fork children's {} set_robust_list calls were slow", calls - fast, calls);
}

#[test]
fn fork_childs_first_call_is_fast_seccomp() {
    fork_childs_first_call_is_fast(Backend::Seccomp);
}

#[test]
fn fork_childs_first_call_is_fast_sud() {
    fork_childs_first_call_is_fast(Backend::Sud);
}

#[test]
fn bash_signal_calls_are_fast_seccomp() {
    bash_signal_calls_are_fast(Backend::Seccomp);
}

#[test]
fn bash_signal_calls_are_fast_sud() {
    bash_signal_calls_are_fast(Backend::Sud);
}

/// (calls, fast calls) of syscall `name` in the JSON reports in `dir` of
/// processes whose command is `command`, each file's last report only (an
/// image writes one at every exec attempt that reaches the launcher, each
/// with the figures so far, and the last at its end).
fn final_calls_in_reports(dir: &std::path::Path, command: &str, name: &str) -> (u64, u64) {
    let (mut calls, mut fast) = (0, 0);
    for (path, text) in report_files(dir) {
        let Some(line) = text.lines().rfind(|l| !l.trim().is_empty()) else { continue };
        let r: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: not JSON ({}): {}", path.display(), e, line));
        if r["command"].as_str() != Some(command) {
            continue;
        }
        for s in r["syscalls"].as_array().into_iter().flatten().filter(|s| s["name"].as_str() == Some(name)) {
            calls += s["calls"].as_u64().unwrap_or(0);
            fast += s["fast_calls"].as_u64().unwrap_or(0);
        }
    }
    (calls, fast)
}

/// Where the slow calls of syscall `name` were made, for a failure's
/// message: each report file's last report of `command`, each site with
/// slow calls as "file: address (object+offset) fast/slow", and the
/// image's sites left unpatched with their reasons.
fn slow_sites_in_reports(dir: &std::path::Path, command: &str, name: &str) -> String {
    let mut out = String::new();
    for (path, text) in report_files(dir) {
        let Some(line) = text.lines().rfind(|l| !l.trim().is_empty()) else { continue };
        let Ok(r) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if r["command"].as_str() != Some(command) {
            continue;
        }
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        for s in r["sites"].as_array().into_iter().flatten() {
            if s["name"].as_str() == Some(name) && s["slow_calls"].as_u64().unwrap_or(0) > 0 {
                out += &format!(
                    "{}: {} ({}+{}) fast {} slow {}\n",
                    file, s["address"], s["object"], s["offset"], s["fast_calls"], s["slow_calls"]
                );
            }
        }
        for u in r["unpatched_sites"].as_array().into_iter().flatten() {
            if u["name"].as_str() == Some(name) {
                out += &format!("{}: unpatched {} ({})\n", file, u["address"], u["reason"]);
            }
        }
    }
    out
}

/// c_tests/fast_emulated.c: emulated calls made again and again from
/// patched sites take their fast versions (trap::syscalls::fast):
/// arch_prctl, the execve/execveat attempts that fail before the file is
/// opened, exit and exit_group (in fork children that inherit the patched
/// syscall(3)); the program's output is the native one.
fn emulated_calls_take_the_fast_path(backend: Backend) {
    let dir = fresh_reports_dir("emulated_calls_take_the_fast_path", backend);
    let case = Case::new("fast-emulated").step(with_json_reports(Cmd::new(c_test_binary("fast_emulated")), &dir));
    compare_native_and_traced(&case, backend);
    // (name, fast calls at least): three rounds of six arch_prctl, the
    // first at each site slow; six failing cases of six execve at two
    // sites, the first at the asm site slow; four execveat cases of three
    // calls, three of them decided before the open; four threads and a
    // main thread, then two threads, exiting; one exit_group.
    // The children end through the fast exits: each image's report is
    // written once, with how it ended as natively (the first image also
    // writes one at each exec attempt that reaches the launcher).
    let mut ends = Vec::new();
    for (path, text) in report_files(&dir) {
        let reports: Vec<serde_json::Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: not JSON ({}): {}", path.display(), e, l)))
            .collect();
        let Some(last) = reports.last() else { continue };
        let how = last["exit"]["how"].as_str().unwrap_or("?").to_string();
        if how != "exec" {
            assert_eq!(
                reports.len(),
                1,
                "{}: {} reports of one image that ended by {}",
                path.display(),
                reports.len(),
                how
            );
            ends.push((how, last["exit"]["status"].as_i64().unwrap_or(-1)));
        }
    }
    ends.sort();
    let expected = [("exit", 7), ("exit", 9), ("exit_group", 0), ("exit_group", 42)];
    assert_eq!(ends, expected.map(|(h, s)| (h.to_string(), s)), "how the images ended, by their reports");
    for (name, at_least) in [("arch_prctl", 16), ("execve", 34), ("execveat", 8), ("exit", 7), ("exit_group", 1)] {
        let (calls, fast) = final_calls_in_reports(&dir, "fast_emulated", name);
        assert!(
            fast >= at_least,
            "only {} of {} {} calls of fast_emulated took the fast path (expected at least {}); slow at:\n{}",
            fast,
            calls,
            name,
            at_least,
            slow_sites_in_reports(&dir, "fast_emulated", name)
        );
    }
}

/// c_tests/temp_mask_waits.c: pselect6, ppoll, epoll_pwait and
/// rt_sigsuspend, each made 41 times from one libc site, take the fast path
/// after the site's first call (signals::fast::with_temp_mask) but for the
/// one that an owned signal held back for the program ends at once (the
/// slow path delivers it), with the program's output the native one: the
/// handler that ends each wait runs with the wait's temporary mask.
fn temp_mask_waits_take_the_fast_path(backend: Backend) {
    let dir = fresh_reports_dir("temp_mask_waits_take_the_fast_path", backend);
    let case = Case::new("temp-mask-waits").step(with_json_reports(Cmd::new(c_test_binary("temp_mask_waits")), &dir));
    compare_native_and_traced(&case, backend);
    for name in ["pselect6", "ppoll", "epoll_pwait", "rt_sigsuspend"] {
        let (calls, fast) = final_calls_in_reports(&dir, "temp_mask_waits", name);
        assert!(
            calls == 41 && fast >= 39,
            "only {} of {} {} calls of temp_mask_waits took the fast path (expected 39 of 41); slow at:\n{}",
            fast,
            calls,
            name,
            slow_sites_in_reports(&dir, "temp_mask_waits", name)
        );
    }
}

#[test]
fn temp_mask_waits_take_the_fast_path_seccomp() {
    temp_mask_waits_take_the_fast_path(Backend::Seccomp);
}

#[test]
fn temp_mask_waits_take_the_fast_path_sud() {
    temp_mask_waits_take_the_fast_path(Backend::Sud);
}

#[test]
fn emulated_calls_take_the_fast_path_seccomp() {
    emulated_calls_take_the_fast_path(Backend::Seccomp);
}

#[test]
fn emulated_calls_take_the_fast_path_sud() {
    emulated_calls_take_the_fast_path(Backend::Sud);
}
