"""The cluster backend: the same loop, with etcd work handed to two children.

The loop still runs this node's checks through the same workers and commit rule, but a
transition of the local rule is only this node's opinion: it goes to the cluster agent
(agent.py), which publishes it; the leader's agent combines all opinions and commits. The agent
reports the committed table back and the loop mirrors it into the local table, so `status`
answers from it when etcd is unreachable. Jobs are run by the cluster runner (runner.py). No
SQLite journal and no var/paused here: jobs and the pause live in etcd.
"""

import logging
import secrets
import time

from .. import runner, wire
from ..children import Child
from ..commit import Committer
from ..fork import fork_with_socket
from ..hostlog import log_hosts
from ..names import UNKNOWN, valid_host
from ..requests import refuse_transition, unreported
from ..stream import Members
from . import agent

log = logging.getLogger("hadaemon")
FOR_THE_LEADER = ("pause", "resume", "transition", "handover", "forget")


class ClusterBackend:
    resume_upto = 0  # the cluster runner supersedes by etcd's table, not by a local journal

    def __init__(self, sup):
        self.sup = sup
        c = sup.config.cluster
        self.cluster = {"name": c.name, "node": c.node, "leader": None, "stale": True,
                        "error": "cluster agent starting", "nodes": {}}
        self.agent = Child("cluster agent", self._start_agent, "joins the cluster",
                           "this node publishes nothing", on_message=self._on_report,
                           on_exit=self._agent_gone)
        self.runner = Child("action runner", self._start_runner, "claims the cluster's jobs",
                            "jobs wait")
        self.children = (self.runner, self.agent)
        self.votes = {}  # host -> {live node: its status}, as the agent last read them
        self.unobserved = set()  # hosts of the table that no live node reports
        self.table_hosts = set()  # the hosts of the cluster's table, as last known
        self.settled = False  # the mirror was compared whole with the agent's first report
        self.changed = set()  # hosts changed by the parts of a report received so far
        self.answers = {}  # request id -> the leader's answer, while etcd holds it

    def setup(self, hosts):
        """This node's opinion starts blank: a mirror of the cluster's table is not an
        observation."""
        self.hosts = hosts
        self.committer = Committer({}, {})
        return self.committer

    # -- the two children -----------------------------------------------------------------------

    def _start_agent(self, settings):
        mirror = {h: {k: e.get(k) for k in ("status", "since", "manual")}
                  for h, e in self.hosts.entries.items() if e.get("status", UNKNOWN) != UNKNOWN}
        # A new agent knows nothing: all of this node's opinions, and the mirror it compares
        # etcd's table with (it reports what differs). Handed over in the fork: sent as
        # messages, some could arrive after its first look at etcd, and a host the cluster
        # forgot while this node was away would stay in the mirror for good.
        self.votes, self.settled, self.table_hosts = {}, False, set(mirror)
        self.changed = set()
        return fork_with_socket(agent.main, self.sup.home.root, self.sup.config, settings,
                                dict(self.committer.committed), mirror)

    def _start_runner(self, settings):
        return runner.spawn(self.sup.home.root, settings)  # as in single-node mode

    def _on_report(self, message):
        if isinstance(message, wire.Wake):  # the agent saw open jobs: the runner looks now
            self.runner.send(message)
            return
        if not isinstance(message, wire.Report):
            return
        self.cluster = message.cluster
        self.answers = message.answers or {}
        if message.table:
            self.hosts.mirror({h: e for h, e in message.table.items() if e is not None})
            for host, entry in message.table.items():
                (self.table_hosts.add if entry is not None else self.table_hosts.discard)(host)
        for host, votes in (message.votes or {}).items():
            if votes:
                self.votes[host] = votes
            else:
                self.votes.pop(host, None)
        self.changed.update(message.table or (), message.votes or ())
        if self.cluster.get("stale") or message.more:
            return
        if not self.settled:  # the first look at etcd since the agent started: every host
            self.settled = True
            self.changed.update(self.hosts.entries)
        changed, self.changed = self.changed, set()
        self._settle(changed)

    def _settle(self, hosts):
        """After a report: what the changes of `hosts` mean for the mirror (a host out of the
        cluster's table leaves it) and for the hosts no live node reports."""
        lost, back = [], []
        for host in sorted(hosts):
            if host in self.hosts.entries and host not in self.table_hosts:
                self._drop_forgotten(host)
            if host in self.hosts.entries and not self.votes.get(host):
                if host not in self.unobserved:
                    self.unobserved.add(host)
                    lost.append(host)
            elif host in self.unobserved:
                self.unobserved.discard(host)
                if host in self.hosts.entries:
                    back.append(host)
        by_status = {}  # committed status -> the hosts just unobserved, in host order
        for host in lost:
            by_status.setdefault(self.hosts.entries[host].get("status", UNKNOWN), []).append(host)
        for status, hosts in sorted(by_status.items()):
            log_hosts(logging.WARNING, hosts, "%s: unobserved: no live node reports it; it keeps "
                      "its committed status %s, unwatched", "%d hosts unobserved (%s): no live "
                      "node reports them; they keep their committed status %s, unwatched", status)
        log_hosts(logging.INFO, back, "%s: observed again", "%d hosts observed again (%s)")

    def _drop_forgotten(self, host):
        """The mirror holds the cluster's table and the hosts this node reports, nothing else:
        a host the leader forgot (while this node ran or not) leaves it; one this node reports
        but the table lacks is unknown until the leader commits it."""
        entry = self.hosts.entries[host]
        if host in self.committer.committed or self.sup.freshness.reporting(host):
            if entry.get("status", UNKNOWN) != UNKNOWN:
                self.hosts.mirror({host: {"status": UNKNOWN, "since": time.time(),
                                          "manual": False}})
            return
        self.hosts.drop(host)
        log.info("%s: not in the cluster's table (forgotten) and not reported here: out of "
                 "this node's mirror (was %s)", host, entry.get("status", UNKNOWN))

    def _agent_gone(self):
        self.cluster.update(stale=True, error="cluster agent restarting", leader=None)

    # -- this node's opinions -------------------------------------------------------------------

    def on_transition(self, transition, now, observed_mono):
        """A transition of the local rule is this node's new opinion, for the leader."""
        self.committer.apply(transition, now)
        log.info("node %s sees %s: %s -> %s", self.sup.config.cluster.node, transition.host,
                 transition.source, transition.target)
        self.agent.post([wire.Opinions({transition.host: transition.target})])

    def checks_removed(self, removed):
        """A reload removed every check of this node that reported a host (a [node:NAME]
        check moved to another node, say): this node's opinion of it is withdrawn, else its
        last word would vote on for ever against the nodes that do watch it."""
        reporters = {}
        for cid, hosts in self.sup.freshness.hosts.items():
            for host in hosts:
                reporters.setdefault(host, set()).add(cid)
        gone = sorted(h for h in self.committer.committed
                      if reporters.get(h) and reporters[h] <= removed)
        for host in gone:
            self.committer.forget(host)
            log.info("node %s no longer reports %s: its checks of it were removed by the "
                     "reload", self.sup.config.cluster.node, host)
        if gone:
            self.agent.post(wire.split(wire.Opinions(dict.fromkeys(gone)), "statuses"))

    def before_results(self):
        pass  # no manual hold here: the leader's rule holds a host (agent.py)

    def settle(self):
        pass  # jobs are pruned by the leader, in etcd

    # -- control --------------------------------------------------------------------------------

    def answer(self, request):
        cmd = request.get("cmd")
        if cmd == "outcome":
            return self.answers.get(request.get("id"), {"ok": True, "pending": True})
        if cmd not in FOR_THE_LEADER:
            return {"ok": False, "error": f"unknown command {cmd!r}"}
        refused = cmd == "transition" and refuse_transition(
            request.get("host"), request.get("status"), self.sup.config.daemon.known_statuses)
        if refused:
            return {"ok": False, "error": refused}
        if cmd == "transition" and request.get("new") is not True and not (
                self.sup.reporting(request["host"]) or self._in_opinions(request["host"])):
            return unreported(request["host"], request["status"], "no node's checks report")
        if cmd == "handover" and request.get("to") and not valid_host(request["to"]):
            return {"ok": False, "error": f"{request['to']!r} is not a node name"}
        if cmd == "forget" and not valid_host(request.get("host")):
            return {"ok": False, "error": f"invalid host: {request.get('host')!r}"}
        if self.cluster.get("refused"):
            return {"ok": False, "error": f"refused: etcd does not hold this cluster's data "
                    f"({self.cluster['refused']}); nothing is done until an operator runs "
                    f"`hadaemon cluster-init`"}
        forwarded = {k: request.get(k) for k in ("cmd", "host", "status", "to")}
        forwarded["node"] = self.sup.config.cluster.node
        if cmd == "forget":  # the leader answers it: the CLI asks for the outcome by this id
            forwarded["id"] = f"{forwarded['node']}-{secrets.token_hex(8)}"
        if not self.agent.send(wire.Request(forwarded)):
            return {"ok": False, "error": "cluster agent not running; try again"}
        return {"ok": True, "requested": cmd, "leader": self.cluster.get("leader"),
                "note": "handed to the leader through etcd", "pending": forwarded.get("id")}

    def _in_opinions(self, host):
        """Some node's checks reported host since that node started (as the agent last saw)."""
        return bool(self.votes.get(host))

    def paused(self):
        return False  # the cluster's pause is in etcd: status shows it under "cluster"

    def queue(self):
        return []  # jobs are in etcd: `history` reads them there

    def recent(self, limit):
        return []  # the same: the HTTP server reads them there (httpserver.Snapshots)

    def status(self, answer):
        """Its part of the status answer; returns the marks of hosts no live node reports."""
        c = dict(self.cluster)
        if c.get("lease_left") is not None and c.get("stale"):
            c["lease_left"] = max(0.0, c["lease_left"])
        c["unobserved"] = sorted(self.unobserved) if not c.get("stale") else []
        # Each live node's opinions, a host at a time as the answer is sent (stream.py).
        c["results"] = {node: Members(self.votes, lambda h, n=node: self.votes.get(h, {}).get(n))
                        for node in sorted(c.get("nodes") or {})}
        answer["cluster"] = c
        answer["queue"] = []
        return {host: {"stale": True, "unobserved": True} for host in c["unobserved"]}
