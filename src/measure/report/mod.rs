//! The report a process writes when it ends: its figures merged over every
//! thread, as text (like `strace -c`, with percentiles) or JSON
//! (docs/report-schema.md), to USERTRAP_OUTPUT or stderr; and the one-line
//! USERTRAP_SUMMARY. Runs in trap context (the exit_group trap, a fatal
//! signal's handler): memory comes from mmap, nothing allocates or locks.
//!
//! Delivery (README, "Measurement and reports"): the whole report is built
//! in memory first, then written in one write(2):
//! - to a USERTRAP_OUTPUT path: appended, never truncated (an exec'd image,
//!   forked children and `/dev/stdout` redirected to a file all keep what
//!   is there); a file that does not exist yet is written unnamed
//!   (O_TMPFILE) and linked in only once complete, so a process killed
//!   meanwhile leaves no empty or partial file; a pipe, FIFO or socket is
//!   opened non-blocking: no reader means no wait, a reader that stopped
//!   reading means at most log::NO_PROGRESS_MS of waiting;
//! - to stderr: descriptor 2 if it still is the stderr the image started
//!   with, else the duplicate of it kept when the program closed or
//!   replaced descriptor 2 (emulate::stderr_keep), if that still is the
//!   same file (log::stderr_fd);
//! - never with SIGPIPE or SIGXFSZ (log::without_write_signals).
//!
//! A report that cannot be delivered is said once, in one line, on stderr;
//! when stderr itself is what failed (closed, replaced, a closed pipe, full),
//! the line and the report go to a new file $TMPDIR/usertrap.PID.TIME.report
//! (mode 0600) instead: never into a file of the program's.
//!
//! Under `usertrap stat` (USERTRAP_COLLECT set) none of that: every process
//! image greets the command's collector when it starts (a fork child is
//! announced by its parent), and sends its report there when it ends, each over a
//! short connection of its own to an abstract unix socket (no file, no
//! permission, no descriptor kept open: whatever the process's user, root
//! or descriptors). A report that cannot be sent is never written anywhere
//! else: the collector names every process that greeted and did not report.
//!
//! Files, each importing only those listed before it: out.rs (the buffer,
//! a usertrap-core Sink), settings.rs, names.rs, collector.rs, sites.rs
//! (the call sites, merged and located), render.rs
//! (figures, percentiles and summary), text.rs and json.rs (usertrap-core's
//! table and schema), deliver.rs; this file: when the report is written.

pub mod collector;
pub mod deliver;
pub mod json;
pub mod live;
pub mod names;
pub mod out;
pub mod render;
pub mod settings;
pub mod sites;
pub mod text;
pub mod threads;
pub mod trace;

pub use collector::{after_clone_in_parent, greet, note_wait};
pub use render::Exit;
pub use settings::{check_summary_path, configure, forbid, output_path, summary_on, Format, Summary};

use crate::measure::phases::{self, Mark};
use crate::measure::stats::{self, SysStats, SLOTS};
use crate::rt::log;
use crate::rt::raw;
use collector::KILLED_N;
use core::sync::atomic::{AtomicBool, Ordering};
use deliver::deliver;
use out::Out;
use render::Report;
use settings::{report_forbidden, settings, CONFIGURED};

static WRITTEN: AtomicBool = AtomicBool::new(false);

/// A thread called exit_group and writes the report: natively every other
/// thread is gone by then (emulate::signals parks those a signal reaches).
static ENDING: AtomicBool = AtomicBool::new(false);

/// Whether another thread is ending the process with exit_group.
pub fn ending() -> bool {
    ENDING.load(Ordering::Relaxed)
}

/// A new process (fork child) writes its own report (its parent already
/// told the collector about it: after_clone_in_parent).
pub fn after_fork_in_child() {
    WRITTEN.store(false, Ordering::Relaxed);
    ENDING.store(false, Ordering::Relaxed);
    KILLED_N.store(0, Ordering::Relaxed);
    trace::after_fork_in_child();
    phases::forget();
}

/// An execve failed: the image goes on and will report again at its end.
pub fn exec_failed() {
    WRITTEN.store(false, Ordering::Relaxed);
}

/// The process image ends: write the summary line and the report, once.
#[inline(never)]
pub fn at_exit(how: Exit) {
    // The program's own seccomp filter forbids what writing it needs (said
    // when the filter was installed).
    if !CONFIGURED.load(Ordering::Relaxed) || report_forbidden() {
        return;
    }
    // A vfork child shares its parent's memory: its figures are the parent's,
    // and marking the report written would silence the parent's.
    let current = crate::rt::thread::current_unchecked();
    // `usertrap trace`: every thread's recorded calls, before the report.
    if trace::on() {
        log::without_write_signals(|| trace::at_exit(current));
    }
    if current.is_some_and(|a| a.vfork_child.get()) {
        return;
    }
    if matches!(how, Exit::ExitGroup(_)) {
        ENDING.store(true, Ordering::Relaxed);
    }
    if WRITTEN.swap(true, Ordering::Relaxed) {
        return;
    }
    // The libc sites this image proved, for the rest of the tree.
    crate::patch::install::sitecache::publish();
    log::without_write_signals(|| report(how));
}

fn report(how: Exit) {
    phases::mark(Mark::Exit);
    let s = settings();
    let mut index: stats::MergeIndex = [0; SLOTS];
    // One table (one thread): read it in place. Several: merge them into a
    // fresh mapping, unmapped below (`mapped`).
    let mut mapped = None;
    let (merged, used) = match stats::sole_table(&mut index) {
        Some(sole) => sole,
        None => {
            let len = SLOTS * core::mem::size_of::<SysStats>();
            let Ok(base) = raw::mmap_anon(len, libc::PROT_READ | libc::PROT_WRITE) else {
                deliver(s, None);
                return;
            };
            mapped = Some((base, len));
            // SAFETY: a fresh zeroed mapping of SLOTS SysStats (all Cells:
            // zero is a valid value), ours until the munmap below.
            let merged: &[SysStats] = unsafe { core::slice::from_raw_parts(base as *const SysStats, SLOTS) };
            (merged, stats::merge_into(merged, &mut index))
        }
    };
    let mut sites = sites::Merged::build();
    // Where the sites are (a read of /proc/self/maps) only for a report
    // that names them: JSON lists every site's object, text only the
    // sites whose slow calls matter (none in most processes).
    if let Some(m) = sites.as_mut() {
        if matches!(s.format, Format::Json) || m.any_slow_site_may_matter() {
            m.locate();
        }
    }
    phases::mark(Mark::Merge);
    let hz = stats::ticks_per_second();
    phases::mark(Mark::Calibrate);
    let r = Report {
        merged,
        index: &index,
        used,
        hz,
        how,
        end_real_ns: stats::clock_ns(libc::CLOCK_REALTIME),
        sites: sites.as_ref(),
    };
    if !matches!(s.summary, Summary::Off) {
        r.summary(s);
    }
    let mut out = Out::new();
    match s.format {
        Format::Text => r.text(&mut out),
        Format::Json => r.json(&mut out),
    }
    // exit_group follows the report: the process's mappings go with it,
    // and unmapping these first is work the kernel would do anyway (a
    // syscall each). (Not for the last thread's exit: that is the last
    // thread by our count only.)
    let process_ends = matches!(how, Exit::ExitGroup(_));
    if let Some((base, len)) = mapped.filter(|_| !process_ends) {
        // SAFETY: our mapping from above; `merged` (and `r`, which holds
        // it) are not used from here on.
        let _ = unsafe { raw::munmap(base, len) };
    }
    phases::mark(Mark::Render);
    deliver(s, out.data());
    if process_ends {
        core::mem::forget(out);
        core::mem::forget(sites);
    }
    phases::mark(Mark::Deliver);
    phases::print(hz);
}
