"""Checks that a killed daemon left running, found by their environment and killed at start.

A check runs in a session of its own, so that its timeout can take down everything it started.
When the whole daemon is killed with -9, nobody is left to do that, and a hung check (with its
children) would run for ever. Every process a check starts carries HA_CHECK and this home's
HA_HOME in its environment, and nothing else of ours does: action commands carry HA_JOB
instead, and a command left running is waited for (runner.py), never killed. The ssh masters
of [ssh:HOST] scopes (sshmaster.py) carry HA_SSH: a killed daemon's are swept the same way.
"""

import os
import signal


def find(home, check=None):
    """The pids whose environment marks them as a check of `home` (or something it started)
    or one of its ssh masters; with `check`, of that check only."""
    home_var = f"HA_HOME={home}".encode()
    check_var = f"HA_CHECK={check}".encode() if check is not None else None
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:  # gone, or another user's (not root): not ours either way
            continue
        if home_var in env and (check_var in env if check_var else
                                any(v.startswith((b"HA_CHECK=", b"HA_SSH=")) for v in env)):
            found.append(int(entry))
    return found


def kill(home, check=None):
    """SIGKILL them; return the pids. Call before any worker of this daemon starts a check,
    or, with `check`, once the worker that ran it is gone (killed as stalled)."""
    pids = find(home, check)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return pids
