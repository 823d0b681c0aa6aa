"""Where the HTTP endpoint listens ([http] listen =): HOST:PORT, [IPv6]:PORT, or a UNIX socket
path (one with a '/', relative to the home). Parsed once for check-config and again where the
server binds, so both read it the same way."""

import ipaddress
import os
import re
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})\Z")


@dataclass(frozen=True)
class Address:
    family: int  # AF_INET, AF_INET6 or AF_UNIX
    host: str = ""  # an address or a name (AF_INET: resolved when the server binds)
    port: int = 0
    path: str = ""  # AF_UNIX

    def __str__(self):
        if self.family == socket.AF_UNIX:
            return self.path
        return f"[{self.host}]:{self.port}" if self.family == socket.AF_INET6 else \
            f"{self.host}:{self.port}"


def parse(value, root):
    """An Address from a listen = value; ValueError says why not. root: the home, for a
    relative socket path."""
    value = value.strip()
    if "/" in value:
        path = Path(os.path.normpath(Path(root) / value))
        # var/ is made at start: a fresh home's check-config must not refuse var/http.sock
        if not path.parent.is_dir() and path.parent != Path(os.path.normpath(root)) / "var":
            raise ValueError(f"folder {path.parent} does not exist")
        if len(os.fsencode(str(path))) > 107:  # sun_path holds 108 bytes with its NUL
            raise ValueError(f"socket path {path} is longer than 107 bytes")
        return Address(socket.AF_UNIX, path=str(path))
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, [IPv6]:PORT or a socket path, got {value!r}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"port must be 1 to 65535, got {port!r}")
    if host.startswith("[") and host.endswith("]"):
        try:
            return Address(socket.AF_INET6, str(ipaddress.IPv6Address(host[1:-1])), int(port))
        except ValueError:
            raise ValueError(f"not an IPv6 address: {host!r}") from None
    if not HOST_RE.match(host):
        raise ValueError(f"not a host name or IPv4 address: {host!r} "
                         f"(an IPv6 address goes in brackets: [::1]:PORT)")
    return Address(socket.AF_INET, host, int(port))


def bind(address):
    """A listening, non-blocking socket on address. A socket file left at a UNIX path by an
    earlier server is replaced (any other file is not: that is an error)."""
    if address.family == socket.AF_UNIX:
        try:
            if stat.S_ISSOCK(os.lstat(address.path).st_mode):
                os.unlink(address.path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target = address.path
    else:
        infos = socket.getaddrinfo(address.host, address.port, address.family,
                                   socket.SOCK_STREAM)
        sock = socket.socket(address.family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        target = infos[0][4]
    try:
        sock.bind(target)
        sock.listen(1024)  # a burst of clients waits here, not in SYN retries
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
