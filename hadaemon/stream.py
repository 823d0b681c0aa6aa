"""Answers encoded as they are sent, a few members at a time.

The supervisor answers the control socket inside its loop. A status of 100 000 hosts is about
16 MB of JSON: built and encoded at once it would hold the loop for a second, with no check
dispatched meanwhile. So a large part of an answer is a Members or Items value: the members are
made and encoded while the answer is written, a slice per turn of the loop (control.Conn.write),
and the loop turns in between. Each member is read as it is when its slice is encoded: a host
whose result comes in meanwhile shows that result, a host forgotten meanwhile is left out, a
host that came meanwhile may be in or not; none is there twice.
"""

import json

SLICE = 100  # members encoded between two looks at the clock


class Members:
    """A JSON object over the keys of source (a dict, walked as the answer is sent, never
    copied: a copy of 100 000 keys alone holds the loop 5 ms); member(key) -> the value, or None
    to leave the key out (it is gone since)."""

    def __init__(self, source, member):
        self.source, self.member = source, member


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
    # Keys walked, in a list: a set of 100 000 would hold the loop for ms at each resize and
    # when freed. Looked up (as a set) only once the walk starts again, which is rare.
    walked, seen, chunk, first = [], None, {}, True
    keys = iter(m.source)
    while True:
        try:
            key = next(keys)
        except StopIteration:
            break
        except RuntimeError:  # a host came or went between two slices: walk it again
            keys, seen = iter(m.source), set(walked)
            continue
        if seen is not None and key in seen:
            continue
        walked.append(key)
        v = m.member(key)
        if v is not None:
            chunk[key] = v
        if len(chunk) == SLICE:  # one encoder call per slice, its braces dropped
            yield ("" if first else ", ") + json.dumps(chunk)[1:-1]
            chunk, first = {}, False
    if chunk:
        yield ("" if first else ", ") + json.dumps(chunk)[1:-1]
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
