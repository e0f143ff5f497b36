//! Real programs, run natively and under the library: the same stdout,
//! stderr, exit status and files are expected.
//!
//! Scenarios that exec (a shell pipeline, tar running gzip, git running its
//! helpers, Python's subprocess) run under both backends (exec goes through
//! the launcher); a few variants without exec stay as well. A program
//! missing on the machine fails its test (`make deps` installs them);
//! nothing is skipped.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::time::Duration;

// ---------------------------------------------------------------------------
// Python

fn python_case(name: &str, extra_args: &[&str]) -> Case {
    let script = repo_root().join("tests/data/workload.py");
    Case::new(name).step(python_cmd().arg(script).args(extra_args))
}

/// Files, threads, signals, sockets, fork, and subprocesses (which exec).
fn python_workload(backend: Backend) {
    compare_native_and_traced(&python_case("python-workload", &[]), backend);
}

#[test]
fn python_workload_seccomp() {
    python_workload(Backend::Seccomp);
}

#[test]
fn python_workload_sud() {
    python_workload(Backend::Sud);
}

/// The same workload without subprocesses.
#[test]
fn python_workload_no_exec_seccomp() {
    compare_native_and_traced(&python_case("python-workload-no-exec", &["--no-exec"]), Backend::Seccomp);
}

// ---------------------------------------------------------------------------
// sqlite3

fn sqlite_script() -> String {
    let mut s = String::from(
        "PRAGMA journal_mode;\n\
         CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, grp INTEGER, val REAL);\n\
         BEGIN;\n",
    );
    for i in 1..=2000u32 {
        s.push_str(&format!(
            "INSERT INTO t VALUES({}, 'name-{:04}', {}, {}.5);\n",
            i,
            (i * 7919) % 2000,
            i % 17,
            (i * 37) % 1000
        ));
    }
    s.push_str(
        "COMMIT;\n\
         SELECT count(*), sum(val), min(name), max(name) FROM t;\n\
         SELECT grp, count(*), total(val), printf('%.3f', avg(id)) FROM t GROUP BY grp ORDER BY grp;\n\
         CREATE INDEX t_grp_val ON t(grp, val);\n\
         EXPLAIN QUERY PLAN SELECT id FROM t WHERE grp = 3 AND val > 900;\n\
         SELECT id, val FROM t WHERE grp = 3 AND val > 900 ORDER BY val DESC, id LIMIT 5;\n\
         BEGIN;\n\
         UPDATE t SET val = val * 2 WHERE grp = 5;\n\
         DELETE FROM t WHERE id % 100 = 0;\n\
         COMMIT;\n\
         BEGIN; DELETE FROM t; ROLLBACK;\n\
         SELECT count(*), printf('%.2f', sum(val)) FROM t;\n\
         CREATE VIEW big AS SELECT grp, max(val) AS m FROM t GROUP BY grp HAVING m > 1000;\n\
         SELECT * FROM big ORDER BY grp;\n\
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) SELECT sum(x) FROM c;\n\
         PRAGMA integrity_check;\n\
         .output dump.sql\n\
         .dump\n\
         .output stdout\n\
         SELECT 'dumped';\n",
    );
    s
}

fn sqlite_case(name: &str) -> Case {
    let sqlite = which("sqlite3");
    Case::new(name)
        // No ~/.sqliterc of the machine's user.
        .home_in_scratch()
        .step(Cmd::new(&sqlite).args(["-batch", "-bail", "test.db"]).stdin(sqlite_script()))
        // The dump read back into a fresh database through the CLI.
        .step(
            Cmd::new(&sqlite)
                .args(["-batch", "-bail", "restored.db"])
                .stdin(".read dump.sql\nSELECT count(*), printf('%.2f', sum(val)) FROM t;\nPRAGMA integrity_check;\n"),
        )
        .step(Cmd::new(&sqlite).args(["-batch", "-bail", "restored.db", ".dump"]))
}

// The database files themselves are compared byte for byte: natively two runs
// produce identical files (no timestamps or random salts in the file format
// when the same statements run in the same order), so they must under the
// library too.
#[test]
fn sqlite_seccomp() {
    compare_native_and_traced(&sqlite_case("sqlite"), Backend::Seccomp);
}

fn sqlite_piped(backend: Backend) {
    let case = sqlite_case("sqlite-piped").step(Cmd::sh(
        "sqlite3 -batch test.db .dump | sqlite3 -batch -bail piped.db && \
         sqlite3 -batch piped.db 'SELECT count(*) FROM t; PRAGMA integrity_check;'",
    ));
    let native = compare_native_and_traced(&case, backend);
    // The dump written with `.output` and the dump of the restored database agree.
    let dump_of_restored = &native[2].stdout;
    assert!(dump_of_restored.starts_with(b"PRAGMA foreign_keys=OFF;"), "unexpected .dump output");
}

#[test]
fn sqlite_piped_seccomp() {
    sqlite_piped(Backend::Seccomp);
}

#[test]
fn sqlite_piped_sud() {
    sqlite_piped(Backend::Sud);
}

// ---------------------------------------------------------------------------
// tar and gzip

fn make_tree(dir: &Path) {
    let t = dir.join("tree");
    for d in ["a/b/c", "a/empty", "d"] {
        fs::create_dir_all(t.join(d)).unwrap();
    }
    fs::write(t.join("README"), "a small tree for tar\n").unwrap();
    fs::write(t.join("a/numbers.txt"), (1..=5000).map(|i| format!("{}\n", i)).collect::<String>()).unwrap();
    let bin: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    fs::write(t.join("a/b/random.bin"), bin).unwrap();
    fs::write(t.join("a/b/c/deep.txt"), "deep\n").unwrap();
    fs::write(t.join("d/empty.txt"), "").unwrap();
    let script = t.join("d/run.sh");
    fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    symlink("../README", t.join("d/link-to-readme")).unwrap();
}

/// No mtimes, owners or ordering of the machine leak into the archive.
const TAR_FLAGS: [&str; 5] = ["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner"];

/// tar and gzip as separate commands: nothing execs.
#[test]
fn tar_gzip_seccomp() {
    let tar = which("tar");
    let gzip = which("gzip");
    let case = Case::new("tar-gzip")
        .setup(make_tree)
        .step(Cmd::new(&tar).args(TAR_FLAGS).args(["-cf", "tree.tar", "tree"]))
        .step(Cmd::new(&gzip).args(["-n", "-9", "tree.tar"]))
        .step(Cmd::new(&gzip).args(["-t", "-v", "tree.tar.gz"]))
        .step(Cmd::new(&gzip).args(["-d", "-k", "tree.tar.gz"]))
        .step(Cmd::new(which("mkdir")).arg("out"))
        .step(Cmd::new(&tar).args(["-xf", "tree.tar", "-C", "out"]))
        .step(Cmd::new(which("diff")).args(["-r", "tree", "out/tree"]))
        .step(Cmd::new(&tar).args(["-tvf", "tree.tar"]));
    compare_native_and_traced(&case, Backend::Seccomp);
}

/// `tar z` runs gzip (exec). gzip compressing a pipe stores no timestamp.
fn tar_czf(backend: Backend) {
    let tar = which("tar");
    which("gzip");
    let case = Case::new("tar-czf")
        .setup(make_tree)
        .step(Cmd::new(&tar).args(TAR_FLAGS).args(["-czf", "tree.tgz", "tree"]))
        .step(Cmd::new(which("mkdir")).arg("out"))
        .step(Cmd::new(&tar).args(["-xzf", "tree.tgz", "-C", "out"]))
        .step(Cmd::new(which("diff")).args(["-r", "tree", "out/tree"]))
        .step(Cmd::new(&tar).args(["-tzvf", "tree.tgz"]))
        .step(Cmd::sh("gzip -dc tree.tgz | tar -tf - | sort | head -20; gzip -l tree.tgz"));
    compare_native_and_traced(&case, backend);
}

#[test]
fn tar_czf_seccomp() {
    tar_czf(Backend::Seccomp);
}

#[test]
fn tar_czf_sud() {
    tar_czf(Backend::Sud);
}

// ---------------------------------------------------------------------------
// git (runs helpers)

fn git(args: &[&str]) -> Cmd {
    Cmd::new(which("git"))
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_DATE", "@1577836800 +0000")
        .env("GIT_COMMITTER_DATE", "@1577836800 +0000")
        .env("GIT_PAGER", "cat")
        .env("PAGER", "cat")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ADVICE", "0")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_OBJECT_DIRECTORY")
        .env_remove("GIT_CONFIG_GLOBAL")
        .env_remove("GIT_CONFIG_PARAMETERS")
        .env_remove("GIT_CONFIG_COUNT")
        .env_remove("GIT_TRACE")
        .timeout(Duration::from_secs(30))
}

fn git_work(backend: Backend) {
    let case = Case::new("git")
        .home_in_scratch()
        .setup(|dir| {
            fs::write(dir.join("README"), "first line\n").unwrap();
            fs::write(dir.join("old.txt"), "to be removed\n").unwrap();
            fs::create_dir(dir.join("src")).unwrap();
            fs::write(dir.join("src/main.c"), "int main(void) { return 0; }\n").unwrap();
        })
        .step(git(&["init", "-q", "-b", "main"]))
        .step(git(&["config", "user.name", "Usertrap Test"]))
        .step(git(&["config", "user.email", "test@usertrap.invalid"]))
        .step(git(&["add", "."]))
        .step(git(&["commit", "-q", "-m", "first commit"]))
        .step(git(&["log", "--oneline"]))
        .step(git(&["checkout", "-q", "-b", "feature"]))
        .step(Cmd::sh("echo 'second line' >> README && printf 'new\\n' > added.txt && rm old.txt"))
        .step(git(&["status", "--short"]))
        .step(git(&["add", "-A"]))
        .step(git(&["commit", "-q", "-m", "second commit"]))
        .step(git(&["status", "--short"]))
        .step(git(&["log", "--oneline", "--graph", "--all"]))
        .step(git(&["diff", "main", "feature"]))
        .step(git(&["diff", "--stat", "main", "feature"]))
        .step(git(&["checkout", "-q", "main"]))
        .step(git(&["log", "--format=%H %an <%ae> %ad %s", "--date=iso-strict", "feature"]))
        .step(git(&["fsck", "--no-progress"]))
        // The index caches stat data (ctime, inode numbers, ...) of the work
        // tree: it differs between any two runs, native or not.
        .ignore(".git/index");
    compare_native_and_traced(&case, backend);
}

#[test]
fn git_work_seccomp() {
    git_work(Backend::Seccomp);
}

#[test]
fn git_work_sud() {
    git_work(Backend::Sud);
}

// ---------------------------------------------------------------------------
// Shell pipelines (sh forks and execs)

const PIPELINES: &str = r#"
seq 1 2000 | sort -rn | head -5; echo done | wc -c
x=$(printf '%s\n' a b c | tr a-c x-z | paste -sd, -)
echo "substitution: $x"
for i in 1 2 3; do echo "loop $i"; done > loop.txt
grep -c loop < loop.txt
sed -n 2p loop.txt
(echo in a subshell; exit 3) || echo "subshell exit status $?"
sleep 0.05 & wait $!; echo "background job status $?"
yes | head -c 100000 | wc -c
awk 'BEGIN { s = 0; for (i = 1; i <= 1000; i++) s += i; print "awk", s }'
env -i /bin/sh -c 'echo from a clean environment; exit 4'; echo "status $?"
sh -c 'kill -USR1 $$'; echo "child killed by a signal: status $?"
cat loop.txt loop.txt | sort | uniq -c
ls -1
"#;

fn sh_pipelines(backend: Backend) {
    which("sh");
    let case = Case::new("sh-pipelines").step(Cmd::sh(PIPELINES));
    compare_native_and_traced(&case, backend);
}

#[test]
fn sh_pipelines_seccomp() {
    sh_pipelines(Backend::Seccomp);
}

#[test]
fn sh_pipelines_sud() {
    sh_pipelines(Backend::Sud);
}
