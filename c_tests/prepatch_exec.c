// usertrap-test: exec
/*
 * Pre-patching across exec (USERTRAP_PREPATCH): a site is on the fast path
 * from its first call in an exec'd image when the image that exec'd it had
 * patched it.
 *
 * "prepatch_exec": writes, reads and closes through libc's write(2),
 * read(2) and close(2) three times (so their sites get patched), then
 * execs itself as "prepatch_exec child", which calls each of them exactly
 * once (its report shows whether that first call was fast). Both print
 * what they did; the output is the same natively. The parent also calls
 * getrlimit(2) (libc's __getrlimit): libc's own start-up calls it in the
 * child before any constructor (RLIMIT_STACK), at the same site, where
 * only the launcher can have patched it.
 */
#include "common.h"

#include <sys/resource.h>

static void round_trip(const char *who, int round)
{
    int p[2];
    char buf[16] = {0};
    if (pipe(p) != 0) {
        perror("pipe");
        exit(1);
    }
    ssize_t w = write(p[1], "ping", 4);
    ssize_t r = read(p[0], buf, sizeof buf - 1);
    int c1 = close(p[0]);
    int c2 = close(p[1]);
    printf("%s %d: wrote %zd, read %zd (%s), closed %d %d\n", who, round, w, r, buf, c1, c2);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        round_trip("child", 0);
        return 0;
    }
    struct rlimit rl;
    printf("parent: getrlimit %d\n", getrlimit(RLIMIT_STACK, &rl));
    for (int i = 0; i < 3; i++)
        round_trip("parent", i);
    execl(argv[0], argv[0], "child", (char *)NULL);
    perror("execl");
    return 127;
}
