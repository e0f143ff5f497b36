/*
 * usertrap-test: timeout=60
 *
 * Hard case: another process sends SIGSEGV and SIGILL with kill(2), as fast
 * as it can, to a program that handles both and keeps making syscalls.
 *
 * Why it is hard for a syscall interposer: the interposer's own fault
 * handlers (fault-tolerant copies of user memory, patched sites that fault
 * on purpose) see these signals first.  A signal sent by kill (si_code
 * SI_USER <= 0) is never a fault, wherever the thread was when it arrived:
 * taking it for the interposer's own fault resumes a copy at its error exit
 * (a spurious EFAULT, or a thread area taken for someone else's), or runs a
 * patched site's syscall instead of calling the program's handler.
 *
 * What it checks: three children send 150,000 SIGSEGV and 150,000 SIGILL each
 * with kill
 * while the parent loops over syscalls that read and write its memory
 * (sigaction, sigprocmask, read/write of a pipe, getppid, clock_gettime);
 * every syscall returns what it should, every signal that reaches the handler
 * is SI_USER from a sender, at least one of each arrives, and the program
 * ends normally.
 */
#include "common.h"

#include <fcntl.h>
#include <sys/wait.h>

#define SENDERS 3
#define SIGNALS 150000

static pid_t senders[SENDERS];
static volatile long g_segv, g_ill, g_bad;

static void on_signal(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    int from_sender = 0;
    for (int k = 0; k < SENDERS; k++)
        from_sender |= si->si_pid == senders[k];
    if (si->si_code != SI_USER || !from_sender)
        g_bad++;
    if (sig == SIGSEGV)
        g_segv++;
    else
        g_ill++;
}

static void on_usr1(int sig)
{
    (void)sig;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    REQUIRE(sigaction(SIGSEGV, &sa, NULL) == 0, "sigaction SIGSEGV");
    REQUIRE(sigaction(SIGILL, &sa, NULL) == 0, "sigaction SIGILL");

    int go[2], data[2];
    REQUIRE(pipe(go) == 0 && pipe(data) == 0, "pipes");
    pid_t parent = getpid();
    for (int k = 0; k < SENDERS; k++) {
        pid_t pid = fork();
        REQUIRE(pid >= 0, "fork");
        if (pid == 0) {
            char c;
            close(go[1]);
            if (read(go[0], &c, 1) != 1)
                _exit(3);
            for (int i = 0; i < SIGNALS; i++) {
                if (kill(parent, SIGSEGV) != 0 || kill(parent, SIGILL) != 0)
                    _exit(4);
            }
            _exit(0);
        }
        senders[k] = pid;
    }
    close(go[0]);
    REQUIRE(write(go[1], "gggg", SENDERS) == SENDERS, "start the senders");

    int s = section_begin();
    long bad_calls = 0, rounds = 0;
    int done = 0, all_sent = 1;
    while (done < SENDERS) {
        int st = -1;
        pid_t w = waitpid(-1, &st, WNOHANG);
        if (w > 0) {
            done++;
            all_sent &= WIFEXITED(st) && WEXITSTATUS(st) == 0;
            continue;
        }
        if (w != 0) {
            FAILF("waitpid %d (errno %d)", (int)w, errno);
            break;
        }
        rounds++;
        struct sigaction in, out;
        memset(&in, 0, sizeof in);
        in.sa_handler = on_usr1;
        sigemptyset(&in.sa_mask);
        sigaddset(&in.sa_mask, SIGUSR2);
        if (sigaction(SIGUSR1, &in, NULL) != 0 || sigaction(SIGUSR1, NULL, &out) != 0 || out.sa_handler != on_usr1
            || !sigismember(&out.sa_mask, SIGUSR2))
            bad_calls++;
        sigset_t m, old;
        sigemptyset(&m);
        sigaddset(&m, SIGUSR2);
        if (sigprocmask(SIG_BLOCK, &m, &old) != 0 || sigprocmask(SIG_SETMASK, &old, NULL) != 0)
            bad_calls++;
        char buf[16] = "0123456789abcdef", in_buf[16];
        ssize_t n = write(data[1], buf, sizeof buf);
        if (n != (ssize_t)sizeof buf) {
            if (!(n < 0 && errno == EINTR))
                bad_calls++;
        } else {
            ssize_t r;
            while ((r = read(data[0], in_buf, sizeof in_buf)) < 0 && errno == EINTR)
                ;
            if (r != (ssize_t)sizeof in_buf || memcmp(buf, in_buf, sizeof buf) != 0)
                bad_calls++;
        }
        if (getppid() <= 0)
            bad_calls++;
        struct timespec ts;
        if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
            bad_calls++;
    }
    EXPECT("the senders sent every signal", all_sent);
    EXPECT_EQ("syscalls that went wrong during the storm", bad_calls, 0);
    EXPECT_EQ("signals that were not SI_USER from the sender", g_bad, 0);
    EXPECT("some SIGSEGV reached the handler", g_segv > 0);
    EXPECT("some SIGILL reached the handler", g_ill > 0);
    EXPECT("the loop ran", rounds > 0);
    section_end(s, "kill -SEGV / kill -ILL storm during syscalls: handled as natively");
    return finish();
}
