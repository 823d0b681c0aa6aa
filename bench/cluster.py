"""Cluster mode under fire: leader partitions and kill -9s while a host flaps; count every
action command and time every leader change.

    python bench/cluster.py [--events 100] [--ttl 2] [--flap 0.7]   (BENCH_KEEP=1 keeps the homes)

Three etcd members and three hadaemon nodes run as real processes. With network namespaces
(root), each node sits in its own namespace linked to a hub namespace holding etcd, and events
alternate: cut the leader's link (then heal it) and kill -9 the leader's whole process tree (then
start it again). Without namespaces, every event is a kill -9, on loopback. Meanwhile one host
flaps between up and down on every node, and each of its transitions fires two commands that
append to one log.

At the end the flapping stops, everything heals, open jobs drain, and the log is held against
the jobs recorded in etcd: a command of a finished job missing from the log is lost, a command
in the log twice is doubled. A command re-run with HA_RESUMED=1 because its node was cut off or
killed while running it (the documented limit of fencing) is counted apart, not hidden.
"""

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from etcdkit import ETCD, Etcd, Network, Node, netns_possible, read_log  # noqa: E402
from hadaemon import control  # noqa: E402

ACTIONS = """
[*_to_*]
record one %HOST%
record two
"""
NAMES = ("n1", "n2", "n3")


def ask(node, message, timeout=2.0):
    try:
        return control.request(node.root / "var/control.sock", message, timeout=timeout)
    except control.ControlError:
        return {}


def leader_seen(nodes):
    """The leader every live node agrees on, else None."""
    seen = {(ask(n, {"cmd": "status"}).get("cluster") or {}).get("leader")
            for n in nodes if n.alive()}
    return seen.pop() if len(seen) == 1 else None


def wait(predicate, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None


class Flapper(threading.Thread):
    def __init__(self, nodes, period):
        super().__init__(daemon=True)
        self.nodes, self.period, self.stop = nodes, period, threading.Event()
        self.flips = 0

    def run(self):
        status = "up"
        while not self.stop.wait(self.period):
            status = "down" if status == "up" else "up"
            for n in self.nodes:
                n.set_status("h1", status)
            self.flips += 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=100)
    p.add_argument("--ttl", type=int, default=2)
    p.add_argument("--flap", type=float, default=0.7, help="seconds between two flips of h1")
    p.add_argument("--loopback", action="store_true", help="no namespaces: kill -9 only")
    args = p.parse_args()
    if not ETCD:
        sys.exit("etcd is not installed (apt-get install etcd-server etcd-client)")
    why = "asked for" if args.loopback else netns_possible()
    base = Path(tempfile.mkdtemp(prefix="hadaemon-cluster-bench-"))
    net = None if why else Network(f"hb{os.getpid() % 100000}", NAMES)
    (base / "etcd").mkdir()
    etcd = Etcd(base / "etcd", host="10.77.0.1" if net else "127.0.0.1",
                netns=net.hub if net else None)
    log = base / "actions.log"
    nodes = []
    flapper = None
    try:
        etcd.start()
        for name in NAMES:
            node = Node(base / name, name, etcd.endpoints, args.ttl, log=log, actions=ACTIONS,
                        netns=net.ns[name] if net else None, checks="status_from_files h1\n")
            node.set_status("h1", "up")
            nodes.append(node.start())
        if not wait(lambda: leader_seen(nodes), 60):
            sys.exit("no leader within 60s")
        flapper = Flapper(nodes, args.flap)
        flapper.start()
        changes, kinds = [], Counter()
        for i in range(args.events):
            leader = wait(lambda: leader_seen(nodes), 60)
            old = next(n for n in nodes if n.name == leader)
            rest = [n for n in nodes if n is not old]
            kind = "partition" if net and i % 2 == 0 else "kill"
            t0 = time.monotonic()
            if kind == "partition":
                net.cut(old.name)
            else:
                old.kill9()
            new = wait(lambda: (lambda seen: seen not in (None, leader) and seen)(
                leader_seen(rest)), 60, step=0.02)
            took = time.monotonic() - t0
            if new:
                changes.append(took)
            kinds[kind] += 1
            if kind == "partition":
                net.heal(old.name)
            else:
                old.start()
            wait(lambda: leader_seen(nodes) == new, 60)
            print(f"event {i + 1:3}/{args.events}: {kind:9} of {leader}: {new or 'NO LEADER'} "
                  f"leads after {took:.2f}s", flush=True)
        flapper.stop.set()
        flapper.join()
        for n in nodes:
            n.set_status("h1", "up")
        history = drain(nodes)
        report(args, why, history, read_log(log), changes, kinds, flapper.flips)
    finally:
        if flapper:
            flapper.stop.set()
        for n in nodes:
            n.kill9()
        etcd.close()
        if net:
            net.close()
        if os.environ.get("BENCH_KEEP"):
            print(f"kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def drain(nodes, timeout=120):
    """Wait until no job is open; return the history as etcd has it."""
    deadline = time.monotonic() + timeout
    history = []
    while time.monotonic() < deadline:
        r = nodes[0].cli("history", "--json", "--limit", "100000", timeout=60)
        if r.returncode == 0:
            history = json.loads(r.stdout)
            if history and all(h["state"] not in ("queued", "running") for h in history):
                break
        time.sleep(1)
    return history


def report(args, why, history, lines, changes, kinds, flips):
    runs = Counter()
    rerun = 0
    for line in lines:
        words = line.split()
        key = (words[1], words[-1] if words[-1] == "two" else "one")
        runs[key] += 1
        if words[4] == "resumed=1" and runs[key] > 1:
            rerun += 1
    lost = 0
    states = Counter(h["state"] for h in history)
    for h in history:
        if h["state"] == "superseded" or not h["commands"]:
            continue
        for c in h["commands"]:
            if runs[(f"job={h['id']}", c["command"].split()[1])] == 0:
                lost += 1  # a job the cluster committed, a command nobody ran
    doubled = sum(n - 1 for n in runs.values() if n > 1) - rerun
    open_jobs = states["queued"] + states["running"]
    print()
    print(f"cluster bench: {args.events} events ({dict(kinds)}), ttl {args.ttl}s, "
          f"h1 flipped {flips} times every {args.flap}s"
          + (f"; loopback only ({why})" if why else "; network namespaces"))
    print(f"jobs: {len(history)} ({dict(states)}); commands logged: {len(lines)}")
    print(f"lost actions: {lost}   doubled actions: {doubled}   re-run because its node was "
          f"cut off or killed mid-command (HA_RESUMED=1): {rerun}   jobs still open: {open_jobs}")
    if changes:
        s = sorted(changes)
        print(f"leader change: n={len(s)} p50 {statistics.median(s):.2f}s "
              f"p90 {s[math.ceil(0.9 * len(s)) - 1]:.2f}s max {s[-1]:.2f}s")
    print(f"events without a new leader within 60s: {args.events - len(changes)}")
    sys.exit(0 if lost == 0 and doubled == 0 and open_jobs == 0 else 1)


if __name__ == "__main__":
    main()
