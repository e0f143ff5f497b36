// usertrap-test: exec
/*
 * Hard case: exec with a small RLIMIT_STACK (64 KiB, `ulimit -s 64`).
 *
 * Why it is hard for a syscall interposer: the kernel puts the new image's
 * initial stack at the top of a stack that may grow to RLIMIT_STACK, and
 * the program (its loader first) has all of it. An interposer that loads
 * the program from user space (a launcher) and runs on that same stack
 * leaves the program only what is left below its own frames: the loader
 * dies of SIGSEGV.
 *
 * What it does: with RLIMIT_STACK at 64 KiB, children exec this program
 * again (dynamic: the loader runs first) and static_hello (beside it), and
 * the re-exec'd image uses 32 KiB of its stack; each child's end is printed.
 */
#include "common.h"

#include <libgen.h>
#include <sys/resource.h>
#include <sys/wait.h>

static int deep(int n)
{
    volatile char page[1024];
    page[0] = (char)n;
    if (n == 0)
        return page[0];
    return deep(n - 1) + page[0];
}

static void run(const char *what, char *const argv[])
{
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit rl;
        getrlimit(RLIMIT_STACK, &rl);
        rl.rlim_cur = 64 * 1024;
        if (setrlimit(RLIMIT_STACK, &rl) != 0)
            _exit(90);
        execv(argv[0], argv);
        say("%s: exec failed: %s\n", what, strerror(errno));
        _exit(100);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st))
        say("%s: exit %d\n", what, WEXITSTATUS(st));
    else
        say("%s: killed by signal %d\n", what, WTERMSIG(st));
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        say("child runs, 32 KiB of stack: %d\n", deep(32) >= 0);
        return 7;
    }
    char self[4096], dir[4096], stat_path[4096];
    snprintf(self, sizeof self, "%s", argv[0]);
    snprintf(dir, sizeof dir, "%s", argv[0]);
    snprintf(stat_path, sizeof stat_path, "%s/static_hello", dirname(dir));
    char *dyn[] = {self, "child", NULL};
    run("dynamic", dyn);
    char *st[] = {stat_path, "small-stack", NULL};
    run("static", st);
    return finish();
}
