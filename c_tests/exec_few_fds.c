// usertrap-test: exec
/*
 * Hard case: exec with almost no free file descriptors.
 *
 * Why it is hard for a syscall interposer: a native execve needs no
 * descriptor of the caller's (the kernel opens the program and its
 * interpreter internally). An interposer that checks the file itself, or
 * loads the program from user space, opens it, and its interpreter, with
 * descriptors of the process: with RLIMIT_NOFILE reached it fails with
 * EMFILE where the kernel would not.
 *
 * What it does: for 2, 1 and 0 free descriptors (every other slot below a
 * soft limit of 32 filled with /dev/null), a child execs
 *  - this program again (a dynamic one: the loader opens libc, which
 *    needs one slot) with the fillers close-on-exec,
 *  - static_getppid_loop (beside it: no loader, needs no descriptor) with the
 *    fillers inherited, the new image as full as the old;
 *  - this program again with the fillers inherited: with none free the
 *    kernel still starts the loader, which fails to open libc (exit 127, its
 *    message on stderr, which the parent reads through a pipe and sums up:
 *    an interposer that loads the interpreter with a descriptor of the
 *    process must not fail before the loader runs);
 * and prints how each exec ended.
 */
#include "common.h"

#include <fcntl.h>
#include <libgen.h>
#include <sys/resource.h>
#include <sys/wait.h>

#define LIMIT 32

/* Fill every slot below LIMIT, then free `free_slots` of them. */
static void fill(int free_slots, int cloexec)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_max < LIMIT)
        _exit(90);
    rl.rlim_cur = LIMIT;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        _exit(91);
    int last[8], n = 0;
    for (;;) {
        int fd = open("/dev/null", O_RDONLY | (cloexec ? O_CLOEXEC : 0));
        if (fd < 0)
            break;
        last[n++ % 8] = fd;
    }
    for (int i = 0; i < free_slots; i++)
        close(last[(n - 1 - i) % 8]);
}

static void run(const char *what, int free_slots, int cloexec, char *const argv[])
{
    /* The child's stderr, when the loader may complain there. */
    int err[2] = {-1, -1};
    if (!cloexec && argv[1] && strcmp(argv[1], "child") == 0 && pipe(err) != 0)
        _exit(92);
    pid_t pid = fork();
    if (pid == 0) {
        if (err[1] >= 0) {
            dup2(err[1], 2);
            close(err[0]);
            close(err[1]);
        }
        fill(free_slots, cloexec);
        execv(argv[0], argv);
        int e = errno;
        say("%s, %d free: exec failed: %s\n", what, free_slots, strerror(e));
        _exit(100);
    }
    if (err[1] >= 0) {
        close(err[1]);
        char buf[8192];
        size_t len = 0;
        ssize_t n;
        while (len < sizeof buf - 1 && (n = read(err[0], buf + len, sizeof buf - 1 - len)) > 0)
            len += (size_t)n;
        buf[len] = 0;
        close(err[0]);
        say("%s, %d free: the loader %s libc\n", what, free_slots,
            strstr(buf, "libc.so.6") ? "could not open" : "said nothing of");
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st))
        say("%s, %d free: exit %d\n", what, free_slots, WEXITSTATUS(st));
    else
        say("%s, %d free: killed by signal %d\n", what, free_slots, WTERMSIG(st));
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        say("child runs\n");
        return 7;
    }
    char self[4096], stat_path[4096];
    snprintf(self, sizeof self, "%s", argv[0]);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", argv[0]);
    snprintf(stat_path, sizeof stat_path, "%s/static_getppid_loop", dirname(dir));
    for (int free_slots = 2; free_slots >= 0; free_slots--) {
        char *dyn[] = {self, "child", NULL};
        run("dynamic, fillers close-on-exec", free_slots, 1, dyn);
        char *st[] = {stat_path, "few-fds", NULL};
        run("static, fillers inherited", free_slots, 0, st);
        run("dynamic, fillers inherited", free_slots, 0, dyn);
    }
    return finish();
}
