"""Per-check counters the supervisor keeps for /metrics: runs, failures, and two histograms,
how long a run took and how late it started against its schedule; and the CPU time of each
turn of the loop (its work, not its wait, nor the time other processes ran meanwhile): while a
turn works nothing else is done.

Kept in the loop, so they must cost next to nothing: a few integer additions per result and a
bisect over a dozen bucket bounds. The HTTP child reads them with the rest of a snapshot
(snapshot()), at most once a second however many clients it has.
"""

import bisect

# Upper bounds in seconds (Prometheus' `le`); +Inf is the count itself.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LATENESS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
TURN_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds):
        self.bounds, self.counts, self.sum = bounds, [0] * (len(bounds) + 1), 0.0

    def add(self, value):
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def snapshot(self):
        """{"buckets": [[le, cumulative count], ...], "sum": s, "count": n}."""
        total, buckets = 0, []
        for bound, n in zip(self.bounds, self.counts):
            total += n
            buckets.append([bound, total])
        return {"buckets": buckets, "sum": self.sum, "count": total + self.counts[-1]}


class CheckStats:
    __slots__ = ("runs", "failures", "duration", "lateness")

    def __init__(self):
        self.runs = self.failures = 0
        self.duration = Histogram(DURATION_BUCKETS)
        self.lateness = Histogram(LATENESS_BUCKETS)


class Stats:
    def __init__(self):
        self.checks = {}  # check id -> CheckStats; a check removed by a reload keeps its own
        self.turns = Histogram(TURN_BUCKETS)

    def record(self, check_id, duration, late, failed):
        """One run of check_id: `duration` seconds from hand-over to result, started `late`
        seconds after it was due; failed: it gave no usable result (timeout, crash, output)."""
        s = self.checks.get(check_id)
        if s is None:
            s = self.checks[check_id] = CheckStats()
        s.runs += 1
        s.failures += bool(failed)
        s.duration.add(max(0.0, duration))
        s.lateness.add(max(0.0, late))

    def snapshot(self, current):
        """The counters of the checks in `current` (ids), as JSON-able dicts."""
        return {cid: {"runs": s.runs, "failures": s.failures,
                      "duration": s.duration.snapshot(), "lateness": s.lateness.snapshot()}
                for cid, s in self.checks.items() if cid in current}
