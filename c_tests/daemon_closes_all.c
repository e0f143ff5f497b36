/*
 * Hard case: a daemon that cuts every tie to where it was started.
 *
 * Why it is hard for a syscall interposer: the classic double fork, then
 * setsid, chdir("/"), umask(0777), every descriptor closed, and (given a
 * directory, as root) chroot into it: no path, descriptor or permission
 * the interposer had at start is left to deliver its report with.
 * tests/stat_collect.rs checks that `usertrap stat` still gets the
 * daemon's report; here (c_programs.rs) the program must behave as
 * natively: the parent prints one line and exits 0.
 *
 * Argument: a directory to chroot into (only if root; optional).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    pid_t mid = fork();
    if (mid < 0)
        return 10;
    if (mid == 0) {
        setsid();
        pid_t d = fork();
        if (d < 0)
            _exit(11);
        if (d > 0)
            _exit(0);
        /* The daemon. */
        if (chdir("/") != 0)
            _exit(12);
        umask(0777);
        if (argc > 1 && geteuid() == 0 && chroot(argv[1]) == 0 && chdir("/") != 0)
            _exit(13);
        for (int fd = 0; fd < 1024; fd++)
            close(fd);
        for (int i = 0; i < 50; i++)
            getppid();
        exit(0);
    }
    int st;
    if (waitpid(mid, &st, 0) != mid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return 14;
    printf("daemon started\n");
    return 0;
}
