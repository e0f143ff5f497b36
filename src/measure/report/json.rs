//! The report as JSON (docs/report-schema.md; field names and values from
//! usertrap-core's report schema).

use super::collector::{KILLED, KILLED_MAX, KILLED_N};
use super::names::{command, errno_name, name};
use super::out::Out;
use super::render::{Exit, Report};
use crate::measure::stats::{self, I386_BASE, SLOTS};
use crate::patch::registry;
use crate::rt::raw;
use crate::trap::backend;
use core::sync::atomic::Ordering;
use usertrap_core::names;
use usertrap_core::report::{self, how, key};

/// Why the site whose `syscall` is at `address` was left on the slow path,
/// if it was.
pub(super) fn unpatched_reason(address: u64) -> Option<&'static str> {
    registry::lookup(address).filter(|s| s.state == registry::UNPATCHED).map(|s| s.reason)
}

impl Report<'_> {
    pub(super) fn json(&self, o: &mut Out) {
        let mut order = [0u16; SLOTS];
        let n = self.order(&mut order);
        let (fast, slow, errors, ticks) = self.totals();
        o.str("{").key(true, key::FORMAT).str("\"").str(report::FORMAT).str("\"");
        o.key(false, key::VERSION).num(report::VERSION);
        o.key(false, key::PID).num(raw::getpid() as u64);
        o.key(false, key::PPID).num(raw::getppid() as u64);
        o.key(false, key::COMMAND).str("\"");
        command(o, true);
        o.str("\"").key(false, key::BACKEND).str("\"").str(backend::name()).str("\"");
        o.key(false, key::START_NS).num(stats::start_realtime_ns());
        o.key(false, key::END_NS).num(self.end_real_ns);
        let clock = if stats::uses_tsc() { report::CLOCK_TSC } else { report::CLOCK_MONOTONIC };
        o.key(false, key::CLOCK).str("\"").str(clock).str("\"");
        o.key(false, key::TSC_HZ).num(if stats::uses_tsc() { self.hz } else { 0 });
        // SUD traps `int $0x80` too; the seccomp filter lets other arches by.
        let i386 = if backend::is_seccomp() { report::I386_NOT_SEEN } else { report::I386_COUNTED };
        o.key(false, key::I386_CALLS).str("\"").str(i386).str("\"");
        o.key(false, key::EXIT).str("{");
        let exited = |o: &mut Out, how: &str, status: i32| {
            o.key(true, key::HOW).str("\"").str(how).str("\"").key(false, key::STATUS).num(status as u64);
        };
        match self.how {
            Exit::ExitGroup(s) => exited(o, how::EXIT_GROUP, s),
            Exit::LastThread(s) => exited(o, how::EXIT, s),
            Exit::Signal(sig) => {
                o.key(true, key::HOW).str("\"").str(how::SIGNAL).str("\"");
                o.key(false, key::SIGNAL).num(sig as u64).key(false, key::NAME).str("\"");
                names::write_signal(o, sig.into());
                o.str("\"");
            }
            Exit::Exec => {
                o.key(true, key::HOW).str("\"").str(how::EXEC).str("\"");
            }
            Exit::Traced => {
                o.key(true, key::HOW).str("\"").str(how::TRACED).str("\"");
            }
        };
        o.str("}").key(false, key::TOTALS).str("{");
        o.key(true, key::CALLS).num(fast + slow).key(false, key::ERRORS).num(errors);
        o.key(false, key::TOTAL_NS).num(self.ns(ticks));
        o.key(false, key::FAST_CALLS).num(fast).key(false, key::SLOW_CALLS).num(slow);
        o.str("}").key(false, key::SYSCALLS).str("[");
        for (k, &nr) in order.iter().take(n).enumerate() {
            if k > 0 {
                o.str(",");
            }
            let nr = nr as usize;
            self.json_syscall(o, nr, self.calls(nr), self.block(nr));
        }
        o.str("]");
        let killed = KILLED_N.load(Ordering::Relaxed).min(KILLED_MAX);
        if killed != 0 {
            o.key(false, key::KILLED_CHILDREN).str("[");
            for (k, slot) in KILLED.iter().take(killed).enumerate() {
                let v = slot.load(Ordering::Relaxed);
                if k > 0 {
                    o.str(",");
                }
                o.str("{").key(true, key::PID).num(v >> 8).key(false, key::SIGNAL).num(v & 0xff).str("}");
            }
            o.str("]");
        }
        o.key(false, key::UNPATCHED_SITES).str("[");
        let mut first = true;
        registry::for_each_unpatched(|site| {
            if !first {
                o.str(",");
            }
            first = false;
            o.str("{").key(true, key::ADDRESS).str("\"").hex(site.key).str("\"");
            o.key(false, key::NR).num(site.nr as u64).key(false, key::NAME).str("\"");
            name(o, site.nr as usize);
            o.str("\"").key(false, key::REASON).str("\"").json_str(site.reason.as_bytes()).str("\"}");
        });
        o.str("]");
        self.json_sites(o);
        if crate::rt::figures::per_thread() {
            self.json_threads(o);
        }
        o.str("}\n");
    }

    /// One `syscalls` entry: `nr`'s figures `b` ((fast, slow) calls).
    pub(super) fn json_syscall(
        &self,
        o: &mut Out,
        nr: usize,
        (f, s): (u64, u64),
        b: Option<&crate::measure::stats::SysStats>,
    ) {
        o.str("{").key(true, key::NAME).str("\"");
        name(o, nr);
        o.str("\"");
        match nr.checked_sub(I386_BASE) {
            Some(n) => {
                o.key(false, key::NR).num(n as u64).key(false, key::ABI).str("\"").str(report::ABI_I386).str("\"")
            }
            None => o.key(false, key::NR).num(nr as u64),
        };
        o.key(false, key::CALLS).num(f + s);
        let Some(b) = b else {
            o.str("}");
            return;
        };
        o.key(false, key::ERRORS).num(b.errors.get()).key(false, key::ERRORS_BY_ERRNO).str("{");
        let mut first = true;
        for (e, c) in b.errnos.iter().enumerate() {
            if c.get() != 0 {
                if !first {
                    o.str(",");
                }
                first = false;
                o.str("\"");
                errno_name(o, e);
                o.str("\":").num(c.get() as u64);
            }
        }
        o.str("}").key(false, key::TOTAL_NS).num(self.ns(b.total.get()));
        o.key(false, key::MIN_NS).num(self.ns(b.min.get())).key(false, key::MAX_NS).num(self.ns(b.max.get()));
        let values = self.percentiles_ns(b, report::PERCENTILES.map(|(per_mille, _)| per_mille));
        for ((_, field), v) in report::PERCENTILES.iter().zip(values) {
            o.key(false, field).num(v);
        }
        o.key(false, key::FAST_CALLS).num(f).key(false, key::SLOW_CALLS).num(s);
        o.key(false, key::HISTOGRAM).str("[");
        let mut first = true;
        for (i, c) in b.hist.iter().enumerate() {
            if c.get() != 0 {
                if !first {
                    o.str(",");
                }
                first = false;
                let (lo, hi) = stats::bucket_bounds(i);
                o.str("[").num(self.ns(lo)).str(",").num(self.ns(hi)).str(",").num(c.get() as u64).str("]");
            }
        }
        o.str("]}");
    }

    /// `sites` and `sites_not_kept`: every call site, by total time.
    fn json_sites(&self, o: &mut Out) {
        let Some(sites) = self.sites else {
            // No memory to merge them: every call is one not kept.
            let (fast, slow, _, _) = self.totals();
            o.key(false, key::SITES).str("[]").key(false, key::SITES_NOT_KEPT).num(fast + slow);
            return;
        };
        o.key(false, key::SITES).str("[");
        for (k, site) in sites.each().enumerate() {
            let b = site.stats;
            if k > 0 {
                o.str(",");
            }
            o.str("{").key(true, key::ADDRESS).str("\"").hex(site.address).str("\"");
            if let Some((object, offset)) = site.object {
                o.key(false, key::OBJECT).str("\"").json_str(object).str("\"");
                o.key(false, key::OFFSET).num(offset);
            }
            o.key(false, key::NR).num(site.nr).key(false, key::NAME).str("\"");
            name(o, site.nr as usize);
            o.str("\"").key(false, key::CALLS).num(b.fast.get() + b.slow.get());
            o.key(false, key::ERRORS).num(b.errors.get()).key(false, key::TOTAL_NS).num(self.ns(b.total.get()));
            o.key(false, key::MIN_NS).num(self.ns(b.min.get())).key(false, key::MAX_NS).num(self.ns(b.max.get()));
            let values = self.site_percentiles_ns(b, report::SITE_PERCENTILES.map(|(per_mille, _)| per_mille));
            for ((_, field), v) in report::SITE_PERCENTILES.iter().zip(values) {
                o.key(false, field).num(v);
            }
            o.key(false, key::FAST_CALLS).num(b.fast.get()).key(false, key::SLOW_CALLS).num(b.slow.get());
            o.key(false, key::HISTOGRAM).str("[");
            let mut first = true;
            for (j, c) in b.hist.iter().enumerate() {
                if c.get() != 0 {
                    if !first {
                        o.str(",");
                    }
                    first = false;
                    let (lo, hi) = super::sites::bounds(j);
                    o.str("[").num(self.ns(lo)).str(",").num(self.ns(hi)).str(",").num(c.get() as u64).str("]");
                }
            }
            o.str("]");
            if let Some(reason) = unpatched_reason(site.address) {
                o.key(false, key::REASON).str("\"").json_str(reason.as_bytes()).str("\"");
            }
            o.str("}");
        }
        o.str("]").key(false, key::SITES_NOT_KEPT).num(sites.not_kept());
    }
}
