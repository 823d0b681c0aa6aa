"""The supervisor of cluster mode: the same loop, with etcd work handed to two children.

The loop still runs this node's checks through the same workers and commit rule, but a
"transition" of the local rule is only this node's opinion: it goes to the cluster agent
(agent.py), which publishes it; the leader's agent combines all opinions and commits. The agent
reports the committed table back and the loop mirrors it into the local shelve, so `status`
answers from it when etcd is unreachable. Jobs are run by the cluster runner (crunner.py).
"""

import json
import logging
import selectors
import time

from ..commit import Committer
from ..fork import fork_with_socket
from ..names import UNKNOWN, valid_host
from ..supervisor import Supervisor, _registered, unreported
from . import agent, runner as crunner

log = logging.getLogger("hadaemon")
AGENT_RESPAWN_DELAY = 1.0
REQUESTS = ("pause", "resume", "transition", "handover")


class ClusterSupervisor(Supervisor):
    def setup(self):
        c = self.config.cluster
        self.agent_pid, self.agent_sock, self.agent_due = None, None, 0.0
        self.cluster = {"name": c.name, "node": c.node, "leader": None, "stale": True,
                        "error": "cluster agent starting", "nodes": {}, "results": {}}
        super().setup()
        # This node's opinion starts blank: a mirror of the cluster's table is not an observation.
        self.committer = Committer({}, {})
        self._spawn_agent()

    def _chores(self):
        return super()._chores() + (self._respawn_agent,)

    def _respawn_agent(self):
        now = time.monotonic()
        if self.agent_pid is not None or self.stopping or now < self.agent_due:
            return
        try:
            self._spawn_agent()
        except OSError as e:  # no descriptors or memory: try again, as for the runner
            self.agent_due = now + AGENT_RESPAWN_DELAY
            self.errors.report("agent", logging.ERROR,
                               f"cannot start the cluster agent: {e}; trying again")
            return
        self.errors.clear("agent", f"cluster agent {self.agent_pid} started")

    # -- the two children -----------------------------------------------------------------------

    def _spawn_agent(self):
        self.agent_pid, self.agent_sock = fork_with_socket(
            agent.main, self.home.root, self.config, self._runner_settings())
        self.sel.register(self.agent_sock, selectors.EVENT_READ, self._on_agent)
        mirror = {h: {k: e.get(k) for k in ("status", "since", "manual")}
                  for h, e in self.entries.items() if e.get("status", UNKNOWN) != UNKNOWN}
        self._to_agent({"opinions": dict(self.committer.committed), "mirror": mirror})

    def _helpers(self):
        helpers = super()._helpers()
        if self.agent_pid:
            helpers[self.agent_pid] = self.agent_sock
        return helpers

    def _helper_exited(self, pid, how):
        if pid != self.agent_pid:
            return super()._helper_exited(pid, how)
        self._close(self.agent_sock)
        self.agent_pid, self.agent_sock = None, None
        if not self.stopping:
            log.error("cluster agent %d %s; a new one joins in %.0fs", pid, how,
                      AGENT_RESPAWN_DELAY)
            self.agent_due = time.monotonic() + AGENT_RESPAWN_DELAY
        self.cluster.update(stale=True, error="cluster agent restarting", leader=None)
        return True

    def _spawn_runner(self):
        self.runner_pid, self.runner_sock = fork_with_socket(
            crunner.main, self.home.root, self._runner_settings())
        self.sel.register(self.runner_sock, selectors.EVENT_READ, self._on_runner)

    def _runner_settings(self):
        settings = super()._runner_settings()
        c = self.config.cluster
        settings["cluster"] = {"node": c.node, "name": c.name, "ttl": c.ttl,
                               "fence_margin": c.fence_margin, "poll": c.poll,
                               "endpoints": c.endpoints(), "request_timeout": c.request_timeout}
        return settings

    def _to_agent(self, message):
        if self.agent_sock is None:
            return False
        try:
            self.agent_sock.send(json.dumps(message).encode())
            return True
        except (BlockingIOError, OSError):
            return False

    def _on_agent(self, sock, events):
        try:
            data = sock.recv(1 << 22)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # EOF: the agent is gone, _reap handles it
            if _registered(self.sel, sock):
                self.sel.unregister(sock)
            return
        message = json.loads(data)
        self.cluster = message["cluster"]
        for host, entry in message.get("table", {}).items():
            self.entries[host] = dict(self.entries.get(host, {}), **entry)
            self.dirty.add(host)

    # -- this node's opinions ---------------------------------------------------------------------

    def commit(self, transition, now, observed_mono=None, **_):
        """Here a transition of the local rule is this node's new opinion, for the leader."""
        self.committer.apply(transition, now)
        log.info("node %s sees %s: %s -> %s", self.config.cluster.node, transition.host,
                 transition.source, transition.target)
        self._to_agent({"opinions": dict(self.committer.committed)})
        return None

    def reload(self):
        answer = super().reload()
        if answer.get("ok"):
            self._to_agent({"reload": True})
        return answer

    # -- control --------------------------------------------------------------------------------

    def answer(self, request):
        cmd = request.get("cmd")
        if cmd == "forget":
            return {"ok": False, "error": "forget is not available in cluster mode: each node "
                    "keeps its own opinion of every host it has seen, until its restart"}
        if cmd not in REQUESTS:
            return super().answer(request)
        refused = cmd == "transition" and self.refuse_transition(request.get("host"),
                                                                 request.get("status"))
        if refused:
            return {"ok": False, "error": refused}
        if cmd == "transition" and request.get("new") is not True and not (
                self._reporting(request["host"]) or self._in_opinions(request["host"])):
            return unreported(request["host"], request["status"], "no node's checks report")
        if cmd == "handover" and request.get("to") and not valid_host(request["to"]):
            return {"ok": False, "error": f"{request['to']!r} is not a node name"}
        if self.cluster.get("refused"):
            return {"ok": False, "error": f"refused: etcd does not hold this cluster's data "
                    f"({self.cluster['refused']}); nothing is done until an operator runs "
                    f"`hadaemon cluster-init`"}
        forwarded = {k: request.get(k) for k in ("cmd", "host", "status", "to")}
        forwarded["node"] = self.config.cluster.node
        if not self._to_agent({"request": forwarded}):
            return {"ok": False, "error": "cluster agent not running; try again"}
        return {"ok": True, "requested": cmd, "leader": self.cluster.get("leader"),
                "note": "handed to the leader through etcd"}

    def _in_opinions(self, host):
        """Some node's checks reported host since that node started (as the agent last saw)."""
        return any(host in (o or {}) for o in self.cluster.get("results", {}).values())

    def status(self):
        answer = super().status()
        c = dict(self.cluster)
        if c.get("lease_left") is not None and c.get("stale"):
            c["lease_left"] = max(0.0, c["lease_left"])
        answer["cluster"] = c
        answer["queue"] = []
        return answer


