// usertrap-test: exec
/*
 * A process whose last calls are a vfork, the child's execve and its own
 * exit, as the `cc` driver's: vfork + execve /bin/true, wait for it, then
 * exit with its status (0); one line is printed before the vfork.
 *
 * Why it is a case of its own: after a vfork the parent's per-thread area
 * still names the area set aside for the child until something looks it up.
 * The fast version of exit_group wants the thread's own area; it declined
 * (so the call took the slow path, although its site was patched) when no
 * other call came between the vfork and the exit. tests/sitecache.rs runs
 * it with a site cache that holds exit_group's site and checks that the
 * exit is fast; here it runs natively and under the library, compared.
 */
#include "common.h"

#include <sys/wait.h>

extern char **environ;

int main(void)
{
    printf("vfork, execve /bin/true, exit with its status\n");
    fflush(stdout);
    int st = t_vfork_true(environ);
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
}
