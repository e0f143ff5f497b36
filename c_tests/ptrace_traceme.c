/*
 * ptrace_traceme.c - a child asks to be traced (PTRACE_TRACEME) and its
 * parent traces it, as LTP's ptrace01/05 do: the parent must see exactly the
 * stops a native run shows (the child's own signals, the exec's SIGTRAP), no
 * signal of usertrap's. Unexpected stops are counted per signal and passed
 * on, so the child still finishes.
 *   1: raise(SIGUSR2), the tracer suppresses it; the child goes on, exit 0
 *   2: a SIGUSR1 handler; the tracer passes the signal; exit 3 from it
 *   3: SIGUSR1 with its default action, passed: killed by SIGUSR1
 *   4: exec of this program ("exec-child", exit 5): one SIGTRAP stop
 *   5: syscalls made before (so usertrap patched their sites), then
 *      raise(SIGSTOP) and PTRACE_SYSCALL: every syscall stop must show the
 *      program's own code as the instruction pointer, not usertrap's gate
 *      (0x7e9000000000): patched sites are put back
 */
#include "common.h"
#include <fcntl.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>

static volatile sig_atomic_t handled;

static void on_usr1(int sig)
{
    (void)sig;
    handled = 1;
}

/* Syscalls of all kinds after the stop, so a trap would show. */
static void busy(void)
{
    char buf[16];
    int fd = open("/dev/null", O_RDONLY);
    for (int i = 0; i < 50; i++) {
        (void)getppid();
        (void)read(fd, buf, sizeof buf);
    }
    close(fd);
}

static void child(int which, const char *self)
{
    if (which == 5)
        busy();
    if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0)
        _exit(100);
    busy();
    switch (which) {
    case 1:
        raise(SIGUSR2);
        busy();
        _exit(0);
    case 2:
        signal(SIGUSR1, on_usr1);
        raise(SIGUSR1);
        busy();
        _exit(handled ? 3 : 4);
    case 3:
        raise(SIGUSR1);
        _exit(6);
    case 4:
        execl(self, self, "exec-child", (char *)NULL);
        _exit(101);
    case 5:
        raise(SIGSTOP);
        busy();
        _exit(0);
    }
    _exit(102);
}

/* Trace one child: `expected` stops (signal numbers, in order), each
 * continued with the signal if `pass` says so. Prints what happened. */
static void trace(int which, const char *self, const int *expected, int n_expected, int pass)
{
    pid_t pid = fork();
    if (pid < 0) {
        FAILF("fork: %s", strerror(errno));
        return;
    }
    if (pid == 0)
        child(which, self);
    int seen = 0, unexpected[65] = {0}, st, from_gate = 0;
    for (;;) {
        if (waitpid(pid, &st, 0) != pid) {
            FAILF("case %d: waitpid: %s", which, strerror(errno));
            return;
        }
        if (!WIFSTOPPED(st))
            break;
        int sig = WSTOPSIG(st);
        if (which == 5 && sig == (SIGTRAP | 0x80)) {
            struct user_regs_struct regs;
            if (ptrace(PTRACE_GETREGS, pid, NULL, &regs) == 0 && (regs.rip >> 32) == 0x7e90)
                from_gate++;
            ptrace(PTRACE_SYSCALL, pid, NULL, NULL);
            continue;
        }
        if (which == 5 && sig == SIGSTOP && seen == 0) {
            seen++;
            ptrace(PTRACE_SETOPTIONS, pid, NULL, (void *)(long)PTRACE_O_TRACESYSGOOD);
            ptrace(PTRACE_SYSCALL, pid, NULL, NULL);
            continue;
        }
        if (seen < n_expected && sig == expected[seen]) {
            seen++;
            ptrace(PTRACE_CONT, pid, NULL, (void *)(long)(pass && sig != SIGTRAP ? sig : 0));
        } else {
            if (sig > 0 && sig < 65)
                unexpected[sig]++;
            ptrace(PTRACE_CONT, pid, NULL, (void *)(long)sig);
        }
    }
    say("case %d: %d of %d expected stops, then %s %d\n", which, seen, n_expected,
        WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    if (from_gate)
        say("case %d: syscall stops at usertrap's gate: %d\n", which, from_gate);
    for (int s = 1; s < 65; s++)
        if (unexpected[s])
            say("case %d: unexpected %s stops: %d\n", which, strsignal(s), unexpected[s]);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "exec-child") == 0) {
        busy();
        return 5;
    }
    int usr2[] = {SIGUSR2}, usr1[] = {SIGUSR1}, trap[] = {SIGTRAP};
    trace(1, argv[0], usr2, 1, 0);
    trace(2, argv[0], usr1, 1, 1);
    trace(3, argv[0], usr1, 1, 1);
    trace(4, argv[0], trap, 1, 0);
    int stop[] = {SIGSTOP};
    trace(5, argv[0], stop, 1, 0);
    return t_failure_count() ? 1 : 0;
}
