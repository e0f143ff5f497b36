/*
 * trace_calls.c - known calls for tests/trace.rs (`usertrap trace`).
 *
 *   known    getppid; openat of a missing file (ENOENT); a second thread
 *            sleeps 5 ms (nanosleep); getppid.
 *   tree     fork: one child execs /bin/true, one makes a getppid and exits;
 *            the parent waits for both.
 *   many N   N getppid calls (more than a thread's buffer holds).
 *   segv     3 getppid calls, then a SIGSEGV (null pointer write).
 */
#include "common.h"

#include <fcntl.h>
#include <pthread.h>

static void *sleeper(void *arg)
{
    (void)arg;
    struct timespec ts = {0, 5 * 1000 * 1000};
    syscall(SYS_nanosleep, &ts, NULL);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "known";
    if (strcmp(mode, "known") == 0) {
        syscall(SYS_getppid);
        long fd = syscall(SYS_openat, AT_FDCWD, "/nonexistent/usertrap-trace", O_RDONLY);
        if (fd >= 0 || errno != ENOENT)
            return 1;
        pthread_t t;
        if (pthread_create(&t, NULL, sleeper, NULL) != 0)
            return 1;
        pthread_join(t, NULL);
        syscall(SYS_getppid);
        return 0;
    }
    if (strcmp(mode, "tree") == 0) {
        pid_t a = fork();
        if (a == 0) {
            execl("/bin/true", "true", (char *)NULL);
            _exit(127);
        }
        pid_t b = fork();
        if (b == 0) {
            syscall(SYS_getppid);
            _exit(0);
        }
        int st;
        waitpid(a, &st, 0);
        waitpid(b, &st, 0);
        return 0;
    }
    if (strcmp(mode, "many") == 0 && argc > 2) {
        long n = atol(argv[2]);
        for (long i = 0; i < n; i++)
            syscall(SYS_getppid);
        return 0;
    }
    if (strcmp(mode, "segv") == 0) {
        for (int i = 0; i < 3; i++)
            syscall(SYS_getppid);
        *(volatile int *)0 = 1;
        return 0;
    }
    return 2;
}
