/*
 * Hard case: where the interposer's report at exit may go, and where never.
 *
 * Why it is hard for a syscall interposer: it writes its report after the
 * program is done with its descriptors. By then descriptor 2 may be closed
 * or be a data file of the program's, stderr may be a pipe whose reader is
 * gone (SIGPIPE), stdout may have been redirected to a file the report must
 * not truncate, the process may have a file size or memory limit, and one
 * pid may run two images (exec) or many processes may share one report
 * file. tests/reports.rs runs each mode with the settings that matter;
 * without an argument (c_programs.rs) it only prints a line.
 *
 * Modes (argv[1]):
 *   stderr-replaced    close(2), open data.txt (gets fd 2), write to it
 *   stderr-broken-pipe fd 2 is a pipe whose read end is closed; exit 3
 *   stdout-file        stdout redirected to out.txt, a line printed into it
 *   exec               exec itself once ("exec second")
 *   forks N            N children, each exits 0
 *   fsize0             RLIMIT_FSIZE = 0, then exit 0
 *   no-memory          RLIMIT_AS = what is mapped now, then exit 0
 *   stderr-dup2        dup2 a file (errors.txt) onto 2, write to it
 *   stderr-close-range close_range(2, 2), open data.txt (gets fd 2)
 *   stderr-close-fork  close(2), fork a child, open data.txt (fd 2)
 *   stderr-close-all   close(2), close every other descriptor above 2,
 *                      open data.txt (fd 2), write to it
 *   stderr-fds-taken   close(2), raise RLIMIT_NOFILE to the hard limit,
 *                      open data.txt (fd 2), dup2 it onto every other
 *                      descriptor open above 2, write to it
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Open data.txt (it gets descriptor 2, the lowest free one) and write to it. */
static int data_on_stderr(void)
{
    int fd = open("data.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd != 2)
        return 20;
    if (write(fd, "the program's data\n", 19) != 19)
        return 21;
    printf("data.txt is on descriptor 2\n");
    return 0;
}

/* The open descriptors (from /proc/self/fd, the listing's own left out);
 * how many. */
static int open_fds(int *out, int max)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int own = dirfd(d), n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        int fd = atoi(e->d_name);
        if (fd != own && n < max)
            out[n++] = fd;
    }
    closedir(d);
    return n;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "stderr-replaced")) {
        close(2);
        int fd = open("data.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd != 2)
            return 10;
        if (write(fd, "the program's data\n", 19) != 19)
            return 11;
        printf("data.txt is on descriptor 2\n");
        return 0;
    }
    if (!strcmp(mode, "stderr-broken-pipe")) {
        int p[2];
        if (pipe(p) != 0)
            return 10;
        close(p[0]);
        if (dup2(p[1], 2) != 2)
            return 11;
        close(p[1]);
        printf("stderr is a pipe nobody reads\n");
        return 3;
    }
    if (!strcmp(mode, "stdout-file")) {
        int fd = open("out.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 1) != 1)
            return 10;
        close(fd);
        printf("the program's own output\n");
        return 0;
    }
    if (!strcmp(mode, "exec")) {
        if (argc > 2) {
            printf("second image\n");
            return 0;
        }
        printf("first image\n");
        fflush(stdout);
        execl(argv[0], argv[0], "exec", "second", (char *)NULL);
        return 12;
    }
    if (!strcmp(mode, "forks")) {
        int n = argc > 2 ? atoi(argv[2]) : 3;
        for (int i = 0; i < n; i++) {
            pid_t pid = fork();
            if (pid == 0) {
                getppid();
                _exit(0);
            }
            if (pid < 0)
                return 10;
        }
        for (int i = 0; i < n; i++)
            if (wait(NULL) < 0)
                return 11;
        printf("%d children\n", n);
        return 0;
    }
    if (!strcmp(mode, "fsize0")) {
        struct rlimit r;
        getrlimit(RLIMIT_FSIZE, &r);
        r.rlim_cur = 0;
        if (setrlimit(RLIMIT_FSIZE, &r) != 0)
            return 10;
        printf("no file may grow now\n");
        return 0;
    }
    if (!strcmp(mode, "no-memory")) {
        printf("no memory left to map\n");
        fflush(stdout);
        long pages = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        if (!f || fscanf(f, "%ld", &pages) != 1)
            return 10;
        fclose(f);
        struct rlimit r = { (rlim_t)pages * sysconf(_SC_PAGESIZE), RLIM_INFINITY };
        if (setrlimit(RLIMIT_AS, &r) != 0)
            return 11;
        _exit(0);
    }
    if (!strcmp(mode, "stderr-dup2")) {
        int fd = open("errors.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 2) != 2)
            return 10;
        close(fd);
        fprintf(stderr, "the program's errors\n");
        printf("errors.txt is on descriptor 2\n");
        return 0;
    }
    if (!strcmp(mode, "stderr-close-range")) {
        if (syscall(SYS_close_range, 2, 2, 0) != 0)
            return 10;
        return data_on_stderr();
    }
    if (!strcmp(mode, "stderr-close-fork")) {
        close(2);
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            getppid();
            _exit(0);
        }
        if (pid < 0 || waitpid(pid, NULL, 0) != pid)
            return 10;
        return data_on_stderr();
    }
    if (!strcmp(mode, "stderr-close-all")) {
        close(2);
        for (int fd = 3; fd < 65536; fd++)
            close(fd);
        return data_on_stderr();
    }
    if (!strcmp(mode, "stderr-fds-taken")) {
        close(2);
        /* Every number it has open may be dup2'd onto: the soft limit
         * raised to the hard one first (a number above the soft limit
         * cannot be a dup2 target). */
        struct rlimit r;
        if (getrlimit(RLIMIT_NOFILE, &r) != 0)
            return 10;
        r.rlim_cur = r.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &r) != 0)
            return 11;
        int open_above[64];
        int n = open_fds(open_above, 64);
        int rc = data_on_stderr();
        for (int i = 0; i < n; i++)
            if (open_above[i] > 2 && dup2(2, open_above[i]) != open_above[i])
                return 12;
        return rc;
    }
    printf("report_targets: nothing to do\n");
    return 0;
}
