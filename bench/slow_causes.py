#!/usr/bin/env python3
"""Where the slow calls of a run come from, by cause (issue 12).

Reads the aggregate that `usertrap stat --json -f -o FILE -- CMD` writes
(every process image's report, with its call sites) and sorts each slow
call into a cause: an emulated call (slow by design), a loader site that
never took the fast path, the first call of a site in the first process, in
a fork child or in an exec'd image (by when the site was first reached), a
libc site no form fits, or calls not kept by site. Images of one pid are
told apart by start time: the first image of a pid whose parent is in the
run is a fork child (or a vfork child's exec'd image), later ones exec'd
images.

    python3 bench/slow_causes.py report.json [more.json ...]
"""
import collections
import json
import sys

# Calls the library emulates and keeps on the slow path (src/trap/syscalls.rs).
EMULATED = {"clone", "clone3", "exit_group", "execve", "execveat", "exit", "rt_sigreturn", "vfork",
            "arch_prctl"}


def causes(path):
    with open(path) as f:
        agg = json.load(f)
    images = collections.defaultdict(list)
    for p in agg["processes"]:
        images[p["pid"]].append(p)
    pids = set(images)
    out = collections.Counter()
    calls = slow = 0
    for chain in images.values():
        chain.sort(key=lambda p: p["start_ns"])
        root = chain[0]["ppid"] not in pids
        for i, p in enumerate(chain):
            if root:
                kind = "first process" if i == 0 else "image exec'd by the first process"
            else:
                kind = "fork child" if i == 0 else "exec'd image"
            calls += p["totals"]["calls"]
            slow += p["totals"]["slow_calls"]
            by_site = 0
            for s in p.get("sites", []):
                n = s["slow_calls"]
                if not n:
                    continue
                by_site += n
                obj = s["object"].rsplit("/", 1)[-1]
                if s["name"] in EMULATED:
                    cause = f"emulated: {s['name']}"
                elif obj.startswith("ld-linux") and s["fast_calls"] == 0:
                    cause = f"loader site never fast: {s['name']} [{kind}]"
                elif s["fast_calls"] == 0 and n > 1:
                    cause = f"site never fast: {obj} {s.get('symbol', '?')} {s['name']} [{kind}]"
                else:
                    cause = f"first call of a site [{kind}]"
                out[cause] += n
            if p["totals"]["slow_calls"] > by_site:
                out[f"not kept by site [{kind}]"] += p["totals"]["slow_calls"] - by_site
    return calls, slow, out


def main():
    for path in sys.argv[1:]:
        calls, slow, out = causes(path)
        print(f"{path}: {calls} calls, {slow} slow ({100 * (calls - slow) / max(calls, 1):.1f}% fast)")
        for cause, n in out.most_common():
            print(f"  {n:7d}  {cause}")


if __name__ == "__main__":
    main()
