"""Shared test tools: a temporary home, the real daemon as a process, bounded waits."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import procs
from hadaemon import control, leftovers

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


# A failover sequence: %MASTER% is the host master right after the transition.
FAILOVER = """\
[slave_to_master]
record stopservice1
record unplumb
record plumb %MASTER%
record startservice1
"""


def host_name(i):
    """253 characters, the longest a host name may be."""
    name = f"n{i:04d}-" + "abcdefghij.klmnopqrst-uvwxyz:0123456789_" * 7
    return name[:253]


# A [daemon] section for tests: checks every 0.1 s.
FAST = """\
[daemon]
interval = 0.1
timeout = 5
workers = 2
"""


def new_results(home, *hosts):
    """A counter for wait_for: the results for hosts (every host: none named) the daemon has
    taken since it was made. Each moves its host's last_seen; two between polls count once, so
    the count is a lower bound: waiting for n of them means at least n check runs."""
    start = {h: e.get("last_seen") for h, e in home.status()["hosts"].items()}
    seen = set()

    def count():
        for host, e in home.status()["hosts"].items():
            if (not hosts or host in hosts) and e.get("last_seen") not in (None, start.get(host)):
                seen.add((host, e["last_seen"]))
        return len(seen)
    return count


def datagram_listener(address):
    """An AF_UNIX datagram socket bound to address (a path, or "\\0name": abstract), as a
    service manager's $NOTIFY_SOCKET."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(address)
    s.settimeout(5)
    return s


def http_body(url):
    """The body at url, None while nothing listens there: the HTTP endpoint is a child of the
    daemon's, which may not listen yet when the daemon already answers (a loaded CI)."""
    try:
        return urllib.request.urlopen(url, timeout=10).read()
    except urllib.error.URLError:
        return None


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
        text = textwrap.dedent(text)
        if name == "checks.conf" and self.log_file:
            text = _with_log(text, self.log_file)
        path.write_text(text)
        return path

    log_file = None  # set for a detached daemon: its log goes where a test reads it

    def log_to_file(self):
        """From now on checks.conf sends the log to test-daemon.log (a detached daemon has no
        stderr); the file already written is rewritten."""
        self.log_file = self.root / "test-daemon.log"
        conf = self.root / "etc/checks.conf"
        if conf.exists():
            self.write("checks.conf", conf.read_text())

    def set_status(self, host, status):
        tmp = self.root / "var/status" / f".{host}.tmp"
        tmp.write_text(status + "\n")
        tmp.rename(self.root / "var/status" / host)

    def actions_log(self):
        path = self.root / "var/actions.log"
        return path.read_text().splitlines() if path.exists() else []

    def cli(self, *args, check=False, timeout=60, env=None):
        result = subprocess.run([*self.cli_prefix, sys.executable, "-m", "hadaemon", "--home",
                                 str(self.root), *args],
                                capture_output=True, text=True, timeout=timeout, env=env)
        if check and result.returncode != 0:
            raise AssertionError(f"hadaemon {' '.join(args)} exited {result.returncode}: "
                                 f"{result.stderr}{result.stdout}")
        return result

    # Polls ask the control socket from this process, as the CLI does, without the CLI's start-up
    # (a subprocess each time); the CLI runs only where the daemon does not answer, to read var/.

    def ask(self, message):
        """The daemon's answer to one control request, None if it does not answer."""
        try:
            return control.request(self.root / "var/control.sock", message)
        except control.ControlError:
            return None

    def answers(self):
        """The daemon answers on its control socket."""
        return self.ask({"cmd": "status"}) is not None

    def status(self):
        answer = self.ask({"cmd": "status"})
        if answer is None:  # the last recorded state, read by `hadaemon status` itself
            return json.loads(self.cli("status", "--json").stdout)
        return answer

    def history(self):
        """Single-node history (a cluster's lives in etcd, where `hadaemon history` reads it)."""
        answer = self.ask({"cmd": "history", "limit": 1000, "host": None})
        if answer is None:
            return json.loads(self.cli("history", "--json", "--limit", "1000", check=True).stdout)
        assert answer.get("ok"), f"history refused: {answer}"
        return answer["history"]

    def log(self):
        path = self.root / "test-daemon.log"
        return path.read_text() if path.exists() else ""


class Daemon:
    """The real daemon: `hadaemon run` as a child process, or `hadaemon start` (mode="start"),
    detached as it is deployed, found again by its pid.

    Its log goes to HOME/test-daemon.log, outside var/ (which a test may fill): run's stderr, or
    in start mode a `log =` line the home adds to the [daemon] section it writes.
    """

    def __init__(self, home, prefix=(), mode="run", env=None):
        self.home = home
        self.prefix = list(prefix)  # e.g. ip netns exec NS: a wrapper that execs the daemon
        self.mode = mode
        self.env = env  # the daemon's environment (None: the test's)
        self.proc = None
        self.pid = None

    def start(self, wait_ready=True):
        self.home.root.joinpath("var").mkdir(exist_ok=True)
        self._err = open(self.home.root / "test-daemon.log", "a")
        if self.mode == "start":
            self.home.log_to_file()
            r = self.home.cli("start", timeout=60, env=self.env)
            assert r.returncode == 0, f"start failed: {r.stderr}\n{self.home.log()}"
            self.pid = int((self.home.root / "var/hadaemon.pid").read_text())
            return self
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "hadaemon", "--home", str(self.home.root), "run"],
            stdout=self._err, stderr=subprocess.STDOUT, start_new_session=True, env=self.env)
        self.pid = self.proc.pid
        if wait_ready:
            wait_for(lambda: self.home.answers() or self._died(), 30, "daemon ready")
            assert self.proc.poll() is None, f"daemon died at start:\n{self.home.log()}"
        return self

    def _died(self):
        return self.proc.poll() is not None

    def alive(self):
        """The supervisor still runs (a zombie of a run-mode child does not count)."""
        if self.proc:
            return self.proc.poll() is None
        return procs.alive(self.pid)

    def kill_supervisor(self, sig=signal.SIGKILL):
        """Signal the supervisor alone (its runner and workers stay) and wait until it is gone."""
        os.kill(self.pid, sig)
        if self.proc:
            self.proc.wait()
        else:
            wait_for(lambda: not self.alive(), 30, "the supervisor gone")

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Stop it as an operator would; 0 for a clean stop."""
        if self.mode == "start":
            code = 0
            if self.alive():
                r = self.home.cli("stop", timeout=timeout + 10)
                code = r.returncode or (0 if "INFO stopped" in self.home.log()[-4000:] else 1)
            self._err.close()
            return code
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
        """SIGKILL the supervisor and every process of its group (checks run in their own
        session). A detached daemon leads no group: DaemonContext forks twice."""
        if not self.alive():
            return
        try:
            pgid = os.getpgid(self.pid)
        except ProcessLookupError:
            return
        os.killpg(pgid, signal.SIGKILL)
        if self.proc:
            self.proc.wait()
        else:
            wait_for(lambda: not self.alive(), 30, "the daemon killed")


def _with_log(text, log_file):
    """checks.conf text with `log = FILE` in its [daemon] section, unless it sets a log."""
    lines = text.splitlines(keepends=True)
    if any(line.split("=")[0].strip() == "log" for line in lines):
        return text
    for i, line in enumerate(lines):
        if line.strip() == "[daemon]":
            lines.insert(i + 1, f"log = {log_file}\n")
            return "".join(lines)
    return f"[daemon]\nlog = {log_file}\n" + text


def wait_for(predicate, timeout, what):
    """predicate()'s first true value, asked every 0.05 s at first, then less often (up to
    every 0.25 s): a predicate asks a daemon, or starts a CLI where none answers, and a wait of
    seconds asked 20 times a second cost the suite more CPU than what it waited for."""
    deadline = time.monotonic() + timeout
    pause = 0.05
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(pause)
        pause = min(0.25, pause * 1.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def home(tmp_path):
    return Home(tmp_path / "home")


@pytest.fixture
def daemons(request):
    """Start daemons with daemons(home); every one is killed at the end of the test.

    A module that sets DAEMON_MODES = ("run", "start") runs each of its tests in both modes:
    in the foreground and detached, as deployed."""
    started = []
    mode = getattr(request, "param", "run")

    def start(home, env=None, **kw):
        d = Daemon(home, mode=mode, env=env).start(**kw)
        started.append(d)
        return d
    start.mode = mode
    yield start
    for d in started:
        try:
            d.kill_all()
            # Checks run in a session of their own and outlive a killed daemon (some tests
            # count on it): the test is over, so they go too, or a hung one runs on for ever.
            leftovers.kill(d.home.root)
        finally:
            if not d._err.closed:
                d._err.close()


UNIT = Path(__file__).resolve().parent / "unit"
SHORT_TMP = Path("/tmp/hat")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Temporary folders under /tmp/hat/XXXXXXXX/, not /tmp/pytest-of-root/pytest-N/ (20 bytes
    more, and xdist adds popen-gwN/): a home's ssh control sockets must fit a UNIX socket's 107
    bytes. A run that passes removes its folder (pytest_sessionfinish); a failed one keeps it."""
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        SHORT_TMP.mkdir(mode=0o700, exist_ok=True)
        config.option.basetemp = config._short_tmp = tempfile.mkdtemp(prefix="", dir=SHORT_TMP)


def pytest_sessionfinish(session, exitstatus):
    made = getattr(session.config, "_short_tmp", None)
    if made and exitstatus == 0:
        shutil.rmtree(made, ignore_errors=True)


# The longest tests (CI's --durations: 20 to 100 s each) and then the modules made of long ones
# run first: under -n a long test that starts last runs on alone while the other workers idle.
LONGEST = ("test_bench.py::", "test_walkthrough.py::test_cluster_walkthrough",
           "test_cluster.py::test_a_second_daemon_with_a_node_name_in_use",
           # the two tests of test_install's module-scoped clone together: it is made once
           "test_install.py::test_the_readme_first_command", "test_install.py::test_the_systemd",
           "test_ssh.py::test_readme_ssh",
           "test_walkthrough.py::test_readme_walkthrough", "test_cluster.py::test_resume_fires",
           "test_cluster.py::test_etcd_member_loss", "test_failover_pg.py::test_old_primary",
           "test_cluster.py::", "test_failover_pg.py::", "test_ssh.py::")


def _start_order(item):
    if UNIT in item.path.parents:
        return len(LONGEST) + 1
    name = item.nodeid.rsplit("/", 1)[-1]
    return next((i for i, prefix in enumerate(LONGEST) if name.startswith(prefix)), len(LONGEST))


def pytest_collection_modifyitems(items):
    """tests/unit/ is the fast layer: the pure modules, in this process. Every other test runs
    the daemon, its CLI, a server or a build as processes: slow, left out by `-m "not slow"`."""
    for item in items:
        if UNIT in item.path.parents:
            if "daemons" in item.fixturenames:
                raise pytest.UsageError(f"{item.nodeid}: a unit test starts no daemon")
        else:
            item.add_marker(pytest.mark.slow)
    items.sort(key=_start_order)  # stable: the order within each rank stays the files' own


def pytest_generate_tests(metafunc):
    modes = getattr(metafunc.module, "DAEMON_MODES", None)
    if modes and "daemons" in metafunc.fixturenames:
        metafunc.parametrize("daemons", modes, indirect=True)
    if "server" in metafunc.fixturenames:
        from etcdkit import SERVERS
        # What depends on etcd's own behaviour (its API, leases, paging, compaction, a
        # member's loss, a wipe or a restore) runs against every etcd version here; a scenario
        # of our own rules makes the same requests, so it runs against the oldest (Debian's).
        every = metafunc.definition.get_closest_marker("every_etcd")
        servers = (SERVERS if every else SERVERS[:1]) or [None]
        metafunc.parametrize("server", servers, indirect=True,
                             ids=lambda s: f"etcd{s[0]}" if s else "no-etcd")
