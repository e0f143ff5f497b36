//! The command line (clap).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

/// Per-syscall latency of a program, measured in-process by libusertrap.so.
#[derive(Debug, Parser)]
#[command(name = "usertrap", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Commands,
}

#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Run a command with libusertrap.so preloaded and report the latency of
    /// its syscalls, over every process it starts.
    #[command(after_help = STAT_AFTER_HELP, override_usage = "usertrap stat [OPTIONS] [--] <CMD> [ARGS]...")]
    Stat(StatArgs),
    /// Merge JSON reports saved with USERTRAP_OUTPUT and USERTRAP_FORMAT=json,
    /// and print their aggregate (on stdout).
    #[command(after_help = REPORT_AFTER_HELP)]
    Report(ReportArgs),
    /// Run a command with libusertrap.so preloaded and record every
    /// intercepted call (or only the slow ones) of every process it starts:
    /// a Perfetto/Chrome timeline, JSON lines or strace-like text.
    #[command(after_help = TRACE_AFTER_HELP, override_usage = "usertrap trace [OPTIONS] [--] <CMD> [ARGS]...")]
    Trace(TraceArgs),
}

const TRACE_AFTER_HELP: &str = "\
The trace goes to stdout, or to FILE with -o. Events a process could not
send in time (its collector busy) are counted, per thread, and said at the
end (text: a line on stderr; json: a \"dropped\" record; perfetto: an
instant event on the thread's track). Exit status as for usertrap stat.";

/// `usertrap trace --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TraceFormat {
    /// strace -f -tt -T style lines.
    Text,
    /// One JSON object per line (docs/report-schema.md, "Trace").
    Json,
    /// Chrome trace-event JSON: opens in ui.perfetto.dev and chrome://tracing.
    Perfetto,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Write the trace to FILE instead of stdout (opened, and so checked,
    /// before the command runs).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// The trace's format.
    #[arg(long, value_enum, default_value_t = TraceFormat::Text)]
    pub format: TraceFormat,

    /// Record only these syscalls (as for `usertrap stat -e`); filtered in
    /// the traced processes, so what is left out costs no recording.
    #[arg(short = 'e', value_name = "trace=SET", action = ArgAction::Append)]
    pub expr: Vec<String>,

    /// Record only calls that took at least DURATION (such as 1ms, 250us,
    /// 2s, 500ns); the counts of all calls are still reported.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ns)]
    pub slow: Option<u64>,

    #[command(flatten)]
    pub run: RunArgs,
}

/// What `stat` and `trace` both take: the library, the backend, the command.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The library to preload (default: libusertrap.so beside this program).
    #[arg(long = "lib", value_name = "PATH")]
    pub lib: Option<PathBuf>,

    /// How the library traps syscalls (USERTRAP_BACKEND; default: the
    /// library's, auto: sud where the kernel has it, else seccomp).
    #[arg(long, value_enum)]
    pub backend: Option<Backend>,

    /// The command and its arguments (after `--`).
    #[arg(
        value_name = "CMD",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<OsString>,
}

/// "1ms", "250us", "2s", "500ns", "1.5ms": nanoseconds.
pub fn parse_duration_ns(s: &str) -> Result<u64, String> {
    let at = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(at);
    let scale = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return Err(format!("{s}: a number with a unit: ns, us, ms or s (such as 1ms)")),
    };
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 && v * scale < 1e18 => Ok((v * scale).round() as u64),
        _ => Err(format!("{s}: a number with a unit: ns, us, ms or s (such as 1ms)")),
    }
}

const STAT_AFTER_HELP: &str = "\
The command's own stdin, stdout and stderr are left to it; the report goes to
usertrap's stderr, or to FILE with -o. SIGINT, SIGTERM and SIGHUP sent to
usertrap are passed on to the command.

Exit status: the command's own; if a signal killed it, usertrap dies of the
same signal after printing the report. Before running anything: 2 for a bad
command line (unknown -e trace names), 125 when usertrap itself cannot go on
(no libusertrap.so, an unwritable -o FILE, a static command without
usertrap-launcher beside the library), 126 when the command cannot be run
under usertrap (not executable, not x86-64), 127 when it is not found.
Statically linked commands are started by usertrap-launcher.";

const REPORT_AFTER_HELP: &str = "\
Exit status: 0; 1 when a file cannot be read or is not a usertrap report
(format \"usertrap-report\", version 1); 2 for a bad command line (unknown
syscall for --histogram or -e).";

/// Backends of the library (USERTRAP_BACKEND).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Syscall User Dispatch where the kernel has it, else seccomp (the default).
    Auto,
    /// A seccomp filter that traps every syscall (sets no_new_privs).
    Seccomp,
    /// Syscall User Dispatch (Linux 5.11+).
    Sud,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Seccomp => "seccomp",
            Backend::Sud => "sud",
        }
    }
}

/// The order of a table's rows (`-S`). Numbers largest first, ties (and
/// `name`) in name order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SortKey {
    /// Total time (then calls), the default.
    #[value(alias = "total-time")]
    Time,
    /// Number of calls.
    Calls,
    /// Average time of a timed call.
    #[value(alias = "avg-time")]
    Avg,
    /// Median latency.
    P50,
    /// 99th percentile.
    P99,
    /// Largest latency.
    #[value(alias = "max-time")]
    Max,
    /// Number of failed calls.
    Errors,
    /// Syscall name (alphabetical).
    #[value(alias = "syscall")]
    Name,
}

#[derive(Debug, Args)]
pub struct StatArgs {
    /// Write the report to FILE instead of stderr (opened, and so checked,
    /// before the command runs).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Print the aggregate as JSON (see docs/report-schema.md).
    #[arg(long)]
    pub json: bool,

    /// Also print each process's own table (pid, command) before the
    /// aggregate.
    #[arg(short = 'f', long = "per-process")]
    pub per_process: bool,

    /// Show only these syscalls: comma-separated names and classes %file,
    /// %network (%net), %process, %signal, %memory, %desc, %ipc, %creds,
    /// %clock (strace's) and %wait (usertrap's: calls made to wait, such as
    /// epoll_wait, poll, futex, wait4, nanosleep, accept; `-e trace=!%wait`
    /// leaves them out, so % time is over the working calls; futex counts
    /// whole, its waits and wakes are not told apart); `all`, `none`; `!SET`
    /// for all but SET. Repeatable (union). The program still runs fully
    /// intercepted.
    #[arg(short = 'e', value_name = "trace=SET", action = ArgAction::Append)]
    pub expr: Vec<String>,

    /// Sort the tables by KEY (as strace -S): time (total time, the
    /// default), calls, avg, p50, p99, max, errors (largest first) or name;
    /// ties in name order.
    #[arg(short = 'S', long = "sort", value_name = "KEY", value_enum, default_value_t = SortKey::Time)]
    pub sort: SortKey,

    /// While the command runs, print the aggregate of the whole tree every
    /// SECS seconds (where the final report goes); the final report is
    /// the same as without -i. A running process is read from its memory
    /// (as a debugger would: same user, or root).
    #[arg(short = 'i', long = "interval", value_name = "SECS", value_parser = parse_interval)]
    pub interval: Option<f64>,

    /// Also print each thread's own table (tid and thread name), per
    /// process, after the aggregate, like `perf trace -s` (the library
    /// keeps each thread's figures apart: USERTRAP_THREADS=1).
    #[arg(long = "per-thread")]
    pub per_thread: bool,

    /// Also print the call-site table: per call site (object, function +
    /// offset, syscall) its calls, errors, total, avg, p50, p99 and share
    /// on the fast path: which code made the calls (docs/report-schema.md).
    #[arg(long)]
    pub sites: bool,

    /// List every call site with calls on the slow path, not only those
    /// where they matter (100 calls and 1% of all calls).
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Draw this syscall's latency distribution (merged over the processes)
    /// instead of the table, as `usertrap report --histogram`. Repeatable.
    #[arg(long, value_name = "SYSCALL", action = ArgAction::Append, conflicts_with = "json")]
    pub histogram: Vec<String>,

    /// Also write the aggregate to FILE in the Prometheus text format, per
    /// host, command and syscall (for node_exporter's textfile collector:
    /// written to a temporary file beside it, then renamed).
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,

    /// Also push the aggregate, in the same format, to a Prometheus
    /// Pushgateway: HTTP PUT to URL/metrics/job/usertrap/instance/HOST
    /// (http:// only), replacing what this host pushed before.
    #[arg(long, value_name = "URL")]
    pub pushgateway: Option<String>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Print the aggregate as JSON (see docs/report-schema.md).
    #[arg(long, conflicts_with = "histogram")]
    pub json: bool,

    /// Also print each process's own table before the aggregate.
    #[arg(short = 'f', long = "per-process")]
    pub per_process: bool,

    /// Show only these syscalls (as for `usertrap stat -e`; `-e
    /// trace=!%wait` leaves out the calls made to wait).
    #[arg(short = 'e', value_name = "trace=SET", action = ArgAction::Append)]
    pub expr: Vec<String>,

    /// Sort the tables by KEY (as for `usertrap stat -S`).
    #[arg(short = 'S', long = "sort", value_name = "KEY", value_enum, default_value_t = SortKey::Time)]
    pub sort: SortKey,

    /// Also write the aggregate to FILE in the Prometheus text format (as
    /// for `usertrap stat --prometheus`).
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,

    /// Also push the aggregate to a Pushgateway (as for `usertrap stat
    /// --pushgateway`).
    #[arg(long, value_name = "URL")]
    pub pushgateway: Option<String>,

    /// Also print each thread's own table (tid and thread name), from
    /// reports written with USERTRAP_THREADS=1 (`usertrap stat --per-thread`).
    #[arg(long = "per-thread")]
    pub per_thread: bool,

    /// Also print the call-site table: per call site (object, function +
    /// offset, syscall) its calls, errors, total, avg, p50, p99 and share
    /// on the fast path: which code made the calls (docs/report-schema.md).
    #[arg(long)]
    pub sites: bool,

    /// List every call site with calls on the slow path, not only those
    /// where they matter (100 calls and 1% of all calls).
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Draw this syscall's latency distribution (merged over the reports)
    /// instead of the table: one line per non-empty bucket range, with the
    /// p50/p90/p99/p99.9 markers. Repeatable.
    #[arg(long, value_name = "SYSCALL", action = ArgAction::Append)]
    pub histogram: Vec<String>,

    /// The JSON reports.
    #[arg(value_name = "FILE", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
}

/// `-i SECS`: a positive number of seconds, at least 0.1.
fn parse_interval(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.1 => Ok(s),
        _ => Err(format!("{v:?} is not a number of seconds of at least 0.1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ns("1ms"), Ok(1_000_000));
        assert_eq!(parse_duration_ns("250us"), Ok(250_000));
        assert_eq!(parse_duration_ns("1.5ms"), Ok(1_500_000));
        assert_eq!(parse_duration_ns("2s"), Ok(2_000_000_000));
        assert_eq!(parse_duration_ns("7ns"), Ok(7));
        assert!(parse_duration_ns("5").is_err(), "a unit is needed");
        assert!(parse_duration_ns("ms").is_err());
        assert!(parse_duration_ns("-1ms").is_err());
    }

    #[test]
    fn arguments_after_the_command_are_its_own() {
        let cli = Cli::try_parse_from(["usertrap", "stat", "-e", "trace=read", "--", "ls", "-l", "-e"]).unwrap();
        let Commands::Stat(a) = cli.command else { panic!("not stat") };
        assert_eq!(a.expr, ["trace=read"]);
        assert_eq!(a.run.command, ["ls", "-l", "-e"]);
        let cli = Cli::try_parse_from(["usertrap", "stat", "-o", "x", "ls", "-l"]).unwrap();
        let Commands::Stat(a) = cli.command else { panic!("not stat") };
        assert_eq!(a.run.command, ["ls", "-l"]);
    }
}
