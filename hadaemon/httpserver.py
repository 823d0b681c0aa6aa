"""The HTTP endpoint ([http] listen =): /metrics and the health endpoints (endpoints.py),
served by a child of the supervisor, read-only.

Why a child process, and not the supervisor's own selector: the supervisor's loop must never
block or slow for a client, and its time and descriptors are the checks'. In a process of its
own the server may be flooded, held open by slow clients or crash without touching the loop:
children.py starts it like the action runner and starts a new one, with back-off, whenever it
dies (it cannot bind, a bug), and what it costs the supervisor does not grow with its clients.
It is started with fork+exec (python -m hadaemon.httpserver), so it holds nothing of the
supervisor's (the SQLite connection, the workers' sockets) and imports prometheus-client in
its own memory only.

Its data is one snapshot of the daemon (the control socket's `snapshot` request: the status,
the per-check counters the supervisor keeps, the newest history), asked for at most once a
second (REFRESH) and only while clients ask; every client in that second is answered from the
same snapshot and the same rendered /metrics. So the supervisor answers one control request a
second at most, however many clients there are. A client waits at most WAIT for a snapshot
being asked for, then gets the last one; one older than MAX_AGE (the supervisor stopped
answering) is not served: health checks say 503 rather than an old status.

Limits, so that no client can hold the server: at most MAX_CONNECTIONS at once, and a new one
beyond them closes the oldest that has not sent its whole request head yet (so idle or slow
connections, however many, never keep a new client out); the whole head within HEAD_TIMEOUT
seconds (a slowloris client is dropped) and MAX_HEAD bytes (431); the answer written within
WRITE_TIMEOUT; one request per connection.
The child leaves when the supervisor is gone (end of file on its socket) or on SIGTERM.
"""

import asyncio
import http
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

from . import listen, logsetup
from .fork import open_stdio
from .home import Home
from .ratelog import RateLog

log = logging.getLogger("hadaemon.http")
REFRESH = 1.0  # seconds a snapshot is served before the next one is asked for
MAX_AGE = 10.0  # seconds after which a snapshot is too old to serve
SNAPSHOT_TIMEOUT = 5.0  # one snapshot request to the supervisor
WAIT = 1.0  # seconds a client waits for a snapshot being asked for
MAX_CONNECTIONS = 256
HEAD_TIMEOUT = 5.0  # seconds a client has to send its whole request head
WRITE_TIMEOUT = 10.0  # seconds a client has to take the answer
LINGER = 1.0  # seconds a refused request may go on being sent after the answer


class Snapshots:
    """The daemon's latest snapshot, asked for on demand at most once per REFRESH; what /metrics
    renders of it, once."""

    def __init__(self, control_path, home=None):
        from .metrics import Tally
        self.control_path = str(control_path)
        self.home = home  # in cluster mode, where the config naming etcd is
        self.cluster_history = None  # () -> the cluster's newest history, read from etcd
        self.latest, self.fetched = None, None  # the snapshot, and when (monotonic)
        self.asked = float("-inf")  # when the last request to the supervisor started
        self.pending = None  # the request in flight: one at a time, shared by all clients
        self.rendered = self.page_rendered = None
        self.tally = Tally()
        self.trouble = RateLog(log)

    async def get(self):
        """A snapshot fresh enough to serve, or None. A client waits at most WAIT for a new
        one: a supervisor slow to answer gets the last one served (up to MAX_AGE), not a
        client timing out."""
        now = time.monotonic()
        if self.latest is not None and now - self.fetched < REFRESH:
            return self.latest
        if self.pending is None and now - self.asked >= REFRESH:
            self.asked = now
            self.pending = asyncio.ensure_future(self._fetch())
        if self.pending is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self.pending), WAIT)
            except asyncio.TimeoutError:
                pass
        if self.latest is None or time.monotonic() - self.fetched > MAX_AGE:
            return None
        return self.latest

    async def _fetch(self):
        try:
            snapshot = await asyncio.wait_for(self._ask(), SNAPSHOT_TIMEOUT)
            if not snapshot.get("ok"):
                raise ValueError(snapshot.get("error"))
            if snapshot["status"].get("cluster") and self.home is not None:
                snapshot["history"] = await self._cluster_history()
        except (OSError, ValueError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            self.trouble.report("snapshot", logging.WARNING,
                                f"HTTP server: no snapshot from the daemon: "
                                f"{type(e).__name__}: {e}")
        else:
            self.trouble.clear("snapshot", "HTTP server: snapshots from the daemon again")
            self.tally.add(snapshot["history"])
            self.latest, self.fetched = snapshot, time.monotonic()
            self.rendered = self.page_rendered = None
        finally:
            self.pending = None

    async def _ask(self):
        reader, writer = await asyncio.open_unix_connection(self.control_path, limit=1 << 16)
        try:
            writer.write(b'{"cmd": "snapshot"}\n')
            await writer.drain()
            return json.loads(await reader.read())
        finally:
            writer.close()

    async def _cluster_history(self):
        """The supervisor never waits for etcd, so it sends no history in cluster mode: it is
        read here, as `hadaemon history` reads it. Without it the snapshot is served all the
        same, with no transitions."""
        try:
            history = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(None, self._read_cluster_history),
                SNAPSHOT_TIMEOUT)
        except Exception as e:  # etcd away, a config that no longer loads: the log says which
            self.trouble.report("history", logging.WARNING,
                                f"HTTP server: no history from etcd: {type(e).__name__}: {e}")
            return []
        self.trouble.clear("history", "HTTP server: history from etcd again")
        return history

    def _read_cluster_history(self):
        if self.cluster_history is None:
            from . import config as configmod
            from .cluster import cli as cluster_cli
            from .requests import SNAPSHOT_HISTORY
            config = configmod.load(Home(self.home))
            self.cluster_history = lambda: cluster_cli.history(config, SNAPSHOT_HISTORY, None)
        return self.cluster_history()

    def metrics(self):
        if self.rendered is None:
            from .metrics import render
            self.rendered = render(self.latest, self.tally)
        return self.rendered

    def page(self):
        """The status page of the latest snapshot, as of its time, rendered once."""
        if self.page_rendered is None:
            from .page import render
            self.page_rendered = render(self.latest["status"], self.latest["history"],
                                        self.latest["time"]).encode()
        return self.page_rendered


class Server:
    def __init__(self, snapshots):
        self.snapshots = snapshots
        self.active = 0
        self.reading = {}  # transport -> None, oldest first: connections still sending a head

    async def handle(self, reader, writer):
        transport = writer.transport
        if self.active >= MAX_CONNECTIONS:
            # The oldest client still sending its head makes room: idle or slow connections
            # cannot keep a new client out, only delay the oldest of themselves.
            if not self.reading:
                transport.abort()  # every slot is writing an answer: this one waits not
                return
            next(iter(self.reading)).abort()
        self.active += 1
        self.reading[transport] = None
        try:
            await self._serve(reader, writer)
        except Exception:  # one client's trouble is its own; the server goes on
            log.debug("HTTP client dropped", exc_info=True)
        finally:
            self.active -= 1
            self.reading.pop(transport, None)
            transport.abort()

    async def _serve(self, reader, writer):
        from . import endpoints, httprequest
        request = None
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except asyncio.LimitOverrunError:
            head = None
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            return  # gone, too slow, or made room for a newer client: nothing to answer
        self.reading.pop(writer.transport, None)  # a whole head: never evicted now
        try:
            if head is None:
                raise httprequest.BadRequest(431, "request head too large")
            request = httprequest.parse(head)
        except httprequest.BadRequest as e:
            response = endpoints.text(e.status, str(e))
        else:
            snapshot = await self.snapshots.get()
            response = endpoints.answer(request, snapshot, self.snapshots.metrics,
                                        self.snapshots.page)
        writer.write(encode(response, head_only=request is not None and
                            request.method == "HEAD"))
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
        if request is None:
            # Closed with its request unread, the connection would be reset and the client
            # might lose the answer: end ours and let it finish sending, briefly.
            writer.write_eof()
            await asyncio.wait_for(_discard(reader), LINGER)


async def _discard(reader):
    while await reader.read(65536):
        pass


def encode(response, head_only=False):
    reason = http.HTTPStatus(response.status).phrase
    head = (f"HTTP/1.1 {response.status} {reason}\r\nContent-Type: {response.content_type}\r\n"
            f"Content-Length: {len(response.body)}\r\nCache-Control: no-store\r\n"
            f"Connection: close\r\n\r\n").encode()
    return head if head_only else head + response.body


async def serve(listener, address, server, sock):
    from .httprequest import MAX_HEAD
    loop = asyncio.get_running_loop()
    gone = loop.create_future()

    def from_supervisor():  # it says nothing the server needs; end of file: it is gone
        try:
            if not sock.recv(65536):
                gone.done() or gone.set_result(None)
        except BlockingIOError:
            pass
        except OSError:
            gone.done() or gone.set_result(None)
    loop.add_reader(sock.fileno(), from_supervisor)
    async with await asyncio.start_server(server.handle, sock=listener, limit=MAX_HEAD):
        log.info("HTTP server %d listening on %s", os.getpid(), address)
        await gone


def _terminate(signum, frame):
    raise SystemExit(0)  # out of the loop through main's finally: a socket file is removed


def main():
    open_stdio()
    home, fd, settings = Home(Path(sys.argv[1])), int(sys.argv[2]), json.loads(sys.argv[3])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    signal.signal(signal.SIGTERM, _terminate)
    sock = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    sock.setblocking(False)
    logsetup.configure_child(home, settings)
    address = listener = None
    try:
        address = listen.parse(settings["listen"], home.root)
        listener = listen.bind(address)
        asyncio.run(serve(listener, address, Server(Snapshots(home.control_socket, home.root)), sock))
    except Exception as e:
        # To the log: a daemon's stderr is /dev/null. The supervisor starts the next one.
        log.error("HTTP server on %s failed: %s: %s", settings["listen"], type(e).__name__, e,
                  exc_info=not isinstance(e, OSError))
        sys.exit(1)
    finally:
        if listener is not None and address.family == socket.AF_UNIX:  # ours, not another's
            try:
                os.unlink(address.path)
            except OSError:
                pass


if __name__ == "__main__":
    main()
