/*
 * Hard case: a fork child killed by SIGTERM as soon as fork returns in
 * its parent (multiprocessing.Pool.terminate() does it to a worker its
 * pool had just started).
 *
 * Why it is hard for a syscall interposer: the child starts inside the
 * interposer's fork emulation with a copy of its parent's state (its pid
 * and thread id, its figures) and fixes it up first thing; the signal can
 * arrive before that, when the kernel returns to the child. A handler that
 * writes the report and sends the signal again with the ids it has kept
 * then reports as the parent and sends SIGTERM to the parent, and the
 * child, no longer under SIG_DFL's handler, runs on.
 *
 * What it checks: 300 rounds of fork and an immediate kill(SIGTERM): each
 * child dies of SIGTERM (it waits on a pipe; with its parent gone it would
 * exit 0) and the parent lives to count them.
 */
#include "common.h"

int main(void)
{
    int killed = 0;
    for (int i = 0; i < 300; i++) {
        int p[2];
        REQUIRE(pipe(p) == 0, "pipe");
        pid_t child = fork();
        REQUIRE(child >= 0, "fork");
        if (child == 0) {
            close(p[1]);
            char c;
            while (read(p[0], &c, 1) > 0)
                ;
            _exit(0);
        }
        close(p[0]);
        kill(child, SIGTERM);
        int st = wait_status(child);
        close(p[1]);
        if (WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM)
            killed++;
        else
            FAILF("round %d: the child ended with status %#x, not SIGTERM", i, st);
    }
    say("children killed by SIGTERM: %d\n", killed);
    return 0;
}
