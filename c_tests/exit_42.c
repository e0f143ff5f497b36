/*
 * Hard case: exit status propagation (plain exit with a non-zero code).
 *
 * Why it is hard for a syscall interposer: exit_group is the one syscall
 * that never returns; the interposer must run it for real (not emulate a
 * return) with the program's status, after stdio's buffers were flushed by
 * write calls that went through the interposer from inside exit().
 *
 * What it checks: a line printed through stdio (buffered, flushed by exit),
 * an atexit handler's line, a line on stderr, and exit status 42.
 */
#include <stdio.h>
#include <stdlib.h>

static void at_exit_handler(void)
{
    printf("exit_42: atexit handler ran\n");
}

int main(void)
{
    atexit(at_exit_handler);
    printf("exit_42: about to exit with status 42\n");
    fprintf(stderr, "exit_42: this line goes to stderr\n");
    exit(42);
}
