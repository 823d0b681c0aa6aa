"""The PostgreSQL failover scenario: examples/postgresql as shipped, on namespaces of its own.

Shared by tests/test_failover_pg.py and bench/failover.py. The network, the servers and the
service address come from examples/postgresql/demo, the hadaemon configs from
examples/postgresql/etc: what the walkthrough tells a user to run is what is tested. Every
namespace name gets a suffix unique to this process and run, so runs never collide.
"""

import glob
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import ROOT, Daemon, Home, wait_for  # noqa: E402

EXAMPLE = ROOT / "examples/postgresql"
DEMO = EXAMPLE / "demo"
VIP = "10.231.0.100"
_runs = itertools.count(1)


def unavailable():
    """Why this machine cannot run the scenario, or None."""
    if os.geteuid() != 0:
        return "needs root: network namespaces, veth, runuser to the postgres user"
    if not shutil.which("ip"):
        return "iproute2 is not installed (apt-get install iproute2)"
    if not glob.glob("/usr/lib/postgresql/*/bin/postgres"):
        return "PostgreSQL is not installed (apt-get install postgresql)"
    if subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
        return "there is no postgres user (apt-get install postgresql)"
    probe = f"hadaemon-probe-{os.getpid()}"
    p = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if p.returncode != 0:
        return f"cannot create network namespaces here: {p.stderr.strip()}"
    try:  # entering one mounts a fresh /sys, which some containers forbid
        p = subprocess.run(["ip", "netns", "exec", probe, "true"], capture_output=True, text=True)
        if p.returncode != 0:
            return f"cannot enter a network namespace here: {p.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def reap_stale():
    """Take down what runs that died without their finalizer (SIGKILL, reboot) left behind:
    namespaces and data directories whose suffix names a process that no longer exists."""
    found = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    found += os.listdir("/var/tmp")
    for suffix in {m[1] for m in (re.fullmatch(r"(?:hademo|hadaemon-pgdemo)(-(\d+)-\d+)", n)
                                  for n in found) if m and not _alive(int(m[2]))}:
        Cluster(suffix).demo("down", check=False)


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


class Cluster:
    """db1 (primary), db2 (replica) and hademo, where hadaemon and the clients run."""

    def __init__(self, suffix=None):
        self.suffix = suffix or f"-{os.getpid()}-{next(_runs)}"
        self.db1, self.db2, self.ns = (f"{n}{self.suffix}" for n in ("db1", "db2", "hademo"))
        self.dir = f"/var/tmp/hadaemon-pgdemo{self.suffix}"
        self.daemon = None
        self.home_root = None  # the hadaemon home `demo down` clears the var/ of

    def demo(self, *args, check=True):
        home = ["-H", str(self.home_root)] if self.home_root else []
        p = subprocess.run([str(DEMO), "-s", self.suffix, "-d", self.dir, *home, *args],
                           capture_output=True, text=True, timeout=120)
        if check and p.returncode != 0:
            raise AssertionError(f"demo {' '.join(args)} exited {p.returncode}:\n"
                                 f"{p.stdout}{p.stderr}")
        return p

    def up(self):
        reap_stale()
        self.demo("down", check=False)  # a reused pid after a reboot may find its own leftovers
        self.demo("up")
        return self

    def down(self):
        if self.daemon:
            self.daemon.kill_all()
            self.daemon._err.close()
        self.demo("down", check=False)

    def in_ns(self, *argv):
        return ["ip", "netns", "exec", self.ns, *argv]

    def psql(self, host, sql):
        """Run sql on host (a name that resolves in hademo, or the VIP); its output, or raise."""
        p = subprocess.run(self.in_ns(_bin("psql"), "-X", "-w", "-q", "-A", "-t",
                                      "-v", "ON_ERROR_STOP=1", "-h", host, "-U", "postgres",
                                      "-c", sql),
                           capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, PGCONNECT_TIMEOUT="2"))
        if p.returncode != 0:
            raise AssertionError(f"psql -h {host} -c {sql!r}: {p.stderr.strip()}")
        return p.stdout.strip()

    def home(self, root, interval=None, confirm=None):
        """A home with the example's configs, the host names given this run's suffix."""
        root = Path(root)
        (root / "etc").mkdir(parents=True)
        for d in ("checks", "actions"):
            (root / d).symlink_to(ROOT / d)
        checks = re.sub(r"\b(db[12])\b", rf"\1{self.suffix}",
                        (EXAMPLE / "etc/checks.conf").read_text())
        for key, value in (("interval", interval), ("confirm", confirm)):
            if value is not None:
                checks = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", checks)
        (root / "etc/checks.conf").write_text(checks)
        (root / "etc/actions.conf").write_text((EXAMPLE / "etc/actions.conf").read_text())
        for conf in ("checks.conf", "actions.conf"):
            (root / "etc" / conf).chmod(0o644)  # strict mode, whatever the umask
        home = Home.__new__(Home)
        home.root = self.home_root = root
        return home

    def start_daemon(self, home):
        """hadaemon inside hademo, where db1 and db2 resolve and the VIP is reachable."""
        self.daemon = Daemon(home, prefix=self.in_ns()).start()
        return self.daemon

    def setting(self, home, key):
        return setting_in((home.root / "etc/checks.conf").read_text(), key)

    def failover(self, home, rows=20, timeout=90):
        """Write rows through the VIP, kill the primary, wait for a write through the VIP.

        Returns the measurements: kill -> first successful write (seconds, CLOCK_MONOTONIC, both
        taken on this machine) and the wall-clock times of the kill, for the history's stamps.
        """
        self.psql(VIP, "CREATE TABLE IF NOT EXISTS rows (n int PRIMARY KEY, at text)")
        for n in range(1, rows + 1):
            self.psql(VIP, f"INSERT INTO rows VALUES ({n}, 'before')")
        wait_for(lambda: self.psql(self.db2, "SELECT count(*) FROM rows") == str(rows), 30,
                 f"{rows} rows replicated to {self.db2}")
        probe = [sys.executable, __file__, "probe", VIP, _bin("psql"), str(timeout),
                 f"INSERT INTO rows VALUES ({rows + 1}, 'after') ON CONFLICT DO NOTHING"]
        killed_wall, killed = time.time(), time.monotonic()
        self.demo("kill", "db1")
        p = subprocess.run(self.in_ns(*probe), capture_output=True, text=True,
                           timeout=timeout + 30)
        if p.returncode != 0:
            raise AssertionError(f"no write through {VIP} within {timeout}s after the kill: "
                                 f"{p.stderr.strip()}\n{home.log()}")
        written = json.loads(p.stdout)
        return {"seconds": written["at"] - killed, "killed_wall": killed_wall,
                "attempts": written["attempts"]}


def setting_in(checks_conf, key):
    return re.search(rf"(?m)^{key} = (.*)$", checks_conf)[1]


def failover_jobs(history):
    """The two sequences of a failover: the primary's master -> down, the replica's promotion."""
    return (next(h for h in history if h["from"] == "master" and h["to"] == "down"),
            next(h for h in history if h["from"] == "slave" and h["to"] == "master"))


def breakdown(history, killed_wall):
    """Seconds from the kill to each step of the failover, from the journal's wall-clock stamps."""
    down, master = failover_jobs(history)
    return {"primary seen down": down["time"] - killed_wall,
            "replica promoted": down["commands"][-1]["finished"] - killed_wall,
            "replica seen master": master["time"] - killed_wall,
            "address moved": master["commands"][-1]["finished"] - killed_wall}


def _bin(name):
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                      key=lambda d: int(re.findall(r"\d+", d)[0]), reverse=True)
    return os.path.join(versions[0], name) if versions else name


def probe(vip, psql, timeout, sql):
    """Inside hademo: knock on VIP:5432 until it answers (a short TCP connect, so that a SYN lost
    to the old owner's MAC costs 50 ms, not psql's 2 s minimum connect timeout), then write."""
    import socket
    deadline = time.monotonic() + float(timeout)
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        try:
            socket.create_connection((vip, 5432), timeout=0.05).close()
        except OSError:
            time.sleep(0.02)
            continue
        p = subprocess.run([psql, "-X", "-w", "-q", "-h", vip, "-U", "postgres", "-c", sql],
                           capture_output=True, text=True, env=dict(os.environ,
                                                                    PGCONNECT_TIMEOUT="2"))
        if p.returncode == 0:
            print(json.dumps({"at": time.monotonic(), "attempts": attempts}))
            return 0
        time.sleep(0.02)
    print(f"no write through {vip} in {timeout}s", file=sys.stderr)
    return 1


if __name__ == "__main__" and sys.argv[1:2] == ["probe"]:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(probe(*sys.argv[2:]))
