// usertrap-test: exec
/*
 * Hard case: execve and execveat calls that FAIL, each with the errno the
 * kernel gives natively, the process going on afterwards.
 *
 * Why it is hard for a syscall interposer: an interposer that follows exec
 * by running something else (a launcher that loads the real target) must
 * find out before its own execve whether the program's execve would fail,
 * and fail it the same way: once it has exec'd its launcher, the calling
 * image is gone and there is nobody left to return the error to.  It also
 * must not tear anything down (other threads, its own state, the report)
 * before it knows the exec succeeds.  Every case below is a failure the
 * kernel detects before its point of no return; the program prints the
 * errno's name and must still be alive to print the next line.
 *
 * Cases (each prints "<case>: <ERRNO NAME>"):
 *  - path errors: missing file (ENOENT), directory (EACCES), a path through
 *    a regular file (ENOTDIR), a path of 5000 bytes (ENAMETOOLONG), NULL or
 *    bad pointers for the path, argv, an argv string, envp (EFAULT);
 *  - permission and format: a file without any exec bit (EACCES, even for
 *    root), an executable text file that is neither ELF nor `#!` (ENOEXEC),
 *    an empty executable file (ENOEXEC), an ELF header for another
 *    architecture (ENOEXEC), a file open for writing (ETXTBSY);
 *  - scripts: missing interpreter (ENOENT), an interpreter that is a
 *    directory (EACCES), a `#!` line longer than the kernel's buffer with no
 *    newline in it (ENOEXEC), a chain of scripts each the interpreter of the
 *    previous one, deeper than the kernel allows (ELOOP), the same with the
 *    last interpreter missing (ENOENT: opened before the depth is judged),
 *    `#!` alone or followed by a NUL (an empty interpreter: EACCES), `#!`
 *    with blanks only (ENOEXEC);
 *  - sizes: one argument of 200 KiB and one environment string of 200 KiB
 *    (longer than MAX_ARG_STRLEN, E2BIG); 8 MiB of arguments in all (more
 *    than the stack limit allows, E2BIG);
 *  - execveat: AT_SYMLINK_NOFOLLOW on a symlink (ELOOP), an unknown flag
 *    (EINVAL), a closed dirfd with a relative path (EBADF), AT_EMPTY_PATH on
 *    a directory fd (EACCES), fexecve of a `#!` script through an O_CLOEXEC
 *    fd (ENOENT: the interpreter could not open /dev/fd/N), a script by a
 *    relative path under an O_CLOEXEC dirfd (ENOENT likewise), fexecve of
 *    a `#!` line without interpreter that way (ENOEXEC: the line is read
 *    first);
 * all from a process with a second thread blocked in read(), which must
 * still be there at the end (a failed exec kills no thread), and with a
 * SIGUSR1 handler that must still be installed.
 * Files the program needs are created in its cwd (a scratch directory).
 */
#include "common.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

extern char **environ;

static char g_self[4096];

static void put_file(const char *name, const void *data, size_t len, mode_t mode)
{
    unlink(name);
    int fd = open(name, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0, name);
    t_write_all(fd, data, len);
    REQUIRE(close(fd) == 0, "close");
    REQUIRE(chmod(name, mode) == 0, "chmod");
}

static void put_text(const char *name, const char *text, mode_t mode)
{
    put_file(name, text, strlen(text), mode);
}

/* Print "<what>: <errno name>" for a call that returned -1. */
static void show(const char *what, int r, int err)
{
    if (r != -1) {
        FAILF("%s: returned %d instead of failing", what, r);
        return;
    }
    const char *name = strerrorname_np(err);
    say("%s: %s\n", what, name ? name : "(unknown errno)");
}

#define TRY_EXECVE(what, path, argv, envp)                                     \
    do {                                                                       \
        errno = 0;                                                             \
        int r_ = execve((path), (argv), (envp));                               \
        show((what), r_, errno);                                               \
    } while (0)

static long sys_execveat(int dirfd, const char *path, char *const argv[], char *const envp[], int flags)
{
    return syscall(SYS_execveat, dirfd, path, argv, envp, flags);
}

#define TRY_EXECVEAT(what, dirfd, path, argv, envp, flags)                     \
    do {                                                                       \
        errno = 0;                                                             \
        int r_ = (int)sys_execveat((dirfd), (path), (argv), (envp), (flags));  \
        show((what), r_, errno);                                               \
    } while (0)

static int g_pipe[2];
static char g_thread_got;

static void *reader(void *unused)
{
    (void)unused;
    char c = 0;
    ssize_t r;
    while ((r = read(g_pipe[0], &c, 1)) < 0 && errno == EINTR)
        ;
    if (r == 1)
        g_thread_got = c;
    return NULL;
}

static void on_usr1(int sig)
{
    (void)sig;
}

/* A 64-byte ELF header for AArch64 (e_machine 183), otherwise plausible. */
static void put_foreign_elf(const char *name)
{
    unsigned char h[64];
    memset(h, 0, sizeof h);
    memcpy(h, "\177ELF", 4);
    h[4] = 2; /* ELFCLASS64 */
    h[5] = 1; /* little endian */
    h[6] = 1; /* EV_CURRENT */
    h[16] = 2; /* ET_EXEC */
    h[18] = 183; /* EM_AARCH64 */
    h[20] = 1; /* e_version */
    h[32] = 64; /* e_phoff */
    h[52] = 64; /* e_ehsize */
    h[54] = 56; /* e_phentsize */
    h[56] = 0; /* e_phnum */
    put_file(name, h, sizeof h, 0755);
}

int main(void)
{
    ssize_t n = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
    REQUIRE(n > 0, "readlink /proc/self/exe");
    g_self[n] = 0;
    char *argv_true[] = { "true", NULL };
    char *envp_small[] = { "A=1", NULL };

    /* State that a failed exec must leave alone. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    REQUIRE(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
    REQUIRE(pipe(g_pipe) == 0, "pipe");
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, reader, NULL) == 0, "pthread_create");

    /* Files. */
    REQUIRE(mkdir("adir", 0755) == 0 || errno == EEXIST, "mkdir adir");
    put_text("noexec.sh", "#!/bin/sh\necho should not run\n", 0644);
    put_text("text.bin", "this is neither ELF nor a script\n", 0755);
    put_text("empty.bin", "", 0755);
    put_foreign_elf("aarch64.elf");
    put_text("badinterp.sh", "#!/nonexistent/interpreter -x\necho should not run\n", 0755);
    put_text("dirinterp.sh", "#!./adir\necho should not run\n", 0755);
    {
        char longline[400];
        memcpy(longline, "#!/", 3);
        memset(longline + 3, 'a', sizeof longline - 3);
        put_file("longline.sh", longline, sizeof longline, 0755);
    }
    /* nest0.sh's interpreter is nest1.sh, ... nest7.sh's is /bin/sh. */
    for (int i = 0; i < 8; i++) {
        char name[32], text[64];
        snprintf(name, sizeof name, "nest%d.sh", i);
        if (i < 7)
            snprintf(text, sizeof text, "#!./nest%d.sh\n", i + 1);
        else
            snprintf(text, sizeof text, "#!/bin/sh\necho should not run\n");
        put_text(name, text, 0755);
    }
    /* deep0.sh's interpreter is deep1.sh, ... deep5.sh's is missing: the
     * kernel opens (and fails to open) the sixth interpreter before it
     * would give up with ELOOP. */
    for (int i = 0; i < 6; i++) {
        char name[32], text[64];
        snprintf(name, sizeof name, "deep%d.sh", i);
        if (i < 5)
            snprintf(text, sizeof text, "#!./deep%d.sh\n", i + 1);
        else
            snprintf(text, sizeof text, "#!./no-such-interpreter\n");
        put_text(name, text, 0755);
    }
    put_file("bang.sh", "#!", 2, 0755);
    put_file("bangnul.sh", "#!\0/bin/sh\n", 11, 0755);
    put_text("bangblank.sh", "#!  \t\n", 0755);
    put_text("script.sh", "#!/bin/sh\necho should not run\n", 0755);
    unlink("link-to-self");
    REQUIRE(symlink(g_self, "link-to-self") == 0, "symlink");

    int s = section_begin();

    say("-- path errors\n");
    TRY_EXECVE("missing file", "./does-not-exist", argv_true, environ);
    TRY_EXECVE("missing file by absolute path", "/nonexistent-dir/prog", argv_true, environ);
    TRY_EXECVE("directory", "./adir", argv_true, environ);
    TRY_EXECVE("path through a regular file", "./text.bin/x", argv_true, environ);
    {
        static char longpath[5000];
        memset(longpath, 'x', sizeof longpath - 1);
        longpath[sizeof longpath - 1] = 0;
        TRY_EXECVE("path of 5000 bytes", longpath, argv_true, environ);
    }
    {
        /* Through volatile pointers: execve's arguments are declared nonnull. */
        char *volatile null_path = NULL;
        char **volatile bad_vec = (char **)16;
        char *bad_string_argv[] = { "true", (char *)16, NULL };
        TRY_EXECVE("NULL path", null_path, argv_true, environ);
        TRY_EXECVE("bad argv pointer", "/bin/true", bad_vec, environ);
        TRY_EXECVE("bad argv string", "/bin/true", bad_string_argv, environ);
        TRY_EXECVE("bad envp pointer", "/bin/true", argv_true, bad_vec);
    }

    say("-- permission and format\n");
    TRY_EXECVE("no exec permission", "./noexec.sh", argv_true, environ);
    TRY_EXECVE("text file with exec permission", "./text.bin", argv_true, environ);
    TRY_EXECVE("empty file with exec permission", "./empty.bin", argv_true, environ);
    TRY_EXECVE("ELF for another architecture", "./aarch64.elf", argv_true, environ);
    {
        int wfd = open("busy.bin", O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0755);
        REQUIRE(wfd >= 0, "create busy.bin");
        t_write_all(wfd, "#!/bin/sh\n", 10);
        TRY_EXECVE("file open for writing", "./busy.bin", argv_true, environ);
        close(wfd);
    }

    say("-- scripts\n");
    TRY_EXECVE("script with a missing interpreter", "./badinterp.sh", argv_true, environ);
    TRY_EXECVE("script whose interpreter is a directory", "./dirinterp.sh", argv_true, environ);
    TRY_EXECVE("#! line longer than the kernel's buffer", "./longline.sh", argv_true, environ);
    TRY_EXECVE("scripts nested deeper than the kernel allows", "./nest0.sh", argv_true, environ);
    TRY_EXECVE("too deep, the last interpreter missing", "./deep0.sh", argv_true, environ);
    TRY_EXECVE("#! alone in a file (empty interpreter)", "./bang.sh", argv_true, environ);
    TRY_EXECVE("#! then a NUL (empty interpreter)", "./bangnul.sh", argv_true, environ);
    TRY_EXECVE("#! then blanks only", "./bangblank.sh", argv_true, environ);

    say("-- sizes\n");
    {
        size_t big = 200 * 1024;
        char *arg = malloc(big + 1);
        REQUIRE(arg != NULL, "malloc");
        memset(arg, 'a', big);
        arg[big] = 0;
        char *argv_big[] = { "true", arg, NULL };
        TRY_EXECVE("one argument of 200 KiB", "/bin/true", argv_big, environ);
        char *env = malloc(big + 3);
        REQUIRE(env != NULL, "malloc");
        memcpy(env, "X=", 2);
        memset(env + 2, 'e', big);
        env[big + 2] = 0;
        char *envp_big[] = { "A=1", env, NULL };
        TRY_EXECVE("one environment string of 200 KiB", "/bin/true", argv_true, envp_big);
        free(env);
        free(arg);
    }
    {
        /* 80 arguments of 100 KiB: each one allowed, 8 MiB in all. */
        enum { COUNT = 80, EACH = 100 * 1024 };
        char *arg = malloc(EACH + 1);
        REQUIRE(arg != NULL, "malloc");
        memset(arg, 'b', EACH);
        arg[EACH] = 0;
        char *argv_many[COUNT + 2];
        argv_many[0] = "true";
        for (int i = 1; i <= COUNT; i++)
            argv_many[i] = arg;
        argv_many[COUNT + 1] = NULL;
        TRY_EXECVE("8 MiB of arguments", "/bin/true", argv_many, environ);
        free(arg);
    }

    say("-- execveat and fexecve\n");
    TRY_EXECVEAT("execveat AT_SYMLINK_NOFOLLOW on a symlink", AT_FDCWD, "link-to-self", argv_true, envp_small,
                 AT_SYMLINK_NOFOLLOW);
    TRY_EXECVEAT("execveat with an unknown flag", AT_FDCWD, "/bin/true", argv_true, envp_small, 0x1);
    {
        int closed = open("/dev/null", O_RDONLY | O_CLOEXEC);
        REQUIRE(closed >= 0, "open /dev/null");
        close(closed);
        TRY_EXECVEAT("execveat with a closed dirfd", closed, "true", argv_true, envp_small, 0);
    }
    {
        int dfd = open("adir", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        REQUIRE(dfd >= 0, "open adir");
        TRY_EXECVEAT("execveat AT_EMPTY_PATH on a directory fd", dfd, "", argv_true, envp_small, AT_EMPTY_PATH);
        close(dfd);
    }
    {
        int sfd = open("script.sh", O_RDONLY | O_CLOEXEC);
        REQUIRE(sfd >= 0, "open script.sh");
        errno = 0;
        int r = fexecve(sfd, argv_true, envp_small);
        show("fexecve of a script through an O_CLOEXEC fd", r, errno);
        close(sfd);
    }
    {
        /* The line is checked before the script's name is given up on. */
        int sfd = open("bangblank.sh", O_RDONLY | O_CLOEXEC);
        REQUIRE(sfd >= 0, "open bangblank.sh");
        errno = 0;
        int r = fexecve(sfd, argv_true, envp_small);
        show("fexecve of a script without interpreter through an O_CLOEXEC fd", r, errno);
        close(sfd);
    }
    {
        int dfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        REQUIRE(dfd >= 0, "open .");
        TRY_EXECVEAT("execveat of a script under an O_CLOEXEC dirfd", dfd, "script.sh", argv_true, envp_small, 0);
        close(dfd);
    }

    say("-- after all that\n");
    struct sigaction q;
    EXPECT_EQ("sigaction query", sigaction(SIGUSR1, NULL, &q), 0);
    EXPECT("SIGUSR1 handler still installed", q.sa_handler == on_usr1);
    EXPECT_EQ("wake the reader thread", write(g_pipe[1], "k", 1), 1);
    EXPECT_EQ("join the reader thread", pthread_join(t, NULL), 0);
    EXPECT_EQ("the reader thread got the byte", g_thread_got, 'k');
    section_end(s, "still alive: the thread and the signal handler survived every failed exec");
    return finish();
}
