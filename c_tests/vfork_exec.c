// usertrap-test: exec
/*
 * Hard case: vfork (and vfork + execve).
 *
 * Why it is hard for a syscall interposer: after vfork the child runs first,
 * on the parent's stack and with the parent's %fs, while the parent is
 * suspended inside the same syscall.  Whatever the interposer pushes or
 * pops, or keeps in per-thread (TLS) state, on the way back from the vfork
 * syscall in the child is then seen again by the parent when it resumes: a
 * return address kept on the stack and overwritten by the child sends the
 * parent to the wrong place.  execve from the child must also work under the
 * interposer (a seccomp filter survives execve).
 *
 * What it checks:
 *  - vfork + execve /bin/true -> exit 0; vfork + execve /bin/echo with a
 *    fixed argument (the line appears on stdout); execve of a missing file
 *    fails in the child with ENOENT.
 *  - vfork child that sets a variable and _exit(3)s: the parent sees the
 *    variable already set when vfork returns (child ran first) and status 3.
 *  - 200 vforks in a loop with local variables checked afterwards (stack not
 *    corrupted), each child making a syscall before _exit.
 *  - vfork issued by inline asm (`mov $58,%eax; syscall`, the patchable
 *    form) 50 times, the child leaving through a raw exit_group.
 *  - vfork from a second thread while the main thread keeps making syscalls.
 */
#include "common.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/wait.h>

extern char **environ;

static volatile int g_child_ran;
static volatile int g_child_errno;
static volatile long g_child_pid_seen;


static void test_exec_true(void)
{
    int s = section_begin();
    int st = t_vfork_true(environ);
    EXPECT("true exited", WIFEXITED(st));
    EXPECT_EQ("true status", WEXITSTATUS(st), 0);
    section_end(s, "vfork+execve /bin/true");
}

static void test_exec_echo(void)
{
    int s = section_begin();
    char *argv[] = { "echo", "vfork-echo: this line comes from /bin/echo", NULL };
    pid_t pid = vfork();
    if (pid == 0) {
        execve("/bin/echo", argv, environ);
        _exit(127);
    }
    REQUIRE(pid > 0, "vfork");
    int st = wait_status(pid);
    EXPECT("echo exited", WIFEXITED(st));
    EXPECT_EQ("echo status", WEXITSTATUS(st), 0);
    section_end(s, "vfork+execve /bin/echo");
}

static void test_exec_missing(void)
{
    int s = section_begin();
    char *argv[] = { "missing", NULL };
    g_child_errno = 0;
    pid_t pid = vfork();
    if (pid == 0) {
        execve("/nonexistent/usertrap-missing-program", argv, environ);
        g_child_errno = errno;
        _exit(9);
    }
    REQUIRE(pid > 0, "vfork");
    int st = wait_status(pid);
    EXPECT("child exited", WIFEXITED(st));
    EXPECT_EQ("child status", WEXITSTATUS(st), 9);
    EXPECT_EQ("execve errno in child", g_child_errno, ENOENT);
    section_end(s, "vfork+execve of a missing file fails with ENOENT");
}

static void test_exit3(void)
{
    int s = section_begin();
    g_child_ran = 0;
    g_child_pid_seen = 0;
    pid_t pid = vfork();
    if (pid == 0) {
        g_child_pid_seen = getpid();
        g_child_ran = 1;
        _exit(3);
    }
    REQUIRE(pid > 0, "vfork");
    /* The parent resumes only after the child has exited. */
    EXPECT_EQ("child ran before parent resumed", g_child_ran, 1);
    EXPECT_EQ("child's getpid is the vfork return value", g_child_pid_seen, pid);
    int st = wait_status(pid);
    EXPECT("child exited", WIFEXITED(st));
    EXPECT_EQ("child status", WEXITSTATUS(st), 3);
    section_end(s, "vfork child _exit(3), ran first");
}

/* vfork a child that makes one syscall, records the result and _exits. */
static __attribute__((noinline)) pid_t vfork_and_exit(int code, pid_t me)
{
    pid_t pid = vfork();
    if (pid == 0) {
        g_child_ran = (getppid() == me) ? 1 : 2;
        _exit(code);
    }
    return pid;
}

static void test_loop(void)
{
    int s = section_begin();
    volatile unsigned long guard[16];
    for (int i = 0; i < 16; i++)
        guard[i] = 0xabcdef0000000000UL + (unsigned long)i * 0x1111;
    pid_t me = getpid();
    for (int i = 0; i < 200; i++) {
        g_child_ran = 0;
        pid_t pid = vfork_and_exit(i & 0x7f, me);
        if (pid < 0) {
            FAILF("vfork %d failed", i);
            break;
        }
        if (g_child_ran != 1)
            FAILF("iteration %d: child flag %d", i, g_child_ran);
        int st = wait_status(pid);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != (i & 0x7f))
            FAILF("iteration %d: status 0x%x", i, st);
    }
    for (int i = 0; i < 16; i++)
        if (guard[i] != 0xabcdef0000000000UL + (unsigned long)i * 0x1111)
            FAILF("stack guard %d corrupted", i);
    section_end(s, "200 vforks in a loop, parent stack intact");
}

/* vfork through the patchable `mov $58,%eax; syscall` form; the child sets
 * *flag and leaves with a raw exit_group(code) without touching the stack. */
static long __attribute__((noinline)) asm_vfork_exit(int code, volatile int *flag)
{
    long ret;
    __asm__ volatile("mov $58, %%eax\n\t"
                     "syscall\n\t"
                     "test %%rax, %%rax\n\t"
                     "jnz 1f\n\t"
                     "movl $1, (%[flag])\n\t"
                     "mov %[code], %%edi\n\t"
                     "mov $231, %%eax\n\t"
                     "syscall\n\t"
                     "ud2\n"
                     "1:\n\t"
                     : "=&a"(ret)
                     : [flag] "r"(flag), [code] "r"(code)
                     : "rcx", "r11", "rdi", "memory");
    return ret;
}

static void test_asm_vfork(void)
{
    int s = section_begin();
    volatile unsigned long guard = 0x5a5a5a5a12345678UL;
    for (int i = 0; i < 50; i++) {
        g_child_ran = 0;
        long pid = asm_vfork_exit(10 + i, &g_child_ran);
        if (pid <= 0) {
            FAILF("asm vfork %d returned %ld", i, pid);
            break;
        }
        if (g_child_ran != 1)
            FAILF("asm vfork %d: child did not run first", i);
        int st = wait_status((pid_t)pid);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 10 + i)
            FAILF("asm vfork %d: status 0x%x", i, st);
    }
    EXPECT_EQ("guard", guard, 0x5a5a5a5a12345678UL);
    section_end(s, "50 vforks via inline mov $58,%eax; syscall");
}

static volatile int g_stop_spinner;

static void *spinner(void *unused)
{
    (void)unused;
    long n = 0;
    while (!__atomic_load_n(&g_stop_spinner, __ATOMIC_ACQUIRE)) {
        if (getppid() <= 0)
            FAILF("spinner getppid");
        n++;
    }
    return (void *)n;
}

static void *vforker(void *unused)
{
    (void)unused;
    pid_t me = getpid();
    for (int i = 0; i < 20; i++) {
        g_child_ran = 0;
        pid_t pid = vfork_and_exit(20 + i, me);
        if (pid < 0 || g_child_ran != 1) {
            FAILF("thread vfork %d", i);
            continue;
        }
        int st = wait_status(pid);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 20 + i)
            FAILF("thread vfork %d status 0x%x", i, st);
    }
    char *argv[] = { "true", NULL };
    pid_t pid = vfork();
    if (pid == 0) {
        execve("/bin/true", argv, environ);
        _exit(127);
    }
    int st = wait_status(pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        FAILF("thread vfork+exec status 0x%x", st);
    return NULL;
}

static void test_thread_vfork(void)
{
    int s = section_begin();
    pthread_t sp, vf;
    REQUIRE(pthread_create(&sp, NULL, spinner, NULL) == 0, "spinner");
    REQUIRE(pthread_create(&vf, NULL, vforker, NULL) == 0, "vforker");
    pthread_join(vf, NULL);
    __atomic_store_n(&g_stop_spinner, 1, __ATOMIC_RELEASE);
    pthread_join(sp, NULL);
    section_end(s, "vfork from a second thread while another thread runs");
}

int main(void)
{
    test_exec_true();
    test_exec_echo();
    test_exec_missing();
    test_exit3();
    test_loop();
    test_asm_vfork();
    test_thread_vfork();
    return finish();
}
