//! Finding the command to run (through PATH, as a shell does) and checking
//! that LD_PRELOAD can reach it: a dynamically linked x86-64 ELF (one with a
//! PT_INTERP program header), or a `#!` script whose interpreter is one.

use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

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
    /// `#!` and the interpreter's path.
    Script(PathBuf),
    /// Neither an ELF nor a `#!` script.
    NotExecutable,
    /// An ELF whose headers cannot be read, and why.
    Malformed(String),
}

const PT_INTERP: u32 = 3;
const EM_X86_64: u16 = 62;
const PN_XNUM: u16 = 0xffff;

fn u16_at(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2).map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4).map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8).map_or(0, |s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_le_bytes(a)
    })
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

/// Classifies the file at `path` from its first bytes and, for an ELF, its
/// program headers (parsed here: the ELF64 header, then each phdr's p_type).
pub fn inspect(path: &Path) -> io::Result<Kind> {
    let f = File::open(path)?;
    let mut head = [0u8; 256];
    let mut n = 0;
    while n < head.len() {
        match f.read_at(&mut head[n..], n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    let head = &head[..n];
    if head.starts_with(b"#!") {
        let line = head[2..].split(|&b| b == b'\n').next().unwrap_or(&[]);
        let interp = line
            .split(|&b| b == b' ' || b == b'\t')
            .find(|w| !w.is_empty())
            .map(|w| PathBuf::from(OsStr::from_bytes(w)));
        return Ok(match interp {
            Some(i) => Kind::Script(i),
            None => Kind::NotExecutable,
        });
    }
    if !head.starts_with(b"\x7fELF") {
        return Ok(Kind::NotExecutable);
    }
    Ok(elf_kind(&f, head).unwrap_or_else(|k| k))
}

/// The kind of an ELF file whose first bytes are `head`.
fn elf_kind(f: &File, head: &[u8]) -> Result<Kind, Kind> {
    if head.len() < 64 {
        return match head.get(4) {
            Some(1) => Ok(Kind::Elf32),
            _ => Err(Kind::Malformed("truncated ELF header".into())),
        };
    }
    match head[4] {
        1 => return Ok(Kind::Elf32),
        2 => {}
        c => return Err(Kind::Malformed(format!("unknown ELF class {c}"))),
    }
    let machine = u16_at(head, 18);
    if head[5] != 1 || machine != EM_X86_64 {
        return Ok(Kind::OtherMachine(machine));
    }
    match u16_at(head, 16) {
        2 | 3 => {}
        t => return Ok(Kind::Malformed(format!("not an executable (ELF type {t})"))),
    }
    let phoff = u64_at(head, 32);
    let phentsize = u16_at(head, 54) as usize;
    let mut phnum = u16_at(head, 56) as usize;
    if phnum == PN_XNUM as usize {
        // The real count is in section header 0's sh_info.
        let shoff = u64_at(head, 40);
        let sh0 = read_at(f, shoff, 64)?;
        phnum = u32_at(&sh0, 44) as usize;
    }
    if phnum == 0 {
        return Ok(Kind::Static);
    }
    if phentsize < 56 {
        return Err(Kind::Malformed(format!("program header size {phentsize} (expected 56)")));
    }
    if phnum.saturating_mul(phentsize) > 1 << 24 {
        return Err(Kind::Malformed(format!("{phnum} program headers")));
    }
    let phdrs = read_at(f, phoff, phnum * phentsize)?;
    let interp = phdrs.chunks_exact(phentsize).any(|ph| u32_at(ph, 0) == PT_INTERP);
    Ok(if interp { Kind::Dynamic } else { Kind::Static })
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
    Launch { elf: PathBuf, prefix: Vec<std::ffi::OsString> },
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
    let mut prefix: Vec<std::ffi::OsString> = Vec::new();
    for _ in 0..6 {
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
            Kind::Script(interp) => {
                if prefix.is_empty() {
                    prefix.push(path.as_os_str().to_owned());
                }
                let mut head = vec![interp.as_os_str().to_owned()];
                if let Some(arg) = script_argument(&current) {
                    head.push(arg);
                }
                head.append(&mut prefix);
                prefix = head;
                what = format!("the interpreter {} of {shown}", interp.display());
                current = interp;
            }
        }
    }
    fail(format!("{shown}: cannot execute: too many levels of #! interpreters"))
}

/// The optional argument of a `#!` line (after the interpreter, blanks
/// trimmed), as the kernel passes it.
fn script_argument(path: &Path) -> Option<std::ffi::OsString> {
    use std::os::unix::ffi::OsStringExt;
    let mut head = [0u8; 256];
    let n = File::open(path).and_then(|mut f| f.read(&mut head)).ok()?;
    let line = head.get(2..n)?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = line.iter().position(|b| !blank(b))?;
    let rest = &line[start..];
    let after_name = rest.iter().position(|b| blank(b) || *b == 0)?;
    let arg = &rest[after_name..];
    let arg = &arg[arg.iter().position(|b| !blank(b))?..];
    let end = arg.iter().rposition(|b| !blank(b)).map_or(0, |i| i + 1);
    let arg = &arg[..end];
    (!arg.is_empty()).then(|| std::ffi::OsString::from_vec(arg.to_vec()))
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
}
