/*
 * common.h - shared helpers for the usertrap C test programs.
 *
 * Every program in c_tests/ is run twice by the Rust harness, natively and
 * under LD_PRELOAD=libusertrap.so, and the two runs must produce identical
 * stdout, stderr, exit status and files in cwd.  So output must be fully
 * deterministic: print fixed "name: ok" / "FAIL: ..." lines only.
 *
 * Output goes straight to fd 1 with write(2) (no stdio buffering), so forked
 * children never duplicate buffered text and lines from a dying process are
 * never lost.
 */
#ifndef USERTRAP_C_TESTS_COMMON_H
#define USERTRAP_C_TESTS_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define T_UNUSED __attribute__((unused))

/* Number of failed checks so far (updated atomically: threads may fail too). */
static int t_failures T_UNUSED;

static inline void t_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = write(fd, p, n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += r;
        n -= (size_t)r;
    }
}

/* printf to stdout, unbuffered (one write per call). */
__attribute__((format(printf, 1, 2))) static inline void say(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    int saved = errno;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0) {
        if ((size_t)n >= sizeof buf)
            n = (int)sizeof buf - 1;
        t_write_all(1, buf, (size_t)n);
    }
    errno = saved;
}

static inline void t_count_failure(void)
{
    __atomic_add_fetch(&t_failures, 1, __ATOMIC_SEQ_CST);
}

static inline int t_failure_count(void)
{
    return __atomic_load_n(&t_failures, __ATOMIC_SEQ_CST);
}

/* One raw call's result and errno, printed for the native and the traced
 * run to compare (tests of calls' argument checking). */
static inline void say_call(const char *what, long r)
{
    say("%s = %ld errno %d\n", what, r, r < 0 ? errno : 0);
}

/* Make syscall(...) with errno cleared first, and print it as say_call. */
#define SAY_CALL(what, ...)                                                    \
    do {                                                                       \
        errno = 0;                                                             \
        say_call(what, syscall(__VA_ARGS__));                                  \
    } while (0)

/* Up to `cap - 1` bytes of the small file at `path` (a /proc file, read in
 * one call) into `buf`, NUL-terminated: their number (0 if the read failed),
 * or -1 when it cannot be opened. */
static inline ssize_t t_read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        n = 0;
    buf[n] = 0;
    return n;
}

/* The state letter (R, S, Z, X, ...) of the /proc stat file at `path`
 * (/proc/PID/stat or /proc/self/task/TID/stat), or 0 when it cannot be read
 * (the task is gone). */
static inline char t_proc_state(const char *path)
{
    char buf[512];
    if (t_read_small(path, buf, sizeof buf) <= 0)
        return 0;
    const char *end = strrchr(buf, ')');
    return end != NULL && end[1] == ' ' ? end[2] : 0;
}

/* Record and print one failure. */
#define FAILF(fmt, ...)                                                        \
    do {                                                                       \
        t_count_failure();                                                     \
        say("FAIL: " fmt " [line %d]\n", ##__VA_ARGS__, __LINE__);             \
    } while (0)

/* Silent on success, prints a FAIL line otherwise. */
#define EXPECT(what, cond)                                                     \
    do {                                                                       \
        if (!(cond)) {                                                         \
            int e_ = errno;                                                    \
            FAILF("%s (errno %d)", what, e_);                                  \
        }                                                                      \
    } while (0)

#define EXPECT_EQ(what, got, expected)                                         \
    do {                                                                       \
        long long g_ = (long long)(got);                                       \
        int e_ = errno;                                                        \
        long long x_ = (long long)(expected);                                  \
        if (g_ != x_)                                                          \
            FAILF("%s (%lld vs %lld, errno %d)", what, g_, x_, e_);            \
    } while (0)

/* A setup step that must work for the rest of the program to make sense. */
#define REQUIRE(cond, what)                                                    \
    do {                                                                       \
        if (!(cond)) {                                                         \
            int e_ = errno;                                                    \
            say("FAIL: setup: %s (errno %d) [line %d]\n", what, e_, __LINE__); \
            exit(2);                                                           \
        }                                                                      \
    } while (0)

/* Sections: print "<name>: ok" when no check failed inside the section. */
/* waitpid(pid) through EINTR: the child's status, or -1 (a failure
 * counted) if waitpid did not return it. */
static inline int wait_status(pid_t pid)
{
    int st = 0;
    pid_t r;
    while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
        ;
    if (r != pid) {
        FAILF("waitpid(%d) returned %d (errno %d)", (int)pid, (int)r, errno);
        return -1;
    }
    return st;
}

/* vfork, the child execs /bin/true (exit 127 if it cannot), the parent
 * waits: its wait status. `envp`: the child's environment. */
static inline int t_vfork_true(char **envp)
{
    char *argv[] = { "true", NULL };
    pid_t pid = vfork();
    if (pid == 0) {
        execve("/bin/true", argv, envp);
        _exit(127);
    }
    REQUIRE(pid > 0, "vfork");
    return wait_status(pid);
}

static inline int section_begin(void)
{
    return t_failure_count();
}

static inline void section_end(int start, const char *name)
{
    if (t_failure_count() == start)
        say("%s: ok\n", name);
    else
        say("%s: FAILED\n", name);
}

/* Final line and exit status: 0 when every check passed. */
static inline int finish(void)
{
    int n = t_failure_count();
    if (n != 0) {
        say("result: %d check(s) failed\n", n);
        return 1;
    }
    say("result: all ok\n");
    return 0;
}

static inline long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Sleep for ms milliseconds, resuming after signal interruptions. */
static inline void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/*
 * Raw system call without touching errno or any other TLS: usable in threads
 * created without CLONE_SETTLS, vfork children and signal handlers.
 * Returns the kernel's value (-errno on failure).
 */
static inline long raw_syscall6(long n, long a, long b, long c, long d, long e, long f)
{
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

#define raw_syscall0(n) raw_syscall6((n), 0, 0, 0, 0, 0, 0)
#define raw_syscall1(n, a) raw_syscall6((n), (long)(a), 0, 0, 0, 0, 0)
#define raw_syscall2(n, a, b) raw_syscall6((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define raw_syscall3(n, a, b, c) raw_syscall6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define raw_syscall4(n, a, b, c, d)                                            \
    raw_syscall6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

/* Describe a signal set as a list of numbers, for FAIL messages. */
static inline void sigset_describe(const sigset_t *s, char *buf, size_t len)
{
    size_t pos = 0;
    buf[0] = 0;
    for (int sig = 1; sig <= 64 && pos + 4 < len; sig++) {
        if (sigismember(s, sig) == 1) {
            int n = snprintf(buf + pos, len - pos, "%s%d", pos ? "," : "", sig);
            if (n < 0)
                break;
            pos += (size_t)n;
        }
    }
}

/*
 * Compare two signal sets over 1..64.  glibc's sigismember() accepts every
 * number 1..64 (sigaddset() refuses its internal 32 and 33).
 */
static inline int sigset_equal(const sigset_t *a, const sigset_t *b)
{
    for (int sig = 1; sig <= 64; sig++)
        if (sigismember(a, sig) != sigismember(b, sig))
            return 0;
    return 1;
}

#define EXPECT_SIGSET(what, got, expected)                                     \
    do {                                                                       \
        if (!sigset_equal((got), (expected))) {                                \
            char gb_[300], xb_[300];                                           \
            sigset_describe((got), gb_, sizeof gb_);                           \
            sigset_describe((expected), xb_, sizeof xb_);                      \
            FAILF("%s: set {%s} vs expected {%s}", what, gb_, xb_);            \
        }                                                                      \
    } while (0)

/* The first 64 signals of a set as a bit mask (bit sig-1), like the kernel's. */
static inline uint64_t sigset_bits(const sigset_t *s)
{
    uint64_t m;
    memcpy(&m, s, sizeof m);
    return m;
}

static inline void sigset_from_bits(sigset_t *s, uint64_t m)
{
    sigemptyset(s);
    memcpy(s, &m, sizeof m);
}

#define SIGBIT(sig) (1ULL << ((sig) - 1))

/* `in` as a test may print it whatever directory it runs from: `self` and
 * `cwd` (if not empty) become $SELF and $CWD, bytes outside printable ASCII
 * \xNN. Into `out` (`cap` bytes, NUL-terminated). */
static inline void t_subst_paths(const char *in, const char *self, const char *cwd, char *out, size_t cap)
{
    size_t o = 0;
    size_t ls = strlen(self), lc = strlen(cwd);
    while (*in && o + 8 < cap) {
        if (ls && strncmp(in, self, ls) == 0) {
            o += (size_t)snprintf(out + o, cap - o, "$SELF");
            in += ls;
        } else if (lc && strncmp(in, cwd, lc) == 0) {
            o += (size_t)snprintf(out + o, cap - o, "$CWD");
            in += lc;
        } else {
            unsigned char c = (unsigned char)*in++;
            if (c < 0x20 || c >= 0x7f)
                o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
            else
                out[o++] = (char)c;
        }
    }
    out[o < cap ? o : cap - 1] = 0;
}

#endif
