"""Is the daemon still watching? Stale checks, and systemd's notify protocol and watchdog.

The daemon tests run against `hadaemon run` and a detached `hadaemon start`; systemd is played
by a real AF_UNIX datagram socket passed as $NOTIFY_SOCKET.
"""

import logging
import os
import signal
import socket
import time
from types import SimpleNamespace

import procs
from conftest import wait_for
from hadaemon import notify, stale

DAEMON_MODES = ("run", "start")


def check(cid, interval=1.0, timeout=2.0, host=""):
    return SimpleNamespace(id=cid, interval=interval, timeout=timeout, host=host)


# -- the stale rule ---------------------------------------------------------------------------

def test_a_check_is_stale_past_two_intervals_plus_its_timeout():
    c = check("c", interval=1.0, timeout=2.0)
    assert stale.limit(c) == 4.0
    assert stale.stale_checks([c], {"c": 10.0}, 14.0) == {}
    assert stale.stale_checks([c], {"c": 10.0}, 14.5) == {"c": 4.5}
    assert stale.stale_checks([c], {}, 100.0) == {}  # not watched yet: not stale


def test_the_hosts_of_stale_checks_are_stale():
    assert stale.stale_hosts({"a": 5.0}, {"a": {"h2", "h1"}, "b": {"h3"}}) == ["h1", "h2"]
    assert stale.stale_hosts({"c": 5.0}, {"a": {"h1"}}) == []


def test_freshness_follows_results_and_logs_each_change_once(caplog):
    caplog.set_level(logging.INFO, logger="hadaemon")
    a, b = check("a", host="h9"), check("b", interval=10.0)
    f = stale.Freshness()
    # Before its first result a check counts from when it began to be watched; the table says
    # which hosts it reported before a restart.
    f.update([a, b], {"h1": {"check": "a"}, "h2": {"check": "x"}}, now=0.0)
    assert f.hosts["a"] == {"h1", "h9"} and f.stale == []
    f.result("a", ["h1"], 1.0)
    f.result("b", [], 1.0)
    assert not f.update([a, b], {}, 4.9)
    assert f.update([a, b], {}, 5.1) and f.stale == ["h1"] and list(f.checks) == ["a"]
    f.update([a, b], {}, 6.0)
    f.result("a", [], 6.5)  # a failure names no host: a still reports h1
    assert f.hosts["a"] == {"h1"}
    assert not f.update([a, b], {}, 7.0) and f.stale == []
    f.update([a, b], {}, 30.0)  # a again; b never named a host: the check itself is stale
    assert f.stale == ["h1"] and set(f.checks) == {"a", "b"}
    f.update([a, b], {}, 31.0)
    assert not f.update([], {}, 32.0) and f.last == {}  # a reload removed both
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "h1: stale: check a has had no result for 4.1s", "h1: no longer stale",
        "h1: stale: check a has had no result for 23.5s",
        "check b: stale: no result for 29.0s", "h1: no longer stale"]


# -- the notify protocol ----------------------------------------------------------------------

def listener(address):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(address)
    s.settimeout(5)
    return s


def test_notifier_speaks_to_a_path_or_an_abstract_socket_and_takes_its_variables(tmp_path):
    for where, address in ((str(tmp_path / "n.sock"), str(tmp_path / "n.sock")),
                           (f"@hadaemon-test-{os.getpid()}", f"\0hadaemon-test-{os.getpid()}")):
        with listener(address) as s:
            env = {"NOTIFY_SOCKET": where, "WATCHDOG_USEC": "3000000", "PATH": "/bin"}
            n = notify.Notifier.from_environment(env)
            assert env == {"PATH": "/bin"}  # children must not notify in our name
            assert n.watchdog == 1.5
            assert n.send(READY=1, STATUS="2 host(s)")
            assert s.recv(4096) == b"READY=1\nSTATUS=2 host(s)\n"
            n.close()
    other = {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}
    assert notify.Notifier.from_environment(other).watchdog is None  # meant for pid 1
    assert notify.Notifier.from_environment({}) is None
    assert notify.Notifier.from_environment({"NOTIFY_SOCKET": "vsock:2:9"}) is None


# -- stale checks, READY, STATUS, the watchdog, STOPPING ---------------------------------------

# With one worker, a check that waits while var/block exists (well within its long timeout, so
# it is not stale itself) keeps the other check from running: that one goes stale.
BLOCKS = """\
#!/bin/sh
i=0
while [ -e "$HA_HOME/var/block" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
echo '{"host": "h2", "status": "up"}'
"""

WATCHED = """\
[daemon]
interval = 0.2
timeout = 1
workers = 1
[local]
status_from_files h1
blocks
[check:blocks]
timeout = 1000
"""

PING = 0.2  # seconds between two WATCHDOG=1 (WATCHDOG_USEC is twice that)


class Manager:
    """The service manager's end of $NOTIFY_SOCKET: every datagram received, in order."""

    def __init__(self, path):
        self.sock = listener(str(path))
        self.sock.setblocking(False)
        self.got = []

    def read(self):
        while True:
            try:
                self.got.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.got

    def has(self, line, since=0):
        return any(line in m.splitlines() for m in self.read()[since:])

    def statuses(self, since=0):
        return [line for m in self.read()[since:] for line in m.splitlines()
                if line.startswith("STATUS=")]


def test_a_check_that_stops_running_makes_its_hosts_stale_and_starves_the_watchdog(
        home, daemons, tmp_path):
    home.write("checks.conf", WATCHED)
    home.script("checks", "blocks", BLOCKS)
    home.set_status("h1", "up")
    path = tmp_path / "notify"
    manager = Manager(path)
    d = daemons(home, env=dict(os.environ, NOTIFY_SOCKET=str(path),
                               WATCHDOG_USEC=str(int(2 * PING * 1e6))))
    wait_for(lambda: manager.has("READY=1"), 20, "READY=1")
    ready = next(m for m in manager.got if "READY=1" in m.splitlines())
    assert f"MAINPID={d.pid}" in ready.splitlines()
    wait_for(lambda: manager.has("WATCHDOG=1"), 20, "the watchdog fed")
    wait_for(lambda: any(s.startswith("STATUS=2 host(s), 0 stale") for s in manager.statuses()),
             20, "a STATUS= summary")
    r = home.cli("status", "--json")
    assert r.returncode == 0

    (home.root / "var/block").touch()
    wait_for(lambda: home.cli("status").returncode == 4, 20, "status exits 4: stale")
    s = home.status()
    assert s["hosts"]["h1"]["stale"] and not s["hosts"]["h2"]["stale"]
    assert s["daemon"]["stale"]["hosts"] == ["h1"]
    assert list(s["daemon"]["stale"]["checks"]) == ["status_from_files"]
    text = home.cli("status").stdout
    assert "STALE: no result for more than 2 x interval + timeout from status_from_files" in text
    assert "hosts not watched: h1" in text and "up (stale)" in text
    # systemd is told, and no longer fed: a daemon that stopped watching gets restarted.
    wait_for(lambda: any(", 1 stale" in st for st in manager.statuses()), 20, "STATUS= stale")
    mark = len(manager.read())
    time.sleep(5 * PING)
    assert not manager.has("WATCHDOG=1", since=mark)
    assert d.alive()

    (home.root / "var/block").unlink()
    wait_for(lambda: home.cli("status").returncode == 0, 20, "fresh again")
    mark = len(manager.read())
    wait_for(lambda: manager.has("WATCHDOG=1", since=mark), 20, "the watchdog fed again")
    wait_for(lambda: "h1: no longer stale" in home.log(), 20, "fresh again logged")
    log = home.log()
    assert log.count("h1: stale: check status_from_files has had no result") == 1
    assert log.count("h1: no longer stale") == 1

    # A loop that stops turning stops feeding the watchdog.
    os.kill(d.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: procs.state(d.pid) == "T", 10, "the supervisor stopped")
        mark = len(manager.read())
        time.sleep(5 * PING)  # an absence can only be waited out: five pings' worth
        assert not manager.has("WATCHDOG=1", since=mark)
    finally:
        os.kill(d.pid, signal.SIGCONT)
    mark = len(manager.read())
    wait_for(lambda: manager.has("WATCHDOG=1", since=mark), 20, "the watchdog fed again")
    assert d.stop() == 0
    assert manager.has("STOPPING=1")
