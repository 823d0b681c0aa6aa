"""The leader's side of the agent: election, the leader's rule, operator requests, pruning.

Every node's agent has a Leader. When no node leads (or a handover names this node) it
campaigns: it creates the leader key on the node's lease. While this node leads, it combines the
nodes' opinions (rules.combine) and commits statuses and jobs in transactions guarded by its own
leader key (guard): a deposed leader writes nothing. It commits nothing once its lease may
expire within the fencing margin (leading). A host waits, not committed, while under hold-down
(a key on a lease of hold_down seconds: etcd's clock, which outlives a change of leader) or
while the sequence of its manual transition runs. Operator requests reach it through etcd and
are served in key order (Requests); a request is deleted only once served.
"""

import json
import logging
import math
import time
from collections import ChainMap, namedtuple
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..maintenance import manual_hold_until, net_changes, pause_record
from ..names import UNKNOWN, valid_host
from ..requests import refuse_forget
from .etcd import absent, created_at, delete, jput, put, value_is
from .jobs import fence_job, transition_job
from .keys import json_or_empty, split_live
from .parts import fired_writes, pause_end, pause_from, pause_writes
from .rules import combine
from .store import EtcdJournal, EtcdTable, Refused

log = logging.getLogger("hadaemon.agent")
# Transitions per transaction, the rule's commits and a resume's alike: up to 4 writes each,
# and etcd takes 128 at most (--max-txn-ops).
COMMIT_BATCH = 30
TXN_BYTES = 512 * 1024  # jobs per transaction at most (etcd takes requests of 1.5 MiB)
ANSWER_TTL = 60  # seconds the leader's answer to a request waits in etcd for its asker

# What a look at etcd shows the leader besides the View: the leader key (name, lease, create
# revision) or None, the handover record, the pending requests {key: request}, the open job
# ids, and the hosts under hold-down {host: create revision of its key}.
Look = namedtuple("Look", "leader_key handover requests open_ids held_down")


@dataclass
class View:
    """The cluster as this node last read it from etcd, and as its own commits changed it
    since: what the agent reports and the leader rules on."""
    table: dict = field(default_factory=dict)  # host -> committed entry
    nodes: dict = field(default_factory=dict)  # live node -> its identity
    opinions: dict = field(default_factory=dict)  # live node -> {host: status}
    paused: dict = None  # the pause record, None when not paused
    answers: dict = field(default_factory=dict)  # request id -> the leader's answer
    # Hosts whose table entry / opinions changed since the agent last reported them, and
    # those whose opinions or entry changed in etcd since the leader's rule last looked.
    table_news: set = field(default_factory=set)
    vote_news: set = field(default_factory=set)
    rule_news: set = field(default_factory=set)

    def read(self, keys, live, opinions, table, pause=None):
        """Take in a range of live/ and what changed in the opinions ({node: {host: status or
        None}}) and the table ({host: entry or None}) since the last look; pause: the pause's
        parts as read (Ranges.pause.known)."""
        split = split_live(keys, live)
        self.nodes, self.paused = split.nodes, pause_from(split.paused, pause or {})
        for node, diff in opinions.items():
            seen = self.opinions.setdefault(node, {})
            for host, status in diff.items():
                if status is None:
                    seen.pop(host, None)
                else:
                    seen[host] = status
            self.vote_news.update(diff)
        for node in [n for n in self.opinions if n not in split.stamps]:
            self.vote_news.update(self.opinions.pop(node))
        for node in split.stamps:
            self.opinions.setdefault(node, {})
        for host, entry in table.items():
            self.set_entry(host, entry)
        self.answers = {k[len(keys.answers):]: json_or_empty(v) for k, (v, *_) in live.items()
                        if k.startswith(keys.answers)}
        held_down = {k[len(keys.hold):]: rev for k, (_, _, rev, _) in live.items()
                     if k.startswith(keys.hold)}
        self.rule_news.update(table, *opinions.values())
        return Look(split.leader, split.handover, split.requests, split.open_ids, held_down)

    def set_entry(self, host, entry):
        """host's committed entry is now entry (None: it is out of the table)."""
        if entry is None:
            self.table.pop(host, None)
        else:
            self.table[host] = entry
        self.table_news.add(host)

    def votes(self, host):
        """{node: status} of the live nodes reporting host."""
        return {n: o[host] for n, o in self.opinions.items() if host in o}


def manual_jobs(open_jobs, paused, now):
    """{host: id} of the open manual jobs whose manual status stands (maintenance.py: while
    its sequence runs, bounded by its timeouts), as in single-node mode; none while paused."""
    if paused:
        return {}
    return {job["host"]: job["id"] for job in open_jobs if job.get("manual")
            and now < manual_hold_until(job["created"], job["plan"], 1)}


def forget_refusal(host, table, opinions, open_jobs):
    """Why the leader may not forget host, or None: the rule of single-node mode, with the
    live nodes' opinions (the latest results of their checks) for the checks' latest results."""
    if not valid_host(host):  # etcd holds what any client wrote
        return refuse_forget(host, False, None, None)
    nodes = sorted(n for n, o in opinions.items() if host in (o or {}))
    return refuse_forget(host, host in table, nodes and (
        f"node {', '.join(nodes)} (the latest results of its checks name it): take it out of "
        f"those checks first (a reload of that node withdraws its opinion)"),
        next((j["id"] for j in open_jobs if j.get("host") == host), None))


class Statuses(Mapping):
    """{host: status} of a table of entries, read through (not copied: a commit must not cost
    a walk of every host)."""

    def __init__(self, table):
        self.table = table

    def __getitem__(self, host):
        return self.table[host]["status"]

    def __iter__(self):
        return iter(self.table)

    def __len__(self):
        return len(self.table)


def to_look_at(opinions, todo, full):
    """The hosts the leader's rule looks at, in order: every host some node reports on a full
    pass (the first of a leadership), else those in todo (changed, or still waiting)."""
    return sorted({h for o in opinions.values() for h in o} if full else todo)


class Leader:
    """This node's part in the election, and the leader's work while it is this node."""

    def __init__(self, me, config, etcd, store, view, lease_id, lease_left):
        """lease_id(): this node's lease (None if it has none); lease_left(): seconds it is
        sure to last (negative or None without a lease)."""
        self.me, self.config, self.c = me, config, config.cluster
        self.etcd, self.store, self.keys = etcd, store, store.keys
        self.etable, self.journal = EtcdTable(store), EtcdJournal(store)
        self.view, self.lease_id, self.lease_left = view, lease_id, lease_left
        self.requests = Requests(self)
        self.node = None  # the node that leads, as last seen (None: none, or not known)
        self.key_rev = None  # create revision of our leader key while we lead
        self.seq = None  # the last job id, while we lead
        self.pruned = 0  # job ids up to this one are pruned from etcd
        self.held_down = {}  # host -> create revision of its hold-down key
        self.wait_logged = {}  # host -> what it waits for, as last logged
        self.manual = {}  # host -> id of its open manual job: observations wait for it
        # The leader's rule looks at the hosts whose opinions or entry changed (view.rule_news)
        # and at those still waiting (todo); at all of them once per leadership (ruled_as: the
        # leader key it did that for).
        self.todo, self.ruled_as = set(), None

    def step(self, config, look):
        """One look at etcd: follow who leads, campaign if free, lead if ours."""
        self.config = config
        self.held_down = dict(look.held_down)
        self.follow(look.leader_key, look.handover)
        if self.key_rev is None:  # not leading: a full pass if it leads again
            self.todo, self.ruled_as, self.view.rule_news = set(), None, set()
        if self.leading():
            self.lead(look.requests, look.open_ids)
            self.prune(look.open_ids)

    # -- election -------------------------------------------------------------------------------

    def leading(self):
        """Leader, and sure the lease outlives the next write by the fencing margin."""
        return (self.node == self.me and self.key_rev is not None
                and (self.lease_left() or 0.0) > self.c.fence_margin)

    def step_aside(self, whoever=False):
        """Our lease is gone or cannot be trusted: our leader key goes with it, if not already.
        whoever: forget who leads, too (this node stops looking at etcd)."""
        if self.node == self.me or whoever:
            self.node = None
        self.key_rev = None

    def unreachable(self):
        if self.node == self.me and not self.leading():
            log.error("leader lease of %s cannot be renewed and may expire within %.1fs: "
                      "committing nothing more", self.me, self.c.fence_margin)
            self.node = None

    def follow(self, leader, handover):
        """Take in who leads (the leader key, or None); campaign if none does and we may."""
        name, lease, rev = leader or (None, 0, 0)
        if name == self.me and lease == self.lease_id():
            if self.node != self.me:
                log.info("leading again (leader key %d still ours)", rev)
                # A commit whose answer was lost may have landed: count from etcd's seq.
                _, self.seq = self.journal.last_id()
            self.node, self.key_rev = name, rev
            return
        if self.node == self.me:
            log.warning("node %s is no longer the leader (leader now: %s)", self.me, name)
        self.node, self.key_rev = name, None
        if name is None and self.may_campaign(handover):
            self.campaign()

    def may_campaign(self, handover):
        if not handover:
            return True
        to, frm = handover.get("to"), handover.get("from")
        if to and to in self.view.nodes:
            return to == self.me
        return frm != self.me

    def campaign(self):
        """Create the leader key if absent; a fence job, if any, goes in the same transaction so
        that no runner can see this node lead before the fence is queued."""
        previous = self.etcd.get(self.keys.last_leader)
        previous = previous.decode() if previous else None
        seq, self.seq = self.journal.last_id()
        fence = self.c.fence and previous and previous != self.me \
            and previous not in self.view.nodes
        try:
            with self.store.transaction([absent(self.keys.leader), value_is(self.keys.seq, seq)
                                         if seq is not None else absent(self.keys.seq)]):
                self.store.write(put(self.keys.leader, self.me, self.lease_id()),
                                 put(self.keys.last_leader, self.me))
                if fence:
                    self.journal.enqueue(fence_job(self.c.fence, self.config.daemon.action_timeout,
                                                   self.seq + 1, previous, self.me))
        except Refused:
            return
        self.node, self.key_rev = self.me, int(self.store.answer["header"]["revision"])
        log.warning("node %s is the leader now (previous: %s)", self.me, previous or "none")
        if fence:
            self.seq += 1
            log.warning("fencing the previous leader %s before any sequence: job #%d",
                        previous, self.seq)
        self.etcd.txn(self.guard(), [delete(self.keys.handover)])

    def guard(self):
        """Holds only while our leader key is the one we created: a deposed leader writes
        nothing."""
        return [value_is(self.keys.leader, self.me), created_at(self.keys.leader, self.key_rev)]

    # -- the leader's rule ----------------------------------------------------------------------

    def lead(self, requests, open_ids):
        # Open jobs are few; most ticks read none.
        self.manual = manual_jobs([job for _, job in self.journal.open_jobs(open_ids)],
                                  self.view.paused, time.time()) if open_ids else {}
        for key, request in sorted(requests.items()):
            done = self.requests.serve(key, request)
            if done:  # else deposed half-way: the request stays for the next leader
                self.etcd.txn([], [delete(key)])
            if not done or not self.leading():
                return
        opinions = self.view.opinions
        hosts = to_look_at(opinions, self.todo | self.view.rule_news,
                           self.ruled_as != self.key_rev)
        self.todo, self.ruled_as, self.view.rule_news = set(), self.key_rev, set()
        batch = []  # up to COMMIT_BATCH hosts per transaction: the same jobs, in fewer writes
        for n, host in enumerate(hosts):
            target = combine(opinions, host)
            current = self.view.table.get(host, {}).get("status", UNKNOWN)
            if target is not None and target != current:
                wait = self.waits_for(host, current, target)
                if wait:
                    self.todo.add(host)  # looked at again each tick until it may go
                    if self.wait_logged.get(host) != wait[0]:  # said once per wait
                        log.info("%s", wait[1])
                        self.wait_logged[host] = wait[0]
                else:
                    batch.append(dict(host=host, source=current, target=target))
            if batch and (len(batch) == COMMIT_BATCH or n == len(hosts) - 1):
                if not self.commit_all(batch) or not self.leading():
                    self.todo.update(hosts[n + 1:])
                    return
                batch = []

    def waits_for(self, host, current, target):
        """(what host waits for, why) if a commit of it must wait, else None."""
        if host in self.manual:
            return ("manual", self.manual[host]), (
                f"{host} stays {current}, not {target}, while the sequence of its manual "
                f"transition (job #{self.manual[host]}) runs")
        if host in self.held_down:
            return self.held_down[host], (
                f"hold-down: {host} stays {current} for now, not {target} (its last transition "
                f"was under hold_down = {self.hold_down():g}s ago)")
        return None

    def hold_down(self):
        # Every node's checks: a [node:NAME] check of another node may set it for its hosts.
        return max([c.hold_down for c in self.config.checks + self.config.elsewhere]
                   + [self.config.daemon.hold_down])

    # -- commits --------------------------------------------------------------------------------

    def commit(self, host, source, target, manual=False):
        """One guarded transaction: the status, its job, the job counter. False if refused."""
        return self.commit_all([dict(host=host, source=source, target=target, manual=manual)])

    def commit_all(self, transitions, also=(), unpause=False):
        """Commit transitions (dicts: host, source, target, and optionally manual, note,
        write_table=False: history only, run=True: queued even while paused) and the ops `also`
        in one guarded transaction; `unpause`: it ends the pause. False if refused: deposed, or
        the job count fell behind (it is read again)."""
        entries, jobs, holds = {}, [], {}
        table = ChainMap(entries, self.view.table)  # the table as this transaction leaves it
        for t in transitions:
            host, manual = t["host"], t.get("manual", False)
            job = transition_job(
                self.config, self.seq + 1 + len(jobs), Statuses(table),
                host, t["source"], t["target"], self.me, manual,
                paused=bool(self.view.paused) and not t.get("run"), note=t.get("note"))
            if t.get("run") and not job["plan"]:
                continue  # a net change on resume with no section: history has it (skipped)
            jobs.append(job)
            if t.get("write_table", True):
                entries[host] = table[host] = dict(table.get(host, {}), status=t["target"],
                                                   since=time.time(), manual=manual)
        if len(transitions) > 1 and not also and not unpause and \
                sum(len(json.dumps(job)) for job in jobs) > TXN_BYTES:
            half = len(transitions) // 2  # more than etcd takes in one request: in two
            return self.commit_all(transitions[:half]) and self.commit_all(transitions[half:])
        for job in jobs:
            if job["host"] in entries and self.hold_down() > 0:
                # Hold-down runs on etcd's clock, not on the nodes' wall clocks: a key on a
                # lease of hold_down seconds, which outlives a change of leader.
                holds[job["host"]] = (self.etcd.grant(math.ceil(self.hold_down())), job["id"])
        try:
            with self.etable.transaction(self.guard()):
                for host, entry in entries.items():
                    self.etable.set(host, entry)
                if entries:
                    self.store.write(self.etable.stamp())
                self.journal.enqueue(*jobs)
                for host, (lease, job_id) in holds.items():
                    self.store.write(jput(self.keys.hold + host, {"job": job_id}, lease))
                self.store.write(*also)
        except Refused:
            what = ", ".join(f"{t['host']}: {t['source']} -> {t['target']}" for t in transitions)
            log.error("commit of %s refused by etcd: %s is no longer the leader, or its job "
                      "count fell behind", what or "the end of the pause", self.me)
            self.node, self.key_rev = None, None  # the next tick finds out which
            _, self.seq = self.journal.last_id()
            return False
        self.seq += len(jobs)
        for host, entry in entries.items():
            self.view.set_entry(host, entry)
        if unpause:
            self.view.paused = None
        revision = int(self.store.answer["header"]["revision"])
        for host in holds:
            self.held_down[host] = revision  # no automatic change of it later in this tick
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


class Requests:
    """The operator's requests (pause, resume, transition, handover, forget), served by the
    leader through its guarded writes. A request that wants an answer (forget: its CLI says
    what happened) gets it in live/answer/ID, on a lease of its own, written in the transaction
    that serves it and deletes it: served again by a next leader, it is not answered twice."""

    def __init__(self, leader):
        self.leader = leader

    def serve(self, key, request):
        """Carry out one request (stored under key); False if this node was deposed before it
        could."""
        cmd = request.get("cmd")
        log.info("request from %s: %s", request.get("node"), request)
        view = self.leader.view
        if cmd == "pause" and not view.paused:
            return self.pause(request.get("node"))
        if cmd == "resume" and view.paused:
            return self.resume()
        if cmd == "transition":
            host, status = request["host"], request["status"]
            current = view.table.get(host, {}).get("status", UNKNOWN)
            if current == status:
                log.info("transition %s -> %s: it is %s already", host, status, current)
                return True
            return self.leader.commit(host, current, status, manual=True)
        if cmd == "handover":
            return self.handover(key, request.get("to") or "")
        if cmd == "forget":
            return self.forget(key, request)
        return True

    def pause(self, by):
        leader = self.leader
        writes, record = pause_writes(leader.keys, pause_record(Statuses(leader.view.table),
                                                                time.time(), by=by))
        for ops in writes:  # the statuses in parts, the header in live/paused last
            if not leader.etcd.txn(leader.guard(), ops):
                return False
        leader.view.paused = record  # commits later in this tick are skipped, not queued
        return True

    def resume(self):
        leader = self.leader
        changed = net_changes(leader.view.paused, Statuses(leader.view.table),
                              leader.config.daemon.on_resume)
        # The pause ends in the transaction that queues the last of what it held back.
        # Batches keep each transaction under etcd's --max-txn-ops (128); each one that is
        # not the last marks its hosts as fired in the pause record, so a resume served
        # again after a failure fires none of them twice.
        batches = [changed[i:i + COMMIT_BATCH]
                   for i in range(0, len(changed), COMMIT_BATCH)] or [[]]
        record = leader.view.paused
        for n, batch in enumerate(batches):
            last = n == len(batches) - 1
            also, after = (pause_end(leader.keys), None) if last else \
                fired_writes(leader.keys, record, {h: b for h, _, b in batch})
            if not leader.commit_all(
                    [dict(host=h, source=a, target=b, note="fired on resume",
                          write_table=False, run=True) for h, a, b in batch],
                    also=also, unpause=last):
                return False
            if not last:
                leader.view.paused = record = after
        return True

    def handover(self, key, to):
        """Step down for `to` (or any other node). The request goes in the same transaction:
        deleted after it, the next leader could serve it again in between and step down too."""
        leader = self.leader
        if to and (to not in leader.view.nodes or to == leader.me):
            log.error("handover to %s refused: not a live node other than the leader", to)
            return True
        block = leader.etcd.grant(leader.c.ttl)
        if not leader.etcd.txn(leader.guard(), [
                jput(leader.keys.handover, {"from": leader.me, "to": to}, block),
                delete(leader.keys.leader), delete(key)]):
            return False
        log.warning("leader %s steps down for %s", leader.me, to or "another node")
        leader.node, leader.key_rev = None, None
        return True

    def forget(self, key, request):
        """Remove a host from the cluster's table if no live node reports it and no sequence of
        it is open (single-node mode's rule); answer the asker either way."""
        leader, host = self.leader, request.get("host")
        open_ids = sorted(int(k[len(leader.keys.open):])
                          for k in leader.etcd.range(leader.keys.open))
        refused = forget_refusal(host, leader.view.table, leader.view.opinions,
                                 [job for _, job in leader.journal.open_jobs(open_ids)])
        was = leader.view.table.get(host, {}).get("status", UNKNOWN)
        answer = {"ok": False, "error": refused} if refused else {"ok": True, "was": was}
        ops = [delete(key)]
        if isinstance(request.get("id"), str):
            ops.append(jput(leader.keys.answers + request["id"],
                            dict(answer, node=request.get("node"), leader=leader.me),
                            leader.etcd.grant(ANSWER_TTL)))
        if not refused:
            # Its hold-down too: a forgotten host reported again is a new host.
            ops += [delete(leader.keys.table + host), delete(leader.keys.hold + host),
                    leader.etable.stamp()]
        if not leader.etcd.txn(leader.guard(), ops):
            return False
        if refused:
            log.info("forget %s refused: %s", host, refused)
            return True
        leader.view.set_entry(host, None)
        leader.held_down.pop(host, None)
        log.warning("forgot host %s (was %s; no live node reports it): it is out of the "
                    "cluster's table and of every %%STATUS%% from now on", host, was)
        return True
