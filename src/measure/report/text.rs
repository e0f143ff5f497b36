//! The report as text (like `strace -c`, with percentiles).

use super::names::{command, name, signal_name};
use super::out::Out;
use super::render::{Exit, Report};
use crate::measure::stats::SLOTS;
use crate::patch::registry;
use crate::rt::raw;
use crate::trap::backend;

impl Report<'_> {
    pub(super) fn text(&self, o: &mut Out) {
        let mut order = [0u16; SLOTS];
        let n = self.order(&mut order);
        let (fast, slow, errors, ticks) = self.totals();
        o.str("usertrap: pid ").num(raw::getpid() as u64).str(" (");
        command(o, false);
        o.str("), ").str(backend::name()).str(", ");
        match self.how {
            Exit::ExitGroup(s) | Exit::LastThread(s) => o.str("exit status ").num(s as u64),
            Exit::Signal(sig) => o.str("killed by ").str(signal_name(sig)),
            Exit::Exec => o.str("replaced by execve"),
            Exit::Traced => o.str("traced (PTRACE_TRACEME): not intercepted from then on"),
        };
        o.str("\n % time     seconds      calls     errors        avg        p50        p99        max  fast %  syscall\n");
        let total_ns = self.ns(ticks);
        for &nr in order.iter().take(n) {
            let nr = nr as usize;
            let (f, s) = self.calls(nr);
            let b = self.block(nr);
            let (tns, errs, avg, p50, p99, max) = match b {
                Some(b) if b.timed.get() != 0 => (
                    self.ns(b.total.get()),
                    b.errors.get(),
                    self.ns(b.total.get() / b.timed.get()),
                    self.ns(Self::quantile(b, 500)),
                    self.ns(Self::quantile(b, 990)),
                    self.ns(b.max.get()),
                ),
                Some(b) => (0, b.errors.get(), 0, 0, 0, 0),
                None => (0, 0, 0, 0, 0, 0),
            };
            o.fixed((tns * 10_000).checked_div(total_ns).unwrap_or(0), 2, 7)
                .fixed(tns / 1000, 6, 12)
                .pad_num(f + s, 11)
                .pad_num(errs, 11)
                .dur(avg, 11)
                .dur(p50, 11)
                .dur(p99, 11)
                .dur(max, 11)
                .fixed((f * 1000).checked_div(f + s).unwrap_or(0), 1, 8)
                .str("  ");
            name(o, nr);
            o.str("\n");
        }
        o.fixed(if total_ns == 0 { 0 } else { 10_000 }, 2, 7)
            .fixed(total_ns / 1000, 6, 12)
            .pad_num(fast + slow, 11)
            .pad_num(errors, 11)
            .str("                                            ")
            .fixed((fast * 1000).checked_div(fast + slow).unwrap_or(0), 1, 8)
            .str("  total\n");
        let mut first = true;
        registry::for_each_unpatched(|site| {
            if first {
                o.str("unpatched sites:\n");
                first = false;
            }
            o.str("  ").hex(site.key.wrapping_sub(5)).str("  ");
            name(o, site.nr as usize);
            o.str("  ").str(site.reason).str("\n");
        });
    }
}
