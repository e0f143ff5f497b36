/*
 * Hard case: system call restart after signals (SA_RESTART, EINTR,
 * restart_syscall after SIGSTOP/SIGCONT).
 *
 * Why it is hard for a syscall interposer: when a signal interrupts a
 * blocking syscall the kernel either returns EINTR, or rewinds rip by 2 and
 * restores rax to re-run the same syscall (ERESTARTSYS & co), or sets rax to
 * restart_syscall (219) so a sleep resumes with its remaining time.  If the
 * interposer ran the syscall from its own gate, the rewind lands on its gate
 * (fine) but if a patched site is re-entered at the `syscall` byte, or the
 * interposer returns to its SIGSYS handler in between (sigreturn discards
 * the kernel's restart block), the app sees EINTR where it must not, a sleep
 * that ends early, or a wrong syscall being run.
 *
 * What it checks:
 *  - read() on a pipe with a periodic SIGALRM handler installed with
 *    SA_RESTART: the read keeps restarting and returns the byte written
 *    later; without SA_RESTART the read fails with EINTR.
 *  - nanosleep / clock_nanosleep interrupted by a handled signal: EINTR with
 *    a sensible remaining time (also with SA_RESTART, as the kernel does);
 *    TIMER_ABSTIME form returns EINTR.
 *  - a child process SIGSTOPs and SIGCONTs this process while it is inside
 *    nanosleep, clock_nanosleep, poll, select and read (no handlers): every
 *    call completes normally, sleeps take at least the requested time.
 *  - with a SIGCONT handler, the stopped-and-continued nanosleep returns EINTR.
 */
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/select.h>
#include <sys/time.h>
#include <sys/wait.h>

static volatile sig_atomic_t g_alarms;

static void on_alarm(int sig)
{
    (void)sig;
    g_alarms++;
}

static void set_handler(int sig, void (*h)(int), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    REQUIRE(sigaction(sig, &sa, NULL) == 0, "sigaction");
}

static void timer_ms(long first_ms, long interval_ms)
{
    struct itimerval it;
    it.it_value.tv_sec = first_ms / 1000;
    it.it_value.tv_usec = (first_ms % 1000) * 1000;
    it.it_interval.tv_sec = interval_ms / 1000;
    it.it_interval.tv_usec = (interval_ms % 1000) * 1000;
    REQUIRE(setitimer(ITIMER_REAL, &it, NULL) == 0, "setitimer");
}

static int g_pipe[2];

static void *late_writer(void *unused)
{
    (void)unused;
    /* SIGALRM is blocked in this thread; wait for a few restarts first */
    while (g_alarms < 3)
        sleep_ms(2);
    sleep_ms(5);
    if (write(g_pipe[1], "r", 1) != 1)
        FAILF("late writer");
    return NULL;
}

static void test_sa_restart_read(void)
{
    int s = section_begin();
    REQUIRE(pipe(g_pipe) == 0, "pipe");
    set_handler(SIGALRM, on_alarm, SA_RESTART);
    sigset_t alrm;
    sigemptyset(&alrm);
    sigaddset(&alrm, SIGALRM);
    /* the writer thread inherits SIGALRM blocked: alarms go to main */
    pthread_sigmask(SIG_BLOCK, &alrm, NULL);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, late_writer, NULL) == 0, "writer");
    pthread_sigmask(SIG_UNBLOCK, &alrm, NULL);
    g_alarms = 0;
    timer_ms(10, 10);
    char c = 0;
    ssize_t r = read(g_pipe[0], &c, 1);
    int e = errno;
    timer_ms(0, 0);
    pthread_join(t, NULL);
    if (r != 1)
        FAILF("SA_RESTART read returned %zd errno %d", r, e);
    EXPECT_EQ("byte read", c, 'r');
    EXPECT("several alarms were handled", g_alarms >= 3);
    section_end(s, "SA_RESTART: read on a pipe restarts across SIGALRM handlers");

    s = section_begin();
    set_handler(SIGALRM, on_alarm, 0);
    g_alarms = 0;
    timer_ms(10, 10);
    errno = 0;
    r = read(g_pipe[0], &c, 1);
    e = errno;
    timer_ms(0, 0);
    EXPECT_EQ("read without SA_RESTART", r, -1);
    EXPECT_EQ("errno EINTR", e, EINTR);
    EXPECT("handler ran", g_alarms >= 1);
    section_end(s, "no SA_RESTART: read fails with EINTR");
    close(g_pipe[0]);
    close(g_pipe[1]);
}

static void test_sleep_eintr(void)
{
    int s = section_begin();
    for (int restart = 0; restart < 2; restart++) {
        set_handler(SIGALRM, on_alarm, restart ? SA_RESTART : 0);
        struct timespec req = { 2, 0 }, rem = { 0, 0 };
        g_alarms = 0;
        timer_ms(50, 0);
        errno = 0;
        int r = nanosleep(&req, &rem);
        int e = errno;
        EXPECT_EQ("nanosleep interrupted", r, -1);
        EXPECT_EQ("nanosleep EINTR", e, EINTR);
        EXPECT("remaining > 0", rem.tv_sec > 0 || rem.tv_nsec > 0);
        EXPECT("remaining < request", rem.tv_sec < 2);
        EXPECT("remaining > 1s", rem.tv_sec >= 1);
        EXPECT_EQ("one alarm", g_alarms, 1);
    }

    set_handler(SIGALRM, on_alarm, 0);
    struct timespec req = { 2, 0 }, rem = { 0, 0 };
    timer_ms(50, 0);
    int r = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, &rem);
    EXPECT_EQ("clock_nanosleep relative EINTR", r, EINTR);
    EXPECT("clock_nanosleep remaining", rem.tv_sec == 1);

    struct timespec abs;
    clock_gettime(CLOCK_MONOTONIC, &abs);
    abs.tv_sec += 2;
    timer_ms(50, 0);
    r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &abs, NULL);
    EXPECT_EQ("clock_nanosleep absolute EINTR", r, EINTR);
    section_end(s, "nanosleep/clock_nanosleep interrupted by a handler: EINTR + remaining time");
}

/* ----------------------------------------------- SIGSTOP / SIGCONT ---- */

static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return '?';
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return '?';
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return (p && p[1] == ' ') ? p[2] : '?';
}

enum { OP_NANOSLEEP, OP_CLOCK_NANOSLEEP, OP_POLL, OP_SELECT, OP_READ, OP_NANOSLEEP_HANDLED };

/*
 * Fork a child that stops us 50 ms after "go", checks we are stopped,
 * continues us 30 ms later and (for OP_READ) then writes a byte.
 */
static void stop_cont_case(int op, const char *name)
{
    int s = section_begin();
    int go[2], data[2];
    REQUIRE(pipe(go) == 0 && pipe(data) == 0, "pipes");
    pid_t parent = getpid();
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) {
        char c;
        if (read(go[0], &c, 1) != 1)
            _exit(10);
        sleep_ms(50);
        if (kill(parent, SIGSTOP) != 0)
            _exit(11);
        int stopped = 0;
        for (int i = 0; i < 3000 && !stopped; i++) {
            char st = proc_state(parent);
            if (st == 'T' || st == 't')
                stopped = 1;
            else
                sleep_ms(1);
        }
        sleep_ms(30);
        if (kill(parent, SIGCONT) != 0)
            _exit(12);
        if (op == OP_READ) {
            sleep_ms(20);
            if (write(data[1], "d", 1) != 1)
                _exit(13);
        }
        _exit(stopped ? 0 : 14);
    }
    close(go[0]);
    /* data[1] stays open here so the child's exit does not make data[0]
     * readable (EOF) during poll/select */
    /* With a SIGCONT handler the sleep must end in EINTR: make it long
     * enough that the child's stop/continue always lands inside it. */
    const long want_ms = op == OP_NANOSLEEP_HANDLED ? 5000 : 300;
    long long t0 = now_ns();
    EXPECT_EQ("go", write(go[1], "g", 1), 1);
    int r = 0, e = 0;
    switch (op) {
    case OP_NANOSLEEP:
    case OP_NANOSLEEP_HANDLED: {
        struct timespec ts = { want_ms / 1000, (want_ms % 1000) * 1000000L }, rem = { 0, 0 };
        r = nanosleep(&ts, &rem);
        e = errno;
        break;
    }
    case OP_CLOCK_NANOSLEEP: {
        struct timespec ts = { 0, want_ms * 1000000L };
        r = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
        break;
    }
    case OP_POLL: {
        struct pollfd pfd = { data[0], POLLIN, 0 };
        r = poll(&pfd, 1, (int)want_ms);
        e = errno;
        break;
    }
    case OP_SELECT: {
        fd_set rs;
        FD_ZERO(&rs);
        FD_SET(data[0], &rs);
        struct timeval tv = { 0, want_ms * 1000 };
        r = select(data[0] + 1, &rs, NULL, NULL, &tv);
        e = errno;
        break;
    }
    case OP_READ: {
        char c = 0;
        r = (int)read(data[0], &c, 1);
        e = errno;
        if (r == 1 && c != 'd')
            r = -100;
        break;
    }
    }
    long long elapsed_ms = (now_ns() - t0) / 1000000;
    int st = 0;
    waitpid(pid, &st, 0);
    EXPECT("child saw us stopped and exited 0", WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (op == OP_NANOSLEEP_HANDLED) {
        EXPECT_EQ("nanosleep with SIGCONT handler returns -1", r, -1);
        EXPECT_EQ("EINTR", e, EINTR);
    } else if (op == OP_READ) {
        EXPECT_EQ("read completes after stop/cont", r, 1);
    } else {
        if (r != 0)
            FAILF("%s returned %d errno %d after stop/cont", name, r, e);
        if (elapsed_ms < want_ms)
            FAILF("%s ended early after stop/cont", name);
    }
    close(go[1]);
    close(data[0]);
    close(data[1]);
    char line[160];
    snprintf(line, sizeof line, "SIGSTOP/SIGCONT during %s", name);
    section_end(s, line);
}

static volatile sig_atomic_t g_conts;
static void on_cont(int sig)
{
    (void)sig;
    g_conts++;
}

int main(void)
{
    test_sa_restart_read();
    test_sleep_eintr();
    signal(SIGALRM, SIG_DFL);

    stop_cont_case(OP_NANOSLEEP, "nanosleep (restart_syscall)");
    stop_cont_case(OP_CLOCK_NANOSLEEP, "clock_nanosleep (restart_syscall)");
    stop_cont_case(OP_POLL, "poll with timeout (restart_syscall)");
    stop_cont_case(OP_SELECT, "select with timeout");
    stop_cont_case(OP_READ, "blocking read");

    set_handler(SIGCONT, on_cont, SA_RESTART);
    stop_cont_case(OP_NANOSLEEP_HANDLED, "nanosleep with a SIGCONT handler (EINTR)");
    EXPECT_EQ("SIGCONT handler ran once", g_conts, 1);
    signal(SIGCONT, SIG_DFL);
    return finish();
}
