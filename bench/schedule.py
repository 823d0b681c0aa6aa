#!/usr/bin/env python3
"""Scheduling accuracy: how late each check starts against its schedule, with 100 checks at a 1 s
interval and with 1000 checks at 5 s, after a warm-up of one interval.

The check is a few lines of C that append its name and CLOCK_MONOTONIC to a log as it starts. The
daemon's schedule is not visible from outside, but it is regular: run k of a check is due at
due0 + k * interval as long as no run is more than one interval late. due0 is taken as the
earliest start minus k * interval over the runs measured, so lateness is counted from the check's
best run; the machine's floor (the fastest a spawned program can reach its first line) is not in
it. The baseline row is a bare timer loop in one process that spawns the same program at the
same rate, on evenly spread due times it knows exactly; its lateness is given both exact and
counted the same way as hadaemon's (from the best run), so the two methods can be compared.

    python bench/schedule.py [--cycles 6] [--sizes 100x1,1000x5]
"""

import argparse
import collections
import os
import sys
import time

from harness import Daemon, Home, ms_summary, print_table


def lateness_from_starts(starts, interval):
    """Per check: starts (sorted) -> lateness of each run against due0 + k * interval."""
    late = []
    for times in starts.values():
        times.sort()
        base = min(t - k * interval for k, t in enumerate(times))
        late += [t - k * interval - base for k, t in enumerate(times)]
    return late


def read_log(path, since):
    starts = collections.defaultdict(list)
    with open(path) as f:
        for line in f:
            name, t = line.split()
            if float(t) >= since:
                starts[name].append(float(t))
    return starts


def hadaemon(n, interval, cycles):
    home = Home("schedule")
    try:
        stamp = home.compile_stamp()
        log = home.root / "starts.log"
        home.configure([(f"c{i:04d}", stamp.name, f"h{i:04d} {log}") for i in range(n)],
                       interval=f"{interval:g}", workers=2, log_level="warning")
        with Daemon(home):
            # Warm-up: the first round commits every host (unknown -> up), one fsync each.
            since = time.monotonic() + interval + 2.0
            time.sleep(interval + 2.0 + cycles * interval)
        return lateness_from_starts(read_log(log, since), interval)
    finally:
        home.remove()


def bare(n, interval, cycles):
    """Evenly spread due times, sleep until each, spawn; reap without waiting for output."""
    home = Home("schedule-bare")
    try:
        stamp = home.compile_stamp()
        log = home.root / "starts.log"
        start = time.monotonic() + 0.5
        dues = {f"h{i:04d}": start + i * interval / n for i in range(n)}
        exact = []
        end = start + cycles * interval
        k = 0
        while True:
            for name, due0 in dues.items():
                due = due0 + k * interval
                if due >= end:
                    break
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                os.posix_spawn(str(stamp), [str(stamp), name, str(log)], {}, file_actions=[
                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
                _reap()
            else:
                k += 1
                continue
            break
        time.sleep(0.2)
        _reap()
        starts = read_log(log, 0)
        for name, times in starts.items():
            exact += [t - dues[name] - k * interval for k, t in enumerate(sorted(times))]
        return exact, lateness_from_starts(starts, interval)
    finally:
        home.remove()


def _reap():
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


# The rows of each size: what is measured, as printed.
SIDES = (("bare exact", "bare timer loop, exact"), ("bare", "bare timer loop, from best run"),
         ("hadaemon", "hadaemon, from best run"))


def measure(n, interval, cycles):
    """Lateness of n checks at `interval` seconds: {side: n, p50, p99, max in ms} for SIDES."""
    exact, anchored = bare(n, interval, cycles)
    ours = hadaemon(n, interval, cycles)
    return {"bare exact": ms_summary(exact), "bare": ms_summary(anchored),
            "hadaemon": ms_summary(ours)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=6, help="intervals measured per size")
    ap.add_argument("--sizes", default="100x1,1000x5", help="CHECKSxINTERVAL,...")
    a = ap.parse_args()
    rows = []
    for size in a.sizes.split(","):
        n, interval = int(size.split("x")[0]), float(size.split("x")[1])
        r = measure(n, interval, a.cycles)
        for side, name in SIDES:
            x = r[side]
            rows.append([f"{n} checks @ {interval:g}s", name, x["n"], x["p50"], x["p99"], x["max"]])
    print_table("Scheduling lateness (ms)", ["load", "", "runs", "p50", "p99", "max"], rows,
                "python bench/schedule.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
