/*
 * Hard case: the program reads its no_new_privs flag (PR_GET_NO_NEW_PRIVS)
 * and sets it itself (LTP prctl02, prctl06).
 *
 * Why it is hard for a syscall interposer: a seccomp filter needs
 * no_new_privs unless the caller has CAP_SYS_ADMIN; the flag is permanent,
 * inherited and visible, and changes what set-user-ID exec and landlock do.
 * An interposer must set it only when it has to (and say so).
 *
 * What it checks (run with CAP_SYS_ADMIN, as the test suite is): the flag
 * is 0 at start and in a forked child, 1 after the program sets it.
 */
#include "common.h"

#include <sys/prctl.h>
#include <sys/wait.h>

int main(void)
{
    int s = section_begin();
    EXPECT_EQ("PR_GET_NO_NEW_PRIVS at start", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), 0);
    pid_t pid = fork();
    if (pid == 0)
        _exit(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 0 ? 0 : 1);
    int st = -1;
    waitpid(pid, &st, 0);
    EXPECT("a forked child sees 0", WIFEXITED(st) && WEXITSTATUS(st) == 0);
    EXPECT_EQ("PR_SET_NO_NEW_PRIVS", prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    EXPECT_EQ("PR_GET_NO_NEW_PRIVS after setting it", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), 1);
    section_end(s, "no_new_privs: 0 at start, 1 once the program sets it");
    return finish();
}
