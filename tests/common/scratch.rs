//! Scratch directories (one per test case and backend) and snapshots of the
//! files a run left in one, with their differences in words.

use super::Backend;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Files up to this size are compared byte for byte; larger ones by size.
pub const MAX_COMPARED_FILE: u64 = 1 << 20;

/// Fixed per test case and backend, so native and traced runs see the same
/// absolute cwd while tests running in parallel never share one.
pub fn scratch_dir(case: &str, backend: Backend) -> PathBuf {
    assert!(
        !case.is_empty() && case.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)),
        "case name {:?}: use [A-Za-z0-9_.-] only",
        case
    );
    std::env::temp_dir().join("usertrap-tests").join(format!("{}-{}", case, backend.name()))
}

/// Removes `dir` (whatever permissions its contents have) and recreates it empty.
pub fn fresh_dir(dir: &Path) {
    if fs::symlink_metadata(dir).is_ok() && fs::remove_dir_all(dir).is_err() {
        make_writable(dir);
        fs::remove_dir_all(dir).unwrap_or_else(|e| panic!("cannot remove {}: {}", dir.display(), e));
    }
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {}", dir.display(), e));
}

fn make_writable(dir: &Path) {
    if let Ok(m) = fs::symlink_metadata(dir) {
        if m.is_dir() {
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700 | m.permissions().mode()));
            if let Ok(rd) = fs::read_dir(dir) {
                for e in rd.flatten() {
                    make_writable(&e.path());
                }
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// `content` is None for files larger than MAX_COMPARED_FILE.
    File {
        mode: u32,
        size: u64,
        content: Option<Vec<u8>>,
    },
    Dir {
        mode: u32,
    },
    Symlink {
        target: PathBuf,
    },
    Other {
        kind: &'static str,
        mode: u32,
    },
}

impl Entry {
    fn kind(&self) -> &'static str {
        match self {
            Entry::File { .. } => "file",
            Entry::Dir { .. } => "directory",
            Entry::Symlink { .. } => "symlink",
            Entry::Other { kind, .. } => kind,
        }
    }
}

/// Everything under a directory, by path relative to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub entries: BTreeMap<PathBuf, Entry>,
}

/// Walks `root`. `ignore` lists relative paths left out, each with everything
/// below it (e.g. ".git/index").
pub fn snapshot(root: &Path, ignore: &[String]) -> Snapshot {
    let mut snap = Snapshot::default();
    walk(root, Path::new(""), ignore, &mut snap);
    snap
}

fn walk(root: &Path, rel: &Path, ignore: &[String], snap: &mut Snapshot) {
    let dir = root.join(rel);
    let rd = fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {}", dir.display(), e));
    for e in rd {
        let e = e.unwrap_or_else(|err| panic!("cannot list {}: {}", dir.display(), err));
        let r = rel.join(e.file_name());
        if ignore.iter().any(|i| Path::new(i) == r || r.starts_with(i)) {
            continue;
        }
        let p = root.join(&r);
        let m = fs::symlink_metadata(&p).unwrap_or_else(|err| panic!("cannot stat {}: {}", p.display(), err));
        let ft = m.file_type();
        let mode = m.permissions().mode() & 0o7777;
        let entry = if ft.is_symlink() {
            Entry::Symlink { target: fs::read_link(&p).unwrap() }
        } else if ft.is_dir() {
            walk(root, &r, ignore, snap);
            Entry::Dir { mode }
        } else if ft.is_file() {
            let size = m.len();
            let content = if size <= MAX_COMPARED_FILE {
                Some(fs::read(&p).unwrap_or_else(|err| panic!("cannot read {}: {}", p.display(), err)))
            } else {
                None
            };
            Entry::File { mode, size, content }
        } else {
            let kind = if ft.is_fifo() {
                "fifo"
            } else if ft.is_socket() {
                "socket"
            } else if ft.is_block_device() {
                "block device"
            } else {
                "char device"
            };
            Entry::Other { kind, mode }
        };
        snap.entries.insert(r, entry);
    }
}

/// Human-readable differences, empty when equal.
pub fn diff_snapshots(native: &Snapshot, traced: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (p, n) in &native.entries {
        let d = p.display();
        match traced.entries.get(p) {
            None => out.push(format!("only in native run: {} ({})", d, n.kind())),
            Some(t) if t == n => {}
            Some(t) => out.push(match (n, t) {
                (Entry::File { mode: nm, size: ns, content: nc }, Entry::File { mode: tm, size: ts, content: tc }) => {
                    let mut v = Vec::new();
                    if nm != tm {
                        v.push(format!("mode {:o} vs {:o}", nm, tm));
                    }
                    if ns != ts {
                        v.push(format!("size {} vs {}", ns, ts));
                    }
                    if let (Some(a), Some(b)) = (nc, tc) {
                        if a != b {
                            let i = a.iter().zip(b.iter()).take_while(|(x, y)| x == y).count();
                            v.push(format!("content first differs at byte {}", i));
                        }
                    }
                    format!("file {}: {} (native vs traced)", d, v.join(", "))
                }
                (Entry::Dir { mode: a }, Entry::Dir { mode: b }) => {
                    format!("directory {}: mode {:o} vs {:o} (native vs traced)", d, a, b)
                }
                (Entry::Symlink { target: a }, Entry::Symlink { target: b }) => {
                    format!("symlink {}: target {} vs {} (native vs traced)", d, a.display(), b.display())
                }
                _ => format!("{}: {} in native run, {} in traced run", d, n.kind(), t.kind()),
            }),
        }
    }
    for (p, t) in &traced.entries {
        if !native.entries.contains_key(p) {
            out.push(format!("only in traced run: {} ({})", p.display(), t.kind()));
        }
    }
    out
}
