/*
 * A program built with a sanitizer (tests/runtimes.rs: -fsanitize=thread or
 * address): four threads add to a counter atomically, a fork child and a
 * file, then the program execs itself once (`sanitized child`), so that an
 * image started by usertrap-launcher runs the sanitizer's start-up too.
 * ThreadSanitizer checks every mapping at start-up and dies of one where it
 * keeps none (the library's gate used to be in such a range).
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int counter;

static void *add(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++)
        __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *who = argc > 1 && strcmp(argv[1], "child") == 0 ? "exec'd image" : "first image";
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, add, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    printf("%s: counter %d\n", who, __atomic_load_n(&counter, __ATOMIC_RELAXED));
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = fopen("child.txt", "w");
        if (f != NULL) {
            fputs("written by the fork child\n", f);
            fclose(f);
        }
        _exit(7);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    printf("%s: fork child exited %d\n", who, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    fflush(stdout);
    if (argc == 1) {
        execl("/proc/self/exe", argv[0], "child", (char *)NULL);
        perror("execl");
        return 1;
    }
    return 0;
}
