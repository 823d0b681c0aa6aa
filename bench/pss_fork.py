#!/usr/bin/env python3
"""What starting the action runner by fork instead of fork+exec would save in memory: a parent
that has imported what a supervisor imports starts a runner-like child each way (the child
imports hadaemon.runner and opens an SQLite connection), and the PSS of parent + child is
compared, one way after the other in the same run.

The runner is exec'd (python -S) because a runner forked from a supervisor whose SQLite
connection was open inherited SQLite's per-process lock bookkeeping and corrupted the journal
(README, Design notes). A fork would be safe only from a parent that never opened one: this
measures whether such a clean parent is worth having.

    python bench/pss_fork.py [--rounds 3]
"""

import argparse
import gc
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import hadaemon.cli  # noqa: E402,F401  (what a supervisor has imported)
import hadaemon.supervisor  # noqa: E402,F401
from harness import print_table, pss_kib  # noqa: E402

CHILD = ("import hadaemon.runner, sqlite3, time; "
         "sqlite3.connect(':memory:').execute('select 1'); time.sleep(60)")
SETTLE = 1.5  # seconds for the child to import and settle


def forked():
    pid = os.fork()
    if pid == 0:
        try:
            exec(CHILD)
        finally:
            os._exit(0)
    return pid


def execed():
    return subprocess.Popen([sys.executable, "-S", "-c", CHILD],
                            env=dict(os.environ, PYTHONPATH=str(ROOT))).pid


def measure(start):
    pid = start()
    try:
        time.sleep(SETTLE)
        return pss_kib([os.getpid()]) / 1024, pss_kib([pid]) / 1024
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    gc.freeze()  # as the supervisor does before it forks its workers
    rows = []
    for r in range(a.rounds):
        for name, start in ((("exec'd (python -S)", execed), ("forked", forked))
                            if r % 2 == 0 else (("forked", forked),
                                                ("exec'd (python -S)", execed))):
            parent, child = measure(start)
            rows.append([name, r + 1, parent, child, parent + child])
    print_table("PSS of a supervisor-like parent and a runner-like child, MiB",
                ["runner started", "round", "parent", "runner", "both"], rows,
                "python bench/pss_fork.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
