#!/usr/bin/env python3
"""Growth: with 10 to 100 000 hosts in the state table, the per-check CPU cost (10 trivial
checks at 0.1 s), the cost of committing one transition, what a `status` costs, and how long the
supervisor's loop is held while statuses are served.

Hosts are written into var/state.db before the daemon starts. The commit is the supervisor's own
(Recorder.commit: plan the actions, write the host and queue the job in one fsync'd transaction)
timed in this process on the same table after the daemon has stopped, with one action command
`record %HOST% %TO%`: its arguments do not grow with the table, the job's environment does (one
HA_<STATUS> variable lists every host in that status). The baseline of each size is the table
alone: one host row written in an fsync'd transaction, no hadaemon code.

Loop hold: the daemon counts the CPU time each turn of its loop works (a histogram, as in
/metrics: hadaemon_loop_turn_seconds); while a turn works nothing else is done (CPU time: on a
busy 2-core machine any turn may also wait 4 ms for a core, which is the machine's, not ours).
Measured for a few seconds at rest, then while another process asks for the status back to back
(reading each answer whole), then for the history of the journal's 1000 finished jobs (written
with the hosts): the longest turn (the upper bound of its histogram bucket), the turns over 5 ms,
and the checks' own lateness against their schedule (share of runs started more than 5 ms late).

    python bench/growth.py [--sizes 10,100,1000,10000,100000] [--seconds 10]
"""

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import time

from harness import NO_RECYCLING, Daemon, Home, cpu, print_table

from hadaemon import config as configmod  # noqa: E402 (harness puts the repository on the path)
from hadaemon import control
from hadaemon.commit import Committer, Transition
from hadaemon.home import Home as HaHome
from hadaemon.journal import Journal
from hadaemon.ratelog import RateLog
from hadaemon.recorder import Hosts, Recorder
from hadaemon.store import open_store
from hadaemon.table import Table

CHECKS = 10
COMMITS = 30

# What measure() returns, in the printed table's order: (key, column header).
COLUMNS = [("hosts", "hosts"), ("supervisor_us", "supervisor CPU us/check"),
           ("daemon_us", "daemon CPU us/check"), ("bare_commit_ms", "bare fsync'd row ms"),
           ("commit_ms", "commit ms"), ("status_rtt_ms", "status round trip ms"),
           ("cli_ms", "CLI --help ms"), ("status_cli_ms", "status --json CLI ms"),
           ("turn_max_rest", "longest turn ms at rest"),
           ("late_rest", "checks >5 ms late at rest"),
           ("turn_max_status", "longest turn ms during status"),
           ("turns_over_5ms_status", "turns >5 ms during status"),
           ("late_status", "checks >5 ms late during status"),
           ("turn_max_history", "longest turn ms during history"),
           ("turns_over_5ms_history", "turns >5 ms during history")]
JOBS = 1000  # finished jobs in the journal: keep_jobs' default, what `history` can show


def preload(home, n):
    store, _ = open_store(home.root / "var/state.db")
    table, now = Table(store), time.time()
    with store.transaction():
        for i in range(n):
            table.set(f"g{i:05d}", {"status": "up", "since": now, "observed": "up",
                                    "last_seen": now, "check": "preload", "details": {}})
        journal, step = Journal(store), {"section": "up_to_down", "text": "record %HOST%",
                                         "where": "actions.conf:2", "keep_going": False,
                                         "timeout": 60, "program": "/bin/true", "error": None}
        for k in range(JOBS):
            host = f"g{k % n:05d}"
            job = journal.enqueue(Transition(host, "up", "down", {host: "down"}),
                                  [dict(step, argv=["record", host])] * 2, {}, now)
            journal.finish(job, "done")
            store.conn.executemany(
                "INSERT INTO steps (job, idx, started, finished, rc, duration, output)"
                " VALUES (?, ?, ?, ?, 0, 0.01, 'ok')", [(job, i, now, now) for i in range(2)])
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
        hold = loop_hold(home, seconds)
    n = n1 - n0
    return (1e6 * (sup1 - sup0) / n, 1e6 * (all1 - all0) / n, statistics.median(status_s),
            statistics.median(control_s), statistics.median(start_s), hold)


def loop_hold(home, seconds):
    """(longest turn ms, share of checks > 5 ms late) at rest, then (longest turn ms, turns
    over 5 ms, share of checks > 5 ms late) while statuses are asked back to back, then
    (longest turn ms, turns over 5 ms) while the history of JOBS jobs is."""
    def phase(request):
        before = counters(home)
        # Another process, which only reads: the daemon's work is what is measured.
        asker = subprocess.Popen([sys.executable, "-c", ASKER, str(home.root / "var/control.sock"),
                                  json.dumps(request)],
                                 stdout=subprocess.PIPE, text=True) if request else None
        time.sleep(seconds)
        served = 0
        if asker:
            asker.terminate()
            served = int(asker.communicate()[0] or 0)
        after = counters(home)
        late = (after[0] - before[0]) / max(1, after[1] - before[1])
        turns = [(le, n1 - n0) for (le, n1), (_, n0) in zip(after[2], before[2])]
        longest = next((1000 * le for le, n in reversed(turns) if n), 0.0)
        over = sum(n for le, n in turns if le > 0.005)
        return longest, over, late, served
    rest, busy = phase(None), phase({"cmd": "status"})
    history = phase({"cmd": "history", "limit": JOBS, "host": None})
    for name, figures in (("status", busy), ("history", history)):
        if figures[3] < 2:
            print(f"(only {figures[3]} {name} answers)", file=sys.stderr)
    return rest[0], rest[2], busy[0], busy[1], busy[2], history[0], history[1]


# Asks the request in argv[2] back to back, reading each answer whole; prints how many on
# SIGTERM.
ASKER = """
import signal, socket, sys
served = 0
def done(*_):
    print(served)
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
while True:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    s.sendall(sys.argv[2].encode() + b'\\n')
    while s.recv(1 << 20):
        pass
    s.close()
    served += 1
"""


def counters(home):
    """(runs started more than 5 ms late, runs, loop turns per bucket [(le, turns in it)])."""
    snap = control.request(home.root / "var/control.sock", {"cmd": "snapshot"}, 120)
    late = runs = 0
    for stats in snap["checks"].values():
        h = stats["lateness"]
        within = dict((b, n) for b, n in h["buckets"])[0.005]
        late, runs = late + h["count"] - within, runs + h["count"]
    cumulative = snap["turns"]["buckets"] + [[float("inf"), snap["turns"]["count"]]]
    per_bucket = [(le, n - (cumulative[i - 1][1] if i else 0))
                  for i, (le, n) in enumerate(cumulative)]
    return late, runs, per_bucket


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
    """Median wall time of the supervisor's commit on the table as the daemon left it."""
    ha = HaHome(home.root)
    config = configmod.load(ha)
    store, _ = open_store(ha.state_db)
    table = Table(store)
    entries, _ = table.items()
    hosts = Hosts(ha.state_db, store, table, dict(entries), RateLog(None))
    committer = Committer({h: e["status"] for h, e in entries})
    recorder = Recorder(lambda: config, hosts, Journal(store), committer, lambda: None)
    times = []
    try:
        for k in range(COMMITS):
            t = committer.force("g00000", "down" if k % 2 == 0 else "up")
            t0 = time.monotonic()
            recorder.commit(t, time.monotonic())
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
        sup_us, all_us, status_s, control_s, start_s, hold = per_check_cpu(home, seconds)
        # The action only now: the runner's work is not per-check cost.
        home.script("record", "#!/bin/sh\n", kind="actions")
        (home.root / "etc/actions.conf").write_text("[*_to_*]\nrecord %HOST% %TO%\n")
        figures = [n, sup_us, all_us, bare_commit_ms(home), commit_ms(home), 1000 * control_s,
                   1000 * start_s, 1000 * status_s, *hold]
        return dict(zip((key for key, _ in COLUMNS), figures))
    finally:
        home.remove()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10,100,1000,10000,100000")
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args()
    rows = [list(measure(int(n), a.seconds).values()) for n in a.sizes.split(",")]
    print_table("Growth with the number of hosts in the table",
                [header for _, header in COLUMNS], rows,
                "python bench/growth.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
