//! The report as JSON (docs/report-schema.md).

use super::collector::{KILLED, KILLED_MAX, KILLED_N};
use super::names::{command, errno_name, name, signal_name};
use super::out::Out;
use super::render::{Exit, Report};
use crate::measure::stats::{self, I386_BASE, SLOTS};
use crate::patch::registry;
use crate::rt::raw;
use crate::trap::backend;
use core::sync::atomic::Ordering;

impl Report<'_> {
    pub(super) fn json(&self, o: &mut Out) {
        let mut order = [0u16; SLOTS];
        let n = self.order(&mut order);
        let (fast, slow, errors, ticks) = self.totals();
        o.str("{\"format\":\"usertrap-report\",\"version\":1,\"pid\":").num(raw::getpid() as u64);
        o.str(",\"ppid\":").num(raw::getppid() as u64);
        o.str(",\"command\":\"");
        command(o, true);
        o.str("\",\"backend\":\"").str(backend::name());
        o.str("\",\"start_ns\":").num(stats::start_realtime_ns()).str(",\"end_ns\":").num(self.end_real_ns);
        o.str(",\"clock\":\"").str(if stats::uses_tsc() { "tsc" } else { "monotonic" });
        o.str("\",\"tsc_hz\":").num(if stats::uses_tsc() { self.hz } else { 0 });
        // SUD traps `int $0x80` too; the seccomp filter lets other arches by.
        o.str(",\"i386_calls\":\"").str(if backend::is_seccomp() { "not_seen" } else { "counted" }).str("\"");
        o.str(",\"exit\":{");
        match self.how {
            Exit::ExitGroup(s) => o.str("\"how\":\"exit_group\",\"status\":").num(s as u64),
            Exit::LastThread(s) => o.str("\"how\":\"exit\",\"status\":").num(s as u64),
            Exit::Signal(sig) => o
                .str("\"how\":\"signal\",\"signal\":")
                .num(sig as u64)
                .str(",\"name\":\"")
                .str(signal_name(sig))
                .str("\""),
            Exit::Exec => o.str("\"how\":\"exec\""),
            Exit::Traced => o.str("\"how\":\"traced\""),
        };
        o.str("},\"totals\":{\"calls\":").num(fast + slow).str(",\"errors\":").num(errors);
        o.str(",\"total_ns\":").num(self.ns(ticks)).str(",\"fast_calls\":").num(fast).str(",\"slow_calls\":").num(slow);
        o.str("},\"syscalls\":[");
        for (k, &nr) in order.iter().take(n).enumerate() {
            let nr = nr as usize;
            let (f, s) = self.calls(nr);
            if k > 0 {
                o.str(",");
            }
            o.str("{\"name\":\"");
            name(o, nr);
            match nr.checked_sub(I386_BASE) {
                Some(n) => o.str("\",\"nr\":").num(n as u64).str(",\"abi\":\"i386\""),
                None => o.str("\",\"nr\":").num(nr as u64),
            };
            o.str(",\"calls\":").num(f + s);
            let Some(b) = self.block(nr) else { continue };
            o.str(",\"errors\":").num(b.errors.get()).str(",\"errors_by_errno\":{");
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
            o.str("},\"total_ns\":").num(self.ns(b.total.get()));
            o.str(",\"min_ns\":").num(self.ns(b.min.get())).str(",\"max_ns\":").num(self.ns(b.max.get()));
            for (key, q) in [("p50_ns", 500), ("p90_ns", 900), ("p99_ns", 990), ("p999_ns", 999)] {
                o.str(",\"").str(key).str("\":").num(self.ns(Self::quantile(b, q)));
            }
            o.str(",\"fast_calls\":").num(f).str(",\"slow_calls\":").num(s).str(",\"histogram\":[");
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
        o.str("]");
        let killed = KILLED_N.load(Ordering::Relaxed).min(KILLED_MAX);
        if killed != 0 {
            o.str(",\"killed_children\":[");
            for (k, slot) in KILLED.iter().take(killed).enumerate() {
                let v = slot.load(Ordering::Relaxed);
                if k > 0 {
                    o.str(",");
                }
                o.str("{\"pid\":").num(v >> 8).str(",\"signal\":").num(v & 0xff).str("}");
            }
            o.str("]");
        }
        o.str(",\"unpatched_sites\":[");
        let mut first = true;
        registry::for_each_unpatched(|site| {
            if !first {
                o.str(",");
            }
            first = false;
            o.str("{\"address\":\"")
                .hex(site.key.wrapping_sub(5))
                .str("\",\"nr\":")
                .num(site.nr as u64)
                .str(",\"name\":\"");
            name(o, site.nr as usize);
            o.str("\",\"reason\":\"").json_str(site.reason.as_bytes()).str("\"}");
        });
        o.str("]}\n");
    }
}
