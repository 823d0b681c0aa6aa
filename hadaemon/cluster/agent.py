"""The cluster agent: a child of the supervisor that does all of this node's etcd work but jobs.

It holds the node's lease (node key, published opinions, leader key all hang on it), joins only
under a name no other live daemon holds, publishes this node's opinions and the operator's
requests, and acts on etcd only while etcd holds this cluster's data (clusterid.py). After every
look at etcd it hands what it read to its Leader (leader.py: election, and while this node leads
the commits) and tells the supervisor what it sees (leader, nodes, the committed table). HTTP
calls block here, never in the supervisor loop: see docs/cluster.md for why a process and not a
thread.
"""

import json
import logging
import os
import select
import signal
import time
from collections import deque

from .. import config as configmod, logsetup, wire
from ..home import Home
from ..inifile import ConfigError
from . import clusterid
from .etcd import (TXN_OPS, Etcd, EtcdUnavailable, absent, delete, delete_range, jput,
                   prefix_end, put, value_is)
from .keys import Keys, json_or_empty, split_live
from .leader import Leader, View
from .lease import Lease, keepalive_every
from .node import identity, is_us
from .parts import refusal_writes
from .store import EtcdStore, EtcdTable
from .sync import Ranges

log = logging.getLogger("hadaemon.agent")
BATCH = TXN_OPS  # opinions per transaction, with the stamp
AGENT_RELOADED = "reload: the cluster agent took the new config"  # tests wait for this line


class NameTaken(Exception):
    """Another live daemon holds this node's name: joining would merge two nodes' votes."""


def write_node_key(etcd, keys, me, lease):
    """Join: write node `me`'s key on `lease` (a Lease) unless another daemon holds the name (a
    node killed with -9 holds it until its lease expires); revoke the lease and raise NameTaken
    then. The node's opinions start empty in the same transaction (those of an agent before
    this one, on its lease, would vote on until it expires), with a new stamp."""
    key = keys.node(me)
    value = dict(identity(), started=time.time())
    ops = [jput(key, value, lease.id), put(keys.stamp(me), "0", lease.id),
           delete_range(keys.opinions(me), prefix_end(keys.opinions(me)))]
    if etcd.txn([absent(key)], ops):
        return
    raw = etcd.get(key)
    held = json_or_empty(raw)
    if raw is not None and is_us(held) and etcd.txn([value_is(key, raw)], ops):
        return  # our own agent before this one (it was restarted)
    lease.revoke()
    raise NameTaken(f"node name {me!r} is held by pid {held.get('pid')} on "
                    f"{held.get('host')}: not joining until it is free (node = in "
                    "[cluster] must be unique)")


def publication(keys, me, lease, opinions, hosts, batch=BATCH):
    """(hosts, ops) of each transaction that publishes this node's opinions of `hosts`
    (status, or deleted if it has none now), at most `batch` hosts each, each moving its
    stamp. Made one at a time, as they are sent: building 1000 of them to send a few (a tick
    sends what a keepalive interval allows) cost a second a tick at 100 000 hosts, long enough
    for the lease to expire, and a node joining again publishes everything again."""
    hosts = sorted(hosts)
    for i in range(0, len(hosts), batch):
        part = hosts[i:i + batch]
        ops = [put(keys.opinions(me) + h, opinions[h], lease) if h in opinions
               else delete(keys.opinions(me) + h) for h in part]
        yield part, ops + [put(keys.stamp(me), str(len(opinions)), lease)]


class Agent:
    def __init__(self, home, config, settings, sock):
        self.home, self.config, self.settings, self.sock = Home(home), config, settings, sock
        self.c = config.cluster
        self.me = self.c.node
        self.keys = Keys(self.c.prefix)
        self.etcd = Etcd(self.c.endpoints(), self.c.request_timeout, self.c.range_timeout)
        self.store = EtcdStore(self.etcd, self.keys)
        self.etable = EtcdTable(self.store)
        self.parent = os.getppid()
        self.stopping = False
        self.lease = Lease(self.etcd, self.c.ttl)  # the node's: node key, opinions, leader key
        self.next_keepalive = 0.0
        self.view = View()
        self.leadership = Leader(self.me, config, self.etcd, self.store, self.view,
                                 lambda: self.lease.id, self.lease.time_left)
        self.opinions = {}  # this node's
        self.unpublished = set()  # hosts whose opinion changed since it was last published
        self.ranges = Ranges(self.keys)  # the opinions and table as last read
        self.requests = []  # from the control socket, to hand to the leader through etcd
        self.request_no = 0
        self.outbox = deque()  # encoded reports the supervisor's socket could not take yet
        self.read = {}  # keys read by the last look, by range: for the report
        self.open_ids = None  # the open job ids of the last look: new ones wake the runner
        self.error, self.unreachable_since = None, None
        self.not_joined = None  # why this node is not in the cluster (its name is taken)
        self.trust = Trust(self.home, self.c.name, self.me, self.etcd, self.keys)

    # -- the loop -------------------------------------------------------------------------------

    def main(self):
        logsetup.configure_child(self.home, self.settings)
        signal.signal(signal.SIGTERM, self._terminate)
        self.sock.setblocking(False)  # a report the loop cannot take now is dropped, not waited on
        log.info("cluster agent for node %s: etcd %s, ttl %ds", self.me, self.c.etcd, self.c.ttl)
        self.trust.load()
        next_tick = 0.0
        while not self.stopping and os.getppid() == self.parent:
            wait = max(0.0, next_tick - time.monotonic())
            readable, writable, _ = select.select([self.sock], [self.sock] if self.outbox else [],
                                                  [], wait)
            if writable:
                self.flush()
            if readable and not self.receive():
                break
            if time.monotonic() >= next_tick:
                self.tick()
                next_tick = time.monotonic() + self.c.poll
        # A clean stop hands leadership on at once instead of after ttl.
        self.lease.revoke()
        log.info("cluster agent stopped")

    def _terminate(self, signum, frame):
        self.stopping = True

    def take_start(self, opinions, mirror):
        """Before the first look: this node's opinions, and the supervisor's mirror of the
        committed table, what this node reports as the table it knows if it refuses etcd
        before it could read the table there, and what the first read of etcd's table is
        compared with (a host it holds and etcd lacks is reported gone)."""
        self.take_opinions(opinions)
        self.view.table.update(mirror)
        self.ranges.table.known.update((h, json.dumps(e, sort_keys=True).encode())
                                       for h, e in mirror.items())

    def take_opinions(self, statuses):
        for host, status in statuses.items():
            if status is None:
                self.opinions.pop(host, None)
            else:
                self.opinions[host] = status
            self.unpublished.add(host)

    def receive(self):
        """Take one message from the supervisor; False when it is gone."""
        try:
            message = wire.receive(self.sock, log)
        except EOFError:
            return False
        if isinstance(message, wire.Opinions):
            self.take_opinions(message.statuses)
        elif isinstance(message, wire.Request):
            self.requests.append(message.request)
        elif isinstance(message, wire.Settings):  # after a reload, as every child gets them
            self.settings = message.values
            try:
                self.config = configmod.load(self.home)
            except ConfigError as e:
                # The supervisor took the files a moment ago; they changed again since.
                log.error("reload: the config changed again and is broken now, the cluster "
                          "agent keeps the one it had: %s", "; ".join(e.problems))
            else:
                log.info(AGENT_RELOADED)
        return True

    def tick(self):
        now = time.monotonic()
        try:
            if self.trust.refused:
                self.refusing(now)
                self.report()
                return
            self.ensure_lease(now)
            self.publish()
            live, seen = clusterid.look(self.etcd, self.keys)
            if not self.trusted(seen):
                self.report()
                return
            split = split_live(self.keys, live)
            if split.open_ids != self.open_ids and split.open_ids:
                self.wake_runner()  # a job opened since the last look (another leader's)
            self.open_ids = split.open_ids
            opinions, table = self.ranges.refresh(self.etcd, split.stamps, split.table_stamp,
                                                  split.paused_stamp)
            self.read = {"live": len(live), **self.ranges.read_by}
            table, broken = self.parse_table(table)
        except EtcdUnavailable as e:
            self.unreachable(e, now)
            self.report()
            return
        except NameTaken as e:
            if self.not_joined != str(e):
                log.error("%s", e)
            self.not_joined = str(e)
            self.report()
            return
        if self.not_joined:
            log.warning("node %s joined: its name is free again", self.me)
        self.not_joined = None
        if self.unreachable_since is not None:
            log.warning("etcd reachable again after %.1fs", now - self.unreachable_since)
        self.error, self.unreachable_since = None, None
        for b in broken:
            log.error("table entry in etcd unreadable, ignored: %s", b)
        look = self.view.read(self.keys, live, opinions, table, self.ranges.pause.known)
        seq = self.leadership.seq
        try:
            self.leadership.step(self.config, look)
        except EtcdUnavailable as e:
            self.unreachable(e, now)
        if self.leadership.seq not in (None, seq):
            self.wake_runner()  # this node leads and committed jobs: no need to wait a look
        self.report()

    def wake_runner(self):
        """A job opened: the runner, which waits for this while no job is open instead of
        reading etcd every poll itself (runner.ClusterGate.poll), looks now. Through the
        supervisor, ahead of the report of this look."""
        self.outbox.append(wire.encode(wire.Wake()))

    def parse_table(self, changes):
        """{host: entry or None} of {host: entry bytes or None}, and the entries unreadable."""
        entries, broken = {}, []
        for host, raw in changes.items():
            try:
                entries[host] = json.loads(raw) if raw is not None else None
            except ValueError as e:
                broken.append(f"{self.keys.table}{host}: {e}")
        return entries, broken

    def unreachable(self, e, now):
        if self.unreachable_since is None:
            self.unreachable_since = now
            self.trust.save()  # the highest revision seen, before etcd comes back from a snapshot
            log.warning("etcd unreachable: %s; nothing is committed or started until it is back",
                        e)
        self.error = str(e)
        self.leadership.unreachable()

    # -- is it our etcd? ---------------------------------------------------------------------

    def trusted(self, seen):
        """Whether etcd holds this cluster (Trust.check). False: nothing more this tick; on a
        refusal this node stops acting on etcd: the leader key, node key and opinions go with
        the lease."""
        if self.trust.check(seen):
            if self.trust.adopted:
                self.ranges.reset()  # etcd's revisions may have gone back: read all again
            return True
        if self.trust.refused:
            self.lease.revoke()
            self.leadership.step_aside(whoever=True)
            if self.requests:
                log.warning("dropped %d operator request(s) not yet handed on",
                            len(self.requests))
                self.requests = []
        return False

    def refusing(self, now):
        """A look at etcd while refusing: released by a re-initialisation; meanwhile this node's
        refusal, with what it knows, stays in live/refusal/NODE for `hadaemon cluster-init`."""
        self.ensure_lease(now, join=False)
        live, seen = clusterid.look(self.etcd, self.keys)
        if self.trust.readopt(seen):
            self.lease.revoke()  # the refusal goes; the next look joins afresh
            self.ranges.reset()
            return
        self.error, self.unreachable_since = None, None
        writes, header = refusal_writes(self.keys, self.me, clusterid.report(
            self.me, self.trust.memory, self.view.table, self.view.paused), self.lease.id)
        if live.get(self.keys.refusal(self.me), (b"",))[0].decode() != header:
            for ops in writes:  # the header last, once its parts are all in
                self.etcd.txn([], ops)

    # -- lease and publication ------------------------------------------------------------------

    def ensure_lease(self, now, join=True):
        if self.lease.id is None:
            t0 = time.monotonic()
            lease = self.lease.grant()
            if join:
                try:
                    write_node_key(self.etcd, self.keys, self.me, self.lease)
                except EtcdUnavailable:
                    self.lease.forget()  # not joined: the next look joins on a new lease
                    raise
            self.unpublished = set(self.opinions)  # the join emptied opinion/NODE/
            self.next_keepalive = t0 + self.keepalive_every()
            if join:
                log.info("node %s joined with lease %x", self.me, lease)
        elif now >= self.next_keepalive:
            t0 = time.monotonic()
            lease = self.lease.id
            if not self.lease.renew():
                log.error("lease %x of node %s expired (etcd unreachable for too long?): "
                          "joining again", lease, self.me)
                self.leadership.step_aside()
                return self.ensure_lease(now, join)
            self.next_keepalive = t0 + self.keepalive_every()

    def keepalive_every(self):
        return keepalive_every(self.c.ttl, self.c.poll)

    def publish(self):
        """What changed in this node's opinions, a batch per transaction; a batch whose
        answer was lost is written again (the same keys, the same values). For a keepalive
        interval at most: the lease is renewed first, the rest goes on the next ticks (a first
        publication of 100 000 hosts is 1000 transactions)."""
        until = time.monotonic() + self.keepalive_every()
        for hosts, ops in publication(self.keys, self.me, self.lease.id, self.opinions,
                                      self.unpublished):
            self.etcd.txn([], ops)
            self.unpublished.difference_update(hosts)
            if time.monotonic() >= until:
                break
        while self.requests:
            self.request_no += 1
            # Zero-padded: the leader serves requests in key order, and 10 must follow 9.
            key = f"{self.keys.requests}{self.me}-{os.getpid()}-{self.request_no:09d}"
            self.etcd.txn([], [jput(key, self.requests[0], self.lease.id)])
            self.requests.pop(0)

    def lease_left(self):
        """For the report: None without a lease."""
        return self.lease.time_left() if self.lease.id is not None else None

    # -- telling the supervisor -----------------------------------------------------------------

    def report(self):
        """What this node sees, to the supervisor: the state, and the table entries and votes
        that changed since the last report, in datagrams of bounded size (wire.split); what
        the supervisor's socket cannot take now waits in the outbox, in order."""
        now = time.monotonic()
        view, refused = self.view, self.trust.refused
        state = {"name": self.c.name, "node": self.me,
                 "leader": self.leadership.node
                 if self.error is None or self.leadership.leading() else None,
                 "lease_left": self.lease_left(), "nodes": view.nodes,
                 "paused": bool(view.paused), "read": self.read,
                 "stale": self.error is not None or self.not_joined is not None or bool(refused),
                 "error": self.error, "not_joined": self.not_joined, "refused": refused,
                 "unreachable_for": now - self.unreachable_since
                 if self.unreachable_since is not None else 0.0}
        table = None
        if self.error is None and not self.not_joined and not refused and view.table_news:
            table = {h: view.table.get(h) for h in view.table_news}
            view.table_news = set()
        votes = {h: view.votes(h) for h in view.vote_news}
        view.vote_news = set()
        answers = {i: a for i, a in view.answers.items() if a.get("node") == self.me}
        if self.outbox and not table and not votes:
            # Only the state is new: it replaces a pending one instead of queueing behind it.
            last = wire.decode(self.outbox[-1])
            if isinstance(last, wire.Report) and not last.table and not last.votes:
                self.outbox.pop()
        self.outbox += [wire.encode(m) for m in wire.split(
            wire.Report(state, table, answers or None, votes), "table", "votes")]
        self.flush()

    def flush(self):
        wire.flush(self.sock, self.outbox)  # the supervisor gone: the loop ends


class Trust:
    """Whether etcd holds this cluster's data, and what this node remembers of it (clusterid.py)
    in var/cluster.json: written when a look changes what it must remember (job ids: at once),
    else every clusterid.SAVE_EVERY seconds. A refusal is remembered, so a restart keeps it."""

    def __init__(self, home, name, me, etcd, keys):
        self.home, self.name, self.me, self.etcd, self.keys = home, name, me, etcd, keys
        self.memory, self.saved = {}, 0.0
        self.adopted = False  # the last check took in a marker anew (init or adopt)

    @property
    def refused(self):
        return self.memory.get("refused")

    def load(self):
        problems = []
        self.memory = clusterid.load(self.home, self.name, problems)
        for p in problems:
            log.error("%s: read as nothing remembered", p)
        if self.refused:
            self.say_refusal()

    def check(self, seen):
        """Whether etcd holds this cluster (clusterid.verdict); remembers what it saw. False
        when it refuses, or when it just failed to initialise."""
        what, reason = clusterid.verdict(self.memory, seen, self.me)
        self.adopted = what in ("init", "adopt")
        if what == "refuse":
            self.memory = clusterid.refused(self.name, self.memory, reason, seen)
            self.save()
            self.say_refusal()
            return False
        if what == "init":
            marker = clusterid.new_marker(self.me, seen)
            ok, answer = self.etcd.txn_full([absent(self.keys.marker)],
                                            [jput(self.keys.marker, marker)])
            if not ok:
                return False  # another node was first: adopted on the next look
            revision = int(answer["header"]["revision"])
            seen = dict(seen, marker=marker, marker_rev=revision, revision=revision)
            log.info("cluster %s initialised: marker %s written to etcd (cluster id %s, "
                     "revision %d)", self.name, marker["id"], seen["etcd_cluster"], revision)
        if what in ("init", "adopt"):
            if what == "adopt":
                log.info("etcd holds cluster %s: marker %s generation %d", self.name,
                         seen["marker"]["id"], seen["marker"]["generation"])
            self.memory = clusterid.adopted(self.name, seen, self.memory)
            self.save()
        elif clusterid.noted(self.memory, seen) or time.monotonic() >= self.saved + \
                clusterid.SAVE_EVERY:
            self.save()
        return True

    def readopt(self, seen):
        """While refusing: True if the cluster was re-initialised since (it is adopted)."""
        if clusterid.verdict(self.memory, seen, self.me)[0] != "adopt":
            return False
        log.warning("cluster %s re-initialised (marker %s generation %d): node %s acts again",
                    self.name, seen["marker"]["id"], seen["marker"]["generation"], self.me)
        self.memory = clusterid.adopted(self.name, seen, self.memory)
        self.save()
        return True

    def say_refusal(self):
        log.error("etcd does not hold this cluster's data: %s. Node %s commits nothing and runs "
                  "no job until an operator runs `hadaemon cluster-init` (docs/cluster.md)",
                  self.refused, self.me)

    def save(self):
        if self.memory:
            try:
                clusterid.save(self.home, self.memory)
            except OSError as e:
                log.error("cannot write %s: %s", clusterid.path(self.home), e)
            self.saved = time.monotonic()


def main(sock, home, config, settings, opinions, mirror):
    agent = Agent(home, config, settings, sock)
    agent.take_start(opinions, mirror)
    agent.main()
