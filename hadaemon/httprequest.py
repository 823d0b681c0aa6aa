"""Reading one HTTP/1.x request head: the method and the path, nothing else is needed.

The server reads at most MAX_HEAD bytes up to the blank line and hands them here; anything
that is not a plain request line and header lines is refused with the status to answer.
"""

import re
from dataclasses import dataclass
from urllib.parse import unquote

MAX_HEAD = 8192  # bytes of request line and headers; more is answered 431
REQUEST_LINE = re.compile(r"([A-Z]{1,16}) (/[!-~]*) HTTP/1\.[01]\Z")
HEADER = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t -~]*\Z")


class BadRequest(Exception):
    def __init__(self, status, why):
        super().__init__(why)
        self.status = status


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # percent-decoded, without the query


def parse(head):
    """A Request from the bytes of a request head (its final blank line included or not)."""
    if len(head) > MAX_HEAD:
        raise BadRequest(431, "request head too large")
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest(400, "request head is not ASCII") from None
    lines = text.rstrip("\r\n").split("\r\n")
    m = REQUEST_LINE.match(lines[0])
    if not m:
        raise BadRequest(400, "not an HTTP/1.x request line")
    for line in lines[1:]:
        if not HEADER.match(line):
            raise BadRequest(400, "malformed header line")
    return Request(m.group(1), unquote(m.group(2).split("?", 1)[0].split("#", 1)[0]))
