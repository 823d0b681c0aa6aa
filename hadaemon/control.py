"""The control socket: one JSON request line in, one JSON answer out, then close.

The server side never blocks the supervisor: connections are non-blocking and driven by the
supervisor's selector (Port); a client that stalls is dropped after a few seconds, and at most
MAX_CLIENTS are served at once, so clients cannot starve the workers of descriptors. The socket is made
0600 (0660 with socket_group) before anyone can connect, and every caller's credentials are checked
with SO_PEERCRED.
"""

import grp
import json
import logging
import os
import selectors
import socket
import struct
import time

from . import stream
from .backoff import Backoff
from .selection import registered

log = logging.getLogger("hadaemon.control")
MAX_REQUEST = 65536
CLIENT_TIMEOUT = 5.0
MAX_CLIENTS = 64  # control connections served at once; a client holding many cannot starve workers
ACCEPT_BATCH = 16  # clients accepted in one turn of the loop
ENCODE_BUDGET = 0.001  # seconds of encoding an answer per turn of the loop (stream.py)
OUT_LOW, OUT_HIGH = 256 * 1024, 1024 * 1024  # encode more below LOW, stop at HIGH (bytes)


class ControlError(Exception):
    pass


class Server:
    def __init__(self, path, group=""):
        self.path = str(path)
        self.gid = grp.getgrnam(group).gr_gid if group else None
        if os.path.exists(self.path):
            os.unlink(self.path)  # our own stale socket: the pidfile lock proved nobody runs
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177 if self.gid is None else 0o117)
        try:
            self.sock.bind(self.path)
        finally:
            os.umask(old)
        if self.gid is not None:
            os.chown(self.path, -1, self.gid)
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.conns = {}  # socket -> Conn

    def accept(self):
        """Accept a pending connection; return it, or None if refused."""
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return None
        pid, uid, gid = struct.unpack("3i", conn.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        if not self.allowed(uid, gid):
            log.warning("control socket: refused pid %d uid %d gid %d", pid, uid, gid)
            _send_now(conn, {"ok": False, "error": "permission denied"})
            conn.close()
            return None
        conn.setblocking(False)
        c = Conn(conn)
        self.conns[conn] = c
        return c

    def allowed(self, uid, gid):
        return uid in (0, os.getuid()) or (self.gid is not None and gid == self.gid)

    def stalled(self, now):
        """Clients that have taken too long to ask, or to take their answer: the caller takes
        them out of its selector, then drops them."""
        return [c for c in self.conns.values() if now - c.active > CLIENT_TIMEOUT]

    def drop(self, c):
        self.conns.pop(c.sock, None)
        c.sock.close()

    def close(self):
        for c in list(self.conns.values()):
            self.drop(c)
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.active = time.monotonic()  # connected, or last took part of its answer
        self.inbuf = bytearray()
        self.outbuf, self.sent = bytearray(), 0  # encoded, and how much of it is sent
        self.pending = None  # the answer's pieces not encoded yet (stream.pieces)

    def read(self):
        """Read what is there; return the request dict once complete, 'eof', or None."""
        try:
            chunk = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return "eof"
        if not chunk:
            return "eof" if not self.inbuf else self._parse()
        self.inbuf += chunk
        if b"\n" in self.inbuf or len(self.inbuf) > MAX_REQUEST:
            return self._parse()
        return None

    def _parse(self):
        line = bytes(self.inbuf).split(b"\n", 1)[0]
        if len(line) > MAX_REQUEST:
            return {"error": "request too long"}
        try:
            request = json.loads(line)
        except (ValueError, RecursionError):
            return {"error": "request is not JSON"}
        return request if isinstance(request, dict) else {"error": "request is not an object"}

    def reply(self, answer):
        self.pending = stream.pieces(answer)

    def write(self):
        """Encode a slice of the answer if little is waiting, send what fits; True when
        everything is sent (or the client is gone)."""
        if self.pending is not None and len(self.outbuf) - self.sent < OUT_LOW:
            self._encode()
        try:
            n = self.sock.send(memoryview(self.outbuf)[self.sent:])
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        self.sent += n
        if n:
            self.active = time.monotonic()  # a client that reads is not stalled
        if self.sent == len(self.outbuf):
            self.outbuf, self.sent = bytearray(), 0
            return self.pending is None
        return False

    def _encode(self):
        # Slices until the budget is spent: the loop turns between two, so a large answer
        # never holds it for more than about ENCODE_BUDGET.
        deadline = time.monotonic() + ENCODE_BUDGET
        del self.outbuf[:self.sent]
        self.sent = 0
        for piece in self.pending:
            self.outbuf += piece.encode()
            if time.monotonic() >= deadline or len(self.outbuf) >= OUT_HIGH:
                return
        self.outbuf += b"\n"
        self.pending = None


class Port:
    """The server in the supervisor's selector: answer(request) -> the answer dict; errors:
    the loop's RateLog."""


    def __init__(self, sel, server, answer, errors, stopping):
        self.sel, self.server, self.answer, self.errors = sel, server, answer, errors
        self.stopping = stopping  # () -> bool: no client is let in once stopping
        self.accept_retry = Backoff()
        sel.register(server.sock, selectors.EVENT_READ, self._on_accept)

    def _on_accept(self, sock, events):
        # Several per turn: a burst of clients must not wait one loop turn each.
        conns = self.server.conns
        for _ in range(ACCEPT_BATCH):
            if not self._accept_one() or len(conns) >= MAX_CLIENTS:
                break
        if len(conns) >= MAX_CLIENTS and registered(self.sel, self.server.sock):
            # Descriptors are for workers first: more clients wait in the listen queue.
            self.sel.unregister(self.server.sock)
            self.errors.report("clients", logging.WARNING,
                               f"control socket: {MAX_CLIENTS} clients at once; the next wait")

    def _accept_one(self):
        """Accept a pending client; False when none was (none pending, refused, or no
        descriptor: then the socket is left unwatched for the back-off)."""
        try:
            c = self.server.accept()
        except OSError as e:
            # Out of descriptors (or memory): the connection stays queued, so the socket stays
            # readable and select would return at once for ever. Stop listening for a while;
            # stalled clients are dropped meanwhile, which frees descriptors.
            self.sel.unregister(self.server.sock)
            self.accept_retry.failed(time.monotonic())
            self.errors.report("accept", logging.ERROR,
                               f"control socket: cannot accept a connection: {e}; "
                               "not listening for a moment")
            return False
        if c is None:
            return False
        if self.accept_retry.delay:
            self.accept_retry.succeeded()
            self.errors.clear("accept", "control socket: accepting connections again")
        self.sel.register(c.sock, selectors.EVENT_READ, self._on_client)
        return True

    def resume_accepting(self):
        if (not registered(self.sel, self.server.sock) and not self.stopping()
                and len(self.server.conns) < MAX_CLIENTS
                and self.accept_retry.ready(time.monotonic())):
            self.sel.register(self.server.sock, selectors.EVENT_READ, self._on_accept)
            self.errors.clear("clients")

    def drop_stalled(self):
        for c in self.server.stalled(time.monotonic()):
            self._drop(c)

    def _drop(self, c):
        # Out of the selector before its fd is closed: a closed fd left registered would keep
        # the next client given that number from being registered.
        self.sel.unregister(c.sock)
        self.server.drop(c)

    def _on_client(self, sock, events):
        c = self.server.conns.get(sock)
        if c is None:
            return
        if events & selectors.EVENT_WRITE:
            try:
                done = c.write()
            except Exception:  # a bug while encoding: this client loses its answer, no more
                self.errors.report(("encode",), logging.ERROR,
                                   "internal error encoding an answer", exc_info=True)
                done = True
            if done:
                self._drop(c)
            return
        request = c.read()
        if request is None:
            return
        if request == "eof":
            self._drop(c)
            return
        try:
            answer = self.answer(request)
        except Exception as e:  # the client gets an answer, whatever the bug
            self.errors.report(("answer", type(e)), logging.ERROR,
                               f"internal error answering {str(request.get('cmd'))[:40]!r}",
                               exc_info=True)
            answer = {"ok": False, "error": f"internal error: {e}"}
        c.reply(answer)
        self.sel.modify(sock, selectors.EVENT_WRITE, self._on_client)

    def close(self):
        self.server.close()


def _send_now(conn, answer):
    try:
        conn.setblocking(False)
        conn.send((json.dumps(answer) + "\n").encode())
    except OSError:
        pass


def request(path, message, timeout=10.0):
    """Client side: send one request, return the answer dict; ControlError if unreachable."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
    except FileNotFoundError:
        raise ControlError(f"hadaemon is not running (no control socket at {path})") from None
    except ConnectionRefusedError:
        raise ControlError(f"hadaemon is not running (nobody listens on {path})") from None
    except PermissionError:
        raise ControlError(f"permission denied on {path}") from None
    except OSError as e:  # var/ is not a folder, the path is too long, ...
        raise ControlError(f"hadaemon is not running (cannot reach {path}: {e.strerror or e})"
                           ) from None
    try:
        s.sendall((json.dumps(message) + "\n").encode())
        chunks = []
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    except socket.timeout:
        raise ControlError(f"no answer from hadaemon within {timeout:g}s on {path}") from None
    except OSError as e:  # reset or broken pipe: the daemon went away mid-answer
        raise ControlError(f"connection to hadaemon lost on {path}: {e.strerror or e}") from None
    finally:
        s.close()
    try:
        answer = json.loads(b"".join(chunks))
    except ValueError:
        raise ControlError(f"garbled answer from hadaemon on {path}") from None
    if not answer.get("ok", True) and answer.get("error") == "permission denied":
        raise ControlError(f"permission denied by hadaemon on {path}")
    return answer
