/*
 * For the report tests: `forks N` forks N children that each call getppid
 * 100 times and exit 0; `threads N` runs N threads that each call getppid
 * 1000 times; `segv` calls getppid 10 times then writes through NULL;
 * `abort` calls getppid 10 times then abort()s; `sigsys` calls getppid 10
 * times then sends itself SIGSYS (its default action kills); `sigbus` calls
 * getppid 10 times then reads a shared mapping past its file's end (an
 * owned signal's fault, default action); `vfork-exit N`
 * starts a thread, vforks N children whose exec fails and that end with the
 * exit syscall itself (as Go's os/exec children do), lets the thread end,
 * then calls getppid 1000 times: a vfork child is no thread of its parent,
 * so the report, written when the last thread ends, must count them all;
 * `vfork-fork` vforks a child that forks a grandchild and exits (busybox
 * `timeout` does so): the grandchild, a process of its own, calls getppid
 * 100 times and exits 0, and the parent waits for its end (a pipe's EOF).
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void *worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++)
        getppid();
    return NULL;
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int done;

static void *waiter(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    while (!done)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    int n = argc > 2 ? atoi(argv[2]) : 0;
    if (strcmp(argv[1], "forks") == 0) {
        for (int i = 0; i < n; i++) {
            pid_t p = fork();
            if (p == 0) {
                for (int j = 0; j < 100; j++)
                    getppid();
                _exit(0);
            }
            waitpid(p, NULL, 0);
        }
    } else if (strcmp(argv[1], "threads") == 0) {
        pthread_t t[64];
        for (int i = 0; i < n && i < 64; i++)
            pthread_create(&t[i], NULL, worker, NULL);
        for (int i = 0; i < n && i < 64; i++)
            pthread_join(t[i], NULL);
    } else if (strcmp(argv[1], "vfork-exit") == 0) {
        pthread_t t;
        pthread_create(&t, NULL, waiter, NULL);
        for (int i = 0; i < n; i++) {
            pid_t p = vfork();
            if (p == 0) {
                char *args[] = {"/nonexistent/vfork-exit", NULL};
                execve(args[0], args, NULL);
                syscall(SYS_exit, 7);
            }
            int status = 0;
            if (waitpid(p, &status, 0) != p || !WIFEXITED(status) || WEXITSTATUS(status) != 7)
                return 3;
        }
        pthread_mutex_lock(&lock);
        done = 1;
        pthread_cond_signal(&cond);
        pthread_mutex_unlock(&lock);
        pthread_join(t, NULL);
        for (int i = 0; i < 1000; i++)
            getppid();
    } else if (strcmp(argv[1], "vfork-fork") == 0) {
        int fds[2];
        if (pipe(fds) != 0)
            return 4;
        pid_t p = vfork();
        if (p == 0) {
            if (fork() != 0)
                _exit(0);
            close(fds[0]);
            for (int j = 0; j < 100; j++)
                getppid();
            _exit(0);
        }
        close(fds[1]);
        int status = 0;
        if (waitpid(p, &status, 0) != p || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            return 3;
        char c;
        if (read(fds[0], &c, 1) != 0)
            return 5;
        printf("grandchild done\n");
    } else if (strcmp(argv[1], "segv") == 0 || strcmp(argv[1], "abort") == 0 || strcmp(argv[1], "sigsys") == 0
               || strcmp(argv[1], "sigbus") == 0) {
        for (int i = 0; i < 10; i++)
            getppid();
        fflush(stdout);
        if (strcmp(argv[1], "sigbus") == 0) {
            /* The file is gone (and empty) before the page is touched. */
            FILE *f = tmpfile();
            if (f && ftruncate(fileno(f), 4096) == 0) {
                char *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fileno(f), 0);
                if (p != MAP_FAILED && ftruncate(fileno(f), 0) == 0)
                    return *(volatile char *)p;
            }
        }
        if (strcmp(argv[1], "segv") == 0)
            *(volatile int *)0 = 1;
        if (strcmp(argv[1], "sigsys") == 0)
            kill(getpid(), SIGSYS);
        abort();
    }
    return 0;
}
