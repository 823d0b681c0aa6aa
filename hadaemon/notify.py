"""systemd's notify protocol (sd_notify(3)): one datagram of NAME=value lines to $NOTIFY_SOCKET.

The protocol is a single sendto() on an AF_UNIX datagram socket, so it is written here rather
than taken from a package: sdnotify (last release 2017) and sd-notify (2020) are unmaintained,
systemd-python and cysystemd are C extensions that need libsystemd's headers to install.

The variables are taken out of the environment when read, as sd_notify's unset_environment
does: the runner and the commands it starts must not talk to systemd in the daemon's name.
"""

import logging
import os
import socket

log = logging.getLogger("hadaemon")


class Notifier:
    def __init__(self, address, watchdog=None):
        self.address = address  # a path, or "\0name" for an abstract socket
        self.watchdog = watchdog  # seconds between two WATCHDOG=1 (half of WATCHDOG_USEC)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                                  | socket.SOCK_NONBLOCK)
        self.failed = False

    @classmethod
    def from_environment(cls, environ=os.environ):
        """A Notifier if systemd (or anything speaking its protocol) passed $NOTIFY_SOCKET."""
        where = environ.pop("NOTIFY_SOCKET", "")
        usec, for_pid = environ.pop("WATCHDOG_USEC", ""), environ.pop("WATCHDOG_PID", "")
        if not where:
            return None
        if where[0] not in "/@":
            log.error("NOTIFY_SOCKET=%s: only a path or an abstract socket (@name) is supported; "
                      "not notifying", where)
            return None
        watchdog = None
        if usec.isdigit() and int(usec) > 0 and for_pid in ("", str(os.getpid())):
            watchdog = int(usec) / 2e6
        return cls("\0" + where[1:] if where[0] == "@" else where, watchdog)

    def send(self, **fields):
        """Send NAME=value lines (STATUS="..." becomes STATUS=...); True if it was sent."""
        message = "".join(f"{name}={value}\n" for name, value in fields.items())
        try:
            self.sock.sendto(message.encode(), self.address)
        except OSError as e:
            if not self.failed:  # once: a manager gone away must not fill the log
                log.error("cannot notify the service manager at %r: %s", self.address, e)
            self.failed = True
            return False
        self.failed = False
        return True

    def close(self):
        self.sock.close()


class Reporter:
    """What the daemon tells its service manager, and when: READY=1 (with MAINPID, for `start`
    whose supervisor is not the process systemd started) on the first turn of the loop,
    STATUS= when the summary changes, WATCHDOG=1 every half WATCHDOG_USEC while `watching`,
    STOPPING=1 once. Without $NOTIFY_SOCKET it does nothing."""

    def __init__(self, notifier):
        self.notifier = notifier
        self.ready = self.stopping = False
        self.summary = None
        self.next_ping = 0.0

    @property
    def enabled(self):
        return self.notifier is not None

    def tick(self, now, watching, stopping, summary=None):
        n = self.notifier
        if n is None or self.stopping:
            return
        if stopping:
            self.stopping = n.send(STOPPING=1, STATUS="stopping")
            return
        if not self.ready:
            self.ready = n.send(READY=1, MAINPID=os.getpid(), STATUS=summary or "running")
            self.summary = summary
        elif summary is not None and summary != self.summary:
            self.summary = summary if n.send(STATUS=summary) else None
        if watching and n.watchdog and now >= self.next_ping:
            if n.send(WATCHDOG=1):
                self.next_ping = now + n.watchdog
