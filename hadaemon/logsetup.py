"""Where log lines go: stderr in the foreground, syslog (or var/hadaemon.log) as a daemon."""

import logging
import logging.handlers
import os
from pathlib import Path

FORMAT = "%(asctime)s hadaemon[%(process)d] %(levelname)s %(message)s"


def configure(home, target, level, foreground):
    """Replace the handlers of the 'hadaemon' logger; return a one-line description.
    The new handlers are opened first: if one cannot be (OSError), the old ones stay."""
    logger = logging.getLogger("hadaemon")
    handlers, where = [], []
    if foreground:
        handlers.append(logging.StreamHandler())
        where.append("stderr")
    if target == "auto" and not foreground:
        target = "syslog" if os.path.exists("/dev/log") else str(home.logfile)
    syslog = None
    try:
        if target == "syslog":
            syslog = logging.handlers.SysLogHandler("/dev/log", facility="daemon")
            syslog.setFormatter(
                logging.Formatter("hadaemon[%(process)d]: %(levelname)s %(message)s"))
            where.append("syslog")
        elif target not in ("auto", "stderr"):
            path = log_path(home, target)
            handlers.append(logging.handlers.WatchedFileHandler(path))
            where.append(str(path))
        elif target == "stderr" and not foreground:
            handlers.append(logging.StreamHandler())
            where.append("stderr")
    except OSError:
        for h in handlers:
            h.close()
        raise
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    logger.setLevel(level.upper())
    logger.propagate = False
    for h in handlers:
        h.setFormatter(logging.Formatter(FORMAT))
        logger.addHandler(h)
    if syslog:
        logger.addHandler(syslog)
    return ", ".join(where)


def log_path(home, target):
    """The file a `log =` setting other than auto, stderr or syslog names."""
    return Path(target) if os.path.isabs(target) else home.root / target


def descriptors():
    """The descriptors above 2 the log writes to (its file, the syslog socket): a forked child
    keeps them, so that what goes wrong in it reaches the log too."""
    fds = []
    for h in logging.getLogger("hadaemon").handlers:
        target = getattr(h, "stream", None) or getattr(h, "socket", None)
        try:
            fd = target.fileno()
        except (AttributeError, OSError, ValueError):
            continue
        if fd > 2:
            fds.append(fd)
    return fds


def configure_child(home, settings):
    """Logging for a child of the supervisor, from the settings it was given: the forked
    cluster agent and the exec'd action runner (python -m hadaemon.runner, either mode). A forked
    child's handlers, inherited from the supervisor, point at descriptors fork_child closed, so
    they are dropped, not closed; an exec'd runner starts with none."""
    logger = logging.getLogger("hadaemon")
    for h in list(logger.handlers):
        logger.removeHandler(h)
    configure(home, settings["log"], settings["log_level"], settings["foreground"])
