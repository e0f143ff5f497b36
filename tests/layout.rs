//! The library's floor plan, checked: every file of src/ imports only files on
//! its own floor or on floors below, and the file-level import graph has no
//! cycle. The floors are declared once, in `FLOORS`, and explained in the crate
//! doc (src/lib.rs).
//!
//! An import is any path in a file's code (a `use` line or an inline path)
//! that starts with `crate::`, `super::` or `self::`, resolved to the file that
//! defines the module it names (`a/b.rs` or `a/b/mod.rs`; a path that goes on
//! into an item stops at the deepest module file). Comments, string literals
//! and `#[cfg(test)] mod tests { .. }` blocks are left out: tests may reach
//! anywhere. The crate root (src/lib.rs) declares the floors and is no floor.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Lowest first. A file belongs to the floor of the longest prefix of its
/// module path listed here; every file of src/ must belong to one.
const FLOORS: &[&[&str]] = &[
    // Ground floor: assembly, raw syscalls, log lines, memory of our own, the
    // kernel's frame types, the thread area and the tables it points to.
    &["rt"],
    // The patching mechanism: maps, unwind tables, site proof, slots, the
    // write protocol, the registry of sites.
    &["patch"],
    // Per-thread figures.
    &["measure"],
    // Traps, their emulations, when to patch, the report at exit.
    &["trap", "emulate", "patch::install", "measure::report"],
    // Constructor time.
    &["start"],
    // The launcher.
    &["launch"],
];

fn floor_of(module: &[String]) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None; // (prefix length, floor)
    for (floor, prefixes) in FLOORS.iter().enumerate() {
        for p in prefixes.iter() {
            let parts: Vec<&str> = p.split("::").collect();
            if module.len() >= parts.len()
                && module.iter().zip(&parts).all(|(a, b)| a == b)
                && best.is_none_or(|(len, _)| parts.len() > len)
            {
                best = Some((parts.len(), floor));
            }
        }
    }
    best.map(|(_, f)| f)
}

/// Module path -> file, for every .rs file under `dir`.
fn modules(root: &Path, dir: &Path, out: &mut BTreeMap<Vec<String>, PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            modules(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).unwrap();
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            let last = parts.pop().unwrap();
            let stem = last.trim_end_matches(".rs");
            if !(stem == "mod" || (parts.is_empty() && stem == "lib")) {
                parts.push(stem.to_string());
            }
            out.insert(parts, path);
        }
    }
}

/// The code of a file without comments, string and char literals.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'r' && (b[i..].starts_with(b"r\"") || b[i..].starts_with(b"r#\"")) {
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            let mut end = String::from("\"");
            end.push_str(&"#".repeat(hashes));
            i += 2 + hashes;
            while i < b.len() && !b[i..].starts_with(end.as_bytes()) {
                i += 1;
            }
            i += end.len();
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\''), else a lifetime.
            if i + 2 < b.len() && b[i + 1] == b'\\' {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            } else if i + 2 < b.len() && b[i + 2] == b'\'' {
                i += 3;
                out.push_str("' '");
            } else {
                out.push('\'');
                i += 1;
            }
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Cut `#[cfg(test)] mod NAME { .. }` blocks out.
fn without_tests(code: &str) -> String {
    let mut out = code.to_string();
    while let Some(at) = out.find("#[cfg(test)]") {
        let rest = &out[at + "#[cfg(test)]".len()..];
        let trimmed = rest.trim_start();
        let skip = rest.len() - trimmed.len();
        if !trimmed.starts_with("mod ") {
            // Some other test-only item: leave it in, look further.
            let tail = without_tests(rest);
            return format!("{}#[cfg(test)]{}", &out[..at], tail);
        }
        let Some(open) = trimmed.find(['{', ';']) else { break };
        if trimmed.as_bytes()[open] == b';' {
            out.replace_range(at..at + "#[cfg(test)]".len() + skip + open + 1, "");
            continue;
        }
        let mut depth = 0;
        let mut end = open;
        for (k, c) in trimmed[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.replace_range(at..at + "#[cfg(test)]".len() + skip + end, "");
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Every path (as segments) starting with crate/super/self, braces expanded.
/// `children`: the modules the file declares (`mod x;`), whose paths (`x::f`)
/// count as `self::x::f`.
fn paths(code: &str, children: &[String]) -> Vec<Vec<String>> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let boundary = i == 0 || !(is_ident(b[i - 1]) || b[i - 1] == b':');
        let child = children.iter().find(|c| b[i..].starts_with(format!("{c}::").as_bytes()));
        let starts = boundary && ["crate::", "super::", "self::"].iter().any(|p| b[i..].starts_with(p.as_bytes()));
        if boundary && child.is_some() && !starts {
            i = parse_path(b, i, vec!["self".to_string()], &mut out);
        } else if starts {
            i = parse_path(b, i, Vec::new(), &mut out);
        } else {
            i += 1;
        }
    }
    out
}

/// Parse a path (or a `{a, b::c}` group) at `i` with the segments before it
/// in `prefix`; push each full path. Returns where parsing stopped.
fn parse_path(b: &[u8], mut i: usize, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < b.len() && b[i] == b'{' {
            i += 1;
            loop {
                while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
                    i += 1;
                }
                if i >= b.len() || b[i] == b'}' {
                    return i + 1;
                }
                i = parse_path(b, i, prefix.clone(), out);
                // skip `as name`
                while i < b.len() && b[i] != b',' && b[i] != b'}' && b[i] != b'{' {
                    i += 1;
                }
            }
        }
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        if i == start {
            // `*` or the end of the path
            out.push(prefix);
            return i;
        }
        let seg = String::from_utf8_lossy(&b[start..i]).into_owned();
        // `a::{self, ..}` names `a` itself.
        if seg != "self" || prefix.is_empty() {
            prefix.push(seg);
        }
        if b[i..].starts_with(b"::") && !b[i + 2..].starts_with(b"<") {
            i += 2;
        } else {
            out.push(prefix);
            return i;
        }
    }
}

/// The module a path inside `module` (a file's own module path) names.
fn resolve(module: &[String], path: &[String], known: &BTreeMap<Vec<String>, PathBuf>) -> Option<Vec<String>> {
    let mut base: Vec<String> = module.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") | Some("super") => {
            while let Some(seg) = rest.first() {
                match seg.as_str() {
                    "self" => {}
                    "super" => {
                        base.pop()?;
                    }
                    _ => break,
                }
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    for seg in rest {
        let mut next = base.clone();
        next.push(seg.clone());
        if known.contains_key(&next) {
            base = next;
        } else {
            break;
        }
    }
    Some(base)
}

/// file -> files it imports (module paths).
fn graph(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut known = BTreeMap::new();
    modules(src, src, &mut known);
    let mut g = BTreeMap::new();
    for (module, file) in &known {
        let code = without_tests(&code_only(&fs::read_to_string(file).unwrap()));
        let children: Vec<String> = known
            .keys()
            .filter(|k| k.len() == module.len() + 1 && k.starts_with(module))
            .map(|k| k[module.len()].clone())
            .collect();
        let mut to = BTreeSet::new();
        for p in paths(&code, &children) {
            if let Some(target) = resolve(module, &p, &known) {
                if &target != module && !target.is_empty() {
                    to.insert(target);
                }
            }
        }
        g.insert(module.clone(), to);
    }
    g
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// One cycle of the graph, if any.
fn find_cycle(g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        n: &Vec<String>,
        g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        mark: &mut BTreeMap<Vec<String>, Mark>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        mark.insert(n.clone(), Mark::Open);
        stack.push(n.clone());
        for m in g.get(n).into_iter().flatten() {
            match mark.get(m).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let at = stack.iter().position(|s| s == m).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(m, g, mark, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        mark.insert(n.clone(), Mark::Done);
        None
    }
    let mut mark = BTreeMap::new();
    for n in g.keys() {
        if mark.get(n).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(c) = visit(n, g, &mut mark, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The groups of files that reach each other (strongly connected, more than
/// one file), each listed in order.
fn tangles(g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<String>> {
    let reach = |from: &Vec<String>| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for m in g.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    todo.push(m.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&Vec<String>, BTreeSet<Vec<String>>> = g.keys().map(|n| (n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for n in g.keys() {
        if done.contains(n) || !reached[n].contains(n) {
            continue;
        }
        let group: Vec<String> = reached[n]
            .iter()
            .filter(|m| reached[*m].contains(n))
            .inspect(|m| {
                done.insert((*m).clone());
            })
            .map(|m| name(m))
            .collect();
        out.push(group);
    }
    out
}

#[test]
fn file_imports_have_no_cycle() {
    let g = graph(&src());
    if let Some(cycle) = find_cycle(&g) {
        let names: Vec<String> = cycle.iter().map(|m| name(m)).collect();
        let groups: Vec<String> = tangles(&g).iter().map(|t| format!("{} files: {}", t.len(), t.join(", "))).collect();
        panic!(
            "import cycle between the files of src/:\n  {}\nfiles that import each other (directly or not):\n  {}",
            names.join("\n  -> "),
            groups.join("\n  ")
        );
    }
}

#[test]
fn floors_import_only_from_below() {
    let g = graph(&src());
    let mut wrong = Vec::new();
    for (from, tos) in &g {
        if from.is_empty() {
            continue; // the crate root
        }
        let Some(f) = floor_of(from) else {
            wrong.push(format!("{} is on no floor (add it to FLOORS in tests/layout.rs)", name(from)));
            continue;
        };
        for to in tos {
            match floor_of(to) {
                Some(t) if t <= f => {}
                Some(t) => wrong.push(format!("{} (floor {f}) imports {} (floor {t})", name(from), name(to))),
                None => wrong.push(format!("{} imports {}, which is on no floor", name(from), name(to))),
            }
        }
    }
    assert!(wrong.is_empty(), "imports that point up:\n  {}", wrong.join("\n  "));
}

/// The checker itself: a cycle through a group import, super:: and a mod.rs.
#[test]
fn the_checker_sees_paths_and_cycles() {
    let code = code_only("use crate::a::{self, b::{C, d}}; // crate::x\nlet s = \"crate::y\"; super::e::f();");
    let p: Vec<String> = paths(&code, &[]).iter().map(|p| p.join("::")).collect();
    assert_eq!(p, ["crate::a", "crate::a::b::C", "crate::a::b::d", "super::e::f"]);
    let code = without_tests("fn a() { crate::x::y(); }\n#[cfg(test)]\nmod tests { use crate::z; }\n");
    assert_eq!(paths(&code, &[]).len(), 1);
    let code = code_only("mod b; fn f() { b::g(); x::b::h(); }");
    assert_eq!(paths(&code, &["b".to_string()]), [["self", "b", "g"]]);
    let known: BTreeMap<Vec<String>, PathBuf> = [vec![], vec!["a".to_string()], vec!["a".to_string(), "b".to_string()]]
        .into_iter()
        .map(|m| (m, PathBuf::new()))
        .collect();
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(resolve(&s(&["a", "b"]), &s(&["super", "X"]), &known), Some(s(&["a"])));
    assert_eq!(resolve(&s(&["a"]), &s(&["crate", "a", "b", "f"]), &known), Some(s(&["a", "b"])));
    let g: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> =
        [(s(&["a"]), [s(&["a", "b"])].into_iter().collect()), (s(&["a", "b"]), [s(&["a"])].into_iter().collect())]
            .into_iter()
            .collect();
    assert_eq!(find_cycle(&g).map(|c| c.len()), Some(3));
}

/// The import graph, for a reader: `cargo test --test layout -- --ignored --nocapture`.
#[test]
#[ignore]
fn print_graph() {
    for (from, tos) in graph(&src()) {
        let f = floor_of(&from).map_or("-".to_string(), |f| f.to_string());
        let tos: Vec<String> = tos.iter().map(|t| name(t)).collect();
        println!("[{f}] {} -> {}", name(&from), tos.join(", "));
    }
}
