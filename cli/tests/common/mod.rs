//! Helpers of the `usertrap` command's integration tests (std and the cli
//! crate's own dependencies only).

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The binary under test.
pub fn usertrap() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_usertrap"));
    c.env_remove("LD_PRELOAD").stdin(Stdio::null());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("USERTRAP_") {
            c.env_remove(k);
        }
    }
    c
}

/// Runs `usertrap ARGS` and returns its output.
pub fn run(args: &[&str]) -> Output {
    usertrap().args(args).output().expect("run usertrap")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fixture report's path, as a string.
pub fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name).display().to_string()
}

/// A fresh scratch directory, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("usertrap-cli-test-{}-{tag}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("create scratch dir");
        Scratch(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn file(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, text).expect("write scratch file");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A shared library that does nothing (`gcc -shared` of an empty file), to
/// preload with `--lib` where a test checks the command, not the library.
pub fn noop_lib() -> String {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        // Built under target/ (cargo's scratch space for integration tests),
        // to a private name first, then renamed: test binaries may race.
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        fs::create_dir_all(&dir).expect("create the target tmp dir");
        let lib = dir.join("libnoop.so");
        let tmp = dir.join(format!("libnoop.so.{}", std::process::id()));
        let out = Command::new("gcc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&tmp)
            .args(["-x", "c", "/dev/null"])
            .output()
            .expect("gcc is needed by these tests (make deps installs it)");
        assert!(out.status.success(), "gcc -shared failed: {}", String::from_utf8_lossy(&out.stderr));
        fs::rename(&tmp, &lib).expect("rename the no-op library");
        lib
    })
    .display()
    .to_string()
}

/// libusertrap.so beside the binary under test (target/release), built with
/// cargo if it is missing (`cargo test -p usertrap-cli` does not build it).
pub fn real_lib() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_usertrap"));
        let lib = exe.parent().expect("binary dir").join("libusertrap.so");
        if !lib.is_file() {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
            let status = Command::new(env!("CARGO"))
                .args(["build", "--release", "-p", "usertrap"])
                .current_dir(root)
                .status()
                .expect("run cargo build");
            assert!(status.success(), "cargo build --release -p usertrap failed");
        }
        assert!(lib.is_file(), "{} is missing after building it", lib.display());
        lib
    })
    .clone()
}

/// A minimal static x86-64 ELF executable, written byte by byte: one PT_LOAD
/// segment, no PT_INTERP; its code is `exit(0)` (mov $60,%eax; xor
/// %edi,%edi; syscall).
pub fn tiny_static_elf() -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    let code: [u8; 9] = [0xb8, 0x3c, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05];
    let total = (64 + 56 + code.len()) as u64;
    let mut e = Vec::new();
    // ELF header
    e.extend_from_slice(b"\x7fELF");
    e.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little-endian, version 1, System V
    e.extend_from_slice(&[0; 8]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&(BASE + 120).to_le_bytes()); // e_entry
    e.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    e.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    e.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    e.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    e.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    e.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
                                  // PT_LOAD, R+X, the whole file at BASE
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&5u32.to_le_bytes());
    e.extend_from_slice(&0u64.to_le_bytes());
    e.extend_from_slice(&BASE.to_le_bytes());
    e.extend_from_slice(&BASE.to_le_bytes());
    e.extend_from_slice(&total.to_le_bytes());
    e.extend_from_slice(&total.to_le_bytes());
    e.extend_from_slice(&0x1000u64.to_le_bytes());
    e.extend_from_slice(&code);
    assert_eq!(e.len() as u64, total);
    e
}
