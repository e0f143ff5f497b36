#!/usr/bin/env python3
"""usertrap benchmark: what interception costs, in one run.

First, interception alone (USERTRAP_TIMING=0): for a loop of getppid(), a
loop of syscall(SYS_getppid) (syscall(3), patched as a relocated range) and
a loop of 1-byte reads from /dev/zero (glibc's `read`, patched through a
pad) it prints ns per call natively, natively with each backend's kernel mechanism on
and nothing intercepted (the floor no interposer on that backend goes under), under
the library on the slow path (USERTRAP_PATCH=0,
every call a SIGSYS) and on the fast path (patched sites), for both backends,
and under `strace -c`, with the ratio to native. Then the share of a real
program's syscalls that took the fast path. Then measurement (the default):
`usertrap stat` on whole programs (under each backend; exec-heavy and static
ones included) against `strace -c` and `perf trace -s`,
and the getppid loop with every call timed. Then the cost per process: a
driver that posix_spawns /bin/true many times, natively, preloaded and under
`usertrap stat` (each child exec'd through the launcher), with wall and CPU
time per child, and where the added time goes (USERTRAP_PHASES=1) and the
syscalls the library adds. Loop timings come from inside the
workload (best of 5 rounds), so start-up costs are not counted. Nothing here
asserts: the machines are shared and noisy; the targets are printed beside
the figures.

Run it with `make bench`.
"""
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, "target", "release", "libusertrap.so")
LOOP = os.path.join(ROOT, "target", "bench", "syscall_loop")
LOOP_STATIC = os.path.join(ROOT, "target", "bench", "syscall_loop_static")
SPAWN = os.path.join(ROOT, "target", "bench", "spawn_loop")
CLI = os.path.join(ROOT, "target", "release", "usertrap")
SUMMARY = re.compile(r"usertrap: pid \d+: (\d+) syscalls intercepted \((\w+)\), (\d+) on the fast path")


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("USERTRAP_") and k != "LD_PRELOAD"}
    env.update(extra)
    return env


def traced_env(backend, patch, summary="0"):
    # Interception alone: no timestamps (USERTRAP_TIMING=0), no report.
    return clean_env(LD_PRELOAD=LIB, USERTRAP_BACKEND=backend, USERTRAP_PATCH="1" if patch else "0",
                     USERTRAP_SUMMARY=summary, USERTRAP_TIMING="0", USERTRAP_OUTPUT=os.devnull)


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
    if sys.argv[1:] == ["trace"]:
        # Only `usertrap trace`'s row (issue 15).
        targets = []
        trace_overhead(sys.executable, targets)
        print("\nagainst the targets:")
        for t in targets:
            print("  " + t)
        return
    if sys.argv[1:] == ["per-process"]:
        # Only the per-process part (quicker: BENCH_SPAWNS=200).
        targets = []
        per_process(targets)
        print("\nagainst the targets:")
        for t in targets:
            print("  " + t)
        return
    n_fast, n_slow, n_strace = 1_000_000, 100_000, 20_000
    print(f"usertrap benchmark on {os.uname().release}, {os.cpu_count()} cpus; ns per call, best of 5 rounds\n")
    header = f"{'workload':<10} {'mode':<26} {'ns/call':>9} {'x native':>9}"
    print(header)
    print("-" * len(header))
    strace = shutil.which("strace")
    targets = []
    for workload in ("getppid", "syscall3", "read"):
        native = loop_ns(workload, n_fast)
        rows = [("native", native)]
        if workload == "getppid":
            # What each backend costs in the kernel alone (no interposer):
            # the floor under its fast path.
            rows.append(("kernel floor, sud", loop_ns("sud_floor", n_fast)))
            rows.append(("kernel floor, seccomp", loop_ns("seccomp_floor", n_fast)))
        for backend in ("seccomp", "sud"):
            rows.append((f"{backend}, fast path", loop_ns(workload, n_fast, traced_env(backend, True))))
            rows.append((f"{backend}, slow path", loop_ns(workload, n_slow, traced_env(backend, False))))
        if strace:
            rows.append(("strace -c", loop_ns(workload, n_strace, prefix=(strace, "-c", "-o", os.devnull))))
        for mode, ns in rows:
            print(f"{workload:<10} {mode:<26} {ns:>9.1f} {ns / native:>8.2f}x")
            if workload == "getppid" and mode.endswith("fast path"):
                # Issue 13: the default backend (sud where the kernel has it).
                goal = " (target: at most 1.30 x under the default backend)" if mode.startswith("sud") else ""
                targets.append(f"fast path, getppid, {mode.split(',')[0]}, not timed: {ns / native:.2f} x native, "
                               f"+{ns - native:.0f} ns{goal}")
        print()

    python = subprocess.run(["python3", "-c", "import sys; print(sys.executable)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    programs = [
        ("python3: 200,000 os.stat", [python, "-c", "import os\nfor _ in range(200000): os.stat('/')"]),
        ("tar cf /dev/null /usr/include", ["tar", "cf", "/dev/null", "/usr/include"]),
        ("dd bs=1, 200,000 reads", ["dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=200000"]),
        ("python3: threads, queue.Queue", [python, "-c", QUEUE]),
    ]
    rust_std = rust_std_binary()
    if rust_std:
        programs.append(("rust std (tests/data/rust_std)", [rust_std]))
    for flavor in ("static", "cgo"):
        go = go_binary(flavor)
        if go:
            programs.append((f"go ({flavor}): tests/data/go/reads", ["sh", "-c", 'exec "$0"', go]))
    programs.append(("bash: builtins, pipes, commands", ["bash", bash_script()]))
    if shutil.which("make") and shutil.which("cc"):
        programs.append(("make -j2: 17 C files", ["make", "-s", "-B", "-j2", "-C", c_project()]))
    if shutil.which("redis-server") and shutil.which("redis-benchmark"):
        programs.append(("redis-server, redis-benchmark", None))
    print(f"{'program':<32} {'backend':<8} {'syscalls':>9} {'fast path':>10}")
    for name, argv in programs:
        for backend in ("seccomp", "sud"):
            fast, total = fast_share(argv, backend) if argv else redis_share(backend)
            share = 100.0 * fast / total if total else 0.0
            print(f"{name:<32} {backend:<8} {total:>9} {share:>9.1f}%")
            if backend == "seccomp":
                goal = 95 if name.startswith("bash") else 99
                targets.append(f"fast-path share, {name}: {share:.1f}% (target: at least {goal}%)")
    stat_overhead(python, targets)
    trace_overhead(python, targets)
    per_process(targets)

    print("\nagainst the targets:")
    for t in targets:
        print("  " + t)


QUEUE = ("import threading, queue\nq = queue.Queue()\ndef prod():\n    for i in range(20000): q.put(i)\n"
         "    q.put(None)\nt = threading.Thread(target=prod); t.start()\nwhile q.get() is not None: pass\nt.join()\n")


BASH_SCRIPT = """n=0
for i in $(seq 1 200); do
  n=$((n + i))
  x=$(echo "$i" | tr 0-9 a-j)
  case $x in a*) : ;; esac
  [ -n "$x" ] && y=${x%?}
  printf '%s\\n' "$x" | cat > /dev/null
done
while read -r line; do n=$((n + 1)); done < /etc/passwd
echo "$n"
"""


def bash_script():
    """A bash script of builtins, pipes and short commands (200 rounds)."""
    path = os.path.join(ROOT, "target", "bench", "script.sh")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(BASH_SCRIPT)
    return path


def redis_share(backend):
    """(fast, total) calls of redis-server (traced) serving redis-benchmark
    (native): 30,000 SET, GET and INCR from 10 clients."""
    port = "16399"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "summary.txt")
        server = subprocess.Popen(["redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", tmp],
                                  env=traced_env(backend, True, summary=path), stdout=subprocess.DEVNULL)
        try:
            for _ in range(100):
                if subprocess.run(["redis-cli", "-p", port, "ping"], env=clean_env(),
                                  capture_output=True).returncode == 0:
                    break
                time.sleep(0.05)
            subprocess.run(["redis-benchmark", "-p", port, "-q", "-n", "10000", "-c", "10", "-t", "set,get,incr"],
                           env=clean_env(), capture_output=True)
            subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], env=clean_env(), capture_output=True)
            server.wait(timeout=10)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
        with open(path) as f:
            text = f.read()
    fast = total = 0
    for m in SUMMARY.finditer(text):
        total += int(m.group(1))
        fast += int(m.group(3))
    return fast, total


def rust_std_binary():
    """tests/data/rust_std, built as the tests build it; None without cargo."""
    target = os.path.join(ROOT, "target", "rust_std")
    cargo = shutil.which("cargo")
    if not cargo:
        return None
    r = subprocess.run([cargo, "build", "--offline", "--release", "--quiet", "--manifest-path",
                        os.path.join(ROOT, "tests", "data", "rust_std", "Cargo.toml"), "--target-dir", target],
                       env=clean_env(), capture_output=True)
    binary = os.path.join(target, "release", "rust_std")
    return binary if r.returncode == 0 and os.path.exists(binary) else None


def go_binary(flavor):
    """tests/data/go/reads.go built static or with cgo; None without go."""
    go = shutil.which("go")
    if not go:
        return None
    work = os.path.join(ROOT, "target", "gowork")
    out = os.path.join(ROOT, "target", "bench", f"goreads_{flavor}")
    src = os.path.join(ROOT, "tests", "data", "go")
    env = clean_env(GOPATH=os.path.join(work, "path"), GOCACHE=os.path.join(work, "cache"), GO111MODULE="off",
                    GOPROXY="off", GOTOOLCHAIN="local", GOFLAGS="", CGO_ENABLED="0" if flavor == "static" else "1")
    r = subprocess.run([go, "build", "-o", out, os.path.join(src, "reads.go"), os.path.join(src, "cgo.go")],
                       env=env, capture_output=True)
    return out if r.returncode == 0 else None


def wall(argv, env=None, prefix=(), runs=3):
    """Best wall-clock seconds of `runs` runs of prefix + argv."""
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run([*prefix, *argv], env=env or clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            return None
        best = min(best, dt)
    return best


def git_tree():
    """A git work tree with a copy of /usr/include, made once."""
    tree = os.path.join(ROOT, "target", "bench", "git-tree")
    if not os.path.isdir(os.path.join(tree, ".git")):
        shutil.rmtree(tree, ignore_errors=True)
        shutil.copytree("/usr/include", os.path.join(tree, "include"), symlinks=True)
        env = clean_env(GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@b")
        for argv in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "tree"]):
            subprocess.run(argv, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    return tree


# A configure script's shape: many short processes (test, sed, grep, expr,
# cat, a compiler) writing and reading small files.
CONFIGURE = r"""cd "$1" || exit 1
for i in $(seq 40); do
  echo "#define HAVE_$i 1" >> confdefs.h
  test -f confdefs.h && grep -c HAVE_ confdefs.h > /dev/null
  printf 'ab%s\n' "$i" | sed 's/ab/cd/' | tr a-z A-Z > conftest.out
  n=$(expr "$i" + 1); cat conftest.out > /dev/null
done
for i in 1 2 3 4; do
  echo "int main(void) { return $i - $i; }" > conftest.c
  cc -o conftest conftest.c && ./conftest
done
rm -f confdefs.h conftest.out conftest.c conftest"""


def configure_dir():
    path = os.path.join(ROOT, "target", "bench", "configure")
    os.makedirs(path, exist_ok=True)
    return path


def c_project():
    """16 small C files and a Makefile (rebuilt with -B each run), made once."""
    path = os.path.join(ROOT, "target", "bench", "c-project")
    if not os.path.exists(os.path.join(path, "Makefile")):
        os.makedirs(path, exist_ok=True)
        names = [f"f{i}" for i in range(16)]
        for i, n in enumerate(names):
            with open(os.path.join(path, f"{n}.c"), "w") as f:
                f.write(f"#include <stdio.h>\n#include <string.h>\nint {n}(const char *s) {{ return (int)strlen(s) + {i}; }}\n")
        with open(os.path.join(path, "main.c"), "w") as f:
            f.write("".join(f"int {n}(const char *);\n" for n in names))
            f.write("int main(void) { return " + " + ".join(f"{n}(\"\")" for n in names) + " > 1000; }\n")
        objs = " ".join(f"{n}.o" for n in names + ["main"])
        with open(os.path.join(path, "Makefile"), "w") as f:
            f.write(f"prog: {objs}\n\tcc -o $@ $^\n%.o: %.c\n\tcc -O1 -c -o $@ $<\n")
    return path


def stat_overhead(python, targets):
    """Issue 4: the cost of measuring every call, against strace -c and perf trace -s."""
    cli = os.path.join(ROOT, "target", "release", "usertrap")
    print("\nwhole programs, best of 3 wall-clock runs (usertrap measures every call):")
    if os.path.exists(cli):
        def usertrap(backend):
            return (cli, "stat", "--backend", backend, "-o", os.devnull, "--")
    else:
        def usertrap(backend):
            return ("env", f"LD_PRELOAD={LIB}", f"USERTRAP_BACKEND={backend}", f"USERTRAP_OUTPUT={os.devnull}")
    strace = shutil.which("strace")
    perf = shutil.which("perf")
    perf_ok = perf and subprocess.run([perf, "trace", "-s", "-o", os.devnull, "--", "/bin/true"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    tree = git_tree()
    workloads = [
        ("python3: 200,000 os.stat", [python, "-c", "import os\nfor _ in range(200000): os.stat('/')"]),
        ("tar cf /dev/null /usr/include", ["tar", "cf", "/dev/null", "/usr/include"]),
        ("git status (8k files)", ["git", "-C", tree, "status", "--short"]),
        # exec through the launcher, 200 times
        ("sh: 200 execs of /bin/true", ["sh", "-c", "for i in $(seq 200); do /bin/true; done"]),
        # a static program (the launcher is its interposer), patched
        ("static: 200,000 getppid", [LOOP_STATIC, "getppid", "200000"]),
        # many short processes, as a configure script runs them
        ("configure-style script", ["sh", "-c", CONFIGURE, "configure", configure_dir()]),
        ("make -j2 of a C project (16 files)", ["make", "-s", "-B", "-j2", "-C", c_project()]),
    ]
    # Issue 13's targets: exec-heavy rows at most 1.25 x, the python row 1.05 x.
    goals = {"python3: 200,000 os.stat": "1.05", "git status (8k files)": "1.25", "sh: 200 execs of /bin/true": "1.25",
             "configure-style script": "1.25", "make -j2 of a C project (16 files)": "1.25"}
    print(f"{'program':<32} {'native s':>9} {'ut sud':>9} {'ut seccomp':>11} {'strace -c':>10} {'perf trace':>11}")
    for name, argv in workloads:
        native = wall(argv)
        ut_sud = wall(argv, prefix=usertrap("sud"))
        ut_sec = wall(argv, prefix=usertrap("seccomp"))
        st = wall(argv, prefix=(strace, "-f", "-c", "-o", os.devnull)) if strace else None
        pt = wall(argv, prefix=(perf, "trace", "-s", "-o", os.devnull, "--")) if perf_ok else None
        ratio = lambda t: f"{t / native:.2f}x" if t and native else "fails"
        print(f"{name:<32} {native:>9.3f} {ratio(ut_sud):>9} {ratio(ut_sec):>11} {ratio(st):>10} {ratio(pt):>11}")
        goal = f" (target: at most {goals[name]} x)" if name in goals else ""
        targets.append(f"usertrap stat, {name}: {ratio(ut_sud)} (sud), {ratio(ut_sec)} (seccomp) native{goal}")
    native = loop_ns("getppid", 1_000_000)
    env = clean_env(LD_PRELOAD=LIB, USERTRAP_OUTPUT=os.devnull)
    measured = loop_ns("getppid", 1_000_000, env)
    print(f"{'getppid loop (ns/call)':<32} {native:>9.1f} {measured / native:>8.2f}x")
    targets.append(f"measured fast path, getppid: {measured / native:.2f} x native, +{measured - native:.0f} ns (target: at most 1.5 x)")
    # What the report says of the same loop, against the loop's own clock
    # (the comparison tests/latency.rs used to assert; it needs a quiet machine).
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "r.json")
        env = clean_env(LD_PRELOAD=LIB, USERTRAP_OUTPUT=path, USERTRAP_FORMAT="json")
        own = loop_ns("getppid", 1_000_000, env)
        with open(path) as f:
            report = json.load(f)
    calls = [s for s in report["syscalls"] if s["name"] == "getppid"]
    if calls and calls[0]["calls"]:
        avg = calls[0]["total_ns"] / calls[0]["calls"]
        print(f"{'getppid: reported avg / loop':<32} {avg:>9.1f} {own:>9.1f}  (ns/call; the report times the syscall alone)")
        targets.append(f"reported getppid average {avg:.0f} ns within the loop's own {own:.0f} ns per call (target: at most, and at least half)")


def trace_overhead(python, targets):
    """Issue 15: `usertrap trace` with every call recorded, and with --slow 1ms,
    against native, `usertrap stat`, `strace -f -tt -T` and `perf trace`: the
    whole command's wall-clock time (for usertrap trace, decoding and writing
    the trace after the program ended included), and the loop's own time
    (what recording costs the traced program while it runs). Each also as CPU
    time (the whole command's: every process of it, the collector included;
    the loop's: the traced process's own), which a busy shared machine moves
    far less than wall time; and the CPU time of the command outside the
    traced process (its collector: decoding, formatting and writing the
    trace), the whole command's minus the traced process's own."""
    code = ("import os, time, sys\nt = time.perf_counter()\nc = time.process_time()\n"
            "for _ in range(200000): os.stat('/')\n"
            "sys.stderr.write('loop %f cpu %f total %f\\n' % (time.perf_counter() - t, time.process_time() - c,"
            " time.process_time()))\n")
    argv = [python, "-c", code]
    strace = shutil.which("strace")
    perf = shutil.which("perf")
    perf_ok = perf and subprocess.run([perf, "trace", "-o", os.devnull, "--", "/bin/true"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0

    def best(prefix, runs=3):
        """The best of `runs` runs of (wall s, command CPU s, loop s, loop
        CPU s, collector CPU s), each taken on its own; None if a run failed."""
        got = []
        for _ in range(runs):
            # Each run writes a new trace: truncating the last one (tens of
            # MB in the page cache) is paid by the command that opens it,
            # and would be counted in the next row's time.
            if os.path.exists(out):
                os.unlink(out)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            r = subprocess.run([*prefix, *argv], env=clean_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
            wall_s = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            m = re.search(r"loop ([0-9.]+) cpu ([0-9.]+) total ([0-9.]+)", r.stderr)
            if r.returncode != 0 or not m:
                return None
            got.append((wall_s, cpu, float(m.group(1)), float(m.group(2)), max(cpu - float(m.group(3)), 0.0)))
        return tuple(min(run[i] for run in got) for i in range(5))

    print("\nusertrap trace, python3: 200,000 os.stat, best of 3 runs (CPU: user + system):")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "trace.out")
        rows = [
            ("native", ()),
            ("usertrap stat", (CLI, "stat", "-o", os.devnull, "--")),
            ("usertrap trace (all, text)", (CLI, "trace", "--format", "text", "-o", out, "--")),
            ("usertrap trace (all, json)", (CLI, "trace", "--format", "json", "-o", out, "--")),
            ("usertrap trace (all, perfetto)", (CLI, "trace", "--format", "perfetto", "-o", out, "--")),
            ("usertrap trace --slow 1ms", (CLI, "trace", "--slow", "1ms", "-o", out, "--")),
            ("strace -f -tt -T", (strace, "-f", "-tt", "-T", "-o", os.devnull) if strace else None),
            ("perf trace", (perf, "trace", "-o", os.devnull, "--") if perf_ok else None),
        ]
        got = {mode: best(prefix) if prefix is not None else None for mode, prefix in rows}
    native = got["native"]
    print(f"{'mode':<32} {'wall s':>8} {'x nat':>6} {'CPU s':>7} {'x nat':>6} "
          f"{'loop s':>7} {'x nat':>6} {'loop CPU':>8} {'x nat':>6} {'other CPU':>9}")
    for mode, m in got.items():
        if m is None or native is None:
            print(f"{mode:<32} {'fails or missing here':>36}")
            continue
        cells = " ".join(f"{v:>7.3f} {v / n:>5.2f}x" for v, n in zip(m[:4], native))
        print(f"{mode:<32} {cells} {m[4]:>9.3f}")
    s, slow = got["usertrap stat"], got["usertrap trace --slow 1ms"]
    for fmt in ("text", "json", "perfetto"):
        t = got[f"usertrap trace (all, {fmt})"]
        if t and native:
            targets.append(f"usertrap trace --format {fmt}, every call recorded, python os.stat: whole command "
                           f"{t[0] / native[0]:.2f} x native ({t[1] / native[1]:.2f} x in CPU, the collector "
                           f"{t[4]:.3f} s), loop {t[2] / native[2]:.2f} x ({t[3] / native[3]:.2f} x in CPU) "
                           f"(target: at most 1.3 x)")
    if s and slow:
        targets.append(f"usertrap trace --slow 1ms: whole command {slow[0] / s[0]:.3f} x usertrap stat "
                       f"({slow[1] / s[1]:.3f} x in CPU), loop {slow[2] / s[2]:.3f} x "
                       f"({slow[3] / s[3]:.3f} x in CPU) (target: within 5%)")


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return (xs[n // 2] + xs[(n - 1) // 2]) / 2 if n else float("nan")


def spawn_rounds(rounds, n, child_env=(), prefix=(), env=None):
    """Per round: (wall us, children's CPU us, minor faults) per child."""
    out = subprocess.run([*prefix, SPAWN, str(rounds), str(n), *child_env, "/bin/true"], env=env or clean_env(),
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"spawn_loop failed: {out.stderr.strip()}")
    rows = [tuple(map(float, line.split())) for line in out.stdout.strip().splitlines()]
    return rows, out.stderr


PHASE = re.compile(r"usertrap: phases \(us\) pid \d+:(.*)")


def phase_medians(stderr):
    """Median us per phase over every process's USERTRAP_PHASES line."""
    per = {}
    order = []
    lines = 0
    for m in PHASE.finditer(stderr):
        lines += 1
        for item in m.group(1).split():
            name, value = item.split("=")
            if name not in per:
                per[name] = []
                order.append(name)
            per[name].append(float(value))
    return lines, [(name, median(per[name])) for name in order]


def syscall_counts(argv, traced_env=()):
    """{syscall name: calls} over every process of argv, from strace -f; the
    traced program gets `traced_env` (NAME=VALUE), strace itself does not."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace")
        env_args = [a for kv in traced_env for a in ("-E", kv)]
        subprocess.run(["strace", "-f", "-qq", "-o", path, *env_args, *argv], env=clean_env(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        counts = {}
        with open(path) as f:
            for line in f:
                m = re.match(r"(?:\d+\s+)?(?:<\.\.\. )?(\w+)\(", line)
                if m and not line.startswith("---"):
                    counts[m.group(1)] = counts.get(m.group(1), 0) + 1
        return counts


def per_process(targets):
    """Issue 13: what a process costs, start to exit (report written)."""
    n = int(os.environ.get("BENCH_SPAWNS", "1000"))
    rounds = int(os.environ.get("BENCH_SPAWN_ROUNDS", "3"))
    print(f"\nper process: posix_spawn of /bin/true, {n} per round, {rounds} rounds; per child: wall us and the "
          "children's CPU us (user+sys), median (best) of rounds, minor faults; +: over native, medians")
    with tempfile.TemporaryDirectory() as tmp:
        to_file = os.path.join(tmp, "reports.txt")
        preload = [f"LD_PRELOAD={LIB}"]
        stat = (CLI, "stat", "-o", os.devnull, "--")
        rows = [
            ("native", (), (), None),
            ("LD_PRELOAD, report to /dev/null", (*preload, f"USERTRAP_OUTPUT={os.devnull}"), (), 50),
            ("LD_PRELOAD, report to a file", (*preload, f"USERTRAP_OUTPUT={to_file}"), (), 50),
            ("LD_PRELOAD, /dev/null, TSC_HZ given", (*preload, f"USERTRAP_OUTPUT={os.devnull}",
                                                     f"USERTRAP_TSC_HZ={tsc_hz_of_machine()}"), (), 50),
            ("usertrap stat (launcher), sud", (), (*stat[:2], "--backend", "sud", *stat[2:]), 150),
            ("usertrap stat (launcher), seccomp", (), (*stat[:2], "--backend", "seccomp", *stat[2:]), 150),
        ]
        header = f"{'mode':<38} {'wall us':>17} {'CPU us':>17} {'faults':>7} {'+wall':>7} {'+CPU':>7}  target"
        print(header)
        print("-" * len(header))
        # The machine's load drifts: native is measured before and after the
        # other rows, and the added cost is taken against their mean.
        first, _ = spawn_rounds(rounds, n)
        measured = []
        for name, child_env, prefix, target in rows[1:]:
            if prefix and not os.path.exists(CLI):
                continue
            measured.append((name, target, spawn_rounds(rounds, n, child_env, prefix)[0]))
        last, _ = spawn_rounds(rounds, n)
        base = tuple((median([r[k] for r in first]) + median([r[k] for r in last])) / 2 for k in (0, 1))
        print(f"(native: {median([r[1] for r in first]):.0f} us CPU before the other rows, "
              f"{median([r[1] for r in last]):.0f} after; + is against their mean)")
        added = {}
        for name, target, got in [(rows[0][0], None, first + last)] + measured:
            wall_us = [r[0] for r in got]
            cpu_us = [r[1] for r in got]
            faults = median([r[2] for r in got])
            mw, mc = median(wall_us), median(cpu_us)
            plus = f"{mw - base[0]:>7.0f} {mc - base[1]:>7.0f}" if target else f"{'':>7} {'':>7}"
            goal = f"  <= {target} us" if target else ""
            print(f"{name:<38} {mw:>8.0f} ({min(wall_us):>6.0f}) {mc:>8.0f} ({min(cpu_us):>6.0f}) {faults:>7.1f} {plus}{goal}")
            if target:
                added[name] = mc - base[1]
                targets.append(f"per process, {name}: +{mc - base[1]:.0f} us CPU, +{mw - base[0]:.0f} us wall "
                               f"(target: at most {target} us)")

        # Where the added time goes: each process prints its phases at exit.
        m = max(50, n // 5)
        print(f"\nwhere a process's time goes (USERTRAP_PHASES=1, median us over {m} processes; 'program' is the "
              "program's own run between start-up and exit)")
        # Each case with the row above whose added CPU time it explains.
        cases = [
            ("LD_PRELOAD, /dev/null", (*preload, "USERTRAP_PHASES=1", f"USERTRAP_OUTPUT={os.devnull}"), (),
             "LD_PRELOAD, report to /dev/null"),
            ("LD_PRELOAD, to a file", (*preload, "USERTRAP_PHASES=1", f"USERTRAP_OUTPUT={to_file}"), (),
             "LD_PRELOAD, report to a file"),
        ]
        if os.path.exists(CLI):
            # (Its phases include the loader's own work, native too: no
            # comparison with the added CPU time.)
            cases.append(("usertrap stat (launcher), sud", (), (*stat[:2], "--backend", "sud", *stat[2:]), None))
        for name, child_env, prefix, row in cases:
            env = clean_env(USERTRAP_PHASES="1") if prefix else None
            _, err = spawn_rounds(1, m, child_env, prefix, env=env)
            lines, phases = phase_medians(err)
            total = sum(v for k, v in phases if k != "program")
            # What no phase holds: the loader mapping and relocating the
            # library (or the launcher's exec), page faults of the program's
            # own run, the kernel's teardown of the extra mappings at exit.
            rest = f"; CPU over native {added[row]:+.0f} us, outside the phases {added[row] - total:+.0f}" \
                if row in added else ""
            print(f"  {name} ({lines} processes): library total {total:.0f} us{rest}")
            print("    " + "  ".join(f"{k} {v:.1f}" for k, v in phases))

    if shutil.which("strace"):
        native = syscall_counts(["/bin/true"])
        # With the TSC frequency given: under strace every syscall is slow,
        # and calibrating would take many more clock reads than it does.
        ours = syscall_counts(["/bin/true"], (f"LD_PRELOAD={LIB}", f"USERTRAP_OUTPUT={os.devnull}",
                                              f"USERTRAP_TSC_HZ={tsc_hz_of_machine()}"))
        extra = {k: ours.get(k, 0) - native.get(k, 0) for k in set(ours) | set(native)}
        top = sorted(extra.items(), key=lambda kv: -kv[1])[:8]
        print(f"\nsyscalls of a preloaded /bin/true (strace -f, USERTRAP_TSC_HZ given): "
              f"{sum(ours.values())} against {sum(native.values())} natively; most added: "
              + ", ".join(f"{k} {v:+d}" for k, v in top if v))


def tsc_hz_of_machine():
    """What `usertrap stat` hands down: the TSC frequency, measured once."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "r.json")
        env = clean_env(LD_PRELOAD=LIB, USERTRAP_OUTPUT=path, USERTRAP_FORMAT="json")
        subprocess.run(["sleep", "0.05"], env=env, check=True)
        with open(path) as f:
            return json.load(f)["tsc_hz"]


if __name__ == "__main__":
    sys.exit(main())
