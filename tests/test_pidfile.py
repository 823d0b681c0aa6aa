"""var/hadaemon.pid names this home's supervisor only while it holds its lock: a pid left in
it by a kill -9 and given to another process is never signalled, and never blocks a start.
Daemon tests run against `hadaemon run` and a detached `hadaemon start`.
"""

import os
import subprocess
import sys

import pytest

import procs
from conftest import ROOT, wait_for
from hadaemon import pidfile

DAEMON_MODES = ("run", "start")

HOLD = ("import sys, time; from hadaemon.pidfile import PidFile; PidFile(sys.argv[1]).acquire(); "
        "print('held', flush=True); time.sleep(1000)")


def test_only_the_holder_of_the_pidfile_lock_counts(tmp_path):
    path = tmp_path / "hadaemon.pid"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert holder.stdout.readline() == "held\n"
        assert path.read_text() == f"{holder.pid}\n"
        assert pidfile.holder(path) == holder.pid
        with pytest.raises(pidfile.AlreadyRunning) as e:
            pidfile.PidFile(path).acquire()
        assert e.value.pid == holder.pid
        pidfile.clear_stale(path)  # held: not stale, kept
        assert path.exists()
    finally:
        holder.kill()
        holder.wait()
    assert path.exists() and pidfile.holder(path) is None  # a kill -9 leaves a stale file
    p = pidfile.PidFile(path)
    p.acquire()
    assert path.read_text() == f"{os.getpid()}\n"
    p.release()
    assert not path.exists()
    path.write_text("12345\n")
    pidfile.clear_stale(path)
    assert not path.exists()


def test_a_recycled_pid_in_a_stale_pidfile_is_never_signalled(home, daemons):
    home.write("checks.conf", "[daemon]\ninterval = 0.2\n[local]\nstatus_from_files h1\n")
    home.set_status("h1", "up")
    daemons(home).kill_all()
    pid_path = home.root / "var/hadaemon.pid"
    # The dead supervisor's pid now belongs to an editor on the home's files.
    editor = subprocess.Popen(["bash", "-c", "exec -a hadaemon-editor sleep 1000"])
    try:
        wait_for(lambda: b"hadaemon-editor" in procs.cmdline(editor.pid),
                 10, "the editor runs")
        pid_path.write_text(f"{editor.pid}\n")
        d = daemons(home)  # start is not refused
        assert d.pid != editor.pid and d.alive()
        r = home.cli("stop", check=True)
        assert r.stdout.strip() == f"hadaemon stopped (pid {d.pid})"
        wait_for(lambda: not d.alive(), 30, "the daemon stopped")
        pid_path.write_text(f"{editor.pid}\n")
        r = home.cli("stop", check=True)
        assert r.stdout.strip() == "hadaemon was not running"
        assert not pid_path.exists()  # the stale file is cleared
        r = home.cli("reload")
        assert r.returncode == 3
        assert editor.poll() is None  # never signalled
    finally:
        editor.kill()
        editor.wait()


