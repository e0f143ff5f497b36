/*
 * usertrap-test: exec
 *
 * Hard case: prctl(PR_SET_TSC, PR_TSC_SIGSEGV): from then on rdtsc raises
 * SIGSEGV in this thread and its children (LTP prctl10).
 *
 * Why it is hard for a syscall interposer: one that times syscalls with
 * rdtsc faults on its own next timestamp.  It must see the prctl and time
 * without the TSC from then on, and start without it in an image that
 * inherits the setting across exec.
 *
 * What it checks: PR_GET_TSC before and after; syscalls keep working after
 * the switch (getppid, write/read of a pipe, a thread); rdtsc in a child is
 * killed by SIGSEGV; an exec'd copy of the program starts with the TSC off
 * and ends as natively (glibc's loader reads the TSC: SIGSEGV).
 */
#include "common.h"

#include <pthread.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <x86intrin.h>

static void *thread_main(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)getppid();
}

static int work(void)
{
    int bad = 0, p[2];
    if (pipe(p) != 0)
        return 1;
    for (int i = 0; i < 200; i++) {
        char c = (char)i, in = 0;
        if (write(p[1], &c, 1) != 1 || read(p[0], &in, 1) != 1 || in != c || getppid() <= 0)
            bad++;
    }
    close(p[0]);
    close(p[1]);
    pthread_t t;
    void *r = NULL;
    if (pthread_create(&t, NULL, thread_main, NULL) != 0 || pthread_join(t, &r) != 0 || (intptr_t)r != getppid())
        bad++;
    return bad;
}

int main(int argc, char **argv)
{
    int tsc = -1;
    if (argc > 1) {
        EXPECT_EQ("PR_GET_TSC in the exec'd image", prctl(PR_GET_TSC, &tsc, 0, 0, 0), 0);
        EXPECT_EQ("TSC off in the exec'd image", tsc, PR_TSC_SIGSEGV);
        EXPECT_EQ("syscalls in the exec'd image", work(), 0);
        say("exec'd image: %s\n", t_failure_count() ? "FAILED" : "ok");
        return t_failure_count() ? 1 : 0;
    }
    int s = section_begin();
    EXPECT_EQ("PR_GET_TSC", prctl(PR_GET_TSC, &tsc, 0, 0, 0), 0);
    EXPECT_EQ("TSC enabled at start", tsc, PR_TSC_ENABLE);
    EXPECT_EQ("PR_SET_TSC SIGSEGV", prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0), 0);
    EXPECT_EQ("PR_GET_TSC", prctl(PR_GET_TSC, &tsc, 0, 0, 0), 0);
    EXPECT_EQ("TSC off", tsc, PR_TSC_SIGSEGV);
    EXPECT_EQ("syscalls after PR_SET_TSC", work(), 0);
    section_end(s, "PR_SET_TSC PR_TSC_SIGSEGV: syscalls keep working");

    s = section_begin();
    pid_t pid = fork();
    if (pid == 0) {
        (void)__rdtsc();
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    EXPECT("rdtsc in a child: SIGSEGV", WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    section_end(s, "rdtsc faults in a child");

    s = section_begin();
    pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", argv[0], "child", (char *)NULL);
        _exit(127);
    }
    waitpid(pid, &st, 0);
    /* glibc's loader itself reads the TSC at start (rtld's timing), so a
     * dynamically linked image dies of SIGSEGV natively: what matters is
     * that it ends the same way. */
    if (WIFEXITED(st))
        say("exec'd image with the TSC off: exit %d\n", WEXITSTATUS(st));
    else
        say("exec'd image with the TSC off: signal %d\n", WIFSIGNALED(st) ? WTERMSIG(st) : -1);
    section_end(s, "an image exec'd with the TSC off ends as natively");
    return finish();
}
