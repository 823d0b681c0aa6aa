#!/usr/bin/env python3
"""Where the time goes at full check throughput: py-spy samples the supervisor and its workers
under the load of bench/throughput.py and writes a flame graph and a text summary (the functions
that are on the stack in most samples, by process role).

    python bench/profile.py [--workers 2] [--seconds 10] [--out docs/profiles/throughput]
"""

import argparse
import collections
import subprocess
import sys
import time

from harness import Daemon, Home
from throughput import CHECKS, WARMUP


def record(pid, seconds, out, fmt):
    subprocess.run(["py-spy", "record", "--subprocesses", "--pid", str(pid),
                    "--duration", str(int(seconds)), "--rate", "250", "--format", fmt,
                    "--output", out, "--nonblocking"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summary(raw_path, roles, top=25):
    """From py-spy's collapsed stacks: per role, inclusive share of each function."""
    lines = []
    per_role = collections.defaultdict(collections.Counter)
    totals = collections.Counter()
    with open(raw_path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            frames = stack.split(";")
            role = next((r for key, r in roles.items() if key in frames[0]), "other")
            totals[role] += int(count)
            for fr in set(frames[1:]):
                per_role[role][fr] += int(count)
    for role, counter in sorted(per_role.items()):
        lines.append(f"== {role}: {totals[role]} samples (inclusive share of each function)")
        for fr, n in counter.most_common(top):
            lines.append(f"{100 * n / totals[role]:6.1f}%  {fr}")
        lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", default="docs/profiles/throughput")
    a = ap.parse_args()
    home = Home("profile")
    try:
        home.configure([(f"c{i:03d}", "trivial", f"h{i:03d} {home.count}") for i in range(CHECKS)],
                       interval="10ms", workers=a.workers, log_level="warning")
        with Daemon(home) as d:
            time.sleep(WARMUP)
            pids = d.pids()
            record(d.proc.pid, a.seconds, a.out + ".svg", "flamegraph")
            record(d.proc.pid, a.seconds, a.out + ".raw", "raw")
        roles = {f"({pids[0]})": "supervisor"}
        roles.update({f"({p})": "worker or runner" for p in pids[1:]})
        text = summary(a.out + ".raw", roles)
        with open(a.out + ".txt", "w") as f:
            f.write(f"$ python bench/profile.py {' '.join(sys.argv[1:])}\n\n{text}")
        print(text)
    finally:
        home.remove()


if __name__ == "__main__":
    main()
