// usertrap-test: exec
/*
 * Hard case: a process that may not make written memory executable, the
 * policy of systemd's MemoryDenyWriteExecute= (a seccomp filter refusing
 * mprotect/pkey_mprotect with PROT_EXEC and mmap with PROT_WRITE|PROT_EXEC)
 * and of prctl(PR_SET_MDWE) (Linux 6.3+; inherited, kept across exec).
 *
 * Why it is hard for a syscall interposer: it needs executable code of its
 * own at run time (a syscall gate, trampolines). The obvious way, map a
 * page writable, fill it, mprotect it executable, is refused, and a gate
 * left non-executable kills the program with SIGSEGV at its first syscall;
 * natively such programs run (only their own JIT would be refused).
 *
 * What it does: a child sets the policy (each way) and execs this program
 * again, which checks that the policy holds (mprotect(PROT_EXEC) refused,
 * as natively), makes calls, runs a thread, forks, and exits with a code of
 * its own; the parent prints each child's end.
 */
#include "common.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#endif
#ifndef PR_MDWE_REFUSE_EXEC_GAIN
#define PR_MDWE_REFUSE_EXEC_GAIN 1
#endif

#define NR_ARG(i) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[i]))

/* systemd's MemoryDenyWriteExecute=, in short. */
static int install_mdwe_filter(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_mmap, 0, 4),
        NR_ARG(2),
        BPF_STMT(BPF_ALU | BPF_AND | BPF_K, PROT_WRITE | PROT_EXEC),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PROT_WRITE | PROT_EXEC, 5, 6),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_mprotect, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pkey_mprotect, 0, 3),
        NR_ARG(2),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

static void *thread_main(void *arg)
{
    return (void *)(long)(getppid() > 0) + (long)arg;
}

/* The exec'd image, under the policy. */
static int under_policy(const char *how)
{
    long page = sysconf(_SC_PAGESIZE);
    void *p = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return 10;
    int r = mprotect(p, (size_t)page, PROT_READ | PROT_EXEC);
    say("%s: mprotect(PROT_EXEC) = %d (%s)\n", how, r, r == 0 ? "allowed" : "refused");
    int sum = 0;
    for (int i = 0; i < 1000; i++)
        sum += getppid() > 0;
    pthread_t t;
    void *ret = NULL;
    if (pthread_create(&t, NULL, thread_main, (void *)1L) != 0 || pthread_join(t, &ret) != 0)
        return 11;
    pid_t pid = fork();
    if (pid == 0)
        _exit(7);
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return 12;
    say("%s: calls %d, thread %ld, fork child %d\n", how, sum, (long)ret, WEXITSTATUS(status));
    return 33;
}

static void run(const char *self, const char *how)
{
    pid_t pid = fork();
    if (pid == 0) {
        int r;
        if (strcmp(how, "mdwe") == 0) {
            r = prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0);
            if (r != 0 && errno == EINVAL) {
                /* Kernel without PR_SET_MDWE: the same lines as with it. */
                say("mdwe: mprotect(PROT_EXEC) = -1 (refused)\n");
                say("mdwe: calls 1000, thread 2, fork child 7\n");
                _exit(33);
            }
        } else {
            r = install_mdwe_filter();
        }
        if (r != 0)
            _exit(90);
        execl(self, self, how, (char *)NULL);
        _exit(91);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) {
        say("FAIL: %s: no child\n", how);
        return;
    }
    if (WIFSIGNALED(status))
        say("%s: killed by signal %d\n", how, WTERMSIG(status));
    else
        say("%s: exit %d\n", how, WEXITSTATUS(status));
}

int main(int argc, char **argv)
{
    if (argc > 1)
        return under_policy(argv[1]);
    run(argv[0], "mdwe");
    run(argv[0], "filter");
    return 0;
}
