/*
 * exec_etxtbsy.c - a running program's file cannot be opened for writing
 * (ETXTBSY, LTP creat07): the kernel denies writes to the exe file of a
 * process. A copy of /bin/cat runs in a child (it echoes a line back, so it
 * is surely running); then the parent reads the kernel's /proc/<child>/exe
 * and opens the copy for writing. Natively: the link names the program and
 * the open fails with ETXTBSY. A program usertrap's launcher started is the
 * kernel's exe file only where the library could make it so
 * (PR_SET_MM_EXE_FILE, which needs CAP_SYS_RESOURCE); tests/debuggers.rs
 * asserts exactly that.
 */
#include "common.h"
#include <fcntl.h>
#include <sys/wait.h>

int main(void)
{
    int in = open("/bin/cat", O_RDONLY), out = open("prog", O_WRONLY | O_CREAT | O_TRUNC, 0755);
    char b[65536];
    ssize_t n;
    REQUIRE(in >= 0 && out >= 0, "open the copy");
    while ((n = read(in, b, sizeof b)) > 0)
        REQUIRE(write(out, b, n) == n, "write the copy");
    close(in);
    close(out);
    int to[2], from[2];
    REQUIRE(pipe(to) == 0 && pipe(from) == 0, "pipe");
    pid_t pid = fork();
    if (pid == 0) {
        dup2(to[0], 0);
        dup2(from[1], 1);
        close(to[0]); close(to[1]); close(from[0]); close(from[1]);
        execl("./prog", "prog", (char *)NULL);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    char line[8] = {0};
    REQUIRE(write(to[1], "x\n", 2) == 2 && read(from[0], line, 2) == 2, "the child echoes");
    char link[64], exe[4096] = {0};
    snprintf(link, sizeof link, "/proc/%d/exe", (int)pid);
    ssize_t l = readlink(link, exe, sizeof exe - 1);
    int names_prog = l > 5 && strcmp(exe + l - 5, "/prog") == 0;
    int fd = open("prog", O_WRONLY);
    int e = errno;
    say("the kernel's exe link names the program: %s; open for writing: %s\n", names_prog ? "yes" : "no",
        fd >= 0 ? "ok" : e == ETXTBSY ? "ETXTBSY" : strerror(e));
    if (fd >= 0)
        close(fd);
    close(to[1]);
    int st;
    waitpid(pid, &st, 0);
    close(from[0]);
    unlink("prog");
    return 0;
}
