//! Shared harness of usertrap's integration tests.
//!
//! The library is a cdylib loaded with LD_PRELOAD, so tests cannot link it:
//! they run programs, natively and under the library, and compare what the
//! programs did: stdout, stderr, exit status and the files left in a scratch
//! directory. Only std is used.
//!
//! Knobs read by the test runner itself (they are never passed to children):
//! - `USERTRAP_TEST_LIB=/path/to/x.so` preloads that file instead of
//!   target/release/libusertrap.so. With a no-op library
//!   (`gcc -shared -fPIC -o /tmp/noop.so -x c /dev/null`) every
//!   native-vs-traced comparison must pass: that checks the harness and the
//!   determinism of the test programs, independently of the library.
//! - `USERTRAP_TEST_KEEP=1` keeps scratch directories of passing tests too
//!   (a failing comparison always keeps its directory).
//!
//! Children run with: the test runner's environment minus `LD_PRELOAD` and
//! every `USERTRAP_*` variable, plus `LC_ALL=C`; for traced runs
//! `LD_PRELOAD=<absolute library path>` and `USERTRAP_BACKEND=<backend>`;
//! then the per-command variables. Each child is the leader of its own
//! process group (killed as a whole on timeout), has RLIMIT_CORE=0 (the
//! machine's core_pattern may be `core`, which would drop core files into the
//! compared scratch directory), and stdin from /dev/null unless bytes are given.
//!
//! Modules (all re-exported here, so a test says `use common::*;`):
//! `paths` (repository, library, C programs, PATH, python3), `backend`
//! (backends and run modes), `cmd` (a command to run), `running` (running
//! it, its status and output), `scratch` (scratch directories and file
//! snapshots), `text_diff` (where two outputs differ), `compare`
//! (native-vs-traced cases), `reports` (JSON latency reports of traced runs),
//! `machine` (root, static executables).

// Each test binary uses part of the harness (its items and the re-exports
// below).
#![allow(dead_code, unused_imports)]

mod backend;
mod cmd;
mod compare;
mod machine;
mod paths;
mod reports;
mod running;
mod scratch;
mod text_diff;

pub use backend::*;
pub use cmd::*;
pub use compare::*;
pub use machine::*;
pub use paths::*;
pub use reports::*;
pub use running::*;
pub use scratch::*;
pub use text_diff::*;
