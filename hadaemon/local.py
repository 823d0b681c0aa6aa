"""The single-node backend: this node's commit rule is the authority. Its transitions are
committed to the SQLite table and journal (recorder.py) and run by the action runner child
(runner.py); the operator's requests are served here (requests.py)."""

import time

from . import history, runner, stream, wire
from .children import Child
from .commit import Committer
from .journal import Journal
from .recorder import Recorder
from .requests import LocalRequests, read_paused


class LocalBackend:
    def __init__(self, sup):
        self.sup = sup
        self.runner = Child("action runner", self._start_runner, "resumes the journal",
                            "actions wait")
        self.children = (self.runner,)

    def setup(self, hosts):
        """The commit rule starts from the table: committed statuses, and when each changed."""
        sup = self.sup
        self.journal = Journal(hosts.store)
        now, wall = time.monotonic(), time.time()
        entries = hosts.entries
        committer = Committer(
            {h: e["status"] for h, e in entries.items()},
            {h: now - max(0.0, wall - e.get("since", wall)) for h, e in entries.items()})
        self.recorder = Recorder(lambda: sup.config, hosts, self.journal, committer,
                                 lambda: self.runner.send(wire.Wake()))
        self.recorder.paused = read_paused(sup.home.paused, committer.committed)
        self.requests = LocalRequests(sup.home, lambda: sup.config, self.recorder,
                                      sup.reporting)
        # Jobs left open by an earlier run; only those may be superseded when the runner starts.
        self.resume_upto = self.journal.last_id()
        return committer

    def _start_runner(self, settings):
        return runner.spawn(self.sup.home.root, settings)

    def on_transition(self, transition, now, observed_mono):
        self.recorder.commit(transition, now, observed_mono)

    def before_results(self):
        self.recorder.end_manual_holds()

    def settle(self):
        self.recorder.settle()

    def checks_removed(self, removed):
        pass  # the table keeps their hosts: `forget` removes one

    def answer(self, request):
        return self.requests.answer(request)

    def paused(self):
        return self.recorder.paused is not None

    def queue(self):
        return self.journal.open_jobs()

    def recent(self, limit):
        """The newest history entries, for the HTTP endpoint's snapshot: read as they are
        sent, a page per slice (stream.py)."""
        return stream.Items(history.pages(self.sup.store, limit))

    def status(self, answer):
        """Its part of the status answer; returns marks per host (none here)."""
        answer["queue"] = self.queue()
        return {}
