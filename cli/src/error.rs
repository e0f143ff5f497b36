//! The command's errors: a one-line message (printed as `usertrap: MESSAGE`
//! on stderr) and the exit status it ends with.

use std::fmt;
use std::io;

/// Exit status of a bad command line (clap uses the same).
pub const USAGE: i32 = 2;
/// `usertrap report`: a report file cannot be read or is not a report.
pub const BAD_INPUT: i32 = 1;
/// usertrap itself failed before running the command (no library, an
/// unwritable `-o` file, no temporary directory), like env(1) and timeout(1).
pub const OWN_FAILURE: i32 = 125;
/// The command was found but cannot be run (not executable, a directory,
/// a static binary, another architecture), as in a shell.
pub const CANNOT_EXECUTE: i32 = 126;
/// The command was not found, as in a shell.
pub const NOT_FOUND: i32 = 127;

/// An error that ends the command: printed as `usertrap: {message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The exit status.
    pub code: i32,
    /// One line, without the `usertrap: ` prefix.
    pub message: String,
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>) -> Failure {
        Failure { code, message: message.into() }
    }

    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(USAGE, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// An I/O error as a short phrase: "permission denied", "no such file or
/// directory" (std's text without its " (os error N)" suffix, lower-cased).
pub fn io_msg(e: &io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error ") {
        Some(i) => &s[..i],
        None => &s[..],
    };
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_messages_are_short() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(io_msg(&e), "no such file or directory");
        let e = io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(io_msg(&e), "permission denied");
        let e = io::Error::other("Odd thing");
        assert_eq!(io_msg(&e), "odd thing");
    }
}
