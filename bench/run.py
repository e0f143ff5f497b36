#!/usr/bin/env python3
"""usertrap benchmark: what interception costs, in one run.

For a loop of getppid() and a loop of 1-byte reads from /dev/zero it prints
ns per call natively, under the library on the slow path (USERTRAP_PATCH=0,
every call a SIGSYS) and on the fast path (patched sites), for both backends,
and under `strace -c`, with the ratio to native. Then the share of a real
program's syscalls that took the fast path. Timings come from inside the
workload (best of 5 rounds), so start-up costs are not counted. Nothing here
asserts: the machines are shared and noisy; the targets are printed beside
the figures.

Run it with `make bench`.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, "target", "release", "libusertrap.so")
LOOP = os.path.join(ROOT, "target", "bench", "syscall_loop")
SUMMARY = re.compile(r"usertrap: pid \d+: (\d+) syscalls intercepted \((\w+)\), (\d+) on the fast path")


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("USERTRAP_") and k != "LD_PRELOAD"}
    env.update(extra)
    return env


def traced_env(backend, patch, summary="0"):
    return clean_env(LD_PRELOAD=LIB, USERTRAP_BACKEND=backend, USERTRAP_PATCH="1" if patch else "0",
                     USERTRAP_SUMMARY=summary)


def loop_ns(workload, n, env=None, prefix=()):
    out = subprocess.run([*prefix, LOOP, workload, str(n)], env=env or clean_env(),
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def fast_share(argv, backend):
    """(fast, total) calls over every process of `argv` under the library."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "summary.txt")
        # To a file: tar, like coreutils, closes stderr before it exits.
        subprocess.run(argv, env=traced_env(backend, True, summary=path), capture_output=True)
        with open(path) as f:
            text = f.read()
    fast = total = 0
    for m in SUMMARY.finditer(text):
        total += int(m.group(1))
        fast += int(m.group(3))
    return fast, total


def main():
    n_fast, n_slow, n_strace = 1_000_000, 100_000, 20_000
    print(f"usertrap benchmark on {os.uname().release}, {os.cpu_count()} cpus; ns per call, best of 5 rounds\n")
    header = f"{'workload':<10} {'mode':<26} {'ns/call':>9} {'x native':>9}"
    print(header)
    print("-" * len(header))
    strace = shutil.which("strace")
    targets = []
    for workload in ("getppid", "read"):
        native = loop_ns(workload, n_fast)
        rows = [("native", native)]
        for backend in ("seccomp", "sud"):
            rows.append((f"{backend}, fast path", loop_ns(workload, n_fast, traced_env(backend, True))))
            rows.append((f"{backend}, slow path", loop_ns(workload, n_slow, traced_env(backend, False))))
        if strace:
            rows.append(("strace -c", loop_ns(workload, n_strace, prefix=(strace, "-c", "-o", os.devnull))))
        for mode, ns in rows:
            print(f"{workload:<10} {mode:<26} {ns:>9.1f} {ns / native:>8.2f}x")
            if workload == "getppid" and mode == "seccomp, fast path":
                targets.append(f"fast path, getppid, seccomp: {ns / native:.2f} x native, "
                               f"+{ns - native:.0f} ns (target: at most 1.35 x)")
        print()

    python = subprocess.run(["python3", "-c", "import sys; print(sys.executable)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    programs = [
        ("python3: 200,000 os.stat", [python, "-c", "import os\nfor _ in range(200000): os.stat('/')"]),
        ("tar cf /dev/null /usr/include", ["tar", "cf", "/dev/null", "/usr/include"]),
    ]
    print(f"{'program':<32} {'backend':<8} {'syscalls':>9} {'fast path':>10}")
    for name, argv in programs:
        for backend in ("seccomp", "sud"):
            fast, total = fast_share(argv, backend)
            share = 100.0 * fast / total if total else 0.0
            print(f"{name:<32} {backend:<8} {total:>9} {share:>9.1f}%")
            if backend == "seccomp":
                targets.append(f"fast-path share, {name}: {share:.1f}% (target: at least 95%)")
    print("\nagainst the targets:")
    for t in targets:
        print("  " + t)


if __name__ == "__main__":
    sys.exit(main())
