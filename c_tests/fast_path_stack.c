/*
 * How deep below the program's stack pointer a patched syscall writes.
 *
 * Why it matters: natively a `syscall` instruction uses no user stack at
 * all, and some programs count on it. Go does: its syscall wrappers
 * (syscall.Syscall6, internal/runtime/syscall.Syscall6) are NOSPLIT
 * assembly reached from Go functions whose stack check guarantees only a
 * few hundred bytes below the stack pointer (tests/patching.rs,
 * fast_path_stack_depth_is_within_budget, has the figures). The fast path
 * (trampoline -> ut_fast_entry -> ut_fast_dispatch) runs on the program's
 * stack, below its red zone; anything it writes past the end of a goroutine
 * stack lands in a neighbouring goroutine's.
 *
 * How: fsp_probe (assembly, so that no compiler-made frame sits in the
 * measured area) fills FILL bytes below its own stack pointer with a
 * pattern, calls a site (the call pushes only its return address), and
 * scans for the lowest byte that changed. The depth printed is measured
 * from the stack pointer the `syscall` instruction ran with: 0 natively.
 *
 * The sites, each called once first so that its trap patches it:
 *   seed     `mov $110,%eax; syscall` (the seed form: jump to a trampoline);
 *   range    `mov %rdi,%rax; mov %rsi,%rdi; syscall`: Form R, the number
 *            taken from a register, like glibc's syscall(3);
 *   glibc    glibc's syscall(3) itself.
 * Each is probed with no hook, then with a do-nothing `before` hook when
 * the library's usertrap_set_hooks is there (hooks save the XSAVE state on
 * the stack).
 *
 * Output: by default only whether each call returned the parent's pid, the
 * same natively and under the library (tests/c_programs.rs compares them).
 * With the argument `--depths`, one line per site and hook setting:
 *   depth SITE HOOK BYTES
 * which tests/patching.rs reads under the library and checks against the
 * fast path's stack budget.
 */
#include "common.h"

#include <dlfcn.h>

/* Bytes filled and scanned below the probe's stack pointer. */
#define FILL 16384

long fsp_probe(long (*site)(long, long), long a1, long a2, long *depth, long skew);
long fsp_seed_getppid(long a1, long a2);
long fsp_range_syscall(long nr, long a1);

__asm__(".text\n"
        /* long fsp_probe(site, a1, a2, depth *, skew): calls site(a1, a2)
         * with FILL bytes of pattern below it, its stack pointer lowered by
         * skew (0 or 8: both alignments of the site's stack pointer);
         * *depth = bytes written below the stack pointer the site's
         * `syscall` ran with (ours - 8: the call pushes the return address
         * and the sites push nothing). */
        ".p2align 4\n"
        ".globl fsp_probe\n"
        ".type fsp_probe,@function\n"
        "fsp_probe:\n"
        ".cfi_startproc\n"
        "    push %rbx\n"
        ".cfi_adjust_cfa_offset 8\n"
        "    push %r12\n"
        ".cfi_adjust_cfa_offset 8\n"
        "    push %r13\n"
        ".cfi_adjust_cfa_offset 8\n"
        "    push %r14\n"
        ".cfi_adjust_cfa_offset 8\n"
        "    push %r15\n"
        ".cfi_adjust_cfa_offset 8\n"
        "    mov %rdi, %rbx\n" /* the site */
        "    mov %rsi, %r12\n" /* its arguments */
        "    mov %rdx, %r14\n"
        "    mov %rcx, %r13\n" /* where the depth goes */
        "    mov %r8, %r15\n" /* the skew */
        "    sub %r15, %rsp\n"
        "    lea -16384(%rsp), %rdi\n" /* fill [rsp - FILL, rsp) with 0xa5 */
        "    mov $16384, %ecx\n"
        "    mov $0xa5, %eax\n"
        "    rep stosb\n"
        "    mov %r12, %rdi\n"
        "    mov %r14, %rsi\n"
        "    call *%rbx\n" /* the site's syscall runs with rsp = ours - 8 */
        "    mov %rax, %r12\n" /* its result */
        "    lea -16384(%rsp), %rdi\n" /* the lowest changed byte below rsp - 8 */
        "    mov $16376, %ecx\n"
        "    mov $0xa5, %eax\n"
        "    repe scasb\n"
        "    je 1f\n" /* nothing changed: depth 0 */
        "    lea -7(%rsp), %rax\n" /* (rsp - 8) - (rdi - 1): rdi is one past it */
        "    sub %rdi, %rax\n"
        "    jmp 2f\n"
        "1:  xor %eax, %eax\n"
        "2:  mov %rax, (%r13)\n"
        "    add %r15, %rsp\n"
        "    mov %r12, %rax\n"
        "    pop %r15\n"
        ".cfi_adjust_cfa_offset -8\n"
        "    pop %r14\n"
        ".cfi_adjust_cfa_offset -8\n"
        "    pop %r13\n"
        ".cfi_adjust_cfa_offset -8\n"
        "    pop %r12\n"
        ".cfi_adjust_cfa_offset -8\n"
        "    pop %rbx\n"
        ".cfi_adjust_cfa_offset -8\n"
        "    ret\n"
        ".cfi_endproc\n"
        ".size fsp_probe, .-fsp_probe\n"
        /* The seed form: getppid. */
        ".p2align 4\n"
        ".globl fsp_seed_getppid\n"
        ".type fsp_seed_getppid,@function\n"
        "fsp_seed_getppid:\n"
        ".cfi_startproc\n"
        "    mov $110, %eax\n"
        "    syscall\n"
        "    ret\n"
        ".cfi_endproc\n"
        ".size fsp_seed_getppid, .-fsp_seed_getppid\n"
        /* Form R: the number from a register, like glibc's syscall(3). */
        ".p2align 4\n"
        ".globl fsp_range_syscall\n"
        ".type fsp_range_syscall,@function\n"
        "fsp_range_syscall:\n"
        ".cfi_startproc\n"
        "    mov %rdi, %rax\n"
        "    mov %rsi, %rdi\n"
        "    syscall\n"
        "    ret\n"
        ".cfi_endproc\n"
        ".size fsp_range_syscall, .-fsp_range_syscall\n");

struct site {
    const char *name;
    long (*fn)(long, long);
    long a1;
};

struct usertrap_call;
typedef int (*before_fn)(struct usertrap_call *, void *);
typedef void (*after_fn)(struct usertrap_call *, void *);
typedef int (*set_hooks_fn)(before_fn, after_fn, void *);

static int do_nothing_before(struct usertrap_call *call, void *user)
{
    (void)call;
    (void)user;
    return 0;
}

/* Makes sure the pages FILL bytes below are there before the probe writes
 * them (the main thread's stack grows on demand). */
static __attribute__((noinline)) void touch_stack(void)
{
    volatile char pad[FILL + 8192];
    for (size_t i = 0; i < sizeof pad; i += 1024)
        pad[i] = 0;
}

static void probe_all(const struct site *sites, int n, const char *hook, int print, long ppid)
{
    for (int i = 0; i < n; i++) {
        long deepest = 0;
        for (long skew = 0; skew <= 8; skew += 8) {
            long depth = -1;
            long r = fsp_probe(sites[i].fn, sites[i].a1, 0, &depth, skew);
            EXPECT_EQ(sites[i].name, r, ppid);
            if (depth > deepest)
                deepest = depth;
        }
        if (print)
            say("depth %s %s %ld\n", sites[i].name, hook, deepest);
    }
}

int main(int argc, char **argv)
{
    int print = argc > 1 && strcmp(argv[1], "--depths") == 0;
    long ppid = getppid();
    const struct site sites[] = {
        { "seed", fsp_seed_getppid, 0 },
        { "range", (long (*)(long, long))fsp_range_syscall, SYS_getppid },
        /* glibc's syscall(3) through a plain pointer: it is assembly that
         * reads no va_list (so %al does not matter) and pushes nothing
         * before its `syscall`. */
        { "glibc", (long (*)(long, long))syscall, SYS_getppid },
    };
    const int n = (int)(sizeof sites / sizeof sites[0]);
    touch_stack();

    int s = section_begin();
    /* First calls: each traps once and gets patched. */
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < n; i++)
            EXPECT_EQ(sites[i].name, sites[i].fn(sites[i].a1, 0), ppid);
    probe_all(sites, n, "none", print, ppid);
    section_end(s, "getppid at three patched sites, 16 KiB below the stack pointer watched");

    /* With a hook (under the library only; natively there is none). */
    s = section_begin();
    set_hooks_fn set_hooks = (set_hooks_fn)dlsym(RTLD_DEFAULT, "usertrap_set_hooks");
    if (set_hooks) {
        set_hooks(do_nothing_before, NULL, NULL);
        probe_all(sites, n, "before", print, ppid);
        set_hooks(NULL, NULL, NULL);
    }
    section_end(s, "the same with a before hook installed when the library offers hooks");
    return finish();
}
