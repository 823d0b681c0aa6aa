#!/usr/bin/env python3
"""Every benchmark of issue 14 in one go, summed up in one table: each figure beside its
baseline measured in the same run, their ratio (or difference), the goal and whether it is met.

The benchmarks run one after the other in this process, through the measuring functions of
rest.py, throughput.py, latency.py, schedule.py and growth.py; the command each figure comes from
is printed under the table (run it alone for its full table). A benchmark this machine cannot run
(not root, no keepalived, no cc) or that fails says so in its rows, and the others run on.
With the defaults this takes about 7 minutes on 2 cores; --quick, about 2; --smoke (the test's,
every cell filled, no figure worth reading), about 1.

    python bench/all.py [--quick | --smoke]  (as root for rest.py: ip netns)
"""

import argparse
import os
import shutil
import signal
import sys
import traceback

import growth
import latency
import rest
import schedule
import throughput
from harness import cell, print_table

WORKERS = (1, 2, 4)
SCHEDULES = ((100, 1.0), (1000, 5.0))

# The settings of each script: its defaults, and short ones for trying this out (and the test).
FULL = {"rest": dict(seconds=60), "throughput": dict(seconds=5, rounds=3),
        "latency": dict(transitions=250, background=100),
        "schedule": dict(cycles=6, sizes="100x1,1000x5"),
        # The summary compares the largest size with the smallest: the sizes between are not run.
        "growth": dict(sizes="10,100000", seconds=10)}
QUICK = {"rest": dict(seconds=10), "throughput": dict(seconds=1, rounds=1),
         "latency": dict(transitions=50, background=100),
         "schedule": dict(cycles=2, sizes="100x1,1000x5"),
         "growth": dict(sizes="10,1000", seconds=2)}
# The shortest windows that still fill every cell of the table: tests/test_bench.py checks the
# table's shape with it; its figures are not worth reading.
SMOKE = {"rest": dict(seconds=2), "throughput": dict(seconds=0.5, rounds=1),
         "latency": dict(transitions=10, background=100),
         "schedule": dict(cycles=1, sizes="100x1,1000x5"),
         "growth": dict(sizes="10,1000", seconds=1)}


def times(base, ours, unit, most):
    """Goal: ours <= most * base."""
    return [f"{cell(base)} {unit}", f"{cell(ours)} {unit}", f"{ours / base:.2f}x",
            ours <= most * base]


def plus(base, ours, met):
    """Figures in ms, their difference; met says whether the goal is."""
    sign = "-" if ours < base else "+"
    return [f"{cell(base)} ms", f"{cell(ours)} ms", f"{sign}{cell(abs(ours - base))} ms", met]


# Lines printed under the table: what a figure's goal is measured against beyond its baseline.
NOTES = []


def rest_figures(s):
    r = rest.measure(s["seconds"])
    k, h, f = r["keepalived"], r["hadaemon"], r["Python floor"]
    NOTES.append(f"the least a Python daemon pays (bench/floor.py, in rest.py's run): "
                 f"{cell(f['own'])} ms per check, {f['own'] / k['own']:.2f}x keepalived's; "
                 f"{cell(f['pss'])} MiB PSS, {f['pss'] / k['pss']:.2f}x")
    # CPU s per 1000 checks is ms per check.
    return [times(k["own"], h["own"], "ms", 0.7), times(k["pss"], h["pss"], "MiB", 2)]


def throughput_figures(s):
    rows = []
    for n in WORKERS:
        r = throughput.measure(n, s["seconds"], s["rounds"])
        # The median of the rounds' ratios, as throughput.py prints it.
        rows.append([f"{r['bare']:.0f}/s", f"{r['hadaemon']:.0f}/s", f"{r['ratio']:.2f}",
                     r["ratio"] >= 0.9])
    return rows


def latency_figures(s):
    r = latency.measure(s["transitions"], s["background"])
    bare, ours = r["bare"]["p99"], r["hadaemon"]["p99"]
    return [plus(bare, ours, ours <= bare + 1)]


def schedule_figures(s):
    rows = []
    for n, interval in SCHEDULES:
        r = schedule.measure(n, interval, s["cycles"])
        # The bare loop's lateness counted as hadaemon's is (from each check's best run).
        bare, ours = r["bare"]["p99"], r["hadaemon"]["p99"]
        rows.append(plus(bare, ours, ours < 3))
    return rows


def growth_figures(s):
    small, big = (growth.measure(int(n), s["seconds"]) for n in s["sizes"].split(","))
    return [times(small["daemon_us"], big["daemon_us"], "us", 1.2),
            [f"{cell(big['bare_commit_ms'])} ms", f"{cell(big['commit_ms'])} ms",
             f"{big['commit_ms'] / big['bare_commit_ms']:.2f}x", big["commit_ms"] <= 1],
            plus(big["turn_max_rest"], big["turn_max_status"], big["turn_max_status"] <= 5),
            plus(big["turn_max_rest"], big["turn_max_history"], big["turn_max_history"] <= 5)]


def rest_cannot():
    if os.geteuid() != 0:
        return "not root (ip netns)"
    for tool in ("ip", "keepalived"):
        if not shutil.which(tool):
            return f"no {tool}"
    return None


def schedule_cannot():
    return None if shutil.which("cc") else "no cc"


def benchmarks(settings):
    """(script, figures: [(label, goal)], why it cannot run here or None, measure)."""
    largest = settings["growth"]["sizes"].split(",")[-1]
    return [
        ("rest", [("daemon CPU per check, 10 checks @ 1 s, vs keepalived", "<= 0.7x"),
                  ("PSS of all daemon processes, vs keepalived", "<= 2x")],
         rest_cannot(), rest_figures),
        ("throughput", [(f"throughput, {n} worker{'s' if n > 1 else ''} / {n} bare spawn loop"
                         f"{'s' if n > 1 else ''}", ">= 0.9") for n in WORKERS],
         None, throughput_figures),
        ("latency", [("reaction p99 (result read -> command started), vs bare",
                      "<= bare + 1 ms")], None, latency_figures),
        ("schedule", [(f"scheduling p99, {n} checks @ {i:g} s, vs bare timer loop", "< 3 ms")
                      for n, i in SCHEDULES], schedule_cannot(), schedule_figures),
        ("growth", [(f"per-check CPU, {largest} hosts / 10 hosts", "<= 1.2x"),
                    (f"commit, {largest} hosts, vs bare fsync'd row", "<= 1 ms"),
                    (f"loop hold: longest turn during status, {largest} hosts, vs at rest",
                     "<= 5 ms"),
                    (f"loop hold: longest turn during history, {growth.JOBS} jobs, vs at rest",
                     "<= 5 ms")], None, growth_figures),
    ]


def command(script, s):
    return f"python bench/{script}.py " + " ".join(f"--{k} {v}" for k, v in s.items())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="short durations and one round each: to try it, not to quote")
    ap.add_argument("--smoke", action="store_true",
                    help="the shortest durations that fill the table (the test's): no figure to read")
    a = ap.parse_args()
    # Ctrl-C or a kill still stops the daemons and removes rest.py's namespace (finally clauses).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    settings = SMOKE if a.smoke else QUICK if a.quick else FULL
    rows, commands = [], []
    for script, figures, cannot, measure in benchmarks(settings):
        cmd = command(script, settings[script])
        if cannot:
            found = [[f"cannot run here: {cannot}", "", ""]] * len(figures)
        else:
            print(f"$ {cmd}", file=sys.stderr, flush=True)
            commands.append(cmd)
            try:
                found = measure(settings[script])
            except Exception as e:  # one benchmark's failure is its rows', not the run's
                traceback.print_exc()
                reason = str(e).splitlines()[0] if str(e) else type(e).__name__
                found = [[f"failed: {reason}", "", ""]] * len(figures)
        for (label, goal), cells in zip(figures, found):
            met = {True: "yes", False: "no"}.get(cells[3], "") if len(cells) > 3 else ""
            rows.append([label, *cells[:3], goal, met])
    print_table("Issue 14 goals, each figure beside its baseline of the same run",
                ["figure", "baseline", "hadaemon", "ratio", "goal", "met?"], rows,
                "python bench/all.py " + " ".join(sys.argv[1:]))
    print("".join(f"\n{n}" for n in NOTES))
    print("\nfrom:\n" + "\n".join(f"$ {c}" for c in commands))


if __name__ == "__main__":
    main()
