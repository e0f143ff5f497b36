//! The assembly (all of it is in `x86_64.s`) and the Rust view of it.
//!
//! Owns: the gate image that the constructor copies to [`GATE_ADDR`], the typed
//! entry into the gate, the clone child's first steps, sigreturn onto a chosen
//! frame, fault-tolerant copies and the GS base accessors.
//! Never: anything with policy in it. Callers decide; this only moves registers.

use core::arch::global_asm;

/// Where the gate lives in every process: the same address everywhere, so a
/// seccomp filter inherited across fork (and, later, exec) still exempts it.
/// 0x7e90_0000_0000 lies far below the mmap base (0x7fxx_xxxx_xxxx; at least
/// 0x7eff_xxxx_xxxx with the default 28 bits of randomisation) and far above
/// brk heaps of PIE programs (0x55xx-0x56xx_xxxx_xxxx), inside the range
/// ThreadSanitizer leaves to modules and stacks (0x7e80_0000_0000 and up in
/// gcc 12's runtime, 0x7a00_0000_0000 in LLVM's): its start-up protects
/// the unused ranges around it, and dies of any mapping it finds there
/// (the gate was at 0x7573_0000_0000, inside one of them: a program built
/// with -fsanitize=thread could not run under the library).
pub const GATE_ADDR: u64 = 0x7e90_0000_0000;
/// Length of the exempt range: one page holds the whole gate image.
pub const GATE_LEN: u64 = 4096;

/// Fixed offsets of the gate's entry points and data slots in the image
/// (pinned with `.org` in the assembly).
pub const GATE_OFF_SYSCALL: u64 = 0x00;
pub const GATE_OFF_RESTORER: u64 = 0x10;
pub const GATE_OFF_CLONE: u64 = 0x20;
pub const GATE_OFF_VFORK: u64 = 0x40;
pub const GATE_OFF_PROGRAM_SYSCALL: u64 = 0xb0;
pub const GATE_OFF_PROGRAM_SYSCALL_INSN: u64 = 0xc0;
pub const GATE_OFF_PROGRAM_SYSCALL_ABORT: u64 = 0xc8;
pub const GATE_OFF_INT80: u64 = 0xf0;
pub const GATE_OFF_SLOTS: u64 = 0x100;
/// The vfork stub's child part, after the data slots (no room before them).
pub const GATE_OFF_VFORK_CHILD: u64 = 0x140;
/// A jump to the gate owner's ut_fast_entry (the launcher's, then the
/// library's once its gate replaces the launcher's).
pub const GATE_OFF_FAST_ENTRY: u64 = 0x300;
/// The restorer's way on when rt_sigreturn is refused (the program's own
/// filter): the frame restored in user space (x86_64.s). From after the
/// `_SWITCH` instruction (rsp onto the block, below the target's red zone)
/// to `_LEA` the block is at rsp; after it rsp is the target's less 136,
/// where the target's rip is, up to the `ret $128` at `_RET`.
pub const GATE_OFF_USER_SIGRETURN: u64 = 0x340;
pub const GATE_OFF_USER_SIGRETURN_SWITCH: u64 = 0x400;
pub const GATE_OFF_USER_SIGRETURN_LEA: u64 = 0x480;
pub const GATE_OFF_USER_SIGRETURN_RET: u64 = 0x488;
/// The `_SWITCH` instruction's length (mov %r11, %rsp).
pub const USER_SIGRETURN_SWITCH_LEN: u64 = 3;
/// The block the user sigreturn copies below the target's red zone, in
/// bytes from its start: r8..rcx (15 words, the frame's order), the flags,
/// the mask, the alternate stack (a stack_t), and at BLK_RIP, 8 bytes below
/// the red zone (BLK_SIZE - 136), the target's rip.
pub const BLK_EFLAGS: usize = 120;
pub const BLK_MASK: usize = 128;
pub const BLK_STACK: usize = 136;
pub const BLK_RIP: usize = 168;
pub const BLK_SIZE: usize = 304;

/// Offsets in the thread area of what the gate's stubs read through %gs
/// (checked against the struct at compile time in rt/thread.rs, which
/// imports this file; written as numbers so that this file imports nothing
/// above it).
pub const AREA_VFORK_RETURN: usize = 8;
pub const AREA_POSTPONED_LEN: usize = 16;
/// Offsets the vfork stub's child part reads.
pub const AREA_PENDING_CHILD: usize = 136;
pub const AREA_ALTSTACK: usize = 64;
/// Offsets ut_fast_entry reads: the area's magic (and its value), the top
/// and size of the fast-path stack.
pub const AREA_FAST_TOP: usize = 24;
pub const AREA_FAST_SIZE: usize = 32;
pub const AREA_MAGIC: usize = 40;
pub const AREA_MAGIC_VALUE: u64 = 0x7061_7274_7265_7375;
/// Bytes the parent reserves between a clone child's frame and its Rust stack.
pub const CHILD_HEADER: usize = 64;
/// Offsets in the kernel's `struct ucontext` the gate's user sigreturn
/// reads (checked against rt::frame::Ucontext at compile time there): the
/// mask, the alternate stack, the FPU state pointer, rsp, rip, eflags, and r8 (the first of the
/// general registers, in the order r8..r15, rdi, rsi, rbp, rbx, rdx, rax, rcx).
pub const UC_SIGMASK: usize = 296;
pub const UC_STACK: usize = 16;
pub const UC_FPSTATE: usize = 224;
pub const UC_R8: usize = 40;
pub const UC_RSP: usize = 160;
pub const UC_RIP: usize = 168;
pub const UC_EFLAGS: usize = 176;
/// `fx_sw_bytes.magic1` in the fxsave area (offset 464), and its value when
/// the kernel saved the xsave layout (FP_XSTATE_MAGIC1).
pub const FX_SW_MAGIC1: usize = 464;
pub const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;

extern "C" {
    /// Addresses of the gate image's symbols (see GSYM_*).
    static ut_gate_symbols: [u64; GSYM_COUNT];
    static ut_safe_copy_insn: u8;
    static ut_safe_copy_fault: u8;
    static ut_safe_strnlen_insn: u8;
    static ut_safe_strnlen_fault: u8;
    fn ut_clone_child_entry();
    fn ut_fast_entry();
    static ut_tramp_template: u8;
    static ut_tramp_template_end: u8;

    pub fn ut_syscall6(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, a6: u64) -> i64;
    pub fn ut_program_syscall6(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, a6: u64) -> i64;
    /// Read by ut_fast_entry: whether hooks run (then it saves the extended
    /// state), and how much room XSAVE needs.
    pub static ut_hooks_active: core::sync::atomic::AtomicU8;
    pub static ut_xsave_size: core::sync::atomic::AtomicU64;
    pub static ut_have_fsgsbase: core::sync::atomic::AtomicU8;
    /// Read by ut_fast_entry: 1 for the syscall numbers the fast path may
    /// run (trap::syscalls::patchable); any other goes to the slow path.
    pub static ut_fast_ok: [core::sync::atomic::AtomicU8; FAST_OK_LEN];
    pub fn ut_int80(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, a6: u64) -> i64;
    pub fn ut_bootstrap_syscall6(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, a6: u64) -> i64;
    /// valgrind's RUNNING_ON_VALGRIND: 0 on a real CPU.
    #[cfg_attr(not(feature = "preload"), allow(dead_code))] // the constructor's
    pub fn ut_running_on_valgrind() -> u64;
    pub fn ut_clone_with_frame(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, frame: u64) -> i64;
    pub fn ut_sigreturn_at(uc: u64, restorer: u64) -> !;
    pub fn ut_safe_copy(dst: *mut u8, src: *const u8, len: usize) -> i64;
    pub fn ut_safe_strnlen(s: *const u8, max: usize) -> i64;
    pub fn ut_rdgsbase() -> u64;
    pub fn ut_wrgsbase(base: u64);
}

/// Indexes into `ut_gate_symbols` (the order of its .quad lines).
const GSYM_IMAGE: usize = 0;
const GSYM_IMAGE_END: usize = 1;
const GSYM_SYSCALL: usize = 2;
const GSYM_RESTORER: usize = 3;
const GSYM_CLONE: usize = 4;
const GSYM_VFORK: usize = 5;
const GSYM_PROGRAM_SYSCALL: usize = 6;
const GSYM_INT80: usize = 7;
const GSYM_SLOT_CHILD_ENTRY: usize = 8;
const GSYM_SLOT_GATE_BASE: usize = 9;
const GSYM_SLOT_GATE_LEN: usize = 10;
const GSYM_SLOT_SELECTOR: usize = 11;
const GSYM_SLOT_SUD: usize = 12;
const GSYM_VFORK_CHILD: usize = 13;
const GSYM_FAST_ENTRY: usize = 14;
const GSYM_SLOT_FAST_ENTRY: usize = 15;
const GSYM_COUNT: usize = 16;

fn gate_symbol(i: usize) -> u64 {
    // SAFETY: a read-only table of addresses, filled by the linker/loader.
    unsafe { ut_gate_symbols.get(i).copied().unwrap_or(0) }
}

/// Offset of a symbol of the gate image from the image's start.
fn image_offset(i: usize) -> u64 {
    gate_symbol(i).wrapping_sub(gate_symbol(GSYM_IMAGE))
}

/// Where the gate's entry points are once the image is copied to GATE_ADDR.
pub const GATE_RESTORER: u64 = GATE_ADDR + GATE_OFF_RESTORER;
/// The gate's sigreturn without the kernel (see GATE_OFF_USER_SIGRETURN).
pub const GATE_USER_SIGRETURN: u64 = GATE_ADDR + GATE_OFF_USER_SIGRETURN;
pub const GATE_VFORK: u64 = GATE_ADDR + GATE_OFF_VFORK;
/// Right after the gate's plain `syscall` (ut_gate_syscall, a 2-byte
/// instruction): where a signal that interrupted a call of raw::syscall6
/// finds the thread.
pub const GATE_SYSCALL_RETURN: u64 = GATE_ADDR + GATE_OFF_SYSCALL + 2;
/// Where the launcher's trampolines jump (see GATE_OFF_FAST_ENTRY).
pub const GATE_FAST_ENTRY: u64 = GATE_ADDR + GATE_OFF_FAST_ENTRY;
/// The program-syscall entry: from its first byte through its `syscall` a
/// postponed signal sends it to the abort exit instead (delivery::postpone).
pub const GATE_PROGRAM_SYSCALL: u64 = GATE_ADDR + GATE_OFF_PROGRAM_SYSCALL;
pub const GATE_PROGRAM_SYSCALL_INSN: u64 = GATE_ADDR + GATE_OFF_PROGRAM_SYSCALL_INSN;
pub const GATE_PROGRAM_SYSCALL_ABORT: u64 = GATE_ADDR + GATE_OFF_PROGRAM_SYSCALL_ABORT;

/// True when the assembler put every entry point where Rust expects it.
pub fn gate_layout_ok() -> bool {
    image_offset(GSYM_SYSCALL) == GATE_OFF_SYSCALL
        && image_offset(GSYM_RESTORER) == GATE_OFF_RESTORER
        && image_offset(GSYM_CLONE) == GATE_OFF_CLONE
        && image_offset(GSYM_VFORK) == GATE_OFF_VFORK
        && image_offset(GSYM_PROGRAM_SYSCALL) == GATE_OFF_PROGRAM_SYSCALL
        && image_offset(GSYM_INT80) == GATE_OFF_INT80
        && image_offset(GSYM_SLOT_CHILD_ENTRY) == GATE_OFF_SLOTS
        && image_offset(GSYM_VFORK_CHILD) == GATE_OFF_VFORK_CHILD
        && image_offset(GSYM_FAST_ENTRY) == GATE_OFF_FAST_ENTRY
        && gate_image().len() as u64 == GATE_LEN
}

/// The gate image's bytes, as linked into the library.
pub fn gate_image() -> &'static [u8] {
    // SAFETY: the two symbols bracket one section of the library's text, which
    // is mapped and read-only for the life of the process.
    unsafe {
        let start = gate_symbol(GSYM_IMAGE) as *const u8;
        let len = (gate_symbol(GSYM_IMAGE_END) - gate_symbol(GSYM_IMAGE)) as usize;
        core::slice::from_raw_parts(start, len)
    }
}

/// The values the gate's data slots must hold, as (offset in image, value) pairs.
pub fn gate_slots(selector: u64, sud: bool) -> [(u64, u64, usize); 6] {
    [
        (image_offset(GSYM_SLOT_FAST_ENTRY), fast_entry(), 8),
        (image_offset(GSYM_SLOT_CHILD_ENTRY), ut_clone_child_entry as *const () as u64, 8),
        (image_offset(GSYM_SLOT_GATE_BASE), GATE_ADDR, 8),
        (image_offset(GSYM_SLOT_GATE_LEN), GATE_LEN, 8),
        (image_offset(GSYM_SLOT_SELECTOR), selector, 8),
        (image_offset(GSYM_SLOT_SUD), sud as u64, 1),
    ]
}

/// Entries of ut_fast_ok (x86_64.s): numbers at or above go to the slow path.
pub const FAST_OK_LEN: usize = 512;

/// Where every trampoline jumps.
pub fn fast_entry() -> u64 {
    ut_fast_entry as *const () as u64
}

/// Say which syscall numbers the fast path may run (before the first patch).
pub fn set_fast_ok(ok: impl Fn(u64) -> bool) {
    // SAFETY: a static of the library's .data, atomics.
    let table = unsafe { &ut_fast_ok };
    for (nr, e) in table.iter().enumerate() {
        e.store(ok(nr as u64) as u8, core::sync::atomic::Ordering::Relaxed);
    }
}

/// Send syscall `nr` back to the slow path from now on (its fast version
/// cannot run any more).
pub fn clear_fast_ok(nr: u64) {
    // SAFETY: as in set_fast_ok.
    let table = unsafe { &ut_fast_ok };
    if let Some(e) = table.get(nr as usize) {
        e.store(0, core::sync::atomic::Ordering::Relaxed);
    }
}

/// The program's stack pointer at its `syscall`, from the `saved` pointer
/// ut_fast_entry passes to ut_fast_dispatch: it stepped 128 bytes over the
/// red zone, then pushed the return address, the flags and the six argument
/// registers (8 words; `saved` points at the last pushed, r9).
pub const FAST_SAVED_TO_PROGRAM_SP: u64 = 8 * 8 + 128;
/// The same from the link ut_fast_entry keeps at the top of the fast-path
/// stack: it points at the six callee-saved registers pushed after r9.
pub const FAST_LINK_TO_PROGRAM_SP: u64 = 6 * 8 + FAST_SAVED_TO_PROGRAM_SP;

/// Offsets of the immediates in the trampoline template (see x86_64.s).
const TRAMP_NR: usize = 1;
const TRAMP_RET: usize = 7;
const TRAMP_ENTRY: usize = 17;
pub const TRAMP_LEN: usize = 27;

fn tramp_template() -> &'static [u8] {
    // SAFETY: the two symbols bracket the template in the library's text.
    unsafe {
        let start = &raw const ut_tramp_template;
        let len = (&raw const ut_tramp_template_end) as usize - start as usize;
        core::slice::from_raw_parts(start, len)
    }
}

/// True when the template is encoded as the offsets above assume.
pub fn trampoline_layout_ok() -> bool {
    let t = tramp_template();
    t.len() == TRAMP_LEN
        && t.get(TRAMP_NR - 1) == Some(&0xb8)
        && t.get(TRAMP_RET - 2..TRAMP_RET) == Some(&[0x49, 0xbb])
        && t.get(TRAMP_ENTRY - 2..TRAMP_ENTRY) == Some(&[0x48, 0xb9])
        && t.get(TRAMP_LEN - 2..) == Some(&[0xff, 0xe1])
}

/// The trampoline of one patched site: load its syscall number and return
/// address, jump to ut_fast_entry.
pub fn trampoline(nr: u32, ret: u64) -> [u8; TRAMP_LEN] {
    trampoline_to(nr, ret, fast_entry())
}

/// A trampoline like [`trampoline`]'s that jumps to `entry` instead.
pub fn trampoline_to(nr: u32, ret: u64, entry: u64) -> [u8; TRAMP_LEN] {
    let mut code = [0u8; TRAMP_LEN];
    let t = tramp_template();
    if let Some(src) = t.get(..TRAMP_LEN) {
        code.copy_from_slice(src);
    }
    for (off, bytes) in [
        (TRAMP_NR, &nr.to_le_bytes()[..]),
        (TRAMP_RET, &ret.to_le_bytes()[..]),
        (TRAMP_ENTRY, &entry.to_le_bytes()[..]),
    ] {
        if let Some(dst) = code.get_mut(off..off + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }
    code
}

/// If `rip` is one of the fault-tolerant instructions, where to resume instead.
pub fn safe_copy_fixup(rip: u64) -> Option<u64> {
    // Addresses of extern statics only (`&raw const` reads nothing).
    if rip == (&raw const ut_safe_copy_insn) as u64 {
        Some((&raw const ut_safe_copy_fault) as u64)
    } else if rip == (&raw const ut_safe_strnlen_insn) as u64 {
        Some((&raw const ut_safe_strnlen_fault) as u64)
    } else {
        None
    }
}

global_asm!(
    include_str!("x86_64.s"),
    gate_syscall = const GATE_ADDR + GATE_OFF_SYSCALL,
    gate_clone = const GATE_ADDR + GATE_OFF_CLONE,
    off_restorer = const GATE_OFF_RESTORER,
    off_clone = const GATE_OFF_CLONE,
    off_vfork = const GATE_OFF_VFORK,
    off_slots = const GATE_OFF_SLOTS,
    off_vfork_child = const GATE_OFF_VFORK_CHILD,
    off_fast_entry = const GATE_OFF_FAST_ENTRY,
    area_pending_child = const AREA_PENDING_CHILD,
    area_altstack = const AREA_ALTSTACK,
    area_vfork_return = const AREA_VFORK_RETURN,
    area_postponed_len = const AREA_POSTPONED_LEN,
    area_fast_top = const AREA_FAST_TOP,
    area_fast_size = const AREA_FAST_SIZE,
    area_magic = const AREA_MAGIC,
    area_magic_value = const AREA_MAGIC_VALUE,
    off_program_syscall = const GATE_OFF_PROGRAM_SYSCALL,
    off_program_syscall_insn = const GATE_OFF_PROGRAM_SYSCALL_INSN,
    off_program_syscall_abort = const GATE_OFF_PROGRAM_SYSCALL_ABORT,
    gate_program_syscall = const GATE_ADDR + GATE_OFF_PROGRAM_SYSCALL,
    off_int80 = const GATE_OFF_INT80,
    gate_int80 = const GATE_ADDR + GATE_OFF_INT80,
    child_header = const CHILD_HEADER,
    off_user_sigreturn = const GATE_OFF_USER_SIGRETURN,
    off_user_sigreturn_switch = const GATE_OFF_USER_SIGRETURN_SWITCH,
    off_user_sigreturn_lea = const GATE_OFF_USER_SIGRETURN_LEA,
    off_user_sigreturn_ret = const GATE_OFF_USER_SIGRETURN_RET,
    blk_eflags = const BLK_EFLAGS,
    blk_mask = const BLK_MASK,
    blk_stack = const BLK_STACK,
    blk_rip = const BLK_RIP,
    blk_size = const BLK_SIZE,
    uc_stack = const UC_STACK,
    uc_sigmask = const UC_SIGMASK,
    uc_fpstate = const UC_FPSTATE,
    uc_rsp = const UC_RSP,
    uc_rip = const UC_RIP,
    uc_eflags = const UC_EFLAGS,
    uc_r8 = const UC_R8,
    fp_xstate_magic1 = const FP_XSTATE_MAGIC1,
    fx_sw_magic1 = const FX_SW_MAGIC1,
    options(att_syntax)
);

// The launcher's entry point, its jump into the loaded program and the
// memory functions a static executable without libc must bring.
#[cfg(feature = "launcher")]
global_asm!(include_str!("launcher_x86_64.s"), options(att_syntax));

#[cfg(feature = "launcher")]
extern "C" {
    pub fn ut_launcher_jump(block: *const u64, words: u64, entry: u64, top: u64) -> !;
    /// The lowest page of the launcher's own stack (see launcher_x86_64.s).
    pub static ut_launcher_stack: u8;
}
