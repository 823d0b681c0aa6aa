"""Forking a child of the supervisor: a clean slate of signals and file descriptors."""

import fcntl
import os
import signal
import sys
import traceback


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
    """Fork; the child closes every fd but stdio and `keep`, runs main(*args) and _exits.

    Children leave with os._exit so that nothing of the parent (atexit handlers of the daemon
    context, the pidfile, buffered SQLite state) runs or is flushed twice.
    """
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
        try:
            traceback.print_exc(file=sys.stderr)
        except Exception:
            pass
    finally:
        os._exit(code)
