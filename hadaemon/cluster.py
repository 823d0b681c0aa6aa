"""Cluster mode: its settings, its keys in etcd, and the pure rules (how votes combine, where a
command runs). The processes that use them are agent.py (election, commits) and crunner.py
(the jobs); docs/cluster.md describes the whole.
"""

import importlib.util
import json
import os
import re
import shlex
import socket
from collections import Counter
from dataclasses import dataclass, field, replace

from . import history
from .etcd import parse_endpoints
from .names import valid_host

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
ON_RE = re.compile(r"(.*\S)\s+on\s+(\S+)\Z")  # [FROM_to_TO on NODE]


@dataclass(frozen=True)
class ClusterSettings:
    etcd: str  # comma-separated endpoint URLs
    node: str  # this node's name
    name: str = "hadaemon"  # cluster name: the key prefix
    ttl: int = 10  # leader lease, seconds
    margin: float = 0.0  # fencing margin, seconds (0: a third of ttl)
    fence: str = ""  # optional command the new leader runs before its first sequence
    # its program as resolved at load (not a setting: config._settings skips derived fields)
    fence_program: str = field(default="", metadata={"derived": True})
    timeout: float = 0.0  # one etcd request, seconds (0: ttl / 10, at most 1s)
    keep_jobs: int = 1000  # finished jobs kept in etcd (history); older ones are pruned

    @property
    def prefix(self):
        return f"/{self.name}/"

    @property
    def fence_margin(self):
        return self.margin or self.ttl / 3.0

    @property
    def request_timeout(self):
        return self.timeout or min(1.0, max(0.2, self.ttl / 10.0))

    @property
    def poll(self):
        """Seconds between two looks at etcd (and two keepalives at most)."""
        return min(1.0, max(0.1, self.ttl / 20.0))

    def endpoints(self):
        return parse_endpoints(self.etcd)


def load(home, section, problems):
    """Settings from the [cluster] section of checks.conf, as config.load read it; None if it
    has problems (added to `problems`)."""
    from .config import _settings  # config imports this module: import here, not at the top
    path = home.checks_conf
    before = len(problems)
    settings = _settings(path, section, ClusterSettings,
                         ClusterSettings(etcd="", node=socket.gethostname().split(".")[0]),
                         problems)
    lines = {}
    for lineno, text in section.lines:
        lines.setdefault(text.partition("=")[0].strip().lower(), lineno)

    def check(key, ok, expected):
        if not ok:
            problems.append(f"{path}:{lines.get(key, section.lineno)}: {key}: {expected}, "
                            f"got {getattr(settings, key)!r}")
    if not settings.etcd:
        problems.append(f"{path}:{section.lineno}: [cluster] needs etcd = http://HOST:PORT[,...]")
    else:
        try:
            parse_endpoints(settings.etcd)
        except ValueError as e:
            check("etcd", False, str(e))
    check("node", valid_host(settings.node), "expected a host-like name (letters, digits, .:_-)")
    check("name", NAME_RE.match(settings.name), "expected letters, digits, '.', '_' and '-'")
    check("ttl", 2 <= settings.ttl <= 3600, "must be between 2 and 3600 seconds")
    check("keep_jobs", settings.keep_jobs >= 1, "must be at least 1")
    check("margin", settings.fence_margin < settings.ttl, "must be less than ttl")
    if importlib.util.find_spec("etcd3gw") is None:  # cluster mode's one extra dependency
        problems.append(f"{path}:{section.lineno}: [cluster] needs the etcd3gw package: "
                        f"pip install 'hadaemon[cluster]'")
    if settings.fence:
        try:
            settings = replace(settings,
                               fence_program=home.find_action(shlex.split(settings.fence)[0]))
        except (LookupError, ValueError, IndexError) as e:
            check("fence", False, f"cannot run it ({e})")
    return settings if len(problems) == before else None


def split_section(name):
    """'slave_to_master on %HOST%' -> ('slave_to_master', '%HOST%'); no 'on': (name, '')."""
    m = ON_RE.match(name)
    return (m.group(1), m.group(2)) if m else (name, "")


def valid_on(node):
    return node == "leader" or bool(re.fullmatch(r"%[A-Za-z][A-Za-z0-9_-]*%", node)) \
        or valid_host(node)


def step_node(section_name, vals):
    """The node that runs a step of this section: a name, or '' for whoever leads."""
    _, on = split_section(section_name)
    if not on or on == "leader":
        return ""
    if on.startswith("%"):
        hosts = vals.get(on.strip("%").upper()) or []
        return hosts[0] if len(hosts) == 1 else ""
    return on


# -- the rule that combines the nodes' opinions ------------------------------------------------

def combine(opinions, host):
    """The status a strict majority of the live nodes reporting `host` agree on, else None.

    opinions: {node: {host: status}}. A node that does not report the host does not vote, so one
    node that loses its network (its results vanish with its lease) or sees a host differently
    cannot move it alone while others see it.
    """
    votes = [o[host] for o in opinions.values() if host in o]
    if not votes:
        return None
    status, count = Counter(votes).most_common(1)[0]
    return status if 2 * count > len(votes) else None


# -- keys ----------------------------------------------------------------------------------------

class Keys:
    """Everything under /NAME/. live/ is read every poll and stays small; the rest grows."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.live = prefix + "live/"
        self.leader = self.live + "leader"
        self.paused = self.live + "paused"
        self.handover = self.live + "handover"
        self.requests = self.live + "request/"
        self.open = self.live + "open/"
        self.hold = self.live + "hold/"  # hold/HOST: hold-down, on a lease of its own
        self.marker = self.live + "marker"  # which cluster this etcd holds (clusterid.py)
        self.refusals = self.live + "refusal/"  # refusal/NODE: a node refusing etcd's data
        self.table = prefix + "table/"
        self.jobs = prefix + "job/"
        self.steps = prefix + "step/"
        self.claims = prefix + "claim/"
        self.seq = prefix + "seq"
        self.last_leader = prefix + "last-leader"

    def node(self, name):
        return f"{self.live}node/{name}"

    def result(self, name):
        return f"{self.live}result/{name}"

    def job(self, job_id):
        return f"{self.jobs}{job_id:012d}"

    def step(self, job_id, idx):
        return f"{self.steps}{job_id:012d}/{idx:04d}"

    def claim(self, job_id):
        return f"{self.claims}{job_id:012d}"

    def refusal(self, name):
        return f"{self.refusals}{name}"

    def open_job(self, job_id):
        return f"{self.open}{job_id:012d}"


# -- who holds a node name ----------------------------------------------------------------------

def identity():
    """This node's daemon, as its node key records it. Called in the agent and the runner, both
    children of the supervisor, so both give the same answer."""
    return {"host": socket.gethostname(), "pid": os.getppid()}


def is_us(node_value):
    """Whether a node key's value (split_live's nodes[name]) was written by this daemon."""
    return bool(node_value) and all(node_value.get(k) == v for k, v in identity().items())


def split_live(keys, kvs):
    """A range of live/ -> (nodes, opinions, leader, paused, handover, requests, open ids)."""
    nodes, opinions, requests, open_ids = {}, {}, {}, []
    leader = paused = handover = None
    for key, (value, lease, rev) in kvs.items():
        rest = key[len(keys.live):]
        if rest.startswith("node/"):
            nodes[rest[5:]] = json_or_empty(value)
        elif rest.startswith("result/"):
            opinions[rest[7:]] = json_or_empty(value)
        elif rest.startswith("request/"):
            requests[key] = json_or_empty(value)
        elif rest.startswith("open/"):
            open_ids.append(int(rest[5:]))
        elif key == keys.leader:
            leader = (value.decode(), lease, rev)
        elif key == keys.paused:
            paused = json_or_empty(value)
        elif key == keys.handover:
            handover = json_or_empty(value)
    return nodes, opinions, leader, paused, handover, requests, sorted(open_ids)


def json_or_empty(value):
    """A stored JSON value, or {} when it is missing or unreadable."""
    if not value:
        return {}
    try:
        return json.loads(value)
    except ValueError:
        return {}


# -- reading jobs back (history, status) -------------------------------------------------------

def read_history(etcd, keys, limit=100, host=None):
    """Jobs in etcd in the shape of history.read(), oldest first."""
    jobs = [json_or_empty(v) for v, _, _ in etcd.range(keys.jobs).values()]
    jobs = sorted((j for j in jobs if j and (not host or j.get("host") == host)),
                  key=lambda j: j["id"])[-int(limit):]
    steps = {}
    if jobs:
        for key, (value, _, _) in etcd.range(keys.steps).items():
            job_id, idx = key[len(keys.steps):].split("/")
            steps.setdefault(int(job_id), {})[int(idx)] = json_or_empty(value)
    return [history.entry(j, steps.get(j["id"], {})) for j in jobs]


def status_lines(c):
    """The cluster part of `hadaemon status`, as text."""
    lines = []
    if c.get("refused"):
        lines.append(f"REFUSING: etcd does not hold this cluster's data: {c['refused']}; "
                     "nothing is committed and no job runs until an operator runs "
                     "`hadaemon cluster-init`; the table below is this node's last mirror")
    elif c.get("not_joined"):
        lines.append(f"NOT JOINED: {c['not_joined']}; the table below is this node's last "
                     "mirror")
    elif c.get("stale"):
        lines.append(f"STALE: etcd unreachable for {c.get('unreachable_for', 0):.0f}s "
                     f"({c.get('error')}); the table below is this node's last mirror")
    left = c.get("lease_left")
    lines.append(f"cluster {c.get('name')}: node {c.get('node')}, leader "
                 f"{c.get('leader') or '(none)'}" + (f", lease {left:.1f}s left"
                                                      if left is not None else "")
                 + (", PAUSED (no action fires)" if c.get("paused") else ""))
    for node in sorted(c.get("nodes", {})):
        seen = c.get("results", {}).get(node, {})
        votes = " ".join(f"{h}={s}" for h, s in sorted(seen.items())) or "(no results yet)"
        lines.append(f"  node {node}{' (leader)' if node == c.get('leader') else ''}: {votes}")
    return lines


def child_logging(home, settings):
    """Logging for a forked child (agent, cluster runner): the handlers inherited from the
    supervisor point at descriptors fork_child closed, so they are dropped, not closed."""
    import logging

    from . import logsetup
    logger = logging.getLogger("hadaemon")
    for h in list(logger.handlers):
        logger.removeHandler(h)
    logsetup.configure(home, settings["log"], settings["log_level"], settings["foreground"])
