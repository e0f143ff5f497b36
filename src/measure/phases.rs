//! Where a process's fixed cost goes (USERTRAP_PHASES=1, a diagnostic for
//! `make bench`): a timestamp at each boundary of the start-up and of the
//! report at exit, printed as one line on stderr when the report is done.
//! Marks are taken always (one clock read each, into a static array): the
//! setting is only known once the first phases are over.
//!
//! Never: change what the library does; the line is the only output.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::measure::stats;
use crate::rt::log::Line;

/// Phase boundaries, in the order they are passed; each mark ends the phase
/// named after it, which began at the previous mark taken.
#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // the launched image's marks are the constructor's
pub enum Mark {
    /// In an image the launcher started: when the launcher began (its own
    /// Begin), so the first phases are the launcher's and the loader's time.
    Launcher,
    /// ... the launcher's interposer started (the bridge's gate, handlers,
    /// backend).
    LauncherInit,
    /// ... the program and its loader mapped, the initial stack built: the
    /// launcher jumps to the loader (the next phase is the loader's, up to
    /// the library's constructor).
    LauncherMap,
    /// The library's constructor was entered (after the loader's work and
    /// the constructors before ours): see [`constructor_entered`].
    Constructor,
    /// The gate is mapped, the settings read and the clock started.
    Begin,
    /// USERTRAP_* read, report settings made.
    Settings,
    /// The main thread's area and signal stack mapped and installed.
    ThreadArea,
    /// The program's mask and alternate stack taken over.
    MaskStack,
    /// The report-at-death wrappers installed for fatal signals.
    FatalSignals,
    /// SIGSYS, SIGSEGV, SIGILL handlers installed.
    Handlers,
    /// What exec must carry recorded (and the launcher checked).
    ExecEnv,
    /// Greeted `usertrap stat`'s collector (if any).
    Greet,
    /// Patching enabled (XSAVE size read).
    Patching,
    /// The sites the exec'ing image carried patched (patch::install::prepatch).
    Prepatch,
    /// The backend armed: the program is intercepted from here.
    Armed,
    /// In an image the launcher started: environment and auxv given back.
    Environment,
    /// ... dispositions set under the launcher adopted.
    Adopt,
    /// ... the launcher unmapped, /proc/self/exe set.
    Unmap,
    /// The process image ends (the report starts): the program's own time.
    Exit,
    /// Every thread's figures merged.
    Merge,
    /// The TSC frequency known (calibrated, or given).
    Calibrate,
    /// The report rendered.
    Render,
    /// The report delivered (written, sent or linked in).
    Deliver,
}

const NAMES: [&str; 23] = [
    "launcher",
    "launcher_init",
    "launcher_map",
    "loader",
    "constructor",
    "settings",
    "thread_area",
    "mask_stack",
    "fatal_signals",
    "handlers",
    "exec_env",
    "greet",
    "patching",
    "prepatch",
    "arm",
    "environment",
    "adopt",
    "unmap",
    "program",
    "merge",
    "calibrate",
    "render",
    "deliver",
];

static MARKS: [AtomicU64; 23] = [const { AtomicU64::new(0) }; 23];
/// CLOCK_MONOTONIC when the library's constructor was entered (the clock
/// is not chosen yet then: the Constructor mark is derived from it at the
/// end, see `print`).
static ENTERED_MONO_NS: AtomicU64 = AtomicU64::new(0);
static ON: AtomicBool = AtomicBool::new(false);

/// Record that the phase ending at `m` ends now (the clock must be started).
#[inline]
pub fn mark(m: Mark) {
    if let Some(slot) = MARKS.get(m as usize) {
        slot.store(stats::now().max(1), Ordering::Relaxed);
    }
}

/// The launcher's marks (the clock's values in its image: the same clock,
/// read the same way, as this image's): when it began, started its
/// interposer and jumped to the program (`Handoff::launcher_marks`).
pub fn launcher_marks(t: [u64; 3]) {
    for (m, v) in [Mark::Launcher, Mark::LauncherInit, Mark::LauncherMap].into_iter().zip(t) {
        if let Some(slot) = MARKS.get(m as usize) {
            slot.store(v, Ordering::Relaxed);
        }
    }
}

/// The library's constructor begins, at `mono_ns` (CLOCK_MONOTONIC, read
/// through the vDSO: no syscall, no gate needed).
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // the constructor's
pub fn constructor_entered(mono_ns: u64) {
    ENTERED_MONO_NS.store(mono_ns, Ordering::Relaxed);
}

/// The Constructor mark, in the clock's ticks at `hz`: the Begin mark less
/// the CLOCK_MONOTONIC time from the constructor's entry to the clock's
/// start (stats::start_clock, right before Begin).
fn derive_constructor_mark(hz: u64) {
    let entered = ENTERED_MONO_NS.load(Ordering::Relaxed);
    let begin = MARKS.get(Mark::Begin as usize).map_or(0, |m| m.load(Ordering::Relaxed));
    let started = stats::start_mono_ns();
    if entered == 0 || begin == 0 || started < entered {
        return;
    }
    let ticks = ((started - entered) as u128 * hz as u128 / 1_000_000_000) as u64;
    if let Some(slot) = MARKS.get(Mark::Constructor as usize) {
        slot.store(begin.saturating_sub(ticks).max(1), Ordering::Relaxed);
    }
}

/// This image's Begin mark (0 if not taken).
#[cfg_attr(not(feature = "launcher"), allow(dead_code))] // the launcher's
pub fn begun() -> u64 {
    MARKS.get(Mark::Begin as usize).map_or(0, |m| m.load(Ordering::Relaxed))
}

/// USERTRAP_PHASES=1.
pub fn enable(on: bool) {
    ON.store(on, Ordering::Relaxed);
    if on {
        // Its line goes to stderr at exit.
        crate::rt::log::want_stderr_kept();
    }
}

/// A fork child: its start-up was its parent's.
pub fn forget() {
    for m in &MARKS {
        m.store(0, Ordering::Relaxed);
    }
    ENTERED_MONO_NS.store(0, Ordering::Relaxed);
}

/// At the end of the report: one line, the microseconds of each phase
/// taken, at `hz` clock ticks per second.
pub fn print(hz: u64) {
    if !ON.load(Ordering::Relaxed) || hz == 0 {
        return;
    }
    derive_constructor_mark(hz);
    let mut l = Line::new();
    l.str("phases (us) pid ").num(crate::rt::raw::getpid() as u64).str(":");
    let mut prev = 0u64;
    for (slot, name) in MARKS.iter().zip(NAMES) {
        let t = slot.load(Ordering::Relaxed);
        if t == 0 {
            continue;
        }
        if prev != 0 {
            // Tenths of a microsecond.
            let tenths = (t.saturating_sub(prev) as u128 * 10_000_000 / hz as u128) as u64;
            l.str(" ").str(name).str("=").num(tenths / 10).str(".").num(tenths % 10);
        }
        prev = t;
    }
    l.emit();
}
