"""Which check is due when: a heap of deadlines on the monotonic clock.

A check is never queued twice: it is taken off the heap when it is handed to a worker and put back
when its result (or its failure) comes in, one interval after it was due, so runs do not drift.
A check slower than its interval runs back to back instead of piling up.
"""

import heapq
import itertools


class Scheduler:
    def __init__(self, checks, now):
        self._checks = {}
        self._heap = []
        self._order = itertools.count()
        self.running = {}  # check id -> the number of its run in flight
        self.replace(checks, now)

    def replace(self, checks, now):
        """Take a new set of checks (a reload): unchanged ones keep their deadlines."""
        old = self._checks
        self._checks = {c.id: c for c in checks}
        kept = {cid: due for due, _, cid in self._heap if cid in self._checks}
        self._heap = []
        for i, check in enumerate(checks):
            if check.id in self.running:
                continue
            if check.id in kept and old[check.id].interval == check.interval:
                due = kept[check.id]
            else:
                # Runs keep the phase of their first run, so first runs are spread evenly over
                # the whole interval: a burst at start would come back every interval, and
                # checks due in the same millisecond wait for each other (bench/schedule.py).
                due = now + check.interval * i / len(checks)
            heapq.heappush(self._heap, (due, next(self._order), check.id))
        self.running = {cid: run for cid, run in self.running.items() if cid in self._checks}

    def next_deadline(self):
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now):
        """Yield (check, due, run) for every check due at `now`, marking it running; `run`
        names this run when it is done."""
        while self._heap and self._heap[0][0] <= now:
            due, run, cid = heapq.heappop(self._heap)
            self.running[cid] = run
            yield self._checks[cid], due, run

    def push_back(self, check, due):
        """Put a check back without running it (no worker was free)."""
        self.running.pop(check.id, None)
        heapq.heappush(self._heap, (due, next(self._order), check.id))

    def done(self, check_id, run, due, now):
        """A run of check_id that was due at `due` has finished."""
        if self.running.get(check_id) != run:
            # Removed by a reload while it ran (and maybe added again, which queued it anew).
            return
        del self.running[check_id]
        check = self._checks[check_id]
        heapq.heappush(self._heap, (max(due + check.interval, now), next(self._order), check_id))

    def get(self, check_id):
        return self._checks.get(check_id)

    def __len__(self):
        return len(self._checks)
