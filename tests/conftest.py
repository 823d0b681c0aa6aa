"""Shared test tools: a temporary home, the real daemon as a process, bounded waits."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A check that reports, for each host given, the first line of var/status/HOST (unknown if there
# is none). The shell's own read, not a cat per host: with dozens of hosts on three nodes, the
# forks alone kept the 2-core test machine busy.
STATUS_FROM_FILES = """\
#!/bin/sh
out=""
for h in "$@"; do
  s=unknown
  [ -r "$HA_HOME/var/status/$h" ] && read -r s < "$HA_HOME/var/status/$h"
  out="$out{\\"host\\": \\"$h\\", \\"status\\": \\"$s\\"},"
done
echo "[${out%,}]"
"""

# An action that appends one line per run: its arguments and the HA_* environment it saw.
RECORD = """\
#!/bin/sh
echo "$(basename "$0") $* | host=$HA_HOST from=$HA_FROM to=$HA_TO resumed=$HA_RESUMED" \
  >> "$HA_HOME/var/actions.log"
"""


# Two failing commands, one marked '-': the sequence runs one, two, and stops at the second.
KEEP_GOING = """
[unknown_to_down]
record one
-false
record two
false
record three
"""


# A [daemon] section for tests: checks every 0.1 s.
FAST = """\
[daemon]
interval = 0.1
timeout = 5
workers = 2
"""


def status_of(home, host):
    """The committed status of host, None if the daemon has not seen it."""
    return home.status()["hosts"].get(host, {}).get("status")


def committed(home, host, status):
    """A predicate for wait_for: host's committed status is status."""
    return lambda: status_of(home, host) == status


class Home:
    """A temporary hadaemon home with its own checks and actions."""

    cli_prefix = ()  # e.g. ip netns exec NS, for a CLI that reads etcd (Home.__new__ skips init)

    def __init__(self, root, cli_prefix=()):
        self.root = Path(root)
        self.cli_prefix = tuple(cli_prefix)
        for d in ("etc", "checks", "actions", "var/status"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.script("actions", "record", RECORD)
        self.script("checks", "status_from_files", STATUS_FROM_FILES)

    def script(self, kind, name, text):
        path = self.root / kind / name
        path.write_text(textwrap.dedent(text))
        path.chmod(0o755)
        return path

    def write(self, name, text):
        path = self.root / "etc" / name
        path.write_text(textwrap.dedent(text))
        return path

    def set_status(self, host, status):
        tmp = self.root / "var/status" / f".{host}.tmp"
        tmp.write_text(status + "\n")
        tmp.rename(self.root / "var/status" / host)

    def actions_log(self):
        path = self.root / "var/actions.log"
        return path.read_text().splitlines() if path.exists() else []

    def cli(self, *args, check=False, timeout=60):
        result = subprocess.run([*self.cli_prefix, sys.executable, "-m", "hadaemon", "--home",
                                 str(self.root), *args],
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"hadaemon {' '.join(args)} exited {result.returncode}: "
                                 f"{result.stderr}{result.stdout}")
        return result

    def status(self):
        result = self.cli("status", "--json")
        return json.loads(result.stdout)

    def history(self):
        return json.loads(self.cli("history", "--json", "--limit", "1000", check=True).stdout)

    def log(self):
        path = self.root / "test-daemon.log"
        return path.read_text() if path.exists() else ""


class Daemon:
    """`hadaemon run` as a real child process.

    Its stderr goes to HOME/test-daemon.log, outside var/ (which a test may fill).
    """

    def __init__(self, home, prefix=()):
        self.home = home
        self.prefix = list(prefix)  # e.g. ip netns exec NS: a wrapper that execs the daemon
        self.proc = None

    def start(self, wait_ready=True):
        self.home.root.joinpath("var").mkdir(exist_ok=True)
        self._err = open(self.home.root / "test-daemon.log", "a")
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "hadaemon", "--home", str(self.home.root), "run"],
            stdout=self._err, stderr=subprocess.STDOUT, start_new_session=True)
        if wait_ready:
            wait_for(lambda: self.home.cli("status", "--json").returncode == 0 or self._died(),
                     30, "daemon ready")
            assert self.proc.poll() is None, f"daemon died at start:\n{self.home.log()}"
        return self

    def _died(self):
        return self.proc.poll() is not None

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError(f"daemon did not stop within {timeout}s:\n{self.home.log()}")
        self._err.close()
        return self.proc.returncode

    def kill_all(self):
        """SIGKILL the supervisor and every process of its session (checks run in their own)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def home(tmp_path):
    return Home(tmp_path / "home")


@pytest.fixture
def daemons():
    """Start daemons with daemons(home); every one is stopped at the end of the test."""
    started = []

    def start(home, **kw):
        d = Daemon(home).start(**kw)
        started.append(d)
        return d
    yield start
    for d in started:
        try:
            if d.proc.poll() is None:
                d.kill_all()
        finally:
            if not d._err.closed:
                d._err.close()
