"""Every message between the supervisor and its long-lived children (the action runner, the
cluster agent), as small typed values with one encode and one decode.

One message is one SOCK_SEQPACKET datagram. The worker messages are the check protocol
(protocol.py), not these. Two encodings are fixed by what a runner reads: Wake is the bytes
b"wake", Settings a bare JSON object; every other message is a JSON object with a "kind".
decode() raises ValueError on anything else, so a stray or garbled datagram is never taken for
a message.
"""

import json
from dataclasses import dataclass


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
    """To the agent: this node's committed statuses by its own checks (its opinion); `mirror`,
    once per agent, the table this node last mirrored (what it knew of the cluster)."""
    statuses: dict
    mirror: dict | None = None


@dataclass(frozen=True)
class Request:
    """To the agent: an operator request for the leader (pause, resume, transition, handover,
    forget)."""
    request: dict


@dataclass(frozen=True)
class Report:
    """From the agent, after every look at etcd: what it sees of the cluster; `table`, when the
    committed table changed since its last report; `answers`, the leader's answers to this
    node's requests still in etcd ({request id: answer})."""
    cluster: dict
    table: dict | None = None
    answers: dict | None = None


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
