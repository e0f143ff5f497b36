/*
 * Hard case: register preservation across system calls.
 *
 * Why it is hard for a syscall interposer: the kernel's syscall ABI
 * preserves every register except rax (result), rcx and r11, and all of the
 * x87/SSE/AVX/AVX-512 state, MXCSR, the x87 control word and the arithmetic
 * flags; code may keep live values anywhere, including the 128-byte red zone
 * below rsp (leaf functions).  An interposer runs its own code around the
 * syscall (a trampoline after patching, a SIGSYS handler before), possibly
 * compiled code that uses vector registers (memcpy) and the stack; anything
 * it fails to save and restore is silently corrupted.
 *
 * What it checks: hand-written asm loads pseudo-random values into rbx, rbp,
 * rdx, rsi, rdi, r8-r10, r12-r15, the arithmetic flags (CF PF AF ZF SF OF) and DF,
 * MXCSR (rounding, FTZ/DAZ, sticky flags), the x87 control word and two x87
 * stack values, xmm0-15 (plus ymm0-15 upper halves with AVX, zmm0-31 and
 * k0-7 with AVX-512F+BW, checked only when the CPU has them), fills the red
 * zone with a pattern, runs a `syscall`, then stores everything and
 * compares.  Three syscall sites: `mov $110,%eax; syscall` (getppid, the
 * patchable form), `mov $1,%eax; syscall` (write of 0 bytes) and a number
 * loaded from memory (never patchable).  Each runs 300 times (first hit and
 * later hits differ in a patching interposer), on the main thread, in two
 * concurrent threads, and inside a signal handler.  rcx/r11 are not checked
 * here (see registers_rcx_r11.c).
 */
#include "common.h"

#include <fcntl.h>
#include <pthread.h>

#define STR_(x) #x
#define STR(x) STR_(x)

/* struct regs layout, shared with the asm below */
#define G_NR 0
#define G_RBX 1
#define G_RCX 2
#define G_RDX 3
#define G_RSI 4
#define G_RDI 5
#define G_RBP 6
#define G_R8 8
#define G_R9 9
#define G_R10 10
#define G_R11 11
#define G_R12 12
#define G_R13 13
#define G_R14 14
#define G_R15 15
#define G_FLAGS 16
#define G_REDZONE 17
#define G_RSP_AFTER 18
#define G_LOADVEC 19
#define G_STOREVEC 20
#define G_RAX 21
#define G_SAVED_MXCSR 22
#define G_SAVED_FCW 23
#define G_RSP_BEFORE 24
#define OFF_MXCSR 256
#define OFF_FCW 260
#define OFF_X87 272 /* two 16-byte slots */
#define OFF_VEC 320 /* 32 x 64 bytes */
#define OFF_K 2368  /* 8 x 8 bytes */
#define REGS_SIZE 2432

struct regs {
    uint64_t g[32];
    uint32_t mxcsr;
    uint16_t fcw;
    uint16_t pad0;
    uint8_t pad1[8];
    uint8_t x87[2][16];
    uint8_t pad2[16];
    uint8_t vec[32][64];
    uint64_t k[8];
} __attribute__((aligned(64)));

_Static_assert(__builtin_offsetof(struct regs, mxcsr) == OFF_MXCSR, "mxcsr");
_Static_assert(__builtin_offsetof(struct regs, fcw) == OFF_FCW, "fcw");
_Static_assert(__builtin_offsetof(struct regs, x87) == OFF_X87, "x87");
_Static_assert(__builtin_offsetof(struct regs, vec) == OFF_VEC, "vec");
_Static_assert(__builtin_offsetof(struct regs, k) == OFF_K, "k");
_Static_assert(sizeof(struct regs) == REGS_SIZE, "size");

#define G(i) STR(8 * i)
#define RZ_PATTERN "0x5245445a4f4e4500" /* "REDZONE\0" */

/*
 * One test routine: void NAME(struct regs *in, struct regs *out).
 * SETNR is the code right before `syscall` (after rdi was loaded).
 */
#define REGTEST(NAME, PRE_RDI, SETNR)                                           \
    ".globl " NAME "\n"                                                        \
    ".type " NAME ",@function\n" NAME ":\n"                                    \
    "    .cfi_startproc\n" /* an unwind entry: usertrap patches only sites */ \
                         /* whose function start it can find */            \
    "    push %rbx\n"                                                          \
    "    push %rbp\n"                                                          \
    "    push %r12\n"                                                          \
    "    push %r13\n"                                                          \
    "    push %r14\n"                                                          \
    "    push %r15\n"                                                          \
    "    push %rsi\n" /* out at 8(orig) */                                     \
    "    push %rdi\n" /* in at 0(orig) */                                      \
    "    mov %rsp, " G(G_RSP_BEFORE) "(%rsi)\n"                                \
    "    stmxcsr " G(G_SAVED_MXCSR) "(%rsi)\n"                                 \
    "    fnstcw " G(G_SAVED_FCW) "(%rsi)\n"                                    \
    "    call *" G(G_LOADVEC) "(%rdi)\n"                                       \
    /* red zone: 16 quadwords below rsp */                                     \
    "    movabs $" RZ_PATTERN ", %rcx\n"                                       \
    "    mov $1, %edx\n"                                                       \
    "2:  mov %rdx, %r8\n"                                                      \
    "    shl $3, %r8\n"                                                        \
    "    neg %r8\n"                                                            \
    "    add %rsp, %r8\n"                                                      \
    "    mov %rcx, (%r8)\n"                                                    \
    "    inc %rcx\n"                                                           \
    "    inc %rdx\n"                                                           \
    "    cmp $16, %rdx\n"                                                      \
    "    jbe 2b\n"                                                             \
    "    fldcw " STR(OFF_FCW) "(%rdi)\n"                                       \
    "    ldmxcsr " STR(OFF_MXCSR) "(%rdi)\n"                                   \
    "    fldt " STR(OFF_X87) "+16(%rdi)\n"                                     \
    "    fldt " STR(OFF_X87) "(%rdi)\n"                                        \
    /* flags, set below the red zone */                                        \
    "    lea -512(%rsp), %rsp\n"                                               \
    "    pushfq\n"                                                             \
    "    pop %rax\n"                                                           \
    "    and $~0xcd5, %rax\n"                                                  \
    "    mov " G(G_FLAGS) "(%rdi), %rcx\n"                                     \
    "    and $0xcd5, %rcx\n"                                                   \
    "    or %rcx, %rax\n"                                                      \
    "    push %rax\n"                                                          \
    "    popfq\n"                                                              \
    "    lea 512(%rsp), %rsp\n"                                                \
    "    mov " G(G_RBX) "(%rdi), %rbx\n"                                       \
    "    mov " G(G_RBP) "(%rdi), %rbp\n"                                       \
    "    mov " G(G_RSI) "(%rdi), %rsi\n"                                       \
    "    mov " G(G_RDX) "(%rdi), %rdx\n"                                       \
    "    mov " G(G_RCX) "(%rdi), %rcx\n"                                       \
    "    mov " G(G_R8) "(%rdi), %r8\n"                                         \
    "    mov " G(G_R9) "(%rdi), %r9\n"                                         \
    "    mov " G(G_R10) "(%rdi), %r10\n"                                       \
    "    mov " G(G_R11) "(%rdi), %r11\n"                                       \
    "    mov " G(G_R12) "(%rdi), %r12\n"                                       \
    "    mov " G(G_R13) "(%rdi), %r13\n"                                       \
    "    mov " G(G_R14) "(%rdi), %r14\n"                                       \
    "    mov " G(G_R15) "(%rdi), %r15\n"                                       \
    PRE_RDI                                                                    \
    "    mov " G(G_RDI) "(%rdi), %rdi\n"                                       \
    SETNR                                                                      \
    "    syscall\n"                                                            \
    "    lea -512(%rsp), %rsp\n"                                               \
    "    pushfq\n"                                                             \
    "    cld\n" /* flags saved; what follows wants DF clear */                 \
    "    push %rdi\n"                                                          \
    "    mov 536(%rsp), %rdi\n" /* out */                                      \
    "    mov %rax, " G(G_RAX) "(%rdi)\n"                                       \
    "    mov %rbx, " G(G_RBX) "(%rdi)\n"                                       \
    "    mov %rcx, " G(G_RCX) "(%rdi)\n"                                       \
    "    mov %rdx, " G(G_RDX) "(%rdi)\n"                                       \
    "    mov %rsi, " G(G_RSI) "(%rdi)\n"                                       \
    "    mov %rbp, " G(G_RBP) "(%rdi)\n"                                       \
    "    mov %r8, " G(G_R8) "(%rdi)\n"                                         \
    "    mov %r9, " G(G_R9) "(%rdi)\n"                                         \
    "    mov %r10, " G(G_R10) "(%rdi)\n"                                       \
    "    mov %r11, " G(G_R11) "(%rdi)\n"                                       \
    "    mov %r12, " G(G_R12) "(%rdi)\n"                                       \
    "    mov %r13, " G(G_R13) "(%rdi)\n"                                       \
    "    mov %r14, " G(G_R14) "(%rdi)\n"                                       \
    "    mov %r15, " G(G_R15) "(%rdi)\n"                                       \
    "    pop %rax\n"                                                           \
    "    mov %rax, " G(G_RDI) "(%rdi)\n"                                       \
    "    pop %rax\n"                                                           \
    "    mov %rax, " G(G_FLAGS) "(%rdi)\n"                                     \
    "    call *" G(G_STOREVEC) "(%rdi)\n"                                      \
    "    stmxcsr " STR(OFF_MXCSR) "(%rdi)\n"                                   \
    "    fnstcw " STR(OFF_FCW) "(%rdi)\n"                                      \
    "    fstpt " STR(OFF_X87) "(%rdi)\n"                                       \
    "    fstpt " STR(OFF_X87) "+16(%rdi)\n"                                    \
    "    lea 512(%rsp), %rsp\n"                                                \
    "    mov %rsp, " G(G_RSP_AFTER) "(%rdi)\n"                                 \
    "    xor %eax, %eax\n"                                                     \
    "    movabs $" RZ_PATTERN ", %rcx\n"                                       \
    "    mov $1, %edx\n"                                                       \
    "2:  mov %rdx, %r8\n"                                                      \
    "    shl $3, %r8\n"                                                        \
    "    neg %r8\n"                                                            \
    "    add %rsp, %r8\n"                                                      \
    "    cmp %rcx, (%r8)\n"                                                    \
    "    je 3f\n"                                                              \
    "    inc %eax\n"                                                           \
    "3:  inc %rcx\n"                                                           \
    "    inc %rdx\n"                                                           \
    "    cmp $16, %rdx\n"                                                      \
    "    jbe 2b\n"                                                             \
    "    mov %rax, " G(G_REDZONE) "(%rdi)\n"                                   \
    "    ldmxcsr " G(G_SAVED_MXCSR) "(%rdi)\n"                                 \
    "    fldcw " G(G_SAVED_FCW) "(%rdi)\n"                                     \
    "    pop %rdi\n"                                                           \
    "    pop %rsi\n"                                                           \
    "    pop %r15\n"                                                           \
    "    pop %r14\n"                                                           \
    "    pop %r13\n"                                                           \
    "    pop %r12\n"                                                           \
    "    pop %rbp\n"                                                           \
    "    pop %rbx\n"                                                           \
    "    ret\n"                                                                \
    "    .cfi_endproc\n"                                                       \
    ".size " NAME ", .-" NAME "\n"

/* vector load/store helpers: pointer in %rdi, touch nothing else */
#define V(i) STR(OFF_VEC + 64 * i)
#define XMM_LD(i) "    movdqu " V(i) "(%rdi), %xmm" #i "\n"
#define XMM_ST(i) "    movdqu %xmm" #i ", " V(i) "(%rdi)\n"
#define YMM_LD(i) "    vmovdqu " V(i) "(%rdi), %ymm" #i "\n"
#define YMM_ST(i) "    vmovdqu %ymm" #i ", " V(i) "(%rdi)\n"
#define ZMM_LD(i) "    vmovdqu64 " V(i) "(%rdi), %zmm" #i "\n"
#define ZMM_ST(i) "    vmovdqu64 %zmm" #i ", " V(i) "(%rdi)\n"
#define K_LD(i) "    kmovq " STR(OFF_K + 8 * i) "(%rdi), %k" #i "\n"
#define K_ST(i) "    kmovq %k" #i ", " STR(OFF_K + 8 * i) "(%rdi)\n"
#define X16(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)
#define X32(M) X16(M) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23) M(24) M(25) M(26) M(27) M(28) M(29) M(30) M(31)
#define X8(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)

#define FUNC(NAME, BODY) ".globl " NAME "\n.type " NAME ",@function\n" NAME ":\n" BODY "    ret\n.size " NAME ", .-" NAME "\n"

__asm__(".text\n"
        FUNC("rt_load_sse", X16(XMM_LD))
        FUNC("rt_store_sse", X16(XMM_ST))
        FUNC("rt_load_avx", X16(YMM_LD))
        FUNC("rt_store_avx", X16(YMM_ST))
        FUNC("rt_load_avx512", X32(ZMM_LD) X8(K_LD))
        FUNC("rt_store_avx512", X32(ZMM_ST) X8(K_ST))
        REGTEST("rt_getppid", "", "    mov $110, %eax\n")
        REGTEST("rt_write0", "", "    mov $1, %eax\n")
        REGTEST("rt_generic", "    mov " G(G_NR) "(%rdi), %eax\n", ""));

void rt_load_sse(void), rt_store_sse(void), rt_load_avx(void), rt_store_avx(void);
void rt_load_avx512(void), rt_store_avx512(void);
void rt_getppid(struct regs *in, struct regs *out);
void rt_write0(struct regs *in, struct regs *out);
void rt_generic(struct regs *in, struct regs *out);

enum level { L_SSE, L_AVX, L_AVX512 };
static enum level g_level;
static int g_devnull;
static pid_t g_ppid;

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void fill_in(struct regs *in, uint64_t *seed)
{
    memset(in, 0, sizeof *in);
    for (int i = 0; i < 32; i++)
        in->g[i] = next_rand(seed);
    in->g[G_FLAGS] = next_rand(seed) & 0xcd5;
    uint32_t r = (uint32_t)next_rand(seed);
    /* all exceptions masked; random rounding, FTZ, DAZ and sticky flags */
    in->mxcsr = 0x1f80 | (r & 0x6000) | (r & 0x8000) | (r & 0x40) | ((r >> 16) & 0x3f);
    in->fcw = (uint16_t)(0x037f & ~0x0300) | (uint16_t)((r >> 8) & 0x0f00);
    long double a = (long double)(int64_t)next_rand(seed) / 7.0L;
    long double b = (long double)(int64_t)next_rand(seed) * 3.0L;
    memcpy(in->x87[0], &a, 10);
    memcpy(in->x87[1], &b, 10);
    for (int i = 0; i < 32; i++)
        for (int j = 0; j < 8; j++) {
            uint64_t v = next_rand(seed);
            memcpy(&in->vec[i][j * 8], &v, 8);
        }
    for (int i = 0; i < 8; i++)
        in->k[i] = next_rand(seed);
    switch (g_level) {
    case L_SSE:
        in->g[G_LOADVEC] = (uintptr_t)rt_load_sse;
        in->g[G_STOREVEC] = (uintptr_t)rt_store_sse;
        break;
    case L_AVX:
        in->g[G_LOADVEC] = (uintptr_t)rt_load_avx;
        in->g[G_STOREVEC] = (uintptr_t)rt_store_avx;
        break;
    case L_AVX512:
        in->g[G_LOADVEC] = (uintptr_t)rt_load_avx512;
        in->g[G_STOREVEC] = (uintptr_t)rt_store_avx512;
        break;
    }
}

static const char *const g_names[16] = {
    "nr/rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "-", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
};

/* Compare; returns the number of mismatching items (reports the first few). */
static int compare(const char *site, const struct regs *in, const struct regs *out, long want_rax)
{
    int bad = 0;
    static const int preserved[] = { G_RBX, G_RDX, G_RSI, G_RDI, G_RBP, G_R8, G_R9, G_R10,
                                     G_R12, G_R13, G_R14, G_R15 };
    for (size_t i = 0; i < sizeof preserved / sizeof preserved[0]; i++) {
        int r = preserved[i];
        if (in->g[r] != out->g[r]) {
            if (bad++ < 4)
                FAILF("%s: %s changed", site, g_names[r]);
        }
    }
    if ((long)out->g[G_RAX] != want_rax && bad++ < 4)
        FAILF("%s: rax %ld vs %ld", site, (long)out->g[G_RAX], want_rax);
    if ((out->g[G_FLAGS] & 0xcd5) != (in->g[G_FLAGS] & 0xcd5) && bad++ < 4)
        FAILF("%s: arithmetic and direction flags 0x%llx vs 0x%llx", site,
              (unsigned long long)(out->g[G_FLAGS] & 0xcd5), (unsigned long long)(in->g[G_FLAGS] & 0xcd5));
    if (out->g[G_RSP_AFTER] != out->g[G_RSP_BEFORE] && bad++ < 4)
        FAILF("%s: rsp changed", site);
    if (out->g[G_REDZONE] != 0 && bad++ < 4)
        FAILF("%s: %llu red zone quadwords overwritten", site, (unsigned long long)out->g[G_REDZONE]);
    if (out->mxcsr != in->mxcsr && bad++ < 4)
        FAILF("%s: mxcsr 0x%x vs 0x%x", site, out->mxcsr, in->mxcsr);
    if (out->fcw != in->fcw && bad++ < 4)
        FAILF("%s: x87 control word 0x%x vs 0x%x", site, out->fcw, in->fcw);
    if ((memcmp(out->x87[0], in->x87[0], 10) != 0 || memcmp(out->x87[1], in->x87[1], 10) != 0) && bad++ < 4)
        FAILF("%s: x87 stack values changed", site);
    int nvec = g_level == L_AVX512 ? 32 : 16;
    size_t width = g_level == L_SSE ? 16 : g_level == L_AVX ? 32 : 64;
    for (int i = 0; i < nvec; i++)
        if (memcmp(out->vec[i], in->vec[i], width) != 0 && bad++ < 4)
            FAILF("%s: vector register %d (%zu bytes) changed", site, i, width);
    if (g_level == L_AVX512)
        for (int i = 0; i < 8; i++)
            if (out->k[i] != in->k[i] && bad++ < 4)
                FAILF("%s: k%d changed", site, i);
    return bad;
}

/* Runs every site `iters` times; returns the number of bad iterations. */
static int run_all(int iters, uint64_t seed)
{
    static __thread struct regs in, out;
    static __thread char buf[16];
    int bad = 0;
    for (int i = 0; i < iters; i++) {
        fill_in(&in, &seed);
        memset(&out, 0, sizeof out);
        out.g[G_STOREVEC] = in.g[G_STOREVEC];
        rt_getppid(&in, &out);
        bad += compare("getppid site", &in, &out, g_ppid) != 0;

        fill_in(&in, &seed);
        in.g[G_RDI] = (uint64_t)g_devnull;
        in.g[G_RSI] = (uintptr_t)buf;
        in.g[G_RDX] = 0;
        memset(&out, 0, sizeof out);
        out.g[G_STOREVEC] = in.g[G_STOREVEC];
        rt_write0(&in, &out);
        bad += compare("write(fd, buf, 0) site", &in, &out, 0) != 0;

        fill_in(&in, &seed);
        in.g[G_NR] = SYS_getppid;
        memset(&out, 0, sizeof out);
        out.g[G_STOREVEC] = in.g[G_STOREVEC];
        rt_generic(&in, &out);
        bad += compare("generic (nr from memory) site", &in, &out, g_ppid) != 0;
        if (bad > 10)
            break;
    }
    return bad;
}

static void *thread_fn(void *p)
{
    return (void *)(intptr_t)run_all(300, (uint64_t)(uintptr_t)p);
}

static volatile int g_handler_bad = -1;

static void on_usr1(int sig)
{
    (void)sig;
    g_handler_bad = run_all(5, 0x1234567);
}

static void run_level(const char *label)
{
    int s = section_begin();
    EXPECT_EQ("main thread", run_all(300, 0x9e3779b97f4a7c15ULL), 0);
    pthread_t a, b;
    void *ra = (void *)-1, *rb = (void *)-1;
    REQUIRE(pthread_create(&a, NULL, thread_fn, (void *)(uintptr_t)0xabcdef12345ULL) == 0, "thread");
    REQUIRE(pthread_create(&b, NULL, thread_fn, (void *)(uintptr_t)0x1111222233334444ULL) == 0, "thread");
    pthread_join(a, &ra);
    pthread_join(b, &rb);
    EXPECT_EQ("thread a", (intptr_t)ra, 0);
    EXPECT_EQ("thread b", (intptr_t)rb, 0);
    g_handler_bad = -1;
    raise(SIGUSR1);
    EXPECT_EQ("inside a signal handler", g_handler_bad, 0);
    section_end(s, label);
}

int main(void)
{
    g_ppid = getppid();
    g_devnull = open("/dev/null", O_WRONLY);
    REQUIRE(g_devnull >= 0, "open /dev/null");
    signal(SIGUSR1, on_usr1);
    __builtin_cpu_init();

    g_level = L_SSE;
    run_level("sse: gprs, flags, mxcsr, x87, xmm0-15, rsp and red zone preserved");
    if (__builtin_cpu_supports("avx")) {
        g_level = L_AVX;
        run_level("avx: ymm0-15 (upper halves too) preserved");
    }
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) {
        g_level = L_AVX512;
        run_level("avx512: zmm0-31 and k0-7 preserved");
    }
    return finish();
}
