/*
 * Hard case: death by SIGABRT through abort().
 *
 * Why it is hard for a syscall interposer: glibc's abort() blocks and
 * unblocks signals, raises SIGABRT with tgkill and, should that return,
 * resets the disposition and raises again; every one of those syscalls is
 * intercepted, and the process must still die by SIGABRT.
 *
 * What it checks: stdout line flushed before abort(); death by SIGABRT.
 * RLIMIT_CORE is set to 0 so no core file appears in cwd.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

int main(void)
{
    struct rlimit rl = { 0, 0 };
    setrlimit(RLIMIT_CORE, &rl);
    printf("die_abort: calling abort()\n");
    fflush(stdout);
    abort();
}
