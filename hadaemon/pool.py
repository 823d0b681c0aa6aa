"""The pre-forked workers: spawn, hand out jobs, reap, respawn.

Each worker has its own SOCK_SEQPACKET socketpair: message boundaries come for free and no path
on disk is needed. The supervisor reaps every child itself and tells the pool which pid died.
"""

import os
import signal
import socket
from dataclasses import dataclass, field

from . import protocol, worker
from .fork import fork_with_socket


@dataclass
class Worker:
    pid: int
    sock: socket.socket
    job: dict | None = None  # the job in flight
    meta: dict = field(default_factory=dict)  # supervisor's bookkeeping for the job in flight
    left: int = 0  # jobs it takes before it leaves to be recycled


def socketpair():
    """A SEQPACKET pair whose buffers hold one maximal message (the default holds ~200 KiB).

    The plain options are capped by net.core.wmem_max (208 KiB on a stock kernel); as root the
    FORCE options are not. Where neither reaches, a worker reports a result that does not fit
    as a failure of its check (worker.main)."""
    pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for s in pair:
        for force, plain in ((SO_SNDBUFFORCE, socket.SO_SNDBUF),
                             (SO_RCVBUFFORCE, socket.SO_RCVBUF)):
            try:
                s.setsockopt(socket.SOL_SOCKET, force, 2 * protocol.MAX_MESSAGE)
            except OSError:  # not root (no CAP_NET_ADMIN)
                s.setsockopt(socket.SOL_SOCKET, plain, 2 * protocol.MAX_MESSAGE)
    return pair


# Linux's values; the socket module does not name them.
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33


class Pool:
    def __init__(self, home, size, max_jobs):
        self.home = str(home)
        self.size = size
        self.max_jobs = max_jobs
        self.workers = {}  # pid -> Worker

    def missing(self):
        return max(0, self.size - len(self.workers))

    def spawn(self):
        """Fork one worker and return it. OSError (no descriptors, no memory for a fork) leaves
        nothing behind: the caller tries again later."""
        pid, parent = fork_with_socket(worker.main, self.home, self.max_jobs, pair=socketpair)
        w = Worker(pid, parent, left=self.max_jobs)
        self.workers[pid] = w
        return w

    def idle(self):
        # A worker that has had its last job is leaving: a job sent now would die with it.
        return [w for w in self.workers.values() if w.job is None and w.left > 0]

    def send(self, w, job, data, meta):
        """Hand a job (data: its message) to an idle worker; False if its socket is gone."""
        try:
            w.sock.send(data)
        except OSError:
            return False
        w.job, w.meta = job, meta
        w.left -= 1
        return True

    def receive(self, w):
        """Read one result from a worker whose socket is readable; None at EOF."""
        try:
            data = w.sock.recv(protocol.MAX_MESSAGE)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            return None
        return data

    def finished(self, w):
        meta = w.meta
        w.job, w.meta = None, {}
        return meta

    def lost(self, pid):
        """A worker died: forget it; return it (with its in-flight job, if any) or None."""
        w = self.workers.pop(pid, None)
        if w:
            w.sock.close()
        return w

    def resize(self, size, max_jobs):
        """A reload changed the pool: extra idle workers are told to leave."""
        self.size, self.max_jobs = size, max_jobs
        extra = len(self.workers) - size
        for w in self.idle()[:max(extra, 0)]:
            w.left = 0  # out of idle() now: a job sent before it is reaped would die with it
            self.signal(w, signal.SIGTERM)

    def signal(self, w, sig):
        try:
            os.kill(w.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self):
        for w in list(self.workers.values()):
            self.signal(w, signal.SIGTERM)
