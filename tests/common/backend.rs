//! The two backends (`USERTRAP_BACKEND`) and the two ways a command runs:
//! natively or under the library with one backend.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    Seccomp,
    Sud,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Seccomp, Backend::Sud];

    /// Value of USERTRAP_BACKEND.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Seccomp => "seccomp",
            Backend::Sud => "sud",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Native,
    Traced(Backend),
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Native => f.write_str("native"),
            Mode::Traced(b) => write!(f, "traced ({})", b),
        }
    }
}
