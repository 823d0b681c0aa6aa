#!/usr/bin/env python3
"""Check throughput: the most trivial checks per second hadaemon sustains, for 1, 2 and 4
workers, against the machine's limit measured in the same run: as many bare loops as workers,
each spawning the same check back to back with posix_spawn and reading its output (no daemon).
Bare and hadaemon take turns, several rounds each, so that a change in what else runs on the
machine hits both; the ratio is the median of the rounds' ratios.

    python bench/throughput.py [--seconds 5] [--rounds 3] [--workers 1,2,4]
"""

import argparse
import statistics
import sys
import time

from harness import Daemon, Home, parallel_spawn_loops, print_table

CHECKS = 64  # more checks than workers can run: every worker is always busy
WARMUP = 2.0


def hadaemon_rate(workers, seconds):
    home = Home("throughput")
    try:
        # The minimum interval: each check is due again as soon as it is back.
        home.configure([(f"c{i:03d}", "trivial", f"h{i:03d} {home.count}") for i in range(CHECKS)],
                       interval="10ms", workers=workers, log_level="warning")
        with Daemon(home):
            time.sleep(WARMUP)
            start, t0 = home.counted(), time.monotonic()
            time.sleep(seconds)
            n, t1 = home.counted() - start, time.monotonic()
        return n / (t1 - t0)
    finally:
        home.remove()


def bare_rate(workers, seconds):
    home = Home("bare")
    try:
        argv = [str(home.root / "checks/trivial"), "h000", str(home.count)]
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HA_HOME": str(home.root),
               "HA_CHECK": "c000", "HA_HOST": "h000"}
        return parallel_spawn_loops(workers, argv, env, seconds)
    finally:
        home.remove()


def measure(workers, seconds, rounds):
    """Checks/s with `workers` workers and as many bare loops, taking turns `rounds` times:
    medians of both rates, and the median, lowest and highest of the rounds' ratios."""
    turns = [(bare_rate(workers, seconds), hadaemon_rate(workers, seconds))
             for _ in range(rounds)]
    ratios = [h / b for b, h in turns]
    return dict(bare=statistics.median(b for b, _ in turns),
                hadaemon=statistics.median(h for _, h in turns),
                ratio=statistics.median(ratios), lowest=min(ratios), highest=max(ratios))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="per round and side")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", default="1,2,4")
    a = ap.parse_args()
    rows = []
    for n in [int(w) for w in a.workers.split(",")]:
        r = measure(n, a.seconds, a.rounds)
        rows.append([n, round(r["bare"]), round(r["hadaemon"]), r["ratio"], r["lowest"],
                     r["highest"]])
    print_table("Check throughput (trivial sh check, checks/s)",
                ["workers", "bare loops", "hadaemon", "hadaemon / bare", "lowest", "highest"],
                rows,
                "python bench/throughput.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
