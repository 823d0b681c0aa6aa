#!/usr/bin/env python3
"""Instructions per check: what the supervisor executes per result, and a worker per check,
counted by valgrind (callgrind), so commits compare on a loaded machine where time does not.

The daemon runs under `valgrind --tool=callgrind --trace-children=no` on 8 trivial checks
(--checks) at 10ms with 2 workers (never recycled) until SHORT results, then again until LONG;
the difference of the two runs' counts over the difference of their results is the cost per
result, without start-up and stop. Workers are forked, so they stay under callgrind, each in
its own output file (workers = every file but the supervisor's); the action runner and the
checks are exec'd and run natively, uncounted. With --commit OLD the same runs are made on a
worktree of OLD (bench/versus.py's), the sides taking turns.

    python bench/instructions.py [--commit OLD] [--short 300] [--long 900] [--rounds 1]
                                 [--checks 8]
"""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

from harness import NO_RECYCLING, ROOT, Daemon, Home, print_table
from versus import checkout, remove

WORKERS = 2


def run(tree, results, checks):
    """(results, supervisor instructions, workers' instructions) of one run on tree."""
    home = Home("instructions")
    out = tempfile.mkdtemp(prefix="hadaemon-callgrind-")
    try:
        home.configure([(f"c{i:03d}", "trivial", f"h{i:03d} {home.count}")
                        for i in range(checks)],
                       interval="10ms", workers=WORKERS, max_jobs=NO_RECYCLING,
                       log_level="warning", grace=60)  # a worker under callgrind dumps slowly
        wrapper = ["valgrind", "--tool=callgrind", "--trace-children=no",
                   f"--callgrind-out-file={out}/callgrind.%p"]
        d = Daemon(home, tree=tree, wrapper=wrapper, start_within=300)
        try:
            while home.counted() < results:
                if d.proc.poll() is not None:
                    raise RuntimeError(f"daemon ended; see {d.log_path}")
                time.sleep(0.2)
        finally:
            d.stop(within=300)
        # Checks cut short by the stop were counted at their start but never reported: at
        # most one per worker, against hundreds of results.
        done = home.counted()
        counts = {int(path.rsplit(".", 1)[1]): total(path)
                  for path in glob.glob(f"{out}/callgrind.*")}
        supervisor = counts.pop(d.proc.pid)
        if len(counts) != WORKERS:  # one replaced, or killed before it could write its counts
            raise RuntimeError(f"{len(counts)} worker counts for {WORKERS} workers; see "
                               f"{d.log_path}")
        return done, supervisor, sum(counts.values())
    finally:
        home.remove()
        shutil.rmtree(out, ignore_errors=True)


def total(path):
    """The instruction count callgrind wrote at the process's exit."""
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"{path}: no totals (the process did not exit cleanly?)")


def per_result(tree, short, long, checks):
    (n1, s1, w1), (n2, s2, w2) = run(tree, short, checks), run(tree, long, checks)
    return (s2 - s1) / (n2 - n1), (w2 - w1) / (n2 - n1)


def label(tree, commit):
    rev = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", commit],
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "hadaemon"],
                           capture_output=True, text=True).stdout.strip()
    return rev + ("+dirty" if dirty else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commit", help="also measure this commit (a worktree of it)")
    ap.add_argument("--short", type=int, default=300, help="results of the short run")
    ap.add_argument("--long", type=int, default=900, help="results of the long run")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--checks", type=int, default=8, help="checks (and hosts, one each)")
    a = ap.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed (apt-get install valgrind)")
    sides = [(ROOT, label(ROOT, "HEAD"))]
    old = None
    if a.commit:
        old = checkout(a.commit)
        sides.insert(0, (old, label(ROOT, a.commit)))
    try:
        rows = []
        for n in range(a.rounds):
            for tree, name in (sides if n % 2 == 0 else sides[::-1]):
                sup, work = per_result(tree, a.short, a.long, a.checks)
                rows.append([name, n + 1, round(sup), round(work)])
        if old:
            base, new = ([r for r in rows if r[0] == name] for _, name in sides)
            rows.append(["new / old", "", *(sum(r[i] for r in new) / sum(r[i] for r in base)
                                           for i in (2, 3))])
        print_table(f"Instructions per check ({a.checks} trivial checks @ 10ms, {WORKERS} "
                    f"workers; {a.long} - {a.short} results)",
                    ["commit", "round", "supervisor / result", "workers / result"], rows,
                    "python bench/instructions.py " + " ".join(sys.argv[1:]))
    finally:
        if old:
            remove(old)


if __name__ == "__main__":
    main()
