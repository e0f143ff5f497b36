// usertrap-test: exec
/*
 * Hard case: posix_spawn, system() and popen() with scrubbed environments,
 * file actions and signal attributes.
 *
 * Why it is hard for a syscall interposer: glibc's posix_spawn blocks every
 * signal (SIGSYS included) around a clone(CLONE_VM|CLONE_VFORK) whose child
 * runs on a separate small stack, applies file actions and signal settings,
 * and execs; an exec'd program inherits a seccomp filter but neither signal
 * handlers nor (here) LD_PRELOAD, because the app passes its own envp.  The
 * interposer must keep SIGSYS deliverable through the full mask, keep the
 * child's file actions and signal attributes exactly as requested, and must
 * not leave an exec'd image that its inherited filter kills.
 *
 * What it checks:
 *  - posix_spawn /bin/sh -c 'echo spawned $0 FOO=$FOO' with envp
 *    {PATH=/usr/bin:/bin, FOO=bar} (no LD_PRELOAD), stdout dup2'd onto a
 *    pipe (output read back and compared), plus addclose and addopen of a
 *    file in cwd used as the child's stdout.
 *  - POSIX_SPAWN_SETSIGMASK + POSIX_SPAWN_SETSIGDEF: this program re-spawns
 *    itself with argument "sigcheck"; that child checks its inherited mask,
 *    default/ignored dispositions and environment, and prints its verdict.
 *  - posix_spawnp via PATH, spawning a missing program (ENOENT), an exit
 *    status and a death by signal, system() and popen().
 */
#include "common.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

extern char **environ;


static ssize_t read_all(int fd, char *buf, size_t cap)
{
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
    buf[got] = 0;
    return (ssize_t)got;
}

/* ---------------------------------------------------- child checker ---- */

static int sigcheck_main(void)
{
    int bad = 0;
    sigset_t cur;
    sigprocmask(SIG_SETMASK, NULL, &cur);
    if (sigismember(&cur, SIGUSR1) != 1 || sigismember(&cur, SIGWINCH) != 1 ||
        sigismember(&cur, SIGSYS) != 1) {
        say("sigcheck: FAIL: mask lacks SIGUSR1/SIGWINCH/SIGSYS\n");
        bad = 1;
    }
    if (sigismember(&cur, SIGUSR2) != 0 || sigismember(&cur, SIGTERM) != 0) {
        say("sigcheck: FAIL: unexpected signals blocked\n");
        bad = 1;
    }
    struct sigaction sa;
    sigaction(SIGUSR2, NULL, &sa);
    if (sa.sa_handler != SIG_DFL) {
        say("sigcheck: FAIL: SIGUSR2 not reset to default\n");
        bad = 1;
    }
    sigaction(SIGPIPE, NULL, &sa);
    if (sa.sa_handler != SIG_IGN) {
        say("sigcheck: FAIL: SIGPIPE no longer ignored\n");
        bad = 1;
    }
    const char *foo = getenv("FOO");
    if (foo == NULL || strcmp(foo, "bar") != 0) {
        say("sigcheck: FAIL: FOO missing from environment\n");
        bad = 1;
    }
    const char *path = getenv("PATH");
    if (path == NULL || strcmp(path, "/usr/bin:/bin") != 0) {
        say("sigcheck: FAIL: PATH not as passed\n");
        bad = 1;
    }
    /* a few syscalls of our own */
    int fd = open("/dev/null", O_WRONLY);
    if (fd < 0 || write(fd, "x", 1) != 1) {
        say("sigcheck: FAIL: /dev/null\n");
        bad = 1;
    }
    say("sigcheck: child verdict %s\n", bad ? "bad" : "good");
    return bad ? 1 : 0;
}

/* ------------------------------------------------------------ tests ---- */

static char *g_envp[] = { "PATH=/usr/bin:/bin", "FOO=bar", NULL };

static void test_sh_pipe(void)
{
    int s = section_begin();
    int p[2];
    REQUIRE(pipe(p) == 0, "pipe");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    posix_spawn_file_actions_addclose(&fa, p[1]);
    char *argv[] = { "sh", "-c", "echo spawned $0 FOO=$FOO", "arg-zero", NULL };
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, g_envp);
    EXPECT_EQ("posix_spawn /bin/sh", rc, 0);
    close(p[1]);
    char buf[256];
    read_all(p[0], buf, sizeof buf);
    close(p[0]);
    if (rc == 0) {
        int st = wait_status(pid);
        EXPECT("sh exited", WIFEXITED(st));
        EXPECT_EQ("sh status", WEXITSTATUS(st), 0);
    }
    if (strcmp(buf, "spawned arg-zero FOO=bar\n") != 0)
        FAILF("sh output through the pipe: '%s'", buf);
    posix_spawn_file_actions_destroy(&fa);
    section_end(s, "posix_spawn sh with custom envp, stdout dup2'd to a pipe");
}

static void test_sh_file(void)
{
    int s = section_begin();
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addclose(&fa, 1);
    posix_spawn_file_actions_addopen(&fa, 1, "spawn_output.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char *argv[] = { "sh", "-c", "echo spawned $0 into a file; exit 4", "sh-file", NULL };
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, g_envp);
    EXPECT_EQ("posix_spawn", rc, 0);
    if (rc == 0) {
        int st = wait_status(pid);
        EXPECT("exited", WIFEXITED(st));
        EXPECT_EQ("status", WEXITSTATUS(st), 4);
    }
    char buf[256];
    int fd = open("spawn_output.txt", O_RDONLY);
    EXPECT("output file exists", fd >= 0);
    if (fd >= 0) {
        read_all(fd, buf, sizeof buf);
        close(fd);
        if (strcmp(buf, "spawned sh-file into a file\n") != 0)
            FAILF("file content '%s'", buf);
    }
    posix_spawn_file_actions_destroy(&fa);
    section_end(s, "posix_spawn with addclose+addopen of a file in cwd, exit status 4");
}

static void test_sigattrs(const char *self)
{
    int s = section_begin();
    /* parent state: SIGUSR2 ignored (child must get SIG_DFL via SETSIGDEF),
     * SIGPIPE ignored (stays ignored across exec). */
    signal(SIGUSR2, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    sigset_t mask, def;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    sigaddset(&mask, SIGWINCH);
    sigaddset(&mask, SIGSYS);
    sigemptyset(&def);
    sigaddset(&def, SIGUSR2);
    posix_spawnattr_setsigmask(&at, &mask);
    posix_spawnattr_setsigdefault(&at, &def);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char *argv[] = { "posix_spawn", "sigcheck", NULL };
    pid_t pid;
    int rc = posix_spawn(&pid, self, NULL, &at, argv, g_envp);
    EXPECT_EQ("posix_spawn self", rc, 0);
    if (rc == 0) {
        int st = wait_status(pid);
        EXPECT("checker exited", WIFEXITED(st));
        EXPECT_EQ("checker status", WEXITSTATUS(st), 0);
    }
    posix_spawnattr_destroy(&at);
    signal(SIGUSR2, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    /* our own mask is untouched by the spawn */
    sigset_t cur;
    sigprocmask(SIG_SETMASK, NULL, &cur);
    sigemptyset(&mask);
    EXPECT_SIGSET("parent mask after spawn", &cur, &mask);
    section_end(s, "posix_spawnattr SETSIGMASK (with SIGSYS) + SETSIGDEF, checked by the child");
}

static void test_misc(void)
{
    int s = section_begin();
    pid_t pid;
    char *argv_true[] = { "true", NULL };
    EXPECT_EQ("posix_spawnp true", posix_spawnp(&pid, "true", NULL, NULL, argv_true, g_envp), 0);
    int st = wait_status(pid);
    EXPECT_EQ("true status", st, 0);

    char *argv_missing[] = { "missing", NULL };
    int rc = posix_spawn(&pid, "/nonexistent/usertrap-missing", NULL, NULL, argv_missing, g_envp);
    EXPECT_EQ("posix_spawn missing file", rc, ENOENT);

    char *argv_kill[] = { "sh", "-c", "kill -TERM $$", NULL };
    EXPECT_EQ("posix_spawn sh kill", posix_spawn(&pid, "/bin/sh", NULL, NULL, argv_kill, g_envp), 0);
    st = wait_status(pid);
    EXPECT("killed", WIFSIGNALED(st));
    EXPECT_EQ("signal", WTERMSIG(st), SIGTERM);

    /* spawn with the inherited environment too */
    char *argv_env[] = { "sh", "-c", "exit 7", NULL };
    EXPECT_EQ("posix_spawn environ", posix_spawn(&pid, "/bin/sh", NULL, NULL, argv_env, environ), 0);
    st = wait_status(pid);
    EXPECT_EQ("status 7", WIFEXITED(st) ? WEXITSTATUS(st) : -1, 7);
    section_end(s, "posix_spawnp, ENOENT, death by signal, inherited environ");

    s = section_begin();
    st = system("echo system-line from /bin/sh; exit 3");
    EXPECT("system exited", st != -1 && WIFEXITED(st));
    EXPECT_EQ("system status", WEXITSTATUS(st), 3);

    FILE *f = popen("echo popen-line; echo second", "r");
    EXPECT("popen", f != NULL);
    if (f) {
        char buf[128];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        if (strcmp(buf, "popen-line\nsecond\n") != 0)
            FAILF("popen output '%s'", buf);
        st = pclose(f);
        EXPECT_EQ("pclose status", st, 0);
    }
    f = popen("cat > popen_written.txt", "w");
    EXPECT("popen w", f != NULL);
    if (f) {
        fputs("written through popen\n", f);
        EXPECT_EQ("pclose w", pclose(f), 0);
    }
    section_end(s, "system() and popen()");
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "sigcheck") == 0)
        return sigcheck_main();

    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    REQUIRE(n > 0, "readlink /proc/self/exe");
    self[n] = 0;

    test_sh_pipe();
    test_sh_file();
    test_sigattrs(self);
    test_misc();
    return finish();
}
