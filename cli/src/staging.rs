//! Copies of the library and the launcher that every user can reach.
//!
//! A program that switches user (`runuser`, `su`, a daemon dropping root)
//! execs its next program as that user, and under usertrap that exec goes
//! through usertrap-launcher and preloads libusertrap.so, both opened with
//! the new user's rights. Built in a private checkout (a home directory of
//! mode 0700 or 0750, a `mktemp -d`), they cannot be reached, and the
//! program would fail where it natively runs. So when the command runs as
//! root (the one that can switch user) and the pair is not reachable by
//! every user, the run uses copies in a fresh directory under the temporary
//! directory, readable by all and removed when the run ends.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Permission bits for "others": read, and execute (search for directories).
const OTHERS_READ: u32 = 0o004;
const OTHERS_EXEC: u32 = 0o001;

/// A directory of copies, removed on drop.
pub struct Staged {
    dir: PathBuf,
    lib: PathBuf,
}

impl Staged {
    /// The library the run should preload (the launcher is beside it).
    pub fn lib(&self) -> &Path {
        &self.lib
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Copies of `lib` and `launcher` that every user can reach, when the run
/// is root's and the originals are not; None when they need none. An error
/// only when copies were needed and could not be made (the message says how
/// to do without).
pub fn for_other_users(lib: &Path, launcher: &Path, euid: u32) -> Result<Option<Staged>, String> {
    if euid != 0 || (reachable(lib, false) && (!launcher.exists() || reachable(launcher, true))) {
        return Ok(None);
    }
    let mut tried = Vec::new();
    for base in [std::env::temp_dir(), PathBuf::from("/tmp"), PathBuf::from("/dev/shm")] {
        match stage_in(&base, lib, launcher) {
            Ok(s) if reachable(&s.lib, false) => return Ok(Some(s)),
            Ok(s) => tried.push(format!("{}: not reachable by other users", s.dir.display())),
            Err(e) => tried.push(format!("{}: {e}", base.display())),
        }
    }
    Err(format!(
        "{} is not reachable by other users (a directory on its path is private), so a program that switches \
         user could not run under it, and no copy could be made ({}); install usertrap where every user can read it",
        lib.display(),
        tried.join("; ")
    ))
}

/// Every directory on the path searchable by others, the file readable by
/// others (and executable when `exec`).
fn reachable(file: &Path, exec: bool) -> bool {
    let mode = |p: &Path| fs::metadata(p).map(|m| m.permissions().mode()).ok();
    let want = OTHERS_READ | if exec { OTHERS_EXEC } else { 0 };
    if mode(file).is_none_or(|m| m & want != want) {
        return false;
    }
    file.ancestors().skip(1).all(|dir| mode(dir).is_some_and(|m| m & OTHERS_EXEC != 0))
}

fn stage_in(base: &Path, lib: &Path, launcher: &Path) -> io::Result<Staged> {
    let dir = base.join(format!("usertrap-{}-{}", std::process::id(), unique()));
    // Private while it fills, so nobody sees a half-written copy.
    fs::DirBuilder::new().mode(0o700).create(&dir)?;
    let staged = Staged { lib: dir.join(lib.file_name().unwrap_or("libusertrap.so".as_ref())), dir };
    fs::copy(lib, &staged.lib)?;
    fs::set_permissions(&staged.lib, fs::Permissions::from_mode(0o755))?;
    if launcher.exists() {
        let copy = staged.dir.join(launcher.file_name().unwrap_or("usertrap-launcher".as_ref()));
        fs::copy(launcher, &copy)?;
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755))?;
    }
    fs::set_permissions(&staged.dir, fs::Permissions::from_mode(0o755))?;
    Ok(staged)
}

/// Nanoseconds of the wall clock: enough, with the pid, for a fresh name.
fn unique() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("usertrap-staging-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("inner")).unwrap();
        fs::write(d.join("inner/libusertrap.so"), b"lib").unwrap();
        fs::write(d.join("inner/usertrap-launcher"), b"launcher").unwrap();
        fs::set_permissions(d.join("inner/libusertrap.so"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(d.join("inner/usertrap-launcher"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    #[test]
    fn a_private_directory_on_the_path_is_staged_for_root_only() {
        if !std::env::temp_dir().ancestors().all(|a| fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
        {
            println!("SKIPPED: the temporary directory is private itself");
            return;
        }
        let d = scratch("private");
        let (lib, launcher) = (d.join("inner/libusertrap.so"), d.join("inner/usertrap-launcher"));
        assert!(for_other_users(&lib, &launcher, 0).unwrap().is_none(), "reachable: no copy");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(for_other_users(&lib, &launcher, 1000).unwrap().is_none(), "not root: no copy");
        let staged = for_other_users(&lib, &launcher, 0).unwrap().expect("a copy");
        let dir = staged.lib().parent().unwrap().to_path_buf();
        assert_eq!(fs::read(staged.lib()).unwrap(), b"lib");
        assert_eq!(fs::read(dir.join("usertrap-launcher")).unwrap(), b"launcher");
        assert!(reachable(staged.lib(), false) && reachable(&dir.join("usertrap-launcher"), true));
        drop(staged);
        assert!(!dir.exists(), "removed when the run ends");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_others_cannot_read_is_not_reachable() {
        let d = scratch("unreadable");
        let lib = d.join("inner/libusertrap.so");
        assert!(reachable(&lib, true));
        fs::set_permissions(&lib, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!reachable(&lib, false));
        fs::remove_dir_all(&d).unwrap();
    }
}
