//! `usertrap stat` with the real library: every process's report reaches
//! the collector whatever the process did to its user, root or descriptors,
//! the processes that did not report are named, and nothing of usertrap's
//! lands in the program's own output (issue 9, item 3). Each command also
//! runs natively: stdout, stderr and status must be the same.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};

fn usertrap_bin() -> PathBuf {
    let p = repo_root().join("target/release/usertrap");
    assert!(p.is_file(), "{} is missing: run `make`", p.display());
    p
}

/// Runs `argv` natively, then under `usertrap stat -f --backend B -o FILE`;
/// panics unless both runs printed and ended the same. Returns the text
/// aggregate.
fn stat_vs_native(case: &str, backend: Backend, argv: &[&str], setup: impl Fn(&Path)) -> String {
    stat_vs_native_with(&usertrap_bin(), case, backend, argv, setup)
}

/// `stat_vs_native` with the `usertrap` command at `bin` (the library and
/// the launcher beside it).
fn stat_vs_native_with(bin: &Path, case: &str, backend: Backend, argv: &[&str], setup: impl Fn(&Path)) -> String {
    let dir = scratch_dir(case, backend);
    fresh_dir(&dir);
    setup(&dir);
    let native = run_native(&Cmd::new(argv[0]).args(&argv[1..]).cwd(&dir));
    fresh_dir(&dir);
    setup(&dir);
    let agg = dir.with_extension("aggregate.txt");
    let cmd =
        Cmd::new(bin).args(["stat", "-f", "--backend", backend.name(), "-o"]).arg(&agg).arg("--").args(argv).cwd(&dir);
    let traced = run_native(&cmd);
    assert_eq!(traced.status, native.status, "{case} ({backend}): status; stderr:\n{}", traced.stderr_text());
    assert_eq!(traced.stdout_text(), native.stdout_text(), "{case} ({backend}): stdout");
    assert_eq!(traced.stderr_text(), native.stderr_text(), "{case} ({backend}): stderr (nothing of usertrap's)");
    let text = fs::read_to_string(&agg).unwrap();
    let _ = fs::remove_file(&agg);
    text
}

/// The command names of the per-process headers ("usertrap: pid N (ls), ...").
fn reported(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("usertrap: pid "))
        .filter_map(|l| Some(l.split_once(" (")?.1.split_once("), ")?.0.to_string()))
        .collect()
}

#[test]
fn a_user_switch_still_reports() {
    if !is_root() {
        println!("SKIPPED: not root (runuser needs root)");
        return;
    }
    for b in Backend::ALL {
        let text = stat_vs_native(
            "collect-runuser",
            b,
            &["runuser", "-u", "nobody", "--", "sh", "-c", "ls / >/dev/null; id -un"],
            |_| {},
        );
        let names = reported(&text);
        for want in ["runuser", "sh", "ls", "id"] {
            assert!(names.iter().any(|n| n == want), "{b}: no report from {want}:\n{text}");
        }
        assert!(!text.contains("did not report"), "{b}:\n{text}");
    }
}

/// The same from a checkout other users cannot reach (a home directory of
/// mode 0700): the user the program switches to still execs through the
/// launcher and preloads the library (the command runs copies of them).
#[test]
fn a_user_switch_from_a_private_directory_still_runs() {
    use std::os::unix::fs::PermissionsExt;
    if !is_root() {
        println!("SKIPPED: not root (runuser needs root)");
        return;
    }
    let private = scratch_dir("collect-private-install", Backend::ALL[0]).with_extension("install");
    fresh_dir(&private);
    let inner = private.join("bin");
    fs::create_dir(&inner).unwrap();
    for name in ["usertrap", "libusertrap.so", "usertrap-launcher"] {
        fs::copy(repo_root().join("target/release").join(name), inner.join(name)).unwrap();
    }
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    for b in Backend::ALL {
        let text = stat_vs_native_with(
            &inner.join("usertrap"),
            "collect-runuser-private",
            b,
            &["runuser", "-u", "nobody", "--", "sh", "-c", "ls / >/dev/null; id -un"],
            |_| {},
        );
        let names = reported(&text);
        for want in ["runuser", "sh", "ls", "id"] {
            assert!(names.iter().any(|n| n == want), "{b}: no report from {want}:\n{text}");
        }
    }
    let _ = fs::remove_dir_all(&private);
}

/// Double fork, setsid, chdir /, umask 0777, every descriptor closed and
/// (as root) a chroot into an empty directory: the daemon still reports.
#[test]
fn a_daemon_that_closes_everything_still_reports() {
    for b in Backend::ALL {
        let prog = c_test_binary("daemon_closes_all");
        let prog = prog.to_str().unwrap();
        let text = stat_vs_native("collect-daemon", b, &[prog, "empty"], |d| fs::create_dir(d.join("empty")).unwrap());
        let names = reported(&text);
        assert_eq!(names.len(), 3, "{b}: the parent, the middle child and the daemon:\n{text}");
        assert!(names.iter().all(|n| n == "daemon_closes_a"), "{b}:\n{text}");
        assert!(!text.contains("did not report"), "{b}:\n{text}");
    }
}

/// A signal whose SA_RESETHAND handler ran once, raised again: its default
/// action ends the process, which reports first (the kernel had reset the
/// action the library gave it to SIG_DFL, and the second one ended the
/// process without a report).
#[test]
fn death_by_a_one_shot_handlers_signal_reports() {
    for b in Backend::ALL {
        let prog = c_test_binary("sa_resethand");
        let text = stat_vs_native("collect-resethand", b, &[prog.to_str().unwrap(), "again"], |_| {});
        let names = reported(&text);
        assert!(!names.is_empty() && names.iter().all(|n| n == "sa_resethand"), "{b}:\n{text}");
        assert!(!text.contains("did not report"), "{b}:\n{text}");
    }
}

/// A child killed by SIGKILL writes nothing: it is named, with the signal
/// its parent saw.
#[test]
fn a_process_killed_by_sigkill_is_named() {
    for b in Backend::ALL {
        // The subshell tells it runs (after the fork, so after the collector
        // heard of it) before it is killed.
        let script =
            "mkfifo ready; (echo up > ready; exec sleep 30) & read x < ready; kill -9 $!; wait $!; echo \"status $?\"";
        let text = stat_vs_native("collect-sigkill", b, &["sh", "-c", script], |_| {});
        let line =
            text.lines().find(|l| l.contains("did not report")).unwrap_or_else(|| panic!("{b}: nobody named:\n{text}"));
        assert!(line.starts_with("usertrap: 1 of ") && line.contains("processes did not report: pid "), "{b}: {line}");
        assert!(line.ends_with(", killed by SIGKILL"), "{b}: {line}");
        assert!(line.contains(" sh,") || line.contains(" sleep,"), "{b}: named: {line}");
    }
}

/// Processes in a PID namespace of their own (`unshare -pf`): a parent
/// there names its fork children by the numbers it sees, the collector
/// knows them by ours. Every one reports and none is named missing; a
/// killed one still is. Several rounds: a child may be reaped before the
/// collector looks it up.
#[test]
fn processes_in_a_pid_namespace_are_not_named_missing() {
    if !is_root() || !run_native(&Cmd::new("unshare").args(["-pf", "true"])).status.success() {
        println!("SKIPPED: cannot make a PID namespace here (unshare -pf)");
        return;
    }
    let script = "echo a | cat; ls / >/dev/null; (true) & wait; sh -c 'kill -9 $$'; echo \"status $?\"";
    for b in Backend::ALL {
        for round in 0..5 {
            let text = stat_vs_native("collect-pidns", b, &["unshare", "-pf", "sh", "-c", script], |_| {});
            let names = reported(&text);
            for want in ["unshare", "cat", "ls"] {
                assert!(names.iter().any(|n| n == want), "{b}, round {round}: no report from {want}:\n{text}");
            }
            let line = text
                .lines()
                .find(|l| l.contains("did not report"))
                .unwrap_or_else(|| panic!("{b}, round {round}: the killed sh not named:\n{text}"));
            assert!(line.starts_with("usertrap: 1 of ") && line.ends_with(", killed by SIGKILL"), "{b}: {line}");
        }
    }
}

/// An execve the kernel refuses (E2BIG: an argument over 128 KiB) after
/// the image wrote its report for the exec (c_tests/exec_refused.c, twice):
/// the image goes on and reports again at its end, with every call since
/// its start. The aggregate keeps that last report only: one process entry
/// per image (pid and start time), not said replaced by an exec that did
/// not happen, and its 150 getppid counted once.
#[test]
fn a_refused_exec_is_not_counted_twice() {
    let prog = c_test_binary("exec_refused");
    let prog = prog.to_str().unwrap();
    for b in Backend::ALL {
        let text = stat_vs_native("collect-e2big", b, &[prog], |_| {});
        assert!(!text.contains("replaced by execve"), "{b}: an exec that did not happen:\n{text}");
        let dir = scratch_dir("collect-e2big-json", b);
        fresh_dir(&dir);
        let agg = dir.join("aggregate.json");
        let cmd = Cmd::new(usertrap_bin())
            .args(["stat", "-f", "--json", "--backend", b.name(), "-o"])
            .arg(&agg)
            .args(["--", prog]);
        let out = run_native(&cmd);
        assert!(out.status.success(), "{b}: {}", out.stderr_text());
        let json: serde_json::Value = serde_json::from_str(&fs::read_to_string(&agg).unwrap()).unwrap();
        let processes = json["processes"].as_array().unwrap();
        assert_eq!(processes.len(), 1, "{b}: one image:\n{json:#}");
        let calls = |name: &str| -> u64 {
            json["syscalls"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["name"] == name)
                .map(|s| s["calls"].as_u64().unwrap())
                .sum()
        };
        assert_eq!((calls("getppid"), calls("execve")), (150, 2), "{b}:\n{json:#}");
    }
}

/// A process that cannot open the socket for its report (no descriptor
/// left): counted and named in the aggregate, nothing on its stderr.
#[test]
fn an_undeliverable_report_is_named_not_written() {
    for b in Backend::ALL {
        let text = stat_vs_native("collect-nofile", b, &["sh", "-c", "(ulimit -n 3; true); echo done"], |_| {});
        let line =
            text.lines().find(|l| l.contains("did not report")).unwrap_or_else(|| panic!("{b}: nobody named:\n{text}"));
        assert!(line.starts_with("usertrap: 1 of ") && line.contains(" sh, ended without a report"), "{b}: {line}");
    }
}

// ---------------------------------------------------------------------------
// exec after the root or the mount namespace changed (c_tests/chroot_exec.c):
// the launcher and the library are reached through descriptors kept before
// the change (emulate::exec_keep); natively these execs work, and without
// that they failed with ENOENT under the library.

/// Whether chroot_exec is refused the call (no privileges) by this
/// machine: then the test says it skipped, loudly.
fn refused(mode: &str, case: &str) -> bool {
    let prog = c_test_binary("chroot_exec");
    let dir = std::env::temp_dir();
    let out = run_native(&Cmd::new(&prog).arg(mode).arg(&dir).arg(which("true")));
    let text = out.stdout_text();
    if text.contains("refused: ") {
        eprintln!("SKIPPED {case}: {}", text.trim());
        return true;
    }
    false
}

/// The files a dynamic program needs in a new root: itself and what ldd
/// lists (the loader and libc), at the same paths.
fn copy_with_libraries(prog: &Path, root: &Path) {
    let ldd = run_native(&Cmd::new("ldd").arg(prog));
    let mut files = vec![prog.to_path_buf()];
    for word in ldd.stdout_text().split_whitespace() {
        if word.starts_with('/') {
            files.push(PathBuf::from(word));
        }
    }
    for f in files {
        let to = root.join(f.strip_prefix("/").unwrap());
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(&f, &to).unwrap_or_else(|e| panic!("copy {} to {}: {e}", f.display(), to.display()));
    }
}

/// How many process images of `name` reported.
fn reports_of(text: &str, name: &str) -> usize {
    reported(text).iter().filter(|n| *n == name).count()
}

/// chroot into a directory holding static programs: a child execs busybox's
/// sh there, which execs static_hello (a chain inside the new root), then
/// the process itself does the same. Every image reports.
#[test]
fn exec_chain_inside_a_chroot_reports() {
    let bb = Path::new("/bin/busybox");
    if elf_is_static(bb) != Some(true) {
        eprintln!(
            "SKIPPED exec_chain_inside_a_chroot_reports: no static /bin/busybox (install busybox-static: .ci/deps.sh)"
        );
        return;
    }
    if refused("chroot", "exec_chain_inside_a_chroot_reports") {
        return;
    }
    let prog = c_test_binary("chroot_exec");
    let script = "/static_hello one; echo \"static_hello status $?\"; /busybox echo chained";
    let argv = [prog.to_str().unwrap(), "chroot", "newroot", "/busybox", "sh", "-c", script];
    for b in Backend::ALL {
        let text = stat_vs_native("collect-chroot-chain", b, &argv, |d| {
            fs::create_dir_all(d.join("newroot")).unwrap();
            fs::copy(bb, d.join("newroot/busybox")).unwrap();
            fs::copy(c_test_binary("static_hello"), d.join("newroot/static_hello")).unwrap();
        });
        // The child's sh and the process's own, each with static_hello
        // (which forks a child of its own) and busybox echo.
        assert_eq!(reports_of(&text, "static_hello"), 4, "{b}: static_hello's reports:\n{text}");
        assert!(reports_of(&text, "busybox") >= 2, "{b}: busybox's reports:\n{text}");
        assert!(!text.contains("did not report"), "{b}:\n{text}");
    }
}

/// chroot into a directory holding a dynamic program and its libraries but
/// no /proc: its loader cannot open the library (neither by its path nor
/// through /proc/self/fd), so the launcher serves it for its whole life; no
/// "cannot be preloaded" on its stderr (compared with the native run), and
/// it reports.
#[test]
fn dynamic_exec_in_a_chroot_without_proc_reports() {
    if refused("chroot", "dynamic_exec_in_a_chroot_without_proc_reports") {
        return;
    }
    let prog = c_test_binary("chroot_exec");
    let echo = which("echo");
    let argv = [prog.to_str().unwrap(), "chroot", "newroot", echo.to_str().unwrap(), "dynamic", "inside"];
    for b in Backend::ALL {
        let text =
            stat_vs_native("collect-chroot-noproc", b, &argv, |d| copy_with_libraries(&echo, &d.join("newroot")));
        assert_eq!(reports_of(&text, "echo"), 2, "{b}: echo's reports (the child's and the process's own):\n{text}");
        assert!(!text.contains("did not report"), "{b}:\n{text}");
    }
}

/// unshare(CLONE_NEWNS), then another process (a child) mounts a tmpfs over
/// the directory of the launcher and the library, then the process execs a
/// dynamic program (as `unshare -m sh -c 'mount ...; /bin/echo'`): /proc is
/// there, so the loader preloads the library through /proc/self/fd.
#[test]
fn dynamic_exec_after_a_mount_hides_the_launcher_reports() {
    if refused("mountns", "dynamic_exec_after_a_mount_hides_the_launcher_reports") {
        return;
    }
    let prog = c_test_binary("chroot_exec");
    let echo = which("echo");
    let hidden = lib_path().parent().unwrap().to_path_buf();
    let argv = [prog.to_str().unwrap(), "mountns", hidden.to_str().unwrap(), echo.to_str().unwrap(), "hi"];
    for b in Backend::ALL {
        let text = stat_vs_native("collect-mountns", b, &argv, |_| {});
        assert_eq!(reports_of(&text, "echo"), 2, "{b}: echo's reports (the child's and the process's own):\n{text}");
        assert!(text.contains(" write"), "{b}: no write counted:\n{text}");
        assert!(!text.contains("did not report"), "{b}:\n{text}");
    }
}

/// A vfork child chroots and execs a static program there (a spawn helper):
/// its numbers of the kept descriptors are recorded in memory it shares
/// with its parent, which must not take them for its own.
#[test]
fn exec_from_a_vfork_child_after_chroot_reports() {
    if refused("chroot", "exec_from_a_vfork_child_after_chroot_reports") {
        return;
    }
    let prog = c_test_binary("chroot_exec");
    let argv = [prog.to_str().unwrap(), "vfork", "newroot", "/static_hello", "spawned"];
    for b in Backend::ALL {
        let text = stat_vs_native("collect-vfork-chroot", b, &argv, |d| {
            fs::create_dir_all(d.join("newroot")).unwrap();
            fs::copy(c_test_binary("static_hello"), d.join("newroot/static_hello")).unwrap();
        });
        // static_hello and the child it forks.
        assert_eq!(reports_of(&text, "static_hello"), 2, "{b}: static_hello's reports:\n{text}");
        assert!(!text.contains("did not report"), "{b}:\n{text}");
    }
}

/// As above, but the program exec'd after the mount is a set-user-ID copy
/// of echo (as `mount`, `umount`, `su` in a container's setup): under sud
/// it is exec'd natively, and its loader must not be given the library's
/// old path, which leads nowhere now (the loader would print "cannot be
/// preloaded" on its stderr); under seccomp the launcher loads it. Only
/// usertrap's own notes may be added to stderr.
#[test]
fn setuid_exec_after_a_mount_hides_the_library_prints_no_loader_error() {
    if !is_root() {
        eprintln!("SKIPPED setuid_exec_after_a_mount_hides_the_library_prints_no_loader_error: not root");
        return;
    }
    if refused("mountns", "setuid_exec_after_a_mount_hides_the_library_prints_no_loader_error") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let prog = c_test_binary("chroot_exec");
    let hidden = lib_path().parent().unwrap().to_path_buf();
    for b in Backend::ALL {
        let dir = scratch_dir("collect-mountns-setuid", b);
        fresh_dir(&dir);
        let suid = dir.join("suid-echo");
        fs::copy(which("echo"), &suid).unwrap();
        fs::set_permissions(&suid, fs::Permissions::from_mode(0o4755)).unwrap();
        let argv = [prog.to_str().unwrap(), "mountns", hidden.to_str().unwrap(), suid.to_str().unwrap(), "hi"];
        let native = run_native(&Cmd::new(argv[0]).args(&argv[1..]).cwd(&dir));
        let cmd = Cmd::new(usertrap_bin())
            .args(["stat", "--backend", b.name(), "-o", "/dev/null", "--"])
            .args(argv)
            .cwd(&dir);
        let traced = run_native(&cmd);
        assert_eq!(traced.status, native.status, "{b}: status; stderr:\n{}", traced.stderr_text());
        assert_eq!(traced.stdout_text(), native.stdout_text(), "{b}: stdout");
        let stderr = traced.stderr_text();
        let programs: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("usertrap: ")).collect();
        assert_eq!(
            programs.join("\n"),
            native.stderr_text().trim_end(),
            "{b}: stderr besides usertrap's notes:\n{stderr}"
        );
    }
}
