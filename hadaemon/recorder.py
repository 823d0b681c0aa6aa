"""From a check's results to the table and the journal.

Hosts keeps each host's table entry as the loop knows it (status, observed, last_seen, details)
and writes it in batches: a changed observation within FLUSH_EVERY, a result that only confirms
the last one within SEEN_EVERY (a daemon at rest writes and fsyncs once a minute). A write that
fails is retried at the next flush; nothing is lost while the loop runs.

Recorder (single-node mode) commits: a transition of the commit rule is written to the table and
queued as a job in the journal in one SQLite transaction, and only then becomes the committed
status (a transition that cannot be written is proposed again by the next result). A manual
status stands until the journal says its job is closed, or could have ended by its timeouts.
"""

import logging
import sqlite3
import time

from . import actions
from .journal import initial_state, rebase_after
from .maintenance import manual_hold_until

log = logging.getLogger("hadaemon")
FLUSH_EVERY = 1.0  # seconds between batched writes of observations (statuses are written at once)
SEEN_EVERY = 60.0  # seconds between writes of hosts whose results only confirmed the last one


class Hosts:
    def __init__(self, state_db, store, table, entries, errors):
        self.state_db, self.store, self.table = state_db, store, table
        self.entries = dict(entries)  # host -> its table entry
        self.errors = errors  # the loop's RateLog
        self.dirty = set()  # hosts whose observation changed: written within FLUSH_EVERY
        self.seen = set()  # hosts only seen again (last_seen moved): written within SEEN_EVERY
        self.gone = set()  # hosts dropped from the mirror: deleted at the next flush
        self.next_seen = 0.0
        self.record_error = None  # the last write that failed, for status; None once one works

    def observed(self, check_id, results):
        wall = time.time()
        for r in results:
            entry = self.entries.setdefault(r["host"], {"status": "unknown", "since": wall})
            same = (entry.get("observed"), entry.get("check"), entry.get("details")) == (
                r["status"], check_id, r["details"])
            entry.update(observed=r["status"], last_seen=wall, check=check_id,
                         details=r["details"])
            (self.seen if same else self.dirty).add(r["host"])

    def mirror(self, table):
        """Cluster mode: the committed table the agent read, kept here for `status`."""
        for host, entry in table.items():
            self.entries[host] = dict(self.entries.get(host, {}), **entry)
            self.dirty.add(host)

    def forget(self, host):
        self.entries.pop(host, None)
        self.dirty.discard(host)
        self.seen.discard(host)

    def drop(self, host):
        """Cluster mode: host left the cluster's table (forgotten): out of the mirror now, out
        of the state file at the next flush."""
        self.forget(host)
        self.gone.add(host)

    def tick(self, now):
        if now >= self.next_seen:
            self.dirty |= self.seen
            self.seen.clear()
            self.next_seen = now + SEEN_EVERY

    def flush(self, everything=False):
        if everything:
            self.dirty |= self.seen
        if not self.dirty and not self.gone:
            return
        try:
            with self.store.transaction():
                for host in self.dirty:
                    self.table.set(host, self.entries[host])
                for host in self.gone - self.entries.keys():  # unless it came back since
                    self.table.forget(host)
        except sqlite3.Error as e:
            self.cannot_record("results", e, "checks go on")
            return
        self.recorded()
        self.dirty.clear()
        self.gone.clear()

    def cannot_record(self, what, error, consequence):
        self.record_error = str(error)
        self.errors.report("record", logging.ERROR, f"cannot record {what} in "
                           f"{self.state_db} ({error}): {consequence}", changes=False)

    def recorded(self):
        """A write went through: whatever could not be recorded before is over."""
        self.record_error = None
        self.errors.clear("record", f"recording in {self.state_db} works again")


class Recorder:
    def __init__(self, config, hosts, journal, committer, wake, paused=None):
        self.config = config  # () -> the running config
        self.hosts, self.journal, self.committer = hosts, journal, committer
        self.store = hosts.store
        self.wake = wake  # () -> tell the runner a job waits
        self.paused = paused  # while paused: the pause record (maintenance.pause_record)
        self.manual_jobs = {}  # job id -> host whose manual status stands until the job ends
        self.pruned_below = 0  # jobs under this id are pruned from the journal
        self.prune_due = True  # a job was queued, or some were open, since the last prune
        self.base = None  # the id of the environment base new jobs refer to (journal.py)

    def commit(self, transition, now, observed_mono=None):
        """Write the status and queue its actions in one transaction, then wake the runner;
        the job id, or None if it could not be recorded."""
        try:
            with self.store.transaction(durable=transition.manual):
                job, steps, entry = self.enqueue(transition, observed_mono)
        except sqlite3.Error as e:
            self.hosts.cannot_record(f"{transition.host}: {transition.source} -> "
                                     f"{transition.target}", e, "not committed, actions not "
                                     "started; the next result tries again")
            return None
        self.hosts.recorded()
        self.committer.apply(transition, now)
        self.hosts.entries[transition.host] = entry
        run = self.queued(transition, job, steps)
        if run and transition.manual:
            # Its actions make the checks agree: contrary results are held until the journal
            # says the job is closed (end_manual_holds) or it could have ended by its timeouts.
            self.committer.stand_manual(transition.host,
                                        manual_hold_until(now, steps, FLUSH_EVERY))
            self.manual_jobs[job] = transition.host
        if run:
            self.wake()
        return job

    def enqueue(self, transition, observed_mono=None, note=None, write_table=True, plan=None):
        """Inside a transaction: the table row (unless write_table) and the job; returns
        (job id, its steps, the table entry). plan: the transition's, if made already."""
        steps = plan if plan is not None else self.plan(transition)
        queued = initial_state(steps, self.paused is not None, note)[0] == "queued"
        env = self.env_reference(transition) if queued else {}
        wall = time.time()
        # manual: as in cluster mode's table, whether this status was set by hand.
        entry = dict(self.hosts.entries.get(transition.host, {}), status=transition.target,
                     since=wall, manual=transition.manual)
        if write_table:
            self.hosts.table.set(transition.host, entry)
        job = self.journal.enqueue(transition, steps, env, wall, observed_mono,
                                   paused=self.paused is not None, note=note)
        self.prune_due = True
        return job, steps, entry

    def plan(self, transition):
        d = self.config().daemon
        return actions.plan(self.config().sections, transition, d.action_timeout,
                            d.on_failure)

    def env_reference(self, transition):
        """Inside the transaction: what the job stores of its environment (journal.py), a new
        base first when there is none yet (a start, a rolled-back write) or too much changed."""
        snapshot, touched = transition.snapshot, self.committer.touched
        if (self.base is None or len(touched) + 1 > rebase_after(len(snapshot))
                or not self.journal.has_base(self.base)):
            self.base = self.journal.write_base(dict(snapshot))
            touched.clear()
            return {"base": self.base, "changes": {}}
        return {"base": self.base,
                "changes": {h: snapshot.get(h) for h in touched | {transition.host}}}

    def queued(self, transition, job, steps):
        """Log a recorded transition; True if its actions are to run now."""
        run = bool(steps) and self.paused is None
        log.info("transition %s: %s -> %s%s, job #%d with %d command(s)%s", transition.host,
                 transition.source, transition.target, " (manual)" if transition.manual else "",
                 job, len(steps), " (paused: not run)" if steps and not run else "")
        return run

    def end_manual_holds(self):
        """A manual status stands only while the journal has its job open."""
        if not self.manual_jobs:
            return
        try:
            self._end_closed_manuals({j["id"] for j in self.journal.open_jobs()})
        except sqlite3.Error:
            pass  # the hold stands, bounded by its timeouts; the next flush asks again

    def settle(self):
        """At each flush: end the manual holds whose job is closed, and prune finished jobs,
        only after a job was queued or while some are open (a daemon at rest does not ask);
        a failure only delays it."""
        if not (self.prune_due or self.manual_jobs):
            return
        try:
            open_ids = {j["id"] for j in self.journal.open_jobs()}
            self._end_closed_manuals(open_ids)
            if self.prune_due:
                self.pruned_below = self.journal.prune(self.config().daemon.keep_jobs,
                                                       self.pruned_below)
        except sqlite3.Error as e:
            self.hosts.errors.report("prune", logging.WARNING, f"cannot prune old jobs from "
                                     f"{self.hosts.state_db} ({e}); tried again every "
                                     f"{FLUSH_EVERY:g}s", changes=False)
            return
        self.prune_due = bool(open_ids)  # they end later: pruned at a flush after that
        self.hosts.errors.clear("prune")

    def _end_closed_manuals(self, open_ids):
        for job in [j for j in self.manual_jobs if j not in open_ids]:
            self.committer.end_manual(self.manual_jobs.pop(job))
