"""The supervisor's long-lived children (the action runner; in cluster mode also the agent):
each started, watched and replaced the same way.

A child that dies is replaced after a delay that doubles while its successors die young (a
crash loop must not spin); one that cannot be started (no descriptors, no memory) is tried again
with back-off, and what it does waits meanwhile: the journal (or etcd) keeps it.
Every child gets the same settings dict, at start and again after each reload (settings()).
"""

import logging
import selectors
import time
from collections import deque

from . import config as configmod, wire
from .backoff import Backoff
from .fork import exec_module
from .selection import close, registered, unregister

log = logging.getLogger("hadaemon")
RESPAWN_DELAY = 1.0  # after a death; doubled while children keep dying young
RESPAWN_MOST = 60.0
YOUNG = 60.0  # a child that dies sooner counts as a crash loop


def settings(config, foreground, resume_upto=0):
    """The settings every child gets, as one JSON-able dict: logging, what running a command
    needs, and in cluster mode the etcd session's under "cluster"."""
    d = config.daemon
    values = {"log": d.log, "log_level": d.log_level, "foreground": foreground,
              "grace": d.grace, "user": d.user, "action_timeout": d.action_timeout,
              "resume_upto": resume_upto, "programs": configmod.programs(config)}
    c = config.cluster
    if c is not None:
        values["cluster"] = {"node": c.node, "name": c.name, "ttl": c.ttl,
                             "fence_margin": c.fence_margin, "poll": c.poll,
                             "endpoints": c.endpoints(), "request_timeout": c.request_timeout,
                             "range_timeout": c.range_timeout}
    return values


class Child:
    """One long-lived child: start(settings) -> (pid, the supervisor's end of its socket)."""

    def __init__(self, name, start, successor, meanwhile, on_message=None, on_exit=None):
        self.name, self.start = name, start  # name: for the log ("action runner")
        # For the log: what its successor does ("resumes the journal"), and what happens while
        # none can be started ("actions wait").
        self.successor, self.meanwhile = successor, meanwhile
        self.on_message, self.on_exit = on_message, on_exit  # on_message(wire message)
        self.pid, self.sock, self.sel = None, None, None
        self.outbox = deque()  # encoded messages posted, not yet taken by the child
        self.started = 0.0
        self.retry = Backoff()  # it could not be started
        self.deaths = Backoff(RESPAWN_DELAY, RESPAWN_MOST)

    def spawn(self, sel, settings):
        self.pid, self.sock = self.start(settings)
        self.started, self.sel = time.monotonic(), sel
        sel.register(self.sock, selectors.EVENT_READ, self._on_readable)
        self._flush()  # what start() posted for it

    def respawn(self, sel, settings, errors):
        """Start it again if it is gone and its delay is over; settings: () -> the settings
        dict; errors: the loop's RateLog."""
        now = time.monotonic()
        if self.pid is not None or not self.retry.ready(now) or not self.deaths.ready(now):
            return
        try:
            self.spawn(sel, settings())
        except OSError as e:
            self.retry.failed(now)
            errors.report(self.name, logging.ERROR,
                          f"cannot start the {self.name}: {e}; {self.meanwhile}, trying "
                          "again")
            return
        self.retry.succeeded()
        errors.clear(self.name, f"{self.name} {self.pid} started")

    def exited(self, sel, pid, how, stopping):
        """Reaped pid: if it was this child, forget it and plan its successor; True if so."""
        if pid != self.pid:
            return False
        self.pid = None
        self.outbox.clear()  # its successor is told everything again at its start
        close(sel, self.sock)
        if not stopping:
            now = time.monotonic()
            if now - self.started > YOUNG:
                self.deaths.succeeded()  # not a crash loop: the next one starts soon
            delay = self.deaths.failed(now)
            log.error("%s %d %s; a new one %s in %gs", self.name, pid, how, self.successor,
                      delay)
        if self.on_exit:
            self.on_exit()
        return True

    def send(self, message):
        """Send one wire message; False if the child is gone or its socket full (what it
        misses it reads from the journal or etcd: nothing is lost)."""
        if self.pid is None:
            return False
        try:
            self.sock.send(wire.encode(message))
            return True
        except (BlockingIOError, OSError):
            return False

    def post(self, messages):
        """Send wire messages in order, none lost while the child lives: what its socket cannot
        take now waits, and goes as soon as it can (the loop watches the socket for it)."""
        self.outbox.extend(wire.encode(m) for m in messages)
        if self.pid is not None:
            self._flush()

    def _flush(self):
        wire.flush(self.sock, self.outbox)  # a child gone is replaced by reaping
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.outbox else 0)
        if registered(self.sel, self.sock) and self.sel.get_key(self.sock).events != events:
            self.sel.modify(self.sock, events, self._on_readable)

    def _on_readable(self, sock, events):
        if events & selectors.EVENT_WRITE:
            self._flush()
        if not events & selectors.EVENT_READ:
            return
        try:
            data = sock.recv(1 << 22)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # EOF: the child is gone, reaping handles it
            unregister(self.sel, sock)
            return
        if self.on_message is None:
            return  # nothing this child says is asked for: any bytes are dropped
        try:
            message = wire.decode(data)
        except ValueError as e:
            log.error("%s %s: garbled message dropped: %s", self.name, self.pid, e)
            return
        self.on_message(message)


def http_server(home, settings):
    """The Child of the HTTP endpoint's server (httpserver.py), exec'd by module name: the
    supervisor, and every worker forked from it, never imports asyncio (10 MiB apiece)."""
    def start(values):
        return exec_module("hadaemon.httpserver", home.root, dict(values, listen=settings.listen))
    return Child("HTTP server", start, "serves again", "no HTTP endpoint meanwhile")
