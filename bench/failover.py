"""Failover of the PostgreSQL example under a writing client: SIGKILL of the primary -> first
write acknowledged by the promoted replica, through the service address.

Each run builds the scenario from nothing (tests/pgnet.py: examples/postgresql/demo and the
example's configs, on fresh network namespaces), starts a client that writes numbered rows
through the service address one after the other on one session (reopened when it is lost), kills
the primary's postmaster and times, on CLOCK_MONOTONIC, the first write acknowledged on a session
opened after the kill. The journal's stamps split that time into its stages; at the end, the
acknowledged rows the promoted server does not have are counted as lost.

Usage (root; PostgreSQL and iproute2 installed):
    python3 bench/failover.py [--runs N] [--interval SECONDS] [--confirm N] [--sync]

The bound printed is what the settings imply: one detection (the primary's death seen `confirm`
times, the first up to one interval after the kill, plus one check's run), then the failover's
sequence (vip_del, pg_promote -F -- vip_add: the address moves once the promotion is confirmed),
then the client's reconnection.
"""

import argparse
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import pgnet  # noqa: E402
from conftest import wait_for  # noqa: E402

STAGES = ("primary seen down", "old address removed", "replica promoted", "address moved")


def one_run(interval, confirm, sync):
    cluster = pgnet.Cluster(sync=sync)
    scratch = tempfile.mkdtemp(prefix="hadaemon-failover-")
    try:
        cluster.up()
        home = cluster.home(Path(scratch) / "home", interval, confirm)
        cluster.start_daemon(home)
        wait_for(lambda: any(h["to"] == "master" and h["state"] == "done"
                             for h in home.history()), 60, "start-up vip_add done")
        check = check_seconds(cluster)
        measured = cluster.failover(home)
        job = pgnet.failover_job(home.history())
        stages = pgnet.breakdown(home.history(), measured["killed_wall"])
        actions = sum(c["duration"] for c in job["commands"])
        return dict(measured, stages=stages, actions=actions, check=check)
    finally:
        cluster.down()
        shutil.rmtree(scratch, ignore_errors=True)


def check_seconds(cluster):
    """How long one check_pg_role run takes here (two client programs, two connections)."""
    start = time.monotonic()
    subprocess.run(cluster.in_ns(str(pgnet.ROOT / "checks/check_pg_role"), "-h", cluster.db2),
                   capture_output=True, check=True)
    return time.monotonic() - start


def quantile(values, q):
    """The nearest-rank quantile: a value that was measured (p99 of 20 runs is the worst)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(len(ordered) * q) - 1))]


def row(name, values):
    return (f"| {name:37} | p50 {quantile(values, 0.5):5.2f}s | p99 {quantile(values, 0.99):5.2f}s "
            f"| max {max(values):5.2f}s | min {min(values):5.2f}s |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--interval", type=float, default=None,
                        help="check interval in seconds (default: the example's)")
    parser.add_argument("--confirm", type=int, default=None,
                        help="confirmations (default: the example's)")
    parser.add_argument("--sync", action="store_true",
                        help="synchronous replication (demo -S, pg_promote -F -S var/pg)")
    args = parser.parse_args()
    reason = pgnet.unavailable()
    if reason:
        sys.exit(f"failover bench: cannot run here: {reason}")
    example = (pgnet.EXAMPLE / "etc/checks.conf").read_text()
    interval = args.interval or float(pgnet.setting_in(example, "interval"))
    confirm = args.confirm or int(pgnet.setting_in(example, "confirm"))
    loads = [os.getloadavg()[0]]

    rows, failed = [], []
    for n in range(1, args.runs + 1):
        try:
            r = one_run(interval, confirm, args.sync)
        except AssertionError as e:  # counted and shown, never averaged in
            failed.append(n)
            print(f"run {n} FAILED: {str(e).strip().splitlines()[-1][:300]}", flush=True)
            continue
        loads.append(os.getloadavg()[0])
        rows.append(r)
        print(f"run {n}: {r['seconds']:.2f}s (" + ", ".join(f"{k} {v:.2f}"
                                                         for k, v in r["stages"].items())
              + f"; actions {r['actions']:.2f}s, one check {r['check']:.2f}s; gap "
              f"{r['gap']:.2f}s, {r['acked']} acknowledged, lost {len(r['lost'])}; load "
              f"{loads[-1]:.1f})", flush=True)
    if not rows:
        sys.exit("every run failed")

    actions = statistics.median(r["actions"] for r in rows)
    check = statistics.median(r["check"] for r in rows)

    def bound(check, actions):
        return confirm * interval + check + actions + CLIENT
    over = [n for n, r in enumerate(rows, 1) if r["seconds"] > bound(r["check"], r["actions"])]
    lost = [len(r["lost"]) for r in rows]
    print(f"\n$ python3 bench/failover.py {' '.join(shlex.quote(a) for a in sys.argv[1:])}")
    print(f"{'synchronous' if args.sync else 'asynchronous'} replication, "
          f"interval {interval:g}s, confirm {confirm}, {len(rows)} runs"
          + (f", {len(failed)} failed (runs {', '.join(map(str, failed))})" if failed else "")
          + f"; load average (1 min) {min(loads):.1f}-{max(loads):.1f} during the runs")
    print(row("kill -> first write acknowledged", [r["seconds"] for r in rows]))
    print(row("client's gap (last ack -> first)", [r["gap"] for r in rows]))
    for stage in STAGES:
        print(row(stage, [r["stages"][stage] for r in rows]))
    print(f"acknowledged writes lost: {sum(lost)} in {sum(1 for x in lost if x)} of {len(rows)} "
          f"runs ({sum(r['acked'] for r in rows)} acknowledged in all)")
    print(f"actions (vip_del + pg_promote -- vip_add): median {actions:.2f}s; "
          f"one check_pg_role run: median {check:.2f}s")
    print(f"bound: confirm x interval + check + actions + client ({CLIENT:.2f}s) = "
          f"{bound(check, actions):.2f}s; runs over it with their own check and action times: "
          f"{len(over)}{' (runs ' + ', '.join(map(str, over)) + ')' if over else ''}")
    print(f"average: (confirm - 1/2) x interval + check + actions + client = "
          f"{(confirm - 0.5) * interval + check + actions + CLIENT:.2f}s")


# The client's share: a 50 ms TCP knock, psql's connection and one INSERT.
CLIENT = 0.1


if __name__ == "__main__":
    main()
