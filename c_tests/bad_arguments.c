// usertrap-test: exec
/*
 * Hard case: the calls the interposer emulates, given the arguments a
 * careless or hostile program passes: bad pointers, sizes the kernel
 * accepts or refuses by rules of its own, values whose upper bits the
 * kernel ignores.
 *
 * Why it is hard for a syscall interposer: an emulated call does not reach
 * the kernel's checks, so each rule has to be written again, the kernel's
 * argument types included (readlink's bufsiz is an int: 0x100000005 is 5;
 * rt_sigpending takes any size up to 8 and writes that many bytes).
 *
 * What it checks: the result and errno of each call, printed (the same
 * natively and under the library). The first image runs them, then execs
 * itself once (`again`): readlink of /proc/self/exe is answered by the
 * library only in an image it launched.
 */
#include "common.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#define BAD ((long)1)
#define KERNEL_ADDR ((long)0xffff800000000000l)

static void readlinks(void)
{
    char buf[4096];
    /* bufsiz is an int to the kernel: only its low 32 bits count. */
    const long sizes[] = {0, -1, 0xffffffffl, 0x100000000l, 0x80000000l};
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "readlink size %#lx", (unsigned long)sizes[i]);
        SAY_CALL(what, SYS_readlink, "/proc/self/exe", buf, sizes[i]);
        snprintf(what, sizeof what, "readlinkat size %#lx", (unsigned long)sizes[i]);
        SAY_CALL(what, SYS_readlinkat, AT_FDCWD, "/proc/self/exe", buf, sizes[i]);
    }
    /* 0x100000005 is 5: five bytes written, the rest of the buffer left. */
    memset(buf, 'x', sizeof buf);
    SAY_CALL("readlink size 0x100000005", SYS_readlink, "/proc/self/exe", buf, 0x100000005l);
    say("  bytes 5..7 untouched: %d\n", buf[5] == 'x' && buf[6] == 'x' && buf[7] == 'x');
    SAY_CALL("readlink bad buffer", SYS_readlink, "/proc/self/exe", BAD, 64l);
    SAY_CALL("readlinkat bad buffer", SYS_readlinkat, AT_FDCWD, "/proc/self/exe", BAD, 64l);
    SAY_CALL("readlinkat bad fd, absolute path", SYS_readlinkat, 999, "/proc/self/exe", buf, 64l);
}

static void sigpending_sizes(void)
{
    /* Any size up to sizeof(sigset_t) (8), that many bytes written. */
    const long sizes[] = {0, 1, 4, 7, 8, 9, 16, 0x100000008l, -1};
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char set[16];
        memset(set, 0xa5, sizeof set);
        char what[64];
        snprintf(what, sizeof what, "rt_sigpending size %#lx", (unsigned long)sizes[i]);
        SAY_CALL(what, SYS_rt_sigpending, set, sizes[i]);
        int untouched = 0;
        for (unsigned k = 0; k < sizeof set; k++)
            untouched += set[k] == 0xa5;
        say("  bytes left: %d\n", untouched);
    }
    SAY_CALL("rt_sigpending bad pointer", SYS_rt_sigpending, BAD, 8l);
    SAY_CALL("rt_sigpending kernel pointer", SYS_rt_sigpending, KERNEL_ADDR, 8l);
}

/* rt_sigtimedwait for a SIGSEGV sent while blocked (held back by the
 * interposer): a bad timeout is refused before anything is taken; a bad
 * siginfo pointer fails after the signal was taken. */
static int segv_pending(void)
{
    sigset_t p;
    sigpending(&p);
    return sigismember(&p, SIGSEGV);
}

static void sigtimedwait_held_signal(void)
{
    sigset_t segv;
    sigemptyset(&segv);
    sigaddset(&segv, SIGSEGV);
    sigprocmask(SIG_BLOCK, &segv, NULL);
    kill(getpid(), SIGSEGV);
    struct timespec bad_nsec = {0, 1000000000}, negative = {-1, 0}, zero = {0, 0};
    SAY_CALL("rt_sigtimedwait SIGSEGV, tv_nsec 1e9", SYS_rt_sigtimedwait, &segv, 0l, &bad_nsec, 8l);
    say("  SIGSEGV pending: %d\n", segv_pending());
    SAY_CALL("rt_sigtimedwait SIGSEGV, negative timeout", SYS_rt_sigtimedwait, &segv, 0l, &negative, 8l);
    SAY_CALL("rt_sigtimedwait SIGSEGV, bad timeout", SYS_rt_sigtimedwait, &segv, 0l, BAD, 8l);
    say("  SIGSEGV pending: %d\n", segv_pending());
    SAY_CALL("rt_sigtimedwait SIGSEGV, bad siginfo", SYS_rt_sigtimedwait, &segv, BAD, &zero, 8l);
    say("  SIGSEGV pending: %d\n", segv_pending());
    sigprocmask(SIG_UNBLOCK, &segv, NULL);
}

static void signal_calls(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    struct timespec zero = {0, 0};
    SAY_CALL("rt_sigaction SIGUSR1 bad act", SYS_rt_sigaction, SIGUSR1, BAD, 0l, 8l);
    SAY_CALL("rt_sigaction SIGUSR1 bad oldact", SYS_rt_sigaction, SIGUSR1, 0l, BAD, 8l);
    SAY_CALL("rt_sigaction SIGSYS bad act", SYS_rt_sigaction, SIGSYS, BAD, 0l, 8l);
    SAY_CALL("rt_sigaction SIGSYS bad oldact", SYS_rt_sigaction, SIGSYS, 0l, BAD, 8l);
    SAY_CALL("rt_sigaction SIGSEGV kernel oldact", SYS_rt_sigaction, SIGSEGV, 0l, KERNEL_ADDR, 8l);
    SAY_CALL("rt_sigaction size 7", SYS_rt_sigaction, SIGUSR1, 0l, BAD, 7l);
    SAY_CALL("rt_sigprocmask bad set", SYS_rt_sigprocmask, SIG_BLOCK, BAD, 0l, 8l);
    SAY_CALL("rt_sigprocmask bad oldset", SYS_rt_sigprocmask, SIG_BLOCK, 0l, BAD, 8l);
    SAY_CALL("rt_sigprocmask bad how, no set", SYS_rt_sigprocmask, 7l, 0l, 0l, 8l);
    SAY_CALL("rt_sigprocmask bad how", SYS_rt_sigprocmask, 7l, &s, 0l, 8l);
    SAY_CALL("rt_sigprocmask size 4", SYS_rt_sigprocmask, SIG_BLOCK, 0l, 0l, 4l);
    SAY_CALL("sigaltstack bad ss", SYS_sigaltstack, BAD, 0l);
    SAY_CALL("sigaltstack bad old", SYS_sigaltstack, 0l, BAD);
    SAY_CALL("sigaltstack kernel old", SYS_sigaltstack, 0l, KERNEL_ADDR);
    SAY_CALL("rt_sigsuspend bad", SYS_rt_sigsuspend, BAD, 8l);
    SAY_CALL("rt_sigtimedwait bad set", SYS_rt_sigtimedwait, BAD, 0l, 0l, 8l);
    SAY_CALL("rt_sigtimedwait bad info", SYS_rt_sigtimedwait, &s, BAD, &zero, 8l);
    SAY_CALL("rt_sigtimedwait bad timeout", SYS_rt_sigtimedwait, &s, 0l, BAD, 8l);
    SAY_CALL("ppoll bad mask", SYS_ppoll, 0l, 0l, &zero, BAD, 8l);
    SAY_CALL("pselect6 bad mask", SYS_pselect6, 0l, 0l, 0l, 0l, &zero, BAD);
    SAY_CALL("epoll_pwait bad", SYS_epoll_pwait, 999l, BAD, 1l, 0l, BAD, 8l);
    SAY_CALL("signalfd4 bad", SYS_signalfd4, -1l, BAD, 8l, 0l);
    SAY_CALL("kill signal 99", SYS_kill, (long)getpid(), 99l);
}

static void process_calls(void)
{
    char *bad_elem[] = {"true", (char *)BAD, NULL};
    char buf[64];
    SAY_CALL("execve bad path", SYS_execve, BAD, 0l, 0l);
    SAY_CALL("execve bad argv", SYS_execve, "/bin/true", BAD, 0l);
    SAY_CALL("execve bad envp", SYS_execve, "/bin/true", 0l, BAD);
    SAY_CALL("execve bad argv entry", SYS_execve, "/bin/true", bad_elem, 0l);
    SAY_CALL("execve empty path", SYS_execve, "", 0l, 0l);
    SAY_CALL("execveat bad path", SYS_execveat, AT_FDCWD, BAD, 0l, 0l, 0l);
    SAY_CALL("execveat bad flags", SYS_execveat, AT_FDCWD, "/bin/true", 0l, 0l, 0x12345l);
    SAY_CALL("clone3 bad", SYS_clone3, BAD, (long)sizeof(struct clone_args));
    SAY_CALL("clone3 small", SYS_clone3, buf, 8l);
    SAY_CALL("prctl PR_GET_NAME bad", SYS_prctl, PR_GET_NAME, BAD, 0l, 0l, 0l);
    SAY_CALL("prctl PR_SET_NAME bad", SYS_prctl, PR_SET_NAME, BAD, 0l, 0l, 0l);
    SAY_CALL("prctl seccomp filter bad", SYS_prctl, PR_SET_SECCOMP, 2l, BAD, 0l, 0l);
    SAY_CALL("prctl PR_GET_TSC bad", SYS_prctl, PR_GET_TSC, BAD, 0l, 0l, 0l);
    SAY_CALL("seccomp filter bad", SYS_seccomp, 1l, 0l, BAD);
    SAY_CALL("arch_prctl ARCH_GET_GS bad", SYS_arch_prctl, 0x1004l, BAD);
    SAY_CALL("arch_prctl ARCH_GET_FS bad", SYS_arch_prctl, 0x1003l, BAD);
    SAY_CALL("arch_prctl bad code", SYS_arch_prctl, 0x9999l, 0l);
    SAY_CALL("membarrier bad", SYS_membarrier, 0x12345l, 0l, 0l);
    SAY_CALL("munmap at 1", SYS_munmap, 1l, 4096l);
    SAY_CALL("mprotect at 1", SYS_mprotect, 1l, 4096l, 1l);
    SAY_CALL("prlimit64 bad new", SYS_prlimit64, 0l, (long)RLIMIT_NOFILE, BAD, 0l);
    SAY_CALL("prlimit64 bad old", SYS_prlimit64, 0l, (long)RLIMIT_NOFILE, 0l, BAD);
    SAY_CALL("close_range reversed", SYS_close_range, 10l, 5l, 0l);
    SAY_CALL("close_range bad flags", SYS_close_range, 1000l, 2000l, 0x80l);
    SAY_CALL("dup3 onto itself", SYS_dup3, 2l, 2l, 0l);
    SAY_CALL("dup3 bad flags", SYS_dup3, 1l, 2l, 1l);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "again") == 0) {
        say("-- launched image\n");
        readlinks();
        return 0;
    }
    readlinks();
    sigpending_sizes();
    sigtimedwait_held_signal();
    signal_calls();
    process_calls();
    char *again[] = {argv[0], "again", NULL};
    execv("/proc/self/exe", again);
    say("FAIL: exec again: errno %d\n", errno);
    return 1;
}
