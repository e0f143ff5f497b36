/*
 * The benchmark's workload: a tight loop of one syscall, timed from inside
 * the program (so interposer start-up is not counted).
 *   syscall_loop getppid N   N calls of getppid() (glibc's mov $110,%eax; syscall)
 *   syscall_loop read N      N 1-byte reads from /dev/zero (glibc's xor %eax,%eax; syscall)
 *   syscall_loop syscall3 N  N calls of syscall(SYS_getppid) (syscall(3): number from a register)
 *   syscall_loop sud_floor N     getppid() natively, with Syscall User Dispatch on
 *                                and every address exempt: the kernel's own cost of
 *                                the sud backend, which no interposer using it avoids
 *   syscall_loop seccomp_floor N getppid() natively under a seccomp filter that
 *                                allows everything (the seccomp backend's floor)
 * Prints the best of 5 rounds as "<ns per call>".
 */
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#define PR_SYS_DISPATCH_ON 1
#endif

/* The backends' kernel floors (see the usage above); 0 on success. */
static int floor_setup(const char *workload)
{
    if (strcmp(workload, "sud_floor") == 0) {
        static char selector; /* never read: every address is exempt */
        return syscall(SYS_prctl, PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, 0x1000UL,
                       0x7fffffffe000UL, &selector) != 0;
    }
    if (strcmp(workload, "seccomp_floor") == 0) {
        /* As the seccomp backend's filter: the instruction pointer is
         * loaded and compared, and the call allowed. */
        struct sock_filter f[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, instruction_pointer) + 4),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x7e90, 0, 0),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = {sizeof f / sizeof f[0], f};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
            return 1;
        return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_SPEC_ALLOW, &prog) != 0;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s getppid|read|syscall3|sud_floor|seccomp_floor N\n", argv[0]);
        return 2;
    }
    long n = atol(argv[2]);
    int use_read = strcmp(argv[1], "read") == 0;
    int use_syscall3 = strcmp(argv[1], "syscall3") == 0;
    if (floor_setup(argv[1]) != 0) {
        perror(argv[1]);
        return 1;
    }
    int fd = open("/dev/zero", O_RDONLY);
    if (fd < 0) {
        perror("/dev/zero");
        return 1;
    }
    char c;
    double best = 1e300;
    for (int round = 0; round < 5; round++) {
        double t0 = now_ns();
        if (use_read) {
            for (long i = 0; i < n; i++)
                if (read(fd, &c, 1) != 1)
                    return 1;
        } else if (use_syscall3) {
            for (long i = 0; i < n; i++)
                syscall(SYS_getppid);
        } else {
            for (long i = 0; i < n; i++)
                getppid();
        }
        double per = (now_ns() - t0) / n;
        if (per < best)
            best = per;
    }
    printf("%.1f\n", best);
    return 0;
}
