//! Call sites: each process's `sites` (docs/report-schema.md) merged over
//! the processes by where they are in their object (file and offset, which
//! address randomisation does not change), and named from the object's ELF
//! symbols (`.symtab`, else `.dynsym`): "which code made the slow calls".
//! No DWARF line information: no crate for it is available to this build.

use std::collections::{BTreeMap, HashMap};
use std::fs;

use serde::Serialize;

use crate::merge::merge_syscall;
use crate::report::{CallSite, Report, SyscallStats};

/// A call site merged over processes.
#[derive(Debug, Clone, Serialize)]
pub struct MergedSite {
    /// The object (path as the process saw it; empty: anonymous memory).
    pub object: Option<String>,
    /// The `syscall` instruction's offset in the file.
    pub offset: Option<u64>,
    /// The function holding it, from the object's symbols, and the offset in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol_offset: Option<u64>,
    /// Without an object: the address in the one process that had it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(flatten)]
    pub stats: SyscallStats,
    pub processes: u64,
    /// Why it was left on the slow path, where it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl MergedSite {
    /// `__libc_read+0x1e (libc.so.6)`; `libc.so.6+0x11ba5e` without a symbol;
    /// the address for code in no file.
    pub fn location(&self) -> String {
        let base = |o: &str| o.rsplit('/').next().unwrap_or(o).to_string();
        match (&self.object, self.offset, &self.symbol) {
            (Some(o), _, Some(sym)) => format!("{sym}+{:#x} ({})", self.symbol_offset.unwrap_or(0), base(o)),
            (Some(o), Some(off), None) if !o.is_empty() => format!("{}+{off:#x}", base(o)),
            _ => self.address.clone().unwrap_or_else(|| "?".into()),
        }
    }
}

/// Merges the `sites` of `reports` (the syscalls `shown` keeps), by total
/// time, largest first; then by location.
pub fn merge<'a>(reports: impl Iterator<Item = &'a Report>, shown: impl Fn(&str) -> bool) -> Vec<MergedSite> {
    type Key = (String, u64, i64, String);
    let mut groups: BTreeMap<Key, Vec<(&CallSite, u32)>> = BTreeMap::new();
    for r in reports {
        for s in r.sites.iter().filter(|s| shown(&s.name)) {
            let key = match (&s.object, s.offset) {
                (Some(o), Some(off)) if !o.is_empty() => (o.clone(), off, s.nr, s.name.clone()),
                // Anonymous code: its address means something in its process only.
                _ => (
                    format!("\0{}:{}", r.pid, r.start_ns),
                    u64::from_str_radix(s.address.trim_start_matches("0x"), 16).unwrap_or(0),
                    s.nr,
                    s.name.clone(),
                ),
            };
            groups.entry(key).or_default().push((s, r.pid));
        }
    }
    let mut symbols = Symbols::default();
    let mut out: Vec<MergedSite> = groups
        .into_values()
        .map(|entries| {
            let first = entries[0].0;
            let stats: Vec<SyscallStats> = entries.iter().map(|(s, _)| s.as_stats()).collect();
            let refs: Vec<&SyscallStats> = stats.iter().collect();
            let mut pids: Vec<u32> = entries.iter().map(|e| e.1).collect();
            pids.sort_unstable();
            pids.dedup();
            let in_file = first.object.as_deref().is_some_and(|o| !o.is_empty() && first.offset.is_some());
            let sym = if in_file {
                symbols.lookup(first.object.as_deref().unwrap_or(""), first.offset.unwrap_or(0))
            } else {
                None
            };
            MergedSite {
                object: first.object.clone(),
                offset: first.offset,
                symbol: sym.as_ref().map(|s| s.0.clone()),
                symbol_offset: sym.map(|s| s.1),
                address: (!in_file).then(|| first.address.clone()),
                stats: merge_syscall(&refs),
                processes: pids.len() as u64,
                reason: entries.iter().find_map(|(s, _)| s.reason.clone()),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.stats
            .total_ns
            .cmp(&a.stats.total_ns)
            .then(b.stats.calls.cmp(&a.stats.calls))
            .then(a.location().cmp(&b.location()))
    });
    out
}

/// Symbols of the objects read so far (each file read once).
#[derive(Default)]
pub struct Symbols {
    objects: HashMap<String, Option<Elf>>,
}

impl Symbols {
    /// The function holding file offset `offset` of `object`, and the
    /// offset into it; None if the file cannot be read or names none.
    pub fn lookup(&mut self, object: &str, offset: u64) -> Option<(String, u64)> {
        let elf = self
            .objects
            .entry(object.to_string())
            .or_insert_with(|| fs::read(object).ok().and_then(|b| Elf::parse(&b)));
        elf.as_ref()?.symbol_at_offset(offset)
    }
}

/// What an ELF file says that naming an address needs.
struct Elf {
    /// PT_LOAD segments: (file offset, address, size in the file).
    loads: Vec<(u64, u64, u64)>,
    /// Functions: (start address, size, binding rank, name), by start.
    funcs: Vec<(u64, u64, u8, String)>,
}

fn le(b: &[u8], at: usize, n: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(n)?)?;
    Some(s.iter().rev().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
}

const SHT_SYMTAB: u64 = 2;
const SHT_DYNSYM: u64 = 11;
const STT_FUNC: u64 = 2;
const STT_GNU_IFUNC: u64 = 10;

impl Elf {
    /// A 64-bit little-endian ELF file's loads and function symbols.
    fn parse(b: &[u8]) -> Option<Elf> {
        if b.get(..4)? != b"\x7fELF" || *b.get(4)? != 2 || *b.get(5)? != 1 {
            return None;
        }
        let (phoff, shoff) = (le(b, 0x20, 8)? as usize, le(b, 0x28, 8)? as usize);
        let (phentsize, phnum) = (le(b, 0x36, 2)? as usize, le(b, 0x38, 2)? as usize);
        let (shentsize, shnum) = (le(b, 0x3a, 2)? as usize, le(b, 0x3c, 2)? as usize);
        let mut loads = Vec::new();
        for i in 0..phnum {
            let p = phoff.checked_add(i.checked_mul(phentsize)?)?;
            if le(b, p, 4)? == 1 {
                loads.push((le(b, p + 8, 8)?, le(b, p + 16, 8)?, le(b, p + 32, 8)?));
            }
        }
        let section = |i: usize| -> Option<(u64, usize, usize, usize, usize)> {
            let s = shoff.checked_add(i.checked_mul(shentsize)?)?;
            Some((
                le(b, s + 4, 4)?,
                le(b, s + 24, 8)? as usize,
                le(b, s + 32, 8)? as usize,
                le(b, s + 40, 4)? as usize,
                le(b, s + 56, 8)? as usize,
            ))
        };
        let mut funcs = Vec::new();
        // .symtab when there is one (it has the local functions too), else .dynsym.
        for want in [SHT_SYMTAB, SHT_DYNSYM] {
            for i in 0..shnum {
                let Some((ty, off, size, link, entsize)) = section(i) else { continue };
                if ty != want || entsize < 24 {
                    continue;
                }
                let Some((_, stroff, strsize, _, _)) = section(link) else { continue };
                let strtab = b.get(stroff..stroff.checked_add(strsize)?)?;
                for k in 0..size / entsize {
                    let e = off + k * entsize;
                    let (Some(name), Some(info), Some(shndx), Some(value), Some(sz)) =
                        (le(b, e, 4), b.get(e + 4), le(b, e + 6, 2), le(b, e + 8, 8), le(b, e + 16, 8))
                    else {
                        break;
                    };
                    let ty = u64::from(info & 0xf);
                    if (ty != STT_FUNC && ty != STT_GNU_IFUNC) || shndx == 0 || value == 0 {
                        continue;
                    }
                    let name = strtab.get(name as usize..).unwrap_or(&[]);
                    let name = &name[..name.iter().position(|&c| c == 0).unwrap_or(name.len())];
                    if name.is_empty() {
                        continue;
                    }
                    // Global names first, then weak, then local (aliases share an address).
                    let rank = match info >> 4 {
                        1 => 0,
                        2 => 1,
                        _ => 2,
                    };
                    funcs.push((value, sz, rank, String::from_utf8_lossy(name).into_owned()));
                }
            }
            if !funcs.is_empty() {
                break;
            }
        }
        funcs.sort();
        Some(Elf { loads, funcs })
    }

    /// The function holding file offset `off` (through the PT_LOAD that
    /// maps it), and the offset into the function.
    fn symbol_at_offset(&self, off: u64) -> Option<(String, u64)> {
        let &(poff, vaddr, _) = self.loads.iter().find(|&&(poff, _, size)| poff <= off && off < poff + size)?;
        let addr = off - poff + vaddr;
        // The function that contains it, the best-ranked if several do.
        let i = self.funcs.partition_point(|f| f.0 <= addr);
        let holding = self.funcs.get(..i)?.iter().filter(|f| addr < f.0.saturating_add(f.1.max(1)));
        let best = holding.min_by(|a, b| a.2.cmp(&b.2).then(a.3.cmp(&b.3)))?;
        Some((best.3.clone(), addr - best.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbolises_this_test_binary() {
        // This test's own executable: a function of ours by its file offset.
        let exe = std::env::current_exe().unwrap();
        let mut s = Symbols::default();
        let b = fs::read(&exe).unwrap();
        let elf = Elf::parse(&b).expect("an ELF file");
        let (start, _, _, name) = elf.funcs.iter().find(|f| f.3 == "main").expect("main in .symtab").clone();
        let &(poff, vaddr, _) = elf.loads.iter().find(|l| l.1 <= start && start < l.1 + l.2).unwrap();
        let off = start - vaddr + poff + 3;
        assert_eq!(s.lookup(exe.to_str().unwrap(), off), Some((name, 3)));
        assert_eq!(s.lookup("/nonexistent/object", 5), None);
        assert!(Elf::parse(b"not an ELF").is_none());
    }
}
