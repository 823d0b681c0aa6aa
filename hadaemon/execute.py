"""Run one program without a shell: own session, timeout, bounded output, minimal environment.

Used for checks (by workers) and for action commands (by the runner). The child gets its own
session so that a timeout kills everything it started. We wait for the child's exit, not for EOF
on its pipes: a check that leaves a daemon holding stdout must not hold the worker.
"""

import os
import select
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
    env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8"}
    env.update(extra)
    env["HA_HOME"] = str(home)  # last: nothing in extra may stand for the home
    return env


def run(argv, timeout, limit, env, cwd=None, merge_output=False, kill_leftovers=True,
        user=None, on_start=None, deadline_hook=None, pass_fds=(), stdin=None):
    """Run argv; return an Outcome. Never raises for a failure of the program itself.

    deadline_hook() may return a new absolute monotonic deadline (SIGTERM grace in the runner).
    pass_fds: descriptors the program keeps; they must be inheritable (os.set_inheritable).
    stdin: a file the program reads as its standard input (default /dev/null).
    Without cwd and user the program is started with posix_spawn: it inherits only inheritable
    descriptors (Python opens every descriptor non-inheritable) and the caller's directory.
    """
    if any(fd <= 2 for fd in pass_fds):  # the spawn replaces 0-2 with /dev/null and the pipes
        raise ValueError(f"descriptors to pass must be above 2: {pass_fds}")
    start = time.monotonic()
    try:
        child = _start(argv, env, cwd, merge_output, user, pass_fds, stdin or os.devnull)
    except (OSError, ValueError, KeyError) as e:
        return Outcome(None, b"", b"", time.monotonic() - start, error=f"cannot start: {e}")
    if on_start:
        on_start(child.pid)
    deadline = start + timeout
    out = bytearray()
    buffers = {child.stdout: out}
    if child.stderr is not None:
        buffers[child.stderr] = bytearray()
    # select.poll rather than selectors: this loop runs once per check, and that module's
    # bookkeeping cost more than the system calls.
    poller = select.poll()
    for fd in (child.pidfd, *buffers):
        poller.register(fd, select.POLLIN)
    timed_out = truncated = exited = False
    try:
        while not exited:
            if deadline_hook:
                deadline = min(deadline, deadline_hook() or deadline)
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for fd, _ in poller.poll(min(left, 0.5) * 1000):
                if fd == child.pidfd:
                    exited = True
                elif _drain(fd, buffers[fd], limit):
                    poller.unregister(fd)
            truncated = len(out) > limit
            if truncated and not merge_output:
                break  # a check over its limit is rejected anyway: stop it now
        if exited:
            for fd, buf in buffers.items():  # what was written before exit, without waiting for EOF
                _drain(fd, buf, limit)
        if timed_out or truncated:
            _kill_group(child)
        elif kill_leftovers:
            signal_group(child.pid, signal.SIGKILL)
        rc = child.reap()
    finally:
        child.close()
    if len(out) > limit:
        truncated, out = True, out[:limit]
    errors = bytes(buffers.get(child.stderr, b""))[:limit]
    outcome = Outcome(rc, bytes(out), errors, time.monotonic() - start, timed_out, truncated)
    if timed_out:
        outcome.error = f"timed out after {timeout:g}s"
    elif truncated:
        outcome.error = f"output exceeds {limit} bytes"
    return outcome


class _Child:
    """A started program: its pid, a pidfd that turns readable at its exit, its pipes' read ends."""

    def __init__(self, pid, stdout, stderr, popen):
        self.pid, self.stdout, self.stderr, self._popen = pid, stdout, stderr, popen
        self.pidfd = os.pidfd_open(pid)

    def exited_within(self, seconds):
        return bool(select.select([self.pidfd], [], [], seconds)[0])

    def reap(self):
        """Wait for the exit; the exit code, or minus the signal that killed it."""
        if self._popen:
            return self._popen.wait()
        return os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])

    def close(self):
        for fd in (self.pidfd, self.stdout, self.stderr):
            if fd is not None:
                os.close(fd)


# subprocess's restore_signals: what Python ignores for itself must not stay ignored in a child.
_RESTORED = (signal.SIGPIPE, signal.SIGXFSZ)


def _start(argv, env, cwd, merge_output, user, pass_fds, stdin):
    """Start argv in a session of its own, stdin from the file stdin, stdout (and stderr) on
    pipes.

    posix_spawn runs no Python between fork and exec and costs the caller a third of what
    subprocess.Popen does (bench/throughput.py); Popen stays for changing user or directory.
    """
    out_r, out_w = os.pipe()
    err_r, err_w = (None, out_w) if merge_output else os.pipe()
    for fd in (out_r, err_r):
        if fd is not None:
            os.set_blocking(fd, False)
    try:
        if user or cwd is not None:
            with open(stdin, "rb") as stdin_file:
                popen = subprocess.Popen(
                    argv, stdin=stdin_file, stdout=out_w, stderr=err_w, cwd=cwd, env=env,
                    start_new_session=True, close_fds=True, pass_fds=pass_fds,
                    user=user or None, group=_group_of(user),
                    extra_groups=[] if user else None)
            pid = popen.pid
        else:
            popen = None
            pid = os.posix_spawn(argv[0], argv, env, setsid=True, setsigdef=_RESTORED,
                                 file_actions=[(os.POSIX_SPAWN_OPEN, 0, stdin, os.O_RDONLY, 0),
                                               (os.POSIX_SPAWN_DUP2, out_w, 1),
                                               (os.POSIX_SPAWN_DUP2, err_w, 2)])
    except BaseException:
        for fd in (out_r, err_r):
            if fd is not None:
                os.close(fd)
        raise
    finally:
        for fd in {out_w, err_w}:
            os.close(fd)
    return _Child(pid, out_r, err_r, popen)


def _drain(fd, buf, limit):
    """Read what is there; True at EOF. Reading stops growing buf past limit + 1."""
    while True:
        try:
            chunk = os.read(fd, 65536)
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


def _kill_group(child):
    """SIGTERM the session's group, then SIGKILL whatever is left after a short grace."""
    signal_group(child.pid, signal.SIGTERM)
    child.exited_within(KILL_GRACE)
    signal_group(child.pid, signal.SIGKILL)


def _group_of(user):
    if not user:
        return None
    import pwd
    return pwd.getpwnam(user).pw_gid
