"""Run one program without a shell: own session, timeout, bounded output, minimal environment.

Used for checks (by workers) and for action commands (by the runner). The child gets its own
session so that a timeout kills everything it started. We wait for the child's exit, not for EOF
on its pipes: a check that leaves a daemon holding stdout must not hold the worker.
"""

import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass

from .home import SAFE_PATH

KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL of a timed-out group


@dataclass
class Outcome:
    rc: int | None  # exit code; negative: killed by that signal; None: could not start
    output: bytes
    errors: bytes
    duration: float
    timed_out: bool = False
    truncated: bool = False
    error: str = ""  # why it could not start, or what cut it short

    def reason(self):
        """One line describing a failure, or '' for a clean exit."""
        if self.error:
            return self.error
        if self.rc is not None and self.rc < 0:
            return f"killed by signal {-self.rc}"
        return ""


def base_environment(home, extra):
    """The documented environment: nothing of the daemon's own but PATH, LANG and HA_HOME."""
    env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "HA_HOME": str(home)}
    env.update(extra)
    return env


def run(argv, timeout, limit, env, cwd=None, merge_output=False, kill_leftovers=True,
        user=None, on_start=None, deadline_hook=None):
    """Run argv; return an Outcome. Never raises for a failure of the program itself.

    deadline_hook() may return a new absolute monotonic deadline (SIGTERM grace in the runner).
    """
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_output else subprocess.PIPE,
            cwd=cwd, env=env, start_new_session=True, close_fds=True,
            user=user or None, group=_group_of(user), extra_groups=[] if user else None)
    except (OSError, ValueError, KeyError) as e:
        return Outcome(None, b"", b"", time.monotonic() - start, error=f"cannot start: {e}")
    if on_start:
        on_start(proc.pid)
    deadline = start + timeout
    buffers = {proc.stdout: bytearray()}
    if proc.stderr is not None:
        buffers[proc.stderr] = bytearray()
    sel = selectors.DefaultSelector()
    for pipe in buffers:
        os.set_blocking(pipe.fileno(), False)
        sel.register(pipe, selectors.EVENT_READ)
    pidfd = os.pidfd_open(proc.pid)
    sel.register(pidfd, selectors.EVENT_READ)
    timed_out = truncated = False
    try:
        exited = False
        while not exited:
            if deadline_hook:
                deadline = min(deadline, deadline_hook() or deadline)
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for key, _ in sel.select(min(left, 0.5)):
                if key.fileobj == pidfd:
                    exited = True
                elif _drain(key.fileobj, buffers[key.fileobj], limit):
                    sel.unregister(key.fileobj)
                if len(buffers[proc.stdout]) > limit:
                    truncated = True
            if truncated and not merge_output:
                break  # a check over its limit is rejected anyway: stop it now
        if exited:
            for pipe in list(buffers):  # what was written before exit, without waiting for EOF
                _drain(pipe, buffers[pipe], limit)
    finally:
        sel.close()
        os.close(pidfd)
    if timed_out or truncated:
        _kill_group(proc)
    elif kill_leftovers:
        signal_group(proc.pid, signal.SIGKILL)
    rc = proc.wait()
    for pipe in buffers:
        pipe.close()
    out = bytes(buffers[proc.stdout])
    if len(out) > limit:
        truncated, out = True, out[:limit]
    errors = bytes(buffers.get(proc.stderr, b""))[:limit] if proc.stderr else b""
    outcome = Outcome(rc, out, errors, time.monotonic() - start, timed_out, truncated)
    if timed_out:
        outcome.error = f"timed out after {timeout:g}s"
    elif truncated:
        outcome.error = f"output exceeds {limit} bytes"
    return outcome


def _drain(pipe, buf, limit):
    """Read what is there; True at EOF. Reading stops growing buf past limit + 1."""
    while True:
        try:
            chunk = os.read(pipe.fileno(), 65536)
        except BlockingIOError:
            return False
        if not chunk:
            return True
        room = limit + 1 - len(buf)
        if room > 0:
            buf += chunk[:room]


def signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group(proc):
    """SIGTERM the session's group, then SIGKILL whatever is left after a short grace."""
    signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(KILL_GRACE)
    except subprocess.TimeoutExpired:
        pass
    signal_group(proc.pid, signal.SIGKILL)


def _group_of(user):
    if not user:
        return None
    import pwd
    return pwd.getpwnam(user).pw_gid
