/*
 * A program that runs for about 3.5 s: 35 rounds of 100 getppid calls
 * and a 100 ms nanosleep, then one line. For `usertrap stat -i`: its
 * counts grow while it runs, and the final ones are fixed (3,500 getppid,
 * 35 nanosleep: clock_nanosleep through glibc).
 *   live_loop [ROUNDS]   (default 35)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 35;
    long sum = 0;
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < 100; i++)
            sum += getppid() > 0;
        struct timespec ts = {0, 100 * 1000 * 1000};
        while (nanosleep(&ts, &ts) != 0)
            ;
    }
    printf("getppid: %ld\n", sum);
    return 0;
}
