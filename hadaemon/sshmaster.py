"""The ssh masters: one multiplexed connection per remote target, children of the supervisor.

A master is started when a check of its target is first handed to a worker (lazily: a target
whose checks never run costs nothing), reaped like any child when its connection ends (sshd
gone, the link dead past ServerAliveInterval), and started again on the next check, with
back-off while it keeps failing. Checks do not wait for it: their ssh connects alone while no
master answers. A master runs in the foreground (ControlPersist=no), so the supervisor ends it
on stop, and on reload when no check uses its way of connecting any more; it also dies with
the supervisor (PR_SET_PDEATHSIG), and carries HA_SSH in its environment so that the leftover
sweep (leftovers.py) finds one that survived anyway.
"""

import functools
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass

from . import execute
from .backoff import Backoff
from .ratelog import RateLog

log = logging.getLogger("hadaemon")
RETRY_FIRST, RETRY_MOST = 1.0, 30.0  # seconds between tries of a master that keeps failing
STEADY = 10.0  # a master that lived this long was working: its next start is not delayed
STOP_WAIT = 5.0  # seconds a master gets to leave after SIGTERM
PR_SET_PDEATHSIG = 1


@dataclass
class Master:
    target: object  # sshscope.Target
    popen: subprocess.Popen
    started: float
    ended: bool = False  # told to leave: its exit is awaited


class Masters:
    def __init__(self, home):
        self.home = home  # hadaemon.home.Home
        self.running = {}  # control socket -> Master
        self.retry = {}  # control socket -> Backoff
        self.errors = RateLog(log)

    def ensure(self, target, now):
        """Start target's master unless it runs or its back-off says not yet. One that runs
        but has no socket past the time to connect (removed by hand, or it never got one) serves
        no check: it is ended, and the next check starts another."""
        master = self.running.get(target.socket)
        if master:
            if (not master.ended and now - master.started > target.margin
                    and not os.path.exists(target.socket)):
                log.warning("ssh %s: master %d has no control socket: ending it",
                            target.destination, master.popen.pid)
                execute.signal_group(master.popen.pid, signal.SIGTERM)
                master.ended = True
            return
        retry = self.retry.setdefault(target.socket, Backoff(RETRY_FIRST, RETRY_MOST))
        if not retry.ready(now):
            return
        retry.failed(now)  # until it proves itself (STEADY), the next try waits
        folder = self.home.var / "ssh"
        folder.mkdir(mode=0o700, exist_ok=True)
        try:  # a socket left by a killed master would make ssh refuse to listen
            os.unlink(target.socket)
        except FileNotFoundError:
            pass
        env = execute.base_environment(self.home.root, {"HA_SSH": target.destination})
        try:
            with open(_errors_file(target), "wb") as err:
                popen = subprocess.Popen(target.master_argv(), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err, env=env,
                                         start_new_session=True,
                                         preexec_fn=_die_with_parent(_libc()))
        except OSError as e:
            self.errors.report(target.socket, logging.WARNING,
                               f"ssh {target.destination}: cannot start a master: {e}")
            return
        self.running[target.socket] = Master(target, popen, now)
        log.debug("ssh %s: master %d started", target.destination, popen.pid)

    def exited(self, pid, status, now):
        """Reaped pid: if it was a master, forget it and say why it ended; True if it was."""
        master = next((m for m in self.running.values() if m.popen.pid == pid), None)
        if master is None:
            return False
        master.popen.returncode = os.waitstatus_to_exitcode(status)  # reaped by the loop
        target = master.target
        del self.running[target.socket]
        if now - master.started >= STEADY:
            self.retry[target.socket].succeeded()
        why = _last_line(_errors_file(target)) or f"exit {master.popen.returncode}"
        self.errors.report(target.socket, logging.WARNING,
                           f"ssh {target.destination}: connection ended ({why}); checks "
                           f"connect alone until a new master is up")
        return True

    def retain(self, targets):
        """A reload: end the masters no check of the new config connects through."""
        keep = {t.socket for t in targets}
        self._stop([m for s, m in self.running.items() if s not in keep])
        self.retry = {s: b for s, b in self.retry.items() if s in keep}

    def close(self):
        """Stop: end every master (SIGTERM: ssh closes the connection and its socket)."""
        self._stop(list(self.running.values()))

    def _stop(self, masters):
        for m in masters:
            execute.signal_group(m.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT
        for m in masters:
            try:
                m.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                execute.signal_group(m.popen.pid, signal.SIGKILL)
                m.popen.wait()
            self.running.pop(m.target.socket, None)
            log.debug("ssh %s: master %d closed", m.target.destination, m.popen.pid)


def _errors_file(target):
    return f"{target.socket}.err"


def _last_line(path):
    try:
        with open(path, "rb") as f:
            lines = [x for x in f.read(65536).decode("utf-8", "replace").splitlines() if x.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:200] if lines else ""


@functools.cache
def _libc():
    """libc through ctypes, loaded by the first ssh master: a home without ssh checks keeps
    ctypes (and libffi's pages) out of the supervisor and its workers."""
    import ctypes
    return ctypes.CDLL(None, use_errno=True)


def _die_with_parent(libc):
    """For the child before exec: SIGTERM when the supervisor dies, even by SIGKILL. libc is
    loaded in the parent, so that the child between fork and exec does as little as it can."""
    return lambda: libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
