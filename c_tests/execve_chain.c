// usertrap-test: exec
/*
 * Hard case: a chain of execs of the program itself, carrying state the
 * kernel preserves across execve: ignored and blocked signals (SIGSYS
 * among them), the pid; with scrubbed environments; through execve,
 * fexecve and execveat; from a multithreaded process and from a non-main
 * thread.
 *
 * Why it is hard for a syscall interposer: a seccomp filter survives
 * execve but handlers do not, so a new image that starts with SIGSYS
 * blocked or ignored is killed by its first trapped syscall unless the
 * interposer arranged otherwise; the program's envp may drop LD_PRELOAD;
 * exec from a secondary thread kills the other threads (possibly inside the
 * interposer) and the execing thread takes over the leader's pid.  The new
 * image must see SIG_IGN and the blocked mask exactly as the old one left
 * them.
 *
 * Stages (argv[1]): 0 (as started) ignores SIGSYS and SIGUSR2, blocks
 * SIGSYS and SIGUSR1, execve -> 1 checks that state and execs with envp
 * {STAGE=2} -> 2 checks the env, restores defaults, fexecve -> 3 starts a
 * thread blocked in read and execveat from main -> 4 execs from a second
 * thread -> 5 checks the pid is unchanged, writes exec_chain.txt, exits 0.
 * Each stage prints one line.
 */
#include "common.h"

#include <fcntl.h>
#include <pthread.h>

extern char **environ;

static char g_self[4096];
static char g_pidbuf[32];

static void exec_stage(const char *stage, char **envp)
{
    if (t_failure_count() != 0)
        exit(finish()); /* stop the chain at the first failing stage */
    char *argv[] = { "execve_chain", (char *)stage, g_pidbuf, NULL };
    execve(g_self, argv, envp);
    FAILF("execve stage %s errno %d", stage, errno);
    exit(1);
}

static int g_block_pipe[2];

static void *blocked_reader(void *unused)
{
    (void)unused;
    char c;
    ssize_t r = read(g_block_pipe[0], &c, 1);
    FAILF("blocked reader returned %zd", r);
    return NULL;
}

static void *exec_from_thread(void *unused)
{
    (void)unused;
    exec_stage("5", environ);
    return NULL;
}

int main(int argc, char **argv)
{
    ssize_t n = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
    REQUIRE(n > 0, "readlink /proc/self/exe");
    g_self[n] = 0;
    int stage = argc >= 2 ? atoi(argv[1]) : 0;
    if (argc >= 3)
        snprintf(g_pidbuf, sizeof g_pidbuf, "%s", argv[2]);
    else
        snprintf(g_pidbuf, sizeof g_pidbuf, "%d", (int)getpid());
    int same_pid = atoi(g_pidbuf) == (int)getpid();

    switch (stage) {
    case 0: {
        say("stage 0: ignore SIGSYS+SIGUSR2, block SIGSYS+SIGUSR1, execve\n");
        signal(SIGSYS, SIG_IGN);
        signal(SIGUSR2, SIG_IGN);
        sigset_t m;
        sigemptyset(&m);
        sigaddset(&m, SIGSYS);
        sigaddset(&m, SIGUSR1);
        sigprocmask(SIG_BLOCK, &m, NULL);
        exec_stage("1", environ);
        break;
    }
    case 1: {
        int s = section_begin();
        EXPECT("same pid", same_pid);
        struct sigaction q;
        sigaction(SIGSYS, NULL, &q);
        EXPECT("SIGSYS still ignored after execve", q.sa_handler == SIG_IGN);
        sigaction(SIGUSR2, NULL, &q);
        EXPECT("SIGUSR2 still ignored after execve", q.sa_handler == SIG_IGN);
        sigset_t cur;
        sigprocmask(SIG_SETMASK, NULL, &cur);
        EXPECT_EQ("mask after execve", sigset_bits(&cur), SIGBIT(SIGSYS) | SIGBIT(SIGUSR1));
        int p[2];
        EXPECT_EQ("pipe", pipe(p), 0);
        EXPECT_EQ("write", write(p[1], "s1", 2), 2);
        char b[2];
        EXPECT_EQ("read", read(p[0], b, 2), 2);
        section_end(s, "stage 1: SIG_IGN and blocked SIGSYS survived execve, syscalls work");
        char *envp[] = { "STAGE=2", NULL };
        exec_stage("2", envp);
        break;
    }
    case 2: {
        int s = section_begin();
        EXPECT("same pid", same_pid);
        const char *st = getenv("STAGE");
        EXPECT("STAGE=2 in the environment", st && strcmp(st, "2") == 0);
        EXPECT("PATH gone from the environment", getenv("PATH") == NULL);
        signal(SIGSYS, SIG_DFL);
        signal(SIGUSR2, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        section_end(s, "stage 2: scrubbed environment {STAGE=2}; defaults restored; fexecve");
        if (t_failure_count() != 0)
            return finish();
        int fd = open(g_self, O_RDONLY | O_CLOEXEC);
        REQUIRE(fd >= 0, "open self");
        char *argv3[] = { "execve_chain", "3", g_pidbuf, NULL };
        fexecve(fd, argv3, environ);
        FAILF("fexecve errno %d", errno);
        return 1;
    }
    case 3: {
        int s = section_begin();
        EXPECT("same pid", same_pid);
        sigset_t cur;
        sigprocmask(SIG_SETMASK, NULL, &cur);
        EXPECT_EQ("mask empty", sigset_bits(&cur), 0);
        REQUIRE(pipe(g_block_pipe) == 0, "pipe");
        pthread_t t;
        REQUIRE(pthread_create(&t, NULL, blocked_reader, NULL) == 0, "thread");
        sleep_ms(20);
        section_end(s, "stage 3: after fexecve; execveat with a thread blocked in read");
        if (t_failure_count() != 0)
            return finish();
        char *argv4[] = { "execve_chain", "4", g_pidbuf, NULL };
        syscall(SYS_execveat, AT_FDCWD, g_self, argv4, environ, 0);
        FAILF("execveat errno %d", errno);
        return 1;
    }
    case 4: {
        int s = section_begin();
        EXPECT("same pid", same_pid);
        section_end(s, "stage 4: after execveat (other thread gone); exec from a second thread");
        pthread_t t;
        REQUIRE(pthread_create(&t, NULL, exec_from_thread, NULL) == 0, "thread");
        for (;;)
            pause();
    }
    case 5: {
        int s = section_begin();
        EXPECT("pid unchanged after exec from a non-main thread", same_pid);
        EXPECT_EQ("this thread is the leader", gettid(), getpid());
        int fd = open("exec_chain.txt", O_CREAT | O_WRONLY | O_TRUNC, 0644);
        EXPECT("create file", fd >= 0);
        EXPECT_EQ("write", write(fd, "written by stage 5 of the exec chain\n", 37), 37);
        close(fd);
        section_end(s, "stage 5: pid kept, leader is the new image's only thread");
        return finish();
    }
    default:
        FAILF("unknown stage %d", stage);
        return 1;
    }
    return 1;
}
