// usertrap-test: exec
/*
 * Hard case: exec by file descriptor: execveat with a dirfd and a relative
 * path, execveat(fd, "", AT_EMPTY_PATH) with an O_RDONLY fd and with an
 * O_PATH fd, fexecve of a binary, and `#!` scripts exec'd by fd, where the
 * interpreter gets /dev/fd/N (or /dev/fd/N/NAME) as the script's path.
 *
 * Why it is hard for a syscall interposer: an interposer that follows exec
 * with a launcher of its own must resolve what the fd names (an O_PATH fd
 * cannot be read; a close-on-exec fd is gone once the launcher runs), must
 * give the target the path strings the kernel would have built
 * ("/dev/fd/50/execveat_fexecve", "/dev/fd/51") in AT_EXECFN and, for
 * scripts, in argv, and must keep a non-close-on-exec script fd open so
 * that the interpreter can open /dev/fd/N; it must close the close-on-exec
 * ones.  A dirfd is ignored for an absolute path.
 *
 * Stages (found in eaf.state in the cwd; each prints what it sees and execs
 * the next; fds get fixed numbers 50-55 so output is machine-independent):
 *   0  execveat(50: O_CLOEXEC dirfd of the binary's directory, its name)
 *   1  execveat(51: O_RDONLY fd of the binary, "", AT_EMPTY_PATH)
 *   2  execveat(52: O_PATH|O_CLOEXEC fd of the binary, "", AT_EMPTY_PATH)
 *   3  fexecve(53: O_RDONLY|O_CLOEXEC fd of the binary)
 *   4  fexecve(54: O_RDONLY fd of fscript.sh, `#!SELF from-script`)
 *   5  (the script's interpreter: reads /dev/fd/54) execveat(55: dirfd of
 *      the cwd, "fscript.sh")
 *   6  (reads /dev/fd/55/fscript.sh) execveat(AT_FDCWD, "fscript-link", a
 *      symlink to the script)
 *   7  execveat(55, absolute path of the binary): the dirfd is ignored
 *   8  done.
 * Each stage prints argv, whether /proc/self/exe is the binary, AT_EXECFN
 * and whether it is the string the kernel builds, /proc/self/cmdline, comm
 * and which of fds 50-55 are open.  Paths print as $SELF and $CWD.
 */
#include "common.h"

#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <sys/auxv.h>
#include <sys/stat.h>

extern char **environ;

#define STATE "eaf.state"

static struct {
    char self[PATH_MAX];
    char cwd[PATH_MAX];
    int next;
    char execfn[PATH_MAX];
} st;

static void subst(const char *in, char *out, size_t cap)
{
    t_subst_paths(in, st.self, st.cwd, out, cap);
}

static const char *S(const char *in)
{
    static char bufs[4][8192];
    static int i;
    char *b = bufs[i++ & 3];
    subst(in ? in : "(null)", b, sizeof bufs[0]);
    return b;
}

static void save_state(void)
{
    FILE *f = fopen(STATE ".tmp", "w");
    REQUIRE(f != NULL, "write " STATE);
    fprintf(f, "%s\n%s\n%d\n%s\n", st.self, st.cwd, st.next, st.execfn);
    REQUIRE(fclose(f) == 0, "close " STATE);
    REQUIRE(rename(STATE ".tmp", STATE) == 0, "rename " STATE);
}

static int load_state(void)
{
    FILE *f = fopen(STATE, "r");
    if (!f)
        return 0;
    char next[32];
    REQUIRE(fgets(st.self, sizeof st.self, f) && fgets(st.cwd, sizeof st.cwd, f) && fgets(next, sizeof next, f) &&
                fgets(st.execfn, sizeof st.execfn, f),
            "read " STATE);
    fclose(f);
    st.self[strcspn(st.self, "\n")] = 0;
    st.cwd[strcspn(st.cwd, "\n")] = 0;
    st.execfn[strcspn(st.execfn, "\n")] = 0;
    st.next = atoi(next);
    return 1;
}

static ssize_t read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
        if (got + 1 >= cap)
            break;
    }
    close(fd);
    buf[got] = 0;
    return (ssize_t)got;
}

/* open(path, flags) at exactly `want`. */
static void open_at_fd(const char *path, int flags, int want)
{
    int fd = open(path, flags & ~O_CLOEXEC);
    REQUIRE(fd >= 0, path);
    REQUIRE(dup3(fd, want, flags & O_CLOEXEC) == want, "dup3");
    REQUIRE(close(fd) == 0, "close");
}

static void observe(int stage, int argc, char **argv)
{
    say("== stage %d ==\n", stage);
    for (int i = 0; i < argc; i++)
        say("argv[%d]: \"%s\"\n", i, S(argv[i]));
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    say("/proc/self/exe is the binary: %s\n", strcmp(exe, st.self) == 0 ? "yes" : "no");
    EXPECT("/proc/self/exe is the binary", strcmp(exe, st.self) == 0);
    const char *execfn = (const char *)getauxval(AT_EXECFN);
    int same = execfn && strcmp(execfn, st.execfn) == 0;
    say("AT_EXECFN: \"%s\" (as the kernel builds it: %s)\n", S(execfn), same ? "yes" : "no");
    if (!same)
        FAILF("AT_EXECFN \"%s\", expected \"%s\"", S(execfn), S(st.execfn));
    static char buf[16384];
    ssize_t cl = read_file("/proc/self/cmdline", buf, sizeof buf);
    for (ssize_t i = 0; i < cl; i++)
        if (buf[i] == 0)
            buf[i] = '|';
    say("/proc/self/cmdline: \"%s\"\n", S(cl >= 0 ? buf : "(unreadable)"));
    char comm[64];
    ssize_t cn = read_file("/proc/self/comm", comm, sizeof comm);
    if (cn > 0 && comm[cn - 1] == '\n')
        comm[cn - 1] = 0;
    say("/proc/self/comm: \"%s\"\n", S(comm));
    char fds[128] = "";
    for (int fd = 50; fd <= 55; fd++) {
        size_t o = strlen(fds);
        snprintf(fds + o, sizeof fds - o, " %d:%s", fd, fcntl(fd, F_GETFD) >= 0 ? "open" : "closed");
    }
    say("fds:%s\n", fds);
}

/* The script's interpreter reads the script through the path it was given. */
static void read_script(int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[1], "from-script") != 0) {
        FAILF("not started as fscript.sh's interpreter");
        return;
    }
    char text[512];
    ssize_t r = read_file(argv[2], text, sizeof text);
    EXPECT("the interpreter can read the script through argv[2]", r > 0);
    if (r > 0) {
        text[strcspn(text, "\n")] = 0;
        say("script through \"%s\": first line \"%s\"\n", S(argv[2]), S(text));
    }
}

static void go(int next, const char *execfn)
{
    st.next = next;
    snprintf(st.execfn, sizeof st.execfn, "%s", execfn);
    save_state();
    if (t_failure_count() != 0) {
        unlink(STATE);
        exit(finish());
    }
}

__attribute__((noreturn)) static void failed(const char *what)
{
    FAILF("%s: errno %d", what, errno);
    unlink(STATE);
    exit(finish());
}

static long sys_execveat(int dirfd, const char *path, char *const argv[], char *const envp[], int flags)
{
    return syscall(SYS_execveat, dirfd, path, argv, envp, flags);
}

int main(int argc, char **argv)
{
    char *env[] = { "EAF=1", NULL };
    if (!load_state()) {
        say("== stage 0 ==\n");
        REQUIRE(readlink("/proc/self/exe", st.self, sizeof st.self - 1) > 0, "readlink /proc/self/exe");
        REQUIRE(getcwd(st.cwd, sizeof st.cwd) != NULL, "getcwd");
        for (int fd = 50; fd <= 55; fd++)
            REQUIRE(fcntl(fd, F_GETFD) < 0, "fds 50-55 free at start");
        char tmp[PATH_MAX], text[PATH_MAX + 32];
        snprintf(tmp, sizeof tmp, "%s", st.self);
        open_at_fd(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 50);
        snprintf(text, sizeof text, "#!%s from-script\n", st.self);
        unlink("fscript.sh");
        int fd = open("fscript.sh", O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0755);
        REQUIRE(fd >= 0, "create fscript.sh");
        t_write_all(fd, text, strlen(text));
        close(fd);
        unlink("fscript-link");
        REQUIRE(symlink("fscript.sh", "fscript-link") == 0, "symlink");
        snprintf(tmp, sizeof tmp, "%s", st.self);
        const char *base = basename(tmp);
        char execfn[PATH_MAX];
        snprintf(execfn, sizeof execfn, "/dev/fd/50/%s", base);
        go(1, execfn);
        char *av[] = { "eaf-1", "execveat(dirfd, name)", NULL };
        sys_execveat(50, base, av, env, 0);
        failed("execveat(dirfd, name)");
    }
    int stage = st.next;
    observe(stage, argc, argv);
    switch (stage) {
    case 1: {
        open_at_fd(st.self, O_RDONLY, 51);
        go(2, "/dev/fd/51");
        char *av[] = { "eaf-2", "execveat(O_RDONLY fd, \"\", AT_EMPTY_PATH)", NULL };
        sys_execveat(51, "", av, env, AT_EMPTY_PATH);
        failed("execveat(O_RDONLY fd, AT_EMPTY_PATH)");
    }
    case 2: {
        open_at_fd(st.self, O_PATH | O_CLOEXEC, 52);
        go(3, "/dev/fd/52");
        char *av[] = { "eaf-3", "execveat(O_PATH fd, \"\", AT_EMPTY_PATH)", NULL };
        sys_execveat(52, "", av, env, AT_EMPTY_PATH);
        failed("execveat(O_PATH fd, AT_EMPTY_PATH)");
    }
    case 3: {
        open_at_fd(st.self, O_RDONLY | O_CLOEXEC, 53);
        go(4, "/dev/fd/53");
        char *av[] = { "eaf-4", "fexecve(binary)", NULL };
        fexecve(53, av, env);
        failed("fexecve(binary)");
    }
    case 4: {
        open_at_fd("fscript.sh", O_RDONLY, 54);
        go(5, "/dev/fd/54");
        char *av[] = { "eaf-5", "fexecve(script)", NULL };
        fexecve(54, av, env);
        failed("fexecve(script)");
    }
    case 5: {
        read_script(argc, argv);
        open_at_fd(".", O_RDONLY | O_DIRECTORY, 55);
        go(6, "/dev/fd/55/fscript.sh");
        char *av[] = { "eaf-6", "execveat(dirfd, script)", NULL };
        sys_execveat(55, "fscript.sh", av, env, 0);
        failed("execveat(dirfd, script)");
    }
    case 6: {
        read_script(argc, argv);
        go(7, "fscript-link");
        char *av[] = { "eaf-7", "execveat(AT_FDCWD, symlink to script)", NULL };
        sys_execveat(AT_FDCWD, "fscript-link", av, env, 0);
        failed("execveat(AT_FDCWD, symlink)");
    }
    case 7: {
        read_script(argc, argv);
        go(8, st.self);
        char *av[] = { "eaf-8", "execveat(dirfd, absolute path)", NULL };
        sys_execveat(55, st.self, av, env, 0);
        failed("execveat(dirfd, absolute path)");
    }
    case 8:
        unlink(STATE);
        return finish();
    default:
        FAILF("unknown stage %d", stage);
        unlink(STATE);
        return finish();
    }
}
