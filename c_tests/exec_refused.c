// usertrap-test: exec
/*
 * Hard case: an execve the kernel refuses after the interposer prepared
 * for the image to end (an argument over MAX_ARG_STRLEN, 128 KiB: E2BIG, as
 * a shell's glob too long for one command line gets).
 *
 * Why it is hard for a syscall interposer: the report of an image is
 * written before its execve (the image is gone once it succeeds); when the
 * kernel refuses, the image goes on and reports again at its end, with
 * every call since its start. The two must not add up (tests/stat_collect.rs
 * checks the aggregate), and the program must see E2BIG and go on.
 *
 * What it checks: 100 getppid, two refused execve (errno E2BIG each time),
 * 50 more getppid, exit status 0.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
    for (int i = 0; i < 100; i++)
        syscall(SYS_getppid);
    size_t n = 200 * 1024;
    char *big = malloc(n + 3);
    if (!big)
        return 2;
    memcpy(big, "X=", 2);
    memset(big + 2, 'a', n);
    big[n + 2] = 0;
    char *env[] = {big, NULL};
    char *argv[] = {"/bin/true", NULL};
    for (int k = 0; k < 2; k++) {
        int r = execve("/bin/true", argv, env);
        printf("exec_refused: execve = %d (%s)\n", r, strerror(errno));
    }
    for (int i = 0; i < 50; i++)
        syscall(SYS_getppid);
    printf("exec_refused: went on\n");
    return 0;
}
