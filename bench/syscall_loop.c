/*
 * The benchmark's workload: a tight loop of one syscall, timed from inside
 * the program (so interposer start-up is not counted).
 *   syscall_loop getppid N   N calls of getppid() (glibc's mov $110,%eax; syscall)
 *   syscall_loop read N      N 1-byte reads from /dev/zero (glibc's xor %eax,%eax; syscall)
 *   syscall_loop syscall3 N  N calls of syscall(SYS_getppid) (syscall(3): number from a register)
 * Prints the best of 5 rounds as "<ns per call>".
 */
#include <fcntl.h>
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

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s getppid|read|syscall3 N\n", argv[0]);
        return 2;
    }
    long n = atol(argv[2]);
    int use_read = strcmp(argv[1], "read") == 0;
    int use_syscall3 = strcmp(argv[1], "syscall3") == 0;
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
