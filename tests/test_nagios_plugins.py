"""Nagios plugins work unchanged: Debian's check_tcp and check_procs listed with their own arguments.

No JSON from them: their exit code is the status (0 up, 1 warning, 2 down), for the host named in
their [check:NAME] section. The service they watch is real: a listening socket, a process.
"""

import os
import socket
import subprocess
import sys

import pytest

from conftest import FAST, committed, wait_for

PLUGINS = "/usr/lib/nagios/plugins"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not all(os.access(f"{PLUGINS}/{p}", os.X_OK) for p in ("check_tcp", "check_procs")),
    reason=f"{PLUGINS}/check_tcp and check_procs missing (apt-get install monitoring-plugins-basic)")]


def test_check_tcp_and_check_procs_as_checks(home, daemons):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    marker = f"hadaemon-nagios-{os.getpid()}"
    worker = subprocess.Popen([sys.executable, "-c", "import time, sys; time.sleep(300)", marker])
    try:
        home.write("checks.conf", FAST + f"""
            [local]
            {PLUGINS}/check_tcp -H 127.0.0.1 -p {port} -t 2
            {PLUGINS}/check_procs -a {marker} -c 1:1

            [check:check_tcp]
            host = db-port

            [check:check_procs]
            host = db-worker
            """)
        home.write("actions.conf", """
            [up_to_down]
            record lost %HOST% down=%DOWN%
            """)
        assert "2 check(s)" in home.cli("check-config", check=True).stdout
        daemons(home)
        wait_for(committed(home, "db-port", "up"), 20, "db-port up")
        wait_for(committed(home, "db-worker", "up"), 20, "db-worker up")
        assert home.status()["hosts"]["db-port"]["details"]["output"].startswith("TCP OK")

        listener.close()
        wait_for(committed(home, "db-port", "down"), 20, "db-port down once nothing listens")
        worker.kill()
        worker.wait()
        wait_for(committed(home, "db-worker", "down"), 20, "db-worker down once it is gone")
        wait_for(lambda: len(home.actions_log()) == 2, 20, "both actions")
        assert [line.split(" | ")[0] for line in home.actions_log()] == [
            "record lost db-port down=db-port", "record lost db-worker down=db-port,db-worker"]
        details = home.status()["hosts"]["db-worker"]["details"]
        assert details["exit"] == 2 and details["output"].startswith("PROCS CRITICAL")
    finally:
        listener.close()
        worker.kill()
        worker.wait()
