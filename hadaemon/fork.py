"""Forking a child of the supervisor: a clean slate of signals and file descriptors."""

import fcntl
import json
import logging
import os
import signal
import socket
import sys
import traceback

from . import logsetup


def open_stdio():
    """Give 0, 1 and 2 to /dev/null where they are closed, and make all three inheritable.

    A daemon's descriptors 0-2 may be closed or close-on-exec (DaemonContext's /dev/null).
    Left so, the next file opened lands on 0, 1 or 2, and a child's spawn replaces it with its
    pipes: a lock held on such a descriptor would be silently dropped in every command.
    """
    for fd in (0, 1, 2):
        try:
            fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        os.set_inheritable(fd, True)


def fork_child(main, keep, *args):
    """Fork; the child closes every fd but stdio, `keep` and the log's, runs main(*args) and
    _exits.

    Children leave with os._exit so that nothing of the parent (atexit handlers of the daemon
    context, the pidfile, buffered SQLite state) runs or is flushed twice. What kills a child
    goes to the daemon's log with its traceback: a daemon's stderr is /dev/null.
    """
    keep = list(keep) + logsetup.descriptors()
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_DFL)
        # Ctrl-C in a terminal reaches the whole foreground group; only the supervisor decides.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        keep = sorted(set(keep))
        low = 3
        for fd in keep:
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, os.sysconf("SC_OPEN_MAX"))
        main(*args)
    except BaseException:
        code = 1
        _report(main)
    finally:
        os._exit(code)


def with_socket(start, pair=None):
    """Start a child that talks over a SEQPACKET socketpair: start(its end) returns the pid.
    Return (pid, our end, non-blocking). `pair` makes the pair (default: a plain one). A failure
    (no descriptors, no memory for the fork) leaves no socket behind: the caller tries again."""
    parent, child = pair() if pair else socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        pid = start(child)
    except BaseException:
        parent.close()
        raise
    finally:
        child.close()
    parent.setblocking(False)
    return pid, parent


def exec_module(module, home, settings, site=True):
    """Start `python -m MODULE HOME FD SETTINGS` on a new socket pair (FD its end, SETTINGS one
    JSON dict); return (pid, our end). fork+exec, not fork: the child holds nothing of ours
    (the SQLite connection, the workers' sockets, their pages).

    site=False (python -S) for a module that needs the standard library and this package only
    (on PYTHONPATH, see _environment): the .pth hooks site would run (an editable install's
    finder, setuptools' shim, whatever else is installed) cost the interpreter 1.5 MiB of its
    own here, for nothing."""
    def start(child):
        os.set_inheritable(child.fileno(), True)
        argv = [sys.executable, *(() if site else ("-S",)), "-m", module, str(home),
                str(child.fileno()), json.dumps(settings)]
        return os.posix_spawn(sys.executable, argv, _environment(),
                              setsigdef=(signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD))
    return with_socket(start)


def _environment():
    """Ours, with the place this package was imported from first on the child's path: a
    zipapp (hadaemon.pyz) or a checkout is not on the interpreter's own. Commands and checks
    do not inherit it (execute.base_environment)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, env.get("PYTHONPATH"))))
    return env


def fork_with_socket(main, *args, pair=None):
    """fork_child(main, its end of a new socketpair, *args), through with_socket."""
    return with_socket(lambda child: fork_child(main, [child.fileno()], child, *args), pair)


def _report(main):
    log = logging.getLogger("hadaemon")
    try:
        if log.handlers:
            log.critical("%s.%s (pid %d) failed", main.__module__, main.__qualname__,
                         os.getpid(), exc_info=True)
        else:
            traceback.print_exc(file=sys.stderr)
    except Exception:
        pass
