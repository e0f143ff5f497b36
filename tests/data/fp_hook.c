/*
 * A syscall hook that uses floating point and vector registers on purpose,
 * preloaded after libusertrap.so. Its before and after hooks run for every
 * intercepted syscall (on the fast path too) and churn through xmm/ymm/zmm
 * registers, the x87 stack and MXCSR-dependent arithmetic; a program under
 * it must still see every register as the syscall ABI promises. At exit it
 * reports how often it ran, on stderr.
 */
#include <stdio.h>
#include <string.h>

struct usertrap_call { long nr; unsigned long args[6]; long result; };
int usertrap_set_hooks(int (*before)(struct usertrap_call *, void *),
                       void (*after)(struct usertrap_call *, void *), void *user);

static volatile double acc[64];
static volatile long double x87;
static unsigned long calls;

__attribute__((target("avx2"))) static void churn_avx2(long nr)
{
    double tmp[64];
    for (int i = 0; i < 64; i++)
        tmp[i] = acc[i] * 1.000001 + (double)nr * 0.5 + i / 3.0;
    for (int i = 0; i < 64; i++)
        acc[i] = tmp[i];
}

static void churn(long nr)
{
    if (__builtin_cpu_supports("avx2"))
        churn_avx2(nr);
    else
        for (int i = 0; i < 64; i++)
            acc[i] = acc[i] * 1.000001 + (double)nr * 0.25;
    x87 = x87 * 1.0000001L + (long double)nr / 7.0L;
}

static int before(struct usertrap_call *c, void *user)
{
    (void)user;
    churn(c->nr);
    return 0;
}

static void after(struct usertrap_call *c, void *user)
{
    (void)user;
    churn(c->nr + 1);
    __atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED);
}

__attribute__((constructor)) static void install(void)
{
    usertrap_set_hooks(before, after, NULL);
}

__attribute__((destructor)) static void report(void)
{
    usertrap_set_hooks(NULL, NULL, NULL);
    char line[64];
    int n = snprintf(line, sizeof line, "fp_hook: %lu calls\n", calls);
    fwrite(line, 1, (size_t)n, stderr);
}
