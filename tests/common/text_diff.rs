//! Where two outputs (stdout or stderr of the native and the traced run)
//! first differ, with context, in a form a failing test can print.

use std::fmt::Write as _;

fn clip(line: &str) -> String {
    const MAX: usize = 200;
    if line.chars().count() > MAX {
        let s: String = line.chars().take(MAX).collect();
        format!("{}[... {} chars]", s, line.chars().count())
    } else {
        line.to_string()
    }
}

/// Where two outputs first differ, with a few lines of context from each.
/// None when equal.
pub fn text_diff(what: &str, native: &[u8], traced: &[u8]) -> Option<String> {
    if native == traced {
        return None;
    }
    const BEFORE: usize = 3;
    const AFTER: usize = 8;
    let a = String::from_utf8_lossy(native);
    let b = String::from_utf8_lossy(traced);
    // split_inclusive keeps a missing final newline visible as a difference.
    let la: Vec<&str> = a.split_inclusive('\n').collect();
    let lb: Vec<&str> = b.split_inclusive('\n').collect();
    let i = la.iter().zip(lb.iter()).take_while(|(x, y)| x == y).count();
    let mut s = format!(
        "{} differs at line {} (native: {} lines, {} bytes; traced: {} lines, {} bytes)\n",
        what,
        i + 1,
        la.len(),
        native.len(),
        lb.len(),
        traced.len()
    );
    for (name, lines) in [("native", &la), ("traced", &lb)] {
        let _ = writeln!(s, "    {}:", name);
        let from = i.saturating_sub(BEFORE);
        let to = (i + AFTER + 1).min(lines.len());
        if lines.is_empty() {
            let _ = writeln!(s, "      [empty]");
        } else if from >= to {
            let _ = writeln!(s, "      [no line {}: output ends after line {}]", i + 1, lines.len());
        }
        for (j, l) in lines.iter().enumerate().take(to).skip(from) {
            let marker = if j == i { '>' } else { ' ' };
            let (body, nl) = match l.strip_suffix('\n') {
                Some(b) => (b, ""),
                None => (*l, "  [no newline at end]"),
            };
            let _ = writeln!(s, "    {} {:>5} | {}{}", marker, j + 1, clip(body), nl);
        }
        if to < lines.len() {
            let _ = writeln!(s, "      [... {} more lines]", lines.len() - to);
        }
    }
    Some(s)
}
