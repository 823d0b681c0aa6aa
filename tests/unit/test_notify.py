"""The systemd notify protocol (hadaemon/notify.py), spoken to a socket of this process."""

import os

from conftest import datagram_listener
from hadaemon import notify


def test_notifier_speaks_to_a_path_or_an_abstract_socket_and_takes_its_variables(tmp_path):
    for where, address in ((str(tmp_path / "n.sock"), str(tmp_path / "n.sock")),
                           (f"@hadaemon-test-{os.getpid()}", f"\0hadaemon-test-{os.getpid()}")):
        with datagram_listener(address) as s:
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

