/*
 * trace_calls.c - known calls for tests/trace.rs (`usertrap trace`).
 *
 *   known    getppid; openat of a missing file (ENOENT); a second thread
 *            sleeps 5 ms (nanosleep); getppid.
 *   tree     fork: one child execs /bin/true, one makes a getppid and exits;
 *            the parent waits for both.
 *   many N   N getppid calls (more than a thread's buffer holds).
 *   segv     3 getppid calls, then a SIGSEGV (null pointer write).
 *   killed   two threads make 7 getuid and 9 getgid calls and wait for
 *            good; the main thread makes 3000 getppid calls (more than
 *            two buffers), then kills the process with SIGKILL.
 *   fork-killed  3 getppid calls; fork: the child makes 4 getuid calls, a
 *            thread of it 2 getgid calls, and waits; the parent kills it
 *            with SIGKILL, reaps it and makes 5 more getppid calls.
 *   exec-fails  a thread makes 7 getuid calls and waits; the main thread
 *            makes 3 getppid calls and an execve that fails (EFAULT: a bad
 *            argv string, met by the kernel after the image reported),
 *            waits 200 ms, lets the thread make 2 more getuid calls and
 *            end, makes 4 more getppid calls and kills the process with
 *            SIGKILL.
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

static int ready[2];

/* Makes `n` calls of `nr`, says so on `ready`, then waits for good. */
static void calls_then_wait(long nr, int n)
{
    for (int i = 0; i < n; i++)
        syscall(nr);
    char c = 1;
    if (write(ready[1], &c, 1) != 1)
        _exit(3);
    for (;;)
        pause();
}

/* Makes `arg`'s calls (SYS_getuid: 7, SYS_getgid: 9), says so, waits. */
static void *caller(void *arg)
{
    long nr = (long)arg;
    calls_then_wait(nr, nr == SYS_getuid ? 7 : 9);
    return NULL;
}

static int go[2];

/* 7 getuid calls, says so, waits for the word, 2 more, ends. */
static void *caller_then_more(void *arg)
{
    (void)arg;
    for (int i = 0; i < 7; i++)
        syscall(SYS_getuid);
    char c = 1;
    if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
        _exit(3);
    for (int i = 0; i < 2; i++)
        syscall(SYS_getuid);
    return NULL;
}

/* A fork child's thread: 2 getgid calls, says so, waits. */
static void *child_caller(void *arg)
{
    (void)arg;
    calls_then_wait(SYS_getgid, 2);
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
    if (strcmp(mode, "killed") == 0) {
        if (pipe(ready) != 0)
            return 1;
        pthread_t t;
        if (pthread_create(&t, NULL, caller, (void *)(long)SYS_getuid) != 0 ||
            pthread_create(&t, NULL, caller, (void *)(long)SYS_getgid) != 0)
            return 1;
        for (int i = 0; i < 3000; i++)
            syscall(SYS_getppid);
        char c[2];
        if (read(ready[0], c, 1) != 1 || read(ready[0], c + 1, 1) != 1)
            return 1;
        kill(getpid(), SIGKILL);
        return 1;
    }
    if (strcmp(mode, "fork-killed") == 0) {
        for (int i = 0; i < 3; i++)
            syscall(SYS_getppid);
        if (pipe(ready) != 0)
            return 1;
        pid_t child = fork();
        if (child < 0)
            return 1;
        if (child == 0) {
            for (int i = 0; i < 4; i++)
                syscall(SYS_getuid);
            pthread_t t;
            if (pthread_create(&t, NULL, child_caller, NULL) != 0)
                _exit(1);
            for (;;)
                pause();
        }
        char c;
        if (read(ready[0], &c, 1) != 1)
            return 1;
        kill(child, SIGKILL);
        int st;
        if (waitpid(child, &st, 0) != child || !WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
            return 1;
        for (int i = 0; i < 5; i++)
            syscall(SYS_getppid);
        return 0;
    }
    if (strcmp(mode, "exec-fails") == 0) {
        if (pipe(ready) != 0 || pipe(go) != 0)
            return 1;
        pthread_t t;
        if (pthread_create(&t, NULL, caller_then_more, NULL) != 0)
            return 1;
        char c;
        if (read(ready[0], &c, 1) != 1)
            return 1;
        for (int i = 0; i < 3; i++)
            syscall(SYS_getppid);
        char *bad_argv[] = { "true", (char *)1, NULL };
        extern char **environ;
        if (syscall(SYS_execve, "/bin/true", bad_argv, environ) != -1 || errno != EFAULT)
            return 1;
        /* Time for the collector to have taken the image's report. */
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (write(go[1], &c, 1) != 1 || pthread_join(t, NULL) != 0)
            return 1;
        for (int i = 0; i < 4; i++)
            syscall(SYS_getppid);
        kill(getpid(), SIGKILL);
        return 1;
    }
    return 2;
}
