#!/usr/bin/env python3
"""Growth: with 10, 100, 1000 and 10000 hosts in the state table, the per-check CPU cost (10
trivial checks at 0.1 s), the cost of committing one transition, and how long
`hadaemon status --json` takes.

Hosts are written into var/state.db before the daemon starts. The commit is the supervisor's own
Supervisor.commit (plan the actions, write the host and queue the job in one fsync'd transaction)
timed in this process on the same table after the daemon has stopped, with one action command,
so the plan carries every host of the snapshot (%UP% and $HA_UP). The baseline row of each size
is the table alone: one host row written in an fsync'd transaction, no hadaemon code.

    python bench/growth.py [--sizes 10,100,1000,10000] [--seconds 10]
"""

import argparse
import sqlite3
import statistics
import subprocess
import sys
import time

from harness import NO_RECYCLING, Daemon, Home, cpu, print_table

from hadaemon import config as configmod  # noqa: E402 (harness puts the repository on the path)
from hadaemon import control
from hadaemon.commit import Committer
from hadaemon.home import Home as HaHome
from hadaemon.journal import Journal
from hadaemon.store import open_store
from hadaemon.supervisor import Supervisor
from hadaemon.table import Table

CHECKS = 10
COMMITS = 30


def preload(home, n):
    store, _ = open_store(home.root / "var/state.db")
    table, now = Table(store), time.time()
    with store.transaction():
        for i in range(n):
            table.set(f"g{i:05d}", {"status": "up", "since": now, "observed": "up",
                                    "last_seen": now, "check": "preload", "details": {}})
    store.close()


def per_check_cpu(home, seconds):
    with Daemon(home) as d:
        time.sleep(3.0)
        pids = d.pids()
        sup0, all0, n0 = cpu(pids[:1])[0], cpu(pids)[0], home.counted()
        time.sleep(seconds)
        sup1, all1, n1 = cpu(pids[:1])[0], cpu(pids)[0], home.counted()
        status_s = [timed_cli(home) for _ in range(3)]
        control_s = [timed_control(home) for _ in range(3)]
        # The CLI's fixed cost: the same interpreter start and imports, answering --help.
        start_s = [timed_cli(home, ("--help",)) for _ in range(3)]
    n = n1 - n0
    return (1e6 * (sup1 - sup0) / n, 1e6 * (all1 - all0) / n, statistics.median(status_s),
            statistics.median(control_s), statistics.median(start_s))


def timed_cli(home, argv=("status", "--json")):
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "hadaemon", "--home", str(home.root), *argv],
                   check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def timed_control(home):
    t0 = time.monotonic()
    control.request(home.root / "var/control.sock", {"cmd": "status"}, 60)
    return time.monotonic() - t0


def commit_ms(home):
    """Median wall time of Supervisor.commit on the table as the daemon left it."""
    ha = HaHome(home.root)
    sup = Supervisor(ha, configmod.load(ha), foreground=True)
    store, _ = open_store(ha.state_db)
    sup.store, sup.table, sup.journal = store, Table(store), Journal(store)
    entries, _ = sup.table.items()
    sup.entries = dict(entries)
    sup.committer = Committer({h: e["status"] for h, e in entries})
    times = []
    try:
        for k in range(COMMITS):
            t = sup.committer.force("g00000", "down" if k % 2 == 0 else "up")
            t0 = time.monotonic()
            sup.commit(t, time.monotonic())
            times.append(time.monotonic() - t0)
    finally:
        store.close()
    return 1000 * statistics.median(times)


def bare_commit_ms(home):
    """The floor: one row replaced in an fsync'd WAL transaction on the same file."""
    conn = sqlite3.connect(str(home.root / "var/state.db"), isolation_level=None)
    conn.execute("PRAGMA synchronous=FULL")
    times = []
    for k in range(COMMITS):
        t0 = time.monotonic()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT OR REPLACE INTO hosts (key, value) VALUES (?, ?)",
                     (b"bare", b"x" * 200))
        conn.execute("COMMIT")
        times.append(time.monotonic() - t0)
    conn.close()
    return 1000 * statistics.median(times)


def measure(n, seconds):
    home = Home("growth")
    try:
        home.configure([(f"c{i}", "trivial", f"h{i} {home.count}") for i in range(CHECKS)],
                       interval="0.1", workers=2, log_level="warning",
                       max_jobs=NO_RECYCLING)
        preload(home, n)
        sup_us, all_us, status_s, control_s, start_s = per_check_cpu(home, seconds)
        # The action only now: the runner's work is not per-check cost.
        home.script("record", "#!/bin/sh\n", kind="actions")
        (home.root / "etc/actions.conf").write_text("[*_to_*]\nrecord %UP%\n")
        return [n, sup_us, all_us, bare_commit_ms(home), commit_ms(home), 1000 * control_s,
                1000 * start_s, 1000 * status_s]
    finally:
        home.remove()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10,100,1000,10000")
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args()
    rows = [measure(int(n), a.seconds) for n in a.sizes.split(",")]
    print_table("Growth with the number of hosts in the table",
                ["hosts", "supervisor CPU us/check", "daemon CPU us/check",
                 "bare fsync'd row ms", "commit ms", "status round trip ms",
                 "CLI --help ms", "status --json CLI ms"], rows,
                "python bench/growth.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
