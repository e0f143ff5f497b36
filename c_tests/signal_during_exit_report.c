// usertrap-test: exec
/*
 * Hard case: a SIGTERM that arrives after the program called exit_group,
 * while the interposer still writes the report of its calls
 * (multiprocessing.Pool.terminate() sends one to every worker, some of
 * which are already exiting).
 *
 * Why it is hard for a syscall interposer: natively nothing of the program
 * runs once exit_group has begun, and no signal changes how it ends. The
 * interposer's report is written inside that exit_group, and a signal that
 * arrives meanwhile must not be delivered then: under SIG_DFL it killed the
 * process (status SIGTERM instead of 0, and the report cut off), with a
 * handler it would run the program's code after its last call.
 *
 * What it checks: a child (this program again, `child`) exits with status 0,
 * its report going to report.fifo (tests/reports.rs sets USERTRAP_OUTPUT),
 * a FIFO that its parent filled, so that writing it waits. The parent waits
 * until the child is either gone (natively) or waiting in poll
 * (/proc/PID/syscall: the report), sends SIGTERM, then drains the FIFO:
 * the child exits with 0. The same with a second thread in the child,
 * which a signal sent to the process may be given to. And a child killed
 * by SIGTERM in pause: a SIGINT sent while its report waits must not end
 * it in SIGTERM's place. (Run by tests/c_programs.rs too, with its report
 * to /dev/null: there the signal comes after the child is gone.)
 */
#include "common.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

/* Whether `pid` is gone (a zombie) or blocked in syscall `nr` (or `alt`). */
static int in_call_or_gone(pid_t pid, int nr, int alt)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    char state = t_proc_state(path);
    if (state == 0 || state == 'Z')
        return 1;
    snprintf(path, sizeof path, "/proc/%d/syscall", (int)pid);
    ssize_t n = t_read_small(path, buf, sizeof buf);
    if (n < 0)
        return 1;
    if (n == 0)
        return 0;
    int now = atoi(buf);
    return n > 0 && buf[0] != '-' && buf[0] != 'r' && (now == nr || now == alt);
}

/* Waits until `pid` is gone or blocked in `nr` (or `alt`). */
static void wait_for_call_or_end(pid_t pid, int nr, int alt)
{
    int waited = 0;
    while (!in_call_or_gone(pid, nr, alt) && waited < 20000) {
        usleep(1000);
        waited++;
    }
    EXPECT("the child ends or makes the call awaited", waited < 20000);
}

static void *idle(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

/* One round: the child (`child`, or `threaded`: with a second thread that
 * blocks nothing, which a signal sent to the process may be given to). */
static void round_with(const char *argv0, char *mode);

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "child") == 0)
        _exit(0);
    if (argc > 1 && strcmp(argv[1], "sleeper") == 0) {
        for (;;)
            pause();
    }
    if (argc > 1 && strcmp(argv[1], "threaded") == 0) {
        pthread_t t;
        REQUIRE(pthread_create(&t, NULL, idle, NULL) == 0, "pthread_create");
        _exit(0);
    }
    round_with(argv[0], "child");
    round_with(argv[0], "threaded");
    round_with(argv[0], "sleeper");
    return 0;
}

static void round_with(const char *argv0, char *mode)
{

    char fifo[] = "report.fifo";
    REQUIRE(mkfifo(fifo, 0600) == 0, "mkfifo");
    int rd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    REQUIRE(rd >= 0, "open the FIFO for reading");
    int wr = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    REQUIRE(wr >= 0, "open the FIFO for writing");
    fcntl(rd, F_SETPIPE_SZ, 4096);
    char fill[512];
    memset(fill, 'x', sizeof fill);
    while (write(wr, fill, sizeof fill) > 0)
        ;

    char *args[] = {(char *)argv0, mode, NULL};
    /* vfork: a fork child would write a report of its own before its exec,
     * which may well be cut short by the signal. */
    pid_t child = vfork();
    REQUIRE(child >= 0, "vfork");
    if (child == 0) {
        execv("/proc/self/exe", args);
        _exit(127);
    }
    if (strcmp(mode, "sleeper") == 0) {
        /* Killed by SIGTERM in pause: its report is written first. */
        wait_for_call_or_end(child, SYS_pause, SYS_pause);
        kill(child, SIGTERM);
    }
    /* poll (7) or ppoll (271): the report; the program makes neither. */
    wait_for_call_or_end(child, SYS_poll, SYS_ppoll);
    kill(child, strcmp(mode, "sleeper") == 0 ? SIGINT : SIGTERM);
    close(wr);
    char buf[4096];
    for (;;) {
        ssize_t n = read(rd, buf, sizeof buf);
        if (n > 0)
            continue;
        if (n < 0 && errno == EAGAIN) {
            usleep(1000);
            continue;
        }
        break;
    }
    int st = wait_status(child);
    say("%s: %s %d\n", mode, WIFEXITED(st) ? "exited" : "killed by signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    close(rd);
    unlink(fifo);
}
