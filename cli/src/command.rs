//! Finding the command to run (through PATH, as a shell does) and checking
//! that usertrap can run it: a dynamically linked x86-64 ELF (one with a
//! PT_INTERP program header: LD_PRELOAD reaches it), a static one (the
//! launcher loads it), or a `#!` script whose interpreter is one. The ELF
//! and `#!` rules are the kernel's, from usertrap-core.

use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use usertrap_core::elf::{self, Error as ElfError, Exec};
use usertrap_core::script;

use crate::error::{io_msg, Failure, CANNOT_EXECUTE, NOT_FOUND};

/// PATH when the environment has none (glibc's execvp default).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// Whether the calling user may execute `path` (access(2), X_OK).
fn executable(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
}

/// Resolves `cmd` as a shell would: a name containing `/` is a path;
/// otherwise the first executable regular file named `cmd` in the
/// directories of `path_var` (an empty entry is the current directory).
/// Not found: exit status 127; found but not executable (or a directory):
/// 126.
pub fn resolve(cmd: &OsStr, path_var: Option<&OsStr>) -> Result<PathBuf, Failure> {
    let shown = cmd.to_string_lossy();
    if cmd.is_empty() {
        return Err(Failure::new(NOT_FOUND, "'': command not found"));
    }
    if cmd.as_bytes().contains(&b'/') {
        let p = PathBuf::from(cmd);
        return match fs::metadata(&p) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(Failure::new(NOT_FOUND, format!("{shown}: no such file or directory")))
            }
            Err(e) => Err(Failure::new(CANNOT_EXECUTE, format!("{shown}: {}", io_msg(&e)))),
            Ok(m) if m.is_dir() => Err(Failure::new(CANNOT_EXECUTE, format!("{shown}: is a directory"))),
            Ok(_) if !executable(&p) => {
                Err(Failure::new(CANNOT_EXECUTE, format!("{shown}: permission denied (not executable)")))
            }
            Ok(_) => Ok(p),
        };
    }
    let path_var = path_var.unwrap_or(OsStr::new(DEFAULT_PATH));
    let mut not_executable: Option<PathBuf> = None;
    for dir in path_var.as_bytes().split(|&b| b == b':') {
        let dir = if dir.is_empty() { Path::new(".") } else { Path::new(OsStr::from_bytes(dir)) };
        let candidate = dir.join(cmd);
        match fs::metadata(&candidate) {
            Ok(m) if m.is_file() => {
                if executable(&candidate) {
                    return Ok(candidate);
                }
                not_executable.get_or_insert(candidate);
            }
            _ => {}
        }
    }
    match not_executable {
        Some(p) => {
            Err(Failure::new(CANNOT_EXECUTE, format!("{shown}: permission denied ({} is not executable)", p.display())))
        }
        None => Err(Failure::new(NOT_FOUND, format!("{shown}: command not found"))),
    }
}

/// What a file is, for running it under LD_PRELOAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// An x86-64 ELF with a PT_INTERP: the dynamic loader runs, and preloads.
    Dynamic,
    /// An x86-64 ELF without PT_INTERP (static, or static-pie).
    Static,
    /// A 32-bit ELF.
    Elf32,
    /// An ELF for another machine (its e_machine), or big-endian.
    OtherMachine(u16),
    /// `#!`: the interpreter's path and its optional argument.
    Script(PathBuf, Option<OsString>),
    /// Neither an ELF nor a `#!` script the kernel would run.
    NotExecutable,
    /// An ELF whose headers exec would refuse, and why.
    Malformed(String),
}

/// Reads `len` bytes at `off`, or says the file is truncated.
fn read_at(f: &File, off: u64, len: usize) -> Result<Vec<u8>, Kind> {
    let mut buf = vec![0u8; len];
    match f.read_exact_at(&mut buf, off) {
        Ok(()) => Ok(buf),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Err(Kind::Malformed(format!("truncated: {len} bytes at offset {off} are past its end")))
        }
        Err(e) => Err(Kind::Malformed(io_msg(&e))),
    }
}

/// Classifies the file at `path` from its first bytes (as many as exec
/// reads) and, for an x86-64 ELF, its program headers, by the kernel's
/// rules (usertrap-core's `elf` and `script`).
pub fn inspect(path: &Path) -> io::Result<Kind> {
    let f = File::open(path)?;
    let mut head = [0u8; script::HEAD];
    let mut n = 0;
    while n < head.len() {
        match f.read_at(&mut head[n..], n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    let head = &head[..n];
    if head.starts_with(b"#!") {
        return Ok(match script::parse(head) {
            // An empty name (`#!` alone): exec fails to open it.
            Ok(s) if !s.interpreter.is_empty() => Kind::Script(
                PathBuf::from(OsStr::from_bytes(s.interpreter)),
                s.argument.map(|a| OsStr::from_bytes(a).to_owned()),
            ),
            _ => Kind::NotExecutable,
        });
    }
    Ok(elf_kind(&f, head).unwrap_or_else(|k| k))
}

/// The kind of a file whose first bytes are `head`, by exec's checks.
fn elf_kind(f: &File, head: &[u8]) -> Result<Kind, Kind> {
    let h = match elf::check_exec(head) {
        Ok(Exec::X86_64(h)) => h,
        Ok(Exec::I386) | Err(ElfError::Machine { class: elf::ELFCLASS32, .. }) => return Ok(Kind::Elf32),
        Err(ElfError::Machine { machine, .. }) => return Ok(Kind::OtherMachine(machine)),
        Err(ElfError::NotElf) => return Ok(Kind::NotExecutable),
        Err(ElfError::Truncated) => return Err(Kind::Malformed("truncated ELF header".into())),
        Err(ElfError::Class(c)) => return Err(Kind::Malformed(format!("unknown ELF class {c}"))),
        Err(ElfError::Type(t)) => return Err(Kind::Malformed(format!("not an executable (ELF type {t})"))),
        Err(ElfError::PhentSize(n)) => {
            return Err(Kind::Malformed(format!("program header size {n} (expected {})", elf::PHDR_SIZE)))
        }
        Err(ElfError::PhNum(0)) => return Err(Kind::Malformed("no program headers".into())),
        Err(ElfError::PhNum(n)) => {
            return Err(Kind::Malformed(format!("{n} program headers (exec takes at most {})", elf::MAX_PHNUM)))
        }
        Err(ElfError::Interp) => return Err(Kind::Malformed("bad PT_INTERP".into())),
    };
    let table = read_at(f, h.phoff, h.phdrs_len())?;
    let Some(interp) = elf::find(&table, elf::PHDR_SIZE, elf::PT_INTERP) else { return Ok(Kind::Static) };
    let bad_interp = || Kind::Malformed("bad PT_INTERP (not a NUL-terminated path of at most 4096 bytes)".into());
    let (off, len) = elf::interp_span(&interp).map_err(|_| bad_interp())?;
    elf::interp_name(&read_at(f, off, len)?).map_err(|_| bad_interp())?;
    Ok(Kind::Dynamic)
}

/// How the command starts under usertrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Exec it with LD_PRELOAD: the loader preloads the library.
    Preload,
    /// A static x86-64 ELF (the command itself, or the interpreter of a
    /// `#!` chain): LD_PRELOAD cannot reach it, so usertrap-launcher loads
    /// `elf`. `prefix` replaces argv[0] when scripts are involved, as the
    /// kernel would rewrite argv ([interpreter, its argument, script, ...]).
    Launch { elf: PathBuf, prefix: Vec<OsString> },
}

/// Checks that usertrap can run the program `path` (shown as `shown`): an
/// x86-64 ELF, dynamic (preloaded) or static (launched), or a script (up to
/// 5 levels, as the kernel allows) whose interpreter is one. Otherwise exit
/// status 126 and why.
pub fn check_runnable(path: &Path, shown: &str) -> Result<Start, Failure> {
    let fail = |m: String| Err(Failure::new(CANNOT_EXECUTE, m));
    let mut current = path.to_path_buf();
    let mut what = shown.to_string();
    // The argv head a chain of scripts makes: the script's path, then each
    // interpreter (with its optional argument) in front.
    let mut prefix: Vec<OsString> = Vec::new();
    // The scripts the kernel follows, then the ELF file.
    for _ in 0..=script::MAX_LEVELS {
        let kind = match inspect(&current) {
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::NotFound && current != path => {
                return fail(format!("{what}: no such file or directory"))
            }
            Err(e) => return fail(format!("{what}: cannot read: {}", io_msg(&e))),
        };
        match kind {
            Kind::Dynamic => return Ok(Start::Preload),
            Kind::Static => return Ok(Start::Launch { elf: current, prefix }),
            Kind::Elf32 => return fail(format!("{what} is a 32-bit program: usertrap supports x86-64 programs only")),
            Kind::OtherMachine(m) => {
                return fail(format!("{what} is not an x86-64 program (ELF machine {m}): cannot run it here"))
            }
            Kind::NotExecutable => {
                return fail(format!("{what}: cannot execute: neither an ELF binary nor a #! script"))
            }
            Kind::Malformed(why) => return fail(format!("{what}: cannot execute: malformed ELF file: {why}")),
            Kind::Script(interp, argument) => {
                if prefix.is_empty() {
                    prefix.push(path.as_os_str().to_owned());
                }
                let mut head = vec![interp.as_os_str().to_owned()];
                head.extend(argument);
                head.append(&mut prefix);
                prefix = head;
                what = format!("the interpreter {} of {shown}", interp.display());
                current = interp;
            }
        }
    }
    fail(format!("{shown}: cannot execute: too many levels of #! interpreters"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shells_and_coreutils_are_dynamic() {
        let sh = resolve(OsStr::new("sh"), Some(OsStr::new("/usr/bin:/bin"))).unwrap();
        assert_eq!(inspect(&sh).unwrap(), Kind::Dynamic);
        assert_eq!(check_runnable(&sh, "sh").ok(), Some(Start::Preload));
    }

    /// A scratch text file (mode 0644), removed by the caller.
    fn text_file(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("usertrap-cli-unit-{}-{name}", std::process::id()));
        fs::write(&p, "hello\n").unwrap();
        p
    }

    #[test]
    fn not_found_and_not_executable() {
        let e = resolve(OsStr::new("no-such-command-usertrap"), Some(OsStr::new("/usr/bin"))).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (NOT_FOUND, "no-such-command-usertrap: command not found"));
        let text = text_file("plain");
        let e = resolve(text.as_os_str(), None).unwrap_err();
        assert_eq!(e.code, CANNOT_EXECUTE);
        assert!(e.message.ends_with("permission denied (not executable)"), "{}", e.message);
        let e = resolve(OsStr::new("/"), None).unwrap_err();
        assert_eq!(e.message, "/: is a directory");
        let e = resolve(OsStr::new("./nonexistent-usertrap"), None).unwrap_err();
        assert_eq!(e.code, NOT_FOUND);
        assert_eq!(inspect(&text).unwrap(), Kind::NotExecutable);
        fs::remove_file(text).unwrap();
    }

    /// A scratch file with `bytes` (mode 0755), removed by the caller.
    fn file_with(name: &str, bytes: &[u8]) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = std::env::temp_dir().join(format!("usertrap-cli-unit-{}-{name}", std::process::id()));
        fs::write(&p, bytes).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// The kernel's #! rules: the argument keeps its inner blanks and ends
    /// at a NUL; a name cut by the 256-byte limit is refused (ENOEXEC).
    #[test]
    fn scripts_as_the_kernel_reads_them() {
        let p = file_with("env-script", b"#!/usr/bin/env  python3 -u \n");
        let arg = Some(OsString::from("python3 -u"));
        assert_eq!(inspect(&p).unwrap(), Kind::Script("/usr/bin/env".into(), arg));
        fs::write(&p, b"#!/bin/sh -e\0 -x\n").unwrap();
        assert_eq!(inspect(&p).unwrap(), Kind::Script("/bin/sh".into(), Some("-e".into())));
        let mut long = b"#!/".to_vec();
        long.resize(300, b'a');
        fs::write(&p, &long).unwrap();
        assert_eq!(inspect(&p).unwrap(), Kind::NotExecutable);
        fs::remove_file(p).unwrap();
    }

    /// ELF headers exec refuses are refused here too: no program header
    /// (exec says ENOEXEC; this used to pass as a static program), more
    /// than 1170 (PN_XNUM included, which exec does not follow).
    #[test]
    fn elf_headers_exec_refuses() {
        let sh = resolve(OsStr::new("sh"), Some(OsStr::new("/usr/bin:/bin"))).unwrap();
        let mut elf = fs::read(&sh).unwrap();
        elf.truncate(64);
        elf[56..58].copy_from_slice(&0u16.to_le_bytes());
        let p = file_with("no-phdrs", &elf);
        assert_eq!(inspect(&p).unwrap(), Kind::Malformed("no program headers".into()));
        elf[56..58].copy_from_slice(&0xffffu16.to_le_bytes());
        fs::write(&p, &elf).unwrap();
        let Kind::Malformed(why) = inspect(&p).unwrap() else { panic!("PN_XNUM accepted") };
        assert_eq!(why, "65535 program headers (exec takes at most 1170)");
        fs::remove_file(p).unwrap();
    }
}
