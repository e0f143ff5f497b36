/*
 * Hard case: membarrier(2) as the program sees it (LTP membarrier01).
 *
 * Why it is hard: the library registers the process for
 * MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE before it patches its first
 * site (cross-modifying code). Registration is per process and cannot be
 * undone, so without care the program's SYNC_CORE barrier succeeds where
 * the kernel says EPERM (it never registered), and GET_REGISTRATIONS shows
 * a registration the program never made.
 *
 * What it checks, after a patchable site ran a few times (so the library
 * has registered, when patching is on): SYNC_CORE and PRIVATE_EXPEDITED
 * before registering: EPERM; GET_REGISTRATIONS: none; after the program
 * registers SYNC_CORE: the barrier works and GET_REGISTRATIONS shows what
 * the kernel shows natively; the registration holds in a fork child.
 */
#include "common.h"

#include <linux/membarrier.h>
#include <sys/wait.h>

#define CMD_GET_REGISTRATIONS 512

__attribute__((noinline)) static long site_getppid(void)
{
    long ret;
    __asm__ volatile("mov $110, %%eax\n\tsyscall" : "=a"(ret) : : "rcx", "r11", "memory");
    return ret;
}

/* -errno or the result */
static long mb(int cmd)
{
    long r = syscall(SYS_membarrier, cmd, 0, 0);
    return r < 0 ? -errno : r;
}

int main(void)
{
    pid_t ppid = getppid();
    for (int i = 0; i < 10; i++)
        EXPECT_EQ("getppid through a patchable site", site_getppid(), ppid);

    long q = mb(MEMBARRIER_CMD_QUERY);
    REQUIRE(q >= 0, "membarrier QUERY");
    if (!(q & MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)) {
        say("SYNC_CORE not supported here\n");
        return finish();
    }
    int has_get = (q & CMD_GET_REGISTRATIONS) != 0;

    int s = section_begin();
    EXPECT_EQ("SYNC_CORE barrier, not registered", mb(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE), -EPERM);
    EXPECT_EQ("PRIVATE_EXPEDITED barrier, not registered", mb(MEMBARRIER_CMD_PRIVATE_EXPEDITED), -EPERM);
    if (has_get)
        EXPECT_EQ("GET_REGISTRATIONS before", mb(CMD_GET_REGISTRATIONS), 0);
    section_end(s, "not registered: EPERM, no registrations");

    s = section_begin();
    EXPECT_EQ("REGISTER SYNC_CORE", mb(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE), 0);
    EXPECT_EQ("SYNC_CORE barrier, registered", mb(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE), 0);
    if (has_get)
        say("GET_REGISTRATIONS after SYNC_CORE: %ld\n", mb(CMD_GET_REGISTRATIONS));
    say("PRIVATE_EXPEDITED after SYNC_CORE registration: %ld\n", mb(MEMBARRIER_CMD_PRIVATE_EXPEDITED));
    EXPECT_EQ("REGISTER PRIVATE_EXPEDITED", mb(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED), 0);
    EXPECT_EQ("PRIVATE_EXPEDITED barrier, registered", mb(MEMBARRIER_CMD_PRIVATE_EXPEDITED), 0);
    if (has_get)
        say("GET_REGISTRATIONS after both: %ld\n", mb(CMD_GET_REGISTRATIONS));
    section_end(s, "registered: barriers work");

    s = section_begin();
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) {
        int bad = mb(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) != 0;
        _exit(bad);
    }
    int st;
    EXPECT_EQ("waitpid", waitpid(pid, &st, 0), pid);
    EXPECT("fork child keeps the registration", WIFEXITED(st) && WEXITSTATUS(st) == 0);
    section_end(s, "fork child: SYNC_CORE registration kept");
    return finish();
}
