#!/usr/bin/env python3
"""Reaction latency: from the moment a worker has read a result that commits a new status to the
moment the first command of the transition has started, over at least 200 transitions, while the
daemon also runs a steady background load of trivial checks.

Both ends come from the journal (jobs.observed_mono, steps.started_mono: CLOCK_MONOTONIC, shared by
all processes). The baseline, run at the same time under the same load, is the least a durable
reaction costs: one SQLite commit with synchronous=FULL, then posix_spawn of the same command.

    python bench/latency.py [--transitions 250] [--background 100]
"""

import argparse
import os
import sqlite3
import sys
import threading
import time

from harness import Daemon, Home, ms_summary, print_table

FLIP_INTERVAL = 0.1  # a transition every run of the flip check
BACKGROUND_CHECKS = 20


def bare_reactions(home, stop, gap):
    """fsync'd commit + spawn of /bin/true, every `gap` seconds until stop is set."""
    conn = sqlite3.connect(str(home.root / "bare.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (x REAL)")
    times = []
    while not stop.is_set():
        t0 = time.monotonic()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?)", (t0,))
        conn.execute("COMMIT")
        pid = os.posix_spawn("/bin/true", ["/bin/true"], {})
        times.append(time.monotonic() - t0)
        os.waitpid(pid, 0)
        time.sleep(gap)
    conn.close()
    return times


def run(transitions, background):
    home = Home("latency")
    try:
        interval = BACKGROUND_CHECKS / background
        checks = [(f"bg{i:02d}", "trivial", f"bg{i:02d} {home.count}")
                  for i in range(BACKGROUND_CHECKS)]
        checks.append(("flip", "flip", f"vip {home.root / 'flip.state'}",
                       {"interval": FLIP_INTERVAL}))
        home.configure(checks, actions="[*_to_*]\n/bin/true\n", interval=f"{interval:g}",
                       workers=2, log_level="warning")
        bare, stop = [], threading.Event()
        thread = threading.Thread(target=lambda: bare.extend(
            bare_reactions(home, stop, FLIP_INTERVAL)))
        with Daemon(home):
            time.sleep(3.0)  # the runner is a fresh interpreter: let it start
            (home.root / "flip.state").write_text("up\n")
            thread.start()
            deadline = time.monotonic() + transitions * FLIP_INTERVAL * 4 + 30
            while time.monotonic() < deadline and done(home) < transitions + 1:
                time.sleep(1.0)
            stop.set()
            thread.join()
        rows = home.journal(
            "SELECT s.started_mono - j.observed_mono FROM jobs j JOIN steps s"
            " ON s.job = j.id AND s.idx = 0 WHERE j.source != 'unknown'"
            " AND j.observed_mono IS NOT NULL AND s.started_mono IS NOT NULL")
        return [r[0] for r in rows], bare
    finally:
        home.remove()


def done(home):
    """Transitions measured so far: the start-up ones (unknown -> up) are not."""
    try:
        return home.journal("SELECT count(*) FROM steps s JOIN jobs j ON s.job = j.id"
                            " WHERE s.started_mono IS NOT NULL AND j.source != 'unknown'")[0][0]
    except sqlite3.Error:
        return 0


def measure(transitions, background):
    """{"bare": ..., "hadaemon": ...}, each n, p50, p99, max in ms."""
    ours, bare = run(transitions, background)
    return {"bare": ms_summary(bare), "hadaemon": ms_summary(ours)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transitions", type=int, default=250)
    ap.add_argument("--background", type=float, default=100.0, help="background checks/s")
    a = ap.parse_args()
    r = measure(a.transitions, a.background)
    rows = [[name, x["n"], x["p50"], x["p99"], x["max"]]
            for name, x in (("bare: fsync'd commit + spawn", r["bare"]),
                            ("hadaemon: result read -> command started", r["hadaemon"]))]
    print_table(f"Reaction latency (ms), background load {a.background:g} checks/s",
                ["", "n", "p50", "p99", "max"], rows,
                "python bench/latency.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
