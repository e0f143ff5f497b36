"""A deterministic Python workload for usertrap's tests.

Run natively and under the library (LD_PRELOAD) in an empty scratch directory;
the test compares stdout, stderr, the exit status and the files left behind,
so everything printed or written here must be the same on every run: no pids,
ports, times, addresses, or set/dict orders that depend on hashing.

    workload.py            files, threads, signals, sockets, fork, subprocesses
    workload.py --no-exec  the same without anything that calls execve
"""

import concurrent.futures
import hashlib
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time


def section(name):
    print(f"== {name}")


def digest(data):
    return hashlib.sha256(data).hexdigest()[:16]


# --------------------------------------------------------------------------
def files():
    section("files")
    os.mkdir("data")
    for i in range(40):
        with open(f"data/f{i:02}.txt", "w") as f:
            f.write(f"file {i}\n" * (i + 1))
    total = 0
    for name in sorted(os.listdir("data")):
        with open(os.path.join("data", name), "rb") as f:
            total += len(f.read())
    print("40 files,", total, "bytes")

    for i in range(0, 40, 4):
        os.rename(f"data/f{i:02}.txt", f"data/renamed{i:02}.txt")
    os.replace("data/f01.txt", "data/f02.txt")
    os.remove("data/f03.txt")
    names = sorted(os.listdir("data"))
    print(len(names), "entries:", " ".join(names[:6]), "...", names[-1])

    st = os.stat("data/f02.txt")
    print("f02 size", st.st_size, "mode", oct(st.st_mode & 0o777), "nlink", st.st_nlink)
    os.link("data/f05.txt", "data/hardlink.txt")
    os.symlink("f06.txt", "data/symlink.txt")
    print("readlink", os.readlink("data/symlink.txt"),
          "nlink", os.stat("data/f05.txt").st_nlink,
          "lstat-is-link", os.path.islink("data/symlink.txt"))

    # Raw fd operations: pwrite/pread, lseek, truncate, dup, fsync.
    fd = os.open("raw.bin", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o640)
    os.write(fd, bytes(range(256)) * 64)
    os.pwrite(fd, b"HELLO", 100)
    print("pread", os.pread(fd, 8, 98).hex())
    print("lseek end", os.lseek(fd, 0, os.SEEK_END))
    os.ftruncate(fd, 5000)
    os.fsync(fd)
    fd2 = os.dup(fd)
    os.lseek(fd2, 4990, os.SEEK_SET)
    print("via dup", os.read(fd, 100).hex(), "size", os.fstat(fd2).st_size)
    os.close(fd2)
    os.close(fd)
    os.chmod("raw.bin", 0o600)

    os.makedirs("tree/a/b/c", exist_ok=True)
    for d in ("tree", "tree/a", "tree/a/b", "tree/a/b/c"):
        with open(os.path.join(d, "x"), "w") as f:
            f.write(d)
    walked = []
    for root, dirs, fs in os.walk("tree"):
        dirs.sort()
        walked.append(f"{root}:{','.join(sorted(fs))}")
    print("walk", " ".join(walked))
    os.unlink("tree/a/b/c/x")
    os.rmdir("tree/a/b/c")

    # A large file, written and read back in chunks.
    with open("big.bin", "wb") as f:
        for i in range(64):
            f.write(hashlib.sha256(str(i).encode()).digest() * 1024)
    with open("big.bin", "rb") as f:
        h = hashlib.sha256()
        while True:
            chunk = f.read(65536)
            if not chunk:
                break
            h.update(chunk)
    print("big.bin", os.path.getsize("big.bin"), h.hexdigest()[:16])


# --------------------------------------------------------------------------
def work(n):
    h = hashlib.sha256()
    for i in range(200 + n * 10):
        h.update(struct.pack("<II", n, i))
    path = f"worker{n:02}.tmp"
    with open(path, "w") as f:
        f.write(h.hexdigest())
    with open(path) as f:
        back = f.read()
    os.unlink(path)
    os.getppid()
    return n, back[:12], os.getpid() == MAIN_PID, threading.get_native_id() != MAIN_TID


def threads():
    section("threads")
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(48)))
    for n, h, same_pid, other_tid in results[:4]:
        print("work", n, h, same_pid, other_tid)
    print("all in one process:", all(r[2] for r in results),
          "all off the main thread:", all(r[3] for r in results))
    print("combined", digest("".join(r[1] for r in results).encode()))

    # Lock, barrier and condition variable between raw threads.
    lock = threading.Lock()
    counter = [0]
    barrier = threading.Barrier(6)
    order = []

    def bump(k):
        barrier.wait()
        for _ in range(2000):
            with lock:
                counter[0] += 1
        with lock:
            order.append(k)

    ts = [threading.Thread(target=bump, args=(k,)) for k in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print("counter", counter[0], "threads", sorted(order))

    cond = threading.Condition()
    box = []

    def producer():
        for i in range(50):
            with cond:
                box.append(i)
                cond.notify()

    got = []
    p = threading.Thread(target=producer)
    p.start()
    while len(got) < 50:
        with cond:
            while not box:
                cond.wait()
            got.extend(box)
            box.clear()
    p.join()
    print("condition", sum(got), len(got))


# --------------------------------------------------------------------------
def signals():
    section("signals")
    seen = []

    def on_usr1(signum, frame):
        seen.append(signal.Signals(signum).name)

    old = signal.signal(signal.SIGUSR1, on_usr1)
    print("old SIGUSR1 handler is default:", old == signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGUSR1)
    print("after os.kill:", seen)

    # A signal sent from another thread to the main thread.
    t = threading.Thread(
        target=lambda: signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1))
    t.start()
    t.join()
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    print("after pthread_kill:", seen)

    # Interval timer with a handler; the timer is stopped from the handler.
    ticks = [0]

    def on_alarm(signum, frame):
        ticks[0] += 1
        if ticks[0] >= 5:
            signal.setitimer(signal.ITIMER_REAL, 0)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.005, 0.005)
    deadline = time.monotonic() + 10
    while ticks[0] < 5 and time.monotonic() < deadline:
        time.sleep(0.002)
    signal.setitimer(signal.ITIMER_REAL, 0)
    # Two expirations can merge into one handler call, and one can slip in
    # after the handler stopped the timer: print a stable fact only.
    print("itimer fired at least 5 times:", ticks[0] >= 5)

    # A sleep interrupted by a signal is resumed (PEP 475).
    signal.setitimer(signal.ITIMER_REAL, 0.02)
    before = ticks[0]
    t0 = time.monotonic()
    time.sleep(0.1)
    print("sleep resumed after SIGALRM:", time.monotonic() - t0 >= 0.09, ticks[0] == before + 1)

    # Blocked signals stay pending; sigwait consumes one; unblocking delivers.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2, signal.SIGUSR1})
    print("SIGUSR2 blocked before:", signal.SIGUSR2 in old_mask)
    signal.signal(signal.SIGUSR2, lambda s, f: seen.append("SIGUSR2"))
    os.kill(os.getpid(), signal.SIGUSR2)
    os.kill(os.getpid(), signal.SIGUSR1)
    print("pending:", sorted(s.name for s in signal.sigpending()))
    print("sigwait:", signal.Signals(signal.sigwait({signal.SIGUSR2})).name)
    print("pending:", sorted(s.name for s in signal.sigpending()))
    print("handlers so far:", seen)
    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    print("after unblock:", seen)
    print("mask restored:",
          sorted(s.name for s in signal.pthread_sigmask(signal.SIG_BLOCK, set())))
    print("sigtimedwait on nothing pending:",
          signal.sigtimedwait({signal.SIGUSR2}, 0.01))

    for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM):
        signal.signal(s, signal.SIG_DFL)
    ignored = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.kill(os.getpid(), signal.SIGTERM)
    print("SIGTERM ignored, still alive; previous handler default:", ignored == signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


# --------------------------------------------------------------------------
def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def sockets():
    section("sockets")
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    served = []

    def serve(nconn):
        for _ in range(nconn):
            conn, _addr = srv.accept()
            with conn:
                total = 0
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    conn.sendall(data)
                    total += len(data)
                served.append(total)

    sizes = [1, 1000, 70000, 300000]
    server = threading.Thread(target=serve, args=(len(sizes),))
    server.start()
    for size in sizes:
        payload = bytes((i * 7 + size) & 0xFF for i in range(size))
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Send from a thread so a large payload cannot deadlock against
            # the echo filling our receive buffer.
            sender = threading.Thread(target=lambda: (c.sendall(payload), c.shutdown(socket.SHUT_WR)))
            sender.start()
            back = recv_exact(c, size)
            sender.join()
            print("tcp echo", size, "bytes intact:", back == payload)
    server.join()
    srv.close()
    print("server saw", served)

    # UDP on loopback.
    u1 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u1.bind(("127.0.0.1", 0))
    u2.bind(("127.0.0.1", 0))
    for i in range(5):
        u1.sendto(f"datagram {i}".encode(), u2.getsockname())
    print("udp", [u2.recvfrom(100)[0].decode() for _ in range(5)])
    u1.close()
    u2.close()

    # socketpair, selectors, and passing a file descriptor with SCM_RIGHTS.
    a, b = socket.socketpair()
    sel = selectors.DefaultSelector()
    sel.register(b, selectors.EVENT_READ)
    print("ready before send:", len(sel.select(timeout=0)))
    a.sendall(b"ping")
    print("ready after send:", len(sel.select(timeout=5)), recv_exact(b, 4))
    sel.close()
    with open("passed.txt", "w") as f:
        f.write("sent over a socket\n")
    fd = os.open("passed.txt", os.O_RDONLY)
    socket.send_fds(a, [b"fd"], [fd])
    msg, fds, _flags, _addr = socket.recv_fds(b, 10, 1)
    os.close(fd)
    print("recv_fds", msg, len(fds), os.read(fds[0], 100))
    os.close(fds[0])
    a.close()
    print("peer closed, recv:", b.recv(10))
    b.close()

    # A pipe between threads.
    r, w = os.pipe()
    writer = threading.Thread(target=lambda: [os.write(w, b"x" * 4096) for _ in range(100)])
    writer.start()
    got = 0
    while got < 409600:
        got += len(os.read(r, 65536))
    writer.join()
    os.close(r)
    os.close(w)
    print("pipe carried", got, "bytes")


# --------------------------------------------------------------------------
def fork():
    section("fork")
    sys.stdout.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        with open("from_child.txt", "w") as f:
            f.write("written by the forked child\n")
        os.write(w, f"child sees parent alive: {os.getppid() > 1}".encode())
        os._exit(7)
    os.close(w)
    msg = b""
    while True:
        chunk = os.read(r, 100)
        if not chunk:
            break
        msg += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    print(msg.decode(), "| exit status", os.waitstatus_to_exitcode(status))

    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    print("child killed by", signal.Signals(os.WTERMSIG(status)).name)


# --------------------------------------------------------------------------
def subprocesses():
    section("subprocess")
    r = subprocess.run(["/bin/echo", "hello from /bin/echo"], capture_output=True)
    print("echo:", r.returncode, r.stdout)
    r = subprocess.run(["sh", "-c", "printf 'one\\ntwo\\nthree\\n' | tr a-z A-Z | sort"],
                       capture_output=True)
    print("pipeline:", r.returncode, r.stdout)
    r = subprocess.run(["sh", "-c", "echo to stderr >&2; exit 3"], capture_output=True)
    print("exit 3:", r.returncode, r.stderr)
    # No LD_PRELOAD in the child's environment at all.
    r = subprocess.run([sys.executable, "-c", "import sys; print('child python', sum(range(100))); sys.exit(5)"],
                       env={}, capture_output=True)
    print("python child:", r.returncode, r.stdout)
    with subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as p:
        out, _ = p.communicate(b"through cat\n" * 1000)
    print("cat:", p.returncode, len(out), digest(out))
    r = subprocess.run(["sh", "-c", "kill -TERM $$"], capture_output=True)
    print("signalled child:", r.returncode)


MAIN_PID = os.getpid()
MAIN_TID = threading.get_native_id()


def main():
    no_exec = "--no-exec" in sys.argv[1:]
    files()
    threads()
    signals()
    sockets()
    fork()
    if not no_exec:
        subprocesses()
    print("workload done" + (" (no exec)" if no_exec else ""))


if __name__ == "__main__":
    main()
