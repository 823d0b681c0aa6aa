"""Start, run and stop the supervisor: pidfile first, then DaemonContext when detaching.

`start` keeps the terminal until the daemon says it is ready (or why it is not), through a pipe
the daemon writes one line to, so a failed start is reported where it was asked for, not only in
a log somewhere.
"""

import logging
import os
import select
import signal
import sqlite3
import time

import daemon

from . import logsetup, pidfile as pidfilemod
from .store import StoreError


def _supervisor(home, config, foreground):
    from .supervisor import Supervisor  # its backend (local or cluster) follows the config
    return Supervisor(home, config, foreground=foreground)


log = logging.getLogger("hadaemon")


class StartError(Exception):
    pass


def running_pid(home):
    """The pid of this home's supervisor, or None. Only the holder of the pidfile's lock counts
    (pidfile.py): the pid written in a file left by a kill -9 may belong to anyone by now."""
    return pidfilemod.holder(home.pidfile)


def _why_not_writable(path):
    return f"{path} is not writable" if not os.access(path, os.W_OK) else "see its permissions"


def _start_failure(home, e):
    """One line for a start that failed on var/ (read-only, full, unreadable state file)."""
    if isinstance(e, StoreError):
        return str(e)
    if isinstance(e, sqlite3.Error):
        return f"cannot open the state file {home.state_db}: {e}"
    return f"cannot start in {home.root}: {e.strerror or e}" + (
        f" ({e.filename})" if getattr(e, "filename", None) else "")


def _lock(home):
    try:
        home.make_var()
    except OSError as e:
        raise StartError(f"cannot create {home.var}: {e.strerror}") from None
    if pid := running_pid(home):
        raise StartError(_already_runs(home, pid))
    return pidfilemod.PidFile(home.pidfile)


def _already_runs(home, pid):
    return f"hadaemon already runs in {home.root} (pid {pid}, {home.pidfile})"


def run_foreground(home, config):
    """`hadaemon run`: logs to stderr, Ctrl-C (SIGINT) or SIGTERM stops cleanly."""
    pidfile = _lock(home)
    try:
        pidfile.acquire()
    except pidfilemod.AlreadyRunning as e:
        raise StartError(_already_runs(home, e.pid)) from None
    except pidfilemod.CannotCreate:
        raise StartError(f"cannot create {home.pidfile}: {_why_not_writable(home.var)}") from None
    try:
        logsetup.configure(home, config.daemon.log, config.daemon.log_level, foreground=True)
        return _supervisor(home, config, True).run()
    except (StoreError, sqlite3.Error, OSError) as e:
        raise StartError(_start_failure(home, e)) from None
    finally:
        pidfile.release()


def start(home, config, wait=30.0):
    """`hadaemon start`: detach, and return the daemon's pid once it is ready."""
    pidfile = _lock(home)
    ready_r, ready_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(ready_r)
        code = 1
        try:
            code = _daemon_main(home, config, pidfile, ready_w)
        finally:
            os._exit(code)
    os.close(ready_w)
    os.waitpid(child, 0)  # DaemonContext's first fork exits at once
    line = _read_line(ready_r, wait)
    os.close(ready_r)
    if not line.startswith("ready "):
        raise StartError(line or f"hadaemon did not report ready within {wait:g}s; see its log")
    return int(line.split()[1])


def _daemon_main(home, config, pidfile, ready_w):
    context = daemon.DaemonContext(
        working_directory=str(home.root), umask=0o022, pidfile=pidfile,
        files_preserve=[ready_w], signal_map={}, prevent_core=True)
    try:
        context.open()
    except pidfilemod.AlreadyRunning as e:
        os.write(ready_w, f"{_already_runs(home, e.pid)}\n".encode())
        return 1
    except pidfilemod.CannotCreate:
        os.write(ready_w, f"cannot create {home.pidfile}: {_why_not_writable(home.var)}\n"
                 .encode())
        return 1
    except Exception as e:
        os.write(ready_w, f"cannot daemonise: {e}\n".encode())
        return 1
    try:
        where = logsetup.configure(home, config.daemon.log, config.daemon.log_level,
                                   foreground=False)
        sup = _supervisor(home, config, False)
        try:
            sup.setup()
        except (StoreError, sqlite3.Error, OSError) as e:
            why = _start_failure(home, e)
            os.write(ready_w, f"{why}\n".encode())
            log.error("%s", why)
            return 1
        os.write(ready_w, f"ready {os.getpid()} logging to {where}\n".encode())
        os.close(ready_w)
        return sup.serve()
    finally:
        context.close()


def _read_line(fd, wait):
    deadline = time.monotonic() + wait
    data = b""
    while b"\n" not in data and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace").strip()


def stop(home, wait=60.0):
    """SIGTERM the running daemon and wait for it to leave; return its pid or None."""
    pid = running_pid(home)
    if pid is None:
        pidfilemod.clear_stale(home.pidfile)
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if running_pid(home) != pid:  # its lock goes with it, however it ends
            return pid
        time.sleep(0.05)
    raise StartError(f"hadaemon (pid {pid}) did not stop within {wait:g}s")


def signal_reload(home):
    pid = running_pid(home)
    if pid is None:
        raise StartError(f"hadaemon is not running in {home.root}")
    os.kill(pid, signal.SIGHUP)
    return pid
