/*
 * Hard case: TCP, UDP and Unix sockets over loopback, with a server thread.
 *
 * Why it is hard for a syscall interposer: socket calls carry in/out
 * address structures and lengths (accept, getsockname, recvfrom), vectors
 * (sendmmsg/recvmmsg, 5 and 6 arguments), blocking calls on one thread that
 * complete because of syscalls on another (accept/connect, recv/send), and
 * nonblocking connect with EINPROGRESS; any argument or result mangling, or
 * serialisation of blocked threads inside the interposer, deadlocks or
 * corrupts data here.
 *
 * What it checks: a TCP echo server on 127.0.0.1 port 0 in a thread
 * (getsockname for the port, printed nowhere), a client sending 256 KiB in
 * odd-sized chunks and verifying the echo, accept4 with SOCK_CLOEXEC,
 * getpeername, setsockopt/getsockopt, shutdown, a nonblocking connect
 * completed through poll; UDP sendto/recvfrom (source address checked),
 * sendmmsg/recvmmsg, MSG_TRUNC; an abstract-namespace Unix datagram socket
 * pair with SO_PASSCRED credentials.
 */
#include "common.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>

#define TOTAL (256 * 1024)

static int g_listen;

static void *echo_server(void *unused)
{
    (void)unused;
    for (int conn = 0; conn < 2; conn++) {
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        int c = accept4(g_listen, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
        if (c < 0) {
            FAILF("accept4 errno %d", errno);
            return NULL;
        }
        if (plen != sizeof peer || peer.sin_family != AF_INET || peer.sin_addr.s_addr != htonl(INADDR_LOOPBACK))
            FAILF("accept4 peer address");
        if (fcntl(c, F_GETFD) != FD_CLOEXEC)
            FAILF("accepted socket not cloexec");
        char buf[7777];
        for (;;) {
            ssize_t n = recv(c, buf, sizeof buf, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            ssize_t off = 0;
            while (off < n) {
                ssize_t w = send(c, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
                if (w <= 0) {
                    FAILF("server send");
                    break;
                }
                off += w;
            }
        }
        close(c);
    }
    return NULL;
}

static unsigned char pattern(long i)
{
    return (unsigned char)((i * 131 + (i >> 8)) & 0xff);
}

static void *client_sender(void *p)
{
    int fd = (int)(intptr_t)p;
    static unsigned char buf[TOTAL];
    for (long i = 0; i < TOTAL; i++)
        buf[i] = pattern(i);
    long off = 0;
    size_t chunk = 1;
    while (off < TOTAL) {
        size_t n = chunk;
        if (n > (size_t)(TOTAL - off))
            n = (size_t)(TOTAL - off);
        ssize_t w = send(fd, buf + off, n, MSG_NOSIGNAL);
        if (w <= 0) {
            FAILF("client send");
            break;
        }
        off += w;
        chunk = chunk * 3 + 7;
        if (chunk > 20000)
            chunk = 13;
    }
    shutdown(fd, SHUT_WR);
    return NULL;
}

static void test_tcp(void)
{
    int s = section_begin();
    g_listen = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(g_listen >= 0, "socket");
    int one = 1;
    EXPECT_EQ("SO_REUSEADDR", setsockopt(g_listen, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), 0);
    int got = 0;
    socklen_t glen = sizeof got;
    EXPECT_EQ("getsockopt", getsockopt(g_listen, SOL_SOCKET, SO_REUSEADDR, &got, &glen), 0);
    EXPECT("SO_REUSEADDR read back", got != 0 && glen == sizeof got);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    REQUIRE(bind(g_listen, (struct sockaddr *)&a, sizeof a) == 0, "bind");
    REQUIRE(listen(g_listen, 8) == 0, "listen");
    socklen_t alen = sizeof a;
    EXPECT_EQ("getsockname", getsockname(g_listen, (struct sockaddr *)&a, &alen), 0);
    EXPECT("port assigned", a.sin_port != 0 && alen == sizeof a);

    pthread_t srv;
    REQUIRE(pthread_create(&srv, NULL, echo_server, NULL) == 0, "server thread");

    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(c >= 0, "client socket");
    EXPECT_EQ("connect", connect(c, (struct sockaddr *)&a, sizeof a), 0);
    EXPECT_EQ("TCP_NODELAY", setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one), 0);
    struct sockaddr_in peer;
    socklen_t plen = sizeof peer;
    EXPECT_EQ("getpeername", getpeername(c, (struct sockaddr *)&peer, &plen), 0);
    EXPECT("peer is the server", peer.sin_port == a.sin_port && peer.sin_addr.s_addr == a.sin_addr.s_addr);

    pthread_t snd;
    REQUIRE(pthread_create(&snd, NULL, client_sender, (void *)(intptr_t)c) == 0, "sender thread");
    static unsigned char back[TOTAL];
    long got_total = 0;
    for (;;) {
        ssize_t n = recv(c, back + got_total, (size_t)(TOTAL - got_total) < 5000 ? (size_t)(TOTAL - got_total) : 5000, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got_total += n;
        if (got_total == TOTAL) {
            char extra;
            EXPECT_EQ("EOF after echo", recv(c, &extra, 1, 0), 0);
            break;
        }
    }
    pthread_join(snd, NULL);
    EXPECT_EQ("echoed bytes", got_total, TOTAL);
    long bad = 0;
    for (long i = 0; i < got_total; i++)
        if (back[i] != pattern(i))
            bad++;
    EXPECT_EQ("echoed content mismatches", bad, 0);
    close(c);

    /* nonblocking connect, completed with poll */
    c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int r = connect(c, (struct sockaddr *)&a, sizeof a);
    EXPECT("nonblocking connect: 0 or EINPROGRESS", r == 0 || errno == EINPROGRESS);
    struct pollfd pf = { c, POLLOUT, 0 };
    EXPECT_EQ("poll for connect", poll(&pf, 1, 5000), 1);
    int err = -1;
    socklen_t elen = sizeof err;
    EXPECT_EQ("SO_ERROR", getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &elen), 0);
    EXPECT_EQ("connected", err, 0);
    EXPECT_EQ("send", send(c, "ping", 4, MSG_NOSIGNAL), 4);
    char pb[4];
    pf.events = POLLIN;
    EXPECT_EQ("poll for echo", poll(&pf, 1, 5000), 1);
    EXPECT_EQ("recv echo", recv(c, pb, 4, MSG_WAITALL), 4);
    EXPECT("ping echoed", memcmp(pb, "ping", 4) == 0);
    close(c);
    pthread_join(srv, NULL);
    close(g_listen);
    section_end(s, "TCP loopback: echo server thread, 256 KiB, accept4, nonblocking connect");
}

static void test_udp(void)
{
    int s = section_begin();
    int u1 = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int u2 = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(u1 >= 0 && u2 >= 0, "udp sockets");
    struct sockaddr_in a1, a2;
    memset(&a1, 0, sizeof a1);
    a1.sin_family = AF_INET;
    a1.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a2 = a1;
    REQUIRE(bind(u1, (struct sockaddr *)&a1, sizeof a1) == 0 && bind(u2, (struct sockaddr *)&a2, sizeof a2) == 0, "bind");
    socklen_t l = sizeof a1;
    getsockname(u1, (struct sockaddr *)&a1, &l);
    l = sizeof a2;
    getsockname(u2, (struct sockaddr *)&a2, &l);
    for (int i = 0; i < 50; i++) {
        char msg[32], in[64];
        int n = snprintf(msg, sizeof msg, "datagram %d", i);
        EXPECT_EQ("sendto", sendto(u1, msg, (size_t)n, 0, (struct sockaddr *)&a2, sizeof a2), n);
        struct sockaddr_in from;
        socklen_t flen = sizeof from;
        ssize_t r = recvfrom(u2, in, sizeof in, 0, (struct sockaddr *)&from, &flen);
        if (r != n || memcmp(in, msg, (size_t)n) != 0)
            FAILF("datagram %d content", i);
        if (flen != sizeof from || from.sin_port != a1.sin_port || from.sin_addr.s_addr != a1.sin_addr.s_addr)
            FAILF("datagram %d source address", i);
    }
    char big[100];
    memset(big, 'B', sizeof big);
    EXPECT_EQ("sendto 100", sendto(u1, big, sizeof big, 0, (struct sockaddr *)&a2, sizeof a2), 100);
    char small[10];
    EXPECT_EQ("MSG_TRUNC returns full length", recv(u2, small, sizeof small, MSG_TRUNC), 100);

    EXPECT_EQ("connect udp", connect(u1, (struct sockaddr *)&a2, sizeof a2), 0);
    struct mmsghdr mm[4];
    struct iovec iov[4];
    char bufs[4][16];
    for (int i = 0; i < 4; i++) {
        snprintf(bufs[i], sizeof bufs[i], "mmsg-%d", i);
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = strlen(bufs[i]);
        memset(&mm[i], 0, sizeof mm[i]);
        mm[i].msg_hdr.msg_iov = &iov[i];
        mm[i].msg_hdr.msg_iovlen = 1;
    }
    EXPECT_EQ("sendmmsg", sendmmsg(u1, mm, 4, 0), 4);
    char rb[4][16];
    struct iovec riov[4];
    struct mmsghdr rm[4];
    for (int i = 0; i < 4; i++) {
        memset(rb[i], 0, sizeof rb[i]);
        riov[i].iov_base = rb[i];
        riov[i].iov_len = sizeof rb[i];
        memset(&rm[i], 0, sizeof rm[i]);
        rm[i].msg_hdr.msg_iov = &riov[i];
        rm[i].msg_hdr.msg_iovlen = 1;
    }
    struct timespec to = { 2, 0 };
    EXPECT_EQ("recvmmsg", recvmmsg(u2, rm, 4, MSG_WAITFORONE, &to), 4);
    for (int i = 0; i < 4; i++) {
        char want[16];
        snprintf(want, sizeof want, "mmsg-%d", i);
        if (rm[i].msg_len != strlen(want) || strcmp(rb[i], want) != 0)
            FAILF("recvmmsg message %d", i);
    }
    close(u1);
    close(u2);
    section_end(s, "UDP loopback: sendto/recvfrom x50, MSG_TRUNC, sendmmsg/recvmmsg");
}

static void test_unix(void)
{
    int s = section_begin();
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    /* abstract name, unique per process (never printed) */
    int len = snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "usertrap-sock-%d", (int)getpid());
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len);
    int srv = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(srv >= 0, "unix socket");
    REQUIRE(bind(srv, (struct sockaddr *)&a, alen) == 0, "bind abstract");
    int one = 1;
    EXPECT_EQ("SO_PASSCRED", setsockopt(srv, SOL_SOCKET, SO_PASSCRED, &one, sizeof one), 0);
    int cli = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    EXPECT_EQ("sendto abstract", sendto(cli, "creds?", 6, 0, (struct sockaddr *)&a, alen), 6);
    char buf[16];
    struct iovec iov = { buf, sizeof buf };
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(struct ucred))];
    } ctl;
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl.b;
    mh.msg_controllen = sizeof ctl.b;
    EXPECT_EQ("recvmsg", recvmsg(srv, &mh, 0), 6);
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    EXPECT("SCM_CREDENTIALS present", cm && cm->cmsg_type == SCM_CREDENTIALS);
    if (cm && cm->cmsg_type == SCM_CREDENTIALS) {
        struct ucred uc;
        memcpy(&uc, CMSG_DATA(cm), sizeof uc);
        EXPECT_EQ("cred pid", uc.pid, getpid());
        EXPECT_EQ("cred uid", uc.uid, getuid());
    }
    close(cli);
    close(srv);
    section_end(s, "Unix datagram socket in the abstract namespace with SCM_CREDENTIALS");
}

int main(void)
{
    test_tcp();
    test_udp();
    test_unix();
    return finish();
}
