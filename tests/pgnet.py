"""The PostgreSQL failover scenario: examples/postgresql as shipped, on namespaces of its own.

Shared by tests/test_failover_pg.py and bench/failover.py. The network, the servers and the
service address come from examples/postgresql/demo, the hadaemon configs from
examples/postgresql/etc: what the walkthrough tells a user to run is what is tested. Every
namespace name gets a suffix unique to this process and run, so runs never collide.
"""

import glob
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import procs  # noqa: E402
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
    return netns_unavailable()


def netns_unavailable():
    """Why network namespaces cannot be made and entered here, or None (tests/sshnet.py too)."""
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
                                  for n in found) if m and not procs.exists(int(m[2]))}:
        stale = Cluster(suffix)
        # The home that run used is unknown: name none, or `down` would clear the example's var/
        # (the default home), under a walkthrough's or another copy's running daemon.
        stale.home_root = "/nonexistent"
        stale.demo("down", check=False)


class Cluster:
    """db1 (primary), db2 (replica) and hademo, where hadaemon and the clients run."""

    def __init__(self, suffix=None, sync=False):
        self.sync = sync  # synchronous replication (demo -S) and pg_promote -S
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
        self.demo(*(["-S"] if self.sync else []), "up")
        return self

    def down(self):
        if self.daemon:
            self.daemon.kill_all()
            self.daemon._err.close()
        self.demo("down", check=False)

    def server_log(self, host, lines=30):
        """The end of host's server log (pg_ctl -l), for a failure's message."""
        try:
            return "\n".join(Path(f"{self.dir}/{host}.log").read_text().splitlines()[-lines:])
        except OSError as e:
            return str(e)

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

    def poll(self, host, sql):
        """psql's output for a wait_for predicate: None while it fails. A connection that times
        out on a loaded machine (2 s at least) is "not yet", not the failure under test (a
        CI run at 73313e0 failed so on a new primary under the writer's load)."""
        try:
            return self.psql(host, sql)
        except AssertionError:
            return None

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
        actions = (EXAMPLE / "etc/actions.conf").read_text()
        if self.sync:  # as the example's comment says
            actions = re.sub(r"(?m)^pg_promote -F ", "pg_promote -F -S var/pg ", actions)
            actions = re.sub(r"(?m)^pg_rejoin -F ", "pg_rejoin -F -S ", actions)
        actions = actions.replace("/var/tmp/hadaemon-pgdemo/", f"{self.dir}/")  # demo -d
        (root / "etc/actions.conf").write_text(actions)
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
        """Write rows through the VIP, start a client writing through it without a pause, kill
        the primary, wait for the client's first write acknowledged after the kill.

        Returns the measurements (CLOCK_MONOTONIC, taken on this machine, which network
        namespaces do not change): kill -> first acknowledged write, the client's gap (last
        acknowledgement before the kill -> first after), the acknowledged writes the promoted
        server does not have, and the wall-clock time of the kill for the journal's stamps.
        """
        self.psql(VIP, "CREATE TABLE IF NOT EXISTS rows (n int PRIMARY KEY, at text)")
        for n in range(1, rows + 1):
            self.psql(VIP, f"INSERT INTO rows VALUES ({n}, 'before')")
        wait_for(lambda: self.poll(self.db2, "SELECT count(*) FROM rows") == str(rows), 30,
                 f"{rows} rows replicated to {self.db2}")
        with Writer(self) as writer:
            measured = writer.kill("db1", timeout)
        return dict(measured, acked=len(writer.acked), lost=writer.lost())


class Writer:
    """The writing client (write() below) in hademo, for as long as the `with` block lasts:
    numbered rows through the VIP into the table writes, each acknowledgement logged."""

    def __init__(self, cluster):
        self.cluster, self.log = cluster, Path(cluster.dir) / "writer.log"
        self.acked = {}

    def __enter__(self):
        self.cluster.psql(VIP, "CREATE TABLE IF NOT EXISTS writes (n int PRIMARY KEY)")
        self.log.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            self.cluster.in_ns(sys.executable, __file__, "write", VIP, _bin("psql"), str(self.log)),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: len(acks(self.log)) >= 20, 30, "the client's first writes")
        return self

    def __exit__(self, *exc):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)
        self.acked = acks(self.log)

    def kill(self, server, timeout=90):
        """SIGKILL server's postmaster (demo kill db1|db2), wait for the first write
        acknowledged after it and ten more: {seconds, gap, killed_wall}."""
        killed_wall, killed = time.time(), time.monotonic()
        self.cluster.demo("kill", server)
        # The old primary's backends outlive its postmaster for a few milliseconds and may
        # still acknowledge writes: the outage ends with the first acknowledgement on a
        # session opened after the kill.
        wait_for(lambda: any(opened > killed for _, opened in acks(self.log).values()), timeout,
                 f"a write through {VIP} acknowledged after the kill of {server}")
        acked = acks(self.log)
        after = min(t for t, opened in acked.values() if opened > killed)
        before = max(t for t, _ in acked.values() if t < killed)
        wait_for(lambda: len([t for t, _ in acks(self.log).values() if t > after]) >= 10, 30,
                 "writes going on after the failover")
        return {"seconds": after - killed, "gap": after - before, "killed_wall": killed_wall}

    def lost(self):
        """The acknowledged writes (after the `with` block) the primary behind the VIP lacks."""
        there = {int(n) for n in self.cluster.psql(VIP, "SELECT n FROM writes").split()}
        return sorted(set(self.acked) - there)


def acks(log):
    """The writing client's acknowledged writes so far: {n: (when acknowledged, when its session
    was opened)}, both CLOCK_MONOTONIC."""
    try:
        lines = Path(log).read_text().splitlines()
    except FileNotFoundError:
        return {}
    return {int(n): (float(t), float(opened))
            for n, t, opened in (line.split() for line in lines if line.count(" ") == 2)}


def setting_in(checks_conf, key):
    return re.search(rf"(?m)^{key} = (.*)$", checks_conf)[1]


def failover_job(history, host=None):
    """The failover's sequence: the primary's master -> down (of host, if given), which promotes
    the replica and moves the address (vip_del, then pg_promote -F ... -- vip_add)."""
    return next(h for h in history if h["from"] == "master" and h["to"] == "down"
                and host in (None, h["host"]))


def breakdown(history, killed_wall, host=None):
    """Seconds from the kill to each step of the failover, from the journal's wall-clock stamps
    and pg_promote's own account of the promotion's time."""
    down = failover_job(history, host)
    vip_del, promote = down["commands"]
    took = re.search(r"promoted to primary in ([0-9.]+)s", promote["output"] or "")
    return {"primary seen down": down["time"] - killed_wall,
            "old address removed": vip_del["finished"] - killed_wall,
            "replica promoted": promote["started"] - killed_wall + float(took[1] if took else "nan"),
            "address moved": promote["finished"] - killed_wall}


def _bin(name):
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                      key=lambda d: int(re.findall(r"\d+", d)[0]), reverse=True)
    return os.path.join(versions[0], name) if versions else name


def write(vip, psql, log):
    """Inside hademo: INSERT numbered rows through VIP one after the other, on one psql session,
    until SIGTERM, and log "N MONOTONIC" for each once psql has printed it (RETURNING: printed
    only after the commit, so after the replica's acknowledgement in synchronous mode). A lost
    session is reopened after a short TCP knock (50 ms: a SYN lost to the old owner's MAC costs
    that, not psql's 2 s minimum connect timeout)."""
    import socket
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    n = 0
    with open(log, "a", buffering=1) as out:
        while True:
            try:
                socket.create_connection((vip, 5432), timeout=0.05).close()
            except OSError:
                time.sleep(0.01)
                continue
            opened = time.monotonic()
            session = subprocess.Popen(
                [psql, "-X", "-w", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", vip, "-U", "postgres", "-f", "-"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                text=True, bufsize=1, env=dict(os.environ, PGCONNECT_TIMEOUT="2"))
            try:
                while True:
                    n += 1
                    session.stdin.write(f"INSERT INTO writes VALUES ({n}) RETURNING n;\n")
                    session.stdin.flush()
                    line = session.stdout.readline()
                    if line.strip() != str(n):  # lost session, or an error: not acknowledged
                        break
                    out.write(f"{n} {time.monotonic()} {opened}\n")
            except BrokenPipeError:
                pass
            finally:
                session.kill()
                session.wait()


def adopt(*argv):
    """Run argv as a child subreaper: what it leaves running (a postmaster, once pg_ctl has
    exited) becomes this process's child instead of init's. Print "ran", then reap nothing until
    a line comes on stdin: a child that dies meanwhile stays a zombie, as under a parent that
    reaps late. Then reap what is dead and exit."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    print("ran", flush=True)
    sys.stdin.readline()
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


if __name__ == "__main__" and sys.argv[1:2] == ["write"]:
    sys.exit(write(*sys.argv[2:]))
if __name__ == "__main__" and sys.argv[1:2] == ["adopt"]:
    sys.exit(adopt(*sys.argv[2:]))
