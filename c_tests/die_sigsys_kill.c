/*
 * Hard case: a SIGSYS sent with kill() while SIGSYS has its default action.
 *
 * Why it is hard for a syscall interposer: the interposer has its own SIGSYS
 * handler installed, so this SIGSYS (si_code SI_USER, not SYS_SECCOMP/SUD)
 * arrives there; it must recognise it is not a trapped syscall and apply
 * the program's disposition, which is the default: terminate by SIGSYS.
 *
 * What it checks: stdout line, then kill(getpid(), SIGSYS): death by SIGSYS.
 * RLIMIT_CORE is set to 0 so no core file appears in cwd.
 */
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int main(void)
{
    struct rlimit rl = { 0, 0 };
    setrlimit(RLIMIT_CORE, &rl);
    const char msg[] = "die_sigsys_kill: kill(getpid(), SIGSYS) with default action\n";
    if (write(1, msg, strlen(msg)) < 0)
        return 2;
    kill(getpid(), SIGSYS);
    const char bad[] = "FAIL: still alive after SIGSYS\n";
    if (write(1, bad, strlen(bad)) < 0)
        return 3;
    return 1;
}
