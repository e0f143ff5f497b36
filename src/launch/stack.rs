//! The initial stack: reading the one the kernel gave the launcher, and
//! building the one the program must find (argc, argv, envp, auxv), as the
//! kernel would have built it for the program.

use crate::launch::load::Image;

pub const AT_NULL: u64 = 0;
pub const AT_PHDR: u64 = 3;
const AT_PHENT: u64 = 4;
pub const AT_PHNUM: u64 = 5;
const AT_BASE: u64 = 7;
const AT_FLAGS: u64 = 8;
const AT_ENTRY: u64 = 9;
pub const AT_EXECFN: u64 = 31;
pub const AT_HWCAP2: u64 = 26;

/// The kernel's initial stack, as the launcher received it.
pub struct Initial {
    pub argc: u64,
    pub argv: *const u64,
    pub envp: *const u64,
    envc: usize,
    auxv: *const u64,
    auxc: usize,
}

impl Initial {
    /// # Safety
    /// `sp` is the initial stack pointer the kernel passed to the entry point.
    pub unsafe fn parse(sp: *const u64) -> Initial {
        // SAFETY: the kernel's layout: argc, argv[argc], NULL, envp..., NULL,
        // auxv pairs ending with AT_NULL, all readable.
        unsafe {
            let argc = *sp;
            let argv = sp.add(1);
            let envp = argv.add(argc as usize + 1);
            let mut envc = 0;
            while *envp.add(envc) != 0 {
                envc += 1;
            }
            let auxv = envp.add(envc + 1);
            let mut auxc = 0;
            while *auxv.add(2 * auxc) != AT_NULL {
                auxc += 1;
            }
            Initial { argc, argv, envp, envc, auxv, auxc }
        }
    }

    /// Where the kernel's block ends (past AT_NULL): the strings lie above.
    pub fn end(&self) -> u64 {
        self.auxv as u64 + 16 * (self.auxc as u64 + 1)
    }

    pub fn env(&self, i: usize) -> u64 {
        if i < self.envc {
            // SAFETY: i < envc entries were counted by `parse`.
            unsafe { *self.envp.add(i) }
        } else {
            0
        }
    }

    pub fn envc(&self) -> usize {
        self.envc
    }

    fn aux_pair(&self, i: usize) -> (u64, u64) {
        if i < self.auxc {
            // SAFETY: i < auxc pairs were counted by `parse`.
            unsafe { (*self.auxv.add(2 * i), *self.auxv.add(2 * i + 1)) }
        } else {
            (AT_NULL, 0)
        }
    }

    pub fn aux(&self, kind: u64) -> u64 {
        (0..self.auxc).map(|i| self.aux_pair(i)).find(|&(k, _)| k == kind).map_or(0, |(_, v)| v)
    }

    /// Words of the program's block: argc, argv + NULL, envp (less the
    /// skipped entry) + NULL, auxv (plus one entry of ours) + AT_NULL.
    pub fn block_words(&self) -> usize {
        1 + self.argc as usize + 1 + self.envc + 1 + 2 * (self.auxc + 1 + 1)
    }

    /// Write the program's block into `out` (block_words() long): the same
    /// argv strings (so /proc/self/cmdline stays the program's), the
    /// environment without the entry `skip.0` and the `skip.1` entries
    /// right after it, and the auxiliary vector describing the program
    /// instead of the launcher. Returns the words written and where the
    /// auxiliary vector starts.
    pub fn build(
        &self,
        out: &mut [u64],
        (skip, skip_after): (u64, usize),
        program: &Image,
        interp: Option<&Image>,
        execfn: u64,
        extra: (u64, u64),
    ) -> (usize, usize) {
        let mut n = 0;
        let mut push = |v: u64| {
            if let Some(slot) = out.get_mut(n) {
                *slot = v;
                n += 1;
            }
        };
        push(self.argc);
        for i in 0..self.argc as usize {
            // SAFETY: argc entries follow argv (see `parse`).
            push(unsafe { *self.argv.add(i) });
        }
        push(0);
        let mut skipping = 0;
        let mut envn = 0;
        for e in (0..self.envc).map(|i| self.env(i)) {
            if e == skip {
                skipping = skip_after; // and the entries that follow it
            } else if skipping > 0 {
                skipping -= 1;
            } else {
                push(e);
                envn += 1;
            }
        }
        push(0);
        let auxv_at = 1 + self.argc as usize + 1 + envn + 1;
        for i in 0..self.auxc {
            let (k, v) = self.aux_pair(i);
            let v = match k {
                AT_PHDR => program.phdr,
                AT_PHENT => 56,
                AT_PHNUM => program.phnum,
                AT_ENTRY => program.entry,
                AT_BASE => interp.map_or(0, |i| i.base),
                AT_FLAGS => 0,
                AT_EXECFN => execfn,
                _ => v,
            };
            push(k);
            push(v);
        }
        if extra.0 != AT_NULL {
            push(extra.0);
            push(extra.1);
        }
        push(AT_NULL);
        push(0);
        (n, auxv_at)
    }
}
