"""Python with faulthandler enabled, as pytest and CPython's test runner run
it (`python3 -X faulthandler`): faulthandler gives the process a small
alternate signal stack and SA_ONSTACK handlers for SIGSEGV, SIGFPE, SIGABRT,
SIGBUS and SIGILL. Under usertrap before issue 9 was fixed this died of
SIGSEGV at the first subprocess.run.

Run by tests/runtimes.rs natively and under the library, in an empty scratch
directory; everything printed must be the same on every run (no pids, thread
ids, addresses or times).
"""

import faulthandler
import os
import queue
import signal
import subprocess
import sys
import threading
import time

assert faulthandler.is_enabled(), "run with -X faulthandler"

# faulthandler's alternate stack is SIGSTKSZ + AT_MINSIGSTKSZ bytes, which
# glibc and the kernel size for the CPU's XSAVE area: about 58 KiB with
# AVX-512, 12-16 KiB without, where the library's handlers overflowed it.
# `--altstack-kib N` replaces it, in this process and its python children,
# with an N KiB stack above a guard page, as on such a machine (an overflow
# then faults at once instead of corrupting the heap below faulthandler's
# malloc'd stack).
SMALL_ALTSTACK = """
import ctypes, mmap
class _StackT(ctypes.Structure):
    _fields_ = [("sp", ctypes.c_void_p), ("flags", ctypes.c_int), ("size", ctypes.c_size_t)]
def small_altstack(kib):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page = mmap.PAGESIZE
    base = libc.mmap(None, page + kib * 1024, mmap.PROT_READ | mmap.PROT_WRITE,
                     mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    assert base not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
    assert libc.mprotect(base, page, 0) == 0, ctypes.get_errno()
    ss = _StackT(base + page, 0, kib * 1024)
    assert libc.sigaltstack(ctypes.byref(ss), None) == 0, ctypes.get_errno()
"""
ALTSTACK_KIB = 0
if len(sys.argv) > 2 and sys.argv[1] == "--altstack-kib":
    ALTSTACK_KIB = int(sys.argv[2])
    exec(SMALL_ALTSTACK)
    small_altstack(ALTSTACK_KIB)


def python_child(code):
    """A python -X faulthandler child running `code`, with the same stack."""
    if ALTSTACK_KIB:
        code = SMALL_ALTSTACK + "small_altstack(%d)\n" % ALTSTACK_KIB + code
    return [sys.executable, "-X", "faulthandler", "-c", code]


def subprocesses():
    # posix_spawn / vfork (close_fds, no preexec_fn), fork (preexec_fn),
    # pipes, a python child with faulthandler too, a failing child.
    print("true:", subprocess.run(["/bin/true"]).returncode)
    print("false:", subprocess.run(["/bin/false"]).returncode)
    r = subprocess.run(["/bin/echo", "hello"], capture_output=True)
    print("echo:", r.returncode, r.stdout)
    r = subprocess.run(
        python_child("import faulthandler, sys; print('child python', faulthandler.is_enabled()); sys.exit(4)"),
        capture_output=True)
    print("python child:", r.returncode, r.stdout, r.stderr)
    r = subprocess.run(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"],
                       capture_output=True, preexec_fn=lambda: None)
    print("sh with preexec_fn (fork):", r.returncode, r.stdout, r.stderr)
    r = subprocess.run(["/bin/cat"], input=b"through cat\n", capture_output=True)
    print("cat:", r.returncode, r.stdout)
    try:
        subprocess.run(["/nonexistent/program"])
    except FileNotFoundError as e:
        print("missing program:", e.errno)


def threads():
    # Worker threads (each gets no alternate stack of its own: faulthandler's
    # is per process, set on the main thread) with a queue and a condition.
    q = queue.Queue()
    results = []
    lock = threading.Lock()

    def worker(n):
        while True:
            item = q.get()
            if item is None:
                break
            with lock:
                results.append(item * n)
            os.getppid()

    ts = [threading.Thread(target=worker, args=(1,)) for _ in range(4)]
    for t in ts:
        t.start()
    for i in range(400):
        q.put(i)
    for _ in ts:
        q.put(None)
    for t in ts:
        t.join()
    print("threads:", len(results), sum(results))
    # Subprocesses started from threads at once.
    outs = [None] * 3

    def spawner(i):
        outs[i] = subprocess.run(["/bin/echo", "thread", str(i)], capture_output=True).stdout

    ts = [threading.Thread(target=spawner, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print("spawned from threads:", outs)


def signals():
    got = []
    signal.signal(signal.SIGUSR1, lambda s, f: got.append("USR1"))
    os.kill(os.getpid(), signal.SIGUSR1)
    print("SIGUSR1 to self:", got)

    # A timer interrupting a sleep (handler runs, sleep resumes: PEP 475),
    # then a repeating timer counted to 5 while blocked in signal.pause().
    ticks = []
    signal.signal(signal.SIGALRM, lambda s, f: ticks.append(1))
    signal.setitimer(signal.ITIMER_REAL, 0.01)
    time.sleep(0.05)
    print("one-shot timer during sleep:", len(ticks))
    ticks.clear()
    signal.setitimer(signal.ITIMER_REAL, 0.005, 0.005)
    while len(ticks) < 5:
        signal.pause()
    signal.setitimer(signal.ITIMER_REAL, 0)
    print("repeating timer ticks >= 5:", len(ticks) >= 5)

    # CPython's test_signal StressTest.test_stress_delivery_simultaneous: a
    # timer expiring 1-11 us after it is set, while SIGUSR1 sent to itself is
    # being handled; both handlers must run. (A SIGALRM that arrived while
    # the library served the handler's rt_sigreturn waited for the thread's
    # next trapped syscall, and the test hung.)
    sigs = []
    signal.signal(signal.SIGUSR1, lambda s, f: sigs.append(s))
    signal.signal(signal.SIGALRM, lambda s, f: sigs.append(s))
    late = 0
    for i in range(1000):
        signal.setitimer(signal.ITIMER_REAL, 1e-6 + (i % 10) * 1e-6)
        os.kill(os.getpid(), signal.SIGUSR1)
        deadline = time.monotonic() + 2
        while len(sigs) < 2 * (i + 1) and time.monotonic() < deadline:
            time.sleep(0.0001)
        if len(sigs) < 2 * (i + 1):
            late += 1
            del sigs[:]
            sigs.extend([0] * (2 * (i + 1)))
            if late == 3:
                break
    print("timer during SIGUSR1, 1000 times: %d late by over 2 s" % late)

    # A signal to a blocked thread, taken with sigwait.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    os.kill(os.getpid(), signal.SIGUSR2)
    print("pending:", signal.SIGUSR2 in signal.sigpending())
    print("sigwait:", signal.Signals(signal.sigwait({signal.SIGUSR2})).name)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR2})

    # faulthandler's own SA_ONSTACK handler for a user signal: dumps this
    # thread's Python stack into a file, from its alternate stack.
    with open("traceback.txt", "w+") as f:
        faulthandler.register(signal.SIGUSR2, file=f, all_threads=False)
        os.kill(os.getpid(), signal.SIGUSR2)
        faulthandler.unregister(signal.SIGUSR2)
        f.seek(0)
        dump = f.read()
    print("faulthandler dump on SIGUSR2:")
    print(dump.replace(os.path.abspath(__file__), "<script>"), end="")


def fatal_signals():
    # A child crashing for real: faulthandler's SIGSEGV handler runs on its
    # alternate stack, prints the fatal error and re-raises the signal.
    for fn in ("_sigsegv", "_sigabrt", "_sigfpe"):
        r = subprocess.run(python_child("import faulthandler; faulthandler.%s()" % fn),
                           capture_output=True)
        first = r.stderr.decode().splitlines()[0] if r.stderr else ""
        print("child faulthandler.%s(): returncode %d, %r" % (fn, r.returncode, first))


subprocesses()
threads()
signals()
fatal_signals()
print("done")
