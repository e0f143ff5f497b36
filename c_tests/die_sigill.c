/*
 * Hard case: death by SIGILL from an invalid instruction (ud2), no handler.
 *
 * Why it is hard for a syscall interposer: a trap-then-patch interposer
 * keeps a SIGILL handler for its own patched sites; a #UD that is not one of
 * its sites must end the process by SIGILL as the default action would.
 *
 * What it checks: stdout line, ud2: death by SIGILL.
 * RLIMIT_CORE is set to 0 so no core file appears in cwd.
 */
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int main(void)
{
    struct rlimit rl = { 0, 0 };
    setrlimit(RLIMIT_CORE, &rl);
    const char msg[] = "die_sigill: executing ud2\n";
    if (write(1, msg, strlen(msg)) < 0)
        return 2;
    __asm__ volatile("ud2");
    return 1;
}
