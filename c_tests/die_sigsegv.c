/*
 * Hard case: death by SIGSEGV with no handler installed by the program.
 *
 * Why it is hard for a syscall interposer: an interposer that installs its
 * own SIGSEGV handler (to chain to the program's) must make an unhandled
 * fault kill the process with SIGSEGV exactly as the default action does,
 * not exit with some code, loop, or die by another signal.
 *
 * What it checks: a line on stdout (written unbuffered before the crash),
 * then a write through a NULL pointer: the process dies by SIGSEGV.
 * RLIMIT_CORE is set to 0 so no core file appears in cwd.
 */
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int main(void)
{
    struct rlimit rl = { 0, 0 };
    setrlimit(RLIMIT_CORE, &rl);
    const char msg[] = "die_sigsegv: writing through a NULL pointer\n";
    if (write(1, msg, strlen(msg)) < 0)
        return 2;
    volatile int *volatile p = NULL;
    *p = 1;
    return 1;
}
