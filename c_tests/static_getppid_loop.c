// usertrap-test: exec
/*
 * Hard case: the fast path in a statically linked program.
 *
 * Why it is hard: LD_PRELOAD never reaches a static program, so the
 * launcher loads it and stays its interposer; patching its sites needs
 * function starts, and `gcc -static` links without .eh_frame_hdr (the index
 * the site check normally uses), so the launcher must find .eh_frame in the
 * section headers for a linear walk. tests/patching.rs checks the calls took
 * the fast path; here only that the results are right.
 *
 * Built statically (c_tests/static_*.c, see the Makefile). Calls getppid
 * 3,000 times from one site and checks every result against the first.
 */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    pid_t first = getppid();
    int wrong = 0;
    for (int i = 0; i < 3000; i++)
        if (getppid() != first)
            wrong++;
    printf("getppid 3000 times: %s\n", wrong ? "DIFFERED" : "same every time");
    return wrong != 0;
}
