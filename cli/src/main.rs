//! `usertrap`: run a program under libusertrap.so and report the latency of
//! its syscalls (`usertrap stat`), or merge saved reports (`usertrap report`).
//!
//! Modules: `args` (command line), `report` (the per-process report, serde
//! types), `merge` (aggregation and histograms), `text` (the table),
//! `histogram` (terminal histograms), `trace` (syscall names and `-e
//! trace=` classes), `command` (PATH lookup and the ELF check), `stat`
//! (running the command), `error` (messages and exit statuses).

mod args;
mod collect;
mod command;
mod error;
mod histogram;
mod jsonw;
mod live;
mod merge;
mod prometheus;
mod report;
mod sitecache;
mod sites;
mod staging;
mod stat;
mod text;
mod timeline;
mod trace;

use std::io::{self, Write};
use std::process::exit;

use clap::Parser;

use crate::args::{Cli, Commands, ReportArgs};
use crate::error::{Failure, BAD_INPUT};
use crate::merge::Source;
use crate::stat::Outcome;
use crate::trace::TraceFilter;

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Commands::Stat(a) => stat::run(a),
        Commands::Report(a) => run_report(a).map(|()| Outcome::Exit(0)),
        Commands::Trace(a) => timeline::run(a),
    };
    match result {
        Ok(Outcome::Exit(code)) => exit(code),
        Ok(Outcome::Signal(sig)) => stat::die_by_signal(sig),
        Err(f) => {
            let _ = writeln!(io::stderr(), "usertrap: {f}");
            exit(f.code)
        }
    }
}

/// `usertrap report`: merge the files, print the aggregate or histograms on
/// stdout.
fn run_report(args: ReportArgs) -> Result<(), Failure> {
    let filter = TraceFilter::parse(&args.expr)?;
    histogram::check_names(&args.histogram)?;
    let mut sources = Vec::new();
    for f in &args.files {
        for report in report::load(f).map_err(|e| Failure::new(BAD_INPUT, e))? {
            sources.push(Source { file: Some(f.clone()), report });
        }
    }
    if args.prometheus.is_some() || args.pushgateway.is_some() {
        let host = prometheus::hostname();
        let text = prometheus::render(&sources, filter.as_ref(), &host);
        if let Some(p) = &args.prometheus {
            prometheus::Export::create(p).and_then(|e| e.finish(&text)).map_err(|e| Failure::new(BAD_INPUT, e))?;
        }
        if let Some(url) = &args.pushgateway {
            prometheus::push(url, &host, &text).map_err(|e| Failure::new(BAD_INPUT, e))?;
        }
    }
    let mut agg = merge::aggregate(sources, filter.as_ref(), args.per_process, args.per_thread);
    merge::sort(&mut agg, args.sort);

    let out = if !args.histogram.is_empty() {
        histogram::draw_named(&agg, &args.histogram)
    } else if args.json {
        let mut s = serde_json::to_string_pretty(&agg)
            .map_err(|e| Failure::new(BAD_INPUT, format!("cannot encode the aggregate: {e}")))?;
        s.push('\n');
        s
    } else {
        text::render(&agg, text::SiteView { table: args.sites, verbose: args.verbose })
    };
    match io::stdout().lock().write_all(out.as_bytes()) {
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(Failure::new(BAD_INPUT, format!("cannot write to stdout: {}", error::io_msg(&e))))
        }
        _ => Ok(()),
    }
}
