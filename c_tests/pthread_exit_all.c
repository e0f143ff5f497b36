/*
 * Hard case: every thread but main leaves through pthread_exit (with TLS
 * destructors that make syscalls during thread teardown), then main returns.
 *
 * Why it is hard for a syscall interposer: pthread_exit unwinds the thread
 * and runs key destructors, then glibc frees/caches the stack and issues the
 * final exit syscall on a stack that is being released; the interposer's
 * per-thread state must survive syscalls made during teardown and be
 * released (or reused correctly) after the thread is gone.  Detached
 * threads exit while main keeps going; main then returns normally.
 *
 * What it checks: 16 joinable threads call pthread_exit from a nested
 * function with distinct values (checked by join); 8 detached threads
 * pthread_exit; a thread-specific-data destructor runs for each of the 24
 * threads and writes a byte to a pipe (24 bytes read back); main then
 * returns 0 after printing a summary.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

static pthread_key_t g_key;
static int g_pipe[2];
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
static int g_detached_done;
static int g_fail;

static void destructor(void *v)
{
    char c = (char)(uintptr_t)v;
    if (write(g_pipe[1], &c, 1) != 1)
        __atomic_add_fetch(&g_fail, 1, __ATOMIC_SEQ_CST);
}

static __attribute__((noinline)) void leave(uintptr_t value)
{
    if (getppid() <= 0)
        __atomic_add_fetch(&g_fail, 1, __ATOMIC_SEQ_CST);
    pthread_exit((void *)value);
}

static void *joinable(void *p)
{
    uintptr_t i = (uintptr_t)p;
    pthread_setspecific(g_key, (void *)(i + 1));
    for (int k = 0; k < 50; k++)
        if (getpid() <= 0)
            __atomic_add_fetch(&g_fail, 1, __ATOMIC_SEQ_CST);
    leave(i * 11 + 5);
    return NULL;
}

static void *detached(void *p)
{
    uintptr_t i = (uintptr_t)p;
    pthread_setspecific(g_key, (void *)(i + 100));
    pthread_mutex_lock(&g_lock);
    g_detached_done++;
    pthread_cond_signal(&g_cond);
    pthread_mutex_unlock(&g_lock);
    leave(0);
    return NULL;
}

int main(void)
{
    if (pipe(g_pipe) != 0 || pthread_key_create(&g_key, destructor) != 0)
        return 2;
    pthread_t t[16];
    for (uintptr_t i = 0; i < 16; i++)
        if (pthread_create(&t[i], NULL, joinable, (void *)i) != 0)
            return 2;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    for (uintptr_t i = 0; i < 8; i++) {
        pthread_t d;
        if (pthread_create(&d, &at, detached, (void *)i) != 0)
            return 2;
    }
    int bad_values = 0;
    for (uintptr_t i = 0; i < 16; i++) {
        void *ret;
        if (pthread_join(t[i], &ret) != 0 || (uintptr_t)ret != i * 11 + 5)
            bad_values++;
    }
    pthread_mutex_lock(&g_lock);
    while (g_detached_done < 8)
        pthread_cond_wait(&g_cond, &g_lock);
    pthread_mutex_unlock(&g_lock);
    /* every destructor writes one byte; the detached ones may still be
     * finishing, so read exactly 24 bytes (blocking) */
    int bytes = 0;
    char buf[32];
    while (bytes < 24) {
        ssize_t n = read(g_pipe[0], buf, sizeof buf);
        if (n <= 0)
            break;
        bytes += (int)n;
    }
    printf("pthread_exit_all: joined values %s\n", bad_values ? "FAIL" : "ok");
    printf("pthread_exit_all: destructor bytes %s\n", bytes == 24 ? "ok" : "FAIL");
    printf("pthread_exit_all: syscalls in threads %s\n", g_fail ? "FAIL" : "ok");
    int rc = (bad_values || bytes != 24 || g_fail) ? 1 : 0;
    printf("pthread_exit_all: main returns %d\n", rc);
    return rc;
}
