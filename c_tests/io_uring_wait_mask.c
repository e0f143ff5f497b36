/*
 * Hard case: io_uring, and the signal mask io_uring_enter installs while
 * it waits for completions (IORING_ENTER_GETEVENTS with a sigset, given
 * directly or in a struct io_uring_getevents_arg with IORING_ENTER_EXT_ARG).
 *
 * Why it is hard for a syscall interposer: the ring's operations (write,
 * read, openat) run in the kernel without any syscall to see, and the
 * wait's temporary mask is one more place where the program's mask is
 * swapped, like pselect6's: an interposer that keeps SIGSEGV (or SIGSYS,
 * SIGILL, SIGBUS) unblocked for itself and holds it back while the program
 * blocks it must take the temporary mask as the program's view during the
 * wait. Otherwise a SIGSEGV the program blocks, sent while a wait unblocks
 * it, interrupts the wait (EINTR) but stays held back: the handler does not
 * run and sigpending shows it, where natively the handler runs.
 *
 * What it does: ring operations (a linked write and read through a pipe,
 * an openat of a file in cwd that is then written), one inline `syscall`
 * site called many times without a mask (so it may be patched), then with
 * SIGSEGV blocked, from the same site, a wait with an empty temporary mask
 * (both forms) while another thread sends SIGSEGV to this one: the wait
 * returns EINTR and the handler ran, nothing pending; and a wait whose
 * temporary mask blocks everything ends by its timeout.
 */
#include "common.h"

#include <linux/io_uring.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#ifndef IORING_ENTER_EXT_ARG
#define IORING_ENTER_EXT_ARG (1U << 3)
#endif

static volatile sig_atomic_t g_handled;
static pid_t g_main_tid;

static void on_segv(int sig)
{
    (void)sig;
    g_handled++;
}

/* io_uring_enter from one inline site (mov $426,%eax; syscall). */
static long enter(int fd, unsigned submit, unsigned min, unsigned flags, const void *arg, size_t argsz)
{
    long ret;
    register long r10 __asm__("r10") = flags;
    register long r8 __asm__("r8") = (long)arg;
    register long r9 __asm__("r9") = (long)argsz;
    __asm__ volatile("mov $426, %%eax\n\tsyscall"
                     : "=a"(ret)
                     : "D"((long)fd), "S"((long)submit), "d"((long)min), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

struct ring {
    int fd;
    unsigned *stail, *smask, *sarray, *chead, *ctail, *cmask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
};

static int ring_open(struct ring *r)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    r->fd = (int)syscall(SYS_io_uring_setup, 8, &p);
    if (r->fd < 0)
        return -1;
    size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    char *sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
    char *cq = mmap(NULL, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_CQ_RING);
    r->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
    if (sq == MAP_FAILED || cq == MAP_FAILED || r->sqes == MAP_FAILED)
        return -2;
    r->stail = (unsigned *)(sq + p.sq_off.tail);
    r->smask = (unsigned *)(sq + p.sq_off.ring_mask);
    r->sarray = (unsigned *)(sq + p.sq_off.array);
    r->chead = (unsigned *)(cq + p.cq_off.head);
    r->ctail = (unsigned *)(cq + p.cq_off.tail);
    r->cmask = (unsigned *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    return 0;
}

static struct io_uring_sqe *next_sqe(struct ring *r)
{
    unsigned tail = *r->stail;
    unsigned i = tail & *r->smask;
    r->sarray[i] = i;
    memset(&r->sqes[i], 0, sizeof r->sqes[i]);
    atomic_store_explicit((_Atomic unsigned *)r->stail, tail + 1, memory_order_release);
    return &r->sqes[i];
}

/* Take one completion: its user_data and result. */
static int reap(struct ring *r, unsigned long long *data, int *res)
{
    unsigned head = *r->chead;
    if (head == atomic_load_explicit((_Atomic unsigned *)r->ctail, memory_order_acquire))
        return 0;
    struct io_uring_cqe *c = &r->cqes[head & *r->cmask];
    *data = c->user_data;
    *res = c->res;
    atomic_store_explicit((_Atomic unsigned *)r->chead, head + 1, memory_order_release);
    return 1;
}

static void *send_segv(void *arg)
{
    (void)arg;
    usleep(100 * 1000);
    syscall(SYS_tgkill, getpid(), g_main_tid, SIGSEGV);
    return NULL;
}

/* A wait for a completion that never comes, SIGSEGV blocked but for the
 * wait's own mask (empty), while a thread sends it SIGSEGV. */
static void wait_interrupted(struct ring *r, int ext)
{
    sigset_t empty;
    sigemptyset(&empty);
    struct io_uring_getevents_arg ea = {(unsigned long)&empty, 8, 0, 0};
    g_handled = 0;
    pthread_t t;
    if (pthread_create(&t, NULL, send_segv, NULL) != 0) {
        say("FAIL: pthread_create\n");
        t_count_failure();
        return;
    }
    long ret = ext ? enter(r->fd, 0, 1, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &ea, sizeof ea)
                   : enter(r->fd, 0, 1, IORING_ENTER_GETEVENTS, &empty, 8);
    pthread_join(t, NULL);
    sigset_t pending;
    sigpending(&pending);
    say("wait (%s) with SIGSEGV unblocked: %s, handler ran %d, still pending %d\n", ext ? "ext arg" : "sigset",
        ret == -EINTR ? "EINTR" : "not EINTR", (int)g_handled, sigismember(&pending, SIGSEGV));
}

int main(void)
{
    struct ring r;
    int rc = ring_open(&r);
    if (rc == -1) {
        /* No io_uring here (ENOSYS, or io_uring_disabled): natively too. */
        say("io_uring unavailable\n");
        return 0;
    }
    if (rc != 0) {
        say("FAIL: ring mmap\n");
        return 1;
    }
    int pfd[2];
    if (pipe(pfd) != 0)
        return 1;
    static const char msg[] = "through the ring\n";
    static char buf[64];
    struct io_uring_sqe *s = next_sqe(&r);
    s->opcode = IORING_OP_WRITE;
    s->fd = pfd[1];
    s->addr = (unsigned long)msg;
    s->len = sizeof msg - 1;
    s->flags = IOSQE_IO_LINK;
    s->user_data = 1;
    s = next_sqe(&r);
    s->opcode = IORING_OP_READ;
    s->fd = pfd[0];
    s->addr = (unsigned long)buf;
    s->len = sizeof buf - 1;
    s->user_data = 2;
    s = next_sqe(&r);
    s->opcode = IORING_OP_OPENAT;
    s->fd = AT_FDCWD;
    s->addr = (unsigned long)"ring_file.txt";
    s->open_flags = O_CREAT | O_WRONLY | O_TRUNC;
    s->len = 0644;
    s->user_data = 3;
    long ret = enter(r.fd, 3, 3, IORING_ENTER_GETEVENTS, NULL, 0);
    say("submitted and waited: %ld\n", ret);
    unsigned long long data;
    int res, file = -1;
    while (reap(&r, &data, &res)) {
        if (data == 3) {
            file = res;
            res = res >= 0 ? 0 : res;
        }
        say("completion %llu: %d\n", data, res);
    }
    say("read: %s", buf);
    if (file >= 0 && write(file, "written\n", 8) != 8)
        say("FAIL: write to the ring's file\n");

    /* The same site without a mask, many times (no wait: returns at once). */
    int zero = 0;
    for (int i = 0; i < 200; i++)
        zero += enter(r.fd, 0, 0, 0, NULL, 0) == 0;
    say("calls without a wait: %d\n", zero);

    signal(SIGSEGV, on_segv);
    g_main_tid = (pid_t)syscall(SYS_gettid);
    sigset_t segv;
    sigemptyset(&segv);
    sigaddset(&segv, SIGSEGV);
    sigprocmask(SIG_BLOCK, &segv, NULL);
    wait_interrupted(&r, 0);
    wait_interrupted(&r, 1);

    /* Everything blocked for the wait: it ends by its timeout. */
    sigset_t all;
    sigfillset(&all);
    struct __kernel_timespec ts = {0, 1000 * 1000};
    struct io_uring_getevents_arg ea = {(unsigned long)&all, 8, 0, (unsigned long)&ts};
    ret = enter(r.fd, 0, 1, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &ea, sizeof ea);
    say("wait with everything blocked: %s\n", ret == -ETIME ? "ETIME" : "other");
    sigset_t now;
    sigprocmask(SIG_SETMASK, NULL, &now);
    say("mask after: SIGSEGV blocked %d, SIGINT blocked %d\n", sigismember(&now, SIGSEGV), sigismember(&now, SIGINT));
    return t_failure_count() ? 1 : 0;
}
