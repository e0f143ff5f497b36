/*
 * Hard case: a program that closes every descriptor it did not open itself
 * (daemons, sandboxes, shells before exec) and runs with a tiny
 * RLIMIT_NOFILE.
 *
 * Why it is hard for a syscall interposer: any descriptor the interposer
 * keeps open (a log file, /proc/self/mem for patching, an eventfd) is
 * closed under it by close_range(3, ~0) or a close() loop, and may be
 * replaced by one of the program's own files under the same number; if the
 * interposer later writes to "its" fd it corrupts the program's file.
 * Opening descriptors lazily also changes the numbers the program gets and
 * makes it hit EMFILE earlier than natively.
 *
 * What it checks: after close_range(3, ~0U) and a close() loop over 3..1023,
 * /proc/self/fd lists only the descriptors open natively (0-2 as
 * inherited plus the listing's own); the program's files get the lowest
 * numbers; threads, fork, mmap and 2000 more syscalls work and no new
 * descriptor appears; dup2 onto 1000 and writing through it works; with
 * RLIMIT_NOFILE = 16 exactly 16 minus the already-open count of opens
 * succeed before EMFILE, then syscalls and a thread still work.
 */
#include "common.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

/* Open descriptors, as a bit mask of 0..63, not counting the listing's own. */
static uint64_t open_fds(void)
{
    uint64_t m = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return ~0ULL;
    int self = dirfd(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        int fd = atoi(de->d_name);
        if (fd == self)
            continue;
        if (fd < 64)
            m |= 1ULL << fd;
        else
            m |= 1ULL << 63; /* something high */
    }
    closedir(d);
    return m;
}

static void *thread_fn(void *p)
{
    int *fds = p;
    char c = 0;
    if (write(fds[1], "t", 1) != 1 || read(fds[0], &c, 1) != 1 || c != 't')
        return (void *)1;
    return NULL;
}

static void *plain_thread(void *p)
{
    pid_t pp = (pid_t)(intptr_t)p;
    return (void *)(intptr_t)(getppid() != pp);
}

static int run_thread(void)
{
    int fds[2];
    if (pipe(fds) != 0)
        return 1;
    pthread_t t;
    void *ret = (void *)1;
    if (pthread_create(&t, NULL, thread_fn, fds) != 0)
        return 1;
    pthread_join(t, &ret);
    close(fds[0]);
    close(fds[1]);
    return ret != NULL;
}

int main(void)
{
    /* which of 0..2 are open natively (inherited from the harness) */
    uint64_t std = 0;
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            std |= 1ULL << fd;

    int s = section_begin();
    EXPECT_EQ("close_range(3, ~0U)", close_range(3, ~0U, 0), 0);
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    EXPECT_EQ("only 0-2 remain", open_fds(), std);
    int a = open("close_all_a.txt", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    int lowest = 0;
    while (std & (1ULL << lowest))
        lowest++;
    EXPECT_EQ("program gets the lowest free number", a, lowest);
    EXPECT_EQ("write", write(a, "written after closing every inherited descriptor\n", 50), 50);
    close(a);
    section_end(s, "close_range(3, ~0) and close loop: nothing else left open");

    s = section_begin();
    EXPECT_EQ("thread", run_thread(), 0);
    pid_t pid = fork();
    if (pid == 0)
        _exit(open_fds() == std ? 0 : 1);
    int st = -1;
    waitpid(pid, &st, 0);
    EXPECT_EQ("child sees the same descriptors", st, 0);
    void *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT("mmap", m != MAP_FAILED);
    munmap(m, 1 << 20);
    pid_t pp = getppid();
    int bad = 0;
    for (int i = 0; i < 2000; i++)
        if (getppid() != pp)
            bad++;
    EXPECT_EQ("2000 syscalls", bad, 0);
    EXPECT_EQ("still only 0-2 open", open_fds(), std);
    EXPECT_EQ("dup2 onto 1000", dup2(1, 1000), 1000);
    const char line[] = "close_all_fds: this line was written through fd 1000\n";
    EXPECT_EQ("write via 1000", write(1000, line, sizeof line - 1), (ssize_t)(sizeof line - 1));
    close(1000);
    section_end(s, "threads, fork, mmap, 2000 syscalls: no descriptor appears");

    s = section_begin();
    struct rlimit rl = { 16, 16 };
    EXPECT_EQ("RLIMIT_NOFILE 16", setrlimit(RLIMIT_NOFILE, &rl), 0);
    int opened[16], n = 0;
    for (;;) {
        int fd = open("/dev/null", O_RDONLY);
        if (fd < 0) {
            EXPECT_EQ("EMFILE", errno, EMFILE);
            break;
        }
        if (n < 16)
            opened[n] = fd;
        n++;
        if (n > 20)
            break;
    }
    EXPECT_EQ("opens before EMFILE", n, 16 - __builtin_popcountll(std));
    bad = 0;
    for (int i = 0; i < 200; i++)
        if (getppid() != pp)
            bad++;
    EXPECT_EQ("syscalls at the descriptor limit", bad, 0);
    pthread_t t;
    void *ret = (void *)1;
    EXPECT_EQ("pthread_create at the descriptor limit",
              pthread_create(&t, NULL, plain_thread, (void *)(intptr_t)pp), 0);
    pthread_join(t, &ret);
    EXPECT("thread at the limit made its syscall", ret == NULL);
    for (int i = 0; i < n && i < 16; i++)
        close(opened[i]);
    EXPECT_EQ("pipe after closing", run_thread(), 0);
    section_end(s, "RLIMIT_NOFILE 16: EMFILE exactly where it is natively");
    return finish();
}
