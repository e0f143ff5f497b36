//! Programs that exec: shells, make, Python's
//! subprocess, exec chains, static binaries, set-user-ID programs. Each runs
//! natively and under the library with each backend; stdout, stderr, exit
//! status and the files left in the scratch directory must be the same, and
//! where a test asks for reports, every process image of the tree must have
//! written its own (JSON, into a directory beside the scratch directory).
//!
//! execve must behave exactly as natively under both backends: under `sud`
//! the library follows exec through LD_PRELOAD; under `seccomp` (whose filter
//! outlives exec) through its launcher, which also brings the library into
//! static binaries, which LD_PRELOAD never reaches. The C programs of
//! c_tests/ that exec (exec_errors, exec_observe, execveat_fexecve,
//! exec_many, execve_chain, vfork_exec, posix_spawn) are compared in
//! tests/c_programs.rs; this file drives them and real programs in trees.
//!
//! Run with `cargo test --release --test exec` after `make` and `make c-tests`.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Two tests per scenario, `NAME::seccomp` and `NAME::sud`, each calling
/// `NAME(backend)`.
macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn seccomp() {
                    super::$name(super::Backend::Seccomp);
                }
                #[test]
                fn sud() {
                    super::$name(super::Backend::Sud);
                }
            }
        )*
    };
}

per_backend! {
    sh_pipelines,
    make_recursive,
    python_subprocess,
    env_i_empty_environment,
    exec_chain_20_deep,
    exec_many_1000,
    every_process_writes_its_report,
    static_binary_exec_from_traced_processes,
    static_pie_binary_exec_from_traced_processes,
    busybox_static,
    many_program_headers,
    noexec_mount,
    inherited_ignored_signals,
    inherited_ignored_signals_launched,
    loader_run_as_a_program,
    libc_run_as_a_program,
}

// ---------------------------------------------------------------------------
// Reports

fn parse_reports(dir: &Path) -> Vec<Value> {
    report_files(dir)
        .into_iter()
        .map(|(p, text)| {
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not a JSON report ({}):\n{}", p.display(), e, text));
            assert_eq!(v["format"], "usertrap-report", "{}", p.display());
            v
        })
        .collect()
}

fn command(r: &Value) -> &str {
    r["command"].as_str().unwrap_or("?")
}

fn exit_how(r: &Value) -> &str {
    r["exit"]["how"].as_str().unwrap_or("?")
}

fn calls(r: &Value, name: &str) -> u64 {
    r["syscalls"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .and_then(|s| s["calls"].as_u64())
        .unwrap_or(0)
}

/// One line per report, for failure messages.
fn describe(reports: &[Value]) -> String {
    let mut v: Vec<String> = reports
        .iter()
        .map(|r| {
            format!(
                "pid {} ppid {} {:<16} exit {} {} (backend {}, {} calls)",
                r["pid"],
                r["ppid"],
                command(r),
                exit_how(r),
                r["exit"]["status"],
                r["backend"],
                r["totals"]["calls"]
            )
        })
        .collect();
    v.sort();
    if v.is_empty() {
        "  (no report at all)".to_string()
    } else {
        format!("  {}", v.join("\n  "))
    }
}

// ---------------------------------------------------------------------------
// Shells

fn make_files(dir: &Path) {
    for (name, n) in [("one.txt", 1), ("two.txt", 2), ("three.txt", 3), ("four.txt", 4), ("five.txt", 5)] {
        let text: String = (0..n * 7).map(|i| format!("{} line {} of {}\n", name, i % 5, n)).collect();
        fs::write(dir.join(name), text).unwrap();
    }
    fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    fs::write(dir.join("sub/a"), "a\n").unwrap();
    fs::write(dir.join("sub/b"), "b\nthree\n").unwrap();
    fs::write(dir.join("sub/deeper/c"), "c\n").unwrap();
}

/// `sh -c` with pipelines of several external commands, subshells, command
/// substitution, loops feeding pipes, exit statuses of children.
fn sh_pipelines(backend: Backend) {
    let case = Case::new("exec-sh-pipelines")
        .setup(make_files)
        .step(Cmd::sh("ls | sort | wc -l"))
        .step(Cmd::sh("ls *.txt | sort -r | head -3 | tr a-z A-Z"))
        .step(Cmd::sh(
            "cat *.txt | sort | uniq -c | sort -rn | head -5 > counts.txt; cat counts.txt; wc -l < counts.txt",
        ))
        .step(Cmd::sh(
            "(cd sub && ls | wc -l; pwd | sed 's|.*/||'); echo \"after the subshell: $(pwd | sed 's|.*/||')\"",
        ))
        .step(Cmd::sh(
            "n=$(ls | wc -l); echo \"there are $n entries\"; \
             echo \"nested: $(echo $(echo inner | tr a-z A-Z) | sed 's/N/n/g')\"",
        ))
        .step(Cmd::sh(
            "for f in *.txt; do wc -c < \"$f\"; done | sort -n | tail -1; \
             find . -name '*.txt' | sort | xargs cat | wc -l; \
             find sub -type f | sort | xargs grep -l three",
        ))
        .step(Cmd::sh(
            "grep -l 'line 3' *.txt | sort | while read f; do echo \"match: $f\"; done; \
             if grep -q nothing-like-this *.txt; then echo found; else echo \"not found: $?\"; fi",
        ))
        .step(Cmd::sh(
            "sh -c 'exit 3'; echo \"child status $?\"; false | true; echo \"pipeline status $?\"; \
             /bin/sh -c 'kill -TERM $$'; echo \"killed child status $?\"; exit 0",
        ))
        .step(
            Cmd::sh("cat > from-stdin.txt; tr a-z A-Z < from-stdin.txt | tee upper.txt | wc -c")
                .stdin("some input\nfor the shell\n"),
        );
    compare_native_and_traced(&case, backend);
}

/// make running shell commands, commands it execs directly, and a
/// recursive make.
fn make_recursive(backend: Backend) {
    let make = which("make");
    let case = Case::new("exec-make")
        .setup(|d| {
            fs::write(
                d.join("Makefile"),
                "all: upper.txt count.txt sub\n\
                 \t@echo \"all done\"\n\
                 words.txt:\n\
                 \techo alpha beta gamma delta | tr ' ' '\\n' > words.txt\n\
                 upper.txt: words.txt\n\
                 \ttr a-z A-Z < words.txt > upper.txt\n\
                 \tsort -r upper.txt\n\
                 count.txt: words.txt upper.txt\n\
                 \tcat words.txt upper.txt | wc -l > count.txt\n\
                 \tcat count.txt\n\
                 \ttrue\n\
                 sub:\n\
                 \t$(MAKE) -C sub N=3\n\
                 .PHONY: all sub\n",
            )
            .unwrap();
            fs::create_dir_all(d.join("sub")).unwrap();
            fs::write(
                d.join("sub/Makefile"),
                "all: made.txt\n\
                 \t@echo \"sub: N=$(N)\"\n\
                 made.txt:\n\
                 \tfor i in 1 2 $(N); do echo \"item $$i\"; done > made.txt\n\
                 \tcat made.txt\n\
                 \t/bin/echo direct exec from make\n",
            )
            .unwrap();
        })
        .step(
            Cmd::new(&make)
                .env_remove("MAKEFLAGS")
                .env_remove("MFLAGS")
                .env_remove("MAKELEVEL")
                .env_remove("MAKEFILES")
                .timeout(Duration::from_secs(60)),
        )
        // Up to date now: make only checks.
        .step(Cmd::new(&make).args(["count.txt"]).env_remove("MAKEFLAGS").env_remove("MAKELEVEL"));
    compare_native_and_traced(&case, backend);
}

const PY_SUBPROCESS: &str = r#"
import os, subprocess, sys
r = subprocess.run(["/bin/echo", "hello", "from echo"], capture_output=True, text=True)
print("echo:", repr(r.stdout), r.returncode)
r = subprocess.run("printf 'b\\na\\nc\\n' | sort | tr a-z A-Z", shell=True, capture_output=True, text=True)
print("shell pipe:", repr(r.stdout), r.returncode)
print("check_output:", subprocess.check_output(["sh", "-c", "ls | wc -l"], text=True).strip())
print("exit status:", subprocess.run(["sh", "-c", "exit 7"]).returncode)
p = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
out, _ = p.communicate(b"x" * 200000)
print("cat through pipes:", len(out), p.returncode)
r = subprocess.run(["/bin/sh", "-c", "echo to-stderr >&2; echo to-stdout"], capture_output=True, text=True)
print("both streams:", repr(r.stdout), repr(r.stderr))
try:
    subprocess.run(["/nonexistent/program"])
except FileNotFoundError as e:
    print("missing program:", e.errno == 2)
try:
    subprocess.run(["./not-executable.txt"])
except PermissionError as e:
    print("not executable:", e.errno == 13)
r = subprocess.run(["/usr/bin/env"], env={"ONLY": "this"}, capture_output=True, text=True)
print("env:", sorted(l for l in r.stdout.splitlines() if not l.startswith(("LD_PRELOAD=", "USERTRAP_"))))
pid = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 4"], dict(os.environ))
print("posix_spawn:", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
sys.stdout.flush()
os.execv("/bin/sh", ["sh", "-c", "echo python execd sh; exit 0"])
"#;

/// Python's subprocess: vfork/exec of /bin/echo, shell pipelines,
/// check_output, pipes both ways, exec errors as exceptions, an explicit
/// environment, posix_spawn, and os.execv at the end.
fn python_subprocess(backend: Backend) {
    let case = Case::new("exec-python-subprocess")
        .setup(|d| fs::write(d.join("not-executable.txt"), "data\n").unwrap())
        .step(python_cmd().args(["-c", PY_SUBPROCESS]));
    compare_native_and_traced(&case, backend);
}

/// `env -i`: the shell and what it runs start with an empty environment
/// (the library's own variables aside, which it puts back to follow exec).
fn env_i_empty_environment(backend: Backend) {
    let env = which("env");
    let script = "echo \"PATH=${PATH-unset} HOME=${HOME-unset}\"; \
                  /usr/bin/env | grep -v -e '^LD_PRELOAD=' -e '^USERTRAP_' | sort; \
                  echo \"entries: $(/usr/bin/env | grep -v -e '^LD_PRELOAD=' -e '^USERTRAP_' | wc -l)\"; \
                  ls | wc -l; echo end";
    let case = Case::new("exec-env-i")
        .setup(make_files)
        .step(Cmd::new(&env).args(["-i", "/bin/sh", "-c", script]))
        .step(Cmd::new(&env).args(["-i", "ONE=1", "TWO=2", "/bin/sh", "-c", script]))
        // env -i, then env again clearing what is left, then a program that prints its environment.
        .step(Cmd::new(&env).args(["-i", "A=1", "/usr/bin/env", "-u", "A", "B=2", "/bin/sh", "-c", script]));
    compare_native_and_traced(&case, backend);
}

/// The same signals ignored by a traced shell, which then execs the program:
/// the launcher starts it, and the library in that image learns which
/// signals have their default disposition from the kernel's old action as
/// it installs its fatal-signal wrappers (no /proc/self/status there): an
/// ignored one must get SIG_IGN back and survive being raised.
fn inherited_ignored_signals_launched(backend: Backend) {
    let prog = c_test_binary("sig_ign_inherit");
    let script = format!("trap '' HUP USR1 BUS 37; exec {}", shell_quote(prog.as_os_str()));
    let dir = fresh_reports_dir("exec-inherited-ignore-launched", backend);
    let case = Case::new("exec-inherited-ignore-launched").step(with_json_reports(Cmd::sh(&script), &dir));
    compare_native_and_traced(&case, backend);
    let reports = parse_reports(&dir);
    assert!(
        reports.iter().any(|r| command(r) == "sig_ign_inherit" && exit_how(r) == "exit_group"),
        "the program should have been launched and reported ({})\n{}",
        backend,
        describe(&reports)
    );
    let _ = fs::remove_dir_all(&dir);
}

/// A program whose first image is preloaded (exec'd by a native shell, not
/// through the launcher) starts with SIGHUP, SIGUSR1 and signal 37 ignored,
/// as `nohup` and shells leave them: it must see them ignored and survive
/// raising them, as natively (the library reads the default dispositions
/// from /proc/self/status at start). Its report shows it was intercepted.
fn inherited_ignored_signals(backend: Backend) {
    let prog = c_test_binary("sig_ign_inherit");
    let lib = lib_path();
    // Traced runs set USERTRAP_BACKEND: the shell itself runs natively
    // (LD_PRELOAD removed below) and preloads only the program it execs.
    let script = format!(
        "trap '' HUP USR1 BUS 37; if [ -n \"$USERTRAP_BACKEND\" ]; then LD_PRELOAD={}; export LD_PRELOAD; fi; exec {}",
        shell_quote(lib.as_os_str()),
        shell_quote(prog.as_os_str())
    );
    let dir = fresh_reports_dir("exec-inherited-ignore", backend);
    let case =
        Case::new("exec-inherited-ignore").step(with_json_reports(Cmd::sh(&script).env_remove("LD_PRELOAD"), &dir));
    compare_native_and_traced(&case, backend);
    let reports = parse_reports(&dir);
    assert!(
        reports.iter().any(|r| command(r) == "sig_ign_inherit" && exit_how(r) == "exit_group"),
        "the program should have been preloaded and reported ({})\n{}",
        backend,
        describe(&reports)
    );
    let _ = fs::remove_dir_all(&dir);
}

/// A script that execs itself through /bin/sh -c 20 times (same pid), then
/// exec_many with 20, then a mixed chain env -> sh -> python3 -> echo; every
/// image writes its report: 21 per chain, all with the pid of the first.
fn exec_chain_20_deep(backend: Backend) {
    const S: &str = "n=$1; p=${2:-$$}; \
                     if [ \"$n\" -lt 20 ]; then echo \"depth $n\"; exec /bin/sh -c \"$0\" \"$0\" $((n + 1)) \"$p\"; fi; \
                     echo \"depth $n: end\"; if [ \"$$\" = \"$p\" ]; then echo 'same pid all along'; fi";
    let reports = fresh_reports_dir("exec-chain-20", backend);
    let sh_dir = reports.join("sh");
    let many_dir = reports.join("many");
    let mixed_dir = reports.join("mixed");
    for d in [&sh_dir, &many_dir, &mixed_dir] {
        fs::create_dir_all(d).unwrap();
    }
    let py = python3();
    let mixed = format!(
        "exec {} X=1 /bin/sh -c 'exec {} -c \"import os; os.execv(\\\"/bin/echo\\\", [\\\"echo\\\", \\\"end of the mixed chain\\\"])\"'",
        shell_quote(which("env").as_os_str()),
        shell_quote(py.as_os_str())
    );
    let case = Case::new("exec-chain-20")
        .step(with_json_reports(Cmd::new("/bin/sh").args(["-c", S, S, "0"]), &sh_dir))
        .step(with_json_reports(Cmd::new(c_test_binary("exec_many")).arg("20"), &many_dir))
        .step(with_json_reports(Cmd::sh(&mixed), &mixed_dir));
    compare_native_and_traced(&case, backend);

    for (dir, images, last) in [(&sh_dir, 21, "sh"), (&many_dir, 21, "exec_many"), (&mixed_dir, 5, "echo")] {
        let r = parse_reports(dir);
        let pids: BTreeSet<String> = r.iter().map(|r| r["pid"].to_string()).collect();
        let execs = r.iter().filter(|r| exit_how(r) == "exec").count();
        let finals: Vec<&Value> = r.iter().filter(|r| exit_how(r) != "exec").collect();
        assert!(
            r.len() == images
                && pids.len() == 1
                && execs == images - 1
                && finals.len() == 1
                && command(finals[0]) == last,
            "{} ({}): a chain of {} images of one process should leave {} reports with one pid, {} of them \
             ending in exec and the last one ({}) not; the reports are:\n{}",
            dir.display(),
            backend,
            images,
            images,
            images - 1,
            last,
            describe(&r)
        );
    }
    let _ = fs::remove_dir_all(&reports);
}

/// exec_many: 1000 execs of one process, under a minute.
fn exec_many_1000(backend: Backend) {
    let case = Case::new("exec-many-1000")
        .step(Cmd::new(c_test_binary("exec_many")).arg("1000").timeout(Duration::from_secs(120)));
    compare_native_and_traced(&case, backend);
}

/// Every process of a shell tree prints its pid; each must have written a
/// report, exactly one of its images ending otherwise than by exec, and no
/// report may come from a process that did not print its pid.
fn every_process_writes_its_report(backend: Backend) {
    // Lines: 1 the top sh (no exec); 2 a child sh; 3 and 4 a child sh that
    // execs sh again; 5 the right side of a pipeline, which prints its pid
    // and then execs cat (its line is written before cat copies line 6); 6
    // the left side, through cat; 7 a command substitution. dash starts a
    // simple command with vfork + exec: the vfork child writes no report of
    // its own (its figures are its parent's), so lines 2 and 3 count one
    // exec'd image less than the pipeline's and the substitution's children,
    // which are forked subshells that then exec.
    let script = "echo $$; /bin/sh -c 'echo $$'; /bin/sh -c 'echo $$; exec /bin/sh -c \"echo \\$\\$\"'; \
                  /bin/sh -c 'echo $$' | /bin/sh -c 'echo $$; exec cat'; x=$(/bin/sh -c 'echo $$'); echo $x";
    let dir = fresh_reports_dir("exec-every-report", backend);
    let scratch = scratch_dir("exec-every-report", backend);
    fresh_dir(&scratch);
    let out = run_traced(&with_json_reports(Cmd::sh(script).cwd(&scratch), &dir), backend);
    assert!(out.status.success(), "{} ended with {}; stderr:\n{}", script, out.status, out.stderr_text());
    let lines: Vec<String> = out.stdout_text().lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 7, "seven pids expected on stdout, got:\n{}", out.stdout_text());
    assert_eq!(lines[2], lines[3], "exec keeps the pid");
    let reports = parse_reports(&dir);
    let mut by_pid: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for r in &reports {
        by_pid.entry(r["pid"].to_string()).or_default().push(r);
    }
    let printed: BTreeSet<String> = lines.iter().cloned().collect();
    let reported: BTreeSet<String> = by_pid.keys().cloned().collect();
    let ctx = format!("stdout (pids):\n  {}\nreports:\n{}", lines.join("\n  "), describe(&reports));
    assert_eq!(printed.len(), 6, "{}", ctx);
    assert_eq!(
        reported, printed,
        "the processes that wrote reports are not the processes of the tree ({})\n{}",
        backend, ctx
    );
    // Exec'd images per process, in the order of the lines above.
    let expected_execs =
        [(0usize, 0usize, "sh"), (1, 0, "sh"), (2, 1, "sh"), (4, 2, "cat"), (5, 1, "sh"), (6, 1, "sh")];
    for (line, execs, last) in expected_execs {
        let rs = &by_pid[&lines[line]];
        let n_exec = rs.iter().filter(|r| exit_how(r) == "exec").count();
        let finals: Vec<&&Value> = rs.iter().filter(|r| exit_how(r) != "exec").collect();
        assert!(
            n_exec == execs && finals.len() == 1 && command(finals[0]) == last && exit_how(finals[0]) == "exit_group",
            "pid {} (line {} of stdout) should have {} report(s) ending in exec and one for its last image ({}, \
             exit_group) ({})\n{}",
            lines[line],
            line + 1,
            execs,
            last,
            backend,
            ctx
        );
    }
    assert_eq!(reports.len(), 6 + 5, "11 reports in all\n{}", ctx);
    let _ = fs::remove_dir_all(&dir);
    let _ = fs::remove_dir_all(&scratch);
}

// ---------------------------------------------------------------------------
// Static binaries

/// static_hello (linked with -static: LD_PRELOAD cannot reach it) exec'd by
/// a traced `env -i` (it prints how many environment entries it has: none),
/// and forked and exec'd by a traced sh: the same output and
/// status as natively, and reports of its own for it and its fork child.
fn static_binary_exec_from_traced_processes(backend: Backend) {
    static_hello_exec_from_traced_processes("static_hello", backend);
}

/// The same, linked with -static-pie: ET_DYN without PT_INTERP, as the
/// loader is (which the launcher serves as a program's loader), but it
/// ignores LD_PRELOAD: the launcher must stay its interposer for life.
fn static_pie_binary_exec_from_traced_processes(backend: Backend) {
    static_hello_exec_from_traced_processes("static_pie_hello", backend);
}

fn static_hello_exec_from_traced_processes(name: &str, backend: Backend) {
    let bin = c_test_binary(name);
    assert_eq!(
        elf_is_static(&bin),
        Some(true),
        "{} should be linked statically (Makefile rule static_%)",
        bin.display()
    );
    let case_name = format!("exec-{}", name.replace('_', "-"));
    let reports = fresh_reports_dir(&case_name, backend);
    let env = which("env");
    let case = Case::new(case_name)
        .allow_native_failure() // it exits 3 on purpose
        .step(with_json_reports(Cmd::new(&env).arg("-i").arg(&bin).args(["env-i", "two"]), &reports))
        .step(with_json_reports(
            Cmd::sh(&format!("{} from-sh; echo \"static_hello exited with $?\"", shell_quote(bin.as_os_str()))),
            &reports,
        ));
    let native = compare_native_and_traced(&case, backend);
    assert_eq!(native[0].status, Status::Exited(3), "static_hello exits 3");
    assert!(native[1].status.success());
    assert!(!native[0].stdout_text().contains("FAIL"), "static_hello fails natively:\n{}", native[0].stdout_text());

    let r = parse_reports(&reports);
    let ctx = describe(&r);
    // The process's name (comm): at most 15 bytes.
    let comm: String = name.chars().take(15).collect();
    let mine: Vec<&Value> = r.iter().filter(|r| command(r) == comm).collect();
    let parents: Vec<&&Value> = mine.iter().filter(|r| r["exit"]["status"] == 3).collect();
    let children: Vec<&&Value> = mine.iter().filter(|r| r["exit"]["status"] == 5).collect();
    assert!(
        mine.len() == 4 && parents.len() == 2 && children.len() == 2,
        "static_hello ran twice ({}): expected 4 reports of its own (twice the program, exit status 3, \
         and its fork child, exit status 5): a static binary must be intercepted when a traced process \
         execs it. Reports:\n{}",
        backend,
        ctx
    );
    for p in &parents {
        assert_eq!(exit_how(p), "exit_group", "{}", ctx);
        // The program's own lines (say() writes each with one write) and the file it wrote.
        assert!(calls(p, "write") >= 8, "static_hello's report should count its writes (>= 8):\n{}", p);
        assert!(calls(p, "openat") + calls(p, "open") >= 2, "static_hello's report should count its opens:\n{}", p);
        assert!(calls(p, "wait4") >= 1, "static_hello's report should count its wait4:\n{}", p);
    }
    for c in &children {
        assert!(calls(c, "write") >= 1, "the fork child's report should count its write:\n{}", c);
    }
    assert!(
        r.iter().any(|r| command(r) == "env" && exit_how(r) == "exec"),
        "env, which exec'd static_hello, should have reported with exit.how = exec:\n{}",
        ctx
    );
    let _ = fs::remove_dir_all(&reports);
}

/// A copy of the executable `src` at `dst` whose program-header table has
/// `phnum` entries (real programs have about a dozen): the table moves to
/// the end of the file, where a new read-only PT_LOAD maps it at the address
/// the first segment's layout gives that offset (AT_PHDR and the patcher's
/// reading of the table from the ELF header both find it there); PT_PHDR,
/// if any, says so; PT_NULL entries fill the rest.
fn with_many_phdrs(src: &Path, dst: &Path, phnum: usize) {
    use usertrap_core::elf::{self, Phdr, PF_R, PT_LOAD, PT_NULL, PT_PHDR};
    const PAGE: u64 = 4096;
    let mut b = fs::read(src).unwrap();
    let h = elf::Header::parse(&b).expect("an ELF file");
    let table = &b[h.phoff as usize..][..h.phdrs_len()];
    let old: Vec<Phdr> = elf::phdrs(table, h.phentsize.into()).collect();
    let loads: Vec<&Phdr> = old.iter().filter(|p| p.p_type == PT_LOAD).collect();
    let base = loads[0].p_vaddr - loads[0].p_offset;
    let end = loads.iter().map(|p| p.p_vaddr + p.p_memsz - base).max().unwrap().max(b.len() as u64);
    let off = end.div_ceil(PAGE) * PAGE;
    let len = (phnum * elf::PHDR_SIZE) as u64;
    let at =
        |p: Phdr| Phdr { p_offset: off, p_vaddr: base + off, p_paddr: base + off, p_filesz: len, p_memsz: len, ..p };
    let last_load = old.iter().rposition(|p| p.p_type == PT_LOAD).unwrap();
    let mut new = Vec::new();
    for (i, p) in old.iter().enumerate() {
        new.push(if p.p_type == PT_PHDR { at(*p) } else { *p });
        if i == last_load {
            new.push(at(Phdr { p_type: PT_LOAD, p_flags: PF_R, p_align: PAGE, ..Phdr::default() }));
        }
    }
    new.resize(phnum, Phdr { p_type: PT_NULL, ..Phdr::default() });
    b.resize(off as usize, 0);
    for p in &new {
        for (v, n) in [
            (u64::from(p.p_type), 4),
            (u64::from(p.p_flags), 4),
            (p.p_offset, 8),
            (p.p_vaddr, 8),
            (p.p_paddr, 8),
            (p.p_filesz, 8),
            (p.p_memsz, 8),
            (p.p_align, 8),
        ] {
            b.extend_from_slice(&v.to_le_bytes()[..n]);
        }
    }
    b[32..40].copy_from_slice(&off.to_le_bytes());
    b[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
    let _ = fs::remove_file(dst);
    fs::write(dst, &b).unwrap();
    fs::set_permissions(dst, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Programs with as many program headers as exec accepts (usertrap-core's
/// elf::MAX_PHNUM, 1170), a static and a dynamic one, exec'd by a traced
/// sh: the launcher loads them (it once kept only 64 headers and refused
/// more) and they run as natively; static_hello checks that AT_PHDR's table
/// holds its code.
fn many_program_headers(backend: Backend) {
    let dir = repo_root().join("target/many-phdrs");
    fs::create_dir_all(&dir).unwrap();
    let phnum = usertrap_core::elf::MAX_PHNUM;
    let (st, dy) = (dir.join(format!("static_hello-{backend}")), dir.join(format!("exit_42-{backend}")));
    with_many_phdrs(&c_test_binary("static_hello"), &st, phnum);
    with_many_phdrs(&c_test_binary("exit_42"), &dy, phnum);
    let script = format!(
        "{} one two; echo \"static_hello exited with $?\"; {}; echo \"exit_42 exited with $?\"",
        shell_quote(st.as_os_str()),
        shell_quote(dy.as_os_str())
    );
    let case = Case::new("exec-many-phdrs").step(Cmd::sh(&script));
    let native = compare_native_and_traced(&case, backend);
    let out = native[0].stdout_text();
    assert!(
        out.contains("static_hello exited with 3") && out.contains("exit_42 exited with 42") && !out.contains("FAIL"),
        "the programs do not run natively:\n{out}"
    );
}

/// A program on a `noexec` mount (a tmpfs mounted for the test, as root):
/// exec fails with EACCES natively, and must under the library too (the
/// exec check refuses it before the launcher is exec'd), the shell going on.
fn noexec_mount(backend: Backend) {
    // Not under the case's own directory, which the comparison recreates.
    let mnt = scratch_dir("exec-noexec-mount", backend);
    fresh_dir(&mnt);
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "noexec,size=4m", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        println!("SKIPPED: cannot mount a tmpfs here (needs root and a mount namespace that allows it)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let prog = mnt.join("exit_42");
    fs::copy(c_test_binary("exit_42"), &prog).unwrap();
    let script =
        format!("{p}; echo \"exec gave $?\"; {p} && echo ran; echo still here", p = shell_quote(prog.as_os_str()));
    let case = Case::new("exec-noexec").step(Cmd::sh(&script));
    let native = compare_native_and_traced(&case, backend);
    let out = native[0].stdout_text();
    assert!(out.contains("exec gave 126") && out.contains("still here"), "natively:\n{out}");
}

/// busybox-static (Debian's busybox-static package, installed by
/// .ci/deps.sh): applets exec'd by a traced env and by a traced sh, and
/// busybox's own shell running busybox applets in a pipeline.
fn busybox_static(backend: Backend) {
    let bb = PathBuf::from("/bin/busybox");
    match elf_is_static(&bb) {
        Some(true) => {}
        Some(false) => {
            println!("SKIPPED: {} is dynamically linked (install busybox-static: .ci/deps.sh)", bb.display());
            return;
        }
        None => {
            println!("SKIPPED: no {} (install busybox-static: .ci/deps.sh)", bb.display());
            return;
        }
    }
    let reports = fresh_reports_dir("exec-busybox", backend);
    let env = which("env");
    let case = Case::new("exec-busybox")
        .setup(make_files)
        .step(with_json_reports(Cmd::new(&env).args(["/bin/busybox", "echo", "hello from busybox"]), &reports))
        .step(with_json_reports(
            Cmd::sh(
                "/bin/busybox sh -c '/bin/busybox ls / | /bin/busybox wc -l; \
                 /bin/busybox ls | /bin/busybox sort -r | /bin/busybox head -3; \
                 /bin/busybox cat one.txt two.txt | /bin/busybox wc -l > bb-count.txt'; \
                 echo \"busybox sh exited with $?\"; cat bb-count.txt",
            ),
            &reports,
        ));
    compare_native_and_traced(&case, backend);
    let r = parse_reports(&reports);
    let bb_reports = r.iter().filter(|r| command(r) == "busybox").count();
    assert!(
        bb_reports >= 2,
        "busybox (static) ran as `env busybox echo` and as `busybox sh` with applets ({}): expected \
         reports of its own (at least 2), found {}:\n{}",
        backend,
        bb_reports,
        describe(&r)
    );
    assert!(
        r.iter().any(|r| command(r) == "busybox" && calls(r, "write") >= 1),
        "no busybox report counts a write:\n{}",
        describe(&r)
    );
    let _ = fs::remove_dir_all(&reports);
}

// ---------------------------------------------------------------------------
// Set-user-ID

/// Under seccomp the library needs no_new_privs, which makes the kernel
/// ignore the set-user-ID bit of programs exec'd later: a set-user-ID
/// program still runs (without gaining privileges), and the library says so
/// in one `usertrap:` line on stderr. The copy is owned by root and we are
/// root, so natively nothing changes either.
#[test]
fn setuid_child_runs_with_a_note_seccomp() {
    if !is_root() {
        println!("SKIPPED: not root (a set-user-ID copy owned by root needs root to make)");
        return;
    }
    let dir = scratch_dir("exec-setuid", Backend::Seccomp);
    fresh_dir(&dir);
    let copy = dir.join("suid-echo");
    fs::copy(which("echo"), &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o4755)).unwrap();
    assert_eq!(fs::metadata(&copy).unwrap().permissions().mode() & 0o7777, 0o4755);
    let cmd = Cmd::sh("./suid-echo hello from a set-user-ID program; echo \"after: $?\"").cwd(&dir);
    let native = run_native(&cmd);
    assert_eq!(native.stdout_text(), "hello from a set-user-ID program\nafter: 0\n");
    let out = run_traced(&cmd, Backend::Seccomp);
    assert_eq!(
        (out.status, out.stdout_text()),
        (native.status, native.stdout_text()),
        "the set-user-ID program should run as natively; stderr:\n{}",
        out.stderr_text()
    );
    let stderr = out.stderr_text();
    let notes: Vec<&str> = stderr.lines().filter(|l| l.contains("set-user-ID")).collect();
    assert!(
        notes.len() == 1 && notes[0].starts_with("usertrap:"),
        "stderr should have exactly one `usertrap:` line mentioning set-user-ID (the privileges \
         it would natively gain, here none, are not granted under no_new_privs); stderr:\n{}",
        stderr
    );
    let _ = fs::remove_dir_all(&dir);
}

/// A relative symlink and a `#!` script in the scratch dir, exec'd by sh:
/// resolution relative to the cwd of the exec'ing process.
#[test]
fn scripts_and_symlinks_from_sh_seccomp() {
    scripts_and_symlinks(Backend::Seccomp);
}

#[test]
fn scripts_and_symlinks_from_sh_sud() {
    scripts_and_symlinks(Backend::Sud);
}

fn scripts_and_symlinks(backend: Backend) {
    let case = Case::new("exec-scripts")
        .setup(|d| {
            let w = |name: &str, text: &str| {
                fs::write(d.join(name), text).unwrap();
                fs::set_permissions(d.join(name), fs::Permissions::from_mode(0o755)).unwrap();
            };
            w("hello.sh", "#!/bin/sh\necho \"hello.sh: $0 $# $*\"\n");
            w("args.sh", "#!/bin/sh -e\necho \"args.sh: $0 $*\"; exec ./hello.sh from-args\n");
            w("env.sh", "#!/usr/bin/env sh\necho \"env.sh ran\"\n");
            w("nested.sh", "#!./hello.sh\nnot read\n");
            fs::create_dir_all(d.join("bin")).unwrap();
            symlink("../hello.sh", d.join("bin/hi")).unwrap();
        })
        .step(Cmd::sh(
            "./hello.sh a b; ./args.sh c; ./env.sh; ./nested.sh d; bin/hi e; PATH=\"$PWD/bin:$PATH\" hi f; \
             ./missing.sh 2>/dev/null; echo \"missing: $?\"; sh ./hello.sh g",
        ));
    compare_native_and_traced(&case, backend);
}

/// The seccomp filter is installed once per process tree: an exec'd image
/// keeps the one it inherits instead of stacking another (1,000 stacked
/// filters would come close to the kernel's limit on filter instructions,
/// and each one runs on every syscall).
#[test]
fn exec_does_not_stack_seccomp_filters() {
    let script = "sh -c 'sh -c \"grep Seccomp_filters /proc/self/status\"'";
    let count = |out: &Output| -> u64 {
        let text = out.stdout_text();
        text.trim()
            .strip_prefix("Seccomp_filters:")
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no Seccomp_filters line: {text:?} {}", out.stderr_text()))
    };
    let native = count(&run_native(&Cmd::sh(script)));
    let traced = count(&run_traced(&Cmd::sh(script), Backend::Seccomp));
    assert_eq!(traced, native + 1, "three images deep, the process should carry exactly one filter of ours");
}

/// Without /proc (a chroot, a minimal container) exec still works: the
/// library's checks and the launcher fall back to paths and descriptors.
/// Root only: a private mount namespace with /proc unmounted.
fn exec_without_proc(backend: Backend) {
    if !is_root() {
        println!("SKIPPED: needs root (unshare -m, umount /proc)");
        return;
    }
    // umount is set-user-ID: its usertrap note goes to /dev/null with its stderr.
    let script = "umount -l /proc 2>/dev/null && test ! -e /proc/self && \
                  /bin/echo dynamic ran; ls /no/such/file 2>&1 | cat; \
                  env -i /usr/bin/env; echo \"env -i status $?\"; \
                  ./script.sh arg; /bin/sh -c 'exit 7'; echo \"status $?\"";
    let case = Case::new("exec-without-proc")
        .setup(|d| {
            fs::write(d.join("script.sh"), "#!/bin/sh\necho \"script got $1\"\n").unwrap();
            fs::set_permissions(d.join("script.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        })
        .step(Cmd::new(which("unshare")).args(["-m", "/bin/sh", "-c", script]));
    compare_native_and_traced(&case, backend);
}

#[test]
fn exec_without_proc_seccomp() {
    exec_without_proc(Backend::Seccomp);
}

#[test]
fn exec_without_proc_sud() {
    exec_without_proc(Backend::Sud);
}

// ---------------------------------------------------------------------------
// The loader and libc run as programs

/// The path of the object named `file_name` (glibc's x86-64 loader,
/// `ld-linux-x86-64.so.2`, or `libc.so.6`) that this test program, a
/// dynamically linked glibc program, runs with: from its own maps, not a
/// directory that differs between distributions.
fn own_mapped_object(file_name: &str) -> PathBuf {
    let maps = fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(PathBuf::from)
        .find(|p| p.file_name().is_some_and(|f| f == file_name))
        .unwrap_or_else(|| panic!("{file_name} is not mapped in the test program:\n{maps}"))
}

/// The loader run as a program (`ld.so prog`, its options, `ldd`): it has
/// no PT_INTERP, as a static program, but it reads LD_PRELOAD and loads
/// the library, which must take over from the launcher (it found the gate
/// taken, exit status 125, when the launcher served it as a static
/// program). `ld.so --list` and `ldd` list the libraries LD_PRELOAD names,
/// so under the library they list it too, as natively with LD_PRELOAD set:
/// that line and the load addresses are left out of the comparison.
fn loader_run_as_a_program(backend: Backend) {
    let ldso = shell_quote(own_mapped_object("ld-linux-x86-64.so.2").as_os_str());
    let ldd = shell_quote(which("ldd").as_os_str());
    let list = "sed 's/ (0x[0-9a-f]*)$//' | grep -v libusertrap";
    let dir = fresh_reports_dir("exec-loader-as-program", backend);
    let case = Case::new("exec-loader-as-program")
        .step(with_json_reports(Cmd::sh(&format!("{ldso} /bin/echo hi; echo rc=$?")), &dir))
        .step(with_json_reports(
            Cmd::sh(&format!(
                "{ldso} --library-path /nonexistent /bin/sh -c 'echo \"in sh: $0\"; exit 7'; echo rc=$?; \
                 {ldso} /bin/sh -c 'exec {ldso} /bin/echo nested'; \
                 {ldso} /usr/bin/env | grep -v -e '^LD_PRELOAD=' -e '^USERTRAP_' | sort; \
                 {ldso} --verify /bin/true; echo verify=$?"
            )),
            &dir,
        ))
        .step(with_json_reports(
            Cmd::sh(&format!(
                "{ldso} --list /bin/true | {list}; echo rc=$?; {ldd} /bin/true | {list}; \
                 LD_TRACE_LOADED_OBJECTS=1 {ldso} /bin/true | {list}"
            )),
            &dir,
        ))
        .step(Cmd::new(own_mapped_object("ld-linux-x86-64.so.2")).args(["/bin/echo", "first image"]));
    compare_native_and_traced(&case, backend);
    let reports = parse_reports(&dir);
    let loaders: Vec<&Value> = reports.iter().filter(|r| command(r) == "ld-linux-x86-64").collect();
    assert!(
        loaders.len() >= 4 && loaders.iter().any(|r| exit_how(r) == "exit_group" && calls(r, "write") >= 1),
        "the loader run as a program should have reported, and counted its echo's write ({backend}):\n{}",
        describe(&reports)
    );
    let _ = fs::remove_dir_all(&dir);
}

/// libc.so.6 run as a program prints its version: its entry never starts
/// libc, so libc's `environ` stays NULL, and the library must find its
/// settings in the loader's `envp` instead (launched, it died of SIGSEGV
/// walking that NULL; preloaded by the first exec, it wrote its report on
/// stderr, its settings unread). Both ways: the same output and status,
/// and a report of its own each time.
fn libc_run_as_a_program(backend: Backend) {
    let libc = own_mapped_object("libc.so.6");
    let dir = fresh_reports_dir("exec-libc-as-program", backend);
    let q = shell_quote(libc.as_os_str());
    let case = Case::new("exec-libc-as-program")
        .step(with_json_reports(Cmd::new(&libc), &dir))
        .step(with_json_reports(Cmd::sh(&format!("{q}; echo rc=$?; {q} | head -1; {q} --help | wc -l")), &dir));
    compare_native_and_traced(&case, backend);
    let reports = parse_reports(&dir);
    let own: Vec<&Value> = reports.iter().filter(|r| command(r) == "libc.so.6").collect();
    assert!(
        own.len() == 4 && own.iter().all(|r| exit_how(r) == "exit_group" && calls(r, "write") >= 1),
        "libc.so.6 ran four times: four reports of its own, each with its writes ({backend}):\n{}",
        describe(&reports)
    );
    let _ = fs::remove_dir_all(&dir);
}
