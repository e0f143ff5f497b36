//! The `#!` line, read as fs/binfmt_script.c (load_script) reads it from the
//! first BINPRM_BUF_SIZE bytes of a file: the interpreter's path and one
//! optional argument, or ENOEXEC. Followed up to MAX_LEVELS interpreters
//! deep (fs/exec.c, search_binary_handler: ELOOP beyond).

/// BINPRM_BUF_SIZE (include/linux/binfmts.h): the bytes exec reads to pick
/// a format. A file shorter than this reads as if padded with NUL bytes.
pub const HEAD: usize = 256;
/// Interpreters the kernel follows (a script whose interpreter is a script
/// ...) before exec fails with ELOOP.
pub const MAX_LEVELS: usize = 5;

/// A `#!` line: the interpreter's path and its optional argument (blanks
/// inside kept: `#!/usr/bin/env python3 -u` gives `python3 -u`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shebang<'a> {
    pub interpreter: &'a [u8],
    pub argument: Option<&'a [u8]>,
}

/// Why load_script refuses a file (ENOEXEC; then no format takes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// It does not start with `#!`.
    NotScript,
    /// No interpreter on the line (blanks only, or nothing).
    NoInterpreter,
    /// No newline within HEAD bytes and the interpreter's name runs to the
    /// end of them: it may be cut short, which the kernel refuses.
    Truncated,
}

fn spacetab(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn terminator(b: u8) -> bool {
    spacetab(b) || b == 0
}

/// The `#!` line of a file whose first bytes are `head` (only the first
/// HEAD count; fewer when the file is shorter). The returned slices point
/// into `head`.
///
/// load_script, step by step: the line ends at the first `\n` in the HEAD
/// bytes; without one, at the last byte (HEAD - 1, excluded), and only if a
/// terminator (blank or NUL) follows the name's start before it. Trailing
/// blanks are trimmed; leading blanks skipped; the name runs to the first
/// blank or NUL; if a blank (not a NUL) ended it, the argument is the rest
/// after blanks, up to its first NUL. A NUL right where the name starts
/// (`#!` alone in a file, `#!\0...`) gives an empty interpreter, which the
/// kernel accepts here and then fails to open (EACCES): the caller's case.
pub fn parse(head: &[u8]) -> Result<Shebang<'_>, Error> {
    let head = head.get(..HEAD).unwrap_or(head);
    if !head.starts_with(b"#!") {
        return Err(Error::NotScript);
    }
    // The kernel's buffer is HEAD bytes, zero beyond the file's end.
    let at = |i: usize| head.get(i).copied().unwrap_or(0);
    let next_non_spacetab = |from: usize, to: usize| (from..to).find(|&i| !spacetab(at(i)));
    let next_terminator = |from: usize, to: usize| (from..to).find(|&i| terminator(at(i)));
    let buf_end = HEAD - 1;
    let mut i_end = match head.iter().position(|&b| b == b'\n') {
        Some(nl) => nl,
        None => {
            let start = next_non_spacetab(2, buf_end).ok_or(Error::NoInterpreter)?;
            next_terminator(start, buf_end).ok_or(Error::Truncated)?;
            buf_end
        }
    };
    while i_end > 2 && spacetab(at(i_end - 1)) {
        i_end -= 1;
    }
    let i_name = match next_non_spacetab(2, i_end) {
        Some(i) if i != i_end => i,
        _ => return Err(Error::NoInterpreter),
    };
    let i_sep = next_terminator(i_name, i_end);
    let name_end = i_sep.unwrap_or(i_end);
    let mut argument = None;
    if let Some(sep) = i_sep {
        if at(sep) != 0 {
            if let Some(a) = next_non_spacetab(sep, i_end) {
                let a_end = (a..i_end).find(|&i| at(i) == 0).unwrap_or(i_end);
                argument = Some(slice(head, a, a_end));
            }
        }
    }
    Ok(Shebang { interpreter: slice(head, i_name, name_end), argument })
}

/// `head[from..to]`, clipped to what `head` holds (bytes past its end are
/// the kernel's padding NULs, which never belong to a name or argument).
fn slice(head: &[u8], from: usize, to: usize) -> &[u8] {
    let to = to.min(head.len());
    head.get(from.min(to)..to).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok<'a>(i: &'a [u8], a: Option<&'a [u8]>) -> Result<Shebang<'a>, Error> {
        Ok(Shebang { interpreter: i, argument: a })
    }

    #[test]
    fn interpreter_and_argument() {
        assert_eq!(parse(b"#!/bin/sh\n"), ok(b"/bin/sh", None));
        assert_eq!(parse(b"#! /bin/sh  -e  \nx"), ok(b"/bin/sh", Some(b"-e")));
        assert_eq!(parse(b"#!/usr/bin/env python3 -u\n"), ok(b"/usr/bin/env", Some(b"python3 -u")));
        assert_eq!(parse(b"#!\t/bin/sh\t-x\t\n"), ok(b"/bin/sh", Some(b"-x")));
        assert_eq!(parse(b"#!/bin/sh"), ok(b"/bin/sh", None), "a short file: NUL padding ends the name");
        assert_eq!(parse(b"#!/bin/sh -e"), ok(b"/bin/sh", Some(b"-e")));
        assert_eq!(parse(b"#!/bin/sh\r\n"), ok(b"/bin/sh\r", None), "CR is part of the name, as in the kernel");
    }

    #[test]
    fn nul_bytes_end_names_and_arguments() {
        assert_eq!(parse(b"#!/bin/sh\0 -e\n"), ok(b"/bin/sh", None), "a NUL after the name: no argument");
        assert_eq!(parse(b"#!/bin/sh -e\0x y\n"), ok(b"/bin/sh", Some(b"-e")));
    }

    #[test]
    fn an_empty_interpreter_is_the_openers_problem() {
        // The kernel parses these as an empty name and fails to open it
        // (EACCES on Linux 6.18), not with ENOEXEC.
        assert_eq!(parse(b"#!"), ok(b"", None));
        assert_eq!(parse(b"#!\0/bin/sh\n"), ok(b"", None));
        assert_eq!(parse(b"#! \0 -e\n"), ok(b"", None));
    }

    #[test]
    fn refused_lines() {
        assert_eq!(parse(b"#\n"), Err(Error::NotScript));
        assert_eq!(parse(b""), Err(Error::NotScript));
        assert_eq!(parse(b"#!\n"), Err(Error::NoInterpreter));
        assert_eq!(parse(b"#!   \t\n"), Err(Error::NoInterpreter));
        let mut long = [b'a'; HEAD];
        long[0] = b'#';
        long[1] = b'!';
        assert_eq!(parse(&long), Err(Error::Truncated), "a name cut short by the 256-byte limit");
        let mut blanks = [b' '; HEAD];
        blanks[0] = b'#';
        blanks[1] = b'!';
        assert_eq!(parse(&blanks), Err(Error::NoInterpreter));
    }

    #[test]
    fn the_line_limit() {
        // No newline in 256 bytes, but a blank after the name: the line is
        // the first 255 bytes (the argument is cut, as the kernel cuts it).
        let mut h = [b'x'; 300];
        h[..10].copy_from_slice(b"#!/bin/sh ");
        let s = parse(&h).unwrap();
        assert_eq!(s.interpreter, b"/bin/sh");
        assert_eq!(s.argument.map(<[u8]>::len), Some(HEAD - 1 - 10));
        // A newline after the first 256 bytes does not count.
        let mut h = [b'a'; 300];
        h[..2].copy_from_slice(b"#!");
        h[280] = b'\n';
        assert_eq!(parse(&h), Err(Error::Truncated));
        // The name may fill the line when the newline is in the buffer.
        let mut h = [b'a'; HEAD];
        h[..2].copy_from_slice(b"#!");
        h[HEAD - 1] = b'\n';
        assert_eq!(parse(&h).unwrap().interpreter.len(), HEAD - 3);
    }
}
