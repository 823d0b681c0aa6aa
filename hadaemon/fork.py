"""Forking a child of the supervisor: a clean slate of signals and file descriptors."""

import os
import signal
import sys
import traceback


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
