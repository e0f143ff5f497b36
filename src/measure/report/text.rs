//! The report as text: usertrap-core's table (like `strace -c`, with
//! percentiles), the same bytes `usertrap report` prints for this report.

use super::names::{read_comm, slot_name};
use super::out::Out;
use super::render::{Exit, Report};
use crate::measure::stats::SLOTS;
use crate::patch::registry;
use crate::rt::raw;
use crate::trap::backend;
use usertrap_core::report::{self, Row, Totals};
use usertrap_core::sink::{self, SliceSink};

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
        let mut first = true;
        registry::for_each_unpatched(|site| {
            if first {
                o.bytes(report::UNPATCHED_TITLE);
                first = false;
            }
            let mut buf = [0u8; 18];
            let mut address = SliceSink::new(&mut buf);
            // The `syscall` instruction's address, whatever form was tried.
            sink::hex(&mut address, site.key);
            report::unpatched_site(o, address.written(), &slot_name(site.nr as usize), site.reason.as_bytes());
        });
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
                row.p50_ns = self.percentile_ns(b, 500);
                row.p99_ns = self.percentile_ns(b, 990);
            }
        }
        row
    }
}
