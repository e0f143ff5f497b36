// usertrap-test: exec
/*
 * Hard case: what a program sees of its own exec, each way it can be exec'd.
 *
 * Why it is hard for a syscall interposer: to follow exec under a seccomp
 * filter, an interposer may exec a launcher of its own that then loads the
 * real target in user space.  Everything the kernel would have given the
 * target must then be rebuilt exactly: argv (with the `#!` rewriting: the
 * interpreter, its single optional argument, the script path, the original
 * argv minus argv[0]), the environment, the stack layout (envp right after
 * argv, the auxiliary vector right after envp), the auxiliary vector itself
 * (AT_PHDR/AT_PHNUM/AT_ENTRY of the target, AT_BASE of its interpreter,
 * AT_EXECFN the path string given to execve, the kernel's AT_HWCAP, AT_RANDOM
 * and the rest), /proc/self/exe, /proc/self/cmdline, /proc/self/environ,
 * /proc/self/comm, /proc/self/auxv, which fds survived (close-on-exec ones
 * must be gone, the others kept with their offsets), and no extra fd,
 * thread or mapped file (the launcher's) left behind.
 *
 * Stages (the program finds its stage in observe.state, written in its cwd;
 * each prints what it sees, then execs the next):
 *   0  as started: creates fds 100 (plain, offset 4), 101 (O_CLOEXEC), 102
 *      (a pipe's read end holding "piped") and 103 (its write end,
 *      FD_CLOEXEC set with fcntl), a symlink and three `#!` scripts, and
 *      execs realpath(argv[0]) with an explicit environment that has an
 *      empty value, a value with '=', an entry without '=' and PATH=/nowhere;
 *   A  reads the pipe to EOF (its write end closed by the exec), then execs
 *      ./self-link (a relative symlink to the binary) with argv[0] changed;
 *   B  execs ./observe1.sh, `#!SELF  --interp-arg with spaces` (one
 *      interpreter argument that contains spaces);
 *   C  execs ./observe2.sh, `#!  SELF<tab> ` (blanks around, no argument);
 *   D  execs ./observe3.sh, `#!./observe1.sh arg3` (a script interpreted by
 *      a script), with an empty environment;
 *   E  execs ./self-link with argv NULL and envp NULL (the kernel gives
 *      argc 1 and argv[0] "");
 *   F  removes observe.state and prints the result.
 * Every stage but 0 prints: argv, /proc/self/exe (is it the binary's real
 * path), AT_EXECFN (is it the path given to execve), cmdline, comm, thread
 * count, the fds, the files mapped, AT_SECURE, the auxiliary vector's consistency (main lies
 * in an executable PT_LOAD of the phdrs AT_PHDR points to; AT_ENTRY is the
 * ELF header's e_entry; dl_iterate_phdr's first object has those phdrs;
 * AT_BASE is where the interpreter named by PT_INTERP was loaded;
 * AT_SYSINFO_EHDR is the vDSO; AT_RANDOM, AT_EXECFN and the argv strings lie
 * in [stack]; the kernel's values are those stage 0 saw; /proc/self/auxv is
 * the vector on the stack) and the environment, sorted (LD_PRELOAD and
 * USERTRAP_* left out: the library adds those to every exec).  Paths print
 * as $SELF (the binary's real path) and $CWD.  Nothing printed depends on
 * pids, addresses or timing.
 */
#include "common.h"

#include <dirent.h>
#include <elf.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <sys/auxv.h>
#include <sys/stat.h>

extern char **environ;

int main(int argc, char **argv);

#define STATE "observe.state"
#define FD_PLAIN 100
#define FD_CLOEXEC_OPEN 101
#define FD_PIPE_R 102
#define FD_PIPE_W 103

static struct {
    char self[PATH_MAX];
    char cwd[PATH_MAX];
    char next[8];
    char execfn[PATH_MAX];
    long pid, ppid;
    char inherited[1024]; /* ",3,10," */
    unsigned long hwcap, hwcap2, clktck, pagesz, minsigstksz;
    char platform[64];
    char auxv_types[512];
} st;

/* ---- output with paths replaced ---------------------------------------- */

static void subst(const char *in, char *out, size_t cap)
{
    t_subst_paths(in, st.self, st.cwd, out, cap);
}

static const char *S(const char *in)
{
    static char bufs[4][8192];
    static int i;
    char *b = bufs[i++ & 3];
    subst(in ? in : "(null)", b, sizeof bufs[0]);
    return b;
}

/* ---- state file --------------------------------------------------------- */

static void save_state(void)
{
    FILE *f = fopen(STATE ".tmp", "w");
    REQUIRE(f != NULL, "write " STATE);
    fprintf(f, "self %s\ncwd %s\nnext %s\nexecfn %s\npid %ld\nppid %ld\ninherited %s\n", st.self, st.cwd,
            st.next, st.execfn, st.pid, st.ppid, st.inherited);
    fprintf(f, "hwcap %lu\nhwcap2 %lu\nclktck %lu\npagesz %lu\nminsigstksz %lu\nplatform %s\nauxv_types %s\n",
            st.hwcap, st.hwcap2, st.clktck, st.pagesz, st.minsigstksz, st.platform, st.auxv_types);
    REQUIRE(fclose(f) == 0, "close " STATE);
    REQUIRE(rename(STATE ".tmp", STATE) == 0, "rename " STATE);
}

static int load_state(void)
{
    FILE *f = fopen(STATE, "r");
    if (!f)
        return 0;
    char line[PATH_MAX + 64];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *sp = strchr(line, ' ');
        if (!sp)
            continue;
        *sp = 0;
        const char *k = line, *v = sp + 1;
#define STR(name)                                                              \
    if (strcmp(k, #name) == 0)                                                 \
        snprintf(st.name, sizeof st.name, "%s", v);
#define NUM(name)                                                              \
    if (strcmp(k, #name) == 0)                                                 \
        st.name = strtoul(v, NULL, 10);
        STR(self) STR(cwd) STR(next) STR(execfn) STR(inherited) STR(platform) STR(auxv_types)
        NUM(pid) NUM(ppid) NUM(hwcap) NUM(hwcap2) NUM(clktck) NUM(pagesz) NUM(minsigstksz)
#undef STR
#undef NUM
    }
    fclose(f);
    return 1;
}

/* ---- helpers -------------------------------------------------------------- */

static ssize_t read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
        if (got + 1 >= cap)
            break;
    }
    close(fd);
    buf[got] = 0;
    return (ssize_t)got;
}

/* CAP_SYS_RESOURCE in the effective set (bit 24 of CapEff). */
static int have_cap_sys_resource(void)
{
    static char st[8192];
    ssize_t n = read_file("/proc/self/status", st, sizeof st - 1);
    if (n <= 0)
        return 0;
    st[n] = 0;
    const char *c = strstr(st, "CapEff:");
    return c && (strtoull(c + 7, NULL, 16) >> 24 & 1);
}

/* environ starts right after argv's NULL, or past entries that are all
 * LD_PRELOAD= or USERTRAP_*. */
static int envp_follows_argv(char **argv, int argc)
{
    char **p = argv + argc + 1;
    for (; p != environ && *p; p++)
        if (strncmp(*p, "LD_PRELOAD=", 11) != 0 && strncmp(*p, "USERTRAP_", 9) != 0)
            return 0;
    return p == environ;
}


static void put_text(const char *name, const char *text, mode_t mode)
{
    unlink(name);
    int fd = open(name, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0, name);
    t_write_all(fd, text, strlen(text));
    REQUIRE(close(fd) == 0, "close");
    REQUIRE(chmod(name, mode) == 0, "chmod");
}

static int fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

/* Start and end of the mapping named `name` (e.g. "[stack]"). */
static int find_mapping(const char *name, uintptr_t *lo, uintptr_t *hi)
{
    static char maps[1 << 17];
    if (read_file("/proc/self/maps", maps, sizeof maps) <= 0)
        return 0;
    for (char *l = strtok(maps, "\n"); l; l = strtok(NULL, "\n")) {
        size_t ll = strlen(l), ln = strlen(name);
        if (ll >= ln && strcmp(l + ll - ln, name) == 0) {
            unsigned long a, b;
            if (sscanf(l, "%lx-%lx", &a, &b) == 2) {
                *lo = a;
                *hi = b;
                return 1;
            }
        }
    }
    return 0;
}

static int in_range(const void *p, uintptr_t lo, uintptr_t hi)
{
    return (uintptr_t)p >= lo && (uintptr_t)p < hi;
}

static const char *yes(int c)
{
    return c ? "yes" : "no";
}

/* ---- the auxiliary vector ------------------------------------------------- */

struct dl_first {
    int seen;
    ElfW(Addr) addr;
    const ElfW(Phdr) *phdr;
    ElfW(Half) phnum;
    const char *interp;
    ElfW(Addr) interp_addr;
    int interp_found;
};

static int dl_cb(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    struct dl_first *d = data;
    if (!d->seen) {
        d->seen = 1;
        d->addr = info->dlpi_addr;
        d->phdr = info->dlpi_phdr;
        d->phnum = info->dlpi_phnum;
    }
    if (d->interp && info->dlpi_name && strcmp(info->dlpi_name, d->interp) == 0) {
        d->interp_found = 1;
        d->interp_addr = info->dlpi_addr;
    }
    return 0;
}

static Elf64_auxv_t *stack_auxv(char **argv, int argc)
{
    char **e = argv + argc + 1;
    while (*e)
        e++;
    return (Elf64_auxv_t *)(e + 1);
}

static void describe_auxv_types(Elf64_auxv_t *av, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = 0;
    for (; av->a_type != AT_NULL && o + 8 < cap; av++)
        o += (size_t)snprintf(out + o, cap - o, "%s%lu", o ? "," : "", (unsigned long)av->a_type);
}

/* The value on the stack (glibc's getauxval rewrites AT_HWCAP and
 * AT_PLATFORM on x86-64 from its own CPU feature detection). */
static unsigned long raw_aux(Elf64_auxv_t *av, unsigned long type)
{
    for (; av->a_type != AT_NULL; av++)
        if (av->a_type == type)
            return av->a_un.a_val;
    return 0;
}

static void record_kernel_auxv(char **argv, int argc)
{
    Elf64_auxv_t *av = stack_auxv(argv, argc);
    st.hwcap = raw_aux(av, AT_HWCAP);
    st.hwcap2 = raw_aux(av, AT_HWCAP2);
    st.clktck = raw_aux(av, AT_CLKTCK);
    st.pagesz = raw_aux(av, AT_PAGESZ);
    st.minsigstksz = raw_aux(av, AT_MINSIGSTKSZ);
    const char *pl = (const char *)raw_aux(av, AT_PLATFORM);
    snprintf(st.platform, sizeof st.platform, "%s", pl ? pl : "-");
    describe_auxv_types(av, st.auxv_types, sizeof st.auxv_types);
}

static void check_auxv(char **argv, int argc)
{
    int s = section_begin();
    const ElfW(Phdr) *phdr = (const ElfW(Phdr) *)getauxval(AT_PHDR);
    unsigned long phnum = getauxval(AT_PHNUM);
    EXPECT_EQ("AT_PHENT", getauxval(AT_PHENT), sizeof(ElfW(Phdr)));
    REQUIRE(phdr != NULL && phnum > 0, "AT_PHDR and AT_PHNUM");
    uintptr_t bias = 0;
    int have_phdr = 0;
    const char *interp = NULL;
    for (unsigned long i = 0; i < phnum; i++)
        if (phdr[i].p_type == PT_PHDR) {
            bias = (uintptr_t)phdr - phdr[i].p_vaddr;
            have_phdr = 1;
        }
    EXPECT("the phdrs have a PT_PHDR (a PIE)", have_phdr);
    int main_in_load = 0, entry_in_load = 0;
    const ElfW(Ehdr) *ehdr = NULL;
    uintptr_t entry = getauxval(AT_ENTRY);
    for (unsigned long i = 0; i < phnum; i++) {
        const ElfW(Phdr) *p = &phdr[i];
        if (p->p_type == PT_INTERP)
            interp = (const char *)(bias + p->p_vaddr);
        if (p->p_type != PT_LOAD)
            continue;
        uintptr_t lo = bias + p->p_vaddr, hi = lo + p->p_memsz;
        if (p->p_offset == 0)
            ehdr = (const ElfW(Ehdr) *)lo;
        if ((p->p_flags & PF_X) && (uintptr_t)&main >= lo && (uintptr_t)&main < hi)
            main_in_load = 1;
        if ((p->p_flags & PF_X) && entry >= lo && entry < hi)
            entry_in_load = 1;
    }
    EXPECT("main lies in an executable PT_LOAD of AT_PHDR's phdrs", main_in_load);
    EXPECT("AT_ENTRY lies in an executable PT_LOAD", entry_in_load);
    EXPECT("a PT_LOAD maps the ELF header", ehdr != NULL);
    if (ehdr) {
        EXPECT("the ELF header starts with \\177ELF", memcmp(ehdr->e_ident, ELFMAG, SELFMAG) == 0);
        EXPECT_EQ("AT_ENTRY is the ELF header's e_entry plus the load bias", entry, ehdr->e_entry + bias);
        EXPECT_EQ("AT_PHNUM is the ELF header's e_phnum", phnum, ehdr->e_phnum);
        EXPECT_EQ("AT_PHDR is the ELF header's e_phoff plus the load bias", (uintptr_t)phdr,
                  (uintptr_t)ehdr + ehdr->e_phoff);
    }
    struct dl_first d = { 0 };
    d.interp = interp;
    dl_iterate_phdr(dl_cb, &d);
    EXPECT("dl_iterate_phdr's first object has AT_PHDR's phdrs", d.seen && d.phdr == phdr);
    EXPECT_EQ("dl_iterate_phdr's first object's phnum", d.phnum, phnum);
    EXPECT_EQ("dl_iterate_phdr's first object's load bias", d.addr, bias);
    EXPECT("PT_INTERP present", interp != NULL);
    EXPECT("the interpreter is among dl_iterate_phdr's objects", d.interp_found);
    EXPECT_EQ("AT_BASE is the interpreter's load address", getauxval(AT_BASE), d.interp_addr);
    section_end(s, "auxv: AT_PHDR, AT_PHNUM, AT_PHENT, AT_ENTRY, AT_BASE consistent with the loaded objects");
    say("interpreter: %s\n", S(interp));

    s = section_begin();
    uintptr_t lo, hi;
    REQUIRE(find_mapping("[stack]", &lo, &hi), "[stack] in /proc/self/maps");
    EXPECT("AT_RANDOM lies in [stack]", in_range((void *)getauxval(AT_RANDOM), lo, hi));
    EXPECT("AT_EXECFN lies in [stack]", in_range((void *)getauxval(AT_EXECFN), lo, hi));
    EXPECT("argv lies in [stack]", in_range(argv, lo, hi));
    for (int i = 0; i < argc; i++)
        EXPECT("argv strings lie in [stack]", in_range(argv[i], lo, hi));
    /* envp follows argv; an interposer that needs entries of its own in the
     * loader's environment (LD_PRELOAD) may keep them between the two, out
     * of environ's view, so that the auxiliary vector still follows environ. */
    EXPECT("envp follows argv (past LD_PRELOAD/USERTRAP_* entries only)", envp_follows_argv(argv, argc));
    uintptr_t vlo, vhi;
    if (find_mapping("[vdso]", &vlo, &vhi)) {
        EXPECT_EQ("AT_SYSINFO_EHDR is the [vdso] mapping", getauxval(AT_SYSINFO_EHDR), vlo);
    } else {
        EXPECT_EQ("no [vdso], no AT_SYSINFO_EHDR", getauxval(AT_SYSINFO_EHDR), 0);
    }
    EXPECT_EQ("AT_UID", getauxval(AT_UID), getuid());
    EXPECT_EQ("AT_EUID", getauxval(AT_EUID), geteuid());
    EXPECT_EQ("AT_GID", getauxval(AT_GID), getgid());
    EXPECT_EQ("AT_EGID", getauxval(AT_EGID), getegid());
    EXPECT_EQ("AT_FLAGS", getauxval(AT_FLAGS), 0);
    Elf64_auxv_t *av = stack_auxv(argv, argc);
    EXPECT_EQ("AT_HWCAP as in stage 0", raw_aux(av, AT_HWCAP), st.hwcap);
    EXPECT_EQ("AT_HWCAP2 as in stage 0", raw_aux(av, AT_HWCAP2), st.hwcap2);
    EXPECT_EQ("AT_CLKTCK as in stage 0", raw_aux(av, AT_CLKTCK), st.clktck);
    EXPECT_EQ("AT_PAGESZ as in stage 0", raw_aux(av, AT_PAGESZ), st.pagesz);
    EXPECT_EQ("AT_PAGESZ is the page size", raw_aux(av, AT_PAGESZ), sysconf(_SC_PAGESIZE));
    EXPECT_EQ("AT_MINSIGSTKSZ as in stage 0", raw_aux(av, AT_MINSIGSTKSZ), st.minsigstksz);
    const char *pl = (const char *)raw_aux(av, AT_PLATFORM);
    EXPECT("AT_PLATFORM as in stage 0", strcmp(pl ? pl : "-", st.platform) == 0);
    char types[512];
    describe_auxv_types(av, types, sizeof types);
    if (strcmp(types, st.auxv_types) != 0)
        FAILF("auxv entry types %s, stage 0 had %s", types, st.auxv_types);
    for (Elf64_auxv_t *a = av; a->a_type != AT_NULL; a++) {
        EXPECT("no AT_EXECFD", a->a_type != AT_EXECFD);
        EXPECT("no AT_NOTELF", a->a_type != AT_NOTELF);
        if (a->a_type != AT_IGNORE && a->a_type != AT_HWCAP && a->a_type != AT_HWCAP2 && a->a_type != AT_PLATFORM &&
            getauxval(a->a_type) != a->a_un.a_val)
            FAILF("getauxval(%lu) disagrees with the vector on the stack", (unsigned long)a->a_type);
    }
    static char procauxv[4096];
    ssize_t pn = read_file("/proc/self/auxv", procauxv, sizeof procauxv);
    size_t stack_len = 0;
    while (av[stack_len].a_type != AT_NULL)
        stack_len++;
    stack_len = (stack_len + 1) * sizeof(Elf64_auxv_t);
    /* A loader in user space can make the kernel's copy match only with
     * CAP_SYS_RESOURCE (prctl PR_SET_MM_AUXV): checked where it has it. */
    if (have_cap_sys_resource())
        EXPECT("/proc/self/auxv is the vector on the stack",
               pn == (ssize_t)stack_len && memcmp(procauxv, av, stack_len) == 0);
    section_end(s, "auxv: stack layout, ids, vDSO and the kernel's values as in stage 0; /proc/self/auxv agrees");
}

/* ---- one stage's observations --------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void observe(const char *stage, int argc, char **argv)
{
    say("== stage %s ==\n", stage);
    say("argc: %d\n", argc);
    for (int i = 0; i < argc; i++)
        say("argv[%d]: \"%s\"\n", i, S(argv[i]));
    EXPECT("argv[argc] is NULL", argv[argc] == NULL);

    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    say("/proc/self/exe: %s (the binary's real path: %s)\n", S(exe), yes(strcmp(exe, st.self) == 0));
    EXPECT("/proc/self/exe is the binary", strcmp(exe, st.self) == 0);

    const char *execfn = (const char *)getauxval(AT_EXECFN);
    int same = execfn && strcmp(execfn, st.execfn) == 0;
    say("AT_EXECFN: \"%s\" (the path given to execve: %s)\n", S(execfn), yes(same));
    EXPECT("AT_EXECFN is the path given to execve", same);

    static char buf[65536];
    ssize_t cl = read_file("/proc/self/cmdline", buf, sizeof buf);
    size_t expect_len = 0;
    int cmd_ok = 1;
    for (int i = 0; i < argc; i++) {
        size_t l = strlen(argv[i]) + 1;
        if (cl < 0 || expect_len + l > (size_t)cl || memcmp(buf + expect_len, argv[i], l) != 0)
            cmd_ok = 0;
        expect_len += l;
    }
    cmd_ok = cmd_ok && cl == (ssize_t)expect_len;
    for (ssize_t i = 0; i < cl; i++)
        if (buf[i] == 0)
            buf[i] = '|';
    say("/proc/self/cmdline: \"%s\" (argv: %s)\n", S(cl >= 0 ? buf : "(unreadable)"), yes(cmd_ok));
    EXPECT("/proc/self/cmdline is argv", cmd_ok);

    char comm[64];
    ssize_t cn = read_file("/proc/self/comm", comm, sizeof comm);
    if (cn > 0 && comm[cn - 1] == '\n')
        comm[cn - 1] = 0;
    say("/proc/self/comm: \"%s\"\n", S(comm));

    EXPECT_EQ("pid unchanged", getpid(), st.pid);
    EXPECT_EQ("ppid unchanged", getppid(), st.ppid);
    int threads = 0;
    DIR *td = opendir("/proc/self/task");
    REQUIRE(td != NULL, "opendir /proc/self/task");
    for (struct dirent *e; (e = readdir(td));)
        if (e->d_name[0] != '.')
            threads++;
    closedir(td);
    say("threads: %d\n", threads);

    for (int fd = FD_PLAIN; fd <= FD_PIPE_W; fd++) {
        if (!fd_is_open(fd)) {
            say("fd %d: closed\n", fd);
            continue;
        }
        int fl = fcntl(fd, F_GETFD);
        char target[PATH_MAX], path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t tl = readlink(path, target, sizeof target - 1);
        target[tl > 0 ? tl : 0] = 0;
        if (strncmp(target, "pipe:", 5) == 0)
            strcpy(target, "a pipe");
        if (fd == FD_PLAIN)
            say("fd %d: open, %s, offset %ld, close-on-exec %d\n", fd, S(target), (long)lseek(fd, 0, SEEK_CUR),
                (fl & FD_CLOEXEC) != 0);
        else
            say("fd %d: open, %s, close-on-exec %d\n", fd, S(target), (fl & FD_CLOEXEC) != 0);
    }
    char others[1024] = "";
    DIR *fdd = opendir("/proc/self/fd");
    REQUIRE(fdd != NULL, "opendir /proc/self/fd");
    for (struct dirent *e; (e = readdir(fdd));) {
        if (e->d_name[0] == '.')
            continue;
        int fd = atoi(e->d_name);
        char key[32];
        snprintf(key, sizeof key, ",%d,", fd);
        if (fd <= 2 || (fd >= FD_PLAIN && fd <= FD_PIPE_W) || fd == dirfd(fdd) || strstr(st.inherited, key))
            continue;
        char target[PATH_MAX], path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t tl = readlink(path, target, sizeof target - 1);
        target[tl > 0 ? tl : 0] = 0;
        size_t o = strlen(others);
        snprintf(others + o, sizeof others - o, " %d->%s", fd, S(target));
    }
    closedir(fdd);
    say("other fds (besides 0-2 and those this test was started with):%s\n", others[0] ? others : " none");

    /* Files mapped (the library's own left out): nothing of a launcher. */
    static char maps[1 << 17];
    static char files[64][PATH_MAX];
    int nfiles = 0;
    if (read_file("/proc/self/maps", maps, sizeof maps) > 0) {
        for (char *l = strtok(maps, "\n"); l; l = strtok(NULL, "\n")) {
            char *path = strchr(l, '/');
            if (!path || strstr(path, "/libusertrap"))
                continue;
            int dup = 0;
            for (int i = 0; i < nfiles; i++)
                dup |= strcmp(files[i], path) == 0;
            if (!dup && nfiles < 64)
                snprintf(files[nfiles++], PATH_MAX, "%s", path);
        }
    }
    qsort(files, (size_t)nfiles, sizeof files[0], (int (*)(const void *, const void *))strcmp);
    say("files mapped (the library's own left out):");
    for (int i = 0; i < nfiles; i++)
        say(" %s", S(files[i]));
    say("\n");

    say("AT_SECURE: %lu\n", getauxval(AT_SECURE));
    check_auxv(argv, argc);

    /* The environment, sorted, without what the library adds. */
    size_t count = 0, shown = 0;
    while (environ[count])
        count++;
    char **sorted = calloc(count + 1, sizeof *sorted);
    REQUIRE(sorted != NULL, "calloc");
    for (size_t i = 0; i < count; i++)
        if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0 && strncmp(environ[i], "USERTRAP_", 9) != 0)
            sorted[shown++] = environ[i];
    qsort(sorted, shown, sizeof *sorted, cmp_str);
    say("environ: %zu entries (LD_PRELOAD and USERTRAP_* left out)\n", shown);
    for (size_t i = 0; i < shown; i++)
        say("  \"%s\"\n", S(sorted[i]));
    free(sorted);
    ssize_t en = read_file("/proc/self/environ", buf, sizeof buf);
    size_t off = 0;
    int env_ok = en >= 0;
    for (size_t i = 0; env_ok && i < count; i++) {
        size_t l = strlen(environ[i]) + 1;
        if (off + l > (size_t)en || memcmp(buf + off, environ[i], l) != 0)
            env_ok = 0;
        off += l;
    }
    env_ok = env_ok && off == (size_t)en;
    /* As for /proc/self/auxv: PR_SET_MM_ENV_START needs CAP_SYS_RESOURCE. */
    if (have_cap_sys_resource()) {
        say("/proc/self/environ is environ: %s\n", yes(env_ok));
        EXPECT("/proc/self/environ is environ", env_ok);
    }
}

/* Save the state for the next stage, then exec. */
static void next_stage(const char *next, const char *path, char *const argv[], char *const envp[])
{
    snprintf(st.next, sizeof st.next, "%s", next);
    snprintf(st.execfn, sizeof st.execfn, "%s", path);
    save_state();
    if (t_failure_count() != 0) {
        unlink(STATE);
        exit(finish());
    }
    execve(path, argv, envp);
    FAILF("execve %s: errno %d", path, errno);
    unlink(STATE);
    exit(finish());
}

static void stage0(int argc, char **argv)
{
    say("== stage 0 ==\n");
    REQUIRE(argc >= 1 && strchr(argv[0], '/') != NULL, "started by a path (argv[0] with a '/')");
    REQUIRE(realpath(argv[0], st.self) != NULL, "realpath(argv[0])");
    REQUIRE(getcwd(st.cwd, sizeof st.cwd) != NULL, "getcwd");
    st.pid = getpid();
    st.ppid = getppid();
    record_kernel_auxv(argv, argc);

    /* fds this test was started with (from the harness) are not ours to judge. */
    strcpy(st.inherited, ",");
    DIR *fdd = opendir("/proc/self/fd");
    REQUIRE(fdd != NULL, "opendir /proc/self/fd");
    for (struct dirent *e; (e = readdir(fdd));) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(fdd))
            continue;
        size_t o = strlen(st.inherited);
        snprintf(st.inherited + o, sizeof st.inherited - o, "%s,", e->d_name);
    }
    closedir(fdd);
    for (int fd = FD_PLAIN; fd <= FD_PIPE_W; fd++)
        REQUIRE(!fd_is_open(fd), "fds 100-103 free at start");

    put_text("data.txt", "0123456789\n", 0644);
    int fd = open("data.txt", O_RDONLY);
    REQUIRE(fd >= 0 && dup2(fd, FD_PLAIN) == FD_PLAIN && close(fd) == 0, "fd 100");
    REQUIRE(lseek(FD_PLAIN, 4, SEEK_SET) == 4, "lseek fd 100");
    fd = open("data.txt", O_RDONLY);
    REQUIRE(fd >= 0 && dup3(fd, FD_CLOEXEC_OPEN, O_CLOEXEC) == FD_CLOEXEC_OPEN && close(fd) == 0, "fd 101");
    int p[2];
    REQUIRE(pipe(p) == 0, "pipe");
    REQUIRE(dup2(p[0], FD_PIPE_R) == FD_PIPE_R && dup2(p[1], FD_PIPE_W) == FD_PIPE_W, "fds 102, 103");
    close(p[0]);
    close(p[1]);
    REQUIRE(fcntl(FD_PIPE_W, F_SETFD, FD_CLOEXEC) == 0, "FD_CLOEXEC on fd 103");
    REQUIRE(write(FD_PIPE_W, "piped", 5) == 5, "write the pipe");

    unlink("self-link");
    REQUIRE(symlink(st.self, "self-link") == 0, "symlink self-link");
    char text[PATH_MAX + 64];
    snprintf(text, sizeof text, "#!%s  --interp-arg with spaces  \n", st.self);
    put_text("observe1.sh", text, 0755);
    snprintf(text, sizeof text, "#!  %s\t \n", st.self);
    put_text("observe2.sh", text, 0755);
    put_text("observe3.sh", "#!./observe1.sh arg3\n", 0755);
    say("fds 100 (offset 4), 101 (O_CLOEXEC), 102/103 (pipe, FD_CLOEXEC on 103), self-link, 3 scripts\n");

    char *av[] = { "observe-A", "with space", "", "last", NULL };
    char *ev[] = { "B=2", "A=1", "EMPTY=", "EQ=x=y", "NOVALUE", "PATH=/nowhere", "ZZ=last", NULL };
    next_stage("A", st.self, av, ev);
}

int main(int argc, char **argv)
{
    if (!load_state()) {
        stage0(argc, argv);
        return 1;
    }
    const char *stage = st.next;
    observe(stage, argc, argv);
    if (strcmp(stage, "A") == 0) {
        int s = section_begin();
        EXPECT("fd 102 non-blocking", fcntl(FD_PIPE_R, F_SETFL, O_NONBLOCK) == 0);
        char b[16] = { 0 };
        ssize_t r1 = read(FD_PIPE_R, b, sizeof b - 1);
        ssize_t r2 = read(FD_PIPE_R, b + 8, 1);
        EXPECT("read \"piped\" from fd 102", r1 == 5 && memcmp(b, "piped", 5) == 0);
        EXPECT_EQ("then EOF: the write end (fd 103, FD_CLOEXEC) was closed by exec", r2, 0);
        close(FD_PIPE_R);
        section_end(s, "pipe: \"piped\", then EOF");
        char *av[] = { "custom-argv0", "B-arg", NULL };
        char *ev[] = { "ONLY=1", NULL };
        next_stage("B", "./self-link", av, ev);
    } else if (strcmp(stage, "B") == 0) {
        char *av[] = { "script-argv0", "x", "y", NULL };
        char *ev[] = { "S=1", NULL };
        next_stage("C", "./observe1.sh", av, ev);
    } else if (strcmp(stage, "C") == 0) {
        char *av[] = { "s2", "z", NULL };
        char *ev[] = { "S=2", NULL };
        next_stage("D", "./observe2.sh", av, ev);
    } else if (strcmp(stage, "D") == 0) {
        char *av[] = { "s3", "w", NULL };
        char *ev[] = { NULL };
        next_stage("E", "./observe3.sh", av, ev);
    } else if (strcmp(stage, "E") == 0) {
        char *volatile nothing = NULL;
        next_stage("F", "./self-link", (char **)nothing, (char **)nothing);
    } else if (strcmp(stage, "F") == 0) {
        unlink(STATE);
        return finish();
    }
    FAILF("unknown stage %s", stage);
    unlink(STATE);
    return finish();
}
