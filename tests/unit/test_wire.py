"""The messages between the supervisor and its long-lived children (wire.py)."""

import pytest

from hadaemon import wire


@pytest.mark.parametrize("message", [
    wire.Wake(), wire.Settings({"log": "stderr", "cluster": {"node": "n1"}}),
    wire.Opinions({"db1": "master"}), wire.Opinions({"db1": None}),
    wire.Request({"cmd": "pause", "node": "n1"}),
    wire.Report({"leader": "n1", "stale": False}), wire.Report({"leader": None}, {"db1": {}})])
def test_every_message_survives_the_round_trip(message):
    assert wire.decode(wire.encode(message)) == message


def test_the_bytes_a_runner_reads_stay_as_they_were():
    """A runner reads b"wake" and a bare JSON settings object (runner.py)."""
    assert wire.encode(wire.Wake()) == b"wake"
    assert wire.encode(wire.Settings({"grace": 1})) == b'{"grace": 1}'


@pytest.mark.parametrize("data", [b"done 3", b"", b"[1]", b'{"kind": "nope"}',
                                  b'{"kind": "report"}', b"\xff", b'{"kind": "request", "x": 1}'])
def test_anything_else_is_refused_never_taken_for_a_message(data):
    with pytest.raises(ValueError):
        wire.decode(data)
