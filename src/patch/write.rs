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
//! with a core-serialising barrier for every thread (membarrier SYNC_CORE)
//! before the first write and after the last.

use crate::sigsafe::raw;

const MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE: u64 = 32;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE: u64 = 64;

/// Start-up: register for SYNC_CORE barriers. Err(errno) if unavailable.
pub fn register_membarrier() -> Result<(), i64> {
    let r = raw::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0, 0);
    if r < 0 {
        Err(-r)
    } else {
        Ok(())
    }
}

/// Every thread of the process executes a serialising instruction before it
/// returns to user space again.
pub fn sync_cores() {
    raw::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0, 0);
}

/// /proc/self/mem, open for one patch.
pub struct Mem {
    fd: i32,
}

impl Mem {
    pub fn open() -> Result<Mem, i64> {
        let path = b"/proc/self/mem\0";
        let r = raw::syscall(libc::SYS_openat, libc::AT_FDCWD as u64, path.as_ptr() as u64, (libc::O_RDWR | libc::O_CLOEXEC) as u64, 0);
        if r < 0 {
            Err(-r)
        } else {
            Ok(Mem { fd: r as i32 })
        }
    }

    /// Write `bytes` at `addr` in our own address space.
    pub fn write(&self, addr: u64, bytes: &[u8]) -> Result<(), i64> {
        let r = raw::syscall(libc::SYS_pwrite64, self.fd as u64, bytes.as_ptr() as u64, bytes.len() as u64, addr);
        if r == bytes.len() as i64 {
            Ok(())
        } else if r < 0 {
            Err(-r)
        } else {
            Err(raw::EFAULT)
        }
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        raw::syscall(libc::SYS_close, self.fd as u64, 0, 0, 0);
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

/// Put back `mov $nr,%eax; syscall` at `site` if it still holds our jump
/// through `slot`. Only for a process with one thread (nothing runs the site
/// meanwhile): see process::stop_intercepting.
pub fn unpatch_site(mem: &Mem, site: u64, slot: u64, nr: u32) -> Result<(), i64> {
    let mut now = [0u8; 7];
    raw::copy_from_user(now.as_mut_ptr(), site as *const u8, now.len())?;
    if now != jump_bytes(slot) {
        return Ok(()); // unmapped or replaced since: not ours to touch
    }
    let n = nr.to_le_bytes();
    mem.write(site, &[0xb8, n[0], n[1], n[2], n[3], 0x0f, 0x05])?;
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
