//! What the function lookup needs from the system, and reading program
//! memory through it: [`RawOs`] (the gate and the fault-tolerant copy) in
//! the library, `StdOs` (std files and /proc/self/mem) in unit tests, where
//! the gate is not mapped.
//! Never: panic on a bad address (a read gives None or false).

use crate::rt::raw;

/// What the lookup needs from the system; lets tests run without the gate.
pub trait Os {
    /// Fill `buf` from process memory at `addr`; false if any byte is unreadable.
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool;
    /// Open /proc/self/maps for [`Os::maps_read`]; false on failure.
    fn maps_open(&mut self) -> bool;
    /// Next bytes of /proc/self/maps: count, 0 at the end, negative on error.
    fn maps_read(&mut self, buf: &mut [u8]) -> isize;
    /// Close what [`Os::maps_open`] opened.
    fn maps_close(&mut self);
    /// Whether objects found before may be reused while the mappings stay
    /// as they were (the library's cache, in maps.rs); false: read
    /// /proc/self/maps each time (tests, whose maps are made up).
    fn caches_objects(&self) -> bool {
        false
    }
}

/// The library's [`Os`]: syscalls through the gate, memory through the
/// fault-tolerant copy (a bad address gives false, not a crash).
pub struct RawOs {
    pub(super) fd: i64,
}

impl RawOs {
    pub const fn new() -> RawOs {
        RawOs { fd: -1 }
    }
}

pub(super) const EINTR: i64 = libc::EINTR as i64;

impl Os for RawOs {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        raw::copy_from_user(buf, addr).is_ok()
    }

    fn maps_open(&mut self) -> bool {
        match raw::openat(libc::AT_FDCWD, c"/proc/self/maps", libc::O_RDONLY | libc::O_CLOEXEC, 0) {
            Ok(fd) => {
                self.fd = fd.into();
                true
            }
            Err(_) => false,
        }
    }

    fn maps_read(&mut self, buf: &mut [u8]) -> isize {
        if self.fd < 0 {
            return -1;
        }
        loop {
            match raw::read(self.fd as i32, buf) {
                Ok(n) => return n as isize,
                Err(EINTR) => {}
                Err(e) => return -(e as isize),
            }
        }
    }

    fn maps_close(&mut self) {
        if self.fd >= 0 {
            let _ = raw::close(self.fd as i32);
            self.fd = -1;
        }
    }

    fn caches_objects(&self) -> bool {
        true
    }
}

// ---------------------------------------------------------------------------
// Reading program memory

pub(super) fn read_array<O: Os, const N: usize>(os: &mut O, addr: u64) -> Option<[u8; N]> {
    let mut b = [0u8; N];
    if os.read(addr, &mut b) {
        Some(b)
    } else {
        None
    }
}

pub(super) fn read_u8<O: Os>(os: &mut O, addr: u64) -> Option<u8> {
    read_array::<O, 1>(os, addr).map(|b| b[0])
}

pub(super) fn read_u16<O: Os>(os: &mut O, addr: u64) -> Option<u16> {
    read_array(os, addr).map(u16::from_le_bytes)
}

pub(super) fn read_u32<O: Os>(os: &mut O, addr: u64) -> Option<u32> {
    read_array(os, addr).map(u32::from_le_bytes)
}

pub(super) fn read_u64<O: Os>(os: &mut O, addr: u64) -> Option<u64> {
    read_array(os, addr).map(u64::from_le_bytes)
}

// ---------------------------------------------------------------------------
// Tests: std stands in for the gate.

/// [`Os`] over std: /proc/self/maps as a file, memory through /proc/self/mem
/// (an unmapped address gives an error, not a crash).
#[cfg(test)]
pub struct StdOs {
    mem: std::fs::File,
    maps: Option<std::fs::File>,
}

#[cfg(test)]
impl StdOs {
    pub fn new() -> StdOs {
        StdOs { mem: std::fs::File::open("/proc/self/mem").expect("open /proc/self/mem"), maps: None }
    }
}

#[cfg(test)]
impl Os for StdOs {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        use std::os::unix::fs::FileExt;
        self.mem.read_exact_at(buf, addr).is_ok()
    }

    fn maps_open(&mut self) -> bool {
        self.maps = std::fs::File::open("/proc/self/maps").ok();
        self.maps.is_some()
    }

    fn maps_read(&mut self, buf: &mut [u8]) -> isize {
        use std::io::Read;
        match self.maps.as_mut().map(|f| f.read(buf)) {
            Some(Ok(n)) => n as isize,
            _ => -1,
        }
    }

    fn maps_close(&mut self) {
        self.maps = None;
    }
}

/// For unit tests: memory as a byte vector from address 0, with no maps.
#[cfg(test)]
pub struct Bytes(pub Vec<u8>);

#[cfg(test)]
impl Os for Bytes {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        match self.0.get(addr as usize..addr as usize + buf.len()) {
            Some(s) => {
                buf.copy_from_slice(s);
                true
            }
            None => false,
        }
    }
    fn maps_open(&mut self) -> bool {
        false
    }
    fn maps_read(&mut self, _: &mut [u8]) -> isize {
        -1
    }
    fn maps_close(&mut self) {}
}
