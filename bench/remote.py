#!/usr/bin/env python3
"""Remote checks: checks per second and CPU per check through hadaemon's [ssh:HOST] scope (one
multiplexed connection per host), against monitoring-plugins' check_by_ssh (a fresh ssh
connection per check) in the same run, on the same sshd: examples/ssh/demo's, in a network
namespace (tests/sshnet.py). Both sides run as many at once as hadaemon has workers, back to
back, the same trivial remote command (one byte appended to a file, so runs are counted
alike); they take turns, several rounds each; the ratios are the medians of the rounds'.

CPU is counted on both ends: here (the daemon and its children, or the check_by_ssh loops with
their ssh), and on the host (every process in its namespace: sshd and what it runs).

    python bench/remote.py [--seconds 10] [--rounds 3] [--workers 2]    (as root)
"""

import argparse
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import ROOT, Daemon, Home, _stat, cpu, parallel_spawn_loops, print_table

sys.path.insert(0, str(ROOT / "tests"))
import sshnet  # noqa: E402

CHECK_BY_SSH = "/usr/lib/nagios/plugins/check_by_ssh"
CHECKS = 16  # more checks than workers: every worker always busy
WARMUP = 3.0


def tree(pid):
    """pid and all its direct children, ssh masters (a session of their own) included."""
    found = [pid]
    for entry in os.listdir("/proc"):
        st = entry.isdigit() and _stat(int(entry))
        if st and int(st[1]) == pid:
            found.append(int(entry))
    return found


def window(pids_now, seconds, counted):
    """(runs, local-or-remote CPU seconds, ...) over `seconds`: CPU summed over pids_now()
    lists at both ends, with reaped children, as harness.cpu does for one tree."""
    def snapshot(pid_lists):
        return {p: cpu([p])[1] for pids in pid_lists for p in pids}
    before, start = snapshot(pids_now()), counted()
    time.sleep(seconds)
    after, runs = snapshot(pids_now()), counted() - start
    return runs, [sum(after[p] - before.get(p, 0.0) for p in after if p in group)
                  for group in pids_now()]


def hadaemon_side(host, workers, seconds):
    home = Home("remote")
    try:
        count = home.count
        lines = ["[daemon]", "interval = 10ms", f"workers = {workers}", "log = stderr",
                 "log_level = warning", "", host.settings().strip(), "", "[ssh:db3]",
                 f"address = {host.address}"]
        lines += [f"c{i:03d}" for i in range(CHECKS)]
        for i in range(CHECKS):
            lines += ["", f"[check:c{i:03d}@db3]", "script = /bin/sh",
                      f"args = -c {shlex.quote(f'printf x >> {count}')}"]
        (home.root / "etc/checks.conf").write_text("\n".join(lines) + "\n")
        (home.root / "etc/actions.conf").write_text("")
        with Daemon(home) as d:
            time.sleep(WARMUP)  # the master is up, every worker busy
            runs, (here, there) = window(lambda: [tree(d.proc.pid), host.pids()], seconds,
                                         home.counted)
        return runs / seconds, here / runs, there / runs
    finally:
        home.remove()


def check_by_ssh_side(host, workers, seconds):
    with tempfile.NamedTemporaryFile(dir="/var/tmp", prefix="hadaemon-bench-cbs-") as f:
        argv = [CHECK_BY_SSH, "-H", host.address, "-l", "root", "-i", f"{host.dir}/id_ed25519",
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={host.dir}/known_hosts",
                "-o", "GlobalKnownHostsFile=none", "-t", "10", "-C", f"printf x >> {f.name}"]
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        parallel_spawn_loops(workers, argv, env, 1.0)  # warm up: caches, sshd's first forks
        counted = lambda: os.stat(f.name).st_size  # noqa: E731
        mine0, there0 = os.times(), {p: cpu([p])[1] for p in host.pids()}
        start = counted()
        rate = parallel_spawn_loops(workers, argv, env, seconds)
        mine1, there1 = os.times(), {p: cpu([p])[1] for p in host.pids()}
        runs = counted() - start
        here = (mine1.children_user + mine1.children_system
                - mine0.children_user - mine0.children_system)
        there = sum(v - there0.get(p, 0.0) for p, v in there1.items())
        return rate, here / runs, there / runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="per round and side")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    why = sshnet.unavailable()
    if why or not os.access(CHECK_BY_SSH, os.X_OK):
        sys.exit(f"bench/remote.py: {why or CHECK_BY_SSH + ' missing (monitoring-plugins-basic)'}")
    host = sshnet.RemoteHost(Path(tempfile.mkdtemp(prefix="hadaemon-bench-sshd-",
                                                   dir="/var/tmp")) / "sshd").up()
    try:
        rounds = [(check_by_ssh_side(host, a.workers, a.seconds),
                   hadaemon_side(host, a.workers, a.seconds)) for _ in range(a.rounds)]
    finally:
        host.down()
        shutil.rmtree(host.dir.parent, ignore_errors=True)

    def median(side, i):
        return statistics.median(r[side][i] for r in rounds)

    rows = [["check_by_ssh (a connection per check)", median(0, 0), 1000 * median(0, 1),
             1000 * median(0, 2)],
            ["hadaemon [ssh:HOST] (one connection)", median(1, 0), 1000 * median(1, 1),
             1000 * median(1, 2)],
            ["hadaemon / check_by_ssh (median of rounds)",
             statistics.median(h[0] / c[0] for c, h in rounds),
             statistics.median(h[1] / c[1] for c, h in rounds),
             statistics.median(h[2] / c[2] for c, h in rounds)]]
    print_table(f"Remote checks, {a.workers} at a time ({a.rounds} rounds of {a.seconds:g} s)",
                ["side", "checks/s", "CPU ms/check here", "CPU ms/check on the host"], rows,
                "python bench/remote.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
