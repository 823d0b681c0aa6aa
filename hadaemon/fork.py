"""Forking a child of the supervisor: a clean slate of signals and file descriptors."""

import fcntl
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
