/*
 * fanotify_exec.c - exec of a program that a fanotify listener watches with
 * a permission mark and denies (LTP fanotify03/24). Needs CAP_SYS_ADMIN
 * (the tests run as root). The program is a copy of /bin/true in the
 * current directory; a listener thread answers FAN_DENY to every event.
 *   ACCESS_PERM:    the read of the program's header is denied: exec EPERM
 *   OPEN_PERM:      the open is denied: exec EPERM
 *   OPEN_EXEC_PERM: the open for exec is denied: exec EPERM natively; under
 *                   usertrap the launcher maps a descriptor the library
 *                   opened for reading, which is no open for exec, so the
 *                   program runs (README, Limits)
 * Prints, per mark, what exec did: "exec EPERM" or "exec ran, exit N".
 */
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/fanotify.h>
#include <sys/wait.h>

static int fan;
static volatile int stop;

static void *listener(void *arg)
{
    (void)arg;
    char buf[4096] __attribute__((aligned(8)));
    while (!stop) {
        struct pollfd p = {.fd = fan, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        ssize_t n = read(fan, buf, sizeof buf);
        struct fanotify_event_metadata *m = (void *)buf;
        for (; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
            if (m->mask & (FAN_ACCESS_PERM | FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM)) {
                struct fanotify_response r = {.fd = m->fd, .response = FAN_DENY};
                if (write(fan, &r, sizeof r) != sizeof r)
                    FAILF("fanotify response: %s", strerror(errno));
            }
            if (m->fd >= 0)
                close(m->fd);
        }
    }
    return NULL;
}

static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    char b[65536];
    ssize_t n;
    REQUIRE(in >= 0 && out >= 0, "open the copy");
    while ((n = read(in, b, sizeof b)) > 0)
        REQUIRE(write(out, b, n) == n, "write the copy");
    close(in);
    close(out);
}

static void try_exec(const char *name, uint64_t mask)
{
    REQUIRE(fanotify_mark(fan, FAN_MARK_ADD, mask, AT_FDCWD, "prog") == 0, "fanotify_mark");
    int pfd[2];
    REQUIRE(pipe2(pfd, O_CLOEXEC) == 0, "pipe");
    pid_t pid = fork();
    if (pid == 0) {
        char *argv[] = {"prog", NULL};
        execv("./prog", argv);
        int e = errno;
        (void)!write(pfd[1], &e, sizeof e);
        _exit(127);
    }
    close(pfd[1]);
    int e = 0, st = 0;
    ssize_t got = read(pfd[0], &e, sizeof e);
    close(pfd[0]);
    waitpid(pid, &st, 0);
    if (got == sizeof e)
        say("%s: exec %s\n", name, e == EPERM ? "EPERM" : strerror(e));
    else
        say("%s: exec ran, exit %d\n", name, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    REQUIRE(fanotify_mark(fan, FAN_MARK_REMOVE, mask, AT_FDCWD, "prog") == 0, "fanotify_mark remove");
}

int main(void)
{
    copy_file("/bin/true", "prog");
    fan = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC, O_RDONLY);
    REQUIRE(fan >= 0, "fanotify_init (needs CAP_SYS_ADMIN)");
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, listener, NULL) == 0, "pthread_create");
    try_exec("ACCESS_PERM", FAN_ACCESS_PERM);
    try_exec("OPEN_PERM", FAN_OPEN_PERM);
    try_exec("OPEN_EXEC_PERM", FAN_OPEN_EXEC_PERM);
    stop = 1;
    pthread_join(th, NULL);
    unlink("prog");
    return t_failure_count() ? 1 : 0;
}
