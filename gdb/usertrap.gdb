# usertrap.gdb: gdb settings for debugging a program that runs under usertrap.
#
#   gdb -x gdb/usertrap.gdb \
#       -ex "set environment LD_PRELOAD $PWD/target/release/libusertrap.so" \
#       --args ./prog args...
#
# (The README's "Debugging" section says what gdb sees and why.)

# Every syscall the library intercepts on its slow path raises SIGSYS in the
# program, and the library's own handler serves it: let the program have it,
# without stopping or printing. (A program's own SIGSYS - from a seccomp filter
# of its own - is passed the same way: its handler or default action follows.)
handle SIGSYS nostop noprint pass

# gdb starts the program through a shell by default; preloaded, the shell would
# exec it through usertrap-launcher, and gdb would then debug the launcher's
# image instead of the program. Start the program directly (no shell
# redirections or globbing in `run` arguments, then).
set startup-with-shell off

# Keep every syscall site as the program's code has it: a patched site is a
# jump into the library, which `stepi` would follow, and a thread that runs a
# site while another patches it gets a SIGILL that the library serves (gdb
# would stop there: `continue` passes it on). SIGILL is left as it is, so the
# program's real SIGILLs still stop. Override with
#   -ex "set environment USERTRAP_PATCH 1"
# after this file to debug the fast path itself.
set environment USERTRAP_PATCH 0
