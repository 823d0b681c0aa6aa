"""The control socket: one JSON request line in, one JSON answer out, then close.

The server side never blocks the supervisor: connections are non-blocking and driven by the
supervisor's selector; a client that stalls is dropped after a few seconds. The socket is made
0600 (0660 with socket_group) before anyone can connect, and every caller's credentials are checked
with SO_PEERCRED.
"""

import grp
import json
import logging
import os
import socket
import struct
import time

log = logging.getLogger("hadaemon.control")
MAX_REQUEST = 65536
CLIENT_TIMEOUT = 5.0


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
        """Clients that have taken too long: the caller takes them out of its selector, then
        drops them."""
        return [c for c in self.conns.values() if now - c.opened > CLIENT_TIMEOUT]

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
        self.opened = time.monotonic()
        self.inbuf = bytearray()
        self.outbuf = b""

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
        self.outbuf = (json.dumps(answer) + "\n").encode()

    def write(self):
        """Send what fits; True when everything is sent."""
        try:
            n = self.sock.send(self.outbuf)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        self.outbuf = self.outbuf[n:]
        return not self.outbuf


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
