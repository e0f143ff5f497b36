//! Why a site stays on the slow path: one reason per check that can refuse
//! it, from the maps, ELF headers and unwind tables (maps.rs, elf.rs, unwind.rs) to the decoder (site.rs).
//! Printed in the list of unpatched sites.
//! Never: anything but the reasons and their texts.

/// Why a site is left on the slow path. The texts are printed in the list of
/// unpatched sites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// The instruction at the site is not `mov $imm32,%eax` (5 bytes, `b8`).
    NotMovEax,
    /// The `mov` is fine but the next instruction is not `syscall`.
    NotSyscall,
    /// Decoding forward from the function start steps over the site.
    NotBoundary,
    /// An undecodable byte sequence before the site (data in the code?).
    Undecodable,
    /// `mov $15,%eax; syscall` or glibc's `mov $15,%rax; syscall`: rt_sigreturn.
    SigreturnStub,
    /// More than `site::MAX_DECODE` bytes between the function start and the site.
    TooFar,
    /// The site (and the 7 bytes) are not inside the code handed to `site::verify`.
    OutsideCode,
    /// The object has unwind tables but no entry at or below the site.
    NoFunctionStart,
    /// The nearest unwind entry below the site ends at or before the site.
    PastFunctionEnd,
    /// The `mov` is inside the function's unwind range but the `syscall` is
    /// not: glibc's clone/clone3 end their unwind info right before the
    /// syscall on purpose (the child must not unwind past it).
    SyscallOutsideFunction,
    /// The object has no `PT_GNU_EH_FRAME` (no `.eh_frame_hdr`).
    NoEhFrameHdr,
    /// `.eh_frame_hdr` or `.eh_frame` use an encoding this parser does not know.
    UnsupportedUnwind,
    /// `.eh_frame_hdr` or `.eh_frame` unreadable or malformed.
    BadUnwind,
    /// ELF headers unreadable, or they do not describe the mapping of the site.
    BadElf,
    /// The site is in the vDSO.
    InVdso,
    /// The site is in the legacy vsyscall page.
    InVsyscall,
    /// Anonymous memory (JIT code), a special mapping, or a file that is not ELF.
    NotElfObject,
    /// The mapping of the site is not readable and executable.
    NotExecutable,
    /// No mapping contains the site.
    NotMapped,
    /// /proc/self/maps could not be opened or read.
    MapsUnreadable,
    /// The function does not lie in one run of executable mappings of its file.
    StraddlesMapping,
    /// A direct branch of the function targets a rewritten byte but the first.
    BranchIntoRange,
    /// The function has an indirect `jmp` (a jump table may target any byte).
    IndirectJump,
    /// Fewer than 7 bytes of relocatable instructions end at the `syscall`.
    RangeTooShort,
    /// An instruction the range needs cannot be copied (rip-relative, control flow, ...).
    NotRelocatable,
    /// The first instruction of every candidate range is too short (a boundary at offset 1 or 2).
    FirstTooShort,
    /// The bytes overlap a site patched already.
    AlreadyPatched,
    /// The function holds more patched sites than a proof can put back
    /// (`forms::MAX_OVERLAYS`).
    TooManyPatched,
    /// No dead NOP/INT3 pad of 7 bytes within reach of a short jump.
    NoPad,
    /// No free trap-table slot whose address bytes fit the range.
    NoPunnedSlot,
    /// Go code (found through Go's function table) under `usertrap trace`:
    /// recording a call on the fast path takes more of the program's stack
    /// than a goroutine's leaves, so these sites stay on the slow path (our
    /// own signal stack).
    GoUnderTrace,
}

impl Reject {
    /// Short human reason, for the list of unpatched sites.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::NotMovEax => "not preceded by mov $imm32,%eax",
            Reject::NotSyscall => "mov $imm32,%eax not followed by syscall",
            Reject::NotBoundary => "no instruction boundary at the mov (decoded forward from function start)",
            Reject::Undecodable => "undecodable bytes between the function start and the site",
            Reject::SigreturnStub => "sigreturn stub",
            Reject::TooFar => "function too large (site more than 1 MiB past its start)",
            Reject::OutsideCode => "site outside the decoded code",
            Reject::NoFunctionStart => "no function start known (no unwind table entry)",
            Reject::PastFunctionEnd => "no function contains it (past the end of the nearest unwind entry)",
            Reject::SyscallOutsideFunction => "syscall outside its function's unwind range (clone-style stub)",
            Reject::NoEhFrameHdr => "no function start known (object has no .eh_frame_hdr)",
            Reject::UnsupportedUnwind => "unwind table uses an unsupported encoding",
            Reject::BadUnwind => "unwind table unreadable or malformed",
            Reject::BadElf => "ELF headers unreadable or not matching the mapping",
            Reject::InVdso => "in the vDSO",
            Reject::InVsyscall => "in the vsyscall page",
            Reject::NotElfObject => "not in a mapped ELF object",
            Reject::NotExecutable => "not in a readable executable mapping",
            Reject::NotMapped => "not mapped",
            Reject::MapsUnreadable => "cannot read /proc/self/maps",
            Reject::StraddlesMapping => "function not inside one executable mapping",
            Reject::BranchIntoRange => "a branch of the function targets the bytes to rewrite",
            Reject::IndirectJump => "function has an indirect jump (jump table)",
            Reject::RangeTooShort => "fewer than 7 bytes of relocatable instructions end at the syscall",
            Reject::NotRelocatable => "an instruction before the syscall cannot be relocated",
            Reject::FirstTooShort => "first instruction of the range too short for the jump",
            Reject::AlreadyPatched => "overlaps a patched site",
            Reject::TooManyPatched => "too many patched sites in the function",
            Reject::NoPad => "no dead pad within reach of a short jump",
            Reject::NoPunnedSlot => "no trap-table slot fits the range",
            Reject::GoUnderTrace => "Go code under usertrap trace (recording needs more stack than a goroutine has)",
        }
    }
}
