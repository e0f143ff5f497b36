/*
 * Reads from /dev/zero at three call sites, each a known number of times:
 * reader_one and reader_two issue `read` themselves (their own
 * `mov $0,%eax; syscall`), and read(2) through libc. The call-site report
 * must name each function (and libc's) with exactly these counts.
 *   call_sites [N1 N2 N3]   (default 1000 2000 3000)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((noinline)) long reader_one(int fd, char *buf)
{
    long r;
    __asm__ volatile("mov $0, %%eax\n\tsyscall"
                     : "=a"(r)
                     : "D"((long)fd), "S"(buf), "d"(1L)
                     : "rcx", "r11", "memory");
    return r;
}

__attribute__((noinline)) long reader_two(int fd, char *buf)
{
    long r;
    __asm__ volatile("mov $0, %%eax\n\tsyscall"
                     : "=a"(r)
                     : "D"((long)fd), "S"(buf), "d"(1L)
                     : "rcx", "r11", "memory");
    return r;
}

int main(int argc, char **argv)
{
    long n[3] = {1000, 2000, 3000};
    for (int i = 0; i < 3 && i + 1 < argc; i++)
        n[i] = atol(argv[i + 1]);
    int fd = open("/dev/zero", O_RDONLY);
    if (fd < 0) {
        perror("/dev/zero");
        return 1;
    }
    char c;
    long got[3] = {0, 0, 0};
    for (long i = 0; i < n[0]; i++)
        got[0] += reader_one(fd, &c);
    for (long i = 0; i < n[1]; i++)
        got[1] += reader_two(fd, &c);
    for (long i = 0; i < n[2]; i++)
        got[2] += read(fd, &c, 1);
    printf("read %ld %ld %ld bytes\n", got[0], got[1], got[2]);
    return 0;
}
