/*
 * A SIGBUS, SIGSEGV or SIGSYS sent to the whole process (kill) while the
 * main thread blocks it goes to a thread that does not (signal(7): a
 * process-directed signal is delivered to any one thread not blocking it),
 * with its siginfo (SI_USER, the sender's pid and uid).
 * Under the library these signals are never blocked in the kernel, which
 * may give them to the main thread: found with a program whose worker
 * thread never got kill(getpid(), SIGBUS) while the main thread, which
 * blocked it, held it back. The worker waits for each in read; a
 * wait bounded at 10 s only keeps a failing run from hanging.
 */
#include "common.h"
#include <pthread.h>

static volatile pid_t worker_tid;
static volatile int handled_in, handled_code, handled_pid, handled_uid, handled_count;

static void on_signal(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    handled_in = (int)syscall(SYS_gettid);
    handled_code = si->si_code;
    handled_pid = si->si_pid;
    handled_uid = (int)si->si_uid;
    handled_count = sig; /* which one, read by the main thread */
}

static int started_pipe[2], stop_pipe[2];

static void *worker(void *arg)
{
    (void)arg;
    worker_tid = (pid_t)syscall(SYS_gettid);
    char c = 1;
    t_write_all(started_pipe[1], &c, 1);
    /* Wait in read with nothing blocked, until the main thread says stop
     * (a handler interrupts it without SA_RESTART: EINTR, and the loop
     * reads again). */
    for (;;) {
        ssize_t n = read(stop_pipe[0], &c, 1);
        if (n == 1 || (n < 0 && errno != EINTR))
            return NULL;
    }
}

int main(void)
{
    int sigs[] = { SIGBUS, SIGSEGV, SIGSYS };
    const char *names[] = { "SIGBUS", "SIGSEGV", "SIGSYS" };
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO;
    sigset_t owned;
    sigemptyset(&owned);
    for (unsigned i = 0; i < 3; i++) {
        REQUIRE(sigaction(sigs[i], &sa, NULL) == 0, "sigaction");
        sigaddset(&owned, sigs[i]);
    }
    REQUIRE(pipe(started_pipe) == 0 && pipe(stop_pipe) == 0, "pipe");
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, worker, NULL) == 0, "pthread_create");
    char c;
    REQUIRE(read(started_pipe[0], &c, 1) == 1, "worker started");
    REQUIRE(pthread_sigmask(SIG_BLOCK, &owned, NULL) == 0, "block in main");

    for (unsigned i = 0; i < 3; i++) {
        int start = section_begin();
        handled_count = 0;
        EXPECT("kill", kill(getpid(), sigs[i]) == 0);
        for (int waited = 0; handled_count == 0 && waited < 10000; waited++)
            sleep_ms(1);
        EXPECT_EQ("handled", handled_count, sigs[i]);
        EXPECT("in the worker", handled_in == worker_tid);
        EXPECT_EQ("si_code", handled_code, SI_USER);
        EXPECT_EQ("si_pid", handled_pid, getpid());
        EXPECT_EQ("si_uid", handled_uid, (int)getuid());
        sigset_t pending;
        sigemptyset(&pending);
        EXPECT("sigpending", sigpending(&pending) == 0);
        EXPECT("not pending in main", !sigismember(&pending, sigs[i]));
        char what[64];
        snprintf(what, sizeof what, "%s sent to the process reaches the worker", names[i]);
        section_end(start, what);
    }
    char stop = 0;
    t_write_all(stop_pipe[1], &stop, 1);
    pthread_join(t, NULL);
    return finish();
}
