"""The cluster agent: a child of the supervisor that does all of this node's etcd work but jobs.

It holds the node's lease (node key, published opinions, leader key all hang on it), campaigns
for leadership, and, while it leads, combines the nodes' opinions (cluster.combine) and commits
statuses and jobs in transactions guarded by its own leader key. It tells the supervisor what it
sees (leader, nodes, the committed table) after every look at etcd. HTTP calls block here, never
in the supervisor loop: see docs/cluster.md for why a process and not a thread.
"""

import json
import logging
import math
import os
import select
import shlex
import signal
import time

from .. import actions, config as configmod, logsetup, wire
from ..commit import Transition
from ..home import Home
from ..inifile import ConfigError
from ..journal import initial_state
from ..names import UNKNOWN
from . import clusterid
from .etcd import Etcd, EtcdUnavailable, absent, created_at, delete, jput, put, value_is
from .keys import Keys, json_or_empty, split_live
from .node import identity, is_us
from .rules import combine, step_node
from .store import EtcdJournal, EtcdStore, EtcdTable, Refused

log = logging.getLogger("hadaemon.agent")
RESUME_BATCH = 30  # jobs per transaction when a resume fires many: 2 writes each, 128 at most


class NameTaken(Exception):
    """Another live daemon holds this node's name: joining would merge two nodes' votes."""


class Agent:
    def __init__(self, home, config, settings, sock):
        self.home, self.config, self.settings, self.sock = Home(home), config, settings, sock
        self.c = config.cluster
        self.me = self.c.node
        self.keys = Keys(self.c.prefix)
        self.etcd = Etcd(self.c.endpoints(), self.c.request_timeout)
        self.store = EtcdStore(self.etcd, self.keys)
        self.etable, self.journal = EtcdTable(self.store), EtcdJournal(self.store)
        self.parent = os.getppid()
        self.stopping = False
        self.lease = None
        self.valid_until = 0.0  # monotonic: the lease cannot have expired before this
        self.next_keepalive = 0.0
        self.leader_rev = None  # create revision of our leader key while we lead
        self.leader = None
        self.opinions, self.published = {}, None
        self.requests = []  # from the control socket, to hand to the leader through etcd
        self.request_no = 0
        self.table, self.sent_table = {}, None
        self.held, self.hold_logged = {}, {}  # host -> create revision of its hold key
        self.manual = {}  # host -> id of its open manual job: observations wait for it
        self.nodes, self.results, self.paused = {}, {}, None
        self.seq = None
        self.pruned = 0  # job ids up to this one are pruned from etcd
        self.error, self.unreachable_since = None, None
        self.not_joined = None  # why this node is not in the cluster (its name is taken)
        self.memory, self.saved = {}, 0.0  # what this node remembers of etcd (clusterid.py)

    # -- the loop -------------------------------------------------------------------------------

    def main(self):
        logsetup.configure_child(self.home, self.settings)
        signal.signal(signal.SIGTERM, self._terminate)
        self.sock.setblocking(False)  # a report the loop cannot take now is dropped, not waited on
        log.info("cluster agent for node %s: etcd %s, ttl %ds", self.me, self.c.etcd, self.c.ttl)
        problems = []
        self.memory = clusterid.load(self.home, self.c.name, problems)
        for p in problems:
            log.error("%s: read as nothing remembered", p)
        if self.memory.get("refused"):
            self.say_refusal()
        next_tick = 0.0
        while not self.stopping and os.getppid() == self.parent:
            wait = max(0.0, next_tick - time.monotonic())
            if select.select([self.sock], [], [], wait)[0] and not self.receive():
                break
            if time.monotonic() >= next_tick:
                self.tick()
                next_tick = time.monotonic() + self.c.poll
        if self.lease:
            # A clean stop hands leadership on at once instead of after ttl.
            self.etcd.revoke(self.lease)
        log.info("cluster agent stopped")

    def _terminate(self, signum, frame):
        self.stopping = True

    def receive(self):
        try:
            data = self.sock.recv(1 << 20)
        except (InterruptedError, BlockingIOError):
            return True
        except OSError:
            return False
        if not data:
            return False
        try:
            message = wire.decode(data)
        except ValueError as e:
            log.error("garbled message from the supervisor dropped: %s", e)
            return True
        if isinstance(message, wire.Opinions):
            self.opinions = message.statuses
            if message.mirror is not None and self.sent_table is None:
                # The supervisor's mirror of the committed table: what this node reports as
                # the table it knows if it refuses etcd before it could read the table there.
                self.table = self.sent_table = message.mirror
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
        return True

    def tick(self):
        now = time.monotonic()
        try:
            if self.memory.get("refused"):
                self.refusing(now)
                self.report()
                return
            self.ensure_lease(now)
            self.publish()
            (live, table), seen = clusterid.look(self.etcd, self.keys, self.keys.table)
            if not self.trust(seen):
                self.report()
                return
            table, broken = self.etable.parse(table)
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
        self.table = dict(table)
        for b in broken:
            log.error("table entry in etcd unreadable, ignored: %s", b)
        nodes, opinions, leader, paused, handover, requests, open_ids = split_live(self.keys, live)
        self.held = {k[len(self.keys.hold):]: rev for k, (_, _, rev) in live.items()
                     if k.startswith(self.keys.hold)}
        self.nodes, self.results, self.paused = nodes, opinions, paused
        try:
            self.leadership(leader, handover)
            if self.leading():
                self.lead(opinions, requests, open_ids)
                self.prune(open_ids)
        except EtcdUnavailable as e:
            self.unreachable(e, now)
        self.report()

    def unreachable(self, e, now):
        if self.unreachable_since is None:
            self.unreachable_since = now
            self.save()  # the highest revision seen, before etcd comes back from a snapshot
            log.warning("etcd unreachable: %s; nothing is committed or started until it is back",
                        e)
        self.error = str(e)
        if self.leader == self.me and not self.leading():
            log.error("leader lease of %s cannot be renewed and may expire within %.1fs: "
                      "committing nothing more", self.me, self.c.fence_margin)
            self.leader = None

    # -- is it our etcd? ---------------------------------------------------------------------

    def trust(self, seen):
        """Whether etcd holds this cluster (clusterid.verdict); remembers what it saw. False
        (nothing more done this tick) when it refuses, or when it just failed to initialise."""
        what, reason = clusterid.verdict(self.memory, seen, self.me)
        if what == "refuse":
            self.refuse(reason, seen)
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
                     "revision %d)", self.c.name, marker["id"], seen["etcd_cluster"], revision)
        if what in ("init", "adopt"):
            if what == "adopt":
                log.info("etcd holds cluster %s: marker %s generation %d", self.c.name,
                         seen["marker"]["id"], seen["marker"]["generation"])
            self.memory = clusterid.adopted(self.c.name, seen, self.memory)
            self.save()
        elif clusterid.noted(self.memory, seen) or time.monotonic() >= self.saved + \
                clusterid.SAVE_EVERY:
            self.save()
        return True

    def refuse(self, reason, seen):
        """Stop acting on etcd: the leader key, node key and opinions go with the lease; the
        refusal is remembered, so a restart does not forget it."""
        self.memory = clusterid.refused(self.c.name, self.memory, reason, seen)
        self.save()
        self.say_refusal()
        if self.lease:
            self.etcd.revoke(self.lease)
        self.lease, self.leader, self.leader_rev = None, None, None
        if self.requests:
            log.warning("dropped %d operator request(s) not yet handed on", len(self.requests))
            self.requests = []

    def say_refusal(self):
        log.error("etcd does not hold this cluster's data: %s. Node %s commits nothing and runs "
                  "no job until an operator runs `hadaemon cluster-init` (docs/cluster.md)",
                  self.memory["refused"], self.me)

    def refusing(self, now):
        """A look at etcd while refusing: released by a re-initialisation; meanwhile this node's
        refusal, with what it knows, stays in live/refusal/NODE for `hadaemon cluster-init`."""
        self.ensure_lease(now, join=False)
        (live,), seen = clusterid.look(self.etcd, self.keys)
        if clusterid.verdict(self.memory, seen, self.me)[0] == "adopt":
            log.warning("cluster %s re-initialised (marker %s generation %d): node %s acts "
                        "again", self.c.name, seen["marker"]["id"], seen["marker"]["generation"],
                        self.me)
            self.memory = clusterid.adopted(self.c.name, seen, self.memory)
            self.save()
            self.etcd.revoke(self.lease)  # the refusal goes; the next look joins afresh
            self.lease = None
            return
        self.error, self.unreachable_since = None, None
        value = json.dumps(clusterid.report(self.me, self.memory, self.table, self.paused),
                           sort_keys=True)
        key = self.keys.refusal(self.me)
        if live.get(key, (b"",))[0].decode() != value:
            self.etcd.txn([], [put(key, value, self.lease)])

    def save(self):
        if self.memory:
            try:
                clusterid.save(self.home, self.memory)
            except OSError as e:
                log.error("cannot write %s: %s", clusterid.path(self.home), e)
            self.saved = time.monotonic()

    # -- lease and publication ------------------------------------------------------------------

    def ensure_lease(self, now, join=True):
        if self.lease is None:
            t0 = time.monotonic()
            lease = self.etcd.grant(self.c.ttl)
            if join:
                self.join(lease)
            self.lease, self.valid_until = lease, t0 + self.c.ttl
            self.published = None
            self.next_keepalive = t0 + self.keepalive_every()
            if join:
                log.info("node %s joined with lease %x", self.me, lease)
        elif now >= self.next_keepalive:
            t0 = time.monotonic()
            ttl = self.etcd.keepalive(self.lease)
            if ttl <= 0:
                log.error("lease %x of node %s expired (etcd unreachable for too long?): "
                          "joining again", self.lease, self.me)
                self.lease, self.leader_rev = None, None
                if self.leader == self.me:
                    self.leader = None
                return self.ensure_lease(now, join)
            self.valid_until = t0 + ttl
            self.next_keepalive = t0 + self.keepalive_every()

    def keepalive_every(self):
        """A tenth of ttl: an outage of etcd shorter than ttl minus this (and one request's
        timeout) never lets the lease expire."""
        return max(self.c.poll, self.c.ttl / 10.0)

    def join(self, lease):
        """Write our node key on `lease` unless another daemon holds the name (a node killed
        with -9 holds it until its lease expires); raise NameTaken then."""
        key = self.keys.node(self.me)
        value = dict(identity(), started=time.time())
        if self.etcd.txn([absent(key)], [jput(key, value, lease)]):
            return
        raw = self.etcd.get(key)
        held = json_or_empty(raw)
        if raw is not None and is_us(held) and self.etcd.txn(
                [value_is(key, raw)], [jput(key, value, lease)]):
            return  # our own agent before this one (it was restarted)
        self.etcd.revoke(lease)
        raise NameTaken(f"node name {self.me!r} is held by pid {held.get('pid')} on "
                        f"{held.get('host')}: not joining until it is free (node = in "
                        "[cluster] must be unique)")

    def publish(self):
        if self.opinions != self.published:
            self.etcd.txn([], [jput(self.keys.result(self.me), self.opinions, self.lease)])
            self.published = dict(self.opinions)
        while self.requests:
            self.request_no += 1
            # Zero-padded: the leader serves requests in key order, and 10 must follow 9.
            key = f"{self.keys.requests}{self.me}-{os.getpid()}-{self.request_no:09d}"
            self.etcd.txn([], [jput(key, self.requests[0], self.lease)])
            self.requests.pop(0)

    def lease_left(self):
        return self.valid_until - time.monotonic() if self.lease else None

    # -- leadership -----------------------------------------------------------------------------

    def leading(self):
        """Leader, and sure the lease outlives the next write by the fencing margin."""
        return (self.leader == self.me and self.leader_rev is not None
                and self.valid_until - time.monotonic() > self.c.fence_margin)

    def leadership(self, leader, handover):
        name, lease, rev = leader or (None, 0, 0)
        if name == self.me and lease == self.lease:
            if self.leader != self.me:
                log.info("leading again (leader key %d still ours)", rev)
                # A commit whose answer was lost may have landed: count from etcd's seq.
                _, self.seq = self.journal.last_id()
            self.leader, self.leader_rev = name, rev
            return
        if self.leader == self.me:
            log.warning("node %s is no longer the leader (leader now: %s)", self.me, name)
        self.leader, self.leader_rev = name, None
        if name is None and self.may_campaign(handover):
            self.campaign()

    def may_campaign(self, handover):
        if not handover:
            return True
        to, frm = handover.get("to"), handover.get("from")
        if to and to in self.nodes:
            return to == self.me
        return frm != self.me

    def campaign(self):
        """Create the leader key if absent; a fence job, if any, goes in the same transaction so
        that no runner can see this node lead before the fence is queued."""
        previous = self.etcd.get(self.keys.last_leader)
        previous = previous.decode() if previous else None
        seq, self.seq = self.journal.last_id()
        fence = self.c.fence and previous and previous != self.me and previous not in self.nodes
        try:
            with self.store.transaction([absent(self.keys.leader), value_is(self.keys.seq, seq)
                                         if seq is not None else absent(self.keys.seq)]):
                self.store.write(put(self.keys.leader, self.me, self.lease),
                                 put(self.keys.last_leader, self.me))
                if fence:
                    self.journal.enqueue(self.fence_job(previous))
        except Refused:
            return
        self.leader, self.leader_rev = self.me, int(self.store.answer["header"]["revision"])
        log.warning("node %s is the leader now (previous: %s)", self.me, previous or "none")
        if fence:
            self.seq += 1
            log.warning("fencing the previous leader %s before any sequence: job #%d",
                        previous, self.seq)
        self.etcd.txn(self.guard(), [delete(self.keys.handover)])

    def guard(self):
        """Holds only while our leader key is the one we created: a deposed leader writes nothing."""
        return [value_is(self.keys.leader, self.me), created_at(self.keys.leader, self.leader_rev)]

    # -- what the leader does -------------------------------------------------------------------

    def lead(self, opinions, requests, open_ids):
        # A manual status stands while its sequence runs: its actions are what make the checks
        # agree, as in single-node mode. Open jobs are few; most ticks read none.
        # Bounded as in single-node mode: by the sum of the job's timeouts (a job that waits for
        # the end of a pause, or for a runner, does not hold its host for ever).
        now = time.time()
        self.manual = {job["host"]: job["id"] for _, job in self.journal.open_jobs(open_ids)
                       if job.get("manual") and not self.paused
                       and now < job["created"] + sum(s["timeout"] for s in job["plan"]) + 1
                       } if open_ids else {}
        for key, request in sorted(requests.items()):
            done = self.serve(request)
            if done:  # else deposed half-way: the request stays for the next leader
                self.etcd.txn([], [delete(key)])
            if not done or not self.leading():
                return
        hosts = sorted({h for o in opinions.values() for h in o})
        for host in hosts:
            target = combine(opinions, host)
            current = self.table.get(host, {}).get("status", UNKNOWN)
            if target is None or target == current:
                continue
            hold = self.hold(host, current, target)
            if hold:
                if self.hold_logged.get(host) != hold[0]:  # said once per hold
                    log.info("%s", hold[1])
                    self.hold_logged[host] = hold[0]
                continue
            if not self.commit(host, current, target) or not self.leading():
                return

    def hold(self, host, current, target):
        """(what holds host, why) if a commit of it must wait, else None."""
        if host in self.manual:
            return ("manual", self.manual[host]), (
                f"{host} stays {current}, not {target}, while the sequence of its manual "
                f"transition (job #{self.manual[host]}) runs")
        if host in self.held:
            return self.held[host], (
                f"hold-down: {host} stays {current} for now, not {target} (its last transition "
                f"was under hold_down = {self.hold_down():g}s ago)")
        return None

    def hold_down(self):
        return max([c.hold_down for c in self.config.checks] + [self.config.daemon.hold_down])

    def serve(self, request):
        """Carry out one operator request; False if this node was deposed before it could."""
        cmd = request.get("cmd")
        log.info("request from %s: %s", request.get("node"), request)
        if cmd == "pause" and not self.paused:
            record = {"since": time.time(), "by": request.get("node"),
                      "statuses": {h: e["status"] for h, e in self.table.items()}}
            if not self.etcd.txn(self.guard(), [jput(self.keys.paused, record)]):
                return False
            self.paused = record  # commits later in this tick are skipped, not queued
        elif cmd == "resume" and self.paused:
            before = self.paused.get("statuses", {})
            changed = [(host, before.get(host, UNKNOWN), e["status"])
                       for host, e in sorted(self.table.items())
                       if before.get(host, UNKNOWN) != e["status"]]
            if self.config.daemon.on_resume != "last":
                changed = []
            # The pause ends in the transaction that queues the last of what it held back.
            # Batches keep each transaction under etcd's --max-txn-ops (128); each one that is
            # not the last marks its hosts as fired in the pause record, so a resume served
            # again after a failure fires none of them twice.
            batches = [changed[i:i + RESUME_BATCH]
                       for i in range(0, len(changed), RESUME_BATCH)] or [[]]
            record = self.paused
            for n, batch in enumerate(batches):
                last = n == len(batches) - 1
                record = dict(record, statuses=dict(record.get("statuses", {}),
                                                    **{h: b for h, _, b in batch}))
                if not self.commit_all(
                        [dict(host=h, source=a, target=b, note="fired on resume",
                              write_table=False, run=True) for h, a, b in batch],
                        also=[delete(self.keys.paused) if last
                              else jput(self.keys.paused, record)], unpause=last):
                    return False
                if not last:
                    self.paused = record
        elif cmd == "transition":
            host, status = request["host"], request["status"]
            current = self.table.get(host, {}).get("status", UNKNOWN)
            if current == status:
                log.info("transition %s -> %s: it is %s already", host, status, current)
                return True
            return self.commit(host, current, status, manual=True)
        elif cmd == "handover":
            to = request.get("to") or ""
            if to and (to not in self.nodes or to == self.me):
                log.error("handover to %s refused: not a live node other than the leader", to)
                return True
            block = self.etcd.grant(self.c.ttl)
            if not self.etcd.txn(self.guard(), [
                    jput(self.keys.handover, {"from": self.me, "to": to}, block),
                    delete(self.keys.leader)]):
                return False
            log.warning("leader %s steps down for %s", self.me, to or "another node")
            self.leader, self.leader_rev = None, None
        return True

    def commit(self, host, source, target, manual=False, note=None, write_table=True):
        """One guarded transaction: the status, its job, the job counter. False if refused."""
        return self.commit_all([dict(host=host, source=source, target=target, manual=manual,
                                     note=note, write_table=write_table)])

    def commit_all(self, transitions, also=(), unpause=False):
        """Commit transitions (dicts of commit's arguments; run=True: queued even while paused)
        and the ops `also` in one guarded transaction; `unpause`: it ends the pause. False if
        refused: deposed, or the job count fell behind (it is read again)."""
        d = self.config.daemon
        table, jobs, entries, holds = dict(self.table), [], {}, {}
        for t in transitions:
            host, source, target = t["host"], t["source"], t["target"]
            manual = t.get("manual", False)
            snapshot = {h: e["status"] for h, e in table.items()}
            snapshot[host] = target
            transition = Transition(host, source, target, snapshot, manual)
            steps, env = actions.plan(self.config.sections, transition, d.action_timeout,
                                      d.on_failure)
            if t.get("run") and not steps:
                continue  # a net change on resume with no section: history has it (skipped)
            vals = actions.values(transition)
            for step in steps:
                step["node"] = step_node(step["section"], vals)
            state, note = initial_state(steps, bool(self.paused) and not t.get("run"),
                                        t.get("note"))
            jobs.append({"id": self.seq + 1 + len(jobs), "kind": "transition", "host": host,
                         "source": source, "target": target, "manual": manual,
                         "created": time.time(), "state": state, "plan": steps, "env": env,
                         "leader": self.me, "holder": "", "resumed": False, "note": note,
                         "finished": None if state == "queued" else time.time()})
            if t.get("write_table", True):
                entries[host] = table[host] = dict(table.get(host, {}), status=target,
                                                   since=time.time(), manual=manual)
                if self.hold_down() > 0:
                    # Hold-down runs on etcd's clock, not on the nodes' wall clocks: a key on
                    # a lease of hold_down seconds, which outlives a change of leader.
                    holds[host] = (self.etcd.grant(math.ceil(self.hold_down())),
                                   jobs[-1]["id"])
        try:
            with self.etable.transaction(self.guard()):
                for host, entry in entries.items():
                    self.etable.set(host, entry)
                self.journal.enqueue(*jobs)
                for host, (lease, job_id) in holds.items():
                    self.store.write(jput(self.keys.hold + host, {"job": job_id}, lease))
                self.store.write(*also)
        except Refused:
            what = ", ".join(f"{t['host']}: {t['source']} -> {t['target']}" for t in transitions)
            log.error("commit of %s refused by etcd: %s is no longer the leader, or its job "
                      "count fell behind", what or "the end of the pause", self.me)
            self.leader, self.leader_rev = None, None  # the next tick finds out which
            _, self.seq = self.journal.last_id()
            return False
        self.seq += len(jobs)
        self.table = table
        if unpause:
            self.paused = None
        revision = int(self.store.answer["header"]["revision"])
        for host in holds:
            self.held[host] = revision  # no automatic change of it later in this tick either
        for job in jobs:
            if job["manual"] and job["state"] == "queued":
                self.manual[job["host"]] = job["id"]
            log.info("transition %s: %s -> %s%s, job #%d with %d command(s)%s", job["host"],
                     job["source"], job["target"], " (manual)" if job["manual"] else "",
                     job["id"], len(job["plan"]),
                     " (paused: not run)" if job["state"] == "skipped" else "")
        return True

    def prune(self, open_ids):
        """Drop the records of old finished jobs: all below the oldest open job and the last
        `keep_jobs` ids."""
        floor = min([self.seq - self.c.keep_jobs + 1] + open_ids)
        if floor <= self.pruned + 1 or not self.leading():
            return
        try:
            with self.store.transaction(self.guard()):
                self.journal.forget_below(floor)
        except Refused:
            return
        self.pruned = floor - 1
        log.debug("job records below #%d pruned", floor)

    def fence_job(self, previous):
        """The fence command as the next job, for this node to run."""
        step = {"section": "fence", "text": self.c.fence, "where": "[cluster] fence",
                "keep_going": False, "timeout": self.config.daemon.action_timeout,
                "argv": shlex.split(self.c.fence) + [previous], "error": None, "node": self.me}
        return {"id": self.seq + 1, "kind": "fence", "host": previous, "source": "leader",
                "target": "fenced", "manual": False, "created": time.time(), "state": "queued",
                "plan": [step], "env": {"HA_FENCE_NODE": previous}, "leader": self.me,
                "holder": "", "resumed": False, "note": None, "finished": None}

    # -- telling the supervisor -----------------------------------------------------------------

    def report(self):
        now = time.monotonic()
        state = {"name": self.c.name, "node": self.me,
                 "leader": self.leader if self.error is None or self.leading() else None,
                 "lease_left": self.lease_left(), "nodes": self.nodes,
                 "results": self.results, "paused": bool(self.paused),
                 "stale": self.error is not None or self.not_joined is not None
                 or bool(self.memory.get("refused")),
                 "error": self.error, "not_joined": self.not_joined,
                 "refused": self.memory.get("refused"),
                 "unreachable_for": now - self.unreachable_since
                 if self.unreachable_since is not None else 0.0}
        table = None
        if self.error is None and not self.not_joined and not self.memory.get("refused") \
                and self.table != self.sent_table:
            table = self.table
            self.sent_table = dict(self.table)
        try:
            self.sock.send(wire.encode(wire.Report(state, table)))
        except (BlockingIOError, OSError):
            pass


def main(sock, home, config, settings):
    Agent(home, config, settings, sock).main()

