//! The report as text: usertrap-core's table (like `strace -c`, with
//! percentiles), the same bytes `usertrap report` prints for this report.

use super::names::{read_comm, slot_name};
use super::out::Out;
use super::render::{Exit, Report};
use crate::measure::stats::SLOTS;
use crate::rt::raw;
use crate::trap::backend;
use usertrap_core::report::{self, Row, Totals};
use usertrap_core::sink::{self, Sink, SliceSink};

impl Report<'_> {
    pub(super) fn text(&self, o: &mut Out) {
        let mut order = [0u16; SLOTS];
        let n = self.order(&mut order);
        let (fast, slow, errors, ticks) = self.totals();
        let exit = match self.how {
            Exit::ExitGroup(s) | Exit::LastThread(s) => report::Exit::Exited(Some(s.into())),
            Exit::Signal(sig) => report::Exit::Signal { signal: Some(sig.into()), name: None },
            Exit::Exec => report::Exit::Exec,
            Exit::Traced => report::Exit::Traced,
        };
        let mut comm = [0u8; 64];
        let command = read_comm(&mut comm);
        report::process_header(o, raw::getpid() as u64, command, backend::name().as_bytes(), Some(&exit), None);
        o.str("\n");
        let rows = order.iter().take(n).map(|&nr| self.row(nr as usize));
        let totals = Totals { calls: fast + slow, errors, total_ns: self.ns(ticks), fast_calls: fast };
        report::table(o, rows, &totals, None);
        self.text_slow_sites(o, fast + slow);
        if crate::rt::figures::per_thread() {
            self.text_threads(o);
        }
    }

    /// The sites whose slow-path calls matter (report::slow_site_matters),
    /// by total time: object and offset (`usertrap` adds the symbol).
    fn text_slow_sites(&self, o: &mut Out, all_calls: u64) {
        let Some(sites) = self.sites else { return };
        let mut first = true;
        for site in sites.each() {
            let slow = site.stats.slow.get();
            if !report::slow_site_matters(slow, all_calls) {
                continue;
            }
            if first {
                o.bytes(report::SLOW_SITES_TITLE);
                first = false;
            }
            let mut buf = [0u8; 300];
            let mut at = SliceSink::new(&mut buf);
            match site.object {
                Some((object, offset)) => {
                    // The file's name without its directories.
                    let base = object.rsplit(|&b| b == b'/').next().unwrap_or(object);
                    let base = if base.is_empty() { b"[anonymous]".as_slice() } else { base };
                    at.put(base.get(..base.len().min(255)).unwrap_or(base));
                    at.put(b"+");
                    sink::hex(&mut at, offset);
                }
                None => sink::hex(&mut at, site.address),
            }
            let reason = super::json::unpatched_reason(site.address).unwrap_or("");
            report::slow_site(o, slow, &slot_name(site.nr as usize), at.written(), reason.as_bytes());
        }
    }

    /// The table row of figures' slot `nr`, in ns.
    fn row(&self, nr: usize) -> Row<'static> {
        let (fast, slow) = self.calls(nr);
        let mut row = Row { name: slot_name(nr), calls: fast + slow, fast_calls: fast, ..Row::default() };
        if let Some(b) = self.block(nr) {
            row.errors = b.errors.get();
            row.timed = b.timed.get();
            if row.timed != 0 {
                row.total_ns = self.ns(b.total.get());
                row.max_ns = self.ns(b.max.get());
                [row.p50_ns, row.p99_ns] = self.percentiles_ns(b, [500, 990]);
            }
        }
        row
    }
}
