/*
 * Fault injection through the hook interface: every uname(2) fails with
 * EPERM without reaching the kernel; everything else runs unchanged.
 */
#include <errno.h>
#include <stddef.h>
#include <sys/syscall.h>

struct usertrap_call { long nr; unsigned long args[6]; long result; };
int usertrap_set_hooks(int (*before)(struct usertrap_call *, void *),
                       void (*after)(struct usertrap_call *, void *), void *user);

static int before(struct usertrap_call *c, void *user)
{
    (void)user;
    if (c->nr == SYS_uname) {
        c->result = -EPERM;
        return 1; /* skip the syscall */
    }
    return 0;
}

__attribute__((constructor)) static void install(void)
{
    usertrap_set_hooks(before, NULL, NULL);
}
