//! The run's site cache (USERTRAP_SITE_CACHE): a directory made for the
//! run (mode 0700, in the temporary directory), where the processes of the
//! tree share the libc sites they proved (the library's
//! src/patch/install/sitecache.rs), removed with everything in it when the
//! run ends. A directory the caller set already is used as it is, and kept.

use std::env;
use std::ffi::CString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

pub const VAR: &str = "USERTRAP_SITE_CACHE";

pub struct SiteCache {
    dir: PathBuf,
}

impl SiteCache {
    /// A fresh directory; None if the caller set one, or none can be made
    /// (the run goes on without: each site is then proven in each image).
    pub fn create() -> Option<SiteCache> {
        if env::var_os(VAR).is_some() {
            return None;
        }
        let template = env::temp_dir().join("usertrap-sites.XXXXXX");
        let template = CString::new(template.into_os_string().into_vec()).ok()?;
        let raw = template.into_raw();
        // SAFETY: `raw` is a NUL-terminated buffer we own, ending in six X,
        // which mkdtemp replaces in place.
        let made = unsafe { !libc::mkdtemp(raw).is_null() };
        // SAFETY: `raw` came from CString::into_raw above, its length unchanged.
        let name = unsafe { CString::from_raw(raw) };
        if !made {
            return None;
        }
        let dir = PathBuf::from(std::ffi::OsString::from_vec(name.into_bytes()));
        // The library accepts absolute paths only.
        dir.is_absolute().then_some(SiteCache { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for SiteCache {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
