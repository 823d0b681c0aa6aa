"""TCP ports for the servers the tests start (etcd, the HTTP endpoint), free when handed out.

A port the kernel picks with bind(0) comes from the ephemeral range, where every outgoing
connection of every process also takes its local port: between the test closing its probe and
etcd binding the port, an etcd client's or another test's connection may take it. Ports here
come from below that range (20000-32767), where the kernel hands out none, and each pytest-xdist
worker (gw0, gw1, ...) has a slice of its own, so that two workers never pick the same one; each
is probed with a bind before it is handed out (a server of an earlier test may still hold it).
"""

import itertools
import os
import socket

LOW, HIGH = 20000, 32768  # the default ip_local_port_range starts at 32768
SLICES = 12  # workers beyond that share slices: the bind probe still skips a port in use


def _slice():
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw3" under xdist
    index = int(worker[2:]) if worker[2:].isdigit() else os.getpid()
    size = (HIGH - LOW) // SLICES
    start = LOW + (index % SLICES) * size
    return start, size


_start, _size = _slice()
_next = itertools.count(os.getpid() % _size)  # another run of the suite starts elsewhere


def _bindable(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n):
    """n distinct ports no socket on this machine holds now."""
    found = []
    for _ in range(_size):
        port = _start + next(_next) % _size
        if port not in found and _bindable(port):
            found.append(port)
            if len(found) == n:
                return found
    raise AssertionError(f"fewer than {n} free ports in {_start}-{_start + _size - 1}")


def free_port():
    return free_ports(1)[0]
