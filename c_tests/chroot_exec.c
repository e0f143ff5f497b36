// usertrap-test: exec
/*
 * exec after the process changed what absolute paths resolve to: the
 * library runs every exec through usertrap-launcher, found by its absolute
 * path, and preloads itself by its absolute path; build chroots
 * (debootstrap, mock) and sandboxes (bubblewrap, unshare + mount) make
 * those paths lead elsewhere or nowhere, and natively their exec works.
 *
 * Modes:
 *   chroot_exec
 *       makes ./newroot holding a copy of static_hello (beside this
 *       program) and dev/null; a child mounts /proc there in a mount
 *       namespace of its own, chroots, refuses execveat with a seccomp
 *       filter and execs /static_hello (with execve); then it chroots into
 *       it, forks a child that execs /static_hello,
 *       then another that closes every descriptor from 3 up (close_range)
 *       and execs it, then closes them itself (a loop of close) and execs
 *       /static_hello (what c_programs.rs compares);
 *   chroot_exec chroot NEWROOT PROG ARGS...
 *       chroot(NEWROOT), then a child execs PROG, then this process does;
 *   chroot_exec vfork NEWROOT PROG ARGS...
 *       a vfork child chroots into NEWROOT and execs PROG (as a spawn
 *       helper of a build tool might); this process only waits;
 *   chroot_exec mountns DIR PROG ARGS...
 *       unshare(CLONE_NEWNS) here, then a forked child makes the namespace's
 *       mounts private and mounts a tmpfs over DIR (another process mounts,
 *       as `unshare -m sh -c 'mount ...; prog'` does), then a child execs
 *       PROG, then this process does.
 * Where chroot or unshare is refused (no privileges) it says so on stdout,
 * "refused: ...", and exits 0: the tests say they skipped.
 */
#include "common.h"

#include <libgen.h>
#include <sched.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

static void run_child(char **argv)
{
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        say("child: exec %s failed: %s\n", argv[0], strerror(errno));
        _exit(100);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st))
        say("child: exit %d\n", WEXITSTATUS(st));
    else
        say("child: killed by signal %d\n", WTERMSIG(st));
}

static int enter_root(const char *root);

static void run_child_closing(char **argv)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (syscall(SYS_close_range, 3, ~0U, 0) != 0)
            say("child: close_range failed: %s\n", strerror(errno));
        execv(argv[0], argv);
        say("child: exec %s after close_range failed: %s\n", argv[0], strerror(errno));
        _exit(100);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    say("child that closed all: exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

/* A child that mounts /proc in a mount namespace of its own, chroots into
 * ./newroot, installs a
 * seccomp filter refusing execveat (allowing execve, which it uses), and
 * execs: the library must not exec the kept launcher with execveat. */
static void run_child_filtered(char **argv)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0
            || mount("proc", "newroot/proc", "proc", 0, NULL) != 0) {
            say("filtered child: cannot mount /proc: %s\n", strerror(errno));
            _exit(0);
        }
        if (enter_root("newroot") != 0)
            _exit(2);
        struct sock_filter f[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_execveat, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = {sizeof f / sizeof f[0], f};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
            say("filtered child: seccomp failed: %s\n", strerror(errno));
        execv(argv[0], argv);
        say("filtered child: exec %s failed: %s\n", argv[0], strerror(errno));
        _exit(100);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    say("filtered child: exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

static int exec_self(char **argv)
{
    execv(argv[0], argv);
    say("exec %s failed: %s\n", argv[0], strerror(errno));
    return 3;
}

static int copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (in < 0 || out < 0)
        return -1;
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, n) != n)
            return -1;
    close(in);
    return close(out);
}

static int enter_root(const char *root)
{
    if (chroot(root) != 0) {
        if (errno == EPERM) {
            say("refused: chroot: EPERM\n");
            exit(0);
        }
        say("chroot failed: %s\n", strerror(errno));
        return -1;
    }
    return chdir("/");
}

static int mount_namespace(const char *dir)
{
    if (unshare(CLONE_NEWNS) != 0) {
        if (errno == EPERM) {
            say("refused: unshare(CLONE_NEWNS): EPERM\n");
            exit(0);
        }
        say("unshare failed: %s\n", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 || mount("hide", dir, "tmpfs", 0, "size=64k") != 0) {
            say("mount failed: %s\n", strerror(errno));
            _exit(1);
        }
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    struct stat s;
    say("mounted by another process: %d, %s is empty now: %d\n", WIFEXITED(st) && WEXITSTATUS(st) == 0, "DIR",
        stat(dir, &s) == 0 && s.st_nlink == 2);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "chroot") == 0) {
        if (enter_root(argv[2]) != 0)
            return 2;
        run_child(argv + 3);
        return exec_self(argv + 3);
    }
    if (argc >= 4 && strcmp(argv[1], "vfork") == 0) {
        pid_t pid = vfork();
        if (pid == 0) {
            if (chroot(argv[2]) != 0)
                _exit(errno == EPERM ? 99 : 98);
            execv(argv[3], argv + 3);
            _exit(100);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 99) {
            say("refused: chroot: EPERM\n");
            return 0;
        }
        say("vfork child: exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "mountns") == 0) {
        if (mount_namespace(argv[2]) != 0)
            return 2;
        run_child(argv + 3);
        return exec_self(argv + 3);
    }
    char dir[4096], from[4096];
    snprintf(dir, sizeof dir, "%s", argv[0]);
    snprintf(from, sizeof from, "%s/static_hello", dirname(dir));
    if (mkdir("newroot", 0755) != 0 || copy_file(from, "newroot/static_hello") != 0 || mkdir("newroot/dev", 0755) != 0
        || mkdir("newroot/proc", 0755) != 0) {
        say("cannot make newroot: %s\n", strerror(errno));
        return 2;
    }
    /* The harness's traced runs report to /dev/null: one in the new root
     * too (root only, as chroot is; the library says nothing then). */
    if (mknod("newroot/dev/null", S_IFCHR | 0666, makedev(1, 3)) != 0 && errno != EPERM) {
        say("cannot make newroot/dev/null: %s\n", strerror(errno));
        return 2;
    }
    char *filtered[] = {"/static_hello", "under", "a", "filter", "refusing", "execveat", NULL};
    run_child_filtered(filtered);
    if (enter_root("newroot") != 0)
        return 2;
    char *child[] = {"/static_hello", "in", "the", "child", NULL};
    run_child(child);
    /* Closing every descriptor after the change, before exec (Python's
     * subprocess does, as do daemons): a child with close_range, this
     * process with a loop of close (which natively says EBADF for every
     * number not open). */
    char *closing[] = {"/static_hello", "in", "a", "child", "that", "closed", "all", NULL};
    run_child_closing(closing);
    /* Files of the program's own on 1023 and 1024 (where the limit allows
     * them), where a process may count on finding its own. */
    char *dup_onto[] = {"/static_hello", "after", "dup2", "onto", "1023", "and", "1024", NULL};
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur > 1024) {
        if (dup2(1, 1023) != 1023 || dup2(1, 1024) != 1024)
            say("dup2 onto 1023, 1024 failed: %s\n", strerror(errno));
        run_child(dup_onto);
        close(1023);
        close(1024);
    }
    int top = getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < 65536 ? (int)lim.rlim_cur : 65536;
    for (int fd = 3; fd < top; fd++)
        close(fd);
    char *self[] = {"/static_hello", "replacing", "chroot_exec", NULL};
    return exec_self(self);
}
