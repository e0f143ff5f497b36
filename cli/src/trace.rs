//! `-e trace=SET`: which syscalls a report shows.
//!
//! The names and strace's classes (`%file`, `%network`, ...) are
//! usertrap-core's (`syscalls`), the table the library names syscalls with.

use std::collections::BTreeSet;

use usertrap_core::syscalls::{self, class, CLASSES};

use crate::error::Failure;

/// "%file, %network (%net), ...": the accepted class names.
fn class_list() -> String {
    CLASSES
        .iter()
        .map(
            |c| {
                if c.aliases.is_empty() {
                    c.name.to_string()
                } else {
                    format!("{} ({})", c.name, c.aliases.join(", "))
                }
            },
        )
        .collect::<Vec<_>>()
        .join(", ")
}

/// One `-e trace=SET`: the named syscalls, or every syscall but them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TraceSet {
    negated: bool,
    names: BTreeSet<String>,
}

/// The syscalls a report shows: the union of every `-e trace=SET` given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceFilter {
    sets: Vec<TraceSet>,
    /// The sets as given (`%file,read`; `;`-joined when several), for headers.
    pub spec: String,
}

impl TraceFilter {
    /// Parses the `-e` arguments: each `trace=SET` (or a bare `SET`, as
    /// strace takes it), SET being comma-separated syscall names, classes
    /// (`%file`, ...), `all` or `none`, the whole set optionally preceded by
    /// `!` (every syscall but those). None when no `-e` was given. Every
    /// unknown name and class is reported in one error (exit status 2).
    pub fn parse(exprs: &[String]) -> Result<Option<TraceFilter>, Failure> {
        if exprs.is_empty() {
            return Ok(None);
        }
        let mut sets = Vec::new();
        let mut specs = Vec::new();
        for expr in exprs {
            let set = match expr.split_once('=') {
                Some(("trace" | "t", set)) => set,
                Some((q, _)) => {
                    return Err(Failure::usage(format!("-e {expr}: only trace=SET is supported, not {q}=")))
                }
                None => expr.as_str(),
            };
            let (negated, list) = match set.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, set),
            };
            let mut names = BTreeSet::new();
            let mut unknown_names = Vec::new();
            let mut unknown_classes = Vec::new();
            let mut problems = Vec::new();
            if list.is_empty() {
                problems.push("the set is empty (give names, classes such as %file, all or none)".to_string());
            }
            for item in list.split(',').filter(|_| !list.is_empty()) {
                let item = item.trim();
                if item.is_empty() {
                    problems.push("an empty name (two commas, or a trailing comma)".to_string());
                } else if item == "all" {
                    names.extend(syscalls::names().map(str::to_string));
                } else if item == "none" {
                } else if item.starts_with('%') {
                    match class(item) {
                        Some(c) => names.extend(c.members.iter().map(|s| s.to_string())),
                        None => unknown_classes.push(item.to_string()),
                    }
                } else if item.starts_with('/') || item.starts_with('?') {
                    problems.push(format!("{item}: regular expressions and `?` are not supported"));
                } else if syscalls::is_report_name(item) {
                    names.insert(item.to_string());
                } else if class(&format!("%{item}")).is_some() {
                    unknown_names.push(format!("{item} (the class is %{item})"));
                } else {
                    unknown_names.push(item.to_string());
                }
            }
            if !unknown_names.is_empty() {
                let s = if unknown_names.len() == 1 { "" } else { "s" };
                problems.push(format!(
                    "unknown syscall{s} {} (x86-64 names, as in the kernel's syscall_64.tbl)",
                    unknown_names.join(", ")
                ));
            }
            if !unknown_classes.is_empty() {
                let es = if unknown_classes.len() == 1 { "" } else { "es" };
                problems.push(format!("unknown class{es} {} (classes: {})", unknown_classes.join(", "), class_list()));
            }
            if !problems.is_empty() {
                return Err(Failure::usage(format!("-e {expr}: {}", problems.join("; "))));
            }
            sets.push(TraceSet { negated, names });
            specs.push(set.to_string());
        }
        Ok(Some(TraceFilter { sets, spec: specs.join(";") }))
    }

    /// Whether the report shows syscall `name` (an i386 call, `i386:<name>`,
    /// as the x86-64 call of that name).
    pub fn matches(&self, name: &str) -> bool {
        let name = name.strip_prefix("i386:").unwrap_or(name);
        self.sets.iter().any(|s| s.names.contains(name) != s.negated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_classes_and_negation() {
        let f = TraceFilter::parse(&["trace=%file,read".into()]).unwrap().unwrap();
        assert!(f.matches("openat") && f.matches("read") && !f.matches("write"));
        let f = TraceFilter::parse(&["%net".into()]).unwrap().unwrap();
        assert!(f.matches("connect") && !f.matches("read"));
        let f = TraceFilter::parse(&["trace=%wait".into()]).unwrap().unwrap();
        assert!(f.matches("futex") && f.matches("epoll_wait") && f.matches("wait4") && !f.matches("read"));
        let f = TraceFilter::parse(&["trace=!%memory".into()]).unwrap().unwrap();
        assert!(!f.matches("mmap") && f.matches("read") && f.matches("syscall_999"));
        let f = TraceFilter::parse(&["trace=read".into(), "trace=write".into()]).unwrap().unwrap();
        assert!(f.matches("read") && f.matches("write") && !f.matches("close"));
        assert_eq!(f.spec, "read;write");
        assert!(TraceFilter::parse(&[]).unwrap().is_none());
    }

    #[test]
    fn unknown_names_and_classes_are_all_reported() {
        let e = TraceFilter::parse(&["trace=read,bogus,%nope,file".into()]).unwrap_err();
        assert_eq!(e.code, crate::error::USAGE);
        assert!(e.message.contains("unknown syscalls bogus, file (the class is %file)"), "{}", e.message);
        assert!(e.message.contains("unknown class %nope (classes: %file, %network (%net),"), "{}", e.message);
        assert!(TraceFilter::parse(&["signal=SIGINT".into()]).is_err());
        assert!(TraceFilter::parse(&["trace=".into()]).is_err());
        assert!(TraceFilter::parse(&["trace=read,".into()]).is_err());
    }
}
