// usertrap-test: exec
/*
 * Hard case: emulated calls made from patched sites, where the library runs
 * them on the fast path (no signal frame): arch_prctl, failing execve and
 * execveat, exit and exit_group.
 *
 * Why it is hard: the slow path does these inside its SIGSYS handler, where
 * signals that arrive wait for it and its signal stack is large.  On the
 * fast path signals arrive at any instruction, other threads keep running,
 * and a call that cannot be finished there (an exec that goes ahead) must
 * go back to the slow path exactly as it came.  Every call below is made
 * several times from the same site: the first traps and patches the site,
 * the others take the fast path.  Sites: seed-form asm functions (`mov
 * $nr,%eax; syscall`) and glibc's syscall(3) (a number from a register),
 * warmed up with getppid first.
 *
 * Sections (each prints its results or "ok"):
 *  - arch_prctl: ARCH_GET_FS, ARCH_SET_FS to another base and back (a
 *    round trip that touches no TLS in between), an unknown code (EINVAL),
 *    ARCH_GET_GS;
 *  - execve/execveat that fail, each printed with its errno: the ones
 *    decided before the file is opened (ENOENT, ENOTDIR, ELOOP,
 *    ENAMETOOLONG, EFAULT path, EBADF, EINVAL) and the ones decided after
 *    (EACCES, ENOEXEC, E2BIG, EFAULT argv), with a SIGALRM timer firing
 *    and a second thread blocked in read() throughout;
 *  - fork children that end through a patched site: exit_group with
 *    threads running and signals arriving; threads ending with exit and
 *    the main thread last; the main thread first and another thread last;
 *    each child's status printed;
 *  - last, a successful exec (of this program, which prints one line) from
 *    the seed-form site that failed before.
 */
#include "common.h"

#include <asm/prctl.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/time.h>

extern char **environ;

/* Seed-form sites: the whole call is `mov $nr,%eax; syscall; ret`. */
long site_execve(const char *path, char *const argv[], char *const envp[]);
long site_arch_prctl(long code, unsigned long addr);

__asm__(".text\n"
        ".p2align 4\n"
        ".type site_execve,@function\n"
        "site_execve:\n"
        ".cfi_startproc\n"
        "    mov $59, %eax\n"
        "    syscall\n"
        "    ret\n"
        ".cfi_endproc\n"
        ".size site_execve, .-site_execve\n"
        ".p2align 4\n"
        ".type site_arch_prctl,@function\n"
        "site_arch_prctl:\n"
        ".cfi_startproc\n"
        "    mov $158, %eax\n"
        "    syscall\n"
        "    ret\n"
        ".cfi_endproc\n"
        ".size site_arch_prctl, .-site_arch_prctl\n");

static volatile sig_atomic_t g_alarms;
static volatile sig_atomic_t g_usr1;

static void on_alarm(int sig)
{
    (void)sig;
    g_alarms++;
}

static void on_usr1(int sig)
{
    (void)sig;
    g_usr1++;
}

static const char *errname(long e)
{
    switch (e) {
    case 0: return "0";
    case ENOENT: return "ENOENT";
    case ENOTDIR: return "ENOTDIR";
    case EACCES: return "EACCES";
    case ENOEXEC: return "ENOEXEC";
    case EFAULT: return "EFAULT";
    case E2BIG: return "E2BIG";
    case ELOOP: return "ELOOP";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    default: return "other";
    }
}

static void put_file(const char *name, const char *text, mode_t mode)
{
    unlink(name);
    int fd = open(name, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0, name);
    REQUIRE(write(fd, text, strlen(text)) == (ssize_t)strlen(text), name);
    REQUIRE(close(fd) == 0, name);
    REQUIRE(chmod(name, mode) == 0, name);
}

/* Three attempts through each site; one line with every errno seen. */
static void exec_fails(const char *what, const char *path, char *const argv[], char *const envp[])
{
    char line[256];
    int n = snprintf(line, sizeof line, "%s:", what);
    for (int i = 0; i < 3; i++) {
        long r = site_execve(path, argv, envp);
        errno = 0;
        long s = syscall(SYS_execve, path, argv, envp);
        int e = errno;
        n += snprintf(line + n, sizeof line - (size_t)n, " %s/%s", errname(-r), s == -1 ? errname(e) : "returned");
    }
    say("%s\n", line);
}

static void execveat_fails(const char *what, int dirfd, const char *path, char *const argv[], int flags)
{
    char line[256];
    int n = snprintf(line, sizeof line, "%s:", what);
    for (int i = 0; i < 3; i++) {
        errno = 0;
        long s = syscall(SYS_execveat, dirfd, path, argv, environ, flags);
        int e = errno;
        n += snprintf(line + n, sizeof line - (size_t)n, " %s", s == -1 ? errname(e) : "returned");
    }
    say("%s\n", line);
}

static int g_pipe[2];

static void *blocked_reader(void *arg)
{
    (void)arg;
    char c;
    ssize_t r;
    while ((r = read(g_pipe[0], &c, 1)) < 0 && errno == EINTR)
        ;
    return (void *)(long)r;
}

static void arch_prctl_round_trip(void)
{
    int start = section_begin();
    for (int i = 0; i < 3; i++) {
        unsigned long fs = 0, moved = 0, back = 0, gs = 1;
        EXPECT_EQ("ARCH_GET_FS", site_arch_prctl(ARCH_GET_FS, (unsigned long)&fs), 0);
        EXPECT("the FS base is the thread's", fs == (unsigned long)pthread_self());
        /* No TLS is touched until the base is back. */
        long set = site_arch_prctl(ARCH_SET_FS, fs + 64);
        long got = site_arch_prctl(ARCH_GET_FS, (unsigned long)&moved);
        long reset = site_arch_prctl(ARCH_SET_FS, fs);
        EXPECT_EQ("ARCH_SET_FS", set, 0);
        EXPECT_EQ("ARCH_GET_FS after ARCH_SET_FS", got, 0);
        EXPECT_EQ("ARCH_SET_FS back", reset, 0);
        EXPECT("the base read back is the one set", moved == fs + 64);
        EXPECT_EQ("ARCH_GET_FS via syscall(3)", syscall(SYS_arch_prctl, ARCH_GET_FS, &back), 0);
        EXPECT("the base is back", back == fs);
        errno = 0;
        EXPECT_EQ("errno (TLS) works", errno, 0);
        EXPECT_EQ("an unknown code", site_arch_prctl(0x7777, 0), -EINVAL);
        EXPECT_EQ("ARCH_GET_GS", site_arch_prctl(ARCH_GET_GS, (unsigned long)&gs), 0);
        EXPECT_EQ("the GS base", gs, 0);
    }
    section_end(start, "arch_prctl round trip");
}

static void exec_failures(const char *self)
{
    put_file("plain.txt", "not a program\n", 0644);
    put_file("garbage", "not a program either\n", 0755);
    unlink("loop");
    REQUIRE(symlink("loop", "loop") == 0, "symlink");
    static char long_name[5000];
    memset(long_name, 'a', sizeof long_name - 1);
    char *big = malloc(200 * 1024);
    REQUIRE(big != NULL, "malloc");
    memset(big, 'x', 200 * 1024 - 1);
    big[200 * 1024 - 1] = 0;

    char *argv[] = { (char *)"prog", NULL };
    char *big_argv[] = { (char *)"prog", big, NULL };
    char *bad_argv[] = { (char *)"prog", (char *)8, NULL };

    exec_fails("missing file", "./no-such-file", argv, environ);
    exec_fails("missing directory", "/no-such-dir/prog", argv, environ);
    exec_fails("through a file", "./plain.txt/prog", argv, environ);
    exec_fails("symlink loop", "./loop", argv, environ);
    exec_fails("name too long", long_name, argv, environ);
    exec_fails("bad path pointer", (const char *)8, argv, environ);
    exec_fails("a directory", ".", argv, environ);
    exec_fails("not executable", "./plain.txt", argv, environ);
    exec_fails("not a format", "./garbage", argv, environ);
    exec_fails("argument too long", self, big_argv, environ);
    exec_fails("bad argv", self, bad_argv, environ);
    execveat_fails("execveat closed dirfd", 999, "prog", argv, 0);
    execveat_fails("execveat unknown flag", AT_FDCWD, self, argv, 0x4);
    execveat_fails("execveat missing", AT_FDCWD, "./no-such-file", argv, 0);
    execveat_fails("execveat nofollow on a symlink", AT_FDCWD, "./loop", argv, AT_SYMLINK_NOFOLLOW);
    free(big);
}

/* Child A: exit_group from a patched site with threads running and
 * signals arriving. */
static void *spinner(void *arg)
{
    (void)arg;
    for (;;) {
        syscall(SYS_getppid);
        kill(getpid(), SIGUSR1);
    }
    return NULL;
}

static void child_exit_group(void)
{
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        if (pthread_create(&t[i], NULL, spinner, NULL) != 0)
            syscall(SYS_exit_group, 3);
    while (g_usr1 < 100)
        syscall(SYS_getppid);
    syscall(SYS_exit_group, 42);
    _exit(4);
}

/* Child B: threads end with exit from a patched site, the main thread last. */
static void *exits(void *arg)
{
    for (int i = 0; i < 1000; i++)
        syscall(SYS_getppid);
    syscall(SYS_exit, (long)arg);
    return NULL;
}

static void child_threads_then_main(void)
{
    pthread_t t[4];
    for (long i = 0; i < 4; i++)
        if (pthread_create(&t[i], NULL, exits, (void *)i) != 0)
            syscall(SYS_exit_group, 3);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    syscall(SYS_exit, 9);
    _exit(4);
}

/* Child C: the main thread ends first, another thread last (it waits for
 * the main thread to be a zombie: the status is the last thread's). */
static int main_thread_gone(void)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)getpid());
    char state = t_proc_state(path);
    return state == 0 || state == 'Z' || state == 'X';
}

static void *last_one(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++)
        syscall(SYS_getppid);
    for (int i = 0; i < 5000 && !main_thread_gone(); i++)
        sleep_ms(1);
    say("child C: the last thread ends\n");
    syscall(SYS_exit, 7);
    return NULL;
}

static void child_main_then_thread(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, last_one, NULL) != 0)
        syscall(SYS_exit_group, 3);
    syscall(SYS_exit, 0);
    _exit(4);
}

static void run_child(const char *name, void (*body)(void))
{
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0)
        body();
    int st = wait_status(pid);
    if (WIFEXITED(st))
        say("%s: exit %d\n", name, WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        say("%s: signal %d\n", name, WTERMSIG(st));
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--exec-ok") == 0) {
        say("exec after failed attempts: ok\n");
        return 0;
    }
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    REQUIRE(n > 0, "readlink /proc/self/exe");
    self[n] = 0;

    /* syscall(3)'s site patched first. */
    for (int i = 0; i < 5; i++)
        EXPECT_EQ("syscall(SYS_getppid)", syscall(SYS_getppid), getppid());

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_alarm;
    REQUIRE(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction SIGALRM");
    sa.sa_handler = on_usr1;
    REQUIRE(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction SIGUSR1");

    arch_prctl_round_trip();

    REQUIRE(pipe(g_pipe) == 0, "pipe");
    pthread_t reader;
    REQUIRE(pthread_create(&reader, NULL, blocked_reader, NULL) == 0, "pthread_create");
    struct itimerval every = { { 0, 300 }, { 0, 300 } }, off = { { 0, 0 }, { 0, 0 } };
    REQUIRE(setitimer(ITIMER_REAL, &every, NULL) == 0, "setitimer");
    exec_failures(self);
    REQUIRE(setitimer(ITIMER_REAL, &off, NULL) == 0, "setitimer off");
    EXPECT("the reader is still blocked", pthread_tryjoin_np(reader, NULL) == EBUSY);
    REQUIRE(write(g_pipe[1], "x", 1) == 1, "write");
    void *got = NULL;
    EXPECT_EQ("pthread_join", pthread_join(reader, &got), 0);
    EXPECT_EQ("the reader read its byte", (long)got, 1);
    struct sigaction now;
    EXPECT_EQ("sigaction query", sigaction(SIGALRM, NULL, &now), 0);
    EXPECT("the SIGALRM handler is still installed", now.sa_handler == on_alarm);

    run_child("child A (exit_group, threads and signals)", child_exit_group);
    run_child("child B (threads exit, main last)", child_threads_then_main);
    run_child("child C (main exits first)", child_main_then_thread);

    if (t_failure_count() != 0)
        return finish();
    say("before the exec: all ok\n");
    char *again[] = { self, (char *)"--exec-ok", NULL };
    long r = site_execve(self, again, environ);
    FAILF("the exec returned %ld", r);
    return finish();
}
