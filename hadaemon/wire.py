"""Every message between the supervisor and its long-lived children (the action runner, the
cluster agent), as small typed values with one encode and one decode.

One message is one SOCK_SEQPACKET datagram, of at most DATAGRAM bytes where it carries hosts:
split() cuts such a message into several, each with part of its hosts (a datagram larger than
the socket's buffer cannot be sent at all). The worker messages are the check protocol
(protocol.py), not these. Two encodings are fixed by what a runner reads: Wake is the bytes
b"wake", Settings a bare JSON object; every other message is a JSON object with a "kind".
decode() raises ValueError on anything else, so a stray or garbled datagram is never taken for
a message.
"""

import json
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Wake:
    """To the runner: the journal has a job it may not have seen."""


@dataclass(frozen=True)
class Settings:
    """To every child, at start and after each reload: the one settings dict
    (children.settings)."""
    values: dict


@dataclass(frozen=True)
class Opinions:
    """To the agent: changes of this node's committed statuses by its own checks (its opinion:
    {host: status, or None when withdrawn}). What it starts with comes in its fork
    (cluster/backend.py)."""
    statuses: dict


@dataclass(frozen=True)
class Request:
    """To the agent: an operator request for the leader (pause, resume, transition, handover,
    forget)."""
    request: dict


@dataclass(frozen=True)
class Report:
    """From the agent, after every look at etcd: what it sees of the cluster; `table`, the
    changes of the committed table since its last report ({host: entry, or None when it left
    the table}); `votes`, {host: {node: status}} of the hosts whose opinions changed (all
    of a host's, {} when no live node reports it); `answers`, the leader's answers to this
    node's requests still in etcd ({request id: answer}); `more`: a part of a report split
    (split()) that is not its last."""
    cluster: dict
    table: dict | None = None
    answers: dict | None = None
    votes: dict | None = None
    more: bool = False


DATAGRAM = 64 * 1024  # bytes a message that carries hosts is split to (the socket takes ~200 KiB)


def split(message, *fields, limit=DATAGRAM):
    """message as a list of messages of at most about `limit` bytes each: the dicts in `fields`
    ({host: ...} or None) are cut between them, every other field goes in each."""
    bare = replace(message, **{f: {} for f in fields})
    budget, size = limit - len(encode(bare)), 0
    parts = [{f: {} for f in fields}]
    for field in fields:
        for key, value in (getattr(message, field) or {}).items():
            n = len(json.dumps(key)) + len(json.dumps(value)) + 4
            if size + n > budget and size:
                parts.append({f: {} for f in fields})
                size = 0
            parts[-1][field][key] = value
            size += n
    if "more" in message.__dataclass_fields__:
        return [replace(message, more=i < len(parts) - 1, **part) for i, part in enumerate(parts)]
    return [replace(message, **part) for part in parts]


def flush(sock, outbox):
    """Send the datagrams of outbox (a deque) in order until the socket is full; those sent
    leave it. False if the other end is gone (outbox emptied)."""
    while outbox:
        try:
            sock.send(outbox[0])
        except BlockingIOError:
            return True
        except OSError:
            outbox.clear()
            return False
        outbox.popleft()
    return True


KINDS = {"opinions": Opinions, "request": Request, "report": Report}
WAKE = b"wake"


def encode(message):
    if isinstance(message, Wake):
        return WAKE
    if isinstance(message, Settings):
        return json.dumps(message.values).encode()
    kind = next(k for k, cls in KINDS.items() if isinstance(message, cls))
    body = {name: getattr(message, name) for name in message.__dataclass_fields__}
    return json.dumps(dict(body, kind=kind)).encode()


def decode(data):
    if data == WAKE:
        return Wake()
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"not a message: {e}") from None
    if not isinstance(body, dict):
        raise ValueError("not a message: not a JSON object")
    if "kind" not in body:
        return Settings(body)
    cls = KINDS.get(body.pop("kind"))
    if cls is None:
        raise ValueError("not a message: unknown kind")
    try:
        return cls(**body)
    except TypeError as e:
        raise ValueError(f"not a message: {e}") from None


def receive(sock, log, size=1 << 20):
    """The next message on a child's end of its socket: the message, or None when there was
    none to take (interrupted, or it would block) or it was garbled (logged and dropped: a stray
    datagram must not stop a child). EOFError when the supervisor is gone."""
    try:
        data = sock.recv(size)
    except (InterruptedError, BlockingIOError):
        return None
    except OSError:
        raise EOFError from None
    if not data:
        raise EOFError
    try:
        return decode(data)
    except ValueError as e:
        log.error("garbled message from the supervisor dropped: %s", e)
        return None
