"""Answers encoded as they are sent, a few members at a time.

The supervisor answers the control socket inside its loop. A status of 100 000 hosts is about
16 MB of JSON: built and encoded at once it would hold the loop for a second, with no check
dispatched meanwhile. So a large part of an answer is a Members or Items value: the members are
made and encoded while the answer is written, a slice per turn of the loop (control.Conn.write),
and the loop turns in between. Each member is read as it is when its slice is encoded: a host
whose result comes in meanwhile shows that result, a host forgotten meanwhile is left out.
"""

import json

SLICE = 100  # members encoded between two looks at the clock


class Members:
    """A JSON object over keys (a list taken now); member(key) -> the value, or None to leave
    the key out (it is gone since)."""

    def __init__(self, keys, member):
        self.keys, self.member = keys, member


class Items:
    """A JSON array whose elements come from pages, an iterator of lists."""

    def __init__(self, pages):
        self.pages = pages


def pieces(value):
    """value as JSON text, in pieces; Members and Items anywhere inside dicts are encoded a
    slice per piece."""
    if isinstance(value, Members):
        yield from _members(value)
    elif isinstance(value, Items):
        yield from _items(value)
    elif isinstance(value, dict) and any(_lazy(v) for v in value.values()):
        yield "{"
        for i, (k, v) in enumerate(value.items()):
            yield f'{", " if i else ""}{json.dumps(str(k))}: '
            yield from pieces(v)
        yield "}"
    else:
        yield json.dumps(value)


def _lazy(value):
    return isinstance(value, (Members, Items)) or (
        isinstance(value, dict) and any(_lazy(v) for v in value.values()))


def _members(m):
    yield "{"
    first = True
    for start in range(0, len(m.keys), SLICE):
        chunk = {}
        for key in m.keys[start:start + SLICE]:
            v = m.member(key)
            if v is not None:
                chunk[key] = v
        if chunk:  # one encoder call per slice, its braces dropped
            yield ("" if first else ", ") + json.dumps(chunk)[1:-1]
            first = False
    yield "}"


def _items(it):
    yield "["
    first = True
    for page in it.pages:
        if page:
            yield ("" if first else ", ") + ", ".join(json.dumps(v) for v in page)
            first = False
    yield "]"


def encode(value):
    """The whole of value at once (a test, or a caller outside the loop)."""
    return "".join(pieces(value))
