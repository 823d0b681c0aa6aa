"""Is the daemon still watching? Stale checks, and systemd's notify protocol and watchdog.

The daemon tests run against `hadaemon run` and a detached `hadaemon start`; systemd is played
by a real AF_UNIX datagram socket passed as $NOTIFY_SOCKET.
"""

import os
import signal
import time

import procs
from conftest import datagram_listener, wait_for

DAEMON_MODES = ("run", "start")


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
        self.sock = datagram_listener(str(path))
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
    time.sleep(5 * PING)  # an absence can only be waited out: five pings' worth
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
