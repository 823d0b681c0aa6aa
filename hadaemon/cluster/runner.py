"""The action runner of cluster mode: jobs live in etcd, each run exactly once in the cluster.

A job is claimed with a key created only if absent and bound to this runner's lease; every step
row is written (guarded by the claim) before its command starts and completed after it ends.
Before each command the runner checks that its lease, as last renewed, outlives the fencing
margin; a runner that cannot renew stops starting commands and says why. When a claim vanishes
(its node died or was cut off, and its lease expired) the job's next runner resumes it from the
first unfinished command with HA_RESUMED=1, or records it as superseded if the host moved on.
"""

import json
import logging
import os
import select
import signal
import threading
import time

from . import clusterid
from .. import logsetup
from ..runner import Runner
from .keys import Keys, split_live
from .node import is_us
from .etcd import Etcd, EtcdUnavailable
from .store import EtcdJournal, EtcdStore, EtcdTable

log = logging.getLogger("hadaemon.runner")


class ClusterRunner(Runner):
    """Shares the single-node runner's stop and orphan handling; the journal is etcd."""

    def __init__(self, home, settings, sock):
        super().__init__(home, settings, sock)
        c = settings["cluster"]
        self.me, self.ttl, self.margin = c["node"], c["ttl"], c["fence_margin"]
        self.poll = c["poll"]
        self.name, self.keys = c["name"], Keys(f"/{c['name']}/")
        self.endpoints, self.timeout = c["endpoints"], c["request_timeout"]
        self.etcd = Etcd(self.endpoints, self.timeout)
        store = EtcdStore(self.etcd, self.keys)
        self.jobs, self.etable = EtcdJournal(store), EtcdTable(store)
        self.lease = None
        self.valid_until = 0.0
        self.lock = threading.Lock()
        self.error = None
        self.held_back = None  # id of the job whose next command waits for the lease
        self.distrust = None  # why no job runs: etcd's data is not this cluster's (clusterid.py)
        self.seen = (None, 0)  # (marker generation, highest revision seen under it)

    def program(self, step):
        """What this node's config resolved the name to at load or reload: the step may have
        been planned on another node, whose home is elsewhere."""
        word = step["argv"][0]
        if word not in self.settings["programs"]:
            raise LookupError(f"{word!r} is not a program of {self.me}'s config as loaded "
                              f"(each node runs what its own actions.conf resolved)")
        return self.settings["programs"][word]

    # -- lease ----------------------------------------------------------------------------------

    def holder(self, lease=None):
        return f"{self.me}/{os.getpid()}/{lease or self.lease:x}"

    def ensure_lease(self):
        """The lease claims go on (the keepalive thread may drop it at any time: read once)."""
        with self.lock:
            if self.lease is None:
                t0 = time.monotonic()
                self.lease = self.etcd.grant(self.ttl)
                self.valid_until = t0 + self.ttl
            return self.lease

    def renew(self, etcd):
        """One keepalive through `etcd` (each thread has its own client)."""
        with self.lock:
            lease = self.lease
        if lease is None:
            return
        t0 = time.monotonic()
        try:
            ttl = etcd.keepalive(lease)
        except EtcdUnavailable:
            return
        with self.lock:
            if ttl <= 0 and self.lease == lease:
                log.error("runner lease %x expired: its claims are gone", lease)
                self.lease = None
            elif ttl > 0:
                self.valid_until = max(self.valid_until, t0 + ttl)

    def keepalive_loop(self):
        """Renews in its own thread, so a long command does not let the claim expire."""
        etcd = Etcd(self.endpoints, self.timeout)
        while True:
            try:
                self.renew(etcd)
            except Exception:  # a dead keepalive thread would let every claim expire silently
                log.exception("runner lease keepalive failed; trying again")
            time.sleep(max(0.1, min(self.poll, self.ttl / 5.0)))

    def time_left(self):
        with self.lock:
            return self.valid_until - time.monotonic() if self.lease else -1.0

    # -- the loop -------------------------------------------------------------------------------

    def main(self):
        logsetup.configure_child(self.home, self.settings)
        signal.signal(signal.SIGTERM, self._terminate)
        os.chdir(self.home.root)  # commands run in the home: no per-run cwd, so posix_spawn
        threading.Thread(target=self.keepalive_loop, daemon=True).start()
        while not self.stopping() and not self.orphaned():
            try:
                self.ensure_lease()
                worked = self.work()
                if self.error:
                    log.warning("etcd reachable again: jobs go on")
                self.error = None
            except EtcdUnavailable as e:
                if self.error is None:
                    log.warning("etcd unreachable: no command starts until it is back (%s)", e)
                self.error, worked = str(e), False
            if not worked and not self.wait(self.poll):
                break
        if self.lease:
            self.etcd.revoke(self.lease)

    def wait(self, seconds):
        try:
            ready = select.select([self.sock], [], [], seconds)[0]
        except InterruptedError:
            return True
        if not ready:
            return True
        try:
            data = self.sock.recv(65536)
        except OSError:
            return False
        if data.startswith(b"{"):
            self.settings.update(json.loads(data))
        return bool(data)

    def look(self):
        """split_live of live/, or None if etcd does not hold this cluster as the agent
        remembers it (the runner checks itself: it may look before the agent does)."""
        (live,), _, header = self.etcd.read([self.keys.live])
        memory = clusterid.load(self.home, self.name)
        if self.seen[0] != memory.get("generation"):
            self.seen = (memory.get("generation"), 0)
        if memory:
            memory["revision"] = max(memory.get("revision", 0), self.seen[1])
        seen = clusterid.found(self.keys, live, header)
        what, reason = clusterid.verdict(memory, seen, self.me)
        if what != "ok":  # init, adopt: the agent has not remembered the marker yet
            if reason and self.distrust != reason:
                log.warning("no job runs: %s", reason)
            self.distrust = reason or self.distrust
            return None
        if self.distrust:
            log.warning("etcd holds this cluster again: jobs go on")
        self.distrust = None
        self.seen = (self.seen[0], max(self.seen[1], seen["revision"]))
        return split_live(self.keys, live)

    def work(self):
        """Run the first job (fence jobs first) whose next command is ours; True if one ran."""
        live = self.look()
        if live is None:
            return False
        nodes, _, leader, paused, _, _, open_ids = live
        leader = leader[0] if leader else None
        if not is_us(nodes.get(self.me)):
            return False  # not joined (yet, or the name is another daemon's): the agent says why
        if not open_ids:
            return False  # the usual case: no claim/ read on every poll
        claims = self.jobs.claims()
        for raw, job in self.jobs.open_jobs(open_ids):
            holder = self.jobs.holder(claims, job["id"])
            if holder is not None:
                with self.lock:
                    lease = self.lease
                if lease is not None and holder == self.holder(lease) == job.get("holder"):
                    # Ours already: a command was held back by the fencing margin (etcd was
                    # away); the claim outlived that, so go on from the next command.
                    return self.run(job)
                continue
            progress = self.jobs.progress(job["id"])
            if paused and job.get("kind") != "fence" and not job.get("holder") and not progress:
                continue  # maintenance: nothing new starts; a begun sequence finishes
            if self.owner(job, _next_step(job, progress)[0], nodes, leader) != self.me:
                continue
            if self.claim(raw, job):
                return self.run(job)
        return False

    def owner(self, job, idx, nodes, leader):
        """The node that runs step idx: the one its section names if alive, else the leader."""
        if idx is None:
            return leader
        node = job["plan"][idx].get("node") or leader
        return node if node in nodes else leader

    def claim(self, raw, job):
        taken_over = bool(job.get("holder"))  # its holder's claim vanished without a release
        lease = self.ensure_lease()
        job.update(holder=self.holder(lease), state="running",
                   resumed=job.get("resumed") or taken_over)
        if not self.jobs.claim(raw, job, job["holder"], lease):
            return False
        if taken_over:
            log.warning("job #%d for %s: its runner is gone: taking it over", job["id"],
                        job["host"])
            status = self.etable.status(job["host"])
            if job.get("kind") == "transition" and status != job["target"]:
                self.finish(job, "superseded", f"{job['host']} is {status} now, "
                            f"not {job['target']}")
                return False
        return True

    def finish(self, job, state, note=None):
        if self.jobs.finish(job, state, note, time.time()):
            log.info("job #%d %s -> %s: %s%s", job["id"], job["host"], job["target"], state,
                     f" ({note})" if note else "")

    # -- one job --------------------------------------------------------------------------------

    def run(self, job):
        """Run the job's commands from its first unfinished one; False if none could start."""
        resumed = job["resumed"]
        if self.held_back != job["id"]:
            log.info("job #%d %s: %s -> %s: %d command(s)%s", job["id"], job["host"],
                     job["source"], job["target"], len(job["plan"]),
                     " (resumed)" if resumed else "")
        while True:
            raw = self.jobs.progress(job["id"], raw=True)
            idx, failed = _next_step(job, {i: json.loads(v) for i, v in raw.items()})
            if idx is None:
                self.finish(job, "failed" if failed else "done", failed)
                return True
            live = self.look()
            if live is None:
                return False  # still claimed: it goes on once etcd is recognised again
            if (self.owner(job, idx, live[0], live[2][0] if live[2] else None) != self.me
                    or not is_us(live[0].get(self.me))):
                self.jobs.release(job)  # the next command is another node's: hand the job on
                return True
            if self.stopping() or self.orphaned():
                return True
            result = self.run_step(job, idx, job["plan"][idx], resumed, raw.get(idx))
            if result == "held":
                return False
            if result in ("fenced", "interrupted"):
                return True
            # "changed": a command's record moved under us (its runner, cut off, recorded the
            # end late): read the records again rather than run it a second time.

    def run_step(self, job, idx, step, resumed, seen):
        if self.time_left() < self.margin:
            self.renew(self.etcd)  # etcd may be back before the keepalive thread has seen it
        if self.time_left() < self.margin:
            return self.hold_back(job, step, "")
        self.held_back = None
        started = {"node": self.me, "started": time.time(), "resumed": resumed,
                   "finished": None}
        written = self.jobs.step_started(job, idx, seen, started)
        if written == "changed":
            return "changed"
        if written == "lost":
            log.error("job #%d: claim lost before %r: not started", job["id"], step["text"])
            return "fenced"
        if self.time_left() < self.margin:
            # The write took long enough (etcd slow or failing over) to eat the margin: not
            # started after all. The record says started; whoever runs it next (this runner
            # once renewed, or another) runs it, with HA_RESUMED=1 if it is another.
            return self.hold_back(job, step, " after recording its start")
        outcome, error = self.execute(job, step, resumed, {"HA_NODE": self.me})
        if outcome is None:
            rc, duration, output = None, 0.0, ""
        elif self.stop_at is not None and outcome.timed_out:
            return "interrupted"
        else:
            rc, duration, error = outcome.rc, outcome.duration, outcome.reason()
            output = outcome.output.decode("utf-8", "replace")
        done = dict(started, finished=time.time(), rc=rc, duration=duration, output=output,
                    error=error)
        if not self.record_finished(job, idx, started, done):
            log.error("job #%d: %r finished after another node took the job over",
                      job["id"], step["text"])
            return "fenced"
        ok = rc == 0 and not error
        (log.info if ok else log.error)("job #%d: %s exited %s in %.2fs%s", job["id"],
                                        step["text"], rc, duration or 0.0,
                                        f" ({error})" if error else "")
        return "ok"

    def hold_back(self, job, step, when):
        """Not starting step: the lease's time left is under the fencing margin. Said once per
        job held back; the job stays claimed, and its command starts once the lease is renewed."""
        if self.held_back != job["id"]:
            log.error("job #%d: not starting %r%s: lease time left %.1fs is under the fencing "
                      "margin %.1fs (etcd unreachable or slow?); it starts once the lease is "
                      "renewed, or whoever holds the job next resumes it", job["id"],
                      step["text"], when, self.time_left(), self.margin)
        self.held_back = job["id"]
        return "held"

    def record_finished(self, job, idx, started, done):
        """Record a command's end, waiting out an etcd outage: the outcome is known here only.
        Guarded by our own start record, not the claim: if nobody restarted the command, its
        outcome is true and recording it late still saves a second run. False if somebody did."""
        waiting = False
        while True:
            try:
                return self.jobs.step_finished(job, idx, started, done)
            except EtcdUnavailable as e:
                if not waiting:
                    log.warning("job #%d: cannot record the end of %r yet (%s): retrying",
                                job["id"], job["plan"][idx]["text"], e)
                waiting = True
                if self.orphaned() or not self.wait(self.poll):
                    raise
                if self.stopping() and time.monotonic() > self.stop_at:
                    raise


def _next_step(job, progress):
    """(index of the next command to run or None, why the job failed or None)."""
    for idx, step in enumerate(job["plan"]):
        record = progress.get(idx) or {}
        if record.get("finished") is None:
            return idx, None
        if (record.get("rc") != 0 or record.get("error")) and not step["keep_going"]:
            return None, f"stopped at command {idx + 1}: {step['text']}"
    return None, None


def main(sock, home, settings):
    ClusterRunner(home, settings, sock).main()
