//! USERTRAP_* settings, read from the environment by the constructor (before
//! any trap is armed). A bad setting is reported in one line naming the
//! variable, the value and what is accepted, and the program does not start.
//!
//! Never: start the program with a setting it did not understand.

use crate::trap::backend::Backend;

pub use crate::measure::report::{Format, Summary};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// USERTRAP_BACKEND=auto|seccomp|sud; None: auto (sud where the kernel
    /// has it, else seccomp; see the README for why).
    pub backend: Option<Backend>,
    /// USERTRAP_SUMMARY=0|1|/absolute/path: one line per process at exit, on
    /// stderr (1) or appended to a file (programs may close stderr first).
    pub summary: Summary<'static>,
    /// USERTRAP_SIGSTACK_KIB=64..65536: size of each thread's signal stack.
    pub sigstack_kib: usize,
    /// USERTRAP_PATCH=0|1: rewrite syscall sites into jumps to the fast path.
    pub patch: bool,
    /// USERTRAP_PREPATCH=0|1: in an exec'd image, patch at start the libc
    /// sites the exec'ing process had patched (patch::install::prepatch);
    /// 0 leaves every site to its first trap.
    pub prepatch: bool,
    /// USERTRAP_OUTPUT=PATH: where each process writes its report (%p: pid,
    /// %t: start time); empty: stderr.
    pub output: &'static [u8],
    /// USERTRAP_FORMAT=text|json.
    pub format: Format,
    /// USERTRAP_TIMING=0|1: time every call (two timestamps each); 0 keeps
    /// counts and errors only, for interception at the lowest cost.
    pub timing: bool,
    /// USERTRAP_TSC_HZ: the TSC's frequency, if known (saves calibrating).
    pub tsc_hz: u64,
    /// USERTRAP_COLLECT=NAME: the `usertrap` command's collector, an
    /// abstract unix socket; reports go there instead of USERTRAP_OUTPUT.
    pub collect: &'static [u8],
    /// USERTRAP_PHASES=0|1: print where the start-up and the report's time
    /// went, one line on stderr at exit (a diagnostic, `make bench`).
    pub phases: bool,
    /// USERTRAP_THREADS=0|1: keep each thread's figures apart and report
    /// them per thread too (tid and name).
    pub threads: bool,
    /// USERTRAP_TRACE=SLOW_NS[:NR,...]: record every call (of at least
    /// SLOW_NS, of those numbers) for `usertrap trace`'s collector.
    pub trace: &'static [u8],
    /// USERTRAP_SITE_CACHE=DIR: a directory where the processes of the tree
    /// share the libc sites they proved (patch::install::sitecache); empty:
    /// none (`usertrap stat` and `usertrap trace` set one per run).
    pub site_cache: &'static [u8],
    /// TMPDIR (not ours, read only): where a report goes that stderr
    /// cannot take (src/measure/report/).
    pub tmpdir: &'static [u8],
}

impl Default for Config {
    fn default() -> Config {
        Config {
            backend: None,
            summary: Summary::Off,
            sigstack_kib: 256,
            patch: true,
            prepatch: true,
            output: b"",
            format: Format::Text,
            timing: true,
            tsc_hz: 0,
            collect: b"",
            phases: false,
            threads: false,
            trace: b"",
            site_cache: b"",
            tmpdir: b"",
        }
    }
}

/// What is wrong with the environment.
#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError<'a> {
    /// A USERTRAP_* variable we do not know (a typo, most likely).
    Unknown { name: &'a [u8] },
    /// A known variable with a value we do not accept.
    Invalid { name: &'static str, value: &'a [u8], accepted: &'static str },
}

/// A 0/1 setting.
fn switch<'a>(name: &'static str, value: &'a [u8]) -> Result<bool, ConfigError<'a>> {
    match value {
        b"0" => Ok(false),
        b"1" => Ok(true),
        _ => Err(ConfigError::Invalid { name, value, accepted: "0, 1" }),
    }
}

pub const KNOWN: &str = "USERTRAP_BACKEND, USERTRAP_PATCH, USERTRAP_PREPATCH, USERTRAP_OUTPUT, USERTRAP_COLLECT, USERTRAP_FORMAT, USERTRAP_TIMING, USERTRAP_TSC_HZ, USERTRAP_SUMMARY, USERTRAP_SIGSTACK_KIB, USERTRAP_PHASES, USERTRAP_THREADS, USERTRAP_TRACE, USERTRAP_SITE_CACHE";

impl Config {
    /// Parse from the environment's entries ("NAME=value" byte strings).
    pub fn from_entries(entries: impl Iterator<Item = &'static [u8]>) -> Result<Config, ConfigError<'static>> {
        let mut c = Config::default();
        for entry in entries {
            if let Some(dir) = entry.strip_prefix(b"TMPDIR=") {
                c.tmpdir = dir;
                continue;
            }
            if !entry.starts_with(b"USERTRAP_") {
                continue;
            }
            let eq = entry.iter().position(|&b| b == b'=').unwrap_or(entry.len());
            let (name, value) = (&entry[..eq], entry.get(eq + 1..).unwrap_or(&[]));
            match name {
                b"USERTRAP_BACKEND" => {
                    c.backend = match value {
                        b"auto" => None,
                        b"seccomp" => Some(Backend::Seccomp),
                        b"sud" => Some(Backend::Sud),
                        _ => {
                            return Err(ConfigError::Invalid {
                                name: "USERTRAP_BACKEND",
                                value,
                                accepted: "auto, seccomp, sud",
                            })
                        }
                    }
                }
                b"USERTRAP_SUMMARY" => {
                    c.summary = match value {
                        b"0" => Summary::Off,
                        b"1" => Summary::Stderr,
                        [b'/', ..] if value.len() < 4096 => Summary::File(value),
                        _ => {
                            return Err(ConfigError::Invalid {
                                name: "USERTRAP_SUMMARY",
                                value,
                                accepted: "0, 1 (stderr), or an absolute file path to append to",
                            })
                        }
                    }
                }
                b"USERTRAP_OUTPUT" => {
                    if value.is_empty() || value.len() >= 4000 {
                        return Err(ConfigError::Invalid {
                            name: "USERTRAP_OUTPUT",
                            value,
                            accepted: "a file path (%p: pid, %t: start time), shorter than 4000 bytes",
                        });
                    }
                    c.output = value;
                }
                b"USERTRAP_COLLECT" => {
                    let ok = |b: &u8| b.is_ascii_alphanumeric() || b"._-".contains(b);
                    if value.is_empty() || value.len() > 100 || !value.iter().all(ok) {
                        return Err(ConfigError::Invalid {
                            name: "USERTRAP_COLLECT",
                            value,
                            accepted: "the usertrap command's collector name: 1 to 100 of A-Z a-z 0-9 . _ -",
                        });
                    }
                    c.collect = value;
                }
                b"USERTRAP_FORMAT" => {
                    c.format = match value {
                        b"text" => Format::Text,
                        b"json" => Format::Json,
                        _ => {
                            return Err(ConfigError::Invalid { name: "USERTRAP_FORMAT", value, accepted: "text, json" })
                        }
                    }
                }
                b"USERTRAP_TIMING" => c.timing = switch("USERTRAP_TIMING", value)?,
                b"USERTRAP_TSC_HZ" => {
                    c.tsc_hz = match parse_decimal(value) {
                        Some(n) if (1_000_000..=100_000_000_000).contains(&n) => n as u64,
                        _ => {
                            return Err(ConfigError::Invalid {
                                name: "USERTRAP_TSC_HZ",
                                value,
                                accepted: "the TSC frequency in Hz, from 1000000 to 100000000000",
                            })
                        }
                    }
                }
                b"USERTRAP_THREADS" => c.threads = switch("USERTRAP_THREADS", value)?,
                b"USERTRAP_TRACE" => {
                    if crate::measure::report::trace::parse(value, |_| {}).is_none() {
                        return Err(ConfigError::Invalid {
                            name: "USERTRAP_TRACE",
                            value,
                            accepted: "SLOW_NS or SLOW_NS:NR,NR,... (set by usertrap trace)",
                        });
                    }
                    c.trace = value;
                }
                b"USERTRAP_PHASES" => c.phases = switch("USERTRAP_PHASES", value)?,
                b"USERTRAP_PATCH" => c.patch = switch("USERTRAP_PATCH", value)?,
                b"USERTRAP_PREPATCH" => c.prepatch = switch("USERTRAP_PREPATCH", value)?,
                // The exec'ing library's list of sites (prepatch): read only
                // from the entries it put in front, never a setting.
                b"USERTRAP_SITES" => {}
                // The exec'ing library's kept descriptors (emulate::exec_keep):
                // likewise read only from the entries it put in front.
                b"USERTRAP_KEPT_FDS" => {}
                b"USERTRAP_SITE_CACHE" => {
                    if value.first() != Some(&b'/') || value.len() > crate::patch::install::sitecache::DIR_MAX {
                        return Err(ConfigError::Invalid {
                            name: "USERTRAP_SITE_CACHE",
                            value,
                            accepted: "an absolute directory path of at most 1024 bytes",
                        });
                    }
                    c.site_cache = value;
                }
                b"USERTRAP_SIGSTACK_KIB" => {
                    c.sigstack_kib = match parse_decimal(value) {
                        Some(n) if (64..=65536).contains(&n) => n,
                        _ => {
                            return Err(ConfigError::Invalid {
                                name: "USERTRAP_SIGSTACK_KIB",
                                value,
                                accepted: "a whole number of KiB from 64 to 65536",
                            })
                        }
                    }
                }
                _ => return Err(ConfigError::Unknown { name }),
            }
        }
        if !c.trace.is_empty() && c.collect.is_empty() {
            return Err(ConfigError::Invalid {
                name: "USERTRAP_TRACE",
                value: c.trace,
                accepted: "a setting of usertrap trace, which also sets USERTRAP_COLLECT",
            });
        }
        Ok(c)
    }
}

fn parse_decimal(v: &[u8]) -> Option<usize> {
    core::str::from_utf8(v).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(env: &'static [&'static str]) -> Result<Config, ConfigError<'static>> {
        Config::from_entries(env.iter().map(|s| s.as_bytes()))
    }

    #[test]
    fn defaults_without_settings() {
        assert_eq!(parse(&["PATH=/bin", "HOME=/root"]), Ok(Config::default()));
    }

    #[test]
    fn reads_every_setting() {
        let c =
            parse(&["USERTRAP_BACKEND=sud", "USERTRAP_SUMMARY=1", "USERTRAP_SIGSTACK_KIB=1024", "USERTRAP_PATCH=0"])
                .unwrap();
        assert_eq!(
            c,
            Config {
                backend: Some(Backend::Sud),
                summary: Summary::Stderr,
                sigstack_kib: 1024,
                patch: false,
                ..Config::default()
            }
        );
        let o = parse(&["USERTRAP_OUTPUT=/tmp/r.%p.json", "USERTRAP_FORMAT=json"]).unwrap();
        assert_eq!((o.output, o.format), (&b"/tmp/r.%p.json"[..], Format::Json));
        assert!(matches!(parse(&["USERTRAP_FORMAT=xml"]), Err(ConfigError::Invalid { name: "USERTRAP_FORMAT", .. })));
        assert!(matches!(parse(&["USERTRAP_OUTPUT="]), Err(ConfigError::Invalid { name: "USERTRAP_OUTPUT", .. })));
        let f = parse(&["USERTRAP_SUMMARY=/tmp/s.txt"]).unwrap();
        assert_eq!(f.summary, Summary::File(b"/tmp/s.txt"));
        assert!(matches!(
            parse(&["USERTRAP_SUMMARY=s.txt"]),
            Err(ConfigError::Invalid { name: "USERTRAP_SUMMARY", .. })
        ));
        assert_eq!(parse(&["USERTRAP_COLLECT=usertrap.12.ab"]).unwrap().collect, b"usertrap.12.ab");
        assert!(matches!(parse(&["USERTRAP_COLLECT=a/b"]), Err(ConfigError::Invalid { name: "USERTRAP_COLLECT", .. })));
        assert!(!parse(&["USERTRAP_PREPATCH=0"]).unwrap().prepatch);
        assert!(matches!(parse(&["USERTRAP_PREPATCH=2"]), Err(ConfigError::Invalid { name: "USERTRAP_PREPATCH", .. })));
        assert_eq!(parse(&["USERTRAP_SITE_CACHE=/tmp/s"]).unwrap().site_cache, b"/tmp/s");
        assert!(matches!(
            parse(&["USERTRAP_SITE_CACHE=s"]),
            Err(ConfigError::Invalid { name: "USERTRAP_SITE_CACHE", .. })
        ));
        // The exec'ing library's list of sites is not a setting: accepted, ignored.
        assert_eq!(parse(&["USERTRAP_SITES=ab:s12:34"]).unwrap(), Config::default());
    }

    #[test]
    fn backend_auto_is_the_default() {
        assert_eq!(parse(&[]).map(|c| c.backend), Ok(None));
        assert_eq!(parse(&["USERTRAP_BACKEND=auto"]).map(|c| c.backend), Ok(None));
        assert_eq!(parse(&["USERTRAP_BACKEND=seccomp"]).map(|c| c.backend), Ok(Some(Backend::Seccomp)));
    }

    #[test]
    fn rejects_bad_values_naming_what_is_accepted() {
        assert_eq!(
            parse(&["USERTRAP_BACKEND=bogus"]),
            Err(ConfigError::Invalid { name: "USERTRAP_BACKEND", value: b"bogus", accepted: "auto, seccomp, sud" })
        );
        assert!(matches!(parse(&["USERTRAP_SUMMARY=yes"]), Err(ConfigError::Invalid { name: "USERTRAP_SUMMARY", .. })));
        assert!(matches!(parse(&["USERTRAP_PATCH=off"]), Err(ConfigError::Invalid { name: "USERTRAP_PATCH", .. })));
        assert!(matches!(parse(&["USERTRAP_SIGSTACK_KIB=12"]), Err(ConfigError::Invalid { .. })));
        assert!(matches!(parse(&["USERTRAP_SIGSTACK_KIB=1k"]), Err(ConfigError::Invalid { .. })));
        assert!(matches!(parse(&["USERTRAP_SIGSTACK_KIB="]), Err(ConfigError::Invalid { .. })));
    }

    #[test]
    fn rejects_unknown_settings() {
        assert_eq!(parse(&["USERTRAP_BAKEND=sud"]), Err(ConfigError::Unknown { name: b"USERTRAP_BAKEND" }));
        assert_eq!(parse(&["USERTRAP_X"]), Err(ConfigError::Unknown { name: b"USERTRAP_X" }));
    }
}
