/*
 * Hard case: calls into the legacy vsyscall page (0xffffffffff600000).
 *
 * Why it is hard for a syscall interposer: old static binaries call fixed
 * addresses for gettimeofday/time/getcpu; the kernel emulates the page
 * (a fault on an execute-only page) and applies seccomp to the emulated
 * syscall: under SECCOMP_RET_TRAP the SIGSYS arrives with the call address
 * in the vsyscall page and the return address on the stack (the emulation
 * behaves like a `call`), so returning to the reported RIP is wrong; the
 * interposer must finish the call the way the emulation would (set rax,
 * pop the return address).
 *
 * What it checks: if /proc/self/maps lists [vsyscall] (the same in both
 * runs), 100 calls of each: time() against time(NULL), gettimeofday()
 * against CLOCK_REALTIME (within 2 s), getcpu() < number of CPUs; the
 * results arrive in the right place and execution continues after the call.
 */
#include "common.h"

#include <fcntl.h>
#include <sys/time.h>

typedef long (*vgtod_t)(struct timeval *, struct timezone *);
typedef long (*vtime_t)(long *);
typedef long (*vgetcpu_t)(unsigned *, unsigned *, void *);

static int have_vsyscall(void)
{
    int fd = open("/proc/self/maps", O_RDONLY);
    if (fd < 0)
        return 0;
    static char buf[1 << 16];
    ssize_t n, total = 0;
    while ((n = read(fd, buf + total, sizeof buf - 1 - (size_t)total)) > 0)
        total += n;
    close(fd);
    buf[total] = 0;
    return strstr(buf, "[vsyscall]") != NULL;
}

int main(void)
{
    if (!have_vsyscall()) {
        say("vsyscall: page not present on this kernel\n");
        return 0;
    }
    vgtod_t vgtod = (vgtod_t)0xffffffffff600000UL;
    vtime_t vtime = (vtime_t)0xffffffffff600400UL;
    vgetcpu_t vgetcpu = (vgetcpu_t)0xffffffffff600800UL;
    long ncpu = sysconf(_SC_NPROCESSORS_CONF);

    int s = section_begin();
    int bad = 0;
    for (int i = 0; i < 100; i++) {
        long t_out = 0;
        long t = vtime(&t_out);
        long now = time(NULL);
        if (t != t_out || t < now - 2 || t > now)
            bad++;
        struct timeval tv = { 0, 0 };
        long r = vgtod(&tv, NULL);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        if (r != 0 || tv.tv_sec < ts.tv_sec - 2 || tv.tv_sec > ts.tv_sec || tv.tv_usec < 0 || tv.tv_usec >= 1000000)
            bad++;
        unsigned cpu = 9999, node = 9999;
        r = vgetcpu(&cpu, &node, NULL);
        if (r != 0 || cpu >= (unsigned)ncpu)
            bad++;
    }
    EXPECT_EQ("vsyscall time/gettimeofday/getcpu x100", bad, 0);
    section_end(s, "vsyscall: time, gettimeofday, getcpu through the legacy page");
    return finish();
}
