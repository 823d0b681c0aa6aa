"""Failover time of the PostgreSQL example: SIGKILL of the primary -> first write through the VIP.

Each run builds the scenario from nothing (tests/pgnet.py: examples/postgresql/demo and the
example's configs, on fresh network namespaces), writes rows through the service address, kills
the primary's postmaster and times, on CLOCK_MONOTONIC, the first INSERT through the service
address that succeeds. The journal's stamps split that time into its stages.

Usage (root; PostgreSQL and iproute2 installed):
    python bench/failover.py [--runs N] [--interval SECONDS] [--confirm N]

The bound printed is what the settings imply. The example's failover is two detections in a row
(the primary seen down, then the promoted replica seen master), each taking at most
confirm x interval after the event plus one check's run time, plus the actions' own time.
"""

import argparse
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

STAGES = ("primary seen down", "replica promoted", "replica seen master", "address moved")


def one_run(interval, confirm):
    cluster = pgnet.Cluster()
    scratch = tempfile.mkdtemp(prefix="hadaemon-failover-")
    try:
        cluster.up()
        home = cluster.home(Path(scratch) / "home", interval, confirm)
        cluster.start_daemon(home)
        wait_for(lambda: any(h["to"] == "master" and h["state"] == "done"
                             for h in home.history()), 60, "start-up vip_add done")
        check = check_seconds(cluster)
        measured = cluster.failover(home)
        history = home.history()
        stages = pgnet.breakdown(history, measured["killed_wall"])
        actions = sum(c["duration"] for h in pgnet.failover_jobs(history) for c in h["commands"])
        return measured["seconds"], stages, actions, check
    finally:
        cluster.down()
        shutil.rmtree(scratch, ignore_errors=True)


def check_seconds(cluster):
    """How long one check_pg_role run takes here (two client programs, two connections)."""
    start = time.monotonic()
    subprocess.run(cluster.in_ns(str(pgnet.ROOT / "checks/check_pg_role"), "-h", cluster.db2),
                   capture_output=True, check=True)
    return time.monotonic() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--interval", type=float, default=None,
                        help="check interval in seconds (default: the example's)")
    parser.add_argument("--confirm", type=int, default=None,
                        help="confirmations (default: the example's)")
    args = parser.parse_args()
    reason = pgnet.unavailable()
    if reason:
        sys.exit(f"failover bench: cannot run here: {reason}")
    example = (pgnet.EXAMPLE / "etc/checks.conf").read_text()
    interval = args.interval or float(pgnet.setting_in(example, "interval"))
    confirm = args.confirm or int(pgnet.setting_in(example, "confirm"))

    rows, failed = [], []
    for n in range(1, args.runs + 1):
        try:
            seconds, stages, actions, check = one_run(interval, confirm)
        except AssertionError as e:  # counted and shown, never averaged in
            failed.append(n)
            print(f"run {n} FAILED: {str(e).strip().splitlines()[-1][:300]}", flush=True)
            continue
        rows.append((seconds, stages, actions, check))
        print(f"run {n}: {seconds:.2f}s (" + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
              + f"; actions {actions:.2f}s, one check {check:.2f}s)", flush=True)
    if not rows:
        sys.exit("every run failed")

    times = sorted(r[0] for r in rows)
    actions = statistics.median(r[2] for r in rows)
    check = statistics.median(r[3] for r in rows)
    one_stage = confirm * interval + actions

    def bound(check, actions):
        return 2 * (confirm * interval + check) + actions
    over = [n for n, r in enumerate(rows, 1) if r[0] > bound(r[3], r[2])]
    expected = 2 * ((confirm - 0.5) * interval + check) + actions
    print(f"\n$ python bench/failover.py {' '.join(shlex.quote(a) for a in sys.argv[1:])}")
    print(f"interval {interval:g}s, confirm {confirm}, {len(rows)} runs"
          + (f", {len(failed)} failed (runs {', '.join(map(str, failed))})" if failed else ""))
    print(f"| kill -> first write through the VIP | median {statistics.median(times):.2f}s "
          f"| worst {times[-1]:.2f}s | best {times[0]:.2f}s |")
    for stage in STAGES:
        values = [r[1][stage] for r in rows]
        print(f"| {stage:35} | median {statistics.median(values):.2f}s "
              f"| worst {max(values):.2f}s | best {min(values):.2f}s |")
    print(f"actions (vip_del + pg_promote + vip_add): median {actions:.2f}s; "
          f"one check_pg_role run: median {check:.2f}s")
    print(f"interval x confirm + actions = {one_stage:.2f}s (one detection)")
    print(f"2 x (interval x confirm + check) + actions = {bound(check, actions):.2f}s "
          f"(worst case, two detections); runs over it with their own check and action times: "
          f"{len(over)}{' (runs ' + ', '.join(map(str, over)) + ')' if over else ''}")
    print(f"2 x ((confirm - 1/2) x interval + check) + actions = {expected:.2f}s (average phase)")


if __name__ == "__main__":
    main()
