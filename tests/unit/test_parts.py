"""Records that grow with the hosts, in parts outside live/ (cluster/parts.py)."""

import base64
import json

from hadaemon.cluster import parts
from hadaemon.cluster.keys import Keys

KEYS = Keys("/t/")


def stored(writes):
    """{key: value} the transactions put, in order (a later put over an earlier one)."""
    kv = {}
    for ops in writes:
        for op in ops:
            p = op["request_put"]
            kv[base64.b64decode(p["key"]).decode()] = base64.b64decode(p["value"])
    return kv


def below(prefix, kv):
    return {k[len(prefix):]: v for k, v in kv.items() if k.startswith(prefix)}


def test_the_pause_is_a_small_header_and_parts_read_back_in_order(monkeypatch):
    monkeypatch.setattr(parts, "PART_HOSTS", 2)
    record = {"at": 5.0, "by": "n2", "statuses": {f"h{i}": "up" for i in range(5)}}
    writes, kept = parts.pause_writes(KEYS, record)
    kv = stored(writes)
    assert [list(stored([w]))[0] for w in writes] == \
        [KEYS.pause_part(0), KEYS.pause_part(1), KEYS.pause_part(2), KEYS.paused]  # header last
    header = json.loads(kv[KEYS.paused])
    assert header == {"at": 5.0, "by": "n2", "parts": 3}
    assert parts.pause_from(header, below(KEYS.pause, kv)) == dict(record, parts=3) == kept
    ops, after = parts.fired_writes(KEYS, kept, {"h1": "down", "h9": "up"})
    kv.update(stored([ops]))
    again = parts.pause_from(json.loads(kv[KEYS.paused]), below(KEYS.pause, kv))
    assert again == after and again["statuses"] == dict(record["statuses"], h1="down", h9="up")
    # a part beyond the header's count (an interrupted pause) is not the header's
    kv[KEYS.pause_part(9)] = b'{"h0": "down"}'
    assert parts.pause_from(header, below(KEYS.pause, kv))["statuses"]["h0"] == "up"


def test_a_pause_stored_whole_by_an_older_version_stays_whole():
    old = {"at": 1.0, "statuses": {"h1": "up"}}
    assert parts.pause_from(old, {}) == old
    ops, after = parts.fired_writes(KEYS, old, {"h1": "down"})
    assert stored([ops]) == {KEYS.paused: json.dumps(after, sort_keys=True).encode()}
    assert parts.pause_from(None, {}) is None


def test_a_refusal_keeps_its_mirror_in_parts_checked_by_its_digest(monkeypatch):
    monkeypatch.setattr(parts, "PART_BYTES", 10)
    report = {"node": "n2", "reason": "marker missing", "generation": 3,
              "table": {"db1": {"status": "up", "since": 1.0, "manual": False}},
              "paused": {"at": 2.0, "statuses": {"db1": "up"}}}
    writes, header = parts.refusal_writes(KEYS, "n2", report, 7)
    kv = stored(writes)
    assert kv[KEYS.refusal("n2")].decode() == header and len(writes) > 3
    small = json.loads(header)
    assert "table" not in small and "paused" not in small and small["reason"] == "marker missing"
    found = below(KEYS.refusal_parts, kv)
    assert parts.refusal_report("n2", small, found) == dict(small, **report)
    found["n2/000001"] = b"x" * 10  # a part of another write: not this header's
    assert parts.refusal_report("n2", small, found) is None
    assert parts.refusal_report("n2", {"node": "n2", "table": {}}, {}) == \
        {"node": "n2", "table": {}}  # whole in live/, from an older version
