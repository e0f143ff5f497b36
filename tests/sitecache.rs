//! The site cache (issue 12, USERTRAP_SITE_CACHE): libc sites proven in one
//! process of the tree are patched in the others before their first call.
//! In `bash -c 'cat F; cat F'` bash never calls `posix_fadvise` or `write`;
//! the first cat proves those sites lazily (their first calls slow), writes
//! them to the cache at its end, and the second cat patches them from the
//! cache at its first trap, so their first calls are fast. A cache file
//! that is corrupted, truncated, garbage, for another build ID, writable by
//! others or a symbolic link is refused whole: the program behaves as
//! natively and nothing comes from it. Under `usertrap stat` the cache is
//! the command's own, and nothing is left behind. A parent (bash) patches
//! what its earlier fork children proved before it forks again. Both
//! backends.

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const SCRIPT: &str = "cat /etc/passwd; cat /etc/passwd";
/// Syscalls of cat's that bash never makes.
const CATS_OWN: [&str; 2] = ["fadvise64", "write"];

fn usertrap_cli() -> PathBuf {
    lib_path().with_file_name("usertrap")
}

/// Per cat image, in start order: (fast, slow) calls of its libc sites of
/// `name`, from `reports` (process reports, JSON).
fn cat_calls(reports: &[Value], name: &str) -> Vec<(u64, u64)> {
    let mut cats: Vec<&Value> = reports.iter().filter(|r| r["command"] == "cat").collect();
    cats.sort_by_key(|r| r["start_ns"].as_u64().unwrap());
    cats.iter()
        .map(|r| {
            let (mut fast, mut slow) = (0, 0);
            for s in r["sites"].as_array().into_iter().flatten() {
                if s["name"] == name && s["object"].as_str().is_some_and(|o| o.contains("/libc.so")) {
                    fast += s["fast_calls"].as_u64().unwrap();
                    slow += s["slow_calls"].as_u64().unwrap();
                }
            }
            (fast, slow)
        })
        .collect()
}

fn reports_in(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for (path, text) in report_files(dir) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            out.push(serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
        }
    }
    out
}

/// `bash -c SCRIPT` natively and under the library (LD_PRELOAD) with
/// `cache` as USERTRAP_SITE_CACHE (None: no cache); the same output and
/// status both ways. The reports of the traced run.
fn run_script(case: &str, backend: Backend, cache: Option<&Path>) -> Vec<Value> {
    run_bash(SCRIPT, case, backend, cache)
}

/// `bash -c script`, natively and traced (see [`run_script`]).
fn run_bash(script: &str, case: &str, backend: Backend, cache: Option<&Path>) -> Vec<Value> {
    let native = run_native(&Cmd::new(which("bash")).args(["-c", script]));
    assert!(native.status.success(), "native run failed: {}", native.stderr_text());
    let dir = fresh_reports_dir(case, backend);
    let mut cmd = with_json_reports(Cmd::new(which("bash")).args(["-c", script]), &dir);
    if let Some(c) = cache {
        cmd = cmd.env("USERTRAP_SITE_CACHE", c);
    }
    let traced = run_traced(&cmd, backend);
    assert_eq!(traced.status, native.status, "{case} ({backend}): status; stderr:\n{}", traced.stderr_text());
    assert_eq!(traced.stdout_text(), native.stdout_text(), "{case} ({backend}): stdout");
    assert_eq!(traced.stderr_text(), native.stderr_text(), "{case} ({backend}): stderr");
    reports_in(&dir)
}

fn cache_dir(case: &str, backend: Backend) -> PathBuf {
    let dir = scratch_dir(&format!("{case}-cache"), backend);
    fresh_dir(&dir);
    dir
}

#[test]
fn sites_proven_by_one_image_are_fast_in_the_next() {
    for b in Backend::ALL {
        let cache = cache_dir("sitecache-on", b);
        let reports = run_script("sitecache-on", b, Some(&cache));
        for name in CATS_OWN {
            let got = cat_calls(&reports, name);
            assert_eq!(got.len(), 2, "{b}: two cat images");
            assert!(got[0].1 > 0, "{b}: {name} in the first cat: proven there, slow first ({got:?})");
            assert!(got[1].0 > 0 && got[1].1 == 0, "{b}: {name} in the second cat: from the cache, fast ({got:?})");
        }
        // One file, named by libc's build ID, of whole lines.
        let files: Vec<_> = fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1, "{b}: {files:?}");
        let text = fs::read_to_string(&files[0]).unwrap();
        assert!(text.ends_with('\n'), "{b}: {text}");
        let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
        assert!(text.lines().all(|l| l.starts_with(&format!("{name}:"))), "{b}: {text}");
    }
}

#[test]
fn without_a_site_cache_the_next_image_proves_them_again() {
    for b in Backend::ALL {
        let reports = run_script("sitecache-off", b, None);
        for name in CATS_OWN {
            let got = cat_calls(&reports, name);
            assert_eq!(got.len(), 2, "{b}: two cat images");
            assert!(got.iter().all(|&(_, slow)| slow > 0), "{b}: {name}'s first call slow in each cat ({got:?})");
        }
    }
}

/// A valid cache file made by a run of `bash -c 'cat F'`: (file name, text).
fn valid_cache_file(backend: Backend) -> (String, String) {
    let cache = cache_dir("sitecache-seed", backend);
    let native = run_native(&Cmd::new(which("bash")).args(["-c", "cat /etc/passwd"]));
    let traced = run_traced(
        &Cmd::new(which("bash")).args(["-c", "cat /etc/passwd"]).env("USERTRAP_SITE_CACHE", &cache),
        backend,
    );
    assert_eq!(traced.stdout_text(), native.stdout_text());
    let files: Vec<_> = fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{backend}: {files:?}");
    let text = fs::read_to_string(&files[0]).unwrap();
    (files[0].file_name().unwrap().to_str().unwrap().to_string(), text)
}

fn map_lines(text: &str, f: impl Fn(&str) -> String) -> String {
    text.lines().map(|l| f(l) + "\n").collect()
}

/// Flip one hex digit: 0 <-> 1, others to 0.
fn flip(c: char) -> char {
    if c == '0' {
        '1'
    } else {
        '0'
    }
}

#[test]
fn a_bad_cache_file_is_refused_whole() {
    for b in Backend::ALL {
        let (name, good) = valid_cache_file(b);
        assert!(!good.is_empty(), "{b}: the first cat's sites");
        // (case, contents, mode, as a symbolic link)
        let truncated = map_lines(&good, |l| l[..l.len() / 2].to_string());
        let bad_sum = map_lines(&good, |l| {
            let mut s: Vec<char> = l.chars().collect();
            let last = s.len() - 1;
            s[last] = flip(s[last]);
            s.into_iter().collect()
        });
        let other_id = map_lines(&good, |l| {
            let mut s: Vec<char> = l.chars().collect();
            s[0] = flip(s[0]);
            s.into_iter().collect()
        });
        // The first site's offset moved by one (its checksum kept).
        let shifted = map_lines(&good, |l| {
            let (id, rest) = l.split_once(':').unwrap();
            let first_end = rest.find([',', '.', ':']).unwrap();
            let off = u64::from_str_radix(&rest[1..first_end], 16).unwrap();
            format!("{id}:{}{:x}{}", &rest[..1], off + 1, &rest[first_end..])
        });
        let garbage = "\u{0}\u{7f}garbage::\n:::\n;;;\nzz:s1:0\n".to_string() + &"x".repeat(5000) + "\n";
        let cases: [(&str, String, u32, bool); 8] = [
            ("intact", good.clone(), 0o600, false),
            ("truncated", truncated, 0o600, false),
            ("bad-checksum", bad_sum, 0o600, false),
            ("other-build-id", other_id, 0o600, false),
            ("shifted", shifted, 0o600, false),
            ("garbage", garbage, 0o600, false),
            ("others-may-write", good.clone(), 0o666, false),
            ("symlink", good.clone(), 0o600, true),
        ];
        for (case, text, mode, link) in cases {
            let cache = cache_dir(&format!("sitecache-bad-{case}"), b);
            let file = cache.join(&name);
            if link {
                let target = cache.join("elsewhere");
                fs::write(&target, &text).unwrap();
                std::os::unix::fs::symlink(&target, &file).unwrap();
            } else {
                fs::write(&file, &text).unwrap();
                fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
            }
            let reports = run_script(&format!("sitecache-bad-{case}"), b, Some(&cache));
            let first = cat_calls(&reports, "fadvise64")[0];
            if case == "intact" {
                // The check below can fail: a file that is used makes it fast.
                assert_eq!(first.1, 0, "{b}: intact: the first cat's fadvise64 from the cache ({first:?})");
            } else {
                assert!(first.1 > 0, "{b}: {case}: the first cat's fadvise64 must not come from the file ({first:?})");
            }
        }
    }
}

#[test]
fn usertrap_stat_uses_a_cache_of_its_own_and_leaves_nothing() {
    for b in Backend::ALL {
        let tmp = scratch_dir("sitecache-stat-tmp", b);
        fresh_dir(&tmp);
        let out_dir = fresh_reports_dir("sitecache-stat", b);
        let out = out_dir.join("agg.json");
        let native = run_native(&Cmd::new(which("bash")).args(["-c", SCRIPT]));
        let stat = Cmd::new(usertrap_cli())
            .args(["stat", "--backend", b.name(), "--json", "-f", "-o"])
            .arg(&out)
            .args(["--", "bash", "-c", SCRIPT])
            .env("TMPDIR", &tmp)
            .env_remove("USERTRAP_SITE_CACHE");
        let got = run_native(&stat);
        assert_eq!(got.status, native.status, "{b}: status; stderr:\n{}", got.stderr_text());
        assert_eq!(got.stdout_text(), native.stdout_text(), "{b}: stdout");
        let left: Vec<_> = fs::read_dir(&tmp).unwrap().map(|e| e.unwrap().path()).collect();
        assert!(left.is_empty(), "{b}: left behind in TMPDIR: {left:?}");
        let agg: Value = serde_json::from_str(&fs::read_to_string(&out).unwrap()).unwrap();
        let reports = agg["processes"].as_array().unwrap().clone();
        for name in CATS_OWN {
            let got = cat_calls(&reports, name);
            assert_eq!(got.len(), 2, "{b}: two cat images");
            assert!(got[1].0 > 0 && got[1].1 == 0, "{b}: {name} in the second cat: from the cache, fast ({got:?})");
        }
    }
}

/// A parent hands its next children what its earlier children proved: in
/// `bash -c 'a=$(echo 1); b=$(echo 2); echo $a$b'` each command
/// substitution is a fork child that writes (bash itself has not written
/// yet); the first proves libc's `write` and adds it to the cache at its
/// exit, bash reads the addition before its next fork and patches it, so
/// the second child's write is fast from its first call. Without a cache
/// each child proves it again. (fast, slow) of `write` per fork child.
fn subshell_writes(case: &str, backend: Backend, cache: Option<&Path>) -> Vec<(u64, u64)> {
    let script = "a=$(echo 1); b=$(echo 2); echo $a$b";
    let reports = run_bash(script, case, backend, cache);
    let mut bashes: Vec<Value> = reports.into_iter().filter(|r| r["command"] == "bash").collect();
    bashes.sort_by_key(|r| r["start_ns"].as_u64().unwrap());
    assert_eq!(bashes.len(), 3, "{case} ({backend}): bash and its two command substitutions");
    bashes[1..]
        .iter()
        .map(|r| {
            let (mut fast, mut slow) = (0, 0);
            for s in r["sites"].as_array().into_iter().flatten() {
                if s["name"] == "write" && s["object"].as_str().is_some_and(|o| o.contains("/libc.so")) {
                    fast += s["fast_calls"].as_u64().unwrap();
                    slow += s["slow_calls"].as_u64().unwrap();
                }
            }
            (fast, slow)
        })
        .collect()
}

#[test]
fn a_parent_patches_what_its_earlier_children_proved() {
    for b in Backend::ALL {
        let cache = cache_dir("sitecache-fork", b);
        assert_eq!(subshell_writes("sitecache-fork", b, Some(&cache)), [(0, 1), (1, 0)], "{b}: with a cache");
        assert_eq!(subshell_writes("sitecache-fork-off", b, None), [(0, 1), (0, 1)], "{b}: without one");
    }
}

/// Only the first 32 KiB of a cache file are read, and a file that long
/// is not appended to: valid lines past that point are not used, and the
/// file does not grow.
#[test]
fn a_full_cache_file_is_read_no_further_and_not_grown() {
    for b in Backend::ALL {
        let (name, good) = valid_cache_file(b);
        let cache = cache_dir("sitecache-full", b);
        let file = cache.join(&name);
        let filler = format!("{}\n", "x".repeat(99)).repeat(330); // 33,000 bytes
        fs::write(&file, filler + &good).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        let before = fs::metadata(&file).unwrap().len();
        let reports = run_script("sitecache-full", b, Some(&cache));
        let first = cat_calls(&reports, "fadvise64")[0];
        assert!(first.1 > 0, "{b}: the valid lines past 32 KiB are not read ({first:?})");
        assert_eq!(fs::metadata(&file).unwrap().len(), before, "{b}: the full file did not grow");
    }
}

/// libc's path, from this test process's own mappings.
fn libc_path() -> PathBuf {
    let maps = fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps.lines().find(|l| l.contains("/libc.so")).expect("libc mapped in the test process");
    PathBuf::from(&line[line.find('/').unwrap()..])
}

/// The bytes of ELF file `elf` at virtual addresses [at, at + len) (its
/// PT_LOAD headers map them to file offsets).
fn bytes_at(elf: &[u8], at: u64, len: usize) -> Option<&[u8]> {
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap());
    let (phoff, phnum) = (u64_at(0x20) as usize, u16::from_le_bytes([elf[0x38], elf[0x39]]) as usize);
    (0..phnum).map(|i| phoff + i * 56).find_map(|ph| {
        let is_load = u32::from_le_bytes(elf[ph..ph + 4].try_into().unwrap()) == 1;
        let (off, vaddr, filesz) = (u64_at(ph + 8), u64_at(ph + 16), u64_at(ph + 32));
        (is_load && at >= vaddr && at + len as u64 <= vaddr + filesz)
            .then(|| &elf[(off + at - vaddr) as usize..(off + at - vaddr) as usize + len])
    })
}

/// FNV-1a 64, the cache lines' checksum of the original bytes.
fn fnv(parts: &[&[u8]]) -> u64 {
    parts
        .iter()
        .flat_map(|p| p.iter())
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// Lines of the cache written by processes that did not see each other
/// can give two sites one Form P pad: each process proved it free. Here a
/// second line gives every Form P pad of a real run's lines to another
/// `syscall` within a short jump of it (what a process that called only
/// that one could have written). Only the first site may have the pad:
/// patching both sent cat's `read` through the other site's trampoline and
/// back into another function (cat died of SIGSEGV).
#[test]
fn two_cache_lines_never_give_one_pad_to_two_sites() {
    let libc = fs::read(libc_path()).unwrap();
    for b in Backend::ALL {
        let (name, good) = valid_cache_file(b);
        let mut forged = String::new();
        for item in good.lines().flat_map(|l| l.split(':').nth(1).unwrap().split(',')).filter(|i| i.starts_with('p')) {
            let f: Vec<u64> = item[1..].split('.').map(|x| u64::from_str_radix(x, 16).unwrap()).collect();
            let (sys, pad, pad_len) = (f[0], f[2], f[3] as usize);
            let pad_bytes = bytes_at(&libc, pad, pad_len).expect("the pad in libc's file");
            for other in pad.saturating_sub(129)..pad + 126 {
                let reach = (pad as i64 - (other as i64 + 2)).abs() <= 127;
                let apart = other + 2 <= pad || other >= pad + pad_len as u64;
                if other == sys || !reach || !apart || bytes_at(&libc, other, 2) != Some(&[0x0f, 0x05][..]) {
                    continue;
                }
                let sum = fnv(&[&[0x0f, 0x05], pad_bytes]);
                forged += &format!("{name}:p{other:x}.0.{pad:x}.{pad_len:x}:{sum:x}\n");
            }
        }
        assert!(!forged.is_empty(), "{b}: a `syscall` within reach of a Form P pad of cat's ({good})");
        let cache = cache_dir("sitecache-shared-pad", b);
        let file = cache.join(&name);
        fs::write(&file, good + &forged).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        // run_script compares status and output with the native run.
        let reports = run_script("sitecache-shared-pad", b, Some(&cache));
        let reads = cat_calls(&reports, "read");
        assert!(reads.iter().all(|&(fast, _)| fast > 0), "{b}: cat's reads at their own fast sites ({reads:?})");
    }
}

/// (fast, slow) calls of exit_group in the report of `command`'s image.
fn exit_calls(reports: &[Value], command: &str) -> (u64, u64) {
    let r = reports.iter().find(|r| r["command"] == command).unwrap_or_else(|| panic!("{command}'s report"));
    let sites = r["sites"].as_array().into_iter().flatten().filter(|s| s["name"] == "exit_group");
    sites.fold((0, 0), |(f, s), site| {
        (f + site["fast_calls"].as_u64().unwrap(), s + site["slow_calls"].as_u64().unwrap())
    })
}

/// A process whose last calls are a vfork, its child's execve and its own
/// exit (the `cc` driver's): with exit_group's site proven before the
/// vfork, or in the cache (proven by the run before), its exit is fast. The parent's area named the vfork
/// child's until some other call looked it up, and the fast exit declined
/// it: every `cc` of `make` exited on the slow path. Natively and traced
/// compared (status, output) on both runs.
#[test]
fn an_exit_right_after_a_vfork_takes_the_fast_path() {
    let prog = c_test_binary("vfork_then_exit");
    let native = run_native(&Cmd::new(&prog));
    assert!(native.status.success(), "native: {}", native.stderr_text());
    for b in Backend::ALL {
        let cache = cache_dir("sitecache-vfork-exit", b);
        let mut exits = Vec::new();
        for run in ["first", "second"] {
            let dir = fresh_reports_dir(&format!("sitecache-vfork-exit-{run}"), b);
            let cmd = with_json_reports(Cmd::new(&prog), &dir).env("USERTRAP_SITE_CACHE", &cache);
            let traced = run_traced(&cmd, b);
            assert_eq!(traced.status, native.status, "{b} ({run} run): {}", traced.stderr_text());
            assert_eq!(traced.stdout_text(), native.stdout_text(), "{b} ({run} run)");
            exits.push(exit_calls(&reports_in(&dir), "vfork_then_exit"));
        }
        // The first run proves the site before its vfork (libc's `_exit`,
        // proven for the child: install::prove_exit_sites), the second has
        // it from the cache too.
        assert_eq!(exits, [(1, 0), (1, 0)], "{b}: (fast, slow) exit_group per run");
    }
}

/// Lines of the cache file after `bash -c script` with a fresh cache.
fn cache_lines_after(script: &str, case: &str, backend: Backend) -> usize {
    let cache = cache_dir(case, backend);
    run_bash(script, case, backend, Some(&cache));
    let files: Vec<_> = fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect();
    files.iter().map(|f| fs::read_to_string(f).unwrap().lines().count()).sum()
}

/// An exec'd image that never traps (`/bin/true`) gets libc's sites from
/// its launcher (the carried entry's and the file's) and proves nothing
/// itself: it adds no line to the file. (Each one wrote all those sites
/// back, a line per process, which every later image read and checked.)
#[test]
fn an_image_that_proves_nothing_adds_nothing_to_the_cache() {
    for b in Backend::ALL {
        let one = cache_lines_after("cat /etc/passwd; /bin/true", "sitecache-lines-one", b);
        let three = cache_lines_after("cat /etc/passwd; /bin/true; /bin/true; /bin/true", "sitecache-lines-three", b);
        assert!(one > 0, "{b}: cat's line");
        assert_eq!(three, one, "{b}: lines with one /bin/true and with three");
    }
}
