"""Where log lines go: stderr in the foreground, syslog (or var/hadaemon.log) as a daemon."""

import logging
import logging.handlers
import os
from pathlib import Path

FORMAT = "%(asctime)s hadaemon[%(process)d] %(levelname)s %(message)s"


def configure(home, target, level, foreground):
    """Replace the handlers of the 'hadaemon' logger; return a one-line description."""
    logger = logging.getLogger("hadaemon")
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    logger.setLevel(level.upper())
    logger.propagate = False
    handlers, where = [], []
    if foreground:
        handlers.append(logging.StreamHandler())
        where.append("stderr")
    if target == "auto" and not foreground:
        target = "syslog" if os.path.exists("/dev/log") else str(home.logfile)
    if target == "syslog":
        h = logging.handlers.SysLogHandler("/dev/log", facility="daemon")
        h.setFormatter(logging.Formatter("hadaemon[%(process)d]: %(levelname)s %(message)s"))
        logger.addHandler(h)
        where.append("syslog")
    elif target not in ("auto", "stderr"):
        path = Path(target) if os.path.isabs(target) else home.root / target
        handlers.append(logging.handlers.WatchedFileHandler(path))
        where.append(str(path))
    elif target == "stderr" and not foreground:
        handlers.append(logging.StreamHandler())
        where.append("stderr")
    for h in handlers:
        h.setFormatter(logging.Formatter(FORMAT))
        logger.addHandler(h)
    return ", ".join(where)
