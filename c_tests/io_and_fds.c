/*
 * Hard case: a broad sweep of file, pipe, socket and event-fd syscalls.
 *
 * Why it is hard for a syscall interposer: every one of these goes through
 * the interposer with pointer arguments, in/out structures, iovecs,
 * ancillary data carrying file descriptors, temporary signal masks
 * (epoll_pwait), timeouts and partial results; a mistake in argument
 * passing, in the 6th argument (r9 / r10 vs rcx), or in the returned value
 * (negative errno vs -1/errno, 64-bit offsets) shows up here.  The program
 * also relies on POSIX's lowest-free-descriptor rule, which breaks if the
 * interposer opens descriptors of its own at the wrong moment.
 *
 * What it checks: open/read/write/lseek/pread/pwrite/readv/writev/
 * fsync/fdatasync/ftruncate/fstat/statx/rename/link/symlink/readlink/unlink/
 * mkdir/rmdir/openat, readdir vs raw getdents64, lowest-fd reuse,
 * dup/dup2/dup3/F_DUPFD(_CLOEXEC)/F_GETFD/F_SETFL, close_range; pipes
 * (O_NONBLOCK EAGAIN, capacity, splice, tee); socketpair with
 * sendmsg/recvmsg SCM_RIGHTS and MSG_PEEK; epoll_wait/epoll_pwait (with a
 * sigmask)/EPOLLONESHOT; eventfd (plain and semaphore); timerfd; poll;
 * select; inotify; mmap of a file (shared write-back, private copy),
 * mremap, msync.  Files are left in cwd (io_dir/) for comparison.
 */
#include "common.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/uio.h>

static void test_files(void)
{
    int s = section_begin();
    EXPECT_EQ("mkdir io_dir", mkdir("io_dir", 0755), 0);
    EXPECT_EQ("mkdir io_dir/empty", mkdir("io_dir/empty", 0755), 0);
    int fd = open("io_dir/a.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    REQUIRE(fd >= 0, "open a.txt");
    EXPECT_EQ("write", write(fd, "hello world\n", 12), 12);
    EXPECT_EQ("lseek", lseek(fd, 6, SEEK_SET), 6);
    char buf[64] = { 0 };
    EXPECT_EQ("read", read(fd, buf, 5), 5);
    EXPECT("read content", memcmp(buf, "world", 5) == 0);
    EXPECT_EQ("pwrite", pwrite(fd, "HELLO", 5, 0), 5);
    memset(buf, 0, sizeof buf);
    EXPECT_EQ("pread", pread(fd, buf, 5, 0), 5);
    EXPECT("pread content", memcmp(buf, "HELLO", 5) == 0);
    EXPECT_EQ("file position unchanged by pread/pwrite", lseek(fd, 0, SEEK_CUR), 11);
    EXPECT_EQ("lseek SEEK_END", lseek(fd, 0, SEEK_END), 12);
    struct iovec iov[3] = { { "one ", 4 }, { "two ", 4 }, { "three\n", 6 } };
    EXPECT_EQ("writev", writev(fd, iov, 3), 14);
    EXPECT_EQ("fsync", fsync(fd), 0);
    EXPECT_EQ("fdatasync", fdatasync(fd), 0);
    char b1[4], b2[4], b3[6];
    struct iovec riov[3] = { { b1, 4 }, { b2, 4 }, { b3, 6 } };
    EXPECT_EQ("preadv", preadv(fd, riov, 3, 12), 14);
    EXPECT("preadv content", memcmp(b1, "one ", 4) == 0 && memcmp(b3, "three\n", 6) == 0);
    struct stat st;
    EXPECT_EQ("fstat", fstat(fd, &st), 0);
    EXPECT_EQ("size", st.st_size, 26);
    EXPECT("regular file", S_ISREG(st.st_mode));
    EXPECT_EQ("ftruncate", ftruncate(fd, 40), 0);
    struct statx stx;
    EXPECT_EQ("statx", statx(AT_FDCWD, "io_dir/a.txt", 0, STATX_SIZE, &stx), 0);
    EXPECT_EQ("statx size", stx.stx_size, 40);
    EXPECT_EQ("ftruncate back", ftruncate(fd, 26), 0);
    EXPECT_EQ("close", close(fd), 0);

    EXPECT_EQ("rename", rename("io_dir/a.txt", "io_dir/b.txt"), 0);
    errno = 0;
    EXPECT_EQ("old name gone", open("io_dir/a.txt", O_RDONLY), -1);
    EXPECT_EQ("ENOENT", errno, ENOENT);
    EXPECT_EQ("link", link("io_dir/b.txt", "io_dir/hard.txt"), 0);
    EXPECT_EQ("stat nlink", stat("io_dir/b.txt", &st), 0);
    EXPECT_EQ("nlink 2", st.st_nlink, 2);
    EXPECT_EQ("unlink hard link", unlink("io_dir/hard.txt"), 0);
    EXPECT_EQ("symlink", symlink("b.txt", "io_dir/link"), 0);
    memset(buf, 0, sizeof buf);
    EXPECT_EQ("readlink", readlink("io_dir/link", buf, sizeof buf), 5);
    EXPECT("readlink content", strcmp(buf, "b.txt") == 0);
    EXPECT_EQ("lstat", lstat("io_dir/link", &st), 0);
    EXPECT("is a symlink", S_ISLNK(st.st_mode));
    EXPECT_EQ("unlink symlink", unlink("io_dir/link"), 0);

    int dfd = open("io_dir", O_RDONLY | O_DIRECTORY);
    REQUIRE(dfd >= 0, "open dir");
    fd = openat(dfd, "c.txt", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    EXPECT("openat", fd >= 0);
    EXPECT_EQ("write c", write(fd, "file c, created with openat\n", 28), 28);
    close(fd);
    EXPECT_EQ("faccessat", faccessat(dfd, "c.txt", R_OK | W_OK, 0), 0);
    EXPECT_EQ("fstatat", fstatat(dfd, "c.txt", &st, 0), 0);
    EXPECT_EQ("fstatat size", st.st_size, 28);
    fd = openat(dfd, "tmp.txt", O_CREAT | O_WRONLY, 0644);
    close(fd);
    EXPECT_EQ("unlinkat", unlinkat(dfd, "tmp.txt", 0), 0);
    EXPECT_EQ("rmdir empty", unlinkat(dfd, "empty", AT_REMOVEDIR), 0);

    /* readdir (glibc getdents64) and the raw syscall agree */
    DIR *d = opendir("io_dir");
    REQUIRE(d != NULL, "opendir");
    int names = 0, have_b = 0, have_c = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        names++;
        have_b |= strcmp(de->d_name, "b.txt") == 0;
        have_c |= strcmp(de->d_name, "c.txt") == 0;
    }
    closedir(d);
    EXPECT_EQ("readdir entries (. .. b.txt c.txt)", names, 4);
    EXPECT("b.txt and c.txt listed", have_b && have_c);
    char dents[4096];
    lseek(dfd, 0, SEEK_SET);
    long n = syscall(SYS_getdents64, dfd, dents, sizeof dents);
    int raw_names = 0;
    for (long off = 0; off < n;) {
        unsigned short reclen;
        memcpy(&reclen, dents + off + 16, 2);
        raw_names++;
        off += reclen;
    }
    EXPECT_EQ("raw getdents64 entries", raw_names, 4);
    EXPECT_EQ("getdents64 at end", syscall(SYS_getdents64, dfd, dents, sizeof dents), 0);
    close(dfd);
    section_end(s, "files and directories");
}

static void test_fd_numbers(void)
{
    int s = section_begin();
    int a = open("/dev/null", O_RDONLY);
    REQUIRE(a >= 0, "open");
    EXPECT_EQ("close", close(a), 0);
    int b = open("/dev/null", O_RDONLY);
    EXPECT_EQ("lowest free descriptor reused", b, a);
    int c = dup(b);
    EXPECT("dup gives another descriptor", c > b);
    EXPECT_EQ("dup2 to 100", dup2(b, 100), 100);
    int d = fcntl(b, F_DUPFD, 200);
    EXPECT("F_DUPFD >= 200", d >= 200);
    int e = fcntl(b, F_DUPFD_CLOEXEC, 300);
    EXPECT("F_DUPFD_CLOEXEC >= 300", e >= 300);
    EXPECT_EQ("F_GETFD cloexec", fcntl(e, F_GETFD), FD_CLOEXEC);
    EXPECT_EQ("F_GETFD no cloexec", fcntl(d, F_GETFD), 0);
    EXPECT_EQ("dup3", dup3(b, 150, O_CLOEXEC), 150);
    EXPECT_EQ("dup3 cloexec", fcntl(150, F_GETFD), FD_CLOEXEC);
    errno = 0;
    EXPECT_EQ("dup3 same fd", dup3(b, b, 0), -1);
    EXPECT_EQ("EINVAL", errno, EINVAL);
    EXPECT_EQ("close_range 100..400", close_range(100, 400, 0), 0);
    errno = 0;
    EXPECT_EQ("closed by close_range", fcntl(150, F_GETFD), -1);
    EXPECT_EQ("EBADF", errno, EBADF);
    close(b);
    close(c);
    errno = 0;
    EXPECT_EQ("close(-1)", close(-1), -1);
    EXPECT_EQ("EBADF", errno, EBADF);
    section_end(s, "descriptor numbers: lowest free, dup family, close_range");
}

static void test_pipes(void)
{
    int s = section_begin();
    int p[2];
    REQUIRE(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2");
    char c;
    errno = 0;
    EXPECT_EQ("empty nonblocking read", read(p[0], &c, 1), -1);
    EXPECT_EQ("EAGAIN", errno, EAGAIN);
    int cap = fcntl(p[1], F_GETPIPE_SZ);
    EXPECT("F_GETPIPE_SZ", cap > 0);
    static char chunk[4096];
    memset(chunk, 'p', sizeof chunk);
    long total = 0;
    for (;;) {
        ssize_t r = write(p[1], chunk, sizeof chunk);
        if (r < 0) {
            EXPECT_EQ("full pipe EAGAIN", errno, EAGAIN);
            break;
        }
        total += r;
    }
    EXPECT_EQ("filled exactly the capacity", total, cap);
    long drained = 0;
    for (;;) {
        ssize_t r = read(p[0], chunk, sizeof chunk);
        if (r <= 0)
            break;
        drained += r;
    }
    EXPECT_EQ("drained", drained, total);
    int fl = fcntl(p[0], F_GETFL);
    EXPECT("O_NONBLOCK set", fl >= 0 && (fl & O_NONBLOCK));
    EXPECT_EQ("clear O_NONBLOCK", fcntl(p[0], F_SETFL, fl & ~O_NONBLOCK), 0);

    int q[2], r2[2];
    REQUIRE(pipe(q) == 0 && pipe(r2) == 0, "pipes");
    EXPECT_EQ("write", write(p[1], "splice-me", 9), 9);
    EXPECT_EQ("tee", tee(p[0], r2[1], 9, 0), 9);
    EXPECT_EQ("splice", splice(p[0], NULL, q[1], NULL, 9, 0), 9);
    char buf[16] = { 0 };
    EXPECT_EQ("read spliced", read(q[0], buf, sizeof buf), 9);
    EXPECT("spliced content", memcmp(buf, "splice-me", 9) == 0);
    memset(buf, 0, sizeof buf);
    EXPECT_EQ("read teed", read(r2[0], buf, sizeof buf), 9);
    EXPECT("teed content", memcmp(buf, "splice-me", 9) == 0);
    close(p[0]);
    close(p[1]);
    close(q[0]);
    close(q[1]);
    close(r2[0]);
    close(r2[1]);
    section_end(s, "pipes: nonblocking, capacity, splice, tee");
}

static void test_scm_rights(void)
{
    int s = section_begin();
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
    int fd = open("io_dir/c.txt", O_RDONLY);
    REQUIRE(fd >= 0, "open c.txt");
    char data[] = "fd-attached";
    struct iovec iov = { data, sizeof data };
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl.buf;
    mh.msg_controllen = sizeof ctl.buf;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    EXPECT_EQ("sendmsg", sendmsg(sv[0], &mh, 0), (ssize_t)sizeof data);
    close(fd);

    char peek[4];
    EXPECT_EQ("recv MSG_PEEK", recv(sv[1], peek, sizeof peek, MSG_PEEK), 4);
    char rbuf[64] = { 0 };
    struct iovec riov = { rbuf, sizeof rbuf };
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } rctl;
    memset(&rctl, 0, sizeof rctl);
    struct msghdr rh;
    memset(&rh, 0, sizeof rh);
    rh.msg_iov = &riov;
    rh.msg_iovlen = 1;
    rh.msg_control = rctl.buf;
    rh.msg_controllen = sizeof rctl.buf;
    EXPECT_EQ("recvmsg", recvmsg(sv[1], &rh, MSG_CMSG_CLOEXEC), (ssize_t)sizeof data);
    EXPECT("payload", strcmp(rbuf, "fd-attached") == 0);
    struct cmsghdr *rc = CMSG_FIRSTHDR(&rh);
    EXPECT("control message", rc != NULL && rc->cmsg_type == SCM_RIGHTS);
    if (rc) {
        int got;
        memcpy(&got, CMSG_DATA(rc), sizeof got);
        char fbuf[64] = { 0 };
        EXPECT_EQ("read through the passed fd", read(got, fbuf, sizeof fbuf), 28);
        EXPECT("passed fd content", memcmp(fbuf, "file c", 6) == 0);
        EXPECT_EQ("received fd is cloexec", fcntl(got, F_GETFD), FD_CLOEXEC);
        close(got);
    }
    EXPECT_EQ("shutdown", shutdown(sv[0], SHUT_WR), 0);
    EXPECT_EQ("EOF after shutdown", read(sv[1], rbuf, 1), 0);
    close(sv[0]);
    close(sv[1]);
    section_end(s, "socketpair: sendmsg/recvmsg with SCM_RIGHTS, MSG_PEEK, shutdown");
}

static void test_events(void)
{
    int s = section_begin();
    int ev = eventfd(0, EFD_CLOEXEC);
    REQUIRE(ev >= 0, "eventfd");
    uint64_t v = 3;
    EXPECT_EQ("eventfd write 3", write(ev, &v, 8), 8);
    v = 4;
    EXPECT_EQ("eventfd write 4", write(ev, &v, 8), 8);
    v = 0;
    EXPECT_EQ("eventfd read", read(ev, &v, 8), 8);
    EXPECT_EQ("sum", v, 7);
    int sem = eventfd(2, EFD_SEMAPHORE | EFD_NONBLOCK);
    EXPECT_EQ("sem read", read(sem, &v, 8), 8);
    EXPECT_EQ("sem value 1", v, 1);
    EXPECT_EQ("sem read 2", read(sem, &v, 8), 8);
    errno = 0;
    EXPECT_EQ("sem empty", read(sem, &v, 8), -1);
    EXPECT_EQ("EAGAIN", errno, EAGAIN);
    close(sem);

    int p[2];
    REQUIRE(pipe(p) == 0, "pipe");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    REQUIRE(ep >= 0, "epoll_create1");
    struct epoll_event e1 = { .events = EPOLLIN, .data.u64 = 0x1111 };
    struct epoll_event e2 = { .events = EPOLLIN | EPOLLONESHOT, .data.u64 = 0x2222 };
    EXPECT_EQ("epoll_ctl pipe", epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e1), 0);
    EXPECT_EQ("epoll_ctl eventfd", epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e2), 0);
    struct epoll_event out[4];
    EXPECT_EQ("epoll_wait nothing", epoll_wait(ep, out, 4, 0), 0);
    v = 1;
    EXPECT_EQ("eventfd write", write(ev, &v, 8), 8);
    EXPECT_EQ("epoll_wait eventfd", epoll_wait(ep, out, 4, 1000), 1);
    EXPECT_EQ("data", out[0].data.u64, 0x2222);
    EXPECT_EQ("oneshot disarmed", epoll_wait(ep, out, 4, 0), 0);
    EXPECT_EQ("write pipe", write(p[1], "e", 1), 1);
    sigset_t full;
    sigfillset(&full);
    EXPECT_EQ("epoll_pwait with sigmask", epoll_pwait(ep, out, 4, 1000, &full), 1);
    EXPECT_EQ("data", out[0].data.u64, 0x1111);
    char c;
    EXPECT_EQ("read", read(p[0], &c, 1), 1);
    EXPECT_EQ("epoll_pwait timeout", epoll_pwait(ep, out, 4, 10, &full), 0);
    EXPECT_EQ("epoll_ctl del", epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL), 0);
    close(ep);
    close(ev);

    int tf = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    REQUIRE(tf >= 0, "timerfd_create");
    struct itimerspec its = { { 0, 0 }, { 0, 20 * 1000000L } };
    EXPECT_EQ("timerfd_settime", timerfd_settime(tf, 0, &its, NULL), 0);
    uint64_t exp = 0;
    long long t0 = now_ns();
    EXPECT_EQ("timerfd read (blocks until expiry)", read(tf, &exp, 8), 8);
    EXPECT_EQ("one expiration", exp, 1);
    EXPECT("waited for the timer", now_ns() - t0 >= 15 * 1000000LL);
    struct itimerspec cur;
    EXPECT_EQ("timerfd_gettime", timerfd_gettime(tf, &cur), 0);
    EXPECT("disarmed", cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0);
    close(tf);

    struct pollfd pf[2] = { { p[0], POLLIN, 0 }, { p[1], POLLOUT, 0 } };
    EXPECT_EQ("poll: only writable", poll(pf, 2, 10), 1);
    EXPECT("POLLOUT", (pf[1].revents & POLLOUT) && pf[0].revents == 0);
    EXPECT_EQ("write", write(p[1], "x", 1), 1);
    EXPECT_EQ("poll: both", poll(pf, 2, 10), 2);
    fd_set rs, ws;
    FD_ZERO(&rs);
    FD_ZERO(&ws);
    FD_SET(p[0], &rs);
    FD_SET(p[1], &ws);
    struct timeval tv = { 0, 10000 };
    EXPECT_EQ("select", select(p[1] + 1, &rs, &ws, NULL, &tv), 2);
    EXPECT("select sets", FD_ISSET(p[0], &rs) && FD_ISSET(p[1], &ws));
    EXPECT_EQ("read", read(p[0], &c, 1), 1);
    FD_ZERO(&rs);
    FD_SET(p[0], &rs);
    tv.tv_sec = 0;
    tv.tv_usec = 10000;
    EXPECT_EQ("select timeout", select(p[0] + 1, &rs, NULL, NULL, &tv), 0);
    close(p[0]);
    close(p[1]);

    int in = inotify_init1(IN_CLOEXEC);
    REQUIRE(in >= 0, "inotify_init1");
    EXPECT("inotify_add_watch", inotify_add_watch(in, "io_dir", IN_CREATE) >= 0);
    int fd = open("io_dir/notified.txt", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    EXPECT_EQ("write", write(fd, "inotify saw this file being created\n", 36), 36);
    close(fd);
    char ibuf[sizeof(struct inotify_event) + 256] __attribute__((aligned(8)));
    ssize_t n = read(in, ibuf, sizeof ibuf);
    EXPECT("inotify event", n >= (ssize_t)sizeof(struct inotify_event));
    if (n >= (ssize_t)sizeof(struct inotify_event)) {
        struct inotify_event *ie = (struct inotify_event *)ibuf;
        EXPECT("IN_CREATE", ie->mask & IN_CREATE);
        EXPECT("name", ie->len > 0 && strcmp(ie->name, "notified.txt") == 0);
    }
    close(in);
    section_end(s, "eventfd, epoll (oneshot, pwait with mask), timerfd, poll, select, inotify");
}

static void test_mmap_file(void)
{
    int s = section_begin();
    int fd = open("io_dir/mapped.bin", O_CREAT | O_RDWR | O_TRUNC, 0644);
    REQUIRE(fd >= 0, "open mapped.bin");
    REQUIRE(ftruncate(fd, 8192) == 0, "ftruncate");
    unsigned char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    REQUIRE(m != MAP_FAILED, "mmap shared");
    for (int i = 0; i < 8192; i++)
        m[i] = (unsigned char)(i * 7 + 3);
    EXPECT_EQ("msync", msync(m, 8192, MS_SYNC), 0);
    EXPECT_EQ("madvise", madvise(m, 8192, MADV_WILLNEED), 0);
    unsigned char buf[8192];
    EXPECT_EQ("pread mapped file", pread(fd, buf, sizeof buf, 0), 8192);
    EXPECT("write-back through the mapping", memcmp(buf, m, 8192) == 0);
    unsigned char *priv = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 4096);
    REQUIRE(priv != MAP_FAILED, "mmap private");
    priv[0] ^= 0xff;
    EXPECT("private copy diverges", priv[0] != m[4096]);
    EXPECT_EQ("pread", pread(fd, buf, 1, 4096), 1);
    EXPECT("file unchanged by the private write", buf[0] == m[4096]);
    munmap(priv, 4096);
    REQUIRE(ftruncate(fd, 16384) == 0, "grow file");
    unsigned char *g = mremap(m, 8192, 16384, MREMAP_MAYMOVE);
    REQUIRE(g != MAP_FAILED, "mremap");
    g[16383] = 0x5a;
    EXPECT_EQ("munmap", munmap(g, 16384), 0);
    EXPECT_EQ("pread last byte", pread(fd, buf, 1, 16383), 1);
    EXPECT_EQ("last byte", buf[0], 0x5a);
    close(fd);
    section_end(s, "mmap of a file: shared write-back, private copy, mremap");
}

int main(void)
{
    test_files();
    test_fd_numbers();
    test_pipes();
    test_scm_rights();
    test_events();
    test_mmap_file();
    return finish();
}
