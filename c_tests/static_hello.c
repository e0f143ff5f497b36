// usertrap-test: exec
/*
 * Hard case: a statically linked program (built with -static by the
 * Makefile's static_% rule: no PT_INTERP, no dynamic loader, so LD_PRELOAD
 * is never read).
 *
 * Why it is hard for a syscall interposer: a preloaded library never gets
 * into a static binary.  An interposer that follows exec must notice that
 * the target is static and bring itself in some other way (a launcher that
 * maps the program and starts it with the interposer already armed),
 * without changing what the program sees: its own TLS setup
 * (arch_prctl(ARCH_SET_FS) from glibc's static start-up), its auxiliary
 * vector (AT_PHDR of a non-PIE ET_EXEC at its link-time address), argv, the
 * exit status, and its children (fork) and threads.
 *
 * What it does (deterministic output, exit status 3): writes lines with
 * write(2) to stdout and one to stderr, creates static.txt and reads it
 * back, forks a child that writes a line and exits 5 (the parent prints the
 * status it waited for), runs a thread that bumps a __thread counter of its
 * own and writes a line, checks that main lies in an executable PT_LOAD of
 * the phdrs AT_PHDR points to and that AT_ENTRY is the ELF header's
 * e_entry, and prints its arguments after argv[0] (and, after "env-i",
 * how many environment entries it has).
 *
 * The C-program tests run it straight from the harness, where (static)
 * nothing can intercept it and only sameness is checked; tests/exec.rs
 * starts it from traced processes (exec'd by env, forked and exec'd by sh)
 * and checks that it was intercepted: a report of its own with its writes.
 */
#include "common.h"

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <sys/auxv.h>
#include <sys/wait.h>

static __thread int t_counter = 7;

static void *thread_main(void *arg)
{
    (void)arg;
    t_counter += 1;
    say("thread: my own __thread counter is %d\n", t_counter);
    return NULL;
}

int main(int argc, char **argv)
{
    say("static_hello: hello from a static binary\n");
    for (int i = 1; i < argc; i++)
        say("arg %d: %s\n", i, argv[i]);
    t_write_all(2, "static_hello: a line on stderr\n", 31);
    /* Exec'd by `env -i` (tests/exec.rs passes "env-i" first): an empty
       environment, as natively (the launcher takes usertrap's entries
       back out: a launcher serving it as a loader's bridge would not). */
    if (argc > 1 && strcmp(argv[1], "env-i") == 0) {
        int n = 0;
        while (environ[n])
            n++;
        say("environment entries: %d\n", n);
    }

    int fd = open("static.txt", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    REQUIRE(fd >= 0, "create static.txt");
    t_write_all(fd, "written by static_hello\n", 24);
    REQUIRE(close(fd) == 0, "close");
    char buf[64] = { 0 };
    fd = open("static.txt", O_RDONLY);
    REQUIRE(fd >= 0, "open static.txt");
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    EXPECT_EQ("read back", n, 24);
    say("read back: %s", buf);

    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) {
        say("child: hello\n");
        _exit(5);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid, "waitpid");
    say("parent: child exited with status %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);

    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, thread_main, NULL) == 0, "pthread_create");
    REQUIRE(pthread_join(t, NULL) == 0, "pthread_join");
    say("main: my __thread counter is still %d\n", t_counter);

    int s = section_begin();
    const ElfW(Phdr) *phdr = (const ElfW(Phdr) *)getauxval(AT_PHDR);
    unsigned long phnum = getauxval(AT_PHNUM);
    REQUIRE(phdr != NULL && phnum > 0, "AT_PHDR");
    /* The load bias: from PT_PHDR, else (a static-pie program has none)
       from where the linker says the ELF header is, against the PT_LOAD
       that maps offset 0. 0 for a fixed-address program. */
    extern const ElfW(Ehdr) __ehdr_start;
    uintptr_t bias = 0;
    int have_phdr = 0;
    for (unsigned long i = 0; i < phnum; i++)
        if (phdr[i].p_type == PT_PHDR) {
            bias = (uintptr_t)phdr - phdr[i].p_vaddr;
            have_phdr = 1;
        }
    for (unsigned long i = 0; i < phnum && !have_phdr; i++)
        if (phdr[i].p_type == PT_LOAD && phdr[i].p_offset == 0)
            bias = (uintptr_t)&__ehdr_start - phdr[i].p_vaddr;
    int main_in = 0, interp = 0;
    const ElfW(Ehdr) *ehdr = NULL;
    for (unsigned long i = 0; i < phnum; i++) {
        const ElfW(Phdr) *p = &phdr[i];
        interp |= p->p_type == PT_INTERP;
        if (p->p_type != PT_LOAD)
            continue;
        uintptr_t lo = bias + p->p_vaddr;
        if (p->p_offset == 0)
            ehdr = (const ElfW(Ehdr) *)lo;
        if ((p->p_flags & PF_X) && (uintptr_t)&main >= lo && (uintptr_t)&main < lo + p->p_memsz)
            main_in = 1;
    }
    EXPECT("no PT_INTERP (static)", !interp);
    EXPECT("main lies in an executable PT_LOAD of AT_PHDR's phdrs", main_in);
    EXPECT("a PT_LOAD maps the ELF header", ehdr != NULL);
    if (ehdr)
        EXPECT_EQ("AT_ENTRY is e_entry", getauxval(AT_ENTRY), ehdr->e_entry + bias);
    EXPECT_EQ("AT_BASE is 0 without an interpreter", getauxval(AT_BASE), 0);
    section_end(s, "auxv: static image where AT_PHDR says");
    finish();
    return 3;
}
