/*
 * Hard case: fork trees, fork in multithreaded processes, fork from threads.
 *
 * Why it is hard for a syscall interposer: fork copies the interposer's
 * state (patched code, tables, locks) copy-on-write into the child, but only
 * the forking thread survives: per-thread state of every other thread is
 * stale, and a lock another thread held at the moment of fork (for instance
 * while it was blocked inside a trapped read) stays held forever in the
 * child.  The child starts inside the fork syscall the interposer ran and
 * must come back with rax=0 and all registers.  A child whose main thread
 * is a former non-main thread has tid == pid.
 *
 * What it checks: 20 children (every 4th with a grandchild) talking to the
 * parent over pipes, each writing a file in cwd and exiting with its own
 * status (one is killed by SIGTERM); fork while three other threads are
 * blocked in read(), with the child creating a thread of its own; fork
 * from a non-main thread; two threads forking concurrently; pthread_atfork
 * handler counts; waitid and wait4 results.
 */
#include "common.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define NCHILD 20


static int read_full(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static int write_file(const char *name, const char *text)
{
    int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    size_t len = strlen(text);
    int ok = write(fd, text, len) == (ssize_t)len;
    return (close(fd) == 0 && ok) ? 0 : -1;
}

static int file_equals(const char *name, const char *text)
{
    char buf[256];
    int fd = open(name, O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0)
        return 0;
    buf[n] = 0;
    return strcmp(buf, text) == 0;
}

/* ------------------------------------------------------------- tree ---- */

static void child_main(int i, int rd, int wr)
{
    uint32_t token;
    if (read_full(rd, &token, sizeof token) != 0)
        _exit(100);
    uint32_t reply = token * token + (uint32_t)i;
    if (write(wr, &reply, sizeof reply) != (ssize_t)sizeof reply)
        _exit(101);
    if (i % 4 == 0) {
        pid_t g = fork();
        if (g == 0) {
            char name[64], text[64];
            snprintf(name, sizeof name, "grandchild_%02d.txt", i);
            snprintf(text, sizeof text, "grandchild of child %d\n", i);
            _exit(write_file(name, text) == 0 ? i + 1 : 102);
        }
        if (g < 0)
            _exit(103);
        int st;
        if (waitpid(g, &st, 0) != g || !WIFEXITED(st) || WEXITSTATUS(st) != i + 1)
            _exit(104);
    }
    char name[64], text[64];
    snprintf(name, sizeof name, "child_%02d.txt", i);
    snprintf(text, sizeof text, "child %d got token %u\n", i, token);
    if (write_file(name, text) != 0)
        _exit(105);
    if (i == NCHILD - 1) {
        /* wait to be killed by the parent */
        for (;;)
            pause();
    }
    _exit(i);
}

static void test_tree(void)
{
    int s = section_begin();
    pid_t pids[NCHILD];
    int to_child[NCHILD][2], from_child[NCHILD][2];
    for (int i = 0; i < NCHILD; i++) {
        REQUIRE(pipe(to_child[i]) == 0 && pipe(from_child[i]) == 0, "pipes");
        pids[i] = fork();
        REQUIRE(pids[i] >= 0, "fork");
        if (pids[i] == 0) {
            close(to_child[i][1]);
            close(from_child[i][0]);
            child_main(i, to_child[i][0], from_child[i][1]);
        }
        close(to_child[i][0]);
        close(from_child[i][1]);
    }
    for (int i = 0; i < NCHILD; i++) {
        uint32_t token = 1000u + (uint32_t)i * 7u;
        EXPECT_EQ("send token", write(to_child[i][1], &token, sizeof token), (ssize_t)sizeof token);
    }
    for (int i = 0; i < NCHILD; i++) {
        uint32_t token = 1000u + (uint32_t)i * 7u, reply = 0;
        EXPECT_EQ("read reply", read_full(from_child[i][0], &reply, sizeof reply), 0);
        EXPECT_EQ("reply value", reply, token * token + (uint32_t)i);
    }
    /* child NCHILD-1 waits in pause() once its file is written */
    for (int i = 0; i < NCHILD - 1; i++) {
        int st = wait_status(pids[i]);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != i)
            FAILF("child %d status 0x%x", i, st);
    }
    {
        char name[64];
        snprintf(name, sizeof name, "child_%02d.txt", NCHILD - 1);
        /* the last child writes its file before pausing; wait for it */
        for (int tries = 0; tries < 10000; tries++) {
            struct stat sb;
            if (stat(name, &sb) == 0 && sb.st_size > 0)
                break;
            sleep_ms(1);
        }
    }
    EXPECT_EQ("kill last child", kill(pids[NCHILD - 1], SIGTERM), 0);
    int st = wait_status(pids[NCHILD - 1]);
    EXPECT("last child killed by signal", WIFSIGNALED(st));
    EXPECT_EQ("last child signal", WTERMSIG(st), SIGTERM);
    for (int i = 0; i < NCHILD; i++) {
        char name[64], text[64];
        snprintf(name, sizeof name, "child_%02d.txt", i);
        snprintf(text, sizeof text, "child %d got token %u\n", i, 1000u + (uint32_t)i * 7u);
        if (!file_equals(name, text))
            FAILF("file %s content", name);
        if (i % 4 == 0) {
            snprintf(name, sizeof name, "grandchild_%02d.txt", i);
            snprintf(text, sizeof text, "grandchild of child %d\n", i);
            if (!file_equals(name, text))
                FAILF("file %s content", name);
        }
        close(to_child[i][1]);
        close(from_child[i][0]);
    }
    section_end(s, "fork tree: 20 children, 5 grandchildren, pipes, files, statuses");
}

/* ------------------------------------------- fork with blocked threads ---- */

static int g_block_pipe[2];

static void *blocked_reader(void *unused)
{
    (void)unused;
    char c;
    ssize_t r;
    while ((r = read(g_block_pipe[0], &c, 1)) < 0 && errno == EINTR)
        ;
    return (void *)(intptr_t)r;
}

static void *child_thread(void *p)
{
    int *fds = p;
    if (write(fds[1], "t", 1) != 1)
        return (void *)1;
    char c;
    if (read(fds[0], &c, 1) != 1 || c != 't')
        return (void *)2;
    return (void *)0;
}

static void test_fork_with_threads(void)
{
    int s = section_begin();
    REQUIRE(pipe(g_block_pipe) == 0, "pipe");
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        REQUIRE(pthread_create(&th[i], NULL, blocked_reader, NULL) == 0, "reader");
    sleep_ms(20); /* let the readers block (not required for correctness) */
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        int code = 0;
        if (getpid() == parent || getppid() != parent)
            code |= 1;
        if (gettid() != getpid())
            code |= 2;
        if (write_file("forked_with_threads.txt", "written by a child forked while 3 threads were blocked in read\n") != 0)
            code |= 4;
        int fds[2];
        if (pipe(fds) != 0)
            code |= 8;
        pthread_t t;
        void *ret = (void *)99;
        if (pthread_create(&t, NULL, child_thread, fds) != 0 || pthread_join(t, &ret) != 0 || ret != NULL)
            code |= 16;
        _exit(code);
    }
    REQUIRE(pid > 0, "fork");
    int st = wait_status(pid);
    EXPECT("child exited", WIFEXITED(st));
    EXPECT_EQ("child check bits", WEXITSTATUS(st), 0);
    EXPECT("file from child", file_equals("forked_with_threads.txt",
                                          "written by a child forked while 3 threads were blocked in read\n"));
    EXPECT_EQ("wake readers", write(g_block_pipe[1], "xyz", 3), 3);
    for (int i = 0; i < 3; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        EXPECT_EQ("reader got a byte", (intptr_t)ret, 1);
    }
    close(g_block_pipe[0]);
    close(g_block_pipe[1]);
    section_end(s, "fork while other threads are blocked in read");
}

/* ---------------------------------------------- fork from a thread ---- */

static void *forking_thread(void *unused)
{
    (void)unused;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        int code = 5;
        if (gettid() != getpid())
            code = 50; /* the forking thread is the child's only thread */
        if (getppid() != parent)
            code = 51;
        if (write_file("forked_from_thread.txt", "child of a non-main thread\n") != 0)
            code = 52;
        _exit(code);
    }
    if (pid < 0)
        return (void *)-1;
    int st = wait_status(pid);
    return (void *)(intptr_t)(WIFEXITED(st) ? WEXITSTATUS(st) : 1000 + st);
}

static void test_fork_from_thread(void)
{
    int s = section_begin();
    pthread_t t;
    void *ret;
    REQUIRE(pthread_create(&t, NULL, forking_thread, NULL) == 0, "thread");
    pthread_join(t, &ret);
    EXPECT_EQ("child of thread exit status", (intptr_t)ret, 5);
    EXPECT("file", file_equals("forked_from_thread.txt", "child of a non-main thread\n"));
    section_end(s, "fork from a non-main thread");
}

/* ------------------------------------------- concurrent forking ---- */

static void *fork_loop(void *p)
{
    int base = (int)(intptr_t)p;
    int bad = 0;
    for (int i = 0; i < 25; i++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit((base + i) & 0xff);
        if (pid < 0) {
            bad++;
            continue;
        }
        int st = wait_status(pid);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != ((base + i) & 0xff))
            bad++;
    }
    return (void *)(intptr_t)bad;
}

static void test_concurrent(void)
{
    int s = section_begin();
    pthread_t a, b;
    void *ra, *rb;
    REQUIRE(pthread_create(&a, NULL, fork_loop, (void *)(intptr_t)0) == 0, "a");
    REQUIRE(pthread_create(&b, NULL, fork_loop, (void *)(intptr_t)100) == 0, "b");
    pthread_join(a, &ra);
    pthread_join(b, &rb);
    EXPECT_EQ("thread a bad forks", (intptr_t)ra, 0);
    EXPECT_EQ("thread b bad forks", (intptr_t)rb, 0);
    section_end(s, "two threads forking 25 children each concurrently");
}

/* ------------------------------------------------- atfork, waitid ---- */

static int g_prepare, g_parent, g_child;
static void at_prepare(void) { g_prepare++; }
static void at_parent(void) { g_parent++; }
static void at_child(void) { g_child++; }

static void test_atfork_waitid(void)
{
    int s = section_begin();
    REQUIRE(pthread_atfork(at_prepare, at_parent, at_child) == 0, "atfork");
    pid_t pid = fork();
    if (pid == 0)
        _exit(g_child == 1 && g_prepare == 1 && g_parent == 0 ? 33 : 34);
    REQUIRE(pid > 0, "fork");
    EXPECT_EQ("prepare count", g_prepare, 1);
    EXPECT_EQ("parent count", g_parent, 1);
    EXPECT_EQ("child count in parent", g_child, 0);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    EXPECT_EQ("waitid", waitid(P_PID, (id_t)pid, &si, WEXITED), 0);
    EXPECT_EQ("waitid si_pid", si.si_pid, pid);
    EXPECT_EQ("waitid si_code", si.si_code, CLD_EXITED);
    EXPECT_EQ("waitid si_status", si.si_status, 33);

    pid = fork();
    if (pid == 0) {
        raise(SIGUSR2);
        _exit(0);
    }
    int st = 0;
    struct rusage ru;
    EXPECT_EQ("wait4", wait4(pid, &st, 0, &ru), pid);
    EXPECT("wait4 signaled", WIFSIGNALED(st));
    EXPECT_EQ("wait4 signal", WTERMSIG(st), SIGUSR2);
    section_end(s, "pthread_atfork handlers, waitid, wait4");
}

int main(void)
{
    test_tree();
    test_fork_with_threads();
    test_fork_from_thread();
    test_concurrent();
    test_atfork_waitid();
    EXPECT_EQ("no children left", wait(NULL), -1);
    EXPECT_EQ("ECHILD", errno, ECHILD);
    return finish();
}
