//! Writing code other threads may be running (cross-modifying code).
//!
//! All writes go through /proc/self/mem, which writes read-only text (the
//! kernel breaks copy-on-write as for a debugger) without ever making a page
//! non-executable or writable for other threads. A site is rewritten in the
//! seed's order, so that a thread decoding it at any moment either runs the old
//! `mov`, or faults at site+5 on 0x06:
//!   1. byte 5 (first byte of the old `syscall`) becomes 0x06;
//!   2. bytes 1-6 become the jump's ModRM, SIB and displacement;
//!   3. byte 0 becomes the jump's opcode 0xff;
//!
//! with a core-serialising barrier for every thread (membarrier SYNC_CORE)
//! before the first write and after the last.
//!
//! Forms R and P have their own orders ([`patch_range`], [`patch_pad`];
//! forms.rs says why each is safe), and every way back ([`unpatch`]) notes
//! the site first so that a fault on a byte restored meanwhile is recognised.
//!
//! Never: make a page writable or non-executable, or write a site out of
//! these orders.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::rt::raw;

const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: u64 = 16;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE: u64 = 32;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE: u64 = 64;
const MEMBARRIER_CMD_GET_REGISTRATIONS: u64 = 512;

/// The library registered for SYNC_CORE barriers in this process.
static LIB_REGISTERED: AtomicBool = AtomicBool::new(false);
/// The REGISTER commands the program itself issued successfully (as
/// MEMBARRIER_CMD_GET_REGISTRATIONS bits). Like the kernel's state, kept
/// across fork and dropped by exec.
static PROGRAM_REGISTERED: AtomicU64 = AtomicU64::new(0);

/// Register for SYNC_CORE barriers (before the first patch). Err(errno) if
/// unavailable.
pub fn register_membarrier() -> Result<(), i64> {
    raw::membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, 0)?;
    LIB_REGISTERED.store(true, Ordering::Relaxed);
    Ok(())
}

/// The program's membarrier(2): as the kernel would answer had the library
/// not registered for SYNC_CORE. Registration is per process and cannot be
/// undone, so the program's own view is kept here: a SYNC_CORE barrier it
/// never registered for gets EPERM, and GET_REGISTRATIONS does not show the
/// library's registration (which the kernel also counts as a
/// REGISTER_PRIVATE_EXPEDITED).
pub fn program_membarrier(args: [u64; 6]) -> i64 {
    let (cmd, flags) = (args[0], args[1]);
    let lib = LIB_REGISTERED.load(Ordering::Relaxed);
    let mine = PROGRAM_REGISTERED.load(Ordering::Relaxed);
    if lib
        && cmd == MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE
        && flags == 0
        && mine & MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE == 0
    {
        return -raw::EPERM;
    }
    // SAFETY: the program's own membarrier (rt::raw: forwarded program
    // calls); its commands take no pointers.
    let r = unsafe { raw::syscall6(libc::SYS_membarrier, args) };
    if r < 0 {
        return r;
    }
    match cmd {
        MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE => {
            // The kernel records it as both (GET_REGISTRATIONS shows both bits).
            PROGRAM_REGISTERED.fetch_or(cmd | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, Ordering::Relaxed);
            r
        }
        c if c.is_power_of_two() && c & 0x0154 != 0 => {
            // Another REGISTER command (4, 16, 256).
            PROGRAM_REGISTERED.fetch_or(c, Ordering::Relaxed);
            r
        }
        MEMBARRIER_CMD_GET_REGISTRATIONS if lib => {
            let ours = MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED;
            (r & !(ours as i64)) | (mine & ours) as i64
        }
        _ => r,
    }
}

/// Every thread of the process executes a serialising instruction before it
/// returns to user space again.
pub fn sync_cores() {
    let _ = raw::membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, 0);
}

/// /proc/self/mem, open for one patch.
pub struct Mem {
    fd: i32,
}

impl Mem {
    pub fn open() -> Result<Mem, i64> {
        let fd = raw::openat(libc::AT_FDCWD, c"/proc/self/mem", libc::O_RDWR | libc::O_CLOEXEC, 0)?;
        Ok(Mem { fd })
    }

    /// Write `bytes` at `addr` in our own address space.
    pub fn write(&self, addr: u64, bytes: &[u8]) -> Result<(), i64> {
        let _change = crate::patch::registry::Change::begin();
        if raw::pwrite(self.fd, bytes, addr)? == bytes.len() {
            Ok(())
        } else {
            Err(raw::EFAULT)
        }
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        let _ = raw::close(self.fd);
    }
}

/// The 7 bytes of `jmp *slot` (ff 24 25 + disp32).
pub fn jump_bytes(slot: u64) -> [u8; 7] {
    let d = (slot as u32).to_le_bytes();
    [0xff, 0x24, 0x25, d[0], d[1], d[2], d[3]]
}

/// What eax holds in a thread that decoded the site between steps 2 and 3:
/// `mov $imm32,%eax` with the jump's bytes 1-4 as the immediate.
pub fn torn_eax(slot: u64) -> u32 {
    let j = jump_bytes(slot);
    u32::from_le_bytes([j[1], j[2], j[3], j[4]])
}

/// Give a patched site back its original `mov $nr,%eax; syscall` if it
/// still holds our jump through `slot` (else it was unmapped or replaced
/// since: not ours to touch), in an order where a thread decoding it at any
/// moment runs the jump, or faults on the 0x06 at site+5 (handled while the
/// site is still recorded):
///   1. byte 0 becomes 0xb8: `mov $<jump bytes>,%eax`, then 0x06 (the
///      "torn" eax fault.rs knows);
///   2. bytes 1-4 become the number: `mov $nr,%eax`, then 0x06;
///   3. byte 6 becomes 0x05, then byte 5 0x0f: `syscall` (never `0f d3`).
pub fn unpatch_site(mem: &Mem, site: u64, slot: u64, nr: u32) -> Result<(), i64> {
    let mut now = [0u8; 7];
    raw::copy_from_user(&mut now, site)?;
    if now != jump_bytes(slot) {
        return Ok(());
    }
    sync_cores();
    mem.write(site, &[0xb8])?;
    mem.write(site + 1, &nr.to_le_bytes())?;
    mem.write(site + 6, &[0x05])?;
    mem.write(site + 5, &[0x0f])?;
    sync_cores();
    Ok(())
}

/// Rewrite the 7-byte site at `site` into `jmp *slot`, in the safe order.
pub fn patch_site(mem: &Mem, site: u64, slot: u64) -> Result<(), i64> {
    let j = jump_bytes(slot);
    sync_cores();
    mem.write(site + 5, &[j[5]])?;
    mem.write(site + 1, &[j[1], j[2], j[3], j[4], j[5], j[6]])?;
    mem.write(site, &[j[0]])?;
    sync_cores();
    Ok(())
}

/// Rewrite Form R's range at `start` (original bytes `orig`, instruction
/// offsets `offs`) into `fin` (forms.rs has why every step is safe):
///   1. 0x06 on the first byte of every instruction;
///   2. bytes 1.. := their final values (every boundary stays invalid);
///   3. byte 0 := 0xff;
///
/// Each step is followed by a core-serialising barrier.
pub fn patch_range(mem: &Mem, start: u64, orig: &[u8], offs: &[u8], fin: &[u8]) -> Result<(), i64> {
    let len = orig.len().min(fin.len());
    let mut marked = [0u8; crate::patch::forms::MAX_RANGE];
    let marked = marked.get_mut(..len).ok_or(raw::EFAULT)?;
    marked.copy_from_slice(orig.get(..len).ok_or(raw::EFAULT)?);
    for &o in offs {
        if let Some(b) = marked.get_mut(o as usize) {
            *b = 0x06;
        }
    }
    sync_cores();
    mem.write(start, marked)?;
    sync_cores();
    mem.write(start + 1, fin.get(1..len).ok_or(raw::EFAULT)?)?;
    sync_cores();
    mem.write(start, fin.get(..1).ok_or(raw::EFAULT)?)?;
    sync_cores();
    Ok(())
}

/// Byte copies and compares for what the fast path may reach (forgetting
/// sites when munmap/mprotect run there): one byte at a time through
/// `black_box`, so that the compiler neither calls memcpy/bcmp nor uses
/// vector registers (tests/patching.rs disassembles it).
fn copy_bytes(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src.iter()) {
        *d = core::hint::black_box(*s);
    }
}

fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    for (x, y) in a.iter().zip(b.iter()) {
        if core::hint::black_box(*x) != *y {
            return false;
        }
    }
    true
}

/// Give Form R's range back its original bytes if it still holds `fin`:
/// the same steps backwards (byte 0 := 0x06; the rest := original with
/// 0x06 at every boundary; then every instruction's first byte).
/// Integer-only: reachable from the fast path.
pub fn unpatch_range(mem: &Mem, start: u64, orig: &[u8], offs: &[u8], fin: &[u8]) -> Result<(), i64> {
    let len = orig.len().min(fin.len()).min(crate::patch::forms::MAX_RANGE);
    let mut now = [0u8; crate::patch::forms::MAX_RANGE];
    let now = now.get_mut(..len).ok_or(raw::EFAULT)?;
    raw::copy_from_user(now, start)?;
    if !same_bytes(now, fin.get(..len).ok_or(raw::EFAULT)?) {
        return Ok(());
    }
    let mut marked = [0u8; crate::patch::forms::MAX_RANGE];
    let marked = marked.get_mut(..len).ok_or(raw::EFAULT)?;
    copy_bytes(marked, orig);
    for &o in offs {
        if let Some(b) = marked.get_mut(o as usize) {
            *b = 0x06;
        }
    }
    sync_cores();
    mem.write(start, &[0x06])?;
    sync_cores();
    mem.write(start + 1, marked.get(1..).ok_or(raw::EFAULT)?)?;
    sync_cores();
    mem.write(start, orig.get(..len).ok_or(raw::EFAULT)?)?;
    sync_cores();
    Ok(())
}

/// Form P: the pad first (dead code: no thread is there), then the
/// `syscall` at `sys`: 0f 05 -> 06 05 -> 06 dd -> eb dd.
pub fn patch_pad(mem: &Mem, sys: u64, branch: [u8; 2], pad: u64, pad_bytes: &[u8]) -> Result<(), i64> {
    mem.write(pad, pad_bytes)?;
    sync_cores();
    mem.write(sys, &[0x06])?;
    sync_cores();
    mem.write(sys + 1, &branch[1..])?;
    sync_cores();
    mem.write(sys, &branch[..1])?;
    sync_cores();
    Ok(())
}

/// Undo [`patch_pad`] if the `syscall` still holds `branch`: eb dd ->
/// 06 dd -> 06 05 -> 0f 05. The pad keeps its jump: a thread that took
/// the branch just before may not have run the pad's jump yet (preempted
/// there), and it must still reach the trampoline, which stays.
pub fn unpatch_pad(mem: &Mem, sys: u64, branch: [u8; 2]) -> Result<(), i64> {
    if raw::read_user::<[u8; 2]>(sys)? != branch {
        return Ok(());
    }
    sync_cores();
    mem.write(sys, &[0x06])?;
    sync_cores();
    mem.write(sys + 1, &[0x05])?;
    sync_cores();
    mem.write(sys, &[0x0f])?;
    sync_cores();
    Ok(())
}

/// Give any recorded site back its original bytes (if they are still ours).
/// The span is noted first (registry::retire) so that a thread that
/// faulted on an invalid byte just before it was restored runs the
/// original instruction again instead of getting the SIGILL.
pub fn unpatch(mem: &Mem, site: &crate::patch::registry::Site) -> Result<(), i64> {
    use crate::patch::registry::{ext_of, retire, FORM_PAD, FORM_RANGE};
    retire(site);
    match ext_of(site) {
        None => unpatch_site(mem, site.key - 5, site.slot as u64, site.nr),
        Some(x) if x.form == FORM_RANGE => {
            let len = x.len as usize;
            let n = x.n as usize;
            unpatch_range(
                mem,
                x.start,
                x.orig.get(..len).unwrap_or(&[]),
                x.offs.get(..n).unwrap_or(&[]),
                x.written.get(..len).unwrap_or(&[]),
            )
        }
        Some(x) if x.form == FORM_PAD => {
            let branch = [x.written[0], x.written[1]];
            unpatch_pad(mem, x.start, branch)
        }
        Some(_) => Ok(()),
    }
}
