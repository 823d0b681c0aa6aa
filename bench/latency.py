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
# The parts of a reaction (phases()), by key, as the table names them.
PARTS = {"supervisor": "result read -> job queued (supervisor: result in, commit rule)",
         "handover": "job queued -> start being recorded (commit, runner woken, job read)",
         "start": "start being recorded -> command started (its fsync, spawn)"}


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
        offset = wall_minus_monotonic()
        rows = home.journal(
            "SELECT j.observed_mono, j.created, s.started, s.started_mono FROM jobs j JOIN steps s"
            " ON s.job = j.id AND s.idx = 0 WHERE j.source != 'unknown'"
            " AND j.observed_mono IS NOT NULL AND s.started_mono IS NOT NULL")
        return [phases(r, offset) for r in rows], bare
    finally:
        home.remove()


def wall_minus_monotonic():
    """time.time() - time.monotonic(), read between two monotonic reads a few us apart."""
    best = None
    for _ in range(20):
        m0 = time.monotonic()
        w = time.time()
        m1 = time.monotonic()
        if best is None or m1 - m0 < best[0]:
            best = (m1 - m0, w - (m0 + m1) / 2)
    return best[1]


def phases(row, offset):
    """(total, supervisor, hand-over, start) seconds of one reaction, from the journal: the
    worker read the result (observed_mono); the supervisor queued the job in its commit
    (jobs.created); the runner took the job and is about to record the command's start
    (steps.started); the command has started (started_mono: after its start record's fsync and
    the spawn). The middle marks are wall-clock times, offset to the monotonic clock; the
    parts add up to the total whatever the offset's error."""
    observed, created, started, started_mono = row
    return (started_mono - observed, created - offset - observed, started - created,
            started_mono - (started - offset))


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
    return {"bare": ms_summary(bare), "hadaemon": ms_summary([p[0] for p in ours]),
            **{part: ms_summary([p[i] for p in ours]) for i, part in enumerate(PARTS, 1)}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transitions", type=int, default=250)
    ap.add_argument("--background", type=float, default=100.0, help="background checks/s")
    a = ap.parse_args()
    r = measure(a.transitions, a.background)
    rows = [[name, x["n"], x["p50"], x["p99"], x["max"]]
            for name, x in (("bare: fsync'd commit + spawn", r["bare"]),
                            ("hadaemon: result read -> command started", r["hadaemon"]),
                            *((f"  of which {PARTS[part]}", r[part]) for part in PARTS))]
    print_table(f"Reaction latency (ms), background load {a.background:g} checks/s",
                ["", "n", "p50", "p99", "max"], rows,
                "python bench/latency.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
