/*
 * Hard case: the value of errno when main starts.
 *
 * Why it is hard for a syscall interposer: a preloaded library's constructor
 * runs before main, and any libc call it makes that fails (a missing file,
 * an unknown variable) leaves errno set; programs that check errno without
 * a failed call first (wrongly, but they exist) then see a value natively 0.
 *
 * What it checks: errno is 0 at the first line of main.
 */
#include "common.h"

int main(void)
{
    int e = errno;
    int s = section_begin();
    EXPECT_EQ("errno at the start of main", e, 0);
    section_end(s, "errno is 0 when main starts");
    return finish();
}
