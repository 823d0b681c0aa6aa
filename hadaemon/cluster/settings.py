"""The [cluster] section of checks.conf: its settings and how they are read and checked."""

import re
import shlex
import socket
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from ..names import valid_host


# Parsed here, not in etcd.py: the supervisor checks the settings, and etcd.py's http.client
# (with email and ssl) would cost it and every worker forked from it 25 ms and pages.
def parse_endpoints(text):
    """'http://127.0.0.1:2379,http://h:2379' -> [(scheme, host, port)]; ValueError says why."""
    result = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        u = urlsplit(item if "://" in item else f"http://{item}")
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"endpoint {item!r} is not http(s)://HOST:PORT")
        try:
            port = u.port or 2379
        except ValueError:
            raise ValueError(f"endpoint {item!r} has a bad port") from None
        result.append((u.scheme, u.hostname, port))
    if not result:
        raise ValueError("no endpoint given")
    return result


NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


@dataclass(frozen=True)
class ClusterSettings:
    etcd: str  # comma-separated endpoint URLs
    node: str  # this node's name
    name: str = "hadaemon"  # cluster name: the key prefix
    ttl: int = 10  # leader lease, seconds
    margin: float = 0.0  # fencing margin, seconds (0: a third of ttl)
    fence: str = ""  # optional command the new leader runs before its first sequence
    # its program as resolved at load (not a setting: config's reader skips derived fields)
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
    def range_timeout(self):
        """Seconds a range read may take. For the keys changed since a revision etcd scans the
        whole range (min_mod_revision is applied after the read): about a second at 100 000
        keys on a busy machine. A quarter of ttl still leaves the lease time to be renewed."""
        return max(self.request_timeout, self.ttl / 4.0)

    @property
    def poll(self):
        """Seconds between two looks at etcd (and two keepalives at most)."""
        return min(1.0, max(0.1, self.ttl / 20.0))

    def endpoints(self):
        return parse_endpoints(self.etcd)


def load(home, section, problems, read_settings):
    """Settings from the [cluster] section of checks.conf, as config.load read it; None if it
    has problems (added to `problems`). read_settings: config's reader of a section into a
    dataclass (passed in: this module sits below config and does not import it)."""
    path = home.checks_conf
    before = len(problems)
    settings = read_settings(path, section, ClusterSettings,
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
    if settings.fence:
        try:
            settings = replace(settings,
                               fence_program=home.find_action(shlex.split(settings.fence)[0]))
        except (LookupError, ValueError, IndexError) as e:
            check("fence", False, f"cannot run it ({e})")
    return settings if len(problems) == before else None
