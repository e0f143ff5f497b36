// usertrap-test: exec timeout=120
/*
 * Hard case: a long sequence of execs of the same process: the program
 * execs itself N times (argv[1], default 1000), each image passing the
 * counter on in argv, and the last one prints a single line.
 *
 * Why it is hard for a syscall interposer: whatever it does at each exec
 * (a report written for the old image, a launcher exec'd in between, state
 * set up again in the new image, memory or fds it keeps) happens N times in
 * one process: a leak of one fd, one mapping or a few KiB per exec, or a
 * growing environment or argv, adds up to a failure (EMFILE, E2BIG, ENOMEM)
 * or a slowdown long before N = 1000.  Each image also checks that the pid
 * is the one the first image had, that argv has exactly what the previous
 * image passed, that the environment did not grow (LD_PRELOAD and
 * USERTRAP_* aside: the library adds those), and that no fd beyond
 * those the first image was started with appeared.
 *
 * argv: exec_many [N [I PID ENVCOUNT FDCOUNT]]
 */
#include "common.h"

#include <dirent.h>

extern char **environ;

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own fd */
}

/* Entries, not counting LD_PRELOAD and USERTRAP_* (the library passes its
 * settings on at every exec, and may add one, such as a measured TSC rate). */
static int count_env(void)
{
    int n = 0;
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "LD_PRELOAD=", 11) != 0 && strncmp(*e, "USERTRAP_", 9) != 0)
            n++;
    return n;
}

int main(int argc, char **argv)
{
    long total = argc >= 2 ? atol(argv[1]) : 1000;
    REQUIRE(total >= 0 && total <= 100000, "N in 0..100000");
    long i = 0, pid0 = getpid();
    int env0 = count_env(), fds0 = count_fds();
    if (argc >= 6) {
        i = atol(argv[2]);
        pid0 = atol(argv[3]);
        env0 = atoi(argv[4]);
        fds0 = atoi(argv[5]);
        EXPECT_EQ("argc", argc, 6);
        EXPECT("argv[0] as passed", strcmp(argv[0], "exec_many") == 0);
        EXPECT_EQ("pid unchanged by exec", getpid(), pid0);
        EXPECT_EQ("environment size unchanged by exec", count_env(), env0);
        EXPECT_EQ("no new fd after exec", count_fds(), fds0);
    } else {
        EXPECT_EQ("started with N only", argc <= 2, 1);
    }
    if (t_failure_count() != 0) {
        say("at exec %ld of %ld\n", i, total);
        return finish();
    }
    if (i >= total) {
        say("exec_many: %ld execs done, pid, argv, environment and fds as at the start\n", total);
        return finish();
    }
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    REQUIRE(n > 0, "readlink /proc/self/exe");
    self[n] = 0;
    char a1[32], a2[32], a3[32], a4[32], a5[32];
    snprintf(a1, sizeof a1, "%ld", total);
    snprintf(a2, sizeof a2, "%ld", i + 1);
    snprintf(a3, sizeof a3, "%ld", pid0);
    snprintf(a4, sizeof a4, "%d", env0);
    snprintf(a5, sizeof a5, "%d", fds0);
    char *av[] = { "exec_many", a1, a2, a3, a4, a5, NULL };
    execve(self, av, environ);
    FAILF("execve number %ld: errno %d", i + 1, errno);
    return finish();
}
