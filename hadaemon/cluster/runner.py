"""Cluster mode's gate for the runner loop (runner.py): jobs live in etcd, each run exactly once.

The store half is cluster/store.py (EtcdJournal): a job is claimed with a key created only if
absent and bound to this runner's lease; every step record is written (guarded by the claim)
before its command starts and completed after it ends. This gate answers the loop's question
before each command: the node its section names runs it (the leader if that node is gone), so a
job is handed on when its next command is another node's; and the runner's lease, as last
renewed, must outlive the fencing margin, else the command is held back (the job stays claimed)
until the lease is renewed. A thread renews the lease, so a long command does not let the claim
expire. When a claim vanishes (its node died or was cut off, and its lease expired) the job's
next runner resumes it from the first unfinished command with HA_RESUMED=1, or records it as
superseded if the host moved on.
"""

import logging
import os
import threading
import time

from . import clusterid
from ..job import Verdict
from .etcd import Etcd, EtcdUnavailable
from .keys import Keys, split_live
from .lease import Lease, keepalive_every
from .node import is_us
from .store import EtcdJournal, EtcdStore

log = logging.getLogger("hadaemon.runner")


class ClusterGate:
    def __init__(self, runner):
        self.runner, self.settings, self.home = runner, runner.settings, runner.home
        c = self.settings["cluster"]
        self.me, self.margin, self.look_every = c["node"], c["fence_margin"], c["poll"]
        self.name, self.keys = c["name"], Keys(f"/{c['name']}/")
        self.endpoints, self.timeout = c["endpoints"], c["request_timeout"]
        self.etcd = Etcd(self.endpoints, self.timeout, c.get("range_timeout"))
        self.lease = Lease(self.etcd, c["ttl"])
        self.env = {"HA_NODE": self.me}
        self.pass_fds = ()
        self.held_back = None  # id of the job whose next command waits for the lease
        self.distrust = None  # why no job runs: etcd's data is not this cluster's (clusterid.py)
        self.seen = (None, 0)  # (marker generation, highest revision seen under it)
        self.live = None  # the last look(): split_live of live/
        threading.Thread(target=self.keepalive_loop, daemon=True).start()

    # -- what the store asks while it picks a job -------------------------------------------------

    def holder(self):
        """This runner's claim value (a lease is granted first if there is none)."""
        return f"{self.me}/{os.getpid()}/{self.lease.ensure():x}"

    def open_ids(self):
        """The open job ids when this node may run jobs at all, else []."""
        self.lease.ensure()
        live = self.look()
        if not self.joined(live):
            return []  # not joined (yet, or the name is another daemon's): the agent says why
        return live.open_ids

    def joined(self, live):
        """Whether a look (split_live of live/, None if it failed) holds this node's key, as
        this daemon's."""
        return live is not None and is_us(live.nodes.get(self.me))

    @property
    def poll(self):
        """Seconds the loop waits for the supervisor before it looks again. While no job is
        open, the agent's look wakes it when one opens (agent.wake_runner), so it looks only
        every quarter of ttl, in case a wake-up was lost; otherwise every poll, as a job may
        become this node's by time alone (a dead runner's claim expiring, the lease renewed)."""
        live = self.live  # the last look: joined, and no job open, is idle
        if self.joined(live) and not live.open_ids and self.held_back is None:
            return max(self.look_every, self.lease.ttl / 4.0)
        return self.look_every

    def may_begin(self, job, records):
        """Maintenance: nothing new starts; a fence job, or a begun sequence, finishes."""
        paused = self.live.paused if self.live else None
        return not paused or job.kind == "fence" or bool(job.holder) or bool(records)

    def ours(self, job, idx):
        return self.owner(job, idx, self.live.nodes, self.leader()) == self.me

    # -- the loop's questions ----------------------------------------------------------------------

    def check(self, job, idx):
        live = self.look()
        if live is None:
            return Verdict.HOLD  # still claimed: it goes on once etcd is recognised again
        if not self.ours(job, idx) or not self.joined(live):
            return Verdict.HAND_ON  # the next command is another node's
        if self.lease.time_left() < self.margin:
            self.renew(self.etcd)  # etcd may be back before the keepalive thread has seen it
        if self.lease.time_left() < self.margin:
            return self.hold_back(job, job.plan[idx], "")
        self.held_back = None
        return Verdict.GO

    def confirm(self, job, idx):
        """The start is recorded. If that write took long enough (etcd slow or failing over)
        to eat the margin, the command is not started after all; whoever runs it next (this
        runner once renewed, or another) runs it, with HA_RESUMED=1 if it is another."""
        if self.lease.time_left() < self.margin:
            return self.hold_back(job, job.plan[idx], " after recording its start")
        return Verdict.GO

    def program(self, step):
        """What this node's config resolved the name to at load or reload: the step may have
        been planned on another node, whose home is elsewhere."""
        word = step.argv[0]
        if word not in self.settings["programs"]:
            raise LookupError(f"{word!r} is not a program of {self.me}'s config as loaded "
                              f"(each node runs what its own actions.conf resolved)")
        return self.settings["programs"][word]

    def close(self):
        try:
            self.lease.revoke()
        except EtcdUnavailable:
            pass  # the claims go when the lease expires

    # -- helpers ------------------------------------------------------------------------------

    def leader(self):
        return self.live.leader[0] if self.live.leader else None

    def owner(self, job, idx, nodes, leader):
        """The node that runs step idx: the one its section names if alive, else the leader."""
        if idx is None:
            return leader
        node = job.plan[idx].node or leader
        return node if node in nodes else leader

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
            self.live = None
            return None
        if self.distrust:
            log.warning("etcd holds this cluster again: jobs go on")
        self.distrust = None
        self.seen = (self.seen[0], max(self.seen[1], seen["revision"]))
        self.live = split_live(self.keys, live)
        return self.live

    def hold_back(self, job, step, when):
        """Not starting step: the lease's time left is under the fencing margin. Said once per
        job held back; the job stays claimed, and its command starts once the lease is renewed."""
        if self.held_back != job.id:
            log.error("job #%d: not starting %r%s: lease time left %.1fs is under the fencing "
                      "margin %.1fs (etcd unreachable or slow?); it starts once the lease is "
                      "renewed, or whoever holds the job next resumes it", job.id, step.text,
                      when, self.lease.time_left(), self.margin)
        self.held_back = job.id
        return Verdict.HOLD

    def renew(self, etcd):
        lease = self.lease.id
        try:
            if lease is not None and not self.lease.renew(etcd):
                log.error("runner lease %x expired: its claims are gone", lease)
        except EtcdUnavailable:
            pass

    def keepalive_loop(self):
        """Renews in its own thread (with its own client), so a long command does not let the
        claim expire."""
        etcd = Etcd(self.endpoints, self.timeout)
        while True:
            try:
                self.renew(etcd)
            except Exception:  # a dead keepalive thread would let every claim expire silently
                log.exception("runner lease keepalive failed; trying again")
            time.sleep(keepalive_every(self.lease.ttl, self.look_every))


def open_cluster(runner):
    """(etcd's journal, ClusterGate) for the runner."""
    gate = ClusterGate(runner)
    return EtcdJournal(EtcdStore(gate.etcd, gate.keys), gate.me), gate
