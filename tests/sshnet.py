"""A remote host for [ssh:HOST] tests and bench/remote.py: examples/ssh/demo as shipped (what
the README's walkthrough runs), on a namespace, a /30 and keys of its own per use.

Namespace names carry this process's pid and a counter, so runs never collide; a /30 of
10.213.0.0/16 is taken only if no interface of this machine has an address in it and no live
process has reserved it (pytest-xdist workers start hosts at the same time, and the README's
walkthrough brings its host up only after its first lines).
"""

import fcntl
import itertools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import procs  # noqa: E402
from conftest import ROOT  # noqa: E402
from pgnet import netns_unavailable  # noqa: E402

DEMO = ROOT / "examples/ssh/demo"
NETS = "/run/lock/hadaemon-sshnet"  # one file per /30 reserved, holding its process's pid
_runs = itertools.count(1)


def unavailable():
    """Why this machine cannot run a remote host, or None."""
    if os.geteuid() != 0:
        return "needs root: network namespaces, veth, sshd"
    for program, package in (("ip", "iproute2"), ("/usr/sbin/sshd", "openssh-server"),
                             ("ssh", "openssh-client"), ("ssh-keygen", "openssh-client"),
                             ("ssh-keyscan", "openssh-client")):
        if not shutil.which(program):
            return f"{program} is not installed (apt-get install {package})"
    return netns_unavailable()


def _reserved_by_a_live_process(path):
    try:
        with open(path) as f:
            return procs.exists(int(f.read()))
    except (OSError, ValueError):
        return False


def reserve_net():
    """A /30 no interface uses and no live process has reserved, reserved for this one until
    release_net()."""
    os.makedirs(NETS, exist_ok=True)
    with open(f"{NETS}/.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process picks at a time
        used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
        for third in range(1, 255):
            net = f"10.213.{third}"
            path = f"{NETS}/{net}"
            if f" {net}." not in used and not _reserved_by_a_live_process(path):
                with open(path, "w") as f:
                    f.write(str(os.getpid()))
                return net
    raise AssertionError("no free /30 in 10.213.0.0/16")


def release_net(net):
    try:
        os.unlink(f"{NETS}/{net}")
    except FileNotFoundError:
        pass


def reap_stale():
    """Remote hosts of runs that died without their finalizer: their pid is gone."""
    found = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    for m in (re.fullmatch(r"hassh(-(\d+)-\d+)", n) for n in found):
        if m and not procs.exists(int(m[2])):
            subprocess.run([str(DEMO), "-s", m[1], "-d", "/nonexistent", "down"],
                           capture_output=True, timeout=60)


class RemoteHost:
    """An sshd on NET.2 in namespace hassh-PID-N; this machine is NET.1."""

    def __init__(self, dir):
        self.suffix = f"-{os.getpid()}-{next(_runs)}"
        self.ns = f"hassh{self.suffix}"
        self.dir = Path(dir)
        self.net = None

    def demo(self, *args):
        p = subprocess.run([str(DEMO), "-s", self.suffix, "-n", self.net, "-d", str(self.dir),
                            *args], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise AssertionError(f"demo {' '.join(args)} exited {p.returncode}:\n"
                                 f"{p.stdout}{p.stderr}")
        return p.stdout

    def up(self):
        reap_stale()
        self.net = reserve_net()
        self.demo("up")
        return self

    def down(self):
        if self.net:
            try:
                self.demo("down")
            finally:
                release_net(self.net)

    @property
    def address(self):
        return f"{self.net}.2"

    def settings(self):
        """The [ssh] section a home needs to reach this host as root."""
        return (f"[ssh]\nuser = root\nidentity = {self.dir}/id_ed25519\n"
                f"known_hosts = {self.dir}/known_hosts\n")

    def pids(self):
        """Every process in the namespace: sshd's and what its sessions run."""
        out = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def commands(self):
        """The command lines of the processes in the namespace."""
        found = []
        for pid in self.pids():
            try:
                found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                             .decode().strip())
            except OSError:
                pass
        return found

    def connections(self):
        """Established TCP connections to its sshd."""
        out = subprocess.run(["ip", "netns", "exec", self.ns, "ss", "-Htn", "state",
                              "established", "( sport = :22 )"], capture_output=True, text=True)
        return [line for line in out.stdout.splitlines() if line.strip()]

    def logins(self):
        """How many connections sshd has accepted (one 'Accepted publickey' line each)."""
        log = self.dir / "sshd.log"
        return log.read_text().count("Accepted publickey") if log.exists() else 0
