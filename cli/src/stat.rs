//! `usertrap stat`: run a command with libusertrap.so preloaded, collect the
//! JSON report every process of it sends to our collector (collect.rs), and
//! print their aggregate, naming the processes that did not report.

use std::env;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use usertrap_core::exec_control::{self, Control};

use crate::args::StatArgs;
use crate::collect::Collector;
use crate::command::{self, Start};
use crate::error::{io_msg, Failure, CANNOT_EXECUTE, NOT_FOUND, OWN_FAILURE};
use crate::merge;
use crate::prometheus::{self, Export};
use crate::report::Exit;
use crate::text;
use crate::trace::TraceFilter;

/// The library's file name, looked for beside this program.
pub const LIB_NAME: &str = "libusertrap.so";

/// How `usertrap` itself ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit with this status.
    Exit(i32),
    /// Die of this signal (the command did).
    Signal(i32),
}

/// Where the aggregate goes.
enum Output {
    Stderr,
    File(PathBuf, File),
}

/// Runs `usertrap stat`.
pub fn run(args: StatArgs) -> Result<Outcome, Failure> {
    let filter = TraceFilter::parse(&args.expr)?;
    crate::histogram::check_names(&args.histogram)?;
    let checked = check_command(args.run.lib.as_deref(), &args.run.command)?;
    let mut output = match &args.output {
        None => Output::Stderr,
        Some(p) => Output::File(p.clone(), open_output(p)?),
    };
    // Created (and so checked) before the command runs, as -o is.
    let export = match &args.prometheus {
        Some(p) => Some(Export::create(p).map_err(|e| Failure::new(OWN_FAILURE, e))?),
        None => None,
    };
    // -i SECS: the interim tables, written where the final one goes.
    let live = match args.interval {
        Some(secs) => {
            let to: Box<dyn Write + Send> = match &output {
                Output::Stderr => Box::new(io::stderr()),
                Output::File(p, f) => Box::new(
                    f.try_clone().map_err(|e| Failure::new(OWN_FAILURE, format!("{}: {}", p.display(), io_msg(&e))))?,
                ),
            };
            Some(Live { secs, to, filter: filter.clone(), sort: args.sort })
        }
        None => None,
    };
    let mut extra = Vec::new();
    if args.per_thread {
        // Each thread's figures kept apart (and reported) by the library.
        extra.push(("USERTRAP_THREADS", "1".to_string()));
    }
    let (status, got) = run_collected(checked, args.run.backend, &args.run.command, &extra, live, None)?;
    let mut export_errors = Vec::new();
    if export.is_some() || args.pushgateway.is_some() {
        let host = prometheus::hostname();
        let text = prometheus::render(&got.sources, filter.as_ref(), &host);
        if let Some(Err(e)) = export.map(|e| e.finish(&text)) {
            export_errors.push(e);
        }
        if let Err(e) = args.pushgateway.as_ref().map_or(Ok(()), |url| prometheus::push(url, &host, &text)) {
            export_errors.push(e);
        }
    }
    let mut agg = merge::aggregate(got.sources, filter.as_ref(), args.per_process, args.per_thread);
    merge::sort(&mut agg, args.sort);
    agg.command = Some(args.run.command.iter().map(|a| a.to_string_lossy().into_owned()).collect());
    agg.status = Some(exit_of(status));
    agg.skipped = got.skipped;
    agg.missing = got.missing;
    agg.processes_seen = got.processes;
    let rendered = if !args.histogram.is_empty() {
        crate::histogram::draw_named(&agg, &args.histogram)
    } else if args.json {
        // (Encoding these types cannot fail; say so in JSON if it ever did.)
        let mut s = serde_json::to_string_pretty(&agg).unwrap_or_else(|e| {
            serde_json::json!({ "error": format!("cannot encode the aggregate: {e}") }).to_string()
        });
        s.push('\n');
        s
    } else {
        text::render(&agg, text::SiteView { table: args.sites, verbose: args.verbose })
    };

    let outcome = match (status.code(), status.signal()) {
        (Some(code), _) => Outcome::Exit(code),
        (None, Some(sig)) => Outcome::Signal(sig),
        (None, None) => Outcome::Exit(OWN_FAILURE),
    };
    let written = match &mut output {
        Output::Stderr => io::stderr().lock().write_all(rendered.as_bytes()).map_err(|e| ("stderr".into(), e)),
        Output::File(p, f) => f.write_all(rendered.as_bytes()).map_err(|e| (p.display().to_string(), e)),
    };
    let mut lost = false;
    if let Err((to, e)) = written {
        let _ = writeln!(io::stderr(), "usertrap: cannot write the report to {to}: {}", io_msg(&e));
        lost = true;
    }
    for e in export_errors {
        let _ = writeln!(io::stderr(), "usertrap: {e}");
        lost = true;
    }
    // Keep the command's own failure; otherwise say the report is lost.
    if lost && outcome == Outcome::Exit(0) {
        return Ok(Outcome::Exit(OWN_FAILURE));
    }
    Ok(outcome)
}

/// `stat -i SECS`: interim tables of the whole tree every `secs` seconds,
/// written to `to`, filtered and sorted as the final one.
pub struct Live {
    pub secs: f64,
    pub to: Box<dyn Write + Send>,
    pub filter: Option<TraceFilter>,
    pub sort: crate::args::SortKey,
}

/// A command found and checked before anything is opened for it.
pub struct Checked {
    lib: PathBuf,
    program: PathBuf,
    start: Start,
}

/// The library, and the command resolved on PATH and checked runnable.
pub fn check_command(lib: Option<&Path>, command: &[OsString]) -> Result<Checked, Failure> {
    let lib = find_library(lib)?;
    let Some(cmd) = command.first() else {
        return Err(Failure::usage("no command given: usertrap stat [OPTIONS] -- CMD [ARGS...]"));
    };
    let program = command::resolve(cmd, env::var_os("PATH").as_deref())?;
    let start = command::check_runnable(&program, &cmd.to_string_lossy())?;
    Ok(Checked { lib, program, start })
}

/// Runs the command with the library preloaded, its processes reporting to
/// a collector (`extra`: more of the library's settings); its wait status
/// and what the processes sent (`trace_sink`: where trace messages go as
/// they arrive, else into `traces`).
pub fn run_collected(
    checked: Checked,
    backend: Option<crate::args::Backend>,
    command: &[OsString],
    extra: &[(&str, String)],
    live: Option<Live>,
    trace_sink: Option<crate::collect::TraceSink>,
) -> Result<(ExitStatus, crate::collect::Collected), Failure> {
    let Checked { lib, program, start } = checked;
    let Some((cmd, cmd_args)) = command.split_first() else {
        return Err(Failure::usage("no command given"));
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let staged = crate::staging::for_other_users(&lib, &lib.with_file_name(LAUNCHER_NAME), euid)
        .map_err(|e| Failure::new(OWN_FAILURE, e))?;
    let lib = staged.as_ref().map_or(lib, |s| s.lib().to_path_buf());
    let collector = Collector::start(trace_sink)
        .map_err(|e| Failure::new(OWN_FAILURE, format!("cannot open the report collector's socket: {}", io_msg(&e))))?;

    let mut child = match &start {
        Start::Preload => {
            let mut c = Command::new(&program);
            c.arg0(cmd).args(cmd_args);
            c
        }
        Start::Launch { elf, prefix } => launched(&lib, &program, elf, prefix, cmd, cmd_args)?,
    };
    child.env("LD_PRELOAD", preload_value(&lib, env::var_os("LD_PRELOAD").as_deref()));
    // Reports go to the collector only (USERTRAP_OUTPUT of the caller's
    // environment would only be ignored).
    child.env("USERTRAP_COLLECT", collector.name()).env("USERTRAP_FORMAT", "json").env_remove("USERTRAP_OUTPUT");
    // The command's own test setting (collect.rs), no setting of the library.
    child.env_remove(crate::collect::STALL_VAR);
    // Measured once here, so no process of the tree calibrates its own (nor
    // checks the TSC with CPUID: the setting says it is invariant).
    // The clock's ticks per second in the tree (for the live view): the
    // TSC frequency handed down, or ns of CLOCK_MONOTONIC.
    let mut ticks_hz: u64 = env::var("USERTRAP_TSC_HZ").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000_000);
    if std::env::var_os("USERTRAP_TSC_HZ").is_none() && tsc_invariant() {
        let hz = tsc_hz();
        ticks_hz = hz;
        child.env("USERTRAP_TSC_HZ", hz.to_string());
    }
    if let Some(b) = backend {
        child.env("USERTRAP_BACKEND", b.as_str());
    }
    // Removed when this function returns: after the collector is done.
    let site_cache = crate::sitecache::SiteCache::create();
    if let Some(c) = &site_cache {
        child.env(crate::sitecache::VAR, c.path());
    }
    for (k, v) in extra {
        child.env(k, v);
    }

    let interim = live.map(|Live { secs, to, filter, sort }| {
        let view = collector.live_view();
        crate::live::Interim::start(
            secs,
            move |elapsed| crate::live::render_interim(&view, filter.as_ref(), sort, ticks_hz, elapsed),
            to,
        )
    });
    let ran = run_forwarding_signals(&mut child);
    if let Some(l) = interim {
        l.stop();
    }
    let (status, child_pid) = ran.map_err(|e| {
        let code = match e.raw_os_error() {
            Some(libc::ENOENT) => NOT_FOUND,
            Some(libc::EACCES | libc::ENOEXEC | libc::EISDIR | libc::ETXTBSY) => CANNOT_EXECUTE,
            _ => OWN_FAILURE,
        };
        Failure::new(code, format!("cannot run {}: {}", cmd.to_string_lossy(), io_msg(&e)))
    })?;
    Ok((status, collector.finish(child_pid, status.signal())))
}

/// The launcher's file name, beside the library.
pub const LAUNCHER_NAME: &str = "usertrap-launcher";

/// A static program (LD_PRELOAD cannot reach it): run usertrap-launcher with
/// the program's argv and the control entry the library uses for exec
/// (USERTRAP_EXEC, usertrap-core's `exec_control`). The launcher inherits
/// `elf` open on a descriptor and loads it.
fn launched(
    lib: &Path,
    program: &Path,
    elf: &Path,
    prefix: &[OsString],
    cmd: &OsStr,
    cmd_args: &[OsString],
) -> Result<Command, Failure> {
    let launcher = lib.with_file_name(LAUNCHER_NAME);
    if !launcher.is_file() {
        return Err(Failure::new(
            OWN_FAILURE,
            format!(
                "{} is statically linked and {} is missing (it starts static programs)",
                cmd.to_string_lossy(),
                launcher.display()
            ),
        ));
    }
    let file = File::open(elf)
        .map_err(|e| Failure::new(CANNOT_EXECUTE, format!("cannot read {}: {}", elf.display(), io_msg(&e))))?;
    let fd = file.as_raw_fd();
    // A first program: no filter armed yet, nothing added to its environment.
    let control = Control {
        fd: u32::try_from(fd).map_err(|_| Failure::new(OWN_FAILURE, format!("descriptor {fd} out of range")))?,
        seccomp_armed: false,
        leading: 0,
        preload_prefixed: false,
        comm: program.file_name().map_or(&[][..], |n| n.as_bytes()),
        execfn: program.as_os_str().as_bytes(),
    };
    let mut value = crate::text::ByteSink::default();
    control.encode_value(&mut value);
    let control = OsString::from_vec(value.0);
    let mut c = Command::new(&launcher);
    if prefix.is_empty() {
        c.arg0(cmd);
    } else {
        c.arg0(&prefix[0]).args(&prefix[1..]);
    }
    c.args(cmd_args).env(exec_control::NAME, control);
    // SAFETY: between fork and exec the closure only calls fcntl (async-signal-safe).
    unsafe {
        c.pre_exec(move || {
            let _keep_open = &file;
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(c)
}

/// CPUID 0x80000007, EDX bit 8: the TSC runs at a constant rate (what the
/// library checks before it times with rdtsc).
fn tsc_invariant() -> bool {
    // The extended leaf is read only where the highest one reaches it.
    core::arch::x86_64::__cpuid(0x8000_0000).eax >= 0x8000_0007
        && core::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0
}

/// The TSC frequency, measured against the monotonic clock over 0.5 ms of
/// spinning (the library converts its timestamps with it; both clocks read
/// to well under a microsecond, so the error stays under 0.2%).
fn tsc_hz() -> u64 {
    use std::time::{Duration, Instant};
    // SAFETY: rdtsc exists on every x86-64 CPU.
    let (t0, i0) = (unsafe { core::arch::x86_64::_rdtsc() }, Instant::now());
    while i0.elapsed() < Duration::from_micros(500) {
        std::hint::spin_loop();
    }
    // SAFETY: as above.
    let (t1, i1) = (unsafe { core::arch::x86_64::_rdtsc() }, Instant::now());
    let ns = i1.duration_since(i0).as_nanos().max(1);
    (u128::from(t1.wrapping_sub(t0)) * 1_000_000_000 / ns) as u64
}

/// The library: `--lib PATH`, or libusertrap.so beside this program. An
/// absolute path without ':' or blanks (LD_PRELOAD splits on those).
fn find_library(opt: Option<&Path>) -> Result<PathBuf, Failure> {
    let lib = match opt {
        Some(p) => {
            let abs = fs::canonicalize(p)
                .map_err(|e| Failure::new(OWN_FAILURE, format!("--lib {}: {}", p.display(), io_msg(&e))))?;
            if !abs.is_file() {
                return Err(Failure::new(OWN_FAILURE, format!("--lib {}: not a file", p.display())));
            }
            abs
        }
        None => {
            let exe = env::current_exe().map_err(|e| {
                Failure::new(OWN_FAILURE, format!("cannot find this program's own path: {}", io_msg(&e)))
            })?;
            let beside = exe.parent().unwrap_or(Path::new("/")).join(LIB_NAME);
            if !beside.is_file() {
                return Err(Failure::new(
                    OWN_FAILURE,
                    format!(
                        "cannot find {LIB_NAME} beside {} (looked for {}): build it with `cargo build --release`, \
                         or give --lib PATH",
                        exe.display(),
                        beside.display()
                    ),
                ));
            }
            beside
        }
    };
    if lib.as_os_str().as_bytes().iter().any(|&b| b == b':' || b == b' ' || b == b'\t') {
        return Err(Failure::new(
            OWN_FAILURE,
            format!("the library path {} contains ':' or a blank, which LD_PRELOAD cannot carry", lib.display()),
        ));
    }
    Ok(lib)
}

/// LD_PRELOAD for the command: the library first, then what was there.
pub fn preload_value(lib: &Path, existing: Option<&OsStr>) -> OsString {
    let mut v = lib.as_os_str().to_os_string();
    if let Some(old) = existing.filter(|o| !o.is_empty()) {
        v.push(":");
        v.push(old);
    }
    v
}

/// Opens (creates, truncates) the `-o` file before the command runs, so an
/// unwritable path is an error before anything happens.
pub fn open_output(p: &Path) -> Result<File, Failure> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(p)
        .map_err(|e| Failure::new(OWN_FAILURE, format!("cannot write the report to {}: {}", p.display(), io_msg(&e))))
}

/// The command's status as a report's `exit`.
pub fn exit_of(status: ExitStatus) -> Exit {
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit { how: "exit".into(), status: Some(code.into()), ..Exit::default() },
        (None, Some(sig)) => {
            Exit { how: "signal".into(), signal: Some(sig.into()), name: Some(signal_name(sig)), ..Exit::default() }
        }
        (None, None) => Exit { how: "unknown".into(), ..Exit::default() },
    }
}

/// `SIGTERM`, `SIGRT_3` (kernel numbering: SIGRT_0 is 32, as strace
/// names them), or `signal 99`: usertrap-core's names, as in the reports.
pub fn signal_name(sig: i32) -> String {
    crate::text::rendered(|s| usertrap_core::names::write_signal(s, sig.into()))
}

// Signal forwarding: SIGINT, SIGTERM and SIGHUP sent to usertrap while the
// command runs are sent on to it. Those the kernel generated (si_code
// SI_KERNEL: the terminal's ^C or hangup) already reached the command, which
// is in the same foreground process group, and are not sent twice. A signal
// that arrives before the child's pid is known is kept and sent after.

const FORWARDED: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
static CHILD: AtomicI32 = AtomicI32::new(0);
static PENDING: AtomicU64 = AtomicU64::new(0);

extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    let code = if info.is_null() {
        0
    } else {
        // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO.
        unsafe { (*info).si_code }
    };
    if code == libc::SI_KERNEL {
        return;
    }
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    } else {
        PENDING.fetch_or(1 << sig, Ordering::SeqCst);
    }
}

/// Installs `forward` for FORWARDED (except signals ignored on entry, as
/// under nohup: the command inherits that), returning the old actions.
fn install_forwarding() -> Vec<(i32, libc::sigaction)> {
    let mut saved = Vec::new();
    for sig in FORWARDED {
        // SAFETY: plain sigaction calls with zeroed, then filled, structures.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &raw mut old) != 0 || old.sa_sigaction == libc::SIG_IGN {
                continue;
            }
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = forward as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&raw mut act.sa_mask);
            if libc::sigaction(sig, &raw const act, std::ptr::null_mut()) == 0 {
                saved.push((sig, old));
            }
        }
    }
    saved
}

fn restore_actions(saved: &[(i32, libc::sigaction)]) {
    for (sig, old) in saved {
        // SAFETY: restores an action sigaction returned.
        unsafe { libc::sigaction(*sig, old, std::ptr::null_mut()) };
    }
}

/// Spawns `cmd` and waits for it, forwarding signals meanwhile. The child is
/// waited for without being reaped first (WNOWAIT), so its pid cannot be
/// reused while a forwarded signal may still be sent to it.
fn run_forwarding_signals(cmd: &mut Command) -> io::Result<(ExitStatus, u32)> {
    PENDING.store(0, Ordering::SeqCst);
    let saved = install_forwarding();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            restore_actions(&saved);
            return Err(e);
        }
    };
    let pid = child.id() as i32;
    CHILD.store(pid, Ordering::SeqCst);
    let pending = PENDING.swap(0, Ordering::SeqCst);
    for sig in FORWARDED {
        if pending & (1 << sig) != 0 {
            // SAFETY: the child is not reaped yet.
            unsafe { libc::kill(pid, sig) };
        }
    }
    loop {
        // SAFETY: waitid with a zeroed siginfo to fill.
        let r = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(libc::P_PID, pid as libc::id_t, &raw mut info, libc::WEXITED | libc::WNOWAIT)
        };
        if r == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
    CHILD.store(0, Ordering::SeqCst);
    let status = child.wait();
    restore_actions(&saved);
    status.map(|s| (s, pid as u32))
}

/// Ends usertrap with signal `sig`, as the command ended: default action,
/// unblocked, raised; with no core file of usertrap's own. Falls back to
/// exit status 128 + sig if the signal does not end the process.
pub fn die_by_signal(sig: i32) -> ! {
    let _ = io::stderr().flush();
    // SAFETY: plain libc calls on this process.
    unsafe {
        let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::setrlimit(libc::RLIMIT_CORE, &raw const no_core);
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &raw const set, std::ptr::null_mut());
        libc::raise(sig);
    }
    std::process::exit(128 + sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_goes_first() {
        let lib = Path::new("/x/libusertrap.so");
        assert_eq!(preload_value(lib, None), OsString::from("/x/libusertrap.so"));
        assert_eq!(preload_value(lib, Some(OsStr::new(""))), OsString::from("/x/libusertrap.so"));
        assert_eq!(preload_value(lib, Some(OsStr::new("/a.so"))), OsString::from("/x/libusertrap.so:/a.so"));
    }

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(34), "SIGRT_2");
        assert_eq!(signal_name(99), "signal 99");
    }
}
